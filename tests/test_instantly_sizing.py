"""Campaign sizing reads: dated and daily analytics and the sending status, in client, simulator and spec."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.instantly import contract
from coldsync.instantly.client import (
    ALLOWED_OPERATIONS,
    CampaignAnalytics,
    DailyCampaignAnalytics,
    InstantlyClient,
    SendingStatus,
    request_category,
)
from coldsync.instantly.errors import NotFoundError, ServerError, ValidationError
from coldsync.instantly.simulator import InstantlySimulator, SequenceRates
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

UTC = dt.UTC
DAY1, DAY2, DAY3 = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)
SHARED_RECORDED = contract.DEFAULT_SOURCE.parent / "recorded"
NEW_OPERATIONS = {
    ("get", "/api/v2/campaigns/analytics/daily"): "getDailyCampaignAnalytics",
    ("get", "/api/v2/campaigns/{id}/sending-status"): "getCampaignSendingStatus",
}

# The spec's example of one daily row, field by field (its `date` example is a full timestamp).
SPEC_DAILY_ROW: dict[str, Any] = {
    "date": "1970-01-01T00:00:00.000Z",
    "sent": 5421,
    "contacted": 5000,
    "new_leads_contacted": 200,
    "opened": 99,
    "unique_opened": 60,
    "replies": 60,
    "unique_replies": 60,
    "replies_automatic": 5,
    "unique_replies_automatic": 4,
    "clicks": 60,
    "unique_clicks": 60,
    "opportunities": 5,
    "unique_opportunities": 3,
}
# The spec's examples of the sending status with diagnostics (the parts coldsync reads, plus the always-present ones).
SPEC_DIAGNOSTICS: dict[str, Any] = {
    "campaign_id": "f9cc070d-8dba-4341-b847-f083c358e460",
    "last_updated": "1970-01-01T00:00:00.000Z",
    "status": "healthy",
    "issue_tracking": {
        "current_status_code": "healthy",
        "issue_first_seen_at": "1970-01-01T00:00:00.000Z",
        "consecutive_loops_with_issue": 0,
        "last_healthy_send_at": "1970-01-01T00:00:00.000Z",
    },
    "accounts_summary": {
        "total_connected": 5,
        "available": 3,
        "unavailable": {"daily_limit_hit": 1, "slow_ramp_limit_hit": 0, "disconnected": 1, "global_gap_not_met": 0},
    },
}
SPEC_SUMMARY: dict[str, Any] = {
    "status": "healthy",
    "status_message": "Campaign is sending normally",
    "issue_started_at": "1970-01-01T00:00:00.000Z",
    "last_healthy_send_at": "1970-01-01T00:00:00.000Z",
    "ai_summary": "Your campaign is sending emails normally.",
}
# The recorded real answer (recorded/get-campaign-sending-status.json): a summary only.
RECORDED_SUMMARY_ONLY: dict[str, Any] = {
    "diagnostics": None,
    "summary": {
        "status": "campaign_accounts_unhealthy",
        "status_message": "None of the sending accounts are healthy, connected, or usable. This happens when all "
        "sending accounts are suspended, bounced, or disconnected.",
        "issue_started_at": None,
        "last_healthy_send_at": None,
        "ai_summary": None,
    },
}


# --------------------------------------------------------------------------------------------------
# Helpers


@cache
def official_spec() -> dict[str, Any] | None:
    """Instantly's full OpenAPI document, or None when it is not beside the repository."""
    if not contract.DEFAULT_SOURCE.exists():
        return None
    loaded: dict[str, Any] = json.loads(contract.DEFAULT_SOURCE.read_text(encoding="utf-8"))
    return loaded


@cache
def trimmed_from_spec() -> dict[str, Any]:
    """The trimmed contract derived in memory from the official spec (independent of the committed copy)."""
    source = official_spec()
    assert source is not None
    return contract.trim(source)


def spec_errors(template: str, status: int, body: Any) -> list[str]:
    """Violations of the official spec's response schema for GET `template` (under /api/v2) and `status`."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    if official_spec() is None:
        pytest.skip(f"the official spec is not at {contract.DEFAULT_SOURCE}")
    doc = trimmed_from_spec()
    path = contract.API_PREFIX + template
    assert str(status) in doc["paths"][path]["get"]["responses"]
    parts = ("paths", path, "get", "responses", str(status), "content", "application/json", "schema")
    pointer = "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)
    registry: Registry[Any] = Registry().with_resource("urn:spec", Resource.from_contents(doc, DRAFT202012))
    validator = Draft202012Validator(
        {"$ref": f"urn:spec#{pointer}"}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(body)]


class StubSession(requests.Session):
    """Answers every request with the same canned (status, JSON body) and records what was sent."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__()
        self.status, self.body = status, body
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append((str(method), str(url), kwargs.get("params")))
        response = requests.Response()
        response.status_code = self.status
        response._content = json.dumps(self.body).encode()
        response.headers["Content-Type"] = "application/json"
        return response


def stub_client(body: Any, clock: FakeClock, status: int = 200) -> tuple[InstantlyClient, StubSession]:
    """A client whose every answer is `body` (no server), with fast retries on the fake clock."""
    session = StubSession(status, body)
    client = InstantlyClient(
        KEY,
        base_url="https://stub.invalid",
        session=session,
        sleep=clock.sleep,
        clock=clock,
        backoff_base=0.01,
        backoff_max=0.05,
        jitter_seed=0,
        max_attempts=2,
    )
    return client, session


def call(sim: InstantlySimulator, path: str, **params: Any) -> requests.Response:
    """A raw GET to the simulator (no client in between)."""
    return requests.get(
        f"{sim.base_url}/api/v2{path}", params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )


def two_day_sim() -> tuple[InstantlySimulator, str]:
    """A started simulator whose campaign did a known sequence of sends and bounces on 2026-01-05 and -06.

    Two steps one day apart, every lead completes: leads A, B, C get step 1 on day 1 and step 2 (then
    complete) on day 2; lead D gets one email and bounces at day 1's midnight, lead E likewise on day 2.
    Day 1: sent 4 (A B C D), contacted 4, new 4, bounced 1.  Day 2: sent 4 (A B C E), contacted 4,
    new 1 (E), bounced 1, completed 3.
    """
    sim = make_sim(
        steps=2,
        sequence_days=1,
        rates=SequenceRates.only("completed"),
        now=dt.datetime(2026, 1, 5, tzinfo=UTC),
    )
    sim.start()
    cid = sim.create_campaign("SMB")
    sim.insert_leads(cid, people(3))
    (lead_d,) = sim.insert_leads(cid, people(1, start=3))["created_leads"]
    sim.finish_lead(lead_d["id"], "bounced")
    sim.advance(1)
    (lead_e,) = sim.insert_leads(cid, people(1, start=4))["created_leads"]
    sim.finish_lead(lead_e["id"], "bounced")
    sim.advance(1)
    return sim, cid


# --------------------------------------------------------------------------------------------------
# The spec and the allow-lists


def test_new_endpoints_are_get_operations_of_the_official_spec() -> None:
    """Daily analytics and sending status exist in Instantly's spec as GETs with the expected operation ids."""
    source = official_spec()
    if source is None:
        pytest.skip(f"the official spec is not at {contract.DEFAULT_SOURCE}")
    found = {(method, path): source["paths"][path][method]["operationId"] for method, path in NEW_OPERATIONS}
    assert found == NEW_OPERATIONS
    assert set(source["paths"]["/api/v2/campaigns/analytics/daily"]) == {"get"}
    assert "get" in source["paths"]["/api/v2/campaigns/{id}/sending-status"]
    analytics = source["paths"]["/api/v2/campaigns/analytics"]["get"]
    declared = {p["name"] for p in analytics["parameters"]}
    assert declared >= {"ids", "start_date", "end_date", "exclude_total_leads_count"}


def test_new_endpoints_are_registered_in_the_client_and_the_contract_list() -> None:
    """Both endpoints are allowed to the client, listed in the contract's operations, and counted as reads."""
    for method, path in NEW_OPERATIONS:
        template = path.removeprefix(contract.API_PREFIX)
        assert (method.upper(), template) in ALLOWED_OPERATIONS
        assert (method, path) in contract.OPERATIONS
        assert request_category(method.upper(), template) == "read"


def test_query_parameters_the_client_sends_are_declared_by_the_spec(
    client: InstantlyClient, sim: InstantlySimulator
) -> None:
    """Every query parameter name sent to the new or extended endpoints is one the spec declares there."""
    if official_spec() is None:
        pytest.skip(f"the official spec is not at {contract.DEFAULT_SOURCE}")
    cid = sim.create_campaign("SMB")
    client.campaign_analytics([cid], start_date=DAY1, end_date=DAY2, exclude_total_leads_count=True)
    client.daily_campaign_analytics(cid, DAY1, DAY2)
    client.sending_status(cid)
    doc = trimmed_from_spec()
    for record in sim.request_log:
        path = contract.API_PREFIX + record.template
        declared = {p["name"] for p in doc["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}
        assert set(record.query) <= declared, record.endpoint
    assert len(sim.request_log) == 3


# --------------------------------------------------------------------------------------------------
# Client against the spec's documented shapes (no server)


def test_daily_row_in_the_spec_example_form_is_read(clock: FakeClock) -> None:
    """The spec's example row, with its full-timestamp date, becomes a row dated 1970-01-01 with its counts."""
    client, session = stub_client([SPEC_DAILY_ROW], clock)
    (row,) = client.daily_campaign_analytics("c1", dt.date(1970, 1, 1), dt.date(1970, 1, 1))
    assert row == DailyCampaignAnalytics(
        date=dt.date(1970, 1, 1),
        sent=5421,
        contacted=5000,
        new_leads_contacted=200,
        opened=99,
        unique_opened=60,
        replies=60,
        unique_replies=60,
        clicks=60,
        opportunities=5,
        raw=SPEC_DAILY_ROW,
    )
    assert session.sent[0][2] == {"campaign_id": "c1", "start_date": "1970-01-01", "end_date": "1970-01-01"}


def test_the_daily_example_matches_the_specs_own_examples() -> None:
    """SPEC_DAILY_ROW is field for field the example values of the spec's daily row schema."""
    source = official_spec()
    if source is None:
        pytest.skip(f"the official spec is not at {contract.DEFAULT_SOURCE}")
    op = source["paths"]["/api/v2/campaigns/analytics/daily"]["get"]
    props = op["responses"]["200"]["content"]["application/json"]["schema"]["items"]["properties"]
    assert {name: prop["example"] for name, prop in props.items()} == SPEC_DAILY_ROW
    assert spec_errors("/campaigns/analytics/daily", 200, [SPEC_DAILY_ROW]) == []


def test_daily_rows_tolerate_dates_and_counts_of_any_form(clock: FakeClock) -> None:
    """Date-only and offset dates are read, rows without a readable date are skipped, odd counts read 0."""
    body = [
        {"date": "2026-01-05", "sent": "12", "contacted": None, "opened": 2.5, "replies": True, "clicks": 3.0},
        {"date": "2026-01-05T23:30:00-02:00", "sent": 7},
        {"date": "yesterday", "sent": 1},
        {"sent": 1},
        "not a row",
        {"date": 20260105, "sent": 1},
    ]
    client, _ = stub_client(body, clock)
    rows = client.daily_campaign_analytics("c1", DAY1, DAY2)
    assert [(r.date, r.sent, r.contacted, r.opened, r.replies, r.clicks) for r in rows] == [
        (DAY1, 0, 0, 0, 0, 3),
        (DAY2, 7, 0, 0, 0, 0),
    ]


def test_daily_analytics_that_is_not_an_array_is_a_server_error(clock: FakeClock) -> None:
    """An object where the spec promises an array is retried, then raised as ServerError."""
    client, session = stub_client({"items": []}, clock)
    with pytest.raises(ServerError, match="unexpected JSON shape"):
        client.daily_campaign_analytics("c1", DAY1, DAY2)
    assert len(session.sent) == 2


def test_daily_analytics_refuses_a_reversed_range_or_a_blank_campaign_before_sending(clock: FakeClock) -> None:
    """start after end, a blank campaign id or a naive datetime raise ValueError and send nothing."""
    client, session = stub_client([], clock)
    with pytest.raises(ValueError, match="after"):
        client.daily_campaign_analytics("c1", DAY2, DAY1)
    with pytest.raises(ValueError, match="campaign_id"):
        client.daily_campaign_analytics(" ", DAY1, DAY2)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.daily_campaign_analytics("c1", dt.datetime(2026, 1, 5, 12), DAY2)
    assert session.sent == []


def test_daily_analytics_reduces_an_aware_datetime_to_its_utc_day(clock: FakeClock) -> None:
    """2026-01-05T23:00-05:00 is 2026-01-06 in UTC: that is the day sent."""
    client, session = stub_client([], clock)
    evening = dt.datetime(2026, 1, 5, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert client.daily_campaign_analytics("c1", evening, DAY3) == []
    assert session.sent[0][2] == {"campaign_id": "c1", "start_date": "2026-01-06", "end_date": "2026-01-07"}


def test_analytics_item_as_the_spec_documents_it_carries_sent_and_new_leads(clock: FakeClock) -> None:
    """The spec's analytics example gives emails_sent_count 5000 and new_leads_contacted_count 200."""
    item = {
        "campaign_name": "My Test Campaign",
        "campaign_id": "f9cc070d-8dba-4341-b847-f083c358e460",
        "campaign_status": 1,
        "campaign_is_evergreen": True,
        "leads_count": 1500,
        "contacted_count": 1200,
        "emails_sent_count": 5000,
        "new_leads_contacted_count": 200,
        "open_count": 800,
        "reply_count": 300,
        "link_click_count": 800,
        "bounced_count": 50,
        "unsubscribed_count": 20,
        "completed_count": 1100,
        "total_opportunities": 10,
        "total_opportunity_value": 1000,
    }
    client, _ = stub_client([item, {**item, "emails_sent_count": "5000", "new_leads_contacted_count": None}], clock)
    full, odd = client.campaign_analytics(["f9cc070d-8dba-4341-b847-f083c358e460"])
    assert (full.emails_sent_count, full.new_leads_contacted_count, full.leads_count, full.bounced_count) == (
        5000,
        200,
        1500,
        50,
    )
    assert (odd.emails_sent_count, odd.new_leads_contacted_count) == (0, 0)
    assert CampaignAnalytics.from_json({}).emails_sent_count == 0


def test_sending_status_with_full_diagnostics_as_the_spec_documents(clock: FakeClock) -> None:
    """The spec's example: status healthy, 3 of 5 accounts available, the summary's message as text."""
    body = {"diagnostics": SPEC_DIAGNOSTICS, "summary": SPEC_SUMMARY}
    client, session = stub_client(body, clock)
    status = client.sending_status("f9cc070d-8dba-4341-b847-f083c358e460")
    assert (status.status, status.waiting_for_leads, status.accounts_available, status.accounts_total) == (
        "healthy",
        False,
        3,
        5,
    )
    assert (status.summary_text, status.has_data) == ("Campaign is sending normally", True)
    assert (
        session.sent[0][1] == "https://stub.invalid/api/v2/campaigns/f9cc070d-8dba-4341-b847-f083c358e460/sending-status"
    )
    assert spec_errors("/campaigns/{id}/sending-status", 200, body) == []


def test_sending_status_with_a_summary_only_as_recorded(clock: FakeClock) -> None:
    """diagnostics null (the recorded real answer): status from the summary, account counts unknown."""
    client, _ = stub_client(RECORDED_SUMMARY_ONLY, clock)
    status = client.sending_status("9b6f458e-6dc5-4762-83d5-a528aedd2235")
    assert status == SendingStatus(
        status="campaign_accounts_unhealthy",
        waiting_for_leads=False,
        accounts_available=None,
        accounts_total=None,
        summary_text=RECORDED_SUMMARY_ONLY["summary"]["status_message"],
        raw=RECORDED_SUMMARY_ONLY,
    )
    assert status.has_data is True


def test_the_summary_only_body_is_the_recorded_one() -> None:
    """RECORDED_SUMMARY_ONLY is exactly the response body of the shared recording (when present)."""
    path = SHARED_RECORDED / "get-campaign-sending-status.json"
    if not path.exists():
        pytest.skip(f"no recording at {path}")
    (exchange,) = json.loads(path.read_text(encoding="utf-8"))
    assert (exchange["method"], exchange["status"]) == ("GET", 200)
    assert exchange["response_body"] == RECORDED_SUMMARY_ONLY


def test_sending_status_with_no_data(clock: FakeClock) -> None:
    """Both fields null (the spec: no data available): no status, not waiting, nothing known."""
    body = {"diagnostics": None, "summary": None}
    client, _ = stub_client(body, clock)
    status = client.sending_status("c1")
    assert (status.status, status.waiting_for_leads, status.accounts_available, status.accounts_total) == (
        None,
        False,
        None,
        None,
    )
    assert (status.summary_text, status.has_data) == (None, False)
    assert spec_errors("/campaigns/{id}/sending-status", 200, body) == []


def test_sending_status_waiting_for_leads_without_accounts_summary(clock: FakeClock) -> None:
    """Diagnostics without accounts_summary (out of schedule): waiting_for_leads is read, counts are None."""
    diagnostics = {k: v for k, v in SPEC_DIAGNOSTICS.items() if k != "accounts_summary"}
    diagnostics["status"] = "waiting_for_leads"
    client, _ = stub_client({"diagnostics": diagnostics, "summary": None}, clock)
    status = client.sending_status("c1")
    assert (status.status, status.waiting_for_leads, status.accounts_available, status.accounts_total) == (
        "waiting_for_leads",
        True,
        None,
        None,
    )
    assert status.summary_text is None


def test_sending_status_keeps_an_unknown_status_and_masks_emails_in_the_text(clock: FakeClock) -> None:
    """A status outside the spec's enum is kept as given; an address in the message is masked."""
    summary = {"status": "warming_up_new_thing", "status_message": "sender ops@example.com is warming up"}
    client, _ = stub_client({"diagnostics": {"status": None}, "summary": summary}, clock)
    status = client.sending_status("c1")
    assert status.status == "warming_up_new_thing"
    assert status.summary_text is not None and "ops@example.com" not in status.summary_text
    assert status.raw["summary"]["status_message"] == "sender ops@example.com is warming up"


@pytest.mark.parametrize("body", [[], {"diagnostics": "broken", "summary": None}, {"summary": ["x"]}])
def test_sending_status_of_another_shape_is_a_server_error(clock: FakeClock, body: Any) -> None:
    """A body that is not {diagnostics: object|null, summary: object|null} is retried, then ServerError."""
    client, session = stub_client(body, clock)
    with pytest.raises(ServerError):
        client.sending_status("c1")
    assert len(session.sent) == 2


# --------------------------------------------------------------------------------------------------
# Client against the simulator


def test_analytics_sends_dates_and_the_exclude_flag_only_when_asked(
    client: InstantlyClient, sim: InstantlySimulator
) -> None:
    """A date goes as YYYY-MM-DD, an aware datetime as UTC ms Z, the flag as 'true'; the old call is unchanged."""
    cid = sim.create_campaign("SMB")
    noon_paris = dt.datetime(2026, 1, 6, 13, 0, 0, 250_000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    client.campaign_analytics([cid])
    client.campaign_analytics([cid], start_date=DAY1, end_date=noon_paris, exclude_total_leads_count=True)
    queries = [r.query for r in sim.requests_to("GET", "/campaigns/analytics")]
    assert queries == [
        {"ids": [cid]},
        {
            "ids": [cid],
            "start_date": ["2026-01-05"],
            "end_date": ["2026-01-06T12:00:00.250Z"],
            "exclude_total_leads_count": ["true"],
        },
    ]
    with pytest.raises(ValueError, match="after"):
        client.campaign_analytics([cid], start_date=DAY2, end_date=DAY1)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.campaign_analytics([cid], start_date=dt.datetime(2026, 1, 5))
    assert len(sim.requests_to("GET", "/campaigns/analytics")) == 2


def test_simulator_counts_a_known_two_day_sequence_per_day() -> None:
    """Sends, first contacts, bounces and completions land on the UTC day they happened, opens match the leads."""
    sim, cid = two_day_sim()
    with sim:
        days = sim.daily_counters(cid)
        assert sorted(days) == [DAY1, DAY2]
        wanted = ("sent", "contacted", "new_leads_contacted", "bounced", "completed", "replies", "unsubscribed")
        assert {day: tuple(days[day].get(k, 0) for k in wanted) for day in days} == {
            DAY1: (4, 4, 4, 1, 0, 0, 0),
            DAY2: (4, 4, 1, 1, 3, 0, 0),
        }
        opens = sum(lead["email_open_count"] for lead in sim.leads(cid))
        assert sum(d.get("opened", 0) for d in days.values()) == opens


def test_client_reads_the_simulators_daily_rows(clock: FakeClock) -> None:
    """Over both days: two rows with the hand-counted figures; a quiet range gives no rows."""
    sim, cid = two_day_sim()
    with sim, make_client(sim, clock) as client:
        rows = client.daily_campaign_analytics(cid, DAY1, DAY3)
        assert [(r.date, r.sent, r.contacted, r.new_leads_contacted, r.replies, r.clicks) for r in rows] == [
            (DAY1, 4, 4, 4, 0, 0),
            (DAY2, 4, 4, 1, 0, 0),
        ]
        assert [(r.date, r.sent) for r in client.daily_campaign_analytics(cid, DAY2, DAY2)] == [(DAY2, 4)]
        assert client.daily_campaign_analytics(cid, DAY3, dt.date(2026, 1, 9)) == []
        assert client.daily_campaign_analytics("no-such-campaign", DAY1, DAY3) == []
        for record in sim.requests_to("GET", "/campaigns/analytics/daily"):
            assert spec_errors("/campaigns/analytics/daily", 200, record.response_body) == []


def test_dated_analytics_count_only_the_window(clock: FakeClock) -> None:
    """Day 1 alone, day 2 alone and both days give the hand-counted sums; leads_count stays 5."""
    sim, cid = two_day_sim()
    with sim, make_client(sim, clock) as client:

        def figures(**window: Any) -> tuple[int, ...]:
            (row,) = client.campaign_analytics([cid], **window)
            return (
                row.emails_sent_count,
                row.contacted_count,
                row.new_leads_contacted_count,
                row.bounced_count,
                row.completed_count,
                row.leads_count,
            )

        assert figures(start_date=DAY1, end_date=DAY1) == (4, 4, 4, 1, 0, 5)
        assert figures(start_date=DAY2, end_date=DAY2) == (4, 1, 1, 1, 3, 5)
        assert figures(start_date=DAY1, end_date=DAY2) == (8, 5, 5, 2, 3, 5)
        assert figures(start_date=DAY2) == (4, 1, 1, 1, 3, 5)
        assert figures(end_date=dt.datetime(2026, 1, 5, 12, tzinfo=UTC)) == (4, 4, 4, 1, 0, 5)
        assert figures(start_date=DAY3) == (0, 0, 0, 0, 0, 5)
        assert figures() == (8, 5, 5, 2, 3, 5)
        for record in sim.requests_to("GET", "/campaigns/analytics"):
            assert spec_errors("/campaigns/analytics", 200, record.response_body) == []


def test_excluding_the_total_leads_count_leaves_the_field_out(clock: FakeClock) -> None:
    """exclude_total_leads_count=true: no leads_count in the answer (it reads 0); the counters are still there."""
    sim, cid = two_day_sim()
    with sim, make_client(sim, clock) as client:
        (row,) = client.campaign_analytics([cid], exclude_total_leads_count=True)
        assert "leads_count" not in row.raw
        assert (row.leads_count, row.emails_sent_count, row.bounced_count) == (0, 8, 2)
        assert call(sim, "/campaigns/analytics", exclude_total_leads_count="false").json()[0]["leads_count"] == 5
        answer = call(sim, "/campaigns/analytics", exclude_total_leads_count="yes")
        assert (answer.status_code, answer.json()["message"]) == (
            400,
            "querystring/exclude_total_leads_count must be boolean",
        )


def test_a_reversed_or_unreadable_range_is_a_400_as_the_spec_says(sim: InstantlySimulator) -> None:
    """start_date after end_date answers 400 'Start Date must be earlier than End Date' on both endpoints."""
    sim.create_campaign("SMB")
    for path in ("/campaigns/analytics", "/campaigns/analytics/daily"):
        reversed_range = call(sim, path, start_date="2026-01-06", end_date="2026-01-05")
        assert (reversed_range.status_code, reversed_range.json()["message"]) == (
            400,
            "Start Date must be earlier than End Date",
        )
        assert spec_errors(path, 400, reversed_range.json()) == []
        assert call(sim, path, start_date="2026-01-06", end_date="2026-01-06").status_code == 200
        assert call(sim, path, start_date="2026-01-06T10:00:00.000Z", end_date="2026-01-06").status_code == 400
        assert call(sim, path, start_date="next week").status_code == 400


def test_client_raises_validation_error_on_the_servers_400(clock: FakeClock) -> None:
    """A 400 from the server (here the spec's range message) is a ValidationError, not retried."""
    client, session = stub_client({"message": "Start Date must be earlier than End Date"}, clock, status=400)
    with pytest.raises(ValidationError, match="Start Date must be earlier"):
        client.daily_campaign_analytics("c1", DAY1, DAY2)
    assert len(session.sent) == 1


def test_daily_without_a_campaign_sums_every_campaign_per_day(sim: InstantlySimulator) -> None:
    """No campaign_id: one row per day with the campaigns' counts added; campaign_status filters campaigns."""
    smb, mid = sim.create_campaign("SMB"), sim.create_campaign("Midsize", status=2)
    sim.record_daily(smb, DAY1, sent=10, contacted=8, new_leads_contacted=5, bounced=1)
    sim.record_daily(mid, DAY1, sent=3, contacted=3, new_leads_contacted=3)
    sim.record_daily(mid, DAY2, sent=2, contacted=2, replies=1)
    rows = call(sim, "/campaigns/analytics/daily", start_date="2026-01-01", end_date="2026-01-31").json()
    assert [(r["date"], r["sent"], r["contacted"], r["new_leads_contacted"], r["replies"]) for r in rows] == [
        ("2026-01-05", 13, 11, 8, 0),
        ("2026-01-06", 2, 2, 0, 1),
    ]
    paused = call(sim, "/campaigns/analytics/daily", campaign_status="2").json()
    assert [(r["date"], r["sent"]) for r in paused] == [("2026-01-05", 3), ("2026-01-06", 2)]
    assert call(sim, "/campaigns/analytics/daily", campaign_status="7").status_code == 400
    assert spec_errors("/campaigns/analytics/daily", 200, rows) == []


def test_record_daily_makes_a_six_percent_seven_day_bounce_rate(
    sim: InstantlySimulator, client: InstantlyClient
) -> None:
    """Seven days of 100 sends with 42 bounces on one day: the 7-day window shows 42/700 = 6%, older days excluded."""
    cid = sim.create_campaign("SMB")
    sim.record_daily(cid, dt.date(2025, 12, 29), sent=500, bounced=100)  # outside the window
    for offset in range(7):
        day = dt.date(2026, 1, 5) + dt.timedelta(days=offset)
        sim.record_daily(cid, day, sent=100, new_leads_contacted=100, bounced=42 if offset == 3 else 0)
    (week,) = client.campaign_analytics([cid], start_date=dt.date(2026, 1, 5), end_date=dt.date(2026, 1, 11))
    assert (week.emails_sent_count, week.bounced_count, week.new_leads_contacted_count) == (700, 42, 700)
    assert week.bounced_count / week.emails_sent_count == pytest.approx(0.06)
    (lifetime,) = client.campaign_analytics([cid])
    assert (lifetime.emails_sent_count, lifetime.bounced_count) == (1200, 142)
    with pytest.raises(ValueError):
        sim.record_daily(cid, DAY1, bounced=-1)
    with pytest.raises(KeyError):
        sim.record_daily("no-such-campaign", DAY1, sent=1)


def test_the_days_add_up_to_the_undated_analytics() -> None:
    """For a seeded 200-lead run, the windowed sum over all days equals the lifetime analytics, field by field."""
    with make_sim(seed=3, now=dt.datetime(2026, 1, 5, 9, tzinfo=UTC)) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, people(200))
        sim.advance(20)
        (lifetime,) = call(sim, "/campaigns/analytics").json()
        (dated,) = call(sim, "/campaigns/analytics", start_date="2026-01-01", end_date="2026-02-28").json()
        assert dated == lifetime
        assert lifetime["emails_sent_count"] > lifetime["contacted_count"] > 0 < lifetime["bounced_count"]
        rows = call(sim, "/campaigns/analytics/daily", campaign_id=cid).json()
        assert sum(r["sent"] for r in rows) == lifetime["emails_sent_count"]
        assert sum(r["new_leads_contacted"] for r in rows) == lifetime["new_leads_contacted_count"]


# --------------------------------------------------------------------------------------------------
# Sending status served by the simulator


def test_sending_status_follows_the_campaigns_leads(clock: FakeClock) -> None:
    """No leads: waiting_for_leads; leads with emails to come: healthy; all finished: waiting again."""
    with make_sim(steps=2, sequence_days=1, rates=SequenceRates.only("completed")) as sim:
        cid = sim.create_campaign("SMB")
        with make_client(sim, clock) as client:
            empty = client.sending_status(cid)
            assert (empty.status, empty.waiting_for_leads, empty.accounts_available, empty.accounts_total) == (
                "waiting_for_leads",
                True,
                1,
                1,
            )
            sim.insert_leads(cid, people(2))
            assert client.sending_status(cid).status == "healthy"
            sim.advance(0.5)  # first steps may be out, second steps are still to come
            assert client.sending_status(cid).status == "healthy"
            sim.advance(3)
            assert {lead["status"] for lead in sim.leads(cid)} == {3}
            done = client.sending_status(cid)
            assert (done.status, done.waiting_for_leads) == ("waiting_for_leads", True)
            assert done.summary_text == "The campaign has no leads left to send to. Add leads to keep it sending."
        for record in sim.requests_to("GET", "/campaigns/{id}/sending-status"):
            assert spec_errors("/campaigns/{id}/sending-status", 200, record.response_body) == []


@pytest.mark.parametrize(
    ("campaign_status", "expected"),
    [
        (0, "campaign_draft"),
        (2, "campaign_paused"),
        (3, "campaign_completed"),
        (4, "campaign_running_subsequences"),
        (-1, "campaign_accounts_unhealthy"),
        (-2, "campaign_bounce_protect"),
        (-99, "campaign_account_suspended"),
    ],
)
def test_sending_status_of_a_campaign_that_is_not_active(
    sim: InstantlySimulator, client: InstantlyClient, campaign_status: int, expected: str
) -> None:
    """A non-active campaign answers its status code, with diagnostics but no accounts_summary."""
    cid = sim.create_campaign("SMB", status=campaign_status)
    sim.insert_leads(cid, people(3))
    status = client.sending_status(cid)
    assert (status.status, status.waiting_for_leads, status.accounts_available, status.accounts_total) == (
        expected,
        False,
        None,
        None,
    )
    body = sim.requests_to("GET", "/campaigns/{id}/sending-status")[0].response_body
    assert "accounts_summary" not in body["diagnostics"] and body["summary"]["status"] == expected
    assert spec_errors("/campaigns/{id}/sending-status", 200, body) == []


def test_sending_accounts_are_configurable(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """3 connected, 2 available reads (2, 3); with none available an active campaign is no_accounts_available."""
    cid = sim.create_campaign("SMB")
    sim.insert_leads(cid, people(2))
    sim.set_sending_accounts(cid, 3, 2)
    status = client.sending_status(cid)
    assert (status.status, status.accounts_available, status.accounts_total) == ("healthy", 2, 3)
    body = sim.requests_to("GET", "/campaigns/{id}/sending-status")[0].response_body
    assert body["diagnostics"]["accounts_summary"]["unavailable"]["disconnected"] == 1
    sim.set_sending_accounts(cid, 3, 0)
    assert (client.sending_status(cid).status, client.sending_status(cid).accounts_available) == (
        "no_accounts_available",
        0,
    )
    with pytest.raises(ValueError):
        sim.set_sending_accounts(cid, 1, 2)


def test_sending_status_shapes_can_be_switched_for_tests(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """The summary-only and the both-null shapes are served on demand and read as such by the client."""
    cid = sim.create_campaign("SMB", status=-1)
    sim.set_sending_status_shape(cid, "summary_only")
    summary_only = client.sending_status(cid)
    assert (summary_only.status, summary_only.accounts_total, summary_only.raw["diagnostics"]) == (
        "campaign_accounts_unhealthy",
        None,
        None,
    )
    assert summary_only.summary_text == RECORDED_SUMMARY_ONLY["summary"]["status_message"]
    sim.set_sending_status_shape(cid, "no_data")
    nothing = client.sending_status(cid)
    assert (nothing.raw, nothing.status, nothing.has_data) == ({"diagnostics": None, "summary": None}, None, False)
    for record in sim.requests_to("GET", "/campaigns/{id}/sending-status"):
        assert spec_errors("/campaigns/{id}/sending-status", 200, record.response_body) == []
    with pytest.raises(ValueError):
        sim.set_sending_status_shape(cid, "other")  # type: ignore[arg-type]


def test_sending_status_of_an_unknown_campaign_is_not_found(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """An unknown campaign id answers 404 (NotFoundError), not retried; a blank id is refused before sending."""
    with pytest.raises(NotFoundError):
        client.sending_status("no-such-campaign")
    with pytest.raises(ValueError):
        client.sending_status("")
    assert [r.status for r in sim.request_log] == [404]


# --------------------------------------------------------------------------------------------------
# Campaign settings and persistence


def test_campaign_objects_carry_well_configured_settings(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """get_campaign's raw object holds the settings validate reads, with a well-configured campaign's values."""
    cid = sim.create_campaign("SMB")
    raw = client.get_campaign(cid).raw
    assert {k: raw[k] for k in ("insert_unsubscribe_header", "stop_on_reply", "allow_risky_contacts")} == {
        "insert_unsubscribe_header": True,
        "stop_on_reply": True,
        "allow_risky_contacts": False,
    }
    assert (raw["disable_bounce_protect"], raw["daily_limit"]) == (False, 50)
    assert raw["campaign_schedule"]["start_date"] == "2026-01-05" and "end_date" not in raw["campaign_schedule"]
    assert raw["campaign_schedule"]["schedules"][0]["days"]["1"] is True
    listed = {c.id: c.raw for c in client.iter_campaigns()}
    assert listed[cid]["insert_unsubscribe_header"] is True
    assert spec_errors("/campaigns/{id}", 200, dict(raw)) == []


def test_set_campaign_settings_changes_nulls_and_omits_fields(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """Set values show up, None answers null, omitted fields disappear; unknown fields and wrong types are refused."""
    cid = sim.create_campaign("SMB")
    schedule = {"schedules": [], "end_date": "2026-01-01"}
    sim.set_campaign_settings(cid, stop_on_reply=False, daily_limit=None, campaign_schedule=schedule)
    sim.set_campaign_settings(cid, omit=["insert_unsubscribe_header"])
    raw = client.get_campaign(cid).raw
    assert (raw["stop_on_reply"], raw["daily_limit"], raw["campaign_schedule"]) == (False, None, schedule)
    assert "insert_unsubscribe_header" not in raw
    sim.set_campaign_settings(cid, insert_unsubscribe_header=False)
    assert client.get_campaign(cid).raw["insert_unsubscribe_header"] is False
    with pytest.raises(ValueError):
        sim.set_campaign_settings(cid, name="renamed")
    with pytest.raises(ValueError):
        sim.set_campaign_settings(cid, stop_on_reply="yes")
    with pytest.raises(KeyError):
        sim.set_campaign_settings("no-such-campaign", stop_on_reply=True)


def test_new_simulator_state_survives_save_and_load(tmp_path: Path) -> None:
    """Day counters, campaign settings, accounts and the sending-status shape are kept by save_state/load_state."""
    state_file = tmp_path / "sim.json"
    sim, cid = two_day_sim()
    with sim:
        sim.set_campaign_settings(cid, allow_risky_contacts=True, omit=["stop_on_reply"])
        sim.set_sending_accounts(cid, 4, 1)
        sim.set_sending_status_shape(cid, "summary_only")
        sim.save_state(state_file)
    restored = InstantlySimulator.load_state(state_file, api_key=KEY)
    assert restored is not None
    assert restored.daily_counters(cid) == sim.daily_counters(cid)
    assert restored.campaign(cid) == sim.campaign(cid)
    assert restored.campaign(cid)["allow_risky_contacts"] is True and "stop_on_reply" not in restored.campaign(cid)
    restored.record_daily(cid, DAY3, sent=1)
    assert restored.daily_counters(cid)[DAY3] == {"sent": 1}
    with restored, make_client(restored) as client:
        status = client.sending_status(cid)
        assert (status.raw["diagnostics"], status.status) == (None, "waiting_for_leads")
