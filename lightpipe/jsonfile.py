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
