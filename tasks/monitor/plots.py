"""The trend plots of the nightly report: the last runs' health as small multiples, drawn with
matplotlib's object API on the Agg canvas (as tasks/evaluate/plots.py)."""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
from pathlib import Path

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from tasks.monitor.checks import CHECKS
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


def _levels(history: pl.DataFrame, name: str) -> list[tuple[float, str]]:
    """The newest run's warn and fail levels of a check, as y values (both sides of a fold)."""
    rows = history.filter(pl.col("check_name") == name).sort("run_date").tail(1)
    if rows.height == 0:
        return []
    levels = []
    for column, colour in (("warn", STATUS_COLOURS["warn"]), ("fail", STATUS_COLOURS["fail"])):
        level = rows.get_column(column)[0]
        if level is not None:
            levels.append((level, colour))
            if CHECKS[name][0] == "fold":
                levels.append((1.0 / level, colour))
    return levels


def _instant(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def plot_trends(history: pl.DataFrame, path: Path, title: str) -> Path:
    """Six small panels over the runs in `history`; warn and fail points are coloured, the
    newest warn and fail levels of a panel's one measure are dashed lines."""
    days = history.get_column("run_date").unique().sort().to_list()
    ticks = days[:: max(1, math.ceil(len(days) / 6))]
    fig = Figure(figsize=(11, 6.5))
    fig.suptitle(title, fontsize="medium")
    for i, (panel, lines) in enumerate(PANELS):
        ax = fig.add_subplot(3, 2, i + 1)
        drawn = False
        for name, column, label in lines:
            points = series(history, name, column).drop_nulls("value")
            if points.height == 0:
                continue
            drawn = True
            x = points.get_column("run_date").to_list()
            ax.plot(x, points.get_column("value").to_list(), marker=".", label=label)
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
            if column == "measure" and len(lines) == 1:
                for level, colour in _levels(history, name):
                    ax.axhline(level, color=colour, linestyle="--", linewidth=0.8)
        if not drawn:
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        ax.set_title(panel, fontsize="small")
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(DateFormatter("%m-%d"))
        ax.tick_params(labelsize="x-small")
        if days:
            pad = dt.timedelta(hours=12)
            ax.set_xlim(_instant(days[0]) - pad, _instant(days[-1]) + pad)
        ax.grid(alpha=0.3)
        if len(lines) > 1 or len(ax.get_legend_handles_labels()[1]) > 1:
            ax.legend(fontsize="x-small")
    # Fixed margins: tight_layout measures every label first and was a third of the time.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.05, top=0.9, hspace=0.45, wspace=0.15)
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=90)
    os.replace(tmp, path)
    return path


def data_uri(path: Path) -> str:
    """The PNG inline, for a Prefect markdown artifact (the UI cannot read the host's file)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
