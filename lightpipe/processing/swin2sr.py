"""Swin2SR's image processor: no resize, no normalisation; rescale to [0, 1] and pad the bottom
and right by mirroring (numpy's "symmetric") up to the next multiple of ``size_divisor`` (8).

Matches transformers' ``models/swin2sr/image_processing_pil_swin2sr.py`` (and 4.x's
``Swin2SRImageProcessor``), including its rounding: a side that is already a multiple still
gets ``size_divisor`` more pixels (64 -> 72).
"""

from __future__ import annotations

from typing import Any

from .image import ImageProcessor


def padded_size(size: int, divisor: int) -> int:
    """The reference's padded side: the next multiple of ``divisor`` strictly above ``size``."""
    return (size // divisor + 1) * divisor


class Swin2SRImageProcessor(ImageProcessor):
    """``processor(images)`` -> ``pixel_values`` (batch, 3, H', W') in [0, 1], each side padded
    to a multiple of ``size_divisor``; images of different sizes cannot share a batch."""

    image_processor_type = "Swin2SRImageProcessor"
    defaults = {**ImageProcessor.defaults, "do_resize": False, "size": None, "do_normalize": False,
                "do_pad": True, "size_divisor": 8}

    def __init__(self, **settings: Any):
        if "pad_size" in settings:  # the legacy name
            value = settings.pop("pad_size")
            settings.setdefault("size_divisor", value)
        super().__init__(**settings)

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        return None if size is None else super()._standard_size(size, settings)

    def prepare(self, image: Any, **options: Any):
        """One image -> (H', W', 3) uint8, mirrored out to the padded size."""
        import numpy as np

        opts = options or self.options()
        pixels = super().prepare(image, **opts)
        if not opts["do_pad"]:
            return pixels
        divisor = int(opts["size_divisor"])
        height, width = pixels.shape[:2]
        extra = ((0, padded_size(height, divisor) - height), (0, padded_size(width, divisor) - width), (0, 0))
        return np.pad(pixels, extra, mode="symmetric")
