"""GGML block types -> torch float tensors, vectorised over all blocks at once.

Each function takes the blocks of a tensor as a ``(n_blocks, block_bytes)`` uint8 tensor and
returns ``(n_blocks, block_elements)`` float32 values, computed with the same float32
operations in the same order as the ``gguf`` package's numpy reference (``gguf.quants``), so
the results are bit-for-bit equal. Layouts: ggml's ``ggml-common.h`` (``block_q4_0``, ...).
"""

from __future__ import annotations

import torch

from .reader import GGML_TYPES, QK_K

# Types stored as plain values, viewed in place rather than unpacked.
FLOAT_TYPES = {0: torch.float32, 1: torch.float16, 30: torch.bfloat16}

# Blocks unpacked per step: bounds the temporaries of a large tensor (~64 MB of float32).
_CHUNK_ELEMENTS = 1 << 24


def dequantize(raw: torch.Tensor, ggml_type: int, shape: tuple[int, ...],
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A GGUF tensor's bytes (a flat uint8 tensor) -> its values as ``dtype``, in ``shape``
    (torch order: rows first)."""
    if ggml_type in FLOAT_TYPES:
        if raw.data_ptr() % FLOAT_TYPES[ggml_type].itemsize:  # a file with its own alignment
            raw = raw.clone()
        values = raw.view(FLOAT_TYPES[ggml_type]).view(shape)
        return values if values.dtype == dtype else values.to(dtype)
    name, block_elements, block_bytes = GGML_TYPES[ggml_type]
    unpack = _UNPACKERS[name]
    blocks = raw.view(-1, block_bytes)
    out = torch.empty(blocks.shape[0], block_elements, dtype=dtype)
    step = max(1, _CHUNK_ELEMENTS // block_elements)
    for start in range(0, blocks.shape[0], step):  # a few chunks per tensor, not one per block
        out[start:start + step] = unpack(blocks[start:start + step])
    return out.view(shape)


def _half(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 field at byte ``start`` of each block, as float32 of shape (n_blocks, 1)."""
    return blocks[:, start:start + 2].contiguous().view(torch.float16).float()


def _nibbles(packed: torch.Tensor, group: int) -> torch.Tensor:
    """Low then high 4 bits of each run of ``group`` bytes: (n, bytes) -> (n, 2 * bytes)."""
    n = packed.shape[0]
    runs = packed.reshape(n, -1, 1, group)
    return torch.cat([runs & 0x0F, runs >> 4], dim=2).reshape(n, -1)


def _bits(packed: torch.Tensor, width: int) -> torch.Tensor:
    """Each byte cut into ``8 // width``-bit fields, lowest first, over runs of 32 bytes:
    (n, bytes) -> (n, bytes * 8 // width), as ggml lays out Q2_K / Q3_K / Q5_K / Q6_K."""
    n = packed.shape[0]
    shifts = torch.arange(0, 8, width, dtype=torch.uint8).view(1, 1, -1, 1)
    fields = (packed.reshape(n, -1, 1, 32) >> shifts) & ((1 << width) - 1)
    return fields.reshape(n, -1)


def _q4_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _half(blocks, 0)
    q = _nibbles(blocks[:, 2:], 16).to(torch.int8) - 8
    return d * q.float()


def _q4_1(blocks: torch.Tensor) -> torch.Tensor:
    d, m = _half(blocks, 0), _half(blocks, 2)
    return d * _nibbles(blocks[:, 4:], 16).float() + m


def _high_bits32(qh: torch.Tensor) -> torch.Tensor:
    """A little-endian uint32 of 32 one-bit fields (Q5_0 / Q5_1): (n, 4) bytes -> (n, 32)."""
    shifts = torch.arange(8, dtype=torch.uint8).view(1, 1, 8)
    return ((qh.unsqueeze(-1) >> shifts) & 1).reshape(qh.shape[0], 32)


def _q5_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _half(blocks, 0)
    q = _nibbles(blocks[:, 6:], 16) | (_high_bits32(blocks[:, 2:6]) << 4)
    return d * (q.to(torch.int8) - 16).float()


def _q5_1(blocks: torch.Tensor) -> torch.Tensor:
    d, m = _half(blocks, 0), _half(blocks, 2)
    q = _nibbles(blocks[:, 8:], 16) | (_high_bits32(blocks[:, 4:8]) << 4)
    return d * q.float() + m


def _q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _half(blocks, 0)
    return blocks[:, 2:].contiguous().view(torch.int8).float() * d


def _q2_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    scales = blocks[:, :16]
    d, dmin = _half(blocks, 80), _half(blocks, 82)
    dl = (d * (scales & 0x0F).float()).view(n, 16, 1)
    ml = (dmin * (scales >> 4).float()).view(n, 16, 1)
    q = _bits(blocks[:, 16:80], 2).view(n, 16, 16).float()
    return (dl * q - ml).view(n, QK_K)


def _q3_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    hmask, qs, packed = blocks[:, :32], blocks[:, 32:96], blocks[:, 96:108]
    d = _half(blocks, 108)
    # 16 six-bit scales: low 4 bits in bytes 0-7 (two per byte), high 2 bits in bytes 8-11.
    low = torch.cat([packed[:, :8] & 0x0F, packed[:, :8] >> 4], dim=1)
    high = packed[:, 8:12].reshape(n, 1, 4) >> torch.tensor([0, 2, 4, 6], dtype=torch.uint8).view(1, 4, 1)
    scales = low | ((high.reshape(n, 16) & 0x03) << 4)
    dl = (d * (scales.to(torch.int8) - 32).float()).view(n, 16, 1)
    low_q = _bits(qs, 2).view(n, 16, 16)
    high_q = (_bits(hmask, 1).view(n, 16, 16) ^ 1) << 2  # a set mask bit means no offset
    q = (low_q.to(torch.int8) - high_q.to(torch.int8)).float()
    return (dl * q).view(n, QK_K)


def _k_scale_min(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K / Q5_K: each sub-block's scale and min, (n, 8, 1) each: two float16 super-block
    factors times eight 6-bit scales and eight 6-bit mins packed in bytes 4-15."""
    n = blocks.shape[0]
    d, m, m_d = blocks[:, 4:8], blocks[:, 8:12], blocks[:, 12:16]
    scale = torch.cat([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], dim=1)
    minimum = torch.cat([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], dim=1)
    return ((_half(blocks, 0) * scale.float()).view(n, 8, 1),
            (_half(blocks, 2) * minimum.float()).view(n, 8, 1))


def _q4_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dm = _k_scale_min(blocks)
    q = _nibbles(blocks[:, 16:], 32).view(n, 8, 32).float()
    return (d * q - dm).view(n, QK_K)


def _q5_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dm = _k_scale_min(blocks)
    q = _nibbles(blocks[:, 48:], 32) | (_bits(blocks[:, 16:48], 1) << 4)
    return (d * q.view(n, 8, 32).float() - dm).view(n, QK_K)


def _q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    low, high = blocks[:, :128], blocks[:, 128:192]
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()
    d = (_half(blocks, 208) * scales).view(n, 16, 1)
    q = _nibbles(low, 64) | (_bits(high, 2) << 4)
    q = (q.to(torch.int8) - 32).view(n, 16, 16).float()
    return (d * q).view(n, QK_K)


_UNPACKERS = {"Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1, "Q8_0": _q8_0,
              "Q2_K": _q2_k, "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}
