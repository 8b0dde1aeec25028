"""Several adapters on one base: side by side, and combined by weighted sum."""

from __future__ import annotations

import pytest
import torch

from tunelab.api import merge

TEXTS = ["a superb film", "the plot was dull and weak"]


@pytest.fixture
def two_lora_runs(tiny_bert, keyword_data, tmp_path):
    import tunelab
    from helpers import tiny_config

    runs = {}
    for name, seed in (("a", 0), ("b", 1)):
        cfg = tiny_config(
            tiny_bert,
            keyword_data,
            tmp_path / "runs",
            method="lora",
            **{"training.max_steps": 10, "training.lr": 2e-2, "training.seed": seed},
        )
        cfg["output"]["name"] = name
        runs[name] = tunelab.train(cfg).run_dir
    return runs


def test_side_by_side_matches_each_run_alone(two_lora_runs):
    import tunelab

    alone = {n: tunelab.predict(d, texts=TEXTS) for n, d in two_lora_runs.items()}
    assert alone["a"] != alone["b"]
    both = tunelab.load_adapters(two_lora_runs)
    for name in ("a", "b", "a"):  # switching back and forth
        rows = both.predict(TEXTS, adapter=name)
        for got, ref in zip(rows, alone[name]):
            assert got["label"] == ref["label"]
            assert list(got["probabilities"].values()) == pytest.approx(
                list(ref["probabilities"].values()), abs=1e-5
            )
    with pytest.raises(tunelab.TunelabError, match="no adapter 'c'"):
        both.use("c")


def _merged_state(run):
    from transformers import AutoModelForSequenceClassification

    path = merge(run, overwrite=True)
    return AutoModelForSequenceClassification.from_pretrained(path).state_dict()


def test_combined_update_is_the_weighted_sum(two_lora_runs, tmp_path, tiny_bert):
    from transformers import AutoModelForSequenceClassification

    import tunelab
    from tunelab.cli import main

    out = tmp_path / "mix"
    assert (
        main(
            [
                "combine",
                *[f"{n}={d}" for n, d in two_lora_runs.items()],
                "--weights",
                "0.7,0.3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    merged = _merged_state(out)
    a, b = _merged_state(two_lora_runs["a"]), _merged_state(two_lora_runs["b"])
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    expected = base[key] + 0.7 * (a[key] - base[key]) + 0.3 * (b[key] - base[key])
    assert not torch.allclose(a[key], b[key])
    assert torch.allclose(merged[key], expected, atol=1e-5)
    head = "classifier.weight"
    assert torch.allclose(merged[head], 0.7 * a[head] + 0.3 * b[head], atol=1e-6)
    # the combined run is a run: predict and eval use it
    assert len(tunelab.predict(out, texts=TEXTS)) == 2
    # weight 1 / 0 reproduces the first run exactly
    one = tunelab.combine_adapters(two_lora_runs, {"a": 1.0, "b": 0.0}, tmp_path / "one")
    for got, ref in zip(
        tunelab.predict(one, texts=TEXTS), tunelab.predict(two_lora_runs["a"], texts=TEXTS)
    ):
        assert list(got["probabilities"].values()) == pytest.approx(
            list(ref["probabilities"].values()), abs=1e-5
        )
    with pytest.raises(tunelab.TunelabError, match="already exists"):
        tunelab.combine_adapters(two_lora_runs, None, out)


def test_only_compatible_runs_combine(two_lora_runs, tiny_bert, keyword_data, tmp_path):
    import tunelab
    from helpers import tiny_config

    cfg = tiny_config(tiny_bert, keyword_data, tmp_path / "runs", **{"training.max_steps": 2})
    cfg["output"]["name"] = "full"
    full = tunelab.train(cfg).run_dir
    with pytest.raises(tunelab.TunelabError, match="method full is not an adapter"):
        tunelab.load_adapters({"a": two_lora_runs["a"], "f": full})
    with pytest.raises(tunelab.TunelabError, match="weights are for"):
        tunelab.combine_adapters(two_lora_runs, {"a": 1.0}, tmp_path / "x")
