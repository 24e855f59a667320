"""The simulator delivers webhooks (issue #18): the guide's payload to every matching webhook, with its headers,
retries, failed attempts listed, disabling after repeated failures and resuming; all on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from coldsync.instantly import contract
from coldsync.instantly.simulator import InstantlySimulator, RequestRecord, SequenceRates
from coldsync.webhooks.events import parse_body
from tests.instantly_fixtures import KEY, make_sim

SECRET_HEADER = "X-Coldsync-Webhook-Secret"
SECRET = "whsec-5f1c2a9e-b7d4-receiver-token"  # shares no 8-character run with the API key
FAST = (0.02, 0.02, 0.02)  # the tests' retry delays (the real service: about 30 s in all)


@dataclass(frozen=True)
class Hit:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """A loopback HTTP receiver: records every POST (path, lower-cased headers, JSON body) and answers the next
    scripted status (then `default`); `answer(body)` decides instead when given; `gate` holds every answer."""

    def __init__(self, statuses: Iterable[int] = (), *, default: int = 200,
                 answer: Callable[[dict[str, Any]], int] | None = None) -> None:
        self.hits: list[Hit] = []
        self.statuses = deque(statuses)
        self.default = default
        self.answer = answer
        self.gate: threading.Event | None = None
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with lock:
                    receiver.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    if receiver.answer is not None:
                        status = receiver.answer(body)
                    else:
                        status = receiver.statuses.popleft() if receiver.statuses else receiver.default
                if receiver.gate is not None:
                    receiver.gate.wait(5)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/instantly/events"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def api(sim: InstantlySimulator, method: str, path: str, body: Any = None) -> requests.Response:
    """One raw API call to the simulator with the test key."""
    return requests.request(method, f"{sim.base_url}/api/v2{path}", json=body, timeout=5,
                            headers={"Authorization": f"Bearer {KEY}"})


def register(sim: InstantlySimulator, url: str, event_type: str = "all_events", **extra: Any) -> dict[str, Any]:
    """Create a webhook with the secret header through the API; the Webhook object."""
    answer = api(sim, "POST", "/webhooks",
                 {"target_hook_url": url, "event_type": event_type, "headers": {SECRET_HEADER: SECRET}, **extra})
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


def contract_checker(sim: InstantlySimulator) -> list[str]:
    """A list that collects every contract violation of the simulator's requests and answers from now on."""
    problems: list[str] = []

    def check(record: RequestRecord) -> None:
        problems.extend(contract.request_errors(record.method, record.path, body=record.request_body,
                                                query=record.query))
        problems.extend(contract.response_errors(record.method, record.path, record.status, record.response_body))

    sim.add_listener(check)
    return problems


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[InstantlySimulator]:
    """A running simulator with short webhook retry delays."""
    with make_sim(webhook_retry_delays=FAST) as simulator:
        yield simulator


def paused_leads(sim: InstantlySimulator, emails: Iterable[str], name: str = "SMB") -> tuple[str, list[str]]:
    """A paused campaign (its leads move only when a test says) with these leads: (campaign id, lead ids)."""
    cid = sim.create_campaign(name, status=2)
    sim.insert_leads(cid, [{"email": e} for e in emails])
    by_email = {lead["email"]: lead["id"] for lead in sim.leads(cid)}
    return cid, [by_email[e] for e in emails]


# --------------------------------------------------------------------------------------------------


def test_unsubscribe_bounce_and_reply_deliver_the_guides_payload_with_the_custom_header(
        sim: InstantlySimulator) -> None:
    """finish_lead's unsubscribe, bounce and reply each POST exactly the guide's fields (event time, workspace,
    campaign id and name, lead email, sending account, step 1 variant 1, is_first; reply texts for the reply)
    with the webhook's secret header and a JSON content type; the receiver's own parser reads them."""
    problems = contract_checker(sim)
    cid, (unsub, bounce, reply) = paused_leads(sim, ["u@example.com", "b@example.com", "r@example.com"])
    sim.advance(1.25)  # the events' time: 2026-01-06T15:00:00.000Z (the simulator starts at 2026-01-05 09:00)
    with Receiver() as receiver:
        register(sim, receiver.url)
        sim.finish_lead(unsub, "unsubscribed")
        sim.finish_lead(bounce, "bounced")
        sim.finish_lead(reply, "replied", interest=1)
        assert sim.wait_for_webhooks(5)
    base = {"timestamp": "2026-01-06T15:00:00.000Z", "workspace": sim.organization_id, "campaign_id": cid,
            "campaign_name": "SMB", "email_account": "sender1@example.com", "step": 1, "variant": 1,
            "is_first": True}
    bodies = [hit.body for hit in receiver.hits]
    assert bodies[0] == {**base, "event_type": "lead_unsubscribed", "lead_email": "u@example.com"}
    assert bodies[1] == {**base, "event_type": "email_bounced", "lead_email": "b@example.com"}
    replied = dict(bodies[2])
    email_id = replied.pop("email_id")
    assert uuid.UUID(email_id).version == 5
    assert replied == {
        **base, "event_type": "reply_received", "lead_email": "r@example.com",
        "unibox_url": f"https://app.instantly.ai/app/unibox?thread={email_id}",
        "reply_subject": "Re: SMB",
        "reply_text": "Thanks for reaching out. This is relevant for us: could we talk next week?",
        "reply_text_snippet": "Thanks for reaching out. This is relevan",
        "reply_html": "<div>Thanks for reaching out. This is relevant for us: could we talk next week?</div>",
    }
    for hit in receiver.hits:
        assert hit.path == "/instantly/events"
        assert hit.headers[SECRET_HEADER.lower()] == SECRET
        assert hit.headers["content-type"] == "application/json"
    row = parse_body(json.dumps(bodies[0]).encode())
    assert (row.event_type, row.email_key, row.campaign_id, row.step, row.variant) == (
        "lead_unsubscribed", "u@example.com", cid, 1, 1)
    assert problems == []


def test_a_webhook_gets_only_its_event_type_and_campaign(sim: InstantlySimulator) -> None:
    """A lead_unsubscribed webhook of campaign A gets A's unsubscribe only (not A's bounce nor B's unsubscribe);
    an all_events webhook without a campaign gets all three; an out-of-office auto-reply reaches neither."""
    cid_a, (a_unsub, a_bounce, a_ooo) = paused_leads(sim, ["a1@example.com", "a2@example.com", "a3@example.com"],
                                                     "A")
    _, (b_unsub,) = paused_leads(sim, ["b1@example.com"], "B")
    with Receiver() as narrow, Receiver() as everything:
        register(sim, narrow.url, "lead_unsubscribed", campaign=cid_a)
        register(sim, everything.url)
        sim.finish_lead(a_unsub, "unsubscribed")
        sim.finish_lead(a_bounce, "bounced")
        sim.finish_lead(a_ooo, "out_of_office")
        sim.finish_lead(b_unsub, "unsubscribed")
        assert sim.wait_for_webhooks(5)
    assert [(h.body["event_type"], h.body["lead_email"]) for h in narrow.hits] == [
        ("lead_unsubscribed", "a1@example.com")]
    assert [(h.body["event_type"], h.body["lead_email"]) for h in everything.hits] == [
        ("lead_unsubscribed", "a1@example.com"), ("email_bounced", "a2@example.com"),
        ("lead_unsubscribed", "b1@example.com")]


def test_the_scripted_lifecycle_delivers_in_event_order(sim: InstantlySimulator) -> None:
    """Leads that bounce on their own while the clock advances are each delivered once, in the order the
    events happened, each payload's timestamp the lead's own update time."""
    with make_sim(rates=SequenceRates.only("bounced"), webhook_retry_delays=FAST) as lifecycle:
        cid = lifecycle.create_campaign("SMB")
        lifecycle.insert_leads(cid, [{"email": f"p{i}@example.com"} for i in range(6)])
        with Receiver() as receiver:
            register(lifecycle, receiver.url, "email_bounced")
            lifecycle.advance(5)
            assert lifecycle.wait_for_webhooks(5)
        leads = lifecycle.leads(cid)
    assert {lead["status"] for lead in leads} == {-1}
    delivered = [(h.body["lead_email"], h.body["timestamp"]) for h in receiver.hits]
    assert sorted(delivered) == sorted((lead["email"], lead["timestamp_updated"]) for lead in leads)
    assert [when for _, when in delivered] == sorted(when for _, when in delivered)


def test_a_retried_delivery_lists_every_attempt_in_one_retry_group(sim: InstantlySimulator) -> None:
    """A receiver answering 500, 500, then 200 gets the same body three times; three WebhookEvents share one
    retry_group_id: retry_count 0, 1, 2, success False, False, True, will_retry True, True, False, the next retry
    time only on the failed ones, retry_successful null on the first attempt and then the attempt's success."""
    problems = contract_checker(sim)
    _, (lead,) = paused_leads(sim, ["retry@example.com"])
    with Receiver([500, 500]) as receiver:
        register(sim, receiver.url, "lead_unsubscribed")
        sim.finish_lead(lead, "unsubscribed")
        assert sim.wait_for_webhooks(5)
    assert len(receiver.hits) == 3 and receiver.hits[0].body == receiver.hits[1].body == receiver.hits[2].body
    events = api(sim, "GET", "/webhook-events?limit=100").json()["items"]
    assert [(e["retry_count"], e["success"], e["will_retry"], e["status_code"], e["retry_successful"])
            for e in events] == [(0, False, True, 500, None), (1, False, True, 500, False), (2, True, False, 200, True)]
    assert len({e["retry_group_id"] for e in events}) == 1
    assert [e["error_message"] for e in events] == ["HTTP 500", "HTTP 500", None]
    assert [e["timestamp_next_retry"] is not None for e in events] == [True, True, False]
    assert {e["lead_email"] for e in events} == {"retry@example.com"}
    assert all(e["payload"] == receiver.hits[0].body and e["webhook_url"] == receiver.url for e in events)
    assert problems == []


def test_a_receiver_down_leaves_failed_events_with_their_payload(sim: InstantlySimulator) -> None:
    """With nothing listening, an event is tried 4 times (the first attempt and 3 retries), each listed failed with
    no status code and the payload; the last says it will not be retried; `success=false` lists all four."""
    problems = contract_checker(sim)
    cid, (lead,) = paused_leads(sim, ["down@example.com"])
    register(sim, closed_port_url(), "lead_unsubscribed")
    sim.finish_lead(lead, "unsubscribed")
    assert sim.wait_for_webhooks(5)
    failed = api(sim, "GET", "/webhook-events?success=false").json()["items"]
    assert api(sim, "GET", "/webhook-events?success=true").json()["items"] == []
    assert [(e["retry_count"], e["will_retry"], e["status_code"]) for e in failed] == [
        (0, True, None), (1, True, None), (2, True, None), (3, False, None)]
    assert all(e["error_message"].startswith("Connection failed") for e in failed)
    assert {(e["payload"]["event_type"], e["payload"]["lead_email"], e["payload"]["campaign_id"]) for e in failed} == {
        ("lead_unsubscribed", "down@example.com", cid)}
    assert sim.webhooks()[0]["status"] == 1  # one failed event is not yet "repeated failures"
    assert problems == []


def test_repeated_failures_disable_the_webhook_until_it_is_resumed() -> None:
    """After 2 events that failed every attempt (webhook_disable_after=2) the webhook has status -1 and
    timestamp_error; an unsubscribe while disabled is neither delivered nor listed; after resume (status 1,
    timestamp_error null) the next unsubscribe is delivered once."""
    with make_sim(webhook_retry_delays=(0.01,), webhook_disable_after=2) as sim:
        problems = contract_checker(sim)
        _, leads = paused_leads(sim, [f"x{i}@example.com" for i in range(4)])
        with Receiver(default=503) as receiver:
            hook = register(sim, receiver.url, "lead_unsubscribed")
            sim.finish_lead(leads[0], "unsubscribed")
            sim.finish_lead(leads[1], "unsubscribed")
            assert sim.wait_for_webhooks(5)
            disabled = api(sim, "GET", f"/webhooks/{hook['id']}").json()
            assert (disabled["status"], disabled["timestamp_error"]) == (-1, "2026-01-05T09:00:00.000Z")
            receiver.default = 200
            sim.finish_lead(leads[2], "unsubscribed")  # while disabled: dropped
            assert sim.wait_for_webhooks(5)
            assert len(receiver.hits) == 4 and len(sim.webhook_events()) == 4
            resumed = api(sim, "POST", f"/webhooks/{hook['id']}/resume").json()
            assert (resumed["status"], resumed["timestamp_error"]) == (1, None)
            sim.finish_lead(leads[3], "unsubscribed")
            assert sim.wait_for_webhooks(5)
        assert [h.body["lead_email"] for h in receiver.hits] == ["x0@example.com"] * 2 + ["x1@example.com"] * 2 + [
            "x3@example.com"]
        assert [e["success"] for e in sim.webhook_events()] == [False] * 4 + [True]
        assert problems == []


def test_delivery_never_blocks_the_api_and_a_slow_receiver_times_out() -> None:
    """While a receiver holds a delivery open, finish_lead returns at once and the API answers; past
    webhook_timeout the attempt is listed failed with "Connection timeout" (no retries configured here)."""
    with make_sim(webhook_retry_delays=(), webhook_timeout=0.3) as sim, Receiver() as receiver:
        receiver.gate = threading.Event()
        _, (lead,) = paused_leads(sim, ["slow@example.com"])
        register(sim, receiver.url, "lead_unsubscribed")
        started = time.monotonic()
        sim.finish_lead(lead, "unsubscribed")
        assert api(sim, "GET", "/webhooks").status_code == 200
        assert time.monotonic() - started < 0.25
        assert sim.wait_for_webhooks(5)
        receiver.gate.set()
        (event,) = sim.webhook_events()
    assert (event["success"], event["status_code"], event["error_message"], event["will_retry"]) == (
        False, None, "Connection timeout", False)


def test_the_webhook_resource_answers_the_specs_shapes(sim: InstantlySimulator) -> None:
    """GET/PATCH/DELETE by id, the test delivery, event types and the listing filters answer the spec's shapes;
    a bad body is a 400, an unknown id a 404; a deleted webhook gets nothing more."""
    problems = contract_checker(sim)
    cid, (lead,) = paused_leads(sim, ["gone@example.com"])
    with Receiver([500]) as receiver:
        hook = register(sim, receiver.url, "reply_received", name="replies", campaign=cid)
        other = register(sim, receiver.url, "email_bounced")
        assert (hook["campaign"], hook["name"], hook["headers"], hook["status"]) == (
            cid, "replies", {SECRET_HEADER: SECRET}, 1)
        failed_test = api(sim, "POST", f"/webhooks/{hook['id']}/test").json()
        assert (failed_test["success"], failed_test["status_code"]) == (False, 500)
        passed_test = api(sim, "POST", f"/webhooks/{hook['id']}/test").json()
        assert (passed_test["success"], passed_test["status_code"], passed_test["message"]) == (
            True, 200, "Webhook test successful")
        assert receiver.hits[0].body["event_type"] == "reply_received"
        assert receiver.hits[0].headers[SECRET_HEADER.lower()] == SECRET
        patched = api(sim, "PATCH", f"/webhooks/{hook['id']}", {"event_type": "lead_unsubscribed"}).json()
        assert patched["event_type"] == "lead_unsubscribed"
        assert [w["id"] for w in api(sim, "GET", "/webhooks?event_type=email_bounced").json()["items"]] == [
            other["id"]]
        assert [w["id"] for w in api(sim, "GET", f"/webhooks?campaign={cid}").json()["items"]] == [hook["id"]]
        assert api(sim, "DELETE", f"/webhooks/{hook['id']}").json()["id"] == hook["id"]
        assert api(sim, "GET", f"/webhooks/{hook['id']}").status_code == 404
        sim.finish_lead(lead, "unsubscribed")
        assert sim.wait_for_webhooks(5)
        assert len(receiver.hits) == 2  # the two test deliveries only
    types = api(sim, "GET", "/webhooks/event-types").json()["event_types"]
    assert {"lead_unsubscribed", "email_bounced", "reply_received"} <= {t["id"] for t in types}
    assert sim.webhook_events() == []  # test deliveries are not listed
    assert problems == []
    # and requests that break the contract are refused
    assert api(sim, "POST", "/webhooks", {"target_hook_url": "ftp://corp.example/x"}).status_code == 400
    extra_field = {"target_hook_url": "https://corp.example/x", "secret": "x"}
    assert api(sim, "POST", "/webhooks", extra_field).status_code == 400
    assert api(sim, "PATCH", f"/webhooks/{other['id']}", {}).status_code == 400
    assert api(sim, "GET", "/webhook-events?from=2026-13-01").status_code == 400


def test_a_plan_without_webhooks_answers_402_and_delivers_nothing(sim: InstantlySimulator) -> None:
    """With webhooks_in_plan off, every webhook endpoint answers the spec's 402 body and a lead event is not
    delivered; other endpoints still answer."""
    _, (lead,) = paused_leads(sim, ["plan@example.com"])
    with Receiver() as receiver:
        hook = register(sim, receiver.url)
        sim.set_webhooks_in_plan(False)
        for method, path in (("GET", "/webhooks"), ("GET", f"/webhooks/{hook['id']}"), ("GET", "/webhook-events"),
                             ("POST", f"/webhooks/{hook['id']}/resume"), ("GET", "/webhooks/event-types")):
            answer = api(sim, method, path)
            assert answer.status_code == 402
            assert answer.json() == {"statusCode": 402, "error": "Payment Required",
                                     "message": "Workspace does not have an active paid plan"}
        sim.finish_lead(lead, "unsubscribed")
        assert sim.wait_for_webhooks(5)
        assert api(sim, "GET", "/campaigns").status_code == 200
    assert receiver.hits == []

