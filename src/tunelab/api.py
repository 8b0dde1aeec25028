"""The Python API: every CLI command is a thin call into a function here."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import __version__
from tunelab.config import RunConfig, load_config
from tunelab.errors import ConfigError, DataError, RunDirError, TunelabError
from tunelab.evaluation.metrics import scalar_metrics
from tunelab.utils.io import (
    atomic_directory,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    atomic_write_yaml,
)

# Keys whose change makes a checkpoint meaningless for this run (resume refuses them).
RESUME_FIXED = (
    "model",
    "data",
    "task",
    "method",
    "lora",
    "freeze",
    "ia3",
    "training.seed",
    "training.batch_size",
    "training.grad_accum",
    "training.group_by_length",
)


@dataclass
class RunResult:
    """What :func:`train` returns: where the run is and what it measured."""

    run_dir: Path
    metrics: dict[str, Any]
    before: dict[str, Any] | None
    summary: dict[str, Any]
    test_metrics: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)


# -- helpers --------------------------------------------------------------------------------
def choose_precision(requested: str) -> str:
    """Accelerate's mixed_precision value for ``training.precision``."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "fp32":
        return "no"
    if requested == "fp16":
        if not cuda:
            raise ConfigError("training.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
        return "fp16"
    bf16_ok = torch.cuda.is_bf16_supported() if cuda else _cpu_bf16()
    if requested == "bf16":
        if not bf16_ok and cuda:
            raise ConfigError(
                "training.precision=bf16: this GPU has no bf16 support; use fp16 or fp32"
            )
        return "bf16"
    return "bf16" if bf16_ok else "no"


def _cpu_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX).

    torch's own check (``mkldnn._is_mkldnn_bf16_supported``) also says yes for plain AVX-512,
    where bf16 matmuls are emulated: measured 60 GFLOP/s against 240 in fp32 on such a CPU.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def _precision_name(accelerator) -> str:
    """Accelerate's ``mixed_precision`` as a user reads it (``no`` is fp32)."""
    mp = str(accelerator.mixed_precision)
    return "fp32" if mp == "no" else mp


def make_accelerator(cfg: RunConfig):
    import torch
    from accelerate import Accelerator

    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    # With no accelerator device, cpu=True lets Accelerate set up MULTI_CPU (gloo) under
    # torchrun / `accelerate launch --num_processes N`; otherwise each process runs alone.
    has_device = (
        torch.accelerator.is_available()
        if hasattr(torch, "accelerator")
        else torch.cuda.is_available()
    )
    return Accelerator(mixed_precision=choose_precision(cfg.training.precision), cpu=not has_device)


def _console(accelerator=None):
    from rich.console import Console

    if accelerator is not None and not accelerator.is_main_process:
        return None
    return Console(stderr=True)


def _held_out(table, fraction: float, seed: int):
    """Split a table into (train, validation) with a seeded permutation."""
    import numpy as np

    n = len(table)
    n_val = max(1, round(n * fraction))
    if n - n_val < 1:
        raise DataError(f"{table.source}: {n} row(s) are too few to hold out a validation fraction")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    # malformed rows are reported once, with the training split
    return table.subset(sorted(perm[n_val:]), table.skipped), table.subset(sorted(perm[:n_val]))


def _subsample(table, k: int, seed: int):
    import numpy as np

    if k >= len(table):
        return table
    idx = sorted(np.random.default_rng([seed, 11]).choice(len(table), size=k, replace=False))
    return table.subset(idx, table.skipped)


def build_task(cfg: RunConfig, tokenizer, train_table=None, meta: dict | None = None):
    from tunelab.tasks import get_task

    if meta is not None and meta.get("type") == "mixture":
        from tunelab.tasks.mixture import MixtureTask

        return MixtureTask.from_metadata(meta, tokenizer)
    cls = get_task(cfg.task.type)
    if meta is not None:
        return cls.from_metadata(meta, tokenizer)
    return cls.from_config(cfg, train_table, tokenizer)


def load_splits(cfg: RunConfig, task, train_table=None) -> dict[str, Any]:
    """Tokenized train/validation/test splits for ``cfg`` (validation carved from train if unset)."""
    from tunelab.data.sources import read_table

    if cfg.mixture.tasks:  # every task's splits, laid end to end
        from tunelab.tasks.mixture import MixtureTask

        return MixtureTask.from_config(cfg, task.tokenizer)[1]
    d = cfg.data
    if train_table is None:
        train_table = read_table(d.train, split=d.train_split, on_error=d.on_error, defer=True)
    splits: dict[str, Any] = {}
    if d.validation:
        train_t = train_table
        val = task.load_split(
            d.validation, "validation", hub_split=d.validation_split, on_error=d.on_error
        )
    else:
        train_t, val_t = _held_out(train_table, d.validation_fraction, cfg.training.seed)
        val = task.table_to_split(val_t, "validation", on_error=d.on_error)
    if d.max_train_rows:
        train_t = _subsample(train_t, d.max_train_rows, cfg.training.seed)
    from tunelab.data.augment import augment_table

    train_t, augmented = augment_table(train_t, task, cfg.augment, cfg.training.seed)
    splits["train"] = task.table_to_split(train_t, "train", on_error=d.on_error)
    splits["train"].augmented = augmented
    splits["validation"] = val
    if d.test:
        splits["test"] = task.load_split(
            d.test, "test", hub_split=d.test_split, on_error=d.on_error
        )
    return splits


def load_probes(cfg: RunConfig, tokenizer) -> dict[str, tuple[Any, Any]]:
    """Each probe's task and rows (its ``validation`` file, else its ``train`` file)."""
    out: dict[str, tuple[Any, Any]] = {}
    for spec in cfg.probes:
        sub = cfg.spec_config(spec)
        d = sub.data
        source, hub_split = (
            (d.validation, d.validation_split) if d.validation else (d.train, d.train_split)
        )
        task = build_task(sub, tokenizer)
        split = task.load_split(source, f"probe-{spec.name}", hub_split=hub_split,
                                on_error=d.on_error)  # fmt: skip
        if len(split) == 0:
            raise DataError(f"probe {spec.name!r}: {source} has no usable rows")
        out[spec.name] = (task, split)
    return out


def score_probes(probes: dict, model, batch_size: int, accelerator, run_dir: Path, tag: str,
                 save_predictions: bool = True, keep: dict | None = None,
                 ) -> dict[str, dict[str, float]]:  # fmt: skip
    """Score every probe; write ``eval/probe-NAME_TAG.json``; return the scalar metrics
    (``keep``, when given, also receives each probe's full metrics and rows)."""
    out = {}
    for name, (task, split) in probes.items():
        metrics, rows = task.evaluate(model, split, batch_size, accelerator)
        if accelerator.is_main_process:
            _write_eval(run_dir, f"probe-{name}_{tag}", metrics, rows, save_predictions)
        out[name] = scalar_metrics(metrics)
        if keep is not None:
            keep[name] = {"metrics": metrics, "rows": rows}
    return out


def probe_cache_key(probes: dict, model, batch_size: int, accelerator) -> str:
    """Content key of probe scores: the weights themselves, each probe's task settings and rows,
    the scoring settings and tunelab's own source, so a hit returns what scoring would."""
    import hashlib

    import torch

    import tunelab

    h = hashlib.sha256()
    for path in sorted(Path(tunelab.__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    base = accelerator.unwrap_model(model)
    h.update(f"{type(base).__name__}|{batch_size}|{_precision_name(accelerator)}".encode())
    h.update(f"{accelerator.num_processes}".encode())
    for key, tensor in sorted(base.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    for name, (task, split) in sorted(probes.items()):
        h.update(json.dumps([name, task.metadata()], sort_keys=True, default=str).encode())
        h.update(json.dumps([split.features, split.records], default=str).encode())
    return h.hexdigest()[:24]


def cached_probe_scores(probes: dict, model, batch_size: int, accelerator, run_dir: Path,
                        save_predictions: bool = True, console=None) -> dict[str, dict]:  # fmt: skip
    """``score_probes(..., "before")`` through a cache keyed by :func:`probe_cache_key`.

    Runs that share a base model, method initialisation and probes (a sweep over samplers or
    learning rates) score the untrained model once. The cache lives in ``TUNELAB_CACHE/probes``;
    ``TUNELAB_PROBE_CACHE=0`` turns it off."""
    from tunelab.models.registry import cache_dir

    if os.environ.get("TUNELAB_PROBE_CACHE", "1") == "0":
        return score_probes(probes, model, batch_size, accelerator, run_dir, "before",
                            save_predictions)  # fmt: skip
    path = (
        cache_dir() / "probes" / f"{probe_cache_key(probes, model, batch_size, accelerator)}.json"
    )
    if path.is_file():
        cached = json.loads(path.read_text())
        out = {}
        for name in probes:
            metrics, rows = cached[name]["metrics"], cached[name]["rows"]
            if accelerator.is_main_process:
                _write_eval(run_dir, f"probe-{name}_before", metrics, rows, save_predictions)
            out[name] = scalar_metrics(metrics)
        if console:
            console.print(f"probes before training: from the cache ({path.name})")
        return out
    full: dict = {}
    out = score_probes(probes, model, batch_size, accelerator, run_dir, "before",
                       save_predictions, keep=full)  # fmt: skip
    # cached only when the JSON round trip gives back exactly these scores
    text = json.dumps(full, ensure_ascii=False, default=str)
    again = json.loads(text)
    if accelerator.is_main_process and all(
        scalar_metrics(again[n]["metrics"]) == out[n] for n in out
    ):
        atomic_write_text(path, text)
    return out


def probe_deltas(before: dict, after: dict) -> dict[str, dict[str, Any]]:
    """before, after and after − before for every probe metric both sides have."""
    out = {}
    for name, b in before.items():
        a = after.get(name, {})
        out[name] = {
            "before": b,
            "after": a,
            "delta": {k: a[k] - b[k] for k in b if k in a and k != "n"},
        }
    return out


def _diff_keys(old: dict, new: dict, keys: tuple[str, ...]) -> list[str]:
    def get(d: dict, dotted: str):
        for part in dotted.split("."):
            d = d.get(part, {}) if isinstance(d, dict) else None
        return d

    changed = []
    for k in keys:
        a, b = get(old, k), get(new, k)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{k}.{s}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        elif a != b:
            changed.append(k)
    return changed


def _run_name(cfg: RunConfig, accelerator) -> str:
    from accelerate.utils import broadcast_object_list

    if cfg.output.name:
        return cfg.output.name
    if cfg.resume is True:
        raise ConfigError("resume=true needs output.name: the name of the run to continue")
    from tunelab.models.registry import resolve_model

    short = resolve_model(cfg.model.name).short_name if accelerator.is_main_process else ""
    obj = [f"{short}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"]
    if accelerator.num_processes > 1:
        broadcast_object_list(obj)
    return obj[0]


def _refusal(changed: list[str], path: str) -> str:
    return (
        f"resume refused: {', '.join(changed)} changed since the checkpoint {path}; start a new "
        "run (another output.name), or set resume_ignore_changes=true to resume anyway"
    )


def fingerprint_split(split) -> str:
    """Content hash of a tokenized split (catches a data file edited in place)."""
    import hashlib

    h = hashlib.sha256()
    for f in split.features:
        h.update(json.dumps([f["input_ids"], f.get("labels")]).encode())
    return h.hexdigest()[:16]


def fingerprint_model(resolved, model) -> str:
    """Hash of the base model's identity: where it came from and its architecture config."""
    import hashlib

    cfg = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else ""
    ident = f"{resolved.source}|{resolved.path}|{resolved.gguf_file}|{cfg}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _truncate_logs(run_dir: Path, step: int) -> None:
    """On resume, drop log rows of steps after the checkpoint (they are about to be redone)."""
    from tunelab.utils.io import read_jsonl

    for path in [run_dir / "metrics.jsonl", *run_dir.glob("trace-rank*.jsonl")]:
        if path.is_file():
            rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
            atomic_write_jsonl(path, rows)


def _prepare_run_dir(cfg: RunConfig, accelerator) -> tuple[Path, dict | None]:
    """Create (or reopen for resume) the run directory; return it and a checkpoint to resume."""
    from tunelab.training.checkpoint import latest_checkpoint

    run_dir = Path(cfg.output.dir) / _run_name(cfg, accelerator)
    resume = None
    exists = run_dir.exists() and any(run_dir.iterdir())
    if cfg.resume:
        if not exists and cfg.resume is True:
            raise RunDirError(f"resume: run directory {run_dir} does not exist; nothing to resume")
        con = _console(accelerator)
        warn = (lambda m: con.print(f"[yellow]{m}")) if con else None
        resume = latest_checkpoint(run_dir / "checkpoints", warn=warn) if exists else None
        if resume is None and cfg.resume is True:
            raise RunDirError(f"resume: {run_dir} holds no complete checkpoint to resume from")
        if resume is not None and not cfg.resume_ignore_changes:
            changed = _diff_keys(resume["state"]["config"], cfg.to_dict(), RESUME_FIXED)
            if changed:
                raise RunDirError(_refusal(changed, resume["path"]))
    if exists and resume is None:
        if not cfg.output.overwrite:
            raise RunDirError(
                f"run directory {run_dir} already exists; choose another output.name, "
                "set output.overwrite=true to replace it, or resume=true to continue it"
            )
        if accelerator.is_main_process:
            shutil.rmtree(run_dir)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return run_dir, resume


def _file_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _write_eval(
    run_dir: Path, name: str, metrics: dict, rows: list[dict], save_predictions: bool
) -> None:
    atomic_write_json(run_dir / "eval" / f"{name}.json", metrics)
    if save_predictions:
        atomic_write_jsonl(run_dir / "predictions" / f"{name}.jsonl", rows)


# -- train ----------------------------------------------------------------------------------
def train(
    config: str | os.PathLike | dict | RunConfig, overrides: list[str] | dict | None = None
) -> RunResult:
    """Fine-tune as ``config`` says; return the run directory and its measurements."""
    from accelerate.utils import set_seed

    from tunelab.data.sources import read_table
    from tunelab.methods import get_method
    from tunelab.methods.base import parameter_report
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model
    from tunelab.training.loop import Trainer

    cfg = load_config(config, overrides)
    if cfg.stages:
        return train_stages(cfg)
    if cfg.mixture.tasks and cfg.mixture.adapters == "per_task":
        return train_per_task_adapters(cfg)
    if not cfg.data.train and not cfg.mixture.tasks:
        raise ConfigError(
            "data.train: no training data given (a file path or hub:ID), and no mixture.tasks"
        )
    accelerator = make_accelerator(cfg)
    console = _console(accelerator)
    set_seed(cfg.training.seed)
    run_dir, resume = _prepare_run_dir(cfg, accelerator)
    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    with accelerator.main_process_first():  # a GGUF conversion happens once, on the main process
        tokenizer = load_tokenizer(resolved, cfg.model.trust_remote_code)
    if cfg.mixture.tasks:
        from tunelab.tasks.mixture import MixtureTask

        task, splits = MixtureTask.from_config(cfg, tokenizer)
    else:
        d = cfg.data
        train_table = read_table(d.train, split=d.train_split, on_error=d.on_error, defer=True)
        task = build_task(cfg, tokenizer, train_table)
        splits = load_splits(cfg, task, train_table)
    probes = load_probes(cfg, tokenizer)
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
    params = parameter_report(model)
    if console:
        console.print(
            f"[bold]tunelab[/] {cfg.method} on {resolved.name} ({resolved.source}) · "
            f"train {len(splits['train'])} · validation {len(splits['validation'])} · "
            f"trainable {params['trainable']:,} / {params['total']:,} ({params['trainable_pct']:.2f}%) · "
            f"precision {_precision_name(accelerator)} · processes {accelerator.num_processes} · "
            f"seed {cfg.training.seed}"
        )
    run_info = {
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
    }
    fingerprint = {
        "train_data": fingerprint_split(splits["train"]),
        "validation_data": fingerprint_split(splits["validation"]),
        "model": fingerprint_model(resolved, model),
    }
    if resume is not None and not cfg.resume_ignore_changes:
        old = resume["state"].get("fingerprint") or {}
        changed = [k for k, v in fingerprint.items() if old.get(k) != v]
        if changed:
            raise RunDirError(_refusal(changed, resume["path"]))
    if accelerator.is_main_process:
        if resume is not None:
            _truncate_logs(run_dir, resume["state"]["step"])
        atomic_write_yaml(run_dir / "config.yaml", cfg.to_dict())
        atomic_write_json(run_dir / "run.json", run_info)
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
    probes_before = None
    if probes:
        if resume is None:
            probes_before = cached_probe_scores(probes, trainer.model, trainer.eval_bs,
                                                accelerator, run_dir, cfg.output.save_predictions,
                                                console)  # fmt: skip
        else:  # scored when the run started
            probes_before = {
                n: scalar_metrics(
                    json.loads((run_dir / "eval" / f"probe-{n}_before.json").read_text())
                )
                for n in probes
                if (run_dir / "eval" / f"probe-{n}_before.json").is_file()
            }
    before_test = None
    if resume is None and cfg.training.eval_before and "test" in splits:
        # the test split scored before training too: a before/after on held-out or general data
        before_test, rows = task.evaluate(
            trainer.model, splits["test"], trainer.eval_bs, accelerator
        )
        if accelerator.is_main_process:
            _write_eval(run_dir, "test_before", before_test, rows, cfg.output.save_predictions)
    t0 = time.perf_counter()
    summary = trainer.fit(resume_from=resume)
    if before_test is not None:
        summary["before_test"] = scalar_metrics(before_test)
    summary["wall_seconds"] = time.perf_counter() - t0
    model = trainer.model
    # final evaluation with the selected weights (the loop's last pass when it scored them)
    results: dict[str, Any] = {}
    for name in [n for n in ("validation", "test") if n in splits]:
        last = trainer.last_eval
        if name == "validation" and last is not None and last[0] == trainer.weights_step:
            metrics, rows = last[1], last[2]
        else:
            metrics, rows = task.evaluate(model, splits[name], trainer.eval_bs, accelerator)
        results[name] = metrics
        if accelerator.is_main_process:
            _write_eval(run_dir, name, metrics, rows, cfg.output.save_predictions)
    if probes:
        after = score_probes(probes, model, trainer.eval_bs, accelerator, run_dir, "after",
                             cfg.output.save_predictions)  # fmt: skip
        summary["probes"] = probe_deltas(probes_before or {}, after)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        with atomic_directory(run_dir / "model") as tmp:
            method.save(unwrapped, tmp)
            tokenizer.save_pretrained(tmp)
        run_info.update(
            status="completed",
            summary=summary,
            saved_model_mb=round(_file_size_mb(run_dir / "model"), 3),
            final={k: scalar_metrics(r) for k, r in results.items()},
        )
        atomic_write_json(run_dir / "run.json", run_info)
    accelerator.wait_for_everyone()
    if console:
        _print_result(console, summary, results)
    return RunResult(
        run_dir, results["validation"], summary.get("before"), summary, results.get("test"), params
    )


def train_stages(cfg: RunConfig) -> RunResult:
    """Intermediate fine-tuning: train ``cfg.stages`` in order, each from the previous stage's
    weights (merged into the base where the method is an adapter). Every stage is a complete
    run directory ``OUTPUT/NAME/<i>-<stage>``; ``pipeline.json`` lists their results."""
    root = Path(cfg.output.dir) / (cfg.output.name or f"stages-{time.strftime('%Y%m%d-%H%M%S')}")
    if (root / "pipeline.json").exists() and not (cfg.output.overwrite or cfg.resume):
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
        if start_from is not None:
            sub.model.name = start_from
        done = root / sub.output.name / "run.json"
        if cfg.resume and done.is_file() and json.loads(done.read_text())["status"] == "completed":
            info = json.loads(done.read_text())
            run_dir = done.parent
            metrics = info["final"]["validation"]
        else:
            if cfg.resume:
                sub.resume = "auto"
            result = train(sub)
            run_dir, metrics = result.run_dir, scalar_metrics(result.metrics)
        stages.append({"stage": stage.name, "run_dir": str(run_dir), "start_from": start_from,
                       "method": sub.method, "validation": metrics})  # fmt: skip
        if i > 1:  # forgetting: this stage's model on every earlier stage's validation data
            kept = _old_stage(root, i - 1).get("earlier_stages") if cfg.resume else None
            stages[-1]["earlier_stages"] = kept or earlier_stage_retention(stages)
            _print_retention(_console(), stage.name, stages[-1]["earlier_stages"])
        if i < len(cfg.stages):
            try:
                start_from = str(merge(run_dir, overwrite=True))
            except ConfigError as e:
                raise ConfigError(
                    f"stages: stage {stage.name!r} cannot hand its weights on ({e}); use a "
                    "method that merges (full, lora, dora, ia3, bitfit, freeze) for all but "
                    "the last stage"
                ) from None
        atomic_write_json(root / "pipeline.json", {"stages": stages})
    if result is None:  # every stage was already complete
        last = Path(stages[-1]["run_dir"])
        result = RunResult(last, stages[-1]["validation"], None, {}, None, {})
    return result


def _old_stage(root: Path, index: int) -> dict[str, Any]:
    path = root / "pipeline.json"
    if not path.is_file():
        return {}
    stages = json.loads(path.read_text())["stages"]
    return stages[index] if index < len(stages) else {}


def earlier_stage_retention(stages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Score the last stage's model on each earlier stage's validation split, against the
    score that stage ended with: ``{stage: {at_own_end, now, delta}}`` (or ``skipped``)."""
    now = load_run(stages[-1]["run_dir"])
    bs = now.config.training.eval_batch_size or 2 * now.config.training.batch_size
    out: dict[str, dict[str, Any]] = {}
    for s in stages[:-1]:
        cfg_j, _, _, _, task_j = _open_run(Path(s["run_dir"]))
        if task_j.kind != now.task.kind or getattr(task_j, "labels", None) != getattr(
            now.task, "labels", None
        ):
            out[s["stage"]] = {"skipped": "its task (kind or labels) differs from this stage's"}
            continue
        split = load_splits(cfg_j, task_j)["validation"]
        metrics, _ = task_j.evaluate(now.model, split, bs, now.accelerator)
        then, current = s["validation"], scalar_metrics(metrics)
        out[s["stage"]] = {
            "at_own_end": then,
            "now": current,
            "delta": {k: current[k] - then[k] for k in then if k in current and k != "n"},
        }
    return out


def _print_retention(console, stage: str, retention: dict[str, dict[str, Any]]) -> None:
    from rich.table import Table as RTable

    t = RTable(title=f"earlier stages after stage {stage!r} (forgetting)")
    for c in ("stage", "metric", "at its end", "now", "delta"):
        t.add_column(c, justify="left" if c in ("stage", "metric") else "right")
    for name, r in retention.items():
        if "skipped" in r:
            t.add_row(name, "—", "", "", r["skipped"])
            continue
        for k, d in r["delta"].items():
            if k in SHOWN or k in SHOWN_GENERATION:
                t.add_row(name, k, f"{r['at_own_end'][k]:.4f}", f"{r['now'][k]:.4f}", f"{d:+.4f}")
    console.print(t)


def train_per_task_adapters(cfg: RunConfig) -> RunResult:
    """One adapter per mixture task on the shared frozen base, trained in turn: runs
    ``OUTPUT/NAME/adapters/<task>`` and an ``adapters.json`` that ``load_adapters`` reads."""
    root = Path(cfg.output.dir) / (cfg.output.name or f"adapters-{time.strftime('%Y%m%d-%H%M%S')}")
    if (root / "adapters.json").exists() and not cfg.output.overwrite:
        raise RunDirError(
            f"{root} already holds per-task adapters; set output.overwrite=true to replace them"
        )
    runs: dict[str, str] = {}
    results: dict[str, Any] = {}
    last: RunResult | None = None
    for spec in cfg.mixture.tasks:
        sub = cfg.spec_config(spec)
        sub.output.dir, sub.output.name = str(root / "adapters"), spec.name
        last = train(sub)
        runs[spec.name] = str(last.run_dir)
        results[spec.name] = scalar_metrics(last.metrics)
    atomic_write_json(root / "adapters.json", {"adapters": runs, "validation": results})
    assert last is not None
    return RunResult(root, {f"{n}/{k}": v for n, m in results.items() for k, v in m.items()},
                     None, {"adapters": runs}, None, last.params)  # fmt: skip


SHOWN = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
SHOWN_GENERATION = (
    "loss", "perplexity", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf",
    "squad_em", "squad_f1", "exact_match", "acc", "acc_norm",
)  # fmt: skip


def _print_result(console, summary: dict, results: dict) -> None:
    from rich.table import Table as RTable

    t = RTable(title="results")
    t.add_column("split")
    rows = {"validation (before)": summary["before"]} if summary.get("before") else {}
    if summary.get("before_test"):
        rows["test (before)"] = summary["before_test"]
    rows.update({f"{name} (after)": m for name, m in results.items()})
    shown = [c for c in SHOWN if any(c in m for m in rows.values())]
    shown = shown or [c for c in SHOWN_GENERATION if any(c in m for m in rows.values())]
    if any("/" in k for m in rows.values() for k in m):  # a mixture: one row per task score
        _print_mixture(console, rows)
        shown = [c for c in ("mean", "mean_loss") if any(c in m for m in rows.values())]
    for c in shown:
        t.add_column(c, justify="right")
    for label, m in rows.items():
        t.add_row(label, *[f"{m.get(c, float('nan')):.4f}" for c in shown])
    console.print(t)
    if summary.get("probes"):
        pt = RTable(title="probes (forgetting): before → after (delta)")
        for c in ("probe", "metric", "before", "after", "delta"):
            pt.add_column(c, justify="left" if c in ("probe", "metric") else "right")
        for name, p in summary["probes"].items():
            for k, d in p["delta"].items():
                if k in ("loss", "perplexity", "word_perplexity", "accuracy", "exact_match",
                         "squad_f1", "rougeL", "bleu", "chrf", "acc", "acc_norm"):  # fmt: skip
                    pt.add_row(name, k, f"{p['before'][k]:.4f}", f"{p['after'][k]:.4f}",
                               f"{d:+.4f}")  # fmt: skip
        console.print(pt)
    console.print(
        f"{summary['steps']} steps · {summary['examples_per_s']:.1f} train examples/s · "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB · skipped steps {summary['skipped_steps']}"
    )


def _print_mixture(console, rows: dict[str, dict]) -> None:
    from rich.table import Table as RTable

    from tunelab.tasks.mixture import PRIMARY

    keep = {"loss", "accuracy", *PRIMARY.values()}
    keys = list(dict.fromkeys(k for m in rows.values() for k in m if "/" in k))
    t = RTable(title="tasks")
    t.add_column("task")
    t.add_column("metric")
    for label in rows:
        t.add_column(label, justify="right")
    for k in keys:
        task, metric = k.rsplit("/", 1)
        if metric in keep:
            t.add_row(task, metric, *[f"{m[k]:.4f}" if k in m else "—" for m in rows.values()])
    console.print(t)


# -- using a finished run ---------------------------------------------------------------------
@dataclass
class LoadedRun:
    """A finished run, ready for evaluation or prediction."""

    run_dir: Path
    config: RunConfig
    task: Any
    model: Any
    accelerator: Any
    info: dict[str, Any]


def _open_run(run_dir: Path, trust_remote_code: bool = False):
    """A completed run's config, run.json, resolved base model, accelerator and task."""
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import ResolvedModel, resolve_model

    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise RunDirError(f"{run_dir} is not a tunelab run directory (no run.json)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("status") != "completed" or not (run_dir / "model").is_dir():
        raise RunDirError(
            f"{run_dir}: the run did not complete (status {info.get('status')!r}); "
            "resume it with resume=true"
        )
    cfg = load_config(run_dir / "config.yaml")
    cfg.training.progress = False
    cfg.model.trust_remote_code = trust_remote_code
    m = info["model"]
    try:
        resolved = resolve_model(cfg.model.name, cfg.model.revision)
    except TunelabError:
        resolved = ResolvedModel(m["name"], m["source"], m["path"], m.get("gguf_file"))
    accelerator = make_accelerator(cfg)
    tokenizer = load_tokenizer(ResolvedModel(m["name"], "local", str(run_dir / "model")))
    task = build_task(cfg, tokenizer, meta=info["task"])
    return cfg, info, resolved, accelerator, task


def load_run(run_dir: str | os.PathLike, trust_remote_code: bool = False) -> LoadedRun:
    """Load a completed run's model (base + method weights) and task.

    ``trust_remote_code`` comes from the caller only: a run directory's own config cannot turn
    it on (a run directory may come from someone else).
    """
    from tunelab.methods import get_method

    run_dir = Path(run_dir)
    cfg, info, resolved, accelerator, task = _open_run(run_dir, trust_remote_code)
    method = get_method(cfg.method)
    base = task.build_model(resolved, trust_remote_code)
    try:
        model = method.load(base, run_dir / "model")
    except Exception as e:  # peft / transformers / safetensors raise many types on a bad folder
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise RunDirError(f"cannot load the trained model in {run_dir / 'model'}: {msg}") from None
    model = accelerator.prepare(model)
    model.eval()
    return LoadedRun(run_dir, cfg, task, model, accelerator, info)


def _loaded(run: str | os.PathLike | LoadedRun, trust_remote_code: bool) -> LoadedRun:
    return run if isinstance(run, LoadedRun) else load_run(run, trust_remote_code)


def evaluate(
    run_dir: str | os.PathLike | LoadedRun,
    split: str = "validation",
    file: str | None = None,
    columns: dict[str, str] | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Score a finished run (a directory or a :class:`LoadedRun`) on one of its splits or on any
    labelled file; write the results."""
    run = _loaded(run_dir, trust_remote_code)
    cfg, task = run.config, run.task
    for key, col in (columns or {}).items():
        setattr(task, key, col)
    bs = batch_size or cfg.training.eval_batch_size or 2 * cfg.training.batch_size
    if file:
        data = task.load_split(file, Path(file).stem, on_error=cfg.data.on_error)
        name = f"file-{Path(file).stem}"
    else:
        if split not in ("train", "validation", "test"):
            raise ConfigError(f"--split must be train, validation or test, not {split!r}")
        if split == "test" and not cfg.data.test:
            raise DataError("this run has no test data (data.test); pass --file instead")
        data = load_splits(cfg, task)[split]
        name = split
    metrics, rows = task.evaluate(run.model, data, bs, run.accelerator)
    if run.accelerator.is_main_process:
        _write_eval(run.run_dir, name, metrics, rows, True)
    metrics["_written"] = str(run.run_dir / "eval" / f"{name}.json")
    return metrics


def predict(
    run_dir: str | os.PathLike | LoadedRun,
    texts: list[str] | None = None,
    file: str | None = None,
    text_pairs: list[str] | None = None,
    batch_size: int = 64,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Labels with probabilities for texts (or a file's text column), in input order."""
    from tunelab.tasks.base import Split

    run = _loaded(run_dir, trust_remote_code)
    task = run.task
    if task.kind != "classification":
        raise ConfigError(
            f"{run.run_dir} is a {task.kind} run: use `tunelab generate` (tunelab.generate)"
        )
    if file:
        split = task.load_split(
            file, "predict", require_labels=False, on_error=run.config.data.on_error
        )
    else:
        if not texts:
            raise DataError("nothing to predict: give texts (--text) or a file (--file)")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise DataError("every --text must be non-empty")
        if task.text_pair_column and (not text_pairs or len(text_pairs) != len(texts)):
            raise DataError("this model classifies text pairs: give one --text-pair per --text")
        if text_pairs and not task.text_pair_column:
            raise DataError("this model classifies single texts; --text-pair is not used")
        feats = task.encode(texts, text_pairs)
        records = [
            {"text": t, **({"text_pair": p} if text_pairs else {})}
            for t, p in zip(texts, text_pairs or [None] * len(texts))
        ]
        split = Split("predict", feats, records)
    probs = task.predict_proba(run.model, split, batch_size, run.accelerator)
    out = []
    for rec, p in zip(split.records, probs):
        best = max(range(len(p)), key=p.__getitem__)
        out.append(
            {
                **rec,
                "label": task.labels[best],
                "probabilities": {n: round(q, 6) for n, q in zip(task.labels, p)},
            }
        )
    return out


def merge(
    run_dir: str | os.PathLike, output: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Fold a run's adapter into its base model and save a plain transformers folder.

    Returns the folder that holds the merged model: ``RUN_DIR/merged`` (or ``output``) for
    LoRA, DoRA and IA3, and ``RUN_DIR/model`` itself for methods that already save a full model.
    """
    run = load_run(run_dir)
    from tunelab.methods import get_method

    method = get_method(run.config.method)
    merged = method.merge(run.accelerator.unwrap_model(run.model))
    if merged is None:
        return run.run_dir / "model"
    target = Path(output) if output else run.run_dir / "merged"
    if target.exists() and not overwrite:
        raise RunDirError(
            f"{target} already exists; pass --overwrite (overwrite=True) to replace it"
        )
    with atomic_directory(target) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        for f in (run.run_dir / "model").iterdir():
            if f.name.startswith(
                ("tokenizer", "special_tokens", "vocab", "merges", "chat_template")
            ):
                shutil.copy2(f, tmp / f.name)
    return target


# -- generation ---------------------------------------------------------------------------------
def _generator(target: str | os.PathLike | LoadedRun, trust_remote_code: bool = False):
    """(task, model, accelerator) for a finished generation run or a plain model name/path."""
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model

    if isinstance(target, LoadedRun) or (Path(target) / "run.json").is_file():
        run = _loaded(target, trust_remote_code)
        if run.task.kind != "generation":
            raise ConfigError(
                f"{run.run_dir} is a {run.task.kind} run; generate needs a generation run "
                "(or a model name)"
            )
        return run.task, run.model, run.accelerator
    cfg = load_config(
        {
            "model": {"name": str(target), "trust_remote_code": trust_remote_code},
            "task": {"type": "generation", "format": "prompt_completion"},
            "training": {"progress": False},
        }
    )
    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    tokenizer = load_tokenizer(resolved, trust_remote_code)
    task = build_task(cfg, tokenizer)
    model = task.build_model(resolved, trust_remote_code)
    accelerator = make_accelerator(cfg)
    return task, accelerator.prepare(model).eval(), accelerator


def generate(
    target: str | os.PathLike | LoadedRun,
    prompts: list[str] | list[list[dict[str, str]]],
    batch_size: int = 8,
    trust_remote_code: bool = False,
    **generation: Any,
) -> list[str]:
    """Continuations of ``prompts`` (texts, or chat message lists) by a finished generation run
    or a model; ``generation`` overrides task settings (max_new_tokens, num_beams, do_sample,
    temperature, top_p)."""
    if not prompts:
        raise DataError("nothing to generate from: give at least one prompt")
    task, model, accelerator = _generator(target, trust_remote_code)
    ids = [task.prompt_ids(p) for p in prompts]
    return task.generate_for(model, ids, batch_size, accelerator, **generation)
