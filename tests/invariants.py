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
from coldsync.rules import normalize_email
from coldsync.settings import Settings
from coldsync.warehouse.base import Warehouse

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
    # 4. inventory never above the cap
    if len(after.leads) > settings.inventory_cap:
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
