"""Tests of coldsync.rules: the pure decisions (emails, domains, segments, cooldown, classifier, plans)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from coldsync.rules import (
    DOMAIN_PATTERN,
    EMAIL_PATTERN,
    EMAIL_TRIM_CHARS,
    MAX_BATCH_SIZE,
    MAX_EMAIL_LENGTH,
    REAL_REPLY_INTEREST,
    Action,
    Classification,
    LeadStatus,
    Outcome,
    Suppression,
    chunk,
    classify_finished_lead,
    cooldown_ends_at,
    email_domain,
    in_cooldown,
    lead_id_of,
    normalize_email,
    parse_revenue,
    parse_timestamp,
    plan_drain,
)
from coldsync.suppression import domain_key

NOW = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Emails
# ---------------------------------------------------------------------------------------------

_LOCAL_64 = "a" * 64
_DOMAIN_189 = "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
EMAIL_254 = f"{_LOCAL_64}@{_DOMAIN_189}"
EMAIL_255 = f"{_LOCAL_64}@{'b' * 63}.{'c' * 63}.{'d' * 58}.com"
EMAIL_300 = "a" * 235 + "@" + "b" * 60 + ".com"
DOMAIN_253 = ("a" * 63 + ".") * 3 + "a" * 57 + ".com"
DOMAIN_254 = ("a" * 63 + ".") * 3 + "a" * 58 + ".com"

VALID_EMAILS = [
    pytest.param("jane@example.com", "jane@example.com", id="plain"),
    pytest.param("  Jane.Doe@Example.COM  ", "jane.doe@example.com", id="uppercase-and-spaces"),
    pytest.param("A@EXAMPLE.COM", "a@example.com", id="all-uppercase"),
    pytest.param("\u00a0jane@example.com\u00a0", "jane@example.com", id="nbsp-around"),
    pytest.param("\u200bjane@example.com\u200b", "jane@example.com", id="zero-width-space-around"),
    pytest.param("\ufeffjane@example.com\u200d", "jane@example.com", id="bom-and-zwj-around"),
    pytest.param("\tjane@example.com\r\n", "jane@example.com", id="tab-crlf-around"),
    pytest.param("\u3000jane@example.com\u2009", "jane@example.com", id="ideographic-and-thin-space"),
    pytest.param("o'brien@example.com", "o'brien@example.com", id="apostrophe"),
    pytest.param("first.last+tag@example.com", "first.last+tag@example.com", id="dot-and-plus"),
    pytest.param("a_b%c-d@example.com", "a_b%c-d@example.com", id="underscore-percent-hyphen"),
    pytest.param("x@mail.sub.example.com", "x@mail.sub.example.com", id="sub-domains"),
    pytest.param("x@a-b.example.com", "x@a-b.example.com", id="hyphen-inside-label"),
    pytest.param("x@1example.com", "x@1example.com", id="label-starting-with-digit"),
    pytest.param("x@xn--bcher-kva.example", "x@xn--bcher-kva.example", id="punycode-domain"),
    pytest.param("x@example.co", "x@example.co", id="two-letter-tld"),
    pytest.param(f"x@{'l' * 63}.com", f"x@{'l' * 63}.com", id="63-char-label"),
    pytest.param(EMAIL_254, EMAIL_254, id="254-chars"),
    pytest.param("1@example.com", "1@example.com", id="one-digit-local"),
]

INVALID_EMAILS = [
    pytest.param("", id="empty"),
    pytest.param("   \t\n", id="whitespace-only"),
    pytest.param("\u00a0\u200b\ufeff", id="invisible-only"),
    pytest.param("jane.example.com", id="missing-at"),
    pytest.param("jane@@example.com", id="double-at"),
    pytest.param("a@b@example.com", id="two-ats"),
    pytest.param("@example.com", id="empty-local"),
    pytest.param("jane@", id="empty-domain"),
    pytest.param("jane..doe@example.com", id="double-dot-local"),
    pytest.param(".jane@example.com", id="leading-dot-local"),
    pytest.param("jane.@example.com", id="trailing-dot-local"),
    pytest.param("jane@example.com.", id="trailing-dot-domain"),
    pytest.param("jane@.example.com", id="leading-dot-domain"),
    pytest.param("jane@example..com", id="double-dot-domain"),
    pytest.param("jane@example", id="no-tld"),
    pytest.param("jane@localhost", id="single-label"),
    pytest.param("jane@example.c", id="one-letter-tld"),
    pytest.param("jane@example.123", id="numeric-tld"),
    pytest.param("jane@example.c0m", id="digit-in-tld"),
    pytest.param("jane@example.xn--p1ai", id="punycode-tld"),
    pytest.param("jane@-example.com", id="label-leading-hyphen"),
    pytest.param("jane@example-.com", id="label-trailing-hyphen"),
    pytest.param("jane@sub_domain.example.com", id="underscore-in-domain"),
    pytest.param(f"x@{'l' * 64}.com", id="64-char-label"),
    pytest.param("jöhn@example.com", id="unicode-local"),
    pytest.param("jane@bücher.example", id="idn-domain"),
    pytest.param("jane@例え.jp", id="idn-domain-cjk"),
    pytest.param("\u212a@example.com", id="kelvin-sign-lowers-to-k"),
    pytest.param("\u0130nfo@example.com", id="dotted-capital-i"),
    pytest.param("jane\u200b@example.com", id="zero-width-inside"),
    pytest.param("jane doe@example.com", id="space-in-local"),
    pytest.param("jane@exam ple.com", id="space-in-domain"),
    pytest.param('"jane"@example.com', id="double-quotes"),
    pytest.param("jane(x)@example.com", id="comment"),
    pytest.param("jane@[192.0.2.1]", id="ip-literal"),
    pytest.param("jane@example.com;bob@example.com", id="two-addresses"),
    pytest.param("Jane <jane@example.com>", id="display-name"),
    pytest.param("mailto:jane@example.com", id="mailto"),
    pytest.param(EMAIL_255, id="255-chars"),
    pytest.param(EMAIL_300, id="300-chars"),
]

NON_STRING_EMAILS = [
    pytest.param(None, id="none"),
    pytest.param(123, id="int"),
    pytest.param(True, id="bool"),
    pytest.param(b"jane@example.com", id="bytes"),
    pytest.param(["jane@example.com"], id="list"),
    pytest.param({"email": "jane@example.com"}, id="dict"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID_EMAILS)
def test_normalize_email_accepts_and_canonicalizes_valid_addresses(raw: str, expected: str) -> None:
    """A valid address comes back trimmed (incl. invisible characters) and lower-cased."""
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", INVALID_EMAILS)
def test_normalize_email_rejects_invalid_addresses(raw: str) -> None:
    """An empty, malformed, non-ASCII or too long address normalizes to None."""
    assert normalize_email(raw) is None


@pytest.mark.parametrize("raw", NON_STRING_EMAILS)
def test_normalize_email_rejects_non_strings(raw: object) -> None:
    """Anything that is not a str normalizes to None (no coercion of bytes, lists, numbers)."""
    assert normalize_email(raw) is None


def test_corpus_lengths_are_what_the_boundary_tests_claim() -> None:
    """The long fixtures sit exactly on and just beyond the email and domain length limits."""
    assert MAX_EMAIL_LENGTH == 254
    assert (len(EMAIL_254), len(EMAIL_255), len(EMAIL_300)) == (254, 255, 300)
    assert re.fullmatch(EMAIL_PATTERN, EMAIL_300), "300-char case must fail on length alone"
    assert (len(DOMAIN_253), len(DOMAIN_254)) == (253, 254)
    assert re.fullmatch(DOMAIN_PATTERN, DOMAIN_254), "254-char domain must fail on length alone"


def _email_corpus() -> list[str]:
    """Every string of the email tables, raw and as the view would see it (trimmed, lowered)."""
    raws = [p.values[0] for p in VALID_EMAILS + INVALID_EMAILS]
    extra = ["jane@example.com\n", "\njane@example.com", "JANE@EXAMPLE.COM", "jane@example.com "]
    corpus = [str(r) for r in raws] + extra
    corpus += [c.strip(EMAIL_TRIM_CHARS) for c in corpus] + [c.lower() for c in corpus]
    return sorted(set(corpus))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("jane@example.com\n", False, id="trailing-newline"),
        pytest.param("jane@example.com", True, id="lowercase"),
        pytest.param("Jane@Example.com", True, id="mixed-case-before-lowering"),
        pytest.param("jane@bücher.example".lower(), False, id="non-ascii-after-lowering"),
    ],
)
def test_email_pattern_used_with_fullmatch(text: str, expected: bool) -> None:
    """EMAIL_PATTERN with re.fullmatch decides validity without trimming (no final-newline slip)."""
    assert (re.fullmatch(EMAIL_PATTERN, text) is not None) is expected


@pytest.mark.parametrize(
    ("construct", "forbidden"),
    [
        pytest.param("lookahead/lookbehind/named/atomic group", r"\(\?[=!<>]"),
        pytest.param("named backreference", r"\(\?P="),
        pytest.param("numbered backreference", r"\\[1-9]"),
        pytest.param("\\g or \\k reference", r"\\[gk]"),
        pytest.param("possessive quantifier", r"[*+?}]\+"),
        pytest.param("Unicode-aware shorthand class", r"\\[wWdDsSbB]"),
        pytest.param("inline flags", r"\(\?[a-zA-Z]+[:)]"),
        pytest.param("quote or backtick (SQL literal safety)", r"['\"`]"),
        pytest.param("non-ASCII character", r"[^\x00-\x7f]"),
    ],
)
@pytest.mark.parametrize("pattern", [EMAIL_PATTERN, DOMAIN_PATTERN], ids=["email", "domain"])
def test_patterns_use_only_re2_safe_constructs(pattern: str, construct: str, forbidden: str) -> None:
    """The shared patterns avoid constructs RE2 (BigQuery, DuckDB) lacks or reads differently."""
    assert re.search(forbidden, pattern) is None, f"{construct} in {pattern!r}"


@pytest.mark.parametrize("pattern", [EMAIL_PATTERN, DOMAIN_PATTERN], ids=["email", "domain"])
def test_patterns_are_anchored(pattern: str) -> None:
    """The shared patterns are anchored, so REGEXP_CONTAINS cannot match a substring."""
    assert pattern.startswith("^")
    assert pattern.endswith("$")


def test_trim_chars_cover_every_unicode_whitespace() -> None:
    """EMAIL_TRIM_CHARS includes every character str.isspace() knows, plus zero-width ones."""
    spaces = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert spaces <= set(EMAIL_TRIM_CHARS)
    assert {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"} <= set(EMAIL_TRIM_CHARS)


@pytest.mark.parametrize("pattern", [EMAIL_PATTERN, DOMAIN_PATTERN], ids=["email", "domain"])
def test_duckdb_regex_agrees_with_python_on_the_corpus(pattern: str) -> None:
    """DuckDB's RE2 (regexp_full_match and regexp_matches) accepts exactly what Python accepts."""
    duckdb = pytest.importorskip("duckdb")
    corpus = _email_corpus()
    corpus += sorted({c.rpartition("@")[2] for c in corpus} | {DOMAIN_253, DOMAIN_254})
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT s, regexp_full_match(s, $p), regexp_matches(s, $p) FROM unnest($c) AS t(s)",
            {"p": pattern, "c": corpus},
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == len(corpus)
    assert any(full for _, full, _ in rows), "the corpus must hold matches for this pattern"
    disagreements = [
        (s, full, partial) for s, full, partial in rows if not full == partial == (re.fullmatch(pattern, s) is not None)
    ]
    assert disagreements == []


def test_duckdb_sql_recipe_matches_normalize_email() -> None:
    """The documented SQL recipe (trim, length, match, then lower) equals normalize_email."""
    duckdb = pytest.importorskip("duckdb")
    corpus = _email_corpus()
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT s, CASE WHEN length(x) BETWEEN 1 AND $n AND regexp_full_match(x, $p) THEN lower(x) END "
            "FROM (SELECT s, trim(s, $t) AS x FROM unnest($c) AS t(s))",
            {"p": EMAIL_PATTERN, "c": corpus, "t": EMAIL_TRIM_CHARS, "n": MAX_EMAIL_LENGTH},
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == len(corpus)
    assert [(s, sql) for s, sql in rows if sql != normalize_email(s)] == []


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        pytest.param("jane@example.com", "example.com", id="plain"),
        pytest.param("x@mail.sub.example.com", "mail.sub.example.com", id="sub-domain"),
        pytest.param("o'brien@example.com", "example.com", id="apostrophe"),
    ],
)
def test_email_domain_returns_the_part_after_the_at(email: str, expected: str) -> None:
    """email_domain gives the domain of a normalized email."""
    assert email_domain(email) == expected


@pytest.mark.parametrize("email", ["jane.example.com", "jane@", ""], ids=["no-at", "empty-domain", "empty"])
def test_email_domain_rejects_non_emails(email: str) -> None:
    """email_domain raises ValueError when there is no domain to return."""
    with pytest.raises(ValueError):
        email_domain(email)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("example.com", "example.com", id="plain"),
        pytest.param("  Example.COM\u200b", "example.com", id="trim-and-lower"),
        pytest.param("@example.com", "example.com", id="leading-at"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param("www.example.com", "example.com", id="www-stripped"),
        pytest.param("WWW.Example.com", "example.com", id="www-uppercase-stripped"),
        pytest.param("https://www.example.com/contact?x=1", "example.com", id="url"),
        pytest.param("http://example.com", "example.com", id="url-no-path"),
        pytest.param("eu.example.com", "eu.example.com", id="sub-domain-kept"),
        pytest.param("www.com", "www.com", id="www-kept-when-rest-is-not-a-domain"),
        pytest.param("wwwexample.com", "wwwexample.com", id="www-without-dot-kept"),
        pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="punycode"),
        pytest.param(DOMAIN_253, DOMAIN_253, id="253-chars"),
        pytest.param("example.com:8080", "example.com", id="port"),
        pytest.param("bücher.example", "xn--bcher-kva.example", id="idn-to-punycode"),
    ],
)
def test_domain_key_canonicalizes_dnc_domain_entries(raw: str, expected: str) -> None:
    """A DNC domain entry is trimmed, lowered, and loses @, www., URL parts, a port and the root dot."""
    assert domain_key(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="whitespace"),
        pytest.param("jane@example.com", id="email-not-domain"),
        pytest.param("@@example.com", id="double-at"),
        pytest.param("example.com..", id="two-trailing-dots"),
        pytest.param("localhost", id="single-label"),
        pytest.param("-example.com", id="leading-hyphen"),
        pytest.param("example", id="no-dot"),
        pytest.param("https://", id="bare-scheme"),
        pytest.param(DOMAIN_254, id="254-chars"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
    ],
)
def test_domain_key_rejects_non_domains(raw: object) -> None:
    """Anything that is not a domain (after stripping) has no key."""
    assert domain_key(raw) is None


# ---------------------------------------------------------------------------------------------
# Revenue and segment
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(999_999, Decimal(999_999), id="int"),
        pytest.param(0, Decimal(0), id="zero"),
        pytest.param(1_000_000.0, Decimal("1000000.0"), id="float"),
        pytest.param(0.1, Decimal("0.1"), id="float-shortest-repr"),
        pytest.param(Decimal("1000001.25"), Decimal("1000001.25"), id="decimal"),
        pytest.param("1000000", Decimal(1_000_000), id="digits"),
        pytest.param(" 1,000,000 ", Decimal(1_000_000), id="thousands-commas"),
        pytest.param("12,345,678.90", Decimal("12345678.90"), id="commas-and-fraction"),
        pytest.param("999999.5", Decimal("999999.5"), id="fraction"),
        pytest.param(None, None, id="none"),
        pytest.param(-1, None, id="negative-int"),
        pytest.param(-0.5, None, id="negative-float"),
        pytest.param("-5", None, id="negative-string"),
        pytest.param("abc", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param("$1.2M", None, id="currency-and-suffix"),
        pytest.param("1e6", None, id="exponent"),
        pytest.param("1,2", None, id="misplaced-comma"),
        pytest.param("1,0000", None, id="bad-grouping"),
        pytest.param("+5", None, id="plus-sign"),
        pytest.param(".5", None, id="no-integer-part"),
        pytest.param(float("nan"), None, id="nan"),
        pytest.param(float("inf"), None, id="inf"),
        pytest.param(Decimal("NaN"), None, id="decimal-nan"),
        pytest.param(Decimal("-Infinity"), None, id="decimal-infinity"),
        pytest.param(True, None, id="bool"),
        pytest.param([1], None, id="list"),
    ],
)
def test_parse_revenue(raw: object, expected: Decimal | None) -> None:
    """Plain numbers (with thousands commas) parse; everything else is unknown (None)."""
    assert parse_revenue(raw) == expected


# ---------------------------------------------------------------------------------------------
# Timestamps and cooldown
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("2026-06-30T19:00:49.261Z", datetime(2026, 6, 30, 19, 0, 49, 261000, tzinfo=UTC), id="z-ms"),
        pytest.param("2026-06-30T19:00:49Z", datetime(2026, 6, 30, 19, 0, 49, tzinfo=UTC), id="z"),
        pytest.param(
            "2026-06-30T21:00:49+02:00", datetime(2026, 6, 30, 19, 0, 49, tzinfo=UTC), id="offset-same-instant"
        ),
        pytest.param("2026-06-30T19:00:49", None, id="naive"),
        pytest.param("2026-06-30", None, id="date-only"),
        pytest.param("yesterday", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(1782846049, None, id="epoch-int"),
        pytest.param(None, None, id="none"),
    ],
)
def test_parse_timestamp(raw: object, expected: datetime | None) -> None:
    """ISO-8601 with Z or an offset parses to an aware datetime; anything else is missing."""
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    ("ended_ago", "expected"),
    [
        pytest.param(timedelta(days=89), True, id="89-days"),
        pytest.param(timedelta(days=90) - timedelta(seconds=1), True, id="1s-before-90-days"),
        pytest.param(timedelta(days=90), False, id="exactly-90-days-is-eligible"),
        pytest.param(timedelta(days=91), False, id="91-days"),
        pytest.param(timedelta(0), True, id="just-ended"),
        pytest.param(-timedelta(days=1), True, id="future-completion-clock-skew"),
    ],
)
def test_in_cooldown_boundary(ended_ago: timedelta, expected: bool) -> None:
    """In cooldown iff now - completed_at < cooldown_days; exactly 90 days ago is eligible again."""
    assert in_cooldown(NOW - ended_ago, NOW, 90) is expected


def test_in_cooldown_never_finished_is_eligible() -> None:
    """A lead with no finished attempt (None) is not in cooldown."""
    assert in_cooldown(None, NOW, 90) is False


def test_in_cooldown_zero_days_never_blocks() -> None:
    """With a cooldown of 0 days a lead is eligible the moment its sequence ended."""
    assert in_cooldown(NOW, NOW, 0) is False


def test_cooldown_ends_at_adds_whole_days() -> None:
    """cooldown_ends_at is completed_at + cooldown_days * 24h, the first eligible instant."""
    ended = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert cooldown_ends_at(ended, 90) == datetime(2026, 5, 30, 8, 30, tzinfo=UTC)
    assert in_cooldown(ended, cooldown_ends_at(ended, 90), 90) is False


@pytest.mark.parametrize(
    ("completed_at", "now", "days"),
    [
        pytest.param(datetime(2026, 1, 1), NOW, 90, id="naive-completed"),
        pytest.param(NOW, datetime(2026, 1, 1), 90, id="naive-now"),
        pytest.param(NOW, NOW, -1, id="negative-days"),
        pytest.param(NOW, NOW, True, id="bool-days"),
        pytest.param(None, NOW, -1, id="negative-days-without-completion"),
    ],
)
def test_in_cooldown_rejects_bad_arguments(completed_at: datetime | None, now: datetime, days: Any) -> None:
    """Naive datetimes and invalid day counts are caller errors (ValueError), never guessed."""
    with pytest.raises(ValueError):
        in_cooldown(completed_at, now, days)


# ---------------------------------------------------------------------------------------------
# The finished-lead classifier
# ---------------------------------------------------------------------------------------------

_MISSING = object()


def iso(moment: datetime) -> str:
    """Instantly's timestamp format: ISO-8601 in UTC with milliseconds and Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_lead(**overrides: object) -> dict[str, Any]:
    """A lead shaped like POST /api/v2/leads/list items; `_MISSING` removes a field."""
    lead: dict[str, Any] = {
        "id": "019f1a9e-2c6d-7148-8d7e-8bfec9853da6",
        "timestamp_created": iso(NOW - timedelta(days=10)),
        "timestamp_updated": iso(NOW - timedelta(days=1)),
        "organization": "bffdcc34-56cd-403e-a325-def96cc9d027",
        "status": 1,
        "email_open_count": 0,
        "email_reply_count": 0,
        "email_click_count": 0,
        "company_domain": "example.com",
        "status_summary": {},
        "campaign": "9b6f458e-6dc5-4762-83d5-a528aedd2235",
        "email": "person20@example.com",
        "first_name": "Alex",
        "last_name": "Example",
        "upload_method": "api",
        "esp_code": 1000,
    }
    for key, value in overrides.items():
        if value is _MISSING:
            lead.pop(key, None)
        else:
            lead[key] = value
    return lead


KEEP = (Action.KEEP, None, None)
UNKNOWN = (Action.UNKNOWN, None, None)
UNSUBSCRIBED = (Action.DRAIN, Outcome.UNSUBSCRIBED, Suppression.DNC)
BOUNCED = (Action.DRAIN, Outcome.BOUNCED, Suppression.PERMANENT)
REPLIED = (Action.DRAIN, Outcome.REPLIED, Suppression.COOLDOWN)
COMPLETED = (Action.DRAIN, Outcome.COMPLETED, Suppression.COOLDOWN)
SKIPPED = (Action.DRAIN, Outcome.SKIPPED, Suppression.COOLDOWN)
STALE = (Action.DRAIN, Outcome.STALE, Suppression.COOLDOWN)

_OLD = iso(NOW - timedelta(days=200))


def _p(case_id: str, expected: tuple[Any, ...], added_at: datetime | None = None, **fields: object) -> Any:
    return pytest.param(make_lead(**fields), added_at, expected, id=case_id)


CLASSIFIER_CASES = [
    # unsubscribed: wins over everything
    _p("unsubscribed", UNSUBSCRIBED, status=-2),
    _p("unsubscribed-with-replies", UNSUBSCRIBED, status=-2, email_reply_count=3),
    _p("unsubscribed-interested", UNSUBSCRIBED, status=-2, email_reply_count=1, lt_interest_status=1),
    _p("unsubscribed-out-of-office", UNSUBSCRIBED, status=-2, email_reply_count=1, lt_interest_status=0),
    _p("unsubscribed-stale", UNSUBSCRIBED, status=-2, timestamp_created=_OLD),
    _p("unsubscribed-garbage-reply-count", UNSUBSCRIBED, status=-2, email_reply_count="many"),
    _p("unsubscribed-garbage-interest", UNSUBSCRIBED, status=-2, lt_interest_status="hot"),
    _p("unsubscribed-no-timestamps", UNSUBSCRIBED, status=-2, timestamp_created=_MISSING),
    _p("unsubscribed-enum-status", UNSUBSCRIBED, status=LeadStatus.UNSUBSCRIBED),
    # bounced
    _p("bounced", BOUNCED, status=-1, timestamp_last_contact=iso(NOW - timedelta(hours=2))),
    _p("bounced-with-reply", BOUNCED, status=-1, email_reply_count=1),
    _p("bounced-interested", BOUNCED, status=-1, lt_interest_status=1),
    _p("bounced-garbage-reply-count", BOUNCED, status=-1, email_reply_count=None),
    # real replies, whatever the status
    _p("reply-active", REPLIED, status=1, email_reply_count=1),
    _p("reply-completed", REPLIED, status=3, email_reply_count=2, lt_interest_status=1),
    _p("reply-paused", REPLIED, status=2, email_reply_count=1),
    _p("reply-skipped", REPLIED, status=-3, email_reply_count=1),
    _p("reply-stale-active", REPLIED, status=1, email_reply_count=1, timestamp_created=_OLD),
    _p("reply-not-interested", REPLIED, status=1, email_reply_count=1, lt_interest_status=-1),
    _p("reply-custom-interest", REPLIED, status=1, email_reply_count=1, lt_interest_status=12345),
    _p("interest-without-count", REPLIED, status=1, lt_interest_status=2),
    _p("interest-count-missing", REPLIED, status=3, lt_interest_status=4, email_reply_count=_MISSING),
    _p(
        "reply-with-last-reply-time",
        REPLIED,
        status=3,
        email_reply_count=1,
        timestamp_last_reply=iso(NOW - timedelta(days=1)),
    ),
    # out of office is not a reply
    _p("ooo-active", KEEP, status=1, email_reply_count=1, lt_interest_status=0),
    _p("ooo-paused", KEEP, status=2, email_reply_count=2, lt_interest_status=0),
    _p("ooo-completed", COMPLETED, status=3, email_reply_count=1, lt_interest_status=0),
    _p("ooo-active-stale", STALE, status=1, email_reply_count=1, lt_interest_status=0, timestamp_created=_OLD),
    _p("ooo-without-count-active", KEEP, status=1, lt_interest_status=0),
    # out of office, then a later reply nobody labelled: a person answering (during or after the sequence)
    _p("ooo-then-reply-completed", REPLIED, status=3, email_reply_count=2, lt_interest_status=0,
       timestamp_last_interest_change=iso(NOW - timedelta(days=6)), timestamp_last_reply=iso(NOW - timedelta(days=1))),
    _p("ooo-then-reply-active", REPLIED, status=1, email_reply_count=2, lt_interest_status=0,
       timestamp_last_interest_change=iso(NOW - timedelta(days=6)), timestamp_last_reply=iso(NOW - timedelta(days=1))),
    _p("ooo-reply-9-minutes-after-label", COMPLETED, status=3, email_reply_count=1, lt_interest_status=0,
       timestamp_last_interest_change=iso(NOW - timedelta(days=1, minutes=9)),
       timestamp_last_reply=iso(NOW - timedelta(days=1))),
    _p("ooo-labelled-after-the-reply", KEEP, status=1, email_reply_count=1, lt_interest_status=0,
       timestamp_last_interest_change=iso(NOW - timedelta(days=1)),
       timestamp_last_reply=iso(NOW - timedelta(days=1, minutes=2))),
    _p("ooo-reply-11-minutes-after-label", REPLIED, status=3, email_reply_count=1, lt_interest_status=0,
       timestamp_last_interest_change=iso(NOW - timedelta(days=1, minutes=11)),
       timestamp_last_reply=iso(NOW - timedelta(days=1))),
    _p("ooo-reply-without-label-time", COMPLETED, status=3, email_reply_count=2, lt_interest_status=0,
       timestamp_last_reply=iso(NOW - timedelta(days=1))),
    # completed / skipped
    _p("completed", COMPLETED, status=3, timestamp_last_contact=iso(NOW - timedelta(days=1))),
    _p("completed-count-null", COMPLETED, status=3, email_reply_count=None),
    _p("completed-count-missing", COMPLETED, status=3, email_reply_count=_MISSING),
    _p("completed-interest-null", COMPLETED, status=3, lt_interest_status=None),
    _p("skipped", SKIPPED, status=-3),
    _p("custom-interest-without-count-completed", COMPLETED, status=3, lt_interest_status=12345),
    # active / paused: KEEP until stale
    _p("active-fresh", KEEP, status=1),
    _p("paused-fresh", KEEP, status=2),
    _p("custom-interest-without-count-active", KEEP, status=1, lt_interest_status=12345),
    _p("active-exactly-max-days", KEEP, status=1, timestamp_created=iso(NOW - timedelta(days=90))),
    _p("active-max-days-plus-1s", STALE, status=1, timestamp_created=iso(NOW - timedelta(days=90, seconds=1))),
    _p("active-91-days", STALE, status=1, timestamp_created=iso(NOW - timedelta(days=91))),
    _p("paused-91-days", STALE, status=2, timestamp_created=iso(NOW - timedelta(days=91))),
    _p("added-at-wins-over-created-fresh", KEEP, NOW - timedelta(days=5), status=1, timestamp_created=_OLD),
    _p("added-at-wins-over-created-stale", STALE, NOW - timedelta(days=100), status=1),
    _p("added-at-used-when-created-garbage", KEEP, NOW - timedelta(days=5), status=1, timestamp_created="x"),
    _p("created-in-future", KEEP, status=1, timestamp_created=iso(NOW + timedelta(days=1))),
    _p("created-with-offset", STALE, status=1, timestamp_created="2026-01-01T00:00:00+05:00"),
    # unknown: never guessed
    _p("created-missing", UNKNOWN, status=1, timestamp_created=_MISSING),
    _p("created-unparseable", UNKNOWN, status=1, timestamp_created="yesterday"),
    _p("created-naive", UNKNOWN, status=1, timestamp_created="2026-01-01T00:00:00"),
    _p("created-epoch-int", UNKNOWN, status=1, timestamp_created=1767225600),
    _p("status-missing", UNKNOWN, status=_MISSING),
    _p("status-null", UNKNOWN, status=None),
    _p("status-7", UNKNOWN, status=7),
    _p("status-minus-4", UNKNOWN, status=-4),
    _p("status-0-list-only", UNKNOWN, status=0),
    _p("status-numeric-string", UNKNOWN, status="3"),
    _p("status-unsubscribed-string", UNKNOWN, status="-2"),
    _p("status-float", UNKNOWN, status=3.0),
    _p("status-bool-true", UNKNOWN, status=True),
    _p("status-bool-false", UNKNOWN, status=False),
    _p("status-list", UNKNOWN, status=[3]),
    _p("status-dict", UNKNOWN, status={"value": 3}),
    _p("reply-count-string", UNKNOWN, status=3, email_reply_count="1"),
    _p("reply-count-float", UNKNOWN, status=1, email_reply_count=1.0),
    _p("reply-count-bool", UNKNOWN, status=1, email_reply_count=True),
    _p("reply-count-negative", UNKNOWN, status=3, email_reply_count=-1),
    _p("interest-string", UNKNOWN, status=3, lt_interest_status="1"),
    _p("interest-bool", UNKNOWN, status=1, lt_interest_status=False),
    _p("interest-float", UNKNOWN, status=1, lt_interest_status=0.0),
]


@pytest.mark.parametrize(("lead", "added_at", "expected"), CLASSIFIER_CASES)
def test_classify_finished_lead(lead: dict[str, Any], added_at: datetime | None, expected: tuple[Any, ...]) -> None:
    """Each lead shape gets its documented action, outcome and suppression (max 90 active days)."""
    result = classify_finished_lead(lead, now=NOW, added_at=added_at, max_active_days=90)
    assert (result.action, result.outcome, result.suppression) == expected
    assert result.reason


@pytest.mark.parametrize("interest", sorted(REAL_REPLY_INTEREST))
@pytest.mark.parametrize("status", [1, 2, 3, -3])
def test_every_real_interest_value_is_a_reply(status: int, interest: int) -> None:
    """Each non-out-of-office interest value marks a real reply, for every non-terminal status."""
    lead = make_lead(status=status, lt_interest_status=interest, email_reply_count=0)
    result = classify_finished_lead(lead, now=NOW, added_at=None, max_active_days=90)
    assert (result.action, result.outcome, result.suppression) == REPLIED


def test_real_reply_set_is_every_static_interest_but_out_of_office() -> None:
    """The real-reply interest values are the spec's static values except 0 (out of office)."""
    assert frozenset({1, 2, 3, 4, -1, -2, -3, -4}) == REAL_REPLY_INTEREST


@pytest.mark.parametrize(
    "lead",
    [
        pytest.param(make_lead(status="jane@example.com"), id="email-as-status"),
        pytest.param(make_lead(status=1, email_reply_count="jane@example.com"), id="email-as-reply-count"),
        pytest.param(make_lead(status=1, lt_interest_status="jane@example.com"), id="email-as-interest"),
        pytest.param(make_lead(status=-2, email="jane@example.com"), id="unsubscribed"),
        pytest.param(make_lead(status=1, timestamp_created=_OLD, email="jane@example.com"), id="stale"),
    ],
)
def test_classification_reason_carries_no_personal_data(lead: dict[str, Any]) -> None:
    """A reason never echoes the lead's email or a string value from the API."""
    reason = classify_finished_lead(lead, now=NOW, added_at=None, max_active_days=90).reason
    assert "@" not in reason
    assert "jane" not in reason.lower()


def test_classify_accepts_a_non_mapping_as_unknown() -> None:
    """A lead that is not an object at all (hostile API) is UNKNOWN, not an exception."""
    result = classify_finished_lead("not a lead", now=NOW, added_at=None, max_active_days=90)  # type: ignore[arg-type]
    assert result.action is Action.UNKNOWN


@pytest.mark.parametrize(
    ("now", "added_at", "max_days"),
    [
        pytest.param(datetime(2026, 7, 1), None, 90, id="naive-now"),
        pytest.param(NOW, datetime(2026, 6, 1), 90, id="naive-added-at"),
        pytest.param(NOW, None, -1, id="negative-max-days"),
        pytest.param(NOW, None, True, id="bool-max-days"),
    ],
)
def test_classify_rejects_bad_arguments(now: datetime, added_at: datetime | None, max_days: Any) -> None:
    """Caller errors (naive datetimes, invalid max_active_days) raise ValueError."""
    with pytest.raises(ValueError):
        classify_finished_lead(make_lead(), now=now, added_at=added_at, max_active_days=max_days)


@pytest.mark.parametrize(
    ("action", "outcome", "suppression"),
    [
        pytest.param(Action.DRAIN, None, Suppression.COOLDOWN, id="drain-without-outcome"),
        pytest.param(Action.DRAIN, Outcome.COMPLETED, None, id="drain-without-suppression"),
        pytest.param(Action.KEEP, Outcome.COMPLETED, Suppression.COOLDOWN, id="keep-with-outcome"),
        pytest.param(Action.UNKNOWN, None, Suppression.DNC, id="unknown-with-suppression"),
    ],
)
def test_classification_rejects_inconsistent_fields(
    action: Action, outcome: Outcome | None, suppression: Suppression | None
) -> None:
    """A Classification has outcome and suppression exactly when its action is DRAIN."""
    with pytest.raises(ValueError):
        Classification(action, outcome, suppression, "x")


def test_outcome_values_are_history_status_final_strings() -> None:
    """Outcome values are the strings written to ops_lead_history.status_final."""
    assert sorted(o.value for o in Outcome) == [
        "bounced",
        "completed",
        "replied",
        "skipped",
        "stale",
        "unsubscribed",
    ]


# ---------------------------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("items", "size", "expected"),
    [
        pytest.param([], 1000, [], id="empty"),
        pytest.param([1, 2, 3], 1, [[1], [2], [3]], id="size-1"),
        pytest.param([1, 2, 3, 4, 5], 2, [[1, 2], [3, 4], [5]], id="short-last"),
        pytest.param([1, 2, 3, 4], 2, [[1, 2], [3, 4]], id="exact"),
        pytest.param(iter("abc"), 1000, [["a", "b", "c"]], id="iterator"),
    ],
)
def test_chunk_splits_in_order(items: Any, size: int, expected: list[list[Any]]) -> None:
    """chunk splits into consecutive batches of `size`, keeping order; the last may be shorter."""
    assert chunk(items, size) == expected


def test_chunk_batches_of_a_thousand() -> None:
    """2,500 items in batches of MAX_BATCH_SIZE give 1000, 1000 and 500."""
    batches = chunk(range(2_500), MAX_BATCH_SIZE)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [x for b in batches for x in b] == list(range(2_500))


@pytest.mark.parametrize("size", [0, -1, 1001, True, 2.0, None], ids=["0", "neg", "1001", "bool", "float", "none"])
def test_chunk_rejects_bad_sizes(size: Any) -> None:
    """A size outside 1..1000 (or not an int) raises ValueError."""
    with pytest.raises(ValueError):
        chunk([1, 2], size)


# ---------------------------------------------------------------------------------------------
# Drain plan
# ---------------------------------------------------------------------------------------------


def _lead(lead_id: str, **fields: object) -> dict[str, Any]:
    return make_lead(id=lead_id, email=f"{lead_id}@example.com", **fields)


def test_plan_drain_groups_and_counts() -> None:
    """plan_drain counts each outcome, lists drains and unknowns in order, and counts keeps."""
    leads: list[tuple[Mapping[str, Any], datetime | None]] = [
        (_lead("u1", status=-2), None),
        (_lead("b1", status=-1), None),
        (_lead("r1", status=1, email_reply_count=1), None),
        (_lead("c1", status=3), None),
        (_lead("c2", status=3, email_reply_count=1, lt_interest_status=0), None),
        (_lead("s1", status=-3), None),
        (_lead("t1", status=1), NOW - timedelta(days=120)),
        (_lead("k1", status=1), None),
        (_lead("k2", status=2, email_reply_count=1, lt_interest_status=0), None),
        (_lead("x1", status="3"), None),
        (_lead("x2", status=7), None),
    ]
    plan = plan_drain(leads, NOW, 90)
    assert dict(plan.outcome_counts) == {
        Outcome.UNSUBSCRIBED: 1,
        Outcome.BOUNCED: 1,
        Outcome.REPLIED: 1,
        Outcome.COMPLETED: 2,
        Outcome.SKIPPED: 1,
        Outcome.STALE: 1,
    }
    assert [lead["id"] for lead, _ in plan.to_drain] == ["u1", "b1", "r1", "c1", "c2", "s1", "t1"]
    assert [lead["id"] for lead, _ in plan.unknown] == ["x1", "x2"]
    assert plan.keep_count == 2
    assert [lead["id"] for lead, _ in plan.dnc] == ["u1"]
    assert plan.duplicate_count == 0


def test_plan_drain_empty() -> None:
    """An empty listing gives an empty plan with every outcome counted as 0."""
    plan = plan_drain([], NOW, 90)
    assert plan.to_drain == () and plan.unknown == () and plan.keep_count == 0
    assert dict(plan.outcome_counts) == dict.fromkeys(Outcome, 0)


def test_plan_drain_plans_a_repeated_lead_id_once() -> None:
    """A lead id seen twice (overlapping pages) is planned once, at its first occurrence."""
    first = _lead("d1", status=3)
    plan = plan_drain([(first, None), (_lead("d1", status=-2), None), (_lead("d2", status=3), None)], NOW, 90)
    assert [lead["id"] for lead, _ in plan.to_drain] == ["d1", "d2"]
    assert plan.to_drain[0][0] is first
    assert plan.duplicate_count == 1


def test_plan_drain_never_merges_leads_without_an_id() -> None:
    """Leads without a string id are each classified (and reported), never de-duplicated."""
    plan = plan_drain([(make_lead(id=_MISSING, status=3), None), (make_lead(id=None, status=3), None)], NOW, 90)
    assert plan.outcome_counts[Outcome.COMPLETED] == 2


def test_plan_drain_counts_are_read_only() -> None:
    """The outcome counts of a plan cannot be changed after planning."""
    plan = plan_drain([(_lead("c1", status=3), None)], NOW, 90)
    with pytest.raises(TypeError):
        plan.outcome_counts[Outcome.COMPLETED] = 5  # type: ignore[index]


@pytest.mark.parametrize(("lead", "expected"), [
    ({"id": "019caf10-3180-7000-8001-c3207c2b3abe"}, "019caf10-3180-7000-8001-c3207c2b3abe"),
    ({"id": ""}, None), ({"id": "   "}, None), ({"id": 12345}, None), ({"id": None}, None), ({}, None),
    ({"id": ["x"]}, None), ("not a lead", None),
])
def test_lead_id_of_takes_only_a_non_blank_string(lead: object, expected: str | None) -> None:
    """A lead's id is usable only as a non-blank string: anything else is no id (the lead is kept, reported)."""
    assert lead_id_of(lead) == expected
