"""``tunelab export``: a finished run as what other servers load.

- ``merged``: a plain transformers folder (vLLM, TGI, ``transformers serve`` load it as is):
  the run's adapter folded into its base by :func:`tunelab.workflows.runs.merge` (LoRA, DoRA,
  IA3, BitFit), or a copy of the full model (full, freeze). Methods that add computation no
  base weight can absorb (bottleneck adapters, prefix and prompt tuning) are refused, with why.
- ``adapter``: the run's PEFT adapter folder with its tokenizer (vLLM's ``--lora-modules``,
  ``PeftModel.from_pretrained``), for the methods that save one (LoRA, DoRA, IA3).

The output is written to a temporary sibling folder and renamed into place; an existing one is
replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tunelab import rundir
from tunelab.errors import ConfigError, RunDirError
from tunelab.methods import method_class, methods_where
from tunelab.utils.io import atomic_directory
from tunelab.workflows.runs import merge, open_run

#: the export formats (names of formats, not of methods)
MERGED = "merged"
PEFT_ADAPTER = "adapter"
FORMATS = (MERGED, PEFT_ADAPTER)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _refusal(method: str) -> str:
    cls = method_class(method)
    why = getattr(cls, "merge_refusal", "") or "it has no merge into the base model"
    return f"method {method} cannot be exported as a plain transformers model: {why}"


def _check_adapter_folder(folder: Path) -> str:
    """The base model an intact PEFT adapter folder names (its config and weights must load)."""
    from peft import PeftConfig
    from safetensors import safe_open

    missing = [f for f in ADAPTER_FILES if not (folder / f).is_file()]
    if missing:
        raise RunDirError(f"{folder} is not a complete PEFT adapter folder: {missing} missing")
    try:
        config = PeftConfig.from_pretrained(str(folder))
        with safe_open(str(folder / ADAPTER_FILES[1]), framework="pt") as fh:
            if not list(fh.keys()):
                raise ValueError("the adapter holds no tensors")
    except Exception as e:  # peft and safetensors raise many types on a damaged folder
        raise RunDirError(f"{folder} holds a damaged PEFT adapter: {e}") from None
    return str(config.base_model_name_or_path or "")


def export_run(
    run_dir: str | os.PathLike,
    output: str | os.PathLike,
    format: str = MERGED,
    overwrite: bool = False,
) -> Path:
    """Write a finished run as a plain transformers folder (``merged``) or a PEFT adapter
    folder (``adapter``) at ``output``; returns ``output``."""
    if format not in FORMATS:
        raise ConfigError(f"export: --format must be one of {', '.join(FORMATS)}, not {format!r}")
    run_dir, out = Path(run_dir), Path(output)
    run = open_run(run_dir)  # a completed run (a clear error otherwise)
    method = run.config.method
    source = (run_dir / rundir.MODEL).resolve()
    if out.resolve() == run_dir.resolve() or out.resolve().is_relative_to(source):
        raise ConfigError(f"export: --output {out} would replace the run's own files")
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    if format == PEFT_ADAPTER:
        if method not in methods_where(saves_peft_adapter=True):
            hint = (
                "export --format merged instead"
                if method_class(method).mergeable
                else _refusal(method) + ", nor as an adapter"
            )
            raise ConfigError(
                f"{run_dir}: method {method} saves no PEFT adapter (tunelab's own format); {hint}"
            )
        _check_adapter_folder(source)
        with atomic_directory(out) as tmp:
            for f in source.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return out
    if not method_class(method).mergeable:
        raise ConfigError(
            f"{run_dir}: {_refusal(method)}. Serve it with tunelab instead: tunelab serve {run_dir}"
        )
    folder = merge(run_dir, out, overwrite=True)  # the existence check was done above
    if folder.resolve() == source:  # the run saved a full model already: copy it
        with atomic_directory(out) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    return out


def base_model_of(folder: str | os.PathLike) -> str | None:
    """The base model a PEFT adapter folder names (None for a plain model folder)."""
    path = Path(folder) / ADAPTER_FILES[0]
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
