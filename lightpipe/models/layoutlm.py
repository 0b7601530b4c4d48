"""LayoutLM v1 (Xu et al., 2019, arXiv:1912.13318): BERT plus 2-D position embeddings.

Matches transformers' ``models/layoutlm/modeling_layoutlm.py`` for inference. The encoder is
BERT's (bert.py); the one real difference is in the embeddings: each token also carries its
word's box on the page, ``bbox = (x0, y0, x1, y1)`` normalised to 0-1000, and the embeddings
add ``x(x0) + y(y0) + x(x1) + y(y1) + h(y1 - y0) + w(x1 - x0)`` to BERT's sum. Parameter
names are the Hub checkpoints' (``layoutlm.embeddings.x_position_embeddings.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput
from .bert import (BERT_DEFAULTS, BertEmbeddings, BertModel, BertOnlyMLMHead, BertPreTrainedModel,
                   check_one_input)
from .encoder_heads import MaskedLM, SpanClassifier, TokenClassifier

# 1. Config fields read (BERT's, plus the size of the 2-D position tables).
LAYOUTLM_DEFAULTS = {**BERT_DEFAULTS, "max_2d_position_embeddings": 1024}


# 2. Modules.
class LayoutLMEmbeddings(BertEmbeddings):
    """BERT's word + position + token-type embeddings, plus the word boxes' 2-D embeddings."""

    too_long_hint = ("Truncate it, or let the document-question-answering pipeline split the "
                     "document into windows (max_seq_len=, doc_stride=).")

    def __init__(self, config):
        super().__init__(config)
        size = config.max_2d_position_embeddings
        self.x_position_embeddings = nn.Embedding(size, config.hidden_size)
        self.y_position_embeddings = nn.Embedding(size, config.hidden_size)
        self.h_position_embeddings = nn.Embedding(size, config.hidden_size)
        self.w_position_embeddings = nn.Embedding(size, config.hidden_size)

    def forward(self, input_ids, bbox=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None):
        return super().forward(input_ids, token_type_ids, position_ids, inputs_embeds, bbox=bbox)

    def extra_embeddings(self, reference, bbox=None):
        if bbox is None:
            bbox = torch.zeros(*reference.shape, 4, dtype=torch.long, device=reference.device)
        check_boxes(bbox, self.x_position_embeddings.num_embeddings)
        # bbox: (batch, seq, 4) as x0, y0, x1, y1
        x0, y0, x1, y1 = bbox.unbind(-1)
        return (self.x_position_embeddings(x0) + self.y_position_embeddings(y0)
                + self.x_position_embeddings(x1) + self.y_position_embeddings(y1)
                + self.h_position_embeddings(y1 - y0) + self.w_position_embeddings(x1 - x0))


def check_boxes(bbox: torch.Tensor, limit: int) -> None:
    """Boxes must be whole numbers in [0, limit) with x1 >= x0 and y1 >= y0; else a clear error
    (the reference fails inside an embedding look-up)."""
    if bbox.dim() != 3 or bbox.shape[-1] != 4:
        raise InputError(f"bbox must be (batch, seq, 4) boxes (x0, y0, x1, y1); got shape "
                         f"{tuple(bbox.shape)}.")
    if bbox.dtype.is_floating_point or bbox.dtype == torch.bool:
        raise InputError("bbox must hold integers (boxes normalised to 0-1000), not "
                         f"{bbox.dtype}.")
    if bbox.numel() == 0:
        return
    low, high = int(bbox.min()), int(bbox.max())
    if low < 0 or high >= limit:
        raise InputError(f"Box coordinates must lie in [0, {limit - 1}] (boxes normalised to "
                         f"0-1000); got values from {low} to {high}.")
    if bool(((bbox[..., 2] < bbox[..., 0]) | (bbox[..., 3] < bbox[..., 1])).any()):
        raise InputError("Each box is (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0; some box "
                         "has its corners swapped.")


class LayoutLMPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "layoutlm"
    config_defaults = LAYOUTLM_DEFAULTS
    embeddings_class = LayoutLMEmbeddings


class LayoutLMModel(LayoutLMPreTrainedModel, BertModel):
    """The encoder; ``last_hidden_state`` (batch, seq, hidden) and ``pooler_output``."""

    def forward(self, input_ids=None, bbox=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, output_hidden_states=False,
                first_token_only=False, **unused) -> ModelOutput:
        check_one_input(input_ids, inputs_embeds)
        hidden_states = self.embeddings(input_ids, bbox, token_type_ids, position_ids,
                                        inputs_embeds)
        return self.run_encoder(hidden_states, attention_mask, output_hidden_states,
                                first_token_only)


LayoutLMPreTrainedModel.model_class = LayoutLMModel


# 3. Heads. Every head of the reference builds the pooler; those that do not read it skip it.
class LayoutLMForQuestionAnswering(SpanClassifier, LayoutLMPreTrainedModel):
    """Start and end logits over the tokens (extractive document question answering)."""

    ignored_weights = [r"^layoutlm\.pooler\."]


class LayoutLMForTokenClassification(TokenClassifier, LayoutLMPreTrainedModel):
    ignored_weights = [r"^layoutlm\.pooler\."]


class LayoutLMForSequenceClassification(LayoutLMPreTrainedModel):
    optional_weights = [r"^classifier\.", r"^layoutlm\.pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.layoutlm = LayoutLMModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, bbox=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, output_hidden_states=False,
                **unused) -> ModelOutput:
        out = self.layoutlm(input_ids, bbox, attention_mask, token_type_ids, position_ids,
                            inputs_embeds, output_hidden_states,
                            first_token_only=True)  # the pooler reads [CLS]
        return ModelOutput(logits=self.classifier(self.dropout(out.pooler_output)),
                           hidden_states=out.get("hidden_states"))


class LayoutLMForMaskedLM(MaskedLM, LayoutLMPreTrainedModel):
    tied_weights = {"cls.predictions.decoder.weight": "layoutlm.embeddings.word_embeddings.weight",
                    "cls.predictions.decoder.bias": "cls.predictions.bias"}
    ignored_weights = [r"^layoutlm\.pooler\."]
    lm_head_name, lm_head_class = "cls", BertOnlyMLMHead


# model_type -> head -> class, read by models/__init__.py
HEADS = {
    "AutoModel": LayoutLMModel,
    "AutoModelForDocumentQuestionAnswering": LayoutLMForQuestionAnswering,
    "AutoModelForQuestionAnswering": LayoutLMForQuestionAnswering,
    "AutoModelForTokenClassification": LayoutLMForTokenClassification,
    "AutoModelForSequenceClassification": LayoutLMForSequenceClassification,
    "AutoModelForMaskedLM": LayoutLMForMaskedLM,
}
