"""The warehouse contract: the same cases on DuckDB and on BigQuery (through the local emulator)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from coldsync.settings import Settings
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.migrate import read_config
from tests.helpers import (
    T0,
    add_dnc,
    add_history,
    add_state,
    build,
    delete_config,
    lead,
    ready,
    set_config,
)


def test_case_variant_duplicates_collapse_to_one_deterministic_row(raw_warehouse: Warehouse,
                                                                   settings: Settings) -> None:
    """Case and whitespace variants of one email give one ready row: the highest-revenue source row."""
    build(raw_warehouse, settings, [
        lead("Dup@Example.com", Decimal(10), first_name="Low"),
        lead("  dup@example.com ", Decimal(5_000_000), first_name="High"),
        lead("DUP@EXAMPLE.COM", None, first_name="Unknown"),
    ])
    rows = ready(raw_warehouse)
    assert list(rows) == ["dup@example.com"]
    assert rows["dup@example.com"]["first_name"] == "High"
    assert rows["dup@example.com"]["sequence_target"] == "Midsize"


def test_dnc_by_email_excludes_case_insensitively_after_trimming(raw_warehouse: Warehouse,
                                                                 settings: Settings) -> None:
    """A DNC email entry, in any case and with spaces around it, excludes that address only."""
    build(raw_warehouse, settings, [lead("keep@example.com"), lead("Gone@Example.com")])
    add_dnc(raw_warehouse, email="  GONE@example.COM ")
    assert list(ready(raw_warehouse)) == ["keep@example.com"]


def test_dnc_by_domain_excludes_the_whole_domain(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A DNC domain entry (even written '@Blocked.Example.') excludes every address at that domain only."""
    build(raw_warehouse, settings, [lead("a@blocked.example"), lead("b@blocked.example"),
                                    lead("c@sub.blocked.example"), lead("d@open.example")])
    add_dnc(raw_warehouse, domain="@Blocked.Example.")
    assert sorted(ready(raw_warehouse)) == ["c@sub.blocked.example", "d@open.example"]


@pytest.mark.parametrize(("days_ago", "eligible"), [(89, False), (90, True), (91, True)])
def test_cooldown_boundary(raw_warehouse: Warehouse, settings: Settings, days_ago: int, eligible: bool) -> None:
    """A lead whose last sequence ended exactly 90 days ago is eligible again; 89 days ago it is not."""
    build(raw_warehouse, settings, [lead("cool@example.com")])
    add_history(raw_warehouse, "cool@example.com", T0 - dt.timedelta(days=days_ago))
    rows = ready(raw_warehouse)
    assert ("cool@example.com" in rows) is eligible
    if eligible:
        assert rows["cool@example.com"]["attempt_num"] == 2


def test_cooldown_uses_the_latest_history_row(raw_warehouse: Warehouse, settings: Settings) -> None:
    """An old attempt does not release a lead whose latest attempt ended inside the cooldown."""
    build(raw_warehouse, settings, [lead("twice@example.com")])
    add_history(raw_warehouse, "twice@example.com", T0 - dt.timedelta(days=400), attempt=1)
    add_history(raw_warehouse, "twice@example.com", T0 - dt.timedelta(days=10), attempt=2)
    assert ready(raw_warehouse) == {}


@pytest.mark.parametrize(("revenue", "segment"), [
    (Decimal(999_999), "SMB"), (Decimal(1_000_000), "Midsize"), (None, "SMB"), (Decimal(-5), "SMB"),
])
def test_segment_threshold(raw_warehouse: Warehouse, settings: Settings, revenue: Decimal | None,
                           segment: str) -> None:
    """Revenue under 1,000,000 is SMB, exactly 1,000,000 is Midsize; unknown or negative revenue is SMB."""
    build(raw_warehouse, settings, [lead("seg@example.com", revenue)])
    assert ready(raw_warehouse)["seg@example.com"]["sequence_target"] == segment


def test_threshold_comes_from_config_and_missing_row_falls_back(raw_warehouse: Warehouse,
                                                               settings: Settings) -> None:
    """The view reads the threshold from config; with the row deleted it uses 1,000,000 and never goes empty."""
    build(raw_warehouse, settings, [lead("t@example.com", Decimal(600_000))])
    set_config(raw_warehouse, "smb_revenue_threshold", integer=500_000)
    assert ready(raw_warehouse)["t@example.com"]["sequence_target"] == "Midsize"
    delete_config(raw_warehouse, "smb_revenue_threshold")
    delete_config(raw_warehouse, "cooldown_days")
    rows = ready(raw_warehouse)
    assert rows["t@example.com"]["sequence_target"] == "SMB"


def test_names_with_apostrophes_and_unicode_pass_through(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Apostrophes, accents and non-Latin text in names and companies come out exactly as they went in."""
    build(raw_warehouse, settings, [lead("obrien@example.com", first_name="Siobhán", last_name="O'Brien",
                                         company_name="Zoë's Café 東京 \"Quotes\" \\ back")])
    row = ready(raw_warehouse)["obrien@example.com"]
    assert (row["first_name"], row["last_name"]) == ("Siobhán", "O'Brien")
    assert row["company_name"] == "Zoë's Café 東京 \"Quotes\" \\ back"


@pytest.mark.parametrize("bad", ["", "   ", None, "no-at-sign.example.com", "two@@example.com",
                                 "trailing@example.com.", "dots..in@example.com", "x@nodot", "jos\u00e9@example.com",
                                 "'; DROP TABLE config; --@example.com"])
def test_bad_emails_are_excluded(raw_warehouse: Warehouse, settings: Settings, bad: str | None) -> None:
    """Empty, whitespace, malformed, non-ASCII and SQL-looking emails never become ready rows."""
    build(raw_warehouse, settings, [lead(bad), lead("good@example.com")])
    assert list(ready(raw_warehouse)) == ["good@example.com"]
    assert read_config(raw_warehouse)["cooldown_days"] == 90


def test_managed_leads_are_excluded_in_any_campaign(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A lead pending, active or draining in any campaign is not ready."""
    build(raw_warehouse, settings, [lead(f"{s}@example.com") for s in ("pending", "active", "draining", "free")])
    for status in ("pending", "active", "draining"):
        add_state(raw_warehouse, f"{status}@example.com", status, campaign_id=f"campaign-{status}")
    assert list(ready(raw_warehouse)) == ["free@example.com"]


def test_priority_order_is_new_leads_first_then_revenue(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Priority inside each route: never-contacted first, then higher revenue (unknown last), then email; from 1."""
    build(raw_warehouse, settings, [
        lead("b@example.com", Decimal(100)), lead("a@example.com", Decimal(100)),
        lead("rich@example.com", Decimal(9_000_000)), lead("old@example.com", Decimal(50_000_000)),
        lead("unknown@example.com", None),
    ])
    add_history(raw_warehouse, "old@example.com", T0 - dt.timedelta(days=200))
    rows = ready(raw_warehouse)
    by_route = {route: sorted(((r["priority"], email) for email, r in rows.items() if r["sequence_target"] == route))
                for route in ("SMB", "Midsize")}
    assert by_route == {"SMB": [(1, "a@example.com"), (2, "b@example.com"), (3, "unknown@example.com")],
                        "Midsize": [(1, "rich@example.com"), (2, "old@example.com")]}


def test_source_rejects_record_every_skipped_row_with_its_reason(raw_warehouse: Warehouse,
                                                                 settings: Settings) -> None:
    """v_source_rejects lists each source row the candidates skip, with why, from the same validity rule;
    a row with a negative revenue is kept (as unknown, SMB) and listed as not skipped."""
    from coldsync.warehouse.schema import REJECT_DUPLICATE, REJECT_REVENUE

    build(raw_warehouse, settings, [
        lead(None), lead("   "), lead("a" * 250 + "@long.example"), lead("jos\u00e9@example.com"),
        lead("two@@example.com"), lead("Dup@Example.com", Decimal(5)), lead("dup@example.com", Decimal(9)),
        lead("neg@example.com", Decimal(-5)), lead("good@example.com"),
    ])
    rows = raw_warehouse.query("SELECT email, reason, skipped FROM `{ds}.v_source_rejects`", label="test")
    found = sorted((str(r["email"]), str(r["reason"]), bool(r["skipped"])) for r in rows)
    assert found == sorted([
        ("None", "email missing (NULL)", True), ("   ", "email empty or blank", True),
        ("a" * 250 + "@long.example", "email longer than 254 characters", True),
        ("jos\u00e9@example.com", "email not ASCII (internationalized addresses are not sent)", True),
        ("two@@example.com", "email malformed", True), ("Dup@Example.com", REJECT_DUPLICATE, True),
        ("neg@example.com", REJECT_REVENUE, False),
    ])
    assert sorted(ready(raw_warehouse)) == ["dup@example.com", "good@example.com", "neg@example.com"]


def test_a_www_domain_entry_blocks_the_company_at_either_host(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A domain entry 'www.wwwblk.example' (stored as wwwblk.example) blocks leads at www.wwwblk.example and at
    wwwblk.example, and not a lead at another sub-domain; 'www.example' stays a domain of its own."""
    build(raw_warehouse, settings, [lead("z@www.wwwblk.example"), lead("y@wwwblk.example"),
                                    lead("x@eu.wwwblk.example"), lead("w@www.example"), lead("v@example.example")])
    add_dnc(raw_warehouse, domain="www.wwwblk.example")
    add_dnc(raw_warehouse, domain="www.example")
    assert sorted(ready(raw_warehouse)) == ["v@example.example", "x@eu.wwwblk.example"]
