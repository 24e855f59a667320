"""The canary run: whole sync runs with a canary key and canary addresses against a hostile Instantly, then a
search of everything the runs left (stdout, stderr, the job summary, every column of every warehouse table,
every byte of every file) for the key, any 8-character run of it, and the addresses.

The hostile Instantly is the simulator behind a loopback proxy that answers chosen requests itself: error
bodies that echo the request's Authorization header (the key straddling character 300 of the body, as in
the issue's case 3), the leads' own addresses in every encoding of the `@`, and outsiders' addresses that
no lead has. Lead addresses may live only in the warehouse columns that hold lead addresses by design;
the key and the outsiders nowhere.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pytest

import sync_once
import validate_environment
from coldsync import settings as settings_module
from coldsync.cli import ExitCode
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.redact import FRAGMENT
from coldsync.settings import SPECS
from coldsync.sync import SERVICE_PHASE
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build

KEY = "canary-KEY-5f3e9a1c7b2d4e6f8a0b"
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
LEADS = [f"canary.lead{i:02d}@leads.example" for i in range(12)]
LEAD_MARK = "canary.lead"  # begins every lead's local part
OUTSIDERS = ["ops.outsider.canary@evil.example", "Finance.Outsider.Canary@Evil.Example"]
OUTSIDER_MARK = "outsider.canary"
ATS = ["@", "%40", "%2540", "=40", "\\u0040", "\\x40", "&#64;", "&commat;"]
# The warehouse columns that hold lead addresses by design (coldsync/warehouse/schema.py): the source rows,
# their copy after rules 1-2 (ops_candidates: the address and its suppression key; ops_ready_queue: its copy of
# the first rows per route), the leads added (the state of the tracked leads) and the dead letters of the leads
# Instantly refused. Nothing else may hold one.
LEAD_COLUMNS = {("source_leads", "email"), ("ops_candidates", "email"), ("ops_candidates", "email_key"),
                ("ops_ready_queue", "email"), ("ops_ready_queue", "email_key"), ("ops_inst_state", "email"),
                ("ops_dead_letters", "email")}


class _Proxy(ThreadingHTTPServer):
    """Forwards to the simulator, except what `mode` makes it answer itself (hostile answers)."""

    mode: str = "pass"
    upstream: str = ""
    single_adds: set[str]  # the lead of each one-lead add it refused (Instantly has then named it)
    refuse_next_single: bool = False  # the last add was a refused batch: its first lone lead is refused too
    hostile_answers: int = 0
    lock: threading.Lock


def _encodings(address: str) -> list[str]:
    local, _at, domain = address.partition("@")
    return [f"{local}{at}{domain}" for at in ATS] + [address.upper()]


def _hostile_body(auth: str, leads: list[str], status: int, with_message: bool) -> dict[str, Any]:
    """An error body echoing `auth` so that the key ends at character 301 of the JSON the client re-dumps (a cut
    at 300 before scrubbing keeps all of it but its last character), and every address in every encoding."""
    prefix = len(f'{{"statusCode": {status}, "error": "')
    echoed = f"Authorization: {auth}"
    body: dict[str, Any] = {"statusCode": status, "error": "x" * (300 - prefix - len(echoed) + 1) + echoed,
                            "echo": [e for address in leads + OUTSIDERS for e in _encodings(address)],
                            "headers": {"Authorization": auth}}
    if with_message:
        body["message"] = f"refused {auth} for " + ", ".join(body["echo"])
    return body


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _Proxy

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        mode, path = self.server.mode, urlsplit(self.path).path
        hostile: tuple[int, dict[str, Any]] | None = None
        if mode == "adds" and self.command == "POST" and path.endswith("/leads/add"):
            leads = [str(lead.get("email")) for lead in json.loads(raw).get("leads", [])]
            with self.server.lock:
                # Every batch refused; of its halves, the first lone lead refused (Instantly named it) and the
                # next one accepted: one bad lead per batch, so a per-lead refusal, not of the whole operation.
                refuse = len(leads) > 1 or self.server.refuse_next_single
                self.server.refuse_next_single = len(leads) > 1
                if refuse:
                    self.server.hostile_answers += 1
                    if len(leads) == 1:
                        self.server.single_adds.add(leads[0])
                with_message = len(self.server.single_adds) % 2 == 0  # the letters alternate both forms
            if refuse:
                hostile = 400, _hostile_body(auth, leads, 400, with_message)
        elif mode in ("outage", "auth"):
            status = 500 if mode == "outage" else 401
            with self.server.lock:
                self.server.hostile_answers += 1
            hostile = status, _hostile_body(auth, list(LEADS), status, status == 401)
        if hostile is not None:
            payload = json.dumps(hostile[1]).encode()
            self.send_response(hostile[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")  # the client's retries of a 500 do not wait
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = urlsplit(self.server.upstream)
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            connection.request(self.command, self.path, body=raw or None, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        finally:
            connection.close()

    do_GET = do_POST = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: stderr is what the test searches."""


@pytest.fixture(name="hostile")
def hostile_fixture() -> Iterator[tuple[InstantlySimulator, _Proxy]]:
    """The simulator (key KEY, the two README campaigns) behind the hostile proxy, both on 127.0.0.1."""
    sim = InstantlySimulator(api_key=KEY, seed=11, now=dt.datetime.now(dt.UTC).replace(microsecond=0))
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    proxy = _Proxy(("127.0.0.1", 0), _ProxyHandler)
    proxy.upstream, proxy.single_adds, proxy.lock = sim.base_url, set(), threading.Lock()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield sim, proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        sim.stop()


def _windows(secret: str) -> set[str]:
    low = secret.lower()
    return {low[i:i + FRAGMENT] for i in range(len(low) - FRAGMENT + 1)}


def _every_cell(path: Path) -> list[tuple[str, str, str]]:
    """(table, column, value as text) of every non-null cell of every base table of the DuckDB file."""
    cells: list[tuple[str, str, str]] = []
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_type = 'BASE TABLE'").fetchall()
        for schema, table in tables:
            result = con.execute(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608 - names from the catalog
            columns = [d[0] for d in result.description]
            for row in result.fetchall():
                cells += [(table, column, str(value)) for column, value in zip(columns, row, strict=True)
                          if value is not None]
    return cells


def test_canary_key_and_addresses_appear_only_where_designed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        hostile: tuple[InstantlySimulator, _Proxy]) -> None:
    """Across sync runs against a hostile Instantly (refused adds, an outage, a refused key, each answer echoing
    the Authorization header and addresses in every encoding), the reports and validate_environment.py: the
    canary key (or any 8-character run of it) and the outsiders' addresses are in no output, no table and no
    file; lead addresses only in the source and dead-letter email columns; the refused leads' dead letters and
    the outage's service letter exist."""
    _sim, proxy = hostile
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr(settings_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "secrets")
    monkeypatch.setattr(logging.getLogger("coldsync"), "handlers", [])
    summary = tmp_path / "job-summary.md"
    environ = {"SMB_CAMPAIGN_ID": SMB, "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "INVENTORY_CAP": "20",
               "TARGET_NEW_LEADS_PER_RUN": "4", "BLOCKLIST_MIRROR": "false", "RECONCILE_AUDIT_CALLS": "0"}
    settings = make_settings(tmp_path, instantly_api_key=KEY, **environ)
    rows = list(generate_source_rows(len(LEADS), seed=3))
    for row, email in zip(rows, LEADS, strict=True):
        row["email"] = email
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings, rows, as_of=None)
    warehouse.close()
    for name, value in {**environ, "DUCKDB_PATH": str(tmp_path / "wh.duckdb"), "ROUTES_FILE": "none",
                        "INSTANTLY_API_KEY": KEY, "INSTANTLY_BASE_URL": f"http://127.0.0.1:{proxy.server_port}",
                        "LOG_LEVEL": "DEBUG", "GITHUB_STEP_SUMMARY": str(summary)}.items():
        monkeypatch.setenv(name, value)

    proxy.mode = "adds"  # every batch refused: halved, one lead each refused alone (a dead letter), one added
    first = sync_once.main([])
    second = sync_once.main(["--json"])
    proxy.mode = "outage"  # every call a 500: the run fails, the operation gets a service letter
    assert sync_once.main([]) == ExitCode.RUN_FAILED
    proxy.mode = "auth"  # every call a 401 echoing the key
    assert sync_once.main([]) == ExitCode.RUN_FAILED
    assert validate_environment.main([]) == ExitCode.CHECK_FAILED
    assert validate_environment.main(["--json"]) == ExitCode.CHECK_FAILED
    proxy.mode = "pass"
    for flags in (["--report"], ["--report", "--json"], ["--report", "--markdown"]):
        assert sync_once.main(flags) == ExitCode.OK
    captured = capfd.readouterr()

    # The runs did what the search below depends on: refused leads, letters, a failed run's error line.
    assert (first, second) == (ExitCode.OK, ExitCode.OK)
    cells = _every_cell(tmp_path / "wh.duckdb")
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        letters = [dict(zip(("phase", "operation", "email", "http", "text"), r, strict=True)) for r in con.execute(
            "SELECT phase, operation, email, http_status, error_text FROM coldsync.ops_dead_letters").fetchall()]
    refused = {str(r["email"]) for r in letters if (r["phase"], r["operation"]) == ("topup", "add_lead")}
    assert proxy.single_adds and refused == proxy.single_adds
    # Each refused lead's letter holds the answer to its one-lead add, scrubbed whole and then cut: the masks of
    # the lead's and the outsiders' addresses (the first letter as sent), the key gone with its header.
    masks = ["c***@leads.example"] * 8 + ["C***@leads.example"] + ["o***@evil.example"] * 8 + ["O***@evil.example"] \
        + ["F***@evil.example"] * 9
    said = "request failed [POST /leads/add] http 400 server said: "
    with_message = said + "refused Bearer [redacted] for " + ", ".join(masks)
    prefix = len('{"statusCode": 400, "error": "')
    cut = said + json.dumps({"statusCode": 400, "error": "x" * (300 - prefix - len(f"Authorization: Bearer {KEY}") + 1)
                             + "Authorization: [redacted]", "echo": masks})[:300]
    texts = {str(r["text"]) for r in letters if r["phase"] == "topup"}
    assert texts == {with_message, cut} and {r["http"] for r in letters if r["phase"] == "topup"} == {400}
    assert any(r["phase"] == SERVICE_PHASE and r["http"] == 500 for r in letters)
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        runs = con.execute("SELECT outcome, error_text FROM coldsync.ops_run_log ORDER BY started_at").fetchall()
    assert [outcome for outcome, _error in runs] == ["success", "success", "failed", "failed"]
    assert str(runs[2][1]).startswith("could not read any campaign from Instantly (request failed "
                                      "[GET /campaigns/analytics] http 500 server said: {")
    assert "Authorization: [redacted]" in str(runs[2][1])
    assert runs[3][1] == ("Instantly refused the key: request failed (http 401 on GET /campaigns/analytics); check "
                          "INSTANTLY_API_KEY, its scopes and the workspace's plan")

    # Nothing of the key, nothing of an outsider, anywhere; lead addresses only where designed.
    outputs = {"stdout": captured.out, "stderr": captured.err, "job summary": summary.read_text(encoding="utf-8")}
    assert "Authorization: [redacted]" in captured.err and "c***@leads.example" in captured.err
    for where, text in outputs.items():
        low = text.lower()
        assert not [w for w in _windows(KEY) if w in low], where
        assert OUTSIDER_MARK not in low and LEAD_MARK not in low, where
    key_cells = {(t, c) for t, c, v in cells if any(w in v.lower() for w in _windows(KEY))}
    outsider_cells = {(t, c) for t, c, v in cells if OUTSIDER_MARK in v.lower()}
    lead_cells = {(t, c) for t, c, v in cells if LEAD_MARK in v.lower()}
    assert (key_cells, outsider_cells, lead_cells) == (set(), set(), LEAD_COLUMNS)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert tmp_path / "wh.duckdb" in files and summary in files
    for path in files:
        data = path.read_bytes().lower()
        assert not [w for w in _windows(KEY) if w.encode() in data], path
        assert OUTSIDER_MARK.encode() not in data, path
