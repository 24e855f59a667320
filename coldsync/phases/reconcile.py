"""HOUSEKEEPING's reconciliation of the tracked leads with Instantly (called by run_housekeeping).

Leads change in Instantly without coldsync: deleted, added or moved by hand. Finding them must not
depend on luck (a hand delete and a hand add balance the counts), nor trust an answer that
contradicts Instantly's own count, nor cost a listing of the whole campaign for one lead.

1. A rolling audit: each run looks up a slice of the tracked active lead ids BY ID (100 ids a call,
   at most RECONCILE_AUDIT_CALLS calls), in lead-id order from where the last successful run
   stopped, wrapping around; the cursor travels in the run summary (`RunReport.reconcile`).
2. Confirmed absence: an id that a by-ids look-up (the audit's, or the drain's stale look-up,
   `RunContext.unreturned_ids`) did not return is looked up BY EMAIL. Found in a managed campaign
   under another id: the state row is re-linked to it (no history). Found only outside the managed
   campaigns: closed (history `removed`, moved outside). Not found: closed (history `removed`, no
   longer in Instantly). A look-up that fails proves nothing: nothing is closed.
3. A bounded listing: a campaign whose Instantly count still disagrees with the warehouse (counted
   after the audit's closures) is listed RECONCILE_PAGES_PER_RUN pages a run at most (shared by all
   campaigns), resuming next run after the last lead read. Orphans (leads the warehouse does not
   track) are adopted as they are read; a suppressed one is taken out, never adopted. Leads missing
   from a listing are closed (after the same confirmation by email) only when one run read it from
   its start to its end.
4. Impossible answers are distrusted: a complete listing that is empty or shorter than the
   campaign's count, or closures beyond what the count allows, close nothing and warn.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from collections.abc import Mapping
from itertools import islice
from typing import Any

from coldsync.instantly.errors import InstantlyError
from coldsync.outcomes import InInstantly, UnknownInterestStatus
from coldsync.phases.context import CampaignView, RunContext, history_row
from coldsync.phases.drain import SUPPRESSED_OUTCOME
from coldsync.rules import Action, chunk, classify_finished_lead, lead_id_of, normalize_email
from coldsync.schedule import TIMEZONE, runs_per_day
from coldsync.store import StateRow
from coldsync.suppression import address_key

AUDIT_BATCH = 100
"""Ids per by-ids look-up. POST /leads/list answers at most 100 leads a page (`limit` 1 to 100; the spec
sets no other bound on `ids`), so 100 ids are answered in one page: one call each."""

REMOVED = "removed"
REMOVED_REASON = "no longer in Instantly (removed outside coldsync)"
MOVED_OUTSIDE_REASON = "moved outside the managed campaigns (found in Instantly only in a campaign coldsync " \
                       "does not manage)"


def take_out(ctx: RunContext, email: str, campaign_id: str, lead_id: str, how: str, sequence: str | None,
             attempt: int | None, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    """Record a suppressed lead found in Instantly (history `suppressed`, state 'draining'); the delete
    follows the writes (run_housekeeping), and a failed one is retried by the next drain."""
    managed = ctx.campaign(campaign_id)
    sequence = sequence or (managed.route if managed else None)
    arm = managed.arm if managed else None
    history.append(history_row(ctx, email=email, campaign_id=campaign_id, sequence_name=sequence,
                               status_final=SUPPRESSED_OUTCOME, completed_at=ctx.now, attempt_num=attempt,
                               instantly_lead_id=lead_id,
                               reason=f"on the do-not-contact list (by {how}): never adopted", arm=arm,
                               in_instantly=InInstantly.DELETED.value))
    state.append({"email": email, "op": "upsert", "status": "draining", "instantly_lead_id": lead_id,
                  "campaign_id": campaign_id, "sequence_target": sequence, "attempt_num": attempt,
                  "outcome": SUPPRESSED_OUTCOME, "added_at": None, "arm": arm})
    ctx.take_out.setdefault(campaign_id, {})[lead_id] = email


def needs_fresh_state(ctx: RunContext) -> bool:
    """Whether reconciliation will look at the tracked leads (then housekeeping re-reads the state)."""
    return bool(ctx.unreturned_ids) or (ctx.settings.reconcile_audit_calls > 0 and any(
        r.instantly_lead_id for r in ctx.state.with_status("active")))


def reconcile_campaigns(ctx: RunContext, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    """The audit, the confirmation by email and the bounded listing, into housekeeping's `state` and
    `history` lists (written by run_housekeeping; nothing is written here). The cursors go to the report."""
    _Reconciler(ctx, state, history).run()



def audit_budget(tracked: int, now: dt.datetime, most: int) -> int:
    """Look-up calls of the rolling audit this run: enough to check every tracked lead once a day over the
    day's scheduled runs, ceil(tracked / AUDIT_BATCH / runs per day) + 1 (the +1 absorbs a run that was
    skipped or late), never more than RECONCILE_AUDIT_CALLS (`most`, 0: no audit). Runs per day from the
    schedule (coldsync.schedule.runs_per_day, New York calendar day of `now`)."""
    if most <= 0 or tracked <= 0:
        return 0
    runs = max(runs_per_day(now.astimezone(TIMEZONE).date()), 1)
    return min(most, math.ceil(tracked / AUDIT_BATCH / runs) + 1)

class _Reconciler:
    def __init__(self, ctx: RunContext, state: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self.ctx, self.state, self.history = ctx, state, history
        self.phase = ctx.report.phase("housekeeping")
        memory = ctx.store.last_summary.get("reconcile")
        self.memory: Mapping[str, Any] = memory if isinstance(memory, dict) else {}
        # Where each tracked email stands as this run leaves it so far: (campaign id, status), or gone.
        self.view: dict[str, tuple[str | None, str]] = {r.email: (r.campaign_id, r.status) for r in ctx.state}
        self.touched: set[str] = set()  # emails given an op this run: one op per email in the MERGE
        for op in state:
            self._track(op)
        self.owner = {lead_id: r.email for lead_id, r in ctx.state.by_lead_id.items()}
        # Found gone, settled together (_settle_closures); True: proven by a whole listing that agrees with the
        # campaign's count (a third witness), so not held to the audit's allowance.
        self.closures: list[tuple[StateRow, str, bool]] = []
        # email -> the interest status a rep left on the lead found outside the managed campaigns (its policy)
        self.interest_outside: dict[str, int] = {}
        # Campaigns whose closures wait for a whole listing (_list_mismatched): campaign id -> leads looked gone.
        self.verify: dict[str, int] = {}
        self.closed: dict[str, tuple[StateRow, str]] = {}  # lead id -> the row closed this run, and why
        self.contradicted = 0  # leads a by-ids look-up or a whole listing lacked, found by email under their id

    # ---- bookkeeping ---------------------------------------------------------------------------

    def _track(self, op: Mapping[str, Any]) -> None:
        email = str(op["email"])
        self.touched.add(email)
        if op["op"] == "delete":
            self.view.pop(email, None)
        else:
            campaign_id, status = self.view.get(email, (None, "active"))
            self.view[email] = (op.get("campaign_id") or campaign_id, op.get("status") or status)

    def _add(self, op: dict[str, Any]) -> None:
        self.state.append(op)
        self._track(op)

    def tracked(self, campaign: CampaignView) -> int:
        """Leads the warehouse tracks in the campaign (pending ones aside), as this run leaves them so far."""
        return sum(1 for campaign_id, status in self.view.values()
                   if status != "pending" and self.ctx.campaign(campaign_id) is campaign)

    def expected(self, campaign: CampaignView) -> int | None:
        """Instantly's count of the campaign now: the preflight count, less what this run deleted there,
        plus what it added (a dry run changed nothing). None when it could not be measured."""
        if campaign.leads_count is None:
            return None
        if self.ctx.dry_run:
            return campaign.leads_count
        added = sum(1 for r in self.ctx.rows_in(campaign)
                    if r.status == "active" and r.run_id == self.ctx.run_id and r.added_at is not None
                    and r.added_at >= self.ctx.now - dt.timedelta(seconds=1))
        return max(campaign.leads_count - self.ctx.drained_by_campaign.get(campaign.campaign_id, 0) + added, 0)

    def _auditable(self) -> dict[str, StateRow]:
        """Tracked active leads with an id in a managed campaign, not settled yet this run: id -> row."""
        return {r.instantly_lead_id: r for r in self.ctx.state.with_status("active")
                if r.instantly_lead_id and self.ctx.manages(r.campaign_id)
                and r.email not in self.touched}

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        rows = self._auditable()
        missing = self._audit(rows)
        missing.update({lead_id: rows[lead_id] for lead_id in self.ctx.unreturned_ids if lead_id in rows})
        if missing:
            self._confirm(list(missing.values()), "by-id look-up")
        self._settle_closures()
        self._list_mismatched()  # after the audit's closures: a hand delete beside a hand add shows now
        self._settle_closures(last=True)
        if self.contradicted:
            self.ctx.report.warn(f"Instantly left out {self.contradicted} tracked lead(s) from a look-up by id or a "
                                 "listing that its look-up by email then found under the same id: kept")

    def _audit(self, rows: dict[str, StateRow]) -> dict[str, StateRow]:
        """The rolling audit: this run's slice of the tracked ids looked up by id. Returns the ids not
        returned by a conclusive answer (to be confirmed by email)."""
        ctx = self.ctx
        previous = self.memory.get("audit_after")
        cursor = previous if isinstance(previous, str) and previous else None
        ids = sorted(rows)
        calls = audit_budget(len(ids), ctx.now, ctx.settings.reconcile_audit_calls)
        missing: dict[str, StateRow] = {}
        if calls <= 0 or not ids:
            self._remember("audit_after", cursor)
            return missing
        start = bisect_right(ids, cursor) if cursor else 0
        window = (ids[start:] + ids[:start])[:calls * AUDIT_BATCH]
        self._remember("audit_after", window[-1])
        asked = [lead_id for lead_id in window if lead_id not in ctx.unreturned_ids]  # confirmed anyway
        without_id = strays = malformed = 0
        answered = cursor
        for part in chunk(asked, AUDIT_BATCH):
            wanted = set(part)
            listing = ctx.client.iter_leads(ids=part, page_size=AUDIT_BATCH, max_pages=1)
            returned: dict[str, Mapping[str, Any]] = {}
            unreadable = 0
            try:
                # At most one lead per id asked: stop there, so a full answer costs no second call.
                for lead in islice(listing, len(part)):
                    lead_id = lead_id_of(lead)
                    if lead_id is None:
                        unreadable += 1
                    else:
                        returned[lead_id] = lead
            except InstantlyError as exc:
                # Proves nothing; the next run goes on after the last id answered.
                self.phase.notes.append(f"audit look-up by id failed, nothing closed from it: {exc.summary}")
                self._remember("audit_after", answered)
                break
            answered = part[-1]
            self.phase.plan["check by id"] += len(part)
            if unreadable:
                without_id += 1  # a lead without an id might be any of them: absence is not proven
                continue
            if any(lead_id not in wanted for lead_id in returned):
                strays += 1  # an answer naming leads not asked for is not an answer to the question
                continue
            for lead_id in part:
                if lead_id in returned:
                    answer = returned[lead_id]
                    if classify_finished_lead(answer, now=ctx.now, added_at=rows[lead_id].added_at,
                                              max_active_days=ctx.settings.max_active_days).action is Action.UNKNOWN:
                        malformed += 1  # kept as it is; the drain reports it too when it lists it
                    self._check_campaign(rows[lead_id], answer)
                else:
                    missing[lead_id] = rows[lead_id]
        if without_id:
            self.phase.notes.append(f"{without_id} audit look-up(s) by id answered lead(s) without a usable id: "
                                    "nothing closed from them")
        if strays:
            self.phase.notes.append(f"{strays} audit look-up(s) by id answered leads not asked for: nothing closed "
                                    "from them")
        if malformed:
            self.phase.notes.append(f"{malformed} lead(s) answered by id could not be classified (malformed "
                                    "objects): kept")
        return missing

    def _remember(self, key: str, value: Any) -> None:
        if value is None:
            self.ctx.report.reconcile.pop(key, None)
        else:
            self.ctx.report.reconcile[key] = value

    def _check_campaign(self, row: StateRow, lead: Mapping[str, Any]) -> None:
        """A tracked lead Instantly returned under its id: re-linked when it sits in another managed
        campaign now, closed when it sits only outside them (a lead in no campaign, or without the
        field, is left as it is)."""
        found = lead.get("campaign")
        if not isinstance(found, str) or not found or self.ctx.campaign(found) is self.ctx.campaign(row.campaign_id):
            return
        if self.ctx.manages(found):
            self._relink(row, lead)
        else:
            self.closures.append((row, MOVED_OUTSIDE_REASON, False))

    # ---- confirmation by email -----------------------------------------------------------------

    def _confirm(self, missing: list[StateRow], what: str, *, listed: bool = False) -> None:
        """Tracked leads a by-ids look-up or a whole listing did not return, looked up by email."""
        missing = [row for row in missing if row.email not in self.touched]
        if not missing:
            return
        try:
            found = self.ctx.client.find_leads_by_email(row.email for row in missing)
        except InstantlyError as exc:
            self.phase.notes.append(f"confirming {len(missing)} lead(s) missing from a {what} by email failed: "
                                    f"nothing closed, checked again later ({exc.summary})")
            return
        self.phase.plan["confirm by email"] += len(missing)
        unreadable = 0
        for row in missing:
            leads = found.get(row.email, [])
            if any(lead_id_of(lead) is None for lead in leads):
                unreadable += 1  # a lead of this address without a usable id might be this one: not proven
                continue
            same = next((lead for lead in leads if lead_id_of(lead) == row.instantly_lead_id), None)
            if same is not None:
                self.contradicted += 1  # it is there after all: the first answer was wrong (or late)
                self._check_campaign(row, same)
                continue
            mine = self.ctx.campaign(row.campaign_id)
            here = [lead for lead in leads if self.ctx.manages(_campaign_of(lead))
                    and self.owner.get(str(lead_id_of(lead)), row.email) == row.email]
            here.sort(key=lambda lead: self.ctx.campaign(_campaign_of(lead)) is not mine)
            if here:
                self._relink(row, here[0])
            elif any(not self.ctx.manages(_campaign_of(lead)) for lead in leads):
                interest = next((value for lead in leads if not self.ctx.manages(_campaign_of(lead))
                                 and isinstance(value := lead.get("lt_interest_status"), int)
                                 and not isinstance(value, bool)), None)
                if interest is not None:
                    self.interest_outside[row.email] = interest  # e.g. Won, then moved to a sales campaign
                self.closures.append((row, MOVED_OUTSIDE_REASON, listed))
            else:
                self.closures.append((row, REMOVED_REASON, listed))
        if unreadable:
            self.phase.notes.append(f"{unreadable} lead(s) missing from a {what} were found by email without a "
                                    "usable id: not closed")

    def _relink(self, row: StateRow, lead: Mapping[str, Any]) -> None:
        """The tracked person is in a managed campaign under another id or in another campaign: follow it."""
        lead_id = str(lead_id_of(lead))
        where = self.ctx.campaign(_campaign_of(lead))
        assert where is not None
        moved = where is not self.ctx.campaign(row.campaign_id)
        self.owner[lead_id] = row.email
        if row.suppressed:
            self.phase.plan["remove suppressed"] += 1
            take_out(self.ctx, row.email, where.campaign_id, lead_id, row.suppressed,
                     where.route if moved else row.sequence_target, row.attempt_num, self.state, self.history)
            self._track(self.state[-1])
            return
        self.phase.plan["relink to another campaign" if moved else "relink to a new lead id"] += 1
        self._add({"email": row.email, "op": "upsert", "status": "active", "instantly_lead_id": lead_id,
                   "campaign_id": where.campaign_id, "sequence_target": where.route if moved else row.sequence_target,
                   "attempt_num": row.attempt_num, "outcome": None, "added_at": None,
                   "arm": where.arm if moved else row.arm})

    def _settle_closures(self, *, last: bool = False) -> None:
        """Close the leads found gone, per campaign, within what Instantly's own count allows: as many as the
        warehouse tracks beyond the count, plus max(1, 1%) (a hand delete beside a hand add), and never every
        tracked lead of a campaign Instantly says holds some. Beyond that the look-ups contradict the count:
        the campaign is listed whole this run to decide (`verify`); if that cannot settle it (`last`), nothing
        is closed there and a warning says so. Closures a whole listing proved are closed as found."""
        by_campaign: dict[str, list[tuple[StateRow, str, bool]]] = {}
        closures, self.closures = self.closures, []
        for row, reason, listed in closures:
            managed = self.ctx.campaign(row.campaign_id)
            if managed is not None:
                by_campaign.setdefault(managed.campaign_id, []).append((row, reason, listed))
        for campaign_id, rows in by_campaign.items():
            campaign = self.ctx.campaigns[campaign_id]
            tracked = self.tracked(campaign)
            expected = self.expected(campaign)
            allowed = (max(tracked - expected, 0) if expected is not None else 0) + max(1, tracked // 100)
            unproven = [item for item in rows if not item[2]]
            emptied = expected is not None and expected > 0 and len(unproven) >= tracked
            if unproven and (len(unproven) > allowed or emptied):
                if not last:
                    self.verify[campaign_id] = len(unproven)  # a whole listing of the campaign decides, this run
                    continue
                self._contradiction(campaign, len(rows), expected, tracked, allowed)
                continue
            for row, reason, _listed in rows:
                self._close(row, campaign, reason)
        if last:
            for campaign_id, looked_gone in self.verify.items():
                campaign = self.ctx.campaigns[campaign_id]
                proven = len(by_campaign.get(campaign_id, []))
                if proven < looked_gone:
                    expected, tracked = self.expected(campaign), self.tracked(campaign) + proven
                    self._contradiction(campaign, looked_gone - proven, expected, tracked, None)

    def _contradiction(self, campaign: CampaignView, kept: int, expected: int | None, tracked: int,
                       allowed: int | None) -> None:
        """Leads that looked gone, kept because Instantly's answers contradict its own count: said once."""
        self.phase.plan["not closed: Instantly contradicts its count"] += kept
        bound = f" (at most {allowed} could be gone)" if allowed is not None else ""
        self.ctx.report.warn(
            f"Instantly's answers about the {campaign.label} campaign contradict its own count: {kept} tracked "
            f"lead(s) looked gone by id and email, but it counts {_num(expected)} lead(s) where the warehouse tracks "
            f"{tracked}{bound}, and a whole listing did not show them gone: nothing closed; checked again next run")

    def _close(self, row: StateRow, campaign: CampaignView, reason: str) -> None:
        """Gone from the managed campaigns without our drain: record it, then forget it."""
        interest = self.interest_outside.get(row.email) if reason == MOVED_OUTSIDE_REASON else None
        try:
            # The interest status a rep set before moving it by hand decides its policy (a Won is never back).
            record = history_row(self.ctx, email=row.email, campaign_id=campaign.campaign_id,
                                 sequence_name=row.sequence_target, status_final=REMOVED,
                                 completed_at=self.ctx.now, attempt_num=row.attempt_num,
                                 instantly_lead_id=row.instantly_lead_id, reason=reason, arm=row.arm,
                                 interest_status=interest, in_instantly=InInstantly.GONE.value,
                                 added_at=row.added_at)
        except UnknownInterestStatus as exc:
            self.phase.notes.append(f"a lead moved outside kept tracked: {exc} (map it in the outcome policies' "
                                    "[custom_labels])")
            return
        self.phase.plan["close moved outside" if reason == MOVED_OUTSIDE_REASON else "close vanished"] += 1
        self.closed[str(row.instantly_lead_id)] = (row, reason)
        self.history.append(record)
        self._add({"email": row.email, "op": "delete"})

    # ---- the bounded listing -------------------------------------------------------------------

    def _list_mismatched(self) -> None:
        """List the campaigns whose count still disagrees, within the page budget, resuming where the last
        successful run stopped; adopt orphans; close what a whole listing proves gone."""
        ctx = self.ctx
        budget = ctx.settings.reconcile_pages_per_run
        previous = self.memory.get("listings")
        cursors: Mapping[str, Any] = previous if isinstance(previous, dict) else {}
        following: dict[str, str] = {}
        read: list[tuple[CampaignView, list[dict[str, Any]], bool]] = []
        for campaign in ctx.campaigns.values():
            cursor = cursors.get(campaign.campaign_id)
            cursor = cursor if isinstance(cursor, str) and cursor else None
            expected = self.expected(campaign)
            if expected is None:
                if cursor:
                    following[campaign.campaign_id] = cursor
                continue
            if expected == self.tracked(campaign) and campaign.campaign_id not in self.verify:
                continue  # counts agree: nothing to list (a listing under way is dropped)
            if campaign.campaign_id in self.verify:
                cursor = None  # the audit's closures wait for a listing of the whole campaign
            if budget <= 0:
                if cursor:
                    following[campaign.campaign_id] = cursor
                self.phase.notes.append(f"reconcile listing of {campaign.label} waits for the next run (page budget "
                                        f"RECONCILE_PAGES_PER_RUN={ctx.settings.reconcile_pages_per_run} spent)")
                continue
            listing = ctx.client.iter_leads(campaign=campaign.campaign_id, starting_after=cursor, max_pages=budget)
            leads: list[dict[str, Any]] = []
            failed = False
            try:
                for lead in listing:
                    leads.append(lead)
            except InstantlyError as exc:
                failed = True
                self.phase.notes.append(f"reconcile listing of {campaign.label} failed: {exc.summary}; resumed "
                                        "next run")
            budget -= listing.pages
            self.phase.plan["list page"] += listing.pages
            if listing.complete and not failed:
                read.append((campaign, leads, cursor is None))
                continue
            resume = listing.last_id or cursor
            if resume:
                following[campaign.campaign_id] = resume
            if not failed and listing.stop_reason == "max_pages":
                self.phase.notes.append(f"reconcile listing of {campaign.label} cut after {listing.pages} page(s) "
                                        f"(RECONCILE_PAGES_PER_RUN={ctx.settings.reconcile_pages_per_run}): resumes "
                                        "next run where it stopped")
            elif not failed:
                self.phase.notes.append(f"reconcile listing of {campaign.label} stopped after {listing.pages} page(s) "
                                        f"({listing.stop_reason}): resumed next run")
            read.append((campaign, leads, False))
        self._remember("listings", following or None)
        self._veto(read)
        self._adopt(read)
        for campaign, leads, whole in read:
            if whole:
                self._close_unlisted(campaign, leads)

    def _veto(self, read: list[tuple[CampaignView, list[dict[str, Any]], bool]]) -> None:
        """A lead closed this run that a listing of this run shows in its campaign is there after all: its
        closure (history row and state delete, not written yet) is taken back, and the run says so."""
        listed = {lead_id: campaign for campaign, leads, _whole in read for lead in leads
                  if (lead_id := lead_id_of(lead)) is not None}
        back = {lead_id: self.closed.pop(lead_id) for lead_id in list(self.closed)
                if (campaign := listed.get(lead_id)) is not None
                and campaign is self.ctx.campaign(self.closed[lead_id][0].campaign_id)}
        if not back:
            return
        emails = {row.email for row, _reason in back.values()}
        self.history[:] = [h for h in self.history
                           if not (h["status_final"] == REMOVED and h.get("instantly_lead_id") in back)]
        self.state[:] = [op for op in self.state if not (op["op"] == "delete" and op["email"] in emails)]
        for row, reason in back.values():
            self.view[row.email] = (row.campaign_id, row.status)
            self.touched.discard(row.email)
            self.phase.plan["close moved outside" if reason == MOVED_OUTSIDE_REASON else "close vanished"] -= 1
        self.phase.plan["not closed: a listing shows it"] += len(back)
        self.ctx.report.warn(f"Instantly's look-ups left out {len(back)} tracked lead(s) that its listing of the "
                             "campaign then showed: kept (its answers contradict each other)")

    def _adopt(self, read: list[tuple[CampaignView, list[dict[str, Any]], bool]]) -> None:
        """Leads listed in a managed campaign that the warehouse does not track: adopted; a suppressed
        person's is taken out; a second copy of a tracked person is reported, not adopted."""
        ctx = self.ctx
        known_ids = set(ctx.state.by_lead_id) | set(self.owner)
        known_emails = set(ctx.state.by_email) | self.touched
        known_keys = {k for e in known_emails if (k := address_key(e))}
        suppressed = ctx.store.suppressed_emails(
            e for _c, leads, _w in read for lead in leads
            if lead_id_of(lead) not in known_ids and (e := normalize_email(lead.get("email"))))
        for campaign, leads, _whole in read:
            for lead in leads:
                lead_id = lead_id_of(lead)
                email = normalize_email(lead.get("email"))
                if lead_id is None or lead_id in known_ids or email is None:
                    continue
                if email in suppressed and email not in known_emails:
                    self.phase.plan["remove suppressed"] += 1
                    known_emails.add(email)
                    take_out(ctx, email, campaign.campaign_id, lead_id, suppressed[email], campaign.route, None,
                             self.state, self.history)
                    self._track(self.state[-1])
                    continue
                key = address_key(email)
                if email in known_emails or key in known_keys:
                    if email not in known_emails:
                        # The same person (a +tag or Gmail-dot variant) is already tracked: a second copy added
                        # by hand is not adopted, and not deleted either (a person put it there): reported.
                        self.phase.plan["not adopted: same person as a tracked lead"] += 1
                    continue
                self.phase.plan["adopt orphan"] += 1
                known_emails.add(email)
                known_ids.add(lead_id)
                if key:
                    known_keys.add(key)
                self._add({"email": email, "op": "upsert", "status": "active", "instantly_lead_id": lead_id,
                           "campaign_id": campaign.campaign_id, "sequence_target": campaign.route,
                           "attempt_num": None, "outcome": None, "added_at": None, "arm": campaign.arm})

    def _close_unlisted(self, campaign: CampaignView, leads: list[dict[str, Any]]) -> None:
        """A listing read whole in this run: its tracked leads it lacks are confirmed by email and closed,
        unless the listing itself contradicts Instantly's count (empty, or too short)."""
        ctx = self.ctx
        seen = {lead_id for lead in leads if (lead_id := lead_id_of(lead))}
        unreadable = sum(1 for lead in leads if lead_id_of(lead) is None)
        if unreadable:
            # A lead listed without its id might be any tracked one: absence is not proven this run.
            self.phase.notes.append(f"reconcile listing of {campaign.label} had {unreadable} lead(s) without a "
                                    "usable id: vanished leads are not closed this run")
            return
        absent = [r for r in ctx.rows_in(campaign) if r.status == "active"
                  and r.instantly_lead_id and r.instantly_lead_id not in seen and r.email not in self.touched]
        if not absent:
            return
        expected = self.expected(campaign) or 0
        slack = max(1, expected // 100)
        if (not leads and expected > 0) or len(leads) < expected - slack:
            self.phase.plan["not closed: listing shorter than the count"] += len(absent)
            ctx.report.warn(f"Instantly listed {len(leads)} lead(s) in the {campaign.label} campaign but counts "
                            f"{expected}: the listing contradicts its count and is not trusted, nothing is closed "
                            "from it; checked again next run")
            return
        self._confirm(absent, f"listing of {campaign.label}", listed=True)


def _campaign_of(lead: Mapping[str, Any]) -> str | None:
    value = lead.get("campaign")
    return value if isinstance(value, str) and value else None


def _num(value: int | None) -> str:
    return "an unknown number of" if value is None else str(value)
