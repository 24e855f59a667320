"""Bulk adds with several requests in flight (issue 16, target 3): `add_leads(concurrency=N)` and the top-up.

(a)-(c) run the client against a loopback stand-in for `POST /leads/add` that answers after a set delay and
counts the most requests it ever held at once; lead emails choose its answer (a 400, an error in a 200, an
id given twice, a 401, a slower answer). The client uses the product's default pacer (20/s, 1,200/min).
(d) runs the whole sync against the simulator with both campaigns getting several batches.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.instantly.client import AddLeadsResult, InstantlyClient
from coldsync.instantly.errors import AuthenticationError, UnusableAnswerError, ValidationError
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.settings import SPEC_BY_NAME
from coldsync.warehouse.duckdb import DuckDBWarehouse
from proof.harness import CrashingAdapter, Operations
from tests.conftest import make_settings
from tests.helpers import build, lead
from tests.test_invariants import Checked
from tests.test_sync import MIDSIZE, SMB, START

CAMPAIGN = "0b0b0b0b-2222-4333-8444-555555555555"
KEY = "fake-add-key"


@dataclass
class FakeAdds:
    """A loopback `POST /api/v2/leads/add`: every answer after `delay` seconds; the batch's emails choose it.

    `refused` in an email: 400 at once, naming nobody (the client halves the batch); `garbled`: a 200 with an
    error object in it (unusable); `twin`: the lead is given the id `id-twin` (the same id for two batches);
    `slow`: the answer takes 3 x `delay`; `locked`: 401 after delay / 2. Any other lead is created with the id
    `id-<email>`. `max_in_flight` is the most requests held at one time, `batches` the emails of each request.
    """

    delay: float
    batches: list[list[str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, emails: list[str]) -> tuple[int, dict[str, Any], float]:
        if any("refused" in e for e in emails):
            return 400, {"statusCode": 400, "error": "Bad Request", "message": "body/leads must be valid"}, 0.0
        if any("locked" in e for e in emails):
            return 401, {"statusCode": 401, "error": "Unauthorized", "message": "Invalid API key"}, self.delay / 2
        wait = self.delay * (3 if any("slow" in e for e in emails) else 1)
        if any("garbled" in e for e in emails):
            return 200, {"leads_uploaded": 0, "error": "internal failure", "created_leads": []}, wait
        created = [{"index": i, "id": "id-twin" if "twin" in e else f"id-{e}", "email": e}
                   for i, e in enumerate(emails)]
        return 200, {"status": "success", "total_sent": len(emails), "leads_uploaded": len(emails),
                     "in_blocklist": 0, "duplicated_leads": 0, "skipped_count": 0, "invalid_email_count": 0,
                     "duplicate_email_count": 0, "incomplete_count": 0, "remaining_in_plan": 5000,
                     "created_leads": created}, wait


@pytest.fixture
def fake() -> Iterator[tuple[FakeAdds, str]]:
    """A running FakeAdds (0.3 s per answer unless a test changes `delay`) and its base URL."""
    state = FakeAdds(delay=0.3)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            emails = [str(x.get("email")) for x in json.loads(raw)["leads"]]
            with state.lock:
                state.batches.append(emails)
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            status, body, wait = state.answer(emails)
            time.sleep(wait)
            with state.lock:  # out of flight before the answer leaves: the client's next request may follow it
                state.in_flight -= 1
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def product_client(base_url: str, **overrides: Any) -> InstantlyClient:
    """A client with the product's default pacer limits (the settings' defaults, 20/s and 1,200/min)."""
    return InstantlyClient(KEY, base_url=base_url, max_per_second=int(SPEC_BY_NAME["instantly_max_per_second"].default),
                           max_per_minute=int(SPEC_BY_NAME["instantly_max_per_minute"].default), **overrides)


def leads(emails: list[str]) -> list[dict[str, Any]]:
    return [{"email": e} for e in emails]


def numbered(count: int) -> list[str]:
    return [f"lead{i:02d}@corp.example" for i in range(count)]


def timed_add(base_url: str, emails: list[str], concurrency: int, **client_options: Any) -> tuple[AddLeadsResult,
                                                                                                   float]:
    with product_client(base_url, **client_options) as client:
        started = time.monotonic()
        result = client.add_leads(CAMPAIGN, leads(emails), chunk_size=2, concurrency=concurrency)
        return result, time.monotonic() - started


# ---- (a) in flight at once ----------------------------------------------------------------------

def test_ten_batches_with_four_in_flight_take_three_answers_time(fake: tuple[FakeAdds, str]) -> None:
    """10 batches, 4 in flight: 4 + 4 + 2 answers, so about 3 x the delay (not 10 x), and never more than 4
    requests held by the server at once; every lead created with its own id."""
    state, url = fake
    emails = numbered(20)
    result, elapsed = timed_add(url, emails, concurrency=4)
    assert 2.5 * state.delay < elapsed < 6 * state.delay  # one after another would be 10 x; margin for a loaded CI
    assert state.max_in_flight == 4
    assert len(state.batches) == 10
    assert [(o.index, o.outcome, o.lead_id) for o in result.outcomes] == [
        (i, "created", f"id-{e}") for i, e in enumerate(emails)]


def test_one_in_flight_sends_the_batches_one_after_another(fake: tuple[FakeAdds, str]) -> None:
    """Concurrency 1: the 10 batches wait for each other (10 x the delay) and the server never holds two,
    sent in request order."""
    state, url = fake
    emails = numbered(20)
    result, elapsed = timed_add(url, emails, concurrency=1)
    assert 10 * state.delay <= elapsed < 15 * state.delay
    assert state.max_in_flight == 1
    assert state.batches == [emails[i:i + 2] for i in range(0, 20, 2)]
    assert result.counts() == {"created": 20}


def test_concurrency_out_of_range_is_refused_before_any_request(fake: tuple[FakeAdds, str]) -> None:
    """0 and 17 in flight are programming errors: ValueError naming the bounds, nothing sent."""
    state, url = fake
    with product_client(url) as client:
        for bad in (0, 17):
            with pytest.raises(ValueError, match="concurrency must be between 1 and 16"):
                client.add_leads(CAMPAIGN, leads(numbered(2)), concurrency=bad)
    assert state.batches == []


# ---- (b) the same outcomes whatever order the answers come in -----------------------------------

def mixed_batch() -> list[str]:
    """20 leads in 10 batches of 2: batch 1 holds a refused lead, batch 2 a twin id (answered slowly, so
    batch 6's twin is answered first when they overlap), batch 3 a garbled answer."""
    emails = numbered(20)
    emails[3] = "refused03@corp.example"
    emails[4] = "twin-slow04@corp.example"
    emails[6] = "garbled06@corp.example"
    emails[12] = "twin12@corp.example"
    return emails


def test_outcomes_with_four_in_flight_are_exactly_the_sequential_ones(fake: tuple[FakeAdds, str]) -> None:
    """A refused batch halved, an unusable answer and an id given to two batches (the later batch answered
    first): with 4 in flight every lead's outcome, id, inferred flag and error type is the one a sequential
    add gives, worked out here by hand. (The circuit is off, circuit_seconds=0: an unusable answer would
    otherwise stop the batches not yet sent, which depends on timing by nature; test (c) covers stopping.)"""
    state, url = fake
    state.delay = 0.1
    emails = mixed_batch()
    runs = {n: timed_add(url, emails, concurrency=n, circuit_seconds=0)[0] for n in (1, 4)}

    Shape = tuple[int, str, str | None, bool, type | None]

    def shape(result: AddLeadsResult) -> list[Shape]:
        return [(o.index, o.outcome, o.lead_id, o.inferred, type(o.error) if o.error else None)
                for o in result.outcomes]

    expected: list[Shape] = [(i, "created", f"id-{e}", False, None) for i, e in enumerate(emails)]
    expected[3] = (3, "failed", None, False, ValidationError)  # alone after one halving: Instantly named it
    expected[4] = (4, "unknown", None, True, UnusableAnswerError)  # its id was given again in batch 6
    for i in (6, 7, 12, 13):  # the garbled answer; the batch answered with the id already given
        expected[i] = (i, "unknown", None, True, UnusableAnswerError)
    assert shape(runs[1]) == expected
    assert shape(runs[4]) == expected
    for result in runs.values():
        assert [str(u) for u in result.unusable] == [str(u) for u in runs[1].unusable]
        assert len(result.unusable) == 2
        assert (result.chunks_sent, result.chunks_failed, result.totals, result.remaining_in_plan) == (
            runs[1].chunks_sent, runs[1].chunks_failed, runs[1].totals, 5000)
    assert state.max_in_flight == 4  # the second run really overlapped


# ---- (c) an error that stops the rest -----------------------------------------------------------

def test_a_401_stops_every_batch_not_yet_sent(fake: tuple[FakeAdds, str]) -> None:
    """Batch 1 gets a 401 while batches 0, 2 and 3 are in flight: those land, the six not yet sent are never
    sent (4 requests in all) and their leads fail with that 401, as one at a time fails those after it."""
    state, url = fake
    emails = numbered(20)
    emails[2] = "locked02@corp.example"
    result, _elapsed = timed_add(url, emails, concurrency=4)
    assert len(state.batches) == 4
    assert {b[0] for b in state.batches} == {emails[0], emails[2], emails[4], emails[6]}
    got = [(o.index, o.outcome, type(o.error) if o.error else None) for o in result.outcomes]
    landed = {0, 1, 4, 5, 6, 7}
    assert got == [(i, "created", None) if i in landed else (i, "failed", AuthenticationError) for i in range(20)]
    refused = result.outcomes[2].error
    assert all(o.error is refused for o in result.outcomes[8:])
    assert (result.chunks_sent, result.chunks_failed) == (3, 7)


# ---- (d) the whole sync -------------------------------------------------------------------------

class CountingAdapter(CrashingAdapter):
    """The test edge of tests/test_invariants (invariant 5 checked as each add leaves), counting the most
    add requests in flight at once."""

    def __init__(self, before_send: Any) -> None:
        super().__init__(Operations(), before_send)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        is_add = str(request.url).endswith("/leads/add")
        if is_add:
            with self.lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return super().send(request, *args, **kwargs)
        finally:
            if is_add:
                with self.lock:
                    self.in_flight -= 1


def fill(tmp_path: Path, concurrency: int) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]], list[str], int]:
    """One sync filling both campaigns (12 SMB and 12 Midsize leads, batches of 3: 4 adds each, 0.2 s per
    add): the (email, campaign) pairs in Instantly, the warehouse's (email, campaign, status) rows, every
    invariant violation found (at each add and after the run), and the most adds in flight."""
    tmp_path.mkdir()
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="24",
                             target_new_leads_per_run="24", batch_size="3", instantly_api_key="sim-key",
                             supply_days="0", instantly_add_concurrency=str(concurrency))
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    sim.set_fault("POST /leads/add", FaultSpec(latency=0.2))
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    rows = ([lead(f"smb{n:02d}@corp.example", Decimal(900_000 - 1_000 * n)) for n in range(12)]
            + [lead(f"mid{n:02d}@corp.example", Decimal(5_000_000 - 1_000 * n)) for n in range(12)])
    build(warehouse, settings, rows, as_of=START)
    session = requests.Session()
    world = Checked(warehouse, sim, InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01,
                                                    backoff_max=0.05, session=session), settings)
    guard_lock = threading.Lock()

    def guard(endpoint: str, body: Any) -> None:  # the adds' threads take turns at the warehouse check
        with guard_lock:
            world.guard(endpoint, body)

    adapter = CountingAdapter(guard)
    session.mount("http://", adapter)
    try:
        violations = world.run()
        in_instantly = {(str(x["email"]), str(x["campaign"])) for x in sim.leads()}
        state = {(str(r["email"]), str(r["campaign_id"]), str(r["status"])) for r in warehouse.query(
            "SELECT email, campaign_id, status FROM `{ds}.ops_inst_state`", label="test.state")}
        assert len(sim.requests_to("POST", "/leads/add")) == 8
        return in_instantly, state, violations, adapter.max_in_flight
    finally:
        world.client.close()
        sim.stop()
        warehouse.close()


def test_a_fill_with_four_adds_in_flight_ends_as_one_at_a_time(tmp_path: Path) -> None:
    """A sync with 4 adds in flight puts the same 24 leads in the same campaigns of Instantly and the
    warehouse as one with 1, every lead of every add had its 'pending' row when its add left, and the
    invariants hold after the run."""
    one = fill(tmp_path / "one", 1)
    four = fill(tmp_path / "four", 4)
    expected = ({(f"smb{n:02d}@corp.example", SMB) for n in range(12)}
                | {(f"mid{n:02d}@corp.example", MIDSIZE) for n in range(12)})
    assert one[0] == four[0] == expected
    assert one[1] == four[1] == {(email, campaign, "active") for email, campaign in expected}
    assert one[2] == four[2] == []
    assert (one[3], four[3]) == (1, 4)
