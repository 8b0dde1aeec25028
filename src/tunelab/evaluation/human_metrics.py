"""Human ratings next to automatic metrics of the same outputs, and how well they agree.

For each rated item of a sheet, the output the raters saw is scored against the reference of
its row in the run's saved predictions, sentence by sentence: ROUGE-L F (rouge-score, stemmed,
as ``generation_metrics.rouge``), BLEU and chrF (sacrebleu's sentence-level scores). Spearman's
rank correlation (scipy) then compares each metric with the human score of the items:

- scale sheets: the mean over raters of each criterion, and of all criteria ("overall");
- pairwise sheets: the share of judgements preferring the sheet's first run (a tie counts
  half) against the metric's difference, first run minus second.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import RunDirError
from tunelab.evaluation.human import aggregate, collect_ratings, read_sheet_items

METRICS = ("rougeL", "bleu", "chrf")


@functools.cache
def _rouge_l():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def sentence_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-L F x 100, sentence BLEU and sentence chrF of one output."""
    import sacrebleu

    return {
        "rougeL": 100.0 * _rouge_l().score(reference, prediction)["rougeL"].fmeasure,
        "bleu": sacrebleu.sentence_bleu(prediction, [reference]).score,
        "chrf": sacrebleu.sentence_chrf(prediction, [reference]).score,
    }


def _references(run: str, split: str) -> dict[tuple[Any, Any], str]:
    rows = rundir.read_predictions(Path(run), split)
    if not rows:
        raise RunDirError(f"{run}: no saved {split} predictions to score the rated outputs")
    out = {}
    for r in rows:
        ref = r.get("reference")
        if isinstance(ref, list):
            ref = ref[0] if ref else None
        if ref is not None:
            out[(r.get("task"), r["row"])] = str(ref)
    return out


def _spearman(xs: list[float], ys: list[float]) -> dict[str, Any]:
    from scipy import stats

    pairs = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(x) or math.isnan(y))]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {"rho": None, "p": None, "n": len(pairs)}  # undefined: too few or constant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(pairs)}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def human_vs_metrics(sheet: str | Path, sheets: list[str | Path] = ()) -> dict[str, Any]:
    """The sheet's human results, per-run means of each metric over the rated items, and
    the Spearman correlation of each metric with each human score."""
    key, paths, ratings = collect_ratings(sheet, sheets)
    stats = aggregate(key, ratings)
    texts = read_sheet_items(paths, key)
    refs = {run: _references(run, key["split"]) for run in key["runs"]}
    by_rater = {f: list(v.values()) for f, v in ratings.items()}
    rated = [
        it for it in key["items"] if any(it["item"] in r for f in by_rater for r in by_rater[f])
    ]
    per_run: dict[str, dict[str, list[float]]] = {
        run: {m: [] for m in METRICS} for run in key["runs"]
    }
    human: dict[str, list[float]] = {}
    metric: dict[str, list[float]] = {m: [] for m in METRICS}
    for it in rated:
        row, k = texts[it["item"]], (it.get("task"), it["row"])
        if key["mode"] == "scale":
            outputs = {key["runs"][0]: row["output"]}
        else:
            outputs = {it["a"]: row["output_a"], it["b"]: row["output_b"]}
        scores = {}
        for run, text in outputs.items():
            if k not in refs[run]:
                raise RunDirError(f"{run}: row {k[1]} of the sheet has no reference to score")
            scores[run] = sentence_scores(str(text), refs[run][k])
            for m in METRICS:
                per_run[run][m].append(scores[run][m])
        first = key["runs"][0]
        if key["mode"] == "scale":
            means = []
            for f in key["criteria"]:
                vs = [r[it["item"]] for r in by_rater[f] if it["item"] in r]
                human.setdefault(f, []).append(_mean(vs) if vs else math.nan)
                means += [_mean(vs)] if vs else []
            human.setdefault("overall", []).append(_mean(means) if means else math.nan)
            for m in METRICS:
                metric[m].append(scores[first][m])
        else:
            win = {"tie": 0.5, "A": float(it["a"] == first), "B": float(it["b"] == first)}
            vs = [win[r[it["item"]]] for r in by_rater["preference"] if it["item"] in r]
            human.setdefault(f"preference for {Path(first).name}", []).append(_mean(vs))
            second = key["runs"][1]
            for m in METRICS:
                metric[m].append(scores[first][m] - scores[second][m])
    return {
        "sheet": str(paths["key"]),
        "mode": key["mode"],
        "human": stats,
        "rated_items": len(rated),
        "metric_means": {run: {m: _mean(v) for m, v in ms.items()} for run, ms in per_run.items()},
        "correlations": [
            {"human": h, "metric": m, **_spearman(metric[m], hs)}
            for h, hs in human.items()
            for m in METRICS
        ],
    }
