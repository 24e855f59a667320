"""One writer at a time (invariant 8), across processes, and the lease a killed run leaves behind.

- DuckDB: two `sync_once.py` processes started together on one warehouse file. The simulator answers
  slowly, so the runs overlap; exactly one acts, the other exits 3 (the file is held by a running sync).
- BigQuery (emulator): two processes (`proof.worker`) run the sync at once on one dataset; the warehouse
  run lock (ops_run_lock) lets exactly one act, the other exits 3.
- A killed holder, in real time: a `sync_once.py` holding the lock (30-minute lease) is SIGKILLed; the
  next run takes the lock over at once (DuckDB: the holder's process is gone) and finishes (exit 0).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

from coldsync.instantly.simulator import FaultSpec
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from proof.crash import CRASH_SETTINGS, START
from proof.engines import Engines, proof_settings
from proof.harness import Tally, new_simulator
from proof.sigkill import REPO, KillSwitch, _with_warehouse, start_sync, sync_env
from tests.helpers import add_dnc, build
from tests.invariants import added_emails

SLOW = FaultSpec(latency=0.3)  # every request: the runs last seconds, so started together they overlap


def _prepare_duckdb(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "wh.duckdb"
    settings = proof_settings(folder, **CRASH_SETTINGS)
    sources = list(generate_source_rows(400, seed=3))

    def setup(warehouse: DuckDBWarehouse) -> None:
        build(warehouse, settings, sources, as_of=None)
        add_dnc(warehouse, domain=str(sources[0]["domain"]))

    _with_warehouse(path, setup)
    return path


def duckdb_pairs(workdir: Path, tally: Tally, *, pairs: int = 3) -> None:
    """`pairs` times: two sync_once.py processes started at once; exactly one acts."""
    path = _prepare_duckdb(workdir / "pairs-duckdb")
    sim = new_simulator(2, dt.datetime.now(dt.UTC).replace(microsecond=0), sequence_days=10)
    sim.set_fault("*", SLOW)
    env = sync_env(path, sim.base_url)
    try:
        for number in range(1, pairs + 1):
            position = len(sim.request_log)
            processes = [start_sync(env), start_sync(env)]
            for process in processes:
                process.communicate(timeout=300)
            codes = sorted(p.returncode for p in processes)
            tally.add("concurrent pairs (DuckDB, sync_once.py)")
            if codes != [0, 3]:
                tally.violations.append(f"DuckDB pair {number}: exit codes {codes}, expected one 0 and one 3")
            sent = added_emails(sim, position)
            if len(sent) != len(set(sent)):
                tally.violations.append(f"DuckDB pair {number}: an address was sent twice")
            for lead in sim.leads()[:3]:
                sim.finish_lead(str(lead["id"]), "completed")  # the next pair has work again
    finally:
        sim.stop()


def bigquery_pairs(engines: Engines, tally: Tally, *, pairs: int = 3) -> None:
    """`pairs` times: two processes run the sync at the same moment on one emulator dataset."""
    warehouse = engines.open("bigquery", "pairs-bigquery")
    settings = proof_settings(engines.workdir / "pairs-bigquery", bq_dataset=warehouse.dataset, **CRASH_SETTINGS)
    sources = list(generate_source_rows(400, seed=3))
    build(warehouse, settings, sources, as_of=START)
    emulator = engines.emulator
    sim = new_simulator(2, START, sequence_days=10)
    sim.set_fault("*", SLOW)
    try:
        for number in range(1, pairs + 1):
            now = START + dt.timedelta(hours=number)
            args = [sys.executable, "-m", "proof.worker", emulator.endpoint, emulator.project, warehouse.dataset,
                    sim.base_url, now.isoformat()]
            processes = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for _ in range(2)]
            outputs = [p.communicate(timeout=600) for p in processes]
            codes = sorted(p.returncode for p in processes)
            tally.add("concurrent pairs (BigQuery emulator, two processes)")
            if codes != [0, 3]:
                details = [json.loads(out) if out.strip() else err[-300:] for out, err in outputs]
                tally.violations.append(f"BigQuery pair {number}: exit codes {codes}, expected one 0 and one 3: "
                                        f"{details}")
            for lead in sim.leads()[:3]:
                sim.finish_lead(str(lead["id"]), "completed")
    finally:
        sim.stop()
        warehouse.close()


def killed_holder_takeover(workdir: Path, tally: Tally) -> float | None:
    """Kill a run holding the lock (30-minute lease); return the seconds until the next run had taken it
    over and finished (real time): on DuckDB a holder whose process is gone blocks nobody."""
    path = _prepare_duckdb(workdir / "lease")
    sim = new_simulator(4, dt.datetime.now(dt.UTC).replace(microsecond=0), sequence_days=10)
    switch = KillSwitch(sim)
    env = sync_env(path, sim.base_url, lock_ttl_minutes=30)
    try:
        process = start_sync(env)
        switch.arm(process, 1, None)  # the lock is taken before the first request: killed while holding it
        process.communicate(timeout=120)
        killed_at = time.monotonic()
        if process.returncode != -9:
            tally.violations.append(f"lease: the run to kill ended with {process.returncode}")
            return None
        tally.add("processes killed")
        attempt = start_sync(env)
        attempt.communicate(timeout=120)
        if attempt.returncode != 0:
            tally.violations.append(f"lease: the run after the kill exited {attempt.returncode}, not 0")
            return None
        tally.add("killed runs' leases taken over by the next run")
        return time.monotonic() - killed_at
    finally:
        switch.process = None
        sim.stop()
