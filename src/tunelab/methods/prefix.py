"""Prefix tuning (Li & Liang, 2021) on encoders, decoders and encoder-decoders.

Written by hand: PEFT's prefix tuning refuses every model under transformers 5 ("Model does not
support past key values"), encoders included. Each self-attention module gets ``P`` trainable
key and value vectors per head, handed to it through its own ``cache`` argument: transformers'
attention modules call ``cache.update(k, v, ...)`` and attend over what it returns, so a small
object that prepends the prefix is all the model sees. The attention mask is widened to match.
Nothing in transformers is patched; the hooks sit on this model's own modules.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods.own import OwnMethod
from tunelab.utils.settings import Section

KEY_NAMES = ("key", "k_proj", "k", "k_lin")
CROSS = ("encoder_attn", "EncDecAttention", "crossattention")


class PrefixSettings(Section):
    num_virtual_tokens: int = Field(
        20, ge=1, le=1024, description="Prefix length: key/value vectors per attention layer."
    )
    projection: bool = Field(
        False,
        description="Reparameterise the prefixes through a two-layer MLP while training "
        "(Li & Liang); only the resulting prefixes are saved.",
    )
    projection_hidden: int = Field(512, ge=1, description="Hidden width of that MLP.")
    init_text: str | None = Field(
        None,
        description="Initialise the prefixes with the model's own keys/values of this text "
        "(repeated to length); unset: of randomly drawn vocabulary tokens.",
    )


class PrefixKV:
    """Stands in for a transformers ``Cache`` inside one attention call: prepends the prefix.

    During generation the model passes its own cache; it is ``inner`` here and keeps only the
    real tokens' keys and values, so positions and cache lengths stay those of the real text."""

    def __init__(self, key, value, inner=None, layer_idx: int | None = None):
        self.key, self.value = key, value  # [1, kv_heads, P, head_dim]
        self.inner, self.layer_idx = inner, layer_idx

    def update(self, key_states, value_states, layer_idx=None, *args, **kwargs):
        import torch

        if self.inner is not None:
            key_states, value_states = self.inner.update(
                key_states, value_states, layer_idx, *args, **kwargs
            )
        k = self.key.to(key_states.dtype).expand(key_states.shape[0], -1, -1, -1)
        v = self.value.to(value_states.dtype).expand(value_states.shape[0], -1, -1, -1)
        return torch.cat([k, key_states], dim=2), torch.cat([v, value_states], dim=2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        # T5 places the queries after what the cache holds: the real tokens follow the prefix
        past = self.inner.get_seq_length(layer_idx) if self.inner is not None else 0
        return self.key.shape[2] + past


class Recorder:
    """A pass-through cache that records the keys and values an attention module computes."""

    def __init__(self):
        self.key = self.value = None

    def update(self, key_states, value_states, layer_idx=None, *args, **kwargs):
        self.key, self.value = key_states.detach(), value_states.detach()
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


def attention_modules(model) -> list[tuple[str, Any]]:
    """Self-attention modules that take a ``cache`` and own a key projection."""
    found = []
    for name, mod in model.named_modules():
        if name.rsplit(".", 1)[-1] in CROSS:
            continue
        key = next((getattr(mod, k) for k in KEY_NAMES if hasattr(mod, k)), None)
        if key is None or not hasattr(key, "weight"):
            continue
        if "cache" in inspect.signature(mod.forward).parameters:
            found.append((name, mod))
    return found


def kv_shape(mod) -> tuple[int, int]:
    """(key/value heads, head dim) of an attention module."""
    key = next(getattr(mod, k) for k in KEY_NAMES if hasattr(mod, k))
    out = key.weight.shape[0]
    head_dim = next(
        (
            int(getattr(mod, a))
            for a in ("head_dim", "attention_head_size", "key_value_proj_dim")
            if isinstance(getattr(mod, a, None), int)
        ),
        None,
    )
    if head_dim is None:
        raise ConfigError(f"method=prefix: cannot tell the head size of {type(mod).__name__}")
    return out // head_dim, head_dim


def _widen_mask(mask, n_prefix: int, causal: bool, q_len: int, device, past: int = 0):
    """The attention mask with ``n_prefix`` always-visible key positions in front (``past``:
    real tokens already in the generation cache)."""
    import torch

    if mask is None:
        if not causal or q_len == 1:
            return None  # every key is visible, prefix included
        # an explicit causal mask: SDPA's is_causal would misalign queries and longer keys
        real = torch.ones(q_len, past + q_len, dtype=torch.bool, device=device).tril(past)
        front = torch.ones(q_len, n_prefix, dtype=torch.bool, device=device)
        return torch.cat([front, real], dim=-1)[None, None]
    shape = (*mask.shape[:-1], n_prefix)
    if mask.dtype == torch.bool:
        front = torch.ones(shape, dtype=torch.bool, device=mask.device)
    else:  # additive float mask: 0 means visible
        front = torch.zeros(shape, dtype=mask.dtype, device=mask.device)
    return torch.cat([front, mask], dim=-1)


def _make_prefix_model():
    import torch
    import torch.nn as nn

    class PrefixTuned(nn.Module):
        """A transformers model whose self-attention layers attend to trained prefixes."""

        def __init__(self, base, settings: dict[str, Any]):
            super().__init__()
            self.base = base
            mods = attention_modules(base)
            if not mods:
                raise ConfigError(
                    f"method=prefix: {type(base).__name__} has no self-attention module that "
                    "takes a key/value cache; prefix tuning cannot attach to it"
                )
            self.names = [n for n, _ in mods]
            heads, dim = kv_shape(mods[0][1])
            if any(kv_shape(m) != (heads, dim) for _, m in mods):
                raise ConfigError("method=prefix: attention layers differ in shape")
            n, P = len(mods), settings["num_virtual_tokens"]
            self.shape = (n, 2, heads, P, dim)
            if settings["projection"]:
                width = base.get_input_embeddings().weight.shape[1]
                self.prefix_input = nn.Parameter(torch.zeros(P, width))
                self.prefix_mlp = nn.Sequential(
                    nn.Linear(width, settings["projection_hidden"]),
                    nn.Tanh(),
                    nn.Linear(settings["projection_hidden"], n * 2 * heads * dim),
                )
            else:
                self.prefix = nn.Parameter(torch.zeros(self.shape))
            self._kv = None
            self._takes_use_cache = "use_cache" in inspect.signature(base.forward).parameters
            self.causal = [bool(getattr(m, "is_causal", False)) for _, m in mods]
            for i, (_, mod) in enumerate(mods):
                mod.register_forward_pre_hook(self._hook(i), with_kwargs=True)

        @property
        def config(self):
            return self.base.config

        def prefixes(self):
            """All prefixes: [layers, 2 (key, value), kv_heads, P, head_dim]."""
            if hasattr(self, "prefix"):
                return self.prefix
            n, _, heads, P, dim = self.shape
            out = self.prefix_mlp(self.prefix_input)  # [P, n * 2 * heads * dim]
            return out.view(P, n, 2, heads, dim).permute(1, 2, 3, 0, 4)

        def _hook(self, i: int):
            def hook(module, args, kwargs):
                if self._kv is None:
                    return None  # called outside this wrapper (e.g. initialisation)
                inner = kwargs.get("cache")
                if inner is not None and hasattr(inner, "self_attention_cache"):
                    inner = inner.self_attention_cache  # encoder-decoder: this is self-attention
                hidden = args[0] if args else kwargs["hidden_states"]
                kv = self._kv[i]
                kwargs["cache"] = PrefixKV(kv[0][None], kv[1][None], inner)
                key = "mask" if "mask" in kwargs else "attention_mask"
                past = inner.get_seq_length(module.layer_idx) if inner is not None else 0
                kwargs[key] = _widen_mask(
                    kwargs.get(key),
                    kv.shape[2],
                    self.causal[i],
                    hidden.shape[1],
                    hidden.device,
                    int(past),
                )
                return args, kwargs

            return hook

        def train(self, mode: bool = True):
            if not mode:
                self._kv = None  # a training forward's prefixes, kept for recomputation
            return super().train(mode)

        def generate(self, **kwargs):
            """``generate`` of the base model, its attention layers seeing the prefixes."""
            self._kv = self.prefixes()
            try:
                return self.base.generate(**kwargs)
            finally:
                self._kv = None

        def forward(self, **inputs):
            if "position_ids" in inputs and inputs.get("attention_mask") is None:
                # config refuses packing for this method (supports_packing); a guard, not a message
                raise RuntimeError("prefix tuning got packed rows")
            if self._takes_use_cache:
                inputs.setdefault("use_cache", False)  # the prefix is the only cache here
            self._kv = self.prefixes()
            # activation checkpointing reruns the layers (and these hooks) in the backward
            # pass: they must find this forward's prefixes then; the next forward replaces them
            recompute = self.training and torch.is_grad_enabled() and _checkpointing(self.base)
            try:
                return self.base(**inputs)
            finally:
                if not recompute:
                    self._kv = None

    return PrefixTuned


@contextlib.contextmanager
def _prefixes_off(model):
    """The base model with no prefixes: the hooks see none (a recomputing forward's are kept)."""
    kept, model._kv = model._kv, None
    try:
        yield model.base
    finally:
        model._kv = kept


def _checkpointing(model) -> bool:
    """Whether a transformers model has activation checkpointing on."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # new name first
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


class PrefixTuning(OwnMethod):
    name = "prefix"
    supports_packing = False  # extra positions in front of each row, not of each example
    settings_class = PrefixSettings
    section = "prefix"
    wraps_model = True
    description = "Trained key/value prefixes in every self-attention layer; options under prefix:."
    merge_refusal = "prefixes are extra attention positions, not a change of existing weights"

    def build(self, model, settings: dict[str, Any], tokenizer=None, initialise: bool = True):
        import torch

        if not initialise:  # a saved run holds the prefixes themselves, not the MLP
            settings = {**settings, "projection": False}
        wrapped = _make_prefix_model()(model, settings)
        if initialise:
            P = settings["num_virtual_tokens"]
            ids = init_token_ids(model, tokenizer, settings.get("init_text"), P)
            with torch.no_grad():
                if settings["projection"]:
                    emb = model.get_input_embeddings()(ids[None])[0]
                    wrapped.prefix_input.copy_(emb)
                else:
                    wrapped.prefix.copy_(_record_kv(model, wrapped.names, ids))
        return wrapped

    def reference_off(self, model):
        return _prefixes_off(model)

    def saved_tensors(self, model) -> dict[str, Any]:
        # the MLP is a training device only (Li & Liang): save the prefixes it produces
        out = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        out = {n: t for n, t in out.items() if not n.startswith(("prefix_input", "prefix_mlp"))}
        out["prefix"] = model.prefixes().detach()
        return out


def init_token_ids(model, tokenizer, text: str | None, n: int):
    """``n`` token ids: ``text`` repeated to length, or random non-special vocabulary tokens."""
    import torch

    vocab = model.get_input_embeddings().weight.shape[0]
    if text:
        if tokenizer is None:
            raise ConfigError("init_text needs the model's tokenizer")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"init_text {text!r} has no tokens")
        ids = (ids * (n // len(ids) + 1))[:n]
        return torch.tensor(ids)
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        if isinstance(getattr(model.config, key, None), int):
            special.add(getattr(model.config, key))
    pool = torch.tensor([i for i in range(vocab) if i not in special])
    return pool[torch.randint(len(pool), (n,))]


def _record_kv(model, names: list[str], ids):
    """The model's own keys and values for the token sequence ``ids``, per attention module."""
    import torch

    recorders = {name: Recorder() for name in names}
    handles = []
    for name in names:
        mod = model.get_submodule(name)

        def hook(module, args, kwargs, rec=recorders[name]):
            kwargs["cache"] = rec
            return args, kwargs

        handles.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        inputs: dict[str, Any] = {"input_ids": ids[None]}
        if getattr(model.config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = ids[None]
        with torch.no_grad():
            model.base_model(**inputs)  # the backbone: no head, no label or EOS checks
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return torch.stack([torch.stack([recorders[n].key[0], recorders[n].value[0]]) for n in names])
