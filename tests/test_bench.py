"""The benchmark's machinery at tiny scale: attribution, estimates and one end-to-end pass (no timing asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coldsync import bench
from coldsync.bench import (
    MIN_BILLED_BYTES,
    PHASES,
    BaselineConfig,
    BenchConfig,
    TableSize,
    billed_bytes,
    evaluate_targets,
    peak_rss_mb,
    render,
    scheduled_runs_per_month,
    statement_reads,
    table_columns,
)
from coldsync.routes import default_routing
from coldsync.store import APPLY_STATE_SQL, RECORD_HISTORY_SQL, WRITE_RUN_LOG_SQL, read_ready_sql

READ_READY_SQL = read_ready_sql(default_routing("", ""))


def _caller_in(path: str, function: str, line: int = 3) -> str:
    """Call phase_of_caller from a function compiled as if it lived in `path`, the call on `line`."""
    namespace: dict[str, Any] = {}
    padding = "\n" * (line - 3)
    source = f"from coldsync.bench import phase_of_caller\ndef {function}():\n{padding}    return phase_of_caller()\n"
    exec(compile(source, path, "exec"), namespace)  # a stand-in frame for the product's modules
    result: str = namespace[function]()
    return result


@pytest.mark.parametrize(("path", "function", "line", "phase"), [
    ("/repo/coldsync/phases/drain.py", "run_drain", 3, "drain"),
    ("/repo/coldsync/phases/topup.py", "run_topup", 3, "topup"),
    ("/repo/coldsync/phases/housekeeping.py", "run_housekeeping", 3, "housekeeping"),
    ("/repo/coldsync/sync.py", "preflight", 3, "preflight"),
    ("/repo/coldsync/sync.py", "_phases", 9, "preflight"),  # before the line that calls the drain
    ("/repo/coldsync/sync.py", "_phases", 11, "topup"),  # after it: the reads that feed the top-up
    ("/repo/coldsync/sync.py", "run_sync", 3, "lock+log"),
    ("/repo/elsewhere.py", "anything", 3, "other"),
])
def test_phase_is_read_from_the_calling_module(monkeypatch: pytest.MonkeyPatch, path: str, function: str, line: int,
                                               phase: str) -> None:
    """A call is charged to the phase module (or sync.py function and position) that made it."""
    monkeypatch.setattr(bench, "drain_call_line", lambda: 10)
    assert _caller_in(path, function, line) == phase


def test_the_drain_call_is_found_in_the_sync() -> None:
    """The split between preflight and top-up statements is read from coldsync/sync.py itself."""
    bench.drain_call_line.cache_clear()
    assert bench.drain_call_line() is not None


def test_statement_reads_follow_the_sql() -> None:
    """The bytes estimate reads the store's own SQL: view expanded, INSERT target not read, MERGE target rewritten."""
    columns = table_columns()
    ready, ready_rewrites = statement_reads(READ_READY_SQL, columns)
    assert set(ready["source"]) == set(columns["source"])  # de-duplication orders by every source column
    assert {"ops_dnc", "ops_lead_history", "ops_inst_state"} <= set(ready) and not ready_rewrites
    state, state_rewrites = statement_reads(APPLY_STATE_SQL, columns)
    assert "email" in state["ops_inst_state"] and state_rewrites == {"ops_inst_state"}
    log, log_rewrites = statement_reads(WRITE_RUN_LOG_SQL, columns)
    assert log == {} and log_rewrites == set()
    history, history_rewrites = statement_reads(RECORD_HISTORY_SQL, columns)
    assert "reason" not in history["ops_lead_history"] and not history_rewrites  # INSERT-only MERGE


def test_billed_bytes_has_the_ten_megabyte_minimums() -> None:
    """A statement on a tiny table bills 10 MiB; a big source bills its columns; each extra table adds its minimum."""
    columns = table_columns()
    tiny = {"ops_run_log": TableSize(3, {"summary_json": 900})}
    assert billed_bytes({"run_log.write": 1}, {"run_log.write": WRITE_RUN_LOG_SQL}, tiny, columns) == MIN_BILLED_BYTES
    source = TableSize(1, {name: 100 * MIN_BILLED_BYTES for name in columns["source"]})
    billed = billed_bytes({"topup.read_ready": 2}, {"topup.read_ready": READ_READY_SQL}, {"source": source}, columns)
    # + ops_dnc, ops_lead_history, ops_inst_state and config (the erasure salt): 4 minimums
    assert billed == 2 * (len(columns["source"]) * 100 * MIN_BILLED_BYTES + 4 * MIN_BILLED_BYTES)


def test_schedule_has_about_517_runs_a_month() -> None:
    """19 runs per weekday (09:00-18:00 every 30 minutes) and 12 per weekend day, over an average month."""
    assert scheduled_runs_per_month() == pytest.approx(517.4, abs=0.1)


def test_peak_memory_is_read() -> None:
    """The peak-memory probe returns a plausible figure for this process."""
    assert 10 < peak_rss_mb() < 100_000


def test_benchmark_runs_end_to_end_at_tiny_scale(tmp_path: Path) -> None:
    """Fill, steady and drain runs and the baseline go through child processes and come back attributed."""
    from coldsync.bench import run_benchmark

    config = BenchConfig(scales=(60,), source_rows=1500, finished=(0.10,), latency=0.0, workdir=tmp_path,
                         baseline=BaselineConfig(sample=3, pause=0.0, batch=2, batch_pause=0.01))
    outcome = run_benchmark(config, echo=lambda _line: None)
    by_name = {r.scenario: r for r in outcome.results}
    assert set(by_name) == {"fill", "steady", "drain 10%"}
    assert all(r.exit_code == 0 for r in outcome.results), [r.error for r in outcome.results]
    fill, steady, drain = by_name["fill"], by_name["steady"], by_name["drain 10%"]
    assert fill.added == 60 and 1 <= fill.calls("POST /leads/add") <= 2  # at most one per campaign
    assert drain.drained == 6 and drain.calls(phase="drain") >= 1
    assert steady.added == 0 and steady.drained == 0
    for result in outcome.results:
        assert {r["phase"] for r in result.api + result.statements} <= set(PHASES)
        assert sum(result.calls(phase=p) for p in PHASES) == result.api_calls
        assert {"lock.acquire", "run_log.write"} <= {str(r["key"]) for r in result.statements
                                                    if r["phase"] == "lock+log"}
        assert result.peak_rss_mb > 0 and result.sql_by_label
    assert outcome.baseline is not None and outcome.comparison is not None
    assert outcome.baseline.api_calls == 3 and outcome.baseline.statement_count == 4  # one read + one per lead
    assert outcome.table_sizes["source"].rows == 1500
    targets = evaluate_targets(outcome.results, config.source_rows)
    assert {t.verdict for t in targets} <= {"PASS", "MISS", "n/a"}
    text = render(outcome, config)
    for heading in ("== Runs", "== Per phase", "== Targets", "extrapolated", "== BigQuery bytes"):
        assert heading in text
