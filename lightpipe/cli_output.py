"""What ``lightpipe run`` writes: one JSON line per input on stdout (orjson when installed:
several times faster than the standard library on large vector outputs), with images written
as PNG files and audio as WAV files under ``--output-dir`` (their paths in the JSON; data: URIs
with ``--data-uris``), or, with ``--output FILE.npy``, one float32 array of every input's vector.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from .audio_out import wav_bytes
from .errors import InputError


def _dumps() -> Any:
    try:
        import orjson
    except ImportError:
        return lambda value: json.dumps(value, ensure_ascii=False, default=_plain)
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return lambda value: orjson.dumps(value, default=_plain, option=options).decode("utf-8")


def _plain(value: Any) -> Any:
    """JSON fallback for numpy or torch scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"a result of type {type(value).__name__} cannot be written as JSON")


def _is_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save")


def _is_mask(value: Any) -> bool:
    """A binary mask (mask-generation's numpy bool (height, width) arrays), written as a PNG."""
    return type(value).__module__ == "numpy" and getattr(value, "ndim", 0) == 2 and \
        str(getattr(value, "dtype", "")) == "bool"


def _is_audio(value: Any) -> bool:
    return isinstance(value, dict) and "sampling_rate" in value and hasattr(value.get("audio"), "shape")


class ResultWriter:
    """Writes each result as it comes: media to files (or data: URIs), the rest as JSON."""

    def __init__(self, output_dir: str | None = None, data_uris: bool = False,
                 output: str | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.output_dir = Path(output_dir) if output_dir else None
        self.data_uris = data_uris
        self.output = Path(output) if output else None
        if self.output is not None and self.output.suffix not in (".npy", ".jsonl", ".json"):
            raise InputError(f"--output {output}: write .npy (vectors) or .jsonl (JSON lines).")
        self.vectors: list = []
        self.files: list[str] = []
        self.dumps = _dumps()
        self._lines = None
        if self.output is not None and self.output.suffix != ".npy":
            self._lines = open(self.output, "w", encoding="utf-8")
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    def write(self, index: int, result: Any) -> None:
        if self.output is not None and self.output.suffix == ".npy":
            self.vectors.append(self._vector(index, result))
            return
        line = self.dumps(self._media(result, f"{index:05d}"))
        if self._lines is not None:
            self._lines.write(line + "\n")
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()
        if self.output is not None and self.output.suffix == ".npy":
            import numpy as np

            width = {vector.shape for vector in self.vectors}
            if len(width) > 1:
                raise InputError("The results have different lengths; .npy needs one vector per "
                                 "input (for feature-extraction pass --pooling).")
            array = np.stack(self.vectors) if self.vectors else np.zeros((0, 0), dtype=np.float32)
            np.save(self.output, array.astype(np.float32))
        if self.files:
            print(f"lightpipe: wrote {len(self.files)} file(s) under {self.output_dir}", file=sys.stderr)

    def _vector(self, index: int, result: Any) -> Any:
        import numpy as np

        array = np.asarray(result.tolist() if hasattr(result, "tolist") else result, dtype=np.float32)
        if array.ndim != 1:
            raise InputError(f"Result {index} has shape {array.shape}, not one vector: .npy output "
                             "needs one vector per input (for feature-extraction pass --pooling).")
        return array

    def _media(self, value: Any, name: str) -> Any:
        """``value`` with images and audio replaced by file paths (or data: URIs)."""
        if _is_mask(value):
            from .processing.image_io import array_to_pil

            value = array_to_pil(value)
        if _is_image(value):
            buffer = io.BytesIO()
            value.save(buffer, format="PNG")
            return self._place(buffer.getvalue(), name, "png", "image/png")
        if _is_audio(value):
            data = wav_bytes(value["audio"], int(value["sampling_rate"]))
            return {**{k: v for k, v in value.items() if k != "audio"},
                    "audio": self._place(data, name, "wav", "audio/wav")}
        if isinstance(value, dict):
            return {key: self._media(item, f"{name}-{key}") for key, item in value.items()}
        if isinstance(value, (list, tuple)) and any(
                _is_image(v) or _is_mask(v) or isinstance(v, (dict, list)) for v in value):
            return [self._media(item, f"{name}-{i}") for i, item in enumerate(value)]
        return value

    def _place(self, data: bytes, name: str, extension: str, mime: str) -> str:
        if self.data_uris:
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        if self.output_dir is None:
            raise InputError(f"The results hold {'images' if extension == 'png' else 'audio'}: pass "
                             "--output-dir DIR to write them as files (their paths go in the JSON "
                             "lines), or --data-uris to inline them.")
        path = self.output_dir / f"{name}.{extension}"
        path.write_bytes(data)
        self.files.append(str(path))
        return str(path)


def count_lines(stream: TextIO) -> int | None:
    """The non-empty lines of a regular file given as stdin (for the progress bar's total), or
    None for a pipe or a terminal; the stream is left where it was."""
    import os
    import stat

    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        position = os.lseek(fd, 0, os.SEEK_CUR)
        with open(fd, "rb", closefd=False) as raw:
            count = sum(1 for line in raw if line.strip())
        os.lseek(fd, position, os.SEEK_SET)
        return count
    except (OSError, ValueError, AttributeError):
        return None


__all__ = ["ResultWriter", "count_lines"]
