"""Change a row of the warehouse `config` table: `python setup.py --set KEY=VALUE` (repeatable).

Each value is checked exactly as the setting it feeds is checked when a run loads it (the same spec: type,
bounds, pattern), then all settings are resolved again with the new rows (cross-checks: the per-run target
under its ceiling, a routing or outcome-policy document that loads), so a row that a run would refuse is
never written. Every change is checked before any is written. Only keys with a `config` row in the README's
configuration table are accepted (SettingSpec.config_key); the bookkeeping rows (`schema_version`, `as_of`,
the erasure salt, the views' fingerprint) are not settings and cannot be set here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coldsync.redact import redact
from coldsync.settings import (
    CONFIG_KEYS,
    SettingProblem,
    SettingsError,
    SettingSpec,
    SettingsSources,
    convert_setting,
    resolve,
)
from coldsync.warehouse.base import Typed, Warehouse

SET_CONFIG_SQL = """
MERGE `{ds}.config` AS t
USING (SELECT @key AS key, @value_int AS value_int, @value_string AS value_string) AS s
ON t.key = s.key
WHEN MATCHED THEN
  UPDATE SET value_int = s.value_int, value_string = s.value_string, updated_at = @now
WHEN NOT MATCHED THEN
  INSERT (key, value_int, value_string, updated_at) VALUES (s.key, s.value_int, s.value_string, @now)
"""

NO_ROW = "(no row)"


@dataclass(frozen=True)
class ConfigChange:
    """One checked change: the row's key, its old value as stored (None: no row) and the new stored value."""

    key: str
    old: object | None
    value_int: int | None
    value_string: str | None
    shown_old: str
    shown_new: str
    overridden_by: str | None  # a layer above the table that sets the same setting (the row then does nothing)

    def describe(self) -> str:
        line = f"{self.key}: {self.shown_old} -> {self.shown_new}"
        if self.overridden_by:
            line += f" (note: {self.overridden_by} also sets it and wins over the config row)"
        return line


def _stored(spec: SettingSpec, value: Any) -> tuple[int | None, str | None]:
    """How the config table holds a converted value (as setup.py seeds it): whole numbers and switches in
    value_int, percents and text in value_string."""
    if spec.kind in ("int", "bool"):
        return int(value), None
    if spec.kind == "percent":
        return None, f"{value:g}"
    return None, (str(value) or None)


def _shown(spec: SettingSpec, value: Any) -> str:
    if spec.kind == "bool":
        return "true" if value else "false"
    if spec.kind == "percent":
        return f"{value:g}"
    if spec.kind == "int":
        return str(value)
    return repr(value) if value else "(empty)"


def _shown_old(spec: SettingSpec, old: object | None) -> str:
    if old is None:
        return NO_ROW
    value, problem = convert_setting(spec, old, "config table")
    return repr(old) if problem is not None else _shown(spec, value)


def valid_keys() -> str:
    return ", ".join(sorted(CONFIG_KEYS))


def plan_changes(assignments: Sequence[str], sources: SettingsSources,
                 config: Mapping[str, object]) -> list[ConfigChange]:
    """The checked changes for `KEY=VALUE` assignments against the current config rows. Raises SettingsError
    (every problem at once: the key, the value, the fix) when any is malformed, unknown or refused."""
    problems: list[SettingProblem] = []
    changes: list[ConfigChange] = []
    new_rows: dict[str, object] = {}
    # The highest layer above the table that sets each setting (layers are highest first: the first one wins).
    overriders = {name: origin for origin, layer in reversed(sources.layers) for name in layer}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            problems.append(SettingProblem("set", "flag", redact(assignment, 200), "is not KEY=VALUE",
                                           "write --set KEY=VALUE, e.g. --set cooldown_days=120"))
            continue
        spec = CONFIG_KEYS.get(key)
        if spec is None:
            problems.append(SettingProblem(key, "flag", redact(raw, 200), "is not a config-table setting",
                                           f"use one of: {valid_keys()}"))
            continue
        value, problem = convert_setting(spec, raw, "flag")
        if problem is not None:
            problems.append(problem)
            continue
        value_int, value_string = _stored(spec, value)
        new_rows[key] = value_int if value_int is not None else value_string
        origin = overriders.get(spec.name)
        changes.append(ConfigChange(key, config.get(key), value_int, value_string, _shown_old(spec, config.get(key)),
                                    _shown(spec, value), f"{spec.env} (from {origin})" if origin else None))
    if problems:
        raise SettingsError(problems)
    # The settings a run would resolve with the new rows: the cross-checks (and the documents) must still hold.
    resolve(sources, {**config, **new_rows})
    return changes


def apply_changes(warehouse: Warehouse, changes: Sequence[ConfigChange], now: dt.datetime | None = None) -> None:
    """Write the checked changes, one statement per row (query parameters only)."""
    at = now or dt.datetime.now(dt.UTC)
    for change in changes:
        warehouse.execute(SET_CONFIG_SQL, {"key": change.key, "value_int": Typed(change.value_int, "INT64"),
                                           "value_string": Typed(change.value_string, "STRING"),
                                           "now": Typed(at, "TIMESTAMP")}, label="setup.set_config")
