"""The run lock (coldsync.runlock): a compare-and-set on one permanent row, dead DuckDB holders taken over at
once, and `--break-lock`."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from coldsync.runlock import (
    ACQUIRE_LOCK_SQL,
    LOCK_FREE_AT,
    LOCK_ROW_SQL,
    BreakDecision,
    Holder,
    LockRow,
    decide_break,
    may_take,
)
from coldsync.settings import Settings
from coldsync.store import Store
from coldsync.warehouse.base import Param, Warehouse, WarehouseWrapper
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import T0, build, hold_lock, lock_rows

REPO = Path(__file__).resolve().parent.parent
TTL = dt.timedelta(minutes=30)
HERE = socket.gethostname()

# The acquisition this project used before schema v6 (kept here to show what it did under overlap): a
# MERGE that inserts the row when none exists (release deleted it).
OLD_ACQUIRE_SQL = """
MERGE `{ds}.ops_run_lock` AS t
USING (SELECT @name AS name) AS s
ON t.name = s.name
WHEN MATCHED AND t.expires_at < @now THEN
  UPDATE SET run_id = @run_id, acquired_at = @now, expires_at = @expires_at
WHEN NOT MATCHED THEN
  INSERT (name, run_id, acquired_at, expires_at) VALUES (@name, @run_id, @now, @expires_at)
"""


class ReadsTogether(WarehouseWrapper):
    """Holds each acquirer after its read of the lock row until the other has read it too: both see the
    lock free, both send their UPDATE (the overlap that a check-then-act lock loses)."""

    def __init__(self, inner: Warehouse, barrier: threading.Barrier) -> None:
        super().__init__(inner)
        self.barrier = barrier
        self.waited = False

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        rows = self.inner.query(sql, params, label=label)
        if label == "lock.read" and not self.waited:
            self.waited = True
            self.barrier.wait(timeout=60)
        return rows


def test_overlapping_acquisitions_leave_exactly_one_holder(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Two runs that both read the lock free, then both send their compare-and-set (threads, on DuckDB and on
    the BigQuery emulator): one gets the lock, the other is told that run holds it, and the table has one row."""
    build(raw_warehouse, settings)
    barrier = threading.Barrier(2)
    results: dict[str, str | None] = {}

    def acquire(run_id: str, pid: int) -> None:
        store = Store(ReadsTogether(raw_warehouse, barrier), run_id, T0, me=Holder(pid, "runner"))
        results[run_id] = store.acquire_lock(TTL)

    threads = [threading.Thread(target=acquire, args=(run_id, pid)) for run_id, pid in (("run-a", 101), ("run-b", 102))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    (winner,) = [run_id for run_id, holder in results.items() if holder is None]
    loser = "run-b" if winner == "run-a" else "run-a"
    assert results == {winner: None, loser: winner}
    assert lock_rows(raw_warehouse) == [{"name": "sync", "run_id": winner, "holder_pid": 101 if winner == "run-a"
                                         else 102, "holder_host": "runner"}]


def _bind(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a rendered DuckDB statement names ($name)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}


def test_two_overlapping_transactions_the_old_merge_made_two_holders_the_update_one(tmp_path: Path,
                                                                                   settings: Settings) -> None:
    """Under snapshot isolation (DuckDB's MVCC, the isolation BigQuery documents for DML), two overlapping
    transactions each running the old MERGE both insert and both commit: two 'sync' rows. Each running the
    compare-and-set UPDATE on the permanent row: the second conflicts, and retried after the first commits it
    changes 0 rows: one holder."""
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings)
    old, cas, row = (warehouse.render(sql) for sql in (OLD_ACQUIRE_SQL, ACQUIRE_LOCK_SQL, LOCK_ROW_SQL))
    catalog = warehouse.catalog
    warehouse.close()
    db = duckdb.connect(":memory:")
    db.execute(f"ATTACH '{tmp_path / 'wh.duckdb'}' AS \"{catalog}\"")
    db.execute("SET TimeZone = 'UTC'")
    a, b = db.cursor(), db.cursor()

    def params(run_id: str) -> dict[str, Any]:
        return {"name": "sync", "run_id": run_id, "now": T0, "expires_at": T0 + TTL, "pid": 1, "host": "h",
                "seen_run_id": "", "seen_expires_at": LOCK_FREE_AT, "free_at": LOCK_FREE_AT}

    table = f'"{catalog}".coldsync.ops_run_lock'
    db.execute(f"DELETE FROM {table}")  # noqa: S608 (the old design: released = no row)
    a.execute("BEGIN TRANSACTION")
    b.execute("BEGIN TRANSACTION")
    assert a.execute(old, _bind(old, params("A"))).fetchall() == [(1,)]
    assert b.execute(old, _bind(old, params("B"))).fetchall() == [(1,)]
    a.execute("COMMIT")
    b.execute("COMMIT")
    holders = db.execute(f"SELECT run_id FROM {table} ORDER BY run_id").fetchall()  # noqa: S608
    assert holders == [("A",), ("B",)]  # both runs believe they hold the lock

    db.execute(f"DELETE FROM {table}")  # noqa: S608
    db.execute(row, _bind(row, params("")))  # setup.py's permanent free row
    a.execute("BEGIN TRANSACTION")
    b.execute("BEGIN TRANSACTION")
    assert a.execute(cas, _bind(cas, params("A"))).fetchall() == [(1,)]
    with pytest.raises(duckdb.TransactionException, match="Conflict on update"):
        b.execute(cas, _bind(cas, params("B")))
    a.execute("COMMIT")
    b.execute("ROLLBACK")
    assert b.execute(cas, _bind(cas, params("B"))).fetchall() == [(0,)]  # the retry: the row is no longer free
    holders = db.execute(f"SELECT run_id FROM {table} ORDER BY run_id").fetchall()  # noqa: S608
    assert holders == [("A",)]
    db.close()


def test_a_duckdb_lease_whose_process_is_gone_is_taken_over_at_once(tmp_path: Path) -> None:
    """A child process takes the lock (30-minute lease) and exits without releasing it; one minute later a run
    in this process takes it over at once, its own pid and host in the row."""
    settings = make_settings(tmp_path)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings)
    warehouse.close()
    child = subprocess.run([sys.executable, "-c", (
        "import datetime as dt, os; from coldsync.store import Store; "
        "from coldsync.warehouse.duckdb import DuckDBWarehouse; "
        f"w = DuckDBWarehouse({str(tmp_path / 'wh.duckdb')!r}, 'coldsync'); "
        f"print(Store(w, 'killed-run', dt.datetime.fromisoformat({T0.isoformat()!r})).acquire_lock("
        "dt.timedelta(minutes=30)), os.getpid(), flush=True); os._exit(0)")],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    took, child_pid = child.stdout.split()
    assert took == "None"
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        assert lock_rows(warehouse) == [{"name": "sync", "run_id": "killed-run", "holder_pid": int(child_pid),
                                         "holder_host": HERE}]
        assert Store(warehouse, "next-run", T0 + dt.timedelta(minutes=1)).acquire_lock(TTL) is None
        assert lock_rows(warehouse) == [{"name": "sync", "run_id": "next-run", "holder_pid": os.getpid(),
                                         "holder_host": HERE}]
    finally:
        warehouse.close()


def _row(run_id: str = "r1", pid: int | None = 7, host: str | None = "runner-b",
         expires: dt.datetime = T0 + TTL) -> LockRow:
    return LockRow(run_id, T0, expires, pid, host)


ME = Holder(7, "runner-a")


def test_may_take_free_expired_or_a_gone_duckdb_holder_only() -> None:
    """Free or expired: taken on both engines. Held, lease running: taken only on DuckDB from another process
    on this host (BigQuery and unknown holders wait)."""
    now = T0 + dt.timedelta(minutes=10)
    assert may_take(_row("", None, None, LOCK_FREE_AT), now, "bigquery", ME) is True
    assert may_take(_row(expires=now - dt.timedelta(seconds=1)), now, "bigquery", ME) is True
    assert may_take(_row(pid=8, host="runner-a"), now, "duckdb", ME) is True
    assert may_take(_row(pid=7, host="runner-a"), now, "duckdb", ME) is False  # this very process
    assert may_take(_row(pid=8, host="runner-b"), now, "duckdb", ME) is False  # another machine: unknown
    assert may_take(_row(pid=None, host=None), now, "duckdb", ME) is False  # written before schema v6
    assert may_take(_row(pid=8, host="runner-a"), now, "bigquery", ME) is False


def test_break_lock_refuses_a_live_holder_and_asks_for_force_when_unknown() -> None:
    """--break-lock: free lock, nothing to do (0); live holder refused (3); gone or expired, broken (0); unknown
    holder: refused without --force (3), broken with it (0)."""
    now = T0 + dt.timedelta(minutes=10)
    me = Holder(os.getpid(), HERE)
    assert decide_break(_row("", None, None, LOCK_FREE_AT), now, "bigquery", me, force=False) == BreakDecision(
        False, 0, "the run lock is free: nothing to break")
    alive = decide_break(_row(pid=os.getpid(), host=HERE), now, "bigquery", me, force=True)
    assert alive == BreakDecision(False, 3, (
        f"refused: run r1 (pid {os.getpid()} on {HERE}, since 12:00 UTC, lease until 2026-06-01 12:30 UTC; still "
        "running); wait for it to end (or stop it: Ctrl-C or cancel the workflow run), then run again"))
    gone = decide_break(_row(pid=os.getpid() + 1, host=HERE), now, "duckdb", me, force=False)
    assert (gone.do_break, gone.exit_code) == (True, 0)
    expired = decide_break(_row(expires=now - dt.timedelta(minutes=1)), now, "bigquery", me, force=False)
    assert (expired.do_break, expired.exit_code) == (True, 0)
    unknown = decide_break(_row(), now, "bigquery", me, force=False)
    assert unknown == BreakDecision(False, 3, (
        "refused: run r1 (pid 7 on runner-b, since 12:00 UTC, lease until 2026-06-01 12:30 UTC; whether it runs "
        "cannot be seen from here). Check that no sync runs (GitHub: Actions > sync, no run in progress), then run "
        "`python sync_once.py --break-lock --force`"))
    assert decide_break(_row(), now, "bigquery", me, force=True) == BreakDecision(True, 0, (
        "broke the run lock of run r1 (pid 7 on runner-b, since 12:00 UTC, lease until 2026-06-01 12:30 UTC; whether "
        "it runs cannot be seen from here) (--force)"))


def test_break_lock_is_a_compare_and_set_on_what_it_read(raw_warehouse: Warehouse, settings: Settings) -> None:
    """Breaking frees the row only while holder and expiry are those read: after another run took the lock in
    between, the break changes nothing and that run keeps it."""
    build(raw_warehouse, settings)
    hold_lock(raw_warehouse, "killed", T0, T0 + TTL, 9, "runner-b")
    store = Store(raw_warehouse, "break-lock", T0 + dt.timedelta(minutes=5))
    seen = store.read_lock()
    hold_lock(raw_warehouse, "newer", T0 + dt.timedelta(minutes=4), T0 + dt.timedelta(minutes=34), 10, "runner-c")
    assert store.break_lock(seen) is False
    assert lock_rows(raw_warehouse) == [{"name": "sync", "run_id": "newer", "holder_pid": 10,
                                         "holder_host": "runner-c"}]
    assert store.break_lock(store.read_lock()) is True
    assert lock_rows(raw_warehouse) == [{"name": "sync", "run_id": "", "holder_pid": None, "holder_host": None}]


def _sync_once(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
               "ROUTES_FILE": "none", "LOG_LEVEL": "WARNING", **env}
    return subprocess.run([sys.executable, "sync_once.py", *args], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=120)


def test_break_lock_command_asks_for_force_for_a_holder_on_another_machine(tmp_path: Path) -> None:
    """`sync_once.py --break-lock` on a DuckDB lock held from another machine: exit 3 asking for --force, the row
    unchanged; with --force: exit 0, the lock free."""
    settings = make_settings(tmp_path)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings)
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    hold_lock(warehouse, "far-run", start, start + dt.timedelta(days=1), 77, "elsewhere")
    warehouse.close()
    refused = _sync_once(tmp_path, "--break-lock")
    assert refused.returncode == 3
    assert refused.stderr.strip() == (
        f"refused: run far-run (pid 77 on elsewhere, since {start:%H:%M} UTC, lease until "
        f"{start + dt.timedelta(days=1):%Y-%m-%d %H:%M} UTC; whether it runs cannot be seen from here). Check that "
        "no sync runs (GitHub: Actions > sync, no run in progress), then run "
        "`python sync_once.py --break-lock --force`")
    forced = _sync_once(tmp_path, "--break-lock", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip().endswith("whether it runs cannot be seen from here) (--force)")
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        assert lock_rows(warehouse) == [{"name": "sync", "run_id": "", "holder_pid": None, "holder_host": None}]
    finally:
        warehouse.close()
