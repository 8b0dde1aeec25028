"""Generation from a finished run or a plain model: the one loader of a generation target,
batched generation, prompts from a file, and chat turns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.config import RunConfig, load_config
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import build_task
from tunelab.training.precision import make_accelerator
from tunelab.workflows.runs import LoadedRun, loaded


@dataclass
class GenerationTarget:
    """A model that generates: a finished generation run, or a model by name/path/hub id
    (its task: ``prompt_completion`` generation with the model's chat template)."""

    name: str
    config: RunConfig
    task: Any
    model: Any
    accelerator: Any
    run: LoadedRun | None = None

    @property
    def tokenizer(self):
        return self.task.tokenizer


def load_generation_target(
    target: str | os.PathLike | LoadedRun,
    trust_remote_code: bool = False,
    allow_classifier: bool = False,
    precision: str | None = None,
) -> GenerationTarget:
    """Load what ``target`` names. A run's own kind is kept; a finished classification run is
    refused unless ``allow_classifier`` (suites score classifiers through their head).
    ``precision`` (fp32, bf16, auto) overrides the run's or the default ``auto``."""
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model

    if isinstance(target, LoadedRun) or rundir.is_run_dir(target):
        run = loaded(target, trust_remote_code, precision)
        if run.task.kind == "classification" and not allow_classifier:
            raise ConfigError(
                f"{run.run_dir} is a {run.task.kind} run; generate needs a generation run "
                "(or a model name)"
            )
        return GenerationTarget(
            run.run_dir.name, run.config, run.task, run.model, run.accelerator, run
        )
    name = str(target)
    cfg = load_config(
        {
            "model": {"name": name, "trust_remote_code": trust_remote_code},
            "task": {"type": "generation", "format": "prompt_completion"},
            "training": {"progress": False, "precision": precision or "auto"},
        }
    )
    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    tokenizer = load_tokenizer(resolved, trust_remote_code)
    task = build_task(cfg, tokenizer)
    try:
        model = task.build_model(resolved, trust_remote_code)
    except (ValueError, KeyError) as e:  # an encoder has no LM head: transformers says so
        raise ConfigError(
            f"{name} is not a language model ({type(e).__name__}); a classifier is used "
            "through a finished run: tunelab eval RUN_DIR ..."
        ) from None
    accelerator = make_accelerator(cfg)
    return GenerationTarget(name, cfg, task, accelerator.prepare(model).eval(), accelerator)


def generate(
    target: str | os.PathLike | LoadedRun | GenerationTarget,
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
    t = (
        target
        if isinstance(target, GenerationTarget)
        else load_generation_target(target, trust_remote_code)
    )
    ids = [t.task.prompt_ids(p) for p in prompts]
    return t.task.generate_for(t.model, ids, batch_size, t.accelerator, **generation)


def read_prompts(file: str | os.PathLike, column: str = "prompt") -> list[str]:
    """The prompts of a data file's ``column`` (every row must hold a non-empty text)."""
    from tunelab.data.sources import read_table
    from tunelab.data.templates import get_path

    table = read_table(str(file))
    prompts = [get_path(r, column) for r in table.rows]
    bad = [i for i, p in zip(table.row_ids, prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise DataError(f"{file}: column {column!r} is missing or empty in rows {bad[:5]}")
    return prompts


@dataclass
class Chat:
    """A conversation with a generation target: ``reply(text)`` adds a turn and answers it."""

    target: GenerationTarget
    generation: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)

    def reply(self, text: str) -> str:
        """The model's answer to one more user message (kept in :attr:`history`)."""
        if not text.strip():
            raise DataError("a chat message must not be empty")
        self.history.append({"role": "user", "content": text})
        task = self.target.task
        use_chat = getattr(task, "use_chat", False)
        prompt = self.history if use_chat else "\n".join(m["content"] for m in self.history)
        ids = task.prompt_ids(prompt)
        answer = task.generate_for(
            self.target.model, [ids], 1, self.target.accelerator, **self.generation
        )[0]
        self.history.append({"role": "assistant", "content": answer})
        return answer

    def reset(self) -> None:
        """Forget the conversation."""
        self.history = []


def chat(
    target: str | os.PathLike | LoadedRun, trust_remote_code: bool = False, **generation: Any
) -> Chat:
    """A :class:`Chat` with a finished generation run or a model (the CLI's ``tunelab chat``)."""
    return Chat(load_generation_target(target, trust_remote_code), dict(generation))


def output_exists(path: str | os.PathLike | None, overwrite: bool) -> None:
    """Refuse to replace an output file unless asked."""
    from tunelab.errors import RunDirError

    if path and Path(path).exists() and not overwrite:
        raise RunDirError(f"{path} exists; pass --overwrite to replace it")
