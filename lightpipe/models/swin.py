"""Swin Transformer (Liu et al., 2021, arXiv:2103.14030): attention within local windows,
shifted every other block, and patch merging between stages.

Matches transformers' ``models/swin/modeling_swin.py`` for inference. Parameter names are the Hub
checkpoints' (``swin.encoder.layers.0.blocks.0.attention.self.query.weight``,
``...attention.self.relative_position_bias_table``). ``SwinBackbone`` gives each chosen stage's
feature map (``out_features`` / ``out_indices``), normalised, as (batch, channels, h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation, attention, merge_heads, split_heads
from .vision_layers import BackboneMixin
from .vit import check_pixels, pair

# 1. Config fields read, with the defaults config.json may leave out.
SWIN_DEFAULTS = {
    "image_size": 224, "patch_size": 4, "num_channels": 3, "embed_dim": 96,
    "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7, "mlp_ratio": 4.0,
    "qkv_bias": True, "hidden_act": "gelu", "use_absolute_embeddings": False,
    "layer_norm_eps": 1e-5, "initializer_range": 0.02, "hidden_dropout_prob": 0.0,
}


def window_partition(states, window: int):
    """(batch, height, width, channels) -> (batch * windows, window, window, channels)."""
    batch, height, width, channels = states.shape
    states = states.view(batch, height // window, window, width // window, window, channels)
    return states.transpose(2, 3).reshape(-1, window, window, channels)


def window_reverse(windows, window: int, height: int, width: int):
    channels = windows.shape[-1]
    windows = windows.view(-1, height // window, width // window, window, window, channels)
    return windows.transpose(2, 3).reshape(-1, height, width, channels)


# 2. Modules.
class SwinPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        image_size, self.patch_size = pair(config.image_size), pair(config.patch_size)
        self.grid_size = (image_size[0] // self.patch_size[0], image_size[1] // self.patch_size[1])
        self.projection = nn.Conv2d(config.num_channels, config.embed_dim,
                                    kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, pixel_values):
        height, width = pixel_values.shape[-2:]
        # pad right and bottom to whole patches
        pixel_values = F.pad(pixel_values, (0, -width % self.patch_size[1], 0, -height % self.patch_size[0]))
        embeddings = self.projection(pixel_values)
        dims = tuple(embeddings.shape[-2:])
        return embeddings.flatten(2).transpose(1, 2), dims  # (batch, patches, embed_dim)


class SwinEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_embeddings = SwinPatchEmbeddings(config)
        grid = self.patch_embeddings.grid_size
        self.position_embeddings = (nn.Parameter(torch.zeros(1, grid[0] * grid[1], config.embed_dim))
                                    if config.use_absolute_embeddings else None)
        self.norm = nn.LayerNorm(config.embed_dim)
        self.patch_size = self.patch_embeddings.patch_size

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        height, width = pixel_values.shape[-2:]
        embeddings, dims = self.patch_embeddings(pixel_values)
        embeddings = self.norm(embeddings)
        if self.position_embeddings is not None:
            table = self.position_embeddings
            if interpolate_pos_encoding and not (embeddings.shape[1] == table.shape[1] and height == width):
                side, dim = int(table.shape[1] ** 0.5), table.shape[-1]
                grid = table.reshape(1, side, side, dim).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=(height // self.patch_size[0], width // self.patch_size[1]),
                                     mode="bicubic", align_corners=False)
                table = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
            embeddings = embeddings + table
        return embeddings, dims


class SwinSelfAttention(nn.Module):
    """Multi-head attention inside a window, with a learned bias per relative position."""

    def __init__(self, config, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        window = config.window_size
        self.query = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.key = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.value = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.window = window
        self.register_buffer("relative_position_index", self._index(), persistent=False)

    def _index(self, device=None) -> torch.Tensor:
        coords = torch.stack(torch.meshgrid(torch.arange(self.window, device=device),
                                            torch.arange(self.window, device=device), indexing="ij"))
        coords = coords.flatten(1)  # (2, window * window)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (self.window - 1)
        return (relative[..., 0] * (2 * self.window - 1) + relative[..., 1]).reshape(-1)

    def reset_buffers(self, device) -> None:
        self.relative_position_index = self._index(device)

    def forward(self, hidden_states, shift_mask=None):
        windows, tokens, _ = hidden_states.shape
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(tokens, tokens, -1).permute(2, 0, 1)[None]  # (1, heads, tokens, tokens)
        if shift_mask is not None:  # (windows per image, tokens, tokens)
            per_image = shift_mask.shape[0]
            shift_mask = shift_mask[None, :, None].expand(windows // per_image, -1, -1, -1, -1)
            bias = bias + shift_mask.reshape(windows, 1, tokens, tokens)
        query = split_heads(self.query(hidden_states), self.num_heads)  # (windows, heads, tokens, head_dim)
        key = split_heads(self.key(hidden_states), self.num_heads)
        value = split_heads(self.value(hidden_states), self.num_heads)
        return merge_heads(attention(query, key, value, bias.to(query.dtype)))


class SwinDense(nn.Module):
    def __init__(self, in_size: int, out_size: int, act: str | None = None):
        super().__init__()
        self.dense = nn.Linear(in_size, out_size)
        self.act = activation(act) if act else None

    def forward(self, hidden_states):
        hidden_states = self.dense(hidden_states)
        return self.act(hidden_states) if self.act is not None else hidden_states


class SwinAttention(nn.Module):
    """A window attention (``self_attention``: Swin's, or Swin V2's cosine one) and its output
    projection."""

    def __init__(self, self_attention: nn.Module, dim: int):
        super().__init__()
        self.self = self_attention
        self.output = SwinDense(dim, dim)

    def forward(self, hidden_states, shift_mask=None):
        return self.output(self.self(hidden_states, shift_mask))


def shifted_window_mask(height: int, width: int, window: int, shift: int, device, dtype):
    """-100 between tokens that the cyclic shift brought together from apart."""
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_region = (rows >= height - window).long() + (rows >= height - shift).long()
    col_region = (cols >= width - window).long() + (cols >= width - shift).long()
    regions = (row_region[None, :, None, None] * 3 + col_region[None, None, :, None]).to(dtype)
    regions = window_partition(regions, window).view(-1, window * window)
    differ = regions[:, None, :] - regions[:, :, None]
    return torch.zeros_like(differ).masked_fill(differ != 0, -100.0)


def window_attention(attention: nn.Module, states, window: int, shift: int):
    """(batch, height, width, channels) -> ``attention`` within each (cyclically shifted)
    window of the map padded to whole windows -> (batch, height * width, channels)."""
    batch, height, width, channels = states.shape
    states = F.pad(states, (0, 0, 0, -width % window, 0, -height % window))
    padded_height, padded_width = states.shape[1:3]
    if shift > 0:
        states = torch.roll(states, shifts=(-shift, -shift), dims=(1, 2))
    windows = window_partition(states, window).view(-1, window * window, channels)
    mask = (shifted_window_mask(padded_height, padded_width, window, shift, states.device,
                                states.dtype) if shift > 0 else None)
    attended = attention(windows, mask).view(-1, window, window, channels)
    states = window_reverse(attended, window, padded_height, padded_width)
    if shift > 0:
        states = torch.roll(states, shifts=(shift, shift), dims=(1, 2))
    return states[:, :height, :width].reshape(batch, height * width, channels)


class SwinLayer(nn.Module):
    """One block: (shifted) window attention, then an MLP; both pre-norm with residuals."""

    def __init__(self, config, dim: int, num_heads: int, shift: int):
        super().__init__()
        self.window_size, self.shift_size = config.window_size, shift
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = SwinAttention(SwinSelfAttention(config, dim, num_heads), dim)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        hidden = int(config.mlp_ratio * dim)
        self.intermediate = SwinDense(dim, hidden, config.hidden_act)
        self.output = SwinDense(hidden, dim)

    def forward(self, hidden_states, dims, always_partition=False):
        height, width = dims
        window, shift = self.window_size, self.shift_size
        if not always_partition and min(dims) <= window:  # the whole map fits one window
            window, shift = min(dims), 0
        batch, _, channels = hidden_states.shape
        states = self.layernorm_before(hidden_states).view(batch, height, width, channels)
        hidden_states = hidden_states + window_attention(self.attention, states, window, shift)
        return hidden_states + self.output(self.intermediate(self.layernorm_after(hidden_states)))


class SwinPatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token with twice the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, hidden_states, dims):
        height, width = dims
        batch, _, channels = hidden_states.shape
        states = hidden_states.view(batch, height, width, channels)
        states = F.pad(states, (0, 0, 0, width % 2, 0, height % 2))
        states = torch.cat([states[:, row::2, col::2] for col in range(2) for row in range(2)], dim=-1)
        return self.reduction(self.norm(states.view(batch, -1, 4 * channels)))


class SwinStage(nn.Module):
    def __init__(self, config, dim: int, depth: int, num_heads: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinLayer(config, dim, num_heads, 0 if i % 2 == 0 else config.window_size // 2)
            for i in range(depth))
        self.downsample = SwinPatchMerging(dim) if downsample else None

    def forward(self, hidden_states, dims, always_partition=False):
        for block in self.blocks:
            hidden_states = block(hidden_states, dims, always_partition)
        before = hidden_states
        if self.downsample is not None:
            hidden_states = self.downsample(hidden_states, dims)
        return hidden_states, before


def spatial(states, dims):
    """(batch, h * w, channels) -> (batch, channels, h, w)."""
    batch, _, channels = states.shape
    return states.view(batch, dims[0], dims[1], channels).permute(0, 3, 1, 2).contiguous()


class SwinEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        stages = len(config.depths)
        self.layers = nn.ModuleList(
            SwinStage(config, int(config.embed_dim * 2 ** i), config.depths[i], config.num_heads[i],
                      downsample=i < stages - 1)
            for i in range(stages))

    def forward(self, hidden_states, dims, always_partition=False, before_downsampling=False):
        """-> (last states, each stage's spatial map, stem first)."""
        maps = [spatial(hidden_states, dims)]
        for stage in self.layers:
            hidden_states, before = stage(hidden_states, dims, always_partition)
            if before_downsampling:
                maps.append(spatial(before, dims))
            if stage.downsample is not None:
                dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
            if not before_downsampling:
                maps.append(spatial(hidden_states, dims))
        return hidden_states, maps


class SwinPreTrainedModel(PreTrainedModel):
    base_model_prefix = "swin"
    config_defaults = SWIN_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"relative_position_index$", r"(^|\.)embeddings\.mask_token$"]

    def _init_weights(self, module, only=None):
        super()._init_weights(module, only)
        if isinstance(module, SwinSelfAttention) and only in (None, "relative_position_bias_table"):
            with torch.no_grad():
                module.relative_position_bias_table.zero_()


class SwinModel(SwinPreTrainedModel):
    """``last_hidden_state`` (batch, tokens, channels) after the final norm; ``pooler_output``
    its mean over tokens."""

    optional_weights = [r"^pooler\."]

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.num_features = int(config.embed_dim * 2 ** (len(config.depths) - 1))
        self.embeddings = SwinEmbeddings(config)
        self.encoder = SwinEncoder(config)
        self.layernorm = nn.LayerNorm(self.num_features, eps=config.layer_norm_eps)
        self.add_pooling_layer = add_pooling_layer

    def forward(self, pixel_values=None, interpolate_pos_encoding=False, output_hidden_states=False,
                **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embeddings.patch_embeddings.projection.weight
        states, dims = self.embeddings(pixel_values.to(weight.dtype), interpolate_pos_encoding)
        states, maps = self.encoder(states, dims)
        states = self.layernorm(states)
        pooled = states.mean(dim=1) if self.add_pooling_layer else None
        return ModelOutput(last_hidden_state=states, pooler_output=pooled,
                           reshaped_hidden_states=tuple(maps) if output_hidden_states else None)


# 3. Heads.
class SwinForImageClassification(SwinPreTrainedModel):
    optional_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.swin = SwinModel(config)
        self.classifier = (nn.Linear(self.swin.num_features, config.num_labels)
                           if config.num_labels > 0 else nn.Identity())

    def forward(self, pixel_values=None, interpolate_pos_encoding=False, output_hidden_states=False,
                **unused) -> ModelOutput:
        out = self.swin(pixel_values, interpolate_pos_encoding, output_hidden_states)
        return ModelOutput(logits=self.classifier(out.pooler_output),
                           reshaped_hidden_states=out.get("reshaped_hidden_states"))


class SwinBackbone(BackboneMixin, SwinPreTrainedModel):
    """``feature_maps``: the chosen stages' maps (batch, channels, h, w), each layer-normed."""

    optional_weights = [r"^hidden_states_norms\."]
    ignored_weights = SwinPreTrainedModel.ignored_weights + [r"^layernorm\.", r"^classifier\.",
                                                             r"^pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.num_features = [config.embed_dim] + [int(config.embed_dim * 2 ** i)
                                                  for i in range(len(config.depths))]
        self.embeddings = SwinEmbeddings(config)
        self.encoder = SwinEncoder(config)
        self.hidden_states_norms = nn.ModuleDict(
            {stage: nn.LayerNorm(channels) for stage, channels in zip(self.out_features, self.channels)})

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embeddings.patch_embeddings.projection.weight
        states, dims = self.embeddings(pixel_values.to(weight.dtype))
        _, maps = self.encoder(states, dims, always_partition=True, before_downsampling=True)
        features = []
        for name, state in zip(self.stage_names, maps):
            if name in self.out_features:
                norm = self.hidden_states_norms[name]
                features.append(norm(state.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous())
        return ModelOutput(feature_maps=tuple(features),
                           hidden_states=tuple(maps) if output_hidden_states else None)


HEADS = {
    "AutoModel": SwinModel,
    "AutoModelForImageClassification": SwinForImageClassification,
    "AutoBackbone": SwinBackbone,
}
