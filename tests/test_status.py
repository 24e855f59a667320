"""The status report (`sync_once.py --report`): the figures ops ask for, as text, Markdown and JSON."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

import sync_once
from coldsync import settings as settings_module
from coldsync.cli import ExitCode
from coldsync.settings import SPECS, Settings
from coldsync.status import StatusError, collect
from coldsync.store import Store, dead_letter_id
from coldsync.warehouse.base import Typed, Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import T0, add_dnc, add_history, add_state, build, lead, set_config

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"


def _settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="10")


def _dead_letter(phase: str, operation: str, key: str, status: int | None, error: str) -> dict[str, object]:
    return {"id": dead_letter_id(phase, operation, key), "phase": phase, "operation": operation,
            "email": f"{key}@example.com", "campaign_id": SMB, "instantly_lead_id": None, "http_status": status,
            "error_text": error, "resolve": False, "give_up_reason": None}


def _run_log(run_id: str, started: dt.datetime, *, mode: str = "live", outcome: str = "success",
             added: int = 0, error: str | None = None) -> dict[str, object]:
    return {"run_id": run_id, "started_at": started, "finished_at": started + dt.timedelta(seconds=12),
            "mode": mode, "outcome": outcome, "warehouse": "duckdb", "drained": 1, "added": added, "dead_letters": 0,
            "inventory_before": 2, "inventory_after": 2 + added, "api_calls": 7, "warehouse_statements": 9,
            "duration_seconds": 12.5, "error_text": error, "summary_json": "{}"}


def arrange(warehouse: Warehouse, settings: Settings) -> None:
    """A small warehouse whose every figure is known."""
    build(warehouse, settings, [lead("ready-smb@example.com", Decimal(10_000)),
                                lead("ready-mid@example.com", Decimal(2_000_000)),
                                lead("active@example.com"), lead("pending@example.com"),
                                lead("cooling@example.com"), lead("soon@example.com"), lead("done@example.com"),
                                lead("blocked@example.com"), lead("x@blocked.example")], as_of=T0)
    add_state(warehouse, "active@example.com", "active", campaign_id=SMB)
    add_state(warehouse, "pending@example.com", "pending", campaign_id=SMB)
    add_state(warehouse, "elsewhere@example.com", "active", campaign_id="not-managed")
    add_history(warehouse, "cooling@example.com", T0 - dt.timedelta(days=10))
    add_history(warehouse, "soon@example.com", T0 - dt.timedelta(days=85))
    add_history(warehouse, "done@example.com", T0 - dt.timedelta(days=200))
    add_dnc(warehouse, email="blocked@example.com")
    add_dnc(warehouse, domain="blocked.example")
    recent = Store(warehouse, "run-2", T0 - dt.timedelta(hours=2))
    recent.record_dead_letters([_dead_letter("topup", "add_lead", "a", 400, "invalid lead a***@example.com"),
                                _dead_letter("topup", "add_lead", "b", 400, "invalid lead b***@example.com"),
                                _dead_letter("drain", "delete_lead", "c", 503, "server error")], label="test")
    old = Store(warehouse, "run-1", T0 - dt.timedelta(days=3))
    old.record_dead_letters([_dead_letter("drain", "delete_lead", "old", 503, "server error")], label="test")
    recent.write_run_log(_run_log("run-2", T0 - dt.timedelta(hours=2), added=3))
    recent.write_run_log(_run_log("run-3", T0 - dt.timedelta(hours=1), mode="dry_run"))
    old.write_run_log(_run_log("run-1", T0 - dt.timedelta(days=3), outcome="failed", error="boom for z@example.com"))
    old.write_run_log(_run_log("run-0", T0 - dt.timedelta(days=45)))


def test_figures(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """Ready per route, state per campaign, inventory, DNC by source, cooldown, dead letters, runs: all exact."""
    settings = _settings(tmp_path)
    arrange(raw_warehouse, settings)
    report = collect(settings, raw_warehouse)
    assert report.clock.startswith("as_of") and report.now == T0.isoformat()
    assert report.ready_by_route == {"SMB": 2, "Midsize": 1}  # done@ is out of cooldown again
    assert report.ready_total == 3
    assert sorted((r["route"], r["status"], r["leads"]) for r in report.state) == [
        ("SMB", "active", 1), ("SMB", "pending", 1), ("other", "active", 1)]
    assert (report.inventory_tracked, report.inventory_cap) == (2, 10)
    assert (report.last_measured_inventory, report.room) == (5, 5)  # run-2 measured 5 after adding 3
    assert report.dnc_by_source == [{"source": "manual", "emails": 1, "domains": 1}] and report.dnc_total == 2
    assert (report.cooldown_days, report.in_cooldown, report.leaving_cooldown_in_7_days) == (90, 2, 1)
    by_error = {(r["phase"], r["operation"], r["http_status"]): r for r in report.dead_letters_24h}
    assert set(by_error) == {("topup", "add_lead", 400), ("drain", "delete_lead", 503)}
    assert by_error[("topup", "add_lead", 400)]["failures"] == 2
    assert by_error[("topup", "add_lead", 400)]["still_open"] == 2
    assert report.open_dead_letters == 4
    assert [r["run_id"] for r in report.runs] == ["run-3", "run-2", "run-1"]  # run-0 is older than 30 days
    assert report.runs[1]["added"] == 3 and report.runs[1]["duration_seconds"] == pytest.approx(12.5)


def test_outcomes_by_policy_over_30_days(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """Drained leads of the last 30 days by outcome and policy, with how many never come back (#13)."""
    settings = _settings(tmp_path)
    arrange(raw_warehouse, settings)
    for email, policy, back, interest in (("won@example.com", "in_sales", None, 4),
                                          ("no@example.com", "not_interested", T0 + dt.timedelta(days=362), -1)):
        raw_warehouse.execute(
            "INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, sequence_name, status_final, completed_at, "
            "attempt_num, policy, return_at, interest_status) VALUES (@e, @c, 'SMB', 'replied', @t, 1, @p, @r, @i)",
            {"e": email, "c": SMB, "t": T0 - dt.timedelta(days=3), "p": policy,
             "r": Typed(back, "TIMESTAMP"), "i": interest}, label="test")
    report = collect(settings, raw_warehouse)
    assert report.outcomes_30d == [  # done@ (200 days) and soon@ (85 days) are older than 30 days
        {"status_final": "completed", "policy": "(before policies)", "leads": 1, "never_back": 0},
        {"status_final": "replied", "policy": "in_sales", "leads": 1, "never_back": 1},
        {"status_final": "replied", "policy": "not_interested", "leads": 1, "never_back": 0}]
    assert "    replied       in_sales                  1  (1 never back)" in report.render_text()
    assert "| replied | in_sales | 1 | 1 |" in report.render_markdown()


def test_held_leads_by_campaign_and_policy_with_their_hold_ends(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """The report lists held leads (state 'holding') per campaign under their history row's policy now,
    with the first and last hold end and how many end within 7 days (#13)."""
    settings = _settings(tmp_path)
    arrange(raw_warehouse, settings)
    held = (("won@example.com", "lead-1", "in_sales", 3), ("maybe@example.com", "lead-2", "replied", 10),
            ("hot@example.com", "lead-3", "in_sales", 6))
    for email, lead_id, policy, days in held:
        raw_warehouse.execute(
            "INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, status, instantly_lead_id, outcome, added_at, "
            "updated_at, hold_until) VALUES (@e, @c, 'holding', @id, 'replied', @t, @t, @until)",
            {"e": email, "c": SMB, "id": lead_id, "t": T0 - dt.timedelta(days=20),
             "until": T0 + dt.timedelta(days=days)}, label="test")
        raw_warehouse.execute(
            "INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, sequence_name, status_final, completed_at, "
            "attempt_num, instantly_lead_id, policy) VALUES (@e, @c, 'SMB', 'replied', @t, 1, @id, @p)",
            {"e": email, "c": SMB, "t": T0 - dt.timedelta(days=1), "id": lead_id, "p": policy}, label="test")
    report = collect(settings, raw_warehouse)
    day = {n: (T0 + dt.timedelta(days=n)).isoformat(timespec="seconds") for n in (3, 6, 10)}
    assert report.held == [
        {"route": "SMB", "campaign_id": SMB, "policy": "in_sales", "leads": 2, "first_ends": day[3],
         "last_ends": day[6], "ending_in_7_days": 2},
        {"route": "SMB", "campaign_id": SMB, "policy": "replied", "leads": 1, "first_ends": day[10],
         "last_ends": day[10], "ending_in_7_days": 0}]
    assert report.held_total == 3
    text, markdown = report.render_text(), report.render_markdown()
    assert "  held in their campaign (outcome recorded): 3" in text
    assert f"    SMB      {SMB}  in_sales            2  hold ends {day[3]} .. {day[6]} (2 within 7 days)" in text
    assert f"| SMB | `{SMB}` | replied | 1 | {day[10]} | {day[10]} | 0 |" in markdown
    assert json.loads(report.render("json"))["held_total"] == 3


def test_renderings_hold_no_email(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """Text, Markdown and JSON render the same figures; no address appears, not even from error texts."""
    settings = _settings(tmp_path)
    arrange(raw_warehouse, settings)
    report = collect(settings, raw_warehouse)
    text, markdown, data = report.render("text"), report.render("markdown"), json.loads(report.render("json"))
    assert "ready for Instantly: 3 (Midsize 1, SMB 2)" in text
    assert "| Ready for Instantly | 3 (Midsize: 1, SMB: 2) |" in markdown
    assert "topup/add_lead http 400: 2 (2 open" in text and "| topup | add_lead | 400 | 2 |" in markdown
    assert data["ready_total"] == 3 and data["dnc_total"] == 2 and data["room"] == 5
    for output in (text, markdown, json.dumps(data)):
        assert "@example.com" not in output.replace("***@example.com", "")
        assert "z@example.com" not in output


def test_cooldown_counts_from_now_without_as_of(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """Without an as_of row the report's clock is the current time (or the one given)."""
    settings = _settings(tmp_path)
    build(raw_warehouse, settings, [lead("a@example.com")], as_of=None)
    add_history(raw_warehouse, "a@example.com", T0 - dt.timedelta(days=1))
    report = collect(settings, raw_warehouse, now=T0 + dt.timedelta(days=200))
    assert report.clock == "current time" and report.in_cooldown == 0
    assert collect(settings, raw_warehouse, now=T0).in_cooldown == 1
    assert "none in the last 30 days" in report.render("text")


def test_missing_schema_says_run_setup(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """On an empty warehouse the report refuses with the fix (`python setup.py`)."""
    with pytest.raises(StatusError, match=r"python setup\.py"):
        collect(_settings(tmp_path), raw_warehouse)


def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr(settings_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "secrets")
    path = tmp_path / "report.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    monkeypatch.setenv("SMB_CAMPAIGN_ID", SMB)
    monkeypatch.setenv("MIDSIZE_CAMPAIGN_ID", MIDSIZE)
    return path


def test_sync_once_report_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`sync_once.py --report` prints text, `--markdown` a summary, `--json` JSON; nothing is synced."""
    path = _isolate(monkeypatch, tmp_path)
    warehouse = DuckDBWarehouse(path, "coldsync")
    arrange(warehouse, _settings(tmp_path))
    before = warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_run_log`", label="test")[0]["n"]
    warehouse.close()
    assert sync_once.main(["--report"]) == ExitCode.OK
    assert "coldsync status at" in capsys.readouterr().out
    assert sync_once.main(["--report", "--markdown"]) == ExitCode.OK
    assert capsys.readouterr().out.startswith("### coldsync status")
    assert sync_once.main(["--report", "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["ready_total"] == 3
    warehouse = DuckDBWarehouse(path, "coldsync")
    try:
        assert warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_run_log`", label="test")[0]["n"] == before
    finally:
        warehouse.close()


def test_sync_once_report_without_schema_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """On a warehouse that was never set up, `--report` exits 1 and says to run setup.py."""
    _isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("INSTANTLY_API_KEY", "sim-report-key")  # not embedded: no demo warehouse is built
    assert sync_once.main(["--report"]) == ExitCode.RUN_FAILED
    assert "python setup.py" in capsys.readouterr().err


def test_as_of_that_does_not_parse_falls_back_to_now(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """A malformed as_of row does not break the report: the current time is used and the clock says so."""
    settings = _settings(tmp_path)
    build(raw_warehouse, settings, as_of=None)
    set_config(raw_warehouse, "as_of", string="yesterday")
    assert "does not parse" in collect(settings, raw_warehouse).clock
