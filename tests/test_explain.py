"""Explanations of published rows (tasks/explain): hand-built frames, the expected reasons and
sentences, and LightGBM contributions computed for the published model rows only."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from tasks.candidates.generate import MISSING_RANK
from tasks.explain.reasons import (
    Contributions,
    contribution_matrix,
    contribution_model,
    explain_rows,
    fallback_sentence,
    top_contributions,
)
from tasks.rank.kinds.blend import BlendScorer
from tasks.rank.kinds.lightgbm import LightGBMScorer
from tasks.settings import CandidateSettings, ExplainSettings

M = MISSING_RANK
FEATURES = ["f1", "f2", "f3"]
FALLBACK_TEXT = fallback_sentence(5, True, None)


def _recs() -> pl.DataFrame:
    rows = [
        ("u1", "i1", 1, 5.0, "model"),
        ("u1", "i2", 2, 4.0, "model"),
        ("u1", "i3", 3, 3.0, "model"),
        ("u1", "i4", 4, 2.0, "model"),
        ("u1", "p1", 5, 1.0, "popularity_fallback"),
        ("u2", "i6", 1, 9.0, "model"),
        ("u2", "i7", 2, 8.0, "model"),
        ("u2", "i8", 3, 7.0, "model"),
        ("u2", "i1", 4, 6.0, "model"),
    ]
    return pl.DataFrame(
        rows, schema=["user_id", "item_id", "rank", "score", "source"], orient="row"
    ).with_columns(pl.col("rank").cast(pl.Int32))


def _candidates() -> pl.DataFrame:
    # user, item, hist, covis, ease, pop, anchor, orders, cadence, since_last, views, carts,
    # category share, trend
    rows = [
        ("u1", "i1", 1, M, M, M, None, 3, 21.2, 5.4, 0, 0, 0.5, 1.0),
        ("u1", "i2", M, 1, M, M, "i9", 0, None, None, 0, 0, 0.0, 1.0),
        ("u1", "i3", M, M, 2, 1, None, 0, None, None, 0, 0, 0.35, 1.0),
        ("u1", "i4", M, M, M, 3, None, 0, None, None, 0, 0, 0.1, 2.0),
        ("u2", "i6", 1, M, M, M, None, 0, None, None, 2, 1, 0.0, 1.0),
        ("u2", "i7", M, M, M, 2, None, 0, None, None, 0, 0, 0.5, 3.0),
        ("u2", "i8", M, M, M, 4, None, 0, None, None, 0, 0, 0.0, 1.0),
        ("u2", "i1", 3, M, 1, M, None, 1, None, 0.4, 0, 0, 0.2, 1.0),
        # candidates that were not published: never explained
        *(
            (f"u{n % 2 + 1}", f"x{n}", M, M, M, 9, None, 0, None, None, 0, 0, 0.0, 1.0)
            for n in range(20)
        ),
    ]
    columns = [
        "user_id", "item_id", "hist_rank", "covis_rank", "ease_rank", "pop_rank",
        "covis_anchor", "ui_orders", "ui_cadence", "ui_days_since_last", "ui_views_30d",
        "ui_carts_30d", "uc_share", "i_trend",
    ]  # fmt: skip
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    rng = np.random.default_rng(0)
    return frame.with_columns(
        pl.Series(name, rng.normal(size=frame.height)) for name in FEATURES
    ).with_columns(pl.col("covis_anchor").cast(pl.Utf8), pl.col("ui_cadence").cast(pl.Float64))


EXPECTED = [
    ("repurchase", "bought 3 times, about every 21 days, last 5 days ago"),
    ("bought-together", "often bought together with i9, which you bought"),
    (
        "similar-item",
        "customers who bought what you bought also buy it; its category is 35% of your purchases",
    ),
    ("trending", "#3 most bought in the last 30 days, and selling faster this week"),
    ("fallback", FALLBACK_TEXT),
    ("viewed", "viewed 2 times and put in the cart once in the last 30 days"),
    ("popular-in-category", "#2 most bought in the last 30 days, in a category that is 50% of "
     "your purchases"),
    ("popular", "#4 most bought in the last 30 days"),
    # hist (2 / (10 + 3) = 0.154) beats ease (1 / (10 + 1) = 0.091)
    ("repurchase", "bought once, last 0 days ago"),
]  # fmt: skip


class Recording:
    """A real booster that remembers the matrices it was asked to explain."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self.calls: list[tuple[tuple[int, ...], str]] = []

    def predict(
        self, matrix: np.ndarray, pred_contrib: bool = False, pred_leaf: bool = False
    ) -> np.ndarray:
        kind = "contrib" if pred_contrib else "leaf" if pred_leaf else "score"
        self.calls.append((matrix.shape, kind))
        return self.booster.predict(matrix, pred_contrib=pred_contrib, pred_leaf=pred_leaf)

    def dump_model(self) -> dict:
        return self.booster.dump_model()


def _booster() -> lgb.Booster:
    """f1 decides the label; f2 and f3 are never split on (zero contribution)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    x[:, 1:] = 0.0
    y = (x[:, 0] > 0).astype(float)
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1, "seed": 1}
    return lgb.train(params, lgb.Dataset(x, y, feature_name=FEATURES), num_boost_round=5)


def test_reasons_and_details_from_the_best_source_and_the_features() -> None:
    out = explain_rows(
        _recs(), _candidates(), None, CandidateSettings(), ExplainSettings(), FALLBACK_TEXT
    )
    assert out.select("user_id", "item_id", "rank", "score", "source").equals(_recs())
    assert list(zip(out["reason"], out["reason_detail"], strict=True)) == EXPECTED
    assert out.get_column("reason_features").null_count() == out.height  # no model given


@pytest.mark.parametrize(("method", "call"), [("path", "leaf"), ("shap", "contrib")])
def test_contributions_are_computed_for_the_published_model_rows_only(
    method: str, call: str
) -> None:
    recording = Recording(_booster())
    model = Contributions(recording, FEATURES)
    out = explain_rows(
        _recs(),
        _candidates(),
        model,
        CandidateSettings(),
        ExplainSettings(method=method),
        FALLBACK_TEXT,
    )
    # 8 model rows of 28 candidates (and not the padded row): one call, 8 rows, 3 features.
    assert recording.calls == [((8, 3), call)]
    texts = out.get_column("reason_features").to_list()
    assert texts[4] is None  # the fallback row
    for text in texts[:4] + texts[5:]:
        names = [part.split(":")[0] for part in text.split(";")]
        # f1 carries everything; f2, f3 tie at zero and keep the model's order
        assert names == ["f1", "f2", "f3"]
        assert text.endswith("f2:+0.000;f3:+0.000")
    # Either way the f1 contribution is the whole raw score less the model's expected score.
    row = _candidates().filter(pl.col("item_id") == "i1", pl.col("user_id") == "u1")
    matrix = row.select(pl.col(FEATURES).cast(pl.Float32)).to_numpy()
    expected = recording.booster.predict(matrix)[0] - _expected_score(recording.booster)
    assert texts[0].startswith(f"f1:{expected:+.3f};")
    # Turned off: the same reasons, no contributions, the booster never asked.
    quiet = Recording(_booster())
    off = explain_rows(
        _recs(),
        _candidates(),
        Contributions(quiet, FEATURES),
        CandidateSettings(),
        ExplainSettings(enabled=False),
        FALLBACK_TEXT,
    )
    assert quiet.calls == [] and off.get_column("reason_features").null_count() == off.height
    assert off.drop("reason_features").equals(out.drop("reason_features"))


def _expected_score(booster: lgb.Booster) -> float:
    return sum(t["tree_structure"]["internal_value"] for t in booster.dump_model()["tree_info"])


def test_path_credits_add_up_to_the_score_and_match_a_hand_walked_tree() -> None:
    """Two features that both matter: each row's credits sum to its raw score less the
    expected score; and for a one-tree model, a hand walk of the dump gives the credits."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2))
    y = 2 * x[:, 0] + x[:, 1]
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1, "num_leaves": 4}
    for rounds in (1, 20):
        booster = lgb.train(params, lgb.Dataset(x, y, feature_name=["a", "b"]), rounds)
        model = Contributions(booster, ["a", "b"])
        credits = contribution_matrix(model, x[:50].astype(np.float32), "path")
        raw = booster.predict(x[:50].astype(np.float32))
        np.testing.assert_allclose(credits.sum(axis=1), raw - _expected_score(booster))
    one = lgb.train(params, lgb.Dataset(x, y, feature_name=["a", "b"]), 1)
    point = x[:1].astype(np.float32)
    node, walked = one.dump_model()["tree_info"][0]["tree_structure"], [0.0, 0.0]
    while "split_feature" in node:
        go_left = point[0, node["split_feature"]] <= node["threshold"]
        child = node["left_child"] if go_left else node["right_child"]
        value = child.get("internal_value", child.get("leaf_value"))
        walked[node["split_feature"]] += value - node["internal_value"]
        node = child
    got = contribution_matrix(Contributions(one, ["a", "b"]), point, "path")[0]
    np.testing.assert_allclose(got, walked)


def test_top_contributions_keeps_n_by_magnitude() -> None:
    model = contribution_model(LightGBMScorer(_booster(), FEATURES))
    assert model is not None and model.features == FEATURES
    rows = pl.DataFrame({"f1": [2.0, -2.0], "f2": [0.0, 0.0], "f3": [0.0, 0.0]})
    one = top_contributions(model, rows, 1).to_list()
    assert [t.split(":")[0] for t in one] == ["f1", "f1"]
    assert one[0].split(":")[1].startswith("+") and one[1].split(":")[1].startswith("-")


def test_the_blend_is_explained_by_its_lightgbm_part_and_a_network_by_none() -> None:
    booster = _booster()
    blend = BlendScorer(LightGBMScorer(booster, FEATURES), neural=object(), weight=0.4)
    model = contribution_model(blend)
    assert model is not None and model.booster is booster and model.features == FEATURES
    assert contribution_model(object()) is None


def test_baseline_and_padding_rows() -> None:
    recs = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["a", "p", "p"],
            "rank": [1, 2, 1],
            "score": [3.0, 1.0, 0.0],
            "source": ["baseline-repurchase", "popularity_fallback", "popularity_fallback"],
        }
    )
    text = fallback_sentence(2, False, 0.5)
    assert text == (
        "one of the most bought items lately (differentially private counts, epsilon 0.5): "
        "no model could serve tonight"
    )
    out = explain_rows(
        recs, None, None, CandidateSettings(), ExplainSettings(), text, "baseline-repurchase"
    )
    assert out.get_column("reason").to_list() == ["repurchase", "fallback", "fallback"]
    assert out.get_column("reason_detail").to_list() == [
        "you bought it before (the repurchase baseline served: no model tonight)",
        text,
        text,
    ]


def test_model_rows_without_a_candidate_frame_still_get_a_reason() -> None:
    out = explain_rows(
        _recs().head(2), None, None, CandidateSettings(), ExplainSettings(), FALLBACK_TEXT
    )
    assert out.get_column("reason").to_list() == ["popular", "popular"]
    assert (
        out.get_column("reason_detail").to_list()
        == ["ranked by the model among your candidates"] * 2
    )
