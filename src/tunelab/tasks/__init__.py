"""Tasks: how rows become model inputs, how predictions are made and scored."""

from __future__ import annotations

from tunelab.tasks.base import Split, Task
from tunelab.tasks.classification import ClassificationTask
from tunelab.tasks.generation import GenerationTask
from tunelab.tasks.mixture import MixtureTask
from tunelab.tasks.multi_label import MultiLabelTask
from tunelab.tasks.multiple_choice import MultipleChoiceTask
from tunelab.tasks.preference import PreferenceTask
from tunelab.tasks.registry import (
    build_task,
    config_kind,
    get_task,
    load_splits,
    register_task,
    task_kinds,
)
from tunelab.tasks.regression import RegressionTask
from tunelab.tasks.token_classification import TokenClassificationTask

for _cls in (
    ClassificationTask,
    GenerationTask,
    MixtureTask,
    RegressionTask,
    MultiLabelTask,
    TokenClassificationTask,
    MultipleChoiceTask,
    PreferenceTask,
):
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
