"""Shared fixtures and helpers for the Instantly client, simulator and contract tests.

Import the fixtures explicitly in a test module (they are registered under the name given in
`name=`): `from tests.instantly_fixtures import client_fixture, sim_fixture  # noqa: F401`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator

#: Distinctive so a leak anywhere (error text, repr, log, output) is easy to find.
KEY = "sk-live-ZQX9-coldsync-never-print-me-7731"
RECORDED_DIR = Path(__file__).parent / "data" / "instantly_recorded"


class FakeClock:
    """Monotonic clock for the client whose sleep advances time instantly (and records the waits)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


def make_sim(**overrides: Any) -> InstantlySimulator:
    """A simulator with the test key and rate limits too high to matter unless a test sets them."""
    options: dict[str, Any] = {"api_key": KEY, "seed": 7, "max_per_second": 100_000, "max_per_minute": 1_000_000}
    options.update(overrides)
    return InstantlySimulator(**options)


def make_client(sim: InstantlySimulator, clock: FakeClock | None = None, **overrides: Any) -> InstantlyClient:
    """A client for `sim` with tiny backoff; with `clock`, retries and pacing never really sleep."""
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": sim.base_url,
        "connect_timeout": 2,
        "read_timeout": 2,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "jitter_seed": 0,
    }
    if clock is not None:
        options.update(sleep=clock.sleep, clock=clock)
    options.update(overrides)
    return InstantlyClient(**options)


def people(count: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    """`count` distinct leads person{start}@example.com ... with a few name fields."""
    return [
        {
            "email": f"person{i}@example.com",
            "first_name": "Alex",
            "last_name": "Example",
            "company_name": "Example Co",
            **extra,
        }
        for i in range(start, start + count)
    ]


def recorded(name: str) -> list[dict[str, Any]]:
    """A recorded real exchange (tests/data/instantly_recorded/<name>.json)."""
    loaded: list[dict[str, Any]] = json.loads((RECORDED_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[InstantlySimulator]:
    """A running simulator with the test key (stopped after the test)."""
    with make_sim() as simulator:
        yield simulator


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    """A fake clock for the client's sleep and pacing."""
    return FakeClock()


@pytest.fixture(name="client")
def client_fixture(sim: InstantlySimulator, clock: FakeClock) -> Iterator[InstantlyClient]:
    """A client bound to `sim`, on the fake clock."""
    with make_client(sim, clock) as instantly:
        yield instantly


@pytest.fixture(name="campaign_id")
def campaign_id_fixture(sim: InstantlySimulator) -> str:
    """An active campaign in `sim`."""
    return sim.create_campaign("SMB")
