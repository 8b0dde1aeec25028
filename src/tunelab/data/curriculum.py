"""Curriculum learning: easy examples first, harder ones admitted as training goes on.

Competence-based curriculum (Platanios et al., 2019): examples are ranked by a difficulty
signal (a given column, token length, or the model's own loss before training); at step ``t``
of ``T`` only the easiest ``c(t)`` share is sampled from, where the pacing function grows from
``start`` to 1 at ``full_at · T`` — linearly, or as a square root (fast early growth). Written
for tunelab: samplers of the maintained libraries have no pacing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def competence(step: int, total: int, pacing: str, start: float, full_at: float) -> float:
    """Share of the easiest examples available at ``step`` (0-based) of ``total``."""
    horizon = max(1.0, full_at * total)
    x = min(1.0, step / horizon)
    if pacing == "linear":
        c = start + (1.0 - start) * x
    elif pacing == "root":
        c = math.sqrt(start**2 + (1.0 - start**2) * x)
    else:
        raise ValueError(f"unknown pacing {pacing!r}; allowed: linear, root")
    return min(1.0, c)


class CurriculumSampler:
    """Batches drawn uniformly from the easiest ``competence(step)`` share of the examples."""

    def __init__(
        self,
        difficulty: Sequence[float],
        batch_size: int,
        total_steps: int,
        *,
        pacing: str = "root",
        start: float = 0.2,
        full_at: float = 0.5,
        seed: int = 0,
        world_size: int = 1,
        rank: int = 0,
    ):
        if len(difficulty) == 0:
            raise ValueError("cannot sample from an empty dataset")
        d = np.asarray(difficulty, dtype=float)
        self.order = np.argsort(d, kind="stable")  # easiest first; ties keep data order
        self.batch_size, self.total_steps = batch_size, total_steps
        self.pacing, self.start, self.full_at = pacing, start, full_at
        self.seed, self.world_size, self.rank = seed, world_size, rank
        self.rng = np.random.default_rng([seed, 17])
        self.step = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        return -(-len(self.order) // self.global_batch)

    def available(self, step: int) -> int:
        c = competence(step, self.total_steps, self.pacing, self.start, self.full_at)
        return min(len(self.order), max(self.global_batch, math.ceil(c * len(self.order) - 1e-9)))

    def next_batch(self) -> list[int]:
        n = self.available(self.step)
        g = self.global_batch
        pick = self.rng.choice(n, size=g, replace=n < g)
        batch = self.order[pick].tolist()
        self.step += 1
        return batch[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rng": self.rng.bit_generator.state, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]


def column_difficulty(table, split, column: str) -> list[float]:
    """Each training example's value of ``column`` (a number; larger = harder)."""
    from tunelab.errors import DataError

    if column not in table.columns:
        raise DataError(
            f"{table.source}: column {column!r} (curriculum.column) not found; "
            f"columns are: {', '.join(table.columns)}"
        )
    by_row = dict(zip(table.row_ids, table.rows))
    out, bad = [], []
    for rec in split.records:
        raw = by_row[rec["row"]].get(column)
        try:
            value = float(raw)
            if math.isnan(value):
                raise ValueError
        except (TypeError, ValueError):
            bad.append(f"row {rec['row']}: {raw!r}")
            continue
        out.append(value)
    if bad:
        raise DataError(
            f"curriculum.column={column!r} must hold a number in every training row; "
            + "; ".join(bad[:5])
            + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        )
    return out
