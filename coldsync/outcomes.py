"""The outcome policy table (issue #13, first slice): ONE definition of what happens after a lead leaves
its sequence, by how it ended and by its latest interest status at drain time.

For each policy (a row of the table): (a) how long before the address may return to cold outreach (N days,
or never), with the kind of suppression that says so; (b) what happens to the lead in Instantly: delete at
once (frees room), or hold N days in its campaign and then delete it or move it to an Instantly list.

Pure: no I/O, nothing at import time. The sync uses it later: the drain asks `policy_for`, writes the
history row's `policy` and `return_at` (`returns_at`) and acts in Instantly; the eligibility view embeds
`may_return_sql`, generated from the same table, so Python and SQL cannot disagree.

A policy document (TOML, or JSON when it starts with `{`; like the routes) overrides any default::

    [not_interested]
    return_after_days = 540          # or "never"
    [in_sales]
    hold_days = 21                   # days the lead stays in its campaign (0: acted on at once)
    list_id = "..."                  # then moved to this Instantly list; "" or absent: deleted
    [replied]
    suppression = "none"             # none | dnc | in_sales | address (must agree with return_after_days)
    [custom_labels]
    17 = "negative"                  # a custom interest value -> positive | negative | neutral

Custom labels (official spec, components/schemas/LeadLabel and Lead.lt_interest_status): a workspace's own
label has a number, `interest_status`, "generated automatically" by Instantly, and a sentiment,
`interest_status_label`: positive, negative or neutral. A lead carries only the number in
`lt_interest_status`; the sentiment is read from GET /api/v2/lead-labels (`label_sentiments` turns that
listing into a map). Assumed, since the spec does not say: a value of the static set (-4 to 4) always has its
static meaning, custom numbers lie outside it; a neutral label counts as "no interest status set" (like out
of office); a custom number nobody can map is refused (`UnknownInterestStatus`): the drain keeps such a lead
and reports it, as it does every lead it cannot classify, and `[custom_labels]` maps it by hand (for a label
deleted in Instantly).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from coldsync.redact import redact
from coldsync.rules import GIVE_UP_OUTCOME, InterestStatus, Outcome

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------


class Suppression(StrEnum):
    """What keeps the address out of cold outreach, besides the history row's `return_at`."""

    NONE = "none"  # nothing: the address returns at `return_at`
    DNC = "dnc"  # the do-not-contact list (permanent, mirrored to Instantly's block list), as today
    IN_SALES = "in_sales"  # never from cold campaigns while sales owns it; lifted by hand (set `return_at`)
    ADDRESS = "address"  # never this address (the history row); its domain stays eligible: no DNC entry


class InstantlyAction(StrEnum):
    """What the drain does with the lead in Instantly (derived from a Policy's hold_days and list_id)."""

    DELETE = "delete"
    HOLD_THEN_DELETE = "hold_then_delete"
    MOVE = "move"
    HOLD_THEN_MOVE = "hold_then_move"


class InInstantly(StrEnum):
    """What the sync did with the lead in Instantly (history column `in_instantly`)."""

    DELETED = "deleted"
    HELD = "held"  # in its campaign, hold under way
    HELD_THEN_DELETED = "held then deleted"
    HELD_THEN_MOVED = "held then moved"
    MOVED = "moved"
    GONE = "gone"  # closed because Instantly no longer had it (deleted or moved by hand)
    NOT_ADDED = "not added"  # an add skipped (already in the workspace) or given up


class LabelSentiment(StrEnum):
    """A custom label's `interest_status_label` (official spec: LeadLabel)."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    NEUTRAL = "neutral"


SUPPRESSED_OUTCOME = "suppressed"
"""History outcome of a tracked lead whose person landed on the DNC list (coldsync.phases.drain)."""

REMOVED_OUTCOME = "removed"
"""History outcome of a lead closed because Instantly no longer has it (coldsync.phases.reconcile)."""

OUTCOMES: tuple[str, ...] = (*(o.value for o in Outcome), SUPPRESSED_OUTCOME, REMOVED_OUTCOME, GIVE_UP_OUTCOME)
"""Every `status_final` the sync writes: the classifier's outcomes, then the phases' own."""

MAX_DAYS = 3650
"""Longest return delay a document may set (ten years; beyond that, say "never")."""

MAX_HOLD_DAYS = 365
"""Longest hold in Instantly a document may set."""

NEVER = "never"
"""The document's word for return_after_days = None."""

_LIST_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# ---------------------------------------------------------------------------------------------
# A policy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """One row of the table.

    `return_after_days`: days from the end of the attempt (`completed_at`) until the address may return to
    cold outreach; None: never (then `suppression` says by what). `hold_days`: days the lead stays in its
    Instantly campaign after the drain (0: acted on at once); then it is moved to the Instantly list
    `list_id`, or deleted when `list_id` is empty.

    Checked here (ValueError): days are whole numbers in range; never goes with a suppression and a date
    with none (a DNC entry or an in-sales mark that expires would be a contradiction); a dated return is not
    before the hold ends (the address would be eligible while its lead still sits in Instantly).
    """

    return_after_days: int | None
    suppression: Suppression
    hold_days: int = 0
    list_id: str = ""

    def __post_init__(self) -> None:
        problem = policy_problem(self.return_after_days, self.suppression, self.hold_days, self.list_id)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

    @property
    def never(self) -> bool:
        return self.return_after_days is None

    @property
    def instantly_action(self) -> InstantlyAction:
        if self.list_id:
            return InstantlyAction.HOLD_THEN_MOVE if self.hold_days else InstantlyAction.MOVE
        return InstantlyAction.HOLD_THEN_DELETE if self.hold_days else InstantlyAction.DELETE


def _whole(value: object, low: int, high: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high


def policy_problem(return_after_days: object, suppression: object, hold_days: object,
                   list_id: object) -> tuple[str, str, str] | None:
    """The first thing wrong with these Policy fields as (field, what, fix), or None. One definition, used
    by Policy itself and by the document loader (which names the place)."""
    if return_after_days is not None and not _whole(return_after_days, 0, MAX_DAYS):
        return ("return_after_days", f"is not a whole number of days from 0 to {MAX_DAYS} or \"never\"",
                'set return_after_days to a number of days, e.g. 365, or to "never"')
    if not isinstance(suppression, Suppression):
        return ("suppression", "is not one of " + ", ".join(s.value for s in Suppression),
                "set suppression to one of them")
    if not _whole(hold_days, 0, MAX_HOLD_DAYS):
        return ("hold_days", f"is not a whole number of days from 0 to {MAX_HOLD_DAYS}",
                "set hold_days, e.g. 14 (0: acted on at once)")
    if not isinstance(list_id, str) or (list_id and not _LIST_ID.match(list_id)):
        return ("list_id", "is not an Instantly list id (a UUID)",
                'set list_id to the id of the Instantly list, or to "" to delete the lead instead')
    if return_after_days is None and suppression is Suppression.NONE:
        return ("suppression", 'is "none" but return_after_days is "never": nothing would say why',
                'set suppression to "address" (this address only) or "in_sales"; or give a number of days')
    if return_after_days is not None and suppression is not Suppression.NONE:
        return ("suppression", f'is "{suppression.value}", which never expires, but return_after_days is '
                               f"{return_after_days}",
                'set return_after_days to "never", or suppression to "none"')
    if isinstance(return_after_days, int) and isinstance(hold_days, int) and return_after_days < hold_days:
        return ("return_after_days", f"is {return_after_days}, before the hold of {hold_days} days ends: the "
                                     "address would be eligible while its lead is still in Instantly",
                f"set return_after_days to at least {hold_days}, or hold_days to at most {return_after_days}")
    return None


# ---------------------------------------------------------------------------------------------
# The defaults (every value also a setting: see default_table)
# ---------------------------------------------------------------------------------------------

DEFAULT_COOLDOWN_DAYS = 90  # COOLDOWN_DAYS
DEFAULT_GIVE_UP_COOLDOWN_DAYS = 7  # GIVE_UP_COOLDOWN_DAYS
DEFAULT_REPLY_HOLD_DAYS = 14  # REPLY_HOLD_DAYS (proposed)
DEFAULT_REPLIED_RETURN_DAYS = 180  # REPLIED_RETURN_DAYS (proposed)
DEFAULT_NOT_INTERESTED_RETURN_DAYS = 365  # NOT_INTERESTED_RETURN_DAYS (proposed)

DO_NOT_CONTACT = "do_not_contact"
IN_SALES = "in_sales"
NOT_INTERESTED = "not_interested"
WRONG_PERSON = "wrong_person"
REPLIED = "replied"
NO_REPLY = "no_reply"
SUPPRESSED = "suppressed"
GIVEN_UP = "given_up"

DO_NOT_CONTACT_POLICY = Policy(None, Suppression.DNC)
"""unsubscribed, bounced: never again, by the DNC list (as today). An unsubscribe is the person's legal
opt-out; a bounce is a dead address that costs the sending domains their reputation with every retry. Deleted
at once: nothing is left to do in Instantly and the room goes to a fresh lead. Fixed: a document may change
only its Instantly handling (invariant 1)."""

IN_SALES_POLICY = Policy(None, Suppression.IN_SALES, DEFAULT_REPLY_HOLD_DAYS)
"""interested, meeting booked, meeting completed, won, a positive custom label: never again from cold
campaigns, since a person in a sales conversation who gets a cold sequence sees a company that does not know
them. Not the DNC list: sales may want them back (a deal lost, a champion gone), so it is lifted by hand by
giving the history row a `return_at`. Held REPLY_HOLD_DAYS (14) in the campaign so the rep works the thread in
Instantly's inbox while it is hot, then moved to REPLIED_LIST_ID when set (kept in Instantly, out of the
campaign's room), else deleted."""

NOT_INTERESTED_POLICY = Policy(DEFAULT_NOT_INTERESTED_RETURN_DAYS, Suppression.NONE)
"""not interested, lost, no show, a negative custom label: back after 365 days. A "no" is mostly "not now":
within a year budgets, roles and tools change; sooner would look like the answer was ignored. Deleted at
once: the conversation is over and the room is better used."""

WRONG_PERSON_POLICY = Policy(None, Suppression.ADDRESS)
"""wrong person: never this address, which told us it is not the buyer, but no DNC entry and nothing for the
domain: the company may still be a fit through someone else. Deleted at once."""

REPLIED_POLICY = Policy(DEFAULT_REPLIED_RETURN_DAYS, Suppression.NONE, DEFAULT_REPLY_HOLD_DAYS)
"""replied with no interest status set (or out of office, or a neutral custom label): back after 180 days.
Someone wrote back (a question, a referral, "later") and nobody judged it: twice the cold cooldown, so it
does not feel like the reply went unread, half a clear "no". Held REPLY_HOLD_DAYS like a positive reply, for
the rep to read and label it, then moved to REPLIED_LIST_ID or deleted."""

NO_REPLY_POLICY = Policy(DEFAULT_COOLDOWN_DAYS, Suppression.NONE)
"""completed without a reply, skipped, stale, removed from Instantly by hand: back after COOLDOWN_DAYS (90),
today's cooldown: a quarter later is a fresh try in a new context, soon enough to keep the pool full. Deleted
at once to free the room."""

SUPPRESSED_POLICY = Policy(DEFAULT_COOLDOWN_DAYS, Suppression.NONE)
"""suppressed (the person landed on the DNC list, by address, domain or erasure, mid-sequence): the DNC
entry that caused it keeps them out; the row itself rests like a finished attempt, as today, so when the entry
is lifted by hand they return after the usual cooldown. Deleted at once (invariant 1: nobody on the list is
kept in Instantly), whatever the interest status."""

GIVEN_UP_POLICY = Policy(DEFAULT_GIVE_UP_COOLDOWN_DAYS, Suppression.NONE)
"""failed (an add given up after DEAD_LETTER_MAX_RETRIES refusals): back after GIVE_UP_COOLDOWN_DAYS (7), as
today: it was never sent, so a quarter's rest would bench a good lead for a passing fault. Nothing is in
Instantly to act on."""

DEFAULT_POLICIES: Mapping[str, Policy] = MappingProxyType({
    DO_NOT_CONTACT: DO_NOT_CONTACT_POLICY, IN_SALES: IN_SALES_POLICY, NOT_INTERESTED: NOT_INTERESTED_POLICY,
    WRONG_PERSON: WRONG_PERSON_POLICY, REPLIED: REPLIED_POLICY, NO_REPLY: NO_REPLY_POLICY,
    SUPPRESSED: SUPPRESSED_POLICY, GIVEN_UP: GIVEN_UP_POLICY,
})
"""The table's rows by name, in the order they are documented."""

POLICY_NAMES: tuple[str, ...] = tuple(DEFAULT_POLICIES)

POSITIVE_INTEREST: frozenset[int] = frozenset({InterestStatus.INTERESTED, InterestStatus.MEETING_BOOKED,
                                               InterestStatus.MEETING_COMPLETED, InterestStatus.WON})
NEGATIVE_INTEREST: frozenset[int] = frozenset({InterestStatus.NOT_INTERESTED, InterestStatus.LOST,
                                               InterestStatus.NO_SHOW})
STATIC_INTEREST: frozenset[int] = frozenset(int(s) for s in InterestStatus)

# Outcomes decided by themselves, whatever the interest status says (first rule of policy_for).
_FIXED_BY_OUTCOME: Mapping[str, str] = MappingProxyType({
    Outcome.UNSUBSCRIBED.value: DO_NOT_CONTACT, Outcome.BOUNCED.value: DO_NOT_CONTACT,
    SUPPRESSED_OUTCOME: SUPPRESSED, GIVE_UP_OUTCOME: GIVEN_UP,
})
# Outcomes whose policy, with no interest status set, is their own.
_WITHOUT_INTEREST: Mapping[str, str] = MappingProxyType({
    Outcome.REPLIED.value: REPLIED, Outcome.COMPLETED.value: NO_REPLY, Outcome.SKIPPED.value: NO_REPLY,
    Outcome.STALE.value: NO_REPLY, REMOVED_OUTCOME: NO_REPLY,
})

# Where each outcome and interest name belongs (for the loader's fix when a document names one).
_MEMBERS: Mapping[str, str] = MappingProxyType({
    **_FIXED_BY_OUTCOME, **_WITHOUT_INTEREST, "completed": NO_REPLY,
    **{s.name.lower(): IN_SALES for s in InterestStatus if s in POSITIVE_INTEREST},
    **{s.name.lower(): NOT_INTERESTED for s in InterestStatus if s in NEGATIVE_INTEREST},
    "wrong_person": WRONG_PERSON, "out_of_office": "the policy of its outcome (no interest status set)",
})


@dataclass(frozen=True)
class PolicyTable:
    """The policies in effect, by name (every name of POLICY_NAMES), and custom-label sentiments set by
    hand (`[custom_labels]`; they win over Instantly's, since an operator wrote them on purpose)."""

    policies: Mapping[str, Policy] = field(default_factory=lambda: DEFAULT_POLICIES)
    custom_labels: Mapping[int, LabelSentiment] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = "default"

    def __post_init__(self) -> None:
        if tuple(self.policies) != POLICY_NAMES:
            raise ValueError(f"a policy table has exactly the policies {', '.join(POLICY_NAMES)}, in order")

    def __getitem__(self, name: str) -> Policy:
        return self.policies[name]


def default_table(*, cooldown_days: int = DEFAULT_COOLDOWN_DAYS,
                  give_up_cooldown_days: int = DEFAULT_GIVE_UP_COOLDOWN_DAYS,
                  reply_hold_days: int = DEFAULT_REPLY_HOLD_DAYS, replied_list_id: str = "",
                  replied_return_days: int = DEFAULT_REPLIED_RETURN_DAYS,
                  not_interested_return_days: int = DEFAULT_NOT_INTERESTED_RETURN_DAYS) -> PolicyTable:
    """The default table with the settings' values in place (COOLDOWN_DAYS, GIVE_UP_COOLDOWN_DAYS and the
    proposed REPLY_HOLD_DAYS, REPLIED_LIST_ID, REPLIED_RETURN_DAYS, NOT_INTERESTED_RETURN_DAYS). Raises
    PolicyError when they contradict each other (a reply returning before its hold ends)."""
    values = {
        DO_NOT_CONTACT: (None, Suppression.DNC, 0, ""),
        IN_SALES: (None, Suppression.IN_SALES, reply_hold_days, replied_list_id),
        NOT_INTERESTED: (not_interested_return_days, Suppression.NONE, 0, ""),
        WRONG_PERSON: (None, Suppression.ADDRESS, 0, ""),
        REPLIED: (replied_return_days, Suppression.NONE, reply_hold_days, replied_list_id),
        NO_REPLY: (cooldown_days, Suppression.NONE, 0, ""),
        SUPPRESSED: (cooldown_days, Suppression.NONE, 0, ""),
        GIVEN_UP: (give_up_cooldown_days, Suppression.NONE, 0, ""),
    }
    problems = [PolicyProblem(f"settings, policy {name}", f"{p[0]} {p[1]}", p[2])
                for name, (days, kind, hold, list_id) in values.items()
                if (p := policy_problem(days, kind, hold, list_id)) is not None]
    if problems:
        raise PolicyError(problems)
    return PolicyTable(MappingProxyType({name: Policy(*v) for name, v in values.items()}))


# ---------------------------------------------------------------------------------------------
# Deciding
# ---------------------------------------------------------------------------------------------


class UnknownInterestStatus(ValueError):
    """A custom interest value with no known sentiment: the lead is kept and reported, never guessed."""


def label_sentiments(labels: Iterable[Mapping[str, Any]]) -> dict[int, LabelSentiment]:
    """Custom-label sentiments by interest value, from the items of GET /api/v2/lead-labels (LeadLabel:
    `interest_status` a number, `interest_status_label` positive/negative/neutral). Items without a whole
    number or a known sentiment are skipped, as are static values (their meaning is Instantly's)."""
    out: dict[int, LabelSentiment] = {}
    for item in labels:
        value, sentiment = item.get("interest_status"), item.get("interest_status_label")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _whole(value, -(2**31), 2**31) or not isinstance(sentiment, str):
            continue
        assert isinstance(value, int)
        if value in STATIC_INTEREST or sentiment not in set(LabelSentiment):
            continue
        out[value] = LabelSentiment(sentiment)
    return out


def policy_for(outcome: str, interest_status: int | None, *, table: PolicyTable | None = None,
               custom_labels: Mapping[int, LabelSentiment] | None = None) -> tuple[str, Policy]:
    """The policy (name, Policy) of an attempt that ended with `outcome` (a history `status_final`, see
    OUTCOMES) while the lead's latest `lt_interest_status` was `interest_status` (None: not set).

    Rules, first match wins:
      1. unsubscribed, bounced -> do_not_contact; suppressed -> suppressed; failed -> given_up, whatever the
         interest status (an opt-out and a dead address beat any label; a DNC'd person is never kept; a
         given-up add was never sent);
      2. interest 1-4 or a positive custom label -> in_sales;
      3. interest -1, -3, -4 or a negative custom label -> not_interested;
      4. interest -2 -> wrong_person;
      5. otherwise (not set, 0 out of office, a neutral custom label): replied -> replied; completed,
         skipped, stale, removed -> no_reply.
    A custom value (outside -4..4) takes its sentiment from `table.custom_labels`, else `custom_labels`
    (Instantly's, see label_sentiments); neither knows it -> UnknownInterestStatus. An unknown outcome, or an
    interest status that is not an int (bool included) -> ValueError.
    """
    table = table or PolicyTable()
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    if interest_status is not None and not _whole(interest_status, -(2**63), 2**63):
        raise ValueError(f"interest status of type {type(interest_status).__name__} is not a whole number")
    fixed = _FIXED_BY_OUTCOME.get(outcome)
    if fixed is not None:
        return fixed, table[fixed]
    name = _WITHOUT_INTEREST[outcome]
    if interest_status is not None:
        interest = int(interest_status)
        if interest in STATIC_INTEREST:
            sentiment = (LabelSentiment.POSITIVE if interest in POSITIVE_INTEREST
                         else LabelSentiment.NEGATIVE if interest in NEGATIVE_INTEREST else None)
            if interest == InterestStatus.WRONG_PERSON:
                return WRONG_PERSON, table[WRONG_PERSON]
        else:
            sentiment = table.custom_labels.get(interest) or (custom_labels or {}).get(interest)
            if sentiment is None:
                raise UnknownInterestStatus(f"custom interest status {interest} has no known sentiment")
        if sentiment is LabelSentiment.POSITIVE:
            name = IN_SALES
        elif sentiment is LabelSentiment.NEGATIVE:
            name = NOT_INTERESTED
    return name, table[name]


def returns_at(policy: Policy, completed_at: datetime) -> datetime | None:
    """When the address may return to cold outreach after an attempt that ended at `completed_at` (aware):
    exactly `return_after_days` days of 24 hours later, in UTC (so a daylight-saving change in the given zone
    does not move it by an hour), or None for never. The history row's `return_at`. Raises ValueError for a
    naive `completed_at`."""
    if completed_at.tzinfo is None or completed_at.utcoffset() is None:
        raise ValueError("completed_at must be a timezone-aware datetime")
    if policy.return_after_days is None:
        return None
    return completed_at.astimezone(UTC) + timedelta(days=policy.return_after_days)


IN_WORKSPACE_OUTCOME = "in_workspace"
"""History outcome of an add Instantly skipped because the address is in another campaign of the workspace
(coldsync.phases.topup): not one of OUTCOMES, since nothing was sent; it rests like no reply (may_return_sql's
branch for a status without a policy of its own says the same)."""

INTEREST_STATUS_COLUMN = "interest_status"
"""ops_lead_history column (INT64): the lead's lt_interest_status at drain time (NULL: not set, or no lead)."""


def history_policy_columns(outcome: str, interest_status: int | None, completed_at: datetime, *,
                           table: PolicyTable | None = None,
                           custom_labels: Mapping[int, LabelSentiment] | None = None) -> dict[str, Any]:
    """The policy columns of a history row the sync writes (`policy`, `interest_status`, `return_at`):
    policy_for + returns_at, ONE helper for every place a history row is made. IN_WORKSPACE_OUTCOME takes
    no_reply. Raises UnknownInterestStatus (a custom value nobody mapped) and ValueError like policy_for."""
    table = table or PolicyTable()
    if outcome == IN_WORKSPACE_OUTCOME:
        name, policy = NO_REPLY, table[NO_REPLY]
    else:
        name, policy = policy_for(outcome, interest_status, table=table, custom_labels=custom_labels)
    return {POLICY_COLUMN: name, INTEREST_STATUS_COLUMN: interest_status,
            RETURN_AT_COLUMN: returns_at(policy, completed_at)}


def row_returns_at(policy: str | None, return_at: datetime | None, status_final: str,
                   completed_at: datetime | None, *, table: PolicyTable | None = None) -> datetime | None:
    """When one history row lets its person return to cold outreach (None: never): the Python mirror of
    may_return_sql, which is TRUE at `as_of` exactly when this is not None and not after `as_of`. A row with
    a policy of the table: its `return_at`; with another policy name: never; written before the columns
    (`policy` None): its status_final's policy with no interest status, counted from `completed_at` (a
    status the sync never wrote: no_reply's days)."""
    table = table or PolicyTable()
    if policy is not None:
        return return_at if policy in DEFAULT_POLICIES else None
    if completed_at is None:
        return None
    legacy = policy_for(status_final, None, table=table)[1] if status_final in OUTCOMES else table[NO_REPLY]
    return returns_at(legacy, completed_at)


# ---------------------------------------------------------------------------------------------
# Loading a document
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy document: where (e.g. `OUTCOME_POLICIES_FILE config/outcomes.toml,
    policy replied, hold_days`), what, and the fix."""

    setting: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}. Fix: {self.fix}"


class PolicyError(Exception):
    """The policy document cannot be used; raised at load, before anything is touched."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


POLICY_KEYS: tuple[str, ...] = ("return_after_days", "suppression", "hold_days", "list_id")
IMMEDIATE_POLICIES: Mapping[str, str] = MappingProxyType({
    DO_NOT_CONTACT: "an unsubscribed or bounced lead is deleted at once (Instantly must not email it again)",
    SUPPRESSED: "a lead whose person is on the do-not-contact list is taken out at once",
    GIVEN_UP: "a given-up add never reached Instantly",
})
"""Policies the drain always acts on at once (delete, never hold or move), and why."""

CUSTOM_LABELS_KEY = "custom_labels"


def parse_policy_document(text: str, where: str) -> dict[str, Any]:
    """A policy document: JSON when it starts with `{`, else TOML; a leading byte order mark is ignored.
    Raises PolicyError."""
    text = text.removeprefix("\ufeff")
    stripped = text.strip()
    kind = "JSON" if stripped.startswith("{") else "TOML"
    try:
        data: Any = json.loads(stripped) if kind == "JSON" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError([PolicyProblem(where, f"is not valid {kind} ({redact(str(exc), 200)})",
                                         "correct its syntax")]) from exc
    if not isinstance(data, dict):
        raise PolicyError([PolicyProblem(where, "is not a table of policies", "see coldsync/outcomes.py")])
    return data


def _days(raw: object) -> object:
    """return_after_days as the document gives it: "never" (any case) -> None; anything else as is."""
    return None if isinstance(raw, str) and raw.strip().lower() == NEVER else raw


def load_policies(document: Mapping[str, Any] | None, *, where: str,
                  base: PolicyTable | None = None) -> PolicyTable:
    """The table of `base` (default: the built-in defaults) with the document's values in place of its own.
    Raises PolicyError listing every problem, each with its place and fix: an unknown policy name (with the
    policy an outcome or interest name belongs to), an unknown key, a bad number, suppression or list id,
    fields that contradict each other, a do_not_contact that would expire, a bad custom label."""
    base = base or PolicyTable()
    problems: list[PolicyProblem] = []

    def add(place: str, message: str, fix: str) -> None:
        problems.append(PolicyProblem(f"{where}, {place}", message, fix))

    policies = dict(base.policies)
    custom = dict(base.custom_labels)
    known = ", ".join((*POLICY_NAMES, CUSTOM_LABELS_KEY))
    for name, raw in (document or {}).items():
        if name == CUSTOM_LABELS_KEY:
            _load_labels(raw, custom, add)
            continue
        if name not in DEFAULT_POLICIES:
            member = _MEMBERS.get(str(name).strip().lower().replace(" ", "_"))
            fix = (f"{name!r} is decided by {member}: write [{member}]" if member in DEFAULT_POLICIES
                   else f"{name!r} is decided by {member}" if member else f"use one of {known}")
            add(f"policy {redact(str(name), 80)!r}", "is not a policy", fix)
            continue
        if not isinstance(raw, dict):
            add(f"policy {name}", "is not a table of settings", f'write e.g. [{name}] with return_after_days = 90')
            continue
        unknown = [k for k in raw if k not in POLICY_KEYS]
        for key in unknown:
            add(f"policy {name}, {redact(str(key), 80)}", "is not a policy setting",
                f"use only {', '.join(POLICY_KEYS)}")
        current = policies[name]
        days = _days(raw["return_after_days"]) if "return_after_days" in raw else current.return_after_days
        kind_raw = raw.get("suppression", current.suppression.value)
        kind: object = (Suppression(kind_raw) if isinstance(kind_raw, str) and kind_raw in set(Suppression)
                        else kind_raw)
        hold = raw.get("hold_days", current.hold_days)
        list_id = raw.get("list_id", current.list_id)
        if isinstance(list_id, str):
            list_id = list_id.strip().lower()
        problem = policy_problem(days, kind, hold, list_id)
        if problem is not None:
            shown = {"return_after_days": raw.get("return_after_days"), "suppression": kind_raw,
                     "hold_days": hold, "list_id": list_id}[problem[0]]
            # A bad value is shown (repr: a quoted "90" is text, not a number); a contradiction speaks for itself.
            value_problem = problem[1].startswith("is not") and problem[0] in raw
            add(f"policy {name}, {problem[0]}",
                f"{redact(repr(shown), 80)} {problem[1]}" if value_problem else problem[1], problem[2])
            continue
        if unknown:
            continue
        assert days is None or isinstance(days, int)
        assert isinstance(kind, Suppression) and isinstance(hold, int) and isinstance(list_id, str)
        if name == DO_NOT_CONTACT and (days is not None or kind is not Suppression.DNC):
            add(f"policy {name}", "would let an unsubscribed or bounced address return",
                'remove return_after_days and suppression: unsubscribes and bounces stay on the DNC list')
            continue
        if name in IMMEDIATE_POLICIES and (hold or list_id):
            add(f"policy {name}", "cannot be held or moved: " + IMMEDIATE_POLICIES[name],
                f"remove hold_days and list_id from [{name}]")
            continue
        if kind is Suppression.DNC and name != DO_NOT_CONTACT:
            add(f"policy {name}, suppression", '"dnc" is only for unsubscribes and bounces: the sync writes '
                "do-not-contact entries for them alone",
                'use "address" (never this address again, its domain stays eligible) or "in_sales"')
            continue
        policies[name] = Policy(days, kind, hold, list_id)
    if problems:
        raise PolicyError(problems)
    return PolicyTable(MappingProxyType(policies), MappingProxyType(custom), where if document else base.origin)


def _load_labels(raw: object, custom: dict[int, LabelSentiment], add: Callable[[str, str, str], None]) -> None:
    sentiments = ", ".join(s.value for s in LabelSentiment)
    if not isinstance(raw, dict):
        add(CUSTOM_LABELS_KEY, "is not a table of interest value = sentiment", 'write e.g. 17 = "negative"')
        return
    for key, value in raw.items():
        place = f"{CUSTOM_LABELS_KEY}, {redact(str(key), 80)}"
        try:
            number = int(str(key).strip())
        except ValueError:
            add(place, "is not a whole number", "use the label's interest_status number (GET /api/v2/lead-labels)")
            continue
        if number in STATIC_INTEREST:
            add(place, "is one of Instantly's own interest values (-4 to 4)", "map only custom label values")
            continue
        if not isinstance(value, str) or value.strip().lower() not in set(LabelSentiment):
            add(place, f"{redact(str(value), 80)!r} is not a sentiment", f"use one of {sentiments}")
            continue
        custom[number] = LabelSentiment(value.strip().lower())


# ---------------------------------------------------------------------------------------------
# SQL: may this history row's person return?
# ---------------------------------------------------------------------------------------------

POLICY_COLUMN = "policy"
"""ops_lead_history column (STRING): the policy name the drain chose (NULL: written before it)."""

RETURN_AT_COLUMN = "return_at"
"""ops_lead_history column (TIMESTAMP): returns_at(); NULL: never. Setting it by hand lifts a
never (an in_sales mark, a wrong person)."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_AS_OF = re.compile(r"^(?:@[A-Za-z_][A-Za-z0-9_]{0,63}|(?:[A-Za-z_][A-Za-z0-9_]{0,63}\.)?[A-Za-z_][A-Za-z0-9_]{0,63}"
                    r"|CURRENT_TIMESTAMP\(\))$")


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{what} must be an SQL identifier (letters, digits, underscores)")
    return value


def _quoted(name: str) -> str:
    if not _IDENTIFIER.match(name):  # policy and outcome names are fixed identifiers; never user text
        raise ValueError("only identifiers are embedded in SQL")
    return f"'{name}'"


def may_return_sql(table: PolicyTable | None = None, *, as_of: str = "@as_of", alias: str = "h",
                   policy: str = POLICY_COLUMN, return_at: str = RETURN_AT_COLUMN,
                   status: str = "status_final", completed: str = "completed_at") -> str:
    """ONE BigQuery expression, TRUE when the history row `alias` lets its person return to cold outreach
    at `as_of` (a query parameter `@name`, a column, or CURRENT_TIMESTAMP()). A person may return when it
    holds for every one of their rows (e.g. LOGICAL_AND over the person's rows).

    - a row with a policy of the table: its `return_at` has passed (NULL `return_at`: never);
    - a row with any other policy name: FALSE (never guessed);
    - a row written before the column (`policy` NULL): the policy its `status_final` gets with no interest
      status (policy_for), counted from `completed_at`; a status the sync never wrote: no_reply's days.
    Every day count comes from `table`; every identifier is checked (ValueError)."""
    table = table or PolicyTable()
    if not _AS_OF.match(as_of):
        raise ValueError("as_of must be @parameter, a column or CURRENT_TIMESTAMP()")
    a = _identifier(alias, "alias")
    p, r = f"{a}.{_identifier(policy, 'policy')}", f"{a}.{_identifier(return_at, 'return_at')}"
    s, c = f"{a}.{_identifier(status, 'status')}", f"{a}.{_identifier(completed, 'completed')}"

    def after(days: int | None) -> str:
        if days is None:
            return "FALSE"
        return f"COALESCE({c} <= TIMESTAMP_SUB({as_of}, INTERVAL {int(days)} DAY), FALSE)"

    legacy = " ".join(f"WHEN {_quoted(o)} THEN {after(policy_for(o, None, table=table)[1].return_after_days)}"
                      for o in OUTCOMES)
    names = ", ".join(_quoted(n) for n in POLICY_NAMES)
    return (f"(CASE WHEN {p} IS NULL THEN (CASE {s} {legacy} ELSE {after(table[NO_REPLY].return_after_days)} END) "
            f"WHEN {p} IN ({names}) THEN COALESCE({r} <= {as_of}, FALSE) ELSE FALSE END)")
