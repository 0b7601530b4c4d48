"""What the routes share: each served model (its pipeline, batcher and request checks) and the
server's state (the models by name and alias, the limits, the metrics, draining)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from .batcher import Batcher, DaemonWorker, Job, JobCancelled, QueueFull
from .errors import ApiError, ClientGone, pipeline_error, read_json, type_name
from .limits import ParameterLimits
from .metrics import Metrics
from .settings import ModelSpec, ServerSettings

_METRIC_HELP = (
    ("lightpipe_requests_total", "HTTP requests answered, by endpoint, model and status code."),
    ("lightpipe_request_seconds", "Time from a request's arrival to its answer."),
    ("lightpipe_requests_cancelled_total", "Requests dropped before their answer: client "
                                           "disconnect or timeout."),
    ("lightpipe_batches_total", "Pipeline calls made by the batcher."),
    ("lightpipe_batch_size", "Inputs per pipeline call."),
    ("lightpipe_batch_seconds", "Duration of one pipeline call (worker thread)."),
    ("lightpipe_queue_depth", "Requests waiting in a model's queue."),
    ("lightpipe_batch_running", "Inputs in the batch a model's worker runs now."),
    ("lightpipe_requests_in_flight", "HTTP requests being handled."),
    ("lightpipe_queue_seconds", "Time a request waited in its model's queue before its batch ran."),
    ("lightpipe_prompt_tokens_total", "Prompt tokens of embeddings and completion requests."),
    ("lightpipe_generation_tokens_total", "Tokens generated for completion requests."),
    ("lightpipe_time_to_first_token_seconds", "Time from a streamed completion's arrival to its "
                                              "first text."),
)


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
        self.limits = ParameterLimits(spec, pipe)
        _stop_forwards_when_cancelled(pipe.model)

    def describe(self) -> dict:
        """The model as /v1/models lists it: its name and task, never the server's folder path."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "lightpipe",
                "task": self.task, "source": _public_source(self.spec.model)}

    def check_parameters(self, parameters: Any) -> dict:
        if not isinstance(parameters, dict):
            raise ApiError(422, f"'parameters' must be an object, not {type_name(parameters)}.",
                           "invalid_type", "parameters")
        self.limits.check(parameters)
        try:
            self.pipe.check_parameters(**parameters)
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

    def submit(self, key: str, items: list, run: Callable[[list], list],
               finish: Callable[[list], Any]) -> Job:
        """Queue a job (429 when the queue is full)."""
        try:
            return self.batcher.submit(key, items, run, finish)
        except QueueFull:
            raise ApiError(429, f"The queue of model {self.name!r} is full ({self.spec.max_queue} "
                                "requests waiting). Retry shortly.", "queue_full",
                           headers={"Retry-After": "1"}) from None

    async def call(self, request: Request, key: str, items: list, run: Callable[[list], list],
                   finish: Callable[[list], Any]) -> bytes:
        """Queue a job, then wait for its answer, the request's timeout or the client leaving."""
        return await self.wait(request, self.submit(key, items, run, finish))

    async def wait(self, request: Request, job: Job, first: asyncio.Future | None = None) -> Any:
        """The job's answer; with ``first``, return None as soon as that future is done (a
        stream's first text). 504 past the timeout and ClientGone on a disconnect, both of
        which take the job out of the queue."""
        timeout = self.spec.timeout_s or None
        gone = asyncio.ensure_future(_client_gone(request))
        watched = {job.future, gone} | ({first} if first is not None else set())
        try:
            done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on this request (shutdown)
            self.batcher.cancel(job)
            raise
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
        self._media_pool: Any = None
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
        for name, text in _METRIC_HELP:
            metrics.describe(name, text)

    def lookup(self, name: Any, field: str | None = None) -> ServedModel:
        if not isinstance(name, str):
            raise ApiError(422, f"'{field}' must be a string naming a model, not {type_name(name)}.",
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

    async def read_body(self, request: Request) -> Any:
        """The request's JSON body within the server's size, time and nesting limits."""
        settings = self.settings
        return await read_json(request, settings.max_body_bytes, settings.max_json_depth,
                               settings.body_timeout_s)

    def media_pool(self) -> Any:
        """The threads that fetch URL inputs and check images, off the event loop and off the
        models' workers (made on first use)."""
        if self._media_pool is None:
            self._media_pool = DaemonWorker("lightpipe-media", threads=8)
        return self._media_pool

    def close(self) -> None:
        if self._media_pool is not None:
            self._media_pool.shutdown(wait=False)


def _public_source(model: str | None) -> str | None:
    """A Hub id as it is; a local folder by its last part only."""
    import os

    if not model:
        return None
    if os.path.isabs(model) or model.startswith((".", "~")) or os.path.exists(model):
        return os.path.basename(os.path.normpath(model))
    return model


def _stop_forwards_when_cancelled(model: Any) -> None:
    """A forward pre-hook: once the running batch is cancelled (see batcher.py), the model's
    next forward raises instead of running, so a long non-generative batch stops too."""
    from ..generation.cancel import current_cancel_event

    def refuse(module: Any, args: Any) -> None:
        event = current_cancel_event()
        if event is not None and event.is_set():
            raise JobCancelled()

    if hasattr(model, "register_forward_pre_hook") and not getattr(model, "_lightpipe_cancel_hook", False):
        model.register_forward_pre_hook(refuse)
        model._lightpipe_cancel_hook = True


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body is read by then; the next ASGI message is
    ``http.disconnect``, sent when the connection closes)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _strings(item: Any):
    """Every string inside a text input (a dict, a list, a Chat), for the length check."""
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
