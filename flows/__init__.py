"""Prefect flows, the thin tasks they compose, and the ``nightrec`` CLI."""

import os

# A fresh ephemeral Prefect server takes 15-20 s to start on a small machine; don't phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
