"""Task metrics (computed by scikit-learn), and the one place that names them.

Every list of metric names (which are lower-better, which a table shows, which score enters a
mixture's mean or a suite's headline) is here; other modules import them."""

from __future__ import annotations

from typing import Any

#: metrics where lower is better (everything else: higher is better)
LOWER_IS_BETTER = {
    "loss",
    "eval_loss",
    "perplexity",
    "word_perplexity",
    "bits_per_byte",
    "mean_loss",
}


#: the headline score of a task, by the first of its ``task.metrics``
PRIMARY = {
    "rouge": "rougeL",
    "bleu": "bleu",
    "chrf": "chrf",
    "squad": "squad_f1",
    "exact_match": "exact_match",
    "choice": "acc",
}
#: columns the console tables show: classification, then generation scores
CLASSIFICATION_SHOWN = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
GENERATION_SHOWN = (
    "loss",
    "perplexity",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bleu",
    "chrf",
    "squad_em",
    "squad_f1",
    "exact_match",
    "acc",
    "acc_norm",
    "reward_accuracy",
    "reward_margin",
)
#: probe scores shown before → after
PROBE_SHOWN = (
    "loss",
    "perplexity",
    "word_perplexity",
    "accuracy",
    "exact_match",
    "squad_f1",
    "rougeL",
    "bleu",
    "chrf",
    "acc",
    "acc_norm",
)


def headline_metric(kind: str, metrics: list[str]) -> str | None:
    """The headline score of a task of ``kind`` with ``task.metrics`` = ``metrics`` (None when
    only its loss is known)."""
    if kind == "classification":
        return "accuracy"
    if kind == "preference":
        return "reward_accuracy"
    return PRIMARY[metrics[0]] if metrics else None


def primary_metric(task_cfg, metric: str | None = None) -> str | None:
    """The score of one task (a task config section) that enters a mixture's mean;
    ``metric`` overrides it."""
    return metric or headline_metric(task_cfg.type, list(task_cfg.metrics))


def classification_metrics(
    y_true: list[int], y_pred: list[int], labels: list[str]
) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1, and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(mp),
        "recall_macro": float(mr),
        "f1_macro": float(mf),
        "n": len(y_true),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": list(labels),
            "matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        },
    }


def greater_is_better(metric: str) -> bool:
    """Whether a larger value is better (``task/metric`` names of mixtures included)."""
    return metric.rsplit("/", 1)[-1] not in LOWER_IS_BETTER


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The top-level numeric entries (what goes into metrics.jsonl and progress lines)."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
