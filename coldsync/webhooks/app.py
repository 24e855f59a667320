"""The webhook receiver: Instantly's deliveries into `ops_instantly_events`, built on Google's functions-framework
(a Flask request in, a response out), so that Cloud Run functions runs it as it is and `python -m coldsync.webhooks`
runs the very same function locally against DuckDB.

Nothing happens at import time beyond defining `receive`: the settings, the logging and the warehouse are set up
once, on the first delivery (thread-safe), or up front by `python -m coldsync.webhooks`, which refuses to start
with a bad setting.

Answers (the body is JSON; nothing is written unless the status says `stored`):

| request                                                         | answer                                          |
|-----------------------------------------------------------------|-------------------------------------------------|
| any method but POST                                             | 405 {"error": ...}                              |
| no X-Coldsync-Webhook-Secret header, or not the secret (checked | 401 {"error": ...}                              |
| before the body is read)                                        |                                                 |
| Content-Length over MAX_BODY_BYTES (1 MiB: checked before the   | 413 {"error": "body: over the ... byte limit"}  |
| body is read), or a body found longer while reading it (chunked |                                                 |
| or a Content-Length that lies: the read stops 1 byte past it)   |                                                 |
| the sender stops or disconnects before the body is complete     | 408 {"error": "body: ..."} (locally: after      |
| (the local server's socket read timeout, 10 s)                  | READ_TIMEOUT_SECONDS of silence)                |
| not a JSON object, a required field missing or of a wrong type  | 400 {"error": "<field>: <problem>", "field": ..} |
| or out of range (step/variant over INT64, a time before 1970 or |                                                 |
| past 9999, NaN/Infinity, JSON nested too deeply, a lone         |                                                 |
| surrogate escape in a text field)                               |                                                 |
| an event type coldsync does not consume (CONSUMED_EVENTS)       | 200 {"status": "ignored", "reason": ...}        |
| a campaign the sync does not manage                             | 200 {"status": "ignored", "reason": ...}        |
| stored (also a repeat: the dedup key collapses it)              | 200 {"status": "stored"}                        |
| warehouse busy (a sync holds the DuckDB file past 0.7 s),       | 503 {"error": ...}, Retry-After: 5 (Instantly   |
| unreachable, its config table unreadable, or this row's insert  | retries; the sync's backfill is the safety net) |
| failed (a row batched with it that fails does not fail it: the  |                                                 |
| batch is then written row by row, coldsync.webhooks.sink)       |                                                 |
| the receiver's own settings are bad (e.g. no secret)            | 500 {"error": ...}; the log names the setting   |
| anything unexpected (a bug)                                     | 500 {"error": "internal error"}; the log names  |
|                                                                 | the exception's type only, never an HTML page   |

Ignored deliveries answer 2xx on purpose: an error answer makes Instantly retry, and a webhook that keeps failing is
disabled (the spec's Webhook.status -1 with timestamp_error), which would also stop the deliveries coldsync needs.

Authentication: Instantly signs nothing (the spec has no signature field); each webhook is registered with the
custom header X-Coldsync-Webhook-Secret holding INSTANTLY_WEBHOOK_SECRET (at least 32 characters; generate it with
`python -c "import secrets; print(secrets.token_urlsafe(32))"`), compared in constant time (hmac.compare_digest on
bytes). The secret is never logged (coldsync.redact removes it from every text).

Rotating the secret without refusing a delivery: the receiver also accepts INSTANTLY_WEBHOOK_SECRET_PREVIOUS when it
is set (same strength rule; the header is compared with both secrets every time, so the answer's timing does not tell
which one matched). In this order:
1. on the receiver, set INSTANTLY_WEBHOOK_SECRET_PREVIOUS to the old secret and INSTANTLY_WEBHOOK_SECRET to the new
   one, and deploy (Cloud Run: a new Secret Manager secret or version for each; both are accepted from now on);
2. where the sync runs, set INSTANTLY_WEBHOOK_SECRET to the new secret and run `sync_once.py --webhooks register URL`:
   it PATCHes the header of the existing webhooks (coldsync.webhooks.ops), so Instantly sends the new secret;
3. remove INSTANTLY_WEBHOOK_SECRET_PREVIOUS from the receiver and deploy again: the old secret is refused (401).

Deploy: Cloud Run functions, 2nd gen, from the repository root, with the one `gcloud functions deploy` command and
the least-privilege service account of docs/OPERATIONS.md section 12.2 (kept there only, so the two cannot drift).
`main.py` at the root re-exports `receive`, because the Python runtime loads the function from `main.py` at the
source's root and puts that directory on sys.path, which is what lets it import `coldsync`; `.gcloudignore` keeps
data/, .env and config/secrets out of the upload. --allow-unauthenticated because Instantly cannot present a Google
identity: the secret header is the authentication.

Assumed where the spec is silent: Instantly sends the registered custom header with every delivery, and treats any
2xx as delivered and anything else (or no answer) as failed; a delivery is one JSON object (developer guide
"Webhook events").
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from typing import IO, TYPE_CHECKING, Any

import functions_framework

from coldsync.redact import mask_email
from coldsync.webhooks.events import MAX_BODY_BYTES, SECRET_HEADER, PayloadError, ignore_reason, parse_body

if TYPE_CHECKING:
    import flask

    from coldsync.settings import Settings, SettingsSources
    from coldsync.webhooks.sink import EventSink

log = logging.getLogger("coldsync.webhooks")

"""The custom header each webhook is registered with (POST /api/v2/webhooks, `headers`), holding the secret."""
RETRY_AFTER_SECONDS = 5
READ_CHUNK = 64 * 1024

Answer = tuple[dict[str, Any], int, dict[str, str]]

UNREAD_STATUSES = frozenset({401, 405, 408, 413, 500})
"""Answers that may be given before the body was read whole: sent as streamed responses (see `respond`)."""

INTERNAL_ERROR: Answer = ({"error": "internal error"}, 500, {})
"""The answer to anything unexpected (a bug): JSON like every other answer, never werkzeug's HTML page."""


def read_capped(stream: IO[bytes], limit: int) -> bytes | None:
    """The whole body from `stream`, or None as soon as it is longer than `limit` bytes (at most limit + 1 bytes are
    read: a chunked body or a lying Content-Length cannot make the receiver read more)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return None if total > limit else b"".join(chunks)


class Receiver:
    """Answers deliveries (the table in the module docstring). `secret` is INSTANTLY_WEBHOOK_SECRET, `previous`
    INSTANTLY_WEBHOOK_SECRET_PREVIOUS ("" when no rotation is under way); `sink` writes the accepted ones
    (coldsync.webhooks.sink)."""

    def __init__(self, secret: str, sink: EventSink, *, previous: str = "",
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._secrets = tuple(value.encode("utf-8") for value in (secret, previous) if value)
        self.sink = sink
        self.max_body_bytes = max_body_bytes

    def authentic(self, presented: str | None) -> bool:
        """Whether the header holds the secret (or the previous one): compared with every accepted secret each time,
        each comparison constant time in the secret's content (hmac.compare_digest), so the timing tells neither
        the secret nor which one matched."""
        if presented is None:
            return False
        candidate = presented.encode("latin-1", errors="replace")
        matches = [hmac.compare_digest(candidate, secret) for secret in self._secrets]  # all, never short-circuited
        return any(matches)

    def handle(self, request: flask.Request) -> Answer:
        """The answer to one delivery: (JSON body, status, headers). Never raises: anything unexpected is logged
        once with the exception's type only (no payload, address or secret can be in the line) and answered
        INTERNAL_ERROR."""
        try:
            return self._answer(request)
        except Exception as exc:
            log.error("webhook failed: unexpected %s (answered 500, nothing more is logged about it)",
                      type(exc).__name__)
            return INTERNAL_ERROR

    def _answer(self, request: flask.Request) -> Answer:
        from werkzeug.exceptions import ClientDisconnected

        from coldsync.webhooks.sink import WarehouseUnavailable

        started = time.monotonic()
        if request.method != "POST":
            return {"error": "POST only"}, 405, {"Allow": "POST"}
        if not self.authentic(request.headers.get(SECRET_HEADER)):
            log.warning("webhook refused: missing or wrong %s header (nothing written)", SECRET_HEADER)
            return {"error": f"missing or wrong {SECRET_HEADER} header"}, 401, {}
        too_big: Answer = {"error": f"body: over the {self.max_body_bytes} byte limit"}, 413, {}
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            log.warning("webhook refused: Content-Length %d over the limit (nothing read)", request.content_length)
            return too_big
        try:
            body = read_capped(request.stream, self.max_body_bytes)
        except ClientDisconnected:  # the connection closed, or (locally) the socket read timed out
            log.warning("webhook refused: the sender stopped before the body was complete (nothing written)")
            return {"error": "body: the sender stopped before the body was complete"}, 408, {}
        if body is None:
            log.warning("webhook refused: body over the %d byte limit", self.max_body_bytes)
            return too_big
        try:
            row = parse_body(body)
        except PayloadError as exc:
            log.warning("webhook refused: %s", exc)
            return {"error": str(exc), "field": exc.field}, 400, {}
        who = mask_email(row.email)
        if (reason := ignore_reason(row, None)) is not None:
            log.info("webhook %s for %s ignored: %s", row.event_type, who, reason)
            return {"status": "ignored", "reason": f"{reason}: {row.event_type}"}, 200, {}
        try:
            outcome = self.sink.store(row, started)
        except WarehouseUnavailable as exc:
            log.warning("webhook %s for %s not stored (503, Instantly retries): %s", row.event_type, who, exc)
            return ({"error": "the warehouse is unavailable, retry later"}, 503,
                    {"Retry-After": str(RETRY_AFTER_SECONDS)})
        elapsed = (time.monotonic() - started) * 1000
        if not outcome.stored:
            log.info("webhook %s for %s ignored: %s", row.event_type, who, outcome.reason)
            return {"status": "ignored", "reason": outcome.reason}, 200, {}
        log.info("webhook %s for %s stored in %.0f ms", row.event_type, who, elapsed)
        return {"status": "stored"}, 200, {}

    def close(self) -> None:
        self.sink.close()


class ReceiverConfigError(Exception):
    """The receiver's settings are bad: the message names each setting and its fix (never a secret's value)."""


class _FirstOpenOnly(logging.Filter):
    """Lets the warehouse's "Using ..." line through once: on DuckDB the receiver opens the file per burst of
    deliveries, and one line per burst would bury the deliveries' own lines."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Using "):
            return True
        first, self.seen = not self.seen, True
        return first


def build_receiver(sources: SettingsSources, settings: Settings) -> Receiver:
    """The receiver the settings describe: the warehouse opened as the sync opens it (coldsync.warehouse.connect:
    BigQuery when BQ_PROJECT is set, kept open; else the DuckDB file, opened per burst of deliveries), the managed
    campaigns as the sync resolves them. Raises SettingsError when INSTANTLY_WEBHOOK_SECRET is missing or weak, or
    INSTANTLY_WEBHOOK_SECRET_PREVIOUS is set and weak."""
    from functools import partial

    from coldsync.settings import SettingsError, webhook_secret_problem
    from coldsync.warehouse import connect
    from coldsync.webhooks.sink import CampaignCache, EventSink, WarehouseSession, managed_campaign_ids

    problems = [problem for name, required in (("instantly_webhook_secret", True),
                                               ("instantly_webhook_secret_previous", False))
                if (problem := webhook_secret_problem(getattr(settings, name), settings.origins.get(name, "default"),
                                                      required=required, name=name)) is not None]
    if problems:
        raise SettingsError(problems)
    warehouse_log = logging.getLogger("coldsync.warehouse")
    if not any(isinstance(f, _FirstOpenOnly) for f in warehouse_log.filters):
        warehouse_log.addFilter(_FirstOpenOnly())
    from coldsync.warehouse.duckdb import someone_waits

    session = WarehouseSession(partial(connect, settings, announce_wait=False), keep_open=settings.uses_bigquery,
                               yield_to=None if settings.uses_bigquery else partial(someone_waits,
                                                                                     settings.duckdb_file()))
    sink = EventSink(session, CampaignCache(partial(managed_campaign_ids, sources)))
    return Receiver(settings.instantly_webhook_secret.reveal(), sink,
                    previous=settings.instantly_webhook_secret_previous.reveal())


def receiver_from_environment() -> Receiver:
    """Settings from every layer but flags (environment, .env, config/secrets; the config table is read per
    delivery batch for the campaigns), logging with the secrets registered, then build_receiver. Raises
    ReceiverConfigError."""
    from coldsync.logs import configure_logging
    from coldsync.settings import SettingsError, read_sources, resolve

    try:
        sources = read_sources()
        settings = resolve(sources)
        configure_logging(settings.log_level, settings.secrets())
        return build_receiver(sources, settings)
    except SettingsError as exc:
        raise ReceiverConfigError(str(exc)) from None


def respond(answer: Answer) -> flask.Response:
    """The HTTP response of an answer: compact JSON with its Content-Length. An answer given before the body was read
    whole (UNREAD_STATUSES) is a streamed response, because functions-framework reads the whole request body after
    any other response (its after-request hook `read_request`): a refused body would be read, unbounded, after all.
    The server in front drains what is left within its own bounds (Cloud Run's front end; locally the lingering
    close of coldsync.webhooks.__main__)."""
    import flask

    body, status, headers = answer
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
    content = iter([data]) if status in UNREAD_STATUSES else data
    return flask.Response(content, status=status, headers={**headers, "Content-Length": str(len(data))},
                          mimetype="application/json")


_lock = threading.Lock()
_receiver: Receiver | None = None


def install(receiver: Receiver | None) -> Receiver | None:
    """Make `receiver` the one `receive` answers with (python -m coldsync.webhooks, tests); returns the previous."""
    global _receiver
    with _lock:
        previous, _receiver = _receiver, receiver
    return previous


def current_receiver() -> Receiver:
    """The installed receiver, built from the environment on first use (once, thread-safe). Raises
    ReceiverConfigError (not kept: the next delivery tries again)."""
    global _receiver
    with _lock:
        if _receiver is None:
            _receiver = receiver_from_environment()
        return _receiver


@functions_framework.http
def receive(request: flask.Request) -> flask.Response:
    """The Cloud Run function (entry point `receive`): one Instantly delivery in, its answer out."""
    try:
        receiver = current_receiver()
    except ReceiverConfigError as exc:
        from coldsync.redact import redact

        log.error("webhook receiver misconfigured: %s", redact(str(exc)))
        return respond(({"error": "the receiver is misconfigured; its log says which setting"}, 500, {}))
    except Exception as exc:  # building it failed unexpectedly: JSON, the type only (as Receiver.handle)
        log.error("webhook receiver could not start: unexpected %s (answered 500)", type(exc).__name__)
        return respond(INTERNAL_ERROR)
    return respond(receiver.handle(request))
