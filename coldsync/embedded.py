"""Embedded mode: no Instantly key and no BigQuery project means a local playground.

`python sync_once.py` then runs against the DuckDB demo warehouse (built on first use) and the local
Instantly simulator, whose state is kept beside the warehouse file (`data/coldsync.duckdb` ->
`data/coldsync.duckdb.simulator-state.json`, a JSON document, mode 0600) between runs, so repeated runs
behave like a real workspace. The simulated clock follows real time. A state file that is not a valid
simulator state is refused (exit 2, the fix named), never loaded; a pickle state of an older version is
ignored with a warning, never unpickled (unpickling runs code).

The playground refuses what would silently be something else than asked (exit 2, SettingsError):
INSTANTLY_BASE_URL without a key (the URL would be ignored), and a campaign id the simulator does not
hold (it would be created as a new, active campaign). Its workspace belongs to one warehouse file: a
warehouse built afresh starts a fresh workspace, and another DUCKDB_PATH has its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coldsync.demo import demo_campaign_id
from coldsync.files import private_dir
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator, SimulatorStateError
from coldsync.settings import REPO_ROOT, SettingProblem, Settings, SettingsError, replace
from coldsync.warehouse.base import Warehouse
from coldsync.warehouse.demo_data import DemoSizes, build_demo_warehouse, ensure_demo_source_table
from coldsync.warehouse.migrate import ensure_schema

log = logging.getLogger("coldsync.embedded")

# Pickle states of older versions (one for every warehouse, then one per warehouse): never loaded any more.
LEGACY_STATE_FILE = REPO_ROOT / "data" / "simulator-state.pickle"
DEFAULT_DUCKDB_FILE = REPO_ROOT / "data" / "coldsync.duckdb"
EMBEDDED_KEY = "sim-embedded-key"
DEMO_CAMPAIGNS = {"SMB": demo_campaign_id("smb"), "Midsize": demo_campaign_id("midsize")}


def state_file_for(settings: Settings) -> Path:
    """The simulator's saved workspace of this warehouse: beside its DuckDB file, named after it."""
    warehouse_file = settings.duckdb_file()
    return warehouse_file.with_name(warehouse_file.name + ".simulator-state.json")


def legacy_state_files(settings: Settings) -> list[Path]:
    """Pickle states older versions kept for this warehouse that still exist (ignored: warn_legacy_state_files)."""
    warehouse_file = settings.duckdb_file()
    candidates = [warehouse_file.with_name(warehouse_file.name + ".simulator-state.pickle")]
    if warehouse_file == DEFAULT_DUCKDB_FILE:
        candidates.append(LEGACY_STATE_FILE)
    return [path for path in candidates if path.exists()]


def warn_legacy_state_files(settings: Settings, state_file: Path) -> None:
    """One warning per old pickle state: it is ignored (unpickling a file runs whatever code it holds) and can go."""
    for path in legacy_state_files(settings):
        log.warning("ignoring %s: a simulator state of an older version, a pickle, is never loaded (loading a pickle "
                    "can run code); delete it. The workspace is kept in %s from now on", path, state_file)


def load_embedded_state(settings: Settings, state_file: Path) -> InstantlySimulator | None:
    """The saved workspace, or None when there is none; SettingsError (exit 2) for a file that is not a valid state,
    naming it and the fix (nothing in it is loaded or run)."""
    try:
        return InstantlySimulator.load_state(state_file, api_key=EMBEDDED_KEY)
    except SimulatorStateError as exc:
        raise SettingsError([SettingProblem(
            "duckdb_path", settings.origins.get("duckdb_path", "default"), settings.duckdb_path,
            f"the embedded simulator's state file {exc.path} beside it {exc.reason}; it was not loaded",
            f"delete {exc.path}: the next run starts a fresh simulated workspace (delete the DuckDB file too to "
            "rebuild the whole playground)")]) from exc


def is_embedded(settings: Settings) -> bool:
    return not settings.instantly_api_key and not settings.uses_bigquery


def embedded_settings(settings: Settings) -> Settings:
    """Fill what the playground needs: a key for the simulator and the demo campaign ids."""
    from coldsync.settings import Secret

    return replace(settings, instantly_api_key=Secret(EMBEDDED_KEY),
                   smb_campaign_id=settings.smb_campaign_id or DEMO_CAMPAIGNS["SMB"],
                   midsize_campaign_id=settings.midsize_campaign_id or DEMO_CAMPAIGNS["Midsize"])


def _refuse_base_url(settings: Settings) -> None:
    origin = settings.origins.get("instantly_base_url", "default")
    if origin != "default":
        raise SettingsError([SettingProblem(
            "instantly_base_url", origin, settings.instantly_base_url,
            "is set but INSTANTLY_API_KEY is empty: without a key (and without BQ_PROJECT) sync_once.py runs the "
            "embedded simulator and would ignore this URL",
            "set INSTANTLY_API_KEY as well (a simulator server accepts the key it was started with: README, the "
            "simulator server), or unset INSTANTLY_BASE_URL for the embedded playground")])


def _refuse_unknown_campaigns(settings: Settings, known: set[str]) -> None:
    """Every campaign the routes name must be one of the simulator's (never created behind the user's back)."""
    routing = settings.routing
    known_ids = {campaign_id.lower() for campaign_id in known}  # campaign ids compare without case
    problems = []
    for route in routing.routes:
        for arm in route.arms:
            if arm.campaign_id.lower() in known_ids:
                continue
            if routing.is_default:
                name = "smb_campaign_id" if route.name == "SMB" else "midsize_campaign_id"
                where: tuple[str, str | None] = (name, arm.campaign_id)
                message = "is not a campaign of the embedded Instantly simulator"
            else:
                where = ("routes_file" if routing.origin.startswith("ROUTES_FILE") else "routes", None)
                message = (f"route {route.name!r} ({routing.origin}) names campaign {arm.campaign_id}, which is not a "
                           "campaign of the embedded Instantly simulator")
            problems.append(SettingProblem(
                where[0], settings.origins.get(where[0], "default"), where[1],
                f"{message} (it holds {', '.join(sorted(known))})",
                "unset it to use the playground's demo campaigns (SMB_CAMPAIGN_ID, MIDSIZE_CAMPAIGN_ID and "
                "ROUTES_FILE=none), or run against a simulator server started with your campaigns (README, the "
                "simulator server), or set INSTANTLY_API_KEY for real runs"))
    if problems:
        raise SettingsError(problems)


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
                       state_file: Path | None = None) -> Iterator[tuple[InstantlyClient, dt.datetime]]:
    """A started simulator (restored from the warehouse's state file, state_file_for) and a client for it; saved
    on exit if `save`. Raises SettingsError, before anything is built or saved, for INSTANTLY_BASE_URL without a
    key or a campaign the simulator does not hold."""
    _refuse_base_url(settings)
    state_file = state_file or state_file_for(settings)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # A warehouse built afresh (first use, or its file deleted) starts a fresh workspace: an old one would hold
    # thousands of leads this warehouse never added.
    fresh = warehouse.existing_columns("v_ready_for_instantly") is None
    warn_legacy_state_files(settings, state_file)
    sim = None if fresh else load_embedded_state(settings, state_file)
    if sim is None:
        sim = InstantlySimulator(api_key=EMBEDDED_KEY, seed=11, now=now)
        for label, campaign_id in DEMO_CAMPAIGNS.items():
            sim.create_campaign(f"Cold outreach - {label}", campaign_id=campaign_id)
    _refuse_unknown_campaigns(settings, set(sim.campaign_ids()))
    if sim.now < now:
        sim.advance((now - sim.now).total_seconds() / 86400)
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
            private_dir(state_file.parent)
            sim.save_state(state_file)  # written 0600 (coldsync.files.write_private)

