"""ModernBERT (Warner et al., 2024, arXiv:2412.13663).

Matches transformers' ``models/modernbert/modeling_modernbert.py``. A pre-norm encoder: one
fused ``Wqkv`` projection, RoPE (no position table) with one theta for the global layers and
another for the local ones, layers alternating global attention and a bidirectional sliding
window (every ``global_attn_every_n_layers``-th layer is global, or ``layer_types`` lists
them; a local layer sees keys at most ``local_attention // 2`` positions away), a GeGLU MLP
(``Wi`` gives input and gate, ``act(input) * gate``), LayerNorms without bias by default, a
final norm, and heads that pass the encoder's output through their own dense + act + norm
(``head``). The sequence-classification head pools the first token or the masked mean
(``classifier_pooling``). The reference unpads inputs only for flash attention; padded
batches give the same numbers on real tokens, which is what we compute.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .bert import check_one_input
from .encoder_heads import MaskedLM, TokenHead, span_logits
from .layers import activation, attention, check_heads, merge_heads
from .llama import RotaryEmbedding, rotate

# 1. Config fields read, with the defaults config.json may leave out (ModernBertConfig's).
MODERNBERT_DEFAULTS = {
    "vocab_size": 50368,
    "hidden_size": 768,
    "intermediate_size": 1152,
    "num_hidden_layers": 22,
    "num_attention_heads": 12,
    "hidden_activation": "gelu",
    "max_position_embeddings": 8192,
    "norm_eps": 1e-5,
    "norm_bias": False,
    "pad_token_id": 50283,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "global_attn_every_n_layers": 3,
    "global_rope_theta": 160_000.0,
    "local_rope_theta": 10_000.0,
    "local_attention": 128,
    "embedding_dropout": 0.0,
    "mlp_bias": False,
    "mlp_dropout": 0.0,
    "decoder_bias": True,
    "classifier_pooling": "cls",
    "classifier_dropout": 0.0,
    "classifier_bias": False,
    "classifier_activation": "gelu",
    "tie_word_embeddings": True,
}
_GLOBAL, _LOCAL = "full_attention", "sliding_attention"


def layer_types(config) -> list[str]:
    """Each layer's attention: ``layer_types`` (transformers 5's configs) or, in the Hub's
    older configs, every ``global_attn_every_n_layers``-th layer global from the first."""
    types = config.get("layer_types")
    if types is None:
        every = int(config.global_attn_every_n_layers)
        types = [_LOCAL if i % every else _GLOBAL for i in range(config.num_hidden_layers)]
    if len(types) != config.num_hidden_layers or set(types) - {_GLOBAL, _LOCAL}:
        raise UnsupportedModelError(
            f"layer_types {types!r} must name {_GLOBAL!r} or {_LOCAL!r} for each of the "
            f"{config.num_hidden_layers} layers; fix config.json.")
    return list(types)


def rope_settings(config, kind: str) -> dict:
    """RoPE settings of one layer kind: ``rope_parameters[kind]`` or the older
    ``global_rope_theta`` / ``local_rope_theta`` (+ ``rope_scaling`` for both)."""
    params = dict((config.get("rope_parameters") or {}).get(kind) or {})
    params.update({k: v for k, v in (config.get("rope_scaling") or {}).items()
                   if k not in params})
    params.setdefault("rope_type", params.get("type", "default"))
    theta = config.global_rope_theta if kind == _GLOBAL else config.local_rope_theta
    params.setdefault("rope_theta", theta)
    if params["rope_type"] != "default":
        raise UnsupportedModelError(f"ModernBERT with rope_type {params['rope_type']!r} is not "
                                    "supported; lightpipe runs its default RoPE.")
    return params


# 2. Modules.
def _norm(config) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=bool(config.norm_bias))


class ModernBertEmbeddings(nn.Module):
    """Token embeddings, normed (positions come from RoPE in each layer)."""

    def __init__(self, config):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = _norm(config)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.tok_embeddings(input_ids)
        return self.drop(self.norm(inputs_embeds))


class ModernBertAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        check_heads(config.hidden_size, config.num_attention_heads)
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = float(config.attention_dropout)
        bias = bool(config.attention_bias)
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)

    def forward(self, hidden_states, cos, sin, mask):
        batch, seq, _ = hidden_states.shape
        qkv = self.Wqkv(hidden_states).view(batch, seq, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, dim)
        query, key = rotate(query, cos, sin), rotate(key, cos, sin)
        context = attention(query, key, value, mask, self.dropout if self.training else 0.0)
        return self.Wo(merge_heads(context))


class ModernBertMLP(nn.Module):
    """GeGLU: ``Wo(act(input) * gate)`` with input and gate the two halves of ``Wi``."""

    def __init__(self, config):
        super().__init__()
        bias = bool(config.mlp_bias)
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=bias)
        self.act = activation(config.hidden_activation)
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def forward(self, hidden_states):
        value, gate = self.Wi(hidden_states).chunk(2, dim=-1)
        return self.Wo(self.drop(self.act(value) * gate))


class ModernBertEncoderLayer(nn.Module):
    """Pre-norm attention and MLP; the first layer has no attention norm (the embeddings'
    norm is it)."""

    def __init__(self, config, index: int, kind: str):
        super().__init__()
        self.kind = kind
        self.attn_norm = _norm(config) if index else nn.Identity()
        self.attn = ModernBertAttention(config)
        self.mlp_norm = _norm(config)
        self.mlp = ModernBertMLP(config)

    def forward(self, hidden_states, cos, sin, mask):
        hidden_states = hidden_states + self.attn(self.attn_norm(hidden_states), cos, sin, mask)
        return hidden_states + self.mlp(self.mlp_norm(hidden_states))


class ModernBertPredictionHead(nn.Module):
    """``norm(act(dense(x)))``, before every head's output layer."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size,
                               bias=bool(config.classifier_bias))
        self.act = activation(config.classifier_activation)
        self.norm = _norm(config)

    def forward(self, hidden_states):
        return self.norm(self.act(self.dense(hidden_states)))


def attention_masks(attention_mask: torch.Tensor | None, seq_len: int, window: int,
                    device) -> dict[str, torch.Tensor | None]:
    """Boolean (batch or 1, 1, seq, seq) masks per layer kind: padded keys hidden; a local
    layer's query sees keys at most ``window`` positions away. Each position also sees itself,
    so a padding row far from every real key is never empty (its output is not read, but an
    empty row would give NaN that masked products then spread)."""
    keys = None
    if attention_mask is not None and not bool(attention_mask.all()):
        keys = attention_mask.to(device).bool()[:, None, None, :]
    positions = torch.arange(seq_len, device=device)
    distance = (positions[None, :] - positions[:, None]).abs()
    itself = distance == 0
    near = (distance <= window)[None, None]
    masks = {_GLOBAL: None if keys is None else keys | itself,
             _LOCAL: near if keys is None else (near & keys) | itself}
    if bool(masks[_LOCAL].all()):
        masks[_LOCAL] = masks[_GLOBAL]  # a short input: the window covers it all
    return masks


class ModernBertPreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    config_defaults = MODERNBERT_DEFAULTS


class ModernBertModel(ModernBertPreTrainedModel):
    """The encoder; ``last_hidden_state`` (batch, seq, hidden), after the final norm."""

    def __init__(self, config, add_pooling_layer: bool = False):  # no pooler
        super().__init__(config)
        kinds = layer_types(config)
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertEncoderLayer(config, i, kind)
                                    for i, kind in enumerate(kinds))
        self.final_norm = _norm(config)
        head_dim = config.hidden_size // config.num_attention_heads
        self.rotary = nn.ModuleDict({kind: RotaryEmbedding(config, head_dim,
                                                           rope_settings(config, kind))
                                     for kind in sorted(set(kinds))})
        self.window = int(config.local_attention) // 2

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.tok_embeddings

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        check_one_input(input_ids, inputs_embeds)
        hidden_states = self.embeddings(input_ids, inputs_embeds)
        batch, seq = hidden_states.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(seq, device=hidden_states.device)[None]
        masks = attention_masks(attention_mask, seq, self.window, hidden_states.device)
        angles = {kind: rotary(position_ids, hidden_states.dtype)
                  for kind, rotary in self.rotary.items()}
        all_states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, *angles[layer.kind], masks[layer.kind])
            if all_states is not None:
                all_states.append(hidden_states)
        hidden_states = self.final_norm(hidden_states)
        if all_states is not None:
            all_states[-1] = hidden_states  # as the reference: the last one after the norm
        return ModelOutput(last_hidden_state=hidden_states,
                           hidden_states=tuple(all_states) if all_states else None)


ModernBertPreTrainedModel.model_class = ModernBertModel


# 3. Heads.
class ModernBertForMaskedLM(MaskedLM, ModernBertPreTrainedModel):
    tied_weights = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.head = ModernBertPredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size,
                                 bias=bool(config.decoder_bias))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def logits(self, hidden_states):
        return self.decoder(self.head(hidden_states))


class ModernBertForTokenClassification(TokenHead, ModernBertPreTrainedModel):
    """The prediction head (dense, act, norm), then the classifier, on every token."""

    optional_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def logits(self, hidden_states):
        return self.classifier(self.drop(self.head(hidden_states)))


class ModernBertForQuestionAnswering(ModernBertForTokenClassification):
    def outputs(self, out: ModelOutput) -> ModelOutput:
        return span_logits(self.logits(out.last_hidden_state), out)


class ModernBertForSequenceClassification(ModernBertForTokenClassification):
    """The same head on the [CLS] state or the mean of the real tokens' (classifier_pooling)."""

    def __init__(self, config):
        if config.classifier_pooling not in ("cls", "mean"):
            raise UnsupportedModelError(f"classifier_pooling {config.classifier_pooling!r}: "
                                        "ModernBERT pools 'cls' or 'mean'; fix config.json.")
        super().__init__(config)

    def forward(self, input_ids=None, attention_mask=None, *args, **kwargs) -> ModelOutput:
        out = self.encode(input_ids, attention_mask, *args, **kwargs)
        states = out.last_hidden_state
        if self.config.classifier_pooling == "cls":
            pooled = states[:, 0]
        else:
            if attention_mask is None:
                attention_mask = torch.ones(states.shape[:2], device=states.device)
            weights = attention_mask.to(states.device, states.dtype).unsqueeze(-1)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1)
        return ModelOutput(logits=self.logits(pooled), hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": ModernBertModel,
    "AutoModelForMaskedLM": ModernBertForMaskedLM,
    "AutoModelForSequenceClassification": ModernBertForSequenceClassification,
    "AutoModelForTokenClassification": ModernBertForTokenClassification,
    "AutoModelForQuestionAnswering": ModernBertForQuestionAnswering,
}
