"""Preference pairs built from data sets: ``tunelab data crows-pairs``."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from tunelab.data.crows_pairs import preference_rows, seeded_half
from tunelab.data.sources import read_table
from tunelab.errors import DataError, RunDirError
from tunelab.utils.io import atomic_write_jsonl


def crows_pairs_preferences(
    data: str | os.PathLike,
    output: str | os.PathLike,
    half: str = "train",
    seed: int = 0,
    prompt: str = "shared",
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Write ``{prompt, chosen, rejected}`` pairs (the less stereotypical sentence chosen) from
    one seeded half of a CrowS-Pairs CSV; a suite task with ``half: test`` and the same
    ``half_seed`` scores the other half. Returns the file and counts (rows, per bias type)."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} exists; pass --overwrite to replace it")
    if prompt not in ("shared", "empty"):
        raise DataError(f"--prompt must be shared or empty, not {prompt!r}")
    table = read_table(str(data), on_error="strict", defer=False)
    missing = {"sent_more", "sent_less"} - set(table.columns)
    if missing:
        raise DataError(
            f"{data}: not a CrowS-Pairs file; it lacks the column(s) {', '.join(sorted(missing))}"
        )
    idx = seeded_half(len(table), half, seed)  # type: ignore[arg-type]
    rows = preference_rows(
        [table.rows[i] for i in idx],
        [table.row_ids[i] for i in idx],
        prompt,  # type: ignore[arg-type]
    )
    path = atomic_write_jsonl(out, rows)
    counts = {
        "pairs": len(rows),
        "of": len(table),
        "half": half,
        "seed": seed,
        "with_prompt": sum(bool(r["prompt"]) for r in rows),
        "by_bias_type": dict(sorted(Counter(str(r["bias_type"]) for r in rows).items())),
    }
    return path, counts
