"""Fault storms: many runs over a simulated lifecycle, each under a random mix of faults at both edges.

Instantly side (the simulator's fault injection): 429 storms (with and without Retry-After), 5xx
bursts (JSON and CDN HTML pages), timeouts (some applied by the server, their answer lost), slow
responses, malformed success bodies (HTML, truncated, empty, wrong shape), random error rates, partial
bulk rejections and broken paging. Warehouse side: a statement fails (before it runs, or after it took
effect), including the state update right after a successful delete in Instantly. One run in five
is also killed at a random operation in the middle of its storm.

After every run: invariants 1-5 (and, at every delete, that the outcome was recorded first); every
call the client gave up on and every injected warehouse error must show in the run (failed outcome,
warning, note or dead letter). After the storm: faults off, runs until nothing changes, then nothing
may be lost (everything tracked, nothing finished left behind) or recorded twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from coldsync.instantly.simulator import FaultSpec
from coldsync.warehouse.demo_data import generate_source_rows
from proof.crash import START
from proof.engines import Engines, proof_settings
from proof.harness import Rig, Tally, new_simulator
from tests.helpers import add_dnc, build

STORM_SETTINGS = {"inventory_cap": 60, "target_new_leads_per_run": 30, "batch_size": 10, "max_active_days": 20}
READ_TIMEOUT = 0.5  # the client's read timeout in the storm: stalls last longer
ENDPOINTS = ("POST /leads/add", "POST /leads/list", "DELETE /leads", "GET /campaigns/analytics", "GET /campaigns/*")
# Warehouse statements a storm may fail; drain.state_gone runs right after a successful delete in Instantly.
STATEMENTS = ("drain.state_gone", "history.record", "drain.dnc", "drain.state_draining", "topup.intent",
              "topup.state", "topup.read_ready", "state.read", "housekeeping.state", "drain.dead_letters",
              "topup.dead_letters", "run_log.write", "lock.release", "lock.acquire", "ready_counts")

Storm = Callable[[Rig, random.Random], str]


def storm_429(rig: Rig, rng: random.Random) -> str:
    n = rng.randint(3, 14)
    rig.sim.set_fault(rng.choice((*ENDPOINTS, "*")), FaultSpec.storm(n, retry_after=rng.choice((None, 0.05, 2.0))))
    return f"429 storm x{n}"


def burst_5xx(rig: Rig, rng: random.Random) -> str:
    n, status, html = rng.randint(2, 9), rng.choice((500, 502, 503, 504)), rng.random() < 0.5
    rig.sim.set_fault(rng.choice(ENDPOINTS), FaultSpec.burst(n, status, html=html))
    return f"{status} burst x{n}{' (HTML)' if html else ''}"


def timeouts(rig: Rig, rng: random.Random) -> str:
    n, applies = rng.randint(1, 4), rng.random() < 0.6
    rig.sim.set_fault(rng.choice(ENDPOINTS), FaultSpec.timeouts(n, READ_TIMEOUT + 0.3, applies=applies))
    return f"timeouts x{n}{' (applied, answer lost)' if applies else ''}"


def slow(rig: Rig, rng: random.Random) -> str:
    latency = rng.uniform(0.02, 0.15)
    rig.sim.set_fault("*", FaultSpec(latency=latency))
    return f"slow responses (+{latency * 1000:.0f} ms)"


def malformed(rig: Rig, rng: random.Random) -> str:
    n, kind = rng.randint(1, 4), rng.choice(("html", "truncated", "empty", "wrong_shape"))
    rig.sim.set_fault(rng.choice(ENDPOINTS), FaultSpec(malformed=n, malformed_kind=kind))  # type: ignore[arg-type]
    return f"malformed {kind} bodies x{n}"


def random_errors(rig: Rig, rng: random.Random) -> str:
    rate, status = rng.uniform(0.05, 0.3), rng.choice((429, 500, 503))
    rig.sim.set_fault("*", FaultSpec(error_rate=rate, error_status=status))
    return f"random {status} at {rate:.0%}"


def partial_rejection(rig: Rig, rng: random.Random) -> str:
    rate = rng.uniform(0.1, 0.5)
    rig.sim.set_fault("POST /leads/add", FaultSpec(reject_rate=rate))
    return f"bulk add rejects {rate:.0%}"


def paging(rig: Rig, rng: random.Random) -> str:
    mode = rng.choice(("repeat_cursor", "endless", "no_cursor"))
    rig.sim.set_fault("POST /leads/list", FaultSpec(paging=mode))  # type: ignore[arg-type]
    return f"paging {mode}"


def warehouse_failure(rig: Rig, rng: random.Random) -> str:
    label = rng.choice(STATEMENTS)
    when = rng.choice(("before", "after"))
    rig.crashing_warehouse.fail(label, when)  # type: ignore[arg-type]
    return f"warehouse {label} fails {when}"


STORMS: tuple[Storm, ...] = (storm_429, burst_5xx, timeouts, slow, malformed, random_errors, partial_rejection,
                             paging, warehouse_failure)


def _faulted(rig: Rig, position: int) -> tuple[int, int]:
    """(requests answered with an injected fault, leads rejected by the bulk add) since `position`."""
    faults = rejected = 0
    for record in rig.sim.request_log[position:]:
        if record.fault:
            faults += 1
        if record.endpoint == "POST /leads/add" and isinstance(record.response_body, dict):
            value = record.response_body.get("invalid_email_count")
            rejected += value if isinstance(value, int) else 0
    return faults, rejected


def storm_runs(engines: Engines, engine: str, tally: Tally, *, runs: int = 120, seed: int = 11) -> None:
    """`runs` runs, each under 1-3 random storms, over ~`runs` simulated days; then convergence."""
    warehouse = engines.open(engine, "storms")
    workdir = engines.workdir / "storms"
    settings = proof_settings(workdir, **STORM_SETTINGS)
    sources = list(generate_source_rows(1500, seed=4))
    build(warehouse, settings, sources, as_of=START)
    add_dnc(warehouse, domain=str(sources[0]["domain"]))
    sim = new_simulator(seed, START, sequence_days=10)
    rig = Rig(warehouse, sim, settings, workdir=workdir, read_timeout=READ_TIMEOUT)
    rng = random.Random(seed)
    kinds: dict[str, int] = {}
    try:
        for number in range(1, runs + 1):
            rig.sim.advance(rng.uniform(0.2, 2.0))
            chosen = rng.sample(STORMS, rng.randint(1, 3))
            # `*` faults match every request: install them last so endpoint faults keep their turn.
            chosen.sort(key=lambda storm: storm in (slow, random_errors))
            names = [storm(rig, rng) for storm in chosen]
            for storm in chosen:
                kinds[storm.__name__] = kinds.get(storm.__name__, 0) + 1
            # One run in five is also killed at a random operation, in the middle of its storm.
            crash_at = rng.randint(1, 45) if rng.random() < 0.2 else None
            when = rng.choice(("before", "after"))
            position = len(rig.sim.request_log)
            record = rig.run(expect_success=False, crash_at=crash_at, when=when)  # type: ignore[arg-type]
            rig.sim.clear_faults()
            rig.crashing_warehouse.failures.clear()
            faults, rejected = _faulted(rig, position)
            tally.add("storm runs")
            tally.add("faulted requests", faults)
            tally.add("leads rejected by a partial bulk add", rejected)
            tally.add("warehouse statements failed", len(record.warehouse_failures))
            tally.add("calls given up after retries", len(record.give_ups))
            if record.report is not None and record.report.outcome == "failed":
                tally.add("runs failed (exit 1, reported)")
            if record.crashed:
                names.append(f"killed {when} operation {crash_at} ({record.crash_label})")
                tally.add("storm runs also killed")
            tally.record(record, f"storm run {number} ({', '.join(names)})")
            if record.exit_code == 3:  # a warehouse failure kept the lock: its lease must run out
                tally.add("runs blocked by a lease left by a failed release")
            if rig.lock_holder() is not None:
                rig.advance_minutes(settings.lock_ttl_minutes + 1)
        runs_needed = rig.settle(tally, "after the storm")
        tally.add("follow-up runs after the storm", runs_needed)
        for name, count in sorted(kinds.items()):
            tally.add(f"storm kind {name}", count)
    finally:
        rig.close()
        warehouse.close()

