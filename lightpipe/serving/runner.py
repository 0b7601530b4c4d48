"""The server process: load the models, set torch's threads, listen, run uvicorn, and shut
down gracefully (SIGINT/SIGTERM: stop accepting, answer what is queued at once, finish what is
in flight within the graceful timeout, stop what still runs, then exit 0).

uvicorn runs with a connection limit (``limit_concurrency``: 503 past it) and a protocol that
closes a connection whose request head has not arrived within ``header_timeout_s`` (uvicorn
has no such timeout: a slow-header client held its connection for ever). PIL's
MAX_IMAGE_PIXELS is the server's ``max_image_pixels``. Listening beyond loopback without an
API key is allowed, with a warning."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
import time
from typing import Any

from .app import build_app
from .metrics import Metrics
from .settings import ServerSettings
from .state import ServedModel, ServerState


def load_models(settings: ServerSettings, metrics: Metrics) -> list[ServedModel]:
    from ..hub import resolve
    from ..pipelines import pipeline

    served = []
    for spec in settings.models:
        start = time.perf_counter()
        device, device_map = spec.device, None
        if device == "auto":
            device, device_map = None, "auto"
        elif isinstance(device, str) and device.isdigit():
            device = int(device)
        pipe = pipeline(spec.task, model=spec.model, device=device, device_map=device_map,
                        dtype=spec.dtype, revision=spec.revision, **spec.kwargs)
        name_or_path = getattr(pipe.model, "name_or_path", None) or spec.model
        folder = resolve(name_or_path, revision=spec.revision) if name_or_path else None
        served.append(ServedModel(spec, pipe, folder, metrics))
        print(f"lightpipe: loaded {spec.name!r} ({pipe.task}, {name_or_path}) in "
              f"{time.perf_counter() - start:.1f} s; batches of up to {spec.max_batch_size}, "
              f"waiting up to {spec.max_wait_ms:g} ms", file=sys.stderr, flush=True)
    return served


def serve(settings: ServerSettings) -> int:
    """Load the models, then serve until SIGINT/SIGTERM; shutdown finishes requests in flight."""
    import uvicorn

    threads = _set_threads(settings.threads)
    metrics = Metrics()
    app = build_app(load_models(settings, metrics), settings, metrics)
    state: ServerState = app.state.lightpipe
    sock = _listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if state.loop is not None:  # stop waiting for batches to fill: answer what is queued
                state.loop.call_soon_threadsafe(state.drain)

    config = uvicorn.Config(app, log_level=settings.log_level, access_log=settings.access_log,
                            timeout_graceful_shutdown=settings.graceful_timeout_s, lifespan="on",
                            limit_concurrency=settings.max_connections,
                            http=_header_timeout_protocol(settings.header_timeout_s))
    _bound_images(settings.max_image_pixels)
    shown = f"[{host}]" if ":" in host else host
    if not settings.api_key and not _loopback(host):
        print(f"lightpipe: WARNING: listening on {shown} without an API key: anyone who can reach "
              "this address can use the models. Set --api-key (or LIGHTPIPE_API_KEY).",
              file=sys.stderr, flush=True)
    print(f"lightpipe: serving {', '.join(state.models)} on http://{shown}:{port} with {threads} "
          "torch thread(s) (Ctrl+C to stop)", file=sys.stderr, flush=True)
    # uvicorn re-raises a caught SIGTERM once it has shut down; a graceful stop exits 0.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if main else None
    try:
        Server(config).run(sockets=[sock])
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    print("lightpipe: server stopped", file=sys.stderr, flush=True)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _bound_images(max_pixels: int) -> None:
    """PIL refuses larger images (image_io also treats its bomb warning as an error)."""
    try:
        from PIL import Image
    except ImportError:
        return
    Image.MAX_IMAGE_PIXELS = max_pixels


def _header_timeout_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request head
    within ``header_timeout_s`` of opening or of its last answer."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _head_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if self.cycle is cycle and not self.transport.is_closing():  # waiting for the next head
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def _set_threads(threads: int | None) -> int:
    """torch's intra-op threads. By default one core is left to the event loop: when torch's
    threads take every core, each parallel region of the worker waits on a thread that the
    busy event loop has pushed off its core, and on 2 cores a batch of a tiny model took
    ~400 ms instead of ~4 ms under load. An explicit OMP_NUM_THREADS is left as it is."""
    import os

    import torch

    if threads is None and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, torch.get_num_threads() - 1)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), open before the server starts, so the printed
    address accepts connections at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"Cannot listen on {host}:{port}: {error.strerror or error}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
