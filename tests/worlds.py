"""The small simulated world the outcome-policy tests share: two campaigns (the README's example ids) in the
Instantly simulator, a warehouse with 50 synthetic source rows, and a client to the simulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build
from tests.invariants import World

START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"  # example ids, as in the README
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"


@contextmanager
def small_world(tmp_path: Path, *, sequence_days: float = 60, warehouse: Warehouse | None = None,
                replied_list: bool = False, settings: Mapping[str, str] | None = None) -> Iterator[World]:
    """Cap 20, 4 new leads a run, no block-list mirror, no rolling audit; `settings` overrides them. With
    `replied_list`, REPLIED_LIST_ID is a list created in the simulator. `warehouse` (default: a DuckDB file in
    tmp_path, closed on exit) is the caller's to close when given."""
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=sequence_days)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    env = {"smb_campaign_id": SMB, "midsize_campaign_id": MIDSIZE, "inventory_cap": "20",
           "target_new_leads_per_run": "4", "instantly_api_key": "sim-key", "blocklist_mirror": "false",
           "reconcile_audit_calls": "0", **({"replied_list_id": sim.create_list("Replied")} if replied_list else {}),
           **(settings or {})}
    resolved = make_settings(tmp_path, **env)
    owned = warehouse is None
    warehouse = warehouse or DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        build(warehouse, resolved, list(generate_source_rows(50, seed=3)), as_of=START)
        yield World(warehouse, sim, client, resolved)
    finally:
        client.close()
        sim.stop()
        if owned:
            warehouse.close()
