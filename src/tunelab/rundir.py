"""The run directory: every file name in it, and the one place that reads and writes them.

A run directory is the contract between training, evaluation and reporting::

    RUN/config.yaml          the resolved config (every default filled in)
    RUN/run.json             status, model, task, method, parameters, summary, final metrics
    RUN/metrics.jsonl        one row per log/eval event
    RUN/trace-rankN.jsonl    source rows of every step (training.trace_examples)
    RUN/eval/NAME.json       metrics of one evaluation (validation, test, probe-*, suite-*)
    RUN/predictions/NAME.jsonl  per-example predictions of that evaluation
    RUN/model/               the trained model in the method's own format, with its tokenizer
    RUN/merged/              ``tunelab merge``'s plain transformers folder
    RUN/checkpoints/step-N/  resumable checkpoints
    ROOT/pipeline.json       a staged run's stages;  ROOT/adapters.json  per-task adapters
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tunelab.errors import RunDirError
from tunelab.utils.io import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_yaml,
    read_jsonl,
)

CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
EVAL = "eval"
PREDICTIONS = "predictions"
MODEL = "model"
MERGED = "merged"
CHECKPOINTS = "checkpoints"
PIPELINE = "pipeline.json"
ADAPTERS = "adapters.json"
#: prefixes of the tokenizer's files in a saved model folder (copied next to merged weights)
TOKENIZER_FILES = ("tokenizer", "special_tokens", "vocab", "merges", "chat_template")


def trace_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / f"trace-rank{rank}.jsonl"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_INFO).is_file()


def read_info(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run directory (a clear error when there is none)."""
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a tunelab run directory (no run.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def write_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / RUN_INFO, info)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_yaml(Path(run_dir) / CONFIG, config)


def read_config_text(run_dir: Path) -> str:
    path = Path(run_dir) / CONFIG
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    return read_jsonl(path) if path.is_file() else []


def eval_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / EVAL / f"{name}.json"


def predictions_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / PREDICTIONS / f"{name}.jsonl"


def write_eval(
    run_dir: Path, name: str, metrics: dict, rows: list[dict] | None, save_predictions: bool = True
) -> Path:
    """``eval/NAME.json`` (and ``predictions/NAME.jsonl`` when asked); returns the JSON path."""
    path = atomic_write_json(eval_path(run_dir, name), metrics)
    if save_predictions and rows is not None:
        atomic_write_jsonl(predictions_path(run_dir, name), rows)
    return path


def read_eval(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = eval_path(run_dir, name)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_predictions(run_dir: Path, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    path = predictions_path(run_dir, name)
    if not path.is_file():
        return []
    rows = read_jsonl(path)
    return rows[:limit] if limit is not None else rows


def suite_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``eval/suite-NAME.json`` of a run, by suite name."""
    return {
        p.stem.removeprefix("suite-"): json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((Path(run_dir) / EVAL).glob("suite-*.json"))
    }


def truncate_logs(run_dir: Path, step: int) -> None:
    """On resume, drop log rows of steps after the checkpoint (they are about to be redone)."""
    for path in [Path(run_dir) / METRICS, *Path(run_dir).glob("trace-rank*.jsonl")]:
        if path.is_file():
            rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
            atomic_write_jsonl(path, rows)


def folder_mb(folder: Path) -> float:
    """Size of every file under ``folder``, in MB."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Copy a saved model folder's tokenizer files into another folder."""
    for f in Path(src).iterdir():
        if f.name.startswith(TOKENIZER_FILES):
            shutil.copy2(f, Path(dst) / f.name)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON index file of the run layout (``pipeline.json``, ``adapters.json``), or None."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
