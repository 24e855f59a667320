"""Tests of coldsync.routes (the routing document) and of the settings that load it.

1. The default routing, when no document is given anywhere.
2. A valid document: every parsed field, and the `when` SQL as sqlglot renders it again.
3. Every refusal, each naming its place and giving the fix; all problems of a document at once.
4. The score: PRIORITY_EXPRESSION over the document's `score`; history columns only in the score.
5. Where the document comes from: ROUTES > ROUTES_FILE > the config table's `routes` row.
6. A/B arms: `arm_index` against a reference written here from its docstring, and the split's spread.
7. Custom variables: how each source value is sent.
8. The generated CASE of `sequence_target`, and `sql_string`.

Campaign ids are synthetic UUIDs; addresses use `.example` domains, and Gmail-rule addresses are built
at run time from tests.helpers' constants.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldsync.routes import (
    DEFAULT_CUSTOM_VARIABLES,
    DEFAULT_SCORE,
    THRESHOLD_PLACEHOLDER,
    Arm,
    Route,
    Routing,
    RoutingError,
    RoutingProblem,
    arm_index,
    check_expression,
    custom_value,
    custom_variables,
    default_routing,
    load_routing,
    parse_document,
    route_case_sql,
    sql_string,
)
from coldsync.settings import SPEC_BY_NAME, Settings, SettingsError, load_settings
from coldsync.suppression import address_key
from tests.helpers import GMAIL, GOOGLEMAIL, GOOGLEMAIL_CASED

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)

SMB = "00000000-0000-4000-8000-00000000005b"
MID = "00000000-0000-4000-8000-0000000000d1"
C1 = "00000000-0000-4000-8000-000000000001"
C2 = "00000000-0000-4000-8000-000000000002"
C3 = "00000000-0000-4000-8000-000000000003"
C4 = "00000000-0000-4000-8000-000000000004"

WHERE = "ROUTES (from environment)"

# The fixes, as the module words them (asserted exactly below).
FIX_COLUMNS = ("use one of annual_revenue, company_name, country, domain, email, first_name, last_name, location, "
               "or declare it in source_columns")
FIX_SCALAR = "use only the row's own columns, literals and scalar functions"
FIX_ONE_EXPRESSION = "write one expression, without ';' or braces"
FIX_SYNTAX = "correct the expression's syntax"
FIX_CONDITION = "write a comparison, e.g. annual_revenue < 1000000"
FIX_CAMPAIGN = "set campaign_id to the Instantly campaign id (or arms for an A/B split)"
FIX_ARM_CAMPAIGN = "set campaign_id to the Instantly campaign id"
FIX_ARMS = "list each campaign with its weight"
FIX_WEIGHTS = "make the weights add up to 100"
FIX_WEIGHT = "set weight, e.g. 50"
FIX_BOTH = "use campaign_id for one campaign, arms for an A/B split"
FIX_TWICE = "give each route and arm its own campaign (a campaign's leads and room must be one route's)"
FIX_NAME = "give each route its own name"
FIX_SHARE = "set share to a number of percent, e.g. 40"
FIX_SUPPLY = "set supply_days, e.g. 3 (0 turns supply sizing off for this route)"
FIX_TOP = "use only custom_variables, routes, score, source_columns"
FIX_ROUTE_KEYS = "use only ab_salt, arms, campaign_id, custom_variables, name, share, supply_days, when"
FIX_VARIABLE_NAME = "use letters, digits and underscores, starting with a letter (at most 64)"
FIX_LEAD_FIELD = "pick another name (the lead fields are sent as themselves)"
FIX_VARIABLE_COLUMN = ("use one of email, first_name, last_name, company_name, domain, location, country, "
                       "annual_revenue, or declare it in source_columns")

Problem = tuple[str, str, str]


def load(document: Mapping[str, Any] | None, priority_expression: str = "") -> Routing:
    return load_routing(document, where=WHERE, smb_campaign_id=SMB, midsize_campaign_id=MID,
                        priority_expression=priority_expression)


def problems_of(document: Mapping[str, Any], priority_expression: str = "") -> list[Problem]:
    with pytest.raises(RoutingError) as caught:
        load(document, priority_expression)
    return [(p.setting, p.message, p.fix) for p in caught.value.problems]


def one_route(**fields: Any) -> dict[str, Any]:
    """A document of one route named SaaS (campaign C1, when TRUE) with `fields` replacing its own."""
    route: dict[str, Any] = {"name": "SaaS", "when": "TRUE", "campaign_id": C1}
    route.update(fields)
    return {"routes": [{k: v for k, v in route.items() if v is not None}]}


def arms(*weights: int, ids: Sequence[str] = (C1, C2, C3)) -> list[dict[str, Any]]:
    return [{"name": chr(ord("A") + i), "campaign_id": ids[i], "weight": w} for i, w in enumerate(weights)]


# ---------------------------------------------------------------------------------------------
# 1. The default routing
# ---------------------------------------------------------------------------------------------


def _settings(tmp_path: Path, environ: Mapping[str, str] | None = None,
              config_rows: Mapping[str, object] | None = None) -> Settings:
    """Settings from the given environment and config rows only (no .env, no secrets files); ROUTES_FILE
    is `none` (read no file) unless the environment says otherwise, so a checkout's config/routes.toml
    is never read."""
    folder = tmp_path / "no-secrets"
    folder.mkdir(exist_ok=True)
    env = {"DUCKDB_PATH": str(tmp_path / "wh.duckdb"), "ROUTES_FILE": "none",
           "SMB_CAMPAIGN_ID": SMB, "MIDSIZE_CAMPAIGN_ID": MID, **(environ or {})}
    return load_settings(environ=env, dotenv_path=folder / ".env", secrets_dir=folder, config_rows=config_rows)


EXPECTED_DEFAULT_SCORE = ("IF(last_completed_at IS NULL, 1000000000000000, 0) + "
                          "LEAST(COALESCE(annual_revenue, -1), 999999999999999)")
EXPECTED_DEFAULT_VARIABLES = (("company", "company_name"), ("domain", "domain"), ("location", "location"),
                              ("country", "country"))


def test_default_routing_is_smb_then_midsize(tmp_path: Path) -> None:
    """With no document anywhere, the routing is SMB (revenue unknown or under the threshold) then Midsize (TRUE)."""
    s = _settings(tmp_path)
    routing = s.routing
    assert routing.is_default is True
    assert routing.origin == "default"
    assert [r.name for r in routing.routes] == ["SMB", "Midsize"]
    smb, midsize = routing.routes
    assert smb.condition == "annual_revenue IS NULL OR annual_revenue < {smb_revenue_threshold}"
    assert THRESHOLD_PLACEHOLDER == "{smb_revenue_threshold}"
    assert midsize.condition == "TRUE"
    assert smb.arms == (Arm("SMB", SMB, 100),)
    assert midsize.arms == (Arm("Midsize", MID, 100),)
    assert (smb.share, smb.supply_days, midsize.share, midsize.supply_days) == (None, None, None, None)
    assert smb.custom_variables == EXPECTED_DEFAULT_VARIABLES == midsize.custom_variables
    assert DEFAULT_CUSTOM_VARIABLES == EXPECTED_DEFAULT_VARIABLES
    assert routing.score == EXPECTED_DEFAULT_SCORE == DEFAULT_SCORE
    assert routing.source_columns == ()
    assert routing.campaign_ids() == [SMB, MID]
    assert s.campaign_ids() == {"SMB": SMB, "Midsize": MID}


def test_default_routing_follows_the_two_campaign_settings(tmp_path: Path) -> None:
    """The default routes' campaigns are SMB_CAMPAIGN_ID and MIDSIZE_CAMPAIGN_ID as set, not fixed ids."""
    s = _settings(tmp_path, {"SMB_CAMPAIGN_ID": C3, "MIDSIZE_CAMPAIGN_ID": C4})
    assert s.routing.campaign_ids() == [C3, C4]
    assert default_routing(C1, C2) == Routing(
        (Route("SMB", "annual_revenue IS NULL OR annual_revenue < {smb_revenue_threshold}", (Arm("SMB", C1, 100),)),
         Route("Midsize", "TRUE", (Arm("Midsize", C2, 100),))), (), EXPECTED_DEFAULT_SCORE, "default", True)


def test_a_document_without_routes_keeps_the_default_pair() -> None:
    """A document with only a score and custom variables changes those and keeps the SMB/Midsize pair."""
    routing = load({"score": "annual_revenue", "custom_variables": {"firm": "company_name"}})
    assert routing.is_default is True and routing.origin == WHERE
    assert [(r.name, r.condition, r.campaign_ids) for r in routing.routes] == [
        ("SMB", "annual_revenue IS NULL OR annual_revenue < {smb_revenue_threshold}", (SMB,)),
        ("Midsize", "TRUE", (MID,))]
    assert routing.score == "annual_revenue"
    assert [r.custom_variables for r in routing.routes] == [(("firm", "company_name"),)] * 2


# ---------------------------------------------------------------------------------------------
# 2. A valid document
# ---------------------------------------------------------------------------------------------

VALID_TOML = f"""
source_columns = ["industry", "employee_count"]
score = "COALESCE(employee_count, 0) + IF(attempt_num = 1, 100, 0) -- bigger first"

[custom_variables]
company = "company_name"
sector = "industry"

[[routes]]
name = "SaaS"
when = 'industry = "saas" -- software only'
campaign_id = "{C1}"
share = 40
supply_days = 5

[[routes]]
name = "Enterprise"
when = "employee_count   >=   1000 and /* big */ country = 'US'"
campaign_id = " {C2.upper()} "
share = "25%"
supply_days = 0
custom_variables = {{ firm = "Company_Name", staff = "employee_count" }}

[[routes]]
name = "Everyone else"
ab_salt = "2026-q4"
arms = [{{ name = "A", campaign_id = "{C3}", weight = 50 }},
        {{ name = "B", campaign_id = "{C4}", weight = 50 }}]
"""


def test_valid_toml_document_parses_every_field() -> None:
    """Each field of a valid document is read as written; `when` and `score` are sqlglot's renderings."""
    routing = load(parse_document(VALID_TOML, WHERE))
    document_variables = (("company", "company_name"), ("sector", "industry"))
    assert routing == Routing(
        routes=(
            Route("SaaS", "industry = 'saas'", (Arm("SaaS", C1, 100),), Fraction(2, 5), 5, "SaaS",
                  document_variables),
            Route("Enterprise", "employee_count >= 1000 AND country = 'US'", (Arm("Enterprise", C2.upper(), 100),),
                  Fraction(1, 4), 0, "Enterprise", (("firm", "company_name"), ("staff", "employee_count"))),
            Route("Everyone else", "TRUE", (Arm("A", C3, 50), Arm("B", C4, 50)), None, None, "2026-q4",
                  document_variables),
        ),
        source_columns=("industry", "employee_count"),
        score="COALESCE(employee_count, 0) + IF(attempt_num = 1, 100, 0)",
        origin=WHERE,
        is_default=False,
    )
    assert routing.campaign_ids() == [C1, C2.upper(), C3, C4]
    assert routing.route_of_campaign(C2) == (routing.routes[1], Arm("Enterprise", C2.upper(), 100))
    assert routing.route("Everyone else") is routing.routes[2]
    assert routing.columns()[-2:] == ("industry", "employee_count")


def test_json_document_reads_like_toml() -> None:
    """A document starting with `{` is JSON and gives the same routing as the same TOML."""
    toml_routing = load(parse_document(VALID_TOML, WHERE))
    as_json = json.dumps({
        "source_columns": ["industry", "employee_count"],
        "score": "COALESCE(employee_count, 0) + IF(attempt_num = 1, 100, 0)",
        "custom_variables": {"company": "company_name", "sector": "industry"},
        "routes": [
            {"name": "SaaS", "when": "industry = 'saas'", "campaign_id": C1, "share": 40, "supply_days": 5},
            {"name": "Enterprise", "when": "employee_count >= 1000 AND country = 'US'", "campaign_id": C2.upper(),
             "share": 25, "supply_days": 0,
             "custom_variables": {"firm": "company_name", "staff": "employee_count"}},
            {"name": "Everyone else", "ab_salt": "2026-q4", "arms": arms(50, 50, ids=(C3, C4))},
        ],
    })
    assert load(parse_document("  \n" + as_json, WHERE)) == toml_routing


def test_a_leading_byte_order_mark_and_crlf_line_endings_are_read() -> None:
    """A TOML or JSON document saved with a UTF-8 BOM and CRLF line endings reads like the plain document."""
    plain = load(parse_document(VALID_TOML, WHERE))
    toml_text = "\ufeff" + VALID_TOML.replace("\n", "\r\n")
    assert toml_text.startswith("\ufeff\r\nsource_columns") and toml_text.count("\r\n") == 28
    assert "\n" not in toml_text.replace("\r\n", "")
    assert load(parse_document(toml_text, WHERE)) == plain
    json_text = "\ufeff{\r\n" + f'"routes": [{{"name": "SaaS", "campaign_id": "{C1}"}}]\r\n}}\r\n'
    assert parse_document(json_text, WHERE) == {"routes": [{"name": "SaaS", "campaign_id": C1}]}


UPPER_CAMPAIGN = "8C46E0C9-C1F9-4201-A8D6-6221BAFEADA6"


def test_campaign_ids_are_kept_lower_case() -> None:
    """An upper-case campaign UUID (route or arm, or a default route's setting) loads as its lower-case id."""
    routing = load(one_route(campaign_id=f" {UPPER_CAMPAIGN} "))
    assert routing.routes[0].arms == (Arm("SaaS", "8c46e0c9-c1f9-4201-a8d6-6221bafeada6", 100),)
    split = load(one_route(campaign_id=None, arms=arms(50, 50, ids=(UPPER_CAMPAIGN, C2))))
    assert split.campaign_ids() == ["8c46e0c9-c1f9-4201-a8d6-6221bafeada6", C2]
    assert default_routing(UPPER_CAMPAIGN, MID).campaign_ids() == ["8c46e0c9-c1f9-4201-a8d6-6221bafeada6", MID]


def test_route_salt_defaults_to_its_name_and_arm_names_to_letters() -> None:
    """Without ab_salt a route's salt is its name; arms without a name are A, B, C in order."""
    routing = load(one_route(campaign_id=None, arms=[{"campaign_id": C1, "weight": 20},
                                                     {"campaign_id": C2, "weight": 30},
                                                     {"campaign_id": C3, "weight": 50}]))
    (route,) = routing.routes
    assert route.ab_salt == "SaaS"
    assert route.arms == (Arm("A", C1, 20), Arm("B", C2, 30), Arm("C", C3, 50))


def test_edges_of_share_and_supply_days_are_accepted() -> None:
    """share 100 on a lone route, a fractional share, and supply_days 0 and 60 are accepted as written."""
    alone = load(one_route(share=100, supply_days=60)).routes[0]
    assert (alone.share, alone.supply_days) == (Fraction(1), 60)
    two = load({"routes": [{"name": "A", "when": "country = 'US'", "campaign_id": C1, "share": "12.5"},
                           {"name": "B", "campaign_id": C2, "share": 87.5, "supply_days": 0}]})
    assert [(r.share, r.supply_days) for r in two.routes] == [(Fraction(1, 8), None), (Fraction(7, 8), 0)]


# ---------------------------------------------------------------------------------------------
# 3. Refusals
# ---------------------------------------------------------------------------------------------

WHEN = f"{WHERE}, route 'SaaS', when"
ROUTE = f"{WHERE}, route 'SaaS'"

REFUSED_WHEN: list[tuple[str, str, str, str]] = [
    ("unknown column", "industry = 'saas'", "names the unknown column 'industry'", FIX_COLUMNS),
    ("qualified column", "s.country = 'US'", "names the column 's.country' with a table", "write just 'country'"),
    ("subquery", "country IN (SELECT country FROM other)", "uses a subquery", FIX_SCALAR),
    ("exists", "EXISTS (SELECT 1)", "uses a subquery", FIX_SCALAR),
    ("aggregate", "MAX(annual_revenue) > 1", "uses an aggregate function", FIX_SCALAR),
    ("window", "ROW_NUMBER() OVER (ORDER BY annual_revenue) = 1", "uses a window function", FIX_SCALAR),
    ("parameter", "annual_revenue < @x", "uses a query parameter", FIX_SCALAR),
    ("semicolon", "TRUE; DROP TABLE config", "contains ';' or a brace", FIX_ONE_EXPRESSION),
    ("braces", "country = '{smb_revenue_threshold}'", "contains ';' or a brace", FIX_ONE_EXPRESSION),
    ("arithmetic", "annual_revenue + 1", "is not a condition (true or false)", FIX_CONDITION),
    ("string literal", "'saas'", "is not a condition (true or false)", FIX_CONDITION),
    ("number", "1", "is not a condition (true or false)", FIX_CONDITION),
    ("history column", "attempt_num = 1", "names the unknown column 'attempt_num'", FIX_COLUMNS),
    ("empty", "  ", "is empty or not text", "write a SQL expression, e.g. annual_revenue < 1000000"),
]


@pytest.mark.parametrize(("when", "message", "fix"), [c[1:] for c in REFUSED_WHEN], ids=[c[0] for c in REFUSED_WHEN])
def test_refused_when_names_route_field_and_fix(when: str, message: str, fix: str) -> None:
    """A `when` that is not a checked condition over known columns is refused at route 'SaaS', field when."""
    assert problems_of(one_route(when=when)) == [(WHEN, message, fix)]


def test_unparsable_when_is_refused_with_the_parsers_reason() -> None:
    """SQL sqlglot cannot read is refused, quoting where it failed, with the syntax fix."""
    ((setting, message, fix),) = problems_of(one_route(when="annual_revenue <"))
    assert (setting, fix) == (WHEN, FIX_SYNTAX)
    assert message.startswith("is not SQL that can be read (") and "Line 1, Col: 16" in message


def test_a_when_that_is_not_text_is_refused() -> None:
    """A `when` given as a number (not SQL text) is refused rather than rendered."""
    assert problems_of(one_route(when=1)) == [
        (WHEN, "is empty or not text", "write a SQL expression, e.g. annual_revenue < 1000000")]


REFUSED_ROUTES: list[tuple[str, dict[str, Any], list[Problem]]] = [
    ("no campaign_id", one_route(campaign_id=None),
     [(ROUTE, "has no campaign_id (a campaign UUID)", FIX_CAMPAIGN)]),
    ("campaign_id not a UUID", one_route(campaign_id="campaign-1"),
     [(ROUTE, "has no campaign_id (a campaign UUID)", FIX_CAMPAIGN)]),
    ("campaign_id and arms", one_route(arms=arms(50, 50, ids=(C2, C3))),
     [(ROUTE, "has both campaign_id and arms", FIX_BOTH)]),
    ("one arm", one_route(campaign_id=None, arms=arms(100)),
     [(f"{ROUTE}, arms", "is not a list of two or more arms", FIX_ARMS)]),
    ("weights 90", one_route(campaign_id=None, arms=arms(40, 50)),
     [(f"{ROUTE}, arms", "weights add up to 90, not 100", FIX_WEIGHTS)]),
    ("weights 110", one_route(campaign_id=None, arms=arms(60, 50)),
     [(f"{ROUTE}, arms", "weights add up to 110, not 100", FIX_WEIGHTS)]),
    ("arm campaign not a UUID", one_route(campaign_id=None, arms=[{"campaign_id": C1, "weight": 50},
                                                                  {"campaign_id": "b", "weight": 50}]),
     [(f"{ROUTE}, arm 2", "has no campaign_id (a campaign UUID)", FIX_ARM_CAMPAIGN)]),
    ("same campaign in two routes",
     {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": C1},
                 {"name": "Rest", "campaign_id": C1}]},
     [(f"{WHERE}, route 'Rest'", f"uses campaign {C1} which route 'SaaS' uses already", FIX_TWICE)]),
    ("same campaign in two arms", one_route(campaign_id=None, arms=arms(50, 50, ids=(C1, C1))),
     [(ROUTE, f"uses campaign {C1} which route 'SaaS' uses already", FIX_TWICE)]),
    ("same campaign in two arms, other case", one_route(campaign_id=None, arms=arms(50, 50, ids=(C1, C1.upper()))),
     [(ROUTE, f"uses campaign {C1.upper()} which route 'SaaS' uses already", FIX_TWICE)]),
    ("same campaign in two routes, other case",
     {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": C1.upper()},
                 {"name": "Rest", "arms": arms(50, 50, ids=(C2, C1))}]},
     [(f"{WHERE}, route 'Rest'", f"uses campaign {C1} which route 'SaaS' uses already", FIX_TWICE)]),
    ("same name, other case",
     {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": C1},
                 {"name": "saas", "campaign_id": C2}]},
     [(f"{WHERE}, route 'saas'", "has the same name as an earlier route", FIX_NAME)]),
    ("shares 120%",
     {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": C1, "share": 60},
                 {"name": "Rest", "campaign_id": C2, "share": 60}]},
     [(f"{WHERE}, routes, share", "the shares add up to 120%, over 100%",
       "lower them so they add up to at most 100")]),
    ("every route shared, 90%",
     {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": C1, "share": 50},
                 {"name": "Rest", "campaign_id": C2, "share": 40}]},
     [(f"{WHERE}, routes, share", "every route has a share and they add up to 90%, not 100%",
       "make them add up to 100")]),
    ("100% leaves nothing",
     {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": C1, "share": 60},
                 {"name": "EU", "when": "country = 'DE'", "campaign_id": C2, "share": "40%"},
                 {"name": "Rest", "campaign_id": C3}]},
     [(f"{WHERE}, routes, share", "the shares add up to 100% and leave nothing for the routes without one (Rest)",
       "give those routes a share, or lower the others")]),
    ("share 0", one_route(share=0), [(f"{ROUTE}, share", "'0' is not a percent from 1 to 100", FIX_SHARE)]),
    ("share 101", one_route(share=101),
     [(f"{ROUTE}, share", "'101' is not a percent from 1 to 100", FIX_SHARE)]),
    ("share abc", one_route(share="abc"),
     [(f"{ROUTE}, share", "'abc' is not a percent from 1 to 100", FIX_SHARE)]),
    ("share true", one_route(share=True),
     [(f"{ROUTE}, share", "'True' is not a percent from 1 to 100", FIX_SHARE)]),
    ("supply_days -1", one_route(supply_days=-1),
     [(f"{ROUTE}, supply_days", "is not a whole number of days from 0 to 60", FIX_SUPPLY)]),
    ("supply_days 61", one_route(supply_days=61),
     [(f"{ROUTE}, supply_days", "is not a whole number of days from 0 to 60", FIX_SUPPLY)]),
    ("supply_days text", one_route(supply_days="3"),
     [(f"{ROUTE}, supply_days", "is not a whole number of days from 0 to 60", FIX_SUPPLY)]),
    ("unknown top-level key", {**one_route(), "ab_salt": "x"},
     [(f"{WHERE}, ab_salt", "is not a routing setting", FIX_TOP)]),
    ("unknown route key", one_route(campaign=C2),
     [(f"{ROUTE}, campaign", "is not a route setting", FIX_ROUTE_KEYS)]),
    ("source column of the contract", {**one_route(), "source_columns": ["Country"]},
     [(f"{WHERE}, source_columns", "'Country' is already a column", "remove it from source_columns")]),
    ("source column of the history", {**one_route(), "source_columns": ["attempt_num"]},
     [(f"{WHERE}, source_columns", "'attempt_num' is already a column", "remove it from source_columns")]),
    ("source column reserved", {**one_route(), "source_columns": ["score"]},
     [(f"{WHERE}, source_columns", "'score' is a name coldsync uses for its own columns",
       "expose the column under another name (a view over your table)")]),
    ("source column not an identifier", {**one_route(), "source_columns": ["industry-code"]},
     [(f"{WHERE}, source_columns", "'industry-code' is not a column name", "letters, digits and underscores")]),
    ("source column twice", {**one_route(), "source_columns": ["industry", "INDUSTRY"]},
     [(f"{WHERE}, source_columns", "'INDUSTRY' is already a column", "remove it from source_columns")]),
    ("variable key email", {**one_route(), "custom_variables": {"email": "email"}},
     [(f"{WHERE}, custom_variables", "key 'email' is a lead field of Instantly, not a custom variable",
       FIX_LEAD_FIELD)]),
    ("variable key First_Name", {**one_route(), "custom_variables": {"First_Name": "first_name"}},
     [(f"{WHERE}, custom_variables", "key 'First_Name' is a lead field of Instantly, not a custom variable",
       FIX_LEAD_FIELD)]),
    ("variable key 1x", {**one_route(), "custom_variables": {"1x": "country"}},
     [(f"{WHERE}, custom_variables", "key '1x' is not a variable name", FIX_VARIABLE_NAME)]),
    ("variable key a-b", {**one_route(), "custom_variables": {"a-b": "country"}},
     [(f"{WHERE}, custom_variables", "key 'a-b' is not a variable name", FIX_VARIABLE_NAME)]),
    ("variable of an unknown column", {**one_route(), "custom_variables": {"sector": "industry"}},
     [(f"{WHERE}, custom_variables", "key 'sector' names the unknown column 'industry'", FIX_VARIABLE_COLUMN)]),
    ("variable of a history column", {**one_route(), "custom_variables": {"tries": "attempt_num"}},
     [(f"{WHERE}, custom_variables", "key 'tries' names the unknown column 'attempt_num'", FIX_VARIABLE_COLUMN)]),
    ("variable key twice", {**one_route(), "custom_variables": {"Sector": "country", "sector": "domain"}},
     [(f"{WHERE}, custom_variables", "has a key twice (keys are compared without case)", "keep one")]),
    ("route variable key", one_route(custom_variables={"last_name": "last_name"}),
     [(f"{ROUTE}, custom_variables", "key 'last_name' is a lead field of Instantly, not a custom variable",
       FIX_LEAD_FIELD)]),
    ("empty routes", {"routes": []}, [(f"{WHERE}, routes", "is not a non-empty list of routes",
                                       "add at least one [[routes]] table")]),
    ("unusable route name", one_route(name="Saa'S"),
     [(f"{WHERE}, route \"Saa'S\"", "has no usable name",
       "give it a name of letters, digits, space, '_', '.', '-' (at most 64, starting with a letter or digit)")]),
]


@pytest.mark.parametrize(("document", "expected"), [c[1:] for c in REFUSED_ROUTES], ids=[c[0] for c in REFUSED_ROUTES])
def test_refused_document_names_place_and_fix(document: dict[str, Any], expected: list[Problem]) -> None:
    """Each kind of bad document is refused with exactly the one problem that names its place and fix."""
    assert problems_of(document) == expected


def test_a_zero_weight_is_refused_at_its_arm() -> None:
    """An arm of weight 0 is refused at that arm (arm 1), with the fix to set a weight."""
    problems = problems_of(one_route(campaign_id=None, arms=arms(0, 100)))
    assert problems[0] == (f"{ROUTE}, arm 1", "has no weight (a whole number of percent, at least 1)", FIX_WEIGHT)


def test_a_zero_weight_is_the_only_problem_of_arms_adding_to_100() -> None:
    """Arms weighted 0 and 100 report the zero weight only, not an invented sum of 101."""
    assert problems_of(one_route(campaign_id=None, arms=arms(0, 100))) == [
        (f"{ROUTE}, arm 1", "has no weight (a whole number of percent, at least 1)", FIX_WEIGHT)]


@pytest.mark.parametrize("when", ["(annual_revenue + 1)", "('saas')"])
def test_parentheses_do_not_make_a_value_a_condition(when: str) -> None:
    """A non-boolean `when` is refused with or without parentheses around it."""
    assert problems_of(one_route(when=when)) == [(WHEN, "is not a condition (true or false)", FIX_CONDITION)]


def test_toml_syntax_error_is_refused_naming_the_document() -> None:
    """A document that is not TOML is refused as one problem at the document, saying TOML."""
    with pytest.raises(RoutingError) as caught:
        parse_document('[[routes]]\nname = "SaaS\n', WHERE)
    ((setting, message, fix),) = [(p.setting, p.message, p.fix) for p in caught.value.problems]
    assert (setting, fix) == (WHERE, "correct its syntax")
    assert message.startswith("is not valid TOML (")


def test_json_syntax_error_is_refused_naming_the_document() -> None:
    """A document starting with `{` that is not JSON is refused as JSON (not tried as TOML)."""
    with pytest.raises(RoutingError) as caught:
        parse_document(' {"routes": [}', WHERE)
    ((setting, message, fix),) = [(p.setting, p.message, p.fix) for p in caught.value.problems]
    assert (setting, fix) == (WHERE, "correct its syntax")
    assert message.startswith("is not valid JSON (")


def test_a_campaign_in_two_routes_differing_only_in_case_is_refused() -> None:
    """The same campaign id in two routes, upper-case in one and lower-case in the other, is still refused."""
    document = {"routes": [{"name": "SaaS", "when": "country = 'US'", "campaign_id": UPPER_CAMPAIGN},
                           {"name": "Rest", "campaign_id": UPPER_CAMPAIGN.lower()}]}
    assert problems_of(document) == [(f"{WHERE}, route 'Rest'", "uses campaign 8c46e0c9-c1f9-4201-a8d6-6221bafeada6 "
                                      "which route 'SaaS' uses already", FIX_TWICE)]


FIX_HALF = "write the share in percent, from 1 to 100: write 50 for half"


@pytest.mark.parametrize(("share", "message"), [
    (0.5, "'0.5' is below 1: shares are percent, so it would be 0.5% of the cap, not 50%"),
    ("0.25", "'0.25' is below 1: shares are percent, so it would be 0.25% of the cap, not 25%"),
    ("0.5%", "'0.5%' is below 1: shares are percent, so it would be 0.5% of the cap, not 50%"),
])
def test_a_share_below_one_percent_is_refused_as_a_fraction(share: object, message: str) -> None:
    """A share between 0 and 1 (meant as a fraction, e.g. 0.5 for half) is refused: shares are percent."""
    assert problems_of(one_route(share=share)) == [(f"{ROUTE}, share", message, FIX_HALF)]


def test_shares_of_one_to_one_hundred_percent_in_every_spelling_are_accepted() -> None:
    """Shares 1, "50", "50%", 12.5 and 100 are read as that many percent of the cap."""
    one = load({"routes": [{"name": "A", "when": "country = 'US'", "campaign_id": C1, "share": 1},
                           {"name": "B", "campaign_id": C2}]})
    assert [r.share for r in one.routes] == [Fraction(1, 100), None]
    assert load(one_route(share=100)).routes[0].share == Fraction(1)
    routing = load({"routes": [{"name": "A", "when": "country = 'US'", "campaign_id": C1, "share": "50"},
                               {"name": "B", "when": "country = 'DE'", "campaign_id": C2, "share": "37.5%"},
                               {"name": "C", "campaign_id": C3, "share": 12.5}]})
    assert [r.share for r in routing.routes] == [Fraction(1, 2), Fraction(3, 8), Fraction(1, 8)]


def test_a_weight_written_as_text_is_refused_as_text() -> None:
    """weight = "50" is refused as text that must be a whole number, not as a missing weight."""
    document = one_route(campaign_id=None, arms=[{"name": "A", "campaign_id": C1, "weight": "50"},
                                                 {"name": "B", "campaign_id": C2, "weight": 50}])
    assert problems_of(document) == [(f"{ROUTE}, arm 1", "has the weight '50' as text; a weight must be a whole number",
                                      "write it without quotes, e.g. weight = 50")]
    half = one_route(campaign_id=None, arms=[{"campaign_id": C1, "weight": "half"}, {"campaign_id": C2, "weight": 50}])
    assert problems_of(half) == [(f"{ROUTE}, arm 1", "has the weight 'half' as text; a weight must be a whole number",
                                  "write it without quotes, e.g. weight = 50")]


def _unreachable(route: str, catch_all: str) -> Problem:
    return (f"{WHERE}, route '{route}'",
            f"comes after route '{catch_all}', which takes every lead (its `when` is omitted or TRUE), "
            "so it can never match",
            f"move it above route '{catch_all}', or give route '{catch_all}' a narrower `when`")


def test_routes_after_a_route_without_when_are_refused_as_unreachable() -> None:
    """Every route after one with no `when` (it takes every lead) is refused, naming it and the catch-all."""
    document = {"routes": [{"name": "US", "when": "country = 'US'", "campaign_id": C1},
                           {"name": "Rest", "campaign_id": C2},
                           {"name": "SaaS", "when": "company_name = 'Acme'", "campaign_id": C3},
                           {"name": "Last", "when": "TRUE", "campaign_id": C4}]}
    assert problems_of(document) == [_unreachable("SaaS", "Rest"), _unreachable("Last", "Rest")]


@pytest.mark.parametrize("when", ["TRUE", "true", " ( TRUE ) -- everyone", "1 = 1", "NOT FALSE", "TRUE AND TRUE",
                                  "'a' = 'a'", "TRUE OR country = 'x'", "IF(TRUE, TRUE, FALSE)"])
def test_a_route_after_a_when_of_true_is_refused_as_unreachable(when: str) -> None:
    """A `when` that is always true (TRUE, or what simplifies to it) is a catch-all: the route after it is refused."""
    document = {"routes": [{"name": "Everyone", "when": when, "campaign_id": C1},
                           {"name": "SaaS", "when": "country = 'US'", "campaign_id": C2}]}
    assert problems_of(document) == [_unreachable("SaaS", "Everyone")]


FIX_COMPARE_REVENUE = ("compare it, e.g. annual_revenue IS NOT NULL (a BOOL column may stand alone once declared "
                       "in source_columns)")
FIX_RESULT = ("make every result of IF, CASE, IFNULL and COALESCE a condition, "
              "e.g. IF(country = 'US', annual_revenue > 5, FALSE)")
BOOLEAN_FUNCTION_LIST = "STARTS_WITH, ENDS_WITH, REGEXP_CONTAINS, CONTAINS_SUBSTR, IS_INF, IS_NAN"

NOT_CONDITIONS: list[tuple[str, str, str, str]] = [
    ("contract column alone", "annual_revenue",
     "is the column 'annual_revenue' alone, which holds text or a number, not true or false", FIX_COMPARE_REVENUE),
    ("text column alone", "(country)",
     "is the column 'country' alone, which holds text or a number, not true or false",
     "compare it, e.g. country IS NOT NULL (a BOOL column may stand alone once declared in source_columns)"),
    ("value function", "UPPER(country)", "calls UPPER, which gives a value, not true or false",
     f"compare its result, e.g. UPPER(country) = 'x', or use a function that gives true or false "
     f"({BOOLEAN_FUNCTION_LIST})"),
    ("IF of numbers", "IF(country = 'US', 1, 0)", "is not a condition: the result '1' is not true or false",
     FIX_RESULT),
    ("CASE of numbers", "CASE WHEN country = 'US' THEN 1 ELSE FALSE END",
     "is not a condition: the result '1' is not true or false", FIX_RESULT),
    ("IFNULL of a number", "IFNULL(annual_revenue, FALSE)",
     "is not a condition: the result 'annual_revenue' is not true or false", FIX_RESULT),
    ("column under AND", "country = 'US' AND annual_revenue",
     "is not a condition: the column 'annual_revenue' in it holds text or a number, not true or false",
     FIX_COMPARE_REVENUE),
    ("column under NOT", "NOT annual_revenue",
     "is not a condition: the column 'annual_revenue' in it holds text or a number, not true or false",
     FIX_COMPARE_REVENUE),
    ("IF testing a number", "IF(annual_revenue, TRUE, FALSE)",
     "is not a condition: the column 'annual_revenue' in it holds text or a number, not true or false",
     FIX_COMPARE_REVENUE),
    ("number under OR", "country = 'US' OR 1",
     "is not a condition: '1' in it is not true or false", FIX_CONDITION),
]


@pytest.mark.parametrize(("when", "message", "fix"), [c[1:] for c in NOT_CONDITIONS],
                         ids=[c[0] for c in NOT_CONDITIONS])
def test_a_when_that_is_not_true_or_false_in_every_engine_is_refused(when: str, message: str, fix: str) -> None:
    """A `when` DuckDB would take by truthiness and BigQuery refuses (a value, not a condition) is refused."""
    assert problems_of({**one_route(when=when), "source_columns": ["is_customer"]}) == [(WHEN, message, fix)]


ACCEPTED_CONDITIONS: list[tuple[str, str]] = [
    ("ENDS_WITH(email, '@acme.example')", "ENDS_WITH(email, '@acme.example')"),
    ("starts_with(email, 'ana')", "starts_with(email, 'ana')"),
    ("REGEXP_CONTAINS(email, 'acme')", "REGEXP_CONTAINS(email, 'acme')"),
    ("CONTAINS_SUBSTR(company_name, 'acme')", "CONTAINS_SUBSTR(company_name, 'acme')"),
    ("NOT IS_NAN(annual_revenue) AND NOT IS_INF(annual_revenue)",
     "NOT IS_NAN(annual_revenue) AND NOT IS_INF(annual_revenue)"),
    ("IF(country = 'US', annual_revenue > 5, FALSE)", "IF(country = 'US', annual_revenue > 5, FALSE)"),
    ("CASE country WHEN 'US' THEN is_customer ELSE NULL END", "CASE country WHEN 'US' THEN is_customer ELSE NULL END"),
    ("is_customer", "is_customer"),
    ("NOT is_customer", "NOT is_customer"),
    ("IFNULL(is_customer, FALSE)", "IFNULL(is_customer, FALSE)"),
]


@pytest.mark.parametrize(("when", "rendered"), ACCEPTED_CONDITIONS, ids=[c[0] for c in ACCEPTED_CONDITIONS])
def test_conditions_of_boolean_functions_and_declared_columns_are_accepted(when: str, rendered: str) -> None:
    """BOOL functions, IF/CASE/IFNULL of conditions and a declared extra column (maybe BOOL) are conditions."""
    routing = load({**one_route(when=when), "source_columns": ["is_customer"]})
    assert routing.routes[0].condition == rendered


def test_check_expression_takes_the_boolean_columns_it_may_accept_alone() -> None:
    """check_expression accepts a column alone only when `boolean_columns` names it (without case)."""
    allowed = ("country", "is_customer")
    assert check_expression("IS_CUSTOMER", allowed=allowed, where="W", boolean=True,
                            boolean_columns=("is_customer",)) == ("IS_CUSTOMER", [])
    assert check_expression("is_customer", allowed=allowed, where="W", boolean=True) == ("", [RoutingProblem(
        "W", "is the column 'is_customer' alone, which holds text or a number, not true or false",
        "compare it, e.g. is_customer IS NOT NULL (a BOOL column may stand alone once declared in source_columns)")])
    assert check_expression("is_customer", allowed=allowed, where="W", boolean=False) == ("is_customer", [])


FIX_VOLATILE = ("remove it: a lead's route and score must be the same every time they are computed (the count of "
                "ready leads and their read must agree), so use only the row's own columns and literals")

VOLATILE: list[tuple[str, str]] = [
    ("RAND()", "RAND()"),
    ("GENERATE_UUID()", "GENERATE_UUID()"),
    ("CURRENT_TIMESTAMP()", "CURRENT_TIMESTAMP()"),
    ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP()"),
    ("CURRENT_DATE()", "CURRENT_DATE"),
    ("CURRENT_DATE", "CURRENT_DATE"),
    ("CURRENT_DATETIME()", "CURRENT_DATETIME()"),
    ("CURRENT_TIME()", "CURRENT_TIME()"),
    ("SESSION_USER()", "SESSION_USER()"),
    ("NOW()", "NOW()"),
]


@pytest.mark.parametrize(("call", "shown"), VOLATILE, ids=[c[0] for c in VOLATILE])
def test_a_volatile_function_is_refused_in_when_and_in_score(call: str, shown: str) -> None:
    """RAND, GENERATE_UUID, the clock functions and SESSION_USER are refused in a `when` and in the score."""
    message = f"uses {shown}, whose value changes from one computation to the next"
    assert problems_of(one_route(when=f"CAST({call} AS STRING) IS NOT NULL")) == [(WHEN, message, FIX_VOLATILE)]
    assert problems_of({**one_route(), "score": f"LENGTH(CAST({call} AS STRING))"}) == [
        (f"{WHERE}, score", message, FIX_VOLATILE)]
    assert problems_of({}, priority_expression=f"IF({call} IS NULL, 0, 1)") == [
        ("PRIORITY_EXPRESSION", message, FIX_VOLATILE)]


def test_session_user_without_parentheses_is_an_unknown_column() -> None:
    """SESSION_USER written without parentheses is read as a column, and refused as an unknown one."""
    assert problems_of(one_route(when="SESSION_USER = email")) == [
        (WHEN, "names the unknown column 'SESSION_USER'", FIX_COLUMNS)]


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    """Five independent mistakes in one document give five problems, in document order, in one error."""
    document = {
        "colour": "blue",
        "source_columns": ["score"],
        "routes": [
            {"name": "SaaS", "when": "industry = 'saas'", "campaign_id": C1, "share": 101},
            {"name": "Rest", "campaign_id": "nope"},
        ],
    }
    with pytest.raises(RoutingError) as caught:
        load(document)
    assert [(p.setting, p.message) for p in caught.value.problems] == [
        (f"{WHERE}, colour", "is not a routing setting"),
        (f"{WHERE}, source_columns", "'score' is a name coldsync uses for its own columns"),
        (WHEN, "names the unknown column 'industry'"),
        (ROUTE + ", share", "'101' is not a percent from 1 to 100"),
        (f"{WHERE}, route 'Rest'", "has no campaign_id (a campaign UUID)"),
    ]
    assert str(caught.value).count("Fix: ") == 5
    assert str(caught.value.problems[0]) == f"{WHERE}, colour: is not a routing setting. Fix: {FIX_TOP}"


# ---------------------------------------------------------------------------------------------
# 4. The score
# ---------------------------------------------------------------------------------------------


def test_document_score_is_used_when_no_priority_expression() -> None:
    """Without PRIORITY_EXPRESSION the document's `score` is the score, as sqlglot renders it."""
    routing = load({**one_route(), "score": "coalesce(annual_revenue,0)*2 -- twice"})
    assert routing.score == "coalesce(annual_revenue, 0) * 2"


def test_priority_expression_wins_over_document_score() -> None:
    """PRIORITY_EXPRESSION replaces the document's `score` (even a bad one, which is then not read)."""
    routing = load({**one_route(), "score": "annual_revenue"}, priority_expression=" -annual_revenue ")
    assert routing.score == "-annual_revenue"
    assert load({**one_route(), "score": "industry"}, priority_expression="attempt_num").score == "attempt_num"


def test_priority_expression_with_unknown_column_is_refused_by_name() -> None:
    """An unknown column in PRIORITY_EXPRESSION is refused at PRIORITY_EXPRESSION (not at the document)."""
    assert problems_of(one_route(), priority_expression="industry * 2") == [
        ("PRIORITY_EXPRESSION", "names the unknown column 'industry'",
         "use one of annual_revenue, attempt_num, company_name, country, domain, email, first_name, "
         "last_completed_at, last_name, location, or declare it in source_columns")]
    assert problems_of({}, priority_expression="SUM(annual_revenue)") == [
        ("PRIORITY_EXPRESSION", "uses an aggregate function", FIX_SCALAR)]


def test_a_bad_document_score_is_refused_at_the_document() -> None:
    """A bad `score` in the document is refused at that document's `score`."""
    assert problems_of({**one_route(), "score": "annual_revenue;"}) == [
        (f"{WHERE}, score", "contains ';' or a brace", FIX_ONE_EXPRESSION)]


def test_history_columns_are_allowed_in_the_score_only() -> None:
    """attempt_num and last_completed_at may be used by the score, and are unknown in a route's `when`."""
    score = "IF(last_completed_at IS NULL, 100, 0) - attempt_num"
    assert load(one_route(), priority_expression=score).score == score
    assert load({**one_route(), "score": score}).score == score
    assert problems_of(one_route(when="last_completed_at IS NULL")) == [
        (WHEN, "names the unknown column 'last_completed_at'", FIX_COLUMNS)]


def test_score_may_use_declared_source_columns_and_need_not_be_boolean() -> None:
    """A declared source column is usable in the score, and a numeric score is not held to be a condition."""
    routing = load({**one_route(), "source_columns": ["employee_count"], "score": "employee_count + 1"})
    assert routing.score == "employee_count + 1"


# ---------------------------------------------------------------------------------------------
# 5. Where the document comes from
# ---------------------------------------------------------------------------------------------


def _doc(name: str, campaign: str, when: str = "TRUE") -> str:
    return f'[[routes]]\nname = "{name}"\nwhen = "{when}"\ncampaign_id = "{campaign}"\n'


def test_routes_setting_wins_over_the_file(tmp_path: Path) -> None:
    """ROUTES in the environment is used even when ROUTES_FILE exists (and the config row is set)."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(_doc("FromFile", C2))
    s = _settings(tmp_path, {"ROUTES": _doc("FromEnv", C1), "ROUTES_FILE": str(routes_file)},
                  config_rows={"routes": _doc("FromTable", C3)})
    assert [r.name for r in s.routing.routes] == ["FromEnv"]
    assert s.routing.origin == "ROUTES (from environment)"
    assert s.routing.is_default is False
    assert s.campaign_ids() == {"FromEnv": C1}


def test_routes_as_flag_or_in_dotenv_wins_over_the_file(tmp_path: Path) -> None:
    """ROUTES given as a flag, or in `.env`, is used over an existing ROUTES_FILE, and says where it came from."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(_doc("FromFile", C2))
    folder = tmp_path / "no-secrets"
    folder.mkdir()
    dotenv = tmp_path / ".env"
    dotenv.write_text("ROUTES=" + json.dumps(json.dumps({"routes": [{"name": "FromDotenv", "campaign_id": C3}]}))
                      + "\n")
    environ = {"ROUTES_FILE": str(routes_file), "DUCKDB_PATH": str(tmp_path / "wh.duckdb")}
    from_dotenv = load_settings(environ=environ, dotenv_path=dotenv, secrets_dir=folder)
    assert [(r.name, r.campaign_ids) for r in from_dotenv.routing.routes] == [("FromDotenv", (C3,))]
    assert from_dotenv.routing.origin == "ROUTES (from .env)"
    from_flag = load_settings(cli={"routes": _doc("FromFlag", C4)}, environ=environ, dotenv_path=dotenv,
                              secrets_dir=folder)
    assert [(r.name, r.campaign_ids) for r in from_flag.routing.routes] == [("FromFlag", (C4,))]
    assert from_flag.routing.origin == "ROUTES (from flag)"


def test_file_wins_over_the_config_table(tmp_path: Path) -> None:
    """An existing ROUTES_FILE is used over the config table's `routes` row."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(_doc("FromFile", C2))
    s = _settings(tmp_path, {"ROUTES_FILE": str(routes_file)}, config_rows={"routes": _doc("FromTable", C3)})
    assert [(r.name, r.campaign_ids) for r in s.routing.routes] == [("FromFile", (C2,))]
    assert s.routing.origin == f"ROUTES_FILE {routes_file}"


def test_config_table_row_is_used_when_the_file_does_not_exist(tmp_path: Path) -> None:
    """Without ROUTES and without the file, the config table's `routes` row is the document."""
    s = _settings(tmp_path, config_rows={"routes": _doc("FromTable", C3)})
    assert [(r.name, r.campaign_ids) for r in s.routing.routes] == [("FromTable", (C3,))]
    assert s.routing.origin == "config table row `routes` (from config table)"
    assert s.origins["routes"] == "config table"


def test_routes_file_default_is_config_routes_toml() -> None:
    """ROUTES_FILE defaults to config/routes.toml; ROUTES and PRIORITY_EXPRESSION may be config rows."""
    assert SPEC_BY_NAME["routes_file"].default == "config/routes.toml"
    assert SPEC_BY_NAME["routes_file"].config_key is None
    assert (SPEC_BY_NAME["routes"].config_key, SPEC_BY_NAME["priority_expression"].config_key) == (
        "routes", "priority_expression")


BAD_WHEN = "industry = 'saas'"
BAD_DETAIL = f"route 'SaaS', when: names the unknown column 'industry'. Fix: {FIX_COLUMNS}"


def test_bad_routes_setting_is_a_settings_error_naming_its_source(tmp_path: Path) -> None:
    """A bad ROUTES variable fails settings loading, naming ROUTES (from environment) and the route."""
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, {"ROUTES": _doc("SaaS", C1, BAD_WHEN)})
    assert [(p.name, p.origin) for p in caught.value.problems] == [("routes", "environment")]
    assert str(caught.value) == ("1 bad setting(s):\n  - ROUTES (from environment): "
                                 f"ROUTES (from environment), {BAD_DETAIL}")


def test_bad_routes_file_is_a_settings_error_naming_the_file(tmp_path: Path) -> None:
    """A bad ROUTES_FILE fails settings loading, naming ROUTES_FILE and its path, and the route."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(_doc("SaaS", C1, BAD_WHEN))
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, {"ROUTES_FILE": str(routes_file)}, config_rows={"routes": _doc("Fine", C3)})
    assert [(p.name, p.origin) for p in caught.value.problems] == [("routes_file", "environment")]
    assert str(caught.value) == ("1 bad setting(s):\n  - ROUTES_FILE (from environment): "
                                 f"ROUTES_FILE {routes_file}, {BAD_DETAIL}")


def test_bad_config_table_row_is_a_settings_error_naming_the_row(tmp_path: Path) -> None:
    """A bad `routes` row of the config table (in use: no ROUTES, no file) fails settings loading, named."""
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, config_rows={"routes": _doc("SaaS", C1, BAD_WHEN)})
    assert [(p.name, p.origin) for p in caught.value.problems] == [("routes", "config table")]
    assert str(caught.value) == ("1 bad setting(s):\n  - ROUTES (from config table): "
                                 f"config table row `routes` (from config table), {BAD_DETAIL}")


def test_unreadable_config_table_document_is_a_settings_error(tmp_path: Path) -> None:
    """A config-table `routes` row that is not TOML fails settings loading at ROUTES (from config table)."""
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, config_rows={"routes": "[[routes]\nname = 1"})
    ((problem,),) = [caught.value.problems]
    assert (problem.name, problem.origin, problem.fix) == ("routes", "config table", "correct its syntax")
    assert problem.message.startswith("config table row `routes` (from config table): is not valid TOML (")


def test_bad_priority_expression_is_a_settings_error_naming_it(tmp_path: Path) -> None:
    """A bad PRIORITY_EXPRESSION fails settings loading as the priority_expression setting."""
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, {"PRIORITY_EXPRESSION": "industry"})
    assert [(p.name, p.origin, p.message) for p in caught.value.problems] == [
        ("priority_expression", "environment", "PRIORITY_EXPRESSION: names the unknown column 'industry'")]


def test_priority_expression_setting_reaches_the_routing(tmp_path: Path) -> None:
    """PRIORITY_EXPRESSION from the environment is the score of Settings.routing over a file's `score`."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text('score = "annual_revenue"\n' + _doc("SaaS", C1))
    s = _settings(tmp_path, {"ROUTES_FILE": str(routes_file), "PRIORITY_EXPRESSION": "attempt_num * 2"})
    assert s.routing.score == "attempt_num * 2"
    assert _settings(tmp_path, {"ROUTES_FILE": str(routes_file)}).routing.score == "annual_revenue"


def test_same_smb_and_midsize_campaign_is_refused_only_for_the_default_routes(tmp_path: Path) -> None:
    """SMB_CAMPAIGN_ID = MIDSIZE_CAMPAIGN_ID is refused with the default routes, not when a document routes."""
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, {"SMB_CAMPAIGN_ID": C1, "MIDSIZE_CAMPAIGN_ID": C1.upper()})
    assert [p.name for p in caught.value.problems] == ["midsize_campaign_id"]
    s = _settings(tmp_path, {"SMB_CAMPAIGN_ID": C1, "MIDSIZE_CAMPAIGN_ID": C1, "ROUTES": _doc("Only", C2)})
    assert s.routing.campaign_ids() == [C2]


def test_campaign_ids_keeps_every_campaign_of_two_ab_routes(tmp_path: Path) -> None:
    """Settings.campaign_ids lists all four campaigns of two A/B routes whose arms are both named A and B."""
    document = json.dumps({"routes": [{"name": "US", "when": "country = 'US'", "arms": arms(50, 50, ids=(C1, C2))},
                                      {"name": "Rest", "arms": arms(50, 50, ids=(C3, C4))}]})
    s = _settings(tmp_path, {"ROUTES": document})
    assert s.routing.campaign_ids() == [C1, C2, C3, C4]
    assert sorted(s.campaign_ids().values()) == [C1, C2, C3, C4]


# ---------------------------------------------------------------------------------------------
# 6. A/B arms
# ---------------------------------------------------------------------------------------------


def reference_arm(salt: str, email: str, weights: Sequence[int]) -> int:
    """arm_index as its docstring words it, written independently: cumulative upper bounds."""
    key = address_key(email)
    assert key is not None
    digest = hashlib.sha256((salt + "\x1f" + key).encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], byteorder="big") % sum(weights)
    upper = 0
    for index, weight in enumerate(weights):
        upper += weight
        if bucket < upper:
            return index
    raise AssertionError("bucket beyond the weights")


def test_arm_index_is_deterministic_and_matches_the_reference() -> None:
    """The same salt, address and weights give the same arm every call, the reference's arm."""
    emails = [f"lead{i}@acme{i % 7}.example" for i in range(200)]
    first = [arm_index("2026-q4", e, [20, 30, 50]) for e in emails]
    assert first == [arm_index("2026-q4", e, [20, 30, 50]) for e in emails]
    assert first == [reference_arm("2026-q4", e, [20, 30, 50]) for e in emails]
    assert set(first) == {0, 1, 2}


def test_variants_of_one_person_share_an_arm() -> None:
    """+tag, case, Gmail dots and the googlemail alias of one person land in that person's arm."""
    salts = [f"salt-{i}" for i in range(40)]
    base = f"janedoe@{GMAIL}"
    variants = [f"jane.doe@{GMAIL}", f"Jane.Doe+promo@{GMAIL}", f"j.a.n.e.d.o.e@{GOOGLEMAIL}",
                f"JaneDoe+x@{GOOGLEMAIL_CASED}", f"  janedoe@{GMAIL.upper()} "]
    for variant in variants:
        assert address_key(variant) == base
        assert [arm_index(s, variant, [50, 50]) for s in salts] == [arm_index(s, base, [50, 50]) for s in salts]
    # And a plain domain: the tag goes, the dots stay (they are part of the address there).
    assert [arm_index(s, "Ann.Lee+x@Acme.example", [50, 50]) for s in salts] == [
        arm_index(s, "ann.lee@acme.example", [50, 50]) for s in salts]
    # The 40 salts do not all agree (else the check above would prove nothing about the key).
    assert len({arm_index(s, base, [50, 50]) for s in salts}) == 2


def test_changing_the_salt_reassigns_about_half() -> None:
    """A new ab_salt moves some leads to the other arm: about half of 1,000 (500 ± 3σ = 500 ± 47)."""
    emails = [f"lead{i}@acme.example" for i in range(1000)]
    moved = sum(arm_index("2026-q3", e, [50, 50]) != arm_index("2026-q4", e, [50, 50]) for e in emails)
    sigma = math.sqrt(1000 * 0.5 * 0.5)  # 15.81
    assert 500 - 3 * sigma <= moved <= 500 + 3 * sigma


def test_route_arm_for_uses_its_salt_or_its_name() -> None:
    """Route.arm_for hashes with ab_salt, or the route's name when ab_salt is empty."""
    two = (Arm("A", C1, 50), Arm("B", C2, 50))
    salted = Route("Rest", "TRUE", two, ab_salt="2026-q4")
    unsalted = Route("Rest", "TRUE", two)
    emails = [f"lead{i}@acme.example" for i in range(100)]
    assert [salted.arm_for(e) for e in emails] == [two[reference_arm("2026-q4", e, [50, 50])] for e in emails]
    assert [unsalted.arm_for(e) for e in emails] == [two[reference_arm("Rest", e, [50, 50])] for e in emails]
    loaded = load(one_route(campaign_id=None, arms=arms(50, 50))).routes[0]
    assert [loaded.arm_for(e).name for e in emails] == ["AB"[reference_arm("SaaS", e, [50, 50])] for e in emails]


def _counts(weights: list[int], n: int = 10_000) -> list[int]:
    counts = [0] * len(weights)
    for i in range(n):
        counts[arm_index("split-test", f"person{i}@company{i % 97}.example", weights)] += 1
    return counts


def test_fifty_fifty_split_is_within_three_sigma() -> None:
    """Over 10,000 addresses, 50/50 arms each get 5,000 ± 150 (3σ, σ = sqrt(10000·0.5·0.5) = 50)."""
    counts = _counts([50, 50])
    assert sum(counts) == 10_000
    assert all(4_850 <= c <= 5_150 for c in counts), counts


def test_twenty_thirty_fifty_split_is_within_three_sigma() -> None:
    """Over 10,000 addresses, 20/30/50 arms get 2,000 ± 120, 3,000 ± 137.5 and 5,000 ± 150 (3σ each)."""
    counts = _counts([20, 30, 50])
    bounds = [(2_000, 3 * math.sqrt(10_000 * 0.2 * 0.8)), (3_000, 3 * math.sqrt(10_000 * 0.3 * 0.7)),
              (5_000, 3 * math.sqrt(10_000 * 0.5 * 0.5))]
    assert [round(b, 1) for _, b in bounds] == [120.0, 137.5, 150.0]
    assert all(mean - bound <= c <= mean + bound for c, (mean, bound) in zip(counts, bounds, strict=True)), counts


def test_arm_index_refuses_no_weights_and_a_weight_below_one() -> None:
    """No weights, or a weight of 0 or less, is a ValueError, not an arm."""
    for weights in ([], [50, 0], [101, -1]):
        with pytest.raises(ValueError, match="arm weights must be positive integers"):
            arm_index("s", "lead@acme.example", weights)


LOCAL = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=24)
DOMAIN = st.sampled_from(["acme.example", "Mail.Example", "eu.globex.example"]) | st.builds(
    lambda: GMAIL) | st.builds(lambda: GOOGLEMAIL) | st.builds(lambda: GOOGLEMAIL_CASED)
EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN).filter(
    lambda e: address_key(e) is not None)


@PROPERTIES
@given(salt=st.text(max_size=30), email=EMAIL, weights=st.lists(st.integers(1, 1_000), min_size=1, max_size=8))
def test_arm_index_property_in_range_and_equal_to_reference(salt: str, email: str, weights: list[int]) -> None:
    """For any salt, usable address and positive weights, the arm is in range and the reference's arm."""
    index = arm_index(salt, email, weights)
    assert 0 <= index < len(weights)
    assert index == reference_arm(salt, email, weights)


# ---------------------------------------------------------------------------------------------
# 7. Custom variables
# ---------------------------------------------------------------------------------------------

CUSTOM_VALUES: list[tuple[str, object, object]] = [
    ("text trimmed", "  Acme Corp \t", "Acme Corp"),
    ("text cut to 500", "x" * 600, "x" * 500),
    ("trimmed before the cut", "   " + "y" * 600, "y" * 500),
    ("exactly 500 kept", "z" * 500, "z" * 500),
    ("blank", "   ", None),
    ("empty", "", None),
    ("true", True, True),
    ("false stays", False, False),
    ("int", 42, 42),
    ("zero stays", 0, 0),
    ("whole decimal", Decimal("12.00"), 12),
    ("fractional decimal", Decimal("1.5"), 1.5),
    ("negative whole decimal", Decimal("-3.0"), -3),
    ("float", 2.25, 2.25),
    ("decimal NaN", Decimal("NaN"), None),
    ("decimal infinity", Decimal("-Infinity"), None),
    ("float NaN", float("nan"), None),
    ("float inf", float("inf"), None),
    ("date", date(2026, 6, 1), "2026-06-01"),
    ("datetime", datetime(2026, 6, 1, 12, 30, tzinfo=UTC), "2026-06-01T12:30:00+00:00"),
    ("none", None, None),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in CUSTOM_VALUES], ids=[c[0] for c in CUSTOM_VALUES])
def test_custom_value_converts_each_source_type(value: object, expected: object) -> None:
    """Each source value becomes the documented custom variable value, of the documented type."""
    result = custom_value(value)
    assert result == expected
    assert type(result) is type(expected)


def test_custom_variables_follow_the_routes_mapping_and_skip_empty_values() -> None:
    """custom_variables gives the route's keys in the route's order, leaving out those with no value."""
    route = Route("SaaS", "TRUE", (Arm("SaaS", C1, 100),), custom_variables=(
        ("zeta", "country"), ("alpha", "company_name"), ("paying", "is_customer"), ("staff", "employee_count"),
        ("gone", "location"), ("blank", "domain"), ("since", "signed_on"), ("revenue", "annual_revenue")))
    row = {"country": " US ", "company_name": "Acme", "is_customer": False, "employee_count": Decimal("250.00"),
           "location": None, "domain": "  ", "signed_on": date(2025, 1, 31), "annual_revenue": Decimal("NaN"),
           "first_name": "Ana"}
    out = custom_variables(route, row)
    assert out == {"zeta": "US", "alpha": "Acme", "paying": False, "staff": 250, "since": "2025-01-31"}
    assert list(out) == ["zeta", "alpha", "paying", "staff", "since"]
    assert type(out["staff"]) is int


def test_default_custom_variables_of_a_lead() -> None:
    """The default routes send company, domain, location and country from the contract columns."""
    smb = default_routing(SMB, MID).routes[0]
    row = {"email": "ana@acme.example", "first_name": "Ana", "company_name": "Acme", "domain": "acme.example",
           "location": "CA", "country": "United States", "annual_revenue": Decimal(500_000)}
    assert custom_variables(smb, row) == {"company": "Acme", "domain": "acme.example", "location": "CA",
                                          "country": "United States"}


# ---------------------------------------------------------------------------------------------
# 8. The generated CASE
# ---------------------------------------------------------------------------------------------


def test_route_case_sql_lists_the_routes_in_order() -> None:
    """The CASE tests each route's checked condition in document order and yields its name as a literal."""
    routing = load(parse_document(VALID_TOML, WHERE))
    assert route_case_sql(routing, "@smb_threshold") == (
        "CASE WHEN (industry = 'saas') THEN 'SaaS' "
        "WHEN (employee_count >= 1000 AND country = 'US') THEN 'Enterprise' "
        "WHEN (TRUE) THEN 'Everyone else' END")


def test_a_comment_in_when_or_score_never_reaches_the_generated_sql() -> None:
    """A `--` or `/* */` comment is dropped by the re-rendering, so it cannot comment out generated SQL."""
    document = {"score": "annual_revenue -- highest first\n + 1 /* plus one */",
                "routes": [{"name": "US", "when": "country = 'US' -- THEN 'x' END, the rest", "campaign_id": C1},
                           {"name": "Rest", "when": "/* all */ TRUE --", "campaign_id": C2}]}
    routing = load(document)
    case = route_case_sql(routing, "@smb_threshold")
    assert case == "CASE WHEN (country = 'US') THEN 'US' WHEN (TRUE) THEN 'Rest' END"
    assert routing.score == "annual_revenue + 1"
    for text in (case, routing.score):
        assert "--" not in text and "/*" not in text


def test_route_case_sql_puts_the_threshold_in_the_default_smb_route() -> None:
    """In the default routing the threshold SQL replaces the placeholder of SMB; Midsize stays TRUE."""
    assert route_case_sql(default_routing(SMB, MID), "c.smb_threshold") == (
        "CASE WHEN (annual_revenue IS NULL OR annual_revenue < c.smb_threshold) THEN 'SMB' "
        "WHEN (TRUE) THEN 'Midsize' END")


def test_threshold_is_never_substituted_into_a_users_route() -> None:
    """A user's `when` spelling the placeholder through escapes is refused at load, never rewritten."""
    document = one_route(when=r"country = '\x7bsmb_revenue_threshold\x7d'")
    with pytest.raises(RoutingError) as caught:
        load(document)
    assert [p.message for p in caught.value.problems] == ["contains a brace (perhaps escaped)"]


def test_sql_string_quotes_a_name_and_refuses_quotes_and_backslashes() -> None:
    """sql_string wraps a checked name in single quotes, and refuses a quote or a backslash."""
    assert sql_string("Everyone else") == "'Everyone else'"
    for bad in ("O'Brien", "a\\b", "'"):
        with pytest.raises(ValueError, match="no quote or backslash"):
            sql_string(bad)


def test_routing_problem_text_gives_place_message_and_fix() -> None:
    """A RoutingProblem reads 'place: message. Fix: fix', and RoutingError joins its problems with '; '."""
    a = RoutingProblem("ROUTES_FILE config/routes.toml, route 'SaaS', when", "uses a subquery", FIX_SCALAR)
    b = RoutingProblem("PRIORITY_EXPRESSION", "is empty or not text", "write one")
    assert str(RoutingError([a, b])) == (
        f"ROUTES_FILE config/routes.toml, route 'SaaS', when: uses a subquery. Fix: {FIX_SCALAR}; "
        "PRIORITY_EXPRESSION: is empty or not text. Fix: write one")
