"""Full fine-tuning: every weight trains; saved as a plain transformers folder."""

from __future__ import annotations

from pathlib import Path

from tunelab.methods.base import Method


class FullFineTuning(Method):
    name = "full"
    description = "Train every weight of the model."

    def apply(self, model, cfg, head_modules: list[str], tokenizer=None):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)

    def load(self, base_model, out_dir: Path):
        import torch

        from tunelab.models.loading import quiet_transformers

        quiet_transformers()
        return type(base_model).from_pretrained(out_dir, dtype=torch.float32)
