"""SigLIP 2's NaFlex image processor (as transformers' ``Siglip2ImageProcessorPil``): each image
resized, aspect kept, to the largest grid of ``patch_size`` squares with at most
``max_num_patches`` of them, normalised, cut into flattened patches (row by row, each patch
(patch, patch, channels)) and zero-padded to ``max_num_patches``; -> ``pixel_values``
(batch, max_num_patches, 3 * patch * patch), ``pixel_attention_mask``, ``spatial_shapes``."""

from __future__ import annotations

import math
from typing import Any

from . import Processor
from .features import BatchFeature
from .image import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, ImageProcessor, resize


def naflex_size(height: int, width: int, patch_size: int, max_num_patches: int,
                eps: float = 1e-5) -> tuple[int, int]:
    """(height, width), multiples of ``patch_size``, from the largest scale (found by bisection,
    as the reference) whose patch count stays within ``max_num_patches``."""
    def scaled(scale: float, size: int) -> int:
        return int(max(patch_size, math.ceil(size * scale / patch_size) * patch_size))

    low, high = eps / 10, 100.0
    while high - low >= eps:
        scale = (low + high) / 2
        if (scaled(scale, height) / patch_size) * (scaled(scale, width) / patch_size) <= max_num_patches:
            low = scale
        else:
            high = scale
    return scaled(low, height), scaled(low, width)


class Siglip2ImageProcessor(ImageProcessor):
    image_processor_type = "Siglip2ImageProcessor"
    model_input_names = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
    collates_own_sizes = True  # image pipelines batch images of different sizes through collate
    defaults = {**ImageProcessor.defaults, "size": None, "resample": 2, "patch_size": 16,
                "max_num_patches": 256, "image_mean": IMAGENET_STANDARD_MEAN,
                "image_std": IMAGENET_STANDARD_STD}

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        return None  # the size comes from max_num_patches

    def resize(self, image, opts: dict):
        height, width = naflex_size(image.height, image.width, opts["patch_size"], opts["max_num_patches"])
        return resize(image, height, width, opts["resample"])

    def collate(self, arrays: list, opts: dict | None = None) -> BatchFeature:
        import numpy as np
        import torch

        opts = opts or self.options()
        patch, most = opts["patch_size"], opts["max_num_patches"]
        values = torch.zeros(len(arrays), most, 3 * patch * patch)
        mask = torch.zeros(len(arrays), most, dtype=torch.int32)
        shapes = []
        for index, array in enumerate(arrays):
            pixels = self.normalize_batch(torch.from_numpy(np.array(array))[None], **opts)[0]
            channels, height, width = pixels.shape
            rows, cols = height // patch, width // patch
            # (channels, rows, patch, cols, patch) -> (rows * cols, patch * patch * channels)
            patches = pixels[:, :rows * patch, :cols * patch].reshape(channels, rows, patch, cols, patch)
            patches = patches.permute(1, 3, 2, 4, 0).reshape(rows * cols, -1)
            values[index, :rows * cols] = patches
            mask[index, :rows * cols] = 1
            shapes.append([rows, cols])
        return BatchFeature(pixel_values=values, pixel_attention_mask=mask,
                            spatial_shapes=torch.tensor(shapes))


class Siglip2Processor(Processor):
    """SigLIP 2's tokenizer (Gemma's, lower-cased) with its NaFlex image processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, feature_extractor: Any = None):
        super().__init__(tokenizer=tokenizer, image_processor=image_processor or feature_extractor)
