"""Human evaluation: rating sheets out, filled sheets in.

``export_sheet`` writes prompts and model outputs from a run's saved predictions as CSV and
JSONL: either a 1-5 scale per criterion (fluency, coherence, relevance), or a pairwise A/B sheet
between two runs with the order randomised per item (seeded) and recorded in a key file that
raters do not see. ``import_ratings`` reads the filled sheets of several raters and reports
mean ± 95 % confidence interval per criterion, A/B win rates, and agreement: Krippendorff's
alpha (the ``krippendorff`` package; ordinal for scales, nominal for preferences) and, for two
raters, Cohen's kappa (scikit-learn; quadratic weights for scales). Malformed or out-of-range
ratings are reported with their file and row, never dropped silently.

A sheet is addressed by the export's ``--output`` path (``sheets/xsum``), any of its files, or
the folder holding it. Next to it, ``sheets/xsum.ratings.sqlite`` holds the answers given in the
rating app (``tunelab human serve``, see ``human_store``); ``import_ratings`` reads it together
with any filled CSV/JSONL sheets, and ``write_preferences`` turns the A/B judgements into
``{prompt, chosen, rejected}`` pairs for preference training.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import DataError, RunDirError
from tunelab.evaluation.human_store import CHOICES, RatingStore, key_fingerprint
from tunelab.utils.io import atomic_write_json, atomic_write_jsonl, atomic_write_text

CRITERIA = ("fluency", "coherence", "relevance")
RESERVED = ("item", "prompt", "output", "output_a", "output_b", "preference", "comment")
SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "key": ".key.json", "db": ".ratings.sqlite"}

__all__ = [
    "CHOICES",
    "CRITERIA",
    "collect_ratings",
    "export_sheet",
    "import_ratings",
    "preference_pairs",
    "read_key",
    "read_sheet_items",
    "resolve_sheet",
    "sheet_paths",
    "write_preferences",
]


def sheet_paths(base: str | Path) -> dict[str, Path]:
    """The files of the sheet whose export ``--output`` was ``base`` (suffix dropped)."""
    base = Path(base)
    return {k: base.parent / (base.name + s) for k, s in SUFFIXES.items()}


def resolve_sheet(sheet: str | Path) -> dict[str, Path]:
    """A sheet's files from its ``--output`` path, one of its files, or its folder."""
    p = Path(sheet)
    if p.is_dir():
        keys = sorted(p.glob("*" + SUFFIXES["key"]))
        if len(keys) != 1:
            found = ", ".join(str(k)[: -len(SUFFIXES["key"])] for k in keys)
            raise DataError(
                f"{p} holds no rating sheet (no *.key.json from `tunelab human export`)"
                if not keys
                else f"{p} holds {len(keys)} rating sheets; name one: {found}"
            )
        p = keys[0]
    for suffix in SUFFIXES.values():
        if p.name.endswith(suffix) and len(p.name) > len(suffix):
            paths = sheet_paths(p.with_name(p.name[: -len(suffix)]))
            break
    else:  # the export's --output (whose suffix export drops too), or a key file renamed
        paths = sheet_paths(p.with_suffix(""))
        if p.suffix == ".json" and p.is_file():
            paths["key"] = p
    if not paths["key"].is_file():
        raise DataError(
            f"{paths['key']} not found: is {sheet} a sheet from `tunelab human export`?"
        )
    return paths


def read_key(paths: dict[str, Path]) -> dict[str, Any]:
    try:
        return json.loads(paths["key"].read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{paths['key']} is not JSON ({e.msg})") from None


def read_sheet_items(paths: dict[str, Path], key: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The texts raters see (the export's JSONL), by item number, checked against the key."""
    rows = {int(r["item"]): r for _, r in _read_sheet(paths["jsonl"])}
    missing = sorted({it["item"] for it in key["items"]} - set(rows))
    if missing:
        raise DataError(f"{paths['jsonl']} lacks item(s) {missing[:10]} of {paths['key']}")
    return rows


def _check_criteria(criteria: tuple[str, ...]) -> tuple[str, ...]:
    criteria = tuple(c.strip() for c in criteria)
    if not criteria or len(set(criteria)) != len(criteria):
        raise DataError(f"criteria must be distinct and at least one, not {list(criteria)}")
    for c in criteria:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", c) or c in RESERVED:
            raise DataError(
                f"criterion {c!r}: use a word of letters, digits, '_' or '-' "
                f"(not one of {', '.join(RESERVED)})"
            )
    return criteria


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
    ``import_ratings``). One run: a 1-5 scale per criterion; two runs: pairwise A/B. An
    existing rating database of the same name also counts as taken."""
    if len(runs) not in (1, 2):
        raise DataError("give one run (rating scale) or two runs (pairwise A/B)")
    criteria = _check_criteria(tuple(criteria))
    paths = sheet_paths(Path(output).with_suffix(""))
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
    return {k: paths[k] for k in ("csv", "jsonl", "key")}


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


def _sheet_ratings(
    key: dict[str, Any], sheets: Iterable[str | Path], ratings: dict[str, dict[str, dict]]
) -> list[str]:
    """Add the filled sheets' ratings (rater = file stem) to ``ratings``; return problems."""
    items = {it["item"] for it in key["items"]}
    mode, problems = key["mode"], []
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
            for f in ratings:
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
    return problems


def _database_ratings(
    key: dict[str, Any], paths: dict[str, Path], ratings: dict[str, dict[str, dict]]
) -> None:
    """Add the rating app's answers; pairwise choices go back to the sheet's A/B order."""
    store = RatingStore(paths["db"], key_fingerprint(paths["key"]), create=False)
    taken = {r for f in ratings.values() for r in f}
    items = {it["item"] for it in key["items"]}
    flip = {"A": "B", "B": "A", "tie": "tie"}
    for a in store.answers():
        if a["rater"] in taken:
            raise DataError(
                f"rater {a['rater']!r} has answers in {paths['db']} and a filled sheet "
                f"{a['rater']}.csv/.jsonl; rename the sheet"
            )
        if a["item"] not in items:
            raise DataError(f"{paths['db']}: item {a['item']} is not in the sheet's key")
        for f, v in a["values"].items():
            if f in ratings:
                v = flip[v] if a["swapped"] and f == "preference" else v
                ratings[f].setdefault(a["rater"], {})[a["item"]] = v


def collect_ratings(
    sheet: str | Path, sheets: Iterable[str | Path] = ()
) -> tuple[dict[str, Any], dict[str, Path], dict[str, dict[str, dict[int, Any]]]]:
    """(key, sheet paths, ratings) where ratings is field -> rater -> item -> value, from the
    rating app's database (when there is one) and the filled sheets. Pairwise values are
    ``A``/``B``/``tie`` in the sheet's order (the key's ``a``/``b``)."""
    paths = resolve_sheet(sheet)
    key = read_key(paths)
    sheets = list(sheets)
    fields = key["criteria"] if key["mode"] == "scale" else ["preference"]
    ratings: dict[str, dict[str, dict[int, Any]]] = {f: {} for f in fields}
    problems = _sheet_ratings(key, sheets, ratings)
    if problems:
        raise DataError(
            f"{len(problems)} malformed rating(s): "
            + "; ".join(problems[:10])
            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
        )
    if paths["db"].is_file():
        _database_ratings(key, paths, ratings)
    elif not sheets:
        raise DataError(
            f"no answers for {paths['key']}: no rating database ({paths['db'].name}, "
            "written by `tunelab human serve`) and no filled sheets given"
        )
    return key, paths, ratings


def _win_rates(key: dict[str, Any], by_rater: dict[str, dict[int, str]]) -> dict[str, Any]:
    items = {it["item"]: it for it in key["items"]}
    wins = {"a": 0, "b": 0, "tie": 0}
    for answers in by_rater.values():
        for i, v in answers.items():
            if v == "tie":
                wins["tie"] += 1
            else:
                wins["a" if (v == "A") == (items[i]["a"] == key["runs"][0]) else "b"] += 1
    total = sum(wins.values())
    rate = {
        key["runs"][0]: wins["a"] / total,
        key["runs"][1]: wins["b"] / total,
        "tie": wins["tie"] / total,
    }
    # Wilson 95 % intervals of each share (win, loss, tie) over the judgements
    z = 1.959963984540054
    ci = {}
    for name, k in zip(rate, (wins["a"], wins["b"], wins["tie"])):
        p, d = k / total, 1 + z * z / total
        mid = (p + z * z / (2 * total)) / d
        half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / d
        ci[name] = [max(0.0, mid - half), min(1.0, mid + half)]
    return {"win_rate": rate, "win_rate_ci": ci, "n": total}


def import_ratings(sheet: str | Path, sheets: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Aggregate the answers of a sheet: its rating database and any filled sheets (one per
    rater). ``sheet`` is the export's key file, its ``--output`` path or its folder."""
    key, _, ratings = collect_ratings(sheet, sheets)
    return aggregate(key, ratings)


def aggregate(key: dict[str, Any], ratings: dict[str, dict[str, dict[int, Any]]]) -> dict[str, Any]:
    """Means with 95 % CIs or win rates, Krippendorff's alpha and (two raters) Cohen's kappa."""
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    mode, ids = key["mode"], sorted(it["item"] for it in key["items"])
    report: dict[str, Any] = {
        "mode": mode,
        "raters": sorted({r for f in ratings for r in ratings[f]}),
        "items": len(ids),
        "criteria": {},
    }
    for f, by_rater in ratings.items():
        raters = sorted(by_rater)
        values = [v for r in raters for v in by_rater[r].values()]
        if not values:
            report["criteria"][f] = {"n": 0}
            continue
        if mode == "scale":
            entry: dict[str, Any] = _mean_ci([float(v) for v in values])
            data = np.array([[by_rater[r].get(i, np.nan) for i in ids] for r in raters], float)
            level = "ordinal"
        else:
            entry = _win_rates(key, by_rater)
            code = {"A": 0.0, "B": 1.0, "tie": 2.0}
            data = np.array(
                [
                    [code[by_rater[r][i]] if i in by_rater[r] else np.nan for i in ids]
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
            both = [i for i in ids if i in by_rater[raters[0]] and i in by_rater[raters[1]]]
            if both:
                a = [by_rater[raters[0]][i] for i in both]
                b = [by_rater[raters[1]][i] for i in both]
                weights = "quadratic" if mode == "scale" else None
                entry["cohen_kappa"] = float(cohen_kappa_score(a, b, weights=weights))
        report["criteria"][f] = entry
    return report


def preference_pairs(
    sheet: str | Path, sheets: Iterable[str | Path] = (), min_agreement: float = 0.0
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """One ``{prompt, chosen, rejected}`` pair per A/B item whose judgements have a single
    most common outcome that is not a tie, shared by at least ``min_agreement`` of the item's
    judgements. Returns the pairs and counts of what was kept and dropped."""
    if not 0.0 <= min_agreement <= 1.0:
        raise DataError(f"min_agreement must be a share from 0 to 1, not {min_agreement}")
    key, paths, ratings = collect_ratings(sheet, sheets)
    if key["mode"] != "pairwise":
        raise DataError(f"{paths['key']} is a rating-scale sheet; preference pairs need A/B")
    texts = read_sheet_items(paths, key)
    counts = Counter(items=len(key["items"]))
    pairs = []
    for it in key["items"]:
        votes = Counter(r[it["item"]] for r in ratings["preference"].values() if it["item"] in r)
        if not votes:
            counts["unjudged"] += 1
            continue
        (top, k), *rest = votes.most_common()
        if rest and rest[0][1] == k:
            counts["no_majority"] += 1
        elif top == "tie":
            counts["ties"] += 1
        elif k / sum(votes.values()) < min_agreement:
            counts["below_agreement"] += 1
        else:
            row = texts[it["item"]]
            win, lose = ("output_a", "output_b") if top == "A" else ("output_b", "output_a")
            pairs.append({"prompt": row["prompt"], "chosen": row[win], "rejected": row[lose]})
    counts["pairs"] = len(pairs)
    return pairs, dict(counts)


def write_preferences(
    sheet: str | Path,
    output: str | Path,
    sheets: Iterable[str | Path] = (),
    min_agreement: float = 0.0,
    overwrite: bool = False,
) -> tuple[Path, dict[str, int]]:
    """Write ``preference_pairs`` as JSONL (atomically); refuse to replace a file unasked."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} exists; pass --overwrite to replace it")
    pairs, counts = preference_pairs(sheet, sheets, min_agreement)
    return atomic_write_jsonl(out, pairs), counts
