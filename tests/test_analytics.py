"""ops_campaign_daily (coldsync.phases.analytics) and the engagement columns of history: what is read, when,
and what is kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldsync.instantly.simulator import FaultSpec, InstantlySimulator
from coldsync.phases.analytics import campaigns_due, day_window
from coldsync.rules import engagement_of
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import build, reads_campaign_daily
from tests.instantly_fixtures import make_client, make_sim

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday
TODAY, YESTERDAY = NOW.date(), NOW.date() - dt.timedelta(days=1)
SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
MIDSIZE = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"


def test_a_campaign_is_due_hourly_and_yesterday_is_read_until_read_after_midnight() -> None:
    """campaigns_due: never read -> yesterday and today; read 59 minutes ago -> not due; read 60 minutes ago
    today -> today only; last read before midnight -> yesterday too; a time in the future or unreadable -> due."""
    read = {"never": None, "fresh": (NOW - dt.timedelta(minutes=59)).isoformat(),
            "hour": (NOW - dt.timedelta(minutes=60)).isoformat(), "night": "2026-03-01T23:30:00+00:00",
            "future": (NOW + dt.timedelta(minutes=5)).isoformat(), "junk": "yesterday-ish"}
    both, today = [YESTERDAY, TODAY], [TODAY]
    assert campaigns_due(read, list(read), NOW) == {"never": both, "hour": today, "night": both, "future": both,
                                                    "junk": both}
    just_after_midnight = dt.datetime(2026, 3, 2, 0, 40, tzinfo=UTC)
    assert campaigns_due({"c": "2026-03-01T23:30:00+00:00"}, ["c"], just_after_midnight) == {"c": both}


def test_after_a_gap_the_days_since_the_last_read_are_read_back_to_seven() -> None:
    """campaigns_due after runs stopped: last read Fri 02-27 10:00 -> 02-27 (its day: the counters after 10:00)
    to Mon 03-02, 4 days; last read 20 days ago -> the 7 days before today and today (02-23 .. 03-02, 8 days)."""
    four = campaigns_due({"c": "2026-02-27T10:00:00+00:00"}, ["c"], NOW)["c"]
    assert four == [dt.date(2026, 2, 27), dt.date(2026, 2, 28), dt.date(2026, 3, 1), TODAY]
    capped = campaigns_due({"c": (NOW - dt.timedelta(days=20)).isoformat()}, ["c"], NOW)["c"]
    assert (capped[0], capped[-1], len(capped)) == (dt.date(2026, 2, 23), TODAY, 8)


def test_a_day_window_selects_exactly_that_utc_day() -> None:
    """day_window: a past day runs from its midnight to its last millisecond; today ends now."""
    assert day_window(YESTERDAY, NOW) == (dt.datetime(2026, 3, 1, tzinfo=UTC),
                                          dt.datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=UTC))
    assert day_window(TODAY, NOW) == (dt.datetime(2026, 3, 2, tzinfo=UTC), NOW)


def test_engagement_reads_the_counts_and_the_step_of_a_lead() -> None:
    """engagement_of: reply/open counts as given (not whole numbers >= 0: None); step from status_summary's
    '<sequence>_<step>_<variant>' id, 0-based, as the recorded leads write it (else the raw id, no step)."""
    assert engagement_of({"email_reply_count": 2, "email_open_count": 5,
                          "status_summary": {"lastStep": {"stepID": "0_2_0"}}}) == {
        "reply_count": 2, "open_count": 5, "last_step_id": "0_2_0", "step_reached": 3}
    assert engagement_of({"email_reply_count": True, "email_open_count": -1, "status_summary": {},
                          "last_step_id": "step-a"}) == {
        "reply_count": None, "open_count": None, "last_step_id": "step-a", "step_reached": None}
    assert engagement_of({"status_summary": {"lastStep": {"stepID": "0_0_0"}}})["step_reached"] == 1


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.sim: InstantlySimulator = make_sim(seed=5, now=NOW)
        self.sim.start()
        self.sim.create_campaign("SMB", campaign_id=SMB)
        self.sim.create_campaign("Midsize", campaign_id=MIDSIZE)
        self.settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=MIDSIZE,
                                      inventory_cap="40", target_new_leads_per_run="40",
                                      instantly_api_key="sk-live-ZQX9-coldsync-never-print-me-7731",
                                      max_bounce_rate="100")
        self.warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
        build(self.warehouse, self.settings, list(generate_source_rows(200, seed=3)), as_of=NOW)
        self.client = make_client(self.sim)

    def close(self) -> None:
        self.client.close()
        self.sim.stop()
        self.warehouse.close()

    def run(self, minutes: int, **changes: Any) -> tuple[SyncResult, int]:
        """One run `minutes` after NOW; its exit code checked; the ops_campaign_daily reads it made."""
        since = len(self.sim.request_log)
        settings = dataclasses.replace(self.settings, **changes) if changes else self.settings
        now = NOW + dt.timedelta(minutes=minutes)
        result = run_sync(settings, self.warehouse, self.client, now=now)
        assert result.exit_code == 0, result.report.render_text()
        reads = sum(1 for r in self.sim.request_log[since:] if reads_campaign_daily(r.template, r.query, now.date()))
        return result, reads

    def kept(self) -> list[dict[str, Any]]:
        return self.warehouse.query(
            "SELECT campaign_id, day, route, arm, leads, contacted, new_leads_contacted, emails_sent, opened, opens, "
            "replied, replies, bounced, unsubscribed, interested FROM `{ds}.ops_campaign_daily` "
            "ORDER BY route, day", label="test.daily")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = World(tmp_path)
    try:
        yield built
    finally:
        built.close()


def row(campaign: str, day: dt.date, route: str, leads: int | None, **counts: int | None) -> dict[str, Any]:
    base = dict.fromkeys(("contacted", "new_leads_contacted", "emails_sent", "opened", "opens", "replied",
                          "replies", "bounced", "unsubscribed", "interested"), 0)
    return {"campaign_id": campaign, "day": day, "route": route, "arm": route, "leads": leads, **base, **counts}


def test_housekeeping_keeps_each_campaign_day_once_an_hour_and_merges(world: World) -> None:
    """A live run keeps one row per campaign per day (yesterday and today) with the simulator's counters (sent,
    contacted, opens, replies from the daily analytics; bounces and unsubscribes from the day-windowed analytics;
    leads: the preflight's count, today only); a run 30 minutes later reads nothing; one an hour later reads
    today again and replaces its counters in place (no second row); a dry run reads and writes nothing."""
    sim = world.sim
    sim.record_daily(SMB, YESTERDAY, sent=120, contacted=100, new_leads_contacted=40, opened=30, unique_opened=25,
                     replies=4, bounced=3, unsubscribed=1)
    sim.record_daily(SMB, TODAY, sent=10, contacted=10, new_leads_contacted=2, bounced=1)
    sim.record_daily(MIDSIZE, TODAY, sent=7, contacted=7, new_leads_contacted=7, unsubscribed=2)
    _, reads = world.run(0, dry_run=True)
    assert reads == 0 and world.kept() == []
    first, reads = world.run(0)
    leads = {cid: len(sim.leads(cid)) for cid in (SMB, MIDSIZE)}  # the preflight ran before the adds
    assert first.report.added == 40 and reads == 2 + 2  # one windowed call per day + one daily call per campaign
    assert world.kept() == [
        row(MIDSIZE, YESTERDAY, "Midsize", None),
        row(MIDSIZE, TODAY, "Midsize", 0, emails_sent=7, contacted=7, new_leads_contacted=7, unsubscribed=2),
        row(SMB, YESTERDAY, "SMB", None, emails_sent=120, contacted=100, new_leads_contacted=40, opens=30,
            opened=25, replies=4, replied=4, bounced=3, unsubscribed=1),
        row(SMB, TODAY, "SMB", 0, emails_sent=10, contacted=10, new_leads_contacted=2, bounced=1),
    ]
    assert first.report.campaign_daily_at == {SMB: NOW.isoformat(), MIDSIZE: NOW.isoformat()}
    _, reads = world.run(30)
    assert reads == 0
    sim.record_daily(SMB, TODAY, sent=5, bounced=1)
    _, reads = world.run(60)
    assert reads == 1 + 2  # today only: yesterday was read after midnight
    kept = world.kept()
    assert len(kept) == 4
    assert kept[3] == row(SMB, TODAY, "SMB", leads[SMB], emails_sent=15, contacted=10, new_leads_contacted=2,
                          bounced=2)
    assert kept[1]["leads"] == leads[MIDSIZE] and kept[2]["emails_sent"] == 120


def test_runs_stopped_for_days_lose_no_daily_counters(world: World) -> None:
    """Runs stop after Mon 15:00 and resume Fri 15:00: that run reads Mon (its evening: 10 + 5 sent) to Fri in
    ONE daily call per campaign, plus one windowed call each for Thu and Fri (2 + 2 reads); Tue's 11 sent are
    kept, its 2 bounces are not (one windowed call per day: yesterday and today only), and Mon keeps the 1
    bounce the first run read."""
    sim = world.sim
    sim.record_daily(SMB, TODAY, sent=10, contacted=10, bounced=1)
    world.run(0)
    day = [TODAY + dt.timedelta(days=k) for k in range(5)]  # Mon .. Fri
    sim.record_daily(SMB, day[0], sent=5)
    sim.record_daily(SMB, day[1], sent=11, bounced=2)
    sim.record_daily(SMB, day[3], sent=13, contacted=13, bounced=1)
    _, reads = world.run(4 * 24 * 60)
    assert reads == 2 + 2
    smb = {r["day"]: (r["emails_sent"], r["bounced"]) for r in world.kept() if r["campaign_id"] == SMB}
    assert smb == {YESTERDAY: (0, 0), day[0]: (15, 1), day[1]: (11, None), day[2]: (0, None), day[3]: (13, 1),
                   day[4]: (0, 0)}
    assert len(world.kept()) == 2 * 6


def test_a_failed_analytics_call_is_a_note_and_the_campaign_is_read_again(world: World) -> None:
    """A daily-analytics call answering 400 leaves the run successful with a housekeeping note; that
    campaign's row keeps NULL daily counters (bounces still kept) and it is read again by the next run."""
    world.sim.record_daily(SMB, TODAY, sent=10, bounced=1)
    world.sim.set_fault("GET /campaigns/analytics/daily", FaultSpec(statuses=[400] * 4))
    result, _ = world.run(0)
    notes = result.report.phase("housekeeping").notes
    assert any("daily analytics of a campaign unavailable" in note for note in notes), notes
    today = {r["campaign_id"]: r for r in world.kept() if r["day"] == TODAY}
    assert (today[SMB]["emails_sent"], today[SMB]["bounced"]) == (None, 1)
    assert result.report.campaign_daily_at == {}
    _, reads = world.run(30)
    assert reads == 2 + 2
    assert {r["campaign_id"]: r["emails_sent"] for r in world.kept() if r["day"] == TODAY}[SMB] == 10


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array",
            type(None): "null"}[type(value)]


def _spec_type(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    types = {str(t) for t in declared} if isinstance(declared, list) else {str(declared)}
    return types | ({"integer"} if "number" in types else set())  # a whole number is a JSON number too


def test_simulator_analytics_answers_have_every_recorded_and_spec_field_with_its_type() -> None:
    """The simulator's /campaigns/analytics (windowed or not) and /campaigns/analytics/daily items carry every
    field of the recorded real answers (bare arrays, as recorded) and every property of the spec's item schema,
    each of the spec's JSON type: what ops_campaign_daily reads exists in the stand-in too."""
    import json

    from coldsync.instantly.contract import TRIMMED_PATH
    from tests.instantly_fixtures import recorded

    spec = json.loads(Path(TRIMMED_PATH).read_text(encoding="utf-8"))["paths"]
    sim = make_sim(now=NOW)
    sim.start()
    try:
        campaign = sim.create_campaign("SMB")
        sim.record_daily(campaign, TODAY, sent=3, contacted=2, new_leads_contacted=1, bounced=1)
        with make_client(sim) as client:
            answers: dict[str, list[list[Any]]] = {
                "/api/v2/campaigns/analytics": [client.campaign_analytics([campaign]),
                                                client.campaign_analytics([campaign], start_date=TODAY, end_date=NOW)],
                "/api/v2/campaigns/analytics/daily": [client.daily_campaign_analytics(campaign, TODAY, TODAY)],
            }
    finally:
        sim.stop()
    for name, path in (("get-campaign-analytics", "/api/v2/campaigns/analytics"),
                       ("get-daily-campaign-analytics", "/api/v2/campaigns/analytics/daily")):
        real: list[dict[str, Any]] = [item for exchange in recorded(name) for item in exchange["response_body"]]
        assert all(isinstance(exchange["response_body"], list) for exchange in recorded(name))
        items = [dict(parsed.raw) for answer in answers[path] for parsed in answer]
        assert items, path
        properties = spec[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"][
            "properties"]
        for item in items:
            for key, value in (kv for obj in real for kv in obj.items()):
                assert key in item and _json_type(item[key]) == _json_type(value), (path, key)
            for key, schema in properties.items():
                assert key in item, (path, key)
                assert _json_type(item[key]) in _spec_type(schema), (path, key, item[key])
