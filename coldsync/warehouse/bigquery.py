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
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
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


def credentials_from_setting(value: str) -> Any:
    """Service-account credentials from a file path or the JSON text itself; None means ADC."""
    if not value:
        return None
    from google.oauth2 import service_account

    text = value.strip()
    if text.startswith("{"):
        try:
            info = json.loads(text)
        except ValueError as exc:
            raise WarehouseError(
                "BIGQUERY_CREDENTIALS_JSON looks like JSON but does not parse; paste the whole key file "
                "or give its path"
            ) from exc
        return service_account.Credentials.from_service_account_info(info)
    path = Path(text)
    if not path.is_file():
        raise WarehouseError(
            "BIGQUERY_CREDENTIALS_JSON is neither JSON nor a readable file path; fix the path, or unset it "
            "to use Application Default Credentials"
        )
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("type") == "external_account":  # Workload Identity Federation config file
        import google.auth

        creds, _ = google.auth.load_credentials_from_file(str(path))
        return creds
    return service_account.Credentials.from_service_account_info(info)


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
        self.client = client or bigquery.Client(
            project=project, credentials=credentials_from_setting(credentials_json), location=location
        )
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
        try:
            self.client.load_table_from_json(payload, table_id, job_config=config, location=self.location).result()
        except gexc.GoogleAPICallError as exc:
            raise WarehouseError(f"{label}: staging load failed: {getattr(exc, 'message', exc)}") from exc
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

        try:
            return attempt()
        except gexc.GoogleAPICallError as exc:
            raise WarehouseError(f"{label}: {type(exc).__name__}: {getattr(exc, 'message', exc)}") from exc

    def query(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> list[dict[str, Any]]:
        job = self._run(sql, params, label)
        return [dict(row.items()) for row in job.result()]

    def execute(self, sql: str, params: Mapping[str, Param] | None = None, *, label: str) -> int:
        job = self._run(sql, params, label)
        return int(job.num_dml_affected_rows or 0)

    def _ref(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def ensure_dataset(self) -> bool:
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

    def existing_columns(self, table: str) -> dict[str, str] | None:
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
        self.client.create_table(table, exists_ok=True)

    def add_columns(self, spec: TableSpec, names: Sequence[str]) -> None:
        wanted = {f.name: f for f in self._schema(spec)}
        for name in names:
            # BigQuery only adds NULLABLE columns to an existing table; DDL changes storage everywhere.
            self._run(f"ALTER TABLE `{{ds}}.{spec.name}` ADD COLUMN IF NOT EXISTS {name} {wanted[name].field_type}",
                      None, "setup.add_column")
        table = self.client.get_table(self._ref(spec.name))
        missing = [n for n in names if n not in {f.name for f in table.schema}]
        if missing:  # some emulators change storage but not the catalog: bring the catalog along
            table.schema = [*table.schema, *(bigquery.SchemaField(n, wanted[n].field_type, mode="NULLABLE",
                                                                  description=wanted[n].description)
                                             for n in missing)]
            self.client.update_table(table, ["schema"])

    def close(self) -> None:
        self.client.close()
