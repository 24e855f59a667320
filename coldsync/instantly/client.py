"""Instantly API V2 client: the one module of coldsync that talks to Instantly over HTTP.

requests for transport, tenacity for retries. What it guarantees:
- pacing: a process-wide sliding-window pacer keeps calls under `max_per_second` AND `max_per_minute`
  (Instantly's workspace limits are 100/s and 6,000/min, shared by every key of the workspace);
- retries with exponential backoff and jitter on 429, 5xx, connection errors, timeouts and on 2xx
  bodies that are not the JSON expected (a CDN error page); `Retry-After` is honoured when present;
  other 4xx are never retried;
- typed errors (`coldsync.instantly.errors`) whose text never holds the key and masks emails;
- transport (coldsync.transport): the base URL passes the outbound-URL rule (https; http only to a loopback
  simulator; no userinfo or path), redirects are never followed (a 3xx is `RedirectRefusedError`, naming the
  Location's host only), and each attempt has a total deadline (connect and every read, `request_deadline`);
- a bulk-add answer is checked whole before it is used (`add_answer_problem`): one that contradicts the request
  or carries an error leaves its leads `unknown` and counts as a service-level failure;
- no `Content-Type` on bodyless requests (Instantly answers 400 to a JSON content type without body);
- dangerous calls are impossible: only the operations listed in `ALLOWED_OPERATIONS` can be sent,
  a bulk `DELETE /leads` needs explicit ids (without them it wipes the campaign), and there is no way
  to send `DELETE /block-lists-entries` (without an id it wipes the block list) nor a block-list
  bulk delete without explicit ids (`_guard` refuses both even if they were ever allow-listed), and a
  `POST /leads/move` selects only explicit ids of one campaign, to a list (other selections move by filter);
- paged listings (`Listing`) say whether they were read to the end (`complete`) or cut short;
- one outage costs one call's retries per operation and run: an operation whose retries were spent
  is not sent again in the run (`CircuitOpenError`), and `health` says what failed at the service level.

Lead objects are returned as the server's raw dicts (`Lead`); absent fields are omitted, never null.
The fields the sync relies on:
    id                      lead id (UUID; use it for delete/get)
    email, campaign         the address and the campaign id the lead sits in
    status                  `LeadStatus`: 1 active, 2 paused, 3 completed, -1 bounced,
                            -2 unsubscribed, -3 skipped (0 on list-only leads)
    lt_interest_status      `InterestStatus`, absent until set: 0 out of office, 1 interested,
                            2 meeting booked, ..., -1 not interested, -2 wrong person, ...
    email_reply_count       replies received, INCLUDING out-of-office auto-replies
    timestamp_created, timestamp_updated, timestamp_last_contact (absent until the first send),
    timestamp_last_reply    ISO-8601 strings with milliseconds and `Z`
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from enum import IntEnum, StrEnum
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from coldsync.instantly.errors import (
    AddRefusedError,
    AuthenticationError,
    CircuitOpenError,
    IncompleteListingError,
    InstantlyError,
    NotFoundError,
    PlanError,
    PlanLimitError,
    RateLimitedError,
    RedirectRefusedError,
    RunDeadlineError,
    ScopeError,
    ServerError,
    TransportError,
    UnsafeRequestError,
    UnusableAnswerError,
    ValidationError,
    WebhookPlanError,
    is_service_level,
)
from coldsync.redact import mask_email, mask_emails_in_text, redact
from coldsync.transport import (
    DEFAULT_REQUEST_DEADLINE_SECONDS,
    DEFAULT_TIMEOUT_ATTEMPTS,
    MAX_RESPONSE_BYTES,
    check_outbound_url,
    location_host,
)

logger = logging.getLogger("coldsync.instantly")

DEFAULT_BASE_URL = "https://api.instantly.ai"
MAX_SERVER_MESSAGE = 1000
"""Characters of a server's error `message` kept in an error (after redaction): a 2 MB message must not
become a 2 MB log line, run-log row or job summary."""
NOT_RESENT_AFTER_SUCCESS = frozenset({"POST /leads/add", "POST /leads/move", "POST /webhooks"})
"""Writes never sent again after a 2xx the client cannot read: they may have taken effect (an add sent
twice could add twice, a webhook created twice delivers every event twice), so their outcome is unknown
(`UnusableAnswerError`), not retried."""
DEFAULT_USER_AGENT = "coldsync/0.1 (+lead sync)"
API_PREFIX = "/api/v2"

#: Instantly's own bounds.
MAX_LEADS_PER_ADD = 1000
MAX_PAGE_SIZE = 100
MAX_BLOCKLIST_VALUES_PER_CALL = 1000
MAX_IDS_PER_BULK_DELETE = 10_000
#: Lead ids per `POST /leads/move`. The spec sets no bound on `ids` (only `moved_lead_emails` of the job is
#: capped, at 10,000): assumed here, one listing page, so one by-ids look-up verifies a whole move.
MAX_IDS_PER_MOVE = 100
#: How many times one `add_leads` call may halve a batch Instantly refused with a 400 to find the refused
#: lead(s): one bad lead in a 1,000-lead batch is found in 10 halvings (20 extra requests at most).
MAX_ADD_SPLITS = 32
#: Most add requests one `add_leads` call may have in flight at once (its `concurrency`; the sync's
#: INSTANTLY_ADD_CONCURRENCY). Every request still goes through the one pacer, so this bounds latency overlap,
#: not the request rate; 16 stays far below the workspace's 100/s whatever the answers' speed.
MAX_ADD_CONCURRENCY = 16

Lead = dict[str, Any]
T = TypeVar("T")


# Lead `status` and `lt_interest_status` values: coldsync.rules.LeadStatus and InterestStatus
# (one definition, where the classifier uses them).


class CampaignStatus(IntEnum):
    """`status` of a campaign object."""

    DRAFT = 0
    ACTIVE = 1
    PAUSED = 2
    COMPLETED = 3
    RUNNING_SUBSEQUENCES = 4
    ACCOUNTS_UNHEALTHY = -1
    BOUNCE_PROTECT = -2
    ACCOUNT_SUSPENDED = -99


class LeadFilter(StrEnum):
    """Values of the `filter` field of `POST /leads/list` that the sync uses."""

    ACTIVE = "FILTER_VAL_ACTIVE"
    COMPLETED = "FILTER_VAL_COMPLETED"
    COMPLETED_NO_REPLY = "FILTER_VAL_COMPLETED_NO_REPLY"
    REPLIED = "FILTER_VAL_REPLIED"
    BOUNCED = "FILTER_VAL_BOUNCED"
    UNSUBSCRIBED = "FILTER_VAL_UNSUBSCRIBED"
    SKIPPED = "FILTER_VAL_SKIPPED"
    CONTACTED = "FILTER_VAL_CONTACTED"
    NOT_CONTACTED = "FILTER_VAL_NOT_CONTACTED"
    OUT_OF_OFFICE = "FILTER_LEAD_OUT_OF_OFFICE"
    INTERESTED = "FILTER_LEAD_INTERESTED"
    NOT_INTERESTED = "FILTER_LEAD_NOT_INTERESTED"


#: Every (method, path template) this client may send. Anything else is refused before the network.
LISTING_PROGRESS_PAGES = 20
"""A long listing logs its progress every this many pages (100 items a page: every 2,000 items)."""

ALLOWED_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/campaigns"),
        ("GET", "/campaigns/{id}"),
        ("GET", "/campaigns/analytics"),
        ("GET", "/campaigns/analytics/daily"),
        ("GET", "/campaigns/{id}/sending-status"),
        ("POST", "/campaigns/{id}/activate"),
        ("POST", "/campaigns/{id}/pause"),
        ("POST", "/leads/add"),
        ("POST", "/leads/list"),
        ("GET", "/leads/{id}"),
        ("DELETE", "/leads/{id}"),
        ("DELETE", "/leads"),
        ("POST", "/block-lists-entries/bulk-create"),
        ("GET", "/block-lists-entries"),
        ("GET", "/workspaces/current"),
        ("GET", "/lead-labels"),
        ("POST", "/leads/move"),
        ("GET", "/background-jobs/{id}"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks"),
        ("PATCH", "/webhooks/{id}"),
        ("DELETE", "/webhooks/{id}"),
        ("POST", "/webhooks/{id}/resume"),
        ("GET", "/webhook-events"),
    }
)

class JobStatus(StrEnum):
    """`status` of a background job (spec: components/schemas/BackgroundJob, an enum of exactly these)."""

    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    SUCCESS = "success"
    FAILED = "failed"
    DRAINING = "draining"  # replaying deferred live events: still running
    PAUSED = "paused"  # waiting for quota or auth: still running
    CANCELLED = "cancelled"


#: The statuses after which a background job changes nothing any more.
JOB_FINISHED: frozenset[JobStatus] = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED})

#: The only keys a `POST /leads/move` body of this client has: explicit ids within one campaign, to a list.
_MOVE_KEYS = frozenset({"ids", "campaign", "to_list_id", "limit", "reset_interest_status"})

#: Fields a lead of `POST /leads/add` may carry (the spec forbids any other).
LEAD_FIELDS: frozenset[str] = frozenset(
    {
        "email",
        "personalization",
        "website",
        "last_name",
        "first_name",
        "company_name",
        "job_title",
        "phone",
        "lt_interest_status",
        "pl_value_lead",
        "assigned_to",
        "custom_variables",
    }
)

#: `event_type` values a webhook may subscribe to (spec: CreateWebhook.event_type enum; `all_events` is every
#: event, custom label events included).
WEBHOOK_EVENT_TYPES: frozenset[str] = frozenset({
    "all_events", "email_sent", "email_opened", "email_link_clicked", "reply_received", "email_bounced",
    "lead_unsubscribed", "campaign_completed", "account_error", "lead_neutral", "lead_interested",
    "lead_not_interested", "lead_meeting_booked", "lead_meeting_completed", "lead_closed", "lead_out_of_office",
    "lead_wrong_person", "lead_no_show", "supersearch_enrichment_completed",
})
#: Webhook.status values (spec: "1 = active, -1 = error (disabled due to delivery failures)").
WEBHOOK_ACTIVE = 1
WEBHOOK_DISABLED = -1

_EMAIL_SYNTAX = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def request_category(method: str, template: str) -> Literal["read", "write"]:
    """Reads are GETs and the listing POST; everything else changes state on Instantly."""
    if method == "GET" or (method == "POST" and template == "/leads/list"):
        return "read"
    return "write"


def _normalize_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    email_ = value.strip().lower()
    return email_ or None


def _parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent/unparseable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now(), 0.0)


# --------------------------------------------------------------------------------------------------
# Pacing and statistics


class Pacer:
    """Sliding-window pacer: at most `max_per_second` calls in any 1 s and `max_per_minute` in any 60 s.

    Thread-safe; time comes from the injected `clock` and waiting goes through the injected `sleep`
    (tests pass a fake clock whose sleep advances it).
    """

    def __init__(
        self,
        max_per_second: int,
        max_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_per_second < 1 or max_per_minute < 1:
            raise ValueError("pacer limits must be at least 1")
        self._windows: list[tuple[float, int, deque[float]]] = [
            (1.0, max_per_second, deque()),
            (60.0, max_per_minute, deque()),
        ]
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> float:
        """Block until one more call fits in both windows, record it, return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                delay = 0.0
                for span, limit, stamps in self._windows:
                    while stamps and stamps[0] <= now - span:
                        stamps.popleft()
                    if len(stamps) >= limit:
                        delay = max(delay, stamps[0] + span - now)
                if delay <= 0:
                    for _span, _limit, stamps in self._windows:
                        stamps.append(now)
                    self.waited_seconds += waited
                    return waited
                self._sleep(delay)
                waited += delay


@dataclass
class RequestStats:
    """Counts of HTTP attempts sent (retries included), by endpoint, category and status.

    `by_endpoint` keys are (method, path template), e.g. ("POST", "/leads/add"); `by_category`
    keys are "read" and "write" (see `request_category`); `by_status` counts HTTP statuses with 0 for
    attempts that got no response; `retries` counts attempts beyond the first of each call.
    """

    by_endpoint: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_category: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    paced_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def requests(self) -> int:
        return sum(self.by_endpoint.values())

    @property
    def reads(self) -> int:
        return self.by_category["read"]

    @property
    def writes(self) -> int:
        return self.by_category["write"]

    def record_attempt(self, method: str, template: str) -> None:
        with self._lock:
            self.by_endpoint[(method, template)] += 1
            self.by_category[request_category(method, template)] += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_pacing(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.paced_seconds += seconds

    def count(self, method: str, template: str) -> int:
        return self.by_endpoint[(method, template)]

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-friendly copy (for run logs and benchmark reports)."""
        with self._lock:
            return {
                "requests": sum(self.by_endpoint.values()),
                "reads": self.by_category["read"],
                "writes": self.by_category["write"],
                "retries": self.retries,
                "paced_seconds": round(self.paced_seconds, 3),
                "by_endpoint": {f"{m} {t}": n for (m, t), n in sorted(self.by_endpoint.items())},
                "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
            }

    def reset(self) -> None:
        with self._lock:
            self.by_endpoint.clear()
            self.by_category.clear()
            self.by_status.clear()
            self.retries = 0
            self.paced_seconds = 0.0


@dataclass
class ServiceHealth:
    """How the service answered this client's logical calls (retries folded in) since `reset()`; the
    sync resets it when a run starts, so it describes one run.

    `answered`   operation ("POST /leads/add") -> calls the service answered (2xx, or an error about
                 the request itself: 400, 404), i.e. the service was there;
    `failed`     operation -> the last service-level failure (`errors.is_service_level`);
    `circuits`   operation -> (failure, when): not sent again for `open_seconds` after its retries were
                 spent on a temporary error (`CircuitOpenError` instead, at once); then one call may try;
    `refused`    campaign id (lower case) -> the `AddRefusedError` of its adds: no further add to that campaign
                 is sent until `reset()` (the other campaigns' adds still go: a refusal may be the campaign's,
                 and one campaign's must not starve another);
    `unreachable` (failure, when) once a call spent its retries without any answer (no connection, or
                 timeouts) before any call was answered: nothing is sent meanwhile.
    """

    open_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic
    answered: Counter[str] = field(default_factory=Counter)
    failed: dict[str, InstantlyError] = field(default_factory=dict)
    circuits: dict[str, tuple[InstantlyError, float]] = field(default_factory=dict)
    refused: dict[str, InstantlyError] = field(default_factory=dict)
    unreachable: tuple[InstantlyError, float] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def refuse_campaign(self, campaign_id: str, exc: InstantlyError) -> None:
        """Remember that Instantly refused every add to this campaign (until `reset()`)."""
        with self._lock:
            self.refused.setdefault(campaign_id.lower(), exc)

    def refused_campaign(self, campaign_id: str) -> InstantlyError | None:
        """The refusal of this campaign's adds since `reset()`, if any."""
        with self._lock:
            return self.refused.get(campaign_id.lower())

    def reset(self) -> None:
        with self._lock:
            self.answered.clear()
            self.failed.clear()
            self.circuits.clear()
            self.refused.clear()
            self.unreachable = None

    def blocked(self, operation: str) -> InstantlyError | None:
        """The failure that keeps this operation from being sent now (within `open_seconds` of it), if any."""
        with self._lock:
            now = self.clock()
            for trip in (self.unreachable, self.circuits.get(operation)):
                if trip is not None and now - trip[1] < self.open_seconds:
                    return trip[0]
            return None

    def record(self, operation: str, exc: InstantlyError | None) -> None:
        with self._lock:
            if exc is None or not is_service_level(exc):
                self.answered[operation] += 1
                self.circuits.pop(operation, None)
                self.unreachable = None
                return
            if not isinstance(exc, CircuitOpenError) or operation not in self.failed:
                self.failed[operation] = exc  # the failure that was sent wins over a call held back by it
            if exc.retryable and not isinstance(exc, CircuitOpenError):
                self.circuits[operation] = (exc, self.clock())
                if (isinstance(exc, TransportError) and exc.summary.startswith(("connection failed", "timeout"))
                        and not self.answered):
                    # No call was answered yet: the service cannot be reached at all, whether the connection
                    # was refused or accepted and never answered (a timeout on every attempt). (One that
                    # answered before is there: a dropped connection or a slow call then holds back its own
                    # operation only.)
                    self.unreachable = (exc, self.clock())

    @property
    def every_call_failed(self) -> bool:
        """True when calls were made and the service answered none of them."""
        with self._lock:
            return bool(self.failed) and not self.answered


# --------------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class Campaign:
    """A campaign: id, name, `CampaignStatus` value, and the raw server object.

    `raw` is the spec's Campaign object as the server sent it (absent fields omitted), including the
    settings `coldsync.campaign_health` checks: insert_unsubscribe_header, stop_on_reply,
    allow_risky_contacts, disable_bounce_protect, campaign_schedule, daily_limit.
    """

    id: str
    name: str
    status: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_active(self) -> bool:
        return self.status == CampaignStatus.ACTIVE

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Campaign:
        return cls(id=str(obj["id"]), name=str(obj.get("name", "")), status=int(obj["status"]), raw=obj)


def _whole_or_none(value: object) -> int | None:
    """A whole number the spec types as `number` (e.g. 3 or 3.0); None when missing or anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _count(value: object) -> int:
    """A counter of an analytics answer: the whole number, or 0 when missing, a boolean, fractional or not a number."""
    whole = _whole_or_none(value)
    return 0 if whole is None else whole


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class CampaignAnalytics:
    """Counters of `GET /campaigns/analytics` for one campaign (the raw object keeps the rest).

    Every counter is 0 when the server leaves it out or sends something that is not a whole number.
    With `exclude_total_leads_count=True` the server leaves `leads_count` out, so it reads 0 then.
    emails_sent_count           emails sent (every step of every lead)
    new_leads_contacted_count   leads that got their first email
    contacted_count             leads whose sequence has started
    """

    campaign_id: str
    campaign_name: str
    campaign_status: int
    leads_count: int
    contacted_count: int
    completed_count: int
    bounced_count: int
    unsubscribed_count: int
    reply_count: int
    emails_sent_count: int
    new_leads_contacted_count: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CampaignAnalytics:
        return cls(
            campaign_id=str(obj.get("campaign_id", "")),
            campaign_name=str(obj.get("campaign_name", "")),
            campaign_status=_count(obj.get("campaign_status")),
            leads_count=_count(obj.get("leads_count")),
            contacted_count=_count(obj.get("contacted_count")),
            completed_count=_count(obj.get("completed_count")),
            bounced_count=_count(obj.get("bounced_count")),
            unsubscribed_count=_count(obj.get("unsubscribed_count")),
            reply_count=_count(obj.get("reply_count")),
            emails_sent_count=_count(obj.get("emails_sent_count")),
            new_leads_contacted_count=_count(obj.get("new_leads_contacted_count")),
            raw=obj,
        )


def _analytics_day(value: object) -> dt.date | None:
    """The day of a daily-analytics row: `YYYY-MM-DD`, or a full ISO-8601 timestamp (the spec's example).

    A timestamp with an offset is read as the UTC day it falls on (the API's days are UTC days: it
    reads a date-only value as UTC midnight); a timestamp without one is read as written. None when
    the value is not a string or not a date.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


@dataclass(frozen=True)
class DailyCampaignAnalytics:
    """One row of `GET /campaigns/analytics/daily` (operation getDailyCampaignAnalytics).

    date                 the UTC day of the row (from `date`, `YYYY-MM-DD` or a full timestamp)
    sent                 emails sent that day
    contacted            distinct leads that got an email that day
    new_leads_contacted  leads that got their first email that day
    opened, unique_opened, replies, unique_replies, clicks, opportunities   per the spec, that day
    Every count is 0 when the server leaves it out or sends something that is not a whole number.
    """

    date: dt.date
    sent: int
    contacted: int
    new_leads_contacted: int
    opened: int
    unique_opened: int
    replies: int
    unique_replies: int
    clicks: int
    opportunities: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DailyCampaignAnalytics:
        """Parse one row; ValueError when its `date` is missing or not a date."""
        day = _analytics_day(obj.get("date"))
        if day is None:
            raise ValueError("daily analytics row without a readable date")
        return cls(
            date=day,
            sent=_count(obj.get("sent")),
            contacted=_count(obj.get("contacted")),
            new_leads_contacted=_count(obj.get("new_leads_contacted")),
            opened=_count(obj.get("opened")),
            unique_opened=_count(obj.get("unique_opened")),
            replies=_count(obj.get("replies")),
            unique_replies=_count(obj.get("unique_replies")),
            clicks=_count(obj.get("clicks")),
            opportunities=_count(obj.get("opportunities")),
            raw=obj,
        )


#: `status` value of the sending status when the campaign has no lead left to send to.
SENDING_WAITING_FOR_LEADS = "waiting_for_leads"


@dataclass(frozen=True)
class SendingStatus:
    """Why a campaign sends or not: `GET /campaigns/{id}/sending-status` (operation getCampaignSendingStatus).

    status              the status code (`diagnostics.status`, else `summary.status`; the spec's enum
                        includes healthy, waiting_for_leads, daily_limit_met, campaign_paused,
                        campaign_bounce_protect, campaign_accounts_unhealthy, ...; a value not in the
                        enum is kept as given); None when the server has no data
    waiting_for_leads   True when that status is `waiting_for_leads` (the campaign has no lead to send to)
    accounts_available  `diagnostics.accounts_summary.available`: sending accounts able to send now;
                        None when the server leaves it out (it may when the campaign is out of schedule)
    accounts_total      `diagnostics.accounts_summary.total_connected`; None likewise
    summary_text        `summary.status_message` (else `summary.ai_summary`), emails in it masked; None
                        when absent
    raw                 the server's object, as received
    """

    status: str | None
    waiting_for_leads: bool
    accounts_available: int | None
    accounts_total: int | None
    summary_text: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def has_data(self) -> bool:
        """False for the answer `{"diagnostics": null, "summary": null}` (the server has no data yet)."""
        return isinstance(self.raw.get("diagnostics"), Mapping) or isinstance(self.raw.get("summary"), Mapping)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SendingStatus:
        diagnostics = obj.get("diagnostics")
        summary = obj.get("summary")
        diagnostics = diagnostics if isinstance(diagnostics, Mapping) else {}
        summary = summary if isinstance(summary, Mapping) else {}
        status = _text_or_none(diagnostics.get("status")) or _text_or_none(summary.get("status"))
        accounts = diagnostics.get("accounts_summary")
        accounts = accounts if isinstance(accounts, Mapping) else {}
        text = _text_or_none(summary.get("status_message")) or _text_or_none(summary.get("ai_summary"))
        return cls(
            status=status,
            waiting_for_leads=status == SENDING_WAITING_FOR_LEADS,
            accounts_available=_whole_or_none(accounts.get("available")),
            accounts_total=_whole_or_none(accounts.get("total_connected")),
            summary_text=mask_emails_in_text(text) if text is not None else None,
            raw=obj,
        )


StopReason = Literal[
    "empty_page", "end_without_cursor", "short_page", "all_asked_answered", "repeated_cursor", "missing_cursor",
    "no_progress", "max_pages"
]
_COMPLETE_REASONS: frozenset[str] = frozenset({"empty_page", "end_without_cursor", "short_page", "all_asked_answered"})


class Listing(Generic[T]):
    """Iterator over a cursor-paged listing that knows whether it read everything.

    Pages are fetched lazily. Iteration stops on an empty page (the normal end), on a short page
    without a cursor (also an end), or, cut short, on a cursor already seen, on a FULL page without a
    cursor, or after `max_pages` pages. Items whose id was already yielded are skipped
    (`duplicates_skipped`).

    Two more ends save the request for an empty last page where the answer already says there is no
    more:
    - `short_page_ends=True`: a page with fewer items than `page_size` is the last one, cursor or not
      (reason `short_page`). Instantly still sends `next_starting_after` on a short last page, and the
      page after it is empty without one: recorded leads.json (`POST /leads/list`, limit 100: 24 leads
      and a cursor, then `{"items": []}`) and campaigns.json (`GET /campaigns`, limit 100: 13 campaigns
      and a cursor, then the empty page). The spec's `limit` is "the number of items to return", and
      listLeads orders by id for cursor paging. Assumed from these: the server fills a page up to `limit`
      whenever more items match (a filter is applied before the page is cut, not after). Set only for
      the endpoints those recordings cover (leads, campaigns).
    - `expect_ids`: the ids the request asked for (a look-up by ids): once every one of them was
      yielded, no later page can add one of them (reason `all_asked_answered`), so a full page of 100
      asked ids costs no second call. Items not asked for do not count towards it.

    After iteration, `complete` is True only when the server said "no more"; the sync must treat a
    False as "partially measured". `require_complete()` drains and raises `IncompleteListingError`
    instead. A transport or HTTP error while paging propagates as the typed error (and `complete`
    stays False).
    """

    def __init__(
        self,
        fetch_page: Callable[[str | None], tuple[list[Any], str | None]],
        convert: Callable[[Mapping[str, Any]], T],
        *,
        page_size: int,
        max_pages: int,
        what: str,
        start_cursor: str | None = None,
        short_page_ends: bool = False,
        expect_ids: Iterable[str] | None = None,
    ) -> None:
        self._fetch_page = fetch_page
        self._convert = convert
        self._page_size = page_size
        self._short_page_ends = short_page_ends
        self._unanswered: set[str] | None = set(expect_ids) if expect_ids is not None else None
        self._max_pages = max_pages
        self._what = what
        self._buffer: deque[tuple[str | None, T]] = deque()
        self._cursor: str | None = start_cursor or None
        # The cursor a listing starts from counts as seen: a server answering it back has not moved.
        self._cursors_seen: set[str] = {start_cursor} if start_cursor else set()
        self._ids_seen: set[str] = set()
        self.pages = 0
        self.items_yielded = 0
        self.duplicates_skipped = 0
        self.finished = False
        self.stop_reason: StopReason | None = None
        self.start_cursor = start_cursor or None
        #: id of the last item yielded (None before the first): store it to resume a later listing
        #: after it (`starting_after`), where the endpoint orders items by id.
        self.last_id: str | None = None

    @property
    def complete(self) -> bool:
        """True once the listing was read to its real end."""
        return self.finished and self.stop_reason in _COMPLETE_REASONS

    @property
    def resume_cursor(self) -> str | None:
        """The `starting_after` a later listing goes on from, when this one was cut short at `max_pages`
        (the cursor of the page it did not fetch); None otherwise."""
        return self._cursor if self.finished and self.stop_reason == "max_pages" else None

    @property
    def buffered(self) -> int:
        """Items of the pages fetched so far not yielded yet: 0 at a page boundary, where a caller that has
        what it needs can stop without leaving a fetched item unread (the drain's coverage stop)."""
        return len(self._buffer)

    def __iter__(self) -> Listing[T]:
        return self

    def __next__(self) -> T:
        while not self._buffer:
            if self.finished:
                raise StopIteration
            self._load_next_page()
        self.items_yielded += 1
        item_id, item = self._buffer.popleft()
        if item_id is not None:
            self.last_id = item_id
        return item

    def _stop(self, reason: StopReason) -> None:
        self.finished = True
        self.stop_reason = reason
        log = logger.debug if reason in _COMPLETE_REASONS else logger.warning
        log("instantly listing of %s stopped after %d page(s): %s", self._what, self.pages, reason)

    def _load_next_page(self) -> None:
        if self.pages >= self._max_pages:
            self._stop("max_pages")
            return
        items, next_cursor = self._fetch_page(self._cursor)
        self.pages += 1
        if self.pages % LISTING_PROGRESS_PAGES == 0:
            logger.info("instantly listing of %s: %d pages read, %s item(s) so far", self._what, self.pages,
                        f"{self.items_yielded + len(self._buffer) + len(items):,}")
        fresh = 0
        for raw in items:
            item_id = raw.get("id") if isinstance(raw, Mapping) else None
            if not isinstance(raw, Mapping):
                continue
            if isinstance(item_id, str):
                if item_id in self._ids_seen:
                    self.duplicates_skipped += 1
                    continue
                self._ids_seen.add(item_id)
                if self._unanswered is not None:
                    self._unanswered.discard(item_id)
            fresh += 1
            self._buffer.append((item_id if isinstance(item_id, str) else None, self._convert(raw)))
        if not items:
            self._stop("empty_page")
        elif next_cursor and next_cursor in self._cursors_seen:
            self._stop("repeated_cursor")
        elif fresh == 0:
            self._stop("no_progress")
        elif self._unanswered is not None and not self._unanswered:
            self._stop("all_asked_answered")
        elif not next_cursor:
            self._stop("end_without_cursor" if len(items) < self._page_size else "missing_cursor")
        elif self._short_page_ends and len(items) < self._page_size:
            self._stop("short_page")
        else:
            self._cursors_seen.add(next_cursor)
            self._cursor = next_cursor

    def to_list(self) -> list[T]:
        """Drain the rest of the listing (check `complete` afterwards)."""
        return list(self)

    def require_complete(self) -> list[T]:
        """Drain the rest; raise `IncompleteListingError` if the listing was cut short."""
        items = self.to_list()
        if not self.complete:
            raise IncompleteListingError(
                f"listing of {self._what} cut short ({self.stop_reason}) after {self.pages} page(s)"
            )
        return items


LeadListing = Listing[Lead]

Outcome = Literal[
    "created",
    "duplicate",
    "skipped",
    "blocklisted",
    "invalid",
    "duplicate_in_request",
    "incomplete",
    "plan_limit",
    "failed",
    "unknown",
]


@dataclass(frozen=True)
class LeadOutcome:
    """What happened to one lead given to `add_leads`.

    index        position in the caller's `leads` sequence
    email        the email as sent (mask it before logging: `coldsync.redact.mask_email`)
    outcome      created: new lead, `lead_id` set.
                 duplicate: already in THIS campaign (e.g. added by an earlier, interrupted run);
                     `lead_id` is the existing lead when the look-up found it.
                 skipped: exists elsewhere in the workspace (skip_if_in_workspace); `lead_id` and
                     `campaign_id` point at the existing lead when found.
                 blocklisted, invalid (bad or missing email), duplicate_in_request (same email
                     earlier in the same request), incomplete (lists only),
                 plan_limit: not uploaded because the plan's lead limit was reached; try later. The call then
                     records ONE `PlanLimitError` in `health` (a service-level failure of POST /leads/add).
                 failed: the request of its chunk failed after retries; `error` says why. A chunk refused
                     with a 400 is halved until the refused lead is alone (MAX_ADD_SPLITS): `inferred`
                     False then (Instantly named it), True when several leads failed together (a part
                     refused after the halving budget was spent: `error` the 400). When the halving of a
                     chunk reached single leads and no part of it was accepted, nobody was named: every
                     lead of it is `failed` with an `AddRefusedError` (service-level, `inferred`), recorded
                     once in `health`, and the call's chunks not yet sent, and later calls for the same
                     campaign on this client, fail with it unsent.
                 unknown: the server's counters did not account for this lead, or its chunk's answer could
                     not be used (`add_answer_problem`: an error object in a 200, or `created_leads` that
                     contradict the request; `error` says which): the lead may or may not have been added,
                     so the caller leaves it pending and looks it up by email later.
    inferred     True when the outcome comes from the counters alone (not from an id or a look-up).
    """

    index: int
    email: str | None
    outcome: Outcome
    lead_id: str | None = None
    campaign_id: str | None = None
    error: InstantlyError | None = None
    inferred: bool = False

    def __repr__(self) -> str:
        return (
            f"LeadOutcome(index={self.index}, email={mask_email(self.email)!r}, outcome={self.outcome!r}, "
            f"lead_id={self.lead_id!r}, inferred={self.inferred!r}, error={self.error!r})"
        )


ADD_COUNTERS: tuple[str, ...] = (
    "total_sent",
    "leads_uploaded",
    "duplicated_leads",
    "skipped_count",
    "in_blocklist",
    "invalid_email_count",
    "duplicate_email_count",
    "incomplete_count",
)


@dataclass
class AddLeadsResult:
    """Outcome of `add_leads`: one `LeadOutcome` per lead given, in the caller's order."""

    outcomes: list[LeadOutcome]
    remaining_in_plan: int | None = None
    totals: Counter[str] = field(default_factory=Counter)
    chunks_sent: int = 0
    chunks_failed: int = 0
    #: One error per chunk whose 200 answer could not be used (its leads are `unknown`); also recorded in
    #: the client's `health` as a failure of POST /leads/add (a service-level failure).
    unusable: list[UnusableAnswerError] = field(default_factory=list)

    def of(self, outcome: Outcome) -> list[LeadOutcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    @property
    def created(self) -> list[LeadOutcome]:
        return self.of("created")

    @property
    def failed(self) -> list[LeadOutcome]:
        return self.of("failed")

    def counts(self) -> Counter[str]:
        return Counter(o.outcome for o in self.outcomes)


AnswerProblem = tuple[Literal["error", "contradiction"], str]


def add_answer_problem(
    summary: Mapping[str, Any], emails: Sequence[str | None], ids_given: Collection[str] = ()
) -> AnswerProblem | None:
    """Why a 200 answer of `POST /leads/add` to a request of `emails` (normalized, in request order) cannot be
    used, or None when it can. Checked as a whole before anything of it is recorded.

    ("error", text): the answer carries an error object: a non-empty `error` field, or a non-empty
        `message` with `leads_uploaded` 0 (the spec's 200 schema has neither field; an answer with them is
        an error the server sent with the wrong status). `text` is the server's error, not cleaned.
    ("contradiction", what): `created_leads` contradicts the request: an entry that is not an object, an
        `index` that is not a whole number in [0, len(emails)) or given twice, an `id` that is not a
        non-empty string, given to two leads, or already in `ids_given` (given to another lead of the same
        call); an `email` that is not the one sent at its index (compared trimmed and lower-cased); or more
        entries than `leads_uploaded` counts.
    Source: the official spec (openapi-v2.json, POST /api/v2/leads/add, 200): `created_leads` items require
    `id` (string) and `index` (integer, "the index of the lead in the input array"); `email` is null or a
    string. Assumed where the spec is silent: an index and an id name one lead each, `email` when given is
    the address sent, and `leads_uploaded` counts every entry (the recorded answer and the simulator agree).
    """
    error = summary.get("error")
    message = summary.get("message")
    if error not in (None, "", {}, [], False):
        return "error", error if isinstance(error, str) else json.dumps(error, default=str)
    if isinstance(message, str) and message.strip() and summary.get("leads_uploaded") == 0:
        return "error", message
    created = summary.get("created_leads") or []
    n = len(emails)
    uploaded = summary.get("leads_uploaded")
    if isinstance(uploaded, int) and len(created) > max(uploaded, 0):
        return "contradiction", f"{len(created)} created lead(s) listed but leads_uploaded is {uploaded}"
    indexes: set[int] = set()
    ids: set[str] = set()
    for item in created:
        if not isinstance(item, Mapping):
            return "contradiction", "an entry of created_leads is not an object"
        index, lead_id, email_ = item.get("index"), item.get("id"), item.get("email")
        if type(index) is not int or not 0 <= index < n:
            return "contradiction", f"an index that is not a position of the {n} lead(s) sent"
        if index in indexes:
            return "contradiction", f"index {index} given twice"
        if not isinstance(lead_id, str) or not lead_id.strip():
            return "contradiction", f"no id for index {index}"
        if lead_id in ids or lead_id in ids_given:
            return "contradiction", f"one id given to two leads (index {index} and another)"
        if isinstance(email_, str) and emails[index] is not None and _normalize_email(email_) != emails[index]:
            return "contradiction", f"the email given for index {index} is not the lead sent there"
        indexes.add(index)
        ids.add(lead_id)
    return None


def _block_key(value: str) -> str:
    """How block-list values are compared: trimmed and lower-cased (emails and domains alike)."""
    return value.strip().lower()


@dataclass(frozen=True)
class BlockListEntry:
    """One entry of the workspace block list (the spec's `BlockListEntry` object).

    id               the entry id (`id`; a UUID string, the key of later calls about this entry)
    value            `bl_value`: the email or domain as Instantly stored it
    is_domain        `is_domain`: True when the entry blocks a whole domain (the server decides)
    created          `timestamp_created` (ISO-8601 string), None when absent
    organization_id  `organization_id`, the workspace owning the entry, None when absent
    raw              the server's object
    """

    id: str
    value: str
    is_domain: bool
    created: str | None = None
    organization_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        """The value trimmed and lower-cased: what a sent value is matched against."""
        return _block_key(self.value)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BlockListEntry:
        """Parse a server object; ValueError when `id`, `bl_value` or `is_domain` is missing or mistyped."""
        if not _is_block_entry(obj):
            raise ValueError("not a block-list entry (needs a string id and bl_value and a boolean is_domain)")
        created = obj.get("timestamp_created")
        organization = obj.get("organization_id")
        return cls(
            id=obj["id"],
            value=obj["bl_value"],
            is_domain=obj["is_domain"],
            created=created if isinstance(created, str) else None,
            organization_id=organization if isinstance(organization, str) else None,
            raw=obj,
        )

    def __repr__(self) -> str:
        return (
            f"BlockListEntry(id={self.id!r}, value={mask_emails_in_text(self.value)!r}, "
            f"is_domain={self.is_domain!r}, created={self.created!r})"
        )


BlockListOutcomeKind = Literal["blocked", "refused", "not_sent", "failed"]


@dataclass(frozen=True)
class BlockListOutcome:
    """What happened to one value given to `block_list_create`.

    index     position in the caller's `values`
    value     the value as given (None when it was not a string)
    outcome   blocked: the answer holds an entry for it; `entry` is that entry (id, stored value,
                  is_domain). Values equal after trimming and lower-casing share one entry.
              refused: sent, but the answer holds no entry for it (the server counted it invalid).
              not_sent: empty, blank or not a string: never sent.
              failed: the request of its chunk failed after retries; `error` says why.
    """

    index: int
    value: str | None
    outcome: BlockListOutcomeKind
    entry: BlockListEntry | None = None
    error: InstantlyError | None = None

    @property
    def entry_id(self) -> str | None:
        return self.entry.id if self.entry is not None else None

    def __repr__(self) -> str:
        shown = mask_emails_in_text(self.value) if self.value is not None else None
        return (
            f"BlockListOutcome(index={self.index}, value={shown!r}, outcome={self.outcome!r}, "
            f"entry_id={self.entry_id!r}, error={self.error!r})"
        )


@dataclass
class BlockListCreateResult:
    """Outcome of `block_list_create`: one `BlockListOutcome` per value given, in the caller's order.

    valid_count, invalid_count  the sums of the server's counters over the chunks sent
    unmatched                   entries the server returned that match no value sent (expected empty;
                                a server that rewrites values, e.g. drops a `www.`, would show here)
    """

    outcomes: list[BlockListOutcome]
    valid_count: int = 0
    invalid_count: int = 0
    unmatched: list[BlockListEntry] = field(default_factory=list)
    chunks_sent: int = 0
    chunks_failed: int = 0

    def of(self, outcome: BlockListOutcomeKind) -> list[BlockListOutcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    @property
    def blocked(self) -> list[BlockListOutcome]:
        return self.of("blocked")

    @property
    def refused(self) -> list[BlockListOutcome]:
        return self.of("refused")

    @property
    def failed(self) -> list[BlockListOutcome]:
        return self.of("failed")

    def counts(self) -> Counter[str]:
        return Counter(o.outcome for o in self.outcomes)

    def entries(self) -> dict[str, BlockListEntry]:
        """Entry per value sent (trimmed, lower-cased), for the values that are `blocked`."""
        return {_block_key(o.value): o.entry for o in self.outcomes if o.entry is not None and o.value is not None}


@dataclass(frozen=True)
class BackgroundJob:
    """A background job (`GET /background-jobs/{id}`, spec BackgroundJob): its id, type, status and
    progress. `data` is not kept: for a move it lists the moved addresses (`moved_lead_emails`), and
    nothing here needs them (a move is verified by reading the leads)."""

    id: str
    type: str | None
    status: JobStatus
    progress: float | None

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCESS

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BackgroundJob:
        progress = obj.get("progress")
        kind = obj.get("type")
        return cls(
            id=str(obj["id"]),
            type=kind if isinstance(kind, str) else None,
            status=JobStatus(obj["status"]),
            progress=float(progress) if isinstance(progress, int | float) and not isinstance(progress, bool) else None,
        )


def _is_background_job(body: Any) -> bool:
    """A job object with a non-empty id and a status of the spec's enum. Anything else (no id, a status
    the spec does not know) is a malformed answer, never taken for a job that is running or done."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("id"), str)
        and bool(body["id"].strip())
        and isinstance(body.get("status"), str)
        and body["status"] in set(JobStatus)
    )


def add_unsub_to_block(workspace: Mapping[str, Any]) -> bool | None:
    """The workspace's `add_unsub_to_block` (Workspace schema: boolean or null, optional).

    True: Instantly adds every unsubscribe to the block list itself; False: it does not; None when
    the field is absent, null or not a boolean (unknown: never guessed).
    """
    value = workspace.get("add_unsub_to_block")
    return value if isinstance(value, bool) else None


# --------------------------------------------------------------------------------------------------
# The client


_STATUS_ERRORS: dict[int, type[InstantlyError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: PlanError,
    403: ScopeError,
    404: NotFoundError,
    429: RateLimitedError,
}
#: Failures after which the remaining chunks of a bulk call are not sent: every one would meet the same
#: (the key refused, or a redirect, never followed: the base URL or something in front of the API is wrong).
_FATAL_FOR_ALL_CHUNKS = (AuthenticationError, PlanError, ScopeError, RedirectRefusedError)
_READ_CHUNK = 64 * 1024


def _is_page(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("items"), list)


def _is_object_with_id(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("id"), str)


def _is_webhook(body: Any) -> bool:
    """A Webhook object: a string `id` and `target_hook_url` (the spec's required fields the callers use)."""
    return _is_object_with_id(body) and isinstance(body.get("target_hook_url"), str)


def _is_webhook_page(body: Any) -> bool:
    return _is_page(body) and all(_is_webhook(item) for item in body["items"])


def _is_webhook_event(body: Any) -> bool:
    """A WebhookEvent: a string `id`, a boolean `success` and an object `payload` (what the backfill reads)."""
    return (_is_object_with_id(body) and isinstance(body.get("success"), bool)
            and isinstance(body.get("payload", {}), dict))


def _is_webhook_event_page(body: Any) -> bool:
    return _is_page(body) and all(_is_webhook_event(item) for item in body["items"])


def _is_sending_status(body: Any) -> bool:
    """`{diagnostics: object|null, summary: object|null}`; a key left out counts as null."""
    return isinstance(body, dict) and all(
        body.get(key) is None or isinstance(body.get(key), dict) for key in ("diagnostics", "summary")
    )


def _utc_instant(value: dt.date, name: str) -> dt.datetime:
    """A date as its UTC midnight (how Instantly reads a date-only value), a datetime as itself (aware only)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be a timezone-aware datetime (or a date)")
        return value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"{name} must be a date or a datetime")


def _query_time(value: dt.date, name: str) -> str:
    """A date as `YYYY-MM-DD`; an aware datetime as UTC ISO-8601 with milliseconds and `Z`."""
    moment = _utc_instant(value, name)  # also refuses naive datetimes and other types
    if isinstance(value, dt.datetime):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return value.isoformat()


def _utc_day(value: dt.date, name: str) -> dt.date:
    """The UTC day of a date (itself) or of an aware datetime."""
    return _utc_instant(value, name).date()


def _is_block_entry(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get("id"), str)
        and bool(obj["id"].strip())
        and isinstance(obj.get("bl_value"), str)
        and isinstance(obj.get("is_domain"), bool)
    )


def _is_block_page(body: Any) -> bool:
    return _is_page(body) and all(_is_block_entry(item) for item in body["items"])


class _StopWhen(stop_base):
    """A tenacity stop condition from a predicate on the retry state."""

    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate(retry_state)


def _read_body(response: requests.Response, deadline: float) -> tuple[bytes | None, str | None]:
    """The whole body, read in short reads (each returns what one socket read brought) until the deadline:
    (bytes, None), or (None, why: the deadline passed or the body passed MAX_RESPONSE_BYTES). A body already
    in memory (a test double, an adapter that rewrote it) is taken as it is."""
    preloaded: object = getattr(response, "_content", False)  # requests keeps False until the body is read
    if preloaded is not False:
        return (preloaded if isinstance(preloaded, bytes) else b""), None
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            return None, "timeout (the answer was still arriving at the request deadline)"
        # Decoded (gzip, deflate: requests asks for them), so the size cap counts what is held in memory.
        chunk = read1(_READ_CHUNK, decode_content=True) if read1 is not None else raw.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts), None
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None, f"answer larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB: not read"
        parts.append(chunk)


def _is_add_summary(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("leads_uploaded"), int)
        and isinstance(body.get("created_leads", []), list)
    )


@dataclass
class _AddRun:
    """What the chunk requests of one `add_leads` call share, read and changed under `lock` (they may run in
    several threads): the error that stops the chunks not yet sent, the halvings spent, the lead ids answered
    so far (to open the circuit at once on an id given twice) and the progress figures."""

    total: int
    fatal: InstantlyError | None = None
    splits: int = 0
    ids_seen: set[str] = field(default_factory=set)
    done: int = 0
    created: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_split(self) -> bool:
        """One halving of the call's MAX_ADD_SPLITS, if any is left."""
        with self.lock:
            if self.splits >= MAX_ADD_SPLITS:
                return False
            self.splits += 1
            return True


@dataclass
class _ChunkReply:
    """One add request's fate, kept until every request of the call is answered: `add_leads` puts the
    replies together in request order (`start`), so the outcomes do not depend on the order answers arrive.

    sent       True when a 2xx came (usable or not: counted in `chunks_sent`), else `chunks_failed`;
    outcomes   the chunk's outcomes, final unless `summary` is set;
    unusable   the chunk's answer could not be used (raised by the transport, or `add_answer_problem`);
    summary    a parsed 2xx answer: checked again, with the ids of the chunks before it, when put together.
    """

    start: int
    chunk: list[Mapping[str, Any]]
    sent: bool
    outcomes: list[LeadOutcome]
    unusable: UnusableAnswerError | None = None
    summary: Mapping[str, Any] | None = None


class InstantlyClient:
    """Instantly API V2 client. Create it where the job starts; pass the key in, never via env here.

    `sleep` and `clock` are injectable so tests can run retries and pacing without waiting
    (a fake clock whose `sleep` advances it). `jitter_seed` makes the backoff jitter repeatable.
    `circuit_seconds`: how long an operation whose retries were spent on a temporary error is not sent
    again (`ServiceHealth`); a sync run is shorter, so one outage costs one call's retries per run.

    Transport (coldsync.transport): `base_url` must pass the outbound-URL rule (https, or http to a
    loopback simulator; no userinfo, path, query or fragment), else `OutboundURLError` (a ValueError).
    Redirects are never followed (`RedirectRefusedError`). `request_deadline` (seconds, real time) bounds
    ONE attempt end to end: connect, headers and the whole body; past it the attempt is a timeout
    (`TransportError`, retried like any timeout). The socket timeouts (`connect_timeout`, `read_timeout`)
    still apply inside it, capped to the time left. Retries multiply it: one logical call may last up to
    max_attempts x request_deadline plus the waits between attempts (each at most `backoff_max`, or a
    Retry-After capped at `max_retry_after`). Attempts that got no answer in time (timeouts) cost up to
    `read_timeout` each, a hundred times a quick 5xx: at most `max_timeout_attempts` (default 3) of them are
    made per call, so a service that accepts connections and never answers costs 3 x 30 s + the waits, about
    1.5 minutes, not 6 x 30 s. With the defaults and the sync's 40 s deadline: 3 x 40 s + 5 x 120 s = 12
    minutes at the very worst (three attempts cut at the deadline, Retry-After of 120 s on five 429s),
    3 x 40 + 5 x 30 = 4.5 minutes without Retry-After; an operation that spent its retries is not sent again in the run
    (its circuit opens), so a run meets that worst case once per operation.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        user_agent: str = DEFAULT_USER_AGENT,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_per_second: int = 100,
        max_per_minute: int = 6000,
        max_attempts: int = 6,
        max_timeout_attempts: int = DEFAULT_TIMEOUT_ATTEMPTS,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        max_pages: int = 10_000,
        circuit_seconds: float = 300.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter_seed: int | None = None,
        session: requests.Session | None = None,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE_SECONDS,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("an Instantly API key is required")
        base_url = check_outbound_url(base_url)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_timeout_attempts < 1:
            raise ValueError("max_timeout_attempts must be at least 1")
        if not request_deadline > 0:
            raise ValueError("request_deadline must be a positive number of seconds")
        self._api_key = api_key.strip()
        self.base_url = base_url
        self.user_agent = user_agent
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.request_deadline = float(request_deadline)
        self.stop_at: float | None = None
        """`time.monotonic()` instant no call may last past (the run's lease guard, set by the sync for each run):
        each attempt's deadline is cut to it, no retry starts that could not end before it, and no call is sent
        after it (`RunDeadlineError`). None: only `request_deadline` and the retry budget bound a call."""
        self.max_attempts = max_attempts
        self.max_timeout_attempts = max_timeout_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.max_pages = max_pages
        self._sleep = sleep
        self._rng = random.Random(jitter_seed)
        self.pacer = Pacer(max_per_second, max_per_minute, clock=clock, sleep=sleep)
        self.stats = RequestStats()
        self.health = ServiceHealth(open_seconds=circuit_seconds, clock=clock)
        if session is None:
            session = requests.Session()
            # Concurrent adds (add_leads `concurrency`) share this session: urllib3's connection pool is
            # thread-safe, and what makes a shared Session unsafe (psf/requests#2766, #1871: the old redirect
            # cache, pools evicted when many hosts are used, headers changed while in use) is absent here: one
            # host, redirects never followed, nothing of the session changed after this. A pool as large as the
            # most requests in flight keeps every connection (the default 10 would drop and reopen the extras).
            for prefix in ("https://", "http://"):
                session.mount(prefix, HTTPAdapter(pool_maxsize=MAX_ADD_CONCURRENCY))
        self._session = session
        # No proxy, netrc or CA bundle from the environment: HTTP_PROXY would see a loopback simulator's key
        # in clear, and ~/.netrc would replace the Authorization header.
        self._session.trust_env = False
        self._session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"InstantlyClient(base_url={self.base_url!r}, api_key=<redacted>)"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> InstantlyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- transport ------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        """`text` through the one redaction path (coldsync.redact) with this client's key added (whole or any
        8+ character fragment of it, whatever echoed it): the only way server text enters an error."""
        return redact(text, secrets=(self._api_key,))

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2.0 ** max(attempt - 1, 0)))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _no_time_for_another_attempt(self, retry_state: RetryCallState) -> bool:
        """Retrying's stop condition beside the attempt budget: the longest wait before the next attempt would
        end at or after `stop_at` (the attempt would be cut at once)."""
        if self.stop_at is None:
            return False
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, InstantlyError) and exc.retry_after is not None:
            longest = min(exc.retry_after, self.max_retry_after)
        else:
            longest = min(self.backoff_max, self.backoff_base * (2.0 ** max(retry_state.attempt_number - 1, 0)))
        return time.monotonic() + longest >= self.stop_at

    def _wait(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, InstantlyError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        return self._backoff(retry_state.attempt_number)

    def _request(
        self,
        method: str,
        template: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        accept: Callable[[Any], bool] = lambda b: isinstance(b, dict),
    ) -> Any:
        """Send one logical call with pacing and retries; return the parsed JSON body.

        An operation whose retries were spent on a temporary error is not sent again in this run (its
        circuit is open: `CircuitOpenError` at once), nor is anything once a connection could not be
        made at all; `health` records what happened (see `ServiceHealth`).
        """
        method = method.upper()
        self._guard(method, template, path_params or {}, body)
        path = template
        for name, value in (path_params or {}).items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        attempts = 0
        timeouts = 0

        def attempt() -> Any:
            nonlocal attempts, timeouts
            attempts += 1
            try:
                return self._attempt(method, path, template, params, body, accept, attempts)
            except TransportError as exc:
                if exc.summary.startswith("timeout"):
                    timeouts += 1
                raise

        def before_sleep(state: RetryCallState) -> None:
            self.stats.record_retry()
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            status = getattr(exc, "http_status", None)
            logger.warning(
                "Instantly %s to %s %s (%s): retry %d of %d in %.1f s",
                "not answering" if status is None else f"answered http {status}",
                method,
                template,
                type(exc).__name__,
                state.attempt_number,
                self._retry_budget(state.attempt_number, timeouts, exc),
                delay,
            )

        if self.stop_at is not None and time.monotonic() >= self.stop_at:
            raise RunDeadlineError("not sent: the run reached its lease guard (no call may outlive the run's lock)",
                                   method=method, path=path, attempts=0)
        operation = f"{method} {template}"
        blocked = self.health.blocked(operation)
        if blocked is not None:
            failed = CircuitOpenError(f"not sent: an earlier call failed in this run ({blocked})",
                                      http_status=blocked.http_status, method=method, path=path, attempts=0)
            self.health.record(operation, failed)
            raise failed
        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.max_attempts), _StopWhen(self._no_time_for_another_attempt),
                          _StopWhen(lambda _state: timeouts >= self.max_timeout_attempts)),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, InstantlyError) and e.retryable
                                     and not isinstance(e, UnusableAnswerError)),
            reraise=True,
            sleep=self._sleep,
            before_sleep=before_sleep,
        )
        try:
            answer = retrying(attempt)
        except InstantlyError as exc:
            self.health.record(operation, exc)
            raise
        self.health.record(operation, None)
        return answer

    def _retry_budget(self, attempt: int, timeouts: int, exc: BaseException | None) -> int:
        """The retries a call has in all, as its log line says after `attempt` failed: max_attempts - 1, or
        fewer when it timed out, as only max_timeout_attempts attempts may time out (the deadline may still
        stop it sooner)."""
        left = self.max_attempts - attempt
        if isinstance(exc, TransportError) and exc.summary.startswith("timeout"):
            left = min(left, self.max_timeout_attempts - timeouts)
        return attempt - 1 + left

    @staticmethod
    def _guard(method: str, template: str, path_params: Mapping[str, str], body: Any) -> None:
        # Block-list deletes first, whatever the allow-list says: none may go without explicit ids.
        if method == "DELETE" and template == "/block-lists-entries":
            raise UnsafeRequestError(
                "refusing DELETE /block-lists-entries (without an id it deletes the whole block list)"
            )
        if template == "/block-lists-entries/bulk-delete":
            ids = body.get("ids") if isinstance(body, dict) else None
            if (
                method != "POST"
                or not isinstance(ids, list)
                or not 1 <= len(ids) <= MAX_BLOCKLIST_VALUES_PER_CALL
                or not all(isinstance(i, str) and i.strip() for i in ids)
                or set(body) != {"ids"}
            ):
                raise UnsafeRequestError("refusing a block-list bulk delete without explicit entry ids")
        if (method, template) not in ALLOWED_OPERATIONS:
            raise UnsafeRequestError(f"refusing {method} {template}: not an operation this client sends")
        for name, value in path_params.items():
            if not isinstance(value, str) or not value.strip():
                raise UnsafeRequestError(f"refusing {method} {template}: empty path parameter {name}")
        if method == "DELETE" and template == "/leads":
            ids = body.get("ids") if isinstance(body, dict) else None
            if (
                not isinstance(ids, list)
                or not ids
                or not all(isinstance(i, str) and i.strip() for i in ids)
                or body.get("limit") != len(ids)
                or not (body.get("campaign_id") or body.get("list_id"))
            ):
                raise UnsafeRequestError(
                    "refusing DELETE /leads without explicit ids and a matching limit "
                    "(it would delete every lead of the campaign)"
                )

        if method == "POST" and template == "/leads/move":
            ids = body.get("ids") if isinstance(body, dict) else None
            if (
                not isinstance(body, dict)
                or not isinstance(ids, list)
                or not 1 <= len(ids) <= MAX_IDS_PER_MOVE
                or not all(isinstance(i, str) and i.strip() for i in ids)
                or body.get("limit") != len(ids)
                or not isinstance(body.get("campaign"), str)
                or not body["campaign"].strip()
                or not isinstance(body.get("to_list_id"), str)
                or not body["to_list_id"].strip()
                or not set(body) <= _MOVE_KEYS
            ):
                raise UnsafeRequestError(
                    "refusing POST /leads/move without explicit ids of one campaign, a matching limit and a "
                    "target list (any other selection could move a whole campaign)"
                )

    def _send(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> tuple[tuple[int, Mapping[str, str], bytes] | None, str | None]:
        """One HTTP exchange within `request_deadline`: ((status, headers, body bytes), None) or (None, why
        it failed). A 3xx comes back with an empty body (never read, never followed).

        The exchange runs in a daemon thread this call waits for until the deadline: requests has no
        total timeout (its timeouts are per socket operation, and it reads a redirect's body itself), so an
        answer dribbled a byte at a time, headers included, is cut off here. The worker reads the body in
        short reads and stops at the deadline too; one stuck in the headers ends with its socket.
        """
        headers = {"Authorization": f"Bearer {self._api_key}"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        deadline = time.monotonic() + self.request_deadline
        if self.stop_at is not None:
            deadline = min(deadline, self.stop_at)
        url = f"{self.base_url}{API_PREFIX}{path}"
        box: list[tuple[tuple[int, Mapping[str, str], bytes] | None, str | None] | BaseException] = []

        def exchange() -> None:
            try:
                box.append(self._exchange(method, url, params, data, headers, deadline))
            except BaseException as exc:  # handed to the calling thread and raised there
                box.append(exc)

        worker = threading.Thread(target=exchange, name="coldsync-instantly-request", daemon=True)
        worker.start()
        worker.join(max(deadline - time.monotonic(), 0.0))
        if not box:
            return None, f"timeout (no whole answer within the {self.request_deadline:g} s request deadline)"
        outcome = box[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _exchange(
        self, method: str, url: str, params: Mapping[str, Any] | None, data: bytes | None,
        headers: Mapping[str, str], deadline: float,
    ) -> tuple[tuple[int, Mapping[str, str], bytes] | None, str | None]:
        """The request itself (in `_send`'s worker thread): socket timeouts capped to the time left,
        redirects not followed, the body read in short reads until the deadline or MAX_RESPONSE_BYTES."""
        left = max(deadline - time.monotonic(), 0.001)
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=(min(self.timeout[0], left), min(self.timeout[1], left)),
                allow_redirects=False,
                stream=True,
            )
            try:
                if 300 <= response.status_code < 400:
                    return (response.status_code, CaseInsensitiveDict(response.headers), b""), None
                content, failure = _read_body(response, deadline)
            finally:
                if response.raw is not None:  # a test double's answer has no connection to release
                    response.close()
            if content is None:
                return None, failure
            return (response.status_code, CaseInsensitiveDict(response.headers), content), None
        except requests.Timeout as exc:
            return None, f"timeout ({type(exc).__name__})"
        except requests.RequestException as exc:
            return None, f"connection failed ({type(exc).__name__})"

    def _attempt(
        self,
        method: str,
        path: str,
        template: str,
        params: Mapping[str, Any] | None,
        body: Any,
        accept: Callable[[Any], bool],
        attempt_no: int,
    ) -> Any:
        self.stats.record_pacing(self.pacer.acquire())
        self.stats.record_attempt(method, template)
        started = time.monotonic()
        answer, failure = self._send(method, path, params, body)
        # Errors are raised here, after `_send` returned: no chained transport exception (which holds
        # the request and its Authorization header) and no frame holding the headers travels with them.
        if answer is None:
            self.stats.record_status(0)
            logger.debug("instantly %s %s -> %s (attempt %d)", method, template, failure, attempt_no)
            raise TransportError(failure or "no response", method=method, path=path, attempts=attempt_no)
        status, response_headers, content = answer
        self.stats.record_status(status)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("instantly %s %s -> %d in %.0f ms (attempt %d)", method, template, status, elapsed_ms, attempt_no)
        if 300 <= status < 400:
            # Never followed, never retried; the Location's host only (its path and query may carry anything).
            where = location_host(f"{self.base_url}{API_PREFIX}{path}", response_headers.get("Location"))
            raise RedirectRefusedError(
                f"Instantly answered http {status} redirecting to {where}; redirects are never followed "
                "(check INSTANTLY_BASE_URL)",
                http_status=status,
                method=method,
                path=path,
                attempts=attempt_no,
            )
        retry_after = _parse_retry_after(response_headers.get("Retry-After"))
        content_type = response_headers.get("Content-Type", "")
        parsed: Any = None
        is_json = False
        if content:
            try:
                parsed = json.loads(content)
                is_json = True
            except ValueError:
                is_json = False
        if 200 <= status < 300:
            if is_json and accept(parsed):
                return parsed
            what = "unexpected JSON shape" if is_json else f"non-JSON body ({content_type or 'no type'})"
            if f"{method} {template}" in NOT_RESENT_AFTER_SUCCESS:
                # The write took effect or not: sending it again could add twice. Outcome unknown, not retried.
                raise UnusableAnswerError(
                    f"malformed success response: {what}; not sent again (it may have taken effect): outcome "
                    "unknown", http_status=status, method=method, path=path, attempts=attempt_no)
            raise ServerError(
                f"malformed success response: {what}",
                http_status=status,
                method=method,
                path=path,
                attempts=attempt_no,
                retry_after=retry_after,
            )
        if is_json and isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            server_message = self._clean(parsed["message"])[:MAX_SERVER_MESSAGE]  # scrubbed whole, then cut
        elif is_json:
            server_message = self._clean(json.dumps(parsed))[:300]  # scrubbed whole, then cut
        else:
            server_message = f"non-JSON error body ({content_type or 'no type'}, {len(content)} bytes)"
        error_cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else InstantlyError)
        raise error_cls(
            "request failed",
            http_status=status,
            method=method,
            path=path,
            server_message=server_message,
            attempts=attempt_no,
            retry_after=retry_after,
        )

    # ---- campaigns ------------------------------------------------------------------------------

    def check_key(self) -> None:
        """Cheap authenticated read; raises AuthenticationError / PlanError / ScopeError / ... on failure."""
        self._request("GET", "/campaigns", params={"limit": 1}, accept=_is_page)

    def get_campaign(self, campaign_id: str) -> Campaign:
        """The campaign; NotFoundError if it does not exist."""
        body = self._request("GET", "/campaigns/{id}", path_params={"id": campaign_id}, accept=_is_object_with_id)
        return Campaign.from_json(body)

    def iter_campaigns(
        self, *, status: int | None = None, search: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Listing[Campaign]:
        """Every campaign (optionally of one status), paged by cursor; check `.complete` after."""
        _check_page_size(page_size)

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, Any] = {"limit": page_size}
            if status is not None:
                params["status"] = status
            if search:
                params["search"] = search
            if cursor:
                params["starting_after"] = cursor
            body = self._request("GET", "/campaigns", params=params, accept=_is_page)
            return body["items"], _cursor_of(body)

        return Listing(fetch, Campaign.from_json, page_size=page_size, max_pages=self.max_pages, what="campaigns",
                       short_page_ends=True)

    def iter_lead_labels(self, *, page_size: int = MAX_PAGE_SIZE) -> Listing[dict[str, Any]]:
        """The workspace's custom lead labels (`GET /lead-labels`, operation listLeadLabel), cursor-paged.

        Each item is a LeadLabel object as Instantly sends it (official spec, components/schemas/LeadLabel):
        `interest_status` is the number a lead carries in `lt_interest_status`, `interest_status_label` its
        sentiment (positive, neutral, negative); `coldsync.outcomes.label_sentiments` turns the items into a
        map and skips malformed ones. Iterate, then read `.complete`: a cut-short listing is not the whole
        workspace. A page that is not `{items: [...]}` is a malformed answer (retried, then ServerError).
        """
        _check_page_size(page_size)

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["starting_after"] = cursor
            body = self._request("GET", "/lead-labels", params=params, accept=_is_page)
            return body["items"], _cursor_of(body)

        return Listing(fetch, dict, page_size=page_size, max_pages=self.max_pages, what="lead labels")

    def campaign_analytics(
        self,
        ids: Sequence[str],
        *,
        start_date: dt.date | dt.datetime | None = None,
        end_date: dt.date | dt.datetime | None = None,
        exclude_total_leads_count: bool = False,
    ) -> list[CampaignAnalytics]:
        """Analytics of the given campaigns: `GET /campaigns/analytics` (operation getCampaignAnalytics).

        Query: `ids` repeated once per campaign; `start_date` / `end_date` when given (a `date` goes as
        `YYYY-MM-DD`, which Instantly reads as UTC midnight; an aware `datetime` as a UTC ISO-8601
        timestamp; a naive one raises ValueError); `exclude_total_leads_count=true` when asked (the
        spec: the answer then leaves out the total leads, and is faster), never `false` (the default).
        The answer is a bare array, one object per campaign: counts of leads and emails (no units
        beyond "how many"). The range narrows the event counters (emails sent, contacted, bounced,
        replies, ...); `leads_count` is the spec's "total number of leads", not expected to narrow.

        Raises ValueError (before any request) for no ids, a blank id, or a start after the end
        (the server would answer 400); the typed errors of `_request` otherwise (ValidationError
        for a 400, ..., ServerError when the body is not an array).
        """
        wanted = _require_strings(ids, "campaign ids")
        params: dict[str, Any] = {"ids": wanted}
        if start_date is not None:
            params["start_date"] = _query_time(start_date, "start_date")
        if end_date is not None:
            params["end_date"] = _query_time(end_date, "end_date")
        if (
            start_date is not None
            and end_date is not None
            and _utc_instant(start_date, "start_date") > _utc_instant(end_date, "end_date")
        ):
            raise ValueError("start_date must not be after end_date")
        if exclude_total_leads_count:
            params["exclude_total_leads_count"] = "true"
        body = self._request("GET", "/campaigns/analytics", params=params, accept=lambda b: isinstance(b, list))
        return [CampaignAnalytics.from_json(item) for item in body if isinstance(item, dict)]

    def daily_campaign_analytics(
        self, campaign_id: str, start_date: dt.date, end_date: dt.date
    ) -> list[DailyCampaignAnalytics]:
        """One campaign's counters per UTC day: `GET /campaigns/analytics/daily` (getDailyCampaignAnalytics).

        Query: `campaign_id`, `start_date`, `end_date` as `YYYY-MM-DD` (both days included; an aware
        datetime is reduced to its UTC day, a naive one raises ValueError). The answer is a bare
        array of rows `{date, sent, contacted, new_leads_contacted, opened, unique_opened, replies,
        unique_replies, clicks, opportunities, ...}`, counts per day; the spec describes `date` as
        `YYYY-MM-DD` but its example is a full timestamp, so both are read (`DailyCampaignAnalytics`).
        Rows come back in the server's order. A row that is not an object or has no readable date
        is skipped (and counted in a warning); the server may leave out days without activity.

        Raises ValueError (before any request) for a blank campaign id or a start after the end
        (the server would answer 400); the typed errors of `_request` otherwise (ValidationError
        for a 400, ..., ServerError after retries when the body is not an array).
        """
        if not isinstance(campaign_id, str) or not campaign_id.strip():
            raise ValueError("campaign_id must be a non-empty id")
        first, last = _utc_day(start_date, "start_date"), _utc_day(end_date, "end_date")
        if first > last:
            raise ValueError("start_date must not be after end_date")
        params = {"campaign_id": campaign_id, "start_date": first.isoformat(), "end_date": last.isoformat()}
        body = self._request("GET", "/campaigns/analytics/daily", params=params, accept=lambda b: isinstance(b, list))
        rows: list[DailyCampaignAnalytics] = []
        unreadable = 0
        for item in body:
            if not isinstance(item, dict):
                unreadable += 1
                continue
            try:
                rows.append(DailyCampaignAnalytics.from_json(item))
            except ValueError:
                unreadable += 1
        if unreadable:
            logger.warning(
                "instantly daily analytics of campaign %s: %d row(s) without a readable date skipped",
                campaign_id,
                unreadable,
            )
        return rows

    def sending_status(self, campaign_id: str) -> SendingStatus:
        """Why the campaign sends or not: `GET /campaigns/{id}/sending-status` (getCampaignSendingStatus).

        The answer is `{"diagnostics": object|null, "summary": object|null}`: both null when the
        server has no data (`SendingStatus.has_data` False, `status` None); a summary only (the
        recorded real answer); or diagnostics whose `accounts_summary` may be missing (out of
        schedule: the account counts are then None). `with_ai_summary` is not sent. An unknown
        status string is kept as given.

        Raises ValueError for a blank id (before any request); NotFoundError when the campaign does
        not exist; ServerError after retries when the body is not that object; the other typed
        errors of `_request`.
        """
        if not isinstance(campaign_id, str) or not campaign_id.strip():
            raise ValueError("campaign_id must be a non-empty id")
        body = self._request(
            "GET", "/campaigns/{id}/sending-status", path_params={"id": campaign_id}, accept=_is_sending_status
        )
        return SendingStatus.from_json(body)

    def activate_campaign(self, campaign_id: str) -> Campaign:
        """Start or resume a campaign (bodyless POST)."""
        body = self._request(
            "POST", "/campaigns/{id}/activate", path_params={"id": campaign_id}, accept=_is_object_with_id
        )
        return Campaign.from_json(body)

    def pause_campaign(self, campaign_id: str) -> Campaign:
        """Pause a campaign (bodyless POST)."""
        body = self._request(
            "POST", "/campaigns/{id}/pause", path_params={"id": campaign_id}, accept=_is_object_with_id
        )
        return Campaign.from_json(body)

    # ---- leads: read ----------------------------------------------------------------------------

    def iter_leads(
        self,
        *,
        campaign: str | None = None,
        filter: str | None = None,
        contacts: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        excluded_ids: Sequence[str] | None = None,
        short_page_ends: bool = False,
        page_size: int = MAX_PAGE_SIZE,
        max_pages: int | None = None,
        starting_after: str | None = None,
    ) -> LeadListing:
        """Leads matching the criteria, via `POST /leads/list` cursor pages (field `campaign`).

        Returns a `Listing`: iterate it, then read `.complete` (True = read to the end) or call
        `.require_complete()`. Without `campaign` the listing spans the whole workspace.
        `starting_after` resumes a listing after that lead id (leads are ordered by id; a listing
        cut short by `max_pages` resumes after its `last_id`). `excluded_ids` (the spec's "array of lead
        IDs to exclude"; empty: not sent) leaves out leads already read, e.g. by another filter's listing.

        A look-up by `ids` ends once every id asked was answered (`Listing.expect_ids`). With `short_page_ends`
        a page shorter than `page_size` ends the listing too (no request for the empty page after): an
        assumption from the recordings (`Listing`), so only for listings whose result is an estimate (the
        supply signal's count of leads not yet contacted); never for the drain (a listing taken as complete
        moves its counter's watermark) nor the reconcile listing (it closes the tracked leads it does not see).
        """
        _check_page_size(page_size)
        if starting_after is not None and (not isinstance(starting_after, str) or not starting_after.strip()):
            raise ValueError("starting_after must be a non-empty lead id")
        criteria: dict[str, Any] = {}
        if campaign is not None:
            if not campaign.strip():
                raise ValueError("campaign must be a non-empty id")
            criteria["campaign"] = campaign
        if filter is not None:
            criteria["filter"] = str(filter)
        if contacts is not None:
            criteria["contacts"] = _require_strings(contacts, "contacts")
        if ids is not None:
            criteria["ids"] = _require_strings(ids, "ids")
        if excluded_ids:
            criteria["excluded_ids"] = _require_strings(excluded_ids, "excluded_ids")

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            body = dict(criteria, limit=page_size)
            if cursor:
                body["starting_after"] = cursor
            page = self._request("POST", "/leads/list", body=body, accept=_is_page)
            return page["items"], _cursor_of(page)

        what = "leads" + (f" of campaign {campaign}" if campaign else "") + (f" ({filter})" if filter else "")
        return Listing(fetch, dict, page_size=page_size, max_pages=max_pages or self.max_pages, what=what,
                       start_cursor=starting_after, short_page_ends=short_page_ends,
                       expect_ids=criteria["ids"] if ids is not None else None)

    def get_lead(self, lead_id: str) -> Lead | None:
        """The lead, or None when it does not exist (404)."""
        try:
            body: Lead = self._request("GET", "/leads/{id}", path_params={"id": lead_id}, accept=_is_object_with_id)
        except NotFoundError:
            return None
        return body

    def find_leads_by_email(self, emails: Iterable[str], *, campaign: str | None = None) -> dict[str, list[Lead]]:
        """Workspace leads (or one campaign's) per normalized email, 100 addresses per listing."""
        wanted = sorted({e for e in (_normalize_email(x) for x in emails) if e})
        found: dict[str, list[Lead]] = {}
        for start in range(0, len(wanted), MAX_PAGE_SIZE):
            chunk = wanted[start : start + MAX_PAGE_SIZE]
            for lead in self.iter_leads(campaign=campaign, contacts=chunk):
                key = _normalize_email(lead.get("email"))
                if key:
                    found.setdefault(key, []).append(lead)
        return found

    # ---- leads: write ---------------------------------------------------------------------------

    def add_leads(
        self,
        campaign_id: str,
        leads: Sequence[Mapping[str, Any]],
        *,
        skip_if_in_workspace: bool = True,
        chunk_size: int = MAX_LEADS_PER_ADD,
        concurrency: int = 1,
    ) -> AddLeadsResult:
        """Bulk add leads to a campaign, at most 1000 per request; one outcome per lead.

        Leads are dicts of `LEAD_FIELDS` (an unknown field raises ValueError before any request).
        A chunk that fails after retries yields `failed` outcomes for its leads and the other chunks
        still go; an authentication, plan or scope error, or a redirect, fails the remaining chunks
        without sending.

        Each 200 answer is checked whole before anything of it is used (`add_answer_problem`): an error
        object in it, or `created_leads` that contradict the request (ids unique across the whole call),
        make every lead of that chunk `unknown` (never created, never failed), add an
        `UnusableAnswerError` to `result.unusable`, and record it in `health` as a service-level failure
        of POST /leads/add (its circuit opens: the remaining chunks are not sent, `failed` with
        CircuitOpenError). The chunk is not sent again: it may have taken effect.

        `concurrency` (1 to MAX_ADD_CONCURRENCY, else ValueError; the sync passes INSTANTLY_ADD_CONCURRENCY):
        how many chunk requests may be in flight at once, each through the shared pacer. The outcomes do not
        depend on the order the answers arrive in: each chunk's reply is kept and they are put together in
        request order once all are in, exactly as one request at a time would (a refused chunk is halved
        within its own thread, in the same order). What it changes: an error that stops the remaining chunks
        (above) stops those not yet sent, while up to `concurrency - 1` others already in flight still land;
        and with more than MAX_ADD_SPLITS halvings wanted in one call, which chunks get them follows the
        answers' timing. `remaining_in_plan` is the smallest figure any usable answer gave (the plan only
        fills up as the call adds).
        """
        if not campaign_id or not campaign_id.strip():
            raise ValueError("campaign_id is required")
        if not 1 <= chunk_size <= MAX_LEADS_PER_ADD:
            raise ValueError(f"chunk_size must be between 1 and {MAX_LEADS_PER_ADD}")
        if isinstance(concurrency, bool) or not 1 <= concurrency <= MAX_ADD_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_ADD_CONCURRENCY}")
        for position, lead in enumerate(leads):
            unknown = set(lead) - LEAD_FIELDS
            if unknown:
                raise ValueError(f"lead {position} has fields Instantly rejects: {sorted(unknown)}")
        run = _AddRun(total=len(leads))
        run.fatal = self.health.refused_campaign(campaign_id)  # refused whole earlier this run: not sent again
        tasks = [(start, list(leads[start : start + chunk_size])) for start in range(0, len(leads), chunk_size)]

        def one_chunk(start: int, chunk: list[Mapping[str, Any]]) -> list[_ChunkReply]:
            return self._add_chunk(campaign_id, start, chunk, skip_if_in_workspace, run,
                                   progress=len(leads) > chunk_size)

        result = self._put_together(campaign_id, self._run_add_chunks(tasks, one_chunk, concurrency))
        counts = result.counts()
        if counts["plan_limit"]:
            # The workspace's plan refused them, not one lead: ONE service-level failure of the operation
            # (the sync's service letter), recorded after the answers that carried it were counted as answered.
            self.health.record("POST /leads/add", PlanLimitError(
                f"the Instantly plan's lead limit is reached: {counts['plan_limit']} of {len(leads)} lead(s) were "
                f"not uploaded (remaining_in_plan {result.remaining_in_plan})",
                http_status=200, method="POST", path="/leads/add"))
        logger.info(
            "instantly add to campaign %s: %s",
            campaign_id,
            ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to add",
        )
        return result

    def _unusable_add(self, problem: AnswerProblem, leads: int) -> UnusableAnswerError:
        """The error of an add answer that cannot be used; the server's own text scrubbed, then cut."""
        kind, detail = problem
        if kind == "error":
            return UnusableAnswerError(
                f"Instantly answered the add of {leads} lead(s) with an error in a 200 answer: nothing of it is "
                "recorded, their outcome is unknown (looked up by email next run)",
                http_status=200, method="POST", path="/leads/add", server_message=self._clean(detail)[:300])
        return UnusableAnswerError(
            f"Instantly's answer to the add of {leads} lead(s) contradicts the request ({detail}): nothing of it "
            "is recorded, their outcome is unknown (looked up by email next run)",
            http_status=200, method="POST", path="/leads/add")

    def _resolve_chunk(
        self,
        campaign_id: str,
        offset: int,
        chunk: list[Mapping[str, Any]],
        summary: Mapping[str, Any],
        skip_flags: bool,
    ) -> list[LeadOutcome]:
        """Per-lead outcomes of one add request: ids first, then local facts, a look-up, the counters."""
        n = len(chunk)
        emails = [_normalize_email(lead.get("email")) for lead in chunk]
        resolved: dict[int, LeadOutcome] = {}
        for created in summary.get("created_leads") or []:
            idx = created.get("index") if isinstance(created, dict) else None
            lead_id = created.get("id") if isinstance(created, dict) else None
            if isinstance(idx, int) and 0 <= idx < n and isinstance(lead_id, str) and idx not in resolved:
                resolved[idx] = LeadOutcome(offset + idx, _email_of(chunk[idx]), "created", lead_id, campaign_id)

        def counter(key: str) -> int:
            value = summary.get(key)
            return value if isinstance(value, int) and value > 0 else 0

        budget: Counter[str] = Counter(
            {
                "duplicate_in_request": counter("duplicate_email_count"),
                "invalid": counter("invalid_email_count"),
                "duplicate": counter("duplicated_leads"),
                "skipped": counter("skipped_count"),
                "blocklisted": counter("in_blocklist"),
                "incomplete": counter("incomplete_count"),
            }
        )
        accounted = counter("leads_uploaded") + sum(budget.values())
        budget["plan_limit"] = (counter("total_sent") or n) - accounted

        def settle(idx: int, outcome: Outcome, **extra: Any) -> None:
            resolved[idx] = LeadOutcome(offset + idx, _email_of(chunk[idx]), outcome, **extra)
            budget[outcome] -= 1

        # Facts the client can see by itself: missing/invalid emails, repeats inside the request.
        first_position: dict[str, int] = {}
        for idx, key in enumerate(emails):
            if key is not None and _EMAIL_SYNTAX.match(key) and key not in first_position:
                first_position[key] = idx
        for idx in range(n):
            if idx in resolved:
                continue
            key = emails[idx]
            if (key is None or not _EMAIL_SYNTAX.match(key)) and budget["invalid"] > 0:
                settle(idx, "invalid")
            elif key is not None and first_position.get(key, idx) != idx and budget["duplicate_in_request"] > 0:
                settle(idx, "duplicate_in_request")

        # Which existing lead made the server refuse the rest: a look-up by email.
        pending = [i for i in range(n) if i not in resolved]
        if pending and (budget["duplicate"] > 0 or budget["skipped"] > 0):
            try:
                found = self.find_leads_by_email(emails[i] or "" for i in pending)
            except InstantlyError as exc:
                logger.warning("instantly look-up of refused leads failed, using counters only: %s", exc)
                found = {}
            for idx in pending:
                matches = found.get(emails[idx] or "", [])
                here = [m for m in matches if m.get("campaign") == campaign_id]
                elsewhere = [m for m in matches if m.get("campaign") != campaign_id]
                if here and budget["duplicate"] > 0:
                    settle(idx, "duplicate", lead_id=here[0].get("id"), campaign_id=campaign_id)
                elif elsewhere and skip_flags and budget["skipped"] > 0:
                    other = elsewhere[0]
                    settle(idx, "skipped", lead_id=other.get("id"), campaign_id=other.get("campaign"))

        # What is left is attributed from the counters. Instantly applies the plan limit last, in
        # request order, so the leads it cut are the tail.
        rest = [i for i in range(n) if i not in resolved]
        over_plan = min(max(budget["plan_limit"], 0), len(rest))
        head, tail = rest[: len(rest) - over_plan], rest[len(rest) - over_plan :]
        order: tuple[Outcome, ...] = (
            "blocklisted",
            "invalid",
            "incomplete",
            "duplicate",
            "skipped",
            "duplicate_in_request",
        )
        for idx in head:
            bucket = next((b for b in order if budget[b] > 0), None)
            if bucket is None:
                resolved[idx] = LeadOutcome(offset + idx, _email_of(chunk[idx]), "unknown", inferred=True)
            else:
                settle(idx, bucket, inferred=True)
        for idx in tail:
            settle(idx, "plan_limit", inferred=True)
        return [resolved[i] for i in range(n)]

    def _add_chunk(
        self,
        campaign_id: str,
        start: int,
        chunk: list[Mapping[str, Any]],
        skip_if_in_workspace: bool,
        run: _AddRun,
        *,
        progress: bool,
    ) -> list[_ChunkReply]:
        """Send one chunk of `add_leads` (halving it on a 400 that names nobody, its halves first, in order);
        one reply per request made or not made. Runs in any thread: what it shares goes through `run`.

        The rule that tells a bad lead from a refused operation: a chunk of several leads refused with a 400
        whose halving reached at least one lead alone (refused too) while NO request of the chunk was accepted
        (no 2xx) names nobody: Instantly refuses the operation, not a lead (`_refused_operation`). A single
        lead refused while others of its chunk were accepted is that lead's own refusal (its dead letter). A
        chunk of one lead refused alone is that lead's too: nothing tells the two apart there."""
        replies: list[_ChunkReply] = []
        size = len(chunk)
        accepted = refused_alone = False  # a 2xx for any part of the chunk; a part of one lead refused (400)
        work = deque([(start, chunk)])
        while work:
            start, chunk = work.popleft()
            with run.lock:
                fatal = run.fatal
            if fatal is not None:
                replies.append(_ChunkReply(start, chunk, False, [
                    LeadOutcome(start + i, _email_of(lead), "failed", error=fatal) for i, lead in enumerate(chunk)]))
                continue
            body = {
                "campaign_id": campaign_id,
                "leads": [dict(lead) for lead in chunk],
                "skip_if_in_workspace": skip_if_in_workspace,
            }
            try:
                summary = self._request("POST", "/leads/add", body=body, accept=_is_add_summary)
            except InstantlyError as exc:
                if isinstance(exc, ValidationError) and len(chunk) > 1 and run.take_split():
                    # Refused for its content, naming nobody: halve it until the refused lead stands alone
                    # (Instantly has then named it), the others added in their halves.
                    half = len(chunk) // 2
                    work.appendleft((start + half, chunk[half:]))
                    work.appendleft((start, chunk[:half]))
                    logger.warning("instantly refused an add of %d leads (http 400): sending it in halves",
                                   len(chunk))
                    continue
                if isinstance(exc, UnusableAnswerError):  # a 2xx nobody can read: the add may have taken effect
                    accepted = True
                    logger.error("instantly add of %d leads to campaign %s: %s", len(chunk), campaign_id, exc)
                    replies.append(_ChunkReply(start, chunk, True, [
                        LeadOutcome(start + i, _email_of(lead), "unknown", error=exc, inferred=True)
                        for i, lead in enumerate(chunk)], unusable=exc))
                    continue
                logger.error("instantly add of %d leads to campaign %s failed: %s", len(chunk), campaign_id, exc)
                if isinstance(exc, _FATAL_FOR_ALL_CHUNKS):
                    with run.lock:
                        run.fatal = run.fatal or exc  # the first one stops the rest
                # One lead alone refused for its content: Instantly named it. Several (the halving budget spent,
                # or a service failure): nobody in particular, `inferred`.
                named = len(chunk) == 1 and isinstance(exc, ValidationError)
                refused_alone = refused_alone or named
                replies.append(_ChunkReply(start, chunk, False, [
                    LeadOutcome(start + i, _email_of(lead), "failed", error=exc, inferred=not named)
                    for i, lead in enumerate(chunk)]))
                continue
            accepted = True
            emails = [_normalize_email(lead.get("email")) for lead in chunk]
            problem = add_answer_problem(summary, emails)
            if problem is not None:
                unusable = self._unusable_add(problem, len(chunk))
                self.health.record("POST /leads/add", unusable)  # its circuit opens: chunks not yet sent stay
                logger.error("instantly add of %d leads to campaign %s: %s", len(chunk), campaign_id, unusable)
                replies.append(_ChunkReply(start, chunk, True, [], unusable=unusable, summary=summary))
                continue
            # An id another chunk of the call was given: which of the two answers is set aside is decided in
            # request order once all are in (_put_together); the circuit opens now, as it would one at a time.
            ids = {str(item["id"]) for item in summary.get("created_leads") or []}
            with run.lock:
                clash = not ids.isdisjoint(run.ids_seen)
                run.ids_seen |= ids
            if clash:
                self.health.record("POST /leads/add", self._unusable_add(
                    ("contradiction", "one id given to two leads of the call"), len(chunk)))
            outcomes = self._resolve_chunk(campaign_id, start, chunk, summary, skip_if_in_workspace)
            replies.append(_ChunkReply(start, chunk, True, outcomes, summary=summary))
            with run.lock:
                run.done += len(chunk)
                run.created += sum(1 for o in outcomes if o.outcome == "created")
                done, created = run.done, run.created
            if progress:  # progress of a long add, one line per batch
                logger.info("instantly add to campaign %s: %s of %s lead(s) answered, %s created so far",
                            campaign_id, f"{done:,}", f"{run.total:,}", f"{created:,}")
        if size > 1 and refused_alone and not accepted:
            return self._refused_operation(campaign_id, size, replies, run)
        return replies

    def _refused_operation(self, campaign_id: str, size: int, replies: list[_ChunkReply],
                           run: _AddRun) -> list[_ChunkReply]:
        """A chunk of `size` leads refused whole, its halving down to single leads accepting none: ONE
        service-level `AddRefusedError` of POST /leads/add (recorded in `health`: the sync's service letter)
        instead of one refusal per lead; the call's chunks not yet sent fail with it, and no further add to this
        campaign is sent by this client (the other campaigns' adds still go: the refusal may be the campaign's)."""
        last = next((o.error for r in reversed(replies) for o in r.outcomes
                     if isinstance(o.error, ValidationError)), None)
        refused = AddRefusedError(
            f"Instantly refused every lead of an add of {size}, each one alone too (400 naming no lead; halved "
            "down to single leads, none accepted): it refuses the operation, not a lead; no further add to this "
            "campaign is sent this run", http_status=400, method="POST", path="/leads/add",
            server_message=last.server_message if last is not None else "")
        logger.error("instantly add to campaign %s: %s", campaign_id, refused)
        self.health.record("POST /leads/add", refused)
        with run.lock:
            run.fatal = run.fatal or refused
        self.health.refuse_campaign(campaign_id, refused)
        return [_ChunkReply(r.start, r.chunk, r.sent, [
            replace(o, error=refused, inferred=True) if isinstance(o.error, ValidationError) else o
            for o in r.outcomes], unusable=r.unusable, summary=r.summary) for r in replies]

    @staticmethod
    def _run_add_chunks(
        tasks: Sequence[tuple[int, list[Mapping[str, Any]]]],
        one_chunk: Callable[[int, list[Mapping[str, Any]]], list[_ChunkReply]],
        concurrency: int,
    ) -> list[_ChunkReply]:
        """Every chunk's replies: in this thread one after another when `concurrency` is 1 (or there is one
        chunk), else from up to `concurrency` worker threads taking the chunks in request order.

        The workers are daemon threads the caller waits for in short joins: a Ctrl-C or SIGTERM (raised here,
        in the main thread) stops the wait at once and no further chunk is started; requests already in
        flight end within their deadline. An exception other than InstantlyError in a worker (a bug) stops
        the others from starting chunks and is raised here once they are done.
        """
        if concurrency == 1 or len(tasks) <= 1:
            return [reply for start, chunk in tasks for reply in one_chunk(start, chunk)]
        queue = deque(tasks)
        replies: list[_ChunkReply] = []
        broken: list[BaseException] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                with lock:
                    if not queue:
                        return
                    start, chunk = queue.popleft()
                try:
                    got = one_chunk(start, chunk)
                except BaseException as exc:  # handed to the calling thread and raised there
                    with lock:
                        broken.append(exc)
                    stop.set()
                    return
                with lock:
                    replies.extend(got)

        threads = [threading.Thread(target=worker, name=f"coldsync-add-{n}", daemon=True)
                   for n in range(min(concurrency, len(tasks)))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            stop.set()  # an interrupt in the wait: no worker starts another chunk
        if broken:
            raise broken[0]
        return replies

    def _put_together(self, campaign_id: str, replies: Iterable[_ChunkReply]) -> AddLeadsResult:
        """The result of `add_leads` from its chunks' replies, taken in request order whatever order they
        came in: ids are checked unique across the call here (the later chunk's answer is set aside, and the
        earlier lead given the same id becomes `unknown` too), counters summed, outcomes sorted by index."""
        result = AddLeadsResult(outcomes=[])
        ids_given: dict[str, int] = {}  # lead id -> position in result.outcomes of the lead it was given to
        for reply in sorted(replies, key=lambda r: r.start):
            start, chunk = reply.start, reply.chunk
            if reply.sent:
                result.chunks_sent += 1
            else:
                result.chunks_failed += 1
            if reply.summary is None:
                if reply.unusable is not None:
                    result.unusable.append(reply.unusable)
                result.outcomes.extend(reply.outcomes)
                continue
            summary = reply.summary
            problem = add_answer_problem(summary, [_normalize_email(lead.get("email")) for lead in chunk], ids_given)
            if problem is not None:
                unusable = reply.unusable
                if unusable is None:  # an id an earlier chunk was given (health recorded when it was seen)
                    unusable = self._unusable_add(problem, len(chunk))
                    logger.error("instantly add of %d leads to campaign %s: %s", len(chunk), campaign_id, unusable)
                result.unusable.append(unusable)
                result.outcomes.extend(
                    LeadOutcome(start + i, _email_of(lead), "unknown", error=unusable, inferred=True)
                    for i, lead in enumerate(chunk)
                )
                for item in summary.get("created_leads") or []:
                    # An id an earlier chunk gave to another lead: that lead's id is in doubt as well.
                    lead_id = item.get("id") if isinstance(item, Mapping) else None
                    taken = ids_given.get(lead_id) if isinstance(lead_id, str) else None
                    if taken is not None:
                        earlier = result.outcomes[taken]
                        result.outcomes[taken] = LeadOutcome(earlier.index, earlier.email, "unknown", error=unusable,
                                                             inferred=True)
                continue
            first = len(result.outcomes)
            for key in ADD_COUNTERS:
                value = summary.get(key)
                if isinstance(value, int):
                    result.totals[key] += value
            remaining = summary.get("remaining_in_plan")
            if isinstance(remaining, int):
                result.remaining_in_plan = (remaining if result.remaining_in_plan is None
                                            else min(result.remaining_in_plan, remaining))
            result.outcomes.extend(reply.outcomes)
            ids_given.update((o.lead_id, first + k) for k, o in enumerate(result.outcomes[first:])
                             if o.outcome == "created" and o.lead_id)
        result.outcomes.sort(key=lambda outcome: outcome.index)
        return result

    def delete_leads(
        self, campaign_id: str, ids: Sequence[str], *, chunk_size: int = MAX_IDS_PER_BULK_DELETE
    ) -> int:
        """Delete exactly these leads of the campaign (`DELETE /leads` with ids); return the count.

        One request per `chunk_size` distinct ids (default MAX_IDS_PER_BULK_DELETE, 10,000: the spec's
        bulkDeleteLeads bounds `limit` to 1..10,000 and sets no bound on `ids`; each request sends
        `limit` = its number of ids), so 10,000 ids cost one call and 10,001 two. Empty, missing or
        blank ids raise `UnsafeRequestError` before any request: Instantly's bulk delete without ids
        deletes EVERY lead of the campaign. A chunk_size outside 1..10,000 raises ValueError.
        """
        if not isinstance(campaign_id, str) or not campaign_id.strip():
            raise UnsafeRequestError("refusing bulk delete without a campaign id")
        if ids is None or isinstance(ids, str | bytes) or len(ids) == 0:
            raise UnsafeRequestError("refusing bulk delete without explicit lead ids")
        if not all(isinstance(i, str) and i.strip() for i in ids):
            raise UnsafeRequestError("refusing bulk delete with a blank lead id")
        if not 1 <= chunk_size <= MAX_IDS_PER_BULK_DELETE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_IDS_PER_BULK_DELETE}")
        unique = list(dict.fromkeys(ids))
        deleted = 0
        for start in range(0, len(unique), chunk_size):
            chunk = unique[start : start + chunk_size]
            body = {"campaign_id": campaign_id, "ids": chunk, "limit": len(chunk)}
            answer = self._request("DELETE", "/leads", body=body)
            count = answer.get("count")
            deleted += count if isinstance(count, int) else 0
        logger.info("instantly deleted %d of %d lead(s) from campaign %s", deleted, len(unique), campaign_id)
        return deleted

    def delete_lead(self, lead_id: str) -> bool:
        """Delete one lead; False when it was already gone (404)."""
        try:
            self._request("DELETE", "/leads/{id}", path_params={"id": lead_id}, accept=_is_object_with_id)
        except NotFoundError:
            return False
        return True

    def move_leads(self, ids: Sequence[str], to_list_id: str, from_campaign_id: str) -> str:
        """Move exactly these leads of one campaign to an Instantly list; return the background job's id.

        `POST /api/v2/leads/move` (spec operation moveLeads): body `ids` (lead ids; the spec: "you must
        provide either `campaign` or `list_id` ... This parameter acts as a filter within the specified
        campaign or list"), `campaign` (the source, a campaign id: the field is `campaign`, not
        `campaign_id`), `to_list_id` (the target list), `limit` ("the limit of the number of leads to move"),
        set to the number of ids as a second bound, and `reset_interest_status: false` (the spec: false
        keeps the existing interest status; its default is not documented). Nothing else: no `filter`,
        `search`, `queries`, `contacts`, `in_campaign`, `copy_leads`, which select or duplicate leads
        beyond these ids (`_guard` refuses any body that could move a whole campaign). At most
        MAX_IDS_PER_MOVE ids (the spec states no bound: assumed). The answer is a BackgroundJob, `pending`
        (recorded move-leads.json); the move happens when the job runs: follow it with `background_job`,
        then verify by reading the leads. An answer without a job id is a malformed answer
        (`ServerError`), never a move taken for done.
        """
        for name, value in (("to_list_id", to_list_id), ("from_campaign_id", from_campaign_id)):
            if not isinstance(value, str) or not value.strip():
                raise UnsafeRequestError(f"refusing a move without {name}")
        if ids is None or isinstance(ids, str | bytes) or len(ids) == 0:
            raise UnsafeRequestError("refusing a move without explicit lead ids")
        if not all(isinstance(i, str) and i.strip() for i in ids):
            raise UnsafeRequestError("refusing a move with a blank lead id")
        unique = list(dict.fromkeys(ids))
        if len(unique) > MAX_IDS_PER_MOVE:
            raise ValueError(f"at most {MAX_IDS_PER_MOVE} lead ids per move")
        body = {"ids": unique, "campaign": from_campaign_id, "to_list_id": to_list_id, "limit": len(unique),
                "reset_interest_status": False}
        answer = self._request("POST", "/leads/move", body=body, accept=_is_background_job)
        job_id = str(answer["id"])
        logger.info("instantly move of %d lead(s) from campaign %s to list %s: job %s (%s)", len(unique),
                    from_campaign_id, to_list_id, job_id, answer["status"])
        return job_id

    def background_job(self, job_id: str) -> BackgroundJob:
        """The background job (`GET /api/v2/background-jobs/{id}`, spec operation getBackgroundJob).

        Its `status` (spec enum): pending, in-progress, draining, paused (still running); success, failed,
        cancelled (`JOB_FINISHED`). Asked with `data_fields=moved_leads` so the answer's `data` carries the
        count, not the moved addresses. An answer without an id, for another job, or with a status outside
        the spec's enum is a malformed answer (`ServerError`); an unknown job is a `NotFoundError`.
        """
        if not isinstance(job_id, str) or not job_id.strip():
            raise ValueError("job_id must be a non-empty id")
        body = self._request("GET", "/background-jobs/{id}", path_params={"id": job_id},
                             params={"data_fields": "moved_leads"},
                             accept=lambda b: _is_background_job(b) and b["id"] == job_id)
        return BackgroundJob.from_json(body)

    # ---- workspace ------------------------------------------------------------------------------

    def current_workspace(self) -> dict[str, Any]:
        """The key's workspace (`GET /workspaces/current`, operation getWorkspace), the server's object.

        Fields per the spec's Workspace schema: `id`, `name`, `owner`, `timestamp_created`,
        `timestamp_updated` always; `add_unsub_to_block` (boolean or null), plan ids, ... optional.
        """
        body: dict[str, Any] = self._request("GET", "/workspaces/current", accept=_is_object_with_id)
        return body

    def workspace_add_unsub_to_block(self) -> bool | None:
        """Whether Instantly itself blocks unsubscribes in this workspace; None when it does not say."""
        return add_unsub_to_block(self.current_workspace())

    # ---- block list -----------------------------------------------------------------------------

    def block_list_create(
        self, values: Iterable[str], *, chunk_size: int = MAX_BLOCKLIST_VALUES_PER_CALL
    ) -> BlockListCreateResult:
        """Add emails/domains to the workspace block list; say, for every value, which entry holds it.

        `POST /block-lists-entries/bulk-create` (operation createblukBlockListEntry) with
        `{"bl_values": [...]}`, 1 to 1000 values per call: the values are chunked and an empty
        `bl_values` is never sent (no values, no request). The answer is `{items: [BlockListEntry],
        valid_count, invalid_count}`, each entry with `id`, `bl_value`, `is_domain`,
        `timestamp_created`, `organization_id`.

        What the spec does not say, and what this method assumes:
        - The answer's `items` carry no index into `bl_values`: an item is matched back to a sent
          value by its `bl_value` trimmed and lower-cased. Values are sent trimmed and lower-cased,
          once each (values equal that way share one entry); blank or non-string values are
          `not_sent`.
        - A value the server refuses is reported only by `invalid_count`: it is simply absent from
          `items`. A sent value with no matching item is therefore `refused`. If the server ever
          rewrote a value (so that no item matches it), the value shows as `refused` and the item
          lands in `unmatched`, with a warning: nothing is guessed.
        - A value already on the block list: not documented; whether the server answers its existing
          entry (then it is `blocked` with that entry) or leaves it out (then it is `refused`; look
          it up with `iter_block_list(search=value)`) is taken from the answer as it comes.
        - The server decides `is_domain` (an email blocks the address, a domain the whole domain).
        - A chunk answered with an error (e.g. 400 for the whole request) makes its values `failed`;
          the other chunks still go, except after an authentication, plan or scope error.
        - Retries: a 429/5xx/timeout is retried (as every call); re-sending a value is harmless when
          the server keeps one entry per value (the simulator does; the spec does not say).
        """
        if not 1 <= chunk_size <= MAX_BLOCKLIST_VALUES_PER_CALL:
            raise ValueError(f"chunk_size must be between 1 and {MAX_BLOCKLIST_VALUES_PER_CALL}")
        given = list(values)
        keys = [_block_key(v) if isinstance(v, str) and v.strip() else None for v in given]
        unique = list(dict.fromkeys(k for k in keys if k is not None))
        settled: dict[str, tuple[BlockListOutcomeKind, BlockListEntry | None, InstantlyError | None]] = {}
        result = BlockListCreateResult(outcomes=[])
        fatal: InstantlyError | None = None
        for start in range(0, len(unique), chunk_size):
            chunk = unique[start : start + chunk_size]
            if fatal is not None:
                result.chunks_failed += 1
                settled.update((k, ("failed", None, fatal)) for k in chunk)
                continue
            try:
                body = self._request(
                    "POST", "/block-lists-entries/bulk-create", body={"bl_values": chunk}, accept=_is_block_page
                )
            except InstantlyError as exc:
                result.chunks_failed += 1
                logger.error("instantly block-list add of %d value(s) failed: %s", len(chunk), exc)
                if isinstance(exc, _FATAL_FOR_ALL_CHUNKS):
                    fatal = exc
                settled.update((k, ("failed", None, exc)) for k in chunk)
                continue
            result.chunks_sent += 1
            wanted = set(chunk)
            returned: dict[str, BlockListEntry] = {}
            for item in body["items"]:
                entry = BlockListEntry.from_json(item)
                if entry.key in wanted and entry.key not in returned:
                    returned[entry.key] = entry
                elif entry.key not in returned:
                    result.unmatched.append(entry)
            valid, invalid = body.get("valid_count"), body.get("invalid_count")
            valid_n = int(valid) if isinstance(valid, int | float) and not isinstance(valid, bool) else len(returned)
            invalid_n = (
                int(invalid)
                if isinstance(invalid, int | float) and not isinstance(invalid, bool)
                else len(chunk) - len(returned)
            )
            result.valid_count += valid_n
            result.invalid_count += invalid_n
            if len(returned) != valid_n or len(chunk) - len(returned) != invalid_n:
                logger.warning(
                    "instantly block-list add: %d of %d value(s) matched an entry, the server counted "
                    "%d valid and %d invalid",
                    len(returned),
                    len(chunk),
                    valid_n,
                    invalid_n,
                )
            for sent in chunk:
                entry_ = returned.get(sent)
                settled[sent] = ("blocked", entry_, None) if entry_ is not None else ("refused", None, None)
        if result.unmatched:
            logger.warning(
                "instantly block-list add: %d returned entr(y/ies) match no value sent", len(result.unmatched)
            )
        for index, (original, key) in enumerate(zip(given, keys, strict=True)):
            shown = original if isinstance(original, str) else None
            if key is None:
                result.outcomes.append(BlockListOutcome(index, shown, "not_sent"))
            else:
                kind, found, error = settled[key]
                result.outcomes.append(BlockListOutcome(index, shown, kind, found, error))
        counts = result.counts()
        logger.info(
            "instantly block-list add: %s", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to add"
        )
        return result

    def block_list_add(self, values: Iterable[str]) -> int:
        """Add emails/domains to the workspace block list, 1000 per call; return the server's valid count.

        The count-only form of `block_list_create` (kept for existing callers): a chunk that failed
        raises its error once the other chunks were sent.
        """
        result = self.block_list_create(values)
        for outcome in result.failed:
            if outcome.error is not None:
                raise outcome.error
        return result.valid_count

    def iter_block_list(
        self,
        *,
        search: str | None = None,
        domains_only: bool | None = None,
        starting_after: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        max_pages: int | None = None,
    ) -> Listing[BlockListEntry]:
        """Block-list entries (`GET /block-lists-entries`, operation listBlockListEntry), cursor-paged.

        Returns a `Listing` of `BlockListEntry`: iterate it, then read `.complete` (True = read to
        the end) or call `.require_complete()`. `starting_after` starts after that entry id (to
        resume an incremental pull); `.last_id` is the id of the last entry yielded, the value to
        store for the next pull. An item without a string `id`/`bl_value` or a boolean `is_domain`
        makes its page a malformed answer (retried, then `ServerError`).

        Resuming is only as good as the server's order: the simulator orders entries by id and its
        ids are time-ordered (UUIDv7-like), so entries created after `starting_after` come after it.
        Whether the real API's block-list ids are time-ordered is NOT known (no recording of this
        endpoint; the spec's example id is its generic UUIDv4 placeholder); a full pull is the safe
        reconciliation.
        """
        _check_page_size(page_size)
        if starting_after is not None and (not isinstance(starting_after, str) or not starting_after.strip()):
            raise ValueError("starting_after must be a non-empty entry id")

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, Any] = {"limit": page_size}
            if search:
                params["search"] = search
            if domains_only is not None:
                params["domains_only"] = "true" if domains_only else "false"
            if cursor:
                params["starting_after"] = cursor
            body = self._request("GET", "/block-lists-entries", params=params, accept=_is_block_page)
            return body["items"], _cursor_of(body)

        return Listing(
            fetch,
            BlockListEntry.from_json,
            page_size=page_size,
            max_pages=max_pages or self.max_pages,
            what="block list",
            start_cursor=starting_after,
        )

    # ---- webhooks (issue #18) -------------------------------------------------------------------

    def _webhook_request(self, method: str, template: str, *, secrets: Iterable[str] = (), **kwargs: Any) -> Any:
        """`_request` for a webhook operation: a 402 becomes `WebhookPlanError` (the plan has no webhooks), and
        an error's server text is scrubbed of `secrets` (the webhook's header values: a 400 may echo them)."""
        try:
            return self._request(method, template, **kwargs)
        except InstantlyError as exc:
            hidden = [value for value in secrets if value]
            error_cls = WebhookPlanError if isinstance(exc, PlanError) else type(exc)
            if error_cls is type(exc) and not any(value in exc.server_message for value in hidden):
                raise
            summary = ("the workspace's plan has no webhooks (Instantly answered 402)"
                       if error_cls is WebhookPlanError else exc.summary)
            raise error_cls(summary, http_status=exc.http_status, method=exc.method, path=exc.path,
                            server_message=redact(exc.server_message, secrets=hidden), attempts=exc.attempts,
                            retry_after=exc.retry_after) from None

    def create_webhook(
        self,
        target_hook_url: str,
        event_type: str,
        *,
        headers: Mapping[str, str],
        name: str | None = None,
        campaign: str | None = None,
    ) -> dict[str, Any]:
        """Register a webhook (`POST /webhooks`, operation createWebhook): Instantly POSTs every `event_type`
        event (`all_events`: every event) of `campaign` (None: every campaign of the workspace) to
        `target_hook_url`, with `headers` added to each delivery (coldsync sends its shared secret there).

        Returns the Webhook object as sent (spec: components/schemas/Webhook: `id`, `organization`, `campaign`,
        `name`, `target_hook_url`, `event_type`, `headers`, `timestamp_created`, `status` 1 active / -1
        disabled, `timestamp_error`). Body fields are the spec's CreateWebhook: `target_hook_url` (http or https),
        `event_type`, `headers` (string values), and `name`/`campaign` only when given.

        Raises ValueError before sending for a URL that is not http(s), an event type outside the spec's enum
        or a header value that is not a string; `WebhookPlanError` (a `PlanError`) on 402; the other typed
        errors as any call. Never sent twice after a 2xx it cannot read (`UnusableAnswerError`: a second
        webhook would deliver every event twice; list the webhooks to see whether it was created). Header
        values never appear in an error's text.
        """
        if not isinstance(target_hook_url, str) or not re.match(r"^https?://\S+$", target_hook_url):
            raise ValueError("target_hook_url must be an http(s) URL")
        if event_type not in WEBHOOK_EVENT_TYPES:
            raise ValueError(f"event_type must be one of the spec's webhook event types, not {event_type!r}")
        if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in headers.items()):
            raise ValueError("webhook headers must map non-empty names to string values")
        body: dict[str, Any] = {"target_hook_url": target_hook_url, "event_type": event_type,
                                "headers": dict(headers)}
        if name is not None:
            body["name"] = name
        if campaign is not None:
            body["campaign"] = campaign
        answer: dict[str, Any] = self._webhook_request("POST", "/webhooks", body=body, accept=_is_webhook,
                                                       secrets=headers.values())
        return answer

    def list_webhooks(self, *, page_size: int = MAX_PAGE_SIZE) -> list[dict[str, Any]]:
        """Every webhook of the workspace (`GET /webhooks`, operation listWebhook), all pages (`limit`,
        `starting_after` = the previous page's `next_starting_after`), as Webhook objects (see
        `create_webhook`; `status` -1 = disabled after repeated delivery failures, resume it).

        Raises `IncompleteListingError` when the listing was cut short (a repeated or missing cursor, the page
        bound), `WebhookPlanError` on 402, the other typed errors as any call. The objects hold the webhooks'
        `headers`, secrets included: never log them whole."""
        _check_page_size(page_size)

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["starting_after"] = cursor
            body = self._webhook_request("GET", "/webhooks", params=params, accept=_is_webhook_page)
            return body["items"], _cursor_of(body)

        return Listing(fetch, dict, page_size=page_size, max_pages=self.max_pages, what="webhooks").require_complete()

    def patch_webhook(self, webhook_id: str, *, headers: Mapping[str, str] | None = None,
                      target_hook_url: str | None = None) -> dict[str, Any]:
        """Change a webhook's custom headers and/or target URL (`PATCH /webhooks/{id}`, operation patchWebhook;
        body: the spec's PatchWebhook fields `headers`, `target_hook_url`): how `--webhooks register` puts a rotated
        secret on an existing webhook, or points coldsync's webhooks at a new receiver. Returns the Webhook object.
        ValueError before sending for nothing to change, a URL that is not http(s) or a header value that is not a
        string; `NotFoundError` when no such webhook exists, `WebhookPlanError` on 402. Header values never appear
        in an error's text."""
        body: dict[str, Any] = {}
        if headers is not None:
            if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in headers.items()):
                raise ValueError("webhook headers must map non-empty names to string values")
            body["headers"] = dict(headers)
        if target_hook_url is not None:
            if not re.match(r"^https?://\S+$", target_hook_url):
                raise ValueError("target_hook_url must be an http(s) URL")
            body["target_hook_url"] = target_hook_url
        if not body:
            raise ValueError("patch_webhook needs headers or target_hook_url")
        answer: dict[str, Any] = self._webhook_request("PATCH", "/webhooks/{id}", path_params={"id": webhook_id},
                                                       body=body, accept=_is_webhook,
                                                       secrets=(headers or {}).values())
        return answer

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook (`DELETE /webhooks/{id}`, operation deleteWebhook): `--webhooks register` removes a
        second coldsync webhook of one event type (it would deliver every event twice). Only ids the caller
        read from `list_webhooks` and found carrying coldsync's secret header are passed here. `NotFoundError`
        when it is gone already, `WebhookPlanError` on 402."""
        self._webhook_request("DELETE", "/webhooks/{id}", path_params={"id": webhook_id}, accept=_is_webhook)

    def resume_webhook(self, webhook_id: str) -> dict[str, Any]:
        """Resume a webhook Instantly disabled after repeated delivery failures (`POST /webhooks/{id}/resume`,
        operation resumeWebhook); returns the Webhook object (`status` 1 again, per the spec's description).
        `NotFoundError` when no such webhook exists, `WebhookPlanError` on 402."""
        answer: dict[str, Any] = self._webhook_request("POST", "/webhooks/{id}/resume",
                                                       path_params={"id": webhook_id}, accept=_is_webhook)
        return answer

    def list_webhook_events(
        self,
        *,
        success: bool | None = None,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
        max_pages: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
        starting_after: str | None = None,
        search: str | None = None,
    ) -> Listing[dict[str, Any]]:
        """Delivery attempts of the workspace's webhooks (`GET /webhook-events`, operation listWebhookEvent),
        cursor-paged over every page; iterate, then read `.complete` (False: cut short, e.g. at `max_pages`).

        Each item is a WebhookEvent as sent (spec: components/schemas/WebhookEvent): `id`, `timestamp_created`,
        `timestamp_created_date`, `organization_id`, `payload` (the JSON object that was, or was to be,
        delivered), `success`, `retry_count`, `will_retry`, `webhook_url`, `status_code`, `error_message`,
        `timestamp_next_retry`, `retry_group_id`, `retry_successful`, `lead_email`, `response_time_ms`.
        `success` filters on it (sent as `true`/`false`); `from_date`/`to_date` bound the window, inclusive,
        as `YYYY-MM-DD` (the UTC day of an aware datetime). A failed attempt that a later retry delivered is
        still listed as failed: the attempts of one event share `retry_group_id` (the simulator's reading of
        the spec; the backfill stores payloads by dedup key, so a delivered one listed again is harmless).
        `starting_after` goes on from a listing cut short (its `resume_cursor`); `search` keeps the attempts to
        one webhook URL (the spec: "Search by exact webhook URL or lead email match"). Raises `WebhookPlanError` on
        402 (while paging), ValueError for a bad page size or a window that ends before it starts."""
        _check_page_size(page_size)
        start = _utc_day(from_date, "from_date") if from_date is not None else None
        end = _utc_day(to_date, "to_date") if to_date is not None else None
        if start is not None and end is not None and end < start:
            raise ValueError("to_date is before from_date")

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, Any] = {"limit": page_size}
            if success is not None:
                params["success"] = "true" if success else "false"
            if start is not None:
                params["from"] = start.isoformat()
            if end is not None:
                params["to"] = end.isoformat()
            if search:
                params["search"] = search
            if cursor:
                params["starting_after"] = cursor
            body = self._webhook_request("GET", "/webhook-events", params=params, accept=_is_webhook_event_page)
            return body["items"], _cursor_of(body)

        return Listing(fetch, dict, page_size=page_size, max_pages=max_pages or self.max_pages,
                       what="webhook events", start_cursor=starting_after)


def _cursor_of(page: Mapping[str, Any]) -> str | None:
    cursor = page.get("next_starting_after")
    return cursor if isinstance(cursor, str) and cursor else None


def _check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")


def _require_strings(values: Sequence[str] | None, what: str) -> list[str]:
    if values is None or isinstance(values, str | bytes):
        raise ValueError(f"{what} must be a list of strings")
    cleaned = [v for v in values if isinstance(v, str) and v.strip()]
    if not cleaned or len(cleaned) != len(values):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings")
    return cleaned


def _email_of(lead: Mapping[str, Any]) -> str | None:
    value = lead.get("email")
    return value if isinstance(value, str) else None
