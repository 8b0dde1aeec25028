"""Explicit method registry (as PEFT does): a new method is one module plus one line here."""

from __future__ import annotations

from tunelab.errors import ConfigError
from tunelab.methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    if _REGISTRY:
        return
    from tunelab.methods.adapter import BottleneckAdapter
    from tunelab.methods.bitfit import BitFit
    from tunelab.methods.freeze import FreezeLayers
    from tunelab.methods.full import FullFineTuning
    from tunelab.methods.ia3 import Ia3Method
    from tunelab.methods.lora import DoraMethod, LoraMethod
    from tunelab.methods.prefix import PrefixTuning
    from tunelab.methods.prompt import PromptTuning

    for cls in (
        FullFineTuning,
        FreezeLayers,
        LoraMethod,
        DoraMethod,
        Ia3Method,
        BottleneckAdapter,
        PrefixTuning,
        PromptTuning,
        BitFit,
    ):
        register(cls)


def method_names() -> list[str]:
    _load_builtin()
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"method: unknown method {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()
