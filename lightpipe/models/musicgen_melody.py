"""MusicGen Melody (Copet et al., 2023, arXiv:2306.05284): MusicGen conditioned on a melody as
well as a text. The melody is a chromagram (one-hot pitch class per frame, from
MusicgenMelodyFeatureExtractor) projected to the decoder's width; the decoder has no
cross-attention: the melody's frames and the text's states go in front of the codes as a
prefix that the causal self-attention reads.

Matches transformers' ``models/musicgen_melody/modeling_musicgen_melody.py`` at inference.
Everything else is musicgen.py's (the delay pattern, guidance, the generation loop, EnCodec):

- The prefix: the chroma (batch, frames, num_chroma), projected (``audio_enc_to_dec_proj``),
  repeated then cut to ``chroma_length`` frames, then the text's T5 states (projected by
  ``enc_to_dec_proj``, padding zeroed but not masked). Without an audio input the chroma is one
  frame with bin 0 set; guidance's null row is that frame and a zero text.
- Positions count the prefix: the first code sits at position ``prefix length``.
- Inside generate() the prefix is read once, on the first step: the cache keeps its keys, and
  the loop's count of cached positions leaves it out (``PrefixCache``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..generation import GenerationConfig
from ..modeling import ModelOutput
from .cache import KVCache
from .musicgen import (MUSICGEN_DEFAULTS, MusicgenDecoder, MusicgenDecoderLayer,
                       MusicgenForConditionalGeneration)

MELODY_DEFAULTS: dict[str, Any] = {**MUSICGEN_DEFAULTS, "num_chroma": 12, "chroma_length": 235}


class MusicgenMelodyDecoderLayer(MusicgenDecoderLayer):
    """MusicGen's layer without the cross-attention: self-attention, MLP (pre-norm)."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        del self.encoder_attn, self.encoder_attn_layer_norm

    def forward(self, hidden_states, self_mask, cache):
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states),
                                                       self_mask, cache, causal=True)
        return hidden_states + self.fc2(self.act(self.fc1(self.final_layer_norm(hidden_states))))


class PrefixCache(KVCache):
    """A self-attention cache that also holds the conditioning prefix's keys; the generation
    loop counts code positions only, so ``get_seq_length`` leaves the prefix out."""

    def __init__(self, capacity: int, prefix: int):
        super().__init__(capacity + prefix)
        self.prefix = prefix

    def stored(self) -> int:
        return super().get_seq_length()

    def get_seq_length(self, layer: int = 0) -> int:
        return max(super().get_seq_length(layer) - self.prefix, 0)


class MusicgenMelodyDecoder(MusicgenDecoder):
    layer_class = MusicgenMelodyDecoderLayer

    def forward(self, input_ids, prefix=None, encoder_mask=None, cache=None, attention_mask=None):
        """(batch * codebooks, length) ids after the cache's past, with the prefix (batch,
        prefix length, hidden) in front while the cache is empty -> (batch, prefix + length,
        hidden)."""
        past = (cache.stored() if isinstance(cache, PrefixCache) else cache.get_seq_length()) if cache else 0
        hidden_states = self.code_embeddings(input_ids)
        if prefix is not None and past == 0:
            hidden_states = torch.cat([prefix.to(hidden_states.dtype), hidden_states], dim=1)
            if attention_mask is not None:  # codes' mask: the prefix is always read
                attention_mask = torch.cat([attention_mask.new_ones(prefix.shape[:2]), attention_mask], 1)
        hidden_states = self.with_positions(hidden_states, past)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            length = hidden_states.shape[1]
            keys = torch.ones(length, past + length, dtype=torch.bool, device=hidden_states.device).tril(past)
            mask = keys[None, None] & attention_mask[:, None, None, :past + length].bool()
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, cache)
        return self.layer_norm(hidden_states)


class MusicgenMelodyForConditionalGeneration(MusicgenForConditionalGeneration):
    """``generate(input_ids, attention_mask, input_features=chroma, guidance_scale=...)`` ->
    audio (batch, channels, samples); ``forward(input_ids, attention_mask, input_features,
    decoder_input_ids)`` -> ``logits`` (batch * codebooks, prefix + length, vocab)."""

    model_type = "musicgen_melody"
    config_defaults = MELODY_DEFAULTS
    decoder_class = MusicgenMelodyDecoder
    audio_prompts = False  # the reference's Melody continues no audio prompt
    conditioning_inputs = ("input_features",)
    multiple_samples = False  # the reference's fails on num_return_sequences > 1

    def __init__(self, config):
        super().__init__(config)
        hidden = config.decoder.hidden_size
        # (its own rules: the text is projected whenever the widths differ)
        if config.text_encoder.d_model != hidden and not hasattr(self, "enc_to_dec_proj"):
            self.enc_to_dec_proj = nn.Linear(config.text_encoder.d_model, hidden)
        if config.num_chroma != hidden:
            self.audio_enc_to_dec_proj = nn.Linear(config.num_chroma, hidden)

    def _chroma(self, input_features: torch.Tensor | None, batch: int, null: bool) -> torch.Tensor:
        """The chroma prefix (batch, chroma_length, hidden); ``null``: guidance's null rows
        (one frame with bin 0 set, as when no audio is given) after the batch's."""
        num_chroma = self.config.num_chroma
        if input_features is not None:
            if input_features.dim() != 3 or input_features.shape[-1] != num_chroma or input_features.shape[1] == 0:
                raise InputError(f"input_features must be a chromagram (batch, frames > 0, {num_chroma}) as "
                                 f"MusicgenMelodyFeatureExtractor gives it, got {tuple(input_features.shape)}.")
            if input_features.shape[0] != batch:
                raise InputError(f"Got {input_features.shape[0]} melodies (input_features) for {batch} text(s): "
                                 "give one melody per text.")
            chroma = input_features.to(self.device, self.dtype)
            empty = torch.zeros_like(chroma)
        else:
            chroma = empty = torch.zeros((batch, 1, num_chroma), device=self.device, dtype=self.dtype)
        empty = empty.clone()
        empty[:, :, 0] = 1
        if input_features is None:
            chroma = empty
        if null:
            chroma = torch.cat([chroma, empty])
        proj = getattr(self, "audio_enc_to_dec_proj", None)
        if proj is not None:
            chroma = proj(chroma)
        frames = self.config.chroma_length
        if chroma.shape[1] < frames:
            chroma = chroma.repeat(1, math.ceil(frames / chroma.shape[1]), 1)
        return chroma[:, :frames]

    def _conditioning(self, input_ids, attention_mask, encoder_outputs, guidance, input_features=None):
        """The prefix: the chroma's frames, then the text's states (padding zeroed); no mask."""
        if encoder_outputs is not None:
            raise InputError("MusicGen Melody takes the tokenized text (input_ids), not encoder_outputs; "
                             "for music without a text use the processor's get_unconditional_inputs().")
        text, _ = super()._conditioning(input_ids, attention_mask, None, guidance)
        batch = text.shape[0] // (2 if guidance is not None else 1)
        chroma = self._chroma(input_features, batch, guidance is not None)
        return torch.cat([chroma, text], dim=1), None

    def _new_cache(self, config: GenerationConfig, encoder_states: torch.Tensor) -> PrefixCache:
        return PrefixCache(config.max_length, encoder_states.shape[1])

    def forward(self, input_ids=None, attention_mask=None, input_features=None, decoder_input_ids=None,
                decoder_attention_mask=None, use_cache=None, logits_to_keep: int = 0, **unused) -> ModelOutput:
        if decoder_input_ids is None:
            raise InputError("Pass decoder_input_ids (batch * num_codebooks, length).")
        if input_ids is None:
            raise InputError("Pass input_ids (the tokenized text).")
        prefix, _ = self._conditioning(input_ids, attention_mask, None, None, input_features)
        cache = PrefixCache(0, prefix.shape[1]) if use_cache else None
        out = self.decode(decoder_input_ids, prefix, None, cache, bool(use_cache), logits_to_keep,
                          decoder_attention_mask)
        return ModelOutput(logits=out.logits, cache=out.get("cache"), encoder_hidden_states=prefix)


HEADS = {"AutoModelForTextToWaveform": MusicgenMelodyForConditionalGeneration}
