"""Stored keys (schema v9): a key computed once, in Python, is trusted by the SQL only while its row's raw value
and the key rule are what it was computed from (schema.trusted_key_guard), and the per-run back-fill
(Store.backfill_keys) keys and stamps rows without ever un-suppressing anyone.

1. Equivalence, property-based, on both engines: for random messy ops_dnc and ops_lead_history rows (written by
   the Store, inserted by hand, stamped then edited by hand, stamped under another rule, stamped with no key,
   holding a wrong key), the guarded `dnc` (kind, key) set, `history_rows` and `history_by_key` equal what the
   unguarded definition (the text before v9, kept below) computes.
2. The back-fill: hand-inserted rows are keyed and stamped by one run; a hand-edited DNC row keeps its old key
   blocking AND its new value blocks, and stays unstamped; a second run writes nothing.
3. Upgrade: a v8 warehouse upgraded by setup keeps every suppression exactly; the first back-fill stamps.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Callable
from typing import Any

from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from coldsync.rules import EMAIL_TRIM_CHARS, GIVE_UP_OUTCOME
from coldsync.settings import Settings
from coldsync.store import Store, dnc_row, stamped_dnc_row
from coldsync.suppression import KEY_RULE, address_key, dnc_key_stamp, history_key_stamp, sql_domain_key
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
                     ("keyed_email", "STRING"), ("keyed_domain", "STRING"), ("key_rule", "STRING"),
                     ("email_hash", "STRING"), ("source", "STRING"), ("reason", "STRING"), ("added_at", "TIMESTAMP"))
INSERT_DNC_SQL = """
INSERT INTO `{ds}.ops_dnc` (email, domain, email_key, domain_key, keyed_email, keyed_domain, key_rule, email_hash,
                            source, reason, added_at)
SELECT r.email, r.domain, r.email_key, r.domain_key, r.keyed_email, r.keyed_domain, r.key_rule, r.email_hash,
       r.source, r.reason, r.added_at FROM UNNEST(@rows) AS r
"""
HISTORY_INSERT_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("status_final", "STRING"),
                         ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"), ("email_key", "STRING"),
                         ("keyed_email", "STRING"), ("key_rule", "STRING"))
INSERT_HISTORY_SQL = """
INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, status_final, completed_at, attempt_num, email_key,
                                     keyed_email, key_rule)
SELECT r.email, r.campaign_id, r.status_final, r.completed_at, r.attempt_num, r.email_key, r.keyed_email,
       r.key_rule FROM UNNEST(@rows) AS r
"""
OTHER_RULE = "0123456789abcdef"

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
PROVENANCES = ("store", "hand", "keyed_unstamped", "edited", "other_rule", "stamped_null", "wrong_key")


def _dnc_part(how: str, raw: str | None, other: str | None, key_of: Callable[[str], str | None],
              ) -> tuple[str | None, str | None, bool]:
    """(stored key, keyed value, stamped) of one part (email or domain) of a DNC row, as `how` left it."""
    if raw is None:
        return None, None, False
    key = key_of(raw)
    if how == "store":
        return key, raw if key is not None else None, key is not None
    if how == "keyed_unstamped":
        return key, None, False
    if how == "edited":  # keyed and stamped as `other`, then the raw value was edited to `raw`
        return key_of(other or ""), other, key_of(other or "") is not None
    if how == "other_rule":  # keyed by another rule: another key, stamped under OTHER_RULE
        return (f"old.{key}" if key else None), raw, True
    if how == "stamped_null":
        return None, raw, True
    if how == "wrong_key":
        return "wrong@wrong.example", raw, False
    return None, None, False


def dnc_entry(shape: str, how: str, email: str | None, domain: str | None, other_email: str,
              other_domain: str) -> dict[str, Any]:
    """One ops_dnc row of `shape` (email, domain, both, hash, empty) as provenance `how` left it."""
    email = email if shape in ("email", "both") else None
    domain = domain if shape in ("domain", "both") else None
    email_key, keyed_email, e_stamped = _dnc_part(how, email, other_email, address_key)
    domain_key, keyed_domain, d_stamped = _dnc_part(how, domain, other_domain,
                                                    lambda v: dnc_key_stamp(None, v)["domain_key"])
    if how == "store" and shape != "hash":  # what Store.add_dnc writes, from the one helper
        written = stamped_dnc_row(dnc_row(email=email, domain=domain, source="manual", reason="test"))
        email_key, domain_key = written["email_key"], written["domain_key"]
        keyed_email, keyed_domain = written["keyed_email"], written["keyed_domain"]
        e_stamped = written["key_rule"] is not None
    rule = (OTHER_RULE if how == "other_rule" else KEY_RULE) if (e_stamped or d_stamped) else None
    return {"email": email, "domain": domain, "email_key": email_key, "domain_key": domain_key,
            "keyed_email": keyed_email, "keyed_domain": keyed_domain, "key_rule": rule,
            "email_hash": "ab" * 32 if shape == "hash" else None, "source": "manual", "reason": how, "added_at": T0}


dnc_rows = st.builds(dnc_entry, st.sampled_from(["email", "email", "domain", "both", "hash", "empty"]),
                     st.sampled_from(PROVENANCES), emails, domains, emails, domains)


def history_entry(how: str, email: str, other: str, status: str = "completed", days: int = 0,
                  attempt: int = 1) -> dict[str, Any]:
    """One ops_lead_history row (email as written or imported) as provenance `how` left it."""
    stamp = history_key_stamp(email)
    key, keyed, rule = {
        "store": (stamp["email_key"], stamp["keyed_email"], stamp["key_rule"]),
        "hand": (None, None, None),
        "keyed_unstamped": (stamp["email_key"], None, None),
        "edited": (history_key_stamp(other)["email_key"], other, KEY_RULE),
        "other_rule": ((f"old.{stamp['email_key']}" if stamp["email_key"] else None), email, OTHER_RULE),
        "stamped_null": (None, email, KEY_RULE),
        "wrong_key": ("wrong@wrong.example", email, None),
    }[how]
    return {"email": email, "campaign_id": "c-smb", "status_final": status,
            "completed_at": T0 - dt.timedelta(days=days), "attempt_num": attempt,
            "email_key": key, "keyed_email": keyed, "key_rule": rule}


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


def test_guard_trusts_only_a_stamped_key_of_the_current_value_and_rule(raw_warehouse: Warehouse,
                                                                        settings: Settings) -> None:
    """Hand-worked: a stored key counts alone only when keyed_email = email and key_rule = KEY_RULE; an edited
    row, a row under another rule and a stamped NULL key are keyed from the raw value (their SQL key counts)."""
    build(raw_warehouse, settings)
    rows: list[dict[str, Any]] = [
        # stamped: only the stored key (here deliberately not the raw value's key, to see which one is read)
        {"email": "a+x@acme.example", "email_key": "stored-a@acme.example", "keyed_email": "a+x@acme.example",
         "key_rule": KEY_RULE},
        # edited by hand after keying: the old key and the new value's key
        {"email": "b2@acme.example", "email_key": "b1@acme.example", "keyed_email": "b1@acme.example",
         "key_rule": KEY_RULE},
        # keyed under another rule: the stored key and the raw value's key
        {"email": "c+x@acme.example", "email_key": "c+x@acme.example", "keyed_email": "c+x@acme.example",
         "key_rule": OTHER_RULE},
        # a stamped NULL key: the raw value's key
        {"email": "D@acme.example", "email_key": None, "keyed_email": "D@acme.example", "key_rule": KEY_RULE},
    ]
    raw_warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_INSERT_FIELDS, [
        {**r, "domain": None, "domain_key": None, "keyed_domain": None, "email_hash": None, "source": "manual",
         "reason": "test", "added_at": T0} for r in rows])}, label="test.dnc")
    keys = {str(r["key"]) for r in raw_warehouse.query(f"WITH {DNC_KEY_CTES} SELECT key FROM dnc",  # noqa: S608
                                                       label="test.dnc_keys")}
    assert keys == {"stored-a@acme.example", "b1@acme.example", "b2@acme.example", "c+x@acme.example",
                    "c@acme.example", "d@acme.example"}


# --- 2. the back-fill -----------------------------------------------------------------------------------------


def _upkeep_and_backfill(store: Store) -> Any:
    """What a run's preflight does (coldsync.sync._phases): the one upkeep read, then the back-fill."""
    upkeep = store.dnc_upkeep(100)
    return store.backfill_keys(upkeep.missing, upkeep.history_missing)


def test_backfill_keys_and_stamps_hand_rows_and_leaves_an_edited_key_blocking(raw_warehouse: Warehouse,
                                                                              settings: Settings) -> None:
    """One run keys and stamps hand-inserted DNC and history rows; a DNC row edited by hand after keying keeps
    its old key blocking AND its new value blocks, stays unstamped, and a second run writes nothing."""
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
    assert (result.dnc_stamped, result.history_stamped, result.differing) == (2, 1, 1)
    assert sorted(((r["email"], r["domain"], r["email_key"], r["domain_key"]) for r in result.keyed), key=repr) == [
        (" Hand+x@Acme.example ", None, "hand@acme.example", None),
        (None, "www.Blocked.example", None, "blocked.example")]
    dnc = raw_warehouse.query("SELECT email, domain, email_key, domain_key, keyed_email, keyed_domain, key_rule "
                              "FROM `{ds}.ops_dnc`", label="t")
    assert sorted(dnc, key=repr) == sorted([
        {"email": " Hand+x@Acme.example ", "domain": None, "email_key": "hand@acme.example", "domain_key": None,
         "keyed_email": " Hand+x@Acme.example ", "keyed_domain": None, "key_rule": KEY_RULE},
        {"email": None, "domain": "www.Blocked.example", "email_key": None, "domain_key": "blocked.example",
         "keyed_email": None, "keyed_domain": "www.Blocked.example", "key_rule": KEY_RULE},
        {"email": "new@acme.example", "domain": None, "email_key": "old@acme.example", "domain_key": None,
         "keyed_email": "old@acme.example", "keyed_domain": None, "key_rule": KEY_RULE},
    ], key=repr)
    history = raw_warehouse.query("SELECT email, email_key, keyed_email, key_rule FROM `{ds}.ops_lead_history`",
                                  label="t")
    assert history == [{"email": "Hist+a@Acme.example", "email_key": "hist@acme.example",
                        "keyed_email": "Hist+a@Acme.example", "key_rule": KEY_RULE}]
    assert list(ready(raw_warehouse)) == ["free@acme.example"]  # the old AND the new address stay blocked

    before = raw_warehouse.stats.by_label.copy()
    again = _upkeep_and_backfill(Store(raw_warehouse, "run-3", T0))
    assert (again.keyed, again.dnc_stamped, again.history_stamped, again.differing) == ([], 0, 0, 1)
    assert [label for label in raw_warehouse.stats.by_label - before] == ["dnc.upkeep"]


def test_backfill_rekeys_a_history_row_edited_by_hand_after_it_was_keyed(raw_warehouse: Warehouse,
                                                                         settings: Settings) -> None:
    """A history row whose email was edited by hand after it was keyed and stamped (its stored key now another
    person's) is re-keyed to its email's key and stamped by the next run: its cooldown rests the new address,
    not the old one, before the run (the stamp no longer matches) and after it (the stored key is the new one)."""
    build(raw_warehouse, settings, [lead(e) for e in ("old@acme.example", "new@acme.example")])
    add_history(raw_warehouse, "old@acme.example", T0 - dt.timedelta(days=10))
    _upkeep_and_backfill(Store(raw_warehouse, "run-1", T0))
    assert list(ready(raw_warehouse)) == ["new@acme.example"]
    raw_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET email = 'New@Acme.example' WHERE TRUE",
                          label="test.edit")
    assert list(ready(raw_warehouse)) == ["old@acme.example"]  # the stale key no longer counts
    result = _upkeep_and_backfill(Store(raw_warehouse, "run-2", T0))
    assert (result.history_stamped, result.differing) == (1, 0)
    history = raw_warehouse.query("SELECT email, email_key, keyed_email, key_rule FROM `{ds}.ops_lead_history`",
                                  label="t")
    assert history == [{"email": "New@Acme.example", "email_key": "new@acme.example",
                        "keyed_email": "New@Acme.example", "key_rule": KEY_RULE}]
    assert list(ready(raw_warehouse)) == ["old@acme.example"]


def test_writers_stamp_what_they_write(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Store.add_dnc and Store.record_history write each row with its key and stamp, so no run needs to."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "run-1", T0)
    store.add_dnc([dnc_row(email="Ann+x@Acme.example", source="manual", reason="t"),
                   dnc_row(domain="bücher.example", source="manual", reason="t")], label="test.dnc")
    store.record_history([{"email": "jo+x@acme.example", "campaign_id": "c-smb", "status_final": "completed",
                           "completed_at": T0, "attempt_num": 1}])
    dnc = raw_warehouse.query("SELECT email_key, domain_key, keyed_email, keyed_domain, key_rule FROM `{ds}.ops_dnc`",
                              label="t")
    assert sorted(dnc, key=repr) == sorted([
        {"email_key": "ann@acme.example", "domain_key": None, "keyed_email": "Ann+x@Acme.example",
         "keyed_domain": None, "key_rule": KEY_RULE},
        {"email_key": None, "domain_key": "xn--bcher-kva.example", "keyed_email": None,
         "keyed_domain": "bücher.example", "key_rule": KEY_RULE}], key=repr)
    assert raw_warehouse.query("SELECT email_key, keyed_email, key_rule FROM `{ds}.ops_lead_history`",
                               label="t") == [{"email_key": "jo@acme.example", "keyed_email": "jo+x@acme.example",
                                               "key_rule": KEY_RULE}]
    upkeep = store.dnc_upkeep(100)
    assert (upkeep.missing, upkeep.history_missing) == ([], [])


# --- 3. upgrade from v8 -------------------------------------------------------------------------------------


def test_upgrade_from_v8_keeps_every_suppression_and_the_first_backfill_stamps(raw_warehouse: Warehouse,
                                                                              settings: Settings) -> None:
    """A v8 ops_dnc and ops_lead_history (no stamp columns, keys stored by the v8 writers or none): setup adds
    the columns, the dnc keys and history keys are the same before and after, and one back-fill stamps them."""
    raw_warehouse.ensure_dataset()
    v8_dnc = type(DNC)(DNC.name, DNC.columns[:10], "version 8")
    v8_history = type(LEAD_HISTORY)(LEAD_HISTORY.name, LEAD_HISTORY.columns[:20], "version 8")
    assert [c.name for c in DNC.columns[10:]] == ["keyed_email", "keyed_domain", "key_rule"]
    assert [c.name for c in LEAD_HISTORY.columns[20:]] == ["email_key", "keyed_email", "key_rule"]
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
    assert (len(result.keyed), result.dnc_stamped, result.history_stamped, result.differing) == (1, 3, 1, 0)
    assert keys() == expected
    stamps = raw_warehouse.query("SELECT key_rule FROM `{ds}.ops_dnc` UNION ALL "
                                 "SELECT key_rule FROM `{ds}.ops_lead_history`", label="t")
    assert [r["key_rule"] for r in stamps] == [KEY_RULE] * 4
    assert not ensure_schema(raw_warehouse, settings).changed
