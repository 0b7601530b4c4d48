"""Where each part of a model lives: ``device_map`` ("auto", "balanced", "sequential" or a dict
of module names to devices: GPU indices, "cpu", "disk") and ``max_memory``, as transformers
accepts them.

The plan is made on the meta-built model before any weight is read: the model is cut into
blocks that are never split (each entry of a layer list, e.g. a decoder layer; every other
module with weights whole), each block's bytes are counted in the dtype it will be loaded in,
and the blocks are given to the devices in order until each device's budget is spent, the rest
to "disk". A plan that cannot fit is refused here, before any allocation, with what it needs,
what there is, and the options that would fit. ``lightpipe.offload`` loads and runs the plan.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from .errors import LightpipeError, closest

STRATEGIES = ("auto", "balanced", "sequential")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class PlacementError(LightpipeError, ValueError):
    """A device_map / max_memory that is malformed, or a model that does not fit it."""


def parse_memory(value: Any, what: str = "max_memory") -> int:
    """4 * 2**30, "4GiB", "500MB", "1.5 GB" -> bytes (decimal units as accelerate reads them:
    "GB" = 10**9, "GiB" = 2**30)."""
    if isinstance(value, bool):
        raise PlacementError(f"{what}={value!r} is not an amount of memory: use bytes (an int) "
                             "or a string such as '4GiB' or '500MB'.")
    if isinstance(value, (int, float)) and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if match and match.group(2).lower() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise PlacementError(f"{what}={value!r} is not an amount of memory: use bytes (an int) or a "
                         "string such as '4GiB', '500MB' or '2GB'.")


def normalize_device(device: Any, where: str = "device_map") -> int | str:
    """A device as hf_device_map shows it: a GPU index (int), "cpu", "mps" or "disk"."""
    if isinstance(device, torch.device):
        device = str(device)
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    if isinstance(device, str):
        name = device.strip().lower()
        if name in ("cpu", "disk", "mps", "meta"):
            if name == "meta":
                raise PlacementError(f"{where}: 'meta' is not a device weights can live on: use a "
                                     "GPU index, 'cpu' or 'disk'.")
            return name
        match = re.fullmatch(r"cuda(?::(\d+))?", name) or re.fullmatch(r"(\d+)", name)
        if match:
            return int(match.group(1) or 0)
    raise PlacementError(f"{where}: {device!r} is not a device: use a GPU index (0, 1, ...), "
                         "'cuda:N', 'cpu' or 'disk'.")


def torch_device(device: int | str) -> torch.device:
    """Where a block's weights are computed: a GPU, or the CPU for "cpu" and "disk"."""
    if isinstance(device, int):
        return torch.device("cuda", device)
    return torch.device("cpu" if device == "disk" else device)


def check_devices_exist(devices) -> None:
    for device in devices:
        if isinstance(device, int):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if device >= count:
                raise PlacementError(
                    f"device_map names GPU {device}, but this machine has {count} GPU(s) visible "
                    f"to torch {torch.__version__}. Use 'cpu' or 'disk' for those modules, or "
                    "device_map='auto'.")
        elif device == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                      and torch.backends.mps.is_available()):
            raise PlacementError("device_map names 'mps', which this machine does not have: use "
                                 "'cpu' or 'disk'.")


# --- the blocks and their sizes

def _bytes(tensor: torch.Tensor, dtype: torch.dtype) -> int:
    size = torch.empty((), dtype=dtype if tensor.is_floating_point() else tensor.dtype).element_size()
    return tensor.numel() * size


def block_names(model: nn.Module) -> list[str]:
    """The blocks of a model, in registration (= execution) order: each entry of a layer list
    (nn.ModuleList) is one block never split; a module with no layer list inside is one block;
    the direct weights of a module that holds layer lists are blocks of their own."""
    blocks: list[str] = []

    def has_list(module: nn.Module) -> bool:
        return any(isinstance(m, nn.ModuleList) for m in module.modules())

    def walk(module: nn.Module, prefix: str) -> None:
        for name, _ in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            blocks.append(prefix + name)
        for name, child in module.named_children():
            if isinstance(child, nn.ModuleList):
                for index, entry in child.named_children():
                    if _has_state(entry):
                        blocks.append(f"{prefix}{name}.{index}")
            elif has_list(child):
                walk(child, f"{prefix}{name}.")
            elif _has_state(child):
                blocks.append(prefix + name)

    if not has_list(model):
        return [""] if _has_state(model) else []
    walk(model, "")
    return blocks


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def owner(name: str, keys) -> str | None:
    """The most specific key of a device map that covers the weight ``name``."""
    best = None
    for key in keys:
        if key == "" or name == key or name.startswith(key + "."):
            if best is None or len(key) > len(best):
                best = key
    return best


def block_sizes(model: nn.Module, blocks: list[str], dtype: torch.dtype) -> dict[str, int]:
    """Bytes per block in ``dtype``; a weight shared by two blocks (tied embeddings) counted
    once, in the first."""
    sizes = dict.fromkeys(blocks, 0)
    seen: set[int] = set()
    for name, tensor in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        key = owner(name, blocks)
        if key is not None:
            sizes[key] += _bytes(tensor, dtype)
    return sizes


def _gib(amount: int) -> str:
    """Bytes for people: GiB, MiB or KiB, whichever reads best."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if amount >= scale:
            return f"{amount / scale:,.2f} {unit}"
    return f"{amount} bytes"


# --- budgets

def default_max_memory() -> dict[int | str, int]:
    """Each GPU's free memory (90%: room for activations), then the CPU's available memory."""
    from .modeling import _available_memory

    budget: dict[int | str, int] = {}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, _ = torch.cuda.mem_get_info(index)
            budget[index] = int(free * 0.9)
    available = _available_memory()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        budget["mps"] = int(available * 0.7) if available is not None else 2**62
    budget["cpu"] = int(available * 0.9) if available is not None else 2**62
    return budget


def read_max_memory(max_memory: dict | None) -> dict[int | str, int]:
    if max_memory is None:
        return default_max_memory()
    if not isinstance(max_memory, dict) or not max_memory:
        raise PlacementError(f"max_memory={max_memory!r} is not a mapping of devices to amounts: "
                             "use e.g. {0: '10GiB', 'cpu': '30GiB'}.")
    budget = {}
    for device, amount in max_memory.items():
        key = normalize_device(device, "max_memory")
        budget[key] = parse_memory(amount, f"max_memory[{device!r}]")
    check_devices_exist(k for k in budget if k != "disk")
    gpus = sorted(k for k in budget if isinstance(k, int))
    order = gpus + [k for k in ("mps", "cpu", "disk") if k in budget]
    return {k: budget[k] for k in order}


# --- the plan

def plan(model: nn.Module, device_map: Any, max_memory: dict | None, dtype: torch.dtype,
         disk_possible: bool, disk_hint: str = "") -> dict[str, int | str]:
    """The device map to load ``model`` (built on meta) with: a dict checked against the
    model, or the blocks given out by the strategy."""
    if isinstance(device_map, dict):
        return check_map(model, device_map, max_memory, dtype, disk_possible, disk_hint)
    if device_map not in STRATEGIES:
        raise PlacementError(f"device_map={device_map!r} is not known: use 'auto', 'balanced', "
                             "'sequential', a device, or a dict of module names to devices.")
    blocks = block_names(model)
    sizes = block_sizes(model, blocks, dtype)
    budget = read_max_memory(max_memory)
    disk_budget = budget.pop("disk", None)
    gpus = [k for k in budget if isinstance(k, int)]
    caps = dict(budget)
    if device_map in ("auto", "balanced") and len(gpus) > 1:
        # balanced: each GPU takes its share of the model (plus one block of slack)
        share = sum(sizes.values()) // len(gpus) + max(sizes.values(), default=0)
        caps.update({g: min(budget[g], share) for g in gpus[:-1]})
    placed: dict[str, int | str] = {}
    devices = list(caps)
    position, used = 0, 0
    ties = _tie_groups(model, blocks)
    for block in blocks:
        if block in ties and ties[block] in placed:  # shares its weight with an earlier block
            placed[block] = placed[ties[block]]
            continue
        size = sizes[block]
        while position < len(devices) and used + size > caps[devices[position]]:
            position, used = position + 1, 0
        if position < len(devices):
            placed[block] = devices[position]
            used += size
        else:
            placed[block] = "disk"
    on_disk = sum(sizes[b] for b, d in placed.items() if d == "disk")
    if on_disk and (not disk_possible or (disk_budget is not None and on_disk > disk_budget)):
        raise fit_error(model, sizes, budget, on_disk, disk_possible, disk_hint, dtype)
    if len(set(placed.values())) == 1:
        return {"": next(iter(placed.values()))} if placed else {"": devices[0] if devices else "cpu"}
    return placed


def _tie_groups(model: nn.Module, blocks: list[str]) -> dict[str, str]:
    """{block: the earlier block it shares a weight with} (tied embeddings and heads)."""
    first: dict[int, str] = {}
    ties = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        block = owner(name, blocks)
        if block is None:
            continue
        if id(tensor) in first and first[id(tensor)] != block:
            ties.setdefault(block, first[id(tensor)])
        first.setdefault(id(tensor), block)
    return ties


def fit_error(model, sizes, budget, on_disk, disk_possible, disk_hint, dtype) -> PlacementError:
    total = sum(sizes.values())
    there = ", ".join(f"{'GPU ' + str(k) if isinstance(k, int) else k} {_gib(v)}"
                      for k, v in budget.items()) or "no device"
    options = []
    room = sum(budget.values())
    if not disk_possible:
        options.append(disk_hint or "offload_folder='some/folder' to put the rest on disk")
    else:
        options.append("allow more 'disk' in max_memory")
    options.append(f"max_memory with {_gib(total)} in all")
    if dtype == torch.float32:
        options.append(f"dtype=torch.bfloat16 ({_gib(total // 2)})")
    options.append("quantization='int8' or 'int4' on one device (see `lightpipe estimate-memory`)")
    return PlacementError(
        f"{type(model).__name__} does not fit: its weights need {_gib(total)} in {str(dtype)[6:]} "
        f"(largest block {_gib(max(sizes.values(), default=0))}), the devices give {there} "
        f"({_gib(room)}), and {_gib(on_disk)} would be left for the disk, which "
        f"{'max_memory caps' if disk_possible else 'cannot be used here'}. Options: "
        + "; ".join(options) + ".")


def check_map(model: nn.Module, device_map: dict, max_memory: dict | None, dtype: torch.dtype,
              disk_possible: bool, disk_hint: str = "") -> dict[str, int | str]:
    """A caller's dict: known names, known devices, every weight covered, budgets kept."""
    if not device_map:
        raise PlacementError("device_map={} places nothing: map module names to devices, e.g. "
                             "{'': 'cpu'} or {'model.layers.0': 0, ...}, or use 'auto'.")
    modules = dict(model.named_modules())
    weights = dict(model.named_parameters(remove_duplicate=False))
    weights.update(model.named_buffers())
    placed = {}
    for key, device in device_map.items():
        if not isinstance(key, str) or (key not in modules and key not in weights):
            choices = [n for n in modules if n] + list(weights)
            raise PlacementError(
                f"device_map names {key!r}, which is not a module or weight of "
                f"{type(model).__name__}.{closest(str(key), choices)} Its top modules are: "
                f"{', '.join(n for n in modules if n and '.' not in n)}; use names as "
                "model.named_modules() gives them (see block_names()).")
        placed[key] = normalize_device(device, f"device_map[{key!r}]")
    check_devices_exist(d for d in placed.values() if d != "disk")
    uncovered = [n for n in weights if owner(n, placed) is None]
    if uncovered:
        from .modeling import _shorten_names

        raise PlacementError(
            f"device_map leaves {len(uncovered)} weights of {type(model).__name__} without a "
            f"device: {_shorten_names(uncovered)}. Add their modules to the map (or a '' entry "
            "for everything not named).")
    sizes = block_sizes(model, list(placed), dtype)
    used: dict[int | str, int] = {}
    for key, device in placed.items():
        used[device] = used.get(device, 0) + sizes[key]
    if "disk" in used and not disk_possible:
        raise PlacementError(f"device_map puts {_gib(used['disk'])} on 'disk', which cannot be "
                             f"used here: {disk_hint or 'pass offload_folder=...'}.")
    if max_memory is not None:
        budget = read_max_memory(max_memory)
        for device, amount in used.items():
            if device in budget and amount > budget[device]:
                raise PlacementError(
                    f"device_map puts {_gib(amount)} of weights on {device!r}, more than "
                    f"max_memory's {_gib(budget[device])} for it. Move blocks to another device, "
                    "raise max_memory, or use device_map='auto' with this max_memory.")
    return placed
