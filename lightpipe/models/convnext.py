"""ConvNeXt (Liu et al., 2022, arXiv:2201.03545): a convolutional net with transformer-style
blocks (7x7 depthwise convolution, layer norm, inverted MLP, layer scale).

Matches transformers' ``models/convnext/modeling_convnext.py`` for inference. Parameter names are
the Hub checkpoints' (``convnext.encoder.stages.0.layers.0.dwconv.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation
from .vision_layers import BackboneMixin, LayerNorm2d, run_stages
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
CONVNEXT_DEFAULTS = {
    "num_channels": 3, "patch_size": 4, "num_stages": 4, "hidden_sizes": [96, 192, 384, 768],
    "depths": [3, 3, 9, 3], "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    "layer_scale_init_value": 1e-6,
}


# 2. Modules.
class ConvNextEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_embeddings = nn.Conv2d(config.num_channels, config.hidden_sizes[0],
                                          kernel_size=config.patch_size, stride=config.patch_size)
        self.layernorm = LayerNorm2d(config.hidden_sizes[0], eps=1e-6)

    def forward(self, pixel_values):
        return self.layernorm(self.patch_embeddings(pixel_values))


class ConvNextLayer(nn.Module):
    """x + scale * mlp(norm(depthwise_conv(x))), the MLP over channels-last features."""

    def __init__(self, config, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.layernorm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = activation(config.hidden_act)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale_parameter = (nn.Parameter(torch.ones(dim))
                                      if config.layer_scale_init_value > 0 else None)

    def forward(self, features):
        residual = features
        features = self.dwconv(features).permute(0, 2, 3, 1)  # (batch, h, w, channels)
        features = self.pwconv2(self.act(self.pwconv1(self.layernorm(features))))
        if self.layer_scale_parameter is not None:
            features = self.layer_scale_parameter * features
        return residual + features.permute(0, 3, 1, 2)


class ConvNextStage(nn.Module):
    def __init__(self, config, in_channels: int, out_channels: int, stride: int, depth: int):
        super().__init__()
        if in_channels != out_channels or stride > 1:
            self.downsampling_layer = nn.ModuleList([
                LayerNorm2d(in_channels, eps=1e-6),
                nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=stride)])
        else:
            self.downsampling_layer = nn.ModuleList()
        self.layers = nn.ModuleList(ConvNextLayer(config, out_channels) for _ in range(depth))

    def forward(self, features):
        for layer in self.downsampling_layer:
            features = layer(features)
        for layer in self.layers:
            features = layer(features)
        return features


class ConvNextEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        sizes = config.hidden_sizes
        self.stages = nn.ModuleList(
            ConvNextStage(config, sizes[max(i - 1, 0)], sizes[i], stride=2 if i > 0 else 1,
                          depth=config.depths[i])
            for i in range(config.num_stages))

    def forward(self, features):
        """-> (last map, every map: the embedding's, then each stage's)."""
        return run_stages(self.stages, features)


class ConvNextPreTrainedModel(PreTrainedModel):
    base_model_prefix = "convnext"
    config_defaults = CONVNEXT_DEFAULTS
    main_input_name = "pixel_values"

    def _init_weights(self, module, only=None):
        super()._init_weights(module, only)
        if isinstance(module, ConvNextLayer) and module.layer_scale_parameter is not None:
            with torch.no_grad():
                module.layer_scale_parameter.fill_(self.config.layer_scale_init_value)


class ConvNextModel(ConvNextPreTrainedModel):
    """``last_hidden_state`` (batch, channels, h, w); ``pooler_output`` the normed mean."""

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = ConvNextEmbeddings(config)
        self.encoder = ConvNextEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embeddings.patch_embeddings.weight
        last, maps = self.encoder(self.embeddings(pixel_values.to(weight.dtype)))
        return ModelOutput(last_hidden_state=last, pooler_output=self.layernorm(last.mean([-2, -1])),
                           hidden_states=tuple(maps) if output_hidden_states else None)


# 3. Heads.
class ConvNextForImageClassification(ConvNextPreTrainedModel):
    optional_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.convnext = ConvNextModel(config)
        self.classifier = (nn.Linear(config.hidden_sizes[-1], config.num_labels)
                           if config.num_labels > 0 else nn.Identity())

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        out = self.convnext(pixel_values, output_hidden_states)
        return ModelOutput(logits=self.classifier(out.pooler_output),
                           hidden_states=out.get("hidden_states"))


class ConvNextBackbone(BackboneMixin, ConvNextPreTrainedModel):
    """``feature_maps``: the chosen stages' maps, each layer-normed over channels."""

    optional_weights = [r"^hidden_states_norms\."]
    ignored_weights = [r"^layernorm\.", r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
        self.embeddings = ConvNextEmbeddings(config)
        self.encoder = ConvNextEncoder(config)
        self.hidden_states_norms = nn.ModuleDict(
            {stage: LayerNorm2d(channels, eps=1e-6) for stage, channels in zip(self.out_features, self.channels)})

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embeddings.patch_embeddings.weight
        _, maps = self.encoder(self.embeddings(pixel_values.to(weight.dtype)))
        return self.backbone_output(maps, output_hidden_states, self.hidden_states_norms)


HEADS = {
    "AutoModel": ConvNextModel,
    "AutoModelForImageClassification": ConvNextForImageClassification,
    "AutoBackbone": ConvNextBackbone,
}
