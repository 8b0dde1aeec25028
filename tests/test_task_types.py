"""Regression, multi-label, token classification and multiple choice on a tiny random BERT:
they learn, score with their own metrics, predict, and work with every encoder method."""

from __future__ import annotations

import json
import random

import pytest

import tunelab
from helpers import FILLER, NEGATIVE, POSITIVE, tiny_config, write_csv, write_jsonl
from tunelab.errors import ConfigError, DataError, ModelError
from tunelab.evaluation.metrics import classification_metrics, regression_metrics

METHODS = ["full", "freeze", "lora", "dora", "ia3", "adapter", "prefix", "prompt", "bitfit"]


def _sentence(rng, word):
    toks = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
    toks.insert(rng.randrange(len(toks) + 1), word)
    return toks


def regression_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos = rng.random() < 0.5
        word = rng.choice(POSITIVE if pos else NEGATIVE)
        rows.append({"text": " ".join(_sentence(rng, word)), "score": 4.5 if pos else 0.5})
    return rows


def multi_label_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [lab for lab in ("pos", "neg") if rng.random() < 0.5]
        toks = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        for lab in labels:
            word = rng.choice(POSITIVE if lab == "pos" else NEGATIVE)
            toks.insert(rng.randrange(len(toks) + 1), word)
        rows.append({"text": " ".join(toks), "label": labels})
    return rows


def ner_rows(n, seed):
    """Sentiment words are entities: POS (one word) and NEG (two words: `very bad`)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        toks = [rng.choice([w for w in FILLER if w != "very"]) for _ in range(rng.randint(3, 8))]
        tags = ["O"] * len(toks)
        i = rng.randrange(len(toks) + 1)
        if rng.random() < 0.5:
            toks[i:i] = [rng.choice(POSITIVE)]
            tags[i:i] = ["B-POS"]
        else:
            toks[i:i] = ["very", rng.choice(NEGATIVE)]
            tags[i:i] = ["B-NEG", "I-NEG"]
        rows.append({"tokens": toks, "tags": tags})
    return rows


def choice_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good, bad = rng.choice(POSITIVE), rng.choice(NEGATIVE)
        label = rng.randrange(2)
        choices = [bad, good] if label else [good, bad]
        ctx = " ".join(rng.choice(FILLER) for _ in range(4))
        rows.append({"premise": ctx, "choice1": choices[0], "choice2": choices[1], "label": label})
    return rows


KINDS = {
    "regression": (
        regression_rows,
        {"task.type": "regression", "data.label_column": "score", "task.label_scale": 5.0},
    ),
    "multi_label": (multi_label_rows, {"task.type": "multi_label"}),
    "token_classification": (ner_rows, {"task.type": "token_classification"}),
    "multiple_choice": (
        choice_rows,
        {
            "task.type": "multiple_choice",
            "task.text_template": "{premise} which is good?",
            "task.choice_columns": ["choice1", "choice2"],
        },
    ),
}


def kind_config(kind, folder, tmp_path, n_train=200, **over):
    make, settings = KINDS[kind]
    data = {
        "train": write_jsonl(tmp_path / f"{kind}-train.jsonl", make(n_train, 1)),
        "validation": write_jsonl(tmp_path / f"{kind}-val.jsonl", make(60, 2)),
    }
    return tiny_config(folder, data, tmp_path / "runs", **{**settings, **over})


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    out = {}
    for kind in KINDS:
        tmp = tmp_path_factory.mktemp(kind)
        steps = {"training.max_steps": 120, "training.eval_every": 60}
        out[kind] = tunelab.train(kind_config(kind, tiny_bert, tmp, **steps))
    return out


def test_regression_learns_scores_in_the_label_scale(trained):
    res = trained["regression"]
    assert res.metrics["pearson"] > 0.9 and res.metrics["spearman"] > 0.8
    assert res.before["pearson"] < res.metrics["pearson"]
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["task"]["type"] == "regression" and info["task"]["label_scale"] == 5.0
    out = tunelab.predict(res.run_dir, texts=["the plot was wonderful", "a boring dull plot"])
    assert out[0]["score"] > 3.0 > 2.0 > out[1]["score"]  # back in 0-5, not 0-1
    again = tunelab.evaluate(res.run_dir)
    assert again["pearson"] == pytest.approx(res.metrics["pearson"], abs=1e-6)


def test_multi_label_learns_sets(trained):
    res = trained["multi_label"]
    # (a harder function for the tiny model than one label: 0.79 after 120 steps, from 0.0)
    assert res.metrics["f1_micro"] > 0.75 and res.metrics["f1_macro"] > 0.75
    assert res.before["f1_micro"] < 0.5
    out = tunelab.predict(res.run_dir, texts=["the good film was boring", "it was the plot"])
    assert set(out[0]["labels"]) == {"neg", "pos"} and out[1]["labels"] == []


def test_token_classification_entities_with_character_spans(trained):
    res = trained["token_classification"]
    assert res.metrics["entity_f1"] > 0.9 and res.metrics["token_accuracy"] > 0.95
    assert res.before["entity_f1"] < 0.5
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["task"]["labels"] == ["O", "B-NEG", "I-NEG", "B-POS"]
    text = "the  movie was very dull and  great"
    (out,) = tunelab.predict(res.run_dir, texts=[text])
    assert [(e["type"], e["text"]) for e in out["entities"]] == [
        ("NEG", "very dull"),
        ("POS", "great"),
    ]
    for e in out["entities"]:
        assert text[e["start"] : e["end"]] == e["text"]


def test_multiple_choice_learns(trained):
    res = trained["multiple_choice"]
    assert res.metrics["accuracy"] > 0.9 and res.before["accuracy"] < 0.8
    rows = json.loads(json.dumps(choice_rows(3, 9)))
    for r in rows:
        r.pop("label")
    f = write_jsonl(res.run_dir.parent / "mc-predict.jsonl", rows)
    out = tunelab.predict(res.run_dir, file=str(f))
    assert len(out) == 3 and all(len(o["probabilities"]) == 2 for o in out)


HEAD_KINDS = ["regression", "multi_label", "token_classification"]
SERVED_TEXTS = [
    "the plot was wonderful",
    "a boring dull plot",
    "the  movie was very dull and  great",
    "the movie \u200b was very dull",  # a word the tokenizer drops: it has no sub-word
    "the plot was great " * 12 + "but very dull",  # longer than max_length (32 tokens)
]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_serve_answers_every_head_type_as_predict(trained, tiny_bert, tmp_path, method):
    pytest.importorskip("uvicorn")
    from helpers import ThreadServer
    from tunelab.workflows.serve import build_app, load_targets

    if method == "full":
        runs = {k: trained[k].run_dir for k in HEAD_KINDS}
    else:
        steps = {"training.max_steps": 40, "training.eval_every": 40, "training.eval_before": False}
        runs = {
            k: tunelab.train(
                kind_config(k, tiny_bert, tmp_path / k, method="lora", **steps)
            ).run_dir
            for k in HEAD_KINDS
        }
    srv = ThreadServer(build_app(load_targets([f"{k}={d}" for k, d in runs.items()])))
    try:
        models = {m["id"]: m for m in srv.get("/v1/models", key=None).json()["data"]}
        for kind, run in runs.items():
            assert models[kind]["task"] == kind and models[kind]["endpoint"] == "/v1/classify"
            res = srv.post("/v1/classify", {"model": kind, "input": SERVED_TEXTS}, key=None)
            assert res.status_code == 200, res.text
            data = res.json()["data"]
            expected = tunelab.predict(run, texts=SERVED_TEXTS)
            assert [d["index"] for d in data] == list(range(len(SERVED_TEXTS)))
            for got, want in zip(data, expected):
                if kind == "regression":
                    assert got["score"] == pytest.approx(want["score"], abs=1e-4)
                elif kind == "multi_label":
                    assert got["labels"] == want["labels"]
                    assert got["probabilities"] == pytest.approx(want["probabilities"], abs=2e-6)
                else:
                    assert got["tags"] == want["tags"] and got["entities"] == want["entities"]
        if method == "full":  # the trained runs have learnt: the answers mean something
            score = {d["index"]: d["score"] for d in data_of(srv, "regression")}
            assert score[0] > 3.0 and score[1] < 2.0
            tagged = data_of(srv, "token_classification")
            assert [(e["type"], e["text"]) for e in tagged[2]["entities"]] == [
                ("NEG", "very dull"),
                ("POS", "great"),
            ]
            # the dropped word is `O`, and the words after it keep their own tags
            assert tagged[3]["tags"] == ["O", "O", "O", "O", "B-NEG", "I-NEG"]
            assert tagged[3]["entities"] == [
                {"type": "NEG", "text": "very dull", "start": 16, "end": 25}
            ]
            words = SERVED_TEXTS[4].split()
            assert len(tagged[4]["tags"]) == len(words) and tagged[4]["tags"][-3:] == ["O"] * 3
        pair = srv.post(
            "/v1/classify", {"model": "token_classification", "input": [["a", "b"]]}, key=None
        )
        assert pair.status_code == 400 and pair.json()["error"]["param"] == "input"
    finally:
        srv.close()


def data_of(srv, model: str) -> list[dict]:
    return srv.post("/v1/classify", {"model": model, "input": SERVED_TEXTS}, key=None).json()[
        "data"
    ]


def test_serve_refuses_a_multiple_choice_run(trained):
    from tunelab.workflows.serve import load_targets

    with pytest.raises(ConfigError, match="multiple_choice run cannot be served") as e:
        load_targets([str(trained["multiple_choice"].run_dir)])
    assert "regression" in str(e.value) and "generation" in str(e.value)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("method", METHODS)
def test_every_encoder_method_trains_saves_and_reloads(tiny_bert, tmp_path, kind, method):
    cfg = kind_config(
        kind,
        tiny_bert,
        tmp_path,
        n_train=48,
        method=method,
        **{"training.max_steps": 6, "training.eval_every": 6, "training.eval_before": False},
    )
    res = tunelab.train(cfg)
    assert res.params["trainable"] < res.params["total"] or method == "full"
    again = tunelab.evaluate(res.run_dir)
    key = {"regression": "pearson", "multi_label": "f1_micro"}.get(kind)
    key = key or ("entity_f1" if kind == "token_classification" else "accuracy")
    assert again[key] == pytest.approx(res.metrics[key], abs=1e-5)


@pytest.mark.parametrize("kind", ["regression", "token_classification", "multi_label"])
def test_decoder_heads_with_lora(tiny_llama, tmp_path, kind):
    over = {"training.max_steps": 6, "training.eval_every": 6, "training.eval_before": False}
    res = tunelab.train(kind_config(kind, tiny_llama, tmp_path, n_train=48, method="lora", **over))
    key = {"regression": "pearson", "multi_label": "f1_micro"}.get(kind, "entity_f1")
    assert tunelab.evaluate(res.run_dir)[key] == pytest.approx(res.metrics[key], abs=1e-5)


def test_decoder_without_a_multiple_choice_head(tiny_llama, tmp_path):
    with pytest.raises(ModelError, match="cannot be loaded as AutoModelForMultipleChoice"):
        tunelab.train(kind_config("multiple_choice", tiny_llama, tmp_path, n_train=8))


def test_conll_file_and_tag_problems(tiny_bert, tmp_path):
    conll = tmp_path / "train.conll"
    lines = ["-DOCSTART- -X- -X- O", ""]
    for r in ner_rows(40, 3):
        lines += [f"{t} X X {g}" for t, g in zip(r["tokens"], r["tags"])] + [""]
    conll.write_text("\n".join(lines), encoding="utf-8")
    cfg = kind_config("token_classification", tiny_bert, tmp_path, **{"data.train": str(conll)})
    cfg["training"]["max_steps"] = 2
    res = tunelab.train(cfg)
    assert json.loads((res.run_dir / "run.json").read_text())["data"]["train"] == 40
    rows = [{"tokens": ["a", "b"], "tags": ["O", "B-X"]}, {"tokens": ["a", "b"], "tags": ["O"]}]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    cfg = kind_config("token_classification", tiny_bert, tmp_path, **{"data.train": str(bad)})
    cfg["output"]["name"] = "bad"
    cfg["data"]["validation"] = None  # held out from the two rows
    with pytest.raises(DataError, match="row 2: 2 words but 1 tags"):
        tunelab.train(cfg)


def test_multiple_choice_needs_its_answers(tiny_bert, tmp_path):
    cfg = kind_config("multiple_choice", tiny_bert, tmp_path, **{"task.choice_columns": None})
    with pytest.raises(ConfigError, match="task.choice_columns"):
        tunelab.train(cfg)


def test_cli_predict_prints_entities(trained, capsys):
    from tunelab.cli import main

    run = str(trained["token_classification"].run_dir)
    assert main(["predict", run, "--text", "a great film"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["entities"] == [{"type": "POS", "text": "great", "start": 2, "end": 7}]


def test_mixtures_hold_classification_or_generation_only():
    from tunelab.config import load_config

    spec = {"name": "a", "data": {"train": "x.csv"}, "task": {"type": "regression"}}
    with pytest.raises(ConfigError, match="mixture holds classification or generation"):
        load_config({"mixture": {"tasks": [spec]}})


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    # tp=2 fp=1 fn=0 tn=1: MCC = (2*1 - 1*0) / sqrt(3*2*1*2) = 2/sqrt(12)
    assert m["mcc"] == pytest.approx(2 / 12**0.5) and m["f1"] == pytest.approx(0.8)
    r = regression_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert r["pearson"] == pytest.approx(0.5) and r["spearman"] == pytest.approx(0.5)
    assert r["mse"] == pytest.approx(2 / 3)


def test_regression_rejects_non_numbers(tiny_bert, tmp_path):
    rows = regression_rows(20, 1)
    rows[3]["score"] = "high"
    f = write_csv(tmp_path / "r.csv", rows)
    cfg = kind_config("regression", tiny_bert, tmp_path, **{"data.train": str(f)})
    with pytest.raises(DataError, match="row 4: label 'high' is not a number"):
        tunelab.train(cfg)
