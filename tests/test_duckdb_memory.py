"""DuckDB's memory limit (DUCKDB_MEMORY_LIMIT, `auto` by default: scaled with the warehouse file) and where it
spills beyond it (DUCKDB_TEMP_DIRECTORY, by default beside the file under data/, git-ignored)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from coldsync.instantly.simulator import InstantlySimulator
from coldsync.settings import SettingsError, read_sources
from coldsync.validate import run_checks
from coldsync.warehouse import connect
from coldsync.warehouse.duckdb import DuckDBWarehouse, MiB, machine_memory, resolve_memory_limit, size_bytes
from tests.conftest import make_settings

GiB = 2**30
REPO = Path(__file__).resolve().parent.parent
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"


@pytest.mark.parametrize(("file_bytes", "machine", "expected"), [
    (0, 16 * GiB, "96MiB"),  # a new file: the floor
    (57 * MiB, 16 * GiB, "96MiB"),  # the 300,000-row benchmark warehouse (57 MiB): the floor
    (100 * MiB, 16 * GiB, "100MiB"),  # between floor and ceiling: its size
    (100 * MiB + 1, 16 * GiB, "101MiB"),  # rounded up to a whole MiB
    (595 * MiB, 16 * GiB, "112MiB"),  # the 3M-row one (595 MiB): the ceiling that keeps the peak under 300 MB
    (2 * GiB, 800 * MiB, "100MiB"),  # 1/8 of an 800 MiB machine is 100 MiB
    (2 * GiB, 512 * MiB, "96MiB"),  # 1/8 would be 64 MiB: never below the floor
    (105 * MiB, None, "105MiB"),  # machine memory unknown: the ceiling alone
])
def test_auto_scales_with_the_warehouse_file_within_floor_and_ceiling(file_bytes: int, machine: int | None,
                                                                      expected: str) -> None:
    """`auto` is the file's size in whole MiB, at least 96 MiB, at most 112 MiB and 1/8 of the machine."""
    limit = resolve_memory_limit("auto", file_bytes, machine)
    assert limit.value == expected
    assert limit.origin.startswith("auto: the ")


def test_an_explicit_size_is_used_as_given_and_a_bad_one_names_the_setting() -> None:
    """An explicit size passes through (DuckDB reads MB as 1000^2); anything else names DUCKDB_MEMORY_LIMIT."""
    limit = resolve_memory_limit("512MB", 2 * GiB, 16 * GiB)
    assert (limit.value, limit.origin) == ("512MB", "DUCKDB_MEMORY_LIMIT")
    assert size_bytes("512MB") == 512_000_000 and size_bytes("1.5GiB") == 3 * 2**29
    with pytest.raises(ValueError, match="DUCKDB_MEMORY_LIMIT='lots' is not auto or a size"):
        resolve_memory_limit("lots", 0, None)


def test_the_setting_defaults_to_auto_and_rejects_a_bad_value_with_the_fix(tmp_path: Path) -> None:
    """DUCKDB_MEMORY_LIMIT is `auto` unless set; `lots` is refused with the field and what to set it to."""
    assert make_settings(tmp_path).duckdb_memory_limit == "auto"
    assert make_settings(tmp_path, duckdb_memory_limit="1GB").duckdb_memory_limit == "1GB"
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, duckdb_memory_limit="lots")
    assert "DUCKDB_MEMORY_LIMIT='lots'" in str(caught.value)
    assert "set DUCKDB_MEMORY_LIMIT to auto or a size such as 128MB or 1GB" in str(caught.value)


@pytest.mark.parametrize("tiny", ["0MB", "1KB", "0.5KB", "20MB", "63MiB"])
def test_a_limit_too_small_to_open_a_warehouse_is_refused_before_anything_runs(tmp_path: Path, tiny: str) -> None:
    """Sizes under 64 MiB (DuckDB crashed at ATTACH with 0MB and 1KB, failed the state read with 20MB) are a
    settings error naming DUCKDB_MEMORY_LIMIT and the fix, not a traceback later."""
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, duckdb_memory_limit=tiny)
    assert f"DUCKDB_MEMORY_LIMIT={tiny!r}" in str(caught.value) and "is below 64 MiB" in str(caught.value)
    assert "set DUCKDB_MEMORY_LIMIT to auto (the default) or a size of at least 64MiB" in str(caught.value)


def test_the_words_and_units_are_taken_in_any_case(tmp_path: Path) -> None:
    """`AUTO`, `128mb` and `1gib` mean what `auto`, `128MB` and `1GiB` do, in the setting and in the warehouse."""
    assert resolve_memory_limit("AUTO", 0, None).value == "96MiB"
    assert size_bytes("128mb") == 128_000_000 and size_bytes("1gib") == 2**30
    assert make_settings(tmp_path, duckdb_memory_limit="128mb").duckdb_memory_limit == "128mb"
    assert make_settings(tmp_path, duckdb_memory_limit="64MiB").duckdb_memory_limit == "64MiB"


def _duck_setting(warehouse: DuckDBWarehouse, name: str) -> str:
    row = warehouse._con.execute(f"SELECT current_setting('{name}')").fetchone()
    assert row is not None
    return str(row[0])


def test_duckdb_gets_the_resolved_limit_and_the_description_says_where_it_came_from(tmp_path: Path) -> None:
    """A new file opens with 96 MiB (auto's floor) and a 200 MiB file with 112 MiB; an explicit 256MB is
    DuckDB's 244.1 MiB; resources() (what validate_environment.py prints beside the warehouse) names the value and
    its origin."""
    settings = make_settings(tmp_path)
    warehouse = connect(settings)
    assert isinstance(warehouse, DuckDBWarehouse)
    try:
        assert _duck_setting(warehouse, "memory_limit") == "96.0 MiB"
        assert "memory limit 96MiB (auto: the 0 MiB warehouse file x1, kept within 96-" in warehouse.resources()
        assert f"spills to {settings.duckdb_file()}.tmp" in warehouse.resources()
    finally:
        warehouse.close()
    with open(settings.duckdb_file(), "ab") as grown:  # pad the file past the ceiling (DuckDB ignores the tail)
        grown.truncate(200 * MiB)
    big = connect(settings)
    assert isinstance(big, DuckDBWarehouse)
    try:  # 112 MiB, or 1/8 of this machine when that is smaller (the pure cases above pin the numbers)
        expected = resolve_memory_limit("auto", 200 * MiB, machine_memory())
        assert big.memory_limit == expected
        assert expected.value == "112MiB" or "of this machine's" in expected.origin
        assert _duck_setting(big, "memory_limit") == f"{expected.value[:-3]}.0 MiB"
    finally:
        big.close()
    (tmp_path / "x").mkdir()
    explicit = connect(make_settings(tmp_path / "x", duckdb_memory_limit="256MB"))
    assert isinstance(explicit, DuckDBWarehouse)
    try:
        assert _duck_setting(explicit, "memory_limit") == "244.1 MiB"
        assert "memory limit 256MB (DUCKDB_MEMORY_LIMIT)" in explicit.resources()
    finally:
        explicit.close()


def test_validate_environment_prints_the_memory_limit_in_effect(tmp_path: Path) -> None:
    """The `warehouse` check's line carries the limit and where it came from (here: auto, a new file)."""
    sim = InstantlySimulator(api_key="sim-key", seed=1)
    sim.start()
    try:
        environ = {"INSTANTLY_API_KEY": "sim-key", "INSTANTLY_BASE_URL": sim.base_url, "SMB_CAMPAIGN_ID": SMB,
                   "MIDSIZE_CAMPAIGN_ID": MIDSIZE, "DUCKDB_PATH": str(tmp_path / "wh.duckdb"), "ROUTES_FILE": "none"}
        sources = read_sources(environ=environ, dotenv_path=tmp_path / "none.env", secrets_dir=tmp_path / "none")
        result = run_checks(sources, production=False)
    finally:
        sim.stop()
    line = next(c for c in result.checks if c.name == "warehouse")
    assert line.status == "pass"
    assert "memory limit 96MiB (auto: the 0 MiB warehouse file x1" in line.detail


@contextmanager
def _files_seen(*folders: Path) -> Iterator[set[Path]]:
    """Every file that exists under these folders at any moment while the block runs (polled every 10 ms)."""
    seen: set[Path] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for folder in folders:
                seen.update(p for p in folder.rglob("*") if p.is_file())
            stop.wait(0.01)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()
        for folder in folders:
            seen.update(p for p in folder.rglob("*") if p.is_file())


def _spill(warehouse: DuckDBWarehouse) -> list[str]:
    """~40 MB of rows held in a temporary table under a 16 MB limit: DuckDB must write them out. Returns
    DuckDB's own list of its temporary files, read while they exist."""
    con = warehouse._con
    con.execute("CREATE TEMP TABLE spilled AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(1000000)")
    assert con.execute("SELECT count(*) FROM spilled").fetchone() == (1_000_000,)
    return [str(row[0]) for row in con.execute("SELECT path FROM duckdb_temporary_files()").fetchall()]


@pytest.mark.parametrize("configured", [False, True])
def test_a_spill_lands_only_in_the_temp_directory_never_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool) -> None:
    """Under a 16 MB limit (set on the connection: the setting takes at least 64 MiB) a 1M-row temp table spills:
    its files are under `<DUCKDB_PATH>.tmp/` (or DUCKDB_TEMP_DIRECTORY when set), and nothing appears in the
    working directory (DuckDB's own default)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    data = tmp_path / "data"
    chosen = tmp_path / "data" / "spill-here"
    env = {"duckdb_path": str(data / "coldsync.duckdb"), "duckdb_memory_limit": "64MiB",
           **({"duckdb_temp_directory": str(chosen)} if configured else {})}
    settings = make_settings(tmp_path, **env)
    expected = chosen if configured else data / "coldsync.duckdb.tmp"
    warehouse = connect(settings)
    assert isinstance(warehouse, DuckDBWarehouse)
    warehouse._con.execute("SET memory_limit = '16MB'")
    try:
        with _files_seen(cwd, expected) as seen:
            listed = _spill(warehouse)
    finally:
        warehouse.close()
    assert listed and all(Path(p).parent == expected for p in listed), listed
    assert {p for p in seen if p.parent == expected and p.name.startswith("duckdb_temp")}, seen
    assert not [p for p in seen if cwd in p.parents], "a spill file landed in the working directory"
    assert oct(expected.stat().st_mode & 0o777) == "0o700"  # spill files hold personal data


def test_a_relative_temp_directory_is_taken_from_the_repository_root_not_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DUCKDB_TEMP_DIRECTORY=data/spill-rel, from a command started in another folder: the spill folder is
    <repository>/data/spill-rel (as DUCKDB_PATH is read), never <working directory>/data/spill-rel."""
    from coldsync.settings import REPO_ROOT

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = make_settings(tmp_path, duckdb_path=str(tmp_path / "data" / "coldsync.duckdb"),
                             duckdb_temp_directory="data/spill-rel-test")
    assert settings.duckdb_spill_directory() == REPO_ROOT / "data" / "spill-rel-test"
    warehouse = connect(settings)
    try:
        assert isinstance(warehouse, DuckDBWarehouse)
        assert warehouse.spill_directory == REPO_ROOT / "data" / "spill-rel-test"
    finally:
        warehouse.close()
        shutil.rmtree(REPO_ROOT / "data" / "spill-rel-test", ignore_errors=True)
    assert not (cwd / "data").exists()


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
def test_the_default_temp_directory_and_data_are_git_ignored() -> None:
    """Spill files under data/ (the default `data/coldsync.duckdb.tmp/`, or any folder there) and a stray
    `.tmp/` (DuckDB's own default, from an older version) are ignored by git."""
    paths = ["data/coldsync.duckdb.tmp/duckdb_temp_1_0_storage_DEFAULT-0.tmp", "data/spill/duckdb_temp_x.tmp",
             ".tmp/duckdb_temp_storage-0.tmp", "other/place.duckdb.tmp/duckdb_temp_y.tmp"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True,
                          text=True, check=False, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
    assert done.stdout.split() == paths
