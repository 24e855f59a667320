"""What every entry point shares: settings bootstrap, logging, exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from coldsync.logs import configure_logging
from coldsync.settings import (
    Settings,
    SettingsError,
    SettingsSources,
    add_cli_arguments,
    cli_overrides,
    read_sources,
    resolve,
)
from coldsync.warehouse import Warehouse, WarehouseConfigError, WarehouseError, connect
from coldsync.warehouse.migrate import read_config


class ExitCode(IntEnum):
    """Documented in README: what each exit code of the commands means."""

    OK = 0
    RUN_FAILED = 1
    BAD_CONFIG = 2
    LOCK_HELD = 3
    CHECK_FAILED = 4


@dataclass
class Context:
    settings: Settings
    warehouse: Warehouse
    sources: SettingsSources  # every layer above the config table (setup.py --set checks new rows with them)


RUN_ONLY_SETTINGS = ("dry_run", "run_drain", "run_topup", "run_housekeeping")


def settings_parser(description: str, exclude: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add_cli_arguments(parser, exclude)
    return parser


def bootstrap(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
              *, read_config_table: bool = True) -> Context:
    """Settings from every layer (the config table needs the warehouse, so connect in between)."""
    sources = read_sources(cli_overrides(args), environ)
    first = resolve(sources)  # raises SettingsError before anything is touched
    configure_logging(first.log_level, first.secrets())
    warehouse = connect(first)
    if not read_config_table:
        return Context(first, warehouse, sources)
    try:
        settings = resolve(sources, read_config(warehouse))
    except (SettingsError, WarehouseError):
        warehouse.close()
        raise
    return Context(settings, warehouse, sources)


def fail_config(exc: SettingsError | WarehouseConfigError) -> int:
    print(f"Configuration error: {exc}", file=sys.stderr)
    return ExitCode.BAD_CONFIG
