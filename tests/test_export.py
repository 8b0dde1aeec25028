"""`tunelab export RUN --format merged|adapter`: folders that plain transformers / PEFT load,
giving the same outputs as the run does in tunelab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunelab
from helpers import gen_rows, keyword_files, plain_probs, tiny_config, write_jsonl
from tunelab.cli import main

TEXTS = ["a superb film", "the plot was dull and weak"]
PROMPTS = ["the movie was good", "this film felt awful"]


@pytest.fixture(scope="module")
def runs(tiny_llama, tiny_bert, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-runs")
    gen = {"train": write_jsonl(root / "gen.jsonl", gen_rows(48, 0))}
    kw = keyword_files(root / "kw")
    g = {
        "task.type": "generation",
        "task.format": "prompt_completion",
        "task.max_new_tokens": 6,
        "training.max_steps": 10,
        "training.lr": 2e-2,
    }
    c = {"training.max_steps": 10, "training.lr": 3e-2}
    plan = {
        "gen-lora": (tiny_llama, gen, "lora", g),
        "gen-prefix": (tiny_llama, gen, "prefix", g),
        "cls-lora": (tiny_bert, kw, "lora", c),
        "cls-bitfit": (tiny_bert, kw, "bitfit", c),
        "cls-full": (tiny_bert, kw, "full", c),
        "cls-adapter": (tiny_bert, kw, "adapter", c),
    }
    out = {}
    for name, (model, data, method, over) in plan.items():
        cfg = tiny_config(model, data, root / "runs", method=method, **over)
        cfg["data"]["validation"] = None
        cfg["data"]["validation_fraction"] = 0.2
        cfg["output"]["name"] = name
        out[name] = tunelab.train(cfg).run_dir
    return out


def _export(run: Path, out: Path, fmt: str, *extra: str) -> int:
    return main(["export", str(run), "--format", fmt, "--output", str(out), *extra])


def _greedy(model, tokenizer, prompt: str) -> str:
    import torch

    enc = tokenizer(prompt + "\n", return_tensors="pt")  # the task's prompt without a template
    ids = {k: enc[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = model.eval().generate(
            **ids,
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_merged_and_adapter_generation_exports_generate_as_the_run(runs, tmp_path, tiny_llama):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = runs["gen-lora"]
    expected = tunelab.generate(run, PROMPTS)
    assert _export(run, tmp_path / "merged", "merged") == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert [_greedy(merged, tok, p) for p in PROMPTS] == expected
    assert not any(n for n, _ in merged.named_modules() if "lora" in n)  # a plain model

    assert _export(run, tmp_path / "adapter", "adapter") == 0
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= files
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_llama)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama), tmp_path / "adapter"
    )
    tok = AutoTokenizer.from_pretrained(tmp_path / "adapter")
    assert [_greedy(model, tok, p) for p in PROMPTS] == expected


@pytest.mark.parametrize("name", ["cls-lora", "cls-bitfit", "cls-full"])
def test_merged_classifier_gives_the_runs_probabilities(runs, tmp_path, name):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "merged"
    assert _export(runs[name], out, "merged") == 0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    probs = plain_probs(model, AutoTokenizer.from_pretrained(out), TEXTS)
    expected = tunelab.predict(runs[name], texts=TEXTS)
    for p, e in zip(probs, expected):
        assert p == pytest.approx(list(e["probabilities"].values()), abs=1e-5)
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_adapter_export_of_a_lora_classifier_loads_with_peft(runs, tmp_path, tiny_bert):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    out = tmp_path / "adapter"
    assert _export(runs["cls-lora"], out, "adapter") == 0
    model = AutoPeftModelForSequenceClassification.from_pretrained(out)
    probs = plain_probs(model, AutoTokenizer.from_pretrained(out), TEXTS)
    expected = tunelab.predict(runs["cls-lora"], texts=TEXTS)
    for p, e in zip(probs, expected):
        assert p == pytest.approx(list(e["probabilities"].values()), abs=1e-5)


@pytest.mark.parametrize(
    "name,fmt,why",
    [
        ("gen-prefix", "merged", "prefixes are extra attention positions"),
        ("cls-adapter", "merged", "an adapter is a non-linear bottleneck"),
        ("gen-prefix", "adapter", "saves no PEFT adapter"),
        ("cls-bitfit", "adapter", "export --format merged instead"),
        ("cls-full", "adapter", "saves no PEFT adapter"),
    ],
)
def test_what_cannot_be_exported_is_refused_with_the_reason(runs, tmp_path, capsys, name, fmt, why):
    out = tmp_path / "out"
    assert _export(runs[name], out, fmt) == 2
    assert why in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_no_overwrite_without_the_flag_and_no_leftovers(runs, tmp_path, capsys):
    out = tmp_path / "exported"
    assert _export(runs["cls-lora"], out, "adapter") == 0
    before = (out / "adapter_model.safetensors").read_bytes()
    assert _export(runs["cls-lora"], out, "merged") == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "adapter_model.safetensors").read_bytes() == before  # untouched
    assert _export(runs["cls-lora"], out, "merged", "--overwrite") == 0
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temp folders left
    model_dir = runs["cls-lora"] / "model"
    assert _export(runs["cls-lora"], model_dir, "adapter", "--overwrite") == 2
    assert "would replace the run's own files" in capsys.readouterr().err
    assert _export(runs["cls-lora"], tmp_path / "x", "gguf") == 2
    assert "--format must be one of merged, adapter" in capsys.readouterr().err
    from tunelab.api import export_run

    with pytest.raises(tunelab.TunelabError, match="not a tunelab run directory"):
        export_run(tmp_path / "nothing", tmp_path / "y")
