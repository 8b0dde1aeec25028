"""Stopping on a signal: SIGINT (Ctrl-C), SIGTERM (Kubernetes, ``kill``) and SIGUSR1 (Slurm's
``--signal`` pre-emption warning) let the current optimizer step finish; the loop then writes a
checkpoint of that step and ends the run as interrupted.

A second signal while that checkpoint is written ends the process at once (the checkpoint
write is atomic, so the previous checkpoint stays intact). A repeat that arrives within
``REPEAT_WINDOW`` seconds of the first counts as the same request: ``torchrun`` forwards the
terminal's Ctrl-C to workers that got it from the terminal already."""

from __future__ import annotations

import signal
import threading
import time

SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")
REPEAT_WINDOW = 1.0


class StopSignals:
    """While active, records the first stop signal instead of dying of it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at = 0.0
        self.saving = False
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self.at = signum, now
            return
        if now - self.at < REPEAT_WINDOW and (not self.saving or signum == self.signum):
            return  # the same request, forwarded twice
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(143)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def agreed(self, accelerator) -> int | None:
        """The stop signal any process received (every process calls this at each step, so
        all of them stop at the same step), or None."""
        if accelerator.num_processes == 1:
            return self.signum
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.signum or 0], device=accelerator.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        got = int(flag.item())
        if got and self.signum is None:
            self.signum, self.at = got, time.monotonic()
        return got or None
