"""Running one batch: generation (``model.generate`` with a per-row stop and stream) and
classification (one forward pass per chunk of inputs).

Rows of different LoRA adapters of one base share a batch through PEFT's ``adapter_names``
(one name per row, ``__base__`` for none); an adapter whose method cannot mix (DoRA, IA3) runs
in batches of its own after ``set_adapter``. Generation pads on the left for causal LMs and on
the right for seq2seq, as :func:`tunelab.models.generate.generate_ids` does, with the same
arguments, so a request alone gives exactly what ``tunelab generate`` gives.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tunelab.workflows.serve.batching import Job
from tunelab.workflows.serve.targets import Group


def autocast(group: Group):
    """The group's own mixed precision (read from its run's config when it was loaded)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(group.precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(group.accelerator.device.type, dtype=dtype)


def _adapter_kwargs(row_jobs: list[Job]) -> dict[str, Any]:
    """``adapter_names`` (one per row) for a mixed batch; else activate the batch's adapter."""
    first = row_jobs[0].member
    if not first.group.peft:
        return {}
    if first.mixed:
        return {"adapter_names": [j.member.adapter for j in row_jobs]}
    first.group.model.set_adapter(first.adapter)
    return {}


class RowState:
    """One generated row: its tokens, the text sent so far, and why it stopped."""

    def __init__(self, job: Job, tokenizer, lock, eos: set[int]):
        self.job, self.tokenizer, self.lock, self.eos = job, tokenizer, lock, eos
        self.ids: list[int] = []
        self.generated = 0
        self.sent = ""
        self.text = ""
        self.done = False
        self.reason = "length"
        self.hold = max((len(s) for s in job.stops), default=1) - 1

    def step(self, token: int) -> None:
        job = self.job
        if job.cancelled:
            self.done, self.reason = True, "cancelled"
            return
        self.generated += 1
        if token in self.eos:
            self.finish("stop")
            return
        self.ids.append(token)
        with self.lock:
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = [i for i in (text.find(s) for s in job.stops) if i >= 0]
        if cut:
            self.text = text[: min(cut)]
            self.finish("stop")
            return
        self.text = text
        if self.generated >= job.max_tokens:
            self.finish("length")
            return
        visible = text.lstrip()
        if visible.endswith("\ufffd"):  # an incomplete character: wait for its other bytes
            return
        visible = visible[: len(visible) - self.hold] if self.hold else visible
        self._send(visible.rstrip())  # trailing spaces wait: the final text is stripped

    def _send(self, visible: str) -> None:
        if len(visible) > len(self.sent) and visible.startswith(self.sent):
            self.job.emit("delta", visible[len(self.sent) :])
            self.sent = visible

    def finish(self, reason: str) -> None:
        self.done, self.reason = True, reason
        final = self.text.strip()
        self._send(final)
        self.job.emit(
            "done",
            {
                "text": final,
                "finish_reason": reason,
                "prompt_tokens": len(self.job.prompt_ids),
                "completion_tokens": self.generated,
            },
        )


def _row_criteria(rows: list[RowState]):
    import torch
    from transformers import StoppingCriteria

    class RowStops(StoppingCriteria):
        """Called by ``generate`` after every new token: streams it and stops rows one by one."""

        def __call__(self, input_ids, scores, **kwargs):
            last = input_ids[:, -1].tolist()
            for row, token in zip(rows, last):
                if not row.done:
                    row.step(int(token))
            return torch.tensor([r.done for r in rows], device=input_ids.device)

    return RowStops()


def run_generation(jobs: list[Job]) -> None:
    """Generate for a batch of jobs of one key; every job gets its deltas and a ``done``."""
    import torch
    from transformers import StoppingCriteriaList

    member = jobs[0].member
    group, tok = member.group, member.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [RowState(j, tok, group.lock, {tok.eos_token_id}) for j in jobs]
    prompts = [j.prompt_ids for j in jobs]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        at = slice(0, len(p)) if group.seq2seq else slice(width - len(p), width)
        ids[i, at], mask[i, at] = torch.tensor(p), 1
    device = group.accelerator.device
    if jobs[0].seed is not None:
        torch.manual_seed(jobs[0].seed)
    with torch.inference_mode(), autocast(group):
        group.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pad_token_id=pad,
            eos_token_id=tok.eos_token_id,
            max_new_tokens=max(j.max_tokens for j in jobs),
            num_beams=1,
            stopping_criteria=StoppingCriteriaList([_row_criteria(rows)]),
            **jobs[0].sampling,
            **_adapter_kwargs(jobs),
        )
    for row in rows:  # rows that generate ended without a decision of ours
        if not row.done:
            row.finish("length")


def run_classification(jobs: list[Job], chunk: int = 64) -> None:
    """The task's ``head_output`` (class probabilities, a score, tag ids...) for every input of a
    batch of /v1/classify jobs, ``chunk`` inputs per forward pass (shortest first, so little goes to padding)."""
    import torch

    from tunelab.tasks.classification import model_inputs

    member = jobs[0].member
    group, task = member.group, member.task
    feats = [f for j in jobs for f in j.features]
    owner = [j for j in jobs for _ in j.features]
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    probs: list[list[Any]] = [[] for _ in feats]
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        batch = model_inputs(task.collate([feats[i] for i in part]))
        batch = {k: v.to(group.accelerator.device) for k, v in batch.items()}
        names = _adapter_kwargs([owner[i] for i in part])
        with torch.inference_mode(), autocast(group):
            out = task.head_output(group.model(**batch, **names).logits.float()).cpu().tolist()
        for i, p in zip(part, out):
            probs[i] = p
    at = 0
    for j in jobs:
        j.emit("done", probs[at : at + len(j.features)])
        at += len(j.features)
