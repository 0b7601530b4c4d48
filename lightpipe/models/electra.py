"""ELECTRA (Clark et al., 2020, arXiv:2003.10555).

Matches transformers' ``models/electra/modeling_electra.py``. The encoder is BERT's, layer for
layer (bert.py); the differences are here: embeddings of ``embedding_size`` projected to
``hidden_size`` (``embeddings_project``) when the two differ, no pooler, a GELU
classification head, the discriminator's replaced-token head (``ElectraForPreTraining``, what
the ``google/electra-*-discriminator`` checkpoints are) and the generator's masked-LM head.
"""

from __future__ import annotations

from torch import nn

from ..config import Config
from ..modeling import ModelOutput
from .bert import BERT_DEFAULTS, BertEmbeddings, BertModel, BertPreTrainedModel, check_one_input
from .encoder_heads import FirstTokenClassifier, MaskedLM, SpanClassifier, TokenClassifier, TokenHead
from .layers import activation
from .roberta import RobertaClassificationHead

# 1. Config fields read, with the defaults config.json may leave out.
ELECTRA_DEFAULTS = {**BERT_DEFAULTS, "embedding_size": 128, "hidden_size": 256,
                    "num_attention_heads": 4, "intermediate_size": 1024}


# 2. Modules.
class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings, ``embedding_size`` wide."""

    def __init__(self, config):
        super().__init__(Config.from_dict(config.to_dict(), hidden_size=config.embedding_size))


class ElectraPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "electra"
    config_defaults = ELECTRA_DEFAULTS
    embeddings_class = ElectraEmbeddings


class ElectraModel(ElectraPreTrainedModel, BertModel):
    """The encoder; ``last_hidden_state`` (batch, seq, hidden). No pooler."""

    optional_weights = []

    def __init__(self, config, add_pooling_layer: bool = False):  # ELECTRA has no pooler
        super().__init__(config, add_pooling_layer=False)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=False, first_token_only=False,
                **unused) -> ModelOutput:
        check_one_input(input_ids, inputs_embeds)
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        if hasattr(self, "embeddings_project"):
            hidden_states = self.embeddings_project(hidden_states)
        return self.run_encoder(hidden_states, attention_mask, output_hidden_states,
                                first_token_only)


ElectraPreTrainedModel.model_class = ElectraModel


# 3. Heads.
class ElectraClassificationHead(RobertaClassificationHead):
    # GELU where BERT uses tanh: the ELECTRA authors' choice, whatever hidden_act says.
    act = staticmethod(nn.functional.gelu)


class ElectraForSequenceClassification(FirstTokenClassifier, ElectraPreTrainedModel):
    classifier_class = ElectraClassificationHead


class ElectraForTokenClassification(TokenClassifier, ElectraPreTrainedModel):
    pass


class ElectraForQuestionAnswering(SpanClassifier, ElectraPreTrainedModel):
    pass


class ElectraDiscriminatorPredictions(nn.Module):
    """One logit per token: was it replaced?"""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states):
        return self.dense_prediction(self.act(self.dense(hidden_states))).squeeze(-1)


class ElectraForPreTraining(TokenHead, ElectraPreTrainedModel):
    """The discriminator: ``logits`` (batch, seq), > 0 where a token looks replaced."""

    def __init__(self, config):
        super().__init__(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)

    def logits(self, hidden_states):
        return self.discriminator_predictions(hidden_states)


class ElectraGeneratorPredictions(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(nn.functional.gelu(self.dense(hidden_states)))


class ElectraForMaskedLM(MaskedLM, ElectraPreTrainedModel):
    """The generator (``google/electra-*-generator``): fill-mask."""

    tied_weights = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)

    def logits(self, hidden_states):
        return self.generator_lm_head(self.generator_predictions(hidden_states))


HEADS = {
    "AutoModel": ElectraModel,
    "AutoModelForSequenceClassification": ElectraForSequenceClassification,
    "AutoModelForTokenClassification": ElectraForTokenClassification,
    "AutoModelForQuestionAnswering": ElectraForQuestionAnswering,
    "AutoModelForMaskedLM": ElectraForMaskedLM,
    "AutoModelForPreTraining": ElectraForPreTraining,
}
