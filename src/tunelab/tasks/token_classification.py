"""Token classification (NER, extraction): one tag per word, scored by entity with seqeval.

Rows hold a list of words and one tag per word (CoNLL column files read as ``{tokens, tags}``,
JSONL with lists). Tags are read as given: IOB1, IOB2, IOBES or BILOU. Words are split into
sub-words by the tokenizer; the first sub-word of a word carries its tag and the rest are
ignored (``task.label_all_tokens``: they carry it too). Predictions are made per word, from the
word's first sub-word."""

from __future__ import annotations

import re
from typing import Any

from tunelab.data.sources import RowProblems, Table, check_columns, is_missing
from tunelab.errors import DataError
from tunelab.tasks.base import Split, Task
from tunelab.tasks.classification import model_inputs

HEAD_NAMES = ("classifier", "score")
IGNORE = -100


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every entity in a tag sequence (seqeval's chunking;
    BILOU's L-/U- read as IOBES's E-/S-)."""
    from seqeval.metrics.sequence_labeling import get_entities

    plain = [
        {"L": "E", "U": "S"}.get(t[0], t[0]) + t[1:] if len(t) > 1 and t[1] == "-" else t
        for t in tags
    ]
    return [(kind, start, end) for kind, start, end in get_entities(plain)]


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Whitespace-separated words of a text with their character spans."""
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


class TokenClassificationTask(Task):
    kind = "token_classification"
    auto_class = "AutoModelForTokenClassification"
    paired = False  # tags single texts

    def __init__(
        self,
        labels: list[str],
        tokens_column: str = "tokens",
        tags_column: str = "tags",
        max_length: int = 128,
        tokenizer=None,
        label_all_tokens: bool = False,
    ):
        if len(labels) < 2:
            raise DataError(f"token_classification needs at least 2 tags, found {labels}")
        self.labels = list(labels)
        self.label2id = {t: i for i, t in enumerate(self.labels)}
        self.tokens_column, self.tags_column = tokens_column, tags_column
        self.max_length, self.label_all_tokens = max_length, label_all_tokens
        self.tokenizer = tokenizer
        if tokenizer is not None:
            self.pad_id = tokenizer.pad_token_id
            if not getattr(tokenizer, "is_fast", False):
                raise DataError("token_classification needs a fast tokenizer (word alignment)")
        # BILOU needs seqeval's strict mode; IOB1/IOB2/IOBES are read by its default chunking
        self.bilou = any(t[:2] in ("L-", "U-") for t in self.labels)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, train_table: Table | None, tokenizer) -> TokenClassificationTask:
        d = cfg.data
        labels = d.labels
        if labels is None:
            if train_table is None:
                raise DataError("data.labels must be given when there is no training data")
            seen = {t for r in train_table.rows for t in _as_list(r.get(d.tags_column)) or [] if t}
            labels = sorted(seen, key=lambda t: (t != "O", t[2:], t))
        return cls(
            labels,
            d.tokens_column,
            d.tags_column,
            cfg.model.max_length,
            tokenizer,
            cfg.task.label_all_tokens,
        )

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> TokenClassificationTask:
        return cls(
            meta["labels"],
            meta["tokens_column"],
            meta["tags_column"],
            meta["max_length"],
            tokenizer,
            meta.get("label_all_tokens", False),
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "labels": self.labels,
            "tokens_column": self.tokens_column,
            "tags_column": self.tags_column,
            "max_length": self.max_length,
            "label_all_tokens": self.label_all_tokens,
        }

    def build_model(self, resolved, trust_remote_code: bool = False):
        from tunelab.models.loading import load_model

        return load_model(
            resolved,
            self.auto_class,
            trust_remote_code,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id=dict(self.label2id),
        )

    def head_modules(self, model) -> list[str]:
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        return [h for h in HEAD_NAMES if h in names]

    # -- data ----------------------------------------------------------------------------
    def table_to_split(
        self, table: Table, name: str, *, require_labels: bool = True, on_error: str = "strict"
    ) -> Split:
        check_columns(
            table,
            {
                "tokens_column": self.tokens_column,
                "tags_column": self.tags_column if require_labels else None,
            },
        )
        problems = RowProblems(table.source, on_error)
        words, tags, records = [], [], []
        for row, rid in zip(table.rows, table.row_ids):
            toks = _as_list(row.get(self.tokens_column))
            why = None if toks else f"{self.tokens_column} is missing or empty"
            if why is None and not all(isinstance(t, str) and t.strip() for t in toks):
                why = f"{self.tokens_column} holds an empty or non-text word"
            row_tags = None
            if why is None and require_labels:
                row_tags = _as_list(row.get(self.tags_column))
                if row_tags is None or len(row_tags) != len(toks):
                    n = "no" if row_tags is None else len(row_tags)
                    why = f"{len(toks)} words but {n} tags"
                else:
                    unknown = sorted({t for t in row_tags if t not in self.label2id})
                    if unknown:
                        why = f"tag(s) {unknown} not among {self.labels}"
            if why is not None:
                problems.add(rid, why)
                continue
            words.append(toks)
            tags.append(row_tags)
            rec: dict[str, Any] = {"row": rid, "tokens": toks}
            if require_labels:
                rec["tags"] = row_tags
            records.append(rec)
        skipped = problems.finish(table.skipped)
        if not words:
            raise DataError(
                f"{table.source}: no usable rows for split {name!r}; the split is empty"
            )
        return self.words_split(name, words, tags if require_labels else None, records, skipped)

    def words_split(self, name, words, tags, records, skipped=()) -> Split:
        """Tokenize word lists; labels on first sub-words (or all, ``label_all_tokens``)."""
        enc = self.tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=self.max_length
        )
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features, starts = [], []
        for i in range(len(words)):
            f = {k: enc[k][i] for k in keys}
            ids = enc.word_ids(i)
            first = [j for j, w in enumerate(ids) if w is not None and (j == 0 or ids[j - 1] != w)]
            starts.append([(j, ids[j]) for j in first])
            heads = set(first)
            if tags is not None:
                y = [self.label2id[t] for t in tags[i]]
                f["labels"] = [
                    IGNORE if w is None or (not self.label_all_tokens and j not in heads) else y[w]
                    for j, w in enumerate(ids)
                ]
            else:
                f["labels"] = [IGNORE] * len(ids)
            features.append(f)
        split = Split(name, features, records, list(skipped))
        # (position of its first sub-word, word index) of each word that kept a sub-word: a
        # word can have none (cut by max_length, or dropped, as a zero-width space is)
        split.word_starts = starts
        return split

    def texts_split(self, texts: list[str], pairs: list[str] | None = None) -> Split:
        """Raw texts as a split of whitespace-separated words, with their character spans."""
        if pairs:
            raise DataError("token_classification tags single texts; --text-pair is not used")
        spans = [word_spans(t) if isinstance(t, str) else [] for t in texts]
        if any(not s for s in spans):
            raise DataError("every --text must be non-empty")
        records = [{"text": t} for t in texts]
        split = self.words_split("predict", [[w for w, _, _ in s] for s in spans], None, records)
        split.spans = spans
        return split

    # -- training and prediction --------------------------------------------------------
    def loss(self, model, batch: dict[str, Any]):
        import torch.nn.functional as F

        logits = model(**model_inputs(batch)).logits.float()
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), ignore_index=IGNORE
        )

    @staticmethod
    def head_output(logits):
        """The best tag id of every token (``tunelab serve`` applies it too)."""
        return logits.argmax(-1)

    def head_outputs(self, model, split: Split, batch_size: int, accelerator) -> list[list[int]]:
        """:meth:`head_output` of every example of ``split``, in order, on every process."""
        import torch
        from accelerate.utils import gather_object

        from tunelab.data.batching import eval_batches

        model.eval()
        out: list[tuple[int, list[int]]] = []
        with torch.inference_mode():
            for idx in eval_batches(
                split.lengths, batch_size, accelerator.process_index, accelerator.num_processes
            ):
                batch = self.collate([split.features[i] for i in idx])
                batch = {k: v.to(accelerator.device) for k, v in model_inputs(batch).items()}
                with accelerator.autocast():
                    best = self.head_output(model(**batch).logits).cpu().tolist()
                out.extend(zip(idx, best))
        if accelerator.num_processes > 1:
            out = gather_object(out)
        result: list[list[int]] = [[] for _ in range(len(split))]
        for i, best in out:
            result[i] = best
        return result

    def word_tags(self, model, split: Split, batch_size: int, accelerator) -> list[list[str]]:
        """Predicted tag of every word of every example."""
        outputs = self.head_outputs(model, split, batch_size, accelerator)
        return [self.tags_from_tokens(best, split, i) for i, best in enumerate(outputs)]

    def tags_from_tokens(self, best: list[int], split: Split, i: int) -> list[str]:
        """The tags of example ``i``'s words from the best tag id of every token: each word's
        first sub-word carries it, and a word without a sub-word is `O`."""
        tags = ["O"] * self._word_count(split, i)
        for j, w in split.word_starts[i]:
            tags[w] = self.labels[best[j]]
        return tags

    @staticmethod
    def _word_count(split: Split, i: int) -> int:
        rec = split.records[i]
        return len(rec["tokens"]) if "tokens" in rec else len(split.spans[i])

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        from tunelab.evaluation.metrics import token_metrics

        pred = self.word_tags(model, split, batch_size, accelerator)
        gold = [r["tags"] for r in split.records]
        rows = [{**r, "prediction": p} for r, p in zip(split.records, pred)]
        return token_metrics(gold, pred, self.bilou), rows

    def answers(self, split: Split, outputs: list[list[int]]) -> list[dict[str, Any]]:
        """Each example's word tags and entities (type, text, character span), from
        :meth:`head_output`: what ``tunelab predict`` adds to a record and serve answers."""
        out = []
        for i, best in enumerate(outputs):
            tags = self.tags_from_tokens(best, split, i)
            out.append({"tags": tags, "entities": self.entity_records(split, i, tags)})
        return out

    def predict_records(self, model, split: Split, batch_size: int, accelerator) -> list[dict]:
        outputs = self.head_outputs(model, split, batch_size, accelerator)
        return [{**rec, **a} for rec, a in zip(split.records, self.answers(split, outputs))]

    @staticmethod
    def entity_records(split: Split, i: int, tags: list[str]) -> list[dict[str, Any]]:
        """The entities of example ``i`` (type, text and character span) given its tags: spans
        in the raw text of a texts split, else in its words joined by spaces."""
        rec, spans = split.records[i], getattr(split, "spans", None)
        if spans is not None:
            text, sp = rec["text"], spans[i]
        else:
            text = " ".join(rec["tokens"])
            sp, pos = [], 0
            for w in rec["tokens"]:
                sp.append((w, pos, pos + len(w)))
                pos += len(w) + 1
        return [
            {"type": kind, "text": text[sp[a][1] : sp[b][2]], "start": sp[a][1], "end": sp[b][2]}
            for kind, a, b in entities(tags)
        ]


def _as_list(value: Any) -> list | None:
    """A row's words or tags: a list, or a whitespace-separated string."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        return value.split()
    return list(value) if isinstance(value, (list, tuple)) else None
