"""Routes: which campaign each ready lead goes to, how much of the cap each route holds, A/B arms,
the priority score and the custom variables. Configured, not coded; checked once, at load.

A routing document (TOML in a file, TOML or JSON in a setting or the config table) looks like::

    source_columns = ["industry", "employee_count"]     # extra source columns the SQL below may use
    score = "COALESCE(employee_count, 0)"                # optional; PRIORITY_EXPRESSION wins over it

    [custom_variables]                                   # default of every route: key -> source column
    company = "company_name"

    [[routes]]                                           # ordered: the first route whose `when` holds wins
    name = "SaaS"
    when = "industry = 'saas'"
    campaign_id = "..."
    share = 40                                           # percent of INVENTORY_CAP (optional)
    supply_days = 3                                      # optional, overrides SUPPLY_DAYS; 0: sizing off

    [[routes]]
    name = "Everyone else"
    when = "TRUE"                                        # omitted `when` means TRUE as well; a route after
                                                         # such a catch-all could never match: refused
    ab_salt = "2026-q4"                                  # optional; default: the route's name
    arms = [{ name = "A", campaign_id = "...", weight = 50 },
            { name = "B", campaign_id = "...", weight = 50 }]

Where the document comes from, first found wins: the ROUTES setting given as a flag, in the environment
or `.env`; the file ROUTES_FILE (default `config/routes.toml`) when it exists; the config table's
`routes` row. Deployed configuration beats the table, as for every other setting (README: configuration):
a reviewed file in the repository cannot be overridden by a row nobody reviewed. With none of them, the
default is exactly the original pair: SMB (`annual_revenue` unknown or under SMB_REVENUE_THRESHOLD) to
SMB_CAMPAIGN_ID, everyone else (Midsize) to MIDSIZE_CAMPAIGN_ID.

Every SQL text a user gives is parsed (sqlglot, BigQuery dialect), checked (known columns only; no
subquery, aggregate, window, parameter or volatile function such as RAND() or CURRENT_DATE; a `when` must
give true or false in every engine) and embedded as sqlglot renders it again, never as typed: the
generated SQL can hold nothing but the parsed expression (a comment is accepted and dropped by the
re-rendering, so it can never comment out the SQL around it).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.simplify import simplify

from coldsync.redact import redact
from coldsync.suppression import address_key

# Columns of the source contract, as the candidates present them: `email` trimmed and lower-cased,
# `annual_revenue` a NUMERIC or NULL (unreadable revenue is NULL), the other five as text.
CONTRACT_COLUMNS: tuple[str, ...] = (
    "email", "first_name", "last_name", "company_name", "domain", "location", "country", "annual_revenue",
)
# What the warehouse knows of the person's past, for the score: the attempt this add would be (1: never
# contacted) and when the last attempt ended (NULL: never).
HISTORY_COLUMNS: tuple[str, ...] = ("attempt_num", "last_completed_at")

# Names the generated SQL uses for its own columns: an extra source column may not take one.
RESERVED_COLUMNS: frozenset[str] = frozenset({
    "raw_email", "trimmed_email", "raw_revenue", "email_problem", "untagged_email", "email_key",
    "revenue_unreadable", "duplicate_rank", "sequence_target", "score", "priority", "route_rank", "arm",
    "never_contacted_points", "revenue_points", "smb_threshold", "cooldown_days", "as_of", "reason", "skipped",
    "k0", "k1", "k2", "k3", "status", "campaign_id", "managed",
    # the ready queue's build flags rules 3-5 on every candidate (schema.candidate_ctes / routed_cte keep_all)
    "suppressed", "resting", "ready",
    # the ready queue's own columns (coldsync.warehouse.schema.READY_QUEUE_COLUMNS)
    "queue_route", "queue_score", "queue_pos", "queue_boundary", "queue_outside_ready", "queue_outside_unscored",
})

THRESHOLD_PLACEHOLDER = "{smb_revenue_threshold}"
"""In the default SMB route only: stands for the revenue threshold (a query parameter in the sync's read,
the config table's value in the view)."""

DEFAULT_CUSTOM_VARIABLES: tuple[tuple[str, str], ...] = (
    ("company", "company_name"), ("domain", "domain"), ("location", "location"), ("country", "country"),
)

# Lead fields of POST /api/v2/leads/add (the official spec's request schema): a custom variable may not
# take one of these names, or Instantly would read it as the field.
LEAD_FIELDS: frozenset[str] = frozenset({
    "email", "personalization", "website", "last_name", "first_name", "company_name", "job_title", "phone",
    "lt_interest_status", "pl_value_lead", "assigned_to", "skip_if_in_workspace", "skip_if_in_campaign",
    "skip_if_in_list", "blocklist_id", "verify_leads_for_lead_finder", "verify_leads_on_import", "campaign",
    "list_id", "custom_variables",
})

NEVER_CONTACTED_POINTS = 10**15
"""Default score: a lead never contacted outranks any revenue (revenue points stay below 10**15)."""

NEVER_CONTACTED_SQL = f"IF(last_completed_at IS NULL, {NEVER_CONTACTED_POINTS}, 0)"
REVENUE_POINTS_SQL = f"LEAST(COALESCE(annual_revenue, -1), {NEVER_CONTACTED_POINTS - 1})"
DEFAULT_SCORE = f"{NEVER_CONTACTED_SQL} + {REVENUE_POINTS_SQL}"
"""Today's order as one number: never contacted first (10**15 points), then higher revenue (its value in
USD; unknown revenue -1, so after a revenue of 0), ties by email. Each part is a column of v_lead_scores."""

SCORE_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("never_contacted_points", NEVER_CONTACTED_SQL), ("revenue_points", REVENUE_POINTS_SQL),
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_VARIABLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CAMPAIGN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_EXPRESSION_LENGTH = 4000
MAX_ROUTES = 50

_FORBIDDEN_NODES: tuple[tuple[type[Any], str], ...] = (
    (exp.Query, "a subquery"), (exp.Subquery, "a subquery"), (exp.AggFunc, "an aggregate function"),
    (exp.Window, "a window function"), (exp.Parameter, "a query parameter"), (exp.Placeholder, "a placeholder"),
    (exp.Star, "*"), (exp.Command, "a command"),
)
# Functions whose value can change between two computations of the same row: the count of ready leads and
# the read of them would disagree on a lead's route or order. sqlglot parses each BigQuery spelling into
# one of these nodes (SESSION_USER without parentheses is a column, refused as unknown); the names catch a
# spelling it leaves as an anonymous function (NOW()).
_VOLATILE_NODES: tuple[type[exp.Expr], ...] = (
    exp.Rand, exp.Randn, exp.Randstr, exp.Uuid, exp.CurrentDate, exp.CurrentDatetime, exp.CurrentTime,
    exp.CurrentTimestamp, exp.CurrentTimestampLTZ, exp.Localtime, exp.Localtimestamp, exp.SessionUser,
    exp.CurrentUser,
)
_VOLATILE_NAMES: frozenset[str] = frozenset({
    "RAND", "RANDOM", "GENERATE_UUID", "UUID", "NOW", "CURRENT_DATE", "CURRENT_DATETIME", "CURRENT_TIME",
    "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP", "SESSION_USER", "CURRENT_USER",
})
_FIX_VOLATILE = ("remove it: a lead's route and score must be the same every time they are computed (the count "
                "of ready leads and their read must agree), so use only the row's own columns and literals")

# Scalar functions BigQuery documents as returning BOOL, as sqlglot parses them (REGEXP_CONTAINS is a
# predicate already) and by name (in case a spelling stays an anonymous function). Other functions give a
# value, which DuckDB would take by truthiness and BigQuery refuses in a WHEN.
_BOOLEAN_FUNCTIONS: tuple[str, ...] = (
    "STARTS_WITH", "ENDS_WITH", "REGEXP_CONTAINS", "CONTAINS_SUBSTR", "IS_INF", "IS_NAN",
)
_BOOLEAN_FUNCTION_NODES: tuple[type[exp.Expr], ...] = (
    exp.StartsWith, exp.EndsWith, exp.RegexpLike, exp.Contains, exp.IsInf, exp.IsNan,
)
_FIX_RESULT = ("make every result of IF, CASE, IFNULL and COALESCE a condition, "
              "e.g. IF(country = 'US', annual_revenue > 5, FALSE)")


@dataclass(frozen=True)
class RoutingProblem:
    """One thing wrong with the routing document: where (`setting`, e.g. ROUTES_FILE config/routes.toml,
    route 'SaaS', field `when`), what, and the fix."""

    setting: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}. Fix: {self.fix}"


class RoutingError(Exception):
    """The routing document cannot be used; raised at load, before anything is touched."""

    def __init__(self, problems: Sequence[RoutingProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Arm:
    """One campaign of a route, with its weight (percent of the route's leads; the weights add to 100)."""

    name: str
    campaign_id: str
    weight: int


@dataclass(frozen=True)
class Route:
    """A route: the `sequence_target` of its leads is `name`; `condition` is checked BigQuery SQL."""

    name: str
    condition: str
    arms: tuple[Arm, ...]
    share: Fraction | None = None  # of INVENTORY_CAP, 0 < share <= 1; None: sized by what the campaigns send
    supply_days: int | None = None  # None: the SUPPLY_DAYS setting
    ab_salt: str = ""
    custom_variables: tuple[tuple[str, str], ...] = DEFAULT_CUSTOM_VARIABLES

    @property
    def campaign_ids(self) -> tuple[str, ...]:
        return tuple(arm.campaign_id for arm in self.arms)

    def arm_for(self, email: str) -> Arm:
        """The arm of a lead: stable, engine-independent (see `arm_index`)."""
        return self.arms[arm_index(self.ab_salt or self.name, email, [a.weight for a in self.arms])]


def arm_index(salt: str, email: str, weights: Sequence[int]) -> int:
    """Which of the weighted arms a lead belongs to.

    The bucket is the first 8 bytes (big-endian) of SHA-256(`salt` + U+001F + the person's suppression
    key, coldsync.suppression.address_key, so +tag and Gmail-dot variants of one person share an arm)
    modulo the weights' sum; arm i holds the buckets from the sum of the weights before it. Computed in
    Python only, so both warehouses and every run agree by construction. Raises ValueError for no
    weights or a weight below 1.
    """
    if not weights or any(w < 1 for w in weights):
        raise ValueError("arm weights must be positive integers")
    if len(weights) == 1:
        return 0
    key = address_key(email) or email
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % sum(weights)
    for index, weight in enumerate(weights):
        if bucket < weight:
            return index
        bucket -= weight
    raise AssertionError("unreachable: the bucket is below the weights' sum")  # pragma: no cover


@dataclass(frozen=True)
class Routing:
    """Everything the routing document decides, checked."""

    routes: tuple[Route, ...]
    source_columns: tuple[str, ...] = ()  # extra source columns declared by the user
    score: str = DEFAULT_SCORE  # checked SQL, higher first
    origin: str = "default"  # where the document came from (for messages)
    is_default: bool = True

    def campaign_ids(self) -> list[str]:
        return [cid for route in self.routes for cid in route.campaign_ids]

    def route(self, name: str | None) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def route_of_campaign(self, campaign_id: str | None) -> tuple[Route, Arm] | None:
        for route in self.routes:
            for arm in route.arms:
                if campaign_id is not None and arm.campaign_id.lower() == campaign_id.lower():
                    return route, arm
        return None

    def columns(self) -> tuple[str, ...]:
        """Source columns a condition, the score or a custom variable may name."""
        return CONTRACT_COLUMNS + self.source_columns


# ---------------------------------------------------------------------------------------------
# SQL the routing generates (one definition each, used by the views and by the sync's reads)
# ---------------------------------------------------------------------------------------------


def sql_string(value: str) -> str:
    """A BigQuery string literal of a checked name (route names hold no quote or backslash)."""
    if "'" in value or "\\" in value:
        raise ValueError("names embedded in SQL hold no quote or backslash")
    return f"'{value}'"


def route_case_sql(routing: Routing, threshold: str) -> str:
    """`sequence_target`: the name of the first route whose condition holds, else NULL (unrouted).
    `threshold` is the SQL of the SMB revenue threshold (used by the default routes only)."""
    whens = " ".join(f"WHEN ({route.condition.replace(THRESHOLD_PLACEHOLDER, threshold)}) "
                     f"THEN {sql_string(route.name)}" for route in routing.routes)
    return f"CASE {whens} END"


# ---------------------------------------------------------------------------------------------
# Checking user SQL
# ---------------------------------------------------------------------------------------------


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _non_condition(node: exp.Expr, boolean_columns: frozenset[str],
                   *, result: bool = False) -> tuple[exp.Expr, bool] | None:
    """The first part of `node` that is not a truth value in every engine, and whether that part is a result
    of IF, CASE, IFNULL or COALESCE; None when `node` is a condition.

    A condition is TRUE/FALSE, a predicate (comparison, IN, LIKE, IS, BETWEEN, ...), AND/OR/NOT of
    conditions, a column of `boolean_columns`, a function of _BOOLEAN_FUNCTIONS, or IF/CASE/IFNULL/COALESCE
    whose tests and results are conditions (a result may be NULL). `result`: `node` is such a result."""
    node = _unparen(node)
    if isinstance(node, (exp.Boolean, exp.Predicate, *_BOOLEAN_FUNCTION_NODES)):
        return None
    if result and isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Anonymous) and node.name.upper() in _BOOLEAN_FUNCTIONS:
        return None
    if isinstance(node, exp.Column):
        return None if node.name.lower() in boolean_columns else (node, result)
    parts: list[tuple[exp.Expr | None, bool]] = []
    if isinstance(node, exp.Not):
        parts = [(node.this, False)]
    elif isinstance(node, exp.Connector):
        parts = [(node.left, False), (node.right, False)]
    elif isinstance(node, exp.If):
        parts = [(node.this, False), (node.args.get("true"), True), (node.args.get("false"), True)]
    elif isinstance(node, exp.Case):
        for branch in node.args.get("ifs") or []:
            if node.this is None:  # searched CASE: each WHEN is a test; a simple CASE's WHENs are values
                parts.append((branch.this, False))
            parts.append((branch.args.get("true"), True))
        parts.append((node.args.get("default"), True))
    elif isinstance(node, exp.Coalesce):
        parts = [(node.this, True)] + [(e, True) for e in node.expressions]
    else:
        return node, result
    for part, is_result in parts:
        if part is not None:
            found = _non_condition(part, boolean_columns, result=is_result)
            if found is not None:
                return found
    return None


def _condition_problem(part: exp.Expr, is_result: bool, is_root: bool) -> tuple[str, str]:
    """The message and the fix for a `when` whose `part` is not a truth value."""
    text = part.sql(dialect="bigquery", comments=False)
    shown = text if len(text) <= 80 else text[:77] + "..."
    if is_result:
        return f"is not a condition: the result {shown!r} is not true or false", _FIX_RESULT
    if isinstance(part, exp.Column):
        fix = (f"compare it, e.g. {part.name} IS NOT NULL (a BOOL column may stand alone once declared "
               "in source_columns)")
        if is_root:
            return f"is the column {part.name!r} alone, which holds text or a number, not true or false", fix
        return f"is not a condition: the column {part.name!r} in it holds text or a number, not true or false", fix
    if isinstance(part, exp.Func):
        name = part.name.upper() if isinstance(part, exp.Anonymous) else text.split("(", 1)[0]
        example = text if len(text) <= 80 else f"{name}(...)"
        fix = (f"compare its result, e.g. {example} = 'x', or use a function that gives true or false "
               f"({', '.join(_BOOLEAN_FUNCTIONS)})")
        return f"{'calls' if is_root else 'is not a condition: it calls'} {name}, which gives a value, " \
               "not true or false", fix
    if is_root:
        return "is not a condition (true or false)", "write a comparison, e.g. annual_revenue < 1000000"
    return f"is not a condition: {shown!r} in it is not true or false", \
        "write a comparison, e.g. annual_revenue < 1000000"


def _volatile(node: exp.Expr) -> exp.Expr | None:
    for part in node.walk():
        if isinstance(part, _VOLATILE_NODES) or (
                isinstance(part, exp.Anonymous) and part.name.upper() in _VOLATILE_NAMES):
            return part
    return None


def check_expression(text: object, *, allowed: Sequence[str], where: str, boolean: bool,
                     boolean_columns: Sequence[str] = ()) -> tuple[str, list[RoutingProblem]]:
    """Parse and check one SQL expression; return it as sqlglot renders it (BigQuery) and the problems.

    Refused: not a string, empty, longer than MAX_EXPRESSION_LENGTH, `;`, braces, anything sqlglot cannot
    parse as ONE expression, a subquery, aggregate, window function, parameter, `*`, a volatile function
    (RAND(), GENERATE_UUID(), CURRENT_TIMESTAMP and the other clock functions, SESSION_USER(): a lead's
    route and score must be the same every time they are computed), a column not in `allowed` or
    qualified by a table; and, when `boolean`, anything that is not a truth value in every engine (DuckDB
    would take a number by truthiness, BigQuery refuses it): a number, a string, arithmetic, a column
    alone unless it is one of `boolean_columns` (the declared extra source columns, which may be BOOL;
    the contract's columns are text or numbers), a function outside _BOOLEAN_FUNCTIONS, or IF/CASE/
    IFNULL/COALESCE with a test or a result that is not a condition. Comments are dropped.
    """
    def problem(message: str, fix: str) -> tuple[str, list[RoutingProblem]]:
        return "", [RoutingProblem(where, message, fix)]

    if not isinstance(text, str) or not text.strip():
        return problem("is empty or not text", "write a SQL expression, e.g. annual_revenue < 1000000")
    if len(text) > MAX_EXPRESSION_LENGTH:
        return problem(f"is longer than {MAX_EXPRESSION_LENGTH} characters", "shorten it")
    if ";" in text or "{" in text or "}" in text:
        return problem("contains ';' or a brace", "write one expression, without ';' or braces")
    try:
        parsed = sqlglot.parse(text, read="bigquery")
    except SqlglotError as exc:
        first = redact(str(exc).splitlines()[0], 200)
        return problem(f"is not SQL that can be read ({first})", "correct the expression's syntax")
    if len(parsed) != 1 or parsed[0] is None:
        return problem("is not exactly one expression", "write one expression")
    node = parsed[0]
    for kind, label in _FORBIDDEN_NODES:
        if node.find(kind) is not None:
            return problem(f"uses {label}", "use only the row's own columns, literals and scalar functions")
    volatile = _volatile(node)
    if volatile is not None:
        name = volatile.sql(dialect="bigquery", comments=False)[:60]
        return problem(f"uses {name}, whose value changes from one computation to the next", _FIX_VOLATILE)
    known = {c.lower() for c in allowed}
    for column in node.find_all(exp.Column):
        if column.table:
            return problem(f"names the column {column.sql()!r} with a table", f"write just {column.name!r}")
        if column.name.lower() not in known:
            return problem(f"names the unknown column {column.name!r}",
                           f"use one of {', '.join(sorted(known))}, or declare it in source_columns")
    if boolean:
        found = _non_condition(node, frozenset(c.lower() for c in boolean_columns))
        if found is not None:
            part, is_result = found
            return problem(*_condition_problem(part, is_result, is_root=part is _unparen(node)))
    rendered = node.sql(dialect="bigquery", comments=False)
    if "{" in rendered or "}" in rendered:  # an escaped brace in a string: the SQL templates use braces
        return problem("contains a brace (perhaps escaped)", "write the value without braces")
    return rendered, []


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


@dataclass
class _Collector:
    where: str
    problems: list[RoutingProblem] = field(default_factory=list)

    def add(self, place: str, message: str, fix: str) -> None:
        self.problems.append(RoutingProblem(f"{self.where}, {place}" if place else self.where, message, fix))


def _always_true(condition: str) -> bool:
    """Whether a checked condition holds for every lead (TRUE, 1 = 1, NOT FALSE, TRUE OR x, ...), by
    sqlglot's simplifier; a condition it cannot decide counts as not always true."""
    try:
        simplified = simplify(sqlglot.parse_one(condition, read="bigquery"))
    except SqlglotError:
        return False
    return isinstance(simplified, exp.Boolean) and simplified.this is True


def parse_document(text: str, where: str) -> dict[str, Any]:
    """A routing document: JSON when it starts with `{`, else TOML; a leading UTF-8 byte order mark (as
    some editors save) is ignored, and CRLF line endings are read like LF. Raises RoutingError."""
    text = text.removeprefix("\ufeff")
    stripped = text.strip()
    try:
        data: Any = json.loads(stripped) if stripped.startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise RoutingError([RoutingProblem(where, f"is not valid {'JSON' if stripped.startswith('{') else 'TOML'} "
                                                  f"({redact(str(exc), 200)})", "correct its syntax")]) from exc
    if not isinstance(data, dict):
        raise RoutingError([RoutingProblem(where, "is not a table of settings", "see README: routes")])
    return data


def default_routing(smb_campaign_id: str, midsize_campaign_id: str, *, score: str = DEFAULT_SCORE,
                    custom_variables: tuple[tuple[str, str], ...] = DEFAULT_CUSTOM_VARIABLES,
                    source_columns: tuple[str, ...] = (), origin: str = "default") -> Routing:
    """The original pair: SMB (revenue unknown or under the threshold) and Midsize (everyone else).
    Campaign ids are kept lower-case, as Instantly writes them."""
    smb = Route("SMB", f"annual_revenue IS NULL OR annual_revenue < {THRESHOLD_PLACEHOLDER}",
                (Arm("SMB", smb_campaign_id.lower(), 100),), custom_variables=custom_variables)
    midsize = Route("Midsize", "TRUE", (Arm("Midsize", midsize_campaign_id.lower(), 100),),
                    custom_variables=custom_variables)
    return Routing((smb, midsize), source_columns, score, origin, is_default=True)


def _percent(value: object) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Fraction(str(value).strip().rstrip("%"))
    except (ValueError, ZeroDivisionError):
        return None
    return number


def _custom_variables(raw: object, columns: Sequence[str], col: _Collector, place: str
                      ) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(raw, dict):
        col.add(place, "is not a table of key = source column", 'write e.g. { company = "company_name" }')
        return None
    known = {c.lower(): c for c in columns}
    out: list[tuple[str, str]] = []
    for key, column in raw.items():
        if not isinstance(key, str) or not _VARIABLE_KEY.match(key):
            col.add(place, f"key {redact(str(key), 80)!r} is not a variable name",
                    "use letters, digits and underscores, starting with a letter (at most 64)")
        elif key.lower() in LEAD_FIELDS:
            col.add(place, f"key {key!r} is a lead field of Instantly, not a custom variable",
                    "pick another name (the lead fields are sent as themselves)")
        elif not isinstance(column, str) or column.lower() not in known:
            col.add(place, f"key {key!r} names the unknown column {redact(str(column), 80)!r}",
                    f"use one of {', '.join(columns)}, or declare it in source_columns")
        else:
            out.append((key, known[column.lower()]))
    if len({k.lower() for k, _ in out}) != len(out):
        col.add(place, "has a key twice (keys are compared without case)", "keep one")
    return tuple(out)


def load_routing(document: Mapping[str, Any] | None, *, where: str, smb_campaign_id: str,
                 midsize_campaign_id: str, priority_expression: str = "") -> Routing:
    """Check a parsed routing document (None: the defaults) and return the Routing.

    `priority_expression` (the PRIORITY_EXPRESSION setting) wins over the document's `score`. Raises
    RoutingError listing every problem, each with where it is and the fix: unknown keys, names, an unknown
    column, a route without a campaign, arm weights that do not add up to 100 (or given as text), a campaign
    in two routes (or twice in one; compared without case), a route after a catch-all route (no `when`, or
    TRUE) that could never match, a share below 1 (shares are percent: 50 is half), shares over 100 %,
    shares that leave nothing for the routes without one, a bad supply_days, a bad custom variable.
    Campaign ids are kept lower-case, as Instantly writes them.
    """
    col = _Collector(where)
    doc = dict(document or {})
    allowed_top = {"routes", "source_columns", "score", "custom_variables"}
    for key in doc:
        if key not in allowed_top:
            col.add(str(key), "is not a routing setting", f"use only {', '.join(sorted(allowed_top))}")

    extra: list[str] = []
    raw_extra = doc.get("source_columns", [])
    if not isinstance(raw_extra, list) or not all(isinstance(c, str) for c in raw_extra):
        col.add("source_columns", "is not a list of column names", 'write e.g. ["industry"]')
    else:
        for name in raw_extra:
            if not _IDENTIFIER.match(name):
                col.add("source_columns", f"{redact(name, 80)!r} is not a column name",
                        "letters, digits and underscores")
            elif name.lower() in {c.lower() for c in CONTRACT_COLUMNS + HISTORY_COLUMNS + tuple(extra)}:
                col.add("source_columns", f"{name!r} is already a column", "remove it from source_columns")
            elif name.lower() in RESERVED_COLUMNS:
                col.add("source_columns", f"{name!r} is a name coldsync uses for its own columns",
                        "expose the column under another name (a view over your table)")
            else:
                extra.append(name)
    columns = CONTRACT_COLUMNS + tuple(extra)

    score_text = priority_expression.strip() or doc.get("score")
    score = DEFAULT_SCORE
    if score_text:
        where_score = "PRIORITY_EXPRESSION" if priority_expression.strip() else "score"
        checked, problems = check_expression(score_text, allowed=columns + HISTORY_COLUMNS,
                                             where=f"{where}, {where_score}" if where_score == "score" else where_score,
                                             boolean=False)
        col.problems.extend(problems)
        score = checked or DEFAULT_SCORE

    variables = DEFAULT_CUSTOM_VARIABLES
    if "custom_variables" in doc:
        variables = _custom_variables(doc["custom_variables"], columns, col, "custom_variables") or ()

    if "routes" not in doc:
        if col.problems:
            raise RoutingError(col.problems)
        return default_routing(smb_campaign_id, midsize_campaign_id, score=score, custom_variables=variables,
                               source_columns=tuple(extra), origin=where)

    raw_routes = doc["routes"]
    if not isinstance(raw_routes, list) or not raw_routes:
        col.add("routes", "is not a non-empty list of routes", "add at least one [[routes]] table")
        raise RoutingError(col.problems)
    if len(raw_routes) > MAX_ROUTES:
        col.add("routes", f"has {len(raw_routes)} routes, more than {MAX_ROUTES}", "merge routes")
    routes: list[Route] = []
    seen_names: set[str] = set()
    seen_campaigns: dict[str, str] = {}
    catch_all: str | None = None  # label of the first route that takes every lead
    route_keys = {"name", "when", "campaign_id", "arms", "share", "supply_days", "ab_salt", "custom_variables"}
    for index, raw in enumerate(raw_routes, start=1):
        if not isinstance(raw, dict):
            col.add(f"route {index}", "is not a table", "write each route as a [[routes]] table")
            continue
        name = raw.get("name")
        label = f"route {index}" if not isinstance(name, str) else f"route {name!r}"
        for key in raw:
            if key not in route_keys:
                col.add(f"{label}, {key}", "is not a route setting", f"use only {', '.join(sorted(route_keys))}")
        if not isinstance(name, str) or not _NAME.match(name):
            col.add(label, "has no usable name", "give it a name of letters, digits, space, '_', '.', '-' "
                                                 "(at most 64, starting with a letter or digit)")
            name = f"route {index}"
        elif name.lower() in seen_names:
            col.add(label, "has the same name as an earlier route", "give each route its own name")
        seen_names.add(name.lower())

        if catch_all is not None:
            col.add(label, f"comes after {catch_all}, which takes every lead (its `when` is omitted or TRUE), "
                           "so it can never match",
                    f"move it above {catch_all}, or give {catch_all} a narrower `when`")
        condition, problems = check_expression(raw.get("when", "TRUE"), allowed=columns,
                                               where=f"{where}, {label}, when",
                                               boolean=True, boolean_columns=extra)
        col.problems.extend(problems)
        if catch_all is None and condition and _always_true(condition):
            catch_all = label

        arms: list[Arm] = []
        if "campaign_id" in raw and "arms" in raw:
            col.add(label, "has both campaign_id and arms", "use campaign_id for one campaign, arms for an A/B split")
        elif "arms" in raw:
            raw_arms = raw["arms"]
            if not isinstance(raw_arms, list) or len(raw_arms) < 2:
                col.add(f"{label}, arms", "is not a list of two or more arms", "list each campaign with its weight")
                raw_arms = []
            arm_names: set[str] = set()
            for arm_index_, arm in enumerate(raw_arms, start=1):
                place = f"{label}, arm {arm_index_}"
                if not isinstance(arm, dict):
                    col.add(place, "is not a table", "write { name = ..., campaign_id = ..., weight = ... }")
                    continue
                arm_name = arm.get("name", chr(ord("A") + arm_index_ - 1) if arm_index_ <= 26 else str(arm_index_))
                weight = arm.get("weight")
                cid = arm.get("campaign_id")
                if not isinstance(arm_name, str) or not _NAME.match(arm_name) or arm_name.lower() in arm_names:
                    col.add(place, "has no usable (or a repeated) name", "give each arm its own short name")
                    arm_name = str(arm_index_)
                arm_names.add(arm_name.lower())
                if isinstance(weight, str):
                    example = weight.strip() if re.fullmatch(r"[0-9]{1,3}", weight.strip()) else "50"
                    col.add(place, f"has the weight {weight[:40]!r} as text; a weight must be a whole number",
                            f"write it without quotes, e.g. weight = {example}")
                    weight = 0
                elif isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                    col.add(place, "has no weight (a whole number of percent, at least 1)", "set weight, e.g. 50")
                    weight = 0
                if not isinstance(cid, str) or not _CAMPAIGN.match(cid.strip()):
                    col.add(place, "has no campaign_id (a campaign UUID)",
                            "set campaign_id to the Instantly campaign id")
                    cid = ""
                arms.append(Arm(arm_name, cid.strip().lower(), weight))
            if arms and all(a.weight > 0 for a in arms) and sum(a.weight for a in arms) != 100:
                col.add(f"{label}, arms", f"weights add up to {sum(a.weight for a in arms)}, not 100",
                        "make the weights add up to 100")
        else:
            cid = raw.get("campaign_id")
            if not isinstance(cid, str) or not _CAMPAIGN.match(cid.strip()):
                col.add(label, "has no campaign_id (a campaign UUID)",
                        "set campaign_id to the Instantly campaign id (or arms for an A/B split)")
            else:
                arms.append(Arm(name, cid.strip().lower(), 100))
        for arm in arms:
            if not arm.campaign_id:
                continue
            owner = seen_campaigns.get(arm.campaign_id.lower())
            if owner is not None:
                col.add(label, f"uses campaign {arm.campaign_id} which {owner} uses already",
                        "give each route and arm its own campaign (a campaign's leads and room must be one route's)")
            seen_campaigns[arm.campaign_id.lower()] = label

        share: Fraction | None = None
        if "share" in raw:
            share = _percent(raw["share"])
            if share is not None and 0 < share < 1:
                col.add(f"{label}, share", f"{str(raw['share'])[:40]!r} is below 1: shares are percent, so it "
                                           f"would be {float(share):g}% of the cap, not {float(share * 100):g}%",
                        "write the share in percent, from 1 to 100: write 50 for half")
                share = None
            elif share is None or not 1 <= share <= 100:
                col.add(f"{label}, share", f"{str(raw['share'])[:40]!r} is not a percent from 1 to 100",
                        "set share to a number of percent, e.g. 40")
                share = None
            else:
                share = share / 100

        supply_days: int | None = None
        if "supply_days" in raw:
            value = raw["supply_days"]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 60:
                col.add(f"{label}, supply_days", "is not a whole number of days from 0 to 60",
                        "set supply_days, e.g. 3 (0 turns supply sizing off for this route)")
            else:
                supply_days = value

        salt = raw.get("ab_salt", name)
        if not isinstance(salt, str) or not salt or len(salt) > 200:
            col.add(f"{label}, ab_salt", "is not a text of 1 to 200 characters", "set it, or leave it out")
            salt = name

        route_variables = variables
        if "custom_variables" in raw:
            route_variables = _custom_variables(raw["custom_variables"], columns, col,
                                                f"{label}, custom_variables") or ()
        routes.append(Route(name, condition or "FALSE", tuple(arms), share, supply_days, salt, route_variables))

    shares = [r.share for r in routes if r.share is not None]
    if shares:
        total = sum(shares, Fraction(0))
        unshared = [r for r in routes if r.share is None]
        if total > 1:
            col.add("routes, share", f"the shares add up to {float(total * 100):g}%, over 100%",
                    "lower them so they add up to at most 100")
        elif not unshared and total != 1:
            col.add("routes, share", f"every route has a share and they add up to {float(total * 100):g}%, not 100%",
                    "make them add up to 100")
        elif unshared and total == 1:
            col.add("routes, share", "the shares add up to 100% and leave nothing for the routes without one ("
                    + ", ".join(r.name for r in unshared) + ")", "give those routes a share, or lower the others")
    if col.problems:
        raise RoutingError(col.problems)
    return Routing(tuple(routes), tuple(extra), score, where, is_default=False)


# ---------------------------------------------------------------------------------------------
# Custom variables
# ---------------------------------------------------------------------------------------------

MAX_VARIABLE_LENGTH = 500


def custom_value(value: object) -> str | int | float | bool | None:
    """A source value as a custom variable (the spec allows string, number, boolean or null): text trimmed
    and cut to 500 characters (None when blank), whole Decimals as int, other finite numbers as float,
    dates as ISO text; NaN and infinities are None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value).strip()[:MAX_VARIABLE_LENGTH]
    return text or None


def custom_variables(route: Route, row: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The lead's custom variables by the route's mapping; keys whose value is empty are left out."""
    out: dict[str, str | int | float | bool] = {}
    for key, column in route.custom_variables:
        value = custom_value(row.get(column))
        if value is not None:
            out[key] = value
    return out
