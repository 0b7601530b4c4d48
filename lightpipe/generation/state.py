"""The state of one generate() call: the prepared prompt (``Prompt``), then the growing
sequences (``DecodeState``), whatever form the prompt came in (token ids, an encoder's input,
embeddings)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

PREALLOCATED_TOKENS = 4096

@dataclass
class Prompt:
    """A prompt ready to decode. ``input_ids`` are the ids the returned sequences start with;
    ``position_ids`` and ``attention_mask`` (None: no padding) cover every prompt position,
    including the ``offset`` embedded positions before those ids that have none."""

    input_ids: torch.Tensor  # (batch, ids)
    position_ids: torch.Tensor  # (batch, offset + ids)
    attention_mask: torch.Tensor | None
    eos: torch.Tensor | None  # the end-of-sequence ids, 1-D
    pad: int | None
    batch_size: int  # rows before expansion for beams / returned sequences
    offset: int = 0
    inputs_embeds: torch.Tensor | None = None  # (batch, offset + ids, hidden): the first step's
    encoder_states: torch.Tensor | None = None  # encoder-decoders: what the decoder attends to
    encoder_mask: torch.Tensor | None = None

    def repeat(self, times: int, share_encoder: bool = False) -> Prompt:
        """Each row repeated ``times`` times in place (one per beam / returned sequence).
        ``share_encoder``: the encoder states and mask stay one row per item (a model whose
        ``shares_encoder_states`` is set attends each item's rows to them once)."""
        if times == 1:
            return self
        kept = ("eos", "encoder_states", "encoder_mask") if share_encoder else ("eos",)
        tensors = {f.name: getattr(self, f.name) for f in fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor) and f.name not in kept}
        return replace(self, **{name: t.repeat_interleave(times, dim=0) for name, t in tensors.items()})


class DecodeState:
    """The growing sequences of a generate() call, in buffers sized for the final length:
    token ids, positions and (with padding) the attention mask. Positions, mask and ``length``
    count every prompt position, as the cache does; ``tokens()`` (what generate() returns)
    leaves out the first ``offset`` ones, embedded positions that have no ids."""

    def __init__(self, prompt: Prompt, max_length: int, cache: Any):
        self.offset = prompt.offset
        input_ids, position_ids, attention_mask = prompt.input_ids, prompt.position_ids, prompt.attention_mask
        if self.offset:
            no_ids = input_ids.new_zeros(input_ids.shape[0], self.offset)
            input_ids = torch.cat((no_ids, input_ids), dim=1)
        self.batch, self.length = input_ids.shape
        self.device = input_ids.device
        self.cache = cache
        self.prompt_embeds = prompt.inputs_embeds
        self.encoder_states, self.encoder_mask = prompt.encoder_states, prompt.encoder_mask
        # Buffers for at most PREALLOCATED_TOKENS new tokens, doubled when full (a huge
        # max_new_tokens that EOS ends early allocates nothing for the tokens never made).
        self._full = max(max_length + self.offset, self.length)
        size = min(self._full, self.length + PREALLOCATED_TOKENS)
        self._ids = input_ids.new_zeros(self.batch, size)
        self._ids[:, :self.length] = input_ids
        self.positions = position_ids.new_zeros(self.batch, size)
        self.positions[:, :self.length] = position_ids
        self.positions[:, self.length:] = position_ids[:, -1:] + torch.arange(
            1, size - self.length + 1, device=self.device)
        self._mask = None
        if attention_mask is not None:
            self._mask = attention_mask.new_ones(self.batch, size)
            self._mask[:, :self.length] = attention_mask

    @property
    def input_ids(self) -> torch.Tensor:
        """Every id position, the ones not generated yet included (offset positions: 0)."""
        return self._ids

    def tokens(self) -> torch.Tensor:
        """The sequences so far: (batch, length - offset)."""
        return self._ids[:, self.offset:self.length]

    def mask(self) -> torch.Tensor | None:
        return None if self._mask is None else self._mask[:, :self.length]

    def take_embeds(self) -> torch.Tensor:
        """The embedded prompt, once: the first step reads it into the cache."""
        embeds, self.prompt_embeds = self.prompt_embeds, None
        return embeds

    def append(self, next_tokens: torch.Tensor) -> None:
        if self.length >= self._ids.shape[1]:
            self._grow(self.length + 1)
        self._ids[:, self.length] = next_tokens
        self.length += 1

    def truncate(self, length: int) -> None:
        """Assisted generation: drop the positions from ``length`` on (rejected candidates)."""
        self.length = min(self.length, length)

    def replace(self, sequences: torch.Tensor) -> None:
        """Beam search: the surviving beams' tokens (reordered), one token longer."""
        self.length = self.offset + sequences.shape[1]
        if self.length > self._ids.shape[1]:
            self._grow(self.length)
        self._ids[:, self.offset:self.length] = sequences

    def _grow(self, needed: int) -> None:
        """Double the buffers (at least to ``needed``, at most to the final length); new
        positions continue one by one, new mask entries are 1."""
        old = self._ids.shape[1]
        size = min(max(2 * old, needed), max(self._full, needed))
        more = size - old
        self._ids = torch.cat((self._ids, self._ids.new_zeros(self.batch, more)), dim=1)
        steps = torch.arange(1, more + 1, device=self.device)
        self.positions = torch.cat((self.positions, self.positions[:, -1:] + steps), dim=1)
        if self._mask is not None:
            self._mask = torch.cat((self._mask, self._mask.new_ones(self.batch, more)), dim=1)
