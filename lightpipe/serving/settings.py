"""What a server serves: one ModelSpec per model, ServerSettings for the process, and the
small config file (JSON, or TOML on Python 3.11+) that lists several models.

    {"port": 8000,
     "defaults": {"max_batch_size": 32, "max_wait_ms": 5},
     "models": [
       {"name": "sentiment", "task": "text-classification", "model": "./my-classifier"},
       {"name": "minilm", "task": "feature-extraction",
        "model": "sentence-transformers/all-MiniLM-L6-v2", "max_batch_size": 64}]}

Imports nothing heavy: ``lightpipe serve --help`` and config errors stay fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LightpipeError, closest


class ConfigError(LightpipeError, ValueError):
    """A serving config file or option that cannot be used as it is."""


@dataclass
class ModelSpec:
    """One served model: what pipeline() builds, and the limits of its queue."""

    task: str
    model: str | None = None           # Hub id or folder; None: the task's default model
    name: str | None = None            # URL and OpenAI `model` name; default: the model's last part
    device: str | None = None
    dtype: str = "auto"
    revision: str | None = None
    kwargs: dict = field(default_factory=dict)  # pipeline() call defaults, e.g. {"truncation": true}
    max_batch_size: int = 32           # inputs per forward pass
    max_wait_ms: float = 5.0           # how long the oldest request waits for others to join it
    forward_batch_size: int | None = None  # inputs per forward within a batch; None: see below
    max_queue: int = 1024              # requests waiting; one more is answered 429
    timeout_s: float = 60.0            # from arrival to answer; past it, 504
    max_inputs: int = 2048             # inputs in one request (OpenAI embeddings allow 2,048)
    max_input_chars: int = 50_000      # characters in one text input (and one parameter string)
    # Sizes a request's parameters may ask for (see limits.py); past them, 422 with the limit.
    max_new_tokens: int = 4096         # max_new_tokens / max_tokens / max_length (also <= context)
    max_sequences: int = 16            # num_beams, num_return_sequences, n, best_of
    max_top_k: int = 1000              # top_k
    max_list_items: int = 256          # candidate_labels, targets, stop strings, any list

    def __post_init__(self) -> None:
        if not self.name:
            self.name = Path(self.model).name if self.model else self.task
        for key in ("max_batch_size", "max_queue", "max_inputs", "max_input_chars", "forward_batch_size",
                    "max_new_tokens", "max_sequences", "max_top_k", "max_list_items"):
            value = getattr(self, key)
            if value is None and key == "forward_batch_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, not {value!r} (model {self.name!r}).")
        for key in ("max_wait_ms", "timeout_s"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key} must be a number >= 0, not {value!r} (model {self.name!r}).")
        if not isinstance(self.kwargs, dict):
            raise ConfigError(f"kwargs must be an object, not {self.kwargs!r} (model {self.name!r}).")


@dataclass
class ServerSettings:
    """The process: where it listens, request-level limits, and the models."""

    models: list[ModelSpec]
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 4 * 1024 * 1024
    graceful_timeout_s: float = 30.0   # how long shutdown waits for requests in flight
    log_level: str = "info"
    access_log: bool = False
    threads: int | None = None         # torch intra-op threads; None: all cores but one (see app.serve)
    api_key: str | None = None         # when set, `Authorization: Bearer KEY` on all but /health
    allow_urls: bool = False           # fetch http(s) URL inputs (public addresses only)
    url_timeout_s: float = 10.0        # a URL fetch's time cap (a request's `timeout` only lowers it)
    url_max_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # larger images (decompression bombs) are refused
    max_json_depth: int = 64           # nesting of the request JSON
    header_timeout_s: float = 10.0     # a connection must send its request headers within this
    body_timeout_s: float = 30.0       # ... and its body within this
    max_connections: int = 1024        # uvicorn's limit_concurrency: more are answered 503
    cors_allow_origins: list = field(default_factory=list)  # origins a browser page may call from ("*": any)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("No model to serve: give TASK --model M, or a config file with models.")
        for key in ("url_max_bytes", "max_image_pixels", "max_json_depth", "max_connections"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, not {value!r}.")
        for key in ("url_timeout_s", "header_timeout_s", "body_timeout_s", "graceful_timeout_s"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1e6:
                raise ConfigError(f"{key} must be a number of seconds > 0, not {value!r}.")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ConfigError("api_key must be a non-empty string.")
        if not isinstance(self.cors_allow_origins, list) or not all(
                isinstance(origin, str) and origin for origin in self.cors_allow_origins):
            raise ConfigError("cors_allow_origins must be a list of origins such as "
                              f"\"https://example.com\" (or \"*\"), not {self.cors_allow_origins!r}.")
        if not isinstance(self.allow_urls, bool):
            raise ConfigError(f"allow_urls must be true or false, not {self.allow_urls!r}.")
        names = [spec.name for spec in self.models]
        doubles = sorted({name for name in names if names.count(name) > 1})
        if doubles:
            raise ConfigError(f"Two models are named {', '.join(map(repr, doubles))}: give each a "
                              "distinct \"name\" in the config file.")


_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelSpec)}
_SERVER_KEYS = {f.name for f in dataclasses.fields(ServerSettings)} - {"models"}


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"Unknown key {key!r} in {where}.{closest(key, allowed)} "
                              f"Known keys: {', '.join(sorted(allowed))}.")


def read_config(path: str | Path) -> dict:
    """A config file -> its data (JSON; TOML when the name ends in .toml)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"Cannot read the config file {str(path)!r}: {error.strerror or error}.") from None
    try:
        if path.suffix == ".toml":
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise ConfigError("TOML config files need Python 3.11+; write the file as JSON.") from None
    except ValueError as error:
        raise ConfigError(f"The config file {str(path)!r} does not parse: {error}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError(f"The config file {str(path)!r} must be an object with a \"models\" list.")
    return data


def build_settings(config: dict | None = None, models: list[dict] | None = None,
                   defaults: dict | None = None, **server: Any) -> ServerSettings:
    """Settings from a config file's data, plus command-line values that override it.

    ``defaults`` apply to every model that does not set the key itself; ``server`` values
    (host, port, ...) override the file's. None values count as not given. Without an
    api_key from either, ``LIGHTPIPE_API_KEY`` is used when set.
    """
    config = dict(config or {})
    file_defaults = config.pop("defaults", {}) or {}
    file_models = config.pop("models", []) or []
    _check_keys(config, _SERVER_KEYS, "the config file")
    _check_keys(file_defaults, _MODEL_KEYS - {"name", "task", "model"}, "\"defaults\"")
    merged_defaults = {**file_defaults, **{k: v for k, v in (defaults or {}).items() if v is not None}}
    specs = []
    for index, entry in enumerate(list(file_models) + list(models or [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise ConfigError(f"Model entry {index} must be an object with a \"task\" string, not {entry!r}.")
        _check_keys(entry, _MODEL_KEYS, f"model entry {index}")
        specs.append(ModelSpec(**{**merged_defaults, **entry}))
    values = {**config, **{k: v for k, v in server.items() if v is not None}}
    if values.get("api_key") is None and os.environ.get("LIGHTPIPE_API_KEY"):
        values["api_key"] = os.environ["LIGHTPIPE_API_KEY"]
    return ServerSettings(models=specs, **values)
