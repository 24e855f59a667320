"""validate_environment.py: each check passes, warns or fails with its fix, and the exit code follows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

import validate_environment
from coldsync import settings as settings_module
from coldsync.cli import ExitCode
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.settings import SPECS, read_sources
from coldsync.validate import CHECK_NAMES, Validation, run_checks
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import add_state, build, delete_config, lead, set_config

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
KEY = "sim-validate-key-3b1f"


class _Kept:
    """The test's warehouse, handed to the checks without letting them close it."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def __getattr__(self, name: str) -> object:
        return getattr(self._warehouse, name)

    def close(self) -> None:
        pass


@dataclass
class Env:
    warehouse: Warehouse
    sim: InstantlySimulator
    tmp: Path
    environ: dict[str, str]

    def check(self, production: bool = False, **overrides: str) -> Validation:
        environ = {k: v for k, v in {**self.environ, **overrides}.items() if v is not None}
        sources = read_sources(environ=environ, dotenv_path=self.tmp / "none.env", secrets_dir=self.tmp / "none")
        kept = _Kept(self.warehouse)
        return run_checks(sources, production=production,
                          connect_warehouse=lambda _settings: kept)  # type: ignore[arg-type,return-value]


def status(result: Validation) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


@pytest.fixture
def env(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[Env]:
    sim = InstantlySimulator(api_key=KEY, seed=3)
    sim.start()
    sim.create_campaign("Cold outreach - SMB", campaign_id=SMB)
    sim.create_campaign("Cold outreach - Midsize", campaign_id=MIDSIZE)
    environ = {"INSTANTLY_API_KEY": KEY, "INSTANTLY_BASE_URL": sim.base_url, "SMB_CAMPAIGN_ID": SMB,
               "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "DUCKDB_PATH": str(tmp_path / "unused.duckdb")}
    settings = make_settings(tmp_path, **environ)
    build(raw_warehouse, settings, [lead("small@example.com", Decimal(10_000)),
                                    lead("large@example.com", Decimal(5_000_000))], as_of=None)
    try:
        yield Env(raw_warehouse, sim, tmp_path, environ)
    finally:
        sim.stop()


def test_all_checks_pass(env: Env) -> None:
    """A complete setup: every check passes, in the documented order, and the exit code is 0."""
    result = env.check()
    assert [c.name for c in result.checks] == list(CHECK_NAMES)
    assert set(status(result).values()) == {"pass"}, result.render_text()
    assert result.exit_code == ExitCode.OK and result.mode == "live"
    assert "ready: 17 passed" in result.render_text()
    routes = next(c for c in result.checks if c.name == "routes")
    assert routes.detail == "2 route(s) from default: SMB; Midsize"


@pytest.mark.bq_always
def test_views_bound_to_another_source_table_fail_with_the_rebind_fix(env: Env) -> None:
    """The views were built on another table than SOURCE_TABLE: the `source binding` row fails, naming both
    tables and `python setup.py`; the check exits 4."""
    set_config(env.warehouse, "views_source_table", string="elsewhere.coldsync.old_leads")
    result = env.check()
    row = next(c for c in result.checks if c.name == "source binding")
    current = env.warehouse.source_table
    assert (row.status, row.detail) == ("fail", (
        f"the views read the source table elsewhere.coldsync.old_leads but SOURCE_TABLE is {current}: run "
        f"`python setup.py` to rebind the views to {current} (or set SOURCE_TABLE back to "
        "elsewhere.coldsync.old_leads)"))
    assert row.fix == f"run `python setup.py` (it rebinds the views to {current})"
    assert result.exit_code == ExitCode.CHECK_FAILED


def test_missing_key_fails(env: Env) -> None:
    """With a BigQuery project but no Instantly key, the key check fails and names INSTANTLY_API_KEY."""
    result = env.check(INSTANTLY_API_KEY="", BQ_PROJECT="demo-project")
    key = result.checks[2]
    assert (key.name, key.status) == ("instantly key", "fail")
    assert "INSTANTLY_API_KEY" in key.detail + key.fix
    assert status(result)["SMB campaign"] == "skip"
    assert result.exit_code == ExitCode.CHECK_FAILED


def test_rejected_key_fails_without_showing_it(env: Env) -> None:
    """A key Instantly refuses (401) fails with the fix; the key is in no line of the output, not even a part."""
    wrong = "sim-wrong-key-9c2e"
    result = env.check(INSTANTLY_API_KEY=wrong)
    key = next(c for c in result.checks if c.name == "instantly key")
    assert key.status == "fail" and "401" in key.detail and "API Keys" in key.fix
    text = result.render_text() + result.to_json()
    assert wrong not in text and wrong[:8] not in text and wrong[-8:] not in text
    assert result.exit_code == ExitCode.CHECK_FAILED


def test_missing_table_fails_with_setup_fix(env: Env) -> None:
    """A dropped table fails the schema check with `python setup.py` as the fix; dependent checks skip."""
    env.warehouse.execute("DROP TABLE `{ds}.ops_dead_letters`", label="test.drop")
    result = env.check()
    schema = next(c for c in result.checks if c.name == "schema")
    assert schema.status == "fail" and "ops_dead_letters" in schema.detail and "python setup.py" in schema.fix
    assert status(result)["ready leads"] == "skip"
    assert status(result)["SMB campaign"] == "pass"  # still checked without the tables
    assert result.exit_code == ExitCode.CHECK_FAILED


def test_missing_config_row_fails(env: Env) -> None:
    """A missing config row fails with the setup fix."""
    delete_config(env.warehouse, "cooldown_days")
    result = env.check()
    config = next(c for c in result.checks if c.name == "config rows")
    assert config.status == "fail" and "cooldown_days" in config.detail and "setup.py" in config.fix


def test_paused_campaign_warns_with_the_exact_fix(env: Env) -> None:
    """A paused campaign is a warning naming the campaign and the Resume button; the run may still go."""
    env.sim.set_campaign_status(MIDSIZE, 2)
    result = env.check()
    midsize = next(c for c in result.checks if c.name == "Midsize campaign")
    assert midsize.status == "warn" and "paused" in midsize.detail and "no leads show" in midsize.detail
    assert "Resume" in midsize.fix and "Cold outreach - Midsize" in midsize.fix
    assert result.exit_code == ExitCode.OK


def test_campaign_settings_that_hurt_the_sync_are_flagged_with_their_fix(env: Env) -> None:
    """stop_on_reply off fails the SMB row (leads who replied would get the next step); a missing
    unsubscribe header only warns on Midsize; both name the API field to change; exit 4."""
    env.sim.set_campaign_settings(SMB, stop_on_reply=False)
    env.sim.set_campaign_settings(MIDSIZE, omit=("insert_unsubscribe_header",))
    result = env.check()
    smb = next(c for c in result.checks if c.name == "SMB campaign")
    midsize = next(c for c in result.checks if c.name == "Midsize campaign")
    assert smb.status == "fail" and "is active; its settings hurt this job: stop_on_reply:" in smb.detail
    assert "stop_on_reply" in smb.fix and "PATCH /api/v2/campaigns/{id}" in smb.fix
    assert midsize.status == "warn" and "insert_unsubscribe_header:" in midsize.detail
    assert result.exit_code == ExitCode.CHECK_FAILED


def test_unknown_campaign_fails(env: Env) -> None:
    """A campaign id that is not in the workspace fails and points at the setting."""
    result = env.check(SMB_CAMPAIGN_ID="00000000-0000-4000-8000-000000000000")
    smb = next(c for c in result.checks if c.name == "SMB campaign")
    assert smb.status == "fail" and "SMB_CAMPAIGN_ID" in smb.fix


def test_as_of_row_warns(env: Env) -> None:
    """An as_of config row (a frozen clock) is a warning with the statement that removes it."""
    set_config(env.warehouse, "as_of", string="2026-06-01T12:00:00+00:00")
    result = env.check()
    as_of = next(c for c in result.checks if c.name == "as_of clock")
    assert as_of.status == "warn" and "DELETE FROM" in as_of.fix and "'as_of'" in as_of.fix
    assert result.exit_code == ExitCode.OK


def test_no_headroom_and_empty_segment_warn(env: Env) -> None:
    """At the cap, and with a segment that has nothing ready, the checks warn (not fail)."""
    set_config(env.warehouse, "inventory_cap", integer=1)
    add_state(env.warehouse, "large@example.com", "active", campaign_id=MIDSIZE)
    result = env.check()
    assert status(result)["inventory headroom"] == "warn"
    ready = next(c for c in result.checks if c.name == "ready leads")
    assert ready.status == "warn" and "Midsize 0" in ready.detail
    assert result.exit_code == ExitCode.OK


def test_bad_setting_exits_2(env: Env) -> None:
    """A setting that does not parse fails first and the exit code is 2 (bad configuration)."""
    result = env.check(BATCH_SIZE="lots")
    assert result.checks[0].status == "fail" and "BATCH_SIZE" in result.checks[0].detail
    assert all(c.status == "skip" for c in result.checks[1:])
    assert result.exit_code == ExitCode.BAD_CONFIG


def test_bad_config_table_value_exits_2(env: Env) -> None:
    """A bad value in the config table is a settings failure too (exit 2)."""
    set_config(env.warehouse, "batch_size", integer=5000)
    result = env.check()
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert any(c.name == "settings" and c.status == "fail" and "batch_size" in c.detail.lower()
               for c in result.checks)


def test_production_refuses_embedded_mode(env: Env) -> None:
    """--production: no key and no BigQuery project (embedded mode, DuckDB) fail; without it they warn."""
    relaxed = env.check(INSTANTLY_API_KEY="")
    assert relaxed.mode == "embedded" and status(relaxed)["instantly key"] == "warn"
    assert status(relaxed)["SMB campaign"] == "skip"
    strict = env.check(production=True, INSTANTLY_API_KEY="")
    assert status(strict)["instantly key"] == "fail" and status(strict)["warehouse"] == "fail"
    assert strict.exit_code == ExitCode.CHECK_FAILED


def test_command_prints_json_and_exits_with_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`validate_environment.py --json` prints the checks as JSON; the exit code is the one of the checks."""
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr(settings_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "secrets")
    path = tmp_path / "cli.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    warehouse = DuckDBWarehouse(path, "coldsync")
    build(warehouse, make_settings(tmp_path), [lead("one@example.com")], as_of=None)
    warehouse.close()
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = validate_environment.main(["--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == data["exit_code"] == ExitCode.OK
    assert data["mode"] == "embedded" and [c["name"] for c in data["checks"]] == list(CHECK_NAMES)
    assert not summary.exists()  # ready: the job summary is left to the run
    assert validate_environment.main(["--production"]) == ExitCode.CHECK_FAILED
    assert "NOT ready" in capsys.readouterr().out
    # Under Actions the job summary says why the run did not start: each row that did not pass, with its fix.
    written = summary.read_text(encoding="utf-8")
    assert written.startswith("### ❌ NOT ready: coldsync environment check (embedded mode)\n")
    assert "| SKIP |" not in written and "| FAIL |" in written
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert validate_environment.main(["--production", "--json"]) == ExitCode.CHECK_FAILED
    production = json.loads(capsys.readouterr().out)
    failing = [c for c in production["checks"] if c["status"] in ("fail", "warn")]
    assert failing and all(f"| {c['name']} | {c['status'].upper()} |" in written for c in failing)


def test_unusable_dnc_entries_warn_with_their_count_and_reasons(env: Env) -> None:
    """Entries that block nobody (no @, an address in the domain column) are a warning naming each reason."""
    from tests.helpers import add_dnc

    add_dnc(env.warehouse, email="not-an-address")
    add_dnc(env.warehouse, email="also bad")
    add_dnc(env.warehouse, domain="jane@acme.example")
    add_dnc(env.warehouse, email="  Fine@Acme.example\r")  # usable: not counted
    check = next(c for c in env.check().checks if c.name == "do-not-contact list")
    assert check.status == "warn"
    assert check.detail.startswith("3 value(s) cannot be used: ")
    assert "2 email value has no @: put a domain in the domain column" in check.detail
    assert "1 domain value looks like an email address: put it in the email column" in check.detail
    assert "v_dnc_rejects" in check.fix


@pytest.mark.parametrize(("setting", "expected"), [(True, "pass"), (False, "warn"), (None, "pass")])
def test_workspace_block_list_setting(env: Env, setting: bool | None, expected: str) -> None:
    """add_unsub_to_block off is a warning with the API field named; on or absent passes."""
    env.sim.set_add_unsub_to_block(setting)
    check = next(c for c in env.check().checks if c.name == "workspace block list")
    assert check.status == expected
    if setting is False:
        assert "add_unsub_to_block" in check.detail + check.fix
    if setting is None:
        assert "not checked" in check.detail


def test_webhooks_check_warns_when_missing_or_disabled_and_passes_when_registered(env: Env) -> None:
    """WEBHOOKS_ENABLED on: with no webhook the check warns naming the three MISSING types and the register
    command; after `register` it passes (three active); a plan without webhooks (402) warns to turn the setting off;
    all as warnings (exit 0), since polling still catches every unsubscribe."""
    from coldsync.instantly.client import InstantlyClient
    from coldsync.webhooks.ops import register

    missing = {c.name: c for c in env.check(WEBHOOKS_ENABLED="true").checks}["webhooks"]
    assert missing.status == "warn" and missing.detail.count("MISSING") == 3
    assert "--webhooks register URL" in missing.fix
    with InstantlyClient(KEY, base_url=env.sim.base_url) as client:
        register(client, "https://hooks.corp.example/coldsync", "whsec-V4lid8-validate-check-secret-0001")
    registered = env.check(WEBHOOKS_ENABLED="true")
    check = {c.name: c for c in registered.checks}["webhooks"]
    assert (check.status, check.detail) == ("pass", "3 webhooks active, one per consumed event type")
    env.sim.set_webhooks_in_plan(False)
    no_plan = env.check(WEBHOOKS_ENABLED="true")
    check = {c.name: c for c in no_plan.checks}["webhooks"]
    assert check.status == "warn" and "402" in check.detail and "WEBHOOKS_ENABLED=false" in check.fix
    assert no_plan.exit_code == ExitCode.OK
