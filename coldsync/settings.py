"""Typed settings, loaded once, from one table of setting specs.

Precedence, highest first: command-line flags > environment > `.env` > `config/secrets/*.json`
> the warehouse `config` table > defaults. Every value is validated when loaded; all problems are
collected and raised together as `SettingsError`, whose text names the setting, the bad value (never
for a secret), where it came from, and the fix. Secrets are held in `Secret`, whose repr is masked.

The spec table (`SPECS`) is the single source for environment names, CLI flags, config-table keys
and the README's configuration table (a test keeps the README in step with it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values

from coldsync.instantly.client import MAX_ADD_CONCURRENCY
from coldsync.outcomes import (
    PolicyError,
    PolicyProblem,
    PolicyTable,
    default_table,
    load_policies,
    parse_policy_document,
)
from coldsync.redact import redact
from coldsync.routes import Routing, RoutingError, load_routing, parse_document
from coldsync.transport import (
    DEFAULT_REQUEST_DEADLINE_SECONDS,
    DEFAULT_TIMEOUT_ATTEMPTS,
    OutboundURLError,
    check_outbound_url,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRETS_DIR = REPO_ROOT / "config" / "secrets"
INSTANTLY_CONFIG_FILE = "instantly-config.json"
# The committed example of INSTANTLY_CONFIG_FILE: its api_key is a placeholder, refused as a key.
INSTANTLY_CONFIG_EXAMPLE = REPO_ROOT / "config" / "secrets" / "instantly-config.example.json"
BIGQUERY_CREDENTIALS_FILE = "bigquery-credentials.json"

SYNC_JOB_TIMEOUT_MINUTES = 30
"""The `timeout-minutes` of the sync job in .github/workflows/sync.yml (tests/test_workflows.py keeps them
equal), and the default lease of the run lock (LOCK_TTL_MINUTES): GitHub kills the job at this age, and the
run took its lock after the job started, so the lease never runs out under a run that still goes, and a
killed run's lease is over by the next scheduled run (every 30 minutes)."""

LEASE_SHARE = 0.75
"""A run starts no write after this share of its lock lease (LOCK_TTL_MINUTES): a second run can never act
beside it. coldsync.sync enforces it; INSTANTLY_REQUEST_DEADLINE_SECONDS must stay below it."""

Kind = Literal["str", "int", "bool", "secret", "percent"]
Origin = Literal["flag", "environment", ".env", "secrets file", "config table", "default"]


class Secret:
    """A string that never shows itself in repr, str, logs or error text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its name everywhere, its type, default, bounds and the fix for a bad value."""

    name: str  # attribute of Settings and the environment variable (upper-cased)
    kind: Kind
    default: Any
    help: str
    config_key: str | None = None  # row key in the warehouse `config` table, if ops may set it there
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_hint: str = ""

    @property
    def env(self) -> str:
        return self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


WEBHOOK_SECRET_MIN_LENGTH = 32
"""Fewest characters of INSTANTLY_WEBHOOK_SECRET: `secrets.token_urlsafe(32)` gives 43 (256 random bits); 32 is
the floor so that a short word or a pasted placeholder is refused."""
WEBHOOK_SECRET_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_CAMPAIGN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

SPECS: tuple[SettingSpec, ...] = (
    # --- Instantly -------------------------------------------------------------------------
    SettingSpec("instantly_api_key", "secret", "", "Instantly API V2 key (Bearer). Needed for live runs."),
    SettingSpec("instantly_base_url", "str", "https://api.instantly.ai",
                "Instantly API base URL: https, scheme and host only (plain http only for the local simulator on "
                "localhost or 127.0.0.1; never in production)."),
    SettingSpec("instantly_request_deadline_seconds", "int", DEFAULT_REQUEST_DEADLINE_SECONDS,
                "Seconds one Instantly request may take in all (connect and every read); must stay below the "
                "run's lease guard (0.75 x LOCK_TTL_MINUTES).", minimum=1, maximum=3600),
    SettingSpec("instantly_timeout_attempts", "int", DEFAULT_TIMEOUT_ATTEMPTS,
                "Attempts of one Instantly call that may time out (no answer) before it fails; 429s and 5xx keep "
                "the full retry budget. A call whose attempts all timed out before Instantly answered anything in "
                "the run stops the run's calls (unreachable).", minimum=1, maximum=6),
    SettingSpec("instantly_max_per_second", "int", 20,
                "Requests per second this process may send (workspace limit is 100, shared).",
                minimum=1, maximum=100),
    SettingSpec("instantly_max_per_minute", "int", 1200,
                "Requests per minute this process may send (workspace limit is 6,000, shared).",
                minimum=1, maximum=6000),
    SettingSpec("instantly_add_concurrency", "int", 4,
                "Bulk add requests in flight at once (each of up to BATCH_SIZE leads, every one paced within the "
                "limits above): a fill of 24 batches at 2 s per add takes 12 s with 4, 48 s with 1.",
                minimum=1, maximum=MAX_ADD_CONCURRENCY),
    SettingSpec("instantly_list_concurrency", "int", 4,
                "Drain listings in flight at once (one per campaign and finished-lead filter, every page paced "
                "within the limits above): their answers are merged in a fixed order, whichever comes first.",
                minimum=1, maximum=MAX_ADD_CONCURRENCY),
    SettingSpec("instantly_webhook_secret", "secret", "",
                "Shared secret Instantly sends with every webhook delivery, in the X-Coldsync-Webhook-Secret header "
                "(the receiver, coldsync.webhooks, answers 401 without it): at least 32 printable ASCII characters, "
                f"such as the output of {WEBHOOK_SECRET_COMMAND}. Needed by the receiver and to register webhooks."),
    SettingSpec("instantly_webhook_secret_previous", "secret", "",
                "The webhook secret being rotated out: the receiver accepts it beside INSTANTLY_WEBHOOK_SECRET until "
                "the webhooks are registered again with the new one (the order: coldsync/webhooks/app.py). Same "
                "rule as INSTANTLY_WEBHOOK_SECRET when set; unset it once the rotation is done."),
    SettingSpec("smb_campaign_id", "str", "", "Instantly campaign id for SMB leads (revenue under threshold).",
                config_key="smb_campaign_id", pattern=_CAMPAIGN, pattern_hint="a campaign UUID"),
    SettingSpec("midsize_campaign_id", "str", "", "Instantly campaign id for Midsize leads.",
                config_key="midsize_campaign_id", pattern=_CAMPAIGN, pattern_hint="a campaign UUID"),
    # --- Warehouse -------------------------------------------------------------------------
    SettingSpec("bq_project", "str", "", "Google Cloud project of the BigQuery warehouse. Empty: embedded DuckDB.",
                pattern=r"^[a-z][a-z0-9\-:.]{4,61}[a-z0-9]$", pattern_hint="a GCP project id"),
    SettingSpec("bq_dataset", "str", "coldsync", "Dataset (BigQuery) or schema (DuckDB) holding the tables.",
                pattern=_IDENT, pattern_hint="letters, digits and underscores"),
    SettingSpec("bq_location", "str", "US", "BigQuery location of the dataset.",
                pattern=r"^[A-Za-z0-9\-]+$", pattern_hint="a location such as US, EU or us-east1"),
    SettingSpec("bigquery_credentials_json", "secret", "",
                "Service-account key: a file path or the JSON itself. Empty: GOOGLE_APPLICATION_CREDENTIALS "
                "or Application Default Credentials (Workload Identity Federation)."),
    SettingSpec("bq_maximum_bytes_billed", "int", 10 * 1024**3,
                "Per-query guard: BigQuery fails a query that would bill more bytes.", minimum=10 * 1024**2),
    SettingSpec("duckdb_path", "str", "data/coldsync.duckdb", "DuckDB file used when BQ_PROJECT is empty."),
    SettingSpec("duckdb_memory_limit", "str", "auto",
                "Memory DuckDB may use (it spills to DUCKDB_TEMP_DIRECTORY beyond). `auto`: the warehouse file's "
                "size, at least 96 MiB, at most 112 MiB and 1/8 of the machine's memory (DuckDB's share of a run's "
                "peak: docs/PERFORMANCE.md); or a size such as 512MB (MB = 1000^2 bytes, MiB = 1024^2).",
                pattern=r"(?i)^(auto|\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB))$",
                pattern_hint="auto or a size such as 128MB or 1GB"),
    SettingSpec("duckdb_threads", "int", 1, "Threads DuckDB may use.", minimum=1, maximum=64),
    SettingSpec("duckdb_temp_directory", "str", "",
                "Folder DuckDB spills to beyond DUCKDB_MEMORY_LIMIT (created 0700: spill files hold personal data). "
                "Empty: `<DUCKDB_PATH>.tmp/` beside the warehouse file (under data/, git-ignored), never the "
                "working directory; a relative path is taken from the repository root, like DUCKDB_PATH."),
    SettingSpec("source_table", "str", "source_leads",
                "Source lead table or view: a name in the dataset, or dataset.table / project.dataset.table.",
                pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+){0,2}$", pattern_hint="[project.]dataset.table"),
    SettingSpec("source_updated_at_column", "str", "",
                "Column of SOURCE_TABLE your loads set to the time a row was last written: with a BigQuery view "
                "as the source, its row count and newest value say whether the source changed (the source "
                "rejects are recounted only then). Unused on a BigQuery table (its metadata says). On DuckDB it "
                "is the cheap signal (one column read); empty there, a hash of every source row says (one more "
                "read of the source in each run with room). Empty: a BigQuery view's rejects are recounted every "
                "run.",
                pattern=_IDENT, pattern_hint="a column name: letters, digits and underscores"),
    # --- Business rules (ops may also set these in the warehouse `config` table) -------------
    SettingSpec("smb_revenue_threshold", "int", 1_000_000,
                "Annual revenue (USD) under which a lead goes to the SMB campaign.",
                config_key="smb_revenue_threshold", minimum=1),
    SettingSpec("inventory_cap", "int", 24_000, "Most leads held in the managed campaigns at once.",
                config_key="inventory_cap", minimum=0, maximum=1_000_000),
    SettingSpec("cooldown_days", "int", 90, "Days after a sequence ends before a lead may be added again.",
                config_key="cooldown_days", minimum=0, maximum=3650),
    SettingSpec("target_new_leads_per_run", "int", 100, "New leads one run tries to add.",
                config_key="target_new_leads_per_run", minimum=0),
    SettingSpec("max_new_leads_per_run", "int", 24_000,
                "Hard ceiling: a larger TARGET_NEW_LEADS_PER_RUN is refused.",
                config_key="max_new_leads_per_run", minimum=0, maximum=1_000_000),
    SettingSpec("batch_size", "int", 1000, "Leads per Instantly bulk call (Instantly allows at most 1,000).",
                config_key="batch_size", minimum=1, maximum=1000),
    SettingSpec("max_active_days", "int", 60,
                "A lead still active this many days after it was added is drained as stale.",
                config_key="max_active_days", minimum=1, maximum=3650),
    SettingSpec("dead_letter_max_retries", "int", 5, "Retries of a dead letter before it is given up.",
                config_key="dead_letter_max_retries", minimum=0, maximum=100),
    SettingSpec("reconcile_audit_calls", "int", 25,
                "Most by-id look-ups (100 tracked lead ids each) a run makes to find leads removed in Instantly "
                "by hand; the audit rolls on from run to run and spends only what checks every tracked lead once "
                "a day: ceil(tracked / 100 / runs that day) + 1 (24,000 tracked: 14 a weekday run, 21 a weekend "
                "run) (0: off).",
                config_key="reconcile_audit_calls", minimum=0, maximum=1000),
    SettingSpec("reconcile_pages_per_run", "int", 20,
                "Pages (100 leads each) a run may read listing campaigns whose Instantly count disagrees with "
                "the warehouse (to adopt leads added by hand), shared by all campaigns; a listing cut short "
                "resumes next run.",
                config_key="reconcile_pages_per_run", minimum=1, maximum=10000),
    SettingSpec("give_up_cooldown_days", "int", 7,
                "Days a lead rests after its add was given up (DEAD_LETTER_MAX_RETRIES failures Instantly "
                "named it for), instead of COOLDOWN_DAYS: it was never emailed; the others go first meanwhile.",
                config_key="give_up_cooldown_days", minimum=0, maximum=3650),
    SettingSpec("service_failure_runs", "int", 3,
                "Consecutive runs in which one Instantly operation fails at the service level (429, 5xx, "
                "timeouts, no connection, the plan's lead limit) before a run exits 1; earlier ones warn and exit 0.",
                config_key="service_failure_runs", minimum=1, maximum=1000),
    SettingSpec("allow_paused_campaigns", "bool", False,
                "Add leads to a campaign that is not active (they wait; nothing is sent).",
                config_key="allow_paused_campaigns"),
    SettingSpec("routes_file", "str", "config/routes.toml",
                "Routing document (TOML) used when it exists: routes, shares, A/B arms, custom variables "
                "(README: routes). Relative paths are from the repository root. Set, it must exist; none: "
                "no file."),
    SettingSpec("routes", "str", "",
                "Routing document as TOML or JSON text: as a flag or variable it wins over ROUTES_FILE; as the "
                "config-table row `routes` it is used when no file exists.", config_key="routes"),
    SettingSpec("reply_hold_days", "int", 14,
                "Days a lead that replied stays in its campaign after the drain, for the rep to work the thread "
                "(outcome policies in_sales and replied; README: outcome policies).",
                config_key="reply_hold_days", minimum=0, maximum=365),
    SettingSpec("replied_list_id", "str", "",
                "Instantly list a replied lead is moved to after its hold. Empty: it is deleted.",
                config_key="replied_list_id", pattern=_CAMPAIGN, pattern_hint="an Instantly list UUID"),
    SettingSpec("replied_return_days", "int", 180,
                "Days after a reply nobody labelled (or out of office) before the address may return to cold "
                "outreach.", config_key="replied_return_days", minimum=0, maximum=3650),
    SettingSpec("not_interested_return_days", "int", 365,
                "Days after a not interested, lost or no show before the address may return to cold outreach.",
                config_key="not_interested_return_days", minimum=0, maximum=3650),
    SettingSpec("outcome_policies_file", "str", "config/outcomes.toml",
                "Outcome policy document (TOML) used when it exists: per outcome, when the address may return "
                "and what happens to its lead in Instantly (coldsync/outcomes.py). Relative paths are from the "
                "repository root. Set, it must exist; none: no file."),
    SettingSpec("outcome_policies", "str", "",
                "Outcome policy document as TOML or JSON text: as a flag or variable it wins over "
                "OUTCOME_POLICIES_FILE; as the config-table row `outcome_policies` it is used when no file "
                "exists.", config_key="outcome_policies"),
    SettingSpec("priority_expression", "str", "",
                "Lead score inside a route, higher first: a SQL expression over source and history columns. "
                "Empty: never contacted first, then revenue (README: scoring).", config_key="priority_expression"),
    SettingSpec("supply_days", "int", 3,
                "Keep each campaign's not-yet-contacted leads near this many days of what it sends (0: off).",
                config_key="supply_days", minimum=0, maximum=60),
    SettingSpec("max_bounce_rate", "percent", 5.0,
                "A route's top-up is skipped while its campaigns' 7-day bounce rate is above this percent.",
                config_key="max_bounce_rate", minimum=0, maximum=100),
    SettingSpec("bounce_warn_rate", "percent", 2.0,
                "A warning when a campaign's 7-day bounce rate is above this percent.",
                config_key="bounce_warn_rate", minimum=0, maximum=100),
    SettingSpec("blocklist_mirror", "bool", True,
                "Mirror the do-not-contact list with Instantly's workspace block list, both ways.",
                config_key="blocklist_mirror"),
    SettingSpec("webhooks_enabled", "bool", False,
                "Instantly webhooks feed ops_instantly_events (docs/OPERATIONS.md section 12): each run lists the "
                "webhooks (a disabled, missing or doubled one is a warning and the `webhooks` alert) and backfills "
                "the deliveries to the receiver that failed (GET /api/v2/webhook-events?success=false), and "
                "validate_environment.py checks the webhooks. Off: polling alone (two calls fewer per run).",
                config_key="webhooks_enabled"),
    # --- Alerts (coldsync/alerts.py) --------------------------------------------------------
    SettingSpec("alert_webhook_url", "secret", "",
                "Incoming-webhook URL (Slack-compatible: a JSON {\"text\": ...} is posted) the run alerts on: a "
                "failed run, ALERT_AFTER_RUNS runs with room but nothing added, a deliverability guard holding a "
                "route back, open dead letters past ALERT_DEAD_LETTERS; once per condition, and once when it clears. "
                "https only (plain http only on a loopback host, for tests). Empty: no alerts."),
    SettingSpec("alert_after_runs", "int", 3,
                "Consecutive runs with room but nothing added before an alert (ALERT_WEBHOOK_URL).",
                config_key="alert_after_runs", minimum=1, maximum=1000),
    SettingSpec("alert_dead_letters", "int", 50,
                "Open dead letters above which an alert is posted (ALERT_WEBHOOK_URL).",
                config_key="alert_dead_letters", minimum=1, maximum=1_000_000),
    # --- One run ---------------------------------------------------------------------------
    SettingSpec("dry_run", "bool", False, "Plan and print only: no API write, no warehouse write."),
    SettingSpec("run_drain", "bool", True, "Run the DRAIN phase."),
    SettingSpec("run_topup", "bool", True, "Run the TOP-UP phase."),
    SettingSpec("run_housekeeping", "bool", True, "Run the HOUSEKEEPING phase."),
    SettingSpec("lock_ttl_minutes", "int", SYNC_JOB_TIMEOUT_MINUTES,
                "Lease of the run lock: a lock older than this is taken over (a killed run). Defaults to the sync "
                "job's timeout.", minimum=1, maximum=1440),
    SettingSpec("log_level", "str", "INFO", "Logging level.",
                choices=("DEBUG", "INFO", "WARNING", "ERROR")),
)

SPEC_BY_NAME: dict[str, SettingSpec] = {s.name: s for s in SPECS}
CONFIG_KEYS: dict[str, SettingSpec] = {s.config_key: s for s in SPECS if s.config_key}


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one program run. `origins` says where each value came from."""

    instantly_api_key: Secret
    instantly_base_url: str
    instantly_request_deadline_seconds: int
    instantly_timeout_attempts: int
    instantly_max_per_second: int
    instantly_max_per_minute: int
    instantly_add_concurrency: int
    instantly_list_concurrency: int
    instantly_webhook_secret: Secret
    instantly_webhook_secret_previous: Secret
    smb_campaign_id: str
    midsize_campaign_id: str
    bq_project: str
    bq_dataset: str
    bq_location: str
    bigquery_credentials_json: Secret
    bq_maximum_bytes_billed: int
    duckdb_path: str
    duckdb_memory_limit: str
    duckdb_threads: int
    duckdb_temp_directory: str
    source_table: str
    source_updated_at_column: str
    smb_revenue_threshold: int
    inventory_cap: int
    cooldown_days: int
    target_new_leads_per_run: int
    max_new_leads_per_run: int
    batch_size: int
    max_active_days: int
    dead_letter_max_retries: int
    reconcile_audit_calls: int
    reconcile_pages_per_run: int
    give_up_cooldown_days: int
    service_failure_runs: int
    allow_paused_campaigns: bool
    routes_file: str
    routes: str
    reply_hold_days: int
    replied_list_id: str
    replied_return_days: int
    not_interested_return_days: int
    outcome_policies_file: str
    outcome_policies: str
    priority_expression: str
    supply_days: int
    max_bounce_rate: float
    bounce_warn_rate: float
    blocklist_mirror: bool
    webhooks_enabled: bool
    alert_webhook_url: Secret
    alert_after_runs: int
    alert_dead_letters: int
    dry_run: bool
    run_drain: bool
    run_topup: bool
    run_housekeeping: bool
    lock_ttl_minutes: int
    log_level: str
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False)

    @property
    def uses_bigquery(self) -> bool:
        return bool(self.bq_project)

    @cached_property
    def routing(self) -> Routing:
        """The checked routes (coldsync.routes); resolve() has already refused a bad document."""
        return routing_of(self.routes, self.origins.get("routes", "default"), self.routes_file,
                          self.smb_campaign_id, self.midsize_campaign_id, self.priority_expression,
                          routes_file_set=self.origins.get("routes_file", "default") != "default")

    @cached_property
    def outcome_table(self) -> PolicyTable:
        """The outcome policy table in effect (coldsync.outcomes); resolve() has already refused a bad one."""
        return outcome_table_of({f.name: getattr(self, f.name) for f in fields(self)}, self.origins)

    def campaign_ids(self) -> dict[str, str]:
        """Route (or route/arm) -> campaign id of every managed campaign (by default SMB and Midsize)."""
        return {f"{route.name}/{arm.name}" if len(route.arms) > 1 else route.name: arm.campaign_id
                for route in self.routing.routes for arm in route.arms}

    def routes_path(self) -> Path:
        path = Path(self.routes_file)
        return path if path.is_absolute() else REPO_ROOT / path

    def duckdb_file(self) -> Path:
        path = Path(self.duckdb_path)
        return path if path.is_absolute() else REPO_ROOT / path

    def duckdb_spill_directory(self) -> Path | None:
        """DUCKDB_TEMP_DIRECTORY as a path (a relative one from the repository root, like DUCKDB_PATH, never
        from the working directory a command happens to start in); None when empty (beside the warehouse)."""
        if not self.duckdb_temp_directory:
            return None
        path = Path(self.duckdb_temp_directory)
        return path if path.is_absolute() else REPO_ROOT / path

    def secrets(self) -> list[str]:
        """Raw secret values, for the log filter that scrubs them."""
        values = [self.instantly_api_key.reveal(), self.bigquery_credentials_json.reveal(),
                  self.instantly_webhook_secret.reveal(), self.instantly_webhook_secret_previous.reveal(),
                  *webhook_secret_parts(self.alert_webhook_url.reveal())]
        return [v for v in values if v]


@dataclass(frozen=True)
class SettingProblem:
    name: str
    origin: Origin
    value: str | None  # None for secrets: never shown
    message: str
    fix: str

    def __str__(self) -> str:
        shown = "" if self.value is None else f"={self.value!r}"
        return f"{self.name.upper()}{shown} (from {self.origin}): {self.message}. Fix: {self.fix}"


class SettingsError(Exception):
    """One or more settings are invalid. Raised before anything is touched."""

    def __init__(self, problems: Sequence[SettingProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} bad setting(s):\n{lines}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(spec: SettingSpec, raw: object, origin: Origin) -> tuple[Any, SettingProblem | None]:
    shown = None if spec.kind == "secret" else redact(str(raw), 200)

    def problem(message: str, fix: str) -> tuple[Any, SettingProblem]:
        return None, SettingProblem(spec.name, origin, shown, message, fix)

    if spec.kind == "secret":
        text = "" if raw is None else str(raw).strip()
        return Secret(text), None
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw, None
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True, None
        if text in _FALSE:
            return False, None
        return problem("is not true or false", f"set {spec.env} to true or false")
    if spec.kind == "percent":
        text = str(raw).strip().rstrip("%").strip()
        try:
            number = float(text)
        except ValueError:
            return problem("is not a percent", f"set {spec.env} to a number of percent such as {spec.default:g}")
        if not math.isfinite(number) or not (spec.minimum or 0) <= number <= (spec.maximum or 100):
            return problem("is not a percent from 0 to 100", f"set {spec.env} to a number from 0 to 100")
        return number, None
    if spec.kind == "int":
        if isinstance(raw, bool):
            return problem("is not a whole number", f"set {spec.env} to a whole number")
        text = str(raw).strip().replace("_", "").replace(",", "")
        try:
            value = int(text)
        except ValueError:
            return problem("is not a whole number", f"set {spec.env} to a whole number such as {spec.default}")
        if spec.minimum is not None and value < spec.minimum:
            return problem(f"is below the minimum {spec.minimum}", f"set {spec.env} to at least {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            return problem(f"is above the maximum {spec.maximum}", f"set {spec.env} to at most {spec.maximum}")
        return value, None
    text = "" if raw is None else str(raw).strip()
    if spec.choices is not None:
        if text.upper() not in spec.choices:
            return problem(f"is not one of {', '.join(spec.choices)}", f"set {spec.env} to one of them")
        return text.upper(), None
    if text and spec.pattern and not re.match(spec.pattern, text):
        return problem(f"is not {spec.pattern_hint}", f"set {spec.env} to {spec.pattern_hint}")
    return text, None


def convert_setting(spec: SettingSpec, raw: object, origin: Origin) -> tuple[Any, SettingProblem | None]:
    """One raw value checked and converted exactly as loading the setting does (type, bounds, pattern):
    (value, None), or (None, the problem naming the setting, the value and the fix)."""
    return _convert(spec, raw, origin)


def add_cli_arguments(parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> None:
    """Add one flag per setting (but `exclude`), e.g. `--target-new-leads-per-run 50`."""
    group = parser.add_argument_group("settings (each also an environment variable of the same name)")
    skipped = set(exclude)
    for spec in SPECS:
        if spec.name in skipped:
            continue
        if spec.kind == "secret":
            continue  # secrets never travel on a command line (they would show in `ps`)
        if spec.kind == "bool":
            group.add_argument(spec.flag, dest=f"setting_{spec.name}", nargs="?", const="true", default=None,
                               metavar="true|false", help=spec.help)
        else:
            group.add_argument(spec.flag, dest=f"setting_{spec.name}", default=None, help=spec.help)


def cli_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The settings given as flags in parsed arguments."""
    out: dict[str, str] = {}
    for spec in SPECS:
        value = getattr(args, f"setting_{spec.name}", None)
        if value is not None:
            out[spec.name] = str(value)
    return out


def _read_secrets_dir(secrets_dir: Path) -> tuple[dict[str, object], list[SettingProblem]]:
    values: dict[str, object] = {}
    problems: list[SettingProblem] = []
    instantly_file = secrets_dir / INSTANTLY_CONFIG_FILE
    if instantly_file.is_file():
        try:
            data = json.loads(instantly_file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            problems.append(SettingProblem("instantly_api_key", "secrets file", None,
                                           f"{instantly_file.name} is not a readable JSON object "
                                           f"({type(exc).__name__})",
                                           f"fix {instantly_file} (see {INSTANTLY_CONFIG_FILE[:-5]}.example.json)"))
            data = {}
        for key, value in data.items():
            name = str(key).lower()
            if name == "api_key":
                name = "instantly_api_key"
            if name in SPEC_BY_NAME and value is not None:
                values[name] = value
    credentials_file = secrets_dir / BIGQUERY_CREDENTIALS_FILE
    if credentials_file.is_file():
        values["bigquery_credentials_json"] = str(credentials_file)
        try:
            project = json.loads(credentials_file.read_text(encoding="utf-8")).get("project_id")
        except (ValueError, OSError, AttributeError):
            project = None
        if isinstance(project, str) and project:
            values.setdefault("bq_project", project)
    return values, problems


@dataclass
class SettingsSources:
    """The raw layers, highest precedence first (everything but the warehouse config table)."""

    layers: list[tuple[Origin, dict[str, object]]]
    problems: list[SettingProblem]


def read_sources(
    cli: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    secrets_dir: Path | None = None,
) -> SettingsSources:
    """Read every layer above the warehouse config table. Pure except for reading the two files."""
    env = os.environ if environ is None else environ
    dotenv_file = dotenv_path if dotenv_path is not None else REPO_ROOT / ".env"
    dotenv_raw = dotenv_values(dotenv_file) if dotenv_file.is_file() else {}
    by_env = {s.env: s.name for s in SPECS}
    # An empty variable counts as unset (CI systems pass empty inputs and variables as "").
    env_layer = {by_env[k]: v for k, v in env.items() if k in by_env and v.strip() != ""}
    dotenv_layer: dict[str, object] = {by_env[k]: v for k, v in dotenv_raw.items()
                                       if k in by_env and v is not None and v.strip() != ""}
    # The standard Google variable counts as a credentials path when ours is not set.
    if "bigquery_credentials_json" not in env_layer and env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        env_layer["bigquery_credentials_json"] = env["GOOGLE_APPLICATION_CREDENTIALS"]
    secrets_layer, problems = _read_secrets_dir(secrets_dir if secrets_dir is not None else SECRETS_DIR)
    layers: list[tuple[Origin, dict[str, object]]] = [
        ("flag", dict(cli or {})),
        ("environment", dict(env_layer)),
        (".env", dotenv_layer),
        ("secrets file", secrets_layer),
    ]
    unknown = [k for k in (cli or {}) if k not in SPEC_BY_NAME]
    for name in unknown:
        problems.append(SettingProblem(name, "flag", None, "is not a known setting",
                                       "see the configuration table in README.md"))
    return SettingsSources(layers, problems)


def resolve(sources: SettingsSources, config_rows: Mapping[str, object] | None = None) -> Settings:
    """Merge the layers with the config-table values and defaults; raise SettingsError on any problem."""
    problems = list(sources.problems)
    config_layer: dict[str, object] = {}
    for key, value in (config_rows or {}).items():
        spec = CONFIG_KEYS.get(key)
        if spec is not None and value is not None and value != "":
            config_layer[spec.name] = value
    layers = [*sources.layers, ("config table", config_layer)]
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for spec in SPECS:
        raw: object = spec.default
        origin: Origin = "default"
        for layer_origin, layer in layers:
            if spec.name in layer:
                raw, origin = layer[spec.name], layer_origin
                break
        value, problem = _convert(spec, raw, origin)
        if problem is not None:
            problems.append(problem)
            value, _ = _convert(spec, spec.default, "default")
        values[spec.name] = value
        origins[spec.name] = origin
    problems.extend(_cross_checks(values, origins))
    if problems:
        raise SettingsError(problems)
    return Settings(**values, origins=origins)


@lru_cache(maxsize=1)
def placeholder_api_key() -> str:
    """The api_key of the committed instantly-config.example.json ("" when it cannot be read)."""
    try:
        value = json.loads(INSTANTLY_CONFIG_EXAMPLE.read_text(encoding="utf-8")).get("api_key")
    except (OSError, ValueError, AttributeError):
        return ""
    return value.strip() if isinstance(value, str) else ""


def _cross_checks(values: Mapping[str, Any], origins: Mapping[str, Origin]) -> list[SettingProblem]:
    problems: list[SettingProblem] = []
    key = values["instantly_api_key"].reveal()
    if key and key == placeholder_api_key():  # a copied example: never send it to Instantly
        problems.append(SettingProblem(
            "instantly_api_key", origins["instantly_api_key"], None,
            f"is the placeholder of {INSTANTLY_CONFIG_EXAMPLE.name}, not a key",
            f"create an API V2 key in Instantly (Settings > Integrations > API Keys) and put it in INSTANTLY_API_KEY "
            f"or the api_key of config/secrets/{INSTANTLY_CONFIG_FILE}"))
    problems.extend(_transport_checks(values, origins))
    for name in ("instantly_webhook_secret", "instantly_webhook_secret_previous"):
        webhook_secret = webhook_secret_problem(values[name], origins[name], required=False, name=name)
        if webhook_secret is not None:
            problems.append(webhook_secret)
    target, ceiling = values["target_new_leads_per_run"], values["max_new_leads_per_run"]
    if target > ceiling:
        problems.append(SettingProblem(
            "target_new_leads_per_run", origins["target_new_leads_per_run"], str(target),
            f"is above the hard ceiling MAX_NEW_LEADS_PER_RUN={ceiling}",
            "lower TARGET_NEW_LEADS_PER_RUN, or raise MAX_NEW_LEADS_PER_RUN deliberately"))
    try:
        routing = routing_of(values["routes"], origins["routes"], values["routes_file"], values["smb_campaign_id"],
                             values["midsize_campaign_id"], values["priority_expression"],
                             routes_file_set=origins["routes_file"] != "default")
    except RoutingError as exc:
        setting = ("priority_expression" if all(p.setting == "PRIORITY_EXPRESSION" for p in exc.problems)
                   else "routes_file" if all(p.setting.startswith("ROUTES_FILE") for p in exc.problems) else "routes")
        problems.extend(SettingProblem(setting, origins[setting], None, f"{p.setting}: {p.message}", p.fix)
                        for p in exc.problems)
        routing = None
    try:
        outcome_table_of(values, origins)
    except PolicyError as exc:
        setting = ("outcome_policies_file" if all(p.setting.startswith("OUTCOME_POLICIES_FILE") for p in exc.problems)
                   else "outcome_policies" if all(not p.setting.startswith("settings") for p in exc.problems)
                   else "replied_return_days")
        problems.extend(SettingProblem(setting, origins[setting], None, f"{p.setting}: {p.message}", p.fix)
                        for p in exc.problems)
    smb, mid = values["smb_campaign_id"], values["midsize_campaign_id"]
    if (routing is None or routing.is_default) and smb and mid and smb.lower() == mid.lower():
        problems.append(SettingProblem(
            "midsize_campaign_id", origins["midsize_campaign_id"], mid,
            "is the same campaign as SMB_CAMPAIGN_ID", "give each segment its own campaign"))
    return problems


def _transport_checks(values: Mapping[str, Any], origins: Mapping[str, Origin]) -> list[SettingProblem]:
    """INSTANTLY_BASE_URL under the outbound-URL rule (coldsync.transport), and the request deadline below
    the run's lease guard (LEASE_SHARE x LOCK_TTL_MINUTES)."""
    problems: list[SettingProblem] = []
    url = values["instantly_base_url"]
    try:
        check_outbound_url(url)
    except OutboundURLError as exc:
        shown = None if "@" in str(url) else redact(str(url), 200)  # userinfo may hold a password: never shown
        problems.append(SettingProblem("instantly_base_url", origins["instantly_base_url"], shown, exc.problem,
                                       exc.fix))
    webhook = values["alert_webhook_url"].reveal()
    if webhook:
        try:
            check_outbound_url(webhook, setting="ALERT_WEBHOOK_URL", fix=ALERT_WEBHOOK_FIX, base=False)
        except OutboundURLError as exc:  # a secret: the value is never shown
            problems.append(SettingProblem("alert_webhook_url", origins["alert_webhook_url"], None, exc.problem,
                                           exc.fix))
    memory = str(values["duckdb_memory_limit"]).strip()
    if memory.lower() != "auto" and re.match(r"(?i)^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$", memory):
        from coldsync.warehouse.duckdb import MEMORY_MINIMUM, size_bytes

        if size_bytes(memory) < MEMORY_MINIMUM:
            problems.append(SettingProblem(
                "duckdb_memory_limit", origins["duckdb_memory_limit"], memory,
                f"is below {MEMORY_MINIMUM // 2**20} MiB, too little for DuckDB to open a warehouse",
                "set DUCKDB_MEMORY_LIMIT to auto (the default) or a size of at least 64MiB, such as 128MB"))
    deadline, ttl = values["instantly_request_deadline_seconds"], values["lock_ttl_minutes"]
    guard = LEASE_SHARE * ttl * 60
    if deadline >= guard:
        problems.append(SettingProblem(
            "instantly_request_deadline_seconds", origins["instantly_request_deadline_seconds"], str(deadline),
            f"is not below the run's lease guard of {guard:g} s ({LEASE_SHARE:g} x LOCK_TTL_MINUTES={ttl})",
            f"set INSTANTLY_REQUEST_DEADLINE_SECONDS below {guard:g} (default {DEFAULT_REQUEST_DEADLINE_SECONDS}), "
            "or raise LOCK_TTL_MINUTES"))
    return problems


def webhook_secret_problem(secret: Secret, origin: Origin, *, required: bool,
                           name: str = "instantly_webhook_secret") -> SettingProblem | None:
    """What is wrong with the webhook secret setting `name` (INSTANTLY_WEBHOOK_SECRET, or
    INSTANTLY_WEBHOOK_SECRET_PREVIOUS during a rotation), or None: empty (when `required`: the webhook receiver cannot
    authenticate a delivery without it), shorter than WEBHOOK_SECRET_MIN_LENGTH, or holding a character an HTTP
    header cannot carry as it is (only printable ASCII, no space). The value is never shown."""
    value = secret.reveal()
    if name == "instantly_webhook_secret":
        fix = (f"set INSTANTLY_WEBHOOK_SECRET to a new random value, e.g. the output of {WEBHOOK_SECRET_COMMAND} "
               "(on Cloud Run: a Secret Manager secret), then register the webhooks again so Instantly sends it")
    else:
        fix = (f"set {name.upper()} to the secret the webhooks are registered with now (the one being rotated out), "
               "or unset it")
    if not value:
        if not required:
            return None
        return SettingProblem(name, origin, None,
                              "is empty but the webhook receiver needs it to authenticate each delivery", fix)
    if len(value) < WEBHOOK_SECRET_MIN_LENGTH:
        return SettingProblem(name, origin, None,
                              f"is {len(value)} characters, fewer than {WEBHOOK_SECRET_MIN_LENGTH}", fix)
    if not all("!" <= ch <= "~" for ch in value):
        return SettingProblem(name, origin, None,
                              "holds a character an HTTP header cannot carry as it is (only printable ASCII, no "
                              "space)", fix)
    return None


ALERT_WEBHOOK_FIX = ("use the https URL of an incoming webhook (Slack: an app's Incoming Webhooks page), or unset "
                     "ALERT_WEBHOOK_URL")

WEBHOOK_SECRET_MIN = 16
"""Shortest part of a webhook URL's path or query registered as a secret (coldsync.redact): the token of a
Slack (24 characters) or Discord (68) webhook is longer, while words such as `services` or `webhooks` stay
readable everywhere else."""


def webhook_secret_parts(url: str) -> list[str]:
    """The parts of a webhook URL that are its secret, for redaction: every piece of its path and query (between
    `/ ? & = #`) of at least WEBHOOK_SECRET_MIN characters. Not the whole URL nor its whole path: redaction
    removes any 8-character run of a registered secret, so `https://` or `/service` would go from every text."""
    if not url:
        return []
    rest = url.split("://", 1)[-1]
    tail = rest[rest.find("/"):] if "/" in rest else ""
    return [p for p in re.split(r"[/?&=#]", tail) if len(p) >= WEBHOOK_SECRET_MIN]


NO_ROUTES_FILE = "none"
"""ROUTES_FILE=none: read no routes file (the default routes, or ROUTES / the config-table row)."""


def routing_document(routes: str, origin: str, routes_file: str,
                     routes_file_set: bool = False) -> tuple[str | None, str]:
    """The routing document's text and where it came from (for messages): the ROUTES setting from a flag,
    the environment or `.env`; else the ROUTES_FILE file when it exists; else the config-table row; else
    None (the default routes). Raises RoutingError when the file cannot be read, or when ROUTES_FILE was
    set (`routes_file_set`) to a file that does not exist: a typo must not silently mean other routes."""
    if routes.strip() and origin in ("flag", "environment", ".env", "secrets file"):
        return routes, f"ROUTES (from {origin})"
    from coldsync.routes import RoutingProblem

    path = Path(routes_file)
    path = path if path.is_absolute() else REPO_ROOT / path
    if routes_file.strip().lower() == NO_ROUTES_FILE:
        pass
    elif path.is_file():
        try:
            return path.read_text(encoding="utf-8-sig"), f"ROUTES_FILE {routes_file}"
        except (OSError, UnicodeDecodeError) as exc:
            raise RoutingError([RoutingProblem(f"ROUTES_FILE {routes_file}", f"cannot be read ({type(exc).__name__})",
                                               "make it a readable UTF-8 file, or point ROUTES_FILE "
                                               "elsewhere")]) from exc
    elif routes_file_set:
        raise RoutingError([RoutingProblem(f"ROUTES_FILE {routes_file}",
                                           "is not a file" if path.exists() else "does not exist",
                                           "correct the path, or unset ROUTES_FILE (config/routes.toml is read when "
                                           "it exists), or set ROUTES_FILE=none to read no routes file")])
    if routes.strip():
        return routes, f"config table row `routes` (from {origin})"
    return None, "default"


NO_OUTCOME_POLICIES_FILE = "none"
"""OUTCOME_POLICIES_FILE=none: read no policy file (the defaults, or OUTCOME_POLICIES / the config-table row)."""


def outcome_policy_document(policies: str, origin: str, policies_file: str,
                            policies_file_set: bool = False) -> tuple[str | None, str]:
    """The outcome policy document's text and where it came from, as routing_document does for the routes:
    OUTCOME_POLICIES from a flag, the environment or `.env`; else the OUTCOME_POLICIES_FILE file when it
    exists; else the config-table row; else None (the defaults). Raises PolicyError when the file cannot be
    read, or when OUTCOME_POLICIES_FILE was set to a file that does not exist."""
    if policies.strip() and origin in ("flag", "environment", ".env", "secrets file"):
        return policies, f"OUTCOME_POLICIES (from {origin})"
    path = Path(policies_file)
    path = path if path.is_absolute() else REPO_ROOT / path
    where = f"OUTCOME_POLICIES_FILE {policies_file}"
    if policies_file.strip().lower() == NO_OUTCOME_POLICIES_FILE:
        pass
    elif path.is_file():
        try:
            return path.read_text(encoding="utf-8-sig"), where
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([PolicyProblem(where, f"cannot be read ({type(exc).__name__})",
                                             "make it a readable UTF-8 file, or point OUTCOME_POLICIES_FILE "
                                             "elsewhere")]) from exc
    elif policies_file_set:
        raise PolicyError([PolicyProblem(where, "is not a file" if path.exists() else "does not exist",
                                         "correct the path, or unset OUTCOME_POLICIES_FILE (config/outcomes.toml "
                                         "is read when it exists), or set OUTCOME_POLICIES_FILE=none to read no "
                                         "policy file")])
    if policies.strip():
        return policies, f"config table row `outcome_policies` (from {origin})"
    return None, "default"


def outcome_table_of(values: Mapping[str, Any], origins: Mapping[str, Origin]) -> PolicyTable:
    """The outcome policy table in effect: the defaults with the settings' days and list (default_table),
    then the policy document's values (load_policies). Raises PolicyError."""
    base = default_table(cooldown_days=values["cooldown_days"], give_up_cooldown_days=values["give_up_cooldown_days"],
                         reply_hold_days=values["reply_hold_days"], replied_list_id=values["replied_list_id"].lower(),
                         replied_return_days=values["replied_return_days"],
                         not_interested_return_days=values["not_interested_return_days"])
    text, where = outcome_policy_document(values["outcome_policies"], origins.get("outcome_policies", "default"),
                                          values["outcome_policies_file"],
                                          origins.get("outcome_policies_file", "default") != "default")
    document = parse_policy_document(text, where) if text is not None else None
    return load_policies(document, where=where, base=base)


def routing_of(routes: str, origin: str, routes_file: str, smb_campaign_id: str, midsize_campaign_id: str,
               priority_expression: str, *, routes_file_set: bool = False) -> Routing:
    """Load and check the routing in effect (coldsync.routes.load_routing). Raises RoutingError."""
    text, where = routing_document(routes, origin, routes_file, routes_file_set)
    document = parse_document(text, where) if text is not None else None
    return load_routing(document, where=where, smb_campaign_id=smb_campaign_id,
                        midsize_campaign_id=midsize_campaign_id, priority_expression=priority_expression)


def load_settings(
    cli: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    secrets_dir: Path | None = None,
    config_rows: Mapping[str, object] | None = None,
) -> Settings:
    """Resolve settings from every layer; `config_rows` is the warehouse config table (key -> value)."""
    return resolve(read_sources(cli, environ, dotenv_path, secrets_dir), config_rows)


def require(settings: Settings, names: Iterable[str], why: str) -> None:
    """Raise SettingsError unless each named setting has a non-empty value."""
    problems = []
    for name in names:
        value = getattr(settings, name)
        if not value:
            spec = SPEC_BY_NAME[name]
            problems.append(SettingProblem(name, settings.origins.get(name, "default"), None,
                                           f"is empty but {why}", f"set {spec.env} (environment, .env or "
                                           f"config/secrets) or the `{spec.config_key}` row of the config table"
                                           if spec.config_key else f"set {spec.env} (environment or .env)"))
    if problems:
        raise SettingsError(problems)


def with_config_rows(settings: Settings, config_rows: Mapping[str, object]) -> Settings:
    """The settings as a sync run resolves them with the warehouse config table: each setting that no layer
    above the table set (origin default) takes the table's row (setup.py reads its settings without the
    table). A row that does not convert is left out (a run would refuse it and say why)."""
    changes: dict[str, Any] = {}
    origins: dict[str, Origin] = dict(settings.origins)
    for key, value in config_rows.items():
        spec = CONFIG_KEYS.get(key)
        if spec is None or value is None or value == "" or settings.origins.get(spec.name, "default") != "default":
            continue
        converted, problem = _convert(spec, value, "config table")
        if problem is None:
            changes[spec.name] = converted
            origins[spec.name] = "config table"
    return replace(settings, **changes, origins=origins) if changes else settings


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy with some values changed (tests, the demo); values are not re-validated."""
    current = {f.name: getattr(settings, f.name) for f in fields(settings)}
    current.update(changes)
    return Settings(**current)
