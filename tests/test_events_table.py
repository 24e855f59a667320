"""ops_instantly_events: insert-only appends collapse by dedup key, and an unsubscribe or bounce event suppresses
the address in the one eligibility definition on both engines, before any run copies it into ops_dnc."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from coldsync.settings import Settings
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.schema import EVENTS
from coldsync.webhooks.events import DELIVERED_BY_RECEIVER, PayloadError, dedup_key, parse_body, parse_payload
from tests.helpers import build, lead

T = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
CAMPAIGN = "11111111-1111-4111-8111-111111111111"


def event(email: str | None, event_type: str = "lead_unsubscribed", at: dt.datetime = T, step: int | None = 2,
          **extra: Any) -> dict[str, Any]:
    """One ops_instantly_events row as the receiver writes it for a payload of these values."""
    body = {"timestamp": at.isoformat().replace("+00:00", "Z"), "event_type": event_type,
            "workspace": "22222222-2222-4222-8222-222222222222", "campaign_id": CAMPAIGN, "campaign_name": "SMB",
            "step": step, "variant": 1, **({"lead_email": email} if email is not None else {}), **extra}
    return parse_body(json.dumps(body).encode()).as_row(T, DELIVERED_BY_RECEIVER)


def ready(warehouse: Warehouse) -> list[str]:
    rows = warehouse.query("SELECT email FROM `{ds}.v_ready_for_instantly` ORDER BY email", label="t")
    return [r["email"] for r in rows]


def test_dedup_key_is_sha256_of_the_parts_and_changes_with_each_part() -> None:
    """The dedup key is the hex SHA-256 of type, email key, campaign, UTC time, step and variant joined by 0x1f;
    a change in any one part gives another key, and the same time in another zone gives the same key."""
    import hashlib
    expected = hashlib.sha256("\x1f".join(["lead_unsubscribed", "ana@acme.example", CAMPAIGN,
                                           "2026-11-30T09:00:00+00:00", "2", "1"]).encode()).hexdigest()
    assert dedup_key("lead_unsubscribed", "ana@acme.example", CAMPAIGN, T, 2, 1) == expected
    same_instant = T.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert dedup_key("lead_unsubscribed", "ana@acme.example", CAMPAIGN, same_instant, 2, 1) == expected
    others = {dedup_key("email_bounced", "ana@acme.example", CAMPAIGN, T, 2, 1),
              dedup_key("lead_unsubscribed", "bob@acme.example", CAMPAIGN, T, 2, 1),
              dedup_key("lead_unsubscribed", "ana@acme.example", "c2", T, 2, 1),
              dedup_key("lead_unsubscribed", "ana@acme.example", CAMPAIGN, T + dt.timedelta(microseconds=1), 2, 1),
              dedup_key("lead_unsubscribed", "ana@acme.example", CAMPAIGN, T, 3, 1),
              dedup_key("lead_unsubscribed", "ana@acme.example", CAMPAIGN, T, 2, None)}
    assert len(others) == 6 and expected not in others


def test_payload_keeps_the_raw_text_and_keys_the_address_like_the_dnc_list() -> None:
    """A payload's email is kept as sent and keyed by the suppression key (case, +tag, mailto: go); the raw JSON
    is stored byte for byte; a lead id is taken from lead data merged in."""
    raw = ('{"timestamp":"2026-11-30T09:00:00.000Z","event_type":"lead_unsubscribed","workspace":"w",'
           '"campaign_id":"c1","campaign_name":"SMB","lead_email":" Ana+Promo@ACME.example ","id":"lead-9"}')
    row = parse_body(raw.encode())
    assert (row.email, row.email_key, row.lead_id, row.event_at, row.step, row.payload) == (
        "Ana+Promo@ACME.example", "ana@acme.example", "lead-9", T, None, raw)


@pytest.mark.parametrize(("body", "field"), [
    (b"[1, 2]", "body"), (b"{not json", "body"), (b"\xff\xfe", "body"),
    (b'{"event_type":"lead_unsubscribed","campaign_id":"c","lead_email":"a@b.example"}', "timestamp"),
    (b'{"timestamp":"yesterday","event_type":"lead_unsubscribed","campaign_id":"c","lead_email":"a@b.example"}',
     "timestamp"),
    (b'{"timestamp":"2026-11-30T09:00:00Z","event_type":"lead_unsubscribed","lead_email":"a@b.example"}',
     "campaign_id"),
    (b'{"timestamp":"2026-11-30T09:00:00Z","event_type":"lead_unsubscribed","campaign_id":"c"}', "lead_email"),
    (b'{"timestamp":"2026-11-30T09:00:00Z","event_type":"email_bounced","campaign_id":"c","lead_email":"nobody"}',
     "lead_email"),
    (b'{"timestamp":"2026-11-30T09:00:00Z","event_type":"reply_received","campaign_id":"c",'
     b'"lead_email":"a@b.example","step":"two"}', "step"),
    (b'{"timestamp":"2026-11-30T09:00:00Z","event_type":7,"campaign_id":"c","lead_email":"a@b.example"}',
     "event_type"),
])
def test_malformed_payloads_name_the_field(body: bytes, field: str) -> None:
    """Each malformed delivery raises PayloadError naming the field at fault."""
    with pytest.raises(PayloadError) as caught:
        parse_body(body)
    assert caught.value.field == field


def test_a_body_over_the_limit_is_refused_before_parsing() -> None:
    """A body one byte over MAX_BODY_BYTES is refused as `body` without being decoded."""
    from coldsync.webhooks.events import MAX_BODY_BYTES
    with pytest.raises(PayloadError, match="byte limit") as caught:
        parse_body(b" " * (MAX_BODY_BYTES + 1))
    assert caught.value.field == "body"
    assert parse_payload({"timestamp": "2026-11-30T09:00:00", "event_type": "campaign_completed",
                          "campaign_id": "c"}, "{}").email is None


def test_append_rows_collapses_repeats_by_dedup_key(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Three rows with one repeat inside the batch, then a batch of one old and one new row: the table holds four
    distinct dedup keys, and on DuckDB exactly four rows (BigQuery may keep a streamed repeat; readers collapse)."""
    build(raw_warehouse, settings)
    first = [event("a@x.example"), event("a@x.example"), event("b@x.example"), event("c@x.example", step=3)]
    raw_warehouse.append_rows(EVENTS, first, key="dedup_key", label="t")
    raw_warehouse.append_rows(EVENTS, [event("b@x.example"), event("d@x.example")], key="dedup_key", label="t")
    counts = raw_warehouse.query("SELECT COUNT(*) AS n, COUNT(DISTINCT dedup_key) AS keys "
                                 "FROM `{ds}.ops_instantly_events`", label="t")[0]
    assert counts["keys"] == 4
    if raw_warehouse.engine == "duckdb":
        assert counts["n"] == 4
    stored = raw_warehouse.query("SELECT DISTINCT email_key, step, delivered_by, received_at "
                                 "FROM `{ds}.ops_instantly_events` ORDER BY email_key", label="t")
    assert [(r["email_key"], r["step"], r["delivered_by"], r["received_at"]) for r in stored] == [
        ("a@x.example", 2, "receiver", T), ("b@x.example", 2, "receiver", T), ("c@x.example", 3, "receiver", T),
        ("d@x.example", 2, "receiver", T)]


def test_unsubscribe_and_bounce_events_suppress_at_once_and_replies_do_not(raw_warehouse: Warehouse,
                                                                           settings: Settings) -> None:
    """With five ready leads: an unsubscribe event (sent as a tagged upper-case address), a bounce event, and a
    hand-written unsubscribe row with no stored key each take their lead out of v_ready_for_instantly at once; a
    reply event and an unsubscribe for another address leave theirs in; ops_dnc stays empty."""
    build(raw_warehouse, settings, [lead(f"{name}@acme.example") for name in ("ana", "bob", "cy", "dee", "eve")])
    assert ready(raw_warehouse) == [f"{n}@acme.example" for n in ("ana", "bob", "cy", "dee", "eve")]
    hand = {**event("x@y.example"), "email": "mailto:CY@Acme.example", "email_key": None, "dedup_key": "hand"}
    raw_warehouse.append_rows(EVENTS, [event("ANA+news@acme.example"), event("bob@acme.example", "email_bounced"),
                                       hand, event("dee@acme.example", "reply_received"),
                                       event("zed@acme.example")], key="dedup_key", label="t")
    assert ready(raw_warehouse) == ["dee@acme.example", "eve@acme.example"]
    assert raw_warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_dnc`", label="t") == [{"n": 0}]


BASE = ('"event_type":"lead_unsubscribed","campaign_id":"c","lead_email":"a@b.example"')
STEP_PROBLEM = "expected a whole number from 0 to 9223372036854775807 (Instantly counts steps from 1), got "
TIME_PROBLEM = "expected a time from 1970-01-01 to 9999-12-31 UTC, got "


@pytest.mark.parametrize(("body", "message"), [
    ('{"timestamp":"2026-11-30T09:00:00Z","step":1000000000000000000000000000000,' + BASE + "}",
     "step: " + STEP_PROBLEM + "1000000000000000000000000000000"),
    ('{"timestamp":"2026-11-30T09:00:00Z","variant":9223372036854775808,' + BASE + "}",
     "variant: " + STEP_PROBLEM + "9223372036854775808"),
    ('{"timestamp":"2026-11-30T09:00:00Z","step":1e400,' + BASE + "}", "step: " + STEP_PROBLEM + "inf"),
    ('{"timestamp":"2026-11-30T09:00:00Z","step":1e30,' + BASE + "}", "step: " + STEP_PROBLEM + "1e+30"),
    ('{"timestamp":"2026-11-30T09:00:00Z","step":NaN,' + BASE + "}",
     "body: NaN is not a JSON value (RFC 8259 has no NaN or Infinity)"),
    ('{"timestamp":"2026-11-30T09:00:00Z","variant":-Infinity,' + BASE + "}",
     "body: -Infinity is not a JSON value (RFC 8259 has no NaN or Infinity)"),
    ("[" * 100_000 + "]" * 100_000, "body: JSON nested too deeply"),
    ('{"timestamp":"0001-01-01T00:00:00+01:00",' + BASE + "}", "timestamp: " + TIME_PROBLEM
     + "'0001-01-01T00:00:00+01:00'"),
    ('{"timestamp":"9999-12-31T23:59:59-01:00",' + BASE + "}", "timestamp: " + TIME_PROBLEM
     + "'9999-12-31T23:59:59-01:00'"),
    ('{"timestamp":"1969-12-31T23:59:59.999999Z",' + BASE + "}", "timestamp: " + TIME_PROBLEM
     + "'1969-12-31T23:59:59.999999Z'"),
    ('{"timestamp":"2026-11-30T09:00:00Z","event_type":"lead_unsubscribed","campaign_id":"c\\ud800",'
     '"lead_email":"a@b.example"}', "campaign_id: holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF)"),
    ('{"timestamp":"2026-11-30T09:00:00Z","event_type":"lead_unsubscribed","campaign_id":"c",'
     '"lead_email":"a\\udc00@b.example"}', "lead_email: holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF)"),
], ids=["step-1e30-int", "variant-2**63", "step-1e400", "step-1e30-float", "nan", "minus-infinity", "deep-nesting",
        "year-1-plus-1h", "year-9999-minus-1h", "before-1970", "campaign-surrogate", "email-surrogate"])
def test_out_of_range_values_are_a_payload_error_not_a_crash(body: str, message: str) -> None:
    """Numbers past INT64 or not finite, NaN/Infinity literals, nesting past the recursion limit, times outside
    1970..9999 UTC (also by their offset) and lone surrogate escapes each raise PayloadError with this exact text
    (before: a crash, or a row that failed its whole batch at the warehouse)."""
    with pytest.raises(PayloadError) as caught:
        parse_body(body.encode())
    assert str(caught.value) == message


def test_the_edges_of_the_ranges_are_accepted() -> None:
    """step 2**63 - 1, variant 3.0 (as 3), the first microsecond of 1970 and the last of 9999 are stored values; a
    lone surrogate in the lead data's `id` only drops the lead id (the event itself is good)."""
    top = parse_body(('{"timestamp":"1970-01-01T00:00:00Z","step":9223372036854775807,"variant":3.0,' + BASE
                      + "}").encode())
    assert (top.step, top.variant, top.event_at) == (2**63 - 1, 3, dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    last = parse_body(('{"timestamp":"9999-12-31T23:59:59.999999Z","id":"\\ud800",' + BASE + "}").encode())
    assert (last.event_at, last.lead_id) == (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), None)
