"""ViLT's image processor: the short side to ``shortest_edge`` (384), the long side at most
1333/800 of it, both rounded down to a multiple of ``size_divisor`` (32); rescale, normalise,
and pad a batch to its largest image with a ``pixel_mask`` of the real pixels.

Matches transformers' ``models/vilt/image_processing_pil_vilt.py`` (and 4.x's
``ViltImageProcessor``): the same PIL resize, so pixel values equal the reference's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .image import (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, BatchFeature, ImageProcessor,
                    pad_batch, resize, size_dict)

if TYPE_CHECKING:
    from PIL import Image

# COCO's usual aspect ratio bounds the long side: 1333 / 800 of the short side.
MAX_LONGER_EDGE = 1333
MAX_SHORTER_EDGE = 800


def vilt_output_size(height: int, width: int, shorter: int, longer: int,
                     size_divisor: int) -> tuple[int, int]:
    """(height, width) with the short side at ``shorter``, the long side at most ``longer``,
    each rounded to the nearest pixel and then down to a multiple of ``size_divisor``."""
    scale = shorter / min(height, width)
    if height < width:
        new_height, new_width = shorter, scale * width
    else:
        new_height, new_width = scale * height, shorter
    if max(new_height, new_width) > longer:
        scale = longer / max(new_height, new_width)
        new_height, new_width = scale * new_height, scale * new_width
    new_height, new_width = int(new_height + 0.5), int(new_width + 0.5)
    return new_height // size_divisor * size_divisor, new_width // size_divisor * size_divisor


class ViltImageProcessor(ImageProcessor):
    """``processor(images)`` -> ``pixel_values`` (batch, 3, H, W) and, with ``do_pad`` (the
    default), ``pixel_mask`` (batch, H, W): 1 on real pixels, 0 on the padding."""

    image_processor_type = "ViltImageProcessor"
    model_input_names = ("pixel_values", "pixel_mask")
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"shortest_edge": 384}, "resample": 3,
                "image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD,
                "size_divisor": 32, "do_pad": True}

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        if size is None:
            return {"shortest_edge": 384}
        return size_dict(size, False)

    def output_size(self, height: int, width: int, size: dict, size_divisor: int = 32) -> tuple[int, int]:
        shorter = size.get("shortest_edge")
        if shorter is None:
            raise InputError(f"ViltImageProcessor needs size={{'shortest_edge': ...}}, got {size}.")
        longer = int(MAX_LONGER_EDGE / MAX_SHORTER_EDGE * shorter)
        new_height, new_width = vilt_output_size(height, width, shorter, longer, size_divisor)
        if new_height < 1 or new_width < 1:
            raise InputError(f"The image ({width}x{height}) is too thin for ViLT: resized to a "
                             f"short side of {shorter}, its other side rounds to less than "
                             f"{size_divisor} pixels.")
        return new_height, new_width

    def resize(self, image: "Image.Image", opts: dict) -> "Image.Image":
        height, width = self.output_size(image.height, image.width, opts["size"],
                                         int(opts["size_divisor"]))
        return resize(image, height, width, opts["resample"])

    def collate(self, arrays: list, opts: dict | None = None) -> BatchFeature:
        """uint8 images -> ``pixel_values`` zero-padded (bottom, right) to the largest image,
        and their ``pixel_mask``."""
        import numpy as np

        opts = opts or self.options()
        if not opts["do_pad"]:
            return super().collate(arrays, opts)
        pixels, mask = pad_batch([np.asarray(a) for a in arrays])
        return BatchFeature(pixel_values=self.normalize_padded(pixels, mask, **opts),
                            pixel_mask=mask)

    def normalize_padded(self, pixels, mask, **opts: Any):
        """Padded uint8 pixels -> normalised values with the padding at 0 (as the reference
        pads after normalising)."""
        values = self.normalize_batch(pixels, **opts)
        return values * mask[:, None].to(device=values.device, dtype=values.dtype)
