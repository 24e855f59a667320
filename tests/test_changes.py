"""`sync_once.py --changes`: the leads added and drained per run, masked unless --reveal (refused under CI),
read from hand-built rows on DuckDB (coldsync.changes)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import sync_once
from coldsync import settings as settings_module
from coldsync.changes import CI_MARKERS, ChangesInputError, check_reveal, collect_changes, parse_since
from coldsync.cli import ExitCode
from coldsync.settings import SPECS
from coldsync.store import Store
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
RUN1, RUN2, OLD = NOW - dt.timedelta(hours=5), NOW - dt.timedelta(hours=1), NOW - dt.timedelta(days=3)



def insert_rows(warehouse: Warehouse, state: list[dict[str, Any]], history: list[dict[str, Any]],
                history_fields: tuple[tuple[str, str], ...]) -> None:
    """Write state rows (updated_at = added_at) and history rows with the given columns, as the sync would."""
    warehouse.execute(
        "INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, sequence_target, status, added_at, updated_at, "
        "run_id, arm) SELECT r.email, r.campaign_id, r.sequence_target, r.status, r.added_at, r.added_at, "
        "r.run_id, r.arm FROM UNNEST(@rows) AS r", {"rows": Rows(STATE_FIELDS, state)}, label="test.state")
    names = [name for name, _type in history_fields]
    warehouse.execute(
        f"INSERT INTO `{{ds}}.ops_lead_history` ({', '.join(names)}) SELECT "  # noqa: S608
        f"{', '.join(f'r.{name}' for name in names)} FROM UNNEST(@rows) AS r",
        {"rows": Rows(history_fields, history)}, label="test.history")

def test_since_durations() -> None:
    """30m, 24h and 7d are minutes, hours and days; case and spaces do not matter."""
    assert parse_since("30m") == dt.timedelta(minutes=30)
    assert parse_since("24h") == dt.timedelta(hours=24)
    assert parse_since(" 7D ") == dt.timedelta(days=7)


@pytest.mark.parametrize("bad", ["3x", "24", "0h", "-1d", "1.5h", "", "h"])
def test_bad_since_names_the_flag_and_the_fix(bad: str) -> None:
    """A value that is not N followed by m, h or d (N above 0) is refused, naming --since and the forms."""
    with pytest.raises(ChangesInputError, match=r"--since .* such as 30m, 24h or 7d"):
        parse_since(bad)


def test_reveal_refused_under_ci_only() -> None:
    """--reveal is refused when CI is set (true, 1, anything but empty/0/false), allowed otherwise."""
    for value in ("true", "1", "yes"):
        with pytest.raises(ChangesInputError, match="refused under CI"):
            check_reveal(True, {"CI": value})
    check_reveal(True, {"CI": "false"})
    check_reveal(True, {})
    check_reveal(False, {"CI": "true"})


STATE_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("sequence_target", "STRING"), ("status", "STRING"),
                ("added_at", "TIMESTAMP"), ("run_id", "STRING"), ("arm", "STRING"))
HISTORY_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("sequence_name", "STRING"),
                  ("status_final", "STRING"), ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"),
                  ("recorded_at", "TIMESTAMP"), ("run_id", "STRING"), ("arm", "STRING"), ("policy", "STRING"))


def _run_log(run_id: str, started: dt.datetime) -> dict[str, object]:
    return {"run_id": run_id, "started_at": started, "finished_at": started + dt.timedelta(seconds=9),
            "mode": "live", "outcome": "success", "warehouse": "duckdb", "drained": 1, "added": 1, "dead_letters": 0,
            "inventory_before": 1, "inventory_after": 1, "api_calls": 3, "warehouse_statements": 5,
            "duration_seconds": 9.0, "error_text": None, "summary_json": "{}"}


def arrange(path: Path, tmp_path: Path) -> None:
    """Two runs in the window (run-1 five hours ago, run-2 one hour ago) and rows three days old."""
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE)
    warehouse = DuckDBWarehouse(path, "coldsync")
    try:
        build(warehouse, settings, as_of=None)
        state: list[dict[str, Any]] = [
            # run_id is the run that last changed the row; the adding run is found by added_at
            {"email": "jane@corp.example", "campaign_id": SMB, "sequence_target": "SMB", "status": "active",
             "added_at": RUN1, "run_id": "run-2", "arm": "SMB"},
            {"email": "bob@corp.example", "campaign_id": MIDSIZE, "sequence_target": "Midsize", "status": "pending",
             "added_at": RUN2, "run_id": "run-2", "arm": "Midsize"},
            {"email": "old@corp.example", "campaign_id": SMB, "sequence_target": "SMB", "status": "active",
             "added_at": OLD, "run_id": "run-0", "arm": "SMB"},
        ]
        history: list[dict[str, Any]] = [
            {"email": "kim@corp.example", "campaign_id": MIDSIZE, "sequence_name": "Midsize", "status_final": "replied",
             "completed_at": RUN2 - dt.timedelta(days=2), "attempt_num": 1, "recorded_at": RUN2, "run_id": "run-2",
             "arm": "Midsize", "policy": "replied"},
            {"email": "gone@corp.example", "campaign_id": SMB, "sequence_name": "SMB", "status_final": "completed",
             "completed_at": OLD, "attempt_num": 1, "recorded_at": OLD, "run_id": "run-0", "arm": "SMB",
             "policy": "no_reply"},
        ]
        insert_rows(warehouse, state, history, HISTORY_FIELDS)
        store = Store(warehouse, "test", NOW)
        for run_id, started in (("run-0", OLD), ("run-1", RUN1), ("run-2", RUN2)):
            store.write_run_log(_run_log(run_id, started))
    finally:
        warehouse.close()


def _iso(at: dt.datetime) -> str:
    return at.isoformat(timespec="seconds")


def test_added_and_drained_per_run_masked(tmp_path: Path) -> None:
    """In the last 24 h: run-2 added bob and drained kim, run-1 added jane (found by added_at, though run-2 last
    changed her row); the 3-day-old rows are left out; every address is masked."""
    path = tmp_path / "c.duckdb"
    arrange(path, tmp_path)
    warehouse = DuckDBWarehouse(path, "coldsync")
    try:
        changes = collect_changes(warehouse, since=dt.timedelta(hours=24), now=NOW)
        smb_only = collect_changes(warehouse, since=dt.timedelta(hours=24), route="SMB", now=NOW)
        week = collect_changes(warehouse, since=dt.timedelta(days=7), now=NOW)
    finally:
        warehouse.close()
    assert [r["run_id"] for r in changes.runs] == ["run-2", "run-1"]
    run2, run1 = changes.runs
    assert run2["added"] == [{"email": "b***@corp.example", "route": "Midsize", "arm": "Midsize",
                              "campaign_id": MIDSIZE, "status": "pending", "added_at": _iso(RUN2)}]
    assert run2["drained"] == [{"email": "k***@corp.example", "route": "Midsize", "arm": "Midsize",
                                "campaign_id": MIDSIZE, "outcome": "replied", "policy": "replied",
                                "completed_at": _iso(RUN2 - dt.timedelta(days=2)), "recorded_at": _iso(RUN2)}]
    assert [r["email"] for r in run1["added"]] == ["j***@corp.example"] and run1["drained"] == []
    assert (changes.added, changes.drained) == (2, 1)
    assert [r["run_id"] for r in smb_only.runs] == ["run-1"]
    assert (week.added, week.drained, [r["run_id"] for r in week.runs]) == (3, 2, ["run-2", "run-1", "run-0"])
    text = changes.render("text")
    assert "run run-2: 1 added, 1 drained" in text
    assert "drained  k***@corp.example" in text and "replied (policy replied)" in text
    assert "@corp.example" not in text.replace("***@corp.example", "")
    assert json.loads(changes.render("json"))["emails"] == "masked"


def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", *CI_MARKERS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "secrets")
    path = tmp_path / "changes.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    monkeypatch.setenv("SMB_CAMPAIGN_ID", SMB)
    monkeypatch.setenv("MIDSIZE_CAMPAIGN_ID", MIDSIZE)
    return path


def test_command_masks_reveals_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The command: masked text, JSON, --reveal with its stderr note, and exit 2 for --reveal under CI, a bad
    --since, an unknown --route, and --since without --changes."""
    path = _isolate(monkeypatch, tmp_path)
    arrange(path, tmp_path)
    assert sync_once.main(["--changes"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "2 added, 1 drained in 2 run(s)" in out and "j***@corp.example" in out and "jane@" not in out
    assert sync_once.main(["--changes", "--json", "--since", "7d", "--route", "SMB"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert (data["added"], data["drained"], data["window"], data["route"]) == (2, 1, "7d", "SMB")
    assert sync_once.main(["--changes", "--reveal"]) == ExitCode.OK
    captured = capsys.readouterr()
    assert "jane@corp.example" in captured.out and "--reveal" in captured.err
    monkeypatch.setenv("CI", "true")
    assert sync_once.main(["--changes", "--reveal"]) == ExitCode.BAD_CONFIG
    captured = capsys.readouterr()
    assert "refused under CI" in captured.err and captured.out == ""
    assert sync_once.main(["--changes", "--since", "3x"]) == ExitCode.BAD_CONFIG
    assert "--since '3x' is not a duration" in capsys.readouterr().err
    assert sync_once.main(["--changes", "--route", "Enterprise"]) == ExitCode.BAD_CONFIG
    assert "give one of SMB, Midsize" in capsys.readouterr().err
    assert sync_once.main(["--since", "24h"]) == ExitCode.BAD_CONFIG
    assert "only go(es) with --changes" in capsys.readouterr().err
    assert sync_once.main(["--changes", "--report"]) == ExitCode.BAD_CONFIG


PINNED = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
RUN_A, RUN_B = PINNED - dt.timedelta(hours=5), PINNED - dt.timedelta(hours=1)
ADDED_HISTORY_FIELDS = (*HISTORY_FIELDS, ("added_at", "TIMESTAMP"))


def arrange_drained(warehouse: Warehouse, tmp_path: Path) -> None:
    """The clock pinned at PINNED (as_of row). run-a (5 h before) added ann and hal; run-b (1 h before) drained
    ann (her state row gone), hal (still held: both rows), pre (a history row from before v7: no added_at) and
    old (added 3 days before). Rows at exactly 24 h before, and after PINNED, are outside a 24 h window."""
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE)
    build(warehouse, settings, as_of=PINNED)
    state = [
        {"email": "hal@corp.example", "campaign_id": SMB, "sequence_target": "SMB", "status": "held",
         "added_at": RUN_A, "run_id": "run-b", "arm": "SMB"},
        {"email": "edge@corp.example", "campaign_id": SMB, "sequence_target": "SMB", "status": "active",
         "added_at": PINNED - dt.timedelta(hours=24), "run_id": "run-0", "arm": "SMB"},
        {"email": "late@corp.example", "campaign_id": SMB, "sequence_target": "SMB", "status": "active",
         "added_at": PINNED + dt.timedelta(hours=1), "run_id": "run-z", "arm": "SMB"},
    ]

    def ended(email: str, outcome: str, added: dt.datetime | None, recorded: dt.datetime = RUN_B) -> dict[str, Any]:
        return {"email": email, "campaign_id": SMB, "sequence_name": "SMB", "status_final": outcome,
                "completed_at": recorded - dt.timedelta(hours=2), "attempt_num": 1, "recorded_at": recorded,
                "run_id": "run-b" if recorded == RUN_B else "run-z", "arm": "SMB", "policy": None,
                "added_at": added}

    history = [ended("ann@corp.example", "replied", RUN_A), ended("hal@corp.example", "completed", RUN_A),
               ended("pre@corp.example", "completed", None),
               ended("old@corp.example", "bounced", PINNED - dt.timedelta(days=3)),
               ended("later@corp.example", "completed", PINNED + dt.timedelta(minutes=30),
                     PINNED + dt.timedelta(hours=1))]
    insert_rows(warehouse, state, history, ADDED_HISTORY_FIELDS)
    store = Store(warehouse, "test", PINNED)
    for run_id, started in (("run-a", RUN_A), ("run-b", RUN_B)):
        store.write_run_log(_run_log(run_id, started))


def test_drained_leads_still_count_in_their_adding_run(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """A lead added and drained within the window counts among its adding run's adds (from its history row's
    added_at), a lead with both rows (held) once with its current status; pre-v7 rows (no added_at) and adds
    older than the window only as drained; the window is (now - 24 h, now]; on both engines."""
    arrange_drained(raw_warehouse, tmp_path)
    changes = collect_changes(raw_warehouse, since=dt.timedelta(hours=24), now=PINNED)
    assert [r["run_id"] for r in changes.runs] == ["run-b", "run-a"]
    run_b, run_a = changes.runs
    assert [(r["email"], r["status"], r["added_at"]) for r in run_a["added"]] == [
        ("a***@corp.example", "drained", _iso(RUN_A)), ("h***@corp.example", "held", _iso(RUN_A))]
    assert run_a["drained"] == [] and run_b["added"] == []
    assert [(r["email"], r["outcome"]) for r in run_b["drained"]] == [
        ("a***@corp.example", "replied"), ("h***@corp.example", "completed"), ("o***@corp.example", "bounced"),
        ("p***@corp.example", "completed")]
    assert (changes.added, changes.drained) == (2, 4)


def test_changes_count_back_from_the_pinned_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--changes` counts back from the as_of config row (months before today): the 24 h before it hold 2
    adds and 4 drains, and `now` is the pinned instant."""
    warehouse = DuckDBWarehouse(_isolate(monkeypatch, tmp_path), "coldsync")
    try:
        arrange_drained(warehouse, tmp_path)
    finally:
        warehouse.close()
    assert sync_once.main(["--changes", "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert (data["now"], data["added"], data["drained"]) == (_iso(PINNED), 2, 4)


def test_since_too_far_back_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--since above 3650d (999999d, 999999h) is refused with exit 2 naming --since and the cap, not an
    OverflowError; 3650d itself is accepted."""
    assert parse_since("3650d") == dt.timedelta(days=3650)
    with pytest.raises(ChangesInputError, match=r"--since '999999h' is too far back: give at most 3650d"):
        parse_since("999999h")
    _isolate(monkeypatch, tmp_path)
    assert sync_once.main(["--changes", "--since", "999999d"]) == ExitCode.BAD_CONFIG
    assert "--since '999999d' is too far back: give at most 3650d" in capsys.readouterr().err


@pytest.mark.parametrize("marker", ["CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD"])
def test_reveal_refused_under_each_ci_marker(marker: str) -> None:
    """--reveal is refused when any common CI marker is set (alone), naming it; `false` or empty is not CI."""
    value = "https://jenkins.corp.example/" if marker == "JENKINS_URL" else "true"
    with pytest.raises(ChangesInputError, match=f"refused under CI \\(the {marker} variable is set\\)"):
        check_reveal(True, {marker: value})
    check_reveal(True, {marker: "false"})
    check_reveal(True, {marker: ""})
