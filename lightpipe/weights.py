"""Read checkpoint weights: safetensors (single or sharded) memory-mapped without a copy,
``pytorch_model.bin`` only through ``torch.load(weights_only=True)``; put them into a model.

The safetensors reader parses the file's header itself and makes each tensor a view of a
private (copy-on-write) memory map: nothing is read until a tensor is used, nothing is copied
unless a dtype or device change asks for it, and a truncated or corrupt file is caught before
any tensor is made.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import WeightsError

if TYPE_CHECKING:
    import torch

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

_SAFE_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder, in load order; an error when there are none."""
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise WeightsError(f"{index} is not a valid shard index: {err}") from err
            files = [folder / name for name in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise WeightsError(
                    f"{index} lists shards that are not in {folder}: {', '.join(missing)}. "
                    "The download is incomplete: fetch the model again.")
            return files
    for name in (SAFE_SINGLE, BIN_SINGLE):
        if (folder / name).is_file():
            return [folder / name]
    others = sorted(p.name for p in folder.glob("*.safetensors"))
    if len(others) == 1:
        return [folder / others[0]]
    raise WeightsError(
        f"No weights in {folder}: looked for {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} and "
        f"{BIN_INDEX}. Pass a folder saved with save_pretrained() or downloaded from the Hub.")


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """Parse and check a safetensors header; return (entries, offset of the data)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path} is empty or truncated (size {size} bytes): download it again.")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100_000_000):
            raise WeightsError(
                f"{path} is not a valid safetensors file (its header claims {header_len} bytes in "
                f"a {size}-byte file): it is corrupt or truncated; download it again.")
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise WeightsError(f"{path} has a corrupt safetensors header ({err}): download it again.") from err
    if not isinstance(header, dict):
        raise WeightsError(f"{path} has a corrupt safetensors header: download it again.")
    data_start = 8 + header_len
    header.pop("__metadata__", None)
    for name, entry in header.items():
        try:
            begin, end = entry["data_offsets"]
            dtype = _SAFE_DTYPES[entry["dtype"]]
            shape = [int(d) for d in entry["shape"]]
        except (KeyError, TypeError, ValueError) as err:
            raise WeightsError(f"{path}: tensor {name!r} has a bad header entry ({err}).") from err
        if data_start + end > size or begin > end:
            raise WeightsError(
                f"{path} is truncated: tensor {name!r} ends at byte {data_start + end} but the file "
                f"has {size} bytes. Download it again.")
        entry["torch_dtype"], entry["shape"] = dtype, shape
    return header, data_start


def read_safetensors(path: Path) -> dict[str, "torch.Tensor"]:
    """All tensors of one safetensors file, as views of a copy-on-write memory map."""
    import torch

    header, data_start = read_safetensors_header(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        mapped = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
    tensors = {}
    for name, entry in header.items():
        dtype = getattr(torch, entry["torch_dtype"])
        begin, end = entry["data_offsets"]
        count = 1
        for dim in entry["shape"]:
            count *= dim
        itemsize = torch.empty((), dtype=dtype).element_size()
        if count * itemsize != end - begin:
            raise WeightsError(f"{path}: tensor {name!r} has {end - begin} bytes for shape "
                               f"{entry['shape']}; the file is corrupt.")
        if count == 0:
            tensors[name] = torch.empty(entry["shape"], dtype=dtype)
        elif (data_start + begin) % itemsize == 0:
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=data_start + begin)
            tensors[name] = flat.view(entry["shape"])
        else:  # unaligned data cannot be viewed in place
            raw = bytearray(mapped[data_start + begin:data_start + end])
            tensors[name] = torch.frombuffer(raw, dtype=dtype).view(entry["shape"])
    return tensors


def read_torch_bin(path: Path) -> dict[str, "torch.Tensor"]:
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path} holds objects other than tensors, and lightpipe only loads pickled weights "
            "with weights_only=True. Convert the checkpoint to safetensors.") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise WeightsError(f"{path} could not be read ({err}): it is corrupt or truncated.") from err
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict.")
    return state.get("state_dict", state) if "state_dict" in state else state


def read_weights(folder: Path) -> dict[str, "torch.Tensor"]:
    """Every tensor of a model folder (all shards), keyed by checkpoint name."""
    state: dict = {}
    for path in weight_files(folder):
        state.update(read_safetensors(path) if path.suffix == ".safetensors" else read_torch_bin(path))
    return state


def checkpoint_dtype(state: dict[str, "torch.Tensor"]) -> "torch.dtype | None":
    """The dtype of the first floating tensor, as transformers' dtype="auto" reads it."""
    for tensor in state.values():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def rename_keys(state: dict, rules: Iterable[tuple[str, str]]) -> dict:
    """Apply (regex, replacement) rules to checkpoint names, in order."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    if not compiled:
        return state
    out = {}
    for name, tensor in state.items():
        for pattern, repl in compiled:
            name = pattern.sub(repl, name)
        out[name] = tensor
    return out


def save_safetensors(state: dict[str, "torch.Tensor"], path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path),
              metadata=metadata or {"format": "pt"})
