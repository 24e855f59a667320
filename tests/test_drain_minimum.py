"""Drain listings at the API minimum without holding a finished lead back (issue 16, target 4).

A listing stops once the new leads it found cover its analytics counter's increase; otherwise it reads to
its empty page. These runs check the other side of that saving: a counter that grew by more than the leads
found (REPLIED then listed, leaving out what COMPLETED returned), a listing that fails mid-way (its
watermark stays, the next run drains the rest), and leads the drain keeps in the campaign (never counted as
new, so they cannot end a listing before a new lead). One FilledWorld (tests/test_call_budget.py): cap
2,400, both campaigns filled, runs 30 minutes apart.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from coldsync.instantly import simulator as simulator_module
from coldsync.sync import SyncResult, run_sync
from tests.test_call_budget import MIDSIZE, SMB, START, FilledWorld
from tests.test_call_budget import world as world  # the same filled workspace fixture (pytest finds it here)


def _drain_answers(world: FilledWorld, since: int) -> list[tuple[str, str, int]]:
    """(campaign, filter, items) of each drain listing page the simulator answered since `since` (-1: failed)."""
    return [(r.request_body["campaign"], r.request_body["filter"],
             len(r.response_body["items"]) if "items" in r.response_body else -1)
            for r in world.sim.request_log[since:] if r.template == "/leads/list" and "filter" in r.request_body]


def _run(world: FilledWorld) -> SyncResult:
    """One run 30 minutes after the last, whatever its answers (FilledWorld.run sorts only whole pages)."""
    result = run_sync(world.settings, world.warehouse, world.client,
                      now=START + dt.timedelta(minutes=30 * world.runs))
    world.runs += 1
    assert result.exit_code == 0, result.report.render_text()
    return result


def _watermark(world: FilledWorld, campaign: str) -> dict[str, Any]:
    """The campaign's drain watermark in the newest run's summary."""
    summary = world.warehouse.query("SELECT summary_json FROM `{ds}.ops_run_log` ORDER BY started_at DESC LIMIT 1",
                                    label="t")[0]["summary_json"]
    return dict(json.loads(str(summary))["drain_watermarks"][campaign])


def test_a_reply_counter_above_the_replies_found_lists_replied_without_the_completed_ids(
        world: FilledWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """SMB's reply_count grows by 2 for 1 replied lead (the spec counts every reply): COMPLETED returns the 3
    finished leads (1 page), REPLIED is then listed leaving out exactly those 3 ids and reads to its empty
    page (0 items); the counter's watermark moves to the count, so the next quiet run lists nothing."""
    world.run()
    extra = {"on": False}
    original = simulator_module.InstantlySimulator._analytics_json

    def analytics(self: Any, campaign: Any, counters: Any = None, *, leads_count: bool = True) -> Any:
        answer = original(self, campaign, counters, leads_count=leads_count)
        if extra["on"] and counters is None and campaign.id == SMB:
            answer["reply_count"] += 1  # one more reply than replied leads, from now on
        return answer

    monkeypatch.setattr(simulator_module.InstantlySimulator, "_analytics_json", analytics)
    extra["on"] = True
    chosen = world.finish(SMB, {"replied": 1, "completed": 2})
    since = len(world.sim.request_log)
    result, _calls = world.run()
    assert result.report.drained == 3
    answers = _drain_answers(world, since)
    assert answers == [(SMB, "FILTER_VAL_COMPLETED", 3), (SMB, "FILTER_VAL_REPLIED", 0)]
    replied_body = next(r.request_body for r in world.sim.request_log[since:]
                        if r.template == "/leads/list" and r.request_body.get("filter") == "FILTER_VAL_REPLIED")
    assert sorted(replied_body["excluded_ids"]) == sorted(chosen)
    seen = next(item for item in world.client.campaign_analytics([SMB]) if item.campaign_id == SMB)
    assert _watermark(world, SMB)["replies"] == seen.reply_count  # the inflated count: 1 reply + 1
    assert seen.reply_count == 2
    since = len(world.sim.request_log)
    world.run()
    assert _drain_answers(world, since) == []


def test_a_listing_that_fails_mid_way_keeps_its_watermark_and_the_next_run_drains_the_rest(
        world: FilledWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """150 SMB leads complete; the COMPLETED listing's second page fails (a 400): the run drains the first
    100 and keeps the old watermark, so the next run lists COMPLETED again (needing 150, finding the 50 left:
    read to its empty page, 2 pages) and drains the other 50. No lead waits for the 6-hourly sweep."""
    world.run()
    failing = {"on": True}
    original = simulator_module.InstantlySimulator._http_list_leads

    def second_page_fails(self: Any, body: Any, paging: Any) -> Any:
        if failing["on"] and isinstance(body, dict) and body.get("filter") and body.get("starting_after"):
            raise simulator_module._HttpError(400, "body/starting_after is invalid")
        return original(self, body, paging)

    monkeypatch.setattr(simulator_module.InstantlySimulator, "_http_list_leads", second_page_fails)
    before = _watermark(world, SMB)
    chosen = world.finish(SMB, {"completed": 150})
    since = len(world.sim.request_log)
    first = _run(world)
    assert first.report.drained == 100
    assert _drain_answers(world, since) == [(SMB, "FILTER_VAL_COMPLETED", 100), (SMB, "FILTER_VAL_COMPLETED", -1)]
    assert _watermark(world, SMB)["completed"] == before["completed"]
    failing["on"] = False
    since = len(world.sim.request_log)
    second, _calls = world.run()
    assert second.report.drained == 50
    assert _drain_answers(world, since) == [(SMB, "FILTER_VAL_COMPLETED", 50), (SMB, "FILTER_VAL_COMPLETED", 0)]
    assert set(chosen).isdisjoint(str(x["id"]) for x in world.sim.leads(SMB))
    assert _watermark(world, SMB)["completed"] == before["completed"] + 150


def test_leads_kept_in_the_campaign_never_count_as_new(world: FilledWorld) -> None:
    """100 SMB leads reply with an interest value no policy maps (kept: never guessed) and fill the first
    COMPLETED page; the next run one more lead completes (completed +1): its listing does not stop on the
    page of 100 kept leads but reads on to the second page and drains the new one."""
    world.run()
    active = sorted(str(x["id"]) for x in world.sim.leads(SMB) if x.get("status") == 1)
    for lead_id in active[:100]:
        world.sim.finish_lead(lead_id, "replied", interest=77)
    kept_run, _calls = world.run()
    assert kept_run.report.drained == 0
    assert sorted(_watermark(world, SMB)["kept"]) == active[:100]
    world.sim.finish_lead(active[100], "completed")
    since = len(world.sim.request_log)
    result, _calls = world.run()
    assert result.report.drained == 1
    assert _drain_answers(world, since) == [(SMB, "FILTER_VAL_COMPLETED", 100), (SMB, "FILTER_VAL_COMPLETED", 1)]
    assert active[100] not in {str(x["id"]) for x in world.sim.leads(SMB)}
    assert len(_watermark(world, SMB)["kept"]) == 100


def test_without_a_known_kept_set_every_listing_reads_to_its_empty_page(world: FilledWorld) -> None:
    """A watermark without the kept set (written by an earlier version): the run cannot tell new leads from
    kept ones, so Midsize's COMPLETED listing of 5 leads reads to its empty page (2 pages, not 1)."""
    world.run()
    world.run()
    rows = world.warehouse.query("SELECT run_id, summary_json FROM `{ds}.ops_run_log`", label="t")
    for row in rows:
        summary = json.loads(str(row["summary_json"]))
        for mark in summary.get("drain_watermarks", {}).values():
            mark.pop("kept", None)
        world.warehouse.execute("UPDATE `{ds}.ops_run_log` SET summary_json = @s WHERE run_id = @r",
                                {"s": json.dumps(summary), "r": row["run_id"]}, label="t")
    world.finish(MIDSIZE, {"completed": 5})
    since = len(world.sim.request_log)
    result, _calls = world.run()
    assert result.report.drained == 5
    assert _drain_answers(world, since) == [(MIDSIZE, "FILTER_VAL_COMPLETED", 5), (MIDSIZE, "FILTER_VAL_COMPLETED", 0)]
