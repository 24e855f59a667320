"""The suppression key (coldsync/suppression.py), proved three ways.

1. Hand-worked tables of the Python functions (``address_key``, ``canonical_email``, ``domain_key``, ...).
2. The same rows through the warehouse on both engines: the SQL twins in one pure query, and THE table of
   pasted do-not-contact entries against source leads through ``v_ready_for_instantly`` (raw entries
   inserted by hand, so the views compute every key from the raw value), plus the stored-key path for a
   Unicode domain, ``Store.backfill_dnc_keys`` and ``v_dnc_rejects``.
3. Properties (hypothesis): Python and SQL agree on decorated addresses, decorated domains, valid
   addresses and ASCII garbage, on DuckDB and on the BigQuery emulator; ``address_key`` is idempotent and
   decoration-invariant.

Speed: the BigQuery emulator takes ~3 s per schema build and ~0.2 s per query, so each warehouse test
builds once and each hypothesis example sends ONE query over a batch of 200 strings
(``SELECT ... FROM UNNEST(@rows)``). Hypothesis caps the data of one example (8 KiB of choices), which
200 fully drawn decorated addresses overrun: a batch is 50 drawn values x 4 drawn decoration stacks.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from coldsync.rules import EMAIL_PATTERN, EMAIL_TRIM_CHARS, normalize_email
from coldsync.settings import Settings
from coldsync.store import Store, dnc_row
from coldsync.suppression import (
    address_key,
    canonical_email,
    domain_key,
    email_key,
    erasure_hash,
    key_domain,
    key_of_untagged,
    sql_address_key,
    sql_canonical_email,
    sql_domain_key,
    sql_email_key,
    sql_erasure_hash,
    sql_key_domain,
    sql_trim_ends,
    sql_untagged,
    trim_ends,
    untagged,
)
from coldsync.warehouse.base import Param, Rows, Warehouse
from coldsync.warehouse.demo_data import DNC_FIELDS, HISTORY_FIELDS, INSERT_DNC_SQL, INSERT_HISTORY_SQL
from tests.helpers import GMAIL, GOOGLEMAIL, GOOGLEMAIL_CASED, T0, add_state, build, lead

# --- 1. Python, hand-worked ------------------------------------------------------------------------

ADDRESS_KEYS: list[tuple[object, str | None]] = [
    ("cr.dnc@acme.example\r", "cr.dnc@acme.example"),
    ("crlf.dnc@acme.example\r\n", "crlf.dnc@acme.example"),
    ("tab.dnc@acme.example\t", "tab.dnc@acme.example"),
    ("zw.dnc@acme.example\u200b", "zw.dnc@acme.example"),
    ("\ufeff\u00a0bom.dnc@acme.example", "bom.dnc@acme.example"),
    ("mailto:m.dnc@acme.example", "m.dnc@acme.example"),
    ("MailTo:Up.Dnc@Acme.Example", "up.dnc@acme.example"),
    ("<a.dnc@acme.example>", "a.dnc@acme.example"),
    (f'"Jane Doe" <J.Ane+x@{GOOGLEMAIL_CASED}>', f"jane@{GMAIL}"),
    ("Doe, Jane <jane.doe@acme.example>", "jane.doe@acme.example"),
    ("<mailto:x@y.example?subject=unsub>", "x@y.example"),
    ("x@y.example?subject=Remove%20me", "x@y.example"),
    ('"quoted@acme.example"', "quoted@acme.example"),
    ("'single@acme.example'", "single@acme.example"),
    ("ann@bücher.example", "ann@xn--bcher-kva.example"),
    ("ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
    ("jane+promo@acme.example", "jane@acme.example"),
    ("a+b+c@acme.example", "a@acme.example"),
    ("Cool88@Hist.example", "cool88@hist.example"),
    ("jane@acme.example.", "jane@acme.example"),
    ("<jane@acme.example.>", "jane@acme.example"),
    ("+x@acme.example", "+x@acme.example"),
    (f"j.a.n.e@{GMAIL}", f"jane@{GMAIL}"),
    (f"j.a.n.e+x@{GOOGLEMAIL}", f"jane@{GMAIL}"),
    ("j.a.n.e@acme.example", "j.a.n.e@acme.example"),
    ("x'@acme.example", "x'@acme.example"),
    ("bad", None),
    ("a@b", None),
    ("jane @acme.example", None),
    ("jane@@acme.example", None),
    ("jane@acme.example..", None),
    ("ja..ne@acme.example", None),
    ("jane@-acme.example", None),
    ("josé@acme.example", None),
    ("x@y.example?subject=<hi>", None),
    ("", None),
    ("   ", None),
    (None, None),
    (42, None),
]

CANONICAL_EMAILS: list[tuple[object, str | None]] = [
    ("cr.dnc@acme.example\r", "cr.dnc@acme.example"),
    (f'"Jane Doe" <J.Ane+x@{GOOGLEMAIL_CASED}>', f"j.ane+x@{GOOGLEMAIL}"),
    ("<mailto:x@y.example?subject=unsub>", "x@y.example"),
    ("jane+promo@acme.example", "jane+promo@acme.example"),
    (f"j.a.n.e@{GMAIL}", f"j.a.n.e@{GMAIL}"),
    ("ann@bücher.example", "ann@xn--bcher-kva.example"),
    ("Jane@Acme.Example.", "jane@acme.example"),
    ("bad", None),
    ("a@b", None),
    (None, None),
    (42, None),
]

DOMAIN_KEYS: list[tuple[object, str | None]] = [
    ("www.blocked.example", "blocked.example"),
    ("https://blocked2.example/contact", "blocked2.example"),
    ("HTTPS://WWW.Acme.Example/", "acme.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("www.bücher.example", "xn--bcher-kva.example"),
    ("@acme.example", "acme.example"),
    ("Acme.Example.", "acme.example"),
    ("http://www.x.example:8080/p?q", "x.example"),
    ("acme.example#top", "acme.example"),
    ("acme.example?q=1", "acme.example"),
    ("ftp://acme.example", "acme.example"),
    ("acme.example\r\n", "acme.example"),
    ("\u200bacme.example\u3000", "acme.example"),
    ("www.example", "www.example"),
    ("www.www.acme.example", "acme.example"),
    ("GoogleMail.com", "gmail.com"),
    ("www.googlemail.com", "gmail.com"),
    ("sub.acme.example", "sub.acme.example"),
    ("jane@acme.example", None),
    ("@@acme.example", None),
    ("mailto:acme.example", None),
    ("acme", None),
    ("acme..example", None),
    ("-acme.example", None),
    ("acme .example", None),
    ("", None),
    (None, None),
    (42, None),
]

EMAIL_KEYS: list[tuple[str, str]] = [  # valid, lower-cased addresses (rules.normalize_email's output)
    (f"jane+promo@{GOOGLEMAIL}", f"jane@{GMAIL}"),
    (f"j.a.n.e+x@{GMAIL}", f"jane@{GMAIL}"),
    ("j.doe@acme.example", "j.doe@acme.example"),
    ("+x@acme.example", "+x@acme.example"),
    ("a+b+c@acme.example", "a@acme.example"),
    ("jane@googlemail.com.example", "jane@googlemail.com.example"),
    ("jane@mygmail.com", "jane@mygmail.com"),
    ("jane@acme.example", "jane@acme.example"),
]

UNTAGGED: list[tuple[str, str]] = [  # stage 1: alias and +tag; stage 2 (dots) not yet
    (f"j.doe+x@{GOOGLEMAIL}", f"j.doe@{GMAIL}"),
    ("jane+@acme.example", "jane@acme.example"),
    ("+x@acme.example", "+x@acme.example"),
]

SALT = "pepper-1"
# hashlib.sha256(b"pepper-1jane@acme.example").hexdigest()
JANE_HASH = "4d95ac478ee3e96cd13ba56e5c807640621507e58996182503085213b6d61feb"


@pytest.mark.parametrize(("raw", "key"), ADDRESS_KEYS)
def test_address_key_table(raw: object, key: str | None) -> None:
    """address_key unwraps, lower-cases, punycodes and keys a pasted address, or gives None when unusable."""
    assert address_key(raw) == key


@pytest.mark.parametrize(("raw", "plain"), CANONICAL_EMAILS)
def test_canonical_email_table(raw: object, plain: str | None) -> None:
    """canonical_email is the unwrapped, lower-case, punycode address, keeping its +tag, dots and domain."""
    assert canonical_email(raw) == plain


@pytest.mark.parametrize(("raw", "key"), DOMAIN_KEYS)
def test_domain_key_table(raw: object, key: str | None) -> None:
    """domain_key strips scheme, www., @, port, path and a trailing dot, punycodes, aliases; sub-domains stay."""
    assert domain_key(raw) == key


@pytest.mark.parametrize(("email", "key"), EMAIL_KEYS)
def test_email_key_table(email: str, key: str) -> None:
    """email_key applies the googlemail alias, drops a +tag (not a leading +) and Gmail's dots, nothing else."""
    assert email_key(email) == key
    assert key_of_untagged(untagged(email)) == key


@pytest.mark.parametrize(("email", "stage1"), UNTAGGED)
def test_untagged_table(email: str, stage1: str) -> None:
    """untagged (stage 1) applies the alias and drops the +tag but keeps the dots of the local part."""
    assert untagged(email) == stage1


def test_email_key_refuses_a_value_without_at() -> None:
    """email_key raises ValueError for a value without '@' (callers pass valid addresses only)."""
    with pytest.raises(ValueError, match="no '@'"):
        email_key("jane.acme.example")


def test_key_domain_erasure_hash_and_trim_ends() -> None:
    """key_domain is the text after the last @; erasure_hash is hex SHA-256 of salt + key; trim_ends trims."""
    assert key_domain(f"jane@{GMAIL}") == "gmail.com"
    assert erasure_hash("jane@acme.example", SALT) == JANE_HASH
    assert trim_ends("\u200b jane@acme.example\r\n") == "jane@acme.example"
    assert trim_ends("\t\t") == ""
    assert trim_ends("a b") == "a b"


# --- warehouse plumbing ------------------------------------------------------------------------------

VALUE_FIELDS = (("i", "INT64"), ("v", "STRING"))


def evaluate(warehouse: Warehouse, values: Sequence[str | None], exprs: Mapping[str, Callable[[str], str]],
             params: Mapping[str, Param] | None = None) -> list[dict[str, Any]]:
    """Each SQL expression over each value, in ONE query (no table: the values travel as @rows);
    one dict per value, in order."""
    columns = ", ".join(f"{make('r.v')} AS {name}" for name, make in exprs.items())
    rows = warehouse.query(f"SELECT r.i AS i, {columns} FROM UNNEST(@rows) AS r",  # noqa: S608
                           {"rows": Rows(VALUE_FIELDS, [{"i": i, "v": v} for i, v in enumerate(values)]),
                            **(params or {})}, label="test.suppression.evaluate")
    by_index = {int(r["i"]): r for r in rows}
    assert sorted(by_index) == list(range(len(values)))
    return [by_index[i] for i in range(len(values))]


def add_raw_dnc(warehouse: Warehouse, entries: Iterable[tuple[str | None, str | None]]) -> None:
    """(email, domain) entries inserted as pasted, without keys (as tests/helpers.add_dnc does), in one statement."""
    rows = [{"email": e, "domain": d, "source": "manual", "reason": "test", "added_at": T0} for e, d in entries]
    warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_FIELDS, rows)}, label="test.dnc")


def add_raw_history(warehouse: Warehouse, entries: Iterable[tuple[str, dt.datetime]]) -> None:
    """History rows (email as imported, completed_at), attempt 1, in one statement."""
    rows = [{"email": email, "campaign_id": "c-smb", "sequence_name": "SMB", "status_final": "completed",
             "completed_at": at, "attempt_num": 1, "reason": "test", "recorded_at": at} for email, at in entries]
    warehouse.execute(INSERT_HISTORY_SQL, {"rows": Rows(HISTORY_FIELDS, rows)}, label="test.history")


# --- 2a. the SQL twins give the hand-worked values -----------------------------------------------------


def _trimmed_ascii_rows(table: Sequence[tuple[object, str | None]]) -> list[tuple[str | None, str | None]]:
    """Rows whose value is ASCII once the trim set is off its ends (the trim set is handled in SQL too)."""
    return [(raw, key) for raw, key in table
            if raw is None or (isinstance(raw, str) and raw.strip(EMAIL_TRIM_CHARS).isascii())]


def test_sql_twins_give_the_hand_worked_values(raw_warehouse: Warehouse) -> None:
    """On both engines the SQL twins give every hand-worked value above (NULL for a Unicode domain)."""
    # Punycode exists only in Python (IDNA); the key computed in Python is stored with the entry.
    addresses = [*_trimmed_ascii_rows(ADDRESS_KEYS), ("ann@bücher.example", None)]
    canonicals = [*_trimmed_ascii_rows(CANONICAL_EMAILS), ("ann@bücher.example", None)]
    domains = [*_trimmed_ascii_rows(DOMAIN_KEYS), ("bücher.example", None)]
    values = ([v for v, _ in addresses] + [v for v, _ in canonicals] + [v for v, _ in domains]
              + [e for e, _ in EMAIL_KEYS] + [e for e, _ in UNTAGGED])
    out = evaluate(raw_warehouse, values, {
        "address_key": sql_address_key, "canonical": sql_canonical_email, "domain_key": sql_domain_key,
        "email_key": sql_email_key, "untagged": sql_untagged, "key_domain": sql_key_domain,
        "hash": lambda v: sql_erasure_hash(v, "@salt"), "trimmed": sql_trim_ends,
    }, {"salt": SALT})
    got = iter(out)
    assert [(v, next(got)["address_key"]) for v, _ in addresses] == addresses
    assert [(v, next(got)["canonical"]) for v, _ in canonicals] == canonicals
    assert [(v, next(got)["domain_key"]) for v, _ in domains] == domains
    assert [(e, next(got)["email_key"]) for e, _ in EMAIL_KEYS] == EMAIL_KEYS
    assert [(e, next(got)["untagged"]) for e, _ in UNTAGGED] == UNTAGGED
    assert next(got, None) is None
    jane = out[values.index("jane@acme.example")]
    assert (jane["key_domain"], jane["hash"]) == ("acme.example", JANE_HASH)
    assert out[values.index("crlf.dnc@acme.example\r\n")]["trimmed"] == "crlf.dnc@acme.example"


# --- 2b. THE table through the views, on both engines ------------------------------------------------

# (DNC entry as pasted: (email, domain), the source leads it must block)
THE_TABLE: list[tuple[tuple[str | None, str | None], list[str]]] = [
    (("cr.dnc@acme.example\r", None), ["cr.dnc@acme.example"]),
    (("crlf.dnc@acme.example\r\n", None), ["crlf.dnc@acme.example"]),
    (("tab.dnc@acme.example\t", None), ["tab.dnc@acme.example"]),
    (("zw.dnc@acme.example\u200b", None), ["zw.dnc@acme.example"]),
    (("\ufeffbom.dnc@acme.example\u00a0", None), ["bom.dnc@acme.example"]),
    (("mailto:m.dnc@acme.example", None), ["m.dnc@acme.example"]),
    (("<a.dnc@acme.example>", None), ["a.dnc@acme.example"]),
    (("<mailto:q.dnc@acme.example?subject=unsub>", None), ["q.dnc@acme.example"]),
    (("MAILTO:Up.Dnc@Acme.Example.", None), ["up.dnc@acme.example"]),
    ((f'"Pat Doe" <P.At+x@{GOOGLEMAIL_CASED}>', None), [f"pat@{GMAIL}", f"P.A.T+y@{GOOGLEMAIL}"]),
    ((None, "www.blocked.example"), ["x@blocked.example"]),
    ((None, "https://blocked2.example/contact"), ["y@blocked2.example"]),
    ((None, "@Blocked3.Example."), ["z@blocked3.example"]),
    (("jane@acme.example", None), ["jane+promo@acme.example"]),
    (("jane2+x@acme.example", None), ["jane2@acme.example", "jane2+other@acme.example"]),
    ((f"j.doe@{GOOGLEMAIL}", None), [f"jdoe@{GMAIL}"]),
]

# Leads no entry above (nor the Unicode one) blocks: each must stay ready, attempt 1.
CONTROLS = ["janet@acme.example", "x@sub.blocked.example", "other@acme.example", "j.doe@acme.example",
            "jane2x@acme.example", "y@blocked2.example.org", "ann@bucher.example"]


def test_the_table_blocks_exactly_the_pasted_persons(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Pasted DNC entries, a stored Unicode key, history and state rows hold out exactly their persons."""
    # Raw entries (CR, CRLF, tab, ZWSP, BOM, mailto:, <...>, Name <...>, www./URL/@ domains, +tags,
    # googlemail) are keyed by the views from the raw value; domain bücher.example is keyed in Python
    # (Store.add_dnc); a history row imported as Cool88@Hist.example 88 days ago holds cool88 in cooldown,
    # 91 days ago releases cool91 as attempt 2; a state row for jane3@ keeps jane3+x@ out.
    blocked = [email for _entry, leads in THE_TABLE for email in leads]
    unicode_blocked = ["ann@xn--bcher-kva.example"]
    history = {"Cool88@Hist.example": ("cool88@hist.example", 88), "Cool91@Hist.example": ("cool91@hist.example", 91)}
    build(raw_warehouse, settings, [lead(e) for e in [*blocked, *unicode_blocked, *CONTROLS,
                                                      *(e for e, _ in history.values()), "jane3+x@acme.example"]])
    add_raw_dnc(raw_warehouse, [entry for entry, _leads in THE_TABLE])
    Store(raw_warehouse, "run-suppression", T0).add_dnc(
        [dnc_row(domain="bücher.example", source="manual", reason="test")], label="test.dnc_stored")
    add_raw_history(raw_warehouse, [(raw, T0 - dt.timedelta(days=days)) for raw, (_e, days) in history.items()])
    add_state(raw_warehouse, "jane3@acme.example", "active")

    rows = raw_warehouse.query("SELECT email, attempt_num FROM `{ds}.v_ready_for_instantly`", label="test.ready")
    ready = {str(r["email"]): int(r["attempt_num"]) for r in rows}
    assert ready == {**{email: 1 for email in CONTROLS}, "cool91@hist.example": 2}


def test_backfill_makes_a_raw_unicode_domain_entry_effective(raw_warehouse: Warehouse,
                                                              settings: Settings) -> None:
    """A raw Unicode domain entry is a reject blocking nobody until backfill_dnc_keys keys it."""
    # Before: bob@xn--mnchen-3ya.example is ready and münchen.example is listed in v_dnc_rejects; after the
    # back-fill it is blocked and the entry is no longer listed, while the unusable entries (email
    # not-an-address, domain jane@acme.example) stay listed, each with its reason.
    build(raw_warehouse, settings, [lead("bob@xn--mnchen-3ya.example"), lead("keep@acme.example")])
    add_raw_dnc(raw_warehouse, [(None, "münchen.example"), ("not-an-address", None), (None, "jane@acme.example")])
    snapshot_sql = """
        SELECT 'ready' AS kind, email AS entry, CAST(NULL AS STRING) AS reason FROM `{ds}.v_ready_for_instantly`
        UNION ALL
        SELECT 'reject', COALESCE(email, domain), reason FROM `{ds}.v_dnc_rejects`
    """

    def snapshot() -> tuple[set[str], dict[str, str]]:
        rows = raw_warehouse.query(snapshot_sql, label="test.snapshot")
        return ({str(r["entry"]) for r in rows if r["kind"] == "ready"},
                {str(r["entry"]): str(r["reason"]) for r in rows if r["kind"] == "reject"})

    no_at = "email value has no @: put a domain in the domain column"
    looks_like_email = "domain value looks like an email address: put it in the email column"
    not_a_domain = "domain value has non-ASCII characters: the next sync run keys it (punycode); fix it if still listed"
    ready, rejects = snapshot()
    assert ready == {"bob@xn--mnchen-3ya.example", "keep@acme.example"}
    assert rejects == {"münchen.example": not_a_domain, "not-an-address": no_at, "jane@acme.example": looks_like_email}

    keyed = Store(raw_warehouse, "run-backfill", T0).backfill_dnc_keys()
    assert [(r["email"], r["domain"], r["email_key"], r["domain_key"]) for r in keyed] == [
        (None, "münchen.example", None, "xn--mnchen-3ya.example")]

    ready, rejects = snapshot()
    assert ready == {"keep@acme.example"}
    assert rejects == {"not-an-address": no_at, "jane@acme.example": looks_like_email}


# --- once defects, now fixed: each keeps its test -------------------------------------------------


def test_key_of_a_dot_plus_tag_address_is_its_own_key() -> None:
    """The key of jane.+promo@acme.example is a valid address whose own key is itself."""
    key = address_key("jane.+promo@acme.example")
    assert key is not None and normalize_email(key) == key
    assert address_key(key) == key


def test_leading_apostrophe_address_keys_like_its_source_lead() -> None:
    """The DNC/history/state key of a valid address with a leading apostrophe is its source-lead key."""
    raw = "'quote@acme.example"
    normalized = normalize_email(raw)
    assert normalized == raw
    assert address_key(raw) == email_key(normalized) == "'quote@acme.example"


def test_leading_apostrophe_dnc_entry_blocks_its_lead(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A raw DNC entry 'quote@acme.example blocks the lead 'quote@acme.example, not quote@acme.example."""
    build(raw_warehouse, settings, [lead("'quote@acme.example"), lead("quote@acme.example")])
    add_raw_dnc(raw_warehouse, [("'quote@acme.example", None)])
    rows = raw_warehouse.query("SELECT email FROM `{ds}.v_ready_for_instantly`", label="test.ready")
    assert {str(r["email"]) for r in rows} == {"quote@acme.example"}


def test_newline_after_an_angle_wrapper_is_trimmed() -> None:
    """A pasted '<address>' or 'Name <address>' followed by LF or CRLF keys as the bare address."""
    assert address_key("<nl.dnc@acme.example>\n") == "nl.dnc@acme.example"
    assert address_key("Nl <nl.dnc@acme.example>\r\n") == "nl.dnc@acme.example"


def test_newline_after_an_angle_wrapper_is_trimmed_in_sql(raw_warehouse: Warehouse) -> None:
    """SQL keys a pasted '<address>' followed by LF as the bare address on both engines."""
    rows = evaluate(raw_warehouse, ["<nl.dnc@acme.example>\n", "Nl <nl.dnc@acme.example>\r\n"],
                    {"k": sql_address_key})
    assert [r["k"] for r in rows] == ["nl.dnc@acme.example", "nl.dnc@acme.example"]


# --- 3. properties -------------------------------------------------------------------------------------

# The characters a local-part atom may hold, read off EMAIL_PATTERN itself (letters, digits, _ % + ' -).
LOCAL_CHARS = "".join(c for c in string.printable if re.fullmatch(EMAIL_PATTERN, f"{c}@a.example"))
LABEL_CHARS = string.ascii_lowercase + string.digits
ASCII_NAME_CHARS = "".join(c for c in string.printable if c not in "<>\n")
BATCH_BASES = 50  # x 4 decoration stacks = 200 strings per hypothesis example
STACKS_PER_BASE = 4

# Examples per property and engine: the emulator answers a query in ~0.2 s, DuckDB in ~0.01 s.
EXAMPLES = {"duckdb": 40, "bigquery": 5}


def _mixcase(text: str, mask: int) -> str:
    return "".join(c.upper() if (mask >> (i % 8)) & 1 else c.lower() for i, c in enumerate(text))


# An atom often STARTS with punctuation (a plain text strategy rarely draws it there): ' + - _ %.
_atom = st.one_of(st.text(LOCAL_CHARS, min_size=1, max_size=5),
                  st.builds(str.__add__, st.sampled_from("'+-_%"), st.text(LOCAL_CHARS, max_size=4)))
_tag = st.one_of(st.just(""), st.lists(st.text(LOCAL_CHARS, min_size=1, max_size=3), max_size=2)
                 .map(lambda atoms: "+" + ".".join(atoms)))
local_parts = st.builds(lambda atoms, tag: ".".join(atoms) + tag, st.lists(_atom, min_size=1, max_size=2), _tag)
_label = st.builds(lambda a, mid, b: a + mid + b if mid else a,
                   st.sampled_from(LABEL_CHARS), st.text(LABEL_CHARS + "-", max_size=3), st.sampled_from(LABEL_CHARS))
domains = st.one_of(
    st.sampled_from(["gmail.com", "googlemail.com", "acme.example", "sub.acme.example", "www.acme.example",
                     "www.example", "xn--bcher-kva.example"]),
    st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, min_size=1, max_size=2),
              st.text(string.ascii_lowercase, min_size=2, max_size=4)),
)
# Valid ASCII addresses (EMAIL_PATTERN holds for each), in random case.
addresses = st.builds(lambda local, domain, mask: _mixcase(f"{local}@{domain}", mask),
                      local_parts, domains, st.integers(0, 255))
_trims = st.text(EMAIL_TRIM_CHARS, max_size=2)
_ascii_junk = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=6)

# A decoration is data (kind, argument...), so a failing example prints readably.
address_decorations = st.one_of(
    st.tuples(st.just("trim"), _trims, _trims),
    st.tuples(st.just("mailto"), st.integers(0, 255)),
    st.tuples(st.just("angle")),
    st.tuples(st.just("name"), _ascii_junk),
    st.tuples(st.just("quote"), st.sampled_from(['"', "'"])),
    st.tuples(st.just("query"), _ascii_junk),
    st.tuples(st.just("dot")),
)
domain_decorations = st.one_of(
    st.tuples(st.just("scheme"), st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "svn+ssh://"])),
    st.tuples(st.just("www"), st.sampled_from(["www.", "WWW.", "Www."])),
    st.tuples(st.just("path"), st.sampled_from(["/", "/contact", "?q=1", "#top", "/a?b#c", "/x y"])),
    st.tuples(st.just("port"), st.sampled_from([":", ":8080", ":0"])),
    st.tuples(st.just("at")),
    st.tuples(st.just("dot")),
    st.tuples(st.just("case"), st.integers(0, 255)),
)


def _trailing_trim(text: str) -> int:
    return len(text) - len(text.rstrip(EMAIL_TRIM_CHARS))


def decorate_address(stack: Sequence[tuple[Any, ...]], text: str) -> str:
    """Apply each decoration in turn (any order, any nesting). A trailing dot goes before trailing trim
    characters: a trim character INSIDE, before the dot, makes the domain Unicode (IDNA, Python only)."""
    for kind, *args in stack:
        if kind == "trim":
            text = f"{args[0]}{text}{args[1]}"
        elif kind == "mailto":
            text = _mixcase("mailto:", args[0]) + text
        elif kind == "angle":
            text = f"<{text}>"
        elif kind == "name":
            text = f"{args[0]} <{text}>"
        elif kind == "quote":
            text = f"{args[0]}{text}{args[0]}"
        elif kind == "query":
            text = f"{text}?subject={args[0]}"
        elif kind == "dot":
            cut = len(text) - _trailing_trim(text)
            text = f"{text[:cut]}.{text[cut:]}"
    return text


def decorate_domain(stack: Sequence[tuple[Any, ...]], trims: tuple[str, str], text: str) -> str:
    """Apply each decoration in turn, then the trim characters at the two ends (only there: a trim
    character inside makes the domain Unicode, which only Python's IDNA reads)."""
    for kind, *args in stack:
        if kind in ("scheme", "www"):
            text = args[0] + text
        elif kind in ("path", "port"):
            text = text + args[0]
        elif kind == "at":
            text = "@" + text
        elif kind == "dot":
            text = text + "."
        elif kind == "case":
            text = _mixcase(text, args[0])
    return f"{trims[0]}{text}{trims[1]}"


def _batch(bases: list[str], stacks: list[Any], apply: Callable[[Any, str], str]) -> list[str]:
    n = len(bases)
    return [apply(stacks[(i + k) % n], bases[i]) for k in range(STACKS_PER_BASE) for i in range(n)]


decorated_address_batches = st.builds(
    lambda bases, stacks: _batch(bases, stacks, decorate_address),
    st.lists(addresses, min_size=BATCH_BASES, max_size=BATCH_BASES),
    st.lists(st.lists(address_decorations, max_size=4), min_size=BATCH_BASES, max_size=BATCH_BASES))
decorated_domain_batches = st.builds(
    lambda bases, stacks: _batch(bases, stacks, lambda s, d: decorate_domain(s[0], s[1], d)),
    st.lists(domains, min_size=BATCH_BASES, max_size=BATCH_BASES),
    st.lists(st.tuples(st.lists(domain_decorations, max_size=4), st.tuples(_trims, _trims)),
             min_size=BATCH_BASES, max_size=BATCH_BASES))
# Garbage: any ASCII text, and ASCII text built from the tokens the patterns care about.
_TOKENS = [*string.printable, "\x00", "\x7f", "\x1c", "mailto:", "MAILTO:", "<", ">", "@", f"@{GMAIL}",
           f"@{GOOGLEMAIL}", "www.", "http://", "://", ".", "..", "+", "?", "#", ":80", '"', "'"]
garbage = st.one_of(st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=12),
                    st.lists(st.sampled_from(_TOKENS), max_size=10).map("".join))


def _property_settings(warehouse: Warehouse) -> Callable[[Any], Any]:
    """Deterministic (derandomized, no example database), and without shrinking: the assertion already
    names every disagreeing string of the batch, and shrinking a 200-string batch takes minutes."""
    return settings(max_examples=EXAMPLES[warehouse.engine], deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate])


def _disagreements(values: Sequence[str], out: Sequence[Mapping[str, Any]],
                   pairs: Mapping[str, Callable[[str], object]]) -> list[tuple[str, str, object, object]]:
    return [(name, v, python(v), row[name]) for v, row in zip(values, out, strict=True)
            for name, python in pairs.items() if python(v) != row[name]]


def test_address_key_python_and_sql_agree_on_decorated_addresses(raw_warehouse: Warehouse) -> None:
    """Python address_key/canonical_email equal their SQL twins on any decorated ASCII address."""
    # Decorations: any stack of trim characters, mailto: (any case), <...>, Name <...>, quotes,
    # ?subject=... and a trailing dot, over addresses in random case (gmail/googlemail included).

    @_property_settings(raw_warehouse)
    @given(decorated_address_batches)
    def check(values: list[str]) -> None:
        out = evaluate(raw_warehouse, values, {"key": sql_address_key, "plain": sql_canonical_email})
        assert _disagreements(values, out, {"key": address_key, "plain": canonical_email}) == []

    check()


def test_domain_key_python_and_sql_agree_on_decorated_domains(raw_warehouse: Warehouse) -> None:
    """Python domain_key equals sql_domain_key on any decorated ASCII domain."""
    # Decorations: schemes, www., @, paths, ports, trailing dot, case; trim characters at the ends.

    @_property_settings(raw_warehouse)
    @given(decorated_domain_batches)
    def check(values: list[str]) -> None:
        out = evaluate(raw_warehouse, values, {"key": sql_domain_key})
        assert _disagreements(values, out, {"key": domain_key}) == []

    check()


def test_email_key_python_and_sql_agree_on_valid_addresses(raw_warehouse: Warehouse) -> None:
    """For any valid lower-cased address, email_key, key_domain and erasure_hash equal their SQL twins."""

    @_property_settings(raw_warehouse)
    @given(st.lists(addresses.map(str.lower), min_size=200, max_size=200))
    def check(values: list[str]) -> None:
        assert [normalize_email(v) for v in values] == values
        out = evaluate(raw_warehouse, values, {
            "key": sql_email_key, "domain": lambda v: sql_key_domain(sql_email_key(v)),
            "hash": lambda v: sql_erasure_hash(sql_email_key(v), "@salt")}, {"salt": SALT})
        assert _disagreements(values, out, {
            "key": email_key, "domain": lambda v: key_domain(email_key(v)),
            "hash": lambda v: erasure_hash(email_key(v), SALT)}) == []

    check()


def test_python_and_sql_agree_on_ascii_garbage(raw_warehouse: Warehouse) -> None:
    """On any ASCII text (mostly None = NULL), the four Python functions equal their SQL twins."""
    # address_key, canonical_email, domain_key, trim_ends. ASCII only: for a Unicode domain only Python has
    # IDNA, by design, and the key it computes is stored with the entry (back-filled for hand-inserted rows:
    # test_backfill_makes_a_raw_unicode_domain_entry_effective).

    @_property_settings(raw_warehouse)
    @given(st.lists(garbage, min_size=200, max_size=200))
    def check(values: list[str]) -> None:
        out = evaluate(raw_warehouse, values, {"key": sql_address_key, "plain": sql_canonical_email,
                                               "domain": sql_domain_key, "trimmed": sql_trim_ends})
        assert _disagreements(values, out, {"key": address_key, "plain": canonical_email,
                                            "domain": domain_key, "trimmed": trim_ends}) == []

    check()


# Decorations in the order a person pastes them (outermost first): trim, Name <, quote, mailto:, the
# address, trailing dot, ?subject=..., closing quote, >, trim.
@st.composite
def pasted(draw: st.DrawFn, address: str) -> str:
    """`address` as it may be pasted into a DNC sheet."""
    def t() -> str:
        return draw(_trims)
    inner = address + ("." if draw(st.booleans()) else "")
    inner = inner + t() + ("?subject=" + draw(st.text(ASCII_NAME_CHARS, max_size=8)) if draw(st.booleans()) else "")
    if draw(st.booleans()):
        inner = _mixcase("mailto:", draw(st.integers(0, 255))) + t() + inner
    quote = draw(st.sampled_from(["", '"', "'"]))
    if quote:
        inner = quote + t() + inner + quote + t()
    wrapper = draw(st.sampled_from(["", "<", "Name <"]))
    if wrapper == "Name <":
        wrapper = draw(st.text(ASCII_NAME_CHARS, max_size=10)) + " <"
    if wrapper:
        inner = wrapper + t() + inner + ">"
    tail = draw(st.text(EMAIL_TRIM_CHARS, max_size=2))
    return t() + inner + tail


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(addresses.flatmap(lambda a: st.tuples(st.just(a), pasted(a))))
def test_address_key_is_idempotent_and_decoration_invariant(case: tuple[str, str]) -> None:
    """address_key is idempotent, decoration-invariant and the source-lead key of a valid address."""
    # source-lead key: normalize_email + email_key, what v_lead_candidates computes.
    bare, decorated = case
    key = address_key(bare)
    normalized = normalize_email(bare)
    assert normalized is not None and key == email_key(normalized)
    assert address_key(key) == key
    assert address_key(decorated) == key


# A domain entry in the order a person pastes it: trim, scheme://, @, www., the domain, trailing dot,
# :port, /path (or ?query, #fragment), trim; in any case.
@st.composite
def pasted_domain(draw: st.DrawFn, domain: str) -> str:
    """`domain` as it may be pasted into the domain column of a DNC sheet."""
    def maybe(options: Sequence[str]) -> str:
        return draw(st.sampled_from(["", *options]))
    text = (maybe(["http://", "https://", "ftp://", "svn+ssh://"]) + maybe(["@"]) + maybe(["www."]) + domain
            + maybe(["."]) + maybe([":", ":8080"]) + maybe(["/", "/contact", "?q=1", "#top", "/a?b#c"]))
    return draw(_trims) + _mixcase(text, draw(st.integers(0, 255))) + draw(_trims)


# A base domain starting with www. is not its own key by design (every leading www. label is dropped).
_plain_domains = domains.filter(lambda d: not d.startswith("www."))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_plain_domains.flatmap(lambda d: st.tuples(st.just(d), pasted_domain(d))))
def test_domain_key_is_idempotent_and_decoration_invariant(case: tuple[str, str]) -> None:
    """domain_key of a domain is itself, idempotent, and invariant under any pasted decoration."""
    # Decorations: scheme, @, www., trailing dot, port, path, case, trim characters (as pasted_domain).
    bare, decorated = case
    key = domain_key(bare)
    assert key == {"googlemail.com": "gmail.com"}.get(bare, bare)
    assert domain_key(key) == key
    assert domain_key(decorated) == key


def test_hostile_pasted_values_are_keyed_in_linear_time() -> None:
    """A quote followed by thousands of spaces (which took minutes under a backtracking engine) is keyed at
    once, as nothing, by every Python twin: one hostile DNC cell can never stall a run."""
    import time

    hostile = ["'" + " " * 5000 + "x", "<" + "\t" * 5000 + "x", '"' + "'" * 5000, "a" * 100_000,
               "mailto:" * 2000, "<" * 3000 + "x@acme.example" + ">" * 3000]
    started = time.process_time()
    keys = [(address_key(h), canonical_email(h), domain_key(h)) for h in hostile]
    assert keys == [(None, None, None)] * len(hostile)
    assert time.process_time() - started < 2.0  # RE2 is linear: milliseconds; a backtracking engine: hours
