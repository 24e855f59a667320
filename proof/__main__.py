"""python -m proof: re-measure the reliability figures of docs/RELIABILITY.md and print them.

    python -m proof                 everything (a few minutes; BigQuery parts when the emulator is installed)
    python -m proof --quick         a sample of every part (about two minutes)
    python -m proof --no-bigquery   DuckDB only
    python -m proof --json          the figures as JSON

Exit code 0 when no violation was found, 1 otherwise (each violation is printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import socketserver
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proof import concurrency, crash, honest, hostile, hostile_dnc, sigkill, storms
from proof.engines import Engines
from proof.harness import Tally


@dataclass
class Part:
    """One part of the proof and its figures."""

    name: str
    tally: Tally = field(default_factory=Tally)
    seconds: float = 0.0
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_all(workdir: Path, *, quick: bool, bigquery: bool | None,
            echo: Callable[[str], None] | None = None) -> list[Part]:
    """Every part, in order; `bigquery` None means: when the emulator is installed."""
    say = echo or (lambda _m: None)
    engines = Engines(workdir)
    available, why = engines.bigquery_available()
    use_bigquery = available if bigquery is None else bigquery
    parts: list[Part] = []

    def part(name: str, action: Callable[[Part], None], *, skip: str | None = None) -> None:
        found = Part(name)
        parts.append(found)
        if skip:
            found.skipped = skip
            say(f"-- {name}: skipped ({skip})")
            return
        say(f"-- {name} ...")
        started = time.monotonic()
        action(found)
        found.seconds = time.monotonic() - started
        say(f"   {found.seconds:.0f} s, {len(found.tally.violations)} violation(s)")

    no_bq = None if use_bigquery else f"BigQuery emulator not used: {why}" if not available else "--no-bigquery"
    step = 4 if quick else 1
    try:
        part("crash at every step (DuckDB)",
             lambda p: crash.crash_matrix(engines, "duckdb", p.tally, step=step))
        part("crash at every step (BigQuery emulator, sample)",
             lambda p: crash.crash_matrix(engines, "bigquery", p.tally,
                                          scenarios=["leftovers"] if quick else ["mid_lifecycle", "leftovers"],
                                          step=12 if quick else 3), skip=no_bq)
        part("SIGKILL of sync_once.py", lambda p: sigkill.sigkill_trials(workdir, p.tally, trials=4 if quick else 16))
        part("fault storms (DuckDB)", lambda p: storms.storm_runs(engines, "duckdb", p.tally,
                                                                  runs=40 if quick else 200))
        part("fault storms (BigQuery emulator)", lambda p: storms.storm_runs(engines, "bigquery", p.tally,
                                                                             runs=10 if quick else 30), skip=no_bq)
        part("hostile source rows (DuckDB)", lambda p: hostile.hostile_source(engines, "duckdb", p.tally))
        part("hostile source rows (BigQuery emulator)",
             lambda p: hostile.hostile_source(engines, "bigquery", p.tally), skip=no_bq)
        part("hostile DNC entries (DuckDB)", lambda p: hostile_dnc.hostile_dnc(engines, "duckdb", p.tally))
        part("hostile DNC entries (BigQuery emulator)",
             lambda p: hostile_dnc.hostile_dnc(engines, "bigquery", p.tally), skip=no_bq)
        part("hostile Instantly answers", lambda p: hostile.hostile_api(engines, "duckdb", p.tally,
                                                                        rounds=8 if quick else 24))
        for engine, label, skip in (("duckdb", "DuckDB", None), ("bigquery", "BigQuery emulator", no_bq)):
            honest_parts(part, engines, engine, label, skip, quick)
        part("concurrent runs (DuckDB, sync_once.py)",
             lambda p: concurrency.duckdb_pairs(workdir, p.tally, pairs=2 if quick else 5))
        part("concurrent runs (BigQuery emulator, two processes)",
             lambda p: concurrency.bigquery_pairs(engines, p.tally, pairs=2 if quick else 5), skip=no_bq)

        def lease(p: Part) -> None:
            p.extra["killed run's lock taken over, next run done after (s)"] = concurrency.killed_holder_takeover(
                workdir, p.tally)

        part("lock of a killed run (real time, DuckDB, 30-minute lease)", lease)
    finally:
        engines.close()
    return parts


def honest_parts(part: Callable[..., None], engines: Engines, engine: str, label: str, skip: str | None,
                 quick: bool) -> None:
    """The scenarios of proof/honest.py (issue #12) on one engine."""
    def deletes(p: Part) -> None:
        honest.hand_deletes(engines, engine, p.tally, rounds=3 if quick else 8)

    def outage(p: Part) -> None:
        honest.outage(engines, engine, p.tally)

    def listing(p: Part) -> None:
        honest.contradicting_listing(engines, engine, p.tally)

    part(f"hand deletes with balanced counts ({label})", deletes, skip=skip)
    part(f"three-hour outage of POST /leads/add ({label})", outage, skip=skip)
    part(f"empty listing contradicting the count ({label})", listing, skip=skip)


def violations(parts: list[Part]) -> list[str]:
    return [f"[{p.name}] {v}" for p in parts for v in p.tally.violations]


def render(parts: list[Part], seconds: float) -> str:
    lines = ["coldsync reliability proof", ""]
    total = Tally()
    for found in parts:
        if found.skipped:
            lines.append(f"{found.name}: skipped ({found.skipped})")
            continue
        total.merge(found.tally)
        longest = f", longest run {found.tally.max_run_seconds:.2f} s" if found.tally.max_run_seconds else ""
        lines.append(f"{found.name}: {len(found.tally.violations)} violation(s), {found.seconds:.0f} s{longest}")
        for key, value in sorted(found.tally.counts.items()):
            lines.append(f"    {key}: {value}")
        for key, value in sorted(found.tally.peaks.items()):
            lines.append(f"    {key}: {value}")
        if found.tally.kinds:
            lines.append(f"    distinct (operation, position) pairs killed at: {len(found.tally.kinds)}")
        for key, value in found.extra.items():
            lines.append(f"    {key}: {value if value is None else round(value, 1)}")
    runs = total.counts.get("runs", 0) + total.counts.get("subprocess runs", 0)
    bad_rows = max((p.tally.counts.get("bad source rows", 0) for p in parts), default=0)
    dnc_entries = max((p.tally.counts.get("hostile DNC entries", 0) for p in parts), default=0)
    lines += ["", f"TOTAL: {runs} sync runs, {total.counts.get('crash points', 0)} crash points, "
                  f"{total.counts.get('processes killed', 0)} processes SIGKILLed, "
                  f"{total.counts.get('faulted requests', 0)} faulted requests, "
                  f"{total.counts.get('warehouse statements failed', 0)} warehouse statements failed, "
                  f"{bad_rows} bad source rows per engine, {dnc_entries} hostile DNC entries per engine, "
                  f"{len(total.violations)} violation(s), longest run {total.max_run_seconds:.2f} s, "
                  f"{seconds:.0f} s in all"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proof", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a sample of every part (about two minutes)")
    parser.add_argument("--no-bigquery", action="store_true", help="DuckDB only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the product's own warnings are expected here: the figures say it all
    # The simulator's server threads print the connections the harness drops on purpose; not news here.
    socketserver.BaseServer.handle_error = lambda self, request, client_address: None  # type: ignore[method-assign]
    started = time.monotonic()
    echo = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="coldsync-proof-") as folder:
        parts = run_all(Path(folder), quick=args.quick, bigquery=False if args.no_bigquery else None, echo=echo)
    seconds = time.monotonic() - started
    found = violations(parts)
    if args.json:
        print(json.dumps({"parts": [{"name": p.name, "skipped": p.skipped, "seconds": round(p.seconds, 1),
                                     "max_run_seconds": round(p.tally.max_run_seconds, 3), "counts": p.tally.counts,
                                     "peaks": p.tally.peaks,
                                     "kinds_killed_at": sorted(p.tally.kinds),
                                     "extra": p.extra, "violations": p.tally.violations} for p in parts],
                          "violations": len(found), "seconds": round(seconds, 1)}, indent=2, default=str))
    else:
        print(render(parts, seconds))
        for line in found[:200]:
            print(f"VIOLATION {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
