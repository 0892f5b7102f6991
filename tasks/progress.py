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


def log_to_prefect() -> None:
    """Send nightrec's INFO lines to the current flow run's logs (the Prefect UI), whatever
    process runs the flow: a served run's subprocess inherits Prefect's root level (WARNING)
    and gets the API handler only if PREFECT_LOGGING_EXTRA_LOGGERS was set before Prefect
    was imported."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("nightrec")
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())
