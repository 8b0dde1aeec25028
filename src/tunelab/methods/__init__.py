"""Training methods, one module each, registered by name. The loop never branches on them."""

from tunelab.methods.registry import get_method, method_names, register

__all__ = ["get_method", "method_names", "register"]
