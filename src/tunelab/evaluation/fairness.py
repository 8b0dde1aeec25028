"""Fairness measurements for suites.

- ``counterfactual`` (classifiers): every text that mentions a group term is scored again with
  the terms swapped (gender terms and pronouns; first names as group proxies; or a user's own
  ``{word: replacement}`` list). Reported per attribute: the share of predictions that flip and
  the mean change of the probability of ``score_label``.
- ``eec`` (classifiers): the Equity Evaluation Corpus (Kiritchenko & Mohammad, 2018): the gap in
  the mean probability of ``score_label`` between genders and between races on sentences that
  differ only in the person, with a seeded bootstrap 95 % confidence interval (templates are
  resampled, so paired sentences stay together).
- ``crows_pairs`` (language models): the share of CrowS-Pairs (Nangia et al., 2020) pairs whose
  more stereotypical sentence the model finds likelier, overall and per bias type, as
  lm-evaluation-harness's ``pct_stereotype`` (50 is the unbiased ideal).
"""

from __future__ import annotations

import random
from typing import Any

from tunelab.errors import ConfigError, DataError


def label_index(task, score_label: str | None) -> int:
    if score_label is None:
        return len(task.labels) - 1  # e.g. "positive" of [negative, positive]
    if score_label not in task.labels:
        raise ConfigError(f"score_label {score_label!r} is not one of {task.labels}")
    return task.labels.index(score_label)


def swap_tables(attributes: list[str] | dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``gender`` and ``names:GROUP_A-GROUP_B`` by name, or the user's own tables."""
    from tunelab.evaluation.counterfactual import NAMES, gender_swap_table, name_swap_table

    if isinstance(attributes, dict):
        return {k: {a.lower(): b for a, b in v.items()} for k, v in attributes.items()}
    out = {}
    for a in attributes:
        if a == "gender":
            out[a] = gender_swap_table()
        elif a.startswith("names:") and a.count("-") == 1:
            g1, g2 = a[len("names:") :].split("-")
            if g1 not in NAMES or g2 not in NAMES:
                raise ConfigError(f"{a}: groups are {', '.join(NAMES)}")
            out[a] = name_swap_table(g1, g2)
        else:
            raise ConfigError(
                f"counterfactual attribute {a!r}; use gender, names:A-B (groups: "
                f"{', '.join(NAMES)}) or a {{word: replacement}} table"
            )
    return out


def counterfactual_report(
    task,
    model,
    texts: list[str],
    attributes,
    batch_size: int,
    accelerator,
    score_label: str | None = None,
) -> dict[str, Any]:
    from tunelab.evaluation.counterfactual import counterfactuals

    k = label_index(task, score_label)
    out: dict[str, Any] = {"score_label": task.labels[k], "attributes": {}}
    for name, table in swap_tables(attributes).items():
        pairs = counterfactuals(texts, table)
        if not pairs:
            out["attributes"][name] = {"n": 0}
            continue
        orig = task.predict_texts(
            model, [texts[i] for i, _ in pairs], None, batch_size, accelerator
        )
        swapped = task.predict_texts(model, [s for _, s in pairs], None, batch_size, accelerator)
        flips = sum(
            max(range(len(a)), key=a.__getitem__) != max(range(len(b)), key=b.__getitem__)
            for a, b in zip(orig, swapped)
        )
        diffs = [b[k] - a[k] for a, b in zip(orig, swapped)]
        out["attributes"][name] = {
            "n": len(pairs),
            "flip_rate": flips / len(pairs),
            "mean_score_change": sum(diffs) / len(diffs),
            "mean_abs_score_change": sum(abs(d) for d in diffs) / len(diffs),
            "examples": [{"text": texts[i], "swapped": s} for i, s in pairs[:3]],
        }
    return out


def bootstrap_gap(
    groups: dict[str, list[tuple[str, float]]], a: str, b: str, seed: int = 0, resamples: int = 1000
) -> dict[str, float]:
    """Mean score of group ``a`` minus group ``b`` and a percentile 95 % CI, resampling the
    clusters (templates) that hold both groups' sentences."""
    by_cluster: dict[str, dict[str, list[float]]] = {}
    for g in (a, b):
        for cluster, score in groups.get(g, []):
            by_cluster.setdefault(cluster, {}).setdefault(g, []).append(score)
    clusters = [c for c, d in by_cluster.items() if a in d and b in d]
    if not clusters:
        raise DataError(f"no sentences of both {a!r} and {b!r} to compare")

    def gap(cs: list[str]) -> float:
        xa = [s for c in cs for s in by_cluster[c][a]]
        xb = [s for c in cs for s in by_cluster[c][b]]
        return sum(xa) / len(xa) - sum(xb) / len(xb)

    rng = random.Random(seed)
    stats = sorted(gap([rng.choice(clusters) for _ in clusters]) for _ in range(resamples))
    return {
        "gap": gap(clusters),
        "ci_low": stats[int(0.025 * resamples)],
        "ci_high": stats[int(0.975 * resamples) - 1],
        "clusters": len(clusters),
    }


def eec_report(
    task,
    model,
    rows: list[dict[str, Any]],
    batch_size: int,
    accelerator,
    score_label: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """EEC: gender gap (female − male) and race gap (African-American − European) in the
    probability of ``score_label``, with bootstrap CIs over templates × emotion words."""
    need = {"Sentence", "Template", "Gender", "Race", "Emotion word"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"EEC rows need the columns {sorted(need)}")
    k = label_index(task, score_label)
    probs = task.predict_texts(model, [r["Sentence"] for r in rows], None, batch_size, accelerator)
    by_gender: dict[str, list[tuple[str, float]]] = {}
    by_race: dict[str, list[tuple[str, float]]] = {}
    for r, p in zip(rows, probs):
        cluster = f"{r['Template']}|{r['Emotion word']}"
        by_gender.setdefault(r["Gender"], []).append((cluster, p[k]))
        race = r.get("Race")
        if isinstance(race, str) and race.strip():
            by_race.setdefault(race, []).append((cluster, p[k]))
    return {
        "score_label": task.labels[k],
        "n": len(rows),
        "mean_score": {g: sum(s for _, s in v) / len(v) for g, v in by_gender.items()},
        "gender_gap_female_minus_male": bootstrap_gap(by_gender, "female", "male", seed),
        "race_gap_african_american_minus_european": bootstrap_gap(
            by_race, "African-American", "European", seed
        ),
    }


def crows_pairs_report(
    model,
    tokenizer,
    rows: list[dict[str, Any]],
    batch_size: int,
    accelerator,
    seq2seq: bool = False,
) -> dict[str, Any]:
    """Share of pairs where the LM's log-likelihood of ``sent_more`` beats ``sent_less``."""
    from tunelab.evaluation.choice import choice_loglikelihoods

    if seq2seq:
        raise ConfigError("crows_pairs scores causal language models")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prompts, options = [], []
    for r in rows:
        if not isinstance(r.get("sent_more"), str) or not isinstance(r.get("sent_less"), str):
            raise DataError("CrowS-Pairs rows need sent_more and sent_less")
        prompts.append([start])
        options.append(
            [
                tokenizer(r[s], add_special_tokens=False)["input_ids"]
                for s in ("sent_more", "sent_less")
            ]
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = choice_loglikelihoods(
        model, prompts, options, pad, batch_size, accelerator.device, autocast=accelerator.autocast
    )
    per: dict[str, list[bool]] = {}
    for r, (more, less) in zip(rows, scores):
        per.setdefault(str(r.get("bias_type", "all")), []).append(more > less)
    flat = [x for v in per.values() for x in v]
    return {
        "n": len(flat),
        "pct_stereotype": 100.0 * sum(flat) / max(len(flat), 1),
        "by_bias_type": {
            k: {"n": len(v), "pct_stereotype": 100.0 * sum(v) / len(v)}
            for k, v in sorted(per.items())
        },
    }
