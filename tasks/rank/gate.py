"""The promotion gate: a challenger replaces the champion only if it beats the best baseline
on its validation window and its lift over that baseline is at least the champion's.

Lifts are compared, not raw NDCG, because the two models were validated on different windows
(and the champion was refit on labels that fall inside the challenger's window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODEL_KEY = "lightgbm"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def _ndcg(metrics: dict[str, float], k: int) -> float:
    return float(metrics[f"ndcg@{k}"])


def validation_lift(meta: dict[str, Any]) -> tuple[float, float, str]:
    """(model NDCG@k, best baseline NDCG@k, best baseline name) on the model's own window."""
    validation = meta["validation"]
    k = validation["k"]
    metrics = validation["metrics"]
    # Neural and blend models name their own row; LightGBM models predate the field.
    model_key = validation.get("model_key", MODEL_KEY)
    baselines = {name: _ndcg(m, k) for name, m in metrics.items() if name != model_key}
    best = max(baselines, key=baselines.__getitem__)
    return _ndcg(metrics[model_key], k), baselines[best], best


def promotion_gate(
    challenger: dict[str, Any], champion: dict[str, Any] | None, tolerance: float = 0.0
) -> GateDecision:
    """Decide on a challenger's meta against the champion's; `tolerance` is how much lower a
    challenger's lift may be (absolute, on the ratio) and still win, to favour fresh models."""
    ndcg, baseline, name = validation_lift(challenger)
    if ndcg <= baseline:
        return GateDecision(
            False, f"NDCG {ndcg:.4f} does not beat the best baseline ({name} {baseline:.4f})"
        )
    lift = ndcg / baseline if baseline > 0 else float("inf")
    if champion is None:
        return GateDecision(True, f"first model; lift {lift:.3f} over {name}")
    champ_ndcg, champ_baseline, _ = validation_lift(champion)
    champ_lift = champ_ndcg / champ_baseline if champ_baseline > 0 else float("inf")
    if lift + tolerance < champ_lift:
        return GateDecision(
            False,
            f"lift {lift:.3f} is below the champion's {champ_lift:.3f} (tolerance {tolerance})",
        )
    return GateDecision(True, f"lift {lift:.3f} vs champion {champ_lift:.3f}")
