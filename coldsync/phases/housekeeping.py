"""HOUSEKEEPING: reconcile what a crash or a manual change left behind, and retire dead letters.

- 'pending' rows of earlier runs: looked up by email in Instantly; adopted when the lead is in a
  managed campaign, else freed (the lead becomes ready again).
- When Instantly's count of a managed campaign disagrees with the warehouse, the campaign is listed
  (only then: this costs one call per 100 leads) to adopt orphans (leads the warehouse does not know)
  and to close leads that vanished from Instantly without passing through the drain.
- Open dead letters: closed when their operation is no longer needed; given up past the retry limit.
- A lead found in Instantly (a pending row's look-up, an orphan) whose person is suppressed is never
  adopted: it gets a history row `suppressed` and state 'draining' FIRST, then is deleted by id; a
  failed delete is retried by the next run's drain like any other.
- The do-not-contact list is mirrored both ways with Instantly's block list (phases/blocklist.py).
"""

from __future__ import annotations

import logging
from typing import Any

from coldsync.instantly.errors import InstantlyError
from coldsync.phases import blocklist
from coldsync.phases.context import RunContext, dead_letter
from coldsync.phases.drain import SUPPRESSED_OUTCOME
from coldsync.rules import chunk, lead_id_of, normalize_email
from coldsync.suppression import address_key

log = logging.getLogger("coldsync.housekeeping")


def _take_out(ctx: RunContext, email: str, campaign_id: str, lead_id: str, how: str, sequence: str | None,
              attempt: int | None, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    """Record a suppressed lead found in Instantly (history `suppressed`, state 'draining'); the delete
    follows the writes (run_housekeeping), and a failed one is retried by the next drain."""
    managed = ctx.campaign(campaign_id)
    sequence = sequence or (managed.route if managed else None)
    arm = managed.arm if managed else None
    history.append({"email": email, "campaign_id": campaign_id, "sequence_name": sequence,
                    "status_final": SUPPRESSED_OUTCOME, "completed_at": ctx.now, "attempt_num": attempt,
                    "instantly_lead_id": lead_id, "reason": f"on the do-not-contact list (by {how}): never adopted",
                    "arm": arm})
    state.append({"email": email, "op": "upsert", "status": "draining", "instantly_lead_id": lead_id,
                  "campaign_id": campaign_id, "sequence_target": sequence, "attempt_num": attempt,
                  "outcome": SUPPRESSED_OUTCOME, "added_at": None, "arm": arm})
    ctx.take_out.setdefault(campaign_id, {})[lead_id] = email


def _reconcile_pending(ctx: RunContext, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    phase = ctx.report.phase("housekeeping")
    pending = [row for row in ctx.state if row.status == "pending" and row.run_id != ctx.run_id]
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
            _take_out(ctx, row.email, str(lead.get("campaign")), str(lead_id_of(lead)), suppressed[row.email],
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


def _reconcile_campaigns(ctx: RunContext, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    """List a campaign fully only when Instantly's count and the warehouse's disagree."""
    phase = ctx.report.phase("housekeeping")
    for campaign in ctx.campaigns.values():
        if campaign.leads_count is None or campaign.campaign_id not in ctx.mismatched_campaigns:
            continue
        tracked = [r for r in ctx.state if ctx.campaign(r.campaign_id) is campaign and r.status != "pending"]
        listing = ctx.client.iter_leads(campaign=campaign.campaign_id)
        try:
            leads = list(listing)
        except InstantlyError as exc:
            phase.notes.append(f"reconcile listing of {campaign.label} failed: {exc.summary}")
            continue
        if not listing.complete:
            phase.notes.append(f"reconcile listing of {campaign.label} cut short: retried next run")
            continue
        known_ids = {r.instantly_lead_id for r in ctx.state if r.instantly_lead_id}
        known_emails = {r.email for r in ctx.state}
        known_keys = {k for r in ctx.state if (k := address_key(r.email))}
        seen_ids: set[str] = set()
        unreadable = 0
        suppressed = ctx.store.suppressed_emails(
            e for lead in leads if lead_id_of(lead) not in known_ids and (e := normalize_email(lead.get("email"))))
        for lead in leads:
            lead_id = lead_id_of(lead)
            if lead_id is None:
                unreadable += 1
                continue
            seen_ids.add(lead_id)
            email = normalize_email(lead.get("email"))
            if lead_id in known_ids or email is None:
                continue
            if email in suppressed and email not in known_emails:
                phase.plan["remove suppressed"] += 1
                known_emails.add(email)
                _take_out(ctx, email, campaign.campaign_id, lead_id, suppressed[email], campaign.route, None,
                          state, history)
                continue
            key = address_key(email)
            if email in known_emails or key in known_keys:
                if email not in known_emails:
                    # The same person (a +tag or Gmail-dot variant) is already tracked: a second copy added
                    # by hand is not adopted, and not deleted either (a person put it there): reported.
                    phase.plan["not adopted: same person as a tracked lead"] += 1
                continue
            phase.plan["adopt orphan"] += 1
            known_emails.add(email)
            if key:
                known_keys.add(key)
            state.append({"email": email, "op": "upsert", "status": "active", "instantly_lead_id": lead_id,
                          "campaign_id": campaign.campaign_id, "sequence_target": campaign.route,
                          "attempt_num": None, "outcome": None, "added_at": None, "arm": campaign.arm})
        if unreadable:
            # A lead listed without its id might be any tracked one: absence is not proven this run.
            phase.notes.append(f"reconcile listing of {campaign.label} had {unreadable} lead(s) without a usable "
                               "id: vanished leads are not closed this run")
            continue
        for row in tracked:
            if row.status == "active" and row.instantly_lead_id and row.instantly_lead_id not in seen_ids:
                # Gone from Instantly without our drain (deleted by hand): record it, then forget it.
                phase.plan["close vanished"] += 1
                history.append({"email": row.email, "campaign_id": campaign.campaign_id,
                                "sequence_name": row.sequence_target, "status_final": "removed",
                                "completed_at": ctx.now, "attempt_num": row.attempt_num,
                                "instantly_lead_id": row.instantly_lead_id,
                                "reason": "no longer in Instantly (removed outside coldsync)", "arm": row.arm})
                state.append({"email": row.email, "op": "delete"})


def _retire_dead_letters(ctx: RunContext, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    phase = ctx.report.phase("housekeeping")
    by_email = ctx.state_by_email()
    rows: list[dict[str, Any]] = []
    limit = ctx.settings.dead_letter_max_retries
    if not ctx.open_dead_letters:
        return rows  # none were open when the run began (this run's new ones have no retries yet)
    for letter in ctx.store.open_dead_letters():
        base = {k: letter.get(k) for k in ("id", "phase", "operation", "email", "campaign_id", "instantly_lead_id",
                                           "http_status", "error_text")}
        email = letter.get("email")
        current = by_email.get(str(email)) if email else None
        delete_done = letter["operation"] == "delete_lead" and current is None
        add_done = letter["operation"] == "add_lead" and current is not None and current.status == "active"
        if delete_done or add_done:
            rows.append({**base, "resolve": True, "give_up_reason": None})
            phase.plan["resolve dead letter"] += 1
        elif int(letter.get("retry_count") or 0) >= limit:
            reason = f"failed {int(letter.get('retry_count') or 0) + 1} times (limit {limit})"
            rows.append({**base, "resolve": False, "give_up_reason": reason})
            phase.plan["give up dead letter"] += 1
            if letter["operation"] == "add_lead" and email and current is None:
                # Stop picking a lead that keeps failing: rest it for one cooldown, with the reason.
                failed_in = ctx.campaign(str(letter.get("campaign_id") or ""))
                history.append({"email": str(email), "campaign_id": str(letter.get("campaign_id") or ""),
                                "sequence_name": failed_in.route if failed_in else None, "status_final": "failed",
                                "completed_at": ctx.now, "attempt_num": None, "instantly_lead_id": None,
                                "reason": reason, "arm": failed_in.arm if failed_in else None})
    return rows


def run_housekeeping(ctx: RunContext) -> None:
    phase = ctx.report.phase("housekeeping")
    phase.ran = True
    state: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    earlier_pending = any(r.status == "pending" and r.run_id != ctx.run_id for r in ctx.state)
    if not ctx.dry_run and (earlier_pending or ctx.mismatched_campaigns):
        ctx.state = ctx.store.read_state()  # as the drain and the top-up left it
    _reconcile_pending(ctx, state, history)
    _reconcile_campaigns(ctx, state, history)
    letters = _retire_dead_letters(ctx, history)
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


def _delete_taken_out(ctx: RunContext) -> list[dict[str, Any]]:
    """Delete, by explicit ids, the suppressed leads recorded above; their state rows then go."""
    phase = ctx.report.phase("housekeeping")
    gone: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for campaign_id, leads in ctx.take_out.items():
        for part in chunk(list(leads), 1000):
            try:
                ctx.deleted_in_instantly += ctx.client.delete_leads(campaign_id, part)
            except InstantlyError as exc:
                failures.extend(dead_letter(phase, "delete_lead", lead_id, email=leads[lead_id],
                                            campaign_id=campaign_id, lead_id=lead_id, error=str(exc),
                                            http_status=exc.http_status) for lead_id in part)
                continue
            gone.extend({"email": leads[lead_id], "op": "delete"} for lead_id in part)
    ctx.store.apply_state(gone, label="housekeeping.state_gone")
    if failures:
        ctx.report.warn(f"{len(failures)} delete(s) of suppressed leads failed: retried by the next run")
    return failures
