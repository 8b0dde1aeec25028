"""Opening a run directory for training: its name, a fresh start or a resume, and the checks that
a checkpoint still belongs to this config (keys, data and model fingerprints)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from tunelab import rundir
from tunelab.errors import ConfigError, RunDirError
from tunelab.methods import method_class
from tunelab.training.checkpoint import latest_checkpoint

#: keys whose change makes a checkpoint meaningless for this run (resume refuses them); the
#: settings section of the run's method joins them when the method's structure depends on it
RESUME_FIXED = (
    "model",
    "data",
    "task",
    "method",
    "training.seed",
    "training.batch_size",
    "training.grad_accum",
    "training.group_by_length",
)


def resume_fixed_keys(config: dict) -> tuple[str, ...]:
    """:data:`RESUME_FIXED` plus the settings section of ``config``'s method."""
    cls = method_class(config["method"])
    key = cls.settings_key() if cls.resume_fixed else None
    return (*RESUME_FIXED[:4], key, *RESUME_FIXED[4:]) if key else RESUME_FIXED


def diff_keys(old: dict, new: dict, keys: tuple[str, ...]) -> list[str]:
    """The dotted keys (or their sub-keys) whose values differ between two config dicts."""

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


def refusal(changed: list[str], path: str) -> str:
    return (
        f"resume refused: {', '.join(changed)} changed since the checkpoint {path}; start a new "
        "run (another output.name), or set resume_ignore_changes=true to resume anyway"
    )


def fingerprint_split(split) -> str:
    """Content hash of a tokenized split (catches a data file edited in place)."""
    h = hashlib.sha256()
    for f in split.features:
        h.update(json.dumps([f["input_ids"], f.get("labels")]).encode())
    return h.hexdigest()[:16]


def fingerprint_model(resolved, model) -> str:
    """Hash of the base model's identity: where it came from and its architecture config."""
    cfg = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else ""
    ident = f"{resolved.source}|{resolved.path}|{resolved.gguf_file}|{cfg}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def check_fingerprint(resume: dict | None, fingerprint: dict, ignore: bool) -> None:
    """Refuse to resume a checkpoint whose data or model fingerprint differs."""
    if resume is None or ignore:
        return
    old = resume["state"].get("fingerprint") or {}
    changed = [k for k, v in fingerprint.items() if old.get(k) != v]
    if changed:
        raise RunDirError(refusal(changed, resume["path"]))


def run_name(cfg, accelerator) -> str:
    """``output.name``, or ``<model>-<method>-<timestamp>`` (the same on every process)."""
    from accelerate.utils import broadcast_object_list

    from tunelab.models.registry import resolve_model

    if cfg.output.name:
        return cfg.output.name
    if cfg.resume is True:
        raise ConfigError("resume=true needs output.name: the name of the run to continue")
    short = resolve_model(cfg.model.name).short_name if accelerator.is_main_process else ""
    obj = [f"{short}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"]
    if accelerator.num_processes > 1:
        broadcast_object_list(obj)
    return obj[0]


def claim_run_dir(run_dir: Path, accelerator, warn=None) -> rundir.Claim | None:
    """The main process takes the run directory's lock; every process learns whether it got
    it (a refusal is raised on all of them, so none waits for the others)."""
    from accelerate.utils import broadcast_object_list

    claim, refusal = None, None
    if accelerator.is_main_process:
        try:
            claim = rundir.claim(run_dir)
        except RunDirError as e:
            refusal = str(e)
    if accelerator.num_processes > 1:
        box = [refusal]
        broadcast_object_list(box)
        refusal = box[0]
    if refusal:
        raise RunDirError(refusal)
    if claim is not None and claim.note and warn:
        warn(claim.note)
    return claim


def prepare_run_dir(cfg, accelerator, warn=None) -> tuple[Path, dict | None, rundir.Claim | None]:
    """Claim, then create (or reopen for resume) the run directory; return it, a checkpoint to
    resume and the claim (held by the main process until :meth:`~tunelab.rundir.Claim.release`)."""
    run_dir = Path(cfg.output.dir) / run_name(cfg, accelerator)
    claim = claim_run_dir(run_dir, accelerator, warn)
    try:
        return (*_open_run_dir(cfg, accelerator, run_dir, warn), claim)
    except BaseException:
        if claim is not None:
            claim.release()
        raise


def _open_run_dir(cfg, accelerator, run_dir: Path, warn) -> tuple[Path, dict | None]:
    resume = None
    exists = run_dir.exists() and any(run_dir.iterdir())
    if cfg.resume:
        if not exists and cfg.resume is True:
            raise RunDirError(f"resume: run directory {run_dir} does not exist; nothing to resume")
        ckpts = run_dir / rundir.CHECKPOINTS
        resume = latest_checkpoint(ckpts, warn=warn) if exists else None
        if resume is None and cfg.resume is True:
            raise RunDirError(f"resume: {run_dir} holds no complete checkpoint to resume from")
        if resume is not None and not cfg.resume_ignore_changes:
            old = resume["state"]["config"]
            changed = diff_keys(old, cfg.to_dict(), resume_fixed_keys(cfg.to_dict()))
            if changed:
                raise RunDirError(refusal(changed, resume["path"]))
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
