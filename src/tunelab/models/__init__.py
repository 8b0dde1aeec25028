"""Model resolution (embedded registry, local folders, GGUF, hub) and loading."""

from tunelab.models.registry import EMBEDDED, ResolvedModel, list_models, resolve_model

__all__ = ["EMBEDDED", "ResolvedModel", "list_models", "resolve_model"]
