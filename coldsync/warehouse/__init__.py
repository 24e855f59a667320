"""Warehouse access: one interface (`Warehouse`), two engines (BigQuery, DuckDB)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from coldsync.warehouse.base import Param, Rows, StringArray, Typed, Warehouse, WarehouseError

if TYPE_CHECKING:
    from coldsync.settings import Settings

__all__ = ["Param", "Rows", "StringArray", "Typed", "Warehouse", "WarehouseError", "connect"]

log = logging.getLogger("coldsync.warehouse")


def connect(settings: Settings, *, labels: dict[str, str] | None = None) -> Warehouse:
    """The warehouse the settings name: BigQuery when BQ_PROJECT is set, else the DuckDB file."""
    warehouse: Warehouse
    if settings.uses_bigquery:
        from coldsync.warehouse.bigquery import BigQueryWarehouse

        warehouse = BigQueryWarehouse(
            settings.bq_project,
            settings.bq_dataset,
            location=settings.bq_location,
            source_table=settings.source_table,
            credentials_json=settings.bigquery_credentials_json.reveal(),
            maximum_bytes_billed=settings.bq_maximum_bytes_billed,
            labels=labels,
        )
    else:
        from coldsync.warehouse.duckdb import DuckDBWarehouse

        warehouse = DuckDBWarehouse(settings.duckdb_file(), settings.bq_dataset, settings.source_table,
                                    memory_limit=settings.duckdb_memory_limit, threads=settings.duckdb_threads)
    log.info("Using %s", warehouse.describe())
    return warehouse
