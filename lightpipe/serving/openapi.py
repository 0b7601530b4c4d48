"""``GET /openapi.json`` (an OpenAPI 3.1 description of the routes, with the served models'
names and tasks) and ``GET /docs`` (Swagger UI over it, as TEI and FastAPI servers offer)."""

from __future__ import annotations

from typing import Any

from .. import __version__

_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"},
    "param": {"type": ["string", "null"]}}}}}
_TEXTS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_MESSAGES = {"type": "array", "items": {"type": "object", "required": ["role", "content"], "properties": {
    "role": {"type": "string"}, "content": {"type": "string"}}}}
_SAMPLING = {"max_tokens": {"type": "integer"}, "temperature": {"type": "number"},
             "top_p": {"type": "number"}, "n": {"type": "integer"}, "stop": _TEXTS,
             "seed": {"type": "integer"}, "stream": {"type": "boolean"},
             "frequency_penalty": {"type": "number"}, "presence_penalty": {"type": "number"}}


def _post(summary: str, description: str, schema: dict, tag: str, name: bool = False) -> dict:
    operation = {"summary": summary, "description": description, "tags": [tag],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
                 "responses": {"200": {"description": "The result."},
                               "4XX": {"description": "A clear error.", "content": {
                                   "application/json": {"schema": _ERROR}}},
                               "5XX": {"description": "A server error.", "content": {
                                   "application/json": {"schema": _ERROR}}}}}
    if name:
        operation["parameters"] = [{"name": "name", "in": "path", "required": True,
                                    "schema": {"type": "string"}, "description": "a served model's name"}]
    return {"post": operation}


def _get(summary: str, tag: str, name: bool = False) -> dict:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag],
                                 "responses": {"200": {"description": "OK"}}}
    if name:
        operation["parameters"] = [{"name": "name", "in": "path", "required": True,
                                    "schema": {"type": "string"}}]
    return {"get": operation}


def schema(state: Any) -> dict:
    """The OpenAPI document of this server: its routes and the models it serves."""
    models = ", ".join(f"`{m.name}` ({m.task})" for m in state.models.values())
    pipeline_body = {"type": "object", "required": ["inputs"], "properties": {
        "inputs": {"description": "one input or a list: texts; images, audio and video as base64 "
                                  "or data: URIs (http(s) URLs with --allow-urls)"},
        "parameters": {"type": "object", "description": "the task pipeline's call arguments "
                                                        "(top_k, candidate_labels, max_new_tokens, ...)"},
        "response_format": {"enum": ["json", "wav"], "description": "text-to-audio: \"wav\" answers "
                            "one input's audio as audio/wav bytes (as does 'Accept: audio/wav')"}}}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "lightpipe", "version": __version__,
                 "description": f"Hugging Face pipelines and OpenAI-compatible endpoints. Models: {models}."},
        "paths": {
            "/health": _get("Liveness and the served models", "server"),
            "/metrics": _get("Prometheus metrics", "server"),
            "/v1/models": _get("The served models (OpenAI's list)", "models"),
            "/v1/models/{name}": _get("One served model", "models", name=True),
            "/v1/pipelines/{name}": _post(
                "Run a model's pipeline", "The task's pipeline, as transformers' pipeline() answers it.",
                pipeline_body, "pipelines", name=True),
            "/v1/embeddings": _post(
                "Embeddings (OpenAI)", "Sentence embeddings pooled as the checkpoint says.",
                {"type": "object", "required": ["model", "input"], "properties": {
                    "model": {"type": "string"}, "input": _TEXTS,
                    "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer"}}},
                "openai"),
            "/v1/completions": _post(
                "Completions (OpenAI)", "Text continued by a text-generation model.",
                {"type": "object", "required": ["model", "prompt"], "properties": {
                    "model": {"type": "string"}, "prompt": _TEXTS, "echo": {"type": "boolean"}, **_SAMPLING}},
                "openai"),
            "/v1/chat/completions": _post(
                "Chat completions (OpenAI)", "A reply from a chat model (its chat template).",
                {"type": "object", "required": ["model", "messages"], "properties": {
                    "model": {"type": "string"}, "messages": _MESSAGES,
                    "max_completion_tokens": {"type": "integer"}, **_SAMPLING}},
                "openai"),
            "/v1/audio/speech": _post(
                "Speech (OpenAI)", "One text spoken by a text-to-audio model, answered as audio/wav "
                "bytes. voice: a speaker number, or an OpenAI voice name (the default speaker); "
                "speed: VITS models.",
                {"type": "object", "required": ["model", "input"], "properties": {
                    "model": {"type": "string"}, "input": {"type": "string"},
                    "voice": {"type": ["string", "integer"]}, "response_format": {"enum": ["wav"]},
                    "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0}}},
                "openai"),
        },
    }
    if state.settings.api_key:
        document["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        document["security"] = [{"bearer": []}]
    return document


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lightpipe API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"><p>The API description is at <a href="/openapi.json">/openapi.json</a>
(this page loads Swagger UI from cdn.jsdelivr.net).</p></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>if (window.SwaggerUIBundle) { SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"}); }</script>
</body></html>
"""
