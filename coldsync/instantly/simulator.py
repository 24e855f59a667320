"""A local, stateful Instantly API V2 server for tests, the demo and benchmarks (stdlib only).

Instantly has no sandbox, so coldsync ships this stand-in. It answers the operations coldsync uses
with the real shapes (held to Instantly's OpenAPI document through `coldsync.instantly.contract`
and to the recorded real responses), enforces the key, the rate limits and the plan's lead limit,
and runs a deterministic, seeded lead lifecycle on a simulated clock that only moves when told to
(`advance(days)`). Faults (errors, 429 storms, stalls, CDN pages, broken bodies, partial rejection)
can be injected per endpoint, with a seeded RNG so runs repeat.

Lead lifecycle (what the sync sees in lead objects; `status`, `email_reply_count`,
`lt_interest_status`; times move with the campaign's ACTIVE time only: paused campaigns send nothing):
    completed      every step sent, then status 3                      FILTER_VAL_COMPLETED
    replied        a real reply: email_reply_count 1, lt_interest_status 1/-1/2/-2 or absent,
                   status 3 at once (stop on reply)                     FILTER_VAL_REPLIED + COMPLETED
    out_of_office  an auto-reply: email_reply_count 1, lt_interest_status 0, status stays 1
                   while the steps go on, then status 3                 FILTER_LEAD_OUT_OF_OFFICE,
                                                                        FILTER_VAL_REPLIED (!), and
                                                                        COMPLETED once ended
    bounced        status -1 after the first (rarely second) send      FILTER_VAL_BOUNCED
    unsubscribed   status -2 after some send                            FILTER_VAL_UNSUBSCRIBED
    skipped        status -3 at the first step                          FILTER_VAL_SKIPPED
    stays_active   first step sent, then nothing: status 1 forever      FILTER_VAL_ACTIVE
FILTER_VAL_REPLIED matches any lead with email_reply_count >= 1, auto-replies included: the filter
cannot tell a real reply from an out-of-office, `lt_interest_status == 0` can.

Analytics come from the same timeline: every send, open, reply, bounce, unsubscribe and completion
is also counted per campaign and per UTC day of the simulated clock (`daily_counters`), which
`GET /campaigns/analytics/daily` lists and a dated `GET /campaigns/analytics` sums; `record_daily`
adds synthetic days (e.g. a bounce spike). `GET /campaigns/{id}/sending-status` is derived from
the campaign status, its leads and its (configurable) sending accounts. Campaign settings
(`set_campaign_settings`) are only reported: they do not change the lifecycle.

Outcome policies (issue #13), all off unless a test asks for them:
- Interest statuses set by reps: `set_interest_status(lead_id, value)` (any time, also after the
  sequence ended; `POST /leads/update-interest-status` does the same by email), custom labels from
  `create_lead_label`, and `reps=RepBehaviour(...)` for seeded reps that set (and move on) the
  status of leads that replied.
- Subsequences (`create_subsequence`, `POST /leads/subsequence/move|remove`, or picked up when a
  lead's interest status matches the subsequence's `crm_status` condition). See
  `_enter_subsequence` for the lead `status` while in a subsequence and after.
- `POST /leads/move` to a campaign or a list (`POST /lead-lists` makes one) as a background job that
  `GET /background-jobs/{id}` reports: `pending`, then `in-progress`, then `success` (or `failed`,
  `fail_next_jobs`); it takes effect when it completes (`set_job_timing`: after N polls or D days).

Webhooks (issue #18; official spec: Webhook, WebhookEvent and the /webhooks, /webhook-events operations):
- `POST|GET /webhooks`, `GET|PATCH|DELETE /webhooks/{id}`, `POST /webhooks/{id}/resume|test`,
  `GET /webhooks/event-types` and `GET /webhook-events` answer the spec's shapes; `webhooks_in_plan=False`
  (or `set_webhooks_in_plan`) makes every one of them answer 402, as a plan without webhooks would.
- When a lead of a campaign unsubscribes, bounces or replies (the lifecycle of `advance`, or `finish_lead`),
  every active webhook subscribed to that event type (or to `all_events`) whose `campaign` is null or the
  lead's campaign gets the guide's payload (`_webhook_payload`) POSTed to its `target_hook_url` with its
  `headers`, from a delivery thread of its own (per webhook, in order; request handling never waits).
  Out-of-office auto-replies are not delivered (the guide names them `auto_reply_received`, a type the
  spec's enum lacks).
- Each attempt is listed as one WebhookEvent; the attempts of one event share `retry_group_id`, and
  `retry_count` is the attempt's number from 0 (so a failed attempt that a retry delivered later stays
  listed with `success` false). Its `timestamp_created` is the simulated clock at the attempt (which real
  time does not move), `timestamp_next_retry` that plus the retry delay; listings are in id order, oldest
  first (the real order is not documented). A failed attempt (not 2xx, refused, timed out) is retried
  after each of `webhook_retry_delays` (default 10, 10, 10 s: "3 retries within about 30 seconds", as
  third-party write-ups describe Instantly; tests pass a few hundredths). After
  `webhook_disable_after` (default 5, assumed: the spec only says "disabled due to repeated delivery
  failures") events in a row failed every attempt, the webhook gets status -1 and `timestamp_error`,
  and nothing is delivered (nor listed) until `POST /webhooks/{id}/resume`.
- `wait_for_webhooks(timeout)` waits until every queued delivery has ended. Webhooks and their events
  are not saved by `save_state` (like faults). No recorded real exchange shows a webhook endpoint:
  the shapes follow the spec alone.

Run it as a command for the demo:
    python -m coldsync.instantly.simulator --port 8765 --campaign "SMB" --campaign "Midsize"
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import heapq
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
import zlib
from bisect import bisect_left, bisect_right, insort
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, timedelta
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from coldsync.files import write_private

API_PREFIX = "/api/v2"
#: The saved workspace (save_state): a JSON document of this format and version.
STATE_FORMAT = "coldsync-simulator-state"
STATE_VERSION = 1
DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

# API facts, written out here on purpose rather than imported from the client: the simulator is an
# independent implementation of the contract, so a wrong constant cannot hide in both at once.
_ACTIVE, _PAUSED, _COMPLETED, _BOUNCED, _UNSUBSCRIBED, _SKIPPED, _LIST_ONLY = 1, 2, 3, -1, -2, -3, 0
_INTEREST_VALUES = frozenset({1, 2, 3, 4, 0, -1, -2, -3, -4})
#: The spec's built-in `lt_interest_status` values (Lead.lt_interest_status x-enumDescriptions).
INTEREST_STATUSES: dict[int, str] = {
    1: "Interested",
    2: "Meeting Booked",
    3: "Meeting Completed",
    4: "Won",
    0: "Out of Office",
    -1: "Not Interested",
    -2: "Wrong Person",
    -3: "Lost",
    -4: "No Show",
}
#: LeadLabel.interest_status_label values (the sentiment of a custom lead label).
LABEL_SENTIMENTS = ("positive", "negative", "neutral")
#: Custom labels get interest values outside the built-in -4..4: positive and neutral labels count up
#: from 5, negative ones down from -5. The spec only says the value "is generated automatically by us"
#: and that subsequence conditions accept -30000..30000; the numbering itself is our assumption.
_CUSTOM_LABEL_START = 5
_CUSTOM_LABEL_LIMIT = 30000
_JOB_TERMINAL = frozenset({"success", "failed", "cancelled"})
_INTEREST_JOB_MESSAGE = "Lead interest status update background job submitted"
_CAMPAIGN_STATUSES = frozenset({-99, -1, -2, 0, 1, 2, 3, 4})
#: Sending status of a campaign that is not active, by campaign status (the spec's status enum).
_SENDING_STATUS_BY_CAMPAIGN = {
    0: "campaign_draft",
    2: "campaign_paused",
    3: "campaign_completed",
    4: "campaign_running_subsequences",
    -1: "campaign_accounts_unhealthy",
    -2: "campaign_bounce_protect",
    -99: "campaign_account_suspended",
}
_SENDING_MESSAGES = {
    "healthy": "Campaign is sending normally",
    "waiting_for_leads": "The campaign has no leads left to send to. Add leads to keep it sending.",
    "no_accounts_available": "No sending account is available to send right now.",
    "campaign_draft": "The campaign is a draft: it has not been launched.",
    "campaign_paused": "The campaign is paused.",
    "campaign_completed": "The campaign is completed.",
    "campaign_running_subsequences": "The campaign is completed and only runs its subsequences.",
    "campaign_accounts_unhealthy": "None of the sending accounts are healthy, connected, or usable. This happens "
    "when all sending accounts are suspended, bounced, or disconnected.",
    "campaign_bounce_protect": "Bounce protection paused the campaign: too many emails bounced.",
    "campaign_account_suspended": "The sending account is suspended.",
}
SendingShape = Literal["full", "summary_only", "no_data"]
#: Campaign fields `set_campaign_settings` may set: the spec's Campaign settings, by JSON kind.
_SETTING_KINDS: dict[str, str] = {
    "insert_unsubscribe_header": "boolean",
    "stop_on_reply": "boolean",
    "stop_on_auto_reply": "boolean",
    "allow_risky_contacts": "boolean",
    "disable_bounce_protect": "boolean",
    "link_tracking": "boolean",
    "open_tracking": "boolean",
    "text_only": "boolean",
    "first_email_text_only": "boolean",
    "prioritize_new_leads": "boolean",
    "match_lead_esp": "boolean",
    "stop_for_company": "boolean",
    "is_evergreen": "boolean",
    "daily_limit": "number",
    "daily_max_leads": "number",
    "email_gap": "number",
    "random_wait_max": "number",
    "campaign_schedule": "object",
}
#: Per-day counters kept per campaign (names as in `daily_counters`).
DAILY_COUNTERS: tuple[str, ...] = (
    "sent",
    "contacted",
    "new_leads_contacted",
    "opened",
    "unique_opened",
    "opened_leads",
    "replies",
    "unique_replies",
    "auto_replies",
    "bounced",
    "unsubscribed",
    "completed",
)
#: Which lifetime counter (`_Campaign.counters`) each day counter adds up to.
_LIFETIME_OF_DAILY = {
    "sent": "emails_sent",
    "new_leads_contacted": "contacted",
    "opened": "opens",
    "opened_leads": "opened_leads",
    "replies": "replies",
    "unique_replies": "replied_leads",
    "auto_replies": "auto_replies",
    "bounced": "bounced",
    "unsubscribed": "unsubscribed",
    "completed": "completed",
}
_LEAD_STRING_FIELDS = (
    "email",
    "personalization",
    "website",
    "last_name",
    "first_name",
    "company_name",
    "job_title",
    "phone",
    "pl_value_lead",
    "assigned_to",
)
_LEAD_FIELDS = frozenset((*_LEAD_STRING_FIELDS, "lt_interest_status", "custom_variables"))
_PAYLOAD_NAMES = {
    "first_name": "firstName",
    "last_name": "lastName",
    "company_name": "companyName",
    "job_title": "jobTitle",
    "website": "website",
    "phone": "phone",
    "personalization": "personalization",
    "email": "email",
}
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+'\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
_SENDER = "sender1@example.com"
_HTTP_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_CDN_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} {reason}</title></head><body>"
    "<center><h1>{status} {reason}</h1></center><hr><center>cloudflare</center></body></html>"
)

Fate = Literal["completed", "replied", "out_of_office", "bounced", "unsubscribed", "skipped", "stays_active"]
FATES: tuple[Fate, ...] = (
    "completed",
    "replied",
    "out_of_office",
    "bounced",
    "unsubscribed",
    "skipped",
    "stays_active",
)


#: Webhook `event_type` values (spec: CreateWebhook.event_type enum; the listing's filter takes the same less
#: the last two).
WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    "all_events", "email_sent", "email_opened", "email_link_clicked", "reply_received", "email_bounced",
    "lead_unsubscribed", "campaign_completed", "account_error", "lead_neutral", "lead_interested",
    "lead_not_interested", "lead_meeting_booked", "lead_meeting_completed", "lead_closed", "lead_out_of_office",
    "lead_wrong_person", "lead_no_show", "supersearch_enrichment_completed",
)
#: The lifecycle events the simulator delivers, by the event type of their payload.
_WEBHOOK_EVENT_OF_KIND = {"unsubscribe": "lead_unsubscribed", "bounce": "email_bounced", "reply": "reply_received"}
_WEBHOOK_FIELDS = frozenset({"campaign", "name", "target_hook_url", "event_type", "custom_interest_value", "headers"})
_WEBHOOK_ACTIVE, _WEBHOOK_DISABLED = 1, -1
_WEBHOOK_PLAN_MESSAGE = "Workspace does not have an active paid plan"
#: Bytes of a receiver's answer read (and dropped) before the connection is closed.
_WEBHOOK_ANSWER_BYTES = 64 * 1024
_REPLY_TEXT = "Thanks for reaching out. This is relevant for us: could we talk next week?"


def _filter_predicates(label_sentiment: Callable[[int | None], str | None]) -> dict[str, Callable[[_Lead], bool]]:
    """`POST /leads/list` filters, by the spec's names (its `x-enumDescriptions` of `filter`).

    Where the one-line descriptions leave room, this simulator assumes:
    - FILTER_LEAD_* match exactly one built-in `lt_interest_status`: INTERESTED 1, MEETING_BOOKED 2,
      MEETING_COMPLETED 3, CLOSED 4 ("Won": the spec has no other closed value), OUT_OF_OFFICE 0,
      NOT_INTERESTED -1, WRONG_PERSON -2, LOST -3, NO_SHOW -4. A custom label never matches them, and
      a lead with no interest status ("Lead") matches none.
    - FILTER_LEAD_CUSTOM_LABEL_POSITIVE / _NEGATIVE match leads whose interest value is a custom label
      of that sentiment (`interest_status_label`); neutral labels match neither.
    - FILTER_VAL_IN_SUBSEQUENCE matches leads whose `subsequence_id` is set (in a subsequence now),
      not those that were in one once.
    - The FILTER_VAL_* of the lead `status` look at `status` only, whatever the subsequence.
    """

    def interest(value: int) -> Callable[[_Lead], bool]:
        return lambda lead: lead.interest == value

    return {
        "FILTER_VAL_ACTIVE": lambda lead: lead.status == _ACTIVE,
        "FILTER_VAL_COMPLETED": lambda lead: lead.status == _COMPLETED,
        "FILTER_VAL_BOUNCED": lambda lead: lead.status == _BOUNCED,
        "FILTER_VAL_UNSUBSCRIBED": lambda lead: lead.status == _UNSUBSCRIBED,
        "FILTER_VAL_SKIPPED": lambda lead: lead.status == _SKIPPED,
        "FILTER_VAL_CONTACTED": lambda lead: lead.last_contact is not None,
        "FILTER_VAL_NOT_CONTACTED": lambda lead: lead.last_contact is None,
        "FILTER_VAL_REPLIED": lambda lead: lead.replies >= 1,
        "FILTER_VAL_COMPLETED_NO_REPLY": lambda lead: lead.status == _COMPLETED and lead.replies == 0,
        "FILTER_VAL_OPENED_NO_REPLY": lambda lead: lead.opens > 0 and lead.replies == 0,
        "FILTER_VAL_NO_OPENS": lambda lead: lead.opens == 0,
        "FILTER_VAL_LINK_CLICKED": lambda lead: lead.clicks > 0,
        "FILTER_VAL_VALID": lambda lead: lead.verification_status == 1,
        "FILTER_VAL_INVALID": lambda lead: lead.verification_status == -1,
        "FILTER_VAL_RISKY": lambda lead: lead.verification_status == -2,
        "FILTER_VAL_IN_SUBSEQUENCE": lambda lead: lead.subsequence_id is not None,
        "FILTER_LEAD_INTERESTED": interest(1),
        "FILTER_LEAD_MEETING_BOOKED": interest(2),
        "FILTER_LEAD_MEETING_COMPLETED": interest(3),
        "FILTER_LEAD_CLOSED": interest(4),
        "FILTER_LEAD_OUT_OF_OFFICE": interest(0),
        "FILTER_LEAD_NOT_INTERESTED": interest(-1),
        "FILTER_LEAD_WRONG_PERSON": interest(-2),
        "FILTER_LEAD_LOST": interest(-3),
        "FILTER_LEAD_NO_SHOW": interest(-4),
        "FILTER_LEAD_CUSTOM_LABEL_POSITIVE": lambda lead: label_sentiment(lead.interest) == "positive",
        "FILTER_LEAD_CUSTOM_LABEL_NEGATIVE": lambda lead: label_sentiment(lead.interest) == "negative",
    }


# --------------------------------------------------------------------------------------------------
# Public configuration types


@dataclass(frozen=True)
class SequenceRates:
    """Relative weights of each fate given to a lead when it is added (normalized, seeded draw)."""

    completed: float = 0.70
    replied: float = 0.08
    out_of_office: float = 0.05
    bounced: float = 0.06
    unsubscribed: float = 0.04
    skipped: float = 0.0
    stays_active: float = 0.07

    @classmethod
    def only(cls, fate: Fate) -> SequenceRates:
        """Every lead gets this fate."""
        if fate not in FATES:
            raise ValueError(f"unknown fate {fate!r}")
        return cls(**{name: (1.0 if name == fate else 0.0) for name in FATES})

    def weights(self) -> list[tuple[Fate, float]]:
        pairs: list[tuple[Fate, float]] = [(name, float(getattr(self, name))) for name in FATES]
        if any(w < 0 for _, w in pairs) or sum(w for _, w in pairs) <= 0:
            raise ValueError("sequence rates must be >= 0 and not all zero")
        return pairs


def _default_first_statuses() -> dict[int | None, float]:
    return {1: 0.35, -1: 0.30, 2: 0.10, -2: 0.10, None: 0.15}


def _default_next_statuses() -> dict[int, dict[int | None, float]]:
    return {
        1: {2: 0.40, -3: 0.25, None: 0.35},
        2: {3: 0.60, -4: 0.30, None: 0.10},
        3: {4: 0.45, -3: 0.40, None: 0.15},
    }


@dataclass(frozen=True)
class RepBehaviour:
    """How simulated reps set `lt_interest_status` on leads that replied (seeded; off unless given).

    After a lead's real reply (fate `replied`; auto-replies are left alone), a rep sets a status drawn
    from `first` some `delay_days` later (None: the rep never touches the lead), then keeps moving it
    on with `then` (from the status just set; a status missing there, or None drawn, ends it), each
    time after another delay. Reps work on the simulated wall clock: also while the campaign is
    paused and after the sequence ended. Values are built-in statuses or custom label values.
    """

    first: Mapping[int | None, float] = field(default_factory=_default_first_statuses)
    then: Mapping[int, Mapping[int | None, float]] = field(default_factory=_default_next_statuses)
    delay_days: tuple[float, float] = (0.5, 5.0)

    def __post_init__(self) -> None:
        for weights in (self.first, *self.then.values()):
            if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError("rep status weights must be >= 0 and not all zero")
        low, high = self.delay_days
        if not 0 <= low <= high:
            raise ValueError("delay_days must be (low, high) with 0 <= low <= high")


@dataclass(frozen=True)
class FaultSpec:
    """What to do to the requests matching an endpoint pattern (see `InstantlySimulator.set_fault`).

    Checked in this order for each matching request: `latency` (always added), then one stall, then
    the next scripted status, then the random `error_rate`; otherwise the request is served, and its
    success body may be broken (`malformed`). Counters ("next N") are consumed per matching request.
    """

    statuses: Sequence[int] = ()
    """The next len(statuses) matching requests answer these HTTP statuses, in order (e.g. [503]*3,
    [429]*5, [401], [400]); bodies are Instantly's `{statusCode, error, message}`."""
    retry_after: float | None = None
    """Retry-After header (seconds) on the injected 429/5xx answers; None sends none."""
    html: bool = False
    """Injected error answers carry a CDN HTML page instead of JSON."""
    error_rate: float = 0.0
    """Probability (seeded) that a matching request answers `error_status`."""
    error_status: int = 503
    latency: float = 0.0
    """Seconds added before every matching response (benchmarks)."""
    stalls: int = 0
    """The next N matching requests get no response at all..."""
    stall_seconds: float = 2.0
    """...after this many seconds (beyond the client's read timeout); 0 closes the socket at once."""
    stall_applies: bool = False
    """True: a stalled request still takes effect (the response is lost, like a real timeout)."""
    malformed: int = 0
    """The next N successful responses have a broken body, of `malformed_kind`."""
    malformed_kind: Literal["html", "truncated", "empty", "wrong_shape"] = "html"
    reject_emails: Collection[str] = ()
    """POST /leads/add: leads with these emails are reported invalid (partial bulk rejection)."""
    reject_rate: float = 0.0
    """POST /leads/add: this share of leads (seeded) is reported invalid."""
    refuse_emails: Collection[str] = ()
    """POST /leads/add: a request holding a lead with one of these emails is refused whole with a 400 that
    names no lead (as Instantly answers a body it cannot validate), every time it is sent."""
    paging: Literal["normal", "repeat_cursor", "endless", "no_cursor"] = "normal"
    """Listings: `repeat_cursor` ignores starting_after (same page and cursor again); `endless`
    returns the first page again with a fresh cursor every time; `no_cursor` omits
    next_starting_after on every page."""
    message: str | None = None
    """Message of injected JSON error bodies (e.g. one echoing a secret, to test scrubbing)."""

    @classmethod
    def burst(cls, n: int, status: int = 503, *, html: bool = False) -> FaultSpec:
        """The next `n` matching requests fail with `status` (a 5xx burst)."""
        return cls(statuses=[status] * n, html=html)

    @classmethod
    def storm(cls, n: int, *, retry_after: float | None = None) -> FaultSpec:
        """The next `n` matching requests get 429, with or without Retry-After."""
        return cls(statuses=[429] * n, retry_after=retry_after)

    @classmethod
    def timeouts(cls, n: int, seconds: float = 2.0, *, applies: bool = False) -> FaultSpec:
        """The next `n` matching requests hang `seconds` then drop (0: socket closed at once)."""
        return cls(stalls=n, stall_seconds=seconds, stall_applies=applies)


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator received and what it answered (the key itself is never kept)."""

    method: str
    path: str
    template: str
    query: dict[str, list[str]]
    status: int
    request_body: Any
    response_body: Any
    content_type: str | None
    user_agent: str | None
    authorized: bool
    fault: str | None
    at: float

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"


# --------------------------------------------------------------------------------------------------
# Internal state


@dataclass(slots=True, eq=False)
class _Lead:
    id: str
    email: str | None
    email_key: str | None
    campaign: str | None
    list_id: str | None
    fields: dict[str, Any]
    payload: dict[str, Any]
    created: datetime
    updated: datetime
    status: int
    fate: Fate | None
    events: list[tuple[float, str, Any]] = field(default_factory=list)
    next_event: int = 0
    start_active: float = 0.0
    opens: int = 0
    replies: int = 0
    clicks: int = 0
    interest: int | None = None
    interest_changed: datetime | None = None
    last_contact: datetime | None = None
    last_reply: datetime | None = None
    last_open: datetime | None = None
    steps_sent: int = 0
    last_step: dict[str, str] | None = None
    verification_status: int | None = None
    esp_code: int = 1
    subsequence_id: str | None = None


@dataclass(eq=False)
class _Campaign:
    id: str
    name: str
    status: int
    created: datetime
    updated: datetime
    active_clock: float = 0.0
    heap: list[tuple[float, int, str]] = field(default_factory=list)
    lead_ids: list[str] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False)
class _Webhook:
    id: str
    target_hook_url: str
    event_type: str | None
    campaign: str | None
    name: str | None
    headers: dict[str, str] | None
    custom_interest_value: float | None
    created: datetime
    status: int = _WEBHOOK_ACTIVE
    error_at: datetime | None = None
    failed_in_a_row: int = 0
    queue: deque[_WebhookDelivery] = field(default_factory=deque)
    worker: threading.Thread | None = None

    def subscribes(self, event_type: str, campaign_id: str) -> bool:
        return (self.status == _WEBHOOK_ACTIVE and self.event_type in (event_type, "all_events")
                and self.campaign in (None, campaign_id))


@dataclass(frozen=True)
class _WebhookDelivery:
    payload: dict[str, Any]
    body: bytes
    lead_email: str | None


@dataclass(frozen=True)
class _Deferred:
    """An answer computed after the simulator's lock is released (one that waits on the network)."""

    run: Callable[[], Any]


@dataclass(eq=False)
class _ActiveFault:
    pattern: str
    spec: FaultSpec
    statuses_left: deque[int]
    stalls_left: int
    malformed_left: int
    rejects: frozenset[str]


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class _Outcome:
    """How a request ends: a JSON answer, a raw body, or no answer at all."""

    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: float | None = None
    fault: str | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "error": _HTTP_REASONS.get(status, "Error"), "message": message}


def _norm_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    return key or None


def _page_by_id(entries: Mapping[str, dict[str, Any]], query: Mapping[str, list[str]], paging: str, limit: int,
                keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """One page of a listing in id order after `starting_after`: `limit` entries that `keep` accepts, and the
    last one's id as `next_starting_after` (also on the last page, as Instantly does) unless a fault removes it."""
    ordered = sorted(entries)
    cursor = _query_first(query, "starting_after")
    start = bisect_right(ordered, cursor) if cursor and paging == "normal" else 0
    items: list[dict[str, Any]] = []
    for entry_id in ordered[start:]:
        if keep(entries[entry_id]):
            items.append(dict(entries[entry_id]))
            if len(items) >= limit:
                break
    answer: dict[str, Any] = {"items": items}
    if items and paging != "no_cursor":
        answer["next_starting_after"] = items[-1]["id"]
    return answer


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/leads/add$"), "/leads/add"),
    ("POST", re.compile(r"^/leads/list$"), "/leads/list"),
    ("DELETE", re.compile(r"^/leads$"), "/leads"),
    ("GET", re.compile(r"^/leads/(?P<id>[^/]+)$"), "/leads/{id}"),
    ("DELETE", re.compile(r"^/leads/(?P<id>[^/]+)$"), "/leads/{id}"),
    ("GET", re.compile(r"^/campaigns$"), "/campaigns"),
    ("GET", re.compile(r"^/campaigns/analytics$"), "/campaigns/analytics"),
    ("GET", re.compile(r"^/campaigns/analytics/daily$"), "/campaigns/analytics/daily"),
    ("GET", re.compile(r"^/campaigns/(?P<id>[^/]+)$"), "/campaigns/{id}"),
    ("GET", re.compile(r"^/campaigns/(?P<id>[^/]+)/sending-status$"), "/campaigns/{id}/sending-status"),
    ("POST", re.compile(r"^/campaigns/(?P<id>[^/]+)/activate$"), "/campaigns/{id}/activate"),
    ("POST", re.compile(r"^/campaigns/(?P<id>[^/]+)/pause$"), "/campaigns/{id}/pause"),
    ("POST", re.compile(r"^/block-lists-entries/bulk-create$"), "/block-lists-entries/bulk-create"),
    ("POST", re.compile(r"^/block-lists-entries$"), "/block-lists-entries"),
    ("GET", re.compile(r"^/block-lists-entries$"), "/block-lists-entries"),
    ("DELETE", re.compile(r"^/block-lists-entries$"), "/block-lists-entries"),
    ("GET", re.compile(r"^/workspaces/current$"), "/workspaces/current"),
    ("POST", re.compile(r"^/leads/move$"), "/leads/move"),
    ("GET", re.compile(r"^/background-jobs/(?P<id>[^/]+)$"), "/background-jobs/{id}"),
    ("POST", re.compile(r"^/lead-lists$"), "/lead-lists"),
    ("GET", re.compile(r"^/lead-labels$"), "/lead-labels"),
    ("POST", re.compile(r"^/leads/update-interest-status$"), "/leads/update-interest-status"),
    ("POST", re.compile(r"^/leads/subsequence/move$"), "/leads/subsequence/move"),
    ("POST", re.compile(r"^/leads/subsequence/remove$"), "/leads/subsequence/remove"),
    ("GET", re.compile(r"^/webhooks$"), "/webhooks"),
    ("POST", re.compile(r"^/webhooks$"), "/webhooks"),
    ("GET", re.compile(r"^/webhooks/event-types$"), "/webhooks/event-types"),
    ("GET", re.compile(r"^/webhooks/(?P<id>[^/]+)$"), "/webhooks/{id}"),
    ("PATCH", re.compile(r"^/webhooks/(?P<id>[^/]+)$"), "/webhooks/{id}"),
    ("DELETE", re.compile(r"^/webhooks/(?P<id>[^/]+)$"), "/webhooks/{id}"),
    ("POST", re.compile(r"^/webhooks/(?P<id>[^/]+)/resume$"), "/webhooks/{id}/resume"),
    ("POST", re.compile(r"^/webhooks/(?P<id>[^/]+)/test$"), "/webhooks/{id}/test"),
    ("GET", re.compile(r"^/webhook-events$"), "/webhook-events"),
]
_BODYLESS = frozenset({("GET", t) for _, _, t in _ROUTES} | {("DELETE", "/leads/{id}")})


class InstantlySimulator:
    """A stateful Instantly V2 stand-in on 127.0.0.1 (use as a context manager, or start()/stop()).

    Everything is deterministic for a given `seed` and sequence of calls. The clock (`now`) only
    moves with `advance(days)`. Rate limits count real (monotonic) time.
    """

    def __init__(
        self,
        api_key: str = "sim-key",
        seed: int = 0,
        plan_lead_limit: int = 100_000,
        rates: SequenceRates | None = None,
        sequence_days: float = 12.0,
        steps: int = 4,
        now: datetime = DEFAULT_START,
        *,
        max_per_second: int = 100,
        max_per_minute: int = 6000,
        rate_limit_retry_after: float | None = None,
        default_page_size: int = 10,
        log_bodies: bool = True,
        max_log: int | None = None,
        reps: RepBehaviour | None = None,
        job_polls: int | None = 2,
        job_days: float | None = None,
        webhooks_in_plan: bool = True,
        webhook_retry_delays: Sequence[float] = (10.0, 10.0, 10.0),
        webhook_disable_after: int = 5,
        webhook_timeout: float = 10.0,
    ) -> None:
        if steps < 1 or sequence_days < 0:
            raise ValueError("steps must be >= 1 and sequence_days >= 0")
        if any(delay < 0 for delay in webhook_retry_delays) or webhook_disable_after < 1 or webhook_timeout <= 0:
            raise ValueError("webhook retry delays must be >= 0, webhook_disable_after >= 1, webhook_timeout > 0")
        self.api_key = api_key
        self.seed = seed
        self.plan_lead_limit = plan_lead_limit
        self.rates = rates or SequenceRates()
        self._fate_weights = self.rates.weights()
        self.sequence_days = float(sequence_days)
        self.steps = steps
        self.max_per_second = max_per_second
        self.max_per_minute = max_per_minute
        self.rate_limit_retry_after = rate_limit_retry_after
        self.default_page_size = default_page_size
        self.log_bodies = log_bodies
        self.max_log = max_log
        self.reps = reps
        self.job_polls: int | None = None
        self.job_days: float | None = None
        self.set_job_timing(polls=job_polls, days=job_days)
        self._now = now.astimezone(UTC)
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._id_rng = random.Random(seed + 1)
        self._fault_rng = random.Random(seed + 2)
        self._id_seq = 0
        self._heap_seq = 0
        self.organization_id = str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))
        self._campaigns: dict[str, _Campaign] = {}
        self._lists: dict[str, str] = {}
        self._leads: dict[str, _Lead] = {}
        self._all_ids: list[str] = []
        self._by_email: dict[str, set[str]] = {}
        self._by_list: dict[str, list[str]] = {}
        self._blocklist: dict[str, dict[str, Any]] = {}
        self._blocked_values: dict[str, str] = {}
        self._add_unsub_to_block: bool | None = True
        self._workspace_created = self._now
        self._workspace_updated = self._now
        # campaign id -> UTC day -> counters of that day (see DAILY_COUNTERS)
        self._daily: dict[str, dict[date, Counter[str]]] = {}
        # campaign id -> settings set by `set_campaign_settings` / fields left out of the campaign object
        self._campaign_settings: dict[str, dict[str, Any]] = {}
        self._campaign_omitted: dict[str, set[str]] = {}
        # campaign id -> (connected sending accounts, of them available); default (1, 1)
        self._sending_accounts: dict[str, tuple[int, int]] = {}
        self._sending_shapes: dict[str, SendingShape] = {}
        self._faults: list[_ActiveFault] = []
        self._rate_lock = threading.Lock()
        self._recent_second: deque[float] = deque()
        self._recent_minute: deque[float] = deque()
        self.request_log: list[RequestRecord] = []
        self.counters: Counter[str] = Counter()
        self.listener_errors: list[str] = []
        self._listeners: list[Callable[[RequestRecord], None]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._predicates = _filter_predicates(self._label_sentiment)
        # Outcome policies (#13). Reps draw from their own RNG so the lifecycle's draws stay the same.
        self._rep_rng = random.Random(seed + 3)
        self._labels: dict[str, dict[str, Any]] = {}
        self._label_values: dict[int, str] = {}
        self._subsequences: dict[str, dict[str, Any]] = {}
        self._list_created: dict[str, datetime] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._jobs_to_fail = 0
        # Events on the simulated wall clock (reps, subsequence ends, timed jobs): (when, seq, kind, id, data)
        self._wall_events: list[tuple[datetime, int, str, str, Any]] = []
        self._wall_seq = 0
        # Webhooks (#18): their own id RNG and sequence, so registering one leaves every other id as it was.
        self.webhooks_in_plan = webhooks_in_plan
        self.webhook_retry_delays = tuple(float(d) for d in webhook_retry_delays)
        self.webhook_disable_after = webhook_disable_after
        self.webhook_timeout = float(webhook_timeout)
        self._webhooks: dict[str, _Webhook] = {}
        self._webhook_events: dict[str, dict[str, Any]] = {}
        self._webhook_firsts: set[tuple[str, str]] = set()
        self._webhook_rng = random.Random(seed + 4)
        self._webhook_seq = 0
        self._webhook_busy = 0  # deliveries queued or under way
        self._webhook_idle = threading.Condition(self._lock)
        self._webhook_stop = threading.Event()

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Bind (a free port by default), serve in a background thread, return the base URL."""
        if self._server is not None:
            return self.base_url
        self._webhook_stop.clear()
        handler = _make_handler(self)
        server = ThreadingHTTPServer((host, port), handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="instantly-sim", daemon=True
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving and close every open connection; queued webhook deliveries are dropped."""
        self._webhook_stop.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._conn_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> InstantlySimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"InstantlySimulator({where}, campaigns={len(self._campaigns)}, leads={len(self._leads)})"

    # ---- control surface ----------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The simulated clock (UTC)."""
        return self._now

    def advance(self, days: float) -> None:
        """Move the clock; leads of ACTIVE campaigns progress through their timelines."""
        if days < 0:
            raise ValueError("the simulated clock only moves forward")
        with self._lock:
            end = self._now + timedelta(days=days)
            if not self._wall_events or self._wall_events[0][0] > end:
                self._advance_campaigns(days)  # the path of every run without outcome policies
                # what the campaigns' events scheduled on the wall clock before `end` (a rep's first
                # status after a reply, ...) happens now, in time order, with its own timestamps
                while self._wall_events and self._wall_events[0][0] <= end:
                    when, _, kind, target, data = heapq.heappop(self._wall_events)
                    self._apply_wall_event(kind, target, data, when)
                return
            # Wall-clock events (reps, subsequence ends, timed jobs) interleave with the campaigns':
            # move the campaigns up to each event, apply it, go on.
            while True:
                due = self._wall_events[0][0] if self._wall_events else None
                stop = end if due is None or due > end else max(due, self._now)
                self._advance_campaigns((stop - self._now) / timedelta(days=1))
                self._now = stop
                while self._wall_events and self._wall_events[0][0] <= stop:
                    when, _, kind, target, data = heapq.heappop(self._wall_events)
                    self._apply_wall_event(kind, target, data, when)
                if stop >= end:
                    self._now = end
                    return

    def _advance_campaigns(self, days: float) -> None:
        """Move the clock by `days`; leads of ACTIVE campaigns progress through their timelines."""
        start = self._now
        for campaign in self._campaigns.values():
            if campaign.status != _ACTIVE:
                continue
            target = campaign.active_clock + days
            heap = campaign.heap
            while heap and heap[0][0] <= target:
                due, _, lead_id = heapq.heappop(heap)
                lead = self._leads.get(lead_id)
                if lead is None or lead.campaign != campaign.id or lead.next_event >= len(lead.events):
                    continue
                wall = start + timedelta(days=due - campaign.active_clock)
                _, kind, data = lead.events[lead.next_event]
                lead.next_event += 1
                self._apply_event(campaign, lead, kind, data, wall)
                self._schedule_next(campaign, lead)
            campaign.active_clock = target
        self._now = start + timedelta(days=days)

    def create_campaign(self, name: str, status: int = _ACTIVE, campaign_id: str | None = None) -> str:
        """Create a campaign (optionally with a chosen id); return its id."""
        if status not in _CAMPAIGN_STATUSES:
            raise ValueError(f"unknown campaign status {status}")
        with self._lock:
            cid = campaign_id or str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))
            if cid in self._campaigns:
                raise ValueError(f"campaign {cid} already exists")
            self._campaigns[cid] = _Campaign(cid, name, status, self._now, self._now)
            return cid

    def set_campaign_status(self, campaign_id: str, status: int) -> None:
        if status not in _CAMPAIGN_STATUSES:
            raise ValueError(f"unknown campaign status {status}")
        with self._lock:
            campaign = self._campaigns[campaign_id]
            campaign.status = status
            campaign.updated = self._now

    def set_campaign_settings(self, campaign_id: str, *, omit: Iterable[str] = (), **fields: Any) -> None:
        """Set campaign settings as `GET /campaigns/{id}` shows them (tests of the settings checks).

        `fields` are Campaign fields of the spec (`insert_unsubscribe_header`, `stop_on_reply`,
        `allow_risky_contacts`, `disable_bounce_protect`, `campaign_schedule`, `daily_limit`, ...);
        booleans take True/False/None (None answers null), numbers a number or None,
        `campaign_schedule` any object (it is not checked further, so tests can serve a broken one).
        `omit` leaves fields out of the answer entirely (real campaigns omit unset settings).
        The settings are only reported: sending, replies and bounces go on as before.
        KeyError for an unknown campaign, ValueError for an unknown field or a wrong type.
        """
        omitted = set(omit)
        for name in [*fields, *omitted]:
            if name not in _SETTING_KINDS:
                raise ValueError(f"{name} is not a campaign setting the simulator serves")
        for name, value in fields.items():
            kind = _SETTING_KINDS[name]
            if value is None and kind != "object":
                continue
            if kind == "boolean" and not isinstance(value, bool):
                raise ValueError(f"{name} must be True, False or None")
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{name} must be a number or None")
            if kind == "object" and not isinstance(value, dict):
                raise ValueError(f"{name} must be an object")
        try:
            copies = {name: json.loads(json.dumps(value)) for name, value in fields.items()}
        except (TypeError, ValueError):
            raise ValueError("campaign settings must be JSON values") from None
        with self._lock:
            campaign = self._campaigns[campaign_id]
            settings = self._campaign_settings.setdefault(campaign_id, {})
            left_out = self._campaign_omitted.setdefault(campaign_id, set())
            for name, value in copies.items():
                settings[name] = value
                left_out.discard(name)
            for name in omitted:
                settings.pop(name, None)
                left_out.add(name)
            campaign.updated = self._now

    def set_sending_accounts(self, campaign_id: str, total: int, available: int | None = None) -> None:
        """Sending accounts the campaign's sending status reports: `total` connected, `available` of them
        (default all). With none available an active campaign answers `no_accounts_available`."""
        available = total if available is None else available
        if isinstance(total, bool) or isinstance(available, bool) or not 0 <= available <= total:
            raise ValueError("need 0 <= available <= total")
        with self._lock:
            if campaign_id not in self._campaigns:
                raise KeyError(campaign_id)
            self._sending_accounts[campaign_id] = (int(total), int(available))

    def set_sending_status_shape(self, campaign_id: str, shape: SendingShape) -> None:
        """Which documented shape `GET /campaigns/{id}/sending-status` answers for this campaign.

        "full" (default): diagnostics and summary; "summary_only": `diagnostics: null` with a
        summary (the recorded real answer); "no_data": both null (the spec: no data available).
        """
        if shape not in ("full", "summary_only", "no_data"):
            raise ValueError(f"unknown sending-status shape {shape!r}")
        with self._lock:
            if campaign_id not in self._campaigns:
                raise KeyError(campaign_id)
            self._sending_shapes[campaign_id] = shape

    def record_daily(
        self,
        campaign_id: str,
        day: date,
        *,
        sent: int = 0,
        contacted: int = 0,
        new_leads_contacted: int = 0,
        opened: int = 0,
        unique_opened: int = 0,
        replies: int = 0,
        bounced: int = 0,
        unsubscribed: int = 0,
    ) -> None:
        """Add synthetic activity to one UTC day of a campaign (e.g. a bounce spike for a deliverability test).

        The numbers ADD to that day's counters and to the campaign's lifetime counters (so the
        undated analytics stay the sum of the days); no lead changes. `day` is a date (a datetime
        counts on its UTC day). `unique_opened` also counts as leads' first opens, `replies` as
        leads' first replies. KeyError for an unknown campaign, ValueError for a negative count.
        """
        given = {
            "sent": sent,
            "contacted": contacted,
            "new_leads_contacted": new_leads_contacted,
            "opened": opened,
            "unique_opened": unique_opened,
            "opened_leads": unique_opened,
            "replies": replies,
            "unique_replies": replies,
            "bounced": bounced,
            "unsubscribed": unsubscribed,
        }
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0")
        with self._lock:
            campaign = self._campaigns[campaign_id]
            counts = self._day_counts(campaign.id, _utc_day(day))
            for name, value in given.items():
                counts[name] += value
                lifetime = _LIFETIME_OF_DAILY.get(name)
                if lifetime is not None:
                    campaign.counters[lifetime] += value

    def daily_counters(self, campaign_id: str) -> dict[date, dict[str, int]]:
        """The campaign's counters per UTC day (names in DAILY_COUNTERS, zeros left out), by day."""
        with self._lock:
            days = self._daily.get(campaign_id, {})
            return {day: {k: v for k, v in days[day].items() if v} for day in sorted(days)}

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        """The campaign as the API shows it."""
        with self._lock:
            return self._campaign_json(self._campaigns[campaign_id])

    def campaign_ids(self) -> list[str]:
        with self._lock:
            return list(self._campaigns)

    def create_list(self, name: str) -> str:
        """Create a lead list (for list_id adds and the skip_if_in_list flag); return its id."""
        with self._lock:
            list_id = str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))
            self._lists[list_id] = name
            self._by_list[list_id] = []
            self._list_created[list_id] = self._now
            return list_id

    def lead_list(self, list_id: str) -> dict[str, Any]:
        """The lead list as the API shows it (the spec's LeadList). KeyError for an unknown list."""
        with self._lock:
            return self._list_json(list_id)

    # ---- outcome policies (#13): interest statuses, labels, subsequences, background jobs ---------

    def set_interest_status(self, lead_id: str, value: int | None) -> None:
        """Set a lead's `lt_interest_status` as a rep would, now (also after its sequence ended).

        `value`: a built-in status (INTEREST_STATUSES), a custom label's value (`create_lead_label`),
        or None to reset the lead to "Lead" (the field is omitted again). The lead `status` does not
        change; a subsequence of the lead's campaign whose `crm_status` holds the value picks it up.
        KeyError for an unknown lead, ValueError for an unknown value.
        """
        with self._lock:
            lead = self._leads[lead_id]
            if value is not None and not self._known_interest(value):
                raise ValueError(f"unknown interest status {value!r}")
            self._set_interest(lead, value, self._now)

    def create_lead_label(
        self, label: str, sentiment: str = "positive", *, description: str | None = None
    ) -> dict[str, Any]:
        """Create a custom lead label (the spec's LeadLabel) and return it; its `interest_status` is the
        value to set on leads (`set_interest_status`) and to use in subsequence conditions."""
        if sentiment not in LABEL_SENTIMENTS:
            raise ValueError(f"sentiment must be one of {LABEL_SENTIMENTS}")
        if not isinstance(label, str) or not label.strip():
            raise ValueError("a label needs a name")
        with self._lock:
            step = -1 if sentiment == "negative" else 1
            value = step * _CUSTOM_LABEL_START
            while value in self._label_values:
                value += step
            if abs(value) > _CUSTOM_LABEL_LIMIT:
                raise ValueError("no custom label value left")
            entry: dict[str, Any] = {
                "id": str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4)),
                "timestamp_created": _iso(self._now),
                "created_by": self._owner_id(),
                "organization_id": self.organization_id,
                "label": label,
                "interest_status_label": sentiment,
                "interest_status": value,
                "description": description,
                "use_with_ai": False,
            }
            self._labels[entry["id"]] = entry
            self._label_values[value] = sentiment
            return dict(entry)

    def create_subsequence(
        self, campaign_id: str, name: str, *, crm_status: Iterable[int] = (), days: float = 7.0
    ) -> str:
        """Create a subsequence of a campaign; return its id.

        A lead of `campaign_id` whose interest status becomes one of `crm_status` (set by a rep, by a
        reply or an auto-reply) is picked up, unless it is in a subsequence already; `move_to_subsequence`
        (`POST /leads/subsequence/move`) puts one in by hand. The lead leaves it `days` of simulated
        time later (its steps are done), or when removed (`remove_from_subsequence`).
        """
        statuses = [int(v) for v in crm_status]
        if days < 0:
            raise ValueError("days must be >= 0")
        with self._lock:
            if campaign_id not in self._campaigns:
                raise KeyError(campaign_id)
            if any(not self._known_interest(v) for v in statuses):
                raise ValueError("crm_status holds an unknown interest status")
            sub_id = str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))
            self._subsequences[sub_id] = {
                "parent_campaign": campaign_id,
                "name": name,
                "crm_status": statuses,
                "days": float(days),
            }
            return sub_id

    def move_to_subsequence(self, lead_id: str, subsequence_id: str) -> None:
        """Put a lead of the subsequence's campaign into it now (KeyError: unknown; ValueError: other campaign)."""
        with self._lock:
            lead, sub = self._leads[lead_id], self._subsequences[subsequence_id]
            if lead.campaign != sub["parent_campaign"]:
                raise ValueError("the lead is not in the subsequence's campaign")
            self._enter_subsequence(lead, subsequence_id, self._now)

    def remove_from_subsequence(self, lead_id: str) -> None:
        """Take a lead out of its subsequence now (nothing happens if it is in none)."""
        with self._lock:
            self._leave_subsequence(self._leads[lead_id], self._now)

    def set_job_timing(self, *, polls: int | None = 2, days: float | None = None) -> None:
        """When a background job (`POST /leads/move`) completes and takes effect.

        `polls`: on the N-th `GET /background-jobs/{id}` of it (the polls before answer `in-progress`);
        `days`: once that much simulated time passed since it was created (`advance`), polled or not.
        With both, whichever comes first; with neither, at once (the first poll sees it done).
        Applies to jobs created afterwards.
        """
        if polls is not None and (isinstance(polls, bool) or polls < 1):
            raise ValueError("polls must be >= 1 or None")
        if days is not None and days < 0:
            raise ValueError("days must be >= 0 or None")
        self.job_polls, self.job_days = polls, days

    def fail_next_jobs(self, count: int = 1) -> None:
        """The next `count` background jobs created fail when they complete (`status: failed`, nothing moved)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._jobs_to_fail = count

    def background_job(self, job_id: str) -> dict[str, Any]:
        """A background job as `GET /background-jobs/{id}` shows it, without counting as a poll."""
        with self._lock:
            return self._job_json(self._jobs[job_id])

    def leads(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        """Snapshot of the leads (of one campaign, or all) as the API shows them, in id order."""
        with self._lock:
            ids = self._campaigns[campaign_id].lead_ids if campaign_id else self._all_ids
            return [self._lead_json(self._leads[i]) for i in ids]

    def lead(self, lead_id: str) -> dict[str, Any] | None:
        with self._lock:
            lead = self._leads.get(lead_id)
            return self._lead_json(lead) if lead else None

    def lead_count(self, campaign_id: str | None = None) -> int:
        with self._lock:
            if campaign_id is None:
                return len(self._leads)
            campaign = self._campaigns.get(campaign_id)
            return len(campaign.lead_ids) if campaign else 0

    def find_leads(self, email: str) -> list[dict[str, Any]]:
        """Every lead with this email (case-insensitive), anywhere in the workspace."""
        with self._lock:
            key = _norm_email(email) or ""
            return [self._lead_json(self._leads[i]) for i in sorted(self._by_email.get(key, ()))]

    def lead_fate(self, lead_id: str) -> Fate | None:
        """The fate drawn for a lead (ground truth for tests and benchmarks)."""
        with self._lock:
            lead = self._leads.get(lead_id)
            return lead.fate if lead else None

    def finish_lead(self, lead_id: str, fate: Fate, *, interest: int | None = 1) -> None:
        """Bring a lead to the end state of `fate` now (its remaining timeline is dropped).

        `out_of_office` gives an auto-reply and completes the sequence; `stays_active` only drops the
        rest of the timeline. `interest` is the lt_interest_status of a `replied` lead (None: unset).
        """
        if fate not in FATES:
            raise ValueError(f"unknown fate {fate!r}")
        with self._lock:
            lead = self._leads[lead_id]
            campaign = self._campaigns[lead.campaign] if lead.campaign else None
            lead.fate = fate
            lead.next_event = len(lead.events)
            if campaign is None:
                return
            now = self._now
            if lead.steps_sent == 0 and fate != "skipped":
                self._apply_event(campaign, lead, "send", (0, False), now)
            kinds: dict[Fate, list[tuple[str, Any]]] = {
                "completed": [("complete", None)],
                "replied": [("reply", interest)],
                "out_of_office": [("auto_reply", None), ("complete", None)],
                "bounced": [("bounce", None)],
                "unsubscribed": [("unsubscribe", None)],
                "skipped": [("skip", None)],
                "stays_active": [],
            }
            for kind, data in kinds[fate]:
                self._apply_event(campaign, lead, kind, data, now)

    def insert_leads(
        self, campaign_id: str, leads: Iterable[Mapping[str, Any]], *, skip_if_in_workspace: bool = False
    ) -> dict[str, Any]:
        """Add leads without HTTP and without the 1000 cap (seeding big inventories); same rules."""
        with self._lock:
            if campaign_id not in self._campaigns:
                raise KeyError(campaign_id)
            return self._do_add(
                campaign_id,
                None,
                [dict(x) for x in leads],
                {"skip_if_in_workspace": skip_if_in_workspace},
                None,
            )

    def add_to_blocklist(self, value: str) -> None:
        """Block an email or a domain (as `POST /block-lists-entries` would)."""
        with self._lock:
            if not self._add_block_value(value):
                raise ValueError("not an email or a domain")

    @property
    def blocklist(self) -> list[str]:
        with self._lock:
            return [entry["bl_value"] for entry in self._blocklist.values()]

    def blocklist_entries(self) -> list[dict[str, Any]]:
        """The block-list entries as the API shows them, in id (= creation) order."""
        with self._lock:
            return [dict(self._blocklist[entry_id]) for entry_id in sorted(self._blocklist)]

    def set_add_unsub_to_block(self, value: bool | None) -> None:
        """Set the workspace's `add_unsub_to_block` (default True); None leaves the field out of the answer.

        Only reported by `GET /workspaces/current`: the simulator does not itself add unsubscribes
        to its block list whatever the setting.
        """
        if value is not None and not isinstance(value, bool):
            raise ValueError("add_unsub_to_block must be True, False or None")
        with self._lock:
            self._add_unsub_to_block = value
            self._workspace_updated = self._now

    def workspace(self) -> dict[str, Any]:
        """The workspace as `GET /workspaces/current` shows it."""
        with self._lock:
            return self._workspace_json()

    def set_fault(self, endpoint_pattern: str, spec: FaultSpec) -> None:
        """Inject faults on matching requests (replaces an earlier fault with the same pattern).

        Patterns are `"[METHOD ]/path-glob"` without the /api/v2 prefix, matched with fnmatch against
        the concrete path and the template: "POST /leads/add", "/leads/*", "GET /campaigns*", "*".
        The first matching pattern (in insertion order) applies.
        """
        with self._lock:
            self._faults = [f for f in self._faults if f.pattern != endpoint_pattern]
            self._faults.append(
                _ActiveFault(
                    endpoint_pattern,
                    spec,
                    deque(spec.statuses),
                    spec.stalls,
                    spec.malformed,
                    frozenset(e for e in (_norm_email(x) for x in spec.reject_emails) if e),
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def add_listener(self, listener: Callable[[RequestRecord], None]) -> None:
        """Call `listener(record)` for every request answered (errors land in `listener_errors`)."""
        self._listeners.append(listener)

    def clear_request_log(self) -> None:
        with self._lock:
            self.request_log.clear()
            self.counters.clear()

    def requests_to(self, method: str, template: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.request_log if r.method == method and r.template == template]

    # ---- webhooks (issue #18) ---------------------------------------------------------------------

    def set_webhooks_in_plan(self, value: bool) -> None:
        """False: every webhook endpoint answers 402 and nothing is delivered (a plan without webhooks)."""
        with self._lock:
            self.webhooks_in_plan = value

    def disable_webhook(self, webhook_id: str) -> None:
        """Disable a webhook as Instantly does after repeated delivery failures (status -1, timestamp_error now):
        a test's shortcut to the state resumeWebhook undoes."""
        with self._lock:
            hook = self._webhooks[webhook_id]
            hook.status, hook.error_at = -1, self._now

    def webhooks(self) -> list[dict[str, Any]]:
        """Snapshot of the webhooks as `GET /webhooks` shows them, in id order."""
        with self._lock:
            return [self._webhook_json(self._webhooks[i]) for i in sorted(self._webhooks)]

    def webhook_events(self) -> list[dict[str, Any]]:
        """Snapshot of every delivery attempt (WebhookEvent objects), oldest first."""
        with self._lock:
            return [dict(self._webhook_events[i]) for i in sorted(self._webhook_events)]

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Wait until no webhook delivery is queued or under way (retries included); False if `timeout`
        seconds (real time) passed first."""
        deadline = time.monotonic() + timeout
        with self._webhook_idle:
            while self._webhook_busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._webhook_idle.wait(left)
            return True

    # ---- persistence (the embedded playground keeps a workspace between runs) ---------------------

    _PERSISTED = (
        "_now",
        "_id_seq",
        "_heap_seq",
        "organization_id",
        "_campaigns",
        "_lists",
        "_leads",
        "_all_ids",
        "_by_email",
        "_by_list",
        "_blocklist",
        "_blocked_values",
    )
    #: Persisted since the workspace endpoint (and, from `_daily` on, since the analytics and
    #: sending-status endpoints); a state file without them keeps the defaults (an older workspace
    #: has no per-day history: its dated analytics count only what happens after loading).
    _PERSISTED_OPTIONAL = (
        "_add_unsub_to_block",
        "_workspace_created",
        "_workspace_updated",
        "_daily",
        "_campaign_settings",
        "_campaign_omitted",
        "_sending_accounts",
        "_sending_shapes",
        # outcome policies (#13)
        "_rep_rng",
        "_labels",
        "_label_values",
        "_subsequences",
        "_list_created",
        "_jobs",
        "_jobs_to_fail",
        "_wall_events",
        "_wall_seq",
    )
    _CONFIG = (
        "seed",
        "plan_lead_limit",
        "rates",
        "sequence_days",
        "steps",
        "max_per_second",
        "max_per_minute",
        "rate_limit_retry_after",
        "default_page_size",
        "reps",
        "job_polls",
        "job_days",
    )

    def save_state(self, path: str | Path) -> None:
        """Write the workspace (campaigns, leads, block list, clock, RNG states) to `path` as JSON, atomically.

        The file is a versioned JSON document (`{"format": "coldsync-simulator-state", "version": 1, ...}`),
        mode 0600 whatever the umask (it holds the leads' emails and names): coldsync.files.write_private.
        Faults, the request log and listeners are not kept, nor the API key. Raises OSError.
        """
        with self._lock:
            document = {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "config": _config_json(self),
                "rngs": {name: _rng_json(getattr(self, attr)) for name, attr in _STATE_RNGS.items()},
                "state": {
                    name.lstrip("_"): _STATE_CODECS[name][0](getattr(self, name))
                    for name in (*self._PERSISTED, *self._PERSISTED_OPTIONAL)
                },
            }
            payload = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
        write_private(Path(path), payload)

    @classmethod
    def load_state(cls, path: str | Path, *, api_key: str = "sim-key") -> InstantlySimulator | None:
        """A (stopped) simulator restored from a file `save_state` wrote; None if there is no file at `path`.

        The file is read as plain JSON into the known shapes only: nothing in it is ever run or turned into
        another class than the simulator's own records (a pickle from an older version is refused, never
        unpickled). SimulatorStateError (a ValueError), whose message is one line naming the file, what is wrong
        and the fix, when it is not JSON, not of this format and version, or of a wrong shape: nothing is loaded.
        """
        target = Path(path)
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SimulatorStateError(target, f"cannot be read ({exc.strerror})") from None
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            older = " (it looks like a pickle, which is never loaded)" if raw[:1] == b"\x80" else ""
            raise SimulatorStateError(target, f"is not JSON{older}") from None
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            raise SimulatorStateError(target, f'is not a simulator state (no "format": "{STATE_FORMAT}")')
        if document.get("version") != STATE_VERSION:
            raise SimulatorStateError(
                target, f"is of version {document.get('version')!r}; this version reads version {STATE_VERSION}"
            )
        try:
            return cls._from_state(document, api_key)
        except _StateShapeError as exc:
            raise SimulatorStateError(target, f"has a wrong shape: {exc}") from None

    @classmethod
    def _from_state(cls, document: dict[str, Any], api_key: str) -> InstantlySimulator:
        state = _obj(document.get("state"), "state")
        now = _time(state.get("now"), "state.now")
        try:
            sim = cls(api_key=api_key, now=now, **_config_from_json(_obj(document.get("config"), "config")))
        except (TypeError, ValueError) as exc:
            raise _StateShapeError(f"config: {exc}") from None
        rngs = _obj(document.get("rngs"), "rngs")
        _only_keys(rngs, set(_STATE_RNGS), "rngs")
        for name, attr in _STATE_RNGS.items():
            _rng_restore(getattr(sim, attr), rngs.get(name), f"rngs.{name}")
        _only_keys(state, {name.lstrip("_") for name in (*cls._PERSISTED, *cls._PERSISTED_OPTIONAL)}, "state")
        for name in (*cls._PERSISTED, *cls._PERSISTED_OPTIONAL):
            key = name.lstrip("_")
            if key not in state:
                if name in cls._PERSISTED:
                    raise _StateShapeError(f"state.{key} is missing")
                continue  # a field added since: the constructor's default
            decode = _STATE_CODECS[name][1]
            if name == "_rep_rng":
                _rng_restore(sim._rep_rng, state[key], f"state.{key}")
            else:
                setattr(sim, name, decode(state[key], f"state.{key}"))
        return sim

    # ---- lifecycle internals ------------------------------------------------------------------------

    def _draw_fate(self) -> Fate:
        total = sum(w for _, w in self._fate_weights)
        point = self._rng.uniform(0, total)
        for fate, weight in self._fate_weights:
            point -= weight
            if point <= 0 and weight > 0:
                return fate
        return next(f for f, w in reversed(self._fate_weights) if w > 0)

    def _timeline(self, fate: Fate) -> list[tuple[float, str, Any]]:
        rng = self._rng
        n = self.steps
        gap = self.sequence_days / (n - 1) if n > 1 else 0.0
        first = rng.uniform(0.0, min(1.0, gap) if gap > 0 else 0.5)
        sends = [first + k * gap for k in range(n)]
        opened = [rng.random() < 0.35 for _ in range(n)]

        def send_events(upto: int) -> list[tuple[float, str, Any]]:
            return [(sends[k], "send", (k, opened[k])) for k in range(upto)]

        if fate == "completed":
            return [*send_events(n), (sends[-1], "complete", None)]
        if fate == "replied":
            k = rng.randrange(n)
            interest = rng.choices([1, -1, 2, -2, None], weights=[35, 25, 10, 5, 25])[0]
            return [*send_events(k + 1), (sends[k] + rng.uniform(0.05, max(gap, 1.0) * 0.9), "reply", interest)]
        if fate == "out_of_office":
            k = rng.randrange(max(n - 1, 1))
            events = [*send_events(n), (sends[k] + rng.uniform(0.01, 0.2), "auto_reply", None)]
            events.append((sends[-1] + 0.001, "complete", None))
            return sorted(events, key=lambda e: e[0])
        if fate == "bounced":
            k = 0 if rng.random() < 0.8 or n == 1 else 1
            return [*send_events(k + 1), (sends[k] + 0.001, "bounce", None)]
        if fate == "unsubscribed":
            k = rng.randrange(n)
            return [*send_events(k + 1), (sends[k] + rng.uniform(0.05, 1.0), "unsubscribe", None)]
        if fate == "skipped":
            return [(first, "skip", None)]
        return send_events(1)  # stays_active: one send, then nothing ever again

    def _schedule_next(self, campaign: _Campaign, lead: _Lead) -> None:
        if lead.next_event < len(lead.events):
            self._heap_seq += 1
            due = lead.start_active + lead.events[lead.next_event][0]
            heapq.heappush(campaign.heap, (due, self._heap_seq, lead.id))

    def _day_counts(self, campaign_id: str, day: date) -> Counter[str]:
        return self._daily.setdefault(campaign_id, {}).setdefault(day, Counter())

    def _apply_event(self, campaign: _Campaign, lead: _Lead, kind: str, data: Any, wall: datetime) -> None:
        counters = campaign.counters
        today = wall.astimezone(UTC).date()
        daily = self._day_counts(campaign.id, today)
        if kind == "send":
            step, opened = data
            if lead.last_contact is None:
                counters["contacted"] += 1
                daily["new_leads_contacted"] += 1
            if lead.last_contact is None or lead.last_contact.astimezone(UTC).date() != today:
                daily["contacted"] += 1
            daily["sent"] += 1
            if opened:
                daily["opened"] += 1
                if lead.last_open is None or lead.last_open.astimezone(UTC).date() != today:
                    daily["unique_opened"] += 1
                if lead.opens == 0:
                    daily["opened_leads"] += 1
            lead.steps_sent += 1
            lead.last_contact = wall
            lead.last_step = {"from": _SENDER, "stepID": f"0_{step}_0", "timestamp_executed": _iso(wall)}
            counters["emails_sent"] += 1
            if opened:
                if lead.opens == 0:
                    counters["opened_leads"] += 1
                lead.opens += 1
                lead.last_open = wall
                counters["opens"] += 1
        elif kind == "reply":
            lead.replies += 1
            lead.last_reply = wall
            if data is not None:
                lead.interest = int(data)
                lead.interest_changed = wall
            counters["replies"] += 1
            counters["replied_leads"] += 1
            daily["replies"] += 1
            daily["unique_replies"] += 1  # a lead of this model replies (for real) at most once
            if lead.status != _COMPLETED:
                counters["completed"] += 1
                daily["completed"] += 1
            lead.status = _COMPLETED
            if self.reps is not None:
                self._schedule_rep(lead, self.reps.first, wall)
            if data is not None:
                self._subsequence_trigger(lead, wall)
        elif kind == "auto_reply":
            lead.replies += 1
            lead.last_reply = wall
            lead.interest = 0
            lead.interest_changed = wall
            counters["auto_replies"] += 1
            daily["auto_replies"] += 1
            self._subsequence_trigger(lead, wall)
        elif kind == "complete":
            if lead.status != _COMPLETED:
                counters["completed"] += 1
                daily["completed"] += 1
            lead.status = _COMPLETED
        elif kind == "bounce":
            lead.status = _BOUNCED
            counters["bounced"] += 1
            daily["bounced"] += 1
        elif kind == "unsubscribe":
            lead.status = _UNSUBSCRIBED
            counters["unsubscribed"] += 1
            daily["unsubscribed"] += 1
        elif kind == "skip":
            lead.status = _SKIPPED
        lead.updated = wall
        event_type = _WEBHOOK_EVENT_OF_KIND.get(kind)
        if event_type is not None and self._webhooks:
            self._queue_webhook_event(event_type, campaign, lead, wall)

    # ---- outcome policy internals (#13) -------------------------------------------------------------

    def _label_sentiment(self, value: int | None) -> str | None:
        """The sentiment of the custom label with this interest value (None: built-in, unset or unknown)."""
        return self._label_values.get(value) if value is not None else None

    def _known_interest(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            return False
        return int(value) in _INTEREST_VALUES or int(value) in self._label_values

    def _owner_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coldsync-simulator/owner/{self.organization_id}"))

    def _push_wall(self, when: datetime, kind: str, target: str, data: Any = None) -> None:
        self._wall_seq += 1
        heapq.heappush(self._wall_events, (when, self._wall_seq, kind, target, data))

    def _apply_wall_event(self, kind: str, target: str, data: Any, when: datetime) -> None:
        if kind == "job":
            job = self._jobs.get(target)
            if job is not None and job["status"] not in _JOB_TERMINAL:
                self._finish_job(job, when)
            return
        lead = self._leads.get(target)
        if lead is None:
            return  # deleted meanwhile: nothing left to act on
        if kind == "rep":
            self._set_interest(lead, data, when)
            if self.reps is not None and data in self.reps.then:
                self._schedule_rep(lead, self.reps.then[data], when)
        elif kind == "subsequence_end" and lead.subsequence_id == data:
            self._leave_subsequence(lead, when)

    def _schedule_rep(self, lead: _Lead, weights: Mapping[int | None, float], after: datetime) -> None:
        """Draw the rep's next status for the lead (None: the rep leaves it) and when it is set."""
        assert self.reps is not None
        choices = list(weights)
        value = self._rep_rng.choices(choices, weights=[weights[c] for c in choices])[0]
        delay = self._rep_rng.uniform(*self.reps.delay_days)
        if value is not None:
            self._push_wall(after + timedelta(days=delay), "rep", lead.id, value)

    def _set_interest(self, lead: _Lead, value: int | None, when: datetime) -> None:
        lead.interest = None if value is None else int(value)
        # "Lead" again: both the status and the time of its change are gone from the object (assumed:
        # the spec documents no reset shape, and absent fields are omitted).
        lead.interest_changed = None if value is None else when
        lead.updated = when
        self._subsequence_trigger(lead, when)

    def _subsequence_trigger(self, lead: _Lead, when: datetime) -> None:
        """A subsequence of the lead's campaign whose crm_status holds its interest status picks it up."""
        if not self._subsequences or lead.interest is None or lead.subsequence_id is not None:
            return
        if lead.status in (_BOUNCED, _UNSUBSCRIBED, _SKIPPED):
            return  # nobody to send to (assumed: a subsequence never mails a bounced or unsubscribed lead)
        for sub_id, sub in self._subsequences.items():
            if sub["parent_campaign"] == lead.campaign and lead.interest in sub["crm_status"]:
                self._enter_subsequence(lead, sub_id, when)
                return

    def _enter_subsequence(self, lead: _Lead, sub_id: str, when: datetime) -> None:
        """Put the lead in a subsequence: `subsequence_id` is set until it leaves.

        The spec does not say what a subsequence does to the lead `status`; this simulator assumes:
        - entering ends the lead's main sequence (no more main-campaign steps) and does NOT change
          `status`: a lead that replied stays 3 (completed), one still in its sequence stays 1
          (active) while the subsequence mails it. So `status` 3 does not mean "nothing is being
          sent": only `subsequence_id` (FILTER_VAL_IN_SUBSEQUENCE) tells that a lead is in one;
        - the lead keeps its `campaign` (the subsequence's parent campaign) all along;
        - leaving (its steps done after the subsequence's `days`, or removed) omits `subsequence_id`
          again and ends an active lead as completed (status 1 -> 3: nothing is left to send); other
          statuses stay as they are.
        A lead in a subsequence moved elsewhere (`POST /leads/move`) leaves it.
        """
        if lead.subsequence_id == sub_id:
            return
        lead.subsequence_id = sub_id
        lead.next_event = len(lead.events)
        lead.updated = when
        self._push_wall(when + timedelta(days=self._subsequences[sub_id]["days"]), "subsequence_end", lead.id, sub_id)

    def _leave_subsequence(self, lead: _Lead, when: datetime) -> None:
        if lead.subsequence_id is None:
            return
        lead.subsequence_id = None
        lead.updated = when
        campaign = self._campaigns.get(lead.campaign) if lead.campaign else None
        if lead.status == _ACTIVE and campaign is not None:
            self._apply_event(campaign, lead, "complete", None, when)

    def _list_json(self, list_id: str) -> dict[str, Any]:
        """The spec's LeadList (additionalProperties false)."""
        name = self._lists[list_id]
        return {
            "id": list_id,
            "organization_id": self.organization_id,
            "has_enrichment_task": False,
            "owned_by": self._owner_id(),
            "name": name,
            "timestamp_created": _iso(self._list_created.get(list_id, self._workspace_created)),
        }

    def _job_json(self, job: Mapping[str, Any], *, created: bool = False) -> dict[str, Any]:
        """The spec's BackgroundJob in the recorded key order. The answer to the POST that created it
        carries `user_id: null`; the recorded `GET /background-jobs/{id}` answers leave it out."""
        body: dict[str, Any] = {
            "id": job["id"],
            "workspace_id": self.organization_id,
            "type": "move-leads",
            "progress": job["progress"],
            "status": job["status"],
            "created_at": _iso(job["created"]),
            "updated_at": _iso(job["updated"]),
        }
        if created:
            body["user_id"] = None
        body["entity_id"] = job["entity_id"]
        body["entity_type"] = job["entity_type"]
        body["data"] = json.loads(json.dumps(job["data"]))
        return body

    def _poll_job(self, job: dict[str, Any]) -> None:
        """One `GET /background-jobs/{id}`: the job goes on, and completes on its N-th poll."""
        if job["status"] in _JOB_TERMINAL:
            return
        job["polls"] += 1
        needed, due = job["polls_needed"], job["due"]
        if (
            (needed is None and due is None)
            or (needed is not None and job["polls"] >= needed)
            or (due is not None and self._now >= due)
        ):
            self._finish_job(job, self._now)
            return
        if job["status"] == "pending":
            job["status"] = "in-progress"
            job["updated"] = self._now
        if needed is not None:
            job["progress"] = max(job["progress"], min(99, 100 * job["polls"] // needed))

    def _finish_job(self, job: dict[str, Any], when: datetime) -> None:
        job["updated"] = when
        if job["fail"]:
            job["status"] = "failed"  # nothing moved; data keeps only the filters (assumed shape)
            return
        job["data"] = self._do_move(job["data"]["filters"])
        job["status"], job["progress"] = "success", 100

    # ---- leads internals ----------------------------------------------------------------------------

    def _next_lead_id(self) -> str:
        """UUIDv7-like ids that sort in creation order (ms of the simulated clock, then a sequence)."""
        self._id_seq += 1
        millis = int(self._now.timestamp() * 1000) & ((1 << 48) - 1)
        seq = self._id_seq & ((1 << 26) - 1)
        value = (
            (millis << 80)
            | (0x7 << 76)
            | (((seq >> 14) & 0xFFF) << 64)
            | (0b10 << 62)
            | ((seq & 0x3FFF) << 48)
            | self._id_rng.getrandbits(48)
        )
        return str(uuid.UUID(int=value))

    def _is_blocked(self, key: str) -> bool:
        if key in self._blocked_values:
            return True
        domain = key.rpartition("@")[2]
        return bool(domain) and domain in self._blocked_values

    def _do_add(
        self,
        campaign_id: str | None,
        list_id: str | None,
        leads: list[dict[str, Any]],
        flags: Mapping[str, Any],
        fault: _ActiveFault | None,
    ) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        created: list[dict[str, Any]] = []
        seen: set[str] = set()
        remaining = self.plan_lead_limit - len(self._leads)
        in_workspace = bool(flags.get("skip_if_in_workspace"))
        in_campaign = bool(flags.get("skip_if_in_campaign"))
        in_list = bool(flags.get("skip_if_in_list"))
        verify = bool(flags.get("verify_leads_on_import"))
        campaign = self._campaigns.get(campaign_id) if campaign_id else None
        for index, raw in enumerate(leads):
            key = _norm_email(raw.get("email"))
            rejected = fault is not None and (
                (key is not None and key in fault.rejects)
                or (fault.spec.reject_rate > 0 and self._fault_rng.random() < fault.spec.reject_rate)
            )
            if rejected:
                counts["invalid_email_count"] += 1
                continue
            if list_id is not None and key is None and not (raw.get("first_name") or raw.get("last_name")):
                counts["incomplete_count"] += 1
                continue
            if key is None and list_id is None:
                counts["invalid_email_count"] += 1
                continue
            if key is not None and not _EMAIL_RE.match(key):
                counts["invalid_email_count"] += 1
                continue
            if key is not None:
                if key in seen:
                    counts["duplicate_email_count"] += 1
                    continue
                seen.add(key)
                existing = [self._leads[i] for i in self._by_email.get(key, ())]
                if any(
                    (campaign_id is not None and e.campaign == campaign_id)
                    or (list_id is not None and e.list_id == list_id)
                    for e in existing
                ):
                    counts["duplicated_leads"] += 1
                    continue
                if existing and (
                    in_workspace
                    or (in_campaign and any(e.campaign for e in existing))
                    or (in_list and any(e.list_id for e in existing))
                ):
                    counts["skipped_count"] += 1
                    continue
                if self._is_blocked(key):
                    counts["in_blocklist"] += 1
                    continue
            if remaining <= 0:
                continue  # over the plan's lead limit: not uploaded, no counter says so
            remaining -= 1
            lead = self._create_lead(raw, key, campaign, list_id, verify)
            summary: dict[str, Any] = {"index": index, "id": lead.id}
            for name in ("email", "first_name", "last_name", "phone"):
                if isinstance(raw.get(name), str):
                    summary[name] = raw[name]
            created.append(summary)
        return {
            "status": "success",
            "total_sent": len(leads),
            "leads_uploaded": len(created),
            "in_blocklist": counts["in_blocklist"],
            "blocklist_used": None,
            "duplicated_leads": counts["duplicated_leads"],
            "skipped_count": counts["skipped_count"],
            "invalid_email_count": counts["invalid_email_count"],
            "incomplete_count": counts["incomplete_count"],
            "duplicate_email_count": counts["duplicate_email_count"],
            "remaining_in_plan": max(remaining, 0) if campaign_id else None,
            "created_leads": created,
        }

    def _create_lead(
        self, raw: Mapping[str, Any], key: str | None, campaign: _Campaign | None, list_id: str | None, verify: bool
    ) -> _Lead:
        fields = {name: raw[name] for name in _LEAD_STRING_FIELDS if isinstance(raw.get(name), str)}
        email_value = fields.pop("email", None)
        payload: dict[str, Any] = {}
        for name, alias in _PAYLOAD_NAMES.items():
            value = email_value if name == "email" else fields.get(name)
            if isinstance(value, str):
                payload[alias] = value
        custom = raw.get("custom_variables")
        if isinstance(custom, dict):
            payload.update(custom)
        if list_id is not None:
            payload["list_id"] = list_id
        fate: Fate | None = self._draw_fate() if campaign is not None else None
        lead = _Lead(
            id=self._next_lead_id(),
            email=email_value,
            email_key=key,
            campaign=campaign.id if campaign else None,
            list_id=list_id,
            fields=fields,
            payload=payload,
            created=self._now,
            updated=self._now,
            status=_ACTIVE if campaign is not None else _LIST_ONLY,
            fate=fate,
        )
        interest = raw.get("lt_interest_status")
        if isinstance(interest, int) and interest in _INTEREST_VALUES:
            lead.interest = interest
            lead.interest_changed = self._now
        domain = key.rpartition("@")[2] if key else ""
        lead.esp_code = (1, 1, 1, 2, 2, 999, 1000)[zlib.crc32(domain.encode()) % 7] if domain else 1000
        if verify:
            lead.verification_status = 1
        self._leads[lead.id] = lead
        self._all_ids.append(lead.id)  # ids grow monotonically: the list stays sorted
        if key:
            self._by_email.setdefault(key, set()).add(lead.id)
        if campaign is not None:
            campaign.lead_ids.append(lead.id)
            lead.start_active = campaign.active_clock
            lead.events = self._timeline(fate or "completed")
            self._schedule_next(campaign, lead)
        if list_id is not None:
            self._by_list[list_id].append(lead.id)
        return lead

    def _remove_leads(self, doomed: Collection[str]) -> None:
        doomed_set = set(doomed)
        touched_campaigns: set[str] = set()
        touched_lists: set[str] = set()
        for lead_id in doomed_set:
            lead = self._leads.pop(lead_id, None)
            if lead is None:
                continue
            if lead.email_key:
                ids = self._by_email.get(lead.email_key)
                if ids is not None:
                    ids.discard(lead_id)
                    if not ids:
                        del self._by_email[lead.email_key]
            if lead.campaign:
                touched_campaigns.add(lead.campaign)
            if lead.list_id:
                touched_lists.add(lead.list_id)
        if len(doomed_set) == 1:
            (only,) = doomed_set
            _remove_sorted(self._all_ids, only)
            for cid in touched_campaigns:
                _remove_sorted(self._campaigns[cid].lead_ids, only)
            for lid in touched_lists:
                _remove_sorted(self._by_list[lid], only)
            return
        self._all_ids[:] = [i for i in self._all_ids if i not in doomed_set]
        for members in [self._campaigns[c].lead_ids for c in touched_campaigns] + [
            self._by_list[x] for x in touched_lists
        ]:
            members[:] = [i for i in members if i not in doomed_set]

    def _lead_json(self, lead: _Lead) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": lead.id,
            "timestamp_created": _iso(lead.created),
            "timestamp_updated": _iso(lead.updated),
            "organization": self.organization_id,
            "status": lead.status,
            "email_open_count": lead.opens,
            "email_reply_count": lead.replies,
            "email_click_count": lead.clicks,
            "company_domain": lead.email_key.rpartition("@")[2] if lead.email_key else "",
            "status_summary": {"lastStep": dict(lead.last_step)} if lead.last_step else {},
        }
        if lead.campaign:
            body["campaign"] = lead.campaign
        if lead.email is not None:
            body["email"] = lead.email
        body.update(lead.fields)
        if lead.payload:
            body["payload"] = dict(lead.payload)
        if lead.list_id:
            body["list_id"] = lead.list_id
        if lead.last_contact is not None:
            body["timestamp_last_contact"] = _iso(lead.last_contact)
            body["last_contacted_from"] = _SENDER
            body["timestamp_last_touch"] = _iso(lead.last_contact)
        if lead.last_open is not None:
            body["timestamp_last_open"] = _iso(lead.last_open)
        if lead.last_reply is not None:
            body["timestamp_last_reply"] = _iso(lead.last_reply)
        if lead.interest is not None:
            body["lt_interest_status"] = lead.interest
        if lead.interest_changed is not None:
            body["timestamp_last_interest_change"] = _iso(lead.interest_changed)
        if lead.verification_status is not None:
            body["verification_status"] = lead.verification_status
        if lead.subsequence_id is not None:
            body["subsequence_id"] = lead.subsequence_id  # omitted when in none (absent fields are omitted)
        body["upload_method"] = "api"
        body["esp_code"] = lead.esp_code
        return body

    def _campaign_json(self, campaign: _Campaign) -> dict[str, Any]:
        """The spec's Campaign object; the settings are those of a well-configured cold campaign unless a
        test changed them (`set_campaign_settings`)."""
        gap = round(self.sequence_days / (self.steps - 1), 3) if self.steps > 1 else 0
        step = {
            "type": "email",
            "delay": gap,
            "delay_unit": "days",
            "pre_delay_unit": "days",
            "variants": [{"subject": "Quick question for {{companyName}}", "body": "<div>Hi {{firstName}},</div>"}],
        }
        answer: dict[str, Any] = {
            "id": campaign.id,
            "name": campaign.name,
            "status": campaign.status,
            "campaign_schedule": {
                # start_date/end_date are dates in the schedule's timezone; no end date: runs until stopped
                "start_date": campaign.created.astimezone(UTC).date().isoformat(),
                "schedules": [
                    {
                        "name": "Weekdays",
                        "timing": {"from": "09:00", "to": "17:00"},
                        "days": {"0": False, "1": True, "2": True, "3": True, "4": True, "5": True, "6": False},
                        "timezone": "America/Chicago",
                    }
                ],
            },
            "timestamp_created": _iso(campaign.created),
            "timestamp_updated": _iso(campaign.updated),
            "sequences": [{"steps": [dict(step) for _ in range(self.steps)]}],
            "first_email_text_only": False,
            "email_list": [_SENDER],
            "daily_limit": 50,
            "stop_on_reply": True,
            "stop_on_auto_reply": False,
            "email_tag_list": [],
            "link_tracking": False,
            "open_tracking": False,
            "prioritize_new_leads": False,
            "match_lead_esp": False,
            "insert_unsubscribe_header": True,
            "allow_risky_contacts": False,
            "disable_bounce_protect": False,
            "organization": self.organization_id,
        }
        for name, value in self._campaign_settings.get(campaign.id, {}).items():
            answer[name] = json.loads(json.dumps(value))
        for name in self._campaign_omitted.get(campaign.id, ()):
            answer.pop(name, None)
        return answer

    def _analytics_json(
        self, campaign: _Campaign, counters: Mapping[str, int] | None = None, *, leads_count: bool = True
    ) -> dict[str, Any]:
        """One item of `GET /campaigns/analytics`, from the lifetime counters or the given (windowed) ones."""
        c = Counter(counters) if counters is not None else campaign.counters
        answer: dict[str, Any] = {
            "campaign_name": campaign.name,
            "campaign_id": campaign.id,
            "campaign_status": campaign.status,
            "campaign_is_evergreen": False,
            # Not windowed: the current number of leads whatever the dates (the spec calls it the total
            # number of leads, and this model keeps no history of lead counts); dates narrow the
            # event counters only.
            "leads_count": len(campaign.lead_ids),
            "contacted_count": c["contacted"],
            "emails_sent_count": c["emails_sent"],
            "new_leads_contacted_count": c["contacted"],
            "open_count": c["opened_leads"],
            "open_count_unique": c["opened_leads"],
            "open_count_unique_by_step": c["opens"],
            "reply_count": c["replies"],
            "reply_count_unique": c["replied_leads"],
            "reply_count_unique_by_step": c["replies"],
            "reply_count_automatic": c["auto_replies"],
            "reply_count_automatic_unique": c["auto_replies"],
            "reply_count_automatic_unique_by_step": c["auto_replies"],
            "link_click_count": 0,
            "link_click_count_unique": 0,
            "link_click_count_unique_by_step": 0,
            "bounced_count": c["bounced"],
            "unsubscribed_count": c["unsubscribed"],
            "completed_count": c["completed"],
            "total_opportunities": 0,
            "total_opportunity_value": 0,
        }
        if not leads_count:
            # exclude_total_leads_count=true: the parameter's description says the total leads are
            # left out of the result (the response schema still lists leads_count as required).
            del answer["leads_count"]
        return answer

    def _window_counters(
        self, campaign_ids: Iterable[str], start: datetime | None, end: datetime | None
    ) -> dict[date, Counter[str]]:
        """Day counters of these campaigns summed per UTC day, for the days overlapping [start, end]."""
        totals: dict[date, Counter[str]] = {}
        for campaign_id in campaign_ids:
            for day, counts in self._daily.get(campaign_id, {}).items():
                if _day_in_window(day, start, end):
                    totals.setdefault(day, Counter()).update(counts)
        return totals

    def _http_analytics(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        wanted = [v for values in (query.get("ids", []) + query.get("id", [])) for v in values.split(",") if v]
        chosen = [self._campaigns[c] for c in wanted if c in self._campaigns] if wanted else []
        if not wanted:
            chosen = list(self._campaigns.values())
        start, end = _query_window(query)
        exclude = _query_bool(query, "exclude_total_leads_count", False)
        answer = []
        for campaign in dict.fromkeys(chosen):
            counters: Counter[str] | None = None
            if start is not None or end is not None:
                # Counters are kept per UTC day, so a window counts whole days: every day that
                # overlaps [start, end] (a date-only end_date, read as that day's UTC midnight,
                # therefore includes that day).
                counters = Counter()
                for counts in self._window_counters([campaign.id], start, end).values():
                    for name, value in counts.items():
                        lifetime = _LIFETIME_OF_DAILY.get(name)
                        if lifetime is not None:
                            counters[lifetime] += value
            answer.append(self._analytics_json(campaign, counters, leads_count=not exclude))
        return answer

    def _http_daily_analytics(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        start, end = _query_window(query)
        status_text = _query_first(query, "campaign_status")
        campaigns = list(self._campaigns.values())
        campaign_id = _query_first(query, "campaign_id")
        if campaign_id:
            # An unknown campaign id filters everything out (like unknown ids of /campaigns/analytics).
            campaigns = [c for c in campaigns if c.id == campaign_id]
        if status_text is not None:
            try:
                status = int(status_text)
            except ValueError:
                raise _HttpError(400, "querystring/campaign_status must be number") from None
            if status not in _CAMPAIGN_STATUSES:
                raise _HttpError(400, "querystring/campaign_status must be equal to one of the allowed values")
            campaigns = [c for c in campaigns if c.status == status]
        totals = self._window_counters([c.id for c in campaigns], start, end)
        rows: list[dict[str, Any]] = []
        # One row per day WITH activity, in date order; days without any are left out (the recorded
        # real answer for a workspace without sends is [], not a row of zeros per day).
        for day in sorted(totals):
            c = totals[day]
            if not any(c.values()):
                continue
            rows.append(
                {
                    "date": day.isoformat(),
                    "sent": c["sent"],
                    "contacted": c["contacted"],
                    "new_leads_contacted": c["new_leads_contacted"],
                    "opened": c["opened"],
                    "unique_opened": c["unique_opened"],
                    "replies": c["replies"],
                    "unique_replies": c["unique_replies"],
                    "replies_automatic": c["auto_replies"],
                    "unique_replies_automatic": c["auto_replies"],
                    "clicks": 0,
                    "unique_clicks": 0,
                    "opportunities": 0,
                    "unique_opportunities": 0,
                }
            )
        return rows

    def _has_lead_to_send(self, campaign: _Campaign) -> bool:
        """Whether an active lead of the campaign still has an email to come (its first or a later step)."""
        for lead_id in campaign.lead_ids:
            lead = self._leads[lead_id]
            if lead.status == _ACTIVE and any(kind == "send" for _, kind, _ in lead.events[lead.next_event :]):
                return True
        return False

    def _http_sending_status(self, campaign: _Campaign, query: Mapping[str, list[str]]) -> dict[str, Any]:
        with_ai = _query_bool(query, "with_ai_summary", False)
        shape = self._sending_shapes.get(campaign.id, "full")
        if shape == "no_data":
            return {"diagnostics": None, "summary": None}
        total, available = self._sending_accounts.get(campaign.id, (1, 1))
        waiting = False
        issue_since: str | None = None
        if campaign.status != _ACTIVE:
            status = _SENDING_STATUS_BY_CAMPAIGN[campaign.status]
            issue_since = _iso(campaign.updated)  # the one issue start this model knows: the status change
        elif available == 0:
            status = "no_accounts_available"
        else:
            waiting = not self._has_lead_to_send(campaign)
            status = "waiting_for_leads" if waiting else "healthy"
        sends = [self._leads[i].last_contact for i in campaign.lead_ids]
        last_send = max((moment for moment in sends if moment is not None), default=None)
        last_healthy = _iso(last_send) if last_send is not None else None
        message = _SENDING_MESSAGES[status]
        summary = {
            "status": status,
            "status_message": message,
            "issue_started_at": issue_since,
            "last_healthy_send_at": last_healthy,
            "ai_summary": message if with_ai else None,
        }
        if shape == "summary_only":
            return {"diagnostics": None, "summary": summary}
        diagnostics: dict[str, Any] = {
            "campaign_id": campaign.id,
            "last_updated": _iso(self._now),
            "status": status,
            "issue_tracking": {
                "current_status_code": status,
                "issue_first_seen_at": issue_since,
                "consecutive_loops_with_issue": 0 if status == "healthy" else 1,
                "last_healthy_send_at": last_healthy,
            },
        }
        if campaign.status == _ACTIVE:
            # A campaign that is not running is out of schedule: the spec says these parts may be missing.
            diagnostics["accounts_summary"] = {
                "total_connected": total,
                "available": available,
                "unavailable": {
                    "daily_limit_hit": 0,
                    "slow_ramp_limit_hit": 0,
                    "disconnected": total - available,
                    "global_gap_not_met": 0,
                },
            }
            limit = self._campaign_json(campaign).get("daily_limit")
            today = self._daily.get(campaign.id, {}).get(self._now.date(), Counter())
            if isinstance(limit, int | float) and not isinstance(limit, bool):
                diagnostics["campaign_daily_limit"] = {
                    "limit": limit,
                    "sent": today["sent"],
                    "limit_hit": today["sent"] >= limit,
                }
            diagnostics["leads_status"] = {
                "no_leads_ready": waiting,
                "account_unavailable_skips": 0,
                "delay_not_met_skips": 0,
            }
        return {"diagnostics": diagnostics, "summary": summary}

    def _workspace_json(self) -> dict[str, Any]:
        """The spec's Workspace object (additionalProperties false: only its properties)."""
        answer: dict[str, Any] = {
            "id": self.organization_id,
            "timestamp_created": _iso(self._workspace_created),
            "timestamp_updated": _iso(self._workspace_updated),
            "owner": str(uuid.uuid5(uuid.NAMESPACE_URL, f"coldsync-simulator/owner/{self.organization_id}")),
            "name": "Simulated workspace",
            "plan_id": "pid_hg_v1",
        }
        if self._add_unsub_to_block is not None:
            answer["add_unsub_to_block"] = self._add_unsub_to_block
        return answer

    def _add_block_value(self, value: str) -> dict[str, Any] | None:
        """The entry blocking `value` (an email or a domain, trimmed, lower-cased), created if new.

        Ids come from `_next_lead_id`: UUIDv7-like, ordered by the simulated clock then a sequence,
        so `GET /block-lists-entries` (ordered by id) with `starting_after` = the last id seen
        returns exactly the entries created since. Whether the real API's block-list ids are
        time-ordered is unknown: nothing records that endpoint (recordings show UUIDv7 lead ids but
        UUIDv4 campaign and organization ids) and the spec's example id is its generic v4 placeholder.
        A value already blocked answers its existing entry (one entry per value); the spec does not
        say what the real API does then.
        """
        cleaned = value.strip().lower() if isinstance(value, str) else ""
        is_email = bool(_EMAIL_RE.match(cleaned))
        if not is_email and not _DOMAIN_RE.match(cleaned):
            return None
        existing = self._blocked_values.get(cleaned)
        if existing is not None:
            return self._blocklist[existing]
        entry: dict[str, Any] = {
            "id": self._next_lead_id(),
            "timestamp_created": _iso(self._now),
            "organization_id": self.organization_id,
            "bl_value": cleaned,
            "is_domain": not is_email,
        }
        self._blocklist[entry["id"]] = entry
        self._blocked_values[cleaned] = entry["id"]
        return entry

    # ---- HTTP handling ------------------------------------------------------------------------------

    def _match_fault(self, method: str, path: str, template: str) -> _ActiveFault | None:
        for fault in self._faults:
            pattern = fault.pattern.strip()
            want_method, _, glob = pattern.partition(" ")
            if not glob:
                want_method, glob = "", pattern
            if want_method and want_method.upper() != method:
                continue
            if fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(template, glob):
                return fault
        return None

    def _rate_limited(self) -> bool:
        now = time.monotonic()
        with self._rate_lock:
            for window, span in ((self._recent_second, 1.0), (self._recent_minute, 60.0)):
                while window and window[0] <= now - span:
                    window.popleft()
            if len(self._recent_second) >= self.max_per_second or len(self._recent_minute) >= self.max_per_minute:
                return True
            self._recent_second.append(now)
            self._recent_minute.append(now)
            return False

    def _injected_error(self, status: int, spec: FaultSpec, fault_name: str) -> _Outcome:
        headers: dict[str, str] = {}
        if spec.retry_after is not None and (status == 429 or status >= 500):
            headers["Retry-After"] = f"{spec.retry_after:g}"
        if spec.html:
            page = _CDN_PAGE.format(status=status, reason=_HTTP_REASONS.get(status, "Error"))
            return _Outcome(status, raw=page.encode(), content_type="text/html", headers=headers, fault=fault_name)
        message = spec.message or ("Rate limit exceeded" if status == 429 else f"injected {status}")
        return _Outcome(status, body=_error_body(status, message), headers=headers, fault=fault_name)

    def _serve(
        self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[_Outcome, str, str, dict[str, list[str]], Any]:
        """Decide the answer to one request. Returns (outcome, path, template, query, parsed body)."""
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        body: Any = None
        route = None
        sub = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else None
        template = path
        if sub is not None:
            for route_method, pattern, route_template in _ROUTES:
                found = pattern.match(sub)
                if found and route_method == method:
                    route = (route_template, found.groupdict())
                    template = route_template
                    break
        with self._lock:
            fault = self._match_fault(method, sub or path, template)
            stall = malformed = False
            scripted: int | None = None
            if fault is not None:
                if fault.stalls_left > 0:
                    fault.stalls_left -= 1
                    stall = True
                elif fault.statuses_left:
                    scripted = fault.statuses_left.popleft()
                elif fault.spec.error_rate > 0 and self._fault_rng.random() < fault.spec.error_rate:
                    scripted = fault.spec.error_status
        spec = fault.spec if fault is not None else FaultSpec()
        if spec.latency > 0:
            time.sleep(spec.latency)
        if stall and not spec.stall_applies:
            return _Outcome(0, drop_after=spec.stall_seconds, fault="stall"), path, template, query, body
        if scripted is not None:
            return self._injected_error(scripted, spec, f"status {scripted}"), path, template, query, body
        if route is None:
            message = f"Route {method}:{path} not found"
            return _Outcome(404, _error_body(404, message)), path, template, query, body
        try:
            body = self._parse_body(method, route[0], headers, raw_body)
            self._check_auth(headers)
            if spec.refuse_emails and route[0] == "/leads/add" and isinstance(body, dict):
                refused = {e for e in (_norm_email(x) for x in spec.refuse_emails) if e}
                sent = [_norm_email(lead.get("email")) for lead in body.get("leads") or [] if isinstance(lead, dict)]
                if refused.intersection(e for e in sent if e):
                    raise _HttpError(400, "body/leads must be a valid list of leads")
            if self._rate_limited():
                retry = self.rate_limit_retry_after
                extra = {"Retry-After": f"{retry:g}"} if retry is not None else {}
                raise _HttpError(429, "Rate limit exceeded", extra)
            with self._lock:
                status, answer = self._dispatch(method, route[0], route[1], query, body, fault)
                if fault is not None and not stall and 200 <= status < 300 and fault.malformed_left > 0:
                    fault.malformed_left -= 1
                    malformed = True
            if isinstance(answer, _Deferred):
                answer = answer.run()
        except _HttpError as exc:
            if stall:
                return _Outcome(0, drop_after=spec.stall_seconds, fault="stall"), path, template, query, body
            outcome = _Outcome(exc.status, _error_body(exc.status, exc.message), headers=exc.headers)
            return outcome, path, template, query, body
        if stall:
            # The request may take effect (stall_applies) but nobody hears the answer.
            return _Outcome(0, drop_after=spec.stall_seconds, fault="stall"), path, template, query, body
        if malformed:
            return self._malformed(status, answer, spec), path, template, query, body
        return _Outcome(status, answer), path, template, query, body

    def _malformed(self, status: int, answer: Any, spec: FaultSpec) -> _Outcome:
        kind = spec.malformed_kind
        if kind == "html":
            page = _CDN_PAGE.format(status=200, reason="OK")
            return _Outcome(status, raw=page.encode(), content_type="text/html", fault="malformed html")
        if kind == "empty":
            return _Outcome(status, raw=b"", fault="malformed empty")
        if kind == "wrong_shape":
            return _Outcome(status, body={"unexpected": True}, fault="malformed shape")
        text = json.dumps(answer)
        return _Outcome(status, raw=text[: max(len(text) // 2, 1)].encode(), fault="malformed truncated")

    def _parse_body(self, method: str, template: str, headers: Mapping[str, str], raw_body: bytes) -> Any:
        content_type = (headers.get("content-type") or "").lower()
        is_json = content_type.startswith("application/json")
        if is_json and not raw_body:
            raise _HttpError(400, "Body cannot be empty when content-type is set to 'application/json'")
        if not raw_body:
            return None
        if not is_json:
            raise _HttpError(415, f"Unsupported Media Type: {content_type or 'none'}")
        try:
            return json.loads(raw_body)
        except ValueError:
            raise _HttpError(400, "Body is not valid JSON") from None

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        value = headers.get("authorization")
        if not value:
            raise _HttpError(401, "Missing Authorization header")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            raise _HttpError(401, "Invalid API key")

    def _dispatch(
        self,
        method: str,
        template: str,
        params: Mapping[str, str],
        query: Mapping[str, list[str]],
        body: Any,
        fault: _ActiveFault | None,
    ) -> tuple[int, Any]:
        if (method, template) in _BODYLESS and body is not None and template != "/leads/{id}":
            raise _HttpError(400, "body must be empty")
        paging = fault.spec.paging if fault is not None else "normal"
        if template == "/leads/add":
            return 200, self._http_add(body, fault)
        if template == "/leads/list":
            return 200, self._http_list_leads(body, paging)
        if template == "/leads" and method == "DELETE":
            return 200, self._http_bulk_delete(body)
        if template == "/leads/{id}":
            lead = self._leads.get(params["id"])
            if lead is None:
                raise _HttpError(404, "Lead not found")
            answer = self._lead_json(lead)
            if method == "DELETE":
                self._remove_leads([lead.id])
            return 200, answer
        if template == "/campaigns":
            return 200, self._http_list_campaigns(query, paging)
        if template == "/campaigns/analytics":
            return 200, self._http_analytics(query)
        if template == "/campaigns/analytics/daily":
            return 200, self._http_daily_analytics(query)
        if template == "/campaigns/{id}/sending-status":
            campaign = self._campaigns.get(params["id"])
            if campaign is None:
                raise _HttpError(404, "Campaign not found")
            return 200, self._http_sending_status(campaign, query)
        if template.startswith("/campaigns/{id}"):
            campaign = self._campaigns.get(params["id"])
            if campaign is None:
                raise _HttpError(404, "Campaign not found")
            if body is not None:
                raise _HttpError(400, "body must be empty")
            if template.endswith("/activate"):
                campaign.status, campaign.updated = _ACTIVE, self._now
            elif template.endswith("/pause"):
                campaign.status, campaign.updated = _PAUSED, self._now
            return 200, self._campaign_json(campaign)
        if template == "/block-lists-entries/bulk-create":
            return 200, self._http_block_bulk(body)
        if template == "/block-lists-entries" and method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("bl_value"), str):
                raise _HttpError(400, "body must have required property 'bl_value'")
            entry = self._add_block_value(body["bl_value"])
            if entry is None:
                raise _HttpError(400, "bl_value must be an email or a domain")
            return 200, dict(entry)
        if template == "/block-lists-entries" and method == "GET":
            return 200, self._http_list_blocklist(query, paging)
        if template == "/workspaces/current":
            return 200, self._workspace_json()
        if template == "/leads/move":
            return 200, self._http_move(body)
        if template == "/background-jobs/{id}":
            return 200, self._http_background_job(params["id"], query)
        if template == "/lead-lists":
            return 200, self._http_create_list(body)
        if template == "/lead-labels":
            return 200, self._http_list_labels(query, paging)
        if template == "/leads/update-interest-status":
            # The recording answers 200 (the spec documents 202): the recording shows the real server.
            return 200, self._http_update_interest(body)
        if template in ("/leads/subsequence/move", "/leads/subsequence/remove"):
            return 200, self._http_subsequence(template, body)
        if template.startswith(("/webhooks", "/webhook-events")):
            return 200, self._http_webhooks(method, template, params, query, body, paging)
        if template == "/block-lists-entries" and method == "DELETE":
            # Faithful to the real service: without an id this wipes the whole block list.
            wiped = [dict(e) for e in self._blocklist.values()]
            self._blocklist.clear()
            self._blocked_values.clear()
            return 200, wiped
        raise _HttpError(404, f"Route {method}:{template} not found")

    # ---- endpoint bodies ----------------------------------------------------------------------------

    def _http_add(self, body: Any, fault: _ActiveFault | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        leads = body.get("leads")
        if not isinstance(leads, list):
            raise _HttpError(400, "body must have required property 'leads'")
        if not 1 <= len(leads) <= 1000:
            raise _HttpError(400, "body/leads must NOT have fewer than 1 items or more than 1000 items")
        for flag in ("skip_if_in_workspace", "skip_if_in_campaign", "skip_if_in_list", "verify_leads_on_import"):
            if flag in body and not isinstance(body[flag], bool):
                raise _HttpError(400, f"body/{flag} must be boolean")
        for index, lead in enumerate(leads):
            _validate_lead_item(index, lead)
        campaign_id, list_id = body.get("campaign_id"), body.get("list_id")
        if campaign_id and list_id:
            raise _HttpError(400, "Provide either campaign_id or list_id, not both")
        if not campaign_id and not list_id:
            raise _HttpError(400, "Either campaign_id or list_id is required")
        if campaign_id is not None and (not isinstance(campaign_id, str) or campaign_id not in self._campaigns):
            raise _HttpError(404, "Campaign not found")
        if list_id is not None and (not isinstance(list_id, str) or list_id not in self._lists):
            raise _HttpError(404, "List not found")
        return self._do_add(campaign_id, list_id, leads, body, fault)

    def _http_list_leads(self, body: Any, paging: str) -> dict[str, Any]:
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        limit = body.get("limit", self.default_page_size)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise _HttpError(400, "body/limit must be integer")
        if limit < 1:
            raise _HttpError(400, "body/limit must be >= 1")
        if limit > 100:
            raise _HttpError(400, "body/limit must be <= 100")
        if "starting_after" in body and not isinstance(body["starting_after"], str):
            raise _HttpError(400, "body/starting_after must be string")
        ordered, matches = self._lead_query(body)
        cursor = body.get("starting_after")
        if paging == "repeat_cursor" or paging == "endless":
            cursor = None
        start = bisect_right(ordered, cursor) if cursor else 0
        items: list[dict[str, Any]] = []
        for lead_id in _islice_from(ordered, start):
            lead = self._leads[lead_id]
            if not matches(lead):
                continue
            items.append(self._lead_json(lead))
            if len(items) >= limit:
                break
        answer: dict[str, Any] = {"items": items}
        if items and paging != "no_cursor":
            answer["next_starting_after"] = items[-1]["id"]
            if paging == "endless":
                answer["next_starting_after"] = str(uuid.UUID(int=self._fault_rng.getrandbits(128), version=4))
        return answer

    def _lead_query(self, body: Mapping[str, Any]) -> tuple[Sequence[str], Callable[[_Lead], bool]]:
        """The lead selection of a `POST /leads/list` (or `/leads/move`) body: candidate ids in id order
        and the test each must pass. Validates the selection fields; paging is the caller's.

        `interest_status` (a number) is not a property of the list body in the spec, but its `filter`
        description says "for custom lead labels, use the `interest_status` field": read here as an
        exact `lt_interest_status` match (built-in or custom). `in_campaign` / `in_list` test whether
        the lead sits in a campaign / a list.
        """
        for name in ("campaign", "list_id", "filter", "search"):
            if name in body and not isinstance(body[name], str):
                raise _HttpError(400, f"body/{name} must be string")
        for name in ("contacts", "ids", "excluded_ids"):
            if name in body and (not isinstance(body[name], list) or not all(isinstance(x, str) for x in body[name])):
                raise _HttpError(400, f"body/{name} must be array of strings")
        for name in ("in_campaign", "in_list"):
            if name in body and not isinstance(body[name], bool):
                raise _HttpError(400, f"body/{name} must be boolean")
        wanted_interest = body.get("interest_status")
        if "interest_status" in body and (
            isinstance(wanted_interest, bool) or not isinstance(wanted_interest, int | float)
        ):
            raise _HttpError(400, "body/interest_status must be number")
        filter_name = body.get("filter")
        predicate = self._predicates.get(filter_name) if filter_name else None
        if filter_name and predicate is None:
            raise _HttpError(400, f"body/filter has an unknown value: {filter_name}")
        campaign_id, list_id = body.get("campaign"), body.get("list_id")
        in_campaign, in_list = body.get("in_campaign"), body.get("in_list")
        excluded = set(body.get("excluded_ids") or ())
        search = (body.get("search") or "").strip().lower()
        ordered: Sequence[str]
        if "contacts" in body or "ids" in body:
            candidates: set[str] | None = None
            if "contacts" in body:
                candidates = set()
                for contact in body["contacts"]:
                    candidates |= self._by_email.get(_norm_email(contact) or "", set())
            if "ids" in body:
                by_ids = {i for i in body["ids"] if i in self._leads}
                candidates = by_ids if candidates is None else candidates & by_ids
            ordered = sorted(candidates or ())
        elif campaign_id is not None:
            campaign = self._campaigns.get(campaign_id)
            ordered = campaign.lead_ids if campaign else []
        elif list_id is not None:
            ordered = self._by_list.get(list_id, [])
        else:
            ordered = self._all_ids

        def matches(lead: _Lead) -> bool:
            if campaign_id is not None and lead.campaign != campaign_id:
                return False
            if list_id is not None and lead.list_id != list_id:
                return False
            if in_campaign is not None and (lead.campaign is not None) != in_campaign:
                return False
            if in_list is not None and (lead.list_id is not None) != in_list:
                return False
            if wanted_interest is not None and lead.interest != wanted_interest:
                return False
            if lead.id in excluded or (predicate is not None and not predicate(lead)):
                return False
            return not search or _search_hit(lead, search)

        return ordered, matches

    def _http_move(self, body: Any) -> dict[str, Any]:
        """`POST /leads/move`: validate, queue a `move-leads` background job, answer it (pending).

        Assumed where the spec is silent: exactly one of `to_campaign_id` / `to_list_id` (else 400);
        an unknown target is a 404; the leads are selected by the stored filters when the job runs
        (a lead deleted before that is not moved); a lead whose email is already in the target is not
        moved (`duplicated_leads`) whether or not `check_duplicates` is set (the spec does not say what
        the flag changes); a lead already moved out of the source by an earlier job is no longer
        selected, so moving the same ids twice moves them once. Checked against the spec (moveLeads,
        BackgroundJob) and recorded move-leads.json / get-background-job.json: field names, the pending
        answer with `user_id: null`, 24-hex job ids, the finished job's `data` keys and order.
        """
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        to_campaign, to_list = body.get("to_campaign_id"), body.get("to_list_id")
        for name in ("to_campaign_id", "to_list_id"):
            if name in body and not isinstance(body[name], str):
                raise _HttpError(400, f"body/{name} must be string")
        if bool(to_campaign) == bool(to_list):
            raise _HttpError(400, "Provide either to_campaign_id or to_list_id")
        if to_campaign and to_campaign not in self._campaigns:
            raise _HttpError(404, "Campaign not found")
        if to_list and to_list not in self._lists:
            raise _HttpError(404, "List not found")
        if "ids" in body and not (body.get("campaign") or body.get("list_id")):
            raise _HttpError(400, "When using ids, provide either campaign or list_id")
        for name in ("copy_leads", "check_duplicates", "check_duplicates_in_campaigns", "reset_interest_status"):
            if name in body and not isinstance(body[name], bool):
                raise _HttpError(400, f"body/{name} must be boolean")
        limit = body.get("limit")
        if "limit" in body and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 1):
            raise _HttpError(400, "body/limit must be a number >= 1")
        self._lead_query(body)  # the selection fields are checked now, applied when the job runs
        source_campaign, source_list = body.get("campaign"), body.get("list_id")
        if source_list:
            entity_id, entity_type = source_list, "list"
        elif source_campaign:
            entity_id, entity_type = source_campaign, "campaign"
        else:
            entity_id, entity_type = self.organization_id, "workspace"  # assumed: no source named
        job_id = f"{self._id_rng.getrandbits(96):024x}"
        fail = self._jobs_to_fail > 0
        self._jobs_to_fail -= int(fail)
        job: dict[str, Any] = {
            "id": job_id,
            "created": self._now,
            "updated": self._now,
            "status": "pending",
            "progress": 0,
            "polls": 0,
            "polls_needed": self.job_polls,
            "due": None if self.job_days is None else self._now + timedelta(days=self.job_days),
            "fail": fail,
            "entity_id": entity_id,
            "entity_type": entity_type,
            "data": {"filters": json.loads(json.dumps(body))},
        }
        self._jobs[job_id] = job
        if job["due"] is not None:
            self._push_wall(job["due"], "job", job_id)
        return self._job_json(job, created=True)

    def _do_move(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out a move job's filters now; the job's `data` (recorded keys and order).

        A lead moved to a list leaves its campaign (status 0, no `campaign`: list leads are in no
        campaign, as recorded); a lead moved to a campaign leaves its list and starts that campaign's
        sequence from the first step (status 1). Both leave a subsequence. `copy_leads` leaves the
        original where it is and adds a copy. A lead whose email is already in the target is counted
        in `duplicated_leads` and stays; with `check_duplicates_in_campaigns`, one whose email is in
        another campaign counts in `leads_in_other_campaigns`; a blocked email moved to a campaign in
        `ignored_leads_from_blocklist`. The interest status is kept unless `reset_interest_status`.
        """
        to_campaign_id, to_list = filters.get("to_campaign_id"), filters.get("to_list_id")
        target = self._campaigns.get(to_campaign_id) if to_campaign_id else None
        if target is None and (to_list not in self._lists):
            # the target was deleted meanwhile: nothing can move (the simulator cannot delete either)
            to_list = None
        ordered, matches = self._lead_query(filters)
        limit = filters.get("limit")
        selected = [self._leads[i] for i in ordered if matches(self._leads[i])]
        if limit is not None:
            selected = selected[: int(limit)]
        counts: Counter[str] = Counter()
        moved: list[_Lead] = []
        for lead in selected:
            key = lead.email_key
            in_target = [
                self._leads[i]
                for i in self._by_email.get(key or "", ())
                if (target is not None and self._leads[i].campaign == target.id)
                or (to_list is not None and self._leads[i].list_id == to_list)
            ]
            if in_target:
                counts["duplicated_leads"] += 1
                continue
            if filters.get("check_duplicates_in_campaigns") and any(
                self._leads[i].campaign is not None and i != lead.id for i in self._by_email.get(key or "", ())
            ):
                counts["leads_in_other_campaigns"] += 1
                continue
            if target is not None and key is not None and self._is_blocked(key):
                counts["ignored_leads_from_blocklist"] += 1
                continue
            if target is None and to_list is None:
                continue
            moved.append(
                self._relocate(
                    lead, target, to_list, bool(filters.get("copy_leads")), bool(filters.get("reset_interest_status"))
                )
            )
        emails = [lead.email for lead in moved if lead.email is not None]
        return {
            "moved_lead_emails": emails[:10_000],
            "filters": json.loads(json.dumps(filters)),
            "total_leads": len(selected),
            "moved_leads": len(moved),
            "duplicated_leads": counts["duplicated_leads"],
            "leads_missing_email": None,
            "leads_in_other_campaigns": counts["leads_in_other_campaigns"],
            "ignored_leads_from_blocklist": counts["ignored_leads_from_blocklist"],
        }

    def _relocate(
        self, lead: _Lead, campaign: _Campaign | None, list_id: str | None, copy: bool, reset_interest: bool
    ) -> _Lead:
        """Move (or copy) one lead to a campaign or a list; return the lead now in the target."""
        if copy:
            raw: dict[str, Any] = {**lead.fields, "email": lead.email}
            moved = self._create_lead(raw, lead.email_key, campaign, list_id, False)
            moved.payload = {**lead.payload, **moved.payload}
            if list_id is None:
                moved.payload.pop("list_id", None)
            if not reset_interest:
                moved.interest, moved.interest_changed = lead.interest, lead.interest_changed
            return moved
        if lead.campaign is not None:
            source = self._campaigns[lead.campaign]
            _remove_sorted(source.lead_ids, lead.id)
            # drop its pending steps there, so a move back cannot replay them
            source.heap = [entry for entry in source.heap if entry[2] != lead.id]
            heapq.heapify(source.heap)
        if lead.list_id is not None:
            _remove_sorted(self._by_list[lead.list_id], lead.id)
        lead.subsequence_id = None
        lead.events, lead.next_event = [], 0
        if reset_interest:
            lead.interest = lead.interest_changed = None
        if campaign is not None:
            lead.campaign, lead.list_id = campaign.id, None
            lead.payload.pop("list_id", None)
            insort(campaign.lead_ids, lead.id)
            lead.status = _ACTIVE
            lead.fate = self._draw_fate()
            lead.start_active = campaign.active_clock
            lead.events = self._timeline(lead.fate)
            self._schedule_next(campaign, lead)
        else:
            assert list_id is not None
            lead.campaign, lead.list_id = None, list_id
            lead.payload["list_id"] = list_id
            insort(self._by_list[list_id], lead.id)
            lead.status, lead.fate = _LIST_ONLY, None
        lead.updated = self._now
        return lead

    def _http_background_job(self, job_id: str, query: Mapping[str, list[str]]) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise _HttpError(404, "Background job not found")
        self._poll_job(job)
        answer = self._job_json(job)
        wanted = _query_first(query, "data_fields")
        if wanted:
            names = [n.strip() for n in wanted.split(",") if n.strip()]
            answer["data"] = {n: answer["data"][n] for n in names if n in answer["data"]}
        return answer

    def _http_create_list(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        extra = set(body) - {"name", "has_enrichment_task", "owned_by"}
        if extra:
            raise _HttpError(400, f"body must NOT have additional properties ({sorted(extra)[0]})")
        name = body.get("name")
        if not isinstance(name, str):
            raise _HttpError(400, "body must have required property 'name'")
        list_id = self.create_list(name)
        answer = self._list_json(list_id)
        if isinstance(body.get("has_enrichment_task"), bool):
            answer["has_enrichment_task"] = body["has_enrichment_task"]
        if isinstance(body.get("owned_by"), str):
            answer["owned_by"] = body["owned_by"]
        return answer

    def _http_update_interest(self, body: Any) -> dict[str, Any]:
        """`POST /leads/update-interest-status`: every lead with that email (narrowed by `campaign_id`
        or `list_id`) gets the value. Instantly runs it as a background job without an id; the simulator
        applies it before answering (assumed). A valid but unknown email changes nothing and is still
        accepted (a background job cannot know it up front); a malformed one is a 400."""
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        if "lead_email" not in body:
            raise _HttpError(400, "body must have required property 'lead_email'")
        if "interest_value" not in body:
            raise _HttpError(400, "body must have required property 'interest_value'")
        email, value = body["lead_email"], body["interest_value"]
        key = _norm_email(email)
        if key is None or not _EMAIL_RE.match(key):
            raise _HttpError(400, "Invalid lead email")
        if value is not None and not self._known_interest(value):
            raise _HttpError(400, "body/interest_value must be a lead interest status")
        campaign_id, list_id = body.get("campaign_id"), body.get("list_id")
        for lead_id in sorted(self._by_email.get(key, ())):
            lead = self._leads[lead_id]
            if campaign_id is not None and lead.campaign != campaign_id:
                continue
            if list_id is not None and lead.list_id != list_id:
                continue
            self._set_interest(lead, None if value is None else int(value), self._now)
        return {"message": _INTEREST_JOB_MESSAGE}

    def _http_subsequence(self, template: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise _HttpError(400, "body must have required property 'id'")
        lead = self._leads.get(body["id"])
        if lead is None:
            raise _HttpError(404, "Lead not found")
        if template.endswith("/remove"):
            self._leave_subsequence(lead, self._now)
            return self._lead_json(lead)
        sub_id = body.get("subsequence_id")
        if not isinstance(sub_id, str):
            raise _HttpError(400, "body must have required property 'subsequence_id'")
        sub = self._subsequences.get(sub_id)
        if sub is None:
            raise _HttpError(404, "Subsequence not found")
        if lead.campaign != sub["parent_campaign"]:
            raise _HttpError(400, "The lead is not in the subsequence's campaign")
        self._enter_subsequence(lead, sub_id, self._now)
        return self._lead_json(lead)

    def _http_bulk_delete(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        campaign_id, list_id = body.get("campaign_id"), body.get("list_id")
        if not campaign_id and not list_id:
            raise _HttpError(400, "body must have required property 'campaign_id' or 'list_id'")
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise _HttpError(400, "body/ids must be array of strings")
        limit = body.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000):
            raise _HttpError(400, "body/limit must be an integer between 1 and 10000")
        status = body.get("status")
        if status is not None and status not in (1, 2, 3, -1, -2, -3):
            raise _HttpError(400, "body/status must be equal to one of the allowed values")
        if campaign_id:
            campaign = self._campaigns.get(campaign_id)
            pool: Sequence[str] = campaign.lead_ids if campaign else []
        else:
            pool = self._by_list.get(str(list_id), [])
        candidates = [i for i in ids if i in self._leads] if ids is not None else list(pool)
        doomed: list[str] = []
        for lead_id in candidates:
            lead = self._leads[lead_id]
            if campaign_id and lead.campaign != campaign_id:
                continue
            if list_id and lead.list_id != list_id:
                continue
            if status is not None and lead.status != status:
                continue
            doomed.append(lead_id)
            if limit is not None and len(doomed) >= limit:
                break
        self._remove_leads(doomed)
        return {"count": len(set(doomed))}

    def _http_list_campaigns(self, query: Mapping[str, list[str]], paging: str) -> dict[str, Any]:
        limit = _query_int(query, "limit", self.default_page_size, 1, 100)
        status_text = _query_first(query, "status")
        search = (_query_first(query, "search") or "").lower()
        campaigns = list(self._campaigns.values())
        cursor = _query_first(query, "starting_after")
        if paging != "normal":
            cursor = None
        start = 0
        if cursor:
            ids = [c.id for c in campaigns]
            start = ids.index(cursor) + 1 if cursor in ids else len(ids)
        items: list[dict[str, Any]] = []
        for campaign in campaigns[start:]:
            if status_text is not None and str(campaign.status) != status_text:
                continue
            if search and search not in campaign.name.lower():
                continue
            items.append(self._campaign_json(campaign))
            if len(items) >= limit:
                break
        answer: dict[str, Any] = {"items": items}
        if items and paging != "no_cursor":
            answer["next_starting_after"] = items[-1]["id"]
        return answer

    def _http_block_bulk(self, body: Any) -> dict[str, Any]:
        values = body.get("bl_values") if isinstance(body, dict) else None
        if not isinstance(values, list):
            raise _HttpError(400, "body must have required property 'bl_values'")
        for position, value in enumerate(values):
            if not isinstance(value, str):
                raise _HttpError(400, f"body/bl_values/{position} must be string")
        if not 1 <= len(values) <= 1000:
            raise _HttpError(400, "body/bl_values must NOT have fewer than 1 items or more than 1000 items")
        items: list[dict[str, Any]] = []
        invalid = 0
        for value in values:
            entry = self._add_block_value(value)
            if entry is None:
                invalid += 1
            else:
                items.append(dict(entry))
        return {"items": items, "valid_count": len(items), "invalid_count": invalid}

    def _http_list_blocklist(self, query: Mapping[str, list[str]], paging: str) -> dict[str, Any]:
        limit = _query_int(query, "limit", self.default_page_size, 1, 100)
        search = (_query_first(query, "search") or "").lower()
        domains_flag = _query_first(query, "domains_only")
        if domains_flag not in (None, "true", "false"):
            raise _HttpError(400, "querystring/domains_only must be boolean")
        domains_only = domains_flag == "true"
        return _page_by_id(self._blocklist, query, paging, limit,
                           lambda e: (not search or search in e["bl_value"]) and (not domains_only or e["is_domain"]))

    def _http_list_labels(self, query: Mapping[str, list[str]], paging: str) -> dict[str, Any]:
        """GET /lead-labels (official spec): `limit` 1-100, `search` (in the label's name), `interest_status`
        (a sentiment: positive, neutral or negative), `starting_after`. Assumed where the spec is silent:
        the cursor is the last item's id (the answer's example is a UUID; the parameter's text says a
        timestamp), labels come in id order."""
        limit = _query_int(query, "limit", self.default_page_size, 1, 100)
        search = (_query_first(query, "search") or "").lower()
        sentiment = _query_first(query, "interest_status")
        if sentiment is not None and sentiment not in LABEL_SENTIMENTS:
            raise _HttpError(400, "querystring/interest_status must be equal to one of the allowed values")
        return _page_by_id(self._labels, query, paging, limit,
                           lambda e: (not search or search in str(e["label"]).lower())
                           and (sentiment is None or e["interest_status_label"] == sentiment))

    # ---- webhooks (issue #18) -----------------------------------------------------------------------

    def _next_webhook_id(self) -> str:
        """Ids of webhooks and webhook events that sort in creation order (as `_next_lead_id`, own RNG)."""
        self._webhook_seq += 1
        millis = int(self._now.timestamp() * 1000) & ((1 << 48) - 1)
        seq = self._webhook_seq & ((1 << 26) - 1)
        value = ((millis << 80) | (0x7 << 76) | (((seq >> 14) & 0xFFF) << 64) | (0b10 << 62)
                 | ((seq & 0x3FFF) << 48) | self._webhook_rng.getrandbits(48))
        return str(uuid.UUID(int=value))

    def _webhook_json(self, hook: _Webhook) -> dict[str, Any]:
        """The spec's Webhook object (every property; nulls where unset)."""
        return {
            "id": hook.id,
            "organization": self.organization_id,
            "campaign": hook.campaign,
            "name": hook.name,
            "target_hook_url": hook.target_hook_url,
            "event_type": hook.event_type,
            "custom_interest_value": hook.custom_interest_value,
            "headers": dict(hook.headers) if hook.headers is not None else None,
            "timestamp_created": _iso(hook.created),
            "status": hook.status,
            "timestamp_error": _iso(hook.error_at) if hook.error_at is not None else None,
        }

    def _webhook_payload(self, event_type: str, campaign: _Campaign, lead: _Lead, wall: datetime) -> dict[str, Any]:
        """The delivery body, as Instantly's guide "Webhook events" lists it: the base fields `timestamp`,
        `event_type`, `workspace`, `campaign_id`, `campaign_name`, then `lead_email`, `email_account`, `step` (the
        step last sent, from 1), `variant` (always 1: the simulated sequences have one variant a step),
        `is_first` (the lead's first event of this type), and for replies `email_id`, `unibox_url` (assumed
        URL shape) and the reply fields. No lead data is merged in."""
        payload: dict[str, Any] = {
            "timestamp": _iso(wall),
            "event_type": event_type,
            "workspace": self.organization_id,
            "campaign_id": campaign.id,
            "campaign_name": campaign.name,
        }
        if lead.email is not None:
            payload["lead_email"] = lead.email
        payload["email_account"] = _SENDER
        if lead.steps_sent > 0:
            payload["step"], payload["variant"] = lead.steps_sent, 1
        first = (lead.id, event_type) not in self._webhook_firsts
        self._webhook_firsts.add((lead.id, event_type))
        payload["is_first"] = first
        if event_type == "reply_received":
            reply_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"coldsync-simulator/reply/{lead.id}/{lead.replies}"))
            payload.update({
                "email_id": reply_id,
                "unibox_url": f"https://app.instantly.ai/app/unibox?thread={reply_id}",
                "reply_text_snippet": _REPLY_TEXT[:40],
                "reply_subject": f"Re: {campaign.name}",
                "reply_text": _REPLY_TEXT,
                "reply_html": f"<div>{_REPLY_TEXT}</div>",
            })
        return payload

    def _queue_webhook_event(self, event_type: str, campaign: _Campaign, lead: _Lead, wall: datetime) -> None:
        """Queue one event for every active webhook subscribed to it (called under the lock)."""
        if not self.webhooks_in_plan or self._webhook_stop.is_set():
            return
        hooks = [h for h in self._webhooks.values() if h.subscribes(event_type, campaign.id)]
        if not hooks:
            return
        payload = self._webhook_payload(event_type, campaign, lead, wall)
        delivery = _WebhookDelivery(payload, json.dumps(payload, separators=(",", ":")).encode("utf-8"), lead.email)
        for hook in hooks:
            hook.queue.append(delivery)
            self._webhook_busy += 1
            if hook.worker is None:
                hook.worker = threading.Thread(target=self._webhook_worker, args=(hook,), daemon=True,
                                               name=f"instantly-sim-webhook-{hook.id[-6:]}")
                hook.worker.start()

    def _webhook_worker(self, hook: _Webhook) -> None:
        """Deliver `hook`'s queue in order, then end (a new event starts a new worker)."""
        while True:
            with self._lock:
                if not hook.queue:
                    hook.worker = None
                    return
                delivery = hook.queue.popleft()
            try:
                self._deliver(hook, delivery)
            finally:
                with self._webhook_idle:
                    self._webhook_busy -= 1
                    self._webhook_idle.notify_all()

    def _deliver(self, hook: _Webhook, delivery: _WebhookDelivery) -> None:
        """One event to one webhook: the first attempt and up to len(webhook_retry_delays) retries, each listed
        as a WebhookEvent. Dropped unlisted when the webhook is disabled, deleted or out of plan, or the
        simulator stops, before an attempt."""
        group = None
        retries = len(self.webhook_retry_delays)
        for attempt in range(retries + 1):
            with self._lock:
                if (self._webhook_stop.is_set() or hook.status != _WEBHOOK_ACTIVE or not self.webhooks_in_plan
                        or self._webhooks.get(hook.id) is not hook):
                    return
                url, headers = hook.target_hook_url, dict(hook.headers or {})
                group = group or self._next_webhook_id()
            status, error, millis = _post_webhook(url, headers, delivery.body, self.webhook_timeout)
            success = status is not None and 200 <= status < 300
            will_retry = not success and attempt < retries
            with self._lock:
                now = self._now
                event_id = self._next_webhook_id()
                self._webhook_events[event_id] = {
                    "id": event_id,
                    "timestamp_created": _iso(now),
                    "timestamp_created_date": now.date().isoformat(),
                    "organization_id": self.organization_id,
                    "payload": delivery.payload,
                    "success": success,
                    "retry_count": attempt,
                    "will_retry": will_retry,
                    "webhook_url": url,
                    "status_code": status,
                    "error_message": None if success else error,
                    "timestamp_next_retry": (
                        _iso(now + timedelta(seconds=self.webhook_retry_delays[attempt])) if will_retry else None),
                    "retry_group_id": group,
                    "retry_successful": success if attempt > 0 else None,
                    "lead_email": delivery.lead_email,
                    "response_time_ms": millis,
                }
                if success:
                    hook.failed_in_a_row = 0
                    return
                if not will_retry:
                    hook.failed_in_a_row += 1
                    if hook.failed_in_a_row >= self.webhook_disable_after and hook.status == _WEBHOOK_ACTIVE:
                        hook.status, hook.error_at = _WEBHOOK_DISABLED, now
                    return
            if self._webhook_stop.wait(self.webhook_retry_delays[attempt]):
                return

    def _webhook_fields(self, body: Any, *, create: bool) -> dict[str, Any]:
        """The CreateWebhook (or patch) body checked as the spec's schema does: 400 naming what is wrong, 404
        for a campaign that does not exist (assumed)."""
        if not isinstance(body, dict):
            raise _HttpError(400, "body must be object")
        extra = sorted(set(body) - _WEBHOOK_FIELDS)
        if extra:
            raise _HttpError(400, f"body must NOT have additional properties ({extra[0]})")
        if create and "target_hook_url" not in body:
            raise _HttpError(400, "body must have required property 'target_hook_url'")
        if not create and not body:
            raise _HttpError(400, "body must NOT have fewer than 1 properties")
        url = body.get("target_hook_url")
        if "target_hook_url" in body and (not isinstance(url, str) or not re.match(r"^https?://\S+$", url)):
            raise _HttpError(400, 'body/target_hook_url must match pattern "^https?://"')
        if body.get("event_type") is not None and body["event_type"] not in WEBHOOK_EVENT_TYPES:
            raise _HttpError(400, "body/event_type must be equal to one of the allowed values")
        for name in ("campaign", "name"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise _HttpError(400, f"body/{name} must be string,null")
        value = body.get("custom_interest_value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _HttpError(400, "body/custom_interest_value must be number,null")
        headers = body.get("headers")
        if headers is not None and (not isinstance(headers, dict)
                                    or not all(isinstance(v, str) for v in headers.values())):
            raise _HttpError(400, "body/headers must be an object of strings")
        if body.get("campaign") is not None and body["campaign"] not in self._campaigns:
            raise _HttpError(404, "Campaign not found")
        return dict(body)

    def _http_webhooks(self, method: str, template: str, params: Mapping[str, str],
                       query: Mapping[str, list[str]], body: Any, paging: str) -> Any:
        """The webhook operations of the official spec (createWebhook, listWebhook, getWebhook, patchWebhook,
        deleteWebhook, resumeWebhook, testWebhook, listWebhookEventTypes, listWebhookEvent); 402 for all of
        them when the plan has no webhooks (`webhooks_in_plan`). Listings are in id (= creation) order with
        the last item's id as the cursor."""
        if not self.webhooks_in_plan:
            raise _HttpError(402, _WEBHOOK_PLAN_MESSAGE)
        if template == "/webhook-events":
            return self._http_webhook_events(query, paging)
        if template == "/webhooks/event-types":
            standard = [{"id": t, "label": t.replace("_", " ").capitalize(), "type": "standard"}
                        for t in WEBHOOK_EVENT_TYPES if t != "all_events"]
            custom = [{"id": str(label["interest_status"]), "label": str(label["label"]), "type": "custom"}
                      for label in self._labels.values()]  # assumed shape of a custom label's entry
            return {"event_types": standard + custom}
        if template == "/webhooks" and method == "GET":
            limit = _query_int(query, "limit", self.default_page_size, 1, 100)
            campaign = _query_first(query, "campaign")
            event_type = _query_first(query, "event_type")
            if event_type is not None and event_type not in WEBHOOK_EVENT_TYPES[:-2]:
                raise _HttpError(400, "querystring/event_type must be equal to one of the allowed values")
            shown = {i: self._webhook_json(h) for i, h in self._webhooks.items()}
            return _page_by_id(shown, query, paging, limit,
                               lambda w: (campaign is None or w["campaign"] == campaign)
                               and (event_type is None or w["event_type"] == event_type))
        if template == "/webhooks":
            fields = self._webhook_fields(body, create=True)
            hook = _Webhook(
                id=self._next_webhook_id(), target_hook_url=fields["target_hook_url"],
                event_type=fields.get("event_type"), campaign=fields.get("campaign"), name=fields.get("name"),
                headers=fields.get("headers"), custom_interest_value=fields.get("custom_interest_value"),
                created=self._now)
            self._webhooks[hook.id] = hook
            return self._webhook_json(hook)
        hook_or_none = self._webhooks.get(params["id"])
        if hook_or_none is None:
            raise _HttpError(404, "Webhook not found")
        hook = hook_or_none
        if method in ("POST", "DELETE") and body is not None:
            raise _HttpError(400, "body must be empty")
        if template == "/webhooks/{id}/resume":
            hook.status, hook.error_at, hook.failed_in_a_row = _WEBHOOK_ACTIVE, None, 0
        elif template == "/webhooks/{id}/test":
            return _Deferred(lambda: self._test_webhook(hook))
        elif method == "PATCH":
            for name, value in self._webhook_fields(body, create=False).items():
                setattr(hook, name, value)
        elif method == "DELETE":
            del self._webhooks[hook.id]
            self._webhook_busy -= len(hook.queue)  # its queue is dropped; its worker ends at its next look
            hook.queue.clear()
            self._webhook_idle.notify_all()
        return self._webhook_json(hook)

    def _test_webhook(self, hook: _Webhook) -> dict[str, Any]:
        """POST a test payload to the webhook now (outside the lock) and say how it went; not listed as a
        WebhookEvent. The test payload's shape is assumed (the spec only documents the answer): the base fields
        with the webhook's event type (`email_sent` for `all_events` or a label webhook), its campaign or a
        nil UUID, `campaign_name` "Test campaign" and `lead_email` test.lead@example.com."""
        with self._lock:
            event_type = hook.event_type if hook.event_type not in (None, "all_events") else "email_sent"
            payload = {"timestamp": _iso(self._now), "event_type": event_type, "workspace": self.organization_id,
                       "campaign_id": hook.campaign or str(uuid.UUID(int=0)), "campaign_name": "Test campaign",
                       "lead_email": "test.lead@example.com"}
            url, headers = hook.target_hook_url, dict(hook.headers or {})
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        status, error, millis = _post_webhook(url, headers, body, self.webhook_timeout)
        answer: dict[str, Any] = {"success": status is not None and 200 <= status < 300,
                                  "response_time_ms": millis}
        if status is not None:
            answer["status_code"] = status
        if answer["success"]:
            answer["message"] = "Webhook test successful"
        else:
            answer["message"], answer["error"] = "Webhook test failed", error or "failed"
        return answer

    def _http_webhook_events(self, query: Mapping[str, list[str]], paging: str) -> dict[str, Any]:
        """GET /webhook-events (listWebhookEvent): `limit` 1-100, `starting_after`, `success` (true/false),
        `from`/`to` (YYYY-MM-DD, inclusive, on `timestamp_created_date`), `search` (the exact webhook URL or
        lead email)."""
        limit = _query_int(query, "limit", self.default_page_size, 1, 100)
        success = _query_first(query, "success")
        if success not in (None, "true", "false"):
            raise _HttpError(400, "querystring/success must be boolean")
        window = []
        for name in ("from", "to"):
            value = _query_first(query, name)
            if value is not None:
                try:
                    value = date.fromisoformat(value).isoformat() if len(value) == 10 else ""
                except ValueError:
                    value = ""
                if not value:
                    raise _HttpError(400, f'querystring/{name} must match format "date"')
            window.append(value)
        start, end = window
        search = _query_first(query, "search")
        return _page_by_id(
            self._webhook_events, query, paging, limit,
            lambda e: (success is None or e["success"] == (success == "true"))
            and (start is None or e["timestamp_created_date"] >= start)
            and (end is None or e["timestamp_created_date"] <= end)
            and (search is None or search in (e["webhook_url"], e["lead_email"])))

    # ---- request plumbing (called from handler threads) ---------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.counters[record.endpoint] += 1
            self.counters[f"status {record.status}"] += 1
            self.request_log.append(record)
            if self.max_log is not None and len(self.request_log) > self.max_log:
                del self.request_log[: len(self.request_log) - self.max_log]
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception as exc:  # a listener's failure is the test's business, not the server's
                self.listener_errors.append(f"{record.endpoint}: {type(exc).__name__}: {exc}")

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


# --------------------------------------------------------------------------------------------------
# The saved workspace as JSON (save_state / load_state): explicit converters per record, no object hooks.
# Every value is written as a JSON scalar, list or object, and read back only into the shapes below; a
# value of another shape is refused (_StateShapeError, naming where), never guessed at.


class SimulatorStateError(ValueError):
    """A simulator state file that cannot be loaded: refused whole, nothing in it loaded or run.

    `path` is the file, `reason` what is wrong; str() is one line with the fix."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"simulator state file {path} {reason}; it was not loaded. Fix: delete it (the simulator then starts "
            "a fresh workspace; for the embedded playground, delete the DuckDB file too to rebuild both)"
        )


class _StateShapeError(Exception):
    """Where a state document differs from the shapes save_state writes (e.g. 'state.leads.<id>.status')."""


_Codec = tuple[Callable[[Any], Any], Callable[[Any, str], Any]]
_EVENT_KINDS = frozenset({"send", "reply", "auto_reply", "complete", "bounce", "unsubscribe", "skip"})
_WALL_KINDS = frozenset({"rep", "subsequence_end", "job"})
_SENDING_SHAPES = frozenset({"full", "summary_only", "no_data"})
#: document key -> simulator attribute holding that random.Random (the reps' one is part of "state")
_STATE_RNGS = {"lifecycle": "_rng", "ids": "_id_rng", "faults": "_fault_rng"}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _fail(where: str, expected: str, value: Any) -> _StateShapeError:
    return _StateShapeError(f"{where} must be {expected}, not {type(value).__name__}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "an object", value)
    return value


def _only_keys(value: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        raise _StateShapeError(f"{where} has an unknown field {extra[0]!r}")


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, "a list", value)
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, "an integer", value)
    return value


def _num(value: Any, where: str) -> float:
    """A number as written (an int stays an int: JSON keeps the difference, so the round trip is exact)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, "a number", value)
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "true or false", value)
    return value


def _time(value: Any, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_str(value, where))
    except ValueError:
        raise _StateShapeError(f"{where} must be an ISO 8601 time, not {value!r}"[:200]) from None
    if moment.tzinfo is None:
        raise _StateShapeError(f"{where} must be an ISO 8601 time with its UTC offset")
    return moment.astimezone(UTC)


def _day(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _StateShapeError(f"{where} must be a day (YYYY-MM-DD)") from None


def _optional(read: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, where: None if value is None else read(value, where)


def _iso_time(moment: datetime) -> str:
    return moment.isoformat()


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _same(value: Any) -> Any:
    return value


def _json_object(value: Any, where: str) -> dict[str, Any]:
    return _obj(value, where)  # read by json.loads: plain data already, whatever it holds


def _str_map(value: Any, where: str) -> dict[str, str]:
    return {key: _str(item, f"{where}.{key}") for key, item in _obj(value, where).items()}


def _map_of(read: Callable[[Any, str], Any]) -> Callable[[Any, str], dict[str, Any]]:
    return lambda value, where: {key: read(item, f"{where}.{key}") for key, item in _obj(value, where).items()}


def _list_of(read: Callable[[Any, str], Any]) -> Callable[[Any, str], list[Any]]:
    return lambda value, where: [read(item, f"{where}[{i}]") for i, item in enumerate(_list(value, where))]


def _counter(value: Any, where: str) -> Counter[str]:
    return Counter({key: _int(item, f"{where}.{key}") for key, item in _obj(value, where).items()})


def _rng_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_restore(rng: random.Random, value: Any, where: str) -> None:
    parts = _list(value, where)
    if len(parts) != 3:
        raise _StateShapeError(f"{where} must be [version, state, gauss]")
    internal = [_int(item, f"{where}[1]") for item in _list(parts[1], f"{where}[1]")]
    gauss = _optional(_num)(parts[2], f"{where}[2]")
    try:
        rng.setstate((_int(parts[0], f"{where}[0]"), tuple(internal), gauss))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _StateShapeError(f"{where} is not a random generator state ({exc})") from None


def _record_codec(cls: type[Any], codecs: Mapping[str, _Codec]) -> _Codec:
    """A dataclass record as a JSON object with one member per field. A field the dataclass gives a default may be
    absent (a file written before the field existed reads as the default); any other member is refused. A field
    without a codec fails on save (KeyError), so a new field cannot be dropped silently."""
    specs: list[Field[Any]] = list(dataclass_fields(cls))

    def encode(record: Any) -> dict[str, Any]:
        return {spec.name: codecs[spec.name][0](getattr(record, spec.name)) for spec in specs}

    def decode(value: Any, where: str) -> Any:
        raw = _obj(value, where)
        _only_keys(raw, {spec.name for spec in specs}, where)
        values: dict[str, Any] = {}
        for spec in specs:
            if spec.name in raw:
                values[spec.name] = codecs[spec.name][1](raw[spec.name], f"{where}.{spec.name}")
            elif spec.default is MISSING and spec.default_factory is MISSING:
                raise _StateShapeError(f"{where}.{spec.name} is missing")
        return cls(**values)

    return encode, decode


def _event_json(event: tuple[float, str, Any]) -> list[Any]:
    offset, kind, data = event
    return [offset, kind, list(data) if kind == "send" else data]


def _event(value: Any, where: str) -> tuple[float, str, Any]:
    parts = _list(value, where)
    if len(parts) != 3 or parts[1] not in _EVENT_KINDS:
        raise _StateShapeError(f"{where} must be [days, kind, data] with kind one of {sorted(_EVENT_KINDS)}")
    offset, kind, data = _num(parts[0], f"{where}[0]"), parts[1], parts[2]
    if kind == "send":
        step = _list(data, f"{where}[2]")
        if len(step) != 2:
            raise _StateShapeError(f"{where}[2] must be [step, opened]")
        return offset, kind, (_int(step[0], f"{where}[2][0]"), _bool(step[1], f"{where}[2][1]"))
    return offset, kind, _optional(_int)(data, f"{where}[2]")


def _fate(value: Any, where: str) -> Fate:
    if value not in FATES:
        raise _StateShapeError(f"{where} must be one of {list(FATES)}")
    return value  # type: ignore[no-any-return]


_OPT_STR: _Codec = (_same, _optional(_str))
_OPT_INT: _Codec = (_same, _optional(_int))
_OPT_TIME: _Codec = (_optional_time, _optional(_time))
_STR: _Codec = (_same, _str)
_INT: _Codec = (_same, _int)
_NUM: _Codec = (_same, _num)
_TIME: _Codec = (_iso_time, _time)

_LEAD_CODEC = _record_codec(_Lead, {
    "id": _STR, "email": _OPT_STR, "email_key": _OPT_STR, "campaign": _OPT_STR, "list_id": _OPT_STR,
    "fields": (_same, _str_map), "payload": (_same, _json_object), "created": _TIME, "updated": _TIME,
    "status": _INT, "fate": (_same, _optional(_fate)),
    "events": (lambda events: [_event_json(e) for e in events], _list_of(_event)),
    "next_event": _INT, "start_active": _NUM, "opens": _INT, "replies": _INT, "clicks": _INT,
    "interest": _OPT_INT, "interest_changed": _OPT_TIME, "last_contact": _OPT_TIME, "last_reply": _OPT_TIME,
    "last_open": _OPT_TIME, "steps_sent": _INT, "last_step": (_same, _optional(_str_map)),
    "verification_status": _OPT_INT, "esp_code": _INT, "subsequence_id": _OPT_STR,
})


def _heap_entry(value: Any, where: str) -> tuple[float, int, str]:
    parts = _list(value, where)
    if len(parts) != 3:
        raise _StateShapeError(f"{where} must be [due, sequence, lead id]")
    return _num(parts[0], f"{where}[0]"), _int(parts[1], f"{where}[1]"), _str(parts[2], f"{where}[2]")


_CAMPAIGN_CODEC = _record_codec(_Campaign, {
    "id": _STR, "name": _STR, "status": _INT, "created": _TIME, "updated": _TIME, "active_clock": _NUM,
    "heap": (lambda heap: [list(entry) for entry in heap], _list_of(_heap_entry)),
    "lead_ids": (_same, _list_of(_str)), "counters": (dict, _counter),
})


def _blocklist_entry(value: Any, where: str) -> dict[str, Any]:
    entry = _obj(value, where)
    _only_keys(entry, {"id", "timestamp_created", "organization_id", "bl_value", "is_domain"}, where)
    for name in ("id", "timestamp_created", "organization_id", "bl_value"):
        _str(entry.get(name), f"{where}.{name}")
    _bool(entry.get("is_domain"), f"{where}.is_domain")
    return entry


def _subsequence(value: Any, where: str) -> dict[str, Any]:
    sub = _obj(value, where)
    _only_keys(sub, {"parent_campaign", "name", "crm_status", "days"}, where)
    return {"parent_campaign": _str(sub.get("parent_campaign"), f"{where}.parent_campaign"),
            "name": _str(sub.get("name"), f"{where}.name"),
            "crm_status": _list_of(_int)(sub.get("crm_status"), f"{where}.crm_status"),
            "days": _num(sub.get("days"), f"{where}.days")}


_JOB_FIELDS: dict[str, _Codec] = {
    "id": _STR, "created": _TIME, "updated": _TIME, "status": _STR, "progress": _INT, "polls": _INT,
    "polls_needed": _OPT_INT, "due": _OPT_TIME, "fail": (_same, _bool), "entity_id": _STR, "entity_type": _STR,
    "data": (_same, _json_object),
}


def _job_json(job: Mapping[str, Any]) -> dict[str, Any]:
    return {name: codec[0](job[name]) for name, codec in _JOB_FIELDS.items()}


def _job(value: Any, where: str) -> dict[str, Any]:
    raw = _obj(value, where)
    _only_keys(raw, set(_JOB_FIELDS), where)
    if set(_JOB_FIELDS) - set(raw):
        raise _StateShapeError(f"{where}.{sorted(set(_JOB_FIELDS) - set(raw))[0]} is missing")
    return {name: codec[1](raw[name], f"{where}.{name}") for name, codec in _JOB_FIELDS.items()}


def _wall_event(value: Any, where: str) -> tuple[datetime, int, str, str, Any]:
    parts = _list(value, where)
    if len(parts) != 5 or parts[2] not in _WALL_KINDS:
        raise _StateShapeError(f"{where} must be [time, sequence, kind, target, data] with kind one of "
                               f"{sorted(_WALL_KINDS)}")
    data = parts[4]
    if data is not None and (isinstance(data, bool) or not isinstance(data, int | str)):
        raise _fail(f"{where}[4]", "an integer, a string or null", data)
    return _time(parts[0], f"{where}[0]"), _int(parts[1], f"{where}[1]"), parts[2], _str(parts[3], f"{where}[3]"), data


def _day_counters(value: Any, where: str) -> dict[date, Counter[str]]:
    return {_day(day, f"{where}.{day}"): _counter(counts, f"{where}.{day}")
            for day, counts in _obj(value, where).items()}


def _sending_accounts(value: Any, where: str) -> tuple[int, int]:
    parts = _list(value, where)
    if len(parts) != 2:
        raise _StateShapeError(f"{where} must be [connected, available]")
    return _int(parts[0], f"{where}[0]"), _int(parts[1], f"{where}[1]")


def _sending_shape(value: Any, where: str) -> SendingShape:
    if value not in _SENDING_SHAPES:
        raise _StateShapeError(f"{where} must be one of {sorted(_SENDING_SHAPES)}")
    return value  # type: ignore[no-any-return]


def _label_values(value: Any, where: str) -> dict[int, str]:
    pairs = [_list(pair, f"{where}[{i}]") for i, pair in enumerate(_list(value, where))]
    if any(len(pair) != 2 for pair in pairs):
        raise _StateShapeError(f"{where} must hold [interest value, sentiment] pairs")
    return {_int(v, f"{where}[{i}][0]"): _str(s, f"{where}[{i}][1]") for i, (v, s) in enumerate(pairs)}


def _map_json(encode: Callable[[Any], Any]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return lambda mapping: {key: encode(item) for key, item in mapping.items()}


#: simulator attribute -> (to JSON, from JSON); the document names it without the leading underscore
_STATE_CODECS: dict[str, _Codec] = {
    "_now": _TIME,
    "_id_seq": _INT,
    "_heap_seq": _INT,
    "organization_id": _STR,
    "_campaigns": (_map_json(_CAMPAIGN_CODEC[0]), _map_of(_CAMPAIGN_CODEC[1])),
    "_lists": (_same, _str_map),
    "_leads": (_map_json(_LEAD_CODEC[0]), _map_of(_LEAD_CODEC[1])),
    "_all_ids": (_same, _list_of(_str)),
    "_by_email": (_map_json(sorted), _map_of(lambda v, w: set(_list_of(_str)(v, w)))),
    "_by_list": (_same, _map_of(_list_of(_str))),
    "_blocklist": (_same, _map_of(_blocklist_entry)),
    "_blocked_values": (_same, _str_map),
    "_add_unsub_to_block": (_same, _optional(_bool)),
    "_workspace_created": _TIME,
    "_workspace_updated": _TIME,
    "_daily": (_map_json(lambda days: {day.isoformat(): dict(counts) for day, counts in days.items()}),
               _map_of(_day_counters)),
    "_campaign_settings": (_same, _map_of(_json_object)),
    "_campaign_omitted": (_map_json(sorted), _map_of(lambda v, w: set(_list_of(_str)(v, w)))),
    "_sending_accounts": (_map_json(list), _map_of(_sending_accounts)),
    "_sending_shapes": (_same, _map_of(_sending_shape)),
    "_rep_rng": (_rng_json, lambda v, w: v),  # restored in place (InstantlySimulator._from_state)
    "_labels": (_same, _map_of(_json_object)),
    "_label_values": (lambda values: [[v, s] for v, s in values.items()], _label_values),
    "_subsequences": (_same, _map_of(_subsequence)),
    "_list_created": (_map_json(_iso_time), _map_of(_time)),
    "_jobs": (_map_json(_job_json), _map_of(_job)),
    "_jobs_to_fail": _INT,
    "_wall_events": (lambda events: [[_iso_time(e[0]), *e[1:]] for e in events], _list_of(_wall_event)),
    "_wall_seq": _INT,
}


def _weights_json(weights: Mapping[int | None, float]) -> list[list[Any]]:
    return [[status, weight] for status, weight in weights.items()]


def _weights(value: Any, where: str) -> dict[int | None, float]:
    pairs = [_list(pair, f"{where}[{i}]") for i, pair in enumerate(_list(value, where))]
    if any(len(pair) != 2 for pair in pairs):
        raise _StateShapeError(f"{where} must hold [status or null, weight] pairs")
    return {_optional(_int)(s, f"{where}[{i}][0]"): _num(w, f"{where}[{i}][1]") for i, (s, w) in enumerate(pairs)}


def _config_json(sim: InstantlySimulator) -> dict[str, Any]:
    reps = sim.reps
    return {
        "seed": sim.seed, "plan_lead_limit": sim.plan_lead_limit,
        "rates": {spec.name: getattr(sim.rates, spec.name) for spec in dataclass_fields(SequenceRates)},
        "sequence_days": sim.sequence_days, "steps": sim.steps, "max_per_second": sim.max_per_second,
        "max_per_minute": sim.max_per_minute, "rate_limit_retry_after": sim.rate_limit_retry_after,
        "default_page_size": sim.default_page_size,
        "reps": None if reps is None else {
            "first": _weights_json(reps.first),
            "then": [[status, _weights_json(weights)] for status, weights in reps.then.items()],
            "delay_days": list(reps.delay_days),
        },
        "job_polls": sim.job_polls, "job_days": sim.job_days,
    }


def _config_from_json(raw: dict[str, Any]) -> dict[str, Any]:
    """InstantlySimulator keyword arguments (its constructor checks their ranges: ValueError)."""
    readers: dict[str, Callable[[Any, str], Any]] = {
        "seed": _int, "plan_lead_limit": _int, "sequence_days": _num, "steps": _int, "max_per_second": _int,
        "max_per_minute": _int, "rate_limit_retry_after": _optional(_num), "default_page_size": _int,
        "job_polls": _optional(_int), "job_days": _optional(_num),
    }
    _only_keys(raw, {*readers, "rates", "reps"}, "config")
    missing = sorted({*readers, "rates", "reps"} - set(raw))
    if missing:
        raise _StateShapeError(f"config.{missing[0]} is missing")
    config = {name: read(raw[name], f"config.{name}") for name, read in readers.items()}
    rates = _obj(raw["rates"], "config.rates")
    names = {spec.name for spec in dataclass_fields(SequenceRates)}
    _only_keys(rates, names, "config.rates")
    config["rates"] = SequenceRates(**{name: _num(rates.get(name), f"config.rates.{name}") for name in sorted(names)})
    if raw["reps"] is not None:
        reps = _obj(raw["reps"], "config.reps")
        _only_keys(reps, {"first", "then", "delay_days"}, "config.reps")
        then: dict[int, dict[int | None, float]] = {}
        for i, pair in enumerate(_list(reps.get("then"), "config.reps.then")):
            entry = _list(pair, f"config.reps.then[{i}]")
            if len(entry) != 2:
                raise _StateShapeError(f"config.reps.then[{i}] must be [status, weights]")
            then[_int(entry[0], f"config.reps.then[{i}][0]")] = _weights(entry[1], f"config.reps.then[{i}][1]")
        delay = _list_of(_num)(reps.get("delay_days"), "config.reps.delay_days")
        if len(delay) != 2:
            raise _StateShapeError("config.reps.delay_days must be [low, high]")
        config["reps"] = RepBehaviour(first=_weights(reps.get("first"), "config.reps.first"), then=then,
                                      delay_days=(delay[0], delay[1]))
    return config

def _validate_lead_item(index: int, lead: Any) -> None:
    where = f"body/leads/{index}"
    if not isinstance(lead, dict):
        raise _HttpError(400, f"{where} must be object")
    extra = set(lead) - _LEAD_FIELDS
    if extra:
        raise _HttpError(400, f"{where} must NOT have additional properties ({sorted(extra)[0]})")
    for name in _LEAD_STRING_FIELDS:
        if name in lead and lead[name] is not None and not isinstance(lead[name], str):
            raise _HttpError(400, f"{where}/{name} must be string,null")
    interest = lead.get("lt_interest_status")
    if "lt_interest_status" in lead and (
        isinstance(interest, bool) or not isinstance(interest, int) or interest not in _INTEREST_VALUES
    ):
        raise _HttpError(400, f"{where}/lt_interest_status must be equal to one of the allowed values")
    custom = lead.get("custom_variables")
    if "custom_variables" in lead:
        if not isinstance(custom, dict):
            raise _HttpError(400, f"{where}/custom_variables must be object")
        for key, value in custom.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise _HttpError(400, f"{where}/custom_variables/{key} must be string,number,boolean,null")


def _query_first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _query_int(query: Mapping[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise _HttpError(400, f"querystring/{name} must be integer") from None
    if value < low:
        raise _HttpError(400, f"querystring/{name} must be >= {low}")
    if value > high:
        raise _HttpError(400, f"querystring/{name} must be <= {high}")
    return value


def _query_bool(query: Mapping[str, list[str]], name: str, default: bool) -> bool:
    value = _query_first(query, name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise _HttpError(400, f"querystring/{name} must be boolean")
    return value == "true"


def _query_instant(query: Mapping[str, list[str]], name: str) -> datetime | None:
    """A date-only value as that day's UTC midnight (as the spec says), a timestamp as itself (UTC if naive)."""
    text = (_query_first(query, name) or "").strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _HttpError(400, f"querystring/{name} must be a date (YYYY-MM-DD) or an ISO 8601 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _query_window(query: Mapping[str, list[str]]) -> tuple[datetime | None, datetime | None]:
    start, end = _query_instant(query, "start_date"), _query_instant(query, "end_date")
    if start is not None and end is not None and start > end:
        raise _HttpError(400, "Start Date must be earlier than End Date")  # the spec's 400 example
    return start, end


def _day_in_window(day: date, start: datetime | None, end: datetime | None) -> bool:
    """Whether the UTC day overlaps [start, end] (None: unbounded on that side)."""
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (end is None or day_start <= end) and (start is None or day_start + timedelta(days=1) > start)


def _utc_day(value: date) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo is not None else value.date()
    if isinstance(value, date):
        return value
    raise ValueError("day must be a date")


def _islice_from(ordered: Sequence[str], start: int) -> Iterator[str]:
    for position in range(start, len(ordered)):
        yield ordered[position]


def _search_hit(lead: _Lead, needle: str) -> bool:
    haystack = " ".join(str(lead.fields.get(n, "")) for n in ("first_name", "last_name")) + " " + (lead.email_key or "")
    return needle in haystack.lower()


def _remove_sorted(ordered: list[str], value: str) -> None:
    position = bisect_left(ordered, value)
    if position < len(ordered) and ordered[position] == value:
        del ordered[position]


def _post_webhook(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> tuple[
        int | None, str | None, float]:
    """POST one webhook delivery: (HTTP status or None, why it failed or None, response time in ms). No
    redirect is followed (a 3xx is a failed attempt) and no proxy of the environment is used."""
    parts = urlsplit(url)
    connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
    started = time.monotonic()
    try:
        connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    except (ValueError, HTTPException) as exc:
        return None, f"bad target URL ({type(exc).__name__})", 0.0
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers={
            "Content-Type": "application/json", "User-Agent": "instantly-sim-webhooks", **headers})
        response = connection.getresponse()
        response.read(_WEBHOOK_ANSWER_BYTES)
        status: int | None = response.status
        error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except TimeoutError:
        status, error = None, "Connection timeout"
    except (OSError, HTTPException) as exc:
        status, error = None, f"Connection failed ({type(exc).__name__})"
    finally:
        connection.close()
    return status, error, round((time.monotonic() - started) * 1000, 1)


def _make_handler(sim: InstantlySimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "instantly-sim"
        sys_version = ""
        timeout = 60

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without NODELAY, Nagle + delayed ACK add 40 ms.
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sim._track(self.connection, True)

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                sim._track(self.connection, False)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the request log is the record

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length > 0 else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            outcome, path, template, query, body = sim._serve(method, self.path, headers, raw_body)
            logged_answer: Any = outcome.body if outcome.raw is None else outcome.raw.decode("utf-8", "replace")
            # Recorded before answering: once the client holds the answer, the log already has it.
            sim._record(
                RequestRecord(
                    method=method,
                    path=path,
                    template=template,
                    query=query,
                    status=outcome.status,
                    request_body=body if sim.log_bodies else None,
                    response_body=logged_answer if sim.log_bodies else None,
                    content_type=headers.get("content-type"),
                    user_agent=headers.get("user-agent"),
                    authorized=headers.get("authorization", "") == f"Bearer {sim.api_key}",
                    fault=outcome.fault,
                    at=time.monotonic(),
                )
            )
            if outcome.drop_after is not None:
                if outcome.drop_after > 0:
                    time.sleep(outcome.drop_after)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if outcome.raw is not None:
                payload = outcome.raw
            else:
                payload = json.dumps(outcome.body, separators=(",", ":")).encode("utf-8")
            try:
                self.send_response(outcome.status, _HTTP_REASONS.get(outcome.status))
                self.send_header("Content-Type", outcome.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in outcome.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a simulator until interrupted; print the base URL, campaign ids and the (fake) key."""
    parser = argparse.ArgumentParser(
        prog="python -m coldsync.instantly.simulator", description="Serve a local Instantly API V2 simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--campaign", action="append", default=[],
                        help="campaign NAME, or NAME=ID to give it the id your settings name (repeatable)")
    parser.add_argument("--key", default="sim-key", help="API key the simulator accepts (not a secret)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plan-lead-limit", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument("--days-per-second", type=float, default=0.0, metavar="DAYS",
                        help="move the simulated clock this many days every real second, so added leads go through "
                             "their sequences (replies, bounces, unsubscribes, each delivered to the registered "
                             "webhooks) while you watch; 0 (default): the clock stays where it started (now)")
    args = parser.parse_args(argv)
    if args.days_per_second < 0:
        parser.error("--days-per-second must be 0 or more")
    # The clock starts at the real time, so a sync's dates (its backfill window, its cooldowns) agree with it.
    sim = InstantlySimulator(api_key=args.key, seed=args.seed, plan_lead_limit=args.plan_lead_limit,
                             now=datetime.now(UTC).replace(microsecond=0), webhook_retry_delays=(1.0, 2.0, 4.0))
    campaigns = {}
    for given in args.campaign or ["Demo"]:
        name, _sep, campaign_id = given.partition("=")
        campaigns[name] = sim.create_campaign(name, campaign_id=campaign_id.strip() or None)
    if args.latency > 0:
        sim.set_fault("*", FaultSpec(latency=args.latency))
    base_url = sim.start(port=args.port, host=args.host)
    print(json.dumps({"base_url": base_url, "api_key": args.key, "campaigns": campaigns}, indent=2), flush=True)
    try:
        while True:
            if args.days_per_second > 0:
                time.sleep(1.0)
                sim.advance(args.days_per_second)
            else:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
