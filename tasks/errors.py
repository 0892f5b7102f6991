"""The errors a user can fix: one base with a hint, so the CLI prints two lines, no trace.

Ground floor: imports nothing of nightrec, so the CLI's error boundary stays cheap to load.
"""

from __future__ import annotations


class NightrecError(Exception):
    """A problem the user can fix. `hint` says how; a subclass sets its default."""

    hint = "see `nightrec COMMAND --help`"
    exit_code = 2

    def __init__(self, message: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class DegradedRun(NightrecError):
    """The run published, but not the model's lists for everyone (a fallback served, a source
    degraded): never exit 0 unless `allow_degraded` is set."""

    hint = (
        "read the run report; set NIGHTREC_ALLOW_DEGRADED=true (or --allow-degraded) "
        "to accept such runs with exit 0"
    )
    exit_code = 3

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result  # the manifest (run) or rows (backfill) that were published


class PrefectStartTimeout(NightrecError):
    """Prefect's ephemeral API server did not answer in time."""

    hint = (
        "the machine is busy: raise NIGHTREC_OPS__PREFECT_START_TIMEOUT_S, or start "
        "`nightrec server` and set PREFECT_API_URL"
    )


class HealthCheckFailed(NightrecError):
    """A run health check (tasks/monitor) passed its `fail` threshold: nothing was published
    (the previous partition stays) and the CLI exits 4."""

    hint = (
        "see `nightrec monitor` and the check's detail; fix the input and rerun the day, or "
        "raise NIGHTREC_MONITOR__CHECKS__<NAME>__FAIL if the change is real"
    )
    exit_code = 4

    def __init__(self, message: str, health: object = None) -> None:
        super().__init__(message)
        self.health = health  # the run's health summary (what the manifest would have held)
