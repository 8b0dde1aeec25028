"""Sequence classification: single text or text pair, any number of named labels."""

from __future__ import annotations

from typing import Any

from tunelab.data.sources import RowProblems, Table, check_columns, is_missing
from tunelab.errors import DataError
from tunelab.tasks.base import Split, Task

HEAD_NAMES = ("classifier", "score", "pre_classifier", "pooler", "classification_head")


def label_key(value: Any) -> str:
    """Canonical string for a label value (``1``, ``1.0`` and ``"1"`` agree)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def infer_labels(values: list[Any]) -> list[str]:
    keys = sorted({label_key(v) for v in values if not is_missing(v) and label_key(v) != ""})
    try:
        return sorted(keys, key=int)
    except ValueError:
        return keys


class ClassificationTask(Task):
    kind = "classification"
    auto_class = "AutoModelForSequenceClassification"

    def __init__(
        self,
        labels: list[str],
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        max_length: int = 128,
        tokenizer=None,
        text_template: str | None = None,
        pair_template: str | None = None,
    ):
        self.check_labels(labels)
        self.labels = list(labels)
        self.text_template, self.pair_template = text_template, pair_template
        self.label2id = {name: i for i, name in enumerate(self.labels)}
        self.text_column, self.text_pair_column = text_column, text_pair_column
        self.label_column, self.max_length = label_column, max_length
        self.tokenizer = tokenizer
        if tokenizer is not None:
            self.pad_id = tokenizer.pad_token_id

    @property
    def paired(self) -> bool:
        """Whether each input is a text pair (a pair column, or a template of the second text)."""
        return bool(self.text_pair_column or self.pair_template)

    def check_labels(self, labels: list[str]) -> None:
        if len(labels) < 2:
            raise DataError(f"classification needs at least 2 labels, found {labels}")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, train_table: Table | None, tokenizer) -> ClassificationTask:
        d = cfg.data
        labels = d.labels
        if labels is None:
            if train_table is None:
                raise DataError("data.labels must be given when there is no training data")
            labels = cls.infer_labels([r.get(d.label_column) for r in train_table.rows])
        return cls(
            labels,
            d.text_column,
            d.text_pair_column,
            d.label_column,
            cfg.model.max_length,
            tokenizer,
            **cls.config_extras(cfg),
        )

    @staticmethod
    def infer_labels(values: list[Any]) -> list[str]:
        return infer_labels(values)

    @classmethod
    def config_extras(cls, cfg) -> dict[str, Any]:
        """Constructor arguments from ``cfg.task`` beyond the shared ones (subclasses add)."""
        return {"text_template": cfg.task.text_template, "pair_template": cfg.task.pair_template}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> ClassificationTask:
        return cls(
            meta["labels"],
            meta["text_column"],
            meta.get("text_pair_column"),
            meta["label_column"],
            meta["max_length"],
            tokenizer,
            **{k: meta[k] for k in cls.extra_keys if k in meta},
        )

    #: metadata keys passed back to the constructor (subclasses add theirs)
    extra_keys: tuple[str, ...] = ("text_template", "pair_template")

    def metadata(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "labels": self.labels,
            "text_column": self.text_column,
            "text_pair_column": self.text_pair_column,
            "label_column": self.label_column,
            "max_length": self.max_length,
            **{k: getattr(self, k) for k in self.extra_keys},
        }

    def build_model(self, resolved, trust_remote_code: bool = False):
        from tunelab.models.loading import load_model

        model, info = load_model(
            resolved,
            self.auto_class,
            trust_remote_code,
            output_loading_info=True,
            **self.head_kwargs(),
        )
        # The head: what the checkpoint did not hold (BERT's classifier, BART's classification
        # head, Llama's score), plus BERT's pooler, which sequence classification repurposes
        # (sentence-embedding checkpoints never trained it): every method trains them in full.
        self.new_modules = {
            part for key in info.get("missing_keys", ()) for part in str(key).split(".")
        } | {"pooler"}
        if getattr(model.config, "pad_token_id", None) is None and self.tokenizer is not None:
            # Decoder classifiers find the last real token through the pad id.
            model.config.pad_token_id = self.tokenizer.pad_token_id
        return model

    new_modules: set[str] | None = None

    def head_kwargs(self) -> dict[str, Any]:
        """What the model config needs to build this task's head."""
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": dict(self.label2id),
        }

    def head_modules(self, model) -> list[str]:
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        heads = [h for h in HEAD_NAMES if h in names]
        if self.new_modules is not None:
            new = [h for h in heads if h in self.new_modules]
            if set(new) - {"pooler"}:  # else: a fine-tuned classifier, whose head trains again
                heads = new
        return heads

    # -- data ----------------------------------------------------------------------------
    def table_to_split(
        self, table: Table, name: str, *, require_labels: bool = True, on_error: str = "strict"
    ) -> Split:
        check_columns(
            table,
            {
                "text_column": None if self.text_template else self.text_column,
                "text_pair_column": None if self.pair_template else self.text_pair_column,
                "label_column": self.label_column if require_labels else None,
            },
        )
        problems = RowProblems(table.source, on_error)
        texts, pairs, labels, records = [], [], [], []
        pair_wanted = self.paired
        for row, rid in zip(table.rows, table.row_ids):
            text, why = self.row_text(row, self.text_template, self.text_column)
            pair = None
            if why is None and pair_wanted:
                pair, why = self.row_text(row, self.pair_template, self.text_pair_column)
            label = None
            if why is None and require_labels:
                label, why = self.parse_label(row.get(self.label_column))
            if why is not None:
                problems.add(rid, why)
                continue
            texts.append(text)
            pairs.append(pair)
            labels.append(label)
            rec = {"row": rid, "text": text}
            if pair_wanted:
                rec["text_pair"] = pair
            if require_labels:
                rec["label"] = self.label_name(label)
            records.append(rec)
        skipped = problems.finish(table.skipped)
        if not texts:
            raise DataError(
                f"{table.source}: no usable rows for split {name!r}; the split is empty"
            )
        features = self.encode(texts, pairs if pair_wanted else None)
        if require_labels:
            for f, y in zip(features, labels):
                f["labels"] = y
        return Split(name, features, records, skipped)

    @staticmethod
    def row_text(row: dict[str, Any], template: str | None, column: str | None):
        """(text, None) of a row, from its column or a ``task.text_template``; (None, why)."""
        if template:
            from tunelab.data.templates import render_prompt

            try:
                value = render_prompt(template, row)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                return None, f"template: {e}"
            return value, _text_problem(value, "the templated text")
        value = row.get(column)
        return value, _text_problem(value, column)

    def parse_label(self, raw: Any) -> tuple[Any, str | None]:
        """(the model's target, None) for a label value, or (None, why it is unusable)."""
        if is_missing(raw) or label_key(raw) == "":
            return None, f"label ({self.label_column}) is empty"
        label = self._label_index(raw)
        if label is None:
            return None, f"label {raw!r} is not one of {self.labels}"
        return label, None

    def label_name(self, target: Any) -> Any:
        """How a target shows in records and predictions."""
        return self.labels[target]

    def _label_index(self, raw: Any) -> int | None:
        key = label_key(raw)
        if key in self.label2id:
            return self.label2id[key]
        # integer indices into named labels (e.g. 0/1 with labels [negative, positive])
        if key.lstrip("-").isdigit() and not any(k.lstrip("-").isdigit() for k in self.labels):
            i = int(key)
            return i if 0 <= i < len(self.labels) else None
        return None

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> list[dict[str, Any]]:
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    def texts_split(self, texts: list[str], pairs: list[str] | None = None) -> Split:
        """Unlabelled texts (and second texts) as a split; records show what was given."""
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise DataError("every --text must be non-empty")
        if self.paired and (not pairs or len(pairs) != len(texts)):
            raise DataError("this model classifies text pairs: give one --text-pair per --text")
        if pairs and not self.paired:
            raise DataError("this model classifies single texts; --text-pair is not used")
        feats = self.encode(texts, pairs)
        for f in feats:
            f["labels"] = 0  # unused: predictions only
        records = [
            {"text": t, **({"text_pair": p} if pairs else {})}
            for t, p in zip(texts, pairs or [None] * len(texts))
        ]
        return Split("predict", feats, records)

    def predict_texts(
        self,
        model,
        texts: list[str],
        pairs: list[str] | None = None,
        batch_size: int = 64,
        accelerator=None,
    ) -> list[list[float]]:
        """Class probabilities of texts (the one texts → split → score path)."""
        return self.predict_proba(model, self.texts_split(texts, pairs), batch_size, accelerator)

    # -- training and prediction --------------------------------------------------------
    def loss(self, model, batch: dict[str, Any]):
        import torch.nn.functional as F

        return F.cross_entropy(self._logits(model, batch), batch["labels"])

    #: in a task mixture, this task's columns of the shared head's logits
    logit_slice: tuple[int, int] | None = None

    def _logits(self, model, batch):
        logits = model(**model_inputs(batch)).logits.float()
        if self.logit_slice is not None:
            logits = logits[:, self.logit_slice[0] : self.logit_slice[1]]
        return logits

    @staticmethod
    def head_output(logits):
        """What the head's logits become for a reader: class probabilities (the one place a
        task says so; ``tunelab serve`` applies it too)."""
        return logits.softmax(-1)

    def predict_proba(self, model, split: Split, batch_size: int, accelerator) -> list[list[float]]:
        """Class probabilities for every example of ``split``, in order, on every process."""
        return self.head_outputs(model, split, batch_size, accelerator)

    def answers(self, split: Split, outputs: list[list[float]]) -> list[dict[str, Any]]:
        """The prediction fields of each example from its :meth:`head_output`: what
        ``tunelab predict`` adds to a record and ``/v1/classify`` answers."""
        out = []
        for p in outputs:
            best = max(range(len(p)), key=p.__getitem__)
            probs = {n: round(q, 6) for n, q in zip(self.labels, p)}
            out.append({"label": self.labels[best], "probabilities": probs})
        return out

    def predict_records(self, model, split: Split, batch_size: int, accelerator) -> list[dict]:
        """Each record of ``split`` with this task's prediction fields (:meth:`answers`)."""
        outputs = self.head_outputs(model, split, batch_size, accelerator)
        return [{**rec, **a} for rec, a in zip(split.records, self.answers(split, outputs))]

    def head_outputs(self, model, split: Split, batch_size: int, accelerator) -> list[list[float]]:
        """:meth:`head_output` of every example of ``split``, in order, on every process."""
        import torch
        from accelerate.utils import gather_object

        from tunelab.data.batching import eval_batches

        model.eval()
        out: list[tuple[int, list[float]]] = []
        with torch.inference_mode():
            for idx in eval_batches(
                split.lengths, batch_size, accelerator.process_index, accelerator.num_processes
            ):
                batch = self.collate([split.features[i] for i in idx])
                batch = {
                    k: v.to(accelerator.device) if hasattr(v, "to") else v for k, v in batch.items()
                }
                with accelerator.autocast():
                    probs = self.head_output(self._logits(model, batch)).cpu().tolist()
                out.extend(zip(idx, probs))
        if accelerator.num_processes > 1:
            out = gather_object(out)
        result: list[list[float] | None] = [None] * len(split)
        for i, p in out:
            result[i] = p
        return result  # type: ignore[return-value]

    def example_losses(self, model, split: Split, batch_size: int, accelerator) -> list[float]:
        """Cross-entropy of every example under ``model`` (a curriculum's difficulty)."""
        import math

        probs = self.predict_proba(model, split, batch_size, accelerator)
        return [-math.log(max(p[f["labels"]], 1e-12)) for p, f in zip(probs, split.features)]

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        from tunelab.evaluation.metrics import classification_metrics

        probs = self.predict_proba(model, split, batch_size, accelerator)
        preds = [max(range(len(p)), key=p.__getitem__) for p in probs]
        y = [f["labels"] for f in split.features]
        metrics = classification_metrics(y, preds, self.labels)
        rows = [
            {
                **rec,
                "prediction": self.labels[p],
                "correct": rec["label"] == self.labels[p],
                "probabilities": {name: round(q, 6) for name, q in zip(self.labels, prob)},
            }
            for rec, p, prob in zip(split.records, preds, probs)
        ]
        return metrics, rows


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _text_problem(value: Any, column: str) -> str | None:
    if is_missing(value):
        return f"{column} is missing"
    if not isinstance(value, str):
        return f"{column} is a {type(value).__name__}, not text"
    if not value.strip():
        return f"{column} is empty"
    return None
