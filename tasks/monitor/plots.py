"""The trend plots of the nightly report: the last runs' health as small multiples, drawn with
matplotlib's object API on the Agg canvas (as tasks/evaluate/plots.py)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from tasks.monitor.trends import series

# (title, [(check, column, label)]): what each panel shows.
PANELS = (
    ("input volume / same-weekday median", [("volume", "measure", "volume")]),
    (
        "drift: input max PSI, share of features drifted",
        [("input_drift", "measure", "input"), ("feature_drift", "measure", "features")],
    ),
    ("catalog coverage", [("coverage", "value", "coverage")]),
    ("fallback customers (share)", [("fallback", "value", "fallback")]),
    ("validation NDCG@K of the serving model", [("model_validation", "value", "validation")]),
    ("NDCG@K since, lists / repurchase", [("rolling_ndcg", "measure", "rolling")]),
)
STATUS_COLOURS = {"warn": "tab:orange", "fail": "tab:red"}


def plot_trends(history: pl.DataFrame, path: Path, title: str) -> Path:
    """Six small panels over the runs in `history`; warn and fail points are coloured."""
    fig = Figure(figsize=(11, 6.5))
    fig.suptitle(title, fontsize="medium")
    for i, (panel, lines) in enumerate(PANELS):
        ax = fig.add_subplot(3, 2, i + 1)
        for name, column, label in lines:
            points = series(history, name, column).drop_nulls("value")
            if points.height == 0:
                continue
            days = points.get_column("run_date").to_list()
            ax.plot(days, points.get_column("value").to_list(), marker=".", label=label)
            for status, colour in STATUS_COLOURS.items():
                alarmed = points.filter(pl.col("status") == status)
                if alarmed.height:
                    ax.scatter(
                        alarmed.get_column("run_date").to_list(),
                        alarmed.get_column("value").to_list(),
                        color=colour,
                        zorder=3,
                        label=status,
                    )
        ax.set_title(panel, fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.xaxis.set_major_formatter(DateFormatter("%m-%d"))
        ax.grid(alpha=0.3)
        if len(lines) > 1 or ax.get_legend_handles_labels()[1][1:]:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=90)
    os.replace(tmp, path)
    return path


def data_uri(path: Path) -> str:
    """The PNG inline, for a Prefect markdown artifact (the UI cannot read the host's file)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
