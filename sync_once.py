"""Run one sync: DRAIN finished leads, TOP-UP fresh ones, HOUSEKEEPING; then exit.

Every setting is a flag or an environment variable (see README: configuration), e.g.
    DRY_RUN=true python sync_once.py
    python sync_once.py --target-new-leads-per-run 200 --run-drain false
    python sync_once.py --report [--markdown | --json]   (status report only: no sync)
    python sync_once.py --report --html PATH   (the analytics report: one self-contained HTML file of charts)
    python sync_once.py --slot "Fri 2026-07-17 18:00 EDT"  (the summary names what the run is for)
    python sync_once.py --erase EMAIL [--erase-file PATH]  (erase a person, keep a salted-hash suppression)
    python sync_once.py --break-lock [--force]   (free the run lock of a run that was killed)
    python sync_once.py --changes [--since 24h] [--route NAME] [--reveal] [--json]  (leads added and drained)
    python sync_once.py --webhooks register URL | status | resume [--json]  (Instantly webhooks to the receiver)
Exit codes: 0 success, 1 run failed, 2 bad configuration or input, 3 another run holds the lock,
130 interrupted (Ctrl-C or SIGTERM: the run log says so and the lock is free).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from contextlib import ExitStack
from pathlib import Path

from coldsync.analytics_report import html_report_command
from coldsync.changes import DEFAULT_SINCE, ChangesInputError, changes_command, check_reveal, parse_since
from coldsync.cli import ExitCode, bootstrap, fail_config, interruptible, settings_parser
from coldsync.embedded import embedded_instantly, embedded_settings, is_embedded
from coldsync.erase import EraseInputError, Target, run_erase, targets_from_cli
from coldsync.instantly.client import InstantlyClient
from coldsync.redact import redact
from coldsync.runlock import break_lock
from coldsync.settings import SettingsError, require
from coldsync.status import report_command
from coldsync.store import Store
from coldsync.sync import run_sync
from coldsync.warehouse import WarehouseConfigError, WarehouseError
from coldsync.warehouse.base import WarehouseBusyError
from coldsync.webhooks.ops import WEBHOOK_ACTIONS, webhooks_command


def misuse(args: argparse.Namespace) -> str | None:
    """Flags that would otherwise silently do something else than asked: refused, nothing is run."""
    if args.markdown and not args.report:
        return "--markdown formats the status report and needs --report (without it this would be a sync run)"
    if args.html and not args.report:
        return "--html writes the analytics report and needs --report (without it this would be a sync run)"
    if args.html and (args.markdown or args.json):
        return "--html writes the HTML report: run --report --markdown or --report --json on its own"
    if args.markdown and args.json:
        return "--markdown and --json are two formats of the report: give one of them"
    if args.break_lock:
        others = [flag for flag, given in (("--report", args.report), ("--json", args.json),
                                           ("--erase/--erase-file", bool(args.erase or args.erase_file)),
                                           ("--slot", bool(args.slot))) if given]
        if others:
            return f"--break-lock only frees the run lock: run {', '.join(others)} on its own"
    if args.slot and (args.report or args.erase or args.erase_file):
        return "--slot names a sync run's slot: it does not go with --report or --erase"
    if args.webhooks:
        others = [flag for flag, given in (("--report", args.report), ("--markdown", args.markdown),
                                           ("--html", bool(args.html)), ("--changes", args.changes),
                                           ("--erase/--erase-file", bool(args.erase or args.erase_file)),
                                           ("--break-lock", args.break_lock), ("--slot", bool(args.slot))) if given]
        if others:
            return f"--webhooks manages Instantly's webhooks: run {', '.join(others)} on its own"
        action, *rest = args.webhooks
        if action not in WEBHOOK_ACTIONS:
            return f"--webhooks {action!r}: expected one of {', '.join(WEBHOOK_ACTIONS)}"
        if action == "register" and len(rest) != 1:
            return "--webhooks register takes the receiver's URL: --webhooks register https://HOST/PATH"
        if action != "register" and rest:
            return f"--webhooks {action} takes no argument (got {' '.join(rest)!r})"
    if args.changes:
        others = [flag for flag, given in (("--report", args.report), ("--markdown", args.markdown),
                                           ("--erase/--erase-file", bool(args.erase or args.erase_file)),
                                           ("--break-lock", args.break_lock), ("--slot", bool(args.slot))) if given]
        if others:
            return f"--changes lists the leads added and drained: run {', '.join(others)} on its own"
    else:
        given = [flag for flag, value in (("--since", args.since is not None), ("--route", args.route is not None),
                                          ("--reveal", args.reveal)) if value]
        if given:
            return f"{', '.join(given)} only go(es) with --changes (without it this would be a sync run)"
    return None


def main(argv: list[str] | None = None) -> int:
    # Outside a run (building the embedded demo, a report, a second signal during a run's cleanup): nothing to
    # record; a run itself records `interrupted` and frees its lock (coldsync.sync.run_sync).
    return interruptible(lambda: _main(argv), "stopped; the next run repairs whatever was left")


def _main(argv: list[str] | None) -> int:
    parser = settings_parser((__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the run report as JSON instead of text")
    parser.add_argument("--report", action="store_true",
                        help="print the status report instead of syncing (reads the warehouse only)")
    parser.add_argument("--markdown", action="store_true", help="with --report: Markdown, for a job summary")
    parser.add_argument("--html", metavar="PATH", default="",
                        help="with --report: write the analytics report (charts of the analytics views and the latest "
                             "runs) to PATH as one self-contained HTML file, instead of printing the status report")
    parser.add_argument("--slot", default="", help="what this run is for, named in its summary (the scheduled "
                        "workflow passes the slot python3 -m coldsync.schedule chose)")
    parser.add_argument("--erase", metavar="EMAIL", action="append", default=[],
                        help="instead of syncing, erase this person's data (warehouse and Instantly) and keep a "
                             "salted-hash suppression; repeatable; DRY_RUN=true shows what would be removed")
    parser.add_argument("--erase-file", metavar="PATH", action="append", default=[],
                        help="like --erase for every address in the file (one a line; blank lines and # comments "
                             "ignored)")
    parser.add_argument("--break-lock", action="store_true",
                        help="instead of syncing, free the run lock of a run that is gone; refused while its holder "
                             "runs; asks for --force when that cannot be checked from here (BigQuery, another machine)")
    parser.add_argument("--force", action="store_true",
                        help="with --break-lock: break it even though whether its holder runs cannot be checked")
    parser.add_argument("--changes", action="store_true",
                        help="instead of syncing, list the leads added and drained per run (reads the warehouse "
                             "only; emails masked; --json for machines)")
    parser.add_argument("--since", metavar="DURATION", default=None,
                        help=f"with --changes: how far back, e.g. 30m, 24h, 7d (default {DEFAULT_SINCE})")
    parser.add_argument("--route", metavar="NAME", default=None, help="with --changes: one route's leads only")
    parser.add_argument("--reveal", action="store_true",
                        help="with --changes: show full email addresses (refused under CI)")
    parser.add_argument("--webhooks", metavar="ACTION", nargs="+", default=None,
                        help="instead of syncing: `register URL` creates the Instantly webhooks coldsync consumes "
                             "(unsubscribe, bounce, reply) to the receiver at URL with the INSTANTLY_WEBHOOK_SECRET "
                             "header; `status` lists them and flags disabled ones; `resume` resumes disabled ones")
    args = parser.parse_args(argv)
    refused = misuse(args)
    if refused:
        print(f"Configuration error: {refused}", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    erasing = bool(args.erase or args.erase_file)
    if args.force and not args.break_lock:
        print("Configuration error: --force only goes with --break-lock", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    if args.changes:
        try:  # before anything is touched
            since = parse_since(args.since if args.since is not None else DEFAULT_SINCE)
            check_reveal(args.reveal)
        except ChangesInputError as exc:
            print(f"Configuration error: {exc}", file=sys.stderr)
            return ExitCode.BAD_CONFIG
    targets: list[Target] = []
    if erasing:
        if args.report:
            print("Configuration error: --erase cannot be combined with --report", file=sys.stderr)
            return ExitCode.BAD_CONFIG
        try:  # before anything is touched
            targets = targets_from_cli(args.erase, args.erase_file)
        except EraseInputError as exc:
            print(f"Erase refused: {redact(str(exc))}", file=sys.stderr)
            return ExitCode.BAD_CONFIG
    try:
        ctx = bootstrap(args)
    except (SettingsError, WarehouseConfigError) as exc:
        return fail_config(exc)
    except WarehouseBusyError as exc:
        print(f"Lock held: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.LOCK_HELD
    except WarehouseError as exc:
        print(f"Warehouse error: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    settings, warehouse = ctx.settings, ctx.warehouse
    if args.webhooks:
        warehouse.close()  # the webhook commands talk to Instantly only
        return webhooks_command(settings, args.webhooks, as_json=args.json)
    if args.break_lock and settings.dry_run:
        warehouse.close()
        print("Configuration error: DRY_RUN=true writes nothing, and --break-lock changes the lock row: unset "
              "DRY_RUN to break it", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    if args.break_lock:
        try:
            decision = break_lock(Store(warehouse, "break-lock", dt.datetime.now(dt.UTC)), force=args.force)
        except WarehouseError as exc:
            print(f"Warehouse error: {redact(str(exc))}", file=sys.stderr)
            return ExitCode.RUN_FAILED
        finally:
            warehouse.close()
        print(decision.message, file=sys.stdout if decision.exit_code == 0 else sys.stderr)
        return decision.exit_code
    if args.changes:
        return changes_command(settings, warehouse, since=since, route=args.route, reveal=args.reveal,
                               fmt="json" if args.json else "text")
    if args.report and args.html:
        routing = (embedded_settings(settings) if is_embedded(settings) else settings).routing
        return html_report_command(warehouse, Path(args.html), routing=routing)
    if args.report:
        return report_command(settings, warehouse, "json" if args.json else "markdown" if args.markdown else "text")
    with ExitStack() as stack:
        stack.callback(warehouse.close)
        now = None
        if is_embedded(settings):
            settings = embedded_settings(settings)
            try:  # refuses INSTANTLY_BASE_URL without a key and campaigns the simulator does not hold
                client, now = stack.enter_context(embedded_instantly(settings, warehouse, save=not settings.dry_run))
            except SettingsError as exc:
                return fail_config(exc)
        else:
            try:
                require(settings, ["instantly_api_key"], "the erase deletes the person's leads in Instantly"
                        if erasing else "the sync talks to Instantly")
            except SettingsError as exc:
                return fail_config(exc)
            client = stack.enter_context(InstantlyClient(
                settings.instantly_api_key.reveal(), base_url=settings.instantly_base_url,
                max_per_second=settings.instantly_max_per_second, max_per_minute=settings.instantly_max_per_minute,
                request_deadline=settings.instantly_request_deadline_seconds,
                max_timeout_attempts=settings.instantly_timeout_attempts))
        if erasing:
            outcome = run_erase(settings, warehouse, client, targets, now=now)
            print(outcome.to_json() if args.json else outcome.render_text())
            return int(outcome.exit_code)
        result = run_sync(settings, warehouse, client, now=now, slot=args.slot)
    report = result.report
    print(report.to_json() if args.json else report.render_text())
    report.write_github_summary()
    if result.exit_code == ExitCode.BAD_CONFIG:
        print(f"Configuration error: {redact(report.error or '')}", file=sys.stderr)
    if result.exit_code == ExitCode.INTERRUPTED:
        print(f"Interrupted: {redact(report.error or '')} (run log: interrupted; exit {int(result.exit_code)})",
              file=sys.stderr)
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main())
