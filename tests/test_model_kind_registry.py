"""A fourth model kind is one class plus one registry line: a test kind that ranks candidates
by their recent popularity goes through training, the gate, publishing and the backtest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.rank import registry
from tasks.rank.kinds import KINDS, Scorer, Trained, TrainingContext, load_scorer
from tasks.settings import Settings, load_settings
from tasks.synth.tiny import TINY_PROTOCOL_ENV, TINY_SHOP, stage_tiny_shop

pytestmark = pytest.mark.flow
RUN_DATE = TINY_SHOP.start + dt.timedelta(days=TINY_SHOP.days - 2)


class CandidatePopularityScorer:
    """Higher for candidates more customers bought lately (the `pop` source's score)."""

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        return frame.get_column("pop_score").to_numpy().astype(np.float64)


class CandidatePopularityKind:
    name = "candpop"
    registry_prefix = "candpop"

    def train(self, ctx: TrainingContext) -> Trained:
        scorer = CandidatePopularityScorer()
        meta = {
            **ctx.base_meta(),
            "model_kind": self.name,
            "train_rows": 0,
            "best_iteration": 0,
            "validation": ctx.validate(self.name, scorer),
        }
        return Trained(self.name, scorer, meta, "ranks candidates by recent buyers\n")

    def load(self, record: registry.ModelRecord, settings: Settings) -> Scorer:
        return CandidatePopularityScorer()


@pytest.fixture
def candpop(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(KINDS, "candpop", CandidatePopularityKind())  # the one registry line
    for name, value in {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_RANKER__KIND": "candpop",
        **TINY_PROTOCOL_ENV,
    }.items():
        monkeypatch.setenv(name, value)
    stage_tiny_shop(home, home / "landing", RUN_DATE)
    return home


def test_a_new_kind_trains_gates_publishes_and_backtests(
    prefect_harness: None, candpop: Path
) -> None:
    from flows.nightly import NightlyParams, nightly_flow
    from tasks.evaluate.backtest import run_backtest
    from tasks.features.snapshot import take_snapshot
    from tasks.rank.task import choose_model
    from tasks.timeutil import run_as_of

    settings = load_settings()
    snapshot = take_snapshot(settings, run_as_of(RUN_DATE), candpop / "work" / "t")
    choice = choose_model(settings, snapshot, retrain=True)
    (record,) = registry.list_models(settings.models_dir)
    assert record.version.startswith("candpop-") and record.meta["model_kind"] == "candpop"
    assert record.meta["validation"]["model_key"] == "candpop"
    assert "candpop" in record.meta["validation"]["metrics"]
    # The gate judged it like any kind: promoted, or refused with its reason.
    assert choice.reason.startswith("promoted: ") or "rejected by the gate" in choice.reason
    assert isinstance(load_scorer(record, settings), CandidatePopularityScorer)

    registry.promote(settings.models_dir, record.version)
    manifest = nightly_flow(NightlyParams(run_date=RUN_DATE, retrain=False))
    assert manifest["status"] == "ok"
    assert manifest["model_version"] == record.version
    assert manifest["model_kind"] == "candpop"

    as_of = run_as_of(RUN_DATE) - dt.timedelta(days=settings.horizon_days)
    result = run_backtest(
        snapshot.events(), snapshot.catalog(), as_of, settings, n_resamples=50, kinds=("candpop",)
    )
    assert set(result.metrics) >= {"lightgbm", "candpop", "popularity", "repurchase"}
    assert 0.0 <= result.metrics["candpop"]["ndcg@10"] <= 1.0
    assert result.metrics["candpop"]["ndcg@10"] != result.metrics["lightgbm"]["ndcg@10"]


def test_an_unknown_kind_is_one_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.rank.kinds import UnknownKind, resolve_kind

    monkeypatch.setenv("NIGHTREC_RANKER__KIND", "catboost")
    with pytest.raises(UnknownKind, match="unknown model kind 'catboost'; known: lightgbm, neural"):
        resolve_kind(load_settings(home=home))
