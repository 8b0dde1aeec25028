"""Task-mixture sampling: rates as the formulas say, realised mix close to them, exact resume."""

from __future__ import annotations

import json

import pytest

from tunelab.data.mixture import MixtureSampler, mixture_rates
from tunelab.errors import ConfigError

SIZES = {"big": 10_000, "mid": 1_000, "small": 50}


def test_rates_follow_the_t5_formulas():
    p = mixture_rates(SIZES, "proportional")
    assert p["big"] == pytest.approx(10_000 / 11_050)
    capped = mixture_rates(SIZES, "proportional", cap=1_000)
    assert capped["big"] == pytest.approx(1_000 / 2_050) == capped["mid"]
    t2 = mixture_rates(SIZES, "temperature", cap=2_000, temperature=2.0)
    z = 2_000**0.5 + 1_000**0.5 + 50**0.5
    assert t2["small"] == pytest.approx(50**0.5 / z) and t2["big"] == pytest.approx(2_000**0.5 / z)
    assert list(mixture_rates(SIZES, "uniform").values()) == pytest.approx([1 / 3] * 3)
    w = mixture_rates(SIZES, "weights", weights={"big": 1, "mid": 1, "small": 2})
    assert w["small"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="one weight per task"):
        mixture_rates(SIZES, "weights", weights={"big": 1})
    with pytest.raises(ConfigError, match="no examples"):
        mixture_rates({"a": 0, "b": 3})


@pytest.mark.parametrize("homogeneous", [False, True])
def test_realised_mix_matches_the_rates(homogeneous):
    rates = mixture_rates(SIZES, "temperature", cap=2_000, temperature=2.0)
    s = MixtureSampler(SIZES, 16, rates, seed=3, homogeneous=homogeneous)
    batches = [s.next_batch() for _ in range(3_000)]
    mix = s.realised_mix()
    n = 3_000 if homogeneous else 48_000  # independent draws
    for t, r in rates.items():
        sd = (r * (1 - r) / n) ** 0.5
        assert abs(mix[t] - r) < 5 * sd, (t, mix[t], r)
    if homogeneous:
        assert all(len({t for t, _ in b}) == 1 for b in batches)
    else:
        assert sum(len({t for t, _ in b}) > 1 for b in batches) > 2_000
    # a small task repeats as a whole permutation before any example comes back
    small = [i for b in batches for t, i in b if t == "small"]
    assert sorted(small[:50]) == list(range(50))


def test_state_dict_resumes_the_exact_stream():
    rates = mixture_rates(SIZES, "proportional", cap=500)
    a = MixtureSampler(SIZES, 8, rates, seed=1)
    for _ in range(37):
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints store JSON
    b = MixtureSampler(SIZES, 8, rates, seed=1)
    b.load_state_dict(state)
    assert [a.next_batch() for _ in range(20)] == [b.next_batch() for _ in range(20)]
    with pytest.raises(ConfigError, match="mixture differs"):
        MixtureSampler({"x": 5}, 8, {"x": 1.0}).load_state_dict(state)


def test_ranks_share_global_batches_without_overlap():
    rates = mixture_rates(SIZES, "uniform")
    r0 = MixtureSampler(SIZES, 4, rates, seed=2, world_size=2, rank=0)
    r1 = MixtureSampler(SIZES, 4, rates, seed=2, world_size=2, rank=1)
    for _ in range(10):
        b0, b1 = r0.next_batch(), r1.next_batch()
        assert len(b0) == len(b1) == 4 and not set(b0) & set(b1)
