"""A token embedding kept quantized: ``QuantizedEmbedding`` replaces ``nn.Embedding`` where a
GGUF file is loaded with its blocks packed (``dequantize=False``).

The rows live in a ``table``: a quantized linear module (``Int4Linear``, ``Int8Linear``) or a
gather-only ``RowCodes`` (5- or 6-bit codes, for block types no product kernel takes). A
lookup gathers the asked ids' codes and scales and dequantizes those rows only, with the same
float32 operations as the table's ``float_weight()`` (so the rows equal the dense weight's rows
bit for bit), then casts to the model's dtype. Cost (SmolLM2's 49152 x 576, one thread, busy
machine, best of 20): one id ~50 us (int8) to ~150 us (int4, 5-bit) against ~8 us for a float
``nn.Embedding``; 512 ids 0.16 / 4.6 / 2.5 ms (a 512-token prefill takes seconds).

- Tied embedding and output projection: the table *is* the output projection's module
  (``lm_head``), held by reference and not registered a second time: one copy of the codes,
  read by the head's kernel and by the lookup (its buffers may be replaced, e.g. by
  ``set_compute_dtype``: the lookup reads them at each call).
- Untied: the embedding's own table, registered as the submodule ``owned``.

``weight`` dequantizes the whole table on each access (a float32 copy of vocabulary x hidden:
slow, and as large as the embedding this module avoids keeping); it exists for code that reads
``get_input_embeddings().weight`` once. Assigning ``weight`` (resizing the vocabulary, training)
is refused with a clear error: load with ``dequantize=True`` for that.
"""

from __future__ import annotations

import torch
from torch import nn

from .linear import Int4Linear, Int8Linear, QuantizedLinear


class RowCodes(nn.Module):
    """A gather-only table (no product kernel reads it) of ``bits``-bit codes, 5 or 6, with one
    ``scale`` (and optionally one ``zero``) per group of ``group_size`` values of a row:
    ``value = (code - 2 ** (bits - 1)) * scale (+ zero)``. Stored per row as the codes' low 4
    bits two to a byte (``low``: value 2j in the low nibble of byte j) and each higher bit as a
    plane of 8 values a byte (``high``: (rows, bits - 4, in / 8), value 8j + i in bit i of byte
    j): 5 bits take 0.625 bytes a value, against 1 for int8 codes. GGUF's Q5_0 / Q5_1 / Q5_K
    (5 bits, groups of 32) and Q6_K (6 bits, groups of 16) token embeddings, exactly."""

    def __init__(self, bits: int, group_size: int, low: torch.Tensor, high: torch.Tensor,
                 scales: torch.Tensor, zeros: torch.Tensor | None = None):
        super().__init__()
        self.bits, self.group_size = bits, group_size
        self.out_features, self.in_features = low.shape[0], low.shape[1] * 2
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.register_buffer("scales", scales)
        self.register_buffer("zeros", zeros)

    @classmethod
    def from_codes(cls, codes: torch.Tensor, bits: int, group_size: int, scales: torch.Tensor,
                   zeros: torch.Tensor | None = None,
                   dtype: torch.dtype = torch.float32) -> "RowCodes":
        """From (rows, in) codes 0 .. 2 ** bits - 1 and (rows, in / group_size) scales (zeros)."""
        rows, width = codes.shape
        codes = codes.to(torch.uint8)
        low = (codes[:, 0::2] & 0x0F) | ((codes[:, 1::2] & 0x0F) << 4)
        weights = (1 << torch.arange(8)).to(torch.uint8)
        planes = [((codes >> bit) & 1).view(rows, width // 8, 8).mul_(weights)
                  .sum(-1, dtype=torch.uint8) for bit in range(4, bits)]
        high = torch.stack(planes, dim=1) if planes else codes.new_zeros(rows, 0, width // 8)
        return cls(bits, group_size, low.contiguous(), high, scales.to(dtype).contiguous(),
                   None if zeros is None else zeros.to(dtype).contiguous())

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` dequantized to float32."""
        low = self.low.index_select(0, ids)
        codes = torch.stack([low & 0x0F, low >> 4], dim=-1).view(-1, self.in_features)
        shifts = torch.arange(8, dtype=torch.uint8, device=low.device)
        high = self.high.index_select(0, ids)
        for plane in range(self.bits - 4):
            bits = (high[:, plane].unsqueeze(-1) >> shifts) & 1
            codes |= bits.view(-1, self.in_features) << (4 + plane)
        groups = self.in_features // self.group_size
        values = codes.view(-1, groups, self.group_size).float() - (1 << (self.bits - 1))
        values = values.mul_(self.scales.index_select(0, ids).float().unsqueeze(-1))
        if self.zeros is not None:
            values = values.add_(self.zeros.index_select(0, ids).float().unsqueeze(-1))
        return values.view(-1, self.in_features)

    def dense_weight(self) -> torch.Tensor:
        return self.rows(torch.arange(self.out_features, device=self.low.device))

    def extra_repr(self) -> str:
        return (f"rows={self.out_features}, in_features={self.in_features}, bits={self.bits}, "
                f"group_size={self.group_size}, zeros={self.zeros is not None}")


def gather_rows(table: QuantizedLinear | RowCodes, ids: torch.Tensor) -> torch.Tensor:
    """Rows ``ids`` (a 1-D long tensor) of ``table``'s (out, in) weight, dequantized to float32
    with the operations of its ``float_weight()``."""
    if isinstance(table, RowCodes):
        return table.rows(ids)
    if isinstance(table, Int4Linear):
        # torch's CPU int4 layout: per tile of 32 rows, (in, 16) bytes; byte [k, d] holds row
        # d in its low nibble and row d + 16 in its high one (see linear.unpack_int4)
        width = table.in_features
        start = (ids // 32) * (width * 16) + ids % 16  # byte [0, d] of the row's tile
        index = start.unsqueeze(1) + torch.arange(0, width * 16, 16, device=ids.device)
        packed = table.packed.view(-1).take(index)  # (n, in)
        codes = packed.where((ids % 32 < 16).unsqueeze(1), packed >> 4) & 0x0F
        groups = table.in_features // table.group_size
        scales_and_zeros = table.scales_and_zeros.index_select(1, ids).float()
        scales, zeros = scales_and_zeros.transpose(0, 1).unbind(-1)
        values = (codes.view(-1, groups, table.group_size).float() - 8)
        values = values.mul_(scales.unsqueeze(-1)).add_(zeros.unsqueeze(-1))
        return values.view(-1, table.in_features)
    if isinstance(table, Int8Linear):
        codes = table.codes.index_select(0, ids).float()
        scales = table.scales.index_select(0, ids).float()
        if scales.dim() == 2:  # (the same products as float_weight's repeated scales)
            groups = scales.shape[1]
            return codes.view(-1, groups, table.in_features // groups).mul_(
                scales.unsqueeze(-1)).view(-1, table.in_features)
        return codes.mul_(scales.unsqueeze(1))
    raise TypeError(f"QuantizedEmbedding reads Int4Linear, Int8Linear or RowCodes tables, not "
                    f"{type(table).__name__}.")


def table_bytes(table: QuantizedLinear | RowCodes) -> int:
    """Bytes held by a table's buffers (codes and scales)."""
    return sum(buffer.numel() * buffer.element_size() for buffer in table.buffers())


class QuantizedEmbedding(nn.Module):
    """``nn.Embedding`` over a quantized table (see the module docstring). ``dtype`` is what
    lookups return (the model's dtype); ``model.to(dtype)`` changes it."""

    padding_idx = None
    max_norm = None

    def __init__(self, table: QuantizedLinear | RowCodes, dtype: torch.dtype = torch.float32,
                 shared: bool = False):
        super().__init__()
        self.num_embeddings, self.embedding_dim = table.out_features, table.in_features
        if shared:
            self.owned = None
            self.__dict__["_shared"] = table  # not a submodule: the head owns it
        else:
            self.owned = table
        # a zero-size float buffer: follows model.to(dtype) and gives lookups their dtype
        self.register_buffer("_dtype", torch.empty(0, dtype=dtype), persistent=False)

    @property
    def table(self) -> QuantizedLinear | RowCodes:
        return self.owned if self.owned is not None else self.__dict__["_shared"]

    @property
    def shared(self) -> bool:
        return self.owned is None

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype.dtype

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.is_floating_point():
            raise TypeError(f"An embedding looks up integer token ids, not {input_ids.dtype} "
                            "values: pass input_ids (or inputs_embeds= for vectors).")
        flat = input_ids.reshape(-1)
        if flat.dtype != torch.long:
            flat = flat.long()
        if flat.numel():  # (an int4 table's padding rows would be read silently)
            low, high = (int(value) for value in torch.aminmax(flat))
            if low < 0 or high >= self.num_embeddings:
                raise IndexError(f"token ids must lie in 0..{self.num_embeddings - 1} (the "
                                 f"vocabulary); got {low}..{high}.")
        rows = gather_rows(self.table, flat)
        return rows.to(self.dtype).view(*input_ids.shape, self.embedding_dim)

    @property
    def weight(self) -> torch.Tensor:
        """The whole (vocabulary, hidden) table dequantized, a new tensor at each access
        (slow: for code reading the embedding once)."""
        ids = torch.arange(self.num_embeddings, device=self._dtype.device)
        return gather_rows(self.table, ids).to(self.dtype)

    def __setattr__(self, name: str, value) -> None:
        if name == "weight":  # (nn.Module would try to register a parameter named like it)
            raise AttributeError(
                "This token embedding is kept quantized (GGUF loaded with dequantize=False): its "
                "weight cannot be replaced or resized. Load with dequantize=True to change it.")
        super().__setattr__(name, value)

    def nbytes(self) -> int:
        """Bytes of the codes and scales the lookups read (shared ones included)."""
        return table_bytes(self.table)

    def extra_repr(self) -> str:
        kind = type(self.table).__name__
        return (f"{self.num_embeddings}, {self.embedding_dim}, table={kind}"
                f"{' (shared with the output projection)' if self.shared else ''}, "
                f"dtype={self.dtype}")


def take_packed_embeddings(model: nn.Module, state: dict, built: dict, compute: torch.dtype,
                           dtype: torch.dtype) -> None:
    """In ``state`` (a checkpoint being loaded, see ``loading.load_quantized``), the packed
    entries no linear layer took: each token embedding's becomes a ``QuantizedEmbedding`` in
    ``model`` (sharing the table of the output projection built from the same entry, found in
    ``built``: id(entry) -> module), its buffers put in ``state``; any other packed entry, and
    an embedding a float head stays tied to, is dequantised to ``dtype``."""
    from . import replace_module

    modules = dict(model.named_modules())
    ties = model.active_ties() if hasattr(model, "active_ties") else {}
    for key, value in list(state.items()):
        if not hasattr(value, "build_linear"):
            continue
        name, _, leaf = key.rpartition(".")
        new = None
        # a float output projection tied to this embedding needs its float weight
        float_tie = any(source == key and isinstance(modules.get(target.rpartition(".")[0]),
                                                     nn.Linear)
                        for target, source in ties.items())
        # a plain nn.Embedding only: a subclass may do more than look up (Gemma scales its rows)
        if type(modules.get(name)) is nn.Embedding and leaf == "weight" and not float_tie:
            head = built.get(id(value))
            if isinstance(head, (Int4Linear, Int8Linear)):
                new = QuantizedEmbedding(head, dtype, shared=True)
            else:
                table = value.build_table(compute)
                new = None if table is None else QuantizedEmbedding(table, dtype)
        if new is None:
            state[key] = value.dequantize(dtype)
            continue
        replace_module(model, name, new)
        del state[key]
        for part, tensor in new.state_dict().items():
            state[f"{name}.{part}"] = tensor
