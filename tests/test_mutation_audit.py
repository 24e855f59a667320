"""Tests that kill the survivors of a mutation audit (issue #12).

Each test proves one behaviour that a code change (a mutation) could break while the rest of the suite
still passed; the comment above each test names the mutation it kills. Worlds are small and hand-made
(SMB leads at `.example` domains, revenue deciding their order), so every expected figure is exact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.cli import ExitCode
from coldsync.instantly import client as client_module
from coldsync.instantly.client import AddLeadsResult, InstantlyClient
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.settings import replace
from coldsync.store import dead_letter_id
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.base import Typed, Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.schema import TABLES
from proof.harness import CrashingAdapter, Operations
from tests.conftest import make_settings
from tests.helpers import add_dnc, add_sources, add_state, build, lead
from tests.invariants import World, check_before_add
from tests.test_invariants import LONG_LOCAL, Checked
from tests.test_sync import MIDSIZE, SMB, START

OTHER = "0a0a0a0a-1111-4222-8333-444444444444"  # a campaign of the workspace that coldsync does not manage
SOURCES = [f"lead{n:02d}@audit.example" for n in range(1, 13)]  # in priority order: revenue falls with n


def sources(emails: Sequence[str] = SOURCES) -> list[dict[str, Any]]:
    """SMB source rows (revenue under the threshold), the first email the highest revenue."""
    return [lead(email, Decimal(900_000 - 1_000 * n)) for n, email in enumerate(emails)]


@dataclass
class Audit(Checked):
    """A checked world (invariants at every add and delete, and after each run) with its HTTP adapter."""

    adapter: CrashingAdapter | None = None

    def live(self, **changes: Any) -> SyncResult:
        """One run, not checked (a world whose answers are rewritten on purpose)."""
        settings = replace(self.settings, **changes) if changes else self.settings
        return run_sync(settings, self.warehouse, self.client, now=self.sim.now)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return self.warehouse.query(sql, params or None, label="test.audit")

    def sent(self, since: int = 0) -> list[str]:
        """Every email sent in an add request after log position `since`, in order."""
        return [str(x["email"]) for r in self.sim.request_log[since:] if r.endpoint == "POST /leads/add"
                for x in r.request_body["leads"]]


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Audit]:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="10",
                             target_new_leads_per_run="10", batch_size="10", instantly_api_key="sim-key",
                             supply_days="0")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    sim.create_campaign("Other", campaign_id=OTHER)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings, sources(), as_of=START)
    session = requests.Session()
    world = Audit(warehouse, sim, InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01,
                                                  backoff_max=0.05, session=session), settings)
    world.adapter = CrashingAdapter(Operations(), world.guard)
    session.mount("http://", world.adapter)
    try:
        yield world
    finally:
        world.client.close()
        sim.stop()
        warehouse.close()


def delete_by_hand(sim: InstantlySimulator, lead_ids: Sequence[str]) -> None:
    """Delete leads in Instantly as a person would (outside coldsync, its client and its counters)."""
    person = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        for lead_id in lead_ids:
            assert person.delete_lead(lead_id)
    finally:
        person.close()


# ---- 1. skip_if_in_workspace ---------------------------------------------------------------------

# Kills: the top-up's add sent without skip_if_in_workspace (or with it false).
def test_a_lead_in_an_unmanaged_campaign_is_not_added_a_second_time(audit: Audit) -> None:
    """A lead already in an unmanaged campaign of the workspace stays there alone, rested as `in_workspace`."""
    audit.sim.insert_leads(OTHER, [{"email": SOURCES[0]}])
    assert audit.run() == []
    assert [x["campaign"] for x in audit.sim.find_leads(SOURCES[0])] == [OTHER]
    bodies = [r.request_body for r in audit.sim.requests_to("POST", "/leads/add")]
    assert [b.get("skip_if_in_workspace") for b in bodies] == [True]
    history = audit.rows("SELECT email, campaign_id, status_final FROM `{ds}.ops_lead_history`")
    assert history == [{"email": SOURCES[0], "campaign_id": SMB, "status_final": "in_workspace"}]
    state = audit.rows("SELECT email FROM `{ds}.ops_inst_state` ORDER BY email")
    assert [r["email"] for r in state] == SOURCES[1:10]  # 10 chosen, 1 rested


# ---- 2. intent before the add --------------------------------------------------------------------

# Kills: the intent rows ('pending') written after the bulk add instead of before.
def test_every_lead_sent_has_its_pending_row_at_the_moment_of_the_add(audit: Audit) -> None:
    """At the moment POST /leads/add leaves, each of its 10 leads already has its 'pending' row for that campaign."""
    seen: list[tuple[list[str], list[str]]] = []

    def watch(endpoint: str, body: Any) -> None:
        if endpoint == "POST /leads/add":
            pending = audit.rows("SELECT email FROM `{ds}.ops_inst_state` WHERE status = 'pending' "
                                 "AND campaign_id = @c ORDER BY email", c=body["campaign_id"])
            seen.append(([x["email"] for x in body["leads"]], [r["email"] for r in pending]))
        audit.guard(endpoint, body)

    assert audit.adapter is not None
    audit.adapter.before_send = watch
    assert audit.run() == []  # the guard's check_before_add found nothing
    assert seen == [(SOURCES[:10], sorted(SOURCES[:10]))]


def test_check_before_add_names_every_address_without_its_pending_row(audit: Audit) -> None:
    """check_before_add reports exactly the addresses of an add body with no 'pending' row for that campaign."""
    add_state(audit.warehouse, "pending@audit.example", "pending", SMB)
    add_state(audit.warehouse, "active@audit.example", "active", SMB)  # tracked, but not an intent
    add_state(audit.warehouse, "midsize@audit.example", "pending", MIDSIZE)  # an intent for another campaign
    body = {"campaign_id": SMB, "skip_if_in_workspace": True,
            "leads": [{"email": "pending@audit.example"}, {"email": "active@audit.example"},
                      {"email": "midsize@audit.example"}, {"email": "untracked@audit.example"}]}
    assert check_before_add(audit.warehouse, body) == [
        f"invariant 5: {who}***@audit.example sent in an add to campaign {SMB} without its 'pending' row"
        for who in ("a", "m", "u")]


# ---- 3. a rejection Instantly names becomes a suppression -----------------------------------------

# Kills: a lead Instantly names as invalid not put on the DNC list (so it is picked again next run).
def test_a_lead_named_invalid_is_suppressed_and_never_picked_again(audit: Audit,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A lead Instantly refused as invalid, known for that lead, is on the DNC list and not sent by the next run."""
    add_sources(audit.warehouse, [lead(LONG_LOCAL, Decimal(950_000))])  # first in priority order
    audit.sim.set_fault("POST /leads/add", FaultSpec(reject_emails=[LONG_LOCAL]))
    monkeypatch.setattr(client_module, "_EMAIL_SYNTAX", re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"))
    audit.settings = replace(audit.settings, inventory_cap=20, target_new_leads_per_run=20)
    problems = audit.run() + audit.run()
    # the second run had room, and nothing left to send (batches in flight together: order not fixed)
    assert sorted(audit.sent()) == sorted([LONG_LOCAL, *SOURCES]) and audit.sent().count(LONG_LOCAL) == 1
    dnc = audit.rows("SELECT email, source FROM `{ds}.ops_dnc`")
    assert dnc == [{"email": LONG_LOCAL, "source": "instantly_invalid"}]
    assert problems == []


# Kills: a lead Instantly's block list is shown to block (after a bulk add) not put on the DNC list.
def test_a_lead_confirmed_on_the_block_list_is_suppressed_and_never_picked_again(audit: Audit) -> None:
    """A lead refused as blocklisted and found on Instantly's block list gets its DNC entry; the next run skips it."""
    walled = "walled@walled-dnc.example"
    add_sources(audit.warehouse, [lead(walled, Decimal(950_000))])
    audit.sim.add_to_blocklist("walled-dnc.example")
    audit.settings = replace(audit.settings, inventory_cap=20, target_new_leads_per_run=20, blocklist_mirror=False)
    problems = audit.run() + audit.run()
    # Batches go up to INSTANTLY_ADD_CONCURRENCY at once: which add reaches the server first is not fixed.
    assert sorted(audit.sent()) == sorted([walled, *SOURCES]) and audit.sent().count(walled) == 1
    dnc = audit.rows("SELECT email, domain, source FROM `{ds}.ops_dnc`")
    assert dnc == [{"email": None, "domain": "walled-dnc.example", "source": "instantly_blocklist"}]
    assert problems == []


# Kills: a lead Instantly names as blocklisted (not only counted) not put on the DNC list.
def test_a_lead_named_blocklisted_is_suppressed_and_never_picked_again(audit: Audit,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A lead Instantly's answer names as blocklisted is on the DNC list at once, and the next run skips it."""
    walled = "walled@walled-dnc.example"
    add_sources(audit.warehouse, [lead(walled, Decimal(950_000))])
    audit.sim.add_to_blocklist(walled)
    audit.settings = replace(audit.settings, inventory_cap=20, target_new_leads_per_run=20, blocklist_mirror=False)
    original = InstantlyClient.add_leads

    def naming(self: InstantlyClient, *args: Any, **kwargs: Any) -> AddLeadsResult:
        result = original(self, *args, **kwargs)  # an answer that says which lead the block list refused
        result.outcomes = [dataclasses.replace(o, inferred=False) if o.outcome == "blocklisted" else o
                           for o in result.outcomes]
        return result

    monkeypatch.setattr(InstantlyClient, "add_leads", naming)
    problems = audit.run() + audit.run()
    # Batches go up to INSTANTLY_ADD_CONCURRENCY at once: which add reaches the server first is not fixed.
    assert sorted(audit.sent()) == sorted([walled, *SOURCES]) and audit.sent().count(walled) == 1
    assert audit.sim.requests_to("GET", "/block-lists-entries") == []  # named: nothing to confirm
    dnc = audit.rows("SELECT email, domain, source FROM `{ds}.ops_dnc`")
    assert dnc == [{"email": walled, "domain": None, "source": "instantly_blocklist"}]
    assert problems == []


# ---- 4. inventory: the larger of Instantly's count and the warehouse's ------------------------------

# Kills: measure_inventory returning Instantly's figure alone when the warehouse tracks more.
def test_room_comes_from_the_warehouse_figure_when_it_is_larger(audit: Audit) -> None:
    """Instantly counts 0 but the warehouse tracks 8 (deleted by hand): with a cap of 10 the run adds exactly 2."""
    audit.settings = replace(audit.settings, target_new_leads_per_run=8)
    assert audit.run() == []
    delete_by_hand(audit.sim, [str(x["id"]) for x in audit.sim.leads(SMB)])
    since = len(audit.sim.request_log)
    result = audit.live()
    assert result.exit_code == ExitCode.OK
    assert audit.sent(since) == SOURCES[8:10]
    assert result.report.added == 2 and result.report.inventory_before == 8


# Kills: _campaign_inventory using Instantly's per-campaign count alone when the warehouse tracks more there.
def test_a_campaign_whose_instantly_count_lags_gets_its_quota_less_what_the_warehouse_tracks(audit: Audit) -> None:
    """SMB's 6 leads deleted by hand (Instantly counts 0, the warehouse tracks 6), cap 20 split 10/10: SMB gets
    its quota 10 - 6 = 4 (not 6 = its share of the room 14), Midsize its quota 10."""
    audit.settings = replace(audit.settings, inventory_cap=20, target_new_leads_per_run=6, batch_size=20)
    assert audit.run() == []  # only SMB leads are ready: 6 SMB added
    assert len(audit.sim.leads(SMB)) == 6
    midsize = [f"mid{n:02d}@audit.example" for n in range(1, 13)]
    add_sources(audit.warehouse, [lead(email, Decimal(2_000_000 - 1_000 * n)) for n, email in enumerate(midsize)])
    delete_by_hand(audit.sim, [str(x["id"]) for x in audit.sim.leads(SMB)])
    since = len(audit.sim.request_log)
    result = audit.live(target_new_leads_per_run=20)
    assert result.exit_code == ExitCode.OK
    assert result.report.inventory_before == 6  # the global figure: max(Instantly 0, warehouse 6)
    assert [e for e in audit.sent(since) if e in SOURCES] == SOURCES[6:10]
    assert [e for e in audit.sent(since) if e in midsize] == midsize[:10]
    assert {name: entry["added"] for name, entry in result.report.routes.items()} == {"SMB": 4, "Midsize": 10}


# ---- 5. a partial analytics answer ----------------------------------------------------------------

def _without_midsize(endpoint: str, answer: Any) -> Any:
    """GET /campaigns/analytics answered without the Midsize campaign (the other items as served)."""
    if endpoint == "GET /campaigns/analytics" and isinstance(answer, list):
        return [item for item in answer if item.get("campaign_id") != MIDSIZE]
    return answer


# Kills: a partial analytics answer (one managed campaign missing) accepted as the inventory.
def test_a_partial_analytics_answer_adds_nothing_anywhere(audit: Audit) -> None:
    """Analytics missing the Midsize campaign: inventory unknown, no add in any campaign, Midsize named, exit 0."""
    add_sources(audit.warehouse, [lead("mid@audit.example", Decimal(5_000_000))])  # Midsize has a ready lead too
    assert audit.adapter is not None
    audit.adapter.rewrite = _without_midsize
    result = audit.live()
    assert result.exit_code == ExitCode.OK
    assert audit.sim.requests_to("POST", "/leads/add") == [] and audit.sim.lead_count() == 0
    assert audit.rows("SELECT email FROM `{ds}.ops_inst_state`") == []
    assert result.report.inventory_before is None and result.report.added == 0
    # The run names what it could not measure: the Midsize route's inventory (SMB's was measured).
    assert {name: entry["inventory"] for name, entry in result.report.routes.items()} == {"SMB": 0, "Midsize": None}
    assert [w for w in result.report.warnings if "analytics" in w] == [
        "campaign analytics answered without the Midsize campaign: its lead count is unknown, so nothing is added "
        "this run (the cap cannot be kept without it)"]


# ---- 6. housekeeping leaves this run's own pending rows alone ---------------------------------------

def _last_lead_unaccounted(endpoint: str, answer: Any) -> Any:
    """An add answer that neither names nor counts its last lead (created all the same): its outcome is unknown."""
    if endpoint == "POST /leads/add" and isinstance(answer, dict) and answer.get("created_leads"):
        answer = {**answer, "created_leads": answer["created_leads"][:-1],
                  "leads_uploaded": answer["leads_uploaded"] - 1, "total_sent": answer["total_sent"] - 1}
    return answer


# Kills: housekeeping reconciling the pending rows of its own run (it must only take earlier runs').
def test_housekeeping_reconciles_only_the_pending_rows_of_earlier_runs(audit: Audit) -> None:
    """A row this run left 'pending' stays so (the next run adopts it); an earlier run's pending row is freed."""
    add_state(audit.warehouse, "crashed@audit.example", "pending", SMB)  # an earlier run's, never sent
    assert audit.adapter is not None
    audit.adapter.rewrite = _last_lead_unaccounted
    first = audit.live()
    assert first.exit_code == ExitCode.OK
    state = {r["email"]: (r["status"], r["run_id"], r["instantly_lead_id"] is not None) for r in audit.rows(
        "SELECT email, status, run_id, instantly_lead_id FROM `{ds}.ops_inst_state`")}
    # room 9 (the earlier pending row counts against the cap of 10), the 9th lead's outcome unknown
    assert state == {**{email: ("active", first.report.run_id, True) for email in SOURCES[:8]},
                     SOURCES[8]: ("pending", first.report.run_id, False)}
    audit.adapter.rewrite = None
    second = audit.live()
    assert second.exit_code == ExitCode.OK and second.report.added == 1  # SOURCES[9]
    adopted = audit.rows("SELECT status, instantly_lead_id FROM `{ds}.ops_inst_state` WHERE email = @e", e=SOURCES[8])
    assert adopted == [{"status": "active", "instantly_lead_id": audit.sim.find_leads(SOURCES[8])[0]["id"]}]


# ---- 7. a lead deleted by hand in Instantly ------------------------------------------------------

# Kills: a vanished lead closed (state row deleted) without its history row `removed`.
def test_a_lead_deleted_by_hand_gets_a_history_row_removed(audit: Audit) -> None:
    """Two leads deleted by hand are found by the reconcile listing: each gets history `removed`, its state row goes."""
    audit.settings = replace(audit.settings, target_new_leads_per_run=4)
    assert audit.run() == []
    gone = {str(x["email"]): str(x["id"]) for x in audit.sim.leads(SMB)[:2]}
    delete_by_hand(audit.sim, list(gone.values()))
    assert audit.run() == []
    history = audit.rows("SELECT email, campaign_id, status_final, instantly_lead_id FROM `{ds}.ops_lead_history`")
    assert sorted(history, key=lambda r: r["email"]) == [
        {"email": email, "campaign_id": SMB, "status_final": "removed", "instantly_lead_id": lead_id}
        for email, lead_id in sorted(gone.items())]
    state = audit.rows("SELECT email FROM `{ds}.ops_inst_state` WHERE email IN UNNEST(@e)", e=list(gone))
    assert state == []


# ---- 8, 9. dead letters: given up at the limit, retired when their operation is done ----------------

@pytest.fixture
def engine_world(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[World]:
    """An empty source, DEAD_LETTER_MAX_RETRIES=3, on each engine (the give-up is a branch of one MERGE)."""
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="10",
                             target_new_leads_per_run="10", instantly_api_key="sim-key", supply_days="0",
                             dead_letter_max_retries="3")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    build(raw_warehouse, settings, as_of=START)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        yield World(raw_warehouse, sim, client, settings)
    finally:
        client.close()
        sim.stop()


def seed_letter(warehouse: Warehouse, phase: str, operation: str, email: str, retries: int) -> None:
    """An open dead letter, as an earlier run left it."""
    at = START - dt.timedelta(days=1)
    warehouse.execute(
        "INSERT INTO `{ds}.ops_dead_letters` (id, occurred_at, run_id, phase, operation, email, campaign_id, "
        "error_text, retry_count, last_attempt_at) VALUES (@id, @at, 'earlier', @phase, @op, @email, @campaign, "
        "'failed earlier', @retries, @at)",
        {"id": dead_letter_id(phase, operation, email), "at": at, "phase": phase, "op": operation, "email": email,
         "campaign": SMB, "retries": Typed(retries, "INT64")}, label="test.dead_letter")


def letters(warehouse: Warehouse) -> dict[str, tuple[Any, ...]]:
    """email -> (retry_count, resolved, given up, give_up_reason) of every dead letter."""
    rows = warehouse.query("SELECT email, retry_count, resolved_at, gave_up_at, give_up_reason "
                           "FROM `{ds}.ops_dead_letters`", label="test.letters")
    return {str(r["email"]): (r["retry_count"], r["resolved_at"] is not None, r["gave_up_at"] is not None,
                              r["give_up_reason"]) for r in rows}


# Kills: the give-up limit off by one, either way (`>` for `>=`, or `limit - 1`).
def test_a_dead_letter_is_given_up_exactly_at_the_retry_limit(engine_world: World) -> None:
    """With DEAD_LETTER_MAX_RETRIES=3 a letter at 2 retries stays open; one at 3 is given up with its reason."""
    seed_letter(engine_world.warehouse, "topup", "add_lead", "tried2@letters.example", 2)
    seed_letter(engine_world.warehouse, "topup", "add_lead", "tried3@letters.example", 3)
    assert engine_world.run().exit_code == ExitCode.OK
    assert letters(engine_world.warehouse) == {
        "tried2@letters.example": (2, False, False, None),
        "tried3@letters.example": (3, False, True, "failed 4 times (limit 3)")}


# Kills: dead letters never retired (a letter whose operation is no longer needed left open).
def test_dead_letters_whose_operation_is_done_are_resolved(audit: Audit) -> None:
    """An open delete_lead letter whose state row is gone and an add_lead letter whose lead is active are resolved."""
    audit.settings = replace(audit.settings, target_new_leads_per_run=4)
    assert audit.run() == []
    seed_letter(audit.warehouse, "drain", "delete_lead", "gone@letters.example", 1)
    seed_letter(audit.warehouse, "topup", "add_lead", SOURCES[0], 1)  # active since the run above
    seed_letter(audit.warehouse, "topup", "add_lead", "waiting@letters.example", 1)  # not done: stays open
    assert audit.run() == []
    assert letters(audit.warehouse) == {
        "gone@letters.example": (1, True, False, None),
        SOURCES[0]: (1, True, False, None),
        "waiting@letters.example": (1, False, False, None)}


# ---- 10. a dry run on a warehouse with leftovers --------------------------------------------------

def all_tables(warehouse: Warehouse) -> dict[str, list[tuple[str, ...]]]:
    """Every ops table of the schema, every row and column (sorted), to prove a run changed nothing."""
    return {spec.name: sorted(tuple(str(v) for v in r.values()) for r in warehouse.query(
        f"SELECT * FROM `{{ds}}.{spec.name}`", label="test.tables")) for spec in TABLES}  # noqa: S608 (schema names)


# Kills: a dry run performing housekeeping's writes (warehouse or Instantly).
def test_a_dry_run_with_housekeeping_work_writes_nothing(audit: Audit) -> None:
    """With leftovers (earlier pending row, count mismatch, open dead letters) a dry run writes nothing anywhere."""
    barred = "barred@audit.example"
    add_dnc(audit.warehouse, email=barred)
    audit.settings = replace(audit.settings, target_new_leads_per_run=4, blocklist_mirror=False)
    assert audit.run() == []
    # Leftovers: a pending row of a crashed run whose lead did reach Instantly, a lead deleted by hand, two
    # leads added by hand (one of a suppressed person), and open dead letters (one done, one at its limit).
    add_state(audit.warehouse, "crashed@audit.example", "pending", SMB)
    audit.sim.insert_leads(SMB, [{"email": "crashed@audit.example"}, {"email": "orphan@audit.example"},
                                 {"email": barred}])
    delete_by_hand(audit.sim, [str(audit.sim.find_leads(SOURCES[0])[0]["id"])])
    seed_letter(audit.warehouse, "drain", "delete_lead", "gone@letters.example", 1)
    seed_letter(audit.warehouse, "topup", "add_lead", "tried5@letters.example", 5)
    before = all_tables(audit.warehouse)
    since, writes = len(audit.sim.request_log), audit.client.stats.writes
    dry = audit.live(dry_run=True)
    assert dry.exit_code == ExitCode.OK
    assert all_tables(audit.warehouse) == before
    assert [r.endpoint for r in audit.sim.request_log[since:] if r.method != "GET"
            and r.endpoint != "POST /leads/list"] == []
    assert audit.client.stats.writes == writes and dry.report.api_writes == 0 and dry.report.warehouse_writes == 0
    planned = dry.report.phase("housekeeping").plan  # the leftovers were real work, only planned
    assert {k: planned[k] for k in ("adopt pending", "adopt orphan", "remove suppressed", "close vanished",
                                    "resolve dead letter", "give up dead letter")} == {
        "adopt pending": 1, "adopt orphan": 1, "remove suppressed": 1, "close vanished": 1,
        "resolve dead letter": 1, "give up dead letter": 1}
