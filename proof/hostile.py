"""Hostile input at both edges: a corpus of bad source rows, and Instantly answers the sync cannot trust.

Source rows. The corpus sits in a table whose columns are all STRING (revenue included), read through
a view that SOURCE_TABLE points at. One run with room for everything, then every row must be
accounted for: sent to Instantly (once, with sane fields), held back by the DNC list, or listed in
v_source_rejects with its reason; the run summary counts the rejects by reason; the good rows go
out exactly as they came in.

Instantly answers. Listing pages are rewritten before the client reads them: unknown status values,
statuses of the wrong type, missing fields, wrong types, huge pages (thousands of repeated and broken
items), and cursors that repeat forever or never end. A lead whose data the sync cannot understand
must stay in Instantly (no wrong deletion) and the run must say so; an honest run drains it later (at
the latest at the next full drain sweep, FULL_SWEEP_INTERVAL after the last one).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from coldsync.instantly.simulator import FaultSpec
from coldsync.rules import normalize_email
from coldsync.settings import Settings
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.migrate import ensure_schema
from coldsync.warehouse.schema import REJECT_DUPLICATE, REJECT_REVENUE, Column, TableSpec
from proof.crash import START
from proof.engines import Engines, proof_settings
from proof.harness import Rig, Tally, new_simulator
from tests.helpers import add_dnc, build, set_config

SOURCE_NAMES = ("email", "first_name", "last_name", "company_name", "domain", "location", "country",
                "annual_revenue")
RAW_TABLE = TableSpec("hostile_raw", tuple(Column(n, "STRING") for n in SOURCE_NAMES),
                      "Hostile source rows, every column text (proof only).")
SOURCE_VIEW = "hostile_source"
_COLUMNS = ", ".join(SOURCE_NAMES)
SOURCE_VIEW_SQL = f"CREATE OR REPLACE VIEW `{{ds}}.{SOURCE_VIEW}` AS SELECT {_COLUMNS} FROM `{{ds}}.hostile_raw`"  # noqa: S608
INSERT_RAW_SQL = f"""
INSERT INTO `{{ds}}.hostile_raw` ({_COLUMNS})
SELECT {", ".join("r." + n for n in SOURCE_NAMES)} FROM UNNEST(@rows) AS r
"""  # noqa: S608
BIG = "x" * 10_000
MISSING = "email missing (NULL)"
EMPTY = "email empty or blank"
LONG = "email longer than 254 characters"
NOT_ASCII = "email not ASCII (internationalized addresses are not sent)"
MALFORMED = "email malformed"


@dataclass
class Case:
    """One source row and what must become of it."""

    row: dict[str, str | None]
    expect: str  # "send", "skip", "revenue" (sent as SMB, recorded), "blocked" (DNC), "any" (sent or recorded)
    reason: str | None = None  # for "skip": the v_source_rejects reason
    note: str = ""


def _row(email: str | None, **fields: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {"email": email, "first_name": "Ana", "last_name": "Smith", "company_name": "Acme",
                                  "domain": "acme.example", "location": "CA", "country": "United States",
                                  "annual_revenue": "500000"}
    row.update(fields)
    return row


def corpus() -> list[Case]:
    """The bad rows (and a few good ones next to them), every address at an .example domain."""
    skip: list[tuple[str | None, str, str]] = [
        (None, MISSING, "NULL email"),
        ("", EMPTY, "empty"), ("   ", EMPTY, "spaces"), ("\t\n", EMPTY, "tab and newline"),
        ("\u00a0\u200b", EMPTY, "NBSP and zero-width space only"), ("\ufeff", EMPTY, "BOM only"),
        ("a" * 250 + "@long.example", LONG, "255+ characters"),
        ("b" * 64 + "@" + "c" * 63 + "." + "d" * 63 + "." + "e" * 63 + ".example", LONG, "long domain"),
        ("ünïcode@hostile.example", NOT_ASCII, "accented local part"),
        ("user@bücher.example", NOT_ASCII, "IDN domain"), ("用户@例子.广告", NOT_ASCII, "CJK address"),
        ("😀@hostile.example", NOT_ASCII, "emoji local part"), ("smile@hostile.example😀", NOT_ASCII, "emoji suffix"),
        ("שלום@hostile.example", NOT_ASCII, "Hebrew"), ("مرحبا@hostile.example", NOT_ASCII, "Arabic"),
        ("zero\u200bwidth@hostile.example", NOT_ASCII, "zero-width space inside"),
        ("no-at-sign.hostile.example", MALFORMED, "no @"), ("two@@hostile.example", MALFORMED, "@@"),
        ("a@b@hostile.example", MALFORMED, "two @"), ("trailing.dot@hostile.example.", MALFORMED, "trailing dot"),
        ("@no-local.example", MALFORMED, "no local part"), ("no-domain@", MALFORMED, "no domain"),
        ("space in@hostile.example", MALFORMED, "space inside"), ("dot..dot@hostile.example", MALFORMED, ".."),
        (".lead@hostile.example", MALFORMED, "leading dot"), ("lead.@hostile.example", MALFORMED, "dot before @"),
        ("x@-bad.example", MALFORMED, "label starts with -"), ("x@bad-.example", MALFORMED, "label ends with -"),
        ("x@nodot", MALFORMED, "no dot in domain"), ("x@x.c", MALFORMED, "one-letter TLD"),
        ("x@x.123", MALFORMED, "numeric TLD"), ("<x@hostile.example>", MALFORMED, "angle brackets"),
        ("Name <name@hostile.example>", MALFORMED, "display name"),
        ("x@hostile.example; y@hostile.example", MALFORMED, "two addresses"),
        ("x@hostile.example\nBcc: y@hostile.example", MALFORMED, "header injection"),
        ("mailto:x@hostile.example", MALFORMED, "mailto:"), ('"quoted"@hostile.example', MALFORMED, "quoted local"),
        ("x'; DROP TABLE ops_dnc;--@hostile.example", MALFORMED, "SQL in the address"),
        ("' OR '1'='1", MALFORMED, "SQL tautology"), ("back\\slash@hostile.example", MALFORMED, "backslash"),
        ("x@hostile.example\\", MALFORMED, "trailing backslash"), ("x@[127.0.0.1]", MALFORMED, "IP literal"),
        ("x@localhost", MALFORMED, "localhost"), ("x@xn--.example", MALFORMED, "broken punycode label"),
        ("x@hostile..example", MALFORMED, "empty label"), ("x@hostile.example:25", MALFORMED, "port"),
    ]
    cases = [Case(_row(email), "skip", reason, note) for email, reason, note in skip]
    # Case and whitespace duplicates: the highest revenue wins, the others are recorded.
    cases += [Case(_row("Dup@Hostile.example", annual_revenue="900"), "skip", REJECT_DUPLICATE, "case duplicate"),
              Case(_row(" dup@hostile.example ", annual_revenue="5000000"), "send", note="duplicate winner"),
              Case(_row("DUP@HOSTILE.EXAMPLE", annual_revenue=None), "skip", REJECT_DUPLICATE, "upper-case duplicate"),
              Case(_row("same@hostile.example"), "send", note="exact duplicate: first copy"),
              Case(_row("same@hostile.example"), "skip", REJECT_DUPLICATE, "exact duplicate: second copy")]
    # Revenue that is not a number: sent as unknown revenue (SMB) and recorded, not skipped.
    for n, revenue in enumerate(("-5", "-1,000,000", "N/A", "$1.2M", "abc", "NaN", "Infinity", "1" + "0" * 40,
                                 "12.5.3", "1 000 000", "0x10", "🚀")):
        cases.append(Case(_row(f"revenue{n}@hostile.example", annual_revenue=revenue), "revenue",
                          note=f"revenue {revenue[:12]!r}"))
    # Valid addresses with hostile other columns: sent, with sane fields.
    hostile_fields: list[tuple[str, dict[str, str | None]]] = [
        ("10 kB first name", {"first_name": BIG}), ("10 kB last name", {"last_name": BIG}),
        ("10 kB company", {"company_name": BIG}), ("10 kB domain column", {"domain": BIG}),
        ("SQL in a name", {"first_name": "Robert'); DROP TABLE ops_inst_state;--"}),
        ("quotes and backslashes", {"last_name": "O'Brien \"The\" \\ Bob\\"}),
        ("emoji name", {"first_name": "🚀 Rocket 🚀"}), ("right-to-left name", {"last_name": "مرحبا \u202eevil"}),
        ("control characters", {"first_name": "tab\there\x07bell"}), ("newline", {"company_name": "line1\nline2"}),
        ("HTML", {"company_name": "<script>alert(1)</script>"}),
        ("blank names", {"first_name": "   ", "last_name": ""}),
        ("NULL first name", {"first_name": None}), ("NULL last name", {"last_name": None}),
        ("NULL company", {"company_name": None}), ("NULL domain", {"domain": None}),
        ("NULL location", {"location": None}), ("NULL country", {"country": None}),
        ("NULL revenue", {"annual_revenue": None}), ("blank revenue", {"annual_revenue": "  "}),
        ("domain column with a trailing dot", {"domain": "acme.example."}),
        ("revenue with thousands commas", {"annual_revenue": "1,200,000"}),
    ]
    for n, (note, fields) in enumerate(hostile_fields):
        cases.append(Case(_row(f"fields{n}@hostile.example", **fields), "send", note=note))
    cases += [
        Case(_row("o'brien+tag@hostile.example"), "send", note="apostrophe and plus"),
        Case(_row("under_score%x@sub.hostile.example"), "send", note="underscore and percent"),
        Case(_row("%00@hostile.example"), "send", note="percent-encoded NUL (valid characters)"),
        Case(_row("x@xn--bcher-kva.example"), "send", note="punycode domain"),
        Case(_row("UPPER@HOSTILE.EXAMPLE"), "send", note="upper case"),
        Case(_row("\u00a0nbsp@hostile.example\u200b"), "send", note="NBSP and zero-width space around"),
        Case(_row("\u202eevil@hostile.example"), "send",
             note="right-to-left override before it (in the trim set, as for Python: trimmed, then sent)"),
        Case(_row("ok@blocked-hostile.example"), "blocked", note="DNC domain entry with a trailing dot"),
        Case(_row("Listed@Hostile.example"), "blocked", note="DNC email entry in another case"),
        Case(_row("1e6@hostile.example", annual_revenue="1e6"), "any", note="revenue in exponent notation"),
        Case(_row("spaced@hostile.example", annual_revenue=" 2000000 "), "any", note="revenue with spaces"),
    ]
    return cases


def good_rows(count: int) -> list[dict[str, str | None]]:
    """Ordinary rows from the demo generator (its own messy ones dropped), as text."""
    rows: list[dict[str, str | None]] = []
    for source in generate_source_rows(count * 2, seed=21):
        if normalize_email(source["email"]) != source["email"] or len(rows) >= count:
            continue
        rows.append({k: (None if v is None else str(v)) for k, v in source.items()})
    return rows


def _load(warehouse: Warehouse, settings: Settings, rows: list[dict[str, str | None]]) -> None:
    warehouse.ensure_dataset()
    if warehouse.existing_columns(RAW_TABLE.name) is None:
        warehouse.create_table(RAW_TABLE)
    warehouse.execute(SOURCE_VIEW_SQL, label="proof.hostile_view")
    warehouse.execute(INSERT_RAW_SQL, {"rows": Rows(tuple((n, "STRING") for n in SOURCE_NAMES), rows)},
                      label="proof.hostile_rows")
    ensure_schema(warehouse, settings)
    set_config(warehouse, "as_of", string=START.isoformat())
    add_dnc(warehouse, domain="@Blocked-Hostile.Example.")
    add_dnc(warehouse, email="  LISTED@hostile.EXAMPLE ")


def hostile_source(engines: Engines, engine: str, tally: Tally) -> None:
    """Load the corpus next to good rows, run once with room for all, and account for every row."""
    cases = corpus()
    good = good_rows(40)
    workdir = engines.workdir / "hostile-source"
    settings = proof_settings(workdir, source_table=SOURCE_VIEW, inventory_cap=1000, target_new_leads_per_run=1000,
                              max_new_leads_per_run=1000)
    warehouse = engines.open(engine, "hostile-source", SOURCE_VIEW)
    sim = new_simulator(3, START)
    rig = Rig(warehouse, sim, settings, workdir=workdir)
    try:
        _load(warehouse, settings, [c.row for c in cases] + good)
        record = rig.run()
        tally.record(record, "hostile source rows")
        tally.add("bad source rows", len(cases))
        for expect, label in (("skip", "bad rows skipped with a recorded reason"),
                              ("revenue", "bad rows sent with unknown revenue, recorded"),
                              ("send", "hostile but usable rows sent intact"), ("blocked", "rows held back by DNC")):
            tally.add(label, sum(1 for c in cases if c.expect == expect))
        tally.add("good source rows", len(good))
        tally.violations.extend(f"hostile source rows: {p}" for p in _account(rig, cases, good, record.report))
        again = rig.run()
        tally.record(again, "hostile source rows, second run")
        if again.api_writes:
            tally.violations.append("hostile source rows: a second run found more to send")
    finally:
        rig.close()
        warehouse.close()


def _account(rig: Rig, cases: list[Case], good: list[dict[str, str | None]], report: Any) -> list[str]:
    problems: list[str] = []
    sent: dict[str, dict[str, Any]] = {}
    for in_instantly in rig.sim.leads():
        key = normalize_email(in_instantly.get("email")) or str(in_instantly.get("email"))
        if key in sent:
            problems.append(f"{key} sent twice")
        sent[key] = in_instantly
    rejects = rig.warehouse.query("SELECT email, reason, skipped FROM `{ds}.v_source_rejects`", label="proof")
    recorded: dict[str | None, list[tuple[str, bool]]] = {}
    for r in rejects:
        recorded.setdefault(r["email"], []).append((str(r["reason"]), bool(r["skipped"])))
    for case in cases:
        raw = case.row["email"]
        email = normalize_email(raw)
        where = f"row {case.note!r}"
        entries = recorded.get(raw, [])
        lead: dict[str, Any] | None
        if case.expect == "skip":
            if not any(reason == case.reason and skipped for reason, skipped in entries):
                problems.append(f"{where}: not recorded as skipped ({case.reason}); found {entries}")
            if email is not None and email in sent and case.reason != REJECT_DUPLICATE:
                problems.append(f"{where}: skipped row was sent")
        elif case.expect == "revenue":
            lead = sent.get(email or "")
            if lead is None or lead.get("campaign") != rig.settings.smb_campaign_id:
                problems.append(f"{where}: not sent to the SMB campaign")
            if (REJECT_REVENUE, False) not in entries:
                problems.append(f"{where}: unreadable revenue not recorded; found {entries}")
        elif case.expect == "blocked":
            if email in sent:
                problems.append(f"{where}: a DNC address was sent")
        elif case.expect == "send":
            lead = sent.get(email or "")
            if lead is None:
                problems.append(f"{where}: a usable row was not sent (recorded: {entries})")
            else:
                problems += [f"{where}: {p}" for p in _sane(lead, case.row)]
        elif email not in sent and not any(skipped for _reason, skipped in entries):
            problems.append(f"{where}: neither sent nor recorded")
    for row in good:
        out = sent.get(str(row["email"]))
        if out is None:
            problems.append("a good row was not sent")
        elif out.get("first_name") != row["first_name"] or out.get("last_name") != row["last_name"]:
            problems.append("a good row's names changed on the way")
    expected_total = sum(1 for c in cases if c.expect in ("skip", "revenue"))
    counted = sum(report.source_rejects.values()) if report is not None else 0
    if counted < expected_total:
        problems.append(f"the run summary counts {counted} rejected source rows, expected at least {expected_total}")
    return problems


def _sane(lead: dict[str, Any], row: dict[str, str | None]) -> list[str]:
    problems = []
    for name in ("first_name", "last_name", "company_name"):
        value = lead.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 500):
            problems.append(f"{name} not a string of at most 500 characters")
    variables = lead.get("payload") or {}
    if isinstance(variables, dict) and any(len(str(v)) > 500 for v in variables.values()):
        problems.append("a custom variable longer than 500 characters")
    first = row.get("first_name")
    if first and first.strip() and len(first) <= 500 and lead.get("first_name") != first.strip():
        problems.append("first name changed on the way")
    return problems


# ---- hostile Instantly answers ----------------------------------------------------------------------

def _mangle(kind: str, lead: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A copy of a lead object broken in one way."""
    bad = dict(lead)
    if kind == "unknown status":
        bad["status"] = rng.choice((7, 99, -7, 4, 0))
    elif kind == "status of the wrong type":
        bad["status"] = rng.choice(("3", 3.0, None, True, [3], {"value": 3}, "completed"))
    elif kind == "status missing":
        bad.pop("status", None)
    elif kind == "reply count of the wrong type":
        bad["status"], bad["email_reply_count"] = 1, rng.choice(("1", 1.5, [1], -2, {"n": 1}))
    elif kind == "interest of the wrong type":
        bad["status"], bad["lt_interest_status"] = 1, rng.choice(("1", 2.5, [1], "interested"))
    elif kind == "id of the wrong type":
        bad["id"] = rng.choice((12345, None, ["x"], ""))
    elif kind == "id missing":
        bad.pop("id", None)
    return bad


UNDERSTOOD_NOT = ("unknown status", "status of the wrong type", "status missing", "reply count of the wrong type",
                  "interest of the wrong type", "id of the wrong type", "id missing")


class HostileListings:
    """Rewrites `POST /leads/list` answers: breaks chosen leads, pads pages with junk, remembers what it broke."""

    def __init__(self, rng: random.Random, share: float = 0.5, huge: bool = False) -> None:
        self.rng = rng
        self.share = share
        self.huge = huge
        self.broken: dict[str, str] = {}  # lead id -> how it was broken
        self._decided: set[str] = set()  # a lead is broken the same way in every listing of the run, or never
        self.junk_items = 0

    def __call__(self, endpoint: str, answer: Any) -> Any:
        if endpoint != "POST /leads/list" or not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            return answer
        items: list[Any] = []
        for lead in answer["items"]:
            lead_id = lead.get("id") if isinstance(lead, dict) else None
            if isinstance(lead_id, str) and lead_id not in self._decided:
                self._decided.add(lead_id)
                if self.rng.random() < self.share:
                    self.broken[lead_id] = self.rng.choice(UNDERSTOOD_NOT)
            if isinstance(lead_id, str) and lead_id in self.broken:
                kind = self.broken[lead_id]
                lead = _mangle(kind, lead, self.rng)
                lead["unexpected_field"] = {"nested": ["x"] * 3}
            items.append(lead)
        if self.huge and items:
            junk: list[Any] = [None, 42, "lead", [], {"no": "id"}, {"id": None, "status": 3}]
            padding = [self.rng.choice(items) for _ in range(2500)] + junk * 100
            self.junk_items += len(padding)
            items = items + padding
        return {**answer, "items": items}


def hostile_api(engines: Engines, engine: str, tally: Tally, *, rounds: int = 12, seed: int = 9) -> None:
    """Rounds of: finish some leads, run with hostile listings, check nothing misunderstood was deleted."""
    workdir = engines.workdir / "hostile-api"
    settings = proof_settings(workdir, inventory_cap=80, target_new_leads_per_run=40, batch_size=20,
                              max_active_days=20)
    warehouse = engines.open(engine, "hostile-api")
    sources = list(generate_source_rows(800, seed=6))
    build(warehouse, settings, sources, as_of=START)
    rig = Rig(warehouse, new_simulator(seed, START, sequence_days=10), settings, workdir=workdir)
    rng = random.Random(seed)
    try:
        for _ in range(2):
            tally.record(rig.run(), "hostile answers: set-up run")
            rig.sim.advance(5)
        for number in range(1, rounds + 1):
            rig.sim.advance(rng.uniform(1, 4))
            context = f"hostile answers round {number}"
            paging = number % 4 == 0
            hostile = HostileListings(rng, huge=number % 3 == 0)
            if paging:
                mode = ("repeat_cursor", "endless", "no_cursor")[(number // 4) % 3]
                rig.sim.set_fault("POST /leads/list", FaultSpec(paging=mode))  # type: ignore[arg-type]
                context += f" (paging {mode})"
            else:
                rig.adapter.rewrite = hostile
                context += " (huge pages)" if hostile.huge else ""
            record = rig.run()
            rig.adapter.rewrite = None
            rig.sim.clear_faults()
            tally.record(record, context)
            tally.add("hostile-answer runs")
            tally.add("lead objects broken", len(hostile.broken))
            tally.add("junk items in huge pages", hostile.junk_items)
            report = record.report
            notes = [n for p in report.phases.values() for n in p.notes] if report else []
            deleted = [lead_id for lead_id in hostile.broken if rig.sim.lead(lead_id) is None]
            for lead_id in deleted:
                tally.violations.append(f"{context}: lead {lead_id} deleted although its object was "
                                        f"broken ({hostile.broken[lead_id]})")
            if hostile.broken and not any("could not be classified" in n or "without a usable" in n for n in notes):
                tally.violations.append(f"{context}: broken lead objects not reported")
            if paging and report is not None and not report.warnings and not notes:
                tally.violations.append(f"{context}: a listing that never ends was not reported")
            if paging:
                tally.add("endless or repeating listings survived")
            follow = rig.run()
            tally.record(follow, f"{context}, honest follow-up run")
        runs = rig.settle(tally, "hostile answers, at the end")
        tally.add("follow-up runs", runs)
    finally:
        rig.close()
        warehouse.close()
