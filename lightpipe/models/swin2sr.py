"""Swin2SR (Conde et al., 2022, arXiv:2209.11345): image super-resolution and restoration with
Swin Transformer V2 blocks (cosine attention, a continuous relative-position bias, post-norm).

Matches transformers' ``models/swin2sr/modeling_swin2sr.py`` for inference. Parameter names are
the Hub checkpoints' (``swin2sr.encoder.stages.0.layers.0.attention.self.logit_scale``,
``upsample.upsample.convolution_0.weight``). Window partitioning and the shifted-window mask
are Swin's (swin.py). The upsamplers: ``pixelshuffle`` (classical SR), ``pixelshuffledirect``
(lightweight), ``pixelshuffle_aux`` (compressed input), ``nearest+conv`` (real-world x4), and
none (denoising / artefact removal at the input's size).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import attention, merge_heads, split_heads
from .swin import SwinAttention, SwinDense, window_attention
from .vit import pair

# 1. Config fields read, with the defaults config.json may leave out.
SWIN2SR_DEFAULTS = {
    "image_size": 64, "patch_size": 1, "num_channels": 3, "num_channels_out": None,
    "embed_dim": 180, "depths": [6, 6, 6, 6, 6, 6], "num_heads": [6, 6, 6, 6, 6, 6],
    "window_size": 8, "mlp_ratio": 2.0, "qkv_bias": True, "hidden_act": "gelu",
    "use_absolute_embeddings": False, "initializer_range": 0.02, "layer_norm_eps": 1e-5,
    "upscale": 2, "img_range": 1.0, "resi_connection": "1conv", "upsampler": "pixelshuffle",
}
# The training set's mean colour, subtracted from RGB inputs (and added back to the output).
RGB_MEAN = (0.4488, 0.4371, 0.4040)


# 2. Modules.
class Swin2SRSelfAttention(nn.Module):
    """Cosine attention in a window: cos(q, k) times a learned per-head scale, plus a bias from a
    small MLP over log-spaced relative coordinates (16 * sigmoid)."""

    def __init__(self, config, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.continuous_position_bias_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        self.query = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=config.qkv_bias)
        table, index = self._coordinates()
        self.register_buffer("relative_coords_table", table, persistent=False)
        self.register_buffer("relative_position_index", index, persistent=False)

    def _coordinates(self, device=None):
        window = self.window
        steps = torch.arange(-(window - 1), window, device=device, dtype=torch.float32)
        table = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1)[None]  # (1, 2w-1, 2w-1, 2)
        if window > 1:
            table = table / (window - 1)
        table = table * 8  # to [-8, 8], then log-spaced
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
        coords = torch.stack(torch.meshgrid(torch.arange(window, device=device),
                                            torch.arange(window, device=device), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        index = relative[..., 0] * (2 * window - 1) + relative[..., 1]  # (w*w, w*w)
        return table, index

    def reset_buffers(self, device) -> None:
        self.relative_coords_table, self.relative_position_index = self._coordinates(device)

    def forward(self, hidden_states, shift_mask=None):
        windows, tokens, _ = hidden_states.shape
        query = F.normalize(split_heads(self.query(hidden_states), self.num_heads), dim=-1)
        key = F.normalize(split_heads(self.key(hidden_states), self.num_heads), dim=-1)
        value = split_heads(self.value(hidden_states), self.num_heads)  # (windows, heads, tokens, head_dim)
        scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()  # (heads, 1, 1)
        table = self.continuous_position_bias_mlp(self.relative_coords_table.to(query.dtype))
        bias = table.view(-1, self.num_heads)[self.relative_position_index.view(-1)]
        bias = 16 * torch.sigmoid(bias.view(tokens, tokens, -1).permute(2, 0, 1))[None]  # (1, heads, t, t)
        if shift_mask is not None:  # (windows per image, t, t); the reference adds it twice
            per_image = shift_mask.shape[0]
            bias = (bias.view(1, 1, self.num_heads, tokens, tokens)
                    + 2 * shift_mask[None, :, None].to(bias.dtype))
            bias = bias.expand(windows // per_image, -1, -1, -1, -1).reshape(windows, self.num_heads,
                                                                              tokens, tokens)
        context = attention(query * scale, key, value, bias.to(query.dtype), scale=1.0)
        return merge_heads(context)


class Swin2SRLayer(nn.Module):
    """(Shifted) window attention, then an MLP; each normalised *after* it, then added (post-norm,
    Swin V2). The window shrinks to the configured grid when the grid is smaller."""

    def __init__(self, config, dim: int, num_heads: int, shift: int):
        super().__init__()
        grid = min(pair(config.image_size)[0] // pair(config.patch_size)[0],
                   pair(config.image_size)[1] // pair(config.patch_size)[1])
        self.window_size = min(grid, config.window_size)
        self.shift_size = 0 if grid <= self.window_size else shift
        self.attention = SwinAttention(
            Swin2SRSelfAttention(config, dim, num_heads, self.window_size), dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        hidden = int(config.mlp_ratio * dim)
        self.intermediate = SwinDense(dim, hidden, config.hidden_act)
        self.output = SwinDense(hidden, dim)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def forward(self, hidden_states, dims):
        batch, _, channels = hidden_states.shape
        states = hidden_states.view(batch, dims[0], dims[1], channels)
        states = window_attention(self.attention, states, self.window_size, self.shift_size)
        hidden_states = hidden_states + self.layernorm_before(states)
        return hidden_states + self.layernorm_after(self.output(self.intermediate(hidden_states)))


class Swin2SRPatchEmbeddings(nn.Module):
    """A (batch, channels, h, w) map -> (batch, h * w, embed_dim) tokens (a 1x1 projection)."""

    def __init__(self, config, normalize: bool = True):
        super().__init__()
        patch = pair(config.patch_size)
        self.projection = nn.Conv2d(config.embed_dim, config.embed_dim, kernel_size=patch, stride=patch)
        self.layernorm = nn.LayerNorm(config.embed_dim) if normalize else None

    def forward(self, feature_map):
        embeddings = self.projection(feature_map)
        dims = tuple(embeddings.shape[-2:])
        embeddings = embeddings.flatten(2).transpose(1, 2)
        if self.layernorm is not None:
            embeddings = self.layernorm(embeddings)
        return embeddings, dims


class Swin2SREmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_embeddings = Swin2SRPatchEmbeddings(config)

    def forward(self, feature_map):
        return self.patch_embeddings(feature_map)


def unembed(tokens, dims):
    """(batch, h * w, channels) -> (batch, channels, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], dims[0], dims[1])


class Swin2SRStage(nn.Module):
    """A residual Swin Transformer block: layers, then a convolution, plus the stage's input."""

    def __init__(self, config, depth: int, num_heads: int):
        super().__init__()
        dim = config.embed_dim
        self.layers = nn.ModuleList(
            Swin2SRLayer(config, dim, num_heads, 0 if i % 2 == 0 else config.window_size // 2)
            for i in range(depth))
        if config.resi_connection == "1conv":
            self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        elif config.resi_connection == "3conv":
            self.conv = nn.Sequential(
                nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(negative_slope=0.2, inplace=True),
                nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(negative_slope=0.2, inplace=True),
                nn.Conv2d(dim // 4, dim, 3, 1, 1))
        else:
            raise UnsupportedModelError(f"resi_connection={config.resi_connection!r} is not "
                                        "supported; Swin2SR uses '1conv' or '3conv'.")
        self.patch_embed = Swin2SRPatchEmbeddings(config, normalize=False)

    def forward(self, hidden_states, dims):
        residual = hidden_states
        for layer in self.layers:
            hidden_states = layer(hidden_states, dims)
        hidden_states, _ = self.patch_embed(self.conv(unembed(hidden_states, dims)))
        return hidden_states + residual


class Swin2SREncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.stages = nn.ModuleList(Swin2SRStage(config, depth, heads)
                                    for depth, heads in zip(config.depths, config.num_heads))

    def forward(self, hidden_states, dims, output_hidden_states=False):
        all_states = [hidden_states] if output_hidden_states else None
        for stage in self.stages:
            hidden_states = stage(hidden_states, dims)
            if all_states is not None:
                all_states.append(hidden_states)
        return hidden_states, (tuple(all_states) if all_states is not None else None)


class Swin2SRPreTrainedModel(PreTrainedModel):
    base_model_prefix = "swin2sr"
    config_defaults = SWIN2SR_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"relative_coords_table$", r"relative_position_index$", r"(^|\.)mean$"]

    def __init__(self, config):
        super().__init__(config)
        if config.get("num_channels_out") is None:
            config.num_channels_out = config.num_channels
        if pair(config.patch_size) != (1, 1):
            raise UnsupportedModelError(f"Swin2SR with patch_size={config.patch_size} is not "
                                        "supported (the reference runs only patch_size 1).")
        if config.use_absolute_embeddings:
            raise UnsupportedModelError("Swin2SR with use_absolute_embeddings=True is not supported "
                                        "(the reference cannot run it either).")

    def _init_weights(self, module, only=None):
        super()._init_weights(module, only)
        if isinstance(module, Swin2SRSelfAttention) and only in (None, "logit_scale"):
            with torch.no_grad():
                module.logit_scale.fill_(math.log(10))


class Swin2SRModel(Swin2SRPreTrainedModel):
    """``last_hidden_state``: the deep features (batch, embed_dim, H, W) of the input padded to
    whole windows, plus the shallow features (the first convolution's), as the reference."""

    def __init__(self, config):
        super().__init__(config)
        self.img_range = config.img_range
        self.register_buffer("mean", self._mean(), persistent=False)
        self.first_convolution = nn.Conv2d(config.num_channels, config.embed_dim, 3, 1, 1)
        self.embeddings = Swin2SREmbeddings(config)
        self.encoder = Swin2SREncoder(config)
        self.layernorm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.conv_after_body = nn.Conv2d(config.embed_dim, config.embed_dim, 3, 1, 1)

    def _mean(self, device=None) -> torch.Tensor:
        if self.config.num_channels == 3 and self.config.num_channels_out == 3:
            return torch.tensor(RGB_MEAN, device=device).view(1, 3, 1, 1)
        return torch.zeros(1, 1, 1, 1, device=device)

    def reset_buffers(self, device) -> None:
        self.mean = self._mean(device)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        channels = self.config.num_channels
        if pixel_values is None or pixel_values.dim() != 4 or pixel_values.shape[1] != channels:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise InputError(f"Swin2SR takes pixel_values of shape (batch, {channels}, height, "
                             f"width) (from its image processor); got {shape}.")
        pixel_values = pixel_values.to(self.first_convolution.weight.dtype)
        height, width = pixel_values.shape[2:]
        window = self.config.window_size
        if -height % window >= height or -width % window >= width:
            raise InputError(f"The image ({width}x{height}) is too small for Swin2SR's "
                             f"{window}-pixel windows: use its image processor, which pads it.")
        padded = F.pad(pixel_values, (0, -width % window, 0, -height % window), mode="reflect")
        padded = (padded - self.mean.to(padded.dtype)) * self.img_range
        shallow = self.first_convolution(padded)
        tokens, dims = self.embeddings(shallow)
        tokens, all_states = self.encoder(tokens, dims, output_hidden_states)
        deep = unembed(self.layernorm(tokens), dims)
        return ModelOutput(last_hidden_state=self.conv_after_body(deep) + shallow,
                           hidden_states=all_states)


# 3. Heads: the upsamplers.
class Upsample(nn.Module):
    """Scale 2^n: n times (conv to 4x channels, pixel shuffle by 2); scale 3: once by 3."""

    def __init__(self, scale: int, num_features: int):
        super().__init__()
        self.scale = scale
        if scale & (scale - 1) == 0:
            for i in range(int(math.log2(scale))):
                self.add_module(f"convolution_{i}", nn.Conv2d(num_features, 4 * num_features, 3, 1, 1))
                self.add_module(f"pixelshuffle_{i}", nn.PixelShuffle(2))
        elif scale == 3:
            self.convolution = nn.Conv2d(num_features, 9 * num_features, 3, 1, 1)
            self.pixelshuffle = nn.PixelShuffle(3)
        else:
            raise UnsupportedModelError(f"Swin2SR upscale={scale} is not supported: 2^n or 3.")

    def forward(self, hidden_state):
        for module in self.children():
            hidden_state = module(hidden_state)
        return hidden_state


class UpsampleOneStep(nn.Module):
    def __init__(self, scale: int, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, scale ** 2 * out_channels, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(scale)

    def forward(self, features):
        return self.pixel_shuffle(self.conv(features))


class PixelShuffleUpsampler(nn.Module):
    def __init__(self, config, num_features: int):
        super().__init__()
        self.conv_before_upsample = nn.Conv2d(config.embed_dim, num_features, 3, 1, 1)
        self.activation = nn.LeakyReLU(inplace=True)
        self.upsample = Upsample(config.upscale, num_features)
        self.final_convolution = nn.Conv2d(num_features, config.num_channels_out, 3, 1, 1)

    def forward(self, features):
        return self.final_convolution(self.upsample(self.activation(self.conv_before_upsample(features))))


class NearestConvUpsampler(nn.Module):
    def __init__(self, config, num_features: int):
        super().__init__()
        if config.upscale != 4:
            raise UnsupportedModelError("Swin2SR's nearest+conv upsampler has upscale 4 only.")
        self.conv_before_upsample = nn.Conv2d(config.embed_dim, num_features, 3, 1, 1)
        self.activation = nn.LeakyReLU(inplace=True)
        self.conv_up1 = nn.Conv2d(num_features, num_features, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_features, num_features, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_features, num_features, 3, 1, 1)
        self.final_convolution = nn.Conv2d(num_features, config.num_channels_out, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, features):
        features = self.activation(self.conv_before_upsample(features))
        features = self.lrelu(self.conv_up1(F.interpolate(features, scale_factor=2, mode="nearest")))
        features = self.lrelu(self.conv_up2(F.interpolate(features, scale_factor=2, mode="nearest")))
        return self.final_convolution(self.lrelu(self.conv_hr(features)))


class PixelShuffleAuxUpsampler(nn.Module):
    """For compressed inputs: a bicubic upscale of the input joins the upsampled features."""

    def __init__(self, config, num_features: int):
        super().__init__()
        self.upscale = config.upscale
        self.conv_bicubic = nn.Conv2d(config.num_channels, num_features, 3, 1, 1)
        self.conv_before_upsample = nn.Conv2d(config.embed_dim, num_features, 3, 1, 1)
        self.activation = nn.LeakyReLU(inplace=True)
        self.conv_aux = nn.Conv2d(num_features, config.num_channels, 3, 1, 1)
        self.conv_after_aux = nn.Sequential(nn.Conv2d(3, num_features, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.upsample = Upsample(config.upscale, num_features)
        self.final_convolution = nn.Conv2d(num_features, config.num_channels_out, 3, 1, 1)

    def forward(self, features, bicubic, height: int, width: int):
        bicubic = self.conv_bicubic(bicubic)
        aux = self.conv_aux(self.activation(self.conv_before_upsample(features)))
        out_height, out_width = height * self.upscale, width * self.upscale
        upsampled = self.upsample(self.conv_after_aux(aux))[:, :, :out_height, :out_width]
        return self.final_convolution(upsampled + bicubic[:, :, :out_height, :out_width]), aux


class Swin2SRForImageSuperResolution(Swin2SRPreTrainedModel):
    """``reconstruction`` (batch, channels_out, H * upscale, W * upscale), in [0, 1] up to the
    model's overshoot (the pipeline clamps it)."""

    def __init__(self, config):
        super().__init__(config)
        self.swin2sr = Swin2SRModel(config)
        self.upsampler, self.upscale = config.upsampler, config.upscale
        num_features = 64
        if self.upsampler == "pixelshuffle":
            self.upsample = PixelShuffleUpsampler(config, num_features)
        elif self.upsampler == "pixelshuffle_aux":
            self.upsample = PixelShuffleAuxUpsampler(config, num_features)
        elif self.upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(config.upscale, config.embed_dim, config.num_channels_out)
        elif self.upsampler == "nearest+conv":
            self.upsample = NearestConvUpsampler(config, num_features)
        else:  # denoising / JPEG artefact removal: a residual at the input's size
            self.final_convolution = nn.Conv2d(config.embed_dim, config.num_channels_out, 3, 1, 1)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.swin2sr(pixel_values, output_hidden_states)
        pixel_values = pixel_values.to(self.swin2sr.first_convolution.weight.dtype)
        height, width = pixel_values.shape[2:]
        features = out.last_hidden_state
        mean, img_range = self.swin2sr.mean.to(features.dtype), self.swin2sr.img_range
        aux = None
        if self.upsampler == "pixelshuffle_aux":
            bicubic = F.interpolate(pixel_values, size=(height * self.upscale, width * self.upscale),
                                    mode="bicubic", align_corners=False)
            reconstruction, aux = self.upsample(features, bicubic, height, width)
            aux = aux / img_range + mean
        elif self.upsampler in ("pixelshuffle", "pixelshuffledirect", "nearest+conv"):
            reconstruction = self.upsample(features)
        else:
            reconstruction = pixel_values + self.final_convolution(features)[:, :, :height, :width]
        reconstruction = reconstruction / img_range + mean
        reconstruction = reconstruction[:, :, :height * self.upscale, :width * self.upscale]
        return ModelOutput(reconstruction=reconstruction, hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": Swin2SRModel,
    "AutoModelForImageToImage": Swin2SRForImageSuperResolution,
}
