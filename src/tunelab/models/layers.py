"""Where a model's layers and task head are, by parameter name (every method and the loop use it)."""

from __future__ import annotations

import re
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


def parameter_report(model) -> dict[str, Any]:
    """Trainable and total parameter counts and the trainable share (in percent)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "trainable": trainable,
        "total": total,
        "trainable_pct": 100.0 * trainable / max(total, 1),
    }


def causal_sdpa(model) -> bool:
    """Whether ``model`` (a decoder; tunelab's method wrappers pass their base's config on)
    attends through SDPA, whose mask serves attention only (flash-attention-2 also unpads with
    it; remote code and bidirectional decoders may differ)."""
    config = getattr(model, "config", None)
    return (
        getattr(config, "_attn_implementation", None) == "sdpa"
        and not getattr(config, "use_bidirectional_attention", False)
        and not getattr(config, "auto_map", None)
    )
