"""Hostile do-not-contact entries: the DNC list as people really paste it, each entry paired with a lead.

Every entry is inserted RAW into ops_dnc (email or domain as given, no keys), as a person or an import
would: CRLF, tab, zero-width space, NBSP and BOM around it, `mailto:`, `<...>`, `Name <...>`, quotes,
upper case, +tag variants of a source address, Gmail dot and googlemail variants, `www.` and URL forms
of a domain (scheme, path, query, port), a trailing dot, `@domain`, Unicode domains whose leads use
punycode, an erased person's hash; and entries that block nobody. Each usable entry is paired with the
source lead it must hold back ("blocked") or with a control it must not ("control"); each unusable one
must be listed in v_dnc_rejects ("unusable") and never fail a run.

One run with room for every source row, then: every blocked lead held back (no add request carried
it), every control sent once, every unusable entry in v_dnc_rejects and no usable one there, the run
summary counting the rejects, the keys SQL computes from the raw entries equal to Python's (every ASCII
entry, both engines), invariants 1-5 after every run, and runs until nothing changes (the block-list
mirror included) with the settled state checked. Before that run, the view alone (keys computed in SQL,
nothing stored yet) must already hold back every blocked ASCII lead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from coldsync.rules import normalize_email
from coldsync.suppression import address_key, domain_key, erasure_hash
from coldsync.warehouse.base import Rows, Warehouse
from coldsync.warehouse.demo_data import generate_source_rows
from coldsync.warehouse.schema import ERASURE_SALT_KEY
from proof.crash import START
from proof.engines import Engines, proof_settings
from proof.harness import Rig, Tally, new_simulator
from tests.helpers import GMAIL, GOOGLEMAIL, add_sources, build, lead
from tests.invariants import added_emails

H = "dnc-hostile.example"  # email entries share this domain (no domain entry names it)
DNC_ROW_FIELDS = (("email", "STRING"), ("domain", "STRING"), ("email_hash", "STRING"), ("source", "STRING"),
                  ("reason", "STRING"), ("added_at", "TIMESTAMP"))
INSERT_RAW_DNC_SQL = """
INSERT INTO `{ds}.ops_dnc` (email, domain, email_hash, source, reason, added_at)
SELECT r.email, r.domain, r.email_hash, r.source, r.reason, r.added_at FROM UNNEST(@rows) AS r
"""
ERASED = f"erased+old@{H}"  # the address an erased person had: only its hash is stored


@dataclass(frozen=True)
class DncCase:
    """One raw DNC entry and what it must do to its lead."""

    expect: str  # "blocked": the lead is held back; "control": the lead is sent; "unusable": in v_dnc_rejects
    note: str
    email: str | None = None  # the entry's email column, raw
    domain: str | None = None  # the entry's domain column, raw
    lead: str | None = None  # the source lead it is paired with
    erased: bool = False  # the entry is the hash of `email`'s key (email column left NULL)


def _blocked_email(entry: str, lead_email: str, note: str) -> DncCase:
    return DncCase("blocked", note, email=entry, lead=lead_email)


def _blocked_domain(entry: str, lead_email: str, note: str) -> DncCase:
    return DncCase("blocked", note, domain=entry, lead=lead_email)


def corpus() -> list[DncCase]:
    """The hostile entries. Addresses are at reserved .example domains, but for the Gmail rules, which
    exist only at gmail.com / googlemail.com (synthetic local parts; nothing is sent: a simulator)."""
    blocked = [
        _blocked_email(f"crlf@{H}\r\n", f"crlf@{H}", "CRLF line end"),
        _blocked_email(f"cr@{H}\r", f"cr@{H}", "CR line end"),
        _blocked_email(f"\ttab@{H}\t", f"tab@{H}", "tabs"),
        _blocked_email(f"\u200bzwsp@{H}\u200b", f"zwsp@{H}", "zero-width spaces"),
        _blocked_email(f"\u00a0nbsp@{H}\u00a0", f"nbsp@{H}", "NBSP"),
        _blocked_email(f"\ufeffbom@{H}", f"bom@{H}", "BOM of a CSV's first line"),
        _blocked_email(f"mailto:mailto@{H}", f"mailto@{H}", "mailto:"),
        _blocked_email("MAILTO:Shout@DNC-Hostile.Example", f"shout@{H}", "MAILTO: in upper case"),
        _blocked_email(f"mailto:query@{H}?subject=Unsubscribe", f"query@{H}", "mailto: with a query"),
        _blocked_email(f"<angle@{H}>", f"angle@{H}", "<...>"),
        _blocked_email(f"<mailto:angle-mailto@{H}>", f"angle-mailto@{H}", "<mailto:...>"),
        _blocked_email(f"Jane Doe <named@{H}>", f"named@{H}", "Name <...>"),
        _blocked_email(f'"Doe, Jane" <quoted-name@{H}>', f"quoted-name@{H}", '"Quoted, Name" <...>'),
        _blocked_email(f"'single@{H}'", f"single@{H}", "single quotes"),
        _blocked_email(f'"double@{H}"', f"double@{H}", "double quotes"),
        _blocked_email("UPPER.CASE@DNC-HOSTILE.EXAMPLE", f"upper.case@{H}", "upper case"),
        _blocked_email(f"trailing-dot@{H}.", f"trailing-dot@{H}", "trailing dot"),
        _blocked_email(f"tagged+newsletter@{H}", f"tagged@{H}", "+tag entry, plain source address"),
        _blocked_email(f"plain@{H}", f"plain+promo@{H}", "plain entry, +tag source address"),
        _blocked_email(f"both+a@{H}", f"both+b@{H}", "two +tag variants"),
        _blocked_email(f"dotplus.+promo@{H}", f"dotplus@{H}", "a dot before the +tag"),
        _blocked_email(f"'apostrophe@{H}", f"'apostrophe@{H}", "a leading apostrophe (part of the address)"),
        _blocked_email(f"coldsync.proof.dots@{GMAIL}", f"coldsyncproofdots@{GMAIL}", "Gmail dot variant"),
        _blocked_email(f"ColdSyncProofAlias+x@{GOOGLEMAIL}", f"c.o.l.d.s.y.n.c.p.r.o.o.f.alias@{GMAIL}",
                       "googlemail alias, +tag and Gmail dots"),
        _blocked_email("  Name <MAILTO:Combo+Tag@DNC-Hostile.Example.>  \r", f"combo@{H}",
                       "everything at once: spaces, Name, mailto:, upper case, +tag, trailing dot, CR"),
        _blocked_email(f"<lf-angle@{H}>\n", f"lf-angle@{H}", "<...> then a line feed"),
        _blocked_email(f"Jane Roe <crlf-named@{H}>\r\n", f"crlf-named@{H}", "Name <...> then CRLF"),
        _blocked_email("kontakt@bücher-dnc.example", "kontakt@xn--bcher-dnc-q9a.example",
                       "Unicode domain in an email entry, punycode lead"),
        _blocked_email("Info@BÜCHER-DNC.EXAMPLE", "info@xn--bcher-dnc-q9a.example",
                       "Unicode domain in upper case, punycode lead"),
        _blocked_domain("www.wwwcorp-dnc.example", "x@wwwcorp-dnc.example", "www. domain"),
        _blocked_domain("https://www.urlcorp-dnc.example/contact?ref=1#top", "x@urlcorp-dnc.example",
                        "URL with www., path, query and fragment"),
        _blocked_domain("http://portcorp-dnc.example:8080/path", "x@portcorp-dnc.example", "URL with a port"),
        _blocked_domain("HTTPS://UPPERURL-DNC.EXAMPLE/", "x@upperurl-dnc.example", "URL in upper case"),
        _blocked_domain("dotcorp-dnc.example.", "x@dotcorp-dnc.example", "trailing-dot domain"),
        _blocked_domain("@atcorp-dnc.example", "x@atcorp-dnc.example", "@domain"),
        _blocked_domain("  crcorp-dnc.example\r\n", "x@crcorp-dnc.example", "domain with spaces and CRLF"),
        _blocked_domain("\ufeffbomcorp-dnc.example", "x@bomcorp-dnc.example", "domain after a BOM"),
        _blocked_domain("WWW.Www-dnc.example", "x@www-dnc.example", "WWW. in upper case"),
        _blocked_domain("sub.nested-dnc.example", "x@sub.nested-dnc.example", "sub-domain entry, same sub-domain"),
        _blocked_domain("https://urlpath-dnc.example/contact/x@victim-dnc.example", "y@urlpath-dnc.example",
                        "URL whose path holds an address: the host is blocked"),
        _blocked_domain("müller-dnc.example", "x@xn--mller-dnc-q9a.example", "Unicode domain, punycode lead"),
        _blocked_domain("https://www.Straße-dnc.example/", "x@xn--strae-dnc-j1a.example",
                        "Unicode URL with www. and ß, punycode lead"),
        DncCase("blocked", "erased person (hash of the key, salted)", email=ERASED, lead=f"Erased@{H}", erased=True),
    ]
    controls = [
        DncCase("control", "dots matter outside Gmail", email=f"dot.ted@{H}", lead=f"dotted@{H}"),
        DncCase("control", "a leading + is not a tag", email=f"+lead@{H}", lead=f"lead@{H}"),
        DncCase("control", "no prefix match", email=f"jane@{H}", lead=f"janet@{H}"),
        DncCase("control", "an unpaired leading apostrophe is not a quote", email=f"'apos-ctl@{H}",
                lead=f"apos-ctl@{H}"),
        DncCase("control", "a sub-domain entry does not block its parent", domain="sub.parent-dnc.example",
                lead="x@parent-dnc.example"),
        DncCase("control", "a domain entry does not block its sub-domains", domain="parent2-dnc.example",
                lead="x@eu.parent2-dnc.example"),
        DncCase("control", "no suffix match", domain="ample-dnc.example", lead="x@sample-dnc.example"),
        DncCase("control", "an address in a URL's path is not blocked",
                domain="https://urlpath2-dnc.example/contact/x@victim-dnc.example", lead="x@victim-dnc.example"),
        DncCase("control", "an IDN is not its transliteration", domain="bücher-ctl.example",
                lead="x@buecher-ctl.example"),
    ]
    unusable = [DncCase("unusable", note, email=email) for email, note in (
        ("not-an-address", "email entry without @"), (f"two@@{H}", "@@"), ("", "empty"),
        ("   \r\n", "blank"), ("\u200b\ufeff", "invisible characters only"), ("Name <>", "empty <>"),
        (f"a@b@{H}", "two @"), (f"ünï@{H}", "non-ASCII local part"), ("x@[127.0.0.1]", "IP literal"),
        ("x@localhost", "no dot in the domain"), (f"x y@{H}", "space inside"),
        ("x@xn--.example", "broken punycode label"), (f"x'; DROP TABLE ops_dnc;--@{H}", "SQL in the entry"),
        ("a" * 300 + f"@{H}", "longer than 254 characters"),
        (f"a@{H}, b@{H}", "two addresses, comma-separated"))]
    unusable += [DncCase("unusable", note, domain=domain) for domain, note in (
        ("nodot", "domain without a dot"), ("user@mixup-dnc.example", "an address in the domain column"),
        ("http://", "a scheme only"), ("-bad-.example", "label with leading and trailing -"), ("   ", "blank"),
        ("x.123", "numeric TLD"), ("😀.example", "emoji"), ("bücher..example", "empty label in an IDN"))]
    unusable.append(DncCase("unusable", "no email, no domain, no hash"))
    return blocked + controls + unusable


def later() -> list[DncCase]:
    """Entries added raw AFTER their lead was sent: the next run must take the lead out of Instantly
    (history `suppressed`), the Unicode ones included, which only the keys stored in Python can match."""
    return [
        DncCase("blocked", "later: Name <MAILTO:...+tag> with a tab", email="  Later Person <MAILTO:Later-Email+X@"
                "DNC-Hostile.Example>\t", lead=f"later-email@{H}"),
        DncCase("blocked", "later: URL with www. and a port", domain="https://www.LaterCorp-dnc.example:443/about",
                lead="x@latercorp-dnc.example"),
        DncCase("blocked", "later: Unicode domain entry, punycode lead", domain="münchen-dnc.example",
                lead="x@xn--mnchen-dnc-9db.example"),
        DncCase("blocked", "later: Unicode domain in an email entry, punycode lead",
                email="Kontakt@ZÜRICH-DNC.example", lead="kontakt@xn--zrich-dnc-q9a.example"),
        DncCase("blocked", "later: erased person", email=f"erased-later+x@{H}", lead=f"erased-later@{H}", erased=True),
    ]


def good_leads(count: int) -> list[dict[str, Any]]:
    """Ordinary source rows next to the corpus (the generator's messy ones dropped)."""
    rows: list[dict[str, Any]] = []
    for source in generate_source_rows(count * 2, seed=31):
        if normalize_email(source["email"]) == source["email"] and len(rows) < count:
            rows.append(source)
    return rows


def _add_entries(warehouse: Warehouse, cases: list[DncCase], at: dt.datetime) -> None:
    """The entries, raw: as a person or an import writes them (no keys; the hash of an erased person)."""
    salt_rows = warehouse.query("SELECT MAX(value_string) AS salt FROM `{ds}.config` WHERE key = @key",
                                {"key": ERASURE_SALT_KEY}, label="proof.salt")
    salt = str(salt_rows[0]["salt"] or "")
    entries = []
    for case in cases:
        key = address_key(case.email) if case.erased else None
        entries.append({"email": None if case.erased else case.email, "domain": case.domain,
                        "email_hash": erasure_hash(key, salt) if key else None,
                        "source": "manual", "reason": _reason(case), "added_at": at})
    warehouse.execute(INSERT_RAW_DNC_SQL, {"rows": Rows(DNC_ROW_FIELDS, entries)}, label="proof.hostile_dnc")


def _reason(case: DncCase) -> str:
    """The entry's `reason`: unique per case, so the views' rows are matched to their case by it."""
    return f"proof: {case.note}"


def hostile_dnc(engines: Engines, engine: str, tally: Tally, *, added_later: bool = True) -> None:
    """Load the corpus raw, check the view alone, run once with room for all, account for every entry;
    then (`added_later`) add entries for leads already in Instantly and require them out one run later."""
    cases = corpus()
    good = good_leads(40)
    workdir = engines.workdir / f"hostile-dnc-{engine}"
    settings = proof_settings(workdir, inventory_cap=1000, target_new_leads_per_run=1000, max_new_leads_per_run=1000)
    warehouse = engines.open(engine, f"hostile-dnc-{engine}")
    rig = Rig(warehouse, new_simulator(4, START), settings, workdir=workdir)
    try:
        build(warehouse, settings, as_of=START)
        add_sources(warehouse, good + [lead(c.lead, Decimal(2_000_000)) for c in cases + later() if c.lead])
        _add_entries(warehouse, cases, START - dt.timedelta(days=1))
        tally.add("hostile DNC entries", len(cases) + len(later()))
        for expect, label in (("blocked", "entries that must hold back their lead"),
                              ("control", "entries with a control lead that must be sent"),
                              ("unusable", "unusable entries that must be reported")):
            tally.add(label, sum(1 for c in cases if c.expect == expect))
        tally.violations.extend(f"hostile DNC entries, before any run: {p}" for p in _view_alone(rig, cases))
        tally.violations.extend(f"hostile DNC entries: {p}" for p in _sql_keys(rig, cases))
        record = rig.run()
        tally.record(record, "hostile DNC entries")
        first = len(rig.sim.request_log)
        problems, counts = _account(rig, cases, good, record.report)
        tally.violations.extend(f"hostile DNC entries: {p}" for p in problems)
        for label, n in counts.items():
            tally.add(label, n)
        tally.add("follow-up runs", rig.converge(tally, "hostile DNC entries"))
        later_sent = {address_key(e) for e in added_emails(rig.sim, first)}
        late = [c.note for c in cases if c.expect == "blocked" and c.lead and address_key(c.lead) in later_sent]
        if late:
            tally.violations.append(f"hostile DNC entries: blocked leads sent by a later run: {late}")
        if added_later:
            tally.violations.extend(f"hostile DNC entries added later: {p}" for p in _suppressed_later(rig, tally))
    finally:
        rig.close()
        warehouse.close()


def _suppressed_later(rig: Rig, tally: Tally) -> list[str]:
    """Entries added after their leads were sent: one run later every such lead is out of Instantly,
    recorded `suppressed` (the checker's invariant 1 holds the run to it as well)."""
    cases = later()
    in_instantly = {address_key(str(x["email"])): x for x in rig.sim.leads()}
    problems = [f"entry {c.note!r}: its lead was not in Instantly to begin with" for c in cases
                if address_key(c.lead) not in in_instantly]
    _add_entries(rig.warehouse, cases, rig.sim.now)
    tally.record(rig.run(), "hostile DNC entries added later")
    outcomes = {str(r["instantly_lead_id"]): str(r["status_final"]) for r in rig.warehouse.query(
        "SELECT instantly_lead_id, status_final FROM `{ds}.ops_lead_history` WHERE instantly_lead_id IS NOT NULL",
        label="proof.history")}
    for case in cases:
        found = in_instantly.get(address_key(case.lead))
        if found is None:
            continue
        if rig.sim.lead(str(found["id"])) is not None:
            problems.append(f"entry {case.note!r}: its lead is still in Instantly one run later")
        elif outcomes.get(str(found["id"])) != "suppressed":
            problems.append(f"entry {case.note!r}: its lead left with outcome {outcomes.get(str(found['id']))}")
        else:
            tally.add("leads of persons suppressed later taken out within one run")
    tally.add("follow-up runs", rig.converge(tally, "hostile DNC entries added later"))
    return problems


def _view_alone(rig: Rig, cases: list[DncCase]) -> list[str]:
    """Before any run (no key stored yet: the view computes them from the raw entries in SQL), every
    blocked ASCII lead is already out of v_ready_for_instantly, and every control is in it."""
    ready = {str(r["email"]) for r in rig.warehouse.query("SELECT email FROM `{ds}.v_ready_for_instantly`",
                                                          label="proof.ready")}
    problems = []
    for case in cases:
        lead_email = normalize_email(case.lead) if case.lead else None
        raw = case.email or case.domain or ""
        if case.expect == "blocked" and raw.isascii() and lead_email in ready:
            problems.append(f"entry {case.note!r}: the view (SQL keys) lets its lead through")
        if case.expect == "control" and lead_email not in ready:
            problems.append(f"entry {case.note!r}: the view holds its control lead back")
    return problems


def _sql_keys(rig: Rig, cases: list[DncCase]) -> list[str]:
    """The keys the views compute in SQL from each raw ASCII entry equal Python's (coldsync.suppression)."""
    rows = rig.warehouse.query("SELECT reason, sql_email_key, sql_domain_key FROM `{ds}.v_dnc_entries`",
                               label="proof.dnc_entries")
    problems = []
    for case in cases:
        if case.erased or not (case.email or case.domain or "").isascii():
            continue
        found = [r for r in rows if r["reason"] == _reason(case)]
        if not found:
            problems.append(f"entry {case.note!r} missing from v_dnc_entries")
            continue
        python = (address_key(case.email) if case.email is not None else None,
                  domain_key(case.domain) if case.domain is not None else None)
        if (found[0]["sql_email_key"], found[0]["sql_domain_key"]) != python:
            problems.append(f"entry {case.note!r}: SQL keys {found[0]['sql_email_key']!r}, "
                            f"{found[0]['sql_domain_key']!r} differ from Python's {python[0]!r}, {python[1]!r}")
    return problems


def _account(rig: Rig, cases: list[DncCase], good: list[dict[str, Any]],
             report: Any) -> tuple[list[str], dict[str, int]]:
    problems: list[str] = []
    counts = {"blocked leads held back": 0, "control leads sent": 0, "unusable entries in v_dnc_rejects": 0}
    sent = [address_key(e) for e in added_emails(rig.sim, 0)]
    rejects = rig.warehouse.query("SELECT entry_reason, reason FROM `{ds}.v_dnc_rejects`", label="proof.dnc_rejects")
    for case in cases:
        where = f"entry {case.note!r}"
        listed = [r for r in rejects if r["entry_reason"] == _reason(case)]
        if case.expect == "unusable":
            if listed:
                counts["unusable entries in v_dnc_rejects"] += 1
            else:
                problems.append(f"{where}: blocks nobody but is not listed in v_dnc_rejects")
            continue
        if listed:
            problems.append(f"{where}: usable, but listed in v_dnc_rejects ({listed[0]['reason']})")
        times = sent.count(address_key(case.lead))
        if case.expect == "blocked":
            if times:
                problems.append(f"{where}: its lead was sent (a DNC address)")
            else:
                counts["blocked leads held back"] += 1
        elif times == 1:
            counts["control leads sent"] += 1
        else:
            problems.append(f"{where}: its control lead was sent {times} times, not once")
    if any(sent.count(address_key(str(row["email"]))) != 1 for row in good):
        problems.append("an ordinary source row was not sent exactly once")
    unusable = sum(1 for c in cases if c.expect == "unusable")
    counted = sum(report.dnc_rejects.values()) if report is not None else 0
    if counted < unusable:
        problems.append(f"the run summary counts {counted} DNC values that cannot be used, "
                        f"expected at least {unusable}")
    return problems, counts
