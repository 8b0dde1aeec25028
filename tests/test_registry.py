"""Method and task registries: a method from outside tunelab, with its own settings section."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from pydantic import Field

from helpers import tiny_config
from tunelab.config import Section, load_config
from tunelab.errors import ConfigError
from tunelab.methods import get_method, method_names, register, unregister
from tunelab.methods.full import FullFineTuning
from tunelab.models.layers import in_head

BUILTIN = ["full", "freeze", "lora", "dora", "ia3", "adapter", "prefix", "prompt", "bitfit"]


class MineSettings(Section):
    train_biases: bool = Field(False, description="Also train every bias term.")
    scale: float = Field(1.0, gt=0, description="A setting the test reads back.")


class MineMethod(FullFineTuning):
    """Trains the task head (and, if asked, the biases); saves and loads as full fine-tuning."""

    name = "mine"
    description = "A test method: the head, optionally the biases."
    settings_class = MineSettings

    def apply(self, model, cfg, head_modules, tokenizer=None):
        s = getattr(cfg, self.settings_key())
        self.seen = s.model_dump()
        for n, p in model.named_parameters():
            p.requires_grad_(in_head(n, head_modules) or (s.train_biases and n.endswith(".bias")))
        return model


@pytest.fixture
def mine():
    register(MineMethod)
    yield MineMethod
    unregister("mine")


def test_a_registered_method_trains_from_yaml_with_its_own_section(
    mine, tiny_bert, keyword_data, tmp_path
):
    import tunelab

    assert method_names() == [*BUILTIN, "mine"]  # the built-ins stay, in their order
    cfg = tiny_config(
        tiny_bert, keyword_data, tmp_path / "runs", method="mine", **{"training.max_steps": 20}
    )
    cfg["mine"] = {"train_biases": True, "scale": 2.5}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    assert loaded.mine.scale == 2.5 and loaded.to_dict()["mine"] == cfg["mine"]
    res = tunelab.train(path)
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["method"] == "mine" and info["status"] == "completed"
    head_and_biases = info["parameters"]["trainable"]
    assert 0 < head_and_biases < info["parameters"]["total"] / 4
    saved = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert saved["mine"] == {"train_biases": True, "scale": 2.5}
    preds = tunelab.predict(res.run_dir, texts=["a superb film"])
    assert set(preds[0]["probabilities"]) == {"negative", "positive"}
    # the settings section is validated like every other, naming the key
    with pytest.raises(ConfigError, match=r"mine\.scale: Input should be greater than 0"):
        load_config(path, ["mine.scale=0"])
    with pytest.raises(ConfigError, match=r"mine\.nope: unknown key; allowed here: train_biases"):
        load_config(path, ["mine.nope=1"])
    assert "mine.scale = 1.0" in tunelab.config.config_help()


def test_registering_a_taken_name_is_a_clear_error(mine):
    with pytest.raises(ConfigError, match="'mine' is already registered"):
        register(MineMethod)

    class Lora(FullFineTuning):
        name = "lora"

    with pytest.raises(ConfigError, match="'lora' is already registered"):
        register(Lora)
    with pytest.raises(ConfigError, match="built-in"):
        unregister("lora")
    assert method_names() == [*BUILTIN, "mine"]


def test_register_first_thing_in_a_fresh_process_keeps_the_builtins():
    code = (
        "from tunelab.methods import register, method_names\n"
        "from tunelab.methods.full import FullFineTuning\n"
        "class Mine(FullFineTuning):\n    name = 'mine'\n"
        "register(Mine)\nprint(','.join(method_names()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == [*BUILTIN, "mine"]


def test_method_capabilities_come_from_the_methods():
    from tunelab.methods import methods_where
    from tunelab.training.resume import resume_fixed_keys

    assert methods_where(saves_peft_adapter=True) == ["lora", "dora", "ia3"]
    assert methods_where(combinable=True) == ["lora"]
    assert methods_where(mergeable=False) == ["adapter", "prefix", "prompt"]
    # resume refuses a change of the run's own method settings, whatever the method
    for m, key in (
        ("lora", "lora"),
        ("dora", "lora"),
        ("adapter", "adapter"),
        ("prompt", "prompt"),
    ):
        assert key in resume_fixed_keys({"method": m})
    assert resume_fixed_keys({"method": "full"})[:4] == ("model", "data", "task", "method")
    assert get_method("bitfit").known_methods[:2] == ("full", "freeze")


def test_task_registry_yields_the_mixture():
    from tunelab.tasks import get_task, task_kinds
    from tunelab.tasks.mixture import MixtureTask

    assert task_kinds() == [
        "classification",
        "generation",
        "mixture",
        "regression",
        "multi_label",
        "token_classification",
        "multiple_choice",
        "preference",
    ]
    assert get_task("mixture") is MixtureTask
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        get_task("nope")
