"""Every GLUE / SuperGLUE / NER file of the shared data loads with the row counts its README
gives and no malformed row, both as a table and through its benchmark recipe's task."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import SHARED_DATA
from tunelab.config import load_config
from tunelab.data.sources import read_table
from tunelab.models.loading import load_tokenizer
from tunelab.models.registry import resolve_model
from tunelab.tasks import build_task, load_splits
from tunelab.tasks.splits import read_train_table

ROOT = Path(__file__).resolve().parents[1]
COLA = ["source", "label", "mark", "sentence"]

#: file → rows, as /work/shared/data/README.md gives them
ROWS = {
    "glue/STS-B/train.tsv": 5749,
    "glue/STS-B/dev.tsv": 1500,
    "glue/RTE/train.tsv": 2490,
    "glue/RTE/dev.tsv": 277,
    "glue/MRPC/train.tsv": 3668,
    "glue/MRPC/dev.tsv": 408,
    "glue/CoLA/train.tsv": 8551,
    "glue/CoLA/dev.tsv": 1043,
    "glue/QNLI/dev.tsv": 5463,
    "superglue/CB/train.jsonl": 250,
    "superglue/CB/val.jsonl": 56,
    "superglue/COPA/train.jsonl": 400,
    "superglue/COPA/val.jsonl": 100,
    "superglue/WiC/train.jsonl": 5428,
    "superglue/WiC/val.jsonl": 638,
    "ner/conll2003/train.txt": 14041,
    "ner/conll2003/valid.txt": 3250,
    "ner/conll2003/test.txt": 3453,
}
#: words of the CoNLL files (the README's token counts)
WORDS = {"train.txt": 203621, "valid.txt": 51362, "test.txt": 46435}


def _present(rel: str) -> Path:
    path = SHARED_DATA / rel
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


@pytest.mark.parametrize("rel", list(ROWS))
def test_file_loads_with_the_readme_row_count(rel):
    path = _present(rel)
    table = read_table(str(path), columns=COLA if "CoLA" in rel else None)
    assert len(table) == ROWS[rel] and table.skipped == []
    if rel.startswith("ner/"):
        assert sum(len(r["tokens"]) for r in table.rows) == WORDS[path.name]
        assert all(len(r["tokens"]) == len(r["tags"]) for r in table.rows)
    if "STS-B" in rel:  # quote characters are text, not CSV quoting
        assert all(0.0 <= float(r["score"]) <= 5.0 for r in table.rows)
    if "MRPC" in rel:  # the BOM is not part of the first column's name
        assert table.columns[0] == "Quality"


RECIPES = [
    *sorted((ROOT / "configs" / "glue").glob("*.yaml")),
    *sorted((ROOT / "configs" / "superglue").glob("*.yaml")),
]


def _has_data(recipe: Path) -> bool:
    data = yaml.safe_load(recipe.read_text())["data"]
    folder = SHARED_DATA / recipe.parent.name
    return all((folder / data[k]).is_file() for k in ("train", "validation"))


#: the recipes whose files the shared folder holds (MNLI, QNLI train, QQP, WNLI, GLUE's SST-2
#: layout and SuperGLUE's BoolQ/RTE layouts are not there; `tunelab benchmark` skips them)
WITH_DATA = [r for r in RECIPES if _has_data(r)]


def test_the_shared_folder_covers_the_expected_recipes():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    names = {f"{r.parent.name}/{r.stem}" for r in WITH_DATA}
    assert names == {
        "glue/cola",
        "glue/mrpc",
        "glue/rte",
        "glue/stsb",
        "superglue/cb",
        "superglue/copa",
        "superglue/wic",
    }


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer(resolve_model("minilm-l6"))


@pytest.mark.parametrize("recipe", WITH_DATA, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_reads_every_row_of_its_data(recipe, minilm_tokenizer):
    raw = yaml.safe_load(recipe.read_text())
    bench = recipe.parent.name
    for key in ("train", "validation"):
        _present(f"{bench}/{raw['data'][key]}")
        raw["data"][key] = str(SHARED_DATA / bench / raw["data"][key])
    cfg = load_config(raw)
    table = read_train_table(cfg)
    task = build_task(cfg, minilm_tokenizer, table)
    splits = load_splits(cfg, task, table)
    rel = {
        s: f"{bench}/{raw['data'][k].split(bench + '/')[-1]}"
        for s, k in (("train", "train"), ("validation", "validation"))
    }
    for name, split in splits.items():
        assert split.skipped == [] and len(split) == ROWS[rel[name]], name
    if recipe.stem == "wic":  # the target word is marked in both sentences
        rec = splits["validation"].records[0]
        assert rec["text"].count("*") == 2 and rec["text_pair"].count("*") == 2


def test_conll_recipe_reads_every_sentence(minilm_tokenizer):
    _present("ner/conll2003/valid.txt")
    cfg = load_config(
        ROOT / "configs" / "ner_conll2003_lora.yaml",
        {
            "data": {
                k: str(SHARED_DATA / f"ner/conll2003/{f}")
                for k, f in (
                    ("train", "valid.txt"),
                    ("validation", "test.txt"),
                    ("test", "test.txt"),
                )
            }
        },
    )
    table = read_train_table(cfg)
    task = build_task(cfg, minilm_tokenizer, table)
    splits = load_splits(cfg, task, table)
    assert task.labels == [
        "O",
        "B-LOC",
        "I-LOC",
        "B-MISC",
        "I-MISC",
        "B-ORG",
        "I-ORG",
        "B-PER",
        "I-PER",
    ]
    assert len(splits["train"]) == 3250 and len(splits["validation"]) == 3453
