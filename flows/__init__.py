"""Prefect flows, the thin tasks they compose, and the ``nightrec`` CLI."""

import os
from pathlib import Path

# A fresh ephemeral Prefect server takes 15-20 s to start on a small machine; don't phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# One Prefect database for `make demo`, `make ui` and the CLI run by hand: in a source checkout the
# checkout's `.prefect/` (what the Makefile and flows/local_server.py use), not `~/.prefect`.
_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "pyproject.toml").is_file():
    os.environ.setdefault("PREFECT_HOME", str(_CHECKOUT / ".prefect"))
