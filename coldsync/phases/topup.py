"""TOP-UP: add fresh eligible leads, routed by segment, up to the inventory cap.

Intent first (invariant 5): the chosen leads are written to ops_inst_state as 'pending' in one
statement BEFORE the bulk add, so a crash mid-add leaves rows that housekeeping reconciles by email
(adopt the lead, or free the row so the lead is picked again). The add uses skip_if_in_workspace,
so Instantly itself refuses a second copy of anyone already in the workspace (invariant 3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from coldsync.instantly.client import LeadOutcome
from coldsync.phases.blocklist import confirm_blocklisted, entry_dnc_row
from coldsync.phases.context import RunContext, dead_letter
from coldsync.rules import Segment, normalize_email, plan_top_up

log = logging.getLogger("coldsync.topup")


def lead_payload(row: Mapping[str, Any], email: str) -> dict[str, Any]:
    """The Instantly lead for a ready row: names, company, and custom variables for the templates."""
    payload: dict[str, Any] = {"email": email}
    for key in ("first_name", "last_name", "company_name"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            payload[key] = value.strip()[:500]
    variables = {
        "company": row.get("company_name"), "domain": row.get("domain"),
        "location": row.get("location"), "country": row.get("country"),
    }
    payload["custom_variables"] = {k: str(v).strip()[:500] for k, v in variables.items()
                                   if v is not None and str(v).strip()}
    return payload


def measure_inventory(ctx: RunContext) -> int | None:
    """Leads in the managed campaigns: Instantly's count, never below what the warehouse tracks.

    None when Instantly could not be measured: then nothing is added this run (invariant 4).
    """
    counts = [c.leads_count for c in ctx.campaigns.values()]
    tracked = sum(1 for row in ctx.state if row.campaign_id in ctx.campaign_ids())
    ctx.report.inventory_warehouse = tracked
    if not counts or any(c is None for c in counts):
        return None
    measured = sum(c for c in counts if c is not None)
    if abs(measured - tracked) > max(10, measured // 20):
        ctx.report.warn(f"Instantly holds {measured} leads in the managed campaigns but the warehouse tracks "
                        f"{tracked}: housekeeping reconciles; the larger figure is used for the cap")
    return max(measured, tracked)


def run_topup(ctx: RunContext, inventory: int | None) -> None:
    phase = ctx.report.phase("topup")
    phase.ran = True
    settings = ctx.settings
    ready = ctx.report.ready_by_segment
    plan = plan_top_up(
        target=settings.target_new_leads_per_run, cap=settings.inventory_cap, inventory=inventory,
        remaining_in_plan=None,
        ready_by_segment={segment: ready.get(segment.value, 0) for segment in Segment},
        campaign_active={segment: c.active for segment, c in ctx.campaigns.items()},
        allow_paused=settings.allow_paused_campaigns,
    )
    for warning in plan.warnings:
        ctx.report.warn(warning)
    phase.notes.append(f"room {plan.room}: {plan.reason}")
    rows = ctx.store.read_ready(plan.room, sorted(s.value for s in plan.allowed_segments))

    chosen: dict[Segment, list[tuple[str, dict[str, Any], Mapping[str, Any]]]] = {}
    rejected: list[dict[str, Any]] = []
    for row in rows:
        email = normalize_email(row.get("email"))
        if email is None:
            # The view's pattern and normalize_email are one rule; a disagreement is a bug, never a send.
            phase.counts["refused_at_send"] += 1
            rejected.append(dead_letter(phase, "add_lead", str(row.get("email")), error="invalid email in view",
                                        give_up_reason="invalid email"))
            continue
        segment = Segment(str(row["sequence_target"]))
        chosen.setdefault(segment, []).append((email, lead_payload(row, email), row))
    for segment, items in chosen.items():
        phase.plan[f"add {segment.value}"] += len(items)
    if ctx.dry_run or not chosen:
        if rejected and not ctx.dry_run:
            ctx.store.record_dead_letters(rejected, label="topup.dead_letters")
        return

    # 1. Record intent.
    intents = [{"email": email, "op": "upsert", "campaign_id": ctx.campaigns[segment].campaign_id,
                "sequence_target": segment.value, "status": "pending", "instantly_lead_id": None,
                "attempt_num": int(row.get("attempt_num") or 1), "outcome": None, "added_at": ctx.now}
               for segment, items in chosen.items() for email, _payload, row in items]
    ctx.check_deadline("the top-up's writes")
    ctx.store.apply_state(intents, label="topup.intent")

    # 2. Push, 3. settle every lead's outcome.
    state: list[dict[str, Any]] = []
    dnc: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    letters = rejected
    unconfirmed: list[tuple[str, str, str]] = []  # (email, campaign, kind) Instantly counted but did not name
    for segment, items in chosen.items():
        campaign_id = ctx.campaigns[segment].campaign_id
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            # Out of time: this segment's intents stay 'pending'; the next run frees or adopts them.
            ctx.report.warn(f"stopped before adding {segment.value} leads: the run neared its lock lease")
            continue
        result = ctx.client.add_leads(campaign_id, [payload for _e, payload, _r in items],
                                      skip_if_in_workspace=True, chunk_size=settings.batch_size)
        if result.remaining_in_plan is not None and result.remaining_in_plan <= 0:
            ctx.report.warn("the Instantly plan's lead limit is reached: no more leads can be uploaded")
        for outcome in result.outcomes:
            email, _payload, source_row = items[outcome.index]
            _settle(ctx, outcome, email, campaign_id, source_row, state, dnc, history, letters, unconfirmed)
    _recheck(ctx, unconfirmed, dnc, letters)
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
    elif kind == "skipped" and outcome.lead_id and outcome.campaign_id in ctx.campaign_ids():
        # Already in the other managed campaign: track it where it is (one lead per email).
        phase.counts["adopted"] += 1
        segment = ctx.segment_of_campaign(outcome.campaign_id)
        state.append({"email": email, "op": "upsert", "status": "active", "instantly_lead_id": outcome.lead_id,
                      "campaign_id": outcome.campaign_id, "sequence_target": segment.value if segment else None,
                      "attempt_num": None, "outcome": None, "added_at": None})
    elif kind == "skipped":
        # In a campaign we do not manage: not ours to send; rest it for a cooldown instead of retrying.
        state.append({"email": email, "op": "delete"})
        history.append({"email": email, "campaign_id": campaign_id, "sequence_name": row.get("sequence_target"),
                        "status_final": "in_workspace", "completed_at": ctx.now,
                        "attempt_num": int(row.get("attempt_num") or 1), "instantly_lead_id": outcome.lead_id,
                        "reason": "already in another campaign of the workspace"})
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
    elif kind in ("failed", "plan_limit", "duplicate_in_request"):
        # Not added: free the row, so the lead is ready again next run; record why.
        state.append({"email": email, "op": "delete"})
        http = outcome.error.http_status if outcome.error else None
        letters.append(dead_letter(phase, "add_lead", email, email=email, campaign_id=campaign_id, error=error,
                                   http_status=http))
    else:
        # duplicate without an id, or unknown: leave it pending; housekeeping looks it up by email.
        phase.counts["left_pending"] += 1
