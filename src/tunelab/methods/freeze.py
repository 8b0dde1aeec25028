"""Partial fine-tuning: only the top ``k`` transformer layers and the task head train."""

from __future__ import annotations

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods.full import FullFineTuning
from tunelab.models.layers import count_layers, in_head, layer_index
from tunelab.utils.settings import Section


class FreezeSettings(Section):
    train_top_layers: int = Field(
        2, ge=0, description="Transformer layers, counted from the top, that train (plus the head)."
    )


class FreezeLayers(FullFineTuning):
    name = "freeze"
    description = "Train only the top k layers (freeze.train_top_layers) and the task head."
    settings_class = FreezeSettings

    def apply(self, model, cfg, head_modules: list[str], tokenizer=None):
        k = getattr(cfg, self.settings_key()).train_top_layers
        n = count_layers(model)
        if n == 0:
            raise ConfigError("method=freeze: no numbered transformer layers found in this model")
        if k > n:
            raise ConfigError(f"freeze.train_top_layers={k}, but the model has only {n} layers")
        for name, p in model.named_parameters():
            i = layer_index(name)
            if i is not None:
                train = i >= n - k
            else:
                # what sits above the top layer (Llama's final norm, BERT's pooler) trains with it
                above = k > 0 and "embed" not in name.lower() and "shared" not in name.lower()
                train = in_head(name, head_modules) or above
            p.requires_grad_(train)
        return model
