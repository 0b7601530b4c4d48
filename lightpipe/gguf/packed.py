"""GGUF tensors kept quantized: ``from_pretrained(..., gguf_file=..., dequantize=False)``.

Each quantized weight of a linear layer becomes a ``lightpipe.quantization`` module, re-laid
from its blocks rather than dequantised:

- Q4_0, Q4_1, Q4_K: 4-bit codes over groups of 32 with one scale and one offset per group
  (Q4_K: a super-block's float16 factors times 6-bit sub-block scales and mins). torch's int4
  kernel computes ``(q - 8) * scale + zero`` per group of 32, so ``scale = d`` and
  ``zero = d * 8 + m`` (Q4_0: ``m = -8 d``; Q4_K: ``m = -dmin_j``) hold the same values:
  **lossless** (exact with ``dtype=torch.float32``; the default bfloat16 kernel rounds the
  scales and activations to bfloat16).
- Q5_0 and Q5_1, with lightpipe's C kernel (``quantization.kernels``): ``Int5Linear``, the
  blocks' own 5-bit codes in the file's order and their float16 ``d`` (and ``m``): **exact**,
  5.5 bits a weight (Q5_1: 6) as in the file, multiplied by the kernel's ``int5_mm``.
- Q8_0 and every other block type (Q2_K, Q3_K, Q5_K, Q6_K): with the C kernel, int8 in groups
  of 32 inputs: Q8_0 **exact** (each block is ``d * k``: codes ``k``, scales ``d``), the
  others re-quantized per group from the dequantised values (an error of at most half a step
  of the group's largest value / 127).
  Without it, the nearest layout with a kernel is int8 with one scale per output row (torch's
  int8 weight-only kernel has no groups): **not exact** (half a step of the row's largest
  value / 127).
- Float tensors (F32, F16, BF16) are loaded as usual. The token embedding stays quantized
  (``quantization.embedding.QuantizedEmbedding``: a lookup dequantizes only the asked rows),
  needing no kernel: int4 for the 4-bit types, 5- or 6-bit codes with the blocks' own scales
  for Q5_0, Q5_1, Q5_K and Q6_K (``RowCodes``, exact), int8 in groups of 32 for Q8_0 (exact)
  and the rest (Q2_K, Q3_K re-quantized). A tied output projection is quantized from the
  embedding's blocks when they are 4-bit or the C kernel runs, and the embedding then reads
  the head's codes (one copy of them); otherwise (no C kernel, a tied head in another type)
  the head stays tied to the embedding dequantised to the model's dtype, as before.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch

from .dequant import FLOAT_TYPES, _half, _k_scale_min, _nibbles, dequantize
from .reader import GGML_TYPES

if TYPE_CHECKING:
    from .reader import GGUFFile, TensorInfo

# Rows converted per step: bounds the int32 / float32 temporaries of a large matrix.
_ROW_CHUNK = 4096
INT4_TYPES = ("Q4_0", "Q4_1", "Q4_K")
# byte offsets in a block of (d, m or None, the 5th bits, the low nibbles): Int5Linear's types
INT5_TYPES = {"Q5_0": (0, None, 2, 6), "Q5_1": (0, 2, 4, 8)}
# d * k with one float16 d per 32 values and small integers k: exact as int8 groups of 32.
BLOCK_SCALED = ("Q8_0", "Q5_0", "Q4_0")
# (bits, group size) of the types a gather-only embedding table (RowCodes) holds exactly.
LOW_BIT = {"Q5_0": (5, 32), "Q5_1": (5, 32), "Q5_K": (5, 32), "Q6_K": (6, 16)}


def _int4_groups(blocks: torch.Tensor, kind: str):
    """(codes 0..15 as (n, 32) uint8, scale (n,), zero (n,)) per group of 32, float32, such that
    ``value = (code - 8) * scale + zero`` equals the block's dequantised value."""
    if kind == "Q4_0":
        d = _half(blocks, 0)
        codes = _nibbles(blocks[:, 2:], 16)
        return codes, d.view(-1), torch.zeros_like(d).view(-1)
    if kind == "Q4_1":
        d, m = _half(blocks, 0), _half(blocks, 2)
        return _nibbles(blocks[:, 4:], 16), d.view(-1), (d * 8 + m).view(-1)
    n = blocks.shape[0]  # Q4_K: 8 groups of 32 per super-block
    d, dm = _k_scale_min(blocks)  # (n, 8, 1) each: value = d * q - dm
    codes = _nibbles(blocks[:, 16:], 32).view(n * 8, 32)
    return codes, d.reshape(-1), (d * 8 - dm).reshape(-1)


class PackedTensor:
    """One quantized tensor of a GGUF file, not yet unpacked: becomes a quantized linear
    module (``build_linear``) or, elsewhere, a float tensor (``dequantize``)."""

    def __init__(self, gguf: "GGUFFile", info: "TensorInfo", heads: int | None):
        self.gguf, self.info, self.heads = gguf, info, heads  # heads: rows to un-permute (q/k)
        self.shape = torch.Size(info.shape)
        self.kind = GGML_TYPES[info.ggml_type][0]

    def numel(self) -> int:
        return self.shape.numel()

    def _rows(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.heads:
            from .convert import unpermute_rows

            return unpermute_rows(tensor, self.heads)
        return tensor

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raw = self.gguf.raw(self.info.name)
        return self._rows(dequantize(raw, self.info.ggml_type, self.info.shape, dtype))

    def build_linear(self, bias: torch.Tensor | None, compute_dtype: torch.dtype):
        from ..quantization import kernels
        from ..quantization.linear import Int8Linear, int4_fits

        rows, cols = self.shape
        if self.kind in INT5_TYPES and kernels.available() and cols % 32 == 0:
            return self._int5(bias)  # (computes in float32: its bias too)
        if bias is not None:
            bias = bias.to(compute_dtype)
        if self.kind in INT4_TYPES and int4_fits(rows, cols, 32):
            return self._int4(bias, compute_dtype)
        if kernels.available() and cols % 32 == 0:
            # int8 in groups of 32 (only lightpipe's C kernel takes groups): Q8_0, Q5_0 (and
            # Q4_0) exactly, the other types re-quantized per group (much closer than one
            # scale per row)
            return Int8Linear.from_groups(*self._int8_groups(), bias, compute_dtype)
        return Int8Linear.from_weight(self.dequantize(torch.float32), bias, compute_dtype)

    def build_table(self, compute_dtype: torch.dtype):
        """The quantized module a ``QuantizedEmbedding`` reads its rows from (no kernel
        needed: rows are gathered, not multiplied): int4 for the 4-bit types, else int8 in
        groups of 32 (see ``_int8_groups``); None where neither fits."""
        from ..quantization.linear import Int8Linear, int4_fits

        rows, cols = self.shape
        if self.kind in INT4_TYPES and int4_fits(rows, cols, 32):
            return self._int4(None, compute_dtype)
        if self.kind in LOW_BIT and cols % 32 == 0:
            return self._low_bit_table(compute_dtype)
        if cols % 32 == 0:
            return Int8Linear.from_groups(*self._int8_groups(), None, compute_dtype)
        return None

    def _scale_zero(self, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per group of a ``LOW_BIT`` type's blocks: (scale, zero or None), float32, such that
        ``value = (code - 2 ** (bits - 1)) * scale (+ zero)`` for the block's codes."""
        if self.kind == "Q5_0":  # d * (q - 16)
            return _half(blocks, 0).view(-1), None
        if self.kind == "Q5_1":  # d * q + m
            d, m = _half(blocks, 0), _half(blocks, 2)
            return d.view(-1), (m + 16 * d).view(-1)
        if self.kind == "Q5_K":  # d_j * q - dmin_j per 32
            d, dm = _k_scale_min(blocks)
            return d.reshape(-1), (16 * d - dm).reshape(-1)
        # Q6_K: d * scale_j * (q - 32) per 16
        d = _half(blocks, 208) * blocks[:, 192:208].contiguous().view(torch.int8).float()
        return d.reshape(-1), None

    def _low_bit_table(self, compute_dtype: torch.dtype):
        """A gather-only ``RowCodes`` table holding the blocks' own 5- or 6-bit codes and
        scales (exact), ``_ROW_CHUNK`` rows at a time: the codes are read back from the
        dequantised values (``round((value - zero) / scale)``: the values are those products)."""
        from ..quantization.embedding import RowCodes

        bits, group = LOW_BIT[self.kind]
        center = 1 << (bits - 1)
        rows, cols = self.shape
        _, block_elements, block_bytes = GGML_TYPES[self.info.ggml_type]
        row_bytes = cols // block_elements * block_bytes
        raw = self.gguf.raw(self.info.name)
        codes = torch.empty(rows, cols, dtype=torch.uint8)
        scales = torch.empty(rows, cols // group)
        zeros = None
        for start in range(0, rows, _ROW_CHUNK):
            stop = min(rows, start + _ROW_CHUNK)
            part = raw[start * row_bytes:stop * row_bytes]
            scale, zero = self._scale_zero(part.view(-1, block_bytes))
            values = dequantize(part, self.info.ggml_type, (stop - start, cols)).view(-1, group)
            if zero is not None:
                values.sub_(zero.unsqueeze(1))
                if zeros is None:
                    zeros = torch.empty(rows, cols // group)
                zeros[start:stop] = zero.view(stop - start, -1)
            k = values.div_(scale.unsqueeze(1)).nan_to_num_(0.0).round_().add_(center)
            codes[start:stop] = k.clamp_(0, 2 * center - 1).view(stop - start, cols).to(torch.uint8)
            scales[start:stop] = scale.view(stop - start, -1)
        zeros = None if zeros is None else self._rows(zeros)
        return RowCodes.from_codes(self._rows(codes), bits, group, self._rows(scales), zeros,
                                   compute_dtype)

    def _int8_groups(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) int8 codes and (rows, cols / 32) float32 scales, ``w = q * scale``,
        ``_ROW_CHUNK`` rows at a time (no float32 copy of a whole vocabulary-sized matrix).
        Q8_0, Q5_0 and Q4_0 blocks are ``d * k`` with one float16 ``d`` per 32 and small
        integers ``k``: their codes are ``k`` and their scales ``d``, **exact**. The other
        types are re-quantized per group of 32 from the dequantised values (symmetric, an
        error of at most half a step of the group's largest magnitude / 127)."""
        from ..quantization.linear import _int8_codes

        rows, cols = self.shape
        _, block_elements, block_bytes = GGML_TYPES[self.info.ggml_type]
        row_bytes = cols // block_elements * block_bytes
        raw = self.gguf.raw(self.info.name)
        codes = torch.empty(rows, cols, dtype=torch.int8)
        scales = torch.empty(rows, cols // 32)
        for start in range(0, rows, _ROW_CHUNK):
            stop = min(rows, start + _ROW_CHUNK)
            part = raw[start * row_bytes:stop * row_bytes]
            blocks = part.view(-1, block_bytes)
            if self.kind == "Q8_0":
                codes[start:stop] = blocks[:, 2:].contiguous().view(torch.int8).view(-1, cols)
                scales[start:stop] = _half(blocks, 0).view(stop - start, -1)
                continue
            values = dequantize(part, self.info.ggml_type, (stop - start, cols))
            if self.kind in BLOCK_SCALED:
                d = _half(blocks, 0)  # (blocks, 1): one per 32 values
                k = values.view(-1, 32).div_(d).nan_to_num_(0.0).round_()  # d = 0: codes 0
                codes[start:stop] = k.view(stop - start, cols).to(torch.int8)
                scales[start:stop] = d.view(stop - start, -1)
            else:
                codes[start:stop], scales[start:stop] = _int8_codes(values, 32)
        return self._rows(codes), self._rows(scales)

    def _int5(self, bias):
        """An ``Int5Linear`` holding the Q5_0 / Q5_1 blocks' codes and float16 factors as they
        are (the nibbles in the file's order, the 5th bits re-ordered for the kernel),
        ``_ROW_CHUNK`` rows at a time: exact."""
        from ..quantization.linear import Int5Linear, pack_high_bits

        rows, cols = self.shape
        _, block_elements, block_bytes = GGML_TYPES[self.info.ggml_type]
        d_at, m_at, high_at, low_at = INT5_TYPES[self.kind]
        blocks = self.gguf.raw(self.info.name).view(rows, cols // block_elements, block_bytes)
        low = torch.empty(rows, cols // 2, dtype=torch.uint8)
        high = torch.empty(rows, (cols // 32 + 1) // 2, dtype=torch.int64)
        scales = torch.empty(rows, cols // 32, dtype=torch.int16)
        offsets = None if m_at is None else torch.empty_like(scales)

        def field(chunk, start, stop, dtype):  # bytes [start, stop) of each block as dtype
            return chunk[:, :, start:stop].contiguous().view(dtype).view(chunk.shape[0], -1)

        for start in range(0, rows, _ROW_CHUNK):
            chunk, stop = blocks[start:start + _ROW_CHUNK], min(rows, start + _ROW_CHUNK)
            low[start:stop] = field(chunk, low_at, low_at + 16, torch.uint8)
            bits = field(chunk, high_at, high_at + 4, torch.uint8).view(stop - start, -1, 4, 1)
            bits = (bits >> torch.arange(8, dtype=torch.uint8)) & 1  # value 8 i + k: bit k of byte i
            high[start:stop] = pack_high_bits(bits.view(stop - start, -1, 32))
            scales[start:stop] = field(chunk, d_at, d_at + 2, torch.int16)
            if offsets is not None:
                offsets[start:stop] = field(chunk, m_at, m_at + 2, torch.int16)
        if bias is not None:
            bias = bias.to(torch.float32)
        return Int5Linear(cols, rows, self._rows(low), self._rows(high), self._rows(scales),
                          None if offsets is None else self._rows(offsets), bias)

    def _int4(self, bias, compute_dtype):
        from ..quantization.linear import Int4Linear

        rows, cols = self.shape
        _, block_elements, block_bytes = GGML_TYPES[self.info.ggml_type]
        blocks = self.gguf.raw(self.info.name).view(rows, cols // block_elements, block_bytes)
        codes, scales, zeros = [], [], []
        for start in range(0, rows, _ROW_CHUNK):
            chunk = blocks[start:start + _ROW_CHUNK]
            n = chunk.shape[0]
            q, s, z = _int4_groups(chunk.reshape(-1, block_bytes), self.kind)
            codes.append(q.reshape(n, cols))
            scales.append(s.reshape(n, cols // 32))
            zeros.append(z.reshape(n, cols // 32))
        codes, scales, zeros = (self._rows(torch.cat(parts)) for parts in (codes, scales, zeros))
        return Int4Linear.from_codes(codes, scales, zeros, 32, bias, compute_dtype)


def packed_checkpoint(gguf: "GGUFFile") -> dict:
    """``to_checkpoint`` with the quantized tensors left as ``PackedTensor``s (float ones as
    tensors); a tied output projection gets the embedding's blocks as ``lm_head.weight``."""
    from ..errors import UnsupportedModelError
    from .convert import checkpoint_name, model_type

    kind, architecture, meta = model_type(gguf), gguf.architecture, gguf.metadata
    if kind == "gpt2":
        raise UnsupportedModelError(
            f"{gguf.path.name}: dequantize=False (weights kept packed) is implemented for Llama, "
            "Mistral, Qwen2 and Qwen3 files; load this GPT-2 file with dequantize=True.")
    heads = meta.get(f"{architecture}.attention.head_count")
    kv_heads = meta.get(f"{architecture}.attention.head_count_kv", heads)
    state = {}
    for info in gguf.tensors.values():
        name = checkpoint_name(info.name, kind)
        if name is None:
            continue
        permuted = architecture == "llama" and heads and re.search(r"\.attn_[qk]\.", info.name)
        rows_heads = (heads if ".attn_q." in info.name else kv_heads) if permuted else None
        if info.ggml_type in FLOAT_TYPES:
            from .convert import unpermute_rows

            tensor = dequantize(gguf.raw(info.name), info.ggml_type, info.shape,
                                FLOAT_TYPES[info.ggml_type])
            # a copy, not a view: a view would keep the whole file mapped (and resident)
            state[name] = unpermute_rows(tensor, rows_heads) if rows_heads else tensor.clone()
        else:
            state[name] = PackedTensor(gguf, info, rows_heads)
    embedding = state.get("model.embed_tokens.weight")
    from ..quantization import kernels

    if ("lm_head.weight" not in state and isinstance(embedding, PackedTensor)
            and (embedding.kind in INT4_TYPES or kernels.available())):
        # a tied head in a 4-bit type: its own exact int4 copy (a fraction of the embedding's
        # size); with lightpipe's C kernel, any type (int8 in groups of 32: Q8_0 exact).
        # Otherwise it stays tied to the dequantised embedding: no second copy, and closer to
        # the file's values than int8 per row (torch's kernel).
        state["lm_head.weight"] = embedding
    return state
