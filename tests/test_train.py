"""End-to-end training on tiny random models: learning, run directory, loading without tunelab."""

from __future__ import annotations

import json

import pytest

import tunelab
from helpers import keyword_files, keyword_rows, plain_probs, tiny_config, write_csv
from tunelab.cli import main
from tunelab.errors import ConfigError, RunDirError
from tunelab.utils.io import read_jsonl


@pytest.fixture(scope="module")
def full_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    data = keyword_files(tmp)
    return tunelab.train(tiny_config(tiny_bert, data, tmp / "runs")), data


@pytest.fixture(scope="module")
def lora_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    data = keyword_files(tmp)
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp / "runs",
        method="lora",
        **{"training.lr": 1e-2, "training.max_steps": 120},
    )
    return tunelab.train(cfg), data


def test_full_fine_tuning_learns(full_run):
    res, _ = full_run
    assert res.metrics["accuracy"] >= 0.9
    assert res.before["accuracy"] < res.metrics["accuracy"] - 0.2
    assert res.params["trainable"] == res.params["total"]


def test_run_directory_holds_everything(full_run):
    res, _ = full_run
    d = res.run_dir
    for name in (
        "config.yaml",
        "run.json",
        "metrics.jsonl",
        "eval/validation.json",
        "predictions/validation.jsonl",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer_config.json",
    ):
        assert (d / name).is_file(), name
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "completed" and info["task"]["labels"] == ["negative", "positive"]
    # keep_last=2 complete checkpoints (evals at 40 and 80), plus the best weights kept apart
    ckpts = sorted(p.name for p in (d / "checkpoints").iterdir())
    best = f"best-{info['summary']['best_step']:07d}"
    assert ckpts == sorted([best, "step-0000040", "step-0000080"])
    rows = read_jsonl(d / "metrics.jsonl")
    train = [r for r in rows if r["type"] == "train"]
    evals = [r for r in rows if r["type"] == "eval"]
    assert [r["step"] for r in train] == list(range(10, 81, 10))
    assert train[-1]["loss"] < train[0]["loss"]
    assert [(r["split"], r["step"]) for r in evals] == [
        ("validation_before", 0),
        ("validation", 40),
        ("validation", 80),
    ]
    ev = json.loads((d / "eval/validation.json").read_text())
    assert set(ev["per_class"]) == {"negative", "positive"}
    cm = ev["confusion_matrix"]["matrix"]
    assert sum(map(sum, cm)) == ev["n"] == 48
    assert ev["accuracy"] == pytest.approx((cm[0][0] + cm[1][1]) / 48)
    preds = read_jsonl(d / "predictions/validation.jsonl")
    assert len(preds) == 48 and all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in preds)
    assert sum(p["correct"] for p in preds) / 48 == pytest.approx(ev["accuracy"])


def test_full_model_loads_with_plain_transformers(full_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    res, _ = full_run
    texts = ["the movie was wonderful", "a boring plot"]
    ours = tunelab.predict(res.run_dir, texts=texts)
    model = AutoModelForSequenceClassification.from_pretrained(res.run_dir / "model").eval()
    tok = AutoTokenizer.from_pretrained(res.run_dir / "model")
    probs = plain_probs(model, tok, texts)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    for row, p in zip(ours, probs):
        assert [
            row["probabilities"]["negative"],
            row["probabilities"]["positive"],
        ] == pytest.approx(p, abs=1e-5)
    assert [r["label"] for r in ours] == ["positive", "negative"]


def test_lora_trains_few_parameters_and_loads_with_plain_peft(lora_run):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    res, _ = lora_run
    # a random 32-wide base gives LoRA little to adapt; the real-model figures are in benchmarks/
    assert (
        res.metrics["accuracy"] >= 0.75 and res.metrics["accuracy"] > res.before["accuracy"] + 0.15
    )
    assert res.params["trainable"] < 0.5 * res.params["total"]
    files = {p.name for p in (res.run_dir / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert "model.safetensors" not in files
    texts = ["great acting", "the plot was dull"]
    ours = tunelab.predict(res.run_dir, texts=texts)
    model = AutoPeftModelForSequenceClassification.from_pretrained(res.run_dir / "model").eval()
    tok = AutoTokenizer.from_pretrained(res.run_dir / "model")
    probs = plain_probs(model, tok, texts)
    for row, p in zip(ours, probs):
        assert [
            row["probabilities"]["negative"],
            row["probabilities"]["positive"],
        ] == pytest.approx(p, abs=1e-5)


def test_existing_run_directory_is_never_overwritten(full_run, tiny_bert):
    res, data = full_run
    before = (res.run_dir / "metrics.jsonl").read_bytes()
    cfg = tiny_config(tiny_bert, data, res.run_dir.parent)
    with pytest.raises(RunDirError, match="already exists"):
        tunelab.train(cfg)
    assert (res.run_dir / "metrics.jsonl").read_bytes() == before


def test_overwrite_when_asked_and_seeded_runs_repeat(tiny_bert, keyword_data, tmp_path):
    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        **{"training.max_steps": 10, "training.eval_every": 10},
    )
    a = [
        r["loss"]
        for r in read_jsonl(tunelab.train(cfg).run_dir / "metrics.jsonl")
        if r["type"] == "train"
    ]
    cfg["output"]["overwrite"] = True
    b = [
        r["loss"]
        for r in read_jsonl(tunelab.train(cfg).run_dir / "metrics.jsonl")
        if r["type"] == "train"
    ]
    cfg["training"]["seed"] = 1
    c = [
        r["loss"]
        for r in read_jsonl(tunelab.train(cfg).run_dir / "metrics.jsonl")
        if r["type"] == "train"
    ]
    assert a == b and a != c


def test_three_named_labels_text_pairs_and_heldout_validation(tiny_bert, tmp_path):
    rows = keyword_rows(150, 3, labels=("negative", "neutral", "positive"))
    for r in rows:
        r["context"] = "the film"
    train = write_csv(tmp_path / "pairs.jsonl.csv", rows)
    cfg = tiny_config(
        tiny_bert,
        {"train": train},
        tmp_path / "runs",
        **{
            "data.text_pair_column": "context",
            "data.validation_fraction": 0.2,
            "training.max_steps": 60,
            "training.eval_every": 30,
        },
    )
    res = tunelab.train(cfg)
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["task"]["labels"] == ["negative", "neutral", "positive"]
    assert info["data"] == {"train": 120, "validation": 30}
    assert res.metrics["n"] == 30 and len(res.metrics["per_class"]) == 3
    assert res.metrics["accuracy"] > 0.6
    out = tunelab.predict(res.run_dir, texts=["a wonderful story"], text_pairs=["the film"])
    assert set(out[0]["probabilities"]) == {"negative", "neutral", "positive"}


def test_decoder_classifier_with_lora(tiny_llama, keyword_data, tmp_path):
    cfg = tiny_config(
        tiny_llama,
        keyword_data,
        tmp_path / "runs",
        method="lora",
        **{"training.lr": 1e-2, "training.max_steps": 60, "training.eval_every": 30},
    )
    res = tunelab.train(cfg)
    assert res.metrics["accuracy"] >= 0.8
    assert res.params["trainable_pct"] < 50


def test_cli_eval_and_predict(full_run, capsys, tmp_path):
    res, data = full_run
    assert main(["eval", str(res.run_dir), "--file", str(data["validation"]), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert (res.run_dir / "eval" / "file-validation.json").is_file()
    assert main(["predict", str(res.run_dir), "--text", "a superb film", "--text", "awful"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["positive", "negative"]
    out = tmp_path / "p.jsonl"
    assert (
        main(["predict", str(res.run_dir), "--file", str(data["validation"]), "--output", str(out)])
        == 0
    )
    assert len(read_jsonl(out)) == 48
    assert main(["predict", str(res.run_dir), "--text", "x", "--output", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tunelab: error: config file not found") and "\n" not in err
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a tunelab run directory" in capsys.readouterr().err


def test_no_training_data_and_unknown_model(tmp_path):
    with pytest.raises(ConfigError, match="data.train"):
        tunelab.train({"output": {"dir": str(tmp_path)}})
    from tunelab.errors import ModelError

    rows = write_csv(tmp_path / "t.csv", keyword_rows(20, 0))
    with pytest.raises(ModelError, match="unknown model 'no such model'"):
        tunelab.train(
            {
                "model": {"name": "no such model"},
                "data": {"train": str(rows)},
                "output": {"dir": str(tmp_path / "r")},
            }
        )


def test_schedule_shapes():
    from tunelab.training.loop import lr_lambda

    lin, cos, const = (lr_lambda(100, 10, k) for k in ("linear", "cosine", "constant"))
    assert lin(0) == pytest.approx(0.1) and lin(9) == pytest.approx(1.0)
    assert lin(55) == pytest.approx(0.5) and lin(100) == 0.0
    assert (
        cos(55) == pytest.approx(0.5)
        and cos(10) == pytest.approx(1.0)
        and cos(100) == pytest.approx(0.0)
    )
    assert const(80) == 1.0


def test_grad_accumulation_and_early_stopping(tiny_bert, keyword_data, tmp_path):
    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        **{
            "training.batch_size": 8,
            "training.grad_accum": 2,
            "training.max_steps": 30,
            "training.eval_every": 5,
            "training.lr": 1e-9,
            "training.early_stopping_patience": 2,
        },
    )
    res = tunelab.train(cfg)
    rows = read_jsonl(res.run_dir / "metrics.jsonl")
    evals = [r for r in rows if r["type"] == "eval" and r["split"] == "validation"]
    # lr≈0: nothing improves after the first evaluation, so two more evaluations end the run
    assert res.summary["stop_reason"] == "early_stopping"
    assert [r["step"] for r in evals] == [5, 10, 15]
    assert res.summary["examples"] == 15 * 16  # 2 micro-batches of 8 per optimizer step


def test_resume_needs_the_run_name(tiny_bert, keyword_data, tmp_path):
    cfg = tiny_config(tiny_bert, keyword_data, tmp_path / "runs", resume=True)
    cfg["output"].pop("name")
    with pytest.raises(ConfigError, match="resume=true needs output.name"):
        tunelab.train(cfg)
