"""A rich progress bar showing step, loss, learning rate, examples/s and ETA."""

from __future__ import annotations

from typing import Any


class TrainProgress:
    """Context manager around ``rich.progress.Progress``; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool = True, console=None, start: int = 0):
        self.total, self.enabled, self.console, self.start = total, enabled, console, start
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  "
                    "{task.fields[eps]:.1f} ex/s"
                ),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self.start, loss=float("nan"), lr=0.0, eps=0.0
            )
        return self

    def update(self, step: int, **fields: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, **fields)

    def note(self, msg: str) -> None:
        if self._progress is not None:
            self._progress.console.print(msg)
        elif self.console is not None:
            self.console.print(msg)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
