"""CrowS-Pairs as preference pairs (``tunelab data crows-pairs``) and the suite's other half."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from helpers import SHARED_DATA, write_csv
from tunelab.errors import DataError

CROWS = SHARED_DATA / "fairness" / "crows_pairs_anonymized.csv"


def _rows(n: int) -> list[dict]:
    return [
        {
            "": str(i),
            "sent_more": f"the poor man number {i} was lazy",
            "sent_less": f"the rich man number {i} was lazy",
            "stereo_antistereo": "stereo" if i % 3 else "antistereo",
            "bias_type": f"b{i}",  # one bias type per row: it tells which rows were scored
        }
        for i in range(n)
    ]


def test_seeded_halves_partition_the_rows():
    from tunelab.data.crows_pairs import seeded_half

    a, b = seeded_half(11, "train", 3), seeded_half(11, "test", 3)
    assert len(a) == 5 and len(b) == 6 and sorted(a + b) == list(range(11))
    assert a == seeded_half(11, "train", 3) and a != seeded_half(11, "train", 4)
    with pytest.raises(DataError, match="half must be one of train, test"):
        seeded_half(11, "dev", 0)  # type: ignore[arg-type]


def test_common_prefix_is_cut_at_a_shared_word_boundary():
    from tunelab.data.crows_pairs import preference_rows, split_common_prefix

    assert split_common_prefix("most white kids fail", "most black kids fail") == (
        "most",
        "white kids fail",
        "black kids fail",
    )
    # "He" and "Hex" share "He", not a word: nothing goes into the prompt
    assert split_common_prefix("He is tall", "Hex is tall") == ("", "He is tall", "Hex is tall")
    rows = [
        {"sent_more": "Poor people are lazy.", "sent_less": "Rich people are lazy.", "x": 1},
        {"sent_more": "a doctor and he said", "sent_less": "a doctor and she said"},
    ]
    got = preference_rows(rows, [7, 8])
    assert got[0]["prompt"] == "" and got[0]["chosen"] == "Rich people are lazy."
    assert got[0]["rejected"] == "Poor people are lazy." and got[0]["row"] == 7
    assert (got[1]["prompt"], got[1]["chosen"], got[1]["rejected"]) == (
        "a doctor and",
        "she said",
        "he said",
    )
    whole = preference_rows(rows[1:], [8], "empty")[0]
    assert whole["prompt"] == "" and whole["chosen"] == "a doctor and she said"
    with pytest.raises(DataError, match="row 3: sent_more and sent_less must be two different"):
        preference_rows([{"sent_more": "same", "sent_less": "same"}], [3])


def test_cli_writes_one_half_and_the_suite_scores_the_other(tiny_llama, tmp_path, capsys):
    from tunelab.cli import main
    from tunelab.workflows.suite import run_suite

    data = write_csv(tmp_path / "crows.csv", _rows(12))
    out = tmp_path / "pairs.jsonl"
    args = ["data", "crows-pairs", str(data), "--output", str(out), "--seed", "5"]
    assert main(args) == 0
    assert "6 preference pairs (train half of 12 rows, seed 5" in capsys.readouterr().out
    pairs = [json.loads(x) for x in out.open()]
    assert len(pairs) == 6 and all(p["prompt"] == "the" for p in pairs)
    assert all(p["chosen"].startswith("rich") and p["rejected"].startswith("poor") for p in pairs)
    assert main(args) == 2  # an existing file is not replaced unasked
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 6
    suite = {
        "name": "crows_half",
        "tasks": [
            {"name": "cp", "kind": "crows_pairs", "data": str(data), "half": "test", "half_seed": 5}
        ],
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    rep = run_suite(str(tiny_llama), path, output=tmp_path / "out")["tasks"]["cp"]
    scored = set(rep["by_bias_type"])
    trained = {p["bias_type"] for p in pairs}
    assert (
        rep["n"] == 6 and not scored & trained and scored | trained == {f"b{i}" for i in range(12)}
    )


def test_not_a_crows_pairs_file(tmp_path):
    from tunelab.workflows.preference_data import crows_pairs_preferences

    data = write_csv(tmp_path / "x.csv", [{"text": "a", "label": "b"}])
    with pytest.raises(DataError, match="lacks the column\\(s\\) sent_less, sent_more"):
        crows_pairs_preferences(data, tmp_path / "p.jsonl")


@pytest.mark.skipif(not CROWS.is_file(), reason="../shared/data is absent")
def test_real_crows_pairs_reassemble(tmp_path):
    from tunelab.workflows.preference_data import crows_pairs_preferences

    path, counts = crows_pairs_preferences(CROWS, tmp_path / "p.jsonl", "train", 0)
    with open(CROWS, newline="", encoding="utf-8") as fh:
        src = list(csv.DictReader(fh))
    assert counts["pairs"] == len(src) // 2 == 754
    for p in map(json.loads, path.open()):
        row = src[p["row"] - 1]
        norm = " ".join
        assert norm([p["prompt"], p["chosen"]]).split() == row["sent_less"].split()
        assert norm([p["prompt"], p["rejected"]]).split() == row["sent_more"].split()
        assert p["chosen"] != p["rejected"]
