"""Performance benchmark: the cost of a sync run grows with the change, not with the inventory.

    python -m coldsync.bench                 # the full benchmark (a few minutes on 2 cores)
    python -m coldsync.bench --quick         # a small smoke configuration (under a minute)
    python -m coldsync.bench --bigquery      # also the BigQuery lane (local emulator, same scale)

Each measured run is one real `run_sync` in its own child process (so its peak memory is its own),
against the Instantly simulator running in this process with a fixed per-request latency
(`--latency`, default 150 ms) and the client's real pacer (100 requests/s, 6,000/min), on a DuckDB
warehouse whose source table holds `--source-rows` synthetic leads (default 300,000). Per scale
(inventory cap 1,000 / 10,000 / 24,000) the runs are: fill an empty cap, a steady run with nothing to
do, then drain 1% and 10% finished leads (each run also refills what it drained). The runs of a scale
are 30 minutes apart on the run's clock (the weekday schedule), and MAX_BOUNCE_RATE is 100 (see
BENCH_MAX_BOUNCE_RATE; `--max-bounce-rate 5` for the product's default).

API calls and warehouse statements are attributed to phases by recording wrappers that live here,
not in the product: a client subclass that times `_request`, and a warehouse wrapper that times every
statement. The phase is read from the call stack (the module under `coldsync/phases/`, or the
preflight function of `coldsync/sync.py`; lock and run log count as "lock+log"). Each API call is
also charged to the campaign it names (SMB, Midsize; "(all)" for one call naming both, "(workspace)"
for one naming none), and each run reports per campaign the leads added and drained (the run
report's `routes`) and the leads it holds afterwards (the simulator). A fill must feed both campaigns
their share, half of the cap each (equal shares: none configured, no sending history): a verdict.

The baseline mode reproduces the per-lead approach of the system coldsync replaces (one create call
and one warehouse statement per lead, 0.5 s pause after each lead, 10 s between batches of 100) on a
small sample, and extrapolates it to 1,000 leads. The last section estimates the BigQuery bytes a run
would bill and the monthly cost of the production schedule. docs/PERFORMANCE.md has the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import hashlib
import io
import json
import math
import os
import pstats
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coldsync.demo import demo_campaign_id, set_clock
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import Fate, InstantlySimulator
from coldsync.phases.topup import lead_payload
from coldsync.rules import normalize_email
from coldsync.schedule import WEEKDAY_EVERY_MINUTES
from coldsync.settings import REPO_ROOT, Settings, load_settings
from coldsync.store import Store
from coldsync.sync import run_sync
from coldsync.warehouse.base import Param, Rows, Warehouse, WarehouseWrapper
from coldsync.warehouse.demo_data import DemoSizes, build_demo_warehouse, ensure_demo_source_table
from coldsync.warehouse.migrate import ensure_schema
from coldsync.warehouse.schema import SOURCE_COLUMNS, TABLES, TableSpec

START = dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in New York
# The runs of a world are one weekday slot apart on the run's clock, so "the last run" (whose summary
# carries the drain watermarks and the hourly supply signals) is one run, as in production, not a tie
# of runs at one instant. The simulator's clock stays at START: moving it would let its sequences progress.
RUN_SPACING = dt.timedelta(minutes=WEEKDAY_EVERY_MINUTES)
SOURCE_CHANGE_SHARE = 0.01  # the source-change scenario: this share of source rows edited, and of inventory finished
API_KEY = "sim-bench-key"
SMB_CAMPAIGN = demo_campaign_id("bench-smb")
MIDSIZE_CAMPAIGN = demo_campaign_id("bench-midsize")
# The routes of the default routing, each with its one campaign. No shares are configured and the
# simulator has no sending history, so the shares are equal: a fill gives each half of the cap.
BENCH_CAMPAIGNS: tuple[tuple[str, str], ...] = (("SMB", SMB_CAMPAIGN), ("Midsize", MIDSIZE_CAMPAIGN))
PHASES = ("preflight", "drain", "topup", "housekeeping", "lock+log")

# The targets of issue 7. They are the yardstick: never tune them to the measurements.
FILL_CAP = 24_000
FILL_MAX_ADD_CALLS = 30
FILL_MAX_SECONDS = 60.0
DRAIN_FINISHED = 2_400
DRAIN_MAX_CALLS = 60
MAX_STATEMENTS = 15
# A run with nothing to do: one analytics call, plus the rolling reconciliation audit's by-id look-ups
# (RECONCILE_AUDIT_CALLS, default 25, each 100 tracked ids: every tracked lead checked once a day).
STEADY_MAX_CALLS = 1 + 25
MAX_PEAK_MB = 300.0
TARGET_SOURCE_ROWS = 300_000

# The targets of issue 16 (the yardstick as the issue states it; never tuned to the measurements).
DEFAULT_SOURCE_ROWS = 30_000  # the default lane: fast enough for every run of the benchmark
SMALL_LANE, LARGE_LANE = 30_000, 3_000_000  # target 2 compares these two lanes
STEADY_CPU_RATIO = 1.5  # steady at 3M at most 1.5x its CPU at 30k
CHANGE_CPU_RATIO = 2.0  # fill and drains at 3M at most 2x their 30k figures
STEADY_MAX_BILLED = 10 * 1024**2  # BigQuery bytes billed per steady run (estimate)
FILL_SECONDS_AT_2S_ADDS = 20.0  # the 24,000 fill at 2 s per add
ADD_SECONDS_ASSUMED = 2.0  # the issue's "2 s per add" (a 1,000-lead add): an assumption
MAX_CALL_RATIO = 1.2  # calls at most 1.2x the API minimum
LEADS_PER_PAGE, IDS_PER_DELETE, LEADS_PER_ADD = 100, 10_000, 1_000  # the API's most per call
RUNS_PER_WEEKDAY = 19  # the schedule's weekday slots (09:00-18:00 every 30 minutes: coldsync/schedule.py)

# How finished leads end (the simulator's default weights of the fates that finish a sequence).
FINISH_MIX: tuple[tuple[Fate, float], ...] = (
    ("completed", 0.70), ("replied", 0.08), ("out_of_office", 0.05), ("bounced", 0.06), ("unsubscribed", 0.04),
)


# --------------------------------------------------------------------------------------------------
# The latency model (issue 16): what one simulated Instantly call costs grows with what it carries


@dataclass(frozen=True)
class LatencyModel:
    """Seconds one simulated Instantly call takes before it is answered, by kind and payload.

    Instantly publishes no latencies, so every figure here is an assumption, reasoned:

    - `base` 0.15 s for any call: one HTTPS round trip to a hosted API plus a small read (a GET of
      analytics, of sending status, of one lead).
    - `add_per_lead` 1.85 ms a lead for `POST /leads/add`: a 1,000-lead add is 0.15 + 1,000 x 0.00185 =
      2.0 s, the "2 s per add" issue 16 reasons with (an assumption, not a measurement of Instantly).
    - `delete_per_id` 0.1 ms an id for `DELETE /leads`: 10,000 ids (the API's most) is 1.15 s.
    - `list_per_item` 1 ms a lead returned by `POST /leads/list`: a full page of 100 is 0.25 s, an
      empty last page 0.15 s.
    - `block_per_entry` 0.5 ms an entry for `POST /block-lists-entries/bulk-create`: 1,000 entries 0.65 s.

    The simulator sleeps this long in the thread serving the request, so concurrent calls overlap as
    they would against the real API.
    """

    base: float = 0.15
    add_per_lead: float = 0.00185
    delete_per_id: float = 0.0001
    list_per_item: float = 0.001
    block_per_entry: float = 0.0005

    @classmethod
    def flat(cls, base: float) -> LatencyModel:
        """Every call costs `base`, whatever it carries (the benchmark's model before issue 16)."""
        return cls(base=base, add_per_lead=0.0, delete_per_id=0.0, list_per_item=0.0, block_per_entry=0.0)

    def add_seconds(self, leads: int) -> float:
        """One bulk add of this many leads."""
        return self.base + self.add_per_lead * leads

    def delete_seconds(self, ids: int) -> float:
        """One bulk delete of this many ids."""
        return self.base + self.delete_per_id * ids

    def list_seconds(self, items: int) -> float:
        """One listing page returning this many leads."""
        return self.base + self.list_per_item * items

    def seconds(self, method: str, template: str, request: Any, answer: Any) -> float:
        """The cost of one served call: `template` is the API path without /api/v2 (e.g. "/leads/add"),
        `request` the parsed JSON body (None if none), `answer` the JSON answer (None if none)."""
        def count(container: Any, key: str) -> int:
            value = container.get(key) if isinstance(container, Mapping) else None
            return len(value) if isinstance(value, list) else 0

        method = method.upper()
        if method == "POST" and template == "/leads/add":
            return self.add_seconds(count(request, "leads"))
        if method == "DELETE" and template == "/leads":
            ids = count(request, "ids")
            if not ids and isinstance(request, Mapping) and isinstance(request.get("limit"), int):
                ids = int(request["limit"])
            return self.delete_seconds(ids)
        if method == "POST" and template == "/leads/list":
            return self.list_seconds(count(answer, "items"))
        if method == "POST" and template == "/block-lists-entries/bulk-create":
            return self.base + self.block_per_entry * count(request, "bl_values")
        return self.base

    def describe(self) -> str:
        return (f"{self.base * 1000:.0f} ms per call + {self.add_per_lead * 1000:g} ms per lead added "
                f"(a 1,000-lead add: {self.add_seconds(1000):.2f} s), {self.delete_per_id * 1000:g} ms per id "
                f"deleted, {self.list_per_item * 1000:g} ms per lead listed, {self.block_per_entry * 1000:g} ms "
                "per block-list entry")


class BenchSimulator(InstantlySimulator):
    """The Instantly simulator with the latency model applied to every answered request."""

    def __init__(self, *args: Any, latency: LatencyModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency = latency

    def _serve(self, method: str, raw_path: str, headers: Mapping[str, str],
               raw_body: bytes) -> tuple[Any, str, str, dict[str, list[str]], Any]:
        served = super()._serve(method, raw_path, headers, raw_body)
        outcome, _path, template, _query, body = served
        delay = self.latency.seconds(method, template, body, getattr(outcome, "body", None))
        if delay > 0:
            time.sleep(delay)
        return served


# --------------------------------------------------------------------------------------------------
# Recording wrappers (run inside the child process)


@functools.cache
def drain_call_line() -> int | None:
    """The line of coldsync/sync.py where `_phases` calls the drain (None if it cannot be found)."""
    import inspect

    from coldsync import sync

    try:
        lines, start = inspect.getsourcelines(sync._phases)
    except (AttributeError, OSError, TypeError):
        return None
    return next((start + i for i, line in enumerate(lines) if "run_drain(" in line), None)


def phase_of_caller(label: str = "") -> str:
    """Which sync phase the current call comes from, read from the call stack.

    A frame in `coldsync/phases/<phase>.py` names the phase; in `coldsync/sync.py` the preflight
    function is "preflight"; the run's own statements in `_phases` (or in a helper of sync.py that
    `_phases` calls, such as `_count_ready`) are "preflight" before the drain is called (DNC upkeep,
    state, ready counts) and "topup" after it (the source reject counts); the rest of the run (lock,
    run log) is "lock+log".
    """
    frame = sys._getframe(1)
    in_sync = False
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/coldsync/phases/" in path:
            name = path.rsplit("/", 1)[-1].removesuffix(".py")
            if name in PHASES:
                return name
        elif path.endswith("/coldsync/sync.py"):
            in_sync = True
            function = frame.f_code.co_name
            if function == "preflight":
                return "preflight"
            if function == "_phases":
                split = drain_call_line()
                if split is None:
                    return "topup" if label == "source.rejects" else "preflight"
                return "preflight" if frame.f_lineno < split else "topup"
            if function == "run_sync":
                return "lock+log"
        elif in_sync:
            return "lock+log"  # a sync.py helper not called from _phases (the run log)
        frame = frame.f_back  # type: ignore[assignment]
    return "lock+log" if in_sync else "other"


@dataclass
class Tally:
    """Counts and seconds per (phase, key); the key is an endpoint or a statement label."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, phase: str, key: str, count: int, seconds: float) -> None:
        self.counts[(phase, key)] += count
        self.seconds[(phase, key)] = self.seconds.get((phase, key), 0.0) + seconds

    def rows(self, first: str = "phase") -> list[dict[str, Any]]:
        """One row per (first, key): `first` names what the first element is (a phase, a campaign)."""
        return [{first: p, "key": k, "count": n, "seconds": round(self.seconds[(p, k)], 4)}
                for (p, k), n in sorted(self.counts.items())]


class MemoryTracker:
    """Where the process's peak memory rose: during which call or statement, or in the Python work between."""

    def __init__(self) -> None:
        self.level = 0.0  # set by the child before its run (nothing is measured at import)
        self.steps: list[dict[str, Any]] = []
        self.previous = "start"

    def _check(self, phase: str, what: str) -> None:
        now = peak_rss_mb()
        if now >= self.level + 1.0:
            self.steps.append({"phase": phase, "what": what, "from_mb": round(self.level, 1), "to_mb": round(now, 1)})
        self.level = max(self.level, now)

    def before(self, phase: str, key: str) -> None:
        self._check(phase, f"python work after {self.previous}")

    def after(self, phase: str, key: str) -> None:
        self._check(phase, key)
        self.previous = key


MEMORY = MemoryTracker()  # one per child process; the parent never reads it


ALL_CAMPAIGNS = "(all)"  # one call that names every managed campaign (analytics of all of them)
WORKSPACE = "(workspace)"  # a call that names no campaign (block list, a lead by id, the workspace)
AUDIT = "(audit)"  # the rolling reconciliation audit's by-id look-ups (budgeted apart, issue 16 target 4)
SNAPSHOT = "(analytics)"  # issue 17's hourly campaign analytics snapshot (ops_campaign_daily), counted apart


def _called_from(module_path: str, function: str | None = None) -> bool:
    """Whether a frame of the current call stack (above the caller) runs in the file ending `module_path` (and,
    when given, in its `function`)."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_filename.replace("\\", "/").endswith(module_path) and function in (None, code.co_name):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def in_analytics_snapshot() -> bool:
    """Whether the current call comes from coldsync/phases/analytics.py: the hourly reads that keep
    ops_campaign_daily (issue 17), not part of a sync's work nor of issue 16's minimum; their own column."""
    return _called_from("/coldsync/phases/analytics.py")


def in_rolling_audit() -> bool:
    """Whether the current call comes from the rolling audit (`_audit` in coldsync/phases/reconcile.py),
    read from the call stack: its by-id look-ups are budgeted apart; the drain's and the reconcile's
    by-id confirmations, which also name no campaign, are not the audit and count as calls."""
    return _called_from("/coldsync/phases/reconcile.py", "_audit")


def campaigns_named(template: str, path_params: Mapping[str, str] | None = None,
                    params: Mapping[str, Any] | None = None, body: Any = None) -> list[str]:
    """The campaign ids one Instantly call names: the `{id}` of a /campaigns/{id}/... path, the
    `campaign_id` or `ids` query of analytics, the `campaign_id` (add, delete) or `campaign` (list) of
    a body. Empty for a call that names none."""
    found: list[str] = []
    if template.startswith("/campaigns/{id}") and path_params and path_params.get("id"):
        found.append(str(path_params["id"]))
    for value in ((params or {}).get("campaign_id"), (params or {}).get("ids")):
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(str(v) for v in value)
    if isinstance(body, Mapping):
        for name in ("campaign_id", "campaign"):
            if isinstance(body.get(name), str):
                found.append(str(body[name]))
    return list(dict.fromkeys(found))


def campaign_label(ids: Sequence[str], names: Mapping[str, str]) -> str:
    """Whose call this is: one campaign's name (its route, or route/arm), ALL_CAMPAIGNS for a call naming
    several of them, WORKSPACE for one naming none; an id the run does not manage is shown as it is."""
    if not ids:
        return WORKSPACE
    if len(ids) > 1:
        return ALL_CAMPAIGNS
    return names.get(ids[0].lower(), ids[0])


def campaign_names(settings: Settings) -> dict[str, str]:
    """Campaign id (lower case) -> the name the benchmark shows: its route, or route/arm for an A/B arm."""
    return {arm.campaign_id.lower(): route.name if len(route.arms) == 1 else f"{route.name}/{arm.name}"
            for route in settings.routing.routes for arm in route.arms}


class RecordingClient(InstantlyClient):
    """The real client; every logical call is timed and its HTTP attempts counted, per phase and per campaign.
    Attempts are counted in the thread that makes them: bulk adds run several calls at once, and the client's
    own counter (`stats.requests`) would give each call the attempts of the others in flight."""

    _local = threading.local()

    def _attempts_here(self) -> int:
        return int(getattr(self._local, "attempts", 0))

    def _attempt(self, *args: Any, **kwargs: Any) -> Any:
        self._local.attempts = self._attempts_here() + 1
        return super()._attempt(*args, **kwargs)

    def __init__(self, *args: Any, phase: str | None = None, names: Mapping[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = Tally()
        self.by_campaign = Tally()  # (campaign name, endpoint): HTTP attempts, seconds
        self.fixed_phase = phase
        self.names = dict(names or {})
        self._add_phase: str | None = None

    def add_leads(self, *args: Any, **kwargs: Any) -> Any:
        # Its requests run in worker threads, whose stacks do not show the phase: name it from the caller's.
        self._add_phase = self.fixed_phase or phase_of_caller()
        try:
            return super().add_leads(*args, **kwargs)
        finally:
            self._add_phase = None

    def _request(self, method: str, template: str, **kwargs: Any) -> Any:
        added_by = self._add_phase if template == "/leads/add" else None
        phase = self.fixed_phase or added_by or phase_of_caller()
        key = f"{method.upper()} {template}"
        campaign = AUDIT if in_rolling_audit() else SNAPSHOT if in_analytics_snapshot() else campaign_label(
            campaigns_named(template, kwargs.get("path_params"), kwargs.get("params"), kwargs.get("body")), self.names)
        attempts_before = self._attempts_here()
        MEMORY.before(phase, key)
        started = time.perf_counter()
        try:
            return super()._request(method, template, **kwargs)
        finally:
            attempts, seconds = self._attempts_here() - attempts_before, time.perf_counter() - started
            self.tally.add(phase, key, attempts, seconds)
            self.by_campaign.add(campaign, key, attempts, seconds)
            MEMORY.after(phase, key)


# The statement the DuckDB engine's own change signal runs on its connection (DuckDBWarehouse.table_signal), as
# the benchmark records it: it reads every column of every source row, so it counts as a read of the source.
NATIVE_SIGNAL_SQL = ("SELECT COUNT(*) AS n, SUM(FARM_FINGERPRINT(TO_JSON_STRING(STRUCT("  # noqa: S608
                     + ", ".join(f"s.{c.name}" for c in SOURCE_COLUMNS) + ")))) AS h FROM `{source}` AS s")
NATIVE_SIGNAL_LABEL = "source.signal.native"


class RecordingWarehouse(WarehouseWrapper):
    """A warehouse wrapper that times every statement, per phase and label (same stats object), the DuckDB
    engine's own change signal included (`table_signal`, which runs on the connection, not through `query`)."""

    def __init__(self, inner: Warehouse, phase: str | None = None) -> None:
        super().__init__(inner)
        found = getattr(inner, "table_signal", None)
        if callable(found):
            def table_signal() -> str | None:
                result: str | None = self._timed(NATIVE_SIGNAL_LABEL, NATIVE_SIGNAL_SQL, found)
                return result

            table_signal.reads_rows = getattr(found, "reads_rows", False)  # type: ignore[attr-defined]
            self.table_signal = table_signal
        self.tally = Tally()
        self.fixed_phase = phase
        self.sql_by_label: dict[str, str] = {}  # each label's statement text (for the BigQuery bytes estimate)
        self.rows_by_label: dict[str, int] = {}  # the most parameter rows a label carried

    def _timed(self, label: str, sql: str, run: Callable[[], Any]) -> Any:
        phase = self.fixed_phase or phase_of_caller(label)
        self.sql_by_label.setdefault(label, sql)
        MEMORY.before(phase, label)
        started = time.perf_counter()
        try:
            return run()
        finally:
            self.tally.add(phase, label, 1, time.perf_counter() - started)
            MEMORY.after(phase, label)

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        self._count_rows(label, params)
        rows: list[dict[str, Any]] = self._timed(label, sql, lambda: self.inner.query(sql, params, label=label))
        return rows

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        self._count_rows(label, params)
        changed: int = self._timed(label, sql, lambda: self.inner.execute(sql, params, label=label))
        return changed

    def _count_rows(self, label: str, params: Mapping[str, Param] | None) -> None:
        rows = max((len(v.rows) for v in (params or {}).values() if isinstance(v, Rows)), default=0)
        self.rows_by_label[label] = max(self.rows_by_label.get(label, 0), rows)


_SETTING = re.compile(r"^[a-z_]+\s*=\s*('[A-Za-z0-9_. ]+'|[A-Za-z0-9_.]+)$")


def apply_duckdb_settings(warehouse: Warehouse, settings: Sequence[str]) -> None:
    """EXPERIMENT (`--duckdb-setting`): SET options on the benchmark's DuckDB connection, e.g. memory_limit='128MB'."""
    connection = getattr(warehouse, "_con", None)
    for setting in settings:
        if not _SETTING.match(setting):
            raise ValueError(f"not a DuckDB setting of the form name=value: {setting!r}")
        if connection is not None:
            connection.execute(f"SET {setting}")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec. Not ru_maxrss: Linux keeps it
    across fork and exec, so a child would report its parent's peak if that was higher.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------------------------------
# Settings and warehouses


# The deliverability guard's MAX_BOUNCE_RATE in the benchmark's runs. The simulator sends one email to a
# lead that `finish_lead` ends, so a bench campaign's 7-day bounce rate is the bounce share of FINISH_MIX
# (6 of 93: 6.5%), where a real sequence sends several emails a lead. With the product's 5% the guard
# would hold the routes back after a drain and the drain scenarios would not refill. The guard still reads
# its figures in every run that could add (those calls are measured); `--max-bounce-rate 5` shows it judging.
BENCH_MAX_BOUNCE_RATE = 100.0


def bench_environ(duckdb_path: Path, *, cap: int, target: int,
                  max_bounce_rate: float = BENCH_MAX_BOUNCE_RATE) -> dict[str, str]:
    """The settings of a benchmark run, as environment variables (nothing read from the developer's files).

    The pacer (INSTANTLY_MAX_PER_SECOND / _PER_MINUTE) and every concurrency setting keep the product's
    defaults: the benchmark measures what a deployment with no overrides does."""
    return {
        "MAX_BOUNCE_RATE": f"{max_bounce_rate:g}",
        "DUCKDB_PATH": str(duckdb_path), "SMB_CAMPAIGN_ID": SMB_CAMPAIGN, "MIDSIZE_CAMPAIGN_ID": MIDSIZE_CAMPAIGN,
        "INSTANTLY_API_KEY": API_KEY,
        "INVENTORY_CAP": str(cap), "TARGET_NEW_LEADS_PER_RUN": str(target),
        "MAX_NEW_LEADS_PER_RUN": str(max(target, 24_000)), "BATCH_SIZE": "1000", "LOG_LEVEL": "WARNING",
        "SOURCE_UPDATED_AT_COLUMN": UPDATED_AT_COLUMN,
    }


def bench_settings(environ: Mapping[str, str], folder: Path) -> Settings:
    return load_settings(environ=dict(environ), dotenv_path=folder / "no.env", secrets_dir=folder / "no-secrets")


def open_duckdb(path: Path, settings: Settings) -> Warehouse:
    from coldsync.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(path, settings.bq_dataset, settings.source_table)


def open_bigquery(endpoint: str, project: str, dataset: str) -> Warehouse:
    from coldsync.warehouse.bigquery import BigQueryWarehouse
    from tests.bq_emulator import make_client

    return BigQueryWarehouse(project, dataset, client=make_client(endpoint, project),
                             maximum_bytes_billed=10 * 1024**3)


def build_warehouse(warehouse: Warehouse, settings: Settings, source_rows: int, seed: int = 7) -> None:
    """Schema, synthetic source (with DNC list and some history), the view's clock at START, the candidates
    table refreshed from that source and the ready queue built from it (as the last run before a scenario
    leaves them: a scenario's source is unchanged, so its runs measure what a run costs when the source did
    not change)."""
    from coldsync.store import Store

    warehouse.ensure_dataset()
    ensure_demo_source_table(warehouse)
    ensure_schema(warehouse, settings)
    build_demo_warehouse(warehouse, sizes=DemoSizes(leads=source_rows), seed=seed, as_of=START,
                         campaign_ids=(SMB_CAMPAIGN, MIDSIZE_CAMPAIGN))
    premirror_dnc(warehouse)
    declare_updated_at(warehouse)
    set_clock(warehouse, START)
    store = Store.for_settings(warehouse, "bench-setup", START, settings)
    store.refresh_candidates()
    store.build_queue(store.queue_fingerprint())  # and the ready queue, as that run's read left it


TEMPLATE_FORMAT = 3
"""Bumped when build_warehouse changes what a template holds (2: the source's updated-at column; 3: the ready queue
built)."""

UPDATED_AT_COLUMN = "updated_at"
"""The bench source's updated-at column, declared as SOURCE_UPDATED_AT_COLUMN in every bench run: the cheap change
signal issue 16 names (row count + max of a declared updated-at column). Without it DuckDB falls back to a hash of
every row (`DuckDBWarehouse.table_signal`: one more read of the source, 0.3 s CPU at 3,000,000 rows)."""


def declare_updated_at(warehouse: Warehouse) -> None:
    """Give the demo source an updated-at column, every row stamped START, as a lead table loaded by an ETL has."""
    from coldsync.warehouse.demo_data import SOURCE_SPEC
    from coldsync.warehouse.schema import Column, TableSpec

    if UPDATED_AT_COLUMN not in (warehouse.existing_columns(SOURCE_SPEC.name) or {}):
        column = Column(UPDATED_AT_COLUMN, "TIMESTAMP", description="when the row last changed")
        spec = TableSpec(SOURCE_SPEC.name, (*SOURCE_SPEC.columns, column), SOURCE_SPEC.description)
        warehouse.add_columns(spec, [UPDATED_AT_COLUMN])
    warehouse.execute(f"UPDATE `{{source}}` SET {UPDATED_AT_COLUMN} = @at WHERE TRUE", {"at": START},  # noqa: S608
                      label="bench.updated_at")


def premirror_dnc(warehouse: Warehouse) -> None:
    """Start every scenario from a do-not-contact list already keyed and mirrored to Instantly's block
    list, and history rows already keyed (both with their checks: Store.backfill_keys), as they are in steady
    operation: the one-time first mirror of a list of N entries costs ceil(N / 1,000) bulk-create calls,
    at most 5 a run (coldsync.phases.blocklist), and is not what a scenario measures."""
    from coldsync.store import Store

    Store(warehouse, "bench-setup", START).backfill_keys()
    warehouse.execute("UPDATE `{ds}.ops_dnc` SET instantly_blocklist_id = 'bench-premirrored' "
                      "WHERE instantly_blocklist_id IS NULL", label="bench.premirror")


# --------------------------------------------------------------------------------------------------
# The child process: one run, measured


@dataclass
class BaselineConfig:
    sample: int = 200
    pause: float = 0.5  # after each lead
    batch: int = 100
    batch_pause: float = 10.0  # between batches


def run_baseline(settings: Settings, warehouse: Warehouse, client: InstantlyClient, now: dt.datetime,
                 config: BaselineConfig) -> dict[str, Any]:
    """The replaced system's way: one create call and one statement per lead, with its pauses.

    The simulator (like this client) has no single-lead `POST /leads`, so each lead is one
    `POST /leads/add` carrying one lead. Returns the counts and the time spent in pauses.
    """
    store = Store(warehouse, f"baseline-{uuid.uuid4().hex[:6]}", now, routing=settings.routing)
    rows = store.read_ready({route.name: config.sample for route in settings.routing.routes})[:config.sample]
    campaigns = {"SMB": settings.smb_campaign_id, "Midsize": settings.midsize_campaign_id}
    added = 0
    paused = 0.0
    for position, row in enumerate(rows, start=1):
        email = normalize_email(row.get("email"))
        if email is None:
            continue
        campaign = campaigns[str(row["sequence_target"])]
        result = client.add_leads(campaign, [lead_payload(row, email)], skip_if_in_workspace=True, chunk_size=1)
        outcome = result.outcomes[0]
        added += outcome.outcome == "created"
        store.apply_state([{"email": email, "op": "upsert", "campaign_id": campaign,
                            "sequence_target": row["sequence_target"], "status": "active",
                            "instantly_lead_id": outcome.lead_id, "attempt_num": int(row.get("attempt_num") or 1),
                            "outcome": None, "added_at": now}], label="baseline.state")
        started = time.perf_counter()
        time.sleep(config.pause)
        if position % config.batch == 0 and position < len(rows):
            time.sleep(config.batch_pause)
        paused += time.perf_counter() - started
    return {"leads": len(rows), "added": added, "paused_seconds": paused}


def child_main(spec_path: Path, result_path: Path) -> int:
    """Run one measured run described by the spec file; write the measurements as JSON."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    folder = Path(spec["folder"])
    settings = bench_settings(spec["environ"], folder)
    if spec["engine"] == "bigquery":
        inner = open_bigquery(spec["endpoint"], spec["project"], spec["dataset"])
    else:
        inner = open_duckdb(Path(spec["environ"]["DUCKDB_PATH"]), settings)
    baseline = spec["mode"] == "baseline"
    fixed = "baseline" if baseline else None
    if spec["engine"] == "duckdb":
        apply_duckdb_settings(inner, spec.get("duckdb_settings") or [])
    warehouse = RecordingWarehouse(inner, phase=fixed)
    # Built as sync_once.py builds it: the product's default pacer, no override.
    client = RecordingClient(API_KEY, base_url=spec["base_url"], max_per_second=settings.instantly_max_per_second,
                             max_per_minute=settings.instantly_max_per_minute,
                             request_deadline=settings.instantly_request_deadline_seconds,
                             phase=fixed, names=campaign_names(settings))
    now = dt.datetime.fromisoformat(spec["now"])
    rss_before = peak_rss_mb()
    MEMORY.level, MEMORY.previous = rss_before, "opening the warehouse"
    profiler = cProfile.Profile() if spec.get("profile") else None
    if profiler is not None:
        tracemalloc.start(10)
        profiler.enable()
    started = time.perf_counter()
    cpu_started = time.process_time()  # CPU of this whole process (every thread, DuckDB's included)
    result: dict[str, Any] = {}
    if baseline:
        config = BaselineConfig(**spec["baseline"])
        result.update(run_baseline(settings, warehouse, client, now, config))
        result.update(exit_code=0, outcome="success", error=None, added=result["added"], drained=0,
                      phase_seconds={}, warnings=[], routes={})
    else:
        outcome = run_sync(settings, warehouse, client, now=now)
        report = outcome.report
        result.update(exit_code=int(outcome.exit_code), outcome=report.outcome, error=report.error,
                      added=report.added, drained=report.drained, warnings=list(report.warnings),
                      phase_seconds={name: round(p.seconds, 3) for name, p in report.phases.items()},
                      routes=report.routes)
    result["wall_seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.process_time() - cpu_started
    MEMORY.before("end", "end")
    if profiler is not None:
        profiler.disable()
        result["profile"] = _profile_text(profiler)
        result["allocations"] = _allocation_text()
        tracemalloc.stop()
    result.update(api=client.tally.rows(), api_by_campaign=client.by_campaign.rows("campaign"),
                  statements=warehouse.tally.rows(), sql_by_label=warehouse.sql_by_label,
                  rows_by_label=warehouse.rows_by_label, memory_steps=MEMORY.steps,
                  peak_rss_mb=round(peak_rss_mb(), 1),
                  start_rss_mb=round(rss_before, 1), paced_seconds=round(client.stats.paced_seconds, 3),
                  load_jobs=int(getattr(inner, "load_jobs", 0)),
                  retries=client.stats.retries)
    limit, spill = getattr(inner, "memory_limit", None), getattr(inner, "spill_directory", None)
    if limit is not None:  # DuckDB: what DUCKDB_MEMORY_LIMIT=auto resolved to, and where it spills (issue 16 target 6)
        result["duckdb"] = {"limit": str(limit), "spill": str(spill), "file": str(getattr(inner, "path", ""))}
    client.close()
    inner.close()
    result_path.write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


def _profile_text(profiler: cProfile.Profile) -> str:
    """The top functions by cumulative time, then by own time (where the CPU went besides waiting)."""
    sections = []
    for order, limit in (("cumulative", 14), ("tottime", 10)):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(limit)
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
        sections.append(f"by {order}:\n" + "\n".join(lines[start:]))
    return "\n".join(sections)


def _allocation_text() -> str:
    _current, peak = tracemalloc.get_traced_memory()
    return (f"python heap peak {peak / 2**20:.1f} MiB (tracemalloc): the rest of the peak is the interpreter, "
            "its libraries and native (DuckDB) memory")


# --------------------------------------------------------------------------------------------------
# The parent: worlds, scenarios, measurements


@dataclass
class RunResult:
    """One measured run, as the child reported it."""

    engine: str
    scale: int
    scenario: str
    exit_code: int
    outcome: str
    error: str | None
    wall_seconds: float
    added: int
    drained: int
    api: list[dict[str, Any]]
    statements: list[dict[str, Any]]
    peak_rss_mb: float
    start_rss_mb: float
    phase_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    paced_seconds: float = 0.0
    retries: int = 0
    load_jobs: int = 0  # BigQuery only: row batches staged with a load job (not query statements)
    finished_before: int = 0
    sql_by_label: dict[str, str] = field(default_factory=dict)
    rows_by_label: dict[str, int] = field(default_factory=dict)
    memory_steps: list[dict[str, Any]] = field(default_factory=list)
    # Per route, the run report's figures: added, drained, room, ready, quota, inventory, share, ...
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # API calls per campaign and endpoint (campaign: a route's name, ALL_CAMPAIGNS or WORKSPACE)
    api_by_campaign: list[dict[str, Any]] = field(default_factory=list)
    campaign_leads: dict[str, int] = field(default_factory=dict)  # leads per campaign in the simulator after the run
    extra: dict[str, Any] = field(default_factory=dict)
    profile: str = ""
    allocations: str = ""
    cpu_seconds: float = 0.0  # CPU seconds of the child process during run_sync (time.process_time)
    source_rows: int = 0  # the lane: rows in the source table
    mismatched: list[str] = field(default_factory=list)  # campaigns whose count was changed by hand before the run

    @property
    def api_calls(self) -> int:
        return sum(int(r["count"]) for r in self.api)

    @property
    def statement_count(self) -> int:
        return sum(int(r["count"]) for r in self.statements)

    def calls(self, endpoint: str | None = None, phase: str | None = None) -> int:
        return sum(int(r["count"]) for r in self.api
                   if (endpoint is None or r["key"] == endpoint) and (phase is None or r["phase"] == phase))

    def route_figure(self, route: str, key: str) -> int:
        """One per-route figure of the run report (added, drained, room, ready, quota, ...), 0 when absent."""
        value = self.routes.get(route, {}).get(key)
        return int(value) if isinstance(value, int | float) else 0

    def calls_for(self, campaign: str, endpoint: str | None = None) -> int:
        """API calls (HTTP attempts) that named this campaign, optionally of one endpoint."""
        return sum(int(r["count"]) for r in self.api_by_campaign
                   if r["campaign"] == campaign and (endpoint is None or r["key"] == endpoint))

    def per_campaign(self) -> dict[str, dict[str, int]]:
        """Per campaign: leads added and drained (run report), leads held after the run (simulator), API
        calls naming it; then the calls shared by all campaigns and those naming none."""
        out = {name: {"added": self.route_figure(name, "added"), "drained": self.route_figure(name, "drained"),
                      "ready": self.route_figure(name, "ready"), "room": self.route_figure(name, "room"),
                      "leads_after": self.campaign_leads.get(name, 0), "calls": self.calls_for(name),
                      "add_calls": self.calls_for(name, "POST /leads/add")}
               for name, _ in BENCH_CAMPAIGNS}
        for shared in (ALL_CAMPAIGNS, WORKSPACE, AUDIT, SNAPSHOT):
            out[shared] = {"calls": self.calls_for(shared)}
        return out

    def statements_in(self, phase: str) -> int:
        return sum(int(r["count"]) for r in self.statements if r["phase"] == phase)

    def seconds_in(self, rows: Iterable[Mapping[str, Any]], phase: str) -> float:
        return sum(float(r["seconds"]) for r in rows if r["phase"] == phase)

    @property
    def label(self) -> str:
        return f"{self.scenario} @{self.scale:,}"

    @property
    def lane_label(self) -> str:
        """The run with its source size, e.g. "fill @24,000 / 30,000 rows"."""
        return f"{self.label} / {self.source_rows:,} rows"

    @property
    def audit_calls(self) -> int:
        """The rolling reconciliation audit's by-id look-ups (budgeted apart; in_rolling_audit)."""
        return self.calls_for(AUDIT, "POST /leads/list")

    @property
    def snapshot_calls(self) -> int:
        """The hourly analytics snapshot's calls (issue 17; in_analytics_snapshot): counted apart."""
        return self.calls_for(SNAPSHOT)


@dataclass
class BenchConfig:
    scales: tuple[int, ...] = (FILL_CAP,)
    source_rows: tuple[int, ...] = (DEFAULT_SOURCE_ROWS,)  # one lane per source size
    finished: tuple[float, ...] = (0.01, 0.10)
    latency: float = 0.15  # the latency model's base (seconds per call)
    flat_latency: bool = False  # True: every call costs `latency`, whatever it carries (the old model)
    add_latency_per_lead: float = LatencyModel.add_per_lead
    mismatch: bool = True  # the count-mismatch scenario (a lead added and one deleted by hand in Instantly)
    source_change: bool = True  # the source-change scenario (DuckDB lanes: 1% of source rows edited, 1% drained)
    cache_dir: Path | None = None  # cached source warehouses (default REPO_ROOT/data/bench)
    baseline: BaselineConfig = field(default_factory=lambda: BaselineConfig(sample=0))
    bigquery: bool = False
    bq_source_rows: int = TARGET_SOURCE_ROWS
    bq_scale: int = FILL_CAP
    profile: bool = False
    duckdb_settings: tuple[str, ...] = ()  # experiments only: see apply_duckdb_settings
    max_bounce_rate: float = BENCH_MAX_BOUNCE_RATE
    seed: int = 7
    workdir: Path | None = None

    def latency_model(self) -> LatencyModel:
        if self.flat_latency:
            return LatencyModel.flat(self.latency)
        return LatencyModel(base=self.latency, add_per_lead=self.add_latency_per_lead)

    @property
    def largest_source(self) -> int:
        return max(self.source_rows)


class World:
    """One warehouse and one simulated Instantly workspace; runs happen in child processes."""

    def __init__(self, config: BenchConfig, folder: Path, engine: str, scale: int, warehouse_spec: dict[str, Any],
                 duckdb_path: Path, source_rows: int = 0) -> None:
        self.config = config
        self.source_rows = source_rows
        self.folder = folder
        self.engine = engine
        self.scale = scale
        self.warehouse_spec = warehouse_spec
        self.duckdb_path = duckdb_path
        self.rng = random.Random(config.seed + scale)
        self.runs = 0  # runs so far: the next run's clock is START + runs x RUN_SPACING
        self.sim = BenchSimulator(api_key=API_KEY, seed=config.seed, now=START, plan_lead_limit=1_000_000,
                                  log_bodies=False, max_log=200, latency=config.latency_model())
        self.sim.start()
        self.sim.create_campaign("Bench SMB", campaign_id=SMB_CAMPAIGN)
        self.sim.create_campaign("Bench Midsize", campaign_id=MIDSIZE_CAMPAIGN)

    def close(self) -> None:
        self.sim.stop()

    def finish(self, fraction: float) -> int:
        """Bring this share of the inventory to a finished state (seeded fates); return how many."""
        ids = [lead["id"] for campaign in (SMB_CAMPAIGN, MIDSIZE_CAMPAIGN) for lead in self.sim.leads(campaign)
               if lead.get("status") == 1]
        chosen = self.rng.sample(ids, min(len(ids), round(self.scale * fraction)))
        fates = [fate for fate, _ in FINISH_MIX]
        weights = [weight for _, weight in FINISH_MIX]
        for lead_id in chosen:
            self.sim.finish_lead(str(lead_id), self.rng.choices(fates, weights)[0])
        return len(chosen)

    def tamper(self) -> list[str]:
        """Change both campaigns by hand in Instantly, behind the warehouse's back: one lead added to SMB
        (`hand.added.N@corp.example`) and one active Midsize lead deleted. Their analytics counts then
        differ from the state's, the reconcile path. Returns the campaigns changed."""
        self.sim.insert_leads(SMB_CAMPAIGN, [{"email": f"hand.added.{self.runs}@corp.example",
                                              "first_name": "Hand", "company_name": "Corp Example"}])
        victim = next((lead for lead in self.sim.leads(MIDSIZE_CAMPAIGN) if lead.get("status") == 1), None)
        if victim is None:
            return ["SMB"]
        with self.sim._lock:  # the simulator has no public delete without HTTP; what DELETE /leads/{id} does
            self.sim._remove_leads([str(victim["id"])])
        return ["SMB", "Midsize"]

    def change_source(self, fraction: float) -> int:
        """Edit this share of the source rows behind the sync's back, as a daily load does: their annual revenue
        doubled and their updated-at stamped with the next run's time (a seeded, hash-picked 1 in 1/fraction), so
        the source's change signal moves and the next run with room refreshes what it keeps from the source.
        DuckDB lanes only. Returns the rows edited."""
        import duckdb

        every = max(1, round(1 / fraction))
        con = duckdb.connect(str(self.duckdb_path))
        try:
            edited_at = (self.sim.now + RUN_SPACING * self.runs).isoformat()
            row = con.execute(f"UPDATE coldsync.source_leads SET annual_revenue = annual_revenue * 2, "  # noqa: S608
                              f"{UPDATED_AT_COLUMN} = CAST(? AS TIMESTAMPTZ) "
                              f"WHERE hash(email, {self.config.seed + self.runs}) % {every} = 0",
                              [edited_at]).fetchone()
        finally:
            con.close()
        return int(row[0]) if row else 0

    def run(self, scenario: str, *, target: int, mode: str = "sync", baseline: BaselineConfig | None = None,
            finished_before: int = 0, mismatched: Sequence[str] = ()) -> RunResult:
        now = self.sim.now + RUN_SPACING * self.runs
        self.runs += 1
        spec = {"mode": mode, "engine": self.engine, "folder": str(self.folder), "base_url": self.sim.base_url,
                "now": now.isoformat(), "profile": self.config.profile,
                "environ": bench_environ(self.duckdb_path, cap=self.scale, target=target,
                                         max_bounce_rate=self.config.max_bounce_rate),
                "baseline": asdict(baseline) if baseline else None,
                "duckdb_settings": list(self.config.duckdb_settings),
                **self.warehouse_spec}
        tag = uuid.uuid4().hex[:8]
        spec_path, result_path = self.folder / f"spec-{tag}.json", self.folder / f"result-{tag}.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        done = subprocess.run([sys.executable, "-m", "coldsync.bench", "--child", str(spec_path),
                               "--child-result", str(result_path)], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 or not result_path.is_file():
            raise RuntimeError(f"benchmark child for {scenario} failed (exit {done.returncode}):\n"
                               f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        data = json.loads(result_path.read_text(encoding="utf-8"))
        known = {f for f in RunResult.__dataclass_fields__}
        extra = {k: v for k, v in data.items() if k not in known}
        fields_ = {k: v for k, v in data.items() if k in known}
        fields_["campaign_leads"] = {name: len(self.sim.leads(campaign)) for name, campaign in BENCH_CAMPAIGNS}
        return RunResult(engine=self.engine, scale=self.scale, scenario=scenario, finished_before=finished_before,
                         extra=extra, source_rows=self.source_rows, mismatched=list(mismatched), **fields_)

    def scenarios(self, fractions: Sequence[float], echo: Callable[[str], None],
                  mismatch: bool = False, source_change: bool = False) -> list[RunResult]:
        """Fill the empty cap (both campaigns), a steady run, a drain of each share (refilled by the same
        run), then (`source_change`, DuckDB) a drain of 1% after 1% of the source rows were edited: the run that
        pays for refreshing what it keeps from the source, then (`mismatch`) a run after both campaigns were
        changed by hand in Instantly."""
        results = [self.run("fill", target=self.scale)]
        echo(_progress(results[-1]))
        results.append(self.run("steady", target=self.scale))
        echo(_progress(results[-1]))
        for fraction in fractions:
            finished = self.finish(fraction)
            results.append(self.run(f"drain {fraction:.0%}", target=self.scale, finished_before=finished))
            echo(_progress(results[-1]))
        # The source change runs before the mismatch: a mismatch's bounded reconcile listing resumes in the runs
        # after it (RECONCILE_PAGES_PER_RUN), and those pages are the mismatch's cost, not the next scenario's.
        if source_change and self.engine == "duckdb":
            self.change_source(SOURCE_CHANGE_SHARE)
            finished = self.finish(SOURCE_CHANGE_SHARE)
            results.append(self.run("source change", target=self.scale, finished_before=finished))
            echo(_progress(results[-1]))
        if mismatch:
            changed = self.tamper()
            results.append(self.run("mismatch", target=self.scale, mismatched=changed))
            echo(_progress(results[-1]))
        return results


def _progress(result: RunResult) -> str:
    split = "  ".join(f"{name} +{result.route_figure(name, 'added')} -{result.route_figure(name, 'drained')} "
                      f"({result.calls_for(name)} calls)" for name, _ in BENCH_CAMPAIGNS)
    return (f"  {result.engine:8} {result.source_rows:>9,} rows  {result.label:18} {result.wall_seconds:6.1f} s "
            f"wall {result.cpu_seconds:6.1f} s CPU  {result.api_calls:4} calls  "
            f"{result.statement_count:3} statements  +{result.added} -{result.drained}  "
            f"peak {result.peak_rss_mb:.0f} MB  exit {result.exit_code}  [{split}]")


# --------------------------------------------------------------------------------------------------
# BigQuery bytes: an estimate from table sizes (BigQuery bills the referenced columns of whole tables)

MIB = 1024**2
TIB = 1024**4
MIN_BILLED_BYTES = 10 * MIB  # per table referenced, and per query
PRICE_PER_TIB = 6.25  # on-demand, US multi-region, as of 2026
TYPE_BYTES = {"INT64": 8, "FLOAT64": 8, "NUMERIC": 16, "BOOL": 1, "TIMESTAMP": 8, "DATE": 8}  # STRING: 2 + UTF-8


def _view_bodies() -> dict[str, str]:
    """The dataset's views (name -> the query they run), so a statement reading a view is charged its tables."""
    import sqlglot
    from sqlglot import exp

    from coldsync.routes import default_routing
    from coldsync.warehouse.schema import views

    bodies: dict[str, str] = {}
    for name, sql in views(default_routing("", "")):
        create = sqlglot.parse_one(_unplaceholder(sql), read="bigquery")
        query = create.expression if isinstance(create, exp.Create) else create
        bodies[name] = query.sql(dialect="bigquery")
    return bodies


def _unplaceholder(sql: str) -> str:
    return sql.replace("{ds}.", "").replace("{source}", "source")


def statement_reads(sql: str, columns: Mapping[str, Sequence[str]],
                    views: Mapping[str, str] | None = None) -> tuple[dict[str, set[str]], set[str]]:
    """Which columns of which tables a statement makes BigQuery read, and the tables it rewrites.

    `sql` is a store statement with its `{ds}`/`{source}` placeholders; views are expanded to the
    tables they read. A column counts for a table when it is qualified by that table's alias, or
    unqualified and the table has it (an over-estimate, never an under-estimate). The target of an
    INSERT is not read; the target of an UPDATE/DELETE (or a MERGE with such a clause) is rewritten,
    which BigQuery bills as the whole table.
    """
    import sqlglot
    from sqlglot import exp

    views = _view_bodies() if views is None else views
    tree = sqlglot.parse_one(_unplaceholder(sql), read="bigquery")
    reads: dict[str, set[str]] = {}
    rewrites: set[str] = set()
    target = tree.this if isinstance(tree, exp.Merge | exp.Delete | exp.Update) else None
    if isinstance(target, exp.Table) and (
            not isinstance(tree, exp.Merge)
            or any(not isinstance(w.args.get("then"), exp.Insert) for w in tree.find_all(exp.When))):
        rewrites.add(target.name)
    insert_target = tree.this.this if isinstance(tree, exp.Insert) and isinstance(tree.this, exp.Schema) else None
    skipped: set[int] = set()
    for insert in tree.find_all(exp.Insert):
        skipped.update(id(node) for node in insert.this.find_all(exp.Column))
    aliases: dict[str, str] = {}
    for node in tree.find_all(exp.Table):
        if node is insert_target:
            continue
        if node.name in views:
            inner, _ = statement_reads(views[node.name], columns, views)
            for name, used in inner.items():
                reads.setdefault(name, set()).update(used)
            continue
        if node.name in columns:
            aliases[node.alias_or_name] = node.name
            reads.setdefault(node.name, set())
    for column in tree.find_all(exp.Column):
        if id(column) in skipped:
            continue
        if column.table:
            owners = [aliases[column.table]] if column.table in aliases else []  # else a subquery's or CTE's
        else:
            owners = sorted(set(aliases.values()))
        for owner in owners:
            if isinstance(column.this, exp.Star):
                reads[owner].update(columns[owner])
            elif column.name in columns[owner]:
                reads[owner].add(column.name)
    return reads, rewrites


@dataclass
class TableSize:
    rows: int
    column_bytes: dict[str, int]  # BigQuery logical bytes of each column over the whole table

    def bytes_of(self, columns: Iterable[str] | None) -> int:
        names = self.column_bytes if columns is None else columns
        return sum(self.column_bytes.get(name, 0) for name in names)

    def scaled(self, factor: float) -> TableSize:
        return TableSize(round(self.rows * factor), {k: round(v * factor) for k, v in self.column_bytes.items()})


def measure_table_sizes(duckdb_path: Path, dataset: str) -> dict[str, TableSize]:
    """BigQuery logical sizes of every table of a DuckDB benchmark warehouse (STRING: 2 + UTF-8 bytes; NULL: 0)."""
    import duckdb

    specs: list[TableSpec] = [*TABLES, TableSpec("source_leads", SOURCE_COLUMNS, "source")]
    sizes: dict[str, TableSize] = {}
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        catalog = duckdb_path.stem
        for spec in specs:
            parts = []
            for column in spec.columns:
                if column.type == "STRING":
                    parts.append(f"COALESCE(SUM(2 + strlen({column.name})), 0)")
                else:
                    parts.append(f"COUNT({column.name}) * {TYPE_BYTES[column.type]}")
            # Identifiers come from our own table specs; there are no values in this statement.
            sql = f'SELECT COUNT(*), {", ".join(parts)} FROM "{catalog}"."{dataset}"."{spec.name}"'  # noqa: S608
            row = con.execute(sql).fetchone()
            assert row is not None
            name = "source" if spec.name == "source_leads" else spec.name
            sizes[name] = TableSize(int(row[0]), {c.name: int(v) for c, v in zip(spec.columns, row[1:], strict=True)})
    finally:
        con.close()
    return sizes


def stage_threshold() -> int:
    """Rows above which the BigQuery warehouse stages a row batch in a table (a load job) instead of a parameter."""
    import inspect

    from coldsync.warehouse.bigquery import BigQueryWarehouse

    parameter = inspect.signature(BigQueryWarehouse).parameters.get("stage_threshold")
    return int(parameter.default) if parameter is not None and isinstance(parameter.default, int) else 2000


def billed_bytes(statements: Mapping[str, int], sql_by_label: Mapping[str, str], sizes: Mapping[str, TableSize],
                 columns: Mapping[str, Sequence[str]], rows_by_label: Mapping[str, int] | None = None, *,
                 minimums: bool = True) -> int:
    """Estimated on-demand bytes billed for statements (label -> count), with the 10 MiB minimums (BigQuery's
    on-demand pricing: at least 10 MB per table referenced and per query); `minimums` False gives the bytes
    the statements scan (the referenced columns of whole tables), with no minimum.

    A statement whose row batch is staged (more rows than `stage_threshold`) also reads its staging table.
    """
    least = MIN_BILLED_BYTES if minimums else 0
    # DuckDB's own change signal (NATIVE_SIGNAL_LABEL) is no BigQuery statement: there the engine's signal is the
    # table's metadata, read for free (BigQueryWarehouse.table_signal).
    statements = {label: n for label, n in statements.items() if label != NATIVE_SIGNAL_LABEL}
    views = _view_bodies()
    staged_above = stage_threshold()
    total = 0
    for label, count in statements.items():
        sql = sql_by_label.get(label)
        reads, rewrites = statement_reads(sql, columns, views) if sql else ({}, set())
        per_table = {name: sizes[name].bytes_of(used) if name in sizes else 0 for name, used in reads.items()}
        for name in rewrites:
            per_table[name] = per_table.get(name, 0) + (sizes[name].bytes_of(None) if name in sizes else 0)
        if (rows_by_label or {}).get(label, 0) > staged_above:
            per_table["(staged rows)"] = 0  # small, so billed at the per-table minimum
        statement = sum(max(b, least) for b in per_table.values())
        total += count * max(statement, least)
    return total


def table_columns() -> dict[str, list[str]]:
    """Column names of every table the sync's statements can read ("source" is the source table)."""
    found = {spec.name: spec.column_names() for spec in TABLES}
    found["source"] = [c.name for c in SOURCE_COLUMNS]
    return found


def scheduled_runs_per_month() -> float:
    """Runs in an average month: 19 slots (09:00-18:00 every 30 min) per weekday, 12 per weekend day."""
    days = 365.25 / 12
    return days * 5 / 7 * 19 + days * 2 / 7 * 12


def bigquery_request_bytes(rows: int) -> int:
    """Bytes of the query parameters of a state MERGE with this many rows, as the official client sends them."""
    from coldsync.store import STATE_FIELDS
    from coldsync.warehouse.base import Rows
    from coldsync.warehouse.bigquery import to_query_parameter
    from coldsync.warehouse.demo_data import generate_source_rows

    intents = [{"email": str(r["email"]).strip().lower(), "op": "upsert", "campaign_id": SMB_CAMPAIGN,
                "sequence_target": "SMB", "status": "pending", "instantly_lead_id": None, "attempt_num": 1,
                "outcome": None, "added_at": START} for r in generate_source_rows(rows, seed=3)]
    parameter = to_query_parameter("rows", Rows(STATE_FIELDS, intents))
    return len(json.dumps(parameter.to_api_repr(), default=str))


# --------------------------------------------------------------------------------------------------
# Targets and printing


@dataclass
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this configuration
    why: str = ""

    @property
    def verdict(self) -> str:
        """PASS or FAIL; "not measured" when this run could not compute it (never a PASS)."""
        return "not measured" if self.passed is None else "PASS" if self.passed else "FAIL"

    def line(self) -> str:
        return f"  {self.name}: {self.verdict}" + (f"  ({self.measured})" if self.measured else "")


def find(results: Sequence[RunResult], scenario: str, scale: int, engine: str = "duckdb",
         source_rows: int | None = None) -> RunResult | None:
    """The run of this scenario at this cap (of this source lane, when given)."""
    return next((r for r in results if r.scenario == scenario and r.scale == scale and r.engine == engine
                 and (source_rows is None or r.source_rows == source_rows)), None)


def evaluate_targets(results: Sequence[RunResult], source_rows: int) -> list[Target]:
    duck = [r for r in results if r.engine == "duckdb"]
    targets: list[Target] = []
    fill = find(duck, "fill", FILL_CAP)
    if fill is None:
        targets.append(Target(f"fill an empty {FILL_CAP:,} cap in one run, <= {FILL_MAX_ADD_CALLS} add calls, "
                              f"< {FILL_MAX_SECONDS:.0f} s", "not measured", None))
    else:
        adds = fill.calls("POST /leads/add")
        targets.append(Target(
            f"fill an empty {FILL_CAP:,} cap in one run, <= {FILL_MAX_ADD_CALLS} add calls, < {FILL_MAX_SECONDS:.0f} s",
            f"{fill.added:,} added, {adds} add calls, {fill.wall_seconds:.1f} s",
            fill.added == FILL_CAP and adds <= FILL_MAX_ADD_CALLS and fill.wall_seconds < FILL_MAX_SECONDS))
    targets += both_campaigns_targets(results)
    drain = find(duck, "drain 10%", FILL_CAP)
    if drain is None:
        targets.append(Target(f"drain {DRAIN_FINISHED:,} of {FILL_CAP:,}, <= {DRAIN_MAX_CALLS} API calls",
                              "not measured", None))
    else:
        # A run reuses supply signals younger than an hour (phases/signals.py), as the drain 10% run does those
        # of the run 30 minutes before it; a run an hour after the last read pays them: judged with them.
        fill_signals = signal_calls(fill) if fill is not None else len(BENCH_CAMPAIGNS) * 2 + 1
        unpaid = fill_signals - signal_calls(drain)
        with_signals = drain.api_calls + max(unpaid, 0)
        paid = "reused from the run before here" if unpaid > 0 else "read by this run"
        targets.append(Target(
            f"drain {DRAIN_FINISHED:,} of {FILL_CAP:,}, <= {DRAIN_MAX_CALLS} API calls",
            f"{drain.drained:,} drained, {drain.api_calls} calls for the whole run (drain phase "
            f"{drain.calls(phase='drain')}, refill {drain.calls(phase='topup')}); {with_signals} with the hourly "
            f"supply signals ({fill_signals} calls, {paid})",
            drain.drained == DRAIN_FINISHED and with_signals <= DRAIN_MAX_CALLS))
    if duck:
        worst = max(duck, key=lambda r: r.statement_count)
        small, large = min(r.scale for r in duck), max(r.scale for r in duck)
        unequal = [s for s in dict.fromkeys(r.scenario for r in duck)
                   if (a := find(duck, s, small)) and (b := find(duck, s, large))
                   and a.statement_count != b.statement_count]
        per_kind = ", ".join(f"{s} {find(duck, s, large).statement_count}"  # type: ignore[union-attr]
                             for s in dict.fromkeys(r.scenario for r in duck) if find(duck, s, large))
        same = "same" if not unequal else f"differ for {', '.join(unequal)}"
        within = worst.statement_count <= MAX_STATEMENTS and not unequal
        targets.append(Target(
            f"<= {MAX_STATEMENTS} warehouse statements per run, same at {small:,} and {large:,}",
            f"max {worst.statement_count} ({worst.label}); at {large:,}: {per_kind}; {same} at {small:,} and "
            f"{large:,}",
            within if small != large or not within else None))
    steady = find(duck, "steady", FILL_CAP) or (find(duck, "steady", max(r.scale for r in duck)) if duck else None)
    if steady is None:
        targets.append(Target(f"steady run with nothing to do, <= {STEADY_MAX_CALLS} API calls", "not measured", None))
    else:
        endpoints = ", ".join(f"{r['key']} x{r['count']}" for r in _merge_phases(steady.api))
        targets.append(Target(f"steady run with nothing to do, <= {STEADY_MAX_CALLS} API calls",
                              f"{steady.api_calls} calls at {steady.scale:,} ({endpoints})",
                              steady.api_calls <= STEADY_MAX_CALLS))
    if duck:
        heaviest = max(duck, key=lambda r: r.peak_rss_mb)
        targets.append(Target(
            f"peak memory < {MAX_PEAK_MB:.0f} MB with a {TARGET_SOURCE_ROWS:,}-row source",
            f"{heaviest.peak_rss_mb:.0f} MB ({heaviest.label}, source {source_rows:,} rows)",
            heaviest.peak_rss_mb < MAX_PEAK_MB if source_rows >= TARGET_SOURCE_ROWS else None))
    return targets


SIGNAL_ENDPOINTS = ("GET /campaigns/analytics/daily", "GET /campaigns/{id}/sending-status")


def signal_calls(result: RunResult) -> int:
    """The run's calls for the top-up's supply signals: per campaign its daily analytics and sending
    status, and the one 7-day analytics call of the top-up (the preflight's analytics call is not one)."""
    return (sum(result.calls(endpoint) for endpoint in SIGNAL_ENDPOINTS)
            + result.calls("GET /campaigns/analytics", phase="topup"))


def fair_share(cap: int) -> float:
    """Each bench campaign's share of a fill of `cap`: equal shares (none configured, no sending history)."""
    return cap / len(BENCH_CAMPAIGNS)


def both_campaigns_targets(results: Sequence[RunResult]) -> list[Target]:
    """A fill feeds every campaign its share (the fix of one global room that sent every lead to Midsize),
    and the source has enough ready leads of every route for that (so a pass is not the data's luck).

    Per fill run, each campaign's added leads (the run report) and the leads it holds afterwards (the
    simulator) are within one lead of `fair_share(cap)`; its route's ready count before the run is at
    least that share.
    """
    fills = [r for r in results if r.scenario == "fill"]
    names = [name for name, _ in BENCH_CAMPAIGNS]
    fed_name = (f"every fill feeds both campaigns ({' and '.join(names)}), each within one lead of its share "
                "(equal shares: half of the cap)")
    ready_name = "the source has ready leads for both routes, at least each one's share of the cap"
    if not fills:
        return [Target(fed_name, "not measured", None), Target(ready_name, "not measured", None)]
    fed: list[str] = []
    ready: list[str] = []
    fed_ok = ready_ok = True
    for r in fills:
        share = fair_share(r.scale)
        tag = f"{r.engine} {r.label}" if r.engine != "duckdb" else r.label
        fed.append(f"{tag}: " + " / ".join(
            f"{n} +{r.route_figure(n, 'added'):,} (holds {r.campaign_leads.get(n, 0):,})" for n in names))
        ready.append(f"{tag}: " + " / ".join(f"{n} {r.route_figure(n, 'ready'):,}" for n in names))
        fed_ok = fed_ok and r.exit_code == 0 and all(
            abs(r.route_figure(n, "added") - share) <= 1 and abs(r.campaign_leads.get(n, 0) - share) <= 1
            for n in names)
        ready_ok = ready_ok and all(r.route_figure(n, "ready") >= share for n in names)
    return [Target(fed_name, "; ".join(fed), fed_ok), Target(ready_name, "ready before the fill: " + "; ".join(ready),
                                                              ready_ok)]


def _merge_phases(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    merged: Counter[str] = Counter()
    for row in rows:
        merged[str(row["key"])] += int(row["count"])
    return [{"key": k, "count": n} for k, n in merged.most_common()]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def per_minute(count: int, seconds: float) -> str:
    return f"{count / seconds * 60:,.0f}" if count and seconds > 0 else "-"


def render_runs(results: Sequence[RunResult]) -> str:
    rows = []
    for r in results:
        statements = f"{r.statement_count}" + (f" (+{r.load_jobs} load)" if r.load_jobs else "")
        rows.append([r.engine, r.label, f"{r.wall_seconds:.1f}", r.api_calls, statements, r.added, r.drained,
                     per_minute(r.added, r.wall_seconds), per_minute(r.drained, r.wall_seconds),
                     f"{r.peak_rss_mb:.0f}", "ok" if r.exit_code == 0 else f"exit {r.exit_code}"])
    return table(["engine", "run", "wall s", "API calls", "statements", "added", "drained", "added/min",
                  "drained/min", "peak MB", "result"], rows)


def render_campaigns(results: Sequence[RunResult]) -> str:
    """Per run and campaign: leads added / drained (run report), leads held after the run (simulator),
    API calls naming the campaign (of which adds); then the calls for all campaigns at once and for none."""
    rows = []
    for r in results:
        if r.scenario == "baseline":
            continue
        row: list[object] = [r.engine, r.label]
        for name, _ in BENCH_CAMPAIGNS:
            row += [f"+{r.route_figure(name, 'added'):,} -{r.route_figure(name, 'drained'):,}",
                    f"{r.campaign_leads.get(name, 0):,}",
                    f"{r.calls_for(name)} ({r.calls_for(name, 'POST /leads/add')})"]
        row += [r.calls_for(ALL_CAMPAIGNS), r.calls_for(WORKSPACE), r.calls_for(AUDIT), r.calls_for(SNAPSHOT),
                r.api_calls]
        rows.append(row)
    headers: list[str] = ["engine", "run"]
    for name, _ in BENCH_CAMPAIGNS:
        headers += [f"{name} +added -drained", f"{name} holds", f"{name} calls (adds)"]
    headers += ["calls for all", "calls for none", "audit calls", "analytics calls", "calls"]
    held = [f"  {r.engine} {r.label}: {name} {entry['reason']}" for r in results for name, entry in r.routes.items()
            if str(entry.get("reason", "")).startswith("held back")]
    return "\n".join([table(headers, rows), *held])


def render_campaign_calls(result: RunResult) -> str:
    """One run's calls per campaign and endpoint, one line per campaign."""
    by: dict[str, list[str]] = {}
    for row in result.api_by_campaign:
        by.setdefault(str(row["campaign"]), []).append(f"{row['key']} x{row['count']}")
    order = [name for name, _ in BENCH_CAMPAIGNS] + [ALL_CAMPAIGNS, WORKSPACE]
    return "\n".join(f"    calls for {name:12} {', '.join(by[name])}"
                     for name in [*order, *sorted(set(by) - set(order))] if name in by)


def render_phases(results: Sequence[RunResult]) -> str:
    """Per run and phase: API calls / statements / seconds (API time + warehouse time of the phase)."""
    rows = []
    for r in results:
        row: list[object] = [r.engine, r.label]
        for phase in PHASES:
            api_s, wh_s = r.seconds_in(r.api, phase), r.seconds_in(r.statements, phase)
            row.append(f"{r.calls(phase=phase)} / {r.statements_in(phase)} / {api_s:.1f}+{wh_s:.1f}s")
        rows.append(row)
    return table(["engine", "run", *[f"{p}: calls / stmts / api+wh s" for p in PHASES]], rows)


def render_detail(result: RunResult) -> str:
    lines = [f"{result.engine} {result.label}: {result.wall_seconds:.1f} s wall; phase seconds "
             + ", ".join(f"{k} {v:.2f}" for k, v in result.phase_seconds.items())]
    for title, rows in (("API", result.api), ("statements", result.statements)):
        for row in sorted(rows, key=lambda x: (PHASES.index(x["phase"]) if x["phase"] in PHASES else 9, x["key"])):
            lines.append(f"    {title:10} {row['phase']:12} {row['key']:34} x{row['count']:<4} {row['seconds']:7.2f} s")
    if result.api_by_campaign:
        lines.append(render_campaign_calls(result))
    lines.append(f"    peak memory {result.start_rss_mb:.0f} MB after imports and opening the warehouse, then rose:")
    for step in result.memory_steps:
        lines.append(f"      {step['phase']:12} {step['what']:44} {step['from_mb']:6.0f} -> {step['to_mb']:4.0f} MB")
    return "\n".join(lines)


@dataclass
class BaselineComparison:
    sample: int
    measured_seconds: float
    api_calls: int
    statements: int
    per_lead_seconds: float
    batch_pause_seconds: float
    extrapolated_per_1000: float
    coldsync_per_1000: float
    coldsync_calls_per_lead: float
    coldsync_statements: int
    coldsync_run: str

    def render(self) -> str:
        base_calls = self.api_calls / self.sample if self.sample else 0.0
        rows = [
            ["API calls per lead", f"{base_calls:.3f}", f"{self.coldsync_calls_per_lead:.4f}",
             _ratio(base_calls, self.coldsync_calls_per_lead)],
            ["wall time per 1,000 leads", f"{self.extrapolated_per_1000:,.0f} s (extrapolated)",
             f"{self.coldsync_per_1000:.1f} s (measured)", _ratio(self.extrapolated_per_1000, self.coldsync_per_1000)],
            ["statements per run of 1,000 leads", f"{1000 + 1:,} (extrapolated: 1 read + 1 per lead)",
             f"{self.coldsync_statements} (measured)", _ratio(1001, self.coldsync_statements)],
        ]
        head = (f"baseline sample: {self.sample} leads in {self.measured_seconds:.1f} s, {self.api_calls} API calls, "
                f"{self.statements} statements; {self.per_lead_seconds:.3f} s per lead incl. the 0.5 s pause; "
                f"batch pause {self.batch_pause_seconds:.1f} s.\n"
                f"extrapolated per 1,000 leads = 1,000 x {self.per_lead_seconds:.3f} s + 9 batch pauses x "
                f"{self.batch_pause_seconds:.1f} s. coldsync figures from the run '{self.coldsync_run}'.")
        return head + "\n" + table(["per-lead baseline vs coldsync", "baseline", "coldsync", "ratio"], rows)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.0f}x" if b > 0 else "-"


def compare_baseline(baseline: RunResult, config: BaselineConfig, results: Sequence[RunResult]) -> BaselineComparison:
    sample = int(baseline.extra.get("leads", 0)) or 1
    paused = float(baseline.extra.get("paused_seconds", 0.0))
    batches = max(math.ceil(sample / config.batch) - 1, 0)
    work = baseline.wall_seconds - paused
    per_lead = (work + sample * config.pause) / sample
    batch_pause = config.batch_pause if batches == 0 else (paused - sample * config.pause) / batches + 0.0
    per_1000 = 1000 * per_lead + (math.ceil(1000 / config.batch) - 1) * batch_pause
    fills = [r for r in results if r.engine == "duckdb" and r.scenario == "fill" and r.added]
    fill = max(fills, key=lambda r: r.added) if fills else None
    small_fill = min(fills, key=lambda r: r.added) if fills else None
    return BaselineComparison(
        sample=sample, measured_seconds=baseline.wall_seconds, api_calls=baseline.api_calls,
        statements=baseline.statement_count, per_lead_seconds=per_lead, batch_pause_seconds=batch_pause,
        extrapolated_per_1000=per_1000,
        coldsync_per_1000=fill.wall_seconds / fill.added * 1000 if fill else 0.0,
        coldsync_calls_per_lead=fill.api_calls / fill.added if fill else 0.0,
        coldsync_statements=small_fill.statement_count if small_fill else 0,
        coldsync_run=fill.label if fill else "none")


def scaled_sizes(sizes: Mapping[str, TableSize], source_rows: int, to_rows: int) -> dict[str, TableSize]:
    """Table sizes with a bigger source: the source, the candidates kept from it (one row per person), the DNC
    list and history grow with it; the state is capped."""
    factor = to_rows / max(source_rows, 1)
    grows = ("source", "ops_candidates", "ops_dnc", "ops_lead_history")
    return {name: (size.scaled(factor) if name in grows else size)
            for name, size in sizes.items()}


def render_bigquery_estimate(results: Sequence[RunResult], sizes: Mapping[str, TableSize], source_rows: int) -> str:
    """Bytes billed per run (estimate) at the measured size and at 3,000,000 source rows, and the monthly cost."""
    duck = [r for r in results if r.engine == "duckdb"]
    if not duck:
        return "no DuckDB runs"
    runs = [r for r in duck if r.scale == max(x.scale for x in duck)]
    big = scaled_sizes(sizes, source_rows, 3_000_000)
    columns = table_columns()
    per_month = scheduled_runs_per_month()
    src = f"{source_rows / 1000:,.0f}k"
    lines = [f"table sizes (BigQuery logical bytes: STRING 2 + UTF-8 bytes, INT64/TIMESTAMP 8, NUMERIC 16, NULL 0), "
             f"measured in the {source_rows:,}-row benchmark warehouse after its runs; x{3_000_000 / source_rows:g} "
             "for source, candidates, DNC and history at 3M:"]
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1].bytes_of(None)):
        lines.append(f"    {name:18} {size.rows:>9,} rows  {size.bytes_of(None) / MIB:8.2f} MiB   at 3M: "
                     f"{big[name].bytes_of(None) / MIB:8.2f} MiB")
    rows = []
    for r in runs:
        labels = _label_counts(r)
        small, large = billed_bytes(labels, r.sql_by_label, sizes, columns, r.rows_by_label), billed_bytes(
            labels, r.sql_by_label, big, columns, r.rows_by_label)
        rows.append([r.label, r.statement_count, f"{small / MIB:,.0f}", f"{large / MIB:,.0f}",
                     f"{small * per_month / TIB:.3f}", f"${small * per_month / TIB * PRICE_PER_TIB:,.2f}",
                     f"{large * per_month / TIB:.3f}", f"${large * per_month / TIB * PRICE_PER_TIB:,.2f}"])
    lines.append(f"\nbilled per run, and per month if every run of the schedule ({per_month:.1f} runs/month: 19 a "
                 f"weekday, 12 a weekend day) were like it; ${PRICE_PER_TIB}/TiB on-demand, 10 MiB minimum per table "
                 "referenced and per statement, free tier (1 TiB/month) ignored:")
    lines.append(table(["run", "statements", f"MiB @{src}", "MiB @3M", f"TiB/mo @{src}", f"$/mo @{src}",
                        "TiB/mo @3M", "$/mo @3M"], rows))
    detail = find(duck, "drain 10%", max(r.scale for r in duck)) or runs[-1]
    lines.append(f"\nper statement of '{detail.label}' (tables read; * = rewritten whole, as UPDATE/DELETE DML bills):")
    statement_rows = []
    for label, count in _label_counts(detail).items():
        sql = detail.sql_by_label.get(label)
        reads, rewrites = statement_reads(sql, columns) if sql else ({}, set())
        staged = ["(staged rows)"] if detail.rows_by_label.get(label, 0) > stage_threshold() else []
        tables = ", ".join(sorted(reads) + [f"{t}*" for t in sorted(rewrites)] + staged) or "(parameters only)"
        one = {label: count}
        small = billed_bytes(one, detail.sql_by_label, sizes, columns, detail.rows_by_label)
        large = billed_bytes(one, detail.sql_by_label, big, columns, detail.rows_by_label)
        statement_rows.append([label, count, tables, f"{small / MIB:,.0f}", f"{large / MIB:,.0f}"])
    lines.append(table(["statement", "n", "tables", f"MiB @{src}", "MiB @3M"], statement_rows))
    request = bigquery_request_bytes(FILL_CAP)
    lines.append(f"\none {FILL_CAP:,}-row state MERGE sent as a query parameter would be {request / MIB:.1f} MiB of "
                 "request (BigQuery's limit is 10 MB): why big row batches are staged with a load job")
    return "\n".join(lines)


def _label_counts(result: RunResult) -> Counter[str]:
    labels: Counter[str] = Counter()
    for row in result.statements:
        labels[str(row["key"])] += int(row["count"])
    return labels


# --------------------------------------------------------------------------------------------------
# Issue 16: each figure against the API minimum and a fair per-lead baseline, and the targets' verdicts


@dataclass(frozen=True)
class CampaignChange:
    """What one run changed in one campaign: leads finished (listed and taken out), ids deleted, leads
    added, and leads that had to be listed because the campaign's count disagreed (the reconcile path)."""

    finished: int = 0
    deleted: int = 0
    added: int = 0
    relisted: int = 0


def minimum_calls(changes: Mapping[str, CampaignChange]) -> int:
    """The fewest Instantly calls a run with these changes can make (issue 16's formula): 1 analytics call,
    then per campaign one list page per 100 finished leads, one delete per 10,000 ids, one add per 1,000
    leads, and (a count mismatch) one page per 100 leads of the campaign listed. The rolling audit and
    the hourly supply signals are not in it (the audit is budgeted apart)."""
    return 1 + sum(math.ceil(c.finished / LEADS_PER_PAGE) + math.ceil(c.deleted / IDS_PER_DELETE)
                   + math.ceil(c.added / LEADS_PER_ADD) + math.ceil(c.relisted / LEADS_PER_PAGE)
                   for c in changes.values())


def per_lead_calls(changes: Mapping[str, CampaignChange]) -> int:
    """The calls of a fair per-lead client for the same changes: per campaign, its finished leads listed by
    filter (one page per 100, at least one page to learn there are none), one delete per lead, and per
    lead added a create and a verifying GET; a mismatched campaign listed like the minimum's."""
    return sum(max(1, math.ceil(c.finished / LEADS_PER_PAGE)) + c.deleted + 2 * c.added
               + math.ceil(c.relisted / LEADS_PER_PAGE) for c in changes.values())


def per_lead_seconds(changes: Mapping[str, CampaignChange], model: LatencyModel, per_second: int,
                     per_minute: int) -> float:
    """Modeled wall seconds of the per-lead client, its calls one after another: the latency model's cost of
    each call (a single-lead add, a GET, a page, a one-id delete), and never faster than the pacer allows."""
    latency = 0.0
    for c in changes.values():
        pages = max(1, math.ceil(c.finished / LEADS_PER_PAGE)) + math.ceil(c.relisted / LEADS_PER_PAGE)
        latency += pages * model.base + (c.finished + c.relisted) * model.list_per_item
        latency += c.deleted * model.delete_seconds(1) + c.added * (model.add_seconds(1) + model.base)
    calls = per_lead_calls(changes)
    return max(latency, calls / per_second, calls / per_minute * 60)


def run_changes(result: RunResult) -> dict[str, CampaignChange]:
    """Per campaign, what the run changed (its report's added and drained; a drained lead is listed and
    deleted) and, for a campaign changed by hand, one listing of the leads it holds."""
    return {name: CampaignChange(finished=result.route_figure(name, "drained"),
                                 deleted=result.route_figure(name, "drained"),
                                 added=result.route_figure(name, "added"),
                                 relisted=result.campaign_leads.get(name, 0) if name in result.mismatched else 0)
            for name, _ in BENCH_CAMPAIGNS}


def audit_budget(tracked: int, runs_per_day: int = RUNS_PER_WEEKDAY) -> int:
    """The rolling audit's calls a run may make (issue 16): ceil(tracked / 100 / runs per day) + 1."""
    return math.ceil(tracked / LEADS_PER_PAGE / runs_per_day) + 1


@functools.cache
def _cached_views() -> dict[str, str]:
    return _view_bodies()


def source_reads(result: RunResult) -> tuple[int, int, list[str]]:
    """(statements that read source rows, cheap change signals, the labels of the reads) of one run.

    A statement reads the source when its SQL (views expanded) references the source table; one that
    references at most one source column (a row count, a max of an updated-at column) is a change signal,
    not a read of the rows. SQL that cannot be parsed counts as a read when it names `{source}`."""
    columns = table_columns()
    reads = signals = 0
    labels: list[str] = []
    for label, count in _label_counts(result).items():
        sql = result.sql_by_label.get(label) or ""
        try:
            used: set[str] | None = statement_reads(sql, columns, _cached_views())[0].get("source")
        except Exception:  # a statement sqlglot does not parse: judged by the placeholder
            used = set(columns["source"]) if "{source}" in sql else None
        if used is None:
            continue
        if len(used) <= 1:
            signals += count
        else:
            reads += count
            labels.append(f"{label} x{count}" if count > 1 else label)
    return reads, signals, labels


def _lane(results: Sequence[RunResult], rows: int) -> list[RunResult]:
    return [r for r in results if r.engine == "duckdb" and r.source_rows == rows]


def _at_cap(results: Sequence[RunResult]) -> list[RunResult]:
    """The runs at the benchmark's largest cap (24,000 by default)."""
    if not results:
        return []
    cap = max(r.scale for r in results)
    return [r for r in results if r.scale == cap]


def issue16_targets(results: Sequence[RunResult], model: LatencyModel,
                    lane_sizes: Mapping[int, Mapping[str, TableSize]] | None = None) -> list[Target]:
    """Issue 16's targets 1-4 and 7, each PASS / FAIL, or "not measured" when this run has not the lane or
    scenario it needs. Target 5 is judged from the runs' state reads, target 6 from the DuckDB settings each
    lane's warehouse resolved (its memory limit and spill folder)."""
    duck = _at_cap([r for r in results if r.engine == "duckdb"])
    lanes = sorted({r.source_rows for r in duck})
    out: list[Target] = []
    # Target 1: reads of the source.
    steady = [r for r in duck if r.scenario == "steady"]
    name = "target 1: a steady run reads no source rows"
    out.append(Target(name, "; ".join(f"{r.source_rows:,} rows: {source_reads(r)[0]} reads, "
                                      f"{source_reads(r)[1]} change signals" for r in steady) or "",
                      all(source_reads(r)[0] == 0 for r in steady) if steady else None))
    worst = max(duck, key=lambda r: source_reads(r)[0], default=None)
    out.append(Target("target 1: every run reads the source at most once",
                      f"most: {source_reads(worst)[0]} ({worst.lane_label}: {', '.join(source_reads(worst)[2])})"
                      if worst else "", source_reads(worst)[0] <= 1 if worst else None))
    # Target 2: cost that does not grow with the source.
    small, large = _lane(duck, SMALL_LANE), _lane(duck, LARGE_LANE)
    s_steady, l_steady = find(small, "steady", FILL_CAP, source_rows=SMALL_LANE), find(
        large, "steady", FILL_CAP, source_rows=LARGE_LANE)
    name = f"target 2: steady at 3M <= {STEADY_CPU_RATIO}x steady at 30k CPU"
    if s_steady and l_steady:
        ratio = l_steady.cpu_seconds / max(s_steady.cpu_seconds, 1e-9)
        out.append(Target(name, f"{l_steady.cpu_seconds:.1f} s / {s_steady.cpu_seconds:.1f} s = {ratio:.1f}x",
                          ratio <= STEADY_CPU_RATIO))
    else:
        out.append(Target(name, "needs lanes 30,000 and 3,000,000 at cap 24,000", None))
    name = f"target 2: fill and drains at 3M <= {CHANGE_CPU_RATIO}x their 30k CPU"
    pairs = [(a, b) for a in small if a.scenario.startswith(("fill", "drain"))
             if (b := find(large, a.scenario, a.scale, source_rows=LARGE_LANE)) is not None]
    if pairs:
        ratios = [(a.scenario, b.cpu_seconds / max(a.cpu_seconds, 1e-9)) for a, b in pairs]
        out.append(Target(name, ", ".join(f"{s} {x:.1f}x" for s, x in ratios),
                          all(x <= CHANGE_CPU_RATIO for _, x in ratios)))
    else:
        out.append(Target(name, "needs lanes 30,000 and 3,000,000 at cap 24,000", None))
    columns = table_columns()
    for rows in lanes:
        name = f"target 2: BigQuery bytes per steady run < {STEADY_MAX_BILLED // MIB} MiB at {rows:,} rows (estimate)"
        run = find(duck, "steady", max(r.scale for r in duck), source_rows=rows)
        sizes = (lane_sizes or {}).get(rows)
        if run is None or not sizes:
            out.append(Target(name, "", None))
            continue
        billed = billed_bytes(_label_counts(run), run.sql_by_label, sizes, columns, run.rows_by_label)
        out.append(Target(name, f"{billed / MIB:,.0f} MiB over {run.statement_count} statements (10 MiB minimum "
                          "per statement: as written, no run that sends a statement can pass)",
                          billed < STEADY_MAX_BILLED))
        # What the target is after (a run's cost follows what changed): the bytes the steady run's statements
        # scan, without the per-statement minimum, and how many of them are source bytes.
        scanned = billed_bytes(_label_counts(run), run.sql_by_label, sizes, columns, run.rows_by_label,
                               minimums=False)
        source = source_reads(run)[0]
        out.append(Target(f"target 2 (as scanned): bytes a steady run's statements scan < {STEADY_MAX_BILLED // MIB} "
                          f"MiB at {rows:,} rows, no source statement (estimate)",
                          f"{scanned / MIB:,.1f} MiB scanned, {source} source statement(s)",
                          scanned < STEADY_MAX_BILLED and source == 0))
    # Target 3: the 24,000 fill against the real API's latency.
    name = (f"target 3: {FILL_CAP:,} fill at {ADD_SECONDS_ASSUMED:g} s per add < {FILL_SECONDS_AT_2S_ADDS:g} s")
    fill = find(duck, "fill", FILL_CAP, source_rows=lanes[0]) if lanes else None
    add = model.add_seconds(LEADS_PER_ADD)
    if fill is None:
        out.append(Target(name, f"needs a fill at cap {FILL_CAP:,}", None))
    elif abs(add - ADD_SECONDS_ASSUMED) > 0.05 * ADD_SECONDS_ASSUMED:
        out.append(Target(name, f"the latency model charges {add:.2f} s per 1,000-lead add", None))
    else:
        out.append(Target(name, f"{fill.wall_seconds:.1f} s wall ({fill.lane_label}, "
                          f"{fill.calls('POST /leads/add')} adds)", fill.wall_seconds < FILL_SECONDS_AT_2S_ADDS))
    # Target 4: calls against the minimum, every scenario; the audit and the hourly analytics snapshot apart.
    runs = [r for r in duck if r.source_rows == lanes[0]] if lanes else []
    for r in runs:
        minimum = minimum_calls(run_changes(r))
        calls = r.api_calls - r.audit_calls - r.snapshot_calls
        out.append(Target(f"target 4: calls <= {MAX_CALL_RATIO}x minimum: {r.label}",
                          f"{calls} calls (audit, snapshot apart) / minimum {minimum} = {calls / minimum:.2f}x",
                          calls <= MAX_CALL_RATIO * minimum))
    if not runs:
        out.append(Target(f"target 4: calls <= {MAX_CALL_RATIO}x minimum", "no runs", None))
    audited = [(r, audit_budget(sum(r.campaign_leads.values()))) for r in runs]
    out.append(Target(f"target 4 (apart): rolling audit <= ceil(tracked / 100 / {RUNS_PER_WEEKDAY} runs a day) + 1 "
                      "calls per run",
                      ", ".join(f"{r.scenario} {r.audit_calls} (budget {b})" for r, b in audited),
                      all(r.audit_calls <= b for r, b in audited) if audited else None))
    # Target 5: the state read once into typed structures (the index builds are counted by
    # tests/test_tracked_state.py); a run that wrote no state since reading it never reads it again.
    quiet = [r for r in duck if r.scenario in ("steady", "mismatch")]
    out.append(Target("target 5: a run that changes no state reads it once (state.read statements)",
                      "; ".join(f"{r.lane_label}: {_label_counts(r)['state.read']}" for r in quiet) or "",
                      all(_label_counts(r)["state.read"] == 1 for r in quiet) if quiet else None))
    changed = [r for r in duck if r.scenario not in ("steady", "mismatch")]
    out.append(Target("target 5: a run that changes the state reads it at most twice (once more after its writes, "
                      "for housekeeping)",
                      ", ".join(f"{r.scenario} {_label_counts(r)['state.read']}" for r in changed
                                if r.source_rows == (lanes[0] if lanes else 0)) or "",
                      all(_label_counts(r)["state.read"] <= 2 for r in changed) if changed else None))
    # Target 6: DuckDB's memory limit and spill folder, as each lane's warehouse resolves them.
    out.append(target6(duck))
    # Target 7: memory at 3M.
    name = f"target 7: peak memory < {MAX_PEAK_MB:.0f} MB at 3M source rows"
    big = [r for r in results if r.engine == "duckdb" and r.source_rows >= LARGE_LANE]
    heaviest = max(big, key=lambda r: r.peak_rss_mb, default=None)
    out.append(Target(name, f"{heaviest.peak_rss_mb:.0f} MB ({heaviest.lane_label})" if heaviest else
                      "needs the 3,000,000 lane", heaviest.peak_rss_mb < MAX_PEAK_MB if heaviest else None))
    return out


def target6(runs: Sequence[RunResult]) -> Target:
    """Issue 16 target 6 from the runs' own warehouses: DUCKDB_MEMORY_LIMIT=auto as resolved for each lane (it
    scales with the warehouse file, within its window) and the spill folder (beside the file, under the bench's
    folder, never the working directory). PASS when every lane spills into `<warehouse file>.tmp/`, the product's
    default (`coldsync.warehouse.duckdb.spill_dir`: under data/ and git-ignored for DUCKDB_PATH's default), and never
    into the working directory."""
    seen: dict[int, dict[str, Any]] = {r.source_rows: r.extra["duckdb"] for r in runs
                                       if isinstance(r.extra.get("duckdb"), dict)}
    if not seen:
        return Target("target 6: DuckDB memory limit and spill folder are settings, never the working directory",
                      "not measured", None)
    from coldsync.warehouse.duckdb import spill_dir

    cwd = Path.cwd().resolve()
    outside = all(str(d.get("file")) and Path(str(d["spill"])) == spill_dir(Path(str(d["file"])))
                  and Path(str(d["spill"])).resolve() not in (cwd, cwd / ".tmp") for d in seen.values())
    detail = "; ".join(f"{rows:,} rows: limit {d['limit']}, spills to {d['spill']}" for rows, d in sorted(seen.items()))
    return Target("target 6: DuckDB memory limit and spill folder are settings, never the working directory",
                  detail, outside)


def render_against_minimum(results: Sequence[RunResult], model: LatencyModel, per_second: int,
                           per_minute: int) -> str:
    """Per run: wall and CPU seconds, calls (the audit apart) against the API minimum, and the fair per-lead
    baseline's calls and modeled seconds against the run's."""
    rows = []
    for r in results:
        if r.engine != "duckdb" or r.scenario == "baseline":
            continue
        changes = run_changes(r)
        minimum, base_calls = minimum_calls(changes), per_lead_calls(changes)
        base_seconds = per_lead_seconds(changes, model, per_second, per_minute)
        calls = r.api_calls - r.audit_calls - r.snapshot_calls
        reads, signals, _ = source_reads(r)
        rows.append([f"{r.source_rows:,}", r.label, f"{r.wall_seconds:.1f}", f"{r.cpu_seconds:.1f}", calls,
                     r.audit_calls, r.snapshot_calls, minimum, f"{calls / minimum:.2f}x", base_calls,
                     f"{base_calls / max(calls, 1):,.1f}x", f"{base_seconds:,.0f}",
                     f"{base_seconds / max(r.wall_seconds, 1e-9):,.1f}x", f"{reads}+{signals}",
                     f"{r.peak_rss_mb:.0f}"])
    return table(["source rows", "run", "wall s", "CPU s", "calls", "audit", "analytics", "minimum", "calls/min",
                  "per-lead calls", "per-lead/calls", "per-lead s", "per-lead s/wall", "src reads+signals",
                  "peak MB"], rows)


# --------------------------------------------------------------------------------------------------
# Orchestration


@dataclass
class BenchOutcome:
    results: list[RunResult]
    baseline: RunResult | None
    comparison: BaselineComparison | None
    targets: list[Target]
    table_sizes: dict[str, TableSize]
    notes: list[str]
    source_ready: dict[str, int] = field(default_factory=dict)  # ready leads per route before the runs
    lane_sizes: dict[int, dict[str, TableSize]] = field(default_factory=dict)  # per lane: table sizes after its runs
    goals: list[Target] = field(default_factory=list)  # issue 16's targets
    latency: LatencyModel = field(default_factory=LatencyModel)


def ready_by_route(warehouse: Warehouse, settings: Settings) -> dict[str, int]:
    """Ready leads per route at START, counted by the product's own routing rule (the revenue mix of the
    synthetic source decides it: unknown or under SMB_REVENUE_THRESHOLD is SMB, the rest Midsize)."""
    counts, _unscored = Store.for_settings(warehouse, "bench-setup", START, settings).ready_counts()
    ready = {route.name: counts.get(route.name, 0) for route in settings.routing.routes}
    if counts.get(None):
        ready["(unrouted)"] = counts[None]
    return ready


def build_template(folder: Path, source_rows: int, seed: int = 7,
                   name: str = "template") -> tuple[Path, dict[str, int]]:
    """The DuckDB warehouse every world copies, and its ready leads per route."""
    path = folder / f"{name}.duckdb"
    settings = bench_settings(bench_environ(path, cap=FILL_CAP, target=FILL_CAP), folder)
    warehouse = open_duckdb(path, settings)
    try:
        build_warehouse(warehouse, settings, source_rows, seed)
        ready = ready_by_route(warehouse, settings)
    finally:
        warehouse.close()
    return path, ready


def schema_digest() -> str:
    """A short hash of the code that shapes a template warehouse (coldsync/warehouse/*.py, coldsync/routes.py, and
    TEMPLATE_FORMAT for build_warehouse's own steps): a cached template built by other code is not reused."""
    files = [*sorted((REPO_ROOT / "coldsync" / "warehouse").glob("*.py")), REPO_ROOT / "coldsync" / "routes.py"]
    digest = hashlib.sha256(f"template format {TEMPLATE_FORMAT}".encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def cached_template(folder: Path, source_rows: int, seed: int,
                    cache_dir: Path | None) -> tuple[Path, dict[str, int], bool]:
    """The template warehouse of a lane: built once and kept in `cache_dir` (default `data/bench/`, git-ignored),
    reused while the source size, the seed and the warehouse code are the same. Returns (path, ready per
    route, reused). `cache_dir` None with no repository data folder builds into `folder` (not kept)."""
    cache = cache_dir if cache_dir is not None else REPO_ROOT / "data" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"template-{source_rows}-seed{seed}-{schema_digest()}"
    path, ready_file = cache / f"{stem}.duckdb", cache / f"{stem}.ready.json"
    if path.is_file() and ready_file.is_file():
        return path, {str(k): int(v) for k, v in json.loads(ready_file.read_text(encoding="utf-8")).items()}, True
    built, ready = build_template(folder, source_rows, seed, name=f"{stem}-building")
    shutil.move(str(built), str(path))  # the catalog is named after the file: every world copies it anyway
    ready_file.write_text(json.dumps(ready), encoding="utf-8")
    return path, ready, False


def duck_world(config: BenchConfig, folder: Path, template: Path, scale: int, name: str,
               source_rows: int = 0) -> World:
    path = folder / f"{name}.duckdb"
    shutil.copyfile(template, path)
    return World(config, folder, "duckdb", scale, {}, path, source_rows)


def run_benchmark(config: BenchConfig, echo: Callable[[str], None] = print) -> BenchOutcome:
    folder = config.workdir or Path(tempfile.mkdtemp(prefix="coldsync-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    try:
        results: list[RunResult] = []
        sizes: dict[str, TableSize] = {}
        lane_sizes: dict[int, dict[str, TableSize]] = {}
        ready: dict[str, int] = {}
        template = folder / "none.duckdb"
        for rows in config.source_rows:
            started = time.perf_counter()
            template, ready, reused = cached_template(folder, rows, config.seed, config.cache_dir)
            mix = ", ".join(f"{name} {n:,}" for name, n in ready.items())
            how = f"reused {template.name}" if reused else f"built in {time.perf_counter() - started:.1f} s"
            echo(f"DuckDB warehouse of {rows:,} source rows: {how}; ready per route: {mix}")
            notes.append(f"DuckDB source of {rows:,} rows, ready per route before the runs: {mix}")
            for scale in config.scales:
                world = duck_world(config, folder, template, scale, f"rows-{rows}-scale-{scale}", rows)
                try:
                    results.extend(world.scenarios(config.finished, echo, mismatch=config.mismatch,
                                                   source_change=config.source_change))
                finally:
                    world.close()
                if scale == max(config.scales):
                    lane_sizes[rows] = measure_table_sizes(world.duckdb_path, "coldsync")
                world.duckdb_path.unlink(missing_ok=True)
        sizes = lane_sizes.get(config.largest_source, {})
        baseline = comparison = None
        if config.baseline.sample > 0:
            world = duck_world(config, folder, template, config.baseline.sample, "baseline")
            try:
                baseline = world.run("baseline", target=config.baseline.sample, mode="baseline",
                                     baseline=config.baseline)
            finally:
                world.close()
            echo(f"  baseline {baseline.extra.get('leads')} leads one by one: {baseline.wall_seconds:.1f} s, "
                 f"{baseline.api_calls} calls, {baseline.statement_count} statements")
            comparison = compare_baseline(baseline, config.baseline, results)
        if config.bigquery:
            results.extend(run_bigquery_lane(config, folder, notes, echo))
        largest = [r for r in results if r.engine != "duckdb" or r.source_rows == config.largest_source]
        return BenchOutcome(results, baseline, comparison, evaluate_targets(largest, config.largest_source), sizes,
                            notes, ready, lane_sizes, issue16_targets(results, config.latency_model(), lane_sizes),
                            config.latency_model())
    finally:
        if config.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


def run_bigquery_lane(config: BenchConfig, folder: Path, notes: list[str],
                      echo: Callable[[str], None]) -> list[RunResult]:
    """The same scenarios through the official BigQuery client against the local emulator (smaller)."""
    try:
        from tests.bq_emulator import emulator_available, start_emulator
    except ImportError as exc:  # the google client or the tests package is missing
        notes.append(f"BigQuery lane skipped: {exc}")
        return []
    available, why = emulator_available()
    if not available:
        notes.append(f"BigQuery lane skipped: {why}")
        return []
    handle = start_emulator()
    try:
        dataset = f"bench_{uuid.uuid4().hex[:8]}"
        spec = {"endpoint": handle.endpoint, "project": handle.project, "dataset": dataset}
        path = folder / "unused.duckdb"
        settings = bench_settings(bench_environ(path, cap=config.bq_scale, target=config.bq_scale), folder)
        warehouse = open_bigquery(handle.endpoint, handle.project, dataset)
        started = time.perf_counter()
        try:
            build_warehouse(warehouse, settings, config.bq_source_rows)
        finally:
            warehouse.close()
        echo(f"built the BigQuery emulator warehouse: {config.bq_source_rows:,} source rows in "
             f"{time.perf_counter() - started:.1f} s")
        world = World(config, folder, "bigquery", config.bq_scale, spec, path)
        try:
            results = world.scenarios(config.finished, echo)
        except RuntimeError as exc:
            notes.append(f"BigQuery lane stopped: {str(exc)[:500]}")
            results = []
        finally:
            world.close()
        notes.append(f"BigQuery lane: emulator (bqemulator, DuckDB inside), {config.bq_source_rows:,} source rows, "
                     f"cap {config.bq_scale:,}; its wall times are the emulator's, not BigQuery's")
        return results
    finally:
        handle.stop()


def render(outcome: BenchOutcome, config: BenchConfig) -> str:
    parts = ["", "== Runs (each one full run_sync in its own process)", render_runs(outcome.results), "",
             "== Per campaign: leads added -drained (run report), leads held after the run (simulator), API calls "
             "naming the campaign (of them: POST /leads/add); calls for all = one call naming every campaign; "
             "calls for none = block list, workspace",
             render_campaigns(outcome.results), "",
             "== Per phase: API calls / warehouse statements / seconds in API calls + seconds in statements",
             render_phases(outcome.results), ""]
    pacer = bench_settings(bench_environ(Path("x.duckdb"), cap=FILL_CAP, target=FILL_CAP), Path("."))
    parts += ["== Against the API minimum and a fair per-lead baseline (issue 16)",
              f"latency model: {outcome.latency.describe()}; pacer: the product's default "
              f"({pacer.instantly_max_per_second}/s, {pacer.instantly_max_per_minute:,}/min)",
              "calls: every HTTP attempt but the rolling audit's (its own column); minimum: 1 analytics call + per "
              "campaign 1 page per 100 finished + 1 delete per 10,000 ids + 1 add per 1,000 leads (+ 1 page per "
              "100 leads of a campaign whose count was changed by hand); per-lead: per campaign its finished "
              "leads listed by filter + 1 delete per lead + a create and a verifying GET per lead added, "
              "its seconds modeled (calls one after another); src reads+signals: statements reading source "
              "rows + cheap change signals",
              render_against_minimum(outcome.results, outcome.latency, pacer.instantly_max_per_second,
                                     pacer.instantly_max_per_minute), ""]
    parts += ["== Targets of issue 16 (figures of record: docs/PERFORMANCE.md)"]
    parts += [t.line() for t in outcome.goals]
    parts += ["", "== Targets of issue 7 (largest source lane; both campaigns fed)"]
    parts += [f"  {t.verdict:4}  {t.name}: {t.measured}" for t in outcome.targets]
    if outcome.comparison is not None:
        parts += ["", "== Side by side: the per-lead baseline (extrapolated from a sample) vs coldsync",
                  outcome.comparison.render()]
    if outcome.table_sizes:
        parts += ["", "== BigQuery bytes per run (estimate, see docs/PERFORMANCE.md)",
                  render_bigquery_estimate([r for r in outcome.results if r.source_rows == config.largest_source],
                                           outcome.table_sizes, config.largest_source)]
    if outcome.results:
        parts += ["", "== Where the cost goes (the runs behind the targets, at the largest cap)"]
        for result in _runs_to_explain(outcome.results):
            parts.append(render_detail(result))
            if result.profile:
                parts += ["  cProfile, top functions by cumulative time:", _indent(result.profile, 4)]
            if result.allocations:
                parts.append(_indent(result.allocations, 2))
    if outcome.notes:
        parts += ["", "== Notes", *[f"  {n}" for n in outcome.notes]]
    return "\n".join(parts)


def _runs_to_explain(results: Sequence[RunResult]) -> list[RunResult]:
    duck = [r for r in results if r.engine == "duckdb"]
    if not duck:
        return []
    largest = max(r.scale for r in duck)
    picks = [find(duck, s, largest) for s in ("fill", "steady", "drain 10%")]
    picks.append(max(duck, key=lambda r: r.statement_count))
    return list({id(p): p for p in picks if p is not None}.values())


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    config = BenchConfig()
    if args.quick:
        config.scales, config.source_rows, config.finished = (1_000,), (20_000,), (0.10,)
        config.bq_source_rows, config.bq_scale = 20_000, 1_000
    if args.scales:
        config.scales = tuple(int(s) for s in args.scales.split(","))
    if args.source_rows is not None:
        config.source_rows = tuple(int(s.replace("_", "")) for s in args.source_rows.split(","))
    config.flat_latency = args.flat_latency
    if args.add_latency_per_lead is not None:
        config.add_latency_per_lead = args.add_latency_per_lead
    config.mismatch = not args.no_mismatch
    config.source_change = not args.no_source_change
    if args.cache_dir:
        config.cache_dir = Path(args.cache_dir)
    if args.baseline_sample is not None:
        config.baseline.sample = args.baseline_sample
    config.baseline.pause = args.baseline_pause
    config.baseline.batch_pause = args.baseline_batch_pause
    config.latency = args.latency
    config.bigquery = args.bigquery
    config.profile = args.profile
    if args.bq_source_rows is not None:
        config.bq_source_rows = args.bq_source_rows
    if args.bq_scale is not None:
        config.bq_scale = args.bq_scale
    if args.workdir:
        config.workdir = Path(args.workdir)
    config.duckdb_settings = tuple(args.duckdb_setting or ())
    config.max_bounce_rate = args.max_bounce_rate
    return config


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m coldsync.bench",
                                description="Benchmark: a sync run costs what changed, not what is there.")
    p.add_argument("--quick", action="store_true", help="small smoke configuration (cap 1,000, 20,000 source rows)")
    p.add_argument("--latency", type=float, default=0.15,
                   help="the latency model's base: seconds every simulated API call takes (0.15)")
    p.add_argument("--add-latency-per-lead", type=float,
                   help="seconds a bulk add takes per lead on top of the base (0.00185: a 1,000-lead add is 2 s)")
    p.add_argument("--flat-latency", action="store_true",
                   help="charge every call the base only, whatever it carries (the model before issue 16)")
    p.add_argument("--scales", help="inventory caps, comma-separated (default 24000)")
    p.add_argument("--source-rows",
                   help="source table rows, one lane each, comma-separated, e.g. 30000,300000,3000000 (default "
                        "30000); each lane's warehouse is built once and cached under data/bench/")
    p.add_argument("--cache-dir", help="where lane warehouses are cached (default data/bench/, git-ignored)")
    p.add_argument("--no-mismatch", action="store_true", help="skip the count-mismatch scenario")
    p.add_argument("--no-source-change", action="store_true",
                   help="skip the source-change scenario (1%% of source rows edited, then a 1%% drain)")
    p.add_argument("--baseline-sample", type=int,
                   help="leads the replaced system's per-lead loop adds, with its pauses (default 0: skipped)")
    p.add_argument("--baseline-pause", type=float, default=0.5, help="baseline pause after each lead (0.5 s)")
    p.add_argument("--baseline-batch-pause", type=float, default=10.0,
                   help="baseline pause between batches of 100 (10 s)")
    p.add_argument("--bigquery", action="store_true", help="also run the scenarios on the local BigQuery emulator")
    p.add_argument("--bq-source-rows", type=int, help="source rows on the BigQuery lane (default 300000)")
    p.add_argument("--bq-scale", type=int, help="inventory cap on the BigQuery lane (default 24000)")
    p.add_argument("--profile", action="store_true",
                   help="run every measured run under cProfile and tracemalloc (slower) and print where time goes")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    p.add_argument("--duckdb-setting", action="append", metavar="NAME=VALUE",
                   help="experiment: SET this on the DuckDB connection of every run, e.g. \"memory_limit='128MB'\"")
    p.add_argument("--max-bounce-rate", type=float, default=BENCH_MAX_BOUNCE_RATE,
                   help="MAX_BOUNCE_RATE of the runs (default 100: the simulated finished leads have one email "
                        "each, so their bounce rate is not a workspace's; the product's default is 5)")
    p.add_argument("--workdir", help="keep the warehouses in this folder (default: a temporary one, removed)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-result", help=argparse.SUPPRESS)
    return p


def source_version() -> str:
    """The commit measured, marked when the product code differs from it (figures belong to a version)."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = git("status", "--porcelain", "--", "coldsync", "sync_once.py", "setup.py", ":(exclude)coldsync/bench.py")
    return f"{commit} (with uncommitted changes to the product code)" if changed else commit


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        return child_main(Path(args.child), Path(args.child_result))
    config = config_from_args(args)
    command = "python -m coldsync.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    version = source_version()
    print(f"$ {command.strip()}")
    print(f"coldsync {version}; Python {sys.version.split()[0]} on {os.cpu_count()} CPU(s)")
    pacer = bench_settings(bench_environ(Path("x.duckdb"), cap=FILL_CAP, target=FILL_CAP), Path("."))
    print(f"latency model: {config.latency_model().describe()}; pacer: the product's default "
          f"({pacer.instantly_max_per_second}/s, {pacer.instantly_max_per_minute:,}/min); source "
          f"{', '.join(f'{n:,}' for n in config.source_rows)} rows, caps "
          f"{', '.join(f'{s:,}' for s in config.scales)}, runs "
          f"{RUN_SPACING.seconds // 60} min apart, MAX_BOUNCE_RATE {config.max_bounce_rate:g}%", flush=True)
    if config.duckdb_settings:
        print(f"EXPERIMENT (not the product as committed): DuckDB settings {list(config.duckdb_settings)}",
              flush=True)
    outcome = run_benchmark(config, echo=lambda line: print(line, flush=True))
    print(render(outcome, config))
    if args.json:
        data = {"command": command.strip(), "version": version, "config": asdict(config),
                "runs": [asdict(r) | {"per_campaign": r.per_campaign()} for r in outcome.results],
                "baseline": asdict(outcome.baseline) if outcome.baseline else None,
                "comparison": asdict(outcome.comparison) if outcome.comparison else None,
                "targets": [asdict(t) | {"verdict": t.verdict} for t in outcome.targets],
                "issue16_targets": [asdict(t) | {"verdict": t.verdict} for t in outcome.goals],
                "table_sizes": {k: asdict(v) for k, v in outcome.table_sizes.items()}, "notes": outcome.notes,
                "source_ready": outcome.source_ready}
        Path(args.json).write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    failed = [r for r in outcome.results if r.exit_code != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
