"""Tests of coldsync.supply: the per-route split of a run's room under the global cap.

1. Worked examples, every number computed by hand in the comment beside it.
2. Properties (hypothesis) of every invariant in `allocate`'s docstring, and of the building blocks
   (`apportion`, `water_fill`, `default_shares`, `combine_shares`, `supply_wanted`). The expected
   global room and needs are recomputed here from the brief, not read back from the module.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldsync.supply import (
    Allocation,
    RouteSupply,
    allocate,
    apportion,
    combine_shares,
    default_shares,
    supply_wanted,
    water_fill,
)

F = Fraction
HALF = F(1, 2)
PLENTY = 10**9

PROPERTIES = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def route(
    name: str, share: Fraction, *, inventory: int = 0, ready: int = PLENTY, open: bool = True, wanted: int | None = None
) -> RouteSupply:
    return RouteSupply(name, share, inventory, ready, open, wanted)


def rooms(allocation: Allocation) -> list[int]:
    return [r.room for r in allocation.rooms]


def reasons(allocation: Allocation) -> list[str]:
    return [r.reason for r in allocation.rooms]


# --- 1. Worked examples: allocate ---------------------------------------------------------------


def test_two_equal_empty_routes_split_the_whole_cap_evenly() -> None:
    """Cap 24000, two routes of 1/2, both empty, target 24000, plenty ready: 12000 each."""
    result = allocate([route("a", HALF), route("b", HALF)], cap=24000, target=24000, inventory=0)
    assert rooms(result) == [12000, 12000]
    assert [r.quota for r in result.rooms] == [12000, 12000]
    assert result.total == 24000
    assert reasons(result) == ["share 12000 - inventory 0", "share 12000 - inventory 0"]


def test_route_with_nothing_ready_gives_all_its_room_to_the_other() -> None:
    """Route a has 0 ready: b gets min(G, its ready), past its quota of 12000."""
    # G = 24000; stage 1: b limited to its quota 12000; stage 2: the other 12000 go to b.
    many = allocate([route("a", HALF, ready=0), route("b", HALF, ready=30000)], cap=24000, target=24000, inventory=0)
    assert rooms(many) == [0, 24000]
    assert reasons(many) == [
        "ready 0",
        "share 12000 - inventory 0; took 12000 of the room of routes with nothing or not enough ready",
    ]
    # b has fewer ready than G: it gets all it has, no more.
    few = allocate([route("a", HALF, ready=0), route("b", HALF, ready=5000)], cap=24000, target=24000, inventory=0)
    assert rooms(few) == [0, 5000]
    assert reasons(few) == ["ready 0", "ready 5000"]
    assert few.reason == "limited by ready leads 5000 (open routes, after supply sizing)"


def test_three_routes_get_target_in_proportion_to_their_shares() -> None:
    """Shares 50/30/20 with target 100 (cap far away): 50/30/20, not 100 to the first route."""
    routes = [route("a", F(1, 2)), route("b", F(3, 10)), route("c", F(1, 5))]
    result = allocate(routes, cap=24000, target=100, inventory=0)
    assert rooms(result) == [50, 30, 20]
    assert [r.quota for r in result.rooms] == [12000, 7200, 4800]
    assert reasons(result) == ["share of global room 100"] * 3
    assert result.reason == "limited by target 100"


def test_room_a_route_cannot_use_goes_to_the_others_by_their_shares() -> None:
    """Shares 50/30/20, target 100, a has 10 ready: the 40 it leaves split 30:20 -> 10/54/36."""
    # a capped at 10; the other 90 at level 90 / (3/10 + 1/5) = 180 -> b 54, c 36.
    routes = [route("a", F(1, 2), ready=10), route("b", F(3, 10)), route("c", F(1, 5))]
    result = allocate(routes, cap=24000, target=100, inventory=0)
    assert rooms(result) == [10, 54, 36]
    assert reasons(result)[0] == "ready 10"


def test_route_at_its_quota_gets_nothing_while_others_can_use_the_room() -> None:
    """A route already holding its quota gets 0 when the other route can use the whole room."""
    # cap 1000 -> quotas 500/500; a holds 500 (quota room 0); G = min(300, 1000 - 500) = 300 -> b.
    routes = [route("a", HALF, inventory=500), route("b", HALF)]
    result = allocate(routes, cap=1000, target=300, inventory=500)
    assert rooms(result) == [0, 300]
    assert reasons(result)[0] == "share 500 - inventory 500"


def test_route_at_its_quota_takes_the_leftover_in_stage_2() -> None:
    """A route at its quota gets 0 in stage 1 but takes what the other route cannot use."""
    # G = 300; stage 1: a 0 (at quota), b 100 (all its ready); stage 2: the other 200 go to a.
    routes = [route("a", HALF, inventory=500), route("b", HALF, ready=100)]
    result = allocate(routes, cap=1000, target=300, inventory=500)
    assert rooms(result) == [200, 100]
    assert reasons(result) == [
        "share 500 - inventory 500; took 200 of the room of routes with nothing or not enough ready",
        "ready 100",
    ]
    assert result.total == 300


def test_leftover_is_shared_by_share_between_routes_past_their_quota() -> None:
    """Stage 2 splits the leftover by shares (30/30), not in input order (60/0)."""
    # cap 300 -> quotas 100 each; b and c hold 100 (quota room 0), a has 0 ready; G = min(60, 300 - 200).
    routes = [route("a", F(1, 3), ready=0), route("b", F(1, 3), inventory=100), route("c", F(1, 3), inventory=100)]
    result = allocate(routes, cap=300, target=60, inventory=200)
    assert rooms(result) == [0, 30, 30]
    # Shares 1/4, 1/2, 1/4, a with nothing ready: quotas 50/100/50; b over its quota, c at it, so
    # stage 1 gives 0; a would have taken min(80, 50) = 50 with leads ready, so 50 of G = 80 is given
    # away, 1/2 : 1/4 -> 33.33 / 16.67 -> 33 / 17.
    routes = [
        route("a", F(1, 4), ready=0),
        route("b", F(1, 2), inventory=200),
        route("c", F(1, 4), inventory=50),
    ]
    result = allocate(routes, cap=200, target=80, inventory=100)
    assert rooms(result) == [0, 33, 17]


def test_a_held_back_route_keeps_its_quota() -> None:
    """A closed route (paused campaign, the bounce guard) or one limited by supply sizing gives nothing
    away: the routes at their quota get no room past it, so the share is there when it comes back."""
    routes = [route("a", F(1, 4), open=False), route("b", F(1, 2), inventory=100),
              route("c", F(1, 4), inventory=50)]
    assert rooms(allocate(routes, cap=200, target=80, inventory=150)) == [0, 0, 0]
    sized = [route("a", HALF, wanted=10), route("b", HALF, inventory=50)]
    result = allocate(sized, cap=100, target=100, inventory=50)
    assert rooms(result) == [10, 0]  # b is at its quota 50; a's unused 40 stays unused
    assert [r.reason for r in result.rooms] == ["supply sizing 10", "share 50 - inventory 50"]


def test_unknown_inventory_gives_every_route_zero() -> None:
    """Inventory None (the measure failed): every room 0, quotas still reported, reason says why."""
    result = allocate([route("a", HALF), route("b", HALF)], cap=1000, target=1000, inventory=None)
    assert rooms(result) == [0, 0]
    assert [r.quota for r in result.rooms] == [500, 500]
    assert result.total == 0
    assert "inventory unknown" in result.reason
    assert all("inventory unknown" in r for r in reasons(result))


def test_remaining_in_plan_limits_the_global_room() -> None:
    """remaining_in_plan 90 under target 500 and cap room 1000: 45 + 45, and the reason names it."""
    result = allocate([route("a", HALF), route("b", HALF)], cap=1000, target=500, inventory=0, remaining_in_plan=90)
    assert rooms(result) == [45, 45]
    assert result.reason == "limited by remaining_in_plan 90"


def test_negative_remaining_in_plan_counts_as_zero() -> None:
    """A negative remaining_in_plan (over the plan) gives room 0, as in rules.plan_top_up."""
    result = allocate([route("a", HALF), route("b", HALF)], cap=1000, target=500, inventory=0, remaining_in_plan=-3)
    assert rooms(result) == [0, 0]
    assert result.reason == "limited by remaining_in_plan -3"


def test_measured_inventory_sets_the_global_room_route_inventories_set_quotas() -> None:
    """G uses the measured total (23950 -> 50), not the sum of the routes' inventories (0)."""
    result = allocate([route("a", HALF), route("b", HALF)], cap=24000, target=1000, inventory=23950)
    assert rooms(result) == [25, 25]
    assert result.reason == "limited by cap 24000 - inventory 23950"


def test_inventory_over_the_cap_gives_zero() -> None:
    """Measured inventory above the cap: the global room is 0, never negative."""
    result = allocate([route("a", HALF), route("b", HALF)], cap=1000, target=500, inventory=1200)
    assert rooms(result) == [0, 0]
    assert result.total == 0
    assert result.reason == "limited by cap 1000 - inventory 1200"


def test_closed_route_gets_zero_and_its_share_goes_to_the_open_ones() -> None:
    """A closed route gets 0 (reason "closed"), its room split 30:20 between the others."""
    routes = [route("a", F(1, 2), open=False), route("b", F(3, 10)), route("c", F(1, 5))]
    result = allocate(routes, cap=24000, target=100, inventory=0)
    # b and c are capped by their quota rooms only far away: level 100 / (1/2) = 200 -> 60 / 40.
    assert rooms(result) == [0, 60, 40]
    assert reasons(result)[0] == "closed"


def test_supply_sizing_limits_a_route_and_its_rest_goes_to_the_other() -> None:
    """wanted 40 stops route a at 40 (reason "supply sizing 40"), b takes the rest of G 100."""
    routes = [route("a", HALF, wanted=40), route("b", HALF)]
    result = allocate(routes, cap=24000, target=100, inventory=0)
    assert rooms(result) == [40, 60]
    assert reasons(result)[0] == "supply sizing 40"


def test_ties_in_rounding_go_to_the_earlier_route() -> None:
    """Three routes of 1/3 and target 100: 34/33/33, the extra lead to the first in input order."""
    routes = [route("a", F(1, 3)), route("b", F(1, 3)), route("c", F(1, 3))]
    assert rooms(allocate(routes, cap=24000, target=100, inventory=0)) == [34, 33, 33]
    assert rooms(allocate(routes[::-1], cap=24000, target=100, inventory=0)) == [34, 33, 33]


def test_rooms_keep_the_input_order() -> None:
    """The rooms come back in input order, not sorted by name or by share."""
    routes = [route("zeta", F(1, 5)), route("alpha", F(4, 5))]
    result = allocate(routes, cap=1000, target=10, inventory=0)
    assert [r.name for r in result.rooms] == ["zeta", "alpha"]
    assert rooms(result) == [2, 8]


# --- Worked examples: validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "  "},
        {"share": F(0)},
        {"share": F(-1, 2)},
        {"share": F(3, 2)},
        {"share": 0.5},
        {"inventory": -1},
        {"ready": -1},
        {"wanted": -1},
        {"ready": True},
        {"open": 1},
    ],
)
def test_route_supply_rejects_bad_fields(fields: dict[str, Any]) -> None:
    """RouteSupply raises ValueError for an empty name, share <= 0, > 1 or float, negative counts."""
    base: dict[str, Any] = {"name": "a", "share": F(1), "inventory": 0, "ready": 0, "open": True, "wanted": None}
    with pytest.raises(ValueError):
        RouteSupply(**{**base, **fields})


def test_allocate_rejects_bad_route_sets() -> None:
    """allocate raises ValueError for no routes, duplicate names and shares not summing to exactly 1."""
    with pytest.raises(ValueError, match="at least one"):
        allocate([], cap=10, target=10, inventory=0)
    with pytest.raises(ValueError, match="duplicate route names: a"):
        allocate([route("a", HALF), route("a", HALF)], cap=10, target=10, inventory=0)
    with pytest.raises(ValueError, match="sum to exactly 1"):
        allocate([route("a", HALF), route("b", F(1, 3))], cap=10, target=10, inventory=0)
    with pytest.raises(ValueError, match="sum to exactly 1"):
        allocate([route("a", HALF), route("b", F(2, 3))], cap=10, target=10, inventory=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cap": -1},
        {"target": -1},
        {"inventory": -1},
        {"cap": 1.5},
        {"target": True},
        {"remaining_in_plan": 2.0},
    ],
)
def test_allocate_rejects_bad_counts(kwargs: dict[str, Any]) -> None:
    """allocate raises ValueError for a negative or non-int cap, target or inventory."""
    base: dict[str, Any] = {"cap": 10, "target": 10, "inventory": 0, "remaining_in_plan": None}
    with pytest.raises(ValueError):
        allocate([route("a", F(1))], **{**base, **kwargs})


# --- Worked examples: building blocks -----------------------------------------------------------


def test_apportion_gives_leftover_units_to_the_largest_remainders() -> None:
    """apportion(7, 1/2, 1/4, 1/4): 3.5/1.75/1.75 -> 3/2/2 (largest remainders, not the first)."""
    assert apportion(7, [F(1, 2), F(1, 4), F(1, 4)]) == (3, 2, 2)
    assert apportion(10, [F(1, 3)] * 3) == (4, 3, 3)  # a tie: the earlier share
    assert apportion(0, [F(1, 2)] * 2) == (0, 0)


def test_water_fill_shares_a_capped_entrys_rest_by_weight() -> None:
    """water_fill(10, equal weights, limits 1/100/100): 1 then 4.5/4.5 -> 1/5/4."""
    assert water_fill(10, [F(1)] * 3, [1, 100, 100]) == (1, 5, 4)
    assert water_fill(10, [F(1), F(3)], [100, 100]) == (3, 7)  # 2.5 / 7.5, tie to the first
    assert water_fill(10, [F(1)] * 2, [3, 4]) == (3, 4)  # the limits sum below the amount
    assert water_fill(0, [F(1)] * 2, [3, 4]) == (0, 0)


def test_default_shares_are_proportional_to_capacity() -> None:
    """Capacities 30/10 -> 3/4 and 1/4; floats by their decimal form (0.1/0.3 -> 1/4 and 3/4)."""
    assert default_shares({"a": 30, "b": 10}) == {"a": F(3, 4), "b": F(1, 4)}
    assert default_shares({"a": 0.1, "b": 0.3}) == {"a": F(1, 4), "b": F(3, 4)}


def test_default_shares_are_equal_when_any_capacity_is_unknown_or_zero() -> None:
    """One route without history (None or 0) -> equal shares for all, so a fresh route is not starved."""
    assert default_shares({"a": 30, "b": None, "c": 10}) == {"a": F(1, 3), "b": F(1, 3), "c": F(1, 3)}
    assert default_shares({"a": 30, "b": 0}) == {"a": HALF, "b": HALF}


@pytest.mark.parametrize(
    "capacity", [{}, {"a": -1}, {"a": math.nan}, {"a": math.inf}, {"a": True}, {"": 1}, {"a": "3"}]
)
def test_default_shares_rejects_bad_capacity(capacity: dict[str, Any]) -> None:
    """default_shares raises ValueError for no routes, negative, NaN, infinite or non-number capacity."""
    with pytest.raises(ValueError):
        default_shares(capacity)


def test_combine_shares_keeps_configured_and_splits_the_rest_by_fallback() -> None:
    """a = 1/2 configured; b and c split the other 1/2 in their fallback ratio 1:2 -> 1/6 and 1/3."""
    fallback = {"a": F(1, 4), "b": F(1, 4), "c": F(1, 2)}  # a's fallback is ignored
    assert combine_shares({"a": HALF, "b": None, "c": None}, fallback) == {"a": HALF, "b": F(1, 6), "c": F(1, 3)}
    assert combine_shares({"a": None, "b": None}, {"a": F(1), "b": F(3)}) == {"a": F(1, 4), "b": F(3, 4)}
    assert combine_shares({"a": F(1, 3), "b": F(2, 3)}, {}) == {"a": F(1, 3), "b": F(2, 3)}


@pytest.mark.parametrize(
    ("given", "fallback", "message"),
    [
        ({"a": F(2, 3), "b": F(2, 3)}, {}, "more than 1"),
        ({"a": F(2, 3), "b": F(1, 2), "c": None}, {"c": F(1)}, "more than 1"),
        ({"a": F(1, 3), "b": F(1, 3)}, {}, "not exactly 1"),
        ({"a": F(1), "b": None}, {"b": F(1)}, "would get 0: b"),
        ({"a": F(1, 2), "b": None}, {}, "'b' has no configured share"),
        ({"a": F(1, 2), "b": None}, {"b": F(0)}, "'b' has no configured share"),
        ({"a": F(0), "b": None}, {"b": F(1)}, "'a'"),
        ({"a": 0.5, "b": None}, {"b": F(1)}, "Fraction"),
        ({}, {}, "at least one"),
    ],
)
def test_combine_shares_rejects_broken_configurations(
    given: dict[str, Any], fallback: dict[str, Fraction], message: str
) -> None:
    """combine_shares raises ValueError naming the problem: sum > 1, all set but not 1, 1 with gaps."""
    with pytest.raises(ValueError, match=message):
        combine_shares(given, fallback)


def test_supply_wanted_tops_the_backlog_up_to_supply_days_of_throughput() -> None:
    """Mean 10/day, 3 days -> 30; backlog 5 -> 25; backlog 40 -> 0; mean 1.5 x 3 = 4.5 -> ceil 5."""
    assert supply_wanted(daily_new_leads_contacted=[10] * 7, backlog=5, supply_days=3, waiting_for_leads=False) == 25
    assert supply_wanted(daily_new_leads_contacted=[10] * 7, backlog=40, supply_days=3, waiting_for_leads=False) == 0
    assert supply_wanted(daily_new_leads_contacted=[1, 2], backlog=0, supply_days=3, waiting_for_leads=False) == 5


def test_supply_wanted_counts_the_backlog_as_zero_when_waiting_for_leads() -> None:
    """waiting_for_leads: backlog counts as 0, whatever was passed (100 or None) -> the full 30."""
    assert supply_wanted(daily_new_leads_contacted=[10] * 7, backlog=100, supply_days=3, waiting_for_leads=True) == 30
    assert supply_wanted(daily_new_leads_contacted=[10] * 7, backlog=None, supply_days=3, waiting_for_leads=True) == 30


@pytest.mark.parametrize(
    ("days", "backlog", "supply_days", "waiting"),
    [
        ([], 0, 3, False),  # no days
        ([0] * 7, 0, 3, False),  # throughput 0
        ([0] * 7, 0, 3, True),  # throughput 0 while waiting: sizing would give 0 and starve it
        ([10] * 7, 0, 0, False),  # sizing off
        ([10] * 7, None, 3, False),  # backlog unknown
    ],
)
def test_supply_wanted_is_none_without_usable_data(
    days: list[int], backlog: int | None, supply_days: int, waiting: bool
) -> None:
    """No days, zero throughput, sizing off or unknown backlog -> None (share only)."""
    assert (
        supply_wanted(
            daily_new_leads_contacted=days, backlog=backlog, supply_days=supply_days, waiting_for_leads=waiting
        )
        is None
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"daily_new_leads_contacted": [1, -1]},
        {"backlog": -1},
        {"supply_days": -1},
        {"supply_days": 1.5},
        {"waiting_for_leads": 1},
    ],
)
def test_supply_wanted_rejects_bad_inputs(kwargs: dict[str, Any]) -> None:
    """supply_wanted raises ValueError for negative or non-int counts and a non-bool waiting flag."""
    base: dict[str, Any] = {
        "daily_new_leads_contacted": [1],
        "backlog": 0,
        "supply_days": 1,
        "waiting_for_leads": False,
    }
    with pytest.raises(ValueError):
        supply_wanted(**{**base, **kwargs})


# --- 2. Properties ------------------------------------------------------------------------------


@st.composite
def share_lists(draw: st.DrawFn, max_size: int = 6) -> list[Fraction]:
    weights = draw(st.lists(st.integers(1, 12), min_size=1, max_size=max_size))
    return [F(w, sum(weights)) for w in weights]


@st.composite
def route_lists(draw: st.DrawFn) -> list[RouteSupply]:
    shares = draw(share_lists())
    return [
        RouteSupply(
            name=f"route{i}",
            share=share,
            inventory=draw(st.integers(0, 4000)),
            ready=draw(st.one_of(st.integers(0, 3000), st.just(PLENTY))),
            open=draw(st.booleans()),
            wanted=draw(st.one_of(st.none(), st.integers(0, 3000))),
        )
        for i, share in enumerate(shares)
    ]


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "routes": draw(route_lists()),
        "cap": draw(st.integers(0, 10000)),
        "target": draw(st.integers(0, 12000)),
        "inventory": draw(st.integers(0, 12000)),
        "remaining_in_plan": draw(st.one_of(st.none(), st.integers(-10, 12000))),
    }


def global_room(run: dict[str, Any]) -> int:
    """G as the brief states it (a negative remaining_in_plan counts as 0)."""
    limits: list[int] = [run["target"], run["cap"] - run["inventory"]]
    if run["remaining_in_plan"] is not None:
        limits.append(max(0, run["remaining_in_plan"]))
    return max(0, min(limits))


def need(r: RouteSupply) -> int:
    if not r.open:
        return 0
    return r.ready if r.wanted is None else min(r.ready, r.wanted)


def stage1_limit(r: RouteSupply, quota: int) -> int:
    return min(need(r), max(0, quota - r.inventory))


@PROPERTIES
@given(runs())
def test_property_total_is_all_the_room_anyone_can_use(run: dict[str, Any]) -> None:
    """sum(room) == S1 + min(G - S1, D, sum(need) - S1) <= G: the quota rooms are used as far as the
    routes can, and past the quotas only the room of routes short of ready leads (D) is given away."""
    result = allocate(**run)
    g = global_room(run)
    routes = run["routes"]
    assert result.total == sum(rooms(result))
    assert result.total <= g
    quotas = apportion(run["cap"], [r.share for r in routes])
    shares = [r.share for r in routes]
    s1 = sum(water_fill(g, shares, [stage1_limit(r, q) for r, q in zip(routes, quotas, strict=True)]))
    unlimited = [0 if not r.open else g if r.wanted is None else min(r.wanted, g) for r in routes]
    entitled = water_fill(g, shares, [min(u, max(0, q - r.inventory))
                                      for u, r, q in zip(unlimited, routes, quotas, strict=True)])
    donated = sum(max(0, e - r.ready) for e, r in zip(entitled, routes, strict=True))
    assert result.total == s1 + min(g - s1, donated, sum(need(r) for r in routes) - s1)


@PROPERTIES
@given(runs())
def test_property_no_route_gets_more_than_it_needs_and_closed_get_zero(run: dict[str, Any]) -> None:
    """0 <= room_r <= need_r (ready, supply sizing), so a closed route gets 0 and reason "closed"."""
    result = allocate(**run)
    for r, got in zip(run["routes"], result.rooms, strict=True):
        assert got.name == r.name
        assert 0 <= got.room <= need(r)
        if not r.open:
            assert got.room == 0
            assert got.reason == "closed"


@PROPERTIES
@given(runs())
def test_property_no_route_is_starved(run: dict[str, Any]) -> None:
    """Each route gets at least min(its stage-1 limit, floor(share * G)): nobody takes its part."""
    result = allocate(**run)
    g = global_room(run)
    for r, got in zip(run["routes"], result.rooms, strict=True):
        assert got.room >= min(stage1_limit(r, got.quota), math.floor(r.share * g))


@PROPERTIES
@given(runs())
def test_property_a_route_passes_its_quota_only_with_room_nobody_else_can_use_within_theirs(
    run: dict[str, Any],
) -> None:
    """If any route gets more than its quota room, every route got all it could within its quota."""
    result = allocate(**run)
    over = [got.room > max(0, got.quota - r.inventory) for r, got in zip(run["routes"], result.rooms, strict=True)]
    if any(over):
        for r, got in zip(run["routes"], result.rooms, strict=True):
            assert got.room >= stage1_limit(r, got.quota)


@PROPERTIES
@given(runs())
def test_property_leftover_is_water_filled_by_share(run: dict[str, Any]) -> None:
    """When room is left after every stage-1 limit is met, the extra is shared by shares under need."""
    result = allocate(**run)
    routes = run["routes"]
    firsts = [stage1_limit(r, got.quota) for r, got in zip(routes, result.rooms, strict=True)]
    if result.total <= sum(firsts):
        return  # no stage 2
    extras = [got.room - first for got, first in zip(result.rooms, firsts, strict=True)]
    assert all(extra >= 0 for extra in extras)
    for i, r_i in enumerate(routes):
        if result.rooms[i].room < need(r_i):
            for j, r_j in enumerate(routes):
                assert extras[j] < (extras[i] + 1) * r_j.share / r_i.share + 1


@PROPERTIES
@given(runs())
def test_property_quotas_apportion_the_cap(run: dict[str, Any]) -> None:
    """Quotas sum to the cap exactly and each is floor or ceiling of share * cap."""
    result = allocate(**run)
    assert sum(r.quota for r in result.rooms) == run["cap"]
    for r, got in zip(run["routes"], result.rooms, strict=True):
        assert math.floor(r.share * run["cap"]) <= got.quota <= math.ceil(r.share * run["cap"])


@PROPERTIES
@given(share_lists(), st.integers(0, 30000), st.integers(0, 5000))
def test_property_open_unlimited_empty_routes_fill_the_cap_by_share(
    shares: list[Fraction], cap: int, extra: int
) -> None:
    """All open, unlimited ready, no sizing, zero inventory and G = cap: room_r within 1 of share_r * cap."""
    routes = [route(f"r{i}", share) for i, share in enumerate(shares)]
    result = allocate(routes, cap=cap, target=cap + extra, inventory=0)
    assert result.total == cap
    for share, got in zip(shares, result.rooms, strict=True):
        assert abs(got.room - share * cap) < 1
        assert got.room == got.quota


@PROPERTIES
@given(share_lists(), st.integers(0, 10000))
def test_property_when_nothing_binds_each_route_gets_its_share_of_g(shares: list[Fraction], target: int) -> None:
    """With no route limit binding (cap far away), each route gets share_r * G within one lead."""
    routes = [route(f"r{i}", share) for i, share in enumerate(shares)]
    result = allocate(routes, cap=PLENTY, target=target, inventory=0)
    assert result.total == target
    for share, got in zip(shares, result.rooms, strict=True):
        assert abs(got.room - share * target) < 1


@PROPERTIES
@given(runs())
def test_property_deterministic_and_blind_to_names(run: dict[str, Any]) -> None:
    """Same input -> same output; renaming the routes changes the names and nothing else."""
    first = allocate(**run)
    again = allocate(**{**run, "routes": list(run["routes"])})
    assert first == again
    renamed = [dataclasses.replace(r, name=f"x{len(run['routes']) - i}") for i, r in enumerate(run["routes"])]
    other = allocate(**{**run, "routes": renamed})
    assert rooms(other) == rooms(first)
    assert [r.quota for r in other.rooms] == [r.quota for r in first.rooms]


@PROPERTIES
@given(runs())
def test_property_unknown_inventory_gives_nothing(run: dict[str, Any]) -> None:
    """Inventory None -> every room 0 and the reason says the inventory is unknown."""
    result = allocate(**{**run, "inventory": None})
    assert rooms(result) == [0] * len(run["routes"])
    assert result.total == 0
    assert "inventory unknown" in result.reason


@PROPERTIES
@given(route_lists(), st.sampled_from(["inventory", "ready", "wanted"]), st.integers(-1000, -1))
def test_property_negative_route_counts_are_rejected(routes: list[RouteSupply], field: str, value: int) -> None:
    """Any negative inventory, ready or wanted raises ValueError."""
    with pytest.raises(ValueError):
        changes: dict[str, Any] = {field: value}
        dataclasses.replace(routes[0], **changes)


@PROPERTIES
@given(route_lists(), st.fractions(min_value=F(-1, 2), max_value=F(1, 2)).filter(lambda d: d != 0))
def test_property_shares_off_by_anything_are_rejected(routes: list[RouteSupply], delta: Fraction) -> None:
    """Shares summing to anything but exactly 1 (or a share leaving (0, 1]) raise ValueError."""
    with pytest.raises(ValueError):
        changed = [dataclasses.replace(routes[0], share=routes[0].share + delta), *routes[1:]]
        allocate(changed, cap=100, target=100, inventory=0)


@PROPERTIES
@given(
    st.integers(0, 5000),
    st.lists(st.tuples(st.integers(1, 12), st.integers(0, 3000)), min_size=1, max_size=6),
)
def test_property_water_fill_is_proportional_under_limits(amount: int, entries: list[tuple[int, int]]) -> None:
    """water_fill: sum = min(amount, sum(limits)), each <= its limit, and proportional among the unfilled."""
    weights = [F(w) for w, _ in entries]
    limits = [limit for _, limit in entries]
    result = water_fill(amount, weights, limits)
    assert sum(result) == min(amount, sum(limits))
    assert all(0 <= x <= limit for x, limit in zip(result, limits, strict=True))
    # An entry i below its limit sits on the water level: nobody is more than one lead above it,
    # after scaling by weight (x_j < (x_i + 1) * w_j / w_i + 1).
    for i, (x_i, limit_i) in enumerate(zip(result, limits, strict=True)):
        if x_i < limit_i:
            for j, x_j in enumerate(result):
                assert x_j < (x_i + 1) * weights[j] / weights[i] + 1


@PROPERTIES
@given(st.integers(0, 100000), share_lists())
def test_property_apportion_sums_exactly_within_one(total: int, shares: list[Fraction]) -> None:
    """apportion: the parts sum to the total and each is floor or ceiling of share * total."""
    parts = apportion(total, shares)
    assert sum(parts) == total
    for share, part in zip(shares, parts, strict=True):
        assert math.floor(share * total) <= part <= math.ceil(share * total)


@PROPERTIES
@given(st.lists(st.one_of(st.none(), st.integers(0, 50), st.floats(0, 50)), min_size=1, max_size=6))
def test_property_default_shares_sum_to_one_and_never_starve(values: list[int | float | None]) -> None:
    """default_shares: positive, sum exactly 1; proportional when all known and > 0, else equal."""
    capacity = {f"r{i}": v for i, v in enumerate(values)}
    shares = default_shares(capacity)
    assert list(shares) == list(capacity)
    assert sum(shares.values()) == 1
    assert all(s > 0 for s in shares.values())
    if all(v is not None and v > 0 for v in values):
        first = F(repr(values[0])) if isinstance(values[0], float) else F(values[0] or 0)
        for name, v in capacity.items():
            exact = F(repr(v)) if isinstance(v, float) else F(v or 0)
            assert shares[name] / shares["r0"] == exact / first
    else:
        assert set(shares.values()) == {F(1, len(values))}


@PROPERTIES
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 12)), min_size=1, max_size=6), st.integers(1, 12))
def test_property_combine_shares_keeps_configured_and_sums_to_one(entries: list[tuple[bool, int]], slack: int) -> None:
    """combine_shares: configured shares kept, the rest proportional to fallback, all > 0, sum exactly 1."""
    configured_weights = [w for is_set, w in entries if is_set]
    has_gap = len(configured_weights) < len(entries)
    scale = sum(configured_weights) + (slack if has_gap else 0)  # leaves room exactly when some are unset
    given_shares = {f"r{i}": F(w, scale) if is_set else None for i, (is_set, w) in enumerate(entries)}
    fallback = {f"r{i}": F(w) for i, (_, w) in enumerate(entries)}
    result = combine_shares(given_shares, fallback)
    assert list(result) == list(given_shares)
    assert sum(result.values()) == 1
    assert all(s > 0 for s in result.values())
    unset = [name for name, s in given_shares.items() if s is None]
    for name, s in given_shares.items():
        if s is not None:
            assert result[name] == s
    for name in unset:
        assert result[name] / result[unset[0]] == fallback[name] / fallback[unset[0]]


@PROPERTIES
@given(
    st.lists(st.integers(0, 500), min_size=1, max_size=7),
    st.integers(0, 5000),
    st.integers(1, 30),
    st.booleans(),
)
def test_property_supply_wanted_covers_supply_days_and_no_more(
    days: list[int], backlog: int, supply_days: int, waiting: bool
) -> None:
    """wanted brings backlog (0 when waiting) to at least supply_days x throughput, never a lead past it."""
    wanted = supply_wanted(
        daily_new_leads_contacted=days, backlog=backlog, supply_days=supply_days, waiting_for_leads=waiting
    )
    throughput = F(sum(days), len(days))
    if throughput == 0:
        assert wanted is None
        return
    assert wanted is not None and wanted >= 0
    held = 0 if waiting else backlog
    assert held + wanted >= supply_days * throughput
    if wanted > 0:
        assert held + wanted - 1 < supply_days * throughput
