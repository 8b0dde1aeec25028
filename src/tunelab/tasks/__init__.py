"""Tasks: how rows become model inputs, how predictions are made and scored."""

from __future__ import annotations

from tunelab.tasks.base import Split, Task


def get_task(kind: str) -> type[Task]:
    """Task class for ``task.type``."""
    from tunelab.tasks.classification import ClassificationTask
    from tunelab.tasks.generation import GenerationTask

    tasks: dict[str, type[Task]] = {
        "classification": ClassificationTask,
        "generation": GenerationTask,
    }
    return tasks[kind]


__all__ = ["Split", "Task", "get_task"]
