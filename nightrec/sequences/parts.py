"""A sharded sequence build's intermediate files: each shard's ordered rows (phase one) and the
vocabularies every shard numbers its sequences with (the reduce), under
``runs/<date>/shards/sequences/``. Workers exchange these paths, never frames."""

import json
from pathlib import Path

import polars as pl

from nightrec.ingest.runs import write_parquet_atomic
from nightrec.layout import ITEMS_FILE, USERS_FILE
from nightrec.sequences.build import OrderedRows, Vocabularies
from nightrec.sequences.vocab import ITEMS_SCHEMA, USERS_SCHEMA

_FRAMES = ("ordered", "item_codes", "user_codes")
_META = "meta.json"
_DROPPED = "dropped.json"


def save_rows(rows: OrderedRows, out: Path) -> Path:
    """One shard's ``OrderedRows`` as a folder of Parquet files and ``meta.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in _FRAMES:
        getattr(rows, name).write_parquet(out / f"{name}.parquet")
    rows.item_counts().write_parquet(out / "item_counts.parquet")
    rows.first_seen().write_parquet(out / "first_seen.parquet")
    (out / _META).write_text(json.dumps({"events_in": rows.events_in, "dropped": rows.dropped}))
    return out


def load_rows(folder: Path) -> OrderedRows:
    meta = json.loads((Path(folder) / _META).read_text())
    frames = {name: pl.read_parquet(Path(folder) / f"{name}.parquet") for name in _FRAMES}
    return OrderedRows(**frames, events_in=meta["events_in"], dropped=meta["dropped"])


def save_sequences(seqs: pl.DataFrame, dropped: dict[str, int], folder: Path) -> Path:
    """Phase two's output beside the shard's rows: its users' sequences and the rows it dropped."""
    (Path(folder) / _DROPPED).write_text(json.dumps(dropped))
    return write_parquet_atomic(seqs, Path(folder) / "sequences.parquet")


def shard_totals(folders: list[Path]) -> tuple[int, dict[str, int]]:
    """Events read and rows dropped (by reason) over every shard, both phases."""
    events_in, dropped = 0, {}
    for folder in map(Path, folders):
        meta = json.loads((folder / _META).read_text())
        events_in += meta["events_in"]
        for key, n in {**meta["dropped"], **json.loads((folder / _DROPPED).read_text())}.items():
            dropped[key] = dropped.get(key, 0) + n
    return events_in, dropped


def shard_summaries(folders: list[Path]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every shard's item counts and first events, concatenated for ``vocabularies``."""
    counts = pl.concat([pl.read_parquet(Path(f) / "item_counts.parquet") for f in folders])
    first_seen = pl.concat([pl.read_parquet(Path(f) / "first_seen.parquet") for f in folders])
    return counts, first_seen


def save_vocab(vocab: Vocabularies, out: Path) -> Path:
    """What a shard needs of the vocabularies: both numberings and the cut-offs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab.items.write_parquet(out / ITEMS_FILE)
    vocab.users.write_parquet(out / USERS_FILE)
    (out / _META).write_text(json.dumps({"cutoffs": vocab.cutoffs}))
    return out


def load_vocab(folder: Path) -> Vocabularies:
    folder = Path(folder)
    cutoffs = json.loads((folder / _META).read_text())["cutoffs"]
    return Vocabularies(
        items=pl.read_parquet(folder / ITEMS_FILE).cast(ITEMS_SCHEMA),
        users=pl.read_parquet(folder / USERS_FILE).cast(USERS_SCHEMA),
        cutoffs=tuple(cutoffs) if cutoffs else None,
        previous=(None, None),
    )
