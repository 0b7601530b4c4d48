"""Idefics3's and SmolVLM's image processor and processor (as transformers'
``Idefics3ImageProcessorPil`` / ``Idefics3Processor``, ``SmolVLMImageProcessorPil`` /
``SmolVLMProcessor``; images only, no videos).

An image is resized so its longest edge is ``size["longest_edge"]`` (the other side even, both
at most 4096), then, with ``do_image_splitting``, grown to multiples of
``max_image_size["longest_edge"]`` (M) and cut into M x M tiles, row by row, followed by the
whole image warped to M x M (the global view); without splitting it is only warped to M x M.
The views are rescaled and normalised, and a batch is zero-padded to the most views of a prompt
and the largest view: ``pixel_values`` (prompts, views, 3, H, W) and ``pixel_attention_mask``
(prompts, views, H, W) of the real pixels.

The processor gives each prompt its images in order (one per ``<image>``) and writes each
``<image>`` out as the model reads it: per tile ``<fake_token_around_image><row_r_col_c>`` and
``image_seq_len`` image tokens, a newline after each row of tiles, then
``\\n<fake_token_around_image><global-img>``, the global view's image tokens and a closing
``<fake_token_around_image>`` (an unsplit image: only that last part, without the newline).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..jsonfile import read_json
from . import Processor, preprocessor_settings
from .features import BatchFeature
from .image import ImageProcessor, pad_batch, resize
from .image_io import _is_array, array_to_pil, image_list, load_image, to_rgb, to_rgb_on_white
from .llava import LlavaProcessor

MAX_IMAGE_SIZE = 4096  # the reference's cap on either side after the first resize


# --- sizes -------------------------------------------------------------------------------------
def longest_edge_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """The longest side set to ``longest`` (up or down), the other scaled, truncated and made
    even; then both brought under MAX_IMAGE_SIZE."""
    ratio = width / height
    if width >= height:
        width, height = longest, int(longest / ratio)
        height += height % 2
    else:
        height, width = longest, int(longest * ratio)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    ratio = width / height
    if width >= height and width > MAX_IMAGE_SIZE:
        width, height = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE / ratio)
    elif height > width and height > MAX_IMAGE_SIZE:
        height, width = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE * ratio)
    return max(height, 1), max(width, 1)


def tile_grid_size(height: int, width: int, tile: int) -> tuple[int, int]:
    """The size the image is grown to before it is cut: both sides up to multiples of
    ``tile``, the short one from the long one's new length and the aspect ratio."""
    ratio = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / ratio) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * ratio) / tile) * tile
    return height, width


# --- the image processor -------------------------------------------------------------------
class Idefics3ImageProcessor(ImageProcessor):
    """``processor(images)`` -> ``pixel_values`` (prompts, views, 3, H, W) and
    ``pixel_attention_mask``; ``images`` is one image, a list (one prompt's images) or a list
    of lists (per prompt). ``return_row_col_info=True`` adds each image's tile ``rows`` /
    ``cols`` (0 / 0: not split)."""

    image_processor_type = "Idefics3ImageProcessor"
    model_input_names = ("pixel_values", "pixel_attention_mask")
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"longest_edge": 4 * 364}, "resample": 1,
                "do_convert_rgb": True, "do_pad": True, "do_image_splitting": True,
                "max_image_size": {"longest_edge": 364}, "return_row_col_info": False}

    def views(self, image: Any, opts: dict) -> tuple[list, int, int]:
        """One image -> its uint8 (H, W, 3) views, tile rows, tile cols."""
        import numpy as np
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = array_to_pil(image) if _is_array(image) else load_image(image)
        image = to_rgb_on_white(image) if opts["do_convert_rgb"] else to_rgb(image)
        resample, size = opts["resample"], opts["size"]
        if opts["do_resize"]:
            height, width = longest_edge_size(image.height, image.width, size["longest_edge"]) \
                if "longest_edge" in size else (size["height"], size["width"])
            image = resize(image, height, width, resample)
        tile = int(opts["max_image_size"]["longest_edge"])
        if not opts["do_image_splitting"]:
            return [np.asarray(resize(image, tile, tile, resample))], 0, 0
        image = resize(image, *tile_grid_size(image.height, image.width, tile), resample)
        if image.height <= tile and image.width <= tile:
            return [np.asarray(image)], 0, 0
        pixels = np.asarray(image)
        rows, cols = image.height // tile, image.width // tile
        views = [pixels[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]
                 for r in range(rows) for c in range(cols)]
        return views + [np.asarray(resize(image, tile, tile, resample))], rows, cols

    def preprocess(self, images: Any = None, return_tensors: str | None = None, device: Any = None,
                   **kwargs: Any) -> BatchFeature:
        import numpy as np
        import torch

        if images is None:
            raise InputError(f"{type(self).__name__} needs images: one image, a list of them, or "
                             "a list of lists (one per prompt).")
        if isinstance(images, (list, tuple)) and images and \
                all(isinstance(group, (list, tuple)) for group in images):
            groups = [list(group) for group in images]
        else:
            groups = [image_list(images)[0]]
        if not any(groups):
            raise InputError("No images were given (an empty list).")
        opts = self.options(**kwargs)
        made = [[self.views(image, opts) for image in group] for group in groups]
        flat = [view for group in made for views, _, _ in group for view in views]
        counts = [sum(len(views) for views, _, _ in group) for group in made]
        pixels, mask = pad_batch([np.ascontiguousarray(view) for view in flat])
        values = self.normalize_batch(pixels, **opts)
        values.numpy()[...] *= mask.numpy()[:, None].astype(np.float32)  # padding stays 0
        if opts["do_pad"]:
            most = max(counts)
            pixel_values = values.new_zeros((len(groups), most, *values.shape[1:]))
            pixel_mask = mask.new_zeros((len(groups), most, *mask.shape[1:]))
            for row, (start, count) in enumerate(zip(np.cumsum([0] + counts[:-1]), counts)):
                pixel_values[row, :count] = values[start:start + count]
                pixel_mask[row, :count] = mask[start:start + count]
            output = BatchFeature(pixel_values=pixel_values, pixel_attention_mask=pixel_mask)
        else:
            output = BatchFeature(pixel_values=list(values.split(counts)))
        if opts["return_row_col_info"]:
            output["rows"] = [[rows for _, rows, _ in group] for group in made]
            output["cols"] = [[cols for _, _, cols in group] for group in made]
        if device is not None:
            output = output.to(device)
        if return_tensors in ("np", "numpy") or (return_tensors is None and opts["do_pad"]):
            return BatchFeature({k: v.numpy() if isinstance(v, torch.Tensor) else v
                                 for k, v in output.items()})
        return output


class SmolVLMImageProcessor(Idefics3ImageProcessor):
    """SmolVLM's: Idefics3's rules under its own name."""

    image_processor_type = "SmolVLMImageProcessor"


# --- the processor ---------------------------------------------------------------------------
class Idefics3Processor(LlavaProcessor):
    """``processor(text="User:<image>What is it?", images=image)`` -> input_ids (each
    ``<image>`` written out as its tiles' and global view's tokens), attention_mask,
    pixel_values, pixel_attention_mask."""

    image_processor_class = Idefics3ImageProcessor

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, image_seq_len: int | None = None,
                 chat_template: str | None = None, **unused: Any):
        Processor.__init__(self, tokenizer=tokenizer, image_processor=image_processor)
        self.image_seq_len = image_seq_len
        self.chat_template = chat_template
        self.image_token = getattr(tokenizer, "image_token", None) or "<image>"
        self.fake_image_token = getattr(tokenizer, "fake_image_token", None) or "<fake_token_around_image>"
        self.global_image_token = getattr(tokenizer, "global_image_token", None) or "<global-img>"
        folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
        if image_seq_len is None and str(folder) and folder.is_dir():
            for key, value in _settings(folder).items():  # built by AutoProcessor from the parts
                setattr(self, key, value)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "Idefics3Processor":
        from ..hub import resolve
        from ..tokenization import AutoTokenizer

        folder = resolve(name_or_path, weights=False, **kwargs)
        settings = preprocessor_settings(folder, "image_processor")
        if not settings:
            raise InputError(f"{name_or_path} has no image processor settings "
                             "(preprocessor_config.json or processor_config.json).")
        image_processor = cls.image_processor_class(**{
            k: v for k, v in settings.items() if k not in ("image_processor_type", "processor_class")})
        return cls(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(folder),
                   **_settings(folder))

    def ready(self) -> bool:
        return bool(self.image_seq_len)

    def image_prompt(self, rows: int, cols: int) -> str:
        """What one ``<image>`` becomes for an image cut into ``rows x cols`` tiles."""
        if not self.image_seq_len:
            raise InputError(f"This {type(self).__name__} has no image_seq_len: load it with "
                             "from_pretrained(folder) or pass image_seq_len=.")
        tokens = self.image_token * int(self.image_seq_len)
        global_view = f"{self.fake_image_token}{self.global_image_token}{tokens}{self.fake_image_token}"
        if rows == 0 and cols == 0:
            return global_view
        grid = "".join("".join(f"{self.fake_image_token}<row_{r + 1}_col_{c + 1}>{tokens}"
                               for c in range(cols)) + "\n" for r in range(rows))
        return f"{grid}\n{global_view}"

    def image_counts(self, features: dict) -> list[int]:
        """Image tokens per image (needs the image processor's rows / cols)."""
        return [(r * c + 1) * int(self.image_seq_len)
                for rows, cols in zip(features["rows"], features["cols"]) for r, c in zip(rows, cols)]

    def _group(self, images: Any, texts: list[str] | None) -> list[list]:
        """The images per prompt: a list of lists as given, else dealt out in order, as many to
        each prompt as it has image tokens."""
        if isinstance(images, (list, tuple)) and images and \
                all(isinstance(group, (list, tuple)) for group in images):
            groups = [list(group) for group in images]
        else:
            listed = image_list(images)[0]
            if texts is None:
                return [listed]
            groups, start = [], 0
            for text in texts:
                count = text.count(self.image_token)
                groups.append(listed[start:start + count])
                start += count
            if start < len(listed):
                groups.append(listed[start:])
        if texts is not None:
            wanted = [text.count(self.image_token) for text in texts]
            if wanted != [len(group) for group in groups]:
                raise InputError(f"The prompts have {wanted} {self.image_token} tokens but "
                                 f"{[len(g) for g in groups]} images were given per prompt: put one "
                                 f"{self.image_token} in the text where each image goes.")
        return groups

    def __call__(self, text: Any = None, images: Any = None, return_tensors: str | None = "pt",
                 **kwargs: Any):
        from ..tokenization import BatchEncoding

        if text is None and images is None:
            raise InputError("Pass text= (with one <image> per image) and/or images= to the processor.")
        texts = None if text is None else [text] if isinstance(text, str) else list(text)
        if texts is not None and not all(isinstance(t, str) for t in texts):
            raise InputTypeError("text must be a string or a list of strings (prompts with <image> "
                                 "where each image goes).")
        if images is None:
            return super().__call__(text=texts, return_tensors=return_tensors, **kwargs)
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in self.image_processor.defaults}
        features = self.image_processor(self._group(images, texts), return_tensors="pt",
                                        **{**options, "return_row_col_info": True})
        rows, cols = features.pop("rows"), features.pop("cols")
        if texts is None:
            return BatchEncoding(dict(features))
        prompts = iter([self.image_prompt(r, c) for row, col in zip(rows, cols) for r, c in zip(row, col)])
        pattern = re.escape(self.image_token)
        texts = [re.sub(pattern, lambda _: next(prompts), t) for t in texts]
        encoded = super().__call__(text=texts, return_tensors=return_tensors, **kwargs)
        return BatchEncoding({**encoded, **features})


class SmolVLMProcessor(Idefics3Processor):
    """SmolVLM's processor for images: Idefics3's expansion (its tokens named by the tokenizer)."""

    image_processor_class = SmolVLMImageProcessor


def _settings(folder: Path) -> dict:
    """image_seq_len and chat_template from processor_config.json; image_seq_len from the model's
    config.json when it does not say ((image_size / patch_size)^2 / scale_factor^2)."""
    settings = read_json(folder / "processor_config.json")
    length = settings.get("image_seq_len")
    if length is None:
        model = read_json(folder / "config.json")
        vision = model.get("vision_config") or {}
        if vision.get("image_size") and vision.get("patch_size"):
            length = (vision["image_size"] // vision["patch_size"]) ** 2 // model.get("scale_factor", 2) ** 2
    return {"image_seq_len": length or 169, "chat_template": settings.get("chat_template")}
