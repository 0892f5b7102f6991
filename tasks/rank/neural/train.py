"""Training loop of the list ranker: listwise loss, early stopping on validation NDCG@10,
resumable checkpoints, bf16 autocast on CUDA, reproducible runs on CPU."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.errors import NightrecError
from tasks.rank.neural.data import ListTensors
from tasks.rank.neural.model import Architecture, ListRanker, listwise_loss, ndcg_at
from tasks.settings import NeuralSettings

log = logging.getLogger("nightrec.rank.neural")
EVAL_K = 10
GRAD_CLIP = 5.0


class DeviceError(NightrecError, RuntimeError):
    """The configured device is not available on this machine."""

    hint = "use --device auto or cpu (or NIGHTREC_NEURAL__DEVICE=auto)"


class CheckpointMismatch(RuntimeError):
    """A checkpoint belongs to another configuration or data set; it cannot be resumed."""


def resolve_device(requested: str) -> torch.device:
    """auto: CUDA when present, else CPU. Asking for CUDA where there is none is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("neural.device is 'cuda' but torch sees no CUDA device")
    return torch.device(requested)


def cpu_threads(requested: int) -> int:
    """torch CPU threads: `requested`, or with 0 the cores this process may run on."""
    if requested > 0:
        return requested
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_runtime(device: torch.device, num_threads: int) -> Iterator[None]:
    """Thread count (0 = every core available), a forked RNG and, on CPU, deterministic
    algorithms for the duration; all restored after, so training leaves no global torch state
    behind."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cpu_threads(num_threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for training steps on CUDA only; float32 on CPU (CPU bf16 is slower and
    less exact). Scoring and early-stopping evaluation always run in float32: bf16 scores tie
    and reorder top-10 lists."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def architecture(n_dense: int, n_items: int, cfg: NeuralSettings) -> Architecture:
    return Architecture(
        n_dense=n_dense,
        n_items=n_items,
        user_buckets=cfg.user_buckets,
        seq_len=cfg.seq_len,
        item_dim=cfg.item_dim,
        user_dim=cfg.user_dim,
        hidden=cfg.hidden,
        dropout=cfg.dropout,
    )


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["dense"], batch["item"], batch["user"], batch["seq"])


def fp32(device: torch.device) -> contextlib.AbstractContextManager:
    """Scoring and evaluation run in float32 whatever autocast a caller has on: bf16 scores
    tie and reorder top-10 lists."""
    return torch.autocast(device_type=device.type, enabled=False)


def _on(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(
    model: nn.Module, data: ListTensors, device: torch.device, batch_lists: int = 256
) -> np.ndarray:
    """A score per row of `data`, in row order, in float32. `data` may be on the CPU or
    already on `device`: only each batch's gathered inputs move, never the whole frame."""
    model.eval()
    home = data.dense.device
    # One spare slot takes the padding's writes, so no boolean selection syncs per batch.
    out = torch.zeros(data.n_rows + 1, dtype=torch.float32, device=device)
    with fp32(device):
        for start in range(0, data.n_lists, batch_lists):
            lists = torch.arange(start, min(start + batch_lists, data.n_lists), device=home)
            batch = _on(data.batch(lists), device)
            scores = _forward(model, batch).float()
            slot = torch.where(batch["mask"], batch["rows"], data.n_rows)
            out[slot.flatten()] = scores.flatten()
    return out[: data.n_rows].cpu().numpy()


@torch.no_grad()
def evaluate_ndcg(
    model: nn.Module, data: ListTensors, device: torch.device, batch_lists: int = 256
) -> float:
    """Mean NDCG@10 over the lists with a relevant candidate (LightGBM's valid metric), in
    float32; one sync with the device at the end."""
    model.eval()
    home = data.dense.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    lists_seen = torch.zeros((), dtype=torch.float64, device=device)
    with fp32(device):
        for start in range(0, data.n_lists, batch_lists):
            lists = torch.arange(start, min(start + batch_lists, data.n_lists), device=home)
            batch = _on(data.batch(lists), device)
            scores = _forward(model, batch)
            keep = (batch["label"].sum(-1) > 0).double()
            total += (ndcg_at(scores, batch["label"], batch["mask"], EVAL_K).double() * keep).sum()
            lists_seen += keep.sum()
    return float(total / lists_seen.clamp(min=1.0))


@dataclass
class FitResult:
    model: ListRanker
    best_epoch: int  # epochs of training behind the returned weights
    valid_ndcg10: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0


def _fingerprint(arch: Architecture, cfg: NeuralSettings, seed: int, train: ListTensors) -> str:
    # What must match for a checkpoint to continue this training (not max_epochs: a stopped
    # run may be resumed with a longer budget).
    knobs = cfg.model_dump(exclude={"max_epochs", "device", "num_threads", "quantize"})
    payload = json.dumps(
        [arch.as_dict(), knobs, seed, train.n_rows, train.n_lists, float(train.label.sum())],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint, every tensor on the CPU whatever device wrote it or will resume
    it: `torch.set_rng_state` takes only a CPU byte tensor (map_location=cuda made resuming
    on a GPU raise), and load_state_dict moves weights and optimizer state to the model."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(
    train: ListTensors,
    arch: Architecture,
    cfg: NeuralSettings,
    seed: int,
    device: torch.device,
    valid: ListTensors | None = None,
    epochs: int | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> FitResult:
    """Train on `train`. With `valid`: stop after `patience` epochs without a better NDCG@10 and
    return the best epoch's weights; without: train exactly `epochs` (default max_epochs).

    `on_epoch(epoch, model)` is called after every epoch (after its checkpoint) with the
    epoch's weights; it may score the model (in eval mode, drawing no random numbers) and may
    raise to stop the training (a tuning trial's pruner does).

    With `checkpoint`, the state after every epoch (model, optimizer, epoch, early-stopping
    state, RNG) is written there, and a training that finds one resumes from it and ends with
    the same weights as an uninterrupted run.
    """
    max_epochs = epochs or cfg.max_epochs
    with torch_runtime(device, cfg.num_threads):
        torch.manual_seed(seed)
        model = ListRanker(arch).to(device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        fingerprint = _fingerprint(arch, cfg, seed, train)
        state = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": 0, "bad": 0, "history": []}
        best_weights = copy.deepcopy(model.state_dict())
        if checkpoint is not None and checkpoint.is_file():
            # On the CPU: the RNG states must stay CPU byte tensors (set_rng_state refuses a CUDA
            # one); load_state_dict moves the weights and optimizer state to the model's device.
            saved = load_checkpoint(checkpoint)
            if saved["fingerprint"] != fingerprint:
                raise CheckpointMismatch(
                    f"{checkpoint} was written by another configuration or data set"
                )
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            best_weights = saved["best_weights"]
            state = saved["progress"]
            torch.set_rng_state(saved["rng_cpu"])
            if device.type == "cuda" and saved.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(saved["rng_cuda"])
        resumed_from = state["epoch"]
        train_dev = train.to(device)
        # Which lists can teach anything, known on the CPU: skipping the others needs no sync
        # with the device at every step.
        has_positive = train.lists_with_positive()
        valid_dev = valid.to(device) if valid is not None else None
        while state["epoch"] < max_epochs and (valid is None or state["bad"] < cfg.patience):
            epoch = state["epoch"] + 1
            model.train()
            # The shuffle depends on (seed, epoch) only, so a resumed run draws the same order.
            order = torch.randperm(
                train.n_lists, generator=torch.Generator().manual_seed(seed * 1000 + epoch)
            )
            order_dev = order.to(device)
            losses = []
            for start in range(0, train.n_lists, cfg.batch_lists):
                if not bool(has_positive[order[start : start + cfg.batch_lists]].any()):
                    continue
                batch = train_dev.batch(order_dev[start : start + cfg.batch_lists])
                with autocast(device):
                    scores = _forward(model, batch)
                loss = listwise_loss(scores, batch["label"], batch["mask"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                losses.append(loss.detach())
            record = {"epoch": epoch, "loss": float(torch.stack(losses).mean()) if losses else 0}
            if valid_dev is not None:
                ndcg = evaluate_ndcg(model, valid_dev, device)
                record["valid_ndcg10"] = ndcg
                if ndcg > state["best_ndcg"]:
                    state.update(best_ndcg=ndcg, best_epoch=epoch, bad=0)
                    best_weights = copy.deepcopy(model.state_dict())
                else:
                    state["bad"] += 1
            else:
                state["best_epoch"] = epoch
                best_weights = model.state_dict()
            state["epoch"] = epoch
            state["history"] = [*state["history"], record]
            log.info(
                "network epoch %d/%d: loss %.4f%s",
                epoch,
                max_epochs,
                record["loss"],
                f", valid NDCG@10 {record['valid_ndcg10']:.4f}" if "valid_ndcg10" in record else "",
            )
            if checkpoint is not None:
                _save_checkpoint(
                    checkpoint,
                    {
                        "fingerprint": fingerprint,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "best_weights": best_weights,
                        "progress": state,
                        "rng_cpu": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                    },
                )
            if on_epoch is not None:
                on_epoch(epoch, model)
        model.load_state_dict(best_weights)
        model.eval()
    return FitResult(
        model=model,
        best_epoch=state["best_epoch"],
        valid_ndcg10=state["best_ndcg"] if valid is not None else None,
        history=state["history"],
        resumed_from=resumed_from,
    )


@dataclass(frozen=True)
class FitEstimate:
    """What a training of the network will cost when it runs every epoch it may, from a few
    timed steps on the device and thread count it will train with (an estimate: the machine's
    load may change while it trains)."""

    seconds: float  # every epoch it may run: early-stopping run (with its evaluation) + refit
    train_list_s: float  # one list through a training step (forward, backward, update)
    eval_list_s: float  # one list through an evaluation forward
    epochs: int
    tensor_mib: float | None = None  # the fit's tensors, when estimated before they are built

    def as_dict(self) -> dict[str, float]:
        out = {
            "seconds": round(self.seconds, 1),
            "train_list_ms": round(1000 * self.train_list_s, 4),
            "eval_list_ms": round(1000 * self.eval_list_s, 4),
            "epochs": self.epochs,
        }
        if self.tensor_mib is not None:
            out["tensor_mib"] = round(self.tensor_mib, 1)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Training batches an estimate runs: one untimed warm-up, then the timed ones.
PROBE_TRAIN_BATCHES = 5


def estimate_fit(
    train: ListTensors,
    valid: ListTensors,
    refit_lists: int,
    arch: Architecture,
    cfg: NeuralSettings,
    seed: int,
    device: torch.device,
    n_train_lists: int | None = None,
    n_valid_lists: int | None = None,
) -> FitEstimate:
    """Time training steps and evaluation batches of a throw-away network (after one untimed
    warm-up of each: PROBE_TRAIN_BATCHES batches in all) and extrapolate to the most the fit
    may run: `max_epochs` epochs over `train` (or `n_train_lists` lists, when `train` holds
    only the first ones) with an evaluation of `valid` (or `n_valid_lists`) each, then (with
    refit) `max_epochs` epochs over `refit_lists` lists. Draws from a forked RNG: the
    training that follows is unchanged."""
    eval_batch = 256
    with torch_runtime(device, cfg.num_threads):
        torch.manual_seed(seed)
        model = ListRanker(arch).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
        n_train = min(train.n_lists, PROBE_TRAIN_BATCHES * cfg.batch_lists)
        batches = [
            {
                k: v.to(device)
                for k, v in train.batch(torch.arange(s, min(s + cfg.batch_lists, n_train))).items()
            }
            for s in range(0, n_train, cfg.batch_lists)
        ]
        model.train()
        started, timed_lists = 0.0, 0
        for i, batch in enumerate(batches):
            if i == 1 or len(batches) == 1:
                _sync(device)
                started = time.perf_counter()
            with autocast(device):
                scores = _forward(model, batch)
            loss = listwise_loss(scores, batch["label"], batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if i >= 1 or len(batches) == 1:
                timed_lists += int(batch["rows"].shape[0])
        _sync(device)
        train_list_s = (time.perf_counter() - started) / max(timed_lists, 1)
        model.eval()
        n_valid = min(valid.n_lists, 3 * eval_batch)
        eval_batches = [
            {
                k: v.to(device)
                for k, v in valid.batch(torch.arange(s, min(s + eval_batch, n_valid))).items()
            }
            for s in range(0, n_valid, eval_batch)
        ]
        started, timed_lists = 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(eval_batches):
                if i == 1 or len(eval_batches) == 1:
                    _sync(device)
                    started = time.perf_counter()
                _forward(model, batch)
                if i >= 1 or len(eval_batches) == 1:
                    timed_lists += int(batch["rows"].shape[0])
        _sync(device)
        eval_list_s = (time.perf_counter() - started) / max(timed_lists, 1)
    epochs = cfg.max_epochs
    n_train_lists = train.n_lists if n_train_lists is None else n_train_lists
    n_valid_lists = valid.n_lists if n_valid_lists is None else n_valid_lists
    seconds = epochs * (n_train_lists * train_list_s + n_valid_lists * eval_list_s)
    if cfg.refit:
        seconds += epochs * refit_lists * train_list_s
    return FitEstimate(seconds, train_list_s, eval_list_s, epochs)


def quantized(model: ListRanker) -> nn.Module:
    """int8 dynamic quantization of the Linear layers, for CPU scoring (a copy)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
