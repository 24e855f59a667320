"""The demo: the whole cycle on the embedded defaults, no account, no network.

Builds a fresh demo warehouse (DuckDB, 300,000 synthetic leads, ~12,000 DNC entries, some history),
starts the local Instantly simulator with two campaigns, then runs the real sync several times with
simulated days passing in between, so drains, cooldown, DNC growth and top-ups show in the printed
summaries. At the end it writes the analytics report (coldsync.analytics_report: one self-contained HTML file,
by default data/report.html beside the warehouse) and prints its path.
Usage: `python -m coldsync.demo [--runs 9] [--days-between 15] [--leads 300000] [--report PATH]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from pathlib import Path

from coldsync.analytics_report import make_report, write_report
from coldsync.files import private_process
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.logs import configure_logging
from coldsync.settings import REPO_ROOT, Settings, load_settings
from coldsync.sync import run_sync
from coldsync.warehouse.base import Typed, Warehouse
from coldsync.warehouse.demo_data import DemoSizes, build_demo_warehouse, ensure_demo_source_table
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.migrate import ensure_schema

DEMO_START = dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.UTC)

# Demo-only readings of the warehouse, to show what changed between runs.
FIGURES_SQL = """
SELECT
  (SELECT COUNT(*) FROM `{ds}.ops_dnc`) AS dnc,
  (SELECT COUNT(*) FROM `{ds}.ops_lead_history`) AS history,
  (SELECT COUNT(DISTINCT email) FROM `{ds}.ops_lead_history`
     WHERE completed_at > TIMESTAMP_SUB(@now, INTERVAL @cooldown DAY)) AS in_cooldown,
  (SELECT COUNT(*) FROM `{ds}.ops_lead_history` WHERE attempt_num > 1) AS second_attempts,
  (SELECT COUNT(*) FROM `{ds}.ops_inst_state`) AS managed
"""

SET_AS_OF_SQL = """
MERGE `{ds}.config` AS t USING (SELECT 'as_of' AS key) AS s ON t.key = s.key
WHEN MATCHED THEN UPDATE SET value_string = @as_of, updated_at = @as_of_ts
WHEN NOT MATCHED THEN INSERT (key, value_string, updated_at) VALUES ('as_of', @as_of, @as_of_ts)
"""


def demo_campaign_id(name: str) -> str:
    """Stable demo campaign ids (the real ones come from settings or the config table)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coldsync-demo/{name}"))


def set_clock(warehouse: Warehouse, now: dt.datetime) -> None:
    """Pin the view's 'now' to the simulated clock (the `as_of` config row; simulations only)."""
    warehouse.execute(SET_AS_OF_SQL, {"as_of": now.isoformat(), "as_of_ts": Typed(now, "TIMESTAMP")},
                      label="demo.clock")


def figures(warehouse: Warehouse, now: dt.datetime, cooldown_days: int) -> dict[str, int]:
    row = warehouse.query(FIGURES_SQL, {"now": now, "cooldown": cooldown_days}, label="demo.figures")[0]
    return {k: int(v) for k, v in row.items()}


def demo_settings(path: Path, smb: str, midsize: str, target: int) -> Settings:
    folder = path.parent
    return load_settings(
        environ={"DUCKDB_PATH": str(path), "SMB_CAMPAIGN_ID": smb, "MIDSIZE_CAMPAIGN_ID": midsize,
                 "TARGET_NEW_LEADS_PER_RUN": str(target), "INSTANTLY_API_KEY": "sim-demo-key",
                 "ROUTES_FILE": "none"},  # the default routes, whatever config/ holds
        dotenv_path=folder / "no.env", secrets_dir=folder / "no-secrets")


DEMO_WAREHOUSE = REPO_ROOT / "data" / "demo.duckdb"
"""The demo's DuckDB file unless --path says otherwise (README: the analytics report after the demo)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=9, help="sync runs (default 9)")
    parser.add_argument("--days-between", type=float, default=15, help="simulated days between runs (default 15)")
    parser.add_argument("--leads", type=int, default=300_000, help="demo source leads (default 300000)")
    parser.add_argument("--target", type=int, default=3000, help="new leads per run (default 3000)")
    parser.add_argument("--path", default=str(DEMO_WAREHOUSE), help="demo DuckDB file")
    parser.add_argument("--report", default="", metavar="PATH",
                        help="where the HTML analytics report goes (default: report.html beside the demo warehouse)")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    private_process()  # the demo warehouse holds (synthetic) personal data like a real one: 0600 files, 0700 dir
    path = Path(args.path)
    for stale in (path, path.with_suffix(path.suffix + ".wal")):
        stale.unlink(missing_ok=True)  # the demo always starts from a fresh warehouse
    smb, midsize = demo_campaign_id("smb"), demo_campaign_id("midsize")
    settings = demo_settings(path, smb, midsize, args.target)
    warehouse = DuckDBWarehouse(path, settings.bq_dataset, settings.source_table)
    print(f"Demo warehouse: {warehouse.describe()}")
    warehouse.ensure_dataset()
    ensure_demo_source_table(warehouse)
    ensure_schema(warehouse, settings)
    with InstantlySimulator(api_key="sim-demo-key", seed=11, now=DEMO_START) as sim:
        build_demo_warehouse(warehouse, sizes=DemoSizes(leads=args.leads), as_of=sim.now, campaign_ids=(smb, midsize),
                             echo=print)
        sim.create_campaign("Cold outreach - SMB", campaign_id=smb)
        sim.create_campaign("Cold outreach - Midsize", campaign_id=midsize)
        client = InstantlyClient("sim-demo-key", base_url=sim.base_url)
        print(f"Instantly simulator at {sim.base_url} (two active campaigns)\n")
        before = figures(warehouse, sim.now, settings.cooldown_days)
        exit_code = 0
        for number in range(1, args.runs + 1):
            set_clock(warehouse, sim.now)
            result = run_sync(settings, warehouse, client, now=sim.now)
            exit_code = max(exit_code, int(result.exit_code))
            after = figures(warehouse, sim.now, settings.cooldown_days)
            print(f"--- run {number} of {args.runs}, simulated day {(sim.now - DEMO_START).days} "
                  f"({sim.now:%Y-%m-%d})")
            print(result.report.render_text())
            print(f"  warehouse: DNC {after['dnc']} (+{after['dnc'] - before['dnc']}), history {after['history']} "
                  f"(+{after['history'] - before['history']}), in cooldown {after['in_cooldown']}, "
                  f"second attempts {after['second_attempts']}, managed {after['managed']}\n")
            before = after
            sim.advance(args.days_between)
        client.close()
    from coldsync.status import report_clock  # here: coldsync.status imports this module (through embedded)

    report = Path(args.report) if args.report else path.with_name("report.html")
    as_of, clock = report_clock(warehouse)
    write_report(report, make_report(warehouse, as_of, clock=clock, routing=settings.routing))
    warehouse.close()
    print("Demo finished. Inspect the warehouse with: duckdb " + str(path) + "  (schema coldsync)")
    print(f"Analytics report (open it in a browser; it loads nothing): {report}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
