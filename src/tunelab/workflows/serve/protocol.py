"""The HTTP edge: OpenAI-style error objects, the exception handlers that produce them, and the
guard in front of the app (API key, request counts and latency for ``/metrics``)."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

#: the paths ``/metrics`` reports by name (any other path counts as "other")
KNOWN_PATHS = (
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/classify",
    "/health",
    "/metrics",
)
#: the paths whose requests become jobs of the batcher
MODEL_PATHS = KNOWN_PATHS[1:4]

UNION_TAGS = ("str", "int", "float", "bool")
TOO_LARGE = "body: the request body is larger than this server accepts"
SHUT_DOWN = "the server is shutting down: the request was cut by its --drain-timeout; retry"


class ApiError(Exception):
    """An error answered as ``{"error": {message, type, param, code}}`` (OpenAI's shape)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = (
            status,
            message,
            param,
            type,
            code,
        )

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.param, self.type, self.code)


def error_body(
    message: str, param: str | None = None, type: str = "invalid_request_error", code=None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _field(loc: tuple) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``messages[0].role``; the names pydantic gives
    the branches of a union (``str``, ``list[str]``) are dropped."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        if isinstance(p, str) and (p in UNION_TAGS or "[" in p):
            break
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or None


def install_handlers(app) -> None:
    """Every error the app can raise becomes an OpenAI-style error object with a 4xx."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from tunelab.errors import TunelabError

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            why = (first.get("ctx") or {}).get("error", "")
            body = error_body(f"body: malformed JSON ({why})", "body", code="json_invalid")
            return JSONResponse(body, status_code=400)
        if first.get("type") == "model_attributes_type":  # valid JSON, but not an object
            return JSONResponse(error_body("body: must be a JSON object", "body"), 400)
        param = _field(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return JSONResponse(error_body(f"{param}: {msg}{more}", param), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        param = "body" if exc.status_code == 413 else None
        msg = {404: f"no such endpoint: {request.method} {request.url.path}"}.get(
            exc.status_code, str(exc.detail)
        )
        if exc.status_code == 413:
            msg = TOO_LARGE
        return JSONResponse(error_body(msg, param), status_code=exc.status_code)

    @app.exception_handler(TunelabError)
    async def _tunelab(request, exc: TunelabError):
        return JSONResponse(error_body(str(exc)), status_code=400)


class Guard:
    """ASGI middleware: the API key on ``/v1``, and every response's status and latency.

    ``api_key`` is compared in constant time (``hmac.compare_digest``)."""

    def __init__(self, app, api_key: str | None, metrics, max_body_bytes: int, batcher):
        self.app, self.metrics, self.max_body, self.batcher = app, metrics, max_body_bytes, batcher
        self.key = api_key.encode() if api_key else None

    def _too_large(self, scope) -> bool:
        """A declared body over the limit (a chunked one is counted by FastAPI's own limit)."""
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        return length.isdigit() and int(length) > self.max_body

    def _authorised(self, scope) -> bool:
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        start, status = time.perf_counter(), 500
        started, stream, complete = False, False, False

        async def tracked(message):
            nonlocal status, started, stream, complete
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                kind = dict(message.get("headers") or []).get(b"content-type", b"")
                stream = kind.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self._guarded(scope, receive, tracked, path)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running when --drain-timeout runs out, and answers
            # a request that has no response yet with a bare 500: say what happened instead.
            # A stream under way ends with an error event (OpenAI's clients raise it).
            if complete:  # cut after its last byte: nothing was lost
                return
            body = error_body(SHUT_DOWN, type="server_error", code="server_shutting_down")
            if not started:
                await _reply(tracked, 503, body)
                return
            status = 503  # /metrics counts a cut response as the failure it is
            if not stream:
                raise
            event = f"data: {json.dumps(body)}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": False})
        finally:
            name = path if path in KNOWN_PATHS else "other"
            self.metrics.observe_request(name, status, time.perf_counter() - start)

    async def _guarded(self, scope, receive, send, path: str) -> None:
        if self.key is not None and path.startswith("/v1") and not self._authorised(scope):
            await _reply(send, 401, _unauthorised())
        elif self._too_large(scope):
            await _reply(send, 413, error_body(TOO_LARGE, "body"))
        elif scope.get("method") == "POST" and path in MODEL_PATHS:
            await self._model_request(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _model_request(self, scope, receive, send):
        from tunelab.workflows.serve.batching import ARRIVAL

        arrival = self.batcher.arrival()
        token = ARRIVAL.set(arrival)
        try:
            await self.app(scope, receive, send)
        finally:
            arrival.depart()  # (a no-op once its job was submitted)
            ARRIVAL.reset(token)


def _unauthorised() -> dict[str, Any]:
    return error_body(
        "missing or wrong API key: send the header `Authorization: Bearer KEY`",
        type="invalid_request_error",
        code="invalid_api_key",
    )


async def _reply(send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
