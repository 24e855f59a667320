"""Erasure that keeps the suppression: `python sync_once.py --erase EMAIL` (or `--erase-file PATH`).

A person is every address with the same suppression key (`coldsync.suppression.address_key`), so
erasing ``Jane@Acme.example`` also erases ``jane+promo@acme.example`` and a hand-imported
``JANE@ACME.EXAMPLE``. For each person, in this order (each step safe to repeat):

1. SUPPRESSION: one `ops_dnc` row with `email` and `domain` NULL and `email_hash` =
   `erasure_hash(key, salt)` (source `erasure`), so the person is never sent again, also when a
   source row with the address comes back (`v_lead_candidates` honours hash rows). The salt is the
   warehouse's `config` row `ERASURE_SALT_KEY`, created here when missing (`ensure_erasure_salt`).
2. INSTANTLY: the person's leads are deleted by explicit id: the ids the warehouse knows (state and
   dead-letter rows) and those a look-up by email finds (every address form the warehouse and the
   source table hold). A second look-up checks that none is left.
3. WAREHOUSE ROWS: the person's rows of `ops_inst_state`, `ops_lead_history`, `ops_dead_letters`
   and the plain-text rows of `ops_dnc` are deleted (a DNC row that also blocked another domain
   is kept as a domain-only entry), and so is the person's row of `ops_candidates` (a copy of the
   source: a later refresh copies the address again only while the source table still holds it); the
   ready queue (`ops_ready_queue`, copies of candidates rows) is dropped whole, the next run rebuilds it.
   The person's webhook events (`ops_instantly_events`, by email key) go last, after the hash of step 1 is
   written, so the suppression outlives them. On BigQuery a DELETE cannot touch rows still in the streaming
   buffer (the receiver streams its rows: up to about 90 minutes after a delivery): the erase then does
   everything else, exits 1 and says so; running the same command again later removes them (every step is
   idempotent: the hash is not added twice, the leads and rows already gone are not found again).
4. TEXT: in every other row of every table (`schema.TABLES`), any STRING value holding one of the
   person's addresses, in any form (case, +tag, wrapped, in JSON), has it replaced by ``[erased]``:
   dead letters' `error_text`, run log `error_text` / `summary_json`, DNC reasons, ...

The source table is the user's own: it is read (to find address forms and to report how many rows
still hold the address) and never written.

Matching runs in SQL with the generated `sql_address_key` against the keys as a parameter, in a
bounded number of statements whatever the number of addresses: one read of the person's rows, one
read of the source, one read per table for text, then at most one write per table. Values only
travel as query parameters. With DRY_RUN every read and look-up runs and nothing is written
anywhere (not the salt either). Output only ever holds masked addresses (`mask_email`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import idna

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient, Lead
from coldsync.instantly.errors import InstantlyError
from coldsync.redact import mask_email, redact
from coldsync.runlock import lock_held_message
from coldsync.settings import LEASE_SHARE, Settings
from coldsync.store import Store
from coldsync.suppression import (
    DOMAIN_ALIASES,
    address_key,
    canonical_email,
    erasure_hash,
    key_domain,
    sql_address_key,
    sql_erasure_hash,
)
from coldsync.warehouse.base import Rows, StringArray, Warehouse, WarehouseError
from coldsync.warehouse.migrate import ensure_erasure_salt
from coldsync.warehouse.schema import CANDIDATES, ERASURE_SALT_KEY, EVENTS, READY_QUEUE, SALT_SQL, TABLES, TableSpec

ERASED = "[erased]"
"""What replaces an erased address inside a kept text value."""

HASH_SOURCE = "erasure"
HASH_REASON = "erased on request; suppression kept as a salted hash"

MAX_LISTED = 10
"""Masked addresses listed in the output at most (the rest are counted)."""

PERSON_TABLES = ("ops_inst_state", "ops_lead_history", "ops_dead_letters", "ops_dnc")
"""Tables whose rows ARE the person's data: deleted whole."""

EVENTS_STEP = "webhook events removed"
"""Said not done when BigQuery's streaming buffer still holds some of the person's ops_instantly_events rows."""

STEPS = ("suppression hash added", "Instantly leads deleted", "warehouse rows removed",
         "address masked in kept rows")
"""The live steps, in order: the outcome says which were done and which were not."""


class EraseInputError(ValueError):
    """The addresses to erase cannot be used; the message names each one masked. Nothing was touched."""


class EraseFailed(Exception):
    """The erasure stopped (the message says why, masked); what was done is in the outcome."""


# --- input (pure) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One person to erase.

    key:    the suppression key (``jane@acme.example``): what every comparison uses;
    forms:  the plain addresses as given, unwrapped and lower-cased (for the Instantly look-up);
    masked: the given addresses masked (``j***@acme.example``), for output.
    `key` and `forms` are personal data: never print them.
    """

    key: str
    forms: tuple[str, ...]
    masked: tuple[str, ...]


def mask_given(raw: str) -> str:
    """A given value masked for a message: ``j***@acme.example``, or ``n*** (no @)``."""
    value = raw.strip()
    if "@" not in value:
        return f"{value[:1]}*** (no @)" if value else "(empty)"
    return mask_email(value)


def read_address_file(path: Path | str) -> list[tuple[str, str]]:
    """The addresses of an erase file as (value, where) pairs, where = ``PATH line N``.

    One address a line; blank lines and lines starting with ``#`` (after leading spaces) are
    skipped. Raises EraseInputError when the file cannot be read as UTF-8 text.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as exc:
        raise EraseInputError(f"cannot read the erase file {file}: {type(exc).__name__}") from exc
    out: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if value and not value.startswith("#"):
            out.append((value, f"{file} line {number}"))
    return out


def erasure_targets(given: Sequence[tuple[str, str]]) -> list[Target]:
    """The persons to erase from (value, where) pairs, one Target per suppression key, in key order.

    Raises EraseInputError naming every value (masked, with where it came from) that has no key,
    or when nothing is given at all.
    """
    if not given:
        raise EraseInputError("no address to erase was given")
    bad = [f"{mask_given(value)} ({where})" for value, where in given if address_key(value) is None]
    if bad:
        raise EraseInputError("not a usable email address, nothing was erased: " + ", ".join(bad))
    by_key: dict[str, tuple[list[str], list[str]]] = {}
    for value, _where in given:
        key, form = address_key(value), canonical_email(value)
        assert key is not None and form is not None
        forms, masked = by_key.setdefault(key, ([], []))
        if form not in forms:
            forms.append(form)
        if mask_given(value) not in masked:
            masked.append(mask_given(value))
    return [Target(key, tuple(forms), tuple(masked)) for key, (forms, masked) in sorted(by_key.items())]


def targets_from_cli(addresses: Sequence[str], files: Sequence[str]) -> list[Target]:
    """The Targets of `--erase EMAIL` (repeatable) and `--erase-file PATH` (repeatable).
    Raises EraseInputError as `erasure_targets` and `read_address_file` do."""
    given = [(value, "--erase") for value in addresses]
    for path in files:
        given.extend(read_address_file(path))
    return erasure_targets(given)


# --- text (pure) -----------------------------------------------------------------------------------

# A token that may hold an address: anything around an @ up to a separator (a Unicode domain too).
_TOKEN_RE = re.compile(r"[^\s<>()\[\]{},;:\"]+@[^\s<>()\[\]{},;:\"/?#]+")
# An ASCII address inside a token (the characters EMAIL_PATTERN allows), leftmost first.
_ASCII_RE = re.compile(r"[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+")


def scrub_text(text: str, keys: frozenset[str]) -> str:
    """`text` with every address whose suppression key is in `keys` replaced by ``[erased]``.

    Catches any case, +tags, Gmail dots, ``mailto:`` and ``<...>`` wrappers, quotes, JSON escapes
    around the address and Unicode domains; only the address itself is replaced, so JSON stays JSON.
    Other addresses (``xjane@acme.example`` when erasing ``jane@acme.example``) are left alone.
    """
    def replace_token(match: re.Match[str]) -> str:
        token = match.group(0)
        spans: list[tuple[int, int]] = []
        for sub in _ASCII_RE.finditer(token):
            start = sub.start() + len(sub.group(0)) - len(sub.group(0).lstrip(".'"))
            end = sub.end() - len(sub.group(0)) + len(sub.group(0).rstrip("."))  # a full stop stays
            if address_key(token[start:end]) in keys:
                spans.append((start, end))
        if not spans:
            return ERASED if address_key(token) in keys else token
        out, last = [], 0
        for start, end in spans:
            out.append(token[last:start] + ERASED)
            last = end
        return "".join(out) + token[last:]

    return _TOKEN_RE.sub(replace_token, text)


def domain_needles(keys: Iterable[str]) -> list[str]:
    """Lower-case ``@domain`` substrings a text holding one of these persons' addresses must contain
    (the key's domain, the domains aliased to it, the Unicode form of a punycode domain): the SQL
    pre-filter of the text scan; `scrub_text` decides exactly."""
    needles: set[str] = set()
    for key in keys:
        domain = key_domain(key)
        forms = {domain, *(alias for alias, target in DOMAIN_ALIASES.items() if target == domain)}
        for form in list(forms):
            if "xn--" in form:
                with contextlib.suppress(idna.IDNAError, UnicodeError, ValueError):
                    forms.add(idna.decode(form))
        needles.update(f"@{form}" for form in forms)
    return sorted(needles)


# --- SQL -------------------------------------------------------------------------------------------


def _holds_needle(text: str) -> str:
    """TRUE when the lower-cased `text` contains one of @needles (`domain_needles`); never NULL."""
    return f"EXISTS (SELECT 1 FROM UNNEST(@needles) AS n WHERE STRPOS(LOWER({text}), n) > 0)"  # noqa: S608


def _person_values(from_sql: str, value: str) -> str:
    """An uncorrelated query of the distinct `value`s of `from_sql` (alias u) whose suppression key is
    in @keys. The cheap domain test runs first, in its own subquery: the composed key expression is
    costly, and engines do not short-circuit it inside one WHERE."""
    inner = f"SELECT DISTINCT {value} AS v FROM {from_sql} AS u WHERE {_holds_needle(value)}"  # noqa: S608
    return f"SELECT x.v FROM ({inner}) AS x WHERE {sql_address_key('x.v')} IN UNNEST(@keys)"  # noqa: S608


def _is_person(table: str, column: str) -> str:
    """TRUE when the row's `column` (alias t) is an address of one of the persons; never NULL."""
    return f"COALESCE(t.{column} IN ({_person_values(f'`{{ds}}.{table}`', f'u.{column}')}), FALSE)"


PERSON_PREDICATES: dict[str, str] = {
    "ops_inst_state": _is_person("ops_inst_state", "email"),
    "ops_lead_history": _is_person("ops_lead_history", "email"),
    "ops_dead_letters": _is_person("ops_dead_letters", "email"),
    # a plain-text DNC row of the person: by stored key, by the key of its email, or an address put in
    # the domain column by mistake; never a hash row
    "ops_dnc": (f"(t.email_hash IS NULL AND (COALESCE(t.email_key IN UNNEST(@keys), FALSE) "
                f"OR {_is_person('ops_dnc', 'email')} OR {_is_person('ops_dnc', 'domain')}))"),
    # the person's webhook events: by the key the receiver stored, or by the address as sent
    EVENTS.name: f"(COALESCE(t.email_key IN UNNEST(@keys), FALSE) OR {_is_person(EVENTS.name, 'email')})",
    # the source's copy after rules 1-2 (schema.CANDIDATES): keyed by the same suppression key
    CANDIDATES.name: "COALESCE(t.email_key IN UNNEST(@keys), FALSE)",
}
"""Per table, the WHERE expression (alias t; parameters @keys, @needles) of the rows that are the
person's data. Never NULL, so `NOT` of it is the other rows."""

_NULL = "CAST(NULL AS STRING)"

# The person's rows in one read: which table, the address, the Instantly lead id and campaign the
# warehouse knows, and a DNC row's domain/source/reason (kept when it also blocks another domain);
# then the hash rows already kept for these keys (salted with the warehouse's salt, as the view does).
PLAN_SQL = f"""
SELECT 'ops_inst_state' AS tbl, t.email, t.instantly_lead_id AS lead_id, t.campaign_id,
       {_NULL} AS domain, {_NULL} AS source, {_NULL} AS reason
FROM `{{ds}}.ops_inst_state` AS t WHERE {PERSON_PREDICATES["ops_inst_state"]}
UNION ALL
SELECT 'ops_lead_history', t.email, {_NULL}, {_NULL}, {_NULL}, {_NULL}, {_NULL}
FROM `{{ds}}.ops_lead_history` AS t WHERE {PERSON_PREDICATES["ops_lead_history"]}
UNION ALL
SELECT 'ops_dead_letters', t.email, t.instantly_lead_id, t.campaign_id, {_NULL}, {_NULL}, {_NULL}
FROM `{{ds}}.ops_dead_letters` AS t WHERE {PERSON_PREDICATES["ops_dead_letters"]}
UNION ALL
SELECT 'ops_dnc', t.email, {_NULL}, {_NULL}, t.domain, t.source, t.reason
FROM `{{ds}}.ops_dnc` AS t WHERE {PERSON_PREDICATES["ops_dnc"]}
UNION ALL
SELECT '{EVENTS.name}', t.email, t.lead_id, t.campaign_id, {_NULL}, {_NULL}, {_NULL}
FROM `{{ds}}.{EVENTS.name}` AS t WHERE {PERSON_PREDICATES[EVENTS.name]}
UNION ALL
SELECT 'hash', t.email_hash, {_NULL}, {_NULL}, {_NULL}, {_NULL}, {_NULL}
FROM `{{ds}}.ops_dnc` AS t
WHERE t.email_hash IN (SELECT {sql_erasure_hash("k", "p.salt")} FROM UNNEST(@keys) AS k
                       CROSS JOIN (SELECT {SALT_SQL} AS salt) AS p)
"""  # noqa: S608

# Source rows holding the persons' addresses (read only: the source is the user's own).
SOURCE_SQL = f"""
SELECT x.v AS email, COUNT(*) AS n
FROM (SELECT CAST(s.email AS STRING) AS v FROM `{{source}}` AS s WHERE {_holds_needle("CAST(s.email AS STRING)")}) AS x
WHERE {sql_address_key("x.v")} IN UNNEST(@keys)
GROUP BY 1
"""  # noqa: S608

READ_SALT_SQL = f"""
SELECT (SELECT COUNT(*) FROM `{{ds}}.config` WHERE key = '{ERASURE_SALT_KEY}') AS n, {SALT_SQL} AS salt
"""  # noqa: S608


def delete_sql(table: str) -> str:
    """One DELETE of the person's rows of a PERSON_TABLES table."""
    return f"DELETE FROM `{{ds}}.{table}` AS t WHERE {PERSON_PREDICATES[table]}"  # noqa: S608


def text_columns(spec: TableSpec, present: Iterable[str]) -> list[str]:
    """The STRING columns of a table (of those present in the warehouse)."""
    have = set(present)
    return [c.name for c in spec.columns if c.type == "STRING" and c.name in have]


def text_scan_sql(spec: TableSpec, columns: Sequence[str], strings: Sequence[str]) -> str:
    """Rows of a table, not the person's own (those are deleted), whose text holds one of @needles."""
    where = _holds_needle("CONCAT(" + ", ' ', ".join(f"COALESCE(t.{c}, '')" for c in strings) + ")")
    if spec.name in PERSON_PREDICATES:
        where += f" AND NOT {PERSON_PREDICATES[spec.name]}"
    return f"SELECT {', '.join(f't.{c}' for c in columns)} FROM `{{ds}}.{spec.name}` AS t WHERE {where}"  # noqa: S608


def text_merge_sql(spec: TableSpec, columns: Sequence[str], changed: Sequence[str]) -> str:
    """One MERGE rewriting `changed` columns of rows identified by the old value of every column."""
    fields = [f"r.old_{c}" for c in columns] + [f"r.new_{c}" for c in changed]
    same = " AND ".join(f"(t.{c} = s.old_{c} OR (t.{c} IS NULL AND s.old_{c} IS NULL))" for c in columns)
    sets = ", ".join(f"{c} = s.new_{c}" for c in changed)
    using = f"SELECT {', '.join(fields)} FROM UNNEST(@rows) AS r"  # noqa: S608
    return f"MERGE `{{ds}}.{spec.name}` AS t\nUSING ({using}) AS s\nON {same}\nWHEN MATCHED THEN UPDATE SET {sets}"


# --- the plan (pure: built from what the reads returned) ---------------------------------------------


@dataclass
class TextRewrite:
    """Kept rows of one table whose text values hold an erased address.

    columns: the columns read, the row's identity (all but FLOAT64); changed: the STRING columns rewritten;
    rows: per row, {'old_<col>': value for each column, 'new_<col>': value for each changed column}.
    """

    spec: TableSpec
    columns: list[str]
    changed: list[str]
    rows: list[dict[str, Any]]


@dataclass
class ErasePlan:
    """What the reads found for the persons.

    rows:           table -> rows of the person's data (PERSON_TABLES), to delete;
    known_leads:    Instantly lead ids the warehouse knows (state and dead-letter rows);
    addresses:      every plain address form to look up in Instantly (lower-case; personal data);
    keep_domains:   DNC rows to re-add as domain-only entries (their email part is the person's);
    hashes_kept:    hash rows already present for these persons;
    source_rows:    source rows holding an address of the persons (None: the source was unreadable);
    rewrites:       table -> TextRewrite of kept rows to mask.
    """

    rows: dict[str, int] = field(default_factory=dict)
    known_leads: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    keep_domains: list[dict[str, Any]] = field(default_factory=list)
    hashes_kept: int = 0
    source_rows: int | None = 0
    rewrites: dict[str, TextRewrite] = field(default_factory=dict)
    events: int = 0  # the persons' ops_instantly_events rows


def build_plan(targets: Sequence[Target], person_rows: Sequence[Mapping[str, Any]],
               source_rows: Sequence[Mapping[str, Any]] | None) -> ErasePlan:
    """The plan from PLAN_SQL's rows and SOURCE_SQL's rows (None when the source could not be read)."""
    keys = frozenset(t.key for t in targets)
    plan = ErasePlan(rows=dict.fromkeys(PERSON_TABLES, 0))
    for target in targets:
        plan.addresses.update(target.forms)
        plan.addresses.add(target.key)
    for row in person_rows:
        table = str(row["tbl"])
        if table == "hash":
            plan.hashes_kept += 1
            continue
        if table == EVENTS.name:
            plan.events += 1
        else:
            plan.rows[table] += 1
        form = canonical_email(row.get("email"))
        if form is not None and address_key(form) in keys:
            plan.addresses.add(form)
        lead_id = row.get("lead_id")
        if isinstance(lead_id, str) and lead_id.strip():
            plan.known_leads.add(lead_id)
        domain = row.get("domain")
        if table == "ops_dnc" and isinstance(domain, str) and domain.strip() and address_key(domain) is None:
            plan.keep_domains.append({"domain": domain, "source": str(row.get("source") or "manual"),
                                      "reason": scrub_text(str(row.get("reason") or ""), keys) or "kept"})
    if source_rows is None:
        plan.source_rows = None
    else:
        plan.source_rows = 0
        for row in source_rows:
            plan.source_rows += int(row["n"])
            form = canonical_email(row.get("email"))
            if form is not None and address_key(form) in keys:
                plan.addresses.add(form)
    return plan


def text_rewrite(spec: TableSpec, columns: Sequence[str], strings: Sequence[str],
                 rows: Sequence[Mapping[str, Any]], keys: frozenset[str]) -> TextRewrite | None:
    """The rows (read by text_scan_sql) whose text really holds an erased address, rewritten; None
    when none does (the pre-filter matched only the domain)."""
    changed: set[str] = set()
    rewritten: list[tuple[Mapping[str, Any], dict[str, str]]] = []
    for row in rows:
        new = {c: scrub_text(row[c], keys) for c in strings if isinstance(row.get(c), str)}
        new = {c: v for c, v in new.items() if v != row[c]}
        if new:
            changed.update(new)
            rewritten.append((row, new))
    if not rewritten:
        return None
    order = [c for c in strings if c in changed]
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row, new in rewritten:
        identity = tuple(row.get(c) for c in columns)
        unique[identity] = {**{f"old_{c}": row.get(c) for c in columns},
                            **{f"new_{c}": new.get(c, row.get(c)) for c in order}}
    return TextRewrite(spec, list(columns), order, list(unique.values()))


# --- the outcome -------------------------------------------------------------------------------------


@dataclass
class EraseOutcome:
    """What an erase did (or, in a dry run, would do). Holds no address but masked ones."""

    dry_run: bool
    persons: int
    given: list[str]  # masked
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None
    removed: dict[str, int] = field(default_factory=dict)  # table -> rows removed (would be)
    masked: dict[str, int] = field(default_factory=dict)  # table -> kept rows whose text was masked
    instantly_found: int = 0  # the persons' leads in Instantly (look-up and known ids)
    instantly_deleted: int = 0
    hashes_added: int = 0
    hashes_kept: int = 0  # already present before this run
    salt_created: bool = False
    salt_missing: bool = False  # dry run: the salt would be created
    planned: bool = False  # the reads ran: the counts below are facts
    source_table: str = ""
    source_rows: int | None = None
    events_found: int = 0  # the persons' webhook event rows (ops_instantly_events)
    events_removed: int = 0
    done: list[str] = field(default_factory=list)
    not_done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        data["exit_code"] = int(self.exit_code)
        return json.dumps(data, indent=2, sort_keys=True)

    def render_text(self) -> str:
        would = self.dry_run
        listed = ", ".join(self.given[:MAX_LISTED]) + (f" and {len(self.given) - MAX_LISTED} more"
                                                        if len(self.given) > MAX_LISTED else "")
        title = ("Erase, dry run (nothing is changed)" if would else
                 "Erase done" if self.exit_code == ExitCode.OK else "Erase FAILED")
        lines = [f"{title}: {self.persons} person(s): {listed}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        if not self.planned:
            lines.extend(f"  note: {note}" for note in self.notes)
            return "\n".join(lines)
        verb = "that would be removed" if would else "removed"
        lines.append(f"  warehouse rows {verb}: " + ", ".join(f"{t} {n}" for t, n in self.removed.items()))
        if self.events_found:
            lines.append(f"  webhook event rows (ops_instantly_events): {self.events_found} found, "
                         + (f"would remove {self.events_found}" if would else f"{self.events_removed} removed"))
        if self.masked:
            lines.append(f"  address {'would be ' if would else ''}masked in kept rows: "
                         + ", ".join(f"{t} {n}" for t, n in self.masked.items()))
        lines.append(f"  Instantly: {self.instantly_found} lead(s) found, "
                     + (f"would delete {self.instantly_found}" if would else f"{self.instantly_deleted} deleted"))
        added = self.persons - self.hashes_kept if would else self.hashes_added
        salt = (" (the erasure salt would be created first)" if self.salt_missing else
                " (the erasure salt was created)" if self.salt_created else "")
        lines.append(f"  suppression: {added} salted hash(es) {'would be ' if would else ''}added, "
                     f"{self.hashes_kept} already kept{salt}")
        if self.source_rows is None:
            lines.append(f"  source table {self.source_table}: could not be read (see the notes)")
        elif self.source_rows:
            lines.append(f"  source table {self.source_table}: {self.source_rows} row(s) still hold the address; "
                         "the source is yours to clean (the hash keeps them from being sent)")
        if self.done or self.not_done:
            lines.append("  done: " + ("; ".join(self.done) or "nothing"))
        if self.not_done:
            lines.append("  NOT done: " + "; ".join(self.not_done))
            lines.append("  Run the same command again: an erase is safe to repeat.")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


# --- I/O ---------------------------------------------------------------------------------------------


def _check_schema(warehouse: Warehouse) -> dict[str, dict[str, str]]:
    """Columns of every table; raises EraseFailed when a table or column of the schema is missing."""
    found: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for spec in TABLES:
        columns = warehouse.existing_columns(spec.name)
        if columns is None:
            missing.append(spec.name)
            continue
        missing.extend(f"{spec.name}.{c}" for c in spec.column_names() if c not in columns)
        found[spec.name] = columns
    if missing:
        raise EraseFailed(f"the warehouse schema is older than this code (missing {', '.join(missing)}): "
                          "run `python setup.py` first")
    return found


def read_salt(warehouse: Warehouse) -> tuple[bool, str]:
    """Whether the config table has the salt row, and the salt as the eligibility view reads it
    ('' when there is none or it is empty). Raises WarehouseError."""
    row = warehouse.query(READ_SALT_SQL, label="erase.salt")[0]
    return int(row["n"]) > 0, str(row["salt"] or "")


def read_plan(warehouse: Warehouse, targets: Sequence[Target], columns: Mapping[str, Mapping[str, str]]
              ) -> tuple[ErasePlan, list[str]]:
    """Run the reads (person rows, source, one text scan per table) and build the plan; also return
    notes (e.g. the source could not be read). Raises WarehouseError."""
    key_set = frozenset(t.key for t in targets)
    keys, needles = StringArray(sorted(key_set)), StringArray(domain_needles(key_set))
    notes: list[str] = []
    person_rows = warehouse.query(PLAN_SQL, {"keys": keys, "needles": needles}, label="erase.plan")
    source: list[dict[str, Any]] | None
    try:
        source = warehouse.query(SOURCE_SQL, {"keys": keys, "needles": needles}, label="erase.source")
    except WarehouseError as exc:
        source = None
        notes.append(f"the source table could not be read, so its address forms were not looked up in "
                     f"Instantly: {redact(str(exc), 300)}")
    plan = build_plan(targets, person_rows, source)
    for spec in TABLES:
        # a row's identity: every column but FLOAT64 ones (a float may not survive a round trip exactly)
        present = [c.name for c in spec.columns if c.name in columns[spec.name] and c.type != "FLOAT64"]
        strings = text_columns(spec, present)
        if not strings:
            continue
        params = {"keys": keys, "needles": needles} if spec.name in PERSON_PREDICATES else {"needles": needles}
        rows = warehouse.query(text_scan_sql(spec, present, strings), params, label=f"erase.scan.{spec.name}")
        rewrite = text_rewrite(spec, present, strings, rows, key_set)
        if rewrite is not None:
            plan.rewrites[spec.name] = rewrite
    return plan, notes


def find_person_leads(client: InstantlyClient, addresses: Iterable[str], keys: frozenset[str]) -> dict[str, Lead]:
    """The persons' leads in the Instantly workspace, by id: a look-up by every address form, kept
    only when the lead's own address has one of the keys. Raises InstantlyError."""
    found = client.find_leads_by_email(sorted(set(addresses)))
    leads: dict[str, Lead] = {}
    for items in found.values():
        for lead in items:
            lead_id = lead.get("id")
            if isinstance(lead_id, str) and lead_id.strip() and address_key(lead.get("email")) in keys:
                leads[lead_id] = lead
    return leads


def add_known_leads(client: InstantlyClient, leads: dict[str, Lead], known: Iterable[str]) -> None:
    """Add to `leads` the leads the warehouse knows by id (state and dead-letter rows) that the
    look-up by email did not return (their address was changed in Instantly) and that still exist.
    One `GET /leads/{id}` each. Raises InstantlyError."""
    for lead_id in known:
        if lead_id not in leads:
            lead = client.get_lead(lead_id)
            if lead is not None:
                leads[lead_id] = lead


def delete_person_leads(client: InstantlyClient, leads: Mapping[str, Lead]) -> int:
    """Delete each lead by its explicit id: per campaign in bulk (the ids listed), a lead in no
    campaign on its own. Returns how many Instantly says it deleted. Raises InstantlyError."""
    by_campaign: dict[str, list[str]] = {}
    singles: list[str] = []
    for lead_id, lead in leads.items():
        campaign = lead.get("campaign")
        if isinstance(campaign, str) and campaign.strip():
            by_campaign.setdefault(campaign, []).append(lead_id)
        else:
            singles.append(lead_id)
    deleted = 0
    for campaign, ids in sorted(by_campaign.items()):
        deleted += client.delete_leads(campaign, ids)
    for lead_id in singles:
        deleted += int(client.delete_lead(lead_id))
    return deleted


def run_erase(settings: Settings, warehouse: Warehouse, client: InstantlyClient, targets: Sequence[Target], *,
              now: dt.datetime | None = None) -> EraseOutcome:
    """Erase these persons (module docstring), or with settings.dry_run say what would be erased.

    Never raises for a warehouse or Instantly failure: the outcome's exit code is 1 and its
    `done` / `not_done` say how far it got; 3 when another run holds the lock; 2 when the salt row
    exists but is empty. Takes the sync's run lock (live runs), so it never runs beside a sync.
    """
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    dry_run = settings.dry_run
    outcome = EraseOutcome(dry_run=dry_run, persons=len(targets),
                           given=[m for t in targets for m in t.masked], source_table=settings.source_table,
                           removed=dict.fromkeys(PERSON_TABLES, 0))
    client.health.reset()  # what the service does from here on is this erase's (a circuit of an earlier one closes)
    store = Store(warehouse, f"erase-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", now)
    deadline = started + settings.lock_ttl_minutes * 60 * LEASE_SHARE
    if not dry_run:
        try:
            holder = store.acquire_lock(dt.timedelta(minutes=settings.lock_ttl_minutes))
        except WarehouseError as exc:
            return _failed(outcome, f"could not take the run lock: {exc}", ExitCode.RUN_FAILED)
        if holder is not None:
            return _failed(outcome, lock_held_message(store, settings.lock_ttl_minutes), ExitCode.LOCK_HELD)
    try:
        _erase(outcome, warehouse, client, store, targets, deadline)
    except (EraseFailed, WarehouseError, InstantlyError) as exc:
        _failed(outcome, str(exc), ExitCode.RUN_FAILED)
    except Exception as exc:  # a bug: still free the lock and say what was done
        _failed(outcome, f"{type(exc).__name__}: {exc}", ExitCode.RUN_FAILED)
    finally:
        if not dry_run:
            try:
                store.release_lock()
            except WarehouseError as exc:
                outcome.notes.append(f"could not release the run lock (it expires after LOCK_TTL_MINUTES="
                                     f"{settings.lock_ttl_minutes}): {redact(str(exc))}")
    return outcome


def _failed(outcome: EraseOutcome, message: str, code: ExitCode) -> EraseOutcome:
    outcome.error = redact(message)
    outcome.exit_code = code
    if not outcome.dry_run and code == ExitCode.RUN_FAILED:
        outcome.not_done = [step for step in STEPS if not any(done.startswith(step) for done in outcome.done)]
    return outcome


def _erase(outcome: EraseOutcome, warehouse: Warehouse, client: InstantlyClient, store: Store,
           targets: Sequence[Target], deadline: float) -> None:
    keys = frozenset(t.key for t in targets)
    columns = _check_schema(warehouse)
    if not outcome.dry_run:
        outcome.salt_created = ensure_erasure_salt(warehouse)
    present, salt = read_salt(warehouse)
    outcome.salt_missing = not present
    if present and not salt:
        outcome.exit_code = ExitCode.BAD_CONFIG
        outcome.error = (f"the config row {ERASURE_SALT_KEY} exists but is empty: an unsalted hash could be "
                         "reversed by guessing addresses. Put a long random value there (python -c 'import "
                         "secrets; print(secrets.token_hex(32))') if no erasure hash exists yet")
        return
    plan, notes = read_plan(warehouse, targets, columns)
    outcome.planned = True
    outcome.notes.extend(notes)
    outcome.hashes_kept = plan.hashes_kept
    outcome.source_rows = plan.source_rows
    outcome.removed = dict(plan.rows)
    outcome.events_found = plan.events
    outcome.masked = {name: len(r.rows) for name, r in plan.rewrites.items()}
    leads = find_person_leads(client, plan.addresses, keys)
    add_known_leads(client, leads, sorted(plan.known_leads))
    outcome.instantly_found = len(leads)
    if outcome.dry_run:
        return

    def step(name: str) -> None:
        if time.monotonic() > deadline:
            raise EraseFailed(f"stopped before '{name}': the erase has used 3/4 of its lock lease")

    step(STEPS[0])
    hashes = [{"email": None, "domain": None, "email_key": None, "domain_key": None,
               "email_hash": erasure_hash(key, salt), "instantly_blocklist_id": None,
               "source": HASH_SOURCE, "reason": HASH_REASON} for key in sorted(keys)]
    domains = [{"email": None, "domain": d["domain"], "source": d["source"], "reason": d["reason"]}
               for d in plan.keep_domains]
    outcome.hashes_added = store.add_dnc(hashes, label="erase.hash")
    if domains:
        store.add_dnc(domains, label="erase.keep_domains")
    outcome.done.append(f"{STEPS[0]} ({outcome.hashes_added} new, {outcome.hashes_kept} already kept)")

    step(STEPS[1])
    outcome.instantly_deleted = delete_person_leads(client, leads) if leads else 0
    left = find_person_leads(client, plan.addresses, keys)
    # the leads found only by id (their address changed in Instantly) are checked by id again
    add_known_leads(client, left, [i for i, lead in leads.items() if address_key(lead.get("email")) not in keys])
    if left:
        raise EraseFailed(f"{len(left)} lead(s) of the person(s) are still in Instantly after the delete")
    outcome.done.append(f"{STEPS[1]} ({outcome.instantly_deleted})")

    step(STEPS[2])
    params = {"keys": StringArray(sorted(keys)), "needles": StringArray(domain_needles(keys))}
    for table in PERSON_TABLES:
        if plan.rows[table]:
            outcome.removed[table] = warehouse.execute(delete_sql(table), params, label=f"erase.delete.{table}")
    # The source's copy: the person's row goes too (the next refresh brings it back only if the source still
    # holds the address, as the source itself does; the hash keeps it from being sent).
    warehouse.execute(delete_sql(CANDIDATES.name), {"keys": params["keys"]}, label="erase.delete.candidates")
    # The ready queue holds copies of candidates rows: dropped whole (the next run with room rebuilds it).
    warehouse.execute(f"DROP TABLE IF EXISTS `{{ds}}.{READY_QUEUE}`", label="erase.drop.ready_queue")
    buffered = _delete_events(outcome, warehouse, params) if plan.events else None
    outcome.done.append(STEPS[2] if buffered is None else f"{STEPS[2]} (but not the webhook events)")

    step(STEPS[3])
    for name, rewrite in plan.rewrites.items():
        fields = tuple((f"old_{c}", _column_type(rewrite.spec, c)) for c in rewrite.columns) + tuple(
            (f"new_{c}", "STRING") for c in rewrite.changed)
        changed = warehouse.execute(text_merge_sql(rewrite.spec, rewrite.columns, rewrite.changed),
                                    {"rows": Rows(fields, rewrite.rows)}, label=f"erase.mask.{name}")
        if changed < len(rewrite.rows):
            raise EraseFailed(f"{len(rewrite.rows) - changed} row(s) of {name} changed while they were being masked")
        outcome.masked[name] = changed
    outcome.done.append(STEPS[3])
    if buffered is not None:
        outcome.exit_code = ExitCode.RUN_FAILED
        outcome.error = buffered
        outcome.not_done = [EVENTS_STEP]


def in_streaming_buffer(exc: WarehouseError) -> bool:
    """Whether BigQuery refused a DML statement because rows it touches are still in the streaming buffer
    ("... would affect rows in the streaming buffer, which is not supported")."""
    return "streaming buffer" in str(exc).lower()


def _delete_events(outcome: EraseOutcome, warehouse: Warehouse, params: Mapping[str, Any]) -> str | None:
    """Delete the persons' ops_instantly_events rows (after the hash row: the suppression outlives them). None when
    done; the error line when BigQuery's streaming buffer still holds some (the erase goes on and exits 1: the
    same command, run again later, removes them). Any other failure raises WarehouseError."""
    try:
        outcome.events_removed = warehouse.execute(delete_sql(EVENTS.name), dict(params), label="erase.delete.events")
    except WarehouseError as exc:
        if not in_streaming_buffer(exc):
            raise
        return (f"{outcome.events_found} webhook event row(s) of the person(s) are still in BigQuery's streaming "
                "buffer (rows streamed by the receiver stay there up to about 90 minutes) and could not be deleted "
                "yet; everything else is erased and the person(s) stay suppressed by the salted hash. Run the same "
                "erase again in 90 minutes: it is safe to repeat")
    return None


def _column_type(spec: TableSpec, name: str) -> str:
    return next(c.type for c in spec.columns if c.name == name)
