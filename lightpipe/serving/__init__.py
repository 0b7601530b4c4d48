"""``lightpipe serve``: an HTTP server for pipelines, with dynamic batching.

    settings.py    ModelSpec / ServerSettings and the config file (no heavy imports)
    batcher.py     the queue, the collector and the worker thread of one model
    metrics.py     counters, histograms and gauges through prometheus_client
    errors.py      ApiError and the JSON error shape, request body reading (a leaf module)
    limits.py      what a request's parameters may hold: no code, known names, bounded sizes
    fetch.py       fetching a URL input without SSRF (public addresses only, checked redirects)
    media.py       image/video/audio inputs from JSON; URLs fetched or refused before batching
    state.py       ServedModel (pipeline, batcher, request checks) and ServerState
    routes.py      /health, /metrics, /v1/models, /v1/pipelines/NAME; the route wrapper
    openai_api.py  /v1/embeddings, /v1/chat/completions, /v1/completions
    openapi.py     /openapi.json and the /docs page
    app.py         build_app: the routes on one Starlette app; the API key check
    runner.py      the process: load models, torch threads, socket, uvicorn (connection limit,
                   header timeout), graceful and bounded shutdown

From Python: ``serve(build_settings(models=[{"task": "feature-extraction", "model": M}]))``.
Starlette and uvicorn (the ``server`` extra) are imported only when a server is built.
"""

from __future__ import annotations

from .settings import ConfigError, ModelSpec, ServerSettings, build_settings, read_config

__all__ = ["ConfigError", "ModelSpec", "ServerSettings", "build_settings", "read_config", "serve"]


def serve(settings: ServerSettings) -> int:
    """Load the models and serve until SIGINT/SIGTERM (see ``runner.serve``)."""
    try:
        from .runner import serve as run
    except ImportError as error:
        raise ImportError(f"lightpipe serve needs the server extra ({error.name} is missing): "
                          "pip install 'lightpipe[server]'") from None
    return run(settings)
