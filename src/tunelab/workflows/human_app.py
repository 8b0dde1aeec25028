"""`tunelab human serve`: the rating app, a FastAPI app on uvicorn over one exported sheet.

Each rater gets a private link ``http://HOST:PORT/r/TOKEN`` (``secrets.token_urlsafe``; the
tokens live in the sheet's SQLite database, so links survive a restart). The page is static
(``static/rate.html``, ``rate.js``, ``rate.css``: no build step, nothing from the internet) and
talks to two JSON endpoints under ``/api/TOKEN/``: ``GET sheet`` (the items in this rater's
A/B order, and this rater's answers only) and ``PUT answers/ITEM`` (one answer, validated, then
stored in one transaction). Every error is a 4xx JSON object ``{"error": message}``.
"""

# (no ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, and
# ``Request`` is imported inside ``create_rating_app``)
import hmac
import importlib.resources
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import DataError
from tunelab.evaluation.human import read_key, read_sheet_items, resolve_sheet
from tunelab.evaluation.human_store import (
    CHOICES,
    RatingStore,
    check_answer,
    key_fingerprint,
    shown_swapped,
)

MAX_BODY = 64 * 1024
ASSETS = {"rate.js": "text/javascript", "rate.css": "text/css"}
HEADERS = {
    # the page runs only its own script and talks only to this server
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass
class RatingSession:
    """One sheet being rated: its key, the texts raters see, the store and the raters."""

    paths: dict[str, Path]
    key: dict[str, Any]
    texts: dict[int, dict[str, Any]]
    store: RatingStore
    tokens: dict[str, str] = field(default_factory=dict)  # rater -> token

    @property
    def item_ids(self) -> list[int]:
        return [it["item"] for it in self.key["items"]]

    def rater_of(self, token: str) -> str | None:
        """The rater whose token this is (compared in constant time), or None."""
        given, found = token.encode("utf-8"), None
        for name, t in self.tokens.items():
            if hmac.compare_digest(t.encode("utf-8"), given):
                found = name
        return found

    def swapped(self, rater: str, item: int) -> bool:
        return self.key["mode"] == "pairwise" and shown_swapped(self.key["seed"], rater, item)

    def items_for(self, rater: str) -> list[dict[str, Any]]:
        """The items as ``rater`` sees them: pairwise outputs in this rater's order."""
        out = []
        for i in self.item_ids:
            row = self.texts[i]
            shown = {"item": i, "prompt": str(row["prompt"])}
            if self.key["mode"] == "scale":
                shown["output"] = str(row["output"])
            else:
                a, b = str(row["output_a"]), str(row["output_b"])
                shown["output_a"], shown["output_b"] = (b, a) if self.swapped(rater, i) else (a, b)
            out.append(shown)
        return out

    def answers_for(self, rater: str) -> dict[str, dict[str, Any]]:
        """This rater's answers as shown to them, by item number (a string, as JSON keys)."""
        return {
            str(a["item"]): {"values": a["values"], "comment": a["comment"]}
            for a in self.store.answers(rater)
        }


def parse_raters(spec: str) -> list[str]:
    """``alice,bob`` -> those names; ``3`` -> rater1, rater2, rater3."""
    spec = spec.strip()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= 1000:
            raise DataError(f"--raters {spec}: give 1 to 1000 raters")
        return [f"rater{i}" for i in range(1, n + 1)]
    names = [x.strip() for x in spec.split(",") if x.strip()]
    if not names or len(set(names)) != len(names):
        raise DataError(f"--raters {spec!r}: give distinct names (alice,bob) or a number")
    return names


def open_rating_session(sheet: str | Path, raters: list[str] | None = None) -> RatingSession:
    """Open (creating if needed) the sheet's database and add ``raters`` to it."""
    paths = resolve_sheet(sheet)
    key = read_key(paths)
    texts = read_sheet_items(paths, key)
    store = RatingStore(paths["db"], key_fingerprint(paths["key"]))
    tokens = store.add_raters(raters) if raters else store.raters()
    if not tokens:
        raise DataError(f"{paths['db']} has no raters yet: give --raters alice,bob or --raters 3")
    return RatingSession(paths, key, texts, store, tokens)


def rater_links(session: RatingSession, base_url: str) -> dict[str, str]:
    return {name: f"{base_url.rstrip('/')}/r/{t}" for name, t in session.tokens.items()}


def _asset(name: str) -> str:
    return (
        importlib.resources.files("tunelab.workflows").joinpath("static", name).read_text("utf-8")
    )


def create_rating_app(session: RatingSession):
    """The FastAPI app of one rating session."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    page = _asset("rate.html")
    assets = {name: (_asset(name), kind) for name, kind in ASSETS.items()}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, status_code=400)

    @app.exception_handler(DataError)
    async def data_error(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.middleware("http")
    async def headers(request, call_next):
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    def rater(token: str) -> str:
        name = session.rater_of(token)
        if name is None:
            raise HTTPException(403, "unknown rater token: open the private link you were given")
        return name

    @app.get("/")
    def index():
        raise HTTPException(404, "open your private rating link (`tunelab human serve` prints it)")

    @app.get("/r/{token}")
    def rate_page(token: str):
        rater(token)
        return HTMLResponse(page)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in assets:
            raise HTTPException(404, f"no such file: {name}")
        text, kind = assets[name]
        return Response(text, media_type=kind)

    @app.get("/api/{token}/sheet")
    def sheet(token: str):
        name = rater(token)
        return {
            "rater": name,
            "mode": session.key["mode"],
            "criteria": session.key["criteria"] if session.key["mode"] == "scale" else [],
            "choices": list(CHOICES),
            "items": session.items_for(name),
            "answers": session.answers_for(name),
        }

    @app.put("/api/{token}/answers/{item}")
    async def answer(token: str, item: str, request: Request):
        name = rater(token)
        if not item.isdigit() or int(item) not in session.texts:
            ids = session.item_ids
            raise HTTPException(
                404, f"item {item!r} is not in this sheet (items {ids[0]}-{ids[-1]})"
            )
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise HTTPException(413, f"the answer is larger than {MAX_BODY} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HTTPException(413, f"the answer is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HTTPException(400, f"the answer is not JSON ({e})") from None
        values, comment = check_answer(session.key["mode"], session.key["criteria"], body)
        i = int(item)
        await run_in_threadpool(
            session.store.save, name, i, values, comment, session.swapped(name, i)
        )
        answered = len(session.store.answers(name))
        return {"saved": i, "answered": answered, "total": len(session.texts)}

    return app


def serve_ratings(
    sheet: str | Path,
    raters: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[dict[str, str], RatingSession, int], None] | None = None,
) -> None:
    """Serve the rating app until interrupted. ``port=0`` takes a free port. ``on_ready``
    gets the rater links, the session and the port once the socket listens."""
    import uvicorn

    session = open_rating_session(sheet, raters)
    app = create_rating_app(session)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise DataError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    port = sock.getsockname()[1]
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    if on_ready is not None:
        on_ready(rater_links(session, base), session, port)
    # no access log: every request line carries a rater's token
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
