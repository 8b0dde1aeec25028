"""A few steps on the real embedded MiniLM: the demo's path, with its own data."""

from __future__ import annotations

import json

import pytest
import torch

import tunelab
from tunelab.cli import main
from tunelab.data.demo import write_demo_dataset
from tunelab.workflows.demo import demo_config_dict


@pytest.mark.integration
def test_lora_on_embedded_minilm_learns_the_demo_data(tmp_path):
    paths = write_demo_dataset(tmp_path / "data", n_train=320, n_validation=100, n_test=100)
    res = tunelab.train(
        demo_config_dict(),
        [
            f"data.train={paths['train']}",
            f"data.validation={paths['validation']}",
            f"data.test={paths['test']}",
            f"output.dir={tmp_path / 'runs'}",
            "output.name=demo",
            "training.epochs=2",
            "training.progress=false",
        ],
    )
    assert res.before["accuracy"] < 0.7
    assert res.metrics["accuracy"] >= 0.85 and res.test_metrics["accuracy"] >= 0.8
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["model"]["source"] == "embedded" and info["parameters"]["trainable_pct"] < 3
    assert (
        main(["predict", str(res.run_dir), "--text", "The film was wonderful and I loved it."]) == 0
    )


@pytest.mark.integration
@pytest.mark.parametrize("method", ["adapter", "prefix", "prompt"])
def test_own_methods_on_embedded_smollm2_train_and_generate(tmp_path, method):
    # the hand-written methods on the real Llama-architecture SmolLM2, through its chat template
    from helpers import gen_rows, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", gen_rows(16, 0))
    res = tunelab.train(
        {
            "model": {"name": "smollm2-135m-instruct", "max_length": 64},
            "data": {"train": str(train), "validation_fraction": 0.25},
            "task": {"type": "generation", "format": "prompt_completion", "max_new_tokens": 4},
            "method": method,
            "training": {
                "max_steps": 3,
                "batch_size": 4,
                "lr": 1e-2,
                "eval_before": True,
                "progress": False,
            },
            "output": {"dir": str(tmp_path / "runs"), "name": method},
        }
    )
    assert res.metrics["loss"] < res.before["loss"]
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["task"]["chat_template_used"] and info["parameters"]["trainable_pct"] < 2
    out = tunelab.generate(res.run_dir, ["the film was great"], max_new_tokens=4)
    # the same (non-empty) greedy continuation as transformers' own generate on the loaded run
    run = tunelab.load_run(res.run_dir)
    ids = torch.tensor([run.task.prompt_ids("the film was great")])
    with torch.inference_mode(), run.accelerator.autocast():
        direct = run.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False
        )
    tok = run.task.tokenizer
    expected = tok.decode(direct[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert out == [expected] and expected
