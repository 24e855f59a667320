"""The suppression checks of tests/invariants.py catch a sync that breaks them.

Each test runs the real sync between the simulator and a DuckDB warehouse (as tests/test_sync.py does,
plus the check at the moment of every delete that the reliability harness makes), once as the product
is and once with the product monkeypatched to break one suppression outcome. Intact, the checker reports
nothing (and the outcome really happened); broken, it reports exactly the violation that was made.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from coldsync.cli import ExitCode
from coldsync.instantly import client as client_module
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.phases import blocklist, drain, topup
from coldsync.redact import mask_email
from coldsync.rules import Suppression
from coldsync.settings import Settings, replace
from coldsync.store import Store
from coldsync.suppression import address_key
from coldsync.sync import run_sync
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from proof.harness import CrashingAdapter, Operations
from tests.conftest import make_settings
from tests.helpers import add_dnc, add_sources, build, lead
from tests.invariants import check_after_run, check_before_add, check_before_delete, snapshot
from tests.test_sync import MIDSIZE, SMB, START

# Instantly refuses a local part over 64 characters (coldsync.rules.EMAIL_PATTERN's note). A client that
# checks that itself knows which lead Instantly refused: an invalid outcome not inferred from counters.
LONG_LOCAL = "x" * 65 + "@long-local.example"
BARRED = "barred@barred-dnc.example"
WALLED = "walled@walled-dnc.example"


@dataclass
class Checked:
    """The sync between a simulator and a DuckDB warehouse, each run checked from both edges."""

    warehouse: DuckDBWarehouse
    sim: InstantlySimulator
    client: InstantlyClient
    settings: Settings
    at_delete: list[str] = field(default_factory=list)

    def guard(self, endpoint: str, body: Any) -> None:
        """Invariant 5 at the moment a delete or an add request leaves (as proof.harness.Rig does)."""
        if endpoint == "DELETE /leads" and isinstance(body, dict):
            self.at_delete += check_before_delete(self.warehouse, self.sim, [str(i) for i in body.get("ids") or []])
        elif endpoint == "POST /leads/add":
            self.at_delete += check_before_add(self.warehouse, body)

    def run(self) -> list[str]:
        """One run; every violation the checker reports, at the deletes then after the run."""
        before = snapshot(self.warehouse, self.sim, self.settings)
        self.at_delete = []
        result = run_sync(self.settings, self.warehouse, self.client, now=self.sim.now)
        assert result.exit_code == ExitCode.OK, result.report.render_text()
        return self.at_delete + check_after_run(self.warehouse, self.sim, self.settings, before, self.sim.now)

    def dnc_sources(self, email: str) -> list[str]:
        key = address_key(email)
        rows = self.warehouse.query("SELECT email, email_key, source FROM `{ds}.ops_dnc`", label="test")
        return sorted(str(r["source"]) for r in rows if key in (r["email_key"], address_key(r["email"])))


@pytest.fixture
def checked(tmp_path: Path) -> Iterator[Checked]:
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, inventory_cap="40",
                             target_new_leads_per_run="20", batch_size="10", instantly_api_key="sim-key")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    build(warehouse, settings, list(generate_source_rows(300, seed=3)), as_of=START)
    session = requests.Session()
    world = Checked(warehouse, sim, InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01,
                                                    backoff_max=0.05, session=session), settings)
    session.mount("http://", CrashingAdapter(Operations(), world.guard))
    try:
        yield world
    finally:
        world.client.close()
        sim.stop()
        warehouse.close()


def _finish_one(world: Checked, fate: str) -> dict[str, Any]:
    """Run once to fill the campaigns, then end one lead's sequence with `fate`."""
    assert world.run() == []
    victim = world.sim.leads()[0]
    world.sim.finish_lead(str(victim["id"]), fate)  # type: ignore[arg-type]
    return victim


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken"])
def test_a_bounce_drained_without_its_dnc_entry_is_caught(checked: Checked, monkeypatch: pytest.MonkeyPatch,
                                                         broken: bool) -> None:
    """A bounce deleted without its DNC entry is reported at the delete and after the run; intact, nothing is."""
    victim = _finish_one(checked, "bounced")
    if broken:
        monkeypatch.setattr(drain, "DNC_SOURCES", {k: v for k, v in drain.DNC_SOURCES.items()
                                                   if k is not Suppression.PERMANENT})
    problems = checked.run()
    assert checked.sim.lead(str(victim["id"])) is None
    if broken:
        assert problems == [f"invariant 5: bounced lead {victim['id']} deleted before its DNC entry was written",
                            f"invariant 5: bounced lead {victim['id']} left Instantly without its DNC entry"]
    else:
        assert problems == [] and checked.dnc_sources(victim["email"]) == ["instantly_bounce"]


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken"])
def test_an_unsubscribe_drained_without_its_dnc_entry_is_caught(checked: Checked, monkeypatch: pytest.MonkeyPatch,
                                                               broken: bool) -> None:
    """An unsubscribe deleted without its DNC entry is reported at the delete and after the run; intact, nothing is."""
    victim = _finish_one(checked, "unsubscribed")
    if broken:
        monkeypatch.setattr(drain, "DNC_SOURCES", {k: v for k, v in drain.DNC_SOURCES.items()
                                                   if k is not Suppression.DNC})
    problems = checked.run()
    assert checked.sim.lead(str(victim["id"])) is None
    if broken:
        assert problems == [
            f"invariant 5: unsubscribed lead {victim['id']} deleted before its DNC entry was written",
            f"invariant 5: unsubscribed lead {victim['id']} left Instantly without its DNC entry"]
    else:
        assert problems == [] and checked.dnc_sources(victim["email"]) == ["instantly_unsubscribe"]


def _without_confirmed_invalid_dnc(original: Any) -> Any:
    """`topup._settle` that forgets the DNC entry of a lead Instantly refused as invalid (not inferred)."""
    signature = inspect.signature(original)

    def settle(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        dnc, outcome = bound.arguments["dnc"], bound.arguments["outcome"]
        kept = len(dnc)
        original(*args, **kwargs)
        if outcome.outcome == "invalid" and not outcome.inferred:
            del dnc[kept:]

    return settle


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken"])
def test_an_add_refused_as_invalid_without_its_dnc_entry_is_caught(checked: Checked, monkeypatch: pytest.MonkeyPatch,
                                                                  broken: bool) -> None:
    """A lead Instantly refused as invalid, known for that lead, left off the DNC list is reported; intact, not."""
    add_sources(checked.warehouse, [lead(LONG_LOCAL, Decimal(900_000_000))])  # first in priority order
    checked.sim.set_fault("POST /leads/add", FaultSpec(reject_emails=[LONG_LOCAL]))
    monkeypatch.setattr(client_module, "_EMAIL_SYNTAX", re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"))
    if broken:
        monkeypatch.setattr(topup, "_settle", _without_confirmed_invalid_dnc(topup._settle))
    problems = checked.run()
    assert LONG_LOCAL in [lead.get("email") for r in checked.sim.requests_to("POST", "/leads/add")
                          for lead in r.request_body["leads"]]
    if broken:
        assert problems == [f"invariant 5: lead {mask_email(LONG_LOCAL)} rejected on add as invalid "
                            "(shown for that lead) has no DNC entry"]
    else:
        assert problems == [] and checked.dnc_sources(LONG_LOCAL) == ["instantly_invalid"]


def test_an_add_only_counted_as_invalid_is_not_required_on_the_dnc_list(checked: Checked) -> None:
    """A lead Instantly only counted as invalid (the client's guess) is not held to a DNC entry, nor given one."""
    add_sources(checked.warehouse, [lead(LONG_LOCAL, Decimal(900_000_000))])
    checked.sim.set_fault("POST /leads/add", FaultSpec(reject_emails=[LONG_LOCAL]))
    assert checked.run() == []
    assert checked.dnc_sources(LONG_LOCAL) == []


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken"])
def test_an_add_refused_as_blocklisted_without_its_dnc_entry_is_caught(checked: Checked,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      broken: bool) -> None:
    """A lead Instantly refused as blocklisted, confirmed on its block list, left off the DNC list is reported."""
    add_sources(checked.warehouse, [lead(WALLED, Decimal(900_000_000))])
    checked.sim.add_to_blocklist("walled-dnc.example")
    checked.settings = replace(checked.settings, blocklist_mirror=False)  # the pull would list it anyway
    if broken:
        original = blocklist.confirm_blocklisted  # as topup.py imported it

        def looked_up_then_forgotten(*args: Any, **kwargs: Any) -> dict[str, Any]:
            original(*args, **kwargs)  # the block list is searched (the client sees the entry) ...
            return {}  # ... and its answer dropped

        monkeypatch.setattr(topup, "confirm_blocklisted", looked_up_then_forgotten)
    problems = checked.run()
    assert checked.sim.find_leads(WALLED) == [] and checked.sim.requests_to("GET", "/block-lists-entries")
    if broken:
        assert problems == [f"invariant 5: lead {mask_email(WALLED)} rejected on add as blocklisted "
                            "(shown for that lead) has no DNC entry"]
    else:
        assert problems == [] and checked.dnc_sources("x@walled-dnc.example") == []  # a domain entry blocks it
        rows = checked.warehouse.query("SELECT domain_key, source FROM `{ds}.ops_dnc` WHERE domain_key IS NOT NULL",
                                       label="test")
        assert {(r["domain_key"], r["source"]) for r in rows} == {("walled-dnc.example", "instantly_blocklist")}


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken"])
def test_a_suppressed_address_sent_is_caught(checked: Checked, monkeypatch: pytest.MonkeyPatch, broken: bool) -> None:
    """A ready read that ignores the DNC list sends a person listed in a pasted form: reported; intact, not sent."""
    add_sources(checked.warehouse, [lead(BARRED, Decimal(900_000_000))])
    add_dnc(checked.warehouse, email="\ufeff  Jane Roe <MAILTO:Barred+News@Barred-DNC.Example>\t")
    if broken:
        original = Store.read_ready

        def ignoring_dnc(self: Store, limits: Any, **kwargs: Any) -> list[dict[str, Any]]:
            listed = self.warehouse.query(
                "SELECT email, first_name, last_name, company_name, domain, location, country, annual_revenue, "
                "'Midsize' AS sequence_target, 1 AS attempt_num, CAST(NULL AS TIMESTAMP) AS last_completed_at "
                "FROM `{source}` WHERE email = @email", {"email": BARRED}, label="test.ignoring_dnc")
            return listed + original(self, limits, **kwargs)

        monkeypatch.setattr(Store, "read_ready", ignoring_dnc)
    problems = checked.run()
    if broken:
        assert problems == [f"invariant 1: a DNC address was sent ({mask_email(BARRED)}, suppressed by email)"]
    else:
        assert problems == [] and checked.sim.find_leads(BARRED) == []


@pytest.mark.parametrize("broken", [False, True], ids=["intact", "broken"])
def test_a_lead_of_a_person_suppressed_later_left_in_instantly_is_caught(checked: Checked,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          broken: bool) -> None:
    """A lead whose person is put on the DNC list after it was sent must be gone after one run: reported if not."""
    assert checked.run() == []
    victim = checked.sim.leads()[0]
    add_dnc(checked.warehouse, email=f"<{str(victim['email']).upper()}>")
    if broken:
        original = Store.read_state
        monkeypatch.setattr(Store, "read_state", lambda self: [dataclasses.replace(row, suppressed=None)
                                                                for row in original(self)])
    problems = checked.run()
    if broken:
        assert problems == [f"invariant 1: lead {victim['id']} of a suppressed person (email) is still in Instantly "
                            "after the run"]
    else:
        assert problems == [] and checked.sim.lead(str(victim["id"])) is None
        history = checked.warehouse.query("SELECT status_final FROM `{ds}.ops_lead_history` "
                                          "WHERE instantly_lead_id = @i", {"i": victim["id"]}, label="test")
        assert [h["status_final"] for h in history] == ["suppressed"]
