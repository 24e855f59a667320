"""The one warehouse interface both engines implement.

SQL is written once, in BigQuery's dialect, with `{ds}` standing for the dataset (qualified as each
engine needs) and `{source}` for the source lead table. Only identifiers are templated (validated
by settings); every value travels as a query parameter (`@name`). The DuckDB engine transpiles the
same text with sqlglot, so a business rule has exactly one definition.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from coldsync.warehouse.schema import TableSpec


@dataclass(frozen=True)
class Typed:
    """A scalar parameter with an explicit BigQuery type (needed for NULL values)."""

    value: Any
    type: str  # STRING, INT64, FLOAT64, NUMERIC, BOOL, TIMESTAMP, DATE


@dataclass(frozen=True)
class Rows:
    """An ARRAY<STRUCT<...>> parameter: the rows a MERGE or INSERT reads with UNNEST(@rows)."""

    fields: tuple[tuple[str, str], ...]  # (name, BigQuery type)
    rows: Sequence[Mapping[str, Any]]

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("Rows parameter is empty: skip the statement instead of sending it")


@dataclass(frozen=True)
class StringArray:
    """An ARRAY<STRING> parameter, e.g. `WHERE email IN UNNEST(@emails)`."""

    values: Sequence[str]


Param = str | int | float | bool | Decimal | dt.datetime | dt.date | None | Typed | Rows | StringArray


@dataclass
class StatementStats:
    """Statements sent to the warehouse, by label: the benchmark and dry-run tests read these."""

    by_label: Counter[str] = field(default_factory=Counter)
    writes: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_label.values())


class WarehouseError(Exception):
    """A warehouse statement failed (after retries where retrying makes sense)."""


class WarehouseConfigError(WarehouseError):
    """The warehouse cannot be used as configured: credentials missing or refused, a permission the
    service account lacks, the dataset in another location than BQ_LOCATION. Nothing was changed; the
    entry points exit 2 (configuration) and validate_environment.py shows it as a FAIL row with `fix`.
    Its text is one line naming the setting and the fix, and never shows a secret."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}. Fix: {fix}")
        self.problem = problem
        self.fix = fix


class WarehouseBusyError(WarehouseError):
    """Another process holds the warehouse (the DuckDB file is locked by a running sync)."""


class Warehouse(Protocol):
    """What the product needs from a warehouse."""

    engine: str
    dataset: str
    source_table: str  # SOURCE_TABLE as this engine resolves it (catalog/project, dataset, table)
    stats: StatementStats

    def describe(self) -> str:
        """One line for the log: which warehouse and where (no secret)."""
        ...

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        """Run a read and return its rows as dicts."""
        ...

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        """Run a write (DML/DDL); return the number of rows changed (0 for DDL)."""
        ...

    def render(self, sql: str) -> str:
        """The statement as this engine would run it (for --dry-run printing)."""
        ...

    def ensure_dataset(self) -> bool:
        """Create the dataset/schema if missing; True when it was created."""
        ...

    def existing_columns(self, table: str) -> dict[str, str] | None:
        """Column name -> type of a table or view in the dataset, or None when it does not exist."""
        ...

    def create_table(self, spec: TableSpec) -> None:
        """Create a table from its spec (partitioning and clustering where the engine has them)."""
        ...

    def add_columns(self, spec: TableSpec, names: Sequence[str]) -> None:
        """Add missing columns of a spec to an existing table, keeping its data."""
        ...

    def table_ddl(self, spec: TableSpec) -> str:
        """The DDL equivalent of create_table, for printing."""
        ...

    def append_rows(self, spec: TableSpec, rows: Sequence[Mapping[str, Any]], *, key: str, label: str) -> int:
        """Append `rows` (dicts holding every column of `spec`) to an insert-only table, one row per value of the
        column `key`: DuckDB skips a row whose key is in the table or earlier in `rows`; BigQuery streams them
        (tabledata.insertAll, with the key as each row's insertId: BigQuery drops a repeat it sees within about a
        minute, best effort), so readers of the table collapse rows by `key`. Returns the rows sent to be
        written (DuckDB: written). Raises WarehouseError when the table refuses them."""
        ...

    def close(self) -> None:
        ...


class WarehouseWrapper:
    """A Warehouse that forwards everything to another one: the base of wrappers that observe or
    interfere with statements (the benchmark's timer, the reliability proof's crash injector).
    Subclasses override `query` and `execute`."""

    def __init__(self, inner: Warehouse) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.dataset = inner.dataset
        self.source_table = inner.source_table
        self.stats = inner.stats

    def describe(self) -> str:
        return self.inner.describe()

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        return self.inner.query(sql, params, label=label)

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        return self.inner.execute(sql, params, label=label)

    def render(self, sql: str) -> str:
        return self.inner.render(sql)

    def ensure_dataset(self) -> bool:
        return self.inner.ensure_dataset()

    def existing_columns(self, table: str) -> dict[str, str] | None:
        return self.inner.existing_columns(table)

    def create_table(self, spec: TableSpec) -> None:
        self.inner.create_table(spec)

    def add_columns(self, spec: TableSpec, names: Sequence[str]) -> None:
        self.inner.add_columns(spec, names)

    def table_ddl(self, spec: TableSpec) -> str:
        return self.inner.table_ddl(spec)

    def append_rows(self, spec: TableSpec, rows: Sequence[Mapping[str, Any]], *, key: str, label: str) -> int:
        return self.inner.append_rows(spec, rows, key=key, label=label)

    def close(self) -> None:
        self.inner.close()


_IDENTIFIER = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+){0,2}$")


def check_identifier(name: str) -> str:
    """Identifiers are the only text placed into SQL; refuse anything but [project.]dataset.table."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid table identifier: {name!r}")
    return name


def infer_type(value: Any) -> str:
    """BigQuery type of a Python scalar parameter."""
    if isinstance(value, Typed):
        return value.type
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"
