"""Campaign analytics kept in the warehouse: one `ops_campaign_daily` row per managed campaign per UTC day.

Run by housekeeping (live runs only: a dry run reads and writes nothing here), at most once an hour per
campaign: the time each campaign was last read is kept in the run summary (`campaign_daily_at`), as the
supply signals are (phases/signals.py), so a quiet 30-minute schedule pays these calls every other run.

Per refresh, from Instantly (official spec operations):
- `getDailyCampaignAnalytics` (GET /api/v2/campaigns/analytics/daily), one call per campaign: sent,
  contacted, new_leads_contacted, opened / unique_opened, replies / unique_replies and opportunities per day;
- `getCampaignAnalytics` (GET /api/v2/campaigns/analytics), one call per day for all the campaigns that
  need it, windowed to that UTC day: bounced_count and unsubscribed_count (the daily endpoint has neither);
  `exclude_total_leads_count=true`, since the lead count is the preflight's (sync.preflight reads every
  managed campaign's `leads_count` each run: reused here, not asked again).
Today is read on every refresh, and every day since the campaign's last refresh, that day included (so
the row of a finished day ends up with the day's full counts, also after runs stopped for days), at most
MAX_DAYS_BACK days before today; never read: yesterday and today. The daily call takes a date range, so the
days since the last read cost no more calls; the windowed call gives one total per window, so bounces and
unsubscribes cost one call per day and are read for yesterday and today only (WINDOWED_DAYS): an older day
read again keeps the bounces and unsubscribes it had (none for a day no run saw). Each row is MERGEd on
(campaign_id, day): re-reading a day replaces its counters, never adds a second row; a counter read as NULL
keeps its value.

The supply signals' own reads (7 complete days, a 7-day window) cannot be reused for these rows: their
windows do not give today's counters nor one day's bounces, so asking for the same call again would not
save one.

A failed call is a note in the housekeeping phase, never a failed run: that campaign's counters from it
stay as they were (NULL for a new row) and the campaign is read again by the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from coldsync.instantly.client import CampaignAnalytics, DailyCampaignAnalytics
from coldsync.instantly.errors import InstantlyError
from coldsync.phases.context import RunContext
from coldsync.rules import parse_timestamp
from coldsync.warehouse.base import WarehouseError

log = logging.getLogger("coldsync.analytics")

REFRESH_EVERY = dt.timedelta(hours=1)
"""A campaign's analytics are read again once its last read is this old."""

MAX_DAYS_BACK = 7
"""After a gap in the runs, the days since a campaign's last read are read again back to this many days
before today (the daily call's range; older days stay as the last read left them)."""

WINDOWED_DAYS = 2
"""The most recent days (yesterday and today) whose bounces and unsubscribes are read (one windowed call each)."""

SUMMARY_KEY = "campaign_daily_at"
"""Run summary key: campaign id -> ISO-8601 UTC time its ops_campaign_daily rows were last read."""


def campaigns_due(last_read: Mapping[str, Any], campaign_ids: list[str], now: dt.datetime) -> dict[str, list[dt.date]]:
    """Campaign id -> the UTC days to read now (oldest first), for the campaigns due (pure).

    Due: never read, read REFRESH_EVERY ago or more, or the stored time is unreadable or in the future.
    Days: from the UTC day of the last read (its counters after that read are missing) to today, starting
    at most MAX_DAYS_BACK days before today; yesterday and today when the last read is unknown (never,
    unreadable, in the future)."""
    today = now.astimezone(dt.UTC).date()
    out: dict[str, list[dt.date]] = {}
    for campaign_id in campaign_ids:
        read_at = parse_timestamp(last_read.get(campaign_id))
        if read_at is not None and dt.timedelta(0) <= now - read_at < REFRESH_EVERY:
            continue
        if read_at is None or read_at > now:
            first = today - dt.timedelta(days=1)
        else:
            first = max(read_at.astimezone(dt.UTC).date(), today - dt.timedelta(days=MAX_DAYS_BACK))
        out[campaign_id] = [first + dt.timedelta(days=k) for k in range((today - first).days + 1)]
    return out


def day_window(day: dt.date, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end] instants that select exactly the UTC day `day` (pure): its midnight, and its last
    millisecond (or `now` for today). A date-only end would be read as that day's midnight by Instantly."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1) - dt.timedelta(milliseconds=1)
    return start, min(end, now.astimezone(dt.UTC))


def daily_rows(campaign: Any, days: list[dt.date], daily: list[DailyCampaignAnalytics] | None,
               windows: Mapping[dt.date, CampaignAnalytics | None], *, today: dt.date,
               fetched_at: dt.datetime, run_id: str) -> list[dict[str, Any]]:
    """The ops_campaign_daily rows of one campaign (pure). `daily`: its daily rows (None: the call failed,
    counters NULL); `windows`: day -> its windowed analytics item (None or absent: failed, missing, or a
    day before WINDOWED_DAYS; bounced and unsubscribed NULL). A day the daily answer leaves out had no
    activity: zeros. `leads` only on today's row (the preflight's count, `campaign.leads_count`)."""
    by_day = {row.date: row for row in daily or []}
    rows: list[dict[str, Any]] = []
    for day in days:
        d = by_day.get(day)
        w = windows.get(day)

        def counter(name: str, found: DailyCampaignAnalytics | None = d) -> int | None:
            if daily is None:
                return None
            return int(getattr(found, name)) if found is not None else 0

        rows.append({
            "campaign_id": campaign.campaign_id, "day": day, "route": campaign.route, "arm": campaign.arm,
            "leads": campaign.leads_count if day == today else None,
            "contacted": counter("contacted"), "new_leads_contacted": counter("new_leads_contacted"),
            "emails_sent": counter("sent"), "opened": counter("unique_opened"), "opens": counter("opened"),
            "replied": counter("unique_replies"), "replies": counter("replies"),
            "bounced": w.bounced_count if w is not None else None,
            "unsubscribed": w.unsubscribed_count if w is not None else None,
            "interested": counter("opportunities"), "fetched_at": fetched_at, "run_id": run_id,
        })
    return rows


def record_campaign_daily(ctx: RunContext) -> None:
    """Read the due campaigns' analytics and MERGE their rows (see the module docstring). Never raises for
    an Instantly or warehouse failure: each is a note of the housekeeping phase. Sets the run summary's
    SUMMARY_KEY (the previous run's times carried over for campaigns not read now)."""
    phase = ctx.report.phase("housekeeping")
    previous = ctx.store.last_summary.get(SUMMARY_KEY)
    last_read: dict[str, Any] = dict(previous) if isinstance(previous, Mapping) else {}
    campaigns = {c.campaign_id: c for c in ctx.campaigns.values() if not c.retired}
    read_at = {cid: at for cid, at in last_read.items() if cid in campaigns}
    ctx.report.campaign_daily_at = read_at
    due = campaigns_due(read_at, list(campaigns), ctx.now)
    if not due:
        return
    now = ctx.now.astimezone(dt.UTC)
    windows: dict[str, dict[dt.date, CampaignAnalytics | None]] = {cid: {} for cid in due}
    failed: set[str] = set()
    recent = now.date() - dt.timedelta(days=WINDOWED_DAYS - 1)
    for day in sorted({day for days in due.values() for day in days if day >= recent}):
        ids = [cid for cid, days in due.items() if day in days]
        start, end = day_window(day, now)
        try:
            items = ctx.client.campaign_analytics(ids, start_date=start, end_date=end, exclude_total_leads_count=True)
        except InstantlyError as exc:
            phase.notes.append(f"campaign analytics of {day.isoformat()} unavailable ({exc.summary}): bounces and "
                               "unsubscribes of that day not kept, read again next run")
            failed.update(ids)
            continue
        found = {item.campaign_id.lower(): item for item in items}
        for cid in ids:
            windows[cid][day] = found.get(cid.lower())
    rows: list[dict[str, Any]] = []
    for cid, days in due.items():
        daily: list[DailyCampaignAnalytics] | None = None
        try:
            daily = ctx.client.daily_campaign_analytics(cid, days[0], days[-1])
        except InstantlyError as exc:
            phase.notes.append(f"daily analytics of a campaign unavailable ({exc.summary}): its daily counters "
                               "not kept, read again next run")
            failed.add(cid)
        rows += daily_rows(campaigns[cid], days, daily, windows[cid], today=now.date(), fetched_at=now,
                           run_id=ctx.run_id)
    try:
        written = ctx.store.record_campaign_daily(rows)
    except WarehouseError as exc:
        phase.notes.append(f"campaign analytics not kept ({exc}): run `python setup.py` if ops_campaign_daily "
                           "is missing; read again next run")
        return
    phase.counts["campaign days kept"] += written
    read_at.update({cid: now.isoformat() for cid in due if cid not in failed})
