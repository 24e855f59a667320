"""The warehouse schema: every table as one spec, and the eligibility view as one SQL definition.

Both engines build from these: BigQuery through its API (with partitioning and clustering), DuckDB
through DDL generated from the same spec. `SCHEMA_VERSION` is recorded in the config table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from coldsync.outcomes import PolicyTable, may_return_sql
from coldsync.routes import SCORE_COMPONENTS, Routing, route_case_sql
from coldsync.rules import EMAIL_PATTERN, GIVE_UP_OUTCOME, MAX_EMAIL_LENGTH
from coldsync.suppression import (
    sql_domain_key_of_unwrapped,
    sql_erasure_hash,
    sql_key_check,
    sql_key_domain,
    sql_key_of_untagged,
    sql_trim_ends,
    sql_untagged,
    sql_unwrapped_domain,
    sql_unwrapped_email,
    sql_valid_email_or_null,
)
from coldsync.webhooks.events import SUPPRESSING_EVENTS

SCHEMA_VERSION = 9


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # BigQuery type: STRING, INT64, FLOAT64, NUMERIC, BOOL, TIMESTAMP, DATE
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    description: str
    partition_by: str | None = None  # a TIMESTAMP column: daily partitions on BigQuery
    cluster_by: tuple[str, ...] = ()

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: str, description: str = "", required: bool = False) -> Column:
    return Column(name, type_, required, description)


INST_STATE = TableSpec(
    "ops_inst_state",
    (
        _c("email", "STRING", "normalized email (trimmed, lower-case)", required=True),
        _c("campaign_id", "STRING", "Instantly campaign the lead is in"),
        _c("sequence_target", "STRING", "route the lead was added by (by default SMB or Midsize)"),
        _c("status", "STRING", "pending (intent recorded, add not confirmed), active, holding (outcome recorded, kept "
           "in its campaign until hold_until), moving (outcome recorded, being moved to its policy's Instantly "
           "list; in its campaign until the move is verified), draining", required=True),
        _c("instantly_lead_id", "STRING", "Instantly lead UUID once known"),
        _c("attempt_num", "INT64", "1 for the first time this email is sent, then 2, ..."),
        _c("outcome", "STRING", "while holding, moving or draining: the status_final already written to history"),
        _c("added_at", "TIMESTAMP", "when the intent to add was recorded"),
        _c("updated_at", "TIMESTAMP", "last change of this row"),
        _c("run_id", "STRING", "run that last changed this row"),
        _c("arm", "STRING", "A/B arm of the route the lead is in (the route's name when it has one campaign)"),
        _c("hold_until", "TIMESTAMP", "while holding: when the hold ends (then the lead is deleted or moved)"),
        _c("completed_at", "TIMESTAMP",
           "while holding or moving: when the attempt ended (its history row's completed_at)"),
    ),
    "One row per lead currently managed in Instantly. Deleted once the lead is gone from Instantly.",
    cluster_by=("email",),
)

LEAD_HISTORY = TableSpec(
    "ops_lead_history",
    (
        _c("email", "STRING", "normalized email", required=True),
        _c("campaign_id", "STRING", "campaign of this attempt", required=True),
        _c("sequence_name", "STRING", "route of this attempt (by default SMB or Midsize)"),
        _c("status_final", "STRING", "completed, replied, bounced, unsubscribed, skipped, stale, invalid",
           required=True),
        _c("completed_at", "TIMESTAMP", "when the attempt ended (cooldown counts from here)", required=True),
        _c("attempt_num", "INT64", "attempt number; (email, campaign_id, attempt_num) is the key", required=True),
        _c("instantly_lead_id", "STRING", "Instantly lead UUID"),
        _c("reason", "STRING", "why the classifier ended it (no PII)"),
        _c("recorded_at", "TIMESTAMP", "when this row was written"),
        _c("run_id", "STRING", "run that wrote it"),
        _c("arm", "STRING", "A/B arm of the route this attempt was in"),
        _c("policy", "STRING", "outcome policy the sync applied (coldsync.outcomes); NULL: written before v4"),
        _c("return_at", "TIMESTAMP", "when the address may return to cold outreach; NULL with a policy: never "
           "(set it by hand to lift that)"),
        _c("interest_status", "INT64", "the lead's lt_interest_status when it was drained (NULL: not set)"),
        _c("in_instantly", "STRING", "what the sync did with the lead in Instantly: deleted, held, held then "
           "deleted, held then moved, moved, gone (closed: Instantly no longer had it), not added; NULL: before v6"),
        _c("added_at", "TIMESTAMP", "when the attempt's add was recorded (its ops_inst_state row's added_at): the "
           "funnel's 'added'; NULL: never added (given up, suppressed orphans), or written before v7"),
        _c("reply_count", "INT64", "the lead's email_reply_count when it was drained (spec: number of times the "
           "email was replied to; out-of-office auto-replies included); NULL: not read from a lead object "
           "(given-up adds, suppressed orphans) or written before v7"),
        _c("open_count", "INT64", "the lead's email_open_count when it was drained (spec: number of times the "
           "email was opened); NULL as reply_count"),
        _c("last_step_id", "STRING", "the lead's status_summary.lastStep.stepID when it was drained, as Instantly "
           "gave it (e.g. '0_1_0'); NULL: no step sent, or not read"),
        _c("step_reached", "INT64", "the sequence step the lead last got, 1 for the first email: the middle part "
           "of last_step_id plus 1 (the spec does not describe the id; the recorded leads and the simulator "
           "write <sequence>_<step>_<variant>, 0-based); NULL when last_step_id is NULL or not of that form"),
        _c("email_key", "STRING", "suppression key of email as the SQL computes it (coldsync.suppression."
           "sql_equal_address_key), stored by the writer or a run's back-fill so reads need not recompute it; "
           "trusted only while email_key_check still matches (since v9; NULL: not keyed yet)"),
        _c("email_key_check", "STRING", "coldsync.suppression.key_check of the key rule, email and email_key: "
           "while the SQL computes the same over the row, email_key is used; a row whose email, email_key or "
           "check was edited since, or keyed under another rule, is keyed from its email again (since v9)"),
    ),
    "One row per finished attempt. Idempotent key (email, campaign_id, attempt_num).",
    partition_by="completed_at",
    cluster_by=("email",),
)

DEAD_LETTERS = TableSpec(
    "ops_dead_letters",
    (
        _c("id", "STRING", "stable id of the failed operation", required=True),
        _c("occurred_at", "TIMESTAMP", "first failure", required=True),
        _c("run_id", "STRING", "run of the last failure"),
        _c("phase", "STRING", "drain, topup or housekeeping", required=True),
        _c("operation", "STRING", "what failed, e.g. add_lead, delete_lead"),
        _c("email", "STRING", "normalized email, when the failure concerns one lead"),
        _c("campaign_id", "STRING", "campaign concerned"),
        _c("instantly_lead_id", "STRING", "lead id concerned"),
        _c("http_status", "INT64", "HTTP status of the failure, if any"),
        _c("error_text", "STRING", "error message, emails masked"),
        _c("retry_count", "INT64", "retries so far"),
        _c("last_attempt_at", "TIMESTAMP", "last retry"),
        _c("resolved_at", "TIMESTAMP", "when a retry succeeded"),
        _c("gave_up_at", "TIMESTAMP", "when retrying stopped"),
        _c("give_up_reason", "STRING", "why retrying stopped"),
    ),
    "Failed operations, retried by later runs until they succeed or are given up with a reason.",
    partition_by="occurred_at",
    cluster_by=("phase",),
)

CONFIG = TableSpec(
    "config",
    (
        _c("key", "STRING", "setting key", required=True),
        _c("value_int", "INT64", "integer value"),
        _c("value_string", "STRING", "string value"),
        _c("updated_at", "TIMESTAMP", "last change"),
    ),
    "Business settings ops can change without a deploy (see README: configuration).",
)

DNC = TableSpec(
    "ops_dnc",
    (
        _c("email", "STRING", "email entry as given (raw, for audit), or NULL for a domain entry"),
        _c("domain", "STRING", "domain entry as given (raw, for audit), or NULL for an email entry"),
        _c("source", "STRING", "instantly_unsubscribe, instantly_bounce, instantly_blocklist, manual, import, ...",
           required=True),
        _c("reason", "STRING", "why", required=True),
        _c("added_at", "TIMESTAMP", "when", required=True),
        _c("run_id", "STRING", "run that added it, if any"),
        _c("email_key", "STRING", "suppression key of the email entry (coldsync.suppression.address_key)"),
        _c("domain_key", "STRING", "suppression key of the domain entry (coldsync.suppression.domain_key)"),
        _c("email_hash", "STRING", "an erased person's suppression: hex SHA-256 of the salt + the email key"),
        _c("instantly_blocklist_id", "STRING", "id of the entry on Instantly's workspace block list, once mirrored"),
        _c("email_key_check", "STRING", "coldsync.suppression.key_check of the key rule, email and email_key: "
           "while the SQL computes the same over the row, it trusts email_key instead of recomputing it; a row "
           "whose email, email_key or check was edited since, or keyed under another rule, is keyed from its "
           "email too, and the stored key keeps blocking beside it (since v9)"),
        _c("domain_key_check", "STRING", "the same check over the domain and domain_key (since v9)"),
    ),
    "Do-not-contact list, permanent: an email entry blocks that person, a domain entry the whole domain.",
    cluster_by=("email_key", "domain_key"),
)

RUN_LOG = TableSpec(
    "ops_run_log",
    (
        _c("run_id", "STRING", "unique id of the run", required=True),
        _c("started_at", "TIMESTAMP", "start", required=True),
        _c("finished_at", "TIMESTAMP", "end"),
        _c("mode", "STRING", "live or dry_run"),
        _c("outcome", "STRING", "success, alarm, failed, config_error, interrupted"),
        _c("warehouse", "STRING", "duckdb or bigquery"),
        _c("drained", "INT64", "leads drained"),
        _c("added", "INT64", "leads added"),
        _c("dead_letters", "INT64", "new dead letters"),
        _c("inventory_before", "INT64", "inventory measured before top-up"),
        _c("inventory_after", "INT64", "inventory after top-up"),
        _c("api_calls", "INT64", "Instantly requests"),
        _c("warehouse_statements", "INT64", "warehouse statements"),
        _c("duration_seconds", "FLOAT64", "wall time"),
        _c("error_text", "STRING", "run-level error, masked"),
        _c("summary_json", "STRING", "per-phase counts and durations as JSON (no PII)"),
    ),
    "One row per run.",
    partition_by="started_at",
)

RUN_LOCK = TableSpec(
    "ops_run_lock",
    (
        _c("name", "STRING", "lock name", required=True),
        _c("run_id", "STRING", "holder; '' when the lock is free", required=True),
        _c("acquired_at", "TIMESTAMP", "when taken", required=True),
        _c("expires_at", "TIMESTAMP", "when a killed holder's lock may be taken over (1970-01-01 when free)",
           required=True),
        _c("holder_pid", "INT64", "process id of the holder (schema v6)"),
        _c("holder_host", "STRING", "host name of the holder's machine (schema v6)"),
    ),
    "One writer at a time: one permanent row per lock name (made by setup.py), only ever UPDATEd: "
    "a compare-and-set on the holder and the expiry (coldsync.store, ACQUIRE_LOCK_SQL).",
)

CAMPAIGN_DAILY = TableSpec(
    "ops_campaign_daily",
    (
        _c("campaign_id", "STRING", "Instantly campaign", required=True),
        _c("day", "DATE", "the UTC day the counters are for (Instantly's analytics days are UTC days); "
           "(campaign_id, day) is the key", required=True),
        _c("route", "STRING", "route (sequence_target) the campaign served when read"),
        _c("arm", "STRING", "A/B arm of the route the campaign is (the route's name when it has one campaign)"),
        _c("leads", "INT64", "GET /campaigns/analytics `leads_count` (spec: the total number of leads) as last "
           "read during that day; not windowed by Instantly, so only the day it was read gets it (NULL: never "
           "read that day)"),
        _c("contacted", "INT64", "GET /campaigns/analytics/daily `contacted` (spec: the total number of unique "
           "contacts who received an email that day)"),
        _c("new_leads_contacted", "INT64", "daily `new_leads_contacted` (spec: the total number of new leads "
           "contacted that day: their first email)"),
        _c("emails_sent", "INT64", "daily `sent` (spec: the total number of sent emails), every step"),
        _c("opened", "INT64", "daily `unique_opened` (spec: the total number of unique opened emails)"),
        _c("opens", "INT64", "daily `opened` (spec: the total number of opened emails, repeats included)"),
        _c("replied", "INT64", "daily `unique_replies` (spec: the total number of unique replies; automatic "
           "replies are counted apart by the spec's `unique_replies_automatic`)"),
        _c("replies", "INT64", "daily `replies` (spec: the total number of replies)"),
        _c("bounced", "INT64", "GET /campaigns/analytics `bounced_count` for that day's window (spec: the number "
           "of bounced leads); the daily endpoint has no bounce counter"),
        _c("unsubscribed", "INT64", "GET /campaigns/analytics `unsubscribed_count` for that day's window (spec: "
           "the number of unsubscribed leads)"),
        _c("interested", "INT64", "daily `opportunities` (spec: the total number of unique opportunities created "
           "from the campaign on that day): leads a rep marked with a positive interest status (Interested, "
           "Meeting booked, Meeting completed, Won). The spec's narrower `total_interested` exists only in "
           "/campaigns/analytics/overview, one call per campaign per day, which is not read"),
        _c("fetched_at", "TIMESTAMP", "when these figures were read (a day is re-read until it is over)"),
        _c("run_id", "STRING", "run that read them"),
    ),
    "One row per managed campaign per UTC day, from Instantly's campaign analytics, written by housekeeping "
    "at most once an hour per campaign (coldsync.phases.analytics); MERGEd on (campaign_id, day).",
    cluster_by=("campaign_id",),
)

CANDIDATES = TableSpec(
    "ops_candidates",
    (
        _c("email", "STRING", "the person's address as the source gives it, trimmed and lower-cased (rule 1)",
           required=True),
        _c("email_key", "STRING", "suppression key of the address (coldsync.suppression.email_key); one row per key",
           required=True),
        _c("email_domain_key", "STRING", "the key's domain as the domain suppression rule compares it "
           "(coldsync.suppression.sql_key_domain of email_key), computed once per refresh"),
        _c("first_name", "STRING", "from the winning source row"),
        _c("last_name", "STRING", "from the winning source row"),
        _c("company_name", "STRING", "from the winning source row"),
        _c("domain", "STRING", "company website domain, from the winning source row"),
        _c("location", "STRING", "from the winning source row"),
        _c("country", "STRING", "from the winning source row"),
        _c("annual_revenue", "NUMERIC", "revenue in USD; NULL: unknown or unreadable"),
        _c("revenue_unreadable", "BOOL", "the source's revenue text was negative or not a number"),
    ),
    "Derived from the source table, never edited: its rows after rules 1-2 (valid address, one row per person), "
    "with the declared extra source columns of the routing after these. The sync refreshes it (a MERGE from one "
    "read of the source) before it reads ready leads, only when the source or the rules changed "
    "(coldsync.store.Store.refresh_candidates); dropping it is harmless: the next refresh rebuilds it.",
    cluster_by=("email_key",),
)

EVENTS = TableSpec(
    "ops_instantly_events",
    (
        _c("received_at", "TIMESTAMP", "when the receiver (or a run's backfill) wrote the row", required=True),
        _c("event_type", "STRING", "the payload's event_type (lead_unsubscribed, email_bounced, reply_received)",
           required=True),
        _c("email", "STRING", "the payload's lead_email as sent"),
        _c("email_key", "STRING", "suppression key of lead_email (coldsync.suppression.address_key)"),
        _c("campaign_id", "STRING", "the payload's campaign_id"),
        _c("lead_id", "STRING", "Instantly lead id when the payload carries one (it usually does not)"),
        _c("event_at", "TIMESTAMP", "the payload's timestamp: when the event happened in Instantly"),
        _c("step", "INT64", "the payload's step (from 1), when given"),
        _c("variant", "INT64", "the payload's variant (from 1), when given"),
        _c("dedup_key", "STRING", "hex SHA-256 of event type, email key, campaign, event time, step and variant "
           "(coldsync.webhooks.events.dedup_key): a repeated delivery has the same key", required=True),
        _c("delivered_by", "STRING", "receiver (a live delivery) or backfill (a run read a failed delivery back "
           "from GET /api/v2/webhook-events)"),
        _c("payload", "STRING", "the delivery's JSON body exactly as received"),
    ),
    "Instantly webhook deliveries, insert-only (never updated: BigQuery streams into it). An unsubscribe or bounce "
    "here suppresses the address at once, in every eligibility join (DNC_KEY_CTES); the next run copies them into "
    "ops_dnc and drains the leads. A delivery may be stored twice; readers collapse rows by dedup_key.",
    partition_by="received_at",
    cluster_by=("email_key",),
)

TABLES: tuple[TableSpec, ...] = (INST_STATE, LEAD_HISTORY, DEAD_LETTERS, CONFIG, DNC, RUN_LOG, RUN_LOCK,
                                 CAMPAIGN_DAILY, CANDIDATES, EVENTS)

# Columns the source lead table or view must have (README: "Source column contract").
SOURCE_COLUMNS: tuple[Column, ...] = (
    _c("email", "STRING", "contact email; trimmed and lower-cased by the view; invalid ones are skipped"),
    _c("first_name", "STRING", "first name"),
    _c("last_name", "STRING", "last name"),
    _c("company_name", "STRING", "company name"),
    _c("domain", "STRING", "company website domain"),
    _c("location", "STRING", "state or region"),
    _c("country", "STRING", "country"),
    _c("annual_revenue", "NUMERIC", "annual revenue in USD (number or numeric text); NULL means unknown"),
)

VIEW_NAME = "v_ready_for_instantly"

# Default values of the business settings the view reads; the config table overrides them.
VIEW_DEFAULTS = {"smb_revenue_threshold": 1_000_000}


# The one definition of eligibility. Rules, in order:
#  1. email trimmed (the trim set of coldsync.rules.EMAIL_TRIM_CHARS), kept only if it matches
#     EMAIL_PATTERN (checked before lower-casing, as coldsync.rules.normalize_email does), then
#     lower-cased; its suppression key (coldsync.suppression.email_key) computed;
#  2. one row per PERSON (suppression key): the highest revenue, then the smallest (first, last,
#     company, domain, location, country, email) wins, so repeated source rows always yield one row;
#  3. not suppressed: no do-not-contact entry for its key, nor for its key's domain (exact domain),
#     nor an erased person's hash (v_dnc_keys: keys stored when written AND computed from the raw
#     entries, so rows inserted by hand count too; a stored key is trusted, not recomputed, only while its
#     check binds it to its row's raw value and the key rule in force: DNC_KEY_CTES; an edited key keeps
#     counting beside the key of the raw value, so it can only add a key);
#  4. no row in ops_inst_state for its key (any status: pending, active, holding, moving, draining; any campaign);
#  5. allowed back: every history row of the key lets the person return at `as_of`
#     (coldsync.outcomes.may_return_sql: a row's `return_at` has passed, NULL meaning never; a row written
#     before the policy columns rests by its status_final's policy: COOLDOWN_DAYS for no reply,
#     GIVE_UP_COOLDOWN_DAYS for a given-up add, ...; exactly at the instant is eligible again); history
#     rows are keyed as stored (any case, decorations, +tags: v_history_by_key; the key stored on the row is
#     used only while its check binds it to its email and the key rule in force, else SQL keys the email
#     and the stored key does not count);
#  6. sequence_target: the name of the first route whose condition holds (coldsync.routes; by default
#     SMB when revenue < threshold or revenue unknown, else Midsize); no route holds: not ready;
#  7. priority inside the route: the score (PRIORITY_EXPRESSION; by default never contacted first, then
#     higher revenue), higher first, then email.
# `as_of` is CURRENT_TIMESTAMP() unless the config row `as_of` holds a timestamp (simulations only).
# Rules 1-4 are the candidates (candidate_ctes); rules 5-7 are routed_cte, used by the views with the
# config table's threshold and `as_of` and by the sync's own reads with the run's settings (which may
# override them for one run: COOLDOWN_DAYS, SMB_REVENUE_THRESHOLD) and the run's clock. The views are
# built from the routing and the outcome policy table (rule 5's day counts) in effect when setup.py (or a
# sync run that finds them outdated) creates them: their fingerprint changes with either.
assert '"' not in EMAIL_PATTERN, "the view embeds EMAIL_PATTERN in a double-quoted raw string"

CANDIDATES_VIEW = "v_lead_candidates"
DNC_ENTRIES_VIEW = "v_dnc_entries"
DNC_KEYS_VIEW = "v_dnc_keys"
DNC_REJECTS_VIEW = "v_dnc_rejects"
HISTORY_KEYS_VIEW = "v_history_by_key"

ERASURE_SALT_KEY = "erasure_salt"
"""The config row holding this warehouse's salt for erased persons' hashes (made by setup.py)."""

SALT_SQL = f"COALESCE((SELECT MAX(value_string) FROM `{{ds}}.config` WHERE key = '{ERASURE_SALT_KEY}'), '')"  # noqa: S608


def trusted_key_guard(raw: str, stored: tuple[str, str]) -> str:
    """The condition under which a stored key is used instead of the key SQL would compute from `raw`:
    `stored` names (stored key, its check) columns, and the guard holds only while the key is there and its
    check is the one coldsync.suppression.key_check gives for the rule in force, this raw value and this key
    (sql_key_check): an edit of the raw value, the key or the check, or another rule, fails it."""
    key, check = stored
    return f"({key} IS NOT NULL AND {check} = {sql_key_check(raw, key)})"


def address_key_ctes(name: str, from_sql: str, raw: str, columns: str,
                     stored: tuple[str, str] | None = None) -> str:
    """CTEs ending in `name`: `columns` of `from_sql` plus `email_key`, the suppression key of the
    stored address `raw` (coldsync.suppression.address_key, in stages: one column per stage, k1..k3).

    With `stored` (columns of `from_sql`: stored key, its check; trusted_key_guard), a row
    whose stored key is trusted takes it (column k0, NULL on every other row) and skips every stage (its
    k1..k3 are NULL: DuckDB and BigQuery evaluate a CASE branch only on the rows that take it), so a statement
    costs the regular expressions only of rows keyed by nobody yet or changed since."""
    if stored is None:
        return f"""{name}_unwrapped AS (SELECT {columns}, {sql_unwrapped_email(raw)} AS k1 FROM {from_sql}),
{name}_valid AS (SELECT x.*, {sql_valid_email_or_null("x.k1")} AS k2 FROM {name}_unwrapped AS x),
{name}_untagged AS (SELECT x.*, {sql_untagged("x.k2")} AS k3 FROM {name}_valid AS x),
{name} AS (SELECT x.*, {sql_key_of_untagged("x.k3")} AS email_key FROM {name}_untagged AS x)"""  # noqa: S608
    guard = trusted_key_guard(raw, stored)
    return f"""{name}_unwrapped AS (
  SELECT {columns}, CASE WHEN {guard} THEN {stored[0]} END AS k0,
         CASE WHEN {guard} THEN NULL ELSE {sql_unwrapped_email(raw)} END AS k1
  FROM {from_sql}),
{name}_valid AS (SELECT x.*, CASE WHEN x.k0 IS NOT NULL THEN NULL ELSE {sql_valid_email_or_null("x.k1")} END AS k2
  FROM {name}_unwrapped AS x),
{name}_untagged AS (SELECT x.*, CASE WHEN x.k0 IS NOT NULL THEN NULL ELSE {sql_untagged("x.k2")} END AS k3
  FROM {name}_valid AS x),
{name} AS (SELECT x.*, CASE WHEN x.k0 IS NOT NULL THEN x.k0 ELSE {sql_key_of_untagged("x.k3")} END AS email_key
  FROM {name}_untagged AS x)"""  # noqa: S608


def suppressed_by(key: str, salt: str, keys: str = "dnc", *, domain_key: str | None = None
                  ) -> tuple[tuple[str, str], ...]:
    """Rule 3, the one definition: (how, boolean expression) for each way the key `key` is suppressed,
    against `keys`, the CTE `dnc` (kind, key) of DNC_KEY_CTES. `salt` is an SQL expression of the
    erasure salt (SALT_SQL: an uncorrelated scalar subquery, computed once). `domain_key` names a column
    already holding `sql_key_domain(key)` (ops_candidates.email_domain_key); None computes it here.

    The candidates view requires every one to be false; the sync's look-ups (suppressed leads in
    Instantly, adoption) name the first that is true."""
    def listed(kind: str, value: str) -> str:
        # IN, not a correlated EXISTS: both engines plan it as one hash semi-join (`dnc` has no NULL key).
        return f"{value} IN (SELECT d.key FROM {keys} AS d WHERE d.kind = '{kind}')"  # noqa: S608
    return (("email", listed("email", key)), ("domain", listed("domain", domain_key or sql_key_domain(key))),
            ("erased", listed("hash", sql_erasure_hash(key, salt))))


def suppression_reason(key: str, salt: str) -> str:
    """'email', 'domain' or 'erased' when the key `key` is suppressed, else NULL."""
    cases = " ".join(f"WHEN {expr} THEN '{how}'" for how, expr in suppressed_by(key, salt))
    return f"CASE {cases} END"


# The webhook events that suppress (coldsync.webhooks.events.SUPPRESSING_EVENTS), as a FROM item: constants only.
_SUPPRESSING_EVENT_TYPES = ", ".join(f"'{t}'" for t in SUPPRESSING_EVENTS)
_SUPPRESSING_EVENT_ROWS = (f"(SELECT ev.email, ev.email_key FROM `{{ds}}.ops_instantly_events` AS ev "  # noqa: S608
                           f"WHERE ev.event_type IN ({_SUPPRESSING_EVENT_TYPES}))")

# The do-not-contact list as keys, ONE definition as CTE text: every statement that compares with the
# list embeds it (so each reads ops_dnc directly, flat, on every engine), and the views v_dnc_entries,
# v_dnc_keys and v_dnc_rejects are built from it. `dnc_entries`: one row per ops_dnc row with the keys
# SQL computes from the raw values beside the stored ones, and why an entry is unusable (NULL when
# usable). `dnc`: every usable key as (kind 'email' | 'domain' | 'hash', key); stored keys (computed in
# Python when written, punycode included) and keys computed here from the raw values both count.
# A stored key is trusted only while its check still binds it to its row's raw value and the rule in force
# (trusted_key_guard: email_key_check / domain_key_check = SHA-256 over KEY_RULE, the raw value and the stored
# key, computed in SQL): then the key SQL would compute is that same key (Python and SQL agree on every ASCII
# value; on the rest SQL gives NULL and the stored key counted alone), so it is not computed again
# (`sql_email_key` / `sql_domain_key` hold the stored key), and the list is the same set of keys at the cost of
# one SHA-256 per entry instead of the regular expressions. A row inserted or edited by hand (its raw value, its
# key or its check), or keyed under another rule, fails the guard and is keyed from its raw value here, as
# before, at once; its stored key keeps counting beside that key, so an edited key can only add a key.
_DNC_DOMAIN_GUARD = trusted_key_guard("k.domain", ("k.stored_domain_key", "k.domain_key_check"))
DNC_KEY_CTES = f"""{address_key_ctes("dnc_emails", "`{ds}.ops_dnc`", "email",
                                     "email, domain, source, reason, added_at, email_key AS stored_email_key, "
                                     "domain_key AS stored_domain_key, email_hash, instantly_blocklist_id, "
                                     "domain_key_check",
                                     stored=("email_key", "email_key_check"))},
dnc_entries AS (
  SELECT
    k.email, k.domain, k.source, k.reason, k.added_at, k.email_hash, k.instantly_blocklist_id,
    k.stored_email_key, k.email_key AS sql_email_key, COALESCE(k.stored_email_key, k.email_key) AS email_key,
    k.stored_domain_key,
    CASE WHEN {_DNC_DOMAIN_GUARD} THEN k.stored_domain_key
         ELSE {sql_domain_key_of_unwrapped(sql_unwrapped_domain("k.domain"))} END AS sql_domain_key
  FROM dnc_emails AS k
),
{address_key_ctes("event_emails", _SUPPRESSING_EVENT_ROWS, "email", "email_key AS stored_email_key")},
dnc AS (
  SELECT DISTINCT
    CASE WHEN i <= 2 THEN 'email' WHEN i <= 4 THEN 'domain' ELSE 'hash' END AS kind,
    CASE i WHEN 1 THEN e.stored_email_key WHEN 2 THEN e.sql_email_key WHEN 3 THEN e.stored_domain_key
           WHEN 4 THEN e.sql_domain_key ELSE e.email_hash END AS key
  FROM dnc_entries AS e
  CROSS JOIN UNNEST([1, 2, 3, 4, 5]) AS i
  WHERE CASE i WHEN 1 THEN e.stored_email_key WHEN 2 THEN e.sql_email_key WHEN 3 THEN e.stored_domain_key
               WHEN 4 THEN e.sql_domain_key ELSE e.email_hash END IS NOT NULL
  UNION DISTINCT
  -- An unsubscribe or bounce delivered by webhook suppresses the address before any run copies it into ops_dnc:
  -- its key as the receiver stored it, and as SQL computes it from the raw address.
  SELECT 'email', CASE j WHEN 1 THEN v.stored_email_key ELSE v.email_key END
  FROM event_emails AS v
  CROSS JOIN UNNEST([1, 2]) AS j
  WHERE CASE j WHEN 1 THEN v.stored_email_key ELSE v.email_key END IS NOT NULL
)"""  # noqa: S608

DNC_ENTRIES_SQL = rf"""
CREATE OR REPLACE VIEW `{{ds}}.{DNC_ENTRIES_VIEW}` AS
WITH {DNC_KEY_CTES}
SELECT
  k.email, k.domain, k.source, k.reason, k.added_at, k.email_hash, k.instantly_blocklist_id,
  k.stored_email_key, k.sql_email_key, k.email_key,
  k.stored_domain_key, k.sql_domain_key, COALESCE(k.stored_domain_key, k.sql_domain_key) AS domain_key,
  CASE
    WHEN k.email IS NULL AND k.domain IS NULL AND k.email_hash IS NULL AND k.stored_email_key IS NULL
         AND k.stored_domain_key IS NULL
      THEN 'entry has no email, no domain and no hash: it blocks nobody'
    WHEN k.email IS NOT NULL AND k.email_key IS NULL THEN
      CASE WHEN REGEXP_CONTAINS(k.email, r'[^\x{{0000}}-\x{{007F}}]')
        THEN 'email value has non-ASCII characters: the next sync run keys it (punycode); fix it if still listed'
           WHEN NOT REGEXP_CONTAINS(k.email, r'@') THEN 'email value has no @: put a domain in the domain column'
           ELSE 'email value is not a usable address after normalization: fix it' END
    WHEN k.domain IS NOT NULL AND k.stored_domain_key IS NULL AND k.sql_domain_key IS NULL THEN
      CASE WHEN REGEXP_CONTAINS(k.domain, r'[^\x{{0000}}-\x{{007F}}]')
        THEN 'domain value has non-ASCII characters: the next sync run keys it (punycode); fix it if still listed'
           WHEN REGEXP_CONTAINS(k.domain, r'@[^@]*[.]')
             THEN 'domain value looks like an email address: put it in the email column'
           ELSE 'domain value is not a usable domain after normalization: fix it' END
  END AS problem
FROM dnc_entries AS k
"""  # noqa: S608

DNC_KEYS_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{DNC_KEYS_VIEW}` AS
WITH {DNC_KEY_CTES}
SELECT kind, key FROM dnc
"""  # noqa: S608

# Do-not-contact entries that block nobody, with the reason and the fix (validate_environment.py
# warns, the run summary counts them).
DNC_REJECTS_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{DNC_REJECTS_VIEW}` AS
SELECT email, domain, source, reason AS entry_reason, added_at, problem AS reason
FROM `{{ds}}.{DNC_ENTRIES_VIEW}`
WHERE problem IS NOT NULL
"""  # noqa: S608

# Per person (suppression key): the last attempt number and when the last attempt ended, ONE definition
# as CTE text (`history_by_key`), over `history_rows` (every history row with its suppression key, and
# the columns rule 5 reads). History rows are keyed as stored, so rows imported by hand in another case or
# form count for the same person. The row's stored email_key (written with the row, or by a run's back-fill:
# Store.backfill_keys) is exactly the key SQL computes from its email, so it is used instead of recomputing
# while its email_key_check still matches the rule, the email and the key (trusted_key_guard); any other row
# (inserted or edited by hand: its email, its key or its check; keyed under an older rule) is keyed from its
# email here, as before, and its stored key does not count.
def history_rest_columns(status: str = "status_final", completed: str = "completed_at") -> str:
    """When the person's last attempt that ran ended (`last_completed_at`: the score's "never contacted")
    and when an add was last given up (`last_given_up_at`; that lead was never sent). Rule 5 itself reads
    the rows (rest_predicate)."""
    given_up = f"{status} = '{GIVE_UP_OUTCOME}'"
    return (f"MAX(CASE WHEN {given_up} THEN NULL ELSE {completed} END) AS last_completed_at, "
            f"MAX(CASE WHEN {given_up} THEN {completed} END) AS last_given_up_at")


HISTORY_ROWS_CTES = address_key_ctes("history_rows", "`{ds}.ops_lead_history`", "email",
                                     "completed_at, attempt_num, status_final, policy, return_at",
                                     stored=("email_key", "email_key_check"))

HISTORY_KEY_CTES = f"""{HISTORY_ROWS_CTES},
history_by_key AS (
  SELECT email_key, {history_rest_columns()}, MAX(attempt_num) AS last_attempt
  FROM history_rows
  WHERE email_key IS NOT NULL
  GROUP BY email_key
)"""  # noqa: S608

HISTORY_KEYS_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{HISTORY_KEYS_VIEW}` AS
WITH {HISTORY_KEY_CTES}
SELECT email_key, last_completed_at, last_given_up_at, last_attempt FROM history_by_key
"""  # noqa: S608


def rest_predicate(outcomes: PolicyTable | None, as_of: str, *, key: str = "c.email_key", joins: str = "") -> str:
    """Rule 5, the one definition (coldsync.outcomes.row_returns_at in Python): no history row of the
    person `key` forbids a return at `as_of` (coldsync.outcomes.may_return_sql over `history_rows AS h`,
    with `joins`, e.g. the view's params, after it). An uncorrelated NOT IN: both engines plan it as one
    hash anti-join."""
    allowed = may_return_sql(outcomes, as_of=as_of, alias="h")
    return (f"{key} NOT IN (SELECT h.email_key FROM history_rows AS h{joins} "  # noqa: S608
            f"WHERE h.email_key IS NOT NULL AND NOT {allowed})")


# Why a source row's email cannot be used, or NULL when it can (rule 1): ONE expression, read by the
# candidates (rows where it is NULL) and by v_source_rejects (rows where it is not), so the two views
# can never disagree on what a valid email is. Checked on the trimmed value, before lower-casing.
EMAIL_PROBLEM = rf"""CASE
      WHEN t.trimmed_email IS NULL THEN 'email missing (NULL)'
      WHEN t.trimmed_email = '' THEN 'email empty or blank'
      WHEN LENGTH(t.trimmed_email) > {MAX_EMAIL_LENGTH} THEN 'email longer than {MAX_EMAIL_LENGTH} characters'
      WHEN REGEXP_CONTAINS(t.trimmed_email, r'[^\x{{0000}}-\x{{007F}}]')
        THEN 'email not ASCII (internationalized addresses are not sent)'
      WHEN NOT REGEXP_CONTAINS(t.trimmed_email, r"{EMAIL_PATTERN}") THEN 'email malformed'
    END"""

REJECT_DUPLICATE = ("duplicate: another source row for the same person (same address, or its +tag or "
                    "Gmail-dot variant) wins")
REJECT_REVENUE = "revenue unreadable (negative or not a number): taken as unknown, so SMB"


def _extras(extra: Sequence[str], prefix: str) -> str:
    """`, p.col1, p.col2` for the declared extra source columns (checked identifiers), or nothing."""
    return "".join(f", {prefix}.{name}" for name in extra)


def source_ctes(extra: Sequence[str] = ()) -> str:
    """Rules 1-2 over the source table: the CTEs the candidates and v_source_rejects start from. `extra`
    are the declared extra source columns (coldsync.routes), carried as the source holds them."""
    return f"""
trimmed AS (
  SELECT
    CAST(s.email AS STRING) AS raw_email,
    {sql_trim_ends("CAST(s.email AS STRING)")} AS trimmed_email,
    CAST(s.first_name AS STRING) AS first_name,
    CAST(s.last_name AS STRING) AS last_name,
    CAST(s.company_name AS STRING) AS company_name,
    CAST(s.domain AS STRING) AS domain,
    CAST(s.location AS STRING) AS location,
    CAST(s.country AS STRING) AS country,
    CAST(s.annual_revenue AS STRING) AS raw_revenue,
    SAFE_CAST(REPLACE(CAST(s.annual_revenue AS STRING), ',', '') AS NUMERIC(38, 9))
      AS annual_revenue{_extras(extra, "s")}
  FROM `{{source}}` AS s
),
checked AS (
  SELECT t.*, {EMAIL_PROBLEM} AS email_problem
  FROM trimmed AS t
),
normalized AS (
  -- Validate before lower-casing: engines lower-case some non-ASCII letters differently.
  SELECT LOWER(c.trimmed_email) AS email, c.raw_email, c.first_name, c.last_name, c.company_name, c.domain,
         c.location, c.country, c.raw_revenue, c.annual_revenue{_extras(extra, "c")}
  FROM checked AS c
  WHERE c.email_problem IS NULL
),
untagged AS (
  SELECT n.*, {sql_untagged("n.email")} AS untagged_email FROM normalized AS n
),
keyed AS (
  SELECT u.*, {sql_key_of_untagged("u.untagged_email")} AS email_key FROM untagged AS u
),
valid AS (
  SELECT
    n.email, n.email_key, n.raw_email, n.first_name, n.last_name, n.company_name, n.domain, n.location,
    n.country, n.raw_revenue,
    CASE WHEN n.annual_revenue >= 0 THEN n.annual_revenue END AS annual_revenue,
    (TRIM(n.raw_revenue) != '' AND (n.annual_revenue IS NULL OR n.annual_revenue < 0)) AS revenue_unreadable,
    ROW_NUMBER() OVER (
      PARTITION BY n.email_key
      ORDER BY n.annual_revenue DESC NULLS LAST, n.first_name, n.last_name, n.company_name,
               n.domain, n.location, n.country, n.email
    ) AS duplicate_rank{_extras(extra, "n")}
  FROM keyed AS n
),
source_rows AS (
  -- Every source row once: those rule 1 refuses (their email_problem; no key, no rank), then the valid ones.
  SELECT c.email_problem, CAST(NULL AS STRING) AS email, CAST(NULL AS STRING) AS email_key, c.raw_email,
         c.first_name, c.last_name, c.company_name, c.domain, c.location, c.country, c.raw_revenue,
         c.annual_revenue, CAST(NULL AS BOOL) AS revenue_unreadable, CAST(NULL AS INT64) AS duplicate_rank{
          _extras(extra, "c")}
  FROM checked AS c
  WHERE c.email_problem IS NOT NULL
  UNION ALL
  SELECT CAST(NULL AS STRING), v.email, v.email_key, v.raw_email, v.first_name, v.last_name, v.company_name,
         v.domain, v.location, v.country, v.raw_revenue, v.annual_revenue, v.revenue_unreadable,
         v.duplicate_rank{_extras(extra, "v")}
  FROM valid AS v
)"""  # noqa: S608


SOURCE_CTES = source_ctes()

# Why a row of `source_rows` (alias r) is not taken as given, or NULL: ONE expression, read by
# v_source_rejects over the live source and by the refresh's reject counts over its staged copy, so the
# two can never disagree. Every reason but the revenue one skips the row.
SOURCE_REJECT_REASON = f"""CASE
      WHEN r.email_problem IS NOT NULL THEN r.email_problem
      WHEN r.duplicate_rank > 1 THEN '{REJECT_DUPLICATE}'
      WHEN r.revenue_unreadable THEN '{REJECT_REVENUE}'
    END"""

CANDIDATE_COLUMNS: tuple[str, ...] = tuple(c.name for c in CANDIDATES.columns)
"""The columns of ops_candidates before the declared extra source columns."""


def candidate_rows_sql(from_sql: str, extra: Sequence[str] = ()) -> str:
    """Rule 2's winners as ops_candidates rows, ONE definition: the rows of `from_sql` (alias r; the CTE
    `valid`, or the refresh's staged `source_rows`) whose duplicate_rank is 1 (NULL for a refused
    address), with the domain key of rule 3 computed (sql_key_domain, as suppressed_by would)."""
    return f"""SELECT r.email, r.email_key, {sql_key_domain("r.email_key")} AS email_domain_key, r.first_name,
       r.last_name, r.company_name, r.domain, r.location, r.country, r.annual_revenue,
       r.revenue_unreadable{_extras(extra, "r")}
FROM {from_sql} AS r
WHERE r.duplicate_rank = 1"""  # noqa: S608


def _deduped_cte(extra: Sequence[str], stored: bool) -> str:
    """The CTE `deduped` (candidate_rows_sql's rows) and what it reads: the live source through
    source_ctes, or (`stored`) the ops_candidates table a refresh keeps equal to them."""
    if stored:
        columns = ", ".join(f"s.{name}" for name in (*CANDIDATE_COLUMNS, *extra))
        return f"deduped AS (SELECT {columns} FROM `{{ds}}.{CANDIDATES.name}` AS s)"  # noqa: S608
    return f"{source_ctes(extra)},\ndeduped AS (\n{candidate_rows_sql('valid', extra)}\n)"


# The columns of a candidate (the `candidates` CTE of candidate_ctes, before the declared extra source columns):
# what the ready read carries per lead (coldsync.store.read_ready_sql).
CANDIDATE_ROW_COLUMNS: tuple[str, ...] = (
    "email", "email_key", "first_name", "last_name", "company_name", "domain", "location", "country",
    "annual_revenue", "attempt_num", "last_completed_at", "last_given_up_at")


def candidate_ctes(extra: Sequence[str] = (), *, stored: bool = False, queue: bool = False,
                   keep_all: bool = False) -> str:
    """Rules 1-4 as CTE text ending in `candidates` (one row per ready-or-cooling person, with its
    suppression key, attempt_num and last_completed_at), after `history_rows` (rule 5 reads it). Rules 1-2
    read the live source (the views), or with `stored` the ops_candidates table (the sync, after
    Store.refresh_candidates): the same rows either way; with `queue`, only the rows of the ready queue
    (READY_QUEUE: copies of ops_candidates rows, the same columns). With `keep_all`, rules 3-4 flag instead
    of filtering: every person stays, with the columns `suppressed` and `managed` (the queue's build ranks
    them all). Only constants and checked identifiers are formatted in."""
    deduped = _queue_deduped_cte(extra) if queue else _deduped_cte(extra, stored)
    tests = [expr for _how, expr in suppressed_by("v.email_key", SALT_SQL, domain_key="v.email_domain_key")]
    managed_test = "EXISTS (SELECT 1 FROM managed AS st WHERE st.email_key = v.email_key)"
    if keep_all:
        flags = f",\n    ({' OR '.join(tests)}) AS suppressed,\n    {managed_test} AS managed"
        where = ""
    else:
        flags = ""
        where = f"\n  WHERE {' AND '.join(f'NOT {expr}' for expr in tests)}\n    AND NOT {managed_test}"
    return f"""{deduped},
{DNC_KEY_CTES},
{HISTORY_KEY_CTES},
{address_key_ctes("managed", "`{ds}.ops_inst_state`", "email", "status")},
candidates AS (
  SELECT
    v.email, v.email_key, v.first_name, v.last_name, v.company_name, v.domain, v.location, v.country,
    v.annual_revenue, COALESCE(h.last_attempt, 0) + 1 AS attempt_num,
    h.last_completed_at, h.last_given_up_at{_extras(extra, "v")}{flags}
  FROM deduped AS v
  LEFT JOIN history_by_key AS h ON h.email_key = v.email_key{where}
)"""  # noqa: S608


def routed_cte(routing: Routing, *, source: str, as_of: str, threshold: str, outcomes: PolicyTable | None,
               joins: str = "", components: bool = False, keep_all: bool = False) -> str:
    """Rules 5-7 as the CTE `routed`: the candidates of `source` allowed back at `as_of` by the outcome
    policy table `outcomes` (rest_predicate; `joins` bring `as_of` into its subquery), each with its
    `sequence_target` (first matching route, NULL when none) and `score` (higher first); with
    `components`, also the default score's parts (v_lead_scores); with `keep_all`, rule 5 flags (the
    column `resting`) instead of filtering. The routes' SQL is checked SQL (coldsync.routes.check_expression)."""
    parts = "".join(f",\n    {sql} AS {name}" for name, sql in SCORE_COMPONENTS) if components else ""
    rest = rest_predicate(outcomes, as_of, joins=joins)
    resting = f",\n    NOT ({rest}) AS resting" if keep_all else ""
    where = "" if keep_all else f"\n  WHERE {rest}"
    return f"""routed AS (
  SELECT c.*,
    {route_case_sql(routing, threshold)} AS sequence_target,
    {routing.score} AS score{parts}{resting}
  FROM {source} AS c{where}
)"""  # noqa: S608


# The priority inside a route (rule 7): higher score first, then email.
PRIORITY_ORDER = "r.score DESC NULLS LAST, r.email"

_PARAMS_CTE = f"""params AS (
  SELECT
    COALESCE((SELECT MAX(value_int) FROM `{{ds}}.config` WHERE key = 'smb_revenue_threshold'),
             {VIEW_DEFAULTS["smb_revenue_threshold"]}) AS smb_threshold,
    COALESCE((SELECT MAX(SAFE_CAST(value_string AS TIMESTAMP)) FROM `{{ds}}.config` WHERE key = 'as_of'),
             CURRENT_TIMESTAMP()) AS as_of
)"""  # noqa: S608


def candidates_view_sql(routing: Routing) -> str:
    """v_lead_candidates: rules 1-4 (the declared extra source columns included)."""
    return f"""
CREATE OR REPLACE VIEW `{{ds}}.{CANDIDATES_VIEW}` AS
WITH {candidate_ctes(routing.source_columns)}
SELECT * FROM candidates
"""  # noqa: S608


# The candidates of v_lead_candidates beside the config table's values, for the views.
_VIEW_SOURCE_CTE = f"""cp AS (
  SELECT c0.*, p.smb_threshold, p.as_of
  FROM `{{ds}}.{CANDIDATES_VIEW}` AS c0
  CROSS JOIN params AS p
)"""  # noqa: S608


def _view_routed(routing: Routing, outcomes: PolicyTable | None, components: bool = False) -> str:
    return routed_cte(routing, source="cp", as_of="p.as_of", joins=" CROSS JOIN params AS p", outcomes=outcomes,
                      threshold="c.smb_threshold", components=components)


def ready_view_sql(routing: Routing, outcomes: PolicyTable | None = None) -> str:
    """v_ready_for_instantly: rules 5-7 with the config table's values; `priority` is the rank inside
    the route (1 = added first)."""
    extra = _extras(routing.source_columns, "r")
    return f"""
CREATE OR REPLACE VIEW `{{ds}}.{VIEW_NAME}` AS
WITH {_PARAMS_CTE},
{_VIEW_SOURCE_CTE},
{HISTORY_ROWS_CTES},
{_view_routed(routing, outcomes)}
SELECT
  r.email, r.first_name, r.last_name, r.company_name, r.domain, r.location, r.country, r.annual_revenue,
  r.sequence_target, r.attempt_num, r.last_completed_at, r.score,
  ROW_NUMBER() OVER (PARTITION BY r.sequence_target ORDER BY {PRIORITY_ORDER}) AS priority{extra}
FROM routed AS r
WHERE r.sequence_target IS NOT NULL
"""  # noqa: S608


def lead_scores_view_sql(routing: Routing, outcomes: PolicyTable | None = None) -> str:
    """v_lead_scores: why each ready lead ranks where it does: the default score's parts as columns
    (never_contacted_points, revenue_points), the score in effect, the rank inside its route, and the
    declared extra source columns (a custom score's inputs). Unrouted leads are listed too
    (sequence_target NULL, no rank)."""
    return f"""
CREATE OR REPLACE VIEW `{{ds}}.{SCORES_VIEW}` AS
WITH {_PARAMS_CTE},
{_VIEW_SOURCE_CTE},
{HISTORY_ROWS_CTES},
{_view_routed(routing, outcomes, components=True)}
SELECT
  r.email, r.sequence_target, r.attempt_num, r.last_completed_at, r.annual_revenue,
  {", ".join(f"r.{name}" for name, _sql in SCORE_COMPONENTS)}, r.score,
  IF(r.sequence_target IS NULL, NULL,
     ROW_NUMBER() OVER (PARTITION BY r.sequence_target ORDER BY {PRIORITY_ORDER})) AS priority{
      _extras(routing.source_columns, "r")}
FROM routed AS r
"""  # noqa: S608


REJECTS_VIEW = "v_source_rejects"
SCORES_VIEW = "v_lead_scores"


def rejects_view_sql() -> str:
    """v_source_rejects: every source row the sync does not take as given, with the reason
    (SOURCE_REJECT_REASON): the rows rules 1-2 skip (email unusable, or a duplicate of a better row) and the
    rows kept with their revenue taken as unknown (`skipped` FALSE). Same CTEs as the candidates. The run
    summary counts the same reasons (STAGED_REJECT_COUNTS_SQL over the refresh's staged rows)."""
    return f"""
CREATE OR REPLACE VIEW `{{ds}}.{REJECTS_VIEW}` AS
WITH {SOURCE_CTES},
rejected AS (SELECT r.*, {SOURCE_REJECT_REASON} AS reason FROM source_rows AS r)
SELECT x.raw_email AS email, x.first_name, x.last_name, x.company_name, x.domain, x.location, x.country,
       x.raw_revenue AS annual_revenue, x.reason, x.reason != '{REJECT_REVENUE}' AS skipped
FROM rejected AS x
WHERE x.reason IS NOT NULL
"""  # noqa: S608


# --- analytics views (issue 17): aggregates only, no email; one definition each, both engines ----------------
# Shape, for BI tools and the HTML report that charts them generically: a DATE column `week_start` (weeks start
# on Monday, UTC) or `day` (UTC), then the group columns (STRING), then numeric measures. Rates are FLOAT64
# fractions (0.02 = 2%), NULL when their denominator is 0 (SAFE_DIVIDE).
FUNNEL_VIEW = "v_funnel_weekly"
INVENTORY_VIEW = "v_inventory_daily"
OUTCOMES_VIEW = "v_drain_outcomes"
SUPPLY_VIEW = "v_supply"
DELIVERABILITY_VIEW = "v_deliverability"
DNC_GROWTH_VIEW = "v_dnc_growth"

BOUNCE_WARN_RATE = 0.02
"""Bounce (and unsubscribe) rate line the deliverability view flags as a warning: 2% is the bounce rate
mailbox providers and sending tools commonly name as the most a healthy list shows."""
BOUNCE_LIMIT_RATE = 0.05
"""Second line: the default of MAX_BOUNCE_RATE (5%), past which the top-up's guard stops feeding a campaign."""
SUPPLY_WEEKS = 4
"""Coming weeks v_supply counts returning leads for (returning_week_1 .. returning_week_4)."""


def _week(ts: str) -> str:
    """The Monday (UTC) starting the week of the TIMESTAMP expression `ts`, as a DATE: whole weeks counted from
    Monday 1970-01-05 (DATE_TRUNC(..., WEEK(MONDAY)) is not used: the BigQuery emulator truncates it to Sunday)."""
    return (f"CAST(DATE_ADD(DATE '1970-01-05', INTERVAL DIV(DATE_DIFF(DATE({ts}), DATE '1970-01-05', DAY), 7) * 7 DAY)"
            " AS DATE)")


# The attempts the funnel counts: one row per attempt ADDED (state rows still active, and history rows that
# say when their add was recorded: a lead holding, moving or draining has both and counts once, by its
# history row) and one per attempt FINISHED (history rows but given-up adds, which were never sent).
# `interested`: the policy the sync gave the ending is in_sales (interest 1-4 or a positive custom label);
# rows written before the policy columns read the interest status alone.
_ATTEMPT_EVENTS_CTE = f"""added AS (
  SELECT s.added_at AS at, s.campaign_id, s.sequence_target AS route, COALESCE(s.arm, s.sequence_target) AS arm
  FROM `{{ds}}.ops_inst_state` AS s
  WHERE s.status = 'active' AND s.added_at IS NOT NULL
  UNION ALL
  SELECT h.added_at, h.campaign_id, h.sequence_name, COALESCE(h.arm, h.sequence_name)
  FROM `{{ds}}.ops_lead_history` AS h
  WHERE h.added_at IS NOT NULL
),
finished AS (
  SELECT h.completed_at AS at, h.campaign_id, h.sequence_name AS route, COALESCE(h.arm, h.sequence_name) AS arm,
         h.status_final,
         IF(h.status_final = 'replied', 1, 0) AS replied,
         IF(COALESCE(h.policy = 'in_sales', h.interest_status BETWEEN 1 AND 4), 1, 0) AS interested,
         IF(h.status_final = 'bounced', 1, 0) AS bounced,
         IF(h.status_final = 'unsubscribed', 1, 0) AS unsubscribed
  FROM `{{ds}}.ops_lead_history` AS h
  WHERE h.status_final != '{GIVE_UP_OUTCOME}'
)"""  # noqa: S608

FUNNEL_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{FUNNEL_VIEW}` AS
WITH {_ATTEMPT_EVENTS_CTE},
events AS (
  SELECT {_week("a.at")} AS week_start, a.route, a.arm, 1 AS added, 0 AS finished, 0 AS replied, 0 AS interested,
         0 AS bounced, 0 AS unsubscribed
  FROM added AS a
  UNION ALL
  SELECT {_week("f.at")}, f.route, f.arm, 0, 1, f.replied, f.interested, f.bounced, f.unsubscribed
  FROM finished AS f
)
SELECT
  e.week_start, COALESCE(e.route, '(none)') AS route, COALESCE(e.arm, '(none)') AS arm,
  SUM(e.added) AS added, SUM(e.finished) AS finished, SUM(e.replied) AS replied,
  SUM(e.interested) AS interested, SUM(e.bounced) AS bounced, SUM(e.unsubscribed) AS unsubscribed,
  SAFE_DIVIDE(SUM(e.replied), SUM(e.finished)) AS reply_rate,
  SAFE_DIVIDE(SUM(e.interested), SUM(e.finished)) AS interested_rate,
  SAFE_DIVIDE(SUM(e.bounced), SUM(e.finished)) AS bounce_rate,
  SAFE_DIVIDE(SUM(e.unsubscribed), SUM(e.finished)) AS unsubscribe_rate
FROM events AS e
GROUP BY e.week_start, COALESCE(e.route, '(none)'), COALESCE(e.arm, '(none)')
"""  # noqa: S608

# Per UTC day per campaign: what Instantly said it held (ops_campaign_daily.leads, read hourly) beside what the
# warehouse added and drained; `workspace_room`: the cap (config row inventory_cap, else the default) less the
# leads every campaign held that day (NULL when a campaign's count is missing that day).
INVENTORY_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{INVENTORY_VIEW}` AS
WITH {_ATTEMPT_EVENTS_CTE},
cap AS (
  SELECT COALESCE((SELECT MAX(value_int) FROM `{{ds}}.config` WHERE key = 'inventory_cap'), 24000) AS cap
),
events AS (
  SELECT d.day, d.campaign_id, d.route, d.arm, d.leads, 0 AS added, 0 AS drained
  FROM `{{ds}}.ops_campaign_daily` AS d
  UNION ALL
  SELECT DATE(a.at), a.campaign_id, a.route, a.arm, NULL, 1, 0 FROM added AS a
  UNION ALL
  SELECT DATE(f.at), f.campaign_id, f.route, f.arm, NULL, 0, 1 FROM finished AS f
),
per_day AS (
  SELECT e.day, e.campaign_id, MAX(e.route) AS route, MAX(e.arm) AS arm, MAX(e.leads) AS leads,
         SUM(e.added) AS added, SUM(e.drained) AS drained
  FROM events AS e
  GROUP BY e.day, e.campaign_id
)
SELECT
  p.day, p.campaign_id, COALESCE(p.route, '(none)') AS route, COALESCE(p.arm, '(none)') AS arm,
  p.leads, p.added, p.drained, c.cap,
  IF(COUNT(p.leads) OVER (PARTITION BY p.day) = COUNT(*) OVER (PARTITION BY p.day),
     c.cap - SUM(p.leads) OVER (PARTITION BY p.day), NULL) AS workspace_room
FROM per_day AS p
CROSS JOIN cap AS c
"""  # noqa: S608

OUTCOMES_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{OUTCOMES_VIEW}` AS
SELECT {_week("h.completed_at")} AS week_start, h.status_final AS outcome, COALESCE(h.policy, '(before v4)') AS policy,
       COUNT(*) AS leads
FROM `{{ds}}.ops_lead_history` AS h
GROUP BY 1, 2, 3
"""  # noqa: S608


def supply_view_sql() -> str:
    """v_supply: per route, the ready leads now (v_ready_for_instantly), the adds per day over the 7 days up to
    `as_of` (the config row, else now), (as_of - 7 days, as_of] (an add at the pinned clock itself counts), the
    days of supply left (ready / adds per day; NULL with no adds), and per coming week k (1..SUPPLY_WEEKS) the
    persons whose last attempt (of that route) lets them return in [as_of + 7(k-1) days, as_of + 7k days) by
    its return_at (NULL return_at: never)."""
    weeks = "".join(
        f",\n  COALESCE(MAX(IF(x.kind = 'returning' AND x.k = {k}, x.n, NULL)), 0) AS returning_week_{k}"
        for k in range(1, SUPPLY_WEEKS + 1))
    return f"""
CREATE OR REPLACE VIEW `{{ds}}.{SUPPLY_VIEW}` AS
WITH {_PARAMS_CTE},
{_ATTEMPT_EVENTS_CTE},
last_attempt AS (
  SELECT h.sequence_name AS route, h.return_at,
         ROW_NUMBER() OVER (PARTITION BY LOWER(h.email) ORDER BY h.attempt_num DESC, h.completed_at DESC) AS n
  FROM `{{ds}}.ops_lead_history` AS h
),
figures AS (
  SELECT 'ready' AS kind, r.sequence_target AS route, 0 AS k, COUNT(*) AS n
  FROM `{{ds}}.{VIEW_NAME}` AS r
  GROUP BY r.sequence_target
  UNION ALL
  SELECT 'added', a.route, 0, COUNT(*)
  FROM added AS a CROSS JOIN params AS p
  WHERE a.at > TIMESTAMP_SUB(p.as_of, INTERVAL 7 DAY) AND a.at <= p.as_of
  GROUP BY a.route
  UNION ALL
  SELECT 'returning', l.route, CAST(FLOOR(TIMESTAMP_DIFF(l.return_at, p.as_of, SECOND) / 604800) AS INT64) + 1, COUNT(*)
  FROM last_attempt AS l CROSS JOIN params AS p
  WHERE l.n = 1 AND l.return_at >= p.as_of AND l.return_at < TIMESTAMP_ADD(p.as_of, INTERVAL {7 * SUPPLY_WEEKS} DAY)
  GROUP BY 2, 3
)
SELECT
  COALESCE(x.route, '(none)') AS route,
  COALESCE(MAX(IF(x.kind = 'ready', x.n, NULL)), 0) AS ready,
  COALESCE(MAX(IF(x.kind = 'added', x.n, NULL)), 0) / 7 AS adds_per_day,
  SAFE_DIVIDE(COALESCE(MAX(IF(x.kind = 'ready', x.n, NULL)), 0),
              COALESCE(MAX(IF(x.kind = 'added', x.n, NULL)), 0) / 7) AS days_of_supply{weeks}
FROM figures AS x
GROUP BY COALESCE(x.route, '(none)')
"""  # noqa: S608


DELIVERABILITY_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{DELIVERABILITY_VIEW}` AS
WITH weekly AS (
  SELECT {_week("TIMESTAMP(d.day)")} AS week_start, d.campaign_id, MAX(d.route) AS route, MAX(d.arm) AS arm,
         SUM(d.emails_sent) AS emails_sent, SUM(d.bounced) AS bounced, SUM(d.unsubscribed) AS unsubscribed
  FROM `{{ds}}.ops_campaign_daily` AS d
  GROUP BY 1, 2
),
rated AS (
  SELECT w.*, SAFE_DIVIDE(w.bounced, w.emails_sent) AS bounce_rate,
         SAFE_DIVIDE(w.unsubscribed, w.emails_sent) AS unsubscribe_rate
  FROM weekly AS w
)
SELECT
  r.week_start, r.campaign_id, COALESCE(r.route, '(none)') AS route, COALESCE(r.arm, '(none)') AS arm,
  r.emails_sent, r.bounced, r.unsubscribed, r.bounce_rate, r.unsubscribe_rate,
  CASE WHEN r.bounce_rate IS NULL THEN NULL WHEN r.bounce_rate > {BOUNCE_WARN_RATE} THEN 1 ELSE 0 END
    AS bounce_over_2pct,
  CASE WHEN r.bounce_rate IS NULL THEN NULL WHEN r.bounce_rate > {BOUNCE_LIMIT_RATE} THEN 1 ELSE 0 END
    AS bounce_over_5pct,
  CASE WHEN r.unsubscribe_rate IS NULL THEN NULL WHEN r.unsubscribe_rate > {BOUNCE_WARN_RATE} THEN 1 ELSE 0 END
    AS unsubscribe_over_2pct,
  CASE WHEN r.unsubscribe_rate IS NULL THEN NULL WHEN r.unsubscribe_rate > {BOUNCE_LIMIT_RATE} THEN 1 ELSE 0 END
    AS unsubscribe_over_5pct
FROM rated AS r
"""  # noqa: S608

DNC_GROWTH_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{DNC_GROWTH_VIEW}` AS
WITH weekly AS (
  SELECT {_week("d.added_at")} AS week_start, d.source, COUNT(*) AS added
  FROM `{{ds}}.ops_dnc` AS d
  GROUP BY 1, 2
)
SELECT w.week_start, w.source, w.added,
       SUM(w.added) OVER (PARTITION BY w.source ORDER BY w.week_start
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cumulative
FROM weekly AS w
"""  # noqa: S608

ANALYTICS_VIEWS = (FUNNEL_VIEW, INVENTORY_VIEW, OUTCOMES_VIEW, SUPPLY_VIEW, DELIVERABILITY_VIEW, DNC_GROWTH_VIEW)


# --- the candidates table (ops_candidates) and its refresh -------------------------------------------
# One refresh reads the source ONCE: the staging statement materializes source_rows (rules 1-2: every
# source row with its email_problem, duplicate_rank and revenue_unreadable); the MERGE into ops_candidates
# and the reject counts read that copy; then it is dropped. coldsync.store.Store.refresh_candidates runs
# them, and only when the source's change signal or candidates_fingerprint moved.

CANDIDATES_STAGING = "ops_candidates_staging"
"""The refresh's copy of source_rows: made and dropped by each refresh (the run lock keeps it one run's)."""
CANDIDATES_REFRESH_KEY = "candidates_refresh"
"""Config row (value_string, JSON): what ops_candidates was last refreshed from: {"fingerprint": ...,
"signal": ..., "rejects": {reason: rows}} (Store.refresh_candidates writes it after the MERGE)."""


def candidates_stage_sql(extra: Sequence[str] = ()) -> str:
    """The refresh's one read of the source: source_rows (with the declared extra source columns) into
    CANDIDATES_STAGING."""
    return f"""
CREATE OR REPLACE TABLE `{{ds}}.{CANDIDATES_STAGING}` AS
WITH {source_ctes(extra)}
SELECT * FROM source_rows
"""  # noqa: S608


def candidates_merge_sql(extra: Sequence[str] = ()) -> str:
    """ops_candidates made equal to candidate_rows_sql over the staged rows, touching only what differs:
    a person whose row changed is updated, a new one inserted, one gone from the source deleted. Its
    count of changed rows is the work done (0 on a source whose changes do not reach the candidates)."""
    columns = (*CANDIDATE_COLUMNS, *extra)
    differs = "\n     OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in columns if c != "email_key")
    return f"""
MERGE `{{ds}}.{CANDIDATES.name}` AS t
USING ({candidate_rows_sql(f"`{{ds}}.{CANDIDATES_STAGING}`", extra)}) AS s
ON t.email_key = s.email_key
WHEN MATCHED AND ({differs}) THEN
  UPDATE SET {", ".join(f"{c} = s.{c}" for c in columns if c != "email_key")}
WHEN NOT MATCHED THEN
  INSERT ({", ".join(columns)}) VALUES ({", ".join(f"s.{c}" for c in columns)})
WHEN NOT MATCHED BY SOURCE THEN DELETE
"""  # noqa: S608


def candidates_rebuild_sql(extra: Sequence[str] = ()) -> str:
    """ops_candidates made anew from the staged rows: when its columns are not CANDIDATE_COLUMNS plus the
    declared extra source columns (another routing's, or a table made by an older version). The extra
    columns take the source's types."""
    return f"""
CREATE OR REPLACE TABLE `{{ds}}.{CANDIDATES.name}` AS
{candidate_rows_sql(f"`{{ds}}.{CANDIDATES_STAGING}`", extra)}
"""


STAGED_REJECT_COUNTS_SQL = f"""
SELECT x.reason, COUNT(*) AS n
FROM (SELECT {SOURCE_REJECT_REASON} AS reason FROM `{{ds}}.{CANDIDATES_STAGING}` AS r) AS x
WHERE x.reason IS NOT NULL
GROUP BY x.reason
"""  # noqa: S608
"""The staged rows not taken as given, per reason: the counts of v_source_rejects (same expression)."""

DROP_CANDIDATES_STAGING_SQL = f"DROP TABLE IF EXISTS `{{ds}}.{CANDIDATES_STAGING}`"


def candidates_fingerprint(extra: Sequence[str], source_table: str) -> str:
    """Changes whenever what ops_candidates holds would change for the same source rows: the rules' text
    (source_ctes, the MERGE, the reject counts), the declared extra source columns, or SOURCE_TABLE (as the
    warehouse resolves it)."""
    text = "\n".join((candidates_stage_sql(extra), candidates_merge_sql(extra), STAGED_REJECT_COUNTS_SQL,
                      ",".join(extra), source_table))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def views(routing: Routing, outcomes: PolicyTable | None = None) -> tuple[tuple[str, str], ...]:
    """Every view, in creation order (each reads only the ones before it), for this routing and outcome
    policy table (None: the defaults)."""
    return (
        (DNC_ENTRIES_VIEW, DNC_ENTRIES_SQL), (DNC_KEYS_VIEW, DNC_KEYS_SQL), (DNC_REJECTS_VIEW, DNC_REJECTS_SQL),
        (HISTORY_KEYS_VIEW, HISTORY_KEYS_SQL), (CANDIDATES_VIEW, candidates_view_sql(routing)),
        (VIEW_NAME, ready_view_sql(routing, outcomes)), (SCORES_VIEW, lead_scores_view_sql(routing, outcomes)),
        (REJECTS_VIEW, rejects_view_sql()),
        (FUNNEL_VIEW, FUNNEL_SQL), (INVENTORY_VIEW, INVENTORY_SQL), (OUTCOMES_VIEW, OUTCOMES_SQL),
        (SUPPLY_VIEW, supply_view_sql()), (DELIVERABILITY_VIEW, DELIVERABILITY_SQL), (DNC_GROWTH_VIEW, DNC_GROWTH_SQL),
    )


def views_fingerprint(routing: Routing, outcomes: PolicyTable | None = None) -> str:
    """Changes whenever a view's SQL changes (a new version of coldsync, another routing, other policies)."""
    text = "\n".join(sql for _name, sql in views(routing, outcomes))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


VIEWS_FINGERPRINT_KEY = "views_fingerprint"
"""Config row: the fingerprint of the views as last created (setup.py, or a sync that rebuilt them)."""
SOURCE_BINDING_KEY = "views_source_table"
"""Config row: the source table the views were last built on, as the warehouse resolves SOURCE_TABLE."""


def views_built_rows(routing: Routing, source_table: str, outcomes: PolicyTable | None = None) -> dict[str, str]:
    """The config rows that say what the views were built from (written with SET_VIEWS_FINGERPRINT_SQL
    by setup.py and by a sync that rebuilds them): their fingerprint and their source table."""
    return {VIEWS_FINGERPRINT_KEY: views_fingerprint(routing, outcomes), SOURCE_BINDING_KEY: source_table}


def source_binding_problem(bound: str | None, source_table: str, *, engine: str) -> str | None:
    """Why the views' source table is not SOURCE_TABLE (None when it is, or when no binding is recorded:
    views built by an older version, rebuilt and recorded by the next setup.py or live run). One check, for
    the sync (which refuses to run, exit 2) and validate_environment.py (a FAIL row). DuckDB names are
    compared without case (it resolves them so); BigQuery table names are case-sensitive."""
    if bound is None or bound == source_table or (engine != "bigquery" and bound.lower() == source_table.lower()):
        return None
    return (f"the views read the source table {bound} but SOURCE_TABLE is {source_table}: run `python setup.py` "
            f"to rebind the views to {source_table} (or set SOURCE_TABLE back to {bound})")

# The views' fingerprint, once they are (re)built for the routing in effect.
SET_VIEWS_FINGERPRINT_SQL = """
MERGE `{ds}.config` AS t
USING (SELECT @key AS key, @value AS value_string) AS s
ON t.key = s.key
WHEN MATCHED AND (t.value_string IS NULL OR t.value_string != s.value_string) THEN
  UPDATE SET value_string = s.value_string, updated_at = @now
WHEN NOT MATCHED THEN INSERT (key, value_string, updated_at) VALUES (s.key, s.value_string, @now)
"""


# --- the ready queue (ops_ready_queue) ------------------------------------------------------------------
# Issue 16 target 2: the run's ready read looks at a few thousand rows per route instead of every candidate.
# The queue holds, per route, the first READY_QUEUE size candidates by PRIORITY_ORDER, whatever rules 3-5 say
# of them at its build (suppressed, managed and resting persons are ranked too: their turn may come without
# any change to their rank), plus one more row per route: the boundary, the best candidate left out. A
# person's route and score depend only on their candidates row, their history and the rules (never on the
# clock: coldsync.routes refuses volatile functions), so a person outside the queue keeps their rank until the
# candidates are refreshed, the rules change, or their history changes. The read applies every rule again to
# the queue's rows (candidate_ctes(queue=True), the same text): the queue only narrows which rows are looked
# at, so nobody is ever chosen that the full read would refuse. Store.read_ready_queued rebuilds it when a rank
# outside it may have moved, and checks each read against the boundary (the chosen leads must all rank before
# it, and fill the room), rebuilding, then falling back to the full read, when they do not.

READY_QUEUE = "ops_ready_queue"
"""Derived, never edited; dropping it is harmless (the next run with room rebuilds it)."""
READY_QUEUE_KEY = "ready_queue"
"""Config row (value_string, JSON): what the ready queue was built from and the guard figures at its build
(Store.read_ready_queued writes it after each build)."""
READY_QUEUE_COLUMNS: tuple[str, ...] = (
    "queue_route", "queue_score", "queue_pos", "queue_boundary", "queue_outside_ready", "queue_outside_unscored")
"""The queue's own columns after the copied ops_candidates columns (a declared extra source column may not
take one of these names: coldsync.routes.RESERVED_COLUMNS)."""


def _queue_deduped_cte(extra: Sequence[str]) -> str:
    """The CTE `deduped` over the ready queue's rows (the boundary rows left out)."""
    columns = ", ".join(f"s.{name}" for name in (*CANDIDATE_COLUMNS, *extra))
    return f"deduped AS (SELECT {columns} FROM `{{ds}}.{READY_QUEUE}` AS s WHERE NOT s.queue_boundary)"  # noqa: S608


def ready_queue_build_sql(routing: Routing, outcomes: PolicyTable | None, size: int) -> str:
    """The ready queue made anew from ops_candidates in one statement: per route (NULL: unrouted), the first
    `size` candidates by PRIORITY_ORDER (every one: rules 3-5 flag, candidate_ctes(keep_all=True)), and the
    boundary row (queue_pos `size` + 1; positions from 1, in the route's order: the offset of the bounded
    top-n is read for its order only, its base differs between engines). The boundary row carries what lies
    outside the queue at the build: its ready leads (neither suppressed, managed nor resting at @as_of) and how
    many of them have no score, for the run's counts. One pass with a bounded top-n per route, as
    read_ready_sql. Raises ValueError unless `size` is an int >= 1."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"ready_queue_build_sql: size must be an int >= 1, not {size!r}")
    extra = routing.source_columns
    columns = ", ".join(f"d.{name}" for name in (*CANDIDATE_COLUMNS, *extra))
    return f"""
CREATE OR REPLACE TABLE `{{ds}}.{READY_QUEUE}` AS
WITH {candidate_ctes(extra, stored=True, keep_all=True)},
{routed_cte(routing, source="candidates", as_of="@as_of", threshold="@smb_threshold", outcomes=outcomes,
            keep_all=True)},
tops AS (
  SELECT r.sequence_target, COUNTIF(r.ready) AS ready_all, COUNTIF(r.ready AND r.score IS NULL) AS unscored_all,
         ARRAY_AGG(STRUCT(r.email_key AS email_key, r.score AS score, r.ready AS ready)
                   ORDER BY {PRIORITY_ORDER} LIMIT {size + 1}) AS top
  FROM (SELECT x.*, NOT (x.suppressed OR x.managed OR x.resting) AS ready FROM routed AS x) AS r
  GROUP BY r.sequence_target
),
unnested AS (
  SELECT k.sequence_target, k.ready_all, k.unscored_all, t.email_key, t.score, t.ready,
         ROW_NUMBER() OVER (PARTITION BY k.sequence_target ORDER BY pos) AS place
  FROM tops AS k
  LEFT JOIN UNNEST(k.top) AS t WITH OFFSET AS pos
),
picked AS (
  SELECT u.*,
         SUM(IF(u.place <= {size} AND u.ready, 1, 0)) OVER (PARTITION BY u.sequence_target) AS inside_ready,
         SUM(IF(u.place <= {size} AND u.ready AND u.score IS NULL, 1, 0))
           OVER (PARTITION BY u.sequence_target) AS inside_unscored
  FROM unnested AS u
)
SELECT {columns}, p.sequence_target AS queue_route, p.score AS queue_score, p.place AS queue_pos,
       p.place = {size + 1} AS queue_boundary, p.ready_all - p.inside_ready AS queue_outside_ready,
       p.unscored_all - p.inside_unscored AS queue_outside_unscored
FROM picked AS p
JOIN `{{ds}}.{CANDIDATES.name}` AS d ON d.email_key = p.email_key
"""  # noqa: S608


def _guard_text(value: str) -> str:
    """A STRING column as unambiguous text: its length, a colon and itself, or N when NULL (a row's text is one
    parse: no value can pass for a separator or for another column)."""
    return f"COALESCE(CONCAT(CAST(LENGTH({value}) AS STRING), ':', {value}), 'N')"


def _guard_number(value: str) -> str:
    return f"COALESCE(CAST({value} AS STRING), 'N')"


# A history row as the outside guard reads it: the person (suppression key, as history_rows computes it) and every
# history column a person's route and score read (candidate_ctes: attempt_num, and through history_rest_columns
# completed_at and status_final: last_completed_at skips given-up adds, last_given_up_at keeps them). Rule 5's own
# columns (policy, return_at) are not in it: they decide whether a person rests, never their rank, and rule 5 is
# applied again to the queue's rows at each read.
_GUARD_ROW_TEXT = ("CONCAT(" + ", ',', ".join((
    _guard_text("h.email_key"), _guard_number("h.attempt_num"), _guard_number("UNIX_MICROS(h.completed_at)"),
    _guard_text("h.status_final"))) + ")")


def ready_queue_guard_sql() -> str:
    """What may have moved a rank outside the queue since its build, in one statement, one row per boundary (one
    row with NULL boundary columns when no route was cut): `queue_rows` (the queue's rows), `history_checksum`
    (SHA-256 over the sorted texts of the history rows of persons not in the queue, the boundary's included:
    each row's person and every column a route or score reads, _GUARD_ROW_TEXT; NULL when there are none), so
    any change to those rows that can move a rank changes it: a row added, deleted, or edited in place, its
    address moved from one person to another included; and each cut route's boundary (`queue_route`,
    `queue_score`, `queue_email`) with its counts outside. The checksum is compared only with one the same engine
    wrote (a timestamp's text is the engine's own)."""
    return f"""
WITH {HISTORY_ROWS_CTES},
outside AS (
  SELECT {_GUARD_ROW_TEXT} AS line FROM history_rows AS h
  WHERE h.email_key IS NOT NULL
    AND h.email_key NOT IN (SELECT q.email_key FROM `{{ds}}.{READY_QUEUE}` AS q WHERE NOT q.queue_boundary)
),
g AS (
  SELECT
    (SELECT COUNT(*) FROM `{{ds}}.{READY_QUEUE}`) AS queue_rows,
    (SELECT TO_HEX(SHA256(STRING_AGG(o.line, '\\n' ORDER BY o.line))) FROM outside AS o) AS history_checksum
)
SELECT g.queue_rows, g.history_checksum,
       b.queue_route,
       b.queue_score, b.email AS queue_email, b.queue_outside_ready, b.queue_outside_unscored
FROM g
LEFT JOIN (SELECT x.queue_route, x.queue_score, x.email, x.queue_outside_ready, x.queue_outside_unscored
           FROM `{{ds}}.{READY_QUEUE}` AS x WHERE x.queue_boundary) AS b ON TRUE
"""  # noqa: S608
