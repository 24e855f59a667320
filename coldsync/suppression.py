"""The one canonical identity of a person (an address) and of a company (a domain), in Python and SQL.

Do-not-contact entries, history, state and source rows are all compared through these keys, so a
DNC list pasted from a CRLF spreadsheet, an entry written as ``<mailto:Jane@Acme.example>``, a
domain written as ``https://www.acme.example/contact`` or ``bücher.example``, and a history row
imported as ``Cool88@Hist.example`` all mean what a person would read in them.

Every rule exists once: each pattern below is ONE template, run by the SAME regular-expression engine
everywhere: RE2, in BigQuery, in DuckDB (which runs the same BigQuery SQL transpiled by sqlglot) and
in Python (Google's `google-re2` binding). RE2 matches in linear time, so no pasted value, however
hostile, can stall a run (Python's backtracking `re` took minutes on a quote followed by a few
hundred spaces), and the Python and SQL twins cannot read a pattern differently. The SQL generators
return BigQuery expressions over a column expression.

The key of an address (``email_key``), for an address already valid and lower-cased:
  1. the domain's alias is applied (``googlemail.com`` is ``gmail.com``: one mailbox);
  2. a ``+tag`` is dropped from the local part (``jane+promo`` -> ``jane``, ``jane.+x`` -> ``jane``; a
     leading ``+`` is kept);
  3. on ``gmail.com`` the dots of the local part are dropped (Gmail ignores them).
A stored address or do-not-contact EMAIL entry (``address_key``) is first unwrapped: the trim set
(``rules.EMAIL_TRIM_CHARS``) at both ends, a ``Name <...>`` or ``<...>`` wrapper (and anything after
its ``>``), double quotes at either end, single quotes when they pair up (an apostrophe may begin a
valid local part),
a ``mailto:`` prefix and a ``?subject=...`` query; then lower-cased, one trailing dot dropped, and
(Python only) a Unicode domain turned into punycode (IDNA, UTS 46); then it must be a valid address
(``rules.EMAIL_PATTERN``), or it has no key and is reported (``v_dnc_rejects``).
A do-not-contact DOMAIN entry (``domain_key``): lower-cased; the trim set, an URL scheme, a leading
``@``, a port, one trailing dot and anything from the first ``/``, ``?`` or ``#`` removed; IDNA
(Python only); leading ``www.`` labels dropped when the rest is still a domain; the alias applied;
then it must be a valid domain (``rules.DOMAIN_PATTERN``).

Engines: the SQL expressions give the same key as Python for every ASCII input (property-tested on
both engines). For a Unicode domain only Python can compute punycode, so the key computed in Python
is STORED beside the raw entry when written (and back-filled for rows inserted by hand); eligibility
honours both the stored key and the key SQL computes from the raw value: the conservative side wins.
A stored key is trusted, and the SQL does not compute the raw value's key again, only while its check column
(``<key>_check`` = ``key_check(raw, key)``: SHA-256 over KEY_RULE, the raw value and the key, written beside the
key) still matches what SQL computes over the row's raw value and stored key (``sql_key_check``): an edit of the
raw value, of the key, of the check, or a change of the rule, makes the row keyed from its raw value again.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import idna
import re2

from coldsync.rules import (
    DOMAIN_PATTERN,
    EMAIL_PATTERN,
    EMAIL_TRIM_CHARS,
    MAX_DOMAIN_LENGTH,
    MAX_EMAIL_LENGTH,
)

DOMAIN_ALIASES: Final[dict[str, str]] = {"googlemail.com": "gmail.com"}
"""Domains that deliver to the same mailboxes as another: keyed as that other domain."""

DOTLESS_LOCAL_DOMAINS: Final[tuple[str, ...]] = ("gmail.com",)
"""Domains (after aliasing) whose mailboxes ignore dots in the local part."""

# --- the pattern templates ------------------------------------------------------------------------
# `{T}` is the trim set as a character class. RE2 syntax; quotes are written \x22 and \x27 so a
# pattern can sit inside any SQL string literal. Python applies a template with re2's fullmatch; SQL
# anchors it with ^...$ (RE2's $ is the end of the text only).

# A local part's +tag (not a leading +), with any dots just before it (`jane.+x` is `jane`): groups
# 1 and 2 are what is kept.
_PLUS_TAG = r"([^+@]*[^+@.])\.*\+[^@]*(@.*)"
_MAILTO = r"[mM][aA][iI][lL][tT][oO]:{T}*"
# A pasted email entry: [Name] <  "  mailto:  ADDRESS  ?query  "  >  -- ADDRESS is group 1 or 2.
# Double quotes (never part of a valid address) go at either end, paired or not. An apostrophe is a
# valid first character of a local part (`'quote@acme.example`), so single quotes go only in pairs;
# the one reading this cannot settle: an entry that starts AND ends with an apostrophe is taken as
# quoted (`'x@acme.example?subject='` keys as nothing and is listed in v_dnc_rejects).
_EMAIL_WRAP = (r"{T}*(?:[^<>]*<)?{T}*\x22?{T}*"
               r"(?:\x27{T}*(?:" + _MAILTO + r")?([^?<>\x22]*?){T}*(?:\?[^<>]*)?\x27"
               r"|(?:" + _MAILTO + r")?([^?<>\x22]*?){T}*(?:\?[^<>]*)?)"
               r"{T}*\x22?{T}*(?:>[^<>]*)?")
# A pasted domain entry (already lower-cased): scheme://  @  DOMAIN  .  :port  /path  -- group 1.
_DOMAIN_WRAP = r"{T}*(?:[a-z][a-z0-9+.-]*://)?@?([^/?#:]*?)\.?(?::[0-9]*)?(?:[/?#].*)?{T}*"
# Leading `www.` labels of a domain (all of them: `www.www.acme.example` is `acme.example`).
_WWW = r"(?:www\.)+(.*)"
_TRIM_ENDS = r"{T}*(.*?){T}*"
# The domain of an email key, without leading `www.` labels while a dotted domain remains (a lead at
# `www.acme.example` is the company `acme.example`, as a `www.acme.example` entry is): group 1.
_KEY_DOMAIN = r"[^@]*@(?:www\.)*((?:[^.@]+\.)+[^.@]+)"


def _ranges(chars: str) -> list[tuple[int, int]]:
    """The code points of `chars` as sorted, merged (first, last) ranges."""
    ranges: list[tuple[int, int]] = []
    for point in sorted({ord(c) for c in chars}):
        if ranges and point == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    return ranges


def _char_class(chars: str, escape: str) -> str:
    parts = [escape.format(a) if a == b else f"{escape.format(a)}-{escape.format(b)}" for a, b in _ranges(chars)]
    return "[" + "".join(parts) + "]"


def _re2_class(chars: str) -> str:
    return _char_class(chars, "\\x{{{:04X}}}")


def _py(template: str) -> Any:
    """The template compiled by RE2 for Python (re2.compile; untyped binding, hence Any)."""
    return re2.compile(template.replace("{T}", _re2_class(EMAIL_TRIM_CHARS)))


def _sql(template: str) -> str:
    """The template as an anchored RE2 pattern inside a BigQuery raw string literal."""
    pattern = "^" + template.replace("{T}", _re2_class(EMAIL_TRIM_CHARS)) + "$"
    assert "'" not in pattern and '"' not in pattern
    return f"r'{pattern}'"


_PLUS_TAG_RE = _py(_PLUS_TAG)
_WWW_RE = _py(_WWW)
_EMAIL_WRAP_RE = _py(_EMAIL_WRAP)
_DOMAIN_WRAP_RE = _py(_DOMAIN_WRAP)
_TRIM_ENDS_RE = _py(_TRIM_ENDS)
_KEY_DOMAIN_RE = _py(_KEY_DOMAIN)
_EMAIL_RE = re.compile(EMAIL_PATTERN)
_DOMAIN_RE = re.compile(DOMAIN_PATTERN)


def _replace(pattern: Any, value: str) -> str:
    """Python's twin of SQL ``REGEXP_REPLACE(value, ^pattern$, r'\\1...')``: the groups when the
    whole value matches, else the value unchanged."""
    match = pattern.fullmatch(value)
    return "".join(g or "" for g in match.groups()) if match else value


def _valid_email(value: str) -> bool:
    return len(value) <= MAX_EMAIL_LENGTH and _EMAIL_RE.fullmatch(value) is not None


def _valid_domain(value: str) -> bool:
    return len(value) <= MAX_DOMAIN_LENGTH and _DOMAIN_RE.fullmatch(value) is not None


def _to_ascii_domain(domain: str) -> str | None:
    """A Unicode domain as punycode (IDNA 2008 with UTS 46 mapping), or None when it is not one."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


# --- Python ---------------------------------------------------------------------------------------


def untagged(email: str) -> str:
    """Stage 1 of ``email_key``: the domain alias applied, the local part's +tag dropped."""
    for alias, target in DOMAIN_ALIASES.items():
        if email.endswith(f"@{alias}"):
            email = email[: -len(alias)] + target
    return _replace(_PLUS_TAG_RE, email)


def key_of_untagged(value: str) -> str:
    """Stage 2 of ``email_key``: the dots of the local part dropped on DOTLESS_LOCAL_DOMAINS."""
    local, _, domain = value.rpartition("@")
    if domain in DOTLESS_LOCAL_DOMAINS:
        return f"{local.replace('.', '')}@{domain}"
    return value


def email_key(email: str) -> str:
    """The suppression key of a VALID, lower-cased address (``rules.normalize_email``'s output).

    ``Jane+Promo@Acme.example`` normalized is ``jane+promo@acme.example``, whose key is
    ``jane@acme.example``; at googlemail.com the key's domain is gmail.com and its local part loses its
    dots. Raises ValueError when `email` has no ``@`` (callers pass valid addresses).
    """
    if "@" not in email:
        raise ValueError("not an email address (no '@')")
    return key_of_untagged(untagged(email))


def key_domain(key: str) -> str:
    """The domain of an email key, what a DNC domain entry is compared with: leading ``www.`` labels go
    on this side too (``domain_key`` drops them from entries), so an entry ``www.acme.example`` blocks
    ``z@www.acme.example`` and ``z@acme.example`` alike."""
    return _replace(_KEY_DOMAIN_RE, key)


def canonical_email(raw: object) -> str | None:
    """A pasted do-not-contact email entry as a plain address (unwrapped, lower-case, punycode), or
    None when nothing usable is left. This is the value mirrored to Instantly's block list."""
    if not isinstance(raw, str):
        return None
    value = _replace(_EMAIL_WRAP_RE, raw).lower().removesuffix(".")
    if not value.isascii():
        local, at, domain = value.rpartition("@")
        ascii_domain = _to_ascii_domain(domain) if at and local.isascii() else None
        if ascii_domain is None:
            return None
        value = f"{local}@{ascii_domain}"
    return value if _valid_email(value) else None


def address_key(raw: object) -> str | None:
    """The suppression key of an address as stored anywhere (a do-not-contact EMAIL entry as pasted,
    a history or state row, written by coldsync or imported by hand), or None when unusable."""
    value = canonical_email(raw)
    return email_key(value) if value is not None else None


def domain_key(raw: object) -> str | None:
    """The suppression key of a DOMAIN entry as pasted (``https://www.Acme.example/x`` ->
    ``acme.example``; ``bücher.example`` -> ``xn--bcher-kva.example``), or None when unusable.

    Sub-domains are kept (``eu.acme.example`` blocks only that domain): domains match exactly. A
    leading ``www.`` goes because mail is not received at ``www.`` hosts: widening the block is the
    safe side of a do-not-contact list.
    """
    if not isinstance(raw, str):
        return None
    value = _to_ascii_domain(_replace(_DOMAIN_WRAP_RE, raw.lower()))
    if value is None:
        return None
    without_www = _replace(_WWW_RE, value)
    if without_www != value and _valid_domain(without_www):
        value = without_www
    value = DOMAIN_ALIASES.get(value, value)
    return value if _valid_domain(value) else None


def erasure_hash(key: str, salt: str) -> str:
    """What an erased person's suppression keeps: hex SHA-256 of the warehouse's salt + the key."""
    return hashlib.sha256(f"{salt}{key}".encode()).hexdigest()


def trim_ends(raw: str) -> str:
    """``raw`` without the trim set at either end (Python's twin of ``sql_trim_ends``)."""
    return _replace(_TRIM_ENDS_RE, raw)


# --- SQL (BigQuery dialect; DuckDB runs it transpiled) --------------------------------------------
# Each generator references its input at most three times; the views apply them in CTE stages (one
# column per stage), so the source's rows are not re-parsed; the composed forms (`sql_email_key`,
# `sql_address_key`) are for small inputs (state rows, the rows of one statement).


def sql_trim_ends(x: str) -> str:
    """SQL twin of ``trim_ends``."""
    return f"REGEXP_REPLACE({x}, {_sql(_TRIM_ENDS)}, r'\\1')"


def sql_untagged(e: str) -> str:
    """Stage 1 of ``email_key`` (valid, lower-cased `e`): the domain alias applied, the +tag gone."""
    for alias, target in DOMAIN_ALIASES.items():
        e = f"REGEXP_REPLACE({e}, r'@{re.escape(alias)}$', '@{target}')"
    return f"REGEXP_REPLACE({e}, {_sql(_PLUS_TAG)}, r'\\1\\2')"


def sql_key_of_untagged(u: str) -> str:
    """Stage 2 of ``email_key``: the dots of the local part dropped on DOTLESS_LOCAL_DOMAINS."""
    dotless = " OR ".join(f"ENDS_WITH({u}, '@{d}')" for d in DOTLESS_LOCAL_DOMAINS)
    return (f"IF({dotless}, CONCAT(REPLACE(REGEXP_REPLACE({u}, r'@[^@]*$', ''), '.', ''), "
            f"REGEXP_REPLACE({u}, r'^[^@]*', '')), {u})")


def sql_email_key(e: str) -> str:
    """SQL twin of ``email_key`` (composed: for small inputs; views stage it)."""
    return sql_key_of_untagged(sql_untagged(e))


def sql_key_domain(key: str) -> str:
    """SQL twin of ``key_domain``."""
    return f"REGEXP_REPLACE({key}, {_sql(_KEY_DOMAIN)}, r'\\1')"


def sql_unwrapped_email(x: str) -> str:
    """Stage 1 of ``canonical_email``: unwrapped, lower-cased, one trailing dot dropped."""
    return f"REGEXP_REPLACE(LOWER(REGEXP_REPLACE({x}, {_sql(_EMAIL_WRAP)}, r'\\1\\2')), r'\\.$', '')"


def sql_valid_email_or_null(v: str) -> str:
    """Stage 2 of ``canonical_email``: `v` when it is a valid address, else NULL."""
    return f"IF(LENGTH({v}) <= {MAX_EMAIL_LENGTH} AND REGEXP_CONTAINS({v}, r\"{EMAIL_PATTERN}\"), {v}, NULL)"


def sql_canonical_email(x: str) -> str:
    """SQL twin of ``canonical_email`` for ASCII input (a Unicode domain gives NULL here)."""
    return sql_valid_email_or_null(sql_unwrapped_email(x))


def sql_address_key(x: str) -> str:
    """SQL twin of ``address_key`` for ASCII input (composed: for small inputs; views stage it)."""
    return sql_email_key(sql_canonical_email(x))


def sql_unwrapped_domain(x: str) -> str:
    """Stage 1 of ``domain_key``: lower-cased, scheme, path, port, ``@`` and trailing dot removed."""
    return f"REGEXP_REPLACE(LOWER({x}), {_sql(_DOMAIN_WRAP)}, r'\\1')"


def _sql_valid_domain(v: str) -> str:
    return f"(LENGTH({v}) <= {MAX_DOMAIN_LENGTH} AND REGEXP_CONTAINS({v}, r\"{DOMAIN_PATTERN}\"))"


def sql_domain_key_of_unwrapped(u: str) -> str:
    """Stage 2 of ``domain_key``: ``www.`` dropped when the rest is a domain, alias, validity."""
    rest = f"REGEXP_REPLACE({u}, {_sql(_WWW)}, r'\\1')"
    stripped = f"IF(STARTS_WITH({u}, 'www.') AND {_sql_valid_domain(rest)}, {rest}, {u})"
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in DOMAIN_ALIASES.items())
    aliased = f"CASE {stripped} {cases} ELSE {stripped} END"
    return f"IF({_sql_valid_domain(stripped)}, {aliased}, NULL)"


def sql_domain_key(x: str) -> str:
    """SQL twin of ``domain_key`` for ASCII input (a Unicode domain gives NULL here)."""
    return sql_domain_key_of_unwrapped(sql_unwrapped_domain(x))


def sql_erasure_hash(key: str, salt: str) -> str:
    """SQL twin of ``erasure_hash``."""
    return f"TO_HEX(SHA256(CONCAT({salt}, {key})))"


# --- stored keys: computed once, trusted while their check binds the rule, the raw value and the key ---

KEY_RULE_VERSION: Final[int] = 1
"""Bumped by hand whenever the Python side of the key rule changes (the SQL side is digested below)."""


def _key_rule_digest() -> str:
    """16 hex characters of SHA-256 over KEY_RULE_VERSION and the generated SQL of every key stage."""
    stages = (sql_unwrapped_email("x"), sql_valid_email_or_null("x"), sql_untagged("x"), sql_key_of_untagged("x"),
              sql_unwrapped_domain("x"), sql_domain_key_of_unwrapped("x"))
    return hashlib.sha256("\n".join((str(KEY_RULE_VERSION), *stages)).encode()).hexdigest()[:16]


KEY_RULE: Final[str] = _key_rule_digest()
"""The key rule in force, bound into every stored key's check (key_check): any change to the SQL of the key stages,
or a bump of KEY_RULE_VERSION, changes it, and keys stored under another rule are no longer trusted (the SQL computes
those rows' keys from their raw values again until the next run's back-fill checks them again)."""

KEY_CHECK_SEPARATOR: Final[str] = "\x1f"
"""Between the parts a key check hashes: the ASCII unit separator, which neither the hex rule digest (fixed length)
nor any key (a valid address or domain) can hold, so the parts cannot slide into one another: the key is what
follows the last separator, the raw value what lies between the first and the last. Written ``CHR(31)`` in the SQL
twin (sqlglot hands DuckDB the same call; a ``'\\x1f'`` literal is read as four characters by the BigQuery
emulator, so no escape is relied on)."""

KEY_CHECK_LENGTH: Final[int] = 16
"""Hex characters of the SHA-256 a key check keeps (64 bits: a hand edit that matches by chance is 2**-64)."""


def key_check(raw: str, key: str) -> str:
    """The check stored beside a key (``email_key_check``, ``domain_key_check``): the first KEY_CHECK_LENGTH hex
    characters of SHA-256 over KEY_RULE, the raw value and the key, joined by KEY_CHECK_SEPARATOR. ONE definition;
    ``sql_key_check`` is its SQL twin."""
    text = KEY_CHECK_SEPARATOR.join((KEY_RULE, raw, key))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHECK_LENGTH]


def sql_key_check(raw: str, key: str) -> str:
    """SQL twin of ``key_check`` over column expressions `raw` and `key` (NULL when either is NULL)."""
    sep = f"CHR({ord(KEY_CHECK_SEPARATOR)})"
    return (f"SUBSTR(TO_HEX(SHA256(CONCAT('{KEY_RULE}', {sep}, {raw}, {sep}, {key}))), 1, {KEY_CHECK_LENGTH})")


def sql_equal_address_key(raw: object) -> str | None:
    """``address_key`` where the SQL twin computes the same key, None where only Python could key it (the
    unwrapped value is not ASCII: a Unicode domain's punycode, a trim character inside the address).

    This is the key stored on history rows: there, only the key SQL computes from the raw value ever counted,
    so a stored key must be exactly that one (for every ASCII value Python and SQL agree, property-tested)."""
    if not isinstance(raw, str) or not _replace(_EMAIL_WRAP_RE, raw).isascii():
        return None
    return address_key(raw)


def _checked(raw: object, key: str | None) -> str | None:
    return key_check(raw, key) if isinstance(raw, str) and key is not None else None


def dnc_key_stamp(email: object, domain: object) -> dict[str, str | None]:
    """The stored keys of a do-not-contact entry and their checks, computed here ONCE for every writer:
    ``email_key`` (address_key of `email`), ``domain_key`` (domain_key of `domain`), ``email_key_check`` /
    ``domain_key_check`` (key_check of the raw value and its key). None where there is no raw value or no key."""
    email_key_ = address_key(email) if email is not None else None
    domain_key_ = domain_key(domain) if domain is not None else None
    return {"email_key": email_key_, "domain_key": domain_key_,
            "email_key_check": _checked(email, email_key_), "domain_key_check": _checked(domain, domain_key_)}


def history_key_stamp(email: object) -> dict[str, str | None]:
    """The stored key of a history row and its check: ``email_key`` (sql_equal_address_key of `email`) and
    ``email_key_check`` (key_check of `email` and that key); both None without a key."""
    key = sql_equal_address_key(email)
    return {"email_key": key, "email_key_check": _checked(email, key)}
