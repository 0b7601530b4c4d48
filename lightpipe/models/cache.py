"""The decoding caches: keys and values of the tokens seen so far, per layer.

gpt-fast's design: per layer, keys and values live in buffers allocated once for the whole
generation (prompt + new tokens); a decoding step writes its one new key and value in place
and attends over a view, so no step copies the past.
"""

from __future__ import annotations

from typing import Any

import torch


class KVCache:
    """Keys and values of the tokens seen so far, per layer, in preallocated buffers of shape
    (batch, kv_heads, capacity, head_dim). ``capacity`` is a hint (generate() passes the final
    length); the buffers grow by doubling when a forward goes past it."""

    def __init__(self, capacity: int = 0):
        self.capacity = capacity
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths: list[int] = []

    def get_seq_length(self, layer: int = 0) -> int:
        """How many tokens are cached (the past length of the next forward)."""
        return self.lengths[layer] if layer < len(self.lengths) else 0

    def __len__(self) -> int:
        return len(self.keys)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer: int):
        """Append the new (batch, kv_heads, new, head_dim) keys and values of ``layer``; return
        views of all its cached keys and values, past and new."""
        if layer == len(self.keys):  # first forward: allocate this layer's buffers
            batch, heads, new, _ = key.shape
            size = max(self.capacity, new)
            self.keys.append(key.new_empty(batch, heads, size, key.shape[-1]))
            self.values.append(value.new_empty(batch, heads, size, value.shape[-1]))
            self.lengths.append(0)
        start = self.lengths[layer]
        end = start + key.shape[2]
        if end > self.keys[layer].shape[2]:
            self._grow(layer, max(end, 2 * self.keys[layer].shape[2]))
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def _grow(self, layer: int, size: int) -> None:
        used = self.lengths[layer]
        for store in (self.keys, self.values):
            old = store[layer]
            new = old.new_empty(old.shape[0], old.shape[1], size, old.shape[3])
            new[:, :, :used] = old[:, :, :used]
            store[layer] = new

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i of the batch becomes row ``beam_idx[i]`` of the old batch."""
        for layer, used in enumerate(self.lengths):
            for store in (self.keys, self.values):
                index = beam_idx.to(store[layer].device)
                store[layer][:, :, :used] = store[layer][:, :, :used].index_select(0, index)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` tokens (a negative length drops that many from the end)."""
        for layer, used in enumerate(self.lengths):
            self.lengths[layer] = max(0, used + length if length < 0 else min(used, length))


class EncoderDecoderCache:
    """An encoder-decoder's decoding cache: the decoder's self-attention ``KVCache``, and per
    layer the cross-attention keys and values of the encoder states, computed on the first step
    and reused after. Beam search reorders only the self-attention part: a beam stays within
    its batch item, whose encoder states (and so cross keys and values) are the same."""

    def __init__(self, capacity: int = 0):
        self.self_attention = KVCache(capacity)
        self.cross_keys: list[torch.Tensor] = []
        self.cross_values: list[torch.Tensor] = []

    def get_seq_length(self, layer: int = 0) -> int:
        return self.self_attention.get_seq_length(layer)

    def __len__(self) -> int:
        return len(self.self_attention)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer: int):
        return self.self_attention.update(key, value, layer)

    def cross(self, layer: int, project) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s cross-attention keys and values: ``project()`` -> (key, value)
        on the first call, the stored ones after."""
        if layer == len(self.cross_keys):
            key, value = project()
            self.cross_keys.append(key)
            self.cross_values.append(value)
        return self.cross_keys[layer], self.cross_values[layer]

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Only the rows whose beam changed are copied (often none at batch 1)."""
        cache = self.self_attention
        if not cache.keys:
            return
        rows = torch.nonzero(beam_idx.cpu() != torch.arange(len(beam_idx))).flatten()
        if len(rows) == 0:
            return
        sources = beam_idx.cpu()[rows]
        for layer, used in enumerate(cache.lengths):
            for store in (cache.keys, cache.values):
                buffer = store[layer]
                device = buffer.device
                buffer[rows.to(device), :, :used] = buffer[:, :, :used].index_select(0, sources.to(device))

    def crop(self, length: int) -> None:
        self.self_attention.crop(length)


def open_cache(cache: KVCache | None, past_key_values: KVCache | None, use_cache: bool | None,
               config: Any) -> tuple[KVCache | None, bool]:
    """The cache a decoder forward writes to: the one given (under either name), a new one
    when caching is on (default: ``config.use_cache``), or None."""
    cache = cache if cache is not None else past_key_values
    if use_cache is None:
        use_cache = config.use_cache
    if use_cache and cache is None:
        cache = KVCache()
    return cache, use_cache
