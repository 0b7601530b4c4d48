"""OWL-ViT (Minderer et al., 2022, arXiv:2205.06230): open-vocabulary object detection. A CLIP
image tower whose every patch becomes a box (a small MLP head plus a fixed bias that puts each
patch's box at its own place) and a class embedding compared with CLIP text embeddings of the
queries.

Matches transformers' ``models/owlvit/modeling_owlvit.py`` for inference. The towers are CLIP's
(``clip.py``) with OWL-ViT's two differences: the vision pre-norm is named ``pre_layernorm``
(CLIP's is ``pre_layrnorm``) and the text is pooled at its highest token id. Parameter names are
the Hub checkpoints' (``owlvit.vision_model...``, ``owlvit.text_model...``, ``class_head.dense0``,
``box_head.dense0``, ``layer_norm``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .clip import CLIP_DEFAULTS, CLIPModel, CLIPTextTransformer, CLIPVisionTransformer
from .clip import TEXT_DEFAULTS as CLIP_TEXT_DEFAULTS
from .clip import VISION_DEFAULTS as CLIP_VISION_DEFAULTS

# 1. Config fields read, with the defaults config.json may leave out (OWL-ViT's, not CLIP's).
OWLVIT_DEFAULTS = CLIP_DEFAULTS
TEXT_DEFAULTS = {**CLIP_TEXT_DEFAULTS, "max_position_embeddings": 16, "pad_token_id": 0}
VISION_DEFAULTS = {**CLIP_VISION_DEFAULTS, "image_size": 768}


# 2. The towers: CLIP's, with OWL-ViT's names and pooling.
class OwlViTVisionTransformer(CLIPVisionTransformer):
    name = "OWL-ViT's vision model"

    def __init__(self, config):
        super().__init__(config)
        self.pre_layernorm = self.pre_layrnorm  # the checkpoints' name
        del self.pre_layrnorm

    @property
    def pre_norm(self) -> nn.LayerNorm:
        return self.pre_layernorm


class OwlViTTextTransformer(CLIPTextTransformer):
    """Pooled at the highest token id of each query (the end-of-text token of OWL-ViT's
    vocabulary), whatever ``eos_token_id`` the config names."""

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_hidden_states=False):
        out = super().forward(input_ids, attention_mask, position_ids, output_hidden_states)
        ids = input_ids.reshape(-1, input_ids.shape[-1]).to(torch.int)
        states = out.last_hidden_state
        out["pooler_output"] = states[torch.arange(states.shape[0], device=states.device),
                                      ids.argmax(-1).to(states.device)]
        return out


class OwlViTModel(CLIPModel):
    """CLIP's two towers and projections under OWL-ViT's names: ``logits_per_image``,
    ``text_embeds``, ``image_embeds``, as ``CLIPModel``."""

    config_defaults = OWLVIT_DEFAULTS
    base_model_prefix = "owlvit"  # a detector checkpoint loads into this class: its towers
    text_defaults, vision_defaults = TEXT_DEFAULTS, VISION_DEFAULTS
    text_class, vision_class = OwlViTTextTransformer, OwlViTVisionTransformer


# 3. The detection heads.
class OwlViTBoxPredictionHead(nn.Module):
    def __init__(self, width: int, out_dim: int = 4):
        super().__init__()
        self.dense0 = nn.Linear(width, width)
        self.dense1 = nn.Linear(width, width)
        self.gelu = nn.GELU()
        self.dense2 = nn.Linear(width, out_dim)

    def forward(self, image_features):
        return self.dense2(self.gelu(self.dense1(self.gelu(self.dense0(image_features)))))


class OwlViTClassPredictionHead(nn.Module):
    """Cosine similarity of each patch's class embedding with each query, shifted and scaled
    per patch: (batch, patches, queries)."""

    def __init__(self, vision_width: int, text_width: int):
        super().__init__()
        self.dense0 = nn.Linear(vision_width, text_width)
        self.logit_shift = nn.Linear(vision_width, 1)
        self.logit_scale = nn.Linear(vision_width, 1)
        self.elu = nn.ELU()

    def forward(self, image_embeds, query_embeds, query_mask=None):
        class_embeds = self.dense0(image_embeds)  # (batch, patches, text hidden)
        image_unit = class_embeds / (torch.linalg.norm(class_embeds, dim=-1, keepdim=True) + 1e-6)
        query_unit = query_embeds / (torch.linalg.norm(query_embeds, dim=-1, keepdim=True) + 1e-6)
        logits = image_unit @ query_unit.transpose(-1, -2)  # (batch, patches, queries)
        scale = self.elu(self.logit_scale(image_embeds)) + 1
        logits = (logits + self.logit_shift(image_embeds)) * scale
        if query_mask is not None:
            mask = query_mask[:, None, :] if query_mask.ndim > 1 else query_mask
            logits = torch.where(mask == 0, torch.finfo(logits.dtype).min, logits).to(torch.float32)
        return logits, image_unit  # the class embeddings, normalised (as the reference)


def box_bias(rows: int, cols: int, device=None) -> torch.Tensor:
    """(rows * cols, 4) logits that put each patch's box, before the head's correction, at the
    patch's lower-right corner with the size of one patch (the sigmoid's inverse of them)."""
    xs = torch.arange(1, cols + 1, dtype=torch.float32, device=device) / cols
    ys = torch.arange(1, rows + 1, dtype=torch.float32, device=device) / rows
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # row-major over patches
    corners = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2).clip(0.0, 1.0)
    sizes = torch.tensor([1.0 / cols, 1.0 / rows], device=device).expand_as(corners)

    def inverse_sigmoid(values):
        return torch.log(values + 1e-4) - torch.log1p(-values + 1e-4)

    return torch.cat([inverse_sigmoid(corners), inverse_sigmoid(sizes)], dim=-1)


class OwlViTForObjectDetection(PreTrainedModel):
    """``forward(input_ids, pixel_values, attention_mask)`` with ``input_ids`` (images x
    queries, tokens): ``logits`` (images, patches, queries), ``pred_boxes`` (images, patches, 4:
    center x, center y, width, height, relative to the image), ``text_embeds``, ``image_embeds``
    (the patch feature map), ``class_embeds``. A query whose first token id is 0 is padding: its
    logits are the lowest float."""

    config_defaults = OWLVIT_DEFAULTS
    base_model_prefix = "owlvit"
    main_input_name = "pixel_values"
    ignored_weights = [r"position_ids$", r"box_bias$"]
    model_class = OwlViTModel

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.model_class(config))  # owlvit, owlv2
        vision, text = self.towers.vision_config, self.towers.text_config
        self.class_head = OwlViTClassPredictionHead(vision.hidden_size, text.hidden_size)
        self.box_head = OwlViTBoxPredictionHead(vision.hidden_size)
        self.layer_norm = nn.LayerNorm(vision.hidden_size, eps=vision.layer_norm_eps)
        self._box_bias: dict = {}

    @property
    def towers(self) -> OwlViTModel:
        return getattr(self, self.base_model_prefix)

    def _init_weights(self, module: nn.Module, only: str | None = None) -> None:
        super()._init_weights(module, only)
        if module is self.towers and only in (None, "logit_scale"):
            with torch.no_grad():
                self.towers.logit_scale.fill_(float(self.config.logit_scale_init_value))

    def image_embedder(self, pixel_values, interpolate_pos_encoding=False):
        """The patch feature map (images, rows, cols, hidden) and the vision tower's outputs."""
        vision = self.towers.vision_model(pixel_values, interpolate_pos_encoding)
        states = self.towers.vision_model.post_layernorm(vision.last_hidden_state)
        # each patch state times the [CLS] state, then normed
        features = self.layer_norm(states[:, 1:] * states[:, :1])
        patch = self.towers.vision_config.patch_size
        rows, cols = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
        return features.reshape(features.shape[0], rows, cols, features.shape[-1]), vision

    def box_predictor(self, image_feats, rows: int, cols: int):
        key = (rows, cols, image_feats.device)
        if key not in self._box_bias:
            self._box_bias[key] = box_bias(rows, cols, image_feats.device)
        boxes = self.box_head(image_feats)
        # added in float32, rounded to the model's dtype (the reference's in-place add)
        return torch.sigmoid((boxes.float() + self._box_bias[key]).to(boxes.dtype))

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None,
                interpolate_pos_encoding=False, **unused) -> ModelOutput:
        if input_ids is None or pixel_values is None:
            raise InputError("OWL-ViT detects text queries in images: pass input_ids (the "
                             "tokenized queries) and pixel_values.")
        feature_map, vision = self.image_embedder(pixel_values, interpolate_pos_encoding)
        batch, rows, cols, hidden = feature_map.shape
        if input_ids.shape[0] % batch:
            raise InputError(f"input_ids has {input_ids.shape[0]} queries for {batch} images: "
                             "give every image the same number of queries (pad with rows of 0).")
        text = self.towers.text_model(input_ids, attention_mask)
        query_embeds = self.towers.text_projection(text.pooler_output)
        query_embeds = query_embeds / torch.linalg.norm(query_embeds, dim=-1, keepdim=True)
        queries = input_ids.shape[0] // batch
        query_embeds = query_embeds.reshape(batch, queries, -1)
        query_mask = input_ids.reshape(batch, queries, -1)[..., 0] > 0
        image_feats = feature_map.reshape(batch, rows * cols, hidden)
        logits, class_embeds = self.class_head(image_feats, query_embeds, query_mask)
        pred_boxes = self.box_predictor(image_feats, rows, cols)
        return ModelOutput(logits=logits, pred_boxes=pred_boxes, text_embeds=query_embeds,
                           image_embeds=feature_map, class_embeds=class_embeds,
                           text_model_output=text, vision_model_output=vision)


HEADS = {
    "AutoModel": OwlViTModel,
    "AutoModelForZeroShotObjectDetection": OwlViTForObjectDetection,
}
