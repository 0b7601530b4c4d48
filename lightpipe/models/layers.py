"""Blocks shared by several model families: activations, attention through
``scaled_dot_product_attention``, padding masks, and BERT's self-attention and intermediate
layer (ViT's and VideoMAE's too)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _gelu_python(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_python": _gelu_python,
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_new,
    "gelu_pytorch_tanh": _gelu_new,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "mish": F.mish,
}


def activation(name: str):
    """The activation function named in a config (``hidden_act``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UnsupportedModelError(
            f"Activation {name!r} is not supported; supported: {', '.join(sorted(ACTIVATIONS))}."
        ) from None


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(batch, seq) 1/0 mask -> a boolean (batch, 1, 1, seq) mask for SDPA, or None when nothing
    is padded (SDPA's fastest path)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def split_heads(tensor: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, seq, hidden) -> (batch, heads, seq, head_dim)."""
    batch, seq, hidden = tensor.shape
    return tensor.view(batch, seq, num_heads, hidden // num_heads).transpose(1, 2)


def merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    """(batch, heads, seq, head_dim) -> (batch, seq, hidden)."""
    batch, heads, seq, head_dim = tensor.shape
    return tensor.transpose(1, 2).reshape(batch, seq, heads * head_dim)


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              mask: torch.Tensor | None, dropout: float = 0.0, is_causal: bool = False,
              scale: float | None = None) -> torch.Tensor:
    """Scaled dot-product attention over (batch, heads, seq, head_dim) tensors."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout,
                                          is_causal=is_causal, scale=scale)


def check_heads(hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads:
        raise UnsupportedModelError(f"hidden_size {hidden_size} is not a multiple of "
                                    f"num_attention_heads {num_heads}.")


class SelfAttention(nn.Module):
    """Multi-head self-attention over separate ``query``, ``key`` and ``value`` projections (the
    names of BERT's and ViT's checkpoints); the family adds the output projection."""

    def __init__(self, hidden_size: int, num_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        check_heads(hidden_size, num_heads)
        self.num_heads, self.dropout = num_heads, dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, hidden_states, mask=None, first_only: bool = False):
        """``first_only``: the first position's output alone (its keys still cover them all)."""
        queries = hidden_states[:, :1] if first_only else hidden_states
        query = split_heads(self.query(queries), self.num_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(self.key(hidden_states), self.num_heads)
        value = split_heads(self.value(hidden_states), self.num_heads)
        context = attention(query, key, value, mask, self.dropout if self.training else 0.0)
        return merge_heads(context)


def linear_act(layer: nn.Module, act, hidden_states: torch.Tensor) -> torch.Tensor:
    """``act(layer(x))``, through the layer's ``forward_act`` where it has one (an int8-dynamic
    layer fuses the GELU into its output pass)."""
    fused = getattr(layer, "forward_act", None)
    return act(layer(hidden_states)) if fused is None else fused(hidden_states, act)


class Intermediate(nn.Module):
    """``act(dense(x))``, the first half of BERT's and ViT's MLP (``intermediate.dense``)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden_states):
        return linear_act(self.dense, self.act, hidden_states)


def run_layers(layers, hidden_states: torch.Tensor, mask: torch.Tensor | None,
               output_hidden_states: bool = False, first_token_only: bool = False):
    """Apply encoder layers in turn -> (last hidden states, every layer's states or None).

    ``first_token_only``: the caller reads only the first position of the output (a
    sequence-classification head), so the last layer computes that row alone: its keys and
    values still cover the whole sequence, but its query, output projection and feed-forward
    run on one token instead of all of them (the last layer costs ~1/6 as much)."""
    all_states = [hidden_states] if output_hidden_states else None
    last = len(layers) - 1
    for index, layer in enumerate(layers):
        if first_token_only and index == last and all_states is None:
            hidden_states = layer(hidden_states, mask, first_only=True)
        else:
            hidden_states = layer(hidden_states, mask)
        if all_states is not None:
            all_states.append(hidden_states)
    return hidden_states, (tuple(all_states) if all_states is not None else None)
