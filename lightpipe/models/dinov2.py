"""DINOv2 (Oquab et al., 2023, arXiv:2304.07193): a ViT trained without labels, with layer scale
on each residual branch (and a SwiGLU MLP in the giant size). Here as the backbone of Depth
Anything (the normed token states of the ``out_indices`` layers), as an image-feature model and
as an image classifier (a linear layer over [CLS] and the mean patch token).

Matches transformers' ``models/dinov2/modeling_dinov2.py`` (``Dinov2Backbone``, ``Dinov2Model``)
for inference. Parameter names are the Hub checkpoints' (``encoder.layer.0.attention.attention.
query.weight``, ``layer_scale1.lambda1``, ``mlp.fc1`` or ``mlp.weights_in``); the attention is
vit.py's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation
from .vit import ViTAttention, ViTEmbeddings, check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
DINOV2_DEFAULTS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02, "layer_norm_eps": 1e-6, "image_size": 224, "patch_size": 14,
    "num_channels": 3, "qkv_bias": True, "layerscale_value": 1.0, "use_swiglu_ffn": False,
    "apply_layernorm": True, "reshape_hidden_states": True, "out_indices": None,
    "out_features": None,
}


# 2. Modules.
class Dinov2Embeddings(ViTEmbeddings):
    """ViT's [CLS] + patches + positions; positions resized (bicubic, in float32) whenever the
    patch grid differs from the checkpoint's square grid."""

    def interpolate_pos_encoding(self, embeddings, height: int, width: int):
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        side = int(num_positions ** 0.5)
        grid = self.position_embeddings[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(height // self.patch_size[0], width // self.patch_size[1]),
                             mode="bicubic", align_corners=False).to(grid.dtype)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1])
        return torch.cat((self.position_embeddings[:, :1], grid), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding: bool = True):
        return super().forward(pixel_values, interpolate_pos_encoding=True)


class Dinov2LayerScale(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((config.hidden_size,), float(config.layerscale_value)))

    def forward(self, hidden_states):
        return hidden_states * self.lambda1


class Dinov2MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        inner = int(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, inner)
        self.act = activation(config.hidden_act)
        self.fc2 = nn.Linear(inner, config.hidden_size)

    def forward(self, hidden_states):
        return self.fc2(self.act(self.fc1(hidden_states)))


class Dinov2SwiGLUFFN(nn.Module):
    """silu(gate) * up, with gate and up stored as one ``weights_in`` projection (gate first)."""

    def __init__(self, config):
        super().__init__()
        inner = int(config.hidden_size * config.mlp_ratio)
        inner = (int(inner * 2 / 3) + 7) // 8 * 8
        self.weights_in = nn.Linear(config.hidden_size, 2 * inner)
        self.weights_out = nn.Linear(inner, config.hidden_size)

    def forward(self, hidden_states):
        gate, up = self.weights_in(hidden_states).chunk(2, dim=-1)
        return self.weights_out(F.silu(gate) * up)


class Dinov2Layer(nn.Module):
    """Pre-norm: x + scale1 * attention(norm1(x)), then x + scale2 * mlp(norm2(x))."""

    def __init__(self, config):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTAttention(config)
        self.layer_scale1 = Dinov2LayerScale(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = Dinov2SwiGLUFFN(config) if config.use_swiglu_ffn else Dinov2MLP(config)
        self.layer_scale2 = Dinov2LayerScale(config)

    def forward(self, hidden_states):
        hidden_states = hidden_states + self.layer_scale1(self.attention(self.norm1(hidden_states)))
        return hidden_states + self.layer_scale2(self.mlp(self.norm2(hidden_states)))


class Dinov2Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(Dinov2Layer(config) for _ in range(config.num_hidden_layers))


class Dinov2PreTrainedModel(PreTrainedModel):
    base_model_prefix = "dinov2"
    config_defaults = DINOV2_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"(^|\.)embeddings\.mask_token$"]


class Dinov2Backbone(Dinov2PreTrainedModel):
    """``feature_maps``: the states after the layers ``out_indices`` names (1-based: 0 is the
    embeddings), each normed by the final layer norm (``apply_layernorm``) and, when
    ``reshape_hidden_states``, without [CLS] as a (batch, hidden, h, w) map; else (batch,
    1 + h * w, hidden) tokens."""

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = Dinov2Embeddings(config)
        self.encoder = Dinov2Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        indices = config.out_indices
        if indices is None and config.out_features:
            indices = [int(name.replace("stage", "") or 0) if name != "stem" else 0
                       for name in config.out_features]
        self.out_indices = [i % (config.num_hidden_layers + 1) for i in (indices or [-1])]

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        batch, _, height, width = pixel_values.shape
        patch_h, patch_w = self.embeddings.patch_size
        states = [self.embeddings(pixel_values)]
        for layer in self.encoder.layer:
            states.append(layer(states[-1]))
        maps = []
        for index in self.out_indices:
            state = self.layernorm(states[index]) if self.config.apply_layernorm else states[index]
            if self.config.reshape_hidden_states:
                state = state[:, 1:].reshape(batch, height // patch_h, width // patch_w, -1)
                state = state.permute(0, 3, 1, 2).contiguous()
            maps.append(state)
        return ModelOutput(feature_maps=tuple(maps),
                           hidden_states=tuple(states) if output_hidden_states else None)


class Dinov2Model(Dinov2PreTrainedModel):
    """``last_hidden_state`` after the final norm; ``pooler_output``: its [CLS] state."""

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = Dinov2Embeddings(config)
        self.encoder = Dinov2Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        states = [self.embeddings(pixel_values)]
        for layer in self.encoder.layer:
            states.append(layer(states[-1]))
        hidden_states = self.layernorm(states[-1])
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=hidden_states[:, 0],
                           hidden_states=tuple(states) if output_hidden_states else None)


# 3. Heads.
class Dinov2ForImageClassification(Dinov2PreTrainedModel):
    """The classifier over [CLS] and the mean of the patch tokens, side by side."""

    optional_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.dinov2 = Dinov2Model(config)
        self.classifier = (nn.Linear(2 * config.hidden_size, config.num_labels)
                           if config.num_labels > 0 else nn.Identity())

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.dinov2(pixel_values, output_hidden_states)
        states = out.last_hidden_state
        features = torch.cat((states[:, 0], states[:, 1:].mean(dim=1)), dim=1)
        return ModelOutput(logits=self.classifier(features), hidden_states=out.get("hidden_states"))


HEADS = {"AutoModel": Dinov2Model, "AutoBackbone": Dinov2Backbone,
         "AutoModelForImageClassification": Dinov2ForImageClassification}
