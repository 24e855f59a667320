"""Credentials, permission and location problems of the BigQuery warehouse: one line with the setting and the fix
(exit 2 from sync_once.py and setup.py, a FAIL row and exit 4 from validate_environment.py), never a traceback.

The credentials cases are real bad inputs given to the real entry points as subprocesses, in an environment with
no Google credentials at all (HOME and CLOUDSDK_CONFIG in a temporary directory, no GOOGLE_APPLICATION_CREDENTIALS,
the metadata server pointed at a closed local port): google-auth refuses them before any call, so no test reaches
the network. The location case runs on the BigQuery emulator, which records a dataset's location (it does not
enforce it: docs/BIGQUERY_EMULATOR.md), so the comparison is tested with the location the emulator reports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import RefreshError
from google.cloud import bigquery

import setup as setup_command
from coldsync import cli
from coldsync.cli import ExitCode
from coldsync.settings import read_sources
from coldsync.validate import run_checks
from coldsync.warehouse import WarehouseConfigError, WarehouseError, connect
from coldsync.warehouse.bigquery import google_errors, location_mismatch
from tests.conftest import _fresh_dataset, make_settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_KEY = REPO / "config" / "secrets" / "bigquery-credentials.example.json"

KEY_FIX = ("set BIGQUERY_CREDENTIALS_JSON to the path of the service-account key file Google gave you (or paste its "
           "whole JSON), or unset it to use keyless auth (docs/OPERATIONS.md, 1.2)")
CASES: dict[str, tuple[str | None, str, str]] = {
    # name: (BIGQUERY_CREDENTIALS_JSON, problem, fix)
    "no credentials at all": (
        None,
        "BQ_PROJECT is set but no Google credentials were found: BIGQUERY_CREDENTIALS_JSON and "
        "GOOGLE_APPLICATION_CREDENTIALS are empty and there are no Application Default Credentials",
        "set BIGQUERY_CREDENTIALS_JSON to the path of a service-account key file (or its JSON), or run `gcloud auth "
        "application-default login` on this machine; in GitHub Actions set up keyless auth or the "
        "BIGQUERY_CREDENTIALS_JSON secret (docs/OPERATIONS.md, 1.2)"),
    "key JSON missing fields": (
        '{"type":"service_account"}',
        "BIGQUERY_CREDENTIALS_JSON holds JSON that is not a complete service-account key: it lacks client_email, "
        "private_key, token_uri", KEY_FIX),
    "broken JSON": (
        '{"type": "service_account", "client_email": ',
        "BIGQUERY_CREDENTIALS_JSON looks like JSON but does not parse (it may be cut short)", KEY_FIX),
    "path to a missing file": (
        "/nonexistent/coldsync-key.json",
        "BIGQUERY_CREDENTIALS_JSON is neither JSON nor the path of an existing file",
        "correct the path (or GOOGLE_APPLICATION_CREDENTIALS), or unset it to use keyless auth / Application "
        "Default Credentials"),
    "the committed example key file": (
        str(EXAMPLE_KEY),
        "BIGQUERY_CREDENTIALS_JSON names a file that is a service-account key whose private_key cannot be read "
        "(ValueError)", KEY_FIX),
}


def _run(tmp_path: Path, script: str, credentials: str | None) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
           "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",  # never the network
           "BQ_PROJECT": "my-proj", "ROUTES_FILE": "none",
           "OUTCOME_POLICIES_FILE": "none"}
    if credentials is not None:
        env["BIGQUERY_CREDENTIALS_JSON"] = credentials
    return subprocess.run([sys.executable, script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("script", ["sync_once.py", "setup.py"])
def test_credentials_problem_is_one_configuration_line(tmp_path: Path, script: str, case: str) -> None:
    """sync_once.py and setup.py end a credentials problem with exit 2 and exactly one stderr line naming the
    setting and the fix, and nothing on stdout: no traceback, no partial output."""
    credentials, problem, fix = CASES[case]
    out = _run(tmp_path, script, credentials)
    assert out.returncode == ExitCode.BAD_CONFIG, out.stderr
    assert out.stderr == f"Configuration error: {problem}. Fix: {fix}\n"
    assert out.stdout == ""


@pytest.mark.parametrize("case", list(CASES))
def test_credentials_problem_is_a_warehouse_fail_row(tmp_path: Path, case: str) -> None:
    """validate_environment.py shows a credentials problem as the warehouse FAIL row with its fix, exits 4, and
    prints no traceback."""
    credentials, problem, fix = CASES[case]
    out = _run(tmp_path, "validate_environment.py", credentials)
    assert out.returncode == ExitCode.CHECK_FAILED, out.stderr
    lines = out.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("  FAIL  warehouse "))
    assert lines[row].split("warehouse", 1)[1].strip() == f"cannot open the warehouse: {problem}"
    assert lines[row + 1].strip() == f"fix: {fix}"
    assert lines[-1] == "NOT ready: 2 passed, 0 warnings, 2 failed, 13 skipped (exit 4)"
    assert "Traceback" not in out.stdout + out.stderr


def test_credentials_google_refuses_are_a_configuration_error() -> None:
    """A token refused by Google (a deleted key) is a configuration error naming the credentials settings."""
    with pytest.raises(WarehouseConfigError) as info, google_errors("validate.ping", "coldsync"):
        raise RefreshError("invalid_grant: Invalid JWT Signature.")  # type: ignore[no-untyped-call]
    assert info.value.problem == (
        "Google refused the credentials (BIGQUERY_CREDENTIALS_JSON, GOOGLE_APPLICATION_CREDENTIALS or Application "
        "Default Credentials) when asked for a token (RefreshError)")


@pytest.mark.parametrize(("message", "fix"), [
    ("Access Denied: Project my-proj: User does not have bigquery.jobs.create permission in project my-proj.",
     "grant the service account BigQuery Job User (roles/bigquery.jobUser) on the project (docs/OPERATIONS.md, 1.1)"),
    ("Access Denied: Table my-proj:coldsync.config: Permission bigquery.tables.getData denied on table",
     "grant the service account BigQuery Data Editor (roles/bigquery.dataEditor) on the dataset coldsync, and Data "
     "Viewer on the source table's dataset if it is elsewhere (docs/OPERATIONS.md, 1.1)"),
])
def test_permission_denied_names_the_role_to_grant(message: str, fix: str) -> None:
    """A 403 accessDenied is a configuration error whose fix is the role the statement needed."""
    with pytest.raises(WarehouseConfigError) as info, google_errors("settings.read_config", "coldsync"):
        raise gexc.Forbidden(message, errors=[{"reason": "accessDenied"}])  # type: ignore[no-untyped-call]
    assert (info.value.problem, info.value.fix) == (f"BigQuery denied access: {message}", fix)


def test_quota_403_and_no_connection_are_service_failures() -> None:
    """A 403 for a quota is not a permission, and no connection is an unreachable service: both are plain
    WarehouseErrors (exit 1), never configuration errors."""
    with pytest.raises(WarehouseError) as quota, google_errors("sync.read", "coldsync"):
        raise gexc.Forbidden("Quota exceeded: too many jobs",  # type: ignore[no-untyped-call]
                             errors=[{"reason": "quotaExceeded"}])
    assert type(quota.value) is WarehouseError
    assert str(quota.value) == "sync.read: Forbidden: Quota exceeded: too many jobs"
    with pytest.raises(WarehouseError) as down, google_errors("sync.read", "coldsync"):
        raise requests.exceptions.ConnectionError("Failed to resolve bigquery.googleapis.com")
    assert type(down.value) is WarehouseError
    assert str(down.value) == ("sync.read: BigQuery could not be reached (ConnectionError); check the network and "
                               "try again")


def test_an_unreachable_bigquery_is_one_line_after_the_clients_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real client pointed at a closed port: its retries end in RetryError (what google-cloud-bigquery raises,
    not a ConnectionError), and the warehouse says in one line that BigQuery could not be reached (exit 1)."""
    import socket

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    import coldsync.warehouse.bigquery as bq_module

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(bq_module, "CONNECT_RETRY", bigquery.DEFAULT_RETRY.with_deadline(0.5))
    client = bigquery.Client(project="p", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                             client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{port}"))
    warehouse = bq_module.BigQueryWarehouse("p", "coldsync", client=client)
    with pytest.raises(WarehouseError) as down:
        warehouse.check_location()
    assert type(down.value) is WarehouseError
    assert str(down.value) == ("connect.dataset: BigQuery could not be reached (ConnectionError, retried until the "
                               "deadline); check the network and try again")


def test_location_comparison() -> None:
    """Locations compare without case; an unknown location is no mismatch; EU against US names both and the fix."""
    assert location_mismatch("p.coldsync", "us", "US") is None
    assert location_mismatch("p.coldsync", None, "US") is None
    assert location_mismatch("p.coldsync", "EU", "US") == (
        "the dataset p.coldsync is in location EU but BQ_LOCATION is US: BigQuery would look for it in US",
        "set BQ_LOCATION=EU (repository variable, environment or .env); a dataset's location cannot be changed")


@pytest.mark.bigquery
def test_dataset_in_another_location_fails_before_any_query(bq_emulator: Any, tmp_path: Path,
                                                            request: pytest.FixtureRequest,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A dataset in EU with BQ_LOCATION=US: connect refuses it naming both locations and BQ_LOCATION=EU as the fix;
    validate_environment shows it as the warehouse FAIL row (exit 4) instead of passing and failing the config rows;
    setup.py exits 2 with the same line; with BQ_LOCATION=EU the warehouse opens."""
    client = bq_emulator.client()
    dataset_name = _fresh_dataset(client, request)
    dataset = bigquery.Dataset(f"{bq_emulator.project}.{dataset_name}")
    dataset.location = "EU"
    client.create_dataset(dataset)
    assert client.get_dataset(dataset.reference).location == "EU"  # the emulator reports what it recorded
    environ = {"BQ_PROJECT": bq_emulator.project, "BQ_DATASET": dataset_name, "BQ_LOCATION": "US",
               "ROUTES_FILE": "none", "DUCKDB_PATH": str(tmp_path / "unused.duckdb")}
    problem = (f"the dataset {bq_emulator.project}.{dataset_name} is in location EU but BQ_LOCATION is US: BigQuery "
               "would look for it in US")
    fix = "set BQ_LOCATION=EU (repository variable, environment or .env); a dataset's location cannot be changed"
    with pytest.raises(WarehouseConfigError) as info:
        connect(make_settings(tmp_path, **environ), bigquery_client=bq_emulator.client())
    assert (info.value.problem, info.value.fix) == (problem, fix)

    sources = read_sources(environ=environ, dotenv_path=tmp_path / "none.env", secrets_dir=tmp_path / "none")
    result = run_checks(sources, connect_warehouse=lambda s: connect(s, bigquery_client=bq_emulator.client()))
    row = next(c for c in result.checks if c.name == "warehouse")
    assert (row.status, row.detail, row.fix) == ("fail", f"cannot open the warehouse: {problem}", fix)
    assert result.exit_code == ExitCode.CHECK_FAILED

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "connect", lambda s: connect(s, bigquery_client=bq_emulator.client()))
    assert setup_command.main([]) == ExitCode.BAD_CONFIG
    assert capsys.readouterr().err == f"Configuration error: {problem}. Fix: {fix}\n"

    opened = connect(make_settings(tmp_path, **{**environ, "BQ_LOCATION": "eu"}), bigquery_client=bq_emulator.client())
    opened.close()
