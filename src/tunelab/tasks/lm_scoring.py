"""How a language model is scored, with lm-evaluation-harness's definitions.

- Choices: the prompt's text and ``target_delimiter + choice`` are tokenized together and then
  split at the prompt's length (lm-eval's ``_encode_pair``); a choice scores its summed
  log-probability; ``acc_norm`` divides by the choice's length in characters.
- Documents: each row is scored from its start in windows of ``model.max_length`` tokens, the
  first token predicted from the BOS/prefix token (lm-eval's ``loglikelihood_rolling`` with
  ``context_len=1``); word and byte counts come from the original text.
- Streams (tunelab's older mode): rows end to end, EOS between them, in blocks.

Re-implemented here rather than imported, so that scoring needs no lm-eval install; the tests
and ``benchmarks/bench_eval.py`` check the two agree row by row.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from tunelab.data.lm_batches import IGNORE
from tunelab.data.sources import RowProblems
from tunelab.data.templates import get_path
from tunelab.errors import DataError
from tunelab.models.layers import causal_sdpa, chunked_nll, head_skipped, output_head
from tunelab.tasks.base import Split


def tok_encode(tokenizer, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """lm-eval's ``tok_encode``: the tokenizer's own special tokens, except for a text that
    already starts with the BOS token."""
    if add_special_tokens is None:
        bos = tokenizer.bos_token
        add_special_tokens = not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def prefix_token(tokenizer) -> int:
    """What predicts a document's (or an empty context's) first token: BOS, else EOS."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None else tokenizer.eos_token_id


def encode_pair(tokenizer, context: str, continuation: str, seq2seq: bool = False):
    """(context ids, continuation ids) as lm-eval's ``_encode_pair``: trailing spaces of the
    context move to the continuation; a causal LM tokenizes both together, then splits."""
    ctx, (cont,) = encode_choices(tokenizer, context, [continuation], seq2seq)
    return ctx, cont


def encode_choices(tokenizer, context: str, continuations: list[str], seq2seq: bool = False):
    """:func:`encode_pair` for several continuations of one context, which is tokenized once:
    (context ids, [continuation ids, ...])."""
    if not context:
        pre = prefix_token(tokenizer)
        conts = [tok_encode(tokenizer, c) for c in continuations]
        return [pre], [c[1:] if c and c[0] == pre and len(c) > 1 else c for c in conts]
    n_spaces = len(context) - len(context.rstrip())
    moved = context[-n_spaces:] if n_spaces else ""
    context = context[:-n_spaces] if n_spaces else context
    ctx = tok_encode(tokenizer, context)
    if seq2seq:
        return ctx, [tok_encode(tokenizer, moved + c, False) for c in continuations]
    return ctx, [tok_encode(tokenizer, context + moved + c)[len(ctx) :] for c in continuations]


def choice_eval(task, model, split: Split, idx_all: list[int], batch_size: int, accelerator):
    """Log-likelihood multiple choice: acc, acc_norm, each row's choice and log-likelihoods."""
    from tunelab.evaluation.choice import choice_loglikelihoods, choice_metrics, gold_index

    recs = [split.records[i] for i in idx_all]
    options = [r.get("choices") or list(task.s["choices"]) for r in recs]
    gold = []
    for r, opts in zip(recs, options):
        ref = r["reference"]
        if isinstance(ref, int) and not isinstance(ref, bool) and "choices" in r:
            gold.append(ref)
        else:
            gold.append(gold_index(ref, opts))
    delim = task.s.get("target_delimiter")
    if delim is None:
        delim = "" if task.use_chat else " "
    tok, limit = task.tokenizer, task.max_length + 1  # lm-eval keeps max_length + 1 tokens
    prompts, conts = [], []
    for r, opts in zip(recs, options):
        context = task.prompt_text(r["prompt"])
        ctx, cs = encode_choices(tok, context, [delim + o for o in opts], task.seq2seq)
        room = limit - max(len(c) for c in cs)
        prompts.append(ctx[-room:] if len(ctx) > room and not task.seq2seq else ctx)
        conts.append(cs)
    scores = choice_loglikelihoods(
        model,
        prompts,
        conts,
        task.pad_id if task.pad_id is not None else 0,
        batch_size,
        accelerator.device,
        task.seq2seq,
        accelerator.autocast,
        causal_mask_only=not task.seq2seq and causal_sdpa(model),
    )
    model.train(False)
    out = choice_metrics(scores, options, gold)
    out["choice_predictions"] = [
        opts[max(range(len(s)), key=s.__getitem__)] for s, opts in zip(scores, options)
    ]
    out["choice_loglikelihoods"] = scores
    one_row = [not task.seq2seq and len(cs) > 1 and all(len(c) == 1 for c in cs) for cs in conts]
    out["choice_forward_tokens"] = sum(
        len(p) if one else sum(len(p) + len(c) for c in cs)
        for p, cs, one in zip(prompts, conts, one_row)
    )
    return out


def text_split(task, table, name: str, on_error: str) -> Split:
    """Rows of raw text as scored blocks: per document, or one EOS-separated stream."""
    column = task.s["fields"].get("text", "text")
    original = task.s["fields"].get("original")
    problems = RowProblems(table.source, on_error)
    docs: list[tuple[int, str, str]] = []
    choices = column.split("|")  # e.g. "document|text": the first column a row has
    for row, rid in zip(table.rows, table.row_ids):
        text = next((v for c in choices if isinstance(v := get_path(row, c), str)), None)
        if text is None:
            problems.add(rid, f"{column} is missing or not text")
            continue
        orig = get_path(row, original) if original else text
        if not isinstance(orig, str):
            problems.add(rid, f"{original} is missing or not text")
            continue
        if text.strip():  # blank lines of a document file
            docs.append((rid, text, orig))
    skipped = problems.finish(table.skipped)
    if task.s["text_scoring"] == "document":
        features, records = _document_blocks(task, docs)
    else:
        features, records = _stream_blocks(task, docs)
    if not features:
        raise DataError(f"{table.source}: no text for split {name!r}; the split is empty")
    return Split(name, features, records, skipped)


def rolling_windows(tokens: list[int], prefix: int, max_len: int):
    """(input ids, labels) windows predicting every token of a document once, as
    lm-eval's ``get_rolling_token_windows(..., context_len=1)``: the first window predicts
    ``tokens[:max_len]`` from ``[prefix] + tokens[:max_len - 1]``; each next window predicts
    the next ``max_len`` tokens from the ``max_len`` tokens before each. Labels line up with
    the input ids shifted by one (position t predicts label t + 1), as in training."""
    first = min(max_len, len(tokens))
    yield [prefix, *tokens[:first]], [IGNORE, *tokens[:first]]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_len)
        end = done + n
        ids = tokens[max(end - max_len - 1, 0) : end]
        yield ids, [IGNORE] * (len(ids) - n) + tokens[end - n : end]
        done = end


def _document_blocks(task, docs):
    tok = task.tokenizer
    features, records = [], []
    for rid, text, orig in docs:
        tokens = tok_encode(tok, text)
        for k, (ids, labels) in enumerate(
            rolling_windows(tokens, prefix_token(tok), task.max_length)
        ):
            features.append({"input_ids": ids, "labels": labels, "prompt_len": 0})
            # lm-eval counts the words and bytes of the original page, once per document
            records.append(
                {
                    "row": rid,
                    "prompt": "",
                    "reference": None,
                    "response_words": len(re.split(r"\s+", orig)) if k == 0 else 0,
                    "response_bytes": len(orig.encode("utf-8")) if k == 0 else 0,
                }
            )
    return features, records


def _stream_blocks(task, docs):
    tok = task.tokenizer
    stream: list[int] = []
    words = nbytes = 0
    for _rid, text, orig in docs:
        stream += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        words += len(orig.split())
        nbytes += len(orig.encode("utf-8"))
    L = task.max_length
    ctx = min(int(task.s.get("context_tokens") or 0), L - 1)
    # rolling windows: the first block is scored whole; each later one scores L - ctx new
    # tokens and reads the ctx tokens before them as context only
    features, scored = [], []
    start = 0
    while start < len(stream):
        size = L if start == 0 else L - ctx
        lo = max(0, start - ctx) if start else 0
        ids = stream[lo : start + size]
        labels = [IGNORE] * (start - lo) + stream[start : start + size]
        if len(ids) > 1:
            features.append({"input_ids": ids, "labels": labels, "prompt_len": 0})
            scored.append(len(labels) - (start - lo))
        start += size
    share = [n / max(len(stream), 1) for n in scored]
    records: list[dict[str, Any]] = [
        {
            "row": i,
            "prompt": "",
            "reference": None,
            "response_words": words * s,
            "response_bytes": nbytes * s,
        }
        for i, s in enumerate(share)
    ]
    return features, records


#: models whose chunked LM head was checked against their own logits (True: it agrees)
_CHUNKED_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _chunked(model, head, inputs: dict[str, Any], keep, target):
    """(nll [B*K] flat) with the LM head run in chunks after the forward pass, or None when the
    model's forward gives something else than ``head(hidden)`` (a logit soft-cap or scale)."""
    with head_skipped(head) as seen:
        model(**inputs, logits_to_keep=keep, use_cache=False)
    if len(seen) != 1 or tuple(seen[0].shape[:2]) != (target.shape[0], keep.numel()):
        return None
    return chunked_nll(head, seen[0].flatten(0, 1), target[:, keep].flatten(), IGNORE)


def head_chunked_nll(model, inputs: dict[str, Any], keep, target):
    """Evaluation's per-position NLL through a chunked LM head (see ``models.layers``), or None
    where it does not apply. The first time a model is seen, its chunked values are checked
    against its own logits on a few tokens; a model that disagrees keeps the plain path."""
    import torch
    import torch.nn.functional as F

    if torch.is_grad_enabled() or (head := output_head(model)) is None:
        return None
    ok = _CHUNKED_OK.get(model)
    if ok is None:
        n = min(int(inputs["input_ids"].shape[1]), 16)
        small = {k: v[:1, :n] for k, v in inputs.items()}
        small_keep = torch.arange(n - 1, device=keep.device)
        small_target = target[:1, : n - 1].clamp(min=0)
        mine = _chunked(model, head, small, small_keep, small_target)
        logits = model(**small, logits_to_keep=small_keep, use_cache=False).logits.float()
        theirs = F.cross_entropy(logits.flatten(0, 1), small_target.flatten(), reduction="none")
        ok = mine is not None and bool(torch.allclose(mine, theirs, rtol=1e-4, atol=1e-4))
        _CHUNKED_OK[model] = ok
    return _chunked(model, head, inputs, keep, target) if ok else None
