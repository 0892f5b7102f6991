"""PNG plots of a backtest, drawn with matplotlib's object API on the Agg canvas (no pyplot,
so no global figure state and no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks.constants import EVAL_KS
from tasks.evaluate.backtest import Backtest

RANKING = ("ndcg", "recall", "map", "hitrate", "precision")
METRICS_PNG = "metrics_at_k.png"
DIFFERENCE_PNG = "ndcg10_difference.png"
SEGMENTS_PNG = "ndcg10_by_history.png"


def _save(fig: Figure, path: Path) -> Path:
    """Render on Agg and write atomically (temp file, then rename)."""
    FigureCanvasAgg(fig)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_metrics(result: Backtest, path: Path) -> Path:
    """One panel per K: grouped bars (metric x method) with the 95% bootstrap interval."""
    methods = list(result.metrics)
    width = 0.8 / len(methods)
    fig = Figure(figsize=(11, 3.6 * len(EVAL_KS)))
    for row, k in enumerate(EVAL_KS):
        ax = fig.add_subplot(len(EVAL_KS), 1, row + 1)
        x = np.arange(len(RANKING))
        for i, name in enumerate(methods):
            keys = [f"{m}@{k}" for m in RANKING]
            values = np.array([result.metrics[name][key] for key in keys])
            bounds = result.intervals.get(name, {})
            err = np.array(
                [
                    [values[j] - bounds[key][0], bounds[key][1] - values[j]]
                    if key in bounds
                    else [0.0, 0.0]
                    for j, key in enumerate(keys)
                ]
            ).T
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=name)
            ax.errorbar(
                x + (i - (len(methods) - 1) / 2) * width,
                values,
                yerr=np.clip(err, 0.0, None),
                fmt="none",
                ecolor="black",
                capsize=2,
                linewidth=0.8,
            )
        ax.set_xticks(x, [f"{m}@{k}" for m in RANKING])
        ax.set_ylabel("mean over customers")
        ax.set_title(f"K = {k}, {result.users:,} customers, 95% bootstrap intervals")
        ax.grid(axis="y", alpha=0.3)
    fig.axes[0].legend(ncols=len(methods), fontsize="small", loc="upper right")
    return _save(fig, path)


def plot_difference(result: Backtest, path: Path) -> Path:
    """Histogram of per-customer NDCG@10 differences, best model minus best baseline."""
    diff = result.ndcg_difference
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    ax.hist(result.ndcg_diffs, bins=41, color="tab:blue", alpha=0.8)
    ax.axvline(diff["mean_diff"], color="black", label=f"mean {diff['mean_diff']:+.4f}")
    for bound in (diff["low"], diff["high"]):
        ax.axvline(bound, color="black", linestyle="--", linewidth=0.8)
    ax.axvline(0.0, color="tab:red", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(f"NDCG@10 {result.best_model} - {result.best_baseline}, per customer")
    ax.set_ylabel("customers (log)")
    ax.set_title(f"95% paired bootstrap interval [{diff['low']:+.4f}, {diff['high']:+.4f}]")
    ax.legend()
    return _save(fig, path)


def plot_segments(result: Backtest, path: Path) -> Path:
    """NDCG@10 per method within each customer-history segment."""
    methods = list(result.metrics)
    labels = [f"{s['segment']}\n({s['users']} customers)" for s in result.segments]
    width = 0.8 / len(methods)
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot()
    x = np.arange(len(result.segments))
    for i, name in enumerate(methods):
        values = [s[name] for s in result.segments]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels)
    ax.set_xlabel("orders before the as-of date")
    ax.set_ylabel("NDCG@10")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def write_plots(result: Backtest, folder: Path) -> dict[str, Path]:
    """Every plot of the report, by title; a plot without data is left out."""
    plots = {"Metrics at K": plot_metrics(result, folder / METRICS_PNG)}
    if result.ndcg_diffs:
        plots["NDCG@10 difference per customer"] = plot_difference(result, folder / DIFFERENCE_PNG)
    if result.segments:
        plots["NDCG@10 by customer history"] = plot_segments(result, folder / SEGMENTS_PNG)
    return plots
