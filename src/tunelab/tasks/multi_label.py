"""Multi-label classification: any subset of named labels per text (sigmoid + BCE)."""

from __future__ import annotations

from typing import Any

from tunelab.data.sources import is_missing
from tunelab.tasks.base import Split
from tunelab.tasks.classification import ClassificationTask, infer_labels, label_key


def label_list(value: Any) -> list[Any] | None:
    """A row's labels: a list, or a string of labels separated by `|` or `,`."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        sep = "|" if "|" in value else ","
        return [v.strip() for v in value.split(sep) if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


class MultiLabelTask(ClassificationTask):
    """Each label is a yes/no output: trained with binary cross-entropy on the sigmoid, and
    predicted where its probability is at least 0.5 (an empty set is a valid answer)."""

    kind = "multi_label"

    @staticmethod
    def infer_labels(values: list[Any]) -> list[str]:
        return infer_labels([v for value in values for v in label_list(value) or []])

    def head_kwargs(self) -> dict[str, Any]:
        return {**super().head_kwargs(), "problem_type": "multi_label_classification"}

    def parse_label(self, raw: Any) -> tuple[Any, str | None]:
        values = label_list(raw)
        if values is None:
            return None, f"labels ({self.label_column}) are missing"
        target = [0] * len(self.labels)
        for v in values:
            i = self.label2id.get(label_key(v))
            if i is None:
                return None, f"label {v!r} is not one of {self.labels}"
            target[i] = 1
        return target, None

    def label_name(self, target: Any) -> Any:
        return [name for name, on in zip(self.labels, target) if on]

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Token fields padded; ``labels`` (one 0/1 per label, not per token) stacked."""
        import torch

        from tunelab.data.batching import pad_collate

        plain = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        out = pad_collate(plain, self.pad_id)
        if "labels" in features[0]:
            out["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float)
        return out

    def loss(self, model, batch: dict[str, Any]):
        import torch.nn.functional as F

        logits = self._logits(model, batch)
        return F.binary_cross_entropy_with_logits(logits, batch["labels"].float())

    @staticmethod
    def head_output(logits):
        """Each label's own probability (a sigmoid, not a softmax over labels)."""
        return logits.sigmoid()

    def answers(self, split: Split, outputs: list[list[float]]) -> list[dict[str, Any]]:
        return [
            {
                "labels": [n for n, q in zip(self.labels, p) if q >= 0.5],
                "probabilities": {n: round(q, 6) for n, q in zip(self.labels, p)},
            }
            for p in outputs
        ]

    def example_losses(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        import math

        probs = self.predict_proba(model, split, batch_size, accelerator)
        return [
            -sum(math.log(max(q if y else 1 - q, 1e-12)) for q, y in zip(p, f["labels"])) / len(p)
            for p, f in zip(probs, split.features)
        ]

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        from tunelab.evaluation.metrics import multi_label_metrics

        probs = self.predict_proba(model, split, batch_size, accelerator)
        pred = [[int(q >= 0.5) for q in p] for p in probs]
        gold = [f["labels"] for f in split.features]
        rows = [
            {**rec, "prediction": self.label_name(p), "correct": p == g}
            for rec, p, g in zip(split.records, pred, gold)
        ]
        return multi_label_metrics(gold, pred, self.labels), rows
