"""The sync's reads and writes of the warehouse (coldsync.store), on both engines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from coldsync.settings import Settings
from coldsync.store import Store, dead_letter_id
from coldsync.warehouse.base import Warehouse
from tests.helpers import T0, add_history, build, lead


def test_run_settings_override_the_config_table_for_one_run(raw_warehouse: Warehouse, settings: Settings) -> None:
    """COOLDOWN_DAYS and SMB_REVENUE_THRESHOLD given for a run change that run's pick, not the view's."""
    build(raw_warehouse, settings, [lead("rested@example.com", Decimal(700_000))])
    add_history(raw_warehouse, "rested@example.com", T0 - dt.timedelta(days=40))
    strict = Store(raw_warehouse, "r1", T0)
    assert strict.read_ready({"SMB": 10, "Midsize": 10}) == []
    short = Store(raw_warehouse, "r2", T0, cooldown_days=30, smb_threshold=500_000)
    rows = short.read_ready({"SMB": 10, "Midsize": 10})
    assert [(r["email"], r["sequence_target"], r["attempt_num"]) for r in rows] == [
        ("rested@example.com", "Midsize", 2)]
    assert short.read_ready({"SMB": 10, "Midsize": 0}) == []  # a route of room 0 is not read
    assert short.ready_counts() == ({"Midsize": 1}, 0)
    assert strict.ready_counts() == ({}, 0)


def test_state_merge_inserts_updates_and_deletes_in_one_statement(raw_warehouse: Warehouse,
                                                                  settings: Settings) -> None:
    """One apply_state call inserts, updates (keeping unset fields) and deletes rows."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "r1", T0)
    store.apply_state([{"email": "a@example.com", "op": "upsert", "campaign_id": "c1", "status": "pending",
                        "attempt_num": 2},
                       {"email": "b@example.com", "op": "upsert", "campaign_id": "c1", "status": "pending"}], "t")
    before = raw_warehouse.stats.total
    store.apply_state([{"email": "a@example.com", "op": "upsert", "status": "active", "instantly_lead_id": "L1"},
                       {"email": "b@example.com", "op": "delete"}], "t")
    assert raw_warehouse.stats.total == before + 1
    rows = store.read_state()
    assert [(r.email, r.status, r.instantly_lead_id, r.campaign_id, r.attempt_num) for r in rows] == [
        ("a@example.com", "active", "L1", "c1", 2)]


def test_history_is_idempotent_also_for_unknown_attempts(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Recording the same finished lead twice (a re-run after a crash) writes one history row."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "r1", T0)
    row = {"email": "h@example.com", "campaign_id": "c1", "sequence_name": "SMB", "status_final": "completed",
           "completed_at": T0, "attempt_num": None, "instantly_lead_id": "L9", "reason": "test"}
    store.record_history([row])
    store.record_history([row])
    rows = raw_warehouse.query("SELECT attempt_num FROM `{ds}.ops_lead_history`", label="t")
    assert rows == [{"attempt_num": 1}]


def test_a_later_attempt_with_the_same_lead_id_is_still_written(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A lead Instantly kept (moved to a list) answers attempt 2's add with its old id: attempt 2's row is written
    beside attempt 1's, and writing it again (a re-run) changes nothing; an orphan with that id matches."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "r1", T0)
    first = {"email": "m@example.com", "campaign_id": "c1", "sequence_name": "SMB", "status_final": "replied",
             "completed_at": T0, "attempt_num": 1, "instantly_lead_id": "L7", "reason": "test"}
    second = {**first, "status_final": "in_workspace", "attempt_num": 2, "completed_at": T0 + dt.timedelta(days=181)}
    store.record_history([first])
    store.record_history([second])
    store.record_history([second, {**first, "attempt_num": None}])  # re-run; an orphan copy of attempt 1
    rows = raw_warehouse.query("SELECT attempt_num, status_final FROM `{ds}.ops_lead_history` ORDER BY attempt_num",
                               label="t")
    assert rows == [{"attempt_num": 1, "status_final": "replied"}, {"attempt_num": 2, "status_final": "in_workspace"}]


def test_dead_letters_count_retries_then_resolve(raw_warehouse: Warehouse, settings: Settings) -> None:
    """The same failing operation is one dead letter whose retry count grows; a success closes it."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "r1", T0)
    letter = {"id": dead_letter_id("topup", "add_lead", "x@example.com"), "phase": "topup", "operation": "add_lead",
              "email": "x@example.com", "campaign_id": "c1", "instantly_lead_id": None, "http_status": 503,
              "error_text": "unavailable", "resolve": False, "give_up_reason": None}
    store.record_dead_letters([letter], "t")
    store.record_dead_letters([letter], "t")
    (open_letter,) = store.open_dead_letters()
    assert open_letter["retry_count"] == 1
    store.record_dead_letters([{**letter, "resolve": True}], "t")
    assert store.open_dead_letters() == []


def test_lock_is_exclusive_until_its_lease_ends(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A second run cannot take a held lock; after the lease it can; release frees it at once."""
    build(raw_warehouse, settings)
    ttl = dt.timedelta(minutes=60)
    assert Store(raw_warehouse, "first", T0).acquire_lock(ttl) is None
    assert Store(raw_warehouse, "second", T0 + dt.timedelta(minutes=59)).acquire_lock(ttl) == "first"
    assert Store(raw_warehouse, "third", T0 + dt.timedelta(minutes=61)).acquire_lock(ttl) is None
    Store(raw_warehouse, "third", T0).release_lock()
    assert Store(raw_warehouse, "fourth", T0 + dt.timedelta(minutes=62)).acquire_lock(ttl) is None


def test_big_batches_are_one_statement_on_both_engines(raw_warehouse: Warehouse, settings: Settings) -> None:
    """5,000 intents are one state statement (BigQuery stages them with a load job, not a bigger request)."""
    build(raw_warehouse, settings)
    store = Store(raw_warehouse, "r1", T0)
    rows = [{"email": f"bulk{i}@example.com", "op": "upsert", "campaign_id": "c1", "status": "pending",
             "attempt_num": 1} for i in range(5000)]
    before = raw_warehouse.stats.total
    store.apply_state(rows, "t")
    assert raw_warehouse.stats.total == before + 1
    assert len(store.read_state()) == 5000
    if raw_warehouse.engine == "bigquery":
        assert getattr(raw_warehouse, "load_jobs", 0) == 1
        tables = [t.table_id for t in raw_warehouse.client.list_tables(raw_warehouse.dataset)]  # type: ignore[attr-defined]
        assert not [t for t in tables if t.startswith("_stage_")], "staging table left behind"


def test_state_row_inserted_without_attempt_follows_the_history(raw_warehouse: Warehouse,
                                                                settings: Settings) -> None:
    """A state row inserted without an attempt number (an adopted lead) is the attempt after the address's
    last one in history, so its outcome can never be merged into an earlier attempt's history row."""
    build(raw_warehouse, settings)
    add_history(raw_warehouse, "back@example.com", T0 - dt.timedelta(days=200), attempt=1)
    store = Store(raw_warehouse, "r1", T0)
    store.apply_state([{"email": "back@example.com", "op": "upsert", "campaign_id": "c1", "status": "active"},
                       {"email": "new@example.com", "op": "upsert", "campaign_id": "c1", "status": "active"}], "t")
    assert {r.email: r.attempt_num for r in store.read_state()} == {"back@example.com": 2, "new@example.com": 1}
