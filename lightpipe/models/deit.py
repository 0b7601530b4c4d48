"""DeiT (Touvron et al., 2021, arXiv:2012.12877): data-efficient image transformers.

Matches transformers' ``models/deit/modeling_deit.py``. ViT's encoder layer for layer
(vit.py, the same checkpoint names under ``deit.``); the embeddings put a distillation token
after [CLS] (positions for both, so interpolation keeps the first two), and the distilled
checkpoints (``facebook/deit-*-distilled-*``) are ``DeiTForImageClassificationWithTeacher``:
one head on [CLS], one on the distillation token, the logits their mean.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import ModelOutput
from .vit import VIT_DEFAULTS, ViTEmbeddings, ViTForImageClassification, ViTModel, ViTPreTrainedModel

# 1. Config fields read, with the defaults config.json may leave out (DeiTConfig's: ViT's).
DEIT_DEFAULTS = {**VIT_DEFAULTS, "encoder_stride": 16}
_TEACHER = "DeiTForImageClassificationWithTeacher"


# 2. Modules.
class DeiTEmbeddings(ViTEmbeddings):
    """[CLS], the distillation token, the patches; positions for all (two before the grid)."""

    num_prefix_tokens = 2

    def __init__(self, config):
        super().__init__(config)
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        return torch.cat((self.cls_token.expand(batch, -1, -1),
                          self.distillation_token.expand(batch, -1, -1)), dim=1)


class DeiTPreTrainedModel(ViTPreTrainedModel):
    base_model_prefix = "deit"
    config_defaults = DEIT_DEFAULTS


class DeiTModel(DeiTPreTrainedModel, ViTModel):
    """``last_hidden_state`` (batch, 2 + patches, hidden) after the final norm;
    ``pooler_output``: tanh of a dense layer over the [CLS] state."""

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer)
        self.embeddings = DeiTEmbeddings(config)


# 3. Heads.
class DeiTForImageClassification(DeiTPreTrainedModel, ViTForImageClassification):
    """The classifier on [CLS] (the checkpoints trained without a teacher)."""

    ignored_weights = DeiTPreTrainedModel.ignored_weights + [r"^deit\.pooler\."]

    def __init__(self, config):
        super().__init__(config)
        del self.vit
        self.deit = DeiTModel(config, add_pooling_layer=False)

    @property
    def vit(self):  # ViTForImageClassification.forward reads self.vit
        return self.deit

    # AutoModelForImageClassification gives the distilled checkpoints (config.architectures
    # names the teacher class) their two heads, as the reference's Auto class does.
    @classmethod
    def _chosen(cls, config) -> type:
        if cls is DeiTForImageClassification and _TEACHER in (config.get("architectures") or []):
            return DeiTForImageClassificationWithTeacher
        return cls

    @classmethod
    def _from_state(cls, config, state, *args, **kwargs):
        chosen = cls._chosen(config)
        if chosen is not cls:
            return chosen._from_state(config, state, *args, **kwargs)
        return super()._from_state(config, state, *args, **kwargs)

    @classmethod
    def from_config(cls, config, *args, **kwargs):
        chosen = cls._chosen(config)
        if chosen is not cls:
            return chosen.from_config(config, *args, **kwargs)
        return super().from_config(config, *args, **kwargs)


class DeiTForImageClassificationWithTeacher(DeiTPreTrainedModel):
    """``logits``: the mean of ``cls_logits`` ([CLS]) and ``distillation_logits``."""

    optional_weights = [r"^cls_classifier\.", r"^distillation_classifier\."]
    ignored_weights = DeiTPreTrainedModel.ignored_weights + [r"^deit\.pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.deit = DeiTModel(config, add_pooling_layer=False)

        def head():
            return (nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0
                    else nn.Identity())

        self.cls_classifier, self.distillation_classifier = head(), head()

    def forward(self, pixel_values=None, interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.deit(pixel_values, interpolate_pos_encoding, output_hidden_states)
        states = out.last_hidden_state
        cls_logits = self.cls_classifier(states[:, 0])
        distillation_logits = self.distillation_classifier(states[:, 1])
        return ModelOutput(logits=(cls_logits + distillation_logits) / 2, cls_logits=cls_logits,
                           distillation_logits=distillation_logits,
                           hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": DeiTModel,
    "AutoModelForImageClassification": DeiTForImageClassification,
}
