"""Alerts (coldsync.alerts): one message per condition until it clears, one "cleared", no email in any
message, a failed post only a warning; end to end against the simulator and a local webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coldsync.alerts import Alert, Observation, deliver, observe, plan_alerts
from coldsync.cli import ExitCode
from coldsync.instantly.simulator import FaultSpec
from coldsync.redact import redact, register_secrets
from coldsync.report import RunReport
from coldsync.settings import SettingsError
from tests.conftest import make_settings
from tests.worlds import SMB, small_world

LIMITS = {"after_runs": 3, "dead_letter_limit": 50}


def _run(memory: dict[str, Any], **seen: Any) -> tuple[dict[str, Any], list[Alert]]:
    return plan_alerts(memory, Observation(run_id=seen.pop("run_id", "r"), **{"failed": False, **seen}), **LIMITS)


def test_failed_run_posts_once_then_cleared() -> None:
    """A failed run opens `run_failed` (one message), a second failed run posts nothing, a success posts
    "cleared"; an interrupted run (failed unknown) changes nothing."""
    memory, alerts = _run({}, run_id="r1", failed=True, error="Instantly refused the key")
    assert [(a.condition, a.kind, a.text) for a in alerts] == [
        ("run_failed", "open", "coldsync run r1 failed: Instantly refused the key")]
    memory, alerts = _run(memory, run_id="r2", failed=True, error="again")
    assert alerts == [] and memory["open"] == {"run_failed": {"since_run": "r1"}}
    memory, alerts = _run(memory, run_id="r3", failed=None)
    assert alerts == [] and "run_failed" in memory["open"]
    memory, alerts = _run(memory, run_id="r4")
    assert [(a.kind, a.text) for a in alerts] == [("cleared", "coldsync: cleared: run r4 succeeded")]
    assert memory["open"] == {}


def test_no_adds_after_three_idle_runs() -> None:
    """Room but nothing added: the 3rd consecutive such run opens `no_adds` (ALERT_AFTER_RUNS=3), the 4th
    is quiet, a run of unknown standing keeps the streak, a run that adds clears it and resets the count."""
    memory: dict[str, Any] = {}
    posted = []
    for idle in (True, True, None, True, True):
        memory, alerts = _run(memory, idle=idle)
        posted.append([a.condition for a in alerts])
    assert posted == [[], [], [], ["no_adds"], []]
    assert memory["idle_runs"] == 4
    memory, alerts = _run(memory, idle=False, added=12, run_id="r9")
    assert [a.text for a in alerts] == ["coldsync: cleared: run r9 added 12 lead(s)"] and memory["idle_runs"] == 0


def test_dead_letters_above_the_limit_and_guard() -> None:
    """51 open dead letters (above 50) open `dead_letters`, 50 clear it; a guard holding SMB opens
    `deliverability_guard`, a run that cannot judge it (None) keeps it, an empty list clears it."""
    memory, alerts = _run({}, open_dead_letters=51, guards=("SMB",))
    assert [a.condition for a in alerts] == ["deliverability_guard", "dead_letters"]
    assert "51 open dead letters, above ALERT_DEAD_LETTERS=50" in alerts[1].text
    assert "holds back SMB" in alerts[0].text
    memory, alerts = _run(memory, open_dead_letters=50, guards=None)
    assert [(a.condition, a.kind) for a in alerts] == [("dead_letters", "cleared")]
    memory, alerts = _run(memory, guards=())
    assert [(a.condition, a.kind) for a in alerts] == [("deliverability_guard", "cleared")] and memory["open"] == {}


def test_no_email_in_any_message() -> None:
    """An address in the run's error line is masked in the message (coldsync.redact)."""
    _memory, [alert] = _run({}, failed=True, error="lead jane.doe@corp.example refused")
    assert "jane.doe@" not in alert.text and "j***@corp.example" in alert.text


def test_undelivered_message_is_not_remembered() -> None:
    """A post that fails leaves the condition as it was, so the next run tries again; the failure is a line."""
    after, alerts = _run({}, failed=True, error="x")
    memory, failures = deliver("http://127.0.0.1:9/x", {}, after, alerts, lambda _u, _t: "http 500")
    assert memory["open"] == {} and failures == ["alert run_failed (open) not posted: http 500; tried again next run"]
    before = {"open": {"run_failed": {"since_run": "r0"}}}
    after, alerts = _run(before)
    memory, _ = deliver("http://127.0.0.1:9/x", before, after, alerts, lambda _u, _t: "refused")
    assert memory["open"] == {"run_failed": {"since_run": "r0"}}


TOKEN = "T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"


def test_webhook_setting_https_only_and_secret(tmp_path: Path) -> None:
    """ALERT_WEBHOOK_URL: off by default; https, or http on a loopback host only; refused otherwise naming the
    setting without its value; its token is redacted from every text, its host is not."""
    assert not make_settings(tmp_path).alert_webhook_url
    make_settings(tmp_path, alert_webhook_url=f"https://hooks.slack.com/services/{TOKEN}")
    make_settings(tmp_path, alert_webhook_url="http://127.0.0.1:8080/hook")
    with pytest.raises(SettingsError) as refused:
        make_settings(tmp_path, alert_webhook_url=f"http://hooks.slack.com/services/{TOKEN}")
    assert "ALERT_WEBHOOK_URL (from environment): uses http://" in str(refused.value)
    assert "abcdefghijkl" not in str(refused.value)
    settings = make_settings(tmp_path, alert_webhook_url=f"https://hooks.slack.com/services/{TOKEN}")
    assert settings.secrets() == ["abcdefghijklmnopqrstuvwx"]
    register_secrets(settings.secrets())
    assert redact(f"posting to https://hooks.slack.com/services/{TOKEN}") == \
        "posting to https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/[redacted]"


class _Receiver:
    """A local incoming webhook: records each JSON body, answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [str(b["text"]) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    found = _Receiver()
    try:
        yield found
    finally:
        found.close()


def test_failing_runs_post_once_and_cleared_end_to_end(tmp_path: Path, receiver: _Receiver) -> None:
    """Simulator and DuckDB: a run failing (analytics down) posts once, the next failing run posts nothing,
    a successful run posts "cleared"; every body is Slack's {"text": ...} without an email address."""
    with small_world(tmp_path, settings={"alert_webhook_url": receiver.url}) as world:
        world.sim.set_fault("GET /campaigns/analytics", FaultSpec(error_rate=1.0, error_status=503))
        first = world.run()
        assert first.exit_code == ExitCode.RUN_FAILED
        assert len(receiver.bodies) == 1 and receiver.texts()[0].startswith(
            f"coldsync run {first.report.run_id} failed: could not measure the inventory")
        world.sim.advance(0.02)
        assert world.run().exit_code == ExitCode.RUN_FAILED
        assert len(receiver.bodies) == 1
        world.sim.clear_faults()
        world.sim.advance(0.02)
        third = world.run()
        assert third.exit_code == ExitCode.OK and third.report.added == 4
        assert receiver.texts()[1:] == [f"coldsync: cleared: run {third.report.run_id} succeeded"]
        assert third.report.alerts == {"open": {}, "idle_runs": 0, "posted": ["run_failed cleared"]}
    assert all(set(body) == {"text"} and "@" not in body["text"] for body in receiver.bodies)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/{TOKEN}"


def test_failed_post_is_a_warning_and_retried(tmp_path: Path, receiver: _Receiver) -> None:
    """Nothing ready (the only route takes nobody) with ALERT_AFTER_RUNS=1: a webhook that cannot be reached
    leaves the run a success (exit 0) with a warning, and the next run, reaching it, posts the alert."""
    routes = f'[[routes]]\nname = "SMB"\nwhen = "annual_revenue < 0"\ncampaign_id = "{SMB}"\n'
    with small_world(tmp_path, settings={"alert_webhook_url": _closed_port_url(), "alert_after_runs": "1",
                                         "routes": routes}) as world:
        first = world.run()
        assert first.exit_code == ExitCode.OK and first.report.outcome == "success" and first.report.added == 0
        assert any(w.startswith("alert no_adds (open) not posted: the webhook could not be reached")
                   for w in first.report.warnings)
        assert first.report.alerts["open"] == {}
        world.sim.advance(0.02)
        second = world.run(alert_webhook_url=type(world.settings.alert_webhook_url)(receiver.url))
        assert second.exit_code == ExitCode.OK
    assert receiver.texts() == ["coldsync: 2 consecutive runs had room but added no lead (ALERT_AFTER_RUNS=1); "
                                "check the ready counts (`sync_once.py --report`) and the routes' warnings in the "
                                "run summary"]


def test_an_interrupted_run_judges_nothing(tmp_path: Path) -> None:
    """An interrupted run (SIGTERM) posts nothing and carries the memory on, even with 99 open dead letters."""
    report = RunReport(run_id="r5", mode="live", warehouse="duckdb", started_at="", outcome="interrupted")
    ctx = SimpleNamespace(report=report, settings=make_settings(tmp_path), campaigns={})
    seen = observe(ctx, 99)  # type: ignore[arg-type]
    assert (seen.failed, seen.idle, seen.guards, seen.open_dead_letters) == (None, None, None, None)
    memory = {"open": {"run_failed": {"since_run": "r4"}}, "idle_runs": 2}
    assert plan_alerts(memory, seen, **LIMITS) == (memory, [])


def test_warehouse_failure_at_the_lock_still_posts(tmp_path: Path, receiver: _Receiver) -> None:
    """The run-lock table dropped: the run fails (exit 1, no run-log row) and still posts exactly one
    "run failed" message, naming the lock and no email address."""
    with small_world(tmp_path, settings={"alert_webhook_url": receiver.url}) as world:
        world.warehouse.execute("DROP TABLE `{ds}.ops_run_lock`", label="test.drop")
        result = world.run()
        assert result.exit_code == ExitCode.RUN_FAILED and result.report.outcome == "failed"
        logged = world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_run_log`", label="test")[0]["n"]
    assert logged == 0
    [text] = receiver.texts()
    assert text.startswith(f"coldsync run {result.report.run_id} failed: could not take the run lock: ")
    assert "@" not in text and result.report.alerts["posted"] == ["run_failed open"]


def test_webhooks_condition_opens_on_a_problem_and_clears_when_all_are_well() -> None:
    """A run that found a disabled webhook opens `webhooks` with the problem in the message; a run that did not look
    (None) changes nothing; a run that found none clears it."""
    problem = "lead_unsubscribed: DISABLED since 2026-11-30T09:00:00.000Z: run --webhooks resume"
    memory, alerts = _run({}, run_id="r1", webhooks=(problem,))
    assert [(a.condition, a.kind) for a in alerts] == [("webhooks", "open")]
    assert problem in alerts[0].text and "polling" in alerts[0].text
    memory, alerts = _run(memory, run_id="r2", webhooks=None)
    assert alerts == [] and memory["open"] == {"webhooks": {"since_run": "r1"}}
    memory, alerts = _run(memory, run_id="r3", webhooks=())
    assert [(a.condition, a.kind, a.text) for a in alerts] == [
        ("webhooks", "cleared", "coldsync: cleared: every consumed event type has one active webhook (run r3)")]
