"""Training methods, one module each, registered by name. The loop never branches on them."""

from tunelab.methods.base import Method
from tunelab.methods.registry import (
    DEFAULT_METHOD,
    get_method,
    method_class,
    method_names,
    method_sections,
    methods_where,
    register,
    unregister,
)

__all__ = [
    "DEFAULT_METHOD",
    "Method",
    "get_method",
    "method_class",
    "method_names",
    "method_sections",
    "methods_where",
    "register",
    "unregister",
]
