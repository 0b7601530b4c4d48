"""WavLM (Chen et al., 2022, arXiv:2110.13900).

Matches transformers' ``models/wavlm/modeling_wavlm.py`` for inference. The feature encoder,
feature projection, positional convolution and feed-forward are Wav2Vec2's (imported from
``wav2vec2.py``); what WavLM adds is in its attention: a bucketed relative position bias
(T5-style buckets, learned by the first layer alone and shared by all), scaled per head and
position by a gate computed from each layer's input (the "gated relative position bias").
Heads: CTC and sequence classification. Parameter names are the Hub's
(``wavlm.encoder.layers.0.attention.gru_rel_pos_linear.weight``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import attention, merge_heads, split_heads
from .wav2vec2 import (
    WAV2VEC2_DEFAULTS,
    FeedForward,
    PositionalConvEmbedding,
    Wav2Vec2Model,
    speech_variant_heads,
)

# 1. Config fields read beyond Wav2Vec2's, with the defaults config.json may leave out.
WAVLM_DEFAULTS = {**WAV2VEC2_DEFAULTS, "num_buckets": 320, "max_bucket_distance": 800}


def relative_buckets(query_length: int, key_length: int, num_buckets: int, max_distance: int,
                     device: torch.device) -> torch.Tensor:
    """(query, key) bucket ids: half the buckets per direction, exact up to a quarter of them,
    then logarithmic up to ``max_distance``."""
    relative = (torch.arange(key_length, device=device)[None, :]
                - torch.arange(query_length, device=device)[:, None])
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    far = exact + (torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


# 2. Modules.
class WavLMAttention(nn.Module):
    def __init__(self, config, has_relative_position_bias: bool):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.num_buckets, self.max_distance = config.num_buckets, config.max_bucket_distance
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(hidden // self.num_heads, 8)
        if has_relative_position_bias:
            self.rel_attn_embed = nn.Embedding(self.num_buckets, self.num_heads)

    def position_bias(self, frames: int) -> torch.Tensor:
        """(1, heads, frames, frames) learned bias (first layer only)."""
        buckets = relative_buckets(frames, frames, self.num_buckets, self.max_distance,
                                   self.rel_attn_embed.weight.device)
        return self.rel_attn_embed(buckets).permute(2, 0, 1)[None]

    def forward(self, hidden_states: torch.Tensor, position_bias: torch.Tensor,
                padding: torch.Tensor | None) -> torch.Tensor:
        # The gate: per head and position, from the head's slice of the layer input.
        per_head = split_heads(hidden_states, self.num_heads)  # (batch, heads, frames, head_dim)
        gates = self.gru_rel_pos_linear(per_head).unflatten(-1, (2, 4)).sum(-1).sigmoid()
        gate_a, gate_b = gates.chunk(2, dim=-1)  # each (batch, heads, frames, 1)
        bias = (gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0) * position_bias
        if padding is not None:
            bias = bias + padding
        query = split_heads(self.q_proj(hidden_states), self.num_heads)
        key = split_heads(self.k_proj(hidden_states), self.num_heads)
        value = split_heads(self.v_proj(hidden_states), self.num_heads)
        return self.out_proj(merge_heads(attention(query, key, value, bias.to(query.dtype))))


class WavLMEncoderLayer(nn.Module):
    """Post-norm (``stable=False``) or pre-norm (``stable=True``) layer; the gate reads the
    attention's input (after the pre-norm in the stable variant)."""

    def __init__(self, config, stable: bool, first: bool):
        super().__init__()
        self.stable = stable
        self.attention = WavLMAttention(config, has_relative_position_bias=first)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, position_bias, padding):
        if self.stable:
            hidden_states = hidden_states + self.attention(self.layer_norm(hidden_states),
                                                           position_bias, padding)
            return hidden_states + self.feed_forward(self.final_layer_norm(hidden_states))
        hidden_states = self.layer_norm(hidden_states + self.attention(hidden_states, position_bias,
                                                                       padding))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))


class WavLMEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(WavLMEncoderLayer(config, self.stable, first=i == 0)
                                    for i in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor | None,
                output_hidden_states: bool = False):
        padding = None
        if frame_mask is not None:
            hidden_states = hidden_states.masked_fill(~frame_mask[..., None], 0.0)
            if not bool(frame_mask.all()):
                padding = torch.zeros(frame_mask.shape, dtype=hidden_states.dtype,
                                      device=hidden_states.device)
                padding = padding.masked_fill(~frame_mask, float("-inf"))[:, None, None, :]
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states)
        if not self.stable:
            hidden_states = self.layer_norm(hidden_states)
        position_bias = self.layers[0].attention.position_bias(hidden_states.shape[1])
        states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_bias, padding)
            if states is not None:
                states.append(hidden_states)
        if self.stable:
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states, (tuple(states) if states is not None else None)


class _WavLM:
    """What every WavLM class changes on its Wav2Vec2 counterpart."""

    model_type = "wavlm"
    base_model_prefix = "wavlm"
    config_defaults = WAVLM_DEFAULTS


class WavLMModel(_WavLM, Wav2Vec2Model):
    encoder_class = WavLMEncoder


# 3. Heads.
HEADS = speech_variant_heads(_WavLM, WavLMModel, "WavLM")
WavLMForCTC, WavLMForSequenceClassification = HEADS["AutoModelForCTC"], HEADS["AutoModelForSequenceClassification"]
