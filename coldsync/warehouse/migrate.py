"""Create and upgrade the warehouse schema, idempotently: what `python setup.py` runs.

Running it twice changes nothing; on an older schema it adds the missing tables and columns and
never drops data; config rows are only inserted when missing, so ops' changes survive.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coldsync.outcomes import PolicyError, PolicyTable
from coldsync.routes import Routing, RoutingError
from coldsync.runlock import LOCK_FREE_AT, LOCK_NAME, LOCK_ROW_SQL
from coldsync.settings import CONFIG_KEYS, Settings, routing_of, with_config_rows
from coldsync.warehouse.base import Rows, Warehouse, WarehouseError
from coldsync.warehouse.schema import (
    ERASURE_SALT_KEY,
    SCHEMA_VERSION,
    SET_VIEWS_FINGERPRINT_SQL,
    SOURCE_COLUMNS,
    TABLES,
    views,
    views_built_rows,
)

CONFIG_FIELDS = (("key", "STRING"), ("value_int", "INT64"), ("value_string", "STRING"))

SEED_CONFIG_SQL = """
MERGE `{ds}.config` AS t
USING (SELECT r.key, r.value_int, r.value_string FROM UNNEST(@rows) AS r) AS s
ON t.key = s.key
WHEN NOT MATCHED THEN
  INSERT (key, value_int, value_string, updated_at)
  VALUES (s.key, s.value_int, s.value_string, CURRENT_TIMESTAMP())
"""

SCHEMA_VERSION_SQL = """
UPDATE `{ds}.config` SET value_int = @version, updated_at = CURRENT_TIMESTAMP()
WHERE key = 'schema_version' AND (value_int IS NULL OR value_int < @version)
"""

READ_CONFIG_SQL = "SELECT key, value_int, value_string FROM `{ds}.config`"

# The erasure salt (config row ERASURE_SALT_KEY): inserted only when no row holds the key, so a salt,
# once made, never changes (every erased person's hash depends on it).
CREATE_SALT_SQL = """
MERGE `{ds}.config` AS t
USING (SELECT @key AS key, @salt AS value_string) AS s
ON t.key = s.key
WHEN NOT MATCHED THEN
  INSERT (key, value_int, value_string, updated_at) VALUES (s.key, NULL, s.value_string, CURRENT_TIMESTAMP())
"""

SALT_PRESENT_SQL = "SELECT COUNT(*) AS n FROM `{ds}.config` WHERE key = @key"


class SchemaError(Exception):
    """The schema cannot be built as configured (e.g. the source table is missing a column)."""


@dataclass
class SchemaReport:
    actions: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(not a.startswith(("ok:", "would")) for a in self.actions)


# Rows ops add only when they mean it: a routing document or a score in the table overrides nothing
# until written (the file and the defaults stay in charge).
UNSEEDED = frozenset({"routes", "priority_expression", "outcome_policies"})


def config_seed_rows(settings: Settings) -> list[dict[str, Any]]:
    """Config rows from the settings (defaults unless overridden), plus the schema version."""
    rows: list[dict[str, Any]] = [{"key": "schema_version", "value_int": SCHEMA_VERSION, "value_string": None}]
    for key, spec in CONFIG_KEYS.items():
        value = getattr(settings, spec.name)
        if spec.name in UNSEEDED:
            continue
        if spec.kind == "bool" or spec.kind == "int":
            rows.append({"key": key, "value_int": int(value), "value_string": None})
        elif spec.kind == "percent":
            rows.append({"key": key, "value_int": None, "value_string": f"{value:g}"})
        else:
            rows.append({"key": key, "value_int": None, "value_string": value or None})
    return rows


def read_config(warehouse: Warehouse) -> dict[str, object]:
    """The config table as key -> value (value_int when set, else value_string); {} when missing."""
    if warehouse.existing_columns("config") is None:
        return {}
    rows = warehouse.query(READ_CONFIG_SQL, label="settings.read_config")
    out: dict[str, object] = {}
    for row in rows:
        value = row["value_int"] if row["value_int"] is not None else row["value_string"]
        out[str(row["key"])] = value
    return out


def ensure_erasure_salt(warehouse: Warehouse) -> bool:
    """Create this warehouse's erasure salt (`secrets.token_hex(32)`, 64 hex characters) when the
    config table has no ERASURE_SALT_KEY row; never change an existing one. One statement, safe to
    repeat and to race (the MERGE inserts only when the key is absent). Returns True when it was
    created. Raises WarehouseError when the config table is missing or unwritable."""
    params = {"key": ERASURE_SALT_KEY, "salt": secrets.token_hex(32)}
    return warehouse.execute(CREATE_SALT_SQL, params, label="setup.erasure_salt") > 0


def outcomes_in_effect(warehouse: Warehouse, settings: Settings) -> PolicyTable:
    """The outcome policy table a sync run would use (its settings resolved with the config table's rows:
    cooldowns, reply days, the `outcome_policies` row), for the views' rule 5. Raises SchemaError for a bad
    one."""
    resolved = settings if warehouse.existing_columns("config") is None else with_config_rows(
        settings, read_config(warehouse))
    try:
        return resolved.outcome_table
    except PolicyError as exc:
        raise SchemaError(f"the outcome policies cannot be used: {exc}") from exc


def routing_in_effect(warehouse: Warehouse, settings: Settings) -> Routing:
    """The routing a sync run would use: `settings.routing`, or, when neither ROUTES nor PRIORITY_EXPRESSION
    was given outside the warehouse, with the config table's `routes` / `priority_expression` rows (setup.py
    reads its settings without the table, so it asks here). Raises RoutingError for a bad document."""
    if warehouse.existing_columns("config") is None:
        return settings.routing
    config = read_config(warehouse)
    routes = settings.routes if settings.origins.get("routes", "default") != "default" else str(
        config.get("routes") or "")
    score = settings.priority_expression if settings.origins.get("priority_expression", "default") != "default" \
        else str(config.get("priority_expression") or "")
    if routes == settings.routes and score == settings.priority_expression:
        return settings.routing
    origin = settings.origins.get("routes", "default") if routes == settings.routes else "config table"
    return routing_of(routes, origin, settings.routes_file, settings.smb_campaign_id, settings.midsize_campaign_id,
                      score, routes_file_set=settings.origins.get("routes_file", "default") != "default")


def check_source(warehouse: Warehouse, source_table: str, extra: Sequence[str] = ()) -> list[str]:
    """Problems with the source lead table against the column contract and the extra source columns the
    routing declares (empty when fine)."""
    name = source_table.split(".")[-1]
    in_dataset = source_table.count(".") == 0 or source_table.split(".")[-2] == warehouse.dataset
    if not in_dataset:
        return []  # outside our dataset: the view creation will report a missing table
    columns = warehouse.existing_columns(name)
    if columns is None:
        return [f"source table {source_table!r} does not exist: create it, load your leads, "
                "or set SOURCE_TABLE (run `python setup.py --demo` for a synthetic one)"]
    have = {k.lower() for k in columns}
    missing = [c.name for c in SOURCE_COLUMNS if c.name not in have]
    if missing:
        return [f"source table {source_table!r} lacks column(s) {', '.join(missing)}: add them (see README, "
                "source column contract) or point SOURCE_TABLE at a view that renames yours"]
    undeclared = [name for name in extra if name.lower() not in have]
    if undeclared:
        return [f"source table {source_table!r} lacks the column(s) {', '.join(undeclared)} that the routing's "
                "source_columns declare: add them to the table, or remove them from source_columns"]
    return []


def ensure_schema(
    warehouse: Warehouse,
    settings: Settings,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SchemaReport:
    """Bring the dataset up to the current schema; with dry_run, only print what would run."""
    report = SchemaReport()

    def act(action: str, statement: str | None = None) -> None:
        report.actions.append(action)
        if statement:
            report.statements.append(statement)
        if echo:
            echo(action)
            if statement and dry_run:
                echo(statement.strip() + ";\n")

    if dry_run:
        act(f"would ensure dataset {warehouse.dataset}")
    elif warehouse.ensure_dataset():
        act(f"created dataset {warehouse.dataset}")
    else:
        act(f"ok: dataset {warehouse.dataset} exists")

    for spec in TABLES:
        existing = warehouse.existing_columns(spec.name)
        if existing is None:
            if dry_run:
                act(f"would create table {spec.name}", warehouse.table_ddl(spec))
            else:
                warehouse.create_table(spec)
                act(f"created table {spec.name}")
            continue
        missing = [c for c in spec.column_names() if c not in existing]
        if not missing:
            act(f"ok: table {spec.name} is current")
        elif dry_run:
            act(f"would add column(s) {', '.join(missing)} to {spec.name}",
                "\n".join(f"ALTER TABLE {spec.name} ADD COLUMN IF NOT EXISTS {m}" for m in missing))
        else:
            warehouse.add_columns(spec, missing)
            act(f"added column(s) {', '.join(missing)} to {spec.name}")

    seeds = config_seed_rows(settings)
    if dry_run:
        act(f"would insert missing config rows among {', '.join(r['key'] for r in seeds)}",
            warehouse.render(SEED_CONFIG_SQL))
    else:
        inserted = warehouse.execute(SEED_CONFIG_SQL, {"rows": Rows(CONFIG_FIELDS, seeds)}, label="setup.seed_config")
        act(f"inserted {inserted} missing config row(s)" if inserted else "ok: config rows present")
        warehouse.execute(SCHEMA_VERSION_SQL, {"version": SCHEMA_VERSION}, label="setup.schema_version")

    # The run lock's permanent row (coldsync.store: only ever UPDATEd by runs, so it must exist first).
    if dry_run:
        act(f"would insert the run lock row {LOCK_NAME!r} of ops_run_lock when missing", warehouse.render(LOCK_ROW_SQL))
    elif warehouse.execute(LOCK_ROW_SQL, {"name": LOCK_NAME, "free_at": LOCK_FREE_AT}, label="setup.lock_row"):
        act(f"inserted the run lock row {LOCK_NAME!r} (free) into ops_run_lock")
    else:
        act("ok: run lock row present")

    if dry_run:
        present = warehouse.existing_columns("config") is not None and int(warehouse.query(
            SALT_PRESENT_SQL, {"key": ERASURE_SALT_KEY}, label="setup.erasure_salt_present")[0]["n"]) > 0
        act("ok: erasure salt present" if present else f"would create the erasure salt (config row {ERASURE_SALT_KEY})",
            None if present else warehouse.render(CREATE_SALT_SQL))
    elif ensure_erasure_salt(warehouse):
        act(f"created the erasure salt (config row {ERASURE_SALT_KEY})")
    else:
        act("ok: erasure salt present")

    try:
        routing = routing_in_effect(warehouse, settings)
    except RoutingError as exc:
        raise SchemaError(f"the routing cannot be used: {exc}") from exc
    problems = check_source(warehouse, settings.source_table, routing.source_columns)
    if problems:
        if dry_run:
            for problem in problems:
                act(f"would fail: {problem}")
            return report
        raise SchemaError("; ".join(problems))
    outcomes = outcomes_in_effect(warehouse, settings)
    for name, sql in views(routing, outcomes):
        before = warehouse.existing_columns(name)
        if dry_run:
            act(f"would create or replace view {name}", warehouse.render(sql))
            continue
        try:
            warehouse.execute(sql, label="setup.view")
        except WarehouseError as exc:
            raise SchemaError(f"could not create {name}: {exc}") from exc
        act(f"ok: view {name} is current" if before is not None else f"created view {name}")
    if not dry_run:
        for key, value in views_built_rows(routing, warehouse.source_table, outcomes).items():
            warehouse.execute(SET_VIEWS_FINGERPRINT_SQL, {"key": key, "value": value, "now": dt.datetime.now(dt.UTC)},
                              label="setup.views_fingerprint")
    return report
