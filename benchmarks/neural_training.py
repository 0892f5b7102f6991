"""Training throughput of the neural ranker on a synthetic shop with at least 5 million
candidate rows (tasks/synth/shop.py through the real candidate and feature pipeline).

Builds the nightly training windows of a large synthetic shop, turns them into list tensors,
then trains for a time budget per device (CPU always; CUDA with bf16 autocast when present)
and reports candidate rows (samples) per second of training: forward, listwise loss, backward
and optimizer step, batches gathered on the device. The first batches are a warm-up and are
not timed.

Writes benchmarks/results/neural_training.md and .json.

    .venv/bin/python benchmarks/neural_training.py [--customers 11000] [--seconds 120]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
import torch
from machine import describe
from torch import nn

from tasks.features.build import feature_columns
from tasks.rank.dataset import LABEL
from tasks.rank.kinds import LIST_KEY
from tasks.rank.neural.data import build_tensors, fit_preprocessor
from tasks.rank.neural.model import ListRanker, listwise_loss
from tasks.rank.neural.train import GRAD_CLIP, architecture, autocast, torch_runtime
from tasks.rank.train import training_windows
from tasks.settings import load_settings
from tasks.synth.shop import SynthShopConfig, generate_shop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WARMUP_BATCHES = 5


def throughput(data, arch, cfg, device: torch.device, seconds: float) -> dict:
    """Train for about `seconds` after a warm-up; samples = real (unpadded) candidate rows."""
    with torch_runtime(device, cfg.num_threads):
        torch.manual_seed(0)
        model = ListRanker(arch).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
        data = data.to(device)
        order = torch.randperm(data.n_lists, generator=torch.Generator().manual_seed(0))
        order = order.to(device)
        rows, batches, step_times, started = 0, 0, [], None
        position = 0
        while True:
            lists = order[position : position + cfg.batch_lists]
            position = (position + cfg.batch_lists) % max(data.n_lists - cfg.batch_lists, 1)
            t0 = time.perf_counter()
            batch = data.batch(lists)
            with autocast(device):
                scores = model(batch["dense"], batch["item"], batch["user"], batch["seq"])
            loss = listwise_loss(scores, batch["label"], batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            batches += 1
            if batches == WARMUP_BATCHES:
                started = time.perf_counter()
                continue
            if started is None:
                continue
            step_times.append(time.perf_counter() - t0)
            rows += int(batch["mask"].sum())
            if time.perf_counter() - started >= seconds:
                break
        elapsed = time.perf_counter() - started
    return {
        "device": str(device),
        "threads": cfg.num_threads if device.type == "cpu" else None,
        "autocast": "bf16" if device.type == "cuda" else "float32",
        "timed_batches": len(step_times),
        "timed_rows": rows,
        "seconds": round(elapsed, 2),
        "samples_per_s": round(rows / elapsed, 1),
        "median_step_ms": round(1000 * statistics.median(step_times), 2),
        "final_loss": float(loss.detach()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=11_000)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=120.0, help="timed training per device")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--tile",
        type=int,
        default=1,
        help="repeat the windows' lists N times (as other customers) to reach the row count "
        "on a machine too busy to build a shop that large; per-batch work is unchanged",
    )
    parser.add_argument("--name", default="neural_training", help="results file stem")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    machine = describe()
    print(f"machine: {machine}", flush=True)
    t0 = time.perf_counter()
    shop = generate_shop(
        SynthShopConfig(
            n_customers=args.customers,
            n_items=args.items,
            n_categories=40,
            days=args.days,
            seed=11,
            malformed_rows_per_day=0,
        )
    )
    as_of = dt.datetime.combine(shop.config.start + dt.timedelta(days=args.days), dt.time())
    settings = load_settings()
    windows = training_windows(shop.events, shop.catalog, as_of, settings)
    frames, used = windows.frames, windows.used
    build_s = time.perf_counter() - t0
    frame = pl.concat(
        [
            pl.concat(frames).with_columns(
                pl.col("user_id") + pl.lit(f"#{copy}") if copy else pl.col("user_id")
            )
            for copy in range(args.tile)
        ]
    ).with_columns(
        (pl.col("user_id") + pl.lit("@") + pl.col("_as_of").cast(pl.Utf8)).alias(LIST_KEY)
    )
    print(f"{frame.height:,} candidate rows in {len(used)} windows, {build_s:.0f} s", flush=True)
    features = feature_columns(frames[0].drop(LABEL))
    cfg = settings.neural.model_copy(update={"num_threads": args.threads})
    t1 = time.perf_counter()
    prep = fit_preprocessor(frame, features, shop.events, cfg.user_buckets, cfg.seq_len)
    data = build_tensors(frame, shop.events, prep, list_key=LIST_KEY)
    tensors_s = time.perf_counter() - t1
    arch = architecture(prep.n_dense, prep.n_items, cfg)
    runs = [throughput(data, arch, cfg, torch.device("cpu"), args.seconds)]
    print(json.dumps(runs[-1]), flush=True)
    if torch.cuda.is_available():
        runs.append(throughput(data, arch, cfg, torch.device("cuda"), args.seconds))
        print(json.dumps(runs[-1]), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {
        "machine": machine,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "shop": {"customers": args.customers, "items": args.items, "days": args.days},
        "candidate_rows": frame.height,
        "tiled": args.tile,
        "lists": data.n_lists,
        "windows": [d.isoformat() for d in used],
        "n_dense": prep.n_dense,
        "build_windows_s": round(build_s, 1),
        "build_tensors_s": round(tensors_s, 1),
        "peak_rss_gib": round(peak, 2),
        "runs": runs,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    cpu = runs[0]["samples_per_s"]
    tiled = (
        f"(the windows' lists repeated {args.tile}x as other customers) " if args.tile > 1 else ""
    )
    lines = [
        "# Neural ranker training throughput",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} ({machine['cores']} "
        f"cores, {machine['memory_gib']} GiB, shared with other engineers' jobs), torch "
        f"{torch.__version__}; CUDA: {result['cuda'] or 'none on this machine'}.",
        f"Synthetic shop: {args.customers:,} customers, {args.items:,} items, {args.days} days; "
        f"{frame.height:,} candidate rows in {data.n_lists:,} lists over {len(used)} windows "
        f"{tiled}({prep.n_dense} dense inputs). Windows built in {build_s:.0f} s, tensors in "
        f"{tensors_s:.0f} s; peak RSS {peak:.1f} GiB.",
        "Command: `.venv/bin/python benchmarks/neural_training.py "
        f"--customers {args.customers} --seconds {args.seconds:g} --threads {args.threads} "
        f"--tile {args.tile}`",
        "",
        "| device | precision | threads | timed batches | samples/s | median step ms | vs CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['device']} | {r['autocast']} | {r['threads'] or '-'} | {r['timed_batches']} | "
            f"{r['samples_per_s']:,.0f} | {r['median_step_ms']} | "
            f"{r['samples_per_s'] / cpu:.1f}x |"
            for r in runs
        ),
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
