"""Item and user attribute tables: read from Parquet, CSV or RecBole's ``.item``/``.user`` files,
validated, and typed column by column.

Rows without an id or repeating an earlier row's id are quarantined with a reason (rows in = rows
kept + rows quarantined); a named column that is absent, or a numeric column holding text, is an
``InputError`` naming the file, the column and the rule.
"""

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from nightrec.config import MetadataConfig
from nightrec.errors import InputError
from nightrec.ids import as_id_column
from nightrec.schema import ITEM_ID

CATEGORICAL, NUMERIC, LIST, TEXT = "categorical", "numeric", "list", "text"
REASON = "reason"
MISSING_ID = "missing_id"
DUPLICATE_ID = "duplicate_id"
# RecBole's atomic-file field types (https://recbole.io's data format) and the kind each becomes.
RECBOLE_KINDS = {"token": CATEGORICAL, "token_seq": LIST, "float": NUMERIC, "float_seq": LIST}
RECBOLE_SUFFIXES = (".item", ".user")


@dataclass(frozen=True)
class AttributeTable:
    """One row per id: the id column as text, then the attribute columns (lists as ``List(String)``)."""

    path: Path
    id_column: str
    frame: pl.DataFrame
    kinds: dict[str, str]
    quarantine: pl.DataFrame

    @property
    def ids(self) -> pl.Series:
        return self.frame.get_column(self.id_column)


def read_recbole(path: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """A RecBole atomic file: tab-separated, each header cell ``name:type``; ``*_seq`` split on spaces."""
    header = path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
    names, kinds = [], {}
    for cell in header:
        name, _, kind = cell.partition(":")
        if kind not in RECBOLE_KINDS:
            raise InputError(
                f"{path}: header cell '{cell}' is not name:type with a RecBole type ({', '.join(RECBOLE_KINDS)})"
            )
        names.append(name)
        kinds[name] = RECBOLE_KINDS[kind]
    frame = pl.read_csv(
        path, separator="\t", has_header=False, skip_rows=1, new_columns=names, infer_schema=False, quote_char=None
    )
    frame = frame.with_columns(pl.col(n).str.split(" ") for n, k in kinds.items() if k == LIST)
    frame = frame.with_columns(pl.col(n).cast(pl.Float64, strict=False) for n, k in kinds.items() if k == NUMERIC)
    return frame, kinds


def _read_frame(path: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path}: attribute table not found")
    try:
        if path.suffix in RECBOLE_SUFFIXES:
            return read_recbole(path)
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=10_000), {}
        return pl.read_parquet(path), {}
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the attribute table: {exc}") from None


def _kind(path: Path, column: str, dtype: pl.DataType, config: MetadataConfig) -> str:
    if column in config.text_columns:
        if dtype not in (pl.String, pl.Categorical):
            raise InputError(
                f"{path}: column '{column}' is listed in metadata.text_columns but holds {dtype}, not text"
            )
        return TEXT
    if column in config.list_columns or isinstance(dtype, pl.List):
        return LIST
    if dtype.is_numeric():
        return NUMERIC
    return CATEGORICAL


def split_rows(frame: pl.DataFrame, id_column: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, quarantined): rows without an id, then repeats of an earlier row's id."""
    missing = pl.col(id_column).is_null() | (pl.col(id_column).str.strip_chars() == "")
    repeat = ~pl.col(id_column).is_first_distinct()
    reason = pl.when(missing).then(pl.lit(MISSING_ID)).when(repeat).then(pl.lit(DUPLICATE_ID))
    marked = frame.with_columns(reason.alias(REASON))
    kept = marked.filter(pl.col(REASON).is_null()).drop(REASON)
    return kept, marked.filter(pl.col(REASON).is_not_null())


def read_attribute_table(
    path: Path, id_column: str, config: MetadataConfig, columns: list[str] | None = None
) -> AttributeTable:
    """Read, check and type an attribute table keyed by ``id_column``; ``columns`` None: every column."""
    path = Path(path)
    frame, kinds = _read_frame(path)
    frame = as_id_column(frame, id_column, str(path))
    wanted = [c for c in frame.columns if c != id_column] if columns is None else list(columns)
    named = set(wanted) | set(config.text_columns) | set(config.list_columns)
    absent = sorted(c for c in named if c not in frame.columns)
    if absent:
        raise InputError(
            f"{path}: attribute column(s) {', '.join(absent)} not found (have: {', '.join(frame.columns)})"
        )
    frame = frame.select(id_column, *wanted)
    for column in wanted:
        kinds.setdefault(column, _kind(path, column, frame.schema[column], config))
    kinds = {c: kinds[c] for c in wanted}
    frame = frame.with_columns(
        pl.col(c).cast(pl.String).str.split(config.list_separator)
        for c in wanted
        if kinds[c] == LIST and not isinstance(frame.schema[c], pl.List)
    )
    for column in (c for c in wanted if kinds[c] == NUMERIC and not frame.schema[c].is_numeric()):
        raise InputError(f"{path}: column '{column}' must be numeric (has {frame.schema[column]})")
    kept, quarantine = split_rows(frame, id_column)
    return AttributeTable(path, id_column, kept, kinds, quarantine)


def read_item_table(config: MetadataConfig) -> AttributeTable | None:
    """``metadata.items_file`` read and checked, or None when it is not set."""
    if config.items_file is None:
        return None
    return read_attribute_table(config.items_file, ITEM_ID, config, config.item_columns)
