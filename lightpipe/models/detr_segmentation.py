"""DETR for panoptic segmentation (Carion et al., 2020, arXiv:2005.12872, section 4.4): the
object detector of detr.py, plus a mask per query: each query's attention over the encoder's
map (a multi-head attention map) and the map itself go through a small FPN-style convolutional
head that upsamples with the backbone's stage-3, -2 and -1 features, to 1/4 of the image.

Matches transformers' ``DetrForSegmentation`` (facebook/detr-resnet-50-panoptic) for inference.
Parameter names are the Hub checkpoints' (``detr.model...``, ``bbox_attention.q_linear``,
``mask_head.lay1``, ``mask_head.adapter1``); the detector is detr.py's, reused as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from ..modeling import ModelOutput
from .detr import HEADS as DETR_HEADS
from .detr import DetrForObjectDetection, DetrPreTrainedModel, backbone_config


class DetrMHAttentionMap(nn.Module):
    """Each query's attention weights over the encoder's (h, w) map, per head: a softmax over
    heads and positions together, as the reference (no values are read)."""

    def __init__(self, size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_linear = nn.Linear(size, size)
        self.k_linear = nn.Linear(size, size)

    def forward(self, queries, memory, mask):
        batch, num_queries, size = queries.shape
        head_dim = size // self.num_heads
        query = self.q_linear(queries).view(batch, num_queries, self.num_heads, head_dim)
        key = F.conv2d(memory, self.k_linear.weight[:, :, None, None], self.k_linear.bias)
        key = key.view(batch, self.num_heads, head_dim, *memory.shape[-2:])  # (batch, heads, hd, h, w)
        weights = torch.einsum("bqnc,bnchw->bqnhw", query * head_dim ** -0.5, key)
        weights = weights.masked_fill(~mask[:, None, None], torch.finfo(weights.dtype).min)
        return weights.flatten(2).softmax(-1).view(weights.shape)  # (batch, queries, heads, h, w)


class DetrMaskHeadSmallConv(nn.Module):
    """(map + attention maps) -> conv blocks -> three FPN steps (nearest upsampling, adapted
    backbone features added) -> one mask logit per pixel. Conv blocks: conv, group norm, ReLU."""

    def __init__(self, in_channels: int, fpn_channels: list[int], size: int):
        super().__init__()
        if in_channels % 8:
            raise UnsupportedModelError(f"DETR's mask head needs d_model + attention heads to be a "
                                        f"multiple of 8; got {in_channels}.")
        widths = [in_channels, size // 2, size // 4, size // 8, size // 16]
        self.lay1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.gn1 = nn.GroupNorm(8, in_channels)
        for index in range(2, 6):
            setattr(self, f"lay{index}", nn.Conv2d(widths[index - 2], widths[index - 1], 3, padding=1))
            setattr(self, f"gn{index}", nn.GroupNorm(min(8, widths[index - 1]), widths[index - 1]))
        self.out_lay = nn.Conv2d(widths[-1], 1, 3, padding=1)
        for index, channels in enumerate(fpn_channels, start=1):
            setattr(self, f"adapter{index}", nn.Conv2d(channels, widths[index], 1))

    def forward(self, features, attention_maps, fpn_features: list):
        num_queries = attention_maps.shape[1]

        def per_query(tensor):  # (batch, ...) -> (batch * queries, ...)
            return tensor.unsqueeze(1).expand(-1, num_queries, *tensor.shape[1:]).flatten(0, 1)

        hidden = torch.cat([per_query(features), attention_maps.flatten(0, 1)], dim=1)
        hidden = F.relu(self.gn1(self.lay1(hidden)))
        hidden = F.relu(self.gn2(self.lay2(hidden)))
        for index, fpn in enumerate(fpn_features, start=1):
            fpn = getattr(self, f"adapter{index}")(per_query(fpn))
            hidden = fpn + F.interpolate(hidden, size=fpn.shape[-2:], mode="nearest")
            hidden = F.relu(getattr(self, f"gn{index + 2}")(getattr(self, f"lay{index + 2}")(hidden)))
        return self.out_lay(hidden)  # (batch * queries, 1, H / 4, W / 4)


class DetrForSegmentation(DetrPreTrainedModel):
    """``logits`` and ``pred_boxes`` as DetrForObjectDetection, and ``pred_masks`` (batch,
    queries, H / 4, W / 4): each query's mask logits."""

    def __init__(self, config):
        super().__init__(config)
        self.detr = DetrForObjectDetection(config)
        stage_channels = list(backbone_config(config).hidden_sizes)  # stage1 .. stage4
        size, heads = config.d_model, config.encoder_attention_heads
        self.mask_head = DetrMaskHeadSmallConv(size + heads, stage_channels[::-1][-3:], size)
        self.bbox_attention = DetrMHAttentionMap(size, heads)

    def forward(self, pixel_values=None, pixel_mask=None, **unused) -> ModelOutput:
        found = self.detr.model.features(pixel_values, pixel_mask, "DetrForSegmentation")
        hidden_states = found["last_hidden_state"]
        logits = self.detr.class_labels_classifier(hidden_states)
        boxes = self.detr.bbox_predictor(hidden_states).sigmoid()
        batch, size, (height, width) = hidden_states.shape[0], self.config.d_model, found["mask"].shape[-2:]
        memory = found["memory"].transpose(1, 2).reshape(batch, size, height, width)
        attention_maps = self.bbox_attention(hidden_states, memory, found["mask"])
        stages = found["stages"]
        masks = self.mask_head(found["projected"], attention_maps, [stages[3], stages[2], stages[1]])
        masks = masks.view(batch, self.config.num_queries, *masks.shape[-2:])
        return ModelOutput(logits=logits, pred_boxes=boxes, pred_masks=masks,
                           last_hidden_state=hidden_states,
                           encoder_last_hidden_state=found["memory"])


HEADS = {**DETR_HEADS, "AutoModelForImageSegmentation": DetrForSegmentation}
