"""TOP-UP: add fresh eligible leads, each to its route's campaign (its A/B arm's), up to the inventory cap.

Each route has its own room (coldsync.supply.allocate): its share of the cap, sized by what its
campaigns send (SUPPLY_DAYS), held back while its campaigns bounce too much; a route with nothing
ready gives its room to the others. The run reads each route's top rows by score within that route.

Intent first (invariant 5): the chosen leads are written to ops_inst_state as 'pending' in one
statement BEFORE the bulk add, so a crash mid-add leaves rows that housekeeping reconciles by email
(adopt the lead, or free the row so the lead is picked again). A campaign's batches go up to
INSTANTLY_ADD_CONCURRENCY at a time (InstantlyClient.add_leads): every batch's intent is in that one
statement, written before the first of them leaves, so this holds whatever order they go in. The add uses
skip_if_in_workspace, so Instantly itself refuses a second copy of anyone already in the workspace
(invariant 3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from coldsync.instantly.client import LeadOutcome
from coldsync.instantly.errors import is_service_level
from coldsync.outcomes import IN_WORKSPACE_OUTCOME, InInstantly
from coldsync.phases.blocklist import confirm_blocklisted, entry_dnc_row
from coldsync.phases.context import CampaignView, RunContext, dead_letter, history_row
from coldsync.phases.signals import MIN_BOUNCE_SAMPLE, CampaignSignals, campaign_signals
from coldsync.report import UNROUTED
from coldsync.routes import DEFAULT_CUSTOM_VARIABLES, Arm, Route, custom_variables
from coldsync.rules import normalize_email, parse_timestamp
from coldsync.supply import RouteSupply, allocate, combine_shares, default_shares, supply_wanted
from coldsync.warehouse.base import WarehouseError

log = logging.getLogger("coldsync.topup")

SPLIT_BUDGET_SPENT = "held back: refused in a batch (split budget spent)"
"""Report count of leads refused with others in a batch (400, naming no lead) that the add's halving budget
(MAX_ADD_SPLITS) could not split further: neither a lead's own refusal nor a service failure."""


def lead_payload(row: Mapping[str, Any], email: str, route: Route | None = None) -> dict[str, Any]:
    """The Instantly lead for a ready row: names, company, and the route's custom variables (by default
    company, domain, location, country) for the templates."""
    payload: dict[str, Any] = {"email": email}
    for key in ("first_name", "last_name", "company_name"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            payload[key] = value.strip()[:500]
    payload["custom_variables"] = (custom_variables(route, row) if route is not None else
                                   {k: str(v).strip()[:500] for k, c in DEFAULT_CUSTOM_VARIABLES
                                    if (v := row.get(c)) is not None and str(v).strip()})
    return payload


def measure_inventory(ctx: RunContext) -> int | None:
    """Leads in the managed campaigns: Instantly's count, never below what the warehouse tracks.

    None when Instantly could not be measured: then nothing is added this run (invariant 4).
    """
    counts = [c.leads_count for c in ctx.campaigns.values()]
    tracked = ctx.tracked_count()
    ctx.report.inventory_warehouse = tracked
    if not counts or any(c is None for c in counts):
        return None
    measured = sum(c for c in counts if c is not None)
    if abs(measured - tracked) > max(10, measured // 20):
        ctx.report.warn(f"Instantly holds {measured} leads in the managed campaigns but the warehouse tracks "
                        f"{tracked}: housekeeping reconciles; the larger figure is used for the cap")
    return max(measured, tracked)


def _campaign_inventory(ctx: RunContext, campaign: CampaignView) -> int | None:
    """One campaign's leads: Instantly's count, never below what the warehouse tracks there (after the drain)."""
    if campaign.leads_count is None:
        return None
    tracked = ctx.tracked_count(campaign)
    drained = ctx.drained_by_campaign.get(campaign.campaign_id, 0)
    return max(max(campaign.leads_count, tracked) - drained, 0)


def _route_supplies(ctx: RunContext, signals: Mapping[str, CampaignSignals]) -> list[RouteSupply]:
    """Each route's standing for the allocation: share, inventory, ready, open (campaigns active and the
    deliverability guard not tripped), supply sizing. Warnings go to the report."""
    settings, report, routing = ctx.settings, ctx.report, ctx.settings.routing
    capacity: dict[str, float | None] = {}
    staged: list[tuple[Route, int, bool, int | None]] = []
    for route in routing.routes:
        campaigns = [c for cid in route.campaign_ids if (c := ctx.campaign(cid)) is not None]
        entry = report.route(route.name)
        inventories = [_campaign_inventory(ctx, c) for c in campaigns]
        inventory = sum(i for i in inventories if i is not None) if campaigns and None not in inventories else 0
        entry["inventory"] = inventory if None not in inventories else None
        held: list[str] = []
        for campaign in campaigns:
            if campaign.status is None or campaign.active:
                continue
            if settings.allow_paused_campaigns and campaign.status in (0, 2):
                report.warn(f"campaign for {campaign.label} is not active: adding anyway (ALLOW_PAUSED_CAMPAIGNS)")
            else:
                held.append(f"campaign {campaign.label} is {STATUS_GUARD.get(campaign.status, 'not active')}")
        if any(c.status is None for c in campaigns) or len(campaigns) != len(route.arms):
            held.append("a campaign's status is unknown")
        for campaign in campaigns:
            guard = _bounce_guard(ctx, campaign, signals.get(campaign.campaign_id))
            if guard:
                held.append(guard)
                entry.setdefault("guard", []).append(campaign.label)  # for the alert (coldsync.alerts)
        if held:
            entry["reason"] = "held back: " + "; ".join(held)
            report.warn(f"route {route.name}: top-up skipped ({'; '.join(held)}); the campaigns keep sending what "
                        "they hold, nothing is paused")
        days = route.supply_days if route.supply_days is not None else settings.supply_days
        wanted: int | None = 0
        route_capacity: float | None = 0.0
        for campaign in campaigns:
            signal = signals.get(campaign.campaign_id)
            daily = signal.daily_new if signal is not None else None
            added = _added_since(ctx, campaign.campaign_id, signal) if signal is not None else 0
            # Figures read while the campaign waited for leads no longer hold once runs have fed it since.
            starved = signal is not None and signal.waiting_for_leads and not added
            backlog = (signal.backlog + added if signal is not None and signal.backlog is not None else None)
            # A rate says what a campaign CAN send only while it had leads left to start: at least one day of
            # its rate still waiting for a first email. One with less (or waiting for leads) sent what it was
            # given: its rate is ours, not its capacity, so it neither sizes its supply nor sets shares (fed
            # by its share instead; unknown capacity anywhere means equal default shares).
            bound = bool(daily) and not starved and backlog is not None and backlog * len(daily or []) >= sum(
                daily or []) > 0
            if not bound or route_capacity is None:
                route_capacity = None
            else:
                route_capacity += sum(daily or []) / len(daily or [1])
            one: int | None = None
            if days > 0 and bound and daily:
                one = supply_wanted(daily_new_leads_contacted=daily, backlog=backlog, supply_days=days,
                                    waiting_for_leads=False)
            wanted = None if one is None or wanted is None else wanted + one
        if not campaigns:
            wanted = None
        if wanted is not None:
            entry["supply_wanted"] = wanted
        capacity[route.name] = route_capacity
        staged.append((route, inventory, not held, wanted))
    # Only the routes without a configured share split the rest by capacity: a configured route's unknown
    # capacity must not turn the others' measured split into an equal one.
    unshared = {route.name: capacity[route.name] for route in routing.routes if route.share is None}
    fallback = default_shares(unshared) if unshared else {}
    shares = combine_shares({route.name: route.share for route in routing.routes}, fallback)
    out: list[RouteSupply] = []
    for route, inventory, is_open, wanted in staged:
        report.route(route.name)["share"] = round(float(shares[route.name]) * 100, 2)
        out.append(RouteSupply(route.name, shares[route.name], inventory, report.route(route.name)["ready"],
                               is_open, wanted))
    return out


def _read_ready(ctx: RunContext, bounds: Mapping[str, int]) -> list[dict[str, Any]]:
    """Each route's ready rows up to its bound (Store.read_ready), its ready count into the report. With
    every bound 0, nothing is read: the counts are this run's own when the preflight took them (a changed
    routing is counted before any write), else the last successful run's less what it added (a figure for
    the report only: no room means no lead is chosen on it). A failure of the routing's SQL is refused as
    bad configuration, the failing part named (coldsync.sync.routing_failure)."""
    if not any(n > 0 for n in bounds.values()):
        if not ctx.report.ready_by_route:
            _carry_ready(ctx)
        return []
    try:
        # The candidates table first, from the source only when it changed (Store.refresh_candidates).
        refresh = ctx.store.refresh_candidates(dry_run=ctx.dry_run)
        ctx.report.source_rejects, ctx.report.source_signal = refresh.rejects, refresh.signal
        if not refresh.refreshed and refresh.stored:
            ctx.report.phase("topup").notes.append("source unchanged since the candidates' last refresh: not read")
        if refresh.stored:  # through the ready queue (Store.read_ready_queued): the same leads, fewer rows read
            rows = ctx.store.read_ready_queued(bounds, dry_run=ctx.dry_run, refreshed=refresh.refreshed)
            if ctx.store.ready_source:
                ctx.report.phase("topup").notes.append(f"ready leads read from the {ctx.store.ready_source}")
            if ctx.store.ready_outside:
                ctx.report.phase("topup").notes.append(
                    "ready counts of " + ", ".join(f"{route} (+{n})" for route, n in sorted(
                        ctx.store.ready_outside.items())) + " add the leads outside the ready queue as of its build")
        else:
            rows = ctx.store.read_ready(bounds, stored=False)
    except WarehouseError as exc:
        from coldsync.sync import routing_failure  # coldsync.sync imports this module

        raise routing_failure(ctx, exc) from exc
    counts, unscored = ctx.store.ready_seen or ({}, 0)
    record_ready(ctx, counts, unscored)
    if ctx.store.dropped_tampered:
        ctx.report.warn(f"{ctx.store.dropped_tampered} chosen lead(s) not sent: their ops_candidates or "
                        "ops_ready_queue "
                        "row does not match its address (edited by hand?); they wait for the next refresh of the "
                        "candidates (a source change, or `python setup.py`)")
    return rows


def record_ready(ctx: RunContext, counts: Mapping[str | None, int], unscored: int) -> None:
    """Ready leads per route (key None: matched no route) and the unscored count into the report, warned."""
    report, routing = ctx.report, ctx.settings.routing
    report.ready_by_route = {route.name: counts.get(route.name, 0) for route in routing.routes}
    unrouted = counts.get(None, 0)
    if unrouted:
        report.ready_by_route[UNROUTED] = unrouted
        report.warn(f"{unrouted} ready lead(s) match no route and are not sent: add a route for them, or end "
                    "the routes with one whose `when` is TRUE")
    for route in routing.routes:
        report.route(route.name)["ready"] = counts.get(route.name, 0)
    if unscored:
        report.warn(f"{unscored} ready lead(s) have no score (the priority expression gave NULL): they are added "
                    "after every scored lead of their route")


def _carry_ready(ctx: RunContext) -> None:
    """The last successful run's ready counts less the leads it added, for the report of a run that reads
    no source (noted as carried). Nothing when that summary has none."""
    last = ctx.store.last_summary
    before, routes = last.get("ready_by_route"), last.get("routes")
    if not isinstance(before, dict):
        return
    routes = routes if isinstance(routes, dict) else {}
    carried: dict[str, int] = {}
    for name, ready in before.items():
        entry = routes.get(name)
        added = entry.get("added", 0) if isinstance(entry, dict) else 0
        if isinstance(ready, int) and isinstance(added, int):
            carried[str(name)] = max(ready - added, 0)
    ctx.report.ready_by_route = carried
    for route in ctx.settings.routing.routes:
        ctx.report.route(route.name)["ready"] = carried.get(route.name, 0)
    ctx.report.phase("topup").notes.append("no room: the source was not read; ready counts are the last run's "
                                           "less what it added")


def _added_since(ctx: RunContext, campaign_id: str, signal: CampaignSignals) -> int:
    """Leads the warehouse added to the campaign since reused figures were read (state rows added at or
    after that time): not in the backlog the listing counted then. 0 for figures read by this run."""
    fetched = parse_timestamp(signal.fetched_at)
    if not signal.reused or fetched is None:
        return 0
    campaign = ctx.campaign(campaign_id)
    if campaign is None:
        return 0
    return sum(1 for row in ctx.rows_in(campaign) if row.added_at is not None and row.added_at >= fetched)


STATUS_GUARD = {0: "a draft", 2: "paused", 3: "completed", 4: "running subsequences",
                -1: "held by Instantly: accounts unhealthy", -2: "in bounce protect", -99: "account suspended"}


def _bounce_guard(ctx: RunContext, campaign: CampaignView, signal: CampaignSignals | None) -> str | None:
    """Why the deliverability guard holds this campaign back (None: it does not); warns from
    BOUNCE_WARN_RATE. The rate is bounced / emails sent over the last 7 days (GET /campaigns/analytics
    with a date range), judged only from MIN_BOUNCE_SAMPLE emails sent."""
    if signal is None or signal.sent_7d is None or signal.bounced_7d is None or signal.sent_7d < MIN_BOUNCE_SAMPLE:
        return None
    rate = 100.0 * signal.bounced_7d / signal.sent_7d
    settings = ctx.settings
    if rate > settings.max_bounce_rate:
        return (f"campaign {campaign.label} bounced {rate:.1f}% of {signal.sent_7d} emails over 7 days, above "
                f"MAX_BOUNCE_RATE {settings.max_bounce_rate:g}%: clean the lead source (v_source_rejects), check "
                "the sending domains")
    if rate > settings.bounce_warn_rate:
        ctx.report.warn(f"campaign {campaign.label} bounced {rate:.1f}% of {signal.sent_7d} emails over 7 days, "
                        f"above BOUNCE_WARN_RATE {settings.bounce_warn_rate:g}% (top-up stops above "
                        f"MAX_BOUNCE_RATE {settings.max_bounce_rate:g}%)")
    return None


def run_topup(ctx: RunContext, inventory: int | None) -> None:
    phase = ctx.report.phase("topup")
    phase.ran = True
    settings, routing = ctx.settings, ctx.settings.routing
    could_add = inventory is not None and min(settings.target_new_leads_per_run, settings.inventory_cap - inventory) > 0
    signals = campaign_signals(ctx) if could_add else {}
    if not could_add:  # carried forward: a quiet run must not make the next run re-read fresh figures
        ctx.report.supply_signals = dict(ctx.previous_signals)
    supplies = _route_supplies(ctx, signals)
    # The most any route can get this run (allocate: room_r <= min(G, wanted_r), 0 when closed): each route's
    # ready rows are read up to that bound, with every route's ready count, in the run's one pass over the
    # source; the allocation then takes each route's first room_r of them. No room anywhere: no read at all.
    most = 0 if inventory is None else max(0, min(settings.target_new_leads_per_run,
                                                  settings.inventory_cap - inventory))
    bounds = {s.name: 0 if not s.open else most if s.wanted is None else min(most, s.wanted) for s in supplies}
    started = time.monotonic()
    ready_rows = _read_ready(ctx, bounds)
    supplies = [replace(s, ready=int(ctx.report.route(s.name)["ready"])) for s in supplies]
    allocation = allocate(supplies, cap=settings.inventory_cap,
                          target=settings.target_new_leads_per_run, inventory=inventory)
    if inventory is not None and inventory > settings.inventory_cap:
        ctx.report.warn(f"inventory {inventory} exceeds the cap {settings.inventory_cap} by "
                        f"{inventory - settings.inventory_cap}")
    for room in allocation.rooms:
        entry = ctx.report.route(room.name)
        entry.update(quota=room.quota, room=room.room)
        entry["reason"] = entry["reason"] if "reason" in entry and not room.room else room.reason
    phase.notes.append(f"room {allocation.total}: {allocation.reason}")
    rooms = {r.name: r.room for r in allocation.rooms}
    rows: list[dict[str, Any]] = []
    for row in ready_rows:  # in route order, each route's by priority
        target = str(row.get("sequence_target"))
        if rooms.get(target, 0) > 0:
            rooms[target] -= 1
            rows.append(row)
    log.info("read %d ready lead(s) (%d kept) for a room of %d from the warehouse in %.1fs", len(ready_rows),
             len(rows), allocation.total, time.monotonic() - started)

    chosen: dict[str, list[tuple[str, Mapping[str, Any], Route, Arm]]] = {}
    rejected: list[dict[str, Any]] = []
    for row in rows:
        email = normalize_email(row.get("email"))
        route = routing.route(row.get("sequence_target"))
        if email is None or route is None:
            # The view's pattern and normalize_email are one rule; a disagreement is a bug, never a send.
            phase.counts["refused_at_send"] += 1
            rejected.append(dead_letter(phase, "add_lead", str(row.get("email")),
                                        error="invalid email or unknown route in the ready read",
                                        give_up_reason="invalid email"))
            continue
        arm = route.arm_for(email)
        chosen.setdefault(arm.campaign_id, []).append((email, row, route, arm))
    for items in chosen.values():
        route_name = items[0][2].name
        arm_name = items[0][3].name
        phase.plan[f"add {route_name}/{arm_name}" if len(items[0][2].arms) > 1 else f"add {route_name}"] += len(items)
        if ctx.dry_run:
            ctx.report.route_count(route_name, "added", len(items))
    if ctx.dry_run or not chosen:
        if rejected and not ctx.dry_run:
            ctx.store.record_dead_letters(rejected, label="topup.dead_letters")
        return

    # 1. Record intent.
    intents = [{"email": email, "op": "upsert", "campaign_id": campaign_id, "sequence_target": route.name,
                "status": "pending", "instantly_lead_id": None, "attempt_num": int(row.get("attempt_num") or 1),
                "outcome": None, "added_at": ctx.now, "arm": arm.name}
               for campaign_id, items in chosen.items() for email, row, route, arm in items]
    ctx.check_deadline("the top-up's writes")
    ctx.store.apply_state(intents, label="topup.intent")
    # Issue 16 target 7 (peak memory): what is written goes (24,000 intents are ~10 MB), and each campaign's rows go
    # once settled (`chosen` is then their only holder), before the state, DNC and history writes.
    del intents, ready_rows, rows

    # 2. Push, 3. settle every lead's outcome.
    state: list[dict[str, Any]] = []
    dnc: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    letters = rejected
    unconfirmed: list[tuple[str, str, str]] = []  # (email, campaign, kind) Instantly counted but did not name
    for campaign_id, items in chosen.items():
        managed = ctx.campaign(campaign_id)
        label = managed.label if managed is not None else campaign_id
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            # Out of time: this campaign's intents stay 'pending'; the next run frees or adopts them.
            ctx.report.warn(f"stopped before adding {label} leads: the run neared its lock lease")
            continue
        # Each campaign's payloads are made just before its add and dropped after it (issue 16 target 7).
        payloads = [lead_payload(row, email, route) for email, row, route, _arm in items]
        result = ctx.client.add_leads(campaign_id, payloads,
                                      skip_if_in_workspace=True, chunk_size=settings.batch_size,
                                      concurrency=settings.instantly_add_concurrency)
        for unusable in result.unusable:
            # An error object in a 200, or created_leads that contradict the request: the client recorded a
            # service-level failure (the run's service letter); its leads stay pending, adopted or freed next run.
            ctx.report.warn(f"campaign {label}: {unusable}")
        for outcome in result.outcomes:
            email, source_row, route, _arm = items[outcome.index]
            _settle(ctx, outcome, email, campaign_id, source_row, state, dnc, history, letters, unconfirmed)
            if outcome.outcome == "created":
                ctx.report.route_count(route.name, "added")
        del payloads, result
        items.clear()
    _recheck(ctx, unconfirmed, dnc, letters)
    over_plan = phase.counts["held back: plan limit"]
    if over_plan:
        ctx.report.warn(f"{over_plan} lead(s) not added: the Instantly plan's lead limit is reached; they stay ready, "
                        "nothing is counted against them (raise the plan's lead limit or lower INVENTORY_CAP)")
    unsplit = phase.counts[SPLIT_BUDGET_SPENT]
    if unsplit:
        ctx.report.warn(f"{unsplit} lead(s) not added: Instantly refused their batch (http 400, naming no lead) and "
                        "the add's halving budget was spent before they stood alone; they stay ready, nothing is "
                        "counted against them")
    held = phase.counts["held back: service failure"]
    if held:
        ctx.report.warn(f"{held} lead(s) not confirmed added: Instantly failed or did not answer the whole "
                        "request; they stay ready, nothing is counted against them (a lead it added all the same "
                        "is adopted by a later run)")
    ctx.store.apply_state(state, label="topup.state")
    ctx.store.add_dnc(dnc, label="topup.dnc")
    ctx.store.record_history(history)
    ctx.store.record_dead_letters(letters, label="topup.dead_letters")


def _recheck(ctx: RunContext, unconfirmed: list[tuple[str, str, str]], dnc: list[dict[str, Any]],
             letters: list[dict[str, Any]]) -> None:
    """Re-check the leads a bulk add only counted as blocklisted, invalid or incomplete.

    Blocklisted: Instantly's block list is searched (phases/blocklist.py); a lead an entry really
    blocks goes on the DNC list with that entry (source `instantly_blocklist`, a fact, not a guess).
    Every other one keeps an open dead letter and is ready again: the next run adds it in another batch,
    where Instantly's answer may name it, and the letter gives up after DEAD_LETTER_MAX_RETRIES like
    any other. Nothing here becomes a permanent suppression on the strength of a counter.
    """
    if not unconfirmed:
        return
    phase = ctx.report.phase("topup")
    confirmed = confirm_blocklisted(ctx, [email for email, _c, kind in unconfirmed if kind == "blocklisted"])
    for email, campaign_id, kind in unconfirmed:
        entry = confirmed.get(email) if kind == "blocklisted" else None
        if entry is not None:
            phase.counts["confirmed on the block list"] += 1
            dnc.append(entry_dnc_row(entry, "on the Instantly block list (confirmed after a bulk add)"))
            continue
        phase.counts[f"unconfirmed:{kind}"] += 1
        letters.append(dead_letter(phase, "add_lead", email, email=email, campaign_id=campaign_id,
                                   error=f"Instantly counted a lead of this batch as {kind} without naming it: "
                                         "not put on the do-not-contact list on a guess; re-checked next run"))


def _settle(ctx: RunContext, outcome: LeadOutcome, email: str, campaign_id: str, row: Mapping[str, Any],
            state: list[dict[str, Any]], dnc: list[dict[str, Any]], history: list[dict[str, Any]],
            letters: list[dict[str, Any]], unconfirmed: list[tuple[str, str, str]]) -> None:
    phase = ctx.report.phase("topup")
    kind = outcome.outcome
    phase.counts[f"outcome:{kind}"] += 1
    error = str(outcome.error) if outcome.error else kind
    if kind == "created" or (kind == "duplicate" and outcome.lead_id):
        # Created now, or already in this campaign (an interrupted earlier add): either way ours.
        phase.counts["added" if kind == "created" else "adopted"] += 1
        state.append({"email": email, "op": "upsert", "status": "active", "instantly_lead_id": outcome.lead_id,
                      "campaign_id": campaign_id, "sequence_target": None, "attempt_num": None, "outcome": None,
                      "added_at": None})
    elif kind == "skipped" and outcome.lead_id and ctx.campaign(outcome.campaign_id) is not None:
        # Already in another managed campaign: track it where it is (one lead per email).
        phase.counts["adopted"] += 1
        where = ctx.campaign(outcome.campaign_id)
        state.append({"email": email, "op": "upsert", "status": "active", "instantly_lead_id": outcome.lead_id,
                      "campaign_id": where.campaign_id if where else outcome.campaign_id,
                      "sequence_target": where.route if where else None, "attempt_num": None, "outcome": None,
                      "added_at": None, "arm": where.arm if where else None})
    elif kind == "skipped":
        # In a campaign we do not manage: not ours to send; rest it for a cooldown instead of retrying.
        state.append({"email": email, "op": "delete"})
        managed = ctx.campaign(campaign_id)
        history.append(history_row(ctx, email=email, campaign_id=campaign_id,
                                   sequence_name=row.get("sequence_target"), status_final=IN_WORKSPACE_OUTCOME,
                                   completed_at=ctx.now, attempt_num=int(row.get("attempt_num") or 1),
                                   instantly_lead_id=outcome.lead_id,
                                   reason="already in another campaign of the workspace",
                                   arm=managed.arm if managed else None, in_instantly=InInstantly.NOT_ADDED.value))
    elif kind in ("blocklisted", "invalid", "incomplete") and outcome.inferred:
        # Instantly only counted such leads; the client guessed which. A guess never becomes a
        # permanent suppression: the row is freed and the guess re-checked (run_topup, below).
        state.append({"email": email, "op": "delete"})
        unconfirmed.append((email, campaign_id, kind))
    elif kind == "blocklisted":
        state.append({"email": email, "op": "delete"})
        dnc.append({"email": email, "domain": None, "source": "instantly_blocklist",
                    "reason": "on the Instantly block list"})
    elif kind in ("invalid", "incomplete"):
        state.append({"email": email, "op": "delete"})
        dnc.append({"email": email, "domain": None, "source": "instantly_invalid",
                    "reason": f"Instantly rejected the lead as {kind}"})
        letters.append(dead_letter(phase, "add_lead", email, email=email, campaign_id=campaign_id, error=error,
                                   give_up_reason=f"Instantly rejected the lead as {kind}: excluded from later runs"))
    elif kind == "failed" and outcome.error is not None and is_service_level(outcome.error):
        # The whole batch failed with the service (429, 5xx, timeout, no connection, key refused), or Instantly
        # refused the operation itself (every lead of a batch refused alone too: AddRefusedError): not this
        # lead's doing. Free the row (it is ready again, at its place in the order), count nothing against it;
        # the service-level dead letter (sync._service_letters) records the failure once.
        state.append({"email": email, "op": "delete"})
        phase.counts["held back: service failure"] += 1
    elif kind == "failed" and outcome.inferred:
        # Refused together with others (a 400 naming nobody) in a part the call's halving budget
        # (MAX_ADD_SPLITS) could no longer split: Instantly named nobody, and the service did not fail (no
        # service letter). Freed, ready again, nothing counted against it. Only a lead Instantly refused alone
        # (others of its batch accepted) counts.
        state.append({"email": email, "op": "delete"})
        phase.counts[SPLIT_BUDGET_SPENT] += 1
    elif kind == "plan_limit":
        # The workspace's plan holds no more leads: a refusal of the whole workspace, not of this lead. Freed
        # (ready again, at its place in the order), nothing counted against it, no history; the client recorded
        # ONE service-level failure of POST /leads/add (PlanLimitError), the run's service letter.
        state.append({"email": email, "op": "delete"})
        phase.counts["held back: plan limit"] += 1
    elif kind in ("failed", "duplicate_in_request"):
        # Not added: free the row, so the lead is ready again next run; record why.
        state.append({"email": email, "op": "delete"})
        http = outcome.error.http_status if outcome.error else None
        letters.append(dead_letter(phase, "add_lead", email, email=email, campaign_id=campaign_id, error=error,
                                   http_status=http))
    else:
        # duplicate without an id, or unknown (also every lead of an add answer that could not be used): leave
        # it pending; the next run's housekeeping looks it up by email. No id, no history, no dead letter.
        phase.counts["left_pending"] += 1
