"""lightpipe's own exceptions: each names the problem and the fix.

They also subclass the built-in exception a transformers user would catch (``ValueError``,
``OSError``, ``TypeError``), so code written against transformers keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LightpipeError(Exception):
    """Base class of every error lightpipe raises on purpose."""


class ModelNotFoundError(LightpipeError, OSError):
    """A model folder, file or Hub repository could not be found or fetched."""


class UnsupportedModelError(LightpipeError, ValueError):
    """The checkpoint's architecture (``model_type``) or head is not implemented."""


class UnknownTaskError(LightpipeError, KeyError):
    """The task name is not one lightpipe knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(LightpipeError, OSError):
    """The weights file is missing, truncated, corrupt or does not fit the model."""


class ConfigError(LightpipeError, ValueError):
    """config.json holds a value no model can be built from: a wrong type, a size out of range,
    sizes that do not fit together or do not fit the checkpoint."""


class InputError(LightpipeError, ValueError):
    """The input given to a pipeline, tokenizer or model is not usable."""


class InputTypeError(LightpipeError, TypeError):
    """The input given to a pipeline has the wrong type."""


class RemoteCodeError(LightpipeError, ValueError):
    """Remote code was asked for (trust_remote_code); lightpipe never runs code from a repository."""


class MissingExtraError(LightpipeError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


# module a feature imports -> (the extra that installs it, what needs it)
EXTRAS = {"PIL": ("vision", "Images"), "soundfile": ("audio", "Audio files"),
          "av": ("video", "Videos"), "starlette": ("server", "lightpipe serve"),
          "uvicorn": ("server", "lightpipe serve"), "gradio": ("demo", "lightpipe demo"),
          "sentencepiece": ("sentencepiece", "SentencePiece tokenizers"),
          "ray": ("ray", "Running on Ray")}


def missing_extra(module: str) -> MissingExtraError:
    """The one-line error for an optional module that is not installed."""
    extra, what = EXTRAS.get(module.split(".")[0], (None, None))
    if extra is None:
        return MissingExtraError(f"The optional module {module!r} is not installed: pip install {module}.")
    return MissingExtraError(f"{what} need the {module} package, which is not installed: "
                             f"pip install 'lightpipe[{extra}]' (or 'lightpipe[all]').")


def require(module: str) -> None:
    """Raise the one-line ``missing_extra`` error when ``module`` cannot be imported."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        raise missing_extra(module)


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean X?' hint, or an empty string when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def refuse_remote_code(trust_remote_code: bool | None) -> None:
    if trust_remote_code:
        raise RemoteCodeError(
            "trust_remote_code=True is not supported: lightpipe runs only its own model code and "
            "never executes Python files from a checkpoint. Use a checkpoint whose architecture "
            "lightpipe implements (see `lightpipe tasks`), or drop the argument."
        )
