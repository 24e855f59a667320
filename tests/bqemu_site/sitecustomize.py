"""Memoize the BigQuery emulator's pure SQL translation steps (loaded into the emulator process only).

`tests/bq_emulator.py` puts this directory on the emulator's PYTHONPATH, so Python imports this
module at start-up, before the emulator. Profiling (py-spy) showed the emulator spending most of a
test's time re-parsing the same statement text: every query is parsed by sqlglot about 40 times
(each rewriter parses it again), and the same statements come back run after run. Both steps
cached here are pure functions of their arguments:

  * ``sqlglot.parse_one(sql, read=..., dialect=...)``: same text and dialect, same tree. The cache
    keeps its own tree and hands out a copy, because callers rewrite the tree they get.
  * ``SQLTranslator.translate(bq_sql, schema=..., caller=...)``: the key holds the text, the
    catalog snapshot (``schema``) and the caller identity; only successful translations are kept,
    so an error is produced afresh each time.

Statements still run against DuckDB every time; only their translation is reused. Set
``COLDSYNC_BQEMU_CACHE=0`` to run the emulator unpatched (tests/bq_emulator.py then leaves this
directory off the path).
"""

from __future__ import annotations

import threading
from typing import Any

_LIMIT = 20_000
_lock = threading.Lock()


def _patch_parse_one() -> None:
    import sqlglot

    original = sqlglot.parse_one
    trees: dict[tuple[str, str, str], Any] = {}

    def parse_one(sql: Any, read: Any = None, dialect: Any = None, into: Any = None, **opts: Any) -> Any:
        if not isinstance(sql, str) or into is not None or opts:
            return original(sql, read=read, dialect=dialect, into=into, **opts)
        key = (sql, repr(read), repr(dialect))
        tree = trees.get(key)
        if tree is None:
            tree = original(sql, read=read, dialect=dialect)
            with _lock:
                if len(trees) >= _LIMIT:
                    trees.clear()
                trees[key] = tree
        return tree.copy()

    parse_one.__doc__ = original.__doc__
    sqlglot.parse_one = parse_one


def _patch_translate() -> None:
    from bqemulator.sql import translator  # type: ignore[import-not-found]  # only in .venv-bqemu

    original = translator.SQLTranslator.translate
    results: dict[tuple[str, str, str], Any] = {}

    def translate(self: Any, bq_sql: str, *, schema: Any = None, caller: Any = None, **kwargs: Any) -> Any:
        if kwargs:
            return original(self, bq_sql, schema=schema, caller=caller, **kwargs)
        key = (bq_sql, repr(schema), repr(caller))
        result = results.get(key)
        if result is None:
            result = original(self, bq_sql, schema=schema, caller=caller)
            if result.is_ok():
                with _lock:
                    if len(results) >= _LIMIT:
                        results.clear()
                    results[key] = result
        return result

    translator.SQLTranslator.translate = translate


try:
    _patch_parse_one()
    _patch_translate()
except ImportError:  # not the emulator's environment (e.g. a helper run with this path): leave it alone
    pass
