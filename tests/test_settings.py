"""Settings: precedence, validation with named fixes, and secrets that never show."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coldsync.settings import (
    SPECS,
    Secret,
    Settings,
    SettingsError,
    add_cli_arguments,
    cli_overrides,
    load_settings,
)

KEY = "sk-live-ZZZ-distinctive-secret-123"


def _load(tmp_path: Path, env: dict[str, str] | None = None, dotenv: str = "",
          instantly: dict[str, object] | None = None, cli: dict[str, str] | None = None,
          config: dict[str, object] | None = None) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    if instantly is not None:
        (secrets / "instantly-config.json").write_text(json.dumps(instantly))
    dotenv_path = tmp_path / ".env"
    dotenv_path.write_text(dotenv)
    return load_settings(cli=cli, environ=env or {}, dotenv_path=dotenv_path, secrets_dir=secrets,
                         config_rows=config)


def test_defaults_match_the_business_rules(tmp_path: Path) -> None:
    """With nothing set, the defaults are the documented ones: cap 24,000, cooldown 90, 100 per run, DuckDB."""
    s = _load(tmp_path)
    assert (s.inventory_cap, s.cooldown_days, s.target_new_leads_per_run, s.smb_revenue_threshold) == (
        24_000, 90, 100, 1_000_000)
    assert not s.uses_bigquery and s.dry_run is False and s.batch_size == 1000


def test_precedence_flag_env_dotenv_secrets_config_default(tmp_path: Path) -> None:
    """Each layer wins over the ones below it: flag > env > .env > secrets file > config table > default."""
    config: dict[str, object] = {"cooldown_days": 10, "inventory_cap": 11, "batch_size": 12,
                                 "max_active_days": 13, "dead_letter_max_retries": 14}
    s = _load(tmp_path,
              cli={"cooldown_days": "1"},
              env={"COOLDOWN_DAYS": "2", "INVENTORY_CAP": "2"},
              dotenv="COOLDOWN_DAYS=3\nINVENTORY_CAP=3\nBATCH_SIZE=3\n",
              instantly={"cooldown_days": 4, "inventory_cap": 4, "batch_size": 4, "max_active_days": 4},
              config=config)
    assert (s.cooldown_days, s.inventory_cap, s.batch_size, s.max_active_days, s.dead_letter_max_retries) == (
        1, 2, 3, 4, 14)
    assert s.origins["cooldown_days"] == "flag" and s.origins["max_active_days"] == "secrets file"
    assert s.origins["dead_letter_max_retries"] == "config table" and s.origins["lock_ttl_minutes"] == "default"


def test_bad_values_name_the_setting_value_and_fix(tmp_path: Path) -> None:
    """Every bad value is reported at once, with the setting, the value and a fix."""
    with pytest.raises(SettingsError) as info:
        _load(tmp_path, env={"BATCH_SIZE": "5000", "COOLDOWN_DAYS": "ninety", "DRY_RUN": "maybe",
                             "SMB_CAMPAIGN_ID": "not-a-uuid"})
    text = str(info.value)
    assert "BATCH_SIZE='5000'" in text and "at most 1000" in text
    assert "COOLDOWN_DAYS='ninety'" in text and "whole number" in text
    assert "DRY_RUN='maybe'" in text and "true or false" in text
    assert "SMB_CAMPAIGN_ID='not-a-uuid'" in text and "campaign UUID" in text
    assert len(info.value.problems) == 4


def test_target_above_the_hard_ceiling_is_refused(tmp_path: Path) -> None:
    """TARGET_NEW_LEADS_PER_RUN above MAX_NEW_LEADS_PER_RUN stops the run with the fix."""
    with pytest.raises(SettingsError, match="MAX_NEW_LEADS_PER_RUN"):
        _load(tmp_path, env={"TARGET_NEW_LEADS_PER_RUN": "600", "MAX_NEW_LEADS_PER_RUN": "500"})


def test_same_campaign_for_both_segments_is_refused(tmp_path: Path) -> None:
    """One campaign id for both segments is a configuration error."""
    cid = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
    with pytest.raises(SettingsError, match="same campaign"):
        _load(tmp_path, env={"SMB_CAMPAIGN_ID": cid, "MIDSIZE_CAMPAIGN_ID": cid.upper()})


def test_secret_never_in_repr_str_or_errors(tmp_path: Path) -> None:
    """The API key shows in no repr, str or settings error, even when it sits beside a bad value."""
    s = _load(tmp_path, env={"INSTANTLY_API_KEY": KEY})
    assert s.instantly_api_key.reveal() == KEY
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in repr(Secret(KEY))
    with pytest.raises(SettingsError) as info:
        _load(tmp_path, env={"INSTANTLY_API_KEY": KEY, "BATCH_SIZE": "x", "SMB_CAMPAIGN_ID": "bad"})
    assert KEY not in str(info.value) and KEY not in repr(info.value.problems)


def test_secrets_file_supplies_api_key_and_credentials_path(tmp_path: Path) -> None:
    """config/secrets/instantly-config.json gives the key; bigquery-credentials.json gives path and project."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "instantly-config.json").write_text(json.dumps({"api_key": KEY}))
    (secrets / "bigquery-credentials.json").write_text(json.dumps({"type": "service_account",
                                                                    "project_id": "demo-project-1"}))
    s = load_settings(environ={}, dotenv_path=tmp_path / "none.env", secrets_dir=secrets)
    assert s.instantly_api_key.reveal() == KEY
    assert s.bigquery_credentials_json.reveal().endswith("bigquery-credentials.json")
    assert s.bq_project == "demo-project-1" and s.uses_bigquery


def test_unreadable_secrets_file_is_reported_without_content(tmp_path: Path) -> None:
    """A broken instantly-config.json is a named configuration error that does not echo its content."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "instantly-config.json").write_text("{" + KEY)
    with pytest.raises(SettingsError) as info:
        load_settings(environ={}, dotenv_path=tmp_path / "none.env", secrets_dir=secrets)
    assert "instantly-config.json" in str(info.value) and KEY not in str(info.value)


def test_every_setting_has_a_flag_except_secrets() -> None:
    """Each non-secret setting is a command-line flag; secrets are not (they would show in `ps`)."""
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(["--target-new-leads-per-run", "7", "--dry-run"])
    assert cli_overrides(args) == {"target_new_leads_per_run": "7", "dry_run": "true"}
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    for spec in SPECS:
        assert (spec.flag in flags) is (spec.kind != "secret")


def test_readme_documents_every_setting() -> None:
    """The README's configuration table names every setting's environment variable."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [spec.env for spec in SPECS if f"`{spec.env}`" not in readme]
    assert not missing, f"README lacks: {missing}"


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    """An empty environment or .env value (as CI passes unset inputs) falls through to the next layer."""
    s = _load(tmp_path, env={"BQ_DATASET": "", "BATCH_SIZE": "  "}, dotenv="COOLDOWN_DAYS=\n")
    assert (s.bq_dataset, s.batch_size, s.cooldown_days) == ("coldsync", 1000, 90)
