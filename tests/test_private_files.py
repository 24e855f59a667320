"""What the product writes to disk is its user's only: the DuckDB file, its WAL and spill directory, the simulator
state and their directory are 0600/0700 whatever the umask; older, too-open files are tightened once; an old pickle
state is never loaded (coldsync.files, #15)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync import files
from coldsync.embedded import embedded_instantly, embedded_settings
from coldsync.files import private_dir, private_process, write_private
from coldsync.settings import Settings, SettingsError
from coldsync.sync import run_sync
from coldsync.warehouse.demo_data import DemoSizes, build_demo_warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build, lead


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The usual umask (0o022: new files 0644, directories 0755), so privacy comes from the product, not from here."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    """Permission bits of everything under `folder`, by path relative to it."""
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.rglob("*"))}


def current_umask() -> int:
    value = os.umask(0)
    os.umask(value)
    return value


def playground(tmp_path: Path) -> Settings:
    """Embedded settings with the warehouse in tmp_path/data (a directory that does not exist yet)."""
    return embedded_settings(make_settings(tmp_path, duckdb_path=str(tmp_path / "data" / "wh.duckdb")))


def small_warehouse(settings: Settings) -> None:
    """A built (not fresh) playground warehouse with three leads, closed."""
    warehouse = DuckDBWarehouse(settings.duckdb_file(), settings.bq_dataset, settings.source_table)
    try:
        build(warehouse, settings, [lead(f"p{i}@corp.example") for i in range(3)], as_of=None)
    finally:
        warehouse.close()


def test_embedded_run_writes_only_private_files(tmp_path: Path) -> None:
    """A demo-shaped embedded run under umask 022: warehouse, WAL, holder note and state 0600, data and spill
    directories 0700, during the run and after; the umask is back to 0o022 once the warehouse is closed."""
    from coldsync import files

    os.umask(0o022)  # as a fresh process starts (conftest's _restore_umask puts back what this worker had)
    files._umask_before, files._umask_holders = 0o022, 0  # no warehouse another test left open holds it
    settings = playground(tmp_path)
    data = tmp_path / "data"
    warehouse = DuckDBWarehouse(settings.duckdb_file(), settings.bq_dataset, settings.source_table)
    try:
        build(warehouse, settings, as_of=None)
        build_demo_warehouse(warehouse, sizes=DemoSizes(leads=3000), as_of=dt.datetime.now(dt.UTC),
                             campaign_ids=(settings.smb_campaign_id, settings.midsize_campaign_id))
        with embedded_instantly(settings, warehouse, save=True) as (client, now):
            result = run_sync(settings, warehouse, client, now=now)
            during = modes(data)
    finally:
        warehouse.close()
    assert result.report.added > 0  # a real run that wrote leads, history and the run log
    assert during == {"wh.duckdb": 0o600, "wh.duckdb.holder.json": 0o600, "wh.duckdb.tmp": 0o700,
                      "wh.duckdb.wal": 0o600}
    assert modes(data) == {"wh.duckdb": 0o600, "wh.duckdb.simulator-state.json": 0o600, "wh.duckdb.tmp": 0o700}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert current_umask() == 0o022


def test_world_readable_warehouse_of_an_older_version_is_tightened_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An existing 0644 warehouse file is made 0600 on open with one warning naming it and both modes; a user's
    own 0755 directory holding it is left as it is."""
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o755)
    path = folder / "old.duckdb"
    DuckDBWarehouse(path, "coldsync").close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="coldsync.files"):
        DuckDBWarehouse(path, "coldsync").close()
        DuckDBWarehouse(path, "coldsync").close()  # once: already private the second time
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert [r.getMessage() for r in caplog.records if r.name == "coldsync.files"] == [
        f"made {path} private: mode 644 -> 600 (it was readable by other users; older versions created it so)"]


def test_product_data_directory_is_tightened_but_other_directories_are_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """private_dir tightens an existing 0755 `data/` of the checkout to 0700, leaves another existing directory
    at 0755, and creates missing directories (each level) 0700."""
    own, other = tmp_path / "data", tmp_path / "home"
    own.mkdir(mode=0o755)
    other.mkdir(mode=0o755)
    monkeypatch.setattr(files, "DATA_DIR", own)
    private_dir(own)
    private_dir(other)
    private_dir(other / "a" / "b")
    assert modes(tmp_path) == {"data": 0o700, "home": 0o755, "home/a": 0o700, "home/a/b": 0o700}


def test_write_private_replaces_an_open_file_with_a_private_one(tmp_path: Path) -> None:
    """write_private over an existing 0644 file leaves the new bytes at mode 0600 and no temporary file."""
    target = tmp_path / "state.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o644)
    write_private(target, b"new")
    assert (target.read_bytes(), modes(tmp_path)) == (b"new", {"state.json": 0o600})


def test_command_umask_is_private_and_outlives_a_warehouse(tmp_path: Path) -> None:
    """private_process (each command's bootstrap) sets umask 0o077, and closing a warehouse does not undo it."""
    private_process()
    assert current_umask() == 0o077
    DuckDBWarehouse(tmp_path / "w.duckdb", "coldsync").close()
    assert current_umask() == 0o077
    (tmp_path / "later.txt").write_text("x", encoding="utf-8")
    assert stat.S_IMODE((tmp_path / "later.txt").stat().st_mode) == 0o600


class _Marker:
    """Unpickled, this creates the file `path` (harmless stand-in for a payload that runs code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_old_pickle_state_is_ignored_with_a_warning_and_never_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A `*.simulator-state.pickle` beside the warehouse is never unpickled (its code does not run): one warning
    says it is ignored and can be deleted, and the workspace is saved as JSON beside it."""
    settings = playground(tmp_path)
    small_warehouse(settings)
    legacy = tmp_path / "data" / "wh.duckdb.simulator-state.pickle"
    marker = tmp_path / "marker"
    legacy.write_bytes(pickle.dumps({"version": 1, "data": _Marker(marker)}))
    warehouse = DuckDBWarehouse(settings.duckdb_file(), settings.bq_dataset, settings.source_table)
    try:
        with caplog.at_level(logging.WARNING, logger="coldsync.embedded"), \
                embedded_instantly(settings, warehouse, save=True):
            pass
    finally:
        warehouse.close()
    assert not marker.exists()
    state_file = tmp_path / "data" / "wh.duckdb.simulator-state.json"
    messages = [r.getMessage() for r in caplog.records if r.name == "coldsync.embedded"]
    assert [m for m in messages if m.startswith("ignoring")] == [
        f"ignoring {legacy}: a simulator state of an older version, a pickle, is never loaded (loading a pickle can "
        f"run code); delete it. The workspace is kept in {state_file} from now on"]
    assert json.loads(state_file.read_text(encoding="utf-8"))["format"] == "coldsync-simulator-state"
    assert legacy.exists()  # the user's to delete


def test_invalid_state_file_is_a_configuration_error_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    """A state file of another version beside a built warehouse: SettingsError (exit 2) with one line naming
    DUCKDB_PATH, the file, what is wrong and the fix; nothing is loaded and the file is left as it was."""
    settings = playground(tmp_path)
    small_warehouse(settings)
    state_file = tmp_path / "data" / "wh.duckdb.simulator-state.json"
    state_file.write_text(json.dumps({"format": "coldsync-simulator-state", "version": 99}), encoding="utf-8")
    warehouse = DuckDBWarehouse(settings.duckdb_file(), settings.bq_dataset, settings.source_table)
    try:
        with pytest.raises(SettingsError) as refused, embedded_instantly(settings, warehouse, save=True):
            pass
    finally:
        warehouse.close()
    assert str(refused.value) == (
        "1 bad setting(s):\n"
        f"  - DUCKDB_PATH='{tmp_path / 'data' / 'wh.duckdb'}' (from environment): the embedded simulator's state file "
        f"{state_file} beside it is of version 99; this version reads version 1; it was not loaded. Fix: delete "
        f"{state_file}: the next run starts a fresh simulated workspace (delete the DuckDB file too to rebuild the "
        "whole playground)")
    assert json.loads(state_file.read_text(encoding="utf-8"))["version"] == 99
