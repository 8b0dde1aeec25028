"""Explicit method registry, in the style of PEFT's ``register_peft_method``.

A built-in method is one module plus one line in ``_BUILTIN``. A method from outside tunelab
registers with :func:`register` (also usable as a class decorator); names are unique, and the
built-ins are always listed first. Everything that needs to know which methods exist (config
validation, per-task adapters, combine, stages, resume) asks this module.
"""

from __future__ import annotations

import re

from tunelab.errors import ConfigError
from tunelab.methods.base import Method
from tunelab.utils.settings import Section

#: what ``method`` is when a config does not say
DEFAULT_METHOD = "lora"
#: the order of the built-in settings sections in the config reference and in saved
#: config.yaml files (sections of methods registered later follow in registration order)
SECTION_ORDER = ("lora", "freeze", "ia3", "adapter", "prefix", "prompt")

_REGISTRY: dict[str, type[Method]] = {}
_builtin_loaded = False


def _builtin() -> list[type[Method]]:
    from tunelab.methods.adapter import BottleneckAdapter
    from tunelab.methods.bitfit import BitFit
    from tunelab.methods.freeze import FreezeLayers
    from tunelab.methods.full import FullFineTuning
    from tunelab.methods.ia3 import Ia3Method
    from tunelab.methods.lora import DoraMethod, LoraMethod
    from tunelab.methods.prefix import PrefixTuning
    from tunelab.methods.prompt import PromptTuning

    return [
        FullFineTuning,
        FreezeLayers,
        LoraMethod,
        DoraMethod,
        Ia3Method,
        BottleneckAdapter,
        PrefixTuning,
        PromptTuning,
        BitFit,
    ]


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        for cls in _builtin():
            _add(cls)


def _add(cls: type[Method]) -> type[Method]:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(f"register: {cls!r} is not a tunelab.methods.base.Method subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(
            f"register: {cls.__name__}.name must be a lower-case word (letters, digits, _), "
            f"not {name!r}"
        )
    if name in _REGISTRY:
        old = _REGISTRY[name]
        raise ConfigError(
            f"register: a method named {name!r} is already registered "
            f"({old.__module__}.{old.__qualname__}); choose another name"
        )
    if cls.settings_class is not None and not issubclass(cls.settings_class, Section):
        raise ConfigError(f"register: {cls.__name__}.settings must subclass Section")
    key = cls.settings_key()
    for other in _REGISTRY.values():
        if key and other.settings_key() == key and other.settings_class is not cls.settings_class:
            raise ConfigError(
                f"register: the settings section {key!r} of {name!r} is already used by "
                f"method {other.name!r} with other settings; name the section differently"
            )
    _REGISTRY[name] = cls
    return cls


def register(cls: type[Method]) -> type[Method]:
    """Add a method (a :class:`Method` subclass with a unique ``name``); returns the class."""
    _load_builtin()
    return _add(cls)


def unregister(name: str) -> None:
    """Remove a method added with :func:`register` (built-ins stay)."""
    _load_builtin()
    if name in {c.name for c in _builtin()}:
        raise ConfigError(f"unregister: {name!r} is a built-in method")
    _REGISTRY.pop(name, None)


def method_names() -> list[str]:
    _load_builtin()
    return list(_REGISTRY)


def method_class(name: str) -> type[Method]:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"method: unknown method {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get_method(name: str) -> Method:
    """A fresh instance of the method registered as ``name``."""
    method = method_class(name)()
    method.known_methods = tuple(_REGISTRY)
    return method


def method_sections() -> dict[str, type[Section]]:
    """Each methods' settings section by its config key (``lora``, ``adapter``, ...)."""
    _load_builtin()
    out: dict[str, type[Section]] = {}
    for cls in _REGISTRY.values():
        key = cls.settings_key()
        if key and key not in out:
            out[key] = cls.settings_class  # type: ignore[assignment]
    rank = {k: i for i, k in enumerate(SECTION_ORDER)}
    return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def methods_where(**flags: bool) -> list[str]:
    """Names of the methods whose class attributes equal ``flags``
    (e.g. ``methods_where(saves_peft_adapter=True)``)."""
    _load_builtin()
    return [n for n, c in _REGISTRY.items() if all(getattr(c, k) == v for k, v in flags.items())]
