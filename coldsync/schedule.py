"""When the scheduled sync runs: the window in America/New_York, and the early-exit decision.

The window: every 30 minutes from 09:00 to 18:00 (both included) Monday to Friday, and every 2 hours
(00:00, 02:00, ... 22:00) on Saturday and Sunday, New York local time.

GitHub's cron is UTC only and New York moves between UTC-5 (EST) and UTC-4 (EDT), so the workflow's
cron lines (`CRON_LINES`, copied into .github/workflows/sync.yml; a test keeps them equal) fire at
every UTC time that is a window slot under either offset. The workflow's first job then asks this
module whether the slot that fired is in the window in local time, and ends the run early when it is
not. The slot is taken from the cron line that fired, not from the clock: GitHub often starts
scheduled runs many minutes late, and a late 18:00 run is still the 18:00 run.

    python -m coldsync.schedule --event schedule --cron "0,30 13-22 * * 1-5"

prints the decision and, under GitHub Actions, writes `run=true|false` to $GITHUB_OUTPUT. Manual
(`workflow_dispatch`) runs always go. Standard library only: the gate job installs nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

TIMEZONE = ZoneInfo("America/New_York")
WEEKDAY_FIRST = dt.time(9, 0)
WEEKDAY_LAST = dt.time(18, 0)
WEEKDAY_EVERY_MINUTES = 30
WEEKEND_EVERY_HOURS = 2

# UTC cron lines = window slots under EDT (UTC-4) and EST (UTC-5), without two lines sharing a minute:
#   weekdays 09:00-18:00 local -> 13:00-22:00 UTC (EDT) and 14:00-23:00 UTC (EST), every 30 minutes;
#   weekends every 2 hours local -> every hour UTC on Saturday and Sunday, plus Monday 00:00-03:00 UTC,
#   which is still Sunday evening in New York.
CRON_LINES: tuple[str, ...] = (
    "0,30 13-22 * * 1-5",
    "0 23 * * 1-5",
    "0 * * * 0,6",
    "0 0-3 * * 1",
)

_FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def in_window(local: dt.datetime) -> bool:
    """Whether a New York local time is a scheduled slot of the window."""
    local = local.astimezone(TIMEZONE) if local.tzinfo is not None else local
    if local.second or local.microsecond:
        return False
    if local.weekday() < 5:
        first = WEEKDAY_FIRST.hour * 60 + WEEKDAY_FIRST.minute
        last = WEEKDAY_LAST.hour * 60 + WEEKDAY_LAST.minute
        minutes = local.hour * 60 + local.minute
        return first <= minutes <= last and (minutes - first) % WEEKDAY_EVERY_MINUTES == 0
    return local.minute == 0 and local.hour % WEEKEND_EVERY_HOURS == 0


def _parse_field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start_text, end_text = body.split("-", 1)
            start, end = int(start_text), int(end_text)
        else:
            start = int(body)
            end = high if step_text else start
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"cron field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A five-field cron line (minute hour day-of-month month day-of-week), evaluated in UTC."""

    line: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 is folded into 0)
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, line: str) -> Cron:
        fields = line.split()
        if len(fields) != 5:
            raise ValueError(f"cron line {line!r} does not have 5 fields")
        parsed = [_parse_field(f, lo, hi) for f, (lo, hi) in zip(fields, _FIELD_BOUNDS, strict=True)]
        weekdays = frozenset(0 if d == 7 else d for d in parsed[4])
        return cls(line, parsed[0], parsed[1], parsed[2], parsed[3], weekdays,
                   fields[2] != "*", fields[4] != "*")

    def matches(self, when: dt.datetime) -> bool:
        """Whether the line fires at this minute (`when` is converted to UTC)."""
        utc = when.astimezone(dt.UTC)
        if utc.minute not in self.minutes or utc.hour not in self.hours or utc.month not in self.months:
            return False
        day_ok = utc.day in self.days
        weekday_ok = (utc.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok  # cron's rule: either restriction suffices
        return day_ok and weekday_ok

    def last_fire(self, now: dt.datetime, lookback: dt.timedelta = dt.timedelta(days=8)) -> dt.datetime | None:
        """The latest minute at or before `now` at which the line fires (None if none in `lookback`)."""
        moment = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
        earliest = moment - lookback
        while moment >= earliest:
            if self.matches(moment):
                return moment
            moment -= dt.timedelta(minutes=1)
        return None


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str


def decide(event: str, cron: str | None, now: dt.datetime) -> Decision:
    """Should this workflow run go on? Only scheduled runs are gated; the slot comes from the cron line."""
    if event != "schedule":
        return Decision(True, f"{event or 'manual'} run: always goes (only scheduled runs are gated)")
    if not cron:
        return Decision(True, "scheduled run without its cron line: goes (cannot tell which slot fired)")
    fired = Cron.parse(cron).last_fire(now)
    if fired is None:
        return Decision(True, f"cron {cron!r} has no slot in the last days: goes")
    local = fired.astimezone(TIMEZONE)
    where = f"slot {fired:%a %H:%M} UTC is {local:%a %H:%M %Z} in New York"
    if in_window(local):
        return Decision(True, f"{where}: inside the window")
    return Decision(False, f"{where}: outside the window, nothing to do (the other offset's cron line)")


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(description="Decide whether a scheduled sync run is inside the window.")
    parser.add_argument("--event", default=env.get("GITHUB_EVENT_NAME", ""), help="the GitHub event name")
    parser.add_argument("--cron", default="", help="the cron line that fired (github.event.schedule)")
    parser.add_argument("--now", default="", help="ISO time to decide for (tests); default: the clock")
    args = parser.parse_args(argv)
    now = dt.datetime.fromisoformat(args.now) if args.now else dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    decision = decide(args.event, args.cron or None, now)
    print(f"{'run' if decision.run else 'skip'}: {decision.reason}")
    output = env.get("GITHUB_OUTPUT")
    if output:
        with Path(output).open("a", encoding="utf-8") as handle:
            handle.write(f"run={'true' if decision.run else 'false'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
