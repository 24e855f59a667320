"""The sync end to end: the simulator plus a real warehouse (DuckDB file, and BigQuery via the emulator)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.demo_data import generate_source_rows
from tests.conftest import make_settings
from tests.helpers import add_dnc, add_sources, build, hold_lock, lead
from tests.invariants import World, table_contents

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"  # example ids, as in the README
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"


@pytest.fixture
def world(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="300",
                             target_new_leads_per_run="120", instantly_api_key="sim-key")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    build(raw_warehouse, settings, list(generate_source_rows(1500, seed=3)), as_of=START)
    add_dnc(raw_warehouse, domain=str(next(generate_source_rows(1, seed=3))["domain"]))
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        yield World(raw_warehouse, sim, client, settings)
    finally:
        client.close()
        sim.stop()


def test_lifecycle_120_days_keeps_every_invariant(world: World) -> None:
    """Over 120 simulated days of runs, invariants 1-6 hold after every run, and the cycle really turns."""
    if world.warehouse.engine == "bigquery" and not os.environ.get("SYNC_FULL"):
        pytest.skip("DuckDB runs the 120 days in the default suite (the same SQL); SYNC_FULL=1 runs them on the "
                    "emulator too (the reliability samples run whole lifecycles there)")
    # The emulator lane runs every 8th day (the suite's 10 minutes); SYNC_FULL=1 runs every 4th there too.
    step = 4 if world.warehouse.engine == "duckdb" or os.environ.get("SYNC_FULL") else 8
    totals: dict[str, int] = {}
    for day in range(0, 121, step):
        result = world.run_checked()
        for key, value in result.report.phase("drain").counts.items():
            totals[key] = totals.get(key, 0) + value
        totals["added"] = totals.get("added", 0) + result.report.added
        if day % (step * 5) == 0:
            world.run_checked(dry_run=True)
        world.sim.advance(step)
    assert totals["added"] > 600
    for outcome in ("completed", "replied", "bounced", "unsubscribed", "stale"):
        assert totals.get(f"drained:{outcome}", 0) > 0, (outcome, totals)
    second = world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_lead_history` WHERE attempt_num = 2",
                                   label="test")[0]["n"]
    assert second > 0, "leads whose cooldown ran out were not picked again"


def test_segments_route_at_the_threshold(world: World) -> None:
    """Revenue 999,999 goes to the SMB campaign, 1,000,000 to Midsize, unknown revenue to SMB."""
    add_sources(world.warehouse, [lead("under@threshold.example", Decimal(999_999), first_name="Ünder"),
                                  lead("at@threshold.example", Decimal(1_000_000)),
                                  lead("unknown@threshold.example", None)])
    world.run_checked(target_new_leads_per_run=2000, inventory_cap=2000)
    where = {lead["email"]: lead["campaign"] for lead in world.sim.leads()}
    assert where["under@threshold.example"] == SMB
    assert where["at@threshold.example"] == MIDSIZE
    assert where["unknown@threshold.example"] == SMB


def test_cap_is_never_exceeded_even_when_target_is_larger(world: World) -> None:
    """A target far above the room adds exactly up to the cap, and a second run adds nothing."""
    first = world.run_checked(target_new_leads_per_run=1000)
    assert world.sim.lead_count() == 300 and first.report.added == 300
    second = world.run_checked(target_new_leads_per_run=1000)
    assert second.report.added == 0 and world.sim.lead_count() == 300


def test_second_run_with_nothing_new_changes_nothing(world: World) -> None:
    """At the cap and with no time passing, a second run sends no write and changes no row but its log."""
    world.run_checked(target_new_leads_per_run=300)
    before = table_contents(world.warehouse)
    log_position = len(world.sim.request_log)
    result = world.run_checked(target_new_leads_per_run=300)
    writes = [r.endpoint for r in world.sim.request_log[log_position:] if r.method != "GET"
              and r.endpoint != "POST /leads/list"]
    assert writes == [] and result.report.api_writes == 0
    after = table_contents(world.warehouse)
    for table in after:
        if table not in ("ops_run_log", "ops_run_lock"):
            assert after[table] == before[table], table
    assert len(after["ops_run_log"]) == len(before["ops_run_log"]) + 1


def test_dry_run_writes_nothing_and_prints_the_plan(world: World) -> None:
    """DRY_RUN counts zero writes at both edges, and its plan matches what the real run then does."""
    world.run_checked()
    world.sim.advance(20)
    dry = world.run_checked(dry_run=True)
    assert dry.report.api_writes == 0 and dry.report.warehouse_writes == 0
    text = dry.report.render_text()
    assert "would drain" in text and "would add" in text and "@" not in text
    real = world.run_checked()
    planned = {k.split(" ", 1)[1]: v for k, v in dry.report.phase("drain").plan.items() if k.startswith("drain ")}
    done = {k.split(":", 1)[1]: v for k, v in real.report.phase("drain").counts.items() if k.startswith("drained:")}
    assert planned == done


def test_summary_and_run_log_name_the_slot(world: World) -> None:
    """The slot the workflow's gate chose is the text summary's second line, the Markdown summary's first row,
    and is kept in the run log; a run given no slot (a local run) shows no slot."""
    slot = "Fri 2026-07-17 18:00 EDT (fired Fri 22:07 UTC, started 24 min later)"
    result = run_sync(world.settings, world.warehouse, world.client, now=world.sim.now, slot=slot)
    assert result.exit_code == ExitCode.OK
    assert result.report.render_text().splitlines()[1] == f"  slot: {slot}"
    assert result.report.render_markdown().splitlines()[2:5] == ["| | |", "|---|---|", f"| Slot | {slot} |"]
    logged = world.warehouse.query("SELECT summary_json FROM `{ds}.ops_run_log` WHERE run_id = @run_id",
                                   {"run_id": result.report.run_id}, label="test")
    assert json.loads(logged[0]["summary_json"])["slot"] == slot
    world.sim.advance(1)
    assert "slot" not in world.run().report.render_text().splitlines()[1]
    assert "| Slot |" not in world.run().report.render_markdown()


def test_unsubscribe_goes_to_dnc_before_the_delete(world: World) -> None:
    """An unsubscribed lead is on the DNC list, with a history row, and is never added again."""
    if world.warehouse.engine == "bigquery" and not os.environ.get("SYNC_FULL"):
        pytest.skip("DuckDB proves it in the default suite (same SQL); SYNC_FULL=1 runs it on the emulator")
    world.run_checked()
    some = world.sim.leads()[0]
    world.sim.finish_lead(str(some["id"]), "unsubscribed")
    world.run_checked()
    rows = world.warehouse.query("SELECT source FROM `{ds}.ops_dnc` WHERE email = @e", {"e": some["email"]},
                                 label="test")
    assert rows and rows[0]["source"] == "instantly_unsubscribe"
    history = world.warehouse.query("SELECT status_final FROM `{ds}.ops_lead_history` WHERE instantly_lead_id = @i",
                                    {"i": some["id"]}, label="test")
    assert [h["status_final"] for h in history] == ["unsubscribed"]
    assert world.sim.lead(str(some["id"])) is None
    for _ in range(4):  # 120 days: long after any cooldown
        world.sim.advance(30)
        world.run_checked()
    assert all(lead["email"] != some["email"] for lead in world.sim.leads())


def test_paused_campaign_is_skipped_with_a_warning(world: World) -> None:
    """A paused Midsize campaign gets no leads, and the summary says how to fix it."""
    world.sim.set_campaign_status(MIDSIZE, 2)
    result = world.run_checked()
    assert world.sim.lead_count(MIDSIZE) == 0 and world.sim.lead_count(SMB) > 0
    assert any("Midsize campaign is paused" in w and "Resume" in w for w in result.report.warnings)
    allowed = world.run_checked(allow_paused_campaigns=True)
    assert world.sim.lead_count(MIDSIZE) > 0 and allowed.exit_code == ExitCode.OK


def test_two_runs_started_together_exactly_one_acts(world: World) -> None:
    """Two runs started at the same moment on one warehouse: one acts, the other exits with LOCK_HELD."""
    barrier = threading.Barrier(2)
    results: list[SyncResult] = []

    def go() -> None:
        barrier.wait()
        results.append(world.run())

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    codes = sorted(int(r.exit_code) for r in results)
    assert codes == [ExitCode.OK, ExitCode.LOCK_HELD], [r.report.render_text() for r in results]
    assert world.sim.lead_count() == 120


def test_lock_of_a_killed_run_expires(world: World) -> None:
    """A lock left by a run on another machine blocks (exit 3, saying who and how to break it) until its
    lease (LOCK_TTL_MINUTES, 30 by default) has passed, then is taken over."""
    hold_lock(world.warehouse, "killed", world.sim.now, world.sim.now + dt.timedelta(minutes=30), 4242, "runner-b")
    held = world.run()
    assert held.exit_code == ExitCode.LOCK_HELD
    assert held.report.error == (
        "another run holds the lock: run killed (pid 4242 on runner-b, since 15:00 UTC, lease until 2026-03-02 15:30 "
        "UTC; whether it runs cannot be seen from here). A killed run's lease ends after LOCK_TTL_MINUTES=30; to end "
        "it now: `python sync_once.py --break-lock`")
    world.sim.advance(31 / 1440)
    assert world.run().exit_code == ExitCode.OK


def test_missing_campaign_fails_the_run_with_the_fix(world: World) -> None:
    """A campaign id that Instantly does not know fails the run, naming the setting to fix."""
    result = world.run(smb_campaign_id="0c46e0c9-c1f9-4201-a8d6-6221bafeada6")
    assert result.exit_code == ExitCode.RUN_FAILED
    assert "SMB_CAMPAIGN_ID" in (result.report.error or "")
    assert world.sim.lead_count() == 0


def test_sync_once_reports_lock_held_when_the_duckdb_file_is_busy(tmp_path: Path) -> None:
    """sync_once exits 3 when another process holds the DuckDB warehouse file."""
    path = tmp_path / "busy.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from coldsync.warehouse.duckdb import DuckDBWarehouse; "
        f"w = DuckDBWarehouse({str(path)!r}, 'coldsync'); print('ready', flush=True); time.sleep(30)")],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        env = {"DUCKDB_PATH": str(path), "PATH": "/usr/bin:/bin", "INSTANTLY_API_KEY": "sim-key",
               "SMB_CAMPAIGN_ID": SMB, "MIDSIZE_CAMPAIGN_ID": MIDSIZE}
        out = subprocess.run([sys.executable, "sync_once.py"], cwd=Path(__file__).resolve().parent.parent,
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == ExitCode.LOCK_HELD, out.stderr
    finally:
        holder.kill()
        holder.wait()


def test_bad_setting_stops_sync_once_before_anything(tmp_path: Path) -> None:
    """A bad setting exits 2 with the setting named, and creates no warehouse file."""
    env = {"DUCKDB_PATH": str(tmp_path / "never.duckdb"), "PATH": "/usr/bin:/bin", "BATCH_SIZE": "5000"}
    out = subprocess.run([sys.executable, "sync_once.py"], cwd=Path(__file__).resolve().parent.parent, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == ExitCode.BAD_CONFIG
    assert "BATCH_SIZE='5000'" in out.stderr and "at most 1000" in out.stderr
    assert not (tmp_path / "never.duckdb").exists()


def test_summary_counts_skipped_source_rows_by_reason(world: World) -> None:
    """The run summary counts the source rows v_source_rejects lists, per reason, and names no address."""
    result = world.run_checked()
    expected = world.warehouse.query("SELECT reason, COUNT(*) AS n FROM `{ds}.v_source_rejects` GROUP BY reason",
                                     label="test")
    assert result.report.source_rejects == {str(r["reason"]): int(r["n"]) for r in expected}
    assert sum(result.report.source_rejects.values()) > 0
    line = next(x for x in result.report.render_text().splitlines() if "v_source_rejects" in x)
    assert "@" not in line


def test_run_near_its_lease_stops_before_writing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that has used up its share of the lock lease writes nothing more, fails, and frees the lock."""
    import coldsync.sync

    monkeypatch.setattr(coldsync.sync, "LEASE_SHARE", 0.0)
    result = world.run()
    assert result.exit_code == ExitCode.RUN_FAILED and "lock lease" in (result.report.error or "")
    assert world.sim.lead_count() == 0
    assert world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_inst_state`", label="t")[0]["n"] == 0
    monkeypatch.setattr(coldsync.sync, "LEASE_SHARE", 0.75)
    assert world.run_checked().report.added == 120
