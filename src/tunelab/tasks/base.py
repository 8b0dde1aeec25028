"""The task seam: preprocessing, loss, prediction and metrics. The loop knows only this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


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
    """One kind of learning problem. Subclasses register in :func:`tunelab.tasks.get_task`."""

    kind: str
    #: transformers auto class that builds the model with this task's head
    auto_class: str

    @abstractmethod
    def build_model(self, resolved, trust_remote_code: bool = False):
        """Load the pretrained model with this task's head."""

    @abstractmethod
    def head_modules(self, model) -> list[str]:
        """Names of the newly initialised head modules (trained by every method)."""

    @abstractmethod
    def loss(self, model, batch: dict[str, Any]):
        """Mean loss of a batch, as a scalar tensor."""

    @abstractmethod
    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        """Metrics and per-example predictions (gathered on every process)."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """What a later command needs to rebuild this task (saved in run.json)."""

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        from tunelab.data.batching import pad_collate

        return pad_collate(features, self.pad_id)

    pad_id: int = 0
