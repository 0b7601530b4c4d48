"""ViT (Dosovitskiy et al., 2020, arXiv:2010.11929): an image as a sequence of patches.

Matches transformers' ``models/vit/modeling_vit.py`` for inference. Parameter names are the Hub
checkpoints' (``vit.encoder.layer.0.attention.attention.query.weight``). Pre-norm encoder
layers; the [CLS] token's final state feeds the pooler (``ViTModel``) or the classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import Intermediate, SelfAttention, activation, run_layers

# 1. Config fields read, with the defaults config.json may leave out: the encoder's (VideoMAE
# reads them too), then ViT's own.
ENCODER_DEFAULTS = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
}
VIT_DEFAULTS = {**ENCODER_DEFAULTS, "qkv_bias": True, "pooler_output_size": None,
                "pooler_act": "tanh"}


def pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def check_pixels(pixel_values: torch.Tensor | None, channels: int, model: str) -> None:
    if pixel_values is None:
        raise InputError(f"{model} needs pixel_values (batch, {channels}, height, width): use its "
                         "image processor (AutoImageProcessor) to make them.")
    if pixel_values.dim() != 4 or pixel_values.shape[1] != channels:
        raise InputError(f"{model} takes pixel_values of shape (batch, {channels}, height, width); "
                         f"got {tuple(pixel_values.shape)}.")


# 2. Modules.
class ViTPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.image_size, self.patch_size = pair(config.image_size), pair(config.patch_size)
        self.num_patches = ((self.image_size[0] // self.patch_size[0])
                            * (self.image_size[1] // self.patch_size[1]))
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size,
                                    kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, pixel_values):
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (batch, patches, hidden)


class ViTEmbeddings(nn.Module):
    """[CLS] + patch embeddings + position embeddings (interpolated for other image sizes when
    ``interpolate_pos_encoding``)."""

    def __init__(self, config):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = ViTPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(
            1, self.patch_embeddings.num_patches + self.num_prefix_tokens, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = self.patch_embeddings.patch_size
        self.image_size = self.patch_embeddings.image_size

    num_prefix_tokens = 1  # tokens before the patch grid ([CLS]; DeiT adds a distillation token)

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        """(batch, num_prefix_tokens, hidden): what goes before the patches."""
        return self.cls_token.expand(batch, -1, -1)

    def interpolate_pos_encoding(self, embeddings, height: int, width: int):
        prefix = self.num_prefix_tokens
        num_patches = embeddings.shape[1] - prefix
        num_positions = self.position_embeddings.shape[1] - prefix
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        dim = embeddings.shape[-1]
        side = int(num_positions ** 0.5)
        grid = self.position_embeddings[:, prefix:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height // self.patch_size[0], width // self.patch_size[1]),
                             mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((self.position_embeddings[:, :prefix], grid), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        batch, _, height, width = pixel_values.shape
        if not interpolate_pos_encoding and (height, width) != tuple(self.image_size):
            raise InputError(
                f"The images are {height}x{width} pixels but this model reads "
                f"{self.image_size[0]}x{self.image_size[1]}. Resize them with the model's image "
                "processor, or pass interpolate_pos_encoding=True.")
        embeddings = self.patch_embeddings(pixel_values)
        embeddings = torch.cat((self.prefix_tokens(batch), embeddings), dim=1)
        if interpolate_pos_encoding:
            embeddings = embeddings + self.interpolate_pos_encoding(embeddings, height, width)
        else:
            embeddings = embeddings + self.position_embeddings
        return self.dropout(embeddings)


class ViTSelfAttention(SelfAttention):
    def __init__(self, config, bias: bool | None = None):
        """``bias``: of the query, key and value projections (None: ``config.qkv_bias``)."""
        super().__init__(config.hidden_size, config.num_attention_heads,
                         bias=config.qkv_bias if bias is None else bias)


class ViTSelfOutput(nn.Module):
    def __init__(self, config, in_size: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_size or config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states):
        return self.dropout(self.dense(hidden_states))


class ViTAttention(nn.Module):
    """Self-attention (``self_attention``'s class: ViT's, or a family's own) and its output
    projection."""

    def __init__(self, config, self_attention: type[nn.Module] = ViTSelfAttention):
        super().__init__()
        self.attention = self_attention(config)
        self.output = ViTSelfOutput(config)

    def forward(self, hidden_states):
        return self.output(self.attention(hidden_states))


class ViTLayer(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config, self_attention: type[nn.Module] = ViTSelfAttention):
        super().__init__()
        self.attention = ViTAttention(config, self_attention)
        self.intermediate = Intermediate(config)
        self.output = ViTSelfOutput(config, config.intermediate_size)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, mask=None):
        hidden_states = hidden_states + self.attention(self.layernorm_before(hidden_states))
        return hidden_states + self.output(self.intermediate(self.layernorm_after(hidden_states)))


class ViTEncoder(nn.Module):
    def __init__(self, config, self_attention: type[nn.Module] = ViTSelfAttention):
        super().__init__()
        self.layer = nn.ModuleList(ViTLayer(config, self_attention)
                                   for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, output_hidden_states=False):
        return run_layers(self.layer, hidden_states, None, output_hidden_states)


class ViTPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size or config.hidden_size)
        self.activation = activation(config.pooler_act)

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class ViTPreTrainedModel(PreTrainedModel):
    base_model_prefix = "vit"
    config_defaults = VIT_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"(^|\.)embeddings\.mask_token$"]


class ViTModel(ViTPreTrainedModel):
    """``last_hidden_state`` (batch, 1 + patches, hidden) after the final norm, and
    ``pooler_output`` (tanh of a dense layer over the [CLS] state)."""

    optional_weights = [r"^pooler\."]

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = ViTEmbeddings(config)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None

    def forward(self, pixel_values=None, interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embeddings.patch_embeddings.projection.weight
        pixel_values = pixel_values.to(dtype=weight.dtype)
        hidden_states = self.embeddings(pixel_values, bool(interpolate_pos_encoding))
        hidden_states, all_states = self.encoder(hidden_states, output_hidden_states)
        hidden_states = self.layernorm(hidden_states)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled,
                           hidden_states=all_states)


# 3. Heads.
class ViTForImageClassification(ViTPreTrainedModel):
    optional_weights = [r"^classifier\."]
    ignored_weights = ViTPreTrainedModel.ignored_weights + [r"^vit\.pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.classifier = (nn.Linear(config.hidden_size, config.num_labels)
                           if config.num_labels > 0 else nn.Identity())

    def forward(self, pixel_values=None, interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.vit(pixel_values, interpolate_pos_encoding, output_hidden_states)
        return ModelOutput(logits=self.classifier(out.last_hidden_state[:, 0]),
                           hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": ViTModel,
    "AutoModelForImageClassification": ViTForImageClassification,
}
