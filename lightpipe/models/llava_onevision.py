"""LLaVA-OneVision (Li et al., 2024, arXiv:2408.03326): ``LlavaOnevisionForConditionalGeneration``,
a SigLIP vision tower, a two-layer MLP projector and a Qwen2 language model
(``llava-hf/llava-onevision-qwen2-0.5b-ov-hf``, the image-text-to-text default).

Matches transformers' ``models/llava_onevision/modeling_llava_onevision.py`` for images (not
videos). An image comes from the processor as a base view plus the tiles of its best
"any resolution" grid (``image_grid_pinpoints``). Each view's patch states (layer
``vision_feature_layer``, default -1) are projected; the tiles' feature maps are laid out as
one grid, the padding the processor added is cut away (``unpad``), the grid is shrunk
bilinearly when larger than ``anyres_max_N`` views, and an ``image_newline`` vector closes each
row; the base view's features come first. An image of a multi-image prompt is its base view
(padded square by the processor) plus one newline. The features replace the prompt's
``<image>`` tokens, which the processor expanded to the same count.

Parameter names are transformers 5's (``model.vision_tower.encoder.layers.0...``,
``model.image_newline``, ``model.language_model.layers.0...``, ``lm_head.weight``); the Hub's
older layout is renamed on load (LLaVA's rules).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .clip import sub_config
from .linear import Linear
from .llama import QWEN2_DEFAULTS, Qwen2Model
from .llava import LlavaForConditionalGeneration, LlavaMultiModalProjector
from .siglip import VISION_DEFAULTS, SiglipVisionTransformer

# 1. Config fields read, with the defaults config.json may leave out (LlavaOnevisionConfig's).
ONEVISION_DEFAULTS = {
    "vision_config": None, "text_config": None, "image_token_index": 151646,
    "projector_hidden_act": "gelu", "vision_feature_select_strategy": "full",
    "vision_feature_layer": -1, "multimodal_projector_bias": True, "tie_word_embeddings": False,
    "image_grid_pinpoints": [[384 * h, 384 * w] for h in range(1, 7) for w in range(1, 7)],
    "vision_aspect_ratio": "anyres_max_9",
}
ONEVISION_VISION_DEFAULTS = {**VISION_DEFAULTS, "hidden_size": 1152, "intermediate_size": 4304,
                             "patch_size": 14, "image_size": 384, "num_hidden_layers": 26,
                             "num_attention_heads": 16, "vision_use_head": False}


# 2. The any-resolution geometry (shared with the processor).
def select_best_resolution(height: int, width: int, resolutions: list) -> tuple[int, int]:
    """The (height, width) of ``resolutions`` that keeps the most of the image's pixels once
    fitted inside, then wastes the fewest."""
    best, most, least = None, 0, float("inf")
    for res_height, res_width in resolutions:
        scale = min(res_width / width, res_height / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = res_width * res_height - effective
        if effective > most or (effective == most and wasted < least):
            best, most, least = (res_height, res_width), effective, wasted
    return best


def unpadded_size(height: int, width: int, grid_height: int, grid_width: int) -> tuple[int, int, int]:
    """(top/left offset, rows, cols) of a ``grid_height x grid_width`` feature map that hold the
    image of (height, width) the processor fitted and centred in it."""
    if width / height > grid_width / grid_height:
        rows = int(round(height * (grid_width / width), 7))
        padding = (grid_height - rows) // 2
        return padding, grid_height - 2 * padding, grid_width
    cols = int(round(width * (grid_height / height), 7))
    padding = (grid_width - cols) // 2
    return padding, grid_height, grid_width - 2 * padding


def max_views(vision_aspect_ratio: str) -> int:
    return int(str(vision_aspect_ratio).removeprefix("anyres_max_"))


# 3. Modules.
class LlavaOnevisionModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.vision_tower = SiglipVisionTransformer(config.vision_config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.image_newline = nn.Parameter(torch.zeros(config.text_config.hidden_size))
        self.language_model = Qwen2Model(config.text_config)


class LlavaOnevisionForConditionalGeneration(LlavaForConditionalGeneration):
    """``generate(input_ids, pixel_values, image_sizes, attention_mask)`` as the reference, with
    the processor's outputs (``pixel_values``: (images, views, 3, size, size))."""

    config_defaults = ONEVISION_DEFAULTS
    image_input_names = ("image_sizes", "batch_num_images")
    checkpoint_renames = [(r"^image_newline$", "model.image_newline"),
                          *LlavaForConditionalGeneration.checkpoint_renames]

    def __init__(self, config):
        super(LlavaForConditionalGeneration, self).__init__(config)
        config.vision_config = sub_config(config.vision_config, ONEVISION_VISION_DEFAULTS)
        config.text_config = sub_config(config.text_config, QWEN2_DEFAULTS)
        self.model = LlavaOnevisionModel(config)
        self.lm_head = Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)

    # --- images ---
    def get_image_features(self, pixel_values: torch.Tensor, image_sizes=None,
                           batch_num_images=None) -> list[torch.Tensor]:
        """One (features, text hidden size) tensor per image, in the prompt's order."""
        config, vision = self.config, self.config.vision_config
        if image_sizes is None:
            raise InputError("LLaVA-OneVision needs image_sizes with pixel_values (the "
                             "processor's output): the original size of each image.")
        sizes = [tuple(int(v) for v in size) for size in torch.as_tensor(image_sizes).tolist()]
        single = [True] * len(sizes) if batch_num_images is None else \
            [int(n) == 1 for n in batch_num_images for _ in range(int(n))]
        side = vision.image_size
        views = [self._view_count(size, side) if tiled else 1 for size, tiled in zip(sizes, single)]
        if pixel_values.dim() == 5:  # (images, views padded to the most, 3, side, side)
            pixel_values = torch.cat([pixels[:count] for pixels, count in zip(pixel_values, views)])
        elif pixel_values.dim() != 4:
            raise InputError(f"pixel_values has shape {tuple(pixel_values.shape)}; expected "
                             "(images, views, 3, height, width) from the processor.")
        out = self.model.vision_tower(pixel_values, output_hidden_states=True)
        layers = config.vision_feature_layer
        picked = torch.cat([out.hidden_states[i] for i in ([layers] if isinstance(layers, int) else layers)], -1)
        if config.vision_feature_select_strategy == "default":
            picked = picked[:, 1:]
        features = self.model.multi_modal_projector(picked).split(views, dim=0)
        return [self._pack(image, size) for image, size in zip(features, sizes)]

    def _view_count(self, size: tuple[int, int], side: int) -> int:
        height, width = select_best_resolution(*size, self.config.image_grid_pinpoints)
        return (-(-height // side)) * (-(-width // side)) + 1

    def _pack(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(views, patches, hidden) -> (features, hidden): base view, then the unpadded grid
        of the tiles with a newline after each row."""
        newline = self.model.image_newline.to(image.dtype)
        if image.shape[0] == 1:
            return torch.cat([image[0], newline[None]])
        vision = self.config.vision_config
        side = vision.image_size // vision.patch_size
        base, tiles = image[0], image[1:]
        grid_h, grid_w = select_best_resolution(*size, self.config.image_grid_pinpoints)
        grid_h, grid_w = grid_h // vision.image_size, grid_w // vision.image_size
        hidden = tiles.shape[-1]
        # (tiles, side*side, hidden) -> (hidden, grid_h*side, grid_w*side)
        grid = tiles.view(grid_h, grid_w, side, side, hidden).permute(4, 0, 2, 1, 3)
        grid = grid.reshape(hidden, grid_h * side, grid_w * side)
        offset, rows, cols = unpadded_size(*size, grid.shape[1], grid.shape[2])
        grid = grid[:, offset:offset + rows] if rows != grid.shape[1] else grid[:, :, offset:offset + cols]
        ratio = math.sqrt(rows * cols / (max_views(self.config.vision_aspect_ratio) * side ** 2))
        if ratio > 1.1:
            grid = F.interpolate(grid[None], [int(rows // ratio), int(cols // ratio)], mode="bilinear")[0]
        grid = torch.cat([grid, newline[:, None, None].expand(hidden, grid.shape[1], 1)], dim=-1)
        return torch.cat([base, grid.flatten(1).t()])

    def image_rows(self, pixel_values: torch.Tensor, image_sizes=None, batch_num_images=None,
                   **unused) -> torch.Tensor:
        return torch.cat(self.get_image_features(pixel_values, image_sizes, batch_num_images))


HEADS = {
    "AutoModelForImageTextToText": LlavaOnevisionForConditionalGeneration,
    "AutoModelForVision2Seq": LlavaOnevisionForConditionalGeneration,
}
