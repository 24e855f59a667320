"""ops_candidates: the source after rules 1-2, refreshed from one read of the source when it changed (a MERGE
that touches only what differs), read by the sync in place of the source, with the same rows v_lead_candidates
lists and the same reject counts v_source_rejects gives."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coldsync.store import Store
from coldsync.warehouse.base import Warehouse, WarehouseWrapper
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.schema import CANDIDATE_COLUMNS, CANDIDATES_REFRESH_KEY, REJECT_DUPLICATE, candidate_ctes
from tests.conftest import make_settings
from tests.helpers import GMAIL, GOOGLEMAIL_CASED, add_dnc, add_history, add_sources, add_state, build, lead

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MALFORMED = "email malformed"
CAMPAIGN = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"  # an example id, as in the README


def store_of(warehouse: Warehouse, tmp_path: Path, **env: str) -> Store:
    return Store.for_settings(warehouse, "t", NOW, make_settings(tmp_path, **env))


def table(warehouse: Warehouse) -> dict[str, tuple[str, Any, str]]:
    """ops_candidates as email_key -> (email, annual_revenue, email_domain_key)."""
    rows = warehouse.query("SELECT email_key, email, annual_revenue, email_domain_key FROM `{ds}.ops_candidates`",
                           label="test.candidates")
    return {str(r["email_key"]): (str(r["email"]), r["annual_revenue"], str(r["email_domain_key"])) for r in rows}


def view_rejects(warehouse: Warehouse) -> dict[str, int]:
    rows = warehouse.query("SELECT reason, COUNT(*) AS n FROM `{ds}.v_source_rejects` GROUP BY reason", label="test")
    return {str(r["reason"]): int(r["n"]) for r in rows}


def source_changed(warehouse: Warehouse) -> None:
    """What a moved change signal does, on the BigQuery emulator too: it keeps a table's numRows and
    lastModifiedTime fixed after creation (docs/BIGQUERY_EMULATOR.md), so there the record of the last refresh
    is forgotten instead. DuckDB's signal (row count and row hashes) moves by itself."""
    if warehouse.engine == "bigquery":
        warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": CANDIDATES_REFRESH_KEY}, label="t")


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        yield warehouse
    finally:
        warehouse.close()


def test_an_edited_source_is_in_the_table_after_the_next_refresh(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """Six rows, five persons (dan twice: 20 beats 10) and one malformed: the table holds the five winners and
    the counts say 1 malformed, 1 duplicate. Then ann's revenue changes, fay is added, cat is deleted, dan's
    other row now wins (30), eve's address is made invalid: the next refresh MERGEs exactly those 5 changes
    (bob untouched) and counts 2 malformed, 1 duplicate, as v_source_rejects does; a third call reads nothing."""
    warehouse = raw_warehouse
    build(warehouse, make_settings(tmp_path), [
        lead("ann@one.example", Decimal(500_000)), lead("bob@two.example", Decimal(2_000_000)),
        lead("cat@three.example", Decimal(100)), lead("dan@four.example", Decimal(10)),
        lead("DAN+promo@four.example", Decimal(20)), lead("eve@five.example", Decimal(300)), lead("bad")])
    store = store_of(warehouse, tmp_path)
    first = store.refresh_candidates()
    assert (first.refreshed, first.stored, first.rejects) == (True, True, {MALFORMED: 1, REJECT_DUPLICATE: 1})
    assert first.rejects == view_rejects(warehouse)
    assert table(warehouse) == {
        "ann@one.example": ("ann@one.example", 500_000, "one.example"),
        "bob@two.example": ("bob@two.example", 2_000_000, "two.example"),
        "cat@three.example": ("cat@three.example", 100, "three.example"),
        "dan@four.example": ("dan+promo@four.example", 20, "four.example"),
        "eve@five.example": ("eve@five.example", 300, "five.example")}

    for sql in ("UPDATE `{source}` SET annual_revenue = 750000 WHERE email = 'ann@one.example'",
                "DELETE FROM `{source}` WHERE email = 'cat@three.example'",
                "UPDATE `{source}` SET annual_revenue = 30 WHERE email = 'dan@four.example'",
                "UPDATE `{source}` SET email = 'eve@@five.example' WHERE email = 'eve@five.example'"):
        warehouse.execute(sql, label="test.edit")
    add_sources(warehouse, [lead("fay@six.example", Decimal(40))])
    source_changed(warehouse)
    second = store_of(warehouse, tmp_path).refresh_candidates()
    assert (second.refreshed, second.changed) == (True, 5)
    assert second.rejects == {MALFORMED: 2, REJECT_DUPLICATE: 1} == view_rejects(warehouse)
    assert table(warehouse) == {
        "ann@one.example": ("ann@one.example", 750_000, "one.example"),
        "bob@two.example": ("bob@two.example", 2_000_000, "two.example"),
        "dan@four.example": ("dan@four.example", 30, "four.example"),
        "fay@six.example": ("fay@six.example", 40, "six.example")}
    before = warehouse.stats.by_label.copy()
    third = store_of(warehouse, tmp_path).refresh_candidates()
    assert (third.refreshed, third.rejects) == (False, second.rejects)
    assert [k for k in warehouse.stats.by_label - before if k.startswith("candidates.") and k != "candidates.memory"
            ] == ["candidates.count"]  # the table still holds what was recorded: no source read


def test_the_sync_reads_the_rows_v_lead_candidates_lists_on_messy_input(duck: DuckDBWarehouse,
                                                                         tmp_path: Path) -> None:
    """CRLF and spaces around an address, a +tag variant, Gmail dots under the googlemail alias, a domain and an
    email on the do-not-contact list, a managed lead, a history row: the candidates read from ops_candidates
    are row for row those v_lead_candidates reads from the source: ann (her +tag row, 200 beats 100), jdoe (the
    dotless googlemail row: a revenue beats none) and max (attempt 2, after his history row)."""
    build(duck, make_settings(tmp_path), [
        lead(" Ann@One.example\r\n", Decimal(100)), lead("ann+news@one.example", Decimal(200)),
        lead(f"J.Doe@{GMAIL}", None), lead(f"jdoe@{GOOGLEMAIL_CASED}", Decimal(5)),
        lead("x@blocked.example"), lead("Kim@Corp.example"), lead("lee@corp.example"), lead("max@corp.example"),
        lead("not-an-email")])
    add_dnc(duck, domain="blocked.example")
    add_dnc(duck, email="kim@corp.example")
    add_state(duck, "lee@corp.example", "active")
    add_history(duck, "max@corp.example", NOW - dt.timedelta(days=400))
    assert store_of(duck, tmp_path).refresh_candidates().refreshed

    def rows(sql: str) -> list[dict[str, Any]]:
        return sorted(duck.query(sql, label="test"), key=lambda r: str(r["email_key"]))

    stored = rows(f"WITH {candidate_ctes(stored=True)}\nSELECT * FROM candidates")
    assert stored == rows("SELECT * FROM `{ds}.v_lead_candidates`")
    assert [(r["email"], r["attempt_num"]) for r in stored] == [
        ("ann+news@one.example", 1), (f"jdoe@{GOOGLEMAIL_CASED.lower()}", 1), ("max@corp.example", 2)]


def test_another_source_table_refreshes_and_extra_columns_rebuild(tmp_path: Path) -> None:
    """SOURCE_TABLE pointed at another table with the same rows reads it (the fingerprint names the table); a
    routing that declares `employees` rebuilds the table with that column (12 and 250 as the source gives
    them); the routing without it rebuilds it back to the eleven columns."""
    path = tmp_path / "wh.duckdb"
    warehouse = DuckDBWarehouse(path, "coldsync")
    build(warehouse, make_settings(tmp_path), [lead("small@one.example"), lead("large@two.example")])
    warehouse.execute("CREATE TABLE `{ds}.other_leads` AS SELECT * FROM `{ds}.source_leads`", label="t")
    warehouse.execute("CREATE VIEW `{ds}.with_size` AS SELECT s.*, CASE WHEN s.email LIKE 'large%' THEN 250 "
                      "ELSE 12 END AS employees FROM `{ds}.source_leads` AS s", label="t")
    assert store_of(warehouse, tmp_path).refresh_candidates().changed == 2
    warehouse.close()
    moved = DuckDBWarehouse(path, "coldsync", "other_leads")
    try:
        assert store_of(moved, tmp_path, source_table="other_leads").refresh_candidates().refreshed
        assert store_of(moved, tmp_path, source_table="other_leads").refresh_candidates().refreshed is False
    finally:
        moved.close()
    sized = DuckDBWarehouse(path, "coldsync", "with_size")
    try:
        routes = json.dumps({"source_columns": ["employees"], "routes": [{"name": "Rest", "campaign_id": CAMPAIGN}]})
        wide = store_of(sized, tmp_path, source_table="with_size", routes=routes).refresh_candidates()
        assert (wide.refreshed, wide.changed, sized.stats.by_label["candidates.rebuild"]) == (True, None, 1)
        found = sized.query("SELECT email, employees FROM `{ds}.ops_candidates` ORDER BY email", label="t")
        assert found == [{"email": "large@two.example", "employees": 250}, {"email": "small@one.example",
                                                                              "employees": 12}]
        narrow = store_of(sized, tmp_path, source_table="with_size").refresh_candidates()
        assert (narrow.changed, sized.stats.by_label["candidates.rebuild"]) == (None, 2)
        assert list(sized.existing_columns("ops_candidates") or {}) == list(CANDIDATE_COLUMNS)
    finally:
        sized.close()


def test_a_dry_run_leaves_a_stale_table_and_reads_the_live_source(duck: DuckDBWarehouse, tmp_path: Path) -> None:
    """Never refreshed: a dry run writes nothing (ops_candidates stays empty, no config row) and says the ready
    read must take the live source (stored False), with v_source_rejects' counts (1 malformed)."""
    build(duck, make_settings(tmp_path), [lead("ann@one.example"), lead("bad")])
    writes = duck.stats.writes
    dry = store_of(duck, tmp_path).refresh_candidates(dry_run=True)
    assert (dry.refreshed, dry.stored, dry.rejects) == (False, False, {MALFORMED: 1})
    assert duck.stats.writes == writes and table(duck) == {}
    assert duck.query("SELECT COUNT(*) AS n FROM `{ds}.config` WHERE key = @k", {"k": CANDIDATES_REFRESH_KEY},
                      label="t") == [{"n": 0}]


class NoSignal(WarehouseWrapper):
    """A source with no change signal (as a BigQuery view is): the engine's table_signal gives None."""

    def table_signal(self) -> None:
        return None


def test_without_a_change_signal_every_refresh_reads_the_source(duck: DuckDBWarehouse, tmp_path: Path) -> None:
    """No signal and no SOURCE_UPDATED_AT_COLUMN: two refreshes of an unchanged source both read it (one
    staging statement each), the second changing no row."""
    build(duck, make_settings(tmp_path), [lead("ann@one.example")])
    wrapped = NoSignal(duck)
    first = store_of(wrapped, tmp_path).refresh_candidates()
    second = store_of(wrapped, tmp_path).refresh_candidates()
    assert (first.signal, first.changed, second.refreshed, second.changed) == (None, 1, True, 0)
    assert duck.stats.by_label["candidates.stage"] == 2


def test_an_extra_column_whose_type_changed_rebuilds_the_table(tmp_path: Path) -> None:
    """`employees` was a number (12) and becomes text ('a dozen') under the same routing: the MERGE cannot
    store it in the number column, so the refresh rebuilds the table (a second rebuild: the first made the
    column) instead of failing every run."""
    routes = json.dumps({"source_columns": ["employees"], "routes": [{"name": "Rest", "campaign_id": CAMPAIGN}]})
    env = {"source_table": "sized", "routes": routes}
    plain = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(plain, make_settings(tmp_path), [lead("ann@one.example")])
    plain.execute("CREATE VIEW `{ds}.sized` AS SELECT s.*, 12 AS employees FROM `{ds}.source_leads` AS s", label="t")
    plain.close()
    sized = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", "sized")
    try:
        assert store_of(sized, tmp_path, **env).refresh_candidates().refreshed
        sized.execute("CREATE OR REPLACE VIEW `{ds}.sized` AS SELECT s.*, 'a dozen' AS employees "
                      "FROM `{ds}.source_leads` AS s", label="t")
        again = store_of(sized, tmp_path, **env).refresh_candidates()
        assert (again.refreshed, again.changed, sized.stats.by_label["candidates.rebuild"]) == (True, None, 2)
        assert sized.stats.by_label["candidates.merge"] == 1
        assert sized.query("SELECT employees FROM `{ds}.ops_candidates`", label="t") == [{"employees": "a dozen"}]
    finally:
        sized.close()


def test_a_table_dropped_or_emptied_by_hand_is_rebuilt_not_read_as_empty(raw_warehouse: Warehouse,
                                                                          tmp_path: Path) -> None:
    """With the source unchanged: ops_candidates emptied by hand (DELETE), then dropped (as a restore or a table
    expiry would), each time the next refresh reads the source again and the table holds its 2 persons; a refresh
    after that, with the count as recorded, reads nothing."""
    warehouse = raw_warehouse
    build(warehouse, make_settings(tmp_path), [lead("ann@one.example", Decimal(5)), lead("bob@two.example", None)])
    store = store_of(warehouse, tmp_path)
    assert store.refresh_candidates().refreshed and len(table(warehouse)) == 2
    warehouse.execute("DELETE FROM `{ds}.ops_candidates` WHERE TRUE", label="test.empty")
    again = store_of(warehouse, tmp_path).refresh_candidates()
    assert again.refreshed and sorted(v[0] for v in table(warehouse).values()) == ["ann@one.example",
                                                                                  "bob@two.example"]
    warehouse.execute("DROP TABLE `{ds}.ops_candidates`", label="test.drop")
    dropped = store_of(warehouse, tmp_path).refresh_candidates()
    assert dropped.refreshed and len(table(warehouse)) == 2
    assert not store_of(warehouse, tmp_path).refresh_candidates().refreshed
    rows = store_of(warehouse, tmp_path).read_ready({"SMB": 5, "Midsize": 5}, stored=True)
    assert sorted(r["email"] for r in rows) == ["ann@one.example", "bob@two.example"]


def test_duckdb_takes_a_declared_updated_at_column_over_hashing_every_row(duck: DuckDBWarehouse, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With SOURCE_UPDATED_AT_COLUMN declared, DuckDB's signal is the row count and that column's newest value (one
    column read), never its own hash of every row; a newer updated_at refreshes, an unchanged one does not."""
    build(duck, make_settings(tmp_path), [lead("ann@one.example", Decimal(5))])
    duck.execute("ALTER TABLE `{source}` ADD COLUMN updated_at TIMESTAMP", label="test")
    duck.execute("UPDATE `{source}` SET updated_at = TIMESTAMP '2026-01-01 00:00:00+00' WHERE TRUE", label="test")
    def hashing(self: DuckDBWarehouse) -> str:
        pytest.fail("hashed every source row")

    hashing.reads_rows = True  # type: ignore[attr-defined]  # as DuckDBWarehouse.table_signal says of itself
    assert getattr(DuckDBWarehouse.table_signal, "reads_rows", False)
    monkeypatch.setattr(DuckDBWarehouse, "table_signal", hashing)
    store = store_of(duck, tmp_path, source_updated_at_column="updated_at")
    first = store.refresh_candidates()
    assert first.refreshed and first.signal is not None and "newest 2026-01-01" in first.signal
    assert not store_of(duck, tmp_path, source_updated_at_column="updated_at").refresh_candidates().refreshed
    duck.execute("UPDATE `{source}` SET annual_revenue = 7, updated_at = TIMESTAMP '2026-01-02 00:00:00+00' "
                 "WHERE TRUE", label="test")
    assert store_of(duck, tmp_path, source_updated_at_column="updated_at").refresh_candidates().refreshed
    assert [v[1] for v in table(duck).values()] == [7]
