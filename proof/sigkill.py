"""Real kills: `sync_once.py` as its own process, SIGKILLed at random moments, then run until it settles.

The simulator runs in this process on a local port; the subprocess reaches it through
INSTANTLY_BASE_URL and INSTANTLY_API_KEY and opens the DuckDB file at DUCKDB_PATH (so the harness
opens the file only between runs: DuckDB lets one process hold it). A kill is aimed at a random
request of the run: when the simulator has applied that request it either kills the process before
answering (the answer is lost) or arms a timer of a few milliseconds (the kill lands in whatever the
run does next: a warehouse statement, the next request, the run log). Everything runs in real time.

After a kill that left the run lock held, the very next run takes it over at once (exit 0): on DuckDB
the lock row names the holder's pid and host, and a holder in another process that no longer holds the
warehouse file is gone (coldsync.runlock). `proof.concurrency.killed_holder_takeover` times it once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldsync.instantly.simulator import InstantlySimulator, RequestRecord
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from proof.crash import CRASH_SETTINGS
from proof.engines import proof_settings
from proof.harness import API_KEY, MIDSIZE, SMB, Tally, new_simulator
from tests.helpers import add_dnc, build
from tests.invariants import check_after_run, check_converged, check_no_duplicates, snapshot, table_contents

REPO = Path(__file__).resolve().parent.parent


def sync_env(path: Path, base_url: str, **extra: Any) -> dict[str, str]:
    """The environment of a sync_once.py subprocess: this DuckDB file, this simulator, nothing else."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DUCKDB_PATH": str(path), "BQ_PROJECT": "",
           "INSTANTLY_BASE_URL": base_url, "INSTANTLY_API_KEY": API_KEY, "SMB_CAMPAIGN_ID": SMB,
           "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "LOG_LEVEL": "WARNING", "INSTANTLY_MAX_PER_SECOND": "100",
           "INSTANTLY_MAX_PER_MINUTE": "6000"}
    env.update({k.upper(): str(v) for k, v in {**CRASH_SETTINGS, **extra}.items()})
    return env


def start_sync(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "sync_once.py", "--json"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class KillSwitch:
    """A simulator listener that SIGKILLs the running sync when the chosen request has been applied."""

    def __init__(self, sim: InstantlySimulator) -> None:
        self.sim = sim
        self.process: subprocess.Popen[str] | None = None
        self.target = 0
        self.delay: float | None = None
        self.seen = 0
        self.fired: str | None = None
        self._lock = threading.Lock()
        sim.add_listener(self._on_request)

    def arm(self, process: subprocess.Popen[str], target: int, delay: float | None) -> None:
        with self._lock:
            self.process, self.target, self.delay, self.seen, self.fired = process, target, delay, 0, None

    def _kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)

    def _on_request(self, record: RequestRecord) -> None:
        with self._lock:
            if self.process is None:
                return
            self.seen += 1
            if self.seen != self.target:
                return
            self.fired = record.endpoint
            if self.delay is None:
                self._kill()  # before the answer leaves: the request took effect, its answer is lost
            else:
                threading.Timer(self.delay, self._kill).start()


def _open(path: Path) -> DuckDBWarehouse:
    for _ in range(100):  # the killed process's file lock goes with it; the OS may take a moment
        try:
            return DuckDBWarehouse(path, "coldsync")
        except Exception:
            time.sleep(0.05)
    return DuckDBWarehouse(path, "coldsync")


def _with_warehouse(path: Path, action: Callable[[DuckDBWarehouse], Any]) -> Any:
    warehouse = _open(path)
    try:
        return action(warehouse)
    finally:
        warehouse.close()


def sigkill_trials(workdir: Path, tally: Tally, *, trials: int = 12, seed: int = 1) -> None:
    """`trials` runs of sync_once.py killed at random moments, each followed by runs until nothing changes.

    A kill aimed past the end of its run (the run had less to do than guessed) does not count: another
    trial follows, up to three times `trials`."""
    folder = workdir / "sigkill"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "wh.duckdb"
    settings = proof_settings(folder, lock_ttl_minutes=1, **CRASH_SETTINGS)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sources = list(generate_source_rows(400, seed=3))

    def setup(warehouse: DuckDBWarehouse) -> None:
        build(warehouse, settings, sources, as_of=None)
        add_dnc(warehouse, domain=str(sources[0]["domain"]))

    _with_warehouse(path, setup)
    sim = new_simulator(seed, now, sequence_days=10)
    switch = KillSwitch(sim)
    rng = random.Random(seed)
    env = sync_env(path, sim.base_url, lock_ttl_minutes=1)

    working_runs: list[int] = []  # requests sent by recent runs that had work to do

    def one_run(context: str, kill: tuple[int, float | None] | None = None) -> tuple[int, float]:
        before = _with_warehouse(path, lambda w: snapshot(w, sim, settings))
        position = len(sim.request_log)
        started = time.monotonic()
        process = start_sync(env)
        if kill is not None:
            switch.arm(process, *kill)
        try:
            out, err = process.communicate(timeout=120)
        finally:
            switch.process = None
        seconds = time.monotonic() - started
        tally.add("subprocess runs")
        tally.max_run_seconds = max(tally.max_run_seconds, seconds)
        problems = _with_warehouse(path, lambda w: check_after_run(w, sim, settings, before,
                                                                  dt.datetime.now(dt.UTC)))
        tally.violations.extend(f"{context}: {p}" for p in problems)
        if kill is None and process.returncode not in (0, 3):
            tally.violations.append(f"{context}: sync_once exited {process.returncode}: {err[-500:]}")
        if process.returncode == 0:
            report = json.loads(out)
            if report.get("api_writes"):
                working_runs.append(len(sim.request_log) - position)
            if report.get("outcome") != "success":
                tally.violations.append(f"{context}: run ended {report.get('outcome')}: {report.get('error')}")
        return process.returncode, seconds

    def fingerprint() -> Any:
        tables = _with_warehouse(path, table_contents)
        tables.pop("ops_run_log")
        tables.pop("ops_run_lock")
        leads = sorted(json.dumps(lead, sort_keys=True, default=str) for lead in sim.leads())
        return tables, leads

    one_run("sigkill: first run")
    trial = killed = 0
    try:
        while killed < trials and trial < trials * 3:
            trial += 1
            context = f"sigkill trial {trial}"
            leads = [lead for lead in sim.leads() if lead.get("status") == 1]
            for lead, fate in zip(leads, rng.sample(["unsubscribed", "bounced", "completed", "replied"], 2),
                                  strict=False):
                sim.finish_lead(str(lead["id"]), fate)  # type: ignore[arg-type]
            target = rng.randint(1, max(min(working_runs[-3:]) - 1, 1))
            delay = None if rng.random() < 0.5 else rng.uniform(0.0, 0.05)
            code, _ = one_run(context, (target, delay))
            if code != -signal.SIGKILL:
                tally.add("kills that came too late (the run had ended)")
                continue
            killed += 1
            tally.add("processes killed")
            tally.add("kills before the answer" if delay is None else "kills between operations")
            held = _with_warehouse(path, lambda w: w.query(
                "SELECT run_id FROM `{ds}.ops_run_lock` WHERE expires_at >= CURRENT_TIMESTAMP()", label="proof"))
            if held:  # on DuckDB a lease whose process is gone is taken over by the very next run
                code, _ = one_run(f"{context}: run right after the kill")
                tally.add("killed runs' leases taken over at once" if code == 0 else "runs refused by a dead lease")
                if code != 0:
                    tally.violations.append(f"{context}: the run right after the kill exited {code}, not 0 (its "
                                            "holder's process is gone)")
            for number in range(1, 9):
                before = fingerprint()
                code, _ = one_run(f"{context}: follow-up run {number}")
                tally.add("subprocess follow-up runs")
                if fingerprint() == before:
                    tally.peak("most runs to settle after one kill (the last changes nothing)", number)
                    break
            else:
                tally.violations.append(f"{context}: no convergence after 8 runs")
            problems = _with_warehouse(path, lambda w: check_converged(w, sim, settings, dt.datetime.now(dt.UTC))
                                       + check_no_duplicates(w))
            tally.violations.extend(f"{context}: converged state: {p}" for p in problems)
    finally:
        sim.stop()
