"""MPNet (Song et al., 2020, arXiv:2004.09297).

Matches transformers' ``models/mpnet/modeling_mpnet.py``. A BERT layer stack with no token
types, RoBERTa's position ids (counted from the padding id, 1) and one relative-position bias
shared by every layer: T5-style log buckets of the query-key distance, learnt per head
(``encoder.relative_attention_bias``). The attention's projections are ``attn.q/k/v/o``; the
classification and LM heads are RoBERTa's. all-mpnet-base-v2 is an ``MPNetModel``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .bert import BERT_DEFAULTS, BertLayer, BertPooler, check_one_input
from .encoder_heads import FirstTokenClassifier, MaskedLM, SpanClassifier, TokenClassifier
from .layers import attention, check_heads, merge_heads, run_layers, split_heads
from .roberta import RobertaClassificationHead, RobertaEmbeddings, RobertaLMHead

# 1. Config fields read, with the defaults config.json may leave out.
# BERT's, without token types and position-embedding kinds (a config that names them is fine).
MPNET_DEFAULTS = {**{k: v for k, v in BERT_DEFAULTS.items()
                     if k not in ("type_vocab_size", "position_embedding_type")},
                  "vocab_size": 30527, "relative_attention_num_buckets": 32, "pad_token_id": 1,
                  "bos_token_id": 0, "eos_token_id": 2}
_PADDING_IDX = 1  # MPNet's embeddings fix it, whatever pad_token_id says
# The bucket function always uses 32 buckets and distances up to 128, as the reference does;
# relative_attention_num_buckets sizes only the bias table.
_BUCKETS, _MAX_DISTANCE = 32, 128


# 2. Modules.
class MPNetEmbeddings(nn.Module):
    """Word + position embeddings, normed; positions count up from ``padding_idx + 1``."""

    position_ids = RobertaEmbeddings.position_ids

    def __init__(self, config):
        super().__init__()
        self.padding_idx = _PADDING_IDX
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=_PADDING_IDX)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=_PADDING_IDX)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, position_ids=None, inputs_embeds=None):
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]  # (batch, seq)
        if position_ids is None:
            position_ids = self.position_ids(reference)
        limit = self.position_embeddings.num_embeddings
        if int(position_ids.max()) >= limit:
            raise InputError(f"The input has {reference.shape[1]} tokens but this model reads at "
                             f"most {limit - _PADDING_IDX - 1}. Truncate it (tokenizer or pipeline "
                             "argument truncation=True), or split the text.")
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        return self.dropout(self.LayerNorm(inputs_embeds + self.position_embeddings(position_ids)))


class MPNetSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        check_heads(config.hidden_size, config.num_attention_heads)
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.k = nn.Linear(config.hidden_size, config.hidden_size)
        self.v = nn.Linear(config.hidden_size, config.hidden_size)
        self.o = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, bias, first_only=False):
        """``bias``: (batch or 1, heads, seq, seq), the position bias with padding masked."""
        queries = hidden_states[:, :1] if first_only else hidden_states
        query = split_heads(self.q(queries), self.num_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(self.k(hidden_states), self.num_heads)
        value = split_heads(self.v(hidden_states), self.num_heads)
        bias = bias[:, :, :1] if first_only else bias
        context = attention(query, key, value, bias, self.dropout if self.training else 0.0)
        return self.o(merge_heads(context))


class MPNetAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn = MPNetSelfAttention(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, bias, first_only=False):
        residual = hidden_states[:, :1] if first_only else hidden_states
        return self.LayerNorm(self.dropout(self.attn(hidden_states, bias, first_only)) + residual)


class MPNetLayer(BertLayer):
    """BERT's layer (``intermediate``, ``output``) around MPNet's attention."""

    def __init__(self, config):
        super().__init__(config)
        self.attention = MPNetAttention(config)


def relative_position_bucket(relative_position: torch.Tensor) -> torch.Tensor:
    """Key-minus-query distances -> bucket ids: exact up to 8 each way, then log-spaced up
    to 128 (T5's bidirectional buckets)."""
    half = _BUCKETS // 2
    distance = -relative_position
    buckets = (distance < 0).long() * half
    distance = distance.abs()
    exact = half // 2
    log_bucket = exact + (torch.log(distance.float() / exact) / math.log(_MAX_DISTANCE / exact)
                          * (half - exact)).long()
    log_bucket = torch.clamp(log_bucket, max=half - 1)
    return buckets + torch.where(distance < exact, distance, log_bucket)


class MPNetEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(MPNetLayer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets,
                                                    config.num_attention_heads)

    def position_bias(self, seq_len: int, attention_mask: torch.Tensor | None,
                      dtype: torch.dtype) -> torch.Tensor:
        """(batch or 1, heads, seq, seq): the learnt bias per distance; padded keys at the
        lowest value of ``dtype``."""
        positions = torch.arange(seq_len, device=self.relative_attention_bias.weight.device)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None])  # (seq, seq)
        bias = self.relative_attention_bias(buckets).permute(2, 0, 1)[None].to(dtype)
        if attention_mask is not None and not bool(attention_mask.all()):
            keys = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq)
            bias = bias.masked_fill(~keys, torch.finfo(dtype).min)
        return bias

    def forward(self, hidden_states, attention_mask=None, output_hidden_states=False,
                first_token_only=False):
        bias = self.position_bias(hidden_states.shape[1], attention_mask, hidden_states.dtype)
        return run_layers(self.layer, hidden_states, bias, output_hidden_states, first_token_only)


class MPNetPreTrainedModel(PreTrainedModel):
    base_model_prefix = "mpnet"
    config_defaults = MPNET_DEFAULTS
    ignored_weights = [r"^mpnet\.pooler\."]  # heads build no pooler


class MPNetModel(MPNetPreTrainedModel):
    """The encoder; ``last_hidden_state`` (batch, seq, hidden) and ``pooler_output``."""

    optional_weights = [r"^pooler\."]
    ignored_weights = []

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = MPNetEmbeddings(config)
        self.encoder = MPNetEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_hidden_states=False, first_token_only=False, **unused) -> ModelOutput:
        """``first_token_only=True``: the last layer computes only the first position."""
        check_one_input(input_ids, inputs_embeds)
        hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds)
        hidden_states, all_states = self.encoder(hidden_states, attention_mask,
                                                 output_hidden_states, first_token_only)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled,
                           hidden_states=all_states)


MPNetPreTrainedModel.model_class = MPNetModel


# 3. Heads.
class MPNetForSequenceClassification(FirstTokenClassifier, MPNetPreTrainedModel):
    classifier_class = RobertaClassificationHead  # dense, tanh, out_proj on <s>


class MPNetForTokenClassification(TokenClassifier, MPNetPreTrainedModel):
    pass


class MPNetForQuestionAnswering(SpanClassifier, MPNetPreTrainedModel):
    pass


class MPNetForMaskedLM(MaskedLM, MPNetPreTrainedModel):
    tied_weights = {"lm_head.decoder.weight": "mpnet.embeddings.word_embeddings.weight",
                    "lm_head.decoder.bias": "lm_head.bias"}
    lm_head_class = RobertaLMHead  # exact GELU, as MPNet's


HEADS = {
    "AutoModel": MPNetModel,
    "AutoModelForSequenceClassification": MPNetForSequenceClassification,
    "AutoModelForTokenClassification": MPNetForTokenClassification,
    "AutoModelForQuestionAnswering": MPNetForQuestionAnswering,
    "AutoModelForMaskedLM": MPNetForMaskedLM,
}
