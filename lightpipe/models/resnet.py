"""ResNet (He et al., 2015, arXiv:1512.03385): residual convolution stages.

Matches transformers' ``models/resnet/modeling_resnet.py`` for inference. Parameter names are the
Hub checkpoints' (``resnet.encoder.stages.0.layers.0.layer.0.convolution.weight``). Batch norms
run with their stored statistics. ``ResNetBackbone`` is also DETR's backbone (see detr.py).
"""

from __future__ import annotations

from torch import nn

from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation
from .vision_layers import BackboneMixin, BatchNormMixin, run_stages
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
RESNET_DEFAULTS = {
    "num_channels": 3, "embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 6, 3], "layer_type": "bottleneck", "hidden_act": "relu",
    "downsample_in_first_stage": False, "downsample_in_bottleneck": False,
}


# 2. Modules.
class ResNetConvLayer(nn.Module):
    """Convolution, batch norm, activation (none when ``act`` is None)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 act: str | None = "relu"):
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                     padding=kernel_size // 2, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)
        self.act = activation(act) if act else None

    def forward(self, hidden_state):
        hidden_state = self.normalization(self.convolution(hidden_state))
        return self.act(hidden_state) if self.act is not None else hidden_state


class ResNetEmbeddings(nn.Module):
    """7x7 stride-2 convolution, then 3x3 stride-2 max pooling."""

    def __init__(self, config):
        super().__init__()
        self.embedder = ResNetConvLayer(config.num_channels, config.embedding_size, kernel_size=7,
                                        stride=2, act=config.hidden_act)
        self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, pixel_values):
        return self.pooler(self.embedder(pixel_values))


class ResNetShortCut(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)

    def forward(self, hidden_state):
        return self.normalization(self.convolution(hidden_state))


class ResNetResidualLayer(nn.Module):
    """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1) block with a shortcut."""

    def __init__(self, config, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if in_channels != out_channels or stride != 1:
            self.shortcut = ResNetShortCut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()
        if config.layer_type == "bottleneck":
            reduced = out_channels // 4
            first_stride = stride if config.downsample_in_bottleneck else 1
            self.layer = nn.Sequential(
                ResNetConvLayer(in_channels, reduced, kernel_size=1, stride=first_stride),
                ResNetConvLayer(reduced, reduced, stride=stride if first_stride == 1 else 1),
                ResNetConvLayer(reduced, out_channels, kernel_size=1, act=None))
        else:
            self.layer = nn.Sequential(ResNetConvLayer(in_channels, out_channels, stride=stride),
                                       ResNetConvLayer(out_channels, out_channels, act=None))
        self.act = activation(config.hidden_act)

    def forward(self, hidden_state):
        return self.act(self.layer(hidden_state) + self.shortcut(hidden_state))


class ResNetStage(nn.Module):
    def __init__(self, config, in_channels: int, out_channels: int, stride: int, depth: int):
        super().__init__()
        self.layers = nn.Sequential(
            ResNetResidualLayer(config, in_channels, out_channels, stride),
            *[ResNetResidualLayer(config, out_channels, out_channels) for _ in range(depth - 1)])

    def forward(self, hidden_state):
        return self.layers(hidden_state)


class ResNetEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        sizes = [config.embedding_size] + list(config.hidden_sizes)
        self.stages = nn.ModuleList(
            ResNetStage(config, sizes[i], sizes[i + 1],
                        stride=(2 if i > 0 or config.downsample_in_first_stage else 1),
                        depth=config.depths[i])
            for i in range(len(config.hidden_sizes)))

    def forward(self, hidden_state):
        """-> (last map, every map: the embedding's, then each stage's)."""
        return run_stages(self.stages, hidden_state)


class ResNetPreTrainedModel(BatchNormMixin, PreTrainedModel):
    base_model_prefix = "resnet"
    config_defaults = RESNET_DEFAULTS
    main_input_name = "pixel_values"


class ResNetModel(ResNetPreTrainedModel):
    """``last_hidden_state`` (batch, channels, h, w) and ``pooler_output`` (batch, channels, 1, 1)."""

    def __init__(self, config):
        super().__init__(config)
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embedder.embedder.convolution.weight
        last, maps = self.encoder(self.embedder(pixel_values.to(weight.dtype)))
        return ModelOutput(last_hidden_state=last, pooler_output=last.mean((-2, -1), keepdim=True),
                           hidden_states=tuple(maps) if output_hidden_states else None)


# 3. Heads.
class ResNetForImageClassification(ResNetPreTrainedModel):
    optional_weights = ResNetPreTrainedModel.optional_weights + [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.resnet = ResNetModel(config)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity())

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        out = self.resnet(pixel_values, output_hidden_states)
        return ModelOutput(logits=self.classifier(out.pooler_output),
                           hidden_states=out.get("hidden_states"))


class ResNetBackbone(BackboneMixin, ResNetPreTrainedModel):
    """``feature_maps``: the chosen stages' maps (``stem`` is the embedding's output)."""

    ignored_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.num_features = [config.embedding_size] + list(config.hidden_sizes)
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)

    def forward(self, pixel_values=None, output_hidden_states=False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embedder.embedder.convolution.weight
        _, maps = self.encoder(self.embedder(pixel_values.to(weight.dtype)))
        return self.backbone_output(maps, output_hidden_states)


HEADS = {
    "AutoModel": ResNetModel,
    "AutoModelForImageClassification": ResNetForImageClassification,
    "AutoBackbone": ResNetBackbone,
}
