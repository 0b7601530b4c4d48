"""One reader for the JSON files of a checkpoint folder (config, tokenizer, processor files).

A leaf module: it imports only the standard library and ``errors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError


def is_jsonable(value: Any) -> bool:
    """Whether ``value`` can be written to a JSON file as it is."""
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def save_vocab_tokenizer(folder: str | Path, vocab: dict, settings: dict, tokenizer_class: str) -> tuple[str, str]:
    """Write a character-vocabulary tokenizer's vocab.json and tokenizer_config.json (its
    JSON-able settings and its class name), as the reference saves CTC and VITS tokenizers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = {key: value for key, value in settings.items() if is_jsonable(value)}
    config["tokenizer_class"] = tokenizer_class
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return str(folder / "vocab.json"), str(folder / "tokenizer_config.json")


def read_json(path: str | Path, *, default: Any = None) -> Any:
    """The JSON object in ``path``; ``default`` (an empty dict unless given) when the file does
    not exist or holds something other than an object. A file that exists but cannot be read
    or parsed is an error that names the file and the fix."""
    path = Path(path)
    empty = {} if default is None else default
    if not path.is_file():
        return empty
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"Could not read {path.name} in {path.parent}: {err}. The file is "
                                 "damaged; download it again.") from err
    return value if isinstance(value, dict) else empty
