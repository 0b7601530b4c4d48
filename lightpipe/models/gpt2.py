"""GPT-2 (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners").

Matches transformers' ``models/gpt2/modeling_gpt2.py`` for inference. Parameter names are the
Hub checkpoints' (``transformer.h.0.attn.c_attn.weight``); the projections are GPT-2's
``Conv1D``, a linear layer whose weight is stored (in, out), kept as it is so checkpoints load
without a transpose. Old checkpoints without the ``transformer.`` prefix load too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .cache import open_cache
from .decoder import causal_mask, decoder_attention, lm_logits
from .layers import activation
from .linear import Linear, PackableLinear, linear, linear_add, linear_gelu_tanh

# 1. Config fields read, with the defaults config.json may leave out.
GPT2_DEFAULTS = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
    "initializer_range": 0.02,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "use_cache": True,
}


# 2. Modules.
def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh GELU. In float32 the fused kernel equals the reference to ~1e-7; in lower
    precision it is written out as the reference computes it (the fused kernel rounds
    differently there, and greedy choices could drift)."""
    if x.dtype == torch.float32:
        return F.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(PackableLinear, nn.Module):
    """A linear layer with its weight stored (in_features, out_features)."""

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def dense_weight(self) -> torch.Tensor:
        return self.weight.t()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return linear(hidden_states, self.weight.t(), self.bias, self.packed_weight())

    def forward_add(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + self(hidden_states)``, fused where it can be (see ``linear_add``)."""
        return linear_add(hidden_states, self.weight.t(), self.bias, self.packed_weight(), residual)

    def forward_gelu_tanh(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``gelu_new(self(hidden_states))``, fused in float32 on the CPU."""
        fused = linear_gelu_tanh(hidden_states, self.weight.t(), self.bias, self.packed_weight())
        return gelu_new(self(hidden_states)) if fused is None else fused


class GPT2Attention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.num_heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        if self.head_dim * self.num_heads != config.n_embd:
            raise UnsupportedModelError(f"n_embd {config.n_embd} is not a multiple of n_head {config.n_head}.")
        self.scale = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.layer_idx = layer_idx
        self.c_attn = Conv1D(3 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def forward(self, hidden_states, mask, cache):
        return self.c_proj(self.context(hidden_states, mask, cache))

    def context(self, hidden_states, mask, cache):
        """The attention's output before ``c_proj``: (batch, seq, width)."""
        batch, seq, width = hidden_states.shape
        # (batch, seq, 3 * width) -> 3 x (batch, heads, seq, head_dim)
        qkv = self.c_attn(hidden_states).view(batch, seq, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        context = decoder_attention(query, key, value, mask, scale=self.scale)
        return context.transpose(1, 2).reshape(batch, seq, width)


class GPT2MLP(nn.Module):
    def __init__(self, inner: int, config):
        super().__init__()
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        name = config.activation_function
        self.act = gelu_new if name == "gelu_new" else activation(name)

    def forward(self, hidden_states):
        return self.c_proj(self.act(self.c_fc(hidden_states)))

    def add_to(self, hidden_states, residual):
        """``residual + self(hidden_states)`` with the activation and the residual fused into
        the products where they can be (float32 on the CPU)."""
        if self.act is gelu_new:
            inner = self.c_fc.forward_gelu_tanh(hidden_states)
        else:
            inner = self.act(self.c_fc(hidden_states))
        return self.c_proj.forward_add(inner, residual)


class GPT2Block(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner, config)

    def forward(self, hidden_states, mask, cache):
        context = self.attn.context(self.ln_1(hidden_states), mask, cache)
        hidden_states = self.attn.c_proj.forward_add(context, hidden_states)
        return self.mlp.add_to(self.ln_2(hidden_states), hidden_states)


class GPT2PreTrainedModel(PreTrainedModel):
    base_model_prefix = "transformer"
    config_defaults = GPT2_DEFAULTS
    # The causal-mask buffers old checkpoints saved with every attention layer.
    ignored_weights = [r"\.attn\.bias$", r"\.attn\.masked_bias$"]

    def max_positions(self) -> int:
        return self.config.n_positions


class GPT2Model(GPT2PreTrainedModel):
    """The decoder; ``last_hidden_state`` (batch, seq, n_embd) and the ``cache``."""

    def __init__(self, config):
        super().__init__(config)
        if config.add_cross_attention:
            raise UnsupportedModelError("GPT-2 with cross-attention (add_cross_attention=True) is "
                                        "not supported by lightpipe.")
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, token_type_ids=None, past_key_values=None,
                **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        cache, use_cache = open_cache(cache, past_key_values, use_cache, self.config)
        batch, seq, _ = inputs_embeds.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=inputs_embeds.device)[None, :]
        if int(position_ids.max()) >= self.wpe.num_embeddings:
            raise InputError(f"The input reaches position {int(position_ids.max())} but this model "
                             f"reads at most {self.wpe.num_embeddings} positions. Truncate it.")
        hidden_states = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids)
        mask = causal_mask(attention_mask, seq, past, hidden_states.device)
        plan = self.__dict__.get("decode_plan")
        if plan is not None and seq == 1 and cache is not None:
            hidden_states = self._decode_one(hidden_states, mask, cache, plan)
        else:
            for block in self.h:
                hidden_states = block(hidden_states, mask, cache)
        return ModelOutput(last_hidden_state=self.ln_f(hidden_states),
                           cache=cache if use_cache else None)


    # generate()'s decoding steps (one new token per row) skip the module calls: their Python
    # and the look-ups of ~150 small operations cost about 5% of a GPT-2-small step on the CPU,
    # more than when measured alone, as streaming the weights evicts the interpreter's data
    # from the caches. The maths is the blocks' own, operation for operation.
    def make_decode_plan(self) -> list[tuple]:
        """The tensors of every block, resolved once (per generate() call: the packed weights
        are current then); see ``_decode_one``."""
        plan = []
        for block in self.h:
            attn, mlp = block.attn, block.mlp
            norms = [(norm.normalized_shape, norm.weight, norm.bias, norm.eps)
                     for norm in (block.ln_1, block.ln_2)]
            plan.append((norms[0], attn.scale, norms[1], mlp.act is gelu_new, mlp.act) + tuple(
                (layer.weight.t(), layer.bias, layer.packed_weight())
                for layer in (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)))
        return plan

    def _decode_one(self, hidden_states, mask, cache, plan):
        batch, _, width = hidden_states.shape
        heads = self.config.n_head
        for index, (ln_1, scale, ln_2, tanh_gelu, act, c_attn, c_proj, c_fc, fc_proj) in enumerate(plan):
            x = F.layer_norm(hidden_states, *ln_1)
            qkv = linear(x, *c_attn).view(batch, 3, heads, 1, width // heads)
            key, value = cache.update(qkv[:, 1], qkv[:, 2], index)
            context = decoder_attention(qkv[:, 0], key, value, mask, scale=scale)
            hidden_states = linear_add(context.reshape(batch, 1, width), *c_proj, hidden_states)
            x = F.layer_norm(hidden_states, *ln_2)
            inner = linear_gelu_tanh(x, *c_fc) if tanh_gelu else None
            if inner is None:
                inner = act(linear(x, *c_fc))
            hidden_states = linear_add(inner, *fc_proj, hidden_states)
        return hidden_states


# 3. Heads.
class GPT2LMHeadModel(GenerationMixin, GPT2PreTrainedModel):
    tied_weights = {"lm_head.weight": "transformer.wte.weight"}
    learned_positions = True

    def __init__(self, config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)

    def active_ties(self) -> dict[str, str]:
        return dict(self.tied_weights) if self.config.tie_word_embeddings else {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def begin_decode(self) -> None:
        self.transformer.decode_plan = self.transformer.make_decode_plan()

    def end_decode(self) -> None:
        self.transformer.__dict__.pop("decode_plan", None)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, logits_to_keep: int = 0, **kwargs) -> ModelOutput:
        out = self.transformer(input_ids, attention_mask, position_ids, cache, inputs_embeds,
                               use_cache, **kwargs)
        return lm_logits(self.lm_head, out, logits_to_keep)


# model_type -> head -> class, read by models/__init__.py
HEADS = {
    "AutoModel": GPT2Model,
    "AutoModelForCausalLM": GPT2LMHeadModel,
}
