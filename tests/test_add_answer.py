"""The bulk-add answer is checked whole before anything of it is recorded (issue 15, item 6): `created_leads`
that contradict the request, or an error object in a 200, leave the chunk's leads "outcome unknown" (pending,
looked up by email next run): never tracked under a bogus id, never failed, no history, no plan-limit dead
letter; the run warns and the service letter of POST /leads/add opens."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient, add_answer_problem
from coldsync.instantly.errors import CircuitOpenError, UnusableAnswerError
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.settings import Settings
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build, lead
from tests.instantly_fixtures import FakeClock
from tests.test_instantly_client import StubSession, stub_client

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
EMAILS = ["ann@corp.example", "bob@corp.example", "cid@corp.example"]  # in priority order (revenue falls)
LEADS = [{"email": e} for e in EMAILS]
UNKNOWN = ("nothing of it is recorded, their outcome is unknown (looked up by email next run) "
           "[POST /leads/add] http 200")


def answer(created: list[Any], *, uploaded: int | None = None, total: int = 3, **extra: Any) -> dict[str, Any]:
    """A 200 answer of POST /leads/add shaped as the spec's (every counter 0 but the uploads)."""
    return {"status": "success", "total_sent": total, "leads_uploaded": len(created) if uploaded is None else uploaded,
            "in_blocklist": 0, "blocklist_used": None, "duplicated_leads": 0, "skipped_count": 0,
            "invalid_email_count": 0, "incomplete_count": 0, "duplicate_email_count": 0, "remaining_in_plan": 100,
            "created_leads": created, **extra}


# ---- the answer checked whole (client) -------------------------------------------------------------------

def test_a_repeated_index_with_a_bogus_id_leaves_every_lead_unknown() -> None:
    """The issue's answer (index 0 twice, one bogus id also given to index 1): all three leads `unknown`, none
    created under the bogus id, none failed; the call is not retried, no look-up is made, its counters and plan
    figure are not taken, and the client's health records a failure of POST /leads/add."""
    bogus = [{"index": 0, "id": "bogus-id"}, {"index": 0, "id": "bogus-id"}, {"index": 1, "id": "bogus-id"}]
    session = StubSession([(200, answer(bogus))])
    client = stub_client(session, FakeClock())
    result = client.add_leads(SMB, LEADS)
    assert [(o.index, o.email, o.outcome, o.lead_id) for o in result.outcomes] == [
        (0, EMAILS[0], "unknown", None), (1, EMAILS[1], "unknown", None), (2, EMAILS[2], "unknown", None)]
    (error,) = result.unusable
    assert str(error) == ("Instantly's answer to the add of 3 lead(s) contradicts the request (index 0 given twice): "
                          + UNKNOWN)
    assert all(o.error is error for o in result.outcomes)
    assert [endpoint for _m, endpoint, _b in session.sent] == ["https://stub.invalid/api/v2/leads/add"]
    assert result.totals == {} and result.remaining_in_plan is None and result.chunks_sent == 1
    assert client.health.failed == {"POST /leads/add": error}


@pytest.mark.parametrize(("created", "uploaded", "detail"), [
    ([{"index": 3, "id": "x"}], None, "an index that is not a position of the 3 lead(s) sent"),
    ([{"index": -1, "id": "x"}], None, "an index that is not a position of the 3 lead(s) sent"),
    ([{"index": True, "id": "x"}], None, "an index that is not a position of the 3 lead(s) sent"),
    ([{"index": "0", "id": "x"}], None, "an index that is not a position of the 3 lead(s) sent"),
    ([{"index": 0, "id": " "}], None, "no id for index 0"),
    ([{"index": 0}], None, "no id for index 0"),
    ([{"index": 0, "id": "x"}, {"index": 1, "id": "x"}], None, "one id given to two leads (index 1 and another)"),
    (["x"], None, "an entry of created_leads is not an object"),
    ([{"index": 0, "id": "x", "email": "eve@corp.example"}], None,
     "the email given for index 0 is not the lead sent there"),
    ([{"index": 0, "id": "x"}, {"index": 1, "id": "y"}], 1, "2 created lead(s) listed but leads_uploaded is 1"),
])
def test_contradicting_answers_are_named(created: list[Any], uploaded: int | None, detail: str) -> None:
    """Each way created_leads can contradict a 3-lead request is found, and named in the error."""
    assert add_answer_problem(answer(created, uploaded=uploaded), EMAILS) == ("contradiction", detail)


def test_real_answers_pass() -> None:
    """The spec's example item, the recorded live answer (nothing created), and an email echoed in another case
    are usable answers."""
    spec_item = {"id": "f9cc070d-8dba-4341-b847-f083c358e460", "email": "test@example.com", "index": 0}
    assert add_answer_problem(answer([spec_item], total=1), ["test@example.com"]) is None
    # /work/shared/instantly/recorded/add-leads.json: the live API's answer to an add of one lead already there.
    recorded = {"status": "success", "total_sent": 1, "leads_uploaded": 0, "in_blocklist": 0, "blocklist_used": None,
                "duplicated_leads": 1, "skipped_count": 0, "invalid_email_count": 0, "incomplete_count": 0,
                "duplicate_email_count": 0, "remaining_in_plan": 236, "created_leads": []}
    assert add_answer_problem(recorded, ["nango-dryrun-test-a@example.com"]) is None
    assert add_answer_problem(answer([{"index": 1, "id": "x", "email": " Bob@Corp.Example"}]), EMAILS) is None


@pytest.mark.parametrize(("extra", "said"), [
    ({"error": "Lead limit reached"}, "Lead limit reached"),
    ({"error": {"code": "LIMIT", "detail": "over plan"}}, '{"code": "LIMIT", "detail": "over plan"}'),
    ({"message": "Workspace over its lead limit", "status": "error"}, "Workspace over its lead limit"),
])
def test_an_error_object_in_a_200_leaves_the_chunk_unknown(extra: dict[str, Any], said: str) -> None:
    """A 200 carrying `error` (or a `message` with nothing uploaded): every lead `unknown`, never plan_limit,
    the server's text in the error, a service-level failure recorded for POST /leads/add."""
    body = {"leads_uploaded": 0, **extra}
    client = stub_client(StubSession([(200, body)]), FakeClock())
    result = client.add_leads(SMB, LEADS[:2])
    assert [(o.index, o.outcome) for o in result.outcomes] == [(0, "unknown"), (1, "unknown")]
    (error,) = result.unusable
    assert isinstance(error, UnusableAnswerError)
    assert str(error) == ("Instantly answered the add of 2 lead(s) with an error in a 200 answer: " + UNKNOWN
                          + f" server said: {said}")
    assert client.health.failed == {"POST /leads/add": error}


def test_a_message_beside_uploads_is_not_an_error() -> None:
    """A `message` with leads uploaded is not an error object: the answer is used."""
    body = answer([{"index": 0, "id": "id-0"}], total=1, message="ok, 1 lead imported")
    assert add_answer_problem(body, EMAILS[:1]) is None


def test_an_id_given_again_in_a_later_chunk_puts_both_leads_in_doubt() -> None:
    """Chunks of one lead: the second answer gives the first lead's id again: both leads `unknown` (neither is
    tracked under it), and the third chunk is not sent (POST /leads/add's circuit is open)."""
    session = StubSession([(200, answer([{"index": 0, "id": "same-id"}], total=1)),
                           (200, answer([{"index": 0, "id": "same-id"}], total=1))])
    client = stub_client(session, FakeClock())
    result = client.add_leads(SMB, LEADS, chunk_size=1)
    assert [(o.index, o.outcome, o.lead_id) for o in result.outcomes] == [
        (0, "unknown", None), (1, "unknown", None), (2, "failed", None)]
    assert str(result.outcomes[0].error) == (
        "Instantly's answer to the add of 1 lead(s) contradicts the request (one id given to two leads (index 0 and "
        f"another)): {UNKNOWN}")
    assert isinstance(result.outcomes[2].error, CircuitOpenError)
    assert len(session.sent) == 2


# ---- end to end: a sync against the simulator behind a hostile edge ------------------------------------

class Hostile(HTTPAdapter):
    """The HTTP edge between the client and the simulator: `rewrite` changes the answer of POST /leads/add
    (the simulator did add the leads); `instead` answers it without reaching the simulator."""

    def __init__(self) -> None:
        super().__init__()
        self.rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.instead: dict[str, Any] | None = None

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        is_add = request.method == "POST" and str(request.url).endswith("/api/v2/leads/add")
        if is_add and self.instead is not None:
            response = requests.Response()
            response.status_code, response.url, response.request = 200, str(request.url), request
            response.headers["Content-Type"] = "application/json"
            response._content = json.dumps(self.instead).encode()
            return response
        response = super().send(request, *args, **kwargs)
        if is_add and self.rewrite is not None and response.status_code == 200:
            response._content = json.dumps(self.rewrite(json.loads(response.content))).encode()
        return response


@dataclass
class World:
    warehouse: Warehouse
    sim: InstantlySimulator
    client: InstantlyClient
    settings: Settings
    edge: Hostile
    runs: list[SyncResult] = field(default_factory=list)

    def run(self) -> SyncResult:
        result = run_sync(self.settings, self.warehouse, self.client, now=self.sim.now)
        self.runs.append(result)
        return result

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.warehouse.query(sql, label="test.add_answer")

    def state(self) -> dict[str, tuple[str, str | None]]:
        return {str(r["email"]): (str(r["status"]), r["instantly_lead_id"]) for r in
                self.rows("SELECT email, status, instantly_lead_id FROM `{ds}.ops_inst_state`")}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="10",
                             target_new_leads_per_run="10", batch_size="10", instantly_api_key="sim-key",
                             supply_days="0", blocklist_mirror="false")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings, [lead(e, Decimal(900_000 - 1_000 * n)) for n, e in enumerate(EMAILS)], as_of=START)
    edge = Hostile()
    session = requests.Session()
    session.mount("http://", edge)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05, session=session)
    try:
        yield World(warehouse, sim, client, settings, edge)
    finally:
        client.close()
        sim.stop()
        warehouse.close()


def _bogus(body: dict[str, Any]) -> dict[str, Any]:
    """The issue's hostile answer: index 0 repeated with a bogus id that index 1 gets too."""
    return {**body, "created_leads": [{"index": 0, "id": "bogus-id"}, {"index": 0, "id": "bogus-id"},
                                      {"index": 1, "id": "bogus-id"}]}


def test_a_bogus_answer_tracks_nobody_under_the_bogus_id_and_the_next_run_adopts(world: World) -> None:
    """A sync whose add answer repeats an index with a bogus id: the three leads stay pending without an id (no
    row under the bogus id, no history, no add dead letter), the run warns and opens the POST /leads/add service
    letter, exit 0; the next run looks them up by email and tracks each under its real id."""
    world.edge.rewrite = _bogus
    first = world.run()
    assert first.exit_code == ExitCode.OK and first.report.added == 0
    assert world.sim.lead_count(SMB) == 3  # Instantly did add them
    assert world.state() == {e: ("pending", None) for e in EMAILS}
    assert world.rows("SELECT * FROM `{ds}.ops_inst_state` WHERE instantly_lead_id = 'bogus-id'") == []
    assert world.rows("SELECT email FROM `{ds}.ops_lead_history`") == []
    letters = world.rows("SELECT phase, operation, email, http_status, resolved_at FROM `{ds}.ops_dead_letters`")
    assert letters == [{"phase": "service", "operation": "POST /leads/add", "email": None, "http_status": 200,
                        "resolved_at": None}]
    assert ("campaign SMB: Instantly's answer to the add of 3 lead(s) contradicts the request (index 0 given twice): "
            f"{UNKNOWN}") in first.report.warnings

    world.edge.rewrite = None
    second = world.run()
    assert second.exit_code == ExitCode.OK
    assert world.state() == {e: ("active", world.sim.find_leads(e)[0]["id"]) for e in EMAILS}
    assert world.rows("SELECT email FROM `{ds}.ops_lead_history`") == []


def test_an_error_in_a_200_is_a_warning_and_a_service_letter_not_plan_limit_letters(world: World) -> None:
    """A 200 answering `{"error": ..., "leads_uploaded": 0}`: the run summary warns, no plan_limit (or any add)
    dead letter, no history, the leads pending without an id, and the POST /leads/add service letter is open."""
    world.edge.instead = {"error": "Lead limit reached", "leads_uploaded": 0}
    result = world.run()
    assert result.exit_code == ExitCode.OK and result.report.added == 0
    assert world.sim.lead_count() == 0
    assert world.state() == {e: ("pending", None) for e in EMAILS}
    assert world.rows("SELECT email FROM `{ds}.ops_lead_history`") == []
    letters = world.rows("SELECT phase, operation, email, http_status, resolved_at FROM `{ds}.ops_dead_letters`")
    assert letters == [{"phase": "service", "operation": "POST /leads/add", "email": None, "http_status": 200,
                        "resolved_at": None}]
    error = ("Instantly answered the add of 3 lead(s) with an error in a 200 answer: " + UNKNOWN
             + " server said: Lead limit reached")
    assert f"campaign SMB: {error}" in result.report.warnings
    assert (f"Instantly POST /leads/add failed at the service level ({error}): nothing is counted against any lead; "
            "retried by the next run") in result.report.warnings
    assert result.report.phase("topup").counts["outcome:unknown"] == 3
    assert result.report.phase("topup").counts["outcome:plan_limit"] == 0
