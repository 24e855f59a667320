"""HOUSEKEEPING: reconcile what a crash or a manual change left behind, and retire dead letters.

- 'pending' rows of earlier runs: looked up by email in Instantly; adopted when the lead is in a
  managed campaign, else freed (the lead becomes ready again).
- The tracked leads are reconciled with Instantly (phases/reconcile.py): a rolling audit by id finds
  leads removed or moved by hand (confirmed by email before anything is closed), and a campaign whose
  count still disagrees with the warehouse is listed, a bounded number of pages a run, to adopt
  orphans (leads the warehouse does not know).
- Open dead letters: closed when their operation is no longer needed (an add once its lead is tracked
  active, also when this run adopted or added it); given up past the retry limit.
- A lead found in Instantly (a pending row's look-up, an orphan) whose person is suppressed is never
  adopted: it gets a history row `suppressed` and state 'draining' FIRST, then is deleted by id; a
  failed delete is retried by the next run's drain like any other.
- The do-not-contact list is mirrored both ways with Instantly's block list (phases/blocklist.py).
"""

from __future__ import annotations

import logging
from typing import Any

from coldsync.instantly.client import MAX_IDS_PER_BULK_DELETE
from coldsync.instantly.errors import InstantlyError, is_service_level
from coldsync.outcomes import InInstantly
from coldsync.phases import blocklist
from coldsync.phases.analytics import record_campaign_daily
from coldsync.phases.context import RunContext, TrackedState, dead_letter, history_row
from coldsync.phases.reconcile import needs_fresh_state, reconcile_campaigns, take_out
from coldsync.rules import GIVE_UP_OUTCOME, lead_id_of

log = logging.getLogger("coldsync.housekeeping")


def _reconcile_pending(ctx: RunContext, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    phase = ctx.report.phase("housekeeping")
    pending = [row for row in ctx.state.with_status("pending") if row.run_id != ctx.run_id]
    if not pending:
        return
    try:
        found = ctx.client.find_leads_by_email(row.email for row in pending)
    except InstantlyError as exc:
        phase.notes.append(f"pending look-up failed, retried next run: {exc.summary}")
        return
    suppressed = ctx.store.suppressed_emails(row.email for row in pending)
    for row in pending:
        here = [lead for lead in found.get(row.email, []) if ctx.manages(lead.get("campaign")) and lead_id_of(lead)]
        if here and row.email in suppressed:
            lead = here[0]
            phase.plan["remove suppressed"] += 1
            take_out(ctx, row.email, str(lead.get("campaign")), str(lead_id_of(lead)), suppressed[row.email],
                     row.sequence_target, row.attempt_num, state, history)
        elif here:
            lead = here[0]
            phase.plan["adopt pending"] += 1
            found_in = ctx.campaign(str(lead.get("campaign")))
            state.append({"email": row.email, "op": "upsert", "status": "active",
                          "instantly_lead_id": lead_id_of(lead), "campaign_id": str(lead.get("campaign")),
                          "sequence_target": found_in.route if found_in else None, "attempt_num": None,
                          "outcome": None, "added_at": None, "arm": found_in.arm if found_in else None})
        else:
            phase.plan["free pending"] += 1
            state.append({"email": row.email, "op": "delete"})


def _planned_status(ctx: RunContext, state: list[dict[str, Any]]) -> dict[str, str | None]:
    """Each tracked lead's status as this run leaves it: the state read, then housekeeping's own planned
    changes on top (an orphan or a pending row adopted, a lead closed), in order; None: not tracked."""
    status: dict[str, str | None] = {email: row.status for email, row in ctx.state.by_email.items()}
    for change in state:
        email = str(change["email"])
        if change.get("op") != "upsert":
            status[email] = None
        elif change.get("status"):  # an upsert without a status keeps the row's
            status[email] = str(change["status"])
    return status


def _retire_dead_letters(ctx: RunContext, history: list[dict[str, Any]],
                         state: list[dict[str, Any]]) -> list[dict[str, Any]]:
    phase = ctx.report.phase("housekeeping")
    # Not the state read alone: a lead this run adopted is tracked, and its add letter is done, not given up.
    tracked = _planned_status(ctx, state)
    rows: list[dict[str, Any]] = []
    limit = ctx.settings.dead_letter_max_retries
    if not ctx.open_dead_letters:
        return rows  # none were open when the run began (this run's new ones have no retries yet)
    for letter in ctx.store.open_dead_letters():
        if letter.get("phase") == "service":
            continue  # an Instantly outage: closed by the run that finds the operation working (sync.py)
        base = {k: letter.get(k) for k in ("id", "phase", "operation", "email", "campaign_id", "instantly_lead_id",
                                           "http_status", "error_text")}
        email = letter.get("email")
        current = tracked.get(str(email)) if email else None
        # A delete or a move is done once its lead's state row is gone (the drain removes it when verified).
        delete_done = letter["operation"] in ("delete_lead", "move_lead") and current is None
        add_done = letter["operation"] == "add_lead" and current == "active"
        if delete_done or add_done:
            rows.append({**base, "resolve": True, "give_up_reason": None})
            phase.plan["resolve dead letter"] += 1
        elif int(letter.get("retry_count") or 0) >= limit:
            reason = f"failed {int(letter.get('retry_count') or 0) + 1} times (limit {limit})"
            rows.append({**base, "resolve": False, "give_up_reason": reason})
            phase.plan["give up dead letter"] += 1
            if letter["operation"] == "add_lead" and email and current is None:
                # Stop picking a lead that keeps failing: rest it GIVE_UP_COOLDOWN_DAYS (not the full cooldown: it was
                # never emailed), with the reason.
                failed_in = ctx.campaign(str(letter.get("campaign_id") or ""))
                history.append(history_row(ctx, email=str(email), campaign_id=str(letter.get("campaign_id") or ""),
                                           sequence_name=failed_in.route if failed_in else None,
                                           status_final=GIVE_UP_OUTCOME, completed_at=ctx.now, attempt_num=None,
                                           instantly_lead_id=None, reason=reason,
                                           arm=failed_in.arm if failed_in else None,
                                           in_instantly=InInstantly.NOT_ADDED.value))
    return rows


def run_housekeeping(ctx: RunContext) -> None:
    phase = ctx.report.phase("housekeeping")
    phase.ran = True
    state: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    earlier_pending = any(r.run_id != ctx.run_id for r in ctx.state.with_status("pending"))
    topup = ctx.report.phase("topup").counts
    # The top-up's adds and adoptions are in the state only when it is read again: a letter of a lead it added
    # is then closed, not given up.
    letters_meet_adds = bool(ctx.open_dead_letters) and bool(topup["added"] or topup["adopted"])
    if (not ctx.dry_run and not ctx.store.state_current
            and (earlier_pending or ctx.mismatched_campaigns or needs_fresh_state(ctx) or letters_meet_adds)):
        # As the drain and the top-up left it; a run that wrote no state since its read (a steady run) reads it
        # once (issue 16 target 5).
        ctx.state = TrackedState(ctx.store.read_state())
    _reconcile_pending(ctx, state, history)
    reconcile_campaigns(ctx, state, history)
    letters = _retire_dead_letters(ctx, history, state)
    twins = phase.plan["not adopted: same person as a tracked lead"]
    if twins:
        ctx.report.warn(f"{twins} lead(s) added by hand in Instantly are the same person as a tracked lead (a +tag "
                        "or Gmail-dot variant): not adopted; delete the extra copy in Instantly to avoid a double "
                        "sequence")
    if ctx.settings.blocklist_mirror:
        blocklist.pull(ctx)
        blocklist.push(ctx)
    if ctx.dry_run:
        return
    ctx.check_deadline("housekeeping's writes")
    ctx.store.record_history(history)
    ctx.store.apply_state(state, label="housekeeping.state")
    letters += _delete_taken_out(ctx)
    ctx.store.record_dead_letters(letters, label="housekeeping.dead_letters")
    phase.counts.update(phase.plan)
    record_campaign_daily(ctx)  # hourly per campaign; its failures are notes, never the run's


def _delete_taken_out(ctx: RunContext) -> list[dict[str, Any]]:
    """Delete, by explicit ids, the suppressed leads recorded above; their state rows then go."""
    phase = ctx.report.phase("housekeeping")
    gone: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for campaign_id, leads in ctx.take_out.items():
        ids = list(leads)
        for part in (ids[i:i + MAX_IDS_PER_BULK_DELETE] for i in range(0, len(ids), MAX_IDS_PER_BULK_DELETE)):
            try:
                ctx.deleted_in_instantly += ctx.client.delete_leads(campaign_id, part)
            except InstantlyError as exc:
                phase.counts["delete_failed"] += len(part)
                if not is_service_level(exc):  # a service failure is one service letter, not one per lead
                    failures.extend(dead_letter(phase, "delete_lead", lead_id, email=leads[lead_id],
                                                campaign_id=campaign_id, lead_id=lead_id, error=str(exc),
                                                http_status=exc.http_status) for lead_id in part)
                continue
            gone.extend({"email": leads[lead_id], "op": "delete"} for lead_id in part)
    ctx.store.apply_state(gone, label="housekeeping.state_gone")
    if phase.counts["delete_failed"]:
        ctx.report.warn(f"{phase.counts['delete_failed']} delete(s) of suppressed leads failed: retried by the "
                        "next run")
    return failures
