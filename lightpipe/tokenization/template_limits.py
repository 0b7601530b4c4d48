"""Bounds on rendering a chat template: a checkpoint's template is untrusted code, and a
request's messages reach it. Jinja's sandbox stops templates from reaching Python internals,
not from running long or allocating much; these limits do:

- time: a render runs at most ``MAX_RENDER_SECONDS``: past it, a watchdog thread raises an
  exception in the rendering thread (see ``_Watchdog``);
- size: the output, every string or list an operator, call or filter builds, and every value
  stored in a namespace stay under ``MAX_CHARS``; numbers under ``MAX_INT_BITS`` bits; padding
  widths (``center``, ``indent``, ``ljust``, format specs) under ``MAX_WIDTH``.

Past a limit, rendering stops with ``TemplateLimitError`` (an ``InputError``).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from typing import Any

from ..errors import InputError

MAX_RENDER_SECONDS = 5.0
MAX_CHARS = 10_000_000
MAX_INT_BITS = 4096
MAX_WIDTH = 100_000

_SEQUENCES = (str, bytes, list, tuple)
_PADDING_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}
_FORMAT_METHODS = {"format", "format_map"}
_LONG_NUMBER = re.compile(r"\d{6,}")  # a width or precision of 100,000 or more in a format spec


class TemplateLimitError(InputError):
    """A chat template went past a rendering limit (time, output size, value size)."""


def _refuse(what: str) -> TemplateLimitError:
    return TemplateLimitError(f"The chat template was stopped: {what}. Chat templates are "
                              "rendered with limits on time and size; check the template and "
                              "the messages.")


def check_size(value: Any, what: str = "a value") -> Any:
    """``value``, or the limit error when it is a string, list or number past the limits."""
    if isinstance(value, _SEQUENCES) and len(value) > MAX_CHARS:
        raise _refuse(f"{what} has {len(value):,} items, more than {MAX_CHARS:,}")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _refuse(f"{what} is a number of more than {MAX_INT_BITS} bits")
    return value


def _check_width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
        raise _refuse(f"{what} asks for a width of {value:,} (at most {MAX_WIDTH:,})")


def _check_format(template: Any, args: tuple, kwargs: dict) -> None:
    """A %-format or str.format string: no huge width or precision, written or taken from an
    argument (``%*s``, ``{:{}}``)."""
    if not isinstance(template, str):
        return
    if _LONG_NUMBER.search(template):
        raise _refuse("a format string asks for a width or precision of 100,000 or more")
    if "*" in template or re.search(r"\{[^{}]*\{", template):
        values = list(args) + list(kwargs.values())
        values += [v for a in args if isinstance(a, (tuple, list)) for v in a]
        values += [v for a in args if isinstance(a, dict) for v in a.values()]
        for value in values:
            _check_width(value, "a format string")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(times, int) and len(seq) * times > MAX_CHARS:
                raise _refuse(f"a repetition would build {len(seq) * times:,} items")
        if isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _refuse(f"a product would be a number of more than {MAX_INT_BITS} bits")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and \
                max(left.bit_length(), 1) * right > MAX_INT_BITS:
            raise _refuse(f"a power would be a number of more than {MAX_INT_BITS} bits")
    elif operator == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES) and \
                len(left) + len(right) > MAX_CHARS:
            raise _refuse(f"a concatenation would build {len(left) + len(right):,} items")
    elif operator == "%":
        _check_format(left, right if isinstance(right, tuple) else (right,), {})


def _check_call(function: Any, args: tuple, kwargs: dict) -> None:
    """A call from the template: arguments within the size limits (a macro recursing on a
    doubling string), and no padding or format method asked for a huge width."""
    for value in list(args) + list(kwargs.values()):
        check_size(value, "an argument")
    function = getattr(function, "__wrapped__", function)  # the sandbox wraps str.format
    owner = getattr(function, "__self__", None)
    name = getattr(function, "__name__", "")
    if isinstance(owner, (str, bytes)):
        if name in _PADDING_METHODS:
            for value in list(args) + list(kwargs.values()):
                _check_width(value, f"str.{name}")
        elif name in _FORMAT_METHODS:
            _check_format(owner, args, kwargs)
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])
        elif name == "join" and args and hasattr(args[0], "__len__"):
            if len(owner) * len(args[0]) > MAX_CHARS:
                raise _refuse("a join would build more than the size limit")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        grown = text.count(old) * max(len(new) - len(old), 0)
        if len(text) + grown > MAX_CHARS:
            raise _refuse(f"a replace would build {len(text) + grown:,} characters")


def _bounded_filters(filters: dict) -> dict:
    """The filters that can allocate much from a small input, wrapped with checks."""
    def wrap(name: str, check):
        original = filters[name]

        @functools.wraps(original)  # keeps jinja's pass_context / pass_eval_context marks
        def bounded(*args: Any, **kwargs: Any) -> Any:
            check(*args, **kwargs)
            return check_size(original(*args, **kwargs), f"the {name} filter's result")
        return bounded

    def widths(*args: Any, **kwargs: Any) -> None:
        for value in list(args[1:]) + list(kwargs.values()):
            _check_width(value, "a filter")

    def format_filter(value: Any, *args: Any, **kwargs: Any) -> None:
        _check_format(value, args, kwargs)

    def replace_filter(eval_ctx: Any, text: Any, old: Any, new: Any, count: Any = None) -> None:
        _check_replace(str(text), str(old), str(new))

    def join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> None:
        if hasattr(value, "__len__") and len(str(d)) * len(value) > MAX_CHARS:
            raise _refuse("a join would build more than the size limit")

    checks = {"center": widths, "indent": widths, "format": format_filter,
              "replace": replace_filter, "join": join_filter}
    return {name: wrap(name, check) for name, check in checks.items() if name in filters}


@functools.lru_cache(maxsize=None)
def bounded_sandbox() -> type:
    """Jinja's ``ImmutableSandboxedEnvironment`` with the size checks above on operators,
    calls and filters (jinja2 is imported here, on first use)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.filters.update(_bounded_filters(self.filters))
            lipsum = self.globals.get("lipsum")
            if lipsum is not None:
                self.globals["lipsum"] = lambda n=5, *a, **k: lipsum(min(int(n), 100), *a, **k)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right)
            return check_size(super().call_binop(context, operator, left, right), "a result")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _check_call(__obj, args, kwargs)
            return check_size(super().call(__context, __obj, *args, **kwargs), "a call's result")

    return BoundedSandbox


def render_bounded(template: Any, variables: dict) -> str:
    """``template.render(**variables)`` within the time and output-size limits."""
    token = _WATCHDOG.watch(time.monotonic() + MAX_RENDER_SECONDS)
    try:
        try:
            pieces, size = [], 0
            for piece in template.generate(**variables):
                size += len(piece)
                if size > MAX_CHARS:
                    raise _refuse(f"its output is longer than {MAX_CHARS:,} characters")
                pieces.append(piece)
        except RecursionError:
            raise _refuse("it recursed too deeply") from None
        finally:
            while True:  # an overtime signal may land anywhere until release() returns
                try:
                    _WATCHDOG.release(token)
                    break
                except _Overtime:
                    continue
    except _Overtime:
        raise _refuse(f"rendering took more than {MAX_RENDER_SECONDS:g} s") from None
    return "".join(pieces)


class _Overtime(BaseException):
    """Raised inside a render that went past its time (a BaseException, so that no
    ``except Exception`` in a filter swallows it)."""


class _Watchdog:
    """One daemon thread that raises ``_Overtime`` in a rendering thread past its deadline
    (``PyThreadState_SetAsyncExc``: it lands between two bytecodes of the template's loop;
    long single operations are what the size limits bound). Nothing runs per template line,
    so renders within their time cost nothing extra; the signal repeats every 0.1 s until the
    render ends, in case a template catches it.

    An asynchronous exception can land in any Python code, lock handling included, so the
    rendering thread runs as little Python as it can while watched (no lock, no import): it adds
    and removes its entry with single dict operations, and on release waits out a signal being
    sent to it (``sending``), then clears any still pending. The watchdog polls (every 0.05 s
    while renders run, 0.25 s otherwise)."""

    def __init__(self) -> None:
        self.renders: dict[object, list] = {}  # token -> [thread id, next signal time]
        self.sending: int | None = None  # the thread a signal is being sent to now
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()
        self.set_async_exc: Any = None
        self.thread_id: Any = None

    def watch(self, deadline: float) -> object:
        if self.thread is None:
            import ctypes

            self.set_async_exc, self.thread_id = ctypes.pythonapi.PyThreadState_SetAsyncExc, ctypes.c_ulong
            with self.start_lock:
                if self.thread is None:
                    thread = threading.Thread(target=self._run, name="lightpipe-template-watchdog",
                                              daemon=True)
                    thread.start()
                    self.thread = thread
        token = object()
        self.renders[token] = [threading.get_ident(), deadline]
        return token

    def release(self, token: object) -> None:
        ident = threading.get_ident()
        self.renders.pop(token, None)
        while self.sending == ident:
            time.sleep(0)
        self.set_async_exc(self.thread_id(ident), None)  # clear a pending signal

    def _run(self) -> None:
        import ctypes

        while True:
            now = time.monotonic()
            for token, entry in list(self.renders.items()):
                if now >= entry[1]:
                    self.sending = entry[0]
                    if token in self.renders:
                        self.set_async_exc(self.thread_id(entry[0]), ctypes.py_object(_Overtime))
                        entry[1] = now + 0.1
                    self.sending = None
            time.sleep(0.05 if self.renders else 0.25)


_WATCHDOG = _Watchdog()
