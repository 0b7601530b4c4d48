"""RT-DETR (Zhao et al., 2023, "DETRs Beat YOLOs on Real-time Object Detection", arXiv:2304.08069).

Matches transformers' ``models/rt_detr/modeling_rt_detr.py`` for inference:
- a ResNet-vd backbone (``rt_detr_resnet.py``) whose chosen stages are projected to
  ``encoder_hidden_dim`` channels;
- the hybrid encoder: attention within the coarsest map only (AIFI, with 2-D sine positions),
  then a top-down (FPN) and a bottom-up (PAN) path of CSP blocks of RepVGG convolutions;
- query selection: every encoder position scored against anchors (one grid per level), the
  ``num_queries`` best positions give the decoder's first queries and reference boxes;
- the decoder: self-attention among queries, multi-scale deformable attention into the maps
  (bilinear sampling with ``grid_sample``, as the reference's pytorch path), and a box refined by
  each layer; the head's logits and boxes are the last layer's.
Parameter names are the Hub checkpoints' (``model.encoder.encoder.0.layers.0.self_attn.out_proj``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation, attention, merge_heads, split_heads
from .detr import freeze_batch_norms
from .resnet import RESNET_DEFAULTS
from .rt_detr_resnet import RTDetrResNetEmbeddings, RTDetrResNetEncoder
from .vision_layers import BatchNormMixin, align_out_features
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
RT_DETR_DEFAULTS = {
    "layer_norm_eps": 1e-5, "batch_norm_eps": 1e-5, "backbone_config": None,
    "use_timm_backbone": False, "encoder_hidden_dim": 256, "encoder_in_channels": [512, 1024, 2048],
    "feat_strides": [8, 16, 32], "encoder_layers": 1, "encoder_ffn_dim": 1024,
    "encoder_attention_heads": 8, "encode_proj_layers": [2], "positional_encoding_temperature": 10000,
    "encoder_activation_function": "gelu", "activation_function": "silu", "eval_size": None,
    "normalize_before": False, "hidden_expansion": 1.0, "d_model": 256, "num_queries": 300,
    "decoder_in_channels": [256, 256, 256], "decoder_ffn_dim": 1024, "num_feature_levels": 3,
    "decoder_n_points": 4, "decoder_layers": 6, "decoder_attention_heads": 8,
    "decoder_activation_function": "relu", "num_denoising": 100, "learn_initial_query": False,
    "anchor_image_size": None, "num_channels": 3, "freeze_backbone_batch_norms": True,
}
# the reference's backbone when config.json names none (ResNet-50-vd, stages 2-4)
DEFAULT_BACKBONE = {"model_type": "rt_detr_resnet", "out_indices": [2, 3, 4]}


def backbone_config(config) -> Config:
    nested = dict(config.backbone_config or DEFAULT_BACKBONE)
    if config.use_timm_backbone or nested.get("model_type", "rt_detr_resnet") != "rt_detr_resnet":
        raise UnsupportedModelError(f"RT-DETR with a {nested.get('model_type') or 'timm'} backbone "
                                    "is not supported; lightpipe reads rt_detr_resnet backbones.")
    result = Config(**nested)
    result.set_defaults(RESNET_DEFAULTS)
    align_out_features(result)
    return result


# 2. Modules: backbone.
class ResNetVd(nn.Module):
    """The backbone's maps at its ``out_features`` stages (batch norms frozen, as stored)."""

    def __init__(self, config):
        super().__init__()
        self.embedder = RTDetrResNetEmbeddings(config)
        self.encoder = RTDetrResNetEncoder(config)
        names = config.stage_names
        self.picked = [names.index(name) for name in config.out_features]
        sizes = [config.embedding_size] + list(config.hidden_sizes)
        self.channels = [sizes[i] for i in self.picked]

    def forward(self, pixel_values):
        _, maps = self.encoder(self.embedder(pixel_values))
        return [maps[i] for i in self.picked]


class ConvEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = ResNetVd(backbone_config(config))
        if config.freeze_backbone_batch_norms:  # (the stored statistics and affine, no counter)
            freeze_batch_norms(self.model)


def conv_norm(in_channels: int, out_channels: int, kernel: int, stride: int, eps: float,
              padding: int | None = None) -> nn.Sequential:
    """``nn.Sequential(conv, batch norm)``: the Hub's ``<name>.0`` / ``<name>.1`` layout."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, bias=False,
                                   padding=(kernel - 1) // 2 if padding is None else padding),
                         nn.BatchNorm2d(out_channels, eps=eps))


# 2. Modules: hybrid encoder.
class ConvNormLayer(nn.Module):
    def __init__(self, config, in_channels, out_channels, kernel, stride, padding=None, act=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, bias=False,
                              padding=(kernel - 1) // 2 if padding is None else padding)
        self.norm = nn.BatchNorm2d(out_channels, eps=config.batch_norm_eps)
        self.act = activation(act) if act else None

    def forward(self, hidden_state):
        hidden_state = self.norm(self.conv(hidden_state))
        return self.act(hidden_state) if self.act is not None else hidden_state


class RepVggBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        channels = int(config.encoder_hidden_dim * config.hidden_expansion)
        self.conv1 = ConvNormLayer(config, channels, channels, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(config, channels, channels, 1, 1, padding=0)
        self.act = activation(config.activation_function)

    def forward(self, hidden_state):
        return self.act(self.conv1(hidden_state) + self.conv2(hidden_state))


class CSPRepLayer(nn.Module):
    """Two 1x1 branches of the concatenated maps, one through three RepVGG blocks, summed."""

    def __init__(self, config):
        super().__init__()
        out_channels, act = config.encoder_hidden_dim, config.activation_function
        hidden = int(out_channels * config.hidden_expansion)
        self.conv1 = ConvNormLayer(config, out_channels * 2, hidden, 1, 1, act=act)
        self.conv2 = ConvNormLayer(config, out_channels * 2, hidden, 1, 1, act=act)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(config) for _ in range(3)])
        self.conv3 = (ConvNormLayer(config, hidden, out_channels, 1, 1, act=act)
                      if hidden != out_channels else nn.Identity())

    def forward(self, hidden_state):
        return self.conv3(self.bottlenecks(self.conv1(hidden_state)) + self.conv2(hidden_state))


class SelfAttention(nn.Module):
    """Multi-head attention; the positions are added to queries and keys, not values."""

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, hidden_states, positions=None):
        query_key = hidden_states if positions is None else hidden_states + positions
        query = split_heads(self.q_proj(query_key), self.num_heads)
        key = split_heads(self.k_proj(query_key), self.num_heads)
        value = split_heads(self.v_proj(hidden_states), self.num_heads)
        return self.out_proj(merge_heads(attention(query, key, value, None)))


class EncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.encoder_hidden_dim
        self.pre_norm = config.normalize_before
        self.self_attn = SelfAttention(hidden, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(hidden, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, hidden)
        self.act = activation(config.encoder_activation_function)
        self.final_layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, hidden_states, positions):
        if self.pre_norm:
            hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states), positions)
            normed = self.final_layer_norm(hidden_states)
            return normed + self.fc2(self.act(self.fc1(normed)))
        hidden_states = self.self_attn_layer_norm(hidden_states + self.self_attn(hidden_states, positions))
        return self.final_layer_norm(hidden_states + self.fc2(self.act(self.fc1(hidden_states))))


def sine_positions(height: int, width: int, dim: int, temperature: float, dtype) -> torch.Tensor:
    """(1, height * width, dim): [sin y | cos y | sin x | cos x], computed in float64."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    grid_y, grid_x = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                                    torch.arange(width, dtype=torch.float64), indexing="ij")
    along_y, along_x = grid_y.flatten().outer(omega), grid_x.flatten().outer(omega)
    return torch.cat([along_y.sin(), along_y.cos(), along_x.sin(), along_x.cos()], 1)[None].to(dtype)


class AIFILayer(nn.Module):
    """Self-attention over one map's positions (the Hub's ``encoder.encoder.<i>``)."""

    def __init__(self, config):
        super().__init__()
        self.dim, self.temperature = config.encoder_hidden_dim, config.positional_encoding_temperature
        self.with_positions = config.eval_size is None  # (the reference drops them when set)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))

    def forward(self, feature_map):
        batch, channels, height, width = feature_map.shape
        hidden_states = feature_map.flatten(2).transpose(1, 2)  # (batch, h * w, channels)
        positions = (sine_positions(height, width, self.dim, self.temperature, hidden_states.dtype)
                     .to(hidden_states.device) if self.with_positions else None)
        for layer in self.layers:
            hidden_states = layer(hidden_states, positions)
        return hidden_states.transpose(1, 2).reshape(batch, channels, height, width)


class HybridEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        dim, act = config.encoder_hidden_dim, config.activation_function
        self.proj_layers = list(config.encode_proj_layers)
        self.encoder = nn.ModuleList(AIFILayer(config) for _ in self.proj_layers)
        stages = len(config.encoder_in_channels) - 1
        self.lateral_convs = nn.ModuleList(ConvNormLayer(config, dim, dim, 1, 1, act=act)
                                           for _ in range(stages))
        self.fpn_blocks = nn.ModuleList(CSPRepLayer(config) for _ in range(stages))
        self.downsample_convs = nn.ModuleList(ConvNormLayer(config, dim, dim, 3, 2, act=act)
                                              for _ in range(stages))
        self.pan_blocks = nn.ModuleList(CSPRepLayer(config) for _ in range(stages))
        self.run_aifi = config.encoder_layers > 0

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        maps = list(maps)
        if self.run_aifi:
            for aifi, index in zip(self.encoder, self.proj_layers):
                maps[index] = aifi(maps[index])
        # top-down: the coarsest map, upsampled and fused with each finer one
        fpn = [maps[-1]]
        for step, (lateral, block) in enumerate(zip(self.lateral_convs, self.fpn_blocks)):
            fpn[-1] = lateral(fpn[-1])
            upsampled = F.interpolate(fpn[-1], scale_factor=2.0, mode="nearest")
            fpn.append(block(torch.cat([upsampled, maps[len(self.fpn_blocks) - step - 1]], 1)))
        fpn.reverse()
        # bottom-up: the finest map, downsampled and fused with each coarser one
        pan = [fpn[0]]
        for step, (down, block) in enumerate(zip(self.downsample_convs, self.pan_blocks)):
            pan.append(block(torch.cat([down(pan[-1]), fpn[step + 1]], 1)))
        return pan


# 2. Modules: decoder.
class PredictionHead(nn.Module):
    """Linear layers with ReLU between them (``layers.<i>``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        sizes = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, hidden):
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if index < len(self.layers) - 1:
                hidden = F.relu(hidden)
        return hidden


def deformable_sampling(value: torch.Tensor, shapes: list[tuple[int, int]],
                        locations: torch.Tensor, weights: torch.Tensor,
                        discrete: bool = False) -> torch.Tensor:
    """value (batch, positions, heads, head_dim); locations (batch, queries, heads, levels,
    points, 2) in [0, 1]; weights (batch, queries, heads, levels, points) -> (batch, queries,
    heads * head_dim): each head's weighted sum of samples of every level's map, bilinear
    (``grid_sample``) or, ``discrete`` (RT-DETR v2's "discrete" method), the nearest pixel."""
    batch, _, heads, head_dim = value.shape
    queries, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    samples = []
    for level, per_level in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        height, width = shapes[level]
        # (batch * heads, head_dim, height, width)
        level_map = per_level.flatten(2).transpose(1, 2).reshape(batch * heads, head_dim, height, width)
        where = locations[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (batch * heads, queries, points, 2)
        if discrete:
            pixel = (where * torch.tensor([width, height], device=where.device) + 0.5).long()
            column, row = pixel[..., 0].clamp(0, width - 1), pixel[..., 1].clamp(0, height - 1)
            flat = level_map.flatten(2)  # (batch * heads, head_dim, height * width)
            index = (row * width + column).flatten(1)[:, None, :].expand(-1, head_dim, -1)
            samples.append(flat.gather(2, index).view(batch * heads, head_dim, queries, points))
        else:  # grid_sample's grid is in [-1, 1]
            samples.append(F.grid_sample(level_map, 2 * where - 1, mode="bilinear",
                                         padding_mode="zeros", align_corners=False))
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (batch * heads, head_dim, queries)
    return out.view(batch, heads * head_dim, queries).transpose(1, 2)


class DeformableAttention(nn.Module):
    """v1: one level per feature map, offsets scaled by half the box over the points. v2 adds
    ``decoder_n_levels``, ``decoder_offset_scale`` and ``decoder_method`` ("discrete")."""

    def __init__(self, config):
        super().__init__()
        dim = config.d_model
        self.heads, self.points = config.decoder_attention_heads, config.decoder_n_points
        self.levels = config.get("decoder_n_levels") or config.num_feature_levels
        self.offset_scale = config.get("decoder_offset_scale", 0.5)
        method = config.get("decoder_method", "default")
        if method not in ("default", "discrete"):
            raise UnsupportedModelError(f"decoder_method={method!r}: expected 'default' or 'discrete'.")
        self.discrete = method == "discrete"
        self.sampling_offsets = nn.Linear(dim, self.heads * self.levels * self.points * 2)
        self.attention_weights = nn.Linear(dim, self.heads * self.levels * self.points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def forward(self, hidden_states, positions, memory, boxes, shapes):
        """boxes: (batch, queries, 4) reference boxes (centre, size) in [0, 1]."""
        hidden_states = hidden_states + positions
        batch, queries, _ = hidden_states.shape
        value = self.value_proj(memory).view(batch, memory.shape[1], self.heads, -1)
        offsets = self.sampling_offsets(hidden_states).view(batch, queries, self.heads, self.levels,
                                                            self.points, 2)
        weights = self.attention_weights(hidden_states).view(batch, queries, self.heads, -1)
        weights = weights.softmax(-1).view(batch, queries, self.heads, self.levels, self.points)
        boxes = boxes[:, :, None, None, None, :]  # broadcast over heads, levels, points
        locations = boxes[..., :2] + offsets / self.points * boxes[..., 2:] * self.offset_scale
        return self.output_proj(deformable_sampling(value, shapes, locations, weights, self.discrete))


class DecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        dim, eps = config.d_model, config.layer_norm_eps
        self.self_attn = SelfAttention(dim, config.decoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.encoder_attn = DeformableAttention(config)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, dim)
        self.act = activation(config.decoder_activation_function)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, hidden_states, positions, memory, boxes, shapes):
        hidden_states = self.self_attn_layer_norm(hidden_states + self.self_attn(hidden_states, positions))
        hidden_states = self.encoder_attn_layer_norm(
            hidden_states + self.encoder_attn(hidden_states, positions, memory, boxes, shapes))
        return self.final_layer_norm(hidden_states + self.fc2(self.act(self.fc1(hidden_states))))


def inverse_sigmoid(values: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    values = values.clamp(0, 1)
    return torch.log(values.clamp(min=eps) / (1 - values).clamp(min=eps))


class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.query_pos_head = PredictionHead(4, 2 * config.d_model, config.d_model, num_layers=2)
        self.class_embed = self.bbox_embed = None  # set by the detection head

    def forward(self, hidden_states, memory, box_logits, shapes):
        boxes = box_logits.sigmoid()
        states, all_boxes, all_logits = [], [], []
        for index, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, self.query_pos_head(boxes), memory, boxes, shapes)
            if self.bbox_embed is not None:  # each layer refines the boxes
                boxes = (self.bbox_embed[index](hidden_states) + inverse_sigmoid(boxes)).sigmoid()
            states.append(hidden_states)
            all_boxes.append(boxes)
            if self.class_embed is not None:
                all_logits.append(self.class_embed[index](hidden_states))
        return (hidden_states, torch.stack(states, 1), torch.stack(all_boxes, 1),
                torch.stack(all_logits, 1) if all_logits else None)


def anchors_for(shapes, grid_size: float = 0.05, dtype=torch.float32, device=None):
    """Anchor boxes (logits) per position of every level, and which are valid (inside the image)."""
    anchors = []
    for level, (height, width) in enumerate(shapes):
        grid_y, grid_x = torch.meshgrid(torch.arange(height, device=device).to(dtype),
                                        torch.arange(width, device=device).to(dtype), indexing="ij")
        centres = torch.stack([(grid_x + 0.5) / width, (grid_y + 0.5) / height], -1)
        sizes = torch.ones_like(centres) * grid_size * (2.0 ** level)
        anchors.append(torch.cat([centres, sizes], -1).reshape(1, height * width, 4))
    anchors = torch.cat(anchors, 1)
    valid = ((anchors > 1e-2) & (anchors < 1 - 1e-2)).all(-1, keepdim=True)
    logits = torch.log(anchors / (1 - anchors))
    return torch.where(valid, logits, torch.full((), torch.finfo(dtype).max, dtype=dtype, device=device)), valid


class RTDetrPreTrainedModel(BatchNormMixin, PreTrainedModel):
    model_type = "rt_detr"
    base_model_prefix = "model"
    config_defaults = RT_DETR_DEFAULTS
    main_input_name = "pixel_values"
    # training-only: the denoising queries' label embedding
    ignored_weights = [r"denoising_class_embed\."]


class RTDetrModel(RTDetrPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.backbone = ConvEncoder(config)
        eps = config.batch_norm_eps
        self.encoder_input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, config.encoder_hidden_dim, 1, bias=False),
                          nn.BatchNorm2d(config.encoder_hidden_dim))
            for channels in self.backbone.model.channels)
        self.encoder = HybridEncoder(config)
        if config.learn_initial_query:
            self.weight_embedding = nn.Embedding(config.num_queries, config.d_model)
        self.enc_output = nn.Sequential(nn.Linear(config.d_model, config.d_model),
                                        nn.LayerNorm(config.d_model, eps=config.layer_norm_eps))
        self.enc_score_head = nn.Linear(config.d_model, config.num_labels)
        self.enc_bbox_head = PredictionHead(config.d_model, config.d_model, 4, num_layers=3)
        projections = [conv_norm(channels, config.d_model, 1, 1, eps, padding=0)
                       for channels in config.decoder_in_channels]
        channels = config.decoder_in_channels[-1]
        for _ in range(config.num_feature_levels - len(projections)):  # extra, coarser levels
            projections.append(conv_norm(channels, config.d_model, 3, 2, eps, padding=1))
            channels = config.d_model
        self.decoder_input_proj = nn.ModuleList(projections)
        self.decoder = Decoder(config)

    def forward(self, pixel_values=None, pixel_mask=None, **unused) -> ModelOutput:
        config = self.config
        check_pixels(pixel_values, config.num_channels, type(self).__name__)
        pixel_values = pixel_values.to(self.enc_output[0].weight.dtype)
        maps = [proj(m) for proj, m in zip(self.encoder_input_proj, self.backbone.model(pixel_values))]
        encoded = self.encoder(maps)
        sources = [proj(m) for proj, m in zip(self.decoder_input_proj, encoded)]
        for proj in self.decoder_input_proj[len(sources):]:  # (each from the last encoder map)
            sources.append(proj(encoded[-1]))
        shapes = [tuple(s.shape[-2:]) for s in sources]
        memory = torch.cat([s.flatten(2).transpose(1, 2) for s in sources], 1)  # (batch, positions, d)
        anchor_shapes = shapes
        if config.anchor_image_size:
            anchor_shapes = [(int(config.anchor_image_size[0] / s), int(config.anchor_image_size[1] / s))
                             for s in config.feat_strides]
        anchors, valid = anchors_for(anchor_shapes, dtype=memory.dtype, device=memory.device)
        # query selection: the positions whose best class scores highest
        output_memory = self.enc_output(valid.to(memory.dtype) * memory)
        class_logits = self.enc_score_head(output_memory)
        box_logits = self.enc_bbox_head(output_memory) + anchors
        top = class_logits.max(-1).values.topk(config.num_queries, dim=1).indices  # (batch, queries)

        def pick(values):
            return values.gather(1, top[..., None].expand(-1, -1, values.shape[-1]))

        reference = pick(box_logits)
        if config.learn_initial_query:
            target = self.weight_embedding.weight[None].expand(memory.shape[0], -1, -1)
        else:
            target = pick(output_memory)
        last, states, boxes, logits = self.decoder(target, memory, reference, shapes)
        return ModelOutput(last_hidden_state=last, intermediate_hidden_states=states,
                           intermediate_logits=logits, intermediate_reference_points=boxes,
                           init_reference_points=reference, enc_topk_logits=pick(class_logits),
                           enc_topk_bboxes=reference.sigmoid(), encoder_last_hidden_state=encoded)


# 3. Heads.
class RTDetrForObjectDetection(RTDetrPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = RTDetrModel(config)
        layers, dim = config.decoder_layers, config.d_model
        self.model.decoder.class_embed = nn.ModuleList(nn.Linear(dim, config.num_labels)
                                                       for _ in range(layers))
        self.model.decoder.bbox_embed = nn.ModuleList(PredictionHead(dim, dim, 4, num_layers=3)
                                                      for _ in range(layers))

    def forward(self, pixel_values=None, pixel_mask=None, **unused) -> ModelOutput:
        out = self.model(pixel_values, pixel_mask)
        return ModelOutput(logits=out.intermediate_logits[:, -1],
                           pred_boxes=out.intermediate_reference_points[:, -1],
                           last_hidden_state=out.last_hidden_state)


HEADS = {
    "AutoModel": RTDetrModel,
    "AutoModelForObjectDetection": RTDetrForObjectDetection,
}


# RT-DETR v2 (Lv et al., 2024, arXiv:2407.17140): the same network; only the decoder's deformable
# attention reads more settings (above). Checkpoints also store each layer's points scale (a
# constant) and may repeat the decoder's heads at the top level (tied to them).
class _V2:
    model_type = "rt_detr_v2"
    config_defaults = {**RT_DETR_DEFAULTS, "decoder_n_levels": 3, "decoder_offset_scale": 0.5,
                       "decoder_method": "default"}
    ignored_weights = RTDetrPreTrainedModel.ignored_weights + [
        r"encoder_attn\.n_points_scale$", r"^(class_embed|bbox_embed)\."]


class RTDetrV2Model(_V2, RTDetrModel):
    pass


class RTDetrV2ForObjectDetection(_V2, RTDetrForObjectDetection):
    pass


V2_HEADS = {
    "AutoModel": RTDetrV2Model,
    "AutoModelForObjectDetection": RTDetrV2ForObjectDetection,
}
