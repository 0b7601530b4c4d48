"""BART (Lewis et al., 2019, arXiv:1910.13461) and DistilBART: a post-norm Transformer
encoder-decoder with learned positions; the summarization and zero-shot workhorse.

Matches transformers' ``models/bart/modeling_bart.py``. Parameter names are the checkpoints'
(``model.encoder.layers.0.self_attn.q_proj.weight``, ``model.shared.weight``, ``lm_head``,
``final_logits_bias``). Marian (``marian.py``) reuses these blocks with sinusoidal positions
and no embedding norm; what differs is chosen by the hooks ``positions`` and ``embedding_norm``.
Whisper's layers (``whisper.py``) subclass these: pre-norm, with an attention whose ``k_proj``
has no bias.

Generation: ``encode()`` runs the encoder once; ``decode()`` runs the decoder over the new
tokens with an ``EncoderDecoderCache`` (self-attention keys/values appended per step, the
cross-attention keys/values of the encoder states computed on the first step only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .cache import EncoderDecoderCache
from .decoder import causal_mask, decoder_attention
from .layers import activation, merge_heads, padding_mask
from .linear import Linear

# 1. Config fields read, with the defaults config.json may leave out (BartConfig's).
BART_DEFAULTS = {
    "vocab_size": 50265,
    "max_position_embeddings": 1024,
    "d_model": 1024,
    "encoder_layers": 12,
    "decoder_layers": 12,
    "encoder_attention_heads": 16,
    "decoder_attention_heads": 16,
    "encoder_ffn_dim": 4096,
    "decoder_ffn_dim": 4096,
    "activation_function": "gelu",
    "scale_embedding": False,
    "use_cache": True,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "decoder_start_token_id": 2,
    "forced_eos_token_id": 2,
    "is_encoder_decoder": True,
    "classifier_dropout": 0.0,
}


# 2. Modules.
class LearnedPositions(nn.Embedding):
    """BART's learned positions: the table is offset by 2 (a fairseq legacy)."""

    offset = 2

    def __init__(self, num_positions: int, dim: int):
        super().__init__(num_positions + self.offset, dim)

    def forward(self, past: int, length: int) -> torch.Tensor:  # (length, dim)
        positions = torch.arange(past, past + length, device=self.weight.device)
        return super().forward(positions + self.offset)


class Attention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections; self- or cross-attention."""

    key_bias = True  # Whisper's k_proj has none

    def __init__(self, dim: int, num_heads: int, layer_idx: int, scale: float | None = None):
        super().__init__()
        self.num_heads, self.head_dim, self.layer_idx = num_heads, dim // num_heads, layer_idx
        self.scale = scale  # None: SDPA's 1 / sqrt(head_dim)
        self.q_proj = Linear(dim, dim)
        self.k_proj = Linear(dim, dim, bias=self.key_bias)
        self.v_proj = Linear(dim, dim)
        self.out_proj = Linear(dim, dim)

    def heads(self, tensor: torch.Tensor) -> torch.Tensor:  # (batch, heads, seq, head_dim)
        batch, seq, _ = tensor.shape
        return tensor.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, mask, cache=None, causal: bool = False):
        query = self.heads(self.q_proj(hidden_states))
        key = self.heads(self.k_proj(hidden_states))
        value = self.heads(self.v_proj(hidden_states))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        if causal:
            context = decoder_attention(query, key, value, mask, scale=self.scale)
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.scale)
        return self.out_proj(merge_heads(context))

    def cross_keys(self, encoder_states, cache=None):
        """The encoder states' keys and values, (batch, heads, source, head_dim) each; from the
        cache after the first decoding step."""
        def project():
            return self.heads(self.k_proj(encoder_states)), self.heads(self.v_proj(encoder_states))

        return cache.cross(self.layer_idx, project) if cache is not None else project()

    def cross(self, hidden_states, encoder_states, mask, cache=None):
        """Attend to the encoder states."""
        key, value = self.cross_keys(encoder_states, cache)
        query = self.heads(self.q_proj(hidden_states))
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.scale)
        return self.out_proj(merge_heads(context))


class EncoderLayer(nn.Module):
    """Self-attention and MLP, each with its norm (post-norm here; Whisper's are pre-norm)."""

    attention_class = Attention

    def __init__(self, config, layer_idx: int, num_heads: int | None = None,
                 ffn_dim: int | None = None):
        """``num_heads``, ``ffn_dim``: the encoder's (config) unless given."""
        super().__init__()
        dim = config.d_model
        ffn_dim = ffn_dim or config.encoder_ffn_dim
        self.self_attn = self.attention_class(dim, num_heads or config.encoder_attention_heads,
                                              layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.act = activation(config.activation_function)

    def forward(self, hidden_states, mask):  # post-norm
        hidden_states = self.self_attn_layer_norm(hidden_states + self.self_attn(hidden_states, mask))
        return self.final_layer_norm(hidden_states + self.fc2(self.act(self.fc1(hidden_states))))


class DecoderLayer(EncoderLayer):
    """The encoder layer's blocks (with the decoder's sizes) and a cross-attention to the
    encoder states between them."""

    def __init__(self, config, layer_idx: int):
        heads = config.decoder_attention_heads
        super().__init__(config, layer_idx, heads, config.decoder_ffn_dim)
        self.encoder_attn = self.attention_class(config.d_model, heads, layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, hidden_states, self_mask, encoder_states, cross_mask, cache):
        hidden_states = self.self_attn_layer_norm(
            hidden_states + self.self_attn(hidden_states, self_mask, cache, causal=True))
        hidden_states = self.encoder_attn_layer_norm(
            hidden_states + self.encoder_attn.cross(hidden_states, encoder_states, cross_mask, cache))
        return self.final_layer_norm(hidden_states + self.fc2(self.act(self.fc1(hidden_states))))


class Stack(nn.Module):
    """The encoder or the decoder: token embeddings (scaled), positions, an optional norm of
    the embeddings, the layers."""

    def __init__(self, config, embed_tokens: nn.Embedding, layers: list, positions: nn.Module,
                 embedding_norm: bool):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.embed_positions = positions
        self.layers = nn.ModuleList(layers)
        if embedding_norm:
            self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0

    def embed(self, input_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        embeds = self.embed_tokens(input_ids)
        if self.embed_scale != 1.0:
            embeds = embeds * self.embed_scale
        hidden_states = embeds + self.embed_positions(past, input_ids.shape[1]).to(embeds.dtype)
        norm = getattr(self, "layernorm_embedding", None)
        return hidden_states if norm is None else norm(hidden_states)


class BartPreTrainedModel(PreTrainedModel):
    model_type = "bart"
    base_model_prefix = "model"
    config_defaults = BART_DEFAULTS
    embedding_norm = True  # BART normalises the embeddings; Marian does not

    def positions(self, config) -> nn.Module:
        return LearnedPositions(config.max_position_embeddings, config.d_model)

    def max_positions(self) -> int | None:
        return self.config.max_position_embeddings

    def _init_missing(self, names, dtype, device) -> None:
        super()._init_missing(names, dtype, device)
        if "final_logits_bias" in names:  # a buffer: zero, as the reference starts it
            self.final_logits_bias.zero_()


class BartModel(BartPreTrainedModel):
    """Encoder and decoder; ``last_hidden_state`` is the decoder's."""

    tied_weights = {"encoder.embed_tokens.weight": "shared.weight",
                    "decoder.embed_tokens.weight": "shared.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        # The encoder's and decoder's embeddings share ``shared``'s weight (tied_weights).
        self.encoder, self.decoder = self.build_stacks(
            config, nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id),
            nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id))
        self.tie_weights()

    def build_stacks(self, config, encoder_embeddings, decoder_embeddings):
        encoder = Stack(config, encoder_embeddings,
                        [EncoderLayer(config, i) for i in range(config.encoder_layers)],
                        self.positions(config), self.embedding_norm)
        decoder = Stack(config, decoder_embeddings,
                        [DecoderLayer(config, i) for i in range(config.decoder_layers)],
                        self.positions(config), self.embedding_norm)
        return encoder, decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's last hidden state, (batch, source length, d_model)."""
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise InputError(f"input_ids must be a non-empty (batch, sequence) tensor, got shape "
                             f"{tuple(input_ids.shape)}.")
        hidden_states = self.encoder.embed(input_ids)
        mask = padding_mask(attention_mask)
        for layer in self.encoder.layers:
            hidden_states = layer(hidden_states, mask)
        return hidden_states

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache=False, decoder_attention_mask=None) -> ModelOutput:
        """The decoder over new tokens, after the ``cache``'s past ones."""
        cache, past = open_decoder_cache(cache, use_cache)
        seq = decoder_input_ids.shape[1]
        hidden_states = self.decoder.embed(decoder_input_ids, past)
        self_mask = causal_mask(decoder_attention_mask, seq, past, hidden_states.device)
        cross_mask = padding_mask(encoder_attention_mask)
        for layer in self.decoder.layers:
            hidden_states = layer(hidden_states, self_mask, encoder_hidden_states, cross_mask, cache)
        return ModelOutput(last_hidden_state=hidden_states, cache=cache if use_cache else None)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, cache=None, use_cache=None,
                past_key_values=None, **unused) -> ModelOutput:
        encoder_states = encoder_states_or_encode(self, encoder_outputs, input_ids, attention_mask)
        if decoder_input_ids is None:
            if input_ids is None:
                raise InputError("Pass decoder_input_ids (or input_ids to shift right).")
            decoder_input_ids = shift_tokens_right(input_ids, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        cache = cache if cache is not None else past_key_values
        out = self.decode(decoder_input_ids, encoder_states, attention_mask, cache,
                          bool(use_cache if use_cache is not None else cache is not None),
                          decoder_attention_mask)
        return ModelOutput(last_hidden_state=out.last_hidden_state, cache=out.get("cache"),
                           encoder_last_hidden_state=encoder_states)


def open_decoder_cache(cache: EncoderDecoderCache | None, use_cache: bool):
    """-> (the cache a decoding step writes to: the one given, a new one when caching is on,
    or None; the number of tokens decoded before)."""
    if use_cache and cache is None:
        cache = EncoderDecoderCache()
    return cache, (cache.get_seq_length() if cache is not None else 0)


def encoder_states_of(encoder_outputs) -> torch.Tensor | None:
    """encoder_outputs as a tensor, a ModelOutput / dict or a tuple -> the last hidden state."""
    if encoder_outputs is None or isinstance(encoder_outputs, torch.Tensor):
        return encoder_outputs
    if isinstance(encoder_outputs, dict):
        return encoder_outputs["last_hidden_state"]
    return encoder_outputs[0]


def encoder_states_or_encode(model, encoder_outputs, input_ids, attention_mask) -> torch.Tensor:
    """The states ``encoder_outputs`` hold, else ``model.encode(input_ids, attention_mask)``."""
    states = encoder_states_of(encoder_outputs)
    if states is None:
        if input_ids is None:
            raise InputError("Pass input_ids (or encoder_outputs).")
        states = model.encode(input_ids, attention_mask)
    return states


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, start_token_id: int) -> torch.Tensor:
    """The decoder inputs of teacher forcing: the start token, then the inputs less the last."""
    shifted = input_ids.new_full(input_ids.shape, start_token_id)
    shifted[:, 1:] = input_ids[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


# 3. Heads.
class BartForConditionalGeneration(GenerationMixin, BartPreTrainedModel):
    """The sequence-to-sequence LM: ``generate()`` summarizes / translates."""

    is_encoder_decoder = True
    tied_weights = {"model.encoder.embed_tokens.weight": "model.shared.weight",
                    "model.decoder.embed_tokens.weight": "model.shared.weight",
                    "lm_head.weight": "model.shared.weight"}
    optional_weights = [r"^final_logits_bias$"]
    model_class = BartModel

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(config)
        vocab = self.model.decoder.embed_tokens.num_embeddings
        self.lm_head = Linear(config.d_model, vocab, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(1, vocab))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def encode(self, input_ids, attention_mask=None) -> torch.Tensor:
        return self.model.encode(input_ids, attention_mask)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache=False, logits_to_keep: int = 0,
               decoder_attention_mask=None) -> ModelOutput:
        out = self.model.decode(decoder_input_ids, encoder_hidden_states, encoder_attention_mask,
                                cache, use_cache, decoder_attention_mask)
        hidden_states = out.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states) + self.final_logits_bias.to(hidden_states.dtype)
        return ModelOutput(logits=logits, cache=out.get("cache"))

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, cache=None, use_cache=None,
                past_key_values=None, logits_to_keep: int = 0, **unused) -> ModelOutput:
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                         encoder_outputs, cache, use_cache, past_key_values)
        hidden_states = out.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states) + self.final_logits_bias.to(hidden_states.dtype)
        return ModelOutput(logits=logits, cache=out.get("cache"),
                           encoder_last_hidden_state=out.encoder_last_hidden_state)


class BartForSequenceClassification(BartPreTrainedModel):
    """The decoder's state at the last </s> of each row -> dense -> tanh -> labels
    (facebook/bart-large-mnli: the zero-shot classifier)."""

    tied_weights = {"model.encoder.embed_tokens.weight": "model.shared.weight",
                    "model.decoder.embed_tokens.weight": "model.shared.weight"}
    ignored_weights = [r"^final_logits_bias$", r"^lm_head\."]

    def __init__(self, config):
        super().__init__(config)
        self.model = BartModel(config)
        self.classification_head = ClassificationHead(config.d_model, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, **unused) -> ModelOutput:
        if input_ids is None:
            raise InputError("BartForSequenceClassification needs input_ids (it finds the </s> tokens).")
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                         encoder_outputs, use_cache=False)
        eos = input_ids.eq(self.config.eos_token_id)
        counts = eos.sum(dim=1)
        if bool((counts == 0).any()) or int(counts.min()) != int(counts.max()):
            raise InputError("All examples must have the same number of <eos> tokens.")
        hidden_states = out.last_hidden_state
        last = hidden_states[eos].view(hidden_states.shape[0], -1, hidden_states.shape[-1])[:, -1]
        return ModelOutput(logits=self.classification_head(last))


class ClassificationHead(nn.Module):
    def __init__(self, dim: int, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, num_labels)

    def forward(self, hidden_states):
        return self.out_proj(torch.tanh(self.dense(hidden_states)))


# model_type -> head -> class, read by models/__init__.py
HEADS = {"AutoModel": BartModel, "AutoModelForSeq2SeqLM": BartForConditionalGeneration,
         "AutoModelForSequenceClassification": BartForSequenceClassification}
