"""Custom lead labels (issue #13): a lead carries only the label's number in `lt_interest_status`; its sentiment
comes from GET /api/v2/lead-labels (official spec: LeadLabel.interest_status_label), read once per run and only
by a run that meets a custom number, unless the policy document's [custom_labels] maps it by hand."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.simulator import FaultSpec
from coldsync.outcomes import LabelSentiment, label_sentiments
from tests.invariants import World
from tests.worlds import SMB, small_world

LABELS = "GET /lead-labels"


def _world(tmp_path: Path, **env: str) -> Iterator[World]:
    with small_world(tmp_path, settings=env) as made:
        yield made


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world(tmp_path)


def _history(world: World, lead_id: str) -> list[dict[str, Any]]:
    return world.warehouse.query("SELECT status_final, policy, interest_status, completed_at, return_at FROM "
                                 "`{ds}.ops_lead_history` WHERE instantly_lead_id = @id", {"id": lead_id}, label="t")


def _state(world: World, lead_id: str) -> str | None:
    rows = world.warehouse.query("SELECT status FROM `{ds}.ops_inst_state` WHERE instantly_lead_id = @id",
                                 {"id": lead_id}, label="t")
    return str(rows[0]["status"]) if rows else None


def _replied_with(world: World, interest: int | None) -> str:
    """Fill the campaigns, then the first SMB lead replies with this interest value (half an hour ago)."""
    world.run_checked()
    lead_id = str(sorted(world.sim.leads(SMB), key=lambda x: str(x["id"]))[0]["id"])
    world.sim.finish_lead(lead_id, "replied", interest=interest)
    world.sim.advance(1 / 48)
    return lead_id


def test_a_negative_custom_label_returns_the_address_after_365_days_and_deletes_the_lead(world: World) -> None:
    """A reply labelled with a custom negative label gets not_interested: deleted at once, back in 365 days."""
    label = world.sim.create_lead_label("Budget next year", "negative")
    lead_id = _replied_with(world, label["interest_status"])
    before = world.sim.counters[LABELS]
    world.run_checked(run_topup=False)
    assert world.sim.counters[LABELS] - before == 2  # one listing: its page, then the empty page ending it
    [row] = _history(world, lead_id)
    assert (row["status_final"], row["policy"], row["interest_status"]) == (
        "replied", "not_interested", label["interest_status"])
    assert row["return_at"] == row["completed_at"] + dt.timedelta(days=365)
    assert world.sim.lead(lead_id) is None and _state(world, lead_id) is None


def test_a_positive_custom_label_puts_the_lead_in_sales_and_holds_it(world: World) -> None:
    """A reply labelled with a custom positive label gets in_sales: never back to cold outreach, held 14 days."""
    label = world.sim.create_lead_label("Hot lead", "positive")
    lead_id = _replied_with(world, label["interest_status"])
    world.run_checked(run_topup=False)
    [row] = _history(world, lead_id)
    assert (row["policy"], row["interest_status"], row["return_at"]) == ("in_sales", label["interest_status"], None)
    assert _state(world, lead_id) == "holding" and world.sim.lead(lead_id) is not None


def test_a_neutral_custom_label_counts_as_no_interest_status(world: World) -> None:
    """A neutral custom label is a plain reply: policy replied, back after 180 days, held like a reply."""
    label = world.sim.create_lead_label("Auto-forwarded", "neutral")
    lead_id = _replied_with(world, label["interest_status"])
    world.run_checked(run_topup=False)
    [row] = _history(world, lead_id)
    assert (row["policy"], row["return_at"]) == ("replied", row["completed_at"] + dt.timedelta(days=180))
    assert _state(world, lead_id) == "holding"


def test_runs_without_a_custom_value_never_read_the_labels(world: World) -> None:
    """Static interest values (here Won) and quiet runs cost no GET /lead-labels call."""
    world.sim.create_lead_label("Hot lead", "positive")
    lead_id = _replied_with(world, 4)
    world.run_checked(run_topup=False)
    world.run_checked()
    assert world.sim.counters[LABELS] == 0
    assert [r["policy"] for r in _history(world, lead_id)] == ["in_sales"]


def test_unreadable_labels_keep_the_lead_until_a_run_can_read_them(world: World) -> None:
    """With GET /lead-labels failing, the labelled lead is kept (nothing recorded, nothing deleted) and
    a later run, with the listing back, records it by its label's sentiment."""
    label = world.sim.create_lead_label("Budget next year", "negative")
    lead_id = _replied_with(world, label["interest_status"])
    world.sim.set_fault(LABELS, FaultSpec(statuses=[500] * 20))
    kept = world.run(run_topup=False)
    drain = kept.report.phase("drain")
    assert drain.counts["unknown_kept"] == 1
    assert any("custom lead labels could not be read" in note for note in drain.notes)
    assert _history(world, lead_id) == [] and world.sim.lead(lead_id) is not None
    world.sim.clear_faults()
    world.sim.advance(6 / 24)  # a kept lead is listed again by the next full sweep (every 6 hours)
    world.run_checked(run_topup=False)
    assert [r["policy"] for r in _history(world, lead_id)] == ["not_interested"]
    assert world.sim.lead(lead_id) is None


def test_the_policy_document_maps_a_label_by_hand_without_asking_instantly(tmp_path: Path) -> None:
    """[custom_labels] in OUTCOME_POLICIES decides, even against Instantly's sentiment, and saves the call."""
    for world in _world(tmp_path, outcome_policies="[custom_labels]\n5 = \"negative\"\n"):
        label = world.sim.create_lead_label("Hot lead", "positive")
        assert label["interest_status"] == 5
        lead_id = _replied_with(world, 5)
        world.run_checked(run_topup=False)
        assert world.sim.counters[LABELS] == 0
        assert [r["policy"] for r in _history(world, lead_id)] == ["not_interested"]


def test_the_client_reads_every_page_of_labels(world: World) -> None:
    """iter_lead_labels follows the cursor to the end; label_sentiments maps every label's number."""
    made = [world.sim.create_lead_label(f"Label {i}", ("positive", "negative", "neutral")[i % 3])
            for i in range(7)]
    listing = world.client.iter_lead_labels(page_size=3)
    items = list(listing)
    assert listing.complete and listing.pages == 4  # 3 + 3 + 1, then the empty page that ends it
    assert sorted(i["id"] for i in items) == sorted(m["id"] for m in made)
    assert label_sentiments(items) == {m["interest_status"]: LabelSentiment(m["interest_status_label"])
                                       for m in made}
