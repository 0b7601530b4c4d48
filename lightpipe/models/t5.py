"""T5 (Raffel et al., 2019, arXiv:1910.10683), T5 v1.1 / Flan-T5 (Chung et al., 2022,
arXiv:2210.11416) and mT5 (Xue et al., 2020, arXiv:2010.11934): a pre-norm encoder-decoder
with RMS norms and relative position buckets instead of position embeddings.

Matches transformers' ``models/t5/modeling_t5.py``. Parameter names are the checkpoints'
(``encoder.block.0.layer.0.SelfAttention.q.weight``, ``shared.weight``, ``lm_head.weight``).
What differs between the variants is read from the config:
- the feed-forward: ``feed_forward_proj`` "relu" (v1.0: wi -> relu -> wo) or "gated-gelu"
  (v1.1, Flan, mT5: wo(gelu_new(wi_0) * wi_1));
- the head: tied to the embeddings and fed the decoder output times d_model**-0.5 (v1.0), or
  its own weight without the scale (``tie_word_embeddings: false``: v1.1, Flan, mT5).
Attention is not scaled by 1/sqrt(head_dim) (T5 folds that into its initialisation); the first
block of each stack owns the relative position bias, which every block adds to its scores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .bart import encoder_states_or_encode, open_decoder_cache, shift_tokens_right
from .layers import activation, merge_heads
from .linear import Linear

# 1. Config fields read, with the defaults config.json may leave out (T5Config's, MT5Config's).
T5_DEFAULTS = {
    "vocab_size": 32128,
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 6,
    "num_decoder_layers": None,  # None: as many as the encoder
    "num_heads": 8,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu",
    "use_cache": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "is_encoder_decoder": True,
}
MT5_DEFAULTS = {**T5_DEFAULTS, "vocab_size": 250112, "d_ff": 1024, "num_layers": 8, "num_heads": 6,
                "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}


def feed_forward_kind(config) -> tuple[bool, str]:
    """(gated, activation name) from ``feed_forward_proj`` ("relu", "gated-gelu", ...)."""
    parts = config.feed_forward_proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise UnsupportedModelError(f"feed_forward_proj {config.feed_forward_proj!r} is not "
                                    "'ACT' or 'gated-ACT' (e.g. 'relu', 'gated-gelu').")
    name = "gelu_new" if config.feed_forward_proj == "gated-gelu" else parts[-1]
    return len(parts) == 2, name


# 2. Relative positions: a bucket per distance, exact when near, logarithmic when far.
def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> torch.Tensor:
    buckets = torch.zeros_like(relative_position)
    if bidirectional:  # half the buckets for keys after the query
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:  # keys after the query cannot be seen: all distance 0
        distance = -torch.min(relative_position, torch.zeros_like(relative_position))
    exact = num_buckets // 2
    far = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                   * (num_buckets - exact)).long()
    far = torch.min(far, torch.full_like(far, num_buckets - 1))
    return buckets + torch.where(distance < exact, distance, far)


# 3. Modules.
class T5LayerNorm(nn.Module):
    """RMS norm, no mean, no bias; the variance in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, hidden_states):
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


class T5Attention(nn.Module):
    def __init__(self, config, layer_idx: int, relative_bias: bool = False, bidirectional: bool = True):
        super().__init__()
        self.num_heads, self.head_dim, self.layer_idx = config.num_heads, config.d_kv, layer_idx
        inner = config.num_heads * config.d_kv
        self.q = Linear(config.d_model, inner, bias=False)
        self.k = Linear(config.d_model, inner, bias=False)
        self.v = Linear(config.d_model, inner, bias=False)
        self.o = Linear(inner, config.d_model, bias=False)
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        if relative_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads)

    def heads(self, tensor: torch.Tensor) -> torch.Tensor:  # (batch, heads, seq, head_dim)
        batch, seq, _ = tensor.shape
        return tensor.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

    def position_bias(self, query_length: int, key_length: int, past: int = 0) -> torch.Tensor:
        """(1, heads, query, key) scores added for each query-key distance."""
        device = self.relative_attention_bias.weight.device
        queries = torch.arange(past, past + query_length, device=device)[:, None]
        keys = torch.arange(key_length, device=device)[None, :]
        buckets = relative_position_bucket(keys - queries, self.bidirectional, self.num_buckets,
                                           self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]

    def forward(self, hidden_states, bias, cache=None):
        """Self-attention; ``bias`` holds the position bias and the masks, (batch or 1,
        heads, query, key)."""
        query = self.heads(self.q(hidden_states))
        key = self.heads(self.k(hidden_states))
        value = self.heads(self.v(hidden_states))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=1.0)
        return self.o(merge_heads(context))

    def cross(self, hidden_states, encoder_states, mask, cache=None):
        def project():
            return self.heads(self.k(encoder_states)), self.heads(self.v(encoder_states))

        key, value = cache.cross(self.layer_idx, project) if cache is not None else project()
        query = self.heads(self.q(hidden_states))
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=1.0)
        return self.o(merge_heads(context))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config, layer_idx: int, relative_bias: bool, bidirectional: bool):
        super().__init__()
        self.SelfAttention = T5Attention(config, layer_idx, relative_bias, bidirectional)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, hidden_states, bias, cache=None):
        return hidden_states + self.SelfAttention(self.layer_norm(hidden_states), bias, cache)


class T5LayerCrossAttention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.EncDecAttention = T5Attention(config, layer_idx)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, hidden_states, encoder_states, mask, cache=None):
        return hidden_states + self.EncDecAttention.cross(self.layer_norm(hidden_states),
                                                          encoder_states, mask, cache)


class T5DenseActDense(nn.Module):
    def __init__(self, config, act_name: str):
        super().__init__()
        self.wi = Linear(config.d_model, config.d_ff, bias=False)
        self.wo = Linear(config.d_ff, config.d_model, bias=False)
        self.act = activation(act_name)

    def forward(self, hidden_states):
        return self.wo(self.act(self.wi(hidden_states)))


class T5DenseGatedActDense(nn.Module):
    def __init__(self, config, act_name: str):
        super().__init__()
        self.wi_0 = Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = Linear(config.d_model, config.d_ff, bias=False)
        self.wo = Linear(config.d_ff, config.d_model, bias=False)
        self.act = activation(act_name)

    def forward(self, hidden_states):
        return self.wo(self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states))


class T5LayerFF(nn.Module):
    def __init__(self, config):
        super().__init__()
        gated, act_name = feed_forward_kind(config)
        self.DenseReluDense = (T5DenseGatedActDense if gated else T5DenseActDense)(config, act_name)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, hidden_states):
        return hidden_states + self.DenseReluDense(self.layer_norm(hidden_states))


class T5Block(nn.Module):
    """Encoder: [self-attention, feed-forward]; decoder: [self-, cross-attention, feed-forward]."""

    def __init__(self, config, layer_idx: int, is_decoder: bool):
        super().__init__()
        self.is_decoder = is_decoder
        layers = [T5LayerSelfAttention(config, layer_idx, layer_idx == 0, not is_decoder)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(config, layer_idx))
        layers.append(T5LayerFF(config))
        self.layer = nn.ModuleList(layers)

    def forward(self, hidden_states, bias, encoder_states=None, cross_mask=None, cache=None):
        hidden_states = self.layer[0](hidden_states, bias, cache)
        if self.is_decoder:
            hidden_states = self.layer[1](hidden_states, encoder_states, cross_mask, cache)
        return self.layer[-1](hidden_states)


class T5Stack(nn.Module):
    def __init__(self, config, embed_tokens: nn.Embedding, num_layers: int, is_decoder: bool):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.block = nn.ModuleList(T5Block(config, i, is_decoder) for i in range(num_layers))
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def position_bias(self, query_length: int, key_length: int, past: int = 0) -> torch.Tensor:
        return self.block[0].layer[0].SelfAttention.position_bias(query_length, key_length, past)


def additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean "may attend" mask -> 0 / the dtype's minimum, added to the scores."""
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask, torch.finfo(dtype).min)


class T5PreTrainedModel(PreTrainedModel):
    model_type = "t5"
    config_defaults = T5_DEFAULTS
    ignored_weights = [r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias"]

    def max_positions(self) -> None:
        return None  # relative positions: no table to run past


class T5Model(T5PreTrainedModel):
    """Encoder and decoder; ``last_hidden_state`` is the decoder's (before any head scale)."""

    tied_weights = {"encoder.embed_tokens.weight": "shared.weight",
                    "decoder.embed_tokens.weight": "shared.weight"}

    def __init__(self, config):
        super().__init__(config)
        if config.get("num_decoder_layers") is None:
            config.num_decoder_layers = config.num_layers
        dim, vocab = config.d_model, config.vocab_size
        self.shared = nn.Embedding(vocab, dim)
        self.encoder = T5Stack(config, nn.Embedding(vocab, dim), config.num_layers, False)
        self.decoder = T5Stack(config, nn.Embedding(vocab, dim), config.num_decoder_layers, True)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's last hidden state, (batch, source length, d_model)."""
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise InputError(f"input_ids must be a non-empty (batch, sequence) tensor, got shape "
                             f"{tuple(input_ids.shape)}.")
        hidden_states = self.encoder.embed_tokens(input_ids)
        seq = input_ids.shape[1]
        bias = self.encoder.position_bias(seq, seq).to(hidden_states.dtype)
        if attention_mask is not None and not bool(attention_mask.all()):
            bias = bias + additive(attention_mask.bool()[:, None, None, :], hidden_states.dtype)
        for block in self.encoder.block:
            hidden_states = block(hidden_states, bias)
        return self.encoder.final_layer_norm(hidden_states)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache=False, decoder_attention_mask=None) -> ModelOutput:
        cache, past = open_decoder_cache(cache, use_cache)
        seq = decoder_input_ids.shape[1]
        hidden_states = self.decoder.embed_tokens(decoder_input_ids)
        dtype = hidden_states.dtype
        bias = self.decoder.position_bias(seq, past + seq, past).to(dtype)
        if seq > 1 or decoder_attention_mask is not None:
            keys = torch.arange(past + seq, device=bias.device)
            allowed = (keys[None, :] <= keys[past:, None])[None, None]  # (1, 1, query, key)
            if decoder_attention_mask is not None:
                allowed = allowed & decoder_attention_mask[:, None, None, :past + seq].bool()
            bias = bias + additive(allowed, dtype)
        cross_mask = None
        if encoder_attention_mask is not None and not bool(encoder_attention_mask.all()):
            cross_mask = encoder_attention_mask.bool()[:, None, None, :]
        for block in self.decoder.block:
            hidden_states = block(hidden_states, bias, encoder_hidden_states, cross_mask, cache)
        return ModelOutput(last_hidden_state=self.decoder.final_layer_norm(hidden_states),
                           cache=cache if use_cache else None)

    def _run(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
             encoder_outputs, cache, use_cache):
        encoder_states = encoder_states_or_encode(self, encoder_outputs, input_ids, attention_mask)
        if decoder_input_ids is None:
            raise InputError("Pass decoder_input_ids: the decoder's input (start with "
                             f"decoder_start_token_id={self.config.decoder_start_token_id}).")
        out = T5Model.decode(self, decoder_input_ids, encoder_states, attention_mask, cache,
                             bool(use_cache if use_cache is not None else cache is not None),
                             decoder_attention_mask)
        return out, encoder_states

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, cache=None, use_cache=None,
                past_key_values=None, **unused) -> ModelOutput:
        out, encoder_states = self._run(input_ids, attention_mask, decoder_input_ids,
                                        decoder_attention_mask, encoder_outputs,
                                        cache if cache is not None else past_key_values, use_cache)
        return ModelOutput(last_hidden_state=out.last_hidden_state, cache=out.get("cache"),
                           encoder_last_hidden_state=encoder_states)


# 4. The head.
class T5ForConditionalGeneration(GenerationMixin, T5Model):
    is_encoder_decoder = True
    scale_when_tied = True  # mT5 never scales (transformers 5's MT5)
    tied_weights = {**T5Model.tied_weights, "lm_head.weight": "shared.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        # v1.0 ties the head to the embeddings and scales its input; v1.1 / Flan / mT5 do
        # neither (transformers 5 writes this choice as ``scale_decoder_outputs``).
        scale = config.get("scale_decoder_outputs")
        if scale is None:
            scale = self.scale_when_tied and config.get("tie_word_embeddings") is not False
        self.output_scale = config.d_model ** -0.5 if scale else None

    def active_ties(self) -> dict[str, str]:
        if self.config.get("tie_word_embeddings") is False:
            return dict(T5Model.tied_weights)
        return dict(self.tied_weights)

    def logits(self, hidden_states, logits_to_keep: int = 0) -> torch.Tensor:
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        if self.output_scale is not None:
            hidden_states = hidden_states * self.output_scale
        return self.lm_head(hidden_states)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache=False, logits_to_keep: int = 0,
               decoder_attention_mask=None) -> ModelOutput:
        out = super().decode(decoder_input_ids, encoder_hidden_states, encoder_attention_mask,
                             cache, use_cache, decoder_attention_mask)
        return ModelOutput(logits=self.logits(out.last_hidden_state, logits_to_keep),
                           cache=out.get("cache"))

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, cache=None, use_cache=None,
                past_key_values=None, logits_to_keep: int = 0, labels=None, **unused) -> ModelOutput:
        if decoder_input_ids is None and labels is not None:  # teacher forcing from the labels
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        out, encoder_states = self._run(input_ids, attention_mask, decoder_input_ids,
                                        decoder_attention_mask, encoder_outputs,
                                        cache if cache is not None else past_key_values, use_cache)
        return ModelOutput(logits=self.logits(out.last_hidden_state, logits_to_keep),
                           cache=out.get("cache"), encoder_last_hidden_state=encoder_states)


# 5. mT5: T5's maths with its own defaults.
class MT5Model(T5Model):
    model_type = "mt5"
    config_defaults = MT5_DEFAULTS


class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    model_type = "mt5"
    config_defaults = MT5_DEFAULTS
    tie_word_embeddings_default = False
    scale_when_tied = False


# model_type -> head -> class, read by models/__init__.py
HEADS = {"AutoModel": T5Model, "AutoModelForSeq2SeqLM": T5ForConditionalGeneration}
MT5_HEADS = {"AutoModel": MT5Model, "AutoModelForSeq2SeqLM": MT5ForConditionalGeneration}
