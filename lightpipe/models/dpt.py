"""DPT (Ranftl et al., 2021, arXiv:2103.13413): dense prediction with a ViT backbone. Tokens of
a few encoder layers are reassembled into image-like maps at four scales, fused coarse to fine
(RefineNet-style), and a small convolutional head predicts depth or class logits per pixel.

Matches transformers' ``models/dpt/modeling_dpt.py`` for inference with the plain ViT backbone
(``Intel/dpt-large``, ``Intel/dpt-large-ade``). Parameter names are the Hub checkpoints'
(``dpt.encoder.layer.0.attention.attention.query.weight``, ``neck.fusion_stage.layers.0...``,
``head.head.0.weight``); the ViT layers are vit.py's. The hybrid (BiT) backbone and external
backbones (``backbone_config``: BEiT, Swinv2, DINOv2) are refused with a clear error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation
from .vision_layers import BatchNormMixin
from .vit import VIT_DEFAULTS, ViTEmbeddings, ViTEncoder, ViTPooler, check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
DPT_DEFAULTS = {
    **VIT_DEFAULTS,
    "image_size": 384,
    "is_hybrid": False,
    "backbone_config": None,
    "backbone_out_indices": [2, 5, 8, 11],
    "readout_type": "project",
    "reassemble_factors": [4, 2, 1, 0.5],
    "neck_hidden_sizes": [96, 192, 384, 768],
    "fusion_hidden_size": 256,
    "head_in_index": -1,
    "use_batch_norm_in_fusion_residual": False,
    "use_bias_in_fusion_residual": None,  # None: a bias unless the block has batch norm
    "add_projection": False,
    "use_auxiliary_head": True,
    "semantic_classifier_dropout": 0.1,
}


def check_backbone(config) -> None:
    if config.is_hybrid:
        raise UnsupportedModelError(
            "DPT-Hybrid (is_hybrid: true, a BiT convolutional stem) is not supported by lightpipe "
            "yet; plain-ViT DPT checkpoints such as Intel/dpt-large are.")
    if config.backbone_config:
        kind = dict(config.backbone_config).get("model_type")
        raise UnsupportedModelError(
            f"DPT with a {kind!r} backbone (backbone_config) is not supported by lightpipe yet; "
            "plain-ViT DPT checkpoints such as Intel/dpt-large are.")
    if config.readout_type not in ("ignore", "add", "project"):
        raise UnsupportedModelError(f"readout_type {config.readout_type!r} is not one of "
                                    "'ignore', 'add', 'project'.")


# 2. Modules: the ViT backbone (vit.py's layers), the reassemble and fusion neck.
class DPTViTEmbeddings(ViTEmbeddings):
    """ViT's embeddings, with position embeddings always resized (bilinear) to the image's patch
    grid, so any image size whose sides are multiples of the patch size works."""

    def forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        batch, _, height, width = pixel_values.shape
        rows, cols = height // self.patch_size[0], width // self.patch_size[1]
        embeddings = self.patch_embeddings(pixel_values)  # (batch, rows * cols, hidden)
        embeddings = torch.cat((self.cls_token.expand(batch, -1, -1), embeddings), dim=1)
        return self.dropout(embeddings + self.resized_positions(rows, cols))

    def resized_positions(self, rows: int, cols: int) -> torch.Tensor:
        grid = self.position_embeddings[0, 1:]
        side = int(grid.shape[0] ** 0.5)
        grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, hidden, side, side)
        grid = F.interpolate(grid, size=(rows, cols), mode="bilinear")
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((self.position_embeddings[:, :1], grid), dim=1)


class DPTReassembleLayer(nn.Module):
    """Project tokens' channels, then resize the map by ``factor`` (transposed conv up, strided
    conv down)."""

    def __init__(self, hidden_size: int, channels: int, factor: float):
        super().__init__()
        self.projection = nn.Conv2d(hidden_size, channels, kernel_size=1)
        if factor > 1:
            self.resize = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor == 1:
            self.resize = nn.Identity()
        else:
            self.resize = nn.Conv2d(channels, channels, kernel_size=3, stride=int(1 / factor), padding=1)

    def forward(self, hidden_state):
        return self.resize(self.projection(hidden_state))


class DPTReassembleStage(nn.Module):
    """(batch, 1 + rows * cols, hidden) token states -> (batch, channels, h, w) maps; the [CLS]
    token is ignored, added, or concatenated and projected (``readout_type``). ``hidden_size``
    and ``readout_type`` default to the config's (Depth Anything gives its own)."""

    def __init__(self, config, hidden_size: int | None = None, readout_type: str | None = None):
        super().__init__()
        hidden = hidden_size or config.hidden_size
        self.readout_type = readout_type or config.readout_type
        self.layers = nn.ModuleList(
            DPTReassembleLayer(hidden, channels, factor)
            for channels, factor in zip(config.neck_hidden_sizes, config.reassemble_factors))
        if self.readout_type == "project":
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * hidden, hidden), _Activation(config.hidden_act))
                for _ in config.neck_hidden_sizes)

    def forward(self, hidden_states: list, rows: int, cols: int) -> list:
        maps = []
        for index, hidden_state in enumerate(hidden_states):
            cls_token, tokens = hidden_state[:, :1], hidden_state[:, 1:]
            if self.readout_type == "project":
                readout = cls_token.expand_as(tokens)
                tokens = self.readout_projects[index](torch.cat((tokens, readout), -1))
            elif self.readout_type == "add":
                tokens = tokens + cls_token
            batch, _, channels = tokens.shape
            grid = tokens.transpose(1, 2).reshape(batch, channels, rows, cols)
            maps.append(self.layers[index](grid))
        return maps


class _Activation(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.function = activation(name)

    def forward(self, hidden_states):
        return self.function(hidden_states)


class DPTPreActResidualLayer(nn.Module):
    """x + conv(relu(conv(relu(x)))), batch norm after each conv when the config asks."""

    def __init__(self, config):
        super().__init__()
        size = config.fusion_hidden_size
        self.use_batch_norm = bool(config.use_batch_norm_in_fusion_residual)
        bias = config.use_bias_in_fusion_residual
        bias = (not self.use_batch_norm) if bias is None else bool(bias)
        self.convolution1 = nn.Conv2d(size, size, kernel_size=3, padding=1, bias=bias)
        self.convolution2 = nn.Conv2d(size, size, kernel_size=3, padding=1, bias=bias)
        if self.use_batch_norm:
            self.batch_norm1 = nn.BatchNorm2d(size)
            self.batch_norm2 = nn.BatchNorm2d(size)

    def forward(self, hidden_state):
        residual = hidden_state
        hidden_state = self.convolution1(F.relu(hidden_state))
        if self.use_batch_norm:
            hidden_state = self.batch_norm1(hidden_state)
        hidden_state = self.convolution2(F.relu(hidden_state))
        if self.use_batch_norm:
            hidden_state = self.batch_norm2(hidden_state)
        return hidden_state + residual


class DPTFeatureFusionLayer(nn.Module):
    """Add the finer map (through a residual unit), refine, upsample (x2, or to ``size``),
    project."""

    def __init__(self, config):
        super().__init__()
        size = config.fusion_hidden_size
        self.projection = nn.Conv2d(size, size, kernel_size=1)
        self.residual_layer1 = DPTPreActResidualLayer(config)
        self.residual_layer2 = DPTPreActResidualLayer(config)

    def forward(self, hidden_state, residual=None, size=None):
        if residual is not None:
            if hidden_state.shape != residual.shape:
                residual = F.interpolate(residual, size=hidden_state.shape[2:], mode="bilinear",
                                         align_corners=False)
            hidden_state = hidden_state + self.residual_layer1(residual)
        hidden_state = self.residual_layer2(hidden_state)
        resize = {"scale_factor": 2} if size is None else {"size": tuple(size)}
        hidden_state = F.interpolate(hidden_state, **resize, mode="bilinear", align_corners=True)
        return self.projection(hidden_state)


class DPTFeatureFusionStage(nn.Module):
    """Fuse the maps coarsest first; each step upsamples x2, or (``to_next_size``, Depth
    Anything) to the next finer map's size."""

    def __init__(self, config, to_next_size: bool = False):
        super().__init__()
        self.to_next_size = to_next_size
        self.layers = nn.ModuleList(DPTFeatureFusionLayer(config) for _ in config.neck_hidden_sizes)

    def forward(self, maps: list) -> list:
        maps = maps[::-1]  # coarsest first
        fused, outputs = None, []
        for index, (hidden_state, layer) in enumerate(zip(maps, self.layers)):
            size = (maps[index + 1].shape[2:]
                    if self.to_next_size and index + 1 < len(maps) else None)
            fused = layer(hidden_state, size=size) if fused is None else layer(fused, hidden_state, size=size)
            outputs.append(fused)
        return outputs


class DPTNeck(nn.Module):
    """Reassemble, a 3x3 convolution per map to ``fusion_hidden_size``, fuse. A family with its
    own stages (Depth Anything) passes them."""

    def __init__(self, config, reassemble_stage: nn.Module | None = None,
                 fusion_stage: nn.Module | None = None):
        super().__init__()
        self.reassemble_stage = (DPTReassembleStage(config) if reassemble_stage is None
                                 else reassemble_stage)
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, config.fusion_hidden_size, kernel_size=3, padding=1, bias=False)
            for channels in config.neck_hidden_sizes)
        self.fusion_stage = DPTFeatureFusionStage(config) if fusion_stage is None else fusion_stage

    def forward(self, hidden_states: list, rows: int, cols: int) -> list:
        maps = self.reassemble_stage(hidden_states, rows, cols)
        return self.fusion_stage([conv(m) for conv, m in zip(self.convs, maps)])


class DPTPreTrainedModel(BatchNormMixin, PreTrainedModel):
    base_model_prefix = "dpt"
    config_defaults = DPT_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"(^|\.)embeddings\.mask_token$"]

    def __init__(self, config):
        super().__init__(config)
        check_backbone(config)

    def selected_states(self, pixel_values, output_hidden_states: bool):
        """The backbone's outputs and the token states of ``backbone_out_indices``' layers."""
        out = self.dpt(pixel_values, output_hidden_states=True)
        wanted = set(self.config.backbone_out_indices)
        # [0] is the embeddings; the chosen layers in the encoder's order, as the reference
        chosen = [state for index, state in enumerate(out.hidden_states[1:]) if index in wanted]
        if len(chosen) != len(self.config.neck_hidden_sizes):
            raise UnsupportedModelError(
                f"backbone_out_indices {self.config.backbone_out_indices} pick {len(chosen)} of the "
                f"{self.config.num_hidden_layers} layers, but the neck takes "
                f"{len(self.config.neck_hidden_sizes)} (neck_hidden_sizes): config.json is inconsistent.")
        rows, cols = (side // self.config.patch_size for side in pixel_values.shape[2:])
        return out.hidden_states if output_hidden_states else None, chosen, rows, cols


class DPTModel(DPTPreTrainedModel):
    """The ViT backbone: ``last_hidden_state`` after the final norm, ``pooler_output``."""

    optional_weights = DPTPreTrainedModel.optional_weights + [r"^pooler\."]

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = DPTViTEmbeddings(config)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        check_pixels(pixel_values, self.config.num_channels, type(self).__name__)
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        hidden_states, all_states = self.encoder(self.embeddings(pixel_values), output_hidden_states)
        hidden_states = self.layernorm(hidden_states)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled,
                           hidden_states=all_states)


# 3. Heads.
class DPTDepthEstimationHead(nn.Module):
    """conv (halve channels), upsample x2, conv to 32, conv to 1; ReLU keeps depth >= 0."""

    def __init__(self, config):
        super().__init__()
        self.head_in_index = config.head_in_index
        # The reference hard-codes 256 channels for this optional projection.
        self.projection = nn.Conv2d(256, 256, kernel_size=3, padding=1) if config.add_projection else None
        size = config.fusion_hidden_size
        self.head = nn.Sequential(
            nn.Conv2d(size, size // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(size // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1),
            nn.ReLU(),
        )

    def forward(self, maps: list) -> torch.Tensor:
        hidden_state = maps[self.head_in_index]
        if self.projection is not None:
            hidden_state = F.relu(self.projection(hidden_state))
        return self.head(hidden_state).squeeze(1)  # (batch, height, width)


class DPTForDepthEstimation(DPTPreTrainedModel):
    """``predicted_depth`` (batch, height, width) at the input's resolution."""

    ignored_weights = DPTPreTrainedModel.ignored_weights + [r"^dpt\.pooler\."]

    def __init__(self, config):
        super().__init__(config)
        self.dpt = DPTModel(config, add_pooling_layer=False)
        self.neck = DPTNeck(config)
        self.head = DPTDepthEstimationHead(config)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        all_states, chosen, rows, cols = self.selected_states(pixel_values, output_hidden_states)
        depth = self.head(self.neck(chosen, rows, cols))
        return ModelOutput(predicted_depth=depth, hidden_states=all_states)


class DPTSemanticSegmentationHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.head_in_index = config.head_in_index
        size = config.fusion_hidden_size
        self.head = nn.Sequential(
            nn.Conv2d(size, size, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(size),
            nn.ReLU(),
            nn.Dropout(config.semantic_classifier_dropout),
            nn.Conv2d(size, config.num_labels, kernel_size=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        )

    def forward(self, maps: list) -> torch.Tensor:
        return self.head(maps[self.head_in_index])


class DPTForSemanticSegmentation(DPTPreTrainedModel):
    """``logits`` (batch, labels, h, w): twice the finest fused map's size (the input's size for
    the default factors). The training-only auxiliary head's weights are read past."""

    ignored_weights = DPTPreTrainedModel.ignored_weights + [r"^dpt\.pooler\.", r"^auxiliary_head\."]

    def __init__(self, config):
        super().__init__(config)
        self.dpt = DPTModel(config, add_pooling_layer=False)
        self.neck = DPTNeck(config)
        self.head = DPTSemanticSegmentationHead(config)

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        all_states, chosen, rows, cols = self.selected_states(pixel_values, output_hidden_states)
        logits = self.head(self.neck(chosen, rows, cols))
        return ModelOutput(logits=logits, hidden_states=all_states)


HEADS = {
    "AutoModel": DPTModel,
    "AutoModelForDepthEstimation": DPTForDepthEstimation,
    "AutoModelForSemanticSegmentation": DPTForSemanticSegmentation,
}
