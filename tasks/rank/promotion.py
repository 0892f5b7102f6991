"""Register a trained model and run the promotion gate against the champion serving its
as_of: the one path every trainer takes (the nightly retrain, a tuning study's winner)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.rank import registry
from tasks.rank.gate import promotion_gate
from tasks.rank.kinds import Trained, register_trained

log = logging.getLogger("nightrec.rank")


@dataclass(frozen=True)
class GateOutcome:
    version: str
    promoted: bool  # the model serves from now on (also when it already did)
    reason: str
    validation_ndcg: float  # the model's protocol NDCG@K on its validation window
    same_as_serving: bool  # training gave the serving model again, byte for byte
    champion: str | None  # the champion it was compared with

    def summary(self) -> dict[str, Any]:
        """What a tuning study records of its registered winner."""
        return {
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "validation_ndcg": self.validation_ndcg,
        }


def register_and_gate(
    models_dir: Path, trained: Trained, as_of: dt.datetime, tolerance: float
) -> GateOutcome:
    """Register `trained`; promote it when the gate accepts it over the serving champion."""
    serving = registry.serving_model(models_dir, as_of)
    record = register_trained(models_dir, trained)
    validation = record.meta["validation"]
    metrics = validation["metrics"][validation.get("model_key", "lightgbm")]
    ndcg = metrics[f"ndcg@{validation['k']}"]
    champion = serving.version if serving else None
    if serving is not None and serving.version == record.version:
        return GateOutcome(record.version, True, "already champion", ndcg, True, champion)
    decision = promotion_gate(record.meta, serving.meta if serving else None, tolerance)
    log.info("gate for %s: %s", record.version, decision.reason)
    if decision.promote:
        registry.promote(models_dir, record.version)
    return GateOutcome(record.version, decision.promote, decision.reason, ndcg, False, champion)
