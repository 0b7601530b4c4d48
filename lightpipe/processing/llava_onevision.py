"""LLaVA-OneVision's image processor and processor (as transformers'
``LlavaOnevisionImageProcessorPil`` / ``LlavaOnevisionProcessor``, images only).

An image alone in its prompt becomes views: the whole image warped to ``size``, then the tiles
of its best grid from ``image_grid_pinpoints`` (the image fitted in the grid, aspect kept,
centred on black, cut into ``size`` squares). An image of a multi-image prompt is one view,
padded square with the mean colour first. ``pixel_values`` is (images, most views, 3, size,
size), zero-padded; ``image_sizes`` the original (height, width) of each image. The processor
expands each ``<image>`` to the number of features the model puts there.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..jsonfile import read_json
from ..models.llava_onevision import ONEVISION_DEFAULTS, max_views, select_best_resolution, unpadded_size
from . import Processor
from .llava import LlavaProcessor, image_processor_from
from .features import BatchFeature
from .image import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ImageProcessor, resize
from .image_io import _is_array, array_to_pil, image_list, load_image, to_rgb, to_rgb_on_white


class LlavaOnevisionImageProcessor(ImageProcessor):
    image_processor_type = "LlavaOnevisionImageProcessor"
    model_input_names = ("pixel_values", "image_sizes", "batch_num_images")
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"height": 384, "width": 384}, "resample": 3,
                "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
                "do_convert_rgb": True, "do_pad": True,
                "image_grid_pinpoints": ONEVISION_DEFAULTS["image_grid_pinpoints"]}

    def _views(self, image, tiled: bool, opts: dict) -> list:
        """One image (PIL, RGB) -> its uint8 (side, side, 3) views."""
        import numpy as np
        from PIL import Image

        side_h, side_w = opts["size"]["height"], opts["size"]["width"]
        if not tiled:
            pixels = np.asarray(image)
            height, width = pixels.shape[:2]
            if height != width:
                longest = max(height, width)
                color = [int(c * 255) for c in opts["image_mean"]]
                square = np.empty((longest, longest, 3), dtype=np.uint8)
                square[:] = color
                top, left = (longest - height) // 2, (longest - width) // 2
                square[top:top + height, left:left + width] = pixels
                image = Image.fromarray(square)
            return [np.asarray(resize(image, side_h, side_w, opts["resample"]))]
        best_h, best_w = select_best_resolution(image.height, image.width, opts["image_grid_pinpoints"])
        scale_w, scale_h = best_w / image.width, best_h / image.height
        if scale_w < scale_h:
            new_h, new_w = min(math.ceil(image.height * scale_w), best_h), best_w
        else:
            new_h, new_w = best_h, min(math.ceil(image.width * scale_h), best_w)
        fitted = np.asarray(resize(image, new_h, new_w, opts["resample"]))
        canvas = np.zeros((best_h, best_w, 3), dtype=np.uint8)
        top, left = (best_h - new_h) // 2, (best_w - new_w) // 2
        canvas[top:top + new_h, left:left + new_w] = fitted
        views = [np.asarray(resize(image, side_h, side_w, opts["resample"]))]
        for row in range(0, best_h, side_h):
            for col in range(0, best_w, side_w):
                views.append(np.ascontiguousarray(canvas[row:row + side_h, col:col + side_w]))
        return views

    def preprocess(self, images: Any = None, return_tensors: str | None = None, device: Any = None,
                   **kwargs: Any) -> BatchFeature:
        import numpy as np
        import torch
        from PIL import Image

        if images is None:
            raise InputError("LlavaOnevisionImageProcessor needs images: one image or a list of them.")
        if isinstance(images, (list, tuple)) and images and isinstance(images[0], (list, tuple)):
            groups = [list(group) for group in images if group]
        else:
            groups = [[item] for item in image_list(images)[0]]
        if not groups:
            raise InputError("No images were given (an empty list).")
        opts = self.options(**kwargs)
        batch_num_images = [len(group) for group in groups]
        stacks, sizes = [], []
        for group in groups:
            for item in group:
                image = item if isinstance(item, Image.Image) else \
                    array_to_pil(item) if _is_array(item) else load_image(item)
                image = to_rgb_on_white(image) if opts["do_convert_rgb"] else to_rgb(image)
                views = self._views(image, len(group) == 1, opts)
                stacks.append(self.normalize_batch(torch.from_numpy(np.stack(views)), **opts))
                sizes.append([image.height, image.width])
        most = max(stack.shape[0] for stack in stacks)
        if opts["do_pad"]:
            stacks = [torch.cat([s, s.new_zeros((most - s.shape[0], *s.shape[1:]))]) for s in stacks]
            pixel_values: Any = torch.stack(stacks)
        else:
            pixel_values = stacks
        output = BatchFeature(pixel_values=pixel_values, image_sizes=torch.tensor(sizes),
                              batch_num_images=torch.tensor(batch_num_images))
        if device is not None:
            output = output.to(device)
        if return_tensors in (None, "np", "numpy") and opts["do_pad"]:
            return BatchFeature({k: v.numpy() for k, v in output.items()})
        return output


class LlavaOnevisionProcessor(LlavaProcessor):
    """``processor(text="<image>...", images=image)`` -> input_ids (each ``<image>`` expanded),
    attention_mask, pixel_values, image_sizes, batch_num_images."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, num_image_tokens: int | None = None,
                 vision_feature_select_strategy: str | None = None, chat_template: str | None = None,
                 image_token: str = "<image>", vision_aspect_ratio: str = "anyres_max_9", **unused: Any):
        Processor.__init__(self, tokenizer=tokenizer, image_processor=image_processor)
        self.num_image_tokens = num_image_tokens
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.chat_template = chat_template
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.vision_aspect_ratio = vision_aspect_ratio
        folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
        if num_image_tokens is None and str(folder) and folder.is_dir():
            for key, value in _settings(folder).items():  # built by AutoProcessor from the parts
                if value is not None:
                    setattr(self, key, value)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "LlavaOnevisionProcessor":
        from ..hub import resolve
        from ..tokenization import AutoTokenizer

        folder = resolve(name_or_path, weights=False, **kwargs)
        image_processor = image_processor_from(folder, LlavaOnevisionImageProcessor) or \
            LlavaOnevisionImageProcessor()
        return cls(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(folder),
                   **{k: v for k, v in _settings(folder).items() if v is not None})

    def image_token_count(self, height: int, width: int, single: bool, side: int) -> int:
        """The features the model puts for one image of (height, width)."""
        if not self.num_image_tokens:
            raise InputError("This LlavaOnevisionProcessor has no num_image_tokens: load it with "
                             "from_pretrained(folder) or pass num_image_tokens=.")
        base = int(self.num_image_tokens)
        if not single:
            count = base + 1
        else:
            best_h, best_w = select_best_resolution(height, width, self.image_processor.image_grid_pinpoints)
            patches = int(math.sqrt(base))
            grid_h, grid_w = patches * (best_h // side), patches * (best_w // side)
            _, rows, cols = unpadded_size(height, width, grid_h, grid_w)
            ratio = math.sqrt(rows * cols / (max_views(self.vision_aspect_ratio) * patches ** 2))
            if ratio > 1.1:
                rows, cols = int(rows // ratio), int(cols // ratio)
            count = rows * cols + rows + base
        return count - 1 if self.vision_feature_select_strategy == "default" else count

    def ready(self) -> bool:
        return bool(self.num_image_tokens)

    def image_counts(self, features: dict) -> list[int]:
        singles = [int(n) == 1 for n in features["batch_num_images"].tolist() for _ in range(int(n))]
        side = features["pixel_values"].shape[-2]
        return [self.image_token_count(h, w, single, side)
                for (h, w), single in zip(features["image_sizes"].tolist(), singles)]


def _settings(folder: Path) -> dict:
    settings = read_json(folder / "processor_config.json")
    model = read_json(folder / "config.json")
    vision = model.get("vision_config") or {}
    tokens = settings.get("num_image_tokens")
    if tokens is None and vision.get("image_size") and vision.get("patch_size"):
        tokens = (vision["image_size"] // vision["patch_size"]) ** 2
    return {"num_image_tokens": tokens,
            "vision_feature_select_strategy": settings.get("vision_feature_select_strategy")
            or model.get("vision_feature_select_strategy", "full"),
            "image_token": settings.get("image_token"),
            "vision_aspect_ratio": settings.get("vision_aspect_ratio")
            or model.get("vision_aspect_ratio", "anyres_max_9"),
            "chat_template": settings.get("chat_template")}
