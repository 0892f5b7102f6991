"""Scoring in shards of customers: the run's aggregates are computed once and written beside
the snapshot; each shard task reads them, its own customers' events from the snapshot's
Parquet, scores and writes its top-K part. A shard task reads only files, never the store, so
it runs the same in the run's process or on a Dask worker of another machine (a shared file
system or object store holding the run's work folder).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from tasks.baselines.recommenders import EaseFit
from tasks.candidates.generate import EaseLists, SharedCandidates
from tasks.constants import ITEM_ID
from tasks.explain.reasons import contribution_model, explain_rows, fallback_sentence
from tasks.features.build import SharedFeatures
from tasks.rank import registry
from tasks.rank.dataset import SharedAggregates, candidate_frame
from tasks.rank.kinds import load_scorer
from tasks.rank.recommend import Scorer, scored_frame
from tasks.rank.topk import BASELINE_VERSION, top_k
from tasks.safety.faults import kill_if_armed, kill_once_if_armed
from tasks.settings import Settings
from tasks.shards import shard_of
from tasks.timeutil import known_users
from tasks.validate.contracts import SuiteReport
from tasks.validate.features import validate_features

log = logging.getLogger("nightrec.progress")

# Where the shared folder keeps EASE's candidates of every customer (write_ease_lists).
EASE_FOLDER = "ease"
_FRAMES = ("popular", "neighbors", "item_features", "category_features", "padding", "allowed")


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of one scoring pass reads (paths only: it travels to workers)."""

    settings: Settings
    events_path: Path
    catalog_path: Path
    as_of: dt.datetime
    shared_dir: Path
    n_shards: int
    version: str
    out_dir: Path

    def part_path(self, shard: int) -> Path:
        return self.out_dir / f"part-{shard:05d}.parquet"


@dataclass(frozen=True)
class ShardResult:
    shard: int
    users: int
    rows: int
    seconds: float
    features: SuiteReport  # the shard's feature contract; a failed one scored nothing
    path: Path | None
    feature_sample: Path | None = None  # the shard's share of the drift check's sample


ShardRunner = Callable[[ShardJob], list[ShardResult]]


def write_shared(
    shared: SharedAggregates, padding: pl.Series, allowed: pl.Series, folder: Path
) -> None:
    """The run's aggregates, the popular items that pad short lists and the items a list may
    hold, as files every shard task reads."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        "popular": shared.candidates.popular,
        "neighbors": shared.candidates.neighbors,
        "item_features": shared.features.items,
        "category_features": shared.features.categories,
        "padding": pl.DataFrame({ITEM_ID: padding}),
        "allowed": pl.DataFrame({ITEM_ID: allowed}),
    }
    for name, frame in frames.items():
        frame.write_parquet(folder / f"{name}.parquet")
    ease = shared.candidates.ease
    if isinstance(ease, EaseFit):
        raise TypeError("shards read EASE's lists (write_ease_lists), never its N x N weights")
    if ease is not None and ease.folder != folder / EASE_FOLDER:
        raise ValueError(f"EASE's lists must be written under {folder / EASE_FOLDER}")
    (folder / "as_of.json").write_text(json.dumps({"as_of": shared.as_of.isoformat()}))


@lru_cache(maxsize=2)
def _read_shared(folder: str) -> tuple[SharedAggregates, pl.Series, pl.Series]:
    """Read once per process: every shard of a pass shares them."""
    path = Path(folder)
    frames = {name: pl.read_parquet(path / f"{name}.parquet") for name in _FRAMES}
    ease = EaseLists(path / EASE_FOLDER) if (path / EASE_FOLDER).is_dir() else None
    as_of = dt.datetime.fromisoformat(json.loads((path / "as_of.json").read_text())["as_of"])
    shared = SharedAggregates(
        as_of,
        SharedCandidates(frames["popular"], frames["neighbors"], ease),
        SharedFeatures(frames["item_features"], frames["category_features"]),
    )
    return shared, frames["padding"].get_column(ITEM_ID), frames["allowed"].get_column(ITEM_ID)


def _scorer(settings: Settings, version: str) -> Scorer:
    return _cached_scorer(str(settings.models_dir), version, settings.neural.model_dump_json())


@lru_cache(maxsize=2)
def _cached_scorer(models_dir: str, version: str, neural_json: str) -> Scorer:
    """Loaded once per process and pass (a registered version never changes)."""
    settings = Settings(home=Path(models_dir).parent, neural=json.loads(neural_json))
    return load_scorer(registry.load(Path(models_dir), version), settings)


def clear_caches() -> None:
    """Let the pass's aggregates and model go once the run is done with them."""
    _read_shared.cache_clear()
    _cached_scorer.cache_clear()


def shard_events(events_path: Path, shard: int, n_shards: int) -> pl.DataFrame:
    """The shard's customers' events, read from the snapshot's Parquet (predicate pushed
    down, so the other customers' rows are never held)."""
    scan = pl.scan_parquet(events_path)
    if n_shards == 1:
        return scan.collect()
    return scan.filter(shard_of(n_shards) == shard).collect()


def score_shard(job: ShardJob, shard: int) -> ShardResult:
    """Top-K of one shard's customers, written to `job.part_path(shard)`."""
    started = time.monotonic()
    settings = job.settings
    shared, padding, allowed = _read_shared(str(job.shared_dir))
    events = shard_events(job.events_path, shard, job.n_shards)
    users = known_users(events, job.as_of)
    catalog = pl.read_parquet(job.catalog_path)
    frame = candidate_frame(events, catalog, users, job.as_of, settings.candidates, shared=shared)
    kill_if_armed(settings.safety.fault, "mid_scoring")
    kill_once_if_armed(settings.safety.fault, "shard_worker_once", job.out_dir / ".killed-once")
    features = validate_features(frame)
    if not features.success:
        return ShardResult(shard, users.len(), 0, time.monotonic() - started, features, None)
    sample = _write_feature_sample(frame, job, shard)
    frame = frame.filter(pl.col(ITEM_ID).is_in(allowed.implode()))
    scorer = _scorer(settings, job.version)
    recs = top_k(scored_frame(scorer, frame, events, job.as_of), users, padding, settings.k)
    recs = explain_rows(
        recs,
        frame,
        contribution_model(scorer),
        settings.candidates,
        settings.explain,
        fallback_sentence(settings.k, True, settings.fallback.dp_epsilon),
        BASELINE_VERSION,
    )
    path = job.part_path(shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    recs.write_parquet(path)
    seconds = time.monotonic() - started
    return ShardResult(shard, users.len(), recs.height, seconds, features, path, sample)


def _write_feature_sample(frame: pl.DataFrame, job: ShardJob, shard: int) -> Path | None:
    """The shard's share of the scored features the monitor's drift check reads."""
    monitor = job.settings.monitor
    if not monitor.enabled or frame.height == 0:
        return None
    share = -(-monitor.feature_sample_rows // job.n_shards)  # ceil
    path = job.out_dir / f"features-{shard:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.sample(min(share, frame.height), seed=job.settings.seed).write_parquet(path)
    return path


def log_shard(result: ShardResult, n_shards: int) -> None:
    log.info(
        "shard %d/%d: %s customers, %s rows in %.1f s",
        result.shard + 1,
        n_shards,
        f"{result.users:,}",
        f"{result.rows:,}",
        result.seconds,
    )


def run_in_process(job: ShardJob) -> list[ShardResult]:
    """One shard after another in this process: memory of one shard at a time."""
    results = []
    for shard in range(job.n_shards):
        result = score_shard(job, shard)
        log_shard(result, job.n_shards)
        results.append(result)
    return results
