"""sync_once.py refuses misuse with a message (exit 2) instead of silently doing something else, and embedded mode
has no surprises: unknown campaigns refused, the simulator's workspace tied to its warehouse file, the example
file's placeholder key refused."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

import sync_once
import validate_environment
from coldsync.cli import ExitCode
from coldsync.embedded import state_file_for
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.settings import SettingsError, load_settings
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build, lead

REPO = Path(__file__).resolve().parent.parent
DEMO_SMB = "2f40503d-98b5-5f83-8bd3-8d2bfe4243b9"  # coldsync.demo.demo_campaign_id("smb")
DEMO_MIDSIZE = "81de9bfa-6097-58f0-926e-1c772efe9688"  # coldsync.demo.demo_campaign_id("midsize")
PLACEHOLDER_FIX = ("create an API V2 key in Instantly (Settings > Integrations > API Keys) and put it in "
                   "INSTANTLY_API_KEY or the api_key of config/secrets/instantly-config.json")


@pytest.mark.parametrize(("argv", "message"), [
    (["--markdown"], "--markdown formats the status report and needs --report (without it this would be a sync run)"),
    (["--report", "--markdown", "--json"], "--markdown and --json are two formats of the report: give one of them"),
    (["--markdown", "--json"], "--markdown formats the status report and needs --report (without it this would be a "
                               "sync run)"),
    (["--break-lock", "--erase", "a@example.com"],
     "--break-lock only frees the run lock: run --erase/--erase-file on its own"),
    (["--break-lock", "--report", "--json"], "--break-lock only frees the run lock: run --report, --json on its own"),
    (["--break-lock", "--slot", "Fri 18:00"], "--break-lock only frees the run lock: run --slot on its own"),
    (["--report", "--slot", "Fri 18:00"], "--slot names a sync run's slot: it does not go with --report or --erase"),
])
def test_report_format_misuse_is_refused_before_anything(clean_env: Path, argv: list[str], message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--markdown without --report (which used to do a live run) and --markdown with --json (which used to pick
    JSON) exit 2 with one line, and no warehouse file is opened."""
    assert sync_once.main(argv) == ExitCode.BAD_CONFIG
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"Configuration error: {message}\n")
    assert not (clean_env / "a.duckdb").exists()


def test_base_url_without_key_is_refused_not_ignored(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """INSTANTLY_BASE_URL with no key used to run the embedded simulator silently: now exit 2 naming the URL and
    the key, and no simulator workspace is saved."""
    monkeypatch.setenv("INSTANTLY_BASE_URL", "http://127.0.0.1:8765")
    assert sync_once.main([]) == ExitCode.BAD_CONFIG
    assert capsys.readouterr().err.endswith(  # after the log line naming the warehouse
        "Configuration error: 1 bad setting(s):\n"
        "  - INSTANTLY_BASE_URL='http://127.0.0.1:8765' (from environment): is set but INSTANTLY_API_KEY is empty: "
        "without a key (and without BQ_PROJECT) sync_once.py runs the embedded simulator and would ignore this URL. "
        "Fix: set INSTANTLY_API_KEY as well (a simulator server accepts the key it was started with: README, the "
        "simulator server), or unset INSTANTLY_BASE_URL for the embedded playground\n")
    assert not (clean_env / "a.duckdb.simulator-state.json").exists()


def test_embedded_unknown_campaign_is_refused_not_created(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """In embedded mode a campaign id the simulator does not hold exits 2 naming the setting and the simulator's
    campaigns; nothing is created: no demo warehouse is built and no workspace is saved."""
    monkeypatch.setenv("SMB_CAMPAIGN_ID", "00000000-0000-4000-8000-000000000000")
    assert sync_once.main([]) == ExitCode.BAD_CONFIG
    assert capsys.readouterr().err.endswith(  # after the log line naming the warehouse
        "Configuration error: 1 bad setting(s):\n"
        "  - SMB_CAMPAIGN_ID='00000000-0000-4000-8000-000000000000' (from environment): is not a campaign of the "
        f"embedded Instantly simulator (it holds {DEMO_SMB}, {DEMO_MIDSIZE}). Fix: unset it to use the playground's "
        "demo campaigns (SMB_CAMPAIGN_ID, MIDSIZE_CAMPAIGN_ID and ROUTES_FILE=none), or run against a simulator "
        "server started with your campaigns (README, the simulator server), or set INSTANTLY_API_KEY for real runs\n")
    assert not (clean_env / "a.duckdb.simulator-state.json").exists()
    warehouse = DuckDBWarehouse(clean_env / "a.duckdb", "coldsync")
    try:
        assert warehouse.existing_columns("v_ready_for_instantly") is None
    finally:
        warehouse.close()


def _small_warehouse(tmp_path: Path, name: str, emails: list[str]) -> None:
    settings = make_settings(tmp_path, duckdb_path=str(tmp_path / name))
    warehouse = DuckDBWarehouse(tmp_path / name, "coldsync")
    try:
        build(warehouse, settings, [lead(email, Decimal(10_000)) for email in emails], as_of=None)
    finally:
        warehouse.close()


def _leads_in(state_file: Path) -> int:
    sim = InstantlySimulator.load_state(state_file, api_key="sim-embedded-key")
    assert sim is not None
    return sim.lead_count()


def test_embedded_workspace_belongs_to_its_warehouse_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Two DUCKDB_PATH warehouses keep two simulator workspaces beside their files: the second warehouse's run sees
    only its own 2 leads (no orphans from the first's 3), and the first's workspace is left as it was."""
    _small_warehouse(clean_env, "a.duckdb", ["a1@example.com", "a2@example.com", "a3@example.com"])
    _small_warehouse(clean_env, "b.duckdb", ["b1@example.com", "b2@example.com"])
    assert sync_once.main(["--json"]) == ExitCode.OK
    first = json.loads(capsys.readouterr().out)
    assert first["added"] == 3
    state_a = clean_env / "a.duckdb.simulator-state.json"
    assert state_file_for(make_settings(clean_env, duckdb_path=str(clean_env / "a.duckdb"))) == state_a
    assert _leads_in(state_a) == 3

    monkeypatch.setenv("DUCKDB_PATH", str(clean_env / "b.duckdb"))
    assert sync_once.main(["--json"]) == ExitCode.OK
    second = json.loads(capsys.readouterr().out)
    assert second["added"] == 2
    assert _leads_in(clean_env / "b.duckdb.simulator-state.json") == 2
    assert _leads_in(state_a) == 3


def test_placeholder_key_of_the_example_file_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The api_key of instantly-config.example.json, copied as the real file or set as INSTANTLY_API_KEY, is refused
    with exit 2 naming INSTANTLY_API_KEY, before anything is opened (so it is never sent to Instantly); the key
    itself is not printed."""
    example = REPO / "config" / "secrets" / "instantly-config.example.json"
    placeholder = json.loads(example.read_text(encoding="utf-8"))["api_key"]
    assert placeholder == "paste-your-instantly-api-v2-key-here"
    secrets = clean_env / "secrets"
    secrets.mkdir()
    shutil.copy(example, secrets / "instantly-config.json")  # what a hurried operator does
    with pytest.raises(SettingsError) as info:
        load_settings(environ={}, dotenv_path=clean_env / "none.env", secrets_dir=secrets)
    assert [str(p) for p in info.value.problems] == [
        "INSTANTLY_API_KEY (from secrets file): is the placeholder of instantly-config.example.json, not a key. "
        f"Fix: {PLACEHOLDER_FIX}"]

    monkeypatch.setenv("INSTANTLY_API_KEY", placeholder)
    monkeypatch.setenv("BQ_PROJECT", "my-proj")  # a live run: it would have called Instantly with it
    assert sync_once.main([]) == ExitCode.BAD_CONFIG
    err = capsys.readouterr().err
    assert err == ("Configuration error: 1 bad setting(s):\n  - INSTANTLY_API_KEY (from environment): is the "
                   f"placeholder of instantly-config.example.json, not a key. Fix: {PLACEHOLDER_FIX}\n")
    assert validate_environment.main([]) == ExitCode.BAD_CONFIG
    out = capsys.readouterr().out
    assert "  FAIL  settings              INSTANTLY_API_KEY (from environment): is the placeholder" in out
    assert placeholder not in err + out


def test_break_lock_in_a_dry_run_is_refused_and_the_lock_stays(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """DRY_RUN=true writes nothing: --break-lock under it exits 2 with one line, and a held lock stays held."""
    import datetime as dt

    from coldsync.store import Store

    settings = make_settings(clean_env, duckdb_path=str(clean_env / "a.duckdb"))
    warehouse = DuckDBWarehouse(clean_env / "a.duckdb", "coldsync")
    build(warehouse, settings, [lead("a@example.com")])
    assert Store(warehouse, "killed-run", dt.datetime.now(dt.UTC)).acquire_lock(dt.timedelta(minutes=30)) is None
    warehouse.close()
    monkeypatch.setenv("DRY_RUN", "true")
    assert sync_once.main(["--break-lock"]) == ExitCode.BAD_CONFIG
    assert capsys.readouterr().err.endswith("Configuration error: DRY_RUN=true writes nothing, and --break-lock "
                                            "changes the lock row: unset DRY_RUN to break it\n")
    warehouse = DuckDBWarehouse(clean_env / "a.duckdb", "coldsync")
    try:
        rows = warehouse.query("SELECT run_id FROM `{ds}.ops_run_lock`", label="t")
    finally:
        warehouse.close()
    assert rows == [{"run_id": "killed-run"}]
