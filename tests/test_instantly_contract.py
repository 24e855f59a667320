"""The client and the simulator held to Instantly's OpenAPI contract and to recorded real responses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.instantly import contract
from coldsync.instantly.client import ALLOWED_OPERATIONS, LeadFilter
from coldsync.instantly.errors import InstantlyError
from coldsync.instantly.simulator import FaultSpec, RequestRecord, SequenceRates
from tests.instantly_fixtures import (  # noqa: F401 - fixtures are used by name
    KEY,
    FakeClock,
    clock_fixture,
    make_client,
    make_sim,
    people,
    recorded,
)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REPO = Path(__file__).resolve().parents[1]


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class Shape:
    """Keys always present and JSON types seen per key, learned from recorded real objects."""

    def __init__(self, samples: Iterable[dict[str, Any]]) -> None:
        samples = list(samples)
        assert samples
        self.always = set.intersection(*(set(s) for s in samples))
        self.types: dict[str, set[str]] = {}
        for sample in samples:
            for key, value in sample.items():
                self.types.setdefault(key, set()).add(json_type(value))

    def mismatches(self, ours: dict[str, Any], where: str) -> list[str]:
        problems = [
            f"{where}: missing {key!r} (always present in recordings)" for key in sorted(self.always - set(ours))
        ]
        for key, value in ours.items():
            if key in self.types and json_type(value) not in self.types[key]:
                problems.append(f"{where}.{key}: {json_type(value)} where recordings have {sorted(self.types[key])}")
        return problems


def recorded_leads() -> list[dict[str, Any]]:
    """Every lead object in the recordings."""
    leads = [recorded(name)[0]["response_body"] for name in ("get-lead", "delete-lead", "create-lead")]
    leads += recorded("leads")[0]["response_body"]["items"] + recorded("list-leads")[0]["response_body"]["items"]
    return leads


def recorded_campaigns() -> list[dict[str, Any]]:
    """Every campaign object in the recordings."""
    names = ("get-campaign", "activate-campaign", "pause-campaign")
    campaigns: list[dict[str, Any]] = [recorded(name)[0]["response_body"] for name in names]
    campaigns += recorded("campaigns")[0]["response_body"]["items"]
    return campaigns


def check_formats(obj: Any, where: str) -> list[str]:
    """Timestamps are ISO-8601 with ms and Z; ids are UUIDs (also for nested objects)."""
    problems = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key.startswith("timestamp_") and isinstance(value, str) and not ISO_MS.match(value):
                problems.append(f"{where}.{key}: {value!r} is not ISO-8601 with ms and Z")
            if key in ("id", "organization", "campaign", "organization_id") and not UUID.match(str(value)):
                problems.append(f"{where}.{key}: {value!r} is not a UUID")
            problems += check_formats(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            problems += check_formats(value, f"{where}[{i}]")
    return problems


# --------------------------------------------------------------------------------------------------


def test_the_trimmed_contract_covers_exactly_what_the_client_sends() -> None:
    """Every operation the client may send is in the trimmed contract, and besides them only the
    operations the simulator serves for work to come (SIMULATED_OPERATIONS, none of them the client's)."""
    trimmed = {(m.upper(), p.removeprefix(contract.API_PREFIX)) for m, p in contract.OPERATIONS}
    assert trimmed == set(ALLOWED_OPERATIONS)
    simulated = {(m.upper(), p.removeprefix(contract.API_PREFIX)) for m, p in contract.SIMULATED_OPERATIONS}
    assert simulated.isdisjoint(trimmed)
    doc = contract.load_contract()
    documented = {(m.upper(), p.removeprefix("/api/v2")) for p, ops in doc["paths"].items() for m in ops}
    assert documented == trimmed | simulated
    assert doc["x-coldsync"]["recorded_deviations"] == list(contract.RECORDED_DEVIATIONS)


def test_recorded_real_exchanges_conform_to_the_trimmed_contract() -> None:
    """The recordings (what the live API really did) validate against the trimmed contract."""
    checked = 0
    for path in sorted((REPO / "tests" / "data" / "instantly_recorded").glob("*.json")):
        for exchange in json.loads(path.read_text(encoding="utf-8")):
            if contract.operation_for(exchange["method"], exchange["path"]) is None:
                continue
            query = {k: [str(v)] for k, v in (exchange["request_params"] or {}).items()}
            body = exchange["request_body"]
            assert contract.request_errors(exchange["method"], exchange["path"], body=body, query=query) == []
            assert (
                contract.response_errors(
                    exchange["method"], exchange["path"], exchange["status"], exchange["response_body"]
                )
                == []
            ), path.name
            checked += 1
    assert checked >= 12


def test_every_request_and_response_of_a_full_run_conforms(clock: FakeClock) -> None:
    """A run through every client operation sends only valid requests and gets only valid answers."""
    problems: list[str] = []
    operations: set[tuple[str, str] | None] = set()
    statuses: set[int] = set()

    def check(record: RequestRecord) -> None:
        operations.add(contract.operation_for(record.method, record.path))
        statuses.add(record.status)
        problems.extend(
            contract.request_errors(record.method, record.path, body=record.request_body, query=record.query)
        )
        problems.extend(contract.response_errors(record.method, record.path, record.status, record.response_body))

    with make_sim(plan_lead_limit=260, rates=SequenceRates(skipped=0.05)) as sim:
        sim.add_listener(check)
        smb, mid = sim.create_campaign("SMB"), sim.create_campaign("Midsize", status=2)
        with make_client(sim, clock) as client:
            client.check_key()
            assert len(client.iter_campaigns(page_size=1).to_list()) == 2
            client.get_campaign(smb)
            client.activate_campaign(mid)
            client.pause_campaign(mid)
            client.activate_campaign(mid)
            client.block_list_add(["blocked@example.com", "blocked.example.com", "not valid"])
            created = client.block_list_create(["late@example.com", "late.example.com"])
            assert client.current_workspace()["id"] == sim.organization_id
            assert client.workspace_add_unsub_to_block() is True
            leads = [
                *people(250),
                {"email": "blocked@example.com"},
                {"email": "someone@blocked.example.com", "phone": "+15550100", "website": "https://example.com"},
                {"email": "oops"},
                {"email": None, "first_name": "Nobody"},
                {"email": "person1@example.com"},
                {
                    "email": "vars@example.com",
                    "custom_variables": {"tier": "smb", "score": 2.5, "vip": True, "x": None},
                },
                {"email": "ooo@example.com", "job_title": "CTO", "company_name": "Example Co", "personalization": "Hi"},
                {"email": "OOO@example.com"},
            ]
            first = client.add_leads(smb, leads, chunk_size=100)
            again = client.add_leads(mid, people(20, start=240))  # skipped (in SMB) and plan-limited
            assert {"created", "blocklisted", "invalid", "duplicate", "duplicate_in_request"} <= set(first.counts())
            assert {"skipped", "plan_limit"} <= set(again.counts())
            sim.advance(20)
            for lead_filter in LeadFilter:
                client.iter_leads(campaign=smb, filter=lead_filter).to_list()
            client.find_leads_by_email(["person3@example.com", "PERSON4@example.com"])
            ids = [str(o.lead_id) for o in first.created]
            client.iter_leads(ids=ids[:3]).to_list()
            assert client.get_lead(ids[0]) is not None
            assert client.delete_lead(ids[0]) is True
            assert client.delete_lead(ids[0]) is False
            assert client.get_lead(ids[0]) is None
            assert client.delete_leads(smb, ids[1:150], chunk_size=50) == 149
            job_id = client.move_leads(ids[150:153], sim.create_list("Replied"), smb)
            while not client.background_job(job_id).finished:
                pass
            client.campaign_analytics([smb, mid])
            client.campaign_analytics([smb], start_date=sim.now.date(), end_date=sim.now)
            client.daily_campaign_analytics(smb, sim.now.date(), sim.now.date())
            client.sending_status(smb)
            client.iter_block_list(page_size=1).to_list()
            client.iter_block_list(domains_only=True, search="late").to_list()
            sim.create_lead_label("Hot lead", "positive")
            sim.create_lead_label("Budget next year", "negative")
            assert len(client.iter_lead_labels(page_size=1).to_list()) == 2
            assert client.iter_block_list(starting_after=str(created.outcomes[0].entry_id)).to_list()
            client.iter_leads().to_list()
            # registered after the last lead event: nothing is delivered (the receiver is never contacted)
            hook = client.create_webhook("https://receiver.corp.example/instantly", "lead_unsubscribed",
                                         headers={"X-Coldsync-Secret": "not-a-secret"}, name="coldsync", campaign=smb)
            assert [w["id"] for w in client.list_webhooks()] == [hook["id"]]
            assert client.patch_webhook(hook["id"], headers={"X-Coldsync-Secret": "rotated"})["headers"] == {
                "X-Coldsync-Secret": "rotated"}
            assert client.resume_webhook(hook["id"])["status"] == 1
            second = client.create_webhook("https://receiver.corp.example/instantly", "email_bounced",
                                           headers={"X-Coldsync-Secret": "not-a-secret"})
            assert client.patch_webhook(second["id"], target_hook_url="https://receiver2.corp.example/i")[
                "target_hook_url"] == "https://receiver2.corp.example/i"
            client.delete_webhook(second["id"])
            assert [w["id"] for w in client.list_webhooks()] == [hook["id"]]
            assert client.list_webhook_events(success=False, from_date=sim.now.date(), to_date=sim.now).to_list() == []
        sim.set_fault("GET /campaigns", FaultSpec(statuses=[401, 402, 403, 429, 500]))
        for _ in range(5):
            with make_client(sim, clock, max_attempts=1) as failing, pytest.raises(InstantlyError):
                failing.check_key()
    assert sim.listener_errors == []
    assert problems == []
    assert operations == {(m, p) for m, p in contract.OPERATIONS}
    assert {200, 401, 402, 403, 404, 429, 500} <= statuses


def test_the_validator_catches_violations() -> None:
    """Wrong limits, unknown lead fields, nulls where the API omits fields and unknown queries are caught."""
    assert contract.request_errors("POST", "/api/v2/leads/list", body={"limit": 101})
    assert contract.request_errors(
        "POST", "/leads/add", body={"campaign_id": "c", "leads": [{"emial": "a@example.com"}]}
    )
    assert contract.request_errors("POST", "/leads/add", body={"campaign_id": "c", "leads": []})
    assert contract.request_errors("GET", "/campaigns", query={"limti": ["1"]})
    assert contract.request_errors("POST", "/campaigns/abc/activate", body={})
    assert contract.request_errors("POST", "/leads/nope") != []
    lead = dict(recorded("get-lead")[0]["response_body"])
    assert contract.response_errors("GET", "/leads/x", 200, lead) == []
    assert contract.response_errors("GET", "/leads/x", 200, {**lead, "company_domain": None})
    assert contract.response_errors("GET", "/leads/x", 200, {**lead, "custom_variables": {}})
    assert contract.response_errors("POST", "/leads/list", 200, {"items": [], "cursor": "x"})
    assert contract.response_errors("GET", "/campaigns/analytics", 200, {"items": []})
    assert contract.response_errors("GET", "/leads/x", 418, {"statusCode": 418}) != []
    with pytest.raises(contract.ContractViolation):
        contract.validate_request("DELETE", "/leads", body={"ids": ["a"]})
    contract.validate_response("DELETE", "/leads", 200, {"count": 0})


def test_block_list_and_workspace_answers_validate_against_the_trimmed_spec(clock: FakeClock) -> None:
    """Every block-list and workspace answer of the simulator, in each setting, conforms to the trimmed spec."""
    problems: list[str] = []
    records: list[RequestRecord] = []

    def check(record: RequestRecord) -> None:
        records.append(record)
        problems.extend(
            contract.request_errors(record.method, record.path, body=record.request_body, query=record.query)
        )
        problems.extend(contract.response_errors(record.method, record.path, record.status, record.response_body))

    with make_sim() as sim:
        sim.add_listener(check)
        with make_client(sim, clock) as client:
            result = client.block_list_create([f"dnc{i}@example.com" for i in range(1200)] + ["x.example.com", "??"])
            assert result.counts() == {"blocked": 1201, "refused": 1}
            assert len(client.iter_block_list().require_complete()) == 1201
            for setting in (True, False, None):
                sim.set_add_unsub_to_block(setting)
                assert client.workspace_add_unsub_to_block() is setting
    assert sim.listener_errors == [] and problems == []
    assert [r.endpoint for r in records].count("POST /block-lists-entries/bulk-create") == 2
    assert [r.endpoint for r in records].count("GET /workspaces/current") == 3
    assert {r.status for r in records} == {200}


def test_the_validator_holds_block_list_and_workspace_answers_to_the_spec() -> None:
    """An entry missing is_domain, a workspace with a string add_unsub_to_block or an extra field, 0 values: caught."""
    entry = {
        "id": "019b8d62-7a80-7000-8003-230815ceb3a1",
        "timestamp_created": "2026-01-05T09:00:00.000Z",
        "organization_id": "00000000-0000-4000-8000-000000000001",
        "bl_value": "a@example.com",
        "is_domain": False,
    }
    page = {"items": [entry], "valid_count": 1, "invalid_count": 0}
    assert contract.response_errors("POST", "/block-lists-entries/bulk-create", 200, page) == []
    broken = {**page, "items": [{k: v for k, v in entry.items() if k != "is_domain"}]}
    assert contract.response_errors("POST", "/block-lists-entries/bulk-create", 200, broken) != []
    assert contract.response_errors("POST", "/block-lists-entries/bulk-create", 200, {"items": [entry]}) != []
    assert contract.request_errors("POST", "/block-lists-entries/bulk-create", body={"bl_values": []}) != []
    too_many = {"bl_values": ["a@example.com"] * 1001}
    assert contract.request_errors("POST", "/block-lists-entries/bulk-create", body=too_many) != []
    workspace = {
        "id": "00000000-0000-4000-8000-000000000001",
        "timestamp_created": "2026-01-05T09:00:00.000Z",
        "timestamp_updated": "2026-01-05T09:00:00.000Z",
        "owner": "00000000-0000-4000-8000-000000000002",
        "name": "Workspace",
    }
    for value in (True, False, None):
        assert (
            contract.response_errors("GET", "/workspaces/current", 200, {**workspace, "add_unsub_to_block": value})
            == []
        )
    assert contract.response_errors("GET", "/workspaces/current", 200, workspace) == []
    assert contract.response_errors("GET", "/workspaces/current", 200, {**workspace, "add_unsub_to_block": "yes"})
    assert contract.response_errors("GET", "/workspaces/current", 200, {**workspace, "extra": 1})
    assert contract.request_errors("GET", "/workspaces/current", body={"x": 1}) != []


def test_the_committed_trimmed_contract_is_what_the_command_derives(tmp_path: Path) -> None:
    """Regenerating openapi-trimmed.json from the official spec (when present) gives the committed file exactly."""
    if not contract.DEFAULT_SOURCE.exists():
        pytest.skip(f"the official spec is not at {contract.DEFAULT_SOURCE}")
    output = tmp_path / "trimmed.json"
    assert contract.main(["--source", str(contract.DEFAULT_SOURCE), "--output", str(output)]) == 0
    assert output.read_bytes() == contract.TRIMMED_PATH.read_bytes()
    paths = contract.load_contract()["paths"]
    assert paths["/api/v2/workspaces/current"]["get"]["operationId"] == "getWorkspace"
    assert paths["/api/v2/block-lists-entries/bulk-create"]["post"]["operationId"] == "createblukBlockListEntry"


def test_simulator_objects_have_the_recorded_keys_and_types(clock: FakeClock) -> None:
    """Leads, campaigns, pages and add/delete summaries match the real recordings in keys and types."""
    lead_shape = Shape(recorded_leads())
    campaign_lead_shape = Shape(lead for lead in recorded_leads() if "campaign" in lead)
    campaign_shape = Shape(recorded_campaigns())
    step_shape = Shape(s for c in recorded_campaigns() for seq in c.get("sequences", []) for s in seq["steps"])
    schedule_shape = Shape(s for c in recorded_campaigns() for s in c["campaign_schedule"]["schedules"])
    last_step_shape = Shape(
        lead["status_summary"]["lastStep"] for lead in recorded_leads() if "lastStep" in lead["status_summary"]
    )
    add_real = recorded("add-leads")[0]["response_body"]
    pages_real = [exchange["response_body"] for exchange in recorded("leads")]
    problems: list[str] = []
    with make_sim(rates=SequenceRates(completed=1, replied=1, out_of_office=1, bounced=1, unsubscribed=1)) as sim:
        cid = sim.create_campaign("SMB")
        list_id = sim.create_list("Imports")
        with make_client(sim, clock) as client:
            added = client.add_leads(cid, [*people(60), {"email": "person0@example.com"}])
        add_ours = sim.requests_to("POST", "/leads/add")[0].response_body
        assert set(add_ours) == set(add_real)
        problems += Shape([add_real]).mismatches(add_ours, "add")
        sim.insert_leads(cid, [{"email": "fresh@example.com"}])
        sim.advance(30)
        listed = sim.requests_to("POST", "/leads/list")
        ours_leads = sim.leads(cid)
        assert {lead["status"] for lead in ours_leads} >= {1, 3, -1, -2}
        for lead in ours_leads:
            problems += campaign_lead_shape.mismatches(lead, f"lead {lead['email']}")
            problems += lead_shape.mismatches(lead, f"lead {lead['email']}")
            if "lastStep" in lead["status_summary"]:
                problems += last_step_shape.mismatches(lead["status_summary"]["lastStep"], "lastStep")
            problems += check_formats(lead, "lead")
        with make_client(sim, clock) as client:
            page = client.iter_leads(campaign=cid, page_size=100)
            page.to_list()
            client.delete_leads(cid, [str(added.outcomes[0].lead_id)])
            campaign = client.get_campaign(cid).raw
        pages_ours = [r.response_body for r in sim.requests_to("POST", "/leads/list")[len(listed) :]]
        assert [set(p) for p in pages_ours] == [set(p) for p in pages_real]
        deleted = sim.requests_to("DELETE", "/leads")[0].response_body
        assert set(deleted) == set(recorded("delete-leads-bulk")[0]["response_body"])
        problems += campaign_shape.mismatches(dict(campaign), "campaign")
        for step in campaign["sequences"][0]["steps"]:
            problems += step_shape.mismatches(step, "step")
        for schedule in campaign["campaign_schedule"]["schedules"]:
            problems += schedule_shape.mismatches(schedule, "schedule")
        problems += check_formats(dict(campaign), "campaign")
        requests.post(
            f"{sim.base_url}/api/v2/leads/add",
            json={"list_id": list_id, "leads": [{"email": "listed@example.com", "first_name": "Alex"}]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        ).raise_for_status()
        (list_lead,) = sim.find_leads("listed@example.com")
        problems += lead_shape.mismatches(list_lead, "list lead")
        assert (list_lead["status"], list_lead["list_id"], "campaign" in list_lead) == (0, list_id, False)
    for real in recorded_leads() + recorded_campaigns():
        assert check_formats(real, "recorded") == []
    assert problems == []


def test_contract_command_derives_the_trimmed_file(tmp_path: Path) -> None:
    """The command trims a (synthetic) full document: kept operations, referenced schemas, no examples."""
    lead = {
        "type": "object",
        "properties": {
            "status": {"type": "number", "enum": [1, 2, 3, -1, -2, -3]},
            "tag": {"$ref": "#/components/schemas/Tag"},
        },
        "example": {"status": 1},
    }
    paths: dict[str, Any] = {}
    for method, path in (*contract.OPERATIONS, *contract.SIMULATED_OPERATIONS):
        paths.setdefault(path, {})[method] = {
            "operationId": f"{method}{path}",
            "description": "long prose",
            "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Lead"}}}}},
        }
    paths["/api/v2/unused"] = {"get": {"responses": {}}}
    source = {
        "openapi": "3.1.0",
        "info": {"title": "Instantly", "version": "2"},
        "paths": paths,
        "components": {
            "schemas": {"Lead": lead, "Tag": {"type": "string", "examples": ["a"]}, "Unused": {"type": "string"}}
        },
    }
    source_file, output = tmp_path / "full.json", tmp_path / "trimmed.json"
    source_file.write_text(json.dumps(source), encoding="utf-8")
    assert contract.main(["--source", str(source_file), "--output", str(output)]) == 0
    trimmed = json.loads(output.read_text(encoding="utf-8"))
    assert "/api/v2/unused" not in trimmed["paths"]
    assert sorted(trimmed["components"]["schemas"]) == ["Lead", "Tag"]
    assert "example" not in trimmed["components"]["schemas"]["Lead"]
    assert "examples" not in trimmed["components"]["schemas"]["Tag"]
    assert 0 in trimmed["components"]["schemas"]["Lead"]["properties"]["status"]["enum"]
    assert "description" not in trimmed["paths"]["/api/v2/leads/add"]["post"]
    assert contract.main(["--source", str(tmp_path / "missing.json"), "--output", str(output)]) == 2


def test_runtime_modules_do_not_import_jsonschema() -> None:
    """Importing the client, the simulator or the contract helper loads no jsonschema and starts nothing."""
    code = (
        "import sys, threading\n"
        "import coldsync.instantly.client, coldsync.instantly.simulator, coldsync.instantly.contract\n"
        "print('jsonschema' in sys.modules, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1"]
