"""The one redaction path (coldsync.redact): the issue's cases 3 and 4 through the real client on 127.0.0.1,
the masks one by one, and a property test that feeds hostile bodies through every output path."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import string
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import InstantlyError, ValidationError
from coldsync.logs import configure_logging
from coldsync.phases.context import RunContext, dead_letter
from coldsync.redact import (
    FRAGMENT,
    RedactingFilter,
    forget_secrets,
    redact,
    register_secrets,
    secret_parts,
)
from coldsync.report import PhaseReport, RunReport
from coldsync.status import StatusReport
from coldsync.sync import _run_log_row
from coldsync.validate import Validation

KEY = "canary-KEY-5f3e9a1c7b2d4e6f8a0b"

Answer = Callable[[str], tuple[int, bytes]]  # the request's Authorization header -> (status, body)


class _FakeInstantly(ThreadingHTTPServer):
    """A loopback HTTP server whose every answer `answer` builds from the request's Authorization header."""

    answer: Answer = staticmethod(lambda auth: (200, b"{}"))


class _Handler(BaseHTTPRequestHandler):
    server: _FakeInstantly

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = self.server.answer(self.headers.get("Authorization", ""))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PATCH = _reply

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the test reads stderr."""


@pytest.fixture(name="fake", scope="module")
def fake_fixture() -> Iterator[_FakeInstantly]:
    """A fake Instantly on 127.0.0.1 (a free port) for the whole module."""
    server = _FakeInstantly(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _client(server: _FakeInstantly, key: str = KEY) -> InstantlyClient:
    return InstantlyClient(key, base_url=f"http://127.0.0.1:{server.server_address[1]}", max_attempts=1,
                           connect_timeout=2, read_timeout=5)


def _windows(secret: str) -> set[str]:
    """Every FRAGMENT-long run of `secret`, lowercased: none may appear in any output."""
    low = secret.lower()
    return {low[i:i + FRAGMENT] for i in range(len(low) - FRAGMENT + 1)}


def _leaked(text: str, secret: str) -> list[str]:
    low = text.lower()
    return sorted(w for w in _windows(secret) if w in low)


def _error_of(server: _FakeInstantly, answer: Answer, key: str = KEY) -> InstantlyError:
    server.answer = answer
    with _client(server, key) as client, pytest.raises(InstantlyError) as caught:
        client.check_key()
    return caught.value


# --------------------------------------------------------------------------------------------------
# Case 3: a 400 that echoes `Bearer <key>` across character 300


def _echo_across_300(auth: str) -> tuple[int, bytes]:
    """A 400 without a `message` string whose JSON, as the client re-dumps it, has the echoed key end at
    character 301: a cut at 300 before scrubbing keeps the key minus its last character."""
    prefix = len('{"error": "Bad Request", "detail": "')  # 36
    pad = "x" * (300 - prefix - len(auth) + 1)
    return 400, json.dumps({"error": "Bad Request", "detail": pad + auth + " was refused"}).encode()


def test_case_3_a_key_echoed_across_the_cut_leaves_nothing(fake: _FakeInstantly,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Issue case 3: the key echoed as `Bearer <key>` across character 300 reaches neither the error, stderr
    nor a dead letter; the message is the body with `Bearer [redacted]`, cut at 300 after."""
    configure_logging("INFO")  # no secret registered: the client removes its own key
    error = _error_of(fake, _echo_across_300)
    body = json.dumps(json.loads(_echo_across_300(f"Bearer {KEY}")[1]))
    assert body[:300].endswith(KEY[:-1]) and body[300] == KEY[-1]  # the case as the issue states it
    assert isinstance(error, ValidationError) and error.http_status == 400
    assert error.server_message == body.replace(f"Bearer {KEY}", "Bearer [redacted]")[:300]
    logging.getLogger("coldsync.sync").error("Instantly refused: %s", error)
    letter = dead_letter(PhaseReport("topup"), "add", "k", email="x@example.com", error=str(error), http_status=400)
    stderr = capsys.readouterr().err
    assert "Bearer [redacted]" in stderr and "http 400" in stderr
    for text in (str(error), repr(error), stderr, letter["error_text"]):
        assert _leaked(text, KEY) == []


@pytest.mark.parametrize(("echo", "gone"), [
    (KEY, KEY),  # the bare key, no Bearer word to find it by
    (KEY[:20], KEY[:20]),  # the server cut the key itself: a fragment of 20 characters
    (KEY.upper(), KEY.upper()),  # a proxy upper-cased it
])
def test_a_bare_or_cut_key_is_removed_by_its_characters(fake: _FakeInstantly, echo: str, gone: str) -> None:
    """Without `Bearer`, the key (whole, a 20-character fragment of it, upper-cased) is found by its own runs of
    characters: the message is the body with that run replaced by `[redacted]`, cut after."""
    def answer(auth: str) -> tuple[int, bytes]:
        return 400, json.dumps({"error": "Bad Request", "token": "y" * 260 + echo + " refused"}).encode()

    error = _error_of(fake, answer)
    body = json.dumps(json.loads(answer("")[1]))
    assert error.server_message == body.replace(gone, "[redacted]")[:300]
    assert _leaked(str(error), KEY) == []


# --------------------------------------------------------------------------------------------------
# Case 4: an URL-encoded address in an error body


def test_case_4_an_url_encoded_address_is_masked(fake: _FakeInstantly, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue case 4: `alice.secret%40corp.example` in an error body is `a***@corp.example` in the error, on
    stderr and in the dead letter's error_text."""
    configure_logging("INFO")
    error = _error_of(fake, lambda auth: (400, json.dumps(
        {"statusCode": 400, "message": "lead alice.secret%40corp.example is invalid"}).encode()))
    assert error.server_message == "lead a***@corp.example is invalid"
    logging.getLogger("coldsync.sync").error("add failed: %s", error)
    letter = dead_letter(PhaseReport("topup"), "add", "k", error=str(error), http_status=400)
    stderr = capsys.readouterr().err
    assert "lead a***@corp.example is invalid" in stderr
    assert letter["error_text"] == ("request failed [GET /campaigns] http 400 server said: "
                                    "lead a***@corp.example is invalid")
    assert "alice" not in stderr and "alice" not in letter["error_text"]


# --------------------------------------------------------------------------------------------------
# The masks, one by one


@pytest.mark.parametrize("encoded", [
    "alice.secret@corp.example", "alice.secret%40corp.example", "alice.secret%2540corp.example",
    "alice.secret%u0040corp.example", "alice.secret=40corp.example", r"alice.secret\u0040corp.example",
    r"alice.secret\\u0040corp.example", r"alice.secret\U0040corp.example", r"alice.secret\x40corp.example",
    "alice.secret&#64;corp.example", "alice.secret&#064;corp.example", "alice.secret&#x40;corp.example",
    "alice.secret&commat;corp.example", "ALICE.SECRET%40CORP.EXAMPLE",
])
def test_every_encoding_of_an_address_gets_the_plain_mask(encoded: str) -> None:
    """Plain, URL (once and twice), %u, quoted-printable, JSON/JS (\\u, \\x, double-escaped) and HTML forms of
    an address, any case, all become the plain mask (first character as written, domain lowercased)."""
    assert redact(f"lead <{encoded}> refused") == f"lead <{encoded[0]}***@corp.example> refused"


@pytest.mark.parametrize("text", [
    "x=40 alone", "limit=40&offset=3", "page=40.5", "@corp.example", "a***@corp.example", "ratio 3%40 of 5",
    "see https://docs.example/api?size=40", "[redacted] and Bearer [redacted]",
])
def test_what_is_not_an_address_or_is_already_masked_stays(text: str) -> None:
    """An `=40` or `%40` with no domain after it, an `@` with no local part, and text already masked are left
    as they are (masking is idempotent)."""
    assert redact(text) == text


def _pem_block(body: str, *, kind: str = "PRIVATE KEY", end: bool = True) -> str:
    """A synthetic PEM block put together at run time (its body is no key; no key-shaped literal in the source)."""
    dashes = "-" * 5
    block = f"{dashes}BEGIN {kind}{dashes}\n{body}\n"
    return block + (f"{dashes}END {kind}{dashes}\n" if end else "")


def test_bearer_authorization_and_private_keys_are_removed_whatever_their_value() -> None:
    """Bearer tokens and Authorization values of any key, and private-key blocks (real or JSON-escaped line
    breaks, or cut before their END) are replaced; what follows them stays."""
    pem = _pem_block("AAAAsyntheticAAAA\nAAAAtestbodyAAAA")
    assert redact("sent Bearer sk_live_0123456789abcdef, then") == "sent Bearer [redacted], then"
    assert redact('{"Authorization": "Basic dXNlcjpwYXNz", "n": 1}') == '{"Authorization": "[redacted]", "n": 1}'
    assert redact(f"key {pem}tail") == "key [redacted private key]\ntail"
    assert redact(json.dumps({"private_key": pem, "x": 1})) == '{"private_key": "[redacted private key]\\n", "x": 1}'
    cut_short = _pem_block("AAAAsyntheticAAAA", kind="RSA PRIVATE KEY", end=False).replace("\n", "\\n")
    assert redact(f"key {cut_short}") == "key [redacted private key]"


def test_scrub_comes_before_the_cut_and_every_prefix_stays_clean() -> None:
    """With a limit, the key straddling the cut is removed first; any later cut of the result (dead letters
    cut at 1000, the client at 300) cannot bring a fragment back."""
    forget_secrets()
    register_secrets([KEY])
    text = "x" * 290 + KEY + " alice@corp.example"
    cut = redact(text, 300)
    assert cut == ("x" * 290 + "[redacted] a***@corp.example")[:300]
    whole = redact(text)
    assert all(_leaked(whole[:n], KEY) == [] and "alice" not in whole[:n] for n in range(len(whole) + 1))


def test_credentials_register_their_secret_fields_not_their_words(tmp_path: Any) -> None:
    """A credentials document (as JSON or as the path of its file) registers its private key (base64 body) and
    key id as secrets and itself whole only: its private key vanishes, its token URI stays readable."""
    pem_body = "AAAAsyntheticTestBodyAAAAnotAKeyAAAAexampleAAAA"
    document = json.dumps({"type": "service_account", "private_key_id": "0a1b2c3d4e5f60718293",
                           "private_key": _pem_block(pem_body),
                           "token_uri": "https://oauth2.googleapis.com/token"})
    path = tmp_path / "credentials.json"
    path.write_text(document, encoding="utf-8")
    assert secret_parts(document) == ([pem_body, "0a1b2c3d4e5f60718293"], [document])
    assert secret_parts(str(path)) == ([pem_body, "0a1b2c3d4e5f60718293"], [str(path)])
    forget_secrets()
    register_secrets([str(path)])
    assert redact(f"key body {pem_body[10:40]} via https://oauth2.googleapis.com/token") == \
        "key body [redacted] via https://oauth2.googleapis.com/token"


# --------------------------------------------------------------------------------------------------
# The property: hostile bodies through every output path


_KEY_CHARS = string.ascii_letters + string.digits + "-_"
_FILLER = "".join(c for c in string.printable if c not in "zqZQ") + "éü€İ"  # `zq` marks a local part
_ATS = ["@", "%40", "%2540", "%u0040", "=40", "\\u0040", "\\\\u0040", "\\U0040", "\\x40", "&#64;", "&#064;",
        "&#x40;", "&commat;"]
_DOMAIN = st.lists(st.text("abcdefghijklmnop", min_size=1, max_size=8), min_size=1, max_size=3).map(
    lambda labels: ".".join(labels) + ".example")


@st.composite
def _email(draw: st.DrawFn) -> str:
    local = "zq" + draw(st.text(string.ascii_lowercase + string.digits + "._-+", min_size=3, max_size=24))
    address = local + draw(st.sampled_from(_ATS)) + draw(_DOMAIN)
    return address.upper() if draw(st.booleans()) else address


@st.composite
def _key_echo(draw: st.DrawFn, key: str) -> str:
    form = draw(st.sampled_from(["whole", "bearer", "authorization", "cut_tail", "cut_head", "upper", "lower"]))
    return {"whole": key, "bearer": f"Bearer {key}", "authorization": f"Authorization: {key}",
            "cut_tail": key[:-1], "cut_head": key[3:], "upper": key.upper(), "lower": key.lower()}[form]


@st.composite
def _body(draw: st.DrawFn) -> tuple[str, str]:
    """(key, body): filler with the key and addresses at random places; as text, or as a JSON error body with
    or without a `message` string (the client's two paths), ASCII-escaped or not."""
    key = draw(st.text(_KEY_CHARS, min_size=20, max_size=48))
    pieces = draw(st.lists(st.one_of(st.text(_FILLER, max_size=120), _email(), _key_echo(key)),
                           min_size=1, max_size=10))
    glue = draw(st.sampled_from(["", " ", "\n", ", "]))
    text = glue.join(pieces)
    shape = draw(st.sampled_from(["text", "json_message", "json_other"]))
    if shape == "text":
        return key, text
    split = draw(st.integers(0, len(pieces)))  # between pieces: an address cut in two is no longer one
    obj: dict[str, Any] = {"statusCode": 400, "error": glue.join(pieces[:split]),
                           "details": [glue.join(pieces[split:])]}
    if shape == "json_message":
        obj["message"] = text
    return key, json.dumps(obj, ensure_ascii=draw(st.booleans()))


def _every_output(fake: _FakeInstantly, key: str, body: str, limit: int) -> dict[str, str]:
    """Each path a string takes out of the process, fed `body` (and the client's error built from it)."""
    fake.answer = lambda auth: (400, body.encode())
    with _client(fake, key) as client:
        try:
            client.check_key()
            raise AssertionError("the fake answers 400")
        except InstantlyError as exc:
            error = exc
    made = InstantlyError(body, method="POST", path="/leads/add", server_message=body, http_status=400)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("coldsync.redaction_property")
    logger.handlers, logger.propagate = [handler], False
    logger.error("Instantly answered: %s (%s)", body, error)
    try:
        raise RuntimeError(body)
    except RuntimeError:
        logger.exception("failed on %r", body)
    report = RunReport(run_id="r1", mode="live", warehouse="duckdb", started_at="2026-06-01T00:00:00Z",
                       outcome="failed", error=body, warnings=[body, str(error)])
    report.phase("topup").notes.append(body)
    ctx = cast(RunContext, SimpleNamespace(
        report=report, now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC), baseline=(0, 0, 0, 0),
        client=SimpleNamespace(stats=SimpleNamespace(requests=3)),
        store=SimpleNamespace(warehouse=SimpleNamespace(stats=SimpleNamespace(total=5)))))
    row = _run_log_row(ctx)
    status = StatusReport(
        warehouse="duckdb", now="2026-06-01T00:00:00+00:00", clock="current time", ready_by_route={}, state=[],
        inventory_tracked=0, inventory_cap=1, last_measured_inventory=None, last_measured_at=None, dnc_by_source=[],
        cooldown_days=1, in_cooldown=0, leaving_cooldown_in_7_days=0, open_dead_letters=1,
        dead_letters_24h=[{"phase": "topup", "operation": "add", "http_status": 400, "failures": 1, "still_open": 1,
                           "resolved": 0, "given_up": 0, "example_error": body}],
        runs=[{"started_at": "2026-06-01", "mode": "live", "outcome": "failed", "drained": 0, "added": 0,
               "dead_letters": 1, "inventory_before": 0, "inventory_after": 0, "duration_seconds": 1.0,
               "error_text": body}])
    checks = Validation()
    checks.add("instantly", "fail", body, body)
    phase = PhaseReport("topup")
    return {
        "redact": redact(body), "redact with limit": redact(body, limit),
        "client error": str(error), "client error repr": repr(error), "server message": error.server_message,
        "built error": str(made), "built error repr": repr(made),
        "log": stream.getvalue(),
        "dead letter (client error)": str(dead_letter(phase, "add", "k", error=str(error))["error_text"]),
        "dead letter (raw body)": str(dead_letter(phase, "add", "k", error=body)["error_text"]),
        "run log error_text": str(row["error_text"]), "run log summary_json": str(row["summary_json"]),
        "summary text": report.render_text(), "summary markdown": report.render_markdown(),
        "summary json": report.to_json(),
        "status text": status.render("text"), "status markdown": status.render("markdown"),
        "status json": status.render("json"),
        "validate text": checks.render_text(), "validate json": checks.to_json(),
        "validate markdown": checks.render_markdown(),
    }


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_body(), limit=st.integers(0, 400))
def test_no_output_path_lets_out_the_key_or_an_address(fake: _FakeInstantly, case: tuple[str, str],
                                                       limit: int) -> None:
    """Property: a body with the key (whole, cut, any case, after Bearer or Authorization) and addresses (any
    encoding, any case) at random places comes out of no path (redact at any limit, the client's error, a log
    record and its traceback, a dead letter, the run-log row, the run summary, the status report, the validate
    checks) with any 8-character run of the key or any character pair `zq` that begins every local part; and
    redaction is idempotent."""
    key, body = case
    forget_secrets()
    register_secrets([key])
    try:
        outputs = _every_output(fake, key, body, limit)
    finally:
        forget_secrets()
    for where, text in outputs.items():
        assert _leaked(text, key) == [], where
        assert "zq" not in text.lower(), where
    assert len(outputs["redact with limit"]) <= limit
    assert redact(outputs["redact"]) == outputs["redact"]  # idempotent: a second pass (logs of errors) changes nothing
    json.loads(outputs["summary json"])  # still JSON after redaction
    json.loads(outputs["run log summary_json"])


def test_other_libraries_records_and_warnings_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    """A record of another library's logger and a Python warning reach stderr scrubbed (logging's last resort)."""
    import warnings

    configure_logging("INFO", [KEY])
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a command: nobody configured the root logger
    try:
        logging.getLogger("some.library").warning("retrying with Bearer %s for zqa%%40corp.example", KEY)
        # pytest records warnings itself; the text Python's own showwarning would print is formatwarning's.
        sys.stderr.write(warnings.formatwarning(f"odd answer for zqb@corp.example, key {KEY}", UserWarning, "x.py", 1))
    finally:
        root.handlers[:] = saved
    err = capsys.readouterr().err
    assert "retrying with Bearer [redacted] for z***@corp.example" in err
    assert "odd answer for z***@corp.example, key [redacted]" in err
    assert _leaked(err, KEY) == [] and "zqa" not in err and "zqb" not in err


@pytest.mark.parametrize(("text", "expected"), [
    ("bounce for josé@corp.example", "bounce for j***@corp.example"),
    ("bounce for zoë.secret@corp.example", "bounce for z***@corp.example"),
    ("bounce for alice@bücher.example", "bounce for a***@bücher.example"),
    ('{"email":"jos\\u00e9.secret@corp.example"}', '{"email":"j***@corp.example"}'),
    ("full-width ｚｑ＠corp.example", "full-width ｚ***@corp.example"),
])
def test_internationalized_addresses_are_masked(text: str, expected: str) -> None:
    """Addresses in other scripts (RFC 6531), also JSON-escaped or with a full-width @, get the plain mask."""
    assert redact(text) == expected


def test_a_url_encoded_or_json_escaped_key_is_removed() -> None:
    """A key echoed URL-encoded (in a query) or JSON-escaped (`\\/`) is removed like the key itself."""
    import urllib.parse

    key = "ab+/cd=e:fg/hij+klm/nop=qrs:tuv"  # every run of 8 plain characters is broken by an encoded one
    encoded = urllib.parse.quote(key, safe="")
    assert redact(f"GET /x?api_key={encoded}&y=1", secrets=[key]) == "GET /x?api_key=[redacted]&y=1"
    escaped = json.dumps({"key": key}).replace("/", "\\/")
    assert redact(escaped, secrets=[key]) == '{"key": "[redacted]"}'


def test_a_job_summary_past_githubs_limit_is_cut_with_a_note(tmp_path: Any) -> None:
    """GitHub drops a step summary over 1 MiB whole: ours is cut below it, says so, and stays scrubbed."""
    from coldsync.report import GITHUB_SUMMARY_LIMIT, append_github_summary
    target = tmp_path / "summary.md"
    assert append_github_summary("| zq@corp.example |\n" * 100_000, {"GITHUB_STEP_SUMMARY": str(target)})
    text = target.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) < GITHUB_SUMMARY_LIMIT
    assert text.endswith("(cut here: the summary passed GitHub's 1 MiB job-summary limit; the run log has it whole)\n")
    assert text.startswith("| z***@corp.example |\n") and "zq@" not in text


def test_an_address_starting_with_a_json_escape_is_masked_idempotently() -> None:
    """`\\u00e9zq000@a.example` (a JSON-escaped first letter, found by the property above) masks to `~***@a.example`,
    and a second pass leaves it so (the backslash kept before the stars made the second pass mask `***` again)."""
    once = redact("to \\u00e9zq000@a.example now")
    assert once == "to ~***@a.example now"
    assert redact(once) == once
