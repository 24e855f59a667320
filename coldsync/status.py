"""The status report: what the warehouse says about the sync, without writing SQL.

`python sync_once.py --report` (text), `--report --markdown` (a GitHub job summary), `--report --json`.
It reads the warehouse only (no Instantly call, no write): leads ready per route, managed leads by
campaign and status, inventory against the cap, the do-not-contact list by source, leads in cooldown,
dead letters of the last 24 hours by phase and error, and the last runs with counts and durations.

"Now" is the current time, unless the config row `as_of` pins the view's clock (simulations): then
the report counts from that time too, and says so. Emails never appear: every figure is a count.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from coldsync import abtest
from coldsync.cli import ExitCode
from coldsync.embedded import embedded_settings, is_embedded
from coldsync.outcomes import PolicyTable, may_return_sql
from coldsync.redact import redact, redact_data
from coldsync.report import UNROUTED
from coldsync.settings import Settings
from coldsync.store import Store
from coldsync.warehouse.base import Warehouse, WarehouseError
from coldsync.warehouse.migrate import read_config
from coldsync.warehouse.schema import TABLES, views

Format = Literal["text", "markdown", "json"]

STATE_SQL = """
SELECT campaign_id, status, COUNT(*) AS leads
FROM `{ds}.ops_inst_state`
GROUP BY campaign_id, status
ORDER BY campaign_id, status
"""

# How drained leads ended over the last 30 days, by outcome and the policy applied (coldsync.outcomes):
# `never_back` = rows whose policy keeps the address out for good (return_at empty).
OUTCOMES_SQL = """
SELECT status_final, COALESCE(policy, '(before policies)') AS policy, COUNT(*) AS leads,
       COUNTIF(policy IS NOT NULL AND return_at IS NULL) AS never_back
FROM `{ds}.ops_lead_history`
WHERE completed_at >= @since
GROUP BY status_final, policy
ORDER BY leads DESC, status_final, policy
"""

# The leads held in their campaign after their outcome was recorded (state 'holding': coldsync.phases.drain),
# by campaign and by the policy their history row has now (a rep's later status included).
HELD_SQL = """
SELECT campaign_id, held_policy AS policy, COUNT(*) AS leads, MIN(hold_until) AS first_ends,
       MAX(hold_until) AS last_ends, COUNTIF(hold_until <= @in_7_days) AS ending_in_7_days
FROM (
  SELECT s.campaign_id, s.hold_until, COALESCE(h.policy, s.outcome, 'unknown') AS held_policy
  FROM `{ds}.ops_inst_state` AS s
  LEFT JOIN (
    SELECT instantly_lead_id, MAX(policy) AS policy
    FROM `{ds}.ops_lead_history`
    WHERE instantly_lead_id IN (SELECT instantly_lead_id FROM `{ds}.ops_inst_state` WHERE status = 'holding')
    GROUP BY instantly_lead_id
  ) AS h ON h.instantly_lead_id = s.instantly_lead_id
  WHERE s.status = 'holding'
) AS held
GROUP BY campaign_id, held_policy
ORDER BY campaign_id, held_policy
"""

DNC_SQL = """
SELECT source, COUNTIF(email IS NOT NULL) AS emails, COUNTIF(email IS NULL AND domain IS NOT NULL) AS domains
FROM `{ds}.ops_dnc`
GROUP BY source
ORDER BY source
"""

# Rule 5 of eligibility, its one definition (coldsync.outcomes.may_return_sql), over each lead's history
# rows: held back now (a policy that never returns included), and allowed back within 7 days.
def cooldown_sql(outcomes: PolicyTable) -> str:
    """In cooldown now and leaving it within 7 days, per stored address, by the outcome policy table."""
    def allowed(as_of: str) -> str:
        return f"MIN(CASE WHEN {may_return_sql(outcomes, as_of=as_of, alias='h')} THEN 1 ELSE 0 END)"
    return f"""
SELECT COUNTIF(c.now_ok = 0) AS in_cooldown, COUNTIF(c.now_ok = 0 AND c.week_ok = 1) AS leaving_in_7_days
FROM (
  SELECT h.email, {allowed("@now")} AS now_ok, {allowed("@in_7_days")} AS week_ok
  FROM `{{ds}}.ops_lead_history` AS h
  GROUP BY h.email
) AS c
"""  # noqa: S608


DEAD_LETTERS_SQL = """
SELECT phase, operation, http_status, COUNT(*) AS failures,
       COUNTIF(resolved_at IS NULL AND gave_up_at IS NULL) AS still_open,
       COUNTIF(resolved_at IS NOT NULL) AS resolved,
       COUNTIF(gave_up_at IS NOT NULL) AS given_up,
       MAX(error_text) AS example_error
FROM `{ds}.ops_dead_letters`
WHERE occurred_at >= @since OR last_attempt_at >= @since
GROUP BY phase, operation, http_status
ORDER BY failures DESC, phase, operation
"""

OPEN_DEAD_LETTERS_SQL = """
SELECT COUNT(*) AS still_open FROM `{ds}.ops_dead_letters` WHERE resolved_at IS NULL AND gave_up_at IS NULL
"""

RUNS_SQL = """
SELECT run_id, started_at, mode, outcome, drained, added, dead_letters, inventory_before, inventory_after,
       api_calls, warehouse_statements, duration_seconds, error_text
FROM `{ds}.ops_run_log`
WHERE started_at >= @since
ORDER BY started_at DESC
LIMIT @limit
"""

RUNS_LOOKBACK = dt.timedelta(days=30)


class StatusError(Exception):
    """The report cannot be made (no schema yet, warehouse error); the message says what to do."""


@dataclass
class StatusReport:
    warehouse: str
    now: str
    clock: str  # "current time" or "as_of config row (simulations only)"
    ready_by_route: dict[str, int]
    state: list[dict[str, Any]]  # route (or route/arm), campaign_id, status, leads
    inventory_tracked: int
    inventory_cap: int
    last_measured_inventory: int | None
    last_measured_at: str | None
    dnc_by_source: list[dict[str, Any]]
    cooldown_days: int
    in_cooldown: int
    leaving_cooldown_in_7_days: int
    dead_letters_24h: list[dict[str, Any]]
    open_dead_letters: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    outcomes_30d: list[dict[str, Any]] = field(default_factory=list)  # status_final, policy, leads, never_back
    # route, campaign_id, policy, leads, first_ends, last_ends (ISO-8601 UTC), ending_in_7_days
    held: list[dict[str, Any]] = field(default_factory=list)
    # Per route with arms: rates per arm and each arm's test against the first (coldsync.abtest.ab_results).
    ab_tests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def held_total(self) -> int:
        return sum(int(r["leads"]) for r in self.held)

    @property
    def ready_total(self) -> int:
        return sum(self.ready_by_route.values())

    @property
    def dnc_total(self) -> int:
        return sum(int(r["emails"]) + int(r["domains"]) for r in self.dnc_by_source)

    @property
    def room(self) -> int:
        inventory = max(self.inventory_tracked, self.last_measured_inventory or 0)
        return max(self.inventory_cap - inventory, 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ready_total=self.ready_total, dnc_total=self.dnc_total, room=self.room, held_total=self.held_total)
        return data

    def to_json(self) -> str:
        """The report as JSON, every string in it redacted (coldsync.redact.redact_data)."""
        return json.dumps(redact_data(self.to_dict()), indent=2, sort_keys=True,
                          default=lambda v: redact(str(v)))

    def render(self, fmt: Format) -> str:
        """The report in `fmt`, through the one redaction path (coldsync.redact) whatever the format."""
        if fmt == "json":
            return self.to_json()
        return redact(self.render_markdown() if fmt == "markdown" else self.render_text())

    def _inventory_line(self) -> str:
        measured = ("" if self.last_measured_inventory is None else
                    f"; last run measured {self.last_measured_inventory:,} in Instantly at {self.last_measured_at}")
        return (f"{self.inventory_tracked:,} tracked in the warehouse{measured}; cap {self.inventory_cap:,}, "
                f"room {self.room:,}")

    def render_text(self) -> str:
        lines = [f"coldsync status at {self.now} ({self.clock}) on {self.warehouse}"]
        routes = ", ".join(f"{k} {v:,}" for k, v in sorted(self.ready_by_route.items())) or "none"
        lines.append(f"  ready for Instantly: {self.ready_total:,} ({routes})")
        lines.append(f"  inventory: {self._inventory_line()}")
        lines.append("  managed leads by campaign and status:" + ("" if self.state else " none"))
        lines.extend(f"    {r['route']:<8} {r['campaign_id']:<36}  {r['status']:<9} {int(r['leads']):>8,}"
                     for r in self.state)
        sources = ", ".join(f"{r['source']} {int(r['emails']) + int(r['domains']):,}" for r in self.dnc_by_source)
        domains = sum(int(r["domains"]) for r in self.dnc_by_source)
        lines.append(f"  do-not-contact: {self.dnc_total:,} entries ({domains:,} domains)"
                     + (f": {sources}" if sources else ""))
        lines.append(f"  resting (outcome policies: {self.cooldown_days} days after no reply, longer or never after a "
                     f"reply): {self.in_cooldown:,} leads, "
                     f"{self.leaving_cooldown_in_7_days:,} eligible again within 7 days")
        lines.append("  drained, last 30 days, by outcome and policy:" + ("" if self.outcomes_30d else " none"))
        lines.extend(f"    {r['status_final']:<13} {r['policy']:<18} {int(r['leads']):>8,}"
                     + (f"  ({int(r['never_back']):,} never back)" if int(r["never_back"]) else "")
                     for r in self.outcomes_30d)
        lines.append(f"  held in their campaign (outcome recorded): {self.held_total:,}"
                     + ("" if self.held else " none"))
        lines.extend(f"    {r['route']:<8} {r['campaign_id']:<36}  {r['policy']:<14} {int(r['leads']):>6,}  "
                     f"hold ends {r['first_ends']} .. {r['last_ends']} ({int(r['ending_in_7_days']):,} within 7 days)"
                     for r in self.held)
        lines.append(f"  dead letters, last 24 hours: {sum(int(r['failures']) for r in self.dead_letters_24h):,} "
                     f"(open overall: {self.open_dead_letters:,})")
        for r in self.dead_letters_24h:
            lines.append(f"    {r['phase']}/{r['operation']} http {_n(r['http_status'])}: "
                         f"{int(r['failures']):,} ({int(r['still_open'])} open, {int(r['resolved'])} resolved, "
                         f"{int(r['given_up'])} given up) e.g. {r['example_error'] or '-'}")
        lines.append(f"  last {len(self.runs)} runs:" + ("" if self.runs else " none in the last 30 days"))
        for r in self.runs:
            lines.append(f"    {r['started_at']}  {r['mode']:<7} {r['outcome']:<12} drained {_n(r['drained'])}, "
                         f"added {_n(r['added'])}, dead letters {_n(r['dead_letters'])}, inventory "
                         f"{_n(r['inventory_before'])} -> {_n(r['inventory_after'])}, {_secs(r['duration_seconds'])}"
                         + (f"  error: {r['error_text']}" if r["error_text"] else ""))
        lines.extend(abtest.render_text(self.ab_tests))
        return "\n".join(lines)

    def render_markdown(self) -> str:
        routes = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.ready_by_route.items())) or "none"
        out = [f"### coldsync status ({self.now}, {self.clock})", "",
               "| | |", "|---|---|",
               f"| Warehouse | {self.warehouse} |",
               f"| Ready for Instantly | {self.ready_total:,} ({routes}) |",
               f"| Inventory | {self._inventory_line()} |",
               f"| Do-not-contact | {self.dnc_total:,} entries |",
               f"| Resting (outcome policies: {self.cooldown_days} days after no reply) | {self.in_cooldown:,} "
               f"({self.leaving_cooldown_in_7_days:,} eligible again within 7 days) |",
               f"| Open dead letters | {self.open_dead_letters:,} |", ""]
        if self.state:
            out += ["**Managed leads**", "", "| Route | Campaign | Status | Leads |", "|---|---|---|---:|"]
            out += [f"| {r['route']} | `{r['campaign_id']}` | {r['status']} | {int(r['leads']):,} |"
                    for r in self.state]
            out.append("")
        if self.dnc_by_source:
            out += ["**Do-not-contact by source**", "", "| Source | Emails | Domains |", "|---|---:|---:|"]
            out += [f"| {r['source']} | {int(r['emails']):,} | {int(r['domains']):,} |" for r in self.dnc_by_source]
            out.append("")
        if self.outcomes_30d:
            out += ["**Drained, last 30 days, by outcome and policy**", "",
                    "| Outcome | Policy | Leads | Never back |", "|---|---|---:|---:|"]
            out += [f"| {r['status_final']} | {r['policy']} | {int(r['leads']):,} | {int(r['never_back']):,} |"
                    for r in self.outcomes_30d]
            out.append("")
        if self.held:
            out += [f"**Held in their campaign (outcome recorded): {self.held_total:,}**", "",
                    "| Route | Campaign | Policy | Leads | First hold ends | Last hold ends | Ending within 7 days |",
                    "|---|---|---|---:|---|---|---:|"]
            out += [f"| {r['route']} | `{r['campaign_id']}` | {r['policy']} | {int(r['leads']):,} | "
                    f"{r['first_ends']} | {r['last_ends']} | {int(r['ending_in_7_days']):,} |" for r in self.held]
            out.append("")
        out += ["**Dead letters, last 24 hours**", ""]
        if self.dead_letters_24h:
            out += ["| Phase | Operation | HTTP | Failures | Open | Resolved | Given up | Example |",
                    "|---|---|---|---:|---:|---:|---:|---|"]
            out += [f"| {r['phase']} | {r['operation']} | {_n(r['http_status'])} | "
                    f"{int(r['failures'])} | {int(r['still_open'])} | {int(r['resolved'])} | {int(r['given_up'])} | "
                    f"{_cell(r['example_error'])} |" for r in self.dead_letters_24h]
        else:
            out.append("none")
        out += ["", "**Last runs**", ""]
        if self.runs:
            out += ["| Started | Mode | Outcome | Drained | Added | Dead letters | Inventory | Duration |",
                    "|---|---|---|---:|---:|---:|---|---:|"]
            out += [f"| {r['started_at']} | {r['mode']} | {r['outcome']} | {_n(r['drained'])} | {_n(r['added'])} | "
                    f"{_n(r['dead_letters'])} | {_n(r['inventory_before'])} → {_n(r['inventory_after'])} | "
                    f"{_secs(r['duration_seconds'])} |" for r in self.runs]
        else:
            out.append("none in the last 30 days")
        if self.ab_tests:
            out += ["", f"**A/B results** ({abtest.METHOD}; each arm against the route's first)", "", "```"]
            out += [line[4:] for line in abtest.render_text(self.ab_tests)[1:]]
            out.append("```")
        return "\n".join(out) + "\n"


def _n(value: object) -> str:
    return "-" if value is None else f"{int(str(value)):,}"


def _secs(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.1f}s"


def _cell(value: object) -> str:
    """A Markdown table cell of at most 120 characters: redacted whole first, cut after (coldsync.redact)."""
    return "-" if not value else redact(str(value)).replace("|", "\\|").replace("\n", " ")[:120]


def _iso(value: object) -> str | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    return None if value is None else str(value)


def _clock(config: dict[str, object]) -> tuple[dt.datetime | None, str]:
    raw = config.get("as_of")
    if isinstance(raw, str) and raw.strip():
        try:
            pinned = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            return None, "current time (the as_of config row does not parse)"
        pinned = pinned if pinned.tzinfo else pinned.replace(tzinfo=dt.UTC)
        return pinned, "as_of config row: a pinned clock, for simulations only"
    return None, "current time"


def report_clock(warehouse: Warehouse) -> tuple[dt.datetime, str]:
    """The time the reports count from and how it was chosen: the `as_of` config row when one pins it
    (simulations: the demo), else the current time (UTC). Reads the config table only."""
    pinned, clock = _clock(read_config(warehouse))
    return pinned or dt.datetime.now(dt.UTC), clock


def collect(settings: Settings, warehouse: Warehouse, *, now: dt.datetime | None = None,
            runs: int = 10) -> StatusReport:
    """Read the figures from the warehouse (reads only); raise StatusError when it is not set up."""
    names = [spec.name for spec in TABLES] + [name for name, _sql in views(settings.routing, settings.outcome_table)]
    missing = [name for name in names if warehouse.existing_columns(name) is None]
    if missing:
        raise StatusError(f"the warehouse lacks {', '.join(missing)}: run `python setup.py` first "
                          "(`python validate_environment.py` checks the whole setup)")
    config = read_config(warehouse)
    pinned, clock = _clock(config)
    if now is None:
        now = pinned or dt.datetime.now(dt.UTC)
    route_of = {arm.campaign_id: route.name if len(route.arms) == 1 else f"{route.name}/{arm.name}"
                  for route in settings.routing.routes for arm in route.arms if arm.campaign_id}

    def q(sql: str, label: str, **params: Any) -> list[dict[str, Any]]:
        return warehouse.query(sql, params or None, label=f"status.{label}")

    # Ready as the next run would count them (its settings, this clock).
    counts, _unscored = Store.for_settings(warehouse, "status", now, settings).ready_counts()
    ready = {route.name: counts.get(route.name, 0) for route in settings.routing.routes}
    if counts.get(None):
        ready[UNROUTED] = counts[None]
    state: list[dict[str, Any]] = [
        {"route": route_of.get(str(r["campaign_id"]), "other"), "campaign_id": str(r["campaign_id"]),
         "status": str(r["status"]), "leads": int(r["leads"])} for r in q(STATE_SQL, "state")]
    tracked = sum(int(r["leads"]) for r in state if r["campaign_id"] in route_of)
    cooldown = q(cooldown_sql(settings.outcome_table), "cooldown", now=now, in_7_days=now + dt.timedelta(days=7))[0]
    dead = [{**r, "example_error": redact(str(r["example_error"])) if r["example_error"] else None}
            for r in q(DEAD_LETTERS_SQL, "dead_letters", since=now - dt.timedelta(hours=24))]
    run_rows = q(RUNS_SQL, "runs", since=now - RUNS_LOOKBACK, limit=runs)
    last_runs = [{**r, "started_at": _iso(r["started_at"]),
                  "error_text": redact(str(r["error_text"])) if r["error_text"] else None}
                 for r in run_rows]
    measured = next((r for r in last_runs if r["inventory_after"] is not None and r["mode"] == "live"), None)
    return StatusReport(
        warehouse=warehouse.describe(), now=now.astimezone(dt.UTC).isoformat(timespec="seconds"), clock=clock,
        ready_by_route=ready, state=state, inventory_tracked=tracked, inventory_cap=settings.inventory_cap,
        last_measured_inventory=int(measured["inventory_after"]) if measured else None,
        last_measured_at=measured["started_at"] if measured else None,
        dnc_by_source=[{"source": str(r["source"]), "emails": int(r["emails"]), "domains": int(r["domains"])}
                       for r in q(DNC_SQL, "dnc")],
        cooldown_days=settings.cooldown_days, in_cooldown=int(cooldown["in_cooldown"] or 0),
        leaving_cooldown_in_7_days=int(cooldown["leaving_in_7_days"] or 0),
        dead_letters_24h=dead, open_dead_letters=int(q(OPEN_DEAD_LETTERS_SQL, "open_dead_letters")[0]["still_open"]),
        runs=last_runs,
        outcomes_30d=[{"status_final": str(r["status_final"]), "policy": str(r["policy"]), "leads": int(r["leads"]),
                       "never_back": int(r["never_back"] or 0)}
                      for r in q(OUTCOMES_SQL, "outcomes", since=now - RUNS_LOOKBACK)],
        held=[{"route": route_of.get(str(r["campaign_id"]), "other"), "campaign_id": str(r["campaign_id"]),
               "policy": str(r["policy"]), "leads": int(r["leads"]), "first_ends": _iso(r["first_ends"]),
               "last_ends": _iso(r["last_ends"]), "ending_in_7_days": int(r["ending_in_7_days"] or 0)}
              for r in q(HELD_SQL, "held", in_7_days=now + dt.timedelta(days=7))],
        ab_tests=abtest.ab_results(warehouse, settings.routing),
    )


def report_command(settings: Settings, warehouse: Warehouse, fmt: Format) -> int:
    """`sync_once.py --report`: print the report; close the warehouse; return the exit code."""
    if is_embedded(settings):
        settings = embedded_settings(settings)  # the demo campaign ids, to name the routes
    pictures = ""
    try:
        report = collect(settings, warehouse)
        if fmt == "markdown":  # the job summary: inventory charts and the funnel (coldsync.analytics_report)
            from coldsync.analytics_report import summary_markdown

            pictures = "\n" + summary_markdown(warehouse, dt.datetime.fromisoformat(report.now))
    except (StatusError, WarehouseError) as exc:
        print(f"Status report unavailable: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        warehouse.close()
    print(report.render(fmt) + pictures)
    return ExitCode.OK
