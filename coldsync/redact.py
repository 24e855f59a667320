"""The one redaction path for every string that leaves the process (invariant 7; docs/SECURITY.md).

`redact(text, limit)` is applied to log records (`RedactingFilter`), exception text (`InstantlyError`),
dead-letter `error_text`, run-log rows, the run summary (text, Markdown, JSON), the status report and
validate_environment.py's checks. It scrubs FIRST and truncates after: a secret or an address straddling
the cut is removed whole before the cut is made, and since every mask only removes text, every prefix
of a scrubbed text is scrubbed too (a later `[:n]` by anyone cannot bring a fragment back).

What it removes, in this order:
1. private-key blocks (`-----BEGIN ... PRIVATE KEY-----` to its END, with real or JSON-escaped `\\n`
   line breaks; a block cut before its END is removed to the end of its base64 body);
2. email addresses, with the `@` plain or encoded: URL (`%40`, `%2540`), quoted-printable (`=40`),
   JSON/JS escapes (`\\u0040`, `\\x40`, also double-escaped), HTML entities (`&#64;`, `&#x40;`,
   `&commat;`), any case. Each becomes `j***@example.com` (the domain stays for diagnosis); when two
   addresses run into each other with nothing between, the first one's domain is hidden too;
3. the secrets registered for the process (`register_secrets`: the Instantly key, the private key and
   key id of the BigQuery credentials) and any passed to the call: the whole value, and ANY run of
   8 or more characters of it (`FRAGMENT`, ASCII case ignored), so a key someone else cut stays gone;
4. `Bearer <token>` and `Authorization: <value>` whatever the token.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

FRAGMENT = 8
"""Shortest run of a secret's characters that is removed wherever it appears (a key cut by a truncation
elsewhere leaves runs of its characters; 8 random characters are no longer guessable from context)."""

REDACTED = "[redacted]"
PRIVATE_KEY_MASK = "[redacted private key]"

_PEM_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s]|\\+[nrt])*(?:-----END[A-Z0-9 ]*PRIVATE KEY-----)?",
    re.IGNORECASE)
# No word boundary before the names: an echo glued to other text (`...xxxAuthorization: ...`) is still found.
_BEARER_RE = re.compile(r"(bearer)(\s+|%20|\+)(?!\[redacted\])[^\s\"'<>,;\\)\]}]+", re.IGNORECASE)
_AUTHORIZATION_RE = re.compile(
    r"(authorization[\"']?\s*[:=]\s*[\"']?)(?![\s\"']|\[redacted\])[^\"'\r\n,;}\\]+", re.IGNORECASE)
# An address is found from its `@` (in any of its encodings) and the domain after it; the local part is
# then read leftwards over every local-part character, down to the end of the previous address at most:
# linear in the text, whatever it holds (no regex backtracking over long runs).
# RFC 5322 atext and the dot, less `&` and `=` (they begin the HTML and quoted-printable forms of the `@`)
# and `/?#` (the path of a URL before an address stays readable).
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+'-!$*^`{|}~")
_AT = r"(?:@|\uff20|%(?:25)*40|%u0040|=40|\\+u0040|\\+x40|&#0*64;|&#x0*40;|&commat;)"
# Internationalized domains too (`bücher.example`): labels of letters and digits of any script.
_DOMAIN = r"(?:[^\W_](?:[^\W_]|-){0,62}\.)+[^\W\d_]{2,}"
_JSON_ESCAPE_RE = re.compile(r"\\u[0-9A-Fa-f]{4}")
_AT_DOMAIN_RE = re.compile(f"{_AT}({_DOMAIN})", re.IGNORECASE)


def _local_char(ch: str) -> bool:
    """A character of an address's local part: RFC 5322 atext less `&=/?#` (above), or any letter or digit
    of another script (RFC 6531 internationalized addresses: `josé@...`)."""
    return ch in _LOCAL_CHARS or (ord(ch) > 127 and ch.isalnum())


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Fields of a Google credentials file that are secret (service account, or authorized user).
_CREDENTIAL_SECRETS = ("private_key", "private_key_id", "client_secret", "refresh_token")

_registered: list[str] = []  # fragment-matched secrets of this process (register_secrets)
_registered_whole: list[str] = []  # values removed only whole (a credentials document, a key file's path)


@dataclass(frozen=True)
class _Matcher:
    whole: tuple[str, ...]  # removed only when whole (short secrets, credential documents)
    grams: frozenset[str]  # every FRAGMENT-long window of the fragment secrets, ASCII-lowercased
    finder: re.Pattern[str] | None  # finds the first such window


def _with_encodings(secrets: tuple[str, ...]) -> list[str]:
    """Each secret and the forms an echo may give it: URL-encoded (`quote`, `quote_plus`) and JSON-escaped
    (`\\/` for `/`, `\\uXXXX` for what JSON escapes), so a key echoed in a query or a JSON string is found."""
    forms: list[str] = []
    for secret in secrets:
        for form in (secret, quote(secret, safe=""), quote_plus(secret, safe=""), json.dumps(secret)[1:-1],
                     json.dumps(secret)[1:-1].replace("/", "\\/")):
            if form not in forms:
                forms.append(form)
    return forms


@lru_cache(maxsize=64)
def _matcher(fragment_secrets: tuple[str, ...], whole: tuple[str, ...]) -> _Matcher:
    grams: set[str] = set()
    short: list[str] = list(whole)
    for secret in _with_encodings(fragment_secrets):
        if len(secret) < FRAGMENT:
            short.append(secret)
            continue
        low = secret.translate(_ASCII_LOWER)
        grams.update(low[i:i + FRAGMENT] for i in range(len(low) - FRAGMENT + 1))
    # Longest first, so a secret that contains another is removed whole.
    short = sorted({s for s in short if len(s) >= 4}, key=len, reverse=True)
    finder = re.compile("|".join(re.escape(g) for g in sorted(grams))) if grams else None
    return _Matcher(tuple(short), frozenset(grams), finder)


def _cut_secrets(text: str, matcher: _Matcher) -> str:
    for secret in matcher.whole:
        text = text.replace(secret, REDACTED)
    if matcher.finder is None:
        return text
    low = text.translate(_ASCII_LOWER)  # same length as text: positions carry over
    spans: list[list[int]] = []
    pos, size = 0, len(low)
    while (found := matcher.finder.search(low, pos)) is not None:
        start, end = found.start(), found.end()
        while end < size and low[end - FRAGMENT + 1:end + 1] in matcher.grams:
            end += 1  # the run goes on while each next window is a window of a secret
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
        pos = end - FRAGMENT + 2  # the window at end - FRAGMENT + 1 was checked: not a secret's
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out += [text[last:start], REDACTED]
        last = end
    out.append(text[last:])
    return "".join(out)


def _mask_emails(text: str) -> str:
    out: list[str] = []
    last = 0
    found = list(_AT_DOMAIN_RE.finditer(text))
    for i, match in enumerate(found):
        at = start = match.start()
        while start > last:
            if _local_char(text[start - 1]) or (text[start - 1] == "\\" and _JSON_ESCAPE_RE.match(text, start - 1)):
                start -= 1
            else:
                break
        if start == at:
            continue  # an `@` (or `=40`, ...) with no local part before it: not an address
        domain = match.group(1).lower()
        following = found[i + 1] if i + 1 < len(found) else None
        if following is not None and all(_local_char(c) for c in text[match.end():following.start()]):
            # Another address runs on from this one with nothing between (`a@one.example` then at once
            # `bob%40two.example`): where this domain ends and that local part begins is unknown, so neither is
            # shown.
            domain = REDACTED
        # The local part's first character stays, unless it begins with an escape (`\u00e9`): a lone backslash
        # before the stars would make a second pass read `***` as the local part (not idempotent), so `~`, a
        # local-part character no address shows first in practice, stands for the escaped one.
        first = "~" if text[start] == "\\" else text[start]
        out += [text[last:start], f"{first}***@{domain}"]
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def redact(text: str, limit: int | None = None, *, secrets: Iterable[str | None] = ()) -> str:
    """`text` without secrets, private keys, bearer tokens or email addresses (see the module doc), then
    cut to at most `limit` characters (None: whole). `secrets` are removed besides the registered ones.
    Idempotent; never raises for any str."""
    extra = tuple(s for s in secrets if s)
    matcher = _matcher(tuple(_registered) + extra, tuple(_registered_whole))
    text = _PEM_RE.sub(PRIVATE_KEY_MASK, text)
    # Addresses before secrets: a run of a secret's characters inside an address must not cut it in two
    # (the part before the cut would no longer be found); what the mask keeps (the domain) is searched after.
    text = _mask_emails(text)
    text = _cut_secrets(text, matcher)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _AUTHORIZATION_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text if limit is None else text[:max(limit, 0)]


def redact_data(value: Any) -> Any:
    """A JSON-able structure with every string in it (keys and values) passed through `redact`; other
    values as they are. For JSON output: each string is scrubbed before `json.dumps` escapes it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(k) if isinstance(k, str) else k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_data(v) for v in value]
    return value


def mask_email(email: str | None) -> str:
    """Return `j***@example.com` for `jane@example.com`; the domain stays for diagnosis."""
    if not email:
        return "<none>"
    local, sep, domain = email.strip().partition("@")
    if not sep:
        return "<invalid>"
    return f"{local[:1]}***@{domain.lower()}"


def mask_emails_in_text(text: str) -> str:
    """The same as `redact(text)` (kept as a name for the call sites that mean "free text with addresses")."""
    return redact(text)


def secret_parts(value: str | None) -> tuple[list[str], list[str]]:
    """(fragment-matched secrets, whole-only values) of one raw secret setting.

    A Google credentials document (the JSON itself, or the path of a readable JSON file) gives its
    secret fields (`_CREDENTIAL_SECRETS`; a PEM key as its base64 body, line breaks removed) as
    fragment secrets and the document or path as a whole-only value: its other fields (the token
    URI, the project) are ordinary words that must stay readable. Any other value is a fragment secret.
    """
    if not value:
        return [], []
    document: Any = None
    try:
        document = json.loads(value)
    except ValueError:
        try:
            path = Path(value)
            if len(value) < 4096 and path.is_file():
                document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            document = None
        if document is None:
            return [value], []
    if not isinstance(document, dict):
        return [value], []
    fragments: list[str] = []
    for name in _CREDENTIAL_SECRETS:
        field = document.get(name)
        if isinstance(field, str) and field:
            body = re.sub(r"-----(?:BEGIN|END)[A-Z0-9 ]*-----|\s|\\n", "", field)
            fragments.append(body or field)
    return fragments, [value]


def register_secrets(values: Iterable[str | None]) -> None:
    """Remove these raw secret values (and their parts: `secret_parts`) from every later `redact` in this
    process. Called once by whoever runs a command (coldsync.logs.configure_logging)."""
    for value in values:
        fragments, whole = secret_parts(value)
        _registered.extend(s for s in fragments if s not in _registered)
        _registered_whole.extend(s for s in whole if s not in _registered_whole)


def forget_secrets() -> None:
    """Forget every registered secret (a test that registered its own key cleans up after itself)."""
    _registered.clear()
    _registered_whole.clear()


class RedactingFilter(logging.Filter):
    """Logging filter that passes every record's message and traceback through `redact`."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        register_secrets(secrets or [])

    def add_secret(self, secret: str | None) -> None:
        register_secrets([secret])

    def scrub(self, text: str) -> str:
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, scrubbed, so handlers never format the raw exception.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
