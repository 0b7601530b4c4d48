"""The per-token heads every BERT-like encoder family has, written once: token classification,
extractive question answering (start/end spans) and masked-LM. A family's head is
``class RobertaForTokenClassification(TokenClassifier, RobertaPreTrainedModel)``; the family's
pre-trained base class names its base model in ``model_class`` (set after that class is
defined) and where it sits in ``base_model_prefix``. A head's ``forward`` takes what its base
model takes, in the same order (MPNet has no token_type_ids, LayoutLM has bbox second), and
passes it on."""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import ModelOutput


def classifier_dropout(config) -> float:
    value = config.get("classifier_dropout")
    return config.get("hidden_dropout_prob", config.get("dropout", 0.1)) if value is None else value


def hidden_size_of(config) -> int:
    return config.get("hidden_size") or config.dim  # DistilBERT calls it dim


def span_logits(logits: torch.Tensor, out: ModelOutput) -> ModelOutput:
    """(batch, seq, 2) -> start and end logits, each (batch, seq)."""
    start_logits, end_logits = logits.split(1, dim=-1)
    return ModelOutput(start_logits=start_logits.squeeze(-1).contiguous(),
                       end_logits=end_logits.squeeze(-1).contiguous(),
                       hidden_states=out.get("hidden_states"))


class EncoderHead:
    """Builds the base model (without its pooler) and runs it on the head's inputs."""

    model_class: type

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.model_class(config, add_pooling_layer=False))

    def encode(self, *args, **kwargs) -> ModelOutput:
        """The base model on the head's inputs, as given: a head takes its family's base-model
        arguments in their order (BERT: input_ids, attention_mask, token_type_ids, ...)."""
        return getattr(self, self.base_model_prefix)(*args, **kwargs)


class TokenHead(EncoderHead):
    """A head on every token's last state: ``forward`` runs the base model, then ``logits``."""

    def logits(self, hidden_states):
        raise NotImplementedError

    def outputs(self, out: ModelOutput) -> ModelOutput:
        return ModelOutput(logits=self.logits(out.last_hidden_state),
                           hidden_states=out.get("hidden_states"))

    def forward(self, *args, **kwargs) -> ModelOutput:
        return self.outputs(self.encode(*args, **kwargs))


class TokenClassifier(TokenHead):
    """Dropout, then a linear layer on every token -> ``logits`` (batch, seq, labels)."""

    optional_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(hidden_size_of(config), config.num_labels)

    def logits(self, hidden_states):
        return self.classifier(self.dropout(hidden_states))


class FirstTokenClassifier(TokenHead):
    """The family's classification head (``classifier_class``, which reads the first token) ->
    ``logits`` (batch, labels); the base model's last layer computes only that position."""

    optional_weights = [r"^classifier\."]
    classifier_class: type

    def __init__(self, config):
        super().__init__(config)
        self.classifier = self.classifier_class(config)

    def logits(self, hidden_states):
        return self.classifier(hidden_states)

    def forward(self, *args, **kwargs) -> ModelOutput:
        return self.outputs(self.encode(*args, first_token_only=True, **kwargs))


class SpanClassifier(TokenHead):
    """A linear layer to two logits per token -> ``start_logits``, ``end_logits``."""

    optional_weights = [r"^qa_outputs\."]

    def __init__(self, config):
        super().__init__(config)
        self.qa_outputs = nn.Linear(hidden_size_of(config), config.num_labels)

    def outputs(self, out: ModelOutput) -> ModelOutput:
        return span_logits(self.qa_outputs(out.last_hidden_state), out)


class MaskedLM(TokenHead):
    """The family's LM head (``lm_head_class``, stored as ``lm_head_name``) on every token;
    families with another layout build their modules themselves and override ``logits``."""

    lm_head_name = "lm_head"
    lm_head_class: type | None = None

    def __init__(self, config):
        super().__init__(config)
        if self.lm_head_class is not None:
            setattr(self, self.lm_head_name, self.lm_head_class(config))

    def logits(self, hidden_states):
        return getattr(self, self.lm_head_name)(hidden_states)
