"""Ctrl-C and SIGTERM during a real `sync_once.py` run: one line, the run log says interrupted, the lock is
free, exit 130; the next run repairs whatever was left."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from coldsync.cli import handle_signals
from coldsync.instantly.simulator import FaultSpec
from coldsync.warehouse.base import WarehouseError
from coldsync.warehouse.duckdb import DuckDBWarehouse
from proof.concurrency import _prepare_duckdb
from proof.crash import CRASH_SETTINGS, build_rig
from proof.engines import proof_settings
from proof.harness import new_simulator
from proof.sigkill import _with_warehouse, start_sync, sync_env
from tests.helpers import lock_rows
from tests.invariants import check_after_run, check_no_duplicates, snapshot


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_is_one_line_exit_130_logged_interrupted_and_the_next_run_repairs(
        tmp_path: Path, signum: signal.Signals) -> None:
    """A signal while the run talks to Instantly (each answer slowed to 0.3 s): exit 130, one stderr line, a
    run-log row `interrupted`, the lock free; the next run exits 0 and every invariant holds after it."""
    path = _prepare_duckdb(tmp_path / "interrupt")
    settings = proof_settings(tmp_path / "interrupt", **CRASH_SETTINGS)
    sim = new_simulator(5, dt.datetime.now(dt.UTC).replace(microsecond=0), sequence_days=10)
    sim.set_fault("*", FaultSpec(latency=0.3))
    env = sync_env(path, sim.base_url)
    try:
        before = _with_warehouse(path, lambda w: snapshot(w, sim, settings))
        process = start_sync(env)
        deadline = time.monotonic() + 60
        while len(sim.request_log) < 3 and time.monotonic() < deadline:  # it holds the lock and is working
            time.sleep(0.05)
        os.kill(process.pid, signum)
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 130
        assert err.splitlines() == [f"Interrupted: interrupted by {signum.name}; the next run goes on from where this "
                                    "one stopped (run log: interrupted; exit 130)"]
        logged = _with_warehouse(path, lambda w: w.query(
            "SELECT outcome, error_text FROM `{ds}.ops_run_log` WHERE mode = 'live'", label="t"))
        assert logged == [{"outcome": "interrupted", "error_text": f"interrupted by {signum.name}; the next run goes "
                                                                   "on from where this one stopped"}]
        assert _with_warehouse(path, lock_rows) == [{"name": "sync", "run_id": "", "holder_pid": None,
                                                     "holder_host": None}]

        sim.set_fault("*", FaultSpec())
        after_interrupt = _with_warehouse(path, lambda w: snapshot(w, sim, settings))
        following = start_sync(env)
        _out, err = following.communicate(timeout=120)
        assert following.returncode == 0, err
        problems = _with_warehouse(path, lambda w: check_after_run(w, sim, settings, after_interrupt,
                                                                  dt.datetime.now(dt.UTC)) + check_no_duplicates(w))
        assert problems == []
        assert before.leads == {} and len(sim.leads()) > 0
    finally:
        sim.stop()


def test_a_signal_that_a_driver_turns_into_its_own_error_still_ends_the_run_interrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM arrives inside a warehouse statement whose driver reports it as its own error (WarehouseError, not
    the KeyboardInterrupt): the run still ends `interrupted` with exit 130, logs it, and frees the lock."""
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    rig = build_rig(warehouse, tmp_path)
    try:
        inner = rig.crashing_warehouse.query

        def query(sql: str, params: Any = None, *, label: str) -> list[dict[str, Any]]:
            if label == "state.read":
                try:
                    signal.raise_signal(signal.SIGTERM)
                except KeyboardInterrupt as exc:
                    raise WarehouseError(f"{label}: InterruptException: INTERRUPT Error: Interrupted!") from exc
            return inner(sql, params, label=label)

        monkeypatch.setattr(rig.crashing_warehouse, "query", query)
        with handle_signals():
            record = rig.run(check=False, expect_success=False)
        assert record.exit_code == 130 and record.report is not None
        assert (record.report.outcome, record.report.error) == (
            "interrupted", "interrupted by SIGTERM; the next run goes on from where this one stopped")
        assert warehouse.query("SELECT outcome FROM `{ds}.ops_run_log` WHERE mode = 'live'", label="t") == [
            {"outcome": "interrupted"}]
        assert lock_rows(warehouse) == [{"name": "sync", "run_id": "", "holder_pid": None, "holder_host": None}]
    finally:
        rig.close()
        warehouse.close()


def test_ctrl_c_while_the_embedded_demo_is_built_is_one_line_and_the_next_run_builds_it_whole(
        tmp_path: Path) -> None:
    """SIGINT during the first embedded run's demo build (DuckDB inserting the 150,000-row source): exit 130,
    one `Interrupted by SIGINT` line and no traceback; the partial source is emptied, so the next build
    starts over instead of keeping a partial demo for good."""
    import subprocess
    import sys

    from coldsync.settings import SPECS

    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}
           and k not in ("GOOGLE_APPLICATION_CREDENTIALS", "GITHUB_STEP_SUMMARY")}
    env.update(DUCKDB_PATH=str(tmp_path / "fresh.duckdb"), ROUTES_FILE="none", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "sync_once.py"], cwd=repo, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "fresh.duckdb").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # into the source inserts (the whole build takes well over a minute)
    os.kill(process.pid, signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == ("Interrupted by SIGINT: stopped; the next run repairs whatever was left "
                                    "(exit 130)")
    warehouse = DuckDBWarehouse(tmp_path / "fresh.duckdb", "coldsync")
    try:
        assert warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.source_leads`", label="t") == [{"n": 0}]
    finally:
        warehouse.close()
