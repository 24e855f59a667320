"""Progress on long work (issue #14, item 10): log lines an Actions log shows while a run is busy, so a
long fill, a long listing, a slow source read or an outage is never minutes of silence."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest

from coldsync.instantly import client as client_module
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import InstantlyError
from tests.instantly_fixtures import KEY, FakeClock, make_client, make_sim, people
from tests.worlds import small_world


def _messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def test_a_long_add_logs_each_batch(caplog: pytest.LogCaptureFixture) -> None:
    """250 leads in batches of 100: one line per batch answered, with how many of the whole have their answer
    and how many were created so far."""
    caplog.set_level(logging.INFO, logger="coldsync.instantly")
    with make_sim() as sim:
        campaign = sim.create_campaign("SMB")
        with make_client(sim, FakeClock()) as client:
            client.add_leads(campaign, people(250), chunk_size=100)
    assert _messages(caplog, "lead(s) answered") == [
        f"instantly add to campaign {campaign}: 100 of 250 lead(s) answered, 100 created so far",
        f"instantly add to campaign {campaign}: 200 of 250 lead(s) answered, 200 created so far",
        f"instantly add to campaign {campaign}: 250 of 250 lead(s) answered, 250 created so far"]


def test_a_single_batch_add_logs_no_progress_line(caplog: pytest.LogCaptureFixture) -> None:
    """A one-batch add keeps its single summary line: progress lines are for long fills only."""
    caplog.set_level(logging.INFO, logger="coldsync.instantly")
    with make_sim() as sim:
        campaign = sim.create_campaign("SMB")
        with make_client(sim, FakeClock()) as client:
            client.add_leads(campaign, people(30), chunk_size=100)
    assert _messages(caplog, "lead(s) answered") == []
    assert _messages(caplog, "instantly add to campaign") == [f"instantly add to campaign {campaign}: created=30"]


def test_a_long_listing_logs_every_20_pages(caplog: pytest.LogCaptureFixture) -> None:
    """45 leads listed 1 a page: progress after pages 20 and 40 with the items read so far."""
    caplog.set_level(logging.INFO, logger="coldsync.instantly")
    with make_sim() as sim:
        campaign = sim.create_campaign("SMB")
        with make_client(sim, FakeClock()) as client:
            client.add_leads(campaign, people(45))
            caplog.clear()
            listing = client.iter_leads(campaign=campaign, page_size=1)
            assert len(listing.to_list()) == 45 and listing.complete
    assert _messages(caplog, "pages read") == [
        f"instantly listing of leads of campaign {campaign}: 20 pages read, 20 item(s) so far",
        f"instantly listing of leads of campaign {campaign}: 40 pages read, 40 item(s) so far"]
    assert client_module.LISTING_PROGRESS_PAGES == 20


def test_an_outage_logs_a_heartbeat_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    """With nothing listening, every retry says Instantly is not answering, which call, and the wait."""
    caplog.set_level(logging.WARNING, logger="coldsync.instantly")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: connection refused
    clock = FakeClock()
    client = InstantlyClient(KEY, base_url=f"http://127.0.0.1:{port}", max_attempts=4, backoff_base=2.0,
                             backoff_max=8.0, jitter_seed=0, sleep=clock.sleep, clock=clock, connect_timeout=1)
    with client, pytest.raises(InstantlyError):
        client.check_key()
    lines = _messages(caplog, "retry")
    assert len(lines) == 3
    for number, line in enumerate(lines, start=1):
        assert line.startswith("Instantly not answering to GET /campaigns (")
        assert f"): retry {number} of 3 in " in line and line.endswith(" s")


def test_a_refusing_service_says_what_it_answered(caplog: pytest.LogCaptureFixture) -> None:
    """A 503 is not silence: the retry line names the HTTP status Instantly answered."""
    from coldsync.instantly.simulator import FaultSpec

    caplog.set_level(logging.WARNING, logger="coldsync.instantly")
    with make_sim() as sim:
        sim.set_fault("GET /campaigns", FaultSpec(statuses=[503]))
        with make_client(sim, FakeClock()) as client:
            client.check_key()
    [line] = _messages(caplog, "retry")
    assert line.startswith("Instantly answered http 503 to GET /campaigns (") and "retry 1 of " in line


def test_timed_out_retries_name_the_timeout_budget(caplog: pytest.LogCaptureFixture) -> None:
    """A call that times out on every attempt, with 6 attempts allowed but 3 that may time out: its retry
    lines say "retry 1 of 2" and "retry 2 of 2" (the real budget), not "of 5"."""
    from coldsync.instantly.simulator import FaultSpec

    caplog.set_level(logging.WARNING, logger="coldsync.instantly")
    with make_sim() as sim:
        sim.set_fault("GET /campaigns", FaultSpec.timeouts(10, seconds=0.5))
        with make_client(sim, FakeClock(), max_attempts=6, max_timeout_attempts=3, read_timeout=0.1,
                         request_deadline=30) as client, pytest.raises(InstantlyError, match="timeout"):
            client.check_key()
    lines = _messages(caplog, "retry")
    assert [re.findall(r"retry \d+ of \d+", line) for line in lines] == [["retry 1 of 2"], ["retry 2 of 2"]]


def test_the_source_read_says_how_many_and_how_long(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """A top-up logs the ready leads it read for its room and the seconds the warehouse took."""
    caplog.set_level(logging.INFO, logger="coldsync.topup")
    with small_world(tmp_path) as world:
        world.run_checked()
    [line] = _messages(caplog, "ready lead(s)")
    # One read serves both routes, each up to the whole room (4): 8 read, the 4 the allocation gives kept.
    assert re.fullmatch(r"read 8 ready lead\(s\) \(4 kept\) for a room of 4 from the warehouse in \d+\.\ds",
                        line), line
