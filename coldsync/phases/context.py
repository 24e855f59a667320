"""What the phases share during one run."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import InstantlyError
from coldsync.outcomes import STATIC_INTEREST, LabelSentiment, history_policy_columns, label_sentiments
from coldsync.redact import redact
from coldsync.report import PhaseReport, RunReport
from coldsync.rules import ENGAGEMENT_COLUMNS, engagement_of
from coldsync.settings import Settings
from coldsync.store import DncUpkeep, StateRow, Store, dead_letter_id


@dataclass
class CampaignView:
    """A managed campaign as the preflight saw it: the route (and A/B arm) it belongs to."""

    route: str
    arm: str  # the route's name when the route has one campaign
    campaign_id: str
    status: int | None  # Instantly campaign status; None when it could not be read
    leads_count: int | None  # Instantly's lead count; None when not measured
    counters: dict[str, int] = field(default_factory=dict)  # cumulative analytics: completed, bounced, ...
    retired: bool = False  # in no route any more, still holding tracked leads: drained, never fed

    @property
    def active(self) -> bool:
        return self.status == 1

    @property
    def label(self) -> str:
        """For messages: the route, with the arm when the route splits."""
        return self.route if self.arm == self.route else f"{self.route}/{self.arm}"


class TrackedState(Sequence[StateRow]):
    """The tracked leads (ops_inst_state) as one state read returned them, indexed in that one pass.

    Immutable (a tuple and read-only look-ups): a phase that needs the state as the run has left it reads it
    again and puts a new index on the context (RunContext.state), so no index can go stale. Every look-up
    after the build is a dict access; a campaign's rows are grouped by the exact campaign id the rows hold
    (RunContext.rows_in resolves ids to campaigns, once per distinct id)."""

    __slots__ = ("_by_campaign", "_by_status", "_counts", "_rows", "by_email", "by_lead_id", "suppressed")

    def __init__(self, rows: Iterable[StateRow] = ()) -> None:
        self._rows = tuple(rows)
        by_email: dict[str, StateRow] = {}
        by_lead_id: dict[str, StateRow] = {}
        by_campaign: dict[str | None, list[StateRow]] = {}
        by_status: dict[str, list[StateRow]] = {}
        counts: dict[str | None, Counter[str]] = {}
        suppressed: list[StateRow] = []
        for row in self._rows:  # the one pass
            by_email[row.email] = row  # ops_inst_state is keyed by email: one row each
            if row.instantly_lead_id:
                by_lead_id[row.instantly_lead_id] = row
            by_campaign.setdefault(row.campaign_id, []).append(row)
            by_status.setdefault(row.status, []).append(row)
            counts.setdefault(row.campaign_id, Counter())[row.status] += 1
            if row.suppressed is not None:
                suppressed.append(row)
        self.by_email: Mapping[str, StateRow] = by_email  # email -> row
        self.by_lead_id: Mapping[str, StateRow] = by_lead_id  # Instantly lead id -> row (rows with an id)
        self._by_campaign = {key: tuple(value) for key, value in by_campaign.items()}
        self._by_status = {key: tuple(value) for key, value in by_status.items()}
        self._counts = counts
        self.suppressed: tuple[StateRow, ...] = tuple(suppressed)  # rows whose person is suppressed (any status)

    @overload
    def __getitem__(self, index: int) -> StateRow: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[StateRow]: ...
    def __getitem__(self, index: int | slice) -> StateRow | Sequence[StateRow]:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[StateRow]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"TrackedState({len(self._rows)} rows)"

    def with_status(self, *statuses: str) -> tuple[StateRow, ...]:
        """The rows in these statuses (coldsync.store.STATE_STATUSES), in read order within each status."""
        if len(statuses) == 1:
            return self._by_status.get(statuses[0], ())
        return tuple(row for status in statuses for row in self._by_status.get(status, ()))

    def campaign_ids(self) -> tuple[str | None, ...]:
        """The distinct campaign ids the rows hold, as written (None: a row without one)."""
        return tuple(self._by_campaign)

    def in_campaign_id(self, campaign_id: str | None) -> tuple[StateRow, ...]:
        """The rows holding exactly this campaign id."""
        return self._by_campaign.get(campaign_id, ())

    def status_counts(self, campaign_id: str | None) -> Mapping[str, int]:
        """Rows per status holding exactly this campaign id."""
        return self._counts.get(campaign_id, Counter())


class RunOutOfTime(Exception):
    """A run came near the end of its lock lease: it stops before the next write."""


@dataclass
class RunContext:
    settings: Settings
    client: InstantlyClient
    store: Store
    report: RunReport
    now: dt.datetime
    dry_run: bool
    campaigns: dict[str, CampaignView] = field(default_factory=dict)  # campaign id -> view, in routing order
    state: TrackedState = field(default_factory=TrackedState)  # replaced whole by each state read, never mutated
    deleted_in_instantly: int = 0
    baseline: tuple[int, int, int, int] = (0, 0, 0, 0)  # client/warehouse counters when the run began
    # Campaigns whose Instantly count disagreed with the warehouse before the run: housekeeping lists them.
    mismatched_campaigns: set[str] = field(default_factory=set)
    # What the last successful run had fully drained, per campaign (analytics counters, last full sweep).
    previous_watermarks: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_dead_letters: int = 0
    # Where the last successful run's pull of Instantly's block list stopped (phases/blocklist.py).
    previous_blocklist_watermark: dict[str, Any] = field(default_factory=dict)
    # The do-not-contact list's needs this run (keys to back-fill, unusable entries, entries to mirror).
    dnc: DncUpkeep = field(default_factory=DncUpkeep)
    # Suppressed leads housekeeping found in Instantly: campaign -> lead id -> email, deleted after the writes.
    take_out: dict[str, dict[str, str]] = field(default_factory=dict)
    # Supply sizing and guard figures of the last successful run (phases/signals.py), by campaign id.
    previous_signals: dict[str, Any] = field(default_factory=dict)
    # Leads the drain deleted (or, in a dry run, would delete) per campaign: the top-up's inventory.
    drained_by_campaign: dict[str, int] = field(default_factory=dict)
    # Tracked lead ids a by-ids look-up of the drain asked for and did not get back (a complete answer):
    # housekeeping confirms each by email before closing it (phases/reconcile.py).
    unreturned_ids: set[str] = field(default_factory=set)
    # Set once this run has offered its DNC entries to Instantly's block list (drain or housekeeping).
    blocklist_pushed: bool = False
    # Set once this run's service-level failures are recorded (sync._service_letters): once per run.
    service_recorded: bool = False
    # time.monotonic() after which the run must not start another write: its lock lease may run out.
    deadline: float | None = None
    _lead_labels: dict[int, LabelSentiment] | None = field(default=None, init=False, repr=False)  # lead_labels()
    # campaign(): campaign ids lower-cased -> view, and the `campaigns` dict and size it was built from
    # (campaigns are only ever added, by the preflight and _retired_campaigns).
    _folded: tuple[int, int, dict[str, CampaignView]] | None = field(default=None, init=False, repr=False)

    def check_deadline(self, before: str) -> None:
        """Stop the run (cleanly: every step is safe to stop between) when it nears its lock lease."""
        if self.deadline is not None and not self.dry_run and time.monotonic() > self.deadline:
            raise RunOutOfTime(f"the run stopped before {before}: it has used 3/4 of its lock lease "
                               f"(LOCK_TTL_MINUTES={self.settings.lock_ttl_minutes}); the next run goes on from here")

    @property
    def run_id(self) -> str:
        return self.store.run_id

    def manages(self, campaign_id: str | None) -> bool:
        """Whether this campaign id (compared without case) is a managed campaign of this run."""
        return self.campaign(campaign_id) is not None

    def campaign(self, campaign_id: str | None) -> CampaignView | None:
        """The managed campaign of this id (ids compared without case), else None."""
        if campaign_id is None:
            return None
        found = self.campaigns.get(campaign_id)
        if found is None:
            folded = self._folded
            if folded is None or folded[0] != id(self.campaigns) or folded[1] != len(self.campaigns):
                # First view wins, as a scan in routing order would find it.
                lowered: dict[str, CampaignView] = {}
                for view in self.campaigns.values():
                    lowered.setdefault(view.campaign_id.lower(), view)
                folded = self._folded = (id(self.campaigns), len(self.campaigns), lowered)
            found = folded[2].get(campaign_id.lower())
        return found

    def rows_in(self, campaign: CampaignView) -> list[StateRow]:
        """The tracked rows of this managed campaign (their campaign id resolves to it through `campaign`,
        so case differences are absorbed): one look-up per distinct campaign id, not per row."""
        return [row for campaign_id in self.state.campaign_ids() if self.campaign(campaign_id) is campaign
                for row in self.state.in_campaign_id(campaign_id)]

    def tracked_count(self, campaign: CampaignView | None = None, *, pending: bool = True) -> int:
        """Tracked rows of this campaign (None: of every managed campaign), `pending` ones included or not."""
        total = 0
        for campaign_id in self.state.campaign_ids():
            found = self.campaign(campaign_id)
            if found is None or (campaign is not None and found is not campaign):
                continue
            counts = self.state.status_counts(campaign_id)
            total += sum(counts.values()) - (0 if pending else counts.get("pending", 0))
        return total

    def lead_labels(self) -> dict[int, LabelSentiment]:
        """The workspace's custom-label sentiments (GET /lead-labels, read once per run, and only by a run
        that meets a custom interest value). A listing that fails or is cut short gives what it read and a
        note: a lead whose label is then unknown is kept, and a later run reads the labels again."""
        if self._lead_labels is None:
            listing = self.client.iter_lead_labels()
            items: list[dict[str, Any]] = []
            try:
                items.extend(listing)
            except InstantlyError as exc:
                self.report.phase("drain").notes.append(f"custom lead labels could not be read: {exc.summary}")
            else:
                if not listing.complete:
                    self.report.phase("drain").notes.append(
                        f"custom lead labels' listing cut short ({listing.stop_reason})")
            self._lead_labels = label_sentiments(items)
        return self._lead_labels



def dead_letter(phase: PhaseReport, operation: str, key: str, *, email: str | None = None,
                campaign_id: str | None = None, lead_id: str | None = None, error: str = "",
                http_status: int | None = None, give_up_reason: str | None = None) -> dict[str, Any]:
    """A dead-letter row (counted on the phase); `error` is passed through coldsync.redact.redact (scrubbed
    whole, then cut to 1000 characters) before it is stored."""
    phase.counts["dead_letters"] += 1
    return {"id": dead_letter_id(phase.name, operation, key), "phase": phase.name, "operation": operation,
            "email": email, "campaign_id": campaign_id, "instantly_lead_id": lead_id, "http_status": http_status,
            "error_text": redact(error, 1000), "resolve": False, "give_up_reason": give_up_reason}


def resolution(phase_name: str, operation: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    """Rows that close the open dead letters of these operations (they succeeded now)."""
    return [{"id": dead_letter_id(phase_name, operation, key), "phase": phase_name, "operation": operation,
             "email": None, "campaign_id": None, "instantly_lead_id": None, "http_status": None,
             "error_text": None, "resolve": True, "give_up_reason": None} for key in keys]


def lead_time(lead: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """When a finished lead ended, as well as Instantly tells: its last update, never in the future."""
    from coldsync.rules import parse_timestamp

    for key in ("timestamp_updated", "timestamp_last_contact"):
        value = parse_timestamp(lead.get(key))
        if value is not None:
            return min(value, now)
    return now


def history_row(ctx: RunContext, *, email: str, campaign_id: str, sequence_name: str | None, status_final: str,
                completed_at: dt.datetime, attempt_num: int | None, instantly_lead_id: str | None,
                reason: str, arm: str | None, interest_status: int | None = None,
                in_instantly: str | None = None, lead: Mapping[str, Any] | None = None,
                added_at: dt.datetime | None = None) -> dict[str, Any]:
    """A history row as every phase writes it: the attempt, and the outcome policy the run's table gives
    it (`policy`, `interest_status`, `return_at`: coldsync.outcomes.history_policy_columns), and, when the
    finished `lead` object is given, how far it got (coldsync.rules.engagement_of: reply and open counts,
    the step reached; None each without it); `added_at`: when the attempt's add was recorded (its state
    row's). Raises coldsync.outcomes.UnknownInterestStatus for a custom
    interest value nobody mapped (the drain keeps such a lead)."""
    engagement = engagement_of(lead) if lead is not None else dict.fromkeys(ENGAGEMENT_COLUMNS)
    return {"email": email, "campaign_id": campaign_id, "sequence_name": sequence_name,
            "status_final": status_final, "completed_at": completed_at, "attempt_num": attempt_num,
            "instantly_lead_id": instantly_lead_id, "reason": reason, "arm": arm, "in_instantly": in_instantly,
            **engagement, "added_at": added_at,
            **history_policy_columns(status_final, interest_status, completed_at, table=ctx.settings.outcome_table,
                                     custom_labels=_labels_for(ctx, interest_status))}


def _labels_for(ctx: RunContext, interest_status: int | None) -> Mapping[int, LabelSentiment] | None:
    """Instantly's custom labels, read only for a custom value the policy document does not map."""
    table = ctx.settings.outcome_table
    if interest_status is None or interest_status in STATIC_INTEREST or interest_status in table.custom_labels:
        return None
    return ctx.lead_labels()
