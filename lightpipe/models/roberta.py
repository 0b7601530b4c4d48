"""RoBERTa (Liu et al., 2019, arXiv:1907.11692) and XLM-RoBERTa (Conneau et al., 2019).

Matches transformers' ``models/roberta/modeling_roberta.py``. The encoder is BERT's; the real
differences are here: position ids count from ``pad_token_id + 1`` and skip padding, the
classification head reads ``<s>`` through its own dense layer, and the LM head is
``lm_head``. XLM-RoBERTa is the same code under another ``model_type`` (a registry entry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bert import BERT_DEFAULTS, BertEmbeddings, BertModel, BertPreTrainedModel
from .encoder_heads import FirstTokenClassifier, MaskedLM, SpanClassifier, TokenClassifier, classifier_dropout

ROBERTA_DEFAULTS = {**BERT_DEFAULTS, "vocab_size": 50265, "pad_token_id": 1, "bos_token_id": 0,
                    "eos_token_id": 2, "layer_norm_eps": 1e-5, "type_vocab_size": 1,
                    "max_position_embeddings": 514}


class RobertaEmbeddings(BertEmbeddings):
    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=self.padding_idx)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dtype != torch.long:  # inputs_embeds given: every position is a token
            start = self.padding_idx + 1
            return torch.arange(start, start + input_ids.shape[1], device=input_ids.device)[None, :]
        # Non-padding tokens count up from padding_idx + 1; padding keeps padding_idx.
        is_token = input_ids.ne(self.padding_idx).long()
        return torch.cumsum(is_token, dim=1) * is_token + self.padding_idx


class RobertaPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "roberta"
    config_defaults = ROBERTA_DEFAULTS
    embeddings_class = RobertaEmbeddings


class RobertaModel(RobertaPreTrainedModel, BertModel):
    pass


RobertaPreTrainedModel.model_class = RobertaModel


class RobertaClassificationHead(nn.Module):
    """dense, tanh, out_proj on the first token (ELECTRA's head is this one with GELU)."""

    act = staticmethod(torch.tanh)

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states):
        first = self.dropout(hidden_states[:, 0])  # the <s> token
        return self.out_proj(self.dropout(self.act(self.dense(first))))


class RobertaForSequenceClassification(FirstTokenClassifier, RobertaPreTrainedModel):
    ignored_weights = [r"^roberta\.pooler\."]
    classifier_class = RobertaClassificationHead


class RobertaForTokenClassification(TokenClassifier, RobertaPreTrainedModel):
    ignored_weights = [r"^roberta\.pooler\."]


class RobertaForQuestionAnswering(SpanClassifier, RobertaPreTrainedModel):
    ignored_weights = [r"^roberta\.pooler\."]


class RobertaLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        # RoBERTa's LM head always uses exact GELU, whatever hidden_act says.
        return self.decoder(self.layer_norm(F.gelu(self.dense(hidden_states))))


class RobertaForMaskedLM(MaskedLM, RobertaPreTrainedModel):
    tied_weights = {"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
                    "lm_head.decoder.bias": "lm_head.bias"}
    ignored_weights = [r"^roberta\.pooler\."]
    lm_head_class = RobertaLMHead


HEADS = {
    "AutoModel": RobertaModel,
    "AutoModelForSequenceClassification": RobertaForSequenceClassification,
    "AutoModelForTokenClassification": RobertaForTokenClassification,
    "AutoModelForQuestionAnswering": RobertaForQuestionAnswering,
    "AutoModelForMaskedLM": RobertaForMaskedLM,
}


def _variant(prefix: str) -> dict[str, type]:
    """Same maths under another name (XLMRobertaModel, CamembertForMaskedLM, ...), so saved
    configs name the architecture as the reference does."""
    return {head: type(cls.__name__.replace("Roberta", prefix, 1), (cls,), {})
            for head, cls in HEADS.items()}


XLM_ROBERTA_HEADS = _variant("XLMRoberta")
CAMEMBERT_HEADS = _variant("Camembert")
