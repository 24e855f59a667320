"""The outcome policies' move (issue #13): a lead whose policy names an Instantly list (REPLIED_LIST_ID) is
moved there instead of deleted, when its hold ends or at once. History first and state 'moving', then
POST /leads/move, then its background job is followed and the lead read back by id; only a lead verified in
the list and out of its campaign loses its state row. A move not verified stays 'moving' (counted in the
inventory, outcome kept) and the next run finishes it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.errors import ServerError, UnsafeRequestError, ValidationError
from coldsync.instantly.simulator import FaultSpec
from coldsync.phases import drain
from coldsync.warehouse.base import Warehouse
from tests.instantly_fixtures import FakeClock
from tests.invariants import World, check_converged
from tests.test_instantly_client import StubSession, stub_client
from tests.worlds import MIDSIZE, SMB, small_world

JOB = "6a4431f44bcfcb421d06d78e"


@pytest.fixture(autouse=True)
def no_poll_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "MOVE_POLL_SECONDS", 0.0)


@pytest.fixture
def worlds() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def world(tmp_path: Path, worlds: ExitStack) -> World:
    return worlds.enter_context(small_world(tmp_path, replied_list=True))


def _list_id(world: World) -> str:
    return world.settings.outcome_table["replied"].list_id


def _state(world: World, lead_id: str) -> dict[str, Any] | None:
    rows = world.warehouse.query("SELECT status, outcome, completed_at FROM `{ds}.ops_inst_state` WHERE "
                                 "instantly_lead_id = @id", {"id": lead_id}, label="t")
    return rows[0] if rows else None


def _history(world: World, lead_id: str) -> list[dict[str, Any]]:
    return world.warehouse.query("SELECT status_final, policy, interest_status, completed_at, return_at FROM "
                                 "`{ds}.ops_lead_history` WHERE instantly_lead_id = @id", {"id": lead_id}, label="t")


def _letters(world: World) -> list[tuple[str, str, str | None, bool]]:
    rows = world.warehouse.query("SELECT phase, operation, instantly_lead_id, resolved_at FROM "
                                 "`{ds}.ops_dead_letters` WHERE phase = 'drain' ORDER BY occurred_at", label="t")
    return [(r["phase"], r["operation"], r["instantly_lead_id"], r["resolved_at"] is not None) for r in rows]


def _in_list(world: World, email: str) -> list[dict[str, Any]]:
    """The leads of this address in the replied list."""
    return [x for x in world.sim.leads() if x.get("list_id") == _list_id(world) and x.get("email") == email]


def _moves(world: World) -> int:
    return len(world.sim.requests_to("POST", "/leads/move"))


def _replied_lead(world: World, interest: int | None = 1) -> str:
    world.run_checked()
    lead_id = str(sorted(world.sim.leads(SMB), key=lambda x: str(x["id"]))[0]["id"])
    world.sim.finish_lead(lead_id, "replied", interest=interest)
    world.sim.advance(1 / 48)
    return lead_id


def _held_until_end(world: World, interest: int | None = 1) -> tuple[str, str, list[dict[str, Any]]]:
    """A replied lead held (recorded, 'holding'), then the clock moved past its hold: (id, email, history)."""
    lead_id = _replied_lead(world, interest)
    world.run_checked(run_topup=False)
    assert _state(world, lead_id)["status"] == "holding"  # type: ignore[index]
    email = str(world.sim.lead(lead_id)["email"])  # type: ignore[index]
    world.sim.advance(14)
    return lead_id, email, _history(world, lead_id)


def test_a_held_lead_is_moved_to_the_list_when_the_hold_ends(world: World) -> None:
    """At hold end the lead is moved (one POST /leads/move): in the list, out of its campaign, its state row
    gone, its history row as recorded (policy in_sales, never returns), its interest status kept."""
    lead_id, email, recorded = _held_until_end(world)
    assert [(r["status_final"], r["policy"], r["interest_status"], r["return_at"]) for r in recorded] == [
        ("replied", "in_sales", 1, None)]
    ended = world.run_checked(run_topup=False)
    counts = ended.report.phase("drain").counts
    assert (counts["hold_ended"], counts["moved_in_instantly"], _moves(world)) == (1, 1, 1)
    lead = world.sim.lead(lead_id)
    assert lead is not None and lead["list_id"] == _list_id(world) and "campaign" not in lead
    assert lead["lt_interest_status"] == 1 and lead["status"] == 0
    assert lead_id not in {str(x["id"]) for x in world.sim.leads(SMB)}
    assert _state(world, lead_id) is None
    assert _history(world, lead_id) == recorded
    assert [x["id"] for x in _in_list(world, email)] == [lead_id]
    assert not check_converged(world.warehouse, world.sim, world.settings, world.sim.now)


def test_a_replied_lead_is_moved_at_once_when_the_hold_is_zero(tmp_path: Path, worlds: ExitStack) -> None:
    """REPLY_HOLD_DAYS=0 with a list (MOVE): the drain records the reply and moves the lead in the same run,
    never 'holding'; its history row keeps policy replied and return_at = completed_at + 180 days."""
    world = worlds.enter_context(small_world(tmp_path, replied_list=True, settings={"reply_hold_days": "0"}))
    lead_id = _replied_lead(world, interest=None)
    email = str(world.sim.lead(lead_id)["email"])  # type: ignore[index]
    result = world.run_checked(run_topup=False)
    counts = result.report.phase("drain").counts
    assert (counts["hold_started"], counts["held"], counts["moved_in_instantly"]) == (0, 0, 1)
    assert result.report.phase("drain").plan["move"] == 1
    assert [x["id"] for x in _in_list(world, email)] == [lead_id] and _state(world, lead_id) is None
    [row] = _history(world, lead_id)
    assert (row["status_final"], row["policy"], row["interest_status"]) == ("replied", "replied", None)
    assert row["return_at"] == row["completed_at"] + dt.timedelta(days=180)


def test_a_failed_move_job_keeps_the_lead_moving_and_the_next_run_moves_it(world: World) -> None:
    """A background job that fails: state 'moving' with its outcome, history untouched, lead still in its
    campaign, a 'move_lead' dead letter; the next run moves it again, the lead ends in the list exactly once,
    its state row goes and the letter closes."""
    lead_id, email, recorded = _held_until_end(world)
    world.sim.fail_next_jobs(1)
    failed = world.run_checked(run_topup=False)
    assert failed.report.phase("drain").counts["move_unverified"] == 1
    state = _state(world, lead_id)
    assert state is not None and (state["status"], state["outcome"]) == ("moving", "replied")
    assert _history(world, lead_id) == recorded
    assert world.sim.lead(lead_id)["campaign"] == SMB  # type: ignore[index]
    assert _letters(world) == [("drain", "move_lead", lead_id, False)]
    assert any("list not verified" in w for w in failed.report.warnings)

    world.sim.advance(1 / 48)
    again = world.run_checked(run_topup=False)
    assert again.report.phase("drain").plan["retry move"] == 1
    assert _moves(world) == 2
    assert [x["id"] for x in _in_list(world, email)] == [lead_id]
    assert _state(world, lead_id) is None and _history(world, lead_id) == recorded
    assert _letters(world) == [("drain", "move_lead", lead_id, True)]


def test_a_job_still_running_at_the_poll_limit_is_verified_next_run_without_a_second_move(world: World) -> None:
    """A job that needs more time than the run's polls: the lead stays 'moving' (no dead letter: nothing
    failed); once the job completed, the next run reads the lead in the list and removes the row without
    sending another move."""
    lead_id, email, recorded = _held_until_end(world)
    world.sim.set_job_timing(polls=None, days=0.01)  # done 14.4 simulated minutes after it was created
    world.run_checked(run_topup=False)
    assert _state(world, lead_id)["status"] == "moving"  # type: ignore[index]
    assert len(world.sim.requests_to("GET", "/background-jobs/{id}")) == drain.MOVE_POLLS
    assert _letters(world) == []
    world.sim.advance(1 / 48)
    done = world.run_checked(run_topup=False)
    assert done.report.phase("drain").plan["moving: moved"] == 1
    assert _moves(world) == 1
    assert _state(world, lead_id) is None and _history(world, lead_id) == recorded
    assert [x["id"] for x in _in_list(world, email)] == [lead_id]


def test_a_moving_lead_deleted_by_hand_loses_its_row_and_keeps_its_history(world: World) -> None:
    """A 'moving' lead deleted in Instantly by hand: the next run finds it gone, removes its state row,
    sends no move, keeps its history row."""
    lead_id, _email, recorded = _held_until_end(world)
    world.sim.fail_next_jobs(1)
    world.run_checked(run_topup=False)
    assert world.client.delete_lead(lead_id) is True
    world.sim.advance(1 / 48)
    result = world.run_checked(run_topup=False)
    assert result.report.phase("drain").plan["moving: gone"] == 1
    assert _moves(world) == 1
    assert _state(world, lead_id) is None and _history(world, lead_id) == recorded
    assert _letters(world) == [("drain", "move_lead", lead_id, True)]


def test_an_unsubscribe_during_the_hold_deletes_the_lead_with_a_dnc_entry_never_moves_it(world: World) -> None:
    """With a list set, a held lead that unsubscribes is deleted (DNC entry first), not moved."""
    lead_id = _replied_lead(world, interest=None)
    world.run_checked(run_topup=False)
    email = str(world.sim.lead(lead_id)["email"])  # type: ignore[index]
    world.sim.advance(2)
    world.sim.finish_lead(lead_id, "unsubscribed")
    world.run_checked(run_topup=False)
    assert world.sim.lead(lead_id) is None and _state(world, lead_id) is None and _moves(world) == 0
    assert world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_dnc` WHERE email = @e", {"e": email},
                                 label="t")[0]["n"] == 1
    [row] = _history(world, lead_id)
    assert (row["status_final"], row["policy"]) == ("unsubscribed", "do_not_contact")


def test_moving_leads_count_in_the_inventory(world: World) -> None:
    """A lead whose move is not verified is still in its campaign: its 'moving' row counts in the inventory
    the next run measures, which equals Instantly's count of the managed campaigns."""
    lead_id, _email, _recorded = _held_until_end(world)
    world.sim.fail_next_jobs(2)
    world.run_checked(run_topup=False)
    rows = world.warehouse.query("SELECT status FROM `{ds}.ops_inst_state`", label="t")
    assert [r["status"] for r in rows].count("moving") == 1
    result = world.run_checked(run_topup=False)  # the second job fails too: still moving
    assert _state(world, lead_id)["status"] == "moving"  # type: ignore[index]
    in_instantly = len(world.sim.leads(SMB)) + len(world.sim.leads(MIDSIZE))
    assert result.report.inventory_warehouse == len(rows) == in_instantly


def test_a_dry_run_plans_the_move_and_writes_nothing(world: World) -> None:
    """A dry run at hold end plans 'hold ended: move' and sends no move (invariant 6 checked by run_checked)."""
    lead_id, _email, recorded = _held_until_end(world)
    result = world.run_checked(run_topup=False, dry_run=True)
    assert result.report.phase("drain").plan["hold ended: move"] == 1
    assert _moves(world) == 0 and _state(world, lead_id)["status"] == "holding"  # type: ignore[index]
    assert _history(world, lead_id) == recorded


def test_a_refused_move_is_a_dead_letter_and_an_outage_is_not(world: World) -> None:
    """A 400 on POST /leads/move writes one 'move_lead' dead letter for the lead; a 503 that outlasts the
    retries writes none (a service failure); both leave the lead 'moving'."""
    lead_id, _email, _recorded = _held_until_end(world)
    world.sim.set_fault("POST /leads/move", FaultSpec(statuses=[400], message="body/ids must be array"))
    world.run_checked(run_topup=False)
    assert _state(world, lead_id)["status"] == "moving"  # type: ignore[index]
    assert _letters(world) == [("drain", "move_lead", lead_id, False)]
    world.warehouse.execute("DELETE FROM `{ds}.ops_dead_letters` WHERE TRUE", label="t")
    world.sim.set_fault("POST /leads/move", FaultSpec.burst(10, 503))
    world.sim.advance(1 / 48)
    world.run(run_topup=False)
    assert _state(world, lead_id)["status"] == "moving"  # type: ignore[index]
    assert _letters(world) == []


@pytest.fixture
def engine_world(raw_warehouse: Warehouse, tmp_path: Path, worlds: ExitStack) -> World:
    return worlds.enter_context(small_world(tmp_path, warehouse=raw_warehouse, replied_list=True))


def test_hold_then_move_on_both_engines(engine_world: World) -> None:
    """The state MERGE keeps the hold's completed_at when the row turns 'moving', and removes the row once
    the move is verified (DuckDB and BigQuery)."""
    world = engine_world
    lead_id, _email, recorded = _held_until_end(world)
    world.sim.fail_next_jobs(1)
    world.run_checked(run_topup=False)
    state = _state(world, lead_id)
    assert state is not None and state["status"] == "moving"
    assert state["completed_at"] == recorded[0]["completed_at"]
    world.run_checked(run_topup=False)
    assert _state(world, lead_id) is None and _history(world, lead_id) == recorded


# ---- the client's answers --------------------------------------------------------------------------


def _job(status: str = "pending", **extra: Any) -> dict[str, Any]:
    return {"id": JOB, "workspace_id": "bffdcc34-56cd-403e-a325-def96cc9d027", "type": "move-leads",
            "progress": 0, "status": status, "created_at": "2026-06-30T21:15:32.254Z",
            "updated_at": "2026-06-30T21:15:32.254Z", **extra}


def test_move_leads_sends_explicit_ids_of_one_campaign_and_returns_the_job_id() -> None:
    """The body is exactly ids (de-duplicated), campaign, to_list_id, limit = len(ids) and
    reset_interest_status false; the answer's job id is returned."""
    session = StubSession([(200, _job(user_id=None))])
    with stub_client(session, FakeClock()) as client:
        assert client.move_leads(["a", "b", "a"], "list-1", SMB) == JOB
    assert session.sent == [("POST", "https://stub.invalid/api/v2/leads/move",
                             {"ids": ["a", "b"], "campaign": SMB, "to_list_id": "list-1", "limit": 2,
                              "reset_interest_status": False})]


def test_move_leads_refuses_a_call_without_explicit_ids_before_the_network() -> None:
    """No ids, a blank id, no campaign or no list: UnsafeRequestError and nothing sent."""
    session = StubSession([(200, _job())])
    with stub_client(session, FakeClock()) as client:
        for ids, list_id, campaign in (([], "l", SMB), (["a", " "], "l", SMB), (["a"], "l", ""), (["a"], "", SMB)):
            with pytest.raises(UnsafeRequestError):
                client.move_leads(ids, list_id, campaign)
    assert session.sent == []


def test_a_move_answer_without_a_job_id_is_an_error() -> None:
    """A 200 without a job id is an unusable answer, never a move taken, and never sent again (the move may
    have started: the next run reads where the leads are)."""
    from coldsync.instantly.errors import UnusableAnswerError
    session = StubSession([(200, {"status": "pending"})])
    with stub_client(session, FakeClock(), max_attempts=2) as client, pytest.raises(UnusableAnswerError):
        client.move_leads(["a"], "list-1", SMB)
    assert len(session.sent) == 1


def test_a_refused_move_keeps_the_server_message() -> None:
    """A 400 is a ValidationError carrying Instantly's message, not retried."""
    session = StubSession([(400, {"statusCode": 400, "error": "Bad Request",
                                  "message": "When using ids, provide either campaign or list_id"})])
    with stub_client(session, FakeClock()) as client, pytest.raises(ValidationError) as caught:
        client.move_leads(["a"], "list-1", SMB)
    assert caught.value.server_message == "When using ids, provide either campaign or list_id"
    assert len(session.sent) == 1


def test_a_job_status_outside_the_spec_is_an_error() -> None:
    """A job answered with a status the spec does not list, or for another job id, is a ServerError; a
    known one is read as it is (in-progress: not finished)."""
    for answer in (_job("exploded"), {**_job("success"), "id": "000000000000000000000000"}):
        session = StubSession([(200, answer)])
        with stub_client(session, FakeClock(), max_attempts=1) as client, pytest.raises(ServerError):
            client.background_job(JOB)
    session = StubSession([(200, _job("in-progress", progress=40))])
    with stub_client(session, FakeClock()) as client:
        job = client.background_job(JOB)
    assert (job.id, job.status.value, job.progress, job.finished) == (JOB, "in-progress", 40.0, False)
    assert session.sent[0][1] == f"https://stub.invalid/api/v2/background-jobs/{JOB}"
