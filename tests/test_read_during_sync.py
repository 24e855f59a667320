"""Read-only commands while a sync holds the DuckDB file: a clear "a sync is running since HH:MM" and exit 3,
never "not reachable" (DuckDB lets one process open a file at a time, even for reading)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from coldsync.instantly.simulator import FaultSpec
from coldsync.warehouse.duckdb import holder_note_path
from proof.concurrency import _prepare_duckdb
from proof.harness import new_simulator
from proof.sigkill import REPO, start_sync, sync_env


def test_report_dry_run_and_validation_during_a_sync_say_a_sync_is_running_and_exit_3(tmp_path: Path) -> None:
    """During a real sync_once.py run: `--report`, a dry run and validate_environment.py each exit 3 naming the
    sync, its pid and its start (HH:MM UTC); the sync's note beside the file is gone once it ends."""
    path = _prepare_duckdb(tmp_path / "busy")
    sim = new_simulator(6, dt.datetime.now(dt.UTC).replace(microsecond=0), sequence_days=10)
    sim.set_fault("*", FaultSpec(latency=0.5))
    env = sync_env(path, sim.base_url)
    try:
        sync = start_sync(env)
        deadline = time.monotonic() + 60
        while not sim.request_log and time.monotonic() < deadline:
            time.sleep(0.05)
        note = json.loads(holder_note_path(path).read_text(encoding="utf-8"))
        assert (note["pid"], note["command"]) == (sync.pid, "sync_once.py --json")
        since = dt.datetime.fromisoformat(note["since"])
        busy = (f"a sync is running since {since:%H:%M} UTC (sync_once.py --json, pid {sync.pid}) and holds the "
                f"DuckDB file {path}; DuckDB lets one process open the file at a time: try again when it ends")

        def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, *args], cwd=REPO, env={**env, **extra}, capture_output=True,
                                  text=True, timeout=60)

        report = run("sync_once.py", "--report")
        assert (report.returncode, report.stderr.strip()) == (3, f"Lock held: {busy}")
        dry = run("sync_once.py", DRY_RUN="true")
        assert (dry.returncode, dry.stderr.strip()) == (3, f"Lock held: {busy}")
        check = run("validate_environment.py", "--json")
        assert check.returncode == 3
        warehouse = [c for c in json.loads(check.stdout)["checks"] if c["name"] == "warehouse"]
        assert [(c["status"], c["detail"]) for c in warehouse] == [("fail", f"busy: {busy}")]
        os.kill(sync.pid, signal.SIGINT)
        sync.communicate(timeout=60)
        assert sync.returncode == 130
        assert not holder_note_path(path).exists()
    finally:
        sim.stop()
