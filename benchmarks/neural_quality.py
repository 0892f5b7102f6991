"""Neural ranker and blend beside LightGBM on the Online Retail development splits (as-of
2011-09-01 and 2011-08-01, H = 30 days), on the same customers, plus int8 quantized scoring.

For each as-of T: train LightGBM, the neural ranker and the blend on events before T (shared
windows; the network is early-stopped and the blend weight chosen on the validation window,
never on T's window), then score every evaluated customer's candidates as of T. Quantized
scoring: the same network with int8 dynamic quantization of its Linear layers, timed against
float32 on the same rows (forward passes only, interleaved, median of 7 at 1 and 2 threads)
and evaluated the same way. `--int8-only` trains the network alone and writes only that timing
(benchmarks/results/neural_int8.md).

Writes benchmarks/results/neural_quality.md and .json.

    .venv/bin/python benchmarks/neural_quality.py --db STORE [--as-of 2011-09-01]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
import torch
from machine import describe
from ranking_quality import load

from tasks.baselines.recommenders import repurchase
from tasks.constants import TS, USER_ID
from tasks.protocol.metrics import paired_bootstrap, per_user_metrics, ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.rank.dataset import candidate_frame
from tasks.rank.kinds import recommend_with, train_models
from tasks.rank.kinds.neural import NeuralScorer
from tasks.rank.neural.data import build_tensors
from tasks.rank.neural.train import predict, quantized
from tasks.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
AS_OFS = ("2011-09-01", "2011-08-01")
COMMAND = ".venv/bin/python benchmarks/neural_quality.py --db STORE"


def int8_speed(
    network: NeuralScorer,
    frame: pl.DataFrame,
    events: pl.DataFrame,
    as_of: dt.datetime,
    threads: tuple[int, ...] = (1, 2),
    repeats: int = 7,
) -> list[dict]:
    """float32 vs int8 dynamic quantization on the CPU, on the same rows: the network's
    forward passes only (tensors built once, untimed), float and int8 runs interleaved so a
    change of machine load hits both; median of `repeats` at each thread count."""
    cpu = torch.device("cpu")
    model = copy.deepcopy(network.model).cpu().eval()
    int8 = quantized(model)
    started = time.perf_counter()
    data = build_tensors(frame, events, network.prep, list_key=USER_ID, as_of=as_of, label=None)
    tensors_s = time.perf_counter() - started
    before = torch.get_num_threads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            predict(model, data, cpu), predict(int8, data, cpu)  # warm-up, untimed
            times: dict[str, list[float]] = {"float32": [], "int8": []}
            for _ in range(repeats):
                for name, m in (("float32", model), ("int8", int8)):
                    t0 = time.perf_counter()
                    predict(m, data, cpu)
                    times[name].append(time.perf_counter() - t0)
            f, q = statistics.median(times["float32"]), statistics.median(times["int8"])
            rows.append(
                {
                    "threads": n,
                    "rows": data.n_rows,
                    "repeats": repeats,
                    "float32_s": round(f, 4),
                    "int8_s": round(q, 4),
                    "speedup": round(f / q, 3),
                    "float32_runs": [round(t, 4) for t in times["float32"]],
                    "int8_runs": [round(t, 4) for t in times["int8"]],
                    "tensors_s": round(tensors_s, 3),
                }
            )
    finally:
        torch.set_num_threads(before)
    return rows


def _top_overlap(a: pl.DataFrame, b: pl.DataFrame, k: int) -> float:
    """Mean share of a customer's top-k items that both lists hold."""
    both = a.select(USER_ID, "item_id").join(b.select(USER_ID, "item_id"), on=[USER_ID, "item_id"])
    return both.height / a.height if a.height else 1.0


def evaluate_as_of(events: pl.DataFrame, catalog: pl.DataFrame, as_of: dt.datetime) -> dict:
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="nightrec-neural-")))
    train = events.filter(pl.col(TS) < as_of)
    started = time.perf_counter()
    trained = train_models(["lightgbm", "neural", "blend"], train, catalog, as_of, settings)
    train_s = time.perf_counter() - started
    users = evaluated_users(events, as_of, settings.horizon_days)
    truth = truth_window(events, as_of, settings.horizon_days)
    frame = candidate_frame(train, catalog, users, as_of, settings.candidates)
    recs = {
        kind: recommend_with(model.scorer, train, catalog, users, as_of, settings, frame)
        for kind, model in trained.items()
    }
    recs["repurchase"] = repurchase(train, users, as_of, settings.k)
    # int8 dynamic quantization of the same network, on CPU, same frame.
    network: NeuralScorer = trained["neural"].scorer  # type: ignore[assignment]
    # The int8 model is a CPU model: its scorer must feed it CPU tensors even when the network
    # trained on a GPU.
    cpu = torch.device("cpu")
    int8 = NeuralScorer(quantized(network.model), network.prep, cpu, network.num_threads)
    speed = int8_speed(network, frame, train, as_of)
    float_s, int8_s = speed[0]["float32_s"], speed[0]["int8_s"]  # one thread
    recs["neural-int8"] = recommend_with(int8, train, catalog, users, as_of, settings, frame)
    metrics = {name: ranking_metrics(r, truth, users, settings.k) for name, r in recs.items()}
    per_user = {
        name: per_user_metrics(r, truth, users, 10).get_column("ndcg").to_numpy()
        for name, r in recs.items()
    }
    diffs = {}
    for name in ("neural", "blend", "neural-int8"):
        d = paired_bootstrap(per_user[name], per_user["lightgbm"], n_resamples=2000, seed=42)
        diffs[name] = {"mean_diff": d.mean_diff, "low": d.low, "high": d.high}
    nn_meta = trained["neural"].meta["neural"]
    return {
        "as_of": f"{as_of:%Y-%m-%d}",
        "users": len(users),
        "candidate_rows": frame.height,
        "ndcg@10": {name: m["ndcg@10"] for name, m in metrics.items()},
        "recall@10": {name: m["recall@10"] for name, m in metrics.items()},
        "difference_to_lightgbm": diffs,
        "validation_ndcg@10": {
            kind: model.meta["validation"]["metrics"][kind]["ndcg@10"]
            for kind, model in trained.items()
        },
        "blend_weight_lightgbm": trained["blend"].meta["blend_weight_lightgbm"],
        "blend_valid_by_weight": trained["blend"].meta["blend_valid_ndcg10_by_weight"],
        "neural_best_epoch": nn_meta["best_epoch"],
        "neural_history": nn_meta["history"],
        "neural_seconds": nn_meta["seconds"],
        "train_all_kinds_s": round(train_s, 1),
        "score_float_s": round(float_s, 3),
        "score_int8_s": round(int8_s, 3),
        "int8_speed": speed,
        "int8_top10_overlap": _top_overlap(recs["neural"], recs["neural-int8"], settings.k),
        "neural_settings": settings.neural.model_dump(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="a store with every day ingested")
    parser.add_argument("--as-of", action="append", help="as-of date(s); default both splits")
    parser.add_argument(
        "--render", type=Path, help="only rewrite the results from a log of an earlier run"
    )
    parser.add_argument(
        "--int8-only",
        action="store_true",
        help="train the network alone and time float32 vs int8 scoring (neural_int8.md)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per thread count")
    args = parser.parse_args()
    machine = describe()
    if args.render:
        rows = [
            json.loads(line)
            for line in args.render.read_text().splitlines()
            if line.startswith('{"as_of"')
        ]
        write(rows, machine, float("nan"))
        return
    if args.db is None:
        parser.error("--db is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    events, catalog = load(args.db)
    print(f"machine: {machine}", flush=True)
    if args.int8_only:
        int8_only(events, catalog, args.as_of or ["2011-09-01"], args.repeats, machine)
        return
    rows = []
    for text in args.as_of or AS_OFS:
        row = evaluate_as_of(events, catalog, dt.datetime.fromisoformat(text))
        rows.append(row)
        print(json.dumps(row), flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        write(rows, machine, peak)  # after every split: a long run that dies keeps its rows


def int8_only(
    events: pl.DataFrame, catalog: pl.DataFrame, as_ofs: list[str], repeats: int, machine: dict
) -> None:
    """Train the network at each as-of, then time float32 vs int8 on its as-of frame."""
    results = []
    for text in as_ofs:
        as_of = dt.datetime.fromisoformat(text)
        settings = load_settings(home=Path(tempfile.mkdtemp(prefix="nightrec-int8-")))
        train = events.filter(pl.col(TS) < as_of)
        network = train_models(["neural"], train, catalog, as_of, settings)["neural"].scorer
        users = evaluated_users(events, as_of, settings.horizon_days)
        frame = candidate_frame(train, catalog, users, as_of, settings.candidates)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        timing = int8_speed(network, frame, train, as_of, repeats=repeats)  # type: ignore[arg-type]
        results.append(
            {
                "as_of": text,
                "users": len(users),
                "load_before": load,
                "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "timing": timing,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    command = ".venv/bin/python benchmarks/neural_quality.py --db STORE --int8-only"
    (RESULTS / "neural_int8.json").write_text(
        json.dumps({"machine": machine, "command": command, "splits": results}, indent=2)
    )
    lines = [
        "# int8 dynamic quantization vs float32 scoring, re-measured",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} ({machine['cores']} "
        f"cores, {machine['memory_gib']} GiB), Python {machine['python']}, torch "
        f"{torch.__version__}. Command: `{command}`.",
        "",
        "The network's forward passes over the as-of candidate frame of the protocol's "
        "customers (tensors built once, not timed), float32 and int8 runs interleaved, median "
        f"of {repeats} after one untimed warm-up each, at 1 and 2 torch threads; same rows.",
        "",
        "| as-of | rows | threads | float32 s | int8 s | speed-up (float32 / int8) | load "
        "before / after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for t in r["timing"]:
            lines.append(
                f"| {r['as_of']} | {t['rows']:,} | {t['threads']} | {t['float32_s']} | "
                f"{t['int8_s']} | {t['speedup']:.2f}x | {r['load_before']} / {r['load_after']} |"
            )
    (RESULTS / "neural_int8.md").write_text("\n".join(lines) + "\n")


def write(rows: list[dict], machine: dict, peak: float) -> None:
    payload = {"machine": machine, "command": COMMAND, "peak_rss_gib": peak, "splits": rows}
    (RESULTS / "neural_quality.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# Neural ranker and blend on the development splits",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} ({machine['cores']} "
        f"cores, {machine['memory_gib']} GiB, shared with other jobs), Python "
        f"{machine['python']}; no GPU: the network trained on CPU. Peak RSS {peak:.2f} GiB.",
        f"Command: `{COMMAND}`. H = 30 days, K = 10, the same evaluated customers for every "
        "method; the network's epochs and the blend weight were chosen on each split's "
        "validation window (T - 30 days), never on T's window.",
        "",
        "| as-of | users | LightGBM | neural | blend | neural int8 | repurchase | neural vs "
        "LightGBM | blend − LightGBM (95% CI) | blend weight on LightGBM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        n = r["ndcg@10"]
        d = r["difference_to_lightgbm"]["blend"]
        lines.append(
            f"| {r['as_of']} | {r['users']} | {n['lightgbm']:.4f} | {n['neural']:.4f} | "
            f"{n['blend']:.4f} | {n['neural-int8']:.4f} | {n['repurchase']:.4f} | "
            f"{n['neural'] / n['lightgbm'] - 1:+.1%} | {d['mean_diff']:+.4f} "
            f"[{d['low']:+.4f}, {d['high']:+.4f}] | {r['blend_weight_lightgbm']:.2f} |"
        )
    lines += [
        "",
        "NDCG@10 on each split's validation window (what the epochs and the weight were "
        "chosen on):",
        "",
        "| as-of | LightGBM | neural | blend | neural best epoch | network training s "
        "(early-stop run + refit) | all three kinds s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        v = r["validation_ndcg@10"]
        lines.append(
            f"| {r['as_of']} | {v['lightgbm']:.4f} | {v['neural']:.4f} | {v['blend']:.4f} | "
            f"{r['neural_best_epoch']} | {r['neural_seconds']['total']} | "
            f"{r['train_all_kinds_s']} |"
        )
    lines += [
        "",
        "Quantized scoring (int8 dynamic quantization of the Linear layers, CPU, as many "
        "threads as float32; "
        "median of 3 on the as-of candidate frame, which includes building its tensors):",
        "",
        "| as-of | candidate rows | float32 s | int8 s | speed-up | NDCG@10 float → int8 "
        "| top-10 overlap |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        n = r["ndcg@10"]
        lines.append(
            f"| {r['as_of']} | {r['candidate_rows']:,} | {r['score_float_s']} | "
            f"{r['score_int8_s']} | {r['score_float_s'] / r['score_int8_s']:.2f}x | "
            f"{n['neural']:.4f} → {n['neural-int8']:.4f} | {r['int8_top10_overlap']:.3f} |"
        )
    (RESULTS / "neural_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
