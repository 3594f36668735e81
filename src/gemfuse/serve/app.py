"""The OpenAI-compatible server: /v1/models, /v1/chat/completions, /v1/responses, /v1/completions,
/v1/embeddings, /health and the web page at /."""

from __future__ import annotations

import contextlib
import hmac
import importlib.resources
import ipaddress
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import ServerSettings
from ..dashboard import Folders
from ..paths import CONFIG_ENV
from ..registry import Registry
from .chat import ChatHandler
from .completions import CompletionRequest, text_body, text_events
from .dashboard import dashboard_router
from .embeddings import EmbeddingRequest, embeddings_body
from .errors import HTTPError, describe
from .responses import ResponsesRequest, Shell, response_events
from .schemas import ChatRequest, ErrorType, error_body

log = logging.getLogger("uvicorn.error")  # uvicorn's own start-up log, which `gemfuse serve` shows
OPEN_PATHS = ("/", "/health", "/favicon.ico", "/dashboard.js")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: bearer auth (constant-time) and the request body size limit, before any route runs."""

    def __init__(self, app, api_key: str | None, max_body: int):
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            token = given[7:] if given[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self.api_key):
                return await _send_error(send, 401, "missing or wrong API key: send Authorization: Bearer <key>",
                                         "authentication_error", code="invalid_api_key")
        declared = int(headers.get(b"content-length", b"0") or 0)
        if declared > self.max_body:
            return await _send_error(send, 413, f"request body of {declared} bytes is over the "
                                     f"{self.max_body} byte limit", code="body_too_large")
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPError(413, f"request body is over the {self.max_body} byte limit", code="body_too_large")
            return message

        return await self.app(scope, limited_receive, send)


async def _send_error(send, status: int, message: str, type_: ErrorType = "invalid_request_error",
                      code: str | None = None):
    body = json.dumps(error_body(message, type_, None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def json_body(request: Request) -> dict[str, Any]:
    try:
        raw = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise HTTPError(400, "the request body must be a JSON object", code="invalid_json")
    return raw


def event_stream(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


REMOTE_ONLY_ENV = "GEMFUSE_SERVE_REMOTE_ONLY"
CAPTURE_ENV = "GEMFUSE_SERVE_CAPTURE"
FOLDERS_ENV = "GEMFUSE_SERVE_FOLDERS"


def capacity_lines(registry: Registry, settings: ServerSettings) -> list[str]:
    """What each configured model takes at once, said when the server starts."""
    lines = []
    for name in registry.names():
        spec = registry.spec(name)
        if spec.concurrency is None:
            lines.append(f"{name} ({spec.backend}): no limit on requests at once")
        else:
            lines.append(f"{name} ({spec.backend}): {spec.concurrency} at once, {settings.max_queue} more wait, "
                         "then 429")
    return lines


def dashboard_folders(settings: ServerSettings, capture: str | Path | None = None,
                      given: dict[str, str | Path | None] | None = None) -> Folders:
    """The folders the dashboard reads: those given (serve --runs/--evals/--distil), else the [server] table's."""
    given = {k: v for k, v in (given or {}).items() if v}
    return Folders.of(runs=given.get("runs", settings.runs_dir), evals=given.get("evals", settings.evals_dir),
                      distil=given.get("distil", settings.distil_dir), capture=capture or settings.capture_dir)


def create_app(registry: Registry | None = None, settings: ServerSettings | None = None,
               capture: str | Path | None = None, folders: dict[str, str | Path | None] | None = None) -> Guard:
    """The app; `capture` (else the config's [server] capture_dir) keeps every answer as a training row;
    `folders` (runs, evals, distil) overrides where the dashboard looks."""
    registry = registry or Registry.load()
    settings = settings or registry.config.server
    api_key = os.environ.get(settings.api_key_env) or None
    handler = ChatHandler(registry, settings, registry.capture_writer(capture or settings.capture_dir))
    @contextlib.asynccontextmanager
    async def lifespan(app):
        for line in capacity_lines(registry, settings):
            log.info("%s", line)
        yield
        await registry.aclose()

    app = FastAPI(title="gemfuse", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.registry = registry

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown paths and methods in OpenAI's error shape, like every other error."""
        if exc.status_code == 404:
            body = error_body(f"no route {request.method} {request.url.path}: see /v1/models, /v1/chat/completions, "
                              "/v1/responses, /v1/completions and /v1/embeddings", "not_found_error", None,
                              "unknown_url")
        else:
            body = error_body(f"{request.method} {request.url.path}: {exc.detail}", "invalid_request_error", None,
                              "method_not_allowed" if exc.status_code == 405 else None)
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def error_response(exc: BaseException) -> JSONResponse:
        status, body = describe(exc)
        return JSONResponse(body, status_code=status)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": len(registry.names(presets=True))}

    @app.get("/v1/gemfuse/stats")
    async def stats() -> dict:
        return handler.gate.stats()

    @app.get("/v1/models")
    async def list_models() -> dict:
        created = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "gemfuse"}
                                           for name in registry.names(presets=True)]}

    # Errors are answered in each route, not by exception handlers: Starlette re-raises unhandled ones after
    # replying, which logs a traceback and drops the client's keep-alive connection.
    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        try:
            body = ChatRequest.model_validate(await json_body(request))
            if body.stream:
                return event_stream(await handler.stream(body))
            return JSONResponse(await handler.complete(body))
        except Exception as exc:  # every failure becomes an OpenAI-shaped error
            return error_response(exc)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        try:
            body = ResponsesRequest.model_validate(await json_body(request))
            shell, chat_request = Shell(body), body.to_chat()
            if body.stream:
                return event_stream(response_events(shell, await handler.stream(chat_request)))
            return JSONResponse(shell.from_chat(await handler.complete(chat_request)))
        except Exception as exc:
            return error_response(exc)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        try:
            body = CompletionRequest.model_validate(await json_body(request))
            if body.stream:
                return event_stream(text_events(body, await handler.stream(body.to_chat(body.prompts()[0]))))
            answers = [(prompt, await handler.complete(body.to_chat(prompt))) for prompt in body.prompts()]
            return JSONResponse(text_body(body, answers))
        except Exception as exc:
            return error_response(exc)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        try:
            body = EmbeddingRequest.model_validate(await json_body(request))
            name = body.model_name()
            model = registry.get(name)
            async with handler.gate.held(name) as held:
                result = await model.embed(body.texts())
                held.ok = True
            return JSONResponse(embeddings_body(body, result.vectors, result.prompt_tokens))
        except Exception as exc:
            return error_response(exc)

    app.include_router(dashboard_router(dashboard_folders(settings, capture, folders), registry.config.file.models))
    web = importlib.resources.files("gemfuse.serve").joinpath("web")
    html = web.joinpath("index.html").read_text("utf-8")
    script = web.joinpath("dashboard.js").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/dashboard.js")
    async def dashboard_script() -> Response:
        return Response(script, media_type="text/javascript")

    return Guard(app, api_key, int(settings.max_body_mb * 1024 * 1024))


def serve(host: str = "127.0.0.1", port: int = 8000, config=None, workers: int = 1,
          capture: str | Path | None = None, folders: dict[str, str | Path | None] | None = None) -> None:
    """Run the server with uvicorn; refuses a non-loopback address unless an API key is set. With `workers`
    > 1, that many processes share the port (fusion is stateless); they serve remote models only."""
    import uvicorn

    from ..errors import ConfigError, SettingError

    registry = Registry.load(config)
    settings = registry.config.server
    if not is_loopback(host) and not os.environ.get(settings.api_key_env):
        raise ConfigError(f"refusing to listen on {host} without an API key: set {settings.api_key_env} "
                          "(clients then send Authorization: Bearer <key>), or bind 127.0.0.1")
    common: dict[str, Any] = dict(host=host, port=port, log_level="info", timeout_graceful_shutdown=30,
                                  access_log=True, server_header=False)
    if workers <= 1:
        uvicorn.run(create_app(registry, settings, capture, folders), **common)
        return
    own = registry.config.file.models
    local = sorted(n for n in own if registry.in_process(n))
    if local:
        raise SettingError("workers", workers, f"{', '.join(local)} run in-process, and each worker would load its own "
                           "copy; serve them from a one-worker `gemfuse serve`, and remote models with several workers")
    if registry.config.path:
        os.environ[CONFIG_ENV] = str(registry.config.path)
    os.environ[REMOTE_ONLY_ENV] = "1"
    if capture:
        os.environ[CAPTURE_ENV] = str(Path(capture).expanduser().resolve())
    if folders:
        os.environ[FOLDERS_ENV] = json.dumps({k: str(Path(v).expanduser().resolve()) for k, v in folders.items() if v})
    uvicorn.run("gemfuse.serve.app:app_for_worker", factory=True, workers=workers, **common)


def app_for_worker() -> Guard:
    """Each worker process's app (uvicorn imports this by name): the config from $GEMFUSE_CONFIG."""
    return create_app(Registry.load(remote_only=os.environ.get(REMOTE_ONLY_ENV) == "1"),
                      capture=os.environ.get(CAPTURE_ENV), folders=json.loads(os.environ.get(FOLDERS_ENV, "{}")))
