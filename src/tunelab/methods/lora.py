"""LoRA through PEFT; saved as a PEFT adapter folder that ``PeftModel.from_pretrained`` loads."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods.base import Method
from tunelab.utils.settings import Section

# Attention and MLP projections per model family (PEFT's own defaults cover attention only).
DEFAULT_TARGETS: dict[str, list[str]] = {
    # query/value (as the LoRA paper) and the dense output/feed-forward projections
    "bert": ["query", "value", "dense"],
    "roberta": ["query", "value", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "t5": ["q", "k", "v", "o", "wi", "wo", "wi_0", "wi_1"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}


def peft_task_type(model):
    """PEFT's task type for a transformers model, from its head class."""
    from peft import TaskType

    cls = type(model).__name__
    if cls.endswith("ForCausalLM"):
        return TaskType.CAUSAL_LM
    if cls.endswith(("ForConditionalGeneration", "ForSeq2SeqLM")):
        return TaskType.SEQ_2_SEQ_LM
    if cls.endswith("ForSequenceClassification"):
        return TaskType.SEQ_CLS
    if cls.endswith("ForTokenClassification"):
        return TaskType.TOKEN_CLS
    return TaskType.FEATURE_EXTRACTION


class LoraSettings(Section):
    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None,
        description="Module names to adapt, or `all-linear`. Unset: attention and MLP "
        "projections of the model family.",
    )
    train_head: bool = Field(
        True, description="Train the newly initialised task head fully alongside LoRA."
    )
    rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r) (rsLoRA).")


class LoraMethod(Method):
    name = "lora"
    description = (
        "Low-rank adapters on the chosen linear layers (PEFT); the task head trains fully."
    )
    use_dora = False
    settings_class = LoraSettings
    section = "lora"
    saves_peft_adapter = True
    combinable = True
    mixed_adapter_batches = True

    def peft_config(self, model, cfg, head_modules: list[str]):
        from peft import LoraConfig

        lc = getattr(cfg, self.settings_key())
        targets = lc.target_modules
        if targets is None:
            mtype = getattr(model.config, "model_type", "")
            targets = DEFAULT_TARGETS.get(mtype, "all-linear")
        heads = list(head_modules) if lc.train_head else []
        exclude = None
        if heads and isinstance(targets, list):
            # The head trains in full; keep LoRA off its layers (e.g. BERT's pooler.dense).
            exclude = rf".*\b({'|'.join(map(re.escape, heads))})\b.*"
        return LoraConfig(
            task_type=peft_task_type(model),
            use_dora=self.use_dora,
            use_rslora=lc.rslora,
            r=lc.r,
            lora_alpha=lc.alpha,
            lora_dropout=lc.dropout,
            target_modules=targets,
            exclude_modules=exclude,
            modules_to_save=heads or None,
        )

    def apply(self, model, cfg, head_modules: list[str], tokenizer=None):
        from peft import get_peft_model

        pc = self.peft_config(model, cfg, head_modules)  # tokenizer unused
        try:
            with warnings.catch_warnings():
                # peft calls a transformers helper deprecated in v5; nothing for users to act on
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                return get_peft_model(model, pc)
        except ValueError as e:
            raise ConfigError(f"lora.target_modules: {str(e).splitlines()[0]}") from None

    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)

    def load(self, base_model, out_dir: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, out_dir)

    def unwrap(self, model):
        return model.get_base_model()

    def reference_off(self, model):
        return _adapters_disabled(model)

    def merge(self, model):
        # exact for LoRA, DoRA and IA3: the adapter is a reparameterisation of linear weights
        return model.merge_and_unload()


@contextlib.contextmanager
def _adapters_disabled(model):
    """PEFT's own switch: every adapter layer (LoRA, DoRA, IA3) returns the base output."""
    with model.disable_adapter():
        yield model


class DoraMethod(LoraMethod):
    name = "dora"
    description = "DoRA: LoRA with a learned magnitude per output (PEFT); options under lora:."
    use_dora = True
    combinable = False  # PEFT's weighted sums are defined for plain LoRA updates
    mixed_adapter_batches = False  # PEFT refuses adapter_names when DoRA is enabled
