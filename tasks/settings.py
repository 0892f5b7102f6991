"""The one typed settings object, layered: defaults < config file < environment variables.

The config file is `nightrec.yaml` in the working directory, or the file named by
`NIGHTREC_CONFIG`. Environment variables use the `NIGHTREC_` prefix and `__` for nesting,
e.g. `NIGHTREC_HOME=/data/nightrec`, `NIGHTREC_RANKER__NUM_LEAVES=31`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tasks.constants import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_HORIZON_DAYS,
    DEFAULT_K,
    ITEM_BUYER_WINDOWS_DAYS,
)


class CandidateSettings(BaseModel):
    """How many candidates each retrieval source contributes per customer."""

    history_per_user: int = Field(
        1000, ge=1, description="cap on own items; high enough to keep the full history"
    )
    history_tau_days: float = Field(90.0, gt=0)
    copurchase_per_user: int = Field(50, ge=0)
    copurchase_days: int = Field(180, ge=1)
    copurchase_neighbors: int = Field(30, ge=1)
    copurchase_max_basket: int = Field(40, ge=2)
    copurchase_recent_items: int = Field(20, ge=1)
    ease_per_user: int = Field(150, ge=0)
    ease_lambda: float = Field(200.0, gt=0)
    ease_memory_mib: int = Field(
        512,
        ge=1,
        description=(
            "memory EASE's dense item x item matrices may take (about 3 x N^2 float64); "
            "it caps N, the items EASE works on: 512 MiB admits 4,729 items (Online Retail's "
            "3.7k whole); time grows as N^3"
        ),
    )
    ease_max_items: int = Field(
        0, ge=0, description="a further cap on EASE's items (0: only the memory budget caps)"
    )
    ease_select_days: int = Field(
        90,
        ge=1,
        description="when EASE is capped, it keeps the items with most distinct buyers here",
    )
    copurchase_max_pairs: int = Field(
        5_000_000,
        ge=1,
        description="basket pairs materialised at once by the co-purchase self-join",
    )
    popular_per_user: int = Field(30, ge=1)
    popular_days: int = Field(30, ge=1)
    max_per_user: int = Field(150, ge=1, description="merged candidates kept per customer")
    rrf_k: float = Field(10.0, ge=0, description="reciprocal-rank fusion offset")
    merge_weight_hist: float = Field(2.0, ge=0)
    merge_weight_covis: float = Field(0.3, ge=0)
    merge_weight_ease: float = Field(1.0, ge=0)
    merge_weight_pop: float = Field(0.2, ge=0)

    def merge_weights(self) -> dict[str, float]:
        """Weight of each source in the merged order, by source name."""
        return {
            "hist": self.merge_weight_hist,
            "covis": self.merge_weight_covis,
            "ease": self.merge_weight_ease,
            "pop": self.merge_weight_pop,
        }


class RankerSettings(BaseModel):
    """LightGBM lambdarank training: rolling windows and booster parameters."""

    n_windows: int = Field(4, ge=2, description="as-of windows; the newest validates")
    window_step_days: int = Field(14, ge=1)
    retrain_every_days: int = Field(7, ge=1)
    gate_tolerance: float = Field(
        0.05, ge=0, description="how much lower a challenger's lift may be and still replace"
    )
    num_boost_round: int = Field(300, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    learning_rate: float = Field(0.03, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambdarank_truncation_level: int = Field(20, ge=1)
    num_threads: int = Field(0, ge=0, description="0 = LightGBM's default (all cores)")
    kind: str = Field(
        "auto",
        description="model kind trained nightly (tasks/rank/kinds: lightgbm, neural, blend); "
        "auto = train LightGBM, and the network and the blend when the network's estimated "
        "training time fits neural.auto_budget_s, then keep the kind with the best "
        "validation NDCG (on CPU as on GPU)",
    )
    auto_min_gain: float = Field(
        0.0,
        ge=0,
        description="auto: another kind replaces LightGBM only when its validation NDCG@K is "
        "more than this above LightGBM's",
    )


class NeuralSettings(BaseModel):
    """The PyTorch list ranker (tasks/rank/neural) and its blend with LightGBM."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA if present")
    num_threads: int = Field(
        0, ge=0, description="torch CPU threads while training/scoring; 0 = the cores available"
    )
    auto_budget_s: float = Field(
        300.0,
        gt=0,
        description="ranker.kind=auto trains the network (and the blend) only when its "
        "estimated training time (every epoch it may run, early-stopping run and refit) "
        "fits this many seconds; otherwise LightGBM alone, and the report says why",
    )
    auto_memory_mib: int = Field(
        3072,
        ge=1,
        description="ranker.kind=auto also skips the network when the training process's "
        "memory in use plus twice its tensors' estimated size (each window's tensors and "
        "their concatenations live at once) would pass this many MiB",
    )
    item_dim: int = Field(32, ge=4)
    user_dim: int = Field(8, ge=2)
    user_buckets: int = Field(4096, ge=1, description="hashed customer embedding rows")
    hidden: int = Field(64, ge=8)
    seq_len: int = Field(20, ge=1, description="recent purchased items the encoder attends over")
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_lists: int = Field(64, ge=1, description="customer lists per batch")
    train_list_len: int = Field(
        80,
        ge=0,
        description="training lists keep their best-merged candidates only (0 = all); "
        "scoring always ranks the whole list",
    )
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    max_epochs: int = Field(10, ge=1)
    patience: int = Field(2, ge=1, description="epochs without a better validation NDCG@10")
    refit: bool = Field(True, description="refit on the newest windows for the best epochs")
    quantize: bool = Field(False, description="score with int8 dynamic quantization (CPU)")
    blend_grid: int = Field(10, ge=1, description="blend weights tried: 0, 1/n, ..., 1")


class OpsSettings(BaseModel):
    """The Prefect server, the deployments' schedules and backfills through deployments."""

    server_host: str = Field("127.0.0.1", description="`nightrec server` binds here only")
    server_port: int = Field(4200, ge=1, le=65535)
    timezone: str = Field("UTC", description="IANA zone of the schedules, e.g. Europe/London")
    nightly_cron: str = Field("0 2 * * *", description="when the nightly run starts")
    tuning_cron: str = Field("0 4 * * 0", description="when the weekly tuning study starts")
    tuning_trials: int = Field(30, ge=1, description="trials of the weekly study")
    tuning_registers_best: bool = Field(
        True, description="the weekly study registers its best trial and gates it"
    )
    serve_limit: int = Field(4, ge=1, description="flow runs `nightrec serve` runs at once")
    backfill_concurrency: int = Field(
        1, ge=1, description="dates a backfill through the deployment runs at once"
    )
    prefect_start_timeout_s: int = Field(
        180,
        ge=1,
        description="how long a command waits for Prefect's ephemeral API server to start "
        "(Prefect's own default, 20 s, is too short on a busy machine)",
    )
    orphan_after_s: float = Field(
        60.0,
        gt=0,
        description="a RUNNING flow run whose process is gone this long is marked Crashed",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from None
        return value

    @property
    def api_url(self) -> str:
        return f"http://{self.server_host}:{self.server_port}/api"


FaultPoint = Literal[
    "mid_ingest",
    "before_ingest_swap",
    "mid_ingest_swap",
    "after_ingest",
    "mid_scoring",
    "shard_worker_once",
    "mid_publish",
    "mid_swap",
]


class SafetySettings(BaseModel):
    """Contracts at the run's boundaries, streaming limits and the crash-drill hook."""

    max_input_age_days: int = Field(
        2,
        ge=0,
        description="a run fails when its newest event is more than this many days before "
        "the run date (a feed that stopped)",
    )
    allow_stale_input: bool = Field(
        False, description="publish on a stale input anyway (recorded in manifest and report)"
    )
    forbidden_items: list[str] = Field(
        default_factory=list, description="items the published top-K must never contain"
    )
    chunk_bytes: int = Field(
        DEFAULT_CHUNK_BYTES,
        ge=1024,
        description="landing files are read in chunks of about this size; the peak memory of "
        "ingestion grows with it, not with the file",
    )
    ingest_memory_mib: int = Field(
        256,
        ge=64,
        description="DuckDB memory cap while ingesting: bounds the day's swap transaction "
        "(its buffer pool evicts or spills to disk beyond)",
    )
    fault: FaultPoint | None = Field(
        None, description="drills and tests only: SIGKILL the run at this point"
    )


class TuneSettings(BaseModel):
    """Hyperparameter tuning (`nightrec tune`): validation folds, parallelism, pruning."""

    validation_folds: int = Field(
        4,
        ge=1,
        description="nightly retrains a trial replays, one window step apart (newest first); "
        "each scores the protocol NDCG@K on a horizon no fit saw",
    )
    parallel: int = Field(2, ge=1, description="trials run at once by the flow's task runner")
    threads_per_trial: int = Field(
        0, ge=0, description="LightGBM threads per trial; 0 = cores / parallel"
    )
    pruner: Literal["median", "none"] = Field(
        "median", description="stop a Bayesian trial early when its first folds lag the median"
    )
    prune_startup_trials: int = Field(5, ge=0)
    prune_warmup_epochs: int = Field(
        2,
        ge=0,
        description="epochs of each fold a network trains before the pruner may stop it "
        "(neural, blend): first epochs say little about where a network ends",
    )
    enqueue_defaults: bool = Field(
        True, description="a Bayesian study's first trial is the default parameters"
    )
    nightly_uses_champion_params: bool = Field(
        True, description="a nightly retrain uses the tuned parameters of the champion"
    )


class ScaleSettings(BaseModel):
    """How per-customer work is cut so that memory follows a budget, not the shop."""

    shard_memory_mib: int = Field(
        1024,
        ge=1,
        description="memory one shard of customers' candidates, features and scores may take; "
        "the run cuts its customers into as many shards as that needs",
    )
    max_train_lists: int = Field(
        20_000,
        ge=100,
        description="most customer lists (customer x window) a retrain learns from: each window "
        "keeps a hash sample of its customers beyond its share, so training memory and time "
        "stop growing with the shop",
    )
    snapshot_memory_mib: int = Field(
        256,
        ge=64,
        description="DuckDB memory cap while it writes the run's snapshot to Parquet (it spills "
        "to disk beyond, so the snapshot's memory does not grow with the shop)",
    )


class DaskSettings(BaseModel):
    """Where shard tasks run: in the run's own process (default), on a local Dask cluster of
    `workers` processes, or on an existing Dask scheduler at `address`."""

    workers: int = Field(0, ge=0, description="local Dask worker processes; 0 = no Dask")
    threads_per_worker: int = Field(1, ge=1)
    address: str | None = Field(
        None, description="an existing Dask scheduler (tcp://host:8786); overrides workers"
    )
    shard_retries: int = Field(
        2,
        ge=0,
        description="times a shard task is retried (a worker died, say) before the run fails",
    )

    @property
    def enabled(self) -> bool:
        return self.address is not None or self.workers > 0


class PrivacySettings(BaseModel):
    """Customer privacy: erasure, retention and pseudonymous ids (README, "Privacy")."""

    key: SecretStr | None = Field(
        None,
        description="HMAC key of pseudonyms and of the erasure log's hashes "
        "(NIGHTREC_PRIVACY__KEY); without it, erasure uses a key generated once into "
        "NIGHTREC_HOME/privacy.key (0600); pseudonymize needs it set",
    )
    pseudonymize: bool = Field(
        False,
        description="replace customer ids by HMAC-SHA256(key, id) at ingestion, so the store, "
        "caches, models and published rows never hold the shop's ids",
    )
    retention_days: int | None = Field(
        None,
        ge=1,
        description="the nightly run drops events and quarantined rows older than this many "
        "days before its as-of (None: keep all); must cover the longest look-back",
    )


class ExplainSettings(BaseModel):
    """Why each published row was recommended (tasks/explain)."""

    enabled: bool = Field(
        True,
        description="compute the model's feature contributions (LightGBM pred_contrib) of the "
        "published rows; reasons and details are set either way",
    )
    top_features: int = Field(
        3, ge=1, le=10, description="feature contributions kept per row (reason_features)"
    )
    method: Literal["path", "shap"] = Field(
        "path",
        description="path: each split on a row's path in every tree credits its feature with "
        "the change of the expected score (exact sum, as fast as scoring); shap: LightGBM "
        "pred_contrib (Shapley values; on Online Retail several times a whole scoring day, "
        "benchmarks/results/explain_cost.md)",
    )


class FallbackSettings(BaseModel):
    """The popularity list that pads short lists and serves when no model can."""

    dp_epsilon: float | None = Field(
        None,
        gt=0,
        description="count the popularity fallback's buyers with an epsilon-differentially "
        "private mechanism (two-sided geometric noise); None = exact counts",
    )
    dp_max_items_per_user: int = Field(
        5,
        ge=1,
        description="with dp_epsilon: each customer counts for at most this many items (their "
        "most recently bought), which bounds the sensitivity of the counts; 5 kept the most "
        "NDCG on Online Retail at epsilon 1 (benchmarks/results/dp_fallback.md)",
    )
    dp_seed: int | None = Field(
        None,
        description="with dp_epsilon: seed of the noise, mixed with the run's as-of day "
        "(None = settings.seed); whoever knows it can remove the noise, keep it secret",
    )


class UpperBound(BaseModel):
    """Thresholds of a check that alarms when its measure rises above them (None: never)."""

    warn: float | None = Field(None, ge=0)
    fail: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UpperBound:
        if self.warn is not None and self.fail is not None and self.fail < self.warn:
            raise ValueError(f"fail ({self.fail}) is below warn ({self.warn})")
        return self


class LowerBound(BaseModel):
    """Thresholds of a check that alarms when its measure falls below them (None: never)."""

    warn: float | None = Field(None, ge=0)
    fail: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> LowerBound:
        if self.warn is not None and self.fail is not None and self.fail > self.warn:
            raise ValueError(f"fail ({self.fail}) is above warn ({self.warn})")
        return self


class FoldBound(BaseModel):
    """Thresholds of a ratio that alarms when it moves this many times up or down (a fold of
    2 alarms below 0.5 and above 2)."""

    warn: float | None = Field(None, ge=1)
    fail: float | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> FoldBound:
        if self.warn is not None and self.fail is not None and self.fail < self.warn:
            raise ValueError(f"fail ({self.fail}) is below warn ({self.warn})")
        return self


B = TypeVar("B", UpperBound, LowerBound, FoldBound)


def _bound(
    base: type[B], name: str, warn: float | None = None, fail: float | None = None
) -> type[B]:
    """A bound whose defaults are this check's: an override of one level (an env variable
    such as NIGHTREC_MONITOR__CHECKS__VOLUME__FAIL) keeps the other level's default."""
    low = 1 if base is FoldBound else 0
    return create_model(
        name,
        __base__=base,
        warn=(float | None, Field(warn, ge=low)),
        fail=(float | None, Field(fail, ge=low)),
    )


VolumeBound = _bound(FoldBound, "VolumeBound", warn=1.75, fail=4.0)
DuplicatesBound = _bound(UpperBound, "DuplicatesBound", warn=0.05, fail=0.3)
NewCustomersBound = _bound(UpperBound, "NewCustomersBound", warn=0.6)
NewItemsBound = _bound(UpperBound, "NewItemsBound", warn=0.6)
QuarantineBound = _bound(UpperBound, "QuarantineBound", warn=0.02)
InputDriftBound = _bound(UpperBound, "InputDriftBound", warn=0.5, fail=3.0)
FeatureDriftBound = _bound(UpperBound, "FeatureDriftBound", warn=0.5)
ScoreTiesBound = _bound(UpperBound, "ScoreTiesBound", warn=0.2, fail=0.5)
FallbackBound = _bound(UpperBound, "FallbackBound", warn=0.25)
CoverageBound = _bound(LowerBound, "CoverageBound", warn=0.5)
DiversityBound = _bound(LowerBound, "DiversityBound", warn=0.5)
NoveltyBound = _bound(LowerBound, "NoveltyBound", warn=0.7)
OverlapBound = _bound(LowerBound, "OverlapBound")
ModelAgeBound = _bound(UpperBound, "ModelAgeBound", warn=1.0)
RollingNdcgBound = _bound(LowerBound, "RollingNdcgBound", warn=0.8)
ModelValidationBound = _bound(LowerBound, "ModelValidationBound")


class MonitorChecks(BaseModel):
    """Per check: `warn` publishes and says so (manifest, report, `nightrec monitor`); `fail`
    stops the run before the swap (the previous partition stays) and exits 4. A check whose
    measure passes neither is ok; None turns a level off. README, "Run health", says what
    each measure is."""

    volume: VolumeBound = VolumeBound()
    duplicates: DuplicatesBound = DuplicatesBound()
    new_customers: NewCustomersBound = NewCustomersBound()
    new_items: NewItemsBound = NewItemsBound()
    quarantine: QuarantineBound = QuarantineBound()
    input_drift: InputDriftBound = InputDriftBound()
    feature_drift: FeatureDriftBound = FeatureDriftBound()
    score_ties: ScoreTiesBound = ScoreTiesBound()
    fallback: FallbackBound = FallbackBound()
    coverage: CoverageBound = CoverageBound()
    diversity: DiversityBound = DiversityBound()
    novelty: NoveltyBound = NoveltyBound()
    overlap: OverlapBound = OverlapBound()
    model_age: ModelAgeBound = ModelAgeBound()
    rolling_ndcg: RollingNdcgBound = RollingNdcgBound()
    model_validation: ModelValidationBound = ModelValidationBound()


class MonitorSettings(BaseModel):
    """Run health (tasks/monitor): every night's checks against earlier nights, stored in the
    store's `run_health` table."""

    enabled: bool = Field(True, description="compute, store and enforce the run's health")
    checks: MonitorChecks = MonitorChecks()
    weekday_weeks: int = Field(
        4, ge=1, description="volume: the day against the median of this many same weekdays"
    )
    history_runs: int = Field(
        14, ge=1, description="coverage, diversity, novelty: against the median of these runs"
    )
    reference_days: int = Field(
        28, ge=1, description="input drift: the days before the serving model's as-of"
    )
    drift_bins: int = Field(10, ge=2, description="quantile bins of the drift measure (PSI)")
    feature_psi: float = Field(
        0.25, gt=0, description="feature drift: a feature with a PSI above this has drifted"
    )
    min_rows: int = Field(
        100, ge=1, description="a distribution check on fewer rows is skipped (said so)"
    )
    rolling_days: int = Field(
        7, ge=1, description="the rolling metric judges the lists published this many days ago"
    )
    retrain_on_alarm: bool = Field(
        False, description="a model check (model_age, rolling_ndcg) off ok forces a retrain"
    )
    trend_runs: int = Field(30, ge=2, description="runs the report's trend plots show")
    feature_sample_rows: int = Field(
        20_000, ge=100, description="scored feature rows kept to measure feature drift"
    )


class Settings(BaseSettings):
    """Everything a run needs to know that is not a per-run parameter."""

    model_config = SettingsConfigDict(
        env_prefix="NIGHTREC_",
        env_nested_delimiter="__",
        extra="forbid",
        # An error names the field, never echoes the input: it may hold privacy.key.
        hide_input_in_errors=True,
    )

    home: Path = Field(Path("var"), description="data root: DuckDB file, models, outputs")
    k: int = Field(DEFAULT_K, ge=1, le=1000)
    horizon_days: int = Field(DEFAULT_HORIZON_DAYS, ge=1)
    seed: int = 42
    max_bad_share: float = Field(
        0.05, ge=0, le=1, description="share of bad rows that rejects a file"
    )
    allow_degraded: bool = Field(
        False,
        description="exit 0 (flow run Completed) when a run published something other than "
        "its model's lists (a fallback): recorded either way",
    )
    landing_dir: Path | None = None
    source: str = "canonical"
    candidates: CandidateSettings = CandidateSettings()
    ranker: RankerSettings = RankerSettings()
    ops: OpsSettings = OpsSettings()
    neural: NeuralSettings = NeuralSettings()
    safety: SafetySettings = SafetySettings()
    tune: TuneSettings = TuneSettings()
    scale: ScaleSettings = ScaleSettings()
    dask: DaskSettings = DaskSettings()
    privacy: PrivacySettings = PrivacySettings()
    explain: ExplainSettings = ExplainSettings()
    fallback: FallbackSettings = FallbackSettings()
    monitor: MonitorSettings = MonitorSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("NIGHTREC_CONFIG", "nightrec.yaml"))
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_file)
        return (init_settings, env_settings, yaml_source)

    def lookback_days(self) -> dict[str, int]:
        """How far before its as-of a nightly run reads events, by what reads them: the
        oldest training window's as-of lies horizon + (n_windows - 1) x step days back, and
        from there each bounded source looks back its own window. (History candidates and
        the all-time features, such as orders so far or days since the first order, are not
        bounded: under a retention they count the retained days only.)"""
        windows = self.horizon_days + (self.ranker.n_windows - 1) * self.ranker.window_step_days
        cfg = self.candidates
        reads = {
            "item features": max(ITEM_BUYER_WINDOWS_DAYS),
            "co-purchase candidates": cfg.copurchase_days,
            "EASE item selection": cfg.ease_select_days,
            "popular candidates": cfg.popular_days,
        }
        return {f"training windows + {name}": windows + days for name, days in reads.items()}

    @model_validator(mode="after")
    def _retention_covers_lookback(self) -> Settings:
        retention = self.privacy.retention_days
        if retention is None:
            return self
        what, longest = max(self.lookback_days().items(), key=lambda kv: kv[1])
        if retention < longest:
            raise ValueError(
                f"privacy.retention_days {retention} is shorter than the longest look-back "
                f"the settings need, {longest} days ({what}); raise it or shorten that window"
            )
        return self

    # Layout under home, in one place so every stage agrees on it.
    @property
    def db_path(self) -> Path:
        return self.home / "nightrec.duckdb"

    @property
    def recommendations_dir(self) -> Path:
        return self.home / "recommendations"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def validation_dir(self) -> Path:
        return self.home / "validation"

    @property
    def tuning_dir(self) -> Path:
        return self.home / "tuning"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def privacy_key_file(self) -> Path:
        """The generated erasure key when none is configured (0600)."""
        return self.home / "privacy.key"


def load_settings(**overrides: object) -> Settings:
    """Settings from file and environment, with explicit overrides (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
