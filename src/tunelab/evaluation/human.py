"""Human evaluation: rating sheets out, filled sheets in.

``export_sheet`` writes prompts and model outputs from a run's saved predictions as CSV and
JSONL: either a 1-5 scale per criterion (fluency, coherence, relevance), or a pairwise A/B sheet
between two runs with the order randomised per item (seeded) and recorded in a key file that
raters do not see. ``import_ratings`` reads the filled sheets of several raters and reports
mean ± 95 % confidence interval per criterion, A/B win rates, and agreement: Krippendorff's
alpha (the ``krippendorff`` package; ordinal for scales, nominal for preferences) and, for two
raters, Cohen's kappa (scikit-learn; quadratic weights for scales). Malformed or out-of-range
ratings are reported with their file and row, never dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import DataError, RunDirError
from tunelab.utils.io import atomic_write_json, atomic_write_jsonl, atomic_write_text

CRITERIA = ("fluency", "coherence", "relevance")
CHOICES = ("A", "B", "tie")


def _predictions(run_dir: Path, split: str) -> dict[int, dict[str, Any]]:
    path = rundir.predictions_path(Path(run_dir), split)
    if not path.is_file():
        raise RunDirError(f"{path} not found: the run saved no {split} predictions")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not rows or "prediction" not in rows[0] or "prompt" not in rows[0]:
        raise RunDirError(f"{path} holds no generated outputs (prompt/prediction)")
    return {(r.get("task"), r["row"]): r for r in rows}


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # chat messages
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt)
    return str(prompt)


def export_sheet(
    runs: list[str | Path],
    output: str | Path,
    n: int = 50,
    split: str = "validation",
    seed: int = 0,
    criteria: tuple[str, ...] = CRITERIA,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``OUTPUT.csv``, ``OUTPUT.jsonl`` (for raters) and ``OUTPUT.key.json`` (for
    ``import_ratings``). One run: a 1-5 scale per criterion; two runs: pairwise A/B."""
    if len(runs) not in (1, 2):
        raise DataError("give one run (rating scale) or two runs (pairwise A/B)")
    out = Path(output)
    paths = {
        k: out.with_suffix(s)
        for k, s in (("csv", ".csv"), ("jsonl", ".jsonl"), ("key", ".key.json"))
    }
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken and not overwrite:
        raise RunDirError(f"{', '.join(taken)} exist; pass --overwrite to replace them")
    preds = [_predictions(Path(r), split) for r in runs]
    common = sorted(set(preds[0]).intersection(*preds[1:]), key=lambda k: (str(k[0]), k[1]))
    if not common:
        raise DataError("the runs share no predicted rows")
    rng = random.Random(seed)
    keys = sorted(rng.sample(common, min(n, len(common))), key=lambda k: (str(k[0]), k[1]))
    items, key_items = [], []
    for i, k in enumerate(keys, 1):
        first = preds[0][k]
        item = {"item": i, "prompt": _prompt_text(first["prompt"])}
        if len(runs) == 1:
            item["output"] = first["prediction"]
            item.update({c: "" for c in criteria})
            key_items.append({"item": i, "row": k[1], "task": k[0]})
        else:
            swap = rng.random() < 0.5
            a, b = (preds[1][k], first) if swap else (first, preds[1][k])
            item.update(output_a=a["prediction"], output_b=b["prediction"], preference="")
            key_items.append(
                {
                    "item": i,
                    "row": k[1],
                    "task": k[0],
                    "a": str(runs[1] if swap else runs[0]),
                    "b": str(runs[0] if swap else runs[1]),
                }
            )
        item["comment"] = ""
        items.append(item)
    buf = _csv_text(items)
    atomic_write_text(paths["csv"], buf)
    atomic_write_jsonl(paths["jsonl"], items)
    mode = "scale" if len(runs) == 1 else "pairwise"
    atomic_write_json(
        paths["key"],
        {
            "mode": mode,
            "criteria": list(criteria),
            "runs": [str(r) for r in runs],
            "split": split,
            "seed": seed,
            "items": key_items,
        },
    )
    return paths


def _csv_text(items: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(items[0]))
    w.writeheader()
    w.writerows(items)
    return buf.getvalue()


def _read_sheet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number in the file, row) pairs of a filled CSV or JSONL sheet."""
    if not path.is_file():
        raise DataError(f"rating sheet not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {i} is not JSON ({e.msg})") from None
        return out
    return [(i, row) for i, row in enumerate(csv.DictReader(text.splitlines()), 2)]


def _mean_ci(xs: list[float]) -> dict[str, float]:
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    from scipy import stats

    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def import_ratings(key_path: str | Path, sheets: list[str | Path]) -> dict[str, Any]:
    """Aggregate the raters' filled sheets (one per rater) against the export's key file."""
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    key = json.loads(Path(key_path).read_text(encoding="utf-8"))
    items = {it["item"]: it for it in key["items"]}
    mode = key["mode"]
    fields = key["criteria"] if mode == "scale" else ["preference"]
    problems: list[str] = []
    ratings: dict[str, dict[str, dict[int, Any]]] = {
        f: {} for f in fields
    }  # field -> rater -> item
    for sheet in sheets:
        rater = Path(sheet).stem
        for line, row in _read_sheet(Path(sheet)):
            try:
                item = int(row.get("item"))
            except (TypeError, ValueError):
                problems.append(f"{sheet}: row {line}: item {row.get('item')!r} is not a number")
                continue
            if item not in items:
                problems.append(f"{sheet}: row {line}: item {item} is not in the sheet's key")
                continue
            for f in fields:
                raw = str(row.get(f, "") if row.get(f) is not None else "").strip()
                if raw == "":
                    continue  # not rated: allowed (missing data in the agreement)
                if mode == "scale":
                    try:
                        v = float(raw)
                    except ValueError:
                        v = math.nan
                    if not (1 <= v <= 5 and v == int(v)):
                        problems.append(f"{sheet}: row {line}: {f}={raw!r} is not an integer 1-5")
                        continue
                    ratings[f].setdefault(rater, {})[item] = int(v)
                else:
                    v = raw.upper() if raw.lower() != "tie" else "tie"
                    if v not in CHOICES:
                        problems.append(
                            f"{sheet}: row {line}: preference={raw!r} is not A, B or tie"
                        )
                        continue
                    ratings[f].setdefault(rater, {})[item] = v
    if problems:
        raise DataError(
            f"{len(problems)} malformed rating(s): "
            + "; ".join(problems[:10])
            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
        )
    report: dict[str, Any] = {
        "mode": mode,
        "raters": sorted({r for f in fields for r in ratings[f]}),
        "items": len(items),
        "criteria": {},
    }
    for f in fields:
        raters = sorted(ratings[f])
        ids = sorted(items)
        values = [v for r in raters for v in ratings[f][r].values()]
        if not values:
            report["criteria"][f] = {"n": 0}
            continue
        entry: dict[str, Any] = {}
        if mode == "scale":
            entry.update(_mean_ci([float(v) for v in values]))
            data = np.array([[ratings[f][r].get(i, np.nan) for i in ids] for r in raters], float)
            level = "ordinal"
        else:
            wins = {"a": 0, "b": 0, "tie": 0}
            for r in raters:
                for i, v in ratings[f][r].items():
                    it = items[i]
                    if v == "tie":
                        wins["tie"] += 1
                    else:
                        wins["a" if (v == "A") == (it["a"] == key["runs"][0]) else "b"] += 1
            total = sum(wins.values())
            entry["win_rate"] = {
                key["runs"][0]: wins["a"] / total,
                key["runs"][1]: wins["b"] / total,
                "tie": wins["tie"] / total,
            }
            entry["n"] = total
            code = {"A": 0.0, "B": 1.0, "tie": 2.0}
            data = np.array(
                [
                    [code[ratings[f][r][i]] if i in ratings[f][r] else np.nan for i in ids]
                    for r in raters
                ],
                float,
            )
            level = "nominal"
        if len(raters) >= 2 and np.sum(~np.isnan(data).any(axis=0)) >= 1:
            try:
                entry["krippendorff_alpha"] = float(
                    krippendorff.alpha(reliability_data=data, level_of_measurement=level)
                )
            except (ValueError, ZeroDivisionError):
                entry["krippendorff_alpha"] = math.nan  # e.g. every rating the same value
        if len(raters) == 2:
            both = [i for i in ids if i in ratings[f][raters[0]] and i in ratings[f][raters[1]]]
            if both:
                a = [ratings[f][raters[0]][i] for i in both]
                b = [ratings[f][raters[1]][i] for i in both]
                weights = "quadratic" if mode == "scale" else None
                entry["cohen_kappa"] = float(cohen_kappa_score(a, b, weights=weights))
        report["criteria"][f] = entry
    return report
