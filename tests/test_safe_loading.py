"""No pickle runs on any load path; remote code runs only when the caller turns it on."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import yaml

import tunelab
from helpers import keyword_files, tiny_config
from tunelab.errors import TunelabError
from tunelab.training import checkpoint as ckpt


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pickle(path, marker):
    torch.save({"weight": Evil(marker)}, path)


@pytest.fixture(scope="module")
def runs(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safe")
    data = keyword_files(tmp, 64, 16)
    out = {}
    for method in ("full", "lora"):
        cfg = tiny_config(
            tiny_bert,
            data,
            tmp / "runs",
            method=method,
            **{"training.max_steps": 6, "training.save_every": 3},
        )
        cfg["output"]["name"] = method
        out[method] = tunelab.train(cfg).run_dir
    return out


@pytest.mark.parametrize("victim", ["weights.safetensors", "optimizer.safetensors"])
def test_checkpoint_pickles_are_refused(runs, tmp_path, victim):
    marker = tmp_path / "pwned"
    src = ckpt.complete_checkpoints(runs["full"] / "checkpoints")[-1]
    d = tmp_path / "ck" / "step-0000009"
    shutil.copytree(src, d)
    evil_pickle(d / victim, marker)
    with pytest.raises(TunelabError, match="unreadable"):
        ckpt.load_checkpoint(d)
    assert not marker.exists()


def test_rng_and_state_are_json_not_pickle(runs, tmp_path):
    marker = tmp_path / "pwned"
    d = tmp_path / "step-0000009"
    shutil.copytree(ckpt.complete_checkpoints(runs["full"] / "checkpoints")[-1], d)
    evil_pickle(d / "rng.json", marker)
    with pytest.raises(TunelabError, match="unreadable"):
        ckpt.load_checkpoint(d)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("method", "real", "fake"),
    [
        ("full", "model.safetensors", "pytorch_model.bin"),
        ("lora", "adapter_model.safetensors", "adapter_model.bin"),
    ],
)
def test_model_and_adapter_pickles_are_refused(runs, tmp_path, method, real, fake):
    marker = tmp_path / "pwned"
    run = tmp_path / method
    shutil.copytree(runs[method], run)
    (run / "model" / real).unlink()
    evil_pickle(run / "model" / fake, marker)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the marker is the point
        tunelab.predict(run, texts=["a good film"])
    assert not marker.exists()


def test_base_model_pickle_is_refused(tiny_bert, keyword_data, tmp_path):
    marker = tmp_path / "pwned"
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    (base / "model.safetensors").unlink()
    evil_pickle(base / "pytorch_model.bin", marker)
    with pytest.raises(TunelabError):
        tunelab.train(tiny_config(base, keyword_data, tmp_path / "runs"))
    assert not marker.exists()


def remote_code_model(tiny_bert, folder, marker, model_type="bert"):
    shutil.copytree(tiny_bert, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = model_type
    cfg["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForSequenceClassification": "evil.EvilModel",
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "from transformers import BertConfig as EvilConfig, BertForSequenceClassification as EvilModel\n"
    )


def test_remote_code_never_runs_unless_the_user_turns_it_on(
    tiny_bert, keyword_data, runs, tmp_path
):
    marker = tmp_path / "pwned"
    # a known architecture that also ships code: the built-in class is used, the code is not run
    known = tmp_path / "known"
    remote_code_model(tiny_bert, known, marker)
    tunelab.train(tiny_config(known, keyword_data, tmp_path / "runs", **{"training.max_steps": 2}))
    assert not marker.exists()
    # an architecture only its own code defines: refused with a clear error
    evil = tmp_path / "evil-model"
    remote_code_model(tiny_bert, evil, marker, model_type="evil-arch")
    with pytest.raises(TunelabError, match="trust_remote_code"):
        tunelab.train(tiny_config(evil, keyword_data, tmp_path / "runs2"))
    assert not marker.exists()
    # a run directory cannot turn it on by itself: its config says trust_remote_code, and the
    # base model it names carries code; loading it still refuses unless the caller says so
    run = tmp_path / "run"
    shutil.copytree(runs["full"], run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["name"] = str(evil)
    cfg["model"]["trust_remote_code"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(TunelabError, match="trust_remote_code"):
        tunelab.predict(run, texts=["a good film"])
    assert not marker.exists()
