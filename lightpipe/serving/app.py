"""The app factory: the routes of routes.py and openai_api.py on one Starlette app.

    GET  /health, /metrics, /v1/models[/NAME]; POST /v1/pipelines/NAME      routes.py
    GET  /openapi.json, /docs                                              openapi.py
    POST /v1/embeddings, /v1/chat/completions, /v1/completions             openai_api.py
    POST /v1/audio/speech                                                  openai_api.py (wav.py)

With ``settings.api_key``, every route but /health needs ``Authorization: Bearer KEY`` (401
otherwise), as vLLM and TEI do. Errors and request reading are in errors.py, the models and
shared state in state.py, the process around the app (loading models, threads, the socket,
signals) in runner.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import openai_api, routes
from .errors import ApiError, ClientGone, pipeline_error, read_json, require_object
from .metrics import Metrics
from .settings import ServerSettings
from .state import ServedModel, ServerState

__all__ = ["ApiError", "ClientGone", "ServedModel", "ServerState", "build_app", "pipeline_error",
           "read_json", "require_object"]

_ROUTES = ("/health, /metrics, /v1/models, /v1/pipelines/NAME, /v1/embeddings, /v1/chat/completions, "
           "/v1/completions, /v1/audio/speech, /openapi.json, /docs")


def build_app(models: list[ServedModel], settings: ServerSettings, metrics: Metrics) -> Starlette:
    """A Starlette app serving ``models``; its lifespan starts and drains their batchers."""
    state = ServerState(models, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state.loop = asyncio.get_running_loop()
        for model in models:
            model.batcher.start()
        yield
        state.drain()
        # Requests in flight had the graceful period (uvicorn's); a batch still running is
        # stopped now, and waited for a few seconds at most.
        wait_s = min(5.0, settings.graceful_timeout_s)
        await asyncio.gather(*(model.batcher.close(wait_s) for model in models))
        state.close()

    async def http_error(request: Request, error: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = {404: f"No route {request.url.path!r}. Routes: {_ROUTES}.",
                   405: f"{request.method} is not allowed on {request.url.path}."}
        return ApiError(error.status_code, message.get(error.status_code, str(error.detail)), code,
                        headers=dict(error.headers or {})).response()

    endpoint = routes.endpoint
    table = [
        Route("/health", endpoint("health", routes.health), methods=["GET"]),
        Route("/metrics", endpoint("metrics", routes.metrics_page), methods=["GET"]),
        Route("/v1/models", endpoint("models", routes.list_models), methods=["GET"]),
        Route("/v1/models/{name:path}", endpoint("models", routes.get_model), methods=["GET"]),
        Route("/v1/pipelines/{name:path}", endpoint("pipelines", routes.run_pipeline), methods=["POST"]),
        Route("/v1/embeddings", endpoint("embeddings", openai_api.embeddings), methods=["POST"]),
        Route("/v1/chat/completions", endpoint("chat", openai_api.chat_completions), methods=["POST"]),
        Route("/v1/completions", endpoint("completions", openai_api.completions), methods=["POST"]),
        Route("/v1/audio/speech", endpoint("speech", openai_api.speech), methods=["POST"]),
        Route("/openapi.json", endpoint("docs", _openapi_json), methods=["GET"]),
        Route("/docs", endpoint("docs", _docs_page), methods=["GET"]),
    ]
    middleware = []
    if settings.cors_allow_origins:  # outermost: a browser's preflight needs no API key
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_allow_origins),
                                     allow_methods=["GET", "POST", "OPTIONS"],
                                     allow_headers=["Authorization", "Content-Type"]))
    if settings.api_key:
        middleware.append(Middleware(ApiKeyCheck, key=settings.api_key))
    app = Starlette(routes=table, lifespan=lifespan, exception_handlers={HTTPException: http_error},
                    middleware=middleware)
    app.state.lightpipe = state
    return app


async def _openapi_json(request: Request, state: ServerState) -> Response:
    from starlette.responses import JSONResponse

    from .openapi import schema

    return JSONResponse(schema(state))


async def _docs_page(request: Request, state: ServerState) -> Response:
    from starlette.responses import HTMLResponse

    from .openapi import DOCS_PAGE

    return HTMLResponse(DOCS_PAGE)


class ApiKeyCheck:
    """ASGI middleware: ``Authorization: Bearer KEY`` on every route but /health, compared in
    constant time; 401 otherwise (the openai client sends its ``api_key=`` so)."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode("utf-8")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/health":
            given = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), b"")
            scheme, _, token = given.partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)):
                error = ApiError(401, "This server needs an API key: send the header "
                                      "'Authorization: Bearer <key>'." if not given else
                                      "The API key is not valid.", "invalid_api_key",
                                 headers={"WWW-Authenticate": "Bearer"})
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
