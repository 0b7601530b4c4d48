"""Phi-3 (Abdin et al., 2024, arXiv:2404.14219), Phi-3.5 and Phi-4 (mini and 14B), which
transformers runs as ``model_type`` "phi3".

Matches transformers' ``models/phi3/modeling_phi3.py``. Llama's decoder layer (``llama.py``)
over fused projections: one ``qkv_proj`` (queries, then keys, then values) and one
``gate_up_proj`` (gate, then up). Its RoPE may rotate only the first
``partial_rotary_factor`` of each head (Phi-4-mini) and may be LongRoPE (the 128k-context
models; "su" in older configs): per-frequency ``short_factor`` divisors up to
``original_max_position_embeddings`` positions, ``long_factor`` ones beyond, cos and sin
scaled by sqrt(1 + ln(factor) / ln(original length)). Every layer attends within
``sliding_window`` when the config sets one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import activation
from .linear import Linear
from .llama import (LLAMA_DEFAULTS, LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaModel, RMSNorm,
                    RotaryEmbedding, head_dim_of, rotate)

# 1. Config fields read, with the defaults config.json may leave out (Phi3Config's).
PHI3_DEFAULTS = {**LLAMA_DEFAULTS, "vocab_size": 32064, "hidden_size": 3072,
                 "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
                 "rms_norm_eps": 1e-5, "sliding_window": None, "tie_word_embeddings": False}


# 2. RoPE: the default kind or LongRoPE, over the rotated part of each head.
def phi3_rope_parameters(config) -> dict:
    """The RoPE settings as Phi3Config reads them: ``rope_parameters`` (or the older
    ``rope_scaling``), ``rope_theta`` and ``partial_rotary_factor``; "su" and "yarn" are the
    old names of "longrope", whose trained length is the config's
    ``original_max_position_embeddings``."""
    params = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    params.setdefault("rope_type", params.get("type", "default"))
    if params["rope_type"] in ("su", "yarn"):
        params["rope_type"] = "longrope"
    params.setdefault("rope_theta", config.get("rope_theta") or 10000.0)
    params.setdefault("partial_rotary_factor", config.get("partial_rotary_factor") or 1.0)
    if params["rope_type"] == "longrope":
        params["original_max_position_embeddings"] = config.original_max_position_embeddings
    return params


class Phi3RotaryEmbedding(RotaryEmbedding):
    """cos and signed sin over the first ``partial_rotary_factor`` of each head; LongRoPE
    keeps its short and long inverse frequencies as the rows of ``inv_freq``."""

    def __init__(self, config, head_dim: int):
        params = phi3_rope_parameters(config)
        super().__init__(config, int(head_dim * params["partial_rotary_factor"]), params)

    def compute(self) -> tuple[torch.Tensor, float]:
        params = self.params
        if params["rope_type"] != "longrope":
            return super().compute()
        trained = params["original_max_position_embeddings"]
        factor = params.get("factor") or self.max_positions / trained
        scaling = params.get("attention_factor")
        if scaling is None:
            scaling = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(trained))
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
        frequencies = params["rope_theta"] ** exponents
        short, long = (1.0 / (torch.tensor(params[name], dtype=torch.float32) * frequencies)
                       for name in ("short_factor", "long_factor"))
        return torch.stack((short, long)), scaling  # (2, rotated dims / 2)

    def frequencies(self, position_ids: torch.Tensor) -> torch.Tensor:
        if self.params["rope_type"] != "longrope":
            return super().frequencies(position_ids)
        # The long factors once the positions go past the trained length (no host sync).
        beyond = position_ids.max() + 1 > self.params["original_max_position_embeddings"]
        return torch.where(beyond, self.inv_freq[1], self.inv_freq[0]).float()


def rotate_part(tensor: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the first cos.shape[-1] dims of each head; the rest pass through."""
    dims = cos.shape[-1]
    if dims == tensor.shape[-1]:
        return rotate(tensor, cos, signed_sin)
    return torch.cat((rotate(tensor[..., :dims], cos, signed_sin), tensor[..., dims:]), dim=-1)


# 3. Modules: fused projections under Llama's layer.
class Phi3Attention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        self.groups, self.scale, self.layer_idx = heads // kv_heads, self.head_dim ** -0.5, layer_idx
        self.sizes = [heads * self.head_dim, kv_heads * self.head_dim, kv_heads * self.head_dim]
        self.qkv_proj = Linear(config.hidden_size, sum(self.sizes), bias=False)
        self.o_proj = Linear(heads * self.head_dim, config.hidden_size, bias=False)

    attend = LlamaAttention.attend

    def forward(self, hidden_states, cos, sin, mask, cache):
        return self.o_proj(self.context(hidden_states, cos, sin, mask, cache))

    def context(self, hidden_states, cos, sin, mask, cache):
        """The attention's output before o_proj: (batch, seq, heads * head_dim)."""
        batch, seq, _ = hidden_states.shape
        shape = (batch, seq, -1, self.head_dim)
        query, key, value = (part.view(shape).transpose(1, 2)  # (batch, heads, seq, head_dim)
                             for part in self.qkv_proj(hidden_states).split(self.sizes, dim=-1))
        query, key = rotate_part(query, cos, sin), rotate_part(key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        return self.attend(query, key, value, mask).transpose(1, 2).reshape(batch, seq, -1)


class Phi3MLP(nn.Module):
    """SwiGLU from one fused product: down(act(gate) * up), [gate | up] = gate_up_proj(x)."""

    def __init__(self, config):
        super().__init__()
        self.gate_up_proj = Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act = activation(config.hidden_act)

    def inner(self, hidden_states):
        gate, up = self.gate_up_proj(hidden_states).chunk(2, dim=-1)
        return up * self.act(gate)

    def forward(self, hidden_states):
        return self.down_proj(self.inner(hidden_states))

    def add_to(self, hidden_states, residual):
        """``residual + self(hidden_states)``, the residual fused into down_proj's product."""
        return self.down_proj.forward_add(self.inner(hidden_states), residual)


class Phi3DecoderLayer(nn.Module):
    forward = LlamaDecoderLayer.forward  # the same pre-norm residual blocks

    def __init__(self, config, layer_idx: int, biases=None):
        super().__init__()
        self.self_attn = Phi3Attention(config, layer_idx)
        self.mlp = Phi3MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)


# 4. The model and its head.
class Phi3Variant:
    config_defaults = PHI3_DEFAULTS

    @staticmethod
    def sliding_windows(config):
        return [config.sliding_window] * config.num_hidden_layers


class Phi3Model(Phi3Variant, LlamaModel):
    layer_class = Phi3DecoderLayer
    rotary_class = Phi3RotaryEmbedding

    @staticmethod
    def layer_plan(layer, window, kind=None) -> tuple:
        """Llama's lean step over the fused products and the partial rotation."""
        attention, mlp = layer.self_attn, layer.mlp
        return (layer.input_layernorm, layer.post_attention_layernorm, None, None, window, kind,
                attention.head_dim, attention.attend, mlp.act, None, None, rotate_part,
                attention.sizes, [attention.qkv_proj.parts()], attention.o_proj.parts(),
                [mlp.gate_up_proj.parts()], mlp.down_proj.parts())


class Phi3ForCausalLM(Phi3Variant, LlamaForCausalLM):
    model_class = Phi3Model

    def keeps_cache(self, cache, length: int) -> bool:
        """LongRoPE: the step that takes the sequence past the trained length re-reads it all
        with the long factors (the reference drops its cache there too)."""
        params = self.model.rotary_emb.params
        if params["rope_type"] != "longrope":
            return True
        trained = params["original_max_position_embeddings"]
        return not (length > trained >= cache.get_seq_length())


# model_type -> head -> class, read by models/__init__.py
HEADS = {"AutoModel": Phi3Model, "AutoModelForCausalLM": Phi3ForCausalLM}
