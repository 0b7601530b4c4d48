"""``AutoTokenizer``: a name or folder -> the tokenizer class the folder asks for, loaded."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from .. import hub
from ..errors import refuse_remote_code
from ..jsonfile import read_json
from .classes import SPECIAL_TOKENIZERS, _resolve_class
from .tokenizer import Tokenizer


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)`` -> :class:`Tokenizer`."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None,
                        cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, trust_remote_code: bool | None = None,
                        use_fast: bool = True, subfolder: str = "", **kwargs: Any) -> Tokenizer:
        """Load a tokenizer from a local folder or a Hub id. ``kwargs`` override
        tokenizer_config.json (``model_max_length=``, ``padding_side=``, special tokens, ...).
        ``use_fast`` is accepted for compatibility: the tokenizer is always the fast one."""
        refuse_remote_code(trust_remote_code)
        for ignored in ("_from_pipeline", "_from_auto", "config", "force_download", "proxies"):
            kwargs.pop(ignored, None)
        if kwargs.get("gguf_file") is not None:  # the tokenizer a llama.cpp file describes
            from ..gguf import load_tokenizer

            return load_tokenizer(name_or_path, kwargs.pop("gguf_file"), revision=revision,
                                  token=token, cache_dir=cache_dir,
                                  local_files_only=local_files_only, subfolder=subfolder, **kwargs)
        folder = hub.resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                             local_files_only=local_files_only, subfolder=subfolder,
                             weights=False)
        tokenizer = tokenizer_class(folder).from_folder(folder, **kwargs)
        tokenizer.name_or_path = str(name_or_path)
        return tokenizer


def tokenizer_class(folder: Path) -> type:
    """The class that loads the tokenizer in ``folder``: a special one (Whisper, CTC, Marian,
    ...) when its tokenizer_config.json names one and lightpipe has it, else Tokenizer."""
    name = _resolve_class(read_json(folder / "tokenizer_config.json"),
                          read_json(folder / "config.json"))
    target = SPECIAL_TOKENIZERS.get(name)
    if target is None:
        return Tokenizer
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return Tokenizer
