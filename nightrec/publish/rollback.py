"""Publishing one night to every configured target, all or nothing.

The transaction itself is ``nightrec.publish.local.publish_all``: a journal
(``nightrec.publish.journal``) keeps the previous partition and DuckDB file, any failing target
(or a kill, found by the next publish) puts both back byte for byte, and retention runs only
once every target succeeded. This module is its entry point from the flow's files.
"""

from datetime import date
from pathlib import Path

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.privacy.external import published_ids
from nightrec.publish.local import publish_all


def publish_night(recs_path: Path, fallback_path: Path, config: NightrecConfig, run_date: date) -> dict:
    """Publish tonight's table and new-user list (Parquet files of the run) to every configured
    target as one transaction (``nightrec.publish.local.publish_all``), keyed by pseudonym or, with
    ``privacy.publish_external_ids``, by the source's ids."""
    recs = published_ids(pl.read_parquet(recs_path), config)
    return publish_all(recs, config, run_date, pl.read_parquet(fallback_path))
