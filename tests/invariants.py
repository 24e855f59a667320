"""Checks of the design's invariants 1-6, read from both edges: the warehouse and the simulator.

A `World` snapshots what it needs before a run; `check_after_run` returns the violations (empty
when every invariant holds). Used by the lifecycle tests and the reliability harness.

Every suppression check compares PERSONS, never raw text: an address is its suppression key
(`coldsync.suppression.address_key`), a do-not-contact entry is the keys it carries (the key of its
raw email, of its raw domain, its erased hash, and the keys stored beside them), all computed here in
Python from the raw `ops_dnc` rows, independently of the views the sync reads (the key function is the
product's own: it defines a person; proof/hostile_dnc.py checks it against hand-written expectations).
Messages name leads by Instantly id, or by a masked address (`j***@example.com`), never by a full address.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from coldsync.cli import ExitCode
from coldsync.instantly import client as client_module
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.simulator import InstantlySimulator, RequestRecord
from coldsync.outcomes import row_returns_at
from coldsync.redact import mask_email
from coldsync.rules import Action, classify_finished_lead, normalize_email
from coldsync.settings import Settings, replace
from coldsync.suppression import address_key, domain_key, erasure_hash, key_domain
from coldsync.sync import SyncResult, run_sync
from coldsync.warehouse.base import StringArray, Warehouse
from coldsync.warehouse.schema import ERASURE_SALT_KEY

WRITE_ENDPOINTS = ("POST /leads/add", "DELETE /leads", "DELETE /leads/{id}", "POST /block-lists-entries/bulk-create",
                   "PATCH /leads/{id}", "POST /campaigns/{id}/activate", "POST /campaigns/{id}/pause",
                   "POST /leads/move")
# How a drained lead ended -> the Instantly status that means it. Each of these outcomes puts the person
# on the do-not-contact list before the lead is deleted (invariant 5).
SUPPRESSING_OUTCOMES = {"unsubscribed": -2, "bounced": -1}
DRAINED_WITH_DNC_SQL = ("SELECT instantly_lead_id, email, status_final FROM `{ds}.ops_lead_history` "
                        "WHERE instantly_lead_id IS NOT NULL AND status_final IN ('unsubscribed', 'bounced')")
# DNC sources of an add Instantly rejected (coldsync.phases.topup): permanent, so never on a guess.
REJECTION_SOURCES = {"invalid": "instantly_invalid", "incomplete": "instantly_invalid",
                     "blocklisted": "instantly_blocklist"}
# Requests a run needs to find and take out suppressed leads: when one failed, the run said so and the
# next run finishes the job.
TAKE_OUT_ENDPOINTS = ("POST /leads/list", "DELETE /leads", "DELETE /leads/{id}")

DNC_SQL = f"""
SELECT d.email, d.domain, d.email_key, d.domain_key, d.email_hash, d.source, d.run_id,
       (SELECT MAX(c.value_string) FROM `{{ds}}.config` AS c WHERE c.key = '{ERASURE_SALT_KEY}') AS salt
FROM `{{ds}}.ops_dnc` AS d
"""  # noqa: S608 (constants only)


@dataclass(frozen=True)
class DncEntry:
    """One suppression key an ops_dnc row carries: kind 'email' | 'domain' | 'hash'."""

    kind: str
    key: str
    source: str
    by_coldsync: bool  # written by a run (run_id set), not by a person or an import


@dataclass
class Suppressions:
    """The do-not-contact list as keys: who is suppressed, and how."""

    entries: list[DncEntry] = field(default_factory=list)
    salt: str = ""

    def __post_init__(self) -> None:
        self.emails = {e.key for e in self.entries if e.kind == "email"}
        self.domains = {e.key for e in self.entries if e.kind == "domain"}
        self.hashes = {e.key for e in self.entries if e.kind == "hash"}

    def key_set(self) -> set[tuple[str, str]]:
        return {(e.kind, e.key) for e in self.entries}

    def how(self, key: str | None) -> str | None:
        """'email', 'domain' or 'erased' when the person with this key is suppressed, else None."""
        if key is None:
            return None
        if key in self.emails:
            return "email"
        if key_domain(key) in self.domains:
            return "domain"
        if self.hashes and erasure_hash(key, self.salt) in self.hashes:
            return "erased"
        return None


def _rows(warehouse: Warehouse, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return warehouse.query(sql, params, label="test.invariants")


def read_suppressions(warehouse: Warehouse) -> Suppressions:
    """Every key of every ops_dnc row: computed from the raw values here, and as stored."""
    rows = _rows(warehouse, DNC_SQL)
    salt = str(rows[0]["salt"] or "") if rows else ""
    entries: list[DncEntry] = []
    for row in rows:
        source, ours = str(row["source"]), row.get("run_id") is not None
        found = {("email", address_key(row["email"])), ("email", row.get("email_key")),
                 ("domain", domain_key(row["domain"])), ("domain", row.get("domain_key")),
                 ("hash", row.get("email_hash"))}
        entries += [DncEntry(kind, str(key), source, ours) for kind, key in sorted(found, key=str) if key]
    return Suppressions(entries, salt)


def table_contents(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every ops table's rows (sorted), to prove that nothing changed."""
    out = {}
    for table in ("ops_inst_state", "ops_lead_history", "ops_dnc", "ops_dead_letters", "config", "ops_run_log",
                  "ops_run_lock"):
        rows = _rows(warehouse, f"SELECT * FROM `{{ds}}.{table}`")  # noqa: S608 (fixed table names)
        out[table] = sorted(tuple(str(v) for v in r.values()) for r in rows)
    return out


NEVER_RETURNS = dt.datetime.max.replace(tzinfo=dt.UTC)
"""rest_until of a person whose history never lets them return (an in-sales mark, a wrong person, ...)."""


@dataclass
class Snapshot:
    dnc: Suppressions
    rest_until: dict[str, dt.datetime]  # suppression key -> when the person may be added again (rule 5)
    leads: dict[str, dict[str, Any]]  # Instantly lead id -> lead, in the managed campaigns
    log_position: int
    successful_runs: int  # rows of ops_run_log with outcome 'success'
    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


def managed_leads(sim: InstantlySimulator, settings: Settings) -> dict[str, dict[str, Any]]:
    leads = {}
    for campaign_id in settings.routing.campaign_ids():  # every campaign of every route and arm
        for lead in sim.leads(campaign_id):
            leads[str(lead["id"])] = lead
    return leads


def snapshot(warehouse: Warehouse, sim: InstantlySimulator, settings: Settings, *, tables: bool = False) -> Snapshot:
    history = _rows(warehouse, "SELECT email, status_final, completed_at, policy, return_at "
                               "FROM `{ds}.ops_lead_history`")
    last: dict[str, dt.datetime] = {}
    for r in history:  # a person's rest ends when every one of their rows has ended its own (None: never)
        key = address_key(r["email"])
        ends = row_returns_at(r["policy"], r["return_at"], str(r["status_final"]), r["completed_at"],
                              table=settings.outcome_table) or NEVER_RETURNS
        if key is not None and (key not in last or ends > last[key]):
            last[key] = ends
    runs = _rows(warehouse, "SELECT COUNT(*) AS n FROM `{ds}.ops_run_log` WHERE outcome = 'success'")
    return Snapshot(
        dnc=read_suppressions(warehouse),
        rest_until=last,
        leads=managed_leads(sim, settings),
        log_position=len(sim.request_log),
        successful_runs=int(runs[0]["n"]),
        tables=table_contents(warehouse) if tables else {},
    )


def added_emails(sim: InstantlySimulator, since: int) -> list[str]:
    """Emails of every lead sent in an add request after log position `since`."""
    out = []
    for record in sim.request_log[since:]:
        if record.endpoint == "POST /leads/add" and isinstance(record.request_body, dict):
            for lead in record.request_body.get("leads", []):
                email = normalize_email(lead.get("email")) if isinstance(lead, dict) else None
                if email:
                    out.append(email)
    return out


# ---- what Instantly said about the adds of a run -------------------------------------------------------

@dataclass(frozen=True)
class Rejection:
    """A lead an add request sent that Instantly did not create, and what its answer shows about it."""

    email: str
    key: str | None
    kind: str | None  # 'invalid' | 'blocklisted' when that is known for THIS lead, else None
    counted: tuple[str, ...]  # the rejection counters of its answer that are above zero


def _counter(answer: Mapping[str, Any], name: str) -> int:
    value = answer.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _client_sees_invalid(email: object) -> bool:
    """True when the client can tell by itself that Instantly refuses this address: the one invalid
    outcome it reports without counting (LeadOutcome.inferred False). Read from the client at call time."""
    value = email.strip().lower() if isinstance(email, str) else ""
    return not value or client_module._EMAIL_SYNTAX.match(value) is None


def _block_list_keys(records: Iterable[RequestRecord]) -> tuple[set[str], set[str]]:
    """(email keys, domain keys) of the block-list entries the client read in these answers."""
    emails: set[str] = set()
    domains: set[str] = set()
    for record in records:
        if record.endpoint != "GET /block-lists-entries" or record.status != 200:
            continue
        items = record.response_body.get("items") if isinstance(record.response_body, dict) else None
        for entry in items if isinstance(items, list) else []:
            value = entry.get("bl_value") if isinstance(entry, dict) else None
            if entry.get("is_domain") is True and (key := domain_key(value)):
                domains.add(key)
            elif entry.get("is_domain") is False and (key := address_key(value)):
                emails.add(key)
    return emails, domains


def rejections(sim: InstantlySimulator, since: int) -> Iterator[Rejection]:
    """Every lead an add request after log position `since` sent that Instantly did not create (answers
    the client received only), with its rejection when the answer and what the client saw pin it:

    - 'invalid': the client sees by itself that the address is refused (the answer counts invalid ones;
      at most that many, in request order, as the client settles them);
    - 'blocklisted': the answer explains every lead it did not create by `in_blocklist` alone, and a
      block-list answer the client read later in the run shows an entry blocking this person.
    Anything else Instantly only counted: the client can only infer it."""
    log = sim.request_log[since:]
    for position, record in enumerate(log):
        body, answer = record.request_body, record.response_body
        if (record.endpoint != "POST /leads/add" or record.status != 200 or not isinstance(answer, dict)
                or not isinstance(body, dict) or not isinstance(body.get("leads"), list)):
            continue
        leads = body["leads"]
        created = {c.get("index") for c in answer.get("created_leads") or [] if isinstance(c, dict)}
        counted = tuple(name for name in ("invalid_email_count", "in_blocklist", "incomplete_count")
                        if _counter(answer, name))
        invalid_budget = _counter(answer, "invalid_email_count")
        only_blocklist = (_counter(answer, "in_blocklist") > 0 and _counter(answer, "leads_uploaded")
                          + _counter(answer, "in_blocklist") == _counter(answer, "total_sent") == len(leads))
        listed_emails, listed_domains = _block_list_keys(log[position + 1:]) if only_blocklist else (set(), set())
        for index, lead in enumerate(leads):
            if index in created or not isinstance(lead, dict):
                continue
            email = lead.get("email")
            key = address_key(email)
            kind = None
            if invalid_budget and _client_sees_invalid(email):
                invalid_budget -= 1
                kind = "invalid"
            elif only_blocklist and key is not None and (key in listed_emails or key_domain(key) in listed_domains):
                kind = "blocklisted"
            yield Rejection(str(email), key, kind, counted)


def _blocked_by_instantly(sim: InstantlySimulator) -> Suppressions:
    """The simulator's block list as suppression keys."""
    entries = []
    for value in sim.blocklist:
        kind, key = ("email", address_key(value)) if "@" in value else ("domain", domain_key(value))
        if key:
            entries.append(DncEntry(kind, key, "instantly", False))
    return Suppressions(entries)


def _failed_take_out(sim: InstantlySimulator, since: int) -> bool:
    """Whether a request the take-out of suppressed leads needs failed in this run (the run shows it)."""
    return any(r.endpoint in TAKE_OUT_ENDPOINTS and (r.status != 200 or r.fault) for r in sim.request_log[since:])


def _drained_with_dnc(warehouse: Warehouse) -> list[dict[str, Any]]:
    """History rows of drained leads whose outcome puts the person on the DNC list."""
    return _rows(warehouse, DRAINED_WITH_DNC_SQL)


def check_after_run(warehouse: Warehouse, sim: InstantlySimulator, settings: Settings, before: Snapshot,
                    now: dt.datetime, *, dry_run: bool = False) -> list[str]:
    """Violations of invariants 1-5 (and 6 for a dry run) by the run that followed `before`.

    Checks that need the run to have ended (a killed or failed run leaves work for the next one, which
    the following checks then hold to) apply when the run wrote a successful run-log row."""
    problems: list[str] = []
    after = snapshot(warehouse, sim, settings, tables=dry_run)
    finished = after.successful_runs > before.successful_runs and not dry_run
    sent = added_emails(sim, before.log_position)
    sent_keys = {address_key(email) for email in sent}
    # 1. nobody suppressed (by email key, by domain, by erased hash) BEFORE the run is sent in its adds
    for email in sent:
        how = before.dnc.how(address_key(email))
        if how is not None:
            problems.append(f"invariant 1: a DNC address was sent ({mask_email(email)}, suppressed by {how})")
    # ... and after a run that ended, no lead of a person suppressed at its start is left in the managed
    # campaigns (the run takes them out; a delete that failed leaves the lead 'draining' for the next run).
    if finished and settings.run_drain and settings.run_housekeeping and not _failed_take_out(sim, before.log_position):
        left = {lead_id: how for lead_id, lead in after.leads.items()
                if (how := before.dnc.how(address_key(lead.get("email"))))
                and address_key(lead.get("email")) not in sent_keys}
        if left:
            draining = {str(r["instantly_lead_id"]) for r in _rows(
                warehouse, "SELECT instantly_lead_id FROM `{ds}.ops_inst_state` WHERE status = 'draining' "
                           "AND instantly_lead_id IS NOT NULL")}
            problems += [f"invariant 1: lead {lead_id} of a suppressed person ({how}) is still in Instantly "
                         "after the run" for lead_id, how in sorted(left.items()) if lead_id not in draining]
    # 2. nobody re-added within the cooldown (the person's last attempt, by key; a given-up add rests
    # GIVE_UP_COOLDOWN_DAYS instead)
    for email in sent:
        until = before.rest_until.get(address_key(email) or "")
        if until == NEVER_RETURNS:
            problems.append(f"invariant 2: {mask_email(email)} re-added though its history says never again")
        elif until is not None and now < until:
            problems.append(f"invariant 2: {mask_email(email)} re-added {(until - now).days} days before its "
                            "rest after its last attempt ended")
    # 3. one lead per email across the managed campaigns
    counts = Counter(normalize_email(lead.get("email")) for lead in after.leads.values())
    problems += [f"invariant 3: {mask_email(email)} is in Instantly {n} times" for email, n in counts.items() if n > 1]
    # 4. inventory never above the cap (by the sync's adds: leads added by hand in Instantly can exceed
    # it, and then the sync must add nothing)
    if len(after.leads) > settings.inventory_cap and sent:
        problems.append(f"invariant 4: inventory {len(after.leads)} above cap {settings.inventory_cap}")
    # 5. every lead that left Instantly has a history row; every bounced or unsubscribed one (by its
    # history row or by Instantly's status) a DNC entry for its email key
    gone = set(before.leads) - set(after.leads)
    if gone:
        recorded = {str(r["instantly_lead_id"]) for r in _rows(
            warehouse, "SELECT instantly_lead_id FROM `{ds}.ops_lead_history` WHERE instantly_lead_id IS NOT NULL")}
        problems += [f"invariant 5: lead {lead_id} left Instantly without a history row"
                     for lead_id in sorted(gone) if lead_id not in recorded]
    owed: dict[str, tuple[str, str | None]] = {}  # lead id -> (outcome, email key) of a DNC entry owed
    for row in _drained_with_dnc(warehouse):
        lead_id = str(row["instantly_lead_id"])
        if lead_id not in after.leads:
            owed[lead_id] = (str(row["status_final"]), address_key(row["email"]))
    for lead_id in gone:
        lead = before.leads[lead_id]
        outcome = next((o for o, status in SUPPRESSING_OUTCOMES.items() if lead.get("status") == status), None)
        if outcome is not None:
            owed.setdefault(lead_id, (outcome, address_key(lead.get("email"))))
    problems += [f"invariant 5: {outcome} lead {lead_id} left Instantly without its DNC entry"
                 for lead_id, (outcome, key) in sorted(owed.items()) if key not in after.dnc.emails]
    # ... every lead Instantly rejected on add as invalid or blocklisted, in a way its answer shows for that
    # lead, is on the DNC list by the end of the run; one Instantly only counted is never put there on a guess
    if not dry_run:
        problems += _check_rejections(sim, before, after, finished)
    # 6. a dry run writes nothing anywhere
    if dry_run:
        writes = [r.endpoint for r in sim.request_log[before.log_position:] if r.endpoint in WRITE_ENDPOINTS]
        if writes:
            problems.append(f"invariant 6: dry run sent {writes}")
        if after.tables != before.tables:
            changed = [t for t in after.tables if after.tables[t] != before.tables.get(t)]
            problems.append(f"invariant 6: dry run changed tables {changed}")
    return problems


def _check_rejections(sim: InstantlySimulator, before: Snapshot, after: Snapshot, finished: bool) -> list[str]:
    problems: list[str] = []
    listed = before.dnc.key_set()
    new = [e for e in after.dnc.entries if (e.kind, e.key) not in listed]
    guessed: set[str] = set()  # email keys of leads whose rejection Instantly only counted
    for rejection in rejections(sim, before.log_position):
        if rejection.kind is not None:
            if finished and after.dnc.how(rejection.key) is None:
                problems.append(f"invariant 5: lead {mask_email(rejection.email)} rejected on add as {rejection.kind} "
                                "(shown for that lead) has no DNC entry")
        elif rejection.key is not None and rejection.counted:
            guessed.add(rejection.key)
    for entry in new:
        if entry.kind == "email" and entry.source == REJECTION_SOURCES["invalid"] and entry.key in guessed:
            problems.append(f"invariant 5: {mask_email(entry.key)} put on the DNC list ({entry.source}) on a "
                            "rejection Instantly only counted")
    blocked = None
    for entry in new:
        if entry.source == REJECTION_SOURCES["blocklisted"] and entry.kind in ("email", "domain"):
            blocked = blocked or _blocked_by_instantly(sim)
            on_list = entry.key in blocked.emails if entry.kind == "email" else entry.key in blocked.domains
            if not on_list:
                shown = mask_email(entry.key) if entry.kind == "email" else entry.key
                problems.append(f"invariant 5: DNC entry {shown} ({entry.source}) is not on Instantly's block list")
    return problems


def check_before_delete(warehouse: Warehouse, sim: InstantlySimulator, lead_ids: list[str]) -> list[str]:
    """Invariant 5 at the moment of a delete: each lead about to leave Instantly already has its history
    row, and a bounced or unsubscribed one (by Instantly's status, or by the outcome recorded for it) a
    DNC entry for its email key. Call it just before the delete request is sent."""
    leads = {lead_id: lead for lead_id in lead_ids if (lead := sim.lead(lead_id)) is not None}
    if not leads:
        return []
    outcomes = {str(r["instantly_lead_id"]): str(r["status_final"]) for r in warehouse.query(
        "SELECT instantly_lead_id, status_final FROM `{ds}.ops_lead_history` WHERE instantly_lead_id IN UNNEST(@ids)",
        {"ids": StringArray(list(leads))}, label="test.invariants")}
    dnc: Suppressions | None = None
    problems = []
    for lead_id, lead in leads.items():
        if lead_id not in outcomes:
            problems.append(f"invariant 5: lead {lead_id} deleted before its history row was written")
        outcome = next((o for o, status in SUPPRESSING_OUTCOMES.items() if lead.get("status") == status),
                       outcomes.get(lead_id) if outcomes.get(lead_id) in SUPPRESSING_OUTCOMES else None)
        if outcome is not None:
            dnc = dnc or read_suppressions(warehouse)
            if address_key(lead.get("email")) not in dnc.emails:
                problems.append(f"invariant 5: {outcome} lead {lead_id} deleted before its DNC entry was written")
    return problems


def check_before_add(warehouse: Warehouse, body: Any) -> list[str]:
    """Invariant 5 at the moment of an add: every address in a `POST /leads/add` body already has its
    'pending' row in ops_inst_state for that campaign (intent is recorded before the bulk add, so a run
    killed mid-add leaves rows the next run reconciles). Call it just before the add request is sent."""
    if not isinstance(body, dict) or not isinstance(body.get("leads"), list):
        return []
    campaign = str(body.get("campaign_id") or "")
    sent = [lead.get("email") if isinstance(lead, dict) else None for lead in body["leads"]]
    emails = sorted({email for raw in sent if (email := normalize_email(raw))})
    pending = {str(r["email"]) for r in _rows(
        warehouse, "SELECT email FROM `{ds}.ops_inst_state` WHERE status = 'pending' "
                   "AND LOWER(campaign_id) = LOWER(@campaign) AND email IN UNNEST(@emails)",
        {"campaign": campaign, "emails": StringArray(emails)})} if emails else set()
    return [f"invariant 5: {mask_email(str(raw))} sent in an add to campaign {campaign} without its 'pending' row"
            for raw in sent if normalize_email(raw) not in pending]


def check_no_duplicates(warehouse: Warehouse) -> list[str]:
    """Nothing recorded twice: one history row per attempt and per Instantly lead, one DNC entry per
    suppression key (an email key, a domain key, an erased hash: raw forms of one person pasted by hand
    are that person's own repeats, but coldsync never adds a key that is already listed), one state row
    per email, one open dead letter per operation id."""
    checks = {
        "history attempt": "SELECT email AS k FROM `{ds}.ops_lead_history` "
                           "GROUP BY email, campaign_id, attempt_num HAVING COUNT(*) > 1",
        "history of one Instantly lead": "SELECT instantly_lead_id AS k FROM `{ds}.ops_lead_history` "
                                         "WHERE instantly_lead_id IS NOT NULL GROUP BY instantly_lead_id "
                                         "HAVING COUNT(*) > 1",
        "state row": "SELECT email AS k FROM `{ds}.ops_inst_state` GROUP BY email HAVING COUNT(*) > 1",
        "open dead letter": "SELECT id AS k FROM `{ds}.ops_dead_letters` "
                            "WHERE resolved_at IS NULL AND gave_up_at IS NULL GROUP BY id HAVING COUNT(*) > 1",
    }
    problems = [f"duplicate {what}: {row['k']}" for what, sql in checks.items() for row in _rows(warehouse, sql)]
    by_key: dict[tuple[str, str], list[DncEntry]] = {}
    for entry in read_suppressions(warehouse).entries:
        by_key.setdefault((entry.kind, entry.key), []).append(entry)
    for (kind, key), entries in sorted(by_key.items()):
        if len(entries) > 1 and any(e.by_coldsync for e in entries):
            shown = mask_email(key) if kind == "email" else key if kind == "domain" else f"{key[:12]}..."
            problems.append(f"duplicate DNC entry: {kind} {shown} ({len(entries)} entries)")
    return problems


def check_converged(warehouse: Warehouse, sim: InstantlySimulator, settings: Settings,
                    now: dt.datetime) -> list[str]:
    """What must hold once runs stop changing anything: the warehouse tracks exactly the leads in the
    managed campaigns, every one active with its Instantly id, no finished lead is left behind, no lead
    of a suppressed person is left in Instantly, and every bounced or unsubscribed lead drained has its
    DNC entry."""
    problems = []
    state = {str(r["email"]): r for r in _rows(
        warehouse, "SELECT email, campaign_id, status, instantly_lead_id, added_at, hold_until "
                   "FROM `{ds}.ops_inst_state`")}
    leads = managed_leads(sim, settings)
    tracked_ids = {str(r["instantly_lead_id"]) for r in state.values() if r["instantly_lead_id"]}
    for email, row in state.items():
        # A held lead (outcome recorded, kept in its campaign by its policy) is expected in Instantly until
        # its hold ends.
        holding = row["status"] == "holding" and row["hold_until"] is not None and row["hold_until"] > now
        if row["status"] != "active" and not holding:
            problems.append(f"state row of {email} left {row['status']}")
        found = leads.get(str(row["instantly_lead_id"]))
        if found is None:
            problems.append(f"state row of {email} points at no lead in the managed campaigns")
        elif normalize_email(found.get("email")) != email or found.get("campaign") != row["campaign_id"]:
            problems.append(f"state row of {email} disagrees with its Instantly lead")
    dnc = read_suppressions(warehouse)
    for lead_id, lead in leads.items():
        how = dnc.how(address_key(lead.get("email")))
        if how is not None:
            problems.append(f"lead {lead_id} of a suppressed person ({how}) left in Instantly")
        if lead_id not in tracked_ids:
            problems.append(f"lead {lead_id} in Instantly is not tracked by the warehouse")
            continue
        tracked = state.get(normalize_email(lead.get("email")) or "")
        if tracked is not None and tracked["status"] in ("holding", "moving"):
            continue  # held or being moved: finished on purpose (its state row is checked above)
        added_at = tracked["added_at"] if tracked else None
        decision = classify_finished_lead(lead, now=now, added_at=added_at, max_active_days=settings.max_active_days)
        if decision.action is Action.DRAIN:
            problems.append(f"finished lead {lead_id} left in Instantly ({decision.reason})")
    problems += [f"{row['status_final']} lead {row['instantly_lead_id']} has no DNC entry"
                 for row in _drained_with_dnc(warehouse) if address_key(row["email"]) not in dnc.emails]
    return problems


@dataclass
class World:
    """A sync test's world: a warehouse, the simulator, a client to it, the settings of its runs."""

    warehouse: Warehouse
    sim: InstantlySimulator
    client: InstantlyClient
    settings: Settings

    def run(self, **changes: object) -> SyncResult:
        settings = replace(self.settings, **changes) if changes else self.settings
        return run_sync(settings, self.warehouse, self.client, now=self.sim.now)

    def run_checked(self, **changes: object) -> SyncResult:
        """A run, then invariants 1-6 checked against what it did."""
        dry = bool(changes.get("dry_run", False))
        settings = replace(self.settings, **changes) if changes else self.settings
        before = snapshot(self.warehouse, self.sim, settings, tables=dry)
        result = self.run(**changes)
        problems = check_after_run(self.warehouse, self.sim, settings, before, self.sim.now, dry_run=dry)
        assert not problems, problems
        assert result.exit_code == ExitCode.OK, result.report.render_text()
        return result

    def campaign_of(self) -> dict[str, str]:
        """Email -> the campaign it is in, for every lead of the simulator."""
        return {str(x["email"]): str(x["campaign"]) for x in self.sim.leads()}
