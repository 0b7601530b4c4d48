"""How much lightpipe says, as ``transformers.logging``: ``set_verbosity_info()`` (what was
loaded from where), ``set_verbosity_warning()`` (the default), ``set_verbosity_error()`` (quiet),
``set_verbosity_debug()``, or the ``LIGHTPIPE_VERBOSITY`` environment variable (``debug``,
``info``, ``warning``, ``error``, ``critical``) read when lightpipe is imported.

Every lightpipe module logs under the ``"lightpipe"`` logger, so the standard ``logging``
configuration works too. When the program has configured no logging at all, lightpipe adds
one stderr handler of its own to that logger, so INFO messages show once asked for.

Progress bars (on stderr: "Loading checkpoint shards" for a checkpoint of several shards) show
unless ``disable_progress_bar()`` was called, ``LIGHTPIPE_DISABLE_PROGRESS_BARS=1`` or
huggingface_hub's ``HF_HUB_DISABLE_PROGRESS_BARS=1`` is set, or the verbosity is error or
quieter; ``enable_progress_bar()`` turns them back on (as ``transformers.logging``'s).
"""

from __future__ import annotations

import logging as _logging
import os
import sys

from .errors import ConfigError

CRITICAL, ERROR, WARNING, INFO, DEBUG = (_logging.CRITICAL, _logging.ERROR, _logging.WARNING,
                                         _logging.INFO, _logging.DEBUG)
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR, "critical": CRITICAL}
ROOT = "lightpipe"
_handler: _logging.Handler | None = None
_progress_bars: bool | None = None  # None: as the environment says


def get_logger(name: str | None = None) -> _logging.Logger:
    """The ``lightpipe`` logger, or one below it (``get_logger("lightpipe.hub")``)."""
    return _logging.getLogger(name or ROOT)


def _ensure_handler() -> None:
    """A stderr handler on the lightpipe logger when nothing else would print its records
    (no handler here or on the root logger); never a second one."""
    global _handler
    root, library = _logging.getLogger(), _logging.getLogger(ROOT)
    if _handler is not None or library.handlers or root.handlers:
        return
    _handler = _logging.StreamHandler(sys.stderr)
    _handler.setFormatter(_logging.Formatter("[lightpipe] %(levelname)s: %(message)s"))
    library.addHandler(_handler)


def set_verbosity(level: int | str) -> None:
    """Set the lightpipe logger's level: a ``logging`` level or its name ("info", ...)."""
    if isinstance(level, str):
        if level.strip().lower() not in LEVELS:
            raise ConfigError(f"Unknown verbosity {level!r}: use one of {', '.join(LEVELS)}.")
        level = LEVELS[level.strip().lower()]
    if not isinstance(level, int) or isinstance(level, bool):
        raise ConfigError(f"A verbosity is a logging level or one of {', '.join(LEVELS)}, "
                          f"not {level!r}.")
    _ensure_handler()
    _logging.getLogger(ROOT).setLevel(level)


def get_verbosity() -> int:
    """The lightpipe logger's effective level."""
    return _logging.getLogger(ROOT).getEffectiveLevel()


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)


def enable_progress_bar() -> None:
    """Show progress bars (the default), whatever the environment says."""
    global _progress_bars
    _progress_bars = True


def disable_progress_bar() -> None:
    """Hide progress bars."""
    global _progress_bars
    _progress_bars = False


def is_progress_bar_enabled() -> bool:
    """Whether progress bars show: switched on or off by the functions above, else off when
    LIGHTPIPE_DISABLE_PROGRESS_BARS or HF_HUB_DISABLE_PROGRESS_BARS is set to a true value;
    never at a verbosity of error or quieter."""
    if get_verbosity() >= ERROR:
        return False
    if _progress_bars is not None:
        return _progress_bars
    return not any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
                   for name in ("LIGHTPIPE_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"))


def progress_bar(iterable, total: int | None = None, desc: str = "", unit: str = "it"):
    """``iterable`` with a tqdm bar on stderr when progress bars are enabled (tqdm comes with
    huggingface_hub), else ``iterable`` itself."""
    if not is_progress_bar_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _from_environment() -> None:
    """Apply ``LIGHTPIPE_VERBOSITY`` (an unknown value is a warning, not a crash at import)."""
    value = os.environ.get("LIGHTPIPE_VERBOSITY", "").strip().lower()
    if not value:
        return
    if value not in LEVELS:
        _logging.getLogger(ROOT).warning("LIGHTPIPE_VERBOSITY=%r is not one of %s; ignored.",
                                         value, ", ".join(LEVELS))
        return
    set_verbosity(value)


__all__ = ["CRITICAL", "DEBUG", "ERROR", "INFO", "WARNING", "disable_progress_bar",
           "enable_progress_bar", "get_logger", "get_verbosity", "is_progress_bar_enabled",
           "progress_bar", "set_verbosity", "set_verbosity_debug", "set_verbosity_error",
           "set_verbosity_info", "set_verbosity_warning"]
