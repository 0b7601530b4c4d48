"""SigLIP (Zhai et al., 2023, arXiv:2303.15343): CLIP's two towers trained with a sigmoid loss,
so each (image, text) score stands alone: ``sigmoid(logits_per_image)`` is a probability.

Matches transformers' ``models/siglip/modeling_siglip.py`` for inference. Differences from CLIP
(whose encoder layers it shares, names included): no class token and no pre-norm in the vision
tower; the image is pooled by attention from a learned probe (``vision_model.head``, a
``torch.nn.MultiheadAttention`` whose weights are the checkpoint's ``in_proj_weight`` /
``out_proj``); the text tower is bidirectional and pooled at the last position, then projected
by ``text_model.head``; ``logits = cos * exp(logit_scale) + logit_bias``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .clip import CLIPEncoder, CLIPMLP, CLIPTextEmbeddings, CLIPVisionEmbeddings, sub_config
from .layers import check_heads, padding_mask
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
TEXT_DEFAULTS = {
    "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 64, "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6, "attention_dropout": 0.0, "projection_size": None,
}
VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16,
    "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "attention_dropout": 0.0,
    "vision_use_head": True,
}


def vision_config_of(config: Config) -> Config:
    """The vision tower's config: a full SigLIP config's ``vision_config``, or the config itself
    (``siglip_vision_model``; LLaVA-OneVision's ``vision_config``)."""
    nested = config.get("vision_config")
    return sub_config(nested if nested is not None else config.to_dict(), VISION_DEFAULTS)


# 2. Modules.
class SiglipVisionEmbeddings(CLIPVisionEmbeddings):
    class_token = False


class SiglipMultiheadAttentionPoolingHead(nn.Module):
    """A learned probe attends over the patches; then a residual MLP. -> (batch, hidden)."""

    def __init__(self, config):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.attention = nn.MultiheadAttention(config.hidden_size, config.num_attention_heads,
                                               batch_first=True)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def forward(self, hidden_states):
        probe = self.probe.expand(hidden_states.shape[0], -1, -1)
        pooled = self.attention(probe, hidden_states, hidden_states, need_weights=False)[0]
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]


class SiglipVisionTransformer(nn.Module):
    """``last_hidden_state``: the post-normed patch states; ``pooler_output``: the attention
    pool (None when ``vision_use_head`` is false)."""

    name = "SigLIP's vision model"  # for error messages
    embeddings_class = SiglipVisionEmbeddings  # SigLIP 2 changes these two
    head_class = SiglipMultiheadAttentionPoolingHead

    def __init__(self, config):
        super().__init__()
        check_heads(config.hidden_size, config.num_attention_heads)
        self.config = self.tower_config = config
        self.embeddings = self.embeddings_class(config)
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.vision_use_head:
            self.head = self.head_class(config)

    def forward(self, pixel_values, interpolate_pos_encoding=False, output_hidden_states=False):
        # also SiglipVisionModel's forward, over the same attributes
        check_pixels(pixel_values, self.tower_config.num_channels, self.name)
        hidden_states = self.embeddings(pixel_values, bool(interpolate_pos_encoding))
        hidden_states, states = self.encoder(hidden_states, None, output_hidden_states)
        hidden_states = self.post_layernorm(hidden_states)
        pooled = self.head(hidden_states) if self.tower_config.vision_use_head else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled, hidden_states=states)


def SiglipTextEmbeddings(config) -> CLIPTextEmbeddings:
    return CLIPTextEmbeddings(config, "SigLIP")


class SiglipTextTransformer(nn.Module):
    """Bidirectional text encoder; ``pooler_output`` is ``head(state at the last position)``
    (SigLIP's texts are padded to max_length, so that is the same place for every text)."""

    def __init__(self, config):
        super().__init__()
        check_heads(config.hidden_size, config.num_attention_heads)
        self.config = config
        self.embeddings = SiglipTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.hidden_size, config.projection_size or config.hidden_size)

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_hidden_states=False):
        if input_ids is None:
            raise InputError("SigLIP's text model needs input_ids: tokenize the texts first.")
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        hidden_states = self.embeddings(input_ids, position_ids)
        mask = padding_mask(attention_mask)  # (batch, 1, 1, seq) or None
        hidden_states, states = self.encoder(hidden_states, mask, output_hidden_states)
        hidden_states = self.final_layer_norm(hidden_states)
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=self.head(hidden_states[:, -1]),
                           hidden_states=states)


# 3. Models and heads.
class SiglipPreTrainedModel(PreTrainedModel):
    ignored_weights = [r"position_ids$"]


class SiglipModel(SiglipPreTrainedModel):
    """Both towers. ``forward(input_ids, pixel_values, attention_mask)`` -> ``logits_per_image``
    (images, texts), ``logits_per_text``, ``text_embeds``, ``image_embeds`` (normalised), and
    each tower's outputs."""

    main_input_name = "input_ids"
    vision_tower = SiglipVisionTransformer  # SigLIP2's models change these two
    vision_config_of = staticmethod(vision_config_of)

    def __init__(self, config):
        super().__init__(config)
        self.text_config = sub_config(config.get("text_config"), TEXT_DEFAULTS)
        self.vision_config = self.vision_config_of(config)
        self.text_model = SiglipTextTransformer(self.text_config)
        self.vision_model = self.vision_tower(self.vision_config)
        self.logit_scale = nn.Parameter(torch.zeros(1))
        self.logit_bias = nn.Parameter(torch.zeros(1))

    def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None, **unused) -> ModelOutput:
        """The text tower's outputs (``pooler_output`` is already projected by its head)."""
        return self.text_model(input_ids, attention_mask, position_ids)

    def get_image_features(self, pixel_values=None, interpolate_pos_encoding=False, **unused) -> ModelOutput:
        """The image tower's outputs (``pooler_output`` is the attention pool)."""
        return self.vision_model(pixel_values, interpolate_pos_encoding)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                interpolate_pos_encoding=False, output_hidden_states=False, **unused) -> ModelOutput:
        if input_ids is None or pixel_values is None:
            raise InputError("SiglipModel compares texts with images: pass both input_ids and "
                             "pixel_values (or use get_text_features / get_image_features).")
        if not self.vision_config.vision_use_head:
            raise InputError("This SigLIP vision tower has no pooling head (vision_use_head is "
                             "false): it gives patch features only, not image-text scores.")
        vision = self.vision_model(pixel_values, interpolate_pos_encoding, output_hidden_states)
        return self.compare(vision, input_ids, attention_mask, position_ids, output_hidden_states)

    def compare(self, vision, input_ids, attention_mask, position_ids, output_hidden_states) -> ModelOutput:
        """The text tower, then both pooled outputs normalised and scored (sigmoid logits)."""
        text = self.text_model(input_ids, attention_mask, position_ids, output_hidden_states)
        image_embeds = vision.pooler_output / vision.pooler_output.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text.pooler_output / text.pooler_output.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp() + self.logit_bias
        return ModelOutput(logits_per_image=logits_per_text.t(), logits_per_text=logits_per_text,
                           text_embeds=text_embeds, image_embeds=image_embeds,
                           text_model_output=text, vision_model_output=vision)


class SiglipVisionModel(SiglipPreTrainedModel):
    """The vision tower alone (``siglip_vision_model``; or the vision half of a full SigLIP
    checkpoint, whose ``text_model`` weights are then unused): ``last_hidden_state`` and the
    pooled ``pooler_output``; image-feature-extraction."""

    main_input_name = "pixel_values"
    base_model_prefix = "vision_model"  # a full checkpoint's vision weights sit under it
    name = SiglipVisionTransformer.name
    vision_tower = SiglipModel.vision_tower
    vision_config_of = staticmethod(vision_config_of)

    def __init__(self, config):
        super().__init__(config)
        self.tower_config = self.vision_config_of(config)
        tower = self.vision_tower(self.tower_config)
        # the tower's parts directly on the model: the names transformers 5 saves
        self.embeddings, self.encoder, self.post_layernorm = tower.embeddings, tower.encoder, tower.post_layernorm
        if self.tower_config.vision_use_head:
            self.head = tower.head

    def forward(self, pixel_values=None, interpolate_pos_encoding=False, output_hidden_states=False,
                **unused) -> ModelOutput:
        if pixel_values is None:
            raise InputError("SiglipVisionModel needs pixel_values: run the image processor first.")
        return SiglipVisionTransformer.forward(self, pixel_values, interpolate_pos_encoding,
                                               output_hidden_states)


class SiglipForImageClassification(SiglipPreTrainedModel):
    """The vision tower, its patch states averaged, then a linear classifier -> ``logits``."""

    main_input_name = "pixel_values"
    vision_tower = SiglipModel.vision_tower
    vision_config_of = staticmethod(vision_config_of)

    def __init__(self, config):
        super().__init__(config)
        self.vision_model = self.vision_tower(self.vision_config_of(config))
        labels = config.num_labels
        hidden = self.vision_model.config.hidden_size
        self.classifier = nn.Linear(hidden, labels) if labels > 0 else nn.Identity()

    def forward(self, pixel_values=None, interpolate_pos_encoding=False, output_hidden_states=False,
                **unused) -> ModelOutput:
        if pixel_values is None:
            raise InputError("SiglipForImageClassification needs pixel_values: run the image "
                             "processor first.")
        out = self.vision_model(pixel_values, interpolate_pos_encoding, output_hidden_states)
        return ModelOutput(logits=self.classifier(out.last_hidden_state.mean(dim=1)),
                           hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": SiglipModel,
    "AutoModelForZeroShotImageClassification": SiglipModel,
    "AutoModelForImageClassification": SiglipForImageClassification,
}
VISION_HEADS = {"AutoModel": SiglipVisionModel}
