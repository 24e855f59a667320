"""Instantly client against the simulator over real HTTP on 127.0.0.1, with faults injected."""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Any

import pytest
import requests

from coldsync.instantly import client as client_module
from coldsync.instantly.client import (
    ALLOWED_OPERATIONS,
    BlockListEntry,
    InstantlyClient,
    LeadFilter,
    Pacer,
    add_unsub_to_block,
    request_category,
)
from coldsync.instantly.errors import (
    AddRefusedError,
    AuthenticationError,
    CircuitOpenError,
    IncompleteListingError,
    InstantlyError,
    NotFoundError,
    PlanError,
    RateLimitedError,
    ScopeError,
    ServerError,
    TransportError,
    UnsafeRequestError,
    ValidationError,
    is_service_level,
)
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from tests.instantly_fixtures import (  # noqa: F401 - fixtures are used by name
    KEY,
    FakeClock,
    campaign_id_fixture,
    client_fixture,
    clock_fixture,
    make_client,
    make_sim,
    people,
    sim_fixture,
)

# --------------------------------------------------------------------------------------------------
# Transport: retries, errors, headers


def test_retries_a_5xx_burst_then_succeeds(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """Three 503s in a row are retried and the fourth attempt's answer is returned."""
    sim.set_fault("GET /campaigns/*", FaultSpec.burst(3))
    campaign = client.get_campaign(campaign_id)
    assert campaign.id == campaign_id
    assert client.stats.retries == 3
    assert [r.status for r in sim.requests_to("GET", "/campaigns/{id}")] == [503, 503, 503, 200]


def test_retries_a_429_storm_with_backoff_when_no_retry_after(
    sim: InstantlySimulator, client: InstantlyClient, clock: FakeClock, campaign_id: str
) -> None:
    """429s without Retry-After are retried after growing, jittered, bounded waits."""
    sim.set_fault("GET /campaigns/*", FaultSpec.storm(3))
    client.get_campaign(campaign_id)
    assert len(clock.sleeps) == 3
    assert all(0.005 <= s <= 0.05 for s in clock.sleeps)


def test_honours_retry_after(
    sim: InstantlySimulator, client: InstantlyClient, clock: FakeClock, campaign_id: str
) -> None:
    """A 429 with Retry-After: 7 makes the client wait exactly 7 seconds before retrying."""
    sim.set_fault("GET /campaigns/*", FaultSpec.storm(1, retry_after=7))
    client.get_campaign(campaign_id)
    assert clock.sleeps == [7.0]


def test_caps_an_absurd_retry_after(sim: InstantlySimulator, clock: FakeClock, campaign_id: str) -> None:
    """A Retry-After beyond max_retry_after is capped instead of hanging the job."""
    sim.set_fault("GET /campaigns/*", FaultSpec.storm(1, retry_after=86_400))
    with make_client(sim, clock, max_retry_after=30) as client:
        client.get_campaign(campaign_id)
    assert clock.sleeps == [30.0]


def test_retries_read_timeouts(sim: InstantlySimulator, clock: FakeClock, campaign_id: str) -> None:
    """A server that stalls past the read timeout is retried and the next answer is used."""
    sim.set_fault("GET /campaigns/*", FaultSpec.timeouts(1, seconds=1.0))
    with make_client(sim, clock, read_timeout=0.2) as client:
        assert client.get_campaign(campaign_id).id == campaign_id
        assert client.stats.by_status[0] == 1
        assert client.stats.retries == 1


def test_retries_closed_connections(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """A socket closed without an answer (connection reset) is retried."""
    sim.set_fault("GET /campaigns/*", FaultSpec.timeouts(2, seconds=0))
    assert client.get_campaign(campaign_id).id == campaign_id
    assert client.stats.retries == 2


def test_retries_cdn_html_error_pages(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """502 pages in HTML (as a CDN sends them) are transient server errors: retried."""
    sim.set_fault("GET /campaigns/*", FaultSpec.burst(2, 502, html=True))
    assert client.get_campaign(campaign_id).id == campaign_id
    assert client.stats.by_status[502] == 2


@pytest.mark.parametrize("kind", ["html", "truncated", "empty", "wrong_shape"])
def test_retries_malformed_success_bodies(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str, kind: Any
) -> None:
    """A 200 whose body is HTML, truncated JSON, empty or the wrong shape is retried like a 5xx."""
    sim.set_fault("GET /campaigns/*", FaultSpec(malformed=2, malformed_kind=kind))
    assert client.get_campaign(campaign_id).id == campaign_id
    assert client.stats.retries == 2


def test_persistent_5xx_raises_server_error_after_max_attempts(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """When every attempt fails, ServerError carries the status, the path and the attempt count."""
    sim.set_fault("GET /campaigns/*", FaultSpec.burst(10, 500))
    with make_client(sim, clock, max_attempts=3) as client, pytest.raises(ServerError) as caught:
        client.get_campaign(campaign_id)
    assert caught.value.http_status == 500
    assert caught.value.attempts == 3
    assert caught.value.path == f"/campaigns/{campaign_id}"
    assert len(sim.requests_to("GET", "/campaigns/{id}")) == 3


def test_persistent_429_raises_rate_limited(sim: InstantlySimulator, clock: FakeClock, campaign_id: str) -> None:
    """A 429 storm longer than the retry budget ends in RateLimitedError."""
    sim.set_fault("GET /campaigns/*", FaultSpec.storm(10))
    with make_client(sim, clock, max_attempts=4) as client, pytest.raises(RateLimitedError):
        client.get_campaign(campaign_id)


def test_persistent_stalls_raise_transport_error(sim: InstantlySimulator, clock: FakeClock, campaign_id: str) -> None:
    """Connections that never answer end in TransportError after the retries."""
    sim.set_fault("GET /campaigns/*", FaultSpec.timeouts(10, seconds=0))
    with make_client(sim, clock, max_attempts=3) as client, pytest.raises(TransportError) as caught:
        client.get_campaign(campaign_id)
    assert caught.value.http_status is None
    assert caught.value.attempts == 3


def test_unreachable_server_raises_transport_error(clock: FakeClock) -> None:
    """Nothing listening on the port is a TransportError, not a crash of another kind."""
    with make_sim() as sim:
        base_url = sim.base_url
    client = InstantlyClient(
        KEY, base_url=base_url, max_attempts=2, sleep=clock.sleep, clock=clock, connect_timeout=0.5
    )
    with pytest.raises(TransportError):
        client.check_key()


def test_400_is_not_retried_and_keeps_the_server_message(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """A 400 is raised at once as ValidationError with the server's explanation."""
    sim.set_fault("POST /leads/add", FaultSpec(statuses=[400, 400], message="body/leads/0/email must be string"))
    result = client.add_leads(campaign_id, people(1))
    error = result.outcomes[0].error
    assert isinstance(error, ValidationError)
    assert error.server_message == "body/leads/0/email must be string"
    assert len(sim.requests_to("POST", "/leads/add")) == 1
    assert client.stats.retries == 0


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (402, PlanError),
        (403, ScopeError),
        (404, NotFoundError),
    ],
)
def test_each_status_maps_to_its_typed_error(
    sim: InstantlySimulator, client: InstantlyClient, status: int, error_type: type[InstantlyError]
) -> None:
    """Every documented 4xx becomes its own exception type, sent exactly once."""
    sim.set_fault("GET /campaigns", FaultSpec(statuses=[status]))
    with pytest.raises(error_type) as caught:
        client.check_key()
    assert caught.value.http_status == status
    assert not caught.value.retryable
    assert len(sim.requests_to("GET", "/campaigns")) == 1


def test_wrong_key_is_an_authentication_error(sim: InstantlySimulator, clock: FakeClock) -> None:
    """The simulator's real 401 for a wrong key surfaces as AuthenticationError from check_key."""
    with make_client(sim, clock, api_key="wrong-key") as client, pytest.raises(AuthenticationError) as caught:
        client.check_key()
    assert caught.value.server_message == "Invalid API key"


def test_unknown_campaign_is_not_found(client: InstantlyClient) -> None:
    """Getting a campaign that does not exist raises NotFoundError."""
    with pytest.raises(NotFoundError):
        client.get_campaign("00000000-0000-4000-8000-000000000000")


def test_headers_bearer_user_agent_and_no_content_type_without_body(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """Bodyless requests carry no Content-Type; every request has Bearer auth and our User-Agent."""
    ids = [o.lead_id for o in client.add_leads(campaign_id, people(2)).created]
    client.pause_campaign(campaign_id)
    client.activate_campaign(campaign_id)
    assert ids[0] is not None
    assert client.get_lead(ids[0]) is not None
    assert client.delete_lead(ids[0]) is True
    for record in sim.request_log:
        assert record.authorized
        assert record.user_agent == "coldsync/0.1 (+lead sync)"
        if record.request_body is None:
            assert record.content_type is None, record.endpoint
        else:
            assert record.content_type == "application/json", record.endpoint
    assert {r.status for r in sim.request_log} == {200}


def test_only_allowed_operations_can_be_sent(client: InstantlyClient, sim: InstantlySimulator) -> None:
    """The low-level request refuses any (method, path) outside the client's allow-list."""
    with pytest.raises(UnsafeRequestError):
        client._request("PATCH", "/leads/{id}", path_params={"id": "x"}, body={"first_name": "A"})
    with pytest.raises(UnsafeRequestError):
        client._request("GET", "/leads/{id}", path_params={"id": " "})
    assert sim.request_log == []
    assert ("DELETE", "/block-lists-entries") not in ALLOWED_OPERATIONS


# --------------------------------------------------------------------------------------------------
# Pacing


def test_pacer_keeps_every_window_under_both_limits() -> None:
    """Over 60 calls, no 1 s window holds more than 5 and no 60 s window more than 20."""
    clock = FakeClock(0.0)
    pacer = Pacer(5, 20, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(60):
        pacer.acquire()
        stamps.append(clock.now)
    for i, start in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < start + 1.0) <= 5
        assert sum(1 for s in stamps[i:] if s < start + 60.0) <= 20
    assert stamps[-1] >= 120.0  # 60 calls at 20/min need two full minutes of waiting


def test_client_pacing_keeps_a_strict_server_happy(clock: FakeClock) -> None:
    """With real time, a client paced at 8/s never trips a server limiting at 10/s."""
    with make_sim(max_per_second=10, max_per_minute=600) as sim:
        campaign_id = sim.create_campaign("SMB")
        started = time.monotonic()
        with make_client(sim, max_per_second=8) as client:
            for _ in range(17):
                client.get_campaign(campaign_id)
        elapsed = time.monotonic() - started
        assert sim.counters["status 429"] == 0
        assert elapsed >= 1.9
        assert client.stats.paced_seconds > 1.5


def test_client_pacing_uses_the_injected_clock(sim: InstantlySimulator, clock: FakeClock, campaign_id: str) -> None:
    """Pacing waits go through the injected sleep: 12 calls at 5/s wait two simulated seconds."""
    with make_client(sim, clock, max_per_second=5) as client:
        for _ in range(12):
            client.get_campaign(campaign_id)
    assert sum(clock.sleeps) == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------------
# Paging guards


def test_listing_reads_every_page_and_reports_complete(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """250 leads come back over 3 pages plus the closing empty page; the listing is complete."""
    sim.insert_leads(campaign_id, people(250))
    listing = client.iter_leads(campaign=campaign_id)
    leads = listing.to_list()
    assert len({lead["id"] for lead in leads}) == 250
    assert listing.complete and listing.stop_reason == "empty_page"
    assert listing.pages == 4
    bodies = [r.request_body for r in sim.requests_to("POST", "/leads/list")]
    assert all(b["campaign"] == campaign_id and "campaign_id" not in b for b in bodies)


def test_listing_of_an_empty_campaign_stops_at_the_first_empty_page(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """An empty campaign costs one request and is complete."""
    listing = client.iter_leads(campaign=campaign_id)
    assert listing.to_list() == []
    assert listing.complete
    assert len(sim.requests_to("POST", "/leads/list")) == 1


def test_listing_stops_on_a_repeated_cursor(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """A server that ignores the cursor (same page again) is detected; the listing is partial."""
    sim.insert_leads(campaign_id, people(30))
    sim.set_fault("POST /leads/list", FaultSpec(paging="repeat_cursor"))
    listing = client.iter_leads(campaign=campaign_id, page_size=10)
    assert len(listing.to_list()) == 10
    assert not listing.complete
    assert listing.stop_reason == "repeated_cursor"
    assert listing.pages == 2
    with pytest.raises(IncompleteListingError):
        client.iter_leads(campaign=campaign_id, page_size=10).require_complete()


def test_listing_stops_when_cursors_go_on_forever(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """Fresh cursors over the same items forever end as `no_progress`, never as an endless loop."""
    sim.insert_leads(campaign_id, people(30))
    sim.set_fault("POST /leads/list", FaultSpec(paging="endless"))
    listing = client.iter_leads(campaign=campaign_id, page_size=10)
    assert len(listing.to_list()) == 10
    assert listing.stop_reason == "no_progress" and not listing.complete


def test_listing_stops_at_the_page_bound(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """The max-pages safety bound cuts a listing short and says so."""
    sim.insert_leads(campaign_id, people(10))
    listing = client.iter_leads(campaign=campaign_id, page_size=1, max_pages=3)
    assert len(listing.to_list()) == 3
    assert listing.stop_reason == "max_pages" and not listing.complete


def test_listing_without_cursor_is_complete_only_on_a_short_page(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """No cursor after a short page is an end; no cursor after a full page is a cut."""
    sim.insert_leads(campaign_id, people(15))
    sim.set_fault("POST /leads/list", FaultSpec(paging="no_cursor"))
    short = client.iter_leads(campaign=campaign_id, page_size=20)
    assert len(short.to_list()) == 15 and short.complete
    full = client.iter_leads(campaign=campaign_id, page_size=10)
    assert len(full.to_list()) == 10
    assert full.stop_reason == "missing_cursor" and not full.complete


def test_listing_error_propagates_and_leaves_it_incomplete(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """A page failing after retries raises its typed error; the listing is not complete."""
    sim.insert_leads(campaign_id, people(15))
    with make_client(sim, clock, max_attempts=2) as client:
        listing = client.iter_leads(campaign=campaign_id, page_size=10)
        first = next(listing)
        sim.set_fault("POST /leads/list", FaultSpec.burst(5))
        with pytest.raises(ServerError):
            list(listing)
    assert first["email"] == "person0@example.com"
    assert not listing.complete


def test_filters_and_contacts_are_sent_as_the_api_names_them(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """iter_leads sends `campaign`, `filter`, `contacts` and `ids` in the POST body."""
    created = client.add_leads(campaign_id, people(3)).created
    client.iter_leads(campaign=campaign_id, filter=LeadFilter.BOUNCED).to_list()
    found = client.iter_leads(contacts=["PERSON1@example.com"]).to_list()
    by_id = client.iter_leads(ids=[str(created[2].lead_id)]).to_list()
    assert [lead["email"] for lead in found] == ["person1@example.com"]
    assert [lead["id"] for lead in by_id] == [created[2].lead_id]
    bodies = [r.request_body for r in sim.requests_to("POST", "/leads/list")]
    assert bodies[0] == {"campaign": campaign_id, "filter": "FILTER_VAL_BOUNCED", "limit": 100}
    with pytest.raises(ValueError):
        client.iter_leads(page_size=101)


# --------------------------------------------------------------------------------------------------
# Campaigns and analytics


def test_campaign_listing_and_analytics(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """Campaigns page with their status; analytics come back as one entry per asked campaign."""
    ids = [sim.create_campaign(f"C{i}", status=1 if i % 2 == 0 else 2) for i in range(5)]
    campaigns = client.iter_campaigns(page_size=2)
    seen = {c.id: c.status for c in campaigns}
    assert campaigns.complete
    assert seen == {cid: (1 if i % 2 == 0 else 2) for i, cid in enumerate(ids)}
    paused = client.iter_campaigns(status=2).to_list()
    assert {c.id for c in paused} == {ids[1], ids[3]}
    sim.insert_leads(ids[0], people(4))
    analytics = client.campaign_analytics([ids[0], ids[1]])
    assert {a.campaign_id: a.leads_count for a in analytics} == {ids[0]: 4, ids[1]: 0}
    assert sim.requests_to("GET", "/campaigns/analytics")[0].query == {"ids": [ids[0], ids[1]]}


def test_check_key_accepts_the_right_key(client: InstantlyClient, sim: InstantlySimulator) -> None:
    """check_key is one cheap authenticated read."""
    client.check_key()
    assert [(r.endpoint, r.query) for r in sim.request_log] == [("GET /campaigns", {"limit": ["1"]})]


# --------------------------------------------------------------------------------------------------
# add_leads: one outcome per lead


def test_add_leads_chunks_by_1000_and_maps_ids_by_index(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """2,500 leads go in 3 requests; every lead gets the id the server created for its index."""
    leads = people(2500)
    result = client.add_leads(campaign_id, leads)
    assert [len(r.request_body["leads"]) for r in sim.requests_to("POST", "/leads/add")] == [1000, 1000, 500]
    assert result.counts() == {"created": 2500}
    server = {lead["id"]: lead["email"] for lead in sim.leads(campaign_id)}
    for outcome in result.outcomes:
        assert outcome.lead_id is not None
        assert server[outcome.lead_id] == leads[outcome.index]["email"]
    assert result.remaining_in_plan == sim.plan_lead_limit - 2500
    assert result.totals["leads_uploaded"] == 2500
    assert all(r.request_body["skip_if_in_workspace"] is True for r in sim.requests_to("POST", "/leads/add"))


def test_add_leads_reports_every_kind_of_refusal(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """Duplicates, skips, block-list hits, invalid emails and in-request repeats are told apart."""
    other = sim.create_campaign("Midsize")
    here = sim.insert_leads(campaign_id, [{"email": "already@example.com"}])["created_leads"][0]["id"]
    there = sim.insert_leads(other, [{"email": "elsewhere@example.com"}])["created_leads"][0]["id"]
    sim.add_to_blocklist("blocked@example.com")
    sim.add_to_blocklist("blocked-domain.example.com")
    leads: list[dict[str, Any]] = [
        {"email": "new1@example.com"},
        {"email": "Already@example.com"},
        {"email": "elsewhere@example.com"},
        {"email": "blocked@example.com"},
        {"email": "someone@blocked-domain.example.com"},
        {"email": "not-an-email"},
        {"first_name": "No Email"},
        {"email": "new1@example.com"},
        {"email": "new2@example.com"},
    ]
    result = client.add_leads(campaign_id, leads)
    got = [(o.outcome, o.lead_id) for o in result.outcomes]
    assert got[1] == ("duplicate", here)
    assert got[2] == ("skipped", there)
    assert result.outcomes[2].campaign_id == other
    assert [o.outcome for o in result.outcomes] == [
        "created",
        "duplicate",
        "skipped",
        "blocklisted",
        "blocklisted",
        "invalid",
        "invalid",
        "duplicate_in_request",
        "created",
    ]
    assert [o.index for o in result.outcomes] == list(range(9))
    assert sim.lead_count(campaign_id) == 3


def test_add_leads_plan_limit_cuts_the_tail(clock: FakeClock) -> None:
    """Past the plan's lead limit the rest is `plan_limit` (not lost, not guessed as invalid)."""
    with make_sim(plan_lead_limit=5) as sim:
        campaign_id = sim.create_campaign("SMB")
        with make_client(sim, clock) as client:
            result = client.add_leads(campaign_id, people(8))
    assert [o.outcome for o in result.outcomes] == ["created"] * 5 + ["plan_limit"] * 3
    assert result.remaining_in_plan == 0
    assert all(o.inferred for o in result.of("plan_limit"))


def test_add_leads_partial_bulk_rejection(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """Leads the server rejects inside a successful bulk add come back `invalid`, the rest created."""
    sim.set_fault("POST /leads/add", FaultSpec(reject_emails=["person2@example.com", "person5@example.com"]))
    result = client.add_leads(campaign_id, people(6))
    assert [o.outcome for o in result.outcomes] == ["created", "created", "invalid", "created", "created", "invalid"]


def test_add_leads_failed_chunk_opens_the_circuit(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """A chunk whose retries are spent on a 5xx opens the circuit: later chunks are not sent, every lead
    is `failed` (a service-level error), and the health record names the operation."""
    sim.set_fault("POST /leads/add", FaultSpec.burst(2, 500))
    with make_client(sim, clock, max_attempts=2) as client:
        result = client.add_leads(campaign_id, people(5), chunk_size=2)
        assert [o.outcome for o in result.outcomes] == ["failed"] * 5
        assert type(result.outcomes[0].error) is ServerError
        assert [type(o.error) for o in result.outcomes[2:]] == [CircuitOpenError] * 3
        assert result.chunks_failed == 3 and result.chunks_sent == 0
        assert len(sim.requests_to("POST", "/leads/add")) == 2  # the first chunk's two attempts only
        assert sim.lead_count(campaign_id) == 0
        assert list(client.health.failed) == ["POST /leads/add"] and client.health.every_call_failed
        clock.now += 299.0  # still open: not sent
        assert client.add_leads(campaign_id, people(1)).counts() == {"failed": 1}
        assert len(sim.requests_to("POST", "/leads/add")) == 2
        clock.now += 1.0  # CIRCUIT_SECONDS (300) later one call may try again, and it works
        assert client.add_leads(campaign_id, people(1)).counts() == {"created": 1}
        assert client.health.answered["POST /leads/add"] == 1


def test_add_leads_refused_chunk_is_halved_until_the_refused_lead_is_named(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """A 400 that names nobody (about the request, not the service) halves its chunk until the refused
    lead stands alone: that lead is `failed` and named (not inferred), every other lead created, the other
    chunks sent as usual, and the service counted as answering."""
    leads = people(5)
    bad = leads[1]["email"]
    sim.set_fault("POST /leads/add", FaultSpec(refuse_emails=[bad]))
    with make_client(sim, clock) as client:
        result = client.add_leads(campaign_id, leads, chunk_size=2)
        assert [o.outcome for o in result.outcomes] == ["created", "failed", "created", "created", "created"]
        assert isinstance(result.outcomes[1].error, ValidationError) and not result.outcomes[1].inferred
        assert not client.health.failed and client.health.answered["POST /leads/add"] == 5
    sizes = [(len(r.request_body["leads"]), r.status) for r in sim.requests_to("POST", "/leads/add")]
    assert sizes == [(2, 400), (1, 200), (1, 400), (2, 200), (1, 200)]
    assert sim.lead_count(campaign_id) == 4


def test_add_leads_halving_stops_at_its_budget(sim: InstantlySimulator, clock: FakeClock, campaign_id: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With the halving budget spent, the leads of a refused chunk fail together, `inferred` (named by
    nobody), so no lead is charged for a refusal Instantly did not pin on it."""
    monkeypatch.setattr(client_module, "MAX_ADD_SPLITS", 0)
    leads = people(4)
    sim.set_fault("POST /leads/add", FaultSpec(refuse_emails=[leads[0]["email"]]))
    with make_client(sim, clock) as client:
        result = client.add_leads(campaign_id, leads, chunk_size=2)
    assert [(o.outcome, o.inferred) for o in result.outcomes] == [
        ("failed", True), ("failed", True), ("created", False), ("created", False)]


def test_add_leads_refused_down_to_single_leads_is_a_refusal_of_the_operation(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """Every add answers 400 naming nobody: the first chunk of 4 is halved down to single leads (4, 2, 1, 1,
    2, 1, 1: 7 requests), none accepted, so it is ONE service-level AddRefusedError of POST /leads/add: every
    lead `failed` with it (inferred, named by nobody), the next chunk and a later call for that campaign not sent,
    while another campaign's add still goes (one campaign's refusal must not starve another)."""
    sim.set_fault("POST /leads/add", FaultSpec(refuse_emails=[x["email"] for x in people(7)]))
    with make_client(sim, clock) as client:
        result = client.add_leads(campaign_id, people(5), chunk_size=4)
        (refused,) = {o.error for o in result.outcomes}
        assert isinstance(refused, AddRefusedError) and is_service_level(refused) and refused.http_status == 400
        # The chunk's four refused together (inferred); the fifth never sent (it failed with the refusal).
        assert [(o.outcome, o.inferred) for o in result.outcomes] == [("failed", True)] * 4 + [("failed", False)]
        assert result.chunks_sent == 0
        assert client.health.failed == {"POST /leads/add": refused}
        assert [len(r.request_body["leads"]) for r in sim.requests_to("POST", "/leads/add")] == [4, 2, 1, 1, 2, 1, 1]
        later = client.add_leads(campaign_id, people(2, start=5))
        assert [o.error for o in later.outcomes] == [refused] * 2 and later.chunks_sent == 0
        assert len(sim.requests_to("POST", "/leads/add")) == 7
        other = sim.create_campaign("Other")
        sim.set_fault("POST /leads/add", FaultSpec())
        elsewhere = client.add_leads(other, people(2, start=8))
        assert [o.outcome for o in elsewhere.outcomes] == ["created"] * 2
        assert len(sim.requests_to("POST", "/leads/add")) == 8


def test_add_leads_two_bad_leads_among_good_ones_are_each_named(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """Two refused leads side by side in a chunk of 4: their half is refused down to both leads alone, the
    other half accepted, so each bad lead is its own refusal (ValidationError, named), the good two are
    created, and no service-level failure is recorded."""
    leads = people(4)
    sim.set_fault("POST /leads/add", FaultSpec(refuse_emails=[leads[0]["email"], leads[1]["email"]]))
    with make_client(sim, clock) as client:
        result = client.add_leads(campaign_id, leads, chunk_size=4)
        assert [(o.outcome, o.inferred, type(o.error)) for o in result.outcomes] == [
            ("failed", False, ValidationError), ("failed", False, ValidationError),
            ("created", False, type(None)), ("created", False, type(None))]
        assert not client.health.failed and not client.health.circuits
    sizes = [(len(r.request_body["leads"]), r.status) for r in sim.requests_to("POST", "/leads/add")]
    assert sizes == [(4, 400), (2, 400), (1, 400), (1, 400), (2, 200)]


def test_a_dropped_connection_after_answers_holds_back_its_own_operation_only(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """Instantly answered earlier calls; then POST /leads/add loses its connection on every attempt: only
    that operation's circuit opens, and a listing is still sent and answered."""
    with make_client(sim, clock, max_attempts=2) as client:
        client.get_campaign(campaign_id)
        sim.set_fault("POST /leads/add", FaultSpec.timeouts(100, seconds=0))
        assert client.add_leads(campaign_id, people(2)).counts() == {"failed": 2}
        assert client.health.unreachable is None and list(client.health.circuits) == ["POST /leads/add"]
        before = len(sim.requests_to("POST", "/leads/list"))
        assert list(client.iter_leads(campaign=campaign_id)) == []
        assert len(sim.requests_to("POST", "/leads/list")) == before + 1


def test_unreachable_service_fails_every_operation_at_once(clock: FakeClock) -> None:
    """When no connection can be made, the first call spends its retries and every later call, of any
    operation, fails at once without a request (an outage costs one call's retries, not one per call)."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with InstantlyClient("k", base_url=f"http://127.0.0.1:{port}", max_attempts=3, backoff_base=0.01,
                         sleep=clock.sleep, clock=clock) as client:
        with pytest.raises(TransportError):
            client.campaign_analytics(["c1"])
        assert client.stats.requests == 3
        with pytest.raises(CircuitOpenError, match="not sent"):
            client.get_campaign("c1")
        with pytest.raises(CircuitOpenError):
            list(client.iter_leads(campaign="c1"))
        assert client.stats.requests == 3
        assert set(client.health.failed) == {"GET /campaigns/analytics", "GET /campaigns/{id}", "POST /leads/list"}
        assert client.health.every_call_failed


def test_add_leads_stops_sending_after_an_auth_error(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """A 401 fails every chunk, and only the first one was ever sent."""
    sim.set_fault("POST /leads/add", FaultSpec(statuses=[401]))
    result = client.add_leads(campaign_id, people(5), chunk_size=2)
    assert result.counts() == {"failed": 5}
    assert all(isinstance(o.error, AuthenticationError) for o in result.outcomes)
    assert len(sim.requests_to("POST", "/leads/add")) == 1


def test_add_leads_lost_response_is_recovered_as_duplicates_with_ids(
    sim: InstantlySimulator, clock: FakeClock, campaign_id: str
) -> None:
    """An add whose answer is lost (applied, then timed out) is retried; the look-up finds the ids."""
    sim.set_fault("POST /leads/add", FaultSpec.timeouts(1, seconds=0, applies=True))
    with make_client(sim, clock) as client:
        result = client.add_leads(campaign_id, people(3))
    server = {lead["email"]: lead["id"] for lead in sim.leads(campaign_id)}
    assert [o.outcome for o in result.outcomes] == ["duplicate"] * 3
    assert [o.lead_id for o in result.outcomes] == [server[f"person{i}@example.com"] for i in range(3)]
    assert sim.lead_count(campaign_id) == 3


def test_add_leads_refuses_fields_instantly_rejects(
    client: InstantlyClient, sim: InstantlySimulator, campaign_id: str
) -> None:
    """An unknown lead field is a programming error raised before any request."""
    with pytest.raises(ValueError):
        client.add_leads(campaign_id, [{"email": "a@example.com", "campaign_id": campaign_id}])
    assert sim.request_log == []


# --------------------------------------------------------------------------------------------------
# Deletes


def test_delete_leads_by_ids_deletes_exactly_those(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """Bulk delete sends campaign_id, ids and limit=len(ids), chunked, and touches nothing else."""
    ids = [o.lead_id for o in client.add_leads(campaign_id, people(7)).created]
    doomed = [str(i) for i in ids[:5]]
    assert client.delete_leads(campaign_id, doomed, chunk_size=2) == 5
    bodies = [r.request_body for r in sim.requests_to("DELETE", "/leads")]
    assert bodies == [
        {"campaign_id": campaign_id, "ids": doomed[0:2], "limit": 2},
        {"campaign_id": campaign_id, "ids": doomed[2:4], "limit": 2},
        {"campaign_id": campaign_id, "ids": doomed[4:5], "limit": 1},
    ]
    assert sorted(lead["id"] for lead in sim.leads(campaign_id)) == sorted(str(i) for i in ids[5:])


def test_delete_lead_404_means_already_gone(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """Deleting a lead twice: True then False; getting it afterwards gives None."""
    lead_id = str(client.add_leads(campaign_id, people(1)).created[0].lead_id)
    assert client.delete_lead(lead_id) is True
    assert client.delete_lead(lead_id) is False
    assert client.get_lead(lead_id) is None


@pytest.mark.parametrize("ids", [[], None, "019b8d62-7a80-7000-8001-2b49d5e34124", [""], ["  "], ()])
def test_bulk_delete_without_explicit_ids_cannot_be_sent(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str, ids: Any
) -> None:
    """Empty, missing, blank or string ids raise before any request: the campaign is never wiped."""
    sim.insert_leads(campaign_id, people(3))
    with pytest.raises(UnsafeRequestError):
        client.delete_leads(campaign_id, ids)
    assert sim.request_log == []
    assert sim.lead_count(campaign_id) == 3


def test_no_path_sends_a_bulk_delete_or_a_block_list_wipe(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """Even the low-level request refuses an id-less DELETE /leads and any DELETE /block-lists-entries."""
    sim.insert_leads(campaign_id, people(3))
    sim.add_to_blocklist("blocked@example.com")
    for body in (
        {"campaign_id": campaign_id},
        {"campaign_id": campaign_id, "ids": []},
        {"campaign_id": campaign_id, "ids": ["x"]},  # no limit
        {"campaign_id": campaign_id, "ids": ["x", "y"], "limit": 5},
        {"ids": ["x"], "limit": 1},
        None,
    ):
        with pytest.raises(UnsafeRequestError):
            client._request("DELETE", "/leads", body=body)
    with pytest.raises(UnsafeRequestError):
        client._request("DELETE", "/block-lists-entries")
    public = [name for name in dir(client) if not name.startswith("_")]
    assert not [n for n in public if "block" in n and any(w in n for w in ("delete", "remove", "clear", "wipe"))]
    assert sim.request_log == []
    assert sim.lead_count(campaign_id) == 3 and sim.blocklist == ["blocked@example.com"]


# --------------------------------------------------------------------------------------------------
# Block list and stats


def test_block_list_add_chunks_by_1000(sim: InstantlySimulator, client: InstantlyClient, campaign_id: str) -> None:
    """1,500 values go in two requests; later adds of those emails are reported blocklisted."""
    values = [f"blocked{i}@example.com" for i in range(1500)] + ["not a value"]
    assert client.block_list_add(values) == 1500
    assert [len(r.request_body["bl_values"]) for r in sim.requests_to("POST", "/block-lists-entries/bulk-create")] == [
        1000,
        501,
    ]
    assert client.block_list_add([]) == 0
    result = client.add_leads(campaign_id, [{"email": "blocked7@example.com"}])
    assert result.outcomes[0].outcome == "blocklisted"
    entries = client.iter_block_list()
    assert len(entries.to_list()) == 1500 and entries.complete


class StubSession(requests.Session):
    """A session that answers every request with the next canned (status, JSON body) and records it."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        data = kwargs.get("data")
        self.sent.append((str(method), str(url), json.loads(data) if data else None))
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        return response


def stub_client(session: StubSession, clock: FakeClock, **overrides: Any) -> InstantlyClient:
    """A client whose HTTP goes to `session` (no server at all)."""
    options: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "jitter_seed": 0}
    options.update(overrides)
    return InstantlyClient(
        KEY, base_url="https://stub.invalid", session=session, sleep=clock.sleep, clock=clock, **options
    )


def stub_entry(entry_id: str, value: str, is_domain: bool) -> dict[str, Any]:
    """A block-list entry object shaped as the spec's BlockListEntry."""
    return {
        "id": entry_id,
        "timestamp_created": "2026-01-05T09:00:00.000Z",
        "organization_id": "00000000-0000-4000-8000-000000000001",
        "bl_value": value,
        "is_domain": is_domain,
    }


def test_block_list_create_maps_2500_values_to_their_ids_in_three_calls(
    sim: InstantlySimulator, client: InstantlyClient
) -> None:
    """2,500 values go in exactly 3 bulk-creates (1000/1000/500) and every value gets its own entry id."""
    values = [f"dnc{i}@example.com" for i in range(2000)] + [f"blocked{i}.example.com" for i in range(500)]
    result = client.block_list_create(values)
    bodies = [r.request_body for r in sim.requests_to("POST", "/block-lists-entries/bulk-create")]
    assert [len(b["bl_values"]) for b in bodies] == [1000, 1000, 500]
    assert [v for b in bodies for v in b["bl_values"]] == values
    assert result.counts() == {"blocked": 2500}
    assert (result.valid_count, result.invalid_count, result.chunks_sent, result.chunks_failed) == (2500, 0, 3, 0)
    stored = {e["bl_value"]: e["id"] for e in sim.blocklist_entries()}
    assert len(stored) == 2500
    assert [o.index for o in result.outcomes] == list(range(2500))
    assert {o.value: o.entry_id for o in result.outcomes} == stored
    assert len({o.entry_id for o in result.outcomes}) == 2500
    assert [o.entry.value for o in result.outcomes if o.entry] == values
    assert [o.entry.is_domain for o in result.outcomes if o.entry] == [False] * 2000 + [True] * 500
    assert result.entries() == {o.value: o.entry for o in result.outcomes if o.value}
    assert result.unmatched == []


def test_block_list_create_reports_refused_and_unsent_values(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """A value the server refuses is `refused`, a blank one `not_sent`; case/space variants share one entry."""
    result = client.block_list_create(["ok@example.com", "not a value", "  ", "OK@Example.com ", "spam.example.com"])
    (request,) = sim.requests_to("POST", "/block-lists-entries/bulk-create")
    assert request.request_body == {"bl_values": ["ok@example.com", "not a value", "spam.example.com"]}
    assert [o.outcome for o in result.outcomes] == ["blocked", "refused", "not_sent", "blocked", "blocked"]
    assert result.outcomes[0].entry == result.outcomes[3].entry
    assert result.outcomes[3].value == "OK@Example.com "
    assert (result.outcomes[1].entry, result.outcomes[2].entry) == (None, None)
    assert (result.valid_count, result.invalid_count) == (2, 1)
    assert [o.index for o in result.refused] == [1]
    assert sorted(result.entries()) == ["ok@example.com", "spam.example.com"]
    assert result.outcomes[4].entry is not None and result.outcomes[4].entry.is_domain is True
    assert sorted(sim.blocklist) == ["ok@example.com", "spam.example.com"]


def test_block_list_create_never_sends_an_empty_bl_values(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """No values, or only blank ones, send no request at all."""
    assert client.block_list_create([]).outcomes == []
    blanks = client.block_list_create(["", "   "])
    assert [o.outcome for o in blanks.outcomes] == ["not_sent", "not_sent"]
    assert client.block_list_add([]) == 0
    assert sim.request_log == []
    with pytest.raises(ValueError):
        client.block_list_create(["a@example.com"], chunk_size=1001)


def test_block_list_create_matches_items_by_lowercased_value_not_position(clock: FakeClock) -> None:
    """Items come back out of order and upper-cased: each maps to its value; a missing one is refused."""
    answer = {
        "items": [
            stub_entry("id-b", "B.EXAMPLE.COM", True),
            stub_entry("id-x", "rewritten.example.com", True),
            stub_entry("id-a", "A@Example.com", False),
        ],
        "valid_count": 3,
        "invalid_count": 0,
    }
    session = StubSession([(200, answer)])
    with stub_client(session, clock) as client:
        result = client.block_list_create(["a@example.com", "www.c.example.com", "b.example.com"])
    assert [(o.outcome, o.entry_id) for o in result.outcomes] == [
        ("blocked", "id-a"),
        ("refused", None),
        ("blocked", "id-b"),
    ]
    assert [e.id for e in result.unmatched] == ["id-x"]
    assert result.outcomes[0].entry == BlockListEntry(
        "id-a", "A@Example.com", False, "2026-01-05T09:00:00.000Z", "00000000-0000-4000-8000-000000000001"
    )
    assert len(session.sent) == 1


def test_block_list_create_failed_chunk_keeps_the_others(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """A 400 on the first of two chunks fails its 1000 values; the second chunk's 500 are still blocked."""
    sim.set_fault("POST /block-lists-entries/bulk-create", FaultSpec(statuses=[400]))
    values = [f"dnc{i}@example.com" for i in range(1500)]
    result = client.block_list_create(values)
    assert result.counts() == {"failed": 1000, "blocked": 500}
    assert (result.chunks_sent, result.chunks_failed) == (1, 1)
    assert all(isinstance(o.error, ValidationError) for o in result.failed)
    assert [o.index for o in result.blocked] == list(range(1000, 1500))
    sim.set_fault("POST /block-lists-entries/bulk-create", FaultSpec(statuses=[400]))
    with pytest.raises(ValidationError):
        client.block_list_add(["again@example.com"])


def test_block_list_create_stops_after_an_auth_error(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """After a 401 no further chunk is sent: all 1,500 values are failed with that error."""
    sim.set_fault("POST /block-lists-entries/bulk-create", FaultSpec(statuses=[401]))
    result = client.block_list_create([f"dnc{i}@example.com" for i in range(1500)])
    assert result.counts() == {"failed": 1500}
    assert all(isinstance(o.error, AuthenticationError) for o in result.outcomes)
    assert len(sim.requests_to("POST", "/block-lists-entries/bulk-create")) == 1
    assert sim.blocklist == []


def test_iter_block_list_resumes_after_a_given_cursor(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """A pull resumed with starting_after = the last id seen returns exactly the entries added since."""
    client.block_list_create(["a@example.com", "b@example.com", "c.example.com"])
    first = client.iter_block_list(page_size=2)
    seen = first.to_list()
    assert [e.value for e in seen] == ["a@example.com", "b@example.com", "c.example.com"]
    assert [e.is_domain for e in seen] == [False, False, True]
    assert first.complete and first.pages == 3 and first.last_id == seen[-1].id
    sim.advance(1)
    client.block_list_create(["d@example.com", "e.example.com"])
    resumed = client.iter_block_list(starting_after=first.last_id, page_size=2)
    newer = resumed.to_list()
    assert [(e.value, e.is_domain) for e in newer] == [("d@example.com", False), ("e.example.com", True)]
    assert resumed.complete and resumed.last_id == newer[-1].id
    assert sim.requests_to("GET", "/block-lists-entries")[-2].query == {
        "limit": ["2"],
        "starting_after": [str(first.last_id)],
    }
    nothing_new = client.iter_block_list(starting_after=resumed.last_id)
    assert nothing_new.to_list() == [] and nothing_new.complete and nothing_new.last_id is None
    with pytest.raises(ValueError):
        client.iter_block_list(starting_after=" ")


def test_iter_block_list_filters_domains_and_search(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """domains_only=True lists only domain entries; search narrows by value; both are sent as the spec names them."""
    client.block_list_create(["a@example.com", "spam.example.com", "b@spam.example.com"])
    assert [e.value for e in client.iter_block_list(domains_only=True)] == ["spam.example.com"]
    assert [e.value for e in client.iter_block_list(domains_only=False, search="b@")] == ["b@spam.example.com"]
    queries = [r.query for r in sim.requests_to("GET", "/block-lists-entries")]
    assert len(queries) == 4  # each listing: one page with a cursor, then the empty page that ends it
    assert queries[0] == {"limit": ["100"], "domains_only": ["true"]}
    assert queries[2] == {"limit": ["100"], "search": ["b@"], "domains_only": ["false"]}


def test_iter_block_list_treats_an_entry_without_is_domain_as_malformed(clock: FakeClock) -> None:
    """A page whose entry lacks is_domain is a malformed answer: retried, then ServerError, never guessed."""
    page = {"items": [{"id": "id-a", "bl_value": "a@example.com"}]}
    session = StubSession([(200, page)])
    with stub_client(session, clock, max_attempts=3) as client:
        listing = client.iter_block_list()
        with pytest.raises(ServerError):
            listing.to_list()
    assert len(session.sent) == 3 and not listing.complete


def test_block_list_entry_repr_masks_emails() -> None:
    """An entry's repr shows a masked email (j***@example.com) and a domain as is."""
    email_entry = BlockListEntry.from_json(stub_entry("id-a", "jane.doe@example.com", False))
    domain_entry = BlockListEntry.from_json(stub_entry("id-b", "acme.example", True))
    assert "jane.doe" not in repr(email_entry) and "j***@example.com" in repr(email_entry)
    assert "'acme.example'" in repr(domain_entry)
    with pytest.raises(ValueError):
        BlockListEntry.from_json({"id": "x", "bl_value": "a@example.com", "is_domain": "no"})


@pytest.mark.parametrize("setting", [True, False, None])
def test_current_workspace_reads_add_unsub_to_block(
    sim: InstantlySimulator, client: InstantlyClient, setting: bool | None
) -> None:
    """add_unsub_to_block true/false/absent in GET /workspaces/current reads as True/False/None."""
    sim.set_add_unsub_to_block(setting)
    workspace = client.current_workspace()
    assert workspace["id"] == sim.organization_id
    assert ("add_unsub_to_block" in workspace) is (setting is not None)
    assert client.workspace_add_unsub_to_block() is setting
    assert [r.endpoint for r in sim.request_log] == ["GET /workspaces/current"] * 2
    assert sim.request_log[0].content_type is None


def test_add_unsub_to_block_accepts_only_a_boolean() -> None:
    """The helper returns the boolean as is; null, absent or a non-boolean value is None."""
    assert add_unsub_to_block({"add_unsub_to_block": True}) is True
    assert add_unsub_to_block({"add_unsub_to_block": False}) is False
    assert add_unsub_to_block({"add_unsub_to_block": None}) is None
    assert add_unsub_to_block({}) is None
    assert add_unsub_to_block({"add_unsub_to_block": "true"}) is None
    assert add_unsub_to_block({"add_unsub_to_block": 1}) is None


@pytest.mark.parametrize(
    "body", [None, {}, {"ids": []}, {"ids": [" "]}, {"ids": "id-1"}, {"ids": ["id-1"], "search": "x"}]
)
def test_block_list_delete_without_explicit_ids_raises_before_any_request(
    sim: InstantlySimulator, client: InstantlyClient, monkeypatch: pytest.MonkeyPatch, body: Any
) -> None:
    """Even if both deletes were allow-listed, id-less ones raise UnsafeRequestError before any request."""
    sim.add_to_blocklist("blocked@example.com")
    monkeypatch.setattr(
        client_module,
        "ALLOWED_OPERATIONS",
        ALLOWED_OPERATIONS | {("DELETE", "/block-lists-entries"), ("POST", "/block-lists-entries/bulk-delete")},
    )
    with pytest.raises(UnsafeRequestError):
        client._request("POST", "/block-lists-entries/bulk-delete", body=body)
    with pytest.raises(UnsafeRequestError):
        client._request("DELETE", "/block-lists-entries", body=body)
    assert sim.request_log == []
    assert sim.blocklist == ["blocked@example.com"]


def test_block_list_bulk_delete_is_not_an_operation_of_the_client(
    sim: InstantlySimulator, client: InstantlyClient
) -> None:
    """With explicit ids a block-list bulk delete is still refused: the client sends no block-list delete."""
    sim.add_to_blocklist("blocked@example.com")
    with pytest.raises(UnsafeRequestError):
        client._request("POST", "/block-lists-entries/bulk-delete", body={"ids": ["id-1"]})
    assert {op for op in ALLOWED_OPERATIONS if op[1].startswith("/block-lists-entries")} == {
        ("POST", "/block-lists-entries/bulk-create"),
        ("GET", "/block-lists-entries"),
    }
    assert sim.request_log == []


def test_stats_count_reads_writes_and_retries(
    sim: InstantlySimulator, client: InstantlyClient, campaign_id: str
) -> None:
    """Listing is a read, adds and deletes are writes, retries are counted separately."""
    sim.set_fault("POST /leads/list", FaultSpec.burst(1))
    created = client.add_leads(campaign_id, people(2)).created
    client.iter_leads(campaign=campaign_id).to_list()
    client.delete_leads(campaign_id, [str(created[0].lead_id)])
    stats = client.stats.snapshot()
    assert stats["by_endpoint"] == {"DELETE /leads": 1, "POST /leads/add": 1, "POST /leads/list": 3}
    assert (stats["reads"], stats["writes"], stats["retries"]) == (3, 2, 1)
    assert request_category("POST", "/leads/list") == "read"
    assert request_category("PATCH", "/leads/{id}") == "write"
    assert request_category("POST", "/block-lists-entries/bulk-create") == "write"


# --------------------------------------------------------------------------------------------------
# The key never leaks


def test_the_key_never_appears_in_errors_reprs_logs_or_output(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    """Across every error path, no exception text, repr, traceback, log record or output has the key."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with make_sim() as sim:
        campaign_id = sim.create_campaign("SMB")
        with make_client(sim, clock, max_attempts=2, read_timeout=0.2) as client:
            texts += [repr(client), str(client)]
            faults = [
                FaultSpec(statuses=[400], message=f"bad key {KEY} for jane.doe@example.com"),
                FaultSpec(statuses=[401]),
                FaultSpec(statuses=[402]),
                FaultSpec(statuses=[403], html=True),
                FaultSpec(statuses=[404]),
                FaultSpec.storm(3, retry_after=0),
                FaultSpec.burst(3, 500, html=True),
                FaultSpec.timeouts(3, seconds=0),
                FaultSpec.timeouts(3, seconds=0.5),
                FaultSpec(malformed=3, malformed_kind="truncated"),
            ]
            errors: list[BaseException] = []
            for spec in faults:
                sim.set_fault("*", spec)
                for call in (
                    lambda: client.get_campaign(campaign_id),
                    lambda: client.iter_leads(campaign=campaign_id).to_list(),
                ):
                    try:
                        call()
                    except InstantlyError as exc:
                        errors.append(exc)
                sim.clear_faults()
                sim.set_fault("*", spec)
                result = client.add_leads(campaign_id, people(2))
                texts += [repr(o) for o in result.outcomes]
                errors += [o.error for o in result.outcomes if o.error is not None]
                sim.clear_faults()
            with pytest.raises(UnsafeRequestError) as unsafe:
                client.delete_leads(campaign_id, [])
            errors.append(unsafe.value)
            texts.append(repr(client.stats.snapshot()))
        with make_client(sim, clock, api_key=KEY + "-wrong") as wrong:
            try:
                wrong.check_key()
            except AuthenticationError as exc:
                errors.append(exc)
    assert len(errors) >= 20
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        assert error.__cause__ is None and error.__context__ is None
    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    leaks = [t for t in texts if KEY in t]
    assert leaks == []
    assert not any("jane.doe@example.com" in t for t in texts)
    assert any("j***@example.com" in str(e) for e in errors)
