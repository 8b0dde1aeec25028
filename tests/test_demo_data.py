"""Tests for the synthetic demo sentiment dataset."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter

import pytest

from tunelab.data.demo import make_demo_rows, write_demo_dataset

LABELS = {"negative", "positive"}
NEGATION = re.compile(r"\b(not|never|hardly|far from|nothing|no complaints|can't|don't)\b", re.I)


def _read(path) -> tuple[list[str] | None, list[dict]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return reader.fieldnames, rows


def _balanced(rows: list[dict]) -> bool:
    counts = Counter(row["label"] for row in rows)
    pos, neg = counts["positive"], counts["negative"]
    return abs(pos - neg) <= 1 or abs(pos - neg) <= 0.05 * len(rows)


def test_rows_have_expected_shape() -> None:
    rows = make_demo_rows(50, seed=0)
    assert len(rows) == 50
    for row in rows:
        assert set(row) == {"text", "label"}
        assert row["label"] in LABELS
        assert isinstance(row["text"], str) and row["text"].strip()


def test_same_seed_is_deterministic() -> None:
    assert make_demo_rows(300, seed=1) == make_demo_rows(300, seed=1)


def test_different_seeds_differ() -> None:
    assert make_demo_rows(300, seed=1) != make_demo_rows(300, seed=2)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 200, 801])
def test_labels_are_balanced(n: int) -> None:
    rows = make_demo_rows(n, seed=3)
    assert len(rows) == n
    assert _balanced(rows)


def test_rows_are_distinct() -> None:
    texts = [row["text"] for row in make_demo_rows(1000, seed=4)]
    assert len(set(texts)) == len(texts)


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError):
        make_demo_rows(-1, seed=0)
    with pytest.raises(ValueError):
        write_demo_dataset("unused", n_train=-5)


def test_vocabulary_is_rich() -> None:
    rows = make_demo_rows(800, seed=0)
    words = {w for row in rows for w in re.findall(r"[a-z'-]+", row["text"].lower())}
    assert len(words) >= 150


def test_negation_appears_with_both_labels() -> None:
    rows = make_demo_rows(800, seed=0)
    negated = Counter(row["label"] for row in rows if NEGATION.search(row["text"]))
    assert negated["positive"] >= 10
    assert negated["negative"] >= 10
    texts = [row["text"].lower() for row in rows]
    assert any(re.search(r"\bnot \w+( \w+)? at all\b", t) for t in texts)


def test_write_dataset_files(tmp_path) -> None:
    out = tmp_path / "nested" / "demo"
    paths = write_demo_dataset(out, n_train=120, n_validation=31, n_test=40, seed=5)
    assert set(paths) == {"train", "validation", "test"}
    expected = {"train": 120, "validation": 31, "test": 40}
    texts: dict[str, set[str]] = {}
    for split, path in paths.items():
        assert path == out / f"{split}.csv"
        header, rows = _read(path)
        assert header == ["text", "label"]
        assert len(rows) == expected[split]
        assert all(row["label"] in LABELS for row in rows)
        assert _balanced(rows)
        texts[split] = {row["text"] for row in rows}
        assert len(texts[split]) == len(rows)
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    assert sorted(p.name for p in out.iterdir()) == ["test.csv", "train.csv", "validation.csv"]


def test_default_sizes_and_no_cross_split_duplicates(tmp_path) -> None:
    paths = write_demo_dataset(tmp_path)
    splits = {split: _read(path)[1] for split, path in paths.items()}
    assert {k: len(v) for k, v in splits.items()} == {"train": 800, "validation": 200, "test": 200}
    seen: Counter[str] = Counter(row["text"].lower() for rows in splits.values() for row in rows)
    assert max(seen.values()) == 1


def test_write_dataset_is_deterministic_and_overwrites(tmp_path) -> None:
    first = write_demo_dataset(tmp_path / "a", n_train=60, n_validation=20, n_test=20, seed=9)
    second = write_demo_dataset(tmp_path / "b", n_train=60, n_validation=20, n_test=20, seed=9)
    for split in first:
        assert first[split].read_bytes() == second[split].read_bytes()
    again = write_demo_dataset(tmp_path / "a", n_train=10, n_validation=4, n_test=4, seed=9)
    assert len(_read(again["train"])[1]) == 10
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "test.csv",
        "train.csv",
        "validation.csv",
    ]


def test_train_split_matches_make_demo_rows(tmp_path) -> None:
    paths = write_demo_dataset(tmp_path, n_train=100, n_validation=10, n_test=10, seed=11)
    _, rows = _read(paths["train"])
    assert rows == make_demo_rows(100, seed=11)


# Exact output of make_demo_rows(40, seed=7), pinned before the vocabulary moved to JSON.
_PINNED_40_SEED_7 = [
    {"text": "I found these headphones lovely, and I enjoyed them.", "label": "positive"},
    {"text": "I was annoyed by these running shoes; they were frustrating.", "label": "negative"},
    {
        "text": "I found the biography beautifully written; it was engaging. A pleasant surprise.",
        "label": "positive",
    },
    {"text": "I loved the memoir.", "label": "positive"},
    {"text": "The coffee maker was lightweight and delightful.", "label": "positive"},
    {"text": "The hotel room was delightful and spacious. I was so happy.", "label": "positive"},
    {
        "text": "The hotel room was spacious at first, but it turned out smelly. I keep warning friends about it.",
        "label": "negative",
    },
    {"text": "I was annoyed by the remake; it was poor. Never again.", "label": "negative"},
    {
        "text": "I found the novel downright thought-provoking, and I was delighted with it.",
        "label": "positive",
    },
    {"text": "The lodge was excellent and fabulous; it was spotless.", "label": "positive"},
    {"text": "This movie was not fantastic at all. I was so annoyed.", "label": "negative"},
    {
        "text": "Some people said the coffee maker was cheaply made, but I found it marvelous. My expectations were exceeded.",
        "label": "positive",
    },
    {
        "text": "From my experience, the plot was thin, and the special effects were really subpar.",
        "label": "negative",
    },
    {"text": "The hotel room was a wonderful place to stay. It made my week.", "label": "positive"},
    {
        "text": "The mystery novel was shallow and underwhelming, and the characters were unlikable.",
        "label": "negative",
    },
    {
        "text": "I found the guesthouse delightful. Exactly what I hoped for. Five stars.",
        "label": "positive",
    },
    {
        "text": "I cannot stop complaining about this cookbook. I was so annoyed.",
        "label": "negative",
    },
    {"text": "The brunch spot was chaotic and horrible; it was lackluster.", "label": "negative"},
    {"text": "The view was not breathtaking. It ruined my week. Stay away.", "label": "negative"},
    {"text": "I expected this noodle shop to be superb, but it was horrible.", "label": "negative"},
    {"text": "I found the lodge comfortable, and the bed was huge.", "label": "positive"},
    {
        "text": "I found the smartwatch utterly fragile, and the customer support was fairly poor.",
        "label": "negative",
    },
    {"text": "I found the banking app marvelous.", "label": "positive"},
    {"text": "The photo editor was dreadful, and I was appalled by it.", "label": "negative"},
    {
        "text": "I found the fantasy series lousy. Everyone in our group complained.",
        "label": "negative",
    },
    {
        "text": "The textbook kept me up all night reading, and the final chapter was terrific.",
        "label": "positive",
    },
    {"text": "The audiobook changed the way I think. It made my week.", "label": "positive"},
    {"text": "I adored this book, and the characters were genuinely complex.", "label": "positive"},
    {
        "text": "I found this app awful, and I cannot stop complaining about it.",
        "label": "negative",
    },
    {
        "text": "The interface was terrible; however, the loading time was snappy.",
        "label": "positive",
    },
    {"text": "The dessert was tasteless.", "label": "negative"},
    {"text": "The service was efficient, but honestly the food was lousy.", "label": "negative"},
    {"text": "I found the motel run-down.", "label": "negative"},
    {"text": "The guesthouse was hardly horrible. It made my week.", "label": "positive"},
    {"text": "This app was horrible, and the onboarding was lackluster.", "label": "negative"},
    {"text": "The special effects were superb. I was so happy.", "label": "positive"},
    {"text": "The loading time was not underwhelming.", "label": "positive"},
    {
        "text": "All things considered, the translation was subpar, and I was annoyed by it.",
        "label": "negative",
    },
    {"text": "This resort made our trip unforgettable.", "label": "positive"},
    {
        "text": "In my opinion, the vacuum cleaner was really fragile. I keep warning friends about it.",
        "label": "negative",
    },
]
_PINNED_2000_SEED_0_SHA256 = "efa3ad981010e157410cc574afe2646bd72c1cbd31cda58c3c129c19059a6d16"


def test_make_demo_rows_pinned() -> None:
    assert make_demo_rows(40, seed=7) == _PINNED_40_SEED_7
    rows = make_demo_rows(2000, seed=0)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode("utf-8")).hexdigest()
    assert digest == _PINNED_2000_SEED_0_SHA256
