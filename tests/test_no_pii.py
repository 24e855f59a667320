"""Invariant 7 end to end: no source email and no secret in any log line or output, even at DEBUG.

One long path on a DuckDB file and the simulator: the schema tool with demo data, sync runs over
simulated weeks (drains, unsubscribes, bounces, rejected adds, a server error that echoes an address
and the key), a dry run, validate_environment.py, the status report in every format, the GitHub job
summary, and the error paths (a rejected key, a bad setting). Everything written to the terminal
(file-descriptor level) or to any logger (root, at DEBUG) is then searched for every email the
warehouse and the simulator hold, and for the keys.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

import setup as setup_tool
import sync_once
import validate_environment
from coldsync import settings as settings_module
from coldsync.cli import ExitCode
from coldsync.demo import set_clock
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.logs import configure_logging
from coldsync.settings import SPECS, load_settings
from coldsync.sync import run_sync
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.migrate import read_config

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
KEY = "sim-nopii-key-5d1c0a7e9b2f"
WRONG_KEY = "sim-nopii-wrong-0e4b7a21c6"
FAKE_CREDENTIALS = '{"type": "service_account", "private_key": "NOPII-FAKE-PRIVATE-KEY-4f2a91"}'
SECRETS = (KEY, WRONG_KEY, "NOPII-FAKE-PRIVATE-KEY-4f2a91")

EMAILS_SQL = """
SELECT CAST(email AS STRING) AS email FROM `{source}` WHERE email IS NOT NULL
UNION DISTINCT SELECT email FROM `{ds}.ops_inst_state`
UNION DISTINCT SELECT email FROM `{ds}.ops_lead_history`
UNION DISTINCT SELECT email FROM `{ds}.ops_dnc` WHERE email IS NOT NULL
UNION DISTINCT SELECT email FROM `{ds}.ops_dead_letters` WHERE email IS NOT NULL
"""


def test_no_email_and_no_secret_in_any_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    """Across the whole product path at DEBUG, no source email and no key reaches a log, stdout or stderr."""
    # Settings from this test's environment only; a fresh log handler bound to this test's stderr.
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr(settings_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "secrets")
    monkeypatch.setattr(logging.getLogger("coldsync"), "handlers", [])
    caplog.set_level(logging.DEBUG)
    summary = tmp_path / "job-summary.md"
    path = tmp_path / "pii.duckdb"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=48)

    sim = InstantlySimulator(api_key=KEY, seed=9, now=start, sequence_days=8)
    sim.start()
    try:
        sim.create_campaign("Cold outreach - SMB", campaign_id=SMB)
        sim.create_campaign("Cold outreach - Midsize", campaign_id=MIDSIZE)
        environ = {"DUCKDB_PATH": str(path), "INSTANTLY_API_KEY": KEY, "INSTANTLY_BASE_URL": sim.base_url,
                   "SMB_CAMPAIGN_ID": SMB, "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "LOG_LEVEL": "DEBUG",
                   "TARGET_NEW_LEADS_PER_RUN": "150", "INVENTORY_CAP": "400",
                   "BIGQUERY_CREDENTIALS_JSON": FAKE_CREDENTIALS, "GITHUB_STEP_SUMMARY": str(summary)}
        for name, value in environ.items():
            monkeypatch.setenv(name, value)

        # The schema tool with demo data.
        assert setup_tool.main(["--demo", "--demo-leads", "1500"]) == ExitCode.OK

        # Sync runs over simulated weeks, with faults, and a dry run.
        warehouse = DuckDBWarehouse(path, "coldsync")
        settings = load_settings(config_rows=read_config(warehouse))
        configure_logging(settings.log_level, settings.secrets())
        client = InstantlyClient(KEY, base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
        some_email = str(warehouse.query("SELECT email FROM `{ds}.ops_dnc` WHERE email IS NOT NULL LIMIT 1",
                                         label="test")[0]["email"])
        drained: dict[str, int] = {}
        for day in range(0, 48, 6):
            if day == 12:
                sim.set_fault("POST /leads/add", FaultSpec(reject_rate=0.2))
            if day == 18:
                sim.set_fault("POST /leads/add", FaultSpec(
                    statuses=[400], message=f"lead {some_email} rejected for key {KEY}"))
            if day == 24:
                sim.clear_faults()
            set_clock(warehouse, sim.now)
            result = run_sync(settings, warehouse, client, now=sim.now)
            for outcome, count in result.report.phase("drain").counts.items():
                drained[outcome] = drained.get(outcome, 0) + count
            print(result.report.render_text())
            print(result.report.render_markdown())
            print(result.report.to_json())
            result.report.write_github_summary()
            if day == 30:
                dry = run_sync(settings_module.replace(settings, dry_run=True), warehouse, client, now=sim.now)
                print(dry.report.render_text())
            sim.advance(6)
        client.close()
        warehouse.close()
        assert drained.get("drained:unsubscribed", 0) > 0 and drained.get("drained:bounced", 0) > 0, drained

        # The commands, as ops run them: validate, the report, a live run, a dry run, and the error paths.
        assert validate_environment.main([]) in (ExitCode.OK, ExitCode.CHECK_FAILED)
        assert validate_environment.main(["--json"]) in (ExitCode.OK, ExitCode.CHECK_FAILED)
        for flags in ([], ["--markdown"], ["--json"]):
            assert sync_once.main(["--report", *flags]) == ExitCode.OK
        assert sync_once.main([]) == ExitCode.OK
        assert sync_once.main(["--json"]) == ExitCode.OK
        monkeypatch.setenv("DRY_RUN", "true")
        assert sync_once.main([]) == ExitCode.OK
        monkeypatch.delenv("DRY_RUN")
        monkeypatch.setenv("INSTANTLY_API_KEY", WRONG_KEY)
        assert sync_once.main([]) == ExitCode.RUN_FAILED
        assert validate_environment.main([]) == ExitCode.CHECK_FAILED
        monkeypatch.setenv("INSTANTLY_API_KEY", KEY)
        monkeypatch.setenv("BATCH_SIZE", "lots")
        assert sync_once.main([]) == ExitCode.BAD_CONFIG
        assert validate_environment.main([]) == ExitCode.BAD_CONFIG
        monkeypatch.delenv("BATCH_SIZE")

        warehouse = DuckDBWarehouse(path, "coldsync")
        emails = {str(r["email"]).strip().lower() for r in warehouse.query(EMAILS_SQL, label="test.emails")}
        dead_letters = warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_dead_letters`", label="test")[0]["n"]
        warehouse.close()
        emails |= {str(lead["email"]).lower() for lead in sim.leads()}
    finally:
        sim.stop()

    emails = {e for e in emails if "@" in e}
    assert len(emails) > 1400 and dead_letters > 0
    captured = capfd.readouterr()
    outputs = {
        "stdout": captured.out, "stderr": captured.err, "job summary": summary.read_text(encoding="utf-8"),
        "log records": "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "log text": caplog.text,
    }
    assert len(captured.out) > 10_000 and any(r.levelno == logging.DEBUG for r in caplog.records)
    for where, text in outputs.items():
        lowered = text.lower()
        leaked = sorted(e for e in emails if e in lowered)
        assert not leaked, f"{len(leaked)} email(s) in {where}, e.g. {leaked[:3]}"
        for secret in SECRETS:
            assert secret.lower() not in lowered, f"a secret in {where}"
            assert secret[-10:].lower() not in lowered, f"part of a secret in {where}"
