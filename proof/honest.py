"""Honest runs: what users found broken in issue #12, as scenarios with their invariants checked.

- Hand deletes with balanced counts: in every round a person deletes a tracked lead in Instantly and
  adds another lead to the same campaign, so Instantly's count still equals the warehouse's. The run
  must close the deleted lead with a history row `removed` and adopt the new one, in that run.
- A three-hour outage of one endpoint: POST /leads/add answers 503 for six runs, 30 minutes apart.
  No lead may get a dead letter, a history row or a cooldown; runs 1-2 warn (exit 0), runs 3-6 exit 1
  (SERVICE_FAILURE_RUNS=3); after the outage every held-back lead is added within two runs.
- An empty, complete listing that contradicts the campaign's count (and empty by-id look-ups): nothing
  may be closed, and the run must say so.

Every run is checked against invariants 1-5 (and invariant 5 at every delete and add) by the harness.
"""

from __future__ import annotations

from typing import Any

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import FaultSpec
from coldsync.warehouse.demo_data import generate_source_rows
from proof.crash import START
from proof.engines import Engines, proof_settings
from proof.harness import API_KEY, Rig, RunRecord, Tally, new_simulator
from tests.helpers import build

SETTINGS = {"inventory_cap": 60, "target_new_leads_per_run": 20, "batch_size": 10}
HALF_HOUR = 30


def _rig(engines: Engines, engine: str, name: str, seed: int, **settings: Any) -> Rig:
    warehouse = engines.open(engine, name)
    workdir = engines.workdir / name
    config = proof_settings(workdir, **{**SETTINGS, **settings})
    build(warehouse, config, list(generate_source_rows(400, seed=seed)), as_of=START)
    return Rig(warehouse, new_simulator(seed, START, sequence_days=30), config, workdir=workdir)


def _history(rig: Rig, lead_id: str) -> list[str]:
    rows = rig.warehouse.query("SELECT status_final FROM `{ds}.ops_lead_history` WHERE instantly_lead_id = @id",
                               {"id": lead_id}, label="proof.history")
    return [str(r["status_final"]) for r in rows]


def _tracked(rig: Rig) -> dict[str, str]:
    """Instantly lead id -> state status, for the tracked leads."""
    rows = rig.warehouse.query("SELECT instantly_lead_id, status FROM `{ds}.ops_inst_state` "
                               "WHERE instantly_lead_id IS NOT NULL", label="proof.state")
    return {str(r["instantly_lead_id"]): str(r["status"]) for r in rows}


def _record(tally: Tally, record: RunRecord, context: str, *, exit_code: int | None = 0) -> None:
    tally.record(record, context)
    if exit_code is not None and record.exit_code != exit_code:
        tally.violations.append(f"{context}: exit {record.exit_code}, expected {exit_code} "
                                f"({record.report.error if record.report else 'no report'})")


def hand_deletes(engines: Engines, engine: str, tally: Tally, *, rounds: int = 4, seed: int = 21) -> None:
    """Each round: one tracked lead deleted by hand and one new lead added by hand to the same campaign."""
    rig = _rig(engines, engine, "hand-deletes", seed)
    hand = InstantlyClient(API_KEY, base_url=rig.sim.base_url)
    try:
        for number in range(2):
            _record(tally, rig.run(), f"hand deletes: set-up run {number + 1}")
            rig.advance_minutes(HALF_HOUR)
        for number in range(1, rounds + 1):
            context = f"hand deletes round {number}"
            tracked = sorted(lead_id for lead_id, status in _tracked(rig).items() if status == "active")
            victim = rig.sim.lead(tracked[(number * 7) % len(tracked)])
            if victim is None:
                tally.violations.append(f"{context}: a tracked lead is not in Instantly before the round")
                continue
            campaign = str(victim["campaign"])
            hand.delete_leads(campaign, [str(victim["id"])])
            email = f"hand-added-{number}@walk-in.example"
            added = hand.add_leads(campaign, [{"email": email}], skip_if_in_workspace=True)
            newcomer = added.outcomes[0].lead_id
            if newcomer is None:
                tally.violations.append(f"{context}: the hand add did not create a lead")
                continue
            tally.add("leads deleted by hand with balanced counts")
            _record(tally, rig.run(), context)
            if _history(rig, str(victim["id"])) != ["removed"]:
                tally.violations.append(f"{context}: the lead deleted by hand has history "
                                        f"{_history(rig, str(victim['id']))}, not ['removed'], after the run")
            else:
                tally.add("deleted leads closed `removed` in that run")
            if _tracked(rig).get(newcomer) != "active":
                tally.violations.append(f"{context}: the lead added by hand is not adopted after the run")
            else:
                tally.add("hand-added leads adopted in that run")
            rig.advance_minutes(HALF_HOUR)
    finally:
        hand.close()
        rig.close()


def outage(engines: Engines, engine: str, tally: Tally, *, runs: int = 6, seed: int = 22) -> None:
    """POST /leads/add answers 503 for `runs` runs, 30 minutes apart; then it recovers."""
    rig = _rig(engines, engine, "outage", seed)
    bodies: list[Any] = []
    guard = rig.adapter.before_send

    def watch(endpoint: str, body: Any) -> None:
        if endpoint == "POST /leads/add" and isinstance(body, dict):
            bodies.append(body)
        if guard is not None:
            guard(endpoint, body)

    try:
        _record(tally, rig.run(), "outage: set-up run")
        rig.advance_minutes(HALF_HOUR)
        rig.sim.set_fault("POST /leads/add", FaultSpec(error_rate=1.0, error_status=503))
        held: set[str] = set()
        for number in range(1, runs + 1):
            context = f"outage run {number}"
            rig.adapter.before_send = watch
            bodies.clear()
            record = rig.run(expect_success=False)
            rig.adapter.before_send = guard
            _record(tally, record, context, exit_code=0 if number < rig.settings.service_failure_runs else 1)
            tally.add("runs during the outage")
            held |= {str(lead["email"]) for body in bodies for lead in body.get("leads", [])}
            letters = rig.warehouse.query("SELECT phase, operation, retry_count FROM `{ds}.ops_dead_letters` "
                                          "WHERE resolved_at IS NULL AND gave_up_at IS NULL", label="proof.letters")
            lead_letters = [r for r in letters if r["phase"] != "service"]
            service = [int(r["retry_count"]) for r in letters if r["phase"] == "service"]
            if lead_letters:
                tally.violations.append(f"{context}: {len(lead_letters)} dead letter(s) counted against leads")
            if service != [number - 1]:
                tally.violations.append(f"{context}: service letters {service}, expected one counting {number - 1}")
            failed = rig.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history` "
                                         "WHERE status_final = 'failed'", label="proof.failed")
            if int(failed[0]["n"]):
                tally.violations.append(f"{context}: {failed[0]['n']} lead(s) given up (cooldown) during an outage")
            rig.advance_minutes(HALF_HOUR)
        tally.add("leads held back by the outage", len(held))
        rig.sim.clear_faults()
        for number in range(1, 3):
            _record(tally, rig.run(), f"after the outage, run {number}")
            rig.advance_minutes(HALF_HOUR)
        present = {str(lead.get("email")) for lead in rig.sim.leads()}
        missing = held - present
        if missing:
            tally.violations.append(f"after the outage: {len(missing)} held-back lead(s) not added within two runs")
        else:
            tally.add("held-back leads added within two runs", len(held))
    finally:
        rig.close()


def contradicting_listing(engines: Engines, engine: str, tally: Tally, *, seed: int = 23) -> None:
    """A lead added by hand makes the counts disagree; every lead listing then answers empty and complete."""
    rig = _rig(engines, engine, "empty-listing", seed)
    hand = InstantlyClient(API_KEY, base_url=rig.sim.base_url)
    try:
        _record(tally, rig.run(), "empty listing: set-up run")
        rig.advance_minutes(HALF_HOUR)
        before = _tracked(rig)
        campaign = str(rig.sim.leads()[0]["campaign"])
        hand.add_leads(campaign, [{"email": "walk-in@contradiction.example"}], skip_if_in_workspace=True)

        def empty(endpoint: str, body: Any) -> Any:
            if endpoint == "POST /leads/list" and isinstance(body, dict):
                return {"items": [], "next_starting_after": None}
            return body

        rig.adapter.rewrite = empty
        record = rig.run()
        rig.adapter.rewrite = None
        _record(tally, record, "empty listing")
        tally.add("contradicting empty listings")
        removed = rig.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history` "
                                      "WHERE status_final = 'removed'", label="proof.removed")
        if int(removed[0]["n"]) or set(_tracked(rig)) < set(before):
            tally.violations.append(f"empty listing: {removed[0]['n']} tracked lead(s) closed on an answer that "
                                    "contradicts Instantly's count")
        else:
            tally.add("tracked leads kept through the contradiction", len(before))
        report = record.report
        if report is None or not any("contradict" in w or "empty" in w for w in report.warnings):
            tally.violations.append("empty listing: the contradiction is not reported")
        runs = rig.settle(tally, "empty listing, afterwards")
        tally.add("follow-up runs", runs)
    finally:
        hand.close()
        rig.close()
