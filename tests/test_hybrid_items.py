"""Hybrid item embeddings (model.item_attributes): training, loading, new items and warm starts."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from lightning_modules.attributes import attribute_item_embeddings
from lightning_modules.families import network_from_arch
from lightning_modules.model_io import load_model, warm_start
from lightning_modules.new_items import new_item_choices, score_new_items
from lightning_modules.scoring import score_users
from lightning_modules.train import main
from nightrec.config import NightrecConfig, load_config
from nightrec.errors import ConfigError
from nightrec.metadata.features import hashed_vectors
from nightrec.metadata.tables import read_item_table
from tests.model_fixtures import run_training, write_sequences_of

pytestmark = [pytest.mark.slow]

GENRES, PER_GENRE, FEATURES = 4, 10, 256
NEW = [f"new_g{g}" for g in range(GENRES)]


def genre_of(item_idx: int) -> int:
    return (item_idx - 1) // PER_GENRE


def write_item_table(path: Path, extra: dict[str, int]) -> Path:
    """``item_id, genre``: known items ``i1..i40`` by block of ten, plus ``extra`` ids and their genre."""
    ids = [f"i{i}" for i in range(1, GENRES * PER_GENRE + 1)]
    genres = [f"g{genre_of(i)}" for i in range(1, GENRES * PER_GENRE + 1)]
    pl.DataFrame({"item_id": ids + list(extra), "genre": genres + [f"g{g}" for g in extra.values()]}).write_csv(path)
    return path


def genre_sequences(users: int = 80, length: int = 12, seed: int = 0) -> list[list[int]]:
    """User ``u`` only ever reads items of genre ``u % 4``, in random order: the genre is the signal."""
    rng = np.random.default_rng(seed)
    return [[int(x) for x in rng.integers(0, PER_GENRE, length) + 1 + (u % GENRES) * PER_GENRE] for u in range(users)]


def hybrid_config(path: Path, items_file: Path, **train) -> Path:
    config = NightrecConfig.model_validate(
        {
            "sequences": {"max_len": 8},
            "model": {
                "family": "lstm",
                "embedding_dim": 16,
                "hidden_size": 16,
                "dropout": 0.1,
                "hidden_dropout": 0.0,
                "item_attributes": True,
                "attribute_features": FEATURES,
            },
            "metadata": {"items_file": str(items_file)},
            "train": {"epochs": 6, "batch_size": 16, "eval_batch_size": 32, "lr": 0.01, "num_threads": 1}
            | {"accelerator": "cpu", "refit": False, **train},
        }
    )
    path.write_text(config.model_dump_json())
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run of the entry point on the genre data, with an item table that also lists new items."""
    tmp = tmp_path_factory.mktemp("hybrid")
    seqs = genre_sequences()
    seq = write_sequences_of(tmp / "seq", seqs, GENRES * PER_GENRE, max_len=8)
    table = write_item_table(tmp / "items.csv", {name: g for g, name in enumerate(NEW)})
    config = hybrid_config(tmp / "config.json", table)
    done = run_training(config, seq, tmp / "model")
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, seq, table, seqs


def test_trains_saves_and_scores_from_the_model_folder_alone(trained, tmp_path):
    tmp, seq, _, seqs = trained
    moved = shutil.copytree(tmp / "model", tmp_path / "elsewhere")  # no item table beside it
    network, items = load_model(moved)
    assert network.arch["item_attributes"] and network.arch["attribute_features"] == FEATURES
    assert network.attributes.indices.numel() == items.height  # one genre token per item
    assert network.attributes.indptr[1] == 0  # the padding row has no attributes
    top = score_users(moved, seq, k=5)
    assert top.height == 80 * 5
    # The first pick is in the user's genre whenever an unread item of it is left (seen are masked).
    first = top.filter(pl.col("rank") == 1).with_columns(pl.col("user_id").str.slice(1).cast(pl.Int64).alias("u"))
    picks = dict(zip(first["u"], first["item_id"].str.slice(1).cast(pl.Int64), strict=True))
    left = [u for u, s in enumerate(seqs) if len(set(s)) < PER_GENRE]
    assert np.mean([genre_of(picks[u]) == u % GENRES for u in left]) > 0.9


def test_new_items_rank_by_the_genre_of_the_history(trained):
    tmp, _, table_path, seqs = trained
    table = read_item_table(NightrecConfig.model_validate({"metadata": {"items_file": str(table_path)}}).metadata)
    histories = [[f"i{i}" for i in seq] for seq in seqs]
    scores = score_new_items(tmp / "model", histories, NEW, table)
    assert scores.shape == (len(seqs), GENRES)
    # The new item of the user's own genre outranks every new item of another genre.
    best = scores.argmax(dim=1)
    wanted = torch.tensor([u % GENRES for u in range(len(seqs))])
    assert (best == wanted).float().mean() > 0.9, scores[:4]


def test_the_served_hybrid_model_chooses_each_users_new_items_for_the_slots(trained):
    from datetime import UTC, datetime, timedelta

    from nightrec.fallback.cold import ColdStart, with_new_items
    from nightrec.metadata.content import ContentRecommender
    from nightrec.metadata.features import tfidf_vectors

    tmp, _, table_path, seqs = trained
    table = read_item_table(NightrecConfig.model_validate({"metadata": {"items_file": str(table_path)}}).metadata)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "user_id": [f"u{u}" for u, seq in enumerate(seqs) for _ in seq],
            "item_id": [f"i{i}" for seq in seqs for i in seq],
            "timestamp": [start + timedelta(minutes=p) for seq in seqs for p in range(len(seq))],
        }
    )
    choices = new_item_choices(tmp / "model", events, NEW, table, top=2)
    assert choices.group_by("user_id").len()["len"].to_list() == [2] * len(seqs)
    best = choices.group_by("user_id", maintain_order=True).first()
    assert (
        np.mean([item == NEW[int(user[1:]) % GENRES] for user, item in best.select("user_id", "item_id").rows()]) > 0.9
    )
    # the table's slots take the model's choice, not the content one
    recs = pl.DataFrame(
        {"user_id": ["u0", "u0"], "rank": [1, 2], "item_id": ["i1", "i2"], "score": [1.0, 0.5]},
        schema_overrides={"rank": pl.Int32},
    ).with_columns(pl.lit("model").alias("source"), pl.lit("v").alias("model_version"))
    cold = ColdStart(ContentRecommender(tfidf_vectors(table)), NEW, choices=choices.reverse())
    placed = with_new_items(recs, events, cold, slots=1, run_date=start.date(), k=2)
    assert placed.filter(pl.col("source") == "new_item")["item_id"].to_list() == [best.row(0)[1]]


def test_identical_attributes_give_identical_embeddings_equal_to_the_projection(trained, tmp_path):
    tmp, _, _, seqs = trained
    old, _ = load_model(tmp / "model")
    # Tonight: two new items of genre 1 and no interactions yet (the tail of the vocabulary).
    ids = [f"i{i}" for i in range(1, 41)] + ["twin_a", "twin_b"]
    seq = write_sequences_of(tmp_path / "seq", seqs, 42, max_len=8, item_ids=ids)
    table = write_item_table(tmp_path / "items.csv", {"twin_a": 1, "twin_b": 1})
    net, items = grown_network(old, seq, table)
    assert warm_start(net, items, tmp / "model") == {"kept_items": 40, "new_items": 2}
    with torch.no_grad():
        rows = net.item_embeddings()
        a, b = rows[41], rows[42]
        assert torch.equal(net.embedding.weight[41:], torch.zeros(2, 16))  # new id rows start at zero
        vectors = hashed_vectors(read_item_table(load_config(overrides=_meta(table), environ={}).metadata), FEATURES)
        projected = attribute_item_embeddings(net, vectors.rows(["twin_a"]))[0]
    assert torch.equal(a, b)
    torch.testing.assert_close(a, projected)
    assert a.abs().sum() > 0


def test_warm_start_keeps_old_rows_and_gives_new_items_their_attributes(trained, tmp_path):
    tmp, _, _, seqs = trained
    old, old_items = load_model(tmp / "model")
    # Tonight's vocabulary: the known items in reverse order, then a new item of each genre.
    ids = [f"i{i}" for i in range(40, 0, -1)] + NEW
    seq = write_sequences_of(tmp_path / "seq", seqs, 44, max_len=8, item_ids=ids)
    table = write_item_table(tmp_path / "items.csv", {name: g for g, name in enumerate(NEW)})
    net, items = grown_network(old, seq, table)
    warm_start(net, items, tmp / "model")
    old_rows = dict(zip(old_items["item_id"], old.item_embeddings().detach()[1:], strict=True))
    with torch.no_grad():
        new_rows = net.item_embeddings()
        for idx, item_id in zip(items["item_idx"], items["item_id"], strict=True):
            if item_id in old_rows:  # same id row, same attributes: the same embedding
                torch.testing.assert_close(new_rows[idx], old_rows[item_id])
        # Each new item sits with its genre: nearest (cosine) to that genre's known items.
        table_rows = torch.nn.functional.normalize(new_rows[1:41], dim=1)
        for g, name in enumerate(NEW):
            idx = items.filter(pl.col("item_id") == name)["item_idx"].item()
            near = (table_rows @ torch.nn.functional.normalize(new_rows[idx], dim=0)).topk(5).indices + 1
            assert all(genre_of(41 - int(i)) == g for i in near), name  # row r holds item i(41 - r)
    # And through the entry point: one epoch from the warm start on the grown vocabulary.
    config = hybrid_config(tmp_path / "c.json", table, epochs=1)
    files = ["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "m")]
    assert main([*files, "--warm-start", str(tmp / "model")]) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["warm_start"] == {"kept_items": 40, "new_items": 4}


def test_item_attributes_without_an_item_table_is_a_clear_error():
    from flows.preflight import check_metadata

    config = load_config(overrides={"model": {"family": "gru", "item_attributes": True}}, environ={})
    with pytest.raises(ConfigError, match=r"model\.item_attributes needs metadata\.items_file"):
        check_metadata(config)
    # Closed-form families ignore the switch.
    check_metadata(load_config(overrides={"model": {"family": "ease", "item_attributes": True}}, environ={}))


def _meta(table: Path) -> dict:
    return {"metadata": {"items_file": str(table)}}


def grown_network(old, seq: Path, table: Path):
    """A network of ``old``'s architecture for ``seq``'s vocabulary, with tonight's attribute rows."""
    from lightning_modules.attributes import vocabulary_rows

    items = pl.read_parquet(seq / "items.parquet")
    net = network_from_arch({**old.arch, "n_items": items.height})
    config = load_config(overrides=_meta(table) | {"model": {"attribute_features": FEATURES}}, environ={})
    net.attributes.set_rows(vocabulary_rows(config, items))
    return net.eval(), items


def test_switching_item_attributes_trains_from_scratch(trained, tmp_path, capsys):
    tmp, seq, table, _ = trained
    plain = json.loads(hybrid_config(tmp_path / "c.json", table, epochs=1).read_text())
    plain["model"]["item_attributes"] = False
    (tmp_path / "c.json").write_text(json.dumps(plain))
    files = ["--config", str(tmp_path / "c.json"), "--sequences", str(seq), "--out", str(tmp_path / "m")]
    assert main([*files, "--warm-start", str(tmp / "model")]) == 0
    assert "warm start skipped: model was trained with model.item_attributes" in capsys.readouterr().out
    assert load_model(tmp_path / "m")[0].attributes is None
