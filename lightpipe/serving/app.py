"""The HTTP layer: routes, request checks, errors as JSON, metrics, and the process runner.

    GET  /health                       {"status": "ok", "models": {...}}   (503 while draining)
    GET  /metrics                      Prometheus text
    GET  /v1/models[/NAME]             OpenAI-style model list
    POST /v1/pipelines/NAME            {"inputs": ..., "parameters": {...}} -> the pipeline's result
    POST /v1/embeddings                OpenAI embeddings (openai_api.py)
    POST /v1/chat/completions, /v1/completions   OpenAI generation (openai_api.py)

The process around it (loading models, threads, the socket, signals) is in runner.py.

Every error is ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape) with its
status: 400 malformed JSON, 404 unknown model or route, 413 body too large, 422 wrong field
types or a bad input or argument, 429 queue full, 500 the model failed, 501 not built yet,
503 draining, 504 past the request timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import LightpipeError
from .batcher import Batcher, Job, QueueFull
from .metrics import LATENCY_BUCKETS, Metrics
from .settings import ModelSpec, ServerSettings

logger = logging.getLogger("lightpipe.serving")

_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                500: "server_error", 501: "not_implemented_error", 503: "server_error",
                504: "timeout_error"}
# Call arguments the server decides, not the client.
_RESERVED_PARAMETERS = ("batch_size", "num_workers", "device")


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": _ERROR_TYPES.get(self.status, "error"),
                          "code": self.code, "param": self.param}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


def pipeline_error(error: BaseException) -> ApiError:
    """An exception from the worker -> the client's error: its input (422) or the model (500)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, (LightpipeError, ValueError, TypeError, KeyError)):
        return ApiError(422, str(error) or type(error).__name__, "invalid_input")
    logger.error("The model failed on a request", exc_info=error)
    return ApiError(500, f"The model failed on this request ({type(error).__name__}: {error}). "
                         "The server keeps running.", "internal_error")


class ServedModel:
    """One model: its pipeline, its batcher, and the checks its requests go through."""

    def __init__(self, spec: ModelSpec, pipe: Any, folder: Any, metrics: Metrics):
        from ..pipelines import SUPPORTED_TASKS

        self.spec, self.pipe, self.folder, self.metrics = spec, pipe, folder, metrics
        self.name: str = spec.name  # type: ignore[assignment]
        self.task: str = pipe.task
        task = SUPPORTED_TASKS.get(self.task)
        self.kind = task.kind if task else "text"
        self.created = int(time.time())
        self.batcher = Batcher(self.name, spec.max_batch_size, spec.max_wait_ms, spec.max_queue, metrics)
        self.cache: dict[str, Any] = {}  # per-endpoint settings read once (pooling, ...)
        # The pipeline sorts a batch's inputs by length and runs them in forwards of this size,
        # each padded to its own longest. On a CPU, small forwards lose little speed and save
        # the padding: MiniLM on 16 short sentences of mixed length took 11.0 ms a text in one
        # forward, 8.8 ms in forwards of 4 to 8, 12.4 ms one by one. On a GPU, one big forward.
        self.forward_batch_size = spec.forward_batch_size or (
            min(8, spec.max_batch_size) if str(pipe.device).startswith("cpu") else spec.max_batch_size)

    def describe(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "lightpipe",
                "task": self.task, "source": self.spec.model}

    def check_parameters(self, parameters: Any) -> dict:
        if not isinstance(parameters, dict):
            raise ApiError(422, f"'parameters' must be an object, not {_kind(parameters)}.",
                           "invalid_type", "parameters")
        for key in _RESERVED_PARAMETERS:
            if key in parameters:
                raise ApiError(422, f"'{key}' is set by the server (see --max-batch-size), not per request.",
                               "invalid_parameter", f"parameters.{key}")
        try:
            self.pipe._sanitize_parameters(**parameters)
        except (TypeError, ValueError) as error:
            raise ApiError(422, f"Invalid parameters for {self.task}: {error}", "invalid_parameter",
                           "parameters") from None
        return parameters

    def check_inputs(self, items: list, field: str) -> None:
        if len(items) > self.spec.max_inputs:
            raise ApiError(422, f"{len(items)} inputs in one request; this server takes at most "
                                f"{self.spec.max_inputs}. Split the request.", "too_many_inputs", field)
        if self.kind != "text":
            return
        limit = self.spec.max_input_chars
        for index, item in enumerate(items):
            for text in _strings(item):
                if len(text) > limit:
                    raise ApiError(422, f"Input {index} has {len(text)} characters; this server takes "
                                        f"at most {limit} per text.", "input_too_long", field)

    def media_inputs(self, items: list, field: str) -> list:
        """Image, video and audio inputs arrive as JSON: base64 file bytes (or a data: URI), an
        http(s) URL for images and videos, or for audio {"array": [...], "sampling_rate": N}. A server never
        opens a path on its own disk because a client named it."""
        if self.kind == "multimodal":  # an image, or {"image": ..., "question": ...}
            return [_multimodal_item(item, f"{field}[{index}]") for index, item in enumerate(items)]
        if self.kind not in ("image", "audio", "video"):
            return items
        return [_media_item(self.kind, item, f"{field}[{index}]") for index, item in enumerate(items)]

    async def call(self, request: Request, key: str, items: list, run: Callable[[list], list],
                   finish: Callable[[list], Any]) -> bytes:
        """Queue a job, then wait for its answer, the request's timeout or the client leaving."""
        try:
            job = self.batcher.submit(key, items, run, finish)
        except QueueFull:
            raise ApiError(429, f"The queue of model {self.name!r} is full ({self.spec.max_queue} "
                                "requests waiting). Retry shortly.", "queue_full",
                           headers={"Retry-After": "1"}) from None
        return await self.wait(request, job)

    async def wait(self, request: Request, job: Job, first: asyncio.Future | None = None) -> Any:
        """The job's answer; with ``first``, return None as soon as that future is done (a
        stream's first text). 504 past the timeout and ClientGone on a disconnect, both of
        which take the job out of the queue."""
        timeout = self.spec.timeout_s or None
        gone = asyncio.ensure_future(_client_gone(request))
        watched = {job.future, gone} | ({first} if first is not None else set())
        try:
            done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if first is not None and first in done:
            return None
        if job.future in done and not job.future.cancelled():
            error = job.future.exception()
            if error is not None:
                raise pipeline_error(error)
            return job.future.result()
        self.batcher.cancel(job)
        if gone in done:
            self.metrics.inc("lightpipe_requests_cancelled_total", model=self.name, reason="disconnect")
            raise ClientGone()
        self.metrics.inc("lightpipe_requests_cancelled_total", model=self.name, reason="timeout")
        raise ApiError(504, f"No answer within the request timeout ({self.spec.timeout_s:g} s).", "timeout")


class ServerState:
    """What the routes share: the models, their names, the limits, the metrics."""

    def __init__(self, models: list[ServedModel], settings: ServerSettings, metrics: Metrics):
        self.models = {model.name: model for model in models}
        self.settings = settings
        self.metrics = metrics
        self.draining = False
        self.inflight = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        # Also reachable by the model id it was loaded from, and by its task when only one
        # model serves that task: `model: "sentence-transformers/all-MiniLM-L6-v2"` works.
        self.aliases: dict[str, ServedModel] = {}
        tasks = [model.task for model in models]
        for model in models:
            for alias in (model.spec.model, model.task):
                if alias and alias not in self.models and (alias != model.task or tasks.count(alias) == 1):
                    self.aliases.setdefault(alias, model)
        metrics.gauges["lightpipe_queue_depth"] = lambda: {
            (("model", m.name),): m.batcher.queued for m in models}
        metrics.gauges["lightpipe_batch_running"] = lambda: {
            (("model", m.name),): m.batcher.running for m in models}
        metrics.gauges["lightpipe_requests_in_flight"] = lambda: {(): self.inflight}
        for name, text in (
                ("lightpipe_requests_total", "HTTP requests answered, by endpoint, model and status code."),
                ("lightpipe_request_seconds", "Time from a request's arrival to its answer."),
                ("lightpipe_requests_cancelled_total", "Requests dropped before their answer: client "
                                                       "disconnect or timeout."),
                ("lightpipe_batches_total", "Pipeline calls made by the batcher."),
                ("lightpipe_batch_size", "Inputs per pipeline call."),
                ("lightpipe_batch_seconds", "Duration of one pipeline call (worker thread)."),
                ("lightpipe_queue_depth", "Requests waiting in a model's queue."),
                ("lightpipe_batch_running", "Inputs in the batch a model's worker runs now."),
                ("lightpipe_requests_in_flight", "HTTP requests being handled.")):
            metrics.describe(name, text)

    def lookup(self, name: Any, field: str | None = None) -> ServedModel:
        if not isinstance(name, str):
            raise ApiError(422, f"'{field}' must be a string naming a model, not {_kind(name)}.",
                           "invalid_type", field)
        model = self.models.get(name) or self.aliases.get(name)
        if model is None:
            raise ApiError(404, f"Unknown model {name!r}. Served here: {', '.join(self.models)} "
                                "(GET /v1/models).", "model_not_found", field)
        return model

    def drain(self) -> None:
        self.draining = True
        for model in self.models.values():
            model.batcher.drain()


# --- request helpers ---

async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, read up to ``limit`` bytes (413 past it, 400 if it does not parse)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"The request body is larger than this server's limit of {limit} bytes.",
                         "body_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The request body is not valid JSON: {error}.", "malformed_json") from None


def require_object(body: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(body, dict):
        raise ApiError(422, f"The request body must be a JSON object, not {_kind(body)}.", "invalid_type")
    for key in body:
        if key not in allowed:
            raise ApiError(422, f"Unknown field {key!r}; this endpoint reads {', '.join(sorted(allowed))}.",
                           "unknown_field", key)
    for key in sorted(required):
        if key not in body:
            raise ApiError(422, f"The field {key!r} is required.", "missing_field", key)
    return body


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body is read by then; the next ASGI message is
    ``http.disconnect``, sent when the connection closes)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _strings(item: Any):
    if isinstance(item, str):
        yield item
    elif isinstance(item, dict):
        for value in item.values():
            yield from _strings(value)
    elif isinstance(item, list):
        for value in item:
            yield from _strings(value)
    elif hasattr(item, "messages"):  # a Chat
        yield from _strings(item.messages)


_MEDIA_HELP = {
    "image": "an image is a base64 string of the file's bytes, a data: URI or an http(s) URL",
    "video": "a video is a base64 string of the file's bytes, a data: URI or an http(s) URL",
    "audio": ('audio is a base64 string of the file\'s bytes, a data: URI, or {"array": [samples], '
              '"sampling_rate": N}'),
}


def _media_item(kind: str, item: Any, param: str) -> Any:
    import base64
    import binascii
    import os

    if isinstance(item, dict) and kind == "audio":
        samples = item.get("array", item.get("raw"))
        if not isinstance(samples, list) or not isinstance(item.get("sampling_rate"), int):
            raise ApiError(422, f"{param}: {_MEDIA_HELP[kind]}.", "invalid_type", param)
        import numpy as np

        return {"array": np.asarray(samples, dtype=np.float32), "sampling_rate": item["sampling_rate"]}
    if isinstance(item, dict) and kind == "image" and "image" in item:
        return {**item, "image": _media_item(kind, item["image"], f"{param}.image")}
    if not isinstance(item, str) or not item:
        raise ApiError(422, f"{param}: {_MEDIA_HELP[kind]}, not {_kind(item)}.", "invalid_type", param)
    if item.startswith(("http://", "https://")):
        if kind == "audio":
            raise ApiError(422, f"{param}: the server does not fetch audio URLs; {_MEDIA_HELP[kind]}.",
                           "invalid_input", param)
        return item
    if len(item) < 4096 and os.path.exists(item):
        raise ApiError(422, f"{param}: the server does not read files from its own disk; "
                            f"{_MEDIA_HELP[kind]}.", "invalid_input", param)
    data = item.split(",", 1)[1] if item.startswith("data:") and "," in item else item
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{param} is not valid base64; {_MEDIA_HELP[kind]}.", "invalid_input",
                       param) from None


def _multimodal_item(item: Any, param: str) -> Any:
    """An image-and-text task's input: its image, as any image input, inside a dict or alone
    (image-to-text); a dict without an image stays as it is (document question answering with
    the client's word_boxes)."""
    if isinstance(item, dict):
        if item.get("image") is None:
            return item
        return {**item, "image": _media_item("image", item["image"], f"{param}.image")}
    return _media_item("image", item, param)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


# --- routes ---

Handler = Callable[[Request, ServerState], Awaitable[Response]]


def endpoint(label: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: errors to JSON, request id echoed, requests counted and timed."""

    async def route(request: Request) -> Response:
        state: ServerState = request.app.state.lightpipe
        start = time.perf_counter()
        state.inflight += 1
        request.state.model = ""
        try:
            if state.draining and label != "health":
                raise ApiError(503, "The server is shutting down.", "shutting_down")
            response = await handler(request, state)
        except ApiError as error:
            response = error.response()
        except ClientGone:
            response = Response(status_code=499)  # nobody reads it; counted as 499, as nginx does
        except Exception as error:  # a bug of ours: answer 500, keep serving
            logger.error("Error in %s %s", request.method, request.url.path, exc_info=error)
            response = ApiError(500, f"Internal error ({type(error).__name__}: {error}).",
                                "internal_error").response()
        finally:
            state.inflight -= 1
        request_id = request.headers.get("x-request-id")
        if request_id:
            response.headers["x-request-id"] = request_id
        model = request.state.model
        state.metrics.inc("lightpipe_requests_total", endpoint=label, model=model,
                          code=str(response.status_code))
        state.metrics.observe("lightpipe_request_seconds", time.perf_counter() - start,
                              LATENCY_BUCKETS, endpoint=label, model=model)
        return response

    return route


async def health(request: Request, state: ServerState) -> Response:
    models = {name: {"task": m.task, "queued": m.batcher.queued} for name, m in state.models.items()}
    if state.draining:
        return JSONResponse({"status": "draining", "models": models}, status_code=503)
    return JSONResponse({"status": "ok", "models": models})


async def metrics_page(request: Request, state: ServerState) -> Response:
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")


async def list_models(request: Request, state: ServerState) -> Response:
    return JSONResponse({"object": "list", "data": [m.describe() for m in state.models.values()]})


async def get_model(request: Request, state: ServerState) -> Response:
    return JSONResponse(state.lookup(request.path_params["name"]).describe())


# --- how a request's inputs become pipeline items, and its results the Python call's answer ---
# The batcher calls the base Pipeline.__call__ on a list of items from many requests: it always
# returns one result per item. A task's own __call__ may reshape inputs or results; these
# functions do the same per request, so the HTTP answer equals ``pipe(inputs, **parameters)``.

def split_inputs(task: str, inputs: Any) -> tuple[list, bool]:
    """A request's ``inputs`` -> (items, single)."""
    if task == "text-generation":  # a chat is a list of messages: one input, not a batch
        from ..pipelines.text_generation import Chat, as_chats

        inputs = as_chats(inputs)
        if isinstance(inputs, Chat):
            return [inputs], True
    single = not isinstance(inputs, list)
    return ([inputs] if single else inputs), single


def shape_results(task: str, inputs: Any, single: bool, parameters: dict, results: list) -> Any:
    if single:
        if task == "text-classification" and isinstance(inputs, str) and "top_k" not in parameters:
            return results  # a lone string's result comes in a list unless top_k is given
        return results[0]
    if task in ("fill-mask", "question-answering") and len(results) == 1:
        return results[0]  # these answer a list of one as they answer the item alone
    return results


async def run_pipeline(request: Request, state: ServerState) -> Response:
    from ..pipelines.base import Pipeline

    model = state.lookup(request.path_params["name"])
    request.state.model = model.name
    body = require_object(await read_json(request, state.settings.max_body_bytes),
                          {"inputs", "parameters"}, {"inputs"})
    parameters = model.check_parameters(body.get("parameters", {}))
    inputs = body["inputs"]
    items, single = split_inputs(model.task, inputs)
    if not items:
        return JSONResponse([])
    model.check_inputs(items, "inputs")
    items = model.media_inputs(items, "inputs")
    pipe, batch_size = model.pipe, model.forward_batch_size

    def run(batch: list) -> list:
        return Pipeline.__call__(pipe, batch, batch_size=batch_size, **parameters)

    def finish(results: list) -> Any:
        return shape_results(model.task, inputs, single, parameters, results)

    key = "pipeline:" + json.dumps(parameters, sort_keys=True, default=str)
    return Response(await model.call(request, key, items, run, finish), media_type="application/json")


def build_app(models: list[ServedModel], settings: ServerSettings, metrics: Metrics) -> Starlette:
    from . import openai_api

    state = ServerState(models, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state.loop = asyncio.get_running_loop()
        for model in models:
            model.batcher.start()
        yield
        state.drain()
        for model in models:
            await model.batcher.close()

    async def http_error(request: Request, error: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = {404: f"No route {request.url.path!r}. Routes: /health, /metrics, /v1/models, "
                        "/v1/pipelines/NAME, /v1/embeddings, /v1/chat/completions, /v1/completions.",
                   405: f"{request.method} is not allowed on {request.url.path}."}
        return ApiError(error.status_code, message.get(error.status_code, str(error.detail)), code,
                        headers=dict(error.headers or {})).response()

    routes = [
        Route("/health", endpoint("health", health), methods=["GET"]),
        Route("/metrics", endpoint("metrics", metrics_page), methods=["GET"]),
        Route("/v1/models", endpoint("models", list_models), methods=["GET"]),
        Route("/v1/models/{name:path}", endpoint("models", get_model), methods=["GET"]),
        Route("/v1/pipelines/{name:path}", endpoint("pipelines", run_pipeline), methods=["POST"]),
        Route("/v1/embeddings", endpoint("embeddings", openai_api.embeddings), methods=["POST"]),
        Route("/v1/chat/completions", endpoint("chat", openai_api.chat_completions), methods=["POST"]),
        Route("/v1/completions", endpoint("completions", openai_api.completions), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.lightpipe = state
    return app
