"""Hand edits of the derived tables (ops_candidates, ops_ready_queue) never send anyone the rules forbid: a chosen
row whose stored keys are not its address's is dropped (fail closed), the run says so, and the lead waits for the
next refresh. The four attacks a reviewer found, each through a real run against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coldsync.store import Store, dnc_row
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.test_sync_suppression import START, World, _world


@pytest.fixture
def dw(tmp_path: Path) -> Iterator[World]:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        yield from _world(warehouse, tmp_path, ["p5@example.com", "free@acme.example"])
    finally:
        warehouse.close()


def _dnc(world: World, **entry: str) -> None:
    Store(world.warehouse, "hand", START).add_dnc([dnc_row(source="manual", reason="asked", **entry)], label="t")


@pytest.mark.parametrize("table", ["ops_candidates", "ops_ready_queue"])
def test_a_key_edited_by_hand_in_a_derived_table_does_not_unsuppress_its_person(dw: World, table: str) -> None:
    """p5 is on the DNC list; p5's email_key upper-cased by hand in ops_candidates (the queue then dropped, so the
    run reads the candidates) or in ops_ready_queue: the next run sends nobody new (p5 dropped before the add,
    with a warning naming the edit)."""
    _dnc(dw, email="p5@example.com")
    dw.run()
    assert dw.in_instantly() == {"free@acme.example"}
    edit = f"UPDATE `{{ds}}.{table}` SET email_key = UPPER(email_key) WHERE email = 'p5@example.com'"  # noqa: S608
    dw.warehouse.execute(edit, label="attack")
    if table == "ops_candidates":
        dw.warehouse.execute("DROP TABLE `{ds}.ops_ready_queue`", label="attack")
    result = dw.run()
    assert dw.in_instantly() == {"free@acme.example"}
    assert any("1 chosen lead(s) not sent" in w for w in result.report.warnings), result.report.warnings


def test_a_candidates_domain_key_edited_by_hand_does_not_unsuppress_the_domain(dw: World) -> None:
    """acme.example is on the DNC list as a domain; every email_domain_key in ops_candidates edited by hand: the
    next run still never sends free@acme.example."""
    _dnc(dw, domain="acme.example")
    dw.run()
    assert dw.in_instantly() == {"p5@example.com"}
    dw.warehouse.execute("UPDATE `{ds}.ops_candidates` SET email_domain_key = 'x' || email_domain_key WHERE TRUE",
                         label="attack")
    dw.warehouse.execute("DROP TABLE `{ds}.ops_ready_queue`", label="attack")
    dw.run()
    assert dw.in_instantly() == {"p5@example.com"}


def test_a_queue_row_rewritten_to_another_address_does_not_send_it(dw: World) -> None:
    """victim@acme.example and p5 on the DNC list; p5's queue row rewritten to the victim's address with a made-up
    key: the next run sends neither."""
    _dnc(dw, email="victim@acme.example")
    _dnc(dw, email="p5@example.com")
    dw.run()
    dw.warehouse.execute("UPDATE `{ds}.ops_ready_queue` SET email = 'victim@acme.example', "
                         "email_key = 'zz@x.example' WHERE email = 'p5@example.com'", label="attack")
    dw.run()
    assert dw.in_instantly() == {"free@acme.example"}


def test_a_queue_row_rewritten_to_a_unicode_address_on_the_list_is_dropped_as_edited(dw: World) -> None:
    """p5 and the domain bücher.example are on the DNC list; p5's queue row rewritten by hand to
    victim@bücher.example with its Python (punycode) key, which SQL cannot compute: the row is dropped as edited
    before the add (warning), not sent, and no dead letter is filed for it."""
    _dnc(dw, email="p5@example.com")
    _dnc(dw, domain="bücher.example")
    dw.run()
    assert dw.in_instantly() == {"free@acme.example"}
    edit = ("UPDATE `{ds}.ops_ready_queue` SET email = 'victim@bücher.example', "
            "email_key = 'victim@xn--bcher-kva.example' WHERE email = 'p5@example.com'")
    dw.warehouse.execute(edit, label="attack")
    result = dw.run()
    assert dw.in_instantly() == {"free@acme.example"}
    assert any("1 chosen lead(s) not sent" in w for w in result.report.warnings), result.report.warnings
    assert result.report.phase("topup").counts["dead_letters"] == 0
