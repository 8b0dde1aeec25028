"""`tunelab benchmark`: the shipped recipes on a tiny model and tiny data, one process per task,
missing data skipped, finished tasks kept on a second run, the table, CSV, chart and report."""

from __future__ import annotations

import csv
import json
import random

import pytest
import yaml

from helpers import FILLER, NEGATIVE, POSITIVE, write_jsonl
from tunelab.cli import main
from tunelab.errors import ConfigError
from tunelab.reporting.report import build_report
from tunelab.workflows.benchmark import run_benchmark


def cb_rows(n, seed):
    rng = random.Random(seed)
    labels = ["entailment", "contradiction", "neutral"]
    return [
        {
            "premise": " ".join(rng.choice(FILLER) for _ in range(5)),
            "hypothesis": rng.choice(FILLER),
            "label": labels[i % 3],
            "idx": i,
        }
        for i in range(n)
    ]


def copa_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        good, bad = rng.choice(POSITIVE), rng.choice(NEGATIVE)
        rows.append(
            {
                "premise": " ".join(rng.choice(FILLER) for _ in range(4)),
                "choice1": bad if label else good,
                "choice2": good if label else bad,
                "question": rng.choice(["cause", "effect"]),
                "label": label,
                "idx": i,
            }
        )
    return rows


@pytest.fixture
def setup(tiny_bert, tmp_path):
    data = tmp_path / "superglue"
    write_jsonl(data / "CB" / "train.jsonl", cb_rows(30, 1))
    write_jsonl(data / "CB" / "val.jsonl", cb_rows(12, 2))
    write_jsonl(data / "COPA" / "train.jsonl", copa_rows(30, 1))
    write_jsonl(data / "COPA" / "val.jsonl", copa_rows(10, 2))
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "model": {"name": str(tiny_bert), "max_length": 32},
                "training": {"progress": False, "precision": "fp32", "eval_before": False},
            }
        )
    )
    return data, base, tmp_path / "bench"


def test_benchmark_cli_table_outputs_and_continuation(setup, capsys):
    data, base, out = setup
    argv = ["benchmark", "superglue", str(base), "training.max_steps=3", "method=lora"]
    argv += ["--tasks", "cb,copa,rte", "--output", str(out), "--data", str(data)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "SUPERGLUE (dev)" in printed.out and "CB" in printed.out and "COPA" in printed.out
    assert "RTE: skipped, no data" in printed.err
    state = json.loads((out / "benchmark.json").read_text())
    cb, copa = state["tasks"]["cb"], state["tasks"]["copa"]
    assert cb["status"] == copa["status"] == "completed"
    assert state["tasks"]["rte"]["status"] == "skipped"
    assert set(cb["metrics"]) == {"accuracy", "f1_macro"} and set(copa["metrics"]) == {"accuracy"}
    assert cb["score"] == pytest.approx(
        50 * (cb["metrics"]["accuracy"] + cb["metrics"]["f1_macro"])
    )
    assert state["average"] == pytest.approx((cb["score"] + copa["score"]) / 2)
    # each task trained its own run, with the method of the command line
    for name in ("cb", "copa"):
        info = json.loads((out / "runs" / name / "run.json").read_text())
        assert info["status"] == "completed" and info["method"] == "lora"
        assert info["process"]["pid"] != __import__("os").getpid()
    assert json.loads((out / "runs" / "copa" / "run.json").read_text())["task"]["type"] == (
        "multiple_choice"
    )
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    assert [r["task"] for r in rows] == ["CB", "COPA", "Average"]
    assert float(rows[-1]["score"]) == pytest.approx(state["average"], abs=0.01)
    assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"

    # a second run keeps finished tasks; a task whose run is gone trains again
    import shutil

    shutil.rmtree(out / "runs" / "copa")
    state2 = run_benchmark(
        "superglue",
        base,
        ["training.max_steps=3", "method=lora"],
        tasks=["cb", "copa"],
        output=out,
        data_dir=data,
    )
    assert state2["tasks"]["cb"] == cb  # kept, not retrained
    assert state2["tasks"]["copa"]["status"] == "completed"
    assert (out / "runs" / "copa" / "run.json").is_file()

    html = build_report([out], out / "report.html").read_text()
    assert "Benchmark superglue" in html and "Average" in html and "<h2>Runs</h2>" in html


def test_benchmark_errors(setup):
    data, base, out = setup
    with pytest.raises(ConfigError, match="--tasks: nope not in glue"):
        run_benchmark("glue", base, tasks=["nope"], output=out, data_dir=data)
    with pytest.raises(ConfigError, match="unknown 'mystery'"):
        run_benchmark("mystery", base)
    with pytest.raises(ConfigError, match="training.lr"):
        run_benchmark(
            "superglue", base, ["training.lr=-1"], tasks=["cb"], output=out, data_dir=data
        )
