"""Issue 18's must-show, end to end on loopback: the simulator unsubscribes a lead, the receiver (a real
`python -m coldsync.webhooks` process) records it, the lead leaves v_ready_for_instantly within 2 seconds with no
sync run in between, and the next run puts it on the do-not-contact list and deletes it in Instantly; and with the
receiver down, polling still catches every unsubscribe while the run's backfill fills the events table once."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.phases.events import SOURCE as WEBHOOK_SOURCE
from coldsync.settings import SPECS, Settings
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.base import WarehouseBusyError
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.webhooks.ops import register
from tests.conftest import make_settings
from tests.helpers import build, lead

REPO = Path(__file__).resolve().parents[1]
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SECRET = "whsec-E2e7Kq4Rt9-loopback-shared-secret-77"
FAST = (0.02, 0.02, 0.02)  # retry delays (the real service: about 30 s in all)


def sim_for_test(**options: Any) -> InstantlySimulator:
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=60, webhook_retry_delays=FAST,
                             webhook_timeout=1.0, **options)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    return sim


def sync_settings(tmp_path: Path, **extra: str) -> Settings:
    return make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="20",
                         target_new_leads_per_run="4", instantly_api_key="sim-key", blocklist_mirror="false",
                         reconcile_audit_calls="0", **extra)


def open_file(path: Path) -> DuckDBWarehouse:
    """The DuckDB file opened as any process opens it: while the receiver writes a delivery it holds the file (for
    milliseconds), so a busy file is tried again for up to 2 s, as a person would."""
    deadline = time.monotonic() + 2
    while True:
        try:
            return DuckDBWarehouse(path, "coldsync")
        except WarehouseBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def run_once(path: Path, settings: Settings, client: InstantlyClient, sim: InstantlySimulator) -> SyncResult:
    """One sync run that opens the DuckDB file and closes it after (so the receiver can write in between)."""
    warehouse = open_file(path)
    try:
        return run_sync(settings, warehouse, client, now=sim.now)
    finally:
        warehouse.close()


def query(path: Path, sql: str, **params: Any) -> list[dict[str, Any]]:
    """A read as another process would make it: open the file, read, close."""
    warehouse = open_file(path)
    try:
        return warehouse.query(sql, params, label="t")
    finally:
        warehouse.close()


def ready_emails(path: Path) -> set[str]:
    return {str(r["email"]) for r in query(path, "SELECT email FROM `{ds}.v_ready_for_instantly`")}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The receiver as `python -m coldsync.webhooks --port 0` runs it, on the sync's DuckDB file (schema built, a
    source of three ready leads): its URL and the file."""
    path = tmp_path / "wh.duckdb"
    warehouse = DuckDBWarehouse(path, "coldsync")
    try:
        build(warehouse, sync_settings(tmp_path), [lead("rita@corp.example"), lead("sam@corp.example"),
                                                     lead("tess@corp.example")], as_of=START)
    finally:
        warehouse.close()
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}}
    env.update({"DUCKDB_PATH": str(path), "ROUTES_FILE": "none", "SMB_CAMPAIGN_ID": SMB,
                "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "INSTANTLY_API_KEY": "sim-key", "INSTANTLY_WEBHOOK_SECRET": SECRET})
    out = tmp_path / "receiver.out"
    with out.open("wb") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "coldsync.webhooks", "--port", "0"], cwd=REPO, env=env,
                                   stdout=stdout, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening on " not in out.read_text(encoding="utf-8"):
            assert process.poll() is None and time.monotonic() < deadline, out.read_text(encoding="utf-8")
            time.sleep(0.05)
        yield out.read_text(encoding="utf-8").split("listening on ", 1)[1].split()[0], path
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_unsubscribe_leaves_the_ready_view_within_2_seconds_then_the_run_suppresses_and_deletes(
        receiver: tuple[str, Path], tmp_path: Path) -> None:
    """rita, ready in the warehouse, was added to the SMB campaign by hand in Instantly. The simulator unsubscribes
    her and POSTs the webhook to the receiver: she is gone from v_ready_for_instantly within 2 s (no run), the
    others stay. The next run puts her in ops_dnc with source instantly_webhook, deletes her lead in Instantly by
    id, and adds the two others; a second run changes nothing of hers."""
    url, path = receiver
    sim = sim_for_test()
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        assert [line.state for line in register(client, url, SECRET).lines] == ["created"] * 3
        sim.insert_leads(SMB, [{"email": "rita@corp.example", "first_name": "Rita"}])
        rita = next(x for x in sim.leads() if x["email"] == "rita@corp.example")
        assert ready_emails(path) == {"rita@corp.example", "sam@corp.example", "tess@corp.example"}

        started = time.monotonic()
        sim.finish_lead(str(rita["id"]), "unsubscribed")
        while "rita@corp.example" in ready_emails(path):
            assert time.monotonic() - started < 2.0, "still ready 2 s after the unsubscribe"
            time.sleep(0.02)
        assert ready_emails(path) == {"sam@corp.example", "tess@corp.example"}
        stored = query(path, "SELECT event_type, email, campaign_id, delivered_by FROM `{ds}.ops_instantly_events`")
        assert [tuple(r.values()) for r in stored] == [("lead_unsubscribed", "rita@corp.example", SMB, "receiver")]
        assert query(path, "SELECT COUNT(*) AS n FROM `{ds}.ops_dnc`") == [{"n": 0}]

        result = run_once(path, sync_settings(tmp_path), client, sim)
        assert result.exit_code == 0, result.report.render_text()
        dnc = query(path, "SELECT email, source FROM `{ds}.ops_dnc`")
        assert [(r["email"], r["source"]) for r in dnc] == [("rita@corp.example", WEBHOOK_SOURCE)]
        deleted = [i for r in sim.requests_to("DELETE", "/leads") for i in r.request_body["ids"]]
        assert deleted == [rita["id"]]
        assert sorted(str(x["email"]) for x in sim.leads()) == ["sam@corp.example", "tess@corp.example"]
        again = run_once(path, sync_settings(tmp_path), client, sim)
        assert again.exit_code == 0
        assert query(path, "SELECT COUNT(*) AS n FROM `{ds}.ops_dnc`") == [{"n": 1}]
        assert [i for r in sim.requests_to("DELETE", "/leads") for i in r.request_body["ids"]] == [rita["id"]]
    finally:
        client.close()
        sim.stop()


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"


def test_with_the_receiver_down_polling_catches_every_unsubscribe_and_the_backfill_stores_each_once(
        tmp_path: Path) -> None:
    """Four leads are added; the receiver is down (nothing listens) while three unsubscribe, so every delivery
    fails (4 attempts each) and the webhook is disabled after the third. The next run (WEBHOOKS_ENABLED) drains all
    three by polling (history unsubscribed, DNC), and its backfill stores the three events once each; a run after
    that stores nothing more and drains nothing more."""
    path = tmp_path / "wh.duckdb"
    settings = sync_settings(tmp_path, webhooks_enabled="true")
    warehouse = DuckDBWarehouse(path, "coldsync")
    try:
        build(warehouse, settings, [lead(f"p{i}@corp.example") for i in range(4)], as_of=START)
    finally:
        warehouse.close()
    sim = sim_for_test(webhook_disable_after=3)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        register(client, dead_url(), SECRET)
        first = run_once(path, settings, client, sim)
        assert first.exit_code == 0 and first.report.added == 4, first.report.render_text()
        gone = sorted(str(x["email"]) for x in sim.leads())[:3]
        for email in gone:
            lead_id = next(str(x["id"]) for x in sim.leads() if x["email"] == email)
            sim.finish_lead(lead_id, "unsubscribed")
            assert sim.wait_for_webhooks(5)
        assert [w["status"] for w in sim.webhooks() if w["event_type"] == "lead_unsubscribed"] == [-1]
        assert len([e for e in sim.webhook_events() if not e["success"]]) == 12

        second = run_once(path, settings, client, sim)
        assert second.exit_code == 0, second.report.render_text()
        history = query(path, "SELECT email, status_final FROM `{ds}.ops_lead_history` ORDER BY email")
        assert [(r["email"], r["status_final"]) for r in history] == [(e, "unsubscribed") for e in gone]
        dnc = query(path, "SELECT email FROM `{ds}.ops_dnc` ORDER BY email")
        assert [r["email"] for r in dnc] == gone
        events = query(path, "SELECT email, delivered_by, COUNT(*) OVER (PARTITION BY dedup_key) AS copies "
                             "FROM `{ds}.ops_instantly_events` ORDER BY email")
        assert [(r["email"], r["delivered_by"], r["copies"]) for r in events] == [(e, "backfill", 1) for e in gone]
        counts = second.report.phase("events").counts
        assert (counts["backfill listed"], counts["backfill stored"], counts["backfill already stored"]) == (12, 3, 9)

        third = run_once(path, settings, client, sim)
        assert third.exit_code == 0 and third.report.drained == 0
        assert third.report.phase("events").counts["backfill stored"] == 0
        assert query(path, "SELECT COUNT(*) AS n FROM `{ds}.ops_instantly_events`") == [{"n": 3}]
        assert query(path, "SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history`") == [{"n": 3}]
    finally:
        client.close()
        sim.stop()


def test_opening_the_warehouse_waits_for_the_receiver_instead_of_refusing(receiver: tuple[str, Path],
                                                                          tmp_path: Path) -> None:
    """While 4 senders stream deliveries to the local receiver (it opens the DuckDB file per burst), 15 opens of
    the warehouse the way every command opens it (coldsync.warehouse.connect) all succeed: an open that finds the
    receiver holding the file waits for it (up to 3 s) instead of refusing with "busy"."""
    import threading

    import requests

    from coldsync.warehouse import connect
    from coldsync.webhooks.events import SECRET_HEADER

    url, path = receiver
    stop = threading.Event()
    answers: list[int] = []

    def sender(n: int) -> None:
        with requests.Session() as session:
            i = 0
            while not stop.is_set():
                body = {"timestamp": f"2026-03-02T15:{i // 60 % 60:02d}:{i % 60:02d}Z",
                        "event_type": "reply_received", "workspace": "w", "campaign_id": SMB,
                        "lead_email": f"stream{n}-{i}@corp.example"}
                answers.append(session.post(url, json=body, headers={SECRET_HEADER: SECRET}, timeout=5).status_code)
                i += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        settings = make_settings(tmp_path, duckdb_path=str(path))
        for _ in range(15):
            warehouse = connect(settings)
            warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_instantly_events`", label="t")
            warehouse.close()
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert len(answers) > 20 and set(answers) <= {200, 503}


def test_a_run_warns_of_disabled_webhooks_lists_only_its_receiver_and_drops_a_refused_cursor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With WEBHOOKS_ENABLED and the receiver down: 30 hand-added leads unsubscribe (120 failed attempts); the
    webhook gets disabled, and the run says so (a warning naming DISABLED; webhook_problems for the alert). The
    backfill asks only for the receiver's URL (search); cut at 1 page a run it keeps a cursor; when Instantly
    refuses that cursor (400) the next run drops it and a later run lists from the day again and stores all 30."""
    import coldsync.phases.events as events_phase
    from coldsync.instantly.errors import ValidationError

    path = tmp_path / "wh.duckdb"
    settings = sync_settings(tmp_path, webhooks_enabled="true")
    warehouse = DuckDBWarehouse(path, "coldsync")
    try:
        build(warehouse, settings, [], as_of=START)
    finally:
        warehouse.close()
    sim = sim_for_test(webhook_disable_after=30)
    monkeypatch.setattr(events_phase, "BACKFILL_MAX_PAGES", 1)

    class Refusing(InstantlyClient):
        refuse = False

        def list_webhook_events(self, **kwargs: Any) -> Any:
            if self.refuse and kwargs.get("starting_after"):
                raise ValidationError("bad cursor", http_status=400, method="GET", path="/webhook-events")
            return super().list_webhook_events(**kwargs)

    client = Refusing("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        url = dead_url()
        register(client, url, SECRET)
        client.create_webhook("https://zapier.corp.example/x", "email_sent", headers={})
        sim.insert_leads(SMB, [{"email": f"h{i:02d}@corp.example"} for i in range(30)])
        for lead_id in sorted(str(x["id"]) for x in sim.leads()):
            sim.finish_lead(lead_id, "unsubscribed")
        assert sim.wait_for_webhooks(10)
        assert [w["status"] for w in sim.webhooks() if w["event_type"] == "lead_unsubscribed"] == [-1]

        first = run_once(path, settings, client, sim)
        assert first.exit_code == 0, first.report.render_text()
        assert any("webhooks need attention" in w and "DISABLED since" in w for w in first.report.warnings)
        assert [p.split(":")[0] for p in first.report.webhook_problems or []] == ["lead_unsubscribed"]
        searched = {tuple(r.query.get("search", [])) for r in sim.requests_to("GET", "/webhook-events")}
        assert searched == {(url,)}
        mark = first.report.webhook_backfill
        assert mark.get("after") and "through" not in mark
        client.refuse = True
        second = run_once(path, settings, client, sim)
        assert any("refused the webhook backfill's cursor" in w for w in second.report.warnings)
        assert "after" not in second.report.webhook_backfill
        client.refuse = False
        monkeypatch.setattr(events_phase, "BACKFILL_MAX_PAGES", 10)
        third = run_once(path, settings, client, sim)
        assert third.exit_code == 0
        assert query(path, "SELECT COUNT(*) AS n, COUNT(DISTINCT email) AS e FROM `{ds}.ops_instantly_events`") == [
            {"n": 30, "e": 30}]
    finally:
        client.close()
        sim.stop()
