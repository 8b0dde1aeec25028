from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunelab.config import RunConfig, config_help, load_config, parse_overrides
from tunelab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(
    [
        *ROOT.glob("configs/*.yaml"),
        *ROOT.glob("configs/glue/*.yaml"),
        *ROOT.glob("configs/superglue/*.yaml"),
        *ROOT.glob("src/tunelab/configs/*.yaml"),
    ]
)


def test_defaults_are_valid_and_documented():
    cfg = RunConfig()
    assert cfg.method == "lora" and cfg.model.name == "minilm-l6"
    assert cfg.model.trust_remote_code is False
    text = config_help()
    assert "training.lr = 5e-05" in text and "Peak learning rate" in text


def test_overrides_are_typed_and_nested():
    out = parse_overrides(
        ["training.lr=1e-4", "method=full", "data.labels=[a, b]", "lora.target_modules=all-linear"]
    )
    assert out == {
        "training": {"lr": 1e-4},
        "method": "full",
        "data": {"labels": ["a", "b"]},
        "lora": {"target_modules": "all-linear"},
    }
    cfg = load_config({"data": {"train": "x.csv"}}, ["training.lr=2e-4", "training.epochs=1"])
    assert cfg.training.lr == 2e-4 and cfg.training.epochs == 1.0 and cfg.data.train == "x.csv"


def test_yaml_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"method": "full", "training": {"batch_size": 8}}))
    cfg = load_config(p, ["training.batch_size=4"])
    assert cfg.method == "full" and cfg.training.batch_size == 4


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (["training.lr=abc"], "training.lr: Input should be a valid number"),
        (["training.lr=-1"], "training.lr: Input should be greater than 0"),
        (
            ["training.precision=fp8"],
            "training.precision: Input should be 'auto', 'bf16', 'fp16' or 'fp32'",
        ),
        (
            ["training.learning_rate=1"],
            "training.learning_rate: unknown key; allowed here: epochs, max_steps",
        ),
        (
            ["method=adalora"],
            "method: unknown method 'adalora'; allowed: full, freeze, lora, dora, ia3, adapter, prefix, prompt, bitfit",
        ),
        (["data.on_error=ignore"], "data.on_error: Input should be 'strict' or 'skip'"),
        (["output.name=a/b"], "output.name: must be a plain folder name"),
        (["nonsense=1"], "nonsense: unknown key; allowed here: model, data, task, method"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config({}, override)
    assert needle in str(e.value)


def test_malformed_override_and_files(tmp_path):
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["training.lr"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.data.train or all(t.data.train for t in cfg.mixture.tasks), (
        f"{path} names no training data"
    )
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and "tunelab" in first, "configs open with their launch command"


def test_shipped_configs_exist():
    assert len(SHIPPED) >= 3


def test_group_by_length_defaults_off_for_token_classification_only():
    # length-grouped batches cost entity F1 on CoNLL-2003 (benchmarks/README.md)
    plain, ner = load_config({}), load_config({"task": {"type": "token_classification"}})
    assert plain.groups_by_length() is True and ner.groups_by_length() is False
    assert ner.training.group_by_length is None  # unset stays unset: the run's config says so
    forced = load_config(
        {"task": {"type": "token_classification"}}, ["training.group_by_length=true"]
    )
    assert forced.groups_by_length() is True
    assert load_config({}, ["training.group_by_length=false"]).groups_by_length() is False
    assert load_config({"task": {"type": "regression"}}).groups_by_length() is True
    # a stage of another task type decides by its own type, also after a round trip
    staged = load_config({"stages": [{"name": "ner", "task": {"type": "token_classification"}}]})
    again = RunConfig.model_validate(staged.to_dict())
    for cfg in (staged, again):
        assert cfg.groups_by_length() is True
        assert cfg.stage_config(cfg.stages[0]).groups_by_length() is False
