"""GPT-NeoX (Black et al., 2022, arXiv:2204.06745): EleutherAI's GPT-NeoX-20B and the Pythia
suite (arXiv:2304.01373).

Matches transformers' ``models/gpt_neox/modeling_gpt_neox.py``. A pre-LayerNorm decoder with
one fused projection ``query_key_value`` laid out per head (each head's query, key and value
side by side: ``(heads, 3 * head_dim)``), RoPE on the first ``rotary_pct`` of each head's
dimensions only (partial rotary; the rest pass through), a GELU MLP, biases everywhere, and a
parallel residual by default: ``x + attention(ln1(x)) + mlp(ln2(x))``; with
``use_parallel_residual: false`` the sequential ``h = x + attention(ln1(x)); h + mlp(ln2(h))``.
The LM head (``embed_out``) is untied by default. Parameter names are the checkpoints'
(``gpt_neox.layers.0.attention.query_key_value.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .cache import open_cache
from .decoder import causal_mask, decoder_attention, last_token_logits, lm_logits
from .layers import activation
from .linear import Linear
from .llama import RotaryEmbedding

# 1. Config fields read, with the defaults config.json may leave out (GPTNeoXConfig's).
GPT_NEOX_DEFAULTS = {
    "vocab_size": 50432,
    "hidden_size": 6144,
    "num_hidden_layers": 44,
    "num_attention_heads": 64,
    "intermediate_size": 24576,
    "hidden_act": "gelu",
    "max_position_embeddings": 2048,
    "layer_norm_eps": 1e-5,
    "use_cache": True,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "use_parallel_residual": True,
    "attention_bias": True,
    "rotary_pct": 0.25,
    "rotary_emb_base": 10000.0,
    "classifier_dropout": 0.1,
}


def rope_settings(config) -> dict:
    """RoPE settings: transformers 5's ``rope_parameters`` or the older ``rope_scaling`` plus
    the checkpoints' ``rotary_emb_base`` and ``rotary_pct``."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", config.rotary_emb_base)
    params.setdefault("partial_rotary_factor", config.rotary_pct)
    if params["rope_type"] not in ("default", "linear", "dynamic"):
        raise UnsupportedModelError(f"GPT-NeoX with rope_type {params['rope_type']!r} is not "
                                    "supported; lightpipe runs default, linear and dynamic.")
    return params


# 2. Modules.
class GPTNeoXAttention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise UnsupportedModelError(f"hidden_size {config.hidden_size} is not a multiple of "
                                        f"num_attention_heads {config.num_attention_heads}.")
        self.layer_idx = layer_idx
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rotary_dims = int(self.head_dim * rope_settings(config)["partial_rotary_factor"])
        bias = bool(config.attention_bias)
        self.query_key_value = Linear(config.hidden_size, 3 * config.hidden_size, bias=bias)
        self.dense = Linear(config.hidden_size, config.hidden_size, bias=bias)

    def forward(self, hidden_states, cos, sin, mask, cache):
        batch, seq, _ = hidden_states.shape
        qkv = self.query_key_value(hidden_states).view(batch, seq, -1, 3 * self.head_dim)
        query, key, value = qkv.transpose(1, 2).chunk(3, dim=-1)  # (batch, heads, seq, head_dim)
        query, key = self.rotate(query, cos, sin), self.rotate(key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        context = decoder_attention(query, key, value, mask, scale=self.head_dim ** -0.5)
        return self.dense(context.transpose(1, 2).reshape(batch, seq, -1))

    def rotate(self, tensor, cos, signed_sin):
        """RoPE on the first ``rotary_dims`` of each head; the rest unchanged."""
        dims = self.rotary_dims
        turned, kept = tensor[..., :dims], tensor[..., dims:]
        half = dims // 2
        swapped = torch.cat((turned[..., half:], turned[..., :half]), dim=-1)
        return torch.cat((turned * cos + swapped * signed_sin, kept), dim=-1)


class GPTNeoXMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense_h_to_4h = Linear(config.hidden_size, config.intermediate_size)
        self.dense_4h_to_h = Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.dense_4h_to_h(self.act(self.dense_h_to_4h(hidden_states)))


class GPTNeoXLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.parallel = bool(config.use_parallel_residual)
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = GPTNeoXAttention(config, layer_idx)
        self.mlp = GPTNeoXMLP(config)

    def forward(self, hidden_states, cos, sin, mask, cache):
        attended = self.attention(self.input_layernorm(hidden_states), cos, sin, mask, cache)
        if self.parallel:  # both branches read the layer's input
            return self.mlp(self.post_attention_layernorm(hidden_states)) + attended + hidden_states
        attended = attended + hidden_states
        return self.mlp(self.post_attention_layernorm(attended)) + attended


class GPTNeoXPreTrainedModel(PreTrainedModel):
    base_model_prefix = "gpt_neox"
    config_defaults = GPT_NEOX_DEFAULTS
    # buffers of old checkpoints (the causal mask), not weights
    ignored_weights = [r"attention\.(bias|masked_bias)$", r"attention\.rotary_emb\.inv_freq$"]

    def max_positions(self) -> int:
        return self.config.max_position_embeddings


class GPTNeoXModel(GPTNeoXPreTrainedModel):
    """The decoder; ``last_hidden_state`` (batch, seq, hidden) after the final norm, and the
    ``cache``."""

    def __init__(self, config):
        super().__init__(config)
        self.embed_in = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(GPTNeoXLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        rotary_dims = self.layers[0].attention.rotary_dims if self.layers else 0
        self.rotary_emb = RotaryEmbedding(config, rotary_dims, rope_settings(config))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_in

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, past_key_values=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_in(input_ids)
        cache, use_cache = open_cache(cache, past_key_values, use_cache, self.config)
        seq = inputs_embeds.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=inputs_embeds.device)[None, :]
        mask = causal_mask(attention_mask, seq, past, inputs_embeds.device)
        cos, sin = self.rotary_emb(position_ids, inputs_embeds.dtype)
        hidden_states = inputs_embeds
        all_states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos, sin, mask, cache)
            if all_states is not None:
                all_states.append(hidden_states)
        hidden_states = self.final_layer_norm(hidden_states)
        if all_states is not None:
            all_states[-1] = hidden_states  # as the reference: the last one after the norm
        return ModelOutput(last_hidden_state=hidden_states, cache=cache if use_cache else None,
                           hidden_states=tuple(all_states) if all_states else None)


# 3. Heads.
class GPTNeoXForCausalLM(GenerationMixin, GPTNeoXPreTrainedModel):
    tied_weights = {"embed_out.weight": "gpt_neox.embed_in.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.gpt_neox = GPTNeoXModel(config)
        self.embed_out = Linear(config.hidden_size, config.vocab_size, bias=False)

    def active_ties(self) -> dict[str, str]:
        return dict(self.tied_weights) if self.config.tie_word_embeddings else {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.gpt_neox.embed_in

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, logits_to_keep: int = 0,
                output_hidden_states=False, **kwargs) -> ModelOutput:
        out = self.gpt_neox(input_ids, attention_mask, position_ids, cache, inputs_embeds,
                            use_cache, output_hidden_states=output_hidden_states, **kwargs)
        result = lm_logits(self.embed_out, out, logits_to_keep)
        if output_hidden_states:
            result["hidden_states"] = out.hidden_states
        return result


class GPTNeoXForSequenceClassification(GPTNeoXPreTrainedModel):
    optional_weights = [r"^score\."]

    def __init__(self, config):
        super().__init__(config)
        self.gpt_neox = GPTNeoXModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        out = self.gpt_neox(input_ids, attention_mask, position_ids, None, inputs_embeds,
                            use_cache=False, output_hidden_states=output_hidden_states)
        logits = self.score(out.last_hidden_state)
        pad_token_id = self.config.get("pad_token_id")
        return ModelOutput(logits=last_token_logits(logits, input_ids, pad_token_id),
                           hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": GPTNeoXModel,
    "AutoModelForCausalLM": GPTNeoXForCausalLM,
    "AutoModelForSequenceClassification": GPTNeoXForSequenceClassification,
}
