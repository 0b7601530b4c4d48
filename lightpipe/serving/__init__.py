"""``lightpipe serve``: an HTTP server for pipelines, with dynamic batching.

    settings.py    ModelSpec / ServerSettings and the config file (no heavy imports)
    batcher.py     the queue, the collector and the worker thread of one model
    metrics.py     counters and histograms in the Prometheus text format
    app.py         routes, request checks, JSON errors
    openai_api.py  /v1/embeddings, /v1/chat/completions, /v1/completions
    runner.py      the process: load models, torch threads, socket, uvicorn, graceful shutdown

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
