"""Campaign settings that hurt the sync: which ones are flagged, how severely, and what the fix says."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from coldsync.campaign_health import PATCH_CAMPAIGN, CampaignProblem, campaign_settings_problems
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator
from tests.instantly_fixtures import (  # noqa: F401 - fixtures are used by name
    FakeClock,
    client_fixture,
    clock_fixture,
    recorded,
    sim_fixture,
)

UTC = dt.UTC
#: 2026-03-02 15:00 UTC: 09:00 the same day in Chicago (CST, UTC-6), 17:00 in Helsinki (UTC+2).
NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WEEKDAYS = {"0": False, "1": True, "2": True, "3": True, "4": True, "5": True, "6": False}
GOOD: dict[str, Any] = {
    "id": "9b6f458e-6dc5-4762-83d5-a528aedd2235",
    "name": "SMB",
    "status": 1,
    "insert_unsubscribe_header": True,
    "stop_on_reply": True,
    "allow_risky_contacts": False,
    "disable_bounce_protect": False,
    "daily_limit": 50,
    "campaign_schedule": {
        "start_date": "2026-01-05",
        "schedules": [
            {
                "name": "Weekdays",
                "timing": {"from": "09:00", "to": "17:00"},
                "days": WEEKDAYS,
                "timezone": "America/Chicago",
            }
        ],
    },
}


def campaign(**changes: Any) -> dict[str, Any]:
    """GOOD with top-level fields replaced (a value of ... removes the field)."""
    result = copy.deepcopy(GOOD)
    for name, value in changes.items():
        if value is ...:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def with_schedule(
    *, end_date: Any = ..., timezones: tuple[str, ...] = ("America/Chicago",), days: Any = WEEKDAYS
) -> dict[str, Any]:
    """GOOD with one schedule per timezone (each with `days`) and, unless ..., that end_date."""
    schedule: dict[str, Any] = {
        "start_date": "2026-01-05",
        "schedules": [
            {"name": "Weekdays", "timing": {"from": "09:00", "to": "17:00"}, "days": days, "timezone": zone}
            for zone in timezones
        ],
    }
    if end_date is not ...:
        schedule["end_date"] = end_date
    return campaign(campaign_schedule=schedule)


def flagged(obj: dict[str, Any], now: dt.datetime = NOW) -> list[tuple[str, str]]:
    """(setting, severity) of every problem found, in order."""
    return [(p.setting, p.severity) for p in campaign_settings_problems(obj, now)]


# --------------------------------------------------------------------------------------------------


def test_a_well_configured_campaign_has_no_problem() -> None:
    """Header on, stop on reply, no risky contacts, bounce protection on, weekdays without end: nothing flagged."""
    assert campaign_settings_problems(GOOD, NOW) == []


def test_the_simulators_default_campaign_has_no_problem(sim: InstantlySimulator, client: InstantlyClient) -> None:
    """The campaign object the simulator serves (through get_campaign) is a well-configured one."""
    cid = sim.create_campaign("SMB")
    assert campaign_settings_problems(client.get_campaign(cid).raw, sim.now) == []


def test_the_recorded_real_campaign_lacks_only_the_unsubscribe_header() -> None:
    """The recorded live campaign leaves the header unset (warn); its other settings pass."""
    real = recorded("get-campaign")[0]["response_body"]
    assert "insert_unsubscribe_header" not in real
    assert flagged(real) == [("insert_unsubscribe_header", "warn")]


def test_every_explicitly_bad_flag_is_flagged_with_its_severity() -> None:
    """Header false and stop_on_reply false fail, risky contacts warn, bounce protection disabled fails."""
    bad = campaign(
        insert_unsubscribe_header=False, stop_on_reply=False, allow_risky_contacts=True, disable_bounce_protect=True
    )
    assert flagged(bad) == [
        ("insert_unsubscribe_header", "fail"),
        ("stop_on_reply", "fail"),
        ("allow_risky_contacts", "warn"),
        ("disable_bounce_protect", "fail"),
    ]


@pytest.mark.parametrize("unset", [None, ..., "true"])
def test_unset_flags_are_read_as_off(unset: Any) -> None:
    """Null, missing or non-boolean: header and stop_on_reply warn, risky contacts and bounce protection pass."""
    obj = campaign(
        insert_unsubscribe_header=unset, stop_on_reply=unset, allow_risky_contacts=unset, disable_bounce_protect=unset
    )
    assert flagged(obj) == [("insert_unsubscribe_header", "warn"), ("stop_on_reply", "warn")]
    messages = [p.message for p in campaign_settings_problems(obj, NOW)]
    assert messages[0].startswith("insert_unsubscribe_header is not set (read as off)")
    assert messages[1].startswith("stop_on_reply is not set")


def test_a_schedule_that_ended_fails_with_its_end_date() -> None:
    """end_date 2026-03-01 when it is 2026-03-02 in Chicago: the schedule ended, and the message says when."""
    (problem,) = campaign_settings_problems(with_schedule(end_date="2026-03-01"), NOW)
    assert (problem.setting, problem.severity) == ("campaign_schedule.end_date", "fail")
    assert problem.message.startswith("the schedule ended on 2026-03-01:")
    assert flagged(with_schedule(end_date="2026-03-02")) == []
    assert flagged(with_schedule(end_date="2026-03-01T00:00:00.000Z")) == [("campaign_schedule.end_date", "fail")]


def test_the_end_date_is_judged_in_the_campaigns_timezone() -> None:
    """At 05:00 UTC on 03-02 it is still 03-01 in Chicago (not ended) but 03-02 in Helsinki (ended)."""
    early = dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    assert flagged(with_schedule(end_date="2026-03-01", timezones=("America/Chicago",)), early) == []
    assert flagged(with_schedule(end_date="2026-03-01", timezones=("Europe/Helsinki",)), early) == [
        ("campaign_schedule.end_date", "fail")
    ]
    both = with_schedule(end_date="2026-03-01", timezones=("Europe/Helsinki", "America/Chicago"))
    assert flagged(both, early) == []


def test_without_a_known_timezone_the_end_date_is_judged_at_utc_minus_12() -> None:
    """An unknown timezone: ended only once the end date has passed everywhere (11:59 UTC no, 12:00 UTC yes)."""
    obj = with_schedule(end_date="2026-03-01", timezones=("Mars/Olympus_Mons",))
    assert flagged(obj, dt.datetime(2026, 3, 2, 11, 59, tzinfo=UTC)) == []
    assert flagged(obj, dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)) == [("campaign_schedule.end_date", "fail")]


@pytest.mark.parametrize("end_date", [None, "", ...])
def test_no_end_date_means_no_end(end_date: Any) -> None:
    """A null, empty or missing end_date is a schedule without end."""
    assert flagged(with_schedule(end_date=end_date)) == []


def test_an_unreadable_end_date_is_a_warning() -> None:
    """An end_date that is not a date cannot be judged: a warning naming the field."""
    assert flagged(with_schedule(end_date="next spring")) == [("campaign_schedule.end_date", "warn")]
    assert flagged(with_schedule(end_date=20260301)) == [("campaign_schedule.end_date", "warn")]


@pytest.mark.parametrize("days", [dict.fromkeys(WEEKDAYS, False), {}, None, {"1": "yes"}])
def test_a_schedule_without_sending_days_fails(days: Any) -> None:
    """Every day false, no days at all, or no boolean true: the campaign never sends."""
    assert flagged(with_schedule(days=days)) == [("campaign_schedule.schedules", "fail")]


def test_one_schedule_with_a_sending_day_is_enough() -> None:
    """Of two schedules, one with a sending day keeps the campaign sending."""
    obj = with_schedule(timezones=("America/Chicago", "Europe/Helsinki"))
    obj["campaign_schedule"]["schedules"][0]["days"] = dict.fromkeys(WEEKDAYS, False)
    assert flagged(obj) == []


@pytest.mark.parametrize("schedule", [..., None, {}, {"schedules": []}, {"schedules": ["x"]}, "weekdays"])
def test_no_schedule_fails(schedule: Any) -> None:
    """A missing, null or empty campaign_schedule (the spec requires one) is one failure."""
    assert flagged(campaign(campaign_schedule=schedule)) == [("campaign_schedule", "fail")]


def test_an_ended_schedule_without_days_gives_both_problems() -> None:
    """No sending day and an end date in the past are two separate problems, in that order."""
    obj = with_schedule(end_date="2025-12-31", days=dict.fromkeys(WEEKDAYS, False))
    assert flagged(obj) == [("campaign_schedule.schedules", "fail"), ("campaign_schedule.end_date", "fail")]


def test_fixes_name_the_app_and_the_api_field() -> None:
    """Every fix says where in Instantly to change the setting and which API field of patchCampaign holds it."""
    obj = campaign(
        insert_unsubscribe_header=False,
        stop_on_reply=False,
        allow_risky_contacts=True,
        disable_bounce_protect=True,
        campaign_schedule={"end_date": "2025-12-31", "schedules": [{"days": {}, "timezone": "UTC"}]},
    )
    problems = campaign_settings_problems(obj, NOW)
    assert [p.setting for p in problems] == [
        "insert_unsubscribe_header",
        "stop_on_reply",
        "allow_risky_contacts",
        "disable_bounce_protect",
        "campaign_schedule.schedules",
        "campaign_schedule.end_date",
    ]
    for problem in problems:
        assert problem.fix.startswith("In Instantly: the campaign's ")
        assert f"API: {PATCH_CAMPAIGN} with " in problem.fix
        assert problem.setting.rpartition(".")[2] in problem.fix


def test_messages_hold_no_personal_data() -> None:
    """A campaign and schedule named after a person, with an address: no name or address reaches any text."""
    obj = campaign(
        name="Alex Example <alex.example@example.com>",
        insert_unsubscribe_header=False,
        stop_on_reply=None,
        allow_risky_contacts=True,
        disable_bounce_protect=True,
        campaign_schedule={
            "end_date": "2025-12-31",
            "schedules": [{"name": "Alex's days", "days": {"1": False}, "timezone": "Europe/Helsinki"}],
        },
    )
    problems = campaign_settings_problems(obj, NOW)
    assert len(problems) == 6
    for problem in problems:
        for text in (problem.message, problem.fix):
            assert "Alex" not in text and "@" not in text


def test_problems_are_plain_values() -> None:
    """A problem is a frozen value: equal when its fields are equal."""
    first = campaign_settings_problems(campaign(disable_bounce_protect=True), NOW)
    second = campaign_settings_problems(campaign(disable_bounce_protect=True), NOW)
    assert first == second and isinstance(first[0], CampaignProblem)
    with pytest.raises(AttributeError):
        first[0].severity = "warn"  # type: ignore[misc]


def test_a_naive_now_is_refused() -> None:
    """Without a timezone `now` cannot be placed in the campaign's day: ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        campaign_settings_problems(GOOD, dt.datetime(2026, 3, 2, 15, 0))


def test_settings_changed_in_the_simulator_are_flagged_through_the_client(
    sim: InstantlySimulator, client: InstantlyClient
) -> None:
    """Risky contacts allowed and a schedule that ended yesterday, as served over HTTP: warn, then fail."""
    cid = sim.create_campaign("SMB")
    ended = copy.deepcopy(GOOD["campaign_schedule"])
    ended["end_date"] = (sim.now - dt.timedelta(days=2)).date().isoformat()
    sim.set_campaign_settings(cid, allow_risky_contacts=True, campaign_schedule=ended)
    assert flagged(dict(client.get_campaign(cid).raw), sim.now) == [
        ("allow_risky_contacts", "warn"),
        ("campaign_schedule.end_date", "fail"),
    ]
