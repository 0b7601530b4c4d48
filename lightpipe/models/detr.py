"""DETR (Carion et al., 2020, arXiv:2005.12872): a ResNet backbone, a transformer encoder over
its feature map, and a decoder whose learned object queries each predict a class and a box.

Matches transformers' ``models/detr/modeling_detr.py`` for inference. Parameter names are the Hub
checkpoints' (``model.encoder.layers.0.self_attn.out_proj.weight``,
``model.backbone.conv_encoder.model.encoder.stages.0...``). Checkpoints made with a timm
backbone (``use_timm_backbone: true``, e.g. facebook/detr-resnet-50: ``...conv_encoder.model.
layer1.0.conv1.weight``) load into the same ResNet modules through a name mapping; timm itself
is not needed.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation, attention, merge_heads, padding_mask, split_heads
from .resnet import RESNET_DEFAULTS, ResNetEmbeddings, ResNetEncoder
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
DETR_DEFAULTS = {
    "num_channels": 3, "num_queries": 100, "d_model": 256, "encoder_layers": 6,
    "decoder_layers": 6, "encoder_attention_heads": 8, "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048, "activation_function": "relu",
    "position_embedding_type": "sine", "use_timm_backbone": None, "backbone": "resnet50",
    "backbone_config": None, "dilation": False,
}
# timm backbones named in DETR configs -> the ResNet config they correspond to.
TIMM_RESNETS = {
    "resnet18": dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]),
    "resnet34": dict(layer_type="basic", depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 256, 512]),
    "resnet50": dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048]),
    "resnet101": dict(layer_type="bottleneck", depths=[3, 4, 23, 3], hidden_sizes=[256, 512, 1024, 2048]),
    "resnet152": dict(layer_type="bottleneck", depths=[3, 8, 36, 3], hidden_sizes=[256, 512, 1024, 2048]),
}


def backbone_config(config) -> Config:
    if config.dilation:
        raise UnsupportedModelError("DETR with a dilated backbone (DC5, dilation: true) is not "
                                    "supported by lightpipe yet.")
    nested = dict(config.backbone_config or {})
    timm = config.use_timm_backbone
    if timm is None:  # transformers 5 writes no flag: the backbone config's type tells
        timm = nested.get("model_type", "timm_backbone") == "timm_backbone"
    if timm:
        name = str(nested.get("backbone") or config.backbone or "resnet50")
        if name not in TIMM_RESNETS:
            raise UnsupportedModelError(f"DETR backbone {name!r} is not supported; lightpipe reads "
                                        f"{', '.join(TIMM_RESNETS)}.")
        fields = {"model_type": "resnet", "embedding_size": 64, **TIMM_RESNETS[name]}
    else:
        fields = nested
        if fields.get("model_type", "resnet") != "resnet":
            raise UnsupportedModelError(f"DETR with a {fields.get('model_type')!r} backbone is not "
                                        "supported; lightpipe reads ResNet backbones.")
    result = Config(**fields)
    result.set_defaults(RESNET_DEFAULTS)
    result.num_channels = config.num_channels
    return result


_TIMM_BLOCK = re.compile(r"layer(\d+)\.(\d+)\.(conv|bn)(\d+)\.(.+)")
_TIMM_SHORTCUT = re.compile(r"layer(\d+)\.(\d+)\.downsample\.([01])\.(.+)")
_BACKBONE = "backbone.conv_encoder.model."


def timm_to_resnet(name: str) -> str:
    """A timm ResNet weight name (inside DETR's backbone) -> our ResNet module's name."""
    head, found, rest = name.partition(_BACKBONE)
    if not found:
        return name
    part = {"conv": "convolution", "bn": "normalization", "0": "convolution", "1": "normalization"}
    if rest.startswith(("conv1.", "bn1.")):
        kind, _, attr = rest.partition(".")
        rest = f"embedder.embedder.{part[kind[:-1]]}.{attr}"
    elif match := _TIMM_BLOCK.fullmatch(rest):
        stage, block, kind, index, attr = match.groups()
        rest = f"encoder.stages.{int(stage) - 1}.layers.{block}.layer.{int(index) - 1}.{part[kind]}.{attr}"
    elif match := _TIMM_SHORTCUT.fullmatch(rest):
        stage, block, index, attr = match.groups()
        rest = f"encoder.stages.{int(stage) - 1}.layers.{block}.shortcut.{part[index]}.{attr}"
    return head + found + rest


# 2. Modules.
class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics, computed as the reference's (scale and shift)."""

    def __init__(self, channels: int):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, features):
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        shift = self.bias - self.running_mean * scale
        return features * scale[None, :, None, None] + shift[None, :, None, None]


def freeze_batch_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features))
        else:
            freeze_batch_norms(child)


class DetrResNet(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)
        freeze_batch_norms(self)
        self.channels = config.hidden_sizes[-1]

    def forward(self, pixel_values):
        """-> (the last stage's map, every stage's map: stem first)."""
        return self.encoder(self.embedder(pixel_values))


class DetrConvEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = DetrResNet(backbone_config(config))


class DetrConvModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.conv_encoder = DetrConvEncoder(config)


def sine_positions(mask: torch.Tensor, features: int, dtype, temperature: float = 10000.0):
    """(batch, h, w) mask of real pixels -> (batch, h * w, 2 * features) sine embeddings of the
    normalised row and column positions (y first)."""
    scale, eps = 2 * math.pi, 1e-6
    embed = mask.to(dtype)
    y = embed.cumsum(1)
    x = embed.cumsum(2)
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(features, device=mask.device).to(dtype)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / features)
    pos_x = x[..., None] / dim_t
    pos_y = y[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).flatten(1, 2)


class DetrAttention(nn.Module):
    """Attention whose queries and keys get position embeddings added (values do not)."""

    def __init__(self, size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.k_proj = nn.Linear(size, size)
        self.v_proj = nn.Linear(size, size)
        self.q_proj = nn.Linear(size, size)
        self.out_proj = nn.Linear(size, size)

    def forward(self, hidden_states, query_positions=None, keys=None, key_positions=None, mask=None):
        keys = hidden_states if keys is None else keys
        query_input = hidden_states if query_positions is None else hidden_states + query_positions
        key_input = keys if key_positions is None else keys + key_positions
        query = split_heads(self.q_proj(query_input), self.num_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(self.k_proj(key_input), self.num_heads)
        value = split_heads(self.v_proj(keys), self.num_heads)
        return self.out_proj(merge_heads(attention(query, key, value, mask)))


class DetrEncoderLayer(nn.Module):
    """Post-norm: norm(x + attention(x)), then norm(x + mlp(x))."""

    def __init__(self, config, num_heads: int, ffn_dim: int):
        super().__init__()
        size = config.d_model
        self.self_attn = DetrAttention(size, num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(size)
        self.fc1 = nn.Linear(size, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, size)
        self.final_layer_norm = nn.LayerNorm(size)
        self.act = activation(config.activation_function)

    def feed_forward(self, hidden_states):
        return self.final_layer_norm(hidden_states + self.fc2(self.act(self.fc1(hidden_states))))

    def forward(self, hidden_states, positions, mask):
        hidden_states = self.self_attn_layer_norm(
            hidden_states + self.self_attn(hidden_states, positions, None, positions, mask))
        return self.feed_forward(hidden_states)


class DetrDecoderLayer(DetrEncoderLayer):
    """The encoder layer's blocks with a cross-attention to the encoder's memory between them."""

    def __init__(self, config):
        super().__init__(config, config.decoder_attention_heads, config.decoder_ffn_dim)
        self.encoder_attn = DetrAttention(config.d_model, config.decoder_attention_heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, hidden_states, query_positions, memory, memory_positions, memory_mask):
        hidden_states = self.self_attn_layer_norm(
            hidden_states + self.self_attn(hidden_states, query_positions, None, query_positions))
        hidden_states = self.encoder_attn_layer_norm(hidden_states + self.encoder_attn(
            hidden_states, query_positions, memory, memory_positions, memory_mask))
        return self.feed_forward(hidden_states)


class DetrEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(
            DetrEncoderLayer(config, config.encoder_attention_heads, config.encoder_ffn_dim)
            for _ in range(config.encoder_layers))


class DetrDecoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(DetrDecoderLayer(config) for _ in range(config.decoder_layers))
        self.layernorm = nn.LayerNorm(config.d_model)


class DetrPreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    config_defaults = DETR_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"num_batches_tracked$"]

    def _adapt_state(self, state: dict) -> dict:
        return super()._adapt_state({timm_to_resnet(k): v for k, v in state.items()})

    def _init_weights(self, module, only=None):
        super()._init_weights(module, only)
        if isinstance(module, FrozenBatchNorm2d):
            for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                getattr(module, name).fill_(value)


class DetrModel(DetrPreTrainedModel):
    """``last_hidden_state``: the decoder's (batch, queries, d_model);
    ``encoder_last_hidden_state``: the encoder's over the feature map."""

    def __init__(self, config):
        super().__init__(config)
        if config.position_embedding_type != "sine":
            raise UnsupportedModelError(f"DETR position_embedding_type "
                                        f"{config.position_embedding_type!r} is not supported; "
                                        "lightpipe implements 'sine'.")
        self.backbone = DetrConvModel(config)
        channels = self.backbone.conv_encoder.model.channels
        self.input_projection = nn.Conv2d(channels, config.d_model, kernel_size=1)
        self.query_position_embeddings = nn.Embedding(config.num_queries, config.d_model)
        self.encoder = DetrEncoder(config)
        self.decoder = DetrDecoder(config)

    def forward(self, pixel_values=None, pixel_mask=None, **unused) -> ModelOutput:
        found = self.features(pixel_values, pixel_mask, type(self).__name__)
        return ModelOutput(last_hidden_state=found["last_hidden_state"],
                           encoder_last_hidden_state=found["memory"])

    def features(self, pixel_values, pixel_mask=None, model: str = "DetrModel") -> dict:
        """The forward's outputs and what a mask head reads besides: the backbone's stage maps
        (stem first), the projected map (batch, d_model, h, w), the encoder's memory (batch,
        h * w, d_model) and the feature-level mask (batch, h, w)."""
        check_pixels(pixel_values, self.config.num_channels, model)
        batch, _, height, width = pixel_values.shape
        if pixel_mask is None:
            pixel_mask = torch.ones((batch, height, width), device=pixel_values.device)
        pixel_values = pixel_values.to(self.input_projection.weight.dtype)
        feature_map, stages = self.backbone.conv_encoder.model(pixel_values)  # (batch, channels, h, w)
        mask = F.interpolate(pixel_mask[None].float(), size=feature_map.shape[-2:]).to(torch.bool)[0]
        projected = self.input_projection(feature_map)
        memory = projected.flatten(2).transpose(1, 2)  # (batch, h * w, d_model)
        positions = sine_positions(mask, self.config.d_model // 2, pixel_values.dtype)
        flat_mask = padding_mask(mask.flatten(1))
        for layer in self.encoder.layers:
            memory = layer(memory, positions, flat_mask)
        queries = self.query_position_embeddings.weight[None].expand(batch, -1, -1)
        hidden_states = torch.zeros_like(queries)
        for layer in self.decoder.layers:
            hidden_states = layer(hidden_states, queries, memory, positions, flat_mask)
        return {"stages": stages, "projected": projected, "memory": memory, "mask": mask,
                "last_hidden_state": self.decoder.layernorm(hidden_states)}


class DetrMLPPredictionHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        sizes = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:] + [output_dim]))

    def forward(self, hidden_states):
        for index, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states)
            if index < len(self.layers) - 1:
                hidden_states = F.relu(hidden_states)
        return hidden_states


# 3. Heads.
class DetrForObjectDetection(DetrPreTrainedModel):
    """``logits`` (batch, queries, labels + 1: the last is "no object") and ``pred_boxes``
    (batch, queries, 4): center x, center y, width, height, relative to the image."""

    def __init__(self, config):
        super().__init__(config)
        self.model = DetrModel(config)
        self.class_labels_classifier = nn.Linear(config.d_model, config.num_labels + 1)
        self.bbox_predictor = DetrMLPPredictionHead(config.d_model, config.d_model, 4, 3)

    def forward(self, pixel_values=None, pixel_mask=None, **unused) -> ModelOutput:
        out = self.model(pixel_values, pixel_mask)
        hidden_states = out.last_hidden_state
        return ModelOutput(logits=self.class_labels_classifier(hidden_states),
                           pred_boxes=self.bbox_predictor(hidden_states).sigmoid(),
                           last_hidden_state=hidden_states,
                           encoder_last_hidden_state=out.encoder_last_hidden_state)


HEADS = {
    "AutoModel": DetrModel,
    "AutoModelForObjectDetection": DetrForObjectDetection,
}
