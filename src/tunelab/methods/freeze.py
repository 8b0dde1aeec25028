"""Partial fine-tuning: only the top ``k`` transformer layers and the task head train."""

from __future__ import annotations

import re

from tunelab.errors import ConfigError
from tunelab.methods.full import FullFineTuning

_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def _n_layers(model) -> int:
    found = {int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))}
    return max(found) + 1 if found else 0


class FreezeLayers(FullFineTuning):
    name = "freeze"
    description = "Train only the top k layers (freeze.train_top_layers) and the task head."

    def apply(self, model, cfg, head_modules: list[str]):
        k = cfg.freeze.train_top_layers
        n = _n_layers(model)
        if n == 0:
            raise ConfigError("method=freeze: no numbered transformer layers found in this model")
        if k > n:
            raise ConfigError(f"freeze.train_top_layers={k}, but the model has only {n} layers")
        for name, p in model.named_parameters():
            m = _LAYER.search(name)
            if m:
                train = int(m.group(1)) >= n - k
            else:
                in_head = any(f".{h}." in f".{name}" for h in head_modules)
                # final norms (e.g. Llama's model.norm) sit above the top layer
                final_norm = "norm" in name.lower() and "embed" not in name.lower() and k > 0
                train = in_head or final_norm
            p.requires_grad_(train)
        return model
