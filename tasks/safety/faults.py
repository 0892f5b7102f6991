"""Fault injection for crash tests and `nightrec drill`.

`kill_if_armed(settings.safety.fault, "mid_scoring")` SIGKILLs the process when the run was
armed with that point (`NIGHTREC_SAFETY__FAULT=mid_scoring`); unset, it does nothing. SIGKILL
and not an exception: the point is to prove that nothing (no `finally`, no rollback by Python)
is needed for the store and the outputs to stay consistent.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import get_args

from tasks.settings import FaultPoint

log = logging.getLogger("nightrec.fault")
FAULT_POINTS: tuple[str, ...] = get_args(FaultPoint)


def kill_if_armed(armed: str | None, point: str) -> None:
    """Kill this process at once when `armed` names `point`."""
    if point not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    if armed != point:
        return
    sys.stderr.write(f"fault injection: SIGKILL at {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_once_if_armed(armed: str | None, point: str, marker: Path) -> None:
    """Kill this process the first time `point` is reached (`marker` remembers it): a worker
    that dies once, so that the drill can show its task is run again."""
    if armed != point or marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    kill_if_armed(armed, point)
