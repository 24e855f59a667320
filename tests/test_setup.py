"""setup.py, the schema tool: idempotent, upgrades without loss, dry run changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coldsync.settings import Settings
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.migrate import SchemaError, ensure_schema, read_config
from coldsync.warehouse.schema import INST_STATE, TABLES, VIEW_NAME
from tests.helpers import add_sources, build, lead, ready

REPO = Path(__file__).resolve().parent.parent


def _snapshot(warehouse: Warehouse) -> dict[str, object]:
    tables = {spec.name: warehouse.existing_columns(spec.name) for spec in TABLES}
    config = warehouse.query("SELECT key, value_int, value_string, updated_at FROM `{ds}.config` ORDER BY key",
                             label="test.config")
    return {"tables": tables, "config": config}


def test_setup_twice_changes_nothing(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A second run of the schema tool changes no table, column or config row."""
    build(raw_warehouse, settings, [lead("a@example.com")], as_of=None)
    before = _snapshot(raw_warehouse)
    report = ensure_schema(raw_warehouse, settings)
    assert not report.changed, report.actions
    assert _snapshot(raw_warehouse) == before
    assert list(ready(raw_warehouse)) == ["a@example.com"]


def test_config_is_seeded_with_defaults_and_ops_changes_survive(raw_warehouse: Warehouse,
                                                              settings: Settings) -> None:
    """Seeded defaults: threshold 1,000,000, cap 24,000, cooldown 90, 100 per run; a changed row is kept."""
    build(raw_warehouse, settings, as_of=None)
    config = read_config(raw_warehouse)
    assert (config["smb_revenue_threshold"], config["inventory_cap"], config["cooldown_days"],
            config["target_new_leads_per_run"]) == (1_000_000, 24_000, 90, 100)
    raw_warehouse.execute("UPDATE `{ds}.config` SET value_int = 30 WHERE key = 'cooldown_days'", label="test")
    ensure_schema(raw_warehouse, settings)
    assert read_config(raw_warehouse)["cooldown_days"] == 30


def test_upgrade_from_older_schema_adds_columns_and_keeps_rows(raw_warehouse: Warehouse,
                                                              settings: Settings) -> None:
    """On an older ops_inst_state lacking columns (and holding rows), setup adds the columns, keeps the rows."""
    raw_warehouse.ensure_dataset()
    old = type(INST_STATE)(INST_STATE.name, INST_STATE.columns[:4], "older version")
    raw_warehouse.create_table(old)
    raw_warehouse.execute(
        "INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, sequence_target, status) "
        "VALUES ('kept@example.com', 'c1', 'SMB', 'active')", label="test.old_row")
    build(raw_warehouse, settings, [lead("kept@example.com"), lead("new@example.com")], as_of=None)
    columns = raw_warehouse.existing_columns(INST_STATE.name) or {}
    assert set(INST_STATE.column_names()) <= set(columns)
    rows = raw_warehouse.query("SELECT email, status, instantly_lead_id FROM `{ds}.ops_inst_state`", label="t")
    assert rows == [{"email": "kept@example.com", "status": "active", "instantly_lead_id": None}]
    assert list(ready(raw_warehouse)) == ["new@example.com"]


def test_dry_run_prints_statements_and_changes_nothing(raw_warehouse: Warehouse, settings: Settings) -> None:
    """--dry-run on an empty dataset prints every CREATE and leaves the warehouse untouched."""
    printed: list[str] = []
    report = ensure_schema(raw_warehouse, settings, dry_run=True, echo=printed.append)
    assert raw_warehouse.stats.writes == 0
    assert all(raw_warehouse.existing_columns(spec.name) is None for spec in TABLES)
    text = "\n".join(printed)
    for spec in TABLES:
        assert f"would create table {spec.name}" in text
    assert any("CREATE TABLE" in s for s in report.statements)


def test_missing_source_table_is_a_clear_error(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Without the source table, setup stops with a message naming SOURCE_TABLE and the fix."""
    with pytest.raises(SchemaError, match="SOURCE_TABLE"):
        ensure_schema(raw_warehouse, settings)


def test_source_missing_contract_columns_is_named(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A source table without a contract column is refused, naming the column."""
    from coldsync.warehouse.schema import SOURCE_COLUMNS, TableSpec

    raw_warehouse.ensure_dataset()
    raw_warehouse.create_table(TableSpec("source_leads", SOURCE_COLUMNS[:-1], "no revenue"))
    with pytest.raises(SchemaError, match="annual_revenue"):
        ensure_schema(raw_warehouse, settings)


def test_view_exists_after_setup(raw_warehouse: Warehouse, settings: Settings) -> None:
    """setup creates v_ready_for_instantly with the documented columns."""
    build(raw_warehouse, settings)
    add_sources(raw_warehouse, [lead("v@example.com")])
    columns = set(raw_warehouse.existing_columns(VIEW_NAME) or {})
    assert {"email", "sequence_target", "priority", "attempt_num", "annual_revenue"} <= columns


def test_setup_command_builds_demo_and_prints_ready_counts(tmp_path: Path) -> None:
    """`python setup.py --demo` on a fresh DuckDB file builds the demo and prints ready counts per segment."""
    env = {"DUCKDB_PATH": str(tmp_path / "demo.duckdb"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "setup.py", "--demo", "--demo-leads", "3000"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ready for Instantly: SMB" in out.stdout and "ready for Instantly: Midsize" in out.stdout
    again = subprocess.run([sys.executable, "setup.py"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "created" not in again.stdout


def test_upgrade_adds_the_hold_columns_to_state_and_keeps_its_rows(raw_warehouse: Warehouse,
                                                                     settings: Settings) -> None:
    """A v4 ops_inst_state (no hold_until, completed_at) holding an active row: setup adds the two columns,
    keeps the row (both NULL), records the schema version (5 then; 6 since the lock row); a second setup changes
    nothing."""
    import datetime as dt

    from coldsync.warehouse.schema import INST_STATE, SCHEMA_VERSION

    raw_warehouse.ensure_dataset()
    v4 = type(INST_STATE)(INST_STATE.name, INST_STATE.columns[:11], "version 4")
    assert [c.name for c in INST_STATE.columns[11:]] == ["hold_until", "completed_at"]
    raw_warehouse.create_table(v4)
    raw_warehouse.execute(
        "INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, status, added_at) "
        "VALUES ('kept@upgrade.example', 'c1', 'active', @at)", {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        label="test.old_row")
    build(raw_warehouse, settings, [lead("other@upgrade.example")])
    assert set(INST_STATE.column_names()) <= set(raw_warehouse.existing_columns(INST_STATE.name) or {})
    rows = raw_warehouse.query("SELECT email, status, hold_until, completed_at FROM `{ds}.ops_inst_state`",
                               label="t")
    assert rows == [{"email": "kept@upgrade.example", "status": "active", "hold_until": None, "completed_at": None}]
    assert read_config(raw_warehouse)["schema_version"] == SCHEMA_VERSION == 9
    assert not ensure_schema(raw_warehouse, settings).changed


def test_upgrade_adds_the_policy_columns_to_history_and_old_rows_rest_by_their_status(
        raw_warehouse: Warehouse, settings: Settings) -> None:
    """A v3 ops_lead_history (no policy, return_at, interest_status, in_instantly) holding a row: setup adds
    the columns, keeps the row (its policy and in_instantly NULL), records the schema version (4 then; 5 since
    the hold; 6 since in_instantly and the permanent lock row), and a second setup changes nothing;
    the old `replied` row rests by the replied policy (180 days) from its completed_at."""
    import datetime as dt

    from coldsync.warehouse.schema import LEAD_HISTORY, SCHEMA_VERSION
    from tests.helpers import set_config

    raw_warehouse.ensure_dataset()
    v3 = type(LEAD_HISTORY)(LEAD_HISTORY.name, LEAD_HISTORY.columns[:11], "version 3")
    assert [c.name for c in LEAD_HISTORY.columns[11:15]] == ["policy", "return_at", "interest_status", "in_instantly"]
    raw_warehouse.create_table(v3)
    ended = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    raw_warehouse.execute(
        "INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, status_final, completed_at, attempt_num) "
        "VALUES ('old@upgrade.example', 'c1', 'replied', @at, 1)", {"at": ended}, label="test.old_row")
    build(raw_warehouse, settings, [lead("old@upgrade.example")], as_of=ended + dt.timedelta(days=179))
    assert set(LEAD_HISTORY.column_names()) <= set(raw_warehouse.existing_columns(LEAD_HISTORY.name) or {})
    rows = raw_warehouse.query("SELECT email, policy, return_at, interest_status, in_instantly "
                               "FROM `{ds}.ops_lead_history`", label="t")
    assert rows == [{"email": "old@upgrade.example", "policy": None, "return_at": None, "interest_status": None,
                     "in_instantly": None}]
    assert read_config(raw_warehouse)["schema_version"] == SCHEMA_VERSION == 9
    assert not ensure_schema(raw_warehouse, settings).changed
    assert list(ready(raw_warehouse)) == []
    set_config(raw_warehouse, "as_of", string=(ended + dt.timedelta(days=180)).isoformat())
    assert list(ready(raw_warehouse)) == ["old@upgrade.example"]


def test_upgrade_from_v5_makes_the_permanent_lock_row_and_keeps_a_held_one(raw_warehouse: Warehouse,
                                                                           settings: Settings) -> None:
    """A v5 ops_run_lock (no holder_pid, holder_host; released locks deleted): setup adds the two columns and the
    free 'sync' row, records the schema version (6 then), and a second setup changes nothing; on a v5 table
    still holding a run's row, that row is kept as it is (no second row)."""
    import datetime as dt

    from coldsync.warehouse.schema import RUN_LOCK, SCHEMA_VERSION

    raw_warehouse.ensure_dataset()
    v5 = type(RUN_LOCK)(RUN_LOCK.name, RUN_LOCK.columns[:4], "version 5")
    assert [c.name for c in RUN_LOCK.columns[4:]] == ["holder_pid", "holder_host"]
    raw_warehouse.create_table(v5)
    build(raw_warehouse, settings, as_of=None)
    rows = "SELECT name, run_id, expires_at, holder_pid, holder_host FROM `{ds}.ops_run_lock`"
    assert raw_warehouse.query(rows, label="t") == [
        {"name": "sync", "run_id": "", "expires_at": dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "holder_pid": None,
         "holder_host": None}]
    assert read_config(raw_warehouse)["schema_version"] == SCHEMA_VERSION == 9
    report = ensure_schema(raw_warehouse, settings)
    assert not report.changed and "ok: run lock row present" in report.actions

    raw_warehouse.execute("UPDATE `{ds}.ops_run_lock` SET run_id = 'old-run' WHERE name = 'sync'", label="t")
    ensure_schema(raw_warehouse, settings)
    assert [r["run_id"] for r in raw_warehouse.query(rows, label="t")] == ["old-run"]


def test_upgrade_from_v6_creates_the_empty_candidates_table(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A v6 warehouse (every table but ops_candidates, schema_version 6): setup creates ops_candidates with its
    eleven columns and no row (the first sync fills it), records schema version 8, and a second setup changes
    nothing."""
    from coldsync.warehouse.schema import CANDIDATES, SCHEMA_VERSION

    build(raw_warehouse, settings, [lead("kept@upgrade.example")], as_of=None)
    raw_warehouse.execute("DROP TABLE `{ds}.ops_candidates`", label="t")
    raw_warehouse.execute("UPDATE `{ds}.config` SET value_int = 6 WHERE key = 'schema_version'", label="t")
    report = ensure_schema(raw_warehouse, settings)
    assert "created table ops_candidates" in report.actions
    assert list(raw_warehouse.existing_columns(CANDIDATES.name) or {}) == [
        "email", "email_key", "email_domain_key", "first_name", "last_name", "company_name", "domain", "location",
        "country", "annual_revenue", "revenue_unreadable"]
    assert raw_warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_candidates`", label="t") == [{"n": 0}]
    assert read_config(raw_warehouse)["schema_version"] == SCHEMA_VERSION == 9
    assert not ensure_schema(raw_warehouse, settings).changed


def test_upgrade_from_v7_creates_the_empty_events_table_and_the_views_read_it(raw_warehouse: Warehouse,
                                                                             settings: Settings) -> None:
    """A v7 warehouse (no ops_instantly_events): setup creates the events table with its twelve columns and no
    row, records the schema version (8 then; 9 since the stored keys), the ready view works again (it reads the
    events table), and a second setup changes nothing."""
    from coldsync.warehouse.schema import EVENTS, SCHEMA_VERSION

    build(raw_warehouse, settings, [lead("kept@upgrade.example")], as_of=None)
    raw_warehouse.execute("DROP TABLE `{ds}.ops_instantly_events`", label="t")
    raw_warehouse.execute("UPDATE `{ds}.config` SET value_int = 7 WHERE key = 'schema_version'", label="t")
    report = ensure_schema(raw_warehouse, settings)
    assert "created table ops_instantly_events" in report.actions
    assert list(raw_warehouse.existing_columns(EVENTS.name) or {}) == [
        "received_at", "event_type", "email", "email_key", "campaign_id", "lead_id", "event_at", "step", "variant",
        "dedup_key", "delivered_by", "payload"]
    assert raw_warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_instantly_events`", label="t") == [{"n": 0}]
    assert raw_warehouse.query("SELECT email FROM `{ds}.v_ready_for_instantly`", label="t") == [
        {"email": "kept@upgrade.example"}]
    assert read_config(raw_warehouse)["schema_version"] == SCHEMA_VERSION == 9
    assert not ensure_schema(raw_warehouse, settings).changed
