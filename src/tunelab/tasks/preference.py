"""Preference training: a preferred (chosen) over a rejected response to each prompt.

DPO (Rafailov et al., 2023) and its family: IPO, hinge (SLiC), SimPO and ORPO, each with TRL
1.16's definitions (``DPOTrainer``, ``CPOTrainer`` for SimPO, ``ORPOTrainer``), so that the
two give the same losses on the same rows. Written here rather than through TRL's trainers
because tunelab has one training loop (``training/loop.py``); the losses themselves are a few
lines (``tasks/preference_losses.py``).

Where the time goes, and what this task does about it:
- a pair is one row holding its prompt once, then the chosen and the rejected response; the
  rejected tokens take the positions after the prompt and a 4D attention mask keeps them from
  seeing the chosen ones (``preference.share_prompt``, on where the model attends through
  SDPA), so prompt tokens cost one forward pass, not two; elsewhere the chosen and rejected
  sequences run as a batch of 2B rows, as TRL's ``concatenated_forward``;
- the LM head runs only at response positions (``logits_to_keep``, as generation tasks do),
  and the log-probabilities come from a fused cross-entropy, never a full-vocabulary
  ``log_softmax`` over prompt positions;
- the reference model is the same model with the method's weights switched off
  (``Method.reference_off``) where the method allows it, else a frozen copy, or a scoring pass
  before training kept in the run directory (``preference.reference=precomputed``);
- packed rows (``task.packing``) hold both sides of many pairs, each with its own positions.

A row is ``{prompt, chosen, rejected}`` strings, or chat messages: ``chosen``/``rejected``
message lists that share every message but the last (HH-RLHF), or a ``prompt`` message list
with one-message ``chosen``/``rejected`` lists (TRL's conversational form); ``task.fields``
maps other column names onto these.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

from tunelab import rundir
from tunelab.config import PreferenceConfig
from tunelab.data.lm_batches import (
    IGNORE,
    pack_rows,
    packed_batch,
    padded_batch,
    shared_prompt_batch,
)
from tunelab.data.sources import RowProblems, Table, is_missing
from tunelab.data.templates import get_path
from tunelab.errors import ConfigError, DataError
from tunelab.models.layers import causal_sdpa, head_skipped, output_head
from tunelab.tasks.base import Split
from tunelab.tasks.generation import GenerationTask, config_is_seq2seq, right_padded
from tunelab.tasks.preference_losses import REFERENCE_LOSSES, preference_losses

#: the prompt's field name (a constant: the name is also a method's)
PROMPT_FIELD = "prompt"


def _messages(value: Any, name: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise KeyError(f"{name} is not a list of messages")
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise KeyError(f"a message of {name} lacks role or content")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]


def _answer(msgs: list[dict[str, str]], name: str) -> str:
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise KeyError(f"{name} does not end in exactly one assistant message after the prompt")
    return msgs[0]["content"]


def chat_pair(prompt: Any, chosen: Any, rejected: Any, name) -> tuple[Any, str, str]:
    """(prompt messages, chosen text, rejected text) of a chat-form row."""
    c, r = _messages(chosen, name("chosen")), _messages(rejected, name("rejected"))
    if not is_missing(prompt) and isinstance(prompt, list):  # TRL's conversational form
        return (
            _messages(prompt, name(PROMPT_FIELD)),
            _answer(c, name("chosen")),
            _answer(r, name("rejected")),
        )
    k = 0
    while k < min(len(c), len(r)) - 1 and c[k] == r[k]:
        k += 1
    if c[:k] != r[:k] or k == 0:
        raise KeyError(f"{name('chosen')} and {name('rejected')} share no prompt messages")
    return c[:k], _answer(c[k:], name("chosen")), _answer(r[k:], name("rejected"))


#: config entries that scale or cap logits after the LM head (the head alone would differ)
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _lm_head(model):
    """The output embedding of a plain causal LM (``models.layers.output_head``); None when
    the model's logits are more than that module's output (a soft-cap or a scale)."""
    config = getattr(getattr(model, "module", model), "config", None)  # through DDP
    if any(getattr(config, k, None) not in (None, 1, 1.0) for k in LOGIT_TRANSFORMS):
        return None
    return output_head(model)


def _content_hash(split: Split) -> str:
    """What a stored reference's values were computed from (every pair's tokens)."""
    import hashlib

    h = hashlib.sha256()
    for f in split.features:
        h.update(json.dumps([f["input_ids"], f["prompt_len"], f["chosen_len"]]).encode())
    return h.hexdigest()[:16]


class PreferenceTask(GenerationTask):
    kind = "preference"
    auto_class = "AutoModelForCausalLM"

    def __init__(
        self,
        settings: dict[str, Any],
        max_length: int,
        tokenizer=None,
        seed: int = 0,
        seq2seq: bool = False,
        preference: dict[str, Any] | None = None,
    ):
        super().__init__(settings, max_length, tokenizer, seed, None, seq2seq)
        self.p = dict(preference or PreferenceConfig().model_dump())
        #: a context manager factory yielding the reference model (None: batches carry the
        #: precomputed values, or the loss needs none); set by :meth:`prepare_training`
        self.reference = None
        #: batches hold each prompt once (``preference.share_prompt`` where it applies); set
        #: with the model, by :meth:`prepare_training` / :meth:`prepare_evaluation`
        self.shared = False

    @classmethod
    def from_config(cls, cfg, train_table: Table | None, tokenizer) -> PreferenceTask:
        from tunelab.models.registry import resolve_model

        settings = {k: getattr(cfg.task, k) for k in cls.SETTINGS}
        seq2seq = config_is_seq2seq(resolve_model(cfg.model.name, cfg.model.revision), cfg)
        if settings["packing"] and seq2seq:
            raise ConfigError("task.packing applies to causal LMs; this model is seq2seq")
        return cls(
            settings,
            cfg.model.max_length,
            tokenizer,
            cfg.training.seed,
            seq2seq,
            cfg.preference.model_dump(),
        )

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> PreferenceTask:
        return cls(
            meta["settings"],
            meta["max_length"],
            tokenizer,
            meta["seed"],
            meta.get("seq2seq", False),
            meta.get("preference"),
        )

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "preference": self.p}

    # -- rows -> pairs ---------------------------------------------------------------------
    def pair(self, row: dict[str, Any]) -> tuple[Any, str, str]:
        """(prompt, chosen, rejected) of a row; a KeyError names what is wrong with it."""
        fields = self.s["fields"]

        def name(key: str) -> str:
            return fields.get(key, key)

        def col(key: str) -> Any:
            return get_path(row, name(key))

        prompt, chosen, rejected = col(PROMPT_FIELD), col("chosen"), col("rejected")
        if isinstance(chosen, list) or isinstance(rejected, list):
            prompt, chosen, rejected = chat_pair(prompt, chosen, rejected, name)
        else:
            for key, v in zip((PROMPT_FIELD, "chosen", "rejected"), (prompt, chosen, rejected)):
                if is_missing(v) or not isinstance(v, (str, int, float)) or not str(v).strip():
                    raise KeyError(f"{name(key)} is missing or empty")
            prompt, chosen, rejected = str(prompt), str(chosen), str(rejected)
        if not str(chosen).strip() or not str(rejected).strip():
            raise KeyError(f"{name('chosen')} or {name('rejected')} is empty")
        if chosen == rejected:
            raise KeyError(f"{name('chosen')} and {name('rejected')} are the same response")
        return prompt, chosen, rejected

    def fit_pair(self, p: list[int], c: list[int], r: list[int]):
        """Cut a pair to ``model.max_length``: the prompt from the left first (to
        ``max_prompt_length``, or half the length), then the responses from the end; None
        when ``task.too_long=skip`` says drop it."""
        limit, mpl = self.max_length, self.p["max_prompt_length"]
        if mpl and len(p) > mpl:
            p = p[-mpl:]
        if self.seq2seq:  # the prompt is the encoder's input, the responses the decoder's
            if len(p) > limit or max(len(c), len(r)) > limit:
                if self.s["too_long"] == "skip":
                    return None
                p = p if len(p) <= limit else p[: limit - 1] + p[-1:]
            return p, c[:limit], r[:limit]
        longest = max(len(c), len(r))
        if len(p) + longest <= limit:
            return p, c, r
        if self.s["too_long"] == "skip":
            return None
        floor = min(mpl or limit // 2, limit - 1)
        keep = max(limit - longest, min(len(p), floor))
        p = p[len(p) - keep :]
        return p, c[: limit - len(p)], r[: limit - len(p)]

    def table_to_split(
        self, table: Table, name: str, *, require_labels: bool = True, on_error: str = "strict"
    ) -> Split:
        problems = RowProblems(table.source, on_error)
        features, records = [], []
        too_long: list[tuple[int, str]] = []
        for row, rid in zip(table.rows, table.row_ids):
            try:
                prompt, chosen, rejected = self.pair(row)
            except KeyError as e:
                problems.add(rid, str(e).strip("'\""))
                continue
            fitted = self.fit_pair(
                self.prompt_ids(prompt), self.response_ids(chosen), self.response_ids(rejected)
            )
            if fitted is None:
                too_long.append((rid, f"longer than model.max_length={self.max_length} tokens"))
                continue
            p, c, r = fitted
            # one list holds prompt, chosen and rejected: lengths count each token once, and
            # the resume fingerprint covers all three
            features.append({"input_ids": p + c + r, "prompt_len": len(p), "chosen_len": len(c)})
            records.append(
                {"row": rid, PROMPT_FIELD: prompt, "chosen": chosen, "rejected": rejected}
            )
        skipped = [*problems.finish(table.skipped), *too_long]
        if not features:
            raise DataError(
                f"{table.source}: no usable rows for split {name!r}; the split is empty"
            )
        return Split(name, features, records, skipped)

    # -- batches -----------------------------------------------------------------------------
    @staticmethod
    def sides(f: dict[str, Any]) -> tuple[list[int], list[int], int]:
        """(prompt + chosen, prompt + rejected, prompt length) of a feature."""
        ids, pl, cl = f["input_ids"], f["prompt_len"], f["chosen_len"]
        return ids[: pl + cl], ids[:pl] + ids[pl + cl :], pl

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch of 2B sequences, the chosen sides first; ``example`` says whose each
        label position is, ``ref_logps`` holds precomputed reference values. Shared-prompt
        batches hold B rows (or packed rows) instead, scored by index."""
        import torch

        pad = self.pad_id if self.pad_id is not None else 0
        batch = self._shared_batch(features, pad) if self.shared else self._row_batch(features, pad)
        if "ref_logps" in features[0]:
            refs = [f["ref_logps"][0] for f in features] + [f["ref_logps"][1] for f in features]
            batch["ref_logps"] = torch.tensor(refs, dtype=torch.float32)
        return batch

    def _shared_batch(self, features: list[dict[str, Any]], pad: int) -> dict[str, Any]:
        """One row per pair (or packed rows of several), the prompt once."""
        lengths = [len(f["input_ids"]) for f in features]
        rows = (
            pack_rows(lengths, self.max_length)
            if self.s["packing"]
            else [[i] for i in range(len(features))]
        )
        return shared_prompt_batch(features, rows, pad)

    def _row_batch(self, features: list[dict[str, Any]], pad: int) -> dict[str, Any]:
        """Two rows per pair (chosen sides first), padded or packed."""
        import torch

        seqs = []
        for side in (0, 1):
            for f in features:
                full, pl = self.sides(f)[side], f["prompt_len"]
                if self.seq2seq:
                    seqs.append({"input_ids": full[:pl], "labels": full[pl:]})
                else:
                    seqs.append({"input_ids": full, "labels": [IGNORE] * pl + full[pl:]})
        if self.s["packing"] and not self.seq2seq:
            return packed_batch(
                seqs, pack_rows([len(s["input_ids"]) for s in seqs], self.max_length), pad
            )
        batch = padded_batch(seqs, pad)
        rows = torch.arange(len(seqs)).unsqueeze(1)
        batch["example"] = rows.expand_as(batch["labels"]).contiguous()
        return batch

    # -- scoring -------------------------------------------------------------------------------
    #: False once a model's positions turned out not to be the batch's (a soft prompt)
    exact_positions: bool = True

    def sequence_logps(self, model, batch: dict[str, Any]):
        """(summed log-probability, token count) of each response in the batch: [2B] each."""
        import torch

        if "src" in batch:
            n, exact = int(batch["n_sequences"]), self._shared_nll(model, batch)
        else:
            n = int(batch["example"].max()) + 1
            exact = self._response_nll(model, batch) if self.exact_positions else None
        if exact is None:  # the generation task's path: the LM head on any row's label positions
            nll, target, pick = self.token_losses(model, batch)
            owner = pick(batch["example"]).clamp(min=0)
            valid = (target != IGNORE).to(nll.dtype)
        else:
            nll, owner = exact
            valid = torch.ones_like(nll)
        logps = torch.zeros(n, dtype=nll.dtype, device=nll.device).index_add(0, owner, -nll)
        counts = torch.zeros(n, dtype=nll.dtype, device=nll.device).index_add(0, owner, valid)
        return logps, counts

    def _response_nll(self, model, batch: dict[str, Any]):
        """(NLL, owner) of exactly the response tokens: the causal LM runs without its head
        (``models.layers.head_skipped`` keeps what reaches it), its final hidden states at response positions are
        gathered, and only those go through the LM head. A batch's rows start their responses
        at different positions, so this computes less than ``logits_to_keep`` can (one set of
        positions for every row). None where it does not apply (seq2seq, a model whose logits
        are more than its head's output, or one that adds positions)."""
        import torch.nn.functional as F

        head = _lm_head(model)
        if self.seq2seq or head is None:
            return None
        labels = batch["labels"]
        inputs = {
            k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch
        }
        mask = inputs.get("attention_mask")
        if (
            mask is not None
            and "position_ids" not in inputs
            and causal_sdpa(model)
            and right_padded(mask)
        ):
            del inputs["attention_mask"]  # as token_losses: real tokens never see the padding
        with head_skipped(head) as seen:  # the head gets nothing; its input is kept
            model(**inputs, logits_to_keep=0, use_cache=False)
        hidden = seen[0] if len(seen) == 1 else None
        if hidden is None or hidden.shape[1] != labels.shape[1]:
            self.exact_positions = False  # a soft prompt moved the positions: not again
            return None
        where = labels[:, 1:] != IGNORE
        logits = head(hidden[:, :-1][where]).float()  # [response tokens, V]
        nll = F.cross_entropy(logits, labels[:, 1:][where], reduction="none")
        return nll, batch["example"][:, 1:][where]

    def _shared_nll(self, model, batch: dict[str, Any]):
        """(NLL, owner) of the response tokens of a shared-prompt batch: one forward pass with
        the batch's own mask and positions, the LM head on the indexed hidden states only."""
        import torch.nn.functional as F

        head = _lm_head(model)
        with head_skipped(head) as seen:
            model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"],
                logits_to_keep=0,
                use_cache=False,
            )
        picked = seen[0].reshape(-1, seen[0].shape[-1])[batch["src"]]
        nll = F.cross_entropy(head(picked).float(), batch["target"], reduction="none")
        return nll, batch["owner"]

    def can_share_prompt(self, model, method) -> bool:
        """Whether ``model`` scores shared-prompt batches as it scores two rows per pair: a
        causal LM with a plain LM head, attending through SDPA (which takes the 4D mask as
        given), no sliding window, and a method that keeps the batch's positions (the one
        that packing needs too)."""
        config = getattr(model, "config", None)
        window = getattr(config, "sliding_window", None)
        return bool(
            self.p.get("share_prompt", True)
            and not self.seq2seq
            and method.supports_packing
            and _lm_head(model) is not None
            and causal_sdpa(model)
            and not (window and getattr(config, "use_sliding_window", True))
        )

    def reference_logps(self, batch: dict[str, Any]):
        """The reference model's [2B] log-probabilities (None for simpo/orpo)."""
        import torch

        if self.p["loss"] not in REFERENCE_LOSSES:
            return None
        if "ref_logps" in batch:
            return batch["ref_logps"]
        if self.reference is None:
            raise ConfigError(
                f"preference.loss={self.p['loss']} needs a reference model, and this task was "
                "not prepared for training (a finished run scores rewards at training time)"
            )
        with torch.no_grad(), self.reference() as ref:
            was = ref.training
            ref.eval()  # deterministic: no dropout, no RNG drawn
            try:
                return self.sequence_logps(ref, batch)[0].detach()
            finally:
                ref.train(was)

    def loss(self, model, batch: dict[str, Any]):
        ref = self.reference_logps(batch)
        logps, counts = self.sequence_logps(model, batch)
        pc, pr = logps.chunk(2)
        nc, nr = counts.chunk(2)
        rc, rr = ref.chunk(2) if ref is not None else (None, None)
        return preference_losses(self.p, pc, pr, nc, nr, rc, rr)[0]

    def example_losses(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        raise ConfigError("curriculum.by=loss: a preference task has no per-example loss")

    # -- the reference model ---------------------------------------------------------------
    def prepare_training(
        self, model, method, splits, run_dir, accelerator, resume, batch_size: int
    ) -> None:
        """Set up the reference model before the first step (see ``preference.reference``)."""
        import copy

        unwrapped = accelerator.unwrap_model(model)
        self.shared = self.can_share_prompt(unwrapped, method)
        if self.p["loss"] not in REFERENCE_LOSSES:
            return
        mode = self.p["reference"]
        off = method.reference_off(unwrapped)
        if mode == "auto":
            mode = "frozen_copy" if off is None else "adapters_off"
        if mode == "adapters_off":
            self.reference = lambda: method.reference_off(unwrapped)
            return
        if mode == "frozen_copy":
            frozen = copy.deepcopy(unwrapped).eval().requires_grad_(False)
            self.reference = lambda: method.reference_off(frozen) or contextlib.nullcontext(frozen)
            return
        # precomputed: before training the model is the reference (its method's weights off)
        self.reference = lambda: (
            method.reference_off(unwrapped) or contextlib.nullcontext(unwrapped)
        )
        try:
            self._precompute(splits, run_dir, accelerator, resume, batch_size)
        finally:
            self.reference = None

    def prepare_evaluation(self, model, method, accelerator) -> None:
        """A finished run's reference: its model with the method's weights off, where the
        method has that switch (else the rewards are not scored, only log-probabilities)."""
        unwrapped = accelerator.unwrap_model(model)
        self.shared = self.can_share_prompt(unwrapped, method)
        if self.p["loss"] in REFERENCE_LOSSES and method.reference_off(unwrapped) is not None:
            self.reference = lambda: method.reference_off(unwrapped)

    def _precompute(self, splits, run_dir, accelerator, resume, batch_size: int) -> None:
        saved = rundir.read_reference_logps(run_dir) if resume is not None else None
        data: dict[str, Any] = {}
        for name, split in splits.items():
            fp = _content_hash(split)
            entry = (saved or {}).get(name)
            if entry is None or entry.get("fingerprint") != fp:
                values = self._split_logps(None, split, batch_size, accelerator)
                entry = {"fingerprint": fp, "logps": [[v["rc"], v["rr"]] for v in values]}
            data[name] = entry
            for f, pair in zip(split.features, entry["logps"]):
                f["ref_logps"] = pair
        if accelerator.is_main_process and data != saved:
            rundir.write_reference_logps(run_dir, data)
        accelerator.wait_for_everyone()

    # -- evaluation ----------------------------------------------------------------------------
    def _split_logps(self, model, split: Split, batch_size: int, accelerator):
        """Per pair, in split order, on every process: the policy's summed log-probabilities
        (``pc``, ``pr``) and token counts (``nc``, ``nr``) unless ``model`` is None, and the
        reference's (``rc``, ``rr``) where there is one."""
        import torch
        from accelerate.utils import gather_object

        from tunelab.data.batching import eval_batches

        out: list[tuple[int, dict[str, float]]] = []
        rank, world = accelerator.process_index, accelerator.num_processes
        scored = self.p["loss"] in REFERENCE_LOSSES
        with torch.inference_mode():
            for idx in eval_batches(split.lengths, batch_size, rank, world):
                batch = self.collate([split.features[i] for i in idx])
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                k = len(idx)
                with accelerator.autocast():
                    has_ref = scored and (self.reference is not None or "ref_logps" in batch)
                    ref = self.reference_logps(batch) if has_ref else None
                    policy = self.sequence_logps(model, batch) if model is not None else None
                for j, i in enumerate(idx):
                    v: dict[str, float] = {}
                    if policy is not None:
                        logps, counts = policy
                        v.update(pc=float(logps[j]), pr=float(logps[k + j]))
                        v.update(nc=float(counts[j]), nr=float(counts[k + j]))
                    if ref is not None:
                        v.update(rc=float(ref[j]), rr=float(ref[k + j]))
                    out.append((i, v))
        if world > 1:
            out = gather_object(out)
        result: list[dict[str, float]] = [{} for _ in range(len(split))]
        for i, v in out:
            result[i] = v
        return result

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        import torch

        model.eval()
        values = self._split_logps(model, split, batch_size, accelerator)

        def col(key: str):
            return torch.tensor([v[key] for v in values], dtype=torch.float64)

        has_ref = all("rc" in v for v in values)
        if self.p["loss"] in REFERENCE_LOSSES and not has_ref:
            metrics: dict[str, Any] = {}
            rewards = None
        else:
            refs = (col("rc"), col("rr")) if has_ref else (None, None)
            loss, _per, rew_c, rew_r = preference_losses(
                self.p, col("pc"), col("pr"), col("nc"), col("nr"), *refs
            )
            rewards = (rew_c, rew_r)
            metrics = {
                "loss": float(loss),
                "rewards_chosen": float(rew_c.mean()),
                "rewards_rejected": float(rew_r.mean()),
                "reward_accuracy": float((rew_c > rew_r).double().mean()),
                "reward_margin": float((rew_c - rew_r).mean()),
            }
        metrics["logps_chosen"] = float(col("pc").mean())
        metrics["logps_rejected"] = float(col("pr").mean())
        metrics["n"] = len(split)
        rows = []
        for i, (rec, v) in enumerate(zip(split.records, values)):
            row = {**rec, "logps_chosen": round(v["pc"], 6), "logps_rejected": round(v["pr"], 6)}
            if rewards is not None:
                row["reward_chosen"] = round(float(rewards[0][i]), 6)
                row["reward_rejected"] = round(float(rewards[1][i]), 6)
            rows.append(row)
        self._generate_some(model, split, rows, batch_size, accelerator)
        return metrics, rows

    def _generate_some(self, model, split: Split, rows, batch_size: int, accelerator) -> None:
        """Generate for ``preference.generate`` seeded held-out prompts (their rows gain a
        ``prediction``)."""
        k = min(self.p["generate"], len(split))
        if not k:
            return
        picked = sorted(random.Random(self.seed).sample(range(len(split)), k))
        prompts = [
            split.features[i]["input_ids"][: split.features[i]["prompt_len"]] for i in picked
        ]
        texts = self.generate_for(model, prompts, batch_size, accelerator)
        for i, t in zip(picked, texts):
            rows[i]["prediction"] = t
