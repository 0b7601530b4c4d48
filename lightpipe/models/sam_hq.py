"""SAM-HQ, Segment Anything in High Quality (Ke et al., 2023, arXiv:2306.01567): SAM with one more
output token (the HQ token) whose mask is predicted from a fused feature map: the mask decoder's
upscaled image, refined by two convolutions, plus the image embedding and the first global ViT
layer's output, each upscaled 4x by transposed convolutions.

Matches transformers' ``models/sam_hq/modeling_sam_hq.py`` for inference. The image encoder,
prompt encoder, two-way transformer and most of the mask decoder are SAM's (``sam.py``); the new
parameters are ``mask_decoder.hq_token``, ``mask_decoder.hq_mask_mlp``,
``mask_decoder.compress_vit_conv1/_norm/_conv2`` (the ViT features, ``vit_dim`` channels),
``mask_decoder.encoder_conv1/_norm/_conv2`` (the image embedding) and
``mask_decoder.mask_conv1/_norm/_conv2``. Masks out: with ``multimask_output`` the three SAM masks
sorted by predicted IoU (scores sorted too), without it SAM's single mask; the HQ mask is added to
each (``hq_token_only=True``: the HQ mask alone).

``get_image_embeddings`` returns ``(image_embeddings, intermediate_embeddings)`` as the reference
does; pass both back (``image_embeddings=``, ``intermediate_embeddings=``) to decode prompts
against a stored image. The image processor and processor are SAM's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .clip import sub_config
from .sam import DECODER_DEFAULTS, SamFeedForward, SamLayerNorm, SamMaskDecoder, SamModel

HQ_DECODER_DEFAULTS = {**DECODER_DEFAULTS, "vit_dim": 768}


def _upscale_4x(conv1: nn.ConvTranspose2d, norm: nn.Module, conv2: nn.ConvTranspose2d, features):
    return conv2(F.gelu(norm(conv1(features))))


class SamHQMaskDecoder(SamMaskDecoder):
    def __init__(self, config):
        super().__init__(config)
        size = config.hidden_size
        self.hq_token = nn.Embedding(1, size)
        self.hq_mask_mlp = SamFeedForward(size, size, size // 8, 3)
        self.compress_vit_conv1 = nn.ConvTranspose2d(config.vit_dim, size, kernel_size=2, stride=2)
        self.compress_vit_norm = SamLayerNorm(size)
        self.compress_vit_conv2 = nn.ConvTranspose2d(size, size // 8, kernel_size=2, stride=2)
        self.encoder_conv1 = nn.ConvTranspose2d(size, size // 4, kernel_size=2, stride=2)
        self.encoder_norm = SamLayerNorm(size // 4)
        self.encoder_conv2 = nn.ConvTranspose2d(size // 4, size // 8, kernel_size=2, stride=2)
        self.mask_conv1 = nn.Conv2d(size // 8, size // 4, kernel_size=3, padding=1)
        self.mask_norm = SamLayerNorm(size // 4)
        self.mask_conv2 = nn.Conv2d(size // 4, size // 8, kernel_size=3, padding=1)

    def output_tokens(self) -> torch.Tensor:
        return torch.cat([super().output_tokens(), self.hq_token.weight], dim=0)

    def image_for_masks(self, image, keys) -> torch.Tensor:
        # transformers' SamHQMaskDecoder upscales the map it gave the transformer (the image
        # embedding plus the dense prompt), not the transformer's output, and reads it with height
        # and width swapped (the original SAM-HQ upscales the output); kept for parity.
        return image.transpose(2, 3).reshape(image.shape)

    def hq_features(self, image_embeddings, intermediate_embeddings) -> torch.Tensor:
        """(batch, hidden / 8, 4h, 4w): the image embedding upscaled, plus the first global ViT
        layer's output upscaled when given."""
        features = _upscale_4x(self.encoder_conv1, self.encoder_norm, self.encoder_conv2, image_embeddings)
        if intermediate_embeddings:
            vit = intermediate_embeddings[0].permute(0, 3, 1, 2).to(features.dtype)
            if vit.shape[1] != self.compress_vit_conv1.in_channels:
                raise InputError(f"intermediate_embeddings[0] has {vit.shape[1]} channels but the "
                                 f"mask decoder's vit_dim is {self.compress_vit_conv1.in_channels}: "
                                 "pass the second item get_image_embeddings returns.")
            features = features + _upscale_4x(self.compress_vit_conv1, self.compress_vit_norm,
                                              self.compress_vit_conv2, vit)
        return features

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool,
                attention_similarity=None, target_embedding=None, hq_token_only: bool = False,
                intermediate_embeddings=None):
        batch = image_embeddings.shape[0]
        hq_features = self.hq_features(image_embeddings, intermediate_embeddings)
        if hq_features.shape[0] != batch:
            raise InputError(f"intermediate_embeddings are for {hq_features.shape[0]} images but "
                             f"image_embeddings for {batch}: pass the pair get_image_embeddings returns.")
        tokens, upscaled = self.run_transformer(image_embeddings, image_pe, sparse, dense,
                                                attention_similarity, target_embedding)
        points = tokens.shape[1]
        refined = self.mask_conv2(F.gelu(self.mask_norm(self.mask_conv1(upscaled))))
        refined = refined + hq_features.repeat_interleave(points, 0)
        count = self.num_mask_tokens  # SAM's masks; the HQ token follows them
        hyper = torch.stack([mlp(tokens[:, :, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                            dim=2)
        masks = self.project(hyper, upscaled)
        hq_mask = self.project(self.hq_mask_mlp(tokens[:, :, 1 + count])[:, :, None], refined)
        iou = self.iou_prediction_head(tokens[:, :, 0])
        if multimask_output:  # SAM's three masks, best predicted IoU first
            iou, order = torch.sort(iou[:, :, 1:], dim=2, descending=True)
            masks = torch.gather(masks[:, :, 1:], 2,
                                 order[..., None, None].expand(-1, -1, -1, *masks.shape[3:]))
        else:
            iou, masks = iou[:, :, :1], masks[:, :, :1]
        return (hq_mask if hq_token_only else masks + hq_mask), iou


class SamHQModel(SamModel):
    """SAM's ``forward`` plus ``hq_token_only`` (default False: the HQ mask added to SAM's) and
    ``intermediate_embeddings`` (with ``image_embeddings=``: the early ViT features
    ``get_image_embeddings`` returned; without them the HQ mask uses the image embedding alone,
    as the reference)."""

    decoder_options = ("hq_token_only", "intermediate_embeddings")

    def __init__(self, config):
        super().__init__(config)  # SAM's decoder, replaced
        self.decoder_config = sub_config(config.mask_decoder_config, HQ_DECODER_DEFAULTS)
        self.mask_decoder = SamHQMaskDecoder(self.decoder_config)

    def image_features(self, pixel_values) -> tuple[torch.Tensor, dict]:
        weight = self.vision_encoder.patch_embed.projection.weight
        global_outputs: list = []
        embeddings = self.vision_encoder(pixel_values.to(weight.dtype), global_outputs)
        return embeddings, {"intermediate_embeddings": global_outputs}

    @torch.no_grad()
    def get_image_embeddings(self, pixel_values, **unused) -> tuple[torch.Tensor, list]:
        embeddings, extra = self.image_features(pixel_values)
        return embeddings, extra["intermediate_embeddings"]


HEADS = {
    "AutoModel": SamHQModel,
    "AutoModelForMaskGeneration": SamHQModel,
}
