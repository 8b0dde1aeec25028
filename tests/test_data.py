from __future__ import annotations

import json

import pytest

from helpers import write_csv
from tunelab.data.sources import check_columns, read_table
from tunelab.errors import DataError
from tunelab.tasks.classification import ClassificationTask, infer_labels


class _Tok:
    """A whitespace tokenizer standing in for a real one (data tests need no model)."""

    pad_token_id = 0

    def __call__(self, texts, pairs=None, truncation=True, max_length=128):
        ids = [[1, *[len(w) for w in t.split()]][:max_length] for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}


def task(labels=("negative", "positive"), **kw):
    return ClassificationTask(list(labels), tokenizer=_Tok(), **kw)


def test_all_formats_read_the_same_rows(tmp_path):
    import pandas as pd

    rows = [{"text": "good film", "label": "positive"}, {"text": "bad film", "label": "negative"}]
    write_csv(tmp_path / "d.csv", rows)
    write_csv(tmp_path / "d.tsv", rows, delimiter="\t")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for ext in ("csv", "tsv", "jsonl", "json", "parquet"):
        t = read_table(str(tmp_path / f"d.{ext}"))
        assert t.rows == rows, ext
        split = task().table_to_split(t, "train")
        assert [f["labels"] for f in split.features] == [1, 0], ext


def test_wrong_column_lists_the_columns_that_exist(tmp_path):
    write_csv(tmp_path / "d.csv", [{"sentence": "x", "target": "1"}])
    t = read_table(str(tmp_path / "d.csv"))
    with pytest.raises(
        DataError,
        match=r"column 'text' \(data.text_column\) not found; columns are: sentence, target",
    ):
        check_columns(t, {"text_column": "text"})
    with pytest.raises(DataError, match="columns are: sentence, target"):
        task().table_to_split(t, "train")


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_table(str(tmp_path / "nope.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        read_table(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no usable rows.*the split is empty"):
        read_table(str(tmp_path / "header.csv"))
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_table(str(tmp_path / "x.txt"))


def test_malformed_rows_strict_names_rows_and_skip_counts_them(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(
        "text,label\ngood,positive\nbad,negative,extra\n,positive\nfine,maybe\nok,negative\n"
    )
    with pytest.raises(DataError) as e:
        task().load_split(str(p), "train")
    msg = str(e.value)
    assert "3 malformed row(s)" in msg
    assert "row 2: has 3 fields, the header has 2" in msg
    assert "row 3: text is empty" in msg
    assert "row 4: label 'maybe' is not one of ['negative', 'positive']" in msg
    split = task().load_split(str(p), "train", on_error="skip")
    assert [r["row"] for r in split.records] == [1, 5]
    assert [r for r, _ in split.skipped] == [2, 3, 4]


def test_jsonl_bad_lines_and_mistyped_values(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        '{"text": "good", "label": 1}\n{not json}\n[1, 2]\n{"text": 5, "label": 0}\n{"text": "meh", "label": 0}\n'
    )
    with pytest.raises(DataError, match="row 2: invalid JSON"):
        read_table(str(p))
    split = task(labels=("0", "1")).load_split(str(p), "train", on_error="skip")
    assert [r["row"] for r in split.records] == [1, 5]
    reasons = dict(split.skipped)
    assert "not an object" in reasons[3] and "text is a int, not text" in reasons[4]


def test_non_utf8_is_an_error_or_a_skipped_row(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"text,label\ngood,1\nb\xe9d,0\nok,0\n")
    with pytest.raises(DataError, match=r"not valid UTF-8 .*line 3"):
        read_table(str(p))
    t = read_table(str(p), on_error="skip")
    assert [r["text"] for r in t.rows] == ["good", "ok"] and t.skipped[0][0] == 2


def test_label_inference_and_index_labels(tmp_path):
    assert infer_labels([1, 0, 10, 2, "2"]) == ["0", "1", "2", "10"]
    assert infer_labels(["pos", "neg", None, ""]) == ["neg", "pos"]
    t = task(labels=("negative", "positive"))
    assert t._label_index(1) == 1 and t._label_index("0") == 0 and t._label_index(2) is None
    assert t._label_index(1.0) == 1


def test_text_pairs_are_required_when_configured(tmp_path):
    p = write_csv(
        tmp_path / "p.csv", [{"a": "x", "b": "y", "label": "1"}, {"a": "x", "b": "", "label": "0"}]
    )
    t = task(labels=("0", "1"), text_column="a", text_pair_column="b")
    with pytest.raises(DataError, match="row 2: b is empty"):
        t.load_split(str(p), "train")


def test_offline_hub_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="hub:"):
        read_table("hub:someone/some-dataset-that-is-not-here")
