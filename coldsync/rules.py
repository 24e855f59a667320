"""The pure decisions of the sync: email normalization, revenue, cooldown, the finished-lead
classifier, and the drain plan. (Routes: coldsync.routes; each route's room: coldsync.supply;
suppression keys of addresses and domains: coldsync.suppression, one definition in Python and SQL.)

Nothing here does I/O or keeps state; every rule exists once, here or in the one SQL view that
embeds `EMAIL_PATTERN`. Phases call these functions and do the I/O around them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

_T = TypeVar("_T")

# ---------------------------------------------------------------------------------------------
# Emails and domains
# ---------------------------------------------------------------------------------------------

MAX_EMAIL_LENGTH = 254
"""Longest accepted address (RFC 5321 path limit), counted after trimming. All ASCII: chars = bytes."""

MAX_DOMAIN_LENGTH = 253
"""Longest accepted domain name (DNS limit, without the trailing dot)."""

# Building blocks, shared by EMAIL_PATTERN and DOMAIN_PATTERN so the domain rule exists once.
# Only constructs that Python `re`, RE2 (BigQuery) and DuckDB read the same way: explicit ASCII
# classes (no \w or \d, which are Unicode-aware in Python), bounded repeats, no lookaround, no
# backreference, no possessive quantifier. The apostrophe is written `\x27` so the pattern holds no
# quote character and can sit inside any SQL string literal.
_LOCAL_ATOM = r"[a-zA-Z0-9_%+\x27-]+"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_TLD = r"[a-zA-Z]{2,63}"
_DOMAIN = rf"(?:{_LABEL}\.)+{_TLD}"

EMAIL_PATTERN: str = rf"^{_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*@{_DOMAIN}$"
"""A syntactically valid ASCII email address, anchored, RE2-safe.

Local part: letters, digits and ``. _ % + - '``; no leading or trailing dot, no ``..``.
Domain: dot-separated labels of letters, digits and ``-`` (1 to 63 chars, not starting or ending
with ``-``), at least one dot, a TLD of 2 to 63 letters, no trailing dot.

ASCII letters of BOTH cases are accepted on purpose: match the trimmed value, THEN lower-case it.
Lower-casing first would let engines disagree: Python lowers KELVIN SIGN U+212A to ``k`` and
U+0130 to ``i`` + a combining dot, DuckDB lowers U+0130 to a plain ``i``, so a non-ASCII address
could turn valid in one engine only. Matching before lowering rejects every non-ASCII address in
every engine, and lower-casing pure ASCII is identical everywhere. (Applied to an already
lower-cased value the pattern gives the same answer for any ASCII input.)

Internationalized addresses (non-ASCII local part or Unicode domain) are rejected: they need
SMTPUTF8 end to end, which cold-email sending infrastructure does not reliably offer, so they would
bounce and hurt the sending domains' reputation. Punycode domains (``xn--...``) are ASCII and pass;
a punycode TLD does not (the TLD is letters only).

Engines: Python must use ``re.fullmatch`` (Python's ``$`` also matches before a final newline;
RE2's does not); SQL uses ``REGEXP_CONTAINS`` (BigQuery) or ``regexp_full_match`` /
``regexp_matches`` (DuckDB), together with ``LENGTH(x) <= MAX_EMAIL_LENGTH``. Not checked: the
64-character limit on the local part (Instantly reports such rows as invalid on add).
"""

DOMAIN_PATTERN: str = rf"^{_DOMAIN}$"
"""A domain name as EMAIL_PATTERN accepts it after the ``@`` (same rule, same engines)."""

EMAIL_TRIM_CHARS: str = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"  # every char str.isspace() knows ...
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"  # ... including NBSP and the Unicode spaces
    "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f"  # soft hyphen, zero-width chars, direction marks
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
    "\u2066\u2067\u2068\u2069\ufeff"  # bidi embeddings/isolates, word joiner, BOM
)
"""Characters trimmed from both ends of an email or domain before validation.

Spreadsheet and CRM exports carry NBSP, zero-width spaces and BOMs around values. Only the ends are
trimmed: such a character INSIDE an address makes it invalid (it is not silently repaired). SQL can
use the same set: ``TRIM(x, @chars)`` in BigQuery, ``trim(x, ?)`` in DuckDB.
"""

_EMAIL_RE = re.compile(EMAIL_PATTERN)


def normalize_email(raw: object) -> str | None:
    """Return the canonical form of an email address, or None when it is not a usable one.

    Trim EMAIL_TRIM_CHARS at both ends; reject non-strings, the empty string, anything longer than
    MAX_EMAIL_LENGTH or not matching EMAIL_PATTERN; return the address lower-cased. (Lower-casing
    the local part is a simplification every major mailbox provider agrees with; it is also what
    makes the DNC match case-insensitive.)
    """
    if not isinstance(raw, str):
        return None
    trimmed = raw.strip(EMAIL_TRIM_CHARS)
    if not trimmed or len(trimmed) > MAX_EMAIL_LENGTH or _EMAIL_RE.fullmatch(trimmed) is None:
        return None
    return trimmed.lower()


def email_domain(email: str) -> str:
    """Return the domain of a normalized email (the text after its last ``@``).

    Raises ValueError when there is no ``@`` or nothing after it: callers pass normalized emails.
    """
    _, at, domain = email.rpartition("@")
    if not at or not domain:
        raise ValueError("not an email address (no domain after '@')")
    return domain


# ---------------------------------------------------------------------------------------------
# Revenue
# ---------------------------------------------------------------------------------------------


_PLAIN_NUMBER_RE = re.compile(r"^(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?$")


def parse_revenue(raw: object) -> Decimal | None:
    """Return an annual revenue as a non-negative Decimal, or None when it is unknown.

    Accepted: int, float, Decimal, and strings of plain digits with an optional fraction and
    optional thousands commas in the right places (``"1200000"``, ``"1,200,000.50"``), trimmed.
    None for anything else: bool, NaN, infinities, negatives, ``"$1.2M"``, ``"1e6"``, ``"1,2"``,
    empty strings, other types. Unknown is not guessed: the segment rule decides what it means.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        value = Decimal(repr(raw))  # the shortest decimal that round-trips: 0.1 -> Decimal("0.1")
    elif isinstance(raw, Decimal):
        if not raw.is_finite():
            return None
        value = raw
    elif isinstance(raw, str):
        text = raw.strip(EMAIL_TRIM_CHARS)
        if _PLAIN_NUMBER_RE.fullmatch(text) is None:
            return None
        try:
            value = Decimal(text.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            return None
    else:
        return None
    return value if value >= 0 else None


# ---------------------------------------------------------------------------------------------
# Time: timestamps and cooldown
# ---------------------------------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _require_days(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")


def parse_timestamp(raw: object) -> datetime | None:
    """Return an ISO-8601 timestamp with an offset (``2026-06-30T19:00:49.261Z``) as an aware
    datetime, or None when it is missing, not a string, unparseable or has no offset (a naive time
    is ambiguous, so it counts as missing)."""
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed


def cooldown_ends_at(completed_at: datetime, cooldown_days: int) -> datetime:
    """Return the first instant at which a lead whose last sequence ended at `completed_at` may be
    added again: exactly `cooldown_days` days (of 24 hours) later."""
    _require_aware(completed_at, "completed_at")
    _require_days(cooldown_days, "cooldown_days")
    return completed_at + timedelta(days=cooldown_days)


GIVE_UP_OUTCOME = "failed"
"""History outcome of a lead whose add was given up after DEAD_LETTER_MAX_RETRIES failures Instantly named
it for. It was never sent, so it rests GIVE_UP_COOLDOWN_DAYS (default 7), not COOLDOWN_DAYS (90): long
enough for the other leads to go first and for someone to fix the row, short enough that a good lead is
not benched for a quarter by a passing fault. (Service-level failures never lead here.)"""


def in_cooldown(last_completed_at: datetime | None, now: datetime, cooldown_days: int) -> bool:
    """Return True while a lead may not be re-added: iff ``now - last_completed_at < cooldown_days``.

    Boundary: a lead whose last sequence ended EXACTLY `cooldown_days` days ago is eligible again.
    The view states the same rule as ``last_completed_at <= TIMESTAMP_SUB(now, INTERVAL n DAY)``
    => eligible. A lead never finished (None) is not in cooldown; a completion in the future (clock
    skew) is, until its cooldown runs out.
    """
    _require_aware(now, "now")
    _require_days(cooldown_days, "cooldown_days")
    if last_completed_at is None:
        return False
    return now < cooldown_ends_at(last_completed_at, cooldown_days)


# ---------------------------------------------------------------------------------------------
# The finished-lead classifier
# ---------------------------------------------------------------------------------------------


class LeadStatus(IntEnum):
    """Instantly V2 lead `status` (0 was seen on list-only leads, not in the spec's enum)."""

    LIST_ONLY = 0
    ACTIVE = 1
    PAUSED = 2
    COMPLETED = 3
    BOUNCED = -1
    UNSUBSCRIBED = -2
    SKIPPED = -3


class InterestStatus(IntEnum):
    """Instantly V2 lead `lt_interest_status` (the static values; workspaces may add custom ones)."""

    OUT_OF_OFFICE = 0
    INTERESTED = 1
    MEETING_BOOKED = 2
    MEETING_COMPLETED = 3
    WON = 4
    NOT_INTERESTED = -1
    WRONG_PERSON = -2
    LOST = -3
    NO_SHOW = -4


OUT_OF_OFFICE_LABEL_GRACE = timedelta(minutes=10)
"""How long after a reply its out-of-office label may come (Instantly labels auto-replies itself; assumed)."""


def _replied_after_label(lead: Mapping[str, Any]) -> bool:
    """Whether the lead's last reply (`timestamp_last_reply`) came after its out-of-office label was set
    (`timestamp_last_interest_change`) by more than OUT_OF_OFFICE_LABEL_GRACE: a later reply that nobody
    labelled. Assumed where the spec is silent (README): a reply labelled out of office updates the label's
    time; both timestamps are the lead object's (official spec: Lead). Either missing: False."""
    last_reply = parse_timestamp(lead.get("timestamp_last_reply"))
    labelled = parse_timestamp(lead.get("timestamp_last_interest_change"))
    return last_reply is not None and labelled is not None and last_reply > labelled + OUT_OF_OFFICE_LABEL_GRACE


REAL_REPLY_INTEREST: frozenset[int] = frozenset(s.value for s in InterestStatus) - {InterestStatus.OUT_OF_OFFICE.value}
"""Interest values that only a human conversation produces: each one proves a real reply."""


class Action(StrEnum):
    """What the drain phase does with a lead."""

    KEEP = "keep"  # leave it in Instantly
    DRAIN = "drain"  # record its outcome, then delete it from Instantly
    UNKNOWN = "unknown"  # leave it, and report it: the data does not allow a safe decision


class Outcome(StrEnum):
    """How an attempt ended: the history row's `status_final`."""

    COMPLETED = "completed"
    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    SKIPPED = "skipped"
    STALE = "stale"


class Suppression(StrEnum):
    """What stops a drained lead from being added again."""

    COOLDOWN = "cooldown"  # eligible again once the cooldown has run out
    PERMANENT = "permanent"  # never again (the address bounced), by its history row
    DNC = "dnc"  # never again: written to the do-not-contact list before the lead is deleted


@dataclass(frozen=True)
class Classification:
    """The decision for one Instantly lead. `outcome` and `suppression` are set iff DRAIN.
    `reason` is short and free of personal data (no email, no name, no free text from the API)."""

    action: Action
    outcome: Outcome | None
    suppression: Suppression | None
    reason: str

    def __post_init__(self) -> None:
        draining = self.action is Action.DRAIN
        if draining != (self.outcome is not None) or draining != (self.suppression is not None):
            raise ValueError("outcome and suppression are set exactly when the action is DRAIN")


def _keep(reason: str) -> Classification:
    return Classification(Action.KEEP, None, None, reason)


def _unknown(reason: str) -> Classification:
    return Classification(Action.UNKNOWN, None, None, reason)


def _drain(outcome: Outcome, suppression: Suppression, reason: str) -> Classification:
    return Classification(Action.DRAIN, outcome, suppression, reason)


_MISSING = object()


def _strict_int(value: object) -> int | None:
    """The value if it is an int (IntEnum included), else None. bool is not an int here, and
    neither is a numeric string or a float: a wrong type means the data is not understood."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def _describe(value: object) -> str:
    """A PII-free description of an unexpected value: ints verbatim, anything else by type."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if _strict_int(value) is not None:
        return str(value)
    return f"of type {type(value).__name__}"


def classify_finished_lead(
    lead: Mapping[str, Any],
    *,
    now: datetime,
    added_at: datetime | None,
    max_active_days: int,
) -> Classification:
    """Decide what the drain phase does with one Instantly V2 lead object (from POST /leads/list).

    Rules, first match wins:
      1. `status` missing, not an int (bool, "3", 3.0 do not count) or not a known value, including
         0 (list-only) -> UNKNOWN;
      2. unsubscribed (status -2) -> DRAIN unsubscribed, DNC. It wins over every later rule. The
         lead object has no other unsubscribe signal: the spec's only per-lead mark is status -2
         (FILTER_VAL_UNSUBSCRIBED lists exactly those);
      3. bounced (status -1) -> DRAIN bounced, PERMANENT;
      4. `email_reply_count` or `lt_interest_status` present but not an int, or a negative count
         -> UNKNOWN (null counts as absent; an absent count as 0);
      5. a real reply -> DRAIN replied, COOLDOWN, whatever the status (Instantly stops the sequence
         on reply). Real reply: `lt_interest_status` in REAL_REPLY_INTEREST, or
         `email_reply_count` >= 1 with `lt_interest_status` absent or any value but 0. Out of office
         (0) is an auto-reply, which Instantly counts in `email_reply_count`: it is NOT a reply;
      6. completed (status 3) -> DRAIN completed, COOLDOWN (also after an out-of-office reply);
      7. skipped (status -3) -> DRAIN skipped, COOLDOWN;
      8. active (1) or paused (2): added more than `max_active_days` days before `now` -> DRAIN
         stale, COOLDOWN; exactly `max_active_days` or less -> KEEP. "Added" is `added_at` (our
         state row) when given, else the lead's `timestamp_created`; neither usable -> UNKNOWN.
    UNKNOWN leads stay in Instantly and are reported: a lead is never drained on a guess.
    Raises ValueError for naive `now`/`added_at` or a negative `max_active_days` (caller errors).
    """
    _require_aware(now, "now")
    if added_at is not None:
        _require_aware(added_at, "added_at")
    _require_days(max_active_days, "max_active_days")
    if not isinstance(lead, Mapping):
        return _unknown("lead is not an object")

    raw_status = lead.get("status", _MISSING)
    status_int = _strict_int(raw_status)
    if status_int is None:
        return _unknown(f"status {_describe(raw_status)}")
    try:
        status = LeadStatus(status_int)
    except ValueError:
        return _unknown(f"unknown status {status_int}")
    if status is LeadStatus.LIST_ONLY:
        return _unknown("status 0 (list-only lead)")

    if status is LeadStatus.UNSUBSCRIBED:
        return _drain(Outcome.UNSUBSCRIBED, Suppression.DNC, "unsubscribed (status -2)")
    if status is LeadStatus.BOUNCED:
        return _drain(Outcome.BOUNCED, Suppression.PERMANENT, "bounced (status -1)")

    raw_count = lead.get("email_reply_count")
    reply_count = 0 if raw_count is None else _strict_int(raw_count)
    if reply_count is None or reply_count < 0:
        return _unknown(f"email_reply_count {_describe(raw_count)}")
    raw_interest = lead.get("lt_interest_status")
    interest = None if raw_interest is None else _strict_int(raw_interest)
    if raw_interest is not None and interest is None:
        return _unknown(f"lt_interest_status {_describe(raw_interest)}")

    out_of_office = interest == InterestStatus.OUT_OF_OFFICE
    if interest in REAL_REPLY_INTEREST:
        return _drain(Outcome.REPLIED, Suppression.COOLDOWN, f"reply (interest status {interest})")
    if reply_count >= 1 and not out_of_office:
        return _drain(Outcome.REPLIED, Suppression.COOLDOWN, f"reply (reply count {reply_count})")
    if reply_count >= 1 and _replied_after_label(lead):
        # Out of office, then a reply nobody labelled: read as a person answering (the rep keeps the thread).
        return _drain(Outcome.REPLIED, Suppression.COOLDOWN,
                      f"reply after an out-of-office auto-reply (reply count {reply_count})")

    if status is LeadStatus.COMPLETED:
        suffix = " after an out-of-office auto-reply" if out_of_office else ""
        return _drain(Outcome.COMPLETED, Suppression.COOLDOWN, f"sequence completed (status 3){suffix}")
    if status is LeadStatus.SKIPPED:
        return _drain(Outcome.SKIPPED, Suppression.COOLDOWN, "skipped (status -3)")

    # Active or paused: still in its sequence unless it has been there too long.
    since = added_at if added_at is not None else parse_timestamp(lead.get("timestamp_created"))
    if since is None:
        return _unknown(f"{status.name.lower()} lead without a usable added time")
    age = now - since
    if age > timedelta(days=max_active_days):
        return _drain(
            Outcome.STALE, Suppression.COOLDOWN, f"{status.name.lower()} for more than {max_active_days} days"
        )
    ooo = ", out-of-office auto-reply only" if out_of_office else ""
    return _keep(f"{status.name.lower()} for {max(age.days, 0)} days{ooo}")


def lead_id_of(lead: object) -> str | None:
    """The Instantly id of a lead object: a non-blank string, else None.

    A lead without a usable id cannot be deleted, adopted or tracked: callers keep it and report it.
    """
    value = lead.get("id") if isinstance(lead, Mapping) else None
    return value if isinstance(value, str) and value.strip() else None


ENGAGEMENT_COLUMNS = ("reply_count", "open_count", "last_step_id", "step_reached")
"""The history columns engagement_of fills (schema v7)."""

_STEP_ID = re.compile(r"^\d+_(\d+)_\d+$")


def engagement_of(lead: Mapping[str, Any]) -> dict[str, Any]:
    """What a finished lead object says about how far it got, for its history row (schema v7):
    `reply_count` (`email_reply_count`, out-of-office auto-replies included), `open_count`
    (`email_open_count`), `last_step_id` (`status_summary.lastStep.stepID` as given) and `step_reached`
    (1 for the first email). Counters that are not whole numbers >= 0 are None.

    The spec describes neither the step id's format nor a step number; the recorded real leads and the
    simulator write `<sequence>_<step>_<variant>` with a 0-based step, so `step_reached` is that middle
    part + 1, and None for any other form (the raw id is kept all the same). A top-level `last_step_id`
    (a spec field the recorded leads leave null) is the fallback when `status_summary` has no step."""
    def count(name: str) -> int | None:
        value = _strict_int(lead.get(name))
        return value if value is not None and value >= 0 else None

    summary = lead.get("status_summary")
    last = summary.get("lastStep") if isinstance(summary, Mapping) else None
    step_id = last.get("stepID") if isinstance(last, Mapping) else None
    if not isinstance(step_id, str) or not step_id.strip():
        step_id = lead.get("last_step_id")
    step_id = step_id.strip() if isinstance(step_id, str) and step_id.strip() else None
    match = _STEP_ID.match(step_id) if step_id else None
    return {"reply_count": count("email_reply_count"), "open_count": count("email_open_count"),
            "last_step_id": step_id, "step_reached": int(match.group(1)) + 1 if match else None}


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------

MAX_BATCH_SIZE = 1000
"""Largest batch any Instantly bulk call takes (bulk add, block-list bulk create)."""


def chunk(seq: Iterable[_T], size: int) -> list[list[_T]]:
    """Split `seq` into consecutive lists of `size` items (the last may be shorter), in order.

    `size` must be an int from 1 to MAX_BATCH_SIZE (ValueError otherwise, before any item is read).
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"size must be an integer from 1 to {MAX_BATCH_SIZE}")
    batches: list[list[_T]] = []
    current: list[_T] = []
    for item in seq:
        current.append(item)
        if len(current) == size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class DrainPlan:
    """The drain phase's work list, grouped.

    `to_drain` (in input order) is what gets a history row and is deleted; `unknown` is reported and
    left alone; `outcome_counts` has every Outcome (0 when none). The `dnc` property lists the
    leads whose suppression is DNC: they go to the do-not-contact list before any delete.
    """

    to_drain: tuple[tuple[Mapping[str, Any], Classification], ...]
    unknown: tuple[tuple[Mapping[str, Any], Classification], ...]
    keep_count: int
    outcome_counts: Mapping[Outcome, int]
    duplicate_count: int = 0

    @property
    def dnc(self) -> tuple[tuple[Mapping[str, Any], Classification], ...]:
        return tuple(item for item in self.to_drain if item[1].suppression is Suppression.DNC)


def plan_drain(
    leads: Iterable[tuple[Mapping[str, Any], datetime | None]],
    now: datetime,
    max_active_days: int,
    classify: Callable[[Mapping[str, Any], datetime | None], Classification] | None = None,
) -> DrainPlan:
    """Classify every (lead, added_at) pair and group the results into a DrainPlan.

    A lead whose string `id` was already seen (pages can overlap) is planned once, at its first
    occurrence, and counted in `duplicate_count`; leads without a string id are never merged.
    `classify` replaces classify_finished_lead (with `now` and `max_active_days`) for a caller that knows
    more about some leads (coldsync.phases.events: what a webhook event said).
    """
    def finished(lead: Mapping[str, Any], added_at: datetime | None) -> Classification:
        return classify_finished_lead(lead, now=now, added_at=added_at, max_active_days=max_active_days)

    decide = classify or finished
    to_drain: list[tuple[Mapping[str, Any], Classification]] = []
    unknown: list[tuple[Mapping[str, Any], Classification]] = []
    counts = dict.fromkeys(Outcome, 0)
    keep_count = 0
    duplicate_count = 0
    seen: set[str] = set()
    for lead, added_at in leads:
        lead_id = lead.get("id") if isinstance(lead, Mapping) else None
        if isinstance(lead_id, str):
            if lead_id in seen:
                duplicate_count += 1
                continue
            seen.add(lead_id)
        decision = decide(lead, added_at)
        if decision.outcome is not None:  # set exactly when the action is DRAIN
            counts[decision.outcome] += 1
            to_drain.append((lead, decision))
        elif decision.action is Action.UNKNOWN:
            unknown.append((lead, decision))
        else:
            keep_count += 1
    return DrainPlan(
        to_drain=tuple(to_drain),
        unknown=tuple(unknown),
        keep_count=keep_count,
        outcome_counts=MappingProxyType(counts),
        duplicate_count=duplicate_count,
    )
