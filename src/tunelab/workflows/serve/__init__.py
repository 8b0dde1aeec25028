"""``tunelab serve``: an OpenAI-compatible HTTP server for finished runs and models, with the
LoRA adapters of several runs on one base model and requests batched together.

- ``targets``: what is served (run directories and models resolved to model groups);
- ``schemas``: the request bodies; ``protocol``: error objects, API key, request metrics;
- ``batching``: the micro-batcher; ``inference``: running one batch; ``app``: the routes;
- ``server``: uvicorn, binding and the SIGTERM drain.
"""

from tunelab.workflows.serve.app import build_app
from tunelab.workflows.serve.batching import Limits
from tunelab.workflows.serve.server import API_KEY_ENV, serve
from tunelab.workflows.serve.targets import Member, load_targets, parse_targets

__all__ = ["API_KEY_ENV", "Limits", "Member", "build_app", "load_targets", "parse_targets", "serve"]
