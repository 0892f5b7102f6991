"""Prefect tasks of the ranking stage: make sure a usable model exists, then score."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tasks.baselines.recommenders import EaseFit, repurchase
from tasks.candidates.dp_popular import dp_note, fallback_popular
from tasks.candidates.generate import CandidateReport, write_ease_lists
from tasks.constants import ITEM_ID, REC_SOURCE, SCORE
from tasks.explain.reasons import explain_rows, fallback_sentence
from tasks.features.snapshot import Snapshot
from tasks.progress import stage_task
from tasks.rank import registry
from tasks.rank.dataset import shared_aggregates
from tasks.rank.kinds import SELECTION_KEY, Trained, load_scorer, train_nightly
from tasks.rank.params import TUNED_FROM_KEY, nightly_carried, with_carried
from tasks.rank.promotion import register_and_gate
from tasks.rank.shard_runners import ShardFailed, shard_runner
from tasks.rank.sharded import EASE_FOLDER, ShardJob, ShardResult, clear_caches, write_shared
from tasks.rank.topk import BASELINE_VERSION, MODEL_SOURCE, top_k
from tasks.rank.train import NotEnoughHistory, training_events
from tasks.safety.faults import kill_if_armed
from tasks.settings import Settings
from tasks.shards import CANDIDATE_ROW_BYTES, NETWORK_ROW_BYTES, shard_count
from tasks.validate.run_report import ContractViolation, enforce

log = logging.getLogger("nightrec.rank")


@dataclass(frozen=True)
class ModelChoice:
    version: str | None  # None: no model could be trained, publish the baseline
    retrained: bool
    reason: str
    # Why the run cannot serve a model of its own (training failed, too little history, the
    # gate refused a first model); None when it can.
    problem: str | None = None
    notes: tuple[str, ...] = ()  # for the manifest and report (e.g. a champion retired)
    # How tonight's model kind was chosen (ranker.kind=auto: each kind's validation NDCG, the
    # winner, why; a network skipped or failed); None when nothing was trained.
    selection: dict | None = None


def choose_model(
    settings: Settings, snapshot: Snapshot, retrain: bool | None = None
) -> ModelChoice:
    """Retrain when the newest model before as-of is older than the retrain cadence (or
    when asked); a new model of the configured kind serves only if the promotion gate accepts
    it."""
    models_dir = settings.models_dir
    retired = registry.retired_champion(models_dir)
    if retired is None:
        return _choose_model(settings, snapshot, retrain, False)
    # Trained on data of customers erased since: it never serves; retrain before serving.
    note = f"champion {retired} was trained on erased customers' data: not served"
    choice = _choose_model(settings, snapshot, retrain, True)
    return dataclasses.replace(choice, notes=(*choice.notes, f"{note}; {choice.reason}"))


def _choose_model(
    settings: Settings, snapshot: Snapshot, retrain: bool | None, force_due: bool
) -> ModelChoice:
    models_dir = settings.models_dir
    serving = registry.serving_model(models_dir, snapshot.as_of)
    newest = registry.newest_before(models_dir, snapshot.as_of)
    age_days = (snapshot.as_of - newest.as_of).days if newest else None
    due = force_due or newest is None or age_days >= settings.ranker.retrain_every_days
    if retrain is False or (retrain is None and not due):
        if serving is None:
            return ModelChoice(None, False, "no model: baseline", problem="no model trained yet")
        return ModelChoice(
            serving.version,
            False,
            f"newest model is {age_days} day(s) old",
            selection=serving.meta.get(SELECTION_KEY),
        )
    # The serving champion's tuned parameters (LightGBM's and the network's) carry over to its
    # successors; defaults otherwise.
    carried = nightly_carried(settings, serving.meta if serving else None)
    tuned = with_carried(settings, carried)
    try:
        events = training_events(snapshot.scan_events(), snapshot.as_of, tuned)
        trained = train_nightly(events, snapshot.catalog(), snapshot.as_of, tuned)
        del events
    except NotEnoughHistory as exc:
        log.warning("not retraining: %s", exc)
        if serving is None:
            return ModelChoice(None, False, f"{exc}: baseline", problem=str(exc))
        return ModelChoice(serving.version, False, f"kept {serving.version}: {exc}")
    except Exception as exc:  # a failing ranker must not stop the night: serve what we have
        log.exception("training the ranker failed")
        failure = f"ranker training failed ({type(exc).__name__}: {_first_line(exc)})"
        if serving is None:
            return ModelChoice(None, False, f"{failure}: baseline", problem=failure)
        # The champion still serves, but tonight's retrain did not happen: say so.
        return ModelChoice(
            serving.version,
            False,
            f"{failure}; kept champion {serving.version}",
            problem=failure,
        )
    if carried:
        assert serving is not None
        trained.meta.update({**carried, TUNED_FROM_KEY: serving.version})
    choice = _gated(settings, snapshot, trained)
    selection = trained.meta.get(SELECTION_KEY)
    network = (selection or {}).get("network", {})
    if network.get("status") == "failed":  # LightGBM served, but not the best kind: degraded
        problem = f"auto model kind: {network['why']}; trained lightgbm alone"
        choice = dataclasses.replace(choice, problem=choice.problem or problem)
    return dataclasses.replace(choice, selection=selection)


def _gated(settings: Settings, snapshot: Snapshot, trained: Trained) -> ModelChoice:
    models_dir = settings.models_dir
    gate = register_and_gate(models_dir, trained, snapshot.as_of, settings.ranker.gate_tolerance)
    if gate.same_as_serving:
        return ModelChoice(gate.version, True, "retrained the serving model (same content)")
    if gate.promoted:
        return ModelChoice(gate.version, True, f"promoted: {gate.reason}")
    if gate.champion is None:
        rejected = f"{gate.version} rejected by the gate ({gate.reason})"
        return ModelChoice(None, True, f"{rejected}: baseline", problem=rejected)
    return ModelChoice(
        gate.champion, True, f"{gate.version} rejected ({gate.reason}); kept champion"
    )


@dataclass(frozen=True)
class ScoreOutcome:
    recs_path: Path
    model_version: str  # the model that scored, or BASELINE_VERSION
    model_kind: str | None  # lightgbm | neural | blend; None for the baseline
    fallback: str | None  # why the chosen model was not used, when it was not
    notes: tuple[str, ...] = ()  # candidate sources that served in their bounded form
    shards: int = 0  # shards of customers the model scored in (0: the baseline scored)
    features_path: Path | None = None  # a sample of the scored features (drift check)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def allowed_items(catalog: pl.DataFrame, forbidden: list[str]) -> pl.Series:
    """What a run may recommend: catalog items that are not forbidden."""
    items = catalog.get_column(ITEM_ID)
    return items.filter(~items.is_in(pl.Series(forbidden, dtype=pl.Utf8).implode()))


def _baseline(
    settings: Settings,
    events: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    allowed: pl.Series,
) -> pl.DataFrame:
    """Repurchase baseline padded with the popularity fallback list (exact or DP counts),
    both limited to `allowed` items. The customer's own items only (score > 0): the
    baseline's own popularity padding would be labelled a repurchase and skip the DP
    counts, so the fallback list pads instead (its rows say `popularity_fallback`)."""
    popular = fallback_popular(events, as_of, settings, allowed, allowed)
    baseline = repurchase(events, users, as_of, settings.k + len(settings.safety.forbidden_items))
    baseline = baseline.filter(pl.col(ITEM_ID).is_in(allowed.implode()) & (pl.col(SCORE) > 0))
    return top_k(baseline, users, popular, settings.k).with_columns(
        pl.when(pl.col(REC_SOURCE) == MODEL_SOURCE)
        .then(pl.lit(BASELINE_VERSION))
        .otherwise(pl.col(REC_SOURCE))
        .alias(REC_SOURCE)
    )


def _fallbacks(settings: Settings, snapshot: Snapshot, chosen: str | None) -> list[str]:
    """Models to try, in order: the chosen one, then the champion serving this as_of."""
    order = [chosen] if chosen else []
    try:
        serving = registry.serving_model(settings.models_dir, snapshot.as_of)
    except registry.RegistryError:
        serving = None
    if serving is not None and serving.version not in order:
        order.append(serving.version)
    return order


def scoring_row_bytes(settings: Settings, versions: list[str]) -> int:
    """Bytes per candidate row of the heaviest scorer among the models a pass may try: a
    network's tensors make its shards smaller."""
    kinds = set()
    for version in versions:
        try:
            kinds.add(registry.load(settings.models_dir, version).meta.get("model_kind"))
        except registry.RegistryError:
            continue  # a model that cannot load falls back before any shard
    return NETWORK_ROW_BYTES if kinds & {"neural", "blend"} else CANDIDATE_ROW_BYTES


def _prepare_shards(
    settings: Settings,
    snapshot: Snapshot,
    work_dir: Path,
    candidates: CandidateReport,
    row_bytes: int,
) -> tuple[Path, int, int]:
    """Write the run's shared aggregates once; returns (their folder, customers, shards)."""
    # Item-level aggregates read purchases alone: the shop's views and carts stay on disk.
    purchases, catalog = snapshot.purchases(), snapshot.catalog()
    users = snapshot.users()
    allowed = allowed_items(catalog, settings.safety.forbidden_items)
    shared = shared_aggregates(purchases, catalog, snapshot.as_of, settings.candidates, candidates)
    folder = work_dir / "shared"
    if isinstance(fit := shared.candidates.ease, EaseFit):
        # Scored here, a block of customers at a time, so no shard holds the N x N weights.
        lists = write_ease_lists(
            fit, purchases, users, snapshot.as_of, settings.candidates, folder / EASE_FOLDER
        )
        candidates_part = dataclasses.replace(shared.candidates, ease=lists)
        shared = dataclasses.replace(shared, candidates=candidates_part)
        del fit
    # Ranked over every allowed item first: the filter must not leave fewer than 2k to pad with.
    padding = fallback_popular(
        purchases, snapshot.as_of, settings, catalog.get_column(ITEM_ID), allowed
    )
    write_shared(shared, padding, allowed, folder)
    n_shards = shard_count(
        users.len(), settings.candidates.max_per_user, settings.scale.shard_memory_mib, row_bytes
    )
    return folder, users.len(), n_shards


def _feature_sample(results: list[ShardResult], work_dir: Path) -> Path | None:
    """The shards' samples of the scored features in one file (the drift check's input)."""
    parts = [r.feature_sample for r in results if r.feature_sample is not None]
    if not parts:
        return None
    path = work_dir / "features_sample.parquet"
    pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed").write_parquet(path)
    return path


def _score_in_shards(
    settings: Settings,
    snapshot: Snapshot,
    versions: list[str],
    shared_dir: Path,
    n_shards: int,
    work_dir: Path,
    report: Path,
    failures: list[str],
) -> tuple[list[ShardResult] | None, str, str | None]:
    """(shard results, version, kind) of the first model in `versions` that scores every
    shard; (None, baseline, None) when none does. Each failure is appended to `failures`."""
    with shard_runner(settings) as run_shards:
        for version in versions:
            try:
                record = registry.load(settings.models_dir, version)
                load_scorer(record, settings)  # a damaged model fails here, before any shard
                job = ShardJob(
                    settings,
                    snapshot.events_path,
                    snapshot.catalog_path,
                    snapshot.as_of,
                    shared_dir,
                    n_shards,
                    version,
                    work_dir / "parts" / version,
                )
                results = run_shards(job)
                enforce(report, "features", [r.features for r in results])
                return results, version, record.meta.get("model_kind", "lightgbm")
            except (ContractViolation, ShardFailed):
                raise  # bad features or a lost shard: no other model would fix them
            except Exception as exc:  # whatever broke, the customers still get a list
                log.error("model %s cannot score (%s); falling back", version, _first_line(exc))
                failures.append(f"{version} failed ({type(exc).__name__}: {_first_line(exc)})")
    return None, BASELINE_VERSION, None


def score_users(
    settings: Settings,
    snapshot: Snapshot,
    choice: ModelChoice,
    work_dir: Path,
    report: Path,
) -> ScoreOutcome:
    """Top-K for every known user as of as-of; written to `work_dir/recs.parquet`.

    Customers are scored in shards (`scale.shard_memory_mib`), one after another in this
    process or in parallel on Dask (`shard_runner`). Every shard's feature table
    is checked against its contract (recorded in `report`) before anything is published.
    A model that cannot be loaded or fails to score (a damaged file, a candidate source out of
    memory, anything but bad features) falls back to the champion, then to the repurchase
    baseline; the outcome says which model scored and why it was not the chosen one.
    """
    failures: list[str] = []
    candidates = CandidateReport()
    results: list[ShardResult] | None = None
    used, kind = BASELINE_VERSION, None
    versions, n_shards = _fallbacks(settings, snapshot, choice.version), 0
    if versions:
        try:
            shared_dir, n_users, n_shards = _prepare_shards(
                settings, snapshot, work_dir, candidates, scoring_row_bytes(settings, versions)
            )
            log.info("scoring %s customers in %d shard(s)", f"{n_users:,}", n_shards)
        except Exception as exc:  # a shared aggregate out of memory: no model can score
            log.error("candidate aggregates failed (%s); falling back", _first_line(exc))
            failures.append(
                f"candidate aggregates failed ({type(exc).__name__}: {_first_line(exc)})"
            )
            versions = []
    if versions:
        results, used, kind = _score_in_shards(
            settings, snapshot, versions, shared_dir, n_shards, work_dir, report, failures
        )
    clear_caches()
    path = work_dir / "recs.parquet"
    if results is not None:
        pl.scan_parquet([r.path for r in results if r.path is not None]).sink_parquet(path)
    else:  # the baseline reads no features, so there are none to check
        kill_if_armed(settings.safety.fault, "mid_scoring")
        # Repurchase and popularity read purchases alone.
        purchases, catalog, users = snapshot.purchases(), snapshot.catalog(), snapshot.users()
        allowed = allowed_items(catalog, settings.safety.forbidden_items)
        recs = _baseline(settings, purchases, users, snapshot.as_of, allowed)
        fallback_detail = fallback_sentence(settings.k, False, settings.fallback.dp_epsilon)
        explain_rows(
            recs,
            None,
            None,
            settings.candidates,
            settings.explain,
            fallback_detail,
            BASELINE_VERSION,
        ).write_parquet(path)
    reasons = [*failures]
    if choice.version is None and choice.problem:
        reasons.insert(0, choice.problem)
    fallback = f"{'; '.join(reasons)}: scored with {used}" if reasons else None
    notes = tuple(f"candidates: {note}" for note in candidates.notes.values())
    if (private := dp_note(settings)) is not None:
        notes = (*notes, private)
    if results is None:
        return ScoreOutcome(path, used, kind, fallback, notes)
    return ScoreOutcome(
        path, used, kind, fallback, notes, n_shards, _feature_sample(results, work_dir)
    )


choose_model_task = stage_task("choose-model", choose_model)
score_task = stage_task("score", score_users)
