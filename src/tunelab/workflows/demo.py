"""`tunelab demo`: LoRA on the embedded MiniLM with data tunelab writes itself."""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path

import yaml

from tunelab.config import load_config


def demo_config_dict() -> dict:
    """The shipped demo config (``tunelab/configs/demo.yaml``) as a dict."""
    text = (
        importlib.resources.files("tunelab")
        .joinpath("configs/demo.yaml")
        .read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


def run_demo(overrides: list[str] | None = None):
    """Write the demo data, fine-tune, and return the :class:`~tunelab.workflows.single.RunResult`."""
    from tunelab.data.demo import write_demo_dataset
    from tunelab.workflows.train import train_config

    cfg = load_config(demo_config_dict(), overrides)
    data_dir = Path(cfg.output.dir) / "demo-data"
    paths = write_demo_dataset(data_dir)
    cfg.data.train, cfg.data.validation, cfg.data.test = (
        str(paths[k]) for k in ("train", "validation", "test")
    )
    if cfg.output.name is None:
        cfg.output.name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    return train_config(cfg)
