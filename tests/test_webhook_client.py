"""The client's webhook operations (issue #18) against the simulator: create, list (all pages), resume, and the
paged delivery attempts with their filters; a plan without webhooks is its own typed error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import (
    IncompleteListingError,
    PlanError,
    UnusableAnswerError,
    ValidationError,
    WebhookPlanError,
    is_service_level,
)
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from tests.instantly_fixtures import FakeClock, clock_fixture, make_client, make_sim  # noqa: F401
from tests.test_simulator_webhooks import SECRET, SECRET_HEADER, Receiver, closed_port_url, contract_checker

HEADERS = {SECRET_HEADER: SECRET}


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[InstantlySimulator]:
    """A running simulator that retries deliveries without waiting and never disables a webhook by itself."""
    with make_sim(webhook_retry_delays=(0.0, 0.0, 0.0), webhook_disable_after=1000) as simulator:
        yield simulator


@pytest.fixture(name="client")
def client_fixture(sim: InstantlySimulator, clock: FakeClock) -> Iterator[InstantlyClient]:
    """A client bound to `sim`, on the fake clock."""
    with make_client(sim, clock) as instantly:
        yield instantly


def unsubscribe(sim: InstantlySimulator, emails: list[str]) -> None:
    """These leads (in a paused campaign of their own) unsubscribe now; wait for their deliveries."""
    cid = sim.create_campaign(f"C{len(sim.campaign_ids())}", status=2)
    sim.insert_leads(cid, [{"email": e} for e in emails])
    for lead in sim.leads(cid):
        sim.finish_lead(lead["id"], "unsubscribed")
    assert sim.wait_for_webhooks(10)


def test_webhook_events_are_paged_to_the_end_and_filtered(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """107 attempts (94 delivered, 3 events failing 4 times each on one day, 1 delivered the next day) come back
    over 3 pages of 100 (the second after the 100th id, the third empty); success=false gives the 12 failed
    attempts, success=true from the second day the late one, success=true to the first day the 94; max_pages=1
    stops at 100 and says the listing is incomplete. Every request and answer conforms to the spec."""
    problems = contract_checker(sim)
    with Receiver(answer=lambda body: 500 if body["lead_email"].startswith("fail") else 200) as receiver:
        client.create_webhook(receiver.url, "lead_unsubscribed", headers=HEADERS)
        unsubscribe(sim, [f"ok{i}@example.com" for i in range(94)] + [f"fail{i}@example.com" for i in range(3)])
        sim.advance(1)
        unsubscribe(sim, ["late@example.com"])
    listing = client.list_webhook_events()
    everything = list(listing)
    assert (len(everything), len({e["id"] for e in everything}), listing.complete) == (107, 107, True)
    pages = sim.requests_to("GET", "/webhook-events")
    assert [r.query.get("starting_after") for r in pages] == [None, [everything[99]["id"]], [everything[106]["id"]]]
    assert [len(r.response_body["items"]) for r in pages] == [100, 7, 0]
    assert pages[0].query["limit"] == ["100"]
    failed = list(client.list_webhook_events(success=False))
    assert len(failed) == 12 and {e["lead_email"] for e in failed} == {f"fail{i}@example.com" for i in range(3)}
    assert sim.requests_to("GET", "/webhook-events")[-1].query["success"] == ["false"]
    late = list(client.list_webhook_events(success=True, from_date=dt.date(2026, 1, 6)))
    assert [e["lead_email"] for e in late] == ["late@example.com"]
    assert sim.requests_to("GET", "/webhook-events")[-1].query["from"] == ["2026-01-06"]
    first_day = list(client.list_webhook_events(success=True, to_date=dt.date(2026, 1, 5)))
    assert len(first_day) == 94 and all(e["timestamp_created_date"] == "2026-01-05" for e in first_day)
    cut = client.list_webhook_events(max_pages=1)
    assert (len(list(cut)), cut.complete) == (100, False)
    with pytest.raises(ValueError):
        client.list_webhook_events(from_date=dt.date(2026, 1, 6), to_date=dt.date(2026, 1, 5))
    assert problems == []


def test_create_and_list_webhooks(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """create_webhook sends exactly the CreateWebhook fields given and returns the Webhook; list_webhooks reads
    every page (3 webhooks at 2 a page: 3 requests) in id order, and a listing whose cursor repeats raises."""
    cid = sim.create_campaign("SMB")
    first = client.create_webhook("https://receiver.corp.example/in", "lead_unsubscribed", headers=HEADERS,
                                  name="coldsync unsubscribes", campaign=cid)
    assert sim.requests_to("POST", "/webhooks")[0].request_body == {
        "target_hook_url": "https://receiver.corp.example/in", "event_type": "lead_unsubscribed",
        "headers": HEADERS, "name": "coldsync unsubscribes", "campaign": cid}
    assert (first["campaign"], first["status"], first["headers"], first["timestamp_error"]) == (cid, 1, HEADERS, None)
    others = [client.create_webhook("https://receiver.corp.example/in", kind, headers=HEADERS)
              for kind in ("email_bounced", "reply_received")]
    assert sim.requests_to("POST", "/webhooks")[1].request_body == {
        "target_hook_url": "https://receiver.corp.example/in", "event_type": "email_bounced", "headers": HEADERS}
    listed = client.list_webhooks(page_size=2)
    assert [w["id"] for w in listed] == sorted(w["id"] for w in (first, *others))
    assert [w["event_type"] for w in listed] == ["lead_unsubscribed", "email_bounced", "reply_received"]
    assert len(sim.requests_to("GET", "/webhooks")) == 3
    sim.set_fault("GET /webhooks", FaultSpec(paging="repeat_cursor"))
    with pytest.raises(IncompleteListingError):
        client.list_webhooks(page_size=2)


def test_create_webhook_refuses_bad_input_and_never_shows_the_secret(sim: InstantlySimulator,
                                                                     client: InstantlyClient) -> None:
    """A non-http URL, an unknown event type or a non-string header value is refused before sending; a 400 that
    echoes the secret header is a ValidationError whose text lacks it; an unreadable 2xx is not sent again."""
    for url, kind, headers in (("ftp://corp.example/in", "lead_unsubscribed", HEADERS),
                               ("https://corp.example/in", "lead_unsubscribe", HEADERS),
                               ("https://corp.example/in", "email_bounced", {SECRET_HEADER: 7})):
        with pytest.raises(ValueError):
            client.create_webhook(url, kind, headers=headers)  # type: ignore[arg-type]
    assert sim.requests_to("POST", "/webhooks") == []
    sim.set_fault("POST /webhooks", FaultSpec(statuses=[400], message=f"headers/{SECRET_HEADER} {SECRET} rejected"))
    with pytest.raises(ValidationError) as refused:
        client.create_webhook("https://corp.example/in", "email_bounced", headers=HEADERS)
    assert SECRET not in str(refused.value) and SECRET not in repr(refused.value)
    assert "rejected" in refused.value.server_message
    sim.set_fault("POST /webhooks", FaultSpec(malformed=1))
    with pytest.raises(UnusableAnswerError):
        client.create_webhook("https://corp.example/in", "email_bounced", headers=HEADERS)
    assert len(sim.requests_to("POST", "/webhooks")) == 2  # the 400 and the unreadable 2xx, neither sent again


def test_resume_turns_a_disabled_webhook_active_again(clock: FakeClock) -> None:
    """A webhook disabled after a failed delivery lists status -1 with timestamp_error; resume_webhook answers
    status 1 with timestamp_error null, and the listing says so too."""
    with make_sim(webhook_retry_delays=(), webhook_disable_after=1) as sim, make_client(sim, clock) as client:
        hook = client.create_webhook(closed_port_url(), "lead_unsubscribed", headers=HEADERS)
        unsubscribe(sim, ["gone@example.com"])
        (disabled,) = client.list_webhooks()
        assert (disabled["id"], disabled["status"], disabled["timestamp_error"]) == (
            hook["id"], -1, "2026-01-05T09:00:00.000Z")
        resumed = client.resume_webhook(hook["id"])
        assert (resumed["status"], resumed["timestamp_error"]) == (1, None)
        assert [(w["status"], w["timestamp_error"]) for w in client.list_webhooks()] == [(1, None)]


def test_a_plan_without_webhooks_is_its_own_typed_error(clock: FakeClock) -> None:
    """On a plan without webhooks every webhook method raises WebhookPlanError (a PlanError, service-level,
    http 402, saying the plan has no webhooks, not retried) while other calls still work."""
    with make_sim(webhooks_in_plan=False) as sim, make_client(sim, clock) as client:
        calls = (lambda: client.create_webhook("https://corp.example/in", "email_bounced", headers=HEADERS),
                 client.list_webhooks, lambda: client.resume_webhook("f9cc070d-8dba-4341-b847-f083c358e460"),
                 lambda: list(client.list_webhook_events(success=False)))
        for call in calls:
            with pytest.raises(WebhookPlanError) as refused:
                call()
            error = refused.value
            assert isinstance(error, PlanError) and is_service_level(error)
            assert (error.http_status, error.attempts) == (402, 1)
            assert "plan has no webhooks" in str(error)
        client.check_key()
        assert len(sim.request_log) == 5
