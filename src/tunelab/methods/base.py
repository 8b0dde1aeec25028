"""The method seam: choose the trainable set, save in the ecosystem's format, load it back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from tunelab.utils.settings import Section


class Method(ABC):
    """A way of adapting a pretrained model (full fine-tuning, LoRA, ...)."""

    name: str
    description: str = ""
    #: the method's own settings section (a Section subclass), or None when it has none
    settings_class: type[Section] | None = None
    #: the config key of those settings; unset: the method's name (DoRA shares ``lora``)
    section: str | None = None
    #: saves a PEFT adapter folder, so runs load side by side on one base (``load_adapters``)
    saves_peft_adapter: bool = False
    #: PEFT serves rows of several of these adapters in one batch (``adapter_names``)
    mixed_adapter_batches: bool = False
    #: adapters of several runs can be summed into one (``tunelab combine``)
    combinable: bool = False
    #: ``merge`` gives a plain transformers model (a stage can hand its weights on)
    mergeable: bool = True
    #: resume refuses a change of the settings section (the checkpoint's tensors depend on it)
    resume_fixed: bool = True
    #: trains on packed rows (task.packing: several examples per row, positions restarting)
    supports_packing: bool = True
    #: every registered method's name, set by the registry (for messages that suggest others)
    known_methods: tuple[str, ...] = ()

    @classmethod
    def settings_key(cls) -> str | None:
        """The config section holding this method's settings (None: it has none)."""
        return (cls.section or cls.name) if cls.settings_class is not None else None

    def settings_of(self, cfg) -> dict[str, Any]:
        """This method's settings in ``cfg`` as a plain dict ({} for a method without any)."""
        key = self.settings_key()
        return getattr(cfg, key).model_dump() if key else {}

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

    def reference_off(self, model):
        """A context manager that yields a module computing what the pretrained model computes
        (this method's own weights switched off): a preference task's reference model without
        a second copy. None when the method trains the pretrained weights themselves."""
        return None

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
