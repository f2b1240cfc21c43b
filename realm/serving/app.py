"""``realm serve``: a FastAPI app answering questions from a run folder.

Endpoints (OpenAPI schema at ``/openapi.json``; Swagger UI at ``/docs``, served with the assets of the
``fastapi-offline`` package, so it works without internet; no ``/redoc``: its page fetches a logo from a CDN)::

    POST /ask            {"question": str, "k": int?} -> answer, score, evidence
    GET  /health         liveness + the served index version
    GET  /stats          index version, corpus size, requests served, latency p50/p95/p99
    POST /admin/reload   serve the newest index version now (the LATEST watcher does it within ~1 s)
    GET  /               a small HTML page (static/index.html) to ask questions in a browser

Every bad request gets a 4xx with a JSON body ``{"error": "<one readable sentence>", "detail": ...}``:
empty/whitespace or over-long question, ``k`` missing its bounds or not an integer, unknown fields,
a non-JSON content type (415), malformed JSON (400), a body over ``max_body_bytes`` (413). The models
are loaded once, when the app is created; requests are answered by the :class:`Answerer`'s single
worker thread (batched under load), so concurrent requests are safe.

Security: ``/admin/*`` needs ``Authorization: Bearer <token>``; the token is ``$REALM_ADMIN_TOKEN`` or, if
that is unset, generated at start and printed once to stderr. Requests whose ``Origin`` is not this server
(or that a browser marks ``Sec-Fetch-Site: cross-site``) are refused with 403, so a web page on another site
cannot trigger them. Every file the service reads lies inside the run folder (an index manifest naming a
corpus elsewhere is refused), and each index version, corpus and checkpoint is verified against its sha256
manifest before it is served. ``/health`` answers 503 ``degraded`` when the newest index could not be loaded.
Slow clients: a request body must arrive within ``body_timeout`` seconds (else 408); header deadlines and
the connection cap are in :mod:`realm.serving.limits`.
"""

# no `from __future__ import annotations`: FastAPI must see the request model built in create_app
import asyncio
import json
import logging
import os
import secrets
import sys
import time
import unicodedata
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from realm.serving.answer import Answerer

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
JSON_TYPES = ("application/json",)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# ---------------------------------------------------------------------------------- response models
class Evidence(BaseModel):
    rank: int = Field(description="1 = the highest retrieval score")
    block: int = Field(description="block id in the served corpus")
    doc_id: str
    title: str
    text: str = Field(description="the block's exact source text")
    retrieval_score: float | None = Field(description="inner product of question and block embeddings")
    retrieval_prob: float | None = Field(description="softmax of the retrieval scores over the k blocks")
    answer_start: int | None = Field(description="char offset of the answer in `text` if it was read from this "
                                                 "block, else null")
    answer_end: int | None = Field(description="end char offset (exclusive) of the answer in `text`, or null")


class Answer(BaseModel):
    question: str
    answer: str | None = Field(description="the best span, or null when nothing readable was retrieved")
    score: float | None = Field(description="joint logit of the answer: span score + retrieval score")
    k: int = Field(description="blocks retrieved and read")
    index_version: int
    corpus_hash: str
    latency_ms: float
    evidence: list[Evidence]


class ErrorBody(BaseModel):
    error: str
    detail: object | None = None


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when the newest index version could not be loaded")
    index_version: int
    uptime_s: float
    problem: str | None = Field(default=None, description="why the service is degraded (names the file)")


class Reloaded(BaseModel):
    reloaded: bool = Field(description="true if a newer index version is now served")
    index_version: int
    corpus_hash: str


ERRORS = {400: {"model": ErrorBody, "description": "malformed JSON"},
          413: {"model": ErrorBody, "description": "request body too large"},
          415: {"model": ErrorBody, "description": "content type is not application/json"},
          422: {"model": ErrorBody, "description": "invalid question or k, or unknown fields"}}


def _request_model(max_question_chars: int, max_k: int, default_k: int) -> type[BaseModel]:
    class AskRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"question": "Where was Elsa "
                                                                                   "Mirrow born?", "k": default_k}]})

        question: Annotated[StrictStr, Field(min_length=1, max_length=max_question_chars,
                                             description=f"the question (1-{max_question_chars} characters, "
                                                         "not only whitespace)")]
        k: Annotated[StrictInt | None, Field(ge=1, le=max_k, description=f"blocks to retrieve and read, "
                                                                         f"1-{max_k} (default {default_k})")] = None

        @field_validator("question")
        @classmethod
        def _not_blank(cls, v: str) -> str:
            if not _visible(v):
                raise ValueError("question is empty or only whitespace")
            return v

    return AskRequest


def _visible(text: str) -> bool:
    """True if ``text`` has a character that is not whitespace or invisible (zero-width and other format characters)."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cs", "Zs", "Zl", "Zp")
               for ch in text)


ADMIN_TOKEN_ENV = "REALM_ADMIN_TOKEN"


def _admin_token(token: str | None) -> str:
    token = token or os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if token:
        return token
    return secrets.token_urlsafe(24)  # `realm serve` prints it at start


def _cross_origin(request: Request) -> bool:
    """True for a request a browser sent on behalf of another site."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "")
    return origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower())


# ---------------------------------------------------------------------------------- errors
def _error(status: int, message: str, detail=None, headers=None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail if detail is not None else message}, status_code=status,
                        headers=headers)


def _describe(errors: list[dict]) -> tuple[int, str, list[dict]]:
    """(status, one-sentence message, JSON-safe details) for pydantic/FastAPI validation errors."""
    clean = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        clean.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    if any(e["type"] == "json_invalid" for e in clean):
        ctx = next((er.get("ctx", {}) for er in errors if er.get("type") == "json_invalid"), {}) or {}
        why = ctx.get("error", "") if isinstance(ctx, dict) else ""
        return 400, f"malformed JSON in the request body{': ' + str(why) if why else ''}", clean
    parts = []
    for e in clean:
        where = ".".join(e["loc"]) or "body"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (allowed: question, k)"
        elif e["type"] == "missing" and not e["loc"]:
            msg = 'a JSON object {"question": ...} is required'
        parts.append(f"{where}: {msg}")
    return 422, "invalid request: " + "; ".join(parts), clean


class BodyGuard:
    """ASGI middleware: 413 for bodies over ``limit`` bytes (declared or streamed), 415 for non-JSON POSTs.

    The body is read (at most ``limit`` bytes) before the app sees it, so an oversize upload is cut off
    without being buffered whole.
    """

    def __init__(self, app, limit: int, json_paths: tuple[str, ...], body_timeout: float = 10.0):
        self.app, self.limit, self.json_paths, self.body_timeout = app, limit, json_paths, body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["path"] in self.json_paths:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in JSON_TYPES:
                shown = ctype or "none"
                return await _error(415, f"unsupported content type ({shown}): send the question as "
                                         f'application/json, e.g. {{"question": "..."}}')(scope, receive, send)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                return await _error(400, "invalid Content-Length header")(scope, receive, send)
            if too_big:
                return await self._too_big(scope, receive, send)
        chunks, size = [], 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return await _error(408, f"request body not received within {self.body_timeout:g} s",
                                    headers={"Connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                return await self._too_big(scope, receive, send)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        if scope["path"] in self.json_paths:
            try:
                json.loads(b"".join(chunks))
            except RecursionError:
                return await _error(400, "malformed JSON in the request body: nested too deeply")(scope, receive, send)
            except ValueError:
                pass  # FastAPI reports these with the position of the error
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_big(self, scope, receive, send):
        resp = _error(413, f"request body too large (limit {self.limit} bytes)", headers={"Connection": "close"})
        return await resp(scope, receive, send)


# ---------------------------------------------------------------------------------- the app
def create_app(run_dir: str | Path | None = None, *, answerer: Answerer | None = None, max_question_chars: int = 500,
               max_k: int = 20, max_body_bytes: int | None = None, watch: bool = True, watch_interval: float = 1.0,
               device: str = "cpu", max_batch: int = 16, admin_token: str | None = None,
               body_timeout: float = 10.0) -> FastAPI:
    """The service for ``run_dir`` (models are loaded here, once), or around an existing ``answerer``.

    ``max_k`` caps the ``k`` a request may ask for (and must not exceed the answerer's own ``max_k``).
    ``watch``: reload within ``watch_interval`` seconds of ``RUN/index/LATEST`` changing (started with the
    app's lifespan, so under uvicorn or ``with TestClient(app)``). An ``answerer`` passed in is not closed
    when the app shuts down.
    """
    if max_question_chars < 1 or max_k < 1:
        raise ValueError("max_question_chars and max_k must be >= 1")
    own = answerer is None
    if own:
        if run_dir is None:
            raise ValueError("create_app needs run_dir or answerer")
        answerer = Answerer(run_dir, device=device, max_k=max_k, max_batch=max_batch)
    elif max_k > answerer.max_k:
        raise ValueError(f"max_k={max_k} exceeds the answerer's max_k={answerer.max_k}")
    default_k = min(answerer.default_k, max_k)
    limit = max_body_bytes or max(16_384, 16 * max_question_chars + 4096)
    AskRequest = _request_model(max_question_chars, max_k, default_k)  # noqa: N806
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher_started = False
        if watch and answerer._watcher is None:
            answerer.watch(watch_interval)
            watcher_started = True
        try:
            yield
        finally:
            if watcher_started:
                answerer.stop_watching()
            if own:
                answerer.close()

    # FastAPIOffline: FastAPI whose /docs loads its JS/CSS from the installed package, not from a CDN
    app = FastAPIOffline(title="realm", version=_version(), lifespan=lifespan, redoc_url=None,
                         description="Open-domain question answering with a REALM retriever + reader. "
                                     "Answers are spans of retrieved corpus blocks.")
    app.state.answerer = answerer
    app.state.limits = {"max_question_chars": max_question_chars, "max_k": max_k, "default_k": default_k,
                        "max_body_bytes": limit}
    app.state.admin_token = _admin_token(admin_token)
    app.add_middleware(BodyGuard, limit=limit, json_paths=("/ask",), body_timeout=body_timeout)

    def admin_only(request: Request) -> None:
        if _cross_origin(request):
            raise HTTPException(403, "cross-origin requests to /admin are refused")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(),
                                                                    app.state.admin_token.encode()):
            raise HTTPException(401, f"/admin needs 'Authorization: Bearer <token>' (the token is ${ADMIN_TOKEN_ENV}, "
                                     "or printed by the server at start)", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        status, message, detail = _describe(list(exc.errors()))
        return _error(status, message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = "the request body could not be read as JSON (it must be UTF-8 encoded)"
        return _error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.post("/ask", response_model=Answer, responses=ERRORS, summary="Answer a question")
    async def ask(req: AskRequest) -> dict:  # type: ignore[valid-type]
        """Retrieve the top-k blocks, read them, return the best answer span and the evidence."""
        # awaited on the event loop: the answerer's worker thread reads; no thread waits for it
        future = answerer.submit_many([req.question], req.k if req.k is not None else default_k)[0]
        return await asyncio.wrap_future(future)

    @app.get("/health", response_model=Health, summary="Liveness and the served index version",
             responses={503: {"model": Health, "description": "degraded: the newest index could not be loaded"}})
    def health():
        body = {"status": "ok", "index_version": answerer.index_version, "uptime_s": round(time.time() - started, 1)}
        problem = getattr(answerer, "problem", None)
        if problem:
            return JSONResponse({**body, "status": "degraded", "problem": problem}, status_code=503)
        return body

    @app.get("/stats", summary="Index version, corpus size, requests served, latency percentiles (ms)")
    def stats() -> dict:
        return {**answerer.stats(), "limits": app.state.limits}

    @app.post("/admin/reload", response_model=Reloaded, summary="Serve the newest index version now",
              dependencies=[Depends(admin_only)],
              responses={401: {"model": ErrorBody, "description": "missing or wrong admin token"},
                         403: {"model": ErrorBody, "description": "cross-origin request"}})
    def reload() -> dict:
        try:
            swapped = answerer.reload()
        except Exception as e:  # the old version stays in service
            log.exception("reload failed")
            raise HTTPException(500, f"reload failed, still serving index v{answerer.index_version}: {e}") from e
        return {"reloaded": swapped, "index_version": answerer.index_version,
                "corpus_hash": answerer.corpus.manifest.corpus_hash}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(StaticHeaders)
    return app


class StaticHeaders:
    """Adds the page's security headers to ``/static/`` responses (a plain ASGI middleware: other paths pass
    straight through, without the per-request task and stream of Starlette's ``BaseHTTPMiddleware``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/static/"):
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()
                         if k.lower().encode() not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _version() -> str:
    try:
        from realm import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "0"


def serve(run_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_question_chars: int = 500,
          max_k: int = 20, watch: bool = True, device: str = "cpu", log_level: str = "info") -> None:
    """Run the service with uvicorn (blocking)."""
    import uvicorn

    from realm.serving import limits

    app = create_app(run_dir, max_question_chars=max_question_chars, max_k=max_k, watch=watch, device=device,
                     body_timeout=limits.BODY_TIMEOUT_S)
    print(f"realm: admin token: {app.state.admin_token}" if not os.environ.get(ADMIN_TOKEN_ENV) else
          f"realm: admin token from ${ADMIN_TOKEN_ENV}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, http=limits.limited_protocol(),
                timeout_keep_alive=limits.KEEP_ALIVE_S, limit_concurrency=limits.MAX_CONNECTIONS - 16,
                h11_max_incomplete_event_size=limits.MAX_HEADER_BYTES)
