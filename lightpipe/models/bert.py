"""BERT (Devlin et al., 2018, arXiv:1810.04805).

Matches transformers' ``models/bert/modeling_bert.py`` for inference. Parameter names are the
Hub checkpoints' names (``bert.encoder.layer.0.attention.self.query.weight``), so checkpoints
load name for name. RoBERTa and XLM-RoBERTa reuse these modules (see roberta.py).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .encoder_heads import MaskedLM, SpanClassifier, TokenClassifier, classifier_dropout
from .layers import Intermediate, SelfAttention, activation, padding_mask, run_layers

# 1. Config fields read, with the defaults config.json may leave out.
BERT_DEFAULTS = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "classifier_dropout": None,
}


# 2. Modules.
class BertEmbeddings(nn.Module):
    """Word + token-type + position embeddings, normed; a family that embeds more inputs
    (LayoutLM's word boxes) adds them in ``extra_embeddings``."""

    # What to do about an input longer than the position table (the error says it).
    too_long_hint = "Truncate it (tokenizer or pipeline argument truncation=True), or split the text."

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]

    def extra_embeddings(self, reference: torch.Tensor, **inputs) -> torch.Tensor | None:
        """What a subclass adds to the sum for its own ``inputs``; ``reference`` is (batch, seq)."""
        return None

    def forward(self, input_ids, token_type_ids=None, position_ids=None, inputs_embeds=None,
                **inputs):
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if position_ids is None:
            position_ids = self.position_ids(reference)
        limit = self.position_embeddings.num_embeddings
        if int(position_ids.max()) >= limit:
            raise InputError(f"The input has {reference.shape[1]} tokens but this model reads at "
                             f"most {limit} positions. {self.too_long_hint}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(reference, dtype=torch.long)
        extra = self.extra_embeddings(reference, **inputs)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = (inputs_embeds + self.token_type_embeddings(token_type_ids)
                      + self.position_embeddings(position_ids))
        if extra is not None:
            embeddings = embeddings + extra
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(SelfAttention):
    def __init__(self, config):
        super().__init__(config.hidden_size, config.num_attention_heads,
                         dropout=config.attention_probs_dropout_prob)


class BertSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, mask, first_only=False):
        residual = hidden_states[:, :1] if first_only else hidden_states
        return self.output(self.self(hidden_states, mask, first_only), residual)


class BertOutput(BertSelfOutput):
    def __init__(self, config):
        super().__init__(config)
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = Intermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, mask, first_only=False):
        hidden_states = self.attention(hidden_states, mask, first_only)
        return self.output(self.intermediate(hidden_states), hidden_states)


class BertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, mask, output_hidden_states=False, first_token_only=False):
        return run_layers(self.layer, hidden_states, mask, output_hidden_states, first_token_only)


class BertPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))


class BertPreTrainedModel(PreTrainedModel):
    base_model_prefix = "bert"
    config_defaults = BERT_DEFAULTS
    embeddings_class = BertEmbeddings


class BertModel(BertPreTrainedModel):
    """The encoder; ``last_hidden_state`` (batch, seq, hidden) and ``pooler_output``."""

    optional_weights = [r"^pooler\."]

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        if config.position_embedding_type != "absolute":
            raise UnsupportedModelError(
                f"position_embedding_type={config.position_embedding_type!r} is not supported; "
                "lightpipe implements 'absolute' position embeddings.")
        self.embeddings = self.embeddings_class(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=False, first_token_only=False,
                **unused) -> ModelOutput:
        """``first_token_only=True`` (for heads that read the first token): the last layer
        computes only that position, and ``last_hidden_state`` is (batch, 1, hidden)."""
        check_one_input(input_ids, inputs_embeds)
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        return self.run_encoder(hidden_states, attention_mask, output_hidden_states, first_token_only)

    def run_encoder(self, hidden_states, attention_mask=None, output_hidden_states=False,
                    first_token_only=False) -> ModelOutput:
        """The embeddings' output -> the encoder's and the pooler's outputs."""
        hidden_states, all_states = self.encoder(hidden_states, padding_mask(attention_mask),
                                                 output_hidden_states, first_token_only)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled,
                           hidden_states=all_states)


def check_one_input(input_ids, inputs_embeds) -> None:
    if (input_ids is None) == (inputs_embeds is None):
        raise InputError("Pass exactly one of input_ids and inputs_embeds.")


# 3. Heads.
class BertForSequenceClassification(BertPreTrainedModel):
    optional_weights = [r"^classifier\.", r"^bert\.pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=False, **unused) -> ModelOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_hidden_states, first_token_only=True)  # the pooler reads [CLS]
        logits = self.classifier(self.dropout(out.pooler_output))
        return ModelOutput(logits=logits, hidden_states=out.get("hidden_states"))


class BertForTokenClassification(TokenClassifier, BertPreTrainedModel):
    ignored_weights = [r"^bert\.pooler\."]


class BertForQuestionAnswering(SpanClassifier, BertPreTrainedModel):
    ignored_weights = [r"^bert\.pooler\."]


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, hidden_states):
        return self.predictions(hidden_states)


class BertForMaskedLM(MaskedLM, BertPreTrainedModel):
    tied_weights = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                    "cls.predictions.decoder.bias": "cls.predictions.bias"}
    ignored_weights = [r"^bert\.pooler\.", r"^cls\.seq_relationship\."]
    lm_head_name, lm_head_class = "cls", BertOnlyMLMHead


BertPreTrainedModel.model_class = BertModel

# model_type -> head -> class, read by models/__init__.py
HEADS = {
    "AutoModel": BertModel,
    "AutoModelForSequenceClassification": BertForSequenceClassification,
    "AutoModelForTokenClassification": BertForTokenClassification,
    "AutoModelForQuestionAnswering": BertForQuestionAnswering,
    "AutoModelForMaskedLM": BertForMaskedLM,
}
