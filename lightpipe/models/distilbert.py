"""DistilBERT (Sanh et al., 2019, arXiv:1910.01108).

Matches transformers' ``models/distilbert/modeling_distilbert.py``. A BERT without token
types or pooler, with its own parameter names (``q_lin``, ``sa_layer_norm``, ``ffn.lin1``) and
config names (``dim``, ``n_layers``, ``n_heads``, ``hidden_dim``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .encoder_heads import MaskedLM, SpanClassifier, TokenClassifier
from .layers import (activation, attention, merge_heads, padding_mask, run_layers,
                     split_heads)

DISTILBERT_DEFAULTS = {
    "vocab_size": 30522,
    "dim": 768,
    "n_layers": 6,
    "n_heads": 12,
    "hidden_dim": 3072,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation": "gelu",
    "max_position_embeddings": 512,
    "seq_classif_dropout": 0.2,
    "qa_dropout": 0.1,
    "initializer_range": 0.02,
    "pad_token_id": 0,
    "sinusoidal_pos_embds": False,
}
_EPS = 1e-12  # DistilBERT's layer norms are not configurable


class Embeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=_EPS)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids, inputs_embeds=None, position_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, dim)
        seq_len, limit = inputs_embeds.shape[1], self.position_embeddings.num_embeddings
        if seq_len > limit:
            raise InputError(
                f"The input has {seq_len} tokens but this model reads at most {limit} positions. "
                "Truncate it (tokenizer or pipeline argument truncation=True), or split the text.")
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=inputs_embeds.device)[None, :]
        return self.dropout(self.LayerNorm(inputs_embeds + self.position_embeddings(position_ids)))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_heads = config.n_heads
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.dropout = config.attention_dropout

    def forward(self, hidden_states, mask, first_only=False):
        queries = hidden_states[:, :1] if first_only else hidden_states
        query = split_heads(self.q_lin(queries), self.n_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(self.k_lin(hidden_states), self.n_heads)
        value = split_heads(self.v_lin(hidden_states), self.n_heads)
        context = attention(query, key, value, mask, self.dropout if self.training else 0.0)
        return self.out_lin(merge_heads(context))


class FFN(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.act = activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states):
        return self.dropout(self.lin2(self.act(self.lin1(hidden_states))))


class TransformerBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=_EPS)

    def forward(self, hidden_states, mask, first_only=False):
        residual = hidden_states[:, :1] if first_only else hidden_states
        hidden_states = self.sa_layer_norm(self.attention(hidden_states, mask, first_only) + residual)
        return self.output_layer_norm(self.ffn(hidden_states) + hidden_states)


class Transformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))

    def forward(self, hidden_states, mask, output_hidden_states=False, first_token_only=False):
        return run_layers(self.layer, hidden_states, mask, output_hidden_states, first_token_only)


class DistilBertPreTrainedModel(PreTrainedModel):
    base_model_prefix = "distilbert"
    config_defaults = DISTILBERT_DEFAULTS


class DistilBertModel(DistilBertPreTrainedModel):
    def __init__(self, config, add_pooling_layer: bool = False):  # DistilBERT has no pooler
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None,
                output_hidden_states=False, first_token_only=False, **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        hidden_states = self.embeddings(input_ids, inputs_embeds, position_ids)
        hidden_states, all_states = self.transformer(hidden_states, padding_mask(attention_mask),
                                                     output_hidden_states, first_token_only)
        return ModelOutput(last_hidden_state=hidden_states, hidden_states=all_states)


DistilBertPreTrainedModel.model_class = DistilBertModel


class DistilBertForSequenceClassification(DistilBertPreTrainedModel):
    optional_weights = [r"^(pre_classifier|classifier)\."]

    def __init__(self, config):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        out = self.distilbert(input_ids, attention_mask, inputs_embeds,
                              output_hidden_states=output_hidden_states,
                              first_token_only=True)  # the head reads the first token
        pooled = nn.functional.relu(self.pre_classifier(out.last_hidden_state[:, 0]))
        return ModelOutput(logits=self.classifier(self.dropout(pooled)),
                           hidden_states=out.get("hidden_states"))


class DistilBertForTokenClassification(TokenClassifier, DistilBertPreTrainedModel):
    pass


class DistilBertForQuestionAnswering(SpanClassifier, DistilBertPreTrainedModel):
    pass  # the reference's dropout before qa_outputs does nothing at inference


class DistilBertForMaskedLM(MaskedLM, DistilBertPreTrainedModel):
    tied_weights = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.act = activation(config.activation)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=_EPS)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)

    def logits(self, hidden_states):
        return self.vocab_projector(self.vocab_layer_norm(self.act(self.vocab_transform(hidden_states))))


HEADS = {
    "AutoModel": DistilBertModel,
    "AutoModelForSequenceClassification": DistilBertForSequenceClassification,
    "AutoModelForTokenClassification": DistilBertForTokenClassification,
    "AutoModelForQuestionAnswering": DistilBertForQuestionAnswering,
    "AutoModelForMaskedLM": DistilBertForMaskedLM,
}
