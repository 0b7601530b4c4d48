"""Audio Spectrogram Transformer (Gong et al., 2021, arXiv:2104.01778).

Matches transformers' ``models/audio_spectrogram_transformer/modeling_audio_spectrogram_transformer.py``
for inference. A log-mel filter-bank map (time, mels) is cut into overlapping square patches
(strides ``frequency_stride`` x ``time_stride``), prefixed with a [CLS] and a distillation
token (DeiT's), and run through ViT's pre-norm encoder (imported from ``vit.py``); the pooled
output is the mean of the two tokens' final states. Parameter names are the Hub's
(``audio_spectrogram_transformer.encoder.layer.0.attention.attention.query.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .vit import ENCODER_DEFAULTS, ViTEncoder

# 1. Config fields read, with the defaults config.json may leave out.
AST_DEFAULTS = {**ENCODER_DEFAULTS, "qkv_bias": True, "frequency_stride": 10, "time_stride": 10,
                "max_length": 1024, "num_mel_bins": 128}


# 2. Modules.
class ASTPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        size = config.patch_size
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=(size, size),
                                    stride=(config.frequency_stride, config.time_stride))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        # (batch, time, mels) -> (batch, 1, mels, time) -> (batch, patches, hidden)
        maps = input_values[:, None].transpose(2, 3)
        return self.projection(maps).flatten(2).transpose(1, 2)


def patch_grid(config) -> tuple[int, int]:
    """(frequency, time) patch counts for a (max_length, num_mel_bins) input."""
    return ((config.num_mel_bins - config.patch_size) // config.frequency_stride + 1,
            (config.max_length - config.patch_size) // config.time_stride + 1)


class ASTEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        frequency, time = patch_grid(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = ASTPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, frequency * time + 2,
                                                            config.hidden_size))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(input_values)
        batch = patches.shape[0]
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1),
                            self.distillation_token.expand(batch, -1, -1), patches], dim=1)
        return tokens + self.position_embeddings


class ASTPreTrainedModel(PreTrainedModel):
    model_type = "audio-spectrogram-transformer"
    base_model_prefix = "audio_spectrogram_transformer"
    config_defaults = AST_DEFAULTS
    main_input_name = "input_values"


class ASTModel(ASTPreTrainedModel):
    """``last_hidden_state`` (batch, 2 + patches, hidden) after the final norm, and
    ``pooler_output``: the mean of the [CLS] and distillation tokens' states."""

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = ASTEmbeddings(config)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_values: torch.Tensor, output_hidden_states: bool = False,
                **unused) -> ModelOutput:
        expected = (self.config.max_length, self.config.num_mel_bins)
        if input_values is None or input_values.dim() != 3 or tuple(input_values.shape[1:]) != expected:
            got = None if input_values is None else tuple(input_values.shape)
            raise InputError(f"input_values must be (batch, {expected[0]}, {expected[1]}) filter "
                             f"banks from the model's ASTFeatureExtractor; got shape {got}.")
        weight = self.embeddings.patch_embeddings.projection.weight
        hidden_states = self.embeddings(input_values.to(weight.dtype))
        hidden_states, states = self.encoder(hidden_states, output_hidden_states)
        hidden_states = self.layernorm(hidden_states)
        pooled = (hidden_states[:, 0] + hidden_states[:, 1]) / 2
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled,
                           hidden_states=states)


# 3. Heads.
class ASTMLPHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = (nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0
                      else nn.Identity())

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.layernorm(pooled))


class ASTForAudioClassification(ASTPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.audio_spectrogram_transformer = ASTModel(config)
        self.classifier = ASTMLPHead(config)

    def forward(self, input_values: torch.Tensor, output_hidden_states: bool = False,
                **unused) -> ModelOutput:
        out = self.audio_spectrogram_transformer(input_values, output_hidden_states)
        return ModelOutput(logits=self.classifier(out.pooler_output),
                           hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": ASTModel,
    "AutoModelForAudioClassification": ASTForAudioClassification,
    "AutoModelForSequenceClassification": ASTForAudioClassification,
}
