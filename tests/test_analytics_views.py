"""The analytics views (issue 17) on both engines, against figures worked out by hand from one seeded history.

The seed: three campaigns (SMB in route SMB; arms A and B of route Midsize), attempts added and finished on
both sides of the week boundary Sunday 2026-03-08 23:59:59 / Monday 2026-03-09 00:00:00 UTC, every outcome,
rows written before the policy (v4) and added_at (v7) columns, a given-up add, state rows active, holding
and pending, campaign analytics per day (one campaign with nothing sent: rates NULL), DNC entries of two
sources. The views' clock (config row as_of) is Tuesday 2026-03-10 12:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from coldsync.settings import Settings
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.schema import ANALYTICS_VIEWS, views
from tests.conftest import make_settings, open_warehouse
from tests.helpers import build, lead, set_config

UTC = dt.UTC
AS_OF = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WEEK_A, WEEK_B = dt.date(2026, 3, 2), dt.date(2026, 3, 9)
EARLY_WEEK = dt.date(2026, 1, 26)  # the week of Sunday 2026-02-01


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


HISTORY_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("sequence_name", "STRING"), ("arm", "STRING"),
                  ("status_final", "STRING"), ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"),
                  ("added_at", "TIMESTAMP"), ("policy", "STRING"), ("interest_status", "INT64"),
                  ("return_at", "TIMESTAMP"))
# email, campaign, route, arm, status_final, completed_at, added_at, policy, interest_status, return_at
HISTORY = [
    ("h1", "c-smb", "SMB", "SMB", "completed", at(3, 10), at(2, 9), "no_reply", None, at(20, 12)),
    ("h2", "c-smb", "SMB", "SMB", "replied", at(8, 23, 59, 59), at(2, 9), "in_sales", 1, None),  # Sunday: week A
    ("h3", "c-smb", "SMB", "SMB", "bounced", at(9), at(3, 13), "do_not_contact", None, None),  # Monday: week B
    ("h4", "c-ma", "Midsize", "A", "unsubscribed", at(4, 12), at(2, 10), "do_not_contact", None, None),
    ("h5", "c-ma", "Midsize", "A", "replied", at(4, 13), at(2, 10), "not_interested", -1, at(12)),
    ("h6", "c-mb", "Midsize", "B", "replied", at(10), None, None, 2, None),  # before v4 and v7
    ("h7", "c-mb", "Midsize", "B", "failed", at(5), None, "given_up", None, at(6, 12, month=4)),
    ("h8", "c-smb", "SMB", "SMB", "completed", at(1, 8, month=2), None, "no_reply", None, at(17, 12)),
]
STATE = [  # email, campaign, route, arm, status, added_at
    ("s1", "c-smb", "SMB", "SMB", "active", at(9, 8)),
    ("s2", "c-mb", "Midsize", "B", "active", at(8, 20)),
    ("h2", "c-smb", "SMB", "SMB", "holding", at(2, 9)),  # its history row counts it: not twice
    ("s4", "c-smb", "SMB", "SMB", "pending", at(9, 9)),  # not confirmed: not added
    ("s5", "c-mb", "Midsize", "B", "active", AS_OF),  # exactly at as_of: within v_supply's 7 days
    ("s6", "c-smb", "SMB", "SMB", "active", at(3, 12)),  # exactly 7 days before as_of: outside them
]
DAILY_FIELDS = (("campaign_id", "STRING"), ("day", "DATE"), ("route", "STRING"), ("arm", "STRING"),
                ("leads", "INT64"), ("emails_sent", "INT64"), ("bounced", "INT64"), ("unsubscribed", "INT64"))
DAILY = [  # campaign, day, route, arm, leads, emails_sent, bounced, unsubscribed
    ("c-smb", dt.date(2026, 3, 8), "SMB", "SMB", 100, 100, 3, 1),
    ("c-smb", dt.date(2026, 3, 9), "SMB", "SMB", 110, 200, 2, 12),
    ("c-ma", dt.date(2026, 3, 8), "Midsize", "A", 50, 0, 0, 0),
    ("c-mb", dt.date(2026, 3, 8), "Midsize", "B", 30, 40, 1, 0),
]
DNC = [("manual", at(3)), ("manual", at(8, 23)), ("manual", at(9, 1)), ("instantly_unsubscribe", at(9, 2)),
       ("instantly_unsubscribe", at(16))]


def seed(warehouse: Warehouse, settings: Settings) -> None:
    """The seeded warehouse: 3 SMB and 2 Midsize source leads ready, and the rows above."""
    sources = [lead(f"ready{i}@corp.example", Decimal(500_000)) for i in range(3)]
    sources += [lead(f"big{i}@corp.example", Decimal(5_000_000)) for i in range(2)]
    build(warehouse, settings, sources, as_of=AS_OF)
    set_config(warehouse, "inventory_cap", integer=200)
    history = [dict(zip([f for f, _t in HISTORY_FIELDS], (f"{r[0]}@example.com", *r[1:6], 1, *r[6:]), strict=True))
               for r in HISTORY]
    warehouse.execute(
        "INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, sequence_name, arm, status_final, completed_at, "
        "attempt_num, added_at, policy, interest_status, return_at) SELECT r.email, r.campaign_id, r.sequence_name, "
        "r.arm, r.status_final, r.completed_at, r.attempt_num, r.added_at, r.policy, r.interest_status, r.return_at "
        "FROM UNNEST(@rows) AS r", {"rows": Rows(HISTORY_FIELDS, history)}, label="test.history")
    state_fields = (("email", "STRING"), ("campaign_id", "STRING"), ("sequence_target", "STRING"), ("arm", "STRING"),
                    ("status", "STRING"), ("added_at", "TIMESTAMP"))
    state = [dict(zip([f for f, _t in state_fields], (f"{r[0]}@example.com", *r[1:]), strict=True)) for r in STATE]
    warehouse.execute(
        "INSERT INTO `{ds}.ops_inst_state` (email, campaign_id, sequence_target, arm, status, added_at) "
        "SELECT r.email, r.campaign_id, r.sequence_target, r.arm, r.status, r.added_at FROM UNNEST(@rows) AS r",
        {"rows": Rows(state_fields, state)}, label="test.state")
    daily = [dict(zip([f for f, _t in DAILY_FIELDS], r, strict=True)) for r in DAILY]
    warehouse.execute(
        "INSERT INTO `{ds}.ops_campaign_daily` (campaign_id, day, route, arm, leads, emails_sent, bounced, "
        "unsubscribed) SELECT r.campaign_id, r.day, r.route, r.arm, r.leads, r.emails_sent, r.bounced, "
        "r.unsubscribed FROM UNNEST(@rows) AS r", {"rows": Rows(DAILY_FIELDS, daily)}, label="test.daily")
    dnc_fields = (("email", "STRING"), ("source", "STRING"), ("added_at", "TIMESTAMP"))
    dnc = [{"email": f"dnc{i}@example.com", "source": source, "added_at": added} for i, (source, added)
           in enumerate(DNC)]
    warehouse.execute(
        "INSERT INTO `{ds}.ops_dnc` (email, source, reason, added_at) SELECT r.email, r.source, 'test', r.added_at "
        "FROM UNNEST(@rows) AS r", {"rows": Rows(dnc_fields, dnc)}, label="test.dnc")


@pytest.fixture(scope="module", params=["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """The seeded warehouse, built once per engine for the module (the tests only read it)."""
    folder = tmp_path_factory.mktemp("analytics-views")
    warehouse = open_warehouse(request.param, folder, request)
    try:
        seed(warehouse, make_settings(folder))
        yield warehouse
    finally:
        warehouse.close()


def rows(warehouse: Warehouse, view: str, order: str) -> list[dict[str, Any]]:
    """The view's rows, numbers as plain ints/floats (rounded to 9 places) so both engines compare alike."""
    out = []
    for row in warehouse.query(f"SELECT * FROM `{{ds}}.{view}` ORDER BY {order}", label="test.view"):  # noqa: S608
        out.append({k: round(float(v), 9) if isinstance(v, float | Decimal) else v for k, v in row.items()})
    return out


def funnel(week: dt.date, route: str, arm: str, added: int, finished: int, replied: int, interested: int,
           bounced: int, unsubscribed: int) -> dict[str, Any]:
    def rate(n: int) -> float | None:
        return None if finished == 0 else round(n / finished, 9)
    return {"week_start": week, "route": route, "arm": arm, "added": added, "finished": finished, "replied": replied,
            "interested": interested, "bounced": bounced, "unsubscribed": unsubscribed, "reply_rate": rate(replied),
            "interested_rate": rate(interested), "bounce_rate": rate(bounced), "unsubscribe_rate": rate(unsubscribed)}


def test_funnel_weekly_counts_each_attempt_once_in_its_week(seeded: Warehouse) -> None:
    """v_funnel_weekly: an attempt is added in the week of added_at (active state rows, history rows with
    added_at; holding and pending state rows and given-up adds not), finished in the week of completed_at
    (Sunday 23:59:59 in the week before Monday 00:00), interested by the in_sales policy (else interest 1-4),
    and a route/arm with nothing finished has NULL rates, not an error."""
    assert rows(seeded, "v_funnel_weekly", "week_start, route, arm") == [
        funnel(EARLY_WEEK, "SMB", "SMB", 0, 1, 0, 0, 0, 0),  # h8
        funnel(WEEK_A, "Midsize", "A", 2, 2, 1, 0, 0, 1),  # h4, h5 (not interested)
        funnel(WEEK_A, "Midsize", "B", 1, 0, 0, 0, 0, 0),  # s2 added; h7 given up: neither added nor finished
        funnel(WEEK_A, "SMB", "SMB", 4, 2, 1, 1, 0, 0),  # h1, h2, h3, s6 added; h1, h2 (Sunday) finished
        funnel(WEEK_B, "Midsize", "B", 1, 1, 1, 1, 0, 0),  # s5 added; h6: before v4, interest 2
        funnel(WEEK_B, "SMB", "SMB", 1, 1, 0, 0, 1, 0),  # s1 added; h3 (Monday 00:00) bounced
    ]


def test_inventory_daily_beside_what_was_added_and_drained(seeded: Warehouse) -> None:
    """v_inventory_daily: per UTC day and campaign, Instantly's lead count, the adds and drains (given-up adds
    are not drains), the cap from the config table, and the room left when every campaign of that day has a
    count (200 - 100 - 50 - 30 = 20 on Sunday), NULL when one has none."""
    got = {(r["day"], r["campaign_id"]): r for r in rows(seeded, "v_inventory_daily", "day, campaign_id")}
    march = [(2, "c-ma"), (2, "c-smb"), (3, "c-smb"), (4, "c-ma"), (8, "c-ma"), (8, "c-mb"), (8, "c-smb"),
             (9, "c-smb"), (10, "c-mb")]
    assert sorted(got) == [(dt.date(2026, 2, 1), "c-smb"), *((dt.date(2026, 3, d), c) for d, c in march)]
    sunday = [{k: got[(dt.date(2026, 3, 8), c)][k] for k in ("route", "arm", "leads", "added", "drained", "cap",
                                                              "workspace_room")} for c in ("c-smb", "c-ma", "c-mb")]
    assert sunday == [{"route": "SMB", "arm": "SMB", "leads": 100, "added": 0, "drained": 1, "cap": 200,
                       "workspace_room": 20},
                      {"route": "Midsize", "arm": "A", "leads": 50, "added": 0, "drained": 0, "cap": 200,
                       "workspace_room": 20},
                      {"route": "Midsize", "arm": "B", "leads": 30, "added": 1, "drained": 0, "cap": 200,
                       "workspace_room": 20}]
    monday = got[(dt.date(2026, 3, 9), "c-smb")]
    assert (monday["leads"], monday["added"], monday["drained"], monday["workspace_room"]) == (110, 1, 1, 90)
    wednesday = got[(dt.date(2026, 3, 4), "c-ma")]
    assert (wednesday["leads"], wednesday["added"], wednesday["drained"], wednesday["workspace_room"]) == (
        None, 0, 2, None)
    assert got[(dt.date(2026, 3, 3), "c-smb")]["added"] == 2 and got[(dt.date(2026, 3, 3), "c-smb")]["drained"] == 1
    assert got[(dt.date(2026, 3, 10), "c-mb")]["added"] == 1  # s5


def test_drain_outcomes_per_week_and_policy(seeded: Warehouse) -> None:
    """v_drain_outcomes: every history row counted in the week it ended, by outcome and policy; a row written
    before the policy column shows '(before v4)'."""
    assert [(r["week_start"], r["outcome"], r["policy"], r["leads"])
            for r in rows(seeded, "v_drain_outcomes", "week_start, outcome, policy")] == [
        (EARLY_WEEK, "completed", "no_reply", 1),
        (WEEK_A, "completed", "no_reply", 1), (WEEK_A, "failed", "given_up", 1),
        (WEEK_A, "replied", "in_sales", 1), (WEEK_A, "replied", "not_interested", 1),
        (WEEK_A, "unsubscribed", "do_not_contact", 1),
        (WEEK_B, "bounced", "do_not_contact", 1), (WEEK_B, "replied", "(before v4)", 1),
    ]


def test_supply_runway_and_returns_per_coming_week(seeded: Warehouse) -> None:
    """v_supply at as_of Tue 2026-03-10 12:00: ready leads per route, adds in the 7 days up to it, (Tue 03-03
    12:00, as_of] (SMB: h3 at Tue 13:00 and s1; s6 at exactly 03-03 12:00 and h1, h2 at Mon 09:00 are older;
    Midsize: s2 and s5 at exactly as_of), days of supply = ready / (adds / 7), and the leads whose return_at
    falls in each coming week (exactly 7 days ahead is week 2; a NULL return_at never returns)."""
    assert rows(seeded, "v_supply", "route") == [
        {"route": "Midsize", "ready": 2, "adds_per_day": round(2 / 7, 9), "days_of_supply": 7.0,
         "returning_week_1": 1, "returning_week_2": 0, "returning_week_3": 0, "returning_week_4": 1},
        {"route": "SMB", "ready": 3, "adds_per_day": round(2 / 7, 9), "days_of_supply": 10.5,
         "returning_week_1": 0, "returning_week_2": 2, "returning_week_3": 0, "returning_week_4": 0},
    ]


def test_deliverability_rates_and_flags_per_campaign_week(seeded: Warehouse) -> None:
    """v_deliverability: bounces and unsubscribes over emails sent per campaign per week (Sunday and Monday
    apart), flagged 1 above 2% and above 5%; nothing sent: rates and flags NULL."""
    got = [(r["week_start"], r["campaign_id"], r["emails_sent"], r["bounce_rate"], r["unsubscribe_rate"],
            r["bounce_over_2pct"], r["bounce_over_5pct"], r["unsubscribe_over_2pct"], r["unsubscribe_over_5pct"])
           for r in rows(seeded, "v_deliverability", "week_start, campaign_id")]
    assert got == [
        (WEEK_A, "c-ma", 0, None, None, None, None, None, None),
        (WEEK_A, "c-mb", 40, 0.025, 0.0, 1, 0, 0, 0),
        (WEEK_A, "c-smb", 100, 0.03, 0.01, 1, 0, 0, 0),
        (WEEK_B, "c-smb", 200, 0.01, 0.06, 0, 0, 1, 1),
    ]


def test_dnc_growth_per_week_and_source_with_running_total(seeded: Warehouse) -> None:
    """v_dnc_growth: entries added per week per source (Sunday 23:00 and Monday 01:00 in different weeks) and
    the running total per source."""
    assert [(r["week_start"], r["source"], r["added"], r["cumulative"])
            for r in rows(seeded, "v_dnc_growth", "source, week_start")] == [
        (WEEK_B, "instantly_unsubscribe", 1, 1), (dt.date(2026, 3, 16), "instantly_unsubscribe", 1, 2),
        (WEEK_A, "manual", 2, 2), (WEEK_B, "manual", 1, 3),
    ]


def test_analytics_views_are_built_with_the_others_and_hold_no_address(seeded: Warehouse) -> None:
    """Each analytics view is defined once, in views() (so setup.py and a sync's rebuild make it), and none has
    an email column or any value holding an address (aggregates only)."""
    from coldsync.routes import default_routing

    assert [name for name, _sql in views(default_routing("c-smb", "c-mid")) if name in ANALYTICS_VIEWS] == list(
        ANALYTICS_VIEWS)
    for name in ANALYTICS_VIEWS:
        found = seeded.query(f"SELECT * FROM `{{ds}}.{name}`", label="test.view")  # noqa: S608
        assert found, name
        assert all(column != "email" for column in found[0]), name
        assert not [v for row in found for v in row.values() if isinstance(v, str) and "@" in v], name
