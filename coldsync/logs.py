"""One logging setup for the whole program: every record through the one redaction path (coldsync.redact),
to stderr."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from coldsync.redact import RedactingFilter, redact, register_secrets

_FILTER = RedactingFilter()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of each record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "INFO", secrets: list[str] | None = None) -> RedactingFilter:
    """Install the redacting handler on the `coldsync` logger (idempotent) and register `secrets` (raw values:
    `Settings.secrets()`) for every later redaction in this process: log records, errors, dead letters, the run
    log and every report (coldsync.redact.register_secrets). Returns the filter."""
    register_secrets(secrets or [])
    logger = logging.getLogger("coldsync")
    logger.setLevel(level)
    if not any(getattr(h, "_coldsync", False) for h in logger.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_FILTER)
        handler._coldsync = True  # type: ignore[attr-defined]
        # Added first, so its filter scrubs the record before any parent handler (e.g. pytest's) sees it.
        logger.handlers.insert(0, handler)
    # Records of other libraries' loggers reach stderr through logging's last-resort handler when nobody configured
    # the root logger, and Python warnings through warnings.formatwarning: both get the same redaction.
    if logging.lastResort is not None and _FILTER not in logging.lastResort.filters:
        logging.lastResort.addFilter(_FILTER)
    if not getattr(warnings.formatwarning, "_coldsync", False):
        warnings.formatwarning = _redacting_formatwarning(warnings.formatwarning)
    return _FILTER


def _redacting_formatwarning(original: Callable[..., str]) -> Callable[..., str]:
    """`warnings.formatwarning` whose text goes through the one redaction path."""
    def formatwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
        return redact(original(message, category, filename, lineno, line))

    formatwarning._coldsync = True  # type: ignore[attr-defined]
    return formatwarning
