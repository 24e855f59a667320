"""The ready queue (schema.READY_QUEUE, Store.read_ready_queued): the sync's ready read through a few rows per route
returns exactly what the full read over ops_candidates returns (same leads, same order, per route), whatever
happened since the queue's build."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from coldsync.outcomes import OUTCOMES
from coldsync.routes import Arm, Route, Routing, RoutingError, load_routing
from coldsync.rules import GIVE_UP_OUTCOME
from coldsync.settings import Settings
from coldsync.store import Store, ranks_before
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.demo_data import CLEAR_SOURCE_SQL, HISTORY_FIELDS, INSERT_HISTORY_SQL
from coldsync.warehouse.schema import CANDIDATES_REFRESH_KEY, READY_QUEUE, READY_QUEUE_COLUMNS
from tests.helpers import T0, add_dnc, add_sources, add_state, build, lead

# Routes that read the history (a second attempt of an A lead goes to B) and a score that does (a contacted lead
# loses 10 points) and may be NULL (unknown revenue): a lead's rank and route move when it is drained.
ROUTING = Routing(
    routes=(Route("A", "country = 'A' AND attempt_num = 1", (Arm("A", "c-a", 100),)),
            Route("B", "country = 'B' OR (country = 'A' AND attempt_num > 1)", (Arm("B", "c-b", 100),)),
            Route("C", "country = 'C'", (Arm("C", "c-c", 100),))),
    score="annual_revenue - IF(last_completed_at IS NULL, 0, 10)", origin="test", is_default=False)
# The same routes with a score that reads when the last attempt ended (10 points off when it ended after
# RECENT, 150 days before T0): a date moved in a history row moves a rank.
RECENT = "2026-01-02 12:00:00+00"
DATED_ROUTING = Routing(routes=ROUTING.routes,
                        score=f"annual_revenue - IF(last_completed_at >= TIMESTAMP '{RECENT}', 10, 0)",
                        origin="test", is_default=False)

_EMAILS = [f"p{i}@example.com" for i in range(10)]
SMB, MIDSIZE = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6", "2f1d5b7a-3c4e-4f60-8a9b-0c1d2e3f4a5b"  # synthetic ids


def _source(i: int, country: str, revenue: int | None) -> dict[str, Any]:
    return lead(_EMAILS[i], None if revenue is None else Decimal(revenue), country=country)


def _add_history(warehouse: Warehouse, email: str, status: str, completed_at: dt.datetime,
                 reason: str = "test") -> None:
    row = {"email": email, "campaign_id": "c-a", "sequence_name": "A", "status_final": status,
           "completed_at": completed_at, "attempt_num": 1, "reason": reason}
    warehouse.execute(INSERT_HISTORY_SQL, {"rows": Rows(HISTORY_FIELDS, [row])}, label="test.history")


def _key(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["email"], r["sequence_target"], r["route_rank"], r["score"]) for r in rows]


def test_ranks_before_is_the_priority_order() -> None:
    """ranks_before is PRIORITY_ORDER: higher score first, a NULL score last, then email; never before itself."""
    assert ranks_before(5, "b", 4, "a") and not ranks_before(4, "a", 5, "b")
    assert ranks_before(5, "a", 5, "b") and not ranks_before(5, "b", 5, "b")
    assert ranks_before(1, "z", None, "a") and not ranks_before(None, "a", 1, "z")
    assert ranks_before(None, "a", None, "b") and not ranks_before(None, "b", None, "a")


_OPS = st.one_of(
    st.tuples(st.just("state"), st.integers(0, 5)),
    st.tuples(st.just("unstate"), st.integers(0, 5)),
    st.tuples(st.just("history"), st.integers(0, 5), st.sampled_from(OUTCOMES), st.integers(0, 200)),
    st.tuples(st.just("advance"), st.sampled_from([1, 8, 81, 91, 181])),
    st.tuples(st.just("dnc"), st.integers(0, 5)),
    st.tuples(st.just("undnc"), st.integers(0, 5)),
    st.tuples(st.just("source"), st.integers(0, 5), st.sampled_from("ABCZ"),
              st.one_of(st.none(), st.integers(0, 4).map(lambda n: n * 10))),
    st.tuples(st.just("keys")),  # the preflight's back-fill: DNC and history rows read by their stored keys
    # A history row edited in place (the n-th added): its address moved to another person, its date moved, or
    # its status changed.
    st.tuples(st.just("edit"), st.integers(0, 7), st.sampled_from(["email", "date", "status"]),
              st.integers(0, 5), st.integers(-200, 200), st.sampled_from(OUTCOMES)),
)
_READ = st.tuples(st.just("read"), st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))
_STEPS = st.one_of(_OPS, _READ, _READ)  # a read after most changes: the queue kept from one read to the next
# Edits random draws rarely make matter (an outside person must come to outrank a queued lead and the queue not run
# short), spelled out: route C with a queue of 1, p4 (45) in it, p5 (50, contacted: 40) its boundary, p3 (30); p5's
# row moved to p3, p5's date moved out of RECENT (the dated score), the statuses of p5's and p3's rows swapped.
_C = [(5, "C", 50), (4, "C", 45), (3, "C", 30)]
_EDITED_OUTSIDE: list[tuple[Any, ...]] = [
    (_C, [("history", 5, "completed", 200), ("keys",), ("read", 0, 0, 1),
          ("edit", 0, "email", 3, 0, "completed"), ("read", 0, 0, 1)], 1, ROUTING),
    (_C, [("history", 3, "completed", 300), ("history", 5, "completed", 100), ("history", 3, "completed", 10),
          ("read", 0, 0, 1), ("edit", 1, "date", 0, -200, "completed"), ("read", 0, 0, 1)], 1, DATED_ROUTING),
    (_C, [("history", 5, "completed", 200), ("history", 3, GIVE_UP_OUTCOME, 200), ("read", 0, 0, 1),
          ("edit", 0, "status", 0, 0, GIVE_UP_OUTCOME), ("edit", 1, "status", 0, 0, "completed"),
          ("read", 0, 0, 1)], 1, ROUTING),
]


def test_the_queue_read_returns_what_the_full_read_does(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Over random sequences of operations (leads added to state and removed, drained to history with every
    outcome at various times, the clock past cooldowns, do-not-contact rows added and deleted, their keys stored
    by the back-fill, the source changed, history rows edited in place: address, date or status) and random
    limits, under a score that reads whether a lead was contacted or when, reading through a queue of 1-4 rows
    per route (so routes are cut, and the queue runs short and reaches its boundary) gives the same leads in
    the same order per route as the full read, and the same
    counts for every route the queue's build did not cut; on both engines. The queue is kept across steps (rebuilt
    only when read_ready_queued finds it stale), as a run would."""
    warehouse = raw_warehouse
    build(warehouse, settings)
    examples = 120 if warehouse.engine == "duckdb" else 5  # the emulator takes ~1 s a statement
    steps = 20 if warehouse.engine == "duckdb" else 5

    @hypothesis_settings(max_examples=examples, deadline=None)
    @example(*_EDITED_OUTSIDE[0])
    @example(*_EDITED_OUTSIDE[1])
    @example(*_EDITED_OUTSIDE[2])
    @given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from("ABCZ"),
                              st.one_of(st.none(), st.integers(0, 4).map(lambda n: n * 10))), max_size=10),
           st.lists(_STEPS, min_size=1, max_size=steps), st.integers(1, 4),
           st.sampled_from([ROUTING, DATED_ROUTING]))
    def same_as_the_full_read(source: list[tuple[int, str, int | None]], ops: list[tuple[Any, ...]],
                              size: int, routing: Routing) -> None:
        for table in ("ops_inst_state", "ops_lead_history", "ops_dnc"):
            warehouse.execute(f"DELETE FROM `{{ds}}.{table}` WHERE TRUE", label="t")  # noqa: S608
        warehouse.execute("DELETE FROM `{ds}.config` WHERE key IN (@a, @b)",
                          {"a": CANDIDATES_REFRESH_KEY, "b": "ready_queue"}, label="t")
        warehouse.execute(f"DROP TABLE IF EXISTS `{{ds}}.{READY_QUEUE}`", label="t")
        warehouse.execute(CLEAR_SOURCE_SQL, label="t")
        rows_by_email: dict[int, dict[str, Any]] = {}
        for i, country, revenue in source:
            rows_by_email[i] = _source(i, country, revenue)
        if rows_by_email:
            add_sources(warehouse, list(rows_by_email.values()))
        clock = T0
        source_changed = True
        history: list[str] = []  # the history rows added, by their reason
        for op in [*ops, ("read", 2, 2, 2)]:
            kind = op[0]
            if kind == "state":
                add_state(warehouse, _EMAILS[op[1]], "active")
            elif kind == "unstate":
                warehouse.execute("DELETE FROM `{ds}.ops_inst_state` WHERE email = @e", {"e": _EMAILS[op[1]]},
                                  label="t")
            elif kind == "history":
                history.append(f"h{len(history)}")
                _add_history(warehouse, _EMAILS[op[1]], op[2], clock - dt.timedelta(days=op[3]), history[-1])
            elif kind == "edit":
                if not history:
                    continue
                _, n, what, person, days, status = op
                row = {"r": history[n % len(history)]}
                if what == "email":
                    sql, values = "email = @e", {"e": _EMAILS[person]}
                elif what == "date":
                    sql, values = "completed_at = @c", {"c": clock + dt.timedelta(days=days)}
                else:
                    sql, values = "status_final = @s", {"s": status}
                warehouse.execute(f"UPDATE `{{ds}}.ops_lead_history` SET {sql} WHERE reason = @r",  # noqa: S608
                                  {**values, **row}, label="t")
            elif kind == "advance":
                clock += dt.timedelta(days=op[1])
            elif kind == "dnc":
                add_dnc(warehouse, _EMAILS[op[1]])
            elif kind == "undnc":
                warehouse.execute("DELETE FROM `{ds}.ops_dnc` WHERE email = @e", {"e": _EMAILS[op[1]]}, label="t")
            elif kind == "keys":
                Store(warehouse, "t", clock, routing=routing).backfill_keys()
            elif kind == "source":
                rows_by_email[op[1]] = _source(op[1], op[2], op[3])
                warehouse.execute(CLEAR_SOURCE_SQL, label="t")
                add_sources(warehouse, list(rows_by_email.values()))
                source_changed = True
            else:
                limits = dict(zip("ABC", op[1:], strict=True))
                store = Store(warehouse, "t", clock, routing=routing, queue_size=size)
                if source_changed:  # refreshed whatever the signal says (the emulator's metadata may not move)
                    warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": CANDIDATES_REFRESH_KEY},
                                      label="t")
                refresh = store.refresh_candidates()
                assert refresh.refreshed or not source_changed
                got = store.read_ready_queued(limits, refreshed=refresh.refreshed)
                source_changed = False
                seen, outside = store.ready_seen, dict(store.ready_outside)
                full = Store(warehouse, "t", clock, routing=routing, queue_size=size)
                full.candidates_memory, full.candidates_known = store.candidates_memory, True
                want = full.read_ready(limits, stored=True)
                assert _key(got) == _key(want), (store.ready_source, ops)
                assert all(g == w for g, w in zip(got, want, strict=True))
                if not any(limits.values()):
                    continue
                assert seen is not None and full.ready_seen is not None
                for route in "ABC":
                    if route not in outside:
                        assert seen[0].get(route, 0) == full.ready_seen[0].get(route, 0), (route, store.ready_source)

    same_as_the_full_read()


def test_a_steady_run_reads_the_queue_without_rebuilding_it(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Built once, then read as it is while nothing outside it changes; a source change rebuilds it."""
    build(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(6)])
    store = Store(raw_warehouse, "t", T0, routing=ROUTING, queue_size=3)
    store.refresh_candidates()
    rows = store.read_ready_queued({"A": 2}, refreshed=True)
    assert [r["email"] for r in rows] == [_EMAILS[5], _EMAILS[4]]
    assert store.ready_source == "ready queue, rebuilt: the candidates were refreshed"
    assert store.ready_seen == ({"A": 6}, 0) and store.ready_outside == {"A": 3}
    again = Store(raw_warehouse, "t", T0 + dt.timedelta(hours=1), routing=ROUTING, queue_size=3)
    again.refresh_candidates()
    assert [r["email"] for r in again.read_ready_queued({"A": 2})] == [_EMAILS[5], _EMAILS[4]]
    assert again.ready_source == "ready queue"
    # Asking for more than the queue holds: rebuilt once, then the full read answers.
    assert [r["email"] for r in again.read_ready_queued({"A": 5})] == [_EMAILS[i] for i in (5, 4, 3, 2, 1)]
    assert again.ready_source is not None and again.ready_source.startswith("full read")


def _scenario(warehouse: Warehouse, settings: Settings, sources: list[dict[str, Any]]) -> None:
    build(warehouse, settings, sources)
    store = Store(warehouse, "t", T0, routing=ROUTING, queue_size=1)
    assert store.refresh_candidates().refreshed


def _both(warehouse: Warehouse, limits: dict[str, int], at: dt.datetime) -> tuple[Store, list[str], list[str]]:
    """The queue read and the full read at `at`: (the queue's store, its emails, the full read's emails)."""
    store = Store(warehouse, "t", at, routing=ROUTING, queue_size=1)
    store.refresh_candidates()
    got = [r["email"] for r in store.read_ready_queued(limits)]
    full = Store(warehouse, "t", at, routing=ROUTING, queue_size=1)
    full.refresh_candidates()
    return store, got, [r["email"] for r in full.read_ready(limits, stored=True)]


def test_a_deleted_do_not_contact_row_needs_no_rebuild(raw_warehouse: Warehouse, settings: Settings) -> None:
    """p3, suppressed at the build, is still in the queue (its rank counts, not its eligibility then): once its
    row is deleted by hand it is the route's first, read from the queue as it is."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    add_dnc(raw_warehouse, _EMAILS[3])
    store, got, want = _both(raw_warehouse, {"A": 1}, T0)
    assert got == want == [_EMAILS[2]]
    raw_warehouse.execute("DELETE FROM `{ds}.ops_dnc` WHERE email = @e", {"e": _EMAILS[3]}, label="t")
    store, got, want = _both(raw_warehouse, {"A": 1}, T0)
    assert got == want == [_EMAILS[3]]
    assert store.ready_source == "ready queue"


def test_an_ended_cooldown_needs_no_rebuild(raw_warehouse: Warehouse, settings: Settings) -> None:
    """p3, resting at the build (completed 10 days before), is in the queue all the same; 81 days on it is back
    (in route B: its second attempt), read from the queue as it is."""
    _scenario(raw_warehouse, settings, [*(_source(i, "A", i * 10) for i in range(3)), _source(3, "A", 90)])
    _add_history(raw_warehouse, _EMAILS[3], "completed", T0 - dt.timedelta(days=10))
    store, got, want = _both(raw_warehouse, {"A": 1, "B": 1}, T0)
    assert got == want == [_EMAILS[2]]
    later = T0 + dt.timedelta(days=81)
    store, got, want = _both(raw_warehouse, {"A": 1, "B": 1}, later)
    assert got == want == [_EMAILS[2], _EMAILS[3]]  # p3's second attempt routes to B
    assert store.ready_source == "ready queue"


def test_history_of_a_person_outside_the_queue_rebuilds_it(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A history row for p0 (outside the queue) that already allows its return moves p0 to route B, which the
    build did not cut: the queue must be rebuilt to see it."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    store, got, want = _both(raw_warehouse, {"A": 1, "B": 1}, T0)
    assert got == want == [_EMAILS[3]]
    _add_history(raw_warehouse, _EMAILS[0], "completed", T0 - dt.timedelta(days=200))
    store, got, want = _both(raw_warehouse, {"A": 1, "B": 1}, T0)
    assert got == want == [_EMAILS[3], _EMAILS[0]]
    assert store.ready_source is not None and "history of persons outside the queue changed" in store.ready_source


def test_a_queued_lead_that_falls_below_the_boundary_rebuilds_the_queue(raw_warehouse: Warehouse,
                                                                         settings: Settings) -> None:
    """c3 (30) is the queue of route C, c2 (25) its boundary; drained and back at once, c3 scores 20: the
    queue's only lead no longer ranks before the boundary, so the queue is rebuilt and c2 comes first."""
    _scenario(raw_warehouse, settings, [_source(3, "C", 30), _source(2, "C", 25), _source(1, "C", 0)])
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[3]]
    _add_history(raw_warehouse, _EMAILS[3], "completed", T0 - dt.timedelta(days=200))
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[2]]
    assert store.ready_source == "ready queue, rebuilt: it reached its boundary in route C"


def test_a_routing_change_rebuilds_the_queue(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Built under ROUTING (route A cut after p3), then read under a routing that sends p0 (revenue 0) to route B:
    route B was not cut at the build, so only a rebuild (the rules' fingerprint changed) finds p0 there."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    store, got, want = _both(raw_warehouse, {"A": 1, "B": 1}, T0)
    assert got == want == [_EMAILS[3]]
    moved = Routing(
        routes=(Route("A", "country = 'A' AND annual_revenue >= 5", (Arm("A", "c-a", 100),)),
                Route("B", "country = 'B' OR annual_revenue < 5", (Arm("B", "c-b", 100),))),
        score=ROUTING.score, origin="test", is_default=False)
    store = Store(raw_warehouse, "t", T0, routing=moved, queue_size=1)
    store.refresh_candidates()
    got = [r["email"] for r in store.read_ready_queued({"A": 1, "B": 1})]
    assert got == [_EMAILS[3], _EMAILS[0]]
    assert store.ready_source == "ready queue, rebuilt: the rules or the queue's size changed"


def test_candidates_refreshed_by_an_earlier_run_rebuild_the_queue(raw_warehouse: Warehouse,
                                                                   settings: Settings) -> None:
    """p4 (revenue 40) enters the source after the build and the candidates are refreshed by a run that read no
    ready leads; the next run (not refreshing) sees the candidates' refresh stamp moved and rebuilds, so p4 comes
    first though the kept queue's p3 still ranks before its boundary."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    store, got, want = _both(raw_warehouse, {"A": 1}, T0)
    assert got == want == [_EMAILS[3]]
    add_sources(raw_warehouse, [_source(4, "A", 40)])
    raw_warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": CANDIDATES_REFRESH_KEY}, label="t")
    assert Store(raw_warehouse, "t", T0, routing=ROUTING, queue_size=1).refresh_candidates().refreshed
    store, got, want = _both(raw_warehouse, {"A": 1}, T0)
    assert got == want == [_EMAILS[4]]
    assert store.ready_source == "ready queue, rebuilt: the candidates were refreshed"


def test_a_queue_row_deleted_by_hand_rebuilds_the_queue(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Route A's queue holds p3 and p2 (boundary p1); with p3's queue row deleted by hand the kept queue would
    answer p2, which still ranks before the boundary: the queue's row count tells, and the rebuilt queue gives p3."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    store = Store(raw_warehouse, "t", T0, routing=ROUTING, queue_size=2)
    store.refresh_candidates()
    assert [r["email"] for r in store.read_ready_queued({"A": 1})] == [_EMAILS[3]]
    raw_warehouse.execute(f"DELETE FROM `{{ds}}.{READY_QUEUE}` WHERE email = @e", {"e": _EMAILS[3]},  # noqa: S608
                          label="t")
    store = Store(raw_warehouse, "t", T0, routing=ROUTING, queue_size=2)
    store.refresh_candidates()
    assert [r["email"] for r in store.read_ready_queued({"A": 1})] == [_EMAILS[3]]
    assert store.ready_source == "ready queue, rebuilt: the queue table was changed by hand"


def test_a_dropped_queue_table_is_rebuilt(raw_warehouse: Warehouse, settings: Settings) -> None:
    """With the queue table dropped (an erasure drops it) but its config row kept, the next read rebuilds it and
    answers as the full read, instead of failing on the missing table."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    _both(raw_warehouse, {"A": 1}, T0)
    raw_warehouse.execute(f"DROP TABLE `{{ds}}.{READY_QUEUE}`", label="t")
    store, got, want = _both(raw_warehouse, {"A": 1}, T0)
    assert got == want == [_EMAILS[3]]
    assert store.ready_source == "ready queue, rebuilt: the queue table is missing"


def test_a_dry_run_with_a_stale_queue_does_the_full_read_and_writes_nothing(raw_warehouse: Warehouse,
                                                                             settings: Settings) -> None:
    """After the candidates' refresh brought p4, a dry run's read answers p4 from the full read and leaves the
    queue and its config row as they were (a dry run writes nothing)."""
    _scenario(raw_warehouse, settings, [_source(i, "A", i * 10) for i in range(4)])
    _both(raw_warehouse, {"A": 1}, T0)
    memory = raw_warehouse.query("SELECT value_string FROM `{ds}.config` WHERE key = 'ready_queue'", label="t")
    add_sources(raw_warehouse, [_source(4, "A", 40)])
    raw_warehouse.execute("DELETE FROM `{ds}.config` WHERE key = @key", {"key": CANDIDATES_REFRESH_KEY}, label="t")
    assert Store(raw_warehouse, "t", T0, routing=ROUTING, queue_size=1).refresh_candidates().refreshed
    store = Store(raw_warehouse, "t", T0, routing=ROUTING, queue_size=1)
    store.refresh_candidates(dry_run=True)
    assert [r["email"] for r in store.read_ready_queued({"A": 1}, dry_run=True)] == [_EMAILS[4]]
    assert store.ready_source == ("full read (ready queue stale: the candidates were refreshed; a dry run rebuilds "
                                  "nothing)")
    assert raw_warehouse.query("SELECT value_string FROM `{ds}.config` WHERE key = 'ready_queue'",
                               label="t") == memory
    assert {r["email"] for r in raw_warehouse.query(f"SELECT email FROM `{{ds}}.{READY_QUEUE}`",  # noqa: S608
                                                    label="t")} == {_EMAILS[3], _EMAILS[2]}


def test_the_queue_build_flags_are_names_no_source_column_may_take() -> None:
    """A declared extra source column named like a column the queue's build adds (its flags, its own columns) is
    refused, since it would clash with that column in the build's SQL."""
    for name in ("suppressed", "managed", "resting", "ready", *READY_QUEUE_COLUMNS):
        with pytest.raises(RoutingError, match="a name coldsync uses for its own columns"):
            load_routing({"source_columns": [name]}, where="test", smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE)


def test_a_history_status_changed_to_a_given_up_add_outside_the_queue_rebuilds_it(raw_warehouse: Warehouse,
                                                                                   settings: Settings) -> None:
    """In route C, p4 (revenue 35, a completed attempt 200 days ago: score 25) is the boundary behind p3 (30); its
    row's status changed by hand to a given-up add keeps the row count, attempts and dates but clears its
    last_completed_at (score 35): the guard's count of given-up rows tells, and the rebuilt queue gives p4."""
    _scenario(raw_warehouse, settings, [_source(3, "C", 30), _source(4, "C", 35), _source(1, "C", 0)])
    _add_history(raw_warehouse, _EMAILS[4], "completed", T0 - dt.timedelta(days=200))
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[3]]
    raw_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET status_final = @s WHERE email = @e",
                          {"s": GIVE_UP_OUTCOME, "e": _EMAILS[4]}, label="t")
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[4]]
    assert store.ready_source == "ready queue, rebuilt: the history of persons outside the queue changed"


_OUTSIDE_CHANGED = "ready queue, rebuilt: the history of persons outside the queue changed"


def test_a_history_row_moved_to_another_outside_person_rebuilds_the_queue(raw_warehouse: Warehouse,
                                                                         settings: Settings) -> None:
    """Route C, a queue of 1: p4 (45) in it, p5 (50, contacted 200 days ago: 40) its boundary, p3 (30) outside;
    after the key back-fill, p5's history row moved to p3 by hand keeps every figure (count, attempts, dates,
    statuses) but gives p5 50 and p3 20: the guard's checksum (the row's person changed) tells, and the rebuilt
    queue gives p5, as the full read does."""
    _scenario(raw_warehouse, settings, [_source(5, "C", 50), _source(4, "C", 45), _source(3, "C", 30)])
    _add_history(raw_warehouse, _EMAILS[5], "completed", T0 - dt.timedelta(days=200))
    Store(raw_warehouse, "t", T0, routing=ROUTING).backfill_keys()
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[4]]
    raw_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET email = @to WHERE email = @e",
                          {"to": _EMAILS[3], "e": _EMAILS[5]}, label="t")
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[5]]
    assert store.ready_source == _OUTSIDE_CHANGED


def test_a_middle_date_moved_outside_the_queue_rebuilds_it(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Under a score that takes 10 points off a lead contacted after RECENT: route C, a queue of 1, p4 (45) in it,
    p5 (50, contacted 100 days ago: 40) its boundary, p3 (30, contacted 300 and 10 days ago) outside. p5's date
    moved to 200 days ago (neither the first nor the last date outside) gives p5 50: the checksum tells, and the
    rebuilt queue gives p5."""
    build(raw_warehouse, settings, [_source(5, "C", 50), _source(4, "C", 45), _source(3, "C", 30)])
    for email, days in ((_EMAILS[3], 300), (_EMAILS[5], 100), (_EMAILS[3], 10)):
        _add_history(raw_warehouse, email, "completed", T0 - dt.timedelta(days=days))
    Store(raw_warehouse, "t", T0, routing=DATED_ROUTING).backfill_keys()

    def both() -> tuple[Store, list[str], list[str]]:
        store = Store(raw_warehouse, "t", T0, routing=DATED_ROUTING, queue_size=1)
        store.refresh_candidates()
        got = [r["email"] for r in store.read_ready_queued({"C": 1})]
        full = Store(raw_warehouse, "t", T0, routing=DATED_ROUTING, queue_size=1)
        full.refresh_candidates()
        return store, got, [r["email"] for r in full.read_ready({"C": 1}, stored=True)]

    store, got, want = both()
    assert got == want == [_EMAILS[4]]
    raw_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET completed_at = @c WHERE email = @e",
                          {"c": T0 - dt.timedelta(days=200), "e": _EMAILS[5]}, label="t")
    store, got, want = both()
    assert got == want == [_EMAILS[5]]
    assert store.ready_source == _OUTSIDE_CHANGED


def test_statuses_swapped_between_outside_persons_rebuild_the_queue(raw_warehouse: Warehouse,
                                                                    settings: Settings) -> None:
    """Route C, a queue of 1: p4 (45) in it, p5 (50, a completed attempt: 40) its boundary, p3 (30, a given-up add
    on the same day) outside. The two statuses swapped by hand keep the count of given-up rows but give p5 50 (its
    only row a given-up add): the checksum tells, and the rebuilt queue gives p5."""
    _scenario(raw_warehouse, settings, [_source(5, "C", 50), _source(4, "C", 45), _source(3, "C", 30)])
    _add_history(raw_warehouse, _EMAILS[5], "completed", T0 - dt.timedelta(days=200))
    _add_history(raw_warehouse, _EMAILS[3], GIVE_UP_OUTCOME, T0 - dt.timedelta(days=200))
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[4]]
    raw_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET status_final = CASE email WHEN @a THEN @g ELSE @c END "
                          "WHERE email IN (@a, @b)",
                          {"a": _EMAILS[5], "b": _EMAILS[3], "g": GIVE_UP_OUTCOME, "c": "completed"}, label="t")
    store, got, want = _both(raw_warehouse, {"C": 1}, T0)
    assert got == want == [_EMAILS[5]]
    assert store.ready_source == _OUTSIDE_CHANGED
