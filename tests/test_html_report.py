"""The analytics report (`sync_once.py --report --html PATH`) and the job summary's pictures: generic charts from
view rows, panels for views that are missing or fail, no address and no URL in the file, the Mermaid charts and
the funnel table within their budget, and the file opened in a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import sync_once
from coldsync.analytics_report import (
    ANALYTICS_VIEWS,
    LOOKBACK,
    Shape,
    ViewResult,
    build_html,
    clean_rows,
    inventory_points_from_runs,
    inventory_points_from_view,
    long_rows,
    read_views,
    shape_of,
)
from coldsync.cli import ExitCode
from coldsync.report import analytics_markdown, mermaid_line_chart
from coldsync.store import Store
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.helpers import T0
from tests.test_status import _isolate, _run_log, _settings, arrange

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
MONDAY = dt.date(2026, 2, 2)
HOSTILE = "jane.doe@corp.example"  # a value no aggregate should hold: it must not reach the file as an address

# Independent of coldsync.redact: local part, @ (plain or in the encodings redact knows), a dotted domain.
ADDRESS = re.compile(r"[A-Za-z0-9._%+*'-]+(?:@|%40|&#64;|&#x40;|\\u0040)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
URL = re.compile(r"(?:https?:|ftp:|file:)?//[A-Za-z0-9]|\burl\(|\bsrc=|<script|@import", re.IGNORECASE)


def synthetic_views() -> list[ViewResult]:
    """Rows in the shapes of the six analytics views (DATE `week_start` / `day`, text groups, numeric measures)."""
    weeks = [MONDAY + dt.timedelta(weeks=n) for n in range(4)]
    days = [MONDAY + dt.timedelta(days=n) for n in range(14)]
    funnel = [{"week_start": w, "route": route, "arm": arm, "finished": 40 + 5 * n, "contacted": 100 + 10 * n,
               "replied": 3 + n, "interested": 1, "reply_rate": (3 + n) / (100 + 10 * n)}
              for n, w in enumerate(weeks) for route, arm in (("smb", "a"), ("smb", "b"), ("midsize", "main"))]
    funnel.append({"week_start": weeks[0], "route": HOSTILE, "arm": "a", "finished": 1, "contacted": 1,
                   "replied": 0, "interested": 0, "reply_rate": 0.0})
    inventory = [{"day": d, "route": route, "campaign_id": f"c-{route}", "inventory": 1000 + 50 * n + k,
                  "room": 11000 - 50 * n, "cap": 12000}
                 for n, d in enumerate(days) for k, route in enumerate(("smb", "midsize"))]
    outcomes = [{"week_start": w, "route": "smb", "outcome": outcome, "leads": 10 + n}
                for n, w in enumerate(weeks) for outcome in ("completed", "replied", "bounced")]
    supply = [{"route": "smb", "ready": 5400, "adds_per_day": 300.0, "days_of_supply": 18.0, "returning_4w": 900},
              {"route": "midsize", "ready": 120, "adds_per_day": 60.0, "days_of_supply": 2.0, "returning_4w": 40}]
    deliverability = [{"week_start": w, "campaign_id": "c-smb", "sent": 900, "bounce_rate": 0.01 + n / 200,
                       "unsubscribe_rate": 0.002} for n, w in enumerate(weeks)]
    dnc = [{"day": d, "source": source, "added": n % 3, "total": 12000 + n}
           for n, d in enumerate(days) for source in ("instantly_blocklist", "webhook")]
    rows: list[list[dict[str, Any]]] = [funnel, inventory, outcomes, supply, deliverability, dnc]
    return [ViewResult(name, title, clean_rows(r)) for (name, title), r in zip(ANALYTICS_VIEWS, rows, strict=True)]


def synthetic_runs() -> ViewResult:
    """Run-log rows: three live runs and a dry run, one failed with an address in its error."""
    rows = [{"started_at": NOW - dt.timedelta(days=n), "mode": "dry_run" if n == 1 else "live",
             "outcome": "failed" if n == 2 else "success", "drained": 10 * n, "added": 100, "dead_letters": n,
             "inventory_before": 900 + n, "inventory_after": 1000 + n, "api_calls": 40, "warehouse_statements": 19,
             "duration_seconds": 2.5, "error_text": f"boom for {HOSTILE}" if n == 2 else None} for n in range(4)]
    return ViewResult("ops_run_log", "Latest runs", clean_rows(rows))


def test_shape_takes_time_text_and_numeric_columns() -> None:
    """A view's chart shape: its DATE column on x, its text columns as groups, its numbers as measures; a boolean
    column and a column empty in every row are neither."""
    rows = clean_rows([{"route": "smb", "week_start": dt.date(2026, 2, 2), "arm": "a", "contacted": 10,
                        "reply_rate": 0.1, "flag": True, "empty": None},
                       {"route": "midsize", "week_start": dt.date(2026, 2, 9), "arm": None, "contacted": 20,
                        "reply_rate": None, "flag": False, "empty": None}])
    assert rows[0]["week_start"] == "2026-02-02"
    assert shape_of(rows) == Shape("week_start", ("route", "arm"), ("contacted", "reply_rate"))
    assert shape_of(clean_rows([{"route": "smb", "ready": 3}])) == Shape(None, ("route",), ("ready",))


def test_long_rows_one_point_per_measure_and_series() -> None:
    """Wide rows become one (time, series, measure, value) point each, the series named by the group values,
    nulls dropped."""
    rows: list[dict[str, Any]] = [
            {"day": "2026-02-02", "route": "smb", "arm": "a", "inventory": 5, "room": None},
            {"day": "2026-02-03", "route": "smb", "arm": None, "inventory": 6, "room": 1}]
    assert long_rows(rows, Shape("day", ("route", "arm"), ("inventory", "room"))) == [
        {"time": "2026-02-02", "series": "smb / a", "measure": "inventory", "value": 5},
        {"time": "2026-02-03", "series": "smb / (none)", "measure": "inventory", "value": 6},
        {"time": "2026-02-03", "series": "smb / (none)", "measure": "room", "value": 1}]


def test_read_views_reads_what_exists_and_panels_the_rest(tmp_path: Path) -> None:
    """On DuckDB: a view with a DATE column is read from the lookback on (an older row is left out), a view without
    one whole; a missing view and a view whose query fails become 'not available' with the reason, never an error."""
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        warehouse.ensure_dataset()
        old = (NOW - LOOKBACK - dt.timedelta(days=1)).date()
        warehouse.execute("CREATE TABLE `{ds}.gone` (x INT64)", label="test")
        warehouse.execute(f"""CREATE VIEW `{{ds}}.v_dnc_growth` AS SELECT * FROM UNNEST([
            STRUCT(DATE '2026-03-01' AS day, 'webhook' AS source, 4 AS added),
            STRUCT(DATE '{old}' AS day, 'webhook' AS source, 9 AS added)])""", label="test")  # noqa: S608
        warehouse.execute("CREATE VIEW `{ds}.v_supply` AS SELECT 'smb' AS route, 7 AS ready", label="test")
        warehouse.execute("CREATE VIEW `{ds}.v_deliverability` AS SELECT x FROM `{ds}.gone`", label="test")
        warehouse.execute("DROP TABLE `{ds}.gone`", label="test")
        views = {v.name: v for v in read_views(warehouse, NOW)}
    finally:
        warehouse.close()
    assert views["v_dnc_growth"].rows == [{"day": "2026-03-01", "source": "webhook", "added": 4}]
    assert views["v_supply"].rows == [{"route": "smb", "ready": 7}]
    assert views["v_funnel_weekly"].rows == []
    assert "v_funnel_weekly is not in the warehouse yet" in (views["v_funnel_weekly"].unavailable or "")
    assert views["v_deliverability"].unavailable and "gone" in views["v_deliverability"].unavailable
    assert [v.unavailable is None for v in views.values()] == [False, False, False, True, False, True]


@pytest.fixture(scope="module")
def document() -> str:
    """The report of the synthetic views (v_dnc_growth replaced by a 'not available' panel naming an address)
    and runs: built once, rendering its SVGs is the slow part (about 2 s)."""
    views = synthetic_views()
    views[5] = ViewResult("v_dnc_growth", "DNC growth", unavailable=f"not there (asked by {HOSTILE})")
    inventory = {"smb": [("2026-03-01", 1000.0), ("2026-03-02", 1100.0)], "midsize": [("2026-03-01", 500.0)]}
    return build_html(views, synthetic_runs(), generated_at=NOW, warehouse="DuckDB warehouse at /tmp/x",
                      inventory=inventory)


def test_html_holds_no_address_no_url_and_a_chart_per_time_view(document: str) -> None:
    """The document: one inline SVG chart per view with a time column plus the two run charts, a table for
    v_supply, a panel for a missing view; no script, no URL, no string that reads as an address (the hostile
    group value and run error included), a CSP that forbids loading anything."""
    doc = document
    assert doc.count('<figure class="chart"') == 4 + 2
    assert doc.count("<svg") == 6
    assert "<th>days_of_supply</th>" in doc and '<td class="num">5,400</td>' in doc
    assert "<strong>Not available:</strong> not there (asked by j***(at)corp.example)" in doc
    assert doc.index('id="runs"') < doc.index('id="v_dnc_growth"')  # the panel after what can be shown
    assert "Content-Security-Policy" in doc and "default-src 'none'" in doc
    assert ADDRESS.search(doc) is None, ADDRESS.search(doc)
    assert URL.search(doc) is None, URL.search(doc)
    assert HOSTILE.split("@")[0] not in doc  # the local part is masked too, not only the @


def test_markdown_inventory_charts_and_funnel_table() -> None:
    """The job summary part: one Mermaid xychart per series (y up to 10% above the largest value) and the funnel
    table, numbers right-aligned; an address in a label is masked and loses its @."""
    points = {"smb": [("2026-03-01", 100.0), ("2026-03-02", 120.0)], HOSTILE: [("2026-03-02", 5.0)]}
    funnel = [{"week_start": "2026-02-23", "route": "smb", "contacted": 1200, "reply_rate": 0.025}]
    text = analytics_markdown(points, "v_inventory_daily", funnel, ["week_start", "route", "contacted", "reply_rate"])
    assert mermaid_line_chart("Inventory: smb", points["smb"], "leads in Instantly") in text
    assert ('```mermaid\nxychart-beta\n    title "Inventory: smb"\n    x-axis ["2026-03-01", "2026-03-02"]\n'
            '    y-axis "leads in Instantly" 0 --> 132\n    line [100, 120]\n```') in text
    assert "| week_start | route | contacted | reply_rate |\n|---|---|---:|---:|\n" \
           "| 2026-02-23 | smb | 1,200 | 0.025 |" in text
    assert ADDRESS.search(text) is None and "j***(at)corp.example" in text


def test_markdown_stays_within_its_budget_and_names_what_it_left_out() -> None:
    """Blocks that would pass the byte budget are left out whole and named; the part stays under the budget."""
    points = {f"route{n}": [(f"2026-03-{d:02d}", float(d)) for d in range(1, 15)] for n in range(3)}
    one_chart = len(mermaid_line_chart("Inventory: route0", points["route0"], "leads in Instantly").encode())
    budget = 512 + 100 + 2 * one_chart + 10  # the header, two charts, not three
    text = analytics_markdown(points, "the run log", None, [], "no rows yet", budget=budget)
    assert len(text.encode()) <= budget
    assert text.count("```mermaid") == 2
    assert "**Funnel**: not available: no rows yet" in text  # a later, smaller block that fits is kept
    assert text.rstrip().endswith("(left out of the job summary, see the HTML report: inventory chart of route2)")


def test_inventory_from_the_run_log_keeps_each_days_last_run() -> None:
    """Run-log fallback: per route and UTC day, the inventory after the day's last live run (measured plus added);
    unreadable summaries skipped. From v_inventory_daily: the `inventory` column, summed within one series."""
    def run(day: int, hour: int, summary: str) -> dict[str, object]:
        return {"started_at": dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC), "summary_json": summary}

    rows = [run(1, 9, '{"routes": {"smb": {"inventory": 10}}}'),
            run(1, 17, '{"routes": {"smb": {"inventory": 12}, "midsize": {"inventory": null}}}'),
            run(2, 9, "not json"), run(2, 10, '{"routes": {"smb": {"inventory": 15, "added": 5}}}')]
    assert inventory_points_from_runs(rows) == {"smb": [("2026-03-01", 12.0), ("2026-03-02", 20.0)]}
    view = clean_rows([{"day": dt.date(2026, 3, 1), "route": "smb", "room": 1, "inventory": 4},
                       {"day": dt.date(2026, 3, 1), "route": "smb", "room": 1, "inventory": 6}])
    assert inventory_points_from_view(view) == {"smb": [("2026-03-01", 10.0)]}
    day = dt.date(2026, 3, 1)  # v_inventory_daily's own shape: per campaign, `leads` NULL until Instantly counted
    arms = clean_rows([{"day": day, "campaign_id": "c1", "route": "SMB", "arm": "A", "leads": 5, "added": 1},
                       {"day": day, "campaign_id": "c2", "route": "SMB", "arm": "B", "leads": 7, "added": 0},
                       {"day": day, "campaign_id": "c3", "route": "Midsize", "arm": "Midsize", "leads": None,
                        "added": 3}])
    assert inventory_points_from_view(arms) == {"SMB / A": [("2026-03-01", 5.0)], "SMB / B": [("2026-03-01", 7.0)]}
    assert inventory_points_from_view(arms[2:]) == {}  # no count yet: never the `added` column drawn instead


def test_sync_once_report_html_writes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`--report --html PATH` on a set-up warehouse writes one file with the run log's runs (the failed run's error
    masked), prints its path, exits 0; `--html` without `--report` is refused with exit 2 before anything runs."""
    path = _isolate(monkeypatch, tmp_path)
    warehouse = DuckDBWarehouse(path, "coldsync")
    arrange(warehouse, _settings(tmp_path))
    warehouse.close()
    target = tmp_path / "out" / "report.html"
    assert sync_once.main(["--report", "--html", str(target)]) == ExitCode.OK
    assert capsys.readouterr().out.strip() == f"HTML report written: {target}"
    doc = target.read_text(encoding="utf-8")
    assert doc.count("<td>failed</td>") == 1 and "boom for z***(at)example.com" in doc
    assert ADDRESS.search(doc) is None
    assert sync_once.main(["--html", str(tmp_path / "x.html")]) == ExitCode.BAD_CONFIG
    assert "--html writes the analytics report and needs --report" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_job_summary_markdown_has_the_inventory_chart_and_says_why_the_funnel_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--report --markdown` (the job summary) ends with a Mermaid chart of the route's inventory from the run log
    while v_inventory_daily holds no Instantly count yet (40 measured + 2 added = 42; y axis to 47), and the funnel
    table of the last weeks (the SMB lead finished in the week of 2026-05-18; two adds outside the routes)."""
    path = _isolate(monkeypatch, tmp_path)
    warehouse = DuckDBWarehouse(path, "coldsync")
    arrange(warehouse, _settings(tmp_path))
    Store(warehouse, "run-9", T0).write_run_log(
        {**_run_log("run-9", T0 - dt.timedelta(minutes=30)),
         "summary_json": json.dumps({"routes": {"SMB": {"inventory": 40, "added": 2}}})})
    warehouse.close()
    assert sync_once.main(["--report", "--markdown"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("### coldsync status")
    assert ("**Inventory per day** (the run log: each route's inventory after the day's last live run)\n\n"
            '```mermaid\nxychart-beta\n    title "Inventory: SMB"\n    x-axis ["2026-06-01"]\n'
            '    y-axis "leads in Instantly" 0 --> 47\n    line [42]\n```') in out
    assert "**Funnel, latest weeks** (v_funnel_weekly)" in out
    assert "| 2026-05-18 | SMB | SMB | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |" in out
    assert "| 2026-06-01 | (none) | (none) | 2 | 0 | 0 | 0 | 0 | 0 |  |  |  |  |" in out


def _browser_paths() -> tuple[str, str] | None:
    """A Chromium and its chromedriver, or None: Debian's (apt: chromium, chromium-driver; .ci/run installs them),
    else what GitHub's Ubuntu runner image ships (Chromium or Google Chrome, chromedriver in $CHROMEWEBDRIVER)."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    browser = next((path for path in map(shutil.which, names) if path), None)
    driver = shutil.which("chromedriver") or shutil.which("chromedriver", path=os.environ.get("CHROMEWEBDRIVER", ""))
    return (browser, driver) if browser and driver else None


def test_report_in_headless_chromium(tmp_path: Path, document: str) -> None:
    """Opened in a real headless Chromium: every chart is an SVG of non-zero size with drawn lines, the browser
    log has no error, a screenshot is taken; a page that breaks the CSP does log an error (the check can fail)."""
    paths = _browser_paths()
    if paths is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium and chromedriver are required under CI (.ci/run installs apt's chromium and "
                        "chromium-driver)")
        pytest.skip("no Chromium/chromedriver found: `apt-get install chromium chromium-driver` (.ci/run does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    doc = document
    page = tmp_path / "report.html"
    page.write_text(doc, encoding="utf-8")
    assert ADDRESS.search(page.read_text(encoding="utf-8")) is None
    broken = tmp_path / "broken.html"  # the same report plus an image from elsewhere: the CSP must refuse it
    broken.write_text(doc.replace("<main>", '<main><img src="https://images.corp.example/x.png" alt="">'))
    options = Options()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        driver.get(page.as_uri())
        charts: list[dict[str, Any]] = driver.execute_script(
            "return [...document.querySelectorAll('figure.chart')].map(f => {"
            "  const s = f.querySelector('svg'); const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};"
            "  const lines = s ? [...s.querySelectorAll('.mark-line path')] : [];"
            "  return {view: f.dataset.view, width: r.width, height: r.height,"
            "          lines: lines.filter(p => p.getBBox().width > 0).length}; })")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[no-untyped-call]
        assert driver.save_screenshot(str(tmp_path / "report.png"))
        driver.get(broken.as_uri())
        broken_errors = [e for e in driver.get_log("browser")  # type: ignore[no-untyped-call]
                         if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert [c["view"] for c in charts] == ["v_funnel_weekly", "v_inventory_daily", "v_drain_outcomes",
                                           "v_deliverability", "ops_run_log.routes", "ops_run_log"]
    assert all(c["width"] > 100 and c["height"] > 100 and c["lines"] >= 1 for c in charts), charts
    assert errors == []
    assert broken_errors and "Content Security Policy" in broken_errors[0]["message"]
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.png").stat().st_size > 20_000  # a page with charts, not a blank one
