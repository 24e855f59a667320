"""The run lock (one writer at a time): its statements, and its decisions kept pure (who holds it, may
this run take it, may it be broken). coldsync.store.Store runs the statements.

ACQUIRE_LOCK_SQL's comment says why the UPDATE is a true compare-and-set on BigQuery. The lease
(LOCK_TTL_MINUTES) defaults to the sync job's timeout (coldsync.settings.SYNC_JOB_TIMEOUT_MINUTES): a job
killed by its timeout leaves a lease that has run out by the time the next scheduled run starts.

On DuckDB the warehouse file itself is locked by the process that opened it, for as long as it runs: a
process that can read the lock row holds the file, so a holder in another process has ended (killed,
crashed), and its lease is taken over at once. The row records the holder's pid and host, so "another
process" is known. On BigQuery nothing says whether a holder on another machine still runs: its lease
runs out by itself, or ops break it (`python sync_once.py --break-lock`, which asks for `--force` then).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coldsync.warehouse.base import WarehouseError

if TYPE_CHECKING:
    from coldsync.store import Store


# The run lock: ONE permanent row per lock name (setup.py makes it: LOCK_ROW_SQL), never deleted and
# never inserted by a run, only UPDATEd. A run reads the row, decides in Python whether it may take it
# (may_take: free, lease over, or on DuckDB a holder whose process is gone), then sends
# one UPDATE whose WHERE names the holder and the expiry it read: a compare-and-set. It changed one row:
# the lock is this run's. It changed none: someone else changed the row in between, and holds it.
#
# Why this is a true compare-and-set on BigQuery (the MERGE it replaces was not):
# - Each DML statement is its own transaction with snapshot isolation: it reads the table as of its
#   start (https://cloud.google.com/bigquery/docs/data-manipulation-language#limitations,
#   https://cloud.google.com/bigquery/docs/transactions).
# - UPDATE, DELETE and MERGE are "mutating" DML. Mutating statements that run concurrently on a table
#   conflict when they mutate the same partition; the one that commits second fails ("Could not
#   serialize access to table ... due to concurrent update") and BigQuery reruns it, up to three times;
#   INSERT never conflicts with anything
#   (https://cloud.google.com/bigquery/docs/data-manipulation-language#dml_statement_conflicts).
# - ops_run_lock is not partitioned (one partition), so two overlapping acquisitions that both change
#   the row conflict: one commits, the other fails or is rerun. A rerun (by BigQuery, or by our retry
#   on the concurrent-update error, coldsync.warehouse.bigquery) reads the committed row, in which
#   run_id and expires_at are no longer those in its WHERE: it changes nothing, so that run has not got
#   the lock. Only one UPDATE per holder value can ever change the row.
# - The old MERGE inserted a row whenever none existed (release deleted it): two overlapping
#   acquisitions both saw no row in their snapshots and both INSERTed, which never conflicts, so both
#   committed and both runs believed they held the lock. Here no run inserts; the row always exists.
# tests/test_runlock.py runs two overlapping acquisitions on both engines (the emulator too) and two
# overlapping transactions under DuckDB's snapshot isolation, where the old MERGE leaves two holders.
LOCK_FREE_AT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""The expiry of a free lock row (run_id ''): long past, whatever a run's clock says."""

LOCK_ROW_SQL = """
MERGE `{ds}.ops_run_lock` AS t
USING (SELECT @name AS name) AS s
ON t.name = s.name
WHEN NOT MATCHED THEN
  INSERT (name, run_id, acquired_at, expires_at) VALUES (@name, '', @free_at, @free_at)
"""

READ_LOCK_SQL = """
SELECT run_id, acquired_at, expires_at, holder_pid, holder_host FROM `{ds}.ops_run_lock` WHERE name = @name
"""

ACQUIRE_LOCK_SQL = """
UPDATE `{ds}.ops_run_lock`
SET run_id = @run_id, acquired_at = @now, expires_at = @expires_at, holder_pid = @pid, holder_host = @host
WHERE name = @name AND run_id = @seen_run_id AND expires_at = @seen_expires_at
"""

# Release and break: the same compare-and-set, back to the free row (the same row setup.py inserts, so a
# run that changed nothing leaves the table as it found it). Release names only its own run id
# (nobody else can have taken an unexpired lease); a break names the holder and expiry it was shown.
RELEASE_LOCK_SQL = """
UPDATE `{ds}.ops_run_lock`
SET run_id = '', acquired_at = @free_at, expires_at = @free_at, holder_pid = NULL, holder_host = NULL
WHERE name = @name AND run_id = @run_id
"""

BREAK_LOCK_SQL = """
UPDATE `{ds}.ops_run_lock`
SET run_id = '', acquired_at = @free_at, expires_at = @free_at, holder_pid = NULL, holder_host = NULL
WHERE name = @name AND run_id = @seen_run_id AND expires_at = @seen_expires_at
"""

LOCK_NAME = "sync"


class LockMissing(WarehouseError):
    """The lock table has no row (or several) for the lock's name: the schema tool has not run."""


@dataclass(frozen=True)
class Holder:
    """A process that may hold the lock: its id and its machine's host name."""

    pid: int
    host: str

    @classmethod
    def this_process(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname())


@dataclass(frozen=True)
class LockRow:
    """The lock row as read: run_id '' means free."""

    run_id: str
    acquired_at: dt.datetime | None
    expires_at: dt.datetime
    holder_pid: int | None
    holder_host: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> LockRow:
        return cls(str(row["run_id"] or ""), _aware(row.get("acquired_at")),
                   _aware(row["expires_at"]) or LOCK_FREE_AT,
                   int(row["holder_pid"]) if row.get("holder_pid") is not None else None,
                   str(row["holder_host"]) if row.get("holder_host") else None)

    @property
    def free(self) -> bool:
        return self.run_id == ""

    def holder(self) -> Holder | None:
        if self.holder_pid is None or self.holder_host is None:
            return None
        return Holder(self.holder_pid, self.holder_host)


def _aware(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def holder_alive(row: LockRow, engine: str, me: Holder) -> bool | None:
    """Whether the lock's holder still runs: True, False, or None when it cannot be known from here.

    This process: alive. DuckDB, another process on this machine: gone (it would hold the warehouse file,
    and this process could not have opened it). BigQuery, a process on this machine: its pid says. A
    holder on another machine, or a row without pid (written before schema v6): unknown."""
    holder = row.holder()
    if holder is None or holder.host != me.host:
        return None
    if holder.pid == me.pid:
        return True
    if engine == "duckdb":
        return False
    return pid_alive(holder.pid)


def may_take(row: LockRow, now: dt.datetime, engine: str, me: Holder) -> bool:
    """A run may take the lock when it is free, its lease has run out, or (DuckDB) its holder is gone."""
    if row.free or row.expires_at < now:
        return True
    return engine == "duckdb" and holder_alive(row, engine, me) is False


def describe_holder(row: LockRow, now: dt.datetime, engine: str, me: Holder) -> str:
    """One phrase for messages: which run, where, since and until when (UTC)."""
    where = f"pid {row.holder_pid} on {row.holder_host}" if row.holder() else "no pid recorded"
    since = f"since {row.acquired_at:%H:%M} UTC, " if row.acquired_at else ""
    state = {True: "still running", False: "its process is gone", None: "whether it runs cannot be seen from here"}[
        holder_alive(row, engine, me)]
    lease = "lease over" if row.expires_at < now else f"lease until {row.expires_at:%Y-%m-%d %H:%M} UTC"
    return f"run {row.run_id} ({where}, {since}{lease}; {state})"


@dataclass(frozen=True)
class BreakDecision:
    """What `--break-lock` does with the row it read: break it or not, exit code, one line for ops."""

    do_break: bool
    exit_code: int
    message: str


def decide_break(row: LockRow, now: dt.datetime, engine: str, me: Holder, *, force: bool) -> BreakDecision:
    """Break a dead lock; refuse while its holder is known to run; ask for --force when that is unknown.
    Exit codes as the sync's: 0 done (or nothing to do), 3 refused because a run holds the lock."""
    if row.free:
        return BreakDecision(False, 0, "the run lock is free: nothing to break")
    described = describe_holder(row, now, engine, me)
    if row.expires_at < now:
        return BreakDecision(True, 0, f"broke the run lock of {described} (the next run would have taken it)")
    alive = holder_alive(row, engine, me)
    if alive:
        return BreakDecision(False, 3, f"refused: {described}; wait for it to end (or stop it: Ctrl-C or cancel "
                                       "the workflow run), then run again")
    if alive is False:
        return BreakDecision(True, 0, f"broke the run lock of {described}")
    if not force:
        return BreakDecision(False, 3, f"refused: {described}. Check that no sync runs (GitHub: Actions > sync, no "
                                       "run in progress), then run `python sync_once.py --break-lock --force`")
    return BreakDecision(True, 0, f"broke the run lock of {described} (--force)")


def lock_held_message(store: Store, ttl_minutes: int) -> str:
    """Why a run (or an erase) did not start: who holds the lock, and what to do."""
    row = store.lock_holder
    if row is None:
        return "another run holds the lock"
    described = describe_holder(row, store.now, store.warehouse.engine, store.me)
    return (f"another run holds the lock: {described}. A killed run's lease ends after LOCK_TTL_MINUTES={ttl_minutes}; "
            "to end it now: `python sync_once.py --break-lock`")


def break_lock(store: Store, *, force: bool) -> BreakDecision:
    """`python sync_once.py --break-lock [--force]`: read the lock, decide (decide_break), and free it with a
    compare-and-set on what was read, so a run that took the lock meanwhile keeps it."""
    seen = store.read_lock()
    decision = decide_break(seen, store.now, store.warehouse.engine, store.me, force=force)
    if decision.do_break and not store.break_lock(seen):
        return BreakDecision(False, 3, "the run lock changed while it was being broken (a run took or freed it): "
                                       "run `python sync_once.py --break-lock` again to see who holds it")
    return decision
