"""Progress of long work: one line when a stage starts and one with its elapsed time when it
ends, on the `nightrec` logger (the terminal, and the Prefect UI inside a flow run)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, task

log = logging.getLogger("nightrec.progress")
F = TypeVar("F", bound=Callable[..., Any])


def timed(name: str) -> Callable[[F], F]:
    """Log `name: started` and `name: done in S s` (or `failed after S s`) around a call."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            log.info("%s: started", name)
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                log.info("%s: failed after %.1f s", name, time.perf_counter() - started)
                raise
            log.info("%s: done in %.1f s", name, time.perf_counter() - started)
            return result

        return run  # type: ignore[return-value]

    return wrap


def stage_task(name: str, fn: Callable[..., Any]) -> Task:
    """A Prefect task named `name` whose start and elapsed time are logged."""
    return task(name=name)(timed(name)(fn))
