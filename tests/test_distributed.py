"""Two CPU processes (gloo) through `accelerate launch`: same code, disjoint shards, repeatable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_config
from tunelab.utils.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def launch(cfg: dict, tmp: Path, name: str) -> Path:
    cfg = json.loads(json.dumps(cfg, default=str))
    cfg["output"]["name"] = name
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs/accelerate/two_processes.yaml"),
        str(ROOT / "tests/dist_worker.py"),
        str(path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("ACCURACY") == 2  # both processes finished
    return Path(cfg["output"]["dir"]) / name


@pytest.mark.distributed
def test_two_processes_train_together_and_repeat(tiny_bert, keyword_data, tmp_path):
    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        **{"training.max_steps": 20, "training.eval_every": 10},
    )
    a = launch(cfg, tmp_path, "a")
    info = json.loads((a / "run.json").read_text())
    assert info["processes"] == 2 and info["status"] == "completed"
    rows = read_jsonl(a / "metrics.jsonl")
    train = [r for r in rows if r["type"] == "train"]
    # 160 rows, 16 per process per step → a global batch of 32: 5 steps per epoch
    assert train[-1]["examples"] == 20 * 32 and train[-1]["epoch"] == 4.0
    assert len([r for r in rows if r["type"] == "eval"]) == 3  # one writer, not two
    b = launch(cfg, tmp_path, "b")
    rb = read_jsonl(b / "metrics.jsonl")
    assert [r.get("loss") for r in rows] == [r.get("loss") for r in rb]
    assert json.loads((a / "eval/validation.json").read_text()) == json.loads(
        (b / "eval/validation.json").read_text()
    )
