"""One training run, from a validated config to a completed run directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, RunInterrupted
from tunelab.evaluation.metrics import scalar_metrics
from tunelab.methods import get_method
from tunelab.models.layers import parameter_report
from tunelab.reporting.tables import print_result
from tunelab.tasks import build_task, load_splits
from tunelab.tasks.splits import read_train_table
from tunelab.training import trackers
from tunelab.training.precision import make_accelerator, precision_name
from tunelab.training.probes import load_probes, probe_deltas, probes_before, score_probes
from tunelab.training.resume import (
    check_fingerprint,
    fingerprint_model,
    fingerprint_split,
    prepare_run_dir,
)
from tunelab.training.stop import StopSignals
from tunelab.utils.io import atomic_directory
from tunelab.version import __version__


@dataclass
class RunResult:
    """What :func:`tunelab.train` returns: where the run is and what it measured."""

    run_dir: Path
    metrics: dict[str, Any]
    before: dict[str, Any] | None
    summary: dict[str, Any]
    test_metrics: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def console_for(accelerator=None):
    """A stderr console on the main process (None on the others)."""
    from rich.console import Console

    if accelerator is not None and not accelerator.is_main_process:
        return None
    return Console(stderr=True)


def _data(cfg: RunConfig, tokenizer, console):
    """The task, its splits and (for a column curriculum) each training example's difficulty."""
    train_table = None if cfg.mixture.tasks else read_train_table(cfg)
    task = build_task(cfg, tokenizer, train_table)
    splits = load_splits(cfg, task, train_table)
    difficulty = None
    if cfg.curriculum.by == "column":
        from tunelab.data.curriculum import column_difficulty

        difficulty = column_difficulty(train_table, splits["train"], cfg.curriculum.column)
    for s in splits.values():
        if s.skipped and console:
            console.print(
                f"[yellow]{s.name}: skipped {len(s.skipped)} row(s): "
                + "; ".join(f"row {r}: {w}" for r, w in s.skipped[:5])
            )
    return task, splits, difficulty


def _model(cfg: RunConfig, task, resolved, tokenizer):
    """The pretrained model with the task's head, prepared by the method."""
    from accelerate.utils import set_seed

    set_seed(cfg.training.seed)  # the head's initialisation does not depend on data loading
    model = task.build_model(resolved, cfg.model.trust_remote_code)
    method = get_method(cfg.method)
    model = method.apply(model, cfg, task.head_modules(model), tokenizer)
    if cfg.training.fast_dropout:
        from tunelab.training.fast_dropout import use_fast_dropout

        use_fast_dropout(model)
    if cfg.training.activation_checkpointing != "none":
        from tunelab.training.recompute import enable_checkpointing

        base = method.unwrap(model)
        if not getattr(base, "supports_gradient_checkpointing", False):
            raise ConfigError(
                f"training.activation_checkpointing: {type(base).__name__} does not support it"
            )
        enable_checkpointing(base, cfg.training.activation_checkpointing)
    return model, method


def _run_info(cfg, resolved, task, params, splits, accelerator) -> dict[str, Any]:
    return {
        "tunelab_version": __version__,
        "status": "running",
        "model": {
            "name": resolved.name,
            "source": resolved.source,
            "path": resolved.path,
            "gguf_file": resolved.gguf_file,
        },
        "task": task.metadata(),
        "method": cfg.method,
        "parameters": params,
        "data": {k: len(v) for k, v in splits.items()},
        "augmented": getattr(splits["train"], "augmented", None),
        "skipped_rows": {k: [list(x) for x in v.skipped] for k, v in splits.items() if v.skipped},
        "processes": accelerator.num_processes,
        "precision": accelerator.mixed_precision,
        "process": rundir.this_process(),
    }


def _final_scores(trainer, task, splits, run_dir: Path, save_predictions: bool) -> dict[str, Any]:
    """Validation (and test) scores of the selected weights (reusing the loop's last pass
    when it scored exactly those weights)."""
    results: dict[str, Any] = {}
    for name in [n for n in ("validation", "test") if n in splits]:
        last = trainer.last_eval
        if name == "validation" and last is not None and last[0] == trainer.weights_step:
            metrics, rows = last[1], last[2]
        else:
            metrics, rows = task.evaluate(trainer.model, splits[name], trainer.eval_bs, trainer.acc)
        results[name] = metrics
        if trainer.acc.is_main_process:
            rundir.write_eval(run_dir, name, metrics, rows, save_predictions)
    return results


def train_single(cfg: RunConfig, eval_hooks: Sequence[Callable] = ()) -> RunResult:
    """Fine-tune one model on one task (or one mixture) as ``cfg`` says.

    The run directory is claimed first (a second process is refused); SIGINT, SIGTERM and
    SIGUSR1 end the run after the current step with a checkpoint of it. ``eval_hooks`` are
    called as ``hook(step, metrics)`` after each periodic evaluation; one that returns a
    reason (e.g. ``"pruned"``) ends training there, with that ``stop_reason``."""
    from accelerate.utils import set_seed

    if not cfg.data.train and not cfg.mixture.tasks:
        raise ConfigError(
            "data.train: no training data given (a file path or hub:ID), and no mixture.tasks"
        )
    trackers.check_installed(cfg.training.report_to)
    accelerator = make_accelerator(cfg)
    console = console_for(accelerator)
    set_seed(cfg.training.seed)
    warn = (lambda m: console.print(f"[yellow]{m}")) if console else None
    run_dir, resume, claim = prepare_run_dir(cfg, accelerator, warn)
    run_info: dict[str, Any] = {}
    try:
        with StopSignals() as stops:
            return _train(cfg, accelerator, console, run_dir, resume, stops, run_info, eval_hooks)
    except RunInterrupted as e:
        _ended(
            accelerator,
            run_dir,
            run_info,
            "interrupted",
            step=e.step,
            signal=e.signal_name,
            checkpoint=e.saved,
        )
        raise
    except KeyboardInterrupt:  # a second Ctrl-C while the stop checkpoint was written
        _ended(accelerator, run_dir, run_info, "interrupted", signal="SIGINT", checkpoint=False)
        raise
    except SystemExit:  # a second SIGTERM/SIGUSR1 while the stop checkpoint was written
        _ended(accelerator, run_dir, run_info, "interrupted", signal="SIGTERM", checkpoint=False)
        raise
    except Exception as e:
        _ended(
            accelerator,
            run_dir,
            run_info,
            "failed",
            error=(str(e).splitlines() or [type(e).__name__])[0][:500],
        )
        raise
    finally:
        trackers.finish(accelerator)
        if claim is not None:
            claim.release()


def _ended(accelerator, run_dir: Path, run_info: dict, status: str, **what: Any) -> None:
    """Record in run.json how a run that started ended early (nothing when it never started)."""
    if run_info and accelerator.is_main_process:
        run_info.update(status=status, ended={**what, "at": time.time()})
        rundir.write_info(run_dir, run_info)


def _train(
    cfg, accelerator, console, run_dir, resume, stops, run_info: dict, eval_hooks=()
) -> RunResult:
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model
    from tunelab.training.loop import Trainer

    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    with accelerator.main_process_first():  # a GGUF conversion happens once, on the main process
        tokenizer = load_tokenizer(resolved, cfg.model.trust_remote_code)
    task, splits, difficulty = _data(cfg, tokenizer, console)
    probes = load_probes(cfg, tokenizer)
    model, method = _model(cfg, task, resolved, tokenizer)
    params = parameter_report(model)
    if console:
        console.print(
            f"[bold]tunelab[/] {cfg.method} on {resolved.name} ({resolved.source}) · "
            f"train {len(splits['train'])} · validation {len(splits['validation'])} · "
            f"trainable {params['trainable']:,} / {params['total']:,} ({params['trainable_pct']:.2f}%) · "
            f"precision {precision_name(accelerator)} · processes {accelerator.num_processes} · "
            f"seed {cfg.training.seed}"
        )
    run_info.update(_run_info(cfg, resolved, task, params, splits, accelerator))
    fingerprint = {
        "train_data": fingerprint_split(splits["train"]),
        "validation_data": fingerprint_split(splits["validation"]),
        "model": fingerprint_model(resolved, model),
    }
    check_fingerprint(resume, fingerprint, cfg.resume_ignore_changes)
    tracking = trackers.start(cfg, accelerator, run_dir, resume, console)
    if tracking:
        run_info["trackers"] = tracking
    if accelerator.is_main_process:
        if resume is not None:
            rundir.truncate_logs(run_dir, resume["state"]["step"])
        rundir.write_config(run_dir, cfg.to_dict())
        rundir.write_info(run_dir, run_info)
    trainer = Trainer(
        cfg,
        accelerator,
        model,
        method,
        task,
        splits["train"],
        splits["validation"],
        run_dir,
        console,
        fingerprint,
        difficulty,
    )
    trainer.stops = stops
    trainer.eval_hooks = list(eval_hooks)
    task.prepare_training(
        trainer.model, method, splits, run_dir, accelerator, resume, trainer.eval_bs
    )
    save_preds = cfg.output.save_predictions
    before_probes = probes_before(probes, trainer, run_dir, resume, save_preds, console)
    before_test = None
    if resume is None and cfg.training.eval_before and "test" in splits:
        # the test split scored before training too: a before/after on held-out or general data
        before_test, rows = task.evaluate(
            trainer.model, splits["test"], trainer.eval_bs, accelerator
        )
        if accelerator.is_main_process:
            rundir.write_eval(run_dir, "test_before", before_test, rows, save_preds)
    t0 = time.perf_counter()
    summary = trainer.fit(resume_from=resume)
    if before_test is not None:
        summary["before_test"] = scalar_metrics(before_test)
    summary["wall_seconds"] = time.perf_counter() - t0
    results = _final_scores(trainer, task, splits, run_dir, save_preds)
    if probes:
        after = score_probes(
            probes, trainer.model, trainer.eval_bs, accelerator, run_dir, "after", save_preds
        )
        summary["probes"] = probe_deltas(before_probes or {}, after)
    final = {k: scalar_metrics(r) for k, r in results.items()}
    trackers.log_final(accelerator, trainer.state.step, final, summary.get("probes"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_directory(run_dir / rundir.MODEL) as tmp:
            method.save(accelerator.unwrap_model(trainer.model), tmp)
            tokenizer.save_pretrained(tmp)
        trackers.log_model(cfg, accelerator, run_dir / rundir.MODEL)
        run_info.update(
            status="completed",
            summary=summary,
            saved_model_mb=round(rundir.folder_mb(run_dir / rundir.MODEL), 3),
            final={k: scalar_metrics(r) for k, r in results.items()},
        )
        rundir.write_info(run_dir, run_info)
    accelerator.wait_for_everyone()
    if console:
        print_result(console, summary, results)
    return RunResult(
        run_dir, results["validation"], summary.get("before"), summary, results.get("test"), params
    )
