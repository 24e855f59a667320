"""Alerts where people already look: a Slack-compatible incoming webhook (ALERT_WEBHOOK_URL), off by default.

The run posts `{"text": ...}` at its end (coldsync.sync._finish, before its run-log row is written) when a
condition OPENS, and once more when it CLEARS; while it stays open nothing more is posted (no storm). A run
that fails on the warehouse while taking its lock writes no run-log row but still posts `run_failed` (its
memory is not kept, so each such run posts again):

- `run_failed`: the run failed (run log outcome failed, alarm or config_error: exit 1 or 2); cleared by a
  successful run. An interrupted run judges no condition (it carries the memory on and posts nothing);
- `no_adds`: ALERT_AFTER_RUNS (3) consecutive runs that had room (min(TARGET_NEW_LEADS_PER_RUN, cap -
  inventory) above 0 at the top-up) but added nothing; cleared by a run that adds. A run without room
  ends the streak; a failed run, or one with RUN_TOPUP=false, neither adds to it nor ends it;
- `deliverability_guard`: a route's top-up held back by the deliverability guard (7-day bounce rate above
  MAX_BOUNCE_RATE, coldsync.phases.topup) or a campaign Instantly holds in bounce protect; cleared by a
  run whose top-up found none. Judged only by a run that had room (only then are the figures read);
- `dead_letters`: more than ALERT_DEAD_LETTERS (50) open dead letters at the end of the run; cleared at
  or below;
- `webhooks`: with WEBHOOKS_ENABLED, a coldsync webhook Instantly disabled, one missing, doubled or sending
  another secret (coldsync.webhooks.ops.health, read each run); cleared by a run that finds them all well.

Memory: the open conditions and the no-adds streak are kept in the run's summary (`alerts`, in
ops_run_log.summary_json) and read back from the newest live run's row whatever its outcome (a failed run's
memory counts: that is what keeps a second failing run quiet), in ONE statement that also counts the open
dead letters; no statement at all when no URL is set. A condition is remembered as open only once its
message was delivered, and as cleared only once that message was, so a failed post is tried again next run.
When the memory cannot be read (the warehouse is down), open conditions are posted again each run: better
repeated than silent.

Messages hold counts, route and campaign labels, run ids and the run's error line, passed through
coldsync.redact (no email address, no secret). A failed post (timeout POST_TIMEOUT, a refused connection, a
non-2xx answer) is a warning in the run's report, never a failed run. No redirect is followed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from coldsync.redact import redact
from coldsync.warehouse.base import WarehouseError

if TYPE_CHECKING:
    from coldsync.phases.context import RunContext

log = logging.getLogger("coldsync.alerts")

POST_TIMEOUT = (3.05, 5.0)
"""Seconds to connect and to wait for the answer of one webhook post: a slow receiver delays the run's end by
at most this, once per message."""

CONDITIONS = ("run_failed", "no_adds", "deliverability_guard", "dead_letters", "webhooks")
FAILED_OUTCOMES = frozenset({"failed", "alarm", "config_error"})
DONE_OUTCOMES = frozenset({"success", "alarm"})
"""Runs that went through their phases: only they tell whether the top-up added anything."""
BOUNCE_PROTECT = -2
"""Instantly campaign status of a campaign held in bounce protect."""

ALERT_MEMORY_SQL = """
SELECT
  (SELECT summary_json FROM `{ds}.ops_run_log` WHERE mode = 'live' ORDER BY started_at DESC LIMIT 1) AS last_summary,
  (SELECT COUNT(*) FROM `{ds}.ops_dead_letters` WHERE resolved_at IS NULL AND gave_up_at IS NULL) AS open_letters
"""


@dataclass(frozen=True)
class Observation:
    """What one run says about each condition; None: this run cannot tell (the condition stays as it was)."""

    run_id: str
    failed: bool | None
    error: str | None = None
    idle: bool | None = None  # had room and added nothing (True), added or had no room (False)
    added: int = 0
    guards: tuple[str, ...] | None = None  # campaign labels held back by a deliverability guard
    open_dead_letters: int | None = None
    webhooks: tuple[str, ...] | None = None  # what is wrong with the webhooks (WEBHOOKS_ENABLED); None: not looked at


@dataclass(frozen=True)
class Alert:
    condition: str
    kind: str  # "open" or "cleared"
    text: str


def plan_alerts(memory: Mapping[str, Any], seen: Observation, *, after_runs: int,
                dead_letter_limit: int) -> tuple[dict[str, Any], list[Alert]]:
    """The memory after this run (as if every message is delivered) and the messages to post. Pure.

    `memory`: {"open": {condition: {"since_run": run id}}, "idle_runs": n} from the last run (anything else
    reads as empty). Returns the same shape."""
    previous = memory.get("open") if isinstance(memory.get("open"), dict) else {}
    opened: dict[str, Any] = {k: v for k, v in (previous or {}).items() if k in CONDITIONS}
    idle_runs = memory.get("idle_runs")
    idle_runs = idle_runs if isinstance(idle_runs, int) and not isinstance(idle_runs, bool) else 0
    if seen.idle is not None:
        idle_runs = idle_runs + 1 if seen.idle else 0
    now_open: dict[str, bool | None] = {
        "run_failed": seen.failed,
        "no_adds": None if seen.idle is None else idle_runs >= after_runs,
        "deliverability_guard": None if seen.guards is None else bool(seen.guards),
        "dead_letters": None if seen.open_dead_letters is None else seen.open_dead_letters > dead_letter_limit,
        "webhooks": None if seen.webhooks is None else bool(seen.webhooks),
    }
    opening: dict[str, Callable[[], str]] = {
        "run_failed": lambda: f"coldsync run {seen.run_id} failed: {seen.error or 'no cause recorded'}",
        "no_adds": lambda: (f"coldsync: {idle_runs} consecutive runs had room but added no lead (ALERT_AFTER_RUNS="
                            f"{after_runs}); check the ready counts (`sync_once.py --report`) and the routes' "
                            "warnings in the run summary"),
        "deliverability_guard": lambda: (f"coldsync: the deliverability guard holds back "
                                         f"{', '.join(seen.guards or ())} (bounce rate above MAX_BOUNCE_RATE, or "
                                         "Instantly's bounce protect): no lead is added there until it recovers"),
        "dead_letters": lambda: (f"coldsync: {seen.open_dead_letters} open dead letters, above ALERT_DEAD_LETTERS="
                                 f"{dead_letter_limit}; see `sync_once.py --report`"),
        "webhooks": lambda: ("coldsync: the Instantly webhooks need attention, so unsubscribes wait for the next run's "
                             "polling instead of arriving at once: " + "; ".join(seen.webhooks or ())
                             + " (`sync_once.py --webhooks status`; docs/OPERATIONS.md section 12)"),
    }
    clearing: dict[str, Callable[[], str]] = {
        "run_failed": lambda: f"coldsync: cleared: run {seen.run_id} succeeded",
        "no_adds": lambda: f"coldsync: cleared: run {seen.run_id} added {seen.added} lead(s)",
        "deliverability_guard": lambda: f"coldsync: cleared: no route is held back by the deliverability guard "
                                        f"(run {seen.run_id})",
        "dead_letters": lambda: (f"coldsync: cleared: {seen.open_dead_letters} open dead letters, at or below "
                                 f"ALERT_DEAD_LETTERS={dead_letter_limit}"),
        "webhooks": lambda: f"coldsync: cleared: every consumed event type has one active webhook (run {seen.run_id})",
    }
    alerts: list[Alert] = []
    for condition in CONDITIONS:
        state = now_open[condition]
        if state is True and condition not in opened:
            opened[condition] = {"since_run": seen.run_id}
            alerts.append(Alert(condition, "open", redact(opening[condition]())))
        elif state is False and condition in opened:
            del opened[condition]
            alerts.append(Alert(condition, "cleared", redact(clearing[condition]())))
    return {"open": opened, "idle_runs": idle_runs}, alerts


def post_webhook(url: str, text: str, *, session: requests.Session | None = None) -> str | None:
    """POST {"text": text} to the webhook; None when it answered 2xx, else why not (no URL in it)."""
    poster = session or requests
    try:
        answer = poster.post(url, data=json.dumps({"text": text}), timeout=POST_TIMEOUT, allow_redirects=False,
                             headers={"Content-Type": "application/json"})
    except requests.RequestException as exc:
        return f"the webhook could not be reached ({type(exc).__name__})"
    if not 200 <= answer.status_code < 300:
        return f"the webhook answered http {answer.status_code}"
    return None


def deliver(url: str, before: Mapping[str, Any], after: dict[str, Any], alerts: list[Alert],
            post: Callable[[str, str], str | None]) -> tuple[dict[str, Any], list[str]]:
    """Post each alert; the memory keeps a condition's previous state when its message was not delivered.
    Returns (memory, the failures as warning lines)."""
    failures: list[str] = []
    previous = before.get("open") if isinstance(before.get("open"), dict) else {}
    opened: dict[str, Any] = dict(after["open"])
    for alert in alerts:
        why = post(url, alert.text)
        if why is None:
            continue
        failures.append(f"alert {alert.condition} ({alert.kind}) not posted: {why}; tried again next run")
        if alert.kind == "open":
            opened.pop(alert.condition, None)
        else:
            opened[alert.condition] = (previous or {}).get(alert.condition, {})
    return {**after, "open": opened}, failures


def observe(ctx: RunContext, open_letters: int | None) -> Observation:
    """This run's standing on each condition, from its report and campaigns."""
    report, settings = ctx.report, ctx.settings
    failed = True if report.outcome in FAILED_OUTCOMES else False if report.outcome == "success" else None
    idle: bool | None = None
    guards: tuple[str, ...] | None = None
    topup = report.phases.get("topup")
    if report.outcome in DONE_OUTCOMES and settings.run_topup and topup is not None and topup.ran:
        inventory = None if report.inventory_after is None else report.inventory_after - report.added
        room = 0 if inventory is None else min(settings.target_new_leads_per_run, settings.inventory_cap - inventory)
        idle = room > 0 and report.added == 0
        if room > 0:  # the guard's figures are read only when there is room (coldsync.phases.topup)
            held = [str(label) for entry in report.routes.values() for label in entry.get("guard") or ()]
            held += [c.label for c in ctx.campaigns.values() if c.status == BOUNCE_PROTECT and not c.retired]
            guards = tuple(dict.fromkeys(held))
    if failed is None:  # interrupted: it judges nothing, and posts nothing while the job is being stopped
        open_letters = None
    webhooks = tuple(report.webhook_problems) if report.webhook_problems is not None and failed is not None else None
    return Observation(run_id=report.run_id, failed=failed, error=report.error, idle=idle, added=report.added,
                       guards=guards, open_dead_letters=open_letters, webhooks=webhooks)


def read_memory(ctx: RunContext) -> tuple[dict[str, Any], int | None]:
    """The last live run's alert memory and the open dead letters now (one statement); ({}, None) when the
    warehouse cannot answer."""
    try:
        row = ctx.store.warehouse.query(ALERT_MEMORY_SQL, label="alerts.memory")[0]
    except WarehouseError as exc:
        ctx.report.warn(f"alert memory unavailable ({exc}): open conditions are posted again")
        return {}, None
    memory: Any = {}
    if row.get("last_summary"):
        try:
            memory = json.loads(str(row["last_summary"])).get("alerts", {})
        except (ValueError, AttributeError):
            memory = {}
    return (memory if isinstance(memory, dict) else {}), int(row.get("open_letters") or 0)


def run_alerts(ctx: RunContext, post: Callable[[str, str], str | None] | None = None) -> dict[str, Any]:
    """At the end of a live run: plan, post, and return the memory to keep in the run's summary. Nothing (no
    statement, no post, {}) when ALERT_WEBHOOK_URL is empty. Never raises: a failure is a warning."""
    url = ctx.settings.alert_webhook_url.reveal()
    if not url:
        return {}
    try:
        before, open_letters = read_memory(ctx)
        after, alerts = plan_alerts(before, observe(ctx, open_letters), after_runs=ctx.settings.alert_after_runs,
                                    dead_letter_limit=ctx.settings.alert_dead_letters)
        memory, failures = deliver(url, before, after, alerts, post or (lambda u, t: post_webhook(u, t)))
    except Exception as exc:  # an alert must never fail the run it reports on
        log.warning("alerts failed: %s", redact(str(exc)))
        ctx.report.warn(f"alerts failed: {redact(str(exc))}")
        return {}
    for line in failures:
        ctx.report.warn(line)
    delivered = [a for a in alerts if not any(line.startswith(f"alert {a.condition} ({a.kind})") for line in failures)]
    return {**memory, "posted": [f"{a.condition} {a.kind}" for a in delivered]}
