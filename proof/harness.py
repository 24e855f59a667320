"""The test rig: the real sync between the Instantly simulator and a real warehouse, with a crash switch.

Every external operation of a run passes through one counter (`Operations`): each HTTP attempt the
InstantlyClient sends (through a `requests` transport adapter) and each warehouse statement (through
a proxy implementing the `Warehouse` protocol). Armed with (k, "before" | "after"), operation k
raises `InjectedCrash` either before it happens or after it took effect (its answer lost), and every
later operation of the same run raises too: the process is dead, nothing after that point runs (not
even the `finally` that releases the run lock), exactly what a SIGKILL leaves behind.

`InjectedCrash` derives from BaseException on purpose: `run_sync` turns every `Exception` into a
failed run (a bug still frees the lock and writes a run log), which a killed process never does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
from requests.adapters import HTTPAdapter

from coldsync.demo import set_clock
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import InstantlyError
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.phases.drain import FULL_SWEEP_INTERVAL
from coldsync.report import RunReport
from coldsync.settings import Settings
from coldsync.sync import run_sync
from coldsync.warehouse.base import Param, Warehouse, WarehouseError, WarehouseWrapper
from coldsync.warehouse.schema import TABLES
from tests.invariants import (
    check_after_run,
    check_before_add,
    check_before_delete,
    check_converged,
    check_no_duplicates,
    snapshot,
    table_contents,
)

T = TypeVar("T")
When = Literal["before", "after"]
API_KEY = "sim-key"
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
_ID_SEGMENT = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
OPS_TABLES = tuple(spec.name for spec in TABLES)
SNAPSHOT_PREFIX = "proof_snap_"


class InjectedCrash(BaseException):
    """The process died at this point (as a SIGKILL would): nothing in the product may handle it."""


@dataclass
class Operations:
    """Counts the external operations of the current run and kills the run at the armed one."""

    count: int = 0
    crash_at: int | None = None
    crash_on_label: str | None = None  # or: the first operation with this label
    when: When = "before"
    dead: bool = False
    labels: list[str] = field(default_factory=list)

    def arm(self, k: int | None, when: When = "before", *, label: str | None = None) -> None:
        self.count, self.crash_at, self.when, self.dead, self.labels = 0, k, when, False, []
        self.crash_on_label = label

    def disarm(self) -> None:
        self.crash_at, self.crash_on_label, self.dead = None, None, False

    def perform(self, label: str, action: Callable[[], T]) -> T:
        if self.dead:
            raise InjectedCrash(f"the process is dead (no {label})")
        self.count += 1
        self.labels.append(label)
        if self.crash_on_label == label:
            self.crash_at, self.crash_on_label = self.count, None
        if self.crash_at == self.count and self.when == "before":
            self.dead = True
            raise InjectedCrash(f"killed before operation {self.count} ({label})")
        result = action()
        if self.crash_at == self.count and self.when == "after":
            self.dead = True
            raise InjectedCrash(f"killed after operation {self.count} ({label}) took effect")
        return result


def endpoint_of(method: str, url: str) -> str:
    """'DELETE /leads/{id}' from a concrete URL (ids folded, query and API prefix dropped)."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    path = "/" + path.removeprefix("api/v2/")
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


class CrashingAdapter(HTTPAdapter):
    """The HTTP edge: counts each request the client sends, and can kill the run around it.

    `before_send(endpoint, body)` runs just before a request leaves (the harness checks there that
    a lead about to be deleted already has its outcome in the warehouse).
    """

    def __init__(self, ops: Operations, before_send: Callable[[str, Any], None] | None = None) -> None:
        super().__init__()
        self.ops = ops
        self.before_send = before_send
        # Rewrites an answer before the client reads it (hostile responses): (endpoint, parsed JSON) -> JSON.
        self.rewrite: Callable[[str, Any], Any] | None = None

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float, float] | tuple[float, None] | None = None,
             verify: bool | str = True, cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        endpoint = endpoint_of(str(request.method), str(request.url))

        def go() -> requests.Response:
            if self.before_send is not None:
                body = request.body
                parsed: Any = None
                if body:
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
                self.before_send(endpoint, parsed if parsed is not None else str(request.url))
            response = super(CrashingAdapter, self).send(request, stream=stream, timeout=timeout, verify=verify,
                                                         cert=cert, proxies=proxies)
            if self.rewrite is not None and response.status_code == 200:
                try:
                    answer = json.loads(response.content)
                except ValueError:
                    return response
                response._content = json.dumps(self.rewrite(endpoint, answer)).encode()
            return response

        return self.ops.perform(f"api {endpoint}", go)


class CrashingWarehouse(WarehouseWrapper):
    """The warehouse edge: a `Warehouse` whose statements count as operations and can kill the run.

    `fail(label, when)` also makes the next statement with that label fail with a WarehouseError (an
    ordinary failure the run must handle, not a crash), before it runs or after it took effect.
    """

    def __init__(self, inner: Warehouse, ops: Operations) -> None:
        super().__init__(inner)
        self.ops = ops
        self.failures: dict[str, When] = {}
        self.failed: list[str] = []

    def fail(self, label: str, when: When) -> None:
        self.failures[label] = when

    def _statement(self, label: str, action: Callable[[], T]) -> T:
        when = self.failures.pop(label, None)
        if when == "before":
            self.failed.append(label)
            raise WarehouseError(f"{label}: injected failure (the statement did not run)")
        result = action()
        if when == "after":
            self.failed.append(label)
            raise WarehouseError(f"{label}: injected failure (the statement ran, its answer was lost)")
        return result

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        return self.ops.perform(f"wh {label}", lambda: self._statement(
            label, lambda: self.inner.query(sql, params, label=label)))

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        return self.ops.perform(f"wh {label}", lambda: self._statement(
            label, lambda: self.inner.execute(sql, params, label=label)))


class ObservedClient(InstantlyClient):
    """The real client, recording each call it gave up on after its retries (404 is an answer, not a failure)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.give_ups: list[str] = []

    def _request(self, method: str, template: str, *, path_params: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None, body: Any = None,
                 accept: Callable[[Any], bool] = lambda b: isinstance(b, dict)) -> Any:
        try:
            return super()._request(method, template, path_params=path_params, params=params, body=body,
                                    accept=accept)
        except InstantlyError as exc:
            if exc.http_status != 404:
                self.give_ups.append(f"{method} {template}: {type(exc).__name__} (http {exc.http_status})")
            raise


def failure_signals(report: RunReport) -> list[str]:
    """What a run shows of its failures: its outcome, warnings, phase notes, dead letters."""
    signals = [] if report.outcome in ("success", "lock_held") else [f"outcome {report.outcome}: {report.error}"]
    signals += report.warnings
    signals += [note for phase in report.phases.values() for note in phase.notes if not note.startswith("room ")]
    if report.dead_letters:
        signals.append(f"{report.dead_letters} dead letter(s)")
    return signals


@dataclass
class RunRecord:
    """One run as the harness saw it."""

    crashed: bool
    exit_code: int | None
    seconds: float
    operations: int
    problems: list[str]
    report: RunReport | None
    crash_label: str | None = None
    give_ups: list[str] = field(default_factory=list)  # Instantly calls that failed after every retry
    warehouse_failures: list[str] = field(default_factory=list)  # injected warehouse errors that fired

    @property
    def api_writes(self) -> int:
        return self.report.api_writes if self.report else 0


@dataclass
class Tally:
    """Figures collected by every part of the proof."""

    counts: dict[str, int] = field(default_factory=dict)
    max_run_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)  # kinds of operation a run was killed at
    peaks: dict[str, int] = field(default_factory=dict)  # figures that keep their largest value

    def peak(self, key: str, value: int) -> None:
        self.peaks[key] = max(self.peaks.get(key, value), value)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def record(self, run: RunRecord, context: str) -> None:
        self.add("runs")
        if run.crashed:
            self.add("crashed runs")
        self.max_run_seconds = max(self.max_run_seconds, run.seconds)
        self.violations.extend(f"{context}: {p}" for p in run.problems)

    def merge(self, other: Tally) -> None:
        for key, value in other.counts.items():
            self.add(key, value)
        self.max_run_seconds = max(self.max_run_seconds, other.max_run_seconds)
        self.violations.extend(other.violations)
        self.kinds |= other.kinds
        for key, value in other.peaks.items():
            self.peak(key, value)


class Rig:
    """The sync between one simulator and one warehouse, with the crash switch on both edges."""

    def __init__(self, warehouse: Warehouse, sim: InstantlySimulator, settings: Settings, *,
                 workdir: Path | None = None, read_timeout: float = 5.0, max_attempts: int = 6) -> None:
        self.warehouse = warehouse
        self.sim = sim
        self.settings = settings
        self.ops = Operations()
        self.crashing_warehouse = CrashingWarehouse(warehouse, self.ops)
        self.guard_problems: list[str] = []
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="coldsync-proof-"))
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.client: ObservedClient = self._new_client()
        self._saved: dict[str, Path] = {}

    # ---- plumbing --------------------------------------------------------------------------------

    def _new_client(self) -> ObservedClient:
        session = requests.Session()
        self.adapter = adapter = CrashingAdapter(self.ops, self._before_send)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return ObservedClient(API_KEY, base_url=self.sim.base_url, backoff_base=0.01, backoff_max=0.05,
                               max_per_second=1000, max_per_minute=100_000, read_timeout=self.read_timeout,
                               connect_timeout=self.read_timeout, max_attempts=self.max_attempts,
                               max_retry_after=0.2, session=session)

    def _before_send(self, endpoint: str, body: Any) -> None:
        """Invariant 5, checked at the moment of the delete: the outcome is already in the warehouse; and
        at the moment of an add: every lead sent has its 'pending' row (intent before the add)."""
        if endpoint == "POST /leads/add":
            self.guard_problems += check_before_add(self.warehouse, body)
        ids: list[str] = []
        if endpoint == "DELETE /leads" and isinstance(body, dict):
            ids = [str(i) for i in body.get("ids") or []]
        elif endpoint == "DELETE /leads/{id}" and isinstance(body, str):
            ids = [body.rstrip("/").rsplit("/", 1)[-1]]
        if ids:
            self.guard_problems += check_before_delete(self.warehouse, self.sim, ids)

    def close(self) -> None:
        self.client.close()
        self.sim.stop()

    # ---- snapshots (a scenario's starting point, restored before each crash case) ------------------

    def save(self, name: str) -> None:
        path = self.workdir / f"{name}.sim"
        self.sim.save_state(path)
        self._saved[name] = path
        for table in OPS_TABLES:  # fixed names: the product's tables and this harness's copies of them
            copy = f"CREATE OR REPLACE TABLE `{{ds}}.{SNAPSHOT_PREFIX}{name}_{table}` AS SELECT * FROM `{{ds}}.{table}`"  # noqa: S608
            self.warehouse.execute(copy, label="proof.snapshot")

    def restore(self, name: str) -> None:
        for table in OPS_TABLES:
            empty = f"DELETE FROM `{{ds}}.{table}` WHERE TRUE"  # noqa: S608
            refill = f"INSERT INTO `{{ds}}.{table}` SELECT * FROM `{{ds}}.{SNAPSHOT_PREFIX}{name}_{table}`"  # noqa: S608
            self.warehouse.execute(empty, label="proof.restore")
            self.warehouse.execute(refill, label="proof.restore")
        loaded = InstantlySimulator.load_state(self._saved[name], api_key=API_KEY)
        if loaded is None:
            raise RuntimeError(f"cannot reload the simulator state {name}")
        self.client.close()
        self.sim.stop()
        loaded.max_per_second, loaded.max_per_minute = self.sim.max_per_second, self.sim.max_per_minute
        self.sim = loaded
        self.sim.start()
        self.client = self._new_client()

    # ---- runs ------------------------------------------------------------------------------------

    def run(self, *, crash_at: int | None = None, when: When = "before", crash_on: str | None = None,
            check: bool = True, settings: Settings | None = None, expect_success: bool = True) -> RunRecord:
        """One run at the simulator's clock; invariants 1-5 checked against what it did (also when killed)."""
        settings = settings or self.settings
        set_clock(self.warehouse, self.sim.now)
        before = snapshot(self.warehouse, self.sim, settings) if check else None
        self.guard_problems = []
        self.client.give_ups = []
        self.crashing_warehouse.failed = []
        self.ops.arm(crash_at, when, label=crash_on)
        started = time.monotonic()
        result = None
        crashed = False
        try:
            result = run_sync(settings, self.crashing_warehouse, self.client, now=self.sim.now)
        except InjectedCrash:
            crashed = True
        finally:
            seconds = time.monotonic() - started
            operations, labels, crash_at = self.ops.count, list(self.ops.labels), self.ops.crash_at
            self.ops.disarm()
        problems = list(self.guard_problems)
        if before is not None:
            problems += check_after_run(self.warehouse, self.sim, settings, before, self.sim.now)
        if result is not None and result.report.outcome not in ("success", "lock_held") and expect_success:
            problems.append(f"run ended {result.report.outcome}: {result.report.error}")
        label = labels[crash_at - 1] if crashed and crash_at and crash_at <= len(labels) else None
        report = result.report if result else None
        give_ups, failed = list(self.client.give_ups), list(self.crashing_warehouse.failed)
        if report is not None and (give_ups or failed) and not failure_signals(report):
            problems.append(f"failures not shown by the run: {give_ups + failed}")
        return RunRecord(crashed, int(result.exit_code) if result else None, seconds, operations, problems,
                         report, label, give_ups, failed)

    def lock_holder(self) -> str | None:
        """The run holding an unexpired lease on the run lock, if any."""
        rows = self.warehouse.query("SELECT run_id FROM `{ds}.ops_run_lock` WHERE expires_at >= @now",
                                    {"now": self.sim.now}, label="proof.lock")
        return str(rows[0]["run_id"]) if rows else None

    def advance_minutes(self, minutes: float) -> None:
        self.sim.advance(minutes / 1440)

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything a run could change, but its own log line and the lock."""
        tables = table_contents(self.warehouse)
        tables.pop("ops_run_log", None)
        tables.pop("ops_run_lock", None)
        leads = sorted(json.dumps(lead, sort_keys=True, default=str) for lead in self.sim.leads())
        return tuple(sorted(tables.items())), tuple(leads), tuple(sorted(self.sim.blocklist))

    def converge(self, tally: Tally, context: str, *, max_runs: int = 10, check_end: bool = True) -> int:
        """Run normally until a run changes nothing at either edge; return the runs it took."""
        for number in range(1, max_runs + 1):
            before = self.fingerprint()
            record = self.run()
            tally.record(record, f"{context}, follow-up run {number}")
            if record.exit_code != 0:
                tally.violations.append(f"{context}: follow-up run {number} exited {record.exit_code}")
            if self.fingerprint() == before:
                if record.api_writes:
                    tally.violations.append(f"{context}: a run that changed nothing sent {record.api_writes} writes")
                if check_end:
                    tally.violations.extend(f"{context}: converged state: {p}" for p in self.end_state_problems())
                return number
        tally.violations.append(f"{context}: no convergence after {max_runs} runs")
        return max_runs

    def settle(self, tally: Tally, context: str) -> int:
        """Converge, then once more after a full drain sweep is due (leads a run could not classify wait
        for it: quiet runs list only what the analytics counters say changed), and check the end state."""
        runs = self.converge(tally, context, check_end=False)
        self.advance_minutes(FULL_SWEEP_INTERVAL.total_seconds() / 60 + 1)
        return runs + self.converge(tally, f"{context}, after a full sweep")

    def end_state_problems(self) -> list[str]:
        return (check_converged(self.warehouse, self.sim, self.settings, self.sim.now)
                + check_no_duplicates(self.warehouse))

    def recover_after_crash(self, tally: Tally, context: str) -> None:
        """After a killed run: its lock (if it took one) blocks the next run until LOCK_TTL_MINUTES passed."""
        holder = self.lock_holder()
        if holder is None:
            return
        blocked = self.run()
        tally.record(blocked, f"{context}, run while the killed run's lease holds")
        tally.add("lock-held exits")
        if blocked.exit_code != 3:
            tally.violations.append(f"{context}: a run during the killed run's lease exited {blocked.exit_code}, "
                                    "not 3 (lock held)")
        self.advance_minutes(self.settings.lock_ttl_minutes + 1)
        tally.add("lease expiries")


def new_simulator(seed: int, now: dt.datetime, **kwargs: Any) -> InstantlySimulator:
    sim = InstantlySimulator(api_key=API_KEY, seed=seed, now=now, max_per_second=100_000, max_per_minute=1_000_000,
                             **kwargs)
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    sim.start()
    return sim
