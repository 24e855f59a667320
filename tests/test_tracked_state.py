"""The run's state index (coldsync.phases.context.TrackedState): read once per state read, looked up by the
phases, and the Python work of the drain and reconciliation planning linear in the tracked leads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from coldsync.instantly.client import InstantlyClient, Listing
from coldsync.phases import context as context_module
from coldsync.phases.context import CampaignView, RunContext, TrackedState
from coldsync.phases.drain import run_drain
from coldsync.phases.reconcile import reconcile_campaigns
from coldsync.phases.topup import measure_inventory
from coldsync.report import RunReport
from coldsync.store import StateRow, Store
from coldsync.warehouse.demo_data import generate_source_rows
from tests.conftest import make_settings
from tests.helpers import add_sources, add_state
from tests.invariants import World
from tests.worlds import MIDSIZE, SMB, small_world

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def _row(email: str, status: str = "active", campaign_id: str | None = "c-1", lead_id: str | None = None,
         suppressed: str | None = None) -> StateRow:
    return StateRow(email=email, campaign_id=campaign_id, sequence_target="SMB", status=status,
                    instantly_lead_id=lead_id, attempt_num=1, outcome=None, added_at=NOW - dt.timedelta(days=3),
                    run_id="earlier", suppressed=suppressed, arm="SMB")


def test_the_index_answers_each_look_up_from_the_one_read() -> None:
    """Email, lead id, status, campaign id, status counts and suppressed rows come out as read, in read order."""
    a = _row("a@corp.example", "active", "c-1", "L1")
    b = _row("b@corp.example", "pending", "c-1")
    c = _row("c@corp.example", "draining", "C-2", "L3", suppressed="domain")
    d = _row("d@corp.example", "active", None, "L4")
    state = TrackedState([a, b, c, d])
    assert list(state) == [a, b, c, d] and len(state) == 4 and state[2] is c
    assert dict(state.by_email) == {"a@corp.example": a, "b@corp.example": b, "c@corp.example": c,
                                    "d@corp.example": d}
    assert dict(state.by_lead_id) == {"L1": a, "L3": c, "L4": d}  # b has no lead id yet
    assert state.with_status("active") == (a, d)
    assert state.with_status("draining", "pending") == (c, b)  # by status asked, then read order
    assert state.with_status("holding") == ()
    assert state.campaign_ids() == ("c-1", "C-2", None)
    assert state.in_campaign_id("c-1") == (a, b) and state.in_campaign_id("c-2") == ()  # exact ids
    assert dict(state.status_counts("c-1")) == {"active": 1, "pending": 1}
    assert state.suppressed == (c,)


def _context(tmp_path: Path, state: Sequence[StateRow], client: object = None, store: object = None) -> RunContext:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, instantly_api_key="k",
                             reconcile_audit_calls="1000")
    report = RunReport(run_id="now", mode="dry_run", warehouse="duckdb", started_at=NOW.isoformat())
    ctx = RunContext(settings=settings, client=cast(InstantlyClient, client), store=cast(Store, store),
                     report=report, now=NOW, dry_run=True)
    ctx.state = TrackedState(state)
    return ctx


def test_campaign_look_ups_fold_case_and_follow_campaigns_added_later(tmp_path: Path) -> None:
    """A row's campaign id in another case finds its campaign; a campaign added after the first look-up is found."""
    rows = [_row("a@corp.example", "active", "C-1", "L1"), _row("b@corp.example", "pending", "c-1"),
            _row("c@corp.example", "active", "c-9", "L3"), _row("d@corp.example", "active", "C-9", "L4")]
    ctx = _context(tmp_path, rows)
    one = ctx.campaigns["c-1"] = CampaignView("SMB", "SMB", "c-1", 1, 2)
    assert ctx.campaign("C-1") is one and ctx.campaign("c-9") is None
    assert ctx.rows_in(one) == rows[:2]
    assert ctx.tracked_count(one) == 2 and ctx.tracked_count(one, pending=False) == 1
    assert ctx.tracked_count() == 2  # c-9 is not managed yet
    nine = ctx.campaigns["c-9"] = CampaignView("old", "old", "c-9", 1, 2, retired=True)
    assert ctx.campaign("C-9") is nine and ctx.rows_in(nine) == rows[2:]
    assert ctx.tracked_count() == 4


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch TrackedState's builder to record the size of each index built."""
    builds: list[int] = []
    build = TrackedState.__init__

    def counted(self: TrackedState, rows: Iterable[StateRow] = ()) -> None:
        build(self, rows)
        builds.append(len(self))

    monkeypatch.setattr(context_module.TrackedState, "__init__", counted)
    return builds


def test_a_run_of_hundreds_of_tracked_leads_builds_the_index_once_per_state_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 tracked leads: a steady run and a drain run index the state once; a run that must reconcile an
    earlier run's pending row but wrote no state since its read works from that read too (no second read)."""
    with small_world(tmp_path, settings={"inventory_cap": "300", "target_new_leads_per_run": "300"}) as world:
        _more_sources(world, 400)
        world.run_checked()
        assert len(world.sim.leads(SMB)) + len(world.sim.leads(MIDSIZE)) == 300
        builds = _count_builds(monkeypatch)
        world.run_checked()  # full: nothing to add, nothing finished
        assert builds == [0, 300]  # the context's empty index, then the preflight's read: nothing rebuilt
        builds.clear()
        leads = world.sim.leads(SMB)[:3]
        for lead in leads:
            world.sim.finish_lead(str(lead["id"]), "completed")
        result = world.run_checked()
        assert result.report.phase("drain").plan["drain completed"] == 3
        assert builds == [0, 300]  # the drain and the top-up worked from the preflight's index
        builds.clear()
        add_state(world.warehouse, "left-pending@corp.example", "pending", SMB)  # an earlier run's, unfinished
        result = world.run_checked()
        assert result.report.phase("housekeeping").plan["free pending"] == 1
        assert builds == [0, 301]  # nothing written since the preflight's read: housekeeping works from it
        assert world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state` WHERE status = 'pending'",
                                     label="t")[0]["n"] == 0  # and still freed the pending row


def _more_sources(world: World, n: int) -> None:
    add_sources(world.warehouse, list(generate_source_rows(n, seed=11)))


class _Reads:
    """Counts attribute reads on state rows: the measure of the phases' Python work per tracked lead."""

    def __init__(self) -> None:
        self.n = 0


def _counting_rows(n: int, reads: _Reads) -> list[StateRow]:
    """n tracked leads over two campaigns, every 100th finished in Instantly (returned by the fake listing)."""

    class Counted(StateRow):
        def __getattribute__(self, name: str) -> Any:
            reads.n += 1
            return super().__getattribute__(name)

    campaigns = ("c-1", "c-2")
    return [Counted(email=f"lead{i}@corp.example", campaign_id=campaigns[i % 2], sequence_target="SMB",
                    status="active", instantly_lead_id=f"id-{i:06d}", attempt_num=1, outcome=None,
                    added_at=NOW - dt.timedelta(days=3), run_id="earlier", arm=None) for i in range(n)]


class _FakeInstantly:
    """Answers the drain's listings (every 100th lead completed) and the audit's look-ups by id (all there)."""

    def __init__(self, rows: Sequence[StateRow]) -> None:
        self.leads = {row.instantly_lead_id: {"id": row.instantly_lead_id, "email": row.email,
                                              "campaign": row.campaign_id, "status": 1,
                                              "timestamp_created": NOW.isoformat()} for row in rows}
        every_100th = [lead for i, lead in enumerate(self.leads.values()) if i % 100 == 0]
        self.finished = {cid: [{**lead, "status": 3, "timestamp_updated": NOW.isoformat()}
                               for lead in every_100th if lead["campaign"] == cid] for cid in ("c-1", "c-2")}

    def iter_leads(self, *, campaign: str | None = None, filter: Any = None, ids: Sequence[str] | None = None,
                   **_: Any) -> Listing[dict[str, Any]]:
        if ids is not None:
            items = [self.leads[i] for i in ids if i in self.leads]
        elif campaign is not None and str(getattr(filter, "value", filter)) == "FILTER_VAL_COMPLETED":
            items = self.finished[campaign]
        else:
            items = []
        pages = iter([items, []])

        def fetch(_cursor: str | None) -> tuple[list[Any], str | None]:
            return next(pages), None

        return Listing(fetch, dict, page_size=len(items) + 1, max_pages=10, what="leads")  # short page: the end

    def find_leads_by_email(self, emails: Iterable[str], **_: Any) -> dict[str, list[dict[str, Any]]]:
        return {}


class _FakeStore:
    def __init__(self) -> None:
        self.run_id = "now"
        self.last_summary: dict[str, Any] = {}

    def suppressed_emails(self, emails: Iterable[str]) -> dict[str, str]:
        return {}


def _planning_reads(tmp_path: Path, n: int) -> tuple[int, int, int]:
    """Attribute reads on state rows over the preflight inventory, the drain (dry run) and the reconciliation
    planning at n tracked leads; and what the drain planned and the audit checked (the work was really done)."""
    reads = _Reads()
    rows = _counting_rows(n, reads)
    client = _FakeInstantly(rows)
    reads.n = 0  # from the index build on
    ctx = _context(tmp_path, rows, client, _FakeStore())
    ctx.campaigns = {cid: CampaignView(name, name, cid, 1, n // 2)
                     for cid, name in (("c-1", "SMB"), ("c-2", "Midsize"))}
    measure_inventory(ctx)
    run_drain(ctx)
    reconcile_campaigns(ctx, [], [])
    phase = ctx.report.phase("drain")
    return reads.n, phase.plan["drain completed"], ctx.report.phase("housekeeping").plan["check by id"]


def test_drain_and_reconcile_planning_do_work_linear_in_the_tracked_leads(tmp_path: Path) -> None:
    """2,000 then 20,000 tracked leads: row reads grow 10x (not 100x) and stay under a fixed number per lead."""
    small, drained_small, checked_small = _planning_reads(tmp_path, 2_000)
    large, drained_large, checked_large = _planning_reads(tmp_path, 20_000)
    assert (drained_small, drained_large) == (20, 200)  # every 100th lead completed, all planned
    assert checked_small > 0 and checked_large > 0  # the audit looked leads up by id
    assert large <= 10 * small * 1.1  # linear; any per-row rebuild or rescan of the state would be ~100x
    # Reads per tracked lead (19.2 measured): the index's one pass (8 a row), then the drain's stale check and
    # the reconciler's view, owners and audit selection, each reading a few fields of a row once.
    assert large / 20_000 < 25
