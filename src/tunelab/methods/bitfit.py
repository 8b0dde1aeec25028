"""BitFit (Ben Zaken et al., 2022): only bias terms and the task head train.

PEFT has no BitFit, so it saves in tunelab's own format (see ``methods/own.py``): the biases
and the head, well under 1 % of a full model. ``tunelab merge`` writes them into the base
model as a plain transformers folder (exact: BitFit changes no structure)."""

from __future__ import annotations

from typing import Any

from tunelab.errors import ConfigError
from tunelab.methods.own import OwnMethod
from tunelab.models.layers import in_head


class BitFit(OwnMethod):
    name = "bitfit"
    description = "Train only the bias terms and the task head; saves just those."
    mergeable = True

    def build(self, model, settings: dict[str, Any], tokenizer=None, initialise: bool = True):
        n_bias = 0
        for name, p in model.named_parameters():
            is_bias = name.endswith(".bias") and not in_head(name, self.heads)
            n_bias += is_bias
            p.requires_grad_(is_bias)
        if n_bias == 0:
            fits = ", ".join(m for m in self.known_methods if m != self.name)
            raise ConfigError(
                f"method=bitfit: {type(model).__name__} has no bias terms outside the head "
                f"(Llama-family models have none), so BitFit would train only the head; "
                f"use one of: {fits}"
            )
        return model

    def merge(self, model):
        """The loaded model already holds the trained biases in place: it is the merge."""
        return model
