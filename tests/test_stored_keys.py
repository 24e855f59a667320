"""Stored keys (schema v9): a key computed once, in Python, is trusted by the SQL only while its check (SHA-256
over the key rule, the raw value and the key: suppression.key_check) is what SQL computes over the row
(schema.trusted_key_guard), and the per-run back-fill (Store.backfill_keys) keys and checks rows without ever
un-suppressing anyone.

0. The check's SQL twin equals key_check on both engines, its separator included (sqlglot hands DuckDB the
   character BigQuery reads from the escape).
1. Equivalence, property-based, on both engines: for random messy ops_dnc and ops_lead_history rows (written by
   the Store, inserted by hand, checked then edited by hand: raw value, key or check; checked under another rule,
   a check with no key, holding a wrong key), the guarded `dnc` (kind, key) set, `history_rows` and
   `history_by_key` equal what the unguarded definition (the text before v9, kept below) computes.
2. The back-fill: hand-inserted rows are keyed and checked by one run; a hand-edited DNC row keeps its old key
   blocking AND its new value blocks, and stays unchecked; a second run writes nothing.
3. The reviewer's attacks, through real runs: a DNC key edited to the raw email, a history key upper-cased.
4. Upgrade: a v8 warehouse upgraded by setup keeps every suppression exactly; the first back-fill checks.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from coldsync import suppression
from coldsync.rules import EMAIL_TRIM_CHARS, GIVE_UP_OUTCOME
from coldsync.settings import Settings
from coldsync.store import Store, dnc_row, stamped_dnc_row
from coldsync.suppression import (
    KEY_CHECK_SEPARATOR,
    address_key,
    dnc_key_stamp,
    history_key_stamp,
    key_check,
    sql_domain_key,
    sql_key_check,
)
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.migrate import ensure_schema
from coldsync.warehouse.schema import (
    DNC,
    DNC_KEY_CTES,
    HISTORY_KEY_CTES,
    LEAD_HISTORY,
    address_key_ctes,
    history_rest_columns,
)
from tests.helpers import T0, add_dnc, add_history, build, lead, ready
from tests.test_sync_suppression import START, World, _world

# --- the definition before v9 (every key computed from the raw value), kept as the reference ---------------

UNGUARDED_CTES = f"""{address_key_ctes("old_dnc_emails", "`{ds}.ops_dnc`", "email",
                                       "domain, email_key AS stored_email_key, domain_key AS stored_domain_key, "
                                       "email_hash")},
old_dnc_entries AS (
  SELECT k.stored_email_key, k.email_key AS sql_email_key, k.stored_domain_key,
         {sql_domain_key("k.domain")} AS sql_domain_key, k.email_hash
  FROM old_dnc_emails AS k
),
old_dnc AS (
  SELECT DISTINCT kind, key FROM (
    SELECT 'email' AS kind, stored_email_key AS key FROM old_dnc_entries
    UNION ALL SELECT 'email', sql_email_key FROM old_dnc_entries
    UNION ALL SELECT 'domain', stored_domain_key FROM old_dnc_entries
    UNION ALL SELECT 'domain', sql_domain_key FROM old_dnc_entries
    UNION ALL SELECT 'hash', email_hash FROM old_dnc_entries
  ) AS u WHERE key IS NOT NULL
),
{address_key_ctes("old_history_rows", "`{ds}.ops_lead_history`", "email",
                  "completed_at, attempt_num, status_final, policy, return_at")},
old_history_by_key AS (
  SELECT email_key, {history_rest_columns()}, MAX(attempt_num) AS last_attempt
  FROM old_history_rows WHERE email_key IS NOT NULL GROUP BY email_key
)"""  # noqa: S608

# Both definitions in ONE query (the emulator answers a query in ~0.2 s): what each says, tagged.
COMPARE_SQL = f"""
WITH {DNC_KEY_CTES},
{HISTORY_KEY_CTES},
{UNGUARDED_CTES}
SELECT 'dnc' AS what, kind AS a, key AS b, CAST(NULL AS TIMESTAMP) AS c, CAST(NULL AS TIMESTAMP) AS d,
       CAST(NULL AS INT64) AS e FROM dnc
UNION ALL SELECT 'old_dnc', kind, key, NULL, NULL, NULL FROM old_dnc
UNION ALL SELECT 'rows', email_key, status_final, completed_at, NULL, attempt_num FROM history_rows
UNION ALL SELECT 'old_rows', email_key, status_final, completed_at, NULL, attempt_num FROM old_history_rows
UNION ALL SELECT 'by_key', email_key, NULL, last_completed_at, last_given_up_at, last_attempt FROM history_by_key
UNION ALL SELECT 'old_by_key', email_key, NULL, last_completed_at, last_given_up_at, last_attempt
FROM old_history_by_key
"""  # noqa: S608

DNC_INSERT_FIELDS = (("email", "STRING"), ("domain", "STRING"), ("email_key", "STRING"), ("domain_key", "STRING"),
                     ("email_key_check", "STRING"), ("domain_key_check", "STRING"),
                     ("email_hash", "STRING"), ("source", "STRING"), ("reason", "STRING"), ("added_at", "TIMESTAMP"))
INSERT_DNC_SQL = """
INSERT INTO `{ds}.ops_dnc` (email, domain, email_key, domain_key, email_key_check, domain_key_check, email_hash,
                            source, reason, added_at)
SELECT r.email, r.domain, r.email_key, r.domain_key, r.email_key_check, r.domain_key_check, r.email_hash,
       r.source, r.reason, r.added_at FROM UNNEST(@rows) AS r
"""
HISTORY_INSERT_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("status_final", "STRING"),
                         ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"), ("email_key", "STRING"),
                         ("email_key_check", "STRING"))
INSERT_HISTORY_SQL = """
INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, status_final, completed_at, attempt_num, email_key,
                                     email_key_check)
SELECT r.email, r.campaign_id, r.status_final, r.completed_at, r.attempt_num, r.email_key, r.email_key_check
FROM UNNEST(@rows) AS r
"""
OTHER_RULE = "0123456789abcdef"


def check_under(rule: str, raw: str, key: str) -> str:
    """key_check as a version whose key rule was `rule` computed it (the one helper, its rule swapped)."""
    with mock.patch.object(suppression, "KEY_RULE", rule):
        return key_check(raw, key)


def checked(raw: str | None, key: str | None) -> str | None:
    """key_check of a raw value and a key, None without either."""
    return key_check(raw, key) if raw is not None and key is not None else None


# --- 0. the check's SQL twin ----------------------------------------------------------------------------------

CHECK_VALUES = [("Ann+x@Acme.example", "ann@acme.example"), ("", ""), ("a\x1fb", "c"), ("a", "\x1fb\x1fc"),
                ("bücher.example", "xn--bcher-kva.example"), ("\u00a0'q'\"@x\u200b", "q@x"), ("\\x1f", "\\"),
                ("x" * 300, "y" * 200)]


def test_the_check_is_one_definition_in_python_and_sql(raw_warehouse: Warehouse) -> None:
    """sql_key_check equals key_check on both engines, for values holding the separator, quotes, backslashes
    and non-ASCII text; the separator is the same call in both (sqlglot hands DuckDB CHR(31) as is)."""
    from coldsync.warehouse.duckdb import transpile

    assert KEY_CHECK_SEPARATOR == "\x1f"
    assert sql_key_check("r", "k").count("CHR(31)") == 2
    assert transpile(f"SELECT {sql_key_check('r', 'k')} AS c FROM t").count("CHR(31)") == 2  # noqa: S608
    rows = [{"raw": raw, "key": key} for raw, key in CHECK_VALUES]
    got = raw_warehouse.query(f"SELECT r.raw, r.key, {sql_key_check('r.raw', 'r.key')} AS c "  # noqa: S608
                              "FROM UNNEST(@rows) AS r", {"rows": Rows((("raw", "STRING"), ("key", "STRING")), rows)},
                              label="test.check")
    assert sorted((r["raw"], r["key"], r["c"]) for r in got) == sorted(
        (raw, key, key_check(raw, key)) for raw, key in CHECK_VALUES)
    assert {len(key_check(raw, key)) for raw, key in CHECK_VALUES} == {16}
    # each part counts: the rule, the raw value and the key
    assert len({key_check("a", "b"), key_check("a", "c"), key_check("b", "b"), check_under(OTHER_RULE, "a", "b"),
                key_check("a\x1fb", ""), key_check("a", "\x1fb")}) == 6

# --- 1. equivalence, property-based ---------------------------------------------------------------------------

_local = st.text(string.ascii_letters + string.digits + "._+'-", min_size=1, max_size=6)
_domain = st.sampled_from(["acme.example", "Acme.Example", "gmail.com", "googlemail.com", "www.acme.example",
                           "sub.acme.example", "bücher.example", "xn--bcher-kva.example", "b.example"])
_trim = st.text(EMAIL_TRIM_CHARS[:6] + "\u00a0\u200b\ufeff", max_size=2)
_address = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)


@st.composite
def _pasted(draw: st.DrawFn) -> str:
    """An address as pasted: trim characters, mailto:, <...>, Name <...>, quotes, trailing dot, case."""
    text = draw(_address)
    if draw(st.booleans()):
        text = text.upper() if draw(st.booleans()) else text.title()
    wrap = draw(st.sampled_from(["", "<{}>", "mailto:{}", "Ann Doe <{}>", '"{}"', "'{}'", "{}.", "{}?subject=x"]))
    return draw(_trim) + (wrap.format(text) if wrap else text) + draw(_trim)


_odd_email = st.sampled_from(["ann@bücher.example", "Jösé <jane@acme.example>", "jane@acme\u200b.example",
                              "\u212aate@acme.example", "josé@acme.example", "not-an-address", "a@b", "",
                              "x@y.example; z@y.example", "'quote@acme.example"])
emails = st.one_of(_pasted(), _odd_email, st.text(max_size=8))
domains = st.one_of(
    st.builds(lambda pre, d, post: pre + d + post, st.sampled_from(["", "https://", "www.", "@", "HTTP://www."]),
              _domain, st.sampled_from(["", "/contact", ".", ":8080", "?q=1"])),
    st.sampled_from(["jane@acme.example", "bücher.example", "not a domain", ""]), st.text(max_size=6))
# How a row came to hold what it holds (see the module docstring).
PROVENANCES = ("store", "hand", "keyed_unchecked", "edited", "other_rule", "checked_null", "wrong_key",
               "key_edited", "check_edited")


def _dnc_part(how: str, raw: str | None, other: str | None, key_of: Callable[[str], str | None],
              ) -> tuple[str | None, str | None]:
    """(stored key, check) of one part (email or domain) of a DNC row, as `how` left it."""
    if raw is None:
        return None, None
    key = key_of(raw)
    if how == "store":
        return key, checked(raw, key)
    if how == "keyed_unchecked":
        return key, None
    if how == "edited":  # keyed and checked as `other`, then the raw value was edited to `raw`
        other_key = key_of(other or "")
        return other_key, checked(other or "", other_key)
    if how == "other_rule":  # keyed by another rule: another key, checked under OTHER_RULE
        return (f"old.{key}", check_under(OTHER_RULE, raw, f"old.{key}")) if key else (None, None)
    if how == "checked_null":  # a check beside no key
        return None, checked(raw, key)
    if how == "wrong_key":
        return "wrong@wrong.example", None
    if how == "key_edited":  # keyed and checked, then `SET email_key = email` (the reviewer's attack)
        return raw, checked(raw, key)
    if how == "check_edited":  # keyed and checked, then the check copied from another row
        return key, checked(other or "", key_of(other or ""))
    return None, None


def dnc_entry(shape: str, how: str, email: str | None, domain: str | None, other_email: str,
              other_domain: str) -> dict[str, Any]:
    """One ops_dnc row of `shape` (email, domain, both, hash, empty) as provenance `how` left it."""
    email = email if shape in ("email", "both") else None
    domain = domain if shape in ("domain", "both") else None
    email_key, email_check = _dnc_part(how, email, other_email, address_key)
    domain_key, domain_check = _dnc_part(how, domain, other_domain, lambda v: dnc_key_stamp(None, v)["domain_key"])
    if how == "store" and shape != "hash":  # what Store.add_dnc writes, from the one helper
        written = stamped_dnc_row(dnc_row(email=email, domain=domain, source="manual", reason="test"))
        email_key, domain_key = written["email_key"], written["domain_key"]
        email_check, domain_check = written["email_key_check"], written["domain_key_check"]
    return {"email": email, "domain": domain, "email_key": email_key, "domain_key": domain_key,
            "email_key_check": email_check, "domain_key_check": domain_check,
            "email_hash": "ab" * 32 if shape == "hash" else None, "source": "manual", "reason": how, "added_at": T0}


dnc_rows = st.builds(dnc_entry, st.sampled_from(["email", "email", "domain", "both", "hash", "empty"]),
                     st.sampled_from(PROVENANCES), emails, domains, emails, domains)


def history_entry(how: str, email: str, other: str, status: str = "completed", days: int = 0,
                  attempt: int = 1) -> dict[str, Any]:
    """One ops_lead_history row (email as written or imported) as provenance `how` left it."""
    stamp = history_key_stamp(email)
    right, right_check = stamp["email_key"], stamp["email_key_check"]
    other_key = history_key_stamp(other)["email_key"]
    key, check = {
        "store": (right, right_check),
        "hand": (None, None),
        "keyed_unchecked": (right, None),
        "edited": (other_key, checked(other, other_key)),
        "other_rule": ((f"old.{right}", check_under(OTHER_RULE, email, f"old.{right}")) if right else (None, None)),
        "checked_null": (None, right_check),
        "wrong_key": ("wrong@wrong.example", None),
        # keyed and checked, then `SET email_key = UPPER(email_key)` (the reviewer's attack)
        "key_edited": (right.upper() if right else None, right_check),
        "check_edited": (right, history_key_stamp(other)["email_key_check"]),
    }[how]
    return {"email": email, "campaign_id": "c-smb", "status_final": status,
            "completed_at": T0 - dt.timedelta(days=days), "attempt_num": attempt,
            "email_key": key, "email_key_check": check}


history_rows = st.builds(history_entry, st.sampled_from(PROVENANCES), emails, emails,
                         st.sampled_from(["completed", GIVE_UP_OUTCOME]), st.integers(0, 3), st.integers(1, 3))

# Every provenance over the values where only Python keys (punycode, a trim character inside, the Kelvin sign),
# run first on both engines: the random draws reach them only now and then.
TRICKY = ["ann@bücher.example", "Jösé <jane@acme.example>", "jane@acme\u200b.example", "\u212aate@acme.example",
          "\u00a0Ann+x@Acme.example\u200b", "plain+x@acme.example"]
TRICKY_DOMAINS = ["bücher.example", "www.bücher.example", "B\u00dcCHER.example", "acme.example", "\u200bacme.example",
                  "x.example"]
EXPLICIT_DNC = [dnc_entry(shape, how, e, d, "z@acme.example", "z.example") for how in PROVENANCES
                for shape in ("email", "domain", "both") for e, d in zip(TRICKY, TRICKY_DOMAINS, strict=True)]
EXPLICIT_HISTORY = [history_entry(how, e, "z@acme.example", attempt=n % 3 + 1) for how in PROVENANCES
                    for n, e in enumerate(TRICKY)]


EXAMPLES = {"duckdb": 40, "bigquery": 5}


def _compare(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in warehouse.query(COMPARE_SQL, label="test.compare"):
        out.setdefault(str(row["what"]), []).append(tuple(row[k] for k in "abcde"))
    return {what: sorted(rows, key=repr) for what, rows in out.items()}


def test_guarded_keys_equal_the_unguarded_definition(raw_warehouse: Warehouse, settings: Settings) -> None:
    """On random messy DNC and history rows of every provenance, the guarded `dnc` set, history rows and
    history_by_key equal exactly what the keys computed from every raw value give (the definition before v9)."""
    build(raw_warehouse, settings)

    @settings_for(raw_warehouse)
    @given(st.lists(dnc_rows, min_size=1, max_size=30), st.lists(history_rows, min_size=1, max_size=30))
    @example(EXPLICIT_DNC, EXPLICIT_HISTORY)
    def check(dnc: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        raw_warehouse.execute("DELETE FROM `{ds}.ops_dnc` WHERE TRUE", label="test.clear")
        raw_warehouse.execute("DELETE FROM `{ds}.ops_lead_history` WHERE TRUE", label="test.clear")
        raw_warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_INSERT_FIELDS, dnc)}, label="test.dnc")
        raw_warehouse.execute(INSERT_HISTORY_SQL, {"rows": Rows(HISTORY_INSERT_FIELDS, history)},
                              label="test.history")
        got = _compare(raw_warehouse)
        for new, old in (("dnc", "old_dnc"), ("rows", "old_rows"), ("by_key", "old_by_key")):
            assert got.get(new, []) == got.get(old, []), new

    check()


def settings_for(warehouse: Warehouse) -> Callable[[Any], Any]:
    """Deterministic, no example database, no shrinking (the assertion names the part that differs)."""
    return settings(max_examples=EXAMPLES[warehouse.engine], deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate])


def test_guard_trusts_only_a_key_whose_check_binds_the_rule_the_value_and_the_key(raw_warehouse: Warehouse,
                                                                                     settings: Settings) -> None:
    """Hand-worked: a stored key counts alone only while its check is key_check(email, email_key) under KEY_RULE;
    an edited email, an edited key, an edited check, a check under another rule and a check beside a NULL key are
    keyed from the raw value (its SQL key counts, and the stored key beside it)."""
    build(raw_warehouse, settings)
    rows: list[dict[str, Any]] = [
        # checked: only the stored key (here deliberately not the raw value's key, to see which one is read)
        {"email": "a+x@acme.example", "email_key": "stored-a@acme.example",
         "email_key_check": key_check("a+x@acme.example", "stored-a@acme.example")},
        # email edited by hand after keying: the old key and the new value's key
        {"email": "b2@acme.example", "email_key": "b1@acme.example",
         "email_key_check": key_check("b1@acme.example", "b1@acme.example")},
        # keyed under another rule: the stored key and the raw value's key
        {"email": "c+x@acme.example", "email_key": "c+x@acme.example",
         "email_key_check": check_under(OTHER_RULE, "c+x@acme.example", "c+x@acme.example")},
        # a check beside a NULL key: the raw value's key
        {"email": "D@acme.example", "email_key": None,
         "email_key_check": key_check("D@acme.example", "d@acme.example")},
        # the key edited by hand to the raw email (`SET email_key = email`): both
        {"email": "E+x@acme.example", "email_key": "E+x@acme.example",
         "email_key_check": key_check("E+x@acme.example", "e@acme.example")},
        # the check edited by hand: both
        {"email": "f+x@acme.example", "email_key": "stored-f@acme.example", "email_key_check": "0" * 16},
    ]
    raw_warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_INSERT_FIELDS, [
        {**r, "domain": None, "domain_key": None, "domain_key_check": None, "email_hash": None, "source": "manual",
         "reason": "test", "added_at": T0} for r in rows])}, label="test.dnc")
    keys = {str(r["key"]) for r in raw_warehouse.query(f"WITH {DNC_KEY_CTES} SELECT key FROM dnc",  # noqa: S608
                                                       label="test.dnc_keys")}
    assert keys == {"stored-a@acme.example", "b1@acme.example", "b2@acme.example", "c+x@acme.example",
                    "c@acme.example", "d@acme.example", "E+x@acme.example", "e@acme.example",
                    "stored-f@acme.example", "f@acme.example"}


# --- 2. the back-fill -----------------------------------------------------------------------------------------


def _upkeep_and_backfill(store: Store) -> Any:
    """What a run's preflight does (coldsync.sync._phases): the one upkeep read, then the back-fill."""
    upkeep = store.dnc_upkeep(100)
    return store.backfill_keys(upkeep.missing, upkeep.history_missing)


def test_backfill_keys_and_checks_hand_rows_and_leaves_an_edited_key_blocking(raw_warehouse: Warehouse,
                                                                              settings: Settings) -> None:
    """One run keys and checks hand-inserted DNC and history rows; a DNC row edited by hand after keying keeps
    its old key blocking AND its new value blocks, stays unchecked, and a second run writes nothing."""
    build(raw_warehouse, settings, [lead(e) for e in ("hand@acme.example", "old@acme.example", "new@acme.example",
                                                      "x@blocked.example", "hist@acme.example", "free@acme.example")])
    add_dnc(raw_warehouse, email=" Hand+x@Acme.example ")
    add_dnc(raw_warehouse, domain="www.Blocked.example")
    Store(raw_warehouse, "run-1", T0).add_dnc([dnc_row(email="old@acme.example", source="manual", reason="t")],
                                              label="test.dnc_stored")
    raw_warehouse.execute("UPDATE `{ds}.ops_dnc` SET email = 'new@acme.example' WHERE email = 'old@acme.example'",
                          label="test.edit")
    add_history(raw_warehouse, "Hist+a@Acme.example", T0 - dt.timedelta(days=10))
    assert list(ready(raw_warehouse)) == ["free@acme.example"]  # every hand row blocks at once, before any run

    store = Store(raw_warehouse, "run-2", T0)
    result = _upkeep_and_backfill(store)
    assert (result.dnc_checked, result.history_checked, result.differing) == (2, 1, 1)
    assert sorted(((r["email"], r["domain"], r["email_key"], r["domain_key"]) for r in result.keyed), key=repr) == [
        (" Hand+x@Acme.example ", None, "hand@acme.example", None),
        (None, "www.Blocked.example", None, "blocked.example")]
    dnc = raw_warehouse.query("SELECT email, domain, email_key, domain_key, email_key_check, domain_key_check "
                              "FROM `{ds}.ops_dnc`", label="t")
    assert sorted(dnc, key=repr) == sorted([
        {"email": " Hand+x@Acme.example ", "domain": None, "email_key": "hand@acme.example", "domain_key": None,
         "email_key_check": key_check(" Hand+x@Acme.example ", "hand@acme.example"), "domain_key_check": None},
        {"email": None, "domain": "www.Blocked.example", "email_key": None, "domain_key": "blocked.example",
         "email_key_check": None, "domain_key_check": key_check("www.Blocked.example", "blocked.example")},
        # the edited row: its old key and its old check, as they were
        {"email": "new@acme.example", "domain": None, "email_key": "old@acme.example", "domain_key": None,
         "email_key_check": key_check("old@acme.example", "old@acme.example"), "domain_key_check": None},
        # and the edited value listed as its own entry (edited_values), keyed and checked
        {"email": "new@acme.example", "domain": None, "email_key": "new@acme.example", "domain_key": None,
         "email_key_check": key_check("new@acme.example", "new@acme.example"), "domain_key_check": None},
    ], key=repr)
    history = raw_warehouse.query("SELECT email, email_key, email_key_check FROM `{ds}.ops_lead_history`",
                                  label="t")
    assert history == [{"email": "Hist+a@Acme.example", "email_key": "hist@acme.example",
                        "email_key_check": key_check("Hist+a@Acme.example", "hist@acme.example")}]
    assert list(ready(raw_warehouse)) == ["free@acme.example"]  # the old AND the new address stay blocked

    before = raw_warehouse.stats.by_label.copy()
    again = _upkeep_and_backfill(Store(raw_warehouse, "run-3", T0))
    assert (again.keyed, again.dnc_checked, again.history_checked, again.differing, again.relisted) == (
        [], 0, 0, 1, 0)
    # While the edited row stays, each run offers its value again (one statement, nothing added: listed already).
    assert sorted(raw_warehouse.stats.by_label - before) == ["dnc.edited_values", "dnc.upkeep"]


def test_a_keyed_entry_edited_by_hand_to_a_unicode_address_lists_the_new_address_too(
        raw_warehouse: Warehouse, settings: Settings) -> None:
    """A DNC entry keyed for old@bücher.example, then edited in place to jane@bücher.example: the SQL cannot key a
    non-ASCII value, so the next run's back-fill lists the edited value as its own entry (source edited_entry,
    keyed in Python: jane@xn--bcher-kva.example) while the old key keeps blocking; a second run adds nothing."""
    build(raw_warehouse, settings, [lead(e) for e in ("jane@xn--bcher-kva.example", "old@xn--bcher-kva.example",
                                                      "free@acme.example")])
    Store(raw_warehouse, "run-1", T0).add_dnc([dnc_row(email="old@bücher.example", source="manual", reason="t")],
                                              label="test.dnc")
    raw_warehouse.execute("UPDATE `{ds}.ops_dnc` SET email = 'jane@bücher.example' WHERE TRUE", label="test.edit")
    first = _upkeep_and_backfill(Store(raw_warehouse, "run-2", T0))
    assert (first.differing, first.relisted) == (1, 1)
    assert list(ready(raw_warehouse)) == ["free@acme.example"]  # the old and the edited address both blocked
    rows = raw_warehouse.query("SELECT email, email_key, source FROM `{ds}.ops_dnc` ORDER BY source", label="t")
    assert rows == [{"email": "jane@bücher.example", "email_key": "jane@xn--bcher-kva.example",
                     "source": "edited_entry"},
                    {"email": "jane@bücher.example", "email_key": "old@xn--bcher-kva.example", "source": "manual"}]
    again = _upkeep_and_backfill(Store(raw_warehouse, "run-3", T0))
    assert (again.differing, again.relisted) == (1, 0)


def test_backfill_rekeys_a_history_row_edited_by_hand_after_it_was_keyed(raw_warehouse: Warehouse,
                                                                         settings: Settings) -> None:
    """A history row whose email was edited by hand after it was keyed and checked (its stored key now another
    person's) is re-keyed to its email's key and checked by the next run: its cooldown rests the new address,
    not the old one, before the run (the check no longer matches) and after it (the stored key is the new one)."""
    build(raw_warehouse, settings, [lead(e) for e in ("old@acme.example", "new@acme.example")])
    add_history(raw_warehouse, "old@acme.example", T0 - dt.timedelta(days=10))
    _upkeep_and_backfill(Store(raw_warehouse, "run-1", T0))
    assert list(ready(raw_warehouse)) == ["new@acme.example"]
    raw_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET email = 'New@Acme.example' WHERE TRUE",
                          label="test.edit")
    assert list(ready(raw_warehouse)) == ["old@acme.example"]  # the stale key no longer counts
    result = _upkeep_and_backfill(Store(raw_warehouse, "run-2", T0))
    assert (result.history_checked, result.differing) == (1, 0)
    history = raw_warehouse.query("SELECT email, email_key, email_key_check FROM `{ds}.ops_lead_history`",
                                  label="t")
    assert history == [{"email": "New@Acme.example", "email_key": "new@acme.example",
                        "email_key_check": key_check("New@Acme.example", "new@acme.example")}]
    assert list(ready(raw_warehouse)) == ["old@acme.example"]


def test_writers_check_what_they_write(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Store.add_dnc and Store.record_history write each row with its key and check, so no run needs to."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "run-1", T0)
    store.add_dnc([dnc_row(email="Ann+x@Acme.example", source="manual", reason="t"),
                   dnc_row(domain="bücher.example", source="manual", reason="t")], label="test.dnc")
    store.record_history([{"email": "jo+x@acme.example", "campaign_id": "c-smb", "status_final": "completed",
                           "completed_at": T0, "attempt_num": 1}])
    dnc = raw_warehouse.query("SELECT email_key, domain_key, email_key_check, domain_key_check FROM `{ds}.ops_dnc`",
                              label="t")
    assert sorted(dnc, key=repr) == sorted([
        {"email_key": "ann@acme.example", "domain_key": None,
         "email_key_check": key_check("Ann+x@Acme.example", "ann@acme.example"), "domain_key_check": None},
        {"email_key": None, "domain_key": "xn--bcher-kva.example", "email_key_check": None,
         "domain_key_check": key_check("bücher.example", "xn--bcher-kva.example")}], key=repr)
    assert raw_warehouse.query("SELECT email_key, email_key_check FROM `{ds}.ops_lead_history`",
                               label="t") == [{"email_key": "jo@acme.example",
                                               "email_key_check": key_check("jo+x@acme.example", "jo@acme.example")}]
    upkeep = store.dnc_upkeep(100)
    assert (upkeep.missing, upkeep.history_missing) == ([], [])


# --- 3. the reviewer's attacks, through real runs -----------------------------------------------------------


@pytest.fixture
def attack_world(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[World]:
    yield from _world(raw_warehouse, tmp_path, ["p5@example.com", "rest@acme.example", "free@acme.example"])


def _dnc_keys(warehouse: Warehouse) -> set[str]:
    return {str(r["key"]) for r in warehouse.query("SELECT key FROM `{ds}.v_dnc_keys`", label="t")}


def test_a_dnc_key_edited_to_the_raw_email_never_unsuppresses_the_person(attack_world: World) -> None:
    """A checked DNC row `P5@Example.com`, then `UPDATE ops_dnc SET email_key = email`: the check no longer binds
    the key, so the raw email's key counts beside the edited one; the person is not chosen before a run, not
    added by two runs, and the back-fill leaves the edited key (still blocking), counts it, and lists the value
    again as its own entry with its right key (source edited_entry)."""
    warehouse = attack_world.warehouse
    Store(warehouse, "hand", START).add_dnc([dnc_row(email="P5@Example.com", source="manual", reason="t")],
                                            label="test.dnc")
    warehouse.execute("UPDATE `{ds}.ops_dnc` SET email_key = email WHERE TRUE", label="test.attack")
    assert {"P5@Example.com", "p5@example.com"} <= _dnc_keys(warehouse)
    assert "p5@example.com" not in ready(warehouse)
    for _ in range(2):
        result = attack_world.run()
        assert attack_world.in_instantly() == {"rest@acme.example", "free@acme.example"}
        counts = result.report.phase("preflight").counts
        assert counts["do-not-contact keys differing from their raw value (left, still blocking)"] == 1
    edited = warehouse.query("SELECT email_key, source FROM `{ds}.ops_dnc` WHERE email = 'P5@Example.com' "
                             "ORDER BY email_key", label="t")
    # The edited row left as it is, and its value listed again as its own entry with the right key.
    assert edited == [{"email_key": "P5@Example.com", "source": "manual"},
                      {"email_key": "p5@example.com", "source": "edited_entry"}]
    assert "p5@example.com" in _dnc_keys(warehouse)


def test_a_history_key_upper_cased_by_hand_leaves_the_person_resting(attack_world: World) -> None:
    """A checked history row (completed 10 days ago, 90 days' rest), then `SET email_key = UPPER(email_key)`: the
    check no longer binds the key, so the email's own key counts and the person stays resting before a run and
    after it, and the run's back-fill puts the email's key and check back."""
    warehouse = attack_world.warehouse
    Store(warehouse, "hand", START).record_history([
        {"email": "rest@acme.example", "campaign_id": "c-smb", "status_final": "completed",
         "completed_at": START - dt.timedelta(days=10), "attempt_num": 1}])
    warehouse.execute("UPDATE `{ds}.ops_lead_history` SET email_key = UPPER(email_key) WHERE TRUE",
                      label="test.attack")
    assert "rest@acme.example" not in ready(warehouse)
    attack_world.run()
    assert attack_world.in_instantly() == {"p5@example.com", "free@acme.example"}
    assert warehouse.query("SELECT email_key, email_key_check FROM `{ds}.ops_lead_history`", label="t") == [
        {"email_key": "rest@acme.example", "email_key_check": key_check("rest@acme.example", "rest@acme.example")}]
    attack_world.run()
    assert attack_world.in_instantly() == {"p5@example.com", "free@acme.example"}


# --- 4. upgrade from v8 -------------------------------------------------------------------------------------


def test_upgrade_from_v8_keeps_every_suppression_and_the_first_backfill_checks(raw_warehouse: Warehouse,
                                                                              settings: Settings) -> None:
    """A v8 ops_dnc and ops_lead_history (no check columns, keys stored by the v8 writers or none): setup adds
    the columns, the dnc keys and history keys are the same before and after, and one back-fill checks them."""
    raw_warehouse.ensure_dataset()
    v8_dnc = type(DNC)(DNC.name, DNC.columns[:10], "version 8")
    v8_history = type(LEAD_HISTORY)(LEAD_HISTORY.name, LEAD_HISTORY.columns[:20], "version 8")
    assert [c.name for c in DNC.columns[10:]] == ["email_key_check", "domain_key_check"]
    assert [c.name for c in LEAD_HISTORY.columns[20:]] == ["email_key", "email_key_check"]
    raw_warehouse.create_table(v8_dnc)
    raw_warehouse.create_table(v8_history)
    raw_warehouse.execute(
        "INSERT INTO `{ds}.ops_dnc` (email, domain, email_key, domain_key, source, reason, added_at) VALUES "
        "('Kept+x@acme.example', NULL, 'kept@acme.example', NULL, 'manual', 't', @at), "
        "('raw@acme.example', NULL, NULL, NULL, 'manual', 't', @at), "
        "(NULL, 'münchen.example', NULL, 'xn--mnchen-3ya.example', 'manual', 't', @at)",
        {"at": T0}, label="test.v8_rows")
    raw_warehouse.execute(
        "INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, status_final, completed_at, attempt_num) "
        "VALUES ('Old+h@acme.example', 'c1', 'completed', @at, 2)", {"at": T0}, label="test.v8_rows")
    build(raw_warehouse, settings)
    keys_sql = f"WITH {DNC_KEY_CTES}, {HISTORY_KEY_CTES} SELECT kind, key FROM dnc UNION ALL " \
               "SELECT 'history', CONCAT(email_key, ' ', CAST(last_attempt AS STRING)) FROM history_by_key"  # noqa: S608

    def keys() -> set[tuple[str, str]]:
        return {(str(r["kind"]), str(r["key"])) for r in raw_warehouse.query(keys_sql, label="t")}

    expected = {("email", "kept@acme.example"), ("email", "raw@acme.example"),
                ("domain", "xn--mnchen-3ya.example"), ("history", "old@acme.example 2")}
    assert keys() == expected
    result = _upkeep_and_backfill(Store(raw_warehouse, "run-1", T0))
    assert (len(result.keyed), result.dnc_checked, result.history_checked, result.differing) == (1, 3, 1, 0)
    assert keys() == expected
    checks = raw_warehouse.query("SELECT COALESCE(email, domain) AS raw, COALESCE(email_key, domain_key) AS key, "
                                 "COALESCE(email_key_check, domain_key_check) AS c FROM `{ds}.ops_dnc` UNION ALL "
                                 "SELECT email, email_key, email_key_check FROM `{ds}.ops_lead_history`", label="t")
    assert len(checks) == 4 and all(r["c"] == key_check(r["raw"], r["key"]) for r in checks)
    assert not ensure_schema(raw_warehouse, settings).changed
