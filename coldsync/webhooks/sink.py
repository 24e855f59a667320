"""The webhook receiver's warehouse writer: one open warehouse shared by the deliveries in flight, the managed
campaigns (cached), and one append per stored delivery.

DuckDB lets one process open its file at a time, even to read, and the sync (or anyone's query) must be able to open
it between deliveries: the file is opened when a delivery needs it, shared while deliveries are in flight, and closed
as soon as none is (`WarehouseSession`, `keep_open=False`). While a sync holds it (WarehouseBusyError), opening is
retried for up to BUSY_WAIT_SECONDS, then the delivery is answered 503 so that Instantly retries it (and the sync's
backfill of failed deliveries catches what still fails). BigQuery keeps one client open across deliveries
(`keep_open=True`): each stored delivery is one streaming insert (insertAll, the dedup key as insertId) into the
insert-only events table, which nothing ever updates, so the streaming buffer's refusal of DML never matters; the
Storage Write API would need a stream per delivery or a long-lived one, for one row a time.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from coldsync.settings import SettingsError, SettingsSources
from coldsync.warehouse.base import Warehouse, WarehouseBusyError, WarehouseError
from coldsync.warehouse.schema import EVENTS
from coldsync.webhooks.events import DELIVERED_BY_RECEIVER, EventRow, ignore_reason

log = logging.getLogger("coldsync.webhooks")

BUSY_WAIT_SECONDS = 0.7
"""How long a delivery waits for a DuckDB file another process holds (a running sync) before it is answered 503:
the answer stays within the second Instantly is promised."""
BUSY_POLL_SECONDS = 0.05
CAMPAIGNS_TTL_SECONDS = 60.0
"""How long the managed campaign ids are trusted before they are read again (a routing change in the config table
reaches the receiver within a minute)."""


class WarehouseUnavailable(Exception):
    """The warehouse cannot take the delivery now (busy file, outage, missing table, bad configuration in the config
    table): the receiver answers 503 and Instantly retries. The message names the cause, never a secret."""


class WarehouseSession:
    """One warehouse shared by the deliveries in flight (thread-safe).

    `use()` hands out the open warehouse, opening it first when none is open; with `keep_open=False` (DuckDB) the
    last delivery to leave closes it, so the file is free between deliveries. A steady stream of deliveries would
    keep some delivery in flight at every moment, and the file would never be free for a sync: so while
    `yield_to()` says a command waits for the file (its mark beside the file: coldsync.warehouse.duckdb.
    someone_waits), no new delivery joins, the file is closed when the ones in it leave, and it is not opened
    again until the mark is gone (the command opened the file, or gave up); a delivery that waits past its
    deadline meanwhile is answered 503 (Instantly retries it). A burst nobody waits for is never interrupted.
    `opener` raises WarehouseBusyError while another process holds the file (retried until the delivery's
    deadline) or WarehouseError."""

    def __init__(self, opener: Callable[[], Warehouse], *, keep_open: bool, busy_wait: float = BUSY_WAIT_SECONDS,
                 yield_to: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._opener = opener
        self._keep_open = keep_open
        self._busy_wait = busy_wait
        self._yield_to = yield_to
        self._clock = clock
        self._sleep = sleep
        self._changed = threading.Condition(threading.Lock())
        self._warehouse: Warehouse | None = None
        self._users = 0
        self._draining = False
        self.opens = 0
        """How many times the warehouse was opened (tests: a stream let go for a waiting command reopens)."""

    @property
    def is_open(self) -> bool:
        return self._warehouse is not None

    def _open(self, deadline: float) -> Warehouse:
        """Caller holds the lock. Retries a busy file until `deadline` (monotonic seconds)."""
        while True:
            try:
                return self._opener()
            except WarehouseBusyError as exc:
                if self._clock() + BUSY_POLL_SECONDS > deadline:
                    raise WarehouseUnavailable(f"the warehouse is busy: {exc}") from exc
                self._sleep(BUSY_POLL_SECONDS)
            except WarehouseError as exc:
                raise WarehouseUnavailable(f"the warehouse cannot be opened: {exc}") from exc

    def _enter(self, deadline: float) -> Warehouse:
        """Caller holds the lock: join the open warehouse, or open it, unless a command waits for the file; waits
        on the condition (releasing the lock) meanwhile. Raises WarehouseUnavailable."""
        while True:
            now = self._clock()
            wanted = not self._keep_open and self._yield_to is not None and self._yield_to()
            if self._warehouse is not None and not self._draining:
                if not wanted:
                    self._users += 1
                    return self._warehouse
                self._draining = True  # let the deliveries inside finish, then free the file for the command
            if self._warehouse is None and not wanted:
                self._warehouse = self._open(deadline)
                self._draining = False
                self.opens += 1
                self._users += 1
                return self._warehouse
            if now >= deadline:
                raise WarehouseUnavailable("the warehouse is busy: a command is waiting for the DuckDB file")
            # Draining: woken when the last delivery leaves; closed and wanted: look again at the next poll.
            wake = deadline if self._warehouse is not None else now + BUSY_POLL_SECONDS
            self._changed.wait(timeout=max(0.0, min(wake, deadline) - now))

    @contextmanager
    def use(self, started: float | None = None) -> Iterator[Warehouse]:
        """The open warehouse for one delivery (which arrived at monotonic time `started`: its wait for a busy
        file ends BUSY_WAIT_SECONDS after it). Raises WarehouseUnavailable."""
        deadline = (self._clock() if started is None else started) + self._busy_wait
        if not self._changed.acquire(timeout=max(0.0, deadline - self._clock())):
            raise WarehouseUnavailable("the warehouse is busy: other deliveries are still waiting for it")
        try:
            warehouse = self._enter(deadline)
        finally:
            self._changed.release()
        try:
            yield warehouse
        finally:
            with self._changed:
                self._users -= 1
                if self._users == 0 and not self._keep_open:
                    self._warehouse, self._draining = None, False
                    _close_quietly(warehouse)
                    self._changed.notify_all()

    def close(self) -> None:
        """Close the warehouse now (the server stops)."""
        with self._changed:
            warehouse, self._warehouse = self._warehouse, None
        if warehouse is not None:
            _close_quietly(warehouse)


def _close_quietly(warehouse: Warehouse) -> None:
    try:
        warehouse.close()
    except Exception as exc:  # a failed close must not turn a stored delivery into an error answer
        log.warning("closing the warehouse failed: %s", exc)


def managed_campaign_ids(sources: SettingsSources, warehouse: Warehouse) -> frozenset[str]:
    """The campaign ids a sync run manages, lower-cased: the settings resolved with the warehouse config table
    exactly as sync_once.py resolves them (coldsync.cli.bootstrap: every layer, then the config table's rows; the
    embedded playground's demo campaigns when it runs without a key and without BigQuery), then its routing's
    campaigns (every route and A/B arm). Raises WarehouseUnavailable for a config table that cannot be read or holds
    a bad value (the sync would refuse to run the same way)."""
    from coldsync.embedded import embedded_settings, is_embedded
    from coldsync.settings import resolve
    from coldsync.warehouse.migrate import read_config

    try:
        settings = resolve(sources, read_config(warehouse))
    except (SettingsError, WarehouseError) as exc:
        raise WarehouseUnavailable(f"the managed campaigns cannot be read: {exc}") from exc
    if is_embedded(settings):
        settings = embedded_settings(settings)
    return frozenset(campaign_id.lower() for campaign_id in settings.routing.campaign_ids() if campaign_id)


class CampaignCache:
    """The managed campaign ids, read at most once per `ttl` seconds (thread-safe)."""

    def __init__(self, read: Callable[[Warehouse], frozenset[str]], *, ttl: float = CAMPAIGNS_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: frozenset[str] | None = None
        self._read_at = 0.0

    def fresh(self) -> frozenset[str] | None:
        """The cached ids while they are younger than the ttl, else None."""
        with self._lock:
            if self._value is not None and self._clock() - self._read_at < self._ttl:
                return self._value
            return None

    def get(self, warehouse: Warehouse) -> frozenset[str]:
        """The ids, read from `warehouse` when the cache is stale. Raises what `read` raises."""
        with self._lock:
            if self._value is None or self._clock() - self._read_at >= self._ttl:
                self._value = self._read(warehouse)
                self._read_at = self._clock()
            return self._value


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery: `stored` (True: appended, or already there) or ignored for `reason`."""

    stored: bool
    reason: str = ""


SOLO_BUDGET_SECONDS = 3.0
"""After a batch insert fails, its rows are written one by one until this long after the batch began; the rows not
tried by then get the batch's error (503: Instantly retries them). It bounds an outage, where every single insert
fails too, to one answer within a few seconds rather than one per row of the batch."""


@dataclass
class _Pending:
    row: EventRow
    done: threading.Event
    error: Exception | None = None


class EventSink:
    """Writes accepted deliveries into ops_instantly_events, for the managed campaigns only.

    Group commit: one delivery at a time writes, and it writes every row that arrived meanwhile in the same
    statement; each delivery is answered only once its own row is written. A lone delivery waits for nothing; a
    burst of 20 senders costs one statement per batch, not per delivery (a DuckDB insert takes ~10 ms however few
    rows it carries). When the batch's statement fails (WarehouseError) and it holds more than one row, the rows are
    written one by one, so that a row the warehouse refuses fails alone and the others are stored."""

    def __init__(self, session: WarehouseSession, campaigns: CampaignCache,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC), *,
                 clock: Callable[[], float] = time.monotonic, solo_budget: float = SOLO_BUDGET_SECONDS) -> None:
        self.session = session
        self.campaigns = campaigns
        self._now = now
        self._clock = clock
        self._solo_budget = solo_budget
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self.statements = 0

    @property
    def queued(self) -> int:
        """Deliveries waiting for the writer (their rows go in its next batch)."""
        with self._queue_lock:
            return len(self._queue)

    def _insert(self, warehouse: Warehouse, batch: list[_Pending], now: dt.datetime) -> None:
        self.statements += 1
        warehouse.append_rows(EVENTS, [p.row.as_row(now, DELIVERED_BY_RECEIVER) for p in batch],
                              key="dedup_key", label="webhooks.insert")

    def _write(self, warehouse: Warehouse, batch: list[_Pending]) -> None:
        """Write `batch`, setting each pending's error: the batch in one statement, else (WarehouseError, more than
        one row) each row alone within the solo budget. An unexpected exception is every row's error."""
        began, now = self._clock(), self._now()
        try:
            self._insert(warehouse, batch, now)
            return
        except WarehouseError as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            log.warning("a batch of %d events failed (%s); writing them one by one", len(batch), type(exc).__name__)
            batch_error = exc
        for index, pending in enumerate(batch):
            if self._clock() - began > self._solo_budget:
                log.warning("%d events not tried alone within %.0f s: answered 503", len(batch) - index,
                            self._solo_budget)
                for rest in batch[index:]:
                    rest.error = batch_error
                return
            try:
                self._insert(warehouse, [pending], now)
            except WarehouseError as exc:
                pending.error = exc

    def _append(self, warehouse: Warehouse, row: EventRow) -> None:
        """Write `row`, in a batch with whatever is waiting. Raises WarehouseError (the row's own, or the batch's
        when the solo budget ran out before it was tried alone), or the unexpected exception the batch raised."""
        mine = _Pending(row, threading.Event())
        with self._queue_lock:
            self._queue.append(mine)
        with self._write_lock:
            if not mine.done.is_set():
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._write(warehouse, batch)
                except Exception as exc:  # a bug or a driver error: no row of the batch may be answered stored
                    for pending in batch:
                        pending.error = exc
                finally:
                    for pending in batch:
                        pending.done.set()
        if mine.error is not None:
            raise mine.error

    @staticmethod
    def _unmanaged(row: EventRow, managed: frozenset[str]) -> Outcome | None:
        reason = ignore_reason(row, managed)
        return None if reason is None else Outcome(False, f"{reason}: {row.campaign_id}")

    def store(self, row: EventRow, started: float | None = None) -> Outcome:
        """Append `row` (received now, by the receiver) unless its campaign is not managed. One statement per batch
        (above): DuckDB inserts the rows whose dedup key is new; BigQuery streams them with the key as insertId.
        Raises WarehouseUnavailable when this row is not written (its own insert failed, or the warehouse could not
        be opened); any other exception is a bug (the receiver answers 500)."""
        cached = self.campaigns.fresh()
        if cached is not None and (ignored := self._unmanaged(row, cached)) is not None:
            return ignored  # decided without opening the warehouse
        with self.session.use(started) as warehouse:
            ignored = self._unmanaged(row, self.campaigns.get(warehouse))
            if ignored is not None:
                return ignored
            try:
                self._append(warehouse, row)
            except WarehouseError as exc:
                raise WarehouseUnavailable(f"the event could not be written: {exc}") from exc
        return Outcome(True)

    def close(self) -> None:
        self.session.close()
