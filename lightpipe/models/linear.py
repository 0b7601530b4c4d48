"""Linear layers for decoding on the CPU: products through oneDNN, from weights kept in its
blocked layout (``PackableLinear``), with a fused residual add or tanh GELU.

Why: a decoding step multiplies a few rows by every weight matrix. For such skinny products
MKL (what ``F.linear`` calls in float32) runs at about half oneDNN's speed on the AMD CPUs we
measured, and oneDNN itself reads a matrix about twice as fast (bfloat16: 2.5x) from its
blocked layout as from the plain one, which it otherwise reorders on every call. On Intel CPUs
MKL is the faster one for a single float32 row (``_MKL_ONE_ROW``), oneDNN from two rows on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _onednn_ops():
    try:
        if torch.backends.mkldnn.is_available():
            return torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
    except (AttributeError, RuntimeError):
        pass
    return None, None


def _onednn_dtypes() -> tuple:
    """The dtypes oneDNN multiplies on this CPU: bfloat16 needs AVX-512 (or AVX-NE-CONVERT)."""
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.float32, torch.bfloat16
    except (AttributeError, RuntimeError):
        pass
    return (torch.float32,)


# oneDNN's fused linear and its weight packing (None where this torch build has no oneDNN).
_ONEDNN_LINEAR, _REORDER = _onednn_ops()
_ONEDNN_DTYPES = _onednn_dtypes() if _ONEDNN_LINEAR is not None else ()


def _intel_cpu() -> bool:
    try:
        with open("/proc/cpuinfo") as info:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in info)
    except OSError:
        return False


# On Intel CPUs, float32 products of one row (batch-1 decode) go to F.linear (MKL's sgemv):
# measured on a 2-vCPU Xeon, up to 1.2x oneDNN's speed a product and 1.2x a whole token at 2
# threads (a Llama of 768 x 12: 32.8 -> 39.4 tok/s); from 2 rows on oneDNN stays (1.1-2.6x
# MKL at 8 rows). On AMD CPUs oneDNN is faster at every size (see the module docstring).
_MKL_ONE_ROW = _intel_cpu()


def _one_float_row(inputs: torch.Tensor) -> bool:
    return (_MKL_ONE_ROW and inputs.dtype == torch.float32
            and inputs.numel() == inputs.shape[-1])


# float32 products of up to this many rows go to lightpipe's C product (kernels.f32_mm, the C
# decode step's) where that library is already loaded - it is never built for this: 1.1-1.25x
# oneDNN's from its packed copy at 1-8 rows (Whisper tiny's and SmolLM2's layers, 1 thread),
# about MKL's at one row, and it needs no packed copy (the output layer after the C step).
F32_ROWS = 8


def loaded_kernels():
    """lightpipe's C kernel module where its library is already loaded (by a quantized model or
    the C decode step), else None: callers that only borrow a kernel never build it."""
    kernels = sys.modules.get("lightpipe.quantization.kernels")
    return kernels if kernels is not None and kernels._library is not None else None


def _c_rows(inputs: torch.Tensor, weight: torch.Tensor):
    """kernels.f32_mm's module where it takes this product, else None."""
    if (inputs.dtype != torch.float32 or weight.dtype != torch.float32 or inputs.dim() < 1
            or inputs.numel() > F32_ROWS * inputs.shape[-1] or inputs.device.type != "cpu"
            or weight.device.type != "cpu" or not weight.is_contiguous()
            or (torch.is_grad_enabled() and (weight.requires_grad or inputs.requires_grad))):
        return None
    return loaded_kernels()


def _pack(weight: torch.Tensor, batch_size: int | None = None) -> torch.Tensor | None:
    """An (out, in) weight in oneDNN's blocked layout; None where this CPU does not multiply
    its dtype through oneDNN (``linear`` then uses F.linear)."""
    return _REORDER(weight, batch_size) if weight.dtype in _ONEDNN_DTYPES else None


_ONEDNN_PACK = _pack if _REORDER is not None else None


def linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           packed: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with the (out, in) ``weight``, run by oneDNN on the CPU when no gradient is
    wanted, from ``packed`` (the same weight in oneDNN's blocked layout) when given.
    bfloat16 results are bit-identical to F.linear's either way; float32 ones differ from MKL's
    in summation order only (~1e-6 relative)."""
    if isinstance(weight, nn.Module):  # a quantized layer's parts() (lightpipe.quantization)
        return weight(inputs)
    kernels = _c_rows(inputs, weight)
    if kernels is not None and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous())):
        rows = inputs.reshape(-1, inputs.shape[-1])
        out = kernels.f32_mm(rows if rows.is_contiguous() else rows.contiguous(), weight, bias)
        return out.view(*inputs.shape[:-1], weight.shape[0])
    if (_ONEDNN_LINEAR is not None and inputs.device.type == "cpu"
            and inputs.dtype in _ONEDNN_DTYPES and inputs.dtype == weight.dtype
            and not (torch.is_grad_enabled() and weight.requires_grad)
            and not _one_float_row(inputs)):
        return _ONEDNN_LINEAR(inputs, weight if packed is None else packed, bias, "none", [], "")
    return F.linear(inputs, weight, bias)


def linear_add(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               packed: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
    """``residual + linear(inputs, weight, bias)``; in float32 on the CPU one oneDNN call adds
    the residual as the product is written (the same numbers to ~1e-7: one rounding fewer).
    Other dtypes add separately, rounding where the reference rounds."""
    if isinstance(weight, nn.Module):  # a quantized layer's parts() (lightpipe.quantization)
        return residual + weight(inputs)
    if (_ONEDNN_LINEAR is not None and inputs.dtype == torch.float32 and inputs.device.type == "cpu"
            and weight.dtype == torch.float32 and residual.dtype == torch.float32
            and residual.shape == inputs.shape[:-1] + weight.shape[:1]
            and not (torch.is_grad_enabled() and weight.requires_grad)
            and not _one_float_row(inputs)):
        return _ONEDNN_LINEAR.binary(inputs, residual, weight if packed is None else packed, bias, "add")
    return residual + linear(inputs, weight, bias, packed)


def linear_gelu_tanh(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     packed: torch.Tensor | None) -> torch.Tensor | None:
    """``gelu(linear(...), approximate="tanh")`` in one oneDNN call (float32 on the CPU, equal
    to ~1e-7); None where that does not apply, for the caller to compute it its own way."""
    if (_ONEDNN_LINEAR is not None and inputs.dtype == torch.float32 and inputs.device.type == "cpu"
            and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and weight.requires_grad)):
        return _ONEDNN_LINEAR(inputs, weight if packed is None else packed, bias, "gelu", [], "tanh")
    return None


class PackableLinear:
    """Mixin of linear layers: ``pack()`` keeps a copy of the weight in oneDNN's layout for
    ``linear``, used while the weight is unchanged (same storage, dtype and device). It costs a
    second copy of the weights in memory; generate() packs on the CPU (see
    GenerationMixin.pack_weights) and ``unpack()`` frees it."""

    _packed: torch.Tensor | None = None
    _packed_key: tuple | None = None

    def dense_weight(self) -> torch.Tensor:
        """The weight as an (out, in) matrix."""
        return self.weight

    def _key(self) -> tuple:
        weight = self.weight
        try:
            version = weight._version  # bumped by in-place edits of the weight
        except RuntimeError:  # an inference tensor: it cannot be edited in place anyway
            version = 0
        return weight.data_ptr(), weight.dtype, weight.device, version

    def pack(self) -> None:
        weight = self.dense_weight()
        if _ONEDNN_PACK is None or weight.device.type != "cpu" or weight.dtype not in _ONEDNN_DTYPES:
            return
        if self._packed is None or self._packed_key != self._key():
            with torch.no_grad():
                self._packed = _ONEDNN_PACK(weight.detach(), None)
            self._packed_key = self._key()

    def unpack(self) -> None:
        self._packed = self._packed_key = None

    def packed_weight(self) -> torch.Tensor | None:
        if self._packed is not None and self._packed_key == self._key():
            return self._packed
        return None


class Linear(PackableLinear, nn.Linear):
    """nn.Linear (same parameters, same names) computed by ``linear`` above."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return linear(inputs, self.weight, self.bias, self.packed_weight())

    def forward_add(self, inputs: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + self(inputs)``, fused where it can be (see ``linear_add``)."""
        return linear_add(inputs, self.weight, self.bias, self.packed_weight(), residual)

    def parts(self) -> tuple:
        """(weight, bias, packed weight): ``linear``'s arguments, for lean decoding steps."""
        return self.weight, self.bias, self.packed_weight()


def available_memory() -> int | None:
    """Bytes of memory available to the process (room for packed copies): Linux's
    MemAvailable, or less under a cgroup (container) limit; None where unknown."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available or 1 << 62, int(limit) - used)
    except (OSError, ValueError, IndexError):
        pass
    return available
