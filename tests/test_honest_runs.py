"""Honest runs (issue #12): the exit code, the retry budgets and the run memory match what happened in
Instantly: an unreachable service is exit 1, an outage of one endpoint is one service-level dead letter
that never touches a lead, a given-up lead rests GIVE_UP_COOLDOWN_DAYS, a changed SOURCE_TABLE is
refused until setup.py rebinds the views, and a failed run's drain watermarks are never progress."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.settings import Settings, replace
from coldsync.store import Store
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.demo_data import HISTORY_FIELDS, INSERT_HISTORY_SQL, generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.migrate import ensure_schema
from proof.harness import CrashingWarehouse, Operations
from tests.conftest import make_settings, open_warehouse
from tests.helpers import add_sources, build, lead, set_config
from tests.invariants import World, table_contents

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
HALF_HOUR = 1 / 48  # simulator days


def _settings(tmp_path: Path, **env: str) -> Settings:
    # No reply hold (tests/test_hold.py has it): here every finished lead leaves Instantly when drained.
    env.setdefault("reply_hold_days", "0")
    return make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="300",
                         target_new_leads_per_run="20", instantly_api_key="sim-key", **env)


def _world(warehouse: Warehouse, settings: Settings, rows: int = 200, **client: Any) -> World:
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    build(warehouse, settings, list(generate_source_rows(rows, seed=3)), as_of=START)
    options: dict[str, Any] = {"base_url": sim.base_url, "backoff_base": 0.001, "backoff_max": 0.002, **client}
    return World(warehouse, sim, InstantlyClient("sim-key", **options), settings)


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[World]:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    world = _world(warehouse, _settings(tmp_path))
    try:
        yield world
    finally:
        world.client.close()
        world.sim.stop()
        warehouse.close()


def _rows(warehouse: Warehouse, sql: str) -> list[dict[str, Any]]:
    return warehouse.query(sql, label="test")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- exit codes ----------------------------------------------------------------------------------

def test_unreachable_instantly_fails_fast_with_exit_1(duck: World) -> None:
    """Nothing listening at INSTANTLY_BASE_URL: exit 1 with one cause line, after ONE call's retries (no
    request for the other reads), nothing written but the run log, outcome `failed`."""
    client = InstantlyClient("sim-key", base_url=f"http://127.0.0.1:{_free_port()}", backoff_base=0.001,
                             backoff_max=0.002, max_attempts=3)
    result = World(duck.warehouse, duck.sim, client, duck.settings).run()
    assert result.exit_code == ExitCode.RUN_FAILED
    assert result.report.outcome == "failed"
    assert result.report.error is not None
    assert result.report.error.startswith("could not read any campaign from Instantly (")
    assert "connection failed" in result.report.error
    assert client.stats.requests == 3  # GET /campaigns/analytics, 3 attempts; the campaign reads never left
    assert _rows(duck.warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state`")[0]["n"] == 0
    runs = _rows(duck.warehouse, "SELECT outcome, error_text FROM `{ds}.ops_run_log`")
    assert [r["outcome"] for r in runs] == ["failed"]
    letters = _rows(duck.warehouse, "SELECT phase, operation, retry_count FROM `{ds}.ops_dead_letters`")
    assert letters == [{"phase": "service", "operation": "GET /campaigns/analytics", "retry_count": 0}]
    assert "❌" in result.report.render_markdown() and result.report.error in result.report.render_markdown()


class _SilentServer:
    """A loopback listener that accepts every connection, reads the request and never answers; it keeps the
    request lines it received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[str] = []
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # never answered, never closed until the test ends
            conn.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_instantly_that_never_answers_fails_after_one_calls_timeouts(duck: World) -> None:
    """A server that accepts connections and never answers: GET /campaigns/analytics times out
    INSTANTLY_TIMEOUT_ATTEMPTS (3) times, then nothing more is sent (the service counts as unreachable, as with
    a refused connection); exit 1, outcome `failed`, the cause names the timeout."""
    server = _SilentServer()
    settings = replace(duck.settings, instantly_request_deadline_seconds=1)
    assert settings.instantly_timeout_attempts == 3
    client = InstantlyClient("sim-key", base_url=f"http://127.0.0.1:{server.port}", backoff_base=0.001,
                             backoff_max=0.002, read_timeout=0.2, connect_timeout=0.2,
                             request_deadline=settings.instantly_request_deadline_seconds,
                             max_timeout_attempts=settings.instantly_timeout_attempts)
    try:
        result = World(duck.warehouse, duck.sim, client, settings).run()
    finally:
        client.close()
        server.close()
    assert result.exit_code == ExitCode.RUN_FAILED and result.report.outcome == "failed"
    assert result.report.error is not None
    assert result.report.error.startswith("could not read any campaign from Instantly (")
    assert "timeout" in result.report.error
    assert [line.split("?")[0] for line in server.requests] == ["GET /api/v2/campaigns/analytics"] * 3
    assert client.stats.requests == 3
    letters = _rows(duck.warehouse, "SELECT phase, operation, retry_count FROM `{ds}.ops_dead_letters`")
    assert letters == [{"phase": "service", "operation": "GET /campaigns/analytics", "retry_count": 0}]


def test_analytics_down_drains_then_exits_1(duck: World) -> None:
    """Only GET /campaigns/analytics fails: the campaigns are read one by one, finished leads still drain,
    nothing is added (inventory unknown everywhere), and the run exits 1 saying why."""
    assert duck.run().exit_code == ExitCode.OK
    duck.sim.advance(11)
    active = {x["id"] for x in duck.sim.leads() if x.get("status") == 1}  # Instantly: still in sequence
    assert len(active) == 1  # 19 of the 20 sequences have ended (status 3)
    duck.sim.set_fault("GET /campaigns/analytics", FaultSpec(error_rate=1.0, error_status=503))
    result = duck.run()
    assert result.exit_code == ExitCode.RUN_FAILED
    assert result.report.error is not None
    assert result.report.error.startswith("could not measure the inventory of any campaign in Instantly (")
    assert result.report.added == 0 and result.report.drained == 19
    assert {x["id"] for x in duck.sim.leads()} == active


def test_a_warning_only_run_exits_0(duck: World) -> None:
    """A paused campaign is a warning, not a failure: exit 0, outcome success, the other route is fed."""
    duck.sim.set_campaign_status(MIDSIZE, 2)
    result = duck.run()
    assert result.exit_code == ExitCode.OK and result.report.outcome == "success"
    assert any("Midsize campaign is paused" in w for w in result.report.warnings)
    assert {lead["campaign"] for lead in duck.sim.leads()} == {SMB}


# --- retry budgets: a three-hour outage of POST /leads/add ----------------------------------------

def _letters(warehouse: Warehouse) -> list[dict[str, Any]]:
    return _rows(warehouse, "SELECT phase, operation, email, retry_count, resolved_at IS NOT NULL AS resolved, "
                            "gave_up_at IS NOT NULL AS gave_up FROM `{ds}.ops_dead_letters` ORDER BY occurred_at")


def test_outage_of_one_endpoint_is_one_service_letter_and_benches_nobody(tmp_path: Path) -> None:
    """POST /leads/add answers 503 for three hours (six runs, 30 minutes apart): one service-level dead
    letter counts the runs, no lead gets a dead letter, a history row or a cooldown; runs 1-2 warn (exit 0),
    runs 3-6 exit 1 (SERVICE_FAILURE_RUNS=3); the run after the outage adds exactly the leads an untroubled
    run would have added, and closes the letter."""
    control_wh = DuckDBWarehouse(tmp_path / "control.duckdb", "coldsync")
    (tmp_path / "c").mkdir()
    (tmp_path / "o").mkdir()
    control = _world(control_wh, _settings(tmp_path / "c"))
    outage_wh = DuckDBWarehouse(tmp_path / "outage.duckdb", "coldsync")
    world = _world(outage_wh, _settings(tmp_path / "o"))
    try:
        assert control.run().exit_code == ExitCode.OK
        wanted = {lead["email"] for lead in control.sim.leads()}
        assert len(wanted) == 20
        world.sim.set_fault("POST /leads/add", FaultSpec(error_rate=1.0, error_status=503))
        for run in range(1, 7):
            before = len(world.sim.requests_to("POST", "/leads/add"))
            result = world.run()
            sent = len(world.sim.requests_to("POST", "/leads/add")) - before
            assert sent == 6, f"run {run}: one call's six attempts, then the circuit holds the other campaign's"
            assert result.exit_code == (ExitCode.OK if run < 3 else ExitCode.RUN_FAILED), result.report.render_text()
            if run >= 3:
                assert result.report.error is not None and result.report.outcome == "alarm"
                assert f"POST /leads/add has failed in {run} consecutive runs (SERVICE_FAILURE_RUNS=3)" \
                    in result.report.error
                # An alarm run did all it could: the next run starts from its progress (watermarks, cursors).
                store = Store(outage_wh, "t", START)
                store.run_memory()
                assert store.last_summary["run_id"] == result.report.run_id
            assert any("20 lead(s) not confirmed added" in w for w in result.report.warnings)
            assert _letters(outage_wh) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                            "retry_count": run - 1, "resolved": False, "gave_up": False}]
            assert _rows(outage_wh, "SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history`")[0]["n"] == 0
            assert _rows(outage_wh, "SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state`")[0]["n"] == 0
            world.sim.advance(HALF_HOUR)
        world.sim.clear_faults()
        result = world.run()
        assert result.exit_code == ExitCode.OK and result.report.added == 20
        assert {lead["email"] for lead in world.sim.leads()} == wanted
        assert _letters(outage_wh) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                        "retry_count": 5, "resolved": True, "gave_up": False}]
    finally:
        for w in (control, world):
            w.client.close()
            w.sim.stop()
        control_wh.close()
        outage_wh.close()


def test_a_streak_is_of_consecutive_runs(duck: World) -> None:
    """Two runs with adds failing; a run 30 minutes later with nothing to add keeps the letter open (it says
    nothing of the operation); a day later such a run closes it (STREAK_QUIET, 6 hours), so one later
    failure starts a new count (1 run, exit 0), not a false third consecutive run."""
    duck.sim.set_fault("POST /leads/add", FaultSpec(error_rate=1.0, error_status=503))
    assert [duck.run().exit_code for _ in range(2)] == [ExitCode.OK, ExitCode.OK]
    duck.sim.advance(HALF_HOUR)
    assert duck.run(target_new_leads_per_run=0).exit_code == ExitCode.OK
    assert [(r["retry_count"], r["resolved"]) for r in _letters(duck.warehouse)] == [(1, False)]
    duck.sim.advance(1)
    assert duck.run(target_new_leads_per_run=0).exit_code == ExitCode.OK
    assert _letters(duck.warehouse) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                         "retry_count": 1, "resolved": True, "gave_up": False}]
    duck.sim.advance(1)
    result = duck.run()
    assert result.exit_code == ExitCode.OK and result.report.outcome == "success"
    assert [(r["retry_count"], r["resolved"]) for r in _letters(duck.warehouse)] == [(1, True), (0, False)]


def test_the_plan_lead_limit_is_one_service_letter_benches_nobody_and_alarms_on_the_third_run(duck: World) -> None:
    """The plan holds 10 leads: run 1 adds 10 and holds 10 back, runs 2-3 add none; no lead gets a dead letter
    or a history row, ONE service letter counts the runs, run 3 exits 1 naming the plan limit and the fix;
    once the plan has room the 20 held-back leads are added and the letter closes."""
    duck.sim.plan_lead_limit = 10
    first = duck.run()
    assert first.exit_code == ExitCode.OK and first.report.added == 10
    assert first.report.phase("topup").counts["held back: plan limit"] == 10
    assert any("10 lead(s) not added: the Instantly plan's lead limit is reached" in w for w in first.report.warnings)
    added_first = {lead["email"] for lead in duck.sim.leads()}
    before = len(duck.sim.requests_to("POST", "/leads/add"))
    for run in (2, 3):
        result = duck.run()
        assert result.report.added == 0
        assert result.report.phase("topup").counts["held back: plan limit"] == 20
        assert result.exit_code == (ExitCode.OK if run < 3 else ExitCode.RUN_FAILED), result.report.render_text()
        assert _letters(duck.warehouse) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                             "retry_count": run - 1, "resolved": False, "gave_up": False}]
        assert _rows(duck.warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history`")[0]["n"] == 0
        assert _rows(duck.warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state`")[0]["n"] == 10
        duck.sim.advance(HALF_HOUR)
    assert result.report.outcome == "alarm" and result.report.error is not None
    assert result.report.error.startswith("the Instantly plan's lead limit has been reached in 3 consecutive runs "
                                          "(SERVICE_FAILURE_RUNS=3)")
    assert "raise the plan's lead limit" in result.report.error and "INVENTORY_CAP" in result.report.error
    assert result.report.error in result.report.render_markdown()
    held = {lead["email"] for r in duck.sim.requests_to("POST", "/leads/add")[before:]
            for lead in r.request_body["leads"]}
    assert len(held) == 20  # the same 20 top leads asked for in runs 2 and 3
    duck.sim.plan_lead_limit = 30  # room again (leads drained, or the plan raised)
    result = duck.run()
    assert result.exit_code == ExitCode.OK and result.report.added == 20
    assert {lead["email"] for lead in duck.sim.leads()} - added_first == held
    assert _letters(duck.warehouse) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                         "retry_count": 2, "resolved": True, "gave_up": False}]


def test_a_lead_that_poisons_its_batch_is_found_and_counts_alone(duck: World) -> None:
    """Instantly refuses (400, naming nobody) every add holding one bad lead: the batch is halved until that
    lead stands alone, the other 19 are added in the same run, and only the bad lead gets a dead letter;
    given up after DEAD_LETTER_MAX_RETRIES it rests; nobody else ever counts a failure."""
    top = Store.for_settings(duck.warehouse, "t", START, duck.settings).read_ready({"SMB": 10, "Midsize": 10})
    bad = str(top[3]["email"])
    duck.sim.set_fault("POST /leads/add", FaultSpec(refuse_emails=[bad]))
    result = duck.run()
    assert result.exit_code == ExitCode.OK and result.report.added == 19
    assert bad not in {lead["email"] for lead in duck.sim.leads()}
    # The refused batch of 10 is halved (5+5, then 2+3, ...): every refused request holds the bad lead, each
    # smaller than the one before, the last one the bad lead alone; no accepted request holds it; at most
    # 1 + 2 x ceil(log2 10) = 9 requests for that campaign, 1 for the other.
    sent = [([x["email"] for x in r.request_body["leads"]], r.status)
            for r in duck.sim.requests_to("POST", "/leads/add")]
    refused = [emails for emails, status in sent if status == 400]
    assert all(bad in emails for emails in refused) and refused[-1] == [bad]
    assert [len(e) for e in refused] == sorted((len(e) for e in refused), reverse=True) and len(refused[0]) == 10
    assert all(bad not in emails for emails, status in sent if status == 200)
    assert len(sent) <= 1 + 9 and sum(len(e) for e, status in sent if status == 200) == 19
    letters = _rows(duck.warehouse, "SELECT phase, operation, email, http_status FROM `{ds}.ops_dead_letters`")
    assert letters == [{"phase": "topup", "operation": "add_lead", "email": bad, "http_status": 400}]


def test_every_add_refused_is_one_service_letter_not_a_letter_per_lead(duck: World) -> None:
    """Every POST /leads/add answers 400 naming nobody (three runs): each campaign's batch of 10 is halved down
    to single leads (19 requests each: 38; one campaign's refusal does not hold back the other's add), none
    accepted, so it is a refusal of the operation: the 20 leads are held back as a service failure, no lead gets
    a dead letter or a history row, ONE service letter counts the runs and the third run exits 1; once Instantly
    accepts adds again the 20 are added and the letter closes."""
    duck.sim.set_fault("POST /leads/add", FaultSpec(error_rate=1.0, error_status=400))
    for run in (1, 2, 3):
        before = len(duck.sim.requests_to("POST", "/leads/add"))
        result = duck.run()
        assert len(duck.sim.requests_to("POST", "/leads/add")) - before == 38
        assert result.exit_code == (ExitCode.OK if run < 3 else ExitCode.RUN_FAILED), result.report.render_text()
        counts = result.report.phase("topup").counts
        assert (counts["held back: service failure"], counts["dead_letters"], result.report.added) == (20, 0, 0)
        assert _letters(duck.warehouse) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                             "retry_count": run - 1, "resolved": False, "gave_up": False}]
        assert _rows(duck.warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history`")[0]["n"] == 0
        duck.sim.advance(HALF_HOUR)
    assert result.report.error is not None and result.report.error.startswith(
        "Instantly has refused every lead sent to POST /leads/add in 3 consecutive runs (SERVICE_FAILURE_RUNS=3)")
    duck.sim.clear_faults()
    result = duck.run()
    assert result.exit_code == ExitCode.OK and result.report.added == 20
    assert _letters(duck.warehouse) == [{"phase": "service", "operation": "POST /leads/add", "email": None,
                                         "retry_count": 2, "resolved": True, "gave_up": False}]


def test_leads_the_split_budget_left_together_are_labelled_so(duck: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one halving per call, the batch of 10 holding a bad lead splits once: the half without it is
    added, the half with it (5 leads) stays refused together: reported "held back: refused in a batch (split
    budget spent)", not as a service failure, with no service letter and no lead's letter; 15 added."""
    from coldsync.instantly import client as client_module
    from coldsync.phases.topup import SPLIT_BUDGET_SPENT

    monkeypatch.setattr(client_module, "MAX_ADD_SPLITS", 1)
    top = Store.for_settings(duck.warehouse, "t", START, duck.settings).read_ready({"SMB": 10, "Midsize": 10})
    duck.sim.set_fault("POST /leads/add", FaultSpec(refuse_emails=[str(top[3]["email"])]))
    result = duck.run()
    counts = result.report.phase("topup").counts
    assert result.exit_code == ExitCode.OK and result.report.added == 15
    assert (counts[SPLIT_BUDGET_SPENT], counts["held back: service failure"], counts["dead_letters"]) == (5, 0, 0)
    assert SPLIT_BUDGET_SPENT == "held back: refused in a batch (split budget spent)"
    assert any(w.startswith("5 lead(s) not added: Instantly refused their batch") for w in result.report.warnings)
    assert _letters(duck.warehouse) == []


# --- giving up rests GIVE_UP_COOLDOWN_DAYS, not the cooldown ------------------------------------------

def _history(warehouse: Warehouse, email: str, status: str, completed_at: dt.datetime) -> None:
    row = {"email": email, "campaign_id": "c-smb", "sequence_name": "SMB", "status_final": status,
           "completed_at": completed_at, "attempt_num": 1, "reason": "test", "recorded_at": completed_at}
    warehouse.execute(INSERT_HISTORY_SQL, {"rows": Rows(HISTORY_FIELDS, [row])}, label="test.history")


def test_given_up_add_rests_give_up_cooldown_days(tmp_path: Path) -> None:
    """A `failed` (given-up) history row keeps its person out for exactly GIVE_UP_COOLDOWN_DAYS (7; exactly
    7 days ago is eligible), a sequence that ran for COOLDOWN_DAYS (90), and a person with both waits for
    both; the sync's read and the view agree."""
    # DuckDB: the rule's SQL itself runs on both engines in tests/test_outcome_eligibility.py.
    raw_warehouse = DuckDBWarehouse(tmp_path / "rest.duckdb", "coldsync")
    settings = _settings(tmp_path)
    people = {"six@rest.example": [("failed", 6)], "seven@rest.example": [("failed", 7)],
              "ran@rest.example": [("completed", 30)],
              "both@rest.example": [("failed", 8), ("completed", 30)],
              "old@rest.example": [("failed", 8), ("completed", 91)]}
    build(raw_warehouse, settings, [lead(email, Decimal(10_000)) for email in people], as_of=START)
    for email, rows in people.items():
        for status, days in rows:
            _history(raw_warehouse, email, status, START - dt.timedelta(days=days))
    ready = {str(r["email"]) for r in Store.for_settings(raw_warehouse, "t", START, settings).read_ready(
        {"SMB": 100, "Midsize": 100})}
    assert ready == {"seven@rest.example", "old@rest.example"}
    view = {str(r["email"]) for r in _rows(raw_warehouse, "SELECT email FROM `{ds}.v_ready_for_instantly`")}
    assert view == ready
    longer = {str(r["email"]) for r in Store.for_settings(
        raw_warehouse, "t", START, replace(settings, give_up_cooldown_days=8)).read_ready({"SMB": 100})}
    assert longer == {"old@rest.example"}


def test_give_up_writes_a_failed_row_that_rests_seven_days(duck: World) -> None:
    """A lead whose add letter reached DEAD_LETTER_MAX_RETRIES is given up with a `failed` history row; it
    is not picked 6 days later and is picked again 7 days later (not after 90)."""
    email = "stuck@rest.example"
    add_sources(duck.warehouse, [lead(email, Decimal(900_000_000))])  # the best score: picked first when ready
    limit = duck.settings.dead_letter_max_retries
    duck.warehouse.execute(
        "INSERT INTO `{ds}.ops_dead_letters` (id, occurred_at, run_id, phase, operation, email, campaign_id, "
        "retry_count) VALUES ('x1', @t, 'r0', 'topup', 'add_lead', @e, @c, @n)",
        {"t": START, "e": email, "c": SMB, "n": limit}, label="test")
    # A first run with no room: only housekeeping acts on the letter.
    assert duck.run(target_new_leads_per_run=0).exit_code == ExitCode.OK
    history = _rows(duck.warehouse, "SELECT email, status_final FROM `{ds}.ops_lead_history`")
    assert history == [{"email": email, "status_final": "failed"}]
    store = Store.for_settings(duck.warehouse, "t", START + dt.timedelta(days=6, hours=23), duck.settings)
    assert email not in {str(r["email"]) for r in store.read_ready({"SMB": 500, "Midsize": 500})}
    store = Store.for_settings(duck.warehouse, "t", START + dt.timedelta(days=7), duck.settings)
    assert email in {str(r["email"]) for r in store.read_ready({"SMB": 500, "Midsize": 500})}


def test_a_lead_adopted_in_the_run_has_its_add_letter_resolved_not_given_up(duck: World) -> None:
    """A lead whose add letter is at DEAD_LETTER_MAX_RETRIES was put into a managed campaign by hand: the run
    adopts it (state 'active' with its id) and closes its letter as done; it is not given up, so no
    `failed` history row is written for a lead that is active in Instantly."""
    email = "handy@orphan.example"
    add_sources(duck.warehouse, [lead(email, Decimal(10_000))])
    duck.warehouse.execute(
        "INSERT INTO `{ds}.ops_dead_letters` (id, occurred_at, run_id, phase, operation, email, campaign_id, "
        "retry_count) VALUES ('x1', @t, 'r0', 'topup', 'add_lead', @e, @c, @n)",
        {"t": START, "e": email, "c": SMB, "n": duck.settings.dead_letter_max_retries}, label="test")
    lead_id = str(duck.sim.insert_leads(SMB, [{"email": email}])["created_leads"][0]["id"])
    result = duck.run(target_new_leads_per_run=0)
    assert result.exit_code == ExitCode.OK and result.report.phase("housekeeping").counts["adopt orphan"] == 1
    assert _rows(duck.warehouse, "SELECT email, status, instantly_lead_id FROM `{ds}.ops_inst_state`") == [
        {"email": email, "status": "active", "instantly_lead_id": lead_id}]
    assert _letters(duck.warehouse) == [{"phase": "topup", "operation": "add_lead", "email": email,
                                         "retry_count": 5, "resolved": True, "gave_up": False}]
    assert _rows(duck.warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history`")[0]["n"] == 0


def test_a_lead_the_top_up_adds_has_its_add_letter_resolved_not_given_up(duck: World) -> None:
    """A lead whose add letter is at DEAD_LETTER_MAX_RETRIES is added by the run's own top-up (the first run:
    nothing tracked before it): housekeeping sees it active, closes the letter as done and writes no
    `failed` history row."""
    email = "stuck@rest.example"
    add_sources(duck.warehouse, [lead(email, Decimal(900_000_000))])  # the best score: picked first
    duck.warehouse.execute(
        "INSERT INTO `{ds}.ops_dead_letters` (id, occurred_at, run_id, phase, operation, email, campaign_id, "
        "retry_count) VALUES ('x1', @t, 'r0', 'topup', 'add_lead', @e, @c, @n)",
        {"t": START, "e": email, "c": SMB, "n": duck.settings.dead_letter_max_retries}, label="test")
    result = duck.run()
    assert result.exit_code == ExitCode.OK and result.report.added == 20
    assert email in {x["email"] for x in duck.sim.leads()}
    assert _letters(duck.warehouse) == [{"phase": "topup", "operation": "add_lead", "email": email,
                                         "retry_count": 5, "resolved": True, "gave_up": False}]
    assert _rows(duck.warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history`")[0]["n"] == 0


# --- the source binding ------------------------------------------------------------------------------

def test_changed_source_table_is_refused_until_setup_rebinds(tmp_path: Path) -> None:
    """SOURCE_TABLE pointed at another table without setup.py: exit 2 naming both tables and the fix,
    nothing sent; validate_environment's row fails the same way; after setup.py the run sends from the new
    table only."""
    from coldsync.validate import Validation, _check_source_binding
    from coldsync.warehouse.migrate import read_config

    settings = _settings(tmp_path)
    first = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    world = _world(first, settings, rows=50)
    first.close()
    other = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", "other_leads")
    try:
        other.execute("CREATE TABLE `{ds}.other_leads` AS SELECT * FROM `{ds}.source_leads` WHERE FALSE", label="t")
        add_sources(other, [lead(f"new{i}@other-source.example", Decimal(10_000)) for i in range(3)])
        moved = World(other, world.sim, world.client, replace(settings, source_table="other_leads"))
        result = moved.run()
        assert result.exit_code == ExitCode.BAD_CONFIG and result.report.outcome == "config_error"
        assert result.report.error == (
            "the views read the source table coldsync_db.coldsync.source_leads but SOURCE_TABLE is "
            "coldsync_db.coldsync.other_leads: run `python setup.py` to rebind the views to "
            "coldsync_db.coldsync.other_leads (or set SOURCE_TABLE back to coldsync_db.coldsync.source_leads)")
        assert world.sim.leads() == [] and table_contents(other)["ops_inst_state"] == []
        checks = Validation(mode="live")
        _check_source_binding(checks, other, read_config(other))
        assert [(c.name, c.status) for c in checks.checks] == [("source binding", "fail")]
        ensure_schema(other, moved.settings)  # what `python setup.py` does with the new SOURCE_TABLE
        result = moved.run()
        assert result.exit_code == ExitCode.OK
        assert sorted(lead["email"] for lead in world.sim.leads()) == [f"new{i}@other-source.example"
                                                                       for i in range(3)]
    finally:
        world.client.close()
        world.sim.stop()
        other.close()


# --- a failed run's drain watermarks are not progress --------------------------------------------------

def test_failed_run_watermarks_are_not_trusted(tmp_path: Path) -> None:
    """Counters moved and the drain listed the finished leads, then the run failed before recording them:
    the next run, 30 minutes later (long before the 6-hourly sweep), lists and drains every one of them."""
    # DuckDB (the crash is injected by wrapping it); RUN_MEMORY_SQL, which skips the failed run's row, runs on
    # both engines in test_run_memory_and_source_binding_on_each_engine.
    settings = _settings(tmp_path)
    inner = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    crashing = CrashingWarehouse(inner, Operations())
    world = _world(inner, settings)
    try:
        flaky = World(crashing, world.sim, world.client, settings)
        assert flaky.run().exit_code == ExitCode.OK
        world.sim.advance(0.3)
        # A full sweep: every filter listed, watermarks stored; no more leads added.
        assert flaky.run(run_topup=False).exit_code == ExitCode.OK
        world.sim.advance(11)
        finished = {x["id"] for x in world.sim.leads() if x.get("status") != 1}
        assert len(finished) == 19  # Instantly: 19 of the 20 sequences have ended
        crashing.fail("history.record", "before")
        result = flaky.run()
        assert result.exit_code == ExitCode.RUN_FAILED and result.report.drain_watermarks
        assert len(world.sim.leads()) == 20  # nothing recorded, so nothing deleted
        world.sim.advance(HALF_HOUR)
        result = flaky.run(run_topup=False)
        assert result.exit_code == ExitCode.OK
        assert result.report.drained == 19
        assert not finished & {x["id"] for x in world.sim.leads()}
    finally:
        world.client.close()
        world.sim.stop()
        inner.close()



# --- both engines: the run memory's SQL and the sync's source-binding refusal ----------------------------------

def _run_log_row(run_id: str, started_at: dt.datetime, mode: str, outcome: str) -> dict[str, Any]:
    """A run-log row whose drain watermark names the run, so the memory read shows which row it took."""
    summary = {"run_id": run_id, "drain_watermarks": {SMB: {"from": run_id}}}
    return {"run_id": run_id, "started_at": started_at, "finished_at": started_at + dt.timedelta(minutes=1),
            "mode": mode, "outcome": outcome, "warehouse": "test", "drained": 0, "added": 0, "dead_letters": 0,
            "inventory_before": 0, "inventory_after": 0, "api_calls": 0, "warehouse_statements": 0,
            "duration_seconds": 60.0, "error_text": None, "summary_json": json.dumps(summary)}


@pytest.mark.bq_always
@pytest.mark.parametrize("engine", ["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def test_run_memory_and_source_binding_on_each_engine(tmp_path: Path, engine: str,
                                                      request: pytest.FixtureRequest) -> None:
    """RUN_MEMORY_SQL takes the drain watermarks of the newest LIVE run whose outcome is success or alarm: of
    runs (oldest first) success, alarm, failed, interrupted, config_error, and a newer dry run, the alarm's; a
    failed run's marks are never read. Then the views bound to another table than SOURCE_TABLE: the sync
    exits 2 with the rebind fix before sending anything."""
    settings = _settings(tmp_path)
    warehouse = open_warehouse(engine, tmp_path, request)
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.001, backoff_max=0.002)
    try:
        sim.create_campaign("SMB", campaign_id=SMB)
        sim.create_campaign("Midsize", campaign_id=MIDSIZE)
        build(warehouse, settings, list(generate_source_rows(10, seed=3)), as_of=START)
        store = Store(warehouse, "t", START)
        runs = [("live", "success"), ("live", "alarm"), ("live", "failed"), ("live", "interrupted"),
                ("live", "config_error"), ("dry_run", "success")]
        for n, (mode, outcome) in enumerate(runs):
            store.write_run_log(_run_log_row(f"{n}-{mode}-{outcome}", START - dt.timedelta(hours=6 - n), mode,
                                             outcome))
        watermarks, open_letters, _blocklist = store.run_memory()
        assert (watermarks, open_letters) == ({SMB: {"from": "1-live-alarm"}}, 0)
        assert store.last_summary["run_id"] == "1-live-alarm"

        set_config(warehouse, "views_source_table", string="elsewhere.coldsync.old_leads")
        result = World(warehouse, sim, client, settings).run()
        current = warehouse.source_table
        assert result.exit_code == ExitCode.BAD_CONFIG
        assert result.report.error == (
            f"the views read the source table elsewhere.coldsync.old_leads but SOURCE_TABLE is {current}: run "
            f"`python setup.py` to rebind the views to {current} (or set SOURCE_TABLE back to "
            "elsewhere.coldsync.old_leads)")
        assert sim.leads() == [] and sim.requests_to("POST", "/leads/add") == []
        assert _rows(warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state`")[0]["n"] == 0
    finally:
        client.close()
        sim.stop()
        warehouse.close()
