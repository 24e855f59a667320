"""The warehouse schema: every table as one spec, and the eligibility view as one SQL definition.

Both engines build from these: BigQuery through its API (with partitioning and clustering), DuckDB
through DDL generated from the same spec. `SCHEMA_VERSION` is recorded in the config table.
"""

from __future__ import annotations

from dataclasses import dataclass

from coldsync.rules import EMAIL_PATTERN, MAX_EMAIL_LENGTH

SCHEMA_VERSION = 1


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
        _c("sequence_target", "STRING", "segment: SMB or Midsize"),
        _c("status", "STRING", "pending (intent recorded, add not confirmed), active, draining", required=True),
        _c("instantly_lead_id", "STRING", "Instantly lead UUID once known"),
        _c("attempt_num", "INT64", "1 for the first time this email is sent, then 2, ..."),
        _c("outcome", "STRING", "while draining: the status_final already written to history"),
        _c("added_at", "TIMESTAMP", "when the intent to add was recorded"),
        _c("updated_at", "TIMESTAMP", "last change of this row"),
        _c("run_id", "STRING", "run that last changed this row"),
    ),
    "One row per lead currently managed in Instantly. Deleted once the lead is gone from Instantly.",
    cluster_by=("email",),
)

LEAD_HISTORY = TableSpec(
    "ops_lead_history",
    (
        _c("email", "STRING", "normalized email", required=True),
        _c("campaign_id", "STRING", "campaign of this attempt", required=True),
        _c("sequence_name", "STRING", "segment of this attempt: SMB or Midsize"),
        _c("status_final", "STRING", "completed, replied, bounced, unsubscribed, skipped, stale, invalid",
           required=True),
        _c("completed_at", "TIMESTAMP", "when the attempt ended (cooldown counts from here)", required=True),
        _c("attempt_num", "INT64", "attempt number; (email, campaign_id, attempt_num) is the key", required=True),
        _c("instantly_lead_id", "STRING", "Instantly lead UUID"),
        _c("reason", "STRING", "why the classifier ended it (no PII)"),
        _c("recorded_at", "TIMESTAMP", "when this row was written"),
        _c("run_id", "STRING", "run that wrote it"),
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
        _c("email", "STRING", "normalized email entry (or NULL for a domain entry)"),
        _c("domain", "STRING", "normalized domain entry (or NULL for an email entry)"),
        _c("source", "STRING", "instantly_unsubscribe, instantly_bounce, manual, import, ...", required=True),
        _c("reason", "STRING", "why", required=True),
        _c("added_at", "TIMESTAMP", "when", required=True),
        _c("run_id", "STRING", "run that added it, if any"),
    ),
    "Do-not-contact list, permanent: an email entry blocks that address, a domain entry the whole domain.",
    cluster_by=("email", "domain"),
)

RUN_LOG = TableSpec(
    "ops_run_log",
    (
        _c("run_id", "STRING", "unique id of the run", required=True),
        _c("started_at", "TIMESTAMP", "start", required=True),
        _c("finished_at", "TIMESTAMP", "end"),
        _c("mode", "STRING", "live or dry_run"),
        _c("outcome", "STRING", "success, failed, config_error, lock_held"),
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
        _c("run_id", "STRING", "holder", required=True),
        _c("acquired_at", "TIMESTAMP", "when taken", required=True),
        _c("expires_at", "TIMESTAMP", "when a killed holder's lock may be taken over", required=True),
    ),
    "One writer at a time: the row of the run that holds the sync lock.",
)

TABLES: tuple[TableSpec, ...] = (INST_STATE, LEAD_HISTORY, DEAD_LETTERS, CONFIG, DNC, RUN_LOG, RUN_LOCK)

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
VIEW_DEFAULTS = {"smb_revenue_threshold": 1_000_000, "cooldown_days": 90}

# Characters the view trims around an email besides ASCII whitespace: NBSP, zero-width space, BOM.
_TRIM = r"[\s\x{00A0}\x{200B}\x{FEFF}]"

# The one definition of eligibility. Rules, in order:
#  1. email trimmed (incl. NBSP/zero-width), kept only if it matches EMAIL_PATTERN (checked before
#     lower-casing, as coldsync.rules.normalize_email does), then lower-cased;
#  2. one row per email: the highest revenue, then the smallest (first, last, company, domain,
#     location, country) wins, so a repeated source email always yields the same row;
#  3. not on the DNC list by email, nor by exact domain (entries compared trimmed and lower-cased,
#     a domain entry also without a leading "@" or a trailing dot);
#  4. not in ops_inst_state (pending, active or draining, any campaign);
#  5. not in cooldown: the last history row ended at least cooldown_days before `as_of`
#     (exactly cooldown_days ago is eligible again);
#  6. sequence_target: SMB when revenue < threshold or revenue unknown (NULL, negative, not a number;
#     thousands commas in text revenue are ignored),
#     else Midsize;
#  7. priority: leads never contacted first, then higher revenue first, then email.
# `as_of` is CURRENT_TIMESTAMP() unless the config row `as_of` holds a timestamp (simulations only).
# Rules 1-4 live in v_lead_candidates; rules 5-7 are each one expression below, used by the view with
# the config table's values and by the sync's own read with the run's settings (which may override
# them for one run: COOLDOWN_DAYS, SMB_REVENUE_THRESHOLD) and the run's clock.
assert '"' not in EMAIL_PATTERN, "the view embeds EMAIL_PATTERN in a double-quoted raw string"

CANDIDATES_VIEW = "v_lead_candidates"


def cooldown_predicate(as_of: str, cooldown_days: str) -> str:
    """Rule 5, the one definition: the last sequence ended at least `cooldown_days` before `as_of`."""
    return (f"(c.last_completed_at IS NULL OR "
            f"c.last_completed_at <= TIMESTAMP_SUB({as_of}, INTERVAL {cooldown_days} DAY))")


def segment_expression(threshold: str) -> str:
    """Rule 6, the one definition: SMB under the threshold or with unknown revenue, else Midsize."""
    return f"CASE WHEN c.annual_revenue IS NULL OR c.annual_revenue < {threshold} THEN 'SMB' ELSE 'Midsize' END"


# Rule 7: never contacted first, then higher revenue, then email.
PRIORITY_ORDER = "CASE WHEN c.last_completed_at IS NULL THEN 0 ELSE 1 END, c.annual_revenue DESC NULLS LAST, c.email"

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

REJECT_DUPLICATE = "duplicate email: another source row with this address wins"
REJECT_REVENUE = "revenue unreadable (negative or not a number): taken as unknown, so SMB"

# Rules 1-2 over the source table: the CTEs both the candidates view and v_source_rejects start from.
SOURCE_CTES = f"""
trimmed AS (
  SELECT
    CAST(s.email AS STRING) AS raw_email,
    REGEXP_REPLACE(CAST(s.email AS STRING), r'^{_TRIM}+|{_TRIM}+$', '') AS trimmed_email,
    CAST(s.first_name AS STRING) AS first_name,
    CAST(s.last_name AS STRING) AS last_name,
    CAST(s.company_name AS STRING) AS company_name,
    CAST(s.domain AS STRING) AS domain,
    CAST(s.location AS STRING) AS location,
    CAST(s.country AS STRING) AS country,
    CAST(s.annual_revenue AS STRING) AS raw_revenue,
    SAFE_CAST(REPLACE(CAST(s.annual_revenue AS STRING), ',', '') AS NUMERIC(38, 9)) AS annual_revenue
  FROM `{{source}}` AS s
),
checked AS (
  SELECT t.*, {EMAIL_PROBLEM} AS email_problem
  FROM trimmed AS t
),
normalized AS (
  -- Validate before lower-casing: engines lower-case some non-ASCII letters differently.
  SELECT LOWER(c.trimmed_email) AS email, c.raw_email, c.first_name, c.last_name, c.company_name, c.domain,
         c.location, c.country, c.raw_revenue, c.annual_revenue
  FROM checked AS c
  WHERE c.email_problem IS NULL
),
valid AS (
  SELECT
    n.email, n.raw_email, n.first_name, n.last_name, n.company_name, n.domain, n.location, n.country,
    n.raw_revenue,
    CASE WHEN n.annual_revenue >= 0 THEN n.annual_revenue END AS annual_revenue,
    (TRIM(n.raw_revenue) != '' AND (n.annual_revenue IS NULL OR n.annual_revenue < 0)) AS revenue_unreadable,
    REGEXP_EXTRACT(n.email, r'@(.+)$') AS email_domain,
    ROW_NUMBER() OVER (
      PARTITION BY n.email
      ORDER BY n.annual_revenue DESC NULLS LAST, n.first_name, n.last_name, n.company_name,
               n.domain, n.location, n.country
    ) AS duplicate_rank
  FROM normalized AS n
)"""  # noqa: S608

# Rules 1-4, with what rules 5-7 need. Only constants are formatted in: no values.
CANDIDATES_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{CANDIDATES_VIEW}` AS
WITH {SOURCE_CTES},
dnc_emails AS (
  SELECT DISTINCT LOWER(TRIM(email)) AS email FROM `{{ds}}.ops_dnc` WHERE email IS NOT NULL
),
dnc_domains AS (
  SELECT DISTINCT RTRIM(LTRIM(LOWER(TRIM(domain)), '@'), '.') AS domain
  FROM `{{ds}}.ops_dnc` WHERE domain IS NOT NULL
),
history AS (
  SELECT email, MAX(completed_at) AS last_completed_at, MAX(attempt_num) AS last_attempt
  FROM `{{ds}}.ops_lead_history`
  GROUP BY email
)
SELECT
  v.email, v.first_name, v.last_name, v.company_name, v.domain, v.location, v.country, v.annual_revenue,
  COALESCE(h.last_attempt, 0) + 1 AS attempt_num,
  h.last_completed_at
FROM valid AS v
LEFT JOIN history AS h ON h.email = v.email
WHERE v.duplicate_rank = 1
  AND NOT EXISTS (SELECT 1 FROM dnc_emails AS d WHERE d.email = v.email)
  AND NOT EXISTS (SELECT 1 FROM dnc_domains AS d WHERE d.domain = v.email_domain)
  AND NOT EXISTS (SELECT 1 FROM `{{ds}}.ops_inst_state` AS st WHERE st.email = v.email)
"""  # noqa: S608

# Rules 5-7 with the values of the config table (defaults when a row is missing).
VIEW_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{VIEW_NAME}` AS
WITH params AS (
  SELECT
    COALESCE((SELECT MAX(value_int) FROM `{{ds}}.config` WHERE key = 'smb_revenue_threshold'),
             {VIEW_DEFAULTS["smb_revenue_threshold"]}) AS smb_threshold,
    COALESCE((SELECT MAX(value_int) FROM `{{ds}}.config` WHERE key = 'cooldown_days'),
             {VIEW_DEFAULTS["cooldown_days"]}) AS cooldown_days,
    COALESCE((SELECT MAX(SAFE_CAST(value_string AS TIMESTAMP)) FROM `{{ds}}.config` WHERE key = 'as_of'),
             CURRENT_TIMESTAMP()) AS as_of
)
SELECT
  c.email, c.first_name, c.last_name, c.company_name, c.domain, c.location, c.country, c.annual_revenue,
  {segment_expression("p.smb_threshold")} AS sequence_target,
  c.attempt_num,
  c.last_completed_at,
  ROW_NUMBER() OVER (ORDER BY {PRIORITY_ORDER}) AS priority
FROM `{{ds}}.{CANDIDATES_VIEW}` AS c
CROSS JOIN params AS p
WHERE {cooldown_predicate("p.as_of", "p.cooldown_days")}
"""  # noqa: S608

REJECTS_VIEW = "v_source_rejects"

# Every source row the sync does not take as given, with the reason: the rows rules 1-2 skip (email
# unusable, or a duplicate of a better row) and the rows kept with their revenue taken as unknown
# (`skipped` FALSE). Same CTEs as the candidates view. The run summary counts it by reason.
REJECTS_SQL = f"""
CREATE OR REPLACE VIEW `{{ds}}.{REJECTS_VIEW}` AS
WITH {SOURCE_CTES}
SELECT c.raw_email AS email, c.first_name, c.last_name, c.company_name, c.domain, c.location, c.country,
       c.raw_revenue AS annual_revenue, c.email_problem AS reason, TRUE AS skipped
FROM checked AS c
WHERE c.email_problem IS NOT NULL
UNION ALL
SELECT v.raw_email, v.first_name, v.last_name, v.company_name, v.domain, v.location, v.country,
       v.raw_revenue, '{REJECT_DUPLICATE}', TRUE
FROM valid AS v
WHERE v.duplicate_rank > 1
UNION ALL
SELECT v.raw_email, v.first_name, v.last_name, v.company_name, v.domain, v.location, v.country,
       v.raw_revenue, '{REJECT_REVENUE}', FALSE
FROM valid AS v
WHERE v.duplicate_rank = 1 AND v.revenue_unreadable
"""  # noqa: S608

# Created in this order (the ready view reads the candidates view).
VIEWS: tuple[tuple[str, str], ...] = ((CANDIDATES_VIEW, CANDIDATES_SQL), (VIEW_NAME, VIEW_SQL),
                                      (REJECTS_VIEW, REJECTS_SQL))
