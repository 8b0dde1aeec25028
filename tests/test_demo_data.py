"""Tests for the synthetic demo sentiment dataset."""

from __future__ import annotations

import csv
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
