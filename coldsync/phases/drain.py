"""DRAIN: take finished leads out of Instantly, recording how each ended FIRST.

Order (invariant 5): history, DNC and state ('draining') are written to the warehouse; only then
are the leads deleted in Instantly, by explicit ids; only then are their state rows removed. A crash
anywhere leaves either nothing done, or history written with the lead still in Instantly (the next
run finds it again: the history MERGE is idempotent), or the lead deleted with its state 'draining'
(the next run retries the delete: a lead already gone counts as deleted).

A lead whose outcome policy names an Instantly list (`list_id`, e.g. REPLIED_LIST_ID) is moved there
instead of deleted, at once or when its hold ends, in the same order: history first and state 'moving',
then `POST /leads/move` (a background job, followed for a few polls), then the lead is read back by id,
and only a lead Instantly shows in the list and out of its campaign loses its state row. A move not
verified (the job failed, was cancelled, or still runs) leaves the lead 'moving', counted in its campaign's
inventory: the next run reads it again and moves it again only if it is still in its campaign.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from coldsync.instantly.client import MAX_IDS_PER_BULK_DELETE, MAX_IDS_PER_MOVE, BackgroundJob, LeadFilter
from coldsync.instantly.errors import InstantlyError, is_service_level
from coldsync.outcomes import InInstantly, UnknownInterestStatus
from coldsync.phases.blocklist import mirror_rows
from coldsync.phases.context import CampaignView, RunContext, dead_letter, history_row, lead_time, resolution
from coldsync.phases.events import PHASE as EVENTS_PHASE
from coldsync.phases.events import EventBatch, plan_with_events
from coldsync.rules import (
    Action,
    Classification,
    InterestStatus,
    LeadStatus,
    Suppression,
    chunk,
    classify_finished_lead,
    lead_id_of,
    normalize_email,
    parse_timestamp,
)
from coldsync.store import StateRow, dnc_row

log = logging.getLogger("coldsync.drain")

# The list filters that find leads whose sequence ended, each with the cumulative analytics counter
# that grows when a lead enters that state (None: no counter; listed on full sweeps only). A listing
# runs when its counter moved since the last successful run listed it, so a quiet run costs one
# analytics call, not one listing per filter and campaign. A full sweep of every filter, each read to
# its empty page, runs at least every FULL_SWEEP_INTERVAL, to catch what counters miss (skipped leads,
# lagging analytics, leads kept as unknown). Stale leads are found from the warehouse.
#
# Coverage (issue 16): a counter's increase since its watermark says how many leads entered that state
# since the last run listed them. A listing stops at the first page boundary where the NEW leads found
# in the campaign that the counter counts (COUNTED_BY) reach that increase: no page after it, no empty
# last page. The API's short last page still carries a cursor (recorded leads.json; the spec leaves it
# open), so without coverage a listing reads to its empty page: a short page in the middle of a listing
# (a server that drops excluded ids after cutting the page, tests/test_drain_lag.py) never ends it. A
# watermark moves when the leads found cover the increase, or when the listing was read to its empty
# page (everything there was seen: a counter that also counts leads no longer in the campaign, e.g.
# deleted by hand, must not force a full listing every run); a listing cut short or failed keeps it.
# NEW means not a lead an earlier listing already returned and the drain left there (in a subsequence,
# not understood, not finished: the watermark's KEPT_KEY ids), nor one held, moving or draining (left
# out of the listings by id and re-read by id). That set is known only after a full sweep read every
# filter of the campaign to its end: until then (the first run, a version upgrade, a failed sweep) no
# listing stops early.
# Assumed where the spec is silent ("The number of leads that the campaign was completed for"):
# `completed_count` counts a lead whose sequence stopped on a reply (status 3), as the simulator does;
# `reply_count` counts every reply, so a lead replying twice makes the increase larger than the leads
# found: such a listing is read to its end (costs a page, holds nothing back).
# Two waves: the status filters first (COMPLETED, BOUNCED, UNSUBSCRIBED, SKIPPED: one `status` each, so
# disjoint), all campaigns' and filters' listings overlapping under the client's one pacer; then REPLIED,
# which overlaps COMPLETED (a reply stops the sequence with status 3), leaving out (`excluded_ids`) the
# leads the first wave returned and skipped outright when the replied leads found there already cover
# the replies counter. So a lead under two filters is fetched once.
FINISHED_FILTERS: dict[LeadFilter, str | None] = {
    LeadFilter.COMPLETED: "completed",
    LeadFilter.BOUNCED: "bounced",
    LeadFilter.UNSUBSCRIBED: "unsubscribed",
    LeadFilter.SKIPPED: None,
    LeadFilter.REPLIED: "replies",
}
SECOND_WAVE: frozenset[LeadFilter] = frozenset({LeadFilter.REPLIED})
"""Filters listed after the first wave of their campaign, leaving out what it returned."""
MAX_EXCLUDED_IDS = 10_000
"""Ids a listing leaves out at most (`excluded_ids`): the spec sets no bound; assumed like bulk delete's
10,000 ids in one body. Beyond it the rest are read again and skipped here (found once, fetched twice)."""
MAX_KEPT_IDS = 2_000
"""Kept lead ids a campaign's watermark remembers at most (KEPT_KEY, in the run summary): beyond it the
campaign's listings read to their end until a full sweep finds fewer kept."""
KEPT_KEY = "kept"
FULL_SWEEP_INTERVAL = dt.timedelta(hours=6)
DNC_SOURCES = {Suppression.DNC: "instantly_unsubscribe", Suppression.PERMANENT: "instantly_bounce"}
SUPPRESSED_OUTCOME = "suppressed"
"""History outcome of a lead taken out of Instantly because its person is on the do-not-contact list."""
MOVE_POLLS = 5
"""How many times a run asks for a move's background job before it leaves the move to the next run."""
MOVE_POLL_SECONDS = 1.0
"""Wait between two of those polls (Instantly finished a recorded move of 5 leads in half a second)."""


def in_subsequence(lead: Mapping[str, Any]) -> bool:
    """Whether Instantly has the lead in a subsequence now: `subsequence_id` set (the lead object of
    POST /leads/list; FILTER_VAL_IN_SUBSEQUENCE lists the same leads). Assumed where the spec is silent
    (README, the simulator): the lead keeps its status, e.g. 3 (completed) after a reply, while the
    subsequence emails it, so the status alone does not say it is done."""
    value = lead.get("subsequence_id")
    return isinstance(value, str) and bool(value.strip())


def _sweep_due(previous: Mapping[str, Any], now: dt.datetime) -> bool:
    swept = parse_timestamp(previous.get("swept_at"))
    return swept is None or now - swept >= FULL_SWEEP_INTERVAL


def _counts_as(counter: str, lead: Mapping[str, Any]) -> bool:
    """Whether the analytics counter `counter` counted this lead when it ended (conservative: a lead
    counted here that the counter did not count could end a listing early; one left out costs a page).
    completed: status 3; bounced: -1; unsubscribed: -2; replies: a real reply (email_reply_count >= 1,
    interest not 0 = out of office: `reply_count_unique` "Excludes automatic replies", and the classifier's
    rule)."""
    status = lead.get("status")
    if counter == "completed":
        return status == LeadStatus.COMPLETED
    if counter == "bounced":
        return status == LeadStatus.BOUNCED
    if counter == "unsubscribed":
        return status == LeadStatus.UNSUBSCRIBED
    if counter == "replies":
        replies = lead.get("email_reply_count")
        return (isinstance(replies, int) and not isinstance(replies, bool) and replies >= 1
                and lead.get("lt_interest_status") != InterestStatus.OUT_OF_OFFICE)
    return False


@dataclass
class _Listed:
    """One drain listing's answer: the leads of the campaign it returned (in order), how it ended."""

    campaign_id: str
    filt: LeadFilter
    leads: list[dict[str, Any]] = field(default_factory=list)
    without_id: int = 0
    error: str | None = None  # the failure's summary
    stop_reason: str | None = None  # Listing.stop_reason, or "covered"
    complete: bool = False  # read to its end
    covered: bool = False  # the new leads found cover the counter's increase (or no listing was needed)
    pages: int = 0


@dataclass
class _Plan:
    """What one campaign's listings need: the ids left out, the ids that are not new, and per counter the
    increase to cover (None: read to the end)."""

    campaign_id: str
    excluded: list[str]
    old: frozenset[str]
    increase: dict[str, int | None]
    filters: list[LeadFilter]


def _list_one(ctx: RunContext, plan: _Plan, filt: LeadFilter, excluded: list[str], already: int) -> _Listed:
    """Read one listing (in a worker thread: touches no report, no warehouse), stopping at the first page
    boundary where `already` plus the new leads it returns that its counter counts reach the increase."""
    out = _Listed(plan.campaign_id, filt)
    counter = FINISHED_FILTERS[filt]
    need = plan.increase.get(counter) if counter else None
    if need is not None and already >= need:
        out.covered = out.complete = True
        out.stop_reason = "covered"
        return out
    listing = ctx.client.iter_leads(campaign=plan.campaign_id, filter=filt, excluded_ids=excluded[:MAX_EXCLUDED_IDS])
    found = already
    try:
        for lead in listing:
            lead_id = lead_id_of(lead)
            if lead_id is None:
                out.without_id += 1
            elif lead.get("campaign", plan.campaign_id) == plan.campaign_id:
                out.leads.append(lead)
                if counter and lead_id not in plan.old and _counts_as(counter, lead):
                    found += 1
            if need is not None and found >= need and not listing.buffered and not listing.finished:
                out.covered = True
                out.stop_reason = "covered"
                break
    except InstantlyError as exc:
        out.error = exc.summary
        out.pages = listing.pages
        return out
    out.pages = listing.pages
    if not out.covered:
        out.complete = listing.complete
        out.stop_reason = listing.stop_reason
        out.covered = out.complete and need is not None and found >= need
    return out


def _plan_campaign(ctx: RunContext, campaign: CampaignView, sweep: bool,
                   previous: Mapping[str, Any]) -> _Plan:
    """The listings one campaign needs this run (all on a sweep; else those whose counter moved)."""
    # Left out from the start: the leads held, being moved or drained there, which the drain re-reads or
    # retries by id (_follow_holds, _follow_moves, the retried deletes) and never takes from a listing.
    excluded = [row.instantly_lead_id for row in ctx.rows_in(campaign)
                if row.status in ("holding", "moving", "draining") and row.instantly_lead_id]
    kept = previous.get(KEPT_KEY)
    known = isinstance(kept, list) and not sweep
    old = frozenset(excluded) | frozenset(str(x) for x in kept) if isinstance(kept, list) else frozenset(excluded)
    increase: dict[str, int | None] = {}
    filters: list[LeadFilter] = []
    for filt, counter in FINISHED_FILTERS.items():
        current = campaign.counters.get(counter) if counter else None
        before = previous.get(counter) if counter else None
        if not sweep and (counter is None or (current is not None and before == current)):
            continue
        filters.append(filt)
        if counter is not None:
            usable = (known and isinstance(current, int) and isinstance(before, int)
                      and not isinstance(before, bool) and current >= before)
            increase[counter] = current - before if usable and isinstance(current, int) and isinstance(before, int) \
                else None
    return _Plan(campaign.campaign_id, excluded, old, increase, filters)


def _run_listings(ctx: RunContext, plans: list[_Plan]) -> dict[tuple[str, LeadFilter], _Listed]:
    """Every planned listing, overlapping (INSTANTLY_LIST_CONCURRENCY in flight, the client's one pacer
    spacing the requests): first every campaign's status filters, then the second wave (REPLIED) leaving
    out what its campaign's first wave returned. Keyed by (campaign, filter): the order of the answers
    never depends on which finished first."""
    workers = max(1, int(ctx.settings.instantly_list_concurrency))
    done: dict[tuple[str, LeadFilter], _Listed] = {}

    def wave(tasks: list[tuple[_Plan, LeadFilter, list[str], int]]) -> None:
        if workers == 1 or len(tasks) <= 1:
            for plan, filt, excluded, already in tasks:
                done[(plan.campaign_id, filt)] = _list_one(ctx, plan, filt, excluded, already)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(tasks)), thread_name_prefix="coldsync-drain") as pool:
            futures = {(plan.campaign_id, filt): pool.submit(_list_one, ctx, plan, filt, excluded, already)
                       for plan, filt, excluded, already in tasks}
            for key, future in futures.items():
                done[key] = future.result()

    wave([(plan, filt, plan.excluded, 0) for plan in plans for filt in plan.filters if filt not in SECOND_WAVE])
    second: list[tuple[_Plan, LeadFilter, list[str], int]] = []
    for plan in plans:
        first = [lead for filt in plan.filters if filt not in SECOND_WAVE
                 for lead in done[(plan.campaign_id, filt)].leads]
        first_ids = list(dict.fromkeys(str(lead_id_of(lead)) for lead in first))
        for filt in plan.filters:
            if filt in SECOND_WAVE:
                counter = FINISHED_FILTERS[filt]
                already = len({str(lead_id_of(lead)) for lead in first if counter and _counts_as(counter, lead)
                               and lead_id_of(lead) not in plan.old})
                second.append((plan, filt, plan.excluded + first_ids, already))
    wave(second)
    return done


def _find_finished(ctx: RunContext) -> tuple[list[dict[str, Any]], bool, dict[str, list[str]]]:
    """Finished leads of the managed campaigns, whether every listing made was read to its end (or stopped
    covered), and per campaign whose kept set is tracked, the ids its listings returned (in_listings)."""
    phase = ctx.report.phase("drain")
    found: dict[str, dict[str, Any]] = {}
    complete = True
    plans: list[_Plan] = []
    sweeps: dict[str, bool] = {}
    for campaign in ctx.campaigns.values():
        previous = ctx.previous_watermarks.get(campaign.campaign_id, {})
        tracked_here = any(row.instantly_lead_id
                           for row in ctx.rows_in(campaign) if row.status != "pending")
        if campaign.leads_count == 0 and campaign.counters and not tracked_here:
            # Instantly counts no lead in the campaign and the warehouse tracks none there: nothing of ours is
            # there to list under any filter, so this is a sweep that found nothing (and kept nothing). A count
            # of 0 (or a missing one) beside tracked leads is not believed: the campaign is listed as usual, so
            # a lagging count can never hold a finished lead (an unsubscribe) back.
            ctx.report.drain_watermarks[campaign.campaign_id] = {**dict(campaign.counters),
                                                                 "swept_at": ctx.now.isoformat(), KEPT_KEY: []}
            continue
        sweeps[campaign.campaign_id] = _sweep_due(previous, ctx.now)
        plans.append(_plan_campaign(ctx, campaign, sweeps[campaign.campaign_id], previous))
    answers = _run_listings(ctx, plans)
    listed: dict[str, list[str]] = {}
    for plan in plans:
        campaign = ctx.campaigns[plan.campaign_id]
        previous = ctx.previous_watermarks.get(plan.campaign_id, {})
        watermark: dict[str, Any] = {k: v for k, v in previous.items() if k not in ("swept_at", KEPT_KEY)}
        all_complete = True
        ids: list[str] = []
        for filt in FINISHED_FILTERS:  # merged in this fixed order, whichever answer came first
            answer = answers.get((plan.campaign_id, filt))
            if answer is None:
                continue
            phase.counts["kept_without_id"] += answer.without_id
            for lead in answer.leads:
                lead_id = str(lead_id_of(lead))
                if lead_id not in found:
                    ids.append(lead_id)
                found.setdefault(lead_id, lead)
            if answer.error is not None:
                complete = all_complete = False
                phase.notes.append(f"listing {filt.value} of {campaign.label} failed: {answer.error}")
                continue
            if not (answer.complete or answer.covered):
                complete = all_complete = False
                phase.notes.append(f"listing {filt.value} of {campaign.label} cut short ({answer.stop_reason})")
                continue
            if answer.stop_reason == "covered":
                phase.counts["listings stopped or skipped: covered"] += 1
                all_complete = False  # not read to the end: no full sweep
            counter = FINISHED_FILTERS[filt]
            current = campaign.counters.get(counter) if counter else None
            if counter is not None and current is not None:
                watermark[counter] = current
        sweep = sweeps[plan.campaign_id]
        if sweep and all_complete:
            watermark["swept_at"] = ctx.now.isoformat()
        elif "swept_at" in previous:
            watermark["swept_at"] = previous["swept_at"]
        if sweep and all_complete:
            watermark[KEPT_KEY] = []  # rebuilt from this sweep's listings once the drain has acted (run_drain)
            listed[plan.campaign_id] = ids
        elif isinstance(previous.get(KEPT_KEY), list):
            watermark[KEPT_KEY] = [str(x) for x in previous[KEPT_KEY]]
            listed[plan.campaign_id] = ids
        ctx.report.drain_watermarks[plan.campaign_id] = watermark
    return list(found.values()), complete, listed


def _remember_kept(ctx: RunContext, listed: Mapping[str, list[str]], acted: set[str]) -> None:
    """Store in each campaign's watermark (KEPT_KEY) the leads its listings returned that the drain left
    there (in a subsequence, unknown, not finished), beside those kept before and not acted on now, so the
    next run does not count them as new towards a counter's increase. Too many: the key is dropped, and
    the campaign's listings read to their end until the next full sweep."""
    for campaign_id, ids in listed.items():
        watermark = ctx.report.drain_watermarks.get(campaign_id)
        if watermark is None or not isinstance(watermark.get(KEPT_KEY), list):
            continue
        kept = list(dict.fromkeys([*watermark[KEPT_KEY], *ids]))
        kept = [lead_id for lead_id in kept if lead_id not in acted]
        if len(kept) > MAX_KEPT_IDS:
            del watermark[KEPT_KEY]
            ctx.report.phase("drain").notes.append(
                f"{len(kept)} finished leads kept in {ctx.campaigns[campaign_id].label}: its listings read to "
                "their end until a full sweep keeps fewer")
        else:
            watermark[KEPT_KEY] = sorted(kept)


def _find_stale(ctx: RunContext, known_ids: set[str]) -> list[dict[str, Any]]:
    """Leads the warehouse has held active past the maximum age: looked up by id (cost grows with them)."""
    limit = ctx.now - dt.timedelta(days=ctx.settings.max_active_days)
    ids = [row.instantly_lead_id for row in ctx.state.with_status("active")
           if row.instantly_lead_id and row.added_at is not None
           and row.added_at < limit and row.instantly_lead_id not in known_ids]
    leads: list[dict[str, Any]] = []
    phase = ctx.report.phase("drain")
    for part in chunk(ids, 100):
        returned: set[str] = set()
        unreadable = 0
        listing = ctx.client.iter_leads(ids=part)
        try:
            for lead in listing:
                lead_id = lead_id_of(lead)
                if lead_id is None:
                    phase.counts["kept_without_id"] += 1
                    unreadable += 1
                else:
                    returned.add(lead_id)
                    leads.append(lead)
        except InstantlyError as exc:
            phase.notes.append(f"stale look-up failed: {exc.summary}")
            continue  # a failed look-up proves nothing
        if listing.complete and not unreadable:  # a lead without an id might be any of them
            # Asked by id and not returned: housekeeping confirms by email (phases/reconcile.py).
            ctx.unreturned_ids.update(lead_id for lead_id in part if lead_id not in returned)
    return leads


def _find_evented(ctx: RunContext, events: EventBatch, known_ids: set[str]) -> list[dict[str, Any]]:
    """The tracked leads webhook events name (coldsync.phases.events) that the listings did not return, read by
    id (100 a call). Ids whose look-up failed go to `events.unread` (the events are read again next run); ids a
    complete answer did not return are left to housekeeping, which confirms them by email (as _find_stale's)."""
    ids = [lead_id for lead_id in events.by_lead_id if lead_id not in known_ids]
    if not ids:
        return []
    seen, unread = _read_by_ids(ctx, ids, "leads named by webhook events")
    events.unread.update(unread)
    ctx.unreturned_ids.update(lead_id for lead_id in ids if lead_id not in seen and lead_id not in unread)
    return list(seen.values())


def run_drain(ctx: RunContext, events: EventBatch | None = None) -> None:
    """The drain (module docstring). `events`: what coldsync.phases.events.read_events found this run: their
    leads are read by id and drained here with the others (one plan, each lead once), and their DNC rows are
    written in their own MERGE before the drain's own."""
    phase = ctx.report.phase("drain")
    phase.ran = True
    by_id, by_email = ctx.state.by_lead_id, ctx.state.by_email
    finished, complete, listed = _find_finished(ctx)
    if not complete:
        ctx.report.warn("some finished-lead listings failed or were cut short: the next run drains the rest")
    finished_ids = {str(lead["id"]) for lead in finished}
    candidates = finished + _find_stale(ctx, finished_ids)
    evented = events.by_lead_id if events is not None else {}
    if events is not None and evented:
        candidates += _find_evented(ctx, events, {str(lead_id_of(lead)) for lead in candidates})
    by_event: Counter[str] = Counter()  # outcome -> leads an event named, drained in this run
    if phase.counts["kept_without_id"]:
        phase.notes.append(f"kept {phase.counts['kept_without_id']} listed lead(s) without a usable id")

    def state_of(lead: Mapping[str, Any]) -> StateRow | None:
        """The lead's state row: by its id; by its email only while that row is tied to no lead yet."""
        row = by_id.get(str(lead.get("id")))
        if row is None:
            email = normalize_email(lead.get("email"))
            candidate = by_email.get(email) if email else None
            row = candidate if candidate is not None and not candidate.instantly_lead_id else None
        return row

    with_added = ((lead, (s.added_at if (s := state_of(lead)) else None)) for lead in candidates)
    plan = plan_with_events(with_added, evented, ctx.now, ctx.settings.max_active_days)
    for _lead, decision in plan.unknown:
        phase.counts["unknown_kept"] += 1
        phase.notes.append(f"kept a lead that could not be classified: {decision.reason}")

    history: list[dict[str, Any]] = []
    dnc: list[dict[str, Any]] = []
    state_rows: dict[str, dict[str, Any]] = {}  # one per email: ops_inst_state is keyed by email
    owned: set[str] = set()  # lead ids whose state row goes once they are deleted
    to_delete: dict[str, dict[str, str]] = {}  # campaign -> lead id -> email
    to_move: dict[tuple[str, str], dict[str, str]] = {}  # (campaign, target list) -> lead id -> email
    held_now: set[str] = set()  # emails holding in their campaign as this run leaves them
    history_updates: list[dict[str, Any]] = []  # held leads re-read: their attempt's policy columns now
    for lead, decision in plan.to_drain:
        row = state_of(lead)
        if row is not None and row.status in ("holding", "moving"):
            continue  # outcome recorded already: the hold (or the move) below re-reads it by id
        email = normalize_email(lead.get("email")) or (row.email if row else None)
        campaign_id = str(lead.get("campaign") or (row.campaign_id if row else "") or "")
        if not email or not ctx.manages(campaign_id):
            phase.counts["unknown_kept"] += 1
            phase.notes.append("kept a finished lead without a usable email or managed campaign")
            continue
        assert decision.outcome is not None and decision.suppression is not None
        if in_subsequence(lead) and decision.suppression not in DNC_SOURCES:
            # Mid-conversation in an Instantly subsequence: draining it now would cut the subsequence off.
            # Kept until it leaves (the 6-hourly full sweep lists it again); an unsubscribe or bounce still
            # drains at once.
            phase.counts["kept: in a subsequence"] += 1
            continue
        managed = ctx.campaign(campaign_id)
        route = row.sequence_target if row and row.sequence_target else managed.route if managed else None
        arm = row.arm if row and row.arm else managed.arm if managed else None
        interest = interest_of(lead)
        try:
            history.append(history_row(
                ctx, email=email, campaign_id=campaign_id, sequence_name=route,
                status_final=decision.outcome.value, completed_at=lead_time(lead, ctx.now),
                attempt_num=row.attempt_num if row else None, instantly_lead_id=str(lead["id"]),
                reason=decision.reason, arm=arm, interest_status=interest, lead=lead,
                added_at=row.added_at if row else None))
        except UnknownInterestStatus as exc:  # never guessed: kept, reported, mapped by hand ([custom_labels])
            phase.counts["unknown_kept"] += 1
            phase.notes.append(f"kept a finished lead: {exc} (map it in the outcome policies' [custom_labels])")
            continue
        phase.plan[f"drain {decision.outcome.value}"] += 1
        ctx.report.route_count(route, "drained")
        if str(lead["id"]) in evented:
            by_event[decision.outcome.value] += 1
        if decision.suppression in DNC_SOURCES:
            dnc.append({"email": email, "domain": None, "source": DNC_SOURCES[decision.suppression],
                        "reason": decision.reason})
        shared = (row is None and email in by_email) or email in state_rows
        hold_days = ctx.settings.outcome_table[history[-1]["policy"]].hold_days
        if hold_days and not shared and decision.suppression not in DNC_SOURCES:
            # Held in its campaign (the rep works the thread): recorded now, deleted or moved when it ends.
            history[-1]["in_instantly"] = InInstantly.HELD.value
            phase.plan["hold"] += 1
            phase.counts["hold_started"] += 1
            held_now.add(email)
            state_rows[email] = {"email": email, "op": "upsert", "campaign_id": campaign_id,
                                 "sequence_target": route, "status": "holding", "instantly_lead_id": str(lead["id"]),
                                 "outcome": decision.outcome.value, "attempt_num": row.attempt_num if row else None,
                                 "added_at": None, "arm": arm, "hold_until": ctx.now + dt.timedelta(days=hold_days),
                                 "completed_at": history[-1]["completed_at"]}
            continue
        list_id = ctx.settings.outcome_table[history[-1]["policy"]].list_id
        if list_id and decision.suppression not in DNC_SOURCES:
            # Moved to the policy's Instantly list at once (MOVE): recorded now, 'moving' until verified there.
            history[-1]["in_instantly"] = InInstantly.MOVED.value
            phase.plan["move"] += 1
            to_move.setdefault((campaign_id, list_id), {})[str(lead["id"])] = email
            if not shared:
                owned.add(str(lead["id"]))
                state_rows[email] = {"email": email, "op": "upsert", "campaign_id": campaign_id,
                                     "sequence_target": route, "status": "moving", "instantly_lead_id": str(lead["id"]),
                                     "outcome": decision.outcome.value, "attempt_num": row.attempt_num if row else None,
                                     "added_at": None, "arm": arm, "completed_at": history[-1]["completed_at"]}
            continue
        history[-1]["in_instantly"] = InInstantly.DELETED.value
        to_delete.setdefault(campaign_id, {})[str(lead["id"])] = email
        if shared:
            # The address is tracked for another Instantly lead (e.g. one added by hand to the other
            # campaign): this lead is recorded and deleted, that lead's row is left alone.
            continue
        owned.add(str(lead["id"]))
        state_rows[email] = {"email": email, "op": "upsert", "campaign_id": campaign_id,
                             "sequence_target": route, "status": "draining",
                             "instantly_lead_id": str(lead["id"]), "outcome": decision.outcome.value,
                             "attempt_num": row.attempt_num if row else None, "added_at": None, "arm": arm}

    # Leads whose person is suppressed (a DNC entry by email or domain, or an erased hash, perhaps added
    # after the lead was sent, or a lead adopted before its entry existed): recorded, then taken out.
    planned = {lead_id for ids in to_delete.values() for lead_id in ids}
    for hit in ctx.state.suppressed:
        if (hit.suppressed is None or hit.status not in ("active", "holding", "moving") or not hit.instantly_lead_id
                or hit.instantly_lead_id in planned or not ctx.manages(hit.campaign_id)
                or hit.email in state_rows):
            continue  # pending rows are settled by housekeeping; draining rows are retried below
        campaign_id = str(hit.campaign_id)
        phase.plan[f"drain {SUPPRESSED_OUTCOME}"] += 1
        ctx.report.route_count(hit.sequence_target, "drained")
        history.append(history_row(ctx, email=hit.email, campaign_id=campaign_id, sequence_name=hit.sequence_target,
                                   status_final=SUPPRESSED_OUTCOME, completed_at=ctx.now,
                                   attempt_num=hit.attempt_num, instantly_lead_id=hit.instantly_lead_id,
                                   reason=f"on the do-not-contact list (by {hit.suppressed})", arm=hit.arm,
                                   in_instantly=InInstantly.DELETED.value, added_at=hit.added_at))
        to_delete.setdefault(campaign_id, {})[hit.instantly_lead_id] = hit.email
        owned.add(hit.instantly_lead_id)
        state_rows[hit.email] = {
            "email": hit.email, "op": "upsert", "campaign_id": campaign_id, "sequence_target": hit.sequence_target,
            "status": "draining", "instantly_lead_id": hit.instantly_lead_id, "outcome": SUPPRESSED_OUTCOME,
            "attempt_num": hit.attempt_num, "added_at": None, "arm": hit.arm}

    _follow_holds(ctx, state_rows, history_updates, dnc, to_delete, to_move, owned, held_now)
    phase.counts["held"] = len(held_now)
    ctx.report.held = len(held_now)
    moving_before, moves_done = _follow_moves(ctx, state_rows, history_updates, dnc, to_delete, to_move, owned)

    # Deletes that an earlier run recorded but could not finish.
    retried: set[str] = set()
    for row in ctx.state.with_status("draining"):
        if row.status == "draining" and row.instantly_lead_id and row.campaign_id:
            retried.add(row.instantly_lead_id)
            owned.add(row.instantly_lead_id)
            if row.instantly_lead_id not in to_delete.get(row.campaign_id, {}):
                phase.plan["retry delete"] += 1
            to_delete.setdefault(row.campaign_id, {})[row.instantly_lead_id] = row.email

    acted = {lead_id for leads in [*to_delete.values(), *to_move.values()] for lead_id in leads}
    acted.update(str(r["instantly_lead_id"]) for r in state_rows.values() if r.get("instantly_lead_id"))
    _remember_kept(ctx, listed, acted)

    event_dnc = list(events.dnc) if events is not None else []
    events_phase = ctx.report.phase(EVENTS_PHASE) if events is not None else None
    if ctx.dry_run:
        if events_phase is not None:
            for outcome, n in by_event.items():
                events_phase.plan[f"drain by event: {outcome}"] += n
        for campaign_id, leads in to_delete.items():
            ctx.drained_by_campaign[campaign_id] = len(leads)
        for (campaign_id, _list_id), leads in to_move.items():
            ctx.drained_by_campaign[campaign_id] = ctx.drained_by_campaign.get(campaign_id, 0) + len(leads)
        return

    # 1. The warehouse first: no outcome can be lost after this point.
    ctx.check_deadline("the drain's writes")
    phase.counts["history_rows"] += ctx.store.record_history(history)
    ctx.store.update_history_policy(history_updates)
    if ctx.settings.blocklist_mirror:
        # Mirror first, so the ids travel in the one DNC statement (Instantly's block list is an extra
        # net: the warehouse entry below still precedes every delete). The events' rows come first: theirs is
        # the entry an address gets when both name it (mirror_rows keeps the order of the rows given).
        mirrored = mirror_rows(ctx, event_dnc + [dnc_row(email=r["email"], source=r["source"], reason=r["reason"])
                                                 for r in dnc])
        event_dnc, dnc = mirrored[:len(event_dnc)], mirrored[len(event_dnc):]
    if events_phase is not None:
        # The webhook events' unsubscribes and bounces, in their own MERGE (its count is theirs).
        events_phase.counts["dnc_added"] += ctx.store.add_dnc(event_dnc, label="events.dnc")
    phase.counts["dnc_added"] += ctx.store.add_dnc(dnc, label="drain.dnc")
    ctx.store.apply_state(list(state_rows.values()), label="drain.state_draining")
    for item in history:
        phase.counts[f"drained:{item['status_final']}"] += 1
    if events_phase is not None:
        for outcome, n in by_event.items():
            events_phase.counts[f"drained by event: {outcome}"] += n

    # 2. Then Instantly, by explicit ids only.
    gone: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    deleted_ids: list[str] = []
    confirmed = 0  # what Instantly says it removed: a retried delete of a lead already gone frees no room
    for campaign_id, leads in to_delete.items():
        ids = list(leads)
        # As many ids a call as bulk delete takes (rules.chunk stops at the 1,000 of the other bulk calls).
        for part in (ids[i:i + MAX_IDS_PER_BULK_DELETE] for i in range(0, len(ids), MAX_IDS_PER_BULK_DELETE)):
            try:
                removed = ctx.client.delete_leads(campaign_id, part)
                confirmed += removed
                ctx.drained_by_campaign[campaign_id] = ctx.drained_by_campaign.get(campaign_id, 0) + removed
            except InstantlyError as exc:
                phase.counts["delete_failed"] += len(part)
                if not is_service_level(exc):  # a service failure is one service letter, not one per lead
                    failures.extend(dead_letter(phase, "delete_lead", lead_id, email=leads[lead_id],
                                                campaign_id=campaign_id, lead_id=lead_id, error=str(exc),
                                                http_status=exc.http_status) for lead_id in part)
                continue
            deleted_ids.extend(part)
            gone.extend({"email": leads[lead_id], "op": "delete"} for lead_id in part if lead_id in owned)
    ctx.deleted_in_instantly += confirmed
    phase.counts["deleted_in_instantly"] += confirmed

    moved_gone, move_failures, moved_ids = _carry_out_moves(ctx, to_move, owned)
    gone += moved_gone
    failures += move_failures

    # 3. Then the state rows go; dead letters of earlier failed deletes and moves close.
    ctx.store.apply_state(gone, label="drain.state_gone")
    closed = resolution("drain", "delete_lead", retried.intersection(deleted_ids))
    closed += resolution("drain", "move_lead", moves_done | moving_before.intersection(moved_ids))
    ctx.store.record_dead_letters(failures + closed, label="drain.dead_letters")
    if phase.counts["delete_failed"]:
        ctx.report.warn(f"{phase.counts['delete_failed']} delete(s) in Instantly failed: the leads stay "
                        "'draining' (their outcome is recorded) and the next run deletes them")


def interest_of(lead: Mapping[str, Any]) -> int | None:
    """The lead's `lt_interest_status` as a whole number (None: not set; the classifier refuses other types)."""
    raw = lead.get("lt_interest_status")
    return int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def _reread_update(ctx: RunContext, row: StateRow, lead_id: str, current: Mapping[str, Any], decision: Classification,
                   dnc: list[dict[str, Any]]) -> tuple[dict[str, Any], str, str | None]:
    """A held or moving lead read again: the history update of its attempt as it stands now, its outcome,
    and the reason when it unsubscribed or bounced since (a DNC entry is added; None: the outcome stands).
    The update's reason follows the classifier (e.g. the status the rep set); it is written only when a policy
    column changes (UPDATE_HISTORY_POLICY_SQL), so a quiet run rewrites nothing. Raises UnknownInterestStatus."""
    outcome, reason, source = row.outcome or "replied", None, None
    if decision.outcome is not None and decision.suppression in DNC_SOURCES:
        outcome, reason, source = decision.outcome.value, decision.reason, DNC_SOURCES[decision.suppression]
    update = history_row(ctx, email=row.email, campaign_id=str(row.campaign_id), sequence_name=row.sequence_target,
                         status_final=outcome, completed_at=row.completed_at or ctx.now, attempt_num=row.attempt_num,
                         instantly_lead_id=lead_id, reason=reason or decision.reason, arm=row.arm,
                         interest_status=interest_of(current))
    if source is not None:
        dnc.append({"email": row.email, "domain": None, "source": source, "reason": reason})
    return update, outcome, reason


def _follow_holds(ctx: RunContext, state_rows: dict[str, dict[str, Any]], history_updates: list[dict[str, Any]],
                  dnc: list[dict[str, Any]], to_delete: dict[str, dict[str, str]],
                  to_move: dict[tuple[str, str], dict[str, str]], owned: set[str], held_now: set[str]) -> None:
    """The leads held in their campaign (state 'holding'), re-read by id (100 a call): a status set during
    the hold updates their attempt's history row (policy, interest status, return date); an unsubscribe or
    bounce drains them at once with a DNC entry; once the hold ends (or their policy no longer holds) they
    are moved to their policy's list ('moving' first) or, without one, deleted like any drained lead
    ('draining' first). A look-up that fails keeps them held: the next run
    reads them again. Fills the drain's lists; writes nothing."""
    phase = ctx.report.phase("drain")
    rows = {r.instantly_lead_id: r for r in ctx.state.with_status("holding")
            if r.status == "holding" and r.instantly_lead_id and r.campaign_id and r.email not in state_rows}
    if not rows:
        return
    seen, unread = _read_by_ids(ctx, list(rows), "held leads")
    for lead_id, row in rows.items():
        update: dict[str, Any] | None = None
        ended = row.hold_until is None or ctx.now >= row.hold_until
        current = seen.get(lead_id)
        if lead_id in unread:
            held_now.add(row.email)  # nothing known: held until it can be read
            continue
        outcome, reason, policy_name = row.outcome or "replied", None, None
        if current is not None:
            decision = classify_finished_lead(current, now=ctx.now, added_at=row.added_at,
                                              max_active_days=ctx.settings.max_active_days)
            if decision.action is Action.UNKNOWN:  # a lead object not understood: never acted on
                held_now.add(row.email)
                phase.counts["unknown_kept"] += 1
                phase.notes.append(f"kept a held lead that could not be classified: {decision.reason}")
                continue
            try:
                update, outcome, reason = _reread_update(ctx, row, lead_id, current, decision, dnc)
            except UnknownInterestStatus as exc:
                held_now.add(row.email)
                phase.notes.append(f"kept a held lead as it was: {exc} (map it in the outcome policies' "
                                   "[custom_labels])")
                continue
            if reason is not None:
                ended = True
                phase.counts["hold_ended: do_not_contact"] += 1
            history_updates.append(update)
            policy_name = str(update["policy"])
            if not ctx.settings.outcome_table[policy_name].hold_days:
                ended = True  # e.g. a rep set "not interested": nothing left to hold it for
            if ended and reason is None and in_subsequence(current):
                # A subsequence picked it up during the hold (e.g. one that starts on "Interested"): moving or
                # deleting it now would cut the subsequence off. Held until it leaves; an unsubscribe or a
                # bounce (reason set above) still ends the hold at once.
                ended = False
                phase.counts["kept: in a subsequence"] += 1
        if not ended:
            held_now.add(row.email)
            continue
        list_id = ctx.settings.outcome_table[policy_name].list_id if policy_name else ""
        if current is not None and list_id and reason is None:  # never an unsubscribe or a bounce
            if update is not None:
                update["in_instantly"] = InInstantly.HELD_THEN_MOVED.value
            phase.plan["hold ended: move"] += 1
            phase.counts["hold_ended"] += 1
            owned.add(lead_id)
            to_move.setdefault((str(row.campaign_id), list_id), {})[lead_id] = row.email
            state_rows[row.email] = {"email": row.email, "op": "upsert", "campaign_id": row.campaign_id,
                                     "status": "moving", "instantly_lead_id": lead_id, "outcome": outcome}
            continue
        if update is not None:
            update["in_instantly"] = InInstantly.HELD_THEN_DELETED.value
        phase.plan["hold ended: delete"] += 1
        phase.counts["hold_ended"] += 1
        owned.add(lead_id)
        to_delete.setdefault(str(row.campaign_id), {})[lead_id] = row.email
        state_rows[row.email] = {"email": row.email, "op": "upsert", "campaign_id": row.campaign_id,
                                 "status": "draining", "instantly_lead_id": lead_id, "outcome": outcome}


def _read_by_ids(ctx: RunContext, ids: list[str], what: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """These leads as Instantly shows them now (100 ids a call): the leads returned by id, and the ids
    whose look-up failed or was cut short (nothing known of them). An id in neither was not returned by a
    complete answer: Instantly no longer has that lead."""
    wanted = set(ids)
    seen: dict[str, dict[str, Any]] = {}
    unread: set[str] = set()
    for part in chunk(ids, 100):
        listing = ctx.client.iter_leads(ids=part)
        try:
            for lead in listing:
                lead_id = lead_id_of(lead)
                if lead_id in wanted:
                    seen[lead_id] = lead
        except InstantlyError as exc:
            ctx.report.phase("drain").notes.append(f"{what}' look-up failed: {exc.summary}")
            unread.update(lead_id for lead_id in part if lead_id not in seen)
            continue
        if not listing.complete:
            unread.update(lead_id for lead_id in part if lead_id not in seen)
    return seen, unread


def _same_campaign(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and bool(a) and a.lower() == b.lower()


def _follow_moves(ctx: RunContext, state_rows: dict[str, dict[str, Any]], history_updates: list[dict[str, Any]],
                  dnc: list[dict[str, Any]], to_delete: dict[str, dict[str, str]],
                  to_move: dict[tuple[str, str], dict[str, str]], owned: set[str]) -> tuple[set[str], set[str]]:
    """The leads an earlier run began to move (state 'moving'), re-read by id: one no longer in its
    campaign is done (in the list, or taken out by hand), its state row goes; one Instantly no longer has
    at all is done too (its outcome is in history); one still in its campaign is moved again to the list
    its policy names now (deleted, 'draining' first, if the policy has no list any more), or, if it
    unsubscribed or bounced meanwhile, drained at once with a DNC entry. A look-up that fails keeps them
    'moving'. Fills the drain's lists; writes nothing. Returns the ids of the 'moving' rows, and of those
    found done."""
    phase = ctx.report.phase("drain")
    rows = {r.instantly_lead_id: r for r in ctx.state.with_status("moving")
            if r.status == "moving" and r.instantly_lead_id and r.campaign_id and r.email not in state_rows}
    if not rows:
        return set(), set()
    done: set[str] = set()
    seen, unread = _read_by_ids(ctx, list(rows), "moving leads")
    for lead_id, row in rows.items():
        if lead_id in unread:
            phase.counts["moving: not read"] += 1
            continue
        current = seen.get(lead_id)
        if current is None or not _same_campaign(current.get("campaign"), row.campaign_id):
            # Out of its campaign: moved (by an earlier job that finished late), or removed by hand.
            phase.plan["moving: moved" if current is not None and current.get("list_id") else "moving: gone"] += 1
            state_rows[row.email] = {"email": row.email, "op": "delete"}
            done.add(lead_id)
            if current is not None and current.get("list_id"):
                ctx.drained_by_campaign[str(row.campaign_id)] = ctx.drained_by_campaign.get(str(row.campaign_id), 0) + 1
            continue
        decision = classify_finished_lead(current, now=ctx.now, added_at=row.added_at,
                                          max_active_days=ctx.settings.max_active_days)
        if decision.action is Action.UNKNOWN:
            phase.counts["unknown_kept"] += 1
            phase.notes.append(f"kept a moving lead that could not be classified: {decision.reason}")
            continue
        try:
            update, outcome, reason = _reread_update(ctx, row, lead_id, current, decision, dnc)
        except UnknownInterestStatus as exc:
            phase.notes.append(f"kept a moving lead as it was: {exc} (map it in the outcome policies' [custom_labels])")
            continue
        history_updates.append(update)
        list_id = ctx.settings.outcome_table[str(update["policy"])].list_id
        owned.add(lead_id)
        if list_id and reason is None:
            phase.plan["retry move"] += 1
            to_move.setdefault((str(row.campaign_id), list_id), {})[lead_id] = row.email
            continue
        held = ctx.settings.outcome_table[str(update["policy"])].hold_days
        update["in_instantly"] = (InInstantly.HELD_THEN_DELETED if held else InInstantly.DELETED).value
        phase.plan["moving: delete" if reason is None else "moving: do_not_contact"] += 1
        to_delete.setdefault(str(row.campaign_id), {})[lead_id] = row.email
        state_rows[row.email] = {"email": row.email, "op": "upsert", "campaign_id": row.campaign_id,
                                 "status": "draining", "instantly_lead_id": lead_id, "outcome": outcome}
    return set(rows), done


def _carry_out_moves(ctx: RunContext, to_move: Mapping[tuple[str, str], Mapping[str, str]],
                     owned: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """Move the leads (explicit ids of one campaign, MAX_IDS_PER_MOVE a call), follow each background job
    for at most MOVE_POLLS polls, then read the leads back by id. Returns the state deletes of the leads
    verified out of their campaign (in the target list, or gone), the dead letters of per-lead failures
    (a 4xx, a job that failed or was cancelled, a job done that left the lead where it was), and the ids
    verified. A service-level failure (5xx, 429, timeout) writes no per-lead letter; a job still running
    at the poll limit none either: the leads stay 'moving' and the next run reads them again."""
    phase = ctx.report.phase("drain")
    gone: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    verified: set[str] = set()
    sent: list[tuple[str, str, str, dict[str, str]]] = []  # (job id, campaign, list, lead id -> email)
    for (campaign_id, list_id), leads in to_move.items():
        for part in chunk(list(leads), MAX_IDS_PER_MOVE):
            try:
                job_id = ctx.client.move_leads(part, list_id, campaign_id)
            except InstantlyError as exc:
                phase.counts["move_failed"] += len(part)
                if not is_service_level(exc):
                    failures.extend(dead_letter(phase, "move_lead", lead_id, email=leads[lead_id],
                                                campaign_id=campaign_id, lead_id=lead_id, error=str(exc),
                                                http_status=exc.http_status) for lead_id in part)
                continue
            sent.append((job_id, campaign_id, list_id, {lead_id: leads[lead_id] for lead_id in part}))
    jobs = _follow_jobs(ctx, [job_id for job_id, *_rest in sent])
    for job_id, campaign_id, list_id, leads in sent:
        job = jobs.get(job_id)
        seen, unread = _read_by_ids(ctx, list(leads), "moved leads")
        moved = 0
        for lead_id, email in leads.items():
            if lead_id in unread:
                phase.counts["move_unverified"] += 1
                continue
            current = seen.get(lead_id)
            in_list = current is not None and current.get("list_id") == list_id
            if current is None or (in_list and not _same_campaign(current.get("campaign"), campaign_id)):
                verified.add(lead_id)
                moved += current is not None
                if lead_id in owned:
                    gone.append({"email": email, "op": "delete"})
                continue
            phase.counts["move_unverified"] += 1
            if job is not None and job.finished:
                what = ("finished, yet the lead is still in its campaign" if job.succeeded
                        else f"ended {job.status.value}")
                failures.append(dead_letter(phase, "move_lead", lead_id, email=email, campaign_id=campaign_id,
                                            lead_id=lead_id, error=f"move to list {list_id}: background job {job_id} "
                                                                   f"{what}"))
        phase.counts["moved_in_instantly"] += moved
        ctx.drained_by_campaign[campaign_id] = ctx.drained_by_campaign.get(campaign_id, 0) + moved
    if phase.counts["move_failed"] or phase.counts["move_unverified"]:
        ctx.report.warn(f"{phase.counts['move_failed'] + phase.counts['move_unverified']} move(s) to an Instantly "
                        "list not verified: the leads stay 'moving' (their outcome is recorded) and the next run "
                        "checks them and moves them again if they are still in their campaign")
    return gone, failures, verified


def _follow_jobs(ctx: RunContext, job_ids: list[str]) -> dict[str, BackgroundJob]:
    """Each job as last seen within MOVE_POLLS polls, MOVE_POLL_SECONDS apart (a bounded wait in the run).
    A job whose poll fails is left out: its leads are verified by reading them all the same."""
    phase = ctx.report.phase("drain")
    last: dict[str, BackgroundJob] = {}
    waiting = list(job_ids)
    for poll in range(MOVE_POLLS):
        if not waiting:
            break
        if poll:
            time.sleep(MOVE_POLL_SECONDS)
        still: list[str] = []
        for job_id in waiting:
            try:
                job = ctx.client.background_job(job_id)
            except InstantlyError as exc:
                phase.notes.append(f"following move job {job_id} failed: {exc.summary}")
                continue
            last[job_id] = job
            if not job.finished:
                still.append(job_id)
        waiting = still
    for job_id in waiting:
        phase.notes.append(f"move job {job_id} still {last[job_id].status.value} after {MOVE_POLLS} polls: "
                           "the next run checks its leads")
    for job in last.values():
        if job.finished and not job.succeeded:
            phase.notes.append(f"move job {job.id} ended {job.status.value}: its leads are moved again next run")
    return last
