"""The static analytics report: `python sync_once.py --report --html PATH` writes ONE self-contained HTML file.

What it holds: a chart per analytics view (`ANALYTICS_VIEWS`, defined in coldsync/warehouse/schema.py on both
engines) and the latest runs of the run log (`ops_run_log`), as inline SVG drawn by Vega-Lite (Altair builds the
spec, vl-convert renders it without a browser or a network). The file loads nothing: no script, no font, no
image from anywhere; its Content-Security-Policy (`default-src 'none'`) forbids it, so it opens offline and
an artifact viewer cannot be made to fetch anything either.

Charts are generic, so a view's columns can change without touching this module (`shape_of`): the time column
(`week_start`, `day`, or `started_at` for the runs) on x, each numeric column a line in its own panel, one colour
per combination of the text columns (route, arm, campaign, outcome, source). A view without a time column
(v_supply) is a table. A view that does not exist yet or cannot be read becomes a "not available: why" panel;
the report is still written.

Aggregates only: every text that enters the file (labels, group values, error messages) passes the one
redaction path (coldsync.redact) and then loses any `@` left (a masked `j***@example.com` becomes
`j***(at)example.com`), so no string in the file reads as an email address; the whole document is redacted once
more before it is written.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from coldsync.redact import redact
from coldsync.routes import Routing
from coldsync.warehouse.base import Param, Warehouse, WarehouseError

ANALYTICS_VIEWS: tuple[tuple[str, str], ...] = (
    ("v_funnel_weekly", "Funnel per week, by route and arm"),
    ("v_inventory_daily", "Inventory and room per day"),
    ("v_drain_outcomes", "How drained leads ended, per week"),
    ("v_supply", "Supply: leads returning from cooldown and days of ready leads left"),
    ("v_deliverability", "Deliverability: bounce and unsubscribe rates per campaign per week"),
    ("v_dnc_growth", "Do-not-contact list growth by source"),
)
"""(view name, section title), in the order the report shows them."""

TIME_COLUMNS = ("week_start", "day", "started_at")
"""The columns taken for the x axis, first found wins (the views' DATE columns; the run log's start time)."""

LOOKBACK = dt.timedelta(days=182)
"""How far back the report reads the views and the run log: 26 weeks."""

RUNS_SHOWN = 20
"""Runs listed in the report's run table (the chart shows every run of the lookback)."""

MAX_TABLE_ROWS = 200
"""Rows of a view shown as a table (a view without a time column); the rest are counted, not shown."""

RUNS_SQL = """
SELECT started_at, mode, outcome, drained, added, dead_letters, inventory_before, inventory_after,
       api_calls, warehouse_statements, duration_seconds, error_text
FROM `{ds}.ops_run_log`
WHERE started_at >= @since
ORDER BY started_at DESC
"""

_CHART_WIDTH = 260
_CHART_HEIGHT = 140
_FACET_COLUMNS = 3


@dataclass(frozen=True)
class ViewResult:
    """One section of the report: a view's rows, or why it is not available (`unavailable` set, rows empty)."""

    name: str
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None


@dataclass(frozen=True)
class Shape:
    """How a view is charted: its x column (None: a table), its text columns (one series per combination of
    their values) and its numeric columns (one panel each)."""

    time: str | None
    groups: tuple[str, ...]
    measures: tuple[str, ...]


def scrub(value: object) -> str:
    """A text fit for the report: redacted (coldsync.redact), then without any `@` (see the module docstring)."""
    return redact(str(value)).replace("@", "(at)")


def _plain(value: object) -> object:
    """A cell as JSON-able: dates as ISO-8601 (UTC for timestamps), numbers as int/float, text scrubbed."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return scrub(value)


def clean_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as plain JSON values, every key and text scrubbed (`scrub`): what the charts and tables are made of."""
    return [{scrub(key): _plain(value) for key, value in row.items()} for row in rows]


def shape_of(rows: Sequence[Mapping[str, Any]]) -> Shape:
    """The chart shape of clean rows (`clean_rows`): the first of `TIME_COLUMNS` present; text columns are
    groups, int/float columns measures (booleans neither); a column that is None in every row is left out."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    time = next((name for name in TIME_COLUMNS if name in columns), None)
    groups: list[str] = []
    measures: list[str] = []
    for name in columns:
        if name == time:
            continue
        values = [row.get(name) for row in rows if row.get(name) is not None]
        if not values:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            measures.append(name)
        elif all(isinstance(v, str) for v in values):
            groups.append(name)
    return Shape(time, tuple(groups), tuple(measures))


def series_name(row: Mapping[str, Any], groups: Sequence[str]) -> str:
    """The series a row belongs to: its group values joined by ' / ' ('all' when the view has no group column)."""
    return " / ".join(str(row.get(g) if row.get(g) is not None else "(none)") for g in groups) or "all"


def long_rows(rows: Sequence[Mapping[str, Any]], shape: Shape) -> list[dict[str, Any]]:
    """Wide rows -> one row per (time, series, measure, value), nulls dropped: the layout the faceted chart reads."""
    if shape.time is None:
        return []
    out = []
    for row in rows:
        if row.get(shape.time) is None:
            continue
        series = series_name(row, shape.groups)
        for measure in shape.measures:
            value = row.get(measure)
            if value is not None:
                out.append({"time": row[shape.time], "series": series, "measure": measure, "value": value})
    return out


def chart_spec(rows: Sequence[Mapping[str, Any]], shape: Shape) -> dict[str, Any]:
    """A Vega-Lite spec (dict): one small line chart per measure, `_FACET_COLUMNS` a row, each with its own y
    scale, x in UTC (the dates are UTC calendar days), one colour per series. Raises ValueError when the rows
    have no time column or no measure (a table is shown instead)."""
    import altair as alt  # the report's own dependency: imported by who draws, not at import time of the CLI

    data = long_rows(rows, shape)
    if not data:
        raise ValueError("no time column or no numeric value to chart")
    base = alt.Chart({"values": data}).mark_line(point=True, strokeWidth=2).encode(
        x=alt.X("time:T", title=None, scale=alt.Scale(type="utc"), axis=alt.Axis(format="%b %d", labelAngle=-30)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("series:N", title=" / ".join(shape.groups) or None,
                        legend=alt.Legend(orient="bottom", columns=4) if shape.groups else None),
        tooltip=["time:T", "series:N", "measure:N", "value:Q"],
    ).properties(width=_CHART_WIDTH, height=_CHART_HEIGHT)
    chart = base.facet(facet=alt.Facet("measure:N", title=None, sort=list(shape.measures)),
                       columns=min(_FACET_COLUMNS, len(shape.measures)))
    chart = chart.resolve_scale(y="independent", x="independent")
    spec: dict[str, Any] = chart.to_dict()
    spec.setdefault("config", {})["font"] = "sans-serif"  # a system font: nothing to load
    return spec


_XMLNS = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')


def render_svg(spec: Mapping[str, Any]) -> str:
    """The chart as an SVG element for inline use in HTML (vl-convert, no browser, no network); the XML
    namespace declarations are dropped (HTML puts an inline <svg> in its namespace itself), so the file
    holds no URL at all. Raises whatever vl-convert raises for a spec it cannot draw."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(dict(spec))
    return _XMLNS.sub("", svg, count=2)


def read_view(warehouse: Warehouse, name: str, title: str, since: dt.datetime) -> ViewResult:
    """`SELECT *` of one view (only identifiers from `ANALYTICS_VIEWS` are placed in the SQL), from `since` on
    when it has a time column. A view that is missing or fails is a ViewResult with `unavailable` set (why,
    redacted): never an exception."""
    try:
        columns = warehouse.existing_columns(name)
        if columns is None:
            return ViewResult(name, title, unavailable=f"{name} is not in the warehouse yet: `python setup.py` "
                              "creates the views of this version (the report is still written without it)")
        time = next((c for c in TIME_COLUMNS if c in columns), None)
        if time is None:
            rows = warehouse.query(f"SELECT * FROM `{{ds}}.{name}`", label=f"report.{name}")  # noqa: S608
        else:
            bound: Param = since if "TIMESTAMP" in columns[time].upper() else since.date()
            rows = warehouse.query(f"SELECT * FROM `{{ds}}.{name}` WHERE {time} >= @since ORDER BY {time}",  # noqa: S608
                                   {"since": bound}, label=f"report.{name}")
    except WarehouseError as exc:
        return ViewResult(name, title, unavailable=scrub(redact(str(exc), 400)))
    return ViewResult(name, title, clean_rows(rows))


def read_views(warehouse: Warehouse, now: dt.datetime,
               views: Sequence[tuple[str, str]] = ANALYTICS_VIEWS) -> list[ViewResult]:
    """Every view of `views` read over `LOOKBACK` before `now` (read_view: a failing one is a panel, not an error)."""
    since = now - LOOKBACK
    return [read_view(warehouse, name, title, since) for name, title in views]


def read_runs(warehouse: Warehouse, now: dt.datetime) -> ViewResult:
    """The run log's rows over `LOOKBACK`, newest first (no `run_id`, no summary_json: counts, times, outcome,
    the redacted error). Unreadable: a ViewResult with `unavailable` set."""
    try:
        rows = warehouse.query(RUNS_SQL, {"since": now - LOOKBACK}, label="report.runs")
    except WarehouseError as exc:
        return ViewResult("ops_run_log", "Latest runs", unavailable=scrub(redact(str(exc), 400)))
    return ViewResult("ops_run_log", "Latest runs", clean_rows(rows))


RUN_CHART_MEASURES = ("inventory_after", "added", "drained", "dead_letters", "duration_seconds")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], limit: int) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows[:limit]:
        cells = []
        for c in columns:
            value = row.get(c)
            text = "" if value is None else f"{value:,}" if isinstance(value, int) else (
                f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value))
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cells.append(f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">{len(rows) - limit:,} more rows not shown.</p>' if len(rows) > limit else "")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def _unavailable(why: str) -> str:
    return f'<div class="unavailable"><strong>Not available:</strong> {html.escape(scrub(why))}</div>'


def _figure(name: str, spec: Mapping[str, Any]) -> str:
    try:
        svg = render_svg(spec)
    except Exception as exc:  # a chart that cannot be drawn is a panel; the report goes on
        return _unavailable(f"the chart could not be drawn: {scrub(redact(str(exc), 300))}")
    return f'<figure class="chart" data-view="{html.escape(name)}">{svg}</figure>'


def view_section(view: ViewResult) -> str:
    """A view's section: chart (time column and measures), table (no time column), or the not-available panel."""
    head = (f'<section id="{html.escape(view.name)}"><h2>{html.escape(view.title)}</h2>'
            f'<p class="source">{html.escape(view.name)}</p>')
    if view.unavailable is not None:
        return head + _unavailable(view.unavailable) + "</section>"
    if not view.rows:
        return head + '<p class="note">No rows in this period yet.</p></section>'
    rows = clean_rows(view.rows)  # whoever made the ViewResult: nothing unscrubbed reaches the file
    shape = shape_of(rows)
    if shape.time is not None and shape.measures:
        body = _figure(view.name, chart_spec(rows, shape))
    else:
        columns = [c for c in (shape.time, *shape.groups, *shape.measures) if c]
        body = _table(rows, columns, MAX_TABLE_ROWS)
    return head + body + "</section>"


def runs_section(runs: ViewResult, inventory: Mapping[str, Sequence[tuple[str, float]]] | None = None) -> str:
    """The run log: a chart of each route's inventory per day (`inventory_points_from_runs`), a chart of
    inventory, adds, drains, dead letters and duration per live run, and a table of the latest `RUNS_SHOWN`
    runs (dry runs included, marked by their mode)."""
    head = '<section id="runs"><h2>Latest runs</h2><p class="source">ops_run_log</p>'
    if runs.unavailable is not None:
        return head + _unavailable(runs.unavailable) + "</section>"
    if not runs.rows:
        return head + '<p class="note">No run in this period yet.</p></section>'
    rows = clean_rows(runs.rows)
    live = [{k: r.get(k) for k in ("started_at", *RUN_CHART_MEASURES)} for r in rows if r.get("mode") == "live"]
    parts = [head]
    per_route = [{"day": day, "route": scrub(route), "inventory": value}
                 for route, points in sorted((inventory or {}).items()) for day, value in points]
    if per_route:
        parts.append('<p class="note">Inventory per route after the last live run of each day:</p>')
        parts.append(_figure("ops_run_log.routes", chart_spec(per_route, Shape("day", ("route",), ("inventory",)))))
    if live:
        shape = Shape("started_at", (), tuple(m for m in RUN_CHART_MEASURES if any(r.get(m) is not None
                                                                                  for r in live)))
        if shape.measures:
            parts.append(_figure("ops_run_log", chart_spec(live, shape)))
    columns = ["started_at", "mode", "outcome", "drained", "added", "dead_letters", "inventory_before",
               "inventory_after", "api_calls", "warehouse_statements", "duration_seconds", "error_text"]
    parts.append(_table(rows, columns, RUNS_SHOWN))
    return "".join(parts) + "</section>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#d0d7de;font-size:13px}
nav{padding:8px 24px;background:#fff;border-bottom:1px solid #d0d7de;font-size:13px}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
main{padding:8px 24px 32px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:16px 0;padding:12px 16px}
h2{font-size:16px;margin:0}.source{font-family:ui-monospace,monospace;font-size:12px;color:#57606a;margin:2px 0 8px}
figure.chart{margin:0;overflow-x:auto}figure.chart svg{display:block}
.unavailable{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;font-size:14px}
.note{color:#57606a;font-size:13px}.table{overflow-x:auto}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f6f8fa}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def ab_section(results: Sequence[Mapping[str, Any]] | None, unavailable: str | None = None) -> str:
    """The A/B results (coldsync.abtest.ab_results: per route with arms, each arm's finished leads, reply and
    interested rates, and each arm against the route's first by the named test, or "Not enough data yet"), as a
    table per route and one line per comparison; a note when no route has arms or the history cannot be read."""
    from coldsync.abtest import METHOD, comparison_line

    head = '<section id="ab"><h2>A/B results</h2><p class="source">ops_lead_history, coldsync.abtest</p>'
    if unavailable is not None:
        return head + _unavailable(unavailable) + "</section>"
    if not results:
        return head + '<p class="note">No route has arms: nothing to compare.</p></section>'
    parts = [head, f'<p class="note">{html.escape(METHOD)}; each arm against the route\'s first.</p>']
    for result in results:
        rows = [{"arm": scrub(str(a["arm"])), "finished": a["finished"], "replied": a["replied"],
                 "reply_rate": a["reply_rate"], "interested": a["interested"],
                 "interested_rate": a["interested_rate"]} for a in result["arms"]]
        parts.append(f"<h3>Route {html.escape(scrub(str(result['route'])))}</h3>")
        parts.append(_table(rows, ["arm", "finished", "replied", "reply_rate", "interested", "interested_rate"],
                            len(rows)))
        lines = [f"<li>{html.escape(scrub(comparison_line(c)))}</li>" for c in result["comparisons"]]
        parts.append(f"<ul>{''.join(lines)}</ul>")
    return "".join(parts) + "</section>"


def build_html(views: Sequence[ViewResult], runs: ViewResult | None, *, generated_at: dt.datetime,
               warehouse: str, clock: str = "current time",
               inventory: Mapping[str, Sequence[tuple[str, float]]] | None = None,
               ab: str | None = None) -> str:
    """The whole report as one HTML document (str): header, a section per view, the runs, the panels of the views
    not available. Loads nothing
    (inline CSS and SVG only, `_CSP` forbids the rest); the result has passed coldsync.redact.redact."""
    since = generated_at - LOOKBACK
    # What can be shown comes first (the views in their order, then the runs); the "not available" panels last.
    shown = [v for v in views if v.unavailable is None]
    missing = [v for v in views if v.unavailable is not None]
    sections = ([view_section(v) for v in shown] + ([ab] if ab is not None else [])
                + ([runs_section(runs, inventory)] if runs is not None else []) + [view_section(v) for v in missing])
    links = ([(v.name, v.title) for v in shown] + ([("ab", "A/B results")] if ab is not None else [])
             + ([("runs", "Latest runs")] if runs is not None else []) + [(v.name, v.title) for v in missing])
    nav = "".join(f'<a href="#{html.escape(n)}">{html.escape(t.split(":")[0].split(",")[0])}</a>' for n, t in links)
    doc = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,"><title>coldsync analytics report</title>'
        f"<style>{_CSS}</style></head><body>"
        "<header><h1>coldsync analytics</h1>"
        f"<p>Generated {html.escape(_plain(generated_at))} ({html.escape(scrub(clock))}) from "  # type: ignore[arg-type]
        f"{html.escape(scrub(warehouse))}; {since:%Y-%m-%d} to {generated_at:%Y-%m-%d} (UTC). "
        "Aggregates only: no address is in this file.</p></header>"
        f"<nav>{nav}</nav><main>{''.join(sections)}</main></body></html>\n"
    )
    return redact(doc)


def write_report(path: Path, document: str) -> None:
    """Write the document to `path` whole or not at all (a temporary file beside it, renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(document)
        os.chmod(temporary, 0o644)  # an aggregate report, meant to be shared (an artifact, a browser)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_report(warehouse: Warehouse, now: dt.datetime, *, clock: str = "current time",
                routing: Routing | None = None) -> str:
    """Read the views, the A/B counts of `routing`'s routes with arms, and the run log (reads only) and build the
    document (build_html)."""
    ab: str | None = None
    if routing is not None:
        from coldsync.abtest import ab_results

        try:
            ab = ab_section(ab_results(warehouse, routing))
        except WarehouseError as exc:
            ab = ab_section(None, scrub(redact(str(exc), 300)))
    try:
        inventory = inventory_points_from_runs(
            warehouse.query(INVENTORY_FROM_RUNS_SQL, {"since": now - LOOKBACK}, label="report.inventory_runs"))
    except WarehouseError:
        inventory = {}  # the runs section says why the run log cannot be read
    return build_html(read_views(warehouse, now), read_runs(warehouse, now), generated_at=now,
                      warehouse=warehouse.describe(), clock=clock, inventory=inventory, ab=ab)


def html_report_command(warehouse: Warehouse, path: Path, now: dt.datetime | None = None,
                        routing: Routing | None = None) -> int:
    """`sync_once.py --report --html PATH`: write the report, print its path; 0, or 1 when it cannot be written
    (the message on stderr). "Now" is the status report's (coldsync.status.report_clock: the clock, or the
    `as_of` config row of a simulation). Closes the warehouse."""
    from coldsync.cli import ExitCode
    from coldsync.status import report_clock

    try:
        pinned, clock = report_clock(warehouse)
        document = make_report(warehouse, now or pinned, clock=clock, routing=routing)
    except WarehouseError as exc:
        print(f"HTML report not written: {scrub(redact(str(exc)))}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        warehouse.close()
    try:
        write_report(path, document)
    except OSError as exc:
        print(f"HTML report not written: {scrub(exc)} (fix: a writable --html PATH)", file=sys.stderr)
        return ExitCode.RUN_FAILED
    print(f"HTML report written: {path}")
    return ExitCode.OK



# The job summary's analytics part (`--report --markdown`; rendered by coldsync.report.analytics_markdown).
SUMMARY_DAYS = 14
"""Days of inventory the job summary's Mermaid charts cover."""

SUMMARY_FUNNEL_WEEKS = 4
"""Latest weeks of v_funnel_weekly in the job summary's funnel table."""

INVENTORY_MEASURES = ("inventory", "managed", "leads", "inventory_after")
"""The v_inventory_daily column drawn, first found (else its first numeric column)."""

INVENTORY_FROM_RUNS_SQL = """
SELECT started_at, summary_json
FROM `{ds}.ops_run_log`
WHERE started_at >= @since AND mode = 'live' AND summary_json IS NOT NULL
ORDER BY started_at
"""


def inventory_points_from_view(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """Clean v_inventory_daily rows -> route (with its arm when the route has several: "route / arm") -> (day,
    leads held) points, oldest first, summed over the campaigns of a series. Only a column of
    `INVENTORY_MEASURES` is drawn (v_inventory_daily's `leads`: what Instantly counted that day); rows without
    it are skipped, so a view with no counts yet gives {} (the caller then draws the run log's figures)."""
    shape = shape_of(rows)
    if shape.time is None:
        return {}
    measure = next((m for m in INVENTORY_MEASURES if any(m in row for row in rows)), None)
    if measure is None:
        return {}
    sums: dict[str, dict[str, float]] = {}
    for row in rows:
        day, value = row.get(shape.time), row.get(measure)
        if day is None or value is None:
            continue
        route, arm = scrub(str(row.get("route") or "(none)")), scrub(str(row.get("arm") or ""))
        series = route if arm in ("", route, "(none)") else f"{route} / {arm}"
        per_day = sums.setdefault(series, {})
        per_day[str(day)[:10]] = per_day.get(str(day)[:10], 0.0) + float(value)
    return {series: sorted(days.items()) for series, days in sums.items()}


def inventory_points_from_runs(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """Run-log rows (started_at, summary_json; oldest first) -> route -> (UTC day, inventory) points: each
    route's inventory after the day's last live run, i.e. its summary_json `routes[name].inventory` (measured
    after the drain, before the top-up: coldsync.supply) plus the leads it `added`. Rows whose summary cannot be
    read are skipped."""
    points: dict[str, dict[str, float]] = {}
    for row in rows:
        started, summary = row.get("started_at"), row.get("summary_json")
        try:
            routes = json.loads(str(summary)).get("routes") or {}
        except (ValueError, AttributeError):
            continue
        day = str(_plain(started))[:10]
        for route, entry in routes.items():
            value = entry.get("inventory") if isinstance(entry, dict) else None
            added = entry.get("added") if isinstance(entry, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                extra = added if isinstance(added, int | float) and not isinstance(added, bool) else 0
                points.setdefault(scrub(route), {})[day] = float(value + extra)
    return {route: sorted(days.items()) for route, days in points.items()}


def summary_markdown(warehouse: Warehouse, now: dt.datetime) -> str:
    """The job summary's analytics part (coldsync.report.analytics_markdown): inventory per series over the
    last `SUMMARY_DAYS` days from v_inventory_daily, or from the run log while that view is missing or empty;
    the funnel of the last `SUMMARY_FUNNEL_WEEKS` weeks. Reads only; a failing read is said, never raised."""
    from coldsync.report import analytics_markdown

    since = now - dt.timedelta(days=SUMMARY_DAYS)
    view = read_view(warehouse, "v_inventory_daily", "", since)
    inventory = inventory_points_from_view(view.rows)
    source = "v_inventory_daily"
    if not inventory:
        try:
            runs = warehouse.query(INVENTORY_FROM_RUNS_SQL, {"since": since}, label="report.inventory_runs")
            inventory = inventory_points_from_runs(runs)
            source = "the run log: each route's inventory after the day's last live run"
        except WarehouseError as exc:
            source = f"neither v_inventory_daily nor the run log could be read: {scrub(redact(str(exc), 300))}"
    funnel = read_view(warehouse, "v_funnel_weekly", "", now - dt.timedelta(weeks=SUMMARY_FUNNEL_WEEKS))
    shape = shape_of(funnel.rows)
    columns = [c for c in (shape.time, *shape.groups, *shape.measures) if c]
    ordered = sorted(funnel.rows, key=lambda r: str(r.get(shape.time or "", "")), reverse=True)
    note = funnel.unavailable or ("" if funnel.rows else "no rows in the last weeks yet")
    return analytics_markdown(inventory, source, ordered or None, columns, note)
