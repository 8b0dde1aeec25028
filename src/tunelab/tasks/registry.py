"""The task registry: ``task.type`` (and a run's saved task metadata) → its Task class.

Built-in tasks register in ``tunelab/tasks/__init__.py``; the mixture of several tasks is one of
them (``mixture``), so callers never special-case it."""

from __future__ import annotations

from typing import Any

from tunelab.errors import ConfigError
from tunelab.tasks.base import Task

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Add a task class under its ``kind``; a second class of the same kind is an error."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"register_task: {cls!r} has no `kind`")
    if kind in _TASKS and _TASKS[kind] is not cls:
        raise ConfigError(f"register_task: a task of kind {kind!r} is already registered")
    _TASKS[kind] = cls
    return cls


def task_kinds() -> list[str]:
    return list(_TASKS)


def get_task(kind: str) -> type[Task]:
    """Task class for ``task.type`` (or ``mixture``)."""
    if kind not in _TASKS:
        raise ConfigError(f"task.type: unknown task {kind!r}; allowed: {', '.join(_TASKS)}")
    return _TASKS[kind]


def config_kind(cfg) -> str:
    """The task kind a config trains: ``mixture`` when it lists mixture tasks."""
    return "mixture" if cfg.mixture.tasks else cfg.task.type


def build_task(cfg, tokenizer, train_table=None, meta: dict[str, Any] | None = None) -> Task:
    """The task of a config (``train_table`` lets classification infer its labels), or of a
    finished run (its saved ``meta``)."""
    if meta is not None:
        return get_task(meta["type"]).from_metadata(meta, tokenizer)
    return get_task(config_kind(cfg)).from_config(cfg, train_table, tokenizer)


def load_splits(cfg, task: Task, train_table=None) -> dict[str, Any]:
    """Tokenized train/validation(/test) splits of ``cfg`` for ``task``."""
    return task.splits(cfg, train_table)
