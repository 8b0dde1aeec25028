"""What ``tunelab serve`` serves: targets resolved to model groups and the names clients use.

A *group* is one model in memory; a *member* is one name in ``/v1/models``. PEFT-adapter runs
(LoRA, DoRA, IA3) that share a base model and a kind of task become one group: the base is
loaded once (:class:`~tunelab.workflows.adapters.AdapterSet`) and each run is an adapter of it,
picked per request. Every other run, and every model given by name, is a group of its own.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import ConfigError
from tunelab.methods import method_class, methods_where

GENERATION, CLASSIFICATION = "generation", "classification"
#: task types answered by ``/v1/classify`` (one forward pass through a task head)
HEAD_TASKS = ("classification", "multi_label", "regression", "token_classification")
#: task types answered by the completions endpoints (a preference run is a language model)
LM_TASKS = ("generation", "preference")
#: what PEFT calls the base model (no adapter) in ``adapter_names``
BASE_ADAPTER = "__base__"


@dataclass
class Group:
    """One model in memory, and how to run a batch on it."""

    model: Any  # the unwrapped model (a PeftModel for an adapter group)
    accelerator: Any
    kind: str  # generation | classification (any task head: see HEAD_TASKS)
    seq2seq: bool = False
    peft: bool = False  # holds named PEFT adapters (set_adapter / adapter_names)
    context: int = 2048  # the model's context window, in tokens
    #: Accelerate's mixed precision for this model ("no", "bf16", "fp16"), fixed at load time
    #: (Accelerate's own state is per process and follows whichever run loaded last)
    precision: str = "no"
    #: one lock per tokenizer use: fast tokenizers refuse concurrent use from two threads
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Member:
    """A model name that requests give in ``model``."""

    name: str
    group: Group
    task: Any
    adapter: str | None = None  # the PEFT adapter of ``group.model``; None: the model itself
    mixed: bool = False  # shares a batch with other adapters of its group (adapter_names)
    run_dir: Path | None = None
    method: str | None = None
    base_model: str = ""

    @property
    def kind(self) -> str:
        return self.group.kind

    @property
    def endpoint(self) -> str:
        """Where requests for this model go."""
        return "/v1/classify" if self.kind == CLASSIFICATION else "/v1/chat/completions"

    @property
    def tokenizer(self):
        return self.task.tokenizer

    def batch_key(self, *extra: Any) -> tuple:
        """Requests with equal keys may go through the model together."""
        lane = "mixed" if self.mixed else self.adapter
        return (id(self.group), lane, *extra)

    def describe(self) -> dict[str, Any]:
        """The extra fields of this model's ``/v1/models`` entry."""
        return {
            "task": self.task.kind,
            "run": str(self.run_dir) if self.run_dir else None,
            "method": self.method,
            "adapter": self.adapter is not None,
            "base_model": self.base_model,
            "labels": list(self.task.labels) if self.kind == CLASSIFICATION else None,
            "endpoint": self.endpoint,
        }


def parse_targets(items: list[str]) -> dict[str, str]:
    """``TARGET`` arguments as ``{name: run dir or model}``: ``NAME=TARGET`` names one, a run
    directory is named by its folder, a model by what was given."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, target = item.partition("=")
        if not sep or not name or "/" in name or os.sep in name:
            target = item
            name = Path(item).name if rundir.is_run_dir(item) else item
        if not target:
            raise ConfigError(f"serve: {item!r} names no target")
        if name in out:
            raise ConfigError(f"serve: two targets are named {name!r}; name them: NAME=TARGET")
        out[name] = target
    if not out:
        raise ConfigError("serve: give at least one target (a run directory or a model)")
    return out


def context_window(model, tokenizer) -> int:
    """The longest token sequence the model takes (prompt and generated tokens together)."""
    conf = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(conf, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 2048


def _kind(task) -> str:
    """The endpoint family of a run's task: GENERATION or CLASSIFICATION."""
    if task.kind in LM_TASKS:
        return GENERATION
    if task.kind in HEAD_TASKS:
        return CLASSIFICATION
    hint = "serve the runs of its tasks" if task.kind == "mixture" else "use `tunelab predict`"
    raise ConfigError(
        f"serve: a {task.kind} run cannot be served ({hint}); serve runs of "
        f"{', '.join(LM_TASKS + HEAD_TASKS)}"
    )


def _unwrapped(model, accelerator):
    return accelerator.unwrap_model(model) if accelerator is not None else model


def _group_key(run) -> str:
    """Runs with equal keys load as adapters of one base model."""
    from peft import PeftConfig

    from tunelab.workflows.adapters import adapter_kind

    info, task = run.info, run.task
    peft_type = str(PeftConfig.from_pretrained(str(run.run_dir / rundir.MODEL)).peft_type)
    # what AdapterSet asks of adapters side by side (an SFT and a DPO adapter are both an LM's)
    shared: Any = adapter_kind(info["task"])
    if task.kind in HEAD_TASKS:  # one head shape: the same labels and columns
        shared = info["task"]
    return json.dumps([info["model"]["path"], peft_type, shared], sort_keys=True, default=str)


def _heads_can_mix(model) -> bool:
    """Whether PEFT can mix adapters in one batch through every fully trained module (a task
    head kept per adapter): its mixed batches take only these layer types (a BERT pooler is
    not one of them, so a BERT classifier's adapters run in batches of their own)."""
    import torch
    from peft.utils import ModulesToSaveWrapper

    mixable = (
        torch.nn.Linear,
        torch.nn.Embedding,
        torch.nn.Conv1d,
        torch.nn.Conv2d,
        torch.nn.Conv3d,
    )
    wrappers = [m for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]
    return all(isinstance(w.original_module, mixable) for w in wrappers)


def _precision(cfg) -> str:
    from tunelab.training.precision import choose_precision

    return choose_precision(cfg.training.precision)


def _adapter_groups(runs: dict[str, Any], trust_remote_code: bool, precision) -> list[Member]:
    from tunelab.workflows.adapters import AdapterSet

    by_key: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        by_key.setdefault(_group_key(run), {})[name] = run
    members = []
    for named in by_key.values():
        if any(not n or "/" in n or n.startswith(".") for n in named):
            raise ConfigError(f"serve: adapter names must be plain words, not {sorted(named)}")
        folders = {n: r.run_dir for n, r in named.items()}
        adapters = AdapterSet(folders, trust_remote_code, precision)
        first = next(iter(adapters.opened.values()))
        model = adapters.model.to(first.accelerator.device).eval()
        group = Group(
            model,
            first.accelerator,
            _kind(first.task),
            bool(getattr(first.task, "seq2seq", False)),
            peft=True,
            context=context_window(model, first.task.tokenizer),
            precision=_precision(first.config),
        )
        can_mix = _heads_can_mix(model)
        for name, run in adapters.opened.items():
            members.append(
                Member(
                    name,
                    group,
                    run.task,
                    adapter=name,
                    mixed=can_mix and method_class(run.config.method).mixed_adapter_batches,
                    run_dir=run.run_dir,
                    method=run.config.method,
                    base_model=run.info["model"]["name"],
                )
            )
    return members


def _single(name: str, target: str, trust_remote_code: bool, precision) -> Member:
    from tunelab.workflows.generate import load_generation_target
    from tunelab.workflows.runs import load_run

    if rundir.is_run_dir(target):
        run = load_run(target, trust_remote_code, precision)
        model = _unwrapped(run.model, run.accelerator)
        kind = _kind(run.task)
        group = Group(model, run.accelerator, kind, bool(getattr(run.task, "seq2seq", False)))
        group.context = context_window(model, run.task.tokenizer)
        group.precision = _precision(run.config)
        return Member(
            name,
            group,
            run.task,
            run_dir=run.run_dir,
            method=run.config.method,
            base_model=run.info["model"]["name"],
        )
    t = load_generation_target(target, trust_remote_code, precision=precision)
    model = _unwrapped(t.model, t.accelerator)
    group = Group(model, t.accelerator, GENERATION, bool(getattr(t.task, "seq2seq", False)))
    group.context = context_window(model, t.tokenizer)
    group.precision = _precision(t.config)
    return Member(name, group, t.task, base_model=target)


def load_targets(
    items: list[str], trust_remote_code: bool = False, precision: str | None = None
) -> dict[str, Member]:
    """Load every target once (adapter runs of one base share it): ``{model name: Member}``.
    ``precision`` (fp32, bf16, auto) overrides each run's own ``training.precision``."""
    from tunelab.workflows.runs import open_run

    named = parse_targets(items)
    peft_methods = methods_where(saves_peft_adapter=True)
    adapter_runs, others = {}, {}
    for name, target in named.items():
        if rundir.is_run_dir(target):
            run = open_run(target, trust_remote_code, precision)
            _kind(run.task)
            if run.config.method in peft_methods:
                adapter_runs[name] = run
                continue
        others[name] = target
    members = {m.name: m for m in _adapter_groups(adapter_runs, trust_remote_code, precision)}
    for name, target in others.items():
        members[name] = _single(name, target, trust_remote_code, precision)
    return {name: members[name] for name in named}  # in the order given
