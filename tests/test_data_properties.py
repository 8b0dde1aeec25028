"""Property-based tests: whatever a data file holds, loading ends in a clear error or a report."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.errors import DataError
from tunelab.tasks.classification import ClassificationTask

LABELS = ["neg", "pos"]


class _Tok:
    pad_token_id = 0

    def __call__(self, texts, pairs=None, truncation=True, max_length=16):
        ids = [[1, *[len(w) % 50 for w in t.split()]][:max_length] for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}


def task():
    return ClassificationTask(LABELS, tokenizer=_Tok(), max_length=16)


texts = st.one_of(
    st.text(min_size=0, max_size=40),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.just("x" * 5000),
    st.lists(st.integers(), max_size=2),
)
labels = st.one_of(
    st.sampled_from([*LABELS, "0", "1", "", "other"]), st.none(), st.integers(-1, 3), st.booleans()
)
rows = st.lists(
    st.fixed_dictionaries(
        {"text": texts, "label": labels}, optional={"extra": st.text(max_size=5)}
    ),
    min_size=0,
    max_size=12,
)


def expected_good(row) -> bool:
    t, lab = row.get("text"), row.get("label")
    if not isinstance(t, str) or not t.strip():
        return False
    if lab is None or isinstance(lab, bool):
        return False
    key = str(lab).strip()
    return key in LABELS or (key.lstrip("-").isdigit() and 0 <= int(key) < 2)


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(rows=rows, mode=st.sampled_from(["strict", "skip"]))
def test_jsonl_rows(tmp_path, rows, mode):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    good = [r for r in rows if expected_good(r)]
    try:
        split = task().load_split(str(path), "train", on_error=mode)
    except DataError:
        assert (mode == "strict" and len(good) < len(rows)) or not good
        return
    # never a silently different dataset: exactly the well-formed rows, in order
    assert [r["text"] for r in split.records] == [r["text"] for r in good]
    assert len(split.skipped) == len(rows) - len(good)


@SETTINGS
@given(
    data=st.binary(max_size=300),
    mode=st.sampled_from(["strict", "skip"]),
    ext=st.sampled_from(["csv", "tsv", "jsonl", "json"]),
)
def test_arbitrary_bytes(tmp_path, data, mode, ext):
    path = tmp_path / f"d.{ext}"
    path.write_bytes(b"text,label\n" + data if ext == "csv" else data)
    try:
        split = task().load_split(str(path), "train", on_error=mode)
    except DataError:
        return
    assert len(split) >= 1 and all(isinstance(r["text"], str) for r in split.records)


@SETTINGS
@given(
    cells=st.lists(st.lists(st.text(max_size=8), min_size=0, max_size=4), max_size=10),
    mode=st.sampled_from(["strict", "skip"]),
)
def test_ragged_csv(tmp_path, cells, mode):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    w.writerows(cells)
    path = tmp_path / "d.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    try:
        split = task().load_split(str(path), "train", on_error=mode)
    except DataError:
        return
    for rec in split.records:
        assert rec["label"] in LABELS and rec["text"].strip()
