"""``tunelab train``: one run, intermediate fine-tuning in stages, or one adapter per task."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.config import RunConfig, load_config
from tunelab.errors import ConfigError, RunDirError
from tunelab.evaluation.metrics import scalar_metrics
from tunelab.methods import methods_where
from tunelab.reporting.tables import print_retention
from tunelab.tasks import load_splits
from tunelab.training import trackers
from tunelab.utils.io import atomic_write_json
from tunelab.workflows.runs import eval_batch_size, load_run, merge, open_run
from tunelab.workflows.single import RunResult, console_for, train_single


def train(
    config: str | os.PathLike | dict | RunConfig, overrides: list[str] | dict | None = None
) -> RunResult:
    """Fine-tune as ``config`` says; return the run directory and its measurements."""
    return train_config(load_config(config, overrides))


def train_config(cfg: RunConfig) -> RunResult:
    """:func:`train` for a validated config: stages, per-task adapters, or a single run."""
    if cfg.stages:
        return train_stages(cfg)
    if cfg.mixture.tasks and cfg.mixture.adapters == "per_task":
        return train_per_task_adapters(cfg)
    return train_single(cfg)


def _root(cfg: RunConfig, kind: str) -> Path:
    return Path(cfg.output.dir) / (cfg.output.name or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def train_per_task_adapters(cfg: RunConfig) -> RunResult:
    """One adapter per mixture task on the shared frozen base, trained in turn: runs
    ``OUTPUT/NAME/adapters/<task>`` and an ``adapters.json`` that ``load_adapters`` reads."""
    root = _root(cfg, "adapters")
    if (root / rundir.ADAPTERS).exists() and not cfg.output.overwrite:
        raise RunDirError(
            f"{root} already holds per-task adapters; set output.overwrite=true to replace them"
        )
    runs: dict[str, str] = {}
    results: dict[str, Any] = {}
    last: RunResult | None = None
    for spec in cfg.mixture.tasks:
        sub = cfg.spec_config(spec)
        sub.output.dir, sub.output.name = str(root / "adapters"), spec.name
        trackers.group_runs(sub, root.name)
        last = train_single(sub)
        runs[spec.name] = str(last.run_dir)
        results[spec.name] = scalar_metrics(last.metrics)
    atomic_write_json(root / rundir.ADAPTERS, {"adapters": runs, "validation": results})
    assert last is not None  # mixture.tasks is not empty here
    metrics = {f"{n}/{k}": v for n, m in results.items() for k, v in m.items()}
    return RunResult(root, metrics, None, {"adapters": runs}, None, last.params)


def _completed(run_json: Path) -> dict[str, Any] | None:
    if not run_json.is_file():
        return None
    info = rundir.read_info(run_json.parent)
    return info if info.get("status") == "completed" else None


def train_stages(cfg: RunConfig) -> RunResult:
    """Intermediate fine-tuning: train ``cfg.stages`` in order, each from the previous stage's
    weights (merged into the base where the method is an adapter). Every stage is a complete
    run directory ``OUTPUT/NAME/<i>-<stage>``; ``pipeline.json`` lists their results."""
    root = _root(cfg, "stages")
    if (root / rundir.PIPELINE).exists() and not (cfg.output.overwrite or cfg.resume):
        raise RunDirError(
            f"{root} already holds a staged run; set output.overwrite=true to replace it or "
            "resume=true to continue it"
        )
    start_from: str | None = None
    stages: list[dict[str, Any]] = []
    result: RunResult | None = None
    for i, stage in enumerate(cfg.stages, 1):
        sub = cfg.stage_config(stage)
        sub.output.dir, sub.output.name = str(root), f"{i}-{stage.name}"
        trackers.group_runs(sub, root.name)
        if start_from is not None:
            sub.model.name = start_from
        done = _completed(root / sub.output.name / rundir.RUN_INFO) if cfg.resume else None
        if done is not None:
            run_dir, metrics = root / sub.output.name, done["final"]["validation"]
        else:
            if cfg.resume:
                sub.resume = "auto"
            result = train_config(sub)
            run_dir, metrics = result.run_dir, scalar_metrics(result.metrics)
        stages.append(
            {
                "stage": stage.name,
                "run_dir": str(run_dir),
                "start_from": start_from,
                "method": sub.method,
                "validation": metrics,
            }
        )
        if i > 1:  # forgetting: this stage's model on every earlier stage's validation data
            kept = _old_stage(root, i - 1).get("earlier_stages") if cfg.resume else None
            stages[-1]["earlier_stages"] = kept or earlier_stage_retention(stages)
            print_retention(console_for(), stage.name, stages[-1]["earlier_stages"])
        if i < len(cfg.stages):
            start_from = _hand_on(run_dir, stage.name)
        atomic_write_json(root / rundir.PIPELINE, {"stages": stages})
    if result is None:  # every stage was already complete
        last = Path(stages[-1]["run_dir"])
        result = RunResult(last, stages[-1]["validation"], None, {}, None, {})
    return result


def _hand_on(run_dir: Path, stage: str) -> str:
    """The folder of a stage's merged weights, where the next stage starts."""
    try:
        return str(merge(run_dir, overwrite=True))
    except ConfigError as e:
        raise ConfigError(
            f"stages: stage {stage!r} cannot hand its weights on ({e}); use a method that "
            f"merges ({', '.join(methods_where(mergeable=True))}) for all but the last stage"
        ) from None


def _old_stage(root: Path, index: int) -> dict[str, Any]:
    old = rundir.read_json(root / rundir.PIPELINE)
    if old is None:
        return {}
    stages = old["stages"]
    return stages[index] if index < len(stages) else {}


def earlier_stage_retention(stages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Score the last stage's model on each earlier stage's validation split, against the
    score that stage ended with: ``{stage: {at_own_end, now, delta}}`` (or ``skipped``)."""
    now = load_run(stages[-1]["run_dir"])
    bs = eval_batch_size(now.config)
    out: dict[str, dict[str, Any]] = {}
    for s in stages[:-1]:
        earlier = open_run(Path(s["run_dir"]))
        task_j = earlier.task
        if task_j.kind != now.task.kind or getattr(task_j, "labels", None) != getattr(
            now.task, "labels", None
        ):
            out[s["stage"]] = {"skipped": "its task (kind or labels) differs from this stage's"}
            continue
        split = load_splits(earlier.config, task_j)["validation"]
        metrics, _ = task_j.evaluate(now.model, split, bs, now.accelerator)
        then, current = s["validation"], scalar_metrics(metrics)
        out[s["stage"]] = {
            "at_own_end": then,
            "now": current,
            "delta": {k: current[k] - then[k] for k in then if k in current and k != "n"},
        }
    return out
