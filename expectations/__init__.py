"""Data validation: row-level rules as Polars masks (quarantine) and the run's verdict."""
