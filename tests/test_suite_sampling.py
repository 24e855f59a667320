"""The default suite's BigQuery-lane sample (tests/conftest.py): which emulator lanes run without BQ_FULL=1."""

from __future__ import annotations

import zlib

from tests.conftest import BQ_ALWAYS, bigquery_sampled_out


def test_the_sample_never_drops_a_duckdb_lane_an_always_file_or_a_full_run() -> None:
    """DuckDB lanes, the files whose point is the engines' SQL, and every lane under BQ_FULL always run."""
    assert not bigquery_sampled_out("tests/test_sync.py::test_x[duckdb]")
    for name in BQ_ALWAYS:
        assert not bigquery_sampled_out(f"tests/{name}::test_x[bigquery]")
    assert not bigquery_sampled_out("tests/test_sync.py::test_y[bigquery]", full=True)


def test_the_sample_is_a_fixed_quarter_chosen_by_the_id() -> None:
    """Another file's BigQuery lane runs when the CRC-32 of its id is a multiple of 4: the same choice every run."""
    ids = [f"tests/test_sync.py::test_{n}[bigquery]" for n in range(400)]
    dropped = [i for i in ids if bigquery_sampled_out(i)]
    assert dropped == [i for i in ids if zlib.crc32(i.encode()) % 4 != 0]
    assert 260 <= len(dropped) <= 340  # about three quarters left to BQ_FULL=1


def test_a_test_marked_bq_always_keeps_its_bigquery_lane() -> None:
    """A BigQuery lane the CRC-32 sample drops still runs when its test is marked `bq_always`."""
    dropped = next(f"tests/test_sync.py::test_{n}[bigquery]" for n in range(100)
                   if bigquery_sampled_out(f"tests/test_sync.py::test_{n}[bigquery]"))
    assert not bigquery_sampled_out(dropped, always=True)
