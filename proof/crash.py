"""Crash at every step: for each scenario, kill the run before and after each of its operations.

A scenario is a warehouse + simulator state saved once. For every operation k of a normal run from
that state (each HTTP request, each warehouse statement) and both positions (before k; after k took
effect with its answer lost), the harness restores the state, runs with the crash armed, checks
invariants 1-5 on what the killed run did (and, at the moment of every delete, that the outcome was
already recorded), lets the killed run's lease expire, then runs normally until a run changes nothing
and checks the converged state (everything tracked, nothing finished left behind, nothing twice).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from coldsync.instantly.simulator import FaultSpec
from coldsync.settings import replace
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.demo_data import generate_source_rows
from proof.engines import Engines, proof_settings
from proof.harness import SMB, Rig, Tally, When, new_simulator
from tests.helpers import add_dnc, build

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
WHENS: tuple[When, ...] = ("before", "after")
# Small on purpose: a cap of 40 and 10 leads per bulk call give several add chunks and a full cap
# within two runs, so every kind of boundary shows up in a run of ~50 operations.
CRASH_SETTINGS = {"inventory_cap": 40, "target_new_leads_per_run": 25, "batch_size": 10, "max_active_days": 20}


def _finish(rig: Rig, fates: Iterable[str]) -> None:
    """End the sequences of the first leads in Instantly with these fates (the next run drains them)."""
    leads = [lead for lead in rig.sim.leads() if lead.get("status") == 1]
    for lead, fate in zip(leads, fates, strict=False):
        rig.sim.finish_lead(str(lead["id"]), fate)  # type: ignore[arg-type]


def _setup_run(rig: Rig, tally: Tally, context: str, **crash: object) -> None:
    record = rig.run(**crash)  # type: ignore[arg-type]
    tally.record(record, f"{context} (scenario set-up)")
    tally.add("set-up runs")
    if record.crashed:
        rig.advance_minutes(rig.settings.lock_ttl_minutes + 1)


def fresh(rig: Rig, tally: Tally) -> None:
    """Nothing done yet: the first run ever (its top-up fills the campaigns)."""


def mid_lifecycle(rig: Rig, tally: Tally) -> None:
    """Four weeks in: completed, replied, bounced and unsubscribed leads, and stale ones, to drain."""
    for _ in range(4):
        _setup_run(rig, tally, "mid_lifecycle")
        rig.sim.advance(6)
    _finish(rig, ["unsubscribed", "unsubscribed", "bounced", "bounced", "replied", "completed"])


def near_cap(rig: Rig, tally: Tally) -> None:
    """Inventory at the cap with three leads finished: the run drains three and may add three."""
    for _ in range(3):
        _setup_run(rig, tally, "near_cap")
    rig.sim.advance(1)
    _finish(rig, ["unsubscribed", "bounced", "completed"])


def leftovers(rig: Rig, tally: Tally) -> None:
    """What earlier runs left behind: 'pending' rows (a killed run recorded its intent; its add took
    effect for the first chunk only), 'draining' rows (a delete that failed, and one a killed run made
    without forgetting the rows) and open dead letters (the failed delete and a failed add)."""
    _setup_run(rig, tally, "leftovers")
    rig.sim.advance(8)
    _finish(rig, ["unsubscribed", "bounced", "completed"])
    _setup_run(rig, tally, "leftovers", crash_on="api POST /leads/add", when="after")
    rig.sim.advance(1)
    _finish(rig, ["unsubscribed", "bounced", "replied"])
    rig.sim.set_fault("DELETE /leads", FaultSpec.burst(rig.max_attempts * 2))
    rig.sim.set_fault("POST /leads/add", FaultSpec.burst(rig.max_attempts))
    _setup_run(rig, tally, "leftovers", settings=replace(rig.settings, run_housekeeping=False))
    rig.sim.clear_faults()
    rig.sim.advance(1)
    _finish(rig, ["unsubscribed", "completed", "completed"])
    _setup_run(rig, tally, "leftovers", crash_on="api DELETE /leads", when="after")
    rig.sim.advance(1)


def manual_changes(rig: Rig, tally: Tally) -> None:
    """Hands in Instantly: leads added there directly (one an address that already finished in that
    campaign), two tracked leads deleted there, and finished leads: the run must adopt, close and drain."""
    _setup_run(rig, tally, "manual_changes")
    rig.sim.advance(8)
    _setup_run(rig, tally, "manual_changes")
    finished = rig.warehouse.query("SELECT email, campaign_id FROM `{ds}.ops_lead_history` LIMIT 1", label="proof")
    for row in finished:
        rig.sim.insert_leads(str(row["campaign_id"]), [{"email": str(row["email"])}])
    rig.sim.insert_leads(SMB, [{"email": f"by-hand{n}@manual.example"} for n in range(3)])
    active = [lead for lead in rig.sim.leads() if lead.get("status") == 1]
    for lead in active[:2]:
        rig.client.delete_lead(str(lead["id"]))
    _finish(rig, ["unsubscribed", "bounced", "completed"])


SCENARIOS: dict[str, Callable[[Rig, Tally], None]] = {
    "fresh": fresh, "mid_lifecycle": mid_lifecycle, "near_cap": near_cap, "leftovers": leftovers,
    "manual_changes": manual_changes,
}


def build_rig(warehouse: Warehouse, workdir: Path, seed: int = 5) -> Rig:
    settings = proof_settings(workdir, **CRASH_SETTINGS)
    sources = list(generate_source_rows(400, seed=3))
    build(warehouse, settings, sources, as_of=START)
    add_dnc(warehouse, domain=str(sources[0]["domain"]))
    sim = new_simulator(seed, START, sequence_days=10)
    return Rig(warehouse, sim, settings, workdir=workdir)


@dataclass
class CrashCase:
    scenario: str
    k: int
    when: When


def run_scenario(rig: Rig, name: str, tally: Tally, *, step: int = 1, offset: int = 0,
                 whens: tuple[When, ...] = WHENS) -> None:
    """Build the scenario, then crash its next run at every `step`-th operation (from `offset`)."""
    SCENARIOS[name](rig, tally)
    rig.save(name)
    reference = rig.run()
    tally.record(reference, f"{name}: reference run")
    tally.add("reference runs")
    total = reference.operations
    tally.add(f"operations in the {name} run", total)
    for k in range(1 + offset, total + 1, step):
        for when in whens:
            context = f"{name}: killed {when} operation {k}"
            rig.restore(name)
            record = rig.run(crash_at=k, when=when)
            tally.record(record, context)
            if not record.crashed:
                tally.add("crash points past the end of the run")
                continue
            tally.add("crash points")
            tally.kinds.add(f"{record.crash_label} ({when})")
            rig.recover_after_crash(tally, context)
            runs = rig.converge(tally, context)
            tally.add("follow-up runs", runs)
            tally.peak("most runs to settle after one kill (the last changes nothing)", runs)


def crash_matrix(engines: Engines, engine: str, tally: Tally, *, scenarios: Iterable[str] = tuple(SCENARIOS),
                 step: int = 1, offset: int = 0, whens: tuple[When, ...] = WHENS) -> None:
    for name in scenarios:
        warehouse = engines.open(engine, f"crash-{name}")
        rig = build_rig(warehouse, engines.workdir / f"crash-{name}")
        try:
            run_scenario(rig, name, tally, step=step, offset=offset, whens=whens)
            tally.add("scenarios")
        finally:
            rig.close()
            warehouse.close()
