"""The embedded warehouse: one DuckDB file, running the BigQuery SQL transpiled by sqlglot."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from coldsync.files import acquire_private_umask, private_dir, release_private_umask, tighten, write_private
from coldsync.warehouse.base import (
    Param,
    Rows,
    StatementStats,
    StringArray,
    Typed,
    WarehouseBusyError,
    WarehouseError,
    check_identifier,
)
from coldsync.warehouse.schema import TableSpec

log = logging.getLogger("coldsync.warehouse")

_DUCK_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL(38, 9)",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATE": "DATE",
}

_WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "ALTER", "DROP")

MiB = 2**20
MEMORY_FLOOR = 96 * MiB
"""The smallest automatic DUCKDB_MEMORY_LIMIT: what a run at 30,000 to 300,000 source rows is measured with
(docs/PERFORMANCE.md: its reads fit)."""
MEMORY_CEILING = 112 * MiB
"""The largest automatic DUCKDB_MEMORY_LIMIT: what issue 16's target 7 (peak RSS under 300 MB at 3,000,000
source rows) leaves DuckDB. DuckDB's resident memory settles near its limit plus ~40 MB whatever the run reads
(a pass over the source or ops_candidates fills its block cache up to the limit), beside the process's ~92 MB
with its imports and the run's own objects (a 24,000-lead fill's rows, ~30 MB). Measured on the 3M-row
benchmark (the fill, the child's VmHWM, the ready read joining its chosen rows back): 331 MB at 160 MiB,
283 MB at 112 MiB, CPU unchanged (5.7-6.0 s); at 64 MiB the ready read runs out of memory."""
MEMORY_SOURCE_FACTOR = 1
"""The automatic limit is the warehouse file's size times this (the file is mostly the source table, stored
compressed; a full pass over it needs several times that, so any source past ~130 MB of file reaches the
ceiling and spills to the temp directory)."""
MEMORY_RAM_SHARE = 8
"""The automatic limit never exceeds 1/8 of the machine's memory (a shared runner keeps room for others),
unless that is below MEMORY_FLOOR."""

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB)$", re.IGNORECASE)
MEMORY_MINIMUM = 64 * 2**20
"""The smallest DUCKDB_MEMORY_LIMIT accepted (coldsync.settings refuses less, naming the setting): below it DuckDB
fails to attach a warehouse or to run the sync's reads (0MB and 1KB crashed at ATTACH, 20MB at the state read)."""
_UNITS = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


@dataclass(frozen=True)
class MemoryLimit:
    """DuckDB's memory_limit in effect (`value`, as DuckDB reads it) and where it came from (`origin`)."""

    value: str
    origin: str

    def __str__(self) -> str:
        return f"{self.value} ({self.origin})"


def size_bytes(text: str) -> int:
    """Bytes of a size as DUCKDB_MEMORY_LIMIT takes it: KB/MB/GB are powers of 1000 and KiB/MiB/GiB of 1024,
    as DuckDB reads them. Raises ValueError naming DUCKDB_MEMORY_LIMIT for anything else."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(f"DUCKDB_MEMORY_LIMIT={text!r} is not auto or a size such as 128MB or 1GB: set it to one")
    unit = next(u for u in _UNITS if u.lower() == match.group(2).lower())
    return int(float(match.group(1)) * _UNITS[unit])


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the machine's physical memory (os.sysconf), or the cgroup v2
    limit of its container when smaller (/sys/fs/cgroup/memory.max). None when neither can be read."""
    found: int | None = None
    try:
        found = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        found = None
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        text = ""
    if text.isdigit() and (found is None or int(text) < found):
        found = int(text)
    return found if found and found > 0 else None


def resolve_memory_limit(setting: str, database_bytes: int, machine_bytes: int | None) -> MemoryLimit:
    """The memory_limit DuckDB gets for DUCKDB_MEMORY_LIMIT=`setting`. An explicit size is used as given.
    `auto`: the warehouse file's size (`database_bytes`; 0 for a new file or in memory) times
    MEMORY_SOURCE_FACTOR, at most MEMORY_CEILING and 1/MEMORY_RAM_SHARE of `machine_bytes`, at least
    MEMORY_FLOOR; in MiB. Raises ValueError for anything else (coldsync.settings rejects it earlier)."""
    if setting.strip().lower() != "auto":
        size_bytes(setting)
        return MemoryLimit(setting.strip(), "DUCKDB_MEMORY_LIMIT")
    ceiling = MEMORY_CEILING if machine_bytes is None else min(MEMORY_CEILING, machine_bytes // MEMORY_RAM_SHARE)
    chosen = max(MEMORY_FLOOR, min(database_bytes * MEMORY_SOURCE_FACTOR, ceiling))
    mib = -(-chosen // MiB)  # whole MiB, rounded up
    how = (f"auto: the {database_bytes / MiB:.0f} MiB warehouse file x{MEMORY_SOURCE_FACTOR}, kept within "
           f"{MEMORY_FLOOR // MiB}-{max(ceiling, MEMORY_FLOOR) // MiB} MiB")
    if machine_bytes is not None and ceiling < MEMORY_CEILING:
        how += f" (1/{MEMORY_RAM_SHARE} of this machine's {machine_bytes / 2**30:.1f} GiB)"
    return MemoryLimit(f"{mib}MiB", how)


def _bounded_top_n(node: exp.Expression) -> exp.Expression:
    """BigQuery's `ARRAY_AGG(x ORDER BY k1 [DESC] [NULLS FIRST|LAST], ... LIMIT n)` (the first n values of x in that
    order) as DuckDB's `min_by(x, key, n)`: the same n values in the same order, kept in a heap of n per group
    instead of a sort of every row (DuckDB has no LIMIT inside an aggregate). The key is a struct compared field
    by field: per ORDER BY item, a NULL flag placing NULLs where BigQuery does (first for ASC, last for DESC,
    unless said), then the value, negated for DESC, so a DESC item must be a number (the ready read's score).
    The order must be total (the ready read ends on the email, unique per candidate) for ties to agree."""
    if not (isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Limit)
            and isinstance(node.this.this, exp.Order)):
        return node
    order, most = node.this.this, node.this.expression
    fields: list[exp.Expression] = []
    for i, item in enumerate(order.expressions):
        key, desc = item.this, bool(item.args.get("desc"))
        nulls_first = item.args.get("nulls_first")
        if nulls_first is None:
            nulls_first = not desc
        is_null = exp.Is(this=key.copy(), expression=exp.Null())
        flag = exp.Not(this=exp.Paren(this=is_null)) if nulls_first else is_null
        value = exp.Neg(this=exp.Paren(this=key.copy())) if desc else key.copy()
        fields += [exp.PropertyEQ(this=exp.to_identifier(f"n{i}"), expression=flag),
                   exp.PropertyEQ(this=exp.to_identifier(f"v{i}"), expression=value)]
    return exp.Anonymous(this="min_by", expressions=[order.this.copy(), exp.Struct(expressions=fields), most.copy()])


@lru_cache(maxsize=1024)
def transpile(sql: str) -> str:
    """BigQuery SQL -> DuckDB SQL (cached: the product runs a small fixed set of statements, and sqlglot's parse and
    generate cost up to ~0.1 s a statement, more than DuckDB takes to run most of them). A bounded
    ARRAY_AGG (ORDER BY ... LIMIT n) becomes DuckDB's min_by with n (_bounded_top_n)."""
    out = []
    for tree in sqlglot.parse(sql, read="bigquery"):
        if tree is None:
            continue
        tree = tree.transform(_bounded_top_n)
        # BigQuery NUMERIC is DECIMAL(38, 9); DuckDB's bare DECIMAL would be (18, 3).
        for node in tree.find_all(exp.DataType):
            if node.this == exp.DataType.Type.DECIMAL and not node.expressions:
                node.set("expressions", [exp.DataTypeParam(this=exp.Literal.number(38)),
                                         exp.DataTypeParam(this=exp.Literal.number(9))])
        out.append(tree.sql(dialect="duckdb"))
    return ";\n".join(out)


def _to_duck(value: Param) -> Any:
    if isinstance(value, Rows):
        names = [name for name, _ in value.fields]
        return [{name: row.get(name) for name in names} for row in value.rows]
    if isinstance(value, StringArray):
        return list(value.values)
    if isinstance(value, Typed):
        return value.value
    return value


class DuckDBWarehouse:
    """Warehouse on a local DuckDB file; the dataset is a schema inside it."""

    engine = "duckdb"

    def __init__(self, path: Path | str, dataset: str, source_table: str = "source_leads", *,
                 memory_limit: str = "auto", threads: int = 1, stage_threshold: int = 2000,
                 temp_directory: Path | str | None = None) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self.dataset = check_identifier(dataset)
        parts = check_identifier(source_table).split(".")
        self._source_parts = parts
        # The file holds personal data: it, its WAL and its spill files are private (coldsync.files). DuckDB creates
        # the WAL at the first write and again after each checkpoint, so the private umask is held while open.
        acquire_private_umask()
        self._holds_umask = True
        try:
            self._con = self._open(memory_limit, threads, temp_directory)
        except BaseException:
            self._release_umask()
            raise
        self.stage_threshold = stage_threshold
        self.load_jobs = 0
        self._note_written = _write_holder_note(self.path)
        self._con.execute(f'USE "{self.catalog}"')
        self._qualified = f"{self.catalog}.{self.dataset}"
        parts = self._source_parts
        schema = parts[-2] if len(parts) > 1 else self.dataset
        self.source_table = f"{self.catalog}.{schema}.{parts[-1]}"
        self._lock = threading.Lock()
        self.stats = StatementStats()

    def _open(self, memory_limit: str, threads: int, temp_directory: Path | str | None) -> duckdb.DuckDBPyConnection:
        """Connect and attach the file (created if new; tightened to 0600 if an older version left it open).
        Spills go to `temp_directory` (DUCKDB_TEMP_DIRECTORY), else beside the file (spill_dir), created 0700.
        `memory_limit` is DUCKDB_MEMORY_LIMIT (resolve_memory_limit: `auto` scales with the file's size)."""
        size = 0
        if self.path is not None:
            try:
                size = self.path.stat().st_size
            except OSError:
                size = 0  # a new file
        try:
            self.memory_limit = resolve_memory_limit(memory_limit, size, machine_memory())
        except ValueError as exc:
            raise WarehouseError(str(exc)) from exc
        config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": self.memory_limit.value,
                                                                   "threads": threads}
        if self.path is not None:
            for existing in (self.path, wal_path(self.path)):
                tighten(existing)
            try:
                private_dir(self.path.parent)
            except OSError as exc:
                raise WarehouseError(f"cannot create the directory of the DuckDB file {self.path}: {exc}") from exc
        # Spill files go in a 0700 directory, beside the warehouse unless set: DuckDB's default for a connection
        # like this one is `.tmp` in the working directory (wherever the command was started).
        spill = Path(temp_directory) if temp_directory else spill_dir(self.path) if self.path is not None else None
        self.spill_directory = spill
        if spill is not None:
            try:
                config["temp_directory"] = str(private_dir(spill))
            except OSError as exc:
                raise WarehouseError(f"cannot create the DuckDB temp directory {spill} (DUCKDB_TEMP_DIRECTORY): "
                                     f"{exc}; set it to a folder this user may create") from exc
        # The file is attached under a catalog name derived from the dataset, never equal to it:
        # DuckDB cannot bind views when a catalog and a schema share a name (e.g. coldsync.duckdb).
        self.catalog = f"{self.dataset}_db"
        # DuckDB would otherwise hold each full read of the source in memory on every core (its default limit is
        # 80% of the machine's memory): a limit and one thread keep a run's peak under 300 MB, spilling instead.
        con = duckdb.connect(":memory:", config=config)
        con.execute("SET TimeZone = 'UTC'")
        target = str(self.path) if self.path is not None else ":memory:"
        try:
            con.execute(f"ATTACH '{target.replace(chr(39), chr(39) * 2)}' AS \"{self.catalog}\"")
        except duckdb.IOException as exc:
            con.close()
            if "lock" in str(exc).lower():
                raise WarehouseBusyError(busy_message(target, _conflicting_pid(str(exc)),
                                                      _read_holder_note(self.path))) from exc
            raise WarehouseError(f"cannot open the DuckDB file {target}: {exc}") from exc
        return con

    def _release_umask(self) -> None:
        if self._holds_umask:
            self._holds_umask = False
            release_private_umask()

    def describe(self) -> str:
        """Where the warehouse is (what error messages name)."""
        where = str(self.path) if self.path is not None else "in memory"
        return f"DuckDB warehouse at {where} (schema {self.dataset})"

    def resources(self) -> str:
        """DuckDB's memory limit in effect with where it came from, and where it spills (the "Using ..." log line
        and validate_environment.py show it beside `describe`)."""
        spill = f", spills to {self.spill_directory}" if self.spill_directory is not None else ""
        return f"memory limit {self.memory_limit}{spill}"

    def render(self, sql: str) -> str:
        return transpile(sql.replace("{ds}", self._qualified).replace("{source}", self.source_table))

    def _stage(self, rows: Rows) -> str:
        """Copy a big Rows parameter into a temporary table, in chunks (one huge list parameter costs
        DuckDB far more memory); the statement then reads the table. Caller holds the lock."""
        name = f"_stage_{uuid.uuid4().hex[:16]}"
        columns = ", ".join(f'"{field}" {_DUCK_TYPES[type_]}' for field, type_ in rows.fields)
        self._con.execute(f'CREATE TEMP TABLE "{name}" ({columns})')
        select = ", ".join(f'r."{field}"' for field, _ in rows.fields)
        for start in range(0, len(rows.rows), self.stage_threshold):
            part = Rows(rows.fields, rows.rows[start:start + self.stage_threshold])
            self._con.execute(f'INSERT INTO "{name}" SELECT {select} FROM UNNEST($rows) AS _t(r)',  # noqa: S608
                              {"rows": _to_duck(part)})
        self.load_jobs += 1
        return name

    def _run(self, sql: str, params: Mapping[str, Param] | None, label: str
             ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement and fetch its result under the lock (the connection is shared by threads)."""
        with self._lock:
            return self._run_locked(sql, dict(params or {}), label)

    def _run_locked(self, sql: str, params: dict[str, Param], label: str
                    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        staged: list[str] = []
        try:
            for name, value in list(params.items()):
                if isinstance(value, Rows) and len(value.rows) > self.stage_threshold and f"UNNEST(@{name})" in sql:
                    table = self._stage(value)
                    staged.append(table)
                    sql = sql.replace(f"UNNEST(@{name})", f"`{table}`")
                    del params[name]
            return self._execute(sql, params, label)
        except duckdb.Error as exc:
            raise WarehouseError(f"{label}: staging: {type(exc).__name__}: {exc}") from exc
        finally:
            for table in staged:
                self._con.execute(f'DROP TABLE IF EXISTS temp."{table}"')

    def _execute(self, sql: str, params: Mapping[str, Param], label: str
                 ) -> tuple[list[str], list[tuple[Any, ...]]]:
        rendered = self.render(sql)
        bound = {k: _to_duck(v) for k, v in params.items()}
        self.stats.by_label[label] += 1
        if rendered.lstrip().upper().startswith(_WRITE_PREFIXES):
            self.stats.writes += 1
        try:
            cursor = self._con.execute(rendered, bound) if bound else self._con.execute(rendered)
            columns = [d[0] for d in cursor.description or []]
            try:
                rows = cursor.fetchall()
            except duckdb.InvalidInputException:
                rows = []  # a statement without a result set
            return columns, rows
        except duckdb.Error as exc:
            raise WarehouseError(f"{label}: {type(exc).__name__}: {exc}") from exc

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        columns, rows = self._run(sql, params, label)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        _columns, rows = self._run(sql, params, label)
        if rows and len(rows[0]) == 1 and isinstance(rows[0][0], int):
            return int(rows[0][0])
        return 0

    def table_signal(self) -> str:
        """SOURCE_TABLE's change signal: its row count and the sum of every row's hash (DuckDB's own `hash`
        of the whole row), equal between two reads when no row was added, removed or changed. One scan of
        the stored columns, no rule evaluated: milliseconds at 300,000 rows. Counted as `source.signal`.
        Raises WarehouseError when the source cannot be read."""
        name = ".".join(f'"{part}"' for part in self.source_table.split("."))
        self.stats.by_label["source.signal"] += 1
        try:
            with self._lock:
                # A sum, not an XOR: two equal rows would cancel in an XOR ({A, A, C} and {B, B, C} agree).
                row = self._con.execute(f"SELECT count(*), sum(hash(s)) FROM {name} AS s").fetchone()  # noqa: S608
        except duckdb.Error as exc:
            raise WarehouseError(f"source.signal: {type(exc).__name__}: {exc}") from exc
        count, digest = row if row is not None else (0, None)
        return f"rows {count}, hash {digest}"


    table_signal.reads_rows = True  # type: ignore[attr-defined]  # Store.source_signal prefers a declared column
    def ensure_dataset(self) -> bool:
        with self._lock:
            existed = self._con.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE catalog_name = ? AND schema_name = ?",
                [self.catalog, self.dataset],
            ).fetchone()
        self.stats.by_label["setup.dataset"] += 1
        self.stats.writes += 1
        with self._lock:
            self._con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.catalog}"."{self.dataset}"')
        return not (existed and existed[0])

    def existing_columns(self, table: str) -> dict[str, str] | None:
        with self._lock:
            rows = self._con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [self.catalog, self.dataset, table],
            ).fetchall()
        return {str(name): str(type_) for name, type_ in rows} or None

    def table_ddl(self, spec: TableSpec) -> str:
        cols = ",\n  ".join(
            f"{c.name} {_DUCK_TYPES[c.type]}{' NOT NULL' if c.required else ''}" for c in spec.columns
        )
        return f'CREATE TABLE IF NOT EXISTS "{self.catalog}"."{self.dataset}"."{spec.name}" (\n  {cols}\n)'

    def create_table(self, spec: TableSpec) -> None:
        self.stats.by_label["setup.create_table"] += 1
        self.stats.writes += 1
        with self._lock:
            self._con.execute(self.table_ddl(spec))

    def add_columns(self, spec: TableSpec, names: Sequence[str]) -> None:
        by_name = {c.name: c for c in spec.columns}
        for name in names:
            column = by_name[name]
            self.stats.by_label["setup.add_column"] += 1
            self.stats.writes += 1
            with self._lock:
                self._con.execute(
                    f'ALTER TABLE "{self.catalog}"."{self.dataset}"."{spec.name}" ADD COLUMN IF NOT EXISTS '
                    f"{column.name} {_DUCK_TYPES[column.type]}"
                )

    def append_rows(self, spec: TableSpec, rows: Sequence[Mapping[str, Any]], *, key: str, label: str) -> int:
        """Warehouse.append_rows: one INSERT of the rows whose `key` is new (to the table and to `rows`)."""
        if not rows:
            return 0
        names = spec.column_names()
        fields = tuple((c.name, c.type) for c in spec.columns)
        columns = ", ".join(names)
        picked = ", ".join(f"r.{name}" for name in names)
        sql = (f"INSERT INTO `{{ds}}.{check_identifier(spec.name)}` ({columns}) "  # noqa: S608
               f"SELECT {picked} FROM UNNEST(@rows) AS r "
               f"WHERE r.{check_identifier(key)} NOT IN (SELECT t.{key} FROM `{{ds}}.{spec.name}` AS t) "
               f"QUALIFY ROW_NUMBER() OVER (PARTITION BY r.{key}) = 1")
        return self.execute(sql, {"rows": Rows(fields, rows)}, label=label)

    def close(self) -> None:
        self._con.close()  # checkpoints: the WAL is folded into the file (and removed) under the private umask
        if self._note_written and self.path is not None:
            note = _read_holder_note(self.path)
            if note is not None and note.get("pid") == os.getpid():
                holder_note_path(self.path).unlink(missing_ok=True)
            self._note_written = False
        self._release_umask()


def wal_path(path: Path) -> Path:
    """DuckDB's write-ahead log of the file at `path` (it names it so)."""
    return path.with_name(path.name + ".wal")


def spill_dir(path: Path) -> Path:
    """The private directory where DuckDB spills to disk while working on the file at `path` (0700)."""
    return path.with_name(path.name + ".tmp")


# Who has the DuckDB file open, for the message another command gets meanwhile (DuckDB lets one process
# open a file at a time, even for reading: a --report or a dry run during a sync cannot read it). The
# note is a small JSON file beside the warehouse, removed on close; a killed process leaves it behind,
# and the next process to open the file overwrites it. Only read when DuckDB names the pid that holds
# the file, and trusted only when the pids match.
def holder_note_path(path: Path) -> Path:
    return path.with_name(path.name + ".holder.json")


def command_line() -> str:
    """This program and its flags (never their values: an --erase address is no one's business here); a module run
    with `python -m` (the webhook receiver) is named as such."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if program == "__main__.py" and spec is not None and spec.name:
        program = f"python -m {spec.name.removesuffix('.__main__')}"
    return " ".join([program, *(a.split("=", 1)[0] for a in sys.argv[1:] if a.startswith("--"))])


def _write_holder_note(path: Path | None) -> bool:
    if path is None:
        return False
    note = {"pid": os.getpid(), "host": socket.gethostname(), "since": dt.datetime.now(dt.UTC).isoformat(),
            "command": command_line()}
    try:
        write_private(holder_note_path(path), json.dumps(note).encode("utf-8"))
    except OSError:  # a read-only directory: the message just says less
        return False
    return True


def _read_holder_note(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        note = json.loads(holder_note_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


RECEIVER_COMMAND = "python -m coldsync.webhooks"


WANT_SUFFIX = ".want"
WANT_FRESH_SECONDS = 5.0
"""How long a waiting opener's mark (want_path) counts: a crashed waiter's mark is ignored after this."""


def want_path(path: Path) -> Path:
    """The mark a command waiting for the DuckDB file at `path` leaves beside it (coldsync.warehouse.connect), so
    that the local webhook receiver lets the file go after the deliveries in flight instead of taking new ones."""
    return path.with_name(path.name + WANT_SUFFIX)


def someone_waits(path: Path) -> bool:
    """Whether a command is waiting for the DuckDB file at `path`: its mark is there and younger than
    WANT_FRESH_SECONDS (the waiter refreshes it while it polls). One stat call."""
    try:
        age = time.time() - want_path(path).stat().st_mtime
    except OSError:
        return False
    return age < WANT_FRESH_SECONDS


def may_wait_for_holder(path: Path) -> bool:
    """Whether an opener that found the DuckDB file at `path` busy may wait a moment for it: its holder is the local
    webhook receiver (its holder note names `python -m coldsync.webhooks`: it lets go within milliseconds), or left
    no note yet or any more (a holder between taking the lock and writing its note, or between removing the note
    and letting go). A note naming anything else (a sync, a report) means a long hold: refuse at once."""
    note = _read_holder_note(path)
    return note is None or str(note.get("command", "")).startswith(RECEIVER_COMMAND)


def _conflicting_pid(message: str) -> int | None:
    """The pid DuckDB names in its lock error ("Conflicting lock is held in ... (PID 1234)")."""
    found = re.search(r"\(PID (\d+)\)", message)
    return int(found.group(1)) if found else None


def busy_message(target: str, pid: int | None, note: dict[str, Any] | None) -> str:
    """Why the file cannot be opened now: who has it since when, and what to do (exit 3)."""
    advice = "DuckDB lets one process open the file at a time: try again when it ends"
    if note is None or pid is None or note.get("pid") != pid:
        who = f"another process (pid {pid})" if pid is not None else "another process"
        return f"{who} holds the DuckDB file {target} (a running sync?); {advice}"
    try:
        since = f"since {dt.datetime.fromisoformat(str(note['since'])):%H:%M} UTC"
    except (KeyError, ValueError):
        since = "now"
    command = str(note.get("command") or "a process")
    words = command.split()
    not_a_sync = {"--report", "--break-lock", "--erase", "--erase-file"}
    if words and words[0] == "sync_once.py" and not not_a_sync & set(words):
        return f"a sync is running {since} ({command}, pid {pid}) and holds the DuckDB file {target}; {advice}"
    return f"{command} is running {since} (pid {pid}) and holds the DuckDB file {target}; {advice}"
