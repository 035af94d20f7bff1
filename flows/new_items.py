"""The new items of ``recommend.new_item_slots``, chosen by the served model when it was trained
with item attributes (``model.item_attributes``); otherwise the table's assembly chooses them by
content (``nightrec.fallback.cold``)."""

from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from nightrec.config import NightrecConfig
from nightrec.ingest.runs import write_parquet_atomic
from nightrec.schema import ITEM_ID, TIMESTAMP, USER_ID

CHOICES_FILE = "new_item_choices.parquet"


@task(name="new-items", cache_policy=NO_CACHE, timeout_seconds=3600)
def choose_new_items(model_dir: Path, clean_path: Path, config: NightrecConfig) -> Path | None:
    """``runs/<date>/new_item_choices.parquet`` (user_id, item_id, score): each user's best new
    items by the served hybrid model; None when it has no attributes or there is no new item."""
    from lightning_modules.new_items import new_item_choices
    from nightrec.fallback.cold import new_item_ids
    from nightrec.metadata.tables import read_item_table

    table = read_item_table(config.metadata)
    if table is None:
        return None
    events = pl.read_parquet(clean_path, columns=[USER_ID, ITEM_ID, TIMESTAMP])
    new = new_item_ids(events, table.ids, config.run_date, config.recommend.new_item_days)
    if not new:
        return None
    slots = config.recommend.new_item_slots
    # a few spare choices per user: the assembly drops those the list already holds
    choices = new_item_choices(model_dir, events, new, table, 2 * slots + config.k, config.sequences.max_len)
    return None if choices is None else write_parquet_atomic(choices, clean_path.parent / CHOICES_FILE)
