"""Warehouse schema tool: create or upgrade the tables and the v_ready_for_instantly view.

This is not a packaging script. Usage:
    python setup.py              create what is missing (idempotent; never drops data)
    python setup.py --dry-run    print the statements instead of running them
    python setup.py --demo       also build the synthetic demo warehouse (DuckDB by default)
    python setup.py --set KEY=VALUE   change a config-table row, checked like the setting (repeatable;
                                      with --dry-run: show the change only)
"""

from __future__ import annotations

import sys

from coldsync.cli import RUN_ONLY_SETTINGS, Context, ExitCode, bootstrap, fail_config, interruptible, settings_parser
from coldsync.config_table import apply_changes, plan_changes, valid_keys
from coldsync.redact import redact
from coldsync.settings import SettingsError
from coldsync.store import VIEW_READY_COUNTS_SQL
from coldsync.warehouse import WarehouseConfigError, WarehouseError
from coldsync.warehouse.demo_data import DemoSizes, build_demo_warehouse, ensure_demo_source_table
from coldsync.warehouse.migrate import SchemaError, ensure_schema, read_config


def main(argv: list[str] | None = None) -> int:
    return interruptible(lambda: _main(argv), "setup stopped; run it again (it is idempotent)")


def _main(argv: list[str] | None) -> int:
    parser = settings_parser(__doc__.splitlines()[0], exclude=RUN_ONLY_SETTINGS)
    parser.add_argument("--dry-run", dest="schema_dry_run", action="store_true",
                        help="print the statements; change nothing")
    parser.add_argument("--demo", action="store_true", help="build the synthetic demo source, DNC and history")
    parser.add_argument("--demo-leads", type=int, default=300_000, help="demo source size (default 300000)")
    parser.add_argument("--set", dest="config_set", metavar="KEY=VALUE", action="append", default=[],
                        help="change a row of the warehouse config table instead of the schema (repeatable); the "
                             "value is checked like the setting; keys: " + valid_keys())
    args = parser.parse_args(argv)
    if args.config_set and args.demo:
        print("Configuration error: --set changes config rows only; run --demo separately", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    try:
        ctx = bootstrap(args, read_config_table=False)
    except (SettingsError, WarehouseConfigError) as exc:
        return fail_config(exc)
    except WarehouseError as exc:
        print(f"Warehouse error: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    warehouse, settings = ctx.warehouse, ctx.settings
    if args.config_set:
        return set_config_rows(ctx, args.config_set, dry_run=args.schema_dry_run)
    try:
        print(f"Warehouse: {warehouse.describe()}")
        if args.demo and not args.schema_dry_run:
            warehouse.ensure_dataset()
            ensure_demo_source_table(warehouse)
        ensure_schema(warehouse, settings, dry_run=args.schema_dry_run, echo=print)
        if args.demo and not args.schema_dry_run:
            build_demo_warehouse(warehouse, sizes=DemoSizes(leads=args.demo_leads), echo=print)
            for row in warehouse.query(VIEW_READY_COUNTS_SQL, label="setup.ready_counts"):
                print(f"ready for Instantly: {row['sequence_target']:<8} {row['ready']:>8}")
    except WarehouseConfigError as exc:  # a permission the service account lacks
        return fail_config(exc)
    except (SchemaError, WarehouseError) as exc:
        print(f"Schema error: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        warehouse.close()
    return ExitCode.OK


def set_config_rows(ctx: Context, assignments: list[str], *, dry_run: bool) -> int:
    """`--set KEY=VALUE ...`: check every change, print old -> new, then write them (unless dry_run)."""
    warehouse = ctx.warehouse
    try:
        if warehouse.existing_columns("config") is None:
            print(f"Configuration error: {warehouse.describe()} has no config table. Fix: run `python setup.py` "
                  "first (it creates the tables and seeds the config rows)", file=sys.stderr)
            return ExitCode.BAD_CONFIG
        try:
            changes = plan_changes(assignments, ctx.sources, read_config(warehouse))
        except SettingsError as exc:
            return fail_config(exc)
        print(f"Warehouse: {warehouse.describe()}")
        for change in changes:
            print(f"{'would set' if dry_run else 'set'} config {change.describe()}")
        if not dry_run:
            apply_changes(warehouse, changes)
    except WarehouseConfigError as exc:
        return fail_config(exc)
    except WarehouseError as exc:
        print(f"Warehouse error: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        warehouse.close()
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
