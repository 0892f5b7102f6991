"""Where the shard tasks of a scoring pass run.

- No Dask configured: one shard after another in the run's process, each a Prefect task run
  of the flow (its progress in the UI), so memory holds one shard at a time.
- `dask.workers = N`: a `distributed.LocalCluster` of N worker processes, through Prefect's
  `DaskTaskRunner`; `dask.address`: an existing scheduler (many machines). Shards run in
  parallel; a shard whose worker died is run again by Dask on another worker (up to
  `dask.shard_retries` times), one that raised is retried by Prefect as often; when retries
  run out the run fails naming the shard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.context import FlowRunContext

from tasks.errors import NightrecError
from tasks.rank.sharded import ShardJob, ShardResult, ShardRunner, log_shard, run_in_process
from tasks.rank.sharded import score_shard as _score_shard
from tasks.settings import DaskSettings, Settings

log = logging.getLogger("nightrec.progress")

score_shard_task = task(name="score-shard", task_run_name="score-shard-{shard}")(_score_shard)


class ShardFailed(NightrecError, RuntimeError):
    """A shard task could not finish: its Dask worker died more often than retries allow."""

    hint = "see the Dask workers' logs; rerun the day (the published output is unchanged)"


def _worker_lost(exc: BaseException) -> bool:
    """Dask's own errors (a killed worker, a lost connection), not the task's."""
    return type(exc).__module__.split(".")[0] == "distributed"


def _collect(futures: list[Any], job: ShardJob, retries: int) -> list[ShardResult]:
    results = []
    for shard, future in enumerate(futures):
        try:
            result = future.result()
        except Exception as exc:
            if _worker_lost(exc):
                raise ShardFailed(
                    f"shard {shard + 1}/{job.n_shards} failed: its worker died "
                    f"{retries + 1} time(s) ({type(exc).__name__}: {exc})"
                ) from exc
            raise
        log_shard(result, job.n_shards)
        results.append(result)
    return results


def _one_after_another(retries: int) -> ShardRunner:
    shard_task = score_shard_task.with_options(retries=retries)

    def run(job: ShardJob) -> list[ShardResult]:
        return [
            _collect([shard_task.submit(job, shard)], job, retries)[0]
            for shard in range(job.n_shards)
        ]

    return run


def _dask_task_runner(cfg: DaskSettings) -> Any:
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.workers,
            "threads_per_worker": cfg.threads_per_worker,
            "processes": True,
            "dashboard_address": ":0",
        }
    )


@contextmanager
def shard_runner(settings: Settings) -> Iterator[ShardRunner]:
    """The runner of this run's shard tasks (see the module's docstring)."""
    cfg = settings.dask
    if not cfg.enabled:
        in_flow = FlowRunContext.get() is not None
        yield _one_after_another(cfg.shard_retries) if in_flow else run_in_process
        return
    import dask
    import distributed  # noqa: F401  (loads its config defaults, which we then set)

    shard_task = score_shard_task.with_options(retries=cfg.shard_retries)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": cfg.shard_retries}),
        _dask_task_runner(cfg) as runner,
    ):
        client = runner.client
        where = cfg.address or f"a local cluster of {cfg.workers} worker process(es)"
        log.info("shard tasks run on Dask: %s; dashboard %s", where, client.dashboard_link)

        def run(job: ShardJob) -> list[ShardResult]:
            futures = [
                runner.submit(shard_task, {"job": job, "shard": shard})
                for shard in range(job.n_shards)
            ]
            return _collect(futures, job, cfg.shard_retries)

        yield run
