"""The pipeline routes, and the wrapper every route goes through.

    GET  /health                       {"status": "ok", "models": {...}}   (503 while draining)
    GET  /metrics                      Prometheus text
    GET  /v1/models[/NAME]             OpenAI-style model list
    POST /v1/pipelines/NAME            {"inputs": ..., "parameters": {...}} -> the pipeline's result

Image, video and audio inputs arrive as JSON and are checked here (``media_inputs``); how a
request's inputs become pipeline items, and their results the answer, is ``_pipeline_call``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .errors import ApiError, ClientGone, logger, pipeline_error, read_json, require_object, type_name
from .metrics import LATENCY_BUCKETS
from .state import ServedModel, ServerState

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


async def run_pipeline(request: Request, state: ServerState) -> Response:
    model = state.lookup(request.path_params["name"])
    request.state.model = model.name
    body = require_object(await read_json(request, state.settings.max_body_bytes),
                          {"inputs", "parameters"}, {"inputs"})
    parameters = model.check_parameters(body.get("parameters", {}))
    items, run, finish = _pipeline_call(model, body["inputs"], parameters)  # may move per-item
    # settings out of parameters into the items: what is left keys the batch
    if not items:
        return JSONResponse([])
    model.check_inputs(items, "inputs")
    items = media_inputs(model.kind, items, "inputs")
    key = "pipeline:" + json.dumps(parameters, sort_keys=True, default=str)
    return Response(await model.call(request, key, items, run, finish), media_type="application/json")


# --- how a request's inputs become pipeline items, and its results the Python call's answer ---
# The pipeline's public hooks, as its own __call__ uses them: split_inputs -> run_items (on a
# batch of items from many requests: one result per item) -> shape_results per request, so the
# HTTP answer equals ``pipe(inputs, **parameters)`` with no task-specific code here.

def _pipeline_call(model: ServedModel, inputs: Any, parameters: dict
                   ) -> tuple[list, Callable[[list], list], Callable[[list], Any]]:
    """A request's ``inputs`` -> (items, run, finish): the items it queues, the call that runs
    a batch of items (this request's and others'), and the function that shapes this request's
    results as ``pipe(inputs, **parameters)`` would. ``parameters`` may lose the per-item
    settings the pipeline moves into its items."""
    pipe = model.pipe
    try:
        items, single = pipe.split_inputs(inputs, parameters)
        pipe.check_parameters(**parameters)
    except Exception as error:  # a bad input or parameter: the pipeline's own message, as a 4xx
        raise pipeline_error(error) from None
    items = list(items)

    def run(batch: list) -> list:
        return run_batch(model, batch, batch_size=model.forward_batch_size, **parameters)

    def finish(results: list) -> Any:
        return pipe.shape_results(inputs, single, parameters, results)

    return items, run, finish


def run_batch(model: ServedModel, batch: list, **kwargs: Any) -> list:
    """One pipeline run on a list of items: one result per item, in order."""
    return model.pipe.run_items(batch, **kwargs)


# --- media inputs ---

_MEDIA_HELP = {
    "image": "an image is a base64 string of the file's bytes, a data: URI or an http(s) URL",
    "video": "a video is a base64 string of the file's bytes, a data: URI or an http(s) URL",
    "audio": ('audio is a base64 string of the file\'s bytes, a data: URI, or {"array": [samples], '
              '"sampling_rate": N}'),
}


def media_inputs(kind: str, items: list, field: str) -> list:
    """Image, video and audio inputs arrive as JSON: base64 file bytes (or a data: URI), an
    http(s) URL for images and videos, or for audio {"array": [...], "sampling_rate": N}. A server never
    opens a path on its own disk because a client named it. ``kind`` is the task's."""
    if kind == "multimodal":  # an image, or {"image": ..., "question": ...}
        return [_multimodal_item(item, f"{field}[{index}]") for index, item in enumerate(items)]
    if kind not in ("image", "audio", "video"):
        return items
    return [_media_item(kind, item, f"{field}[{index}]") for index, item in enumerate(items)]


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
        raise ApiError(422, f"{param}: {_MEDIA_HELP[kind]}, not {type_name(item)}.", "invalid_type", param)
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
