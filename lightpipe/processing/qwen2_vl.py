"""Qwen2-VL's image processor and processor (as transformers' ``Qwen2VLImageProcessorPil`` and
``Qwen2VLProcessor``; Qwen2.5-VL uses the same two). Images only: videos are not supported.

An image is resized (PIL, bicubic) to the nearest size whose sides are multiples of
``patch_size * merge_size`` with a pixel count between ``size["shortest_edge"]`` and
``size["longest_edge"]`` (``min_pixels`` / ``max_pixels`` in older configs; ``smart_resize``),
rescaled and normalised, then cut into patches: ``pixel_values`` is (patches of all the images,
channels * temporal_patch_size * patch_size**2), the frame repeated ``temporal_patch_size``
times, patches ordered in ``merge_size`` x ``merge_size`` blocks; ``image_grid_thw`` is each
image's (1, rows, columns) of patches. The processor expands each ``<|image_pad|>`` of the text
to ``t * h * w / merge_size**2`` tokens (one per merged feature) and adds ``mm_token_type_ids``
(1 on image tokens), as the reference.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..jsonfile import read_json
from . import Processor
from .features import BatchFeature
from .image import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ImageProcessor, resize, size_dict
from .image_io import image_list
from .llava import LlavaProcessor, image_processor_from

if TYPE_CHECKING:
    import torch
    from PIL import Image


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width): multiples of ``factor``, near the image's aspect, with a pixel count in
    [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > 200:
        raise InputError(f"The image is {width}x{height}: Qwen2-VL's image processor takes aspect "
                         "ratios up to 200; crop or pad the image first.")
    new_height, new_width = round(height / factor) * factor, round(width / factor) * factor
    if new_height * new_width > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        new_height = max(factor, math.floor(height / beta / factor) * factor)
        new_width = max(factor, math.floor(width / beta / factor) * factor)
    elif new_height * new_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_height = math.ceil(height * beta / factor) * factor
        new_width = math.ceil(width * beta / factor) * factor
    return new_height, new_width


class Qwen2VLImageProcessor(ImageProcessor):
    image_processor_type = "Qwen2VLImageProcessor"
    model_input_names = ("pixel_values", "image_grid_thw")
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
                "resample": 3, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
                "do_convert_rgb": True, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}

    def __init__(self, **settings: Any):
        size = dict(settings.pop("size", None) or self.defaults["size"])
        for old, new in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
            if settings.get(old) is not None:  # the older names win, as the reference's
                size[new] = settings.pop(old)
            settings.pop(old, None)
        super().__init__(size=size, **settings)

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        size = size_dict(size, False)
        if not size or not size.get("shortest_edge") or not size.get("longest_edge"):
            raise InputError(f"Qwen2-VL's image processor needs size={{'shortest_edge': min "
                             f"pixels, 'longest_edge': max pixels}}; got {size}.")
        return size

    def resize(self, image: "Image.Image", opts: dict) -> "Image.Image":
        factor = opts["patch_size"] * opts["merge_size"]
        size = opts["size"]
        height, width = smart_resize(image.height, image.width, factor, size["shortest_edge"],
                                     size["longest_edge"])
        return resize(image, height, width, opts["resample"])

    def patchify(self, pixels: "torch.Tensor", opts: dict) -> tuple["torch.Tensor", list[int]]:
        """(3, height, width) -> ((patches, 3 * T * P * P), [1, rows, columns])."""
        patch, merge, temporal = opts["patch_size"], opts["merge_size"], opts["temporal_patch_size"]
        channels, height, width = pixels.shape
        rows, cols = height // patch, width // patch
        blocks = pixels.reshape(channels, rows // merge, merge, patch, cols // merge, merge, patch)
        blocks = blocks.permute(1, 4, 2, 5, 0, 3, 6)  # (rows/m, cols/m, m, m, C, P, P)
        blocks = blocks[:, :, :, :, :, None].expand(*blocks.shape[:5], temporal, patch, patch)
        return blocks.reshape(rows * cols, channels * temporal * patch * patch), [1, rows, cols]

    def preprocess(self, images: Any = None, return_tensors: str | None = None, device: Any = None,
                   **kwargs: Any) -> BatchFeature:
        import torch

        if images is None:
            raise InputError("Qwen2VLImageProcessor needs images: one image or a list of them.")
        items, _ = image_list(images)
        items = [image for item in items for image in (item if isinstance(item, (list, tuple)) else [item])]
        if not items:
            raise InputError("No images were given (an empty list).")
        opts = self.options(**kwargs)
        rows, grids = [], []
        for item in items:  # each its own size
            pixels = torch.from_numpy(self.prepare(item, **opts).copy())[None]
            patches, grid = self.patchify(self.normalize_batch(pixels, **opts)[0], opts)
            rows.append(patches)
            grids.append(grid)
        output = BatchFeature(pixel_values=torch.cat(rows), image_grid_thw=torch.tensor(grids))
        if device is not None:
            output = output.to(device)
        if return_tensors in (None, "np", "numpy"):
            return BatchFeature({k: v.cpu().numpy() for k, v in output.items()})
        return output


class Qwen2VLProcessor(LlavaProcessor):
    """``processor(text="<|vision_start|><|image_pad|><|vision_end|>...", images=image)`` ->
    input_ids (each ``<|image_pad|>`` expanded), attention_mask, mm_token_type_ids,
    pixel_values, image_grid_thw."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 image_token: str = "<|image_pad|>", **unused: Any):
        Processor.__init__(self, tokenizer=tokenizer, image_processor=image_processor)
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.chat_template = chat_template
        folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
        if chat_template is None and str(folder) and folder.is_dir():  # built from the parts
            self.chat_template = read_json(folder / "processor_config.json").get("chat_template")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "Qwen2VLProcessor":
        from ..hub import resolve
        from ..tokenization import AutoTokenizer

        folder = resolve(name_or_path, weights=False, **kwargs)
        image_processor = image_processor_from(folder, Qwen2VLImageProcessor) or Qwen2VLImageProcessor()
        return cls(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(folder),
                   chat_template=read_json(folder / "processor_config.json").get("chat_template"))

    def ready(self) -> bool:
        return self.image_processor is not None and self.tokenizer is not None

    def image_counts(self, features: dict) -> list[int]:
        import torch

        merge = self.image_processor.merge_size
        grids = torch.as_tensor(features["image_grid_thw"]).reshape(-1, 3)
        return [int(count) // merge ** 2 for count in grids.prod(-1)]

    def __call__(self, text: Any = None, images: Any = None, return_tensors: str | None = "pt",
                 **kwargs: Any):
        output = super().__call__(text=text, images=images, return_tensors=return_tensors, **kwargs)
        if "input_ids" in output:
            image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
            ids = output["input_ids"]
            output["mm_token_type_ids"] = (ids == image_id).long() if hasattr(ids, "long") else \
                [[int(token == image_id) for token in row] for row in ids]
        return output


class Qwen2_5_VLProcessor(Qwen2VLProcessor):
    """Qwen2.5-VL's processor: Qwen2-VL's, for images."""
