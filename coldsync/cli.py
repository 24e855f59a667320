"""What every entry point shares: settings bootstrap, logging, exit codes."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

from coldsync.files import private_process
from coldsync.logs import configure_logging
from coldsync.redact import redact
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
    INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C; SIGTERM too


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised in the main thread by handle_signals' handler."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_name(exc: BaseException | None) -> str:
    """SIGINT or SIGTERM, for messages (a bare KeyboardInterrupt is Python's own Ctrl-C)."""
    if isinstance(exc, Interrupted):
        return signal.Signals(exc.signum).name
    signum = received_signal()
    return signal.Signals(signum).name if signum is not None else "SIGINT"


_RECEIVED: list[int] = []  # the signal handle_signals caught, if any (signals are process-wide by nature)


def received_signal() -> int | None:
    """The SIGINT/SIGTERM caught by handle_signals in this process, if any: a library that turned the
    Interrupted exception into its own error (a driver that checks signals mid-statement) still counts."""
    return _RECEIVED[0] if _RECEIVED else None


@contextmanager
def handle_signals() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise Interrupted once, where the program is; the run records itself as
    interrupted and frees its lock (coldsync.sync.run_sync). Signals after the first are ignored, so that
    cleanup (a few statements) finishes: GitHub sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL.
    Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _RECEIVED.clear()

    def handler(signum: int, _frame: object) -> None:
        if _RECEIVED:
            return
        _RECEIVED.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _RECEIVED.clear()


def interruptible(main: Callable[[], int], what: str) -> int:
    """Run a command's main with handle_signals: Ctrl-C or SIGTERM anywhere in it (also inside a warehouse
    statement, which a driver may turn into its own error, e.g. DuckDB's "Query interrupted") ends it with
    one line on stderr and exit 130, never a traceback. `what`: the rest of that line."""
    with handle_signals():
        try:
            return main()
        except KeyboardInterrupt as exc:
            print(interrupted_line(exc, what), file=sys.stderr)
            return ExitCode.INTERRUPTED
        except Exception as exc:
            if received_signal() is None:
                raise
            print(interrupted_line(exc, what), file=sys.stderr)
            return ExitCode.INTERRUPTED


def interrupted_line(exc: BaseException, what: str) -> str:
    """The one line printed on stderr for an interrupted command."""
    return f"Interrupted by {signal_name(exc)}: {what} (exit {int(ExitCode.INTERRUPTED)})"


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
    private_process()  # files this command creates (warehouse, WAL, spill, state) are its user's only
    sources = read_sources(cli_overrides(args), environ)
    first = resolve(sources)  # raises SettingsError before anything is touched
    # The secrets are registered here, once per process, before anything can print or log: from now on every
    # string that leaves the process (logs, errors, dead letters, run log, reports) is scrubbed of them.
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
    print(redact(f"Configuration error: {exc}"), file=sys.stderr)
    return ExitCode.BAD_CONFIG
