"""Prompt tuning (Lester et al., 2021): a trained soft prompt in front of the input embeddings.

Written by hand rather than through PEFT: PEFT feeds ``inputs_embeds``, which BART/T5
classifiers refuse and with which decoder classifiers (Llama) can no longer find the last real
token of a right-padded row, silently scoring the wrong position. Here the input ids get ``P``
placeholder ids (after a leading CLS/BOS token, so BERT-style poolers still read it), and a hook
on the model's own embedding module puts the trained vectors at those positions. The ids stay
ids, so every head (pooling, last-token, EOS-token) works as it would without the prompt.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tunelab.methods.own import OwnMethod
from tunelab.methods.prefix import init_token_ids
from tunelab.utils.settings import Section


def _make_prompt_model():
    import torch
    import torch.nn as nn

    class PromptTuned(nn.Module):
        """A transformers model with a trained soft prompt spliced into its input."""

        def __init__(self, base, settings: dict[str, Any]):
            super().__init__()
            self.base = base
            emb = input_embedding(base)
            self.P = settings["num_virtual_tokens"]
            self.at = settings["insert_at"]
            self.placeholder = settings["placeholder_id"]
            self.prompt = nn.Parameter(torch.zeros(self.P, emb.weight.shape[1]))
            self._pending = False
            emb.register_forward_hook(self._hook)

        @property
        def config(self):
            return self.base.config

        def _hook(self, module, args, output):
            if not self._pending:
                return None
            self._pending = False  # only the first embedding call: the encoder's input
            a, P = self.at, self.P
            prompt = self.prompt.to(output.dtype).expand(output.shape[0], -1, -1)
            return torch.cat([output[:, :a], prompt, output[:, a + P :]], dim=1)

        def expand(self, name: str, t):
            """Widen a [batch, seq] input by P positions at the insertion point (a multiple-
            choice [batch, choices, seq] input: each choice's row)."""
            a, P = self.at, self.P
            if t.dim() == 3:
                return self.expand(name, t.reshape(-1, t.shape[-1])).reshape(*t.shape[:2], -1)
            fill = {
                "input_ids": self.placeholder,
                "attention_mask": 1,
                "token_type_ids": 0,
                "labels": -100,
            }[name]
            mid = torch.full((t.shape[0], P), fill, dtype=t.dtype, device=t.device)
            return torch.cat([t[:, :a], mid, t[:, a:]], dim=1)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, **inputs):
            if input_ids.shape[-1] < self.at:
                raise RuntimeError("prompt tuning: an input is shorter than its leading token")
            inputs["input_ids"] = self.expand("input_ids", input_ids)
            if attention_mask is not None:
                inputs["attention_mask"] = self.expand("attention_mask", attention_mask)
            if token_type_ids is not None:
                inputs["token_type_ids"] = self.expand("token_type_ids", token_type_ids)
            labels = inputs.get("labels")
            if labels is not None and labels.dim() == 2 and labels.shape == input_ids.shape:
                inputs["labels"] = self.expand("labels", labels)  # token labels (LM tasks)
            keep = inputs.get("logits_to_keep")
            if isinstance(keep, torch.Tensor):  # positions after the insertion point move by P
                inputs["logits_to_keep"] = torch.where(keep >= self.at, keep + self.P, keep)
            if "position_ids" in inputs:
                # config refuses packing for this method (supports_packing); a guard, not a message
                raise RuntimeError("prompt tuning got packed rows")
            self._pending = True
            try:
                out = self.base(**inputs)
            finally:
                self._pending = False
            if type(self.base).__name__.endswith("ForTokenClassification"):
                # a tag per input token: the prompt's positions have none
                a, P = self.at, self.P
                out.logits = torch.cat([out.logits[:, :a], out.logits[:, a + P :]], dim=1)
            return out

        def generate(self, input_ids, attention_mask=None, **kwargs):
            """``generate`` of the base model with the soft prompt in its input; the returned
            ids are those a plain model returns (the placeholders removed)."""
            ids = self.expand("input_ids", input_ids)
            if attention_mask is not None:
                attention_mask = self.expand("attention_mask", attention_mask)
            self._pending = True
            try:
                out = self.base.generate(input_ids=ids, attention_mask=attention_mask, **kwargs)
            finally:
                self._pending = False
            if getattr(self.base.config, "is_encoder_decoder", False):
                return out
            return torch.cat([out[:, : self.at], out[:, self.at + self.P :]], dim=1)

    return PromptTuned


def input_embedding(model):
    """The embedding module that reads the (encoder's) input ids."""
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder().get_input_embeddings()
    return model.get_input_embeddings()


def _leading_special(tokenizer) -> bool:
    """Whether the tokenizer starts every input with a special token (BERT's CLS, BART's BOS)."""
    if tokenizer is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] in set(tokenizer.all_special_ids)


class PromptSettings(Section):
    num_virtual_tokens: int = Field(
        20, ge=1, le=1024, description="Soft-prompt length in embedding vectors."
    )
    init_text: str | None = Field(
        None,
        description="Initialise the soft prompt with the embeddings of this text (repeated to "
        "length); unset: embeddings of randomly drawn vocabulary tokens.",
    )


class PromptTuning(OwnMethod):
    name = "prompt"
    supports_packing = False  # extra positions in front of each row, not of each example
    settings_class = PromptSettings
    section = "prompt"
    wraps_model = True
    description = "A trained soft prompt on the input embeddings; options under prompt:."
    merge_refusal = "a soft prompt is extra input, not a change of existing weights"

    def build(self, model, settings: dict[str, Any], tokenizer=None, initialise: bool = True):
        import torch

        if initialise:
            P = settings["num_virtual_tokens"]
            ids = init_token_ids(model, tokenizer, settings.get("init_text"), P)
            settings["insert_at"] = 1 if _leading_special(tokenizer) else 0
            settings["placeholder_id"] = int(ids[0])
        wrapped = _make_prompt_model()(model, settings)
        if initialise:
            with torch.no_grad():
                wrapped.prompt.copy_(input_embedding(model)(ids[None])[0])
        return wrapped
