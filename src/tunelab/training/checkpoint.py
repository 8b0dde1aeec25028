"""Complete, crash-safe checkpoints in safetensors + JSON (no pickle anywhere).

A checkpoint folder ``checkpoints/step-000120/`` holds the trainable weights, the optimizer
state, the scheduler, every process's RNG states, the sampler position and the loop counters.
It is written in a temporary folder and renamed into place; the ``COMPLETE`` marker, written
last, is what makes it eligible for resume.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import RunDirError
from tunelab.training.faults import fault_point
from tunelab.utils.io import atomic_directory

MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d+)$")


# -- RNG ---------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states of this process, as JSON-able values."""
    import torch

    py = random.getstate()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": _np_state_to_json(np.random.get_state()),
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    np.random.set_state(_np_state_from_json(state["numpy"]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _np_state_to_json(s: tuple) -> list:
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]


def _np_state_from_json(s: list) -> tuple:
    return (s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4])


# -- optimizer ----------------------------------------------------------------------------
def optimizer_to_safe(opt_state: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and the rest (JSON)."""
    import torch

    tensors, meta = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for pid, st in opt_state["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
                meta["state"][str(pid)][k] = "__tensor__"
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def optimizer_from_safe(tensors: dict[str, Any], meta: dict[str, Any]) -> dict:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {
            k: (tensors[f"{pid}.{k}"] if v == "__tensor__" else v) for k, v in st.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


# -- folders --------------------------------------------------------------------------------
def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / MARKER).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def save_checkpoint(
    root: Path,
    step: int,
    *,
    weights: dict[str, Any],
    optimizer_state: dict,
    scheduler_state: dict,
    rng_states: list[dict],
    loop_state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write a complete checkpoint atomically and prune old ones (newest ``keep_last`` kept)."""
    from safetensors.torch import save_file

    final = step_dir(root, step)
    opt_tensors, opt_meta = optimizer_to_safe(optimizer_state)
    try:
        with atomic_directory(final) as tmp:
            save_file(
                {k: v.contiguous().cpu() for k, v in weights.items()},
                str(tmp / "weights.safetensors"),
            )
            fault_point("checkpoint:weights", step)
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
            fault_point("checkpoint:optimizer", step)
            (tmp / "scheduler.json").write_text(json.dumps(scheduler_state))
            (tmp / "rng.json").write_text(json.dumps(rng_states))
            (tmp / "state.json").write_text(json.dumps(loop_state, indent=2))
            fault_point("checkpoint:state", step)
            (tmp / MARKER).write_text(f"step {step}\n")
            fault_point("checkpoint:marker", step)
    except OSError as e:
        raise RunDirError(
            f"could not write checkpoint {final} ({e.strerror or e}); the previous checkpoint "
            "is untouched. Free disk space or fix permissions, then resume."
        ) from None
    for old in complete_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial(root: Path) -> None:
    """Delete folders left by checkpoint writes that a crash interrupted."""
    if root.is_dir():
        for p in root.glob(".step-*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint folder; raise :class:`RunDirError` when any part is unreadable."""
    from safetensors.torch import load_file

    try:
        if not (path / MARKER).is_file():
            raise RunDirError(f"checkpoint {path} is incomplete (no {MARKER} marker)")
        return {
            "weights": load_file(str(path / "weights.safetensors")),
            "optimizer": optimizer_from_safe(
                load_file(str(path / "optimizer.safetensors")),
                json.loads((path / "optimizer.json").read_text()),
            ),
            "scheduler": json.loads((path / "scheduler.json").read_text()),
            "rng": json.loads((path / "rng.json").read_text()),
            "state": json.loads((path / "state.json").read_text()),
            "path": str(path),
        }
    except RunDirError:
        raise
    except Exception as e:  # safetensors / JSON raise assorted types on corrupt files
        raise RunDirError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None


def latest_checkpoint(root: Path, warn=None) -> dict[str, Any] | None:
    """Load the newest complete, readable checkpoint; fall back to older ones when corrupt."""
    for path in reversed(complete_checkpoints(root)):
        try:
            return load_checkpoint(path)
        except RunDirError as e:
            if warn:
                warn(f"{e}; trying the previous checkpoint")
    return None
