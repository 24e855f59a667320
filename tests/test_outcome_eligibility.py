"""Eligibility rule 5 by outcome policy (#13): history rows of each outcome x interest status, and who is
ready at chosen instants, on both engines, through the sync's own read and through the view."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from coldsync.outcomes import history_policy_columns, row_returns_at
from coldsync.settings import Settings
from coldsync.store import RECORD_HISTORY_FIELDS, RECORD_HISTORY_SQL, Store
from coldsync.suppression import history_key_stamp
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build, lead, ready, set_config
from tests.invariants import World

ENDED = dt.datetime(2025, 3, 3, 9, 30, tzinfo=dt.UTC)
"""When every attempt below ended (completed_at)."""
SECOND = dt.timedelta(seconds=1)


def days(n: int) -> dt.datetime:
    return ENDED + dt.timedelta(days=n)


# person, status_final, lt_interest_status at drain time, days until the address may return (None: never),
# worked by hand from the default table: COOLDOWN_DAYS 90, REPLIED_RETURN_DAYS 180,
# NOT_INTERESTED_RETURN_DAYS 365, GIVE_UP_COOLDOWN_DAYS 7; unsubscribes, bounces, in-sales and wrong-person
# rows never return.
CASES: tuple[tuple[str, str, int | None, int | None], ...] = (
    ("won@won.example", "replied", 4, None),
    ("interested@int.example", "replied", 1, None),
    ("booked@booked.example", "completed", 2, None),
    ("no@notint.example", "replied", -1, 365),
    ("lost@lost.example", "completed", -3, 365),
    ("noshow@noshow.example", "replied", -4, 365),
    ("wrong@acme-wp.example", "replied", -2, None),
    ("reply@reply.example", "replied", None, 180),
    ("ooo@ooo.example", "completed", 0, 90),
    ("done@done.example", "completed", None, 90),
    ("skip@skip.example", "skipped", None, 90),
    ("stale@stale.example", "stale", 1, None),
    ("removed@removed.example", "removed", None, 90),
    ("suppressed@sup.example", "suppressed", 4, 90),
    ("unsub@unsub.example", "unsubscribed", 1, None),
    ("bounce@bounce.example", "bounced", None, None),
    ("failed@failed.example", "failed", None, 7),
)
COLLEAGUE = "colleague@acme-wp.example"  # same domain as the wrong person, no history: always ready
LEGACY = (  # rows written before the policy columns: the policy of their status, from completed_at
    ("oldcompleted@legacy.example", "completed", 90),
    ("oldreplied@legacy.example", "replied", 180),
    ("oldfailed@legacy.example", "failed", 7),
    ("oldunsub@legacy.example", "unsubscribed", None),
)
INSTANTS = (days(7) - SECOND, days(7), days(90) - SECOND, days(90), days(180) - SECOND, days(180),
            days(365) - SECOND, days(365), days(3650))


def expected_ready(at: dt.datetime) -> set[str]:
    """Who is ready at `at`, by the hand-worked day counts above."""
    dated = [(email, n) for email, _s, _i, n in CASES] + [(email, n) for email, _s, n in LEGACY]
    return {COLLEAGUE} | {email for email, n in dated if n is not None and at >= days(n)}


def write_history(warehouse: Warehouse, settings: Settings) -> None:
    """CASES as the drain writes them (history_policy_columns), LEGACY with no policy columns."""
    rows: list[dict[str, Any]] = []
    for email, status, interest, _days in CASES:
        rows.append({"email": email, "status_final": status,
                     **history_policy_columns(status, interest, ENDED, table=settings.outcome_table)})
    rows += [{"email": email, "status_final": status, "policy": None, "interest_status": None, "return_at": None}
             for email, status, _days in LEGACY]
    full = [{"campaign_id": "c-smb", "sequence_name": "SMB", "completed_at": ENDED, "attempt_num": 1,
             "instantly_lead_id": f"lead-{n}", "reason": "test", "arm": None, **row,
             **history_key_stamp(row["email"])} for n, row in enumerate(rows)]
    warehouse.execute(RECORD_HISTORY_SQL, {"rows": Rows(RECORD_HISTORY_FIELDS, full), "now": ENDED, "run_id": "test"},
                      label="test.history")


def _arrange(warehouse: Warehouse, settings: Settings) -> Warehouse:
    emails = [email for email, *_ in CASES] + [email for email, *_ in LEGACY] + [COLLEAGUE]
    build(warehouse, settings, [lead(email, Decimal(500_000)) for email in emails], as_of=None)
    write_history(warehouse, settings)
    return warehouse


@pytest.fixture
def policy_warehouse(raw_warehouse: Warehouse, settings: Settings) -> Warehouse:
    """The cases on each engine: for the tests whose SQL could differ between engines."""
    return _arrange(raw_warehouse, settings)


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Warehouse]:
    """DuckDB alone, for tests of the wiring (the rule's SQL itself runs on both engines above)."""
    warehouse = DuckDBWarehouse(tmp_path / "duck.duckdb", "coldsync")
    try:
        yield warehouse
    finally:
        warehouse.close()


@pytest.fixture
def duck_policy_warehouse(duck: Warehouse, settings: Settings) -> Warehouse:
    return _arrange(duck, settings)


def test_each_outcome_returns_at_its_policy_date_on_both_engines(policy_warehouse: Warehouse,
                                                                 settings: Settings) -> None:
    """At each instant, the sync's read and the view list exactly the persons whose every history row allows
    a return (won never; not interested at exactly 365 days, not a second before; a wrong person's address
    never, a colleague at the same domain at once; a reply nobody labelled 180 days; a given-up add 7)."""
    for at in INSTANTS:
        store = Store.for_settings(policy_warehouse, "test", at, settings)
        read = {str(r["email"]) for r in store.read_ready({"SMB": 1000, "Midsize": 1000})}
        set_config(policy_warehouse, "as_of", string=at.isoformat())
        assert (at, read) == (at, expected_ready(at))
        assert (at, set(ready(policy_warehouse))) == (at, expected_ready(at))
    _mirror_agrees(policy_warehouse, settings)


def test_a_never_is_lifted_by_setting_return_at(duck_policy_warehouse: Warehouse, settings: Settings) -> None:
    """An in-sales mark ends when someone gives the history row a return date: ready from that instant on."""
    lifted = days(30)
    policy_warehouse = duck_policy_warehouse
    policy_warehouse.execute("UPDATE `{ds}.ops_lead_history` SET return_at = @at WHERE email = @e",
                             {"at": lifted, "e": "won@won.example"}, label="test.lift")
    for at, ready_now in ((lifted - SECOND, False), (lifted, True)):
        rows = Store.for_settings(policy_warehouse, "test", at, settings).read_ready({"SMB": 1000, "Midsize": 1000})
        assert ("won@won.example" in {str(r["email"]) for r in rows}) is ready_now


def _mirror_agrees(policy_warehouse: Warehouse, settings: Settings) -> None:
    """row_returns_at (the invariant checker's rule 5) gives every stored row the hand-worked date (checked
    inside the engines test above, so on both engines without a second build)."""
    rows = policy_warehouse.query("SELECT email, status_final, completed_at, policy, return_at "
                                  "FROM `{ds}.ops_lead_history`", label="test.rows")
    expected = {email: n for email, _s, _i, n in CASES} | {email: n for email, _s, n in LEGACY}
    for r in rows:
        at = row_returns_at(r["policy"], r["return_at"], str(r["status_final"]), r["completed_at"],
                            table=settings.outcome_table)
        n = expected[str(r["email"])]
        assert (r["email"], at) == (r["email"], None if n is None else days(n))


def test_settings_change_the_days(duck_policy_warehouse: Warehouse, tmp_path: Path) -> None:
    """NOT_INTERESTED_RETURN_DAYS applies to the rows the drain writes from then on, and COOLDOWN_DAYS to
    rows written before the columns (their days come from the table in effect)."""
    policy_warehouse = duck_policy_warehouse
    shorter = make_settings(tmp_path, not_interested_return_days="200", cooldown_days="30")
    written = history_policy_columns("replied", -1, ENDED, table=shorter.outcome_table)
    assert (written["policy"], written["return_at"], written["interest_status"]) == ("not_interested", days(200), -1)
    read = {str(r["email"]) for r in Store.for_settings(policy_warehouse, "test", days(30), shorter).read_ready(
        {"SMB": 1000, "Midsize": 1000})}
    assert "oldcompleted@legacy.example" in read and "done@done.example" not in read  # stored return_at: 90


SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"  # example ids, as in the README
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
START = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def test_drain_records_policy_interest_status_and_return_date(duck: Warehouse, tmp_path: Path) -> None:
    """The drain's history row carries the policy, the lead's interest status and when it may return: a
    not interested reply returns 365 days after it ended, an interested one never."""
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE, instantly_api_key="sim-key",
                             target_new_leads_per_run="5")
    sim = InstantlySimulator(api_key="sim-key", seed=5, now=START, sequence_days=10)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    sim.create_campaign("Midsize", campaign_id=MIDSIZE)
    build(duck, settings, [lead(f"p{n}@co{n}.example") for n in range(5)], as_of=START)
    client = InstantlyClient("sim-key", base_url=sim.base_url, backoff_base=0.01, backoff_max=0.05)
    try:
        world = World(duck, sim, client, settings)
        world.run_checked()
        first, second = sim.leads()[:2]
        sim.finish_lead(str(first["id"]), "replied", interest=-1)
        sim.finish_lead(str(second["id"]), "replied", interest=1)
        world.run_checked()
    finally:
        client.close()
        sim.stop()
    rows = {str(r["instantly_lead_id"]): r for r in duck.query(
        "SELECT instantly_lead_id, status_final, completed_at, policy, interest_status, return_at "
        "FROM `{ds}.ops_lead_history`", label="test.history")}
    no, yes = rows[str(first["id"])], rows[str(second["id"])]
    assert (no["status_final"], no["policy"], no["interest_status"]) == ("replied", "not_interested", -1)
    assert no["return_at"] == no["completed_at"] + dt.timedelta(days=365)
    assert (yes["status_final"], yes["policy"], yes["interest_status"], yes["return_at"]) == (
        "replied", "in_sales", 1, None)


def test_a_policy_file_set_but_missing_or_wrong_is_a_setting_problem(tmp_path: Path) -> None:
    """OUTCOME_POLICIES_FILE set to a missing path, or a document with a bad value, stops the program
    (SettingsError: exit 2) naming the place and the fix; `none` reads no file; a good document applies."""
    from coldsync.settings import SettingsError

    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, outcome_policies_file=str(tmp_path / "outcome.toml"))
    assert f"OUTCOME_POLICIES_FILE {tmp_path / 'outcome.toml'}: does not exist" in str(caught.value)
    bad = tmp_path / "outcomes.toml"
    bad.write_text('[replied]\nreturn_after_days = "soon"\n')
    with pytest.raises(SettingsError, match="policy replied, return_after_days"):
        make_settings(tmp_path, outcome_policies_file=str(bad))
    with pytest.raises(SettingsError, match="REPLIED_RETURN_DAYS"):
        make_settings(tmp_path, replied_return_days="10")  # before the 14-day hold ends
    assert make_settings(tmp_path, outcome_policies_file="none").outcome_table.origin == "default"
    table = make_settings(tmp_path, outcome_policies='{"not_interested": {"return_after_days": 540}}').outcome_table
    assert table["not_interested"].return_after_days == 540


def test_setup_builds_the_views_with_the_config_tables_days(duck: Warehouse, settings: Settings) -> None:
    """A `cooldown_days` row in the config table is what `setup.py` builds the views' rule 5 with (setup reads
    its settings without the table), and the fingerprint it records is the one a run with the table expects."""
    from coldsync.settings import with_config_rows
    from coldsync.warehouse.migrate import ensure_schema, read_config
    from coldsync.warehouse.schema import views_fingerprint

    build(duck, settings, [lead("done@done.example")], as_of=days(30))
    write_history(duck, settings)
    assert "done@done.example" not in ready(duck)
    set_config(duck, "cooldown_days", integer=30)
    ensure_schema(duck, settings)
    run_settings = with_config_rows(settings, read_config(duck))
    assert run_settings.cooldown_days == 30
    built = duck.query("SELECT value_string FROM `{ds}.config` WHERE key = 'views_fingerprint'",
                                label="test")[0]["value_string"]
    assert built == views_fingerprint(run_settings.routing, run_settings.outcome_table)
    # done@ was drained with the table of its day: its stored return_at (90 days) still holds.
    assert "done@done.example" not in ready(duck)
