"""Candidate recall: how much of the horizon's truth each retrieval source can reach.

Pure functions over the frame `generate_candidates` emits: one row per (user_id, item_id)
with a `<source>_rank` column per source (MISSING_RANK when the source did not propose the
item) and `merged_rank`, the order of the merged list. Recall@N of a source is the number of
truth pairs found among the source's top-N items per user, divided by all truth pairs of the
evaluated users (pooled over pairs, so customers who buy many items weigh more); every user
counts, including those a source has nothing for. `user_recall@N` is the evaluation
protocol's Recall@N instead: each evaluated customer's hits / |truth|, averaged over them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import polars as pl

from tasks.constants import ITEM_ID, USER_ID
from tasks.settings import CandidateSettings

MERGED = "merged"


def _sources(candidates: pl.DataFrame) -> list[str]:
    """Sources named by `<source>_rank` columns, merged last."""
    names = [c.removesuffix("_rank") for c in candidates.columns if c.endswith("_rank")]
    return [n for n in names if n != MERGED] + ([MERGED] if MERGED in names else [])


def candidate_recall(
    candidates: pl.DataFrame,
    truth: pl.DataFrame,
    users: pl.Series | Iterable[str],
    ns: Sequence[int] = (20, 50, 100, 200),
    missing_rank: int | None = None,
) -> pl.DataFrame:
    """Rows: one per source (and "merged"); columns: source, users, truth, recall@N for each
    N in `ns`, recall@all (every item the source proposes) and candidates_per_user (mean
    number of items the source proposes per evaluated user).

    A rank counts as present when it is below `missing_rank` (default: the generator's
    MISSING_RANK).
    """
    if missing_rank is None:
        from tasks.candidates.generate import MISSING_RANK

        missing_rank = MISSING_RANK
    user_frame = pl.DataFrame({USER_ID: pl.Series(list(users), dtype=pl.Utf8)}).unique()
    n_users = user_frame.height
    truth = truth.select(USER_ID, ITEM_ID).unique().join(user_frame, on=USER_ID, how="semi")
    n_truth = truth.height
    per_user_truth = truth.group_by(USER_ID).len("n_truth")
    cands = candidates.join(user_frame, on=USER_ID, how="semi")
    hits = cands.join(truth, on=[USER_ID, ITEM_ID], how="semi")
    rows = []
    for source in _sources(candidates):
        rank = pl.col(f"{source}_rank")
        present = rank < missing_rank
        row: dict[str, object] = {"source": source, "users": n_users, "truth": n_truth}
        for n in ns:
            found = hits.filter(present & (rank <= n))
            row[f"recall@{n}"] = found.height / n_truth if n_truth else 0.0
            row[f"user_recall@{n}"] = _mean_user_recall(found, per_user_truth, n_users)
        row["recall@all"] = hits.filter(present).height / n_truth if n_truth else 0.0
        row["candidates_per_user"] = cands.filter(present).height / n_users if n_users else 0.0
        rows.append(row)
    return pl.DataFrame(rows)


def _mean_user_recall(found: pl.DataFrame, per_user_truth: pl.DataFrame, n_users: int) -> float:
    """Protocol Recall: sum over customers of hits / |truth|, over all evaluated customers
    (one without truth in the window, or without candidates, adds 0 to the sum)."""
    if not n_users:
        return 0.0
    hits = found.group_by(USER_ID).len("n_hits").join(per_user_truth, on=USER_ID)
    return float((hits.get_column("n_hits") / hits.get_column("n_truth")).sum()) / n_users


def recall_ceiling(
    candidates: pl.DataFrame,
    truth: pl.DataFrame,
    users: pl.Series | Iterable[str],
    ns: Sequence[int] = (20, 50, 100, 200),
) -> pl.DataFrame:
    """What a perfect order could reach: rows "union" (each customer's best N chosen from
    every candidate any source proposes) and "all items" (chosen from the whole catalog, so
    only the N cap binds). Recall@N = sum over users of min(N, hits) / all truth pairs, with
    the same users and truth as `candidate_recall`; user_recall@N = mean over the evaluated
    users of min(N, hits) / |truth|."""
    user_frame = pl.DataFrame({USER_ID: pl.Series(list(users), dtype=pl.Utf8)}).unique()
    truth = truth.select(USER_ID, ITEM_ID).unique().join(user_frame, on=USER_ID, how="semi")
    n_truth = truth.height
    found = {
        "union": candidates.select(USER_ID, ITEM_ID)
        .unique()
        .join(truth, on=[USER_ID, ITEM_ID], how="semi")
        .group_by(USER_ID)
        .len(),
        "all items": truth.group_by(USER_ID).len(),
    }
    per_user_truth = truth.group_by(USER_ID).len("n_truth")
    n_users = user_frame.height
    rows = []
    for name, per_user in found.items():
        row: dict[str, object] = {"ceiling": name, "users": n_users, "truth": n_truth}
        per_user = per_user.join(per_user_truth, on=USER_ID)
        for n in ns:
            reachable = per_user.get_column("len").clip(upper_bound=n)
            row[f"recall@{n}"] = reachable.sum() / n_truth if n_truth else 0.0
            share = (reachable / per_user.get_column("n_truth")).sum()
            row[f"user_recall@{n}"] = float(share) / n_users if n_users else 0.0
        rows.append(row)
    return pl.DataFrame(rows)


def per_customer_recall(
    candidates: pl.DataFrame, truth: pl.DataFrame, users: pl.Series | Iterable[str]
) -> float:
    """The protocol's Recall of a candidate set: mean over `users` of |candidates & truth| /
    |truth|. Every customer counts: one without candidates (not served) or without truth
    (nothing to find) adds 0."""
    user_frame = pl.DataFrame({USER_ID: pl.Series(list(users), dtype=pl.Utf8)}).unique()
    truth = truth.select(USER_ID, ITEM_ID).unique().join(user_frame, on=USER_ID, how="semi")
    found = candidates.select(USER_ID, ITEM_ID).unique().join(truth, on=[USER_ID, ITEM_ID])
    return _mean_user_recall(found, truth.group_by(USER_ID).len("n_truth"), user_frame.height)


def merged_recall_summary(
    past: pl.DataFrame,
    truth: pl.DataFrame,
    users: pl.Series,
    served: pl.Series,
    as_of: datetime,
    cfg: CandidateSettings,
    n: int = 100,
) -> dict[str, float | int]:
    """Per-customer recall@n of the merged candidate list the ranker gets, and the union's
    ceiling (a perfect order of every candidate any source proposes, uncapped), over
    `users`; candidates are generated from `past` for the `served` customers only (the
    others count 0, as the run gives them no candidates)."""
    from tasks.candidates.generate import generate_candidates

    served = served.filter(served.is_in(users.implode()))
    merged = generate_candidates(past, served, as_of, cfg)
    union = generate_candidates(past, served, as_of, cfg.model_copy(update={"max_per_user": 10**9}))
    recall = candidate_recall(merged, truth, users, (n,))
    row = recall.filter(pl.col("source") == MERGED).row(0, named=True)
    ceiling = recall_ceiling(union, truth, users, (n,))
    union_row = ceiling.filter(pl.col("ceiling") == "union").row(0, named=True)
    return {
        "n": n,
        "users": len(users),
        "served": len(served),
        f"merged_user_recall@{n}": float(row[f"user_recall@{n}"]),
        f"union_ceiling_user_recall@{n}": float(union_row[f"user_recall@{n}"]),
        "merged_per_user": merged.height / max(len(served), 1),
        "union_per_user": union.height / max(len(served), 1),
    }
