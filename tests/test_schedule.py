"""The schedule module: which New York slot a (late) scheduled start is for, and the 2-year replay."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from coldsync import schedule
from coldsync.schedule import CRON_LINES, MAX_DELAY, RUN_OFFSET, TIMEZONE, Cron, decide, in_window
from coldsync.schedule import main as schedule_main

REPO = Path(__file__).resolve().parent.parent
UTC = dt.UTC
REPLAY_START = dt.datetime(2026, 1, 1, tzinfo=UTC)
REPLAY_END = dt.datetime(2028, 1, 1, tzinfo=UTC)
WEEKDAY_SLOTS = [dt.time(h, m) for h in range(9, 19) for m in (0, 30) if (h, m) <= (18, 0)]
WEEKEND_SLOTS = [dt.time(h, 0) for h in range(0, 24, 2)]


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TIMEZONE)


# --- the cron lines ----------------------------------------------------------------------------------


def test_cron_lines_fire_off_the_busy_minutes() -> None:
    """Every cron line fires at minute 7 or 37 only, never at GitHub's busy minutes 0 and 30."""
    assert [sorted(Cron.parse(line).minutes) for line in CRON_LINES] == [[7], [7], [37], [37], [7], [7], [7], [7]]
    assert dt.timedelta(minutes=7) == RUN_OFFSET


def test_each_line_fires_at_most_once_in_two_hours_and_no_two_lines_share_a_minute() -> None:
    """Over two years a line's firings are >= 120 minutes apart (so MAX_DELAY 119 is unambiguous) and no
    minute has two firings (GitHub would start two runs)."""
    seen: Counter[dt.datetime] = Counter()
    for line in CRON_LINES:
        firings = list(Cron.parse(line).firings(REPLAY_START, REPLAY_END))
        gaps = {later - earlier for earlier, later in itertools.pairwise(firings)}
        assert min(gaps) == dt.timedelta(hours=2), line
        seen.update(firings)
    assert max(seen.values()) == 1
    assert dt.timedelta(minutes=119) == MAX_DELAY


def test_firings_and_last_fire_agree_with_matches() -> None:
    """Cron.firings and Cron.last_fire (hour by hour) give the same minutes as Cron.matches (minute by minute)."""
    cron = Cron.parse("7 13-23/2 * * 1-5")
    start, end = utc("2026-03-06T20:00:00+00:00"), utc("2026-03-09T15:00:00+00:00")  # Fri to Mon
    minutes = [start + dt.timedelta(minutes=n) for n in range(int((end - start).total_seconds() // 60))]
    assert list(cron.firings(start, end)) == [m for m in minutes if cron.matches(m)] == [
        utc("2026-03-06T21:07:00+00:00"), utc("2026-03-06T23:07:00+00:00"),
        utc("2026-03-09T13:07:00+00:00")]
    assert cron.last_fire(utc("2026-03-09T13:06:59+00:00")) == utc("2026-03-06T23:07:00+00:00")
    assert cron.last_fire(utc("2026-03-09T13:07:00+00:00")) == utc("2026-03-09T13:07:00+00:00")
    assert cron.last_fire(utc("2026-03-09T13:06:00+00:00"), dt.timedelta(hours=1)) is None


# --- the cases, by hand ---------------------------------------------------------------------


def test_weekday_18_00_edt_started_late_is_the_18_00_slot() -> None:
    """Issue #14 case 1: the 18:00 EDT run (fires 22:07 UTC) started at 22:31 UTC, or 60 minutes late at
    23:07, is the 18:00 slot and runs (it used to be read as 18:30 and skipped)."""
    for now in ("2026-07-17T22:31:00Z", "2026-07-17T23:07:00Z"):
        decision = decide("schedule", "7 14-22/2 * * 1-5", utc(now))
        assert decision.run
        assert decision.slot_at == local("2026-07-17T18:00")
    assert decide("schedule", "7 14-22/2 * * 1-5", utc("2026-07-17T22:31:00Z")).slot == (
        "Fri 2026-07-17 18:00 EDT (fired Fri 22:07 UTC, started 24 min later)")


def test_a_late_17_30_run_is_not_taken_for_18_00() -> None:
    """The 17:30 EDT run (fires 21:37 UTC) started 60 minutes late, at 22:37, is still the 17:30 slot,
    while the 18:00 run starting at the same minute is the 18:00 slot: each ran once."""
    late = decide("schedule", "37 13-21/2 * * 1-5", utc("2026-07-17T22:37:00Z"))
    on_time = decide("schedule", "7 14-22/2 * * 1-5", utc("2026-07-17T22:37:00Z"))
    assert (late.run, late.slot_at) == (True, local("2026-07-17T17:30"))
    assert (on_time.run, on_time.slot_at) == (True, local("2026-07-17T18:00"))


def test_weekday_18_30_edt_never_runs() -> None:
    """The EST-only 22:37 UTC firing is 18:30 EDT in summer: skipped, on time or 60 minutes late."""
    for now in ("2026-07-14T22:37:00Z", "2026-07-14T23:37:00Z"):
        decision = decide("schedule", "37 14-22/2 * * 1-5", utc(now))
        assert (decision.run, decision.slot_at, decision.slot) == (False, None, "")
    assert decide("schedule", "37 14-22/2 * * 1-5", utc("2026-01-13T22:37:00Z")).slot_at == local("2026-01-13T17:30")


def test_saturday_10_00_edt_65_minutes_late_is_the_10_00_slot() -> None:
    """Issue #14 case 2: the Saturday 10:00 EDT run 65 minutes late (15:05 UTC, or 65 minutes after its
    14:07 firing) is the 10:00 slot, not 11:00; the 11:00 EDT firing (15:07, the EST line) is skipped."""
    for now in ("2026-07-18T15:05:00Z", "2026-07-18T15:12:00Z"):
        decision = decide("schedule", "7 */2 * * 0,6", utc(now))
        assert (decision.run, decision.slot_at) == (True, local("2026-07-18T10:00"))
    assert not decide("schedule", "7 1-23/2 * * 0,6", utc("2026-07-18T15:12:00Z")).run


def test_sunday_evening_is_monday_in_utc() -> None:
    """Sunday 22:00 EST fires Monday 03:07 UTC; 60 minutes late it is still Sunday's 22:00 slot."""
    decision = decide("schedule", "7 1,3 * * 1", utc("2026-01-12T04:07:00Z"))
    assert (decision.run, decision.slot_at) == (True, local("2026-01-11T22:00"))


def test_a_start_later_than_max_delay_is_skipped() -> None:
    """Friday 18:00 EST fires 23:07 UTC: started 119 minutes late it runs, 120 minutes late it is skipped
    (no firing of its line in the 119 minutes before: the slot cannot be told)."""
    cron = "7 13-23/2 * * 1-5"
    assert decide("schedule", cron, utc("2026-01-17T01:06:59Z")).slot_at == local("2026-01-16T18:00")
    too_late = decide("schedule", cron, utc("2026-01-17T01:07:00Z"))
    assert (too_late.run, too_late.slot) == (False, "")
    assert "did not fire in the 119 minutes before Sat 01:07 UTC" in too_late.reason


def test_manual_runs_and_re_runs_always_go() -> None:
    """workflow_dispatch runs go at any hour, and so does a scheduled run re-run by hand (attempt 2)."""
    three_am = utc("2026-07-14T07:00:00Z")
    assert decide("workflow_dispatch", None, three_am) == schedule.Decision(
        True, "workflow_dispatch run: always goes (only scheduled runs are gated)", "workflow_dispatch run (no slot)")
    rerun = decide("schedule", "7 14-22/2 * * 1-5", three_am, attempt=2)
    assert (rerun.run, rerun.slot) == (True, "re-run by hand of a scheduled run (attempt 2)")
    assert decide("schedule", None, three_am).run  # cannot tell the slot: go rather than miss a run


def test_an_unknown_cron_line_is_skipped() -> None:
    """A cron line that is not in CRON_LINES (the old '0,30 13-22 * * 1-5') cannot be read: skipped."""
    decision = decide("schedule", "0,30 13-22 * * 1-5", utc("2026-07-17T22:31:00Z"))
    assert (decision.run, decision.slot) == (False, "")


def test_an_unknown_cron_line_fails_the_gate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The command line exits 1 for a cron line the module does not know (sync.yml and CRON_LINES drifted
    apart): a red gate, not every scheduled run skipped in green; the outputs still say run=false."""
    output = tmp_path / "out"
    code = schedule_main(["--event", "schedule", "--cron", "0,30 13-22 * * 1-5", "--now", "2026-07-17T22:31:00Z"],
                         environ={"GITHUB_OUTPUT": str(output)})
    assert code == 1
    assert output.read_text(encoding="utf-8") == "run=false\nslot=\nreport=false\n"
    assert capsys.readouterr().err == ("error: update CRON_LINES in coldsync/schedule.py and the workflow's cron "
                                       "lines together\n")


def test_a_bad_now_is_a_usage_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """--now that is not an ISO time exits 2 with argparse's one-line usage error naming the fix."""
    with pytest.raises(SystemExit) as stop:
        schedule_main(["--event", "schedule", "--cron", CRON_LINES[0], "--now", "garbage"], environ={})
    assert stop.value.code == 2
    assert "--now 'garbage' is not an ISO time: write e.g. 2026-07-17T22:31:00Z" in capsys.readouterr().err


# --- the replay -------------------------------------------------------------------------------------


def window_slots(start: dt.datetime, end: dt.datetime) -> set[dt.datetime]:
    """The window's slots whose run is scheduled in [start, end), from the product's definition (not in_window):
    19 a weekday, 12 a weekend day; a local time that does not exist (the spring-forward 02:00) is no slot."""
    slots: set[dt.datetime] = set()
    day = (start - dt.timedelta(days=1)).date()
    while day <= end.date():
        for time in WEEKDAY_SLOTS if day.weekday() < 5 else WEEKEND_SLOTS:
            wall = dt.datetime.combine(day, time, tzinfo=TIMEZONE)
            instant = wall.astimezone(UTC)
            exists = instant.astimezone(TIMEZONE).replace(tzinfo=None) == wall.replace(tzinfo=None)
            if exists and start <= instant + RUN_OFFSET < end:
                slots.add(instant)
        day += dt.timedelta(days=1)
    return slots


def replay(delay_seconds: random.Random | int) -> tuple[Counter[dt.datetime], int]:
    """Every firing of every cron line in 2026-2027, started after a delay; the slots that ran and how often."""
    ran: Counter[dt.datetime] = Counter()
    starts = 0
    for line in CRON_LINES:
        for fired in Cron.parse(line).firings(REPLAY_START, REPLAY_END):
            delay = delay_seconds if isinstance(delay_seconds, int) else delay_seconds.randint(0, 3600)
            decision = decide("schedule", line, fired + dt.timedelta(seconds=delay))
            starts += 1
            if decision.run:
                assert decision.slot_at is not None
                ran[decision.slot_at.astimezone(UTC)] += 1
    return ran, starts


def test_window_slots_of_the_replay() -> None:
    """2026-2027 has 522 weekdays x 19 + 208 weekend days x 12 - 2 slots (02:00 does not exist on the two
    Sundays clocks go forward, 2026-03-08 and 2027-03-14); the fall-back Sundays keep their 12."""
    slots = window_slots(REPLAY_START, REPLAY_END)
    assert len(slots) == 522 * 19 + 208 * 12 - 2 == 12412
    on_day = Counter(s.astimezone(TIMEZONE).date() for s in slots)
    assert on_day[dt.date(2026, 3, 8)] == on_day[dt.date(2027, 3, 14)] == 11
    assert on_day[dt.date(2026, 11, 1)] == on_day[dt.date(2027, 11, 7)] == 12


@pytest.mark.parametrize("delay", ["random 0-60 min", 0, 3600, 119 * 60 + 59], ids=str)
def test_two_year_replay_runs_every_slot_exactly_once(delay: str | int) -> None:
    """Every firing of 2026-2027 (four DST changes) started 0-60 minutes late (seeded random, and each of
    0, 60 and 119:59 minutes for all): every window slot runs exactly once, nothing outside the window runs."""
    ran, starts = replay(random.Random(14) if isinstance(delay, str) else delay)
    assert starts == 522 * 21 + 208 * 24 + 104 * 4  # weekday lines: 21 a day; weekend: 24 a day; Mondays: 4
    assert set(ran) == window_slots(REPLAY_START, REPLAY_END)
    assert set(ran.values()) == {1}
    assert all(in_window(slot) for slot in ran)


@pytest.mark.parametrize("monday", [dt.date(2026, 1, 12), dt.date(2026, 7, 13)], ids=["EST", "EDT"])
def test_a_week_of_runs_in_local_time(monday: dt.date) -> None:
    """In a winter (EST) and a summer (EDT) week, started on time: weekdays 09:00, 09:30 ... 18:00; weekends
    every 2 hours."""
    expected: set[dt.datetime] = set()
    for offset in range(7):
        day = monday + dt.timedelta(days=offset)
        times = WEEKDAY_SLOTS if day.weekday() < 5 else WEEKEND_SLOTS
        expected |= {dt.datetime.combine(day, t, tzinfo=TIMEZONE) for t in times}
    assert len(expected) == 5 * 19 + 2 * 12
    start = dt.datetime.combine(monday, dt.time(0, 0), tzinfo=TIMEZONE).astimezone(UTC)
    end = start + dt.timedelta(days=7)
    ran = set()
    for line in CRON_LINES:
        for fired in Cron.parse(line).firings(start, end):
            decision = decide("schedule", line, fired)
            if decision.run and decision.slot_at is not None:
                ran.add(decision.slot_at.astimezone(UTC))
    assert ran == {t.astimezone(UTC) for t in expected}


# --- the command ------------------------------------------------------------------------------------


def test_schedule_command_writes_the_job_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m coldsync.schedule` appends run=true|false and slot=... to $GITHUB_OUTPUT and says why."""
    output = tmp_path / "out"
    schedule.main(["--event", "schedule", "--cron", "7 1-23/2 * * 0,6", "--now", "2026-07-18T13:09:00+00:00"],
                  environ={"GITHUB_OUTPUT": str(output)})  # Saturday 09:00 EDT: odd local hour
    schedule.main(["--event", "schedule", "--cron", "7 */2 * * 0,6", "--now", "2026-07-18T15:05:00Z"],
                  environ={"GITHUB_OUTPUT": str(output), "GITHUB_RUN_ATTEMPT": "1"})  # Saturday 10:00 EDT
    assert output.read_text(encoding="utf-8") == (
        "run=false\nslot=\nreport=false\n"
        "run=true\nslot=Sat 2026-07-18 10:00 EDT (fired Sat 14:07 UTC, started 58 min later)\nreport=false\n")
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("skip: slot Sat 2026-07-18 09:00 EDT") and "outside the window" in out


def test_schedule_command_reads_the_run_attempt(tmp_path: Path) -> None:
    """Under GitHub Actions the attempt comes from $GITHUB_RUN_ATTEMPT: a re-run by hand goes."""
    output = tmp_path / "out"
    schedule.main(["--event", "schedule", "--cron", "7 1-23/2 * * 0,6", "--now", "2026-07-18T13:09:00Z"],
                  environ={"GITHUB_OUTPUT": str(output), "GITHUB_RUN_ATTEMPT": "2"})
    assert output.read_text(encoding="utf-8") == ("run=true\nslot=re-run by hand of a scheduled run (attempt 2)\n"
                                                  "report=true\n")


@pytest.mark.parametrize(("cron", "now", "report"), [
    ("7 13-23/2 * * 1-5", "2026-07-17T13:20:00Z", True),  # Friday 09:00 EDT: the weekday's first slot
    ("37 13-21/2 * * 1-5", "2026-07-17T13:40:00Z", False),  # Friday 09:30 EDT
    ("7 14-22/2 * * 1-5", "2026-01-16T14:10:00Z", True),  # Friday 09:00 EST (winter: the other cron line)
    ("7 13-23/2 * * 1-5", "2026-01-16T13:10:00Z", False),  # Friday 08:00 EST: outside the window, no run
    ("7 */2 * * 0,6", "2026-07-18T04:10:00Z", True),  # Saturday 00:00 EDT: the weekend day's first slot
    ("7 */2 * * 0,6", "2026-07-18T06:10:00Z", False),  # Saturday 02:00 EDT
])
def test_the_days_first_slot_makes_the_daily_report(cron: str, now: str, report: bool) -> None:
    """The HTML analytics report is made once a day: by the run of the New York day's first slot (09:00 on
    weekdays, 00:00 on weekends, in summer and winter time), and by manual runs; never by a skipped start."""
    assert schedule.decide("schedule", cron, dt.datetime.fromisoformat(now)).daily_report is report
    assert schedule.decide("workflow_dispatch", None, dt.datetime.fromisoformat(now)).daily_report is True


def test_schedule_module_needs_only_the_standard_library() -> None:
    """The gate job runs the module with the runner's bare python3: no site-packages needed."""
    result = subprocess.run(
        [sys.executable, "-S", "-m", "coldsync.schedule", "--event", "schedule", "--cron", "37 13-21/2 * * 1-5",
         "--now", "2026-01-13T13:37:00+00:00"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", "")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skip: slot Tue 2026-01-13 08:30 EST")
