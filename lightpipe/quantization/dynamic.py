"""Dynamic int8 quantization: int8 weights (one scale per output row, computed once) times
int8 activations (quantized per call from their observed range), for compute-bound work:
encoders (BERT-like embedders, Whisper's encoder), prefill and batched decoding.

The kernel is torch's own ``quantized::linear_dynamic`` (FBGEMM, the ``x86`` quantized
engine): it quantizes the activations, multiplies in int8 with int32 accumulation, and
writes float32 with the bias added. Measured on this AVX2 machine (no VNNI; notes of issue
18): about 2x float32's MKL GEMM on MiniLM- and Whisper-tiny-sized layers, where
``torch._int_mm`` (its CPU kernel is not vectorised for int8 here) was 30x slower than
float32 and oneDNN's dynamic linear matched FBGEMM. On a CPU with VNNI, FBGEMM uses it.

Activations are quantized with ``reduce_range`` (7-bit codes), as torch does by default on
x86: the AVX2 int8 instruction (vpmaddubsw) saturates its int16 sums otherwise.

Layers left in float: the output projection (``lm_head``, Whisper's ``proj_out``) and layers
whose input size is not a multiple of 4 (none in the families here); the weights are packed
from float32 (a 16-bit model is upcast, the layer computes in float32 and casts back).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from .linear import QuantizedLinear

logger = logging.getLogger("lightpipe")

__all__ = ["DynamicInt8Linear", "quantize_dynamic_int8"]


def _engine() -> str:
    """The quantized engine the kernels run on: FBGEMM-backed 'x86' (or 'fbgemm')."""
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm"):
        if name in engines:
            if torch.backends.quantized.engine != name:
                torch.backends.quantized.engine = name
            return name
    raise RuntimeError("quantization='int8-dynamic' needs torch's FBGEMM quantized engine, which "
                       f"this torch build lacks (engines: {engines}). Use 'int8' (weight-only).")


class DynamicInt8Linear(QuantizedLinear):
    """y = x W^T + b, W as int8 codes with one scale per output row, x quantized per call."""

    def __init__(self, in_features: int, out_features: int, packed, codes: torch.Tensor,
                 scales: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        # codes and scales kept to unpack / inspect, not read per call; the bias is in _packed
        self._hold(in_features, out_features, None, codes=codes, scales=scales)
        self._packed = packed  # FBGEMM's prepacked weight and float32 bias (a ScriptObject)
        self._bias = bias
        self._dtype = dtype

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        pass  # always float32 around the int8 product

    def _codes(self) -> torch.Tensor:
        return self.codes

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "DynamicInt8Linear":
        _engine()
        dtype = weight.dtype
        weight = weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        codes = (weight / scales.unsqueeze(1)).round().clamp(-127, 127).to(torch.int8).contiguous()
        float_bias = None if bias is None else bias.detach().float().contiguous()
        with warnings.catch_warnings():  # the quantized-tensor constructors warn of deprecation
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(
                codes, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0)
            packed = torch.ops.quantized.linear_prepack(qweight, float_bias)
        return cls(weight.shape[1], weight.shape[0], packed, codes, scales, float_bias, dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype = inputs.dtype
        x = inputs if dtype == torch.float32 else inputs.float()
        if not x.is_contiguous():
            x = x.contiguous()
        out = torch.ops.quantized.linear_dynamic(x, self._packed, True)
        return out if out.dtype == dtype else out.to(dtype)

    def dense_weight(self) -> torch.Tensor:
        return self.codes.float() * self.scales.unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self._bias is not None}, int8 weights and activations")


def quantize_dynamic_int8(model: nn.Module, skip: tuple[str, ...] = (),
                          include_lm_head: bool = False) -> nn.Module:
    """Swap ``model``'s linear layers (``nn.Linear`` and lightpipe's ``Linear``) for
    ``DynamicInt8Linear`` in place; the model returned. The output projection stays in float
    unless ``include_lm_head``; names containing a ``skip`` fragment too."""
    from . import QuantizationError, QuantizationSpec, output_projections, replace_module

    _engine()
    heads = output_projections(model)
    swapped, kept = 0, []
    with torch.no_grad():
        for name, module in list(model.named_modules()):
            if not isinstance(module, nn.Linear):
                continue
            if (name in heads and not include_lm_head) or any(f and f in name for f in skip):
                continue
            weight = module.weight
            if weight.is_meta or weight.device.type != "cpu":
                raise QuantizationError(
                    f"quantization='int8-dynamic': layer {name} is on {weight.device}; the int8 "
                    "kernels used here run on the CPU. Load on the CPU to quantize.")
            if module.in_features % 4:
                kept.append(name)
                continue
            replace_module(model, name, DynamicInt8Linear.from_weight(weight, module.bias))
            swapped += 1
    if kept:
        logger.info("quantization int8-dynamic: %d linear layers kept in float (input size not a "
                    "multiple of 4): %s", len(kept), ", ".join(kept[:6]))
    model.quantization = QuantizationSpec("int8-dynamic", include_lm_head=include_lm_head,
                                          skip=tuple(skip))
    refresh = getattr(model, "end_decode", None)
    if callable(refresh):
        refresh()  # a decode plan built before holds the float layers
    return model
