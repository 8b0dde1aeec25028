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
    "mse",
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
CLASSIFICATION_SHOWN = (
    "accuracy",
    "f1",
    "mcc",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    # regression, multi-label, token classification
    "pearson",
    "spearman",
    "mse",
    "f1_micro",
    "subset_accuracy",
    "entity_f1",
    "entity_precision",
    "entity_recall",
    "token_accuracy",
)
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


#: the headline score of the encoder task kinds (the generation kind's comes from PRIMARY)
KIND_HEADLINE = {
    "classification": "accuracy",
    "regression": "pearson",
    "multi_label": "f1_micro",
    "token_classification": "entity_f1",
    "multiple_choice": "accuracy",
    "preference": "reward_accuracy",
}


def headline_metric(kind: str, metrics: list[str]) -> str | None:
    """The headline score of a task of ``kind`` with ``task.metrics`` = ``metrics`` (None when
    only its loss is known)."""
    if kind in KIND_HEADLINE:
        return KIND_HEADLINE[kind]
    return PRIMARY[metrics[0]] if metrics else None


def primary_metric(task_cfg, metric: str | None = None) -> str | None:
    """The score of one task (a task config section) that enters a mixture's mean;
    ``metric`` overrides it."""
    return metric or headline_metric(task_cfg.type, list(task_cfg.metrics))


def classification_metrics(
    y_true: list[int], y_pred: list[int], labels: list[str]
) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1, Matthews correlation (``mcc``), the
    positive class's F1 when there are two labels (``f1``: MRPC's), and the confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        matthews_corrcoef,
        precision_recall_fscore_support,
    )

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
        **({"f1": float(f[1])} if len(labels) == 2 else {}),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
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


def regression_metrics(y_true: list[float], y_pred: list[float]) -> dict[str, Any]:
    """Pearson and Spearman correlation (scipy), their mean (GLUE's STS-B score), MSE."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    constant = len(t) < 2 or t.std() == 0 or p.std() == 0
    pearson = 0.0 if constant else float(pearsonr(t, p)[0])
    spearman = 0.0 if constant else float(spearmanr(t, p)[0])
    return {
        "pearson": pearson,
        "spearman": spearman,
        "pearson_spearman": (pearson + spearman) / 2,
        "mse": float(np.mean((t - p) ** 2)),
        "n": len(t),
    }


def multi_label_metrics(y_true: list[list[int]], y_pred: list[list[int]], labels: list[str]):
    """Micro and macro F1/precision/recall over label indicator rows, and exact-set accuracy."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    out: dict[str, Any] = {"subset_accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out.update({f"f1_{avg}": float(f), f"precision_{avg}": float(p), f"recall_{avg}": float(r)})
    out["n"] = len(y_true)
    return out


def token_metrics(gold: list[list[str]], pred: list[list[str]], bilou: bool = False):
    """Entity-level precision/recall/F1 (seqeval; CoNLL's conlleval chunking, or strict BILOU)
    and word-level tag accuracy."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    kw: dict[str, Any] = {}
    if bilou:
        from seqeval.scheme import BILOU

        kw = {"mode": "strict", "scheme": BILOU}
    words = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return {
        "entity_precision": float(precision_score(gold, pred, zero_division=0, **kw)),
        "entity_recall": float(recall_score(gold, pred, zero_division=0, **kw)),
        "entity_f1": float(f1_score(gold, pred, zero_division=0, **kw)),
        "token_accuracy": right / max(words, 1),
        "n": len(gold),
    }


def greater_is_better(metric: str) -> bool:
    """Whether a larger value is better (``task/metric`` names of mixtures included)."""
    return metric.rsplit("/", 1)[-1] not in LOWER_IS_BETTER


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The top-level numeric entries (what goes into metrics.jsonl and progress lines)."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
