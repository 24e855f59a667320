"""Webhook events honoured by the next sync run (coldsync.phases.events): unsubscribes and bounces merged into
ops_dnc (source instantly_webhook) and their leads drained by id, a reply drains its lead by its outcome policy,
polling and an event never count a lead twice, a dry run writes nothing, and erasure removes the events rows while
the person stays suppressed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.cli import ExitCode
from coldsync.erase import erasure_targets, run_erase
from coldsync.phases.events import SOURCE
from coldsync.suppression import address_key
from coldsync.sync import SyncResult
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.schema import EVENTS
from coldsync.webhooks.events import DELIVERED_BY_RECEIVER, parse_body
from tests.helpers import add_sources, lead, ready
from tests.invariants import World
from tests.worlds import SMB, small_world

UNMANAGED = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with small_world(tmp_path) as w:
        yield w


def deliver(world: World, email: str, event_type: str, campaign_id: str, ago: dt.timedelta = dt.timedelta(minutes=1),
            **extra: Any) -> None:
    """Store one delivery as the receiver would, received `ago` before the simulator's now: the payload parsed and
    appended to ops_instantly_events."""
    body = {"timestamp": world.sim.now.isoformat().replace("+00:00", "Z"), "event_type": event_type,
            "workspace": "22222222-2222-4222-8222-222222222222", "campaign_id": campaign_id, "campaign_name": "SMB",
            "lead_email": email, "step": 1, "variant": 1, **extra}
    row = parse_body(json.dumps(body).encode()).as_row(world.sim.now - ago, DELIVERED_BY_RECEIVER)
    world.warehouse.append_rows(EVENTS, [row], key="dedup_key", label="t")


def active_lead(world: World, n: int = 0) -> dict[str, Any]:
    """The n-th lead the first run added (status 1 in the simulator)."""
    leads = sorted((x for x in world.sim.leads() if x.get("campaign")), key=lambda x: str(x["email"]))
    assert leads[n]["status"] == 1
    return leads[n]


def rows(warehouse: Warehouse, sql: str, email: str) -> list[dict[str, Any]]:
    return warehouse.query(sql, {"e": email}, label="t")


def dnc_of(world: World, email: str) -> list[dict[str, Any]]:
    return world.warehouse.query("SELECT source, reason FROM `{ds}.ops_dnc` WHERE email_key = @k",
                                 {"k": address_key(email)}, label="t")


def history_of(world: World, email: str) -> list[tuple[Any, ...]]:
    found = rows(world.warehouse, "SELECT status_final, attempt_num, in_instantly, reason FROM "
                                  "`{ds}.ops_lead_history` WHERE email = @e", email)
    return [(r["status_final"], r["attempt_num"], r["in_instantly"], r["reason"]) for r in found]


def state_of(world: World, email: str) -> list[str]:
    return [r["status"] for r in rows(world.warehouse, "SELECT status FROM `{ds}.ops_inst_state` WHERE email = @e",
                                      email)]


def deleted_ids(world: World) -> list[str]:
    return [i for r in world.sim.requests_to("DELETE", "/leads") for i in r.request_body["ids"]]


def events_counts(result: SyncResult) -> dict[str, int]:
    """The events phase's non-zero counts as the --json summary carries them."""
    return {k: v for k, v in json.loads(result.report.to_json())["phases"]["events"]["counts"].items() if v}


def _suppressing_event_drains(world: World, event_type: str, outcome: str) -> None:
    world.run_checked()
    target = active_lead(world)
    email, lead_id = str(target["email"]), str(target["id"])
    deliver(world, email, event_type, str(target["campaign"]))
    world.sim.clear_request_log()
    result = world.run_checked()
    assert dnc_of(world, email) == [{"source": SOURCE, "reason": f"{event_type} (webhook)"}]
    assert history_of(world, email) == [(outcome, 1, "deleted", f"{event_type} (webhook)")]
    assert world.sim.lead(lead_id) is None and deleted_ids(world) == [lead_id]
    assert state_of(world, email) == []
    assert events_counts(result) == {"read": 1, "dnc_added": 1, f"drained by event: {outcome}": 1}
    # A second run (same clock) reads the event again inside the safety margin and changes nothing.
    world.sim.clear_request_log()
    again = world.run_checked()
    assert dnc_of(world, email) == [{"source": SOURCE, "reason": f"{event_type} (webhook)"}]
    assert len(history_of(world, email)) == 1 and deleted_ids(world) == []
    assert events_counts(again) == {"read": 1, "untracked": 1}


def test_unsubscribe_event_drains_the_active_lead_by_id_once(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """An unsubscribe event for an active lead: one run puts it on ops_dnc (instantly_webhook), writes one
    `unsubscribed` history row, deletes exactly that id in Instantly and drops its state; a second run adds nothing."""
    with small_world(tmp_path, warehouse=raw_warehouse) as world:
        _suppressing_event_drains(world, "lead_unsubscribed", "unsubscribed")


def test_bounce_event_drains_the_active_lead_by_id_once(world: World) -> None:
    """A bounce event for an active lead: DNC (instantly_webhook), one `bounced` history row, deleted by id, state
    gone; a second run adds nothing."""
    _suppressing_event_drains(world, "email_bounced", "bounced")


def test_reply_event_drains_a_lead_instantly_still_shows_active_as_replied(world: World) -> None:
    """A reply event for a lead whose Instantly status still says active: recorded `replied` and handled by the
    replied policy (held in its campaign, as the polling drain holds a replied lead), with no DNC entry."""
    world.run_checked()
    target = active_lead(world)
    email = str(target["email"])
    deliver(world, email, "reply_received", str(target["campaign"]))
    result = world.run_checked()
    assert history_of(world, email) == [("replied", 1, "held", "reply_received (webhook)")]
    assert state_of(world, email) == ["holding"]
    assert dnc_of(world, email) == []
    assert events_counts(result) == {"read": 1, "drained by event: replied": 1}


def test_events_for_untracked_addresses_or_unmanaged_campaigns_drain_nothing(world: World) -> None:
    """An unsubscribe for an address never ours writes its DNC row only; a reply for one writes nothing; a reply
    for a tracked lead sent for a campaign we do not manage drains nothing."""
    world.run_checked()
    target = active_lead(world)
    campaign = str(target["campaign"])
    deliver(world, "stranger@corp.example", "lead_unsubscribed", campaign)
    deliver(world, "other@corp.example", "reply_received", campaign)
    deliver(world, str(target["email"]), "reply_received", UNMANAGED)
    world.sim.clear_request_log()
    result = world.run_checked()
    assert dnc_of(world, "stranger@corp.example") == [{"source": SOURCE, "reason": "lead_unsubscribed (webhook)"}]
    assert dnc_of(world, "other@corp.example") == [] and dnc_of(world, str(target["email"])) == []
    assert history_of(world, "stranger@corp.example") == history_of(world, str(target["email"])) == []
    assert state_of(world, str(target["email"])) == ["active"] and deleted_ids(world) == []
    assert events_counts(result) == {"read": 3, "dnc_added": 1, "untracked": 2, "ignored: campaign not managed": 1}


def test_polling_and_the_event_in_one_run_give_one_history_row_and_one_dnc_row(world: World) -> None:
    """A lead Instantly shows unsubscribed (found by the polling listing) whose event also arrived: one history
    row, one DNC row (the event's), one delete of its id."""
    world.run_checked()
    target = active_lead(world)
    email, lead_id = str(target["email"]), str(target["id"])
    world.sim.finish_lead(lead_id, "unsubscribed")
    deliver(world, email, "lead_unsubscribed", str(target["campaign"]))
    world.sim.clear_request_log()
    result = world.run_checked()
    assert history_of(world, email) == [("unsubscribed", 1, "deleted", "unsubscribed (status -2)")]
    assert dnc_of(world, email) == [{"source": SOURCE, "reason": "lead_unsubscribed (webhook)"}]
    assert deleted_ids(world) == [lead_id]
    assert result.report.phase("drain").counts["dnc_added"] == 0
    assert events_counts(result)["drained by event: unsubscribed"] == 1


def test_dry_run_with_a_pending_event_writes_nothing_and_says_what_it_would_do(world: World) -> None:
    """A dry run with an unsubscribe event pending changes no table and sends no write (invariant 6, checked), and
    its summary says it would merge one DNC entry and drain one lead by event."""
    world.run_checked()
    target = active_lead(world)
    deliver(world, str(target["email"]), "lead_unsubscribed", str(target["campaign"]))
    result = world.run_checked(dry_run=True)
    text = result.report.render_text()
    assert "would merge into DNC 1" in text and "would drain by event: unsubscribed 1" in text
    assert dnc_of(world, str(target["email"])) == [] and state_of(world, str(target["email"])) == ["active"]
    assert world.sim.lead(str(target["id"])) is not None


def test_erasure_removes_the_events_rows_and_the_person_stays_suppressed(world: World) -> None:
    """Erasing a person with an unsubscribe event deletes their ops_instantly_events rows (after the salted hash is
    written), a source row of that address imported again is still not ready, and a delivery for them that lands
    after the erasure is deleted by the next run (no plain-text DNC row either)."""
    world.run_checked()
    target = active_lead(world)
    email = str(target["email"])
    deliver(world, email, "lead_unsubscribed", str(target["campaign"]))
    deliver(world, email, "reply_received", str(target["campaign"]))
    world.run_checked()
    outcome = run_erase(world.settings, world.warehouse, world.client, erasure_targets([(email, email)]),
                        now=world.sim.now)
    assert outcome.exit_code == ExitCode.OK, outcome.render_text()
    assert (outcome.events_found, outcome.events_removed) == (2, 2)
    left = world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_instantly_events` WHERE email_key = @k",
                                 {"k": address_key(email)}, label="t")
    assert left == [{"n": 0}]
    add_sources(world.warehouse, [lead(email.upper())])
    assert email not in {e.lower() for e in ready(world.warehouse)}
    again = run_erase(world.settings, world.warehouse, world.client, erasure_targets([(email, email)]),
                      now=world.sim.now)
    assert again.exit_code == ExitCode.OK and (again.events_found, again.events_removed) == (0, 0)
    # A delivery that lands after the erasure (a retry, a late event) brings the address back in plain text: the
    # next run deletes it, writes no plain-text DNC row, and the person stays suppressed.
    deliver(world, email.upper(), "lead_unsubscribed", str(target["campaign"]), step=3)
    late = world.run_checked()
    assert late.report.phase("events").counts["event rows of erased persons deleted"] == 1
    left = world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_instantly_events` WHERE email_key = @k",
                                 {"k": address_key(email)}, label="t")
    assert left == [{"n": 0}]
    plain = world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_dnc` WHERE email_key = @k",
                                  {"k": address_key(email)}, label="t")
    assert plain == [{"n": 0}]
    assert email not in {e.lower() for e in ready(world.warehouse)}


def test_watermark_bounds_the_read_and_a_late_backfilled_row_is_still_read(world: World) -> None:
    """The run summary keeps the run's start as the watermark; a run a day later skips the rows received before it
    (minus the 15-minute margin), and a backfilled row of an event three days old (stamped when written) is read."""
    world.run_checked()
    target = active_lead(world)
    deliver(world, "early@corp.example", "lead_unsubscribed", str(target["campaign"]), ago=dt.timedelta(minutes=20))
    first = world.run_checked()
    assert json.loads(first.report.to_json())["events_watermark"] == {"received_at": world.sim.now.isoformat()}
    world.sim.advance(1)
    body = {"timestamp": (world.sim.now - dt.timedelta(days=3)).isoformat(), "event_type": "email_bounced",
            "workspace": "w", "campaign_id": str(target["campaign"]), "lead_email": "late@corp.example"}
    world.warehouse.append_rows(EVENTS, [parse_body(json.dumps(body).encode()).as_row(world.sim.now, "backfill")],
                                key="dedup_key", label="t")
    second = world.run_checked()
    assert events_counts(second) == {"read": 1, "dnc_added": 1, "untracked": 1}
    assert dnc_of(world, "late@corp.example") == [{"source": SOURCE, "reason": "email_bounced (webhook)"}]


def test_an_event_read_again_inside_the_margin_is_not_pushed_to_the_block_list_again(tmp_path: Path) -> None:
    """With the block-list mirror on: an unsubscribe event for an untracked address is put on the DNC list and
    pushed to Instantly's block list once; the next run reads the event again (inside the 15-minute margin) and
    adds and pushes nothing; Instantly's block list holds the address once."""
    with small_world(tmp_path, settings={"blocklist_mirror": "true"}) as world:
        world.run_checked()
        deliver(world, "Someone+x@Corp.example", "lead_unsubscribed", SMB)
        world.run_checked()
        second = world.run_checked()
        assert second.report.phase("events").counts["read"] == 1
        assert second.report.phase("events").counts.get("dnc_added", 0) == 0
        bodies = [r.request_body for r in world.sim.requests_to("POST", "/block-lists-entries/bulk-create")]
        pushed = [v for body in bodies for v in body["bl_values"] if "someone" in v]
        assert pushed == ["someone+x@corp.example"]


def test_an_event_row_written_by_hand_without_its_key_drains_like_a_received_one(world: World) -> None:
    """An unsubscribe row inserted by hand with the address in another spelling and no stored email_key (the
    eligibility rule keys it in SQL): the run keys it the same way in Python, so the lead is drained by id with one
    `unsubscribed` history row and the address gets its DNC row."""
    world.run_checked()
    target = active_lead(world)
    email = str(target["email"])
    body = {"timestamp": world.sim.now.isoformat().replace("+00:00", "Z"), "event_type": "lead_unsubscribed",
            "workspace": "w", "campaign_id": str(target["campaign"]), "lead_email": email}
    row = parse_body(json.dumps(body).encode()).as_row(world.sim.now - dt.timedelta(minutes=1), "receiver")
    row.update(email=f"<{email.upper()}>", email_key=None)
    world.warehouse.append_rows(EVENTS, [row], key="dedup_key", label="t")
    world.run_checked()
    assert dnc_of(world, email) == [{"source": SOURCE, "reason": "lead_unsubscribed (webhook)"}]
    assert [h[0] for h in history_of(world, email)] == ["unsubscribed"]
    assert deleted_ids(world) == [target["id"]]
