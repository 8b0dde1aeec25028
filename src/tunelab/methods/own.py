"""Base for the methods PEFT lacks or cannot run here (bottleneck adapters, prefix and prompt
tuning on every family). They are written by hand, so they save in tunelab's own format:
``method_weights.safetensors`` (the method's tensors and the task head, by parameter name) and
``tunelab_method.json`` (the method, its settings and the head modules)."""

from __future__ import annotations

import contextlib
import json
from abc import abstractmethod
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError, RunDirError
from tunelab.methods.base import Method
from tunelab.models.layers import in_head

WEIGHTS = "method_weights.safetensors"
META = "tunelab_method.json"
FORMAT_VERSION = 1


class OwnMethod(Method):
    """A method whose weights tunelab saves itself (see the module docstring)."""

    #: whether ``build`` wraps the model in a module holding it as ``.base`` (prefix, prompt)
    wraps_model: bool = False
    #: why ``merge`` is impossible for this method
    merge_refusal: str = "it adds computation that no base-model weight can absorb"
    mergeable = False

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.heads: list[str] = []

    @abstractmethod
    def build(self, model, settings: dict[str, Any], tokenizer=None, initialise: bool = True):
        """Add the method's modules to ``model`` (base weights frozen) and return the model
        to train. ``settings`` may gain derived entries; they are saved and passed back on load."""

    def apply(self, model, cfg, head_modules: list[str], tokenizer=None):
        for p in model.parameters():
            p.requires_grad_(False)
        self.settings = self.settings_of(cfg)
        self.heads = list(head_modules)
        model = self.build(model, self.settings, tokenizer, initialise=True)
        self._train_heads(model)
        return model

    def _train_heads(self, model) -> None:
        for name, p in model.named_parameters():
            if in_head(name, self.heads):
                p.requires_grad_(True)

    def saved_tensors(self, model) -> dict[str, Any]:
        """What ``save`` writes; by default the trainable tensors."""
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def save(self, model, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.contiguous().cpu() for n, t in self.saved_tensors(model).items()}
        save_file(tensors, str(out_dir / WEIGHTS))
        base = self.unwrap(model)
        meta = {
            "format_version": FORMAT_VERSION,
            "method": self.name,
            "settings": self.settings,
            "head_modules": self.heads,
            "base_model_class": type(base).__name__,
            "base_model_type": getattr(base.config, "model_type", None),
        }
        (out_dir / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        base.config.save_pretrained(out_dir)  # the head's labels, for readers of the folder

    def load(self, base_model, out_dir: Path):
        import torch
        from safetensors.torch import load_file

        meta_path = Path(out_dir) / META
        if not meta_path.is_file():
            raise RunDirError(f"{out_dir} holds no {META}; it was not saved by method {self.name}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("method") != self.name:
            raise RunDirError(
                f"{out_dir} was saved by method {meta.get('method')!r}, not {self.name}"
            )
        for p in base_model.parameters():
            p.requires_grad_(False)
        self.settings, self.heads = dict(meta["settings"]), list(meta["head_modules"])
        model = self.build(base_model, self.settings, None, initialise=False)
        state = load_file(str(Path(out_dir) / WEIGHTS))
        params = dict(model.named_parameters())
        params.update(dict(model.named_buffers()))
        unknown = [n for n in state if n not in params]
        if unknown:
            raise RunDirError(
                f"{out_dir}: weights that fit no parameter of the model: {unknown[:3]}"
            )
        with torch.no_grad():
            for n, t in state.items():
                if params[n].shape != t.shape:
                    raise RunDirError(
                        f"{out_dir}: {n} has shape {tuple(t.shape)}, the model expects "
                        f"{tuple(params[n].shape)}"
                    )
                params[n].copy_(t)
        return model

    def unwrap(self, model):
        return model.base if self.wraps_model else model

    def reference_off(self, model):
        # a wrapper adds its input only in its own forward: the base it holds is the pretrained
        # model; an in-place method (BitFit) changes pretrained weights and has no switch
        return contextlib.nullcontext(model.base) if self.wraps_model else None

    def merge(self, model):
        raise ConfigError(
            f"method {self.name} cannot be merged into the base model: {self.merge_refusal}. "
            "Load the run with tunelab (tunelab.load_run, eval, predict) instead"
        )


def find_modules(model, pattern) -> list[tuple[str, Any]]:
    """``(name, module)`` pairs whose full name matches the compiled regex ``pattern``."""
    return [(n, m) for n, m in model.named_modules() if n and pattern.search(n)]
