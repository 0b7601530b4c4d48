"""Images: loading (path, URL, PIL, array, base64) and image processors.

Matches transformers' ``image_utils.load_image`` (EXIF orientation applied, then RGB) and the
PIL backends of its image processors (``image_processing_backends.PilBackend`` and the ViT,
CLIP, ConvNeXt and DETR processors): the same PIL resize (filter from the config), center crop,
rescale and normalise, so pixel values equal the reference's.

Few copies: an image is resized by PIL, cropped as a numpy view and written once into a uint8
batch; rescale and normalise then run on the whole batch at once (``normalize_batch``: numpy on
the CPU, torch on a GPU), which pipelines do just before the model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ModelNotFoundError
from ..families import by_class_name, by_model_type, load
from ..jsonfile import read_json
from . import AutoPreprocessor, Processor, preprocessor_settings
from .features import BatchFeature  # noqa: F401
from .image_io import (URL_MAX_BYTES, URL_TIMEOUT, _is_array, array_to_pil, fetch_url,  # noqa: F401
                       image_list, load_image, to_rgb, to_rgb_on_white, upright)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# --- sizes -----------------------------------------------------------------------------------
_SIZE_KEYS = ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"},
              {"longest_edge"}, {"max_height", "max_width"})


def size_dict(size: Any, default_to_square: bool = True, max_size: int | None = None,
              name: str = "size") -> dict | None:
    """A config's size (an int, (height, width) or a dict) -> a dict as transformers reads it."""
    if size is None and max_size is None:
        return None
    if isinstance(size, dict):
        result = {k: v for k, v in size.items() if v is not None}
    elif isinstance(size, int) or size is None:
        if default_to_square:
            result = {"height": size, "width": size}
        else:
            result = {"shortest_edge": size} if size is not None else {}
            if max_size is not None:
                result["longest_edge"] = max_size
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        result = {"height": size[0], "width": size[1]}
    elif isinstance(size, (list, tuple)) and len(size) == 1:
        return size_dict(size[0], default_to_square, max_size, name)
    else:
        raise InputError(f"{name}={size!r} is not a size: use an int, (height, width) or a dict.")
    if set(result) not in _SIZE_KEYS:
        raise InputError(f"{name} must have the keys height/width, shortest_edge (with or "
                         f"without longest_edge), longest_edge or max_height/max_width; got "
                         f"{sorted(result)}.")
    return result


def edge_size(height: int, width: int, shortest: int, longest: int | None = None) -> tuple[int, int]:
    """(new height, new width) with the short side at ``shortest`` and, when given, the long side
    at most ``longest`` (transformers' ``get_size_with_aspect_ratio``)."""
    raw = None
    if longest is not None:
        small, large = float(min(height, width)), float(max(height, width))
        if large / small * shortest > longest:
            raw = longest * small / large
            shortest = int(round(raw))
    if (height <= width and height == shortest) or (width <= height and width == shortest):
        return height, width
    if width < height:
        return (int(raw * height / width) if raw is not None else int(shortest * height / width)), shortest
    return shortest, (int(raw * width / height) if raw is not None else int(shortest * width / height))


def short_side_size(height: int, width: int, shortest: int) -> tuple[int, int]:
    """torchvision-style: the short side at ``shortest``, the long side scaled and truncated
    (transformers' ``get_resize_output_image_size`` with ``default_to_square=False``)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest * long / short)
    return (new_long, shortest) if width <= height else (shortest, new_long)


def max_hw_size(height: int, width: int, max_height: int, max_width: int) -> tuple[int, int]:
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)


# --- image processors ------------------------------------------------------------------------
class ImageProcessor:
    """Resize (PIL, filter ``resample``), center crop, rescale, normalise; as transformers' PIL
    image processors. ``processor(images, return_tensors="pt")`` -> ``{"pixel_values": (batch,
    3, height, width)}``. Subclasses set the family's defaults and resize rule."""

    image_processor_type = "ImageProcessor"
    model_input_names = ("pixel_values",)
    default_to_square = True
    defaults: dict[str, Any] = {
        "do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2,
        "do_center_crop": False, "crop_size": None, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD, "do_convert_rgb": None, "do_pad": False,
    }

    def __init__(self, **settings: Any):
        if "pad_and_return_pixel_mask" in settings and "do_pad" not in settings:
            settings["do_pad"] = settings.pop("pad_and_return_pixel_mask")  # the legacy name
        values = {**self.defaults}
        values.update({k: v for k, v in settings.items() if v is not None})
        self.extra = {k: v for k, v in settings.items() if k not in self.defaults}
        values["size"] = self._standard_size(values.get("size"), settings)
        values["crop_size"] = size_dict(values.get("crop_size"), True, name="crop_size")
        for key, value in values.items():
            setattr(self, key, value)

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        return size_dict(size, self.default_to_square)

    def options(self, **overrides: Any) -> dict:
        """This processor's settings, with the call's overrides."""
        values = {key: getattr(self, key) for key in self.defaults}
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in values:
                raise TypeError(f"{type(self).__name__} got an unknown argument {key!r}; it takes "
                                f"{', '.join(sorted(values))}.")
            if key == "size":
                value = self._standard_size(value, {})
            elif key == "crop_size":
                value = size_dict(value, True, name="crop_size")
            values[key] = value
        return values

    # --- one image: PIL resize and crop, uint8 ---
    def output_size(self, height: int, width: int, size: dict) -> tuple[int, int]:
        if "shortest_edge" in size and "longest_edge" in size:
            return edge_size(height, width, size["shortest_edge"], size["longest_edge"])
        if "shortest_edge" in size:
            return short_side_size(height, width, size["shortest_edge"])
        if "max_height" in size:
            return max_hw_size(height, width, size["max_height"], size["max_width"])
        if "height" in size:
            return size["height"], size["width"]
        raise InputError(f"{type(self).__name__} cannot resize to {size}: it needs height and "
                         "width, or shortest_edge.")

    def prepare(self, image: Any, **options: Any) -> "np.ndarray":
        """One image -> (height, width, 3) uint8 after resize and crop (a view where possible)."""
        import numpy as np
        from PIL import Image

        opts = options or self.options()
        if not isinstance(image, Image.Image):
            image = load_image(image) if not _is_array(image) else array_to_pil(image)
        elif image.width == 0 or image.height == 0:
            raise InputError(f"The image is empty ({image.width}x{image.height} pixels).")
        image = to_rgb_on_white(image) if opts["do_convert_rgb"] else to_rgb(image)
        if opts["do_resize"]:
            image = self.resize(image, opts)
        pixels = np.asarray(image)
        if opts["do_center_crop"] and opts["crop_size"]:
            pixels = center_crop(pixels, opts["crop_size"]["height"], opts["crop_size"]["width"])
        return pixels

    def resize(self, image: "Image.Image", opts: dict) -> "Image.Image":
        height, width = self.output_size(image.height, image.width, opts["size"])
        return resize(image, height, width, opts["resample"])

    # --- a batch: rescale and normalise in torch ---
    def normalize_batch(self, pixels: "torch.Tensor", dtype: Any = None, **options: Any) -> "torch.Tensor":
        """(batch, height, width, 3) uint8 -> (batch, 3, height, width) float, rescaled and
        normalised as the reference (``x * factor``, then ``(x - mean) / std``, in float32).

        On the CPU this runs in numpy, on one thread: torch's element-wise kernels split such
        small tensors over its threads, and on a busy machine waiting for the slowest thread
        costs more than the work (a 16-image uint8 copy: 0.1 ms on one thread, 130 ms on two
        under load). On a GPU it runs in torch, on the device."""
        import numpy as np
        import torch

        opts = options or self.options()
        mean = np.asarray(_triple(opts["image_mean"]), dtype=np.float32)[:, None, None]
        std = np.asarray(_triple(opts["image_std"]), dtype=np.float32)[:, None, None]
        batch, height, width, channels = pixels.shape
        if pixels.device.type == "cpu":
            values = np.empty((batch, channels, height, width), dtype=np.float32)
            np.copyto(values, pixels.numpy().transpose(0, 3, 1, 2), casting="unsafe")
            if opts["do_rescale"]:
                values *= np.float32(opts["rescale_factor"])
            if opts["do_normalize"]:
                values -= mean
                values /= std
            result = torch.from_numpy(values)
        else:
            result = torch.empty((batch, channels, height, width), dtype=torch.float32,
                                 device=pixels.device)
            result.copy_(pixels.permute(0, 3, 1, 2))
            if opts["do_rescale"]:
                result.mul_(float(opts["rescale_factor"]))
            if opts["do_normalize"]:
                result.sub_(torch.from_numpy(mean).to(result.device)).div_(torch.from_numpy(std).to(result.device))
        return result if dtype is None or dtype == torch.float32 else result.to(dtype)

    def __call__(self, images: Any = None, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images: Any = None, return_tensors: str | None = None, device: Any = None,
                   data_format: Any = None, input_data_format: Any = None, **kwargs: Any) -> BatchFeature:
        import numpy as np

        if images is None:
            raise InputError(f"{type(self).__name__} needs images: one image or a list of them.")
        items, _ = image_list(images)
        if not items:
            raise InputError("No images were given (an empty list).")
        opts = self.options(**kwargs)
        arrays = [self.prepare(item, **opts) for item in items]
        output = self.collate(arrays, opts)
        if device is not None:
            output = output.to(device)
        if return_tensors in (None, "np", "numpy"):
            converted = BatchFeature()
            for key, value in output.items():
                rows = [row.numpy() for row in value]
                converted[key] = rows if return_tensors is None else np.stack(rows)
            return converted
        if return_tensors != "pt":
            raise InputError(f"return_tensors={return_tensors!r} is not supported: use 'pt', 'np' "
                             "or None.")
        return output

    def collate(self, arrays: list, opts: dict | None = None) -> BatchFeature:
        """uint8 images (all one size) -> normalised ``pixel_values``."""
        import numpy as np
        import torch

        opts = opts or self.options()
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InputError(f"These images have different sizes after resizing ({sorted(shapes)}); "
                             "set a fixed size (height and width, or a crop) to batch them.")
        batch = torch.from_numpy(np.stack(arrays))
        return BatchFeature(pixel_values=self.normalize_batch(batch, **opts))

    # --- config ---
    def to_dict(self) -> dict:
        values = {key: getattr(self, key) for key in self.defaults}
        for key in ("image_mean", "image_std"):
            if isinstance(values[key], tuple):
                values[key] = list(values[key])
        values["image_processor_type"] = self.image_processor_type
        return {**self.extra, **values}

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "preprocessor_config.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n",
                                                        encoding="utf-8")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "ImageProcessor":
        return AutoImageProcessor.from_pretrained(name_or_path, image_processor_class=cls, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, default=str)}"


def _triple(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * 3


def resize(image: "Image.Image", height: int, width: int, resample: Any) -> "Image.Image":
    from PIL import Image

    if (image.height, image.width) == (height, width):
        return image
    if height < 1 or width < 1:
        raise InputError(f"The image ({image.width}x{image.height}) would be resized to "
                         f"{width}x{height}: too thin to keep a pixel.")
    filter_ = Image.Resampling(int(getattr(resample, "value", resample) if resample is not None else 2))
    return image.resize((width, height), resample=filter_, reducing_gap=None)


def center_crop(pixels: "np.ndarray", height: int, width: int) -> "np.ndarray":
    """A (height, width) window from the middle of an HWC array; zero-padded where the image is
    smaller (as transformers' ``center_crop``)."""
    import numpy as np

    rows, cols = pixels.shape[:2]
    top, left = (rows - height) // 2, (cols - width) // 2
    if top >= 0 and left >= 0:
        return pixels[top:top + height, left:left + width]
    new_rows, new_cols = max(height, rows), max(width, cols)
    canvas = np.zeros((new_rows, new_cols) + pixels.shape[2:], dtype=pixels.dtype)
    pad_top, pad_left = -(-(new_rows - rows) // 2), -(-(new_cols - cols) // 2)
    canvas[pad_top:pad_top + rows, pad_left:pad_left + cols] = pixels
    top, left = top + pad_top, left + pad_left
    return canvas[max(0, top):min(new_rows, top + height), max(0, left):min(new_cols, left + width)]


class ViTImageProcessor(ImageProcessor):
    image_processor_type = "ViTImageProcessor"


class CLIPImageProcessor(ImageProcessor):
    image_processor_type = "CLIPImageProcessor"
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"shortest_edge": 224}, "resample": 3,
                "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
                "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
                "do_convert_rgb": True}


class BitImageProcessor(CLIPImageProcessor):
    """BiT's and DINOv2's: CLIP's rules and defaults under their own name."""

    image_processor_type = "BitImageProcessor"


class DeiTImageProcessor(ImageProcessor):
    """ViT's rules; DeiT's defaults: bicubic to 256x256, then a 224x224 center crop."""

    image_processor_type = "DeiTImageProcessor"
    defaults = {**ImageProcessor.defaults, "size": {"height": 256, "width": 256}, "resample": 3,
                "do_center_crop": True, "crop_size": {"height": 224, "width": 224}}


class ConvNextImageProcessor(ImageProcessor):
    """Below 384 pixels: resize the short side to ``shortest_edge / crop_pct``, then crop a
    square of ``shortest_edge``; at 384 and above: warp to a square."""

    image_processor_type = "ConvNextImageProcessor"
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"shortest_edge": 384}, "resample": 3,
                "crop_pct": 224 / 256}

    def resize(self, image: "Image.Image", opts: dict) -> "Image.Image":
        shortest = opts["size"].get("shortest_edge")
        if shortest is None:
            raise InputError(f"ConvNextImageProcessor needs size={{'shortest_edge': ...}}, got {opts['size']}.")
        if shortest >= 384:
            return resize(image, shortest, shortest, opts["resample"])
        height, width = short_side_size(image.height, image.width, int(shortest / opts["crop_pct"]))
        image = resize(image, height, width, opts["resample"])
        top, left = (height - shortest) // 2, (width - shortest) // 2
        if top >= 0 and left >= 0:
            return image.crop((left, top, left + shortest, top + shortest))
        import numpy as np
        from PIL import Image

        return Image.fromarray(np.ascontiguousarray(center_crop(np.asarray(image), shortest, shortest)))


class DetrImageProcessor(ImageProcessor):
    """Resize keeping the aspect ratio (short side 800, long side at most 1333), normalise, and
    pad a batch to its largest image with a ``pixel_mask`` of the real pixels."""

    image_processor_type = "DetrImageProcessor"
    model_input_names = ("pixel_values", "pixel_mask")
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"shortest_edge": 800, "longest_edge": 1333},
                "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD,
                "do_pad": True}

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        if size is None:
            return {"shortest_edge": 800, "longest_edge": 1333}
        return size_dict(size, False, max_size=settings.get("max_size", 1333) if isinstance(size, int) else None)

    def collate(self, arrays: list, opts: dict | None = None) -> BatchFeature:
        import numpy as np

        opts = opts or self.options()
        if not opts["do_pad"]:
            return super().collate(arrays, opts)
        pixels, mask = pad_batch([np.asarray(a) for a in arrays])
        values = self.normalize_batch(pixels, **opts)
        values.numpy()[...] *= mask.numpy()[:, None].astype(np.float32)
        return BatchFeature(pixel_values=values, pixel_mask=mask)

    def post_process_object_detection(self, outputs: Any, threshold: float = 0.5,
                                      target_sizes: Any = None) -> list[dict]:
        """Boxes (center, size; relative) -> corners in pixels of ``target_sizes`` (height,
        width) per image; detections scoring above ``threshold`` (the no-object class left out)."""
        import torch

        logits, boxes = outputs["logits"], outputs["pred_boxes"]
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise InputError("Pass as many target sizes as images (the batch size of the logits).")
        scores, labels = torch.softmax(logits, -1)[..., :-1].max(-1)
        center_x, center_y, box_width, box_height = boxes.unbind(-1)
        corners = torch.stack([center_x - 0.5 * box_width, center_y - 0.5 * box_height,
                               center_x + 0.5 * box_width, center_y + 0.5 * box_height], dim=-1)
        if target_sizes is not None:
            sizes = torch.as_tensor(target_sizes if not isinstance(target_sizes, list)
                                    else [list(s) for s in target_sizes], dtype=torch.float32)
            heights, widths = sizes.unbind(1)
            corners = corners * torch.stack([widths, heights, widths, heights], 1)[:, None, :].to(corners)
        results = []
        for score, label, box in zip(scores, labels, corners):
            keep = score > threshold
            results.append({"scores": score[keep], "labels": label[keep], "boxes": box[keep]})
        return results


def pad_batch(images: list["np.ndarray"]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(height, width, 3) uint8 images -> one zero-padded (batch, H, W, 3) uint8 tensor (bottom
    and right) and a (batch, H, W) int64 mask of the real pixels (numpy: see normalize_batch)."""
    import numpy as np
    import torch

    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    pixels = np.zeros((len(images), height, width, images[0].shape[2]), dtype=np.uint8)
    mask = np.zeros((len(images), height, width), dtype=np.int64)
    for row, image in enumerate(images):
        pixels[row, :image.shape[0], :image.shape[1]] = image
        mask[row, :image.shape[0], :image.shape[1]] = 1
    return torch.from_numpy(pixels), torch.from_numpy(mask)


def processor_class_for(name: str | None) -> type[ImageProcessor] | None:
    if not name:
        return None
    base = re.sub(r"(Fast|Pil)$", "", name).replace("FeatureExtractor", "ImageProcessor")
    return _load_class(by_class_name("image_processor").get(base))


def _load_class(entry: str | None) -> type[ImageProcessor] | None:
    return load(entry) if entry else None


class AutoImageProcessor(AutoPreprocessor):
    """``AutoImageProcessor.from_pretrained(name)``: the image processor named in the folder's
    ``preprocessor_config.json`` (``image_processor_type``, or a legacy ``feature_extractor_type``
    such as ``ViTFeatureExtractor``)."""

    def __init__(self) -> None:
        raise TypeError("Use AutoImageProcessor.from_pretrained(name_or_path).")

    @classmethod
    def from_folder(cls, folder: Path, name_or_path: Any, *, use_fast: bool | None = None,
                    image_processor_class: type | None = None, **overrides: Any) -> ImageProcessor:
        settings = preprocessor_settings(folder, "image_processor")
        if not settings:
            raise ModelNotFoundError(
                f"{name_or_path} has no preprocessor_config.json (nor an image processor in "
                "processor_config.json), so there is no image processor to load. Check the "
                "folder or Hub id (image models ship this file).")
        named = settings.pop("image_processor_type", None) or settings.pop("feature_extractor_type", None)
        settings.pop("processor_class", None)
        target = image_processor_class
        if target is None or target is ImageProcessor:
            target = processor_class_for(named)
        if target is None:
            model_type = read_json(folder / "config.json").get("model_type")
            target = _load_class(by_model_type("image_processor").get(model_type or "")) or ImageProcessor
        return target(**{**settings, **overrides})


class CLIPProcessor(Processor):
    """CLIP's tokenizer and image processor: ``processor(text=..., images=..., padding=True)``."""

    def __init__(self, tokenizer: Any = None, image_processor: Any = None, feature_extractor: Any = None):
        super().__init__(tokenizer=tokenizer, image_processor=image_processor or feature_extractor)
