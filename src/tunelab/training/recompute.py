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

# a matmul whose output is this many times wider than its inner dimension is a low-rank
# up-projection (LoRA's B: rank r in, the layer's width out): cheaper to redo than to keep
LOW_RANK_RATIO = 4


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
            return CheckpointPolicy.MUST_SAVE
        if op in matmuls:
            left, right = args[1:3] if op is aten.addmm.default else args[:2]
            if LOW_RANK_RATIO * left.shape[-1] > right.shape[-1]:
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
