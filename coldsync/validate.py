"""Is this environment ready for a sync? The checks of `validate_environment.py`, in order, each with its fix.

1. settings parse (every layer but the config table);
   then INSTANTLY_BASE_URL under the outbound-URL rule (coldsync.transport); with `production`, https to a
   host that is not this machine (never the simulator);
2. the Instantly key is present and accepted (`check_key`; the key is never shown, not even a part);
3. the warehouse is reachable;
4. the dataset's tables and the eligibility view exist with the expected columns, and the source
   table meets the column contract;
5. the config rows are present (then the settings are resolved again with the config table);
6. the `as_of` config row is absent (it freezes the view's clock: simulations only);
7. both campaigns exist, and their status (a paused campaign is the most common reason for
   "no leads show in the campaigns");
8. inventory headroom under the cap;
9. leads ready per segment.

A check that cannot run because an earlier one failed is `skip`. Exit code: 2 (bad configuration)
when settings fail, else 4 when any check fails, else 0; warnings do not fail.

Embedded mode (no INSTANTLY_API_KEY and no BQ_PROJECT: `sync_once.py` then uses the local simulator
and the DuckDB demo warehouse) is a warning and the Instantly checks are skipped; with `production`
(the scheduled workflow passes `--production`) it is a failure, and so is a DuckDB warehouse, whose
file would be lost with the CI runner after every run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from coldsync.campaign_health import campaign_settings_problems
from coldsync.cli import ExitCode
from coldsync.embedded import is_embedded
from coldsync.instantly.client import CampaignStatus, InstantlyClient
from coldsync.instantly.errors import (
    AuthenticationError,
    InstantlyError,
    NotFoundError,
    PlanError,
    ScopeError,
    TransportError,
)
from coldsync.logs import configure_logging
from coldsync.redact import redact, redact_data
from coldsync.routes import Route
from coldsync.settings import CONFIG_KEYS, Settings, SettingsError, SettingsSources, resolve
from coldsync.store import DNC_REJECT_COUNTS_SQL, Store
from coldsync.sync import CAMPAIGN_SETTINGS, STATUS_NAMES
from coldsync.transport import OutboundURLError, check_outbound_url
from coldsync.warehouse import Warehouse, WarehouseConfigError, WarehouseError, connect
from coldsync.warehouse.base import WarehouseBusyError
from coldsync.warehouse.migrate import UNSEEDED, check_source, read_config
from coldsync.warehouse.schema import (
    SCHEMA_VERSION,
    SOURCE_BINDING_KEY,
    SOURCE_COLUMNS,
    TABLES,
    VIEW_NAME,
    VIEWS_FINGERPRINT_KEY,
    source_binding_problem,
    views,
    views_fingerprint,
)
from coldsync.webhooks.ops import status as webhook_status

Status = Literal["pass", "warn", "fail", "skip"]

CHECK_NAMES = (
    "settings", "instantly url", "instantly key", "warehouse", "schema", "source table", "config rows", "as_of clock",
    "routes", "source binding",
    "SMB campaign", "Midsize campaign", "inventory headroom", "ready leads", "do-not-contact list",
    "workspace block list", "webhooks",
)

VIEW_COLUMNS = (*(c.name for c in SOURCE_COLUMNS), "sequence_target", "attempt_num", "last_completed_at",
                "priority")

SETUP_FIX = "run `python setup.py` (idempotent: adds what is missing, never drops data)"
STATE_COUNT_SQL = "SELECT campaign_id, COUNT(*) AS leads FROM `{ds}.ops_inst_state` GROUP BY campaign_id"

ClientFactory = Callable[[Settings], InstantlyClient]
WarehouseFactory = Callable[[Settings], Warehouse]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Validation:
    """The checks' results, in order; `mode` is live or embedded (unknown when settings failed)."""

    checks: list[Check] = field(default_factory=list)
    mode: str = "unknown"
    warehouse: str = ""
    busy: bool = False  # the DuckDB file is held by another process (a running sync)

    def add(self, name: str, status: Status, detail: str, fix: str = "") -> Check:
        check = Check(name, status, redact(detail), redact(fix))
        self.checks.append(check)
        return check

    def skip_rest(self, why: str) -> None:
        done = {c.name for c in self.checks}
        for name in CHECK_NAMES:
            if name not in done:
                self.add(name, "skip", why)

    def status_of(self, name: str) -> Status | None:
        return next((c.status for c in self.checks if c.name == name), None)

    @property
    def exit_code(self) -> ExitCode:
        failed = [c for c in self.checks if c.status == "fail"]
        if any(c.name == "settings" for c in failed):
            return ExitCode.BAD_CONFIG
        if self.busy and [c.name for c in failed] == ["warehouse"]:
            return ExitCode.LOCK_HELD  # a sync runs: try again later, as the sync's own exit 3
        return ExitCode.CHECK_FAILED if failed else ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": int(self.exit_code), "mode": self.mode, "warehouse": self.warehouse,
                "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        """The checks as JSON, every string in it redacted (coldsync.redact.redact_data)."""
        return json.dumps(redact_data(self.to_dict()), indent=2)

    def render_markdown(self) -> str:
        """The checks that failed or warn, with their fixes, for the job summary (redacted: coldsync.redact)."""
        return redact(self._markdown())

    def _markdown(self) -> str:
        verdict = "✅ ready" if self.ok else "❌ NOT ready"
        out = [f"### {verdict}: coldsync environment check ({self.mode} mode)", "", "| Check | Status | Detail | Fix |",
               "|---|---|---|---|"]
        for check in self.checks:
            if check.status in ("fail", "warn"):
                cells = (check.name, check.status.upper(), check.detail, check.fix)
                out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(out) + "\n"

    def render_text(self) -> str:
        """The checks as text lines with their fixes, redacted (coldsync.redact)."""
        return redact(self._text())

    def _text(self) -> str:
        width = max(len(c.name) for c in self.checks) if self.checks else 10
        lines = [f"coldsync environment check ({self.mode} mode{', ' + self.warehouse if self.warehouse else ''})"]
        for check in self.checks:
            lines.append(f"  {check.status.upper():<4}  {check.name:<{width}}  {check.detail}")
            if check.fix and check.status in ("fail", "warn"):
                lines.append(f"        {'':<{width}}  fix: {check.fix}")
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in ("pass", "warn", "fail", "skip")}
        verdict = "ready" if self.ok else "NOT ready"
        lines.append(f"{verdict}: {counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
                     f"{counts['skip']} skipped (exit {int(self.exit_code)})")
        return "\n".join(lines)


def _default_client(settings: Settings) -> InstantlyClient:
    # Two attempts: a check should answer within seconds, not ride out a long outage.
    return InstantlyClient(settings.instantly_api_key.reveal(), base_url=settings.instantly_base_url,
                           max_per_second=settings.instantly_max_per_second,
                           max_per_minute=settings.instantly_max_per_minute, max_attempts=2, backoff_max=2.0,
                           request_deadline=settings.instantly_request_deadline_seconds)


def run_checks(sources: SettingsSources, *, production: bool = False, now: dt.datetime | None = None,
               client_factory: ClientFactory = _default_client,
               connect_warehouse: WarehouseFactory = connect) -> Validation:
    """Run every check in order; never raises for what it checks. The warehouse is closed at the end."""
    result = Validation()
    try:
        first = resolve(sources)
    except SettingsError as exc:
        result.add("settings", "fail", "; ".join(str(p) for p in exc.problems),
                   "each problem above names the setting, where it came from and its fix")
        result.skip_rest("settings did not parse")
        return result
    configure_logging(first.log_level, first.secrets())
    embedded = is_embedded(first)
    result.mode = "embedded" if embedded else "live"
    result.add("settings", "pass", "every setting parsed (the config table is read after the schema check)")

    client = None
    if _check_base_url(result, first, production):
        client = _check_key(result, first, embedded, production, client_factory)
    elif not _key_absent(result, first, embedded, production):  # the key is never sent to a refused URL
        result.add("instantly key", "skip", "not checked: INSTANTLY_BASE_URL is refused")
    try:
        warehouse = _check_warehouse(result, first, production, connect_warehouse)
        if warehouse is None:
            _campaigns_only(result, first, client, "a sync holds the warehouse" if result.busy
                            else "the warehouse is not reachable")
            return result
        try:
            _check_warehouse_contents(result, first, sources, warehouse, client, now)
        except WarehouseError as exc:  # a call the checks do not expect to fail (a permission, an outage)
            name = next((n for n in CHECK_NAMES if result.status_of(n) is None), CHECK_NAMES[-1])
            detail, fix = _warehouse_failure(exc, first)
            result.add(name, "fail", f"the warehouse failed: {detail}", fix)
            result.skip_rest("the warehouse failed")
        finally:
            warehouse.close()
    finally:
        if client is not None:
            client.close()
    return result


def _check_base_url(result: Validation, settings: Settings, production: bool) -> bool:
    """INSTANTLY_BASE_URL under the outbound-URL rule; in production also https to a host other than this machine
    (the settings already refused what the rule refuses everywhere). False when it fails."""
    try:
        url = check_outbound_url(settings.instantly_base_url, production=production)
    except OutboundURLError as exc:
        result.add("instantly url", "fail", f"INSTANTLY_BASE_URL {exc.problem}", exc.fix)
        return False
    result.add("instantly url", "pass", f"{url}: https" if url.startswith("https://")
               else f"{url}: plain http to this machine (the local simulator), refused in production")
    return True


def _key_absent(result: Validation, settings: Settings, embedded: bool, production: bool) -> bool:
    """Record the key check when there is no key to send (embedded mode, or empty); True when it did."""
    if embedded:
        detail = ("no INSTANTLY_API_KEY and no BQ_PROJECT: embedded mode (sync_once.py uses the local Instantly "
                  "simulator and the DuckDB demo warehouse); the Instantly checks are skipped")
        fix = "set the INSTANTLY_API_KEY secret and BQ_PROJECT (docs/OPERATIONS.md, GitHub setup)"
        result.add("instantly key", "fail" if production else "warn", detail, fix)
        return True
    if not settings.instantly_api_key:
        result.add("instantly key", "fail", "INSTANTLY_API_KEY is empty",
                   "set INSTANTLY_API_KEY (GitHub secret, environment, .env or config/secrets/instantly-config.json)")
        return True
    return False


def _check_key(result: Validation, settings: Settings, embedded: bool, production: bool,
               client_factory: ClientFactory) -> InstantlyClient | None:
    if _key_absent(result, settings, embedded, production):
        return None
    client = client_factory(settings)
    try:
        client.check_key()
    except AuthenticationError:
        result.add("instantly key", "fail", "Instantly refused the key (http 401)",
                   "create an API key in Instantly (Settings > Integrations > API Keys, API V2) and set "
                   "INSTANTLY_API_KEY to exactly that value, without quotes or spaces")
    except PlanError:
        result.add("instantly key", "fail", "Instantly answered 402: the workspace has no active paid plan",
                   "renew the workspace's plan in Instantly (the API needs a paid plan)")
    except ScopeError:
        result.add("instantly key", "fail", "Instantly answered 403: the key lacks a scope the sync needs",
                   "create a key with the least scopes listed per operation in docs/OPERATIONS.md (section "
                   "1.3, never all:all) and set INSTANTLY_API_KEY to it")
    except TransportError as exc:
        result.add("instantly key", "fail", f"Instantly could not be reached at {settings.instantly_base_url}: "
                   f"{exc.summary}", "check the network and INSTANTLY_BASE_URL")
    except InstantlyError as exc:
        result.add("instantly key", "fail", f"the key check failed: {exc.summary} (http {exc.http_status})",
                   "try again; if it persists, check Instantly's status page")
    else:
        result.add("instantly key", "pass", f"present and accepted by {settings.instantly_base_url}")
        return client
    client.close()
    return None


def _check_warehouse(result: Validation, settings: Settings, production: bool,
                     connect_warehouse: WarehouseFactory) -> Warehouse | None:
    if production and not settings.uses_bigquery:
        result.add("warehouse", "fail", "BQ_PROJECT is empty: the warehouse would be a DuckDB file on this machine, "
                   "lost with a CI runner after each run (history, DNC and cooldown with it)",
                   "set the repository variable BQ_PROJECT (and credentials: docs/OPERATIONS.md)")
        return None
    try:
        warehouse = connect_warehouse(settings)
    except WarehouseBusyError as exc:  # a sync has the DuckDB file: nothing is wrong, it is just not now
        result.busy = True
        result.add("warehouse", "fail", f"busy: {exc}", "run the check again when that run has ended")
        return None
    except WarehouseError as exc:  # credentials, a permission, the dataset's location (each with its fix), ...
        detail, fix = _warehouse_failure(exc, settings)
        result.add("warehouse", "fail", f"cannot open the warehouse: {detail}", fix)
        return None
    try:
        warehouse.query("SELECT 1 AS ok", label="validate.ping")
    except WarehouseError as exc:
        warehouse.close()
        detail, fix = _warehouse_failure(exc, settings)
        result.add("warehouse", "fail", f"the warehouse does not answer: {detail}", fix)
        return None
    result.warehouse = warehouse.describe()
    resources = getattr(warehouse, "resources", None)
    result.add("warehouse", "pass", f"reachable: {warehouse.describe()}"
                                    + (f"; {resources()}" if callable(resources) else ""))
    return warehouse


def _warehouse_failure(exc: WarehouseError, settings: Settings) -> tuple[str, str]:
    """(detail, fix) of a warehouse failure: a configuration error (credentials, a permission, the dataset's
    location) carries its own fix."""
    if isinstance(exc, WarehouseConfigError):
        return exc.problem, exc.fix
    return str(exc), _warehouse_fix(settings)


def _warehouse_fix(settings: Settings) -> str:
    if settings.uses_bigquery:
        return ("check BQ_PROJECT and the credentials (BIGQUERY_CREDENTIALS_JSON or keyless auth); the service "
                "account needs BigQuery Job User on the project and BigQuery Data Editor on the dataset")
    return "check DUCKDB_PATH; if another sync is running, wait for it to finish"


def _check_warehouse_contents(result: Validation, first: Settings, sources: SettingsSources, warehouse: Warehouse,
                              client: InstantlyClient | None, now: dt.datetime | None) -> None:
    # Tables and view.
    problems: list[str] = []
    missing_tables = []
    for spec in TABLES:
        columns = warehouse.existing_columns(spec.name)
        if columns is None:
            missing_tables.append(spec.name)
            continue
        lacking = [c for c in spec.column_names() if c not in columns]
        if lacking:
            problems.append(f"{spec.name} lacks {', '.join(lacking)}")
    if missing_tables:
        problems.insert(0, f"missing table(s) {', '.join(missing_tables)} in dataset {warehouse.dataset}")
    for name, _sql in views(first.routing):
        view = warehouse.existing_columns(name)
        if view is None:
            problems.append(f"missing view {name}")
            continue
        lacking = [c for c in VIEW_COLUMNS if c not in view] if name == VIEW_NAME else []
        if lacking:
            problems.append(f"{VIEW_NAME} lacks {', '.join(lacking)}")
    if problems:
        result.add("schema", "fail", "; ".join(problems), SETUP_FIX)
    else:
        result.add("schema", "pass", f"dataset {warehouse.dataset}: {len(TABLES)} tables and the views "
                   f"{', '.join(name for name, _sql in views(first.routing))} with the expected columns")
    source_problems = check_source(warehouse, first.source_table, first.routing.source_columns)
    if source_problems:
        result.add("source table", "fail", "; ".join(source_problems),
                   "load your leads into SOURCE_TABLE, or point it at a view with the contract's columns")
    else:
        result.add("source table", "pass", f"{first.source_table} has the contract's columns")
    if missing_tables:
        _campaigns_only(result, first, client, "the schema is incomplete")
        return

    # Config rows, then the settings again with the config table.
    try:
        config = read_config(warehouse)
    except WarehouseError as exc:
        result.add("config rows", "fail", f"cannot read the config table: {exc}", SETUP_FIX)
        result.skip_rest("the config table is unreadable")
        return
    expected = {"schema_version", *(key for key, spec in CONFIG_KEYS.items() if spec.name not in UNSEEDED)}
    missing = sorted(expected - set(config))
    version = config.get("schema_version")
    if missing:
        result.add("config rows", "fail", f"missing config row(s): {', '.join(missing)}", SETUP_FIX)
    elif not isinstance(version, int) or version < SCHEMA_VERSION:
        result.add("config rows", "fail", f"schema_version is {version}, this code needs {SCHEMA_VERSION}",
                   SETUP_FIX)
    else:
        result.add("config rows", "pass", f"{len(expected)} config rows present (schema version {version})")
    try:
        settings = resolve(sources, config)
    except SettingsError as exc:
        result.add("settings", "fail", "the config table holds bad values: "
                   + "; ".join(str(p) for p in exc.problems),
                   "set the named rows right with `python setup.py --set KEY=VALUE` (checked like the setting)")
        result.skip_rest("the settings from the config table did not parse")
        return

    as_of = config.get("as_of")
    if as_of not in (None, ""):
        # Shown to the operator as the fix, never executed.
        table = ".".join(p for p in (settings.bq_project, warehouse.dataset, "config") if p)
        result.add("as_of clock", "warn",
                   f"config row as_of = {as_of}: the eligibility view's 'now' is frozen there (cooldown and the "
                   "status report count from it); meant for simulations only",
                   f"delete the row: DELETE FROM `{table}` WHERE key = 'as_of'")  # noqa: S608
    else:
        result.add("as_of clock", "pass", "no as_of row: the view uses the current time")

    _check_routes(result, settings, config)
    _check_source_binding(result, warehouse, config)
    measured = _check_campaigns(result, settings, client)
    _check_headroom(result, settings, warehouse, measured)
    _check_ready(result, settings, warehouse, now)
    _check_dnc(result, warehouse)
    _check_workspace_block_list(result, client)
    _check_webhooks(result, settings, client)


def _check_source_binding(result: Validation, warehouse: Warehouse, config: dict[str, object]) -> None:
    """The views read SOURCE_TABLE (the sync refuses to run, exit 2, when they read another table)."""
    bound = config.get(SOURCE_BINDING_KEY)
    problem = source_binding_problem(str(bound) if bound else None, warehouse.source_table, engine=warehouse.engine)
    if problem:
        result.add("source binding", "fail", problem, f"run `python setup.py` (it rebinds the views to "
                   f"{warehouse.source_table})")
    elif not bound:
        result.add("source binding", "warn", "the views do not record which source table they read (built by "
                   "an older version)", "run `python setup.py` (the next live sync run also records it)")
    else:
        result.add("source binding", "pass", f"the views read {bound}, the SOURCE_TABLE setting")


def _check_routes(result: Validation, settings: Settings, config: dict[str, object]) -> None:
    """Which routes are in effect and where they come from; a warning when a config-table `routes` row is
    overridden (by ROUTES or the routes file), so nobody edits a row that does nothing."""
    routing = settings.routing

    def describe(route: Route) -> str:
        share = f", share {float(route.share * 100):g}%" if route.share is not None else ""
        arms = " / ".join(f"{arm.name} {arm.weight}%" for arm in route.arms) if len(route.arms) > 1 else ""
        return f"{route.name}{f' (arms {arms})' if arms else ''}{share}"

    detail = (f"{len(routing.routes)} route(s) from {routing.origin}: "
              + "; ".join(describe(route) for route in routing.routes))
    table_row = config.get("routes")
    built = config.get(VIEWS_FINGERPRINT_KEY)
    warnings: list[tuple[str, str]] = []
    if table_row not in (None, "") and not routing.origin.startswith("config table"):
        warnings.append((f"the config table's `routes` row is NOT used: {routing.origin} wins over it",
                         "delete the row, or remove the file / ROUTES setting if the row is meant"))
    if built != views_fingerprint(routing, settings.outcome_table):
        warnings.append(("the views (v_ready_for_instantly, v_lead_scores, ...) were built for other routes or "
                         "an older version: what they show is not what a run sends",
                         "run `python setup.py` (the next live sync run also rebuilds them)"))
    if warnings:
        result.add("routes", "warn", f"{detail}. " + "; ".join(w for w, _fix in warnings),
                   "; ".join(fix for _w, fix in warnings))
    else:
        result.add("routes", "pass", detail)


def _check_dnc(result: Validation, warehouse: Warehouse) -> None:
    """Do-not-contact entries that block nobody (v_dnc_rejects): a warning with the reasons."""
    if result.status_of("schema") == "fail":
        result.add("do-not-contact list", "skip", "the schema is incomplete")
        return
    try:
        rows = warehouse.query(DNC_REJECT_COUNTS_SQL, label="validate.dnc_rejects")
    except WarehouseError as exc:
        result.add("do-not-contact list", "fail", f"cannot read v_dnc_rejects: {exc}", SETUP_FIX)
        return
    counts = {str(r["reason"]): int(r["n"]) for r in rows}
    if not counts:
        result.add("do-not-contact list", "pass", "every entry is usable (v_dnc_rejects is empty)")
        return
    detail = "; ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
    result.add("do-not-contact list", "warn", f"{sum(counts.values())} value(s) cannot be used: {detail}",
               "list them with SELECT * FROM v_dnc_rejects, then fix the value (an address in `email`, a "
               "domain in `domain`) or delete the row")


def _check_workspace_block_list(result: Validation, client: InstantlyClient | None) -> None:
    """Instantly's own safety net: the workspace adds unsubscribes to its block list."""
    if client is None:
        result.add("workspace block list", "skip", "no Instantly client (embedded mode or no accepted key)")
        return
    try:
        setting = client.workspace_add_unsub_to_block()
    except InstantlyError as exc:
        result.add("workspace block list", "warn", f"could not read the workspace ({exc.summary})",
                   "give the key the workspaces:read scope to let this check run")
        return
    if setting is None:
        result.add("workspace block list", "pass", "the workspace does not report add_unsub_to_block (not checked)")
    elif setting:
        result.add("workspace block list", "pass", "Instantly adds unsubscribes to the workspace block list")
    else:
        result.add("workspace block list", "warn",
                   "Instantly does NOT add unsubscribes to the workspace block list (add_unsub_to_block is off): "
                   "an unsubscribe is blocked in Instantly only once the next sync has mirrored it",
                   "turn on the workspace setting that adds unsubscribed leads to the block list (API field "
                   "add_unsub_to_block, PATCH /api/v2/workspaces/current)")


def _check_webhooks(result: Validation, settings: Settings, client: InstantlyClient | None) -> None:
    """With WEBHOOKS_ENABLED: every consumed event type has an active coldsync webhook (coldsync.webhooks.ops.status:
    listWebhook). A disabled or missing one is a warning, not a failure: the sync's polling still catches every
    unsubscribe, within one run instead of seconds."""
    if not settings.webhooks_enabled:
        result.add("webhooks", "pass", "off (WEBHOOKS_ENABLED=false): suppression by polling alone, each run")
        return
    if client is None:
        result.add("webhooks", "skip", "no Instantly client (embedded mode or no accepted key)")
        return
    try:
        outcome = webhook_status(client, settings.instantly_webhook_secret.reveal() or None)
    except PlanError:
        result.add("webhooks", "warn", "Instantly answered 402: this workspace's plan has no webhooks, so nothing is "
                   "delivered and each run's backfill finds nothing", "set WEBHOOKS_ENABLED=false (polling alone "
                   "keeps every unsubscribe, within one run), or move to a plan with webhooks")
        return
    except InstantlyError as exc:
        result.add("webhooks", "warn", f"could not list the webhooks ({exc.summary})",
                   "give the key the webhooks:read scope to let this check run")
        return
    problems = [line.render() for line in outcome.lines if line.state != "active"]
    if problems:
        result.add("webhooks", "warn", "; ".join(problems),
                   "run `python sync_once.py --webhooks resume` for a disabled one, `python sync_once.py --webhooks "
                   "register URL` for a missing, duplicate or wrong-secret one (docs/OPERATIONS.md section 12)")
    else:
        result.add("webhooks", "pass", f"{len(outcome.lines)} webhooks active, one per consumed event type")


def _campaigns_only(result: Validation, settings: Settings, client: InstantlyClient | None, why: str) -> None:
    """Without a usable warehouse only the campaigns can be checked (with the settings from outside it)."""
    for name in ("schema", "source table", "config rows", "as_of clock"):
        if result.status_of(name) is None:
            result.add(name, "skip", why)
    _check_campaigns(result, settings, client)
    result.skip_rest(why)


def _check_campaigns(result: Validation, settings: Settings,
                     client: InstantlyClient | None) -> dict[str, int] | None:
    """Check both campaigns; return Instantly's lead count per campaign id when it could be read."""
    routing = settings.routing
    where = {route.name: CAMPAIGN_SETTINGS[route.name].upper() for route in routing.routes
             if routing.is_default and route.name in CAMPAIGN_SETTINGS}
    campaigns = [(route.name if len(route.arms) == 1 else f"{route.name}/{arm.name}", route.name, arm.campaign_id)
                 for route in routing.routes for arm in route.arms]
    if client is None:
        why = ("embedded mode: the local simulator creates the demo campaigns" if result.mode == "embedded"
               else "no accepted Instantly key")
        for label, _route, _cid in campaigns:
            result.add(f"{label} campaign", "skip", why)
        return None
    ids: list[str] = []
    for label, route_name, campaign_id in campaigns:
        setting = where.get(route_name, f"the campaign_id of route {route_name!r} in {routing.origin}")
        check = f"{label} campaign"
        if not campaign_id:
            result.add(check, "fail", f"{setting} is empty",
                       f"set {setting} (repository variable, environment or .env) or the `{setting.lower()}` row "
                       "of the config table to the campaign's id (in its Instantly URL)")
            continue
        try:
            campaign = client.get_campaign(campaign_id)
        except NotFoundError:
            result.add(check, "fail", f"no campaign {campaign_id} in the key's workspace",
                       f"copy the id from the campaign's URL in Instantly into {setting}")
            continue
        except InstantlyError as exc:
            result.add(check, "fail", f"could not read campaign {campaign_id}: {exc.summary} (http {exc.http_status})",
                       "try again; check the key's scopes")
            continue
        ids.append(campaign_id)
        status_name = STATUS_NAMES.get(campaign.status, f"status {campaign.status}")
        label = f"'{campaign.name}' ({campaign_id}) is {status_name}"
        verdict: Status
        if campaign.status == CampaignStatus.ACTIVE:
            verdict, detail, fix = "pass", label, ""
        elif campaign.status in (CampaignStatus.DRAFT, CampaignStatus.PAUSED):
            held = ("leads are added but wait, nothing is sent" if settings.allow_paused_campaigns
                    else "the sync adds no leads to it")
            verdict = "warn"
            detail = f"{label}: {held}. This is the most common reason no leads show in the campaigns"
            fix = (f"in Instantly open Campaigns > '{campaign.name}' and press "
                   f"{'Launch' if campaign.status == CampaignStatus.DRAFT else 'Resume'} (or set "
                   "ALLOW_PAUSED_CAMPAIGNS=true to add leads while it waits)")
        else:
            verdict, detail = "warn", f"{label}: the sync holds leads back from it"
            fix = "fix the campaign in Instantly (sending accounts, bounce protection, or relaunch it)"
        # Settings that hurt this job (coldsync.campaign_health) go on the same row, the worst status wins.
        hurt = campaign_settings_problems(campaign.raw, dt.datetime.now(dt.UTC))
        if hurt:
            worst = "fail" if any(p.severity == "fail" for p in hurt) else "warn"
            verdict = "fail" if "fail" in (verdict, worst) else "warn"
            detail += "; its settings hurt this job: " + "; ".join(f"{p.setting}: {p.message}" for p in hurt)
            fix = "; ".join([f for f in (fix, *(p.fix for p in hurt)) if f])
        result.add(check, verdict, detail, fix)
    if not ids:
        return None
    try:
        return {a.campaign_id: a.leads_count for a in client.campaign_analytics(ids)}
    except InstantlyError:
        return None


def _check_headroom(result: Validation, settings: Settings, warehouse: Warehouse,
                    measured: dict[str, int] | None) -> None:
    managed = {cid for cid in settings.campaign_ids().values() if cid}
    try:
        rows = warehouse.query(STATE_COUNT_SQL, label="validate.state_count")
    except WarehouseError as exc:
        result.add("inventory headroom", "fail", f"cannot count the managed leads: {exc}", SETUP_FIX)
        return
    tracked = sum(int(r["leads"]) for r in rows if r["campaign_id"] in managed or not managed)
    if measured is not None and set(measured) == managed:
        inventory, where = max(sum(measured.values()), tracked), "in Instantly"
    else:
        inventory, where = tracked, "tracked by the warehouse"
    cap = settings.inventory_cap
    room = cap - inventory
    detail = f"{inventory:,} leads {where} of cap {cap:,}: room for {max(room, 0):,}"
    if room <= 0:
        result.add("inventory headroom", "warn", f"{detail}; top-up adds nothing until drains free room",
                   "wait for sequences to finish, or raise INVENTORY_CAP (the inventory_cap config row)")
    else:
        result.add("inventory headroom", "pass", detail)


def _check_ready(result: Validation, settings: Settings, warehouse: Warehouse, now: dt.datetime | None) -> None:
    if result.status_of("schema") == "fail" or result.status_of("source table") == "fail":
        result.add("ready leads", "skip", "the view or the source table is missing")
        return
    store = Store.for_settings(warehouse, "validate", now or dt.datetime.now(dt.UTC), settings)
    try:
        counts, _unscored = store.ready_counts()
    except WarehouseError as exc:
        diagnosis = store.diagnose_routing()
        if diagnosis is None:
            result.add("ready leads", "fail", f"the ready leads could not be read ({exc}); every part of the "
                       "routing runs on its own", "check the warehouse (permissions, an outage), or run "
                       "`python setup.py`")
        else:
            result.add("ready leads", "fail", f"the routes' SQL does not run in the warehouse: {diagnosis} ({exc})",
                       f"fix the routing in {settings.routing.origin}, or run `python setup.py`")
        return
    segments = [route.name for route in settings.routing.routes]
    detail = ", ".join(f"{s} {counts.get(s, 0):,}" for s in segments) + " ready"
    if counts.get(None):
        detail += f", {counts[None]:,} matching no route"
    empty = [s for s in segments if not counts.get(s)]
    if empty:
        result.add("ready leads", "warn", f"{detail}: nothing to add to {', '.join(empty)}",
                   "load more leads into the source table; `python sync_once.py --report` shows how many are "
                   "blocked by the DNC list, managed, or in cooldown")
    else:
        result.add("ready leads", "pass", detail)
