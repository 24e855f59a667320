"""Test helpers that write rows straight into a warehouse (arranging a case, not product code)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from coldsync.settings import Settings
from coldsync.suppression import DOMAIN_ALIASES, DOTLESS_LOCAL_DOMAINS
from coldsync.warehouse.base import Rows, Typed, Warehouse
from coldsync.warehouse.demo_data import (
    DNC_FIELDS,
    HISTORY_FIELDS,
    INSERT_DNC_SQL,
    INSERT_HISTORY_SQL,
    INSERT_SOURCE_SQL,
    SOURCE_FIELDS,
    ensure_demo_source_table,
)
from coldsync.warehouse.migrate import ensure_schema

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def lead(email: Any, revenue: Any = Decimal(500_000), **extra: Any) -> dict[str, Any]:
    row = {"email": email, "first_name": "Ana", "last_name": "Smith", "company_name": "Acme",
           "domain": "acme.example", "location": "CA", "country": "United States", "annual_revenue": revenue}
    row.update(extra)
    return row


def build(warehouse: Warehouse, settings: Settings, sources: Sequence[Mapping[str, Any]] = (),
          as_of: dt.datetime | None = T0) -> None:
    """Schema + source table with the given rows, and the view's clock pinned at `as_of`."""
    warehouse.ensure_dataset()
    ensure_demo_source_table(warehouse)
    ensure_schema(warehouse, settings)
    if sources:
        add_sources(warehouse, sources)
    if as_of is not None:
        set_config(warehouse, "as_of", string=as_of.isoformat())


def add_sources(warehouse: Warehouse, rows: Sequence[Mapping[str, Any]]) -> None:
    warehouse.execute(INSERT_SOURCE_SQL, {"rows": Rows(SOURCE_FIELDS, list(rows))}, label="test.sources")


def add_dnc(warehouse: Warehouse, email: str | None = None, domain: str | None = None) -> None:
    row = {"email": email, "domain": domain, "source": "manual", "reason": "test", "added_at": T0}
    warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_FIELDS, [row])}, label="test.dnc")


def add_history(warehouse: Warehouse, email: str, completed_at: dt.datetime, attempt: int = 1) -> None:
    row = {"email": email, "campaign_id": "c-smb", "sequence_name": "SMB", "status_final": "completed",
           "completed_at": completed_at, "attempt_num": attempt, "reason": "test", "recorded_at": completed_at}
    warehouse.execute(INSERT_HISTORY_SQL, {"rows": Rows(HISTORY_FIELDS, [row])}, label="test.history")


def add_state(warehouse: Warehouse, email: str, status: str, campaign_id: str = "c-mid") -> None:
    warehouse.execute(
        "INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, status, added_at, updated_at) "
        "VALUES (@email, @campaign, @status, @at, @at)",
        {"email": email, "campaign": campaign_id, "status": status, "at": T0}, label="test.state")


def set_config(warehouse: Warehouse, key: str, *, integer: int | None = None, string: str | None = None) -> None:
    warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": key}, label="test.config")
    warehouse.execute(
        "INSERT INTO `{ds}.config` (key, value_int, value_string, updated_at) VALUES (@key, @i, @s, @at)",
        {"key": key, "i": Typed(integer, "INT64"), "s": Typed(string, "STRING"), "at": T0}, label="test.config")


def delete_config(warehouse: Warehouse, key: str) -> None:
    warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": key}, label="test.config")


def ready(warehouse: Warehouse) -> dict[str, dict[str, Any]]:
    rows = warehouse.query("SELECT * FROM `{ds}.v_ready_for_instantly` ORDER BY priority", label="test.ready")
    return {str(r["email"]): r for r in rows}


# The Gmail rules of the suppression key exist only for these real mail domains. Tests build such
# addresses at run time from the product's own constants, so no literal real-domain address is
# committed; every local part used with them is synthetic.
GMAIL: str = DOTLESS_LOCAL_DOMAINS[0]
GOOGLEMAIL: str = next(alias for alias, target in DOMAIN_ALIASES.items() if target == GMAIL)
GOOGLEMAIL_CASED: str = "GoogleMail.com"  # the alias as people type it, mixed case


def hold_lock(warehouse: Warehouse, run_id: str, acquired_at: dt.datetime, expires_at: dt.datetime,
              pid: int | None = None, host: str | None = None) -> None:
    """Set the run lock's permanent row as a holder left it (a killed run, an older version without pid)."""
    warehouse.execute(
        "UPDATE `{ds}.ops_run_lock` SET run_id = @run_id, acquired_at = @a, expires_at = @e, holder_pid = @pid, "
        "holder_host = @host WHERE name = 'sync'",
        {"run_id": run_id, "a": acquired_at, "e": expires_at, "pid": Typed(pid, "INT64"),
         "host": Typed(host, "STRING")}, label="test.hold_lock")


def lock_rows(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every row of ops_run_lock: (name, run_id, holder_pid, holder_host), ordered."""
    return warehouse.query("SELECT name, run_id, holder_pid, holder_host FROM `{ds}.ops_run_lock` ORDER BY run_id",
                           label="test.lock_rows")


def reads_campaign_daily(template: str, query: Mapping[str, Sequence[str]], today: dt.date | None = None) -> bool:
    """Whether a simulator request (its template and query) is one of coldsync.phases.analytics' hourly reads
    for ops_campaign_daily, so call budgets can count them apart: its windowed `/campaigns/analytics` sends
    full timestamps (the supply signals send dates); its `/campaigns/analytics/daily` ends on the run's
    `today` (the signals' 7 days end yesterday), or, without `today`, spans at most 2 days (runs less than a
    day apart; the signals' span 7)."""
    first = {name: (values[0] if values else "") for name, values in query.items()}
    if template == "/campaigns/analytics":
        return "T" in first.get("start_date", "")
    if template == "/campaigns/analytics/daily" and first.get("start_date") and first.get("end_date"):
        if today is not None:
            return dt.date.fromisoformat(first["end_date"]) == today
        span = dt.date.fromisoformat(first["end_date"]) - dt.date.fromisoformat(first["start_date"])
        return span <= dt.timedelta(days=1)
    return False
