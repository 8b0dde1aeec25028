"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021).

Written by hand: PEFT has none (its issue #244) and the AdapterHub library pins an older
transformers. An adapter wraps the output projection of a sub-layer (attention, feed-forward):
``y = W x; y + up(act(down(y)))``, before the residual connection, as in both papers. The
up-projection starts at zero, so the adapted model starts exactly as the pretrained one.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods.own import OwnMethod, find_modules
from tunelab.utils.settings import Section

#: per model family: (attention output projections, feed-forward output projections)
PLACES: dict[str, tuple[str, str]] = {
    "bert": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "roberta": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "xlm-roberta": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "electra": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "distilbert": (r"attention\.out_lin$", r"ffn\.lin2$"),
    "llama": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "mistral": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "qwen2": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "qwen3": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "gemma": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "bart": (r"(self_attn|encoder_attn)\.out_proj$", r"\.fc2$"),
    "mbart": (r"(self_attn|encoder_attn)\.out_proj$", r"\.fc2$"),
    "t5": (r"(SelfAttention|EncDecAttention)\.o$", r"DenseReluDense\.wo$"),
    "mt5": (r"(SelfAttention|EncDecAttention)\.o$", r"DenseReluDense\.wo$"),
}

NORM = re.compile(r"(layer_?norm|LayerNorm|_norm|\.norm)", re.IGNORECASE)


def _activation(name: str):
    import torch.nn as nn

    return {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}[name]()


@functools.cache
def _make_adapter_out():
    import torch.nn as nn

    class AdapterOut(nn.Module):
        """An output projection followed by a residual bottleneck adapter."""

        def __init__(self, base: nn.Linear, bottleneck: int, activation: str):
            super().__init__()
            width = base.out_features
            self.base = base
            self.adapter_down = nn.Linear(width, bottleneck)
            self.adapter_act = _activation(activation)
            self.adapter_up = nn.Linear(bottleneck, width)
            nn.init.normal_(self.adapter_down.weight, std=1e-2)
            nn.init.zeros_(self.adapter_down.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)
            self.adapter_down.to(base.weight.device)
            self.adapter_up.to(base.weight.device)

        # T5's feed-forward block reads ``wo.weight`` for its dtype handling
        @property
        def weight(self):
            return self.base.weight

        @property
        def bias(self):
            return self.base.bias

        #: False: the pretrained projection alone (a preference task's reference model)
        enabled = True

        def forward(self, x):
            y = self.base(x)
            if not self.enabled:
                return y
            return y + self.adapter_up(self.adapter_act(self.adapter_down(y)))

    return AdapterOut


def place_patterns(model, placement: str) -> list[re.Pattern]:
    mtype = getattr(model.config, "model_type", "")
    if mtype not in PLACES:
        raise ConfigError(
            f"method=adapter: no adapter placement known for model type {mtype!r}; "
            f"supported: {', '.join(sorted(PLACES))}"
        )
    attn, ffn = PLACES[mtype]
    return [re.compile(ffn)] if placement == "pfeiffer" else [re.compile(attn), re.compile(ffn)]


class AdapterSettings(Section):
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby",
        description="`houlsby`: a bottleneck after the attention and the feed-forward block of "
        "every layer; `pfeiffer`: after the feed-forward block only.",
    )
    reduction_factor: int = Field(
        16, ge=1, le=4096, description="Hidden size divided by the bottleneck width."
    )
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = Field(
        "relu", description="Activation between the down- and up-projection."
    )
    train_layernorm: bool = Field(
        False, description="Also train the layer norms of the transformer (Houlsby et al. do)."
    )


@contextlib.contextmanager
def _adapters_off(model):
    """The model with every bottleneck adapter passing its projection's output through."""
    mods = [m for m in model.modules() if isinstance(m, _make_adapter_out())]
    for m in mods:
        m.enabled = False
    try:
        yield model
    finally:
        for m in mods:
            m.enabled = True


class BottleneckAdapter(OwnMethod):
    name = "adapter"
    settings_class = AdapterSettings
    section = "adapter"
    description = (
        "Bottleneck adapters after attention and feed-forward (houlsby) or feed-forward only "
        "(pfeiffer); options under adapter:."
    )
    merge_refusal = "an adapter is a non-linear bottleneck, not a change of existing weights"

    def build(self, model, settings: dict[str, Any], tokenizer=None, initialise: bool = True):
        import torch.nn as nn

        adapter_out = _make_adapter_out()
        targets: list[tuple[str, nn.Module]] = []
        for pat in place_patterns(model, settings["placement"]):
            targets += [(n, m) for n, m in find_modules(model, pat) if isinstance(m, nn.Linear)]
        if not targets:
            raise ConfigError(
                f"method=adapter: found no output projections to wrap in {type(model).__name__}"
            )
        for name, linear in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            width = max(1, linear.out_features // settings["reduction_factor"])
            setattr(parent, child, adapter_out(linear, width, settings["non_linearity"]))
        for name, p in model.named_parameters():
            train = ".adapter_" in name
            if settings.get("train_layernorm") and NORM.search(name) and "embed" not in name:
                train = True
            p.requires_grad_(train)
        return model

    def reference_off(self, model):
        # trained layer norms are pretrained weights changed in place: no switch brings them back
        return None if self.settings.get("train_layernorm") else _adapters_off(model)
