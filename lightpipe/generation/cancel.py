"""Cancelling a generate() call from outside its thread (a server's timeout or disconnect).

    with cancel_on(event):          # the worker thread, around a pipeline call
        pipe(inputs)                # every generate() inside stops after its next token
    event.set()                     # any thread: the answer is no longer wanted

``stopping.make_stopping_criteria`` adds a ``CancelCriteria`` reading the event of the call's
context. No torch here, so a server imports it cheaply.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

_EVENT: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "lightpipe_generation_cancel", default=None)


@contextlib.contextmanager
def cancel_on(event: threading.Event) -> Iterator[threading.Event]:
    """generate() calls made inside stop (every row done) once ``event`` is set."""
    token = _EVENT.set(event)
    try:
        yield event
    finally:
        _EVENT.reset(token)


def current_cancel_event() -> threading.Event | None:
    """The event of the innermost ``cancel_on`` around this call, if any."""
    return _EVENT.get()


class CancelCriteria:
    """A stopping criterion: every row is done once ``event`` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)
