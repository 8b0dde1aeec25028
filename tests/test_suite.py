"""Evaluation suites: benchmarks over files, robustness with worst case, rolling perplexity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import SHARED_DATA, gen_rows, keyword_rows, tiny_config, write_csv, write_jsonl
from tunelab.errors import ConfigError

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_every_shipped_suite_loads(path):
    from tunelab.workflows.suite import load_suite

    suite, _ = load_suite(path)
    assert suite.tasks and path.read_text().startswith("# tunelab eval")


def test_classification_suite_with_robustness(tiny_bert, keyword_data, tmp_path, capsys):
    import tunelab
    from tunelab.cli import main

    res = tunelab.train(tiny_config(tiny_bert, keyword_data, tmp_path / "runs"))
    ood = write_csv(
        tmp_path / "s" / "ood.csv",
        [{"review": r["text"], "stars": r["label"]} for r in keyword_rows(40, 9)],
    )
    suite = {
        "name": "mini",
        "tasks": [
            {"name": "dev", "data": str(keyword_data["validation"])},
            {
                "name": "ood",
                "data": str(ood),
                "columns": {"text": "review", "label": "stars"},
                "max_examples": 30,
            },
        ],
        "robustness": {"perturbations": ["typos", "casing"], "strength": 0.5, "seed": 1},
    }
    path = tmp_path / "s" / "mini.yaml"
    path.write_text(yaml.safe_dump(suite))
    capsys.readouterr()
    assert main(["eval", str(res.run_dir), "--suite", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "worst case" in shown and "typos" in shown
    out = json.loads((res.run_dir / "eval" / "suite-mini.json").read_text())
    dev = out["tasks"]["dev"]
    direct = tunelab.evaluate(res.run_dir, file=str(keyword_data["validation"]))
    assert dev["clean"]["accuracy"] == pytest.approx(direct["accuracy"])
    assert out["tasks"]["ood"]["n"] == 30
    rob = dev["robustness"]
    assert set(rob["perturbations"]) == {"typos", "casing"} and rob["columns"] == ["text"]
    # worst case: an example counts only if right clean and under every perturbation
    rows = {
        k: {
            r["row"]: r["correct"]
            for r in map(
                json.loads, (res.run_dir / "predictions" / f"suite-mini-dev{k}.jsonl").open()
            )
        }
        for k in ("", "-typos", "-casing")
    }
    want = sum(all(rows[k][r] for k in rows) for r in rows[""]) / len(rows[""])
    assert rob["worst_case"] == pytest.approx(want)
    assert rob["worst_case"] <= min(dev["clean"]["accuracy"], *rob["perturbations"].values())
    # the noisy inputs really differ (typos at strength 0.5), the labels do not
    noisy = [
        json.loads(x) for x in (res.run_dir / "predictions" / "suite-mini-dev-typos.jsonl").open()
    ]
    clean = [json.loads(x) for x in (res.run_dir / "predictions" / "suite-mini-dev.jsonl").open()]
    assert sum(a["text"] != b["text"] for a, b in zip(noisy, clean)) > len(clean) // 2
    assert [a["label"] for a in noisy] == [b["label"] for b in clean]


def test_language_model_suite_choice_and_rolling_perplexity(tiny_llama, tmp_path):
    from tunelab.workflows.suite import run_suite

    qa = write_jsonl(
        tmp_path / "s" / "yn.jsonl",
        [
            {"prompt": r["prompt"], "completion": "yes" if "good" in r["completion"] else "no"}
            for r in gen_rows(12, 3)
        ],
    )
    text = write_jsonl(
        tmp_path / "s" / "text.jsonl", [{"text": "the movie was good fun " * 30}] * 3
    )
    suite = {
        "name": "lm",
        "tasks": [
            {
                "name": "yn",
                "data": str(qa),
                "task": {
                    "format": "prompt_completion",
                    "metrics": ["choice"],
                    "choices": ["no", "yes"],
                },
            },
            {"name": "text", "data": str(text), "task": {"format": "text", "context_tokens": 8}},
        ],
        "robustness": {"perturbations": ["casing"]},
        "max_length": 32,
    }
    path = tmp_path / "s" / "lm.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = run_suite(str(tiny_llama), path, output=tmp_path / "out")
    yn = out["tasks"]["yn"]
    assert yn["metric"] == "acc" and 0 <= yn["clean"]["acc"] <= 100 and yn["n"] == 12
    assert "casing" in yn["robustness"]["perturbations"]
    assert "robustness" not in out["tasks"]["text"]  # raw text is not perturbed
    assert out["tasks"]["text"]["metric"] == "perplexity"
    assert (tmp_path / "out" / "suite-lm.json").is_file()
    with pytest.raises(ConfigError, match="needs a finished classification run"):
        bad = dict(
            suite, tasks=[{"name": "c", "data": str(qa), "task": {"type": "classification"}}]
        )
        path.write_text(yaml.safe_dump(bad))
        run_suite(str(tiny_llama), path, output=tmp_path / "out")
    with pytest.raises(ConfigError, match="robustness.perturbations \\['nope'\\]"):
        path.write_text(yaml.safe_dump(dict(suite, robustness={"perturbations": ["nope"]})))
        run_suite(str(tiny_llama), path)


@pytest.mark.parametrize("context", [0, 1, 5])
def test_rolling_windows_score_every_token_once(tiny_llama, tmp_path, context):
    from tunelab.config import load_config
    from tunelab.data.sources import read_table
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model
    from tunelab.tasks.generation import IGNORE, GenerationTask

    cfg = load_config(
        {
            "model": {"name": str(tiny_llama), "max_length": 16},
            "task": {"type": "generation", "format": "text", "context_tokens": context},
        }
    )
    tok = load_tokenizer(resolve_model(str(tiny_llama)))
    task = GenerationTask.from_config(cfg, None, tok)
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "the movie was good fun and " * 9}])
    split = task.table_to_split(read_table(str(path)), "t")
    stream = tok("the movie was good fun and " * 9, add_special_tokens=False)["input_ids"]
    stream.append(tok.eos_token_id)
    scored = sum(sum(x != IGNORE for x in f["labels"][1:]) for f in split.features)
    if context == 0:  # plain blocks: each block's first token goes unpredicted
        assert scored == len(stream) - len(split.features)
    else:
        assert scored == len(stream) - 1
        assert all(len(f["input_ids"]) <= 16 for f in split.features)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_shipped_suite_paths_exist():
    from tunelab.workflows.suite import load_suite

    for path in SUITES:
        suite, base = load_suite(path)
        for t in suite.tasks:
            assert (base / t.data).resolve().exists(), f"{path.name}: {t.data}"


def test_bootstrap_gap_is_exact_on_constant_groups():
    from tunelab.evaluation.fairness import bootstrap_gap

    groups = {
        "female": [(f"t{i}", 0.8) for i in range(5)],
        "male": [(f"t{i}", 0.6) for i in range(5)],
    }
    g = bootstrap_gap(groups, "female", "male", seed=3, resamples=200)
    assert g["gap"] == pytest.approx(0.2) and g["ci_low"] == pytest.approx(0.2)
    assert g["ci_high"] == pytest.approx(0.2) and g["clusters"] == 5
    groups["female"][0] = ("t0", 0.0)  # one template differs: the interval widens around it
    g = bootstrap_gap(groups, "female", "male", seed=3, resamples=200)
    assert g["gap"] == pytest.approx(0.04)
    assert g["ci_low"] < g["gap"] < g["ci_high"]


def test_fairness_suite_on_a_classifier(tiny_bert, keyword_data, tmp_path):
    import csv

    import tunelab
    from tunelab.workflows.suite import run_suite

    res = tunelab.train(tiny_config(tiny_bert, keyword_data, tmp_path / "runs"))
    texts = [
        {"text": "he was good and his film was fun"},
        {"text": "the plot was dull"},
        {"text": "she felt the music was bad"},
        {"text": "John said it was great"},
    ]
    cf = write_csv(tmp_path / "f" / "cf.csv", texts)
    eec = tmp_path / "f" / "eec.csv"
    with open(eec, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["ID", "Sentence", "Template", "Person", "Gender", "Race", "Emotion", "Emotion word"]
        )
        i = 0
        for tpl in ("<p> was good", "<p> felt bad", "<p> saw a dull film"):
            for person, gender, race in (
                ("he", "male", ""),
                ("she", "female", ""),
                ("Adam", "male", "European"),
                ("Jamel", "male", "African-American"),
                ("Amanda", "female", "European"),
                ("Ebony", "female", "African-American"),
            ):
                i += 1
                w.writerow([i, tpl.replace("<p>", person), tpl, person, gender, race, "x", "w"])
    suite = {
        "name": "fair",
        "tasks": [
            {"name": "cf", "kind": "counterfactual", "data": str(cf), "attributes": ["gender"]},
            {"name": "eec", "kind": "eec", "data": str(eec), "score_label": "positive"},
        ],
    }
    path = tmp_path / "f" / "fair.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = run_suite(str(res.run_dir), path)["tasks"]
    g = out["cf"]["attributes"]["gender"]
    assert g["n"] == 2  # "he ... his" and "she": the others mention no gendered term
    p = tunelab.predict(
        res.run_dir, texts=["he was good and his film was fun", "she was good and her film was fun"]
    )
    change_0 = p[1]["probabilities"]["positive"] - p[0]["probabilities"]["positive"]
    assert g["examples"][0]["swapped"] == "she was good and her film was fun"
    assert 0.0 <= g["flip_rate"] <= 1.0
    q = tunelab.predict(
        res.run_dir, texts=["she felt the music was bad", "he felt the music was bad"]
    )
    change_1 = q[1]["probabilities"]["positive"] - q[0]["probabilities"]["positive"]
    assert g["mean_score_change"] == pytest.approx((change_0 + change_1) / 2, abs=1e-4)
    e = out["eec"]
    with open(eec, newline="") as fh:
        rows = list(csv.DictReader(fh))
    preds = tunelab.predict(res.run_dir, texts=[row["Sentence"] for row in rows])
    probs = {r["text"]: r["probabilities"]["positive"] for r in preds}
    fem = [probs[r["Sentence"]] for r in rows if r["Gender"] == "female"]
    mal = [probs[r["Sentence"]] for r in rows if r["Gender"] == "male"]
    gap = e["gender_gap_female_minus_male"]
    assert gap["gap"] == pytest.approx(sum(fem) / len(fem) - sum(mal) / len(mal), abs=1e-5)
    assert gap["ci_low"] <= gap["gap"] <= gap["ci_high"]
    assert e["race_gap_african_american_minus_european"]["clusters"] == 3


def test_crows_pairs_on_a_language_model(tiny_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model
    from tunelab.workflows.suite import run_suite

    pairs = [
        {"sent_more": "the movie was good", "sent_less": "the film was good", "bias_type": "a"},
        {"sent_more": "it was dull", "sent_less": "it was a dull plot", "bias_type": "b"},
        {"sent_more": "the cast was fun", "sent_less": "the music was fun", "bias_type": "a"},
    ]
    data = write_csv(tmp_path / "c" / "crows.csv", pairs)
    path = tmp_path / "c" / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "cp", "tasks": [{"name": "cp", "kind": "crows_pairs", "data": str(data)}]}
        )
    )
    out = run_suite(str(tiny_llama), path, output=tmp_path / "o")["tasks"]["cp"]
    tok = load_tokenizer(resolve_model(str(tiny_llama)))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def ll(text):
        ids = [start, *tok(text, add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits.log_softmax(-1)[0]
        return sum(float(logp[i - 1, t]) for i, t in enumerate(ids) if i > 0)

    want = [ll(p["sent_more"]) > ll(p["sent_less"]) for p in pairs]
    assert out["pct_stereotype"] == pytest.approx(100 * sum(want) / 3)
    assert out["by_bias_type"]["a"]["n"] == 2


def test_training_augmentation_noise_and_counterfactual_copies(tiny_bert, tmp_path):
    import tunelab
    from tunelab.config import load_config
    from tunelab.data.augment import augment_table
    from tunelab.data.sources import read_table
    from tunelab.tasks.classification import ClassificationTask

    rows = keyword_rows(40, 5)
    for r in rows[:6]:
        r["text"] = "he said " + r["text"]
    path = write_csv(tmp_path / "a" / "train.csv", rows)
    table = read_table(str(path))
    task = ClassificationTask(["negative", "positive"])
    aug = load_config(
        {
            "augment": {
                "noise_share": 0.5,
                "perturbations": ["typos"],
                "strength": 0.5,
                "counterfactual": ["gender"],
            }
        }
    ).augment
    out, stats = augment_table(table, task, aug, seed=0)
    assert stats == {"noisy_rows": 20, "counterfactual_rows": 6}
    assert len(out) == 46
    changed = sum(a["text"] != b["text"] for a, b in zip(out.rows[:40], table.rows))
    assert 15 <= changed <= 20  # a perturbed short text can come out unchanged
    assert [r["label"] for r in out.rows[:40]] == [r["label"] for r in table.rows]
    copies = out.rows[40:]
    assert all(" she " in f" {c['text'].lower()} " for c in copies)
    assert [c["label"] for c in copies] == [out.rows[i]["label"] for i in range(6)]
    again, _ = augment_table(table, task, aug, seed=0)
    assert again.rows == out.rows  # seeded
    data = {"train": path, "validation": write_csv(tmp_path / "a" / "v.csv", keyword_rows(20, 6))}
    res = tunelab.train(
        tiny_config(
            tiny_bert,
            data,
            tmp_path / "runs",
            **{"augment.counterfactual": ["gender"], "training.max_steps": 5},
        )
    )
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["augmented"]["counterfactual_rows"] == 6 and info["data"]["train"] == 46
