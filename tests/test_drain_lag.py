"""The drain's call savings never hold a finished lead back: a campaign whose analytics count reads 0 while the
warehouse tracks leads there is still listed, and a drain listing reads to its empty page even when a page in
its middle comes back short (DuckDB lane, the in-process simulator behind hostile answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly import simulator as simulator_module
from tests.worlds import MIDSIZE, SMB, small_world


def _settle(world: Any, runs: int) -> None:
    for _ in range(runs):
        world.sim.advance(1 / 48)
        world.run_checked()


def test_a_count_of_0_beside_tracked_leads_does_not_hold_finished_leads_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Analytics say 0 leads (a lag, or the field missing) while 3 tracked leads finish (unsubscribed,
    completed, bounced): the very next run drains all 3, writes their history and puts the unsubscribe and
    the bounce on the do-not-contact list."""
    lagging = {"on": False}
    original = simulator_module.InstantlySimulator._analytics_json

    def analytics(self: Any, campaign: Any, counters: Any = None, *, leads_count: bool = True) -> Any:
        answer = original(self, campaign, counters, leads_count=leads_count)
        if lagging["on"] and "leads_count" in answer:
            answer["leads_count"] = 0
        return answer

    monkeypatch.setattr(simulator_module.InstantlySimulator, "_analytics_json", analytics)
    with small_world(tmp_path) as world:
        _settle(world, 5)
        leads = world.sim.leads(SMB) + world.sim.leads(MIDSIZE)
        assert len(leads) == 20
        lagging["on"] = True
        fates: dict[str, Any] = {str(leads[0]["email"]): "unsubscribed", str(leads[1]["email"]): "completed",
                                 str(leads[2]["email"]): "bounced"}
        for lead, fate in zip(leads[:3], fates.values(), strict=True):
            world.sim.finish_lead(lead["id"], fate)
        _settle(world, 1)
        left = {str(x["email"]) for c in (SMB, MIDSIZE) for x in world.sim.leads(c)}
        assert left.isdisjoint(fates)
        history = {str(r["email"]): str(r["status_final"]) for r in world.warehouse.query(
            "SELECT email, status_final FROM `{ds}.ops_lead_history`", label="t")}
        assert {e: history.get(e) for e in fates} == {e: {"unsubscribed": "unsubscribed", "completed": "completed",
                                                          "bounced": "bounced"}[f] for e, f in fates.items()}
        dnc = {str(r["email"]) for r in world.warehouse.query("SELECT email FROM `{ds}.ops_dnc`", label="t")}
        assert {e for e, f in fates.items() if f in ("unsubscribed", "bounced")} <= dnc


def test_a_short_page_in_the_middle_of_a_drain_listing_does_not_end_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first page of every by-filter listing comes back with 1 lead and a cursor (a server that cuts pages
    below the limit): 3 leads completed at once all leave Instantly in the next run, not over hours of sweeps."""
    original = simulator_module.InstantlySimulator._http_list_leads

    def short_first_page(self: Any, body: Any, paging: Any) -> Any:
        if isinstance(body, dict) and body.get("filter") and not body.get("starting_after"):
            body = {**body, "limit": 1}
        return original(self, body, paging)

    monkeypatch.setattr(simulator_module.InstantlySimulator, "_http_list_leads", short_first_page)
    with small_world(tmp_path) as world:
        _settle(world, 5)
        finished = world.sim.leads(SMB)[:3]
        for lead in finished:
            world.sim.finish_lead(lead["id"], "completed")
        _settle(world, 1)
        assert {lead["id"] for lead in finished}.isdisjoint(x["id"] for x in world.sim.leads(SMB))
