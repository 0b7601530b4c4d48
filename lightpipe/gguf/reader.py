"""Find and read a GGUF file (llama.cpp's format): metadata, tensor table, tensor bytes.

The header is parsed here with ``struct`` over a memory map rather than with the ``gguf``
package's ``GGUFReader``, which builds a numpy view per metadata item and takes seconds on a
vocabulary of 50k tokens; this reads it in a fraction of a second and needs no extra
package. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (versions 2, 3).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelNotFoundError, WeightsError

if TYPE_CHECKING:
    import torch

# Metadata value types: id -> struct format of a scalar (8 = string, 9 = array).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_NUMPY = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8",
          11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9

QK_K = 256  # elements of a K-quant super-block

# ggml type id -> (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34),
    10: ("Q2_K", QK_K, 84), 11: ("Q3_K", QK_K, 110), 12: ("Q4_K", QK_K, 144),
    13: ("Q5_K", QK_K, 176), 14: ("Q6_K", QK_K, 210), 30: ("BF16", 1, 2),
}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes are and how they are stored."""

    name: str
    shape: tuple[int, ...]  # torch order: rows first (ggml lists the fastest dimension first)
    ggml_type: int
    start: int  # offset in the file
    nbytes: int


class GGUFFile:
    """A parsed GGUF file: ``metadata`` ({key: value}), ``tensors`` ({name: TensorInfo}),
    ``raw(name)`` (a tensor's bytes, a view of a copy-on-write memory map)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 24:
                raise self._damaged(f"it is only {size} bytes long")
            self._map = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)
        self._parse(size)

    @property
    def architecture(self) -> str:
        return self.metadata["general.architecture"]

    def raw(self, name: str) -> "torch.Tensor":
        """The bytes of tensor ``name`` as a flat uint8 tensor (no copy)."""
        import torch

        info = self.tensors[name]
        return torch.frombuffer(self._map, dtype=torch.uint8, count=info.nbytes, offset=info.start)

    # -- parsing
    def _damaged(self, problem: str) -> WeightsError:
        return WeightsError(f"{self.path} is not a readable GGUF file: {problem}. It is damaged or "
                            "truncated (download it again), or not a GGUF file.")

    def _parse(self, size: int) -> None:
        data = self._map
        if data[:4] != b"GGUF":
            raise self._damaged("it does not start with the GGUF magic bytes")
        version, tensor_count, kv_count = struct.unpack_from("<IQQ", data, 4)
        if version not in (2, 3):
            raise WeightsError(f"{self.path} is GGUF version {version}; lightpipe reads versions 2 "
                               "and 3 (llama.cpp has written version 3 since 2023). Convert it "
                               "again with a current llama.cpp.")
        self._pos, self._size = 24, size
        try:
            self.metadata: dict[str, Any] = {}
            for _ in range(kv_count):
                key = self._string()
                self.metadata[key] = self._value(self._unpack("<I"))
            entries = [self._tensor_entry() for _ in range(tensor_count)]
        except (struct.error, UnicodeDecodeError, ValueError) as err:
            raise self._damaged(f"its header could not be parsed ({err})") from err
        if "general.architecture" not in self.metadata:
            raise self._damaged("its metadata has no general.architecture")
        alignment = self.metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0:
            raise self._damaged(f"its general.alignment is {alignment!r}")
        data_start = -(-self._pos // alignment) * alignment
        self.tensors: dict[str, TensorInfo] = {}
        for name, shape, ggml_type, offset in entries:
            if ggml_type not in GGML_TYPES:
                raise WeightsError(
                    f"{self.path}: tensor {name!r} is stored as ggml type {ggml_type}, which "
                    "lightpipe does not read. It reads "
                    f"{', '.join(t[0] for t in GGML_TYPES.values())}.")
            _, block_elements, block_bytes = GGML_TYPES[ggml_type]
            if shape and shape[-1] % block_elements:
                raise self._damaged(f"tensor {name!r} has rows of {shape[-1]} values, not whole "
                                    f"blocks of {block_elements}")
            nbytes = math.prod(shape) // block_elements * block_bytes
            start = data_start + offset
            if start + nbytes > size:
                raise self._damaged(f"tensor {name!r} ends past the end of the file")
            self.tensors[name] = TensorInfo(name, shape, ggml_type, start, nbytes)

    def _unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self._map, self._pos)
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        length = self._unpack("<Q")
        if self._pos + length > self._size:
            raise ValueError(f"a string of {length} bytes runs past the end of the file")
        text = self._map[self._pos:self._pos + length].decode("utf-8")
        self._pos += length
        return text

    def _value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self._unpack("<" + _SCALARS[kind])
        if kind == _STRING:
            return self._string()
        if kind != _ARRAY:
            raise ValueError(f"unknown metadata value type {kind}")
        item_kind, count = self._unpack("<I"), self._unpack("<Q")
        if item_kind in _NUMPY:  # numbers in one go: token types, scores
            import numpy as np

            array = np.frombuffer(self._map, dtype=_NUMPY[item_kind], count=count, offset=self._pos)
            self._pos += array.nbytes
            return array.tolist()
        if item_kind == _STRING:  # a vocabulary or merges: up to ~150k strings, a tight loop
            return self._strings(count)
        return [self._value(item_kind) for _ in range(count)]

    def _strings(self, count: int) -> list[str]:
        data, pos, unpack, strings = self._map, self._pos, struct.Struct("<Q").unpack_from, []
        for _ in range(count):
            (length,) = unpack(data, pos)
            strings.append(data[pos + 8:pos + 8 + length].decode("utf-8"))
            pos += 8 + length
        if pos > self._size:
            raise ValueError("a list of strings runs past the end of the file")
        self._pos = pos
        return strings

    def _tensor_entry(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self._string()
        dims = self._unpack("<I")
        if dims > 8:
            raise ValueError(f"tensor {name!r} claims {dims} dimensions")
        shape = struct.unpack_from(f"<{dims}Q", self._map, self._pos)
        self._pos += 8 * dims
        ggml_type, offset = self._unpack("<I"), self._unpack("<Q")
        return name, tuple(reversed(shape)), ggml_type, offset


def locate(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike, *,
           revision: str | None = None, token: str | bool | None = None,
           cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
           subfolder: str = "") -> Path:
    """The GGUF file on disk: ``gguf_file`` itself when it is a file (as transformers), else
    that file inside the folder ``name_or_path``, else downloaded from that Hub repository
    (that one file only)."""
    given = Path(os.path.expanduser(str(gguf_file)))
    if given.is_file():
        return given
    folder = Path(os.path.expanduser(str(name_or_path)))
    if folder.is_dir():
        candidate = folder / subfolder / gguf_file
        if candidate.is_file():
            return candidate
        present = sorted(p.name for p in (folder / subfolder).glob("*.gguf"))
        raise ModelNotFoundError(f"There is no {gguf_file} in {folder / subfolder}. GGUF files "
                                 f"there: {', '.join(present) or 'none'}.")
    from huggingface_hub import hf_hub_download

    from ..hub import is_offline

    try:
        return Path(hf_hub_download(str(name_or_path), str(gguf_file), subfolder=subfolder or None,
                                    revision=revision, token=token, cache_dir=cache_dir,
                                    local_files_only=local_files_only or is_offline(),
                                    library_name="lightpipe"))
    except Exception as err:  # huggingface_hub's errors: not found, gated, offline, network
        raise ModelNotFoundError(
            f"Could not get {gguf_file} of {name_or_path!r}: {err}. Check the repository id and "
            "the file name, pass token= for a gated or private repository, or pass the path of "
            "a local .gguf file as gguf_file.") from err
