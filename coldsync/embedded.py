"""Embedded mode: no Instantly key and no BigQuery project means a local playground.

`python sync_once.py` then runs against the DuckDB demo warehouse (built on first use) and the local
Instantly simulator, whose state is kept in `data/simulator-state.pickle` between runs, so repeated
runs behave like a real workspace. The simulated clock follows real time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coldsync.demo import demo_campaign_id
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.settings import REPO_ROOT, Settings, replace
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.demo_data import DemoSizes, build_demo_warehouse, ensure_demo_source_table
from coldsync.warehouse.migrate import ensure_schema

log = logging.getLogger("coldsync.embedded")

STATE_FILE = REPO_ROOT / "data" / "simulator-state.pickle"
EMBEDDED_KEY = "sim-embedded-key"


def is_embedded(settings: Settings) -> bool:
    return not settings.instantly_api_key and not settings.uses_bigquery


def embedded_settings(settings: Settings) -> Settings:
    """Fill what the playground needs: a key for the simulator and the demo campaign ids."""
    from coldsync.settings import Secret

    return replace(settings, instantly_api_key=Secret(EMBEDDED_KEY),
                   smb_campaign_id=settings.smb_campaign_id or demo_campaign_id("smb"),
                   midsize_campaign_id=settings.midsize_campaign_id or demo_campaign_id("midsize"))


def ensure_demo_warehouse(warehouse: Warehouse, settings: Settings, now: dt.datetime) -> None:
    if warehouse.existing_columns("v_ready_for_instantly") is not None:
        return
    log.warning("building the demo warehouse on first use (300,000 synthetic leads)")
    warehouse.ensure_dataset()
    ensure_demo_source_table(warehouse)
    ensure_schema(warehouse, settings)
    build_demo_warehouse(warehouse, sizes=DemoSizes(), as_of=now,
                         campaign_ids=(settings.smb_campaign_id, settings.midsize_campaign_id))


@contextmanager
def embedded_instantly(settings: Settings, warehouse: Warehouse, *, save: bool,
                       state_file: Path = STATE_FILE) -> Iterator[tuple[InstantlyClient, dt.datetime]]:
    """A started simulator (restored from its state file) and a client for it; saved on exit if `save`."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sim = InstantlySimulator.load_state(state_file, api_key=EMBEDDED_KEY) if state_file.exists() else None
    if sim is None:
        sim = InstantlySimulator(api_key=EMBEDDED_KEY, seed=11, now=now)
    if sim.now < now:
        sim.advance((now - sim.now).total_seconds() / 86400)
    for label, campaign_id in settings.campaign_ids().items():  # every route's (and arm's) campaign
        if campaign_id and campaign_id not in sim.campaign_ids():
            sim.create_campaign(f"Cold outreach - {label}", campaign_id=campaign_id)
    # The playground's warehouse is built on first use, also before a dry run (a dry run of the sync
    # writes nothing; building the local playground is not part of it). Its clock is real time.
    ensure_demo_warehouse(warehouse, settings, sim.now)
    sim.start()
    log.warning("no INSTANTLY_API_KEY and no BQ_PROJECT: embedded mode (local Instantly simulator at %s, "
                "state in %s)", sim.base_url, state_file)
    client = InstantlyClient(EMBEDDED_KEY, base_url=sim.base_url)
    try:
        yield client, sim.now
    finally:
        client.close()
        sim.stop()
        if save:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            sim.save_state(state_file)
