"""Exact resume after SIGKILL, mid-step and mid-checkpoint: bit-identical weights, same data order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import keyword_files, tiny_config
from tunelab.utils.io import read_jsonl

RUN = "import json, sys, tunelab; tunelab.train(json.load(open(sys.argv[1])))"


def run(cfg: dict, tmp: Path, fault: str | None = None, **over) -> subprocess.CompletedProcess:
    cfg = json.loads(json.dumps(cfg, default=str))
    cfg.update(over)
    path = tmp / f"cfg-{len(list(tmp.glob('cfg-*')))}.json"
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k != "TUNELAB_FAULT"}
    if fault:
        env["TUNELAB_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-c", RUN, str(path)], capture_output=True, text=True, timeout=300, env=env
    )


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def trace(run_dir: Path) -> list:
    return [(r["step"], r["rows"]) for r in read_jsonl(run_dir / "trace-rank0.jsonl")]


@pytest.fixture(scope="module")
def setup(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    data = keyword_files(tmp, 100, 24)
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp / "runs",
        **{
            "training.max_steps": 24,
            "training.save_every": 6,
            "training.eval_every": 12,
            "training.keep_last": 3,
            "training.trace_examples": True,
        },
    )
    cfg["output"]["name"] = "reference"
    ref = run(cfg, tmp)
    assert ref.returncode == 0, ref.stderr[-2000:]
    return cfg, tmp, tmp / "runs" / "reference"


@pytest.mark.parametrize(
    "fault", ["kill:step:15", "kill:checkpoint:optimizer:12", "kill:checkpoint:marker:18"]
)
def test_killed_run_resumes_bit_identical(setup, fault):
    cfg, tmp, ref_dir = setup
    name = fault.replace(":", "-")
    cfg = {**cfg, "output": {**cfg["output"], "name": name}}
    crashed = run(cfg, tmp, fault=fault)
    assert crashed.returncode == -signal.SIGKILL
    run_dir = tmp / "runs" / name
    assert not (run_dir / "model").exists()
    resumed = run(cfg, tmp, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    a, b = weights(ref_dir), weights(run_dir)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "weights differ after resume"
    assert trace(run_dir) == trace(ref_dir)
    assert [s for s, _ in trace(run_dir)] == list(range(1, 25))
    assert not list((run_dir / "checkpoints").glob(".step-*"))  # partial write cleaned up


def test_resume_refuses_changed_data_model_or_method(setup):
    cfg, tmp, _ref_dir = setup
    cfg = {**cfg, "output": {**cfg["output"], "name": "changes"}}
    assert run(cfg, tmp).returncode == 0
    changed = run(cfg, tmp, resume=True, method="lora")
    assert changed.returncode != 0 and "resume refused: method changed" in changed.stderr
    data = Path(cfg["data"]["train"])
    edited = tmp / "train-edited.csv"
    shutil.copy(data, edited)
    with open(edited, "a") as fh:
        fh.write("an extra great row,positive\n")
    cfg2 = {**cfg, "data": {**cfg["data"], "train": str(edited)}}
    refused = run(cfg2, tmp, resume=True)
    assert "resume refused: data.train" in refused.stderr
    # same path, new content: caught by the data fingerprint
    shutil.copy(edited, data)
    try:
        refused = run(cfg, tmp, resume=True)
        assert "resume refused: train_data changed" in refused.stderr
        assert "resume_ignore_changes=true" in refused.stderr
        forced = run(cfg, tmp, resume=True, resume_ignore_changes=True)
        assert forced.returncode == 0, forced.stderr[-2000:]
    finally:
        lines = data.read_text().splitlines(keepends=True)
        data.write_text("".join(lines[:-1]))


def test_resume_without_checkpoint_is_an_error(setup):
    cfg, tmp, _ = setup
    cfg = {**cfg, "output": {**cfg["output"], "name": "never-ran"}}
    out = run(cfg, tmp, resume=True)
    assert out.returncode != 0 and "does not exist; nothing to resume" in out.stderr


@pytest.mark.parametrize("sampler", ["mixture", "curriculum"])
def test_mixture_and_curriculum_resume_bit_identical(setup, sampler):
    """The task-mixture and curriculum samplers restore their exact stream too."""
    cfg, tmp, _ = setup
    cfg = json.loads(json.dumps(cfg, default=str))
    if sampler == "mixture":
        data = cfg.pop("data")
        other = keyword_files(tmp / "other", 60, 12)
        cfg["mixture"] = {
            "strategy": "temperature",
            "temperature": 2.0,
            "tasks": [
                {"name": "a", "data": data},
                {"name": "b", "data": {k: str(v) for k, v in other.items()}},
            ],
        }
    else:
        cfg["curriculum"] = {"by": "length", "start": 0.3, "full_at": 0.5}
    out = {}
    for name, fault in (("ref", None), ("cut", "kill:step:15")):
        c = {**cfg, "output": {**cfg["output"], "name": f"{sampler}-{name}"}}
        p = run(c, tmp, fault=fault)
        if fault:
            assert p.returncode == -signal.SIGKILL
            p = run(c, tmp, resume=True)
        assert p.returncode == 0, p.stderr[-2000:]
        out[name] = tmp / "runs" / f"{sampler}-{name}"
    a, b = weights(out["ref"]), weights(out["cut"])
    assert all((a[k] == b[k]).all() for k in a), "weights differ after resume"
    assert trace(out["cut"]) == trace(out["ref"])
