"""Experiment trackers (``training.report_to``): Accelerate's integrations for TensorBoard,
MLflow, W&B and Trackio.

The Accelerator of a run is built with ``log_with`` (:func:`tunelab.training.precision.
make_accelerator`); :func:`start` opens the trackers' runs once the run directory is known, the
loop sends every ``metrics.jsonl`` row through :func:`log_row`, :func:`log_final` adds the
selected weights' scores and the probe deltas, and :func:`finish` closes them. Only the main
process logs (Accelerate's ``on_main_process``). Nothing here writes a tracker format by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import ConfigError

#: tracker name → the pip package it needs
PACKAGES = {
    "tensorboard": "tensorboard",
    "mlflow": "mlflow",
    "wandb": "wandb",
    "trackio": "trackio",
}


def check_installed(names: list[str]) -> None:
    """A clear error, before anything runs, for a tracker whose package is missing."""
    missing = [PACKAGES[n] for n in names if importlib.util.find_spec(PACKAGES[n]) is None]
    if missing:
        raise ConfigError(
            f"training.report_to: {', '.join(missing)} not installed; "
            f"pip install {' '.join(missing)} (or pip install 'tunelab[trackers]')"
        )
    if names:
        import accelerate
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        unknown = [n for n in names if n not in LOGGER_TYPE_TO_CLASS]
        if unknown:
            raise ConfigError(
                f"training.report_to: accelerate {accelerate.__version__} has no "
                f"{', '.join(unknown)} integration; pip install -U accelerate"
            )


def flatten(d: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts as one level of ``a.b.c`` keys; lists become JSON text (what every tracker's
    hyperparameter store accepts)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key, sep))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(v, default=str)
        else:
            out[key] = v
    return out


def row_values(row: dict[str, Any]) -> dict[str, float]:
    """A ``metrics.jsonl`` row as tracker scalars: ``train/loss``, ``validation/accuracy``,
    ``validation_before/accuracy``, ``train/mix/NAME``; text fields are left out."""
    prefix = row.get("split", "eval") if row.get("type") == "eval" else row.get("type", "log")
    body = {k: v for k, v in row.items() if k not in ("type", "split", "step")}
    out = {}
    for key, v in flatten(body, prefix, "/").items():
        if isinstance(v, bool):
            out[key] = int(v)
        elif isinstance(v, int | float):
            out[key] = v
    return out


def log_row(accelerator, row: dict[str, Any]) -> None:
    """Send one ``metrics.jsonl`` row to every started tracker, at the row's own step."""
    if accelerator.trackers:
        accelerator.log(row_values(row), step=row.get("step"))


def _wandb_mode() -> dict[str, str]:
    """Offline unless the user can reach W&B (``WANDB_MODE`` or an API key says so)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return {}
    netrc = Path.home() / ".netrc"
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return {}
    return {"mode": "offline"}


def start(cfg, accelerator, run_dir: Path, resume: dict | None, console=None) -> dict[str, Any]:
    """Open the trackers' runs of ``run_dir``; return what identifies them (kept in run.json).

    On resume the same MLflow and W&B runs continue at the checkpoint's step (TensorBoard
    purges the later steps it had); MLflow keeps the parameters it got at the start."""
    tc = cfg.training
    if not tc.report_to or not accelerator.is_main_process:
        return {}
    name = tc.tracker_run_name or run_dir.name
    folder = run_dir / rundir.TRACKERS
    folder.mkdir(parents=True, exist_ok=True)
    # TensorBoard writes to logging_dir/PROJECT: the run's own folder, known only now
    accelerator.project_configuration.logging_dir = str(folder)
    before = rundir.read_json(run_dir / rundir.RUN_INFO) if resume is not None else None
    previous = (before or {}).get("trackers", {})
    step = resume["state"]["step"] if resume is not None else None
    tags = {"tunelab.run_dir": str(Path(run_dir).resolve())}
    if tc.tracker_group:
        tags["tunelab.group"] = tc.tracker_group
    kwargs: dict[str, dict[str, Any]] = {
        "tensorboard": {"purge_step": step + 1} if step is not None else {},
        "mlflow": {"run_name": name, "tags": tags, "run_id": previous.get("mlflow_run_id")},
        "wandb": {
            "name": name,
            "group": tc.tracker_group,
            "dir": str(folder),
            "id": previous.get("wandb_run_id"),
            "resume": "allow",
            **_wandb_mode(),
        },
        "trackio": {
            "name": name,
            "group": tc.tracker_group,
            "resume": "allow" if step is not None else "never",
        },
    }
    config = flatten(cfg.to_dict())
    accelerator.init_trackers(
        tc.tracker_project,
        config=None if step is not None else config,
        init_kwargs={k: v for k, v in kwargs.items() if k in tc.report_to},
    )
    if step is not None:  # MLflow refuses a changed parameter; the others take the new config
        for t in accelerator.trackers:
            if t.name != "mlflow":
                t.store_init_configuration(config)
    ids: dict[str, Any] = {"project": tc.tracker_project, "run_name": name}
    for t in accelerator.trackers:
        if t.name == "mlflow":
            ids["mlflow_run_id"] = t.tracker.info.run_id
            ids["mlflow_experiment_id"] = t.tracker.info.experiment_id
        elif t.name == "wandb":
            ids["wandb_run_id"] = t.tracker.id
            ids["wandb_dir"] = str(t.tracker.dir)
        elif t.name == "tensorboard":
            ids["tensorboard_dir"] = str(t.logging_dir)
    if console is not None:
        console.print(f"trackers: {', '.join(tc.report_to)} (project {tc.tracker_project!r})")
    return ids


def log_final(accelerator, step: int, results: dict, probes: dict | None) -> None:
    """The selected weights' scores (``final/validation/accuracy``, ``final/test/...``) and the
    probes' before, after and delta (``probe/NAME/delta/METRIC``)."""
    if not accelerator.trackers:
        return
    values = row_values({"type": "final", **results})
    if probes:
        values.update(row_values({"type": "probe", **probes}))
    accelerator.log(values, step=step)


def log_model(cfg, accelerator, model_dir: Path) -> None:
    """The run's saved model as an artifact, where the tracker stores files (MLflow)."""
    if not cfg.training.tracker_log_model:
        return
    for t in accelerator.trackers:
        if t.name == "mlflow":
            t.log_artifacts(str(model_dir), artifact_path=rundir.MODEL)


def group_runs(cfg, group: str) -> None:
    """Group the tracker runs of one command's several runs (the stages of a pipeline, the
    per-task adapters, the entries of a comparison) under ``group``, unless the config names
    its own ``training.tracker_group``."""
    if cfg.training.report_to and cfg.training.tracker_group is None:
        cfg.training.tracker_group = group


def finish(accelerator) -> None:
    """Close every tracker's run (safe to call twice).

    Not ``Accelerator.end_training``: that also destroys the process group, which the stages
    of a pipeline, trained one after another in one process group, still need."""
    trackers = list(getattr(accelerator, "trackers", []))
    accelerator.trackers = []
    for t in trackers:
        t.finish()
