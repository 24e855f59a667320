"""What one run did: counts per phase, inventory, durations, warnings, as text, Markdown and JSON.

Nothing here holds an email: the phases count and describe, they never list addresses. All the same,
every rendering (text, Markdown, JSON, the job summary, the run log's summary_json) passes the one
redaction path (coldsync.redact) on its way out, so a server message quoted in a warning cannot carry
an address or a secret.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from coldsync.redact import redact, redact_data


@dataclass
class PhaseReport:
    name: str
    ran: bool = False
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    plan: Counter[str] = field(default_factory=Counter)  # dry run: what a real run would do
    notes: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    run_id: str
    mode: str  # live or dry_run
    warehouse: str
    started_at: str
    slot: str = ""  # what the run is for: the schedule slot, or a manual run (the workflow's gate decides it)
    outcome: str = "running"
    error: str | None = None
    inventory_before: int | None = None
    inventory_after: int | None = None
    inventory_warehouse: int | None = None
    held: int = 0  # leads held in their campaign after their outcome was recorded (outcome policies' hold)
    cap: int = 0
    ready_by_route: dict[str, int] = field(default_factory=dict)  # route -> ready leads ("(unrouted)": no route)
    # Per route: ready, quota, inventory, room, added, drained, share (percent), supply sizing, guard, why.
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_rejects: dict[str, int] = field(default_factory=dict)  # reason -> source rows (v_source_rejects)
    source_signal: str | None = None  # the source's change signal the rejects were counted under (Store.source_rejects)
    dnc_rejects: dict[str, int] = field(default_factory=dict)  # reason -> DNC entries that block nobody
    # Instantly block-list mirror: where the last pull stopped and when a full pass last ended.
    blocklist_watermark: dict[str, Any] = field(default_factory=dict)
    # Webhook events (phases/events.py): the newest received_at of the events this run settled; the next run
    # reads from there (minus a safety margin).
    events_watermark: dict[str, Any] = field(default_factory=dict)
    webhook_backfill: dict[str, Any] = field(default_factory=dict)  # coldsync.webhooks.ops.BackfillMark.to_dict
    # With WEBHOOKS_ENABLED, what the run found wrong with the webhooks (coldsync.webhooks.ops.health: disabled,
    # missing, duplicate, ...; [] all well); None: not looked at. The alert condition `webhooks` reads it.
    webhook_problems: list[str] | None = None
    campaigns: dict[str, str] = field(default_factory=dict)  # route (or route/arm) -> "active" / "paused" / ...
    warnings: list[str] = field(default_factory=list)
    phases: dict[str, PhaseReport] = field(default_factory=dict)
    # Per campaign: the analytics counters whose finished leads this run listed completely, and the
    # time of the last full sweep. The next run lists only what changed since (see phases/drain.py).
    drain_watermarks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Reconciliation cursors (phases/reconcile.py): where the rolling audit of tracked lead ids stopped
    # ("audit_after") and where each campaign's bounded listing stopped ("listings": campaign -> lead id).
    reconcile: dict[str, Any] = field(default_factory=dict)
    # Supply sizing and guard figures per campaign id, with when they were read (phases/signals.py).
    supply_signals: dict[str, Any] = field(default_factory=dict)
    # Alert conditions open after this run and what it posted (coldsync.alerts): the next run's memory.
    alerts: dict[str, Any] = field(default_factory=dict)
    # Campaign id -> when its ops_campaign_daily rows were last read (phases/analytics.py: hourly).
    campaign_daily_at: dict[str, Any] = field(default_factory=dict)
    api_calls: int = 0
    api_writes: int = 0
    warehouse_statements: int = 0
    warehouse_writes: int = 0
    seconds: float = 0.0

    def phase(self, name: str) -> PhaseReport:
        if name not in self.phases:
            self.phases[name] = PhaseReport(name)
        return self.phases[name]

    def route(self, name: str) -> dict[str, Any]:
        """The per-route summary entry of `name` (created with zero counts)."""
        if name not in self.routes:
            self.routes[name] = {"ready": 0, "quota": None, "inventory": None, "room": 0, "added": 0, "drained": 0}
        return self.routes[name]

    def route_count(self, name: str | None, key: str, n: int = 1) -> None:
        """Add `n` to a per-route counter (added, drained); a lead of no known route counts under '(other)'."""
        entry = self.route(name or "(other)")
        entry[key] = int(entry.get(key) or 0) + n

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def drained(self) -> int:
        return sum(v for k, v in self.phase("drain").counts.items() if k.startswith("drained:"))

    @property
    def added(self) -> int:
        return self.phase("topup").counts.get("added", 0)

    @property
    def dead_letters(self) -> int:
        return sum(p.counts.get("dead_letters", 0) for p in self.phases.values())

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "phases"}
        data["phases"] = {name: {"ran": p.ran, "seconds": round(p.seconds, 3), "counts": dict(p.counts),
                                 "plan": dict(p.plan), "notes": list(p.notes)} for name, p in self.phases.items()}
        data["drained"], data["added"], data["dead_letters"] = self.drained, self.added, self.dead_letters
        return data

    def to_json(self) -> str:
        """The report as JSON, every string in it redacted (coldsync.redact.redact_data)."""
        return json.dumps(redact_data(self.to_dict()), sort_keys=True, default=lambda v: redact(str(v)))

    def render_text(self) -> str:
        """The report as text lines, redacted (coldsync.redact.redact)."""
        return redact(self._text())

    def _text(self) -> str:
        verb = "DRY RUN (nothing written)" if self.mode == "dry_run" else "run"
        lines = [f"coldsync {verb} {self.run_id}: {self.outcome} in {self.seconds:.1f}s on {self.warehouse}"]
        if self.slot:
            lines.append(f"  slot: {self.slot}")
        if self.error:
            lines.append(f"  error: {self.error}")
        inv = f"  inventory: {_num(self.inventory_before)} before, {_num(self.inventory_after)} after, cap {self.cap}"
        if self.inventory_warehouse is not None:
            inv += f" (warehouse tracks {self.inventory_warehouse})"
        lines.append(inv)
        if self.held:
            lines.append(f"  held: {self.held} lead(s) kept in their campaign after their outcome was recorded "
                         "(counted in the inventory; deleted or moved when the hold ends)")
        if self.campaigns:
            lines.append("  campaigns: " + ", ".join(f"{k} {v}" for k, v in sorted(self.campaigns.items())))
        for name, entry in self.routes.items():
            lines.append(f"  route {name}: {_route_line(entry, self.mode)}")
        unrouted = self.ready_by_route.get(UNROUTED, 0)
        if unrouted:
            lines.append(f"  ready leads no route takes: {unrouted} (add a route, or a last route with "
                         'when = "TRUE")')
        if self.source_rejects:
            total = sum(self.source_rejects.values())
            lines.append(f"  source rows not taken as given ({total}, see v_source_rejects): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.source_rejects.items())))
        if self.dnc_rejects:
            total = sum(self.dnc_rejects.values())
            lines.append(f"  do-not-contact values that cannot be used ({total}, see v_dnc_rejects): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.dnc_rejects.items())))
        for phase in self.phases.values():
            if not phase.ran:
                lines.append(f"  {phase.name}: skipped")
                continue
            items = phase.plan if self.mode == "dry_run" else phase.counts
            label = "would" if self.mode == "dry_run" else ""
            detail = ", ".join(f"{label} {k} {v}".strip() for k, v in sorted(items.items()) if v) or "nothing to do"
            lines.append(f"  {phase.name} ({phase.seconds:.1f}s): {detail}")
            lines.extend(f"    - {note}" for note in phase.notes)
        lines.append(f"  calls: {self.api_calls} Instantly ({self.api_writes} writes), "
                     f"{self.warehouse_statements} warehouse statements ({self.warehouse_writes} writes)")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def render_markdown(self) -> str:
        """The report as Markdown (the job summary), redacted (coldsync.redact.redact)."""
        return redact(self._markdown())

    def _markdown(self) -> str:
        title = "Dry run" if self.mode == "dry_run" else "Sync run"
        icon = "✅" if self.outcome == "success" else "❌"
        out = [f"### {icon} coldsync {title} `{self.run_id}`: {self.outcome}", ""]
        if self.error:
            out += [f"> {self.error}", ""]
        out += ["| | |", "|---|---|"] + ([f"| Slot | {self.slot} |"] if self.slot else []) + [
                f"| Warehouse | {self.warehouse} |",
                f"| Inventory before / after / cap | {_num(self.inventory_before)} / {_num(self.inventory_after)} / "
                f"{self.cap} |",
                f"| Held in their campaign (outcome recorded) | {self.held} |",
                f"| Ready by route | {', '.join(f'{k}: {v}' for k, v in self.ready_by_route.items())} |",
                f"| Source rows not taken as given (v_source_rejects) | {sum(self.source_rejects.values())} |",
                f"| Do-not-contact values that cannot be used (v_dnc_rejects) | {sum(self.dnc_rejects.values())} |",
                f"| Instantly calls / warehouse statements | {self.api_calls} / {self.warehouse_statements} |",
                f"| Duration | {self.seconds:.1f}s |", ""]
        if self.routes:
            verb = "Would add" if self.mode == "dry_run" else "Added"
            out += [f"| Route | Ready | Inventory / quota | Room | {verb}"
                    + " | Drained | Why |", "|---|---:|---:|---:|---:|---:|---|"]
            out += [f"| {name} | {e.get('ready', 0)} | {_num(e.get('inventory'))} / {_num(e.get('quota'))} | "
                    f"{e.get('room', 0)} | {e.get('added', 0)} | {e.get('drained', 0)} | {e.get('reason', '')} |"
                    for name, e in self.routes.items()]
            out.append("")
        out += ["| Phase | Seconds | " + ("Would do" if self.mode == "dry_run" else "Done") + " |", "|---|---|---|"]
        for phase in self.phases.values():
            items = phase.plan if self.mode == "dry_run" else phase.counts
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(items.items()) if v) or "nothing"
            out.append(f"| {phase.name} | {phase.seconds:.1f} | {detail if phase.ran else 'skipped'} |")
        if self.warnings:
            out += ["", "**Warnings**", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(out) + "\n"

    def write_github_summary(self, environ: dict[str, str] | None = None) -> bool:
        """Append the Markdown summary to $GITHUB_STEP_SUMMARY when running under GitHub Actions."""
        return append_github_summary(self.render_markdown(), environ)


def append_github_summary(markdown: str, environ: dict[str, str] | None = None) -> bool:
    """Append Markdown to the job summary ($GITHUB_STEP_SUMMARY) when running under GitHub Actions; False
    elsewhere. Used by the run report and by validate_environment.py's failing checks."""
    env = environ if environ is not None else dict(os.environ)
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    text = redact(markdown)
    if len(text.encode("utf-8")) > GITHUB_SUMMARY_LIMIT:
        note = "\n\n(cut here: the summary passed GitHub's 1 MiB job-summary limit; the run log has it whole)\n"
        text = text.encode("utf-8")[:GITHUB_SUMMARY_LIMIT - 4096].decode("utf-8", "ignore") + note
    with Path(target).open("a", encoding="utf-8") as handle:
        handle.write(text)
    return True


GITHUB_SUMMARY_LIMIT = 1024 * 1024
"""Bytes GitHub keeps of one step's job summary (its documented limit: a larger one is not shown at all)."""


def _num(value: int | None) -> str:
    return "unknown" if value is None else str(value)


UNROUTED = "(unrouted)"
"""Key of ready_by_route for ready leads no route's condition takes."""


def _route_line(entry: dict[str, Any], mode: str) -> str:
    verb, drained = ("would add", "would drain") if mode == "dry_run" else ("added", "drained")
    text = (f"{verb} {entry.get('added', 0)}, {drained} {entry.get('drained', 0)}, room {entry.get('room', 0)}, "
            f"ready {entry.get('ready', 0)}, inventory {_num(entry.get('inventory'))} "
            f"of quota {_num(entry.get('quota'))}")
    if entry.get("share") is not None:
        text += f" (share {entry['share']}%)"
    if entry.get("reason"):
        text += f"; {entry['reason']}"
    return text


# The job summary's pictures (`--report --markdown`, appended by coldsync.status): GitHub renders ```mermaid
# blocks, and xychart-beta draws one series per chart without a legend, so inventory gets one small chart per
# route or campaign. The data comes from coldsync.analytics_report (v_inventory_daily, or the run log).
SUMMARY_ANALYTICS_BUDGET = 64 * 1024
"""Bytes the analytics part of the job summary may take: far under GITHUB_SUMMARY_LIMIT, beside the status
report; blocks that do not fit are named in one line instead."""

MERMAID_MAX_CHARTS = 8
"""Inventory charts drawn at most (one per series); the others are named, not drawn."""


def _mermaid_text(text: str) -> str:
    """A label inside a quoted Mermaid string: redacted, no quote, no `@`, at most 60 characters."""
    return redact(text).replace('"', "'").replace("@", "(at)").replace("\n", " ")[:60]


def mermaid_line_chart(title: str, points: Sequence[tuple[str, float]], y_label: str) -> str:
    """A Mermaid `xychart-beta` line chart block (a fenced ```mermaid block) of (x label, value) points, y from 0
    to just above the largest value. Raises ValueError on no points (Mermaid draws nothing for them)."""
    if not points:
        raise ValueError("a chart needs at least one point")
    top = max(max(value for _label, value in points), 1.0)
    labels = ", ".join(f'"{_mermaid_text(label)}"' for label, _value in points)
    values = ", ".join(_mermaid_number(value) for _label, value in points)
    return "\n".join(["```mermaid", "xychart-beta", f'    title "{_mermaid_text(title)}"', f"    x-axis [{labels}]",
                      f'    y-axis "{_mermaid_text(y_label)}" 0 --> {_mermaid_number(math.ceil(top * 1.1))}',
                      f"    line [{values}]", "```"])


def _mermaid_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], limit: int = 40) -> str:
    """A Markdown table of `columns` (numbers right-aligned, cells redacted, `|` escaped), at most `limit` rows
    and a line counting the rest."""
    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:,.3f}".rstrip("0").rstrip(".")
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return redact(str(value)).replace("|", "\\|").replace("\n", " ").replace("@", "(at)")[:80]

    numeric = {c for c in columns if any(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                                         for r in rows)}
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
    out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"\n({len(rows) - limit:,} more rows in the HTML report)")
    return "\n".join(out)


def analytics_markdown(inventory: Mapping[str, Sequence[tuple[str, float]]], inventory_source: str,
                       funnel_rows: Sequence[Mapping[str, Any]] | None, funnel_columns: Sequence[str],
                       funnel_note: str = "", budget: int = SUMMARY_ANALYTICS_BUDGET) -> str:
    """The job summary's analytics part, redacted: a Mermaid inventory chart per series (series -> (day,
    leads) points, oldest first; at most MERMAID_MAX_CHARTS) and the funnel table (None: `funnel_note` says
    why it is missing). Whole blocks are kept while the part stays within `budget` bytes (UTF-8); the ones
    left out are named in one closing line."""
    blocks: list[tuple[str, str]] = []
    for number, (series, points) in enumerate(sorted(inventory.items())):
        if number >= MERMAID_MAX_CHARTS:
            blocks.append((f"inventory chart of {series}", ""))
            continue
        if points:
            blocks.append((f"inventory chart of {series}",
                           mermaid_line_chart(f"Inventory: {series}", points, "leads in Instantly")))
    if funnel_rows:
        blocks.append(("the funnel table", "**Funnel, latest weeks** (v_funnel_weekly)\n\n"
                       + markdown_table(funnel_rows, funnel_columns)))
    elif funnel_note:
        blocks.append(("the funnel table", f"**Funnel**: not available: {funnel_note}"))
    head = f"**Inventory per day** ({inventory_source})" if inventory else \
        f"**Inventory per day**: nothing to draw yet ({inventory_source})"
    out, left_out = [head, ""], []
    size = len("\n".join(out).encode("utf-8"))
    for name, text in blocks:
        cost = len(text.encode("utf-8")) + 2
        if not text or size + cost > budget - 512:  # 512: room for the closing line
            left_out.append(name)
            continue
        out += [text, ""]
        size += cost
    if left_out:
        out.append(f"(left out of the job summary, see the HTML report: {', '.join(left_out)})")
    return redact("\n".join(out)) + "\n"
