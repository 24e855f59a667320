"""400 simulated days of outcome policies (issue #13), a run every 5 days with invariants 1-6 checked after each:
a won customer is never re-added; not interested returns after 365 days, not before; a plain reply after 180;
a wrong person blocks the address, not a colleague at the same domain; a held lead leaves after its hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator, SequenceRates
from coldsync.phases import drain
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import add_sources, build, lead
from tests.invariants import World

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
STEP_DAYS = 5
DAYS = 400
WON, NO, WRONG, MAYBE = "won@won.example", "no@no.example", "wrong@wrong.example", "maybe@maybe.example"
COLLEAGUE = "colleague@wrong.example"
BACKGROUND = [f"person{n}@org{n}.example" for n in range(8)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world(tmp_path)


def _world(tmp_path: Path, *, move: bool = False) -> Iterator[World]:
    sim = InstantlySimulator(api_key="sim-key", seed=11, now=START, sequence_days=10,
                             rates=SequenceRates.only("completed"))
    replied_list = sim.create_list("Replied") if move else ""
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="50",
                             target_new_leads_per_run="20", instantly_api_key="sim-key", blocklist_mirror="false",
                             replied_list_id=replied_list)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    rows = [lead(email, domain=email.split("@")[1]) for email in (WON, NO, WRONG, MAYBE, *BACKGROUND)]
    build(warehouse, settings, rows, as_of=START)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        yield World(warehouse, sim, client, settings)
    finally:
        client.close()
        sim.stop()
        warehouse.close()


def _history(world: World, email: str) -> list[dict[str, Any]]:
    return world.warehouse.query(
        "SELECT attempt_num, status_final, policy, interest_status, completed_at, return_at, in_instantly FROM "
        "`{ds}.ops_lead_history` WHERE email = @e ORDER BY attempt_num", {"e": email}, label="t")


def _in_campaigns(world: World) -> set[str]:
    return {str(x["email"]) for x in world.sim.leads() if x.get("campaign")}


def _lead_id(world: World, email: str) -> str:
    [found] = [x for x in world.sim.leads() if x.get("email") == email]
    return str(found["id"])


def test_400_days_of_outcomes_follow_their_policies(world: World) -> None:
    """Over 400 days: won is never re-added, not interested returns on day 365 + at most one run interval
    (never before), a plain reply after 180 days, wrong person never while a colleague at its domain is
    added, and the held leads leave their campaign once their 14-day hold ends."""
    world.run_checked()
    assert {x["email"] for x in world.sim.leads()} == {WON, NO, WRONG, MAYBE, *BACKGROUND}
    world.sim.finish_lead(_lead_id(world, WON), "replied", interest=1)  # interested; the rep sets Won later
    world.sim.finish_lead(_lead_id(world, NO), "replied", interest=-1)
    world.sim.finish_lead(_lead_id(world, WRONG), "replied", interest=-2)
    world.sim.finish_lead(_lead_id(world, MAYBE), "replied", interest=None)
    replied_at = world.sim.now
    won_id = _lead_id(world, WON)

    seen: dict[str, list[dt.datetime]] = {}  # email -> the run times it sat in a campaign of Instantly
    for day in range(STEP_DAYS, DAYS + 1, STEP_DAYS):
        world.sim.advance(STEP_DAYS)
        if day == 10:
            world.sim.set_interest_status(won_id, 4)  # Won, during the hold
        if day == 20:
            add_sources(world.warehouse, [lead(COLLEAGUE, domain="wrong.example")])
        world.run_checked()
        for email in _in_campaigns(world):
            seen.setdefault(email, []).append(world.sim.now)

    def days_after_reply(email: str) -> list[float]:
        return [(at - replied_at).total_seconds() / 86400 for at in seen.get(email, [])]

    # Won: drained and held by the day-5 run, its hold ends on day 19 (the day-20 run deletes it), never back.
    assert days_after_reply(WON) == [5.0, 10.0, 15.0]
    [won] = _history(world, WON)
    assert (won["policy"], won["interest_status"], won["return_at"]) == ("in_sales", 4, None)
    assert won["in_instantly"] == "held then deleted"

    # Not interested: deleted at once, back on the first run on or after completed_at + 365 days.
    first_no, *rest_no = _history(world, NO)
    assert (first_no["policy"], first_no["interest_status"], first_no["in_instantly"]) == (
        "not_interested", -1, "deleted")
    assert first_no["return_at"] == first_no["completed_at"] + dt.timedelta(days=365)
    back = days_after_reply(NO)
    assert back and 365 <= back[0] < 365 + STEP_DAYS
    assert rest_no and rest_no[0]["attempt_num"] == 2

    # A plain reply: held 14 days, then back after 180 days.
    first_maybe = _history(world, MAYBE)[0]
    assert (first_maybe["policy"], first_maybe["return_at"]) == (
        "replied", first_maybe["completed_at"] + dt.timedelta(days=180))
    maybe_days = days_after_reply(MAYBE)
    assert maybe_days[:3] == [5.0, 10.0, 15.0]  # held, then deleted by the day-20 run
    assert 180 <= maybe_days[3] < 180 + STEP_DAYS

    # Wrong person: never this address again; the colleague at the same domain goes out.
    [wrong] = _history(world, WRONG)
    assert (wrong["policy"], wrong["return_at"]) == ("wrong_person", None)
    assert days_after_reply(WRONG) == []
    assert days_after_reply(COLLEAGUE)[0] == 20.0

    # The background (completed without reply) turns: back after 90 days, several times in 400 days.
    attempts = [len(_history(world, email)) for email in BACKGROUND]
    assert min(attempts) >= 3


def test_400_days_with_replies_moved_to_a_list_and_a_failed_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """With REPLIED_LIST_ID set: held replies are moved to the list when the hold ends; a move whose background
    job fails leaves them in their campaign, 'moving' with their outcome, and the next run moves them; a moved
    won customer is never re-added, and a moved plain reply stays out while it sits in the list (the add
    skips leads in the workspace)."""
    monkeypatch.setattr(drain, "MOVE_POLL_SECONDS", 0.0)
    for world in _world(tmp_path, move=True):
        replied_list = world.settings.replied_list_id
        world.run_checked()
        world.sim.finish_lead(_lead_id(world, WON), "replied", interest=4)
        world.sim.finish_lead(_lead_id(world, MAYBE), "replied", interest=None)
        won_id, maybe_id = _lead_id(world, WON), _lead_id(world, MAYBE)
        seen: dict[str, list[int]] = {}
        for day in range(STEP_DAYS, DAYS + 1, STEP_DAYS):
            world.sim.advance(STEP_DAYS)
            if day == 20:
                world.sim.fail_next_jobs(1)  # the hold-end move of day 20 fails in Instantly
            world.run_checked()
            for email in _in_campaigns(world):
                seen.setdefault(email, []).append(day)
            if day == 20:
                assert _states(world, (WON, MAYBE)) == {WON: "moving", MAYBE: "moving"}
                assert [r["policy"] for r in _history(world, WON)] == ["in_sales"]
        # Drained and held on day 5, the hold ends on day 19: the day-20 move fails, the day-25 move works.
        assert seen[WON] == [5, 10, 15, 20] and seen[MAYBE] == [5, 10, 15, 20]
        for lead_id in (won_id, maybe_id):
            moved = world.sim.lead(lead_id)
            assert moved is not None and moved.get("list_id") == replied_list and not moved.get("campaign")
        assert _states(world, (WON, MAYBE)) == {}
        [won] = _history(world, WON)
        assert (won["status_final"], won["policy"], won["interest_status"], won["return_at"], won["in_instantly"]) == (
            "replied", "in_sales", 4, None, "held then moved")
        maybe = _history(world, MAYBE)
        assert (maybe[0]["policy"], maybe[0]["return_at"]) == (
            "replied", maybe[0]["completed_at"] + dt.timedelta(days=180))
        assert [r["status_final"] for r in maybe[1:]] and {r["status_final"] for r in maybe[1:]} == {"in_workspace"}
        assert {r["in_instantly"] for r in maybe} == {"held then moved", "not added"}
        assert maybe[1]["completed_at"] >= maybe[0]["return_at"]


def _states(world: World, emails: tuple[str, ...]) -> dict[str, str]:
    rows = world.warehouse.query("SELECT email, status FROM `{ds}.ops_inst_state`", label="t")
    return {str(r["email"]): str(r["status"]) for r in rows if r["email"] in emails}
