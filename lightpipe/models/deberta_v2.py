"""DeBERTa-v2 and DeBERTa-v3 (He et al., 2020, arXiv:2006.03654; 2021, arXiv:2111.09543).

Matches transformers' ``models/deberta_v2/modeling_deberta_v2.py``. BERT's layer shape with
disentangled attention: besides content-to-content scores, each query scores the embedding of
its distance to each key (``c2p``) and each key the embedding of its distance to the query
(``p2c``). Distances are clamped to a span, or bucketed logarithmically (``position_buckets``,
v3); the distance embeddings are one table (``encoder.rel_embeddings``), optionally
layer-normed (``norm_rel_ebd``), projected by the layer's own query/key projections
(``share_att_key``, v3) or by ``pos_query_proj`` / ``pos_key_proj``. v2-xlarge adds a
convolution after the first layer (``conv_kernel_size``). v3 has no absolute positions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .bert import BertOutput, BertSelfOutput, check_one_input
from .encoder_heads import MaskedLM, SpanClassifier, TokenClassifier
from .layers import Intermediate, activation, attention, merge_heads, split_heads

# 1. Config fields read, with the defaults config.json may leave out.
DEBERTA_V2_DEFAULTS = {
    "vocab_size": 128100,
    "hidden_size": 1536,
    "num_hidden_layers": 24,
    "num_attention_heads": 24,
    "intermediate_size": 6144,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-7,
    "relative_attention": False,
    "max_relative_positions": -1,
    "position_buckets": -1,
    "pad_token_id": 0,
    "position_biased_input": True,
    "pos_att_type": None,  # ["p2c", "c2p"], or the legacy "p2c|c2p"
    "share_att_key": False,
    "norm_rel_ebd": "none",
    "conv_kernel_size": 0,
    "conv_groups": 1,
    "conv_act": "tanh",
    "embedding_size": None,  # None: hidden_size
    "attention_head_size": None,  # None: hidden_size // num_attention_heads
    "pooler_hidden_size": None,  # None: hidden_size
    "pooler_dropout": 0.0,
    "pooler_hidden_act": "gelu",
    "cls_dropout": None,
    "legacy": True,  # the masked-LM head: cls.predictions (legacy) or lm_predictions
}


def _pos_att_types(config) -> set[str]:
    value = config.pos_att_type or []
    if isinstance(value, str):
        value = value.lower().split("|")
    return {name.strip() for name in value}


def _embedding_size(config) -> int:
    return config.embedding_size or config.hidden_size


def _relative_span(config) -> tuple[int, int]:
    """(max_relative_positions, position_buckets) with the config's 'unset' values resolved:
    distances are clamped to +-span, where span is the bucket count when buckets are used."""
    max_relative = config.max_relative_positions
    if max_relative < 1:
        max_relative = config.max_position_embeddings
    return max_relative, config.position_buckets


# 2. Modules.
def log_bucket_position(relative_pos: torch.Tensor, bucket_size: int,
                        max_position: int) -> torch.Tensor:
    """Distances within +-bucket_size/2 stay as they are; longer ones map to log-spaced buckets
    up to +-bucket_size (the reference's arithmetic, float for float)."""
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where((relative_pos < mid) & (relative_pos > -mid),
                          torch.tensor(mid - 1).type_as(relative_pos), torch.abs(relative_pos))
    log_pos = torch.ceil(torch.log(abs_pos / mid)
                         / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign)


def relative_positions(seq_len: int, bucket_size: int, max_position: int,
                       device: torch.device) -> torch.Tensor:
    """(seq, seq) query-minus-key distances, log-bucketed when ``bucket_size`` > 0."""
    ids = torch.arange(seq_len, dtype=torch.long, device=device)
    relative = ids[:, None] - ids[None, :]
    if bucket_size > 0 and max_position > 0:
        relative = log_bucket_position(relative, bucket_size, max_position)
    return relative.long()


class DebertaV2Embeddings(nn.Module):
    """Word (+ absolute position) (+ token type) embeddings, projected to hidden_size when
    ``embedding_size`` differs, normed, and zeroed at padding."""

    def __init__(self, config):
        super().__init__()
        size = _embedding_size(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, size, padding_idx=config.pad_token_id)
        self.position_embeddings = (nn.Embedding(config.max_position_embeddings, size)
                                    if config.position_biased_input else None)
        self.token_type_embeddings = (nn.Embedding(config.type_vocab_size, size)
                                      if config.type_vocab_size > 0 else None)
        self.embed_proj = (nn.Linear(size, config.hidden_size, bias=False)
                           if size != config.hidden_size else None)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, mask=None,
                inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, embedding_size)
        seq_len = inputs_embeds.shape[1]
        embeddings = inputs_embeds
        if self.position_embeddings is not None:
            limit = self.position_embeddings.num_embeddings
            if position_ids is None:
                if seq_len > limit:
                    raise InputError(
                        f"The input has {seq_len} tokens but this model reads at most {limit} "
                        "positions. Truncate it (tokenizer or pipeline argument "
                        "truncation=True), or split the text.")
                position_ids = torch.arange(seq_len, device=embeddings.device)[None, :]
            embeddings = embeddings + self.position_embeddings(position_ids.long())
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long,
                                             device=inputs_embeds.device)
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            embeddings = self.embed_proj(embeddings)
        embeddings = self.LayerNorm(embeddings)
        if mask is not None:
            embeddings = embeddings * mask[:, :, None].to(embeddings.dtype)
        return self.dropout(embeddings)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.attention_head_size or config.hidden_size // self.num_heads
        inner = self.num_heads * self.head_size
        self.query_proj = nn.Linear(config.hidden_size, inner)
        self.key_proj = nn.Linear(config.hidden_size, inner)
        self.value_proj = nn.Linear(config.hidden_size, inner)
        self.pos_att_type = _pos_att_types(config)
        self.share_att_key = bool(config.share_att_key)
        self.relative_attention = bool(config.relative_attention)
        if self.relative_attention:
            max_relative, buckets = _relative_span(config)
            self.span = buckets if buckets > 0 else max_relative  # distances clamp to +-span
            if not self.share_att_key:
                if "c2p" in self.pos_att_type:
                    self.pos_key_proj = nn.Linear(config.hidden_size, inner)
                if "p2c" in self.pos_att_type:
                    self.pos_query_proj = nn.Linear(config.hidden_size, inner)
        self.dropout = config.attention_probs_dropout_prob
        # Content and each position term share one scale: sqrt(head_size * terms).
        terms = 1 + len(self.pos_att_type & {"c2p", "p2c"})
        self.scale_divisor = math.sqrt(self.head_size * terms)

    def forward(self, hidden_states, key_mask, relative_pos=None, rel_embeddings=None):
        """``key_mask``: (batch, 1, 1, seq) booleans or None; ``relative_pos``: (seq, seq)."""
        query = split_heads(self.query_proj(hidden_states), self.num_heads)  # (b, heads, seq, d)
        key = split_heads(self.key_proj(hidden_states), self.num_heads)
        value = split_heads(self.value_proj(hidden_states), self.num_heads)
        mask = key_mask
        if self.relative_attention:
            bias = self.position_scores(query, key, relative_pos, rel_embeddings)
            if key_mask is not None:
                bias = bias.masked_fill(~key_mask, torch.finfo(bias.dtype).min)
            mask = bias
        context = attention(query, key, value, mask, self.dropout if self.training else 0.0,
                            scale=1.0 / self.scale_divisor)
        return merge_heads(context)

    def position_scores(self, query, key, relative_pos, rel_embeddings) -> torch.Tensor:
        """(batch, heads, seq, seq): the c2p and p2c terms, scaled like the content term."""
        span = self.span
        rel_embeddings = rel_embeddings[: 2 * span][None]  # (1, 2*span, hidden)
        query_proj = self.query_proj if self.share_att_key else getattr(self, "pos_query_proj", None)
        key_proj = self.key_proj if self.share_att_key else getattr(self, "pos_key_proj", None)
        batch, heads, seq, _ = query.shape
        index_shape = (batch, heads, seq, seq)
        score = 0
        if "c2p" in self.pos_att_type:
            pos_key = split_heads(key_proj(rel_embeddings), heads)  # (1, heads, 2*span, d)
            c2p = torch.matmul(query, pos_key.transpose(-1, -2))  # (batch, heads, seq, 2*span)
            index = torch.clamp(relative_pos + span, 0, 2 * span - 1)
            score = score + torch.gather(c2p, -1, index.expand(index_shape))
        if "p2c" in self.pos_att_type:
            pos_query = split_heads(query_proj(rel_embeddings), heads)
            p2c = torch.matmul(key, pos_query.transpose(-1, -2))  # (batch, heads, key, 2*span)
            index = torch.clamp(-relative_pos + span, 0, 2 * span - 1)
            score = score + torch.gather(p2c, -1, index.expand(index_shape)).transpose(-1, -2)
        if isinstance(score, int):  # relative attention with neither term
            return query.new_zeros(index_shape)
        return score / self.scale_divisor


class DebertaV2Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, key_mask, relative_pos=None, rel_embeddings=None):
        context = self.self(hidden_states, key_mask, relative_pos, rel_embeddings)
        return self.output(context, hidden_states)


class DebertaV2Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = DebertaV2Attention(config)
        self.intermediate = Intermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, key_mask, relative_pos=None, rel_embeddings=None):
        hidden_states = self.attention(hidden_states, key_mask, relative_pos, rel_embeddings)
        return self.output(self.intermediate(hidden_states), hidden_states)


class ConvLayer(nn.Module):
    """DeBERTa-v2-xlarge's convolution over the embeddings, added to the first layer's output."""

    def __init__(self, config):
        super().__init__()
        kernel = config.conv_kernel_size
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel,
                              padding=(kernel - 1) // 2, groups=config.conv_groups)
        self.act = activation(config.conv_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual_states, input_mask):
        out = self.conv(hidden_states.transpose(1, 2)).transpose(1, 2)  # (batch, seq, hidden)
        if input_mask is not None:
            out = out.masked_fill(~input_mask.bool()[:, :, None], 0)
        output = self.LayerNorm(residual_states + self.act(self.dropout(out)))
        if input_mask is not None:
            output = output * input_mask[:, :, None].to(output.dtype)
        return output


class DebertaV2Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(DebertaV2Layer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention = bool(config.relative_attention)
        if self.relative_attention:
            self.max_relative_positions, self.position_buckets = _relative_span(config)
            span = self.position_buckets if self.position_buckets > 0 else self.max_relative_positions
            self.rel_embeddings = nn.Embedding(2 * span, config.hidden_size)
        norms = {name.strip() for name in str(config.norm_rel_ebd).lower().split("|")}
        if "layer_norm" in norms:
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.conv = ConvLayer(config) if config.conv_kernel_size > 0 else None

    def rel_embedding(self) -> torch.Tensor | None:
        if not self.relative_attention:
            return None
        weight = self.rel_embeddings.weight
        return self.LayerNorm(weight) if hasattr(self, "LayerNorm") else weight

    def forward(self, hidden_states, attention_mask=None, output_hidden_states=False):
        """``attention_mask``: (batch, seq) 1/0, or None when nothing is padded."""
        relative_pos = None
        if self.relative_attention:
            relative_pos = relative_positions(hidden_states.shape[1], self.position_buckets,
                                              self.max_relative_positions, hidden_states.device)
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        rel_embeddings = self.rel_embedding()
        all_states = [hidden_states] if output_hidden_states else None
        embeddings = hidden_states
        for index, layer in enumerate(self.layer):
            hidden_states = layer(hidden_states, key_mask, relative_pos, rel_embeddings)
            if index == 0 and self.conv is not None:
                hidden_states = self.conv(embeddings, hidden_states, attention_mask)
            if all_states is not None:
                all_states.append(hidden_states)
        return hidden_states, (tuple(all_states) if all_states is not None else None)


class DebertaV2PreTrainedModel(PreTrainedModel):
    base_model_prefix = "deberta"
    config_defaults = DEBERTA_V2_DEFAULTS
    # Checkpoints of models without absolute positions may still carry the table.
    ignored_weights = [r"position_embeddings"]


class DebertaV2Model(DebertaV2PreTrainedModel):
    """The encoder; ``last_hidden_state`` (batch, seq, hidden). No pooler."""

    def __init__(self, config, add_pooling_layer: bool = False):  # no pooler in the base model
        super().__init__(config)
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = DebertaV2Encoder(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=False, **unused) -> ModelOutput:
        check_one_input(input_ids, inputs_embeds)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # nothing padded: SDPA's fast path, no masking
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, attention_mask,
                                        inputs_embeds)
        hidden_states, all_states = self.encoder(hidden_states, attention_mask, output_hidden_states)
        return ModelOutput(last_hidden_state=hidden_states, hidden_states=all_states)


DebertaV2PreTrainedModel.model_class = DebertaV2Model


# 3. Heads.
class ContextPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        size = config.pooler_hidden_size or config.hidden_size
        self.dense = nn.Linear(size, size)
        self.act = activation(config.pooler_hidden_act)
        self.dropout = nn.Dropout(config.pooler_dropout)

    def forward(self, hidden_states):
        return self.act(self.dense(self.dropout(hidden_states[:, 0])))  # the [CLS] token


class DebertaV2ForSequenceClassification(DebertaV2PreTrainedModel):
    optional_weights = [r"^classifier\.", r"^pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.deberta = DebertaV2Model(config)
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.dropout = nn.Dropout(config.cls_dropout or config.hidden_dropout_prob)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=False, **unused) -> ModelOutput:
        out = self.deberta(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_hidden_states)
        logits = self.classifier(self.dropout(self.pooler(out.last_hidden_state)))
        return ModelOutput(logits=logits, hidden_states=out.get("hidden_states"))


class DebertaV2ForTokenClassification(TokenClassifier, DebertaV2PreTrainedModel):
    pass


class DebertaV2ForQuestionAnswering(SpanClassifier, DebertaV2PreTrainedModel):
    pass


class PredictionHeadTransform(nn.Module):
    """dense -> act -> LayerNorm, to ``size`` (the legacy head projects to embedding_size)."""

    def __init__(self, config, size: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class LegacyLMPredictionHead(nn.Module):
    """``cls.predictions``: the transform, then a decoder tied to the word embeddings."""

    def __init__(self, config):
        super().__init__()
        size = _embedding_size(config)
        self.transform = PredictionHeadTransform(config, size)
        self.decoder = nn.Linear(size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class LMPredictionHead(nn.Module):
    """``lm_predictions.lm_head`` (the original DeBERTa head): the transform, then a product
    with the word embeddings passed in, plus a bias."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states, word_embeddings: torch.Tensor):
        hidden_states = self.LayerNorm(self.act(self.dense(hidden_states)))
        return torch.matmul(hidden_states, word_embeddings.t()) + self.bias


class _Holder(nn.Module):
    """One named child, so the parameter names are the checkpoint's."""

    def __init__(self, name: str, module: nn.Module):
        super().__init__()
        self.add_module(name, module)


class DebertaV2ForMaskedLM(MaskedLM, DebertaV2PreTrainedModel):
    """``legacy`` (the config's default) reads ``cls.predictions``; otherwise the original
    ``lm_predictions.lm_head``. Checkpoints with the other head get a fresh one, with a
    warning, as the reference does."""

    ignored_weights = [r"position_embeddings", r"^mask_predictions\."]

    def __init__(self, config):
        super().__init__(config)
        if config.legacy:
            self.cls = _Holder("predictions", LegacyLMPredictionHead(config))
            self.tied_weights = {
                "cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight",
                "cls.predictions.decoder.bias": "cls.predictions.bias"}
            self.optional_weights = [r"^cls\.predictions\.(transform\.|bias$)"]
            self.ignored_weights = [*self.ignored_weights, r"^lm_predictions\."]
        else:
            self.lm_predictions = _Holder("lm_head", LMPredictionHead(config))
            self.optional_weights = [r"^lm_predictions\."]
            self.ignored_weights = [*self.ignored_weights, r"^cls\.predictions\."]

    def logits(self, hidden_states):
        if self.config.legacy:
            return self.cls.predictions(hidden_states)
        return self.lm_predictions.lm_head(hidden_states, self.deberta.embeddings.word_embeddings.weight)


HEADS = {
    "AutoModel": DebertaV2Model,
    "AutoModelForSequenceClassification": DebertaV2ForSequenceClassification,
    "AutoModelForTokenClassification": DebertaV2ForTokenClassification,
    "AutoModelForQuestionAnswering": DebertaV2ForQuestionAnswering,
    "AutoModelForMaskedLM": DebertaV2ForMaskedLM,
}
