"""The webhook receiver (coldsync.webhooks.app): forged and malformed deliveries write nothing and answer as
documented, accepted ones land in ops_instantly_events once per dedup key, within a second, from a burst of 20
senders, while the DuckDB file stays free between deliveries; the secret never shows in the receiver's output."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def function_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The function as Cloud Run runs it: functions_framework.create_app on the root main.py (a Flask app)."""
    import functions_framework

    for name in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE"):  # create_app sets them for the process
        monkeypatch.setenv(name, os.environ.get(name, ""))
    return functions_framework.create_app("receive", str(REPO_ROOT / "main.py"))  # type: ignore[no-untyped-call]


@contextmanager
def installed(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              **extra: str) -> Iterator[tuple[Any, Path, app.Receiver]]:
    """The function's Flask app, with a receiver built from environment() plus `extra` on a fresh copy of the
    warehouse installed; that warehouse file; the receiver."""
    duckdb_file = copy_of(template, tmp_path / "wh")
    environ = {**environment(duckdb_file), **extra}
    sources = read_sources(environ=environ, dotenv_path=tmp_path / ".env", secrets_dir=tmp_path)
    receiver = app.build_receiver(sources, resolve(sources))
    previous = app.install(receiver)
    try:
        yield function_app(monkeypatch), duckdb_file, receiver
    finally:
        app.install(previous)
        receiver.close()


@pytest.fixture
def client(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """The function's test client, in process, with a receiver on a fresh copy of the warehouse; and that file."""
    with installed(template, tmp_path, monkeypatch) as (flask_app, duckdb_file, _receiver):
        yield flask_app.test_client(), duckdb_file


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


@pytest.mark.parametrize(("body", "error"), [
    (b"[" * 100_000 + b"]" * 100_000, "body: JSON nested too deeply"),
    (json.dumps(payload()).replace('"step": 1', '"step": NaN').encode(),
     "body: NaN is not a JSON value (RFC 8259 has no NaN or Infinity)"),
    (json.dumps(payload()).replace('"step": 1', '"step": Infinity').encode(),
     "body: Infinity is not a JSON value (RFC 8259 has no NaN or Infinity)"),
    (json.dumps(payload()).replace('"step": 1', '"step": 1e400').encode(),
     "step: expected a whole number from 0 to 9223372036854775807 (Instantly counts steps from 1), got inf"),
    (json.dumps(payload(step=10**30)).encode(),
     "step: expected a whole number from 0 to 9223372036854775807 (Instantly counts steps from 1), got "
     "1000000000000000000000000000000"),
    (json.dumps(payload(timestamp="0001-01-01T00:00:00+01:00")).encode(),
     "timestamp: expected a time from 1970-01-01 to 9999-12-31 UTC, got '0001-01-01T00:00:00+01:00'"),
], ids=["deep-nesting", "nan", "infinity", "1e400", "step-1e30", "year-1-with-offset"])
def test_a_body_that_used_to_crash_the_receiver_is_400_json(client: tuple[Any, Path], body: bytes,
                                                           error: str) -> None:
    """Each body the review found answered with werkzeug's HTML 500 (or, for step 10**30, failing its whole write
    batch) is now a JSON 400 naming the field, and writes nothing."""
    http, duckdb_file = client
    answer = http.post("/", data=body, headers=HEADER, content_type="application/json")
    assert (answer.status_code, answer.get_json()) == (400, {"error": error, "field": error.split(":")[0]})
    assert count(duckdb_file) == (0, 0)


def test_an_unexpected_exception_is_a_json_500_logged_by_type_only(client: tuple[Any, Path],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A bug while storing (the sink raises a KeyError whose text holds the address and the secret) answers
    500 {"error": "internal error"} as JSON, logged once at ERROR naming the exception's type only; a receiver that
    cannot even be built the same; then a good delivery is stored again."""
    http, duckdb_file = client
    receiver = app.current_receiver()

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError(f"ana@corp.example {SECRET}")

    with monkeypatch.context() as patch:
        patch.setattr(receiver.sink, "store", broken)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="coldsync.webhooks"):
            answer = http.post("/", json=payload(), headers=HEADER)
    assert (answer.status_code, answer.mimetype, answer.get_json()) == (500, "application/json",
                                                                        {"error": "internal error"})
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["webhook failed: unexpected KeyError (answered 500, nothing more is logged about it)"]
    assert "ana@corp.example" not in caplog.text and SECRET not in caplog.text
    with monkeypatch.context() as patch:
        patch.setattr(app, "_receiver", None)
        patch.setattr(app, "receiver_from_environment", broken)
        unbuilt = http.post("/", json=payload(), headers=HEADER)
    assert (unbuilt.status_code, unbuilt.get_json()) == (500, {"error": "internal error"})
    assert http.post("/", json=payload(), headers=HEADER).get_json() == {"status": "stored"}
    assert count(duckdb_file) == (1, 1)


def test_the_previous_secret_is_accepted_during_a_rotation(template: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With INSTANTLY_WEBHOOK_SECRET_PREVIOUS set, a delivery with the new secret and one with the previous are both
    stored; a third secret is refused 401; the previous secret is registered for redaction like the new one."""
    old, third = "Old-" + "p" * 40, "Third-" + "q" * 40
    with installed(template, tmp_path, monkeypatch, INSTANTLY_WEBHOOK_SECRET_PREVIOUS=old) as (flask_app,
                                                                                             duckdb_file, _):
        http = flask_app.test_client()
        answers = [http.post("/", json=payload(second=n), headers={SECRET_HEADER: secret})
                   for n, secret in enumerate((SECRET, old, third))]
    assert [(a.status_code, a.get_json()) for a in answers] == [
        (200, {"status": "stored"}), (200, {"status": "stored"}),
        (401, {"error": "missing or wrong X-Coldsync-Webhook-Secret header"})]
    assert count(duckdb_file) == (2, 2)
    settings = resolve(read_sources(environ={**environment(duckdb_file), "INSTANTLY_WEBHOOK_SECRET_PREVIOUS": old},
                                    dotenv_path=tmp_path / ".env", secrets_dir=tmp_path))
    assert {SECRET, old} <= set(settings.secrets())


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
    that makes one; a 31-character INSTANTLY_WEBHOOK_SECRET_PREVIOUS beside a good secret: exit 2 naming that
    setting; the short values themselves are not shown."""
    make = "secrets.token_urlsafe(32)"
    cases = [({"INSTANTLY_WEBHOOK_SECRET": ""}, "INSTANTLY_WEBHOOK_SECRET (from default): is empty", make),
             ({"INSTANTLY_WEBHOOK_SECRET": "s" * 31},
              "INSTANTLY_WEBHOOK_SECRET (from environment): is 31 characters, fewer than 32", make),
             ({"INSTANTLY_WEBHOOK_SECRET_PREVIOUS": "s" * 31},
              "INSTANTLY_WEBHOOK_SECRET_PREVIOUS (from environment): is 31 characters, fewer than 32",
              "Fix: set INSTANTLY_WEBHOOK_SECRET_PREVIOUS to the secret the webhooks are registered with now")]
    for settings, named, fix in cases:
        env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}}
        env.update({**environment(tmp_path / "wh.duckdb"), **settings})
        done = subprocess.run([sys.executable, "-m", "coldsync.webhooks", "--port", "0"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "listening" not in done.stdout
        assert done.stderr.startswith("Configuration error: 1 bad setting(s):\n  - " + named) and fix in done.stderr
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


def test_a_steady_stream_holds_the_duckdb_file_until_a_command_waits_then_lets_it_go() -> None:
    """Three threads keep a delivery in flight at every moment: nobody waiting, the file is opened once
    and kept (a burst is never interrupted); a command's mark set at 0.4 s: the file is closed once the deliveries
    in it finish and not opened again while the mark stays; the mark gone, one reopen."""
    events: list[tuple[str, float]] = []
    wanted = threading.Event()

    class Fake:
        def close(self) -> None:
            events.append(("close", time.monotonic()))

    def opener() -> Warehouse:
        events.append(("open", time.monotonic()))
        return Fake()  # type: ignore[return-value]

    session = WarehouseSession(opener, keep_open=False, busy_wait=5.0, yield_to=wanted.is_set)
    done = threading.Event()

    def deliver() -> None:
        while not done.is_set():
            with session.use():
                time.sleep(0.02)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.4)
        assert [kind for kind, _ in events] == ["open"]  # a stream nobody waits for keeps the file
        wanted.set()
        marked = time.monotonic()
        while len(events) < 2 and time.monotonic() < marked + 3:
            time.sleep(0.005)
        time.sleep(0.3)
        assert [kind for kind, _ in events] == ["open", "close"]  # let go, and not taken back while wanted
        assert events[1][1] - marked < 1.0  # the deliveries in flight finish (0.02 s each), then the file goes
        wanted.clear()
        time.sleep(0.2)  # the stream goes on: the file is opened again
    finally:
        wanted.clear()
        done.set()
        for thread in threads:
            thread.join()
    assert [kind for kind, _ in events] == ["open", "close", "open", "close"] and session.opens == 2


class RefusingWarehouse:
    """A real warehouse whose append_rows raises WarehouseError for any batch holding a dedup key in `refuse` (as
    the warehouse refuses a row it cannot store), records each batch's size, and holds the first append until
    `gate` is set (so that the deliveries arriving meanwhile queue up as one batch)."""

    def __init__(self, inner: Warehouse, refuse: set[str]) -> None:
        self.inner = inner
        self.refuse = refuse
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def append_rows(self, spec: Any, rows: list[dict[str, Any]], *, key: str, label: str) -> int:
        from coldsync.warehouse.base import WarehouseError

        self.sizes.append(len(rows))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.gate.wait(10)
        if any(row[key] in self.refuse for row in rows):
            raise WarehouseError("insert refused")
        return self.inner.append_rows(spec, rows, key=key, label=label)

    def close(self) -> None:
        self.inner.close()


def store_in_one_batch(sink: EventSink, warehouse: RefusingWarehouse, rows: list[Any]) -> list[str]:
    """Store rows[0] alone, and rows[1:] from one thread each while the first append is held: they form one batch.
    Returns each row's fate in order: "stored" or the WarehouseUnavailable text."""
    from coldsync.webhooks.sink import WarehouseUnavailable

    fates = [""] * len(rows)

    def deliver(index: int) -> None:
        try:
            fates[index] = "stored" if sink.store(rows[index]).stored else "ignored"
        except WarehouseUnavailable as exc:
            fates[index] = str(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(rows))]
    threads[0].start()
    assert warehouse.entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while sink.queued < len(rows) - 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    warehouse.gate.set()
    for thread in threads:
        thread.join(10)
    return fates


def test_a_row_the_warehouse_refuses_fails_alone_and_its_batch_is_stored(template: Path, tmp_path: Path) -> None:
    """19 deliveries batched together, one of which the warehouse refuses: the batch statement fails, the rows are
    then written one by one, so the 18 others are stored (one row each) and only the refused one is 503."""
    from coldsync.webhooks.events import parse_body

    duckdb_file = copy_of(template, tmp_path / "wh")
    rows = [parse_body(json.dumps(payload(f"batch{i:02d}@corp.example", second=i)).encode()) for i in range(20)]
    warehouse = RefusingWarehouse(DuckDBWarehouse(duckdb_file, "coldsync"), {rows[7].dedup_key})
    sink = EventSink(WarehouseSession(lambda: warehouse, keep_open=True),  # type: ignore[arg-type,return-value]
                     CampaignCache(lambda _w: frozenset({MANAGED.lower()})))
    try:
        fates = store_in_one_batch(sink, warehouse, rows)
    finally:
        sink.close()
    assert fates == ["stored"] * 7 + ["the event could not be written: insert refused"] + ["stored"] * 12
    assert warehouse.sizes == [1, 19] + [1] * 19 and sink.statements == 21
    assert count(duckdb_file) == (19, 19)
    assert count(duckdb_file, "email = 'batch07@corp.example'") == (0, 0)


def test_in_an_outage_the_row_by_row_retry_stops_at_its_budget(template: Path, tmp_path: Path) -> None:
    """When every insert fails (an outage), the rows of a failed batch are tried alone only until SOLO_BUDGET
    seconds after the batch began: with a clock that moves 1 s per insert and a budget of 2 s, the batch and two
    rows alone fit in it and the third row gets the batch's error untried; every delivery is answered 503."""
    from coldsync.webhooks.events import parse_body

    rows = [parse_body(json.dumps(payload(f"outage{i}@corp.example", second=i)).encode()) for i in range(4)]
    warehouse = RefusingWarehouse(DuckDBWarehouse(copy_of(template, tmp_path / "wh"), "coldsync"),
                                  {row.dedup_key for row in rows})

    def ticking() -> float:
        return float(len(warehouse.sizes))  # one second per insert tried

    sink = EventSink(WarehouseSession(lambda: warehouse, keep_open=True),  # type: ignore[arg-type,return-value]
                     CampaignCache(lambda _w: frozenset({MANAGED.lower()})), clock=ticking,
                     solo_budget=2.0)
    try:
        fates = store_in_one_batch(sink, warehouse, rows)
    finally:
        sink.close()
    assert fates == ["the event could not be written: insert refused"] * 4
    assert warehouse.sizes == [1, 3, 1, 1]


def test_a_stalled_sender_is_dropped_after_the_read_timeout(template: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The local server (ReceiverServer, read timeout shortened to 0.3 s): a sender that announces Content-Length
    1000, sends 8 bytes and stalls is answered 408 and its connection closed within about the timeout, not when the
    sender gives up (5 s here); one that stalls inside its headers is closed; the server then still stores."""
    from coldsync.webhooks.__main__ import ReceiverServer

    with installed(template, tmp_path, monkeypatch) as (flask_app, duckdb_file, _):
        local = ReceiverServer("127.0.0.1", 0, flask_app, read_timeout=0.3)
        serving = threading.Thread(target=local.serve_forever, kwargs={"poll_interval": 0.05})
        serving.start()
        try:
            head = (f"POST / HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
            answers = []
            for sent in (head + b'{"event_', b"POST / HTTP/1.1\r\nHost: x\r\n"):
                with socket.create_connection(("127.0.0.1", local.server_port), timeout=5) as conn:
                    started = time.monotonic()
                    conn.sendall(sent)  # then silence, the connection left open
                    chunks = []
                    while chunk := conn.recv(65536):
                        chunks.append(chunk)
                    answers.append((b"".join(chunks), time.monotonic() - started))
            url = f"http://127.0.0.1:{local.server_port}/"
            stored = requests.post(url, json=payload(), headers=HEADER, timeout=5)
        finally:
            local.shutdown()
            serving.join(5)
            local.server_close()
    (stalled, stalled_after), (silent, silent_after) = answers
    assert stalled.startswith(b"HTTP/1.1 408 ") and stalled.endswith(
        b'\r\n\r\n{"error":"body: the sender stopped before the body was complete"}')
    assert 0.25 <= stalled_after < 2.0 and silent == b"" and 0.25 <= silent_after < 2.0
    assert stored.json() == {"status": "stored"} and count(duckdb_file) == (1, 1)


def test_a_reader_blocked_by_the_receiver_is_told_it_is_the_receiver(server: Server) -> None:
    """While deliveries stream in, a process that finds the DuckDB file busy is told `python -m coldsync.webhooks
    --port is running since ... (pid <the receiver's>)` (its holder note: the program and its flags, never their
    values), not just `another process`."""
    from coldsync.warehouse.base import WarehouseBusyError

    stop = threading.Event()

    def sender(n: int) -> None:
        with requests.Session() as session:
            for i in range(400):
                if stop.is_set():
                    return
                session.post(server.url, json=payload(f"holder{n}-{i:03d}@corp.example"), headers=HEADER, timeout=5)

    senders = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in senders:
        thread.start()
    told = ""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and "coldsync.webhooks" not in told:
            try:
                DuckDBWarehouse(server.duckdb_file, "coldsync").close()  # free: gone again in a few ms
            except WarehouseBusyError as exc:
                told = str(exc)
            time.sleep(0.002)
    finally:
        stop.set()
        for thread in senders:
            thread.join(10)
    assert told.startswith("python -m coldsync.webhooks --port is running since ")
    assert f"(pid {server.process.pid}) and holds the DuckDB file {server.duckdb_file}" in told
