"""The benchmark's machinery at tiny scale: attribution, estimates and one end-to-end pass (no timing asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coldsync import bench
from coldsync.bench import (
    ALL_CAMPAIGNS,
    AUDIT,
    MIDSIZE_CAMPAIGN,
    MIN_BILLED_BYTES,
    PHASES,
    SMB_CAMPAIGN,
    SNAPSHOT,
    WORKSPACE,
    BaselineConfig,
    BenchConfig,
    CampaignChange,
    LatencyModel,
    RunResult,
    TableSize,
    audit_budget,
    billed_bytes,
    both_campaigns_targets,
    campaign_label,
    campaigns_named,
    evaluate_targets,
    minimum_calls,
    peak_rss_mb,
    per_lead_calls,
    per_lead_seconds,
    render,
    scheduled_runs_per_month,
    signal_calls,
    source_reads,
    statement_reads,
    table_columns,
)
from coldsync.routes import default_routing
from coldsync.store import APPLY_STATE_SQL, READ_STATE_SQL, RECORD_HISTORY_SQL, WRITE_RUN_LOG_SQL, read_ready_sql

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


def _helper_caller_in_sync(outer: str, helper_line: int) -> str:
    """Call phase_of_caller from `_count_ready` in a stand-in coldsync/sync.py, called by `outer` on `helper_line`."""
    namespace: dict[str, Any] = {}
    padding = "\n" * (helper_line - 5)
    source = ("from coldsync.bench import phase_of_caller\n"
              "def _count_ready():\n    return phase_of_caller()\n"
              f"def {outer}():\n{padding}    return _count_ready()\n")
    exec(compile(source, "/repo/coldsync/sync.py", "exec"), namespace)  # a stand-in for the product's sync.py
    result: str = namespace[outer]()
    return result


@pytest.mark.parametrize(("outer", "line", "phase"), [
    ("_phases", 9, "preflight"),  # a helper called before the drain (the ready counts)
    ("_phases", 11, "topup"),  # a helper called after it
    ("run_sync", 9, "lock+log"),  # a helper of the run itself (the run log)
])
def test_a_sync_helper_is_charged_to_the_line_of_phases_that_called_it(
        monkeypatch: pytest.MonkeyPatch, outer: str, line: int, phase: str) -> None:
    """A statement of a sync.py helper (`_count_ready`) takes the phase of the `_phases` line that called it."""
    monkeypatch.setattr(bench, "drain_call_line", lambda: 10)
    assert _helper_caller_in_sync(outer, line) == phase


@pytest.mark.parametrize(("template", "path_params", "params", "body", "named"), [
    ("/campaigns/{id}/sending-status", {"id": "c1"}, None, None, ["c1"]),
    ("/campaigns/analytics/daily", None, {"campaign_id": "c1", "start_date": "2026-01-01"}, None, ["c1"]),
    ("/campaigns/analytics", None, {"ids": ["c1", "c2"]}, None, ["c1", "c2"]),
    ("/leads/add", None, None, {"campaign_id": "c2", "leads": []}, ["c2"]),
    ("/leads", None, None, {"campaign_id": "c2", "ids": ["l1"], "limit": 1}, ["c2"]),
    ("/leads/list", None, None, {"campaign": "c1", "filter": "FILTER_LEAD_COMPLETED", "limit": 100}, ["c1"]),
    ("/leads/list", None, None, {"ids": ["l1", "l2"], "limit": 100}, []),
    ("/leads/{id}", {"id": "l1"}, None, None, []),
    ("/block-lists-entries", None, {"limit": 100}, None, []),
])
def test_a_call_is_charged_to_the_campaigns_it_names(template: str, path_params: dict[str, str] | None,
                                                     params: dict[str, Any] | None, body: Any,
                                                     named: list[str]) -> None:
    """The campaign of a call is read from its path id, its `campaign_id`/`ids` query, or its body's campaign."""
    assert campaigns_named(template, path_params, params, body) == named


def test_a_call_is_labelled_by_its_route_or_as_shared() -> None:
    """One managed campaign is its route's name; several are "(all)"; none is "(workspace)"; a stranger keeps its id."""
    names = {SMB_CAMPAIGN.lower(): "SMB", MIDSIZE_CAMPAIGN.lower(): "Midsize"}
    assert campaign_label([SMB_CAMPAIGN.upper()], names) == "SMB"
    assert campaign_label([MIDSIZE_CAMPAIGN], names) == "Midsize"
    assert campaign_label([SMB_CAMPAIGN, MIDSIZE_CAMPAIGN], names) == ALL_CAMPAIGNS
    assert campaign_label([], names) == WORKSPACE
    assert campaign_label(["elsewhere"], names) == "elsewhere"


def _run(scenario: str, scale: int, split: dict[str, tuple[int, int, int]], *,
         api: list[dict[str, Any]] | None = None) -> RunResult:
    """A measured run as a child would report it: `split` is route -> (added, leads held after, ready before)."""
    return RunResult(
        engine="duckdb", scale=scale, scenario=scenario, exit_code=0, outcome="success", error=None,
        wall_seconds=1.0, added=sum(a for a, _, _ in split.values()), drained=0, api=api or [], statements=[],
        peak_rss_mb=100.0, start_rss_mb=80.0,
        routes={name: {"added": added, "drained": 0, "ready": ready} for name, (added, _, ready) in split.items()},
        campaign_leads={name: held for name, (_, held, _) in split.items()})


@pytest.mark.parametrize(("split", "fed", "ready"), [
    ({"SMB": (500, 500, 9000), "Midsize": (500, 500, 9000)}, True, True),
    ({"SMB": (499, 499, 9000), "Midsize": (501, 501, 9000)}, True, True),  # within one lead
    ({"SMB": (498, 498, 9000), "Midsize": (502, 502, 9000)}, False, True),
    ({"SMB": (0, 0, 9000), "Midsize": (1000, 1000, 9000)}, False, True),  # the old single global room
    ({"SMB": (500, 0, 9000), "Midsize": (500, 1000, 9000)}, False, True),  # the report and Instantly disagree
    ({"SMB": (500, 500, 499), "Midsize": (500, 500, 9000)}, True, False),  # less ready than the share
])
def test_a_fill_must_feed_both_campaigns_their_share(split: dict[str, tuple[int, int, int]], fed: bool,
                                                     ready: bool) -> None:
    """A fill of 1,000 passes only with 500 +-1 added to and held by each campaign, and 500 ready in each route."""
    both, enough = both_campaigns_targets([_run("fill", 1000, split)])
    assert (both.passed, enough.passed) == (fed, ready)


def test_no_fill_leaves_the_campaign_verdicts_unmeasured() -> None:
    """Without a fill run the two campaign verdicts are "not measured", not a pass."""
    assert [t.verdict for t in both_campaigns_targets([])] == ["not measured", "not measured"]


def test_a_drain_is_judged_with_the_supply_signals_it_reused() -> None:
    """A drain that reused the fill's signals is judged with them: 52 calls + 5 signal calls = 57 <= 60."""
    signals = [{"phase": "topup", "key": "GET /campaigns/analytics", "count": 1, "seconds": 0.1},
               {"phase": "topup", "key": "GET /campaigns/analytics/daily", "count": 2, "seconds": 0.1},
               {"phase": "topup", "key": "GET /campaigns/{id}/sending-status", "count": 2, "seconds": 0.1},
               {"phase": "preflight", "key": "GET /campaigns/analytics", "count": 1, "seconds": 0.1}]
    fill = _run("fill", 24_000, {"SMB": (12_000, 12_000, 99_999), "Midsize": (12_000, 12_000, 99_999)}, api=signals)
    drain = _run("drain 10%", 24_000, {"SMB": (1200, 12_000, 99_999), "Midsize": (1200, 12_000, 99_999)},
                 api=[{"phase": "drain", "key": "POST /leads/list", "count": 52, "seconds": 1.0}])
    drain.drained = 2400
    assert signal_calls(fill) == 5 and signal_calls(drain) == 0
    target = next(t for t in evaluate_targets([fill, drain], 300_000) if t.name.startswith("drain"))
    assert target.passed is True and "57 with the hourly supply signals (5 calls, reused from the run before here)" in (
        target.measured)
    drain.api[0]["count"] = 56
    target = next(t for t in evaluate_targets([fill, drain], 300_000) if t.name.startswith("drain"))
    assert target.passed is False  # 56 measured, 61 with the signals


def test_the_guard_threshold_is_a_bench_setting() -> None:
    """Runs get MAX_BOUNCE_RATE 100 unless `--max-bounce-rate` asks for another (the product's 5, say)."""
    assert bench.bench_environ(Path("w.duckdb"), cap=10, target=10)["MAX_BOUNCE_RATE"] == "100"
    assert bench.config_from_args(bench.parser().parse_args([])).max_bounce_rate == 100.0
    config = bench.config_from_args(bench.parser().parse_args(["--max-bounce-rate", "5"]))
    assert bench.bench_environ(Path("w.duckdb"), cap=10, target=10,
                               max_bounce_rate=config.max_bounce_rate)["MAX_BOUNCE_RATE"] == "5"


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


@pytest.mark.parametrize(("path", "function", "audit"), [
    ("/repo/coldsync/phases/reconcile.py", "_audit", True),  # the rolling audit itself
    ("/repo/coldsync/phases/reconcile.py", "_confirm", False),  # the reconcile's confirmation by id
    ("/repo/coldsync/phases/drain.py", "_audit", False),  # a function of that name elsewhere
])
def test_only_the_rolling_audit_is_budgeted_apart(path: str, function: str, audit: bool) -> None:
    """A look-up is the audit's only when `_audit` of coldsync/phases/reconcile.py is on the stack; the drain's and the
    reconcile's by-id confirmations count as calls."""
    namespace: dict[str, Any] = {}
    source = f"from coldsync.bench import in_rolling_audit\ndef {function}():\n    return in_rolling_audit()\n"
    exec(compile(source, path, "exec"), namespace)  # a stand-in for the product module
    assert namespace[function]() is audit
    assert bench.in_rolling_audit() is False  # from the test itself


def test_scanned_bytes_have_no_minimum() -> None:
    """Without the minimums a statement scans its referenced columns only (the state read: 6,000 bytes, not 30 MiB),
    and an insert of values scans nothing."""
    columns = table_columns()
    sizes = {"ops_inst_state": TableSize(10, {"email": 5000, "status": 700, "not_a_column": 10**9}),
             "ops_dnc": TableSize(2, {"email": 300})}
    labels = {"state.read": READ_STATE_SQL, "run_log.write": WRITE_RUN_LOG_SQL}
    assert billed_bytes({"state.read": 1}, labels, sizes, columns, minimums=False) == 5000 + 700 + 300
    # state, DNC, the webhook events (suppressing like DNC), config
    assert billed_bytes({"state.read": 1}, labels, sizes, columns) == 4 * MIN_BILLED_BYTES
    assert billed_bytes({"run_log.write": 2}, labels, sizes, columns, minimums=False) == 0


def test_billed_bytes_has_the_ten_megabyte_minimums() -> None:
    """A statement on a tiny table bills 10 MiB; a big source bills its columns; each extra table adds its minimum."""
    columns = table_columns()
    tiny = {"ops_run_log": TableSize(3, {"summary_json": 900})}
    assert billed_bytes({"run_log.write": 1}, {"run_log.write": WRITE_RUN_LOG_SQL}, tiny, columns) == MIN_BILLED_BYTES
    source = TableSize(1, {name: 100 * MIN_BILLED_BYTES for name in columns["source"]})
    billed = billed_bytes({"topup.read_ready": 2}, {"topup.read_ready": READ_READY_SQL}, {"source": source}, columns)
    # + ops_dnc, ops_instantly_events, ops_lead_history, ops_inst_state and config (the erasure salt): 5 minimums
    assert billed == 2 * (len(columns["source"]) * 100 * MIN_BILLED_BYTES + 5 * MIN_BILLED_BYTES)


def test_schedule_has_about_517_runs_a_month() -> None:
    """19 runs per weekday (09:00-18:00 every 30 minutes) and 12 per weekend day, over an average month."""
    assert scheduled_runs_per_month() == pytest.approx(517.4, abs=0.1)


def test_peak_memory_is_read() -> None:
    """The peak-memory probe returns a plausible figure for this process."""
    assert 10 < peak_rss_mb() < 100_000


def test_benchmark_runs_end_to_end_at_tiny_scale(tmp_path: Path) -> None:
    """Fill, steady and drain runs and the baseline go through child processes and come back attributed."""
    from coldsync.bench import run_benchmark

    config = BenchConfig(scales=(60,), source_rows=(1500,), finished=(0.10,), latency=0.0, workdir=tmp_path,
                         cache_dir=tmp_path / "cache",
                         baseline=BaselineConfig(sample=3, pause=0.0, batch=2, batch_pause=0.01))
    progress: list[str] = []
    outcome = run_benchmark(config, echo=progress.append)
    by_name = {r.scenario: r for r in outcome.results}
    assert set(by_name) == {"fill", "steady", "drain 10%", "mismatch", "source change"}
    assert all(r.exit_code == 0 for r in outcome.results), [r.error for r in outcome.results]
    fill, steady, drain = by_name["fill"], by_name["steady"], by_name["drain 10%"]
    assert fill.added == 60 and fill.calls("POST /leads/add") == 2  # one per campaign
    for route in ("SMB", "Midsize"):  # equal shares: 30 each, one add call each, one read of each's signals
        assert fill.route_figure(route, "added") == 30 and fill.campaign_leads[route] == 30
        assert fill.calls_for(route, "POST /leads/add") == 1
        # analytics count the campaign empty and nothing is tracked there: waiting for leads, no status asked
        assert fill.calls_for(route, "GET /campaigns/{id}/sending-status") == 0
        assert fill.calls_for(route, "GET /campaigns/analytics/daily") == 1  # sizing; the snapshot's apart:
        assert fill.calls_for(SNAPSHOT, "GET /campaigns/analytics/daily") == 2  # one per campaign, hourly
        assert drain.route_figure(route, "added") == drain.route_figure(route, "drained")  # each refills its own
        assert drain.campaign_leads[route] == 30
    assert fill.calls_for(ALL_CAMPAIGNS, "GET /campaigns/analytics") == 2  # the preflight's and the 7-day one
    assert sum(drain.route_figure(r, "drained") for r in ("SMB", "Midsize")) == 6
    assert drain.drained == 6 and drain.calls(phase="drain") >= 1
    assert steady.added == 0 and steady.drained == 0 and steady.campaign_leads == {"SMB": 30, "Midsize": 30}
    assert outcome.source_ready["SMB"] >= 30 and outcome.source_ready["Midsize"] >= 30
    for result in outcome.results:
        assert {r["phase"] for r in result.api + result.statements} <= set(PHASES)
        assert sum(result.calls(phase=p) for p in PHASES) == result.api_calls
        assert sum(int(r["count"]) for r in result.api_by_campaign) == result.api_calls  # every call charged once
        assert set(result.per_campaign()) == {"SMB", "Midsize", ALL_CAMPAIGNS, WORKSPACE, AUDIT, SNAPSHOT}
        assert {"lock.acquire", "run_log.write"} <= {str(r["key"]) for r in result.statements
                                                    if r["phase"] == "lock+log"}
        assert result.peak_rss_mb > 0 and result.sql_by_label
    assert outcome.baseline is not None and outcome.comparison is not None
    assert outcome.baseline.api_calls == 3 and outcome.baseline.statement_count == 4  # one read + one per lead
    assert outcome.table_sizes["source"].rows == 1500
    mismatch = by_name["mismatch"]
    assert mismatch.mismatched == ["SMB", "Midsize"] and mismatch.cpu_seconds > 0
    change = by_name["source change"]  # round(60 x 1%) = 1 lead finished, drained and replaced
    assert change.finished_before == 1 and change.drained == 1 and change.added == 1
    assert source_reads(change)[0] >= 1  # the edited source is read again (at most once: target 1's verdict)
    assert all(r.source_rows == 1500 for r in outcome.results)
    targets = evaluate_targets(outcome.results, config.largest_source)
    assert {t.verdict for t in targets} <= {"PASS", "FAIL", "not measured"}
    assert [t.verdict for t in targets if "both" in t.name] == ["PASS", "PASS"]  # fed, and enough ready
    text = render(outcome, config)
    for heading in ("== Runs", "== Per campaign", "== Per phase", "== Targets", "extrapolated", "== BigQuery bytes",
                    "calls for SMB", "calls for Midsize", "== Against the API minimum"):
        assert heading in text
    for scenario in ("fill", "steady", "drain 10%", "mismatch"):  # one line per scenario, with CPU beside wall
        assert any(f"{scenario} @60" in line and "s CPU" in line for line in progress), scenario
        assert any(line.startswith("1,500") and f"{scenario} @60" in line for line in text.splitlines()), scenario
    verdicts = [t.line() for t in outcome.goals]
    for start in ("target 1: a steady run reads no source rows: ",
                  "target 1: every run reads the source at most once: ",
                  "target 2: steady at 3M <= 1.5x steady at 30k CPU: not measured",
                  "target 2: fill and drains at 3M <= 2.0x their 30k CPU: not measured",
                  "target 2: BigQuery bytes per steady run < 10 MiB at 1,500 rows (estimate): ",
                  "target 3: 24,000 fill at 2 s per add < 20 s: not measured",
                  "target 4: calls <= 1.2x minimum: fill @60: ", "target 4: calls <= 1.2x minimum: mismatch @60: ",
                  "target 4 (apart): rolling audit", "target 7: peak memory < 300 MB at 3M source rows: not measured"):
        assert any(line.strip().startswith(start) for line in verdicts), start
        assert any(line.strip().startswith(start) for line in text.splitlines()), start


def test_the_latency_model_grows_with_the_payload() -> None:
    """A call costs 150 ms, plus 1.85 ms a lead added (1,000 leads: 2.0 s), 0.1 ms an id deleted, 1 ms a lead listed."""
    model = LatencyModel()
    assert model.seconds("POST", "/leads/add", {"leads": [{}] * 1000}, None) == pytest.approx(0.15 + 1000 * 0.00185)
    assert model.add_seconds(1000) == pytest.approx(2.0)
    assert model.seconds("DELETE", "/leads", {"ids": ["x"] * 10_000}, None) == pytest.approx(1.15)
    assert model.seconds("POST", "/leads/list", {"limit": 100}, {"items": [{}] * 100}) == pytest.approx(0.25)
    assert model.seconds("POST", "/leads/list", {"limit": 100}, {"items": []}) == pytest.approx(0.15)
    assert model.seconds("GET", "/campaigns/analytics", None, [{}]) == pytest.approx(0.15)
    assert model.seconds("POST", "/block-lists-entries/bulk-create", {"bl_values": ["a"] * 1000},
                         None) == pytest.approx(0.65)
    assert LatencyModel.flat(0.15).seconds("POST", "/leads/add", {"leads": [{}] * 1000}, None) == pytest.approx(0.15)


def test_the_api_minimum_is_issue_16s_formula() -> None:
    """1 analytics + per campaign ceil(finished/100) pages + ceil(ids/10,000) deletes + ceil(added/1,000) adds."""
    fill = {"SMB": CampaignChange(added=12_000), "Midsize": CampaignChange(added=12_000)}
    assert minimum_calls(fill) == 1 + 12 + 12  # 25: the issue's 35-call fill is 1.4x
    drain = {"SMB": CampaignChange(finished=150, deleted=150, added=150),
             "Midsize": CampaignChange(added=2_400)}
    assert minimum_calls(drain) == 1 + (2 + 1 + 1) + (0 + 0 + 3)
    assert minimum_calls({"SMB": CampaignChange(relisted=12_001)}) == 1 + 121  # a count mismatch: one listing
    assert minimum_calls({}) == 1  # nothing to do: the analytics call


def test_the_fair_per_lead_baseline_by_hand() -> None:
    """Per lead: a create and a verifying GET per add, one delete per finished lead, its pages listed by filter."""
    drain = {"SMB": CampaignChange(finished=150, deleted=150, added=150), "Midsize": CampaignChange()}
    assert per_lead_calls(drain) == (2 + 150 + 2 * 150) + 1  # Midsize: one empty page to learn there is nothing
    seconds = (2 * 0.15 + 150 * 0.001) + 150 * 0.1501 + 150 * (0.15185 + 0.15) + 0.15
    assert per_lead_seconds(drain, LatencyModel(), 20, 1200) == pytest.approx(seconds)
    # With no latency the pacer (20/s) bounds it: 453 calls take 22.65 s at least.
    assert per_lead_seconds(drain, LatencyModel.flat(0.0), 20, 1200) == pytest.approx(453 / 20)


def test_the_audit_budget_is_one_pass_a_day() -> None:
    """24,000 tracked leads, 19 runs a weekday: ceil(24,000 / 100 / 19) + 1 = 14 calls a run."""
    assert audit_budget(24_000) == 14 and audit_budget(0) == 1


def _lane_run(scenario: str, rows: int, *, cpu: float = 1.0, wall: float = 1.0, peak: float = 100.0,
              calls: int = 1, audit: int = 0, added: int = 0) -> RunResult:
    """A run at cap 24,000 of one source lane, with given figures (added split evenly between the campaigns)."""
    api = [{"phase": "topup", "key": "POST /leads/add", "count": calls, "seconds": 0.0}]
    by_campaign = [{"campaign": "SMB", "key": "POST /leads/add", "count": calls, "seconds": 0.0},
                   {"campaign": AUDIT, "key": "POST /leads/list", "count": audit, "seconds": 0.0}]
    if audit:
        api.append({"phase": "preflight", "key": "POST /leads/list", "count": audit, "seconds": 0.0})
    return RunResult(engine="duckdb", scale=24_000, scenario=scenario, exit_code=0, outcome="success", error=None,
                     wall_seconds=wall, added=added, drained=0, api=api, statements=[], peak_rss_mb=peak,
                     start_rss_mb=80.0, cpu_seconds=cpu, source_rows=rows, api_by_campaign=by_campaign,
                     routes={"SMB": {"added": added // 2}, "Midsize": {"added": added // 2}},
                     campaign_leads={"SMB": 12_000, "Midsize": 12_000})


@pytest.mark.parametrize(("spill", "verdict"), [
    ("{file}.tmp", True),  # the product's default: beside the warehouse file
    ("{cwd}/.tmp", False),  # DuckDB's own default: the working directory
    ("/tmp/elsewhere", False),  # not where the settings put it
])
def test_target_6_passes_only_a_spill_folder_beside_the_warehouse_file(tmp_path: Path, spill: str,
                                                                        verdict: bool) -> None:
    """Target 6's verdict: PASS when each lane spilled into `<warehouse file>.tmp/`, FAIL for the working
    directory's `.tmp` or any other folder, "not measured" (None) when no run reported its DuckDB figures."""
    from coldsync.bench import target6

    file = tmp_path / "rows-30000.duckdb"
    run = _lane_run("fill", 30_000)
    assert target6([run]).passed is None
    run.extra["duckdb"] = {"limit": "96MiB (auto)", "file": str(file),
                           "spill": spill.format(file=file, cwd=Path.cwd())}
    assert target6([run]).passed is verdict


def _verdict(targets: list[Any], start: str) -> str:
    found = [t.verdict for t in targets if t.name.startswith(start)]
    assert len(found) == 1, (start, [t.name for t in targets])
    return str(found[0])


@pytest.mark.parametrize(("steady_3m_cpu", "verdict"), [(3.0, "PASS"), (3.1, "FAIL")])
def test_steady_cpu_at_3m_is_judged_against_30k(steady_3m_cpu: float, verdict: str) -> None:
    """Steady CPU at 3M of 3.0 s against 2.0 s at 30k is 1.5x (PASS); 3.1 s is 1.55x (FAIL)."""
    runs = [_lane_run("steady", 30_000, cpu=2.0), _lane_run("steady", 3_000_000, cpu=steady_3m_cpu)]
    assert _verdict(bench.issue16_targets(runs, LatencyModel()), "target 2: steady at 3M") == verdict


def test_a_lane_not_run_is_not_measured() -> None:
    """Without the 3M lane, the 3M-vs-30k and 3M memory verdicts are "not measured", never PASS."""
    targets = bench.issue16_targets([_lane_run("steady", 30_000, cpu=2.0)], LatencyModel())
    assert _verdict(targets, "target 2: steady at 3M") == "not measured"
    assert _verdict(targets, "target 2: fill and drains") == "not measured"
    assert _verdict(targets, "target 7") == "not measured"
    assert _verdict(targets, "target 3") == "not measured"  # no fill run
    assert "not measured" in next(t.line() for t in targets if t.name.startswith("target 7"))


@pytest.mark.parametrize(("fill_cpu", "verdict"), [(8.0, "PASS"), (8.1, "FAIL")])
def test_fill_cpu_at_3m_is_judged_against_2x_30k(fill_cpu: float, verdict: str) -> None:
    """A 3M fill of 8.0 CPU seconds against 4.0 at 30k is 2.0x (PASS); 8.1 is over (FAIL)."""
    runs = [_lane_run("fill", 30_000, cpu=4.0), _lane_run("fill", 3_000_000, cpu=fill_cpu)]
    assert _verdict(bench.issue16_targets(runs, LatencyModel()), "target 2: fill and drains") == verdict


@pytest.mark.parametrize(("wall", "model", "verdict"), [
    (19.9, LatencyModel(), "PASS"), (20.0, LatencyModel(), "FAIL"),
    (5.0, LatencyModel.flat(0.15), "not measured"),  # the model does not charge 2 s per add: no verdict
])
def test_the_fill_is_judged_at_2_s_per_add(wall: float, model: LatencyModel, verdict: str) -> None:
    """The 24,000 fill passes under 20 s wall, only when the model charges ~2 s per 1,000-lead add."""
    runs = [_lane_run("fill", 30_000, wall=wall, calls=24, added=24_000)]
    assert _verdict(bench.issue16_targets(runs, model), "target 3") == verdict


@pytest.mark.parametrize(("calls", "verdict"), [(30, "PASS"), (31, "FAIL")])
def test_calls_are_judged_against_1_2x_the_minimum(calls: int, verdict: str) -> None:
    """A 24,000 fill's minimum is 25 calls: 30 is 1.2x (PASS), 31 is over (FAIL); audit calls are not counted."""
    runs = [_lane_run("fill", 30_000, calls=calls, audit=7, added=24_000)]
    targets = bench.issue16_targets(runs, LatencyModel())
    assert _verdict(targets, "target 4: calls <= 1.2x minimum: fill") == verdict
    assert _verdict(targets, "target 4 (apart)") == "PASS"  # 7 audit calls, budget 14


def test_the_audit_is_judged_on_its_own_line() -> None:
    """25 audit look-ups at 24,000 tracked leads exceed the budget of 14: FAIL, the calls verdict unaffected."""
    targets = bench.issue16_targets([_lane_run("steady", 30_000, calls=0, audit=25)], LatencyModel())
    assert _verdict(targets, "target 4 (apart)") == "FAIL"
    assert _verdict(targets, "target 4: calls <= 1.2x minimum: steady") == "PASS"  # 0 calls, minimum 1


@pytest.mark.parametrize(("peak", "verdict"), [(299.0, "PASS"), (300.0, "FAIL")])
def test_peak_memory_is_judged_at_3m(peak: float, verdict: str) -> None:
    """The 3M lane's heaviest run decides: under 300 MB passes."""
    runs = [_lane_run("steady", 30_000, peak=999.0), _lane_run("steady", 3_000_000, peak=peak)]
    assert _verdict(bench.issue16_targets(runs, LatencyModel()), "target 7") == verdict


def test_source_reads_tell_a_read_from_a_change_signal() -> None:
    """The ready read reads source rows; a COUNT(*) and MAX of one column is a change signal; the run log neither."""
    run = _lane_run("steady", 30_000)
    signal = "SELECT COUNT(*) AS n, MAX(email) AS newest FROM `{source}`"
    run.statements = [{"phase": "topup", "key": "topup.read_ready", "count": 1, "seconds": 0.1},
                      {"phase": "preflight", "key": "source.signal", "count": 2, "seconds": 0.1},
                      {"phase": "lock+log", "key": "run_log.write", "count": 1, "seconds": 0.1}]
    run.sql_by_label = {"topup.read_ready": READ_READY_SQL, "source.signal": signal,
                        "run_log.write": WRITE_RUN_LOG_SQL}
    assert bench.source_reads(run) == (1, 2, ["topup.read_ready"])
    assert _verdict(bench.issue16_targets([run], LatencyModel()), "target 1: a steady run") == "FAIL"


def test_a_lane_warehouse_is_built_once_and_reused(tmp_path: Path) -> None:
    """The same source size and seed reuse the cached warehouse (same file, untouched); another size builds anew."""
    first, ready, reused = bench.cached_template(tmp_path, 300, 7, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    again, ready_again, reused_again = bench.cached_template(tmp_path, 300, 7, tmp_path / "cache")
    assert (reused, reused_again) == (False, True) and again == first and ready_again == ready
    assert first.stat().st_mtime_ns == stamp and first.parent == tmp_path / "cache"
    other, _, other_reused = bench.cached_template(tmp_path, 301, 7, tmp_path / "cache")
    assert other != first and not other_reused


def test_source_rows_take_several_lanes() -> None:
    """`--source-rows 30000,3000000` gives two lanes; the default is one lane of 30,000 at cap 24,000."""
    config = bench.config_from_args(bench.parser().parse_args(["--source-rows", "30000,3_000_000"]))
    assert config.source_rows == (30_000, 3_000_000) and config.largest_source == 3_000_000
    default = bench.config_from_args(bench.parser().parse_args([]))
    assert default.source_rows == (30_000,) and default.scales == (24_000,) and default.mismatch
    assert default.latency_model() == LatencyModel()


def test_the_duckdb_engines_own_signal_is_recorded_as_a_read_of_every_source_column(tmp_path: Path) -> None:
    """DuckDB's change signal runs on its connection, not through `query`: the benchmark's wrapper still times
    it under its own label, with a statement that reads every source column (a read, not a cheap signal)."""
    from coldsync.bench import NATIVE_SIGNAL_LABEL, NATIVE_SIGNAL_SQL, RecordingWarehouse
    from coldsync.store import native_signal
    from coldsync.warehouse.duckdb import DuckDBWarehouse
    from coldsync.warehouse.schema import SOURCE_COLUMNS

    inner = DuckDBWarehouse(tmp_path / "s.duckdb", "coldsync")
    try:
        inner.ensure_dataset()
        inner.execute("CREATE TABLE `{source}` (email STRING, first_name STRING)", label="t")
        wrapped = RecordingWarehouse(inner, phase="topup")
        found = native_signal(wrapped)
        assert found is not None and getattr(found, "reads_rows", False)
        assert found() == "rows 0, hash None"
        assert wrapped.sql_by_label[NATIVE_SIGNAL_LABEL] == NATIVE_SIGNAL_SQL
        assert statement_reads(NATIVE_SIGNAL_SQL, table_columns())[0]["source"] == {c.name for c in SOURCE_COLUMNS}
    finally:
        inner.close()
