"""The event contract, declared once: column names, dtypes and event types.

Readers map every input format onto these columns; suites, sequences and tables import them.
IDs are external identifiers and are carried as strings whatever the input used (integers in
MovieLens, strings elsewhere), so a published table never mixes types.
"""

import polars as pl

from nightrec.errors import NightrecError

USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TIMESTAMP = "timestamp"
SESSION_ID = "session_id"
VALUE = "value"

REQUIRED_COLUMNS = (USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP)
OPTIONAL_COLUMNS = (SESSION_ID, VALUE)
KEY_COLUMNS = REQUIRED_COLUMNS

VIEW, CLICK, ADD_TO_CART, PURCHASE = "view", "click", "add_to_cart", "purchase"
DEFAULT_EVENT_TYPES = (VIEW, CLICK, ADD_TO_CART, PURCHASE)

ID_DTYPE = pl.String
TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")

# The sequences contract: dense indices (items 1..n, 0 is padding; users 0..n-1).
ITEM_IDX = "item_idx"
USER_IDX = "user_idx"
IDX_DTYPE = pl.Int32

EVENT_SCHEMA: dict[str, pl.DataType] = {
    USER_ID: ID_DTYPE,
    ITEM_ID: ID_DTYPE,
    EVENT_TYPE: pl.String,
    TIMESTAMP: TIMESTAMP_DTYPE,
    SESSION_ID: pl.String,
    VALUE: pl.Float64,
}

# The published recommendation table, in column order.
RUN_DATE = "run_date"
RANK = "rank"
SCORE = "score"
SOURCE = "source"
MODEL_VERSION = "model_version"
# When an intra-day refresh re-scored the user (UTC); null on the nightly's rows.
REFRESHED_AT = "refreshed_at"
RECOMMENDATION_SCHEMA: dict[str, pl.DataType] = {
    RUN_DATE: pl.Date,
    USER_ID: ID_DTYPE,
    RANK: pl.Int32,
    ITEM_ID: ID_DTYPE,
    SCORE: pl.Float64,
    SOURCE: pl.String,
    MODEL_VERSION: pl.String,
    REFRESHED_AT: TIMESTAMP_DTYPE,
}
# The list a user absent from the table gets (the CLI shows it to new users).
FALLBACK_SCHEMA: dict[str, pl.DataType] = {
    RUN_DATE: pl.Date,
    RANK: pl.Int32,
    ITEM_ID: ID_DTYPE,
    SCORE: pl.Float64,
    MODEL_VERSION: pl.String,
}
SOURCE_MODEL = "model"
SOURCE_POPULARITY = "popularity"
SOURCE_MODEL_POPULARITY = "model+popularity"
# Cold start (nightrec.fallback.cold): a content-based list from the user's few items, filled from
# popularity when short; a user segment's popularity; an item first seen in the last days.
SOURCE_CONTENT = "content"
SOURCE_CONTENT_POPULARITY = "content+popularity"
SOURCE_SEGMENT_POPULARITY = "segment_popularity"
SOURCE_NEW_ITEM = "new_item"
# model_version of rows no trained model ranked: "<prefix>@<run date>".
NON_MODEL_VERSIONS = (SOURCE_POPULARITY, SOURCE_CONTENT)


def is_model_version(version: str | None) -> bool:
    """Whether a ``model_version`` names a trained model (not ``popularity@...``/``content@...``)."""
    return bool(version) and not any(version.startswith(f"{prefix}@") for prefix in NON_MODEL_VERSIONS)


def conform(recs: pl.DataFrame) -> pl.DataFrame:
    """Cast to the published schema and column order; raises if a column is missing.

    ``refreshed_at`` may be absent: rows that no refresh produced (a nightly's) carry a null.
    """
    if REFRESHED_AT not in recs.columns:
        recs = recs.with_columns(pl.lit(None, RECOMMENDATION_SCHEMA[REFRESHED_AT]).alias(REFRESHED_AT))
    missing = [c for c in RECOMMENDATION_SCHEMA if c not in recs.columns]
    if missing:
        raise NightrecError(f"recommendations: missing column(s) {', '.join(missing)}")
    return recs.select(pl.col(c).cast(t) for c, t in RECOMMENDATION_SCHEMA.items()).sort(USER_ID, RANK)
