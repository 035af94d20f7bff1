"""Item-side behaviour: the long tail of popularity, item-to-item transitions and repeat consumption.

Functions take the frame ``nightrec.behavior.analyze.prepare_events`` returns (categorical ids, sorted by
session and time, an integer ``__session`` column).
"""

import math

import numpy as np
import polars as pl

from nightrec.schema import EVENT_TYPE, ITEM_ID, USER_ID

SESSION = "__session"


def _rate(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def long_tail_metrics(df: pl.DataFrame, curve_points: int = 200) -> dict:
    """Share of events held by the top 1% and 10% of items, the Gini coefficient and the Lorenz-style curve."""
    counts = np.sort(df.group_by(ITEM_ID).len()["len"].to_numpy())[::-1].astype(np.float64)
    n, total = counts.size, counts.sum()
    cumulative = np.cumsum(counts) / total

    def top_share(fraction: float) -> float:
        return float(cumulative[max(1, math.ceil(n * fraction)) - 1])

    ascending = counts[::-1]
    gini = float(2 * np.sum(np.arange(1, n + 1) * ascending) / (n * total) - (n + 1) / n) if n > 1 else 0.0
    picks = np.unique(np.linspace(0, n - 1, num=min(n, curve_points)).round().astype(int))
    return {
        "items": n,
        "top1_share": top_share(0.01),
        "top10_share": top_share(0.10),
        "gini": gini,
        "top_item_events": int(counts[0]),
        "items_with_one_event": int((counts == 1).sum()),
        "curve": {
            "item_fraction": [float((i + 1) / n) for i in picks],
            "event_share": [float(cumulative[i]) for i in picks],
        },
    }


def browse_step(funnel: dict) -> str | None:
    """The event type transitions and repeats are measured on: the first present funnel step."""
    return funnel["present"][0] if funnel["present"] else None


def transition_metrics(df: pl.DataFrame, step: str | None, top: int) -> dict:
    """The most frequent item-to-next-item moves within a session (consecutive events of ``step``)."""
    base = df if step is None else df.filter(pl.col(EVENT_TYPE) == step)
    moves = base.select(
        pl.col(ITEM_ID).alias("from_item"),
        pl.col(ITEM_ID).shift(-1).alias("to_item"),
        (pl.col(SESSION).shift(-1) == pl.col(SESSION)).alias("same"),
    ).filter(pl.col("same") & (pl.col("from_item") != pl.col("to_item")))
    pairs = moves.group_by("from_item", "to_item").len()
    out_of = pairs.group_by("from_item").agg(pl.col("len").sum().alias("from_total"))
    best = (
        pairs.sort(["len", "from_item", "to_item"], descending=[True, False, False])
        .head(top)
        .join(out_of, on="from_item", how="left", maintain_order="left")
    )
    total = moves.height
    return {
        "event_type": step or "all",
        "transitions": total,
        "distinct_pairs": pairs.height,
        "top": [
            {
                "from_item": r["from_item"],
                "to_item": r["to_item"],
                "count": r["len"],
                "share": r["len"] / total,
                "share_of_from": r["len"] / r["from_total"],
            }
            for r in best.iter_rows(named=True)
        ],
    }


def repeat_metrics(df: pl.DataFrame, step: str | None) -> dict:
    """Repeat consumption: events on an item the user already had, and pairs seen in two or more sessions."""
    base = df if step is None else df.filter(pl.col(EVENT_TYPE) == step)
    # One integer per (user, item) hashes far faster than two columns; a pair spans two or more
    # sessions exactly when its first and last session differ.
    pair = pl.col(USER_ID).to_physical().cast(pl.UInt64) * (1 << 32) + pl.col(ITEM_ID).to_physical().cast(pl.UInt64)
    pairs = base.group_by(pair.alias("pair")).agg(
        pl.len().alias("events"), (pl.col(SESSION).min() != pl.col(SESSION).max()).alias("several")
    )
    return {
        "event_type": step or "all",
        "events": base.height,
        "user_item_pairs": pairs.height,
        "repeat_rate": _rate(base.height - pairs.height, base.height),
        "cross_session_repeat_rate": _rate(int(pairs["several"].sum()), pairs.height),
    }
