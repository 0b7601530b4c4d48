"""Depth Anything (Yang et al., 2024, arXiv:2401.10891; V2: arXiv:2406.09414): DPT's
reassemble-and-fuse neck over a DINOv2 backbone, with fusion steps sized to the next finer map
and a head that upsamples to the input's patch grid x patch size.

Matches transformers' ``models/depth_anything/modeling_depth_anything.py`` for inference
(relative and metric depth). Parameter names are the Hub checkpoints' (``backbone.encoder...``,
``neck.fusion_stage.layers.0...``, ``head.conv1``); the neck's blocks are dpt.py's, the
backbone dinov2.py's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .dinov2 import Dinov2Backbone
from .dpt import DPTFeatureFusionStage, DPTNeck, DPTReassembleStage

# 1. Config fields read, with the defaults config.json may leave out.
DEPTH_ANYTHING_DEFAULTS = {
    "backbone_config": None,
    "patch_size": 14,
    "reassemble_hidden_size": 384,
    "reassemble_factors": [4, 2, 1, 0.5],
    "neck_hidden_sizes": [48, 96, 192, 384],
    "fusion_hidden_size": 64,
    "head_in_index": -1,
    "head_hidden_size": 32,
    "depth_estimation_type": "relative",
    "max_depth": 1,
    # DPT's residual units, as Depth Anything builds them: no batch norm, with biases
    "use_batch_norm_in_fusion_residual": False,
    "use_bias_in_fusion_residual": True,
}
# The backbone config transformers fills in when config.json leaves it out (the small model).
_BACKBONE_DEFAULTS = {"model_type": "dinov2", "image_size": 518, "hidden_size": 384,
                      "num_attention_heads": 6, "out_indices": [9, 10, 11, 12],
                      "reshape_hidden_states": False}


def backbone_config(config) -> Config:
    fields = {**_BACKBONE_DEFAULTS, **dict(config.backbone_config or {})}
    if fields.get("model_type") != "dinov2":
        raise UnsupportedModelError(
            f"Depth Anything with a {fields.get('model_type')!r} backbone is not supported by "
            "lightpipe; it reads DINOv2 backbones (Depth Anything V1 and V2).")
    fields["reshape_hidden_states"] = False  # the neck takes token states
    return Config(**fields)


# 2. Modules.
class DepthAnythingNeck(DPTNeck):
    """DPT's neck: the [CLS] token ignored, tokens of ``reassemble_hidden_size`` channels, each
    fusion step upsampled to the next finer map's size instead of x2."""

    def __init__(self, config):
        super().__init__(config, DPTReassembleStage(config, config.reassemble_hidden_size, "ignore"),
                         DPTFeatureFusionStage(config, to_next_size=True))


class DepthAnythingDepthEstimationHead(nn.Module):
    """conv (halve), upsample to the patch grid x patch size, conv, ReLU, conv to 1; then ReLU
    (relative depth) or sigmoid (metric), times ``max_depth``."""

    def __init__(self, config):
        super().__init__()
        if config.depth_estimation_type not in ("relative", "metric"):
            raise UnsupportedModelError(f"depth_estimation_type {config.depth_estimation_type!r} is "
                                        "not one of 'relative', 'metric'.")
        self.head_in_index = config.head_in_index
        self.patch_size = config.patch_size
        self.metric = config.depth_estimation_type == "metric"
        self.max_depth = config.max_depth
        size = config.fusion_hidden_size
        self.conv1 = nn.Conv2d(size, size // 2, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(size // 2, config.head_hidden_size, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(config.head_hidden_size, 1, kernel_size=1)

    def forward(self, maps: list, rows: int, cols: int) -> torch.Tensor:
        depth = self.conv1(maps[self.head_in_index])
        depth = F.interpolate(depth, size=(rows * self.patch_size, cols * self.patch_size),
                              mode="bilinear", align_corners=True)
        depth = self.conv3(F.relu(self.conv2(depth)))
        depth = torch.sigmoid(depth) if self.metric else F.relu(depth)
        return (depth * self.max_depth).squeeze(1)  # (batch, height, width)


class DepthAnythingPreTrainedModel(PreTrainedModel):
    base_model_prefix = "depth_anything"
    config_defaults = DEPTH_ANYTHING_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"(^|\.)embeddings\.mask_token$"]


# 3. Heads.
class DepthAnythingForDepthEstimation(DepthAnythingPreTrainedModel):
    """``predicted_depth`` (batch, height, width): the patch grid x patch size (the input's size
    when its sides are multiples of the patch size)."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = Dinov2Backbone(backbone_config(config))
        self.neck = DepthAnythingNeck(config)
        self.head = DepthAnythingDepthEstimationHead(config)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.backbone(pixel_values, output_hidden_states=output_hidden_states)
        rows, cols = (side // self.config.patch_size for side in pixel_values.shape[2:])
        depth = self.head(self.neck(list(out.feature_maps), rows, cols), rows, cols)
        return ModelOutput(predicted_depth=depth, hidden_states=out.get("hidden_states"))


HEADS = {"AutoModelForDepthEstimation": DepthAnythingForDepthEstimation}
