"""Activation checkpointing: full, or selective (keep matmul outputs, recompute the rest).

Selective checkpointing uses torch's own facility (``create_selective_checkpoint_contexts``,
passed to transformers' checkpointing as ``context_fn``). What is ours is only the policy: which
op outputs a layer keeps. It keeps the outputs of full-width matmuls and of attention (costly to
redo) and recomputes everything else: norms, activation functions, rotary embeddings, residual
adds, and LoRA's rank-r up-projection (its inner dimension is the rank, so redoing it is cheap,
while its output is as wide as the layer's).
"""

from __future__ import annotations

from functools import partial
from typing import Any

# a matmul with an inner dimension this small, and an output at least LOW_RANK_RATIO times
# wider, is a low-rank up-projection (LoRA's B: rank r in, the layer's width out): cheaper to
# redo than to keep. (The ratio alone would also catch MLP up-projections, e.g. GPT-2's 4x.)
LOW_RANK_MAX, LOW_RANK_RATIO = 256, 4


def _dropout_p(op, args, kwargs) -> float:
    """An attention op's dropout probability (0 when it has none)."""
    for i, arg in enumerate(op._schema.arguments):
        if arg.name == "dropout_p":
            value = kwargs.get("dropout_p", args[i] if i < len(args) else arg.default_value)
            return float(value or 0.0)
    return 0.0


def _policy():
    import torch
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    matmuls = {aten.mm.default, aten.addmm.default, aten.bmm.default}
    attention = {
        getattr(aten, name).default
        for name in (
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_cudnn_attention",
            "_flash_attention_forward",
            "_efficient_attention_forward",
        )
        if hasattr(aten, name)
    }

    def policy(ctx, op, *args, **kwargs):
        if op in attention:
            # with dropout, a kept output would skip the kernel's random draws in the backward
            # pass, and every later dropout of the layer would redraw a different mask
            if _dropout_p(op, args, kwargs) > 0:
                return CheckpointPolicy.PREFER_RECOMPUTE
            return CheckpointPolicy.MUST_SAVE
        if op in matmuls:
            left, right = args[1:3] if op is aten.addmm.default else args[:2]
            inner, width = left.shape[-1], right.shape[-1]
            if inner > LOW_RANK_MAX or LOW_RANK_RATIO * inner > width:
                return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def checkpointing_kwargs(mode: str) -> dict[str, Any]:
    """Keyword arguments for ``torch.utils.checkpoint.checkpoint`` in ``mode`` (full/selective)."""
    kwargs: dict[str, Any] = {"use_reentrant": False}  # needs no gradient on frozen inputs
    if mode == "selective":
        from torch.utils.checkpoint import create_selective_checkpoint_contexts

        kwargs["context_fn"] = partial(create_selective_checkpoint_contexts, _policy())
    return kwargs


def enable_checkpointing(model, mode: str) -> None:
    """Switch a transformers model's activation checkpointing on in ``mode``."""
    kwargs = checkpointing_kwargs(mode)
    if hasattr(model, "activation_checkpointing_enable"):  # the newer transformers 5 name
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(kwargs)
