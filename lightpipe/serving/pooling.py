"""Sentence embeddings from token vectors, as a checkpoint's sentence-transformers files say
(``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json``'s max_seq_length);
without them, mean pooling and L2 normalisation. Used by ``/v1/embeddings``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from ..jsonfile import read_json

_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "lasttoken")


def pooling_settings(folder: Path | None, tokenizer: Any) -> dict:
    """{"pooling": "mean"|"cls"|"max"|"lasttoken", "normalize": bool, "max_length": int|None}."""
    settings = {"pooling": "mean", "normalize": True, "max_length": None}
    folder = Path(folder) if folder else None
    modules = _read_modules(folder / "modules.json") if folder else None
    if isinstance(modules, list):  # a sentence-transformers checkpoint: it says what to do
        settings["normalize"] = False
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Normalize":
                settings["normalize"] = True
            elif kind == "Pooling":
                pooling = read_json(folder / module.get("path", "") / "config.json")
                for mode in _POOLING_MODES:
                    if pooling.get(f"pooling_mode_{mode}"):
                        settings["pooling"] = mode.split("_")[0]
                        break
        settings["max_length"] = read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if settings["max_length"] is None:
        limit = getattr(tokenizer, "model_max_length", None)
        settings["max_length"] = limit if isinstance(limit, int) and limit < 1_000_000 else None
    return settings


def _read_modules(path: Path) -> Any:
    """modules.json, the one checkpoint file that holds a list (jsonfile.read_json reads objects)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"Could not read {path.name} in {path.parent}: {err}. The file is "
                                 "damaged; download it again.") from err


def pool(hidden: Any, mode: str) -> Any:
    """(1, tokens, hidden) of one text, padding already cut off -> (hidden,) float32."""
    hidden = hidden[0].float()
    if mode == "cls":
        return hidden[0]
    if mode == "max":
        return hidden.max(dim=0).values
    if mode == "lasttoken":
        return hidden[-1]
    return hidden.mean(dim=0)
