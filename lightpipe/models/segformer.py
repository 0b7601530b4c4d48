"""SegFormer (Xie et al., 2021, arXiv:2105.15203): a hierarchical transformer (Mix
Transformer) whose four stages see the image at 1/4 to 1/32 of its size, and an all-MLP
decoder that projects every stage to one width, upsamples them to 1/4, and classifies each
pixel.

Matches transformers' ``models/segformer/modeling_segformer.py`` for inference. Parameter names
are the Hub checkpoints' (``segformer.encoder.block.0.0.attention.self.query.weight``,
``decode_head.linear_c.0.proj.weight``): transformers 5 renames them when loading and back when
saving; we keep them as stored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation, attention, merge_heads, split_heads
from .vision_layers import BatchNormMixin
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
SEGFORMER_DEFAULTS = {
    "num_channels": 3,
    "num_encoder_blocks": 4,
    "depths": [2, 2, 2, 2],
    "sr_ratios": [8, 4, 2, 1],
    "hidden_sizes": [32, 64, 160, 256],
    "patch_sizes": [7, 3, 3, 3],
    "strides": [4, 2, 2, 2],
    "num_attention_heads": [1, 2, 5, 8],
    "mlp_ratios": [4, 4, 4, 4],
    "hidden_act": "gelu",
    "classifier_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "decoder_hidden_size": 256,
    "reshape_last_stage": True,
}


# 2. Modules.
class SegformerOverlapPatchEmbeddings(nn.Module):
    """A strided convolution whose patches overlap (kernel > stride), then a norm."""

    def __init__(self, patch_size: int, stride: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=stride,
                              padding=patch_size // 2)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, pixel_values):
        embeddings = self.proj(pixel_values)
        _, _, height, width = embeddings.shape
        embeddings = self.layer_norm(embeddings.flatten(2).transpose(1, 2))  # (batch, h * w, hidden)
        return embeddings, height, width


class SegformerEfficientSelfAttention(nn.Module):
    """Queries over every position; keys and values over a map shrunk ``sr_ratio`` times by a
    strided convolution."""

    def __init__(self, hidden_size: int, num_heads: int, sr_ratio: int):
        super().__init__()
        if hidden_size % num_heads:
            raise UnsupportedModelError(f"hidden size {hidden_size} is not a multiple of "
                                        f"{num_heads} attention heads.")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(hidden_size, hidden_size, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, hidden_states, height: int, width: int):
        keys_from = hidden_states
        if self.sr_ratio > 1:
            batch, _, channels = hidden_states.shape
            grid = hidden_states.transpose(1, 2).reshape(batch, channels, height, width)
            keys_from = self.layer_norm(self.sr(grid).reshape(batch, channels, -1).transpose(1, 2))
        query = split_heads(self.query(hidden_states), self.num_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(self.key(keys_from), self.num_heads)          # (batch, heads, seq / r^2, head_dim)
        value = split_heads(self.value(keys_from), self.num_heads)
        return merge_heads(attention(query, key, value, None))


class SegformerSelfOutput(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states):
        return self.dense(hidden_states)


class SegformerAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.self = SegformerEfficientSelfAttention(hidden_size, num_heads, sr_ratio)
        self.output = SegformerSelfOutput(hidden_size)

    def forward(self, hidden_states, height: int, width: int):
        return self.output(self.self(hidden_states, height, width))


class SegformerDWConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels)

    def forward(self, hidden_states, height: int, width: int):
        batch, _, channels = hidden_states.shape
        grid = hidden_states.transpose(1, 2).reshape(batch, channels, height, width)
        return self.dwconv(grid).flatten(2).transpose(1, 2)


class SegformerMixFFN(nn.Module):
    """dense, 3x3 depth-wise conv (the positional information), activation, dense."""

    def __init__(self, config, hidden_size: int, inner_size: int):
        super().__init__()
        self.dense1 = nn.Linear(hidden_size, inner_size)
        self.dwconv = SegformerDWConv(inner_size)
        self.act = activation(config.hidden_act)
        self.dense2 = nn.Linear(inner_size, hidden_size)

    def forward(self, hidden_states, height: int, width: int):
        hidden_states = self.act(self.dwconv(self.dense1(hidden_states), height, width))
        return self.dense2(hidden_states)


class SegformerLayer(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + mix-FFN(norm(x))."""

    def __init__(self, config, hidden_size: int, num_heads: int, sr_ratio: int, mlp_ratio: float):
        super().__init__()
        self.layer_norm_1 = nn.LayerNorm(hidden_size)
        self.attention = SegformerAttention(hidden_size, num_heads, sr_ratio)
        self.layer_norm_2 = nn.LayerNorm(hidden_size)
        self.mlp = SegformerMixFFN(config, hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, hidden_states, height: int, width: int):
        hidden_states = hidden_states + self.attention(self.layer_norm_1(hidden_states), height, width)
        return hidden_states + self.mlp(self.layer_norm_2(hidden_states), height, width)


class SegformerEncoder(nn.Module):
    """Four stages of (overlapping patch embedding, blocks, norm); each stage's output is a
    (batch, channels, h, w) map (the last one a token sequence when ``reshape_last_stage`` is
    false)."""

    def __init__(self, config):
        super().__init__()
        stages = range(config.num_encoder_blocks)
        sizes = config.hidden_sizes
        self.patch_embeddings = nn.ModuleList(
            SegformerOverlapPatchEmbeddings(config.patch_sizes[i], config.strides[i],
                                            config.num_channels if i == 0 else sizes[i - 1], sizes[i])
            for i in stages)
        self.block = nn.ModuleList(
            nn.ModuleList(SegformerLayer(config, sizes[i], config.num_attention_heads[i],
                                         config.sr_ratios[i], config.mlp_ratios[i])
                          for _ in range(config.depths[i]))
            for i in stages)
        self.layer_norm = nn.ModuleList(nn.LayerNorm(sizes[i]) for i in stages)
        self.reshape_last_stage = config.reshape_last_stage

    def forward(self, pixel_values) -> list[torch.Tensor]:
        hidden_states, outputs = pixel_values, []
        last = len(self.block) - 1
        for index, (embed, blocks, norm) in enumerate(zip(self.patch_embeddings, self.block, self.layer_norm)):
            hidden_states, height, width = embed(hidden_states)
            for block in blocks:
                hidden_states = block(hidden_states, height, width)
            hidden_states = norm(hidden_states)
            if index < last or self.reshape_last_stage:
                batch = hidden_states.shape[0]
                hidden_states = hidden_states.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
            outputs.append(hidden_states)
        return outputs


class SegformerPreTrainedModel(BatchNormMixin, PreTrainedModel):
    base_model_prefix = "segformer"
    config_defaults = SEGFORMER_DEFAULTS
    main_input_name = "pixel_values"

    def stage_outputs(self, pixel_values) -> list[torch.Tensor]:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        encoder = self.segformer.encoder if hasattr(self, "segformer") else self.encoder
        weight = encoder.patch_embeddings[0].proj.weight
        return encoder(pixel_values.to(weight.dtype))


class SegformerModel(SegformerPreTrainedModel):
    """``last_hidden_state``: the last stage's output; ``hidden_states``: every stage's."""

    def __init__(self, config):
        super().__init__(config)
        self.encoder = SegformerEncoder(config)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        stages = self.stage_outputs(pixel_values)
        return ModelOutput(last_hidden_state=stages[-1],
                           hidden_states=tuple(stages) if output_hidden_states else None)


# 3. Heads.
class SegformerMLP(nn.Module):
    def __init__(self, config, in_channels: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, config.decoder_hidden_size)

    def forward(self, hidden_states):
        return self.proj(hidden_states.flatten(2).transpose(1, 2))  # (batch, h * w, decoder)


class SegformerDecodeHead(nn.Module):
    """Each stage projected to ``decoder_hidden_size`` and upsampled (bilinear) to the first
    stage's size; concatenated coarsest first, fused (1x1 conv, batch norm, ReLU), classified."""

    def __init__(self, config):
        super().__init__()
        size = config.decoder_hidden_size
        self.linear_c = nn.ModuleList(SegformerMLP(config, channels) for channels in config.hidden_sizes)
        self.linear_fuse = nn.Conv2d(size * config.num_encoder_blocks, size, kernel_size=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(size)
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Conv2d(size, config.num_labels, kernel_size=1)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        batch = stages[-1].shape[0]
        first_size = stages[0].shape[2:]
        projected = []
        for hidden_state, mlp in zip(stages, self.linear_c):
            if hidden_state.dim() == 3:  # the last stage as tokens (reshape_last_stage false)
                side = int(hidden_state.shape[1] ** 0.5)
                hidden_state = hidden_state.reshape(batch, side, side, -1).permute(0, 3, 1, 2)
            height, width = hidden_state.shape[2:]
            hidden_state = mlp(hidden_state).transpose(1, 2).reshape(batch, -1, height, width)
            projected.append(F.interpolate(hidden_state, size=first_size, mode="bilinear",
                                           align_corners=False))
        hidden_state = self.batch_norm(self.linear_fuse(torch.cat(projected[::-1], dim=1)))
        return self.classifier(self.dropout(F.relu(hidden_state)))


class SegformerForSemanticSegmentation(SegformerPreTrainedModel):
    """``logits`` (batch, labels, height / 4, width / 4)."""

    optional_weights = SegformerPreTrainedModel.optional_weights + [r"^decode_head\.classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.segformer = SegformerModel(config)
        self.decode_head = SegformerDecodeHead(config)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        stages = self.stage_outputs(pixel_values)
        return ModelOutput(logits=self.decode_head(stages),
                           hidden_states=tuple(stages) if output_hidden_states else None)


class SegformerForImageClassification(SegformerPreTrainedModel):
    """``logits`` (batch, labels) from the mean of the last stage's positions."""

    optional_weights = SegformerPreTrainedModel.optional_weights + [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.segformer = SegformerModel(config)
        self.classifier = nn.Linear(config.hidden_sizes[-1], config.num_labels)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        stages = self.stage_outputs(pixel_values)
        last = stages[-1]
        if last.dim() == 4:
            last = last.flatten(2).transpose(1, 2)  # (batch, h * w, channels)
        return ModelOutput(logits=self.classifier(last.mean(dim=1)),
                           hidden_states=tuple(stages) if output_hidden_states else None)


HEADS = {
    "AutoModel": SegformerModel,
    "AutoModelForSemanticSegmentation": SegformerForSemanticSegmentation,
    "AutoModelForImageClassification": SegformerForImageClassification,
}
