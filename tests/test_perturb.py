"""Robustness perturbations: seeded, strength-scaled, and each doing what it says."""

from __future__ import annotations

import random

import pytest

from tunelab.errors import ConfigError
from tunelab.evaluation.perturb import NEIGHBOURS, PERTURBATIONS, contract, expand, perturb, typos

TEXT = "I do not think it is a good film. It's long, and the cast can't act at all!"


@pytest.mark.parametrize("kind", list(PERTURBATIONS))
def test_seeded_and_zero_strength_is_identity(kind):
    a = perturb([TEXT] * 4, kind, 0.5, seed=1)
    assert a == perturb([TEXT] * 4, kind, 0.5, seed=1)
    assert perturb([TEXT], kind, 0.0, seed=1) == [TEXT]
    assert sum(x != TEXT for x in a) >= 2  # at 0.5 most texts change
    assert len(set(a)) > 1  # each text has its own generator


def test_typos_use_keyboard_neighbours_drops_and_repeats():
    out = typos("abcdefghij" * 20, 1.0, random.Random(0))
    assert out != "abcdefghij" * 20
    # every change is one of the three kinds: count letters that are neither kept nor neighbours
    assert set(NEIGHBOURS["a"]) == set("qwsz")
    assert typos("hello world", 0.0, random.Random(0)) == "hello world"


def test_contractions_both_ways_keep_case():
    assert contract("Do not go. It is late.", 1.0, random.Random(0)) == "Don't go. It's late."
    assert expand("Don't go. It's late.", 1.0, random.Random(0)) == "Do not go. It is late."


def test_bad_kind_or_strength():
    with pytest.raises(ConfigError, match="allowed: typos"):
        perturb([TEXT], "nope")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        perturb([TEXT], "typos", 2.0)
