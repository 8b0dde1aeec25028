"""Regression on a text (pair): one output, MSE loss, Pearson/Spearman (GLUE's STS-B)."""

from __future__ import annotations

import math
from typing import Any

from tunelab.data.sources import is_missing
from tunelab.tasks.base import Split
from tunelab.tasks.classification import ClassificationTask


class RegressionTask(ClassificationTask):
    """A score per text: the head has one output trained with MSE on ``label / label_scale``
    (STS-B's 0-5 with ``task.label_scale=5`` trains on 0-1); predictions are scaled back."""

    kind = "regression"
    extra_keys = ("text_template", "pair_template", "label_scale")

    def __init__(self, labels: list[str] | None = None, *args: Any, label_scale: float = 1.0, **kw):
        super().__init__(["score"], *args, **kw)
        self.label_scale = float(label_scale)

    def check_labels(self, labels: list[str]) -> None:
        return None

    @staticmethod
    def infer_labels(values: list[Any]) -> list[str]:
        return ["score"]

    @classmethod
    def config_extras(cls, cfg) -> dict[str, Any]:
        return {**super().config_extras(cfg), "label_scale": cfg.task.label_scale}

    def head_kwargs(self) -> dict[str, Any]:
        return {"num_labels": 1}

    def parse_label(self, raw: Any) -> tuple[Any, str | None]:
        if is_missing(raw) or (isinstance(raw, str) and not raw.strip()):
            return None, f"label ({self.label_column}) is empty"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None, f"label {raw!r} is not a number"
        if not math.isfinite(value):
            return None, f"label {raw!r} is not a finite number"
        return value / self.label_scale, None

    def label_name(self, target: Any) -> Any:
        return round(target * self.label_scale, 6)

    def loss(self, model, batch: dict[str, Any]):
        import torch.nn.functional as F

        return F.mse_loss(self._logits(model, batch)[:, 0], batch["labels"].float())

    def predict_scores(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        """Predicted scores (in the label's own scale) for every example of ``split``."""
        return [self.label_name(v) for v in self.raw_outputs(model, split, batch_size, accelerator)]

    def raw_outputs(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        return [row[0] for row in self.head_outputs(model, split, batch_size, accelerator)]

    @staticmethod
    def head_output(logits):
        """The score, as trained (``label / label_scale``; :meth:`answers` scales it back)."""
        return logits

    def answers(self, split: Split, outputs: list[list[float]]) -> list[dict[str, Any]]:
        return [{"score": self.label_name(row[0])} for row in outputs]

    def predict_texts(self, model, texts, pairs=None, batch_size=64, accelerator=None):
        """Predicted scores of texts, one per text (as a one-element list)."""
        split = self.texts_split(texts, pairs)
        return [[s] for s in self.predict_scores(model, split, batch_size, accelerator)]

    def example_losses(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        outs = self.raw_outputs(model, split, batch_size, accelerator)
        return [(o - f["labels"]) ** 2 for o, f in zip(outs, split.features)]

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        from tunelab.evaluation.metrics import regression_metrics

        preds = self.predict_scores(model, split, batch_size, accelerator)
        gold = [self.label_name(f["labels"]) for f in split.features]
        rows = [{**rec, "prediction": p} for rec, p in zip(split.records, preds)]
        return regression_metrics(gold, preds), rows
