"""Prefect flows, the thin tasks they compose, and the ``nightrec`` CLI."""

import os
from pathlib import Path

# A fresh ephemeral Prefect server takes 15-20 s to start on a small machine; don't phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# OpenMP threads that spin while waiting collapse when the machine is shared (another process, the
# Prefect server, a DDP rank): an LSTM step measured 37 ms passive against 450-1300 ms spinning on a
# loaded 2-core machine. Passive waiting is the default for the CLI, the flows and every trainer
# they start; set OMP_WAIT_POLICY yourself to override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# One Prefect database for `make demo`, `make ui` and the CLI run by hand: in a source checkout the
# checkout's `.prefect/` (what the Makefile and flows/local_server.py use), not `~/.prefect`.
_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "pyproject.toml").is_file():
    os.environ.setdefault("PREFECT_HOME", str(_CHECKOUT / ".prefect"))
