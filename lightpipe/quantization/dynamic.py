"""Dynamic int8 quantization: int8 weights (one scale per output row, computed once) times
int8 activations (quantized per call, one scale and offset per row), for compute-bound work:
encoders (BERT-like embedders, Whisper's encoder), prefill and batched decoding.

The kernel is lightpipe's own (``kernels.dyn8_mm`` / ``dyn8v_mm``) wherever its C library
builds: every product, on the AMX tiles or from the weight in VNNI order (see DYN8_ROWS_AMX,
DYN8_ROWS_VNNI); else torch's own ``quantized::linear_dynamic`` (FBGEMM, the ``x86`` quantized
engine) with the passes below: it quantizes the activations, multiplies in int8 with int32 accumulation, and writes float32. Both
compute the same numbers, bit for bit (dyn8 reproduces FBGEMM's per-call scale and its float
operations). Measured on this AVX2 machine (no VNNI; notes of issue 18): about 2x
float32's MKL GEMM on MiniLM- and Whisper-tiny-sized layers, where ``torch._int_mm`` (its CPU
kernel is not vectorised for int8 here) was 30x slower than float32 and oneDNN's dynamic
linear matched FBGEMM. On a CPU with VNNI, FBGEMM uses it.

Accuracy (issue 18, D18's notes). FBGEMM quantizes the whole activation tensor with one
scale: a few rows with large values (BERT's special tokens, rows of 28 where the median row
peaks at 4.5 in MiniLM's FFN input) stretch it for every row, and with torch's default
``reduce_range`` the codes are 7-bit. Both are fixed here (real all-MiniLM-L6-v2, 1,000
sentences: min cosine to float32 0.920 -> 0.991), at the cost of a few elementwise passes
(~10% of the per-tensor path's time on MiniLM batches at 1 thread, busy machine):

- per-row activation ranges: each row is mapped onto [0, 1] by its own minimum and span
  (``x' = (x - low) / span``) before the kernel, whose per-tensor range is then [0, 1] for
  every row: 256 levels per row. The product is mapped back with ``y = span * (x' W^T) +
  low * rowsum(W) + b`` (``rowsum`` of the dequantized weight, kept; the bias is added here,
  not packed), in two in-place passes over the kernel's output. ``amin`` and ``amax`` are
  separate calls: ``torch.aminmax`` along rows is 10-70x slower on the CPU.
- 8-bit activation codes with 7-bit weight codes (``WEIGHT_CODE_MAX`` = 63; one scale per
  output row): the AVX2 int8 instruction (vpmaddubsw) adds two u8 x s8 products into a
  saturating int16, and 255 * 64 * 2 < 32767. The usual way out, 7-bit activations
  (``reduce_range``), costs more accuracy than 7-bit weights do (measured: min cosine 0.989
  against 0.992 on MiniLM); 8-bit both saturates (0.914).

Projections reading the same input (q/k/v, gate/up) are fused into one kernel call
(``fuse.FusedProjection``): one row normalisation and one activation quantization instead of
three, and a wider product. A group whose parts turn out to read different inputs splits
itself back into separate layers on first use.

Layers left in float: the output projection (``lm_head``, Whisper's ``proj_out``) and layers
whose input size is not a multiple of 4 (none in the families here); the weights are packed
from float32 (a 16-bit model is upcast, the layer computes in float32 and casts back).
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from . import dynamic_passes, kernels
from .fuse import FusedPart, FusedProjection, install
from .linear import QuantizedLinear

logger = logging.getLogger("lightpipe")

__all__ = ["DynamicInt8Linear", "quantize_dynamic_int8"]

# 7-bit weight codes, so that 8-bit activation codes never saturate AVX2's int16 pair sums
WEIGHT_CODE_MAX = 63
# projections that read one input, fused into one kernel call (not in cross-attention, whose
# keys and values read the encoder's output)
FUSED_GROUPS = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
_CROSS = ("encoder_attn", "crossattention", "cross_attn")


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


# From this many rows on, a CPU with AMX (Intel Xeon from Sapphire Rapids on) multiplies through
# oneDNN's int8 kernel, which runs on the AMX tiles: the product alone 2.4-4x FBGEMM's speed at
# 1,024 rows of 384-1,536 inputs, a whole layer (with the row passes) 1.3-1.7x at 1,500 rows,
# 1-1.3x at 128, mixed at 32-64, slower at 8 (a 2-core Xeon with AMX; same numbers within
# float rounding, ~3e-7 of the largest output). Its
# weight is packed the first time a layer meets so many rows (a decoder's layers, fed a few
# rows a step, keep only FBGEMM's). The second copies are capped at ONEDNN_BUDGET bytes a
# process (a decoder prefilling a long prompt would otherwise double its int8 weights: the
# layers past the cap stay on FBGEMM). LIGHTPIPE_ONEDNN=0 keeps FBGEMM everywhere.
ONEDNN_FROM_ROWS = 128
# lightpipe's own C product (kernels.dyn8_mm / dyn8v_mm: the same codes, integer sums and float
# operations as FBGEMM and the passes here, bit for bit; no per-call Python passes) takes every
# product where its library builds (bench/RESULTS.md has the way there: a few rows first, then
# every product with AMX, then without).
# With the AMX tiles (kernels.amx_usable(): dyn8 multiplies 4 rows or more on them) every
# product: against the FBGEMM path / oneDNN's AMX kernel (1 thread, weights in cache, layers of
# MiniLM, Whisper tiny, SmolLM2, Qwen2.5-0.5B): 4-64 rows 2.0-3.4x / -, 65-512 rows 2.0-3.5x /
# 1.0-2.2x, 1,024-4,096 rows 2.2-3.1x / 1.1-2.0x; only an output layer's size (49k x 576) at
# 1,024+ rows is 0.89-0.93x oneDNN's, a shape no model here feeds so many rows.
DYN8_ROWS_AMX = 1 << 40
# Without AMX (every other x86-64 CPU with AVX2, where the C library builds): every product,
# from the weight in VNNI order (kernels.dyn8_pack: blocks of 16 rows with AVX-512, 8 with
# AVX2), which replaces the layer's row-order codes at its first product: one int8 copy, and
# FBGEMM's is never made. Against the FBGEMM path (weights in cache; MiniLM, Whisper, SmolLM2,
# Qwen layers), 1 thread: AVX-512 VNNI (this Xeon with oneDNN's AMX kernel off: what Zen 4/5
# or Ice Lake run) 1-8 rows 1.2-3.6x, 16 rows 1.3-2.1x, 64-512 rows 1.0-1.8x, 1,500-4,096 rows
# 0.92-1.4x (both near the VNNI units' peak there), 2 threads 0.93-2.7x; plain AVX2 (the
# library built without AVX-512 / AVX-VNNI, FBGEMM_ENABLE_INSTRUCTIONS=AVX2: Zen 2/3, Skylake
# client) 1 row 1.3-3.4x, 4-8 rows 1.06-2.3x, 16-64 rows 1.07-1.5x, 256-1,500 rows 1.03-1.21x,
# 2 threads 0.93-3.9x. Against dyn8's row layout 1.3-3.2x from 4 rows (1 row: the same).
DYN8_ROWS_VNNI = 1 << 40
_amx: bool | None = None
ONEDNN_BUDGET = 512 * 1024 * 1024
_onednn_state: bool | None = None
_onednn_bytes = 0  # the second copies alive now


def amx_takes(in_features: int, out_features: int) -> bool:
    """Whether dyn8's AMX path takes this layer's products (AMX tiles, inputs a multiple of 64,
    at least 16 outputs)."""
    global _amx
    if _amx is None:
        _amx = kernels.available() and kernels.amx_usable()
    return _amx and in_features % 64 == 0 and out_features >= 16


def vnni_order() -> bool:
    """Whether layers the AMX path does not take use the VNNI-order form (see DYN8_ROWS_VNNI):
    wherever the C library runs."""
    return kernels.available()


def dyn8_rows(in_features: int, out_features: int) -> int:
    """The most rows a layer's product sends to dyn8 (where the C library runs: ``_dyn8``):
    DYN8_ROWS_AMX where the AMX path takes it, else DYN8_ROWS_VNNI (the VNNI-order form)."""
    return DYN8_ROWS_AMX if amx_takes(in_features, out_features) else DYN8_ROWS_VNNI


def _release(counter: str, size: int) -> None:
    globals()[counter] -= size


def _budgeted_copy(layer: nn.Module, attribute: str, counter: str, budget: int, size: int, make):
    """A layer's second weight copy ``make()`` (oneDNN's), made on first need while the
    process's copies of that kind (bytes in the module global ``counter``) stay within
    ``budget``; else None, remembered. A copy's bytes come back when its layer goes."""
    packed = layer.__dict__.get(attribute)
    if packed is None:
        if globals()[counter] + size > budget:
            packed = False
        else:
            packed = make()
            globals()[counter] += size
            weakref.finalize(layer, _release, counter, size)
        setattr(layer, attribute, packed)
    return None if packed is False else packed


def onednn_usable() -> bool:
    """Whether large products go to oneDNN's AMX int8 kernel (see ONEDNN_FROM_ROWS)."""
    global _onednn_state
    if _onednn_state is None:
        switch = os.environ.get("LIGHTPIPE_ONEDNN", "1").strip().lower()
        _onednn_state = (switch not in ("0", "false", "no", "off")
                         and "amx_int8" in kernels.cpu_flags()
                         and "onednn" in torch.backends.quantized.supported_engines)
    return _onednn_state


def unit_inverse(span: torch.Tensor) -> torch.Tensor:
    """1 / span, raised by float steps where span times it falls short of 1 (kernels.c's
    dyn8_inverse): each row's largest value then maps to 1 exactly (after the clamp), so the
    product's per-call activation scale is 1 / 255 whatever rows come along - a row's numbers
    do not depend on the other rows of its product."""
    inverse = span.reciprocal()
    short = span * inverse < 1
    while bool(short.any()):
        inverse = torch.where(short, torch.nextafter(inverse, torch.full_like(inverse, float("inf"))),
                              inverse)
        short = span * inverse < 1
    return inverse


def _prepack(codes: torch.Tensor, scales: torch.Tensor, engine: str | None = None):
    """The engine's prepacked weight (a ScriptObject linear_dynamic takes, whichever engine is
    set when it runs) of int8 codes with one scale per row."""
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():  # the quantized-tensor constructors warn of deprecation
        warnings.simplefilter("ignore")
        try:
            if engine is not None:
                torch.backends.quantized.engine = engine
            qweight = torch._make_per_channel_quantized_tensor(
                codes, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0)
            return torch.ops.quantized.linear_prepack(qweight, None)
        finally:
            torch.backends.quantized.engine = previous


class DynamicInt8Linear(QuantizedLinear):
    """y = x W^T + b, W as int8 codes with one scale per output row, x quantized per call and
    per row (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, packed, codes: torch.Tensor,
                 scales: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        # codes and scales kept to unpack / inspect, not read per call
        self._hold(in_features, out_features, None, codes=codes, scales=scales)
        # FBGEMM's prepacked weight, without bias (a ScriptObject); None until a product needs
        # it - a layer whose every product dyn8 takes never makes this second copy
        self._packed = packed
        self._bias = bias
        # sum of each output row of the dequantized weight: the rows' offsets times it
        self._row_sums = (codes.float() * scales.unsqueeze(1)).sum(1).unsqueeze(0)
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
        scales = (weight.abs().amax(dim=1) / WEIGHT_CODE_MAX).clamp(min=1e-12)
        codes = (weight / scales.unsqueeze(1)).round().clamp(-WEIGHT_CODE_MAX, WEIGHT_CODE_MAX)
        codes = codes.to(torch.int8).contiguous()
        float_bias = None if bias is None else bias.detach().float().contiguous()
        rows, columns = weight.shape
        # FBGEMM's copy is made by the first product dyn8 does not take (none where AMX takes
        # them all; a decoder fed short prompts without AMX: none either)
        return cls(columns, rows, None, codes, scales, float_bias, dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # inference only, as the kernel (it has no backward)
            return self._forward(inputs)

    def forward_act(self, inputs: torch.Tensor, act) -> torch.Tensor:
        """``act(self(inputs))``; torch's erf GELU fused into the C pass after the product
        (``dynamic_passes``) where it runs."""
        with torch.no_grad():
            if act is F.gelu:
                return self._forward(inputs, gelu=True)
            return act(self._forward(inputs))

    def _forward(self, inputs: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        dtype, shape = inputs.dtype, inputs.shape
        x = inputs.reshape(-1, shape[-1])
        if x.dtype != torch.float32:
            x = x.float()
        packed = self._dyn8(x)
        if packed is not False:  # the whole product in C (kernels.dyn8_mm), FBGEMM's numbers
            if packed is not None:
                out = kernels.dyn8v_mm(x.contiguous(), packed, self.out_features, self.scales,
                                       self._row_sums_flat(), self._bias)
            else:
                out = kernels.dyn8_mm(x.contiguous(), self.codes, self.scales,
                                      self._row_sums_flat(), self._bias)
            if gelu:
                out = F.gelu(out)
            out = out.reshape(*shape[:-1], self.out_features)
            return out if out.dtype == dtype else out.to(dtype)
        native = dynamic_passes.available()  # the same passes in C: two over x, one over y
        if native:
            unit, offset, span = dynamic_passes.unit_rows(x.contiguous())
        else:
            low = x.amin(-1, keepdim=True)
            span = (x.amax(-1, keepdim=True) - low).clamp_(min=1e-30)
            inverse = unit_inverse(span)
            # each row onto [0, 1], its largest value exactly 1: the kernel's one range then fits
            # every row (256 levels) and is the same whatever rows come along
            unit = (x - low).mul_(inverse).clamp_(max=1.0)
            offset = low.mul_(inverse)
        packed = self._packed
        if packed is None:  # made on first need (LIGHTPIPE_AMX=0 after loading, a forced path)
            packed = self._packed = _prepack(self.codes, self.scales)
        if x.shape[0] >= ONEDNN_FROM_ROWS and onednn_usable():
            second = self._onednn_packed()  # None past the budget
            if second is not None:
                packed = second
        out = torch.ops.quantized.linear_dynamic(unit, packed, False)
        del unit
        # back in place: (out + low / span * rowsum) * span + bias (a fresh output tensor costs
        # page faults on large batches)
        if native:
            dynamic_passes.out_rows(out, offset, self._row_sums, span, self._bias, gelu)
        else:
            out.addcmul_(offset, self._row_sums)
            if self._bias is not None:
                torch.addcmul(self._bias, out, span, out=out)
            else:
                out.mul_(span)
            if gelu:
                out = F.gelu(out)
        out = out.reshape(*shape[:-1], self.out_features)
        return out if out.dtype == dtype else out.to(dtype)

    def _dyn8(self, x: torch.Tensor):
        """Whether this product goes to dyn8 (see dyn8_rows): False if not, else the VNNI-order
        form it multiplies with (None: the codes' own rows)."""
        if x.device.type != "cpu" or self.in_features % 4 or not kernels.available():
            return False
        if x.shape[0] > dyn8_rows(self.in_features, self.out_features):
            return False
        return self.vnni_form()

    def _row_sums_flat(self) -> torch.Tensor:
        return self._row_sums.view(-1)

    def vnni_form(self) -> torch.Tensor | None:
        """The weight in VNNI order for dyn8v, or None where the AMX path takes this layer or
        the build has no VNNI-order kernel. Made at the first need, it replaces the row-order
        codes (buffer ``vnni_codes`` for ``codes``; ``self.codes`` is then unpacked on access,
        for the rare readers: FBGEMM's copy when forced, dense_weight)."""
        buffers = self._buffers
        packed = buffers.get("vnni_codes")
        if packed is not None or amx_takes(self.in_features, self.out_features) or not vnni_order():
            return packed
        codes = buffers.get("codes")
        if codes is None:  # another thread converted it meanwhile
            return buffers["vnni_codes"]
        packed = kernels.dyn8_pack(codes)
        buffers["vnni_codes"] = packed  # before the rows go: a concurrent reader finds one
        buffers.pop("codes", None)
        return packed

    def __getattr__(self, name: str):
        if name == "codes":
            packed = self.__dict__.get("_buffers", {}).get("vnni_codes")
            if packed is not None:
                return kernels.dyn8_unpack(packed, self.out_features, self.in_features)
        return super().__getattr__(name)

    def _onednn_packed(self):
        """oneDNN's prepacked weight, made on first need while ONEDNN_BUDGET allows (else
        None, remembered: this layer stays on FBGEMM)."""
        return _budgeted_copy(self, "_packed_onednn", "_onednn_bytes", ONEDNN_BUDGET,
                              self.codes.numel(), lambda: _prepack(self.codes, self.scales, "onednn"))

    def dense_weight(self) -> torch.Tensor:
        return self.codes.float() * self.scales.unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self._bias is not None}, int8 weights and activations (per-row ranges)")


class _FusedDynamic(FusedProjection):
    """A fused group that splits itself back into separate layers the first time its parts
    read different inputs (attention whose queries, keys and values come from different
    tensors: DETR-like positions, SAM's two-way attention, a classifier's first-row query):
    the fused product is right there too, but computes every part for each input."""

    def __init__(self, layer: DynamicInt8Linear, owner: nn.Module, names: tuple[str, ...]):
        super().__init__(layer)
        self.__dict__["_owner"] = owner  # not a submodule (the owner holds this one)
        self._names = names

    def product(self, inputs: torch.Tensor, last: bool) -> torch.Tensor:
        if self._input is not None and self._input is not inputs:
            self._split()
        return super().product(inputs, last)

    def _split(self) -> None:
        owner, weight, bias = self._owner, self.layer.dense_weight(), self.layer._bias
        for name in self._names:
            part = getattr(owner, name)
            if isinstance(part, FusedPart) and part.fused is self:
                piece = None if bias is None else bias[part.start:part.stop]
                # codes on the 7-bit grid already: quantizing them again gives the same codes
                alone = DynamicInt8Linear.from_weight(weight[part.start:part.stop], piece)
                setattr(owner, name, alone)
        for attribute, module in list(owner.named_children()):
            if module is self:
                delattr(owner, attribute)


def _fuse(model: nn.Module) -> int:
    """Fuse each module's dynamic q/k/v and gate/up projections into one layer (parts kept
    under their names as ``fuse.FusedPart``); cross-attention left as it is. Returns the
    number of groups."""
    count = 0
    parents = [(name, module) for name, module in model.named_modules()
               if any(hasattr(module, names[0]) for names in FUSED_GROUPS)
               and not any(word in name.split(".")[-1] for word in _CROSS)]
    for _, module in parents:
        for names in FUSED_GROUPS:
            layers = [getattr(module, name, None) for name in names]
            if not all(type(layer) is DynamicInt8Linear for layer in layers):
                continue
            first = layers[0]
            if (any(layer.in_features != first.in_features for layer in layers)
                    or len({layer._bias is None for layer in layers}) > 1):
                continue
            bias = None if first._bias is None else torch.cat([layer._bias for layer in layers])
            # the codes are already on the 7-bit grid: quantizing them again gives the same codes
            install(module, names, layers, _FusedDynamic(DynamicInt8Linear.from_weight(
                torch.cat([layer.dense_weight() for layer in layers]), bias), module, names))
            count += 1
    return count


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
    _fuse(model)
    if kept:
        logger.info("quantization int8-dynamic: %d linear layers kept in float (input size not a "
                    "multiple of 4): %s", len(kept), ", ".join(kept[:6]))
    model.quantization = QuantizationSpec("int8-dynamic", include_lm_head=include_lm_head,
                                          skip=tuple(skip))
    refresh = getattr(model, "end_decode", None)
    if callable(refresh):
        refresh()  # a decode plan built before holds the float layers
    return model
