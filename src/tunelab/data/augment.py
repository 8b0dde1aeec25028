"""Training-time augmentation against fragility and bias (the seed's targeted fine-tuning).

- Noise injection: a seeded share of training rows gets its inputs perturbed with the same
  perturbations the robustness evaluation uses (references are never touched).
- Counterfactual data augmentation (CDA): every training row that mentions a group term gets a
  copy with the terms swapped (gender terms and pronouns, or first names as group proxies), so
  the model sees both versions with the same label.
"""

from __future__ import annotations

import random
import zlib

from tunelab.data.sources import Table
from tunelab.errors import ConfigError


def input_columns(task) -> list[str]:
    """The columns that hold a task's inputs (never its labels or references)."""
    if task.kind == "classification":
        return [c for c in (task.text_column, task.text_pair_column) if c]
    s = task.s
    fields = s["fields"]
    if s["format"] == "template":
        from tunelab.data.templates import TEMPLATES

        needs = TEMPLATES[s["template"]][0]
        return [fields.get(f, f) for f in needs if f not in ("src_lang", "tgt_lang")]
    if s["format"] == "prompt_completion":
        return [fields.get("prompt", "prompt")]
    if s["format"] == "instruction":
        return [fields.get("input", "input"), fields.get("instruction", "instruction")]
    return []


def augment_table(table: Table, task, aug, seed: int) -> tuple[Table, dict[str, int]]:
    """The training table with noise injection and counterfactual copies applied."""
    from tunelab.evaluation.fairness import swap_tables
    from tunelab.evaluation.perturb import PERTURBATIONS, perturb

    stats = {"noisy_rows": 0, "counterfactual_rows": 0}
    if not aug.noise_share and not aug.counterfactual:
        return table, stats
    columns = input_columns(task)
    if not columns:
        raise ConfigError("augment: this task format has no input columns to perturb or swap")
    bad = [k for k in aug.perturbations if k not in PERTURBATIONS]
    if bad:
        raise ConfigError(f"augment.perturbations {bad}; allowed: {', '.join(PERTURBATIONS)}")
    rows = [dict(r) for r in table.rows]
    ids = list(table.row_ids)
    if aug.noise_share:
        rng = random.Random(f"{seed}:noise")
        chosen = rng.sample(range(len(rows)), round(aug.noise_share * len(rows)))
        for i in chosen:
            kind = rng.choice(aug.perturbations)
            for col in columns:
                if isinstance(rows[i].get(col), str):
                    s = seed + zlib.crc32(f"{col}:{ids[i]}".encode())
                    rows[i][col] = perturb([rows[i][col]], kind, aug.strength, s)[0]
        stats["noisy_rows"] = len(chosen)
    if aug.counterfactual:
        from tunelab.evaluation.counterfactual import swap

        tables = swap_tables(aug.counterfactual)
        extra, extra_ids = [], []
        for r, rid in zip(table.rows, table.row_ids):  # copies of the clean rows
            for table_ in tables.values():
                new = dict(r)
                changed = False
                for col in columns:
                    if isinstance(r.get(col), str):
                        new[col] = swap(r[col], table_)
                        changed |= new[col] != r[col]
                if changed:
                    extra.append(new)
                    extra_ids.append(rid)  # a copy keeps its source row number
        rows += extra
        ids += extra_ids
        stats["counterfactual_rows"] = len(extra)
    return Table(table.source, table.columns, rows, ids, list(table.skipped)), stats
