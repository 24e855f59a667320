"""Shared fixtures: settings without the developer's environment, and a warehouse per engine."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.redact import forget_secrets
from coldsync.settings import SPECS, Settings, load_settings
from coldsync.warehouse.base import Warehouse

ENGINES = ["duckdb", "bigquery"]


# The BigQuery lane of an engine-parametrized test costs the emulator's schema build (~2.5 s) on top of the test:
# by default it runs for every test of the files below (their point is the SQL each engine runs) and for a
# quarter of the others, a fixed quarter (chosen by a hash of the test's id, so every run runs the same ones);
# BQ_FULL=1 runs every one (README: Development). A single test of another file whose SQL must be proven on both
# engines is marked `@pytest.mark.bq_always`: its BigQuery lane runs by default too.
BQ_ALWAYS = frozenset({
    "test_warehouse_contract.py", "test_bq_emulator_capabilities.py", "test_candidates_table.py", "test_ready_read.py",
    "test_analytics_views.py", "test_suppression.py", "test_events_table.py",
    "test_sync_webhook_events.py", "test_stored_keys.py",
})


def bigquery_sampled_out(nodeid: str, full: bool = False, always: bool = False) -> bool:
    """Whether the BigQuery lane of this engine-parametrized test (`...[bigquery...]`) is left to BQ_FULL=1;
    `always`: the test is marked `bq_always`."""
    if full or always or "[bigquery" not in nodeid:
        return False
    filename = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return filename not in BQ_ALWAYS and zlib.crc32(nodeid.encode()) % 4 != 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full = bool(os.environ.get("BQ_FULL"))
    skip = pytest.mark.skip(reason="BigQuery lane sampled: this test runs there with BQ_FULL=1 (its DuckDB lane ran)")
    for item in items:
        if bigquery_sampled_out(item.nodeid, full, always=item.get_closest_marker("bq_always") is not None):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_umask() -> Iterator[None]:
    """A command run in-process (sync_once.main, setup, validate) makes the process private for good (umask 077:
    coldsync.files.private_process, by design for a command); the next test starts from the umask it found."""
    from coldsync import files

    before = os.umask(0o022)
    os.umask(before)
    saved = files._umask_before, files._umask_holders
    yield
    os.umask(before)
    files._umask_before, files._umask_holders = saved


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    """A key one test registers (through bootstrap or configure_logging) is not redacted from the next test's text."""
    yield
    forget_secrets()


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    """A directory standing in for .env / config/secrets, so tests never read the developer's files."""
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the developer's environment; the DuckDB warehouse in tmp_path; no routes file."""
    for spec in SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROUTES_FILE", "none")
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "a.duckdb"))
    return tmp_path


def make_settings(tmp_path: Path, **env: str) -> Settings:
    """Settings from defaults plus the given environment only (no .env, no secrets files, no routes file)."""
    folder = tmp_path / "no-secrets"
    folder.mkdir(exist_ok=True)
    environ = {"DUCKDB_PATH": str(tmp_path / "wh.duckdb"), "ROUTES_FILE": "none",
               **{k.upper(): v for k, v in env.items()}}
    return load_settings(environ=environ, dotenv_path=folder / ".env", secrets_dir=folder)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def bq_emulator() -> Iterator[Any]:
    """One BigQuery emulator process for the session (tests use their own datasets)."""
    from tests.bq_emulator import emulator_available, start_emulator

    available, why = emulator_available()
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"BigQuery emulator lane is required in CI but unavailable: {why}")
        pytest.skip(f"BigQuery emulator not installed: {why} (run ./scripts/test to install it)")
    handle = start_emulator()
    try:
        yield handle
    finally:
        handle.stop()


_DATASETS_OPENED = pytest.StashKey[int]()


def _fresh_dataset(client: Any, request: pytest.FixtureRequest) -> str:
    """An empty dataset name for this fixture's scope: `t_<n>_0000` for the n-th one a test opened, `m_<n>_0000`
    for a module- or session-wide one (they live beside the tests' own); any dataset of that name is dropped first.

    Each test (one at a time per worker, each worker with its own emulator) reuses the same names,
    so the statements it sends are the same text as the last test's and the emulator's translation
    cache (tests/bqemu_site) answers them. Dropping the dataset first leaves nothing of the last test.
    """
    opened = request.node.stash.get(_DATASETS_OPENED, 0)
    request.node.stash[_DATASETS_OPENED] = opened + 1
    dataset = f"{'t' if request.scope == 'function' else 'm'}_{opened}_0000"
    client.delete_dataset(f"{client.project}.{dataset}", delete_contents=True, not_found_ok=True)
    return dataset


def open_warehouse(engine: str, tmp_path: Path, request: pytest.FixtureRequest,
                   source_table: str = "source_leads") -> Warehouse:
    if engine == "duckdb":
        from coldsync.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", source_table)
    from coldsync.warehouse.bigquery import BigQueryWarehouse

    emulator = request.getfixturevalue("bq_emulator")
    client = emulator.client()
    dataset = _fresh_dataset(client, request)
    return BigQueryWarehouse(emulator.project, dataset, source_table=source_table, client=client,
                             maximum_bytes_billed=10 * 1024**3)


@pytest.fixture(params=ENGINES, ids=ENGINES)
def raw_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """An empty warehouse (no schema yet) on each engine."""
    if request.param == "bigquery":
        request.applymarker(pytest.mark.bigquery)
    warehouse = open_warehouse(request.param, tmp_path, request)
    try:
        yield warehouse
    finally:
        warehouse.close()
