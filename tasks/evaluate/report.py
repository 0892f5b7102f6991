"""The backtest report: a Markdown page beside a JSON file of every figure."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.constants import EVAL_KS
from tasks.evaluate.backtest import Backtest

RANKING = ("ndcg", "recall", "map", "hitrate", "precision")
BEYOND = ("items_covered", "coverage", "novelty", "diversity")


def render_markdown(result: Backtest, command: str, plots: dict[str, str] | None = None) -> str:
    """The report page; `plots` maps a title to a PNG file name beside the page."""
    diff = result.ndcg_difference
    lines = [
        f"# Backtest at as-of {result.as_of:%Y-%m-%d}",
        "",
        f"Protocol: train on events before {result.as_of:%Y-%m-%d}; truth = distinct items each "
        f"customer bought in the next {result.horizon_days} days; {result.users:,} evaluated "
        + (
            "customers (an order line before and inside the window, fee lines included); "
            if result.user_set == "order lines"
            else "customers (a purchase before and inside the window); "
        )
        + "full ranking, repeats allowed.",
        f"Of them, {result.unserved:,} have no event before the as-of, so the nightly run "
        "publishes nothing for them: they count with zeros in the models' rows (the "
        f"baselines serve them as anyone); {result.without_truth:,} bought no item in the "
        "window (only fee lines): they count with zeros in every row.",
        f"Command: `{command}`",
        "",
    ]
    for k in EVAL_KS:
        header = [f"{m}@{k}" for m in (*RANKING, *BEYOND)]
        lines += [f"## K = {k}", "", "| method | " + " | ".join(header) + " |"]
        lines.append("| --- " * (len(header) + 1) + "|")
        for name, metrics in result.metrics.items():
            cells = [
                f"{metrics[h]:.4f}" if isinstance(metrics[h], float) else str(metrics[h])
                for h in header
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        f"NDCG@10 difference, {result.best_model} minus the best baseline "
        f"({result.best_baseline}): {diff['mean_diff']:+.4f}, 95% paired bootstrap interval "
        f"[{diff['low']:+.4f}, {diff['high']:+.4f}]"
        + (" (excludes zero)" if diff["low"] > 0 or diff["high"] < 0 else " (includes zero)"),
        "",
        *(
            f"NDCG@10 difference, {kind} minus lightgbm: {d['mean_diff']:+.4f}, 95% paired "
            f"bootstrap interval [{d['low']:+.4f}, {d['high']:+.4f}]"
            + (" (excludes zero)" if d["low"] > 0 or d["high"] < 0 else " (includes zero)")
            + "\n"
            for kind, d in result.kind_differences.items()
        ),
        *(
            f"NDCG@10 difference, {name} minus the best baseline: {d['mean_diff']:+.4f}, 95% "
            f"paired bootstrap interval [{d['low']:+.4f}, {d['high']:+.4f}]\n"
            for name, d in result.baseline_differences.items()
            if name != result.best_model
        ),
        *(
            [
                f"ranker.kind=auto (row `auto`) serves **{result.auto_selection['winner']}**: "
                f"{result.auto_selection['why']}; validation NDCG "
                f"{result.auto_selection['validation_ndcg']} on the window "
                f"{result.auto_selection['validation_window'][:10]}; "
                f"{result.auto_selection['network']['why']}.\n"
            ]
            if result.auto_selection
            else []
        ),
        *(
            f"Blend weight on LightGBM's per-customer z-score: {meta['blend_weight_lightgbm']} "
            "(chosen on the validation window).\n"
            for meta in result.kind_meta.values()
            if "blend_weight_lightgbm" in meta
        ),
        *(line for title, name in (plots or {}).items() for line in (f"![{title}]({name})", "")),
        "## Ranker",
        "",
        f"Training windows: {', '.join(w[:10] for w in result.model_meta['train_windows'])}; "
        f"early-stopped on {result.model_meta['validation_window'][:10]} at "
        f"{result.model_meta['best_iteration']} rounds.",
        "",
        "| feature | gain |",
        "| --- | --- |",
        *(
            f"| {name} | {gain:,.0f} |"
            for name, gain in list(result.model_meta["feature_importance"].items())[:15]
        ),
    ]
    return "\n".join(lines) + "\n"


def write_report(result: Backtest, folder: Path, command: str) -> Path:
    """metrics.json, the PNG plots and report.md (linking them) in `folder`."""
    # matplotlib takes a while to import; only report writing needs it
    from tasks.evaluate.plots import write_plots

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result.as_dict(), indent=2))
    plots = {title: path.name for title, path in write_plots(result, folder).items()}
    path = folder / "report.md"
    path.write_text(render_markdown(result, command, plots))
    return path
