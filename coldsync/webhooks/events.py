"""Instantly webhook deliveries as rows of `ops_instantly_events`: the pure part (no I/O).

What a delivery looks like is not in the OpenAPI document (`WebhookEvent.payload` is a free object); it is in
Instantly's developer guide "Webhook events" (developer.instantly.ai/guides/webhook-events): base fields always
present `timestamp` (ISO time of the event), `event_type`, `workspace`, `campaign_id`, `campaign_name`; optional
`lead_email`, `email_account`, `step`, `variant` (both from 1), `is_first`, email and reply texts, and the lead's own
data merged in as extra keys. The event type names are the `event_type` enum of the spec's `Webhook` schema.

Assumed where the guide is silent (docs/OPERATIONS.md repeats these):
- a delivery carries no lead id; the sync finds the lead by the email key in `ops_inst_state`. When a key named
  `lead_id` or `id` holding a string comes in (lead data merged in), it is kept as `lead_id`, never trusted alone;
- `timestamp` may end in `Z` or carry an offset; one without a zone is UTC;
- a retried delivery repeats the same payload, so its dedup key (below) is the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from coldsync.suppression import address_key

UNSUBSCRIBED = "lead_unsubscribed"
BOUNCED = "email_bounced"
REPLIED = "reply_received"

SUPPRESSING_EVENTS: tuple[str, ...] = (UNSUBSCRIBED, BOUNCED)
"""Event types that put the address on the do-not-contact list the moment they land (the eligibility rule reads
them beside ops_dnc: coldsync.warehouse.schema.DNC_KEY_CTES)."""

CONSUMED_EVENTS: tuple[str, ...] = (UNSUBSCRIBED, BOUNCED, REPLIED)
"""The event types coldsync registers webhooks for and stores; a reply drains the lead at the next run so its
sequence does not go on."""

MAX_BODY_BYTES = 1024 * 1024
"""Largest delivery accepted (1 MiB). A reply event carries the reply's text and HTML; mail systems commonly cap
a whole message near 25 MB, but a reply body past 1 MiB is not something a cold-email reply holds; a bigger body is
refused (413) before it is parsed."""

SECRET_HEADER = "X-Coldsync-Webhook-Secret"
"""The custom header each coldsync webhook carries (Webhook.headers), holding INSTANTLY_WEBHOOK_SECRET: deliveries
carry no signature, so this shared secret is what the receiver authenticates."""

IGNORED_TYPE = "event type not consumed"
IGNORED_CAMPAIGN = "campaign not managed"

INT64_MAX = 2**63 - 1
"""Largest `step` / `variant` stored: the columns are INT64 on BigQuery (BIGINT on DuckDB); a bigger number would fail
the insert and, before it was refused here, the insert of every delivery batched with it."""

EARLIEST_EVENT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""Earliest `timestamp` accepted. BigQuery's TIMESTAMP goes from year 1 to 9999 (datetime's own range ends at 9999
too); an Instantly event before 1970 (the Unix epoch) is not a real event, so it is refused (assumed: the guide gives
no range)."""

DELIVERED_BY_RECEIVER = "receiver"
DELIVERED_BY_BACKFILL = "backfill"


class PayloadError(ValueError):
    """A delivery that is not a usable Instantly webhook payload: `field` names what is wrong, the message says
    what was expected (the receiver answers 400 with it; nothing is written)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class EventRow:
    """One row of ops_instantly_events (coldsync.warehouse.schema.EVENTS), before `received_at` is stamped."""

    event_type: str
    email: str | None  # lead_email as sent
    email_key: str | None  # coldsync.suppression.address_key of it
    campaign_id: str | None
    lead_id: str | None
    event_at: dt.datetime | None
    step: int | None
    variant: int | None
    dedup_key: str
    payload: str  # the JSON text exactly as received

    def as_row(self, received_at: dt.datetime, delivered_by: str) -> dict[str, Any]:
        """The table row: every column of EVENTS."""
        return {"received_at": received_at, "event_type": self.event_type, "email": self.email,
                "email_key": self.email_key, "campaign_id": self.campaign_id, "lead_id": self.lead_id,
                "event_at": self.event_at, "step": self.step, "variant": self.variant, "dedup_key": self.dedup_key,
                "delivered_by": delivered_by, "payload": self.payload}


def dedup_key(event_type: str, email_key: str | None, campaign_id: str | None, event_at: dt.datetime | None,
              step: int | None, variant: int | None) -> str:
    """Hex SHA-256 of the event type, the email's suppression key, the campaign (lower-cased), the event time (UTC,
    ISO, to the microsecond) and step/variant, joined by a unit separator (0x1f) with "" for a missing part: the
    same event delivered twice (a retry, the backfill after a live delivery) has the same key; two events differ
    in one."""
    when = event_at.astimezone(dt.UTC).isoformat() if event_at is not None else ""
    parts = (event_type, email_key or "", (campaign_id or "").lower(), when,
             "" if step is None else str(step), "" if variant is None else str(variant))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _text(payload: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = payload.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise PayloadError(field, "missing: every Instantly webhook payload carries it")
        return None
    if not isinstance(value, str):
        raise PayloadError(field, f"expected a string, got {type(value).__name__}")
    return _unicode(value, field).strip()


def _encodes(value: str) -> bool:
    """Whether `value` is valid Unicode: not when it holds a lone surrogate (a JSON escape such as \\ud800 without
    its pair decodes to one), which no UTF-8 column, regex or log line can take."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unicode(value: str, field: str) -> str:
    """`value` when it _encodes, else PayloadError naming `field`."""
    if not _encodes(value):
        raise PayloadError(field, "holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF)")
    return value


def _count(payload: Mapping[str, Any], field: str) -> int | None:
    """A whole number in 0..INT64_MAX (an integral float such as 2.0 counts as 2), or None when absent. Raises
    PayloadError naming `field` for anything else: a string, a bool, a fraction, a negative number, a number over
    INT64_MAX, or a non-finite float (`1e400` decodes to infinity)."""
    value = payload.get(field)
    if value is None:
        return None
    problem = f"expected a whole number from 0 to {INT64_MAX} (Instantly counts steps from 1), got {repr(value)[:40]}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(field, problem)
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise PayloadError(field, problem)
    number = int(value)
    if not 0 <= number <= INT64_MAX:
        raise PayloadError(field, problem)
    return number


def parse_time(value: str, field: str = "timestamp") -> dt.datetime:
    """An ISO 8601 time as an aware UTC datetime (no zone: UTC), from EARLIEST_EVENT (1970-01-01) to the end of
    9999 UTC. Raises PayloadError naming `field` for any other text, or a time out of that range (one whose offset
    takes it past year 1 or 9999 included)."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise PayloadError(field, f"expected an ISO 8601 time such as 2026-11-30T09:00:00.000Z, got {value[:40]!r}"
                           ) from None
    out_of_range = PayloadError(field, f"expected a time from {EARLIEST_EVENT:%Y-%m-%d} to 9999-12-31 UTC, got "
                                       f"{value[:40]!r}")
    try:
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except OverflowError:  # an offset that moves year 1 or 9999 out of datetime's range
        raise out_of_range from None
    if when < EARLIEST_EVENT:
        raise out_of_range
    return when


def parse_payload(payload: object, raw: str) -> EventRow:
    """A decoded delivery as an EventRow. `raw` is its JSON text as received (kept unchanged).

    Raises PayloadError (field and problem) when it is not an object, lacks `event_type`, `timestamp` or
    `campaign_id`, has a field of the wrong type, or is a lead event (every consumed type) without a usable
    `lead_email`. Any event type is parsed; which are stored is the caller's choice (CONSUMED_EVENTS)."""
    if not isinstance(payload, Mapping):
        raise PayloadError("body", f"expected a JSON object, got {type(payload).__name__}")
    event_type = _text(payload, "event_type", required=True)
    assert event_type is not None
    when_text = _text(payload, "timestamp", required=True)
    assert when_text is not None
    event_at = parse_time(when_text)
    campaign_id = _text(payload, "campaign_id", required=True)
    email = _text(payload, "lead_email", required=event_type in CONSUMED_EVENTS)
    key = address_key(email) if email is not None else None
    if email is not None and key is None:
        raise PayloadError("lead_email", "not a usable email address")
    lead_id = None
    for field in ("lead_id", "id"):
        value = payload.get(field)
        if isinstance(value, str) and value.strip() and _encodes(value):  # lead data: a bad one is not a reason
            lead_id = value.strip()                                        # to refuse the event
            break
    step, variant = _count(payload, "step"), _count(payload, "variant")
    return EventRow(event_type=event_type, email=email, email_key=key, campaign_id=campaign_id, lead_id=lead_id,
                    event_at=event_at, step=step, variant=variant,
                    dedup_key=dedup_key(event_type, key, campaign_id, event_at, step, variant), payload=raw)


def ignore_reason(row: EventRow, managed: Collection[str] | None) -> str | None:
    """Why a parsed delivery is not stored (IGNORED_TYPE: not in CONSUMED_EVENTS; IGNORED_CAMPAIGN: its campaign
    is not one of `managed`, the lower-cased campaign ids the sync manages; None skips that part), or None to store
    it. The receiver and the backfill both ask this, so they store the same events."""
    if row.event_type not in CONSUMED_EVENTS:
        return IGNORED_TYPE
    if managed is not None and (row.campaign_id or "").lower() not in managed:
        return IGNORED_CAMPAIGN
    return None


def _no_constant(name: str) -> object:
    """json.loads' parse_constant: NaN, Infinity and -Infinity are not JSON (RFC 8259), though Python accepts them."""
    raise PayloadError("body", f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def parse_body(body: bytes) -> EventRow:
    """A delivery's raw body (UTF-8 JSON) as an EventRow. Raises PayloadError when it is over MAX_BODY_BYTES, not
    UTF-8 JSON (NaN and Infinity included), nested too deeply for the decoder (Python's recursion limit: a body of
    a few thousand `[` is under the byte limit), or not a payload (parse_payload)."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError("body", f"{len(body)} bytes, over the {MAX_BODY_BYTES} byte limit")
    try:
        text = body.decode("utf-8")
        decoded = json.loads(text, parse_constant=_no_constant)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError("body", "JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("body", f"not UTF-8 JSON ({type(exc).__name__})") from None
    return parse_payload(decoded, text)
