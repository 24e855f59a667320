"""The README's and docs/OPERATIONS.md's commands work as written: every command of the commands table and the
bash blocks names a program that exists, our Python entry points go through `.venv/bin/python` (never a bare
`python`, the system one on a fresh machine) and answer `--help`, and the simulator-server recipe runs verbatim."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from coldsync.settings import SPECS

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = ".venv/bin/python"
DOCS = ("README.md", "docs/OPERATIONS.md")


def _commands_table(text: str) -> list[str]:
    section = text.split("## The commands", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _block_commands(block: str) -> list[str]:
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def documented_commands() -> list[str]:
    commands: list[str] = []
    for doc in DOCS:
        text = (REPO / doc).read_text(encoding="utf-8")
        if doc == "README.md":
            commands += _commands_table(text)
        for block in _bash_blocks(text):
            commands += _block_commands(block)
    return commands


def _program(command: str) -> list[str]:
    """The program and its arguments, without leading VAR=value assignments, comments and a trailing `&`."""
    words = [w for w in shlex.split(command, comments=True) if w != "&"]
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def python_entry_points() -> set[tuple[str, ...]]:
    """(script,) or ("-m", module) of every documented `.venv/bin/python` command."""
    found: set[tuple[str, ...]] = set()
    for command in documented_commands():
        words = _program(command)
        if words and words[0] == VENV_PYTHON:
            found.add(tuple(words[1:3]) if words[1] == "-m" else (words[1],))
    return found


def test_the_extractor_finds_the_documented_commands() -> None:
    """The commands table has its 18 rows and the docs' bash blocks reach every Python entry point (a guard
    that the tests below check something)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(_commands_table(readme)) == 18
    assert python_entry_points() == {("sync_once.py",), ("setup.py",), ("validate_environment.py",),
                                     ("-m", "coldsync.demo"), ("-m", "coldsync.instantly.simulator"),
                                     ("-m", "coldsync.webhooks"),
                                     ("-m", "coldsync.schedule"), ("-m", "pytest")}


@pytest.mark.parametrize("command", documented_commands())
def test_documented_command_names_an_existing_program(command: str) -> None:
    """Each documented command runs our code through .venv/bin/python or ./scripts (which exist), never through a
    bare python."""
    words = _program(command)
    if not words:
        return
    program = words[0]
    assert program not in ("python", "python3"), f"write {VENV_PYTHON} (the system python lacks the deps): {command}"
    if program == VENV_PYTHON and words[1] != "-m":
        assert (REPO / words[1]).is_file(), command
    if program.startswith("./"):
        assert os.access(REPO / program, os.X_OK), command


@pytest.mark.parametrize("entry", sorted(python_entry_points()))
def test_entry_point_answers_help_with_the_venv_python(entry: tuple[str, ...]) -> None:
    """`.venv/bin/python <entry> --help` exits 0 from the repository root, as the docs run it."""
    if not (REPO / VENV_PYTHON).exists():
        pytest.skip(f"{VENV_PYTHON} is made by ./scripts/test or ./scripts/demo")
    out = subprocess.run([VENV_PYTHON, *entry, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_simulator_server_recipe_runs_verbatim(tmp_path: Path) -> None:
    """The README's simulator-server block, run as written (only its port and warehouse file moved to free ones),
    starts the server, builds the warehouse, syncs 50 leads into each of its two campaigns against the server
    (not the embedded simulator), exits 0 and stops the server."""
    if not (REPO / VENV_PYTHON).exists():
        pytest.skip(f"{VENV_PYTHON} is made by ./scripts/test or ./scripts/demo")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = _bash_blocks(readme.split("### The simulator as a server", 1)[1])[0]
    port = _free_port()
    script = block.replace("8765", str(port)).replace("data/simulator-server.duckdb", str(tmp_path / "server.duckdb"))
    env = {k: v for k, v in os.environ.items()
           if k not in {s.env for s in SPECS} and k not in ("GOOGLE_APPLICATION_CREDENTIALS", "GITHUB_STEP_SUMMARY")}
    env.update(ROUTES_FILE="none", OUTCOME_POLICIES_FILE="none")  # not a developer's own files
    process = subprocess.Popen(["bash", "-e", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the server too, should the block have stopped early
    assert process.returncode == 0, stderr[-3000:]
    assert f'"base_url": "http://127.0.0.1:{port}"' in stdout
    assert "embedded mode" not in stderr
    assert "route SMB: added 50, drained 0, room 50" in stdout
    assert "route Midsize: added 50, drained 0, room 50" in stdout
    assert re.search(r"^coldsync run \S+: success in ", stdout, flags=re.MULTILINE)


def test_report_after_the_demo_names_the_demo_warehouse() -> None:
    """The README's analytics-report section gives, for after `./scripts/demo`, a `--report --html` command
    whose DUCKDB_PATH is the demo's own warehouse (coldsync.demo.DEMO_WAREHOUSE, data/demo.duckdb), not the
    default data/coldsync.duckdb that the demo never writes."""
    from coldsync.demo import DEMO_WAREHOUSE

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The analytics report", 1)[1].split("\n## ", 1)[0]
    demo_path = DEMO_WAREHOUSE.relative_to(REPO).as_posix()
    commands = [c for block in _bash_blocks(section) for c in _block_commands(block)]
    wanted = f"DUCKDB_PATH={demo_path} {VENV_PYTHON} sync_once.py --report --html report.html"
    assert [c for c in commands if c.split("#", 1)[0].strip() == wanted] != [], commands
