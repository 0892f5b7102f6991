"""The neural list ranker on CPU: inputs, learning, reproducibility, checkpoints, quantization,
blending; and the GPU path where CUDA exists."""

from __future__ import annotations

import copy
import datetime as dt
import sys
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from scipy.stats import kendalltau

from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID, VIEW
from tasks.rank.kinds.neural import NeuralScorer
from tasks.rank.neural.blend import blend, choose_weight, mean_ndcg10, zscore_per_list
from tasks.rank.neural.data import (
    PAD,
    UNKNOWN,
    ListTensors,
    build_tensors,
    dense_matrix,
    fit_preprocessor,
    item_index,
    recent_items,
)
from tasks.rank.neural.model import listwise_loss, ndcg_at
from tasks.rank.neural.train import (
    CheckpointMismatch,
    DeviceError,
    architecture,
    estimate_fit,
    evaluate_ndcg,
    fit,
    load_checkpoint,
    predict,
    quantized,
    resolve_device,
)
from tasks.settings import NeuralSettings

AS_OF = dt.datetime(2026, 3, 1)
CPU = torch.device("cpu")
CFG = NeuralSettings(
    num_threads=1, item_dim=8, user_dim=4, user_buckets=64, hidden=32, seq_len=5, batch_lists=16
)


def _shop(n_lists: int = 80, per_list: int = 12, n_items: int = 40, seed: int = 0):
    """Candidate lists whose relevant items follow one feature and the customer's last buys."""
    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{i:03d}" for i in range(n_lists)], per_list)
    items = np.concatenate(
        [rng.choice(n_items, per_list, replace=False) for _ in range(n_lists)]
    ).astype(str)
    signal = rng.normal(size=users.size)
    noise = rng.normal(size=users.size)
    rank_in_list = (
        pl.DataFrame({"u": users, "s": signal + 0.5 * rng.normal(size=users.size)})
        .select(pl.col("s").rank(descending=True).over("u"))
        .to_series()
        .to_numpy()
    )
    frame = pl.DataFrame(
        {
            USER_ID: users,
            ITEM_ID: items,
            "signal": signal,
            "noise": pl.Series(noise).set(pl.Series(rng.random(users.size) < 0.2), None),
            "label": (rank_in_list <= 2).astype(np.int32),
        }
    )
    # Each customer bought their two relevant items (and a random one) in the month before.
    bought = frame.filter(pl.col("label") == 1).select(USER_ID, ITEM_ID)
    extra = pl.DataFrame(
        {USER_ID: [f"u{i:03d}" for i in range(n_lists)], ITEM_ID: rng.integers(0, n_items, n_lists)}
    ).with_columns(pl.col(ITEM_ID).cast(pl.Utf8))
    history = pl.concat([bought, extra]).with_columns(
        pl.lit(PURCHASE).alias(EVENT_TYPE),
        (pl.lit(AS_OF) - pl.duration(days=pl.int_range(1, pl.len() + 1) % 20 + 1)).alias(TS),
    )
    return frame, history


def _tensors(frame: pl.DataFrame, events: pl.DataFrame):
    prep = fit_preprocessor(frame, ["signal", "noise"], events, CFG.user_buckets, CFG.seq_len)
    return prep, build_tensors(frame, events, prep, list_key=USER_ID, as_of=AS_OF)


def test_recent_items_are_point_in_time_newest_first_and_padded() -> None:
    events = pl.DataFrame(
        {
            USER_ID: ["a", "a", "a", "a", "a", "b"],
            ITEM_ID: ["x", "y", "x", "z", "w", "y"],
            EVENT_TYPE: [PURCHASE, PURCHASE, PURCHASE, VIEW, PURCHASE, PURCHASE],
            TS: [
                dt.datetime(2026, 2, 1),
                dt.datetime(2026, 2, 5),
                dt.datetime(2026, 2, 10),  # x again: newest purchase of x
                dt.datetime(2026, 2, 20),  # a view, not a purchase
                AS_OF,  # at as-of: the future
                dt.datetime(2026, 2, 28),
            ],
        }
    )
    frame = pl.DataFrame({USER_ID: ["a", "b", "c"], ITEM_ID: ["x", "y", "q"], "f": [1.0, 2, 3]})
    prep = fit_preprocessor(frame, ["f"], events, user_buckets=8, seq_len=3)
    assert prep.items == ["w", "x", "y"]  # purchased items, sorted; index = position + 2
    lists = pl.DataFrame({USER_ID: ["a", "b", "c"], "as_of": [AS_OF] * 3})
    seq = recent_items(events, lists, "as_of", prep)
    x, y = 3, 4
    assert seq.tolist() == [[x, y, PAD], [y, PAD, PAD], [PAD, PAD, PAD]]
    assert item_index(pl.Series(["y", "never-sold"]), prep).tolist() == [y, UNKNOWN]


def test_dense_matrix_standardises_signed_log_and_flags_nulls() -> None:
    train = pl.DataFrame({"a": [0.0, np.e - 1, None], "b": [1.0, 1.0, 1.0]})
    no_events = pl.DataFrame(schema={ITEM_ID: pl.Utf8, EVENT_TYPE: pl.Utf8})
    prep = fit_preprocessor(train, ["a", "b"], no_events, user_buckets=4, seq_len=2)
    assert prep.null_features == ["a"]
    # log1p: a -> 0, 1 (null left out): mean 0.5, sample std sqrt(0.5); b constant -> scale 1.
    assert prep.center == pytest.approx([0.5, np.log(2)])
    assert prep.scale == pytest.approx([np.sqrt(0.5), 1.0])
    got = dense_matrix(pl.DataFrame({"a": [-(np.e - 1), None], "b": [1.0, 1e30]}), prep)
    expected = [
        [(-1 - 0.5) / np.sqrt(0.5), 0.0, 0.0],
        [0.0, 8.0, 1.0],  # null -> 0 with its flag; a huge value is clipped at 8 deviations
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_listwise_loss_and_ndcg_match_hand_computed_values() -> None:
    scores = torch.tensor([[2.0, 0.0, 1.0, 9.0]])
    label = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])  # the 9.0 is padding
    logz = np.log(np.exp(2.0) + np.exp(0.0) + np.exp(1.0))
    expected_loss = -0.5 * ((0.0 - logz) + (1.0 - logz))
    assert float(listwise_loss(scores, label, mask)) == pytest.approx(expected_loss, rel=1e-6)
    # A list without a relevant candidate teaches nothing and does not dilute the mean.
    two = listwise_loss(
        torch.cat([scores, torch.tensor([[5.0, 1.0, 0.0, 0.0]])]),
        torch.cat([label, torch.zeros(1, 4)]),
        torch.cat([mask, torch.tensor([[True, True, False, False]])]),
    )
    assert float(two) == pytest.approx(expected_loss, rel=1e-6)
    # Order: 2.0 (miss), 1.0 (hit), 0.0 (hit).
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    assert float(ndcg_at(scores, label, mask, 10)[0]) == pytest.approx(dcg / (1 + 1 / np.log2(3)))


def test_a_tiny_training_run_learns_and_cpu_runs_reproduce_exactly() -> None:
    frame, events = _shop()
    prep, data = _tensors(frame, events)
    arch = architecture(prep.n_dense, prep.n_items, CFG)
    first = fit(data, arch, CFG, seed=1, device=CPU, epochs=8)
    losses = [h["loss"] for h in first.history]
    assert losses[-1] < 0.85 * losses[0]
    again = fit(data, arch, CFG, seed=1, device=CPU, epochs=8)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    # It ranks the relevant items well above chance on lists it was not trained on.
    test_frame, test_events = _shop(seed=5)
    test = build_tensors(test_frame, test_events, prep, list_key=USER_ID, as_of=AS_OF)
    scores = predict(first.model, test, CPU)
    keys = test_frame.get_column(USER_ID)
    labels = test_frame.get_column("label").to_numpy()
    random = mean_ndcg10(keys, np.random.default_rng(0).random(len(scores)), labels)
    assert mean_ndcg10(keys, scores, labels) > random + 0.25


def test_checkpoint_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    frame, events = _shop(n_lists=48)
    prep, data = _tensors(frame, events)
    valid_frame, valid_events = _shop(n_lists=24, seed=9)
    valid = build_tensors(valid_frame, valid_events, prep, list_key=USER_ID, as_of=AS_OF)
    arch = architecture(prep.n_dense, prep.n_items, CFG)
    cfg = CFG.model_copy(update={"patience": 10})
    whole = fit(data, arch, cfg, seed=3, device=CPU, valid=valid, epochs=4)
    ckpt = tmp_path / "run.ckpt"
    stopped = fit(data, arch, cfg, seed=3, device=CPU, valid=valid, epochs=2, checkpoint=ckpt)
    resumed = fit(data, arch, cfg, seed=3, device=CPU, valid=valid, epochs=4, checkpoint=ckpt)
    assert (stopped.resumed_from, resumed.resumed_from) == (0, 2)
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    # A checkpoint of another configuration is refused, not silently mixed in.
    with pytest.raises(CheckpointMismatch):
        fit(data, arch, cfg.model_copy(update={"learning_rate": 0.1}), 3, CPU, checkpoint=ckpt)


def test_int8_quantized_scoring_agrees_with_float_on_the_top_ranks() -> None:
    frame, events = _shop(n_lists=120)
    prep, data = _tensors(frame, events)
    model = fit(data, architecture(prep.n_dense, prep.n_items, CFG), CFG, 2, CPU, epochs=6).model
    exact = predict(model, data, CPU)
    approx = predict(quantized(model), data, CPU)
    assert not np.array_equal(exact, approx)  # it did quantize
    top5 = (
        pl.DataFrame(
            {USER_ID: frame.get_column(USER_ID), "i": range(len(exact)), "x": exact, "q": approx}
        )
        .with_columns(
            pl.col("x").rank("ordinal", descending=True).over(USER_ID).alias("e"),
            pl.col("q").rank("ordinal", descending=True).over(USER_ID).alias("a"),
        )
        .group_by(USER_ID)
        .agg(
            (
                pl.col("i").filter(pl.col("e") <= 5).is_in(pl.col("i").filter(pl.col("a") <= 5))
            ).mean()
        )
    )
    assert top5.get_column("i").mean() >= 0.9
    assert kendalltau(exact, approx).statistic >= 0.95


def test_blend_zscores_per_list_and_chooses_the_weight_on_validation() -> None:
    keys = pl.Series(["a", "a", "b", "b"])
    z = zscore_per_list(keys, np.array([1.0, 3.0, 5.0, 5.0]))
    np.testing.assert_allclose(z, [-1.0, 1.0, 0.0, 0.0])  # a constant list carries no order
    np.testing.assert_allclose(
        blend(keys, np.array([1.0, 3.0, 0, 1]), np.array([3.0, 1.0, 0, 1]), 0.75),
        [0.75 * -1 + 0.25 * 1, 0.75 * 1 + 0.25 * -1, -1.0, 1.0],  # b: both agree
    )
    labels = np.array([1, 0, 0, 1])
    good, bad = np.array([2.0, 1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0, 0.0])
    weight, tried = choose_weight(keys, good, bad, labels, grid=4)
    assert weight == 1.0 and tried[1.0] == pytest.approx(1.0)
    assert tried[0.0] == pytest.approx(1 / np.log2(3))
    weight, tried = choose_weight(keys, bad, good, labels, grid=4)
    # 0.25 on the bad ranker still orders both lists right; ties go to the first ranker.
    assert weight == 0.25 and tried[0.25] == tried[0.0] == pytest.approx(1.0)
    assert tried[0.5] < 1.0


def test_device_auto_falls_back_to_cpu_and_cuda_is_refused_without_it() -> None:
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == CPU
        with pytest.raises(DeviceError):
            resolve_device("cuda")


def _linear_dtypes(model: torch.nn.Module) -> tuple[list[torch.dtype], list]:
    """Record the output dtype of every Linear layer while the hooks are on."""
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    return seen, hooks


def test_scoring_and_evaluation_run_in_float32_even_under_a_bf16_autocast() -> None:
    frame, events = _shop(n_lists=40)
    prep, data = _tensors(frame, events)
    model = fit(data, architecture(prep.n_dense, prep.n_items, CFG), CFG, 1, CPU, epochs=2).model
    plain_scores, plain_ndcg = predict(model, data, CPU), evaluate_ndcg(model, data, CPU)
    seen, hooks = _linear_dtypes(model)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        scores, ndcg = predict(model, data, CPU), evaluate_ndcg(model, data, CPU)
    for hook in hooks:
        hook.remove()
    assert seen and set(seen) == {torch.float32}  # bf16 scores tie and reorder lists
    np.testing.assert_array_equal(scores, plain_scores)
    assert ndcg == plain_ndcg
    # evaluate_ndcg is the mean per-list NDCG@10 over lists with a relevant row, as blend's.
    keys = frame.get_column(USER_ID)
    assert ndcg == pytest.approx(
        mean_ndcg10(keys, plain_scores, frame.get_column("label").to_numpy()), rel=1e-5
    )


def test_a_checkpoint_loads_onto_the_cpu_with_a_cpu_rng_state(tmp_path: Path) -> None:
    frame, events = _shop(n_lists=24)
    prep, data = _tensors(frame, events)
    ckpt = tmp_path / "run.ckpt"
    fit(data, architecture(prep.n_dense, prep.n_items, CFG), CFG, 3, CPU, epochs=1, checkpoint=ckpt)
    saved = load_checkpoint(ckpt)

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from tensors(v)

    assert {t.device.type for t in tensors(saved)} == {"cpu"}
    rng = saved["rng_cpu"]
    assert rng.device.type == "cpu" and rng.dtype == torch.uint8  # what set_rng_state takes
    assert saved["rng_cuda"] is None  # a CPU run has no CUDA generator to restore
    torch.set_rng_state(rng)


def test_concatenated_window_tensors_score_like_each_window_alone() -> None:
    first, first_events = _shop(n_lists=20, per_list=12, seed=1)
    second, second_events = _shop(n_lists=15, per_list=9, seed=2)
    prep, a = _tensors(first, first_events)
    b = build_tensors(second, second_events, prep, list_key=USER_ID, as_of=AS_OF)
    both = ListTensors.concat([a, b])
    assert (both.n_lists, both.n_rows) == (35, 20 * 12 + 15 * 9)
    assert both.rows.shape[1] == 12 and int(both.rows[20:, 9:].max()) == -1  # padding widened
    assert int(both.rows[20, 0]) == 20 * 12  # the second part's rows come after the first's
    model = fit(a, architecture(prep.n_dense, prep.n_items, CFG), CFG, 1, CPU, epochs=1).model
    np.testing.assert_allclose(
        predict(model, both, CPU),
        np.concatenate([predict(model, a, CPU), predict(model, b, CPU)]),
        rtol=1e-6,
    )


def test_the_fit_estimate_extrapolates_timed_steps_and_leaves_the_rng_alone() -> None:
    frame, events = _shop(n_lists=64)
    prep, data = _tensors(frame, events)
    valid_frame, valid_events = _shop(n_lists=20, seed=4)
    valid = build_tensors(valid_frame, valid_events, prep, list_key=USER_ID, as_of=AS_OF)
    arch = architecture(prep.n_dense, prep.n_items, CFG)
    cfg = CFG.model_copy(update={"max_epochs": 7})
    state = torch.get_rng_state()
    est = estimate_fit(data, valid, 50, arch, cfg, seed=1, device=CPU)
    assert torch.equal(torch.get_rng_state(), state)
    assert est.epochs == 7 and est.train_list_s > 0 and est.eval_list_s > 0
    expected = 7 * (64 * est.train_list_s + 20 * est.eval_list_s) + 7 * 50 * est.train_list_s
    assert est.seconds == pytest.approx(expected)
    no_refit = estimate_fit(data, valid, 50, arch, cfg.model_copy(update={"refit": False}), 1, CPU)
    assert no_refit.seconds == pytest.approx(
        7 * (64 * no_refit.train_list_s + 20 * no_refit.eval_list_s)
    )


def test_the_int8_benchmark_times_cpu_models_on_cpu_tensors_from_any_device() -> None:
    """benchmarks/neural_quality.py once fed CUDA tensors to the CPU-only int8 model: its
    timing runs here with the network on the default device (CUDA where present)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "neural_quality.py"
    sys.path.insert(0, str(script.parent))
    try:
        spec = importlib.util.spec_from_file_location("neural_quality_benchmark", script)
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(script.parent))
    frame, events = _shop(n_lists=30)
    prep, data = _tensors(frame, events)
    device = resolve_device("auto")
    model = fit(data, architecture(prep.n_dense, prep.n_items, CFG), CFG, 1, device, epochs=1)
    scorer = NeuralScorer(model.model, prep, device, 1)
    rows = bench.int8_speed(scorer, frame, events, AS_OF, threads=(1,), repeats=2)
    assert [(r["threads"], r["rows"], r["repeats"]) for r in rows] == [(1, frame.height, 2)]
    assert len(rows[0]["float32_runs"]) == len(rows[0]["int8_runs"]) == 2
    assert rows[0]["speedup"] > 0 and rows[0]["int8_s"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_path_end_to_end(tmp_path: Path) -> None:
    """Every defect issue 15 found by reading the CUDA path, run where CUDA exists: training
    in bf16, resuming from a checkpoint (the RNG state must stay a CPU tensor), no host sync
    per training step, scoring and evaluation in float32 with only batches moved, and the
    CPU-only int8 model fed CPU tensors."""
    frame, events = _shop(n_lists=120)
    prep, data = _tensors(frame, events)
    arch = architecture(prep.n_dense, prep.n_items, CFG)
    cuda = torch.device("cuda")
    gpu = fit(data, arch, CFG, seed=1, device=cuda, epochs=8)
    assert next(gpu.model.parameters()).device.type == "cuda"
    losses = [h["loss"] for h in gpu.history]
    assert losses[-1] < 0.85 * losses[0]
    # Resume on the GPU from a checkpoint it wrote.
    ckpt = tmp_path / "gpu.ckpt"
    cfg = CFG.model_copy(update={"patience": 10})
    fit(data, arch, cfg, seed=2, device=cuda, valid=data, epochs=2, checkpoint=ckpt)
    saved = load_checkpoint(ckpt)
    assert saved["rng_cpu"].device.type == "cpu" and saved["rng_cuda"].device.type == "cpu"
    resumed = fit(data, arch, cfg, seed=2, device=cuda, valid=data, epochs=3, checkpoint=ckpt)
    assert resumed.resumed_from == 2 and len(resumed.history) == 3
    # Host syncs per epoch do not grow with the number of training steps.
    syncs = []
    for copies in (1, 3):
        wide = ListTensors.concat([data] * copies)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit(wide, arch, CFG, seed=1, device=cuda, epochs=1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs.append(sum("synchroniz" in str(w.message) for w in caught))
    assert syncs[1] == syncs[0], syncs
    # Scoring and evaluation in float32, from CPU tensors and from tensors on the device.
    seen, hooks = _linear_dtypes(gpu.model)
    on_gpu = predict(gpu.model, data, cuda)
    assert np.array_equal(on_gpu, predict(gpu.model, data.to(cuda), cuda))
    evaluate_ndcg(gpu.model, data.to(cuda), cuda)
    for hook in hooks:
        hook.remove()
    assert seen and set(seen) == {torch.float32}
    on_cpu = predict(copy.deepcopy(gpu.model).cpu(), data, CPU)  # the same weights
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-4)
    # The int8 model is a CPU model, whatever device trained the network.
    int8 = quantized(gpu.model)
    assert next(int8.parameters(), torch.zeros(1)).device.type == "cpu"
    approx = predict(int8, data, CPU)
    assert np.isfinite(approx).all() and kendalltau(approx, on_cpu).statistic >= 0.9


def test_lists_with_a_positive_are_known_without_the_device() -> None:
    # Three lists over five rows; list 2 is padding only after its first row.
    tensors = ListTensors(
        dense=torch.zeros(5, 1),
        item=torch.arange(5),
        label=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]),
        rows=torch.tensor([[0, 1], [2, 3], [4, -1]]),
        user=torch.zeros(3, dtype=torch.int64),
        seq=torch.zeros(3, 1, dtype=torch.int64),
    )
    assert tensors.lists_with_positive().tolist() == [True, False, False]
    relabelled = ListTensors(**{**tensors.__dict__, "label": torch.tensor([0.0] * 4 + [1.0])})
    assert relabelled.lists_with_positive().tolist() == [False, False, True]
