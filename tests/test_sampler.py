from __future__ import annotations

import itertools

import numpy as np
import pytest

from tunelab.data.batching import BatchSampler, eval_batches, pad_collate


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_same_seed_same_order_other_seed_other_order():
    lengths = list(np.random.default_rng(0).integers(3, 60, 500))
    a = take(BatchSampler(lengths, 8, seed=1), 100)
    b = take(BatchSampler(lengths, 8, seed=1), 100)
    c = take(BatchSampler(lengths, 8, seed=2), 100)
    assert a == b and a != c


def test_each_epoch_covers_every_example_once():
    lengths = list(range(1, 102))
    s = BatchSampler(lengths, 10, seed=0)
    epoch = take(s, s.batches_per_epoch())
    flat = sorted(i for b in epoch for i in b)
    assert flat == list(range(101))
    assert s.state_dict()["epoch"] == 0 and s.state_dict()["position"] == 11


def test_two_processes_see_disjoint_shards_that_cover_the_data():
    lengths = list(np.random.default_rng(1).integers(3, 60, 64))
    shards = [take(BatchSampler(lengths, 8, seed=3, world_size=2, rank=r), 4) for r in range(2)]
    seen = [set(i for b in s for i in b) for s in shards]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(64))


def test_short_last_global_batch_is_completed_for_every_process():
    s = [BatchSampler([5] * 10, 4, seed=0, world_size=2, rank=r) for r in range(2)]
    last = [take(x, 2)[1] for x in s]
    assert len(last[0]) == len(last[1]) == 4


def test_resume_from_state_gives_the_same_sequence():
    lengths = list(np.random.default_rng(2).integers(3, 60, 200))
    ref = take(BatchSampler(lengths, 16, seed=5), 40)
    s = BatchSampler(lengths, 16, seed=5)
    first = take(s, 17)
    state = s.state_dict()
    s2 = BatchSampler(lengths, 16, seed=5)
    s2.load_state_dict(state)
    assert first + take(s2, 23) == ref


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(3).integers(3, 80, 2000)

    def padded(group):
        s = BatchSampler(list(lengths), 32, seed=0, group_by_length=group)
        computed = sum(max(lengths[b]) * len(b) for b in take(s, s.batches_per_epoch()))
        return computed - int(lengths.sum())

    assert padded(True) < 0.1 * padded(False)


def test_eval_batches_shard_and_pad_collate():
    parts = [i for r in range(2) for b in eval_batches([3, 1, 2, 5, 4], 2, r, 2) for i in b]
    assert sorted(parts) == [0, 1, 2, 3, 4]
    batch = pad_collate(
        [
            {"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": 1},
            {"input_ids": [4], "attention_mask": [1], "labels": 0},
        ],
        pad_id=9,
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_empty_dataset_is_refused():
    with pytest.raises(ValueError):
        BatchSampler([], 4)
