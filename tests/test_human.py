"""Human evaluation sheets: export, import, aggregation and agreement."""

from __future__ import annotations

import csv
import json

import pytest

from tunelab.errors import DataError, RunDirError
from tunelab.evaluation.human import export_sheet, import_ratings


def fake_run(folder, tag: str, n: int = 12):
    (folder / "predictions").mkdir(parents=True)
    rows = [
        {
            "row": i,
            "prompt": f"question {i}",
            "reference": f"answer {i}",
            "prediction": f"{tag} says {i}",
        }
        for i in range(1, n + 1)
    ]
    (folder / "predictions" / "validation.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    return folder


def fill(path, rows, out):
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_scale_sheet_means_cis_and_agreement(tmp_path):
    import krippendorff
    import numpy as np
    from scipy import stats
    from sklearn.metrics import cohen_kappa_score

    run = fake_run(tmp_path / "run", "model")
    paths = export_sheet([run], tmp_path / "sheet", n=8, seed=1)
    items = read(paths["csv"])
    assert len(items) == 8 and {"fluency", "coherence", "relevance", "output"} <= set(items[0])
    assert all(r["output"].startswith("model says") for r in items)
    with pytest.raises(RunDirError, match="exist; pass --overwrite"):
        export_sheet([run], tmp_path / "sheet")
    a = [3, 4, 5, 2, 4, 4, 5, 3]
    b = [3, 5, 5, 1, 4, 3, 5, 3]
    s1 = fill(None, [dict(r, fluency=x) for r, x in zip(items, a)], tmp_path / "r1.csv")
    s2 = fill(None, [dict(r, fluency=x) for r, x in zip(items, b)], tmp_path / "r2.csv")
    rep = import_ratings(paths["key"], [s1, s2])
    fl = rep["criteria"]["fluency"]
    xs = a + b
    mean = sum(xs) / 16
    half = stats.t.ppf(0.975, 15) * np.std(xs, ddof=1) / 4
    assert fl["mean"] == pytest.approx(mean) and fl["ci_high"] == pytest.approx(mean + half)
    want = krippendorff.alpha(
        reliability_data=np.array([a, b], float), level_of_measurement="ordinal"
    )
    assert fl["krippendorff_alpha"] == pytest.approx(want)
    assert fl["cohen_kappa"] == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    assert rep["criteria"]["coherence"] == {"n": 0}  # nobody rated it
    # malformed ratings are reported with file and row, not dropped
    bad = [dict(r, fluency=x) for r, x in zip(items, a)]
    bad[2]["fluency"], bad[5]["fluency"] = "7", "good"
    s3 = fill(None, bad, tmp_path / "r3.csv")
    with pytest.raises(
        DataError, match=r"2 malformed.*r3.csv: row 4: fluency='7'.*row 7: fluency='good'"
    ):
        import_ratings(paths["key"], [s1, s3])


def test_pairwise_sheet_hides_and_decodes_the_order(tmp_path):
    ra = fake_run(tmp_path / "a", "alpha")
    rb = fake_run(tmp_path / "b", "beta")
    paths = export_sheet([ra, rb], tmp_path / "pair", n=10, seed=2)
    items = read(paths["csv"])
    key = json.loads(paths["key"].read_text())
    # both orders occur, and the sheet does not say which run is which
    assert {k["a"] for k in key["items"]} == {str(ra), str(rb)}
    assert "alpha" not in json.dumps(list(items[0])) and "a" not in items[0].get("run", "")
    # a rater who always prefers beta's output, whichever side it is on
    prefs = [dict(r, preference="A" if r["output_a"].startswith("beta") else "B") for r in items]
    prefs[0]["preference"] = "tie"
    s1 = fill(None, prefs, tmp_path / "p1.csv")
    rep = import_ratings(paths["key"], [s1])
    win = rep["criteria"]["preference"]["win_rate"]
    assert win[str(rb)] == pytest.approx(0.9) and win[str(ra)] == 0 and win["tie"] == 0.1


def test_human_cli(tmp_path, capsys):
    from tunelab.cli import main

    run = fake_run(tmp_path / "run", "model")
    assert main(["human", "export", str(run), "--output", str(tmp_path / "s"), "--n", "4"]) == 0
    items = read(tmp_path / "s.csv")
    sheet = fill(None, [dict(r, relevance=4) for r in items], tmp_path / "rater1.csv")
    capsys.readouterr()
    assert main(["human", "import", str(tmp_path / "s.key.json"), str(sheet), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["criteria"]["relevance"]["mean"] == 4.0 and rep["raters"] == ["rater1"]
