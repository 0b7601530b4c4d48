"""RT-DETR's ResNet-vd backbone (He et al., 2019, "Bag of Tricks", arXiv:1812.01187).

Matches transformers' ``models/rt_detr/modeling_rt_detr_resnet.py`` for inference. Two "vd"
changes to ResNet (whose conv + batch norm layer and 1x1 shortcut are imported from
``resnet.py``): the stem is three 3x3 convolutions instead of one 7x7, and a downsampling
shortcut averages 2x2 pixels before its 1x1 convolution instead of striding it. Parameter names
are the Hub's (``embedder.embedder.0.convolution.weight``,
``encoder.stages.1.layers.0.shortcut.1.convolution.weight``).
"""

from __future__ import annotations

from torch import nn

from ..modeling import PreTrainedModel
from .layers import activation
from .resnet import RESNET_DEFAULTS, ResNetConvLayer, ResNetShortCut
from .vision_layers import BackboneMixin, BatchNormMixin, run_stages
from .vit import check_pixels


# 2. Modules.
class RTDetrResNetEmbeddings(nn.Module):
    """Three 3x3 convolutions (the first with stride 2), then 3x3 stride-2 max pooling."""

    def __init__(self, config):
        super().__init__()
        half, act = config.embedding_size // 2, config.hidden_act
        self.embedder = nn.Sequential(
            ResNetConvLayer(config.num_channels, half, kernel_size=3, stride=2, act=act),
            ResNetConvLayer(half, half, kernel_size=3, act=act),
            ResNetConvLayer(half, config.embedding_size, kernel_size=3, act=act))
        self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, pixel_values):
        return self.pooler(self.embedder(pixel_values))


def vd_shortcut(in_channels: int, out_channels: int, stride: int, project: bool,
                pool: bool) -> nn.Module:
    """Identity, a 1x1 projection, or (``pool``) 2x2 average pooling then the projection."""
    if pool:
        return nn.Sequential(nn.AvgPool2d(2, 2, 0, ceil_mode=True),
                             ResNetShortCut(in_channels, out_channels, stride=1) if project
                             else nn.Identity())
    return ResNetShortCut(in_channels, out_channels, stride=stride) if project else nn.Identity()


class RTDetrResNetLayer(nn.Module):
    """A bottleneck (1x1, 3x3, 1x1) or basic (3x3, 3x3) block; its inner convolutions use ReLU
    whatever ``hidden_act`` says (the reference's), the block's output ``hidden_act``."""

    def __init__(self, config, in_channels: int, out_channels: int, stride: int = 1,
                 first: bool = False):
        super().__init__()
        if config.layer_type == "bottleneck":
            project = in_channels != out_channels or stride != 1
            self.shortcut = vd_shortcut(in_channels, out_channels, stride, project, pool=stride == 2)
            reduced = out_channels // 4
            in_bottleneck = config.downsample_in_bottleneck
            self.layer = nn.Sequential(
                ResNetConvLayer(in_channels, reduced, kernel_size=1,
                                stride=stride if in_bottleneck else 1),
                ResNetConvLayer(reduced, reduced, stride=1 if in_bottleneck else stride),
                ResNetConvLayer(reduced, out_channels, kernel_size=1, act=None))
        else:  # the first block of a stage always projects its shortcut
            self.shortcut = vd_shortcut(in_channels, out_channels, stride, project=first,
                                        pool=in_channels != out_channels)
            self.layer = nn.Sequential(ResNetConvLayer(in_channels, out_channels, stride=stride),
                                       ResNetConvLayer(out_channels, out_channels, act=None))
        self.act = activation(config.hidden_act)

    def forward(self, hidden_state):
        return self.act(self.layer(hidden_state) + self.shortcut(hidden_state))


class RTDetrResNetStage(nn.Module):
    def __init__(self, config, in_channels: int, out_channels: int, stride: int, depth: int):
        super().__init__()
        self.layers = nn.Sequential(
            RTDetrResNetLayer(config, in_channels, out_channels, stride, first=True),
            *[RTDetrResNetLayer(config, out_channels, out_channels) for _ in range(depth - 1)])

    def forward(self, hidden_state):
        return self.layers(hidden_state)


class RTDetrResNetEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        sizes = [config.embedding_size] + list(config.hidden_sizes)
        self.stages = nn.ModuleList(
            RTDetrResNetStage(config, sizes[i], sizes[i + 1],
                              stride=(2 if i > 0 or config.downsample_in_first_stage else 1),
                              depth=config.depths[i])
            for i in range(len(config.hidden_sizes)))

    def forward(self, hidden_state):
        return run_stages(self.stages, hidden_state)


class RTDetrResNetPreTrainedModel(BatchNormMixin, PreTrainedModel):
    model_type = "rt_detr_resnet"
    base_model_prefix = "resnet"
    config_defaults = RESNET_DEFAULTS
    main_input_name = "pixel_values"


class RTDetrResNetBackbone(BackboneMixin, RTDetrResNetPreTrainedModel):
    """``feature_maps``: the chosen stages' maps (``stem`` is the embedding's output)."""

    def __init__(self, config):
        super().__init__(config)
        self.num_features = [config.embedding_size] + list(config.hidden_sizes)
        self.embedder = RTDetrResNetEmbeddings(config)
        self.encoder = RTDetrResNetEncoder(config)

    def forward(self, pixel_values=None, output_hidden_states=False, **unused):
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        weight = self.embedder.embedder[0].convolution.weight
        _, maps = self.encoder(self.embedder(pixel_values.to(weight.dtype)))
        return self.backbone_output(maps, output_hidden_states)


HEADS = {"AutoBackbone": RTDetrResNetBackbone}
