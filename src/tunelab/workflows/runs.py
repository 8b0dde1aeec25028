"""Using a finished run: load it, score it, predict with it, merge it into a plain model."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.config import RunConfig, load_config
from tunelab.errors import ConfigError, DataError, RunDirError, TunelabError
from tunelab.methods import get_method
from tunelab.tasks import build_task, load_splits
from tunelab.training.precision import make_accelerator
from tunelab.utils.io import atomic_directory
from tunelab.utils.memory import retain_freed_memory


@dataclass
class LoadedRun:
    """A finished run, ready for evaluation or prediction."""

    run_dir: Path
    config: RunConfig
    task: Any
    model: Any
    accelerator: Any
    info: dict[str, Any]


@dataclass
class OpenedRun:
    """A completed run's config, run.json, resolved base model, accelerator and task (the
    model itself not loaded yet)."""

    run_dir: Path
    config: RunConfig
    info: dict[str, Any]
    resolved: Any
    accelerator: Any
    task: Any


def open_run(
    run_dir: str | os.PathLike, trust_remote_code: bool = False, precision: str | None = None
) -> OpenedRun:
    """Read a completed run directory (no weights loaded); ``precision`` overrides the run's
    ``training.precision`` for scoring (fp32, bf16, auto)."""
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import ResolvedModel, resolve_model

    run_dir = Path(run_dir)
    info = rundir.read_info(run_dir)
    if info.get("status") != "completed" or not (run_dir / rundir.MODEL).is_dir():
        raise RunDirError(
            f"{run_dir}: the run did not complete (status {rundir.run_status(info)!r}); "
            "resume it with resume=true"
        )
    cfg = load_config(run_dir / rundir.CONFIG)
    cfg.training.progress = False
    cfg.model.trust_remote_code = trust_remote_code
    if precision:
        cfg.training.precision = precision
    m = info["model"]
    try:
        resolved = resolve_model(cfg.model.name, cfg.model.revision)
    except TunelabError:
        resolved = ResolvedModel(m["name"], m["source"], m["path"], m.get("gguf_file"))
    accelerator = make_accelerator(cfg)
    tokenizer = load_tokenizer(ResolvedModel(m["name"], "local", str(run_dir / rundir.MODEL)))
    task = build_task(cfg, tokenizer, meta=info["task"])
    return OpenedRun(run_dir, cfg, info, resolved, accelerator, task)


def load_run(
    run_dir: str | os.PathLike, trust_remote_code: bool = False, precision: str | None = None
) -> LoadedRun:
    """Load a completed run's model (base + method weights) and task.

    ``trust_remote_code`` comes from the caller only: a run directory's own config cannot turn
    it on (a run directory may come from someone else).
    """
    run = open_run(run_dir, trust_remote_code, precision)
    method = get_method(run.config.method)
    base = run.task.build_model(run.resolved, trust_remote_code)
    folder = run.run_dir / rundir.MODEL
    try:
        model = method.load(base, folder)
    except Exception as e:  # peft / transformers / safetensors raise many types on a bad folder
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise RunDirError(f"cannot load the trained model in {folder}: {msg}") from None
    model = run.accelerator.prepare(model)
    model.eval()
    return LoadedRun(run.run_dir, run.config, run.task, model, run.accelerator, run.info)


def loaded(
    run: str | os.PathLike | LoadedRun,
    trust_remote_code: bool = False,
    precision: str | None = None,
) -> LoadedRun:
    """``run`` itself when it is already loaded, else :func:`load_run`."""
    return run if isinstance(run, LoadedRun) else load_run(run, trust_remote_code, precision)


def eval_batch_size(cfg: RunConfig, given: int | None = None) -> int:
    return given or cfg.training.eval_batch_size or 2 * cfg.training.batch_size


def evaluate_to_file(
    run_dir: str | os.PathLike | LoadedRun,
    split: str = "validation",
    file: str | None = None,
    columns: dict[str, str] | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
) -> tuple[dict[str, Any], Path]:
    """:func:`evaluate`, also returning the path of the results it wrote."""
    run = loaded(run_dir, trust_remote_code)
    cfg = run.config
    task = copy.copy(run.task)  # other columns for this file only; the run's task is unchanged
    for key, col in (columns or {}).items():
        setattr(task, key, col)
    if file:
        data = task.load_split(file, Path(file).stem, on_error=cfg.data.on_error)
        name = f"file-{Path(file).stem}"
    else:
        if split not in ("train", "validation", "test"):
            raise ConfigError(f"--split must be train, validation or test, not {split!r}")
        if split == "test" and not (cfg.data.test or cfg.data.test_fraction):
            raise DataError(
                "this run has no test data (data.test or data.test_fraction); pass --file instead"
            )
        data = load_splits(cfg, task)[split]
        name = split
    task.prepare_evaluation(run.model, get_method(run.info["method"]), run.accelerator)
    retain_freed_memory()  # scoring's batches reuse freed blocks instead of faulting pages in
    metrics, rows = task.evaluate(
        run.model, data, eval_batch_size(cfg, batch_size), run.accelerator
    )
    path = rundir.eval_path(run.run_dir, name)
    if run.accelerator.is_main_process:
        rundir.write_eval(run.run_dir, name, metrics, rows, True)
    return metrics, path


def evaluate(
    run_dir: str | os.PathLike | LoadedRun,
    split: str = "validation",
    file: str | None = None,
    columns: dict[str, str] | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Score a finished run (a directory or a :class:`LoadedRun`) on one of its splits or on any
    labelled file; write the results to ``RUN/eval/`` and return the metrics."""
    return evaluate_to_file(run_dir, split, file, columns, batch_size, trust_remote_code)[0]


def predict(
    run_dir: str | os.PathLike | LoadedRun,
    texts: list[str] | None = None,
    file: str | None = None,
    text_pairs: list[str] | None = None,
    batch_size: int = 64,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Labels with probabilities for texts (or a file's text column), in input order."""
    run = loaded(run_dir, trust_remote_code)
    task = run.task
    if task.kind in ("generation", "mixture"):
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
        split = task.texts_split(texts, text_pairs)
    return task.predict_records(run.model, split, batch_size, run.accelerator)


def merge(
    run_dir: str | os.PathLike, output: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Fold a run's adapter into its base model and save a plain transformers folder.

    Returns the folder that holds the merged model: ``RUN_DIR/merged`` (or ``output``) for
    LoRA, DoRA and IA3, and ``RUN_DIR/model`` itself for methods that already save a full model.
    """
    run_dir = Path(run_dir)
    with rundir.claim(run_dir, "tunelab merge"):  # nothing else writes into the run meanwhile
        run = load_run(run_dir)
        method = get_method(run.config.method)
        merged = method.merge(run.accelerator.unwrap_model(run.model))
        if merged is None:
            return run.run_dir / rundir.MODEL
        target = Path(output) if output else run.run_dir / rundir.MERGED
        if target.exists() and not overwrite:
            raise RunDirError(
                f"{target} already exists; pass --overwrite (overwrite=True) to replace it"
            )
        with atomic_directory(target) as tmp:
            merged.save_pretrained(tmp, safe_serialization=True)
            rundir.copy_tokenizer_files(run.run_dir / rundir.MODEL, tmp)
        return target


def merged_auto_class(run_dir: str | os.PathLike) -> str:
    """The transformers auto class that loads a run's merged model."""
    task = rundir.read_info(run_dir)["task"]
    if task["type"] in ("generation", "preference"):  # a preference run is a language model
        return "AutoModelForSeq2SeqLM" if task.get("seq2seq") else "AutoModelForCausalLM"
    if task["type"] in ("token_classification", "multiple_choice"):
        from tunelab.tasks import get_task

        return get_task(task["type"]).auto_class
    return "AutoModelForSequenceClassification"
