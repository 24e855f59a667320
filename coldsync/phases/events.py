"""EVENTS: the Instantly webhook events the receiver stored (ops_instantly_events), honoured by the next run.

The eligibility rule already excludes an address with an unsubscribe or bounce event the moment it lands
(coldsync.warehouse.schema.DNC_KEY_CTES). A run then, with no second drain path:

1. reads the events that matter (CONSUMED_EVENTS) in ONE query (Store.read_events), collapsed by dedup_key,
   bounded by a watermark (below);
2. turns every unsubscribe and bounce into a do-not-contact row (source `instantly_webhook`, reason naming the
   event type, e.g. "lead_unsubscribed (webhook)"), one per address key; the drain writes them in their own
   MERGE before its own DNC rows and before any delete, mirrored to Instantly's block list with them when
   BLOCKLIST_MIRROR is on (coldsync.phases.blocklist.mirror_rows). The MERGE adds an address once, whatever its
   source: a second run, or an address already listed (e.g. by the polling drain), adds nothing. An erased
   person's event (delivered after the erasure) adds no plain-text row: the salted hash already blocks them;
3. finds the tracked leads the events concern (`match_tracked`) and hands their ids to the drain
   (coldsync.phases.drain.run_drain), which reads them by id (100 a call), classifies them with
   `classify_evented_lead` (the drain's classifier first, then the event) and drains them like any finished
   lead: history first, DNC, state 'draining', the delete by explicit ids, state gone; a replied lead follows
   its outcome policy exactly as the polling drain's (held, moved to a list or deleted). A lead found by both
   the polling listings and an event is planned once (by id): one history row, one DNC row.

An event for an address the warehouse does not track as active in a managed campaign (drained already, never
ours) writes its DNC row (unsubscribe, bounce) and nothing else. An event for a campaign the sync does not manage
drains nothing (the receiver does not store those; the backfill or a hand insert might); its unsubscribe or
bounce still makes a DNC row, as it already suppresses the address in the eligibility rule.

Watermark: the run summary keeps `events_watermark` = {"received_at": ISO time}: the start of the last run that
settled every event it read (or the newest received_at it read, if later: a writer's clock ahead of the run's),
kept as run memory like the drain's watermarks (the last successful live run's summary). The next run reads rows
received at or after that time minus SAFETY_MARGIN, so its cost follows what arrived since. received_at is
stamped by the writer (the receiver, or a run's backfill: a late delivery written by the backfill carries the time
it was written, so it is read however old its event is); the margin covers a row stamped before it became
readable (a slow insert, the clocks of two writers). Re-reading a row inside the margin is harmless: every step
above is idempotent. A run that could not read some of the leads the events name keeps the previous watermark, so
the next run reads those events again (a dry run keeps it too). No watermark yet (the first
run, or runs that never settled): every stored event is read once.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coldsync.instantly.errors import InstantlyError, PlanError
from coldsync.phases.context import RunContext
from coldsync.rules import (
    Action,
    Classification,
    DrainPlan,
    InterestStatus,
    Outcome,
    Suppression,
    classify_finished_lead,
    parse_timestamp,
    plan_drain,
)
from coldsync.store import StateRow, dnc_row
from coldsync.suppression import address_key
from coldsync.warehouse.base import StringArray, WarehouseError
from coldsync.warehouse.schema import EVENTS
from coldsync.webhooks.events import BOUNCED, CONSUMED_EVENTS, REPLIED, SUPPRESSING_EVENTS, UNSUBSCRIBED
from coldsync.webhooks.ops import BACKFILL_MAX_PAGES, BackfillMark, backfill, health, normal_url, ours

SOURCE = "instantly_webhook"
"""DNC source of an unsubscribe or bounce delivered by webhook."""
SAFETY_MARGIN = dt.timedelta(minutes=15)
"""How far before the watermark a run reads again (rows stamped before they became readable)."""
WATERMARK_KEY = "received_at"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
STRENGTH = {UNSUBSCRIBED: 3, BOUNCED: 2, REPLIED: 1}
"""Which event decides when one lead has several: an unsubscribe over a bounce over a reply (as the classifier
puts status -2 before -1 before a reply)."""
PHASE = "events"


def dnc_reason(event_type: str) -> str:
    """The DNC reason of an event: its type, and how it came."""
    return f"{event_type} (webhook)"


@dataclass(frozen=True)
class Event:
    """One stored event as the run reads it (one per dedup key). `email` is personal data: never printed."""

    event_type: str
    email: str | None
    email_key: str | None
    campaign_id: str | None
    event_at: dt.datetime | None
    received_at: dt.datetime
    last_received_at: dt.datetime


@dataclass
class EventBatch:
    """What a run read from ops_instantly_events and what it owes the drain.

    events:     one per dedup key, in received order;
    dnc:        DNC rows (coldsync.store.dnc_row, source SOURCE), one per address key of an unsubscribe or bounce;
    by_lead_id: tracked Instantly lead id -> the event type that drains it (STRENGTH decides between several);
    previous:   the watermark the run started from (None: none); unread: lead ids the drain could not read
    (the watermark stays)."""

    events: list[Event] = field(default_factory=list)
    dnc: list[dict[str, Any]] = field(default_factory=list)
    by_lead_id: dict[str, str] = field(default_factory=dict)
    previous: dt.datetime | None = None
    unread: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)  # email keys of erased persons among the events read
    erased_left: bool = False  # their rows could not be deleted yet (BigQuery's streaming buffer)


def _instant(value: object) -> dt.datetime | None:
    """A warehouse TIMESTAMP (or ISO text) as an aware UTC datetime; naive values are UTC."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    return parse_timestamp(value)


def previous_watermark(summary: Mapping[str, Any]) -> dt.datetime | None:
    """The events watermark a run summary kept (RunReport.events_watermark), or None."""
    memory = summary.get("events_watermark")
    return _instant(memory.get(WATERMARK_KEY)) if isinstance(memory, Mapping) else None


def read_since(previous: dt.datetime | None) -> dt.datetime:
    """Where a run's read starts: the watermark minus SAFETY_MARGIN, or the beginning without one."""
    return EPOCH if previous is None else previous - SAFETY_MARGIN


def next_watermark(previous: dt.datetime | None, events: Sequence[Event], settled: bool,
                   started: dt.datetime) -> dt.datetime | None:
    """The watermark a run that started at `started` leaves: `started`, or the newest received_at it read when that
    is later (never behind `previous`); `previous` when it did not settle every event it read."""
    if not settled:
        return previous
    return max([started, *(e.last_received_at for e in events), *([previous] if previous is not None else [])])


def events_of(rows: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Store.read_events rows as Events (rows without a usable received_at are left out: the column is required)."""
    out: list[Event] = []
    for row in rows:
        received = _instant(row.get("received_at"))
        if received is None:
            continue
        # The key as the receiver stored it, else as the suppression rule computes it from the raw address (a
        # row written by hand): the same two keys the eligibility rule's `dnc` CTE honours.
        key = row.get("email_key") or address_key(row.get("email"))
        out.append(Event(event_type=str(row["event_type"]), email=row.get("email"), email_key=key,
                         campaign_id=row.get("campaign_id"), event_at=_instant(row.get("event_at")),
                         received_at=received, last_received_at=_instant(row.get("last_received_at")) or received))
    return out


def dnc_rows(events: Iterable[Event], erased: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One DNC row per address key of the unsubscribe and bounce events (the strongest event names the reason),
    leaving out the `erased` keys (their salted hash blocks them; no plain text comes back)."""
    skip = set(erased)
    best: dict[str, Event] = {}
    for event in events:
        if event.event_type not in SUPPRESSING_EVENTS or not event.email or not event.email_key:
            continue
        if event.email_key in skip:
            continue
        held = best.get(event.email_key)
        if held is None or STRENGTH[event.event_type] > STRENGTH[held.event_type]:
            best[event.email_key] = event
    return [dnc_row(email=e.email, source=SOURCE, reason=dnc_reason(e.event_type)) for e in best.values()]


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).lower() == str(b).lower()


def match_tracked(events: Iterable[Event], rows: Iterable[StateRow], manages: Callable[[str | None], bool],
                  counts: Counter[str] | None = None) -> dict[str, str]:
    """Tracked lead id -> the event type that drains it. A row qualifies when it is 'active' with an Instantly
    lead id and its address key is the event's; the event's campaign must be a managed one (else it drains
    nothing: counted as "ignored: campaign not managed"). An unsubscribe or bounce concerns the person: it drains
    their tracked lead in any managed campaign. A reply concerns one attempt: the row's campaign must be the
    event's, and the event must not be older than the row's add (a reply to an earlier attempt never drains a
    later one). Events matching no row are counted as "untracked". Pure."""
    counts = counts if counts is not None else Counter()
    by_key: dict[str, list[StateRow]] = {}
    for row in rows:
        if row.status == "active" and row.instantly_lead_id:
            key = address_key(row.email)
            if key is not None:
                by_key.setdefault(key, []).append(row)
    found: dict[str, str] = {}
    for event in events:
        if not manages(event.campaign_id):
            counts["ignored: campaign not managed"] += 1
            continue
        hits = [row for row in by_key.get(event.email_key or "", [])
                if event.event_type in SUPPRESSING_EVENTS
                or (_same(row.campaign_id, event.campaign_id)
                    and (row.added_at is None or (event.event_at or event.received_at) >= _aware(row.added_at)))]
        if not hits:
            counts["untracked"] += 1
            continue
        for row in hits:
            lead_id = str(row.instantly_lead_id)
            if lead_id not in found or STRENGTH[event.event_type] > STRENGTH[found[lead_id]]:
                found[lead_id] = event.event_type
    return found


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def classify_evented_lead(lead: Mapping[str, Any], event_type: str, *, now: dt.datetime, added_at: dt.datetime | None,
                          max_active_days: int) -> Classification:
    """What the drain does with a lead a webhook event names: the drain's own classifier first
    (coldsync.rules.classify_finished_lead), then the event where Instantly's lead object has not caught up yet
    (e.g. still `status` 1, active, when the event says it unsubscribed): the event type decides the outcome.

    - lead_unsubscribed: DRAIN unsubscribed, DNC (as status -2 would), unless the lead already shows it;
    - email_bounced: DRAIN bounced, PERMANENT (as status -1), unless the lead shows an unsubscribe or bounce;
    - reply_received: DRAIN replied, COOLDOWN, unless the lead shows an unsubscribe, a bounce or a reply. Assumed
      where the guide is silent: a reply Instantly itself labelled out of office (`lt_interest_status` 0) is an
      auto-reply (Instantly has a separate auto_reply_received event), so then the classifier's decision stands;
    - a lead the classifier does not understand (UNKNOWN) stays UNKNOWN: never acted on by a guess (an
      unsubscribe or bounce still gave its DNC row, and the suppressed-lead sweep of the drain takes it out).
    The reason names the event (e.g. "lead_unsubscribed (webhook)") when the event decided. Pure; raises
    ValueError as the classifier does."""
    decision = classify_finished_lead(lead, now=now, added_at=added_at, max_active_days=max_active_days)
    if decision.action is Action.UNKNOWN:
        return decision
    shown = decision.outcome
    if event_type == UNSUBSCRIBED:
        if shown is Outcome.UNSUBSCRIBED:
            return decision
        return Classification(Action.DRAIN, Outcome.UNSUBSCRIBED, Suppression.DNC, dnc_reason(event_type))
    if event_type == BOUNCED:
        if shown in (Outcome.UNSUBSCRIBED, Outcome.BOUNCED):
            return decision
        return Classification(Action.DRAIN, Outcome.BOUNCED, Suppression.PERMANENT, dnc_reason(event_type))
    if event_type == REPLIED:
        if shown in (Outcome.UNSUBSCRIBED, Outcome.BOUNCED, Outcome.REPLIED):
            return decision
        if lead.get("lt_interest_status") == InterestStatus.OUT_OF_OFFICE:
            return decision
        return Classification(Action.DRAIN, Outcome.REPLIED, Suppression.COOLDOWN, dnc_reason(event_type))
    return decision


def plan_with_events(leads: Iterable[tuple[Mapping[str, Any], dt.datetime | None]], evented: Mapping[str, str],
                     now: dt.datetime, max_active_days: int) -> DrainPlan:
    """coldsync.rules.plan_drain with the leads of `evented` (lead id -> event type) classified by
    `classify_evented_lead`, the others by the drain's classifier: one plan, each lead once. Pure."""
    def decide(lead: Mapping[str, Any], added_at: dt.datetime | None) -> Classification:
        lead_id = lead.get("id")
        event = evented.get(lead_id) if isinstance(lead_id, str) else None
        if event is None:
            return classify_finished_lead(lead, now=now, added_at=added_at, max_active_days=max_active_days)
        return classify_evented_lead(lead, event, now=now, added_at=added_at, max_active_days=max_active_days)

    return plan_drain(leads, now, max_active_days, classify=decide)


def backfill_events(ctx: RunContext) -> None:
    """With WEBHOOKS_ENABLED, before the events are read: look at coldsync's webhooks (listWebhook: one call) and
    warn, and raise the `webhooks` alert, when one is disabled, missing or doubled (coldsync.webhooks.ops.health):
    a disabled webhook attempts nothing, so nothing else would show it; then read the failed deliveries of the
    receiver's URL back into ops_instantly_events (coldsync.webhooks.ops.backfill: listWebhookEvent success=false,
    at most BACKFILL_MAX_PAGES pages a run, going on from where the last run's listing stopped), so what the receiver
    missed (down, busy, refused) is honoured in this same run; an erased person's delivery is not stored again.
    Counts go to the events phase (`backfill listed`, `backfill stored`, ...). A plan without webhooks (402) or a
    failed call is a warning, never a failed run: polling is the safety net, and the mark
    (RunReport.webhook_backfill) does not move; a cursor Instantly refuses (4xx) is dropped, so the next run lists
    from the same day again instead of asking for it forever. A dry run lists and writes nothing."""
    if not ctx.settings.webhooks_enabled:
        return
    phase = ctx.report.phase(PHASE)
    phase.ran = True
    mark = BackfillMark.from_dict(ctx.store.last_summary.get("webhook_backfill"))
    ctx.report.webhook_backfill = mark.to_dict()
    secret = ctx.settings.instantly_webhook_secret.reveal() or None
    try:
        hooks = ctx.client.list_webhooks()
    except PlanError:
        ctx.report.warn("WEBHOOKS_ENABLED is on but Instantly answered 402: this workspace's plan has no webhooks "
                        "(nothing to backfill; polling alone keeps suppression): set WEBHOOKS_ENABLED=false")
        return
    except InstantlyError as exc:
        ctx.report.warn(f"the webhooks could not be listed ({exc}); the next run looks again")
        return
    seen = health(hooks, secret)
    problems = [line.render() for line in seen.lines if line.state != "active"]
    ctx.report.webhook_problems = problems
    if problems:
        ctx.report.warn("webhooks need attention (polling keeps suppression meanwhile): " + "; ".join(problems))
    urls = sorted({normal_url(str(h.get("target_hook_url") or "")) for h in ours(hooks)})
    if not urls:  # no coldsync webhook (the warning above says so): no delivery of ours can have failed
        return
    managed = {campaign_id.lower() for campaign_id in ctx.campaigns}
    try:
        result = backfill(ctx.client, ctx.store.warehouse, managed, mark=mark, now=ctx.now,
                          erased=ctx.store.erased_among, dry_run=ctx.dry_run, max_pages=BACKFILL_MAX_PAGES,
                          search=urls[0] if len(urls) == 1 else None)
    except InstantlyError as exc:
        refused_cursor = (mark.after is not None and exc.http_status is not None
                          and 400 <= exc.http_status < 500 and exc.http_status not in (401, 402, 403, 429))
        if refused_cursor:
            ctx.report.webhook_backfill = BackfillMark(mark.through).to_dict()
            ctx.report.warn(f"Instantly refused the webhook backfill's cursor ({exc}); the next run lists from "
                            "the same day again")
        else:
            ctx.report.warn(f"the webhook backfill failed ({exc}); the next run lists the same days again")
        return
    except WarehouseError as exc:
        ctx.report.warn(f"the webhook backfill failed ({exc}); the next run lists the same days again")
        return
    tally = phase.plan if ctx.dry_run else phase.counts
    phase.counts["backfill listed"] += result.listed
    tally["backfill stored" if not ctx.dry_run else "store from the backfill"] += result.stored
    phase.counts["backfill already stored"] += result.already
    phase.counts["backfill unreadable"] += result.unreadable
    phase.counts["backfill of erased persons"] += result.erased
    for reason, n in result.ignored.items():
        phase.counts[f"backfill ignored: {reason}"] += n
    if not result.complete:
        phase.notes.append(f"the failed deliveries filled {BACKFILL_MAX_PAGES} pages: the next run reads on")
    ctx.report.webhook_backfill = result.mark.to_dict()


def read_events(ctx: RunContext) -> EventBatch:
    """The run's events (ONE read, from the watermark the last successful run left, minus SAFETY_MARGIN), their
    DNC rows (erased persons left out: one more read, only when there are unsubscribes or bounces), and the
    tracked leads they drain. Writes nothing. Raises WarehouseError."""
    phase = ctx.report.phase(PHASE)
    phase.ran = True
    previous = previous_watermark(ctx.store.last_summary)
    batch = EventBatch(previous=previous)
    batch.events = events_of(ctx.store.read_events(read_since(previous), CONSUMED_EVENTS))
    # Every event's key, not only the suppressing ones: a delivery that arrives after its person was erased (a
    # retry, a late event) brings the address back in plain text, and the run deletes it (finish_events).
    keys = sorted({e.email_key for e in batch.events if e.email_key})
    erased = ctx.store.erased_among(keys) if keys else set()
    batch.erased = erased
    if erased:
        phase.notes.append(f"{len(erased)} event(s) of erased persons add no plain-text DNC row")
    batch.dnc = dnc_rows(batch.events, erased)
    if batch.dnc:  # an address already on the list (an event read again inside the margin, or polled) adds nothing,
        # and is not pushed to Instantly's block list again
        listed = ctx.store.dnc_email_keys_among([str(r["email_key"]) for r in batch.dnc if r.get("email_key")])
        batch.dnc = [r for r in batch.dnc if r.get("email_key") not in listed]
    # `read` counts every row read, those inside the safety margin too (already settled by the last run: each step
    # is idempotent, and the DNC rows above leave out what the list holds, so nothing is pushed twice).
    counted: Counter[str] = Counter()
    batch.by_lead_id = match_tracked(batch.events, ctx.state, ctx.manages, counted)
    phase.counts["read"] += len(batch.events)
    for key, n in counted.items():
        phase.counts[key] += n
    if ctx.dry_run:
        phase.plan["merge into DNC"] += len(batch.dnc)
        phase.plan["read by id, to drain,"] += len(batch.by_lead_id)
    return batch


def forget_erased(ctx: RunContext, batch: EventBatch) -> None:
    """Delete the event rows of persons erased before their delivery landed (batch.erased): after an erasure only
    the salted hash may remain. A dry run counts them. On BigQuery rows still in the streaming buffer (about 90
    minutes after the receiver streamed them) cannot be deleted yet: a note says so and the watermark stays, so a
    later run reads and deletes them. Any other failure is a warning, the watermark staying too."""
    from coldsync.erase import delete_sql, domain_needles, in_streaming_buffer

    if not batch.erased:
        return
    phase = ctx.report.phase(PHASE)
    if ctx.dry_run:
        phase.plan["event rows of erased persons to delete"] += len(batch.erased)
        return
    try:  # the erasure's own definition of the person's event rows (by stored key or by the address as sent)
        keys = sorted(batch.erased)
        phase.counts["event rows of erased persons deleted"] += ctx.store.warehouse.execute(
            delete_sql(EVENTS.name), {"keys": StringArray(keys), "needles": StringArray(domain_needles(keys))},
            label="events.delete_erased")
    except WarehouseError as exc:
        batch.erased_left = True
        if in_streaming_buffer(exc):
            phase.notes.append(f"event rows of {len(batch.erased)} erased person(s) are still in BigQuery's "
                               "streaming buffer: a later run deletes them")
        else:
            ctx.report.warn(f"the event rows of erased persons could not be deleted ({exc}); the next run tries "
                            "again")


def finish_events(ctx: RunContext, batch: EventBatch | None) -> None:
    """Leave the watermark in the run summary (RunReport.events_watermark): advanced when the drain settled every
    event, kept otherwise (a note says why). No batch (the drain did not run): the last one is carried."""
    previous = batch.previous if batch is not None else previous_watermark(ctx.store.last_summary)
    if batch is not None:
        forget_erased(ctx, batch)
    settled = batch is not None and not batch.unread and not batch.erased_left and not ctx.dry_run
    if batch is not None and batch.unread:
        ctx.report.phase(PHASE).notes.append(f"{len(batch.unread)} lead(s) named by events could not be read: "
                                             "the next run reads their events again")
    mark = next_watermark(previous, batch.events if batch is not None else [], settled, ctx.now)
    ctx.report.events_watermark = {WATERMARK_KEY: mark.isoformat()} if mark is not None else {}
