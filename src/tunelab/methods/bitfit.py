"""BitFit (Ben Zaken et al., 2022): only bias terms and the task head train."""

from __future__ import annotations

from tunelab.errors import ConfigError
from tunelab.methods.base import in_head
from tunelab.methods.full import FullFineTuning


class BitFit(FullFineTuning):
    name = "bitfit"
    description = "Train only the bias terms and the task head."

    def apply(self, model, cfg, head_modules: list[str], tokenizer=None):
        n_bias = 0
        for name, p in model.named_parameters():
            head = in_head(name, head_modules)
            is_bias = name.endswith(".bias") and not head
            n_bias += is_bias
            p.requires_grad_(head or is_bias)
        if n_bias == 0:
            from tunelab.methods.registry import method_names

            fits = ", ".join(m for m in method_names() if m != "bitfit")
            raise ConfigError(
                f"method=bitfit: {type(model).__name__} has no bias terms outside the head "
                f"(Llama-family models have none), so BitFit would train only the head; "
                f"use one of: {fits}"
            )
        return model
