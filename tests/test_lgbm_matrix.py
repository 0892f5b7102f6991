"""The LightGBM training matrix, filled a column at a time in the training order, is exactly
the whole float32 matrix gathered in that order (nulls as NaN, integers and float64 cast to
float32 the same way)."""

from __future__ import annotations

import numpy as np
import polars as pl

from tasks.rank.lgbm import _float32_matrix, ordered_float32_matrix


def test_ordered_matrix_equals_the_gathered_whole_matrix() -> None:
    rng = np.random.default_rng(3)
    n = 257
    frame = pl.DataFrame(
        {
            "f64": rng.normal(size=n) * 1e6,
            "f32": pl.Series(rng.normal(size=n), dtype=pl.Float32),
            "i32": pl.Series(rng.integers(-1000, 1000, size=n), dtype=pl.Int32),
            "i8": pl.Series(rng.integers(0, 2, size=n), dtype=pl.Int8),
            "with_nulls": [None if i % 7 == 0 else float(i) / 3 for i in range(n)],
            "int_nulls": pl.Series([None if i % 5 == 0 else i for i in range(n)], dtype=pl.Int64),
        }
    )
    features = ["i8", "f64", "with_nulls", "f32", "int_nulls", "i32"]
    order = rng.permutation(n)
    matrix = ordered_float32_matrix(frame, features, order)
    expected = np.take(_float32_matrix(frame, features), order, axis=0)
    assert matrix.dtype == np.float32 and matrix.shape == (n, len(features))
    assert matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, expected)  # NaN where null, in the same cells
    assert np.isnan(matrix[:, 2]).sum() == len(range(0, n, 7))
    # By hand: row 0 of the ordered matrix is the frame's row order[0].
    row = frame.row(int(order[0]), named=True)
    assert matrix[0, 1] == np.float32(row["f64"])
    assert matrix[0, 5] == np.float32(row["i32"])
