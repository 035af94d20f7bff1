"""A trainer dies with the run that launched it.

The flow starts the trainer in its own session (so a time-out kills every DDP rank), which also
means a SIGKILL of the flow never reaches it: the trainer would keep writing a model into the
work folder the next run resumes from. With ``NIGHTREC_DIE_WITH_PARENT=1`` (set by the flow, and
inherited by the DDP ranks) each process polls its parent and kills its process group once the
parent is gone.
"""

import os
import signal
import threading
import time

ENV = "NIGHTREC_DIE_WITH_PARENT"


def die_with_parent(poll_s: float = 0.5) -> bool:
    """Start the watch when the launcher asked for it; returns whether it started."""
    if os.environ.get(ENV) != "1":
        return False
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    return True
