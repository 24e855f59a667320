"""The webhook receiver (coldsync.webhooks.app): forged and malformed deliveries write nothing and answer as
documented, accepted ones land in ops_instantly_events once per dedup key, within a second, from a burst of 20
senders, while the DuckDB file stays free between deliveries; the secret never shows in the receiver's output."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.settings import REPO_ROOT, SPECS, Settings, read_sources, resolve
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.webhooks import app
from coldsync.webhooks.events import MAX_BODY_BYTES, SECRET_HEADER
from coldsync.webhooks.sink import CampaignCache, EventSink, WarehouseSession, managed_campaign_ids
from tests.conftest import open_warehouse
from tests.helpers import build

SECRET = "Zq7Lm2Pw-4f9c1d2e8b7a6c5d4e3f2a1b0c9d8e7f-Xy"  # distinctive: grepped for in the output
HEADER = {SECRET_HEADER: SECRET}
MANAGED = "11111111-1111-4111-8111-111111111111"
OTHER = "99999999-9999-4999-8999-999999999999"


def payload(email: str = "ana@corp.example", event_type: str = "lead_unsubscribed", campaign: str = MANAGED,
            second: int = 0, **extra: Any) -> dict[str, Any]:
    """A delivery as Instantly's guide shows it (base fields plus the lead's email and step)."""
    at = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=second)
    return {"timestamp": at.isoformat().replace("+00:00", "Z"), "event_type": event_type,
            "workspace": "22222222-2222-4222-8222-222222222222", "campaign_id": campaign, "campaign_name": "SMB",
            "lead_email": email, "step": 1, "variant": 1, **extra}


def environment(duckdb_file: Path) -> dict[str, str]:
    """The receiver's settings: a real-run setup (a key, so not the embedded playground) managing MANAGED only."""
    return {"DUCKDB_PATH": str(duckdb_file), "ROUTES_FILE": "none", "SMB_CAMPAIGN_ID": MANAGED,
            "INSTANTLY_API_KEY": "test-key-not-real-0123456789", "INSTANTLY_WEBHOOK_SECRET": SECRET,
            "LOG_LEVEL": "INFO"}


def count(duckdb_file: Path, where: str = "TRUE") -> tuple[int, int]:
    """(rows, distinct dedup keys) of ops_instantly_events, opening the file as any other process would."""
    warehouse = DuckDBWarehouse(duckdb_file, "coldsync")
    try:
        row = warehouse.query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT dedup_key) AS k "  # noqa: S608
                              f"FROM `{{ds}}.ops_instantly_events` WHERE {where}", label="t")[0]
    finally:
        warehouse.close()
    return int(row["n"]), int(row["k"])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse with the schema, built once (each test copies it: a build costs about a second)."""
    folder = tmp_path_factory.mktemp("template")
    environ = environment(folder / "wh.duckdb")
    settings = resolve(read_sources(environ=environ, dotenv_path=folder / ".env", secrets_dir=folder))
    warehouse = DuckDBWarehouse(folder / "wh.duckdb", "coldsync")
    try:
        build(warehouse, settings)
    finally:
        warehouse.close()
    return folder / "wh.duckdb"


def copy_of(template: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(template, folder / "wh.duckdb"))


@pytest.fixture
def client(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """The function as Cloud Run runs it (functions_framework.create_app on the root main.py), in process, with a
    receiver on a fresh copy of the warehouse; and that warehouse file."""
    import functions_framework

    duckdb_file = copy_of(template, tmp_path / "wh")
    environ = environment(duckdb_file)
    sources = read_sources(environ=environ, dotenv_path=tmp_path / ".env", secrets_dir=tmp_path)
    receiver = app.build_receiver(sources, resolve(sources))
    for name in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE"):  # create_app sets them for the process
        monkeypatch.setenv(name, os.environ.get(name, ""))
    previous = app.install(receiver)
    try:
        yield functions_framework.create_app(  # type: ignore[no-untyped-call]
            "receive", str(REPO_ROOT / "main.py")).test_client(), duckdb_file
    finally:
        app.install(previous)
        receiver.close()


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "wrong"},
                                     {SECRET_HEADER: SECRET[:-1] + chr(ord(SECRET[-1]) ^ 1)},
                                     {SECRET_HEADER.lower(): SECRET.upper()}],
                         ids=["no-header", "wrong", "one-byte-off", "case-changed"])
def test_a_delivery_without_the_secret_is_refused_and_writes_nothing(client: tuple[Any, Path],
                                                                     headers: dict[str, str]) -> None:
    """No header, a wrong secret, the secret with its last byte flipped, or upper-cased: 401, no row."""
    http, duckdb_file = client
    answer = http.post("/", json=payload(), headers=headers)
    assert (answer.status_code, answer.get_json()) == (401, {"error": "missing or wrong X-Coldsync-Webhook-Secret "
                                                                      "header"})
    assert count(duckdb_file) == (0, 0)


@pytest.mark.parametrize(("body", "field"), [
    (b"not json at all", "body"),
    (b'[{"event_type": "lead_unsubscribed"}]', "body"),
    (json.dumps({k: v for k, v in payload().items() if k != "lead_email"}).encode(), "lead_email"),
    (json.dumps(payload(timestamp="half past nine")).encode(), "timestamp"),
], ids=["not-json", "array", "no-lead-email", "bad-timestamp"])
def test_a_malformed_body_with_the_secret_is_400_naming_the_field(client: tuple[Any, Path], body: bytes,
                                                                  field: str) -> None:
    """A valid secret with a body that is not a payload: 400 whose error starts with the field at fault; no row."""
    http, duckdb_file = client
    answer = http.post("/", data=body, headers=HEADER, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field and answer.get_json()["error"].startswith(f"{field}: ")
    assert count(duckdb_file) == (0, 0)


def test_ignored_deliveries_answer_200_and_write_nothing(client: tuple[Any, Path]) -> None:
    """An unmanaged campaign's unsubscribe and an email_opened event: 200 ignored with the reason; a GET is 405;
    then a managed unsubscribe is stored, and a repeat of it answers stored but leaves one row."""
    http, duckdb_file = client
    other = http.post("/", json=payload(campaign=OTHER), headers=HEADER)
    opened = http.post("/", json=payload(event_type="email_opened"), headers=HEADER)
    assert (other.status_code, other.get_json()) == (200, {"status": "ignored",
                                                           "reason": f"campaign not managed: {OTHER}"})
    assert (opened.status_code, opened.get_json()) == (200, {"status": "ignored",
                                                             "reason": "event type not consumed: email_opened"})
    assert http.get("/", headers=HEADER).status_code == 405
    assert count(duckdb_file) == (0, 0)
    for _ in range(2):
        stored = http.post("/", json=payload(campaign=MANAGED.upper()), headers=HEADER)
        assert (stored.status_code, stored.get_json()) == (200, {"status": "stored"})
    assert count(duckdb_file) == (1, 1)


def test_a_body_over_the_limit_by_its_header_is_413_and_writes_nothing(client: tuple[Any, Path]) -> None:
    """MAX_BODY_BYTES + 1 bytes of an otherwise valid payload (padded): 413; exactly MAX_BODY_BYTES is stored."""
    http, duckdb_file = client
    base = json.dumps(payload(note="")).encode()
    exact = base.replace(b'"note": ""', b'"note": "' + b"x" * (MAX_BODY_BYTES - len(base)) + b'"')
    assert len(exact) == MAX_BODY_BYTES
    over = exact.replace(b'"x', b'"xx', 1)
    answer = http.post("/", data=over, headers=HEADER, content_type="application/json")
    assert (answer.status_code, answer.get_json()) == (413, {"error": f"body: over the {MAX_BODY_BYTES} byte limit"})
    assert count(duckdb_file) == (0, 0)
    assert http.post("/", data=exact, headers=HEADER, content_type="application/json").status_code == 200
    assert count(duckdb_file) == (1, 1)


@pytest.mark.bigquery
def test_the_bigquery_insert_path_through_the_same_app(bq_emulator: Any, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """On the BigQuery emulator, through the same function: a delivery is streamed in with its columns, a repeat
    answers stored and keeps one distinct key, an unmanaged campaign writes nothing."""
    import functions_framework

    warehouse = open_warehouse("bigquery", tmp_path, request)
    environ = environment(tmp_path / "unused.duckdb")
    sources = read_sources(environ=environ, dotenv_path=tmp_path / ".env", secrets_dir=tmp_path)
    settings: Settings = resolve(sources)
    build(warehouse, settings)
    sink = EventSink(WarehouseSession(lambda: warehouse, keep_open=True),
                     CampaignCache(partial(managed_campaign_ids, sources)))
    previous = app.install(app.Receiver(SECRET, sink))
    try:
        http = functions_framework.create_app(  # type: ignore[no-untyped-call]
            "receive", str(REPO_ROOT / "main.py")).test_client()
        answers = [http.post("/", json=body, headers=HEADER).get_json()
                   for body in (payload("Bo+x@Corp.example"), payload("Bo+x@Corp.example"), payload(campaign=OTHER))]
        assert [a["status"] for a in answers] == ["stored", "stored", "ignored"]
        rows = warehouse.query("SELECT DISTINCT dedup_key, email, email_key, campaign_id, delivered_by, step "
                               "FROM `{ds}.ops_instantly_events`", label="t")
        assert [(r["email"], r["email_key"], r["campaign_id"], r["delivered_by"], r["step"]) for r in rows] == [
            ("Bo+x@Corp.example", "bo@corp.example", MANAGED, "receiver", 1)]
    finally:
        app.install(previous)
        sink.close()


# --- the receiver as a real process: python -m coldsync.webhooks -------------------------------------------------

@dataclass
class Server:
    url: str
    duckdb_file: Path
    process: subprocess.Popen[bytes]
    out: Path
    err: Path


def start_server(duckdb_file: Path, folder: Path) -> Server:
    """`python -m coldsync.webhooks --port 0` with only the test's settings; waits for its `listening on` line."""
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}
           and k not in ("GOOGLE_APPLICATION_CREDENTIALS",)}
    env.update(environment(duckdb_file))
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "coldsync.webhooks", "--port", "0"], cwd=REPO_ROOT,
                                   env=env, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = out.read_text(encoding="utf-8")
        if "listening on " in text:
            return Server(text.split("listening on ", 1)[1].split()[0], duckdb_file, process, out, err)
        if process.poll() is not None:
            raise AssertionError(f"the receiver exited: {err.read_text(encoding='utf-8')}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the receiver did not start within 30 s")


@pytest.fixture(scope="module")
def server(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One receiver process for this module's loopback tests, on its own copy of the warehouse."""
    folder = tmp_path_factory.mktemp("server")
    handle = start_server(copy_of(template, folder / "wh"), folder)
    try:
        yield handle
    finally:
        handle.process.terminate()
        try:
            handle.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            handle.process.kill()


def raw_post(url: str, head: bytes, body: bytes) -> bytes:
    """Send a hand-made request (headers as given, then `body`) and return the whole answer."""
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(head + b"\r\n" + body)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_an_oversized_body_is_413_also_chunked_and_when_the_header_lies(server: Server) -> None:
    """Over the wire: a chunked body of MAX_BODY_BYTES + 1 (no Content-Length) is 413; a Content-Length of
    MAX_BODY_BYTES + 1 is answered 413 at once, before its body comes; a Content-Length of 16 before a huge body
    makes the receiver read 16 bytes only (400, not JSON); nothing is written, and the server still answers."""
    before = count(server.duckdb_file)
    huge = json.dumps(payload(note="x" * MAX_BODY_BYTES)).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536]

    chunked = requests.post(server.url, data=chunks(), headers={**HEADER, "Content-Type": "application/json"},
                            timeout=10)
    assert (chunked.status_code, chunked.json()["error"]) == (413, f"body: over the {MAX_BODY_BYTES} byte limit")
    head = (f"POST / HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\n").encode()
    started = time.monotonic()
    claimed = raw_post(server.url, head, b'{"event_type"')  # a few bytes of the claimed megabyte, then silence
    assert claimed.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 1.0
    lying = raw_post(server.url, head.replace(str(MAX_BODY_BYTES + 1).encode(), b"16"), huge)
    assert lying.startswith(b"HTTP/1.1 400") and b'"field":"body"' in lying
    assert count(server.duckdb_file) == before
    assert requests.post(server.url, json=payload(event_type="email_opened"), headers=HEADER,
                         timeout=5).json()["status"] == "ignored"


def test_the_duckdb_file_is_free_between_deliveries_and_busy_means_503(server: Server) -> None:
    """After a stored answer (well under a second) the test opens the file itself and reads the row; while the test
    holds the file, a delivery gets 503 within about a second and writes nothing; freed, the retry is stored."""
    email = "free-file@corp.example"
    first = requests.post(server.url, json=payload(email), headers=HEADER, timeout=5)
    second = requests.post(server.url, json=payload(email, second=1), headers=HEADER, timeout=5)
    assert first.json() == second.json() == {"status": "stored"}
    assert first.elapsed.total_seconds() < 1.0 and second.elapsed.total_seconds() < 0.5
    assert count(server.duckdb_file, f"email = '{email}'") == (2, 2)
    holder = DuckDBWarehouse(server.duckdb_file, "coldsync")
    try:
        started = time.monotonic()
        busy = requests.post(server.url, json=payload(email, second=2), headers=HEADER, timeout=5)
        waited = time.monotonic() - started
    finally:
        holder.close()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5" and 0.6 <= waited < 1.5
    assert count(server.duckdb_file, f"email = '{email}'") == (2, 2)
    retried = requests.post(server.url, json=payload(email, second=2), headers=HEADER, timeout=5)
    assert retried.json() == {"status": "stored"}
    assert count(server.duckdb_file, f"email = '{email}'") == (3, 3)


def test_a_burst_of_1000_from_20_senders_loses_nothing_and_collapses_repeats(server: Server) -> None:
    """1,000 deliveries from 20 concurrent senders on loopback, 900 distinct events and 100 repeats of some of them:
    every answer is 200 stored, the table holds exactly 900 rows with 900 distinct keys, and the process still
    answers afterwards."""
    distinct = [payload(f"burst{i:03d}@corp.example", event_type=("lead_unsubscribed", "email_bounced",
                                                                   "reply_received")[i % 3], second=i)
                for i in range(900)]
    deliveries = distinct + [distinct[i * 9] for i in range(100)]
    deliveries = deliveries[::2] + deliveries[1::2]  # repeats spread through the burst
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def sender(part: list[dict[str, Any]]) -> None:
        with requests.Session() as session:
            for body in part:
                answer = session.post(server.url, json=body, headers=HEADER, timeout=10)
                with lock:
                    answers.append((answer.status_code, answer.json()))

    senders = [threading.Thread(target=sender, args=(deliveries[n::20],)) for n in range(20)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(timeout=60)
    assert len(answers) == 1000 and set(map(json.dumps, answers)) == {json.dumps([200, {"status": "stored"}])}
    assert count(server.duckdb_file, "email LIKE 'burst%'") == (900, 900)
    assert requests.post(server.url, json=payload(event_type="email_opened"), headers=HEADER,
                         timeout=5).status_code == 200


def test_the_secret_never_appears_in_the_receivers_output(server: Server) -> None:
    """After a stored delivery and a refused one (and whatever else this worker sent it) the receiver's stdout and
    stderr hold no part of the secret, yet they did log both deliveries (masked addresses, the header's name)."""
    stored = requests.post(server.url, json=payload(email="quiet-log@corp.example", timestamp="2026-11-30T08:00:00Z"),
                           headers={SECRET_HEADER: SECRET}, timeout=5)
    assert stored.json() == {"status": "stored"}
    refused = requests.post(server.url, json=payload(), headers={SECRET_HEADER: SECRET + "x"}, timeout=5)
    assert refused.status_code == 401
    text = server.out.read_text(encoding="utf-8") + server.err.read_text(encoding="utf-8")
    assert "listening on" in text and "stored in" in text and "q***@corp.example" in text
    assert f"missing or wrong {SECRET_HEADER} header" in text
    assert not any(SECRET[i:i + 8] in text for i in range(len(SECRET) - 7))
    assert "quiet-log@corp.example" not in text


def test_the_receiver_refuses_to_start_without_a_strong_secret(tmp_path: Path, template: Path) -> None:
    """No secret, or a 31-character one: exit 2 before listening, naming INSTANTLY_WEBHOOK_SECRET and the command
    that makes one; the short value itself is not shown."""
    for secret in ("", "s" * 31):
        env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}}
        env.update({**environment(tmp_path / "wh.duckdb"), "INSTANTLY_WEBHOOK_SECRET": secret})
        done = subprocess.run([sys.executable, "-m", "coldsync.webhooks", "--port", "0"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "listening" not in done.stdout
        assert "INSTANTLY_WEBHOOK_SECRET" in done.stderr and "secrets.token_urlsafe(32)" in done.stderr
        assert "s" * 31 not in done.stderr


def test_the_warehouse_session_opens_once_for_deliveries_in_flight_and_closes_after() -> None:
    """Two deliveries overlapping share one open warehouse; it is closed when the last leaves; a busy opener is
    retried until the delivery's deadline and then reported unavailable."""
    from coldsync.warehouse.base import WarehouseBusyError
    from coldsync.webhooks.sink import WarehouseUnavailable

    opened: list[Any] = []

    class Fake:
        closed = False

        def close(self) -> None:
            self.closed = True

    def opener() -> Warehouse:
        opened.append(Fake())
        return opened[-1]  # type: ignore[no-any-return]

    session = WarehouseSession(opener, keep_open=False)
    with session.use() as first, session.use() as second:
        assert first is second and len(opened) == 1 and not opened[0].closed
    assert opened[0].closed and not session.is_open
    clock = [0.0]
    attempts: list[float] = []

    def busy() -> Warehouse:
        attempts.append(clock[0])
        raise WarehouseBusyError("held by pid 1")

    waiting = WarehouseSession(busy, keep_open=False, clock=lambda: clock[0],
                               sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(WarehouseUnavailable, match="busy"), waiting.use():
        pass
    assert len(attempts) == 14 and attempts[-1] <= 0.7  # every 0.05 s from 0 to 0.65
