"""Read checkpoint weights: safetensors (single or sharded) memory-mapped without a copy,
``pytorch_model.bin`` only through ``torch.load(weights_only=True)``; put them into a model.

The safetensors reader parses the file's header itself and makes each tensor a view of a
private (copy-on-write) memory map: nothing is read until a tensor is used, nothing is copied
unless a dtype or device change asks for it, and a truncated or corrupt file is caught before
any tensor is made.
"""

from __future__ import annotations

import json
import math
import mmap
import weakref
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .errors import WeightsError
from .jsonfile import read_json

if TYPE_CHECKING:
    import torch

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

# safetensors dtype -> (torch dtype name, bytes per element)
_SAFE_DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U8": ("uint8", 1), "BOOL": ("bool", 1), "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder, in load order; an error when there are none."""
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            files = shard_files(index)
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


def shard_files(index: Path) -> list[Path]:
    """The shard files a shard index names, each checked to lie inside the index's folder."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        found = "missing" if weight_map is None else f"{weight_map!r}"[:80]
        raise WeightsError(
            f"{index} is not a valid shard index: its weight_map must map each tensor name to "
            f"the shard file that holds it, but it is {found}. Download the model again.")
    names = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard.strip():
            raise WeightsError(
                f"{index} is not a valid shard index: weight_map[{tensor!r:.80}] is "
                f"{shard!r:.80}, not a file name. Download the model again.")
        names.setdefault(shard, None)
    for name in names:
        relative = PurePosixPath(name.replace("\\", "/"))
        parts = relative.parts
        if relative.is_absolute() or not parts or ".." in parts or ":" in parts[0]:
            raise WeightsError(
                f"{index} names the shard {name!r}, which is outside the model folder: lightpipe "
                "reads only files inside the model's folder. The index is damaged or was made to "
                "read other files; download the model again.")
    return [index.parent / name for name in names]


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """Parse and check a safetensors header; return (entries, offset of the data).

    Every entry is checked as the safetensors library checks it (a known dtype, a shape of
    whole numbers >= 0, offsets that are whole numbers, inside the data and matching the
    shape), and the tensors must tile the data section exactly, without gaps or overlaps."""
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
        _check_entry(path, name, entry, size - data_start)
    _check_layout(path, header, size - data_start)
    return header, data_start


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(path: Path, name: str, entry: object, data_size: int) -> None:
    """One header entry, as safetensors' own validation; adds ``torch_dtype``."""
    def bad(problem: str) -> WeightsError:
        return WeightsError(f"{path}: tensor {name!r} {problem}. The file is corrupt (or was not "
                            "written by a safetensors writer): download it again.")

    if not isinstance(entry, dict):
        raise bad(f"has a header entry that is not an object ({entry!r:.60})")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _SAFE_DTYPES:
        raise WeightsError(f"{path}: tensor {name!r} has dtype {dtype!r:.40}, which lightpipe does "
                           f"not read (it reads {', '.join(_SAFE_DTYPES)}). Use a checkpoint saved "
                           "in one of those dtypes, or download the file again if it is damaged.")
    if not isinstance(shape, list) or not all(_is_whole(d) and d >= 0 for d in shape):
        raise bad(f"has shape {shape!r:.80}: a shape is a list of whole numbers, none negative")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_whole, offsets))):
        raise bad(f"has data_offsets {offsets!r:.80}: they must be two whole numbers [begin, end]")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise bad(f"has data_offsets {offsets}: they must satisfy 0 <= begin <= end (a negative "
                  "offset would read the file's header as tensor data)")
    if end > data_size:
        raise WeightsError(
            f"{path} is truncated: tensor {name!r} ends at byte {end} of the data, past the end of "
            f"its {data_size} bytes. Download it again.")
    count = math.prod(shape)
    if count * _SAFE_DTYPES[dtype][1] != end - begin:
        raise bad(f"has {end - begin} bytes for shape {shape} of {dtype} "
                  f"({count * _SAFE_DTYPES[dtype][1]} expected)")
    entry["torch_dtype"] = _SAFE_DTYPES[dtype][0]


def _check_layout(path: Path, header: dict, data_size: int) -> None:
    """The tensors tile the data section in order, as the safetensors library requires: no
    overlaps (two tensors over the same bytes), no gaps, no bytes left after the last one."""
    expected, previous = 0, None
    for name, entry in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if begin != expected:
            problem = (f"overlaps tensor {previous!r}, which ends at byte {expected}"
                       if begin < expected else f"leaves {begin - expected} bytes unused before it")
            raise WeightsError(f"{path}: tensor {name!r} (data_offsets {[begin, end]}) {problem}. "
                               "The file is corrupt: download it again.")
        expected, previous = end, name
    if expected != data_size:
        raise WeightsError(
            f"{path} has {data_size - expected} bytes after its last tensor that no header entry "
            "describes: the file is corrupt. Download it again.")


# The checkpoints' memory maps: (address, size, the map), for release_pages.
_MAPS: list[tuple[int, int, "weakref.ref"]] = []


def read_safetensors(path: Path) -> dict[str, "torch.Tensor"]:
    """All tensors of one safetensors file, as views of a copy-on-write memory map."""
    import torch

    header, data_start = read_safetensors_header(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        mapped = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
    if size:
        address = torch.frombuffer(mapped, dtype=torch.uint8, count=1).data_ptr()
        _MAPS[:] = [entry for entry in _MAPS if entry[2]() is not None]
        _MAPS.append((address, size, weakref.ref(mapped)))
    tensors = {}
    for name, entry in header.items():
        dtype = getattr(torch, entry["torch_dtype"])
        begin, end = entry["data_offsets"]
        count, itemsize = math.prod(entry["shape"]), _SAFE_DTYPES[entry["dtype"]][1]
        if count == 0:
            tensors[name] = torch.empty(entry["shape"], dtype=dtype)
        elif (data_start + begin) % itemsize == 0:
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=data_start + begin)
            tensors[name] = flat.view(entry["shape"])
        else:  # unaligned data cannot be viewed in place
            raw = bytearray(mapped[data_start + begin:data_start + end])
            tensors[name] = torch.frombuffer(raw, dtype=dtype).view(entry["shape"])
    return tensors


def release_pages(tensor: "torch.Tensor") -> None:
    """Drop from this process's resident memory the pages of a tensor that views a checkpoint's
    memory map, once its values live elsewhere (quantized while loading): an 8B checkpoint read
    through the map would otherwise stay resident (16 GB of RSS for a 5 GB int4 model). The
    pages are the file's, unmodified: a later read fetches them again. Other tensors: nothing."""
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    for address, size, ref in _MAPS:
        mapped = ref()
        if mapped is not None and address <= start and end <= address + size:
            page = mmap.PAGESIZE
            first = -(-(start - address) // page) * page
            last = (end - address) // page * page
            if last > first and hasattr(mapped, "madvise"):
                mapped.madvise(mmap.MADV_DONTNEED, first, last - first)
            return


def read_torch_bin(path: Path) -> dict[str, "torch.Tensor"]:
    """A ``pytorch_model.bin`` state dict, unpickled with ``weights_only=True``. The zip format
    (torch >= 1.6) is memory-mapped; the legacy format (a bare pickle stream, still common in
    older Hub repositories) cannot be, so it is read into memory."""
    import pickle

    import torch

    with open(path, "rb") as handle:
        magic = handle.read(4)
    if not magic.startswith((b"PK", b"\x80")):  # a zip archive, or a pickle (protocol >= 2)
        raise WeightsError(f"{path} is not a PyTorch checkpoint (neither the zip nor the legacy "
                           "format): it is corrupt or truncated; download it again.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=magic.startswith(b"PK"))
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines() if "Unsupported" in line), "")
        raise WeightsError(
            f"{path} holds objects other than tensors (or is corrupt), and lightpipe only loads "
            f"pickled weights with weights_only=True{': ' + reason if reason else ''}. Convert "
            "the checkpoint to safetensors.") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"{path} could not be read ({err}): it is corrupt or truncated.") from err
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict.")
    return state.get("state_dict", state) if "state_dict" in state else state


def read_weights(folder: Path) -> dict[str, "torch.Tensor"]:
    """Every tensor of a model folder (all shards), keyed by checkpoint name; a progress bar
    ("Loading checkpoint shards", as transformers') over two or more shards (lightpipe.logging)."""
    from .logging import progress_bar

    state: dict = {}
    files = weight_files(folder)
    if len(files) > 1:
        files = progress_bar(files, total=len(files), desc="Loading checkpoint shards")
    for path in files:
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
