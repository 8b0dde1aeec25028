"""`tunelab benchmark glue|superglue`: one fine-tuned model per task, each scored on its dev set
with the benchmark's official metric, and the table papers report (with the average).

Each task trains in its own process (``python -m tunelab.cli train``), so one task's memory never
carries into the next and a crash ends only that task. ``OUT/benchmark.json`` is rewritten
after every task: a benchmark started again with the same output folder keeps the finished
tasks, resumes an interrupted one from its newest checkpoint and runs the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunelab import rundir
from tunelab.config import load_config
from tunelab.config.run import deep_merge, parse_overrides
from tunelab.errors import ConfigError, RunInterrupted
from tunelab.reporting.benchmark import RESULTS, benchmark_chart, table_rows
from tunelab.utils.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
)

TABLE_CSV, CHART = "benchmark.csv", "benchmark.png"


@dataclass(frozen=True)
class BenchTask:
    name: str  # the recipe is RECIPES/<name>.yaml
    title: str  # as papers print it
    metrics: tuple[str, ...]  # official metrics; the task's score is their mean (GLUE's rule)


BENCHMARKS: dict[str, tuple[BenchTask, ...]] = {
    "glue": (
        BenchTask("cola", "CoLA", ("mcc",)),
        BenchTask("sst2", "SST-2", ("accuracy",)),
        BenchTask("mrpc", "MRPC", ("f1", "accuracy")),
        BenchTask("stsb", "STS-B", ("pearson", "spearman")),
        BenchTask("qqp", "QQP", ("f1", "accuracy")),
        BenchTask("mnli", "MNLI-m", ("accuracy",)),
        BenchTask("qnli", "QNLI", ("accuracy",)),
        BenchTask("rte", "RTE", ("accuracy",)),
        BenchTask("wnli", "WNLI", ("accuracy",)),
    ),
    "superglue": (
        BenchTask("boolq", "BoolQ", ("accuracy",)),
        BenchTask("cb", "CB", ("accuracy", "f1_macro")),
        BenchTask("copa", "COPA", ("accuracy",)),
        BenchTask("rte", "RTE", ("accuracy",)),
        BenchTask("wic", "WiC", ("accuracy",)),
    ),
}


def default_recipes(benchmark: str) -> Path:
    """The shipped per-task recipes: ``configs/<benchmark>/`` of the project checkout."""
    return Path(__file__).resolve().parents[3] / "configs" / benchmark


def default_data(benchmark: str) -> Path:
    """Where the data is looked for by default: ``../shared/data/<benchmark>``."""
    return Path("..") / "shared" / "data" / benchmark


def _data_paths(recipe: dict[str, Any], data_dir: Path) -> list[str]:
    """Resolve the recipe's data files against ``data_dir``; return those that are missing."""
    missing = []
    data = recipe.setdefault("data", {})
    for key in ("train", "validation", "test"):
        if data.get(key):
            path = Path(data[key]).expanduser()
            path = path if path.is_absolute() else data_dir / path
            data[key] = str(path)
            if not path.is_file():
                missing.append(str(path))
    return missing


def task_config(
    bench: BenchTask,
    recipes: Path,
    data_dir: Path,
    base: dict[str, Any],
    overrides: dict[str, Any],
    out: Path,
) -> tuple[dict[str, Any] | None, list[str]]:
    """The validated config of one task (recipe, then the user's config, then the overrides)
    and the data files it lacks (then the config is None)."""
    path = recipes / f"{bench.name}.yaml"
    if not path.is_file():
        raise ConfigError(f"benchmark: no recipe {path} for task {bench.name}")
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = _data_paths(recipe, data_dir)
    if missing:
        return None, missing
    merged = deep_merge(deep_merge(recipe, base), overrides)
    merged = deep_merge(merged, {"output": {"dir": str(out / "runs"), "name": bench.name}})
    return load_config(merged).to_dict(), []


def score(bench: BenchTask, metrics: dict[str, Any]) -> float:
    """The task's benchmark score: the mean of its official metrics, in percent."""
    return 100.0 * sum(float(metrics[m]) for m in bench.metrics) / len(bench.metrics)


def _train(config_file: Path, resume: bool, restart: bool, log: Path) -> int:
    cmd = [sys.executable, "-m", "tunelab.cli", "train", str(config_file)]
    if resume:
        cmd.append("--resume")
    elif restart:  # this benchmark's own unfinished run, with nothing to resume from
        cmd.append("output.overwrite=true")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # this tunelab, in the child too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with open(log, "ab") as fh:
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode


def _finished(run_dir: Path) -> dict[str, Any] | None:
    if not rundir.is_run_dir(run_dir):
        return None
    if rundir.read_info(run_dir).get("status") != "completed":
        return None
    return rundir.read_eval(run_dir, "validation")


def run_benchmark(
    benchmark: str,
    config: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    tasks: list[str] | None = None,
    output: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    recipes: str | os.PathLike | None = None,
    console=None,
) -> dict[str, Any]:
    """Fine-tune and score every task of ``benchmark`` (or ``tasks``); return the results
    (also in ``OUT/benchmark.json``, ``.csv`` and ``.png``)."""
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"benchmark: unknown {benchmark!r}; allowed: {', '.join(BENCHMARKS)}")
    known = {b.name: b for b in BENCHMARKS[benchmark]}
    unknown = [t for t in tasks or [] if t not in known]
    if unknown:
        raise ConfigError(
            f"--tasks: {', '.join(unknown)} not in {benchmark}; allowed: {', '.join(known)}"
        )
    chosen = [known[t] for t in tasks] if tasks else list(known.values())
    base = load_config(config).to_dict() if config else {}
    if config:  # only what the user's file says, not every default of a full config
        base = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    extra = parse_overrides(overrides or [])
    out = Path(output or f"benchmarks-{benchmark}")
    recipes = Path(recipes) if recipes else default_recipes(benchmark)
    data_dir = Path(data_dir) if data_dir else default_data(benchmark)
    out.mkdir(parents=True, exist_ok=True)
    state_file = out / RESULTS
    state = rundir.read_json(state_file) or {"benchmark": benchmark, "tasks": {}}
    if state.get("benchmark") != benchmark:
        raise ConfigError(f"{out} holds a {state.get('benchmark')} benchmark, not {benchmark}")
    say = console.print if console is not None else (lambda *_: None)
    for bench in chosen:
        cfg, missing = task_config(bench, recipes, data_dir, base, extra, out)
        if cfg is None:
            say(f"[yellow]{bench.title}: skipped, no data ({', '.join(missing)})")
            state["tasks"][bench.name] = {
                "title": bench.title,
                "status": "skipped",
                "missing": missing,
            }
            continue
        prev = state["tasks"].get(bench.name, {})
        run_dir = out / "runs" / bench.name
        same = prev.get("config") == cfg
        if prev.get("status") == "completed" and same and _finished(run_dir) is not None:
            say(f"{bench.title}: kept ({prev['score']:.1f}) from {run_dir}")
            continue
        config_file = out / "configs" / f"{bench.name}.yaml"
        changed = prev.get("config") not in (None, cfg)
        if changed and run_dir.exists():
            raise ConfigError(
                f"{bench.title}: {run_dir} was trained with another config; remove it or use "
                "another --output"
            )
        atomic_write_yaml(config_file, cfg)
        metrics = _finished(run_dir)
        if metrics is None:
            resume = rundir.is_run_dir(run_dir) and any((run_dir / rundir.CHECKPOINTS).glob("*"))
            say(f"{bench.title}: {'resuming' if resume else 'training'} (log {out}/logs/)")
            (out / "logs").mkdir(exist_ok=True)
            log = out / "logs" / f"{bench.name}.log"
            rc = _train(config_file, resume, run_dir.exists(), log)
            metrics = _finished(run_dir)
            if metrics is None:
                state["tasks"][bench.name] = {
                    "title": bench.title,
                    "status": "failed",
                    "returncode": rc,
                    "config": cfg,
                }
                atomic_write_json(state_file, state)
                if rc in (130, -2, 143, -15):
                    raise RunInterrupted(f"benchmark interrupted at {bench.title}; run it again")
                say(f"[red]{bench.title}: failed (exit {rc}); see {out}/logs/{bench.name}.log")
                continue
        state["tasks"][bench.name] = {
            "title": bench.title,
            "status": "completed",
            "metrics": {m: float(metrics[m]) for m in bench.metrics},
            "score": score(bench, metrics),
            "run_dir": str(run_dir),
            "config": cfg,
        }
        atomic_write_json(state_file, state)
    state["order"] = [b.name for b in BENCHMARKS[benchmark]]
    done = [t for t in state["tasks"].values() if t["status"] == "completed"]
    state["average"] = sum(t["score"] for t in done) / len(done) if done else None
    atomic_write_json(state_file, state)
    write_outputs(out, state)
    return state


def write_outputs(out: Path, state: dict[str, Any]) -> None:
    """``benchmark.csv`` (one row per task and the average) and ``benchmark.png``."""
    import csv
    import io

    rows = table_rows(state)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["task", "metric", "value", "score"])
    w.writeheader()
    w.writerows(rows)
    if state.get("average") is not None:
        w.writerow(
            {"task": "Average", "metric": "", "value": "", "score": round(state["average"], 2)}
        )
    atomic_write_text(out / TABLE_CSV, buf.getvalue())
    if rows:
        atomic_write_bytes(
            out / CHART, benchmark_chart(state["benchmark"], rows, state.get("average"))
        )
