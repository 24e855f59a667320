"""The outcome policies' hold (issue #13): a lead whose policy holds it (in_sales, replied: REPLY_HOLD_DAYS)
is recorded when drained but stays in its campaign, state 'holding', counted in the inventory; each run
re-reads it by id (a status set during the hold updates its history row; an unsubscribe drains it at once
with a DNC entry); when the hold ends it is deleted like any drained lead."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.invariants import World, check_converged
from tests.worlds import SMB, small_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with small_world(tmp_path) as made:
        yield made


def _state(world: World, lead_id: str) -> dict[str, Any] | None:
    rows = world.warehouse.query("SELECT status, hold_until FROM `{ds}.ops_inst_state` WHERE instantly_lead_id = "
                                 "@id", {"id": lead_id}, label="t")
    return rows[0] if rows else None


def _history(world: World, lead_id: str) -> list[dict[str, Any]]:
    return world.warehouse.query("SELECT status_final, policy, interest_status, return_at FROM "
                                 "`{ds}.ops_lead_history` WHERE instantly_lead_id = @id", {"id": lead_id}, label="t")


def _dnc(world: World) -> int:
    return int(world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_dnc`", label="t")[0]["n"])


def _replied_lead(world: World, interest: int | None = 1) -> str:
    world.run_checked()
    lead_id = str(sorted(world.sim.leads(SMB), key=lambda x: str(x["id"]))[0]["id"])
    world.sim.finish_lead(lead_id, "replied", interest=interest)
    world.sim.advance(1 / 48)
    return lead_id


def test_a_replied_lead_is_held_re_read_and_deleted_when_the_hold_ends(world: World) -> None:
    """An interested reply is recorded and held 14 days (counted in the inventory), a Won set during the hold
    updates its history row, and the first run after the hold ends deletes it, keeping its outcome."""
    lead_id = _replied_lead(world)
    first = world.run_checked(run_topup=False)
    drain = first.report.phase("drain").counts
    assert drain["held"] == 1 and drain["hold_started"] == 1 and first.report.held == 1
    assert "held: 1 lead(s)" in first.report.render_text()
    assert "| Held in their campaign (outcome recorded) | 1 |" in first.report.render_markdown()
    assert world.sim.lead(lead_id) is not None  # still in its campaign
    state = _state(world, lead_id)
    assert state is not None and state["status"] == "holding"
    assert state["hold_until"].astimezone(dt.UTC) == world.sim.now + dt.timedelta(days=14)
    [row] = _history(world, lead_id)
    assert (row["status_final"], row["policy"], row["interest_status"]) == ("replied", "in_sales", 1)
    assert world.warehouse.query("SELECT in_instantly FROM `{ds}.ops_lead_history`", label="t") == [
        {"in_instantly": "held"}]
    # counted in the inventory: a tracked lead of its campaign
    tracked = int(world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state` WHERE campaign_id = @c",
                                        {"c": SMB}, label="t")[0]["n"])
    assert tracked == len(world.sim.leads(SMB))
    assert first.report.inventory_warehouse is not None and first.report.inventory_warehouse >= tracked
    assert not check_converged(world.warehouse, world.sim, world.settings, world.sim.now)

    world.sim.advance(5)  # day 5: the rep sets Won
    world.sim.set_interest_status(lead_id, 4)
    again = world.run_checked(run_topup=False)
    assert again.report.phase("drain").counts["held"] == 1
    [row] = _history(world, lead_id)
    assert (row["status_final"], row["policy"], row["interest_status"], row["return_at"]) == (
        "replied", "in_sales", 4, None)
    assert world.sim.lead(lead_id) is not None

    hold_until = state["hold_until"].astimezone(dt.UTC)
    world.sim.advance((hold_until - world.sim.now).total_seconds() / 86400 - 1 / 24)  # an hour before its end
    world.run_checked(run_topup=False)
    assert world.sim.lead(lead_id) is not None and _state(world, lead_id) is not None
    world.sim.advance(1 / 24)  # the hold ends: deleted, its state row gone, its outcome kept
    ended = world.run_checked(run_topup=False)
    assert ended.report.phase("drain").counts["hold_ended"] == 1
    assert world.sim.lead(lead_id) is None and _state(world, lead_id) is None
    assert [r["interest_status"] for r in _history(world, lead_id)] == [4]
    in_instantly = world.warehouse.query("SELECT in_instantly FROM `{ds}.ops_lead_history` WHERE instantly_lead_id = "
                                         "@id", {"id": lead_id}, label="t")
    assert in_instantly == [{"in_instantly": "held then deleted"}]


def test_an_unsubscribe_during_the_hold_drains_it_at_once_with_a_dnc_entry(world: World) -> None:
    """A held lead that unsubscribes is deleted by the next run with a DNC entry; its row becomes do_not_contact."""
    lead_id = _replied_lead(world, interest=None)
    world.run_checked(run_topup=False)
    assert _state(world, lead_id)["status"] == "holding"  # type: ignore[index]
    assert [r["policy"] for r in _history(world, lead_id)] == ["replied"]
    before = _dnc(world)
    world.sim.advance(2)
    world.sim.finish_lead(lead_id, "unsubscribed")
    result = world.run_checked(run_topup=False)
    assert result.report.phase("drain").counts["hold_ended: do_not_contact"] == 1
    assert world.sim.lead(lead_id) is None and _state(world, lead_id) is None
    assert _dnc(world) == before + 1
    [row] = _history(world, lead_id)
    assert (row["status_final"], row["policy"]) == ("unsubscribed", "do_not_contact")


def test_a_rep_saying_not_interested_ends_the_hold(world: World) -> None:
    """A rep's "not interested" during the hold ends it: deleted at once, the row's policy not_interested."""
    lead_id = _replied_lead(world)
    world.run_checked(run_topup=False)
    world.sim.advance(1)
    world.sim.set_interest_status(lead_id, -1)
    world.run_checked(run_topup=False)
    assert world.sim.lead(lead_id) is None and _state(world, lead_id) is None
    [row] = _history(world, lead_id)
    assert (row["policy"], row["interest_status"]) == ("not_interested", -1)


def test_held_leads_count_in_the_inventory(world: World) -> None:
    """A held lead takes room: with it held, the next top-up fills the campaign to the cap counting it."""
    _replied_lead(world)
    world.run_checked(run_topup=False)
    from coldsync.store import Store

    store = Store(world.warehouse, "t", world.sim.now)
    assert sum(1 for r in store.read_state() if r.status == "holding") == 1
    result = world.run_checked(target_new_leads_per_run=100)
    assert len(world.sim.leads()) == 20  # the cap, the held lead included
    assert result.report.held == 1
