"""Reconciliation (coldsync/phases/reconcile.py): leads removed, added or re-added by hand in Instantly are
found by a bounded rolling audit and a bounded listing, confirmed before anything is closed, and Instantly
answers that contradict its own count close nothing."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.phases.reconcile import MOVED_OUTSIDE_REASON, REMOVED_REASON
from coldsync.store import Store
from coldsync.sync import SyncResult
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build
from tests.invariants import World

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
QUIET = {"run_drain": False, "run_topup": False}  # housekeeping alone: its calls are the reconciliation's


class Rewriting(HTTPAdapter):
    """Answers POST /leads/list with an empty page when its body carries one of `keys` (a hostile Instantly)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()
        self.hide: set[str] = set()  # lead ids left out of look-ups by id or email (not of campaign listings)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().send(request, *args, **kwargs)
        if request.method == "POST" and str(request.url).endswith("/leads/list") and request.body:
            body = json.loads(request.body)
            hit = any(key in body for key in self.keys if key != "campaign") or (
                "campaign" in self.keys and "campaign" in body and "filter" not in body)
            if hit and response.status_code == 200:
                response._content = json.dumps({"items": []}).encode()
            elif self.hide and ("ids" in body or "contacts" in body) and response.status_code == 200:
                page = json.loads(response.content)
                page["items"] = [x for x in page.get("items", []) if x.get("id") not in self.hide]
                response._content = json.dumps(page).encode()
        return response


@pytest.fixture
def worlds() -> Iterator[list[tuple[World, Rewriting]]]:
    made: list[tuple[World, Rewriting]] = []
    yield made
    for world, _adapter in made:
        world.client.close()
        world.sim.stop()


def _world(warehouse: Warehouse, tmp_path: Path, made: list[tuple[World, Rewriting]],
           **env: str) -> tuple[World, Rewriting]:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, instantly_api_key="sim-key",
                             blocklist_mirror="false", **env)
    sim = InstantlySimulator(api_key="sim-key", seed=7, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    build(warehouse, settings, as_of=START)
    adapter = Rewriting()
    session = requests.Session()
    session.mount("http://", adapter)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05, session=session)
    world = World(warehouse, sim, client, settings)
    made.append((world, adapter))
    return world, adapter


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Warehouse]:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", "source_leads")
    try:
        yield warehouse
    finally:
        warehouse.close()


def seed(world: World, n: int, prefix: str, *, campaign: str = SMB, added_at: dt.datetime | None = None) -> list[str]:
    """`n` leads in Instantly, tracked 'active' in the warehouse; their ids in id order."""
    created = world.sim.insert_leads(campaign, [{"email": f"{prefix}{i}@seed.example"} for i in range(n)])
    rows = [{"email": c["email"], "op": "upsert", "status": "active", "instantly_lead_id": c["id"],
             "campaign_id": campaign, "sequence_target": "SMB", "attempt_num": 1, "outcome": None,
             "added_at": added_at or world.sim.now, "arm": "SMB"} for c in created["created_leads"]]
    Store(world.warehouse, "seed", world.sim.now).apply_state(rows, label="test.seed")
    return sorted(str(c["id"]) for c in created["created_leads"])


def state(world: World) -> dict[str, tuple[str, str, str]]:
    """email -> (status, lead id, campaign)."""
    rows = world.warehouse.query("SELECT email, status, instantly_lead_id, campaign_id FROM `{ds}.ops_inst_state`",
                                 label="test.state")
    return {str(r["email"]): (str(r["status"]), str(r["instantly_lead_id"]), str(r["campaign_id"])) for r in rows}


def history(world: World) -> list[tuple[str, str, str, str]]:
    """(email, lead id, status_final, reason) of every history row, sorted."""
    rows = world.warehouse.query("SELECT email, instantly_lead_id, status_final, reason FROM `{ds}.ops_lead_history`",
                                 label="test.history")
    return sorted((str(r["email"]), str(r["instantly_lead_id"]), str(r["status_final"]), str(r["reason"]))
                  for r in rows)


def lookups(world: World, since: int) -> dict[str, list[dict[str, Any]]]:
    """This run's answered POST /leads/list bodies by kind: ids, contacts, campaign (the reconcile listing),
    filter (a request the simulator refused with 429 and the client sent again counts once)."""
    kinds: dict[str, list[dict[str, Any]]] = {"ids": [], "contacts": [], "campaign": [], "filter": []}
    for record in world.sim.request_log[since:]:
        if record.endpoint != "POST /leads/list" or record.status == 429:
            continue
        body = record.request_body
        kind = "ids" if "ids" in body else "contacts" if "contacts" in body else "filter" if "filter" in body \
            else "campaign"
        kinds[kind].append(body)
    return kinds


def hand_delete(world: World, lead_id: str) -> None:
    with InstantlyClient("sim-key", base_url=world.sim.base_url) as other:
        assert other.delete_lead(lead_id)


def hand_add(world: World, email: str, campaign: str = SMB) -> str:
    return str(world.sim.insert_leads(campaign, [{"email": email}])["created_leads"][0]["id"])


def run(world: World, **changes: object) -> tuple[SyncResult, dict[str, list[dict[str, Any]]]]:
    """A checked run (housekeeping alone unless told), 30 minutes after the last; its POST /leads/list bodies."""
    world.sim.advance(30 / 1440)
    since = len(world.sim.request_log)
    result = world.run_checked(**{**QUIET, **changes})
    return result, lookups(world, since)


def test_hand_delete_and_hand_add_balance_the_count_yet_both_are_found_in_one_run(
        raw_warehouse: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """X deleted and Y added by hand (counts equal): one run closes X with history 'removed' and adopts Y, for
    4 look-ups (audit 1, email 1, listing 2 pages); a dry run before it plans the same and writes nothing."""
    world, _ = _world(raw_warehouse, tmp_path, worlds)
    ids = seed(world, 5, "kept")
    hand_delete(world, ids[2])  # kept2
    y = hand_add(world, "yan@hand.example")
    dry, _ = run(world, dry_run=True)
    assert dry.report.api_writes == 0 and dry.report.warehouse_writes == 0
    plan = dry.report.phase("housekeeping").plan
    assert (plan["close vanished"], plan["adopt orphan"]) == (1, 1)
    result, calls = run(world)
    assert history(world) == [("kept2@seed.example", ids[2], "removed", REMOVED_REASON)]
    after = state(world)
    assert "kept2@seed.example" not in after and after["yan@hand.example"] == ("active", y, SMB)
    assert len(after) == 5
    assert [len(calls[k]) for k in ("ids", "contacts", "campaign")] == [1, 1, 2]
    assert calls["ids"][0]["ids"] == ids
    counts = result.report.phase("housekeeping").counts
    assert (counts["close vanished"], counts["adopt orphan"]) == (1, 1)


@pytest.mark.parametrize("size", [1, 3])
def test_a_small_campaign_is_never_emptied_on_answers_that_contradict_its_count(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]], size: int) -> None:
    """Every lead listing answers an empty page (by id, by email, the campaign itself) while Instantly counts
    the campaign's 1 or 3 leads: not one is closed, and the run says its answers contradict its count."""
    world, adapter = _world(duck, tmp_path, worlds)
    seed(world, size, "small")
    adapter.keys = {"ids", "contacts", "campaign"}
    result, calls = run(world)
    assert history(world) == [] and len(state(world)) == size
    assert len(calls["campaign"]) == 1  # the listing that was to decide answered empty: not trusted
    assert result.report.phase("housekeeping").counts["not closed: Instantly contradicts its count"] == size
    assert any("contradict" in w and "SMB" in w for w in result.report.warnings)


def test_a_listing_of_the_same_run_vetoes_closures_its_look_ups_made(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """Look-ups by id and email leave out 2 of 300 tracked leads (an index lag) while the count and the
    listing are right: the 2 closures the count allows make the counts differ, the campaign is listed whole
    in the same run, shows both under their ids, and the closures are taken back: no history, 300 tracked."""
    world, adapter = _world(duck, tmp_path, worlds)
    ids = seed(world, 300, "lag")
    adapter.hide = {ids[5], ids[150]}  # both in this run's audit: ceil(300 / 100 / 19) + 1 = 2 calls, ids 0-199
    result, calls = run(world)
    assert history(world) == [] and len(state(world)) == 300
    assert len(calls["campaign"]) == 4  # 3 pages of 100 and the empty end
    counts = result.report.phase("housekeeping").counts
    assert (counts["not closed: a listing shows it"], counts["close vanished"]) == (2, 0)
    assert any("left out 2 tracked lead(s) that its listing" in w for w in result.report.warnings)


def test_a_hand_delete_beside_a_hand_add_in_a_one_lead_campaign_is_settled_by_a_listing(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """The campaign's only tracked lead is deleted by hand and another added (counts equal): closing every
    tracked lead needs a third witness, so the campaign is listed whole; the listing agrees with the count,
    so X is closed `removed` and Y adopted, in that run."""
    world, _ = _world(duck, tmp_path, worlds)
    ids = seed(world, 1, "only")
    hand_delete(world, ids[0])
    y = hand_add(world, "yolanda@hand.example")
    _result, calls = run(world)
    assert history(world) == [("only0@seed.example", ids[0], "removed", REMOVED_REASON)]
    assert state(world) == {"yolanda@hand.example": ("active", y, SMB)}
    assert [len(calls[k]) for k in ("ids", "contacts", "campaign")] == [1, 2, 2]


def test_a_stale_look_up_answering_an_empty_page_is_confirmed_by_email_and_closed(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """The drain looks up an old lead by id and gets an empty page: housekeeping looks it up by email (not
    found) and closes it in the same run; no audit (RECONCILE_AUDIT_CALLS=0) and no listing were needed."""
    world, _ = _world(duck, tmp_path, worlds, reconcile_audit_calls="0")
    old = seed(world, 1, "old", added_at=START - dt.timedelta(days=70))
    seed(world, 2, "young")
    hand_delete(world, old[0])
    _result, calls = run(world, run_drain=True)
    assert calls["ids"] == [{"ids": old, "limit": 100}]
    assert [b["contacts"] for b in calls["contacts"]] == [["old0@seed.example"]]
    assert calls["campaign"] == []  # the closure made the counts agree: no listing
    assert history(world) == [("old0@seed.example", old[0], "removed", REMOVED_REASON)]
    assert sorted(state(world)) == ["young0@seed.example", "young1@seed.example"]


def test_a_lead_re_added_by_hand_under_a_new_id_is_re_linked_not_closed(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """A tracked lead deleted and added again by hand (new id): its state row follows the new id, no history."""
    world, _ = _world(duck, tmp_path, worlds)
    ids = seed(world, 3, "back")
    hand_delete(world, ids[1])
    new_id = hand_add(world, "back1@seed.example")
    result, calls = run(world)
    assert history(world) == []
    assert state(world)["back1@seed.example"] == ("active", new_id, SMB)
    assert result.report.phase("housekeeping").counts["relink to a new lead id"] == 1
    assert calls["campaign"] == []  # counts agree: no listing


def test_a_lead_moved_to_an_unmanaged_campaign_is_closed_as_moved_outside(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """A tracked lead found by email only in a campaign coldsync does not manage is closed, saying so."""
    world, _ = _world(duck, tmp_path, worlds)
    other = world.sim.create_campaign("Someone else's")
    ids = seed(world, 2, "moved")
    hand_delete(world, ids[0])
    hand_add(world, "moved0@seed.example", campaign=other)
    run(world)
    assert history(world) == [("moved0@seed.example", ids[0], "removed", MOVED_OUTSIDE_REASON)]
    assert sorted(state(world)) == ["moved1@seed.example"]


def test_a_won_lead_moved_by_hand_to_a_sales_campaign_never_returns(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """A lead the rep marked Won and took to an unmanaged campaign is closed with its interest status: policy
    in_sales, never back; a colleague moved out without a status gets no_reply and its 90 days."""
    world, _ = _world(duck, tmp_path, worlds)
    other = world.sim.create_campaign("Sales hot")
    ids = seed(world, 3, "moved")
    for n in (0, 1):
        hand_delete(world, ids[n])
    won = hand_add(world, "moved0@seed.example", campaign=other)
    world.sim.set_interest_status(won, 4)
    hand_add(world, "moved1@seed.example", campaign=other)
    run(world)
    rows = world.warehouse.query("SELECT email, status_final, policy, interest_status, completed_at, return_at, "
                                 "in_instantly FROM `{ds}.ops_lead_history` ORDER BY email", label="t")
    assert [(r["email"], r["status_final"], r["policy"], r["interest_status"], r["in_instantly"]) for r in rows] == [
        ("moved0@seed.example", "removed", "in_sales", 4, "gone"),
        ("moved1@seed.example", "removed", "no_reply", None, "gone")]
    assert rows[0]["return_at"] is None
    assert rows[1]["return_at"] == rows[1]["completed_at"] + dt.timedelta(days=90)


def test_a_complete_empty_listing_that_contradicts_the_count_closes_nothing(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """Counts disagree (an orphan), and the campaign listing comes back complete but empty while Instantly
    counts 31: nothing closed, nothing adopted, a warning names the campaign (no address)."""
    world, adapter = _world(duck, tmp_path, worlds, reconcile_audit_calls="0")
    seed(world, 30, "held")
    hand_add(world, "orphan@hand.example")
    adapter.keys = {"campaign"}
    result, calls = run(world)
    assert len(calls["campaign"]) == 1
    assert history(world) == [] and len(state(world)) == 30
    warning = next(w for w in result.report.warnings if "listed 0 lead(s) in the SMB campaign but counts 31" in w)
    assert "@" not in warning
    assert result.report.phase("housekeeping").counts["not closed: listing shorter than the count"] == 30


def test_an_audit_whose_answers_are_all_empty_closes_nothing(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """Every look-up by id and by email answers an empty page for 30 tracked leads Instantly counts: closing
    30 would contradict its count (at most 0 + 1 may be gone), so one listing of the campaign decides; it
    shows all 30, so nothing is closed and a warning says Instantly contradicted itself."""
    world, adapter = _world(duck, tmp_path, worlds)
    seed(world, 30, "fine")
    adapter.keys = {"ids", "contacts"}
    result, calls = run(world)
    assert (len(calls["ids"]), len(calls["contacts"]), len(calls["campaign"])) == (1, 1, 2)  # a page, then the end
    assert history(world) == [] and len(state(world)) == 30
    assert any("contradict its own count" in w and "SMB" in w and "@" not in w for w in result.report.warnings)
    assert result.report.phase("housekeeping").counts["not closed: Instantly contradicts its count"] == 30


def test_an_audit_contradicted_by_the_look_up_by_email_keeps_the_leads(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """Look-ups by id answer empty pages, but by email the leads are there under their ids: kept, and a
    warning says Instantly contradicted itself."""
    world, adapter = _world(duck, tmp_path, worlds)
    seed(world, 4, "there")
    adapter.keys = {"ids"}
    result, _calls = run(world)
    assert history(world) == [] and len(state(world)) == 4
    assert any("left out 4 tracked lead(s)" in w for w in result.report.warnings)


def test_one_orphan_in_a_4000_lead_campaign_is_adopted_within_bounded_runs(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """4,000 tracked leads and one added by hand (the last id): the listing reads at most
    RECONCILE_PAGES_PER_RUN=20 pages a run, resumes after the last lead read, and adopts the orphan in run
    ceil(41/20)=3 (pages 20, 20, 2: the 41st page holds the orphan, the 42nd is the empty end); then the
    counts agree and nothing is listed. Each run's audit costs ceil(4000 / 100 / 19) + 1 = 4 calls (a Monday: 19
    runs; RECONCILE_AUDIT_CALLS=25 is only the most)."""
    world, _ = _world(duck, tmp_path, worlds)
    ids = seed(world, 4000, "bulk")
    world.sim.advance(1 / 1440)
    orphan = hand_add(world, "orphan@hand.example")
    pages = []
    for _ in range(math.ceil(41 / 20)):
        result, calls = run(world)
        pages.append(len(calls["campaign"]))
        assert len(calls["ids"]) == 4
        adopted = "orphan@hand.example" in state(world)
        assert adopted == (len(pages) == 3)
    assert pages == [20, 20, 2]
    assert [b.get("starting_after") for b in calls["campaign"]] == [ids[3999], orphan]
    assert state(world)["orphan@hand.example"] == ("active", orphan, SMB)
    assert result.report.reconcile.get("listings") is None
    _result, calls = run(world)
    assert calls["campaign"] == [] and history(world) == []


def test_a_listing_cut_by_its_page_budget_says_it_resumes_next_run(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """150 tracked leads and an orphan, RECONCILE_PAGES_PER_RUN=1: the listing reads 1 page, and the run
    summary carries one note saying it was cut by the page budget and resumes next run."""
    world, _ = _world(duck, tmp_path, worlds, reconcile_pages_per_run="1", reconcile_audit_calls="0")
    seed(world, 150, "cut")
    hand_add(world, "orphan@hand.example")
    result, calls = run(world)
    assert len(calls["campaign"]) == 1
    note = ("reconcile listing of SMB cut after 1 page(s) (RECONCILE_PAGES_PER_RUN=1): resumes next run where "
            "it stopped")
    assert result.report.phase("housekeeping").notes == [note]
    assert f"    - {note}" in result.report.render_text().splitlines()


def test_the_audit_covers_every_tracked_lead_in_ceil_n_over_its_size_runs(
        duck: Warehouse, tmp_path: Path, worlds: list[tuple[World, Rewriting]]) -> None:
    """With RECONCILE_AUDIT_CALLS=1 (100 ids a run), 250 tracked leads are all checked in ceil(250/100)=3
    runs, in id order, wrapping around; a run with nothing wrong costs exactly its 1 audit call."""
    world, _ = _world(duck, tmp_path, worlds, reconcile_audit_calls="1")
    ids = seed(world, 250, "each")
    asked = []
    for _ in range(math.ceil(250 / 100)):
        _result, calls = run(world)
        assert len(calls["ids"]) == 1 and calls["contacts"] == [] and calls["campaign"] == []
        asked.append(calls["ids"][0]["ids"])
    assert asked == [ids[:100], ids[100:200], ids[200:] + ids[:50]]
    assert set(ids) <= {i for part in asked for i in part}


def test_a_failed_runs_audit_cursor_is_not_used(duck: Warehouse, tmp_path: Path,
                                                worlds: list[tuple[World, Rewriting]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails after its audit checked ids 100-199 leaves its cursor in a failed summary: the next
    run checks ids 100-199 again (after the last SUCCESSFUL run's cursor), not 200 on."""
    import coldsync.phases.housekeeping as housekeeping

    world, _ = _world(duck, tmp_path, worlds, reconcile_audit_calls="1")
    ids = seed(world, 250, "cur")
    run(world)

    def boom(*_args: Any) -> list[dict[str, Any]]:
        raise RuntimeError("injected after the audit")

    with monkeypatch.context() as patch:
        patch.setattr(housekeeping, "_retire_dead_letters", boom)
        world.sim.advance(30 / 1440)
        since = len(world.sim.request_log)
        failed = world.run(**QUIET)
        assert failed.report.outcome == "failed" and failed.report.reconcile["audit_after"] == ids[199]
        assert lookups(world, since)["ids"][0]["ids"] == ids[100:200]
    _result, calls = run(world)
    assert calls["ids"][0]["ids"] == ids[100:200]


def test_a_failed_look_up_closes_nothing(duck: Warehouse, tmp_path: Path,
                                         worlds: list[tuple[World, Rewriting]]) -> None:
    """A lead deleted by hand while every look-up fails (HTTP 500): nothing is closed, the run notes it; the
    next run, with Instantly answering again, closes it."""
    from coldsync.instantly.simulator import FaultSpec

    world, _ = _world(duck, tmp_path, worlds)
    ids = seed(world, 3, "gone")
    hand_delete(world, ids[0])
    world.sim.set_fault("POST /leads/list", FaultSpec.burst(50, 500))
    world.sim.advance(30 / 1440)
    failed = world.run(**QUIET)
    world.sim.clear_faults()
    assert history(world) == [] and len(state(world)) == 3
    notes = failed.report.phase("housekeeping").notes
    assert any("audit look-up by id failed, nothing closed" in n for n in notes)
    run(world)
    assert history(world) == [("gone0@seed.example", ids[0], "removed", REMOVED_REASON)]


def test_the_audit_budget_checks_every_tracked_lead_once_a_day() -> None:
    """ceil(tracked / 100 / runs that day) + 1, at most RECONCILE_AUDIT_CALLS: 24,000 tracked cost 14 calls a
    weekday run (19 runs) and 21 a weekend run (12); a small inventory 2; none tracked or the audit off: 0."""
    from coldsync.phases.reconcile import audit_budget
    from coldsync.schedule import runs_per_day
    monday, saturday = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 7, 15, 0, tzinfo=dt.UTC)
    assert (runs_per_day(monday.date()), runs_per_day(saturday.date())) == (19, 12)
    assert (audit_budget(24_000, monday, 25), audit_budget(24_000, saturday, 25)) == (14, 21)
    assert 14 * 19 * 100 >= 24_000 and 21 * 12 * 100 >= 24_000  # each day's runs cover every tracked lead
    assert audit_budget(150, monday, 25) == 2 and audit_budget(100_000, monday, 25) == 25
    assert audit_budget(0, monday, 25) == 0 and audit_budget(24_000, monday, 0) == 0
    # 01:30 UTC on Sunday 8 March is still Saturday 7 March in New York: a weekend day of 12 runs.
    assert audit_budget(24_000, dt.datetime(2026, 3, 8, 1, 30, tzinfo=dt.UTC), 25) == 21
