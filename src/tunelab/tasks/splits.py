"""Data splits of a single-task config: read, hold out validation, subsample, augment, tokenize."""

from __future__ import annotations

from typing import Any

from tunelab.data.augment import augment_table
from tunelab.data.sources import read_table
from tunelab.errors import DataError


def held_out(table, fraction: float, seed: int, stream: int = 7, what: str = "validation"):
    """Split a table into (rest, held out) with a seeded permutation (``stream`` keeps the test
    and validation draws independent)."""
    import numpy as np

    n = len(table)
    n_val = max(1, round(n * fraction))
    if n - n_val < 1:
        raise DataError(f"{table.source}: {n} row(s) are too few to hold out a {what} fraction")
    perm = np.random.default_rng([seed, stream]).permutation(n)
    # malformed rows are reported once, with the training split
    return table.subset(sorted(perm[n_val:]), table.skipped), table.subset(sorted(perm[:n_val]))


def subsample(table, k: int, seed: int):
    """A seeded random subset of ``k`` rows (the table itself when it has no more)."""
    import numpy as np

    if k >= len(table):
        return table
    idx = sorted(np.random.default_rng([seed, 11]).choice(len(table), size=k, replace=False))
    return table.subset(idx, table.skipped)


def read_train_table(cfg):
    """The training table of ``cfg`` (malformed rows deferred to the task's own checks)."""
    d = cfg.data
    return read_table(
        d.train, split=d.train_split, on_error=d.on_error, defer=True, columns=d.columns
    )


def single_task_splits(cfg, task, train_table=None) -> dict[str, Any]:
    """Tokenized train/validation/test splits (validation carved from train if unset)."""
    d = cfg.data
    if train_table is None:
        train_table = read_train_table(cfg)
    splits: dict[str, Any] = {}
    test_t = None
    if d.test_fraction:  # before validation, so the test rows never depend on it
        train_table, test_t = held_out(train_table, d.test_fraction, cfg.training.seed, 13, "test")
    if d.validation:
        train_t = train_table
        val = task.load_split(
            d.validation,
            "validation",
            hub_split=d.validation_split,
            on_error=d.on_error,
            columns=d.columns,
        )
    else:
        train_t, val_t = held_out(train_table, d.validation_fraction, cfg.training.seed)
        val = task.table_to_split(val_t, "validation", on_error=d.on_error)
    if d.max_train_rows:
        train_t = subsample(train_t, d.max_train_rows, cfg.training.seed)
    train_t, augmented = augment_table(train_t, task, cfg.augment, cfg.training.seed)
    splits["train"] = task.table_to_split(train_t, "train", on_error=d.on_error)
    splits["train"].augmented = augmented
    splits["validation"] = val
    if test_t is not None:
        splits["test"] = task.table_to_split(test_t, "test", on_error=d.on_error)
    if d.test:
        splits["test"] = task.load_split(
            d.test, "test", hub_split=d.test_split, on_error=d.on_error, columns=d.columns
        )
    return splits
