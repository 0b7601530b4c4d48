"""SAM, Segment Anything (Kirillov et al., 2023, arXiv:2304.02643): a ViT image encoder (windowed
attention with a few global layers, decomposed relative positions, a convolutional neck), a prompt
encoder (points, boxes, masks) and a light mask decoder (a two-way transformer between prompt
tokens and image positions, upscaling convolutions, an IoU head).

Matches transformers' ``models/sam/modeling_sam.py`` for inference. Parameter names are the Hub
checkpoints' (``vision_encoder.layers.0.attn.qkv.weight``, ``prompt_encoder.point_embed.0.weight``,
``mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight``). The image
embedding is computed once (``get_image_embeddings``) and passed back as ``image_embeddings=``
for each batch of prompts, as the mask-generation pipeline does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .clip import sub_config
from .layers import activation

# 1. Config fields read, with the defaults config.json may leave out.
SAM_DEFAULTS = {"vision_config": None, "prompt_encoder_config": None, "mask_decoder_config": None}
VISION_DEFAULTS = {
    "hidden_size": 768, "output_channels": 256, "num_hidden_layers": 12, "num_attention_heads": 12,
    "num_channels": 3, "image_size": 1024, "patch_size": 16, "hidden_act": "gelu",
    "layer_norm_eps": 1e-6, "qkv_bias": True, "mlp_ratio": 4.0, "use_abs_pos": True,
    "use_rel_pos": True, "window_size": 14, "global_attn_indexes": [2, 5, 8, 11],
    "num_pos_feats": 128, "mlp_dim": None, "scale": None,
}
PROMPT_DEFAULTS = {"hidden_size": 256, "image_size": 1024, "patch_size": 16, "mask_input_channels": 16,
                   "num_point_embeddings": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-6}
DECODER_DEFAULTS = {"hidden_size": 256, "hidden_act": "relu", "mlp_dim": 2048, "num_hidden_layers": 2,
                    "num_attention_heads": 8, "attention_downsample_rate": 2,
                    "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
                    "layer_norm_eps": 1e-6}


class SamLayerNorm(nn.LayerNorm):
    """Layer norm over the channels of a (batch, channels, height, width) map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, features):
        return super().forward(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SamMLPBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lin1 = nn.Linear(config.hidden_size, config.mlp_dim)
        self.lin2 = nn.Linear(config.mlp_dim, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.lin2(self.act(self.lin1(hidden_states)))


# 2a. The image encoder.
def relative_positions(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """(q_size, k_size, head_dim): the table's row for each query-key offset, the table resized
    (linearly) when it was trained for another size."""
    length = int(2 * max(q_size, k_size) - 1)
    if table.shape[0] != length:
        table = F.interpolate(table.reshape(1, table.shape[0], -1).transpose(1, 2), size=length,
                              mode="linear").reshape(-1, length).transpose(0, 1)
    q_coords = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[offsets.long()]


class SamVisionAttention(nn.Module):
    def __init__(self, config, window_size: int):
        super().__init__()
        side = config.image_size // config.patch_size if window_size == 0 else window_size
        self.num_heads = config.num_attention_heads
        head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, config.hidden_size * 3, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.use_rel_pos = config.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * side - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * side - 1, head_dim))

    def forward(self, hidden_states):  # (batch, height, width, hidden)
        batch, height, width, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, height * width, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (batch, heads, tokens, head_dim)
        bias = None
        if self.use_rel_pos:
            rows = relative_positions(height, height, self.rel_pos_h)  # (h, h, head_dim)
            cols = relative_positions(width, width, self.rel_pos_w)
            grid = query.reshape(batch * self.num_heads, height, width, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", grid, rows)
            rel_w = torch.einsum("bhwc,wkc->bhwk", grid, cols)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(
                batch, self.num_heads, height * width, height * width)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1))


class SamVisionLayer(nn.Module):
    """Pre-norm block; attention within ``window_size`` windows (0: over the whole map)."""

    def __init__(self, config, window_size: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SamVisionAttention(config, window_size)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = SamMLPBlock(config)
        self.window_size = window_size

    def forward(self, hidden_states):
        states = self.layer_norm1(hidden_states)
        window = self.window_size
        if window > 0:
            batch, height, width, channels = states.shape
            states = F.pad(states, (0, 0, 0, -width % window, 0, -height % window))
            padded_h, padded_w = states.shape[1:3]
            states = states.reshape(batch, padded_h // window, window, padded_w // window, window, channels)
            states = states.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)
            states = self.attn(states)
            states = states.reshape(batch, padded_h // window, padded_w // window, window, window, -1)
            states = states.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, -1)
            states = states[:, :height, :width]
        else:
            states = self.attn(states)
        hidden_states = hidden_states + states
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class SamPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.image_size = config.image_size
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size,
                                    kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixel_values):
        _, channels, height, width = pixel_values.shape
        if channels != self.num_channels or height != self.image_size or width != self.image_size:
            raise InputError(f"SAM reads {self.num_channels}x{self.image_size}x{self.image_size} "
                             f"pixel values, got {channels}x{height}x{width}: prepare the images "
                             "with the model's SamImageProcessor (it resizes and pads them).")
        return self.projection(pixel_values).permute(0, 2, 3, 1)  # (batch, h, w, hidden)


class SamVisionNeck(nn.Module):
    def __init__(self, config):
        super().__init__()
        channels = config.output_channels
        self.conv1 = nn.Conv2d(config.hidden_size, channels, kernel_size=1, bias=False)
        self.layer_norm1 = SamLayerNorm(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.layer_norm2 = SamLayerNorm(channels)

    def forward(self, hidden_states):
        hidden_states = self.layer_norm1(self.conv1(hidden_states.permute(0, 3, 1, 2)))
        return self.layer_norm2(self.conv2(hidden_states))


class SamVisionEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_embed = SamPatchEmbeddings(config)
        side = config.image_size // config.patch_size
        self.pos_embed = (nn.Parameter(torch.zeros(1, side, side, config.hidden_size))
                          if config.use_abs_pos else None)
        self.layers = nn.ModuleList(
            SamVisionLayer(config, 0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.num_hidden_layers))
        self.neck = SamVisionNeck(config)

    def forward(self, pixel_values, global_outputs: list | None = None):
        """-> (batch, output_channels, h, w); each global-attention layer's output (batch, h, w,
        hidden) is appended to ``global_outputs`` when given (SAM-HQ fuses the first)."""
        hidden_states = self.patch_embed(pixel_values)
        if self.pos_embed is not None:
            hidden_states = hidden_states + self.pos_embed
        for layer in self.layers:
            hidden_states = layer(hidden_states)
            if global_outputs is not None and layer.window_size == 0:
                global_outputs.append(hidden_states)
        return self.neck(hidden_states)


# 2b. The prompt encoder.
class SamPositionalEmbedding(nn.Module):
    """Random Fourier features of (x, y) in [0, 1]."""

    def __init__(self, config):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(2, config.num_pos_feats))

    def forward(self, coords, input_shape=None):
        coords = coords.clone()
        if input_shape is not None:
            coords[..., 0] = coords[..., 0] / input_shape[1]
            coords[..., 1] = coords[..., 1] / input_shape[0]
        coords = (2 * coords - 1).to(self.positional_embedding.dtype) @ self.positional_embedding
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


class SamMaskEmbedding(nn.Module):
    def __init__(self, config):
        super().__init__()
        inner = config.mask_input_channels // 4
        self.activation = activation(config.hidden_act)
        self.conv1 = nn.Conv2d(1, inner, kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(inner, config.mask_input_channels, kernel_size=2, stride=2)
        self.conv3 = nn.Conv2d(config.mask_input_channels, config.hidden_size, kernel_size=1)
        self.layer_norm1 = SamLayerNorm(inner, eps=config.layer_norm_eps)
        self.layer_norm2 = SamLayerNorm(inner * 4, eps=config.layer_norm_eps)

    def forward(self, masks):
        hidden_states = self.activation(self.layer_norm1(self.conv1(masks)))
        hidden_states = self.activation(self.layer_norm2(self.conv2(hidden_states)))
        return self.conv3(hidden_states)


class SamPromptEncoder(nn.Module):
    def __init__(self, vision_config, config):
        super().__init__()
        self.shared_embedding = SamPositionalEmbedding(vision_config)
        self.mask_embed = SamMaskEmbedding(config)
        self.no_mask_embed = nn.Embedding(1, config.hidden_size)
        side = config.image_size // config.patch_size
        self.image_embedding_size = (side, side)
        self.input_image_size = config.image_size
        self.point_embed = nn.ModuleList(nn.Embedding(1, config.hidden_size)
                                         for _ in range(config.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, config.hidden_size)

    def embed_points(self, points, labels, pad: bool):
        """Labels: 1 foreground, 0 background, -1 not a point, -10 padding (embedded as zeros)."""
        points = points + 0.5  # the centre of the pixel
        if pad:
            points = torch.cat([points, points.new_zeros(*points.shape[:2], 1, 2)], dim=2)
            labels = torch.cat([labels, -labels.new_ones(*labels.shape[:2], 1)], dim=2)
        size = (self.input_image_size, self.input_image_size)
        embedding = self.shared_embedding(points, size)
        labels = labels[..., None]
        embedding = torch.where(labels == -1, self.not_a_point_embed.weight, embedding)
        embedding = torch.where(labels != -10, embedding, torch.zeros_like(embedding))
        embedding = torch.where(labels == 0, embedding + self.point_embed[0].weight, embedding)
        return torch.where(labels == 1, embedding + self.point_embed[1].weight, embedding)

    def embed_boxes(self, boxes):
        boxes = boxes + 0.5
        corners = boxes.reshape(*boxes.shape[:2], 2, 2)
        embedding = self.shared_embedding(corners, (self.input_image_size, self.input_image_size))
        return torch.cat([embedding[:, :, :1] + self.point_embed[2].weight,
                          embedding[:, :, 1:] + self.point_embed[3].weight], dim=2)

    def forward(self, points=None, labels=None, boxes=None, masks=None):
        sparse, batch = None, 1
        if points is not None:
            batch = points.shape[0]
            sparse = self.embed_points(points, labels, pad=boxes is None)
        if boxes is not None:
            batch = boxes.shape[0]
            corners = self.embed_boxes(boxes)
            sparse = corners if sparse is None else torch.cat([sparse, corners], dim=2)
        if masks is not None:
            dense = self.mask_embed(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse, dense


# 2c. The mask decoder.
class SamAttention(nn.Module):
    """Attention whose inner width is hidden_size / downsample_rate; inputs (batch, points,
    tokens, hidden)."""

    def __init__(self, config, downsample_rate: int):
        super().__init__()
        inner = config.hidden_size // downsample_rate
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, inner)
        self.k_proj = nn.Linear(config.hidden_size, inner)
        self.v_proj = nn.Linear(config.hidden_size, inner)
        self.out_proj = nn.Linear(inner, config.hidden_size)

    def _heads(self, states):
        batch, points, tokens, channels = states.shape
        return states.reshape(batch * points, tokens, self.num_heads, -1).transpose(1, 2)

    def forward(self, query, key, value, attention_similarity=None):
        batch, points = query.shape[:2]
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(query)), self._heads(self.k_proj(key)),
                                             self._heads(self.v_proj(value)), attn_mask=attention_similarity)
        out = out.transpose(1, 2).reshape(batch, points, out.shape[2], -1)
        return self.out_proj(out)


class SamTwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves, tokens to the image, an MLP on the tokens, the image to the
    tokens; each with a residual and a norm."""

    def __init__(self, config, skip_first_layer_pe: bool):
        super().__init__()
        size, eps = config.hidden_size, config.layer_norm_eps
        self.self_attn = SamAttention(config, 1)
        self.layer_norm1 = nn.LayerNorm(size, eps=eps)
        self.cross_attn_token_to_image = SamAttention(config, 2)
        self.layer_norm2 = nn.LayerNorm(size, eps=eps)
        self.mlp = SamMLPBlock(config)
        self.layer_norm3 = nn.LayerNorm(size, eps=eps)
        self.layer_norm4 = nn.LayerNorm(size, eps=eps)
        self.cross_attn_image_to_token = SamAttention(config, 2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe, attention_similarity=None):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            query = queries + query_pe
            queries = queries + self.self_attn(query, query, queries)
        queries = self.layer_norm1(queries)
        queries = queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys,
                                                           attention_similarity)
        queries = self.layer_norm2(queries)
        queries = self.layer_norm3(queries + self.mlp(queries))
        keys = keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries)
        return queries, self.layer_norm4(keys)


class SamTwoWayTransformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(SamTwoWayAttentionBlock(config, skip_first_layer_pe=i == 0)
                                    for i in range(config.num_hidden_layers))
        self.final_attn_token_to_image = SamAttention(config, config.attention_downsample_rate)
        self.layer_norm_final_attn = nn.LayerNorm(config.hidden_size)

    def forward(self, point_embeddings, image_embeddings, image_pe, attention_similarity=None,
                target_embedding=None):
        keys = image_embeddings.flatten(2).transpose(1, 2).unsqueeze(1)  # (batch, 1, h * w, hidden)
        key_pe = image_pe.flatten(2).transpose(1, 2).unsqueeze(1)
        queries = point_embeddings
        for layer in self.layers:
            if target_embedding is not None:
                queries = queries + target_embedding
            queries, keys = layer(queries, keys, point_embeddings, key_pe, attention_similarity)
        queries = queries + self.final_attn_token_to_image(queries + point_embeddings, keys + key_pe, keys)
        return self.layer_norm_final_attn(queries), keys


class SamFeedForward(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.proj_in = nn.Linear(input_dim, hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, output_dim)
        self.layers = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers - 2))

    def forward(self, hidden_states):
        hidden_states = F.relu(self.proj_in(hidden_states))
        for layer in self.layers:
            hidden_states = F.relu(layer(hidden_states))
        return self.proj_out(hidden_states)


class SamMaskDecoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        size = config.hidden_size
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, size)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, size)
        self.transformer = SamTwoWayTransformer(config)
        self.upscale_conv1 = nn.ConvTranspose2d(size, size // 4, kernel_size=2, stride=2)
        self.upscale_conv2 = nn.ConvTranspose2d(size // 4, size // 8, kernel_size=2, stride=2)
        self.upscale_layer_norm = SamLayerNorm(size // 4)
        self.output_hypernetworks_mlps = nn.ModuleList(
            SamFeedForward(size, size, size // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = SamFeedForward(size, config.iou_head_hidden_dim,
                                                  self.num_mask_tokens, config.iou_head_depth)

    def output_tokens(self) -> torch.Tensor:
        """The learned tokens put before the prompt's: IoU, then one per mask."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def run_transformer(self, image_embeddings, image_pe, sparse, dense, attention_similarity=None,
                        target_embedding=None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (the tokens out (batch, points, tokens, hidden), the upscaled image
        (batch * points, hidden / 8, 4h, 4w))."""
        batch = image_embeddings.shape[0]
        points = sparse.shape[1] if sparse is not None else 1
        tokens = self.output_tokens().repeat(batch, points, 1, 1)  # (batch, points, 1 + masks, hidden)
        if sparse is not None:
            tokens = torch.cat([tokens, sparse], dim=2)
        tokens = tokens.to(self.iou_token.weight.dtype)
        image = (image_embeddings + dense).repeat_interleave(points, 0)
        image_pe = image_pe.repeat_interleave(points, 0)
        tokens, keys = self.transformer(tokens, image, image_pe, attention_similarity, target_embedding)
        upscaled = F.gelu(self.upscale_layer_norm(self.upscale_conv1(self.image_for_masks(image, keys))))
        return tokens, F.gelu(self.upscale_conv2(upscaled))

    def image_for_masks(self, image, keys) -> torch.Tensor:
        """The map upscaled into mask features (batch * points, hidden, h, w): the transformer's
        image tokens ``keys`` (batch * points, 1, h * w, hidden); ``image`` is its input."""
        return keys.transpose(2, 3).reshape(image.shape)

    @staticmethod
    def project(hyper, upscaled) -> torch.Tensor:
        """Mask logits (batch, points, masks, 4h, 4w) from the hypernetworks' outputs (batch,
        points, masks, hidden / 8) and the upscaled image (batch * points, hidden / 8, 4h, 4w)."""
        batch, points = hyper.shape[:2]
        _, up_channels, up_h, up_w = upscaled.shape
        upscaled = upscaled.reshape(batch, points, up_channels, up_h * up_w)
        return (hyper @ upscaled).reshape(batch, points, -1, up_h, up_w)

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool,
                attention_similarity=None, target_embedding=None):
        tokens, upscaled = self.run_transformer(image_embeddings, image_pe, sparse, dense,
                                                attention_similarity, target_embedding)
        mask_out = tokens[:, :, 1:1 + self.num_mask_tokens]
        hyper = torch.stack([mlp(mask_out[:, :, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                            dim=2)  # (batch, points, masks, channels / 8)
        masks = self.project(hyper, upscaled)
        iou = self.iou_prediction_head(tokens[:, :, 0])
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, :, chosen], iou[:, :, chosen]


# 3. The model.
def check_prompts(model: str, pixel_values, image_embeddings, input_points, input_boxes) -> None:
    """The forward's inputs checked (SAM and SAM 2): one image source, prompts' shapes."""
    if (pixel_values is None) == (image_embeddings is None):
        raise InputError(f"{model} takes exactly one of pixel_values and image_embeddings.")
    if input_points is not None and input_points.dim() != 4:
        raise InputError("input_points must be 4-D: (images, point batches, points, 2); got "
                         f"shape {tuple(input_points.shape)}.")
    if input_boxes is not None and input_boxes.dim() != 3:
        raise InputError(f"input_boxes must be 3-D: (images, boxes, 4); got shape "
                         f"{tuple(input_boxes.shape)}.")
    if input_points is not None and input_boxes is not None and \
            input_points.shape[1] != input_boxes.shape[1]:
        raise InputError(f"Give one box per point batch: {input_points.shape[1]} point batches "
                         f"but {input_boxes.shape[1]} boxes.")


class SamModel(PreTrainedModel):
    """``forward(pixel_values or image_embeddings, input_points, input_labels, input_boxes,
    input_masks, multimask_output)`` -> ``iou_scores`` (batch, points, masks) and
    ``pred_masks`` (batch, points, masks, 4h, 4w) as low-resolution logits."""

    config_defaults = SAM_DEFAULTS
    main_input_name = "pixel_values"
    tied_weights = {"prompt_encoder.shared_embedding.positional_embedding":
                    "shared_image_embedding.positional_embedding"}

    def __init__(self, config):
        super().__init__(config)
        vision = sub_config(config.vision_config, VISION_DEFAULTS)
        if vision.get("mlp_dim") is None:
            vision.mlp_dim = int(vision.hidden_size * vision.mlp_ratio)
        self.vision_config = vision
        self.prompt_config = sub_config(config.prompt_encoder_config, PROMPT_DEFAULTS)
        self.decoder_config = sub_config(config.mask_decoder_config, DECODER_DEFAULTS)
        self.shared_image_embedding = SamPositionalEmbedding(vision)
        self.vision_encoder = SamVisionEncoder(vision)
        self.prompt_encoder = SamPromptEncoder(vision, self.prompt_config)
        self.mask_decoder = SamMaskDecoder(self.decoder_config)

    def image_wide_positional_embeddings(self) -> torch.Tensor:
        size = self.prompt_config.image_size // self.prompt_config.patch_size
        table = self.shared_image_embedding.positional_embedding
        grid = torch.ones((size, size), device=table.device, dtype=table.dtype)
        y = (grid.cumsum(dim=0) - 0.5) / size
        x = (grid.cumsum(dim=1) - 0.5) / size
        return self.shared_image_embedding(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]

    # Forward arguments passed on to the mask decoder (SAM-HQ's hq_token_only, ...).
    decoder_options: tuple[str, ...] = ()

    def image_features(self, pixel_values) -> tuple[torch.Tensor, dict]:
        """(the image embeddings, more mask-decoder inputs computed with them: none for SAM)."""
        weight = self.vision_encoder.patch_embed.projection.weight
        return self.vision_encoder(pixel_values.to(weight.dtype)), {}

    @torch.no_grad()
    def get_image_embeddings(self, pixel_values, **unused) -> torch.Tensor:
        return self.image_features(pixel_values)[0]

    def forward(self, pixel_values=None, input_points=None, input_labels=None, input_boxes=None,
                input_masks=None, image_embeddings=None, multimask_output: bool = True,
                attention_similarity=None, target_embedding=None, **unused) -> ModelOutput:
        check_prompts(type(self).__name__, pixel_values, image_embeddings, input_points, input_boxes)
        extra = {name: unused[name] for name in self.decoder_options if name in unused}
        if pixel_values is not None:
            with torch.no_grad():
                image_embeddings, computed = self.image_features(pixel_values)
            extra.update(computed)
        batch = image_embeddings.shape[0]
        image_pe = self.image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        if input_points is not None:
            if input_labels is None:
                input_labels = torch.ones_like(input_points[..., 0], dtype=torch.int)
            if input_points.shape[0] != batch:
                raise InputError(f"{input_points.shape[0]} images of points for {batch} images: "
                                 "input_points is (images, point batches, points, 2).")
        sparse, dense = self.prompt_encoder(input_points, input_labels, input_boxes, input_masks)
        masks, iou = self.mask_decoder(image_embeddings, image_pe, sparse, dense, multimask_output,
                                       attention_similarity, target_embedding, **extra)
        return ModelOutput(iou_scores=iou, pred_masks=masks)


HEADS = {
    "AutoModel": SamModel,
    "AutoModelForMaskGeneration": SamModel,
}
