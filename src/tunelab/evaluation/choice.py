"""Multiple-choice scoring by log-likelihood, as lm-evaluation-harness defines it.

For each example the model scores every choice as a continuation of the prompt: the summed
log-probability of the choice's tokens. ``acc`` picks the highest sum; ``acc_norm`` divides each
sum by the choice's length in characters first (lm-evaluation-harness's ``acc_norm``). This is also
how a language model classifies without a head: by constrained choice among label words.
"""

from __future__ import annotations

from typing import Any

#: a batch ends early where the next row would be shorter than this share of its widest row
MIN_FILL = 0.9


def choice_loglikelihoods(
    model,
    prompts: list[list[int]],
    choice_ids: list[list[list[int]]],
    pad_id: int,
    batch_size: int,
    device,
    seq2seq: bool = False,
    autocast=None,
    causal_mask_only: bool = False,
    min_fill: float = MIN_FILL,
) -> list[list[float]]:
    """Summed log-probability of each choice's token ids after its example's prompt ids
    (``autocast``: a callable giving a fresh mixed-precision context per batch).

    A decoder scores an example whose choices are all one token long (yes/no, label words)
    in one row: the prompt's last position predicts every choice. Other examples take one row
    per choice. Only the scored positions go through the log-softmax. ``causal_mask_only``
    (a causal SDPA model): rows are right-padded and only real positions are read, so no
    attention mask is needed, and SDPA takes its causal kernel. ``min_fill``: see
    :func:`length_batches` (0: ``batch_size`` rows at a time).
    """
    import contextlib

    import torch

    # one row: (example, prompt ids, continuation ids fed to the model, [(choice, its ids)])
    rows: list[tuple[int, list[int], list[int], list[tuple[int, list[int]]]]] = []
    for i, (p, cs) in enumerate(zip(prompts, choice_ids)):
        for j, ids in enumerate(cs):
            if not ids:
                raise ValueError(f"choice {j} of example {i} has no tokens")
        if not seq2seq and len(cs) > 1 and all(len(ids) == 1 for ids in cs):
            rows.append((i, list(p), [], [(j, list(ids)) for j, ids in enumerate(cs)]))
        else:
            rows.extend((i, list(p), list(ids), [(j, list(ids))]) for j, ids in enumerate(cs))
    out = [[0.0] * len(cs) for cs in choice_ids]
    width = [len(p) + len(c) for _, p, c, _ in rows]
    model.eval()
    with torch.inference_mode():
        for batch in length_batches(width, batch_size, min_fill):
            chunk = [rows[k] for k in batch]
            with autocast() if autocast is not None else contextlib.nullcontext():
                scores = _score(model, chunk, pad_id, device, seq2seq, causal_mask_only)
            for (i, _, _, _), per_choice in zip(chunk, scores):
                for j, value in per_choice.items():
                    out[i][j] = value
    return out


def length_batches(widths: list[int], batch_size: int, min_fill: float = MIN_FILL):
    """Row indices in batches of at most ``batch_size``, longest first, each batch's rows at
    least ``min_fill`` of its widest: every row's padding stays under 1 - ``min_fill``.

    On the 400 BoolQ rows of ``benchmarks/bench_eval.py`` (SmolLM2's tokenizer, batch 8) the
    padded tokens fall from 3.9 % to 1.6 % of the real ones, at 56 batches instead of 50.
    """
    if batch_size < 1 or not 0 <= min_fill <= 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1, min_fill {min_fill} in [0, 1]")
    order = sorted(range(len(widths)), key=lambda k: -widths[k])
    batch: list[int] = []
    for k in order:
        if batch and (len(batch) == batch_size or widths[k] < min_fill * widths[batch[0]]):
            yield batch
            batch = []
        batch.append(k)
    if batch:
        yield batch


def _score(model, chunk, pad: int, device, seq2seq: bool, no_mask: bool = False):
    import torch

    if seq2seq:
        enc_w = max(len(p) for _, p, _, _ in chunk)
        dec_w = max(len(c) for _, _, c, _ in chunk)
        ids = torch.full((len(chunk), enc_w), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full((len(chunk), dec_w), -100, dtype=torch.long)
        for r, (_, p, c, _) in enumerate(chunk):
            ids[r, : len(p)], mask[r, : len(p)] = torch.tensor(p), 1
            labels[r, : len(c)] = torch.tensor(c)
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
        ).logits.float()
        logp = logits.log_softmax(-1)
        labels = labels.to(device)
        tok = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        sums = (tok * (labels != -100)).sum(-1).tolist()
        return [{choices[0][0]: s} for (_, _, _, choices), s in zip(chunk, sums)]
    width = max(len(p) + len(c) for _, p, c, _ in chunk)
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (_, p, c, _) in enumerate(chunk):
        seq = p + c
        ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
    # position t predicts token t + 1: the prompt's last position predicts the first
    # continuation token. Only the positions some row scores go through the LM head.
    spans = [(len(p) - 1, max(len(c), 1)) for _, p, c, _ in chunk]
    keep = sorted({t for first, n in spans for t in range(first, first + n)})
    column = {t: k for k, t in enumerate(keep)}
    inputs = {"input_ids": ids.to(device)}
    if not no_mask:
        inputs["attention_mask"] = mask.to(device)
    logits = model(
        **inputs, use_cache=False, logits_to_keep=torch.tensor(keep, device=device)
    ).logits
    out = []
    for r, (_, _, _, choices) in enumerate(chunk):
        first, n = spans[r]
        cols = torch.tensor([column[t] for t in range(first, first + n)], device=logits.device)
        logp = logits[r, cols].float().log_softmax(-1)
        steps = torch.arange(n, device=logp.device)
        out.append(
            {j: float(logp[steps, torch.tensor(t, device=logp.device)].sum()) for j, t in choices}
        )
    return out


def choice_metrics(
    scores: list[list[float]], choices: list[list[str]], gold: list[int]
) -> dict[str, Any]:
    """``acc`` and ``acc_norm`` (x 100) from the choices' log-likelihoods."""
    n = max(len(scores), 1)
    acc = sum(max(range(len(s)), key=s.__getitem__) == g for s, g in zip(scores, gold))
    acc_norm = sum(
        max(range(len(s)), key=lambda j, s=s, cs=cs: s[j] / max(len(cs[j]), 1)) == g
        for s, cs, g in zip(scores, choices, gold)
    )
    return {"acc": 100.0 * acc / n, "acc_norm": 100.0 * acc_norm / n}


def gold_index(reference: Any, choices: list[str]) -> int:
    """Which choice the reference names (case-insensitive; True/False read as yes/no)."""
    if isinstance(reference, bool):
        reference = "yes" if reference else "no"
    if isinstance(reference, list):
        reference = reference[0] if reference else ""
    ref = str(reference).strip().lower()
    for j, c in enumerate(choices):
        if c.strip().lower() == ref:
            return j
    raise KeyError(f"reference {reference!r} is not one of the choices {choices}")
