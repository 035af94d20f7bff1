"""Which user ids the published table carries: pseudonyms, or with
``privacy.publish_external_ids`` the source's own ids."""

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.ingest.readers import scan_events
from nightrec.ingest.runs import require_source
from nightrec.privacy.pseudonyms import with_external_ids
from nightrec.schema import USER_ID


def published_ids(recs: pl.DataFrame, config: NightrecConfig) -> pl.DataFrame:
    """Tonight's table keyed as it is published: unchanged, or (pseudonymised and
    ``publish_external_ids``) by the source ids the pseudonyms were made from."""
    privacy = config.privacy
    if not (privacy.pseudonymize and privacy.publish_external_ids):
        return recs
    source_ids = scan_events(require_source(config), config.format).select(USER_ID).unique().collect()
    return with_external_ids(recs, source_ids.get_column(USER_ID), privacy.key)
