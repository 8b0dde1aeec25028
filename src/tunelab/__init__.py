"""tunelab: fine-tune pretrained language models and measure what the adaptation did.

Heavy libraries (torch, transformers) load on first use, so ``import tunelab`` and
``tunelab --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

from tunelab.version import __version__

__all__ = [
    "RunConfig",
    "TunelabError",
    "__version__",
    "combine_adapters",
    "evaluate",
    "generate",
    "load_adapters",
    "load_config",
    "predict",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in ("train",):
        from tunelab.workflows import train

        return getattr(train, name)
    if name in ("evaluate", "predict", "load_run"):
        from tunelab.workflows import runs

        return getattr(runs, name)
    if name == "generate":
        from tunelab.workflows.generate import generate

        return generate
    if name in ("load_adapters", "combine_adapters"):
        from tunelab.workflows import adapters

        return getattr(adapters, name)
    if name in ("RunConfig", "load_config"):
        from tunelab import config

        return getattr(config, name)
    if name == "TunelabError":
        from tunelab.errors import TunelabError

        return TunelabError
    raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
