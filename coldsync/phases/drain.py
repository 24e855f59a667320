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
from collections.abc import Mapping
from typing import Any

from coldsync.instantly.client import MAX_IDS_PER_BULK_DELETE, MAX_IDS_PER_MOVE, BackgroundJob, LeadFilter
from coldsync.instantly.errors import InstantlyError, is_service_level
from coldsync.outcomes import InInstantly, UnknownInterestStatus
from coldsync.phases.blocklist import mirror_rows
from coldsync.phases.context import RunContext, dead_letter, history_row, lead_time, resolution
from coldsync.rules import (
    Action,
    Classification,
    Suppression,
    chunk,
    classify_finished_lead,
    lead_id_of,
    normalize_email,
    parse_timestamp,
    plan_drain,
)
from coldsync.store import StateRow, dnc_row

log = logging.getLogger("coldsync.drain")

# The list filters that find leads whose sequence ended, each with the cumulative analytics counter
# that grows when a lead enters that state (None: no counter; listed on full sweeps only). A listing
# runs when its counter moved since the last successful run listed it completely, so a quiet run costs
# one analytics call, not one listing per filter and campaign. A full sweep of every filter runs at
# least every FULL_SWEEP_INTERVAL, to catch what counters miss (skipped leads, lagging analytics,
# leads kept as unknown). Stale leads are found from the warehouse.
# In this order, each listing of a campaign leaving out (`excluded_ids`) the leads the campaign's
# earlier listings of the run returned (and the leads held or moving, re-read by id), so a lead under
# two filters is fetched once: REPLIED
# (email_reply_count >= 1) overlaps the status filters (a reply stops the sequence with status 3, so a
# replied lead is also COMPLETED); the status filters are disjoint. The small listings go first and
# COMPLETED, the large one, last: the ids excluded stay few where they travel in many requests.
FINISHED_FILTERS: dict[LeadFilter, str | None] = {
    LeadFilter.REPLIED: "replies",
    LeadFilter.BOUNCED: "bounced",
    LeadFilter.UNSUBSCRIBED: "unsubscribed",
    LeadFilter.SKIPPED: None,
    LeadFilter.COMPLETED: "completed",
}
MAX_EXCLUDED_IDS = 10_000
"""Ids a listing leaves out at most (`excluded_ids`): the spec sets no bound; assumed like bulk delete's
10,000 ids in one body. Beyond it the rest are read again and skipped here (found once, fetched twice)."""
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


def _find_finished(ctx: RunContext) -> tuple[list[dict[str, Any]], bool]:
    """Finished leads of the managed campaigns, and whether every listing made was read to its end."""
    phase = ctx.report.phase("drain")
    found: dict[str, dict[str, Any]] = {}
    complete = True
    for campaign in ctx.campaigns.values():
        previous = ctx.previous_watermarks.get(campaign.campaign_id, {})
        tracked_here = any(row.instantly_lead_id
                           for row in ctx.rows_in(campaign) if row.status != "pending")
        if campaign.leads_count == 0 and campaign.counters and not tracked_here:
            # Instantly counts no lead in the campaign and the warehouse tracks none there: nothing of ours is
            # there to list under any filter, so this is a sweep that found nothing. A count of 0 (or a missing
            # one) beside tracked leads is not believed: the campaign is listed as usual, so a lagging count can
            # never hold a finished lead (an unsubscribe) back.
            ctx.report.drain_watermarks[campaign.campaign_id] = {**dict(campaign.counters),
                                                                 "swept_at": ctx.now.isoformat()}
            continue
        sweep = _sweep_due(previous, ctx.now)
        watermark: dict[str, Any] = {k: v for k, v in previous.items() if k != "swept_at"}
        all_complete = True
        # Lead ids the next listings of this campaign leave out: those its listings returned so far, and from
        # the start the leads held or being moved there, which the drain re-reads by id (_follow_holds,
        # _follow_moves) and never takes from a listing.
        read: list[str] = [row.instantly_lead_id for row in ctx.state.with_status("holding", "moving")
                           if row.instantly_lead_id
                           and ctx.campaign(row.campaign_id) is campaign]
        for filt, counter in FINISHED_FILTERS.items():
            current = campaign.counters.get(counter) if counter else None
            unchanged = counter is None or (current is not None and previous.get(counter) == current)
            if unchanged and not sweep:
                continue
            # Read to the empty page: a page shorter than the limit in the middle of a listing (a server that
            # drops excluded ids after cutting the page) must not end it, since its counter is then taken as seen.
            listing = ctx.client.iter_leads(campaign=campaign.campaign_id, filter=filt,
                                            excluded_ids=read[:MAX_EXCLUDED_IDS])
            try:
                for lead in listing:
                    lead_id = lead_id_of(lead)
                    if lead_id is None:
                        phase.counts["kept_without_id"] += 1
                    elif lead.get("campaign", campaign.campaign_id) == campaign.campaign_id:
                        if lead_id not in found:
                            read.append(lead_id)
                        found.setdefault(lead_id, lead)
            except InstantlyError as exc:
                complete = all_complete = False
                phase.notes.append(f"listing {filt.value} of {campaign.label} failed: {exc.summary}")
                continue
            if not listing.complete:
                complete = all_complete = False
                phase.notes.append(f"listing {filt.value} of {campaign.label} cut short ({listing.stop_reason})")
                continue
            if counter is not None and current is not None:
                watermark[counter] = current
        if sweep and all_complete:
            watermark["swept_at"] = ctx.now.isoformat()
        elif "swept_at" in previous:
            watermark["swept_at"] = previous["swept_at"]
        ctx.report.drain_watermarks[campaign.campaign_id] = watermark
    return list(found.values()), complete


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


def run_drain(ctx: RunContext) -> None:
    phase = ctx.report.phase("drain")
    phase.ran = True
    by_id, by_email = ctx.state.by_lead_id, ctx.state.by_email
    finished, complete = _find_finished(ctx)
    if not complete:
        ctx.report.warn("some finished-lead listings failed or were cut short: the next run drains the rest")
    finished_ids = {str(lead["id"]) for lead in finished}
    candidates = finished + _find_stale(ctx, finished_ids)
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

    plan = plan_drain(((lead, (s.added_at if (s := state_of(lead)) else None)) for lead in candidates),
                      ctx.now, ctx.settings.max_active_days)
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

    if ctx.dry_run:
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
        # net: the warehouse entry below still precedes every delete).
        dnc = mirror_rows(ctx, [dnc_row(email=r["email"], source=r["source"], reason=r["reason"]) for r in dnc])
    phase.counts["dnc_added"] += ctx.store.add_dnc(dnc, label="drain.dnc")
    ctx.store.apply_state(list(state_rows.values()), label="drain.state_draining")
    for item in history:
        phase.counts[f"drained:{item['status_final']}"] += 1

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
