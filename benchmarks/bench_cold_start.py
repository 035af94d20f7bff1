"""Cold start on MovieLens-100k with its item and user files: the platform's published table for
cold users and new items, against global popularity, on a temporal split.

Protocol (every list is the table ``build_recommendations`` publishes, evaluated by
``nightrec.evaluation.holdout.published_metrics``):
- cut-off T at the ``--test-quantile`` of time (validation: ``--valid-quantile``, used alone to
  pick ``metadata.content_weight`` with ``--tune``); the night sees every event before T;
- **cold users**: users whose first event is at or after T. Each reveals its first n events
  (n = 1, 2: its "training events", added to the night) and its next event is the target.
  With ``popularity.min_history: 3`` they take the cold path: the content list re-ranking their
  segment's popularity (``--segment-column`` of ml-100k.user) by their items' attributes;
  against global popularity with no metadata;
- **new items**: the targets are every (user, item) from T on of the users with events before
  T whose item had no event before T. Popularity cannot list them (recall 0 by construction);
  the table with ``recommend.new_item_slots`` can.

    make bench-data && python benchmarks/bench_cold_start.py
"""

import argparse
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nightrec.config import NightrecConfig
from nightrec.evaluation.holdout import published_metrics
from nightrec.fallback.recommend import build_recommendations
from nightrec.ingest.readers import read_events
from nightrec.schema import ITEM_ID, TIMESTAMP, USER_ID

DATA = Path("bench-data/ml-100k")


def split_at(events: pl.DataFrame, quantile: float) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    """(events before T, events from T on, T) for T the ``quantile`` of the event times."""
    cut = events.get_column(TIMESTAMP).sort()[int(quantile * (events.height - 1))]
    return events.filter(pl.col(TIMESTAMP) < cut), events.filter(pl.col(TIMESTAMP) >= cut), cut


def cold_user_targets(before: pl.DataFrame, after: pl.DataFrame, reveal: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(revealed events, targets): first ``reveal`` events and the next one of every new user."""
    new = after.join(before.select(USER_ID).unique(), on=USER_ID, how="anti").sort(USER_ID, TIMESTAMP, ITEM_ID)
    numbered = new.with_columns(pl.int_range(pl.len()).over(USER_ID).alias("__n"))
    enough = numbered.filter(pl.col("__n") == reveal).select(USER_ID, ITEM_ID)
    revealed = numbered.filter(pl.col("__n") < reveal).join(enough, on=USER_ID, how="semi").drop("__n")
    return revealed, enough


def cold_users(before, after, cut, k, weight, segment, reveal) -> dict[str, dict]:
    revealed, targets = cold_user_targets(before, after, reveal)
    night = pl.concat([before, revealed])
    run_date = (cut + timedelta(days=1)).date()
    users_file = str(DATA / "ml-100k.user")
    arms = {
        "global popularity": {},
        "segment popularity": {"popularity": {"users_file": users_file, "segment_column": segment}},
        "content (cold path)": {
            "popularity": {"users_file": users_file, "segment_column": segment},
            "metadata": {"items_file": str(DATA / "ml-100k.item"), "content_weight": weight},
        },
        "content, no segments": {"metadata": {"items_file": str(DATA / "ml-100k.item"), "content_weight": weight}},
    }
    out = {}
    for name, settings in arms.items():
        config = _config(k, settings)
        recs = build_recommendations(night, run_date, config)
        out[name] = published_metrics(recs, targets, k=10)
    return out


def _config(k: int, settings: dict) -> NightrecConfig:
    popularity = {"window_days": 3650, "half_life_days": 3650.0, "min_history": 3, **settings.get("popularity", {})}
    return NightrecConfig.model_validate({**settings, "k": k, "popularity": popularity})


def new_items(before, after, cut, k, slots) -> dict[str, dict]:
    """Recall@20 of the new-item targets, popularity vs new-item slots: every (user, item) from T
    on of a user known before T whose item had no event before T."""
    known = after.join(before.select(USER_ID).unique(), on=USER_ID, how="semi")
    cold = known.join(before.select(ITEM_ID).unique(), on=ITEM_ID, how="anti").select(USER_ID, ITEM_ID).unique()
    run_date = (cut + timedelta(days=1)).date()
    out = {}
    for name, settings in {
        "popularity": {},
        f"new_item_slots={slots}": {
            "metadata": {"items_file": str(DATA / "ml-100k.item")},
            "recommend": {"new_item_slots": slots, "new_item_days": 1.0},
        },
    }.items():
        config = _config(k, settings)
        config = config.model_copy(update={"popularity": config.popularity.model_copy(update={"min_history": 1})})
        recs = build_recommendations(before, run_date, config)
        out[name] = {"new-item targets": cold.height, **published_metrics(recs, cold, k=20)}
    return out


def hybrid_new_items(before, after, cut, slots, epochs: int, seed: int) -> dict:
    """Recall@20 of the new-item targets when the slots go to the new items a hybrid LSTM
    (``model.item_attributes``, trained on the events before T) scores highest for each user."""
    from lightning_modules.new_items import score_new_items
    from lightning_modules.train import fit
    from nightrec.metadata.tables import read_item_table
    from nightrec.sequences.build import build_sequences, write_sequences

    known = after.join(before.select(USER_ID).unique(), on=USER_ID, how="semi")
    cold = known.join(before.select(ITEM_ID).unique(), on=ITEM_ID, how="anti").select(USER_ID, ITEM_ID).unique()
    config = NightrecConfig.model_validate(
        {
            "k": 20,
            "metadata": {"items_file": str(DATA / "ml-100k.item")},
            "model": {"family": "lstm", "item_attributes": True},
            # a fixed number of epochs, not a time budget: the same work on a loaded machine
            "train": {"epochs": epochs, "max_minutes": None, "refit": False, "seed": seed, "num_threads": 2},
        }
    )
    table = read_item_table(config.metadata)
    new = [i for i in table.ids.to_list() if i not in set(before.get_column(ITEM_ID).unique().to_list())]
    with tempfile.TemporaryDirectory() as tmp:
        seqs = write_sequences(build_sequences(before, config.sequences), Path(tmp) / "sequences")
        fit(config, seqs, Path(tmp) / "model")
        users = before.sort(USER_ID, TIMESTAMP, ITEM_ID).group_by(USER_ID, maintain_order=True).agg(pl.col(ITEM_ID))
        histories = [h[-config.sequences.max_len :] for h in users.get_column(ITEM_ID).to_list()]
        scores = score_new_items(Path(tmp) / "model", histories, new, table)
    top = scores.topk(slots, dim=1).indices.numpy()
    picks = pl.DataFrame(
        {USER_ID: users.get_column(USER_ID).to_list(), ITEM_ID: [[new[j] for j in row] for row in top]}
    ).explode(ITEM_ID)
    found = cold.join(picks, on=[USER_ID, ITEM_ID], how="semi").height
    return {"new-item targets": cold.height, "recall@20": found / max(cold.height, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-quantile", type=float, default=0.8)
    parser.add_argument("--valid-quantile", type=float, default=0.6)
    parser.add_argument("--segment-column", default="occupation")
    parser.add_argument(
        "--content-weight", default="auto", help="metadata.content_weight: a number, or auto (chosen by each night)"
    )
    parser.add_argument("--tune", action="store_true", help="Pick the content weight on the validation cut-off.")
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument(
        "--hybrid-epochs", type=int, default=0, help="Also train a hybrid LSTM this many epochs to pick the new items."
    )
    parser.add_argument("--seeds", type=int, default=3, help="Seeds of the hybrid LSTM.")
    args = parser.parse_args()
    events = read_events(DATA / "ml-100k.inter", "recbole")
    weight = args.content_weight
    if args.tune:
        before, after, cut = split_at(events, args.valid_quantile)
        scores = {}
        for w in (0.0, 0.1, 0.3, 0.5, 1.0, 2.0):
            runs = [cold_users(before, after, cut, 20, w, args.segment_column, n) for n in (1, 2)]
            scores[w] = sum(r["content (cold path)"]["ndcg@10"] for r in runs) / 2
            print(f"valid content_weight={w}: cold-user NDCG@10 {scores[w]:.4f}")
        weight = max(scores, key=scores.get)
    before, after, cut = split_at(events, args.test_quantile)
    print(
        f"test cut-off {cut:%Y-%m-%d %H:%M}: {before.height} events before, {after.height} after; content_weight {weight}"
    )
    for reveal in (1, 2):
        arms = cold_users(before, after, cut, 20, weight, args.segment_column, reveal)
        base = arms["global popularity"]["ndcg@10"]
        print(f"\ncold users with {reveal} training event(s): {arms['global popularity']['users']} users")
        for name, m in arms.items():
            change = f"{m['ndcg@10'] / base - 1:+.1%}" if base else "-"
            print(f"  {name:24s} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['recall@10']:.4f}  vs global popularity {change}")
    print()
    for name, m in new_items(before, after, cut, 20, args.slots).items():
        print(f"new items, {name:20s} recall@20 {m['recall@20']:.4f} over {m['new-item targets']} new-item targets")
    catalogue = pl.read_csv(DATA / "ml-100k.item", separator="\t", columns=[0], infer_schema=False).to_series()
    n_new = catalogue.filter(~catalogue.is_in(before.get_column(ITEM_ID).unique().implode())).len()
    print(
        f"new items in the catalogue at T: {n_new}; {args.slots} picked at random would find {args.slots / n_new:.4f}"
    )
    if args.hybrid_epochs:
        found = []
        for seed in range(args.seeds):
            m = hybrid_new_items(before, after, cut, args.slots, args.hybrid_epochs, seed)
            found.append(m["recall@20"])
            print(
                f"new items, hybrid LSTM seed {seed}     recall@20 {m['recall@20']:.4f} over {m['new-item targets']} targets"
            )
        print(
            f"new items, hybrid LSTM, {args.slots} slots: recall@20 {np.mean(found):.4f} ± {np.std(found):.4f} ({args.seeds} seeds)"
        )


if __name__ == "__main__":
    main()
