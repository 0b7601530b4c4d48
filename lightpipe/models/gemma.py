"""Gemma 2 (Gemma Team, 2024, arXiv:2408.00118) and Gemma 3's text model (arXiv:2503.19786;
Gemma 3 1B, and EmbeddingGemma with bidirectional attention).

Matches transformers' ``models/gemma2/modeling_gemma2.py`` and the text half of
``models/gemma3/modeling_gemma3.py``. Llama's attention and MLP (``llama.py``) with Gemma's
differences, all visible here: token embeddings scaled by sqrt(hidden_size); RMSNorms that
scale by ``1 + weight`` (computed in float32); a norm after attention and another around the
MLP (four per layer); GELU (tanh) gating; attention scaled by ``query_pre_attn_scalar ** -0.5``;
sliding-window and global layers in a pattern (``layer_types``, or every
``sliding_window_pattern``-th layer global). Gemma 2 soft-caps the attention scores and the
final logits (``cap * tanh(x / cap)``); Gemma 3 normalises queries and keys per head and gives
its sliding layers their own RoPE base (``rope_local_base_freq``).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput
from .cache import open_cache
from .decoder import LastTokenClassifier, causal_mask
from .layers import activation
from .llama import (LLAMA_DEFAULTS, LlamaAttention, LlamaForCausalLM, LlamaMLP, LlamaModel,
                    LlamaPreTrainedModel, RotaryEmbedding, head_dim_of, rope_parameters,
                    variant_heads)

# 1. Config fields read, with the defaults config.json may leave out (Gemma2Config's and
# Gemma3TextConfig's).
GEMMA2_DEFAULTS = {**LLAMA_DEFAULTS, "vocab_size": 256000, "hidden_size": 2304,
                   "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
                   "num_key_value_heads": 4, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
                   "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
                   "query_pre_attn_scalar": 256, "sliding_window": 4096, "layer_types": None,
                   "tie_word_embeddings": True}
GEMMA3_DEFAULTS = {**GEMMA2_DEFAULTS, "vocab_size": 262208, "max_position_embeddings": 131072,
                   "use_bidirectional_attention": False, "sliding_window_pattern": 6,
                   "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0}
# The soft caps, where null means none: kept out of the defaults above, which fill nulls.
SOFTCAPS = {"gemma2": {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}}
SLIDING, FULL = "sliding_attention", "full_attention"


def softcap_of(config, name: str) -> float | None:
    """A soft cap as config.json states it (null: none), else the family's default."""
    if name in config:
        return config.get(name)
    return SOFTCAPS.get(config.get("model_type"), {}).get(name)


def softcap(tensor: torch.Tensor, cap: float | None) -> torch.Tensor:
    """``cap * tanh(tensor / cap)``: values squashed smoothly into (-cap, cap)."""
    return tensor if cap is None else torch.tanh(tensor / cap) * cap


# 2. Modules.
class GemmaRMSNorm(nn.Module):
    """RMSNorm scaling by ``1 + weight`` in float32 (Llama's casts first, then scales)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # x * rsqrt(mean(x^2) + eps) * (1 + w) in float32, in one call (F.rms_norm does these
        # steps in this order; the unfused ops cost a decode step 3x the time)
        return F.rms_norm(hidden_states.float(), self.weight.shape, 1.0 + self.weight.float(),
                          self.eps).type_as(hidden_states)

    def step_function(self):
        """For a decode plan (weights fixed for one generate() call): with float32 weights one
        F.rms_norm call, ``1 + weight`` computed once (the same values; three fewer ops a call,
        and a one-token step makes 4-6 norm calls a layer); else the module itself."""
        if self.weight.dtype != torch.float32:
            return self
        return partial(F.rms_norm, normalized_shape=tuple(self.weight.shape),
                       weight=1.0 + self.weight.detach(), eps=self.eps)


class ScaledEmbedding(nn.Embedding):
    """Token embeddings times sqrt(hidden_size), the factor rounded to the weights' dtype."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(self.embedding_dim ** 0.5).to(self.weight.dtype)
        return super().forward(input_ids) * scale.to(self.weight.device)


class GemmaAttention(LlamaAttention):
    """Llama's attention scaled by ``query_pre_attn_scalar``, with Gemma 2's soft-capped
    scores, Gemma 3's q/k norms, and EmbeddingGemma's bidirectional attention."""

    def __init__(self, config, layer_idx: int, qk_norm: bool, cap: float | None):
        bias = bool(config.attention_bias)
        super().__init__(config, layer_idx, bias, bias)
        self.scale = config.query_pre_attn_scalar ** -0.5
        self.cap = cap
        self.causal = not config.get("use_bidirectional_attention")
        if qk_norm:
            self.q_norm = GemmaRMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = GemmaRMSNorm(self.head_dim, config.rms_norm_eps)

    def attend(self, query, key, value, mask):
        if self.cap is None and self.causal:
            return super().attend(query, key, value, mask)
        if self.cap is None:  # bidirectional: the mask (padding, window) is all there is
            if self.groups > 1:  # each key/value head serves `groups` query heads
                key = key.repeat_interleave(self.groups, dim=1)
                value = value.repeat_interleave(self.groups, dim=1)
            return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.scale)
        # Soft-capped scores, each key/value head's query heads taken as one block of rows
        # (batch, kv heads, groups * queries, dim): no copies of the keys and values.
        batch, heads, queries, dim = query.shape
        kv_heads, keys = key.shape[1], key.shape[2]
        rows = query.reshape(batch, kv_heads, self.groups * queries, dim)
        scores = softcap(torch.matmul(rows, key.transpose(2, 3)) * self.scale, self.cap)
        scores = scores.view(batch, kv_heads, self.groups, queries, keys)
        if mask is None and self.causal and queries > 1:
            positions = torch.arange(keys, device=query.device)
            mask = positions <= positions[keys - queries:, None]
        if mask is not None:  # (queries, keys), or (batch or 1, 1, queries, keys): per group
            mask = mask.unsqueeze(2) if mask.dim() == 4 else mask
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        context = torch.matmul(weights.view(batch, kv_heads, self.groups * queries, keys), value)
        return context.view(batch, heads, queries, dim)


class GemmaDecoderLayer(nn.Module):
    """Pre-norm attention and MLP, each output normalised again before the residual add."""

    def __init__(self, config, layer_idx: int, qk_norm: bool, cap: float | None):
        super().__init__()
        self.self_attn = GemmaAttention(config, layer_idx, qk_norm, cap)
        self.mlp = LlamaMLP(config, bias=False)
        self.mlp.act = activation(config.hidden_activation)
        eps = config.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.post_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps)

    def forward(self, hidden_states, cos, sin, mask, cache):
        attended = self.self_attn(self.input_layernorm(hidden_states), cos, sin, mask, cache)
        hidden_states = hidden_states + self.post_attention_layernorm(attended)
        fed = self.mlp(self.pre_feedforward_layernorm(hidden_states))
        return hidden_states + self.post_feedforward_layernorm(fed)


def bidirectional_mask(attention_mask: torch.Tensor | None, length: int, window: int | None,
                       device: torch.device) -> torch.Tensor | None:
    """EmbeddingGemma's (batch or 1, 1, seq, seq) boolean mask: every token sees every real
    token, within ``window`` positions either side on sliding layers; None when nothing is
    masked."""
    allowed = None
    if window is not None and length > window:
        positions = torch.arange(length, device=device)
        allowed = ((positions[None, :] - positions[:, None]).abs() < window)[None, None]
    if attention_mask is not None and not bool(attention_mask.all()):
        padding = attention_mask[:, None, None, :].to(device=device, dtype=torch.bool)
        allowed = padding if allowed is None else allowed & padding
    return allowed


# 3. The models.
class Gemma2PreTrainedModel(LlamaPreTrainedModel):
    config_defaults = GEMMA2_DEFAULTS
    qk_norm = False  # Gemma 3: per-head RMSNorms of queries and keys
    caps_attention = True  # Gemma 3 leaves attn_logit_softcapping unused, as the reference

    @staticmethod
    def layer_kinds(config) -> list[str]:
        """Each layer's kind, SLIDING or FULL: ``layer_types``, else Gemma 2's alternation."""
        return list(config.get("layer_types") or [
            SLIDING if (i + 1) % 2 else FULL for i in range(config.num_hidden_layers)])

    @staticmethod
    def rope_settings(config) -> dict[str, dict]:
        """{layer kind: RoPE settings}; Gemma 2 has one RoPE for both."""
        params = rope_parameters(config)
        return {SLIDING: params, FULL: params}


class Gemma2Model(Gemma2PreTrainedModel):
    """The decoder; ``last_hidden_state`` (batch, seq, hidden) and the ``cache``."""

    def __init__(self, config):
        super().__init__(config)
        self.kinds = self.layer_kinds(config)
        self.bidirectional = bool(config.get("use_bidirectional_attention"))
        window = config.sliding_window
        if self.bidirectional and window is not None:
            window = window // 2 + 1  # |query - key| < window, as the reference converts it
        self.windows = [window if kind == SLIDING else None for kind in self.kinds]
        self.embed_tokens = ScaledEmbedding(config.vocab_size, config.hidden_size)
        cap = softcap_of(config, "attn_logit_softcapping") if self.caps_attention else None
        self.layers = nn.ModuleList(GemmaDecoderLayer(config, i, self.qk_norm, cap)
                                    for i in range(config.num_hidden_layers))
        self.norm = GemmaRMSNorm(config.hidden_size, config.rms_norm_eps)
        settings = self.rope_settings(config)
        head_dim = head_dim_of(config)
        self.rotary_emb = RotaryEmbedding(config, head_dim, settings[FULL])
        self.rotary_emb_local = (None if settings[SLIDING] == settings[FULL]  # Gemma 2
                                 else RotaryEmbedding(config, head_dim, settings[SLIDING]))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def make_decode_plan(self) -> list[tuple] | None:
        """Llama's lean one-token step, with the sandwich norms and a RoPE per layer kind."""
        if self.bidirectional:
            return None
        plan = []
        for layer, kind, window in zip(self.layers, self.kinds, self.windows):
            step = list(LlamaModel.layer_plan(layer, window, kind))
            step[:4] = (layer.input_layernorm, layer.pre_feedforward_layernorm,
                        layer.post_attention_layernorm, layer.post_feedforward_layernorm)
            for at in (0, 1, 2, 3, 9, 10):  # the norms, and Gemma 3's q/k norms
                if step[at] is not None:
                    step[at] = step[at].step_function()
            plan.append(tuple(step))
        return plan

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, past_key_values=None, **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # given embeddings are not scaled
        if self.bidirectional:  # an encoder: no cache
            cache, use_cache = None, False
        else:
            cache, use_cache = open_cache(cache, past_key_values, use_cache, self.config)
        batch, seq, _ = inputs_embeds.shape
        past = cache.get_seq_length() if cache is not None else 0
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=device)[None, :]
        if self.bidirectional:
            masks = {w: bidirectional_mask(attention_mask, seq, w, device) for w in set(self.windows)}
        else:
            masks = {w: causal_mask(attention_mask, seq, past, device, w) for w in set(self.windows)}
        full = self.rotary_emb(position_ids, inputs_embeds.dtype)
        local = self.rotary_emb_local
        ropes = {FULL: full, SLIDING: full if local is None else local(position_ids, inputs_embeds.dtype)}
        hidden_states = inputs_embeds
        plan = self.__dict__.get("decode_plan")
        if plan is not None and seq == 1 and cache is not None:
            hidden_states = LlamaModel._decode_one(hidden_states, ropes, masks, cache, plan)
        else:
            for layer, kind, window in zip(self.layers, self.kinds, self.windows):
                hidden_states = layer(hidden_states, *ropes[kind], masks[window], cache)
        return ModelOutput(last_hidden_state=self.norm(hidden_states),
                           cache=cache if use_cache else None)


# 4. Heads.
class Gemma2ForCausalLM(LlamaForCausalLM, Gemma2PreTrainedModel):
    """Llama's head (tied by default) with the final logits soft-capped."""

    tie_word_embeddings_default = True
    model_class = Gemma2Model

    def forward(self, *args, **kwargs) -> ModelOutput:
        out = super().forward(*args, **kwargs)
        out["logits"] = softcap(out.logits, softcap_of(self.config, "final_logit_softcapping"))
        return out


# 5. The two generations: Gemma 2's defaults; Gemma 3's q/k norms, pattern and local RoPE.
class Gemma3Variant:
    config_defaults = GEMMA3_DEFAULTS
    qk_norm = True
    caps_attention = False

    @staticmethod
    def layer_kinds(config):
        """``layer_types``, else every ``sliding_window_pattern``-th layer global."""
        pattern = config.get("sliding_window_pattern") or 6
        return list(config.get("layer_types") or [
            SLIDING if (i + 1) % pattern else FULL for i in range(config.num_hidden_layers)])

    @staticmethod
    def rope_settings(config):
        """transformers 5's per-kind ``rope_parameters``, or the older fields: ``rope_theta``
        and ``rope_scaling`` for global layers, ``rope_local_base_freq`` for sliding ones."""
        nested = config.get("rope_parameters") or {}
        older = {FULL: dict(config.get("rope_scaling") or {}, rope_theta=config.rope_theta),
                 SLIDING: {"rope_theta": config.rope_local_base_freq}}
        settings = {}
        for kind in (FULL, SLIDING):
            params = dict(nested[kind]) if nested.get(kind) else older[kind]
            params.setdefault("rope_type", params.get("type", "default"))
            params.setdefault("rope_theta", older[kind]["rope_theta"])
            if params["rope_type"] in ("llama3", "yarn"):
                params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
            settings[kind] = params
        return settings


class Gemma3TextModel(Gemma3Variant, Gemma2Model):
    pass


# Sequence classification: a score layer at the last non-pad token (decoder.py), no soft-cap.
class Gemma2ForSequenceClassification(LastTokenClassifier, Gemma2PreTrainedModel):
    model_class = Gemma2Model


# model_type -> head -> class, read by models/__init__.py
GEMMA2_HEADS = {"AutoModel": Gemma2Model, "AutoModelForCausalLM": Gemma2ForCausalLM,
                "AutoModelForSequenceClassification": Gemma2ForSequenceClassification}
GEMMA3_TEXT_HEADS = variant_heads(Gemma3Variant, Gemma3TextModel, "Gemma3", Gemma2ForCausalLM,
                                  Gemma2ForSequenceClassification, classifier_prefix="Gemma3Text")
Gemma3ForCausalLM, Gemma3TextForSequenceClassification = list(GEMMA3_TEXT_HEADS.values())[1:]
