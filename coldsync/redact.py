"""Masking of personal data and secrets for logs, summaries and job output (invariant 7)."""

from __future__ import annotations

import logging
import re

_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+'\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")


def mask_email(email: str | None) -> str:
    """Return `j***@example.com` for `jane@example.com`; the domain stays for diagnosis."""
    if not email:
        return "<none>"
    local, sep, domain = email.strip().partition("@")
    if not sep:
        return "<invalid>"
    return f"{local[:1]}***@{domain.lower()}"


def mask_emails_in_text(text: str) -> str:
    """Replace every email-looking token in free text (error bodies, messages) by its mask."""
    return _EMAIL_RE.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2).lower()}", text)


class RedactingFilter(logging.Filter):
    """Logging filter that masks emails and removes known secrets from every record."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self._secrets = [s for s in (secrets or []) if s and len(s) >= 4]

    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return mask_emails_in_text(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, scrubbed, so handlers never format the raw exception.
            formatter = logging.Formatter()
            record.exc_text = self.scrub(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
