"""What each managed campaign can send and how it is doing: the top-up's supply sizing and its
deliverability guard read these, at most once an hour per campaign.

Per campaign, from Instantly (official spec operations):
- `getDailyCampaignAnalytics` (GET /api/v2/campaigns/analytics/daily): `new_leads_contacted` per day for
  the last SIZING_DAYS complete UTC days: what the campaign really starts per day (its throughput);
- `getCampaignSendingStatus` (GET /api/v2/campaigns/{id}/sending-status): `waiting_for_leads` says it
  has nothing left to start (its backlog is 0, and its throughput was limited by leads, not capacity);
  not asked of a campaign this run's analytics count empty while the warehouse tracks no lead there
  (nothing to start: waiting for leads, backlog 0, status unknown);
- GET /api/v2/campaigns/analytics with `start_date`/`end_date` (one call for every campaign): emails
  sent and bounced over the last 7 days, for the bounce rate;
- `listLeads` (POST /api/v2/leads/list, filter FILTER_VAL_NOT_CONTACTED): the leads the campaign has not
  started yet (its backlog), counted only as far as sizing needs: at most SUPPLY_DAYS x rate + 1 leads,
  so a campaign with a big backlog costs a page or a few, never a full listing. (The analytics'
  `contacted_count` is not used for this: the spec does not say whether it still counts leads that were
  deleted, which the drain does every run.)
The figures are kept in the run summary (`supply_signals`) with the time they were read; a run reuses
the last successful run's figures while they are younger than SIGNALS_MAX_AGE (the leads the warehouse
has added to the campaign since they were read then count in its backlog: they have not been contacted
by the time the listing would have counted them), so a quiet schedule pays
these calls once an hour, not every 30 minutes. A call that fails leaves that figure unknown: sizing is
then off for the campaign (the route's share still applies) and the guard does not judge it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from coldsync.instantly.client import MAX_PAGE_SIZE, LeadFilter
from coldsync.instantly.errors import InstantlyError
from coldsync.phases.context import RunContext
from coldsync.rules import parse_timestamp

log = logging.getLogger("coldsync.signals")

SIZING_DAYS = 7
"""Complete UTC days of daily analytics that make a campaign's throughput."""

BOUNCE_WINDOW_DAYS = 7
MIN_BOUNCE_SAMPLE = 200
"""Emails sent in the window before a bounce rate is judged: 4 bounces of 70 emails is noise, not 5.7%
(at 200 emails and a true rate of 2%, the chance of reading above 5% is well under 1%)."""

SIGNALS_MAX_AGE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class CampaignSignals:
    """One campaign's figures (None: unknown). `fetched_at` is ISO-8601 UTC."""

    fetched_at: str
    daily_new: list[int] | None = None  # new leads contacted per day, oldest first, SIZING_DAYS days
    waiting_for_leads: bool = False
    sending_status: str | None = None
    sent_7d: int | None = None
    bounced_7d: int | None = None
    backlog: int | None = None  # leads not yet contacted when read (a lower bound past what sizing needs)
    reused: bool = False  # read by an earlier run (not stored): leads added since then count in the backlog

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CampaignSignals | None:
        """From a stored summary; None when the shape is not ours (an older version, a hand edit)."""
        try:
            daily = data.get("daily_new")
            return cls(
                fetched_at=str(data["fetched_at"]),
                daily_new=[int(x) for x in daily] if isinstance(daily, list) else None,
                waiting_for_leads=bool(data.get("waiting_for_leads")),
                sending_status=str(data["sending_status"]) if data.get("sending_status") is not None else None,
                sent_7d=int(data["sent_7d"]) if data.get("sent_7d") is not None else None,
                bounced_7d=int(data["bounced_7d"]) if data.get("bounced_7d") is not None else None,
                backlog=int(data["backlog"]) if data.get("backlog") is not None else None,
                reused=True,
            )
        except (KeyError, TypeError, ValueError):
            return None


def _fresh(previous: Mapping[str, Any], now: dt.datetime) -> CampaignSignals | None:
    signal = CampaignSignals.from_json(previous) if isinstance(previous, Mapping) else None
    if signal is None:
        return None
    fetched = parse_timestamp(signal.fetched_at)
    if fetched is None or not dt.timedelta(0) <= now - fetched < SIGNALS_MAX_AGE:
        return None
    return signal


def campaign_signals(ctx: RunContext) -> dict[str, CampaignSignals]:
    """Campaign id -> its figures, reused from the last successful run when younger than an hour, else
    read now. The result goes into the run summary for the next run."""
    previous = ctx.previous_signals
    out: dict[str, CampaignSignals] = {}
    stale: list[str] = []
    for campaign in ctx.campaigns.values():
        kept = _fresh(previous.get(campaign.campaign_id, {}), ctx.now)
        if kept is not None:
            out[campaign.campaign_id] = kept
        else:
            stale.append(campaign.campaign_id)
    if stale:
        out.update(_read(ctx, stale))
    ctx.report.supply_signals = {cid: {k: v for k, v in asdict(signal).items() if k != "reused"}
                                 for cid, signal in out.items()}
    return out


def _read(ctx: RunContext, ids: list[str]) -> dict[str, CampaignSignals]:
    phase = ctx.report.phase("topup")
    today = ctx.now.astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=SIZING_DAYS)
    last = today - dt.timedelta(days=1)
    window: dict[str, tuple[int, int]] = {}
    try:
        for item in ctx.client.campaign_analytics(ids, start_date=today - dt.timedelta(days=BOUNCE_WINDOW_DAYS),
                                                  end_date=today, exclude_total_leads_count=True):
            window[item.campaign_id.lower()] = (item.emails_sent_count, item.bounced_count)
    except InstantlyError as exc:
        phase.notes.append(f"7-day campaign analytics unavailable ({exc.summary}): bounce rates not judged")
    out: dict[str, CampaignSignals] = {}
    for campaign_id in ids:
        daily: list[int] | None = None
        try:
            rows = ctx.client.daily_campaign_analytics(campaign_id, first, last)
            by_day = {row.date: row.new_leads_contacted for row in rows}
            # A day without a row is a day with no activity (the simulator and a quiet campaign alike).
            daily = [int(by_day.get(first + dt.timedelta(days=i), 0)) for i in range(SIZING_DAYS)]
        except InstantlyError as exc:
            phase.notes.append(f"daily analytics of a campaign unavailable ({exc.summary}): no supply sizing for it")
        status: str | None = None
        waiting = False
        if _empty(ctx, campaign_id):
            # Instantly's count (this run's analytics) says the campaign holds no lead and the warehouse tracks
            # none there: it has nothing left to start, which is all the sending status would tell (its
            # `waiting_for_leads`); the call and the backlog listing are saved. A count of 0 beside tracked
            # leads is not believed (a lagging count): the status is read as usual.
            waiting = True
        else:
            try:
                sending = ctx.client.sending_status(campaign_id)
                status, waiting = sending.status, sending.waiting_for_leads
            except InstantlyError as exc:
                phase.notes.append(f"sending status of a campaign unavailable ({exc.summary})")
        sent, bounced = window.get(campaign_id.lower(), (None, None))
        backlog = None if waiting or not daily else _backlog(ctx, campaign_id, daily)
        out[campaign_id] = CampaignSignals(ctx.now.isoformat(), daily, waiting, status, sent, bounced,
                                           0 if waiting else backlog)
    return out


def _empty(ctx: RunContext, campaign_id: str) -> bool:
    """Whether this run's campaign analytics count 0 leads in the campaign and the warehouse tracks none there."""
    view = ctx.campaigns.get(campaign_id)
    if view is None or view.leads_count != 0:
        return False
    return not any(row.status != "pending" and row.instantly_lead_id and ctx.campaign(row.campaign_id) is view
                   for row in ctx.state)


def supply_days_of(ctx: RunContext, campaign_id: str) -> int:
    """SUPPLY_DAYS of the route this campaign belongs to (its own `supply_days`, else the setting)."""
    found = ctx.settings.routing.route_of_campaign(campaign_id)
    days = found[0].supply_days if found is not None else None
    return ctx.settings.supply_days if days is None else days


def _backlog(ctx: RunContext, campaign_id: str, daily: list[int]) -> int | None:
    """Leads of the campaign not contacted yet, counted up to what sizing needs to know (None: unknown)."""
    # With sizing off (0 days) the backlog is still read (one day's worth): default shares need to know
    # whether the campaign's rate is what it can send.
    days, rate = max(supply_days_of(ctx, campaign_id), 1), sum(daily) / len(daily)
    if rate <= 0:
        return None
    enough = math.ceil(days * rate) + 1
    listing = ctx.client.iter_leads(campaign=campaign_id, filter=LeadFilter.NOT_CONTACTED, short_page_ends=True,
                                    max_pages=math.ceil(enough / MAX_PAGE_SIZE) + 1)  # + the empty last page
    try:
        count = sum(1 for _lead in listing)
    except InstantlyError as exc:
        ctx.report.phase("topup").notes.append(f"backlog of a campaign unreadable ({exc.summary}): no supply sizing")
        return None
    if not listing.complete and count < enough:
        return None  # cut short for another reason than the page limit: a lower bound too low to size on
    return count
