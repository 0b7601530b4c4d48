"""The pipeline routes, and the wrapper every route goes through.

    GET  /health                       {"status": "ok", "models": {...}}   (503 while draining)
    GET  /metrics                      Prometheus text
    GET  /v1/models[/NAME]             OpenAI-style model list
    POST /v1/pipelines/NAME            {"inputs": ..., "parameters": {...}} -> the pipeline's result
                                       (text-to-audio: one input's audio/wav bytes with
                                       "response_format": "wav" or Accept: audio/wav; wav.py)

Image, video and audio inputs arrive as JSON and are checked, and URLs fetched or refused,
before they are queued (media.py); a request's parameters go through limits.py (in
``ServedModel.check_parameters``); how a request's inputs become pipeline items, and their
results the answer, is ``_pipeline_call``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .errors import ApiError, ClientGone, logger, pipeline_error, require_object
from .media import _media_item, _multimodal_item, media_inputs, resolve_media  # noqa: F401
from .metrics import LATENCY_BUCKETS
from .state import ServedModel, ServerState
from .wav import check_wav_request, wants_wav, wav_answer

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
            response = ApiError(500, f"Internal error ({type(error).__name__}); the details are in "
                                     "the server's log.", "internal_error").response()
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
    body = require_object(await state.read_body(request), {"inputs", "parameters", "response_format"},
                          {"inputs"})
    raw = wants_wav(request.headers.get("accept"), body.get("response_format"))
    parameters = model.check_parameters(body.get("parameters", {}))
    items, run, finish = _pipeline_call(model, body["inputs"], parameters, raw)  # may move per-item
    # settings out of parameters into the items: what is left keys the batch
    if not items:
        return JSONResponse([])
    model.check_inputs(items, "inputs")
    items = media_inputs(model.kind, items, "inputs", state.settings.allow_urls)
    items = await resolve_media(state, model.kind, items, parameters)
    key = "pipeline:" + json.dumps(parameters, sort_keys=True, default=str)
    return Response(await model.call(request, key, items, run, finish),
                    media_type="audio/wav" if raw else "application/json")


# --- how a request's inputs become pipeline items, and its results the Python call's answer ---
# The pipeline's public hooks, as its own __call__ uses them: split_inputs -> run_items (on a
# batch of items from many requests: one result per item) -> shape_results per request, so the
# HTTP answer equals ``pipe(inputs, **parameters)`` with no task-specific code here.

def _pipeline_call(model: ServedModel, inputs: Any, parameters: dict, raw_wav: bool = False
                   ) -> tuple[list, Callable[[list], list], Callable[[list], Any]]:
    """A request's ``inputs`` -> (items, run, finish): the items it queues, the call that runs
    a batch of items (this request's and others'), and the function that shapes this request's
    results as ``pipe(inputs, **parameters)`` would (with ``raw_wav``: one input's audio as WAV
    bytes). ``parameters`` may lose the per-item settings the pipeline moves into its items."""
    pipe = model.pipe
    try:
        items, single = pipe.split_inputs(inputs, parameters)
        pipe.check_parameters(**parameters)
    except Exception as error:  # a bad input or parameter: the pipeline's own message, as a 4xx
        raise pipeline_error(error) from None
    if raw_wav:
        check_wav_request(model, single)
    items = list(items)

    def run(batch: list) -> list:
        return run_batch(model, batch, batch_size=model.forward_batch_size, **parameters)

    def finish(results: list) -> Any:
        shaped = pipe.shape_results(inputs, single, parameters, results)
        return wav_answer(shaped) if raw_wav else shaped

    return items, run, finish


def run_batch(model: ServedModel, batch: list, **kwargs: Any) -> list:
    """One pipeline run on a list of items: one result per item, in order."""
    return model.pipe.run_items(batch, **kwargs)
