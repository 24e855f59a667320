"""The warehouse contract: the same cases on DuckDB and on BigQuery (through the local emulator).

Building the schema on the emulator takes most of a BigQuery case's time, so the BigQuery lane builds
it once per module (per xdist worker) and shares it between the tests that cannot disturb each other
(`World`, below); the cases of a parametrized test run there all at once, in one test, each with its
own address and its own expected result. DuckDB keeps one fresh warehouse per case. Tests that change
the config table or rank the whole view keep a warehouse of their own on both engines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coldsync.settings import Settings
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.migrate import read_config
from tests.conftest import make_settings, open_warehouse
from tests.helpers import (
    T0,
    add_dnc,
    add_history,
    add_sources,
    add_state,
    build,
    delete_config,
    lead,
    ready,
    set_config,
)

# ---- worlds: a built warehouse of a test's own, or the module's shared BigQuery one ------------------

def _domain_of(email: str) -> str:
    return email.strip().lower().rsplit("@", 1)[-1]


def _covers(entry: str, domain: str) -> bool:
    """Could a DNC domain entry block leads at `domain`? (Generous on purpose: sub-domains and www.)"""
    return domain == entry or domain.endswith("." + entry) or entry.endswith("." + domain)


@dataclass
class Shared:
    """The module's BigQuery warehouse, built once; which test (tag) uses which address and DNC domain."""

    warehouse: Warehouse
    emails: dict[str, str] = field(default_factory=dict)
    dnc_domains: list[tuple[str, str]] = field(default_factory=list)

    def claim_email(self, email: str, tag: str) -> None:
        """Each address (as its lead or a DNC email entry) belongs to one test, whatever order they run in."""
        key = email.strip().lower()
        owner = self.emails.setdefault(key, tag)
        assert owner == tag, f"{email!r} is used by {owner} too: tests sharing the warehouse need their own"
        for entry, other in self.dnc_domains:
            assert other == tag or not _covers(entry, _domain_of(key)), f"{email!r}: {other} blocks {entry!r}"

    def claim_domain(self, domain: str, tag: str) -> None:
        entry = domain.strip().strip("@.").lower()
        for email, other in self.emails.items():
            assert other == tag or not _covers(entry, _domain_of(email)), f"{domain!r} would block {other}'s {email}"
        self.dnc_domains.append((entry, tag))


@dataclass
class World:
    """A built warehouse (schema, empty source table, view clock at T0) for one test. On its own (`shared`
    None) the test sees the whole warehouse. In the shared one, the test's source rows carry its `tag` in
    `location` (a column no rule reads) and it reads back only the rows with that tag: the other tests'
    rows, at other addresses, neither appear nor change its result."""

    warehouse: Warehouse
    tag: str = ""
    shared: Shared | None = None

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.shared is not None:
            for row in rows:
                if row["email"] is not None:
                    self.shared.claim_email(str(row["email"]), self.tag)
            rows = [{**row, "location": self.tag} for row in rows]
        add_sources(self.warehouse, rows)

    def dnc(self, email: str | None = None, domain: str | None = None) -> None:
        if self.shared is not None and email is not None:
            self.shared.claim_email(email, self.tag)
        if self.shared is not None and domain is not None:
            self.shared.claim_domain(domain, self.tag)
        add_dnc(self.warehouse, email=email, domain=domain)

    def ready(self) -> dict[str, dict[str, Any]]:
        rows = ready(self.warehouse)
        if self.shared is None:
            return rows
        return {email: row for email, row in rows.items() if row["location"] == self.tag}


@pytest.fixture(scope="module")
def shared_bigquery(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One built BigQuery warehouse for this module's shared tests (each xdist worker builds its own)."""
    folder = tmp_path_factory.mktemp("contract-shared")
    warehouse = open_warehouse("bigquery", folder, request)
    try:
        build(warehouse, make_settings(folder))
        yield Shared(warehouse)
    finally:
        warehouse.close()


def _own_duckdb(tmp_path: Path, settings: Settings, request: pytest.FixtureRequest) -> Iterator[World]:
    warehouse = open_warehouse("duckdb", tmp_path, request)
    try:
        build(warehouse, settings)
        yield World(warehouse)
    finally:
        warehouse.close()


@pytest.fixture(params=["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def world(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Iterator[World]:
    """A fresh DuckDB warehouse of the test's own, or the shared BigQuery one under the test's tag."""
    if request.param == "bigquery":
        shared: Shared = request.getfixturevalue("shared_bigquery")
        yield World(shared.warehouse, tag=request.node.name, shared=shared)
        return
    yield from _own_duckdb(tmp_path, settings, request)


@pytest.fixture
def duckdb_world(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Iterator[World]:
    """A fresh DuckDB warehouse for one case of a parametrized test (BigQuery runs them all at once)."""
    yield from _own_duckdb(tmp_path, settings, request)


# ---- the cases ----------------------------------------------------------------------------------------

def test_case_variant_duplicates_collapse_to_one_deterministic_row(world: World) -> None:
    """Case and whitespace variants of one email give one ready row: the highest-revenue source row."""
    world.add([
        lead("Dup@Example.com", Decimal(10), first_name="Low"),
        lead("  dup@example.com ", Decimal(5_000_000), first_name="High"),
        lead("DUP@EXAMPLE.COM", None, first_name="Unknown"),
    ])
    rows = world.ready()
    assert list(rows) == ["dup@example.com"]
    assert rows["dup@example.com"]["first_name"] == "High"
    assert rows["dup@example.com"]["sequence_target"] == "Midsize"


def test_dnc_by_email_excludes_case_insensitively_after_trimming(world: World) -> None:
    """A DNC email entry, in any case and with spaces around it, excludes that address only."""
    world.add([lead("keep@example.com"), lead("Gone@Example.com")])
    world.dnc(email="  GONE@example.COM ")
    assert list(world.ready()) == ["keep@example.com"]


def test_dnc_by_domain_excludes_the_whole_domain(world: World) -> None:
    """A DNC domain entry (even written '@Blocked.Example.') excludes every address at that domain only."""
    world.add([lead("a@blocked.example"), lead("b@blocked.example"),
               lead("c@sub.blocked.example"), lead("d@open.example")])
    world.dnc(domain="@Blocked.Example.")
    assert sorted(world.ready()) == ["c@sub.blocked.example", "d@open.example"]


COOLDOWN_CASES = [(89, False), (90, True), (91, True)]  # (days since the last sequence ended, eligible)


@pytest.mark.parametrize(("days_ago", "eligible"), COOLDOWN_CASES)
def test_cooldown_boundary(duckdb_world: World, days_ago: int, eligible: bool) -> None:
    """A lead whose last sequence ended exactly 90 days ago is eligible again; 89 days ago it is not."""
    duckdb_world.add([lead("cool@example.com")])
    add_history(duckdb_world.warehouse, "cool@example.com", T0 - dt.timedelta(days=days_ago))
    rows = duckdb_world.ready()
    assert ("cool@example.com" in rows) is eligible
    if eligible:
        assert rows["cool@example.com"]["attempt_num"] == 2


def test_cooldown_boundary_every_case_in_one_warehouse(world: World) -> None:
    """The cooldown cases side by side: ended 89 days ago not eligible; exactly 90 and 91 eligible, attempt 2."""
    emails = {days_ago: f"cool{days_ago}@example.com" for days_ago, _eligible in COOLDOWN_CASES}
    world.add([lead(email) for email in emails.values()])
    for days_ago, email in emails.items():
        add_history(world.warehouse, email, T0 - dt.timedelta(days=days_ago))
    rows = world.ready()
    assert {days_ago: emails[days_ago] in rows for days_ago in emails} == {89: False, 90: True, 91: True}
    assert {email: row["attempt_num"] for email, row in rows.items()} == {"cool90@example.com": 2,
                                                                          "cool91@example.com": 2}


def test_cooldown_uses_the_latest_history_row(world: World) -> None:
    """An old attempt does not release a lead whose latest attempt ended inside the cooldown."""
    world.add([lead("twice@example.com")])
    add_history(world.warehouse, "twice@example.com", T0 - dt.timedelta(days=400), attempt=1)
    add_history(world.warehouse, "twice@example.com", T0 - dt.timedelta(days=10), attempt=2)
    assert world.ready() == {}


SEGMENT_CASES = [(Decimal(999_999), "SMB"), (Decimal(1_000_000), "Midsize"), (None, "SMB"), (Decimal(-5), "SMB")]


@pytest.mark.parametrize(("revenue", "segment"), SEGMENT_CASES)
def test_segment_threshold(duckdb_world: World, revenue: Decimal | None, segment: str) -> None:
    """Revenue under 1,000,000 is SMB, exactly 1,000,000 is Midsize; unknown or negative revenue is SMB."""
    duckdb_world.add([lead("seg@example.com", revenue)])
    assert duckdb_world.ready()["seg@example.com"]["sequence_target"] == segment


def test_segment_threshold_every_case_in_one_warehouse(world: World) -> None:
    """The segment cases side by side: 999,999 SMB, exactly 1,000,000 Midsize, unknown SMB, negative SMB."""
    world.add([lead(f"seg{n}@example.com", revenue) for n, (revenue, _segment) in enumerate(SEGMENT_CASES)])
    found = {email: row["sequence_target"] for email, row in world.ready().items()}
    assert found == {"seg0@example.com": "SMB", "seg1@example.com": "Midsize", "seg2@example.com": "SMB",
                     "seg3@example.com": "SMB"}


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


def test_names_with_apostrophes_and_unicode_pass_through(world: World) -> None:
    """Apostrophes, accents and non-Latin text in names and companies come out exactly as they went in."""
    world.add([lead("obrien@example.com", first_name="Siobhán", last_name="O'Brien",
                    company_name="Zoë's Café 東京 \"Quotes\" \\ back")])
    row = world.ready()["obrien@example.com"]
    assert (row["first_name"], row["last_name"]) == ("Siobhán", "O'Brien")
    assert row["company_name"] == "Zoë's Café 東京 \"Quotes\" \\ back"


BAD_EMAILS = ["", "   ", None, "no-at-sign.example.com", "two@@example.com", "trailing@example.com.",
              "dots..in@example.com", "x@nodot", "jos\u00e9@example.com", "'; DROP TABLE config; --@example.com"]


@pytest.mark.parametrize("bad", BAD_EMAILS)
def test_bad_emails_are_excluded(duckdb_world: World, bad: str | None) -> None:
    """Empty, whitespace, malformed, non-ASCII and SQL-looking emails never become ready rows."""
    duckdb_world.add([lead(bad), lead("good@example.com")])
    assert list(duckdb_world.ready()) == ["good@example.com"]
    assert read_config(duckdb_world.warehouse)["cooldown_days"] == 90


def test_bad_emails_every_case_in_one_warehouse(world: World) -> None:
    """The bad-email cases side by side, each beside a good lead of its own: no bad one is ready, every good one is."""
    world.add([row for n, bad in enumerate(BAD_EMAILS) for row in (lead(bad), lead(f"good{n}@example.com"))])
    assert sorted(world.ready()) == [f"good{n}@example.com" for n in range(10)]
    assert read_config(world.warehouse)["cooldown_days"] == 90


def test_managed_leads_are_excluded_in_any_campaign(world: World) -> None:
    """A lead pending, active or draining in any campaign is not ready."""
    world.add([lead(f"{s}@example.com") for s in ("pending", "active", "draining", "free")])
    for status in ("pending", "active", "draining"):
        add_state(world.warehouse, f"{status}@example.com", status, campaign_id=f"campaign-{status}")
    assert list(world.ready()) == ["free@example.com"]


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


def test_a_www_domain_entry_blocks_the_company_at_either_host(world: World) -> None:
    """A domain entry 'www.wwwblk.example' (stored as wwwblk.example) blocks leads at www.wwwblk.example and at
    wwwblk.example, and not a lead at another sub-domain; 'www.example' stays a domain of its own."""
    world.add([lead("z@www.wwwblk.example"), lead("y@wwwblk.example"),
               lead("x@eu.wwwblk.example"), lead("w@www.example"), lead("v@example.example")])
    world.dnc(domain="www.wwwblk.example")
    world.dnc(domain="www.example")
    assert sorted(world.ready()) == ["v@example.example", "x@eu.wwwblk.example"]
