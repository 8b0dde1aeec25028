"""Batched generation with the KV cache (``model.generate``) for every method's model.

Prompts are sorted by length and batched, so little compute goes to padding; causal LMs are
padded on the left (so every row's next token sits at the same position), seq2seq on the right.
"""

from __future__ import annotations

import contextlib
from typing import Any


def generate_ids(
    model,
    tokenizer,
    prompts: list[list[int]],
    batch_size: int,
    accelerator,
    seq2seq: bool = False,
    **gen: Any,
) -> list[str]:
    """Decoded continuations of ``prompts`` (token ids), in input order, on every process."""
    import torch
    from accelerate.utils import gather_object

    from tunelab.data.batching import eval_batches

    target = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    target.eval()
    out: list[tuple[int, str]] = []
    lengths = [len(p) for p in prompts]
    # generation fills batches by length; a smaller batch keeps beams in memory
    bs = max(1, batch_size // max(1, gen.get("num_beams", 1)))
    with torch.inference_mode():
        for idx in eval_batches(lengths, bs, rank, world):
            rows = [prompts[i] for i in idx]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                if seq2seq:
                    ids[j, : len(r)], mask[j, : len(r)] = torch.tensor(r), 1
                else:
                    ids[j, width - len(r) :], mask[j, width - len(r) :] = torch.tensor(r), 1
            ctx = accelerator.autocast() if accelerator is not None else contextlib.nullcontext()
            with ctx:
                res = target.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    pad_token_id=pad,
                    eos_token_id=eos,
                    **gen,
                )
            new = res if seq2seq else res[:, width:]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            out.extend(zip(idx, (t.strip() for t in texts)))
    if world > 1:
        out = gather_object(out)
    result = [""] * len(prompts)
    for i, t in out:
        result[i] = t
    return result
