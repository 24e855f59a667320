"""How one run's room is split between routes: the per-route allocation under the global cap.

A route feeds one or more Instantly campaigns. The whole inventory (leads held by every managed
campaign) must stay under one global cap, and no route may be starved: filling one global room in
one global priority order gave one campaign everything. Here each route owns a share of the cap,
and the run's room is split by those shares, with what a route cannot use handed to the others.

Pure and deterministic: no I/O, no state, exact arithmetic (``Fraction``), ties broken by input
order. The sync measures, calls `allocate`, then reads each route's room from its own ready list.

Building blocks, public because each is a rule of its own:
  - `apportion`: largest-remainder split of an integer by shares (the quotas);
  - `water_fill`: proportional split of an integer under per-route limits;
  - `default_shares` / `combine_shares`: where the shares come from;
  - `supply_wanted`: supply sizing, the most a route should get from its backlog and throughput.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _require_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")


def _require_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")


def _require_share(value: object, name: str) -> None:
    # Fraction only: shares must sum to exactly 1, which floats cannot promise.
    if not isinstance(value, Fraction):
        raise ValueError(f"{name} must be a Fraction, not {type(value).__name__}")
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be > 0 and <= 1, got {value}")


# ---------------------------------------------------------------------------------------------
# Splitting an integer by shares
# ---------------------------------------------------------------------------------------------


def _round_exact(amounts: Sequence[Fraction], total: int) -> tuple[int, ...]:
    """Integers, each the floor or the ceiling of its amount, summing to `total` (= sum(amounts)).

    Largest remainder: the units left after flooring go to the largest fractional parts, the
    earlier index first on a tie. Only amounts with a fractional part can get a unit (their parts
    sum to the number of units, and each is < 1), so no integer amount is ever rounded.
    """
    floors = [math.floor(amount) for amount in amounts]
    units = total - sum(floors)
    order = sorted(range(len(amounts)), key=lambda i: (floors[i] - amounts[i], i))  # largest part first
    for i in order[:units]:
        floors[i] += 1
    return tuple(floors)


def apportion(total: int, shares: Sequence[Fraction]) -> tuple[int, ...]:
    """Split `total` (a count of leads) by `shares` (largest-remainder method).

    Shape: one integer per share, in the same order, summing to `total` exactly; each is
    ``floor(share * total)`` or that plus 1. Leftover units go to the largest fractional parts,
    the earlier share first on a tie.
    Raises ValueError for a negative or non-int total, a share that is not a Fraction in (0, 1], or
    shares not summing to exactly 1.
    """
    _require_count(total, "total")
    for i, share in enumerate(shares):
        _require_share(share, f"shares[{i}]")
    if sum(shares, Fraction(0)) != 1:
        raise ValueError(f"shares must sum to exactly 1, got {sum(shares, Fraction(0))}")
    return _round_exact([share * total for share in shares], total)


def water_fill(amount: int, weights: Sequence[Fraction], limits: Sequence[int]) -> tuple[int, ...]:
    """Split `amount` in proportion to `weights`, never giving an entry more than its limit.

    Water-filling: find the level L such that ``sum(min(limit_i, L * weight_i)) == amount`` (exact
    arithmetic); what a capped entry cannot take is thereby shared by the others, by their weights.
    Then round with the largest-remainder method (earlier entry first on a tie).

    Shape: one integer per entry, in input order; result_i <= limit_i; the sum is
    ``min(amount, sum(limits))``. Each result is the floor or the ceiling of its exact share
    ``min(limit_i, L * weight_i)``: when no limit binds, within one lead of
    ``weight_i / sum(weights) * amount``. Weights need not sum to 1 (only their ratios count).
    Raises ValueError for a negative or non-int amount or limit, a weight that is not a positive
    Fraction, or sequences of different lengths.
    """
    _require_count(amount, "amount")
    if len(weights) != len(limits):
        raise ValueError("weights and limits must have the same length")
    for i, weight in enumerate(weights):
        if not isinstance(weight, Fraction) or weight <= 0:
            raise ValueError(f"weights[{i}] must be a positive Fraction")
    for i, limit in enumerate(limits):
        _require_count(limit, f"limits[{i}]")

    if sum(limits) <= amount:
        return tuple(limits)  # everyone capped: nothing to share
    # Cap every entry whose limit is under its part at the current level, then re-level the rest;
    # the level only rises, so an entry capped once stays capped. Cannot cap everyone: that would
    # mean sum(limits) < amount, handled above.
    capped = [False] * len(limits)
    remaining = Fraction(amount)
    while True:
        level = remaining / sum(w for w, c in zip(weights, capped, strict=True) if not c)
        newly = [i for i, c in enumerate(capped) if not c and limits[i] < level * weights[i]]
        if not newly:
            break
        for i in newly:
            capped[i] = True
            remaining -= limits[i]
    exact = [Fraction(limits[i]) if capped[i] else level * weights[i] for i in range(len(limits))]
    return _round_exact(exact, amount)


# ---------------------------------------------------------------------------------------------
# Where the shares come from
# ---------------------------------------------------------------------------------------------


def default_shares(capacity: Mapping[str, float | int | None]) -> dict[str, Fraction]:
    """Shares in proportion to what each route can send.

    `capacity`: route name -> a non-negative number in any one unit (e.g. new leads contacted per
    day, recently), or None when unknown. Returns route name -> share, in the input order, summing
    to exactly 1.
      - every capacity known and > 0 -> share_r = capacity_r / sum(capacity);
      - any capacity None or 0 -> equal shares (1/n) for ALL routes. A fresh campaign has no
        history; a share in proportion to its zero would be 0, so it would get no leads, so it
        would never send, so it would never earn a share: it must not start at 0. Mixing measured
        and guessed capacities would be a guess either way, so no route keeps a measured share.
    Floats count by their shortest decimal form (0.1 is 1/10). Raises ValueError for no routes,
    an empty name, or a capacity that is negative, not finite, a bool or not a number.
    """
    if not capacity:
        raise ValueError("capacity must name at least one route")
    exact: dict[str, Fraction | None] = {}
    for name, value in capacity.items():
        _require_name(name, "route name")
        if value is None:
            exact[name] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"capacity of route {name!r} must be a number or None")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"capacity of route {name!r} must be finite")
        elif value < 0:
            raise ValueError(f"capacity of route {name!r} must not be negative, got {value}")
        else:
            exact[name] = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    known = [value for value in exact.values() if value is not None and value > 0]
    if len(known) < len(exact):
        return {name: Fraction(1, len(exact)) for name in exact}
    total = sum(known, Fraction(0))
    return {name: value / total for name, value in exact.items() if value is not None}


def combine_shares(given: Mapping[str, Fraction | None], fallback: Mapping[str, Fraction]) -> dict[str, Fraction]:
    """The shares to use: configured ones where set, the fallback's proportions for the rest.

    `given`: every route (its keys ARE the routes, in order) -> its configured share, or None.
    `fallback`: route -> a positive Fraction for at least every route of `given` without one
    (typically `default_shares`); only the ratios among those routes count, and keys of routes that
    have a configured share, or are not in `given`, are ignored. Returns route -> share in the order
    of `given`, summing to exactly 1.

    Rule, with S = the sum of the configured shares:
      - every route configured: S must be exactly 1 (nothing else could absorb the difference);
      - some routes not configured: S must be < 1, and those routes split ``1 - S`` in proportion
        to their fallback shares. S == 1 would leave them a share of 0 (starved), and a share of 0
        is never allowed: to stop a route, close it;
      - S > 1 is always an error.
    Raises ValueError, naming the problem and the routes concerned, for: no routes, an empty name,
    a configured share that is not a Fraction in (0, 1], a sum breaking the rule above, or a route
    without a configured share that has no positive Fraction fallback.
    """
    if not given:
        raise ValueError("given must name at least one route")
    configured: dict[str, Fraction] = {}
    others: list[str] = []
    for name, share in given.items():
        _require_name(name, "route name")
        if share is None:
            others.append(name)
        else:
            _require_share(share, f"configured share of route {name!r}")
            configured[name] = share
    total = sum(configured.values(), Fraction(0))
    if total > 1:
        raise ValueError(f"configured shares sum to {total}, more than 1")
    if not others:
        if total != 1:
            raise ValueError(f"every route has a configured share, and they sum to {total}, not exactly 1")
        return dict(configured)
    if total == 1:
        raise ValueError(f"configured shares already sum to 1, so routes without one would get 0: {', '.join(others)}")
    for name in others:
        weight = fallback.get(name)
        if not isinstance(weight, Fraction) or weight <= 0:
            raise ValueError(f"route {name!r} has no configured share and no positive Fraction fallback share")
    fallback_total = sum((fallback[name] for name in others), Fraction(0))
    rest = 1 - total
    return {name: configured[name] if name in configured else rest * fallback[name] / fallback_total for name in given}


# ---------------------------------------------------------------------------------------------
# Supply sizing
# ---------------------------------------------------------------------------------------------


def supply_wanted(
    *,
    daily_new_leads_contacted: Sequence[int],
    backlog: int | None,
    supply_days: int,
    waiting_for_leads: bool,
) -> int | None:
    """The most leads a route should get this run so it holds `supply_days` days of sending.

    `daily_new_leads_contacted`: new leads the route's campaigns contacted per day (the caller
    passes the last 7 complete days); `backlog`: leads they hold not yet contacted; `supply_days`:
    days of supply to keep (0 turns sizing off); `waiting_for_leads`: a campaign of the route says
    it has nothing left to send.

    throughput = mean of the days (exact); target = ceil(supply_days * throughput);
    wanted = max(0, target - backlog). A route whose backlog already covers the target gets 0.

    None means "no sizing: the route is limited by its share only", returned when sizing has no
    usable data rather than sizing on a guess:
      - `supply_days` 0: sizing is off;
      - no days: no throughput known;
      - throughput 0, waiting or not: the formula would give 0, starving a route that sent nothing
        only because it had nothing (a fresh campaign, or one that ran dry for a week) - the same
        trap as a share of 0. (A route that holds leads and sends none is a case for closing it,
        not for sizing.)
      - `backlog` None (the count failed) and not waiting.
    `waiting_for_leads` true makes the backlog count as 0 whatever was passed, None included:
    the campaign's own word that it has nothing to send is fresher than a count.
    Raises ValueError for a negative or non-int day count, backlog or supply_days, or a
    non-bool `waiting_for_leads`.
    """
    for i, day in enumerate(daily_new_leads_contacted):
        _require_count(day, f"daily_new_leads_contacted[{i}]")
    if backlog is not None:
        _require_count(backlog, "backlog")
    _require_count(supply_days, "supply_days")
    if not isinstance(waiting_for_leads, bool):
        raise ValueError("waiting_for_leads must be a bool")

    if supply_days == 0 or not daily_new_leads_contacted:
        return None
    throughput = Fraction(sum(daily_new_leads_contacted), len(daily_new_leads_contacted))
    if throughput == 0:
        return None
    held = 0 if waiting_for_leads else backlog
    if held is None:
        return None
    return max(0, math.ceil(supply_days * throughput) - held)


# ---------------------------------------------------------------------------------------------
# The allocation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSupply:
    """One route as the run sees it.

    `share`: this route's share of the cap, a Fraction in (0, 1]; the shares of all routes passed
    to `allocate` sum to exactly 1. `inventory`: leads this route's campaigns hold now (>= 0).
    `ready`: eligible leads ready for this route (>= 0). `open`: may receive leads this run
    (campaign active, deliverability guard not tripped). `wanted`: supply sizing, the most leads
    this route should get this run (`supply_wanted`; None = no sizing limit).
    Raises ValueError on construction for an empty name, a share outside (0, 1] or not a Fraction,
    a negative or non-int count, or a non-bool `open`.
    """

    name: str
    share: Fraction
    inventory: int
    ready: int
    open: bool
    wanted: int | None = None

    def __post_init__(self) -> None:
        _require_name(self.name, "route name")
        _require_share(self.share, f"share of route {self.name!r}")
        _require_count(self.inventory, f"inventory of route {self.name!r}")
        _require_count(self.ready, f"ready of route {self.name!r}")
        if not isinstance(self.open, bool):
            raise ValueError(f"open of route {self.name!r} must be a bool")
        if self.wanted is not None:
            _require_count(self.wanted, f"wanted of route {self.name!r}")

    @property
    def need(self) -> int:
        """What this route could take this run: 0 if closed, else min(ready, wanted)."""
        if not self.open:
            return 0
        return self.ready if self.wanted is None else min(self.ready, self.wanted)


@dataclass(frozen=True)
class RouteRoom:
    """One route's part of the run.

    `quota`: its share of the cap in leads (the quotas of all routes sum to the cap). `room`: leads
    to add to it this run. `reason`: what limited `room`, free of personal data.
    """

    name: str
    quota: int
    room: int
    reason: str


@dataclass(frozen=True)
class Allocation:
    """The run's split: `rooms` in the input order, `total` = sum of the rooms, and `reason`, what
    limited the total (inventory unknown, target, cap - inventory, remaining_in_plan or ready)."""

    rooms: tuple[RouteRoom, ...]
    total: int
    reason: str


def _need_label(route: RouteSupply) -> str:
    if route.wanted is not None and route.wanted < route.ready:
        return f"supply sizing {route.wanted}"
    return f"ready {route.ready}"


def allocate(
    routes: Sequence[RouteSupply],
    *,
    cap: int,
    target: int,
    inventory: int | None,
    remaining_in_plan: int | None = None,
) -> Allocation:
    """Split this run's room between routes: each by its share of the cap, none starved.

    Inputs: `cap`, the most leads all managed campaigns may hold; `target`, the most this run adds;
    `inventory`, the measured total held now (None: the measure failed or was partial); it may
    differ from the sum of the routes' inventories and is what the global room uses, while the
    routes' own inventories set their quota rooms; `remaining_in_plan`, uploads left in the
    workspace plan (None: unknown, no limit; a negative value counts as 0, as in
    `rules.plan_top_up`).

    Steps:
      1. `inventory` None -> every room 0: adding blind could break the cap. Otherwise the global
         room G = max(0, min(target, cap - inventory, remaining_in_plan if known)).
      2. quota_r = `apportion`(cap, shares): floor or ceiling of share_r * cap, summing to cap.
      3. need_r = 0 if closed, else min(ready_r, wanted_r if set).
      4. Stage 1: G is `water_fill`-ed by shares under limit_r = min(need_r, max(0, quota_r -
         inventory_r)): each route gets its share of G, and what one cannot take (closed, not
         enough ready, at its quota) goes to the others by their shares.
      5. Stage 2: the room of routes with nothing (or not enough) ready goes to the routes that can
         use it, past their quota if need be (the global cap holds: the total never exceeds G). Only
         that room: D = sum over routes of max(0, entitled_r - ready_r), where entitled_r is what the
         route would get in stage 1 with unlimited ready leads. A route held back (closed: a paused
         campaign, the deliverability guard) or limited by supply sizing keeps its quota unused, so
         its share is there when it comes back. min(D, G - sum(stage1)) is water-filled by shares
         under need_r - stage1_r.

    Invariants (tests/test_supply.py proves each by property):
      - sum(room) <= G; every route gets its stage-1 room (its share, up to its quota room); past
        their quotas routes share only room that routes short of ready leads could not use;
      - room_r <= need_r, so a closed route gets 0;
      - no starvation: room_r >= min(limit_r, floor(share_r * G));
      - all routes open, ready and sizing unlimited, zero inventory and G == cap -> room_r ==
        quota_r, within 1 of share_r * cap;
      - deterministic: the same input gives the same output (exact arithmetic, ties by input order).

    Returns the rooms in input order with their quotas and reasons. Raises ValueError for no
    routes, duplicate names, shares not summing to exactly 1, a negative or non-int cap, target
    or inventory, or a non-int remaining_in_plan (RouteSupply itself rejects bad fields).
    """
    if not routes:
        raise ValueError("routes must hold at least one route")
    for route in routes:
        if not isinstance(route, RouteSupply):
            raise ValueError("routes must be RouteSupply values")
    names = [route.name for route in routes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate route names: {', '.join(duplicates)}")
    shares = [route.share for route in routes]
    if sum(shares, Fraction(0)) != 1:
        raise ValueError(f"route shares must sum to exactly 1, got {sum(shares, Fraction(0))}")
    _require_count(cap, "cap")
    _require_count(target, "target")
    if inventory is not None:
        _require_count(inventory, "inventory")
    if remaining_in_plan is not None and (
        isinstance(remaining_in_plan, bool) or not isinstance(remaining_in_plan, int)
    ):
        raise ValueError("remaining_in_plan must be an integer or None")

    quotas = apportion(cap, shares)
    if inventory is None:
        unknown = "inventory unknown"
        rooms = tuple(RouteRoom(r.name, q, 0, unknown) for r, q in zip(routes, quotas, strict=True))
        return Allocation(rooms, 0, "inventory unknown (measure failed or partial)")

    limits: list[tuple[int, str]] = [
        (target, f"target {target}"),
        (cap - inventory, f"cap {cap} - inventory {inventory}"),
    ]
    if remaining_in_plan is not None:
        limits.append((remaining_in_plan, f"remaining_in_plan {remaining_in_plan}"))
    value, label = min(limits, key=lambda limit: limit[0])  # the first listed wins a tie
    room = max(0, value)

    needs = [route.need for route in routes]
    quota_rooms = [max(0, q - r.inventory) for r, q in zip(routes, quotas, strict=True)]
    stage1 = water_fill(room, shares, [min(n, q) for n, q in zip(needs, quota_rooms, strict=True)])
    left = room - sum(stage1)
    # Only room a route cannot use for want of ready leads is given away: what each route would get with
    # unlimited ready leads (closed routes and sizing still apply), minus what it has ready.
    unlimited = [0 if not r.open else room if r.wanted is None else min(r.wanted, room) for r in routes]
    entitled = water_fill(room, shares, [min(u, q) for u, q in zip(unlimited, quota_rooms, strict=True)])
    donated = sum(max(0, e - r.ready) for e, r in zip(entitled, routes, strict=True))
    stage2 = water_fill(min(left, donated), shares, [n - s for n, s in zip(needs, stage1, strict=True)])

    result: list[RouteRoom] = []
    for route, quota, quota_room, need, first, second in zip(
        routes, quotas, quota_rooms, needs, stage1, stage2, strict=True
    ):
        got = first + second
        if not route.open:
            reason = "closed"
        elif got == need:
            reason = _need_label(route)
        elif first == quota_room:
            reason = f"share {quota} - inventory {route.inventory}"
        else:
            reason = f"share of global room {room}"
        if second:
            reason += f"; took {second} of the room of routes with nothing or not enough ready"
        result.append(RouteRoom(route.name, quota, got, reason))

    total = sum(r.room for r in result)
    ready = sum(needs)
    if ready < room:
        reason = f"limited by ready leads {ready} (open routes, after supply sizing)"
    else:
        reason = f"limited by {label}"
    return Allocation(tuple(result), total, reason)
