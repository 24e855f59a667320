"""The local Instantly simulator: real shapes, limits, the seeded lead lifecycle and its faults."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.instantly import contract
from coldsync.instantly.client import InstantlyClient, LeadFilter
from coldsync.instantly.simulator import (
    FATES,
    STATE_FORMAT,
    FaultSpec,
    InstantlySimulator,
    RepBehaviour,
    SequenceRates,
    SimulatorStateError,
)
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

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID_V7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REPO = Path(__file__).resolve().parents[1]


def call(
    sim: InstantlySimulator, method: str, path: str, body: Any = None, *, key: str | None = KEY, **kw: Any
) -> requests.Response:
    """A raw request to the simulator (no client in between)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, f"{sim.base_url}/api/v2{path}", json=body, headers=headers, timeout=5, **kw)


def test_rejects_a_missing_or_wrong_key(sim: InstantlySimulator) -> None:
    """No Authorization header or a wrong key is a 401 in Instantly's error shape."""
    missing = call(sim, "GET", "/campaigns", key=None)
    wrong = call(sim, "GET", "/campaigns", key="nope")
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Missing Authorization header"}
    assert wrong.json()["message"] == "Invalid API key"
    assert all(not r.authorized for r in sim.request_log)


def test_enforces_the_per_second_and_per_minute_limits() -> None:
    """Over the configured limits the simulator answers 429 Too Many Requests."""
    with make_sim(max_per_second=5, max_per_minute=1000) as sim:
        statuses = [call(sim, "GET", "/campaigns").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
    with make_sim(max_per_second=1000, max_per_minute=7, rate_limit_retry_after=12) as sim:
        answers = [call(sim, "GET", "/campaigns") for _ in range(8)]
        assert [a.status_code for a in answers] == [200] * 7 + [429]
        assert answers[-1].json()["error"] == "Too Many Requests"
        assert answers[-1].headers["Retry-After"] == "12"


def test_json_content_type_with_empty_body_is_a_400(sim: InstantlySimulator, campaign_id: str) -> None:
    """A bodyless POST that claims application/json is refused, as Instantly does; without it, it works."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = requests.post(f"{sim.base_url}/api/v2/campaigns/{campaign_id}/pause", headers=headers, timeout=5)
    assert bad.status_code == 400
    assert "Body cannot be empty" in bad.json()["message"]
    good = call(sim, "POST", f"/campaigns/{campaign_id}/pause")
    assert good.status_code == 200 and good.json()["status"] == 2


def test_list_limit_must_be_between_1_and_100(sim: InstantlySimulator) -> None:
    """limit 101 or 0 is a 400; 100 is fine; no limit defaults to 10."""
    assert call(sim, "POST", "/leads/list", {"limit": 101}).status_code == 400
    assert call(sim, "POST", "/leads/list", {"limit": 0}).status_code == 400
    assert call(sim, "POST", "/leads/list", {"limit": 100}).status_code == 200
    assert call(sim, "GET", "/campaigns", params={"limit": 101}).status_code == 400


def test_paging_shape_matches_the_real_service(sim: InstantlySimulator, campaign_id: str) -> None:
    """Cursor = last item's id; a short last page still has it; the empty page omits it."""
    sim.insert_leads(campaign_id, people(25))
    first = call(sim, "POST", "/leads/list", {"campaign": campaign_id, "limit": 20}).json()
    assert first["next_starting_after"] == first["items"][-1]["id"]
    second = call(
        sim,
        "POST",
        "/leads/list",
        {"campaign": campaign_id, "limit": 20, "starting_after": first["next_starting_after"]},
    ).json()
    assert len(second["items"]) == 5 and second["next_starting_after"] == second["items"][-1]["id"]
    third = call(
        sim,
        "POST",
        "/leads/list",
        {"campaign": campaign_id, "limit": 20, "starting_after": second["next_starting_after"]},
    ).json()
    assert third == {"items": []}
    ids = [lead["id"] for lead in first["items"] + second["items"]]
    assert ids == sorted(ids) and all(UUID_V7.match(i) for i in ids)


def test_campaign_id_in_a_listing_is_ignored_like_the_real_service(sim: InstantlySimulator) -> None:
    """`campaign_id` is not a listing field: it is silently ignored and the query spans the workspace."""
    one, two = sim.create_campaign("A"), sim.create_campaign("B")
    sim.insert_leads(one, people(2))
    sim.insert_leads(two, people(3, start=10))
    wrong = call(sim, "POST", "/leads/list", {"campaign_id": one, "limit": 100}).json()
    right = call(sim, "POST", "/leads/list", {"campaign": one, "limit": 100}).json()
    assert len(wrong["items"]) == 5 and len(right["items"]) == 2


def test_bulk_add_counters_and_created_index(sim: InstantlySimulator, campaign_id: str) -> None:
    """Each refusal lands in its own counter and created_leads.index points into the request."""
    other = sim.create_campaign("B")
    sim.insert_leads(other, [{"email": "elsewhere@example.com"}])
    sim.insert_leads(campaign_id, [{"email": "here@example.com"}])
    sim.add_to_blocklist("blocked.example.com")
    body = {
        "campaign_id": campaign_id,
        "skip_if_in_workspace": True,
        "leads": [
            {"email": "x@blocked.example.com"},
            {"email": "new@example.com", "first_name": "Alex", "custom_variables": {"tier": "smb", "score": 3}},
            {"email": "HERE@example.com"},
            {"email": "elsewhere@example.com"},
            {"email": "bad-address"},
            {"email": "new@example.com"},
        ],
    }
    answer = call(sim, "POST", "/leads/add", body).json()
    assert {k: v for k, v in answer.items() if k != "created_leads"} == {
        "status": "success",
        "total_sent": 6,
        "leads_uploaded": 1,
        "in_blocklist": 1,
        "blocklist_used": None,
        "duplicated_leads": 1,
        "skipped_count": 1,
        "invalid_email_count": 1,
        "incomplete_count": 0,
        "duplicate_email_count": 1,
        "remaining_in_plan": sim.plan_lead_limit - 3,
    }
    created = answer["created_leads"]
    assert [(c["index"], c["email"], c["first_name"]) for c in created] == [(1, "new@example.com", "Alex")]
    lead = sim.lead(created[0]["id"])
    assert lead is not None and lead["payload"] == {
        "firstName": "Alex",
        "email": "new@example.com",
        "tier": "smb",
        "score": 3,
    }
    assert "custom_variables" not in lead and None not in lead.values()


def test_bulk_add_validation(sim: InstantlySimulator, campaign_id: str) -> None:
    """Too many leads, an unknown field, both targets or an unknown campaign are refused whole."""
    too_many = {"campaign_id": campaign_id, "leads": [{"email": f"p{i}@example.com"} for i in range(1001)]}
    assert call(sim, "POST", "/leads/add", too_many).status_code == 400
    assert call(sim, "POST", "/leads/add", {"campaign_id": campaign_id, "leads": []}).status_code == 400
    unknown = {"campaign_id": campaign_id, "leads": [{"email": "a@example.com", "campaign": campaign_id}]}
    assert call(sim, "POST", "/leads/add", unknown).status_code == 400
    list_id = sim.create_list("L")
    both = {"campaign_id": campaign_id, "list_id": list_id, "leads": [{"email": "a@example.com"}]}
    assert call(sim, "POST", "/leads/add", both).status_code == 400
    nowhere = {"campaign_id": "00000000-0000-4000-8000-000000000000", "leads": [{"email": "a@example.com"}]}
    assert call(sim, "POST", "/leads/add", nowhere).status_code == 404
    assert sim.lead_count() == 0


def test_skip_flags_and_lists(sim: InstantlySimulator, campaign_id: str) -> None:
    """skip_if_in_list / skip_if_in_campaign act on their scope; lists count incomplete leads."""
    list_id = sim.create_list("Imports")
    listed = call(
        sim,
        "POST",
        "/leads/add",
        {"list_id": list_id, "leads": [{"email": "listed@example.com"}, {"phone": "+100"}, {"first_name": "Only"}]},
    ).json()
    assert (listed["leads_uploaded"], listed["incomplete_count"], listed["remaining_in_plan"]) == (2, 1, None)
    assert sim.find_leads("listed@example.com")[0]["status"] == 0
    lead = {"email": "listed@example.com"}
    in_campaign_only = {"campaign_id": campaign_id, "skip_if_in_campaign": True, "leads": [lead]}
    assert call(sim, "POST", "/leads/add", in_campaign_only).json()["leads_uploaded"] == 1
    other = sim.create_campaign("B")
    in_list = {"campaign_id": other, "skip_if_in_list": True, "leads": [lead]}
    assert call(sim, "POST", "/leads/add", in_list).json()["skipped_count"] == 1


def test_plan_limit_stops_uploads() -> None:
    """remaining_in_plan counts down; leads over the limit are not uploaded."""
    with make_sim(plan_lead_limit=3) as sim:
        cid = sim.create_campaign("SMB")
        answer = call(sim, "POST", "/leads/add", {"campaign_id": cid, "leads": people(5)}).json()
        assert (answer["leads_uploaded"], answer["remaining_in_plan"]) == (3, 0)
        assert [c["index"] for c in answer["created_leads"]] == [0, 1, 2]


@pytest.mark.parametrize("fate", FATES)
def test_each_fate_ends_in_its_state_and_is_found_by_its_filter(fate: Any) -> None:
    """After the sequence, each fate shows its status/reply/interest fields and its list filter finds it."""
    with make_sim(rates=SequenceRates.only(fate), sequence_days=9) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, people(20))
        sim.advance(12)
        leads = sim.leads(cid)
        with make_client(sim) as client:
            found = {f: {x["id"] for x in client.iter_leads(campaign=cid, filter=f)} for f in LeadFilter}
    everyone = {lead["id"] for lead in leads}
    statuses = {lead["status"] for lead in leads}
    for lead in leads:
        assert lead["timestamp_updated"] > lead["timestamp_created"]
        assert ISO_MS.match(lead["timestamp_updated"])
    if fate == "completed":
        assert statuses == {3} and all(lead["email_reply_count"] == 0 for lead in leads)
        assert found[LeadFilter.COMPLETED] == found[LeadFilter.COMPLETED_NO_REPLY] == everyone
        assert all(lead["status_summary"]["lastStep"]["stepID"] == "0_3_0" for lead in leads)
    elif fate == "replied":
        assert statuses == {3}
        assert all(lead["email_reply_count"] == 1 and "timestamp_last_reply" in lead for lead in leads)
        assert all(lead.get("lt_interest_status") != 0 for lead in leads)
        assert found[LeadFilter.REPLIED] == found[LeadFilter.COMPLETED] == everyone
        assert found[LeadFilter.OUT_OF_OFFICE] == set()
    elif fate == "out_of_office":
        assert statuses == {3}
        assert all(lead["email_reply_count"] == 1 and lead["lt_interest_status"] == 0 for lead in leads)
        assert found[LeadFilter.OUT_OF_OFFICE] == found[LeadFilter.REPLIED] == found[LeadFilter.COMPLETED] == everyone
    elif fate == "bounced":
        assert statuses == {-1} and found[LeadFilter.BOUNCED] == everyone
    elif fate == "unsubscribed":
        assert statuses == {-2} and found[LeadFilter.UNSUBSCRIBED] == everyone
    elif fate == "skipped":
        assert statuses == {-3} and found[LeadFilter.SKIPPED] == everyone
    else:
        assert statuses == {1} and found[LeadFilter.ACTIVE] == everyone
        assert all("timestamp_last_contact" in lead for lead in leads)
    for lead in leads:
        assert sim.lead_fate(lead["id"]) == fate


def test_out_of_office_keeps_the_sequence_running_until_its_end() -> None:
    """Mid-sequence, an out-of-office lead has its auto-reply counted but is still active."""
    with make_sim(rates=SequenceRates.only("out_of_office"), sequence_days=9, steps=4) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, people(10))
        sim.advance(7.5)  # auto-replies come after one of the first three sends (day <= 7.2)
        middle = sim.leads(cid)
        assert all(lead["status"] == 1 and lead["email_reply_count"] == 1 for lead in middle)
        assert all(lead["lt_interest_status"] == 0 for lead in middle)
        sim.advance(3)
        assert {lead["status"] for lead in sim.leads(cid)} == {3}


def test_paused_campaigns_do_not_progress(sim: InstantlySimulator) -> None:
    """Leads of a paused campaign are accepted but nothing happens to them until it is activated."""
    cid = sim.create_campaign("SMB", status=2)
    sim.insert_leads(cid, people(5))
    sim.advance(30)
    assert all(lead["status"] == 1 and "timestamp_last_contact" not in lead for lead in sim.leads(cid))
    sim.set_campaign_status(cid, 1)
    sim.advance(30)
    assert all("timestamp_last_contact" in lead for lead in sim.leads(cid))


def test_lifecycle_is_deterministic_per_seed() -> None:
    """The same seed and the same calls give identical leads; another seed gives other fates."""

    def run(seed: int) -> list[dict[str, Any]]:
        with make_sim(seed=seed) as sim:
            cid = sim.create_campaign("SMB", campaign_id="c-1")
            with make_client(sim) as client:
                client.add_leads(cid, people(300))
            sim.advance(5)
            sim.advance(10)
            return sim.leads(cid)

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert [lead["status"] for lead in first] != [lead["status"] for lead in other]
    assert len({lead["status"] for lead in first}) >= 4


def test_finish_lead_forces_an_end_state(sim: InstantlySimulator, campaign_id: str) -> None:
    """finish_lead brings one lead to a chosen end at the current time, for scripted scenarios."""
    ids = [c["id"] for c in sim.insert_leads(campaign_id, people(3))["created_leads"]]
    sim.advance(0.5)
    sim.finish_lead(ids[0], "replied", interest=None)
    sim.finish_lead(ids[1], "unsubscribed")
    sim.finish_lead(ids[2], "out_of_office")
    a, b, c = (sim.lead(i) for i in ids)
    assert a is not None and b is not None and c is not None
    assert (a["status"], a["email_reply_count"], "lt_interest_status" in a) == (3, 1, False)
    assert b["status"] == -2
    assert (c["status"], c["lt_interest_status"]) == (3, 0)
    assert a["timestamp_updated"] == "2026-01-05T21:00:00.000Z"


def test_analytics_agree_with_the_leads(sim: InstantlySimulator, campaign_id: str) -> None:
    """leads_count is current; bounced/unsubscribed/completed counts follow the lifecycle."""
    sim.insert_leads(campaign_id, people(200))
    sim.advance(20)
    leads = sim.leads(campaign_id)
    (row,) = call(sim, "GET", "/campaigns/analytics", params={"ids": campaign_id}).json()
    assert row["campaign_id"] == campaign_id and row["leads_count"] == 200
    assert row["bounced_count"] == sum(lead["status"] == -1 for lead in leads)
    assert row["unsubscribed_count"] == sum(lead["status"] == -2 for lead in leads)
    assert row["completed_count"] == sum(lead["status"] == 3 for lead in leads)
    assert row["contacted_count"] == sum("timestamp_last_contact" in lead for lead in leads)
    everything = call(sim, "GET", "/campaigns/analytics").json()
    assert isinstance(everything, list) and len(everything) == 1


def test_bulk_delete_without_ids_wipes_the_campaign(sim: InstantlySimulator, campaign_id: str) -> None:
    """Faithful to the real service (and why the client refuses it): no ids deletes every lead."""
    other = sim.create_campaign("B")
    sim.insert_leads(campaign_id, people(4))
    sim.insert_leads(other, people(2, start=50))
    assert call(sim, "DELETE", "/leads", {"campaign_id": campaign_id}).json() == {"count": 4}
    assert sim.lead_count(campaign_id) == 0 and sim.lead_count(other) == 2


def test_delete_one_lead_returns_it_then_404(sim: InstantlySimulator, campaign_id: str) -> None:
    """DELETE /leads/{id} answers the deleted lead; a second delete is a 404."""
    lead_id = sim.insert_leads(campaign_id, people(1))["created_leads"][0]["id"]
    first = call(sim, "DELETE", f"/leads/{lead_id}")
    assert first.status_code == 200 and first.json()["id"] == lead_id
    second = call(sim, "DELETE", f"/leads/{lead_id}")
    assert second.status_code == 404 and second.json()["error"] == "Not Found"
    assert sim.find_leads("person0@example.com") == []


def test_block_list_endpoints(sim: InstantlySimulator) -> None:
    """bulk-create counts valid and invalid values; entries page with a cursor; domains are flagged."""
    answer = call(
        sim, "POST", "/block-lists-entries/bulk-create", {"bl_values": ["a@example.com", "spam.example.com", "??"]}
    ).json()
    assert (answer["valid_count"], answer["invalid_count"]) == (2, 1)
    assert [e["is_domain"] for e in answer["items"]] == [False, True]
    page = call(sim, "GET", "/block-lists-entries", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_starting_after"] == page["items"][0]["id"]
    assert sorted(sim.blocklist) == ["a@example.com", "spam.example.com"]


ENTRY_KEYS = {"id", "timestamp_created", "organization_id", "bl_value", "is_domain"}


def test_block_list_bulk_create_follows_the_spec_shape(sim: InstantlySimulator) -> None:
    """Each created entry has exactly the spec's five fields; the answer validates against the trimmed spec."""
    body = {"bl_values": ["A@Example.com ", "spam.example.com", "not valid"]}
    answer = call(sim, "POST", "/block-lists-entries/bulk-create", body)
    assert answer.status_code == 200
    payload = answer.json()
    assert set(payload) == {"items", "valid_count", "invalid_count"}
    assert (payload["valid_count"], payload["invalid_count"]) == (2, 1)
    assert [set(item) for item in payload["items"]] == [ENTRY_KEYS, ENTRY_KEYS]
    assert [(i["bl_value"], i["is_domain"]) for i in payload["items"]] == [
        ("a@example.com", False),
        ("spam.example.com", True),
    ]
    assert {i["organization_id"] for i in payload["items"]} == {sim.organization_id}
    assert {i["timestamp_created"] for i in payload["items"]} == {"2026-01-05T09:00:00.000Z"}
    assert all(UUID_V7.match(i["id"]) for i in payload["items"])
    assert contract.request_errors("POST", "/block-lists-entries/bulk-create", body=body) == []
    assert contract.response_errors("POST", "/block-lists-entries/bulk-create", 200, payload) == []
    again = call(sim, "POST", "/block-lists-entries/bulk-create", {"bl_values": ["a@example.com"]}).json()
    assert again["items"] == [payload["items"][0]] and len(sim.blocklist) == 2


@pytest.mark.parametrize(
    "body",
    [{"bl_values": []}, {"bl_values": [f"x{i}@example.com" for i in range(1001)]}, {"bl_values": [1]}, {}, None],
)
def test_block_list_bulk_create_takes_1_to_1000_strings(sim: InstantlySimulator, body: Any) -> None:
    """0 values, 1,001 values, a non-string value or no bl_values is a 400 that blocks nothing."""
    answer = call(sim, "POST", "/block-lists-entries/bulk-create", body)
    assert answer.status_code == 400 and answer.json()["error"] == "Bad Request"
    assert sim.blocklist == []
    assert contract.response_errors("POST", "/block-lists-entries/bulk-create", 400, answer.json()) == []


def test_block_list_bulk_create_takes_exactly_1000_values(sim: InstantlySimulator) -> None:
    """1,000 values (the maximum) are accepted: 1,000 entries, all counted valid."""
    answer = call(
        sim, "POST", "/block-lists-entries/bulk-create", {"bl_values": [f"x{i}@example.com" for i in range(1000)]}
    ).json()
    assert (len(answer["items"]), answer["valid_count"], answer["invalid_count"]) == (1000, 1000, 0)


def test_block_list_ids_are_time_ordered_so_starting_after_returns_only_newer(sim: InstantlySimulator) -> None:
    """Ids sort in creation order across clock moves; starting_after = last id seen lists only later entries."""
    sim.add_to_blocklist("a@example.com")
    sim.add_to_blocklist("b.example.com")
    sim.advance(2)
    sim.add_to_blocklist("c@example.com")
    sim.add_to_blocklist("a.example.com")
    entries = sim.blocklist_entries()
    assert [e["bl_value"] for e in entries] == ["a@example.com", "b.example.com", "c@example.com", "a.example.com"]
    assert [e["timestamp_created"][:10] for e in entries] == ["2026-01-05"] * 2 + ["2026-01-07"] * 2
    first = call(sim, "GET", "/block-lists-entries", params={"limit": 100}).json()
    assert [e["id"] for e in first["items"]] == [e["id"] for e in entries]
    after = call(sim, "GET", "/block-lists-entries", params={"starting_after": entries[1]["id"], "limit": 100}).json()
    assert after == {"items": entries[2:], "next_starting_after": entries[3]["id"]}
    end = call(sim, "GET", "/block-lists-entries", params={"starting_after": entries[3]["id"]}).json()
    assert end == {"items": []}
    for page in (first, after, end):
        assert contract.response_errors("GET", "/block-lists-entries", 200, page) == []


def test_block_list_listing_filters_domains(sim: InstantlySimulator) -> None:
    """domains_only=true lists domains only, false lists all, any other value is a 400."""
    sim.add_to_blocklist("a@example.com")
    sim.add_to_blocklist("spam.example.com")
    domains = call(sim, "GET", "/block-lists-entries", params={"domains_only": "true"}).json()
    assert [e["bl_value"] for e in domains["items"]] == ["spam.example.com"]
    every = call(sim, "GET", "/block-lists-entries", params={"domains_only": "false"}).json()
    assert [e["bl_value"] for e in every["items"]] == ["a@example.com", "spam.example.com"]
    assert call(sim, "GET", "/block-lists-entries", params={"domains_only": "yes"}).status_code == 400


def test_workspace_current_follows_the_spec_and_the_setting(sim: InstantlySimulator) -> None:
    """GET /workspaces/current is a spec Workspace whose add_unsub_to_block is True, then False, then absent."""
    seen = []
    for setting in (True, False, None):
        if setting is not True:
            sim.set_add_unsub_to_block(setting)
        answer = call(sim, "GET", "/workspaces/current")
        assert answer.status_code == 200
        workspace = answer.json()
        assert contract.response_errors("GET", "/workspaces/current", 200, workspace) == []
        assert workspace == sim.workspace()
        seen.append(workspace.get("add_unsub_to_block", "absent"))
        assert set(workspace) - {"add_unsub_to_block"} == {
            "id",
            "timestamp_created",
            "timestamp_updated",
            "owner",
            "name",
            "plan_id",
        }
        assert workspace["id"] == sim.organization_id
    assert seen == [True, False, "absent"]
    assert call(sim, "GET", "/workspaces/current", key="nope").status_code == 401
    with pytest.raises(ValueError):
        sim.set_add_unsub_to_block("yes")  # type: ignore[arg-type]


def test_workspace_setting_survives_save_and_load(tmp_path: Path) -> None:
    """add_unsub_to_block and the workspace timestamps are kept by save_state/load_state."""
    state_file = tmp_path / "sim.json"
    original = make_sim()
    original.advance(1)
    original.set_add_unsub_to_block(False)
    original.save_state(state_file)
    restored = InstantlySimulator.load_state(state_file, api_key=KEY)
    assert restored is not None
    assert restored.workspace() == original.workspace()
    assert restored.workspace()["add_unsub_to_block"] is False


def test_error_rate_is_seeded_and_repeatable() -> None:
    """A random error rate fails the same requests on every run with the same seed."""

    def pattern() -> list[int]:
        with make_sim(seed=11) as sim:
            sim.set_fault("GET /campaigns", FaultSpec(error_rate=0.3, error_status=502))
            return [call(sim, "GET", "/campaigns").status_code for _ in range(30)]

    first = pattern()
    assert first == pattern()
    assert 3 <= first.count(502) <= 20


def test_latency_and_cdn_pages(sim: InstantlySimulator) -> None:
    """Latency delays answers; html errors come as text/html pages; matching is per endpoint."""
    sim.set_fault("GET /campaigns", FaultSpec(latency=0.2, statuses=[502], html=True))
    started = time.monotonic()
    answer = call(sim, "GET", "/campaigns")
    assert time.monotonic() - started >= 0.2
    assert answer.status_code == 502 and answer.headers["Content-Type"] == "text/html"
    assert "<html>" in answer.text
    assert call(sim, "POST", "/leads/list", {}).status_code == 200


def test_request_log_keeps_no_key_and_records_faults(sim: InstantlySimulator) -> None:
    """The request log says whether auth was right but never stores the key itself."""
    sim.set_fault("/leads/*", FaultSpec(statuses=[503]))
    call(sim, "POST", "/leads/list", {"limit": 5})
    call(sim, "POST", "/leads/list", {"limit": 5})
    assert [(r.status, r.fault) for r in sim.request_log] == [(503, "status 503"), (200, None)]
    assert KEY not in repr(sim.request_log)
    assert sim.counters["POST /leads/list"] == 2


def test_handles_a_24000_lead_inventory_quickly(clock: FakeClock) -> None:
    """24,000 leads: seeding, a 1,000-lead add, a full listing and email look-ups stay fast."""
    with make_sim(log_bodies=False) as sim:
        cids = [sim.create_campaign("SMB"), sim.create_campaign("Midsize")]
        started = time.monotonic()
        for n, cid in enumerate(cids):
            sim.insert_leads(cid, people(11_500, start=n * 11_500))
        with make_client(sim, clock) as client:
            result = client.add_leads(cids[0], people(1000, start=23_000))
            assert result.counts() == {"created": 1000}
            sim.advance(3)
            listing = client.iter_leads(campaign=cids[0])
            assert sum(1 for _ in listing) == 12_500 and listing.complete
            found = client.find_leads_by_email([f"person{i}@example.com" for i in range(0, 24_000, 240)])
            assert len(found) == 100
            bounced = client.iter_leads(campaign=cids[1], filter=LeadFilter.BOUNCED).to_list()
            assert all(lead["status"] == -1 for lead in bounced)
        elapsed = time.monotonic() - started
    assert sim.lead_count() == 24_000
    assert elapsed < 20, elapsed


def test_command_line_prints_url_campaigns_and_key() -> None:
    """`python -m coldsync.instantly.simulator` serves and prints its base URL, campaign ids and key."""
    process = subprocess.Popen(
        [sys.executable, "-m", "coldsync.instantly.simulator", "--port", "0", "--campaign", "SMB", "--campaign", "Mid"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        info = json.loads("".join(lines))
        assert set(info["campaigns"]) == {"SMB", "Mid"} and info["api_key"] == "sim-key"
        with InstantlyClient("sim-key", base_url=info["base_url"]) as client:
            assert client.get_campaign(info["campaigns"]["SMB"]).name == "SMB"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_state_survives_save_and_load(tmp_path: Path) -> None:
    """A saved and reloaded workspace continues exactly as the original would; a missing file loads as None."""
    state_file = tmp_path / "sim.json"
    with make_sim(seed=5) as original:
        cid = original.create_campaign("SMB")
        original.insert_leads(cid, people(50))
        original.add_to_blocklist("blocked@example.com")
        original.advance(3)
        original.save_state(state_file)
        restored = InstantlySimulator.load_state(state_file, api_key=KEY)
        assert restored is not None
        original.advance(10)
    restored.advance(10)
    assert restored.leads(cid) == original.leads(cid)
    assert restored.blocklist == ["blocked@example.com"] and restored.now == original.now
    with restored, make_client(restored) as client:
        assert client.add_leads(cid, people(2, start=100)).counts() == {"created": 2}
    assert InstantlySimulator.load_state(tmp_path / "missing.json") is None


# --------------------------------------------------------------------------------------------------
# Outcome policies (#13): interest statuses, custom labels, subsequences, moves as background jobs


def prospects(count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` synthetic leads rep{start}@acme.example ..."""
    return [{"email": f"rep{i}@acme.example", "first_name": "Sam"} for i in range(start, start + count)]


def checked(sim: InstantlySimulator, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
    """A raw request whose request and answer must both conform to the trimmed contract."""
    query = {k: [str(v)] for k, v in kw.get("params", {}).items()}
    assert contract.request_errors(method, path, body=body, query=query) == []
    answer = call(sim, method, path, body, **kw)
    assert contract.response_errors(method, path, answer.status_code, answer.json()) == []
    return answer


def ids_of(sim: InstantlySimulator, body: dict[str, Any]) -> list[str]:
    """The emails `POST /leads/list` returns for this body (one page of 100)."""
    answer = checked(sim, "POST", "/leads/list", {"limit": 100, **body})
    assert answer.status_code == 200, answer.text
    return [lead["email"] for lead in answer.json()["items"]]


def test_a_rep_sets_every_interest_status_of_the_spec_also_after_the_sequence_ended() -> None:
    """Each lt_interest_status of the spec, set on a finished lead, reads back exactly; None resets it."""
    with make_sim(rates=SequenceRates.only("completed")) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(1))
        sim.advance(30)
        (lead,) = sim.leads(cid)
        assert lead["status"] == 3 and "lt_interest_status" not in lead
        seen = []
        for value in (1, 2, 3, 4, 0, -1, -2, -3, -4):
            sim.set_interest_status(lead["id"], value)
            got = checked(sim, "GET", f"/leads/{lead['id']}").json()
            seen.append((got["lt_interest_status"], got["status"]))
        assert seen == [(v, 3) for v in (1, 2, 3, 4, 0, -1, -2, -3, -4)]
        sim.set_interest_status(lead["id"], None)
        reset = sim.lead(lead["id"])
        assert reset is not None and "lt_interest_status" not in reset and reset["status"] == 3
        with pytest.raises(ValueError):
            sim.set_interest_status(lead["id"], 5)  # no custom label has that value
        with pytest.raises(KeyError):
            sim.set_interest_status("no-such-lead", 1)


def test_update_interest_status_endpoint_sets_the_value_by_email_as_recorded() -> None:
    """POST /leads/update-interest-status answers the recorded 200 message and sets the status; a bad email is a 400."""
    with make_sim(rates=SequenceRates.only("stays_active")) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(2))
        answer = checked(
            sim, "POST", "/leads/update-interest-status", {"lead_email": "REP1@acme.example", "interest_value": 2}
        )
        assert (answer.status_code, answer.json()) == (
            200,
            {"message": "Lead interest status update background job submitted"},
        )
        assert [lead.get("lt_interest_status") for lead in sim.leads(cid)] == [None, 2]
        label = sim.create_lead_label("Warm later", "positive")
        checked(
            sim,
            "POST",
            "/leads/update-interest-status",
            {"lead_email": "rep0@acme.example", "interest_value": label["interest_status"]},
        )
        checked(
            sim, "POST", "/leads/update-interest-status", {"lead_email": "rep1@acme.example", "interest_value": None}
        )
        assert [lead.get("lt_interest_status") for lead in sim.leads(cid)] == [5, None]
        bad = call(sim, "POST", "/leads/update-interest-status", {"lead_email": "not-an-email", "interest_value": 1})
        assert bad.status_code == 400
        unknown = call(
            sim, "POST", "/leads/update-interest-status", {"lead_email": "rep0@acme.example", "interest_value": 77}
        )
        assert unknown.status_code == 400


def test_interest_filters_list_exactly_the_leads_with_their_status() -> None:
    """Each FILTER_LEAD_* lists exactly the lead with its status (CLOSED = Won); custom labels go by sentiment."""
    with make_sim(rates=SequenceRates.only("stays_active")) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(13))
        positive = sim.create_lead_label("Hot lead", "positive")
        negative = sim.create_lead_label("Competitor", "negative")
        neutral = sim.create_lead_label("Later", "neutral")
        assert (positive["interest_status"], negative["interest_status"], neutral["interest_status"]) == (5, -5, 6)
        values = [1, 2, 3, 4, 0, -1, -2, -3, -4, 5, -5, 6, None]  # rep12 is left a plain "Lead"
        for lead, value in zip(sim.leads(cid), values, strict=True):
            sim.set_interest_status(lead["id"], value)
        listed = {
            name: ids_of(sim, {"campaign": cid, "filter": name})
            for name in (
                "FILTER_LEAD_INTERESTED",
                "FILTER_LEAD_MEETING_BOOKED",
                "FILTER_LEAD_MEETING_COMPLETED",
                "FILTER_LEAD_CLOSED",
                "FILTER_LEAD_OUT_OF_OFFICE",
                "FILTER_LEAD_NOT_INTERESTED",
                "FILTER_LEAD_WRONG_PERSON",
                "FILTER_LEAD_LOST",
                "FILTER_LEAD_NO_SHOW",
                "FILTER_LEAD_CUSTOM_LABEL_POSITIVE",
                "FILTER_LEAD_CUSTOM_LABEL_NEGATIVE",
            )
        }
        assert listed == {
            "FILTER_LEAD_INTERESTED": ["rep0@acme.example"],
            "FILTER_LEAD_MEETING_BOOKED": ["rep1@acme.example"],
            "FILTER_LEAD_MEETING_COMPLETED": ["rep2@acme.example"],
            "FILTER_LEAD_CLOSED": ["rep3@acme.example"],
            "FILTER_LEAD_OUT_OF_OFFICE": ["rep4@acme.example"],
            "FILTER_LEAD_NOT_INTERESTED": ["rep5@acme.example"],
            "FILTER_LEAD_WRONG_PERSON": ["rep6@acme.example"],
            "FILTER_LEAD_LOST": ["rep7@acme.example"],
            "FILTER_LEAD_NO_SHOW": ["rep8@acme.example"],
            "FILTER_LEAD_CUSTOM_LABEL_POSITIVE": ["rep9@acme.example"],
            "FILTER_LEAD_CUSTOM_LABEL_NEGATIVE": ["rep10@acme.example"],
        }
        assert ids_of(sim, {"campaign": cid, "interest_status": 6}) == ["rep11@acme.example"]
        assert ids_of(sim, {"campaign": cid, "filter": "FILTER_VAL_IN_SUBSEQUENCE"}) == []


def test_seeded_reps_move_replied_leads_on_only_when_asked() -> None:
    """With reps set, replied leads go 2 -> 3 -> 4 a day apart, also in a paused campaign; without, none moves."""
    reps = RepBehaviour(first={2: 1.0}, then={2: {3: 1.0}, 3: {4: 1.0}}, delay_days=(1.0, 1.0))
    finals = {}
    for setting in (reps, None):
        with make_sim(rates=SequenceRates.only("replied"), sequence_days=2, steps=2, reps=setting) as sim:
            cid = sim.create_campaign("SMB")
            sim.insert_leads(cid, prospects(6))
            histories: dict[str, list[int | None]] = {}
            for step in range(48):  # 12 days, watched every 6 hours; paused after day 4 (all replied by then)
                sim.advance(0.25)
                if step == 15:
                    assert all(lead["email_reply_count"] == 1 for lead in sim.leads(cid))
                    sim.set_campaign_status(cid, 2)
                for lead in sim.leads(cid):
                    seen = histories.setdefault(lead["id"], [None])
                    if lead.get("lt_interest_status") != seen[-1]:
                        seen.append(lead.get("lt_interest_status"))
            finals[setting is not None] = (histories, sim.leads(cid))
    histories, leads = finals[True]
    assert all(history[-3:] == [2, 3, 4] for history in histories.values())
    assert [(lead["status"], lead["lt_interest_status"]) for lead in leads] == [(3, 4)] * 6
    for lead in leads:  # the third status change, three days after the reply
        reply = datetime.fromisoformat(lead["timestamp_last_reply"])
        changed = datetime.fromisoformat(lead["timestamp_last_interest_change"])
        assert changed - reply == timedelta(days=3)
    assert any(datetime.fromisoformat(lead["timestamp_last_interest_change"]).day > 9 for lead in leads)  # paused
    plain_histories, plain_leads = finals[False]
    assert all(len(history) <= 2 for history in plain_histories.values())  # only the reply's own value, if any
    assert [lead["status"] for lead in plain_leads] == [3] * 6


def test_default_reps_are_seeded() -> None:
    """Two simulators with the same seed and the default reps end with the same interest statuses."""
    finals = []
    for _ in range(2):
        with make_sim(seed=11, rates=SequenceRates.only("replied"), reps=RepBehaviour()) as sim:
            cid = sim.create_campaign("SMB")
            sim.insert_leads(cid, prospects(40))
            sim.advance(40)
            finals.append([lead.get("lt_interest_status") for lead in sim.leads(cid)])
    assert finals[0] == finals[1]
    assert {4, -3} & set(finals[0])  # some went all the way to Won or Lost


def test_a_subsequence_picks_leads_up_and_lets_them_go_with_the_documented_statuses() -> None:
    """In a subsequence: subsequence_id set, listed by FILTER_VAL_IN_SUBSEQUENCE, status unchanged (3 stays 3,
    1 stays 1); after it: subsequence_id omitted, status 3 for both; removal by API lets go at once."""
    with make_sim(rates=SequenceRates.only("stays_active")) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(3))
        sub = sim.create_subsequence(cid, "Booked follow-up", crm_status=[2], days=3)
        done, active, removed = (lead["id"] for lead in sim.leads(cid))
        sim.advance(1)
        sim.finish_lead(done, "completed")
        sim.set_interest_status(done, 2)  # a rep books a meeting: the subsequence's condition
        moved = checked(sim, "POST", "/leads/subsequence/move", {"id": active, "subsequence_id": sub}).json()
        checked(sim, "POST", "/leads/subsequence/move", {"id": removed, "subsequence_id": sub})
        assert (moved["subsequence_id"], moved["status"]) == (sub, 1)
        inside = {lead["email"]: (lead["status"], lead.get("subsequence_id")) for lead in sim.leads(cid)}
        assert inside == {"rep0@acme.example": (3, sub), "rep1@acme.example": (1, sub), "rep2@acme.example": (1, sub)}
        assert ids_of(sim, {"campaign": cid, "filter": "FILTER_VAL_IN_SUBSEQUENCE"}) == [
            "rep0@acme.example",
            "rep1@acme.example",
            "rep2@acme.example",
        ]
        out = checked(sim, "POST", "/leads/subsequence/remove", {"id": removed}).json()
        assert (out["status"], "subsequence_id" in out) == (3, False)
        sim.advance(2.9)
        assert ids_of(sim, {"campaign": cid, "filter": "FILTER_VAL_IN_SUBSEQUENCE"}) == [
            "rep0@acme.example",
            "rep1@acme.example",
        ]
        sim.advance(0.2)
        after = {lead["email"]: (lead["status"], lead.get("subsequence_id")) for lead in sim.leads(cid)}
        assert after == {"rep0@acme.example": (3, None), "rep1@acme.example": (3, None), "rep2@acme.example": (3, None)}
        assert ids_of(sim, {"campaign": cid, "filter": "FILTER_VAL_IN_SUBSEQUENCE"}) == []
        assert call(sim, "POST", "/leads/subsequence/move", {"id": active, "subsequence_id": "nope"}).status_code == 404


def test_move_to_a_list_is_a_background_job_that_takes_effect_when_done() -> None:
    """POST /leads/move answers a pending job; polls read in-progress then success; only then the leads are
    list leads (status 0, list_id, no campaign) and the job counts them, in the recorded shape."""
    with make_sim(rates=SequenceRates.only("stays_active")) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(3))
        created = checked(sim, "POST", "/lead-lists", {"name": "Handed to sales"})
        list_id = created.json()["id"]
        assert (created.status_code, created.json()["name"]) == (200, "Handed to sales")
        first, second, third = (lead["id"] for lead in sim.leads(cid))
        body = {"campaign": cid, "ids": [first, second], "to_list_id": list_id}
        job = checked(sim, "POST", "/leads/move", body).json()
        assert re.fullmatch(r"[0-9a-f]{24}", job["id"])
        assert list(job) == [
            "id", "workspace_id", "type", "progress", "status", "created_at", "updated_at", "user_id",
            "entity_id", "entity_type", "data",
        ]  # fmt: skip
        assert (job["type"], job["entity_type"], job["entity_id"], job["data"]) == (
            "move-leads",
            "campaign",
            cid,
            {"filters": body},
        )
        states = [(job["status"], job["progress"], sim.lead_count(cid))]
        for _ in range(2):
            polled = checked(sim, "GET", f"/background-jobs/{job['id']}").json()
            states.append((polled["status"], polled["progress"], sim.lead_count(cid)))
        assert states == [("pending", 0, 3), ("in-progress", 50, 3), ("success", 100, 1)]
        assert polled["data"] == {
            "moved_lead_emails": ["rep0@acme.example", "rep1@acme.example"],
            "filters": body,
            "total_leads": 2,
            "moved_leads": 2,
            "duplicated_leads": 0,
            "leads_missing_email": None,
            "leads_in_other_campaigns": 0,
            "ignored_leads_from_blocklist": 0,
        }
        placed = [(lead["id"], lead["status"], lead.get("list_id"), lead.get("campaign")) for lead in sim.leads()]
        assert placed == [(first, 0, list_id, None), (second, 0, list_id, None), (third, 1, None, cid)]
        assert ids_of(sim, {"list_id": list_id}) == ["rep0@acme.example", "rep1@acme.example"]
        assert ids_of(sim, {"campaign": cid}) == ["rep2@acme.example"]
        assert ids_of(sim, {"in_campaign": False}) == ["rep0@acme.example", "rep1@acme.example"]
        again = checked(sim, "GET", f"/background-jobs/{job['id']}", params={"data_fields": "moved_leads"}).json()
        assert (again["status"], again["data"]) == ("success", {"moved_leads": 2})
        sim.advance(30)
        assert [lead["status"] for lead in sim.leads()][:2] == [0, 0]  # no campaign: nothing is sent


def test_move_to_a_campaign_completes_after_simulated_time_even_unpolled() -> None:
    """With a 1-day job, the move happens when the clock passes it (not before): the list leads start the
    campaign's sequence (status 1, campaign set, no list_id); a later poll reads success."""
    with make_sim(rates=SequenceRates.only("completed"), job_polls=None, job_days=1.0) as sim:
        target = sim.create_campaign("Re-engage")
        list_id = sim.create_list("Parked")
        added = call(sim, "POST", "/leads/add", {"list_id": list_id, "leads": prospects(2)})
        assert added.json()["leads_uploaded"] == 2
        job = checked(sim, "POST", "/leads/move", {"list_id": list_id, "to_campaign_id": target}).json()
        assert (job["entity_type"], job["entity_id"]) == ("list", list_id)
        states = [job["status"], checked(sim, "GET", f"/background-jobs/{job['id']}").json()["status"]]
        sim.advance(0.9)
        states.append(checked(sim, "GET", f"/background-jobs/{job['id']}").json()["status"])
        assert sim.lead_count(target) == 0
        sim.advance(0.2)
        assert sim.lead_count(target) == 2  # done on the clock, before anyone polls
        states.append(checked(sim, "GET", f"/background-jobs/{job['id']}").json()["status"])
        assert states == ["pending", "in-progress", "in-progress", "success"]
        assert [(lead["status"], lead.get("campaign"), lead.get("list_id")) for lead in sim.leads()] == [
            (1, target, None)
        ] * 2
        sim.advance(20)
        assert [lead["status"] for lead in sim.leads(target)] == [3, 3]  # they ran the campaign's sequence


def test_a_failing_move_job_moves_nothing_and_the_next_one_works() -> None:
    """fail_next_jobs(1): the job reads pending, in-progress, failed and no lead moves; the next job succeeds."""
    with make_sim(rates=SequenceRates.only("stays_active")) as sim:
        cid, other = sim.create_campaign("SMB"), sim.create_campaign("Mid")
        sim.insert_leads(cid, prospects(2))
        sim.fail_next_jobs(1)
        body = {"campaign": cid, "to_campaign_id": other}
        failing = checked(sim, "POST", "/leads/move", body).json()
        states = [failing["status"]]
        states += [checked(sim, "GET", f"/background-jobs/{failing['id']}").json()["status"] for _ in range(3)]
        assert states == ["pending", "in-progress", "failed", "failed"]
        assert (sim.lead_count(cid), sim.lead_count(other)) == (2, 0)
        working = checked(sim, "POST", "/leads/move", body).json()
        states = [checked(sim, "GET", f"/background-jobs/{working['id']}").json()["status"] for _ in range(2)]
        assert states == ["in-progress", "success"]
        assert (sim.lead_count(cid), sim.lead_count(other)) == (0, 2)
        assert [lead["campaign"] for lead in sim.leads()] == [other, other]


def test_move_refuses_what_the_spec_rules_out() -> None:
    """No target, two targets, ids without a source, an unknown target or job: 400 / 404, nothing queued."""
    with make_sim() as sim:
        cid = sim.create_campaign("SMB")
        list_id = sim.create_list("Parked")
        refused = [
            call(sim, "POST", "/leads/move", {"campaign": cid}).status_code,
            call(
                sim, "POST", "/leads/move", {"campaign": cid, "to_list_id": list_id, "to_campaign_id": cid}
            ).status_code,
            call(sim, "POST", "/leads/move", {"ids": ["x"], "to_list_id": list_id}).status_code,
            call(sim, "POST", "/leads/move", {"campaign": cid, "to_list_id": "missing"}).status_code,
            call(sim, "GET", "/background-jobs/000000000000000000000000").status_code,
            call(sim, "POST", "/lead-lists", {"name": "x", "color": "red"}).status_code,
        ]
        assert refused == [400, 400, 400, 404, 404, 400]


def test_outcome_policy_state_survives_save_and_load(tmp_path: Path) -> None:
    """Reps, subsequences, labels, lists and a pending move job continue after a reload exactly as in the original."""
    state_file = tmp_path / "sim.json"
    with make_sim(seed=3, rates=SequenceRates.only("replied"), reps=RepBehaviour(), job_polls=None, job_days=2) as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(20))
        sim.create_subsequence(cid, "Interested follow-up", crm_status=[1], days=4)
        sim.create_lead_label("Hot lead", "positive")
        list_id = call(sim, "POST", "/lead-lists", {"name": "Parked"}).json()["id"]
        sim.advance(3)
        job = call(
            sim, "POST", "/leads/move", {"campaign": cid, "filter": "FILTER_LEAD_NOT_INTERESTED", "to_list_id": list_id}
        )
        sim.save_state(state_file)
        restored = InstantlySimulator.load_state(state_file, api_key=KEY)
        assert restored is not None
        sim.advance(20)
        expected = (sim.leads(), sim.background_job(job.json()["id"]))
    restored.advance(20)
    assert (restored.leads(), restored.background_job(job.json()["id"])) == expected
    assert expected[1]["status"] == "success" and expected[1]["data"]["moved_leads"] >= 1


def test_lead_fields_added_since_a_state_was_written_read_as_their_defaults(tmp_path: Path) -> None:
    """A lead record without `subsequence_id` (a field with a default) loads as a lead in no subsequence."""
    state_file = tmp_path / "sim.json"
    with make_sim() as sim:
        cid = sim.create_campaign("SMB")
        sim.insert_leads(cid, prospects(1))
        sim._leads[next(iter(sim._leads))].subsequence_id = "a-subsequence"
        sim.save_state(state_file)
    document = json.loads(state_file.read_text(encoding="utf-8"))
    (lead,) = document["state"]["leads"].values()
    assert lead.pop("subsequence_id") == "a-subsequence"
    state_file.write_text(json.dumps(document), encoding="utf-8")
    restored = InstantlySimulator.load_state(state_file, api_key=KEY)
    assert restored is not None
    assert [lead.subsequence_id for lead in restored._leads.values()] == [None]
    assert "subsequence_id" not in restored.leads(cid)[0]


# --------------------------------------------------------------------------------------------------
# The saved workspace: JSON, private, refused whole when it is anything else (#15)


def _plain(value: Any) -> Any:
    """A value with every type spelled out (tuple vs list, Counter vs dict, float vs int), for exact comparisons."""
    if isinstance(value, random.Random):
        return ("Random", _plain(value.getstate()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, dict):  # Counter included: its type name is kept
        return (type(value).__name__, [(_plain(k), _plain(v)) for k, v in value.items()])
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(_plain(v) for v in value))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_plain(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    return (type(value).__name__, value)  # str, int, float, bool, None, date


def _workspace_snapshot(sim: InstantlySimulator) -> dict[str, Any]:
    """Every attribute save_state keeps, the configuration and the random generators, as _plain structures."""
    names = (*sim._PERSISTED, *sim._PERSISTED_OPTIONAL, *sim._CONFIG)
    return {**{name: _plain(getattr(sim, name)) for name in names},
            "rngs": [_plain(rng) for rng in (sim._rng, sim._id_rng, sim._fault_rng)]}


def _busy_workspace(sim: InstantlySimulator) -> None:
    """Campaigns with leads mid-sequence, replies and rep events, a subsequence, labels, a list, a block list,
    campaign settings, sending accounts and shapes, a pending move job and jobs set to fail."""
    cid = sim.create_campaign("SMB")
    other = sim.create_campaign("Midsize", status=2)
    sim.insert_leads(cid, prospects(40))
    sim.insert_leads(other, people(5))
    sim.create_subsequence(cid, "Interested follow-up", crm_status=[1, 2], days=4)
    sim.create_lead_label("Hot lead", "positive")
    sim.create_lead_label("Not now", "negative")
    list_id = sim.create_list("Parked")
    sim.add_to_blocklist("blocked@example.com")
    sim.add_to_blocklist("corp.example")
    sim.set_add_unsub_to_block(False)
    sim.set_campaign_settings(cid, stop_on_reply=True, omit=["daily_limit"])
    sim.set_sending_accounts(cid, 3, 2)
    sim.set_sending_status_shape(other, "summary_only")
    sim.advance(3.5)
    sim.set_interest_status(sim.leads(cid)[0]["id"], 1)  # a rep's status: the lead enters the subsequence
    assert call(sim, "POST", "/leads/move", {"campaign": cid, "filter": "FILTER_LEAD_NOT_INTERESTED",
                                             "to_list_id": list_id}).status_code == 200
    sim.fail_next_jobs(2)
    sim.advance(0.25)


def test_state_round_trip_through_json_keeps_every_structure(tmp_path: Path) -> None:
    """save_state then load_state gives the same workspace: every kept attribute, the config and RNGs, types too."""
    state_file = tmp_path / "sim.json"
    with make_sim(seed=3, reps=RepBehaviour(), job_polls=None, job_days=2) as sim:
        _busy_workspace(sim)
        sim.save_state(state_file)
    restored = InstantlySimulator.load_state(state_file, api_key=KEY)
    assert restored is not None
    # not a comparison of empties: the workspace holds each kind of thing
    assert sim._wall_events and sim._jobs and sim._daily and sim._labels and sim._subsequences and sim._list_created
    assert any(lead.events and lead.last_contact for lead in sim._leads.values())
    assert any(lead.interest_changed and lead.subsequence_id for lead in sim._leads.values())
    assert sim._jobs_to_fail == 2
    assert _workspace_snapshot(restored) == _workspace_snapshot(sim)


def test_state_file_is_versioned_json_and_private(tmp_path: Path) -> None:
    """The state file is JSON of the named format and version, mode 0600 under umask 022, with no temporary left."""
    state_file = tmp_path / "sim.json"
    previous = os.umask(0o022)
    try:
        with make_sim() as sim:
            sim.insert_leads(sim.create_campaign("SMB"), prospects(3))
            sim.save_state(state_file)
            state_file.chmod(0o644)  # a second save replaces the file: the new one is private again
            sim.save_state(state_file)
    finally:
        os.umask(previous)
    document = json.loads(state_file.read_text(encoding="utf-8"))
    assert (document["format"], document["version"]) == ("coldsync-simulator-state", 1) == (STATE_FORMAT, 1)
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.json"]


class _Marker:
    """Unpickled, this creates the file `path` (harmless stand-in for a payload that runs code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_state_file_holding_a_code_running_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    """A pickle that runs code when unpickled is refused with the named message; the code never runs."""
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Marker(proof))).close()  # the payload does run when unpickled...
    assert proof.exists()
    marker, state_file = tmp_path / "marker", tmp_path / "sim.json"
    state_file.write_bytes(pickle.dumps({"version": 1, "data": _Marker(marker)}, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(SimulatorStateError) as refused:
        InstantlySimulator.load_state(state_file, api_key=KEY)
    assert not marker.exists()  # ...and load_state never ran it
    assert str(refused.value) == (
        f"simulator state file {state_file} is not JSON (it looks like a pickle, which is never loaded); it was not "
        "loaded. Fix: delete it (the simulator then starts a fresh workspace; for the embedded playground, delete "
        "the DuckDB file too to rebuild both)")


def test_state_file_of_another_version_is_refused_with_the_named_message(tmp_path: Path) -> None:
    """A JSON state of version 2 is refused with one line naming the file, both versions and the fix."""
    state_file = tmp_path / "sim.json"
    with make_sim() as sim:
        sim.save_state(state_file)
    document = json.loads(state_file.read_text(encoding="utf-8"))
    document["version"] = 2
    state_file.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(SimulatorStateError) as refused:
        InstantlySimulator.load_state(state_file, api_key=KEY)
    assert str(refused.value) == (
        f"simulator state file {state_file} is of version 2; this version reads version 1; it was not loaded. "
        "Fix: delete it (the simulator then starts a fresh workspace; for the embedded playground, delete the "
        "DuckDB file too to rebuild both)")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d.update(format="something-else"), 'is not a simulator state (no "format": "coldsync-simulator-state")'),
    (lambda d: d["state"]["leads"][next(iter(d["state"]["leads"]))].update(status="1"),
     "has a wrong shape: state.leads.{lead}.status must be an integer, not str"),
    (lambda d: d["state"]["leads"][next(iter(d["state"]["leads"]))].update(__class__="os.system"),
     "has a wrong shape: state.leads.{lead} has an unknown field '__class__'"),
    (lambda d: d["state"].pop("campaigns"), "has a wrong shape: state.campaigns is missing"),
    (lambda d: d["state"].update(now="yesterday"),
     "has a wrong shape: state.now must be an ISO 8601 time, not 'yesterday'"),
    (lambda d: d["rngs"].update(ids=[3, [1, 2], None]),
     "has a wrong shape: rngs.ids is not a random generator state (state vector is the wrong size)"),
    (lambda d: d["config"].update(steps=0), "has a wrong shape: config: steps must be >= 1 and sequence_days >= 0"),
])
def test_state_file_of_a_wrong_shape_is_refused_naming_where(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    """A state document with a wrong format, type, unknown or missing member is refused naming the place."""
    state_file = tmp_path / "sim.json"
    with make_sim() as sim:
        sim.insert_leads(sim.create_campaign("SMB"), prospects(1))
        sim.save_state(state_file)
    document = json.loads(state_file.read_text(encoding="utf-8"))
    change(document)
    state_file.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(SimulatorStateError) as refused:
        InstantlySimulator.load_state(state_file, api_key=KEY)
    assert refused.value.reason == reason.format(lead=next(iter(sim._leads)))
