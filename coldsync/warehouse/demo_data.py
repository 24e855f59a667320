"""A synthetic warehouse of realistic size for the demo, tests and benchmarks.

Every address is at a reserved `.example` domain; the generator is seeded, so the same arguments
always give the same rows. It sprinkles the mess real lead tables have: case and whitespace
variants, repeated emails, malformed addresses, unknown revenue, apostrophes and accents.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.schema import SOURCE_COLUMNS, TableSpec

FIRST_NAMES = (
    "Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farah", "Gabriel", "Hana", "Ivan", "José", "Kai", "Léa",
    "Mateo", "Noor", "Olivia", "Priya", "Quinn", "Rafael", "Siobhán", "Tomás", "Uma", "Valentina",
    "Wei", "Ximena", "Yusuf", "Zoë", "Łukasz", "Aarav", "Bea", "Carlos", "Dana", "Elif", "Femi",
    "Grace", "Hugo", "Ines", "Jonas", "Kenji", "Lucía", "Mia",
)
LAST_NAMES = (
    "Smith", "O'Brien", "García", "Müller", "Nguyen", "Kowalski", "D'Angelo", "Johnson", "Rossi",
    "Tanaka", "Okafor", "Schmidt", "Dubois", "Novak", "Haddad", "Silva", "Kim", "Jensen", "Moreau",
    "Brown", "Fernández", "Ivanova", "Chen", "Patel", "Larsen", "Kaya", "Santos", "Weber", "Costa",
    "Ahmed",
)
WORDS = (
    "north", "blue", "summit", "maple", "harbor", "iron", "bright", "cedar", "delta", "ember", "falcon",
    "granite", "horizon", "juniper", "keystone", "lumen", "meadow", "nova", "orbit", "pioneer", "quartz",
    "ridge", "silver", "tidal", "union", "vertex", "willow", "zenith",
)
SUFFIXES = ("Labs", "Group", "Partners", "Logistics", "Health", "Foods", "Systems", "Studio", "Works", "Co")
STATES = ("CA", "NY", "TX", "FL", "WA", "IL", "MA", "CO", "GA", "NC", "OR", "AZ", "PA", "OH", "MN")
COUNTRIES = ("United States",) * 17 + ("Canada", "United Kingdom", "Australia")

SOURCE_SPEC = TableSpec("source_leads", SOURCE_COLUMNS, "Synthetic source leads (demo).")
SOURCE_FIELDS = tuple((c.name, c.type) for c in SOURCE_COLUMNS)
DNC_FIELDS = (("email", "STRING"), ("domain", "STRING"), ("source", "STRING"), ("reason", "STRING"),
              ("added_at", "TIMESTAMP"))
HISTORY_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("sequence_name", "STRING"),
                  ("status_final", "STRING"), ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"),
                  ("reason", "STRING"), ("recorded_at", "TIMESTAMP"))

INSERT_SOURCE_SQL = """
INSERT INTO `{source}` (email, first_name, last_name, company_name, domain, location, country, annual_revenue)
SELECT r.email, r.first_name, r.last_name, r.company_name, r.domain, r.location, r.country, r.annual_revenue
FROM UNNEST(@rows) AS r
"""
INSERT_DNC_SQL = """
INSERT INTO `{ds}.ops_dnc` (email, domain, source, reason, added_at)
SELECT r.email, r.domain, r.source, r.reason, r.added_at FROM UNNEST(@rows) AS r
"""
INSERT_HISTORY_SQL = """
INSERT INTO `{ds}.ops_lead_history`
  (email, campaign_id, sequence_name, status_final, completed_at, attempt_num, reason, recorded_at)
SELECT r.email, r.campaign_id, r.sequence_name, r.status_final, r.completed_at, r.attempt_num, r.reason,
       r.recorded_at
FROM UNNEST(@rows) AS r
"""
COUNT_SQL = "SELECT COUNT(*) AS n FROM `{source}`"


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("'", "")


@dataclass(frozen=True)
class DemoSizes:
    leads: int = 300_000
    dnc_every: int = 25  # one lead in 25 on the DNC list: ~12,000 at 300,000
    dnc_domains: int = 50
    history_every: int = 33  # ~3% contacted before


def generate_source_rows(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Deterministic synthetic lead rows, including the messy cases the view must handle."""
    rng = random.Random(seed)
    companies = max(1, count // 7)
    company_revenue: dict[int, Decimal | None] = {}
    emitted: list[str] = []
    for i in range(count):
        company = rng.randrange(companies)
        if company not in company_revenue:
            company_revenue[company] = (
                None if rng.random() < 0.08 else Decimal(int(10 ** rng.uniform(4.7, 7.7)))
            )
        word_a, word_b = WORDS[company % len(WORDS)], WORDS[(company // len(WORDS)) % len(WORDS)]
        company_name = f"{word_a.title()} {word_b.title()} {SUFFIXES[company % len(SUFFIXES)]}"
        domain = f"{word_a}-{word_b}-{company}.example"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{_ascii(first)}.{_ascii(last)}{i}@{domain}"
        roll = rng.random()
        if roll < 0.003:
            email = f"  {email.upper()} "  # valid after trimming and lower-casing
        elif roll < 0.005:
            email = rng.choice((email.replace("@", ""), email.replace("@", "@@"), email + ".", "", "   "))
        elif roll < 0.007 and emitted:
            email = rng.choice(emitted).upper()  # the same person twice, different case
        if roll >= 0.007 and len(emitted) < 5000:
            emitted.append(email)
        yield {
            "email": email,
            "first_name": first,
            "last_name": last,
            "company_name": company_name,
            "domain": domain,
            "location": rng.choice(STATES),
            "country": rng.choice(COUNTRIES),
            "annual_revenue": company_revenue[company],
        }


def ensure_demo_source_table(warehouse: Warehouse) -> None:
    """Create the (empty) demo source table, so the eligibility view has something to read."""
    if warehouse.existing_columns(SOURCE_SPEC.name) is None:
        warehouse.create_table(SOURCE_SPEC)


CLEAR_SOURCE_SQL = "DELETE FROM `{source}` WHERE TRUE"


def build_demo_warehouse(
    warehouse: Warehouse,
    *,
    sizes: DemoSizes | None = None,
    seed: int = 7,
    as_of: dt.datetime | None = None,
    campaign_ids: tuple[str, str] = ("demo-smb-campaign", "demo-midsize-campaign"),
    batch: int = 20_000,
    echo: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Create and fill the demo source table, DNC list and some history, unless already filled.

    Call after the schema exists (ensure_schema); it does not touch a non-empty source table.
    """
    sizes = sizes or DemoSizes()
    now = as_of or dt.datetime.now(dt.UTC)
    say = echo or (lambda _m: None)
    ensure_demo_source_table(warehouse)
    existing = int(warehouse.query(COUNT_SQL, label="demo.count")[0]["n"])
    if existing:
        say(f"demo source already has {existing} rows: left as it is")
        return {"source_rows": existing, "dnc": 0, "history": 0}
    rows = list(generate_source_rows(sizes.leads, seed))
    try:
        for start in range(0, len(rows), batch):
            warehouse.execute(INSERT_SOURCE_SQL, {"rows": Rows(SOURCE_FIELDS, rows[start:start + batch])},
                              label="demo.insert_source")
    except BaseException:
        # Interrupted (Ctrl-C) or failed half-way: leave the source empty, so the next build starts over
        # instead of keeping a partial demo for good ("already has N rows").
        warehouse.execute(CLEAR_SOURCE_SQL, label="demo.clear_partial_source")
        raise
    say(f"demo source: {len(rows)} leads")

    rng = random.Random(seed + 1)
    dnc: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        email = str(row["email"]).strip().lower()
        if i % sizes.dnc_every == 0 and "@" in email:
            dnc.append({"email": email, "domain": None, "source": "import", "reason": "legacy suppression list",
                        "added_at": now - dt.timedelta(days=rng.randrange(1, 700))})
    domains = sorted({str(r["domain"]) for r in rows[: sizes.dnc_domains * 40]})[: sizes.dnc_domains]
    for domain in domains:
        dnc.append({"email": None, "domain": domain, "source": "manual", "reason": "customer or competitor",
                    "added_at": now - dt.timedelta(days=rng.randrange(1, 700))})
    history: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        email = str(row["email"]).strip().lower()
        if i % sizes.history_every == 1 and "@" in email:
            revenue = row["annual_revenue"]
            segment = "SMB" if revenue is None or revenue < 1_000_000 else "Midsize"
            completed = now - dt.timedelta(days=rng.randrange(1, 240), hours=rng.randrange(24))
            history.append({
                "email": email,
                "campaign_id": campaign_ids[0] if segment == "SMB" else campaign_ids[1],
                "sequence_name": segment,
                "status_final": rng.choice(("completed", "completed", "completed", "replied")),
                "completed_at": completed,
                "attempt_num": 1,
                "reason": "demo history",
                "recorded_at": completed,
            })
    for start in range(0, len(dnc), batch):
        warehouse.execute(INSERT_DNC_SQL, {"rows": Rows(DNC_FIELDS, dnc[start:start + batch])},
                          label="demo.insert_dnc")
    for start in range(0, len(history), batch):
        warehouse.execute(INSERT_HISTORY_SQL, {"rows": Rows(HISTORY_FIELDS, history[start:start + batch])},
                          label="demo.insert_history")
    say(f"demo DNC: {len(dnc)} entries ({len(domains)} domains); demo history: {len(history)} rows")
    return {"source_rows": len(rows), "dnc": len(dnc), "history": len(history)}
