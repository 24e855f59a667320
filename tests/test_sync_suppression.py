"""The sync keeps the do-not-contact promise against what people really do: entries added while a lead
is active, leads added by hand in Instantly, crashed adds, guesses from counters, and the block list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.settings import Settings, replace
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.base import Warehouse
from tests.conftest import make_settings
from tests.helpers import add_dnc, add_state, build, lead
from tests.invariants import check_after_run, snapshot

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"


@dataclass
class World:
    warehouse: Warehouse
    sim: InstantlySimulator
    client: InstantlyClient
    settings: Settings

    def run(self, **changes: object) -> SyncResult:
        settings = replace(self.settings, **changes) if changes else self.settings
        before = snapshot(self.warehouse, self.sim, settings)
        result = run_sync(settings, self.warehouse, self.client, now=self.sim.now)
        problems = check_after_run(self.warehouse, self.sim, settings, before, self.sim.now)
        assert not problems, problems
        assert result.exit_code == ExitCode.OK, result.report.render_text()
        return result

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.warehouse.query(sql, label="test.read")

    def in_instantly(self) -> set[str]:
        return {str(x["email"]) for c in (SMB, MIDSIZE) for x in self.sim.leads(c)}


LEADS = ["ann@acme.example", "bob@acme.example", "cat@blocked.example", "dan@other.example",
         "eve@other.example"]


def _world(warehouse: Warehouse, tmp_path: Path, emails: list[str]) -> Iterator[World]:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="100",
                             target_new_leads_per_run="100", instantly_api_key="sim-key")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=30)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    build(warehouse, settings, [lead(e) for e in emails], as_of=START)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        yield World(warehouse, sim, client, settings)
    finally:
        client.close()
        sim.stop()


@pytest.fixture
def world(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[World]:
    yield from _world(raw_warehouse, tmp_path, LEADS)


@pytest.fixture
def duck_world(tmp_path: Path) -> Iterator[World]:
    from coldsync.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        yield from _world(warehouse, tmp_path, LEADS)
    finally:
        warehouse.close()


def test_an_entry_added_while_the_lead_is_active_takes_it_out_within_one_run(world: World) -> None:
    """A DNC entry pasted as '<Ann+Promo@ACME.example>\\r' and a domain entry 'https://www.blocked.example/x',
    added after both leads were sent, take exactly those two out of Instantly in the next run, each
    with a history row 'suppressed', and leave the other three in."""
    world.run()
    assert world.in_instantly() == set(LEADS)
    add_dnc(world.warehouse, email="<Ann+Promo@ACME.example>\r")
    add_dnc(world.warehouse, domain="https://www.blocked.example/x")
    result = world.run()
    assert world.in_instantly() == {"bob@acme.example", "dan@other.example", "eve@other.example"}
    history = world.rows("SELECT email, status_final, reason FROM `{ds}.ops_lead_history` ORDER BY email")
    assert [(h["email"], h["status_final"]) for h in history] == [
        ("ann@acme.example", "suppressed"), ("cat@blocked.example", "suppressed")]
    assert [h["reason"] for h in history] == ["on the do-not-contact list (by email)",
                                              "on the do-not-contact list (by domain)"]
    state = world.rows("SELECT email FROM `{ds}.ops_inst_state` ORDER BY email")
    assert [s["email"] for s in state] == ["bob@acme.example", "dan@other.example", "eve@other.example"]
    assert result.report.phase("drain").counts["drained:suppressed"] == 2
    # And they never come back: a third run adds nothing.
    assert world.run().report.added == 0


def test_a_suppressed_lead_added_by_hand_in_instantly_is_deleted_not_adopted(duck_world: World) -> None:
    """An orphan added by hand whose +tag variant is on the DNC list is recorded 'suppressed' and deleted;
    an unsuppressed orphan added beside it is adopted."""
    world = duck_world
    add_dnc(world.warehouse, email="zed@hand.example")
    world.run()
    world.sim.insert_leads(SMB, [{"email": "Zed+x@Hand.example"}, {"email": "yan@hand.example"}])
    world.run()
    emails = {str(x["email"]).lower() for x in world.sim.leads(SMB)}
    assert "zed+x@hand.example" not in emails and "yan@hand.example" in emails
    history = world.rows("SELECT email, status_final FROM `{ds}.ops_lead_history`")
    assert [(h["email"], h["status_final"]) for h in history] == [("zed+x@hand.example", "suppressed")]
    state = {s["email"]: s["status"] for s in world.rows("SELECT email, status FROM `{ds}.ops_inst_state`")}
    assert state["yan@hand.example"] == "active" and "zed+x@hand.example" not in state


def test_a_pending_lead_whose_person_was_suppressed_meanwhile_is_deleted(duck_world: World) -> None:
    """A crashed add left 'pending' rows; the person is put on the DNC list before the next run: housekeeping
    finds the lead in Instantly, records it 'suppressed' and deletes it instead of adopting it."""
    world = duck_world
    # What a run killed between its intent and its add's answer leaves: pending rows, leads in Instantly.
    world.sim.insert_leads(SMB, [{"email": e} for e in LEADS])
    for email in LEADS:
        add_state(world.warehouse, email, "pending", SMB)
    add_dnc(world.warehouse, email="DAN@other.example")
    world.run()
    assert "dan@other.example" not in world.in_instantly()
    history = world.rows("SELECT email, status_final FROM `{ds}.ops_lead_history`")
    assert [(h["email"], h["status_final"]) for h in history] == [("dan@other.example", "suppressed")]
    statuses = {s["email"]: s["status"] for s in world.rows("SELECT email, status FROM `{ds}.ops_inst_state`")}
    assert statuses == {e: "active" for e in LEADS if e != "dan@other.example"}


def test_a_block_list_reject_is_confirmed_before_it_becomes_permanent(duck_world: World) -> None:
    """Instantly's add only counts in_blocklist; the sync confirms the guess on the block list and stores the
    entry's id with the DNC row (source instantly_blocklist), for the one lead it blocks."""
    world = duck_world
    world.sim.add_to_blocklist("blocked.example")
    entry_id = world.sim.blocklist_entries()[0]["id"]
    result = world.run(blocklist_mirror=False)
    assert world.in_instantly() == set(LEADS) - {"cat@blocked.example"}
    assert result.report.phase("topup").counts["confirmed on the block list"] == 1
    dnc = world.rows("SELECT domain, domain_key, source, instantly_blocklist_id FROM `{ds}.ops_dnc`")
    assert dnc == [{"domain": "blocked.example", "domain_key": "blocked.example", "source": "instantly_blocklist",
                    "instantly_blocklist_id": entry_id}]
    assert world.rows("SELECT id FROM `{ds}.ops_dead_letters`") == []


def test_an_unconfirmed_guess_stays_re_checkable_and_never_permanent(duck_world: World) -> None:
    """When the block list cannot be read, the counted lead is freed with an open dead letter: no DNC row,
    no history row, and it is ready again for the next run."""
    world = duck_world
    world.sim.add_to_blocklist("cat@blocked.example")
    world.sim.set_fault("GET /block-lists-entries", FaultSpec(statuses=[400]))
    result = world.run(blocklist_mirror=False)
    assert result.report.phase("topup").counts["unconfirmed:blocklisted"] == 1
    assert world.rows("SELECT email FROM `{ds}.ops_dnc`") == []
    assert world.rows("SELECT email FROM `{ds}.ops_lead_history`") == []
    letters = world.rows("SELECT email, operation, gave_up_at FROM `{ds}.ops_dead_letters`")
    assert letters == [{"email": "cat@blocked.example", "operation": "add_lead", "gave_up_at": None}]
    ready = world.rows("SELECT email FROM `{ds}.v_ready_for_instantly`")
    assert [r["email"] for r in ready] == ["cat@blocked.example"]


def test_the_dnc_list_is_pushed_to_the_block_list_with_its_ids(duck_world: World) -> None:
    """Pasted entries reach Instantly's block list unwrapped ('x@acme.example', 'blocked.example'), each DNC
    row stores the entry id Instantly gave it, an unusable entry is not sent, and a second run pushes
    nothing again."""
    world = duck_world
    add_dnc(world.warehouse, email="<mailto:X@Acme.example>")
    add_dnc(world.warehouse, domain="https://www.Blocked.example/contact")
    add_dnc(world.warehouse, email="not-an-address")
    result = world.run()
    entries = {e["bl_value"]: e["id"] for e in world.sim.blocklist_entries()}
    assert set(entries) == {"x@acme.example", "blocked.example"}
    rows = world.rows("SELECT email, domain, instantly_blocklist_id FROM `{ds}.ops_dnc` ORDER BY added_at, email")
    ids = {(r["email"], r["domain"]): r["instantly_blocklist_id"] for r in rows}
    assert ids == {("<mailto:X@Acme.example>", None): entries["x@acme.example"],
                   (None, "https://www.Blocked.example/contact"): entries["blocked.example"],
                   ("not-an-address", None): None}
    assert result.report.dnc_rejects == {"email value has no @: put a domain in the domain column": 1}
    assert "do-not-contact values that cannot be used (1, see v_dnc_rejects)" in result.report.render_text()
    calls = len(world.sim.requests_to("POST", "/block-lists-entries/bulk-create"))
    world.run()
    assert len(world.sim.requests_to("POST", "/block-lists-entries/bulk-create")) == calls == 1


def test_the_block_list_is_pulled_into_the_dnc_list(duck_world: World) -> None:
    """An address put on Instantly's block list by hand lands on the DNC list (source instantly_blocklist,
    with its id), so its +tag variant in the source is never sent."""
    world = duck_world
    world.sim.add_to_blocklist("Hand@Pulled.example")
    entry_id = world.sim.blocklist_entries()[0]["id"]
    world.run(run_topup=False)
    dnc = world.rows("SELECT email, email_key, source, instantly_blocklist_id FROM `{ds}.ops_dnc`")
    assert dnc == [{"email": "hand@pulled.example", "email_key": "hand@pulled.example",
                    "source": "instantly_blocklist", "instantly_blocklist_id": entry_id}]
    world.warehouse.execute(
        "INSERT INTO `{ds}.source_leads` (email, annual_revenue) VALUES ('hand+x@pulled.example', 5)",
        label="test.source")
    ready = {r["email"] for r in world.rows("SELECT email FROM `{ds}.v_ready_for_instantly`")}
    assert "hand+x@pulled.example" not in ready and "ann@acme.example" in ready


def test_a_key_without_block_list_scopes_warns_and_the_run_goes_on(duck_world: World) -> None:
    """A 403 on the block-list push is a warning naming the scopes; the leads are still added and the
    entry stays unmirrored (pushed by a later run)."""
    world = duck_world
    add_dnc(world.warehouse, email="x@acme.example")
    world.sim.set_fault("POST /block-lists-entries/bulk-create", FaultSpec(statuses=[403]))
    result = world.run()
    assert result.report.added == len(LEADS)
    assert any("block_list_entries scopes" in w for w in result.report.warnings)
    assert world.rows("SELECT instantly_blocklist_id FROM `{ds}.ops_dnc`") == [{"instantly_blocklist_id": None}]
    assert world.sim.blocklist_entries() == []
    world.run()
    assert [e["bl_value"] for e in world.sim.blocklist_entries()] == ["x@acme.example"]


def test_an_erased_person_on_the_block_list_is_not_pulled_back(duck_world: World) -> None:
    """After `--erase`, the person's address still on Instantly's block list is not copied back into the
    warehouse by the next run's pull: no plain-text row, the hash row alone keeps the suppression."""
    from coldsync.erase import run_erase, targets_from_cli

    world = duck_world
    add_dnc(world.warehouse, email="Gone@Acme.example")
    world.run(run_topup=False)
    assert [e["bl_value"] for e in world.sim.blocklist_entries()] == ["gone@acme.example"]
    outcome = run_erase(world.settings, world.warehouse, world.client, targets_from_cli(["gone@acme.example"], []),
                        now=world.sim.now)
    assert outcome.exit_code == ExitCode.OK, outcome.render_text()
    world.warehouse.execute("DELETE FROM `{ds}.ops_run_log` WHERE TRUE", label="test.full_pull")  # pull from start
    result = world.run(run_topup=False)
    rows = world.rows("SELECT email, email_key, email_hash IS NOT NULL AS hashed FROM `{ds}.ops_dnc`")
    assert rows == [{"email": None, "email_key": None, "hashed": True}]
    assert "1 block-list entr(ies) of erased persons not copied back" in result.report.phase("housekeeping").notes


def test_a_hand_added_variant_of_a_tracked_person_is_not_adopted(duck_world: World) -> None:
    """'Ann+X@acme.example' added by hand while ann@acme.example is tracked is the same person: not adopted
    (one state row per person), not deleted (a person put it there), and the run warns about it."""
    world = duck_world
    world.run()
    world.sim.insert_leads(MIDSIZE, [{"email": "Ann+X@acme.example"}])
    result = world.run(run_topup=False)
    assert result.report.phase("housekeeping").counts["not adopted: same person as a tracked lead"] == 1
    assert any("same person as a tracked lead" in w for w in result.report.warnings)
    state = world.rows("SELECT email FROM `{ds}.ops_inst_state` WHERE email LIKE 'ann%'")
    assert state == [{"email": "ann@acme.example"}]
    assert "ann+x@acme.example" in {str(x["email"]).lower() for x in world.sim.leads(MIDSIZE)}


def test_a_row_with_an_address_and_a_domain_pushes_both(duck_world: World) -> None:
    """One DNC row holding both an address and a domain reaches Instantly's block list as two entries; the
    row stores the address's entry id, and nothing is pushed again by the next run."""
    world = duck_world
    world.warehouse.execute(
        "INSERT INTO `{ds}.ops_dnc` (email, domain, source, reason, added_at) "
        "VALUES ('Amy@Both.example', 'https://www.both2.example/', 'manual', 'test', @at)",
        {"at": START}, label="test.dnc")
    world.run(run_topup=False)
    entries = {e["bl_value"]: e["id"] for e in world.sim.blocklist_entries()}
    assert set(entries) == {"amy@both.example", "both2.example"}
    stored = world.rows("SELECT instantly_blocklist_id FROM `{ds}.ops_dnc` WHERE source = 'manual'")
    assert stored == [{"instantly_blocklist_id": entries["amy@both.example"]}]
    calls = len(world.sim.requests_to("POST", "/block-lists-entries/bulk-create"))
    world.run(run_topup=False)
    assert len(world.sim.requests_to("POST", "/block-lists-entries/bulk-create")) == calls == 1


def test_a_unicode_entry_is_not_called_unusable_once_a_run_has_keyed_it(duck_world: World) -> None:
    """Before a run, a hand-inserted Unicode domain is listed as 'keyed by the next sync run'; the run keys it,
    blocks its punycode lead, and its summary no longer counts it."""
    world = duck_world
    add_dnc(world.warehouse, domain="bücher.example")
    before = world.rows("SELECT reason FROM `{ds}.v_dnc_rejects`")
    assert before == [{"reason": "domain value has non-ASCII characters: the next sync run keys it (punycode); fix "
                                 "it if still listed"}]
    world.warehouse.execute(
        "INSERT INTO `{ds}.source_leads` (email, annual_revenue) VALUES ('ann@xn--bcher-kva.example', 5)",
        label="test.source")
    result = world.run()
    assert result.report.dnc_rejects == {}
    assert world.rows("SELECT reason FROM `{ds}.v_dnc_rejects`") == []
    assert "ann@xn--bcher-kva.example" not in world.in_instantly()
