"""The reliability proof (package `proof/`): a sample of it in the default suite, and the bugs it found.

The full proof is `python -m proof` (figures in docs/RELIABILITY.md); `RELIABILITY_FULL=1` runs it here
too, as the slow test at the end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from coldsync.warehouse.duckdb import DuckDBWarehouse
from proof import honest
from proof.concurrency import bigquery_pairs, duckdb_pairs
from proof.crash import build_rig, crash_matrix
from proof.engines import Engines
from proof.harness import InjectedCrash, Operations, Rig, Tally
from proof.hostile import hostile_api, hostile_source
from proof.hostile_dnc import hostile_dnc
from proof.sigkill import sigkill_trials
from proof.storms import storm_runs

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    built = build_rig(warehouse, tmp_path)
    try:
        yield built
    finally:
        built.close()
        warehouse.close()


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Engines]:
    found = Engines(tmp_path)
    try:
        yield found
    finally:
        found.close()


@contextmanager
def _engines(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> Iterator[Engines]:
    """The proof's engines, with the BigQuery emulator when the lane is BigQuery's."""
    emulator = request.getfixturevalue("bq_emulator") if engine == "bigquery" else None
    found = Engines(tmp_path, emulator=emulator)
    try:
        yield found
    finally:
        found.close()


def _clean(tally: Tally) -> None:
    assert not tally.violations, "\n".join(tally.violations[:20])


# ---- the harness itself ------------------------------------------------------------------------------

def test_a_crash_is_a_base_exception_and_kills_every_later_operation() -> None:
    """InjectedCrash escapes `except Exception`, and once fired every later operation of the run dies too."""
    ops = Operations()
    ops.arm(2, "after")
    done: list[int] = []
    ops.perform("a", lambda: done.append(1))
    with pytest.raises(InjectedCrash):
        ops.perform("b", lambda: done.append(2))
    with pytest.raises(InjectedCrash):
        ops.perform("c", lambda: done.append(3))
    assert done == [1, 2] and not issubclass(InjectedCrash, Exception)


def test_the_harness_catches_a_drain_that_deletes_before_recording(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the drain's history write switched off, the checks report invariant 5 at the moment of the delete."""
    from coldsync.store import Store

    rig.run()
    rig.sim.advance(30)
    monkeypatch.setattr(Store, "record_history", lambda self, rows: 0)
    record = rig.run()
    assert any("deleted before its history row" in p for p in record.problems)


# ---- a sample of each part of the proof ----------------------------------------------------------------

# Three of the proof's five scenarios by default (the other two, and every operation, with RELIABILITY_FULL=1).
SAMPLED_SCENARIOS = (["fresh", "mid_lifecycle", "near_cap", "leftovers", "manual_changes"]
                     if os.environ.get("RELIABILITY_FULL") else ["fresh", "leftovers", "manual_changes"])


@pytest.mark.parametrize("scenario", SAMPLED_SCENARIOS)
def test_crash_sample_keeps_every_invariant(engines: Engines, scenario: str) -> None:
    """Killed before and after every 16th operation of a run (offsets 0, 9, 12 by scenario), then run until
    nothing changes: invariants 1-5 after every run, nothing lost, nothing twice, the lease respected
    (RELIABILITY_FULL=1 / `python -m proof` kill at every operation)."""
    tally = Tally()
    offset = 3 * ["fresh", "mid_lifecycle", "near_cap", "leftovers", "manual_changes"].index(scenario)
    crash_matrix(engines, "duckdb", tally, scenarios=[scenario], step=16, offset=offset)
    _clean(tally)
    assert tally.counts["crash points"] >= 2


@pytest.mark.bigquery
def test_crash_sample_on_bigquery_keeps_every_invariant(tmp_path: Path, bq_emulator: Any) -> None:
    """The same check on the BigQuery emulator, at a few crash points of the run with leftovers."""
    tally = Tally()
    engines = Engines(tmp_path, emulator=bq_emulator)
    # Operation 10 of its ~57, before and after (2 crash points; each pair costs the suite ~30 s on the
    # emulator; `python -m proof` runs many more there).
    crash_matrix(engines, "bigquery", tally, scenarios=["leftovers"], step=57, offset=9)
    _clean(tally)
    assert tally.counts["crash points"] >= 2


def test_sigkill_sample_settles_with_every_invariant(tmp_path: Path) -> None:
    """sync_once.py SIGKILLed at random moments: the lease holds the next run off, then runs settle cleanly."""
    tally = Tally()
    sigkill_trials(tmp_path, tally, trials=3, seed=2)
    _clean(tally)
    assert tally.counts["processes killed"] == 3


def test_storm_sample_loses_nothing_and_shows_every_failure(engines: Engines) -> None:
    """Runs under random fault storms at both edges: invariants hold, every failure is visible, runs end."""
    tally = Tally()
    storm_runs(engines, "duckdb", tally, runs=15, seed=5)
    _clean(tally)
    assert tally.counts["faulted requests"] > 20 and tally.max_run_seconds < 30


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def test_hostile_source_rows_are_each_sent_or_recorded(tmp_path: Path, engine: str,
                                                       request: pytest.FixtureRequest) -> None:
    """The corpus of bad rows: no crash, each bad row skipped with its reason in v_source_rejects (or sent
    sanely, or held back by DNC), good rows untouched, the summary counting the rejects."""
    emulator = request.getfixturevalue("bq_emulator") if engine == "bigquery" else None
    engines = Engines(tmp_path, emulator=emulator)
    tally = Tally()
    hostile_source(engines, engine, tally)
    _clean(tally)
    assert tally.counts["bad source rows"] >= 60


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def test_hostile_dnc_entries_hold_back_their_person(tmp_path: Path, engine: str,
                                                    request: pytest.FixtureRequest) -> None:
    """Raw DNC entries in pasted forms each hold back their lead, spare their control, or are in v_dnc_rejects."""
    emulator = request.getfixturevalue("bq_emulator") if engine == "bigquery" else None
    tally = Tally()
    hostile_dnc(Engines(tmp_path, emulator=emulator), engine, tally, added_later=False)
    _clean(tally)
    counts = tally.counts
    assert counts["blocked leads held back"] == counts["entries that must hold back their lead"] >= 30
    assert counts["control leads sent"] == counts["entries with a control lead that must be sent"] >= 5
    assert counts["unusable entries in v_dnc_rejects"] == counts["unusable entries that must be reported"] >= 15


def test_dnc_entries_added_while_their_leads_run_take_them_out_within_one_run(tmp_path: Path) -> None:
    """Raw DNC entries added for leads already in Instantly (Unicode ones too) take those leads out in one run."""
    tally = Tally()
    hostile_dnc(Engines(tmp_path), "duckdb", tally)
    _clean(tally)
    assert tally.counts["leads of persons suppressed later taken out within one run"] == 5


@pytest.mark.bq_always
@pytest.mark.parametrize("engine", ["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def test_hand_deletes_with_balanced_counts_are_closed_and_adopted_in_the_run(tmp_path: Path, engine: str,
                                                                           request: pytest.FixtureRequest) -> None:
    """A lead deleted by hand while another is added by hand (counts balance): closed `removed` and the
    newcomer adopted, in that run, every round (3 rounds on DuckDB; 1 on the emulator: the same SQL each round)."""
    rounds = 3 if engine == "duckdb" else 1
    tally = Tally()
    with _engines(tmp_path, engine, request) as engines:
        honest.hand_deletes(engines, engine, tally, rounds=rounds)
    _clean(tally)
    assert tally.counts["deleted leads closed `removed` in that run"] == rounds
    assert tally.counts["hand-added leads adopted in that run"] == rounds


@pytest.mark.bq_always
@pytest.mark.parametrize("engine", ["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def test_outage_of_one_endpoint_benches_nobody_and_recovers_within_two_runs(tmp_path: Path, engine: str,
                                                                           request: pytest.FixtureRequest) -> None:
    """Six runs of POST /leads/add answering 503 (three on the emulator, the third the first to exit 1): no lead
    letter or cooldown, runs from the third exit 1, and every held-back lead is added within two runs of the
    recovery."""
    runs = 6 if engine == "duckdb" else 3
    tally = Tally()
    with _engines(tmp_path, engine, request) as engines:
        honest.outage(engines, engine, tally, runs=runs)
    _clean(tally)
    assert tally.counts["runs during the outage"] == runs
    assert tally.counts["held-back leads added within two runs"] == tally.counts["leads held back by the outage"] >= 10


@pytest.mark.bq_always
@pytest.mark.parametrize("engine", ["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def test_an_empty_listing_that_contradicts_the_count_closes_nothing(tmp_path: Path, engine: str,
                                                                    request: pytest.FixtureRequest) -> None:
    """Every lead listing answers empty and complete while Instantly's count says otherwise: nothing is
    closed, the run says so, and later runs settle."""
    tally = Tally()
    with _engines(tmp_path, engine, request) as engines:
        honest.contradicting_listing(engines, engine, tally)
    _clean(tally)
    assert tally.counts["tracked leads kept through the contradiction"] == 20


def test_hostile_answers_delete_nothing_misunderstood(engines: Engines) -> None:
    """Broken lead objects, huge pages and endless cursors: nothing misunderstood is deleted, all is reported."""
    tally = Tally()
    hostile_api(engines, "duckdb", tally, rounds=6, seed=3)
    _clean(tally)
    assert tally.counts["lead objects broken"] > 10


def test_two_sync_once_processes_on_one_duckdb_file_exactly_one_acts(tmp_path: Path) -> None:
    """Two sync_once.py started together on one warehouse file: one acts (0), the other exits 3."""
    tally = Tally()
    duckdb_pairs(tmp_path, tally, pairs=1)
    _clean(tally)


@pytest.mark.bigquery
def test_two_processes_on_one_bigquery_dataset_exactly_one_acts(tmp_path: Path, bq_emulator: Any) -> None:
    """Two processes run the sync at once on one emulator dataset: the run lock lets exactly one act."""
    tally = Tally()
    bigquery_pairs(Engines(tmp_path, emulator=bq_emulator), tally, pairs=1)
    _clean(tally)


# ---- product bugs the proof found (regressions) -----------------------------------------------------

def _rewrite_leads(rig: Rig, change: Any) -> None:
    def rewrite(endpoint: str, answer: Any) -> Any:
        if endpoint == "POST /leads/list" and isinstance(answer, dict):
            answer["items"] = [change(dict(item)) for item in answer.get("items", [])]
        return answer

    rig.adapter.rewrite = rewrite


def test_a_failed_lock_release_is_shown_in_the_run(rig: Rig) -> None:
    """When the lock cannot be released, the run says so (the next runs wait for the lease to expire)."""
    rig.crashing_warehouse.fail("lock.release", "before")
    record = rig.run()
    assert record.problems == []
    assert record.report is not None and any("lock" in w for w in record.report.warnings)


def test_a_blank_lead_id_from_instantly_is_not_taken_for_an_id(rig: Rig) -> None:
    """A listed lead whose id is "" is kept (reported), and does not spoil the deletes of the other leads."""
    rig.run()
    rig.sim.advance(30)
    victim = next(lead for lead in rig.sim.leads() if lead["status"] != 1)
    _rewrite_leads(rig, lambda lead: {**lead, "id": ""} if lead["id"] == victim["id"] else lead)
    record = rig.run()
    assert record.problems == []
    rows = rig.warehouse.query("SELECT instantly_lead_id FROM `{ds}.ops_inst_state` WHERE email = @e",
                               {"e": victim["email"]}, label="test")
    assert [r["instantly_lead_id"] for r in rows] == [victim["id"]]
    assert record.report is not None and record.report.phase("drain").counts["delete_failed"] == 0
    blank = rig.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history` WHERE instantly_lead_id = ''",
                                label="test")
    assert blank[0]["n"] == 0


def test_a_stale_look_up_answer_without_ids_does_not_fail_the_run(rig: Rig) -> None:
    """Lead objects without an id (in every listing, the stale look-up included) are kept, not a crash."""
    rig.run()
    rig.sim.advance(25)  # past MAX_ACTIVE_DAYS=20: the still-active leads are stale
    _rewrite_leads(rig, lambda lead: {k: v for k, v in lead.items() if k != "id"})
    record = rig.run()
    assert record.problems == [] and record.exit_code == 0


def test_the_same_address_finished_in_both_campaigns_drains_both(rig: Rig) -> None:
    """An address in both managed campaigns (one added by hand) and finished in both: both outcomes are
    recorded and both leads deleted, instead of a failing state MERGE that would block every run."""
    rig.run()
    tracked = rig.sim.leads()[0]
    other = next(c for c in (rig.settings.smb_campaign_id, rig.settings.midsize_campaign_id)
                 if c != tracked["campaign"])
    rig.sim.insert_leads(other, [{"email": tracked["email"]}])
    for lead in rig.sim.find_leads(tracked["email"]):
        rig.sim.finish_lead(str(lead["id"]), "completed")
    record = rig.run()
    assert record.problems == [] and record.exit_code == 0
    assert rig.sim.find_leads(tracked["email"]) == []
    history = rig.warehouse.query("SELECT campaign_id FROM `{ds}.ops_lead_history` WHERE email = @e",
                                  {"e": tracked["email"]}, label="test")
    assert len(history) == 2


def test_retried_deletes_of_leads_already_gone_do_not_free_room(rig: Rig) -> None:
    """Deletes retried for leads a killed run already removed free no room: the cap holds even when
    Instantly holds more leads than the warehouse tracks."""
    rig.run()
    rig.sim.insert_leads(SMB, [{"email": f"by-hand{n}@manual.example"} for n in range(8)])
    for lead in [lead for lead in rig.sim.leads() if lead["status"] == 1][:5]:
        rig.sim.finish_lead(str(lead["id"]), "completed")
    killed = rig.run(crash_on="api DELETE /leads", when="after")
    assert killed.crashed
    rig.advance_minutes(61)
    record = rig.run()
    assert record.problems == []
    assert rig.sim.lead_count() <= rig.settings.inventory_cap


def test_an_adopted_lead_with_an_earlier_attempt_keeps_its_outcome(rig: Rig) -> None:
    """A lead re-added by hand to a campaign where its address already finished once is adopted as a new
    attempt: when it finishes, its outcome is recorded before it is deleted (not merged into the old row)."""
    rig.run()
    first = rig.sim.leads()[0]
    rig.sim.finish_lead(str(first["id"]), "completed")
    rig.run()
    assert rig.sim.lead(str(first["id"])) is None
    rig.sim.insert_leads(str(first["campaign"]), [{"email": first["email"]}])
    rig.run()  # counts disagree: housekeeping adopts the lead added by hand
    again = rig.sim.find_leads(first["email"])[0]
    rig.sim.finish_lead(str(again["id"]), "unsubscribed")
    record = rig.run()
    assert record.problems == []
    attempts = rig.warehouse.query("SELECT attempt_num, status_final FROM `{ds}.ops_lead_history` WHERE email = @e "
                                   "ORDER BY attempt_num", {"e": first["email"]}, label="test")
    assert [(r["attempt_num"], r["status_final"]) for r in attempts] == [(1, "completed"), (2, "unsubscribed")]


# ---- the whole proof (slow: opt in) ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RELIABILITY_FULL"),
                    reason="the full proof: RELIABILITY_FULL=1 (or python -m proof)")
def test_full_proof_reports_no_violation(tmp_path: Path) -> None:
    """Every crash point of every scenario, the storms, the corpus, the kills and the concurrency checks."""
    from proof.__main__ import run_all, violations

    logging.disable(logging.CRITICAL)
    try:
        parts = run_all(tmp_path, quick=False, bigquery=None)
    finally:
        logging.disable(logging.NOTSET)
    assert not violations(parts), "\n".join(violations(parts)[:20])
