"""Ingest: reading every supported event format into the event contract, the run date, demo data."""
