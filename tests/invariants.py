"""Checks of the design's invariants 1-6, read from both edges: the warehouse and the simulator.

A `World` snapshots what it needs before a run; `check_after_run` returns the violations (empty
when every invariant holds). Used by the lifecycle tests and the reliability harness.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coldsync.instantly.simulator import InstantlySimulator
from coldsync.rules import Action, classify_finished_lead, normalize_email
from coldsync.settings import Settings
from coldsync.warehouse.base import StringArray, Warehouse

WRITE_ENDPOINTS = ("POST /leads/add", "DELETE /leads", "DELETE /leads/{id}", "POST /block-lists-entries/bulk-create",
                   "PATCH /leads/{id}", "POST /campaigns/{id}/activate", "POST /campaigns/{id}/pause")


@dataclass
class Snapshot:
    dnc_emails: set[str]
    dnc_domains: set[str]
    last_completed: dict[str, dt.datetime]
    leads: dict[str, dict[str, Any]]  # Instantly lead id -> lead, in the managed campaigns
    log_position: int
    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


def _rows(warehouse: Warehouse, sql: str) -> list[dict[str, Any]]:
    return warehouse.query(sql, label="test.invariants")


def table_contents(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every ops table's rows (sorted), to prove that nothing changed."""
    out = {}
    for table in ("ops_inst_state", "ops_lead_history", "ops_dnc", "ops_dead_letters", "config", "ops_run_log",
                  "ops_run_lock"):
        rows = _rows(warehouse, f"SELECT * FROM `{{ds}}.{table}`")  # noqa: S608 (fixed table names)
        out[table] = sorted(tuple(str(v) for v in r.values()) for r in rows)
    return out


def snapshot(warehouse: Warehouse, sim: InstantlySimulator, settings: Settings, *, tables: bool = False) -> Snapshot:
    dnc = _rows(warehouse, "SELECT email, domain FROM `{ds}.ops_dnc`")
    history = _rows(warehouse, "SELECT email, MAX(completed_at) AS last FROM `{ds}.ops_lead_history` GROUP BY email")
    leads = {}
    for campaign_id in (settings.smb_campaign_id, settings.midsize_campaign_id):
        for lead in sim.leads(campaign_id):
            leads[str(lead["id"])] = lead
    return Snapshot(
        dnc_emails={str(r["email"]).strip().lower() for r in dnc if r["email"]},
        dnc_domains={str(r["domain"]).strip().lower().lstrip("@").rstrip(".") for r in dnc if r["domain"]},
        last_completed={str(r["email"]): r["last"] for r in history},
        leads=leads,
        log_position=len(sim.request_log),
        tables=table_contents(warehouse) if tables else {},
    )


def added_emails(sim: InstantlySimulator, since: int) -> list[str]:
    """Emails of every lead sent in an add request after log position `since`."""
    out = []
    for record in sim.request_log[since:]:
        if record.endpoint == "POST /leads/add" and isinstance(record.request_body, dict):
            for lead in record.request_body.get("leads", []):
                email = normalize_email(lead.get("email")) if isinstance(lead, dict) else None
                if email:
                    out.append(email)
    return out


def check_after_run(warehouse: Warehouse, sim: InstantlySimulator, settings: Settings, before: Snapshot,
                    now: dt.datetime, *, dry_run: bool = False) -> list[str]:
    """Violations of invariants 1-5 (and 6 for a dry run) by the run that followed `before`."""
    problems: list[str] = []
    after = snapshot(warehouse, sim, settings, tables=dry_run)
    sent = added_emails(sim, before.log_position)
    # 1. nobody on the DNC list (as it stood before the run) is sent to Instantly
    for email in sent:
        if email in before.dnc_emails or email.split("@")[1] in before.dnc_domains:
            problems.append(f"invariant 1: a DNC address was sent ({email})")
    # 2. nobody re-added within the cooldown
    for email in sent:
        last = before.last_completed.get(email)
        if last is not None and now - last < dt.timedelta(days=settings.cooldown_days):
            problems.append(f"invariant 2: {email} re-added {(now - last).days} days after its last sequence")
    # 3. one lead per email across the managed campaigns
    counts = Counter(normalize_email(lead.get("email")) for lead in after.leads.values())
    problems += [f"invariant 3: {email} is in Instantly {n} times" for email, n in counts.items() if n > 1]
    # 4. inventory never above the cap (by the sync's adds: leads added by hand in Instantly can exceed
    # it, and then the sync must add nothing)
    if len(after.leads) > settings.inventory_cap and sent:
        problems.append(f"invariant 4: inventory {len(after.leads)} above cap {settings.inventory_cap}")
    # 5. every lead that left Instantly has a history row; every unsubscribe is on the DNC list
    gone = set(before.leads) - set(after.leads)
    if gone:
        recorded = {str(r["instantly_lead_id"]) for r in _rows(
            warehouse, "SELECT instantly_lead_id FROM `{ds}.ops_lead_history` WHERE instantly_lead_id IS NOT NULL")}
        for lead_id in gone:
            lead = before.leads[lead_id]
            if lead_id not in recorded:
                problems.append(f"invariant 5: lead {lead_id} left Instantly without a history row")
            address = normalize_email(lead.get("email"))
            if lead.get("status") == -2 and address not in after.dnc_emails:
                problems.append(f"invariant 5: unsubscribed lead {lead_id} deleted before its DNC entry")
    # 6. a dry run writes nothing anywhere
    if dry_run:
        writes = [r.endpoint for r in sim.request_log[before.log_position:] if r.endpoint in WRITE_ENDPOINTS]
        if writes:
            problems.append(f"invariant 6: dry run sent {writes}")
        if after.tables != before.tables:
            changed = [t for t in after.tables if after.tables[t] != before.tables.get(t)]
            problems.append(f"invariant 6: dry run changed tables {changed}")
    return problems


def check_before_delete(warehouse: Warehouse, sim: InstantlySimulator, lead_ids: list[str]) -> list[str]:
    """Invariant 5 at the moment of a delete: each lead about to leave Instantly already has its history
    row, and an unsubscribed one its DNC entry. Call it just before the delete request is sent."""
    leads = {lead_id: lead for lead_id in lead_ids if (lead := sim.lead(lead_id)) is not None}
    if not leads:
        return []
    recorded = {str(r["instantly_lead_id"]) for r in warehouse.query(
        "SELECT instantly_lead_id FROM `{ds}.ops_lead_history` WHERE instantly_lead_id IN UNNEST(@ids)",
        {"ids": StringArray(list(leads))}, label="test.invariants")}
    dnc = {str(r["email"]).strip().lower() for r in _rows(
        warehouse, "SELECT email FROM `{ds}.ops_dnc` WHERE email IS NOT NULL")}
    problems = []
    for lead_id, lead in leads.items():
        if lead_id not in recorded:
            problems.append(f"invariant 5: lead {lead_id} deleted before its history row was written")
        if lead.get("status") == -2 and normalize_email(lead.get("email")) not in dnc:
            problems.append(f"invariant 5: unsubscribed lead {lead_id} deleted before its DNC entry was written")
    return problems


def check_no_duplicates(warehouse: Warehouse) -> list[str]:
    """Nothing recorded twice: one history row per attempt and per Instantly lead, one DNC entry per
    value, one state row per email, one open dead letter per operation id."""
    checks = {
        "history attempt": "SELECT email AS k FROM `{ds}.ops_lead_history` "
                           "GROUP BY email, campaign_id, attempt_num HAVING COUNT(*) > 1",
        "history of one Instantly lead": "SELECT instantly_lead_id AS k FROM `{ds}.ops_lead_history` "
                                         "WHERE instantly_lead_id IS NOT NULL GROUP BY instantly_lead_id "
                                         "HAVING COUNT(*) > 1",
        "DNC entry": "SELECT COALESCE(email, domain) AS k FROM `{ds}.ops_dnc` GROUP BY email, domain "
                     "HAVING COUNT(*) > 1",
        "state row": "SELECT email AS k FROM `{ds}.ops_inst_state` GROUP BY email HAVING COUNT(*) > 1",
        "open dead letter": "SELECT id AS k FROM `{ds}.ops_dead_letters` "
                            "WHERE resolved_at IS NULL AND gave_up_at IS NULL GROUP BY id HAVING COUNT(*) > 1",
    }
    return [f"duplicate {what}: {row['k']}" for what, sql in checks.items() for row in _rows(warehouse, sql)]


def check_converged(warehouse: Warehouse, sim: InstantlySimulator, settings: Settings,
                    now: dt.datetime) -> list[str]:
    """What must hold once runs stop changing anything: the warehouse tracks exactly the leads in the
    managed campaigns, every one active with its Instantly id, and no finished lead is left behind."""
    problems = []
    state = {str(r["email"]): r for r in _rows(
        warehouse, "SELECT email, campaign_id, status, instantly_lead_id, added_at FROM `{ds}.ops_inst_state`")}
    leads: dict[str, dict[str, Any]] = {}
    for campaign_id in (settings.smb_campaign_id, settings.midsize_campaign_id):
        for lead in sim.leads(campaign_id):
            leads[str(lead["id"])] = lead
    tracked_ids = {str(r["instantly_lead_id"]) for r in state.values() if r["instantly_lead_id"]}
    for email, row in state.items():
        if row["status"] != "active":
            problems.append(f"state row of {email} left {row['status']}")
        found = leads.get(str(row["instantly_lead_id"]))
        if found is None:
            problems.append(f"state row of {email} points at no lead in the managed campaigns")
        elif normalize_email(found.get("email")) != email or found.get("campaign") != row["campaign_id"]:
            problems.append(f"state row of {email} disagrees with its Instantly lead")
    for lead_id, lead in leads.items():
        if lead_id not in tracked_ids:
            problems.append(f"lead {lead_id} in Instantly is not tracked by the warehouse")
            continue
        tracked = state.get(normalize_email(lead.get("email")) or "")
        added_at = tracked["added_at"] if tracked else None
        decision = classify_finished_lead(lead, now=now, added_at=added_at, max_active_days=settings.max_active_days)
        if decision.action is Action.DRAIN:
            problems.append(f"finished lead {lead_id} left in Instantly ({decision.reason})")
    return problems
