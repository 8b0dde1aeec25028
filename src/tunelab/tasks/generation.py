"""Generation: text from text with causal LMs (Llama, SmolLM2, ...) and seq2seq models (T5, BART).

Rows become (prompt, response) pairs (instruction rows, chat messages, prompt/completion pairs,
FLAN-style templates) or raw documents. The loss covers the response tokens only unless
``task.loss_on=all``; a causal LM computes its vocabulary projection only where a label is
(``logits_to_keep``), which skips most of the LM head's cost on long prompts.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from tunelab.config import TaskConfig
from tunelab.data.lm_batches import IGNORE, pack_rows, packed_batch, padded_batch
from tunelab.data.sources import RowProblems, Table, is_missing
from tunelab.data.templates import get_path, render, render_prompt
from tunelab.errors import ConfigError, DataError, ModelError
from tunelab.models.layers import causal_sdpa
from tunelab.tasks.base import Split, Task
from tunelab.tasks.lm_scoring import choice_eval, head_chunked_nll, text_split

#: prompt tokens kept at the end of a truncated prompt (chat markers, the question)
PROMPT_TAIL = 32
#: evaluation's reference-scoring batches hold at most this many (padded) tokens: perplexity
#: windows (max_length + 1 = 2,049 tokens) then come one at a time. Eight of them made 100 MB
#: activations per layer, which the allocator mapped afresh for every batch (millions of page
#: faults on WikiText-2); one window's stay under glibc's 32 MB mmap threshold and are reused.
EVAL_BATCH_TOKENS = 4096


@dataclass
class Example:
    prompt: str | list[dict[str, str]]  # text, or chat messages before the answer
    response: str
    reference: Any  # what generation is scored against (a list for several answers)


def is_seq2seq(model_or_config) -> bool:
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def right_padded(mask) -> bool:
    """True when every row of a [B, L] attention mask is ones then zeros (or all ones)."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


class GenerationTask(Task):
    kind = "generation"
    auto_class = "AutoModelForCausalLM"

    def __init__(
        self,
        settings: dict[str, Any],
        max_length: int,
        tokenizer=None,
        seed: int = 0,
        labels: list[str] | None = None,
        seq2seq: bool = False,
    ):
        self.s = dict(settings)
        self.max_length, self.tokenizer, self.seed = max_length, tokenizer, seed
        self.labels = labels
        self.seq2seq = seq2seq
        if seq2seq:
            self.auto_class = "AutoModelForSeq2SeqLM"
        if tokenizer is not None:
            self.pad_id = tokenizer.pad_token_id
        self.use_chat = False
        if tokenizer is not None and self.s["format"] != "text" and not seq2seq:
            has = bool(getattr(tokenizer, "chat_template", None))
            mode = self.s["chat_template"]
            if mode == "on" and not has:
                raise ConfigError(
                    "task.chat_template=on, but this model's tokenizer has no chat template; "
                    "set task.chat_template=off (plain prompts) or use a model that has one"
                )
            if self.s["format"] == "chat" and not has:
                raise ConfigError(
                    "task.format=chat needs a chat template and this model's tokenizer has "
                    "none; use format prompt_completion or instruction, or a chat model"
                )
            self.use_chat = has and mode != "off"

    # -- construction ------------------------------------------------------------------
    #: the task settings a generation task keeps: every `task` key but its type
    SETTINGS = tuple(k for k in TaskConfig.model_fields if k != "type")

    @classmethod
    def from_config(cls, cfg, train_table: Table | None, tokenizer) -> GenerationTask:
        from tunelab.models.registry import resolve_model

        settings = {k: getattr(cfg.task, k) for k in cls.SETTINGS}
        seq2seq = config_is_seq2seq(resolve_model(cfg.model.name, cfg.model.revision), cfg)
        if settings["packing"] and seq2seq:
            raise ConfigError("task.packing applies to causal LMs; this model is seq2seq")
        return cls(
            settings, cfg.model.max_length, tokenizer, cfg.training.seed, cfg.data.labels, seq2seq
        )

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> GenerationTask:
        return cls(
            meta["settings"],
            meta["max_length"],
            tokenizer,
            meta["seed"],
            meta.get("labels"),
            meta.get("seq2seq", False),
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "settings": self.s,
            "max_length": self.max_length,
            "seed": self.seed,
            "labels": self.labels,
            "seq2seq": self.seq2seq,
            "chat_template_used": self.use_chat,
        }

    def build_model(self, resolved, trust_remote_code: bool = False):
        from tunelab.models.loading import load_model

        model = load_model(resolved, self.auto_class, trust_remote_code)
        if self.tokenizer is not None and getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None and self.tokenizer is not None:
            gen.pad_token_id = self.tokenizer.pad_token_id
        return model

    def head_modules(self, model) -> list[str]:
        return []  # the LM head is pretrained

    # -- rows -> examples ------------------------------------------------------------------
    def _example(self, row: dict[str, Any], rid: int) -> Example:
        f, fields = self.s["format"], self.s["fields"]

        def col(name: str) -> Any:
            return get_path(row, fields.get(name, name))

        def need_text(name: str) -> str:
            v = col(name)
            if is_missing(v) or not isinstance(v, (str, int, float)) or not str(v).strip():
                raise KeyError(f"{fields.get(name, name)} is missing or empty")
            return str(v)

        if f == "instruction":
            instruction, out = need_text("instruction"), need_text("output")
            extra = col("input")
            prompt = (
                instruction
                if is_missing(extra) or not str(extra).strip()
                else (f"{instruction}\n\n{extra}")
            )
            return Example(prompt, out, out)
        if f == "prompt_completion":
            out, raw = need_text("completion"), col("completion")
            if isinstance(raw, bool):  # a yes/no answer (BoolQ's `answer`)
                out = "yes" if raw else "no"
            prompt = render_prompt(self.s["prompt"], row) if self.s.get("prompt") else None
            return Example(prompt or need_text("prompt"), out, out)
        if f == "chat":
            msgs = col("messages")
            if not isinstance(msgs, list) or not msgs:
                raise KeyError(f"{fields.get('messages', 'messages')} is not a list of messages")
            for m in msgs:
                if not isinstance(m, dict) or "role" not in m or "content" not in m:
                    raise KeyError("a message lacks role or content")
            if msgs[-1]["role"] != "assistant":
                raise KeyError("the last message is not the assistant's answer")
            out = str(msgs[-1]["content"])
            return Example([dict(m) for m in msgs[:-1]], out, out)
        if f == "template":
            prompt, ref = render(self.s["template"], row, fields, self.seed, rid)
            if (
                self.labels
                and isinstance(ref, str)
                and ref.strip().isdigit()
                and ref not in self.labels
            ):  # CSV/TSV cells are text: "1" is label index 1
                ref = int(ref.strip())
            if self.labels and isinstance(ref, (int, float)) and not isinstance(ref, bool):
                if not 0 <= int(ref) < len(self.labels):
                    raise KeyError(f"label {ref} is not an index into {self.labels}")
                ref = self.labels[int(ref)]
            answers = [str(r) for r in ref] if isinstance(ref, list) else None
            if answers is not None and not answers:
                raise KeyError("no reference answer")
            response = (
                answers[0]
                if answers
                else ("yes" if ref is True else "no" if ref is False else str(ref))
            )
            return Example(prompt, response, answers or response)
        raise AssertionError(f)

    def prompt_text(self, prompt: str | list[dict[str, str]]) -> str:
        """The prompt as the model reads it: in the chat template, or as written (plain
        prompts of generation tasks get a newline unless ``task.target_delimiter`` is set)."""
        tok = self.tokenizer
        if self.use_chat:
            msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            if self.s["system_prompt"] and msgs[0]["role"] != "system":
                msgs = [{"role": "system", "content": self.s["system_prompt"]}, *msgs]
            return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if isinstance(prompt, list):  # chat rows without a chat template (refused above)
            prompt = "\n".join(m["content"] for m in prompt)
        return prompt

    def prompt_ids(self, prompt: str | list[dict[str, str]]) -> list[int]:
        tok = self.tokenizer
        text = self.prompt_text(prompt)
        if self.use_chat:
            return tok(text, add_special_tokens=False)["input_ids"]
        if self.seq2seq or self.s.get("target_delimiter") is not None:
            return tok(text)["input_ids"]
        return tok(text + "\n")["input_ids"]

    def response_ids(self, response: str) -> list[int]:
        tok = self.tokenizer
        if self.seq2seq:
            return tok(text_target=response)["input_ids"]
        delim = self.s.get("target_delimiter") or ""
        ids = tok(delim + response, add_special_tokens=False)["input_ids"]
        return ids + ([tok.eos_token_id] if tok.eos_token_id is not None else [])

    def _fit(self, p: list[int], r: list[int]) -> tuple[list[int], list[int]] | None:
        """Cut the prompt (never the response) to fit; None when the row cannot fit."""
        limit = self.max_length
        if self.seq2seq:
            if len(r) > limit:
                return None
            if len(p) > limit:
                if self.s["too_long"] == "skip":
                    return None
                p = p[: limit - 1] + p[-1:]  # keep the closing EOS
            return p, r
        if len(p) + len(r) <= limit:
            return p, r
        room = limit - len(r)
        if self.s["too_long"] == "skip" or room < PROMPT_TAIL + 8:
            return None
        return p[: room - PROMPT_TAIL] + p[-PROMPT_TAIL:], r

    # -- data ----------------------------------------------------------------------------
    def table_to_split(
        self, table: Table, name: str, *, require_labels: bool = True, on_error: str = "strict"
    ) -> Split:
        if self.s["format"] == "text":
            return self._text_split(table, name, on_error)
        problems = RowProblems(table.source, on_error)
        features, records = [], []
        too_long: list[tuple[int, str]] = []
        for row, rid in zip(table.rows, table.row_ids):
            try:
                ex = self._example(row, rid)
            except KeyError as e:
                problems.add(rid, str(e).strip("'\""))
                continue
            p, r = self.prompt_ids(ex.prompt), self.response_ids(ex.response)
            fitted = self._fit(p, r)
            if fitted is None and not self.reference_loss:  # choices only: lm-eval cuts the
                half = self.max_length // 2  # prompt from the left when it scores (unused here)
                fitted = p[-half:], r[:half]
            if fitted is None:
                too_long.append((rid, f"longer than model.max_length={self.max_length} tokens"))
                continue
            p, r = fitted
            features.append(self._feature(p, r))
            rec = {
                "row": rid,
                "prompt": ex.prompt,
                "reference": ex.reference,
                "response_words": len(ex.response.split()),
                "response_bytes": len(ex.response.encode("utf-8")),
            }
            if "choices" in self.s["fields"]:
                opts = get_path(row, self.s["fields"]["choices"])
                if not isinstance(opts, list) or len(opts) < 2:
                    problems.add(rid, "choices is not a list of at least two options")
                    features.pop()
                    continue
                rec["choices"] = [str(o) for o in opts]
            records.append(rec)
        skipped = problems.finish(table.skipped)
        skipped = [*skipped, *too_long]
        if not features:
            raise DataError(
                f"{table.source}: no usable rows for split {name!r}; the split is empty"
            )
        return Split(name, features, records, skipped)

    def _feature(self, p: list[int], r: list[int]) -> dict[str, Any]:
        if self.seq2seq:
            return {"input_ids": p, "labels": r, "prompt_len": len(p)}
        ids = p + r
        if self.s["loss_on"] == "all":
            labels = list(ids)
        else:
            labels = [IGNORE] * len(p) + r
        return {"input_ids": ids, "labels": labels, "prompt_len": len(p)}

    def _text_split(self, table: Table, name: str, on_error: str) -> Split:
        return text_split(self, table, name, on_error)

    # -- batches -----------------------------------------------------------------------------
    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        pad = self.pad_id if self.pad_id is not None else 0
        if self.s["packing"] and not self.seq2seq:
            return packed_batch(features, self.pack_layout(features), pad)
        return padded_batch(features, pad)

    def pack_layout(self, features: list[dict[str, Any]]) -> list[list[int]]:
        """The batch's examples as packed rows of feature indices (see :func:`pack_rows`)."""
        return pack_rows([len(f["input_ids"]) for f in features], self.max_length)

    # -- loss ------------------------------------------------------------------------------------
    def token_nll(self, model, batch: dict[str, Any]):
        """(summed negative log-likelihood, number of predicted tokens) of a batch."""
        nll, target, _ = self.token_losses(model, batch)
        return nll.sum(), int((target != IGNORE).sum())

    def token_losses(self, model, batch: dict[str, Any]):
        """Per-position losses of a batch: ``(nll, target, pick)``, flat, with nll 0 where the
        target is IGNORE; ``pick(x)`` selects the same positions of any [B, L] label-aligned
        tensor (a mixture uses it to find each token's task)."""
        import torch.nn.functional as F

        labels = batch["labels"]
        inputs = {
            k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch
        }
        if self.seq2seq:
            logits = model(**inputs, labels=labels).logits.float()
            nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
            return nll, labels.flatten(), lambda x: x.flatten()
        mask = inputs.get("attention_mask")
        if (
            mask is not None
            and "position_ids" not in inputs
            and causal_sdpa(model)
            and right_padded(mask)
        ):
            # a causal row's real tokens never attend to the padding after them, so the mask
            # changes nothing they compute; without it, SDPA runs its causal kernel, which
            # skips the upper triangle (a padded mask makes it compute every query-key pair)
            del inputs["attention_mask"]
        target = labels[:, 1:]
        # positions whose next token is learned, in any row: only there is the LM head needed
        keep = (target != IGNORE).any(0).nonzero().flatten()
        if keep.numel() == 0:
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return zero.reshape(1), target.new_full((1,), IGNORE), lambda x: x.new_zeros(1)
        tgt = target[:, keep]
        pick = lambda x: x[:, 1:][:, keep].flatten()  # noqa: E731
        nll = head_chunked_nll(model, inputs, keep, target)  # evaluation: no [B, K, V] buffer
        if nll is not None:
            return nll, tgt.flatten(), pick
        # no cache: transformers then reads packed rows' positions as block-diagonal attention
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits.float()  # [B, K, V]
        nll = F.cross_entropy(
            logits.flatten(0, 1), tgt.flatten(), reduction="none", ignore_index=IGNORE
        )
        return nll, tgt.flatten(), pick

    def loss(self, model, batch: dict[str, Any]):
        nll, n = self.token_nll(model, batch)
        return nll / max(n, 1)

    def example_losses(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        """Mean token loss of every example under ``model`` (a curriculum's difficulty)."""
        import torch

        from tunelab.data.batching import eval_batches

        model.eval()
        out = [0.0] * len(split)
        with torch.inference_mode():
            for idx in eval_batches(split.lengths, batch_size):
                batch = padded_batch([split.features[i] for i in idx], self.pad_id or 0)
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                rows = torch.arange(len(idx), device=accelerator.device)
                with accelerator.autocast():
                    nll, target, pick = self.token_losses(model, batch)
                row_of = pick(rows.unsqueeze(1).expand_as(batch["labels"]))
                valid = (target != IGNORE).float()
                sums = torch.zeros(len(idx), device=nll.device).index_add_(0, row_of, nll.float())
                counts = torch.zeros(len(idx), device=nll.device).index_add_(0, row_of, valid)
                for j, i in enumerate(idx):
                    out[i] = float(sums[j] / counts[j].clamp(min=1))
        return out

    # -- evaluation ----------------------------------------------------------------------------
    #: score the references' log-likelihood (loss, perplexity); a choice-only suite task
    #: turns it off, as lm-evaluation-harness scores only the choices
    reference_loss: bool = True
    #: what the last evaluation fed the model: {"tokens": input tokens, "seconds": wall time}
    last_forward: dict[str, float] | None = None

    def _reference_nll(self, model, split: Split, idx_all, batch_size: int, accelerator):
        """(summed NLL, predicted tokens) of the references, over every process."""
        import torch
        from accelerate.utils import gather_object

        from tunelab.data.batching import eval_batches

        if not self.reference_loss:
            return 0.0, 0
        model.eval()
        nll_sum, tokens = 0.0, 0
        sub_lengths = [split.lengths[i] for i in idx_all]
        with torch.inference_mode():
            for local in eval_batches(
                sub_lengths,
                batch_size,
                accelerator.process_index,
                accelerator.num_processes,
                max_tokens=EVAL_BATCH_TOKENS,
            ):
                feats = [split.features[idx_all[i]] for i in local]
                batch = {k: v.to(accelerator.device) for k, v in self.collate(feats).items()}
                with accelerator.autocast():
                    nll, n = self.token_nll(model, batch)
                nll_sum += float(nll)
                tokens += n
        totals = [(nll_sum, tokens)]
        if accelerator.num_processes > 1:
            totals = gather_object(totals)
        return sum(t[0] for t in totals), sum(t[1] for t in totals)

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        from tunelab.evaluation.generation_metrics import perplexities, score

        idx_all = list(range(len(split)))
        if self.s["eval_max_examples"] and len(split) > self.s["eval_max_examples"]:
            idx_all = sorted(random.Random(self.seed).sample(idx_all, self.s["eval_max_examples"]))
        t0 = time.perf_counter()
        nll_sum, tokens = self._reference_nll(model, split, idx_all, batch_size, accelerator)
        recs = [split.records[i] for i in idx_all]
        words = sum(r["response_words"] for r in recs)
        nbytes = sum(r["response_bytes"] for r in recs)
        metrics: dict[str, Any] = {}
        if self.reference_loss:
            metrics.update(perplexities(nll_sum, tokens, int(words), int(nbytes)))
        documents = self.s["format"] == "text" and self.s["text_scoring"] == "document"
        metrics["n"] = len({r["row"] for r in recs}) if documents else len(idx_all)
        rows: list[dict[str, Any]] = []
        if "choice" in self.s["metrics"] and self.s["format"] != "text":
            metrics.update(choice_eval(self, model, split, idx_all, batch_size, accelerator))
        gen_metrics = [m for m in self.s["metrics"] if m != "choice"]
        if gen_metrics and self.s["format"] != "text":
            preds = self.generate_for(
                model,
                [
                    split.features[i]["input_ids"][: split.features[i]["prompt_len"]]
                    for i in idx_all
                ],
                batch_size,
                accelerator,
            )
            refs = [r["reference"] for r in recs]
            metrics.update(score(gen_metrics, preds, refs))
            rows = [
                {
                    "row": r["row"],
                    "prompt": r["prompt"],
                    "reference": r["reference"],
                    "prediction": p,
                }
                for r, p in zip(recs, preds)
            ]
        chosen = metrics.pop("choice_predictions", None)
        lls = metrics.pop("choice_loglikelihoods", None)
        fed = metrics.pop("choice_forward_tokens", 0)
        if self.reference_loss:
            fed += sum(split.lengths[i] for i in idx_all)
        self.last_forward = {"tokens": fed, "seconds": time.perf_counter() - t0}
        if chosen is not None:
            if not rows:
                rows = [
                    {
                        "row": r["row"],
                        "prompt": r["prompt"],
                        "reference": r["reference"],
                        "prediction": c,
                    }
                    for r, c in zip(recs, chosen)
                ]
            for row, c, ll in zip(rows, chosen, lls):
                row["choice"] = c
                row["loglikelihoods"] = [round(x, 6) for x in ll]
        return metrics, rows

    def generation_kwargs(self, **over) -> dict[str, Any]:
        s = {**self.s, **{k: v for k, v in over.items() if v is not None}}
        kw: dict[str, Any] = {
            "max_new_tokens": s["max_new_tokens"],
            "num_beams": s["num_beams"],
            "do_sample": s["do_sample"],
        }
        if s["do_sample"]:
            kw.update(temperature=s["temperature"], top_p=s["top_p"])
        return kw

    def generate_for(
        self, model, prompts: list[list[int]], batch_size: int, accelerator, **over
    ) -> list[str]:
        """Generated text for each prompt (token ids), in order, on every process."""
        from tunelab.models.generate import generate_ids

        return generate_ids(
            model,
            self.tokenizer,
            prompts,
            batch_size,
            accelerator,
            seq2seq=self.seq2seq,
            **self.generation_kwargs(**over),
        )


def config_is_seq2seq(resolved, cfg) -> bool:
    from transformers import AutoConfig

    from tunelab.models.loading import model_path

    try:
        conf = AutoConfig.from_pretrained(
            model_path(resolved), trust_remote_code=cfg.model.trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the config of {resolved.name!r}: {e}") from None
    return is_seq2seq(conf)
