"""Private files: what the product writes to disk (the DuckDB warehouse, its WAL and spill directory, the
simulator's state, the holder note) is readable by its owner only.

The warehouse holds personal data (emails, names, outcomes); on a shared machine or a runner with other
users, a file created 0644 under the usual umask 022 is readable by all of them. So:
- files the product writes itself are created 0600 (`write_private`: a temporary file opened with
  O_CREAT|O_EXCL and mode 0600, then `os.replace`, so a reader sees the old or the new file, whole);
- files a library creates behind our back (DuckDB creates the WAL at the first write and again after
  each checkpoint, spill files when memory runs short) are covered by a private umask (0o077): every
  command sets it for its process (`private_process`), and an open DuckDB warehouse holds it while open
  (`hold_private_umask`), also when the library is used from Python without a command;
- directories the product creates are 0700 (`private_dir`); an existing directory is tightened only when
  it is the product's own (`data/` of the checkout, git-ignored): a user's home or /tmp is theirs;
- a file left too open by an older version is tightened once (`tighten`), with one warning line.
Modes are POSIX; on Windows (no umask, no group bits) these calls change nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("coldsync.files")

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
#: The product's own data directory (git-ignored): the default home of the DuckDB file.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

_umask_lock = threading.Lock()
_umask_holders = 0
_umask_before = 0


def private_process() -> None:
    """Make every file this process creates from now on private (umask |= 0o077): for command entry points.

    Bits of a stricter umask already set are kept (the result is the union); a warehouse closed later
    restores this umask, not the one from before."""
    global _umask_before
    with _umask_lock:
        current = os.umask(PRIVATE_UMASK)
        os.umask(current | PRIVATE_UMASK)
        _umask_before |= PRIVATE_UMASK


@contextlib.contextmanager
def hold_private_umask() -> Iterator[None]:
    """Within: the process umask includes 0o077 (the umask is process-wide, so also for other threads).

    Nested and concurrent holders are counted; the umask seen before the first holder is restored when
    the last one leaves (a stricter umask set meanwhile by `private_process` is kept)."""
    acquire_private_umask()
    try:
        yield
    finally:
        release_private_umask()


def acquire_private_umask() -> None:
    """Start holding the private umask (pair with `release_private_umask`; see `hold_private_umask`)."""
    global _umask_holders, _umask_before
    with _umask_lock:
        current = os.umask(PRIVATE_UMASK)
        if _umask_holders == 0:
            _umask_before = current
        os.umask(current | PRIVATE_UMASK)
        _umask_holders += 1


def release_private_umask() -> None:
    """Stop holding it; the last holder restores the umask from before the first (with `private_process`'s
    bits if it was called meanwhile)."""
    global _umask_holders
    with _umask_lock:
        if _umask_holders == 0:
            return
        _umask_holders -= 1
        if _umask_holders == 0:
            os.umask(_umask_before)


def is_too_open(mode: int, private: int) -> bool:
    """True if `mode` grants anything beyond `private` (e.g. group or other bits on a 0600 file)."""
    return bool(stat.S_IMODE(mode) & ~private & 0o777)


def tighten(path: Path, private: int = FILE_MODE) -> bool:
    """chmod `path` to `private` (0600 for a file) if it exists, is ours and grants more; True if it changed.

    One warning line names the file and both modes: a file from an older version (created under umask 022)
    is tightened once, then stays so. A file of another user, or a chmod refused, is left alone with a
    warning (the message says what to run)."""
    try:
        info = path.stat()
    except OSError:
        return False
    if not is_too_open(info.st_mode, private):
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        log.warning("%s is readable by other users (mode %o) and belongs to another user: run chmod %o %s",
                    path, stat.S_IMODE(info.st_mode), private, path)
        return False
    try:
        os.chmod(path, private)
    except OSError as exc:
        log.warning("%s is readable by other users (mode %o) and could not be made private (%s): run chmod %o %s",
                    path, stat.S_IMODE(info.st_mode), exc.strerror, private, path)
        return False
    log.warning("made %s private: mode %o -> %o (it was readable by other users; older versions created it so)",
                path, stat.S_IMODE(info.st_mode), private)
    return True


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700; return it.

    Every directory created here is 0700 whatever the umask. An existing directory is tightened to 0700
    only if it is the product's data directory (`DATA_DIR`): any other one belongs to the user. Raises
    OSError when the directory cannot be created."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process: judged below like any existing one
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; chmod is not
    if _is_data_dir(path):
        tighten(path, DIR_MODE)
    return path


def _is_data_dir(path: Path) -> bool:
    try:
        return path.resolve() == DATA_DIR.resolve()
    except OSError:
        return False


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600 whatever the umask (temporary file beside it, fsync,
    os.replace). Raises OSError; the temporary file is removed on failure."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # left by a killed process that had this pid
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)  # O_CREAT's mode is filtered by the umask too
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
