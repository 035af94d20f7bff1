"""What ingest does for privacy before the night's events are first written."""

from pathlib import Path

import polars as pl

from nightrec.config import PrivacyConfig
from nightrec.privacy.forget_log import drop_forgotten
from nightrec.privacy.pseudonyms import pseudonymize, require_key


def protect_events(events: pl.DataFrame, data_dir: Path, privacy: PrivacyConfig) -> pl.DataFrame:
    """Drop the events of forgotten users, then (``privacy.pseudonymize``) replace the ids by
    pseudonyms: nothing after ingest sees a forgotten user or, when on, a raw id."""
    events = drop_forgotten(events, data_dir, privacy)
    if privacy.pseudonymize:
        events = pseudonymize(events, require_key(privacy, "privacy.pseudonymize"))
    return events
