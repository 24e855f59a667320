"""Warehouse access: one interface (`Warehouse`), two engines (BigQuery, DuckDB)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from coldsync.warehouse.base import (
    Param,
    Rows,
    StringArray,
    Typed,
    Warehouse,
    WarehouseBusyError,
    WarehouseConfigError,
    WarehouseError,
)

if TYPE_CHECKING:
    from google.cloud import bigquery

    from coldsync.settings import Settings

__all__ = ["Param", "Rows", "StringArray", "Typed", "Warehouse", "WarehouseConfigError", "WarehouseError",
           "connect"]

log = logging.getLogger("coldsync.warehouse")

RECEIVER_WAIT_SECONDS = 3.0
"""How long opening the DuckDB file waits while the local webhook receiver holds it (it holds it for the
milliseconds of a burst of deliveries; a steady stream releases it between bursts)."""


def connect(settings: Settings, *, labels: dict[str, str] | None = None,
            bigquery_client: bigquery.Client | None = None, announce_wait: bool = True) -> Warehouse:
    """The warehouse the settings name: BigQuery when BQ_PROJECT is set, else the DuckDB file.

    On BigQuery the credentials are checked and the dataset's location is compared with BQ_LOCATION before
    it is handed out: WarehouseConfigError (exit 2) names the setting and the fix; WarehouseError when
    Google cannot be reached. `bigquery_client` replaces the one made from the settings (tests). While it waits
    for the local webhook receiver to let the DuckDB file go it leaves a mark beside the file (want_path) that
    the receiver honours; `announce_wait` False (the receiver's own opener) waits without one."""
    warehouse: Warehouse
    if settings.uses_bigquery:
        from coldsync.warehouse.bigquery import BigQueryWarehouse

        bq = BigQueryWarehouse(
            settings.bq_project,
            settings.bq_dataset,
            location=settings.bq_location,
            source_table=settings.source_table,
            credentials_json=settings.bigquery_credentials_json.reveal(),
            maximum_bytes_billed=settings.bq_maximum_bytes_billed,
            labels=labels,
            client=bigquery_client,
        )
        try:
            bq.check_location()
        except WarehouseError:
            bq.close()
            raise
        warehouse = bq
    else:
        from coldsync.warehouse.duckdb import DuckDBWarehouse, may_wait_for_holder, want_path

        deadline = time.monotonic() + RECEIVER_WAIT_SECONDS
        mark: Path | None = None
        try:
            while True:
                try:
                    warehouse = DuckDBWarehouse(settings.duckdb_file(), settings.bq_dataset, settings.source_table,
                                                memory_limit=settings.duckdb_memory_limit,
                                                threads=settings.duckdb_threads,
                                                temp_directory=settings.duckdb_spill_directory())
                    break
                except WarehouseBusyError:
                    # The local webhook receiver holds the file only while deliveries are in flight: wait for it
                    # rather than refuse, and say so (the mark: the receiver then takes no new delivery until the
                    # file is free for us); a holder whose note names a sync or another command (a long hold) is
                    # refused at once, with the note's words.
                    if not may_wait_for_holder(settings.duckdb_file()) or time.monotonic() > deadline:
                        raise
                    if announce_wait:
                        mark = want_path(settings.duckdb_file())
                        with contextlib.suppress(OSError):
                            mark.write_text(f"{os.getpid()}\n", encoding="utf-8")  # written again: kept fresh
                    time.sleep(0.05)
        finally:
            if mark is not None:
                with contextlib.suppress(OSError):
                    mark.unlink()
    resources = getattr(warehouse, "resources", None)
    log.info("Using %s%s", warehouse.describe(), f"; {resources()}" if callable(resources) else "")
    return warehouse
