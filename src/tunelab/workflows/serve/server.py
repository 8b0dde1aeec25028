"""``tunelab serve``: load the targets, bind, run uvicorn, drain on SIGTERM, exit 0."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

from tunelab.errors import ConfigError
from tunelab.workflows.serve.batching import Limits

#: where ``--api-key`` is read from when the flag is not given
API_KEY_ENV = "TUNELAB_API_KEY"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"serve: cannot listen on {host}:{port}: {e.strerror}") from None
    return sock  # uvicorn starts listening once the app is ready


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    targets: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    trust_remote_code: bool = False,
    precision: str | None = None,
    max_batch_size: int = 16,
    max_classify_batch: int = 64,
    batch_wait_ms: float = 10.0,
    max_tokens: int = 1024,
    max_pending: int = 256,
    max_body_bytes: int = 1 << 20,
    drain_timeout: float = 30.0,
    log_level: str = "warning",
    ready: Callable[[str, list[str]], None] | None = None,
) -> int:
    """Serve finished runs and models over HTTP (OpenAI's API) until SIGTERM or Ctrl-C.

    ``targets``: run directories, ``NAME=RUN_DIR`` or model names; ``precision`` (fp32, bf16,
    auto) overrides each run's own ``training.precision``. ``api_key`` (or
    ``$TUNELAB_API_KEY``) makes every ``/v1`` request need ``Authorization: Bearer KEY``. On
    SIGTERM the server stops accepting, lets the requests in flight finish (up to
    ``drain_timeout`` seconds; a request still waiting for its answer then gets a 503) and
    returns 0. ``ready(url, names)`` is called once it listens.
    """
    import uvicorn

    from tunelab.workflows.serve.app import build_app
    from tunelab.workflows.serve.targets import load_targets

    for flag, value in {
        "--max-batch-size": max_batch_size,
        "--max-classify-batch": max_classify_batch,
        "--max-tokens": max_tokens,
        "--max-pending": max_pending,
        "--max-body-bytes": max_body_bytes,
    }.items():
        if value < 1:
            raise ConfigError(f"serve: {flag} must be at least 1, not {value}")
    if precision not in (None, "fp32", "bf16", "fp16", "auto"):
        raise ConfigError(f"serve: --precision must be fp32, bf16, fp16 or auto, not {precision!r}")
    if batch_wait_ms < 0:
        raise ConfigError(f"serve: --batch-wait-ms must not be negative, not {batch_wait_ms}")
    if drain_timeout < 0:
        raise ConfigError(f"serve: --drain-timeout must not be negative, not {drain_timeout}")
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    limits = Limits(max_batch_size, max_classify_batch, batch_wait_ms, max_pending, max_tokens)
    sock = bind(host, port)
    members = load_targets(targets, trust_remote_code, precision)
    app = build_app(members, limits, api_key, max_body_bytes)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        timeout_graceful_shutdown=drain_timeout,
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    if not _loopback(host) and api_key is None:
        print(
            f"tunelab serve: warning: listening on {host} without an API key (--api-key)",
            file=sys.stderr,
        )
    if ready is not None:
        ready(url, list(members))
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains on SIGTERM/SIGINT and then re-raises the signal to the handlers that
        # were there before it; make those a no-op so that a drained server exits 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    return 0
