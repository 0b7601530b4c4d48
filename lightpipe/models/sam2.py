"""SAM 2 for images (Ravi et al., 2024, arXiv:2408.00714): a Hiera image encoder (multi-scale
windowed attention, query pooling between stages) with an FPN neck; the top-level features
(plus ``no_memory_embedding``) go through SAM's two-way transformer, the two higher-resolution
levels are added in the decoder's upscaling path. The decoder also predicts an object score,
its IoU head ends in a sigmoid, and a single-mask request falls back to the best multimask
output when the single mask is unstable.

Matches transformers' ``models/sam2/modeling_sam2.py`` (``Sam2Model``) for inference; parameter
names are the Hub checkpoints' (``vision_encoder.backbone.blocks.0.attn.qkv.weight``,
``vision_encoder.neck.convs.0.weight``, ``mask_decoder.conv_s0.weight``). SAM's prompt encoder,
mask embedding, two-way attention blocks and feed-forward heads are reused from ``sam.py``.
Video (memory attention, memory encoder, ``Sam2VideoModel``) is not implemented: checkpoints
that carry those weights load, the weights are dropped as the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .clip import sub_config
from .layers import activation
from .sam import (SamAttention, SamFeedForward, SamLayerNorm, SamMaskDecoder, SamMaskEmbedding,
                  SamPositionalEmbedding, SamPromptEncoder, SamTwoWayAttentionBlock,
                  SamTwoWayTransformer, check_prompts)

# 1. Config fields read, with the defaults config.json may leave out.
SAM2_DEFAULTS = {"vision_config": None, "prompt_encoder_config": None, "mask_decoder_config": None}
HIERA_DEFAULTS = {
    "hidden_size": 96, "num_channels": 3, "patch_kernel_size": [7, 7], "patch_stride": [4, 4],
    "patch_padding": [3, 3], "query_stride": [2, 2],
    "window_positional_embedding_background_size": [7, 7], "num_query_pool_stages": 3,
    "blocks_per_stage": [1, 2, 7, 2], "embed_dim_per_stage": [96, 192, 384, 768],
    "num_attention_heads_per_stage": [1, 2, 4, 8], "window_size_per_stage": [8, 4, 14, 7],
    "global_attention_blocks": [5, 7, 9], "mlp_ratio": 4.0, "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
}
VISION_DEFAULTS = {"backbone_config": None, "backbone_channel_list": [768, 384, 192, 96],
                   "fpn_hidden_size": 256, "fpn_kernel_size": 1, "fpn_stride": 1, "fpn_padding": 0,
                   "fpn_top_down_levels": [2, 3], "num_feature_levels": 3}
PROMPT_DEFAULTS = {"hidden_size": 256, "image_size": 1024, "patch_size": 16, "mask_input_channels": 16,
                   "num_point_embeddings": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-6, "scale": 1}
DECODER_DEFAULTS = {"hidden_size": 256, "hidden_act": "gelu", "mlp_dim": 2048, "num_hidden_layers": 2,
                    "num_attention_heads": 8, "attention_downsample_rate": 2,
                    "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
                    "dynamic_multimask_via_stability": True,
                    "dynamic_multimask_stability_delta": 0.05,
                    "dynamic_multimask_stability_thresh": 0.98,
                    "layer_norm_eps": 1e-6}  # not in SAM 2's config; read by SAM's constructor only


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Sam2FeedForward(SamFeedForward):
    """SAM's feed-forward stack with a chosen activation and an optional sigmoid on the output."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 act: str = "relu", sigmoid_output: bool = False):
        super().__init__(input_dim, hidden_dim, output_dim, num_layers)
        self.act = activation(act)
        self.sigmoid_output = sigmoid_output

    def forward(self, hidden_states):
        hidden_states = self.act(self.proj_in(hidden_states))
        for layer in self.layers:
            hidden_states = self.act(layer(hidden_states))
        hidden_states = self.proj_out(hidden_states)
        return torch.sigmoid(hidden_states) if self.sigmoid_output else hidden_states


# 2a. The Hiera image encoder and its FPN neck.
def _pool(states, stride):
    """Max-pool a (batch, h, w, channels) map by ``stride`` (None: unchanged)."""
    if stride is None:
        return states
    return F.max_pool2d(states.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)


def window_partition(states, window: int):
    """(batch, h, w, c) -> (batch * windows, window, window, c), zero-padded at the bottom and right."""
    batch, height, width, channels = states.shape
    states = F.pad(states, (0, 0, 0, -width % window, 0, -height % window))
    padded_h, padded_w = states.shape[1:3]
    states = states.reshape(batch, padded_h // window, window, padded_w // window, window, channels)
    return states.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels), (padded_h, padded_w)


def window_unpartition(windows, window: int, padded: tuple[int, int], size: tuple[int, int]):
    padded_h, padded_w = padded
    batch = windows.shape[0] // ((padded_h // window) * (padded_w // window))
    states = windows.reshape(batch, padded_h // window, padded_w // window, window, window, -1)
    states = states.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, -1)
    return states[:, :size[0], :size[1]]


class Sam2MultiScaleAttention(nn.Module):
    """Attention over a (batch, h, w, dim) map; the queries max-pooled by ``query_stride`` (the
    output map is smaller then)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, query_stride):
        super().__init__()
        self.num_heads = num_heads
        self.query_stride = query_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, states):
        batch, height, width, _ = states.shape
        qkv = self.qkv(states).reshape(batch, height * width, 3, self.num_heads, -1)
        query, key, value = qkv.unbind(2)  # (batch, tokens, heads, head_dim)
        if self.query_stride:
            query = _pool(query.reshape(batch, height, width, -1), self.query_stride)
            height, width = query.shape[1:3]
            query = query.reshape(batch, height * width, self.num_heads, -1)
        out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


class Sam2MultiScaleBlock(nn.Module):
    def __init__(self, config, stage: int, index: int, total_index: int):
        super().__init__()
        first = stage > 0 and index == 0  # a stage's first block changes width and pools
        self.dim = config.embed_dim_per_stage[stage - 1] if first else config.embed_dim_per_stage[stage]
        self.dim_out = config.embed_dim_per_stage[stage]
        window = config.window_size_per_stage[stage - 1] if first else config.window_size_per_stage[stage]
        self.window_size = 0 if total_index in config.global_attention_blocks else window
        self.query_stride = (_pair(config.query_stride)
                             if 0 < stage <= config.num_query_pool_stages and index == 0 else None)
        self.layer_norm1 = nn.LayerNorm(self.dim, eps=config.layer_norm_eps)
        self.attn = Sam2MultiScaleAttention(self.dim, self.dim_out, config.num_attention_heads_per_stage[stage],
                                            self.query_stride)
        self.layer_norm2 = nn.LayerNorm(self.dim_out, eps=config.layer_norm_eps)
        self.mlp = Sam2FeedForward(self.dim_out, int(self.dim_out * config.mlp_ratio), self.dim_out, 2,
                                   act=config.hidden_act)
        if self.dim != self.dim_out:
            self.proj = nn.Linear(self.dim, self.dim_out)

    def forward(self, hidden_states):
        residual = hidden_states
        states = self.layer_norm1(hidden_states)
        if self.dim != self.dim_out:
            residual = _pool(self.proj(states), self.query_stride)
        window = self.window_size
        if window > 0:
            size = states.shape[1:3]
            states, padded = window_partition(states, window)
        states = self.attn(states)
        if window > 0:
            if self.query_stride:  # the windows shrank with the pooled queries
                window = window // self.query_stride[0]
                size = residual.shape[1:3]
                padded = (size[0] + -size[0] % window, size[1] + -size[1] % window)
            states = window_unpartition(states, window, padded, size)
        hidden_states = residual + states
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class Sam2PatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size,
                                    kernel_size=_pair(config.patch_kernel_size),
                                    stride=_pair(config.patch_stride), padding=_pair(config.patch_padding))

    def forward(self, pixel_values):
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise InputError(f"SAM 2 reads pixel values shaped (images, {self.num_channels}, height, "
                             f"width), got {tuple(pixel_values.shape)}: prepare the images with the "
                             "model's Sam2ImageProcessor.")
        return self.projection(pixel_values.to(self.projection.weight.dtype)).permute(0, 2, 3, 1)


class Sam2HieraDetModel(nn.Module):
    """Hiera: patch embedding, a background position embedding resized to the map plus a tiled
    window embedding, then the stages; returns each stage's last output."""

    def __init__(self, config):
        super().__init__()
        self.patch_embed = Sam2PatchEmbeddings(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.hidden_size,
                                                  *config.window_positional_embedding_background_size))
        window = config.window_size_per_stage[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, config.hidden_size, window, window))
        self.blocks = nn.ModuleList()
        self.stage_ends = []
        for stage, count in enumerate(config.blocks_per_stage):
            for index in range(count):
                self.blocks.append(Sam2MultiScaleBlock(config, stage, index, len(self.blocks)))
            self.stage_ends.append(len(self.blocks) - 1)

    def position_embedding(self, height: int, width: int):
        window = self.pos_embed_window.shape[-1]
        if height % window or width % window:
            raise InputError(f"SAM 2's Hiera needs a patch map divisible by its window "
                             f"{window}; got {height}x{width}: resize the images to the size in "
                             "the model's image processor.")
        embed = F.interpolate(self.pos_embed, size=(height, width), mode="bicubic")
        embed = embed + self.pos_embed_window.tile(1, 1, height // window, width // window)
        return embed.permute(0, 2, 3, 1)

    def forward(self, pixel_values) -> list:
        states = self.patch_embed(pixel_values)
        states = states + self.position_embedding(*states.shape[1:3])
        stages = []
        for index, block in enumerate(self.blocks):
            states = block(states)
            if index in self.stage_ends:
                stages.append(states)
        return stages


class Sam2VisionNeck(nn.Module):
    """FPN: a 1x1 convolution per stage; the levels in ``fpn_top_down_levels`` also get the
    coarser level upsampled (nearest, x2)."""

    def __init__(self, config):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, config.fpn_hidden_size, kernel_size=config.fpn_kernel_size,
                      stride=config.fpn_stride, padding=config.fpn_padding)
            for channels in config.backbone_channel_list)
        self.top_down_levels = list(config.fpn_top_down_levels)

    def forward(self, stages: list) -> list:
        last = len(self.convs) - 1
        levels, previous = [], None
        for index in range(last, -1, -1):  # coarse to fine
            lateral = self.convs[last - index](stages[index].permute(0, 3, 1, 2))
            if index in self.top_down_levels and index != last:
                upsampled = F.interpolate(previous.float(), scale_factor=2.0, mode="nearest")
                lateral = lateral + upsampled.to(lateral.dtype)
            previous = lateral
            levels.append(lateral)
        return levels  # coarse to fine


class Sam2VisionEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.backbone = Sam2HieraDetModel(config.backbone_config)
        self.neck = Sam2VisionNeck(config)
        self.num_feature_levels = config.num_feature_levels

    def forward(self, pixel_values) -> list:
        """The finest ``num_feature_levels`` FPN levels, finest first."""
        return self.neck(self.backbone(pixel_values))[-self.num_feature_levels:][::-1]


# 2b. The prompt encoder.
class Sam2PositionalEmbedding(SamPositionalEmbedding):
    """SAM's random Fourier features, the table a buffer of (2, hidden / 2) in the checkpoint."""

    def __init__(self, config):
        nn.Module.__init__(self)
        self.register_buffer("positional_embedding", torch.zeros(2, config.hidden_size // 2))


class Sam2PromptEncoder(SamPromptEncoder):
    def __init__(self, config):
        nn.Module.__init__(self)
        self.shared_embedding = Sam2PositionalEmbedding(config)
        self.mask_embed = SamMaskEmbedding(config)
        self.no_mask_embed = nn.Embedding(1, config.hidden_size)
        side = config.image_size // config.patch_size
        self.image_embedding_size = (side, side)
        self.mask_input_size = (4 * side, 4 * side)
        self.input_image_size = config.image_size
        self.point_embed = nn.Embedding(config.num_point_embeddings, config.hidden_size)
        self.not_a_point_embed = nn.Embedding(1, config.hidden_size)

    def embed_points(self, points, labels, pad: bool):
        """Labels: >= 0 the point embedding of that index, -1 not a point, -10 padding (zeros)."""
        points = points + 0.5
        if pad:
            points = F.pad(points, (0, 0, 0, 1), value=0)
            labels = F.pad(labels, (0, 1), value=-1)
        size = (self.input_image_size, self.input_image_size)
        embedding = self.shared_embedding(points, size)
        embedding = torch.where(labels[..., None] == -1, self.not_a_point_embed.weight, embedding)
        embedding = torch.where(labels[..., None] != -10, embedding, torch.zeros_like(embedding))
        return embedding + self.point_embed(labels.clamp(min=0)) * (labels >= 0).unsqueeze(-1)

    def embed_boxes(self, boxes):
        """Two corners (point embeddings 2 and 3) and a not-a-point third token."""
        corners = F.pad((boxes + 0.5).reshape(*boxes.shape[:2], 2, 2), (0, 0, 0, 1), value=0)
        embedding = self.shared_embedding(corners, (self.input_image_size, self.input_image_size))
        weight = self.point_embed.weight
        return torch.cat([embedding[:, :, :1] + weight[2], embedding[:, :, 1:2] + weight[3],
                          self.not_a_point_embed.weight.expand_as(embedding[:, :, 2:])], dim=2)


# 2c. The mask decoder.
class Sam2Attention(SamAttention):
    """SAM's attention; the output projection is named ``o_proj`` in SAM 2 checkpoints."""

    def __init__(self, config, downsample_rate: int):
        super().__init__(config, downsample_rate)
        self.o_proj = self._modules.pop("out_proj")

    @property
    def out_proj(self):
        return self.o_proj


class Sam2TwoWayAttentionBlock(SamTwoWayAttentionBlock):
    def __init__(self, config, skip_first_layer_pe: bool):
        nn.Module.__init__(self)
        size, rate = config.hidden_size, config.attention_downsample_rate
        self.self_attn = Sam2Attention(config, 1)
        self.layer_norm1 = nn.LayerNorm(size)
        self.cross_attn_token_to_image = Sam2Attention(config, rate)
        self.layer_norm2 = nn.LayerNorm(size)
        self.mlp = SamFeedForward(size, config.mlp_dim, size, config.num_hidden_layers)
        self.layer_norm3 = nn.LayerNorm(size)
        self.layer_norm4 = nn.LayerNorm(size)
        self.cross_attn_image_to_token = Sam2Attention(config, rate)
        self.skip_first_layer_pe = skip_first_layer_pe


class Sam2TwoWayTransformer(SamTwoWayTransformer):
    def __init__(self, config):
        nn.Module.__init__(self)
        self.layers = nn.ModuleList(Sam2TwoWayAttentionBlock(config, skip_first_layer_pe=i == 0)
                                    for i in range(config.num_hidden_layers))
        self.final_attn_token_to_image = Sam2Attention(config, config.attention_downsample_rate)
        self.layer_norm_final_attn = nn.LayerNorm(config.hidden_size)


class Sam2MaskDecoder(SamMaskDecoder):
    """SAM's decoder plus an object-score token and head, the two finer FPN levels added while
    upscaling, a sigmoid IoU head and the dynamic single-mask choice."""

    def __init__(self, config):
        super().__init__(config)  # SAM's tokens, upscaling and hypernetworks; then SAM 2's parts
        size = config.hidden_size
        self.transformer = Sam2TwoWayTransformer(config)
        self.iou_prediction_head = Sam2FeedForward(size, config.iou_head_hidden_dim, self.num_mask_tokens,
                                                   config.iou_head_depth, sigmoid_output=True)
        self.conv_s0 = nn.Conv2d(size, size // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(size, size // 4, kernel_size=1)
        self.obj_score_token = nn.Embedding(1, size)
        self.pred_obj_score_head = SamFeedForward(size, size, 1, 3)
        self.dynamic = config.dynamic_multimask_via_stability
        self.stability_delta = config.dynamic_multimask_stability_delta
        self.stability_thresh = config.dynamic_multimask_stability_thresh

    def output_tokens(self) -> torch.Tensor:
        """The learned tokens put before the prompt's: object score, IoU, one per mask."""
        return torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool,
                high_resolution_features=None, attention_similarity=None, target_embedding=None):
        batch, channels, height, width = image_embeddings.shape
        points = sparse.shape[1]
        tokens = self.output_tokens().repeat(batch, points, 1, 1)
        if sparse.shape[0] != 0:
            tokens = torch.cat([tokens, sparse], dim=2)
        tokens = tokens.to(self.iou_token.weight.dtype)
        image = (image_embeddings + dense).repeat_interleave(points, 0)
        image_pe = image_pe.repeat_interleave(points, 0)
        tokens, image = self.transformer(tokens, image, image_pe, attention_similarity, target_embedding)
        mask_out = tokens[:, :, 2:2 + self.num_mask_tokens]
        image = image.transpose(2, 3).reshape(batch * points, channels, height, width)
        fine, mid = (level.repeat_interleave(points, 0) for level in high_resolution_features)
        upscaled = F.gelu(self.upscale_layer_norm(self.upscale_conv1(image) + mid))
        upscaled = F.gelu(self.upscale_conv2(upscaled) + fine)
        hyper = torch.stack([mlp(mask_out[:, :, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                            dim=2)
        masks = self.project(hyper, upscaled)
        iou = self.iou_prediction_head(tokens[:, :, 1])
        object_scores = self.pred_obj_score_head(tokens[:, :, 0])
        if multimask_output:
            masks, iou = masks[:, :, 1:], iou[:, :, 1:]
        elif self.dynamic and not self.training:
            masks, iou = self.stable_single_mask(masks, iou)
        else:
            masks, iou = masks[:, :, :1], iou[:, :, :1]
        return masks, iou, object_scores

    def stable_single_mask(self, masks, iou):
        """The single-mask output where it is stable (the IoU of its mask cut at +delta and
        -delta reaches the threshold), else the multimask output with the best predicted IoU."""
        best = iou[:, :, 1:].argmax(dim=-1, keepdim=True)  # (batch, points, 1)
        best_masks = torch.gather(masks[:, :, 1:], 2,
                                  best[..., None, None].expand(-1, -1, 1, *masks.shape[-2:]))
        best_iou = torch.gather(iou[:, :, 1:], 2, best)
        single = masks[:, :, :1].flatten(-2)
        inner = (single > self.stability_delta).sum(-1).float()
        outer = (single > -self.stability_delta).sum(-1).float()
        stable = torch.where(outer > 0, inner / outer, 1.0) >= self.stability_thresh  # (batch, points, 1)
        return (torch.where(stable[..., None, None], masks[:, :, :1], best_masks),
                torch.where(stable, iou[:, :, :1], best_iou))


# 3. The model.
class Sam2Model(PreTrainedModel):
    """``forward(pixel_values or image_embeddings, input_points, input_labels, input_boxes,
    input_masks, multimask_output)`` -> ``iou_scores`` (batch, points, masks), ``pred_masks``
    (batch, points, masks, 4h, 4w) low-resolution logits, ``object_score_logits`` (batch,
    points, 1) and ``image_embeddings`` (the three FPN levels, finest first)."""

    config_defaults = SAM2_DEFAULTS
    main_input_name = "pixel_values"
    ignored_weights = [r"^memory_", r"^mask_downsample", r"^object_pointer_proj",
                       r"^temporal_positional_encoding_projection_layer", r"^no_memory_positional_encoding",
                       r"^no_object_pointer", r"^occlusion_spatial_embedding_parameter"]

    def __init__(self, config):
        super().__init__(config)
        vision = sub_config(config.vision_config, VISION_DEFAULTS)
        vision.backbone_config = sub_config(vision.backbone_config, HIERA_DEFAULTS)
        self.vision_config = vision
        self.prompt_config = sub_config(config.prompt_encoder_config, PROMPT_DEFAULTS)
        self.decoder_config = sub_config(config.mask_decoder_config, DECODER_DEFAULTS)
        self.shared_image_embedding = Sam2PositionalEmbedding(self.prompt_config)
        self.vision_encoder = Sam2VisionEncoder(vision)
        self.prompt_encoder = Sam2PromptEncoder(self.prompt_config)
        self.mask_decoder = Sam2MaskDecoder(self.decoder_config)
        self.no_memory_embedding = nn.Parameter(torch.zeros(1, 1, vision.fpn_hidden_size))

    def _adapt_state(self, state: dict) -> dict:
        """transformers 4.5x tied the prompt encoder's table to the image one and did not save
        it (the Hub's SAM 2.1 folders lack it); 5.x saves both."""
        state = super()._adapt_state(state)
        source = "shared_image_embedding.positional_embedding"
        target = "prompt_encoder.shared_embedding.positional_embedding"
        if target not in state and source in state:
            state[target] = state[source]
        return state

    def image_wide_positional_embeddings(self) -> torch.Tensor:
        height, width = self.prompt_encoder.image_embedding_size
        table = self.shared_image_embedding.positional_embedding
        grid = torch.ones((height, width), device=table.device, dtype=table.dtype)
        y = (grid.cumsum(dim=0) - 0.5) / height
        x = (grid.cumsum(dim=1) - 0.5) / width
        return self.shared_image_embedding(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]

    @torch.no_grad()
    def get_image_embeddings(self, pixel_values, **unused) -> list:
        """The FPN levels, finest first: the finest two through ``conv_s0`` / ``conv_s1``, the
        last with ``no_memory_embedding`` added (an image without video memory)."""
        levels = self.vision_encoder(pixel_values)
        levels[0] = self.mask_decoder.conv_s0(levels[0])
        levels[1] = self.mask_decoder.conv_s1(levels[1])
        levels[-1] = levels[-1] + self.no_memory_embedding.reshape(1, -1, 1, 1)
        return levels

    def forward(self, pixel_values=None, input_points=None, input_labels=None, input_boxes=None,
                input_masks=None, image_embeddings=None, multimask_output: bool = True,
                attention_similarity=None, target_embedding=None, **unused) -> ModelOutput:
        check_prompts(type(self).__name__, pixel_values, image_embeddings, input_points, input_boxes)
        if pixel_values is not None:
            image_embeddings = self.get_image_embeddings(pixel_values)
        if not isinstance(image_embeddings, (list, tuple)) or len(image_embeddings) != 3:
            raise InputError("SAM 2's image_embeddings are the list of three feature maps that "
                             "get_image_embeddings returns.")
        top = image_embeddings[-1]
        batch = top.shape[0]
        image_pe = self.image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        if input_points is not None and input_labels is None:
            input_labels = torch.ones_like(input_points[..., 0], dtype=torch.int)
        if input_points is None and input_boxes is None:  # no prompt: one not-a-point
            input_points = torch.zeros(batch, 1, 1, 2, dtype=top.dtype, device=top.device)
            input_labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=top.device)
        if input_points is not None and input_points.shape[0] != batch:
            raise InputError(f"{input_points.shape[0]} images of points for {batch} images: "
                             "input_points is (images, point batches, points, 2).")
        if input_masks is not None and tuple(input_masks.shape[-2:]) != self.prompt_encoder.mask_input_size:
            input_masks = F.interpolate(input_masks.float(), size=self.prompt_encoder.mask_input_size,
                                        mode="bilinear", align_corners=False, antialias=True).to(input_masks.dtype)
        sparse, dense = self.prompt_encoder(input_points, input_labels, input_boxes, input_masks)
        masks, iou, object_scores = self.mask_decoder(top, image_pe, sparse, dense, multimask_output,
                                                      image_embeddings[:-1], attention_similarity,
                                                      target_embedding)
        return ModelOutput(iou_scores=iou, pred_masks=masks, object_score_logits=object_scores,
                           image_embeddings=list(image_embeddings))


HEADS = {
    "AutoModel": Sam2Model,
    "AutoModelForMaskGeneration": Sam2Model,
}
