"""Scores of generated text against references, each from its reference implementation:
ROUGE (rouge-score, as the XSum/CNN papers report it), BLEU and chrF (sacrebleu), and the
official SQuAD v1.1 exact match / F1 (its normalisation rules, reproduced below because the
official script is not a package)."""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Any

GENERATION_METRICS = ("rouge", "bleu", "chrf", "squad", "exact_match")


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure x 100 (Porter stemming; Lsum splits sentences on newlines)."""
    from rouge_score import rouge_scorer, scoring

    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    agg = scoring.BootstrapAggregator()
    for p, r in zip(predictions, references):
        agg.add_scores(scorer.score(_sentences(r), _sentences(p)))
    result = agg.aggregate()
    return {t: 100.0 * result[t].mid.fmeasure for t in types}


def _sentences(text: str) -> str:
    # rougeLsum treats newlines as sentence breaks
    return "\n".join(s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s)


def bleu(predictions: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu

    return {"bleu": sacrebleu.corpus_bleu(predictions, [references]).score}


def chrf(predictions: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu

    return {"chrf": sacrebleu.corpus_chrf(predictions, [references]).score}


# --- SQuAD v1.1 official evaluation (evaluate-v1.1.py), same rules ---------------------------
def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(prediction: str, truth: str) -> float:
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(p) & collections.Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def squad(predictions: list[str], references: list[str | list[str]]) -> dict[str, float]:
    """Exact match and F1 x 100, the maximum over each question's reference answers."""
    em = f1 = 0.0
    for p, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        em += max(float(normalize_answer(p) == normalize_answer(r)) for r in refs)
        f1 += max(token_f1(p, r) for r in refs)
    n = max(len(predictions), 1)
    return {"squad_em": 100.0 * em / n, "squad_f1": 100.0 * f1 / n}


def exact_match(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Share of predictions equal to the reference after stripping whitespace (x 100)."""
    hits = sum(p.strip() == r.strip() for p, r in zip(predictions, references))
    return {"exact_match": 100.0 * hits / max(len(predictions), 1)}


SCORERS = {"rouge": rouge, "bleu": bleu, "chrf": chrf, "squad": squad, "exact_match": exact_match}


def score(names: list[str], predictions: list[str], references: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        refs = references
        if name != "squad":
            refs = [r[0] if isinstance(r, list) else r for r in references]
        out.update(SCORERS[name](predictions, refs))
    return out


def perplexities(nll_sum: float, tokens: int, words: int, nbytes: int) -> dict[str, float]:
    """Token-level perplexity, and word- and byte-level ones (lm-evaluation-harness's
    ``word_perplexity`` and ``bits_per_byte``) from the same summed negative log-likelihood."""
    return {
        "loss": nll_sum / max(tokens, 1),
        "perplexity": math.exp(min(nll_sum / max(tokens, 1), 50.0)),
        "word_perplexity": math.exp(min(nll_sum / max(words, 1), 50.0)),
        "byte_perplexity": math.exp(min(nll_sum / max(nbytes, 1), 50.0)),
        "bits_per_byte": nll_sum / max(nbytes, 1) / math.log(2),
    }


def label_shares(
    probabilities: list[list[float] | None], labels: list[str], chosen: list[str] | None = None
) -> dict[str, float]:
    """What a classifier says about generated texts: the share of all outputs given each label
    (its most probable one; ``None`` marks an empty output, counted in ``share_empty``), and for
    the ``chosen`` labels (one, or several joined by ``+``) the share given any of them and their
    mean summed probability over the non-empty outputs."""
    n = max(len(probabilities), 1)
    scored = [p for p in probabilities if p is not None]
    best = [max(range(len(p)), key=p.__getitem__) for p in scored]
    out = {f"share_{name}": sum(b == i for b in best) / n for i, name in enumerate(labels)}
    out["share_empty"] = (len(probabilities) - len(scored)) / n
    if chosen:
        idx = [labels.index(c) for c in chosen]
        key = "+".join(chosen)
        if len(chosen) > 1:
            out[f"share_{key}"] = sum(b in idx for b in best) / n
        out[f"mean_p_{key}"] = sum(sum(p[i] for i in idx) for p in scored) / max(len(scored), 1)
    return out
