"""Weight-only quantized linear layers, computed by torch's own CPU kernels.

- ``Int4Linear``: 4-bit codes in affine groups along the input dimension, packed in tiles of
  32 rows (``pack_int4``: the layout ``torch.ops.aten._convert_weight_to_int4pack_for_cpu``
  writes on an AVX2 CPU), multiplied by lightpipe's C kernel or by torch's
  ``_weight_int4pack_mm_for_cpu`` (the kernel gpt-fast and torchao use on the CPU; given a
  repacked copy where torch's layout differs). The kernel's
  convention, checked in tests: ``w = (q - 8) * scale + zero`` per (row, group), q in 0..15,
  with ``scales_and_zeros`` of shape (in / group, out, 2). Group sizes 32, 64, 128, 256; the
  output size a multiple of 16.
- ``Int8Linear``: int8 codes with one scale per output row, ``_weight_int8pack_mm``.

Both kernels take activations and scales of one dtype. Their fast (vectorised) paths are the
16-bit ones: in bfloat16 they read a weight 4-8x faster than in float32 on an AVX2 CPU (see
notes), so a layer keeps ``compute_dtype`` (bfloat16 unless asked otherwise) and converts its
input and output around the kernel. float32 is exact (used to check GGUF re-layouts), and slow.

Products of up to ``kernels.MAX_ROWS`` rows (decode) go instead, when it could be built, to
lightpipe's own AVX2 C kernel (``kernels.py``): it reads the same codes and scales (float32 or
bfloat16), by default with x quantized to int16 per block of 32 inputs and integer dot products
(error ~1e-5 of the float32 product's largest output; ``LIGHTPIPE_EXACT_ACTIVATIONS=1``: float32
x, exact), faster than torch's bfloat16 path. A layer whose ``int8_activations`` is set (opt-in:
``lightpipe.quantization.set_int8_activations``) has the kernel quantize x to int8 instead (as
llama.cpp does; faster still, not exact); without the kernel the flag changes nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from ..weights import release_pages
from . import kernels

INT4_GROUP_SIZES = (32, 64, 128, 256)


def int4_fits(out_features: int, in_features: int, group_size: int) -> bool:
    """Whether the int4 kernel takes an (out, in) weight in groups of ``group_size`` (an
    output size not a multiple of 16 is padded with zero rows)."""
    return group_size in INT4_GROUP_SIZES and in_features % group_size == 0


# From this many input rows on (prefill, batches), a product dequantizes the weight and runs
# as one float32 GEMM (oneDNN): the int4 / int8 kernels go row by row, ~10x slower there.
DENSE_FROM_ROWS = 16


def pad_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Zero rows appended up to a multiple of 32: the int4 kernel packs tiles of 32 rows (a
    16-row tail would take another layout, which ``unpack_int4`` does not read)."""
    extra = -tensor.shape[0] % 32
    return torch.cat([tensor, tensor.new_zeros(extra, *tensor.shape[1:])]) if extra else tensor


QUANTIZE_ROWS = 4096  # rows of a float weight quantized at a time


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """(out, in) codes 0..15 -> the packed uint8 layout the C kernel and ``unpack_int4`` read,
    padded to 32 rows: each tile of 32 rows stored (in, 16) bytes, byte [k, d] holding row d
    (low nibble) and row d + 16 (high). This is what torch's
    ``_convert_weight_to_int4pack_for_cpu`` writes on an AVX2 CPU; on an AVX-512 (or a
    non-x86) CPU torch writes another layout, so lightpipe packs its codes itself and gives
    torch's kernel its own copy only where the two differ (``Int4Linear._torch_packed``)."""
    codes = pad_rows(codes)
    rows, cols = codes.shape
    tiles = codes.to(torch.uint8).view(rows // 32, 32, cols)
    packed = tiles[:, :16].bitwise_or(tiles[:, 16:] << 4)
    return packed.transpose(1, 2).reshape(rows, cols // 2).contiguous()


_torch_layout_same: bool | None = None


def torch_int4_layout_same() -> bool:
    """Whether torch's int4 packing on this CPU (its ATen CPU capability) is ``pack_int4``'s."""
    global _torch_layout_same
    if _torch_layout_same is None:
        generator = torch.Generator().manual_seed(0)  # rows and columns all different
        codes = torch.randint(0, 16, (64, 64), dtype=torch.int32, generator=generator)
        theirs = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        _torch_layout_same = torch.equal(theirs, pack_int4(codes))
    return _torch_layout_same


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The kernel's packed layout back to (rows, in) codes 0..15 as uint8: each tile of 32 rows
    is stored (in, 16) bytes, byte [k, d] holding row d (low nibble) and row d + 16 (high)."""
    rows, half = packed.shape
    tiles = packed.view(rows // 32, half * 2, 16)
    return torch.cat([tiles & 0x0F, tiles >> 4], dim=2).transpose(1, 2).reshape(rows, half * 2)


def dense_product(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    from ..models.linear import linear

    return linear(inputs if inputs.dtype == torch.float32 else inputs.float(), weight)


class QuantizedLinear(nn.Module):
    """Common part: ``bias``, the in/out sizes, and ``parts()`` / ``forward_add`` as
    ``models.linear.Linear`` has them (decode plans call ``linear(x, *parts)``)."""

    in_features: int
    out_features: int
    _scale_buffer = ""  # the float buffer whose dtype the kernel computes in
    # Opt-in (``set_int8_activations``): products of the C kernel quantize x to int8 per block
    # of 32 inputs and use integer dot products (faster, not float32-exact). A plain
    # attribute: not in the state dict.
    int8_activations = False

    def activations(self) -> str:
        """The activations of this layer's C-kernel products ("int16" by default; see
        ``kernels.layer_activations``)."""
        return kernels.layer_activations(self.int8_activations)

    def _hold(self, in_features: int, out_features: int, bias: torch.Tensor | None,
              **buffers: torch.Tensor) -> None:
        """The sizes, the codes and scales as buffers, and the float bias (a frozen parameter)."""
        self.in_features, self.out_features = in_features, out_features
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @property
    def compute_dtype(self) -> torch.dtype:
        return getattr(self, self._scale_buffer).dtype

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        buffer = getattr(self, self._scale_buffer)
        if buffer.dtype != dtype:
            setattr(self, self._scale_buffer, buffer.to(dtype))

    def parts(self) -> tuple:
        return self, None, None

    def forward_add(self, inputs: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return residual + self(inputs)

    def _finish(self, out: torch.Tensor, dtype: torch.dtype, shape,
                with_bias: bool = False) -> torch.Tensor:
        if out.shape[-1] != self.out_features:  # rows padded to a multiple of 16
            out = out[:, :self.out_features]
        out = out.reshape(*shape[:-1], self.out_features)
        if self.bias is not None and not with_bias:
            out = out + self.bias.to(out.dtype)
        return out if out.dtype == dtype else out.to(dtype)

    def _kernel_bias(self) -> torch.Tensor | None:
        """The bias the C kernel adds (float32 only; another dtype is added by ``_finish``)."""
        bias = self.bias
        return bias if bias is not None and bias.dtype == torch.float32 else None

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) float32 weight these codes stand for (for inspection and tests)."""
        return self.float_weight()[:self.out_features]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, compute_dtype={self.compute_dtype}")


class Int4Linear(QuantizedLinear):
    """y = x W^T + b with W in 4-bit affine groups (see the module docstring)."""

    _scale_buffer = "scales_and_zeros"

    def __init__(self, in_features: int, out_features: int, group_size: int,
                 packed: torch.Tensor, scales_and_zeros: torch.Tensor,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self.group_size = group_size
        self._hold(in_features, out_features, bias, packed=packed, scales_and_zeros=scales_and_zeros)

    def _codes(self) -> torch.Tensor:
        return self.packed

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                   group_size: int, bias: torch.Tensor | None = None,
                   compute_dtype: torch.dtype = torch.bfloat16) -> "Int4Linear":
        """From (out, in) codes 0..15 and (out, in / group) scales and zeros, meaning
        ``w = (q - 8) * scale + zero``."""
        out_features, in_features = codes.shape
        packed = pack_int4(codes)
        scales, zeros = pad_rows(scales), pad_rows(zeros)
        scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()
        return cls(in_features, out_features, group_size, packed,
                   scales_and_zeros.to(compute_dtype), bias)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, group_size: int, bias: torch.Tensor | None = None,
                    compute_dtype: torch.dtype = torch.bfloat16) -> "Int4Linear":
        """Quantize an (out, in) float weight: per group, min..max mapped onto 0..15."""
        out_features, in_features = weight.shape
        padded = out_features + -out_features % 32  # the kernel's tiles of 32 rows
        packed = torch.empty(padded, in_features // 2, dtype=torch.uint8)
        scales = torch.zeros(padded, in_features // group_size)
        zeros = torch.zeros_like(scales)
        # QUANTIZE_ROWS rows at a time, from float32 copy to packed codes, in place: an 8B
        # model's output projection is 2.1 GB in float32 (its codes alone 0.5 GB); each
        # chunk's checkpoint pages are dropped once packed (release_pages)
        step = max(32, QUANTIZE_ROWS // 32 * 32)  # whole tiles per chunk
        for start in range(0, out_features, step):
            part = weight[start:start + step]
            groups = part.detach().to(torch.float32, copy=True)
            groups = groups.reshape(groups.shape[0], -1, group_size)
            low, high = groups.amin(dim=-1), groups.amax(dim=-1)
            scale = ((high - low) / 15).clamp(min=1e-8)  # a constant group: any scale, codes 0
            done = groups.sub_(low.unsqueeze(-1)).div_(scale.unsqueeze(-1)).round_().clamp_(0, 15)
            codes = pack_int4(done.reshape(-1, in_features).to(torch.uint8))
            del groups, done
            packed[start:start + codes.shape[0]] = codes
            scales[start:start + part.shape[0]], zeros[start:start + part.shape[0]] = scale, low + 8 * scale
            release_pages(part)
        scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()
        return cls(in_features, out_features, group_size, packed,
                   scales_and_zeros.to(compute_dtype), bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype, shape = inputs.dtype, inputs.shape
        x = inputs.reshape(-1, self.in_features)
        if (self.scales_and_zeros.dtype in (torch.float32, torch.bfloat16)
                and self.packed.is_contiguous() and self.scales_and_zeros.is_contiguous()
                and kernels.usable(x, activations := self.activations())):
            bias = self._kernel_bias()
            out = kernels.int4_mm(x.to(torch.float32).contiguous(), self.packed,
                                  self.scales_and_zeros, self.group_size, self.out_features, bias,
                                  activations=activations)
            return self._finish(out, dtype, shape, bias is not None)
        if x.shape[0] >= DENSE_FROM_ROWS and x.device.type == "cpu":
            return self._finish(dense_product(x, self.float_weight()), dtype, shape)
        if x.dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self._torch_packed(), self.group_size,
                                                         self.scales_and_zeros)
        return self._finish(out, dtype, shape)

    def _torch_packed(self) -> torch.Tensor:
        """The codes in the layout of torch's int4 kernel on this CPU: ``packed`` itself on an
        AVX2 CPU, else a copy repacked by torch once (kept, not saved) for this fallback path."""
        if torch_int4_layout_same():
            return self.packed
        cached = getattr(self, "_torch_copy", None)
        if cached is None or cached[0] is not self.packed:
            codes = unpack_int4(self.packed).to(torch.int32)
            convert = torch.ops.aten._convert_weight_to_int4pack_for_cpu
            cached = (self.packed, convert(codes.contiguous(), 1))
            self._torch_copy = cached
        return cached[1]

    def float_weight(self) -> torch.Tensor:
        """The (padded rows, in) weight in float32, dequantized from the packed codes."""
        codes = unpack_int4(self.packed).view(self.packed.shape[0], -1, self.group_size)
        scales, zeros = self.scales_and_zeros.float().transpose(0, 1).unbind(-1)
        weight = (codes.float() - 8).mul_(scales.unsqueeze(-1)).add_(zeros.unsqueeze(-1))
        return weight.view(self.packed.shape[0], self.in_features)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bits=4, group_size={self.group_size}"


def _int8_codes(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes (out, in) and scales (out, in / group_size) of a float weight, from
    float32 copies of QUANTIZE_ROWS rows at a time (as int4), each chunk's checkpoint pages
    released once coded."""
    out_features, in_features = weight.shape
    codes = torch.empty(out_features, in_features, dtype=torch.int8)
    scales = torch.empty(out_features, in_features // group_size)
    for start in range(0, out_features, QUANTIZE_ROWS):
        part = weight[start:start + QUANTIZE_ROWS]
        groups = part.detach().to(torch.float32, copy=True).view(part.shape[0], -1, group_size)
        scale = (groups.abs().amax(dim=2) / 127).clamp(min=1e-12)
        done = groups.div_(scale.unsqueeze(2)).round_().clamp_(-127, 127)
        codes[start:start + part.shape[0]] = done.view(-1, in_features).to(torch.int8)
        scales[start:start + part.shape[0]] = scale
        release_pages(part)
    return codes, scales


class Int8Linear(QuantizedLinear):
    """y = x W^T + b with W as int8 codes times one scale per output row (``scales`` of shape
    (out,)), or one per group of ``group_size`` inputs ((out, in / group): GGUF's Q8_0 blocks
    exactly; only where the C kernel runs, as torch's int8 kernel has no groups)."""

    _scale_buffer = "scales"

    @property
    def group_size(self) -> int | None:
        return self.in_features // self.scales.shape[1] if self.scales.dim() == 2 else None

    @classmethod
    def from_groups(cls, codes: torch.Tensor, scales: torch.Tensor,
                    bias: torch.Tensor | None = None,
                    compute_dtype: torch.dtype = torch.float32) -> "Int8Linear":
        """From (out, in) int8 codes and (out, in / group) scales: ``w = q * scale``."""
        out_features, in_features = codes.shape
        return cls(in_features, out_features, codes.contiguous(),
                   scales.to(compute_dtype).contiguous(), bias)

    @classmethod
    def grouped_from_weight(cls, weight: torch.Tensor, group_size: int = 32,
                            bias: torch.Tensor | None = None,
                            compute_dtype: torch.dtype = torch.float32) -> "Int8Linear":
        """Quantize an (out, in) float weight symmetrically, one scale per group of inputs."""
        codes, scales = _int8_codes(weight, group_size)
        return cls.from_groups(codes, scales, bias, compute_dtype)

    def __init__(self, in_features: int, out_features: int, codes: torch.Tensor,
                 scales: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self._hold(in_features, out_features, bias, codes=codes, scales=scales)

    def _codes(self) -> torch.Tensor:
        return self.codes

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    compute_dtype: torch.dtype = torch.bfloat16) -> "Int8Linear":
        """Quantize an (out, in) float weight symmetrically, one scale per row."""
        out_features, in_features = weight.shape
        codes, scales = _int8_codes(weight, in_features)  # one group: the whole row
        return cls(in_features, out_features, codes, scales[:, 0].to(compute_dtype), bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype, shape = inputs.dtype, inputs.shape
        x = inputs.reshape(-1, self.in_features)
        if (self.scales.dtype in (torch.float32, torch.bfloat16) and self.codes.is_contiguous()
                and self.scales.is_contiguous()
                and kernels.usable(x, activations := self.activations())):
            bias = self._kernel_bias()
            out = kernels.int8_mm(x.to(torch.float32).contiguous(), self.codes, self.scales, bias,
                                  activations=activations)
            return self._finish(out, dtype, shape, bias is not None)
        if x.shape[0] >= DENSE_FROM_ROWS and x.device.type == "cpu":
            return self._finish(dense_product(x, self.float_weight()), dtype, shape)
        if self.scales.dim() == 2:  # groups: no torch kernel takes them
            return self._finish(dense_product(x, self.float_weight()), dtype, shape)
        if x.dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        out = torch.ops.aten._weight_int8pack_mm(x, self.codes, self.scales)
        return self._finish(out, dtype, shape)

    def float_weight(self) -> torch.Tensor:
        if self.scales.dim() == 2:
            scales = self.scales.float().repeat_interleave(self.group_size, 1)
            return self.codes.float().mul_(scales)
        return self.codes.float().mul_(self.scales.float().unsqueeze(1))

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.group_size else ""
        return super().extra_repr() + ", bits=8" + group


# Int5Linear's 5th bits: bit t of byte j of a pair of blocks' int64 is value 8 g + j of block h
# of the pair, t = INT5_BIT[h][g] (the C kernel brings each byte's bit to bit 4 with one shift
# per 8 bytes; see kernels.py)
INT5_BIT = ((0, 1, 4, 5), (2, 3, 6, 7))


def pack_high_bits(bits: torch.Tensor) -> torch.Tensor:
    """(rows, blocks, 32) 5th bits (0 / 1, value order) -> (rows, pairs of blocks) int64 in
    ``INT5_BIT``'s order (an odd last block pairs with zeros)."""
    rows, blocks, _ = bits.shape
    if blocks % 2:
        bits = torch.cat([bits, bits.new_zeros(rows, 1, 32)], dim=1)
    shifts = torch.tensor(INT5_BIT, dtype=torch.uint8).view(1, 1, 2, 4, 1)
    spread = (bits.to(torch.uint8).view(rows, -1, 2, 4, 8) << shifts).sum((2, 3), dtype=torch.uint8)
    return spread.contiguous().view(torch.int64).view(rows, -1)


def unpack_high_bits(high: torch.Tensor, blocks: int) -> torch.Tensor:
    """``pack_high_bits`` undone: (rows, blocks, 32) uint8 0 / 1."""
    rows = high.shape[0]
    shifts = torch.tensor(INT5_BIT, dtype=torch.uint8).view(1, 1, 2, 4, 1)
    spread = high.contiguous().view(torch.uint8).view(rows, -1, 1, 1, 8)
    return ((spread >> shifts) & 1).view(rows, -1, 32)[:, :blocks]


def pack_int5(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) codes 0..31 -> (``low`` (out, in / 2) uint8, ``high`` (out, pairs) int64): per
    block of 32, byte j of ``low`` holds value j (low nibble) and value j + 16 (high nibble),
    GGUF's Q5 order; the 5th bits as ``pack_high_bits``."""
    rows, width = codes.shape
    blocks = codes.to(torch.uint8).view(rows, width // 32, 32)
    low = (blocks[..., :16] & 0x0F) | ((blocks[..., 16:] & 0x0F) << 4)
    return low.reshape(rows, width // 2).contiguous(), pack_high_bits(blocks >> 4)


def unpack_int5(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``pack_int5`` undone: (out, in) codes 0..31 as uint8."""
    rows, blocks = low.shape[0], low.shape[1] // 16
    nibbles = low.view(rows, blocks, 16)
    codes = torch.cat([nibbles & 0x0F, nibbles >> 4], dim=-1)
    return codes.add_(unpack_high_bits(high, blocks) << 4).view(rows, blocks * 32)


class Int5Linear(QuantizedLinear):
    """y = x W^T + b with W in 5-bit codes over groups of 32 inputs, as GGUF's Q5_0 / Q5_1
    blocks hold them (no re-quantization: **exact**): per output row and group, ``low`` 16
    bytes of low nibbles (GGUF's order) and 32 5th bits (``high``: one int64 per pair of
    groups, ``pack_high_bits``' order),
    a scale ``d`` and, for Q5_1, an offset ``m``: ``w = d * (q - 16)`` (``offsets`` None) or
    ``w = d * q + m``. Scales and offsets are float16 held as their bits in int16 buffers (the
    file's values: a model's float dtype never rounds them; float32 also taken). 5.5 bits a
    weight (Q5_1: 6), against 9 for int8 groups of 32.

    Products of the rows ``kernels.usable`` takes run in lightpipe's C kernel (``int5_mm_q16``,
    int16 x, by default; ``int5_mm``, float32 x, under ``LIGHTPIPE_EXACT_ACTIVATIONS=1``;
    ``int5_mm_q8`` with ``int8_activations``); more rows, or no
    kernel, dequantize the weight and run one float32 GEMM (no torch kernel takes 5 bits).
    The layer always computes in float32: ``compute_dtype`` is float32 and
    ``set_compute_dtype`` changes nothing."""

    def __init__(self, in_features: int, out_features: int, low: torch.Tensor, high: torch.Tensor,
                 scales: torch.Tensor, offsets: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None):
        super().__init__()
        if in_features % 32:
            raise ValueError(f"Int5Linear takes groups of 32 inputs; in_features={in_features}")
        self._hold(in_features, out_features, bias, low=low, high=high, scales=scales,
                   offsets=offsets)

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scales: torch.Tensor,
                   offsets: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                   scale_dtype: torch.dtype = torch.float16) -> "Int5Linear":
        """From (out, in) codes 0..31 and (out, in / 32) scales (offsets): ``w = d * (q - 16)``
        without offsets, ``d * q + m`` with. ``scale_dtype`` float16 (stored as its bits) or
        float32."""
        out_features, in_features = codes.shape
        low, high = pack_int5(codes)
        return cls(in_features, out_features, low, high, _scale_storage(scales, scale_dtype),
                   None if offsets is None else _scale_storage(offsets, scale_dtype), bias)

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Nothing to change: the products are float32 and the scales stay the file's."""

    def _codes(self) -> torch.Tensor:
        return self.low

    def _float_scales(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor.view(torch.float16) if tensor.dtype == torch.int16 else tensor).float()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype, shape = inputs.dtype, inputs.shape
        x = inputs.reshape(-1, self.in_features)
        if kernels.usable(x, activations := self.activations()) and all(
                tensor is None or tensor.is_contiguous()
                for tensor in (self.low, self.high, self.scales, self.offsets)):
            bias = self._kernel_bias()
            out = kernels.int5_mm(x.to(torch.float32).contiguous(), self.low, self.high,
                                  self.scales, self.offsets, bias, activations=activations)
            return self._finish(out, dtype, shape, bias is not None)
        return self._finish(dense_product(x, self.float_weight()), dtype, shape)

    def float_weight(self) -> torch.Tensor:
        """The (out, in) weight in float32: ``d * (q - 16)`` or ``d * q + m`` per group."""
        codes = unpack_int5(self.low, self.high).view(self.out_features, -1, 32).float()
        scales = self._float_scales(self.scales).unsqueeze(-1)
        if self.offsets is None:
            weight = codes.sub_(16).mul_(scales)
        else:
            weight = codes.mul_(scales).add_(self._float_scales(self.offsets).unsqueeze(-1))
        return weight.view(self.out_features, self.in_features)

    def extra_repr(self) -> str:
        kind = "float16" if self.scales.dtype == torch.int16 else "float32"
        return (super().extra_repr() + f", bits=5, group_size=32, scales={kind}, "
                f"offsets={self.offsets is not None}")


def _scale_storage(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float16 scales as their bits (int16: not a float buffer, so a model's dtype leaves them
    alone), or float32."""
    if dtype == torch.float16:
        return values.to(torch.float16).contiguous().view(torch.int16)
    if dtype == torch.float32:
        return values.to(torch.float32).contiguous()
    raise ValueError(f"Int5Linear scales are float16 or float32, not {dtype}")
