"""Item and user attribute tables: the formats, the typing of columns, the quarantine of bad rows
and the errors a bad file or setting gets."""

import polars as pl
import pytest

from flows.preflight import check_metadata
from nightrec.config import MetadataConfig, load_config
from nightrec.errors import ConfigError, InputError
from nightrec.fallback.history import read_user_table
from nightrec.metadata.features import hashed_vectors, item_tokens, tfidf_vectors
from nightrec.metadata.tables import (
    CATEGORICAL,
    DUPLICATE_ID,
    LIST,
    MISSING_ID,
    NUMERIC,
    REASON,
    TEXT,
    read_attribute_table,
    read_item_table,
)

RECBOLE_ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def _recbole(tmp_path, rows: list[str], header: str = RECBOLE_ITEM, name: str = "shop.item"):
    path = tmp_path / name
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


def test_recbole_item_file_types_each_column(tmp_path):
    path = _recbole(tmp_path, ["1\tToy Story\t1995\tAnimation Comedy", "2\tGoldenEye\t1995\tAction"])
    table = read_item_table(MetadataConfig(items_file=path))
    assert table.kinds == {"movie_title": LIST, "release_year": CATEGORICAL, "class": LIST}
    assert table.frame.get_column("class").to_list() == [["Animation", "Comedy"], ["Action"]]
    tokens = item_tokens(table)
    assert tokens[0] == ["movie_title=Toy", "movie_title=Story", "release_year=1995", "class=Animation", "class=Comedy"]


def test_csv_with_text_list_and_numeric_columns(tmp_path):
    path = tmp_path / "items.csv"
    pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4],
            "title": ["Red Trail Shoe", "Blue Tent", "red ball", None],
            "tags": ["run|trail", "camp", "", "camp|run"],
            "price": [10.0, 200.0, 15.0, 12.5],
        }
    ).write_csv(path)
    config = MetadataConfig(items_file=path, text_columns=["title"], list_columns=["tags"], numeric_bins=2)
    table = read_item_table(config)
    assert table.kinds == {"title": TEXT, "tags": LIST, "price": NUMERIC}
    assert table.ids.to_list() == ["1", "2", "3", "4"]  # integer ids are carried as text, like events
    tokens = item_tokens(table, bins=2)
    assert tokens[0] == ["title:red", "title:trail", "title:shoe", "tags=run", "tags=trail", "price#1"]
    assert tokens[1][-1] == "price#2" and tokens[3] == ["tags=camp", "tags=run", "price#1"]
    vectors = tfidf_vectors(table, 2)
    # items 1 and 3 share "red" and a price bucket; 1 and 2 share nothing
    similarity = (vectors.matrix @ vectors.matrix.T).toarray()
    assert similarity[0, 2] > 0 and similarity[0, 1] == 0
    assert hashed_vectors(table, 64).matrix.shape == (4, 64)


def test_rows_without_an_id_or_repeating_one_are_quarantined_and_none_lost(tmp_path):
    path = tmp_path / "items.parquet"
    frame = pl.DataFrame({"item_id": ["a", None, "b", "a", " "], "brand": ["x", "y", "z", "w", "v"]})
    frame.write_parquet(path)
    table = read_item_table(MetadataConfig(items_file=path))
    assert table.frame.height + table.quarantine.height == frame.height
    assert table.frame.get_column("brand").to_list() == ["x", "z"]  # a repeated id keeps its first row
    assert sorted(table.quarantine.get_column(REASON).to_list()) == [DUPLICATE_ID, MISSING_ID, MISSING_ID]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"item_columns": ["colour"]}, "attribute column(s) colour not found"),
        ({"text_columns": ["price"]}, "column 'price' is listed in metadata.text_columns but holds Float64"),
    ],
)
def test_bad_settings_name_the_file_and_the_column(tmp_path, setup, message):
    path = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": ["a"], "price": [1.0]}).write_parquet(path)
    with pytest.raises(InputError, match=r"items\.parquet: ") as error:
        read_item_table(MetadataConfig(items_file=path, **setup))
    assert message in str(error.value)


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"nope\.parquet: attribute table not found"):
        read_item_table(MetadataConfig(items_file=tmp_path / "nope.parquet"))
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(InputError, match=r"broken\.parquet: cannot read the attribute table"):
        read_item_table(MetadataConfig(items_file=broken))
    bad_header = _recbole(tmp_path, ["1\tx"], header="item_id:token\ttitle:words\n")
    with pytest.raises(InputError, match="header cell 'title:words' is not name:type"):
        read_item_table(MetadataConfig(items_file=bad_header))
    no_id = tmp_path / "no_id.parquet"
    pl.DataFrame({"sku": ["a"]}).write_parquet(no_id)
    with pytest.raises(InputError, match=r"no_id\.parquet: missing column 'item_id'"):
        read_attribute_table(no_id, "item_id", MetadataConfig())


def test_recbole_user_file_gives_segments(tmp_path):
    path = _recbole(
        tmp_path,
        ["1\t24\tM\ttechnician", "2\t53\tF\tother"],
        "user_id:token\tage:token\tgender:token\toccupation:token\n",
        "shop.user",
    )
    users = read_user_table(path, "occupation")
    assert users.rows() == [("1", "technician"), ("2", "other")]


def test_preflight_and_config_refuse_what_cannot_work(tmp_path):
    empty = tmp_path / "empty.parquet"
    pl.DataFrame(
        {"item_id": ["a", "b"], "brand": [None, None]}, schema={"item_id": pl.String, "brand": pl.String}
    ).write_parquet(empty)
    config = load_config(None, {"data_dir": str(tmp_path), "metadata": {"items_file": str(empty)}}, environ={})
    with pytest.raises(ConfigError, match="no item has an attribute value"):
        check_metadata(config)
    # read by every command, refused only where a run would start
    slots_only = load_config(None, {"data_dir": str(tmp_path), "recommend": {"new_item_slots": 2}}, environ={})
    with pytest.raises(ConfigError, match=r"recommend\.new_item_slots chooses new items by their attributes"):
        check_metadata(slots_only)
    with pytest.raises(ConfigError, match=r"must be below k \(3\)"):
        load_config(
            None, {"k": 3, "metadata": {"items_file": str(empty)}, "recommend": {"new_item_slots": 3}}, environ={}
        )


def test_user_table_rows_without_an_id_or_repeating_one_are_kept_aside(tmp_path):
    from nightrec.fallback.cold import cold_start, keep_set_aside
    from nightrec.fallback.history import read_user_rows

    users = tmp_path / "users.csv"
    users.write_text("user_id,country\nu1,DE\n,FR\nu1,IT\nu2,DE\n")
    items = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": ["a", "a", None], "brand": ["x", "y", "z"]}).write_parquet(items)
    kept, aside = read_user_rows(users, "country")
    assert kept.rows() == [("u1", "DE"), ("u2", "DE")]
    assert aside.rows() == [(None, "FR", MISSING_ID), ("u1", "IT", DUPLICATE_ID)]
    settings = {
        "metadata": {"items_file": str(items)},
        "popularity": {"users_file": str(users), "segment_column": "country"},
    }
    config = load_config(None, {"data_dir": str(tmp_path), **settings}, environ={})
    written = keep_set_aside(config, cold_start(config, None, None), tmp_path)
    assert written == {str(tmp_path / "items_quarantine.parquet"): 2, str(tmp_path / "users_quarantine.parquet"): 2}
    assert pl.read_parquet(tmp_path / "users_quarantine.parquet").height + kept.height == 4


def test_a_bad_content_weight_names_the_setting_a_user_can_set():
    with pytest.raises(ConfigError) as error:
        load_config(None, {}, environ={"NIGHTREC_METADATA__CONTENT_WEIGHT": "lots"})
    message = str(error.value)
    assert "metadata.content_weight: Input should be a valid number" in message
    assert "NIGHTREC_METADATA__CONTENT_WEIGHT]" in message and "float" not in message
