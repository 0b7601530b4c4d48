"""Loading and running a model split by a device map (see ``lightpipe.placement``).

Blocks run where their weights live: a hook before each block moves its inputs (hidden
states, masks, rotary tables) to the block's device; the model's outputs come back to the
device of its first block. Each layer's KV cache is made from its own keys and values, so it
stays on that layer's device.

"disk" blocks run on the CPU from weights that stay in their files: tensors viewing a memory
map of the checkpoint's safetensors (or, when the checkpoint is not safetensors or the dtype
changes, of a safetensors file written per block to ``offload_folder``). After the block has
run, its pages are given back to the kernel (``MADV_DONTNEED``), so the process holds one
block of disk weights at a time, not the model.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import placement
from . import weights as weights_io

logger = logging.getLogger("lightpipe")
_PAGE = mmap.PAGESIZE


class _Mapped:
    """One safetensors file mapped for reading, with the ranges each tensor spans."""

    def __init__(self, path: Path):
        self.path = path
        self.header, self.data_start = weights_io.read_safetensors_header(path)
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            # copy-on-write: torch wants a writable buffer; nothing is ever written
            self.map = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)

    def tensor(self, name: str) -> tuple[torch.Tensor, tuple[int, int]] | None:
        """The tensor as a view of the map and its byte range; None when it cannot be viewed in
        place (unaligned data)."""
        entry = self.header[name]
        dtype = getattr(torch, entry["torch_dtype"])
        begin, end = entry["data_offsets"]
        count = math.prod(entry["shape"])
        start = self.data_start + begin
        if count == 0 or start % torch.empty((), dtype=dtype).element_size():
            return None
        flat = torch.frombuffer(self.map, dtype=dtype, count=count, offset=start)
        return flat.view(entry["shape"]), (start, self.data_start + end)

    def release(self, ranges: list[tuple[int, int]]) -> None:
        for start, end in ranges:
            aligned = start - start % _PAGE
            try:
                self.map.madvise(mmap.MADV_DONTNEED, aligned, end - aligned)
            except (AttributeError, OSError, ValueError):  # not Linux: the kernel decides
                return


def _checkpoint_views(model: nn.Module, folder: Path | None) -> dict[str, tuple]:
    """{our weight name: (file map, checkpoint entry name)} for a safetensors checkpoint."""
    if folder is None:
        return {}
    files = weights_io.weight_files(folder)
    if not all(f.suffix == ".safetensors" for f in files):
        return {}
    found: dict[str, tuple] = {}
    for path in files:
        mapped = _Mapped(path)
        found.update({name: (mapped, name) for name in mapped.header})
    return model._adapt_state(found)


def direct_disk_possible(state: dict, folder: Path | None, dtype: torch.dtype) -> bool:
    """Disk blocks can view the checkpoint's own files: safetensors, already in ``dtype``."""
    if folder is None:
        return False
    try:
        files = weights_io.weight_files(folder)
    except Exception:
        return False
    return (all(f.suffix == ".safetensors" for f in files)
            and all(t.dtype == dtype for t in state.values() if t.is_floating_point()))


def load_split(cls, config, state: dict, folder: Path | None, dtype: torch.dtype,
               device_map: Any, max_memory: dict | None, offload_folder: Any):
    """Build ``cls`` on meta, plan the placement, assign the weights where the plan puts
    them, attach the hooks; returns (model, loading info)."""
    from .modeling import check_buildable, skip_init

    check_buildable(config.set_defaults(cls.config_defaults), state)
    with torch.device("meta"), skip_init():
        model = cls(config)
    state = model._adapt_state(state)
    direct = direct_disk_possible(state, folder, dtype)
    hint = ("pass offload_folder='some/folder': this checkpoint is not safetensors in "
            f"{str(dtype)[6:]}, so its disk blocks must be written there first")
    placed = placement.plan(model, device_map, max_memory, dtype,
                            direct or offload_folder is not None, hint)
    if set(placed) == {""}:  # one device: the ordinary load
        device = placed[""]
        if device == "disk":
            placed = {name: "disk" for name in placement.block_names(model)} or placed
        else:
            info = model._assign(state, dtype, placement.torch_device(device))
            model.hf_device_map = dict(placed)
            return model.eval(), info
    disk_blocks = [key for key, device in placed.items() if device == "disk"]
    ranges: dict[str, list] = {}
    if disk_blocks:
        views = _checkpoint_views(model, folder) if direct else {}
        for block in disk_blocks:
            names = [n for n in state if placement.owner(n, placed) == block]
            if not direct:
                views.update(_write_block(block, {n: state[n] for n in names}, dtype, offload_folder))
            ranges[block] = []
            for name in names:
                mapped, entry = views.get(name, (None, None))
                viewed = mapped.tensor(entry) if mapped is not None else None
                if viewed is not None:
                    state[name] = viewed[0]
                    ranges[block].append((mapped, viewed[1]))
    info = model._assign(state, dtype, torch.device("cpu"))
    modules = dict(model.named_modules())
    for key, device in placed.items():
        if isinstance(device, int) or device == "mps":
            _module_of(modules, key).to(placement.torch_device(device))
    attach(model, placed, ranges)
    return model.eval(), info


def _write_block(block: str, tensors: dict, dtype: torch.dtype, offload_folder: Any) -> dict:
    """Write one disk block's weights, in ``dtype``, to ``offload_folder/<block>.safetensors``."""
    folder = Path(offload_folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{block or 'model'}.safetensors"
    converted = {name: (t.to(dtype) if t.is_floating_point() else t) for name, t in tensors.items()}
    weights_io.save_safetensors(converted, path)
    del converted
    mapped = _Mapped(path)
    return {name: (mapped, name) for name in mapped.header}


def _module_of(modules: dict, key: str) -> nn.Module:
    """The module a map key names (a weight's name: the module that holds it)."""
    return modules[key] if key in modules else modules[key.rpartition(".")[0]]


def _moved(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device)
    if type(value) in (tuple, list):
        return type(value)(_moved(v, device) for v in value)
    if type(value) is dict:
        return {k: _moved(v, device) for k, v in value.items()}
    return value


def _no_pack() -> None:
    """Disk weights are not copied into oneDNN's layout (a second copy in memory)."""


def attach(model: nn.Module, placed: dict, ranges: dict[str, list]) -> None:
    """The hooks that run each block where it lives, and ``model.hf_device_map``."""
    from .models.linear import PackableLinear

    modules = dict(model.named_modules())
    devices = {placement.torch_device(d) for d in placed.values()}
    first = placement.torch_device(next(iter(placed.values())))
    for key, device in placed.items():
        module = _module_of(modules, key)
        target = placement.torch_device(device)
        if len(devices) > 1:
            module.register_forward_pre_hook(
                lambda _m, args, kwargs, target=target: (_moved(args, target), _moved(kwargs, target)),
                with_kwargs=True)
        if device == "disk":
            for linear in module.modules():
                if isinstance(linear, PackableLinear):
                    linear.pack = _no_pack
            spans = ranges.get(key, [])
            if spans:
                module.register_forward_hook(lambda *_, spans=spans: _release(spans))
    if len(devices) > 1:
        model.register_forward_hook(lambda _m, _a, output: _outputs_to(output, first))
    # generate()'s lean decoding path calls the layers' maths without their modules (so
    # without these hooks): a split model decodes through the modules
    model.begin_decode = lambda: None
    model.hf_device_map = dict(placed)


def _outputs_to(output: Any, device: torch.device) -> Any:
    if isinstance(output, dict):
        for key, value in list(output.items()):
            if isinstance(value, torch.Tensor) and value.device != device:
                output[key] = value.to(device)
        return output
    return _moved(output, device)


def _release(spans: list) -> None:
    by_map: dict[int, tuple] = {}
    for mapped, span in spans:
        by_map.setdefault(id(mapped), (mapped, []))[1].append(span)
    for mapped, found in by_map.values():
        mapped.release(found)
