"""Tests of coldsync.outcomes: the outcome policy table (issue #13, first slice).

1. The default table: every row as the issue states it, and the settings that build it.
2. policy_for over every outcome x every interest status (static, out of office, custom labels), with the
   policy and the return date worked out by hand.
3. returns_at: exact days of 24 hours, in UTC; properties (never earlier than the end; never stays never).
4. The document loader: overrides, and every refusal with its place and fix.
5. The eligibility SQL, run on DuckDB (through the product's transpiler): agrees with returns_at to the
   instant, for rows with a policy and rows written before the column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldsync.outcomes import (
    DEFAULT_POLICIES,
    DO_NOT_CONTACT,
    GIVEN_UP,
    IN_SALES,
    NO_REPLY,
    NOT_INTERESTED,
    OUTCOMES,
    POLICY_NAMES,
    REPLIED,
    SUPPRESSED,
    WRONG_PERSON,
    InstantlyAction,
    LabelSentiment,
    Policy,
    PolicyError,
    PolicyTable,
    Suppression,
    UnknownInterestStatus,
    default_table,
    label_sentiments,
    load_policies,
    may_return_sql,
    parse_policy_document,
    policy_for,
    returns_at,
)
from coldsync.rules import Outcome
from coldsync.warehouse.duckdb import transpile

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)

LIST = "0000000a-0000-4000-8000-000000000001"
WHERE = "OUTCOME_POLICIES_FILE config/outcomes.toml"

# Custom labels of a workspace, as GET /api/v2/lead-labels would give their numbers and sentiments.
POS, NEG, NEU, UNMAPPED = 1001, 1002, 1003, 1004
LABELS = {POS: LabelSentiment.POSITIVE, NEG: LabelSentiment.NEGATIVE, NEU: LabelSentiment.NEUTRAL}

# ---------------------------------------------------------------------------------------------
# 1. The default table
# ---------------------------------------------------------------------------------------------


def test_default_table_is_the_issue_table() -> None:
    """Each default row: return (days or never), suppression kind, hold days and what happens in Instantly."""
    expected = {
        DO_NOT_CONTACT: (None, Suppression.DNC, 0, InstantlyAction.DELETE),
        IN_SALES: (None, Suppression.IN_SALES, 14, InstantlyAction.HOLD_THEN_DELETE),
        NOT_INTERESTED: (365, Suppression.NONE, 0, InstantlyAction.DELETE),
        WRONG_PERSON: (None, Suppression.ADDRESS, 0, InstantlyAction.DELETE),
        REPLIED: (180, Suppression.NONE, 14, InstantlyAction.HOLD_THEN_DELETE),
        NO_REPLY: (90, Suppression.NONE, 0, InstantlyAction.DELETE),
        SUPPRESSED: (90, Suppression.NONE, 0, InstantlyAction.DELETE),
        GIVEN_UP: (7, Suppression.NONE, 0, InstantlyAction.DELETE),
    }
    table = PolicyTable()
    assert tuple(expected) == POLICY_NAMES
    got = {n: (p.return_after_days, p.suppression, p.hold_days, p.instantly_action) for n, p in table.policies.items()}
    assert got == expected
    assert default_table() == table


def test_default_table_takes_every_value_from_the_settings() -> None:
    """COOLDOWN_DAYS, GIVE_UP_COOLDOWN_DAYS and the proposed reply settings land in their rows; a list id moves
    replied and in-sales leads after the hold."""
    table = default_table(cooldown_days=60, give_up_cooldown_days=3, reply_hold_days=21, replied_list_id=LIST,
                          replied_return_days=200, not_interested_return_days=400)
    assert table[NO_REPLY].return_after_days == table[SUPPRESSED].return_after_days == 60
    assert table[GIVEN_UP].return_after_days == 3
    assert table[REPLIED] == Policy(200, Suppression.NONE, 21, LIST)
    assert table[IN_SALES] == Policy(None, Suppression.IN_SALES, 21, LIST)
    assert table[IN_SALES].instantly_action is InstantlyAction.HOLD_THEN_MOVE
    assert table[NOT_INTERESTED].return_after_days == 400
    assert default_table(reply_hold_days=0, replied_list_id=LIST)[REPLIED].instantly_action is InstantlyAction.MOVE


def test_default_table_refuses_settings_that_contradict_each_other() -> None:
    """A reply that would return before its hold ends is refused, naming the policy and the fix."""
    with pytest.raises(PolicyError) as caught:
        default_table(replied_return_days=10, reply_hold_days=14)
    assert [(p.setting, p.fix) for p in caught.value.problems] == [
        ("settings, policy replied", "set return_after_days to at least 14, or hold_days to at most 10")]


@pytest.mark.parametrize(("fields", "text"), [
    ((None, Suppression.NONE, 0, ""), 'is "none" but return_after_days is "never"'),
    ((30, Suppression.DNC, 0, ""), 'is "dnc", which never expires'),
    ((-1, Suppression.NONE, 0, ""), "is not a whole number of days"),
    ((True, Suppression.NONE, 0, ""), "is not a whole number of days"),
    ((30, "none", 0, ""), "is not one of none, dnc, in_sales, address"),
    ((30, Suppression.NONE, 366, ""), "hold_days: is not a whole number of days from 0 to 365"),
    ((30, Suppression.NONE, 0, "list-1"), "is not an Instantly list id"),
])
def test_policy_refuses_impossible_rows(fields: tuple[Any, Any, Any, Any], text: str) -> None:
    """A Policy cannot be built with values the loader would refuse."""
    with pytest.raises(ValueError, match=text):
        Policy(*fields)


# ---------------------------------------------------------------------------------------------
# 2. policy_for: every outcome x every interest status
# ---------------------------------------------------------------------------------------------

COMPLETED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Return dates by hand from 2026-03-01 12:00 UTC: +7 days is 03-08; +90 is 05-30 (30 to 03-31, 60 to
# 04-30, 90 to 05-30); +180 is 08-28 (91 to 05-31, 121 to 06-30, 152 to 07-31, 180 to 08-28); +365 is
# 2027-03-01 (no 29 February in between).
D7 = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
D90 = datetime(2026, 5, 30, 12, 0, tzinfo=UTC)
D180 = datetime(2026, 8, 28, 12, 0, tzinfo=UTC)
D365 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)

INTERESTS: tuple[int | None, ...] = (None, 0, 1, 2, 3, 4, -1, -2, -3, -4, POS, NEG, NEU, UNMAPPED)
# One column per interest status above: not set, out of office, interested, meeting booked, meeting
# completed, won, not interested, wrong person, lost, no show, positive / negative / neutral custom label,
# a custom value no label maps (!: refused). Codes: X do_not_contact, S in_sales, N not_interested,
# W wrong_person, R replied, C no_reply, U suppressed, G given_up.
GRID = {
    "unsubscribed": "X X X X X X X X X X X X X X",
    "bounced":      "X X X X X X X X X X X X X X",
    "suppressed":   "U U U U U U U U U U U U U U",
    "failed":       "G G G G G G G G G G G G G G",
    "replied":      "R R S S S S N W N N S N R !",
    "completed":    "C C S S S S N W N N S N C !",
    "skipped":      "C C S S S S N W N N S N C !",
    "stale":        "C C S S S S N W N N S N C !",
    "removed":      "C C S S S S N W N N S N C !",
}
CODES = {"X": (DO_NOT_CONTACT, None), "S": (IN_SALES, None), "N": (NOT_INTERESTED, D365), "W": (WRONG_PERSON, None),
         "R": (REPLIED, D180), "C": (NO_REPLY, D90), "U": (SUPPRESSED, D90), "G": (GIVEN_UP, D7)}
CASES = [(outcome, interest, code) for outcome, row in GRID.items()
         for interest, code in zip(INTERESTS, row.split(), strict=True)]


def test_grid_covers_every_outcome_and_interest_status() -> None:
    """The table below names every outcome the sync writes and every static interest value."""
    assert set(GRID) == set(OUTCOMES) == {o.value for o in Outcome} | {"suppressed", "removed", "failed"}
    assert {i for i in INTERESTS if i is not None and -4 <= i <= 4} == set(range(-4, 5))


@pytest.mark.parametrize(("outcome", "interest", "code"), CASES)
def test_policy_for_every_outcome_and_interest(outcome: str, interest: int | None, code: str) -> None:
    """The policy and the return date of each outcome x interest status, as worked out by hand above."""
    if code == "!":
        with pytest.raises(UnknownInterestStatus):
            policy_for(outcome, interest, custom_labels=LABELS)
        return
    name, policy = policy_for(outcome, interest, custom_labels=LABELS)
    assert (name, returns_at(policy, COMPLETED_AT)) == CODES[code]
    assert policy == DEFAULT_POLICIES[name]


def test_custom_labels_of_the_document_win_over_instantly() -> None:
    """A `[custom_labels]` entry maps a value Instantly does not (a deleted label) and overrides one it does."""
    table = load_policies({"custom_labels": {str(UNMAPPED): "negative", str(POS): "neutral"}}, where=WHERE)
    assert policy_for("completed", UNMAPPED, table=table)[0] == NOT_INTERESTED
    assert policy_for("replied", POS, table=table, custom_labels=LABELS)[0] == REPLIED


def test_policy_for_refuses_what_it_does_not_know() -> None:
    """An unknown outcome, or an interest status that is not a whole number, is a caller error."""
    with pytest.raises(ValueError, match="unknown outcome 'won'"):
        policy_for("won", None)
    for bad in (True, 1.0, "1"):
        with pytest.raises(ValueError, match="is not a whole number"):
            policy_for("replied", bad)  # type: ignore[arg-type]


def test_label_sentiments_reads_the_lead_labels_listing() -> None:
    """GET /api/v2/lead-labels items become value -> sentiment; static values and malformed items are skipped."""
    items: list[Mapping[str, Any]] = [
        {"id": "a", "label": "Hot", "interest_status": 1001, "interest_status_label": "positive"},
        {"id": "b", "label": "Nope", "interest_status": 1002.0, "interest_status_label": "negative"},
        {"id": "c", "label": "Meh", "interest_status": 1003, "interest_status_label": "neutral"},
        {"id": "d", "label": "Static", "interest_status": 1, "interest_status_label": "negative"},
        {"id": "e", "label": "Odd", "interest_status": "7", "interest_status_label": "positive"},
        {"id": "f", "label": "Odd", "interest_status": 8, "interest_status_label": "great"},
        {"id": "g", "label": "Odd", "interest_status": True, "interest_status_label": "positive"},
    ]
    assert label_sentiments(items) == LABELS


# ---------------------------------------------------------------------------------------------
# 3. returns_at
# ---------------------------------------------------------------------------------------------


def test_returns_at_counts_days_of_24_hours_in_utc() -> None:
    """Across a daylight-saving change the return is exactly N x 24 hours later, given in UTC."""
    start = datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("America/New_York"))  # DST begins 2026-03-08
    got = returns_at(DEFAULT_POLICIES[NO_REPLY], start)
    assert got == datetime(2026, 5, 30, 17, 0, tzinfo=UTC)
    assert got is not None and got - start == timedelta(days=90) and got.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        returns_at(DEFAULT_POLICIES[NO_REPLY], datetime(2026, 3, 1))


policies = st.one_of(
    st.builds(Policy, st.integers(0, 3650), st.just(Suppression.NONE), st.just(0)),
    st.builds(Policy, st.none(), st.sampled_from([Suppression.DNC, Suppression.IN_SALES, Suppression.ADDRESS]),
              st.integers(0, 365)),
    st.sampled_from(list(DEFAULT_POLICIES.values())),
)
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1),
                       timezones=st.one_of(st.just(UTC), st.timezones(),
                                           st.builds(lambda m: timezone(timedelta(minutes=m)),
                                                     st.integers(-23 * 60, 23 * 60))))


@PROPERTIES
@given(policies, moments)
def test_returns_at_is_never_before_the_end(policy: Policy, completed_at: datetime) -> None:
    """A return date is never earlier than the end of the attempt, and exactly its days later."""
    back = returns_at(policy, completed_at)
    if policy.return_after_days is not None:
        assert back is not None and back >= completed_at
        assert back - completed_at == timedelta(days=policy.return_after_days)


@PROPERTIES
@given(policies, moments, st.sampled_from(OUTCOMES), st.one_of(st.none(), st.integers(-4, 4), st.sampled_from(
    [POS, NEG, NEU])))
def test_never_stays_never(policy: Policy, completed_at: datetime, outcome: str, interest: int | None) -> None:
    """A never policy has no return date at any time, and a policy chosen by policy_for returns a date
    exactly when its row has days."""
    if policy.never:
        assert returns_at(policy, completed_at) is None
    _, chosen = policy_for(outcome, interest, custom_labels=LABELS)
    assert (returns_at(chosen, completed_at) is None) == chosen.never


# ---------------------------------------------------------------------------------------------
# 4. The document loader
# ---------------------------------------------------------------------------------------------

Problem = tuple[str, str, str]


def problems_of(document: Mapping[str, Any]) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        load_policies(document, where=WHERE)
    return [(p.setting, p.message, p.fix) for p in caught.value.problems]


def test_document_overrides_defaults_and_keeps_the_rest() -> None:
    """A TOML document replaces only the values it names; "never" in any case; a list id kept lower-case."""
    text = f"""
[not_interested]
return_after_days = 540
[in_sales]
hold_days = 21
list_id = "{LIST.upper()}"
[no_reply]
return_after_days = "Never"
suppression = "address"
"""
    table = load_policies(parse_policy_document(text, WHERE), where=WHERE)
    assert table[NOT_INTERESTED] == Policy(540, Suppression.NONE)
    assert table[IN_SALES] == Policy(None, Suppression.IN_SALES, 21, LIST)
    assert table[NO_REPLY] == Policy(None, Suppression.ADDRESS)
    assert table[REPLIED] == DEFAULT_POLICIES[REPLIED]
    assert table.origin == WHERE
    name, policy = policy_for("completed", -1, table=table)
    assert (name, returns_at(policy, COMPLETED_AT)) == (NOT_INTERESTED, COMPLETED_AT + timedelta(days=540))


def test_json_document_and_base_table() -> None:
    """A JSON document (config-table row) is read too, over a base table built from the settings."""
    base = default_table(cooldown_days=60)
    table = load_policies(parse_policy_document('\ufeff{"replied": {"return_after_days": 120}}', WHERE),
                          where=WHERE, base=base)
    assert table[REPLIED].return_after_days == 120
    assert table[NO_REPLY].return_after_days == 60
    assert load_policies(None, where=WHERE, base=base) == base


def test_document_syntax_errors() -> None:
    """Unreadable TOML or JSON, or a document that is not a table, is refused with the place."""
    for text, start in (("[replied\n", "is not valid TOML"), ('{"replied": ', "is not valid JSON")):
        with pytest.raises(PolicyError) as caught:
            parse_policy_document(text, WHERE)
        problem = caught.value.problems[0]
        assert (problem.setting, problem.fix) == (WHERE, "correct its syntax")
        assert problem.message.startswith(start)


def test_unknown_policy_names_are_refused_with_where_they_belong() -> None:
    """An unknown name is refused; an outcome or interest name is pointed to the policy that decides it."""
    assert problems_of({"bouncd": {}, "bounced": {}, "Interested": {}, "lost": {}, "out_of_office": {}}) == [
        (f"{WHERE}, policy 'bouncd'", "is not a policy",
         "use one of do_not_contact, in_sales, not_interested, wrong_person, replied, no_reply, suppressed, "
         "given_up, custom_labels"),
        (f"{WHERE}, policy 'bounced'", "is not a policy", "'bounced' is decided by do_not_contact: write "
                                                          "[do_not_contact]"),
        (f"{WHERE}, policy 'Interested'", "is not a policy", "'Interested' is decided by in_sales: write [in_sales]"),
        (f"{WHERE}, policy 'lost'", "is not a policy", "'lost' is decided by not_interested: write [not_interested]"),
        (f"{WHERE}, policy 'out_of_office'", "is not a policy",
         "'out_of_office' is decided by the policy of its outcome (no interest status set)"),
    ]


FIX_DAYS = 'set return_after_days to a number of days, e.g. 365, or to "never"'
MSG_DAYS = 'is not a whole number of days from 0 to 3650 or "never"'
FIX_HOLD = "set hold_days, e.g. 14 (0: acted on at once)"
MSG_HOLD = "is not a whole number of days from 0 to 365"


@pytest.mark.parametrize(("policy", "fields", "expected"), [
    ("replied", {"hold": 3}, ("replied, hold", "is not a policy setting",
                              "use only return_after_days, suppression, hold_days, list_id")),
    ("replied", {"return_after_days": -1}, ("replied, return_after_days", f"-1 {MSG_DAYS}", FIX_DAYS)),
    ("replied", {"return_after_days": 4000}, ("replied, return_after_days", f"4000 {MSG_DAYS}", FIX_DAYS)),
    ("replied", {"return_after_days": 1.5}, ("replied, return_after_days", f"1.5 {MSG_DAYS}", FIX_DAYS)),
    ("replied", {"return_after_days": True}, ("replied, return_after_days", f"True {MSG_DAYS}", FIX_DAYS)),
    ("replied", {"return_after_days": "90"}, ("replied, return_after_days", f"'90' {MSG_DAYS}", FIX_DAYS)),
    ("replied", {"hold_days": 400}, ("replied, hold_days", f"400 {MSG_HOLD}", FIX_HOLD)),
    ("replied", {"hold_days": "x"}, ("replied, hold_days", f"'x' {MSG_HOLD}", FIX_HOLD)),
    ("replied", {"suppression": "sometimes"}, ("replied, suppression",
                                               "'sometimes' is not one of none, dnc, in_sales, address",
                                               "set suppression to one of them")),
    ("replied", {"list_id": "Replied leads"}, (
        "replied, list_id", "'replied leads' is not an Instantly list id (a UUID)",
        'set list_id to the id of the Instantly list, or to "" to delete the lead instead')),
    ("no_reply", {"return_after_days": "never"}, (
        "no_reply, suppression", 'is "none" but return_after_days is "never": nothing would say why',
        'set suppression to "address" (this address only) or "in_sales"; or give a number of days')),
    ("in_sales", {"return_after_days": 400}, (
        "in_sales, suppression", 'is "in_sales", which never expires, but return_after_days is 400',
        'set return_after_days to "never", or suppression to "none"')),
    ("replied", {"return_after_days": 10}, (
        "replied, return_after_days", "is 10, before the hold of 14 days ends: the address would be eligible "
                                      "while its lead is still in Instantly",
        "set return_after_days to at least 14, or hold_days to at most 10")),
    ("do_not_contact", {"return_after_days": 365, "suppression": "none"}, (
        "do_not_contact", "would let an unsubscribed or bounced address return",
        "remove return_after_days and suppression: unsubscribes and bounces stay on the DNC list")),
    ("do_not_contact", {"hold_days": 2}, (
        "do_not_contact", "cannot be held or moved: an unsubscribed or bounced lead is deleted at once (Instantly "
        "must not email it again)", "remove hold_days and list_id from [do_not_contact]")),
    ("suppressed", {"list_id": "0b3510b0-b46e-41da-b170-17a6205738d1"}, (
        "suppressed", "cannot be held or moved: a lead whose person is on the do-not-contact list is taken out at "
        "once", "remove hold_days and list_id from [suppressed]")),
    ("given_up", {"hold_days": 3}, (
        "given_up", "cannot be held or moved: a given-up add never reached Instantly",
        "remove hold_days and list_id from [given_up]")),
    ("not_interested", {"return_after_days": "never", "suppression": "dnc"}, (
        "not_interested, suppression", '"dnc" is only for unsubscribes and bounces: the sync writes do-not-contact '
        "entries for them alone", 'use "address" (never this address again, its domain stays eligible) or '
        '"in_sales"')),
])
def test_policy_refusals_name_the_place_and_the_fix(policy: str, fields: dict[str, Any],
                                                     expected: tuple[str, str, str]) -> None:
    """Each bad value is refused with its policy and field, the value, and the fix."""
    place, message, fix = expected
    assert problems_of({policy: fields}) == [(f"{WHERE}, policy {place}", message, fix)]


def test_do_not_contact_stays_as_it_is() -> None:
    """Unsubscribes and bounces: restating the defaults is accepted and changes nothing."""
    table = load_policies({"do_not_contact": {"suppression": "dnc", "hold_days": 0, "list_id": ""}}, where=WHERE)
    assert table[DO_NOT_CONTACT] == Policy(None, Suppression.DNC, 0, "")


def test_custom_label_and_table_refusals() -> None:
    """Custom labels: whole-number keys outside the static values, known sentiments; a policy is a table.
    Every problem of the document is listed at once."""
    assert problems_of({"replied": 5, "custom_labels": {"x": "positive", "1": "negative", "1005": "meh"}}) == [
        (f"{WHERE}, policy replied", "is not a table of settings", "write e.g. [replied] with return_after_days = 90"),
        (f"{WHERE}, custom_labels, x", "is not a whole number",
         "use the label's interest_status number (GET /api/v2/lead-labels)"),
        (f"{WHERE}, custom_labels, 1", "is one of Instantly's own interest values (-4 to 4)",
         "map only custom label values"),
        (f"{WHERE}, custom_labels, 1005", "'meh' is not a sentiment", "use one of positive, negative, neutral"),
    ]
    assert problems_of({"custom_labels": ["positive"]}) == [
        (f"{WHERE}, custom_labels", "is not a table of interest value = sentiment", 'write e.g. 17 = "negative"')]


# ---------------------------------------------------------------------------------------------
# 5. The eligibility SQL, on DuckDB
# ---------------------------------------------------------------------------------------------

TICK = timedelta(microseconds=1)
FAR = COMPLETED_AT + timedelta(days=3650 * 3)


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def may_return(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]], table: PolicyTable | None = None
               ) -> list[bool]:
    """The generated expression over (policy, return_at, status_final, completed_at, as_of) rows, in order."""
    con.execute("CREATE OR REPLACE TEMP TABLE hist (n INTEGER, policy VARCHAR, return_at TIMESTAMPTZ, "
                "status_final VARCHAR, completed_at TIMESTAMPTZ, as_of TIMESTAMPTZ)")
    con.executemany("INSERT INTO hist VALUES (?, ?, ?, ?, ?, ?)", [(i, *row) for i, row in enumerate(rows)])
    sql = transpile(f"SELECT {may_return_sql(table, as_of='h.as_of')} FROM hist AS h ORDER BY h.n")  # noqa: S608
    return [bool(v) for (v,) in con.execute(sql).fetchall()]


def test_sql_agrees_with_returns_at_for_every_case(duck: duckdb.DuckDBPyConnection) -> None:
    """For every outcome x interest case: not eligible a microsecond before its return, eligible at it; a
    never row is not eligible thirty years on."""
    rows: list[tuple[Any, ...]] = []
    expected: list[bool] = []
    for outcome, interest, code in CASES:
        if code == "!":
            continue
        name, policy = policy_for(outcome, interest, custom_labels=LABELS)
        back = returns_at(policy, COMPLETED_AT)
        if back is None:
            rows.append((name, None, outcome, COMPLETED_AT, FAR))
            expected.append(False)
        else:
            rows += [(name, back, outcome, COMPLETED_AT, back - TICK), (name, back, outcome, COMPLETED_AT, back)]
            expected += [False, True]
    assert may_return(duck, rows) == expected


def test_sql_for_rows_written_before_the_policy_column(duck: duckdb.DuckDBPyConnection) -> None:
    """A row without a policy rests as its outcome with no interest status would; a status the sync never
    wrote (an old 'invalid') rests like no_reply."""
    rows: list[tuple[Any, ...]] = []
    expected: list[bool] = []
    for outcome in (*OUTCOMES, "invalid"):
        days = policy_for(outcome if outcome in OUTCOMES else "completed", None)[1].return_after_days
        if days is None:
            rows.append((None, None, outcome, COMPLETED_AT, FAR))
            expected.append(False)
        else:
            back = COMPLETED_AT + timedelta(days=days)
            rows += [(None, None, outcome, COMPLETED_AT, back - TICK), (None, None, outcome, COMPLETED_AT, back)]
            expected += [False, True]
    assert may_return(duck, rows) == expected


def test_sql_lifting_by_hand_and_unknown_policies(duck: duckdb.DuckDBPyConnection) -> None:
    """A never row given a return_at by hand (an in_sales mark lifted) is eligible from then; a policy name
    the table does not have is never eligible; a dated policy row missing its return_at is not either."""
    lifted = COMPLETED_AT + timedelta(days=30)
    assert may_return(duck, [
        ("in_sales", lifted, "replied", COMPLETED_AT, lifted - TICK),
        ("in_sales", lifted, "replied", COMPLETED_AT, lifted),
        ("vip", COMPLETED_AT, "replied", COMPLETED_AT, FAR),
        ("no_reply", None, "completed", COMPLETED_AT, FAR),
    ]) == [False, True, False, False]


def test_sql_follows_the_table(duck: duckdb.DuckDBPyConnection) -> None:
    """The days of rows without a policy come from the table in effect, not from fixed numbers."""
    table = load_policies({"no_reply": {"return_after_days": 30}, "replied": {"return_after_days": "never",
                                                                              "suppression": "address"}},
                          where=WHERE)
    day30 = COMPLETED_AT + timedelta(days=30)
    assert may_return(duck, [(None, None, "completed", COMPLETED_AT, day30 - TICK),
                             (None, None, "completed", COMPLETED_AT, day30),
                             (None, None, "replied", COMPLETED_AT, FAR)], table) == [False, True, False]


@pytest.mark.parametrize("arguments", [
    {"alias": "h; DROP TABLE x"}, {"policy": "policy--"}, {"return_at": "1x"}, {"status": "a b"},
    {"completed": ""}, {"as_of": "NOW()"}, {"as_of": "@x OR TRUE"}, {"as_of": "'2026-01-01'"},
])
def test_sql_takes_checked_identifiers_only(arguments: dict[str, str]) -> None:
    """Names and the as-of reference are identifiers, a parameter or CURRENT_TIMESTAMP(), never free text."""
    with pytest.raises(ValueError, match="must be"):
        may_return_sql(**arguments)  # type: ignore[arg-type]


def test_sql_is_bigquery_with_a_parameter() -> None:
    """The default expression reads @as_of and the proposed columns policy and return_at."""
    sql = may_return_sql()
    assert "h.policy IS NULL" in sql and "COALESCE(h.return_at <= @as_of, FALSE)" in sql
    assert "TIMESTAMP_SUB(@as_of, INTERVAL 90 DAY)" in sql
