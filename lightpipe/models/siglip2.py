"""SigLIP 2 (Tschannen et al., 2025, arXiv:2502.14786) with NaFlex inputs: SigLIP's towers, but
the image comes as a padded sequence of flattened patches (``pixel_values`` (batch, patches,
3 * patch * patch)), its ``pixel_attention_mask`` and its grid (``spatial_shapes``, rows and
columns of patches), so each image keeps its aspect ratio.

Matches transformers' ``models/siglip2/modeling_siglip2.py`` for inference. Differences from
SigLIP: the patch embedding is a linear layer; the learned square table of position embeddings
is resampled to each image's grid (separable bilinear with antialiasing when shrinking) and
padded patches get position (0, 0); the encoder and the attention pool skip padded patches; the
classifier averages the real patches only.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput
from .clip import sub_config
from .layers import padding_mask
from .siglip import (VISION_DEFAULTS, SiglipForImageClassification, SiglipModel,
                     SiglipMultiheadAttentionPoolingHead, SiglipVisionModel, SiglipVisionTransformer)

VISION2_DEFAULTS = {**{k: v for k, v in VISION_DEFAULTS.items() if k != "image_size"},
                    "num_patches": 256}


def _axis_weights(out_size: torch.Tensor, grid: int, positions: torch.Tensor) -> torch.Tensor:
    """(batch, length, grid): for output index ``positions`` along an axis of ``out_size``
    samples, a triangle filter over the ``grid`` source rows, widened when shrinking."""
    scale = grid / out_size[:, None, None]  # (batch, 1, 1)
    support = scale.clamp(min=1)
    center = (positions[..., None] + 0.5) * scale - 0.5
    source = torch.arange(grid, dtype=torch.float32, device=positions.device)
    weights = (1 - (source - center).abs() / support).clamp(min=0)
    return weights / weights.sum(-1, keepdim=True)


def resample_positions(table: torch.Tensor, spatial_shapes: torch.Tensor, length: int) -> torch.Tensor:
    """(grid, grid, hidden) position table -> (batch, length, hidden) for each image's
    (rows, cols) of patches, row by row; positions past rows * cols take cell (0, 0)."""
    grid = table.shape[0]
    shapes = spatial_shapes.to(table.device).float()  # (batch, 2)
    index = torch.arange(length, device=table.device, dtype=torch.float32)[None]  # (1, length)
    rows = torch.div(index, shapes[:, 1:], rounding_mode="floor")
    cols = index - rows * shapes[:, 1:]
    valid = index < shapes.prod(-1, keepdim=True)
    rows, cols = rows * valid, cols * valid
    weights = _axis_weights(shapes[:, 0], grid, rows)[..., :, None] * \
        _axis_weights(shapes[:, 1], grid, cols)[..., None, :]  # (batch, length, grid, grid)
    flat = table.reshape(-1, table.shape[-1]).float()
    return (weights.flatten(-2) @ flat).to(table.dtype)


class Siglip2VisionEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_embedding = nn.Linear(config.num_channels * config.patch_size ** 2, config.hidden_size)
        self.side = int(config.num_patches ** 0.5)
        self.position_embedding = nn.Embedding(config.num_patches, config.hidden_size)

    def forward(self, pixel_values, spatial_shapes):
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        table = self.position_embedding.weight.reshape(self.side, self.side, -1)
        return patches + resample_positions(table, spatial_shapes, pixel_values.shape[1])


class Siglip2PoolingHead(SiglipMultiheadAttentionPoolingHead):
    def forward(self, hidden_states, attention_mask=None):
        probe = self.probe.expand(hidden_states.shape[0], -1, -1)
        padded = None if attention_mask is None else ~attention_mask.bool()
        pooled = self.attention(probe, hidden_states, hidden_states, key_padding_mask=padded,
                                need_weights=False)[0]
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]


class Siglip2VisionTransformer(SiglipVisionTransformer):
    name = "SigLIP 2's vision model"
    embeddings_class = Siglip2VisionEmbeddings
    head_class = Siglip2PoolingHead

    def forward(self, pixel_values, pixel_attention_mask=None, spatial_shapes=None,
                output_hidden_states=False):
        # also Siglip2VisionModel's forward, over the same attributes
        if pixel_values is None or spatial_shapes is None or pixel_values.dim() != 3:
            raise InputError("SigLIP 2 reads flattened patches: pass pixel_values (batch, patches, "
                             "3 * patch * patch), pixel_attention_mask and spatial_shapes, as its "
                             "image processor gives them.")
        hidden_states = self.embeddings(pixel_values, spatial_shapes)
        hidden_states, states = self.encoder(hidden_states, padding_mask(pixel_attention_mask),
                                             output_hidden_states)
        hidden_states = self.post_layernorm(hidden_states)
        pooled = self.head(hidden_states, pixel_attention_mask) if self.tower_config.vision_use_head else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled, hidden_states=states)


def _vision2_config(config):
    nested = config.get("vision_config")
    return sub_config(nested if nested is not None else config.to_dict(), VISION2_DEFAULTS)


class Siglip2Model(SiglipModel):
    """``forward(input_ids, pixel_values, pixel_attention_mask, spatial_shapes, attention_mask)``
    -> ``logits_per_image`` (images, texts) and the rest, as SigLIP."""

    vision_tower = Siglip2VisionTransformer
    vision_config_of = staticmethod(_vision2_config)

    def get_image_features(self, pixel_values=None, pixel_attention_mask=None, spatial_shapes=None,
                           **unused) -> ModelOutput:
        return self.vision_model(pixel_values, pixel_attention_mask, spatial_shapes)

    def forward(self, input_ids=None, pixel_values=None, pixel_attention_mask=None,
                spatial_shapes=None, attention_mask=None, position_ids=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        if input_ids is None or pixel_values is None:
            raise InputError("Siglip2Model compares texts with images: pass both input_ids and "
                             "pixel_values (or use get_text_features / get_image_features).")
        vision = self.vision_model(pixel_values, pixel_attention_mask, spatial_shapes, output_hidden_states)
        return self.compare(vision, input_ids, attention_mask, position_ids, output_hidden_states)


class Siglip2VisionModel(SiglipVisionModel):
    name = Siglip2VisionTransformer.name
    vision_tower = Siglip2Model.vision_tower
    vision_config_of = staticmethod(_vision2_config)

    def forward(self, pixel_values=None, pixel_attention_mask=None, spatial_shapes=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        return Siglip2VisionTransformer.forward(self, pixel_values, pixel_attention_mask,
                                                spatial_shapes, output_hidden_states)


class Siglip2ForImageClassification(SiglipForImageClassification):
    """The vision tower, its real patches averaged, then a linear classifier -> ``logits``."""

    vision_tower = Siglip2Model.vision_tower
    vision_config_of = staticmethod(_vision2_config)

    def forward(self, pixel_values=None, pixel_attention_mask=None, spatial_shapes=None,
                output_hidden_states=False, **unused) -> ModelOutput:
        out = self.vision_model(pixel_values, pixel_attention_mask, spatial_shapes, output_hidden_states)
        states = out.last_hidden_state
        if pixel_attention_mask is not None:
            weights = pixel_attention_mask[..., None].to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1)
        else:
            pooled = states.mean(1)
        return ModelOutput(logits=self.classifier(pooled), hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": Siglip2Model,
    "AutoModelForZeroShotImageClassification": Siglip2Model,
    "AutoModelForImageClassification": Siglip2ForImageClassification,
}
VISION_HEADS = {"AutoModel": Siglip2VisionModel}
