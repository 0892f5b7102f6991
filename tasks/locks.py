"""Inter-process locks under NIGHTREC_HOME: one run per date, one writer on the store.

They are `flock` locks on small files: the kernel drops them when the holding process dies
(kill -9 included), so a crash never leaves a stale lock behind. The holder writes who it is
into the file so a refused caller can say which process it waited for.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tasks.errors import NightrecError

POLL_SECONDS = 0.2


class LockBusy(NightrecError, RuntimeError):
    """Another process holds the lock; the message names it."""

    hint = "wait for the other nightrec process to finish"


class RunInProgress(LockBusy):
    """A nightly run for the same date is already running."""

    hint = "wait for that run to finish; its output is the one that lands"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def file_lock(
    path: Path, *, shared: bool = False, timeout_s: float = 0.0, what: str = "lock"
) -> Iterator[None]:
    """Hold `path` locked (exclusive, or shared among readers) for the block.

    Waits up to `timeout_s` seconds (0: try once) and raises LockBusy after that.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(f"{what} is held by {_holder(path)}") from None
                time.sleep(POLL_SECONDS)
        if not shared:
            since = dt.datetime.now().isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {since}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def holder_alive(path: Path) -> bool:
    """Whether the process the lock file last named is still alive (this host only).

    A probe that does not take the lock: taking it, even briefly, could refuse a run that
    starts at that moment.
    """
    try:
        pid = int(path.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def run_date_lock_path(home: Path, run_date: dt.date) -> Path:
    return home / "locks" / f"run_date={run_date.isoformat()}.lock"


@contextmanager
def run_date_lock(home: Path, run_date: dt.date) -> Iterator[None]:
    """At most one nightly run per date at a time: a second one is refused at once."""
    path = run_date_lock_path(home, run_date)
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, what=f"the run for {run_date.isoformat()}"))
        except LockBusy:
            raise RunInProgress(
                f"a run for {run_date.isoformat()} is already in progress ({_holder(path)}); "
                "this one writes nothing"
            ) from None
        yield


def store_lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")
