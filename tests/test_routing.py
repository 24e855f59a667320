"""Routes end to end, on both engines: every campaign fed by its share, first match wins, a bad route
refused before anything is touched, A/B arms identical on both engines, the guard, custom variables."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.routes import arm_index
from coldsync.settings import Settings, SettingsError, replace
from coldsync.store import Store
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.demo_data import INSERT_SOURCE_SQL, SOURCE_FIELDS, ensure_demo_source_table
from tests.conftest import make_settings, open_warehouse
from tests.helpers import GMAIL, add_history, build, lead
from tests.invariants import World, table_contents

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
FULL = bool(os.environ.get("ROUTING_FULL"))
"""ROUTING_FULL=1 runs every test here on the BigQuery emulator too; by default the emulator runs the ones
whose SQL could differ between engines (shares of a fill, first match wins, the default rule, A/B arms),
the rest run on DuckDB only (the emulator costs ~10-30 s a test, and executes on DuckDB itself)."""


def duckdb_unless_full(warehouse: Warehouse) -> None:
    """Skip the BigQuery lane of a test whose SQL is the same as a test that does run there."""
    if warehouse.engine == "bigquery" and not FULL:
        pytest.skip("BigQuery lane of this test runs with ROUTING_FULL=1 (the SQL it uses runs there in "
                    "other tests of this module)")
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
THIRD = "0b7e1a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
ARM_B = "6d2f0c11-7e3a-4b5c-9d8e-1f2a3b4c5d6e"


def _world(warehouse: Warehouse, tmp_path: Path, sources: list[dict[str, Any]], *, routes: dict[str, Any] | None,
           campaigns: tuple[str, ...] = (SMB, MIDSIZE), **env: str) -> World:
    extra = {"routes": json.dumps(routes)} if routes is not None else {}
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, instantly_api_key="sim-key",
                             **{**extra, **env})
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    for index, campaign_id in enumerate(campaigns):
        sim.create_campaign(f"campaign {index}", campaign_id=campaign_id)
    build(warehouse, settings, sources, as_of=START)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    return World(warehouse, sim, client, settings)


@pytest.fixture
def worlds(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[list[World]]:
    made: list[World] = []
    yield made
    for world in made:
        world.client.close()
        world.sim.stop()


def _leads(n: int, revenue: int, prefix: str, **extra: Any) -> list[dict[str, Any]]:
    return [lead(f"{prefix}{i:05d}@{prefix}.example", Decimal(revenue + i), **extra) for i in range(n)]


def test_one_run_filling_the_cap_gives_each_campaign_its_share(raw_warehouse: Warehouse, tmp_path: Path,
                                                               worlds: list[World]) -> None:
    """Both campaigns have ready leads: one run that fills the cap gives each exactly its half (default
    routes, no sending history: equal shares), and the text summary shows every route."""
    world = _world(raw_warehouse, tmp_path, _leads(200, 100_000, "small") + _leads(200, 5_000_000, "big"),
                   routes=None, inventory_cap="300", target_new_leads_per_run="1000")
    worlds.append(world)
    result = world.run_checked()
    counts = Counter(world.campaign_of().values())
    assert counts == {SMB: 150, MIDSIZE: 150}
    assert result.report.added == 300
    text = result.report.render_text()
    assert "route SMB: added 150, drained 0, room 150, ready 200, inventory 0 of quota 150 (share 50.0%)" in text
    assert "route Midsize: added 150, drained 0, room 150, ready 200, inventory 0 of quota 150 (share 50.0%)" in text
    if raw_warehouse.engine == "duckdb" or FULL:  # the second run's SQL is the first's: one engine is enough
        second = world.run_checked()
        assert second.report.added == 0 and Counter(world.campaign_of().values()) == {SMB: 150, MIDSIZE: 150}


def test_configured_shares_are_kept_within_one_lead(raw_warehouse: Warehouse, tmp_path: Path,
                                                    worlds: list[World]) -> None:
    """Shares of 70% and 30% of a cap of 301 give 211 and 90 (largest remainder), in one run."""
    duckdb_unless_full(raw_warehouse)
    routes = {"routes": [
        {"name": "SMB", "when": "annual_revenue IS NULL OR annual_revenue < 1000000", "campaign_id": SMB, "share": 70},
        {"name": "Midsize", "campaign_id": MIDSIZE, "share": 30}]}
    world = _world(raw_warehouse, tmp_path, _leads(300, 100_000, "small") + _leads(300, 5_000_000, "big"),
                   routes=routes, inventory_cap="301", target_new_leads_per_run="1000")
    worlds.append(world)
    world.run_checked()
    assert Counter(world.campaign_of().values()) == {SMB: 211, MIDSIZE: 90}


def test_a_route_with_nothing_ready_gives_its_room_to_the_others(raw_warehouse: Warehouse, tmp_path: Path,
                                                                 worlds: list[World]) -> None:
    """Only SMB leads are ready: SMB goes past its quota of 150 with Midsize's room (all 250 it has), Midsize
    gets none, and the cap still holds."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(250, 100_000, "small"), routes=None, inventory_cap="300",
                   target_new_leads_per_run="1000")
    worlds.append(world)
    result = world.run_checked()
    assert Counter(world.campaign_of().values()) == {SMB: 250}
    entry = result.report.routes["SMB"]
    assert (entry["room"], entry["quota"], entry["added"]) == (250, 150, 250)
    assert "took 100 of the room of routes with nothing or not enough ready" in entry["reason"]
    assert result.report.routes["Midsize"]["room"] == 0


def test_three_overlapping_routes_first_match_wins(raw_warehouse: Warehouse, tmp_path: Path,
                                                   worlds: list[World]) -> None:
    """Three routes whose conditions overlap: each lead goes to the FIRST route that matches."""
    routes = {"routes": [
        {"name": "Enterprise", "when": "annual_revenue >= 5000000", "campaign_id": THIRD},
        {"name": "Canada", "when": "country = 'Canada'", "campaign_id": SMB},
        {"name": "Rest", "when": "TRUE", "campaign_id": MIDSIZE}]}
    sources = [lead("big.canada@route.example", Decimal(9_000_000), country="Canada"),  # both 1 and 2: route 1
               lead("small.canada@route.example", Decimal(10_000), country="Canada"),  # 2 and 3: route 2
               lead("big.us@route.example", Decimal(5_000_000)),  # exactly the threshold of route 1
               lead("small.us@route.example", Decimal(4_999_999)),  # only the catch-all
               lead("unknown.canada@route.example", None, country="Canada")]  # NULL revenue: not route 1
    world = _world(raw_warehouse, tmp_path, sources, routes=routes, campaigns=(SMB, MIDSIZE, THIRD))
    worlds.append(world)
    result = world.run_checked()
    assert world.campaign_of() == {"big.canada@route.example": THIRD, "big.us@route.example": THIRD,
                                   "small.canada@route.example": SMB, "unknown.canada@route.example": SMB,
                                   "small.us@route.example": MIDSIZE}
    assert result.report.ready_by_route == {"Enterprise": 2, "Canada": 2, "Rest": 1}
    rows = world.warehouse.query("SELECT email, sequence_target FROM `{ds}.ops_inst_state`", label="test")
    assert {r["email"]: r["sequence_target"] for r in rows}["big.canada@route.example"] == "Enterprise"


def test_leads_no_route_takes_are_counted_and_not_sent(raw_warehouse: Warehouse, tmp_path: Path,
                                                       worlds: list[World]) -> None:
    """Without a catch-all route, leads matching none stay in the warehouse and the run says how many."""
    duckdb_unless_full(raw_warehouse)
    routes = {"routes": [{"name": "Canada", "when": "country = 'Canada'", "campaign_id": SMB}]}
    world = _world(raw_warehouse, tmp_path, [lead("a@nowhere.example", Decimal(1), country="Canada"),
                                             lead("b@nowhere.example", Decimal(1)),
                                             lead("c@nowhere.example", Decimal(1))], routes=routes)
    worlds.append(world)
    result = world.run_checked()
    assert world.campaign_of() == {"a@nowhere.example": SMB}
    assert result.report.ready_by_route == {"Canada": 1, "(unrouted)": 2}
    assert "ready leads no route takes: 2" in result.report.render_text()


def test_a_warehouse_failure_of_the_ready_read_under_a_good_routing_is_a_failed_run_not_a_refused_routing(
        raw_warehouse: Warehouse, tmp_path: Path, worlds: list[World]) -> None:
    """A custom routing whose every part runs, and a ready read (the ready queue's build) failing in the
    warehouse for another reason (an outage): exit 1 with the warehouse's message and "not the routing", never
    exit 2 blaming the routing; nothing is added."""
    from dataclasses import replace as with_field

    from coldsync.warehouse.base import WarehouseError, WarehouseWrapper

    class Outage(WarehouseWrapper):
        def execute(self, sql: str, params: Any = None, *, label: str) -> int:
            if label == "queue.build":
                raise WarehouseError("queue.build: simulated outage")
            return self.inner.execute(sql, params, label=label)

        def query(self, sql: str, params: Any = None, *, label: str) -> list[dict[str, Any]]:
            if label == "topup.read_ready":
                raise WarehouseError("topup.read_ready: simulated outage")
            return self.inner.query(sql, params, label=label)

    routes = {"routes": [{"name": "Canada", "when": "country = 'Canada'", "campaign_id": SMB},
                         {"name": "Rest", "campaign_id": MIDSIZE}]}
    world = _world(raw_warehouse, tmp_path, _leads(5, 100, "x"), routes=routes)
    worlds.append(world)
    world = with_field(world, warehouse=Outage(world.warehouse))
    result = world.run()
    assert result.exit_code == ExitCode.RUN_FAILED, result.report.render_text()
    assert "simulated outage" in str(result.report.error)
    assert "the warehouse failed, not the routing" in str(result.report.error)
    assert result.report.added == 0


def test_a_route_failing_in_the_warehouse_is_refused_before_anything_is_touched(
        raw_warehouse: Warehouse, tmp_path: Path, worlds: list[World]) -> None:
    """A route whose SQL parses but fails in the warehouse (text compared with a date): exit 2, the route
    named, no Instantly write and no row changed but the run log's."""
    duckdb_unless_full(raw_warehouse)  # the emulator runs such SQL on DuckDB too: the same failure
    routes = {"routes": [{"name": "Broken", "when": "country > DATE '2020-01-01'", "campaign_id": SMB},
                         {"name": "Rest", "campaign_id": MIDSIZE}]}
    world = _world(raw_warehouse, tmp_path, _leads(5, 100, "x"), routes=None)  # set up while the routing was good
    worlds.append(world)
    before = table_contents(world.warehouse)
    result = world.run(routes=json.dumps(routes))
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert result.report.outcome == "config_error"
    assert "route 'Broken': its `when` fails" in str(result.report.error)
    assert [r for r in world.sim.request_log if r.method != "GET"] == []
    after = table_contents(world.warehouse)
    assert {k: v for k, v in after.items() if k != "ops_run_log"} == {k: v for k, v in before.items()
                                                                      if k != "ops_run_log"}
    assert len(after["ops_run_log"]) == 1 and "config_error" in after["ops_run_log"][0]


def test_a_route_naming_an_unknown_column_stops_the_command_with_exit_2(tmp_path: Path) -> None:
    """`sync_once.py` with a route naming a column nobody declared: exit 2 before any warehouse or API work,
    the route and the column named."""
    import sync_once

    routes = {"routes": [{"name": "SaaS", "when": "industry = 'saas'", "campaign_id": SMB},
                         {"name": "Rest", "campaign_id": MIDSIZE}]}
    env = {"ROUTES": json.dumps(routes), "DUCKDB_PATH": str(tmp_path / "never.duckdb"),
           "ROUTES_FILE": str(tmp_path / "none.toml")}
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, **{k.lower(): v for k, v in env.items()})
    assert "route 'SaaS', when" in str(caught.value) and "unknown column 'industry'" in str(caught.value)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        code = sync_once.main([])
    assert code == ExitCode.BAD_CONFIG
    assert not (tmp_path / "never.duckdb").exists()


DEFAULT_ROUTE_CASES = {  # revenue -> the route of the original segment rule, worked out by hand
    "below": (Decimal(999_999), "SMB"),
    "exactly-threshold": (Decimal(1_000_000), "Midsize"),
    "decimal-just-below": (Decimal("999999.99"), "SMB"),
    "above": (Decimal(1_200_000), "Midsize"),
    "null-is-smb": (None, "SMB"),
    "negative-is-smb": (Decimal(-5), "SMB"),
    "zero": (Decimal(0), "SMB"),
}


def test_default_routes_are_the_original_segment_rule(raw_warehouse: Warehouse, settings: Settings) -> None:
    """With no routing configured, SMB is revenue under 1,000,000 or unknown (NULL, negative), else Midsize."""
    build(raw_warehouse, settings, [lead(f"{case}@threshold.example", revenue)
                                    for case, (revenue, _route) in DEFAULT_ROUTE_CASES.items()])
    store = Store(raw_warehouse, "t", START, routing=settings.routing)
    rows = store.read_ready({"SMB": 50, "Midsize": 50})
    assert {str(r["email"]).split("@")[0]: r["sequence_target"] for r in rows} == {
        case: route for case, (_revenue, route) in DEFAULT_ROUTE_CASES.items()}


AB_ROUTES = {"routes": [{"name": "Everyone", "ab_salt": "test-2026", "arms": [
    {"name": "A", "campaign_id": SMB, "weight": 50}, {"name": "B", "campaign_id": ARM_B, "weight": 50}]}]}


def _ab_sources(n: int) -> list[dict[str, Any]]:
    """Synthetic addresses, some in the forms people paste (case, +tags, Gmail dots, spaces)."""
    rows = []
    for i in range(n):
        if i % 10 == 0:
            email = f"  First.Last{i}+promo@{GMAIL}  "
        elif i % 10 == 1:
            email = f"Person{i}@Company{i % 97}.example"
        else:
            email = f"person{i}@company{i % 97}.example"
        rows.append(lead(email, Decimal(1000 + i)))
    return rows


@pytest.mark.bigquery
def test_ab_assignment_is_identical_on_both_engines_for_10000_addresses(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """10,000 addresses read from DuckDB and from the BigQuery emulator land in the same arm one by one,
    and the 50/50 split holds within 3 standard deviations (5,000 +- 150)."""
    sources = _ab_sources(10_000)
    arms: list[dict[str, str]] = []
    for engine in ("duckdb", "bigquery"):
        folder = tmp_path / engine
        folder.mkdir()
        warehouse = open_warehouse(engine, folder, request)
        try:
            settings = make_settings(folder, routes=json.dumps(AB_ROUTES))
            build(warehouse, settings, sources, as_of=START)
            route = settings.routing.routes[0]
            rows = Store(warehouse, "t", START, routing=settings.routing).read_ready({"Everyone": 20_000})
            arms.append({str(r["email"]): route.arm_for(str(r["email"])).name for r in rows})
        finally:
            warehouse.close()
    duck, bq = arms
    assert len(duck) == 10_000 and duck == bq
    split = Counter(duck.values())
    assert abs(split["A"] - 5_000) <= 150 and split["A"] + split["B"] == 10_000


def test_ab_arms_are_recorded_in_state_and_stable_across_runs(raw_warehouse: Warehouse, tmp_path: Path,
                                                              worlds: list[World]) -> None:
    """Each lead goes to its arm's campaign, the arm is written to ops_inst_state, and the arm a lead gets
    is the one arm_index computes from the salt and its address."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _ab_sources(60), routes=AB_ROUTES, campaigns=(SMB, ARM_B),
                   inventory_cap="60", target_new_leads_per_run="60")
    worlds.append(world)
    world.run_checked()
    rows = world.warehouse.query("SELECT email, campaign_id, arm, sequence_target FROM `{ds}.ops_inst_state`",
                                 label="test")
    assert len(rows) == 60
    for row in rows:
        expected = "AB"[arm_index("test-2026", str(row["email"]), [50, 50])]
        assert (row["arm"], row["campaign_id"], row["sequence_target"]) == (
            expected, SMB if expected == "A" else ARM_B, "Everyone")
    assert Counter(world.campaign_of().values()) == Counter(SMB if r["arm"] == "A" else ARM_B for r in rows)


def test_bounce_guard_skips_a_route_without_pausing_its_campaign(raw_warehouse: Warehouse, tmp_path: Path,
                                                                worlds: list[World]) -> None:
    """SMB bounced 6% of its emails over 7 days: its top-up is skipped with a warning, the campaign stays
    active, and Midsize takes the run's room; 3% only warns."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(100, 100_000, "small") + _leads(100, 5_000_000, "big"),
                   routes=None, inventory_cap="300", target_new_leads_per_run="40")
    worlds.append(world)
    world.sim.record_daily(SMB, (START - dt.timedelta(days=2)).date(), sent=1000, bounced=60)
    world.sim.record_daily(MIDSIZE, (START - dt.timedelta(days=2)).date(), sent=1000, bounced=30)
    result = world.run_checked()
    assert Counter(world.campaign_of().values()) == {MIDSIZE: 40}
    assert world.sim.campaign(SMB)["status"] == 1
    warnings = " | ".join(result.report.warnings)
    assert "route SMB: top-up skipped (campaign SMB bounced 6.0% of 1000 emails over 7 days, above MAX_BOUNCE_RATE 5%" \
        in warnings
    assert "campaign Midsize bounced 3.0% of 1000 emails over 7 days, above BOUNCE_WARN_RATE 2%" in warnings


def test_custom_variables_follow_the_route_mapping_with_a_declared_column(raw_warehouse: Warehouse, tmp_path: Path,
                                                                          request: pytest.FixtureRequest,
                                                                          worlds: list[World]) -> None:
    """A declared extra source column feeds both a route condition and a custom variable, with its type kept;
    the other route keeps the default four variables."""
    duckdb_unless_full(raw_warehouse)
    folder = tmp_path / "sized"
    folder.mkdir()
    warehouse = open_warehouse(raw_warehouse.engine, folder, request, source_table="source_with_size")
    warehouse.ensure_dataset()
    ensure_demo_source_table(warehouse)
    warehouse.execute(INSERT_SOURCE_SQL.replace("`{source}`", "`{ds}.source_leads`"), {"rows": Rows(SOURCE_FIELDS, [
        lead("large@size.example", Decimal(5), company_name="Large Co"),
        lead("small@size.example", Decimal(7), company_name="Small Co")])}, label="test.sources")
    warehouse.execute("CREATE OR REPLACE VIEW `{ds}.source_with_size` AS SELECT s.*, "
                      "CASE WHEN s.email LIKE 'large%' THEN 250 ELSE 12 END AS employees "
                      "FROM `{ds}.source_leads` AS s", label="test.view")
    routes = {"source_columns": ["employees"], "routes": [
        {"name": "Big teams", "when": "employees >= 100", "campaign_id": SMB,
         "custom_variables": {"team_size": "employees", "company": "company_name"}},
        {"name": "Rest", "campaign_id": MIDSIZE}]}
    world = _world(warehouse, folder, [], routes=routes, source_table="source_with_size")
    worlds.append(world)
    try:
        world.run_checked()
    finally:
        warehouse.close()
    by_email = {str(x["email"]): x for x in world.sim.leads()}
    assert by_email["large@size.example"]["campaign"] == SMB
    big = by_email["large@size.example"]["payload"]
    assert (big["team_size"], big["company"], "domain" in big, "country" in big) == (250, "Large Co", False, False)
    assert by_email["small@size.example"]["campaign"] == MIDSIZE
    small = by_email["small@size.example"]["payload"]
    assert ({k: small[k] for k in ("company", "domain", "location", "country")}, "team_size" in small) == (
        {"company": "Small Co", "domain": "acme.example", "location": "CA", "country": "United States"}, False)


@pytest.mark.parametrize(("backlog", "smb_added"), [(100, 0), (20, 10)])
def test_supply_sizing_keeps_a_campaign_near_its_days_of_throughput(raw_warehouse: Warehouse, tmp_path: Path,
                                                                    worlds: list[World], backlog: int,
                                                                    smb_added: int) -> None:
    """SMB starts 10 new leads a day and has `backlog` leads not yet contacted: SUPPLY_DAYS=3 wants
    ceil(3 x 10) - backlog more (0 for 100, 10 for 20); the rest of the run's room goes to Midsize."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(100, 100_000, "small") + _leads(100, 5_000_000, "big"),
                   routes=None, inventory_cap="300", target_new_leads_per_run="40")
    worlds.append(world)
    world.sim.insert_leads(SMB, [{"email": f"waiting{i}@backlog.example"} for i in range(backlog)])
    for day in range(1, 8):
        world.sim.record_daily(SMB, (START - dt.timedelta(days=day)).date(), new_leads_contacted=10, sent=10)
    result = world.run_checked(run_housekeeping=False)
    added = Counter(campaign for email, campaign in world.campaign_of().items() if "backlog" not in email)
    assert added == Counter({SMB: smb_added, MIDSIZE: 40 - smb_added}) - Counter()
    assert result.report.routes["SMB"]["supply_wanted"] == 30 - min(backlog, 30)


def test_lead_scores_explain_the_default_order(raw_warehouse: Warehouse, settings: Settings) -> None:
    """v_lead_scores shows each part of the default score and the rank inside the route, by hand."""
    build(raw_warehouse, settings, [lead("new@score.example", Decimal(250_000)),
                                    lead("unknown@score.example", None),
                                    lead("old@score.example", Decimal(900_000))], as_of=START)
    add_history(raw_warehouse, "old@score.example", START - dt.timedelta(days=200))
    rows = {r["email"]: r for r in raw_warehouse.query("SELECT * FROM `{ds}.v_lead_scores`", label="test")}
    parts = {email: (int(r["never_contacted_points"]), int(r["revenue_points"]), int(r["score"]), r["priority"],
                     r["sequence_target"]) for email, r in rows.items()}
    assert parts == {
        "new@score.example": (10**15, 250_000, 10**15 + 250_000, 1, "SMB"),
        "unknown@score.example": (10**15, -1, 10**15 - 1, 2, "SMB"),
        "old@score.example": (0, 900_000, 900_000, 3, "SMB"),
    }


def test_a_changed_routing_rebuilds_the_views_in_a_live_run_only(raw_warehouse: Warehouse, tmp_path: Path,
                                                                 worlds: list[World]) -> None:
    """New routes: a dry run warns and leaves the views; the next live run rebuilds them once, and the
    view then names the new routes."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, [lead("ca@view.example", Decimal(5), country="Canada"),
                                             lead("us@view.example", Decimal(5))], routes=None,
                   target_new_leads_per_run="0")
    worlds.append(world)
    routes = json.dumps({"routes": [{"name": "Canada", "when": "country = 'Canada'", "campaign_id": SMB},
                                    {"name": "Rest", "campaign_id": MIDSIZE}]})

    def targets() -> dict[str, str]:
        return {r["email"]: r["sequence_target"] for r in world.warehouse.query(
            "SELECT email, sequence_target FROM `{ds}.v_ready_for_instantly`", label="test")}

    assert targets() == {"ca@view.example": "SMB", "us@view.example": "SMB"}
    dry = world.run(routes=routes, dry_run=True)
    assert any("views" in w and "rebuilds them" in w for w in dry.report.warnings)
    assert targets() == {"ca@view.example": "SMB", "us@view.example": "SMB"}
    live = world.run(routes=routes)
    assert live.report.phase("preflight").counts["views rebuilt for the routes in effect"] == 1
    assert targets() == {"ca@view.example": "Canada", "us@view.example": "Rest"}
    again = world.run(routes=routes)
    assert again.report.phase("preflight").counts["views rebuilt for the routes in effect"] == 0


def test_supply_signals_are_read_once_an_hour_even_across_quiet_runs(raw_warehouse: Warehouse, tmp_path: Path,
                                                                     worlds: list[World]) -> None:
    """A first run into empty campaigns asks no sending status (analytics count them empty and nothing is
    tracked there: waiting for leads, backlog 0) but keeps its figures; a quiet run (cap full) 30 minutes later
    reads none and carries them forward; a run that adds 15 minutes after that reuses them (no new read); two
    hours later, with leads in both, each campaign's sending status is read once."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(50, 100_000, "small") + _leads(50, 5_000_000, "big"),
                   routes=None, inventory_cap="20", target_new_leads_per_run="20")
    worlds.append(world)

    def status_reads() -> int:
        return len(world.sim.requests_to("GET", "/campaigns/{id}/sending-status"))

    world.run(run_drain=False)
    assert status_reads() == 0
    world.sim.advance(0.5 / 24)
    world.run(run_drain=False)  # cap full: no room, no read
    assert status_reads() == 0
    world.sim.advance(0.25 / 24)
    added = world.run(run_drain=False, inventory_cap=30)
    assert added.report.added == 10 and status_reads() == 0
    world.sim.advance(2 / 24)
    world.run(run_drain=False, inventory_cap=40)
    assert status_reads() == 2


def test_a_campaign_taken_out_of_the_routes_is_still_drained_and_never_fed(raw_warehouse: Warehouse, tmp_path: Path,
                                                                          worlds: list[World]) -> None:
    """Midsize is replaced by an A/B pair: the old campaign's tracked leads are still drained as they finish
    (history written, unsubscribes and bounces to the DNC list), it gets no new lead, it counts against the
    cap, and the run says so."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(60, 100_000, "small") + _leads(60, 5_000_000, "big"),
                   routes=None, inventory_cap="40", target_new_leads_per_run="40",
                   campaigns=(SMB, MIDSIZE, THIRD, ARM_B))
    worlds.append(world)
    world.run_checked()
    old = {str(x["id"]) for x in world.sim.leads(MIDSIZE)}
    assert len(old) == 20
    routes = json.dumps({"routes": [
        {"name": "SMB", "when": "annual_revenue IS NULL OR annual_revenue < 1000000", "campaign_id": SMB},
        {"name": "Midsize", "arms": [{"name": "A", "campaign_id": THIRD, "weight": 50},
                                     {"name": "B", "campaign_id": ARM_B, "weight": 50}]}]})
    first = world.run_checked(routes=routes)
    assert first.report.added == 0  # still at the cap: the old campaign's 20 leads count
    assert any(f"campaign {MIDSIZE} is in no route any more but holds 20 tracked lead(s)" in w
               for w in first.report.warnings)
    world.sim.advance(70)  # every sequence ends, and a lead still active is past MAX_ACTIVE_DAYS (stale)
    world.run_checked(routes=routes)
    world.sim.advance(15)  # replied leads are held REPLY_HOLD_DAYS (14) in their campaign, then deleted
    world.run_checked(routes=routes)
    assert world.sim.leads(MIDSIZE) == []
    history = world.warehouse.query("SELECT instantly_lead_id, status_final FROM `{ds}.ops_lead_history` "
                                    "WHERE campaign_id = @c", {"c": MIDSIZE}, label="test")
    assert {str(r["instantly_lead_id"]) for r in history} == old
    unsubscribed = [r for r in history if r["status_final"] in ("unsubscribed", "bounced")]
    dnc = world.warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_dnc` WHERE source IN "
                                "('instantly_unsubscribe', 'instantly_bounce')", label="test")[0]["n"]
    assert dnc >= len(unsubscribed)
    assert {str(x["campaign"]) for x in world.sim.leads()} <= {SMB, THIRD, ARM_B}


def test_a_routes_file_set_but_missing_is_refused(tmp_path: Path) -> None:
    """ROUTES_FILE set to a path that does not exist (a typo) stops the program (exit 2 path) instead of
    silently sending with the default routes; ROUTES_FILE=none reads no file."""
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, routes_file=str(tmp_path / "route.toml"))
    assert f"ROUTES_FILE {tmp_path / 'route.toml'}: does not exist" in str(caught.value)
    assert make_settings(tmp_path, routes_file="none").routing.origin == "default"


def test_setup_builds_the_views_from_the_config_table_routes(raw_warehouse: Warehouse, settings: Settings) -> None:
    """A `routes` row in the config table is what `setup.py` builds the views with (setup reads its settings
    without the table), and the views fingerprint it records is the one a run expects."""
    duckdb_unless_full(raw_warehouse)
    from coldsync.warehouse.migrate import ensure_schema
    from coldsync.warehouse.schema import views_fingerprint
    from tests.helpers import set_config

    build(raw_warehouse, settings, [lead("ca@table.example", Decimal(5), country="Canada"),
                                    lead("us@table.example", Decimal(5))], as_of=START)
    document = json.dumps({"routes": [{"name": "Canada", "when": "country = 'Canada'", "campaign_id": SMB},
                                      {"name": "Rest", "campaign_id": MIDSIZE}]})
    set_config(raw_warehouse, "routes", string=document)
    ensure_schema(raw_warehouse, settings)
    rows = raw_warehouse.query("SELECT email, sequence_target FROM `{ds}.v_ready_for_instantly`", label="test")
    assert {r["email"]: r["sequence_target"] for r in rows} == {"ca@table.example": "Canada",
                                                                "us@table.example": "Rest"}
    with_table = replace(settings, routes=document)
    built = raw_warehouse.query("SELECT value_string FROM `{ds}.config` WHERE key = 'views_fingerprint'",
                                label="test")[0]["value_string"]
    assert built == views_fingerprint(with_table.routing)


def test_a_route_string_that_looks_like_a_parameter_is_text(raw_warehouse: Warehouse, tmp_path: Path) -> None:
    """'@as_of' in a route's string is text, not the query parameter @as_of: the leads route."""
    if raw_warehouse.engine == "bigquery":
        pytest.skip("the BigQuery emulator reads @name inside a string literal as a parameter (BigQuery does not)")
    when = "email != '@as_of' AND ENDS_WITH(email, '@asof.example')"
    routes = json.dumps({"routes": [{"name": "Odd", "when": when, "campaign_id": SMB},
                                    {"name": "Rest", "campaign_id": MIDSIZE}]})
    settings = make_settings(tmp_path, routes=routes)
    build(raw_warehouse, settings, [lead("a@asof.example", Decimal(5)), lead("b@other.example", Decimal(5))],
          as_of=START)
    store = Store(raw_warehouse, "t", START, routing=settings.routing)
    assert store.ready_counts() == ({"Odd": 1, "Rest": 1}, 0)
    rows = store.read_ready({"Odd": 5, "Rest": 5})
    assert {r["email"]: r["sequence_target"] for r in rows} == {"a@asof.example": "Odd", "b@other.example": "Rest"}


def test_a_route_failing_on_a_value_is_named(raw_warehouse: Warehouse, tmp_path: Path, worlds: list[World]) -> None:
    """A `when` that fails only on some rows' values (a cast of a name to a number) is still named: exit 2."""
    duckdb_unless_full(raw_warehouse)
    routes = {"routes": [{"name": "Fine", "when": "country = 'Canada'", "campaign_id": SMB},
                         {"name": "Casting", "when": "CAST(first_name AS INT64) > 3", "campaign_id": MIDSIZE}]}
    world = _world(raw_warehouse, tmp_path, _leads(3, 100, "x"), routes=None)
    worlds.append(world)
    result = world.run(routes=json.dumps(routes))
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert "route 'Casting': its `when` fails" in str(result.report.error)


def test_reused_waiting_figures_do_not_switch_sizing_off_once_fed(raw_warehouse: Warehouse, tmp_path: Path,
                                                                  worlds: list[World]) -> None:
    """Both campaigns start 20 new leads a day and are empty (waiting for leads): the first run feeds each
    by its share (500); 30 minutes later, with the same figures reused, the 500 leads added since are its
    backlog, above 3 days x 20, so sizing gives 0 more; a RUN_TOPUP=false run keeps the figures for later."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(700, 100_000, "small") + _leads(700, 5_000_000, "big"),
                   routes=None, inventory_cap="5000", target_new_leads_per_run="1000")
    worlds.append(world)
    for campaign in (SMB, MIDSIZE):
        for day in range(1, 8):
            world.sim.record_daily(campaign, (START - dt.timedelta(days=day)).date(), new_leads_contacted=20, sent=20)
    first = world.run(run_drain=False, run_housekeeping=False)
    assert (first.report.routes["SMB"]["added"], first.report.routes["Midsize"]["added"]) == (500, 500)
    world.sim.advance(0.25 / 24)
    quiet = world.run(run_drain=False, run_housekeeping=False, run_topup=False)
    assert set(quiet.report.supply_signals) == {SMB, MIDSIZE}
    world.sim.advance(0.25 / 24)
    reads = len(world.sim.requests_to("GET", "/campaigns/{id}/sending-status"))
    second = world.run(run_drain=False, run_housekeeping=False)
    assert len(world.sim.requests_to("GET", "/campaigns/{id}/sending-status")) == reads  # reused, not re-read
    assert second.report.added == 0
    assert (second.report.routes["SMB"]["supply_wanted"], second.report.routes["Midsize"]["supply_wanted"]) == (0, 0)


def test_state_rows_with_an_upper_case_campaign_id_count_as_tracked(raw_warehouse: Warehouse, tmp_path: Path,
                                                                     worlds: list[World]) -> None:
    """State rows written by an older version with the campaign id in upper case are the same campaign: they
    count as tracked (no mismatch warning, no reconcile listing) and are not treated as a retired campaign."""
    duckdb_unless_full(raw_warehouse)
    world = _world(raw_warehouse, tmp_path, _leads(10, 100_000, "small") + _leads(10, 5_000_000, "big"),
                   routes=None, inventory_cap="20", target_new_leads_per_run="20")
    worlds.append(world)
    world.run_checked()
    world.warehouse.execute("UPDATE `{ds}.ops_inst_state` SET campaign_id = UPPER(campaign_id) WHERE TRUE",
                            label="test")
    world.sim.clear_request_log()
    result = world.run_checked(run_drain=False)
    assert result.report.inventory_warehouse == 20
    assert not [w for w in result.report.warnings if "warehouse tracks" in w or "in no route" in w]
    listed = [r.request_body for r in world.sim.requests_to("POST", "/leads/list")]
    assert listed and all("ids" in body for body in listed)  # counts agree: the audit by id only, no listing
