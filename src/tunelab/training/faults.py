"""Fault injection for crash tests (the way SQLite tests its recovery).

``TUNELAB_FAULT="kill:POINT:STEP"`` sends SIGKILL to this process when the loop reaches
``POINT`` at optimizer step ``STEP``. Points: ``step`` (mid-step: after backward, before the
optimizer update) and ``checkpoint:weights``, ``checkpoint:optimizer``, ``checkpoint:state``,
``checkpoint:marker`` (inside a checkpoint write, after that part is written). Unset, it costs
one environment lookup per call.

``TUNELAB_FAULT="pause:POINT:stop"`` instead sleeps (60 s, a signal ends it) at ``POINT`` of the
checkpoint written on a stop signal, so a test can send a second signal during that write.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: set while the loop writes the checkpoint of a stop signal
stopping = False


def fault_point(point: str, step: int) -> None:
    """Die here if ``TUNELAB_FAULT`` asks for it."""
    spec = os.environ.get("TUNELAB_FAULT")
    if not spec:
        return
    action, _, rest = spec.partition(":")
    where, _, at = rest.rpartition(":")
    if action == "kill" and where == point and at.isdigit() and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "pause" and where == point and at == "stop" and stopping:
        print(f"tunelab-fault: paused at {point} (step {step})", file=sys.stderr, flush=True)
        time.sleep(60)
