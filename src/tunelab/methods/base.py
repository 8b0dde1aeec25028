"""The method seam: choose the trainable set, save in the ecosystem's format, load it back."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

#: ``encoder.layer.3.`` (BERT), ``model.layers.3.`` (Llama, BART), ``encoder.block.3.`` (T5),
#: ``h.3.`` (GPT-2): the index of a transformer layer (the leftmost match: T5's blocks hold
#: numbered sub-layers)
LAYER_INDEX = re.compile(r"\.(?:layers?|block|h)\.(\d+)\.")


def in_head(name: str, head_modules: list[str]) -> bool:
    """Whether parameter ``name`` belongs to one of the task-head modules."""
    return any(f".{h}." in f".{name}" for h in head_modules)


def layer_index(name: str) -> int | None:
    m = LAYER_INDEX.search(name)
    return int(m.group(1)) if m else None


def count_layers(model) -> int:
    """Number of numbered transformer layers among the model's parameters."""
    found = {i for n, _ in model.named_parameters() if (i := layer_index(n)) is not None}
    return max(found) + 1 if found else 0


class Method(ABC):
    """A way of adapting a pretrained model (full fine-tuning, LoRA, ...)."""

    name: str
    description: str = ""

    @abstractmethod
    def apply(self, model, cfg, head_modules: list[str], tokenizer=None):
        """Return the model prepared for training, with exactly the method's parameters trainable.

        ``tokenizer`` is there for methods that initialise from text (prompt, prefix)."""

    @abstractmethod
    def save(self, model, out_dir: Path) -> None:
        """Write the final model in a format plain transformers / peft load."""

    @abstractmethod
    def load(self, base_model, out_dir: Path):
        """Rebuild the trained model from ``save``'s output on top of a freshly loaded base."""

    def merge(self, model):
        """The model with the method's weights folded into the base, or None when the saved
        model already is a plain full model (full fine-tuning, freeze, BitFit)."""
        return None

    def unwrap(self, model):
        """The underlying transformers model (for saving the base or calling generate)."""
        return model

    def trainable_state(self, model) -> dict[str, Any]:
        """The trainable tensors, by name (what a checkpoint stores)."""
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def load_trainable_state(self, model, state: dict[str, Any]) -> None:
        import torch

        params = dict(model.named_parameters())
        missing = [n for n in state if n not in params]
        if missing:
            raise KeyError(f"checkpoint holds unknown parameters: {missing[:5]}")
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)


def parameter_report(model) -> dict[str, Any]:
    """Trainable and total parameter counts and the trainable share (in percent)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "trainable": trainable,
        "total": total,
        "trainable_pct": 100.0 * trainable / max(total, 1),
    }
