"""Task mixtures: which task each training example comes from.

Sampling rates (T5, Raffel et al. 2020, section 3.5.2): examples-proportional with a cap ``K``
(r_i ∝ min(n_i, K)), temperature-scaled (r_i ∝ min(n_i, K)^(1/T)), uniform, or explicit weights.
Examples are drawn per example (mixed batches) or per batch (every batch from one task). Within a
task, examples come in a seeded permutation that is renewed when the task is used up, so small
tasks repeat and large ones are subsampled as the rates say. The sampler is stateful: its
``state_dict`` resumes the exact stream. Written for tunelab: no maintained library samples task
mixtures this way (Hugging Face declined it; transformers #4340, #11693).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tunelab.errors import ConfigError

STRATEGIES = ("proportional", "temperature", "uniform", "weights")


def mixture_rates(
    sizes: dict[str, int],
    strategy: str = "proportional",
    cap: int | None = None,
    temperature: float = 1.0,
    weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """Sampling probability of each task."""
    if not sizes:
        raise ConfigError("a mixture needs at least one task")
    empty = [t for t, n in sizes.items() if n <= 0]
    if empty:
        raise ConfigError(f"mixture: task(s) {empty} have no examples")
    if strategy not in STRATEGIES:
        raise ConfigError(f"mixture.strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    if strategy == "uniform":
        raw = {t: 1.0 for t in sizes}
    elif strategy == "weights":
        if not weights or set(weights) != set(sizes):
            raise ConfigError(f"mixture.weights must give one weight per task: {sorted(sizes)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError("mixture.weights must be non-negative and not all zero")
        raw = dict(weights)
    else:
        if temperature <= 0:
            raise ConfigError("mixture.temperature must be positive")
        t = temperature if strategy == "temperature" else 1.0
        raw = {k: float(min(n, cap) if cap else n) ** (1.0 / t) for k, n in sizes.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


class MixtureSampler:
    """Batches of ``(task, example index)`` pairs, seeded, resumable and sharded by rank."""

    def __init__(
        self,
        sizes: dict[str, int],
        batch_size: int,
        rates: dict[str, float],
        seed: int = 0,
        homogeneous: bool = False,
        world_size: int = 1,
        rank: int = 0,
        offsets: dict[str, int] | None = None,
        schedule: list[tuple[int, dict[str, float]]] | None = None,
    ):
        self.tasks = list(sizes)
        #: where each task's examples start in the mixed split (iteration yields those indices)
        self.offsets = offsets or {t: 0 for t in self.tasks}
        self.sizes = dict(sizes)
        self.batch_size, self.homogeneous = batch_size, homogeneous
        self.p = self._probs(rates)
        #: phases: (first batch after the phase, rates); the last phase's rates continue
        self.schedule = [(end, self._probs(r)) for end, r in (schedule or [])]
        self.seed, self.world_size, self.rank = seed, world_size, rank
        self.rng = np.random.default_rng([seed, 11])
        self.perms: dict[str, list[int]] = {}
        self.cursor: dict[str, int] = {}
        self.rounds: dict[str, int] = {t: 0 for t in self.tasks}
        self.drawn: Counter = Counter()
        self.batches = 0

    def _probs(self, rates: dict[str, float]):
        p = np.array([rates[t] for t in self.tasks], dtype=float)
        return p / p.sum()

    def current_rates(self):
        """Sampling probabilities in force for the next batch."""
        for end, p in self.schedule:
            if self.batches < end:
                return p
        return self.schedule[-1][1] if self.schedule else self.p

    def _next_example(self, task: str) -> int:
        perm = self.perms.get(task)
        if perm is None or self.cursor[task] >= len(perm):
            g = np.random.default_rng([self.seed, 13, self.tasks.index(task), self.rounds[task]])
            self.perms[task] = g.permutation(self.sizes[task]).tolist()
            self.cursor[task] = 0
            self.rounds[task] += 1
        i = self.perms[task][self.cursor[task]]
        self.cursor[task] += 1
        return i

    def next_batch(self) -> list[tuple[str, int]]:
        """This rank's share of the next global batch (every rank draws the same global
        batch, then keeps its own slice, so ranks never overlap)."""
        global_size = self.batch_size * self.world_size
        p = self.current_rates()
        if self.homogeneous:
            task = self.tasks[int(self.rng.choice(len(self.tasks), p=p))]
            picks = [task] * global_size
        else:
            picks = [self.tasks[int(i)] for i in self.rng.choice(len(self.tasks), global_size, p=p)]
        batch = [(t, self._next_example(t)) for t in picks]
        self.drawn.update(picks)
        self.batches += 1
        return batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def batches_per_epoch(self) -> int:
        """Batches in one pass over as many examples as the mixture holds."""
        return max(1, -(-sum(self.sizes.values()) // (self.batch_size * self.world_size)))

    def __iter__(self):
        """Endless stream of this rank's batches, as indices into the mixed split."""
        while True:
            yield [self.offsets[t] + i for t, i in self.next_batch()]

    def realised_mix(self) -> dict[str, float]:
        """Share of drawn examples per task so far (all ranks together)."""
        total = sum(self.drawn.values()) or 1
        return {t: self.drawn[t] / total for t in self.tasks}

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "perms": {t: list(p) for t, p in self.perms.items()},
            "cursor": dict(self.cursor),
            "rounds": dict(self.rounds),
            "drawn": dict(self.drawn),
            "batches": self.batches,
            "tasks": self.tasks,
            "sizes": self.sizes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["tasks"] != self.tasks or state["sizes"] != self.sizes:
            raise ConfigError("the checkpoint's task mixture differs from this run's")
        self.rng.bit_generator.state = state["rng"]
        self.perms = {t: list(p) for t, p in state["perms"].items()}
        self.cursor = dict(state["cursor"])
        self.rounds = dict(state["rounds"])
        self.drawn = Counter(state["drawn"])
        self.batches = state["batches"]
