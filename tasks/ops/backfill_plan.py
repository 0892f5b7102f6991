"""Which dates of a backfill may run side by side.

A date that retrains registers the model that later dates serve, so it runs alone and before
them; the dates between two retraining dates only read models and may run concurrently. The
prediction follows `choose_model`: a run retrains when the newest model before its as-of is
`retrain_every_days` old or older (a retrain that fails only makes the plan more careful).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from tasks.timeutil import run_as_of


def plan_waves(
    days: list[dt.date],
    newest_model_as_of: Callable[[dt.datetime], dt.datetime | None],
    retrain_every_days: int,
) -> list[list[dt.date]]:
    """Dates in order, grouped into waves; a wave starts only after the previous one ended.

    `newest_model_as_of(as_of)` is as-of of the newest registered model before `as_of`.
    """
    waves: list[list[dt.date]] = []
    scoring_only: list[dt.date] = []
    planned: dt.datetime | None = None  # as_of of the newest retrain this plan foresees
    for day in sorted(days):
        as_of = run_as_of(day)
        registered = newest_model_as_of(as_of)
        newest = max((c for c in (registered, planned) if c is not None), default=None)
        if newest is None or (as_of - newest).days >= retrain_every_days:
            if scoring_only:
                waves.append(scoring_only)
                scoring_only = []
            waves.append([day])
            planned = as_of
        else:
            scoring_only.append(day)
    if scoring_only:
        waves.append(scoring_only)
    return waves
