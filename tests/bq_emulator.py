"""Run the BigQuery emulator (PyPI `bqemulator`) as a server process for tests.

The emulator lives in its OWN virtual environment (`.venv-bqemu`, installed from
`.ci/bqemulator-requirements.txt`) because its pins (duckdb 1.5.5, sqlglot<30.12) clash with the
product's. Tests talk to it only through the official `google-cloud-bigquery` client, exactly as
production talks to BigQuery. Findings and workarounds: docs/BIGQUERY_EMULATOR.md.

Which emulator executable is used (first match wins):
  1. `COLDSYNC_BQEMU_PYTHON`: the emulator venv's `python` (run as `python -m bqemulator`) or its
     `bqemulator` script;
  2. `BQEMULATOR_BIN`: same meaning;
  3. `<repo>/.venv-bqemu/bin/bqemulator`.

What `start_emulator` does beyond `bqemulator start`, and why:
  * installs DuckDB's spatial extension from the `duckdb-extension-spatial` wheel into a DuckDB
    home inside the emulator venv (the emulator refuses to boot without spatial and cannot download
    it offline); the emulator process runs with HOME pointing there, so nothing outside the venv is
    touched;
  * turns off the best-effort avro extension download (BQEMU_ENABLE_FORMAT_EXTENSIONS=false), which
    can only stall offline;
  * binds REST to 127.0.0.1 on a free port and lets gRPC pick its own free port (`--grpc-port 0`),
    so parallel workers never clash;
  * runs from a private working directory with every inherited BQEMU_* variable removed, so a stray
    `.bqemu.toml` or environment setting cannot change its behaviour.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EMULATOR_BIN = REPO_ROOT / ".venv-bqemu" / "bin" / "bqemulator"
ENV_VARS = ("COLDSYNC_BQEMU_PYTHON", "BQEMULATOR_BIN")
DEFAULT_PROJECT = "coldsync-test"
SPEEDUPS_DIR = Path(__file__).resolve().parent / "bqemu_site"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
INSTALL_HINT = ("python3 -m venv .venv-bqemu && .venv-bqemu/bin/pip install --require-hashes "
                "-r .ci/bqemulator-requirements.txt")

# The client retries HTTP 5xx for up to 10 minutes. The emulator answers 500 to the few statements
# it cannot handle (e.g. RAISE inside an EXCEPTION block), so a test would hang instead of failing.
# Pass `retry=EMULATOR_RETRY, job_retry=None` to `Client.query` when a statement may do that.
EMULATOR_RETRY: Retry = bigquery.DEFAULT_RETRY.with_deadline(15.0)

# Installs the spatial extension shipped in the duckdb-extension-spatial wheel into DuckDB's home
# (HOME is set by the caller); a no-op when it is already installed.
_SPATIAL_INSTALL_SCRIPT = """
import pathlib, duckdb
installed = duckdb.sql(
    "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'spatial'"
).fetchone()
if not (installed and installed[0]):
    import duckdb_extension_spatial
    ext = (pathlib.Path(duckdb_extension_spatial.__file__).parent / "extensions"
           / ("v" + duckdb.__version__) / "spatial.duckdb_extension")
    if not ext.is_file():
        raise SystemExit(f"spatial extension for duckdb {duckdb.__version__} not found at {ext}")
    duckdb.execute("INSTALL '" + str(ext) + "'")
duckdb.execute("LOAD spatial")
print("spatial ok")
"""


@dataclass(frozen=True)
class EmulatorCommand:
    """How to launch the emulator: its argv prefix, the venv's python, and the venv directory."""

    argv: tuple[str, ...]
    python: Path
    venv: Path
    source: str  # which setting chose it (env var name or "default")


def _command_for(executable: Path, source: str) -> EmulatorCommand:
    venv = executable.parent.parent
    if executable.name.startswith("python"):
        return EmulatorCommand((str(executable), "-m", "bqemulator"), executable, venv, source)
    return EmulatorCommand((str(executable),), executable.parent / "python", venv, source)


def resolve_emulator() -> EmulatorCommand:
    """The emulator executable chosen by COLDSYNC_BQEMU_PYTHON, BQEMULATOR_BIN, or the repo default."""
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return _command_for(Path(value).expanduser(), name)
    return _command_for(DEFAULT_EMULATOR_BIN, "default")


#: The emulator's virtual environment as resolved when this module was imported.
BQ_EMULATOR_VENV: Path = resolve_emulator().venv


def emulator_available() -> tuple[bool, str]:
    """Whether the emulator executable exists (and the reason when it does not)."""
    command = resolve_emulator()
    executable = Path(command.argv[0])
    if not executable.is_file() or not os.access(executable, os.X_OK):
        return False, f"{executable} ({command.source}) is not an executable file; install it with: {INSTALL_HINT}"
    if not command.python.is_file():
        return False, f"{command.python} (the emulator venv's python) is missing; install with: {INSTALL_HINT}"
    return True, f"{executable} ({command.source})"


def use_octet_stream_uploads() -> None:
    """Make the client send small (<5 MiB, multipart) load uploads as application/octet-stream.

    The client labels the media part `*/*`, which the emulator rejects with 400 ("multipart upload's
    second part has unsupported Content-Type"). BigQuery accepts octet-stream too, so this is safe
    for a whole test process. Larger uploads go through the resumable path and are unaffected.
    """
    import google.cloud.bigquery.client as bq_client_module

    if not hasattr(bq_client_module, "_GENERIC_CONTENT_TYPE"):  # pragma: no cover - library changed
        raise RuntimeError("google-cloud-bigquery no longer has _GENERIC_CONTENT_TYPE; revisit this workaround")
    bq_client_module._GENERIC_CONTENT_TYPE = "application/octet-stream"


def make_client(endpoint: str, project: str, location: str | None = None) -> bigquery.Client:
    """An official BigQuery client aimed at the emulator: anonymous credentials, custom endpoint."""
    use_octet_stream_uploads()
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
        location=location,
    )


@dataclass
class EmulatorHandle:
    """A running emulator process; `stop()` ends it (SIGTERM, then SIGKILL after a timeout)."""

    process: subprocess.Popen[bytes]
    endpoint: str
    project: str
    log_path: Path
    run_dir: Path
    args: list[str] = field(default_factory=list)
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _owns_run_dir: bool = field(default=True, repr=False)

    def client(self, location: str | None = None) -> bigquery.Client:
        """A fresh official client for this emulator (see `make_client`)."""
        return make_client(self.endpoint, self.project, location)

    def is_running(self) -> bool:
        """True while the emulator process has not exited."""
        return self.process.poll() is None

    def log_tail(self, max_chars: int = 6000) -> str:
        """The end of the emulator's log (stdout and stderr), for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no emulator log)"
        return text[-max_chars:]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Terminate the emulator and wait for it; kill it if it does not exit within `timeout`."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _duckdb_home(command: EmulatorCommand) -> Path:
    home = command.venv / "duckdb-home"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _emulator_env(duckdb_home: Path, run_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BQEMU_")}
    env.update(
        HOME=str(duckdb_home),  # DuckDB keeps extensions under $HOME/.duckdb
        BQEMU_ENABLE_FORMAT_EXTENSIONS="false",
        BQEMU_UPLOAD_STAGING_DIR=str(run_dir / "uploads"),
        PYTHONUNBUFFERED="1",
    )
    if os.environ.get("COLDSYNC_BQEMU_CACHE", "1") != "0":
        # Memoizes the emulator's pure SQL translation (see tests/bqemu_site/sitecustomize.py).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SPEEDUPS_DIR), env.get("PYTHONPATH", "")) if p)
    return env


def ensure_spatial_extension(command: EmulatorCommand | None = None) -> None:
    """Install DuckDB's spatial extension for the emulator from the bundled wheel (idempotent)."""
    command = command or resolve_emulator()
    home = _duckdb_home(command)
    env = _emulator_env(home, Path(tempfile.gettempdir()))
    with (home / ".install.lock").open("w") as lock:  # parallel test workers share the DuckDB home
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            [str(command.python), "-c", _SPATIAL_INSTALL_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(
            "Could not install DuckDB's spatial extension for the BigQuery emulator "
            f"(is duckdb-extension-spatial installed in {command.venv}?):\n{result.stdout}{result.stderr}"
        )


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/readyz", timeout=2) as response:
            body = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok"


def start_emulator(
    project: str = DEFAULT_PROJECT,
    data_dir: Path | None = None,
    *,
    timeout: float = STARTUP_TIMEOUT_S,
    log_level: str | None = None,
) -> EmulatorHandle:
    """Start `bqemulator start` on 127.0.0.1:<free port> and wait until /readyz says ok.

    `data_dir` makes it persistent (DuckDB file there); otherwise it is in-memory. Raises
    RuntimeError with the emulator's log when it exits early or is not ready within `timeout`.
    """
    available, why = emulator_available()
    if not available:
        raise RuntimeError(f"BigQuery emulator not available: {why}")
    command = resolve_emulator()
    ensure_spatial_extension(command)

    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probing and binding: retry
        handle = _launch(command, project, data_dir, log_level or os.environ.get("COLDSYNC_BQEMU_LOG_LEVEL", "warning"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not handle.is_running():
                break
            if _ready(handle.endpoint):
                return handle
            time.sleep(0.1)
        running = handle.is_running()
        log = handle.log_tail()
        handle.stop()
        state = f"not ready after {timeout:.0f} s" if running else f"exited early (code {handle.process.returncode})"
        last_error = f"BigQuery emulator {state}: {' '.join(handle.args)}\n--- emulator log ---\n{log}"
        if running or "address already in use" not in log.lower():
            break
    raise RuntimeError(last_error)


def _launch(command: EmulatorCommand, project: str, data_dir: Path | None, log_level: str) -> EmulatorHandle:
    port = _free_port()
    owns_run_dir = data_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="bqemu-")) if data_dir is None else data_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    args = [
        *command.argv,
        "start",
        "--rest-host",
        "127.0.0.1",
        "--rest-port",
        str(port),
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        "0",
        "--project",
        project,
        "--log-level",
        log_level,
        "--log-format",
        "console",
    ]
    args += ["--data-dir", str(data_dir)] if data_dir is not None else ["--ephemeral"]
    log_path = run_dir / "bqemulator.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        args,
        cwd=run_dir,
        env=_emulator_env(_duckdb_home(command), run_dir),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stop() can signal it and its children
    )
    return EmulatorHandle(
        process=process,
        endpoint=f"http://127.0.0.1:{port}",
        project=project,
        log_path=log_path,
        run_dir=run_dir,
        args=args,
        _log_file=log_file,
        _owns_run_dir=owns_run_dir,
    )
