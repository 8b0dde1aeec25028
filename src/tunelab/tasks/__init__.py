"""Tasks: how rows become model inputs, how predictions are made and scored."""

from __future__ import annotations

from tunelab.tasks.base import Split, Task
from tunelab.tasks.classification import ClassificationTask
from tunelab.tasks.generation import GenerationTask
from tunelab.tasks.mixture import MixtureTask
from tunelab.tasks.preference import PreferenceTask
from tunelab.tasks.registry import (
    build_task,
    config_kind,
    get_task,
    load_splits,
    register_task,
    task_kinds,
)

for _cls in (ClassificationTask, GenerationTask, MixtureTask, PreferenceTask):
    register_task(_cls)

__all__ = [
    "Split",
    "Task",
    "build_task",
    "config_kind",
    "get_task",
    "load_splits",
    "register_task",
    "task_kinds",
]
