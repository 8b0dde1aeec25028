"""Multi-task training: several tasks on one model, drawn by a mixture sampler.

A :class:`MixtureTask` holds one sub-task per mixture entry (each with its own data, template or
format and metrics) and looks like a single task to the loop: its splits are the sub-tasks'
splits laid end to end, each feature tagged with its task, its sampler is a
:class:`~tunelab.data.mixture.MixtureSampler` over them, its loss weights each task's tokens, and
its evaluation scores every task with its own metrics and adds their mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import ConfigError
from tunelab.evaluation.metrics import primary_metric
from tunelab.tasks.base import Split, Task
from tunelab.tasks.registry import build_task, get_task
from tunelab.tasks.splits import read_train_table

TASK_KEY = "task_id"
NO_FILE = "a mixture run reads each task's own data; score a file with a single-task run"


@dataclass
class MixedSplit(Split):
    """Splits of several tasks end to end; ``parts[name] = (start, stop)``."""

    parts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def part(self, name: str) -> Split:
        a, b = self.parts[name]
        return Split(f"{self.name}/{name}", self.features[a:b], self.records[a:b])


def concat_splits(name: str, splits: dict[str, Split], task_ids: dict[str, int]) -> MixedSplit:
    features, records, skipped, parts = [], [], [], {}
    for tname, s in splits.items():
        start = len(features)
        features += [{**f, TASK_KEY: task_ids[tname]} for f in s.features]
        records += [{**r, "task": tname} for r in s.records]
        skipped += [(row, f"{tname}: {why}") for row, why in s.skipped]
        parts[tname] = (start, len(features))
    return MixedSplit(name, features, records, skipped, parts)


class MixtureTask(Task):
    """Several tasks sharing one model (see the module docstring)."""

    kind = "mixture"

    def __init__(self, tasks: dict[str, Task], specs: dict[str, dict[str, Any]], mixture: dict):
        if not tasks:
            raise ConfigError("mixture.tasks is empty")
        self.tasks = tasks
        self.names = list(tasks)
        self.ids = {n: i for i, n in enumerate(self.names)}
        self.specs = specs  # name -> {metric, loss_weight, weight}
        self.mixture = dict(mixture)
        first = tasks[self.names[0]]
        self.classification = first.kind == "classification"
        if self.classification:
            # one head for all: each task owns a slice of its outputs (its own output rows;
            # BERT's pooler is shared), so the model stays a plain transformers classifier
            start = 0
            for t in tasks.values():
                t.logit_slice = (start, start + len(t.labels))
                start += len(t.labels)
            from tunelab.tasks.classification import ClassificationTask

            self.combined = ClassificationTask(
                [f"{n}:{label}" for n, t in tasks.items() for label in t.labels],
                max_length=first.max_length,
                tokenizer=first.tokenizer,
            )
        self.auto_class = first.auto_class
        self.pad_id = first.pad_id
        self.tokenizer = getattr(first, "tokenizer", None)
        self.seq2seq = getattr(first, "seq2seq", False)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, train_table, tokenizer) -> MixtureTask:
        """The mixture task of ``cfg``; its splits are read with it (:meth:`splits` gives them:
        a classification task's labels come from its training rows)."""
        tasks: dict[str, Task] = {}
        per_split: dict[str, dict[str, Split]] = {}
        specs = {}
        for spec in cfg.mixture.tasks:
            sub = cfg.spec_config(spec)
            table = read_train_table(sub)
            task = build_task(sub, tokenizer, table)
            for split_name, s in task.splits(sub, table).items():
                if len(s) == 0:
                    raise ConfigError(
                        f"mixture task {spec.name!r}: its {split_name} split is empty"
                    )
                per_split.setdefault(split_name, {})[spec.name] = s
            tasks[spec.name] = task
            specs[spec.name] = {
                "metric": primary_metric(sub.task, spec.metric),
                "loss_weight": spec.loss_weight,
                "weight": spec.weight,
            }
        mixture = cfg.mixture.model_dump(mode="json", exclude={"tasks"})
        self = cls(tasks, specs, mixture)
        # a task without a test split is simply absent from the mixed test split
        self.prepared = {
            name: concat_splits(name, parts, self.ids) for name, parts in per_split.items()
        }
        return self

    #: the splits read by :meth:`from_config`
    prepared: dict[str, MixedSplit] | None = None

    def splits(self, cfg, train_table=None) -> dict[str, MixedSplit]:
        """Every task's splits, laid end to end (train, validation, and test where given)."""
        if self.prepared is None:
            self.prepared = type(self).from_config(cfg, None, self.tokenizer).prepared
        return self.prepared

    def load_split(self, spec, name, *, hub_split="train", on_error="strict", require_labels=True):
        raise ConfigError(NO_FILE)

    def table_to_split(self, table, name, *, require_labels=True, on_error="strict"):
        raise ConfigError(NO_FILE)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> MixtureTask:
        tasks = {
            name: get_task(m["type"]).from_metadata(m, tokenizer)
            for name, m in meta["tasks"].items()
        }
        return cls(tasks, meta["specs"], meta["mixture"])

    def metadata(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "tasks": {n: t.metadata() for n, t in self.tasks.items()},
            "specs": self.specs,
            "mixture": self.mixture,
        }

    @property
    def _model_task(self) -> Task:
        return self.combined if self.classification else self.tasks[self.names[0]]

    def build_model(self, resolved, trust_remote_code: bool = False):
        return self._model_task.build_model(resolved, trust_remote_code)

    def head_modules(self, model) -> list[str]:
        return self._model_task.head_modules(model)

    # -- sampling ----------------------------------------------------------------------
    def rates(self, split: MixedSplit, phase: dict[str, Any] | None = None) -> dict[str, float]:
        """Sampling rates of the tasks, by the mixture's strategy (or one phase's)."""
        from tunelab.data.mixture import mixture_rates

        m = phase or self.mixture
        sizes = {n: b - a for n, (a, b) in split.parts.items()}
        if m["strategy"] != "weights":
            weights = None
        elif phase is not None:
            weights = phase["weights"]
        else:
            weights = {n: self.specs[n]["weight"] for n in self.names}
        return mixture_rates(sizes, m["strategy"], m["cap"], m["temperature"], weights)

    def make_sampler(
        self,
        split: MixedSplit,
        batch_size: int,
        seed: int,
        world_size: int,
        rank: int,
        total_batches: int | None = None,
    ):
        from tunelab.data.mixture import MixtureSampler

        sizes = {n: b - a for n, (a, b) in split.parts.items()}
        offsets = {n: a for n, (a, _) in split.parts.items()}
        schedule = [
            (round(ph["until"] * (total_batches or 0)), self.rates(split, ph))
            for ph in self.mixture.get("phases") or []
        ]
        return MixtureSampler(
            sizes,
            batch_size,
            self.rates(split),
            seed=seed,
            homogeneous=self.mixture["per"] == "batch",
            world_size=world_size,
            rank=rank,
            offsets=offsets,
            schedule=schedule,
        )

    # -- batches and loss ----------------------------------------------------------------
    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if self.classification:  # labels are per row; task_id comes along as a tensor
            return self.tasks[self.names[0]].collate(features)
        batch = self.tasks[self.names[0]].collate(features)
        labels = batch["labels"]
        ids = [f[TASK_KEY] for f in features]
        if "example" not in batch:  # one row per example
            task_of = torch.tensor(ids).unsqueeze(1).expand_as(labels).contiguous()
        else:  # packed: examples laid end to end in rows; "example" says whose each token is
            example = batch.pop("example")
            task_of = torch.where(example >= 0, torch.tensor(ids)[example.clamp(min=0)], -1)
        batch["label_task"] = task_of
        batch["row_tasks"] = torch.tensor(ids)
        return batch

    def _classification_loss(self, model, batch: dict[str, Any]):
        """Each row's cross-entropy over its own task's slice of the logits."""
        import torch.nn.functional as F

        from tunelab.tasks.classification import model_inputs

        logits = model(**model_inputs(batch)).logits.float()
        task_of = batch[TASK_KEY]
        total = logits.new_zeros(())
        n = len(task_of)
        for name, t in self.ids.items():
            rows = (task_of == t).nonzero().flatten()
            w = float(self.specs[name]["loss_weight"])
            if rows.numel() == 0 or w == 0:
                continue
            a, b = self.tasks[name].logit_slice
            ce = F.cross_entropy(logits[rows, a:b], batch["labels"][rows], reduction="sum")
            if self.mixture["loss_normalization"] == "task":
                total = total + w * (rows.numel() / n) * ce / rows.numel()
            else:
                total = total + w * ce / n
        if total.grad_fn is None:  # nothing learnable in this batch: keep the graph connected
            total = total + logits.sum() * 0.0
        return total

    def loss(self, model, batch: dict[str, Any]):
        if self.classification:
            return self._classification_loss(model, batch)
        first = self.tasks[self.names[0]]
        nll, target, pick = first.token_losses(model, batch)
        task_of = pick(batch["label_task"])
        valid = target != -100
        per_row = batch["row_tasks"]
        per_task_tokens = self.mixture["loss_normalization"] == "task"
        total = nll.new_zeros(())
        tokens = valid.sum().clamp(min=1)
        for name, t in self.ids.items():
            w = float(self.specs[name]["loss_weight"])
            sel = (task_of == t) & valid
            if not bool(sel.any()) or w == 0:
                continue
            s = nll[sel].sum()
            if per_task_tokens:
                share = float((per_row == t).sum()) / len(per_row)
                total = total + w * share * s / sel.sum()
            else:
                total = total + w * s / tokens
        if total.grad_fn is None:  # nothing learnable in this batch: keep the graph connected
            total = total + nll.sum() * 0.0
        return total

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, model, split: Split, batch_size: int, accelerator):
        from tunelab.evaluation.metrics import scalar_metrics

        if not isinstance(split, MixedSplit):
            raise ConfigError("a mixture run evaluates mixed splits (one part per task)")
        out: dict[str, Any] = {"tasks": {}}
        rows: list[dict[str, Any]] = []
        scores, losses = [], []
        for name in self.names:
            if name not in split.parts:
                continue
            metrics, part_rows = self.tasks[name].evaluate(
                model, split.part(name), batch_size, accelerator
            )
            out["tasks"][name] = metrics
            for k, v in scalar_metrics(metrics).items():
                out[f"{name}/{k}"] = v
            metric = self.specs[name]["metric"]
            if metric is not None:
                if metric not in metrics:
                    raise ConfigError(
                        f"mixture task {name!r}: metric {metric!r} is not produced; "
                        f"available: {', '.join(scalar_metrics(metrics))}"
                    )
                scores.append(float(metrics[metric]))
            if "loss" in metrics:
                losses.append(float(metrics["loss"]))
            rows += [{"task": name, **r} for r in part_rows]
        if scores:
            out["mean"] = sum(scores) / len(scores)
        if losses:
            out["mean_loss"] = sum(losses) / len(losses)
        out["n"] = len(split)
        return out, rows

    def generate_for(self, *args, **kwargs):
        return self.tasks[self.names[0]].generate_for(*args, **kwargs)

    def prompt_ids(self, prompt):
        return self.tasks[self.names[0]].prompt_ids(prompt)

    def generation_kwargs(self, **over):
        return self.tasks[self.names[0]].generation_kwargs(**over)
