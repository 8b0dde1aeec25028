"""Stateful, seeded, length-grouped batch sampling and dynamic padding.

The sampler is the one mechanism behind data order, sharding across processes and exact
resume: its position is ``(epoch, batch)``, saved in every checkpoint, and the order of an
epoch is a pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


class BatchSampler:
    """Yields lists of example indices for one process.

    Each step draws a *global* batch of ``batch_size * world_size`` indices and hands this
    process its slice, so processes see disjoint shards. With ``group_by_length``, examples are
    sorted by length inside shuffled windows of 64 global batches, then the batches are shuffled:
    batches hold similar lengths (little padding) while the order stays random.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        group_by_length: bool = True,
        world_size: int = 1,
        rank: int = 0,
        window: int = 64,
    ):
        if len(lengths) == 0:
            raise ValueError("cannot sample from an empty dataset")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.group_by_length, self.world_size, self.rank = group_by_length, world_size, rank
        self.window = window
        self.epoch, self.position = 0, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        return -(-len(self.lengths) // self.global_batch)

    def _global_batches(self, epoch: int) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n, g = len(self.lengths), self.global_batch
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group_by_length:
            chunks = [order[i : i + g * self.window] for i in range(0, n, g * self.window)]
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i : i + g].tolist() for i in range(0, n, g)]
        if self.shuffle and self.group_by_length and len(batches) > 1:
            perm = rng.permutation(len(batches))
            batches = [batches[i] for i in perm]
        if self.world_size > 1:
            # Every process must run the same number of steps: complete a short global batch
            # with the epoch's first examples (as torch's DistributedSampler does).
            for b in batches:
                k = 0
                while len(b) < g:
                    b.append(int(order[k % n]))
                    k += 1
        self._cache = (epoch, batches)
        return batches

    def _local(self, batch: list[int]) -> list[int]:
        if self.world_size == 1:
            return batch
        # Interleaved slices keep each process's share length-balanced.
        return batch[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        """Endless iterator over epochs, starting from the saved position."""
        while True:
            batches = self._global_batches(self.epoch)
            while self.position < len(batches):
                batch = batches[self.position]
                self.position += 1
                yield self._local(batch)
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.seed = int(state.get("seed", self.seed))


def eval_batches(
    lengths: Sequence[int],
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Deterministic evaluation batches over this process's share, sorted by length.

    ``max_tokens``: a batch also ends before its padded size (rows x longest) would pass this,
    so long rows (2,048-token perplexity windows) come a few at a time: their activations then
    stay small enough for the allocator to reuse, instead of being mapped afresh each batch."""
    idx = np.arange(len(lengths))[rank::world_size]
    idx = idx[np.argsort(-np.asarray(lengths)[idx], kind="stable")]
    if not max_tokens:
        return [idx[i : i + batch_size].tolist() for i in range(0, len(idx), batch_size)]
    out: list[list[int]] = []
    for i in idx.tolist():
        if (
            out
            and len(out[-1]) < batch_size
            and (len(out[-1]) + 1) * lengths[out[-1][0]] <= max_tokens
        ):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def pad_collate(
    features: list[dict[str, Any]],
    pad_id: int,
    pad_to_multiple_of: int | None = None,
    label_pad: int = -100,
) -> dict[str, Any]:
    """Right-pad token fields to the longest example; stack the rest as tensors."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    out: dict[str, Any] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if key in ("input_ids", "attention_mask", "token_type_ids", "labels") and isinstance(
            values[0], list
        ):
            fill = {"input_ids": pad_id, "labels": label_pad}.get(key, 0)
            out[key] = torch.tensor(
                [v + [fill] * (longest - len(v)) for v in values], dtype=torch.long
            )
        elif isinstance(values[0], (int, float)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
