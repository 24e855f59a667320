"""Subsequences (issue #13): a lead an Instantly subsequence picked up is mid-conversation; the drain keeps it
until it leaves the subsequence, then drains it like any other. An unsubscribe or a bounce drains at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coldsync.cli import ExitCode
from coldsync.phases.drain import in_subsequence
from tests.invariants import World
from tests.worlds import SMB, small_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    # the hold is tests/test_hold.py's subject: here a drained reply leaves at once
    with small_world(tmp_path, sequence_days=30, settings={"reply_hold_days": "0"}) as made:
        yield made


def _history(world: World) -> dict[str, str]:
    rows = world.warehouse.query("SELECT instantly_lead_id, status_final FROM `{ds}.ops_lead_history`", label="t")
    return {str(r["instantly_lead_id"]): str(r["status_final"]) for r in rows}


def test_in_subsequence_reads_the_subsequence_id() -> None:
    """Only a non-blank `subsequence_id` puts a lead in a subsequence (absent, null or blank: not)."""
    assert [in_subsequence(lead) for lead in ({"subsequence_id": "7c1d"}, {}, {"subsequence_id": None},
                                              {"subsequence_id": "  "}, {"subsequence_id": 5})] == [
        True, False, False, False, False]


def test_a_lead_in_a_subsequence_is_kept_until_it_leaves_then_drained(world: World) -> None:
    """A replied lead (status 3) in a 5-day subsequence is not drained while it is in it, though its
    sequence completed; a lead that replied beside it without a subsequence is drained; once the
    subsequence is over, the next full sweep drains the first as `replied`."""
    assert world.run().exit_code == ExitCode.OK
    leads = sorted(world.sim.leads(SMB), key=lambda x: str(x["id"]))
    talking, plain = str(leads[0]["id"]), str(leads[1]["id"])
    sub = world.sim.create_subsequence(SMB, "warm follow-up", days=5)
    world.sim.finish_lead(talking, "replied", interest=1)
    world.sim.finish_lead(plain, "replied", interest=1)
    world.sim.move_to_subsequence(talking, sub)
    inside = world.sim.lead(talking)
    assert inside is not None and inside["status"] == 3 and inside["subsequence_id"] == sub
    world.sim.advance(1 / 48)
    result = world.run(run_topup=False)
    assert result.exit_code == ExitCode.OK
    assert result.report.phase("drain").counts["kept: in a subsequence"] == 1
    assert _history(world) == {plain: "replied"}
    assert world.sim.lead(talking) is not None and world.sim.lead(plain) is None
    world.sim.advance(6)  # the subsequence's 5 days are over; more than 6 hours: a full sweep is due
    after = world.sim.lead(talking)
    assert after is not None and "subsequence_id" not in after
    assert world.run(run_topup=False).exit_code == ExitCode.OK
    assert _history(world) == {plain: "replied", talking: "replied"}
    assert world.sim.lead(talking) is None


def test_an_unsubscribe_inside_a_subsequence_drains_at_once_with_a_dnc_entry(world: World) -> None:
    """A lead that unsubscribes while a subsequence emails it is recorded, put on the DNC list and deleted by
    the next run; the subsequence does not keep it."""
    assert world.run().exit_code == ExitCode.OK
    lead_id = str(sorted(world.sim.leads(SMB), key=lambda x: str(x["id"]))[0]["id"])
    sub = world.sim.create_subsequence(SMB, "warm follow-up", days=20)
    world.sim.move_to_subsequence(lead_id, sub)
    world.sim.finish_lead(lead_id, "unsubscribed")
    inside = world.sim.lead(lead_id)
    assert inside is not None and inside["subsequence_id"] == sub and inside["status"] == -2
    world.sim.advance(1 / 48)
    result = world.run(run_topup=False)
    assert result.exit_code == ExitCode.OK
    assert result.report.phase("drain").counts["kept: in a subsequence"] == 0
    assert _history(world) == {lead_id: "unsubscribed"}
    assert world.sim.lead(lead_id) is None
    dnc = world.warehouse.query("SELECT email, source FROM `{ds}.ops_dnc`", label="t")
    assert [(r["email"], r["source"]) for r in dnc] == [(inside["email"], "instantly_unsubscribe")]


def test_a_held_lead_a_subsequence_picks_up_stays_until_the_subsequence_ends(tmp_path: Path) -> None:
    """Held 14 days after a plain reply, a lead the rep marks Interested on day 3 enters a 30-day subsequence
    that starts on Interested: the hold's end does not take it out; the first full sweep after the
    subsequence ends deletes it, its history row in_sales."""
    with small_world(tmp_path) as world:
        sim, warehouse = world.sim, world.warehouse
        world.run_checked()
        lead_id = str(sorted(sim.leads(SMB), key=lambda x: str(x["id"]))[0]["id"])
        sub = sim.create_subsequence(SMB, "meeting prep", crm_status=[1], days=30)
        sim.finish_lead(lead_id, "replied", interest=None)
        sim.advance(1 / 48)
        world.run_checked(run_topup=False)  # drained: held until day 14
        sim.advance(3)
        sim.set_interest_status(lead_id, 1)
        picked = sim.lead(lead_id)
        assert picked is not None and picked["subsequence_id"] == sub
        for _ in range(3):  # days 8, 13, 18: the hold ends on day 14, the subsequence on day 33
            sim.advance(5)
            world.run_checked(run_topup=False)
        late = world.run_checked(run_topup=False)
        assert late.report.phase("drain").counts["kept: in a subsequence"] == 1
        assert sim.lead(lead_id) is not None
        state = warehouse.query("SELECT status FROM `{ds}.ops_inst_state` WHERE instantly_lead_id = @id",
                                {"id": lead_id}, label="t")
        assert state == [{"status": "holding"}]
        sim.advance(16)  # day 34: the subsequence is over
        world.run_checked(run_topup=False)
        assert sim.lead(lead_id) is None
        rows = warehouse.query("SELECT policy, interest_status, reason FROM `{ds}.ops_lead_history` "
                               "WHERE instantly_lead_id = @id", {"id": lead_id}, label="t")
        assert [(r["policy"], r["interest_status"]) for r in rows] == [("in_sales", 1)]
        assert rows[0]["reason"] == "reply (interest status 1)"  # was "reply (reply count 1)": follows the rep
