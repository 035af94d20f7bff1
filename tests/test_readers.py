"""Every public format, written by the test in that exact format, read onto the event contract."""

from datetime import UTC, datetime

import polars as pl
import pytest

from nightrec.errors import InputError
from nightrec.ingest.input_files import resolve_files
from nightrec.ingest.readers import check_source, detect_format, read_events, scan_events
from nightrec.schema import EVENT_SCHEMA


def _ts(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _assert_contract(events: pl.DataFrame) -> None:
    assert events.schema == pl.Schema(EVENT_SCHEMA)


def test_movielens_100k_u_data(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    events = read_events(path)
    _assert_contract(events)
    assert events.rows()[0] == ("196", "242", "click", _ts(1997, 12, 4, 15, 55, 49), None, 3.0)
    assert detect_format(path) == "movielens"


def test_movielens_1m_ratings_dat(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    events = read_events(path)
    assert events.select("user_id", "item_id", "value").rows() == [("1", "1193", 5.0), ("1", "661", 3.0)]
    assert events["timestamp"][0] == _ts(2000, 12, 31, 22, 12, 40)


def test_movielens_latest_ratings_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    events = read_events(path)
    _assert_contract(events)
    assert events["item_id"].to_list() == ["1", "3"]
    assert events["value"].to_list() == [4.0, 4.5]


def test_recbole_atomic_inter_keeps_file_order(tmp_path):
    path = tmp_path / "ml-100k.inter"
    path.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n196\t51\t2\t881250949\n"
    )
    events = read_events(path)
    _assert_contract(events)
    assert events["item_id"].to_list() == ["242", "51"]
    assert detect_format(path) == "recbole"


def test_sequence_file_gives_each_users_items_in_order_with_increasing_times(tmp_path):
    """``user item_1 item_2 ...`` lines (Amazon Sports as SASRec ships it): ids stay text, every
    item is one event, times rise a second per item up to the same last instant for every user; a
    line with a user and no item holds none."""
    path = tmp_path / "amazon-sports.txt"
    path.write_text("1 1 2 3\n2\t9  1\n\n3\n007 5\n")
    events = read_events(path)
    _assert_contract(events)
    assert detect_format(path) == "sequences"
    assert events.select("user_id", "item_id").rows() == [
        ("1", "1"),
        ("1", "2"),
        ("1", "3"),
        ("2", "9"),
        ("2", "1"),
        ("007", "5"),
    ]
    assert set(events["event_type"]) == {"purchase"}
    last = _ts(2020, 1, 1, 23, 59, 59)
    assert events.filter(pl.col("user_id") == "1")["timestamp"].to_list() == [
        _ts(2020, 1, 1, 23, 59, 57),
        _ts(2020, 1, 1, 23, 59, 58),
        last,
    ]
    assert events.filter(pl.col("user_id") == "007")["timestamp"].to_list() == [last]


def test_retailrocket_events_csv(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433223236124,287857,addtocart,248676,\n"
        "1433224214164,992329,transaction,111016,4000\n"
    )
    events = read_events(path)
    assert detect_format(path) == "retailrocket"
    assert events["event_type"].to_list() == ["view", "add_to_cart", "purchase"]
    assert events["timestamp"][0] == datetime(2015, 6, 2, 5, 2, 12, 117000, tzinfo=UTC)


def test_yoochoose_clicks_dat(tmp_path):
    path = tmp_path / "clicks.dat"
    path.write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,S\n")
    events = read_events(path)
    assert events.select("user_id", "session_id", "item_id").rows()[0] == ("1", "1", "214536502")
    assert events["timestamp"][1] == _ts(2014, 4, 7, 10, 54, 9, 868000)


def test_diginetica_train_item_views(tmp_path):
    path = tmp_path / "train-item-views.csv"
    path.write_text(
        "sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n2;5;31331;1031018;2016-05-09\n"
    )
    events = read_events(path)
    assert events["user_id"].to_list() == ["s1", "5"]
    assert events["timestamp"][0] == _ts(2016, 5, 9, 0, 8, 46, 309000)
    assert events["event_type"].unique().to_list() == ["view"]


def test_generic_folder_mixes_parquet_csv_and_id_types(tmp_path):
    pl.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [10, 11],
            "event_type": ["view", "purchase"],
            "timestamp": [1_700_000_000, 1_700_000_060],
        }
    ).write_parquet(tmp_path / "a.parquet")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text(
        "user_id,item_id,event_type,timestamp,session_id\nu3,i9,click,2023-11-14T22:15:00Z,s1\n"
    )
    events = read_events(tmp_path)
    _assert_contract(events)
    assert events.height == 3
    assert events["user_id"].to_list() == ["1", "2", "u3"]
    assert events["timestamp"][2] == _ts(2023, 11, 14, 22, 15)
    assert read_events(str(tmp_path / "*.parquet")).height == 2
    assert isinstance(scan_events(tmp_path), pl.LazyFrame)


def test_epoch_milliseconds_are_detected(tmp_path):
    path = tmp_path / "e.parquet"
    pl.DataFrame(
        {"user_id": ["a"], "item_id": ["b"], "event_type": ["view"], "timestamp": [1_700_000_000_123]}
    ).write_parquet(path)
    assert read_events(path)["timestamp"][0] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.parquet", "missing.parquet: no such file or folder"),
        (lambda d: (d / "empty.csv").touch() or d / "empty.csv", "empty.csv: the file is empty"),
        (
            lambda d: (d / "x.parquet").write_text("not parquet") and d / "x.parquet",
            "x.parquet: cannot be read as Parquet",
        ),
        (
            lambda d: (d / "c.csv").write_text("user_id,item_id,event_type\nu,i,view\n") and d / "c.csv",
            "c.csv: missing required column 'timestamp'",
        ),
        (
            lambda d: (
                (d / "t.csv").write_text("user_id,item_id,event_type,timestamp\nu,i,view,not-a-time\n") and d / "t.csv"
            ),
            "t.csv: column 'timestamp': 1 value(s) are not a timestamp, e.g. 'not-a-time'",
        ),
        (lambda d: (d / "h.csv").write_text("user_id,item_id,event_type,timestamp\n") and d / "h.csv", "no events"),
        (lambda d: d / "*.nothing", "the glob matches no files"),
    ],
)
def test_bad_input_names_the_file_and_rule(tmp_path, setup, message):
    path = setup(tmp_path)
    with pytest.raises(InputError) as info:
        read_events(path)
    assert message in str(info.value)


def test_check_source_fails_fast_on_a_missing_column_but_leaves_values_to_validation(tmp_path):
    (tmp_path / "t.csv").write_text("user_id,item_id,event_type,timestamp\nu,i,view,2024-13-45\n")
    assert check_source(tmp_path) == [tmp_path / "t.csv"], "one bad timestamp is quarantined, not refused"
    (tmp_path / "t.csv").write_text("user_id,item_id,event_type\nu,i,view\n")
    with pytest.raises(InputError, match=r"t\.csv: missing required column 'timestamp'"):
        check_source(tmp_path)


def test_unknown_format_is_rejected(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="no Parquet, CSV or known event files"):
        read_events(tmp_path)
    with pytest.raises(InputError, match="unknown format 'json'"):
        read_events(tmp_path, fmt="json")


@pytest.mark.parametrize(
    ("name", "header", "row"),
    [
        ("events.csv", "user_id,item_id,event_type,timestamp", "{u},{i},view,1700000000"),
        ("u.data", None, "{u}\t{i}\t5\t881250949"),
        ("ratings.dat", None, "{u}::{i}::5::978300760"),
        ("x.inter", "user_id:token\titem_id:token\ttimestamp:float", "{u}\t{i}\t881250949"),
    ],
)
def test_csv_ids_are_text_never_numbers(tmp_path, name, header, row):
    from expectations.load import load_events

    lines = [row.format(u=u, i=i) for u, i in (("007", "010"), ("7", "10"))]
    lines += [row.format(u=n, i=n) for n in range(10_050)] + [row.format(u="u-late", i="i-late")]
    path = tmp_path / name
    path.write_text("\n".join(([header] if header else []) + lines) + "\n")
    for events in (read_events(path), load_events(path).events):
        assert events["user_id"][:2].to_list() == ["007", "7"] and events["item_id"][:2].to_list() == ["010", "10"]
        assert events["user_id"][-1] == "u-late" and events.height == len(lines)


def test_folder_reads_every_event_file_once_and_refuses_what_it_cannot_read(tmp_path):
    header = "user_id,item_id,event_type,timestamp\n"
    (tmp_path / "A.CSV").write_text(header + "u1,i1,view,2026-03-06T10:00:00Z\n")
    pl.read_csv(tmp_path / "A.CSV").write_parquet(tmp_path / "b.pq")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "twin.csv").symlink_to(tmp_path / "A.CSV")
    assert [p.name for p in resolve_files(tmp_path)] == ["A.CSV", "b.pq"]
    assert read_events(tmp_path).height == 2
    assert [p.name for p in resolve_files(f"{tmp_path}/**/*.CSV")] == ["A.CSV"]
    (tmp_path / "c.csv.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(InputError, match=r"c\.csv\.gz: compressed input is not read; decompress it first"):
        resolve_files(tmp_path)


def test_a_latin1_file_is_named_with_the_fix(tmp_path):
    from expectations.load import load_events

    path = tmp_path / "events.csv"
    path.write_bytes("user_id,item_id,event_type,timestamp\nJosé,café,view,2026-03-06T10:00:00Z\n".encode("latin-1"))
    for read in (read_events, load_events):
        with pytest.raises(InputError, match=r"events\.csv: cannot be read.*not UTF-8: re-encode it"):
            read(path)
