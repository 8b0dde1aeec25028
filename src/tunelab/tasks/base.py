"""The task seam: preprocessing, loss, prediction and metrics. The loop knows only this.

:class:`Task` declares every member that code outside ``tasks/`` calls. Members that only some
kinds of task have (classifying texts, generating) answer with a clear error by default."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import ConfigError


@dataclass
class Split:
    """A tokenized split: model features plus the source rows they came from."""

    name: str
    features: list[dict[str, Any]]
    records: list[dict[str, Any]]  # what predictions files show next to each prediction
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)


class Task(ABC):
    """One kind of learning problem, registered by ``kind`` (see :mod:`tunelab.tasks.registry`)."""

    kind: str
    #: transformers auto class that builds the model with this task's head
    auto_class: str
    pad_id: int = 0
    tokenizer: Any = None

    # -- construction and the run directory --------------------------------------------------
    @classmethod
    @abstractmethod
    def from_config(cls, cfg, train_table, tokenizer) -> Task:
        """The task a config describes (``train_table``: the training rows, for label names)."""

    @classmethod
    @abstractmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> Task:
        """Rebuild the task of a finished run from its :meth:`metadata`."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """What a later command needs to rebuild this task (saved in run.json)."""

    # -- model ---------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, resolved, trust_remote_code: bool = False):
        """Load the pretrained model with this task's head."""

    @abstractmethod
    def head_modules(self, model) -> list[str]:
        """Names of the newly initialised head modules (trained by every method)."""

    # -- data ----------------------------------------------------------------------------------
    def load_split(
        self,
        spec: str,
        name: str,
        *,
        hub_split: str = "train",
        on_error: str = "strict",
        require_labels: bool = True,
        columns: list[str] | None = None,
    ) -> Split:
        """Read a data file (or hub dataset) and tokenize it (``columns``: a header-less
        file's column names)."""
        from tunelab.data.sources import read_table

        table = read_table(spec, split=hub_split, on_error=on_error, defer=True, columns=columns)
        return self.table_to_split(table, name, require_labels=require_labels, on_error=on_error)

    @abstractmethod
    def table_to_split(
        self, table, name: str, *, require_labels: bool = True, on_error: str = "strict"
    ) -> Split:
        """Tokenize rows already read."""

    def splits(self, cfg, train_table=None) -> dict[str, Split]:
        """Train/validation(/test) splits of ``cfg`` for this task."""
        from tunelab.tasks.splits import single_task_splits

        return single_task_splits(cfg, self, train_table)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        from tunelab.data.batching import pad_collate

        return pad_collate(features, self.pad_id)

    def make_sampler(
        self,
        split: Split,
        batch_size: int,
        seed: int,
        world_size: int,
        rank: int,
        total_batches: int | None = None,
    ):
        """A task-specific training sampler (a mixture's), or None for the loop's default."""
        return None

    # -- training and evaluation ---------------------------------------------------------------
    def prepare_training(
        self, model, method, splits, run_dir, accelerator, resume, batch_size: int
    ) -> None:
        """Called once before training (and before the first evaluation): a preference task
        sets up its reference model here. Nothing by default."""
        return None

    def prepare_evaluation(self, model, method, accelerator) -> None:
        """Called before a finished run's model is scored (``tunelab eval``). Nothing by
        default."""
        return None

    @abstractmethod
    def loss(self, model, batch: dict[str, Any]):
        """Mean loss of a batch, as a scalar tensor."""

    @abstractmethod
    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        """Metrics and per-example predictions (gathered on every process)."""

    def example_losses(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        """The loss of every example (a curriculum's difficulty)."""
        raise ConfigError(f"curriculum.by=loss: a {self.kind} task has no per-example loss")

    # -- use ---------------------------------------------------------------------------------------
    def predict_texts(
        self,
        model,
        texts: list[str],
        pairs: list[str] | None = None,
        batch_size: int = 64,
        accelerator=None,
    ) -> list[list[float]]:
        """Class probabilities of texts (classification tasks)."""
        raise ConfigError(f"a {self.kind} run does not classify texts: use `tunelab generate`")

    def predict_records(self, model, split: Split, batch_size: int, accelerator) -> list[dict]:
        """Each record of an unlabelled split with this task's prediction (``tunelab predict``)."""
        raise ConfigError(f"a {self.kind} run does not predict labels: use `tunelab generate`")

    def prompt_ids(self, prompt: str | list[dict[str, str]]) -> list[int]:
        """Token ids of a prompt as the model sees it (generation tasks)."""
        raise ConfigError(f"a {self.kind} run does not generate text")

    def generate_for(
        self, model, prompts: list[list[int]], batch_size: int, accelerator, **over: Any
    ) -> list[str]:
        """Continuations of tokenized prompts (generation tasks)."""
        raise ConfigError(f"a {self.kind} run does not generate text")
