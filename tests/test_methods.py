"""Method × model-family matrix on tiny random models: trainable set, gradient flow, save/load."""

from __future__ import annotations

import re

import pytest
import torch

from tunelab.config import load_config
from tunelab.errors import ConfigError
from tunelab.methods import get_method, method_names
from tunelab.models.layers import parameter_report
from tunelab.models.loading import load_tokenizer
from tunelab.models.registry import resolve_model
from tunelab.tasks.classification import ClassificationTask

METHODS = ["full", "freeze", "lora", "dora", "ia3", "adapter", "prefix", "prompt", "bitfit"]
FAMILIES = ["tiny_bert", "tiny_llama", "tiny_bart", "tiny_t5"]
NO_BIAS = ("tiny_llama", "tiny_t5")


def build(folder, method, **over):
    r = resolve_model(str(folder))
    task = ClassificationTask(["a", "b", "c"], tokenizer=load_tokenizer(r))
    cfg = load_config({"method": method, "freeze": {"train_top_layers": 1}, **over})
    torch.manual_seed(0)
    model = task.build_model(r)
    m = get_method(method)
    return task, m, m.apply(model, cfg, task.head_modules(model), task.tokenizer), r


def in_head(name, task, model):
    return any(f".{h}." in f".{name}" for h in task.head_modules(model))


def promised(method, name, task, model) -> bool:
    """Whether ``method`` promises to train parameter ``name``."""
    if method == "full":
        return True
    if in_head(name, task, model):
        if method == "ia3" and ".pooler." in name:
            return False  # see methods/ia3.py
        return "original_module" not in name  # PEFT keeps a frozen copy of the head
    if method == "freeze":  # the top one of two layers, and what sits above the layers
        layer = re.search(r"\.(layers?|block)\.(\d)\.", name)  # T5: block.N.layer.M
        if layer:
            return layer.group(2) == "1"
        return not any(s in name for s in ("embed", "shared"))
    if method in ("lora", "dora"):
        return "lora_" in name
    if method == "ia3":
        return "ia3_l" in name
    if method == "bitfit":
        return name.endswith(".bias")
    if method == "adapter":
        return ".adapter_" in name
    if method in ("prefix", "prompt"):
        return name == method
    raise AssertionError(method)


def batch(task):
    return {
        **task.collate(task.encode(["the movie was good", "a dull boring plot indeed"])),
        "labels": torch.tensor([0, 2]),
    }


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param, request.getfixturevalue(request.param)


@pytest.mark.parametrize("method", METHODS)
def test_trainable_set_gradients_and_round_trip(family, method, tmp_path):
    fam, folder = family
    if fam in NO_BIAS and method == "bitfit":
        with pytest.raises(
            ConfigError, match="no bias terms.*use one of: full, freeze, lora, dora, ia3, adapter"
        ):
            build(folder, method)
        return
    task, m, model, r = build(folder, method)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if promised(method, n, task, model)}
    assert names == expected
    rep = parameter_report(model)
    assert 0 < rep["trainable"] <= rep["total"]
    # gradients reach exactly the trainable parameters
    model.train()
    task.loss(model, batch(task)).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == names
    # saved weights reload into a fresh base and give the same outputs
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    model.eval()
    b = batch(task)
    ref = task._logits(model, b)
    m.save(model, tmp_path / "saved")
    fresh = task.build_model(r)
    again = m.load(fresh, tmp_path / "saved").eval()
    assert torch.allclose(task._logits(again, b), ref, atol=1e-5)


def test_registry_lists_every_method():
    assert method_names() == METHODS


def test_freeze_layer_bounds(tiny_bert):
    with pytest.raises(ConfigError, match="has only 2 layers"):
        build(tiny_bert, "freeze", freeze={"train_top_layers": 5})


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "bitfit"])
def test_merge_matches_the_unmerged_model(tiny_bert, keyword_data, tmp_path, method, capsys):
    from transformers import AutoModelForSequenceClassification

    import tunelab
    from helpers import plain_probs, tiny_config
    from tunelab.cli import main

    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        method=method,
        **{"training.max_steps": 8, "training.lr": 1e-2},
    )
    run = tunelab.train(cfg).run_dir
    texts = ["a superb film", "the plot was dull and weak"]
    ours = tunelab.predict(run, texts=texts)
    assert main(["merge", str(run)]) == 0
    out = capsys.readouterr().out
    target = run / "merged"
    assert str(target) in out
    merged = AutoModelForSequenceClassification.from_pretrained(target).eval()
    tok = tunelab.load_run(run).task.tokenizer
    probs = plain_probs(merged, tok, texts)
    for row, p in zip(ours, probs):
        assert list(row["probabilities"].values()) == pytest.approx(p, abs=1e-4)
    assert main(["merge", str(run)]) == 2  # never overwritten without being asked
    assert main(["merge", str(run), "--overwrite"]) == 0
    if method == "bitfit":  # the run saves only biases and head; the merge is a full model
        saved = sum(f.stat().st_size for f in (run / "model").glob("*.safetensors"))
        full = sum(f.stat().st_size for f in target.glob("*.safetensors"))
        n_bias = sum(p.numel() for n, p in merged.named_parameters() if n.endswith(".bias"))
        assert 4 * n_bias <= saved < full / 3  # fp32 biases (and the head), not the model


def test_compare_trains_each_method_and_writes_table_and_plot(
    tiny_bert, keyword_data, tmp_path, capsys
):
    import json

    import yaml

    from helpers import tiny_config
    from tunelab.cli import main

    cfg = tiny_config(tiny_bert, keyword_data, tmp_path / "runs", **{"training.max_steps": 6})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    out = tmp_path / "cmp"
    args = ["compare", str(path), "--methods", "full,lora,bitfit,lora@0.02", "--output", str(out)]
    assert main([*args, "--set", "bitfit:training.lr=0.05"]) == 0
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["full", "lora", "bitfit", "lora-lr0.02"]
    assert [r["lr"] for r in rows] == [cfg["training"]["lr"]] * 2 + [0.05, 0.02]
    assert (
        rows[0]["trainable_pct"] == 100.0
        and rows[2]["trainable_pct"] < rows[1]["trainable_pct"] < 100
    )
    assert all(0 <= r["metric"] <= 1 and r["saved_mb"] > 0 for r in rows)
    assert rows[1]["saved_mb"] < rows[0]["saved_mb"]  # an adapter is smaller than a full model
    assert (out / "compare.png").stat().st_size > 1000 and (out / "compare.csv").is_file()
    assert (
        main(["compare", str(path), "--methods", "full,nope", "--output", str(tmp_path / "x")]) == 2
    )
    assert "unknown ['nope']" in capsys.readouterr().err
    # key=value overrides also work after the options
    y = tmp_path / "y"
    assert (
        main(
            ["compare", str(path), "--methods", "full", "--output", str(y), "training.max_steps=2"]
        )
        == 0
    )
    assert json.loads((y / "full" / "run.json").read_text())["summary"]["steps"] == 2
    with pytest.raises(SystemExit):
        main(["compare", str(path), "--methods", "full", "--output", str(y), "--bogus"])
