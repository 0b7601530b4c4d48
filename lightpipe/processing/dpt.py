"""DPT's image processor (also Depth Anything's): resize to ``size``, optionally keeping the
aspect ratio and rounding each side to a multiple of ``ensure_multiple_of``; rescale,
normalise; optionally centre-pad to a multiple of ``size_divisor`` (after normalising, with
zeros). Depth post-processing resizes the prediction to the original image (bicubic).

Matches transformers' ``DPTImageProcessorPil`` (the PIL backend).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .image import ImageProcessor, resize
from .segformer import SegmentationMapsMixin

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


def multiple_size(height: int, width: int, target_height: int, target_width: int,
                  keep_aspect_ratio: bool, multiple: int) -> tuple[int, int]:
    """The size DPT resizes to: each side scaled to the target (with ``keep_aspect_ratio``, both
    by the scale that changes the image least), then rounded to a multiple of ``multiple``."""
    scale_height, scale_width = target_height / height, target_width / width
    if keep_aspect_ratio:
        if abs(1 - scale_width) < abs(1 - scale_height):
            scale_height = scale_width
        else:
            scale_width = scale_height

    def constrain(value: float) -> int:
        rounded = round(value / multiple) * multiple  # Python's round: halves to even
        return math.ceil(value / multiple) * multiple if rounded < 0 else rounded

    return constrain(scale_height * height), constrain(scale_width * width)


class DPTImageProcessor(SegmentationMapsMixin, ImageProcessor):
    image_processor_type = "DPTImageProcessor"
    defaults = {**ImageProcessor.defaults, "size": {"height": 384, "width": 384}, "resample": 3,
                "keep_aspect_ratio": False, "ensure_multiple_of": 1, "size_divisor": None,
                "do_reduce_labels": False}

    def output_size_for(self, height: int, width: int, opts: dict) -> tuple[int, int]:
        size = opts["size"]
        if "height" not in size or "width" not in size:
            raise InputError(f"DPTImageProcessor needs size={{'height': ..., 'width': ...}}; got {size}.")
        multiple = int(opts["ensure_multiple_of"] or 1)
        if multiple < 1:
            raise InputError(f"ensure_multiple_of must be a positive integer, got {multiple}.")
        return multiple_size(height, width, size["height"], size["width"],
                             bool(opts["keep_aspect_ratio"]), multiple)

    def resize(self, image: "Image.Image", opts: dict) -> "Image.Image":
        height, width = self.output_size_for(image.height, image.width, opts)
        return resize(image, height, width, opts["resample"])

    def normalize_batch(self, pixels: "torch.Tensor", dtype: Any = None, **options: Any) -> "torch.Tensor":
        """As ImageProcessor's, then the zero padding of ``do_pad`` / ``size_divisor``."""
        import torch.nn.functional as F

        opts = options or self.options()
        values = super().normalize_batch(pixels, dtype=dtype, **opts)
        divisor = opts.get("size_divisor")
        if not opts.get("do_pad") or not divisor:
            return values
        height, width = values.shape[-2:]
        extra_h = math.ceil(height / divisor) * divisor - height
        extra_w = math.ceil(width / divisor) * divisor - width
        # (left, right, top, bottom): the smaller half first, as the reference
        return F.pad(values, (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2))

    def prepare_labels(self, label_map: Any, opts: dict) -> "np.ndarray":
        import numpy as np

        labels = super().prepare_labels(label_map, opts)
        divisor = opts.get("size_divisor")
        if not opts.get("do_pad") or not divisor:
            return labels
        extra = [math.ceil(side / divisor) * divisor - side for side in labels.shape]
        return np.pad(labels, [(e // 2, e - e // 2) for e in extra])

    def post_process_depth_estimation(self, outputs: Any, target_sizes: Any = None) -> list[dict]:
        """``predicted_depth`` (batch, h, w) -> one dict per image with its depth resized
        (bicubic) to that image's target size (height, width), when given."""
        import torch
        import torch.nn.functional as F

        depths = outputs["predicted_depth"]
        if target_sizes is not None and len(target_sizes) != len(depths):
            raise InputError("Pass as many target sizes as images (the batch size of the depth).")
        results = []
        for index, depth in enumerate(depths):
            if target_sizes is not None and target_sizes[index] is not None:
                size = target_sizes[index]
                size = tuple(int(s) for s in (size.tolist() if isinstance(size, torch.Tensor) else size))
                depth = F.interpolate(depth[None, None], size=size, mode="bicubic",
                                      align_corners=False).squeeze()
            results.append({"predicted_depth": depth})
        return results
