"""HuBERT (Hsu et al., 2021, arXiv:2106.07447).

Matches transformers' ``models/hubert/modeling_hubert.py`` for inference. HuBERT is Wav2Vec2's
network with two differences, so this file reuses ``wav2vec2.py`` and states only those:
the feature projection's layer norm is optional (``feat_proj_layer_norm``) and the model
returns no ``extract_features``; the positional convolution may be a plain convolution after a
batch norm (``conv_pos_batch_norm``) instead of a weight-normed one. Heads: CTC (speech
recognition) and sequence classification (audio classification). Parameter names are the
Hub's (``hubert.encoder.layers.0.attention.q_proj.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import activation
from .wav2vec2 import (
    WAV2VEC2_DEFAULTS,
    Encoder,
    Wav2Vec2Model,
    speech_variant_heads,
)

# 1. Config fields read beyond Wav2Vec2's, with the defaults config.json may leave out.
HUBERT_DEFAULTS = {**WAV2VEC2_DEFAULTS, "feat_proj_layer_norm": True, "conv_pos_batch_norm": False}


# 2. Modules.
class HubertFeatureProjection(nn.Module):
    def __init__(self, config):
        super().__init__()
        if config.feat_proj_layer_norm:
            self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, None]:
        if hasattr(self, "layer_norm"):
            features = self.layer_norm(features)
        return self.projection(features), None  # (no extract_features output)


class BatchNormPositionalConv(nn.Module):
    """``conv_pos_batch_norm=True``: batch norm, then a plain grouped convolution."""

    def __init__(self, config):
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.batch_norm = nn.BatchNorm1d(config.hidden_size)
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel, padding=kernel // 2,
                              groups=config.num_conv_pos_embedding_groups)
        self.trim = kernel % 2 == 0
        self.activation = activation(config.feat_extract_activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.batch_norm(hidden_states.transpose(1, 2)))
        if self.trim:
            out = out[:, :, :-1]
        return self.activation(out).transpose(1, 2)


class HubertEncoder(Encoder):
    def __init__(self, config):
        super().__init__(config)
        if config.conv_pos_batch_norm:
            self.pos_conv_embed = BatchNormPositionalConv(config)


class _Hubert:
    """What every HuBERT class changes on its Wav2Vec2 counterpart."""

    model_type = "hubert"
    base_model_prefix = "hubert"
    config_defaults = HUBERT_DEFAULTS


class HubertModel(_Hubert, Wav2Vec2Model):
    projection_class = HubertFeatureProjection
    encoder_class = HubertEncoder


# 3. Heads.
HEADS = speech_variant_heads(_Hubert, HubertModel, "Hubert")
HubertForCTC, HubertForSequenceClassification = HEADS["AutoModelForCTC"], HEADS["AutoModelForSequenceClassification"]
