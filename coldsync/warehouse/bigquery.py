"""The production warehouse: BigQuery through the official client.

Query parameters only; no streaming inserts (DML and load jobs only, because BigQuery refuses DML on
rows still in the streaming buffer); every job labelled and capped by `maximum_bytes_billed`;
concurrent-update errors retried with jitter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError, RefreshError
from google.auth.exceptions import TransportError as GoogleAuthTransportError
from google.cloud import bigquery
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from coldsync.warehouse.base import (
    Param,
    Rows,
    StatementStats,
    StringArray,
    Typed,
    WarehouseConfigError,
    WarehouseError,
    check_identifier,
    infer_type,
)
from coldsync.warehouse.schema import TableSpec

log = logging.getLogger("coldsync.warehouse")

_CONCURRENT = ("could not serialize access", "concurrent update", "transaction is aborted")
_WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "ALTER", "DROP")


def is_concurrent_update_error(exc: BaseException) -> bool:
    """BigQuery's errors for two DML jobs touching the same table at once: safe to retry."""
    text = str(exc).lower()
    return isinstance(exc, gexc.GoogleAPICallError) and any(marker in text for marker in _CONCURRENT)


CREDENTIALS_FIX = ("set BIGQUERY_CREDENTIALS_JSON to the path of the service-account key file Google gave you (or "
                   "paste its whole JSON), or unset it to use keyless auth (docs/OPERATIONS.md, 1.2)")
NO_CREDENTIALS_FIX = ("set BIGQUERY_CREDENTIALS_JSON to the path of a service-account key file (or its JSON), or run "
                      "`gcloud auth application-default login` on this machine; in GitHub Actions set up keyless auth "
                      "or the BIGQUERY_CREDENTIALS_JSON secret (docs/OPERATIONS.md, 1.2)")
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")
# A first call that cannot reach Google gives up after this long instead of the client's 10 minutes.
CONNECT_RETRY = bigquery.DEFAULT_RETRY.with_deadline(30.0)


def _credentials_problem(problem: str, fix: str = CREDENTIALS_FIX) -> WarehouseConfigError:
    return WarehouseConfigError(f"BIGQUERY_CREDENTIALS_JSON {problem}", fix)


def credentials_from_info(info: object, where: str) -> Any:
    """Credentials from a parsed key (service account, or an external-account / Workload Identity Federation
    config). Raises WarehouseConfigError naming what is wrong; never shows a value of the key."""
    if not isinstance(info, dict):
        raise _credentials_problem(f"{where} is JSON but not an object (a key file is one JSON object)")
    kind = info.get("type")
    if kind == "service_account":
        missing = [name for name in SERVICE_ACCOUNT_FIELDS if not info.get(name)]
        if missing:
            raise _credentials_problem(f"{where} is not a complete service-account key: it lacks "
                                       f"{', '.join(missing)}")
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_info(info)
        except (GoogleAuthError, ValueError) as exc:
            raise _credentials_problem(f"{where} is a service-account key whose private_key cannot be read "
                                       f"({type(exc).__name__})") from exc
    if kind in ("external_account", "authorized_user", "impersonated_service_account"):
        import google.auth

        try:
            creds, _ = google.auth.load_credentials_from_dict(info)
        except (GoogleAuthError, ValueError) as exc:
            raise _credentials_problem(f"{where} is an {kind} file that cannot be used ({type(exc).__name__})") \
                from exc
        return creds
    shown = f"type {kind!r}" if isinstance(kind, str) and len(kind) <= 40 else "no type"
    raise _credentials_problem(f"{where} has {shown}; a key file has type 'service_account' (or "
                               "'external_account' for keyless auth)")


def credentials_from_setting(value: str) -> Any:
    """Service-account credentials from a file path or the JSON text itself; None means ADC.

    Raises WarehouseConfigError (one line: the setting, what is wrong, the fix) for JSON that does not
    parse, a path that is not a readable file, or a key that lacks what Google needs. No call is made."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("{"):
        try:
            info = json.loads(text)
        except ValueError as exc:
            raise _credentials_problem("looks like JSON but does not parse (it may be cut short)") from exc
        return credentials_from_info(info, "holds JSON that")
    path = Path(text)
    if not path.is_file():
        # The value is a secret (it could be a mangled key): say what it is not, never show it.
        raise _credentials_problem("is neither JSON nor the path of an existing file",
                                   "correct the path (or GOOGLE_APPLICATION_CREDENTIALS), or unset it to use "
                                   "keyless auth / Application Default Credentials")
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _credentials_problem(f"names a file that is not readable JSON ({type(exc).__name__})") from exc
    return credentials_from_info(info, "names a file that")


def access_denied(exc: gexc.Forbidden, dataset: str) -> WarehouseConfigError | None:
    """A 403 that is a missing permission (not a quota or rate limit, which BigQuery also answers 403),
    as the configuration error naming the role to grant; None for other 403s."""
    message = str(getattr(exc, "message", exc))
    reasons = {str(e.get("reason", "")) for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    if "accessDenied" not in reasons and not message.startswith(("Access Denied", "Permission")):
        return None
    if "bigquery.jobs.create" in message:
        fix = ("grant the service account BigQuery Job User (roles/bigquery.jobUser) on the project "
               "(docs/OPERATIONS.md, 1.1)")
    else:
        fix = (f"grant the service account BigQuery Data Editor (roles/bigquery.dataEditor) on the dataset {dataset}, "
               "and Data Viewer on the source table's dataset if it is elsewhere (docs/OPERATIONS.md, 1.1)")
    return WarehouseConfigError(f"BigQuery denied access: {message.splitlines()[0] if message else 'http 403'}", fix)


@contextmanager
def google_errors(label: str, dataset: str) -> Iterator[None]:
    """Every failure of a call to Google as a WarehouseError: a missing permission or credentials Google
    refuses as WarehouseConfigError (exit 2), anything else (unreachable, 5xx, a bad statement) as
    WarehouseError (exit 1). Never a raw google or requests exception, never a traceback."""
    try:
        yield
    except WarehouseError:
        raise
    except gexc.Forbidden as exc:
        raise (access_denied(exc, dataset)
               or WarehouseError(f"{label}: Forbidden: {getattr(exc, 'message', exc)}")) from exc
    except gexc.GoogleAPICallError as exc:
        raise WarehouseError(f"{label}: {type(exc).__name__}: {getattr(exc, 'message', exc)}") from exc
    except gexc.RetryError as exc:  # the client's retries ran out: no answer (connection refused, DNS, a timeout)
        cause = type(exc.cause).__name__ if exc.cause is not None else "no answer"
        raise WarehouseError(f"{label}: BigQuery could not be reached ({cause}, retried until the deadline); "
                             "check the network and try again") from exc
    except RefreshError as exc:
        raise WarehouseConfigError(
            "Google refused the credentials (BIGQUERY_CREDENTIALS_JSON, GOOGLE_APPLICATION_CREDENTIALS or "
            f"Application Default Credentials) when asked for a token ({type(exc).__name__})",
            "the key was deleted or disabled, or the keyless setup is wrong: create a new key, or check the "
            "Workload Identity provider and service account (docs/OPERATIONS.md, 1.2)") from exc
    except (GoogleAuthTransportError, OSError) as exc:  # requests' connection errors are OSErrors
        raise WarehouseError(f"{label}: BigQuery could not be reached ({type(exc).__name__}); check the network "
                             "and try again") from exc


def location_mismatch(dataset: str, found: str | None, configured: str) -> tuple[str, str] | None:
    """(problem, fix) when the dataset lives in another location than BQ_LOCATION: BigQuery runs every job in
    BQ_LOCATION and answers "not found in location" there, while table look-ups still work. None when they
    match (locations compare without case: `US` and `us`) or the location is unknown."""
    if not found or found.lower() == configured.lower():
        return None
    return (f"the dataset {dataset} is in location {found} but BQ_LOCATION is {configured}: BigQuery would look "
            f"for it in {configured}",
            f"set BQ_LOCATION={found} (repository variable, environment or .env); a dataset's location cannot "
            "be changed")


def _scalar(name: str | None, type_: str, value: Any) -> bigquery.ScalarQueryParameter:
    return bigquery.ScalarQueryParameter(name, type_, value)


def to_query_parameter(name: str, value: Param) -> Any:
    """Our parameter types -> the official client's parameter objects."""
    if isinstance(value, Rows):
        structs = [
            bigquery.StructQueryParameter(None, *[_scalar(f, t, row.get(f)) for f, t in value.fields])
            for row in value.rows
        ]
        return bigquery.ArrayQueryParameter(name, "STRUCT", structs)
    if isinstance(value, StringArray):
        return bigquery.ArrayQueryParameter(name, "STRING", list(value.values))
    if isinstance(value, Typed):
        return _scalar(name, value.type, value.value)
    return _scalar(name, infer_type(value), value)


def _json_value(value: Any) -> Any:
    """A parameter value as JSON for a load job."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _label_value(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


class BigQueryWarehouse:
    """Warehouse on a BigQuery dataset."""

    engine = "bigquery"

    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        location: str = "US",
        source_table: str = "source_leads",
        credentials_json: str = "",
        maximum_bytes_billed: int | None = None,
        client: bigquery.Client | None = None,
        labels: Mapping[str, str] | None = None,
        max_attempts: int = 6,
        stage_threshold: int = 2000,
    ) -> None:
        self.project = project
        self.dataset = check_identifier(dataset)
        self.location = location
        parts = check_identifier(source_table).split(".")
        if len(parts) == 1:
            parts = [project, dataset, parts[0]]
        elif len(parts) == 2:
            parts = [project, *parts]
        self.source_table = ".".join(parts)
        self.maximum_bytes_billed = maximum_bytes_billed
        self.labels = {"app": "coldsync", **{k: _label_value(v) for k, v in (labels or {}).items()}}
        if client is None:
            credentials = credentials_from_setting(credentials_json)
            try:
                client = bigquery.Client(project=project, credentials=credentials, location=location)
            except DefaultCredentialsError as exc:  # no key given and no Application Default Credentials
                raise WarehouseConfigError(
                    "BQ_PROJECT is set but no Google credentials were found: BIGQUERY_CREDENTIALS_JSON and "
                    "GOOGLE_APPLICATION_CREDENTIALS are empty and there are no Application Default Credentials",
                    NO_CREDENTIALS_FIX) from exc
        self.client = client
        self.stats = StatementStats()
        self.load_jobs = 0
        self.stage_threshold = stage_threshold
        self._max_attempts = max_attempts

    def describe(self) -> str:
        return f"BigQuery warehouse {self.project}.{self.dataset} ({self.location})"

    def render(self, sql: str) -> str:
        return sql.replace("{ds}", f"{self.project}.{self.dataset}").replace("{source}", self.source_table)

    def _job_config(self, params: Mapping[str, Param] | None, label: str) -> bigquery.QueryJobConfig:
        config = bigquery.QueryJobConfig(
            query_parameters=[to_query_parameter(k, v) for k, v in (params or {}).items()],
            labels={**self.labels, "statement": _label_value(label)},
            use_legacy_sql=False,
        )
        if self.maximum_bytes_billed:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        return config

    def _stage(self, rows: Rows, label: str) -> str:
        """Load a big Rows parameter into a staging table (a load job: no request-size limit, no
        streaming buffer) and return its reference; the statement then reads the table instead."""
        table_id = f"{self.project}.{self.dataset}._stage_{uuid.uuid4().hex[:16]}"
        names = [name for name, _ in rows.fields]
        config = bigquery.LoadJobConfig(
            schema=[bigquery.SchemaField(name, type_) for name, type_ in rows.fields],
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            labels={**self.labels, "statement": _label_value(label + ".stage")},
        )
        payload = [{name: _json_value(row.get(name)) for name in names} for row in rows.rows]
        self.load_jobs += 1  # load jobs are not query statements; counted apart
        with google_errors(f"{label}: staging load", self.dataset):
            self.client.load_table_from_json(payload, table_id, job_config=config, location=self.location).result()
        return table_id

    def _run(self, sql: str, params: Mapping[str, Param] | None, label: str) -> bigquery.QueryJob:
        rendered = self.render(sql)
        staged: list[str] = []
        params = dict(params or {})
        for name, value in list(params.items()):
            if isinstance(value, Rows) and len(value.rows) > self.stage_threshold and f"UNNEST(@{name})" in rendered:
                table_id = self._stage(value, label)
                staged.append(table_id)
                rendered = rendered.replace(f"UNNEST(@{name})", f"`{table_id}`")
                del params[name]
        try:
            return self._run_rendered(rendered, params, label)
        finally:
            for table_id in staged:
                with google_errors(f"{label}: drop staging table", self.dataset):
                    self.client.delete_table(table_id, not_found_ok=True)

    def _run_rendered(self, rendered: str, params: Mapping[str, Param], label: str) -> bigquery.QueryJob:
        self.stats.by_label[label] += 1
        if rendered.lstrip().upper().startswith(_WRITE_PREFIXES):
            self.stats.writes += 1

        @retry(
            retry=retry_if_exception(is_concurrent_update_error),
            wait=wait_random_exponential(multiplier=0.5, max=20),
            stop=stop_after_attempt(self._max_attempts),
            reraise=True,
        )
        def attempt() -> bigquery.QueryJob:
            job = self.client.query(rendered, job_config=self._job_config(params, label), location=self.location)
            job.result()
            return job

        with google_errors(label, self.dataset):
            job = attempt()
        return job

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        job = self._run(sql, params, label)
        return [dict(row.items()) for row in job.result()]

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        job = self._run(sql, params, label)
        return int(job.num_dml_affected_rows or 0)

    def table_signal(self) -> str | None:
        """SOURCE_TABLE's change signal from its metadata (tables.get: no query, nothing billed): its row
        count and last-modified time, which BigQuery moves on every load, DML statement or streaming insert.
        None for a view (its metadata changes with its definition, not with the rows it reads) or when the
        metadata says neither. Raises WarehouseError when the table cannot be read."""
        with google_errors("source.signal", self.dataset):
            table = self.client.get_table(self.source_table)
        self.stats.by_label["source.signal"] += 1
        if getattr(table, "table_type", "TABLE") not in ("TABLE", None) or table.modified is None:
            return None
        if getattr(table, "streaming_buffer", None) is not None:
            return None  # rows still in the streaming buffer are in neither numRows nor (surely) the modified time
        return f"rows {table.num_rows}, modified {table.modified.isoformat()}"

    def _ref(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def ensure_dataset(self) -> bool:
        with google_errors("setup.dataset", self.dataset):
            try:
                self.client.get_dataset(f"{self.project}.{self.dataset}")
                return False
            except gexc.NotFound:
                pass
            dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
            dataset.location = self.location
            self.stats.by_label["setup.dataset"] += 1
            self.stats.writes += 1
            self.client.create_dataset(dataset, exists_ok=True)
            return True

    def check_location(self) -> None:
        """Raise WarehouseConfigError when the dataset exists in another location than BQ_LOCATION (a missing
        dataset is fine: setup.py creates it in BQ_LOCATION). The first call to Google, so credentials Google
        refuses and an unreachable service show here, before anything else (google_errors)."""
        with google_errors("connect.dataset", self.dataset):
            try:
                found = self.client.get_dataset(f"{self.project}.{self.dataset}", retry=CONNECT_RETRY)
            except gexc.NotFound:
                return
        mismatch = location_mismatch(f"{self.project}.{self.dataset}", found.location, self.location)
        if mismatch:
            raise WarehouseConfigError(*mismatch)

    def existing_columns(self, table: str) -> dict[str, str] | None:
        with google_errors("existing_columns", self.dataset):
            try:
                found = self.client.get_table(self._ref(table))
            except gexc.NotFound:
                return None
        return {field.name: field.field_type for field in found.schema}

    @staticmethod
    def _schema(spec: TableSpec) -> list[bigquery.SchemaField]:
        return [
            bigquery.SchemaField(c.name, c.type, mode="REQUIRED" if c.required else "NULLABLE",
                                 description=c.description)
            for c in spec.columns
        ]

    def table_ddl(self, spec: TableSpec) -> str:
        cols = ",\n  ".join(f"{c.name} {c.type}{' NOT NULL' if c.required else ''}" for c in spec.columns)
        ddl = f"CREATE TABLE IF NOT EXISTS `{self._ref(spec.name)}` (\n  {cols}\n)"
        if spec.partition_by:
            ddl += f"\nPARTITION BY DATE({spec.partition_by})"
        if spec.cluster_by:
            ddl += f"\nCLUSTER BY {', '.join(spec.cluster_by)}"
        return ddl

    def create_table(self, spec: TableSpec) -> None:
        table = bigquery.Table(self._ref(spec.name), schema=self._schema(spec))
        table.description = spec.description
        if spec.partition_by:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=spec.partition_by
            )
        if spec.cluster_by:
            table.clustering_fields = list(spec.cluster_by)
        self.stats.by_label["setup.create_table"] += 1
        self.stats.writes += 1
        with google_errors("setup.create_table", self.dataset):
            self.client.create_table(table, exists_ok=True)

    def add_columns(self, spec: TableSpec, names: Sequence[str]) -> None:
        wanted = {f.name: f for f in self._schema(spec)}
        for name in names:
            # BigQuery only adds NULLABLE columns to an existing table; DDL changes storage everywhere.
            self._run(f"ALTER TABLE `{{ds}}.{spec.name}` ADD COLUMN IF NOT EXISTS {name} {wanted[name].field_type}",
                      None, "setup.add_column")
        with google_errors("setup.add_column", self.dataset):
            table = self.client.get_table(self._ref(spec.name))
            missing = [n for n in names if n not in {f.name for f in table.schema}]
            if missing:  # some emulators change storage but not the catalog: bring the catalog along
                table.schema = [*table.schema, *(bigquery.SchemaField(n, wanted[n].field_type, mode="NULLABLE",
                                                                      description=wanted[n].description)
                                                 for n in missing)]
                self.client.update_table(table, ["schema"])

    def append_rows(self, spec: TableSpec, rows: Sequence[Mapping[str, Any]], *, key: str, label: str) -> int:
        """Warehouse.append_rows by streaming (tabledata.insertAll through Client.insert_rows_json), each row's
        `key` as its insertId. Streaming, not the Storage Write API: one small HTTPS call per delivery with the
        client the product already has (no gRPC stack, no stream to open and finalize), and the row is readable by
        queries at once, which is what suppression needs; the table is never updated or deleted from by the sync,
        so the streaming buffer's refusal of DML never applies. Raises WarehouseError listing insertErrors."""
        if not rows:
            return 0
        names = spec.column_names()
        payload = [{name: _json_value(row.get(name)) for name in names} for row in rows]
        self.stats.by_label[label] += 1
        with google_errors(label, self.dataset):
            errors = self.client.insert_rows_json(self._ref(spec.name), payload,
                                                  row_ids=[str(row[key]) for row in rows])
        if errors:
            raise WarehouseError(f"{label}: BigQuery refused {len(errors)} of {len(rows)} rows: {errors[:3]}")
        return len(rows)

    def close(self) -> None:
        self.client.close()
