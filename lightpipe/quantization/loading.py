"""Quantizing while loading: ``from_pretrained(..., quantization=...)`` and GGUF files kept
packed (``gguf_file=..., dequantize=False``).

The model is built on the meta device as usual; before the checkpoint's tensors are assigned,
each linear layer to quantize is replaced by its quantized module, made from that layer's
checkpoint tensor alone (read from the memory map: one layer's float weight at a time, never
the whole model in float). The rest of the checkpoint is assigned as usual.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import (QuantizationError, QuantizationSpec, output_projections, parse_quantization,
               quantize_model, replace_module, _skipped)
from ..weights import release_pages
from .embedding import take_packed_embeddings
from .fuse import fuse_projections
from .linear import Int4Linear, Int8Linear, QuantizedLinear, int4_fits

# ``quantization=PACKED``: only the checkpoint's own packed entries (a GGUF file read with
# dequantize=False) become quantized modules.
PACKED = "packed"


def compute_dtype_for(spec: QuantizationSpec | None, model_dtype: torch.dtype) -> torch.dtype:
    """The kernels' dtype: the spec's when it asks one, else the model's 16-bit dtype, else
    bfloat16 (the kernels' fast path; a float32 model converts around them)."""
    if spec is not None and spec.compute_dtype is not None:
        return spec.compute_dtype
    return model_dtype if model_dtype in (torch.bfloat16, torch.float16) else torch.bfloat16


def load_quantized(model: nn.Module, state: dict, quantization: Any, dtype: torch.dtype,
                   device: torch.device) -> dict:
    """``model._assign(state, dtype, device)`` with the linear layers quantized on the way."""
    packed_only = quantization == PACKED
    spec = None if packed_only else parse_quantization(quantization)
    if device.type != "cpu" and (spec is not None or packed_only):
        raise QuantizationError(
            f"quantization={str(spec or 'GGUF packed')!r} runs on the CPU (torch's int4 / int8 "
            f"weight-only kernels); device {device} was asked. Load on the CPU, or without "
            "quantization (GGUF: dequantize=True).")
    if spec is not None and spec.method == "int8-dynamic":
        info = model._assign(state, dtype, device)  # dynamic quantization works on the float model
        quantize_model(model, spec)
        return info
    heads = output_projections(model)
    ties = model.active_ties()
    wanted: dict[str, torch.dtype] = {}
    built: dict[int, nn.Module] = {}  # id(packed entry) -> its module (a tied embedding reads it)
    with torch.no_grad():
        for name, module in list(model.named_modules()):
            if not isinstance(module, nn.Linear):
                continue
            key = name + ".weight"
            value = state.get(key)
            if value is None and key in ties and spec is not None:
                value = state.get(ties[key])  # a tied output projection: the embedding's values
            if value is None:
                continue  # (a packed file's tied head: see gguf.packed.packed_checkpoint)
            bias = state.get(name + ".bias")
            build = getattr(value, "build_linear", None)
            if build is not None:  # a packed GGUF tensor
                compute = compute_dtype_for(None, dtype) if dtype != torch.float32 else dtype
                new = build(bias, compute)
                built[id(value)] = new
            elif spec is None or _skipped(name, spec, heads):
                continue
            else:
                new = _quantize_tensor(value, bias, module, spec, compute_dtype_for(spec, dtype))
                if new is None:
                    continue
                release_pages(value)  # its codes are in `new`: the mapped float pages can go
            replace_module(model, name, new)
            state.pop(key, None)
            state.pop(name + ".bias", None)
            for leaf, tensor in new.state_dict().items():
                state[f"{name}.{leaf}"] = tensor
            wanted[name] = new.compute_dtype
    # Packed entries no linear layer took: a token embedding kept quantized (QuantizedEmbedding,
    # sharing a tied head's codes), anything else dequantised to the model's dtype.
    compute = compute_dtype_for(None, dtype) if dtype != torch.float32 else dtype
    take_packed_embeddings(model, state, built, compute, dtype)
    del built  # (it would keep the unfused projections alive while fusing)
    info = model._assign(state, dtype, device)
    state.clear()  # the model holds what it needs: the unfused copies can go before fusing
    modules = dict(model.named_modules())
    for name, compute in wanted.items():  # _assign cast float buffers to the model's dtype
        modules[name].set_compute_dtype(compute)
    del modules  # (it would keep the unfused projections alive while fusing)
    fuse_projections(model)
    model.quantization = spec or PACKED
    trim_heap()
    return info


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``): the chunked
    conversions above leave freed temporaries resident (Qwen2.5-0.5B Q4_K_M packed: ~115 MB of
    ~0.9 GB). A no-op where the C library has no ``malloc_trim``."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except Exception:  # not glibc (macOS, Windows, musl): nothing to do
        pass


def _quantize_tensor(weight: torch.Tensor, bias, module: nn.Linear, spec: QuantizationSpec,
                     compute: torch.dtype) -> QuantizedLinear | None:
    if tuple(weight.shape) != (module.out_features, module.in_features):
        return None  # _assign reports the mismatch
    bias = None if bias is None else bias.detach().to(compute)
    if spec.method == "int4":
        if not int4_fits(module.out_features, module.in_features, spec.group_size):
            return None
        return Int4Linear.from_weight(weight, spec.group_size, bias, compute)
    return Int8Linear.from_weight(weight, bias, compute)


def check_int8_activations(quantization: Any) -> None:
    """``from_pretrained(..., int8_activations=True)``: refused before loading unless the
    linear layers will be weight-only quantized (``quantization`` as resolved: PACKED for a
    GGUF file with dequantize=False, or an int4 / int8 spec)."""
    spec = None if quantization == PACKED else parse_quantization(quantization)
    if quantization != PACKED and (spec is None or spec.method not in ("int4", "int8")):
        why = ("int8-dynamic already quantizes the activations" if spec is not None
               else "the model would have float linear layers")
        raise QuantizationError(
            f"int8_activations=True applies to weight-only quantized layers, but {why}: add "
            "quantization='int4' or 'int8' (or, for a GGUF file, dequantize=False), or drop "
            "int8_activations.")


def packed_arguments(gguf_file: Any, quantization: Any, dtype: Any) -> tuple[Any, Any]:
    """``from_pretrained(..., dequantize=False)``: (quantization, dtype) to load with. Unless a
    dtype is asked, the model computes in float32 where lightpipe's C kernel runs, else in
    bfloat16 (torch's kernels' fast path)."""
    if gguf_file is None:
        raise QuantizationError("dequantize=False keeps a GGUF file's blocks packed; it needs "
                                "gguf_file=... (for a Hub checkpoint use quantization='int4' or "
                                "'int8').")
    if parse_quantization(quantization) is not None:
        raise QuantizationError(
            f"quantization={quantization!r} with dequantize=False: the GGUF file's own "
            "quantization is kept. Pass one or the other (dequantize=True, quantization=... "
            "re-quantizes the dequantised weights).")
    if dtype in ("auto", None):
        from . import kernels

        # lightpipe's C kernel takes float32 activations (exact scales, and float32 elementwise
        # ops are faster than bfloat16 ones on a CPU without native bfloat16); torch's int4 /
        # int8 kernels are fast in bfloat16 only
        dtype = torch.float32 if kernels.available() else torch.bfloat16
    return PACKED, dtype
