"""``data.test_fraction``: a seeded test split carved from the training file."""

from __future__ import annotations

import pytest

from helpers import tiny_config
from tunelab.errors import ConfigError


def test_test_fraction_holds_out_disjoint_rows(tiny_bert, keyword_data, tmp_path):
    import tunelab
    from tunelab.config import load_config
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model
    from tunelab.tasks import build_task, load_splits
    from tunelab.tasks.splits import read_train_table

    raw = tiny_config(tiny_bert, keyword_data, tmp_path / "runs", **{"data.validation": None})
    raw["data"]["test_fraction"] = 0.25
    cfg = load_config(raw)
    table = read_train_table(cfg)

    task = build_task(cfg, load_tokenizer(resolve_model(str(tiny_bert))), train_table=table)
    splits = load_splits(cfg, task, table)
    rows = {k: {r["row"] for r in s.records} for k, s in splits.items()}
    assert len(rows["test"]) == 40 and len(rows["validation"]) == 12  # 25 % of 160, 10 % of 120
    assert len(rows["train"]) == 108
    assert not (rows["test"] & rows["train"]) and not (rows["test"] & rows["validation"])
    assert not (rows["validation"] & rows["train"])
    again = load_splits(cfg, task, table)  # seeded: the same rows every time
    assert {r["row"] for r in again["test"].records} == rows["test"]
    res = tunelab.train(raw)
    assert res.test_metrics is not None and res.test_metrics["n"] == 40
    assert tunelab.evaluate(res.run_dir, split="test")["n"] == 40
    with pytest.raises(ConfigError, match="data.test_fraction: give data.test"):
        load_config(raw, ["data.test=x.csv"])
