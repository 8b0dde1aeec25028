"""``classifier:RUN_DIR`` suite metrics: a finished classification run scores generated text."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from helpers import gen_rows, keyword_files, tiny_config, write_jsonl
from tunelab.errors import ConfigError


def test_label_shares_by_hand():
    from tunelab.evaluation.generation_metrics import label_shares

    probs = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], None, [0.2, 0.3, 0.5]]
    out = label_shares(probs, ["hate", "offensive", "neither"], ["hate", "offensive"])
    assert out["share_hate"] == 0.25 and out["share_offensive"] == 0.25
    assert out["share_neither"] == 0.25 and out["share_empty"] == 0.25
    assert out["share_hate+offensive"] == 0.5
    assert out["mean_p_hate+offensive"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    one = label_shares(probs, ["hate", "offensive", "neither"], ["neither"])
    assert one["mean_p_neither"] == pytest.approx(0.9 / 3) and "share_neither+" not in str(one)


def test_hh_transcripts_become_messages():
    from tunelab.data.dialogue import hh_messages

    text = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    assert hh_messages(text) == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
    ]
    assert hh_messages("no markers here") is None
    assert hh_messages("\n\nHuman:\n\nAssistant: x") is None  # an empty turn


def test_spec_parsing(tmp_path):
    from tunelab.workflows.classifier_metric import parse_classifier_metric

    (tmp_path / "runs" / "tox").mkdir(parents=True)
    m = parse_classifier_metric("classifier:runs/tox", tmp_path)
    assert m.run_dir == (tmp_path / "runs" / "tox").resolve() and m.chosen == []
    m = parse_classifier_metric("classifier:runs/tox:hate+offensive", tmp_path)
    assert m.run_dir.name == "tox" and m.chosen == ["hate", "offensive"]
    with pytest.raises(ConfigError, match="give the run directory"):
        parse_classifier_metric("classifier:", tmp_path)


@pytest.fixture(scope="module")
def classifier_run(tiny_bert, tmp_path_factory):
    """One tiny sentiment classifier run, shared by the tests of this module."""
    import tunelab

    tmp = tmp_path_factory.mktemp("clf")
    data = keyword_files(tmp / "data")
    return tunelab.train(tiny_config(tiny_bert, data, tmp / "runs")).run_dir


def _suite(tmp_path, data, metrics, **task) -> object:
    suite = {
        "name": "harm",
        "tasks": [
            {
                "name": "gen",
                "data": str(data),
                "task": {
                    "format": "prompt_completion",
                    "metrics": metrics,
                    "max_new_tokens": 6,
                    **task,
                },
            }
        ],
        "max_length": 32,
    }
    path = tmp_path / "s" / "harm.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite))
    return path


def test_classifier_scores_generations(tiny_llama, classifier_run, tmp_path):
    import tunelab
    from tunelab.workflows import classifier_metric
    from tunelab.workflows.suite import run_suite

    data = write_jsonl(tmp_path / "s" / "p.jsonl", gen_rows(10, 4))
    shutil.copytree(classifier_run, tmp_path / "runs" / "tox")
    rel = "../runs/tox"  # relative to the suite file
    path = _suite(tmp_path, data, [f"classifier:{rel}:positive"])
    out = run_suite(str(tiny_llama), path, output=tmp_path / "out", precision="fp32")
    e = out["tasks"]["gen"]
    name = "tox"
    assert e["metric"] == f"{name}/share_positive" and e["n"] == 10
    rows = [json.loads(x) for x in (tmp_path / "out" / "suite-harm-gen.jsonl").open()]
    assert len(rows) == 10 and all("prediction" in r for r in rows)
    texts = [r["prediction"] for r in rows if r["prediction"].strip()]
    # the same texts through `tunelab predict` give the same shares and mean probability
    assert texts
    direct = tunelab.predict(classifier_run, texts=texts)
    pos = sum(d["label"] == "positive" for d in direct)
    c = e["clean"]
    assert c[f"{name}/share_positive"] == pytest.approx(pos / 10)
    assert c[f"{name}/share_empty"] == pytest.approx((10 - len(texts)) / 10)
    assert c[f"{name}/share_negative"] + c[f"{name}/share_positive"] + c[
        f"{name}/share_empty"
    ] == pytest.approx(1.0)
    mean_p = sum(d["probabilities"]["positive"] for d in direct) / len(direct)
    assert c[f"{name}/mean_p_positive"] == pytest.approx(mean_p, abs=1e-5)
    scored = [r for r in rows if r["classifiers"][name] is not None]
    assert [r["classifiers"][name]["label"] for r in scored] == [d["label"] for d in direct]
    # the classifier is loaded once and kept
    loaded = classifier_metric.load_classifier(classifier_run, "fp32")
    assert classifier_metric.load_classifier(classifier_run, "fp32") is loaded
    classifier_metric.clear_cache()


def test_classifier_metric_beside_a_generation_metric(tiny_llama, classifier_run, tmp_path):
    from tunelab.workflows.suite import run_suite

    data = write_jsonl(tmp_path / "s" / "p.jsonl", gen_rows(6, 5))
    path = _suite(tmp_path, data, ["exact_match", f"classifier:{classifier_run}"])
    e = run_suite(str(tiny_llama), path, output=tmp_path / "out")["tasks"]["gen"]
    name = classifier_run.name
    assert e["metric"] == "exact_match"  # no chosen label: the task's own headline stays
    shares = [e["clean"][f"{name}/share_{k}"] for k in ("negative", "positive", "empty")]
    assert sum(shares) == pytest.approx(1.0) and "exact_match" in e["clean"]


def test_hh_dialogue_suite_generates_for_chat_prompts(tiny_llama, classifier_run, tmp_path):
    from transformers import AutoTokenizer

    from tunelab.workflows.suite import run_suite

    model = tmp_path / "chat-llama"
    shutil.copytree(tiny_llama, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}"
    )
    tok.save_pretrained(model)
    rows = [
        {"prompt": "\n\nHuman: the movie was good\n\nAssistant:", "chosen": " it was fun"},
        {"prompt": "\n\nHuman: a\n\nAssistant: b\n\nHuman: the plot\n\nAssistant:", "chosen": "x"},
        {"prompt": "not a transcript", "chosen": "y"},
    ]
    data = write_jsonl(tmp_path / "s" / "hh.jsonl", rows)
    path = _suite(tmp_path, data, [f"classifier:{classifier_run}:negative"], format="chat")
    raw = yaml.safe_load(path.read_text())
    raw["tasks"][0]["prepare"] = "hh_dialogue"
    path.write_text(yaml.safe_dump(raw))
    e = run_suite(str(model), path, output=tmp_path / "out")["tasks"]["gen"]
    assert e["n"] == 2 and e["skipped_rows"] == 1
    got = [json.loads(x) for x in (tmp_path / "out" / "suite-harm-gen.jsonl").open()]
    assert got[1]["prompt"][-1] == {"role": "user", "content": "the plot"}
    assert got[0]["reference"] == "it was fun"


def test_clear_errors(tiny_llama, classifier_run, tmp_path):
    from tunelab.workflows.suite import run_suite

    data = write_jsonl(tmp_path / "s" / "p.jsonl", gen_rows(4, 6))
    path = _suite(tmp_path, data, ["classifier:../nowhere"])
    with pytest.raises(ConfigError, match="run directory not found"):
        run_suite(str(tiny_llama), path, output=tmp_path / "out")
    (tmp_path / "plain").mkdir()
    path = _suite(tmp_path, data, [f"classifier:{tmp_path / 'plain'}"])
    with pytest.raises(ConfigError, match="not a tunelab run directory"):
        run_suite(str(tiny_llama), path, output=tmp_path / "out")
    fake = tmp_path / "genrun"
    fake.mkdir()
    (fake / "run.json").write_text(json.dumps({"status": "completed", "task": {"type": "x"}}))
    path = _suite(tmp_path, data, [f"classifier:{fake}"])
    with pytest.raises(ConfigError, match="is a x run; the classifier: metric needs"):
        run_suite(str(tiny_llama), path, output=tmp_path / "out")
    path = _suite(tmp_path, data, [f"classifier:{classifier_run}:toxic"])
    with pytest.raises(ConfigError, match="label 'toxic' is not one of .*negative, positive"):
        run_suite(str(tiny_llama), path, output=tmp_path / "out")
    # a classifier target has no generations to score
    with pytest.raises(ConfigError, match="classifier: metrics score generated text"):
        run_suite(str(classifier_run), path, output=tmp_path / "out")
