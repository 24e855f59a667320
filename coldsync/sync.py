"""One sync run: lock -> preflight -> drain -> top-up -> housekeeping -> run log -> unlock."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from coldsync.alerts import run_alerts
from coldsync.cli import ExitCode, received_signal, signal_name
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import AddRefusedError, CircuitOpenError, InstantlyError, NotFoundError, PlanLimitError
from coldsync.phases.blocklist import PUSH_LIMIT_PER_RUN
from coldsync.phases.context import CampaignView, RunContext, RunOutOfTime, TrackedState
from coldsync.phases.drain import run_drain
from coldsync.phases.events import PHASE as EVENTS_PHASE
from coldsync.phases.events import backfill_events, finish_events, read_events
from coldsync.phases.housekeeping import run_housekeeping
from coldsync.phases.topup import measure_inventory, record_ready, run_topup
from coldsync.redact import redact
from coldsync.report import RunReport
from coldsync.routes import DEFAULT_SCORE
from coldsync.rules import parse_timestamp
from coldsync.runlock import lock_held_message
from coldsync.settings import LEASE_SHARE, Settings, SettingsError, require
from coldsync.store import Store, dead_letter_id
from coldsync.warehouse.base import Warehouse, WarehouseError
from coldsync.warehouse.schema import source_binding_problem, views_fingerprint

log = logging.getLogger("coldsync.sync")

CAMPAIGN_SETTINGS = {"SMB": "smb_campaign_id", "Midsize": "midsize_campaign_id"}
"""The default routes' campaign settings (coldsync.routes.default_routing)."""
STATUS_NAMES = {0: "draft", 1: "active", 2: "paused", 3: "completed", 4: "running subsequences",
                -1: "accounts unhealthy", -2: "bounce protect", -99: "account suspended"}




class RunFailed(Exception):
    """The run cannot go on; the message says why and what to do (no PII, no secret)."""


class ConfigRefused(RunFailed):
    """Bad configuration found by the run before any write (exit 2): nothing touched."""


class RoutingRefused(ConfigRefused):
    """The routing's SQL does not run in the warehouse: bad configuration (exit 2), nothing touched."""


@dataclass
class SyncResult:
    exit_code: ExitCode
    report: RunReport


def new_run_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def preflight(ctx: RunContext) -> None:
    """Every managed campaign exists; its status and lead count (one analytics call when it works)."""
    routing = ctx.settings.routing
    ids = [cid for cid in routing.campaign_ids() if cid]
    analytics = {}
    unread: InstantlyError | None = None  # why a campaign could not be read, for the run's failure
    try:
        analytics = {a.campaign_id.lower(): a for a in ctx.client.campaign_analytics(ids)}
    except InstantlyError as exc:
        _refused_key(exc)
        unread = exc
        ctx.report.warn(f"campaign analytics unavailable ({exc}): inventory unknown, nothing is added")
    for route in routing.routes:
        for arm in route.arms:
            campaign_id = arm.campaign_id
            found = analytics.get(campaign_id.lower())
            status: int | None = found.campaign_status if found else None
            count: int | None = found.leads_count if found else None
            label = route.name if len(route.arms) == 1 else f"{route.name}/{arm.name}"
            if found is None and analytics:
                ctx.report.warn(f"campaign analytics answered without the {label} campaign: its lead count is "
                                "unknown, so nothing is added this run (the cap cannot be kept without it)")
            if found is None:
                try:
                    status = ctx.client.get_campaign(campaign_id).status
                except NotFoundError as exc:
                    raise RunFailed(f"the {label} campaign {campaign_id} does not exist in Instantly: fix "
                                    f"{_campaign_setting(ctx, route.name)}") from exc
                except InstantlyError as exc:
                    _refused_key(exc)
                    unread = unread or exc
                    ctx.report.warn(f"could not read the {label} campaign: {exc}")
            counters = {"completed": found.completed_count, "bounced": found.bounced_count,
                        "unsubscribed": found.unsubscribed_count, "replies": found.reply_count} if found else {}
            view = CampaignView(route.name, arm.name if len(route.arms) > 1 else route.name, campaign_id, status,
                                count, counters)
            ctx.campaigns[campaign_id] = view
            name = STATUS_NAMES.get(status, f"status {status}") if status is not None else "unknown"
            ctx.report.campaigns[label] = name
            if status is not None and not view.active:
                ctx.report.warn(
                    f"the {label} campaign is {name}: leads added there wait and nothing is sent. Activate it "
                    "in Instantly (open the campaign, press Resume/Launch), or set ALLOW_PAUSED_CAMPAIGNS=true to "
                    "add leads anyway" if status in (0, 2) else
                    f"the {label} campaign is {name}: fix it in Instantly; leads are held back meanwhile")
    if ctx.campaigns and all(view.status is None for view in ctx.campaigns.values()):
        ctx.check_deadline("reading the campaigns")  # unread because the lease guard came first: say that
        # Nothing of Instantly could be read: the run stops before any write and says so (exit 1).
        raise RunFailed(f"could not read any campaign from Instantly ({unread}): check INSTANTLY_BASE_URL, "
                        "the network and status.instantly.ai; nothing was changed")


def _refused_key(exc: InstantlyError) -> None:
    """A 401/402/403 stops the run at once: every later call would be refused the same way."""
    if exc.http_status in (401, 402, 403):
        raise RunFailed(f"Instantly refused the key: {exc.summary} (http {exc.http_status} on {exc.method} "
                        f"{exc.path}); check INSTANTLY_API_KEY, its scopes and the workspace's plan") from exc


def _retired_campaigns(ctx: RunContext) -> None:
    """Campaigns no route names any more but that still hold tracked leads (the routes changed): they
    stay managed for the drain and housekeeping (outcomes, unsubscribes and bounces are still recorded,
    and their leads count against the cap) and get no new lead. One analytics call when there are any."""
    held: dict[str, list[str | None]] = {}
    for campaign_id in ctx.state.campaign_ids():
        if campaign_id and not ctx.manages(campaign_id):
            held[campaign_id] = [row.sequence_target for row in ctx.state.in_campaign_id(campaign_id)]
    if not held:
        return
    try:
        found = {a.campaign_id.lower(): a for a in ctx.client.campaign_analytics(sorted(held))}
    except InstantlyError as exc:
        found = {}
        ctx.report.warn(f"campaign analytics of campaigns in no route unavailable ({exc.summary}): inventory "
                        "unknown, nothing is added")
    for campaign_id, targets in sorted(held.items()):
        analytics = found.get(campaign_id.lower())
        route = max(set(targets), key=lambda t: (targets.count(t), str(t))) or "(no route)"
        if analytics is None and found:
            ctx.report.warn(f"campaign {campaign_id} is in no route and Instantly does not list it, yet the "
                            f"warehouse tracks {len(targets)} lead(s) there: restore the campaign or add it back "
                            "to a route so they can be drained")
            continue
        counters = ({"completed": analytics.completed_count, "bounced": analytics.bounced_count,
                     "unsubscribed": analytics.unsubscribed_count, "replies": analytics.reply_count}
                    if analytics else {})
        view = CampaignView(route, f"retired {campaign_id[:8]}", campaign_id,
                            analytics.campaign_status if analytics else None,
                            analytics.leads_count if analytics else None, counters, retired=True)
        ctx.campaigns[campaign_id] = view
        ctx.report.campaigns[view.label] = STATUS_NAMES.get(view.status, "unknown") if view.status is not None \
            else "unknown"
        ctx.report.warn(f"campaign {campaign_id} is in no route any more but holds {len(targets)} tracked lead(s) "
                        f"(route {route}): they are drained as they finish and count against the cap; no lead is "
                        "added to it")


def _campaign_setting(ctx: RunContext, route: str) -> str:
    """Where the campaign id of a route is set, for messages."""
    routing = ctx.settings.routing
    if routing.is_default:
        return CAMPAIGN_SETTINGS.get(route, "the routing").upper()
    return f"the campaign_id of route {route!r} in {routing.origin}"


def run_sync(settings: Settings, warehouse: Warehouse, client: InstantlyClient, *,
             now: dt.datetime | None = None, slot: str = "") -> SyncResult:
    """One run. Never raises for run-level failures: they become the exit code and the report. `slot` says
    what the run is for (the scheduled workflow passes the slot its gate chose); the report names it."""
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    run_id = new_run_id(now)
    dry_run = settings.dry_run
    report = RunReport(run_id=run_id, mode="dry_run" if dry_run else "live", warehouse=warehouse.engine,
                       started_at=now.isoformat(), slot=slot, cap=settings.inventory_cap)
    try:
        if settings.routing.is_default:
            require(settings, CAMPAIGN_SETTINGS.values(), "the default routes send leads to these two campaigns "
                    "(or configure routes: README, routes)")
    except SettingsError as exc:
        report.outcome, report.error = "config_error", str(exc)
        return SyncResult(ExitCode.BAD_CONFIG, report)
    store = Store.for_settings(warehouse, run_id, now, settings)
    ctx = RunContext(settings=settings, client=client, store=store, report=report, now=now, dry_run=dry_run,
                     baseline=(client.stats.requests, client.stats.writes, warehouse.stats.total,
                               warehouse.stats.writes),
                     deadline=started + settings.lock_ttl_minutes * 60 * LEASE_SHARE)
    client.health.reset()  # what the service does from here on is this run's
    # No Instantly call, retries included, outlives the run's lease guard (a dry run takes no lock).
    client.stop_at = None if dry_run else ctx.deadline
    holder = None
    if not dry_run:
        try:
            holder = store.acquire_lock(dt.timedelta(minutes=settings.lock_ttl_minutes))
        except WarehouseError as exc:
            report.outcome, report.error = "failed", redact(f"could not take the run lock: {exc}")
            # No run-log row (the warehouse failed), but the failure is still posted (coldsync.alerts)
            return _finish(ctx, started, ExitCode.RUN_FAILED, write_log=False, alert=True)
        except KeyboardInterrupt:  # the lock may be ours already: free it (only if it is ours)
            _release(ctx)
            raise
        if holder is not None:
            report.outcome = "lock_held"
            report.error = lock_held_message(store, settings.lock_ttl_minutes)
            return _finish(ctx, started, ExitCode.LOCK_HELD, write_log=False)
    code = ExitCode.OK
    try:
        _phases(ctx)
        causes = _run_failures(ctx)
        alarms = _service_letters(ctx)
        if causes:  # the run went to its end, yet what it had to do did not happen: it says so
            report.outcome, report.error = "failed", redact("; ".join(causes + alarms))
            log.error("run failed: %s", report.error)
            code = ExitCode.RUN_FAILED
        elif alarms:  # everything it could do is done; red all the same, so someone looks at Instantly
            report.outcome, report.error = ALARM_OUTCOME, redact("; ".join(alarms))
            log.error("run raised an alarm: %s", report.error)
            code = ExitCode.RUN_FAILED
        else:
            report.outcome = "success"
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (coldsync.cli.handle_signals): record, release, 130
        code = _interrupted(report, exc)
    except Exception as exc:
        # A signal that a library turned into its own error (a driver checking signals mid-statement) is
        # still an interruption; anything else is the run's failure.
        code = _interrupted(report, None) if received_signal() is not None else _failed(report, exc)
    finally:
        if not dry_run and not ctx.service_recorded:
            try:  # a run that stopped early still records which Instantly operations failed (closes none)
                _service_letters(ctx, ended=False)
            except Exception as exc:  # the run already failed: its own error is the one to show
                log.error("could not record the Instantly failures of this run: %s", exc)
        if not dry_run:
            _release(ctx)
    return _finish(ctx, started, code, write_log=not dry_run)


def _interrupted(report: RunReport, exc: BaseException | None) -> ExitCode:
    report.outcome = "interrupted"
    report.error = f"interrupted by {signal_name(exc)}; the next run goes on from where this one stopped"
    return ExitCode.INTERRUPTED


def _failed(report: RunReport, exc: Exception) -> ExitCode:
    """The run's error as its outcome, error line and exit code."""
    if isinstance(exc, ConfigRefused):
        report.outcome, report.error = "config_error", redact(str(exc))
        log.error("configuration refused: %s", report.error)
        return ExitCode.BAD_CONFIG
    if isinstance(exc, RunFailed | RunOutOfTime | InstantlyError | WarehouseError):
        report.outcome, report.error = "failed", redact(str(exc))
        log.error("run failed: %s", report.error)
        return ExitCode.RUN_FAILED
    # a bug: still leave a run log row and free the lock
    report.outcome = "failed"
    report.error = redact(f"{type(exc).__name__}: {exc}")
    log.error("run failed unexpectedly", exc_info=exc)
    return ExitCode.RUN_FAILED


def _release(ctx: RunContext) -> None:
    try:
        ctx.store.release_lock()
    except WarehouseError as exc:
        minutes = ctx.settings.lock_ttl_minutes
        log.error("could not release the run lock (it expires by itself): %s", exc)
        ctx.report.warn(f"could not release the run lock: runs wait until it expires after LOCK_TTL_MINUTES={minutes} "
                        f"(or `python sync_once.py --break-lock`) ({redact(str(exc))})")


def _phases(ctx: RunContext) -> None:
    settings, report = ctx.settings, ctx.report
    t0 = time.monotonic()
    ctx.previous_watermarks, ctx.open_dead_letters, ctx.previous_blocklist_watermark = ctx.store.run_memory()
    warehouse = ctx.store.warehouse
    unbound = source_binding_problem(ctx.store.views_source, warehouse.source_table, engine=warehouse.engine)
    if unbound:  # SOURCE_TABLE changed without setup.py: the views and the summary would read another table
        raise ConfigRefused(unbound)
    preflight(ctx)
    signals = ctx.store.last_summary.get("supply_signals")
    ctx.previous_signals = signals if isinstance(signals, dict) else {}
    fingerprint = views_fingerprint(settings.routing, settings.outcome_table)
    changed = ctx.store.views_fingerprint != fingerprint or ctx.store.views_source is None
    if changed:
        # Before any write: the count runs every route's SQL, so a changed routing that fails stops the run
        # here. An unchanged one is read once, by the top-up (phases/topup.py), and only when there is room.
        _count_ready(ctx)
    if changed:
        if ctx.dry_run:
            report.warn("the views (v_ready_for_instantly, v_lead_scores, ...) were built for other routes or an "
                        "older version: a live run rebuilds them (or run `python setup.py`); this dry run reads "
                        "the routes in effect all the same")
        else:
            ctx.store.rebuild_views()
            report.phase("preflight").counts["views rebuilt for the routes in effect"] += 1
    try:
        ctx.dnc = ctx.store.dnc_upkeep(PUSH_LIMIT_PER_RUN)
    except WarehouseError as exc:  # an older schema: stop before touching anything, say how to fix it
        raise RunFailed(f"the do-not-contact views are missing or outdated ({exc}): run `python setup.py`") from exc
    report.dnc_rejects = dict(ctx.dnc.rejects)
    if (ctx.dnc.missing or ctx.dnc.history_missing) and not ctx.dry_run:
        # Entries written without keys (by hand, an import, an older version) get them before any read; rows
        # whose stored key is not trusted (edited since, another key rule) get its check when it is still right.
        backfill = ctx.store.backfill_keys(ctx.dnc.missing, ctx.dnc.history_missing)
        keyed = backfill.keyed
        counts = report.phase("preflight").counts
        counts["dnc entries keyed"] += len(keyed)
        counts["stored keys checked"] += backfill.dnc_checked + backfill.history_checked
        counts["do-not-contact keys differing from their raw value (left, still blocking)"] += backfill.differing
        counts["do-not-contact entries added for values edited by hand"] += backfill.relisted
        ctx.dnc.to_push.extend(row for row in keyed if row["pushable"])
        if keyed and report.dnc_rejects:  # entries only Python could key are usable now: count again
            report.dnc_rejects = ctx.store.dnc_reject_counts()
    if report.dnc_rejects:
        report.warn(f"{sum(report.dnc_rejects.values())} do-not-contact value(s) cannot be used: see v_dnc_rejects "
                    "(or validate_environment.py) and fix or remove them")
    # After the back-fill: the state read says which tracked leads are suppressed, by every entry.
    ctx.state = TrackedState(ctx.store.read_state())
    _retired_campaigns(ctx)
    for campaign in ctx.campaigns.values():
        tracked = ctx.tracked_count(campaign, pending=False)
        if campaign.leads_count is not None and campaign.leads_count != tracked:
            ctx.mismatched_campaigns.add(campaign.campaign_id)
    report.inventory_before = measure_inventory(ctx)
    report.phase("preflight").ran = True
    report.phase("preflight").seconds = time.monotonic() - t0

    report.phase(EVENTS_PHASE)
    report.phase("drain")
    events = None
    if settings.run_drain:
        # The webhook events (phases/events.py) are drained with the polling drain's finished leads: one plan.
        t0 = time.monotonic()
        backfill_events(ctx)
        events = read_events(ctx)
        report.phase(EVENTS_PHASE).seconds = time.monotonic() - t0
        t0 = time.monotonic()
        run_drain(ctx, events)
        report.phase("drain").seconds = time.monotonic() - t0
    finish_events(ctx, events)

    # The source reject counts as of the candidates' last refresh; the top-up's refresh (only when it reads
    # ready leads: phases/topup.py) replaces them with this run's. A run that reads no ready lead reads no source.
    known = ctx.store.known_source_rejects()
    if known is not None:
        report.source_rejects, report.source_signal = known
    report.phase("topup")
    inventory = report.inventory_before
    if inventory is not None:
        drained = ctx.deleted_in_instantly if not ctx.dry_run else sum(
            v for k, v in report.phase("drain").plan.items() if k.startswith("drain "))
        inventory = max(inventory - drained, 0)
    if settings.run_topup:
        t0 = time.monotonic()
        run_topup(ctx, inventory)
        report.phase("topup").seconds = time.monotonic() - t0
    else:  # the supply signals stay with the next run, as a quiet run's do
        report.supply_signals = dict(ctx.previous_signals)
    if inventory is not None:
        added = report.added if not ctx.dry_run else sum(
            v for k, v in report.phase("topup").plan.items() if k.startswith("add "))
        report.inventory_after = inventory + added

    report.phase("housekeeping")
    if settings.run_housekeeping:
        t0 = time.monotonic()
        run_housekeeping(ctx)
        report.phase("housekeeping").seconds = time.monotonic() - t0
    else:  # the audit's and listings' cursors stay with the next run, as the supply signals do
        memory = ctx.store.last_summary.get("reconcile")
        report.reconcile = dict(memory) if isinstance(memory, dict) else {}


SERVICE_PHASE = "service"
"""Dead-letter phase of a service-level failure: ONE open letter per Instantly operation, whatever the
batches and leads it hit, its retry_count the consecutive runs it failed in."""
SERVICE_KEY = "instantly"
STREAK_QUIET = dt.timedelta(hours=6)
"""A service letter whose operation was not needed (not sent) for this long is closed: runs that did not
call it neither extend nor break a streak before then."""
ALARM_OUTCOME = "alarm"
"""Run-log outcome of a run that did all it could but exits 1 because an Instantly operation has failed at
the service level in SERVICE_FAILURE_RUNS consecutive runs. Unlike `failed`, its progress marks (drain
watermarks, audit cursor, signals) are the next run's starting point: store.RUN_MEMORY_SQL."""
ESSENTIAL_OPERATIONS = frozenset({"GET /campaigns/analytics", "GET /campaigns/{id}", "POST /leads/list",
                                  "POST /leads/add", "DELETE /leads"})
"""The calls a sync cannot do without: the key refused for one of these fails the run (exit 1); refused for
the extras (the block-list mirror, the sizing signals) the run warns and goes on."""


def _run_failures(ctx: RunContext) -> list[str]:
    """Why a run that went to its end still failed (exit 1), in a line each; empty when it did not.

    Failures: every Instantly call failed; no campaign's inventory could be measured (nothing can be
    added); the key was refused (401/402/403) for an operation the sync needs. (An operation failing at the
    service level in SERVICE_FAILURE_RUNS consecutive runs is an alarm: _service_letters.) Warnings only
    (exit 0): one campaign of several unmeasured, a service failure in fewer consecutive runs, per-lead
    rejections (dead letters), the key refused for an extra (ESSENTIAL_OPERATIONS)."""
    health = ctx.client.health
    causes: list[str] = []
    if health.every_call_failed:
        operation, first = next(iter(health.failed.items()))
        causes.append(f"every Instantly call of this run failed ({operation}: {first})")
    fed = [c for c in ctx.campaigns.values() if not c.retired]
    if fed and all(c.leads_count is None for c in fed) and not causes:
        why = health.failed.get("GET /campaigns/analytics")
        causes.append("could not measure the inventory of any campaign in Instantly"
                      + (f" ({why})" if why else "") + ": nothing was added")
    refused = {op: exc for op, exc in health.failed.items()
               if exc.http_status in (401, 402, 403) and op in ESSENTIAL_OPERATIONS}
    for operation, exc in sorted(refused.items()):
        causes.append(f"Instantly refused {operation} (http {exc.http_status}): check INSTANTLY_API_KEY, its "
                      "scopes and the workspace's plan")
    return causes


def _service_letters(ctx: RunContext, *, ended: bool = True) -> list[str]:
    """Record this run's service-level failures as ONE dead letter per Instantly operation (opened, or
    counted one more run), close the letters of operations that worked in this run or have not failed for
    STREAK_QUIET (6 hours), and return an alarm line for every operation that has now failed in
    SERVICE_FAILURE_RUNS consecutive runs. A run that stopped early (`ended` False) records its failures
    but closes nothing: not having reached an operation says nothing of it. No per-lead
    letter, no history row, no cooldown comes from such a failure: the leads stay ready."""
    ctx.service_recorded = True
    health, settings = ctx.client.health, ctx.settings
    # Operations held back by another one's failure (CircuitOpenError) were never sent: that one is the letter.
    failed = {op: exc for op, exc in health.failed.items()
              if exc.http_status not in (401, 402, 403) and not isinstance(exc, CircuitOpenError)}
    limit = settings.service_failure_runs
    for operation, exc in sorted(failed.items()):
        ctx.report.warn(f"Instantly {operation} failed at the service level ({exc}): nothing is counted against "
                        "any lead; retried by the next run")
    if ctx.dry_run or (not failed and not (ended and ctx.open_dead_letters)):
        return []
    letters = [r for r in ctx.store.open_dead_letters() if r.get("phase") == SERVICE_PHASE]
    open_letters = {str(r["operation"]): int(r.get("retry_count") or 0) for r in letters}
    last_failed = {str(r["operation"]): _instant(r.get("last_attempt_at")) for r in letters}
    rows: list[dict[str, object]] = []
    causes: list[str] = []
    for operation, exc in sorted(failed.items()):
        runs = open_letters[operation] + 2 if operation in open_letters else 1
        rows.append({"id": dead_letter_id(SERVICE_PHASE, operation, SERVICE_KEY), "phase": SERVICE_PHASE,
                     "operation": operation, "email": None, "campaign_id": None, "instantly_lead_id": None,
                     "http_status": exc.http_status, "error_text": redact(str(exc), 1000), "resolve": False,
                     "give_up_reason": None})
        if runs >= limit and isinstance(exc, PlanLimitError):
            causes.append(f"the Instantly plan's lead limit has been reached in {runs} consecutive runs "
                          f"(SERVICE_FAILURE_RUNS={limit}): no more leads can be added; raise the plan's lead limit "
                          "in Instantly or lower INVENTORY_CAP below it; the leads stay ready and the first run "
                          "with room adds them")
        elif runs >= limit and isinstance(exc, AddRefusedError):
            causes.append(f"Instantly has refused every lead sent to {operation} in {runs} consecutive runs "
                          f"(SERVICE_FAILURE_RUNS={limit}): {exc}; something every add carries (a field, a custom "
                          "variable, the campaign) or the workspace is refused, not a lead: read the server's "
                          "message, try one lead by hand; the leads stay ready and the first run that gets through "
                          "adds them")
        elif runs >= limit:
            causes.append(f"Instantly {operation} has failed in {runs} consecutive runs (SERVICE_FAILURE_RUNS="
                          f"{limit}): {exc}; check status.instantly.ai; if Instantly is up, something in these "
                          "requests may be what it fails on (it answers other calls); the leads stay ready and "
                          "the first run that gets through catches up")
    for operation in sorted(open_letters if ended else ()):
        since = last_failed.get(operation)
        quiet = since is None or ctx.now - since >= STREAK_QUIET
        # The streak ends when the operation works, or when it has not failed for STREAK_QUIET (not needed
        # since): a failure days later starts a new count instead of joining an old one.
        if operation not in failed and (health.answered[operation] or quiet):
            rows.append({"id": dead_letter_id(SERVICE_PHASE, operation, SERVICE_KEY), "phase": SERVICE_PHASE,
                         "operation": operation, "email": None, "campaign_id": None, "instantly_lead_id": None,
                         "http_status": None, "error_text": None, "resolve": True, "give_up_reason": None})
            ctx.report.phase("housekeeping").counts["service failure resolved"] += 1
    ctx.store.record_dead_letters(rows, label="service.dead_letters")
    return causes


def _instant(value: object) -> dt.datetime | None:
    """A warehouse TIMESTAMP as an aware datetime (engines return datetimes; an ISO text is read too)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return parse_timestamp(value)


def _count_ready(ctx: RunContext) -> None:
    """Ready leads per route into the report. A failure here is the routing's SQL meeting the warehouse
    (a type error, a declared column the source lacks): refused as bad configuration, route named."""
    try:
        counts, unscored = ctx.store.ready_counts()
    except WarehouseError as exc:
        raise routing_failure(ctx, exc) from exc
    record_ready(ctx, counts, unscored)


def routing_failure(ctx: RunContext, exc: WarehouseError) -> RunFailed:
    """The error of a run whose ready-lead read failed: with the default routing, the views or tables are
    missing (run setup.py); else, when a part of the routing's SQL fails on this source, refused as bad
    configuration, the failing part named (Store.diagnose_routing); when every part runs on its own, a failed
    run (exit 1): the warehouse failed, not the routing."""
    routing = ctx.settings.routing
    if routing.is_default and routing.score == DEFAULT_SCORE and not routing.source_columns:
        return RunFailed(f"could not count the ready leads ({exc}): run `python setup.py`")
    log.error("the ready-lead count failed: %s", exc)
    diagnosis = ctx.store.diagnose_routing()
    if diagnosis is None:
        # Every part of the routing runs on its own: the read failed for another reason (the warehouse, a
        # permission, the ready queue's build), not the configuration: a failed run, not a refused routing.
        return RunFailed(f"could not read the ready leads ({exc}); every part of the routing from "
                         f"{routing.origin} runs on its own, so the warehouse failed, not the routing")
    return RoutingRefused(f"the routing from {routing.origin} does not run in the warehouse: {diagnosis}")


def _finish(ctx: RunContext, started: float, code: ExitCode, *, write_log: bool,
            alert: bool | None = None) -> SyncResult:
    """Close the run's report; `alert` (default: `write_log`) runs the alerts, `write_log` writes the run-log row.
    A run that failed on the warehouse before its lock alerts without a row: its memory is not kept, so the
    next such run posts again (coldsync.alerts: better repeated than silent)."""
    report = ctx.report
    report.seconds = time.monotonic() - started
    if write_log if alert is None else alert:
        report.alerts = run_alerts(ctx)  # ALERT_WEBHOOK_URL set: posts and keeps its memory in this run's summary
    if write_log:
        try:
            ctx.store.write_run_log(_run_log_row(ctx))
        except WarehouseError as exc:
            report.warn(f"could not write the run log: {exc}")
    calls, writes, statements, warehouse_writes = ctx.baseline
    report.api_calls = ctx.client.stats.requests - calls
    report.api_writes = ctx.client.stats.writes - writes
    report.warehouse_statements = ctx.store.warehouse.stats.total - statements
    report.warehouse_writes = ctx.store.warehouse.stats.writes - warehouse_writes
    return SyncResult(code, report)


def _run_log_row(ctx: RunContext) -> dict[str, object]:
    report = ctx.report
    finished = ctx.now + dt.timedelta(seconds=report.seconds)
    return {
        "run_id": report.run_id, "started_at": ctx.now, "finished_at": finished, "mode": report.mode,
        "outcome": report.outcome, "warehouse": report.warehouse, "drained": report.drained,
        "added": report.added, "dead_letters": report.dead_letters, "inventory_before": report.inventory_before,
        "inventory_after": report.inventory_after,
        "api_calls": ctx.client.stats.requests - ctx.baseline[0],
        "warehouse_statements": ctx.store.warehouse.stats.total - ctx.baseline[2] + 1,
        "duration_seconds": report.seconds,
        # Both pass the one redaction path (coldsync.redact): the error line here, the summary in to_json.
        "error_text": None if report.error is None else redact(report.error, 2000), "summary_json": report.to_json(),
    }
