"""Warehouses and settings for the proof: a DuckDB file per case, or a dataset on the BigQuery emulator."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from coldsync.settings import Settings, load_settings
from coldsync.warehouse.base import Warehouse
from proof.harness import API_KEY, MIDSIZE, SMB


def proof_settings(workdir: Path, **env: Any) -> Settings:
    """Settings from defaults plus `env` only (no .env, no secrets files, no developer environment)."""
    folder = workdir / "no-secrets"
    folder.mkdir(parents=True, exist_ok=True)
    # One add and one drain listing in flight: "kill at operation k" must name the same call in every run (the
    # counts of record repeat exactly); concurrent adds and listings under invariants are
    # tests/test_concurrent_adds.py's and tests/test_drain_overlap.py's.
    environ = {"DUCKDB_PATH": str(workdir / "wh.duckdb"), "INSTANTLY_API_KEY": API_KEY, "SMB_CAMPAIGN_ID": SMB,
               "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "INSTANTLY_ADD_CONCURRENCY": "1", "INSTANTLY_LIST_CONCURRENCY": "1",
               **{k.upper(): str(v) for k, v in env.items()}}
    return load_settings(environ=environ, dotenv_path=folder / ".env", secrets_dir=folder)


class Engines:
    """Opens warehouses on DuckDB, or on one BigQuery emulator started on first use."""

    def __init__(self, workdir: Path, emulator: Any = None) -> None:
        self.workdir = workdir
        self._emulator: Any = emulator  # a running emulator to share (tests), else started on first use
        self._owns_emulator = emulator is None

    def bigquery_available(self) -> tuple[bool, str]:
        from tests.bq_emulator import emulator_available

        return emulator_available()

    def open(self, engine: str, name: str, source_table: str = "source_leads") -> Warehouse:
        if engine == "duckdb":
            from coldsync.warehouse.duckdb import DuckDBWarehouse

            folder = self.workdir / name
            folder.mkdir(parents=True, exist_ok=True)
            return DuckDBWarehouse(folder / "wh.duckdb", "coldsync", source_table)
        from coldsync.warehouse.bigquery import BigQueryWarehouse

        if self._emulator is None:
            from tests.bq_emulator import start_emulator

            self._emulator = start_emulator()
        dataset = f"p_{uuid.uuid4().hex[:10]}"
        return BigQueryWarehouse(self._emulator.project, dataset, source_table=source_table,
                                 client=self._emulator.client(), maximum_bytes_billed=10 * 1024**3)

    @property
    def emulator(self) -> Any:
        """The running emulator (after a BigQuery warehouse was opened)."""
        return self._emulator

    def close(self) -> None:
        if self._emulator is not None and self._owns_emulator:
            self._emulator.stop()
        self._emulator = None
