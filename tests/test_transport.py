"""Transport (coldsync/transport.py and the Instantly client's edge): the outbound-URL rule where every URL
enters (settings, the client, validate_environment.py --production), redirects never followed, and a total
deadline per request. Servers are real loopback HTTP servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import sync_once
from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import RedirectRefusedError, TransportError, is_service_level
from coldsync.settings import SettingsError, load_settings, read_sources
from coldsync.transport import (
    DEFAULT_REQUEST_DEADLINE_SECONDS,
    INSTANTLY_URL_FIX,
    OutboundURLError,
    check_outbound_url,
    location_host,
)
from coldsync.validate import run_checks
from coldsync.warehouse.base import WarehouseError

KEY = "transport-test-key-0123456789"
FIX = "use https://api.instantly.ai (or unset INSTANTLY_BASE_URL)"

# ---- 1. the outbound-URL rule ------------------------------------------------------------------------

ACCEPTED = [
    ("https://api.instantly.ai", "https://api.instantly.ai"),
    ("https://api.instantly.ai/", "https://api.instantly.ai"),
    ("https://API.Instantly.ai:443", "https://API.Instantly.ai:443"),
    ("http://127.0.0.1:8799", "http://127.0.0.1:8799"),
    ("http://localhost:8799", "http://localhost:8799"),
    ("http://127.5.6.7:80/", "http://127.5.6.7:80"),
    ("http://[::1]:8799", "http://[::1]:8799"),
]

REFUSED = [
    ("http://api.instantly.ai", "uses http:// for api.instantly.ai: only https is allowed"),
    ("http://10.0.0.5:8080", "uses http:// for 10.0.0.5: only https is allowed"),
    ("https://api.instantly.ai@evil.example", "holds a user name or password before an `@`"),
    ("https://user:pw@api.instantly.ai", "holds a user name or password before an `@`"),
    ("http://user@127.0.0.1:8799", "holds a user name or password before an `@`"),
    ("https://api.instantly.ai/api/v2", "must be scheme and host only, without a path or query"),
    ("https://api.instantly.ai?x=1", "must be scheme and host only, without a path or query"),
    ("https://api.instantly.ai/#top", "has a fragment"),
    ("ftp://api.instantly.ai", "must start with https:// (not ftp)"),
    ("api.instantly.ai", "must start with https:// (not no scheme)"),
    ("http://2130706433:8799", "uses http:// for 2130706433: only https is allowed"),
    ("http://[::ffff:127.0.0.1]:8799", "uses http:// for ::ffff:127.0.0.1: only https is allowed"),
    ("https://evil.example\\@api.instantly.ai", "holds spaces, control characters or backslashes"),
    ("https://api.instantly.ai:99999", "is not a URL (its host or port cannot be read)"),
    ("https://", "has no host"),
    ("", "is empty"),
    ("https://api.instantly.ai:0", "has an empty or zero port"),
    ("https://api.instantly.ai:", "has an empty or zero port"),
    ("https://a..b", "has a host that is not a DNS name (a..b)"),
    ("https://-", "has a host that is not a DNS name (-)"),
]

HOST_REFUSED = [
    ("https://api.instantly.ai;evil.example", "has a host that is not a DNS name ('api.instantly.ai;evil.example')"),
    ("https://api.instantly.ai%40evil.example",
     "has a host that is not a DNS name ('api.instantly.ai%40evil.example')"),
    ("https://api.instantly.ai\uff0eevil.example",
     "has a host that is not a DNS name ('api.instantly.ai\\uff0eevil.example')"),
    ("https://api.instantly.ai\u200b", "has a host that is not a DNS name ('api.instantly.ai\\u200b')"),
]


@pytest.mark.parametrize(("url", "problem"), HOST_REFUSED)
def test_the_rule_refuses_hosts_no_server_has(url: str, problem: str) -> None:
    """A host that is not ASCII DNS labels (a `;`, an encoded `@`, a full-width dot, a zero-width space) is a
    settings error naming it, not a connection failure at run time."""
    with pytest.raises(OutboundURLError) as caught:
        check_outbound_url(url)
    assert caught.value.problem.startswith(problem)


PRODUCTION_REFUSED = [
    # Every spelling of this machine, and any address at all: production reaches Instantly by name.
    ("https://127.1", "names an IP address (127.1)"),
    ("https://2130706433", "names an IP address (2130706433)"),
    ("https://0x7f000001", "names an IP address (0x7f000001)"),
    ("https://0177.0.0.1", "names an IP address (0177.0.0.1)"),
    ("https://[::ffff:127.0.0.1]", "names an IP address (::ffff:127.0.0.1)"),
    ("https://[::ffff:7f00:1]", "names an IP address (::ffff:7f00:1)"),
    ("https://0.0.0.0", "names an IP address (0.0.0.0)"),
    ("https://[::]", "names an IP address (::)"),
    ("https://0", "names an IP address (0)"),
    ("https://10.0.0.5:8080", "names an IP address (10.0.0.5)"),
    ("https://localhost.localdomain", "points at this machine (localhost.localdomain)"),
    ("https://ip6-localhost", "points at this machine (ip6-localhost)"),
    ("https://sim.localhost", "points at this machine (sim.localhost)"),
]


@pytest.mark.parametrize(("url", "problem"), PRODUCTION_REFUSED)
def test_production_refuses_every_spelling_of_an_address(url: str, problem: str) -> None:
    """In production an IP address in any form the socket layer reads, or a local name, is refused; outside
    production the same https URL is allowed (a test server on another address)."""
    with pytest.raises(OutboundURLError) as caught:
        check_outbound_url(url, production=True)
    assert caught.value.problem.startswith(problem)
    assert check_outbound_url(url) == url


@pytest.mark.parametrize(("url", "normalized"), ACCEPTED)
def test_the_rule_accepts_https_and_loopback_http(url: str, normalized: str) -> None:
    """https to any host, and plain http to localhost, 127.0.0.0/8 or ::1 (the simulator), pass as given."""
    assert check_outbound_url(url) == normalized


@pytest.mark.parametrize(("url", "problem"), REFUSED)
def test_the_rule_refuses_plain_http_userinfo_and_paths(url: str, problem: str) -> None:
    """Plain http to a real host, userinfo (whose real host is after the `@`), a path, query or fragment, another
    scheme: refused, naming the setting and the fix; a password in the URL is never repeated."""
    with pytest.raises(OutboundURLError) as caught:
        check_outbound_url(url)
    assert caught.value.problem.startswith(problem)
    assert caught.value.setting == "INSTANTLY_BASE_URL" and caught.value.fix == INSTANTLY_URL_FIX == FIX
    assert "pw" not in str(caught.value) and "evil" not in caught.value.problem


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:8799", "points at this machine (127.0.0.1): production never talks to a simulator"),
    ("http://localhost:8799", "points at this machine (localhost): production never talks to a simulator"),
    ("https://localhost", "points at this machine (localhost): production never talks to a simulator"),
])
def test_production_refuses_the_simulator(url: str, problem: str) -> None:
    """In production a loopback host is refused whatever the scheme (never a simulator); https to Instantly passes."""
    with pytest.raises(OutboundURLError) as caught:
        check_outbound_url(url, production=True)
    assert caught.value.problem == problem
    assert check_outbound_url("https://api.instantly.ai", production=True) == "https://api.instantly.ai"


def test_the_client_refuses_what_the_rule_refuses() -> None:
    """InstantlyClient itself refuses plain http to a real host and userinfo, before any request."""
    for url in ("http://api.instantly.ai", "https://api.instantly.ai@evil.example"):
        with pytest.raises(OutboundURLError):
            InstantlyClient(KEY, base_url=url)
    assert InstantlyClient(KEY, base_url="http://127.0.0.1:8799/").base_url == "http://127.0.0.1:8799"


def _settings_error(tmp_path: Path, **env: str) -> str:
    folder = tmp_path / "none"
    folder.mkdir(exist_ok=True)
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"ROUTES_FILE": "none", **env}, dotenv_path=folder / ".env", secrets_dir=folder)
    return str(caught.value)


def test_a_plain_http_base_url_is_a_settings_error(tmp_path: Path) -> None:
    """INSTANTLY_BASE_URL=http://api.instantly.ai is refused by the settings, naming the field and the fix."""
    assert _settings_error(tmp_path, INSTANTLY_BASE_URL="http://api.instantly.ai") == (
        "1 bad setting(s):\n  - INSTANTLY_BASE_URL='http://api.instantly.ai' (from environment): uses http:// for "
        "api.instantly.ai: only https is allowed (plain http only for the local simulator on localhost, 127.0.0.1 or "
        f"::1, and never in production). Fix: {FIX}")


def test_a_base_url_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    """A URL with `user:password@` is refused and its value is not repeated (it holds a password)."""
    assert _settings_error(tmp_path, INSTANTLY_BASE_URL="https://me:hunter2@api.instantly.ai") == (
        "1 bad setting(s):\n  - INSTANTLY_BASE_URL (from environment): holds a user name or password before an `@` "
        f"(its real host would be what follows the `@`). Fix: {FIX}")


def test_a_bad_base_url_stops_sync_once_before_it_touches_anything(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """sync_once.py with INSTANTLY_BASE_URL at http://10.0.0.5:8080: exit 2 (configuration error), the setting
    named, and no warehouse file created."""
    monkeypatch.setenv("INSTANTLY_BASE_URL", "http://10.0.0.5:8080")
    monkeypatch.setenv("INSTANTLY_API_KEY", KEY)
    assert sync_once.main([]) == ExitCode.BAD_CONFIG
    err = capsys.readouterr().err
    assert err.endswith("  - INSTANTLY_BASE_URL='http://10.0.0.5:8080' (from environment): uses http:// for 10.0.0.5: "
                        "only https is allowed (plain http only for the local simulator on localhost, 127.0.0.1 or "
                        f"::1, and never in production). Fix: {FIX}\n")
    assert KEY not in err
    assert not (clean_env / "a.duckdb").exists()


def test_validate_production_fails_a_loopback_base_url(clean_env: Path) -> None:
    """validate_environment.py --production: INSTANTLY_BASE_URL at the simulator (http://127.0.0.1) is a FAIL
    line with the fix; without --production the same URL passes that check."""
    env = {"INSTANTLY_BASE_URL": "http://127.0.0.1:9", "INSTANTLY_API_KEY": KEY, "ROUTES_FILE": "none",
           "DUCKDB_PATH": str(clean_env / "a.duckdb")}
    folder = clean_env / "none"
    folder.mkdir()
    sources = read_sources(environ=env, dotenv_path=folder / ".env", secrets_dir=folder)
    produced = run_checks(sources, production=True, client_factory=_no_client, connect_warehouse=_no_warehouse)
    url = next(c for c in produced.checks if c.name == "instantly url")
    assert (url.status, url.detail, url.fix) == (
        "fail", "INSTANTLY_BASE_URL points at this machine (127.0.0.1): production never talks to a simulator", FIX)
    assert next(c for c in produced.checks if c.name == "instantly key").status == "skip"  # the key never sent
    assert produced.exit_code == ExitCode.CHECK_FAILED
    assert "  FAIL  instantly url" in produced.render_text()
    local = run_checks(sources, production=False, client_factory=_refused_client, connect_warehouse=_no_warehouse)
    url = next(c for c in local.checks if c.name == "instantly url")
    assert (url.status, url.detail) == (
        "pass", "http://127.0.0.1:9: plain http to this machine (the local simulator), refused in production")


def test_validate_production_fails_a_plain_http_base_url(clean_env: Path) -> None:
    """validate_environment.py --production with INSTANTLY_BASE_URL=http://api.instantly.ai: the settings FAIL
    line names it, exit 2."""
    folder = clean_env / "none"
    folder.mkdir()
    env = {"INSTANTLY_BASE_URL": "http://api.instantly.ai", "INSTANTLY_API_KEY": KEY, "ROUTES_FILE": "none"}
    result = run_checks(read_sources(environ=env, dotenv_path=folder / ".env", secrets_dir=folder), production=True,
                        client_factory=_no_client, connect_warehouse=_no_warehouse)
    settings = result.checks[0]
    assert settings.name == "settings" and settings.status == "fail"
    assert settings.detail.startswith("INSTANTLY_BASE_URL='http://api.instantly.ai' (from environment): uses http://")
    assert result.exit_code == ExitCode.BAD_CONFIG


def _no_client(_settings: Any) -> InstantlyClient:
    raise AssertionError("the key must not be sent anywhere in this test")


def _refused_client(settings: Any) -> InstantlyClient:
    """A client whose key check fails at once (port 9 on loopback: nothing listens)."""
    return InstantlyClient(KEY, base_url=settings.instantly_base_url, max_attempts=1, connect_timeout=0.5)


def _no_warehouse(_settings: Any) -> Any:
    raise WarehouseError("no warehouse in this test")


# ---- the request deadline setting ------------------------------------------------------------------------

def test_the_request_deadline_must_stay_below_the_lease_guard(tmp_path: Path) -> None:
    """INSTANTLY_REQUEST_DEADLINE_SECONDS at the guard (0.75 x LOCK_TTL_MINUTES=1 = 45 s) is refused with its fix;
    44 s passes, and the default (40 s) is valid with the smallest lease."""
    assert _settings_error(tmp_path, INSTANTLY_REQUEST_DEADLINE_SECONDS="45", LOCK_TTL_MINUTES="1") == (
        "1 bad setting(s):\n  - INSTANTLY_REQUEST_DEADLINE_SECONDS='45' (from environment): is not below the run's "
        "lease guard of 45 s (0.75 x LOCK_TTL_MINUTES=1). Fix: set INSTANTLY_REQUEST_DEADLINE_SECONDS below 45 "
        "(default 40), or raise LOCK_TTL_MINUTES")
    folder = tmp_path / "none"
    ok = load_settings(environ={"ROUTES_FILE": "none", "INSTANTLY_REQUEST_DEADLINE_SECONDS": "44",
                                "LOCK_TTL_MINUTES": "1"}, dotenv_path=folder / ".env", secrets_dir=folder)
    assert ok.instantly_request_deadline_seconds == 44
    default = load_settings(environ={"ROUTES_FILE": "none", "LOCK_TTL_MINUTES": "1"}, dotenv_path=folder / ".env",
                            secrets_dir=folder)
    assert default.instantly_request_deadline_seconds == DEFAULT_REQUEST_DEADLINE_SECONDS == 40


# ---- 2. redirects ------------------------------------------------------------------------------------------

class Recorder(BaseHTTPRequestHandler):
    """Records each request (method, path, body) on its server; answers what the server's `answer` says."""

    server: Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append((self.command, self.path, body))
        status, headers, payload = self.server.answer(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Callable[[str], tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__(("127.0.0.1", 0), Recorder)
        self.answer = answer
        self.received: list[tuple[str, str, bytes]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def servers() -> Iterator[Callable[[Callable[[str], tuple[int, dict[str, str], bytes]]], Server]]:
    started: list[Server] = []

    def start(answer: Callable[[str], tuple[int, dict[str, str], bytes]]) -> Server:
        server = Server(answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_is_never_followed(status: int, servers: Callable[..., Server]) -> None:
    """A 307/308 to POST /leads/add pointing at a second loopback server: that server receives nothing, the add
    is sent once (never retried), the remaining chunks are not sent, and the error names the Location's host
    only (not its path or query, not the body)."""
    target = servers(lambda _path: (200, {"Content-Type": "application/json"}, b"{}"))
    location = f"http://localhost:{target.port}/api/v2/leads/add?token=s3cret-query"
    origin = servers(lambda _path: (status, {"Location": location, "Content-Type": "text/plain"},
                                    b"moved: alice@corp.example"))
    client = InstantlyClient(KEY, base_url=f"http://127.0.0.1:{origin.port}", backoff_base=0.01, backoff_max=0.02)
    with client:
        result = client.add_leads("c-1", [{"email": "a@corp.example"}, {"email": "b@corp.example"}], chunk_size=1)
    assert target.received == []
    assert [(m, p) for m, p, _b in origin.received] == [("POST", "/api/v2/leads/add")]
    assert [(o.index, o.outcome) for o in result.outcomes] == [(0, "failed"), (1, "failed")]
    error = result.outcomes[0].error
    assert isinstance(error, RedirectRefusedError) and result.outcomes[1].error is error
    assert str(error) == (f"Instantly answered http {status} redirecting to localhost; redirects are never followed "
                          f"(check INSTANTLY_BASE_URL) [POST /leads/add] http {status}")
    assert is_service_level(error) and not error.retryable
    assert client.health.failed == {"POST /leads/add": error}


def test_the_redirect_names_the_host_only() -> None:
    """The host a Location points at, resolved against the request; never its user, port, path or query."""
    assert location_host("https://api.instantly.ai/api/v2/x", "https://u:p@evil.example:8443/a?k=v") == "evil.example"
    assert location_host("https://api.instantly.ai/api/v2/x", "/elsewhere?k=v") == "api.instantly.ai"
    assert location_host("https://api.instantly.ai/api/v2/x", None) == "nowhere (no Location header)"


# ---- 5. the total deadline per request -----------------------------------------------------------------

class Dribbler:
    """A loopback server that answers every request one byte every `pace` seconds, from the first byte of the
    status line (`headers=True`) or after whole headers announcing a 400-byte JSON body."""

    def __init__(self, *, headers: bool, pace: float = 0.2) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.headers, self.pace = headers, pace
        self.stop = threading.Event()
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.requests += 1
            body = b'{"items": [' + b" " * 386 + b"]}"
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            data = head.encode() + body
            if not self.headers:
                conn.sendall(head.encode())
                data = body
            for i in range(len(data)):
                if self.stop.wait(self.pace):
                    return
                try:
                    conn.sendall(data[i:i + 1])
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.parametrize("dribbled", ["body", "headers"])
def test_a_dribbled_answer_is_cut_at_the_request_deadline(dribbled: str) -> None:
    """An answer dribbled a byte every 0.2 s (no socket read ever waits 5 s, so the read timeout alone would wait
    the ~80 s it takes) fails at the 1 s deadline with a timeout TransportError, after one attempt."""
    server = Dribbler(headers=dribbled == "headers")
    client = InstantlyClient(KEY, base_url=f"http://127.0.0.1:{server.port}", read_timeout=5, max_attempts=1,
                             request_deadline=1)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            client.check_key()
        elapsed = time.monotonic() - started
    finally:
        client.close()
        server.close()
    assert 0.9 <= elapsed < 2.5
    assert caught.value.summary.startswith("timeout (")
    assert caught.value.retryable and server.requests == 1


# ---- 4. what the fresh review found: compressed answers, garbled writes, the run's deadline, sizes, proxies -----

def _json(status: int, payload: object, **headers: str) -> tuple[int, dict[str, str], bytes]:
    import json
    return status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode()


def test_a_gzip_answer_is_decoded(servers: Callable[..., Server]) -> None:
    """requests asks for gzip; a compressed answer (as most APIs send) is decoded, not taken as non-JSON."""
    import gzip
    import json
    body = gzip.compress(json.dumps({"id": "c-1", "name": "SMB", "status": 1}).encode())
    server = servers(lambda _path: (200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, body))
    with InstantlyClient(KEY, base_url=f"http://127.0.0.1:{server.port}", max_attempts=1) as client:
        campaign = client.get_campaign("c-1")
    assert (campaign.id, campaign.name, campaign.status) == ("c-1", "SMB", 1)
    assert len(server.received) == 1


@pytest.mark.parametrize("answer", [b"<html>ok</html>", b'{"leads_uploaded": "10"}'])
def test_a_garbled_200_to_an_add_is_sent_once_and_its_leads_are_unknown(answer: bytes,
                                                                       servers: Callable[..., Server]) -> None:
    """A 2xx to POST /leads/add the client cannot read may have added the leads: sent once (never again), its
    leads `unknown` (looked up next run), never created or failed; the operation's service failure is recorded."""
    from coldsync.instantly.errors import UnusableAnswerError
    server = servers(lambda _path: (200, {"Content-Type": "application/json"}, answer))
    with InstantlyClient(KEY, base_url=f"http://127.0.0.1:{server.port}", backoff_base=0.01, backoff_max=0.02) as c:
        result = c.add_leads("c-1", [{"email": "a@corp.example"}, {"email": "b@corp.example"}])
        failed = c.health.failed
    assert len(server.received) == 1
    assert [(o.index, o.outcome) for o in result.outcomes] == [(0, "unknown"), (1, "unknown")]
    assert isinstance(result.outcomes[0].error, UnusableAnswerError) and len(result.unusable) == 1
    assert list(failed) == ["POST /leads/add"] and is_service_level(failed["POST /leads/add"])


def test_retries_never_outlive_the_runs_lease_guard() -> None:
    """With `stop_at` (the run's lease guard) 2.5 s away, a dribbling server with a 1 s deadline per attempt and 6
    attempts allowed costs at most ~2.5 s, not 6 x 1 s plus backoff; a call after `stop_at` is not sent at all."""
    from coldsync.instantly.errors import RunDeadlineError
    server = Dribbler(headers=False)
    client = InstantlyClient(KEY, base_url=f"http://127.0.0.1:{server.port}", read_timeout=5, max_attempts=6,
                             request_deadline=1, backoff_base=0.2, backoff_max=0.2)
    try:
        client.stop_at = time.monotonic() + 2.5
        started = time.monotonic()
        with pytest.raises(TransportError):
            client.check_key()
        elapsed = time.monotonic() - started
        assert elapsed < 4.0 and 2 <= server.requests <= 3  # without stop_at: 6 attempts of 1 s and backoff, ~7 s
        client.stop_at = time.monotonic() - 0.1
        sent = server.requests
        with pytest.raises(RunDeadlineError) as caught:
            client.check_key()
        assert server.requests == sent and is_service_level(caught.value)
    finally:
        client.close()
        server.close()


def test_a_huge_error_message_is_cut_after_redaction(servers: Callable[..., Server]) -> None:
    """A 400 whose message is 2 MB of addresses gives a server message of at most 1,000 characters, scrubbed."""
    from coldsync.instantly.client import MAX_SERVER_MESSAGE
    message = "refused: " + " ".join(f"zq{i}@corp.example" for i in range(100_000))
    server = servers(lambda _path: _json(400, {"message": message}))
    with (InstantlyClient(KEY, base_url=f"http://127.0.0.1:{server.port}", max_attempts=1) as client,
          pytest.raises(Exception) as caught):
        client.get_campaign("c-1")
    shown = getattr(caught.value, "server_message", "")
    assert MAX_SERVER_MESSAGE == 1000 and len(shown) == 1000
    assert shown.startswith("refused: z***@corp.example z***@corp.example") and "zq1" not in shown


def test_an_answer_over_the_size_cap_is_not_read(servers: Callable[..., Server],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A body past MAX_RESPONSE_BYTES (here lowered to 1 KiB) fails the attempt instead of filling memory."""
    import coldsync.instantly.client as client_module
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 1024)
    server = servers(lambda _path: _json(200, {"id": "c-1", "name": "x" * 5000, "status": 1}))
    with (InstantlyClient(KEY, base_url=f"http://127.0.0.1:{server.port}", max_attempts=1) as client,
          pytest.raises(TransportError) as caught):
        client.get_campaign("c-1")
    assert caught.value.summary == "answer larger than 0 MiB: not read"


def test_the_body_reader_stops_at_the_deadline_by_itself() -> None:
    """The worker's own reader gives up at the deadline (so it frees the answer even after the caller left)."""
    from types import SimpleNamespace

    from coldsync.instantly.client import _read_body
    reads: list[int] = []

    def read1(amount: int, decode_content: bool = False) -> bytes:
        reads.append(amount)
        return b"x"

    response = SimpleNamespace(raw=SimpleNamespace(read1=read1))
    assert _read_body(response, time.monotonic() - 1) == (  # type: ignore[arg-type]
        None, "timeout (the answer was still arriving at the request deadline)")
    assert reads == []


def test_proxy_and_netrc_settings_of_the_environment_are_ignored(servers: Callable[..., Server],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY pointing at another loopback server does not see the request (nor the key): the client goes
    straight to its base URL (requests' trust_env is off)."""
    proxy = servers(lambda _path: _json(200, {"id": "proxy", "name": "proxy", "status": 1}))
    target = servers(lambda _path: _json(200, {"id": "c-1", "name": "SMB", "status": 1}))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    with InstantlyClient(KEY, base_url=f"http://127.0.0.1:{target.port}", max_attempts=1) as client:
        assert client.get_campaign("c-1").id == "c-1"
    assert proxy.received == [] and len(target.received) == 1
