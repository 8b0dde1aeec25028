"""Local data for lm-evaluation-harness's BoolQ and WikiText-2 tasks (offline: no hub).

`tunelab eval TARGET --lm-eval boolq_local,wikitext_local --include-path lm_eval_tasks` (or
`lm_eval --include_path lm_eval_tasks ...`). The files are read from `../shared/data` next to
this repository, or from `$TUNELAB_DATA`. The prompts, choices, detokenizer and metrics are
lm-eval's own; only where the rows come from differs from its `boolq` and `wikitext` tasks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer

DATA = Path(
    os.environ.get("TUNELAB_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set TUNELAB_DATA to the shared data folder")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def boolq(**_metadata) -> datasets.DatasetDict:
    """BoolQ dev (2,000 rows), with lm-eval's integer `label` (0 = no, 1 = yes)."""
    rows = [{**r, "label": int(bool(r["answer"]))} for r in _jsonl(DATA / "boolq/dev_2000.jsonl")]
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)})


def wikitext(**_metadata) -> datasets.DatasetDict:
    """WikiText-2 test as pages, grouped as EleutherAI's wikitext_document_level does."""
    from tunelab.data.wikitext import pages

    lines = [r["text"] for r in _jsonl(DATA / "wikitext2/wiki.test.tokens.jsonl")]
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_list([{"page": p} for p in pages(lines)])}
    )


__all__ = ["boolq", "process_results", "wikitext", "wikitext_detokenizer"]
