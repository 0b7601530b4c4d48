"""Qwen3 (Qwen team, 2025, arXiv:2505.09388) and Qwen3-MoE, the sparse mixture-of-experts
variant (Qwen3-30B-A3B).

Matches transformers' ``models/qwen3/modeling_qwen3.py`` and
``models/qwen3_moe/modeling_qwen3_moe.py``. Qwen3 is Llama's maths (``llama.py``) plus a
per-head RMSNorm of queries and keys before RoPE (``q_norm``, ``k_norm``), an explicit
``head_dim`` (128 by default, not hidden / heads) and Qwen2's sliding-window fields. Qwen3-MoE
replaces the MLP of most layers with a routed block: a linear router (``mlp.gate``) picks the
``num_experts_per_tok`` best of ``num_experts`` SwiGLU experts per token and mixes their
outputs by the softmax of its scores (renormalised over the chosen ones when
``norm_topk_prob``). Parameter names are the Hub checkpoints' (``mlp.experts.3.up_proj``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear
from .llama import (LLAMA_DEFAULTS, LlamaDecoderLayer, LlamaMLP, LlamaModel, Qwen2Variant, RMSNorm,
                    variant_heads)

# 1. Config fields read, with the defaults config.json may leave out (Qwen3Config's).
QWEN3_DEFAULTS = {**LLAMA_DEFAULTS, "vocab_size": 151936, "intermediate_size": 22016,
                  "head_dim": 128, "max_position_embeddings": 32768, "use_sliding_window": False,
                  "sliding_window": 4096, "max_window_layers": 28, "tie_word_embeddings": False}
QWEN3_MOE_DEFAULTS = {**QWEN3_DEFAULTS, "hidden_size": 2048, "intermediate_size": 6144,
                      "num_hidden_layers": 24, "num_key_value_heads": 4, "head_dim": None,
                      "decoder_sparse_step": 1, "moe_intermediate_size": 768,
                      "num_experts_per_tok": 8, "norm_topk_prob": False, "mlp_only_layers": []}


# 2. Modules: Llama's layer with the q/k norms; the MoE block.
class Qwen3DecoderLayer(LlamaDecoderLayer):
    def __init__(self, config, layer_idx: int, biases: tuple[bool, bool, bool]):
        super().__init__(config, layer_idx, biases)
        attention = self.self_attn
        attention.q_norm = RMSNorm(attention.head_dim, config.rms_norm_eps)
        attention.k_norm = RMSNorm(attention.head_dim, config.rms_norm_eps)


class SparseMoeBlock(nn.Module):
    """Top-k routing over SwiGLU experts (``mlp.gate`` scores, ``mlp.experts.{i}``)."""

    def __init__(self, config):
        super().__init__()
        self.top_k, self.normalize = config.num_experts_per_tok, bool(config.norm_topk_prob)
        experts = num_experts(config)
        self.gate = Linear(config.hidden_size, experts, bias=False)
        self.experts = nn.ModuleList(LlamaMLP(config, False, config.moe_intermediate_size)
                                     for _ in range(experts))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        tokens = hidden_states.reshape(-1, shape[-1])  # (tokens, hidden)
        scores = self.gate(tokens)
        probs = F.softmax(scores, dim=-1, dtype=torch.float)  # (tokens, experts)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # (tokens, top_k)
        if self.normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights.to(scores.dtype)
        if tokens.shape[0] == 1:  # a decoding step at batch 1: the chosen experts in turn
            outputs = torch.stack([self.experts[expert](tokens)[0] for expert in chosen[0].tolist()])
            return (outputs * weights[0, :, None]).sum(dim=0).view(shape)
        # Each expert over the tokens routed to it; then per token the sum over its top-k
        # slots, in slot order, as the reference sums them (one rounding in half precision).
        weighted = tokens.new_empty(*chosen.shape, shape[-1])  # (tokens, top_k, hidden)
        for expert in torch.unique(chosen).tolist():
            rows, slots = torch.where(chosen == expert)
            weighted[rows, slots] = self.experts[expert](tokens[rows]) * weights[rows, slots, None]
        return weighted.sum(dim=1).view(shape)

    def add_to(self, hidden_states, residual):
        return residual + self(hidden_states)


def num_experts(config) -> int:
    """``num_experts`` (the Hub's configs) or ``num_local_experts`` (the reference saves that)."""
    for name in ("num_experts", "num_local_experts"):
        if config.get(name) is not None:
            return config.get(name)
    return 128


class Qwen3MoeDecoderLayer(Qwen3DecoderLayer):
    """The MoE block on every ``decoder_sparse_step``-th layer not in ``mlp_only_layers``."""

    def __init__(self, config, layer_idx: int, biases: tuple[bool, bool, bool]):
        super().__init__(config, layer_idx, biases)
        sparse = (layer_idx not in (config.mlp_only_layers or []) and num_experts(config) > 0
                  and (layer_idx + 1) % config.decoder_sparse_step == 0)
        if sparse:
            self.mlp = SparseMoeBlock(config)


# 3. The models: Qwen2's windows and defaults, the biases Qwen3 has.
class Qwen3Variant(Qwen2Variant):
    """q/k/v and o biases when ``attention_bias``; no MLP biases."""

    config_defaults = QWEN3_DEFAULTS

    @staticmethod
    def biases(config):
        return bool(config.attention_bias), bool(config.attention_bias), False


class Qwen3Model(Qwen3Variant, LlamaModel):
    layer_class = Qwen3DecoderLayer


class Qwen3MoeVariant(Qwen3Variant):
    """Every layer attends within ``sliding_window`` when ``use_sliding_window``."""

    config_defaults = QWEN3_MOE_DEFAULTS

    @staticmethod
    def sliding_windows(config):
        window = config.sliding_window if config.use_sliding_window else None
        return [window] * config.num_hidden_layers


class Qwen3MoeModel(Qwen3MoeVariant, LlamaModel):
    layer_class = Qwen3MoeDecoderLayer

    def make_decode_plan(self):
        return None  # the MoE blocks have no lean one-token path: the layers run as they are


# model_type -> head -> class, read by models/__init__.py
HEADS = variant_heads(Qwen3Variant, Qwen3Model, "Qwen3")
Qwen3ForCausalLM, Qwen3ForSequenceClassification = list(HEADS.values())[1:]
MOE_HEADS = variant_heads(Qwen3MoeVariant, Qwen3MoeModel, "Qwen3Moe")
Qwen3MoeForCausalLM, Qwen3MoeForSequenceClassification = list(MOE_HEADS.values())[1:]
