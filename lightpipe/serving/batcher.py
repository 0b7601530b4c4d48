"""Dynamic batching: requests that arrive close together share one pipeline call.

One Batcher per served model, with one worker thread that alone touches the model. The event
loop only queues jobs and collects them into batches:

    request -> Job (its inputs, a batching key) -> queue
    collector: take the oldest job; wait until max_batch_size inputs with the same key are
               queued or the oldest has waited max_wait_ms (or the server drains); take them
    worker thread: run(all inputs) -> one pipeline call -> split the results back per job
               -> each job's finish(results) -> JSON bytes (encoding stays off the event loop)
    event loop: resolve each job's future

Jobs share a batch only when their keys match (same endpoint, same call arguments). A job that
is cancelled while queued (its client went away, or it timed out) leaves the queue at once;
when every job of the running batch is cancelled, the batch's cancel event is set: generate()
stops after its next token and any other model forward refuses to start (``generation.cancel``
and the model's forward hook in state.py), so the worker is free again within a step.
When a batch fails, each of its jobs is run alone, so one bad input fails only its own request;
the worker never dies of a request's error. The worker is a daemon thread: shutdown waits for
it a bounded time, then the process exits even with a call still running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics

logger = logging.getLogger("lightpipe.serving")


class QueueFull(Exception):
    """The model's queue holds max_queue requests already."""


class JobCancelled(Exception):
    """The batch was stopped: nobody waits for its answers any more."""


class DaemonWorker(concurrent.futures.Executor):
    """Daemon threads running submitted calls (one thread: in order), an executor for
    run_in_executor: unlike ThreadPoolExecutor's, its threads never keep the process from
    exiting, so shutdown stays bounded whatever a call is doing."""

    def __init__(self, name: str, threads: int = 1):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._loop, name=f"{name}-{index}", daemon=True)
                        for index in range(threads)]
        for thread in self.threads:
            thread.start()
        self.thread = self.threads[0]

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self.threads:
            self._calls.put(None)
        if wait:
            for thread in self.threads:
                thread.join()

    def _loop(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            future, fn, args, kwargs = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # handed to the awaiting side
                future.set_exception(error)


@dataclass(eq=False)
class Job:
    key: str                          # jobs with equal keys may share one call of `run`
    inputs: list                      # this request's items
    run: Callable[[list], list]       # items -> one result per item (worker thread)
    finish: Callable[[list], Any]     # this job's results -> a JSON-able payload (worker thread)
    future: asyncio.Future
    enqueued: float = 0.0
    state: str = "queued"             # queued -> running -> done, or queued -> cancelled
    abandoned: bool = False           # cancelled while running: its answer is not wanted


def encode_json(payload: Any) -> bytes:
    from ..audio_out import audio_as_data_uris  # text-to-audio: WAV data: URIs, not sample lists

    if isinstance(payload, bytes):  # a raw answer (serving/wav.py: audio/wav), sent as it is
        return payload
    payload = audio_as_data_uris(payload)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    """numpy arrays and scalars, tensors: to lists and numbers; images (image-to-image, depth
    maps, segmentation masks, mask-generation's bool arrays): to PNG data: URIs."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", 0) == 2 and str(value.dtype) == "bool":
        from ..processing.image_io import array_to_pil

        value = array_to_pil(value)
    if hasattr(value, "mode") and hasattr(value, "save"):  # a PIL image
        import base64
        import io

        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Batcher:
    """The queue and worker of one served model (see the module docstring)."""

    def __init__(self, name: str, max_batch_size: int, max_wait_ms: float, max_queue: int,
                 metrics: Metrics):
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self.queued = 0                # live (not cancelled) jobs waiting
        self.running = 0               # inputs in the batch the worker runs now
        self._pending: list[Job] = []  # arrival order; may still hold cancelled jobs
        self._arrived: asyncio.Event | None = None
        self._executor: DaemonWorker | None = None
        self._task: asyncio.Task | None = None
        self._draining = False
        self._batch: list[Job] = []    # the jobs the worker runs now, and their cancel event
        self._stop: threading.Event | None = None

    # --- event loop side ---
    def start(self) -> None:
        self._executor = DaemonWorker(f"lightpipe-{self.name}")
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=f"batcher-{self.name}")

    def submit(self, key: str, inputs: list, run: Callable[[list], list],
               finish: Callable[[list], Any]) -> Job:
        if self.queued >= self.max_queue:
            raise QueueFull(self.name)
        loop = asyncio.get_running_loop()
        job = Job(key, inputs, run, finish, loop.create_future(), loop.time())
        self._pending.append(job)
        self.queued += 1
        self._arrived.set()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a job that is still queued; a running one's answer is dropped, and once no job
        of the running batch waits for it, the batch is stopped."""
        if job.state == "queued":
            job.state = "cancelled"
            self.queued -= 1
            self._arrived.set()
        elif job.state == "running":
            job.abandoned = True
            if self._stop is not None and all(j.abandoned for j in self._batch):
                self._stop.set()
        if not job.future.done():
            job.future.cancel()

    def drain(self) -> None:
        """Shutdown began: stop waiting for batches to fill; run what is queued now."""
        self._draining = True
        if self._arrived is not None:
            self._arrived.set()

    async def close(self, wait_s: float = 5.0) -> None:
        """Stop: fail what is queued, stop the running batch, and wait for the worker at most
        ``wait_s`` seconds (its thread is a daemon: the process may exit without it)."""
        self.drain()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._stop is not None:
            self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            deadline = time.monotonic() + wait_s
            while self._executor.thread.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self._executor.thread.is_alive():
                logger.warning("Model %r is still running a batch; exiting without it.", self.name)

    def _first_live(self) -> Job | None:
        while self._pending and self._pending[0].state != "queued":
            self._pending.pop(0)
        return self._pending[0] if self._pending else None

    def _queued_inputs(self, key: str) -> int:
        return sum(len(job.inputs) for job in self._pending if job.state == "queued" and job.key == key)

    def _take(self, key: str) -> list[Job]:
        """The oldest queued jobs with this key, up to max_batch_size inputs (at least one job)."""
        taken, kept, size = [], [], 0
        for job in self._pending:
            if job.state != "queued":
                continue
            if job.key == key and (not taken or size + len(job.inputs) <= self.max_batch_size):
                job.state = "running"
                taken.append(job)
                size += len(job.inputs)
            else:
                kept.append(job)
        self._pending = kept
        self.queued -= len(taken)
        return taken

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            head = self._first_live()
            if head is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = head.enqueued + self.max_wait
            while (not self._draining and head.state == "queued"
                   and self._queued_inputs(head.key) < self.max_batch_size):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            if head.state != "queued":  # cancelled while it waited: start again from the new oldest
                continue
            jobs = self._take(head.key)
            if not jobs:
                continue
            now = loop.time()
            for job in jobs:
                self.metrics.observe("lightpipe_queue_seconds", now - job.enqueued, LATENCY_BUCKETS,
                                     model=self.name)
            self.running = sum(len(job.inputs) for job in jobs)
            self._batch, self._stop = jobs, threading.Event()
            try:
                outcomes, seconds = await loop.run_in_executor(self._executor, self._run, jobs, self._stop)
            except Exception as error:  # the executor itself failed: fail these jobs, keep going
                outcomes, seconds = [error] * len(jobs), 0.0
            finally:
                self._batch, self._stop = [], None
            self.running = 0
            self.metrics.inc("lightpipe_batches_total", model=self.name)
            self.metrics.observe("lightpipe_batch_size", sum(len(j.inputs) for j in jobs),
                                 BATCH_BUCKETS, model=self.name)
            self.metrics.observe("lightpipe_batch_seconds", seconds, LATENCY_BUCKETS, model=self.name)
            for job, outcome in zip(jobs, outcomes):
                job.state = "done"
                if job.future.done():  # cancelled while running: nobody waits for it
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    # --- worker thread side ---
    def _run(self, jobs: list[Job], stop: threading.Event) -> tuple[list, float]:
        """jobs -> (one outcome per job: JSON bytes or the exception, seconds of the call)."""
        from ..generation.cancel import cancel_on

        start = time.perf_counter()
        items = [item for job in jobs for item in job.inputs]
        with cancel_on(stop):
            try:
                results = jobs[0].run(items)
            except Exception as error:
                if stop.is_set():
                    return [JobCancelled()] * len(jobs), time.perf_counter() - start
                if len(jobs) == 1:
                    return [error], time.perf_counter() - start
                # Someone's input broke the batch: run each job alone so only that one fails.
                return [self._run_alone(job) for job in jobs], time.perf_counter() - start
        seconds = time.perf_counter() - start
        outcomes, offset = [], 0
        for job in jobs:
            outcomes.append(self._finish(job, results[offset:offset + len(job.inputs)]))
            offset += len(job.inputs)
        return outcomes, seconds

    def _run_alone(self, job: Job) -> bytes | BaseException:
        try:
            results = job.run(job.inputs)
        except Exception as error:
            return error
        return self._finish(job, results)

    @staticmethod
    def _finish(job: Job, results: list) -> bytes | BaseException:
        try:
            return encode_json(job.finish(results))
        except Exception as error:
            return error
