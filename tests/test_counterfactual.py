"""Counterfactual word swaps: whole words, case kept, both directions."""

from __future__ import annotations

from tunelab.evaluation.counterfactual import (
    counterfactuals,
    flip_stats,
    gender_swap_table,
    name_swap_table,
    swap,
)


def test_gender_swap_keeps_case_and_whole_words():
    t = gender_swap_table()
    assert swap("He said his Mother was the Queen.", t) == "She said her Father was the King."
    assert swap("She thanked HIM.", t) == "He thanked HER."
    assert swap("Shepherd hemisphere", t) == "Shepherd hemisphere"  # not inside words


def test_name_swap_and_counterfactual_list():
    t = name_swap_table("european_american", "african_american")
    assert swap("Adam met Jamel.", t) == "Alonzo met Harry."
    pairs = counterfactuals(["Adam smiled.", "Nobody came."], t)
    assert pairs == [(0, "Alonzo smiled.")]


def test_flip_stats():
    s = flip_stats(["pos", "neg", "pos"], ["pos", "pos", "pos"], [0.9, 0.2, 0.8], [0.8, 0.6, 0.8])
    assert s["flip_rate"] == 1 / 3
    assert abs(s["mean_abs_score_change"] - 0.5 / 3) < 1e-12
