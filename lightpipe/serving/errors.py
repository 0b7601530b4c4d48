"""The server's errors and request reading: a leaf module (it imports nothing else of serving).

Every error is ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape) with its
status: 400 malformed or too deeply nested JSON, or a code-like parameter; 401 a missing or
wrong API key; 404 unknown model or route; 406 an audio type other than WAV asked for; 408 a
body too slow to arrive; 413 body too large; 415 a compressed body; 422 wrong field types or a
bad input or argument; 429 queue full; 500 the model failed; 501 not built yet; 503 draining;
504 past the request timeout. Messages say what was wrong, never where things live: heap
addresses and server paths are taken out of them (``public_message``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import LightpipeError

logger = logging.getLogger("lightpipe.serving")

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                405: "invalid_request_error", 406: "invalid_request_error", 408: "timeout_error",
                413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error",
                500: "server_error", 501: "not_implemented_error", 503: "server_error",
                504: "timeout_error"}
# `<_io.BytesIO object at 0x7f...>` -> `<_io.BytesIO>`; absolute paths of two or more parts
# (not a URL's path, not a Hub id) -> `<path>`.
_ADDRESS = re.compile(r"<([^<>]*?)(?: object)? at 0x[0-9a-fA-F]+>")
_BARE_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{8,}\b")
_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/<>()\[\]{},;:]+){2,}/?|\b[A-Za-z]:\\[^\s'\"<>]+")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def public_message(message: str) -> str:
    """``message`` without heap addresses or server file paths."""
    message = _ADDRESS.sub(lambda m: f"<{m[1]}>", message)
    return _PATH.sub("<path>", _BARE_ADDRESS.sub("0x…", message))


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": public_message(self.message),
                          "type": _ERROR_TYPES.get(self.status, "error"),
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
    return ApiError(500, f"The model failed on this request ({type(error).__name__}); the details "
                         "are in the server's log. The server keeps running.", "internal_error")


async def read_json(request: Request, limit: int, max_depth: int = 64, timeout: float | None = None) -> Any:
    """The body as JSON, read up to ``limit`` bytes within ``timeout`` seconds (413 past the
    size, 408 past the time, 415 when compressed, 400 if it does not parse or nests deeper than
    ``max_depth``)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, f"Content-Encoding {encoding!r} is not accepted: send the JSON body "
                            "uncompressed.", "unsupported_encoding")
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"The request body is larger than this server's limit of {limit} bytes.",
                         "body_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        data = await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {timeout:g} s.",
                       "body_timeout") from None
    return parse_json(data, max_depth)


def parse_json(data: bytes, max_depth: int = 64) -> Any:
    """Standard JSON only (no NaN or Infinity), nested at most ``max_depth`` levels (400)."""
    too_deep = ApiError(400, f"The request JSON is nested more than {max_depth} levels deep.", "too_deep")
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The request body is not valid JSON: {error}.", "malformed_json") from None
    if data.count(b"[") + data.count(b"{") > max_depth and _nesting(data) > max_depth:
        raise too_deep
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON (send null, or a finite number)")


def _nesting(data: bytes) -> int:
    """How deep the arrays and objects of a valid JSON text nest (strings taken out first)."""
    import numpy as np

    brackets = np.frombuffer(_STRING.sub(b"", data).translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if not len(brackets):
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def require_object(body: Any, allowed: set[str], required: set[str]) -> dict:
    """``body`` as a JSON object with only ``allowed`` fields and every ``required`` one (422)."""
    if not isinstance(body, dict):
        raise ApiError(422, f"The request body must be a JSON object, not {type_name(body)}.", "invalid_type")
    for key in body:
        if key not in allowed:
            raise ApiError(422, f"Unknown field {key!r}; this endpoint reads {', '.join(sorted(allowed))}.",
                           "unknown_field", key)
    for key in sorted(required):
        if key not in body:
            raise ApiError(422, f"The field {key!r} is required.", "missing_field", key)
    return body


def type_name(value: Any) -> str:
    """A JSON value's kind as a message says it: "an object", "a string", "null", ..."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
