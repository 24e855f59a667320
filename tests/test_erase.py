"""Erasure that keeps the suppression (`sync_once.py --erase`): no trace left, hash kept, Instantly cleaned."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coldsync.cli import ExitCode
from coldsync.erase import (
    EraseInputError,
    EraseOutcome,
    erasure_targets,
    read_address_file,
    run_erase,
    scrub_text,
    targets_from_cli,
)
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.runlock import Holder
from coldsync.settings import Settings, replace
from coldsync.store import Store
from coldsync.suppression import address_key, erasure_hash
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.warehouse.migrate import ensure_schema, read_config
from coldsync.warehouse.schema import ERASURE_SALT_KEY, TABLES
from tests.conftest import make_settings
from tests.helpers import (
    GMAIL,
    GOOGLEMAIL_CASED,
    T0,
    add_history,
    add_sources,
    build,
    delete_config,
    lead,
    ready,
    set_config,
)
from tests.invariants import table_contents

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
OTHER_CAMPAIGN = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
KEY = "jane@acme.example"
# Any plain-text form of the erased person's address: any case, any +tag (the key's own forms).
TRACE = re.compile(r"(?<![a-z0-9._%+'-])jane(\+[^@\s\"]*)?@acme\.example", re.IGNORECASE)

DEAD_LETTER_FIELDS = (("id", "STRING"), ("occurred_at", "TIMESTAMP"), ("phase", "STRING"), ("operation", "STRING"),
                      ("email", "STRING"), ("instantly_lead_id", "STRING"), ("error_text", "STRING"))
INSERT_DEAD_LETTERS_SQL = """
INSERT INTO `{ds}.ops_dead_letters` (id, occurred_at, phase, operation, email, instantly_lead_id, error_text,
                                     retry_count)
SELECT r.id, r.occurred_at, r.phase, r.operation, r.email, r.instantly_lead_id, r.error_text, 0
FROM UNNEST(@rows) AS r
"""
DNC_FIELDS = (("email", "STRING"), ("domain", "STRING"), ("source", "STRING"), ("reason", "STRING"),
              ("added_at", "TIMESTAMP"))
INSERT_DNC_SQL = """
INSERT INTO `{ds}.ops_dnc` (email, domain, source, reason, added_at)
SELECT r.email, r.domain, r.source, r.reason, r.added_at FROM UNNEST(@rows) AS r
"""
STATE_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("status", "STRING"),
                ("instantly_lead_id", "STRING"), ("added_at", "TIMESTAMP"))
INSERT_STATE_SQL = """
INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, status, instantly_lead_id, attempt_num, added_at, updated_at)
SELECT r.email, r.campaign_id, r.status, r.instantly_lead_id, 1, r.added_at, r.added_at FROM UNNEST(@rows) AS r
"""


@dataclass
class World:
    warehouse: Warehouse
    sim: InstantlySimulator
    client: InstantlyClient
    settings: Settings
    lead_ids: dict[str, str]  # address -> simulator lead id

    def erase(self, *addresses: str, **changes: object) -> EraseOutcome:
        settings = replace(self.settings, **changes) if changes else self.settings
        return run_erase(settings, self.warehouse, self.client, targets_from_cli(list(addresses), []),
                         now=self.sim.now)


def traces(warehouse: Warehouse) -> list[tuple[str, str, str]]:
    """(table, column, value) of every STRING value of every table that holds the erased address."""
    found = []
    for spec in TABLES:
        columns = [c.name for c in spec.columns if c.type == "STRING"]
        rows = warehouse.query(f"SELECT {', '.join(columns)} FROM `{{ds}}.{spec.name}`",  # noqa: S608
                               label="test.scan")
        for row in rows:
            for column in columns:
                value = row[column]
                if isinstance(value, str) and TRACE.search(value):
                    found.append((spec.name, column, value))
    return found


def salt_of(warehouse: Warehouse) -> str:
    return str(read_config(warehouse)[ERASURE_SALT_KEY])


def hash_rows(warehouse: Warehouse, key: str = KEY) -> list[dict[str, Any]]:
    return warehouse.query("SELECT email, domain, email_key, source, reason FROM `{ds}.ops_dnc` WHERE email_hash = @h",
                           {"h": erasure_hash(key, salt_of(warehouse))}, label="test.hash")


def arrange(warehouse: Warehouse, settings: Settings, sim: InstantlySimulator) -> dict[str, str]:
    """The erased person everywhere, in every form, beside a control person and a look-alike."""
    build(warehouse, settings, [lead("Jane@Acme.example"), lead("control@acme.example"),
                                lead("xjane@acme.example")], as_of=T0)
    added = sim.insert_leads(CAMPAIGN, [{"email": e} for e in ("jane@acme.example", "control@acme.example",
                                                                "xjane@acme.example")])
    sim.insert_leads(OTHER_CAMPAIGN, [{"email": "jane+promo@acme.example"}])
    assert added["leads_uploaded"] == 3
    ids = {str(lead["email"]): str(lead["id"]) for lead in sim.leads()}
    warehouse.execute(INSERT_STATE_SQL, {"rows": Rows(STATE_FIELDS, [
        {"email": "jane@acme.example", "campaign_id": CAMPAIGN, "status": "active",
         "instantly_lead_id": ids["jane@acme.example"], "added_at": T0},
        {"email": "control@acme.example", "campaign_id": CAMPAIGN, "status": "active",
         "instantly_lead_id": ids["control@acme.example"], "added_at": T0}])}, label="test.state")
    add_history(warehouse, "jane+promo@acme.example", T0 - dt.timedelta(days=200))
    add_history(warehouse, "JANE@ACME.EXAMPLE", T0 - dt.timedelta(days=400))  # imported by hand
    add_history(warehouse, "control@acme.example", T0 - dt.timedelta(days=400))
    warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_FIELDS, [
        {"email": "<mailto:Jane@Acme.example>", "domain": None, "source": "manual", "reason": "asked", "added_at": T0},
        {"email": None, "domain": "blocked.example", "source": "manual",
         "reason": "complaint forwarded by Jane+x@ACME.example", "added_at": T0},
        {"email": "xjane@acme.example", "domain": None, "source": "manual", "reason": "bounced", "added_at": T0},
    ])}, label="test.dnc")
    warehouse.execute(INSERT_DEAD_LETTERS_SQL, {"rows": Rows(DEAD_LETTER_FIELDS, [
        {"id": "dl-jane", "occurred_at": T0, "phase": "topup", "operation": "add_lead", "email": "jane@acme.example",
         "instantly_lead_id": None, "error_text": "400: jane@acme.example refused"},
        {"id": "dl-batch", "occurred_at": T0, "phase": "drain", "operation": "delete_leads", "email": None,
         "instantly_lead_id": None,
         "error_text": "batch failed for JANE+X@acme.example and xjane@acme.example"},
    ])}, label="test.dead_letters")
    store = Store(warehouse, "run-1", T0)
    store.write_run_log({"run_id": "run-1", "started_at": T0, "finished_at": T0, "mode": "live",
                         "outcome": "failed", "warehouse": warehouse.engine,
                         "error_text": "could not add <Jane@Acme.example>",
                         "summary_json": json.dumps({"error": 'lead "jane+promo@acme.example" \\ refused',
                                                     "other": "xjane@acme.example"})})
    return ids


@pytest.fixture
def world(raw_warehouse: Warehouse, tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path, instantly_api_key="sim-key", smb_campaign_id=CAMPAIGN,
                             midsize_campaign_id=OTHER_CAMPAIGN)
    sim = InstantlySimulator(api_key="sim-key", seed=7, now=T0)
    sim.start()
    sim.create_campaign("SMB", campaign_id=CAMPAIGN)
    sim.create_campaign("Midsize", campaign_id=OTHER_CAMPAIGN)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05, max_attempts=2)
    try:
        ids = arrange(raw_warehouse, settings, sim)
        yield World(raw_warehouse, sim, client, settings, ids)
    finally:
        client.close()
        sim.stop()


@pytest.fixture
def duck_world(tmp_path: Path) -> Iterator[World]:
    """The same world on DuckDB only (the engine-independent cases)."""
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", "source_leads")
    settings = make_settings(tmp_path, instantly_api_key="sim-key", smb_campaign_id=CAMPAIGN,
                             midsize_campaign_id=OTHER_CAMPAIGN)
    sim = InstantlySimulator(api_key="sim-key", seed=7, now=T0)
    sim.start()
    sim.create_campaign("SMB", campaign_id=CAMPAIGN)
    sim.create_campaign("Midsize", campaign_id=OTHER_CAMPAIGN)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05, max_attempts=2)
    try:
        ids = arrange(warehouse, settings, sim)
        yield World(warehouse, sim, client, settings, ids)
    finally:
        client.close()
        sim.stop()
        warehouse.close()


# --- end to end, both engines --------------------------------------------------------------------------


def test_erase_leaves_no_trace_keeps_one_hash_and_a_second_run_changes_nothing(world: World) -> None:
    """No address form left in any STRING column, one hash row, leads deleted by id, re-import blocked, re-run idle."""
    warehouse = world.warehouse
    assert len(traces(warehouse)) == 10
    outcome = world.erase("Jane@Acme.example")
    assert outcome.exit_code == ExitCode.OK, outcome.render_text()
    assert outcome.removed == {"ops_inst_state": 1, "ops_lead_history": 2, "ops_dead_letters": 1, "ops_dnc": 1}
    assert outcome.masked == {"ops_dead_letters": 1, "ops_dnc": 1, "ops_run_log": 1}
    assert (outcome.instantly_found, outcome.instantly_deleted, outcome.hashes_added) == (2, 2, 1)
    assert outcome.source_rows == 1
    assert traces(warehouse) == []
    assert hash_rows(warehouse) == [{"email": None, "domain": None, "email_key": None, "source": "erasure",
                                     "reason": "erased on request; suppression kept as a salted hash"}]
    # the look-alike and the control person keep everything
    kept = warehouse.query("SELECT error_text FROM `{ds}`.ops_dead_letters", label="test")
    assert kept == [{"error_text": "batch failed for [erased] and xjane@acme.example"}]
    log = warehouse.query("SELECT error_text, summary_json FROM `{ds}`.ops_run_log", label="test")
    assert log == [{"error_text": "could not add <[erased]>",
                    "summary_json": json.dumps({"error": 'lead "[erased]" \\ refused', "other": "xjane@acme.example"})}]
    dnc = warehouse.query("SELECT email, domain, reason FROM `{ds}`.ops_dnc WHERE email_hash IS NULL "
                          "ORDER BY domain NULLS FIRST", label="test")
    assert dnc == [{"email": "xjane@acme.example", "domain": None, "reason": "bounced"},
                   {"email": None, "domain": "blocked.example", "reason": "complaint forwarded by [erased]"}]
    state = warehouse.query("SELECT email FROM `{ds}`.ops_inst_state", label="test")
    assert state == [{"email": "control@acme.example"}]
    # Instantly: both of the person's leads deleted by explicit id; the others stay
    assert sorted(str(lead["email"]) for lead in world.sim.leads()) == ["control@acme.example", "xjane@acme.example"]
    deletes = world.sim.requests_to("DELETE", "/leads")
    assert sorted(i for r in deletes for i in r.request_body["ids"]) == sorted(
        [world.lead_ids["jane@acme.example"], world.lead_ids["jane+promo@acme.example"]])
    # a later source row with the address (and a +tag variant) is not ready; the control person is
    add_sources(warehouse, [lead("JANE@acme.example"), lead("jane+later@Acme.example"), lead("new@acme.example")])
    assert sorted(ready(warehouse)) == ["new@acme.example"]  # control is active, xjane's DNC entry blocks it
    warehouse.execute("DELETE FROM `{ds}.ops_inst_state` WHERE email = 'control@acme.example'", label="test")
    assert sorted(ready(warehouse)) == ["control@acme.example", "new@acme.example"]
    # a second run finds nothing and changes nothing
    before, log_position = table_contents(warehouse), len(world.sim.request_log)
    again = world.erase("jane@ACME.example")
    assert again.exit_code == ExitCode.OK, again.render_text()
    assert again.removed == {"ops_inst_state": 0, "ops_lead_history": 0, "ops_dead_letters": 0, "ops_dnc": 0}
    assert (again.masked, again.instantly_found, again.hashes_added, again.hashes_kept) == ({}, 0, 0, 1)
    assert table_contents(warehouse) == before
    assert [r.endpoint for r in world.sim.request_log[log_position:]] == ["POST /leads/list", "POST /leads/list"]


# --- DuckDB only ---------------------------------------------------------------------------------------


def test_dry_run_removes_nothing_and_says_what_it_would(duck_world: World) -> None:
    """DRY_RUN reads and looks up only: the counts it prints are those the real run then removes."""
    warehouse = duck_world.warehouse
    delete_config(warehouse, ERASURE_SALT_KEY)
    before, leads_before = table_contents(warehouse), duck_world.sim.leads()
    dry = duck_world.erase("jane+anything@acme.example", dry_run=True)
    assert dry.exit_code == ExitCode.OK, dry.render_text()
    assert table_contents(warehouse) == before and duck_world.sim.leads() == leads_before
    log = duck_world.sim.request_log
    assert [r.endpoint for r in log if r.method != "GET" and r.endpoint != "POST /leads/list"] == []
    text = dry.render_text()
    assert text.splitlines()[:5] == [
        "Erase, dry run (nothing is changed): 1 person(s): j***@acme.example",
        "  warehouse rows that would be removed: ops_inst_state 1, ops_lead_history 2, ops_dead_letters 1, ops_dnc 1",
        "  address would be masked in kept rows: ops_dead_letters 1, ops_dnc 1, ops_run_log 1",
        "  Instantly: 2 lead(s) found, would delete 2",
        "  suppression: 1 salted hash(es) would be added, 0 already kept (the erasure salt would be created first)",
    ]
    assert not TRACE.search(text)
    real = duck_world.erase("jane+anything@acme.example")
    assert (real.removed, real.masked, real.instantly_deleted) == (dry.removed, dry.masked, 2)
    assert real.salt_created and len(salt_of(warehouse)) == 64


def test_cli_erase_file_end_to_end_and_dry_run(duck_world: World, tmp_path: Path) -> None:
    """`sync_once.py --erase-file` (comments, blank lines) prints masked counts; DRY_RUN=true first removes nothing."""
    duck_world.warehouse.close()
    path = tmp_path / "erase.txt"
    path.write_text("# requests of June\n\n  Jane@Acme.example  \n# done\n", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
           "INSTANTLY_API_KEY": "sim-key", "INSTANTLY_BASE_URL": duck_world.sim.base_url}
    dry = subprocess.run([sys.executable, "sync_once.py", "--erase-file", str(path)], cwd=REPO,
                         env={**env, "DRY_RUN": "true"}, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "warehouse rows that would be removed: ops_inst_state 1, ops_lead_history 2, ops_dead_letters 1, " \
           "ops_dnc 1" in dry.stdout
    assert "Instantly: 2 lead(s) found, would delete 2" in dry.stdout
    assert len(duck_world.sim.leads()) == 4
    live = subprocess.run([sys.executable, "sync_once.py", "--erase-file", str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert live.returncode == 0, live.stderr
    assert live.stdout.splitlines()[0] == "Erase done: 1 person(s): J***@acme.example"
    assert "Instantly: 2 lead(s) found, 2 deleted" in live.stdout
    for output in (dry.stdout, dry.stderr, live.stdout, live.stderr):
        assert not TRACE.search(output), output
    assert sorted(str(lead["email"]) for lead in duck_world.sim.leads()) == ["control@acme.example",
                                                                             "xjane@acme.example"]
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", "source_leads")
    try:
        assert traces(warehouse) == [] and len(hash_rows(warehouse)) == 1
    finally:
        warehouse.close()


def test_invalid_address_exits_2_and_touches_nothing(tmp_path: Path) -> None:
    """An address without a key is refused with exit 2, named masked with where it came from, before any connection."""
    path = tmp_path / "erase.txt"
    path.write_text("jane@acme.example\nnot-an-address\njane@@acme.example\n", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
           "INSTANTLY_API_KEY": "sim-key", "INSTANTLY_BASE_URL": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "sync_once.py", "--erase", "ok@acme.example", "--erase-file", str(path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"Erase refused: not a usable email address, nothing was erased: "
                                  f"n*** (no @) ({path} line 2), j***@@acme.example ({path} line 3)")
    assert not (tmp_path / "wh.duckdb").exists()  # the warehouse was not even opened
    both = subprocess.run([sys.executable, "sync_once.py", "--erase", "ok@acme.example", "--report"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "--erase cannot be combined with --report" in both.stderr


def test_lock_held_exits_3_and_touches_nothing(duck_world: World) -> None:
    """With the run lock held by a sync, an erase exits 3 and changes nothing anywhere."""
    now = duck_world.sim.now
    Store(duck_world.warehouse, "sync-run", now, me=Holder(os.getpid(), socket.gethostname())).acquire_lock(
        dt.timedelta(minutes=30))
    before, leads_before = table_contents(duck_world.warehouse), duck_world.sim.leads()
    outcome = duck_world.erase("jane@acme.example")
    assert outcome.exit_code == ExitCode.LOCK_HELD
    assert outcome.error == (
        f"another run holds the lock: run sync-run (pid {os.getpid()} on {socket.gethostname()}, since "
        f"{now:%H:%M} UTC, lease until {now + dt.timedelta(minutes=30):%Y-%m-%d %H:%M} UTC; still running). A killed "
        "run's lease ends after LOCK_TTL_MINUTES=30; to end it now: `python sync_once.py --break-lock`")
    assert table_contents(duck_world.warehouse) == before and duck_world.sim.leads() == leads_before


def test_instantly_failure_exits_1_says_what_was_done_and_a_rerun_finishes(duck_world: World) -> None:
    """When Instantly's delete fails, the hash is kept, the warehouse rows stay for the retry, and a re-run finishes."""
    duck_world.sim.set_fault("DELETE /leads", FaultSpec(error_rate=1.0, error_status=500))
    failed = duck_world.erase("jane@acme.example")
    assert failed.exit_code == ExitCode.RUN_FAILED
    assert failed.done == ["suppression hash added (1 new, 0 already kept)"]
    assert failed.not_done == ["Instantly leads deleted", "warehouse rows removed", "address masked in kept rows"]
    assert "NOT done: Instantly leads deleted" in failed.render_text()
    assert len(hash_rows(duck_world.warehouse)) == 1 and len(traces(duck_world.warehouse)) == 10
    assert sorted(ready(duck_world.warehouse)) == []  # the hash already suppresses the person
    duck_world.sim.clear_faults()
    again = duck_world.erase("jane@acme.example")
    assert again.exit_code == ExitCode.OK, again.render_text()
    assert traces(duck_world.warehouse) == [] and len(hash_rows(duck_world.warehouse)) == 1
    assert sorted(str(lead["email"]) for lead in duck_world.sim.leads()) == ["control@acme.example",
                                                                             "xjane@acme.example"]


def test_setup_creates_the_salt_once_and_keeps_it(tmp_path: Path) -> None:
    """setup makes a 64-hex-character salt once, a second setup keeps it, and a dry run only says it would make one."""
    settings = make_settings(tmp_path)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync", "source_leads")
    try:
        build(warehouse, settings, as_of=None)
        salt = salt_of(warehouse)
        assert re.fullmatch(r"[0-9a-f]{64}", salt)
        report = ensure_schema(warehouse, settings)
        assert "ok: erasure salt present" in report.actions and not report.changed
        assert salt_of(warehouse) == salt
        delete_config(warehouse, ERASURE_SALT_KEY)
        dry: list[str] = []
        ensure_schema(warehouse, settings, dry_run=True, echo=dry.append)
        assert "would create the erasure salt (config row erasure_salt)" in dry
        assert ERASURE_SALT_KEY not in read_config(warehouse)
        assert "created the erasure salt (config row erasure_salt)" in ensure_schema(warehouse, settings).actions
        assert salt_of(warehouse) != salt
    finally:
        warehouse.close()


def test_erase_on_a_warehouse_without_salt_creates_it_and_suppresses(duck_world: World) -> None:
    """An older warehouse without the salt row gets one from --erase, and its hash suppresses the person."""
    delete_config(duck_world.warehouse, ERASURE_SALT_KEY)
    outcome = duck_world.erase("jane@acme.example")
    assert outcome.exit_code == ExitCode.OK and outcome.salt_created
    assert "(the erasure salt was created)" in outcome.render_text()
    assert len(hash_rows(duck_world.warehouse)) == 1
    add_sources(duck_world.warehouse, [lead("jane+again@acme.example")])
    assert sorted(ready(duck_world.warehouse)) == []


def test_an_empty_salt_row_is_refused_with_exit_2(duck_world: World) -> None:
    """A salt row that exists but is empty is a configuration error: exit 2, nothing removed, no unsalted hash."""
    set_config(duck_world.warehouse, ERASURE_SALT_KEY, string="")
    before, leads_before = table_contents(duck_world.warehouse), duck_world.sim.leads()
    outcome = duck_world.erase("jane@acme.example")
    assert outcome.exit_code == ExitCode.BAD_CONFIG
    assert outcome.render_text().splitlines()[:2] == [
        "Erase FAILED: 1 person(s): j***@acme.example",
        "  error: the config row erasure_salt exists but is empty: an unsalted hash could be reversed by guessing "
        "addresses. Put a long random value there (python -c 'import secrets; print(secrets.token_hex(32))') if no "
        "erasure hash exists yet"]
    after = table_contents(duck_world.warehouse)
    assert after == before and duck_world.sim.leads() == leads_before


# --- pure parts ----------------------------------------------------------------------------------------


def test_targets_are_one_per_person_and_masked() -> None:
    """Addresses with the same key are one person; a wrapped form is accepted; output forms are masked."""
    targets = erasure_targets([("Jane@Acme.example", "--erase"), ("jane+promo@acme.example", "--erase"),
                               ("<mailto:bob@b.example>", "f line 1")])
    assert [(t.key, t.forms, t.masked) for t in targets] == [
        ("bob@b.example", ("bob@b.example",), ("<***@b.example>",)),
        ("jane@acme.example", ("jane@acme.example", "jane+promo@acme.example"), ("J***@acme.example",
                                                                                 "j***@acme.example")),
    ]
    with pytest.raises(EraseInputError, match=r"^no address to erase was given$"):
        erasure_targets([])


def test_erase_file_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    """Blank lines and # comments are skipped; each address keeps its line number."""
    path = tmp_path / "list.txt"
    path.write_text("\ufeff# header\n\na@acme.example\n   # indented comment\n b@acme.example \n", encoding="utf-8")
    assert read_address_file(path) == [("a@acme.example", f"{path} line 3"), ("b@acme.example", f"{path} line 5")]
    with pytest.raises(EraseInputError, match="cannot read the erase file"):
        read_address_file(tmp_path / "missing.txt")


def test_scrub_replaces_only_the_persons_addresses() -> None:
    """Every form of the person's address is replaced, look-alikes are kept, and JSON stays valid JSON."""
    keys = frozenset({"jane@acme.example", f"janedoe@{GMAIL}"})
    assert scrub_text("to JANE+x@Acme.Example, xjane@acme.example; mailto:jane@acme.example.", keys) == (
        "to [erased], xjane@acme.example; mailto:[erased].")
    assert scrub_text(f"Jane.Doe+news@{GOOGLEMAIL_CASED} <jane@acme-corp.example>", keys) == (
        "[erased] <jane@acme-corp.example>")
    document = json.dumps({"a": 'say "jane@acme.example"', "b": "jane@acme.example\n"})
    assert json.loads(scrub_text(document, keys)) == {"a": 'say "[erased]"', "b": "[erased]\n"}
    assert scrub_text("j***@acme.example and '...jane@acme.example'", keys) == "j***@acme.example and '...[erased]'"
    assert address_key("[erased]") is None


def test_erase_deletes_the_persons_row_of_the_candidates_table(duck_world: World) -> None:
    """After a refresh, ops_candidates holds jane, control and xjane (the source's three rows); the erase deletes
    jane's row (by her key) and masks nothing there, leaving the other two as they were; no trace of her is left
    in any table."""
    warehouse = duck_world.warehouse
    store = Store.for_settings(warehouse, "t", T0, duck_world.settings)
    store.refresh_candidates()
    store.build_queue(store.queue_fingerprint())  # the ready queue's copies of candidates rows: dropped
    assert warehouse.existing_columns("ops_ready_queue") is not None
    rows = "SELECT email FROM `{ds}.ops_candidates` ORDER BY email"
    assert [r["email"] for r in warehouse.query(rows, label="t")] == [
        "control@acme.example", "jane@acme.example", "xjane@acme.example"]
    outcome = duck_world.erase("jane+promo@acme.example")
    assert outcome.exit_code == ExitCode.OK, outcome.render_text()
    assert "ops_candidates" not in outcome.masked
    assert [r["email"] for r in warehouse.query(rows, label="t")] == ["control@acme.example", "xjane@acme.example"]
    assert warehouse.existing_columns("ops_ready_queue") is None
    assert traces(warehouse) == []
