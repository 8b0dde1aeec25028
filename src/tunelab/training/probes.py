"""Probes: held-out tasks scored before and after training (forgetting), and the cache of the
scores before training."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import DataError
from tunelab.evaluation.metrics import scalar_metrics
from tunelab.tasks import build_task
from tunelab.training.precision import precision_name
from tunelab.utils.io import atomic_write_text


def load_probes(cfg, tokenizer) -> dict[str, tuple[Any, Any]]:
    """Each probe's task and rows (its ``validation`` file, else its ``train`` file)."""
    out: dict[str, tuple[Any, Any]] = {}
    for spec in cfg.probes:
        sub = cfg.spec_config(spec)
        d = sub.data
        source, hub_split = (
            (d.validation, d.validation_split) if d.validation else (d.train, d.train_split)
        )
        task = build_task(sub, tokenizer)
        split = task.load_split(
            source, f"probe-{spec.name}", hub_split=hub_split, on_error=d.on_error
        )
        if len(split) == 0:
            raise DataError(f"probe {spec.name!r}: {source} has no usable rows")
        out[spec.name] = (task, split)
    return out


def score_probes(
    probes: dict,
    model,
    batch_size: int,
    accelerator,
    run_dir: Path,
    tag: str,
    save_predictions: bool = True,
    keep: dict | None = None,
) -> dict[str, dict[str, float]]:
    """Score every probe; write ``eval/probe-NAME_TAG.json``; return the scalar metrics
    (``keep``, when given, also receives each probe's full metrics and rows)."""
    out = {}
    for name, (task, split) in probes.items():
        metrics, rows = task.evaluate(model, split, batch_size, accelerator)
        if accelerator.is_main_process:
            rundir.write_eval(run_dir, f"probe-{name}_{tag}", metrics, rows, save_predictions)
        out[name] = scalar_metrics(metrics)
        if keep is not None:
            keep[name] = {"metrics": metrics, "rows": rows}
    return out


def probe_cache_key(probes: dict, model, batch_size: int, accelerator) -> str:
    """Content key of probe scores: the weights themselves, each probe's task settings and rows,
    the scoring settings and tunelab's own source, so a hit returns what scoring would."""
    import torch

    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parents[1].rglob("*.py")):
        h.update(path.read_bytes())
    base = accelerator.unwrap_model(model)
    h.update(f"{type(base).__name__}|{batch_size}|{precision_name(accelerator)}".encode())
    h.update(f"{accelerator.num_processes}".encode())
    for key, tensor in sorted(base.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    for name, (task, split) in sorted(probes.items()):
        h.update(json.dumps([name, task.metadata()], sort_keys=True, default=str).encode())
        h.update(json.dumps([split.features, split.records], default=str).encode())
    return h.hexdigest()[:24]


def cached_probe_scores(
    probes: dict,
    model,
    batch_size: int,
    accelerator,
    run_dir: Path,
    save_predictions: bool = True,
    console=None,
) -> dict[str, dict]:
    """``score_probes(..., "before")`` through a cache keyed by :func:`probe_cache_key`.

    Runs that share a base model, method initialisation and probes (a sweep over samplers or
    learning rates) score the untrained model once. The cache lives in ``TUNELAB_CACHE/probes``;
    ``TUNELAB_PROBE_CACHE=0`` turns it off."""
    from tunelab.models.registry import cache_dir

    args = (probes, model, batch_size, accelerator, run_dir, "before", save_predictions)
    if os.environ.get("TUNELAB_PROBE_CACHE", "1") == "0":
        return score_probes(*args)
    key = probe_cache_key(probes, model, batch_size, accelerator)
    path = cache_dir() / "probes" / f"{key}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        out = {}
        for name in probes:
            metrics, rows = cached[name]["metrics"], cached[name]["rows"]
            if accelerator.is_main_process:
                rundir.write_eval(run_dir, f"probe-{name}_before", metrics, rows, save_predictions)
            out[name] = scalar_metrics(metrics)
        if console:
            console.print(f"probes before training: from the cache ({path.name})")
        return out
    full: dict = {}
    out = score_probes(*args, keep=full)
    # cached only when the JSON round trip gives back exactly these scores
    text = json.dumps(full, ensure_ascii=False, default=str)
    again = json.loads(text)
    if accelerator.is_main_process and all(
        scalar_metrics(again[n]["metrics"]) == out[n] for n in out
    ):
        atomic_write_text(path, text)
    return out


def probes_before(probes: dict, trainer, run_dir: Path, resume, save_predictions: bool, console):
    """Probe scores of the untrained model: scored now (through the cache), or, on resume,
    read back from when the run started."""
    if not probes:
        return None
    if resume is None:
        return cached_probe_scores(
            probes, trainer.model, trainer.eval_bs, trainer.acc, run_dir, save_predictions, console
        )
    saved = {n: rundir.read_eval(run_dir, f"probe-{n}_before") for n in probes}
    return {n: scalar_metrics(m) for n, m in saved.items() if m is not None}


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
