"""OPT (Zhang et al., 2022, arXiv:2205.01068), from opt-125m to the 1.3B of the accelerate
tutorial and beyond.

Matches transformers' ``models/opt/modeling_opt.py`` for inference. Parameter names are the
checkpoints' (``model.decoder.layers.0.self_attn.q_proj.weight``; checkpoints without the
``model.`` prefix load too). Learned positions with an offset of 2, pre- or post-layer-norm
blocks (opt-350m is post-norm, with 512-wide embeddings projected in and out).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .cache import open_cache
from .decoder import causal_mask, decoder_attention, lm_logits
from .layers import activation
from .linear import Linear

# 1. Config fields read, with the defaults config.json may leave out.
OPT_DEFAULTS = {
    "vocab_size": 50272,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "ffn_dim": 3072,
    "max_position_embeddings": 2048,
    "do_layer_norm_before": True,
    "_remove_final_layer_norm": False,
    "word_embed_proj_dim": None,  # None: hidden_size
    "num_attention_heads": 12,
    "activation_function": "relu",
    "enable_bias": True,
    "layer_norm_elementwise_affine": True,
    "use_cache": True,
}
_POSITION_OFFSET = 2  # OPT's position table starts with two unused rows


# 2. Modules.
class OPTAttention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        width, bias = config.hidden_size, config.enable_bias
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        if self.head_dim * self.num_heads != width:
            raise UnsupportedModelError(f"hidden_size {width} is not a multiple of "
                                        f"num_attention_heads {self.num_heads}.")
        self.scale = self.head_dim ** -0.5
        self.layer_idx = layer_idx
        self.k_proj = Linear(width, width, bias=bias)
        self.v_proj = Linear(width, width, bias=bias)
        self.q_proj = Linear(width, width, bias=bias)
        self.out_proj = Linear(width, width, bias=bias)

    def forward(self, hidden_states, mask, cache):
        batch, seq, width = hidden_states.shape
        shape = (batch, seq, self.num_heads, self.head_dim)
        # OPT scales the query before the dot product (and SDPA then by 1).
        query = (self.q_proj(hidden_states) * self.scale).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)  # (batch, heads, seq, head_dim)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        context = decoder_attention(query, key, value, mask, scale=1.0)
        return self.out_proj(context.transpose(1, 2).reshape(batch, seq, width))


class OPTDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        width, affine = config.hidden_size, config.layer_norm_elementwise_affine
        self.pre_norm = config.do_layer_norm_before
        self.self_attn = OPTAttention(config, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(width, elementwise_affine=affine)
        self.fc1 = Linear(width, config.ffn_dim, bias=config.enable_bias)
        self.fc2 = Linear(config.ffn_dim, width, bias=config.enable_bias)
        self.final_layer_norm = nn.LayerNorm(width, elementwise_affine=affine)
        self.act = activation(config.activation_function)

    def forward(self, hidden_states, mask, cache):
        attention_in = self.self_attn_layer_norm(hidden_states) if self.pre_norm else hidden_states
        hidden_states = hidden_states + self.self_attn(attention_in, mask, cache)
        if not self.pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        mlp_in = self.final_layer_norm(hidden_states) if self.pre_norm else hidden_states
        hidden_states = hidden_states + self.fc2(self.act(self.fc1(mlp_in)))
        if not self.pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states


class OPTPreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    config_defaults = OPT_DEFAULTS

    def __init__(self, config):
        super().__init__(config)
        if config.word_embed_proj_dim is None:
            config.word_embed_proj_dim = config.hidden_size

    def max_positions(self) -> int:
        return self.config.max_position_embeddings


class OPTDecoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        width, embed = config.hidden_size, config.word_embed_proj_dim
        self.embed_tokens = nn.Embedding(config.vocab_size, embed)
        self.embed_positions = nn.Embedding(config.max_position_embeddings + _POSITION_OFFSET, width)
        self.project_in = Linear(embed, width, bias=False) if embed != width else None
        self.project_out = Linear(width, embed, bias=False) if embed != width else None
        final_norm = config.do_layer_norm_before and not config._remove_final_layer_norm
        self.final_layer_norm = nn.LayerNorm(
            width, elementwise_affine=config.layer_norm_elementwise_affine) if final_norm else None
        self.layers = nn.ModuleList(OPTDecoderLayer(config, i) for i in range(config.num_hidden_layers))

    def forward(self, input_ids, attention_mask, position_ids, cache, inputs_embeds):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, seq, _ = inputs_embeds.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:  # count real tokens only: left padding does not shift positions
            seen = attention_mask if attention_mask is not None else \
                torch.ones(batch, past + seq, device=inputs_embeds.device, dtype=torch.long)
            position_ids = ((seen.cumsum(dim=1) * seen).long() - 1)[:, past:]
        limit = self.embed_positions.num_embeddings - _POSITION_OFFSET
        if int(position_ids.max()) >= limit:
            raise InputError(f"The input reaches position {int(position_ids.max())} but this model "
                             f"reads at most {limit} positions. Truncate it.")
        if self.project_in is not None:
            inputs_embeds = self.project_in(inputs_embeds)
        hidden_states = inputs_embeds + self.embed_positions(position_ids + _POSITION_OFFSET)
        mask = causal_mask(attention_mask, seq, past, hidden_states.device)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, cache)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        if self.project_out is not None:
            hidden_states = self.project_out(hidden_states)
        return hidden_states


class OPTModel(OPTPreTrainedModel):
    """The decoder; ``last_hidden_state`` (batch, seq, word_embed_proj_dim) and the ``cache``."""

    def __init__(self, config):
        super().__init__(config)
        self.decoder = OPTDecoder(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, past_key_values=None, **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        cache, use_cache = open_cache(cache, past_key_values, use_cache, self.config)
        hidden_states = self.decoder(input_ids, attention_mask, position_ids, cache, inputs_embeds)
        return ModelOutput(last_hidden_state=hidden_states, cache=cache if use_cache else None)


# 3. Heads.
class OPTForCausalLM(GenerationMixin, OPTPreTrainedModel):
    tied_weights = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
    learned_positions = True

    def __init__(self, config):
        super().__init__(config)
        self.model = OPTModel(config)
        self.lm_head = Linear(config.word_embed_proj_dim, config.vocab_size, bias=False)

    def active_ties(self) -> dict[str, str]:
        return dict(self.tied_weights) if self.config.tie_word_embeddings else {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, logits_to_keep: int = 0, **kwargs) -> ModelOutput:
        out = self.model(input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache, **kwargs)
        return lm_logits(self.lm_head, out, logits_to_keep)


# model_type -> head -> class, read by models/__init__.py
HEADS = {
    "AutoModel": OPTModel,
    "AutoModelForCausalLM": OPTForCausalLM,
}
