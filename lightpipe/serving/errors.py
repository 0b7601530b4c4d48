"""The server's errors and request reading: a leaf module (it imports nothing else of serving).

Every error is ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape) with its
status: 400 malformed JSON, 404 unknown model or route, 413 body too large, 422 wrong field
types or a bad input or argument, 429 queue full, 500 the model failed, 501 not built yet,
503 draining, 504 past the request timeout.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import LightpipeError

logger = logging.getLogger("lightpipe.serving")

_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                500: "server_error", 501: "not_implemented_error", 503: "server_error",
                504: "timeout_error"}


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
