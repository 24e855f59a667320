"""Campaign settings that hurt a cold-email sync: a pure check of Instantly's campaign object.

`campaign_settings_problems(campaign, now)` reads the spec's Campaign object (what
`InstantlyClient.get_campaign(...).raw` holds) and returns one `CampaignProblem` per setting that
works against the sync: leads it feeds would be emailed after they replied, without a way to
unsubscribe, past bounce protection, or not at all (a schedule that ended or has no sending days).

What a null or missing field is taken to mean. Instantly's spec types these settings as
"boolean or null" and documents no default; real campaign objects leave unset settings out (none
of the recorded campaigns carries insert_unsubscribe_header, allow_risky_contacts or
disable_bounce_protect, and some lack stop_on_reply). So an unset flag is read as OFF:
- insert_unsubscribe_header unset: no unsubscribe header -> a problem, `warn` (only an explicit
  false is known for sure: `fail`);
- stop_on_reply unset: not known to stop on reply -> a problem, `warn` (explicit false: `fail`);
- allow_risky_contacts unset: risky contacts not allowed -> fine;
- disable_bounce_protect unset: bounce protection on -> fine.
A value that is not a boolean counts as unset. `campaign_schedule` is required by the spec: a
missing one is a problem. Its `start_date`/`end_date` are dates (`YYYY-MM-DD`; a full timestamp is
read by its date as written) in the campaign's timezone; null, empty or missing means no bound.

Messages hold setting names, values and dates only: never a campaign name or anything else that
could name a person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Severity = Literal["warn", "fail"]

#: Where every fix is made through the API (the spec's patchCampaign operation).
PATCH_CAMPAIGN = "PATCH /api/v2/campaigns/{id}"
#: The latest time zone on earth (UTC-12): a date that has passed there has passed everywhere.
_LATEST_ZONE = dt.timezone(dt.timedelta(hours=-12))


@dataclass(frozen=True)
class CampaignProblem:
    """One setting of a campaign that hurts the sync.

    setting   the Campaign field, dotted for nested ones (e.g. `campaign_schedule.end_date`)
    message   what is wrong and why it matters (no personal data)
    fix       where to change it: in Instantly's app and as the API field
    severity  `fail`: the campaign works against the sync as configured; `warn`: risky, or the
              field is unset and Instantly does not document what it does then
    """

    setting: str
    message: str
    fix: str
    severity: Severity


def campaign_settings_problems(campaign: Mapping[str, Any], now: dt.datetime) -> list[CampaignProblem]:
    """The settings of `campaign` that hurt a cold-email sync, in a fixed order (empty when none).

    `now` must be timezone-aware; whether the schedule has ended is judged in the schedules'
    timezones (the module docstring says how null and missing fields are read).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    problems: list[CampaignProblem] = []
    problems += _unsubscribe_header(campaign.get("insert_unsubscribe_header"))
    problems += _stop_on_reply(campaign.get("stop_on_reply"))
    if campaign.get("allow_risky_contacts") is True:
        problems.append(
            CampaignProblem(
                "allow_risky_contacts",
                "allow_risky_contacts is true: leads whose address verified as risky are emailed too, "
                "which raises the bounce rate and hurts the sending domains",
                "In Instantly: the campaign's Options tab, advanced options: stop sending to risky emails. "
                f'API: {PATCH_CAMPAIGN} with "allow_risky_contacts": false',
                "warn",
            )
        )
    if campaign.get("disable_bounce_protect") is True:
        problems.append(
            CampaignProblem(
                "disable_bounce_protect",
                "disable_bounce_protect is true: Instantly keeps sending while emails bounce, so a bad "
                "batch of leads can burn the sending domains",
                "In Instantly: the campaign's Options tab, advanced options: turn bounce protection back on. "
                f'API: {PATCH_CAMPAIGN} with "disable_bounce_protect": false',
                "fail",
            )
        )
    problems += _schedule_problems(campaign.get("campaign_schedule"), now)
    return problems


def _unsubscribe_header(value: object) -> list[CampaignProblem]:
    if value is True:
        return []
    fix = (
        "In Instantly: the campaign's Options tab, advanced options: turn on the unsubscribe link header. "
        f'API: {PATCH_CAMPAIGN} with "insert_unsubscribe_header": true'
    )
    why = (
        "emails go out without a List-Unsubscribe header, so recipients cannot unsubscribe in one click "
        "(Gmail and Yahoo require it of bulk senders) and mark the email as spam instead"
    )
    if value is False:
        return [CampaignProblem("insert_unsubscribe_header", f"insert_unsubscribe_header is false: {why}", fix, "fail")]
    return [
        CampaignProblem(
            "insert_unsubscribe_header",
            f"insert_unsubscribe_header is not set (read as off): {why}",
            fix,
            "warn",
        )
    ]


def _stop_on_reply(value: object) -> list[CampaignProblem]:
    if value is True:
        return []
    fix = (
        "In Instantly: the campaign's Options tab: turn on stopping the sequence when a lead replies. "
        f'API: {PATCH_CAMPAIGN} with "stop_on_reply": true'
    )
    why = "a lead who replied keeps getting the follow-up steps the sync fed it for"
    if value is False:
        return [CampaignProblem("stop_on_reply", f"stop_on_reply is false: {why}", fix, "fail")]
    return [
        CampaignProblem(
            "stop_on_reply",
            f"stop_on_reply is not set and Instantly does not document what it does then; if off, {why}",
            fix,
            "warn",
        )
    ]


def _schedule_problems(schedule: object, now: dt.datetime) -> list[CampaignProblem]:
    where = "In Instantly: the campaign's Schedule tab"
    schedules = schedule.get("schedules") if isinstance(schedule, Mapping) else None
    entries = [s for s in schedules if isinstance(s, Mapping)] if isinstance(schedules, Sequence) else []
    if not isinstance(schedule, Mapping) or not entries:
        return [
            CampaignProblem(
                "campaign_schedule",
                "the campaign has no sending schedule: it sends nothing, so the leads the sync adds wait forever",
                f"{where}: add a schedule with sending days and hours. "
                f"API: {PATCH_CAMPAIGN} with campaign_schedule.schedules (days, timing, timezone)",
                "fail",
            )
        ]
    problems: list[CampaignProblem] = []
    if not any(_sends_on_some_day(entry.get("days")) for entry in entries):
        problems.append(
            CampaignProblem(
                "campaign_schedule.schedules",
                "no schedule has a sending day (every day is off): the campaign sends nothing",
                f"{where}: tick at least one sending day. "
                f'API: {PATCH_CAMPAIGN} with campaign_schedule.schedules[].days, e.g. "1" to "5": true',
                "fail",
            )
        )
    end_text = schedule.get("end_date")
    if end_text is None or (isinstance(end_text, str) and not end_text.strip()):
        return problems
    end = _schedule_date(end_text)
    end_fix = (
        f"{where}: move the end date later or clear it. "
        f"API: {PATCH_CAMPAIGN} with campaign_schedule.end_date (YYYY-MM-DD) or null"
    )
    if end is None:
        problems.append(
            CampaignProblem(
                "campaign_schedule.end_date",
                "campaign_schedule.end_date is not a date (YYYY-MM-DD): whether the schedule has ended is unknown",
                end_fix,
                "warn",
            )
        )
    elif end < _campaign_today(entries, now):
        problems.append(
            CampaignProblem(
                "campaign_schedule.end_date",
                f"the schedule ended on {end.isoformat()}: the campaign sends nothing, so the leads the sync "
                "adds wait forever",
                end_fix,
                "fail",
            )
        )
    return problems


def _sends_on_some_day(days: object) -> bool:
    return isinstance(days, Mapping) and any(value is True for value in days.values())


def _schedule_date(value: object) -> dt.date | None:
    """`YYYY-MM-DD`, or the date part (as written) of a full timestamp; None when neither."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        return None


def _campaign_today(entries: Sequence[Mapping[str, Any]], now: dt.datetime) -> dt.date:
    """Today's date in the campaign's timezone: the earliest over its schedules' timezones (so a schedule
    counts as ended only once its end date has passed in every one), UTC-12 when none is known."""
    days = []
    for entry in entries:
        name = entry.get("timezone")
        if not isinstance(name, str) or not name.strip():
            continue
        try:
            days.append(now.astimezone(ZoneInfo(name.strip())).date())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return min(days) if days else now.astimezone(_LATEST_ZONE).date()
