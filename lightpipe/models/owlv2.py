"""OWLv2 (Minderer et al., 2023, arXiv:2306.09683): OWL-ViT scaled up with self-training. The
architecture is OWL-ViT's plus an objectness head (one more box-head-shaped MLP giving each
patch a logit for "is an object"); images are padded to a square before resizing
(``processing/owlvit.py``'s ``Owlv2ImageProcessor``).

Matches transformers' ``models/owlv2/modeling_owlv2.py`` for inference. Parameter names are the
Hub checkpoints' (``owlv2.vision_model...``, ``objectness_head.dense0``, ...).
"""

from __future__ import annotations

from ..modeling import ModelOutput
from .owlvit import OwlViTBoxPredictionHead, OwlViTForObjectDetection, OwlViTModel

# OWLv2's vision tower defaults differ from OWL-ViT's (patch 16).
OWLV2_VISION_DEFAULTS = {"patch_size": 16}


class Owlv2Model(OwlViTModel):
    base_model_prefix = "owlv2"

    def __init__(self, config):
        vision = config.get("vision_config")
        if isinstance(vision, dict):
            config.vision_config = {**OWLV2_VISION_DEFAULTS, **vision}
        super().__init__(config)


class Owlv2ForObjectDetection(OwlViTForObjectDetection):
    """OWL-ViT's outputs plus ``objectness_logits`` (images, patches)."""

    base_model_prefix = "owlv2"
    model_class = Owlv2Model

    def __init__(self, config):
        super().__init__(config)
        self.objectness_head = OwlViTBoxPredictionHead(self.towers.vision_config.hidden_size, out_dim=1)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None,
                interpolate_pos_encoding=False, **unused) -> ModelOutput:
        out = super().forward(input_ids, pixel_values, attention_mask, interpolate_pos_encoding)
        features = out["image_embeds"]
        image_feats = features.reshape(features.shape[0], -1, features.shape[-1])
        out["objectness_logits"] = self.objectness_head(image_feats)[..., 0]
        return out


HEADS = {
    "AutoModel": Owlv2Model,
    "AutoModelForZeroShotObjectDetection": Owlv2ForObjectDetection,
}
