"""Which leads changed: `python sync_once.py --changes [--since 24h] [--route NAME] [--reveal] [--json]`.

Reads the warehouse only (no Instantly call, no write), two statements:
- added: the attempts whose `added_at` (the adding run's start: the intent is recorded with the run's
  clock) is within the window, each once: its `ops_inst_state` row with its current status while it has
  one, else its `ops_lead_history` row (status `drained`; history keeps `added_at` since schema v7, so an
  attempt drained before v7 that was added in the window is not listed). The adding run is the live run of
  the run log that started at that instant (else the run that last changed or wrote the row);
- drained: `ops_lead_history` rows written within the window (`recorded_at`, else `completed_at`), with
  the run that wrote them, their outcome (`status_final`), policy and when the attempt ended.

The window is (now - since, now], "now" being the reports' clock (coldsync.status.report_clock: the `as_of`
config row when one pins it, as the demo does, else the current time). Grouped per run, newest first.
Emails are masked (`j***@example.com`, coldsync.redact.mask_email: the one masking function) unless
`--reveal`, which is refused under CI (CI_MARKERS: CI, GITHUB_ACTIONS, GITLAB_CI, BUILDKITE, JENKINS_URL,
TF_BUILD) because job logs are kept and shared, and which says on stderr that addresses are shown.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from coldsync.cli import ExitCode
from coldsync.embedded import embedded_settings, is_embedded
from coldsync.redact import mask_email, redact
from coldsync.settings import Settings
from coldsync.warehouse.base import Typed, Warehouse, WarehouseError

Format = Literal["text", "json"]

DEFAULT_SINCE = "24h"
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}

# One row per attempt added in the window: its state row while it has one (status as it is now), else its
# history row (a lead holding, moving or draining has both, with the same added_at).
ADDED_SQL = """
SELECT a.email, a.campaign_id, a.route, a.arm, a.status, a.added_at, COALESCE(r.run_id, a.row_run_id) AS run_id
FROM (
  SELECT s.email, s.campaign_id, s.sequence_target AS route, s.arm, s.status, s.added_at, s.run_id AS row_run_id
  FROM `{ds}.ops_inst_state` AS s
  WHERE s.added_at > @since AND s.added_at <= @until AND (@route IS NULL OR s.sequence_target = @route)
  UNION ALL
  SELECT h.email, h.campaign_id, h.sequence_name, h.arm, 'drained', h.added_at, h.run_id
  FROM `{ds}.ops_lead_history` AS h
  LEFT JOIN `{ds}.ops_inst_state` AS s
    ON s.email = h.email AND s.campaign_id = h.campaign_id AND s.added_at = h.added_at
  WHERE h.added_at > @since AND h.added_at <= @until AND (@route IS NULL OR h.sequence_name = @route)
    AND s.email IS NULL
) AS a
LEFT JOIN (
  SELECT started_at, MAX(run_id) AS run_id FROM `{ds}.ops_run_log` WHERE mode = 'live' GROUP BY started_at
) AS r ON r.started_at = a.added_at
ORDER BY a.added_at DESC, a.email
"""

DRAINED_SQL = """
SELECT email, campaign_id, sequence_name AS route, arm, status_final AS outcome, policy, completed_at,
       COALESCE(recorded_at, completed_at) AS recorded_at, run_id
FROM `{ds}.ops_lead_history`
WHERE COALESCE(recorded_at, completed_at) > @since AND COALESCE(recorded_at, completed_at) <= @until
  AND (@route IS NULL OR sequence_name = @route)
ORDER BY COALESCE(recorded_at, completed_at) DESC, email
"""

MAX_SINCE_DAYS = 3650
"""The longest --since: ten years (a longer one would overflow the clock's arithmetic)."""

CI_MARKERS = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD")
"""Variables that CI systems set in their jobs (GitHub Actions, GitLab, Buildkite, Jenkins, Azure Pipelines):
any of them set to anything but empty, 0 or false means the output may land in a kept, shared job log."""


class ChangesInputError(ValueError):
    """A flag of --changes that cannot be used; the message names the flag and the fix."""


def parse_since(text: str) -> dt.timedelta:
    """`30m`, `24h`, `7d` (minutes, hours, days; a whole number above 0) as a timedelta; ChangesInputError
    naming --since and the fix otherwise."""
    found = _DURATION.match(text or "")
    if not found or int(found.group(1)) == 0:
        raise ChangesInputError(f"--since {text!r} is not a duration: give a whole number above 0 followed by "
                                "m (minutes), h (hours) or d (days), such as 30m, 24h or 7d")
    since = dt.timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2).lower()])
    if since > dt.timedelta(days=MAX_SINCE_DAYS):
        raise ChangesInputError(f"--since {text!r} is too far back: give at most {MAX_SINCE_DAYS}d (ten years), "
                                "such as 7d or 365d")
    return since


def under_ci(environ: Mapping[str, str] | None = None) -> str | None:
    """The first CI_MARKERS variable set to anything but empty, 0 or false (GitHub Actions sets CI=true and
    GITHUB_ACTIONS=true), else None."""
    env = os.environ if environ is None else environ
    return next((name for name in CI_MARKERS if env.get(name, "").strip().lower() not in ("", "0", "false")), None)


def check_reveal(reveal: bool, environ: Mapping[str, str] | None = None) -> None:
    """ChangesInputError when --reveal is asked for under CI (job logs are kept and shared)."""
    marker = under_ci(environ) if reveal else None
    if marker is not None:
        raise ChangesInputError(f"--reveal shows full email addresses and is refused under CI (the {marker} "
                                "variable is set): job logs are kept and shared. Run it on your own machine, or "
                                "drop --reveal (addresses are then masked)")


def _iso(value: object) -> str | None:
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    return None if value is None else str(value)


@dataclass
class Changes:
    """The leads added and drained since `since` (ISO-8601 UTC), per run (newest first)."""

    now: str
    since: str
    window: str
    route: str | None
    revealed: bool
    runs: list[dict[str, Any]] = field(default_factory=list)  # run_id, added: [...], drained: [...]

    @property
    def added(self) -> int:
        return sum(len(r["added"]) for r in self.runs)

    @property
    def drained(self) -> int:
        return sum(len(r["drained"]) for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now, "since": self.since, "window": self.window, "route": self.route,
                "emails": "revealed" if self.revealed else "masked", "added": self.added, "drained": self.drained,
                "runs": self.runs}

    def render(self, fmt: Format) -> str:
        """JSON or text; masked output passes the one redaction path (coldsync.redact) on its way out."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) if fmt == "json" else self.render_text()
        return text if self.revealed else redact(text)

    def render_text(self) -> str:
        where = f" in route {self.route}" if self.route else ""
        shown = "emails shown in full (--reveal)" if self.revealed else "emails masked; --reveal shows them"
        lines = [f"coldsync changes since {self.since} (last {self.window}){where}: {self.added} added, "
                 f"{self.drained} drained in {len(self.runs)} run(s) ({shown})"]
        for run in self.runs:
            lines.append(f"  run {run['run_id']}: {len(run['added'])} added, {len(run['drained'])} drained")
            for r in run["added"]:
                lines.append(f"    added    {r['email']:<34} {_where(r):<20} {r['status']:<9} "
                             f"added {r['added_at']}")
            for r in run["drained"]:
                policy = f" (policy {r['policy']})" if r["policy"] else ""
                lines.append(f"    drained  {r['email']:<34} {_where(r):<20} {r['outcome']}{policy}, ended "
                             f"{r['completed_at']}, recorded {r['recorded_at']}")
        return "\n".join(lines)


def _where(row: Mapping[str, Any]) -> str:
    route, arm = row.get("route") or "(no route)", row.get("arm")
    return route if not arm or arm == route else f"{route}/{arm}"


def collect_changes(warehouse: Warehouse, *, since: dt.timedelta, route: str | None = None, reveal: bool = False,
                    now: dt.datetime | None = None) -> Changes:
    """The changes in (now - since, now] (two reads; `now` default: the current time). Emails are masked unless
    `reveal` (the caller checks CI: check_reveal). Raises WarehouseError."""
    now = now or dt.datetime.now(dt.UTC)
    start = now - since
    params: dict[str, Any] = {"since": start, "until": now, "route": Typed(route, "STRING")}
    show = (lambda e: str(e)) if reveal else mask_email
    runs: dict[str, dict[str, Any]] = {}
    order: list[tuple[str, str]] = []

    def run_of(run_id: object, at: str | None) -> dict[str, Any]:
        key = str(run_id or "(unknown run)")
        if key not in runs:
            runs[key] = {"run_id": key, "added": [], "drained": []}
            order.append((at or "", key))
        return runs[key]

    for r in warehouse.query(ADDED_SQL, params, label="changes.added"):
        at = _iso(r["added_at"])
        run_of(r["run_id"], at)["added"].append({
            "email": show(r["email"]), "route": r["route"], "arm": r["arm"], "campaign_id": r["campaign_id"],
            "status": str(r["status"]), "added_at": at})
    for r in warehouse.query(DRAINED_SQL, params, label="changes.drained"):
        at = _iso(r["recorded_at"])
        run_of(r["run_id"], at)["drained"].append({
            "email": show(r["email"]), "route": r["route"], "arm": r["arm"], "campaign_id": r["campaign_id"],
            "outcome": str(r["outcome"]), "policy": r["policy"], "completed_at": _iso(r["completed_at"]),
            "recorded_at": at})
    newest_first = [runs[key] for _at, key in sorted(order, key=lambda item: item[0], reverse=True)]
    return Changes(now=_iso(now) or "", since=_iso(start) or "", window=_window(since), route=route,
                   revealed=reveal, runs=newest_first)


def _window(since: dt.timedelta) -> str:
    seconds = int(since.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def changes_command(settings: Settings, warehouse: Warehouse, *, since: dt.timedelta, route: str | None,
                    reveal: bool, fmt: Format) -> int:
    """`sync_once.py --changes`: print the changes of the `since` before the reports' clock (the `as_of` config
    row when one pins it, else now); close the warehouse; return the exit code (2 for a route not in effect, 1
    when the warehouse cannot answer)."""
    try:
        if is_embedded(settings):
            settings = embedded_settings(settings)
        names = [r.name for r in settings.routing.routes]
        if route is not None and route not in names:
            print(f"Configuration error: --route {route!r} is not a route in effect: give one of "
                  f"{', '.join(names)}", file=sys.stderr)
            return ExitCode.BAD_CONFIG
        from coldsync.status import report_clock  # here: coldsync.status imports much of the package

        try:
            now, _clock = report_clock(warehouse)
            changes = collect_changes(warehouse, since=since, route=route, reveal=reveal, now=now)
        except WarehouseError as exc:
            print(f"Changes unavailable: {redact(str(exc))} (run `python setup.py` if the tables are missing)",
                  file=sys.stderr)
            return ExitCode.RUN_FAILED
    finally:
        warehouse.close()
    if reveal:
        print("showing full email addresses (--reveal): keep this output private", file=sys.stderr)
    print(changes.render(fmt))
    return ExitCode.OK
