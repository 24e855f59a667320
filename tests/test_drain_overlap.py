"""Drain listings of different campaigns and filters overlap (issue 16, target 3), under the client's one pacer.

The simulator answers every drain listing page (a `POST /leads/list` with a `filter`) after DELAY seconds.
SMB ends leads 3 ways and Midsize 3 ways (completed, bounced, unsubscribed: the first wave's status filters),
so 6 listings of one covering page each: one after another they take 6 x DELAY; 4 in flight (the default
INSTANTLY_LIST_CONCURRENCY) at least 2 x DELAY (two rounds), well under 6 x DELAY.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly import simulator as simulator_module
from coldsync.instantly.simulator import Fate
from coldsync.phases import drain
from tests.test_call_budget import MIDSIZE, SMB, FilledWorld

DELAY = 0.4
FATES: dict[Fate, int] = {"completed": 3, "bounced": 2, "unsubscribed": 1}


def _slow_filter_pages(monkeypatch: pytest.MonkeyPatch, delay_of: dict[str, float]) -> None:
    """Every drain listing page answers after delay_of[campaign] seconds (outside the simulator's lock)."""
    original = simulator_module.InstantlySimulator._http_list_leads

    def slow(self: Any, body: Any, paging: Any) -> Any:
        answer = original(self, body, paging)
        if isinstance(body, dict) and body.get("filter"):
            self._lock.release()
            try:
                time.sleep(delay_of.get(str(body.get("campaign")), 0.0))
            finally:
                self._lock.acquire()
        return answer

    monkeypatch.setattr(simulator_module.InstantlySimulator, "_http_list_leads", slow)


def _timed_listings(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Wall seconds of each run's drain listings (drain._run_listings)."""
    spent: list[float] = []
    original = drain._run_listings

    def timed(ctx: Any, plans: Any) -> Any:
        began = time.monotonic()
        try:
            return original(ctx, plans)
        finally:
            spent.append(time.monotonic() - began)

    monkeypatch.setattr(drain, "_run_listings", timed)
    return spent


def _world(tmp_path: Path, concurrency: int) -> FilledWorld:
    tmp_path.mkdir()
    built = FilledWorld(tmp_path)
    built.settings = dataclasses.replace(built.settings, instantly_list_concurrency=concurrency)
    return built


@pytest.fixture
def worlds(tmp_path: Path) -> Iterator[tuple[FilledWorld, FilledWorld]]:
    serial, overlapped = _world(tmp_path / "serial", 1), _world(tmp_path / "overlapped", 4)
    try:
        yield serial, overlapped
    finally:
        serial.close()
        overlapped.close()


def _drain(world: FilledWorld) -> list[tuple[str, list[str]]]:
    """Fill, end the same leads each way in both campaigns, drain; the DELETE bodies (campaign, ids) sent."""
    world.run()
    world.finish(SMB, FATES)
    world.finish(MIDSIZE, FATES)
    since = len(world.sim.request_log)
    result, _calls = world.run()
    assert result.report.drained == 12
    return [(r.request_body["campaign_id"], list(r.request_body["ids"]))
            for r in world.sim.request_log[since:] if r.method == "DELETE" and r.template == "/leads"]


def test_drain_listings_overlap_and_their_results_do_not_depend_on_the_order_answers_arrive(
        worlds: tuple[FilledWorld, FilledWorld], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """6 one-page listings at DELAY s each: one at a time they take >= 6 x DELAY; 4 in flight (SMB's answers
    made 3x slower, so Midsize's come back first) between 2 x DELAY and 4.5 x DELAY, and the run deletes the
    same ids in the same order as the serial run."""
    serial, overlapped = worlds
    spent = _timed_listings(monkeypatch)
    _slow_filter_pages(monkeypatch, {SMB: DELAY, MIDSIZE: DELAY})
    serial_deletes = _drain(serial)
    assert spent[-1] >= 6 * DELAY
    _slow_filter_pages(monkeypatch, {SMB: 3 * DELAY, MIDSIZE: DELAY / 3})
    overlapped_deletes = _drain(overlapped)
    # SMB's 3 listings at 3 x DELAY each, 4 in flight: at least one round of them (3 x DELAY); one at a time
    # all six would take 3 x 3 x DELAY + 3 x DELAY / 3 = 10 x DELAY.
    assert 3 * DELAY <= spent[-1] < 6 * DELAY
    assert overlapped_deletes == serial_deletes
    assert [campaign for campaign, _ids in serial_deletes] == [SMB, MIDSIZE]
    assert all(len(ids) == 6 for _campaign, ids in serial_deletes)
