"""Multiple choice (COPA, SWAG-style): a context and several answers, one of them right.

Each answer is encoded with the context as a text pair; the model
(``AutoModelForMultipleChoice``) scores every pair and a softmax over a row's answers is
trained with cross-entropy. Answers come from columns (``task.choice_columns``) or one column
holding a list (``task.choices_column``); the label is the index of the right one."""

from __future__ import annotations

from typing import Any

from tunelab.data.sources import RowProblems, Table, check_columns, is_missing
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.base import Split, Task
from tunelab.tasks.classification import ClassificationTask, label_key, model_inputs

HEAD_NAMES = ("classifier", "pooler")


class MultipleChoiceTask(Task):
    kind = "multiple_choice"
    auto_class = "AutoModelForMultipleChoice"

    def __init__(
        self,
        text_column: str = "text",
        label_column: str = "label",
        choice_columns: list[str] | None = None,
        choices_column: str | None = None,
        max_length: int = 128,
        tokenizer=None,
        text_template: str | None = None,
    ):
        if not choice_columns and not choices_column:
            raise ConfigError(
                "task.choice_columns: multiple_choice needs the answers: give "
                "task.choice_columns (e.g. [choice1, choice2]) or task.choices_column"
            )
        self.text_column, self.label_column = text_column, label_column
        self.choice_columns, self.choices_column = choice_columns, choices_column
        self.max_length, self.text_template = max_length, text_template
        self.tokenizer = tokenizer
        if tokenizer is not None:
            self.pad_id = tokenizer.pad_token_id

    @classmethod
    def from_config(cls, cfg, train_table, tokenizer) -> MultipleChoiceTask:
        t = cfg.task
        return cls(
            cfg.data.text_column,
            cfg.data.label_column,
            t.choice_columns,
            t.choices_column,
            cfg.model.max_length,
            tokenizer,
            t.text_template,
        )

    KEYS = ("text_column", "label_column", "choice_columns", "choices_column", "max_length")

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tokenizer) -> MultipleChoiceTask:
        return cls(
            *(meta[k] for k in cls.KEYS), tokenizer=tokenizer, text_template=meta["text_template"]
        )

    def metadata(self) -> dict[str, Any]:
        keys = (*self.KEYS, "text_template")
        return {"type": self.kind, **{k: getattr(self, k) for k in keys}}

    def build_model(self, resolved, trust_remote_code: bool = False):
        from tunelab.models.loading import load_model

        return load_model(resolved, self.auto_class, trust_remote_code)

    def head_modules(self, model) -> list[str]:
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        return [h for h in HEAD_NAMES if h in names]

    # -- data ----------------------------------------------------------------------------
    def row_choices(self, row: dict[str, Any]) -> tuple[list[str] | None, str | None]:
        if self.choices_column:
            value = row.get(self.choices_column)
            if not isinstance(value, (list, tuple)) or len(value) < 2:
                return None, f"{self.choices_column} is not a list of 2 or more answers"
            values = list(value)
        else:
            values = [row.get(c) for c in self.choice_columns]
        if not all(isinstance(v, str) and v.strip() for v in values):
            return None, "an answer is missing or empty"
        return values, None

    def table_to_split(
        self, table: Table, name: str, *, require_labels: bool = True, on_error: str = "strict"
    ) -> Split:
        wanted = {
            "text_column": None if self.text_template else self.text_column,
            "label_column": self.label_column if require_labels else None,
            "choices_column": self.choices_column,
        }
        wanted.update({f"choice_columns[{i}]": c for i, c in enumerate(self.choice_columns or [])})
        check_columns(table, wanted)
        problems = RowProblems(table.source, on_error)
        features, records = [], []
        for row, rid in zip(table.rows, table.row_ids):
            context, why = ClassificationTask.row_text(row, self.text_template, self.text_column)
            choices = None
            if why is None:
                choices, why = self.row_choices(row)
            label = None
            if why is None and require_labels:
                raw = row.get(self.label_column)
                key = "" if is_missing(raw) else label_key(raw)
                if not key.isdigit() or int(key) >= len(choices):
                    why = f"label {raw!r} is not an answer index 0..{len(choices) - 1}"
                else:
                    label = int(key)
            if why is not None:
                problems.add(rid, why)
                continue
            f = self.encode(context, choices)
            rec = {"row": rid, "text": context, "choices": choices}
            if require_labels:
                f["labels"] = label
                rec["label"] = label
            features.append(f)
            records.append(rec)
        skipped = problems.finish(table.skipped)
        if not features:
            raise DataError(
                f"{table.source}: no usable rows for split {name!r}; the split is empty"
            )
        return Split(name, features, records, skipped)

    def encode(self, context: str, choices: list[str]) -> dict[str, Any]:
        enc = self.tokenizer(
            [context] * len(choices), choices, truncation=True, max_length=self.max_length
        )
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        # "length" (the longest pair) lets batching group rows of similar length
        return {**{k: enc[k] for k in keys}, "length": max(len(x) for x in enc["input_ids"])}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad every answer of every row to the batch's longest pair: (rows, answers, tokens);
        rows with fewer answers get all-padding answers that the loss masks out."""
        import torch

        longest = max(f["length"] for f in features)
        width = max(len(f["input_ids"]) for f in features)
        out: dict[str, Any] = {}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key not in features[0]:
                continue
            fill = self.pad_id if key == "input_ids" else 0
            out[key] = torch.tensor(
                [
                    [seq + [fill] * (longest - len(seq)) for seq in f[key]]
                    + [[fill] * longest] * (width - len(f[key]))
                    for f in features
                ],
                dtype=torch.long,
            )
        out["n_choices"] = torch.tensor([len(f["input_ids"]) for f in features])
        if "labels" in features[0]:
            out["labels"] = torch.tensor([f["labels"] for f in features])
        return out

    def _logits(self, model, batch):
        logits = model(**model_inputs(batch)).logits.float()
        width = logits.shape[1]
        import torch

        real = torch.arange(width, device=logits.device)[None, :] < batch["n_choices"][:, None]
        return logits.masked_fill(~real, float("-inf"))

    def loss(self, model, batch: dict[str, Any]):
        import torch.nn.functional as F

        return F.cross_entropy(self._logits(model, batch), batch["labels"])

    def predict_proba(self, model, split: Split, batch_size: int, accelerator) -> list[list[float]]:
        import torch
        from accelerate.utils import gather_object

        from tunelab.data.batching import eval_batches

        lengths = [f["length"] for f in split.features]
        model.eval()
        out: list[tuple[int, list[float]]] = []
        with torch.inference_mode():
            for idx in eval_batches(
                lengths, batch_size, accelerator.process_index, accelerator.num_processes
            ):
                batch = self.collate([split.features[i] for i in idx])
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                with accelerator.autocast():
                    probs = self._logits(model, batch).softmax(-1).cpu().tolist()
                out.extend(
                    (i, p[: len(split.features[i]["input_ids"])]) for i, p in zip(idx, probs)
                )
        if accelerator.num_processes > 1:
            out = gather_object(out)
        result: list[list[float]] = [[] for _ in range(len(split))]
        for i, p in out:
            result[i] = p
        return result

    def evaluate(
        self, model, split: Split, batch_size: int, accelerator
    ) -> tuple[dict, list[dict]]:
        probs = self.predict_proba(model, split, batch_size, accelerator)
        preds = [max(range(len(p)), key=p.__getitem__) for p in probs]
        gold = [f["labels"] for f in split.features]
        acc = sum(p == g for p, g in zip(preds, gold)) / len(gold)
        rows = [
            {**r, "prediction": p, "correct": p == g, "probabilities": [round(q, 6) for q in pr]}
            for r, p, g, pr in zip(split.records, preds, gold, probs)
        ]
        return {"accuracy": acc, "n": len(gold)}, rows

    def predict_records(self, model, split: Split, batch_size: int, accelerator) -> list[dict]:
        probs = self.predict_proba(model, split, batch_size, accelerator)
        return [
            {**r, "answer": max(range(len(p)), key=p.__getitem__), "probabilities": p}
            for r, p in zip(split.records, probs)
        ]
