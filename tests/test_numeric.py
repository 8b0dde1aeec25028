"""Non-finite loss or gradients: the step is skipped, counted, logged; too many stop the run."""

from __future__ import annotations

import pytest

import tunelab
from helpers import tiny_config
from tunelab.errors import TunelabError
from tunelab.tasks.classification import ClassificationTask
from tunelab.training import checkpoint as ckpt
from tunelab.utils.io import read_jsonl


def inject_inf(monkeypatch, bad_calls):
    real = ClassificationTask.loss
    calls = {"n": 0}

    def loss(self, model, batch):
        calls["n"] += 1
        out = real(self, model, batch)
        return out * float("inf") if calls["n"] in bad_calls else out

    monkeypatch.setattr(ClassificationTask, "loss", loss)


def test_inf_steps_are_skipped_and_data_position_stays_right(
    tiny_bert, keyword_data, tmp_path, monkeypatch
):
    over = {"training.max_steps": 12, "training.eval_every": 6, "training.trace_examples": True}
    clean = tunelab.train(tiny_config(tiny_bert, keyword_data, tmp_path / "a", **over))
    inject_inf(monkeypatch, {3, 4})
    res = tunelab.train(tiny_config(tiny_bert, keyword_data, tmp_path / "b", **over))
    assert res.summary["skipped_steps"] == 2
    rows = read_jsonl(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if r["type"] == "skip"] == [3, 4]
    # the batches of skipped steps are consumed, not replayed: the data order is unchanged
    assert read_jsonl(res.run_dir / "trace-rank0.jsonl") == read_jsonl(
        clean.run_dir / "trace-rank0.jsonl"
    )
    import torch

    assert all(torch.isfinite(p).all() for p in tunelab.load_run(res.run_dir).model.parameters())


def test_consecutive_bad_steps_stop_with_a_usable_checkpoint(
    tiny_bert, keyword_data, tmp_path, monkeypatch
):
    inject_inf(monkeypatch, set(range(2, 100)))
    cfg = tiny_config(tiny_bert, keyword_data, tmp_path / "runs", **{"training.max_bad_steps": 3})
    with pytest.raises(TunelabError, match="3 consecutive non-finite steps"):
        tunelab.train(cfg)
    latest = ckpt.latest_checkpoint(tmp_path / "runs" / "run" / "checkpoints")
    assert latest["state"]["step"] == 4 and latest["state"]["skipped_steps"] == 3
