"""Where a model's layers and task head are, by parameter name (every method and the loop use it)."""

from __future__ import annotations

import contextlib
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


def output_head(model):
    """The LM head (output embeddings) of a causal LM, inside any wrapper (PEFT, tunelab's
    method wrappers), or None."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            head = module.get_output_embeddings()
            if head is not None:
                return head
    return None


@contextlib.contextmanager
def head_skipped(head):
    """Within, ``head`` computes nothing: what reaches it (the final hidden states at the kept
    positions) is appended to the yielded list, and it gets an empty slice of them instead.

    Evaluation uses it to run the LM head in small chunks after the forward pass, so that no
    [batch, positions, vocabulary] logits buffer is allocated (49k-wide for SmolLM2: 3.2 GB for
    8 rows of 2,048 tokens, handed back to the system after each batch). A forward pre-hook,
    torch's public API, is the one seam that works through every wrapper.
    """
    seen: list = []

    def capture(_module, args):
        seen.append(args[0])
        return (args[0][..., :0, :], *args[1:])

    handle = head.register_forward_pre_hook(capture)
    try:
        yield seen
    finally:
        handle.remove()


def chunked_nll(head, hidden, target, ignore_index: int):
    """Per-position negative log-likelihood of ``target`` [N] under ``head(hidden)`` [N, H],
    computed a few rows at a time: each chunk's logits stay under 16 MB, so the allocator reuses
    one block instead of mapping fresh pages for every batch."""
    import torch
    import torch.nn.functional as F

    weight = getattr(head, "weight", None)
    vocab = int(weight.shape[0]) if weight is not None else 32768
    step = max(16, (1 << 22) // max(vocab, 1))
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], step):
        logits = head(hidden[s : s + step]).float()
        out[s : s + step] = F.cross_entropy(
            logits, target[s : s + step], reduction="none", ignore_index=ignore_index
        )
    return out
