"""When the scheduled sync runs: the window in America/New_York, and which slot a scheduled start is for.

The window: every 30 minutes from 09:00 to 18:00 (both included) Monday to Friday, and every 2 hours
(00:00, 02:00, ... 22:00) on Saturday and Sunday, New York local time. A slot's run is scheduled
`RUN_OFFSET` (7 minutes) after the slot: GitHub is busiest at minutes 0 and 30.

GitHub's cron is UTC only and New York moves between UTC-5 (EST) and UTC-4 (EDT), so the workflow's
cron lines (`CRON_LINES`, copied into .github/workflows/sync.yml; a test keeps them equal) fire 7
minutes after every UTC time that is a window slot under either offset. GitHub starts scheduled runs
late, often by more than 30 minutes, so the start time alone cannot tell two slots 30 minutes apart.
Each line therefore fires at most once every 2 hours, and the line that fired (`github.event.schedule`)
plus the start time name one firing: the line's latest firing at or before the start. That holds for
any delay up to `MAX_DELAY` (119 minutes). Every slot has exactly one firing, so a slot runs at most
once without any stored state. A later start is skipped when its line has not fired since, and is
otherwise taken for the newer firing (docs/OPERATIONS.md, section 2, says what that costs).

    python3 -m coldsync.schedule --event schedule --cron "7 14-22/2 * * 1-5" --now 2026-07-17T22:31:00Z

prints the decision and, under GitHub Actions, writes `run=true|false`, `slot=...` (what the run
is for, shown in the run summary) and `report=true|false` (whether the run also uploads the day's HTML
analytics report: the day's first slot, and manual runs; `Decision.daily_report`) to $GITHUB_OUTPUT.
Manual (`workflow_dispatch`) runs always go, and so does a scheduled run re-run by hand
(`GITHUB_RUN_ATTEMPT` above 1: its start time no longer says which slot it was).
Standard library only: the gate job installs nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

TIMEZONE = ZoneInfo("America/New_York")
WEEKDAY_FIRST = dt.time(9, 0)
WEEKDAY_LAST = dt.time(18, 0)
WEEKDAY_EVERY_MINUTES = 30
WEEKEND_EVERY_HOURS = 2

# A slot's run is scheduled this long after the slot: off the busy minutes 0 and 30.
RUN_OFFSET = dt.timedelta(minutes=7)
# The latest start still matched to its firing: each cron line's firings are at least 2 hours apart,
# so within 119 minutes of a start exactly one firing of its line can be the one that started it.
MAX_DELAY = dt.timedelta(minutes=119)

# UTC cron lines = window slots + 7 minutes under EDT (UTC-4) and EST (UTC-5). No two lines share a
# minute, and no line fires twice within 2 hours (tests/test_schedule.py checks both over two years):
#   weekdays 09:00-18:00 local -> 13:00-22:00 UTC (EDT) and 14:00-23:00 UTC (EST), every 30 minutes,
#   split by minute (:07, :37) and by odd or even hour;
#   weekends every 2 hours local -> every hour UTC on Saturday and Sunday (even hours are the EDT slots,
#   odd hours the EST ones), plus Monday 00:00-03:00 UTC, which is still Sunday evening in New York.
CRON_LINES: tuple[str, ...] = (
    "7 13-23/2 * * 1-5",  # 09:00 ... 17:00 EDT, 10:00 ... 18:00 EST
    "7 14-22/2 * * 1-5",  # 10:00 ... 18:00 EDT, 09:00 ... 17:00 EST
    "37 13-21/2 * * 1-5",  # 09:30 ... 17:30 EDT, 10:30 ... 16:30 EST
    "37 14-22/2 * * 1-5",  # 10:30 ... 17:30 EDT, 09:30 ... 17:30 EST
    "7 */2 * * 0,6",  # weekends, even UTC hours: the EDT slots
    "7 1-23/2 * * 0,6",  # weekends, odd UTC hours: the EST slots
    "7 0,2 * * 1",  # Sunday 20:00 and 22:00 EDT
    "7 1,3 * * 1",  # Sunday 20:00 and 22:00 EST
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


def runs_per_day(day: dt.date) -> int:
    """Scheduled slots on a New York calendar day: 19 on a weekday (09:00 to 18:00 every 30 minutes), 12 on
    a weekend day (every 2 hours). The reconcile audit spreads its look-ups so every tracked lead is checked
    once a day (coldsync.phases.reconcile.audit_budget)."""
    return sum(1 for minutes in range(0, 24 * 60, 30)
               if in_window(dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60))))


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
        return utc.minute in self.minutes and self._hour_matches(utc)

    def _hour_matches(self, utc: dt.datetime) -> bool:
        if utc.hour not in self.hours or utc.month not in self.months:
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
        hour = moment.replace(minute=0)
        while hour + dt.timedelta(minutes=59) >= earliest:  # hour by hour: fast enough for a 2-year replay
            if self._hour_matches(hour):
                limit = moment.minute if hour == moment.replace(minute=0) else 59
                fired = [m for m in self.minutes if m <= limit]
                if fired:
                    last = hour.replace(minute=max(fired))
                    return last if last >= earliest else None
            hour -= dt.timedelta(hours=1)
        return None

    def firings(self, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        """Every minute in [start, end) at which the line fires, in order, in UTC."""
        hour = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        while hour < end:
            if self._hour_matches(hour):
                for minute in sorted(self.minutes):
                    moment = hour.replace(minute=minute)
                    if start <= moment < end:
                        yield moment
            hour += dt.timedelta(hours=1)


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str
    slot: str = ""  # what the run is for, shown in the run summary (empty when it does not run)
    slot_at: dt.datetime | None = None  # the New York slot a scheduled run goes for

    @property
    def daily_report(self) -> bool:
        """Whether this run also writes the HTML analytics report (uploaded as an artifact): once a day, by the
        run of the New York day's first slot (`first_slot_of_day`), and by every manual run or re-run (no slot)."""
        return self.run and (self.slot_at is None or first_slot_of_day(self.slot_at))


def first_slot_of_day(slot: dt.datetime) -> bool:
    """Whether a window slot is the first of its New York day (09:00 on a weekday, 00:00 on a weekend day)."""
    local = slot.astimezone(TIMEZONE)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    first = next((midnight + dt.timedelta(minutes=m) for m in range(0, 24 * 60, 30)
                  if in_window(midnight + dt.timedelta(minutes=m))), None)
    return first is not None and local.replace(tzinfo=None) == first


def slot_of(fired: dt.datetime) -> dt.datetime:
    """The New York slot a firing of one of `CRON_LINES` is for (the firing minus `RUN_OFFSET`)."""
    return (fired - RUN_OFFSET).astimezone(TIMEZONE)


def decide(event: str, cron: str | None, now: dt.datetime, attempt: int = 1) -> Decision:
    """Should this workflow run go on, and for which slot? Only first attempts of scheduled runs are gated."""
    if event != "schedule":
        name = event or "manual"
        return Decision(True, f"{name} run: always goes (only scheduled runs are gated)", f"{name} run (no slot)")
    if attempt > 1:
        return Decision(True, f"re-run by hand (attempt {attempt}): goes like a manual run; its start time no "
                        "longer says which slot it was for", f"re-run by hand of a scheduled run (attempt {attempt})")
    if not cron:
        return Decision(True, "scheduled run without its cron line: goes (cannot tell which slot fired)",
                        "scheduled run, slot unknown (no cron line)")
    if cron not in CRON_LINES:
        return Decision(False, f"cron {cron!r} is not one of coldsync.schedule.CRON_LINES (sync.yml and the "
                        "module disagree): cannot tell its slot, nothing to do")
    now_utc = now.astimezone(dt.UTC)
    fired = Cron.parse(cron).last_fire(now_utc, MAX_DELAY)
    if fired is None:
        return Decision(False, f"cron {cron!r} did not fire in the {_minutes(MAX_DELAY)} minutes before "
                        f"{now_utc:%a %H:%M} UTC: a start this late cannot be matched to its slot, nothing to do")
    slot = slot_of(fired)
    late = _minutes(now_utc - fired)
    where = f"{slot:%a %Y-%m-%d %H:%M %Z}"
    started = f"fired {fired:%a %H:%M} UTC, started {late} min later"
    if in_window(slot):
        return Decision(True, f"slot {where} ({started}): inside the window", f"{where} ({started})", slot)
    return Decision(False, f"slot {where} ({started}): outside the window, nothing to do "
                    "(the other offset's cron line)")


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(description="Decide whether a scheduled sync run is inside the window, "
                                     "and for which slot.")
    parser.add_argument("--event", default=env.get("GITHUB_EVENT_NAME", ""), help="the GitHub event name")
    parser.add_argument("--cron", default="", help="the cron line that fired (github.event.schedule)")
    parser.add_argument("--now", default="", help="ISO time to decide for (tests); default: the clock")
    parser.add_argument("--attempt", type=int, default=int(env.get("GITHUB_RUN_ATTEMPT") or 1),
                        help="the run attempt (default: $GITHUB_RUN_ATTEMPT); above 1 is a re-run by hand")
    args = parser.parse_args(argv)
    try:
        now = dt.datetime.fromisoformat(args.now) if args.now else dt.datetime.now(dt.UTC)
    except ValueError:
        parser.error(f"--now {args.now!r} is not an ISO time: write e.g. 2026-07-17T22:31:00Z")
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    decision = decide(args.event, args.cron or None, now, args.attempt)
    print(f"{'run' if decision.run else 'skip'}: {decision.reason}")
    output = env.get("GITHUB_OUTPUT")
    if output:
        with Path(output).open("a", encoding="utf-8") as handle:
            handle.write(f"run={'true' if decision.run else 'false'}\nslot={decision.slot}\n"
                         f"report={'true' if decision.daily_report else 'false'}\n")
    if args.event == "schedule" and args.cron and args.cron not in CRON_LINES and args.attempt <= 1:
        # sync.yml and this module disagree: every scheduled run would be skipped in silence. A red gate instead.
        print("error: update CRON_LINES in coldsync/schedule.py and the workflow's cron lines together",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
