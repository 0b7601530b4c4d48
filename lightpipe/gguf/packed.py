"""GGUF tensors kept quantized: ``from_pretrained(..., gguf_file=..., dequantize=False)``.

Each quantized weight of a linear layer becomes a ``lightpipe.quantization`` module, re-laid
from its blocks rather than dequantised:

- Q4_0, Q4_1, Q4_K: 4-bit codes over groups of 32 with one scale and one offset per group
  (Q4_K: a super-block's float16 factors times 6-bit sub-block scales and mins). torch's int4
  kernel computes ``(q - 8) * scale + zero`` per group of 32, so ``scale = d`` and
  ``zero = d * 8 + m`` (Q4_0: ``m = -8 d``; Q4_K: ``m = -dmin_j``) hold the same values:
  **lossless** (exact with ``dtype=torch.float32``; the default bfloat16 kernel rounds the
  scales and activations to bfloat16).
- Q8_0 and every other block type (Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, Q6_K): with lightpipe's C
  kernel (``quantization.kernels``), int8 in groups of 32 inputs: Q8_0 **exact** (its codes and
  scales), the others re-quantized per group from the dequantised values (an error of at most
  half a step of the group's largest value / 127). Without it, the nearest layout with a kernel
  is int8 with one scale per output row (torch's int8 weight-only kernel has no groups):
  **not exact** (half a step of the row's largest value / 127).
- Float tensors (F32, F16, BF16) and the token embedding are loaded as usual (the embedding
  dequantised to the model's dtype). A tied output projection is quantized from the
  embedding's blocks when they are 4-bit (exact int4); otherwise it stays tied to the
  dequantised embedding (no second copy; SmolLM2's Q8_0 head is this case).
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
        if bias is not None:
            bias = bias.to(compute_dtype)
        if self.kind in INT4_TYPES and int4_fits(rows, cols, 32):
            return self._int4(bias, compute_dtype)
        if kernels.available() and cols % 32 == 0:
            # int8 in groups of 32 (only lightpipe's C kernel takes groups): Q8_0 exactly,
            # the other types re-quantized per group (much closer than one scale per row)
            if self.kind == "Q8_0":
                return self._int8_groups(bias, compute_dtype)
            return Int8Linear.grouped_from_weight(self.dequantize(torch.float32), 32, bias,
                                                  compute_dtype)
        return Int8Linear.from_weight(self.dequantize(torch.float32), bias, compute_dtype)

    def _int8_groups(self, bias, compute_dtype):
        """Q8_0 blocks (a float16 scale, 32 int8 codes) as int8 codes with a scale per 32."""
        from ..quantization.linear import Int8Linear

        rows, cols = self.shape
        blocks = self.gguf.raw(self.info.name).view(rows * (cols // 32), 34)
        codes = blocks[:, 2:].contiguous().view(torch.int8).reshape(rows, cols)
        scales = _half(blocks, 0).reshape(rows, cols // 32)
        return Int8Linear.from_groups(self._rows(codes), self._rows(scales), bias, compute_dtype)

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
