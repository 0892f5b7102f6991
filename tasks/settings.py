"""The one typed settings object, layered: defaults < config file < environment variables.

The config file is `nightrec.yaml` in the working directory, or the file named by
`NIGHTREC_CONFIG`. Environment variables use the `NIGHTREC_` prefix and `__` for nesting,
e.g. `NIGHTREC_HOME=/data/nightrec`, `NIGHTREC_RANKER__NUM_LEAVES=31`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tasks.constants import DEFAULT_HORIZON_DAYS, DEFAULT_K


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
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambdarank_truncation_level: int = Field(20, ge=1)
    num_threads: int = Field(0, ge=0, description="0 = LightGBM's default (all cores)")


class TuneSettings(BaseModel):
    """Hyperparameter tuning (`nightrec tune`): validation folds, parallelism, pruning."""

    validation_folds: int = Field(
        2, ge=1, description="rolling validation windows a trial is scored on (newest first)"
    )
    parallel: int = Field(2, ge=1, description="trials run at once by the flow's task runner")
    threads_per_trial: int = Field(
        0, ge=0, description="LightGBM threads per trial; 0 = cores / parallel"
    )
    pruner: Literal["median", "none"] = Field(
        "median", description="stop a Bayesian trial early when its first folds lag the median"
    )
    prune_startup_trials: int = Field(5, ge=0)
    enqueue_defaults: bool = Field(
        True, description="a Bayesian study's first trial is the default parameters"
    )
    nightly_uses_champion_params: bool = Field(
        True, description="a nightly retrain uses the tuned parameters of the champion"
    )


class Settings(BaseSettings):
    """Everything a run needs to know that is not a per-run parameter."""

    model_config = SettingsConfigDict(
        env_prefix="NIGHTREC_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(Path("var"), description="data root: DuckDB file, models, outputs")
    k: int = Field(DEFAULT_K, ge=1, le=1000)
    horizon_days: int = Field(DEFAULT_HORIZON_DAYS, ge=1)
    seed: int = 42
    max_bad_share: float = Field(
        0.05, ge=0, le=1, description="share of bad rows that rejects a file"
    )
    landing_dir: Path | None = None
    source: str = "canonical"
    candidates: CandidateSettings = CandidateSettings()
    ranker: RankerSettings = RankerSettings()
    tune: TuneSettings = TuneSettings()

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
    def tuning_dir(self) -> Path:
        return self.home / "tuning"


def load_settings(**overrides: object) -> Settings:
    """Settings from file and environment, with explicit overrides (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
