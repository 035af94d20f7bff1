"""Id columns as the event readers carry them: text, so ``42`` and ``"42"`` match across tables."""

import polars as pl

from nightrec.errors import InputError
from nightrec.schema import ID_DTYPE


def as_id_column(frame: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """Carry an id column as text, the way the event readers do, so ``42`` and ``"42"`` match.

    Integers (and floats that are whole numbers, as a CSV with gaps produces) become text;
    anything else (a mixed-type object column, lists, fractional numbers) is rejected with the
    file and column named.
    """
    if column not in frame.columns:
        raise InputError(f"{where}: missing column '{column}' (have: {', '.join(frame.columns)})")
    dtype = frame.schema[column]
    if dtype == ID_DTYPE:
        return frame
    if dtype.is_integer():
        return frame.with_columns(pl.col(column).cast(ID_DTYPE))
    if dtype.is_float():
        values = frame.get_column(column).drop_nulls()
        if (values == values.floor()).all():
            return frame.with_columns(pl.col(column).cast(pl.Int64).cast(ID_DTYPE))
        raise InputError(f"{where}: column '{column}' holds fractional numbers; ids must be text or integers")
    raise InputError(
        f"{where}: column '{column}' has type {dtype} (mixed or non-scalar ids); expected text or integers"
    )
