"""The ready read (coldsync.store.read_ready_sql): each route's top-n by priority and every route's counts, in one
pass with a bounded top-n per route (no window, no sort of every ready lead)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from coldsync.routes import Arm, Route, Routing
from coldsync.settings import Settings
from coldsync.store import Store, read_ready_sql
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.demo_data import CLEAR_SOURCE_SQL
from coldsync.warehouse.schema import (
    CANDIDATE_ROW_COLUMNS,
    CANDIDATES_REFRESH_KEY,
    PRIORITY_ORDER,
    candidate_ctes,
    routed_cte,
)
from tests.helpers import T0, add_sources, build, lead

# Three routes by country and a score that is NULL when the revenue is: ties on score, NULL scores, an
# unrouted country ('Z').
THREE = Routing(
    routes=tuple(Route(name, f"country = '{name}'", (Arm(name, f"c-{name.lower()}", 100),)) for name in "ABC"),
    score="annual_revenue", origin="test", is_default=False)

SOURCES = [
    lead("a1@example.com", Decimal(300), country="A"), lead("a2@example.com", Decimal(300), country="A"),
    lead("a3@example.com", Decimal(500), country="A"), lead("a4@example.com", None, country="A"),
    lead("a0@example.com", None, country="A"),
    lead("b1@example.com", Decimal(100), country="B"), lead("b2@example.com", None, country="B"),
    lead("c1@example.com", Decimal(50), country="C"), lead("c2@example.com", Decimal(60), country="C"),
    lead("z1@example.com", Decimal(10), country="Z"),
]


def test_each_route_gets_its_top_n_and_every_route_its_counts(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A ties on score (300) broken by email, NULL scores last; B asks for more than it has; C asks for 0 and
    the unrouted leads are counted only."""
    build(raw_warehouse, settings, SOURCES)
    store = Store(raw_warehouse, "t", T0, routing=THREE)
    rows = store.read_ready({"A": 3, "B": 5, "C": 0})
    assert [(r["email"], r["sequence_target"], r["route_rank"]) for r in rows] == [
        ("a3@example.com", "A", 1), ("a1@example.com", "A", 2), ("a2@example.com", "A", 3),
        ("b1@example.com", "B", 1), ("b2@example.com", "B", 2)]
    assert rows[0]["first_name"] == "Ana" and rows[0]["attempt_num"] == 1  # the full candidate row
    view_row = raw_warehouse.query("SELECT * FROM `{ds}.v_lead_candidates`", label="t")[0]
    assert set(view_row) == set(CANDIDATE_ROW_COLUMNS)  # the one column list is the candidates' own
    assert set(rows[0]) == {*CANDIDATE_ROW_COLUMNS, "score", "sequence_target", "route_rank"}
    assert store.ready_seen == ({"A": 5, "B": 2, "C": 2, None: 1}, 3)
    assert store.ready_counts() == store.ready_seen


def test_the_null_scores_come_last_in_email_order(raw_warehouse: Warehouse, settings: Settings) -> None:
    """With room for all of A, its two NULL-score leads follow the scored ones, a0 before a4."""
    build(raw_warehouse, settings, SOURCES)
    rows = Store(raw_warehouse, "t", T0, routing=THREE).read_ready({"A": 10})
    assert [r["email"] for r in rows] == ["a3@example.com", "a1@example.com", "a2@example.com",
                                          "a0@example.com", "a4@example.com"]


def test_most_must_be_a_positive_int() -> None:
    """`most` is formatted into the SQL (BigQuery takes only a constant LIMIT there): anything but an int >= 1 is
    refused before any SQL is made."""
    for bad in (0, -1, "1", True, 2.0):
        with pytest.raises(ValueError, match="most must be an int >= 1"):
            read_ready_sql(THREE, None, most=bad)  # type: ignore[arg-type]
    assert "LIMIT 7)" in read_ready_sql(THREE, None, most=7)


def test_the_duckdb_plan_keeps_a_bounded_top_n_and_sorts_nothing(tmp_path: Any, settings: Settings) -> None:
    """On DuckDB the pick is min_by(..., n) inside the one GROUP BY (a heap of n per route): the plan has no
    window and no sort operator over the ready leads."""
    from coldsync.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(tmp_path / "plan.duckdb", "coldsync")
    try:
        build(warehouse, settings, SOURCES)
        store = Store(warehouse, "t", T0, routing=THREE)
        sql = read_ready_sql(THREE, store.outcomes, most=3)
        rendered = warehouse.render(sql)
        assert "MIN_BY(" in rendered and "ARRAY_AGG" not in rendered.upper().replace("ARRAY_AGG(D.", "")
        explained = warehouse._con.execute("EXPLAIN " + rendered, store._rules(sql)).fetchall()
        plan = "\n".join(str(row[1]) for row in explained)
        assert "WINDOW" not in plan and "ORDER_BY" not in plan and "TOP_N" not in plan, plan
        assert "min_by" in plan.lower(), plan
    finally:
        warehouse.close()


# The form before (a window over every ready lead), kept as the oracle of the property test.
def _window_form(routing: Routing) -> str:
    return f"""
WITH {candidate_ctes(routing.source_columns)},
{routed_cte(routing, source="candidates", as_of="@as_of", threshold="@smb_threshold", outcomes=None)},
ranked AS (
  SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.sequence_target ORDER BY {PRIORITY_ORDER}) AS route_rank,
         COUNT(*) OVER (PARTITION BY r.sequence_target) AS route_ready,
         SUM(IF(r.score IS NULL, 1, 0)) OVER (PARTITION BY r.sequence_target) AS route_unscored
  FROM routed AS r
)
SELECT k.*, (k.sequence_target IS NOT NULL AND k.route_rank <= COALESCE(l.n, 0)) AS taken
FROM ranked AS k
LEFT JOIN UNNEST(@limits) AS l ON l.route = k.sequence_target
WHERE k.route_rank <= GREATEST(COALESCE(l.n, 0), 1)
ORDER BY k.sequence_target, k.route_rank
"""  # noqa: S608


def _oracle(warehouse: Warehouse, store: Store, limits: dict[str, int]
            ) -> tuple[list[tuple[Any, ...]], dict[str | None, int], int]:
    sql = _window_form(store.routing)
    wanted = [{"route": k, "n": v} for k, v in limits.items() if v > 0]
    rows = warehouse.query(sql, {"limits": Rows((("route", "STRING"), ("n", "INT64")), wanted),
                                 **store._rules(sql)}, label="t")
    counts = {r["sequence_target"]: int(r["route_ready"]) for r in rows}
    unscored = sum(int(r["route_unscored"]) for r in {r["sequence_target"]: r for r in rows}.values())
    taken = [(r["email"], r["sequence_target"], r["route_rank"], r["score"]) for r in rows if r["taken"]]
    return taken, counts, unscored


_EMAILS = [f"{name}@example.com" for name in ("ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo")]


def test_the_bounded_form_returns_what_the_window_form_did(raw_warehouse: Warehouse, settings: Settings) -> None:
    """On random small sources (duplicates, ties, NULL scores, unrouted leads) and limits, the same picked rows
    in the same order and the same counts as the window over every ready lead, on both engines, read from the
    live source and from ops_candidates (the sync's read: the chosen rows joined back from the table)."""
    warehouse = raw_warehouse
    build(warehouse, settings)
    store = Store(warehouse, "t", T0, routing=THREE)
    examples = 40 if warehouse.engine == "duckdb" else 12  # the emulator takes ~1 s a statement

    @hypothesis_settings(max_examples=examples, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(_EMAILS), st.sampled_from("ABCZ"),
                              st.one_of(st.none(), st.integers(0, 3).map(Decimal))), max_size=12),
           st.fixed_dictionaries({name: st.integers(0, 4) for name in "ABC"}), st.booleans())
    def same_as_the_window(source: list[tuple[str, str, Decimal | None]], limits: dict[str, int],
                           stored: bool) -> None:
        warehouse.execute(CLEAR_SOURCE_SQL, label="t")
        if source:
            add_sources(warehouse, [lead(email, revenue, country=country) for email, country, revenue in source])
        if stored:  # refreshed whatever the signal says (the emulator's table metadata may not move on DML)
            warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": CANDIDATES_REFRESH_KEY}, label="t")
            store.candidates_known = False
            assert store.refresh_candidates().refreshed
        rows = store.read_ready(limits, stored=stored)
        if not any(limits.values()):
            assert rows == [] and store.ready_seen is None
            return
        taken, counts, unscored = _oracle(warehouse, store, limits)
        assert [(r["email"], r["sequence_target"], r["route_rank"], r["score"]) for r in rows] == taken
        assert store.ready_seen == (counts, unscored)
        assert all(set(r) == {*CANDIDATE_ROW_COLUMNS, "score", "sequence_target", "route_rank"} for r in rows)

    same_as_the_window()
