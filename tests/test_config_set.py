"""`python setup.py --set KEY=VALUE`: a config row changed, checked like its setting, old -> new shown, on both
engines; anything a run would refuse is refused before any row is written."""

from __future__ import annotations

from pathlib import Path

import pytest

import setup as setup_command
from coldsync import cli
from coldsync.cli import ExitCode
from coldsync.settings import SPECS, load_settings
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.migrate import read_config
from tests.conftest import make_settings
from tests.helpers import build

KEYS = ("alert_after_runs, alert_dead_letters, allow_paused_campaigns, batch_size, blocklist_mirror, "
        "bounce_warn_rate, cooldown_days, "
        "dead_letter_max_retries, give_up_cooldown_days, inventory_cap, max_active_days, max_bounce_rate, "
        "max_new_leads_per_run, midsize_campaign_id, not_interested_return_days, outcome_policies, "
        "priority_expression, reconcile_audit_calls, reconcile_pages_per_run, replied_list_id, replied_return_days, "
        "reply_hold_days, routes, service_failure_runs, smb_campaign_id, smb_revenue_threshold, supply_days, "
        "target_new_leads_per_run, webhooks_enabled")


class _Kept:
    """The test's warehouse, handed to setup.py without letting it close it."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def __getattr__(self, name: str) -> object:
        return getattr(self._warehouse, name)

    def close(self) -> None:
        pass


@pytest.fixture
def setup_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """setup.py without the developer's environment (no routes file)."""
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("ROUTES_FILE", "none")
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "setup.duckdb"))


def _use(monkeypatch: pytest.MonkeyPatch, warehouse: Warehouse) -> None:
    monkeypatch.setattr(cli, "connect", lambda _settings: _Kept(warehouse))


def _rows(warehouse: Warehouse) -> dict[str, object]:
    return {k: v for k, v in read_config(warehouse).items() if k not in ("views_fingerprint", "views_source_table",
                                                                         "erasure_salt")}


def test_set_changes_rows_on_both_engines(raw_warehouse: Warehouse, tmp_path: Path, setup_on: None,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A whole number, a percent and a switch are stored as setup seeds them (value_int, value_string, 0/1), each
    shown old -> new, and a run's settings read the new values."""
    build(raw_warehouse, make_settings(tmp_path), as_of=None)
    _use(monkeypatch, raw_warehouse)
    argv = ["--set", "cooldown_days=120", "--set", "MAX_BOUNCE_RATE=3.5%", "--set", "allow_paused_campaigns=yes"]
    assert setup_command.main(argv) == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[1:] == [
        "set config cooldown_days: 90 -> 120",
        "set config max_bounce_rate: 5 -> 3.5",
        "set config allow_paused_campaigns: false -> true",
    ]
    rows = read_config(raw_warehouse)
    assert (rows["cooldown_days"], rows["max_bounce_rate"], rows["allow_paused_campaigns"]) == (120, "3.5", 1)
    run = load_settings(environ={"ROUTES_FILE": "none"}, dotenv_path=tmp_path / "none.env",
                        secrets_dir=tmp_path / "none", config_rows=rows)
    assert (run.cooldown_days, run.max_bounce_rate, run.allow_paused_campaigns) == (120, 3.5, True)


@pytest.mark.parametrize(("argv", "error"), [
    (["--set", "cooldown_dayz=120"],
     f"  - COOLDOWN_DAYZ='120' (from flag): is not a config-table setting. Fix: use one of: {KEYS}"),
    (["--set", "batch_size=5000"],
     "  - BATCH_SIZE='5000' (from flag): is above the maximum 1000. Fix: set BATCH_SIZE to at most 1000"),
    (["--set", "smb_campaign_id=not-a-uuid"],
     "  - SMB_CAMPAIGN_ID='not-a-uuid' (from flag): is not a campaign UUID. Fix: set SMB_CAMPAIGN_ID to a campaign "
     "UUID"),
    (["--set", "cooldown_days"],
     "  - SET='cooldown_days' (from flag): is not KEY=VALUE. Fix: write --set KEY=VALUE, e.g. --set cooldown_days=120"),
    (["--set", "cooldown_days=30", "--set", "target_new_leads_per_run=30000"],  # the first is fine: neither written
     "  - TARGET_NEW_LEADS_PER_RUN='30000' (from config table): is above the hard ceiling MAX_NEW_LEADS_PER_RUN=24000. "
     "Fix: lower TARGET_NEW_LEADS_PER_RUN, or raise MAX_NEW_LEADS_PER_RUN deliberately"),
])
def test_refused_values_write_nothing(tmp_path: Path, setup_on: None, argv: list[str], error: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key (answered with the valid keys), a value the setting refuses, a malformed assignment, or a row
    that breaks a cross-check exits 2 naming it, and no row changes, not even the valid ones beside it."""
    warehouse = DuckDBWarehouse(tmp_path / "setup.duckdb", "coldsync")
    build(warehouse, make_settings(tmp_path), as_of=None)
    before = _rows(warehouse)
    warehouse.close()
    assert setup_command.main(argv) == ExitCode.BAD_CONFIG
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines()[-2:] == ["Configuration error: 1 bad setting(s):", error]
    warehouse = DuckDBWarehouse(tmp_path / "setup.duckdb", "coldsync")
    assert _rows(warehouse) == before
    warehouse.close()


def test_dry_run_shows_the_change_and_writes_nothing(tmp_path: Path, setup_on: None,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--set with --dry-run prints `would set` old -> new and leaves the row; a variable of the same name is named
    as the layer that wins over the row."""
    warehouse = DuckDBWarehouse(tmp_path / "setup.duckdb", "coldsync")
    build(warehouse, make_settings(tmp_path), as_of=None)
    warehouse.close()
    monkeypatch.setenv("INVENTORY_CAP", "500")
    assert setup_command.main(["--set", "inventory_cap=1000", "--dry-run"]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[1:] == [
        "would set config inventory_cap: 24000 -> 1000 (note: INVENTORY_CAP (from environment) also sets it and wins "
        "over the config row)"]
    warehouse = DuckDBWarehouse(tmp_path / "setup.duckdb", "coldsync")
    assert read_config(warehouse)["inventory_cap"] == 24000
    warehouse.close()


def test_set_without_a_config_table_says_run_setup_first(tmp_path: Path, setup_on: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """On a warehouse setup.py never built, --set exits 2 with `python setup.py` as the fix, and creates nothing."""
    assert setup_command.main(["--set", "cooldown_days=120"]) == ExitCode.BAD_CONFIG
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Configuration error: DuckDB warehouse at {tmp_path / 'setup.duckdb'} (schema coldsync) has no config table. "
        "Fix: run `python setup.py` first (it creates the tables and seeds the config rows)")
    warehouse = DuckDBWarehouse(tmp_path / "setup.duckdb", "coldsync")
    assert warehouse.existing_columns("config") is None
    warehouse.close()
