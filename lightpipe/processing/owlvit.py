"""OWL-ViT's image processor: resize to a square (768x768, bicubic, the aspect ratio not kept),
rescale and normalise with CLIP's mean and std; and the post-processing of the detector's
outputs into boxes in pixels of the original image.

Matches transformers' ``models/owlvit/image_processing_pil_owlvit.py`` (the same PIL resize, so
pixel values equal the reference's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError, InputTypeError
from . import Processor, _only
from .image import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ImageProcessor

if TYPE_CHECKING:
    import numpy as np
    import torch


def center_to_corners(boxes: "torch.Tensor") -> "torch.Tensor":
    """(..., 4) center x, center y, width, height -> xmin, ymin, xmax, ymax."""
    import torch

    center_x, center_y, width, height = boxes.unbind(-1)
    return torch.stack([center_x - 0.5 * width, center_y - 0.5 * height,
                        center_x + 0.5 * width, center_y + 0.5 * height], dim=-1)


def scale_boxes(boxes: "torch.Tensor", target_sizes: Any) -> "torch.Tensor":
    """Relative corner boxes (batch, boxes, 4) -> pixels of each (height, width) target size."""
    import torch

    sizes = torch.as_tensor([list(s) for s in target_sizes] if isinstance(target_sizes, (list, tuple))
                            else target_sizes)
    heights, widths = sizes.unbind(1)
    factor = torch.stack([widths, heights, widths, heights], dim=1)[:, None, :]
    return boxes * factor.to(boxes.device)


class OwlViTImageProcessor(ImageProcessor):
    image_processor_type = "OwlViTImageProcessor"
    defaults = {**ImageProcessor.defaults, "size": {"height": 768, "width": 768}, "resample": 3,
                "crop_size": {"height": 768, "width": 768}, "image_mean": OPENAI_CLIP_MEAN,
                "image_std": OPENAI_CLIP_STD, "do_convert_rgb": True}

    def __init__(self, **settings: Any):
        if "rescale" in settings and "do_rescale" not in settings:  # an old config's name
            settings["do_rescale"] = settings.pop("rescale")
        super().__init__(**settings)

    def post_process_object_detection(self, outputs: Any, threshold: float = 0.1,
                                      target_sizes: Any = None) -> list[dict]:
        """Per image: ``scores`` (sigmoid of each box's best query logit) above ``threshold``,
        ``labels`` (that query's index) and ``boxes`` (xmin, ymin, xmax, ymax; in pixels of
        ``target_sizes`` (height, width) when given)."""
        import torch

        logits, boxes = outputs["logits"], outputs["pred_boxes"]
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise InputError("Pass as many target sizes as images (the batch size of the logits).")
        best, labels = torch.max(logits, dim=-1)
        scores = torch.sigmoid(best)
        boxes = center_to_corners(boxes)
        if target_sizes is not None:
            boxes = scale_boxes(boxes, target_sizes)
        results = []
        for score, label, box in zip(scores, labels, boxes):
            keep = score > threshold
            results.append({"scores": score[keep], "labels": label[keep], "boxes": box[keep]})
        return results


class Owlv2ImageProcessor(OwlViTImageProcessor):
    """OWLv2's: pad to a square (bottom and right, black), then resize to 960x960 as
    scikit-image's ``resize`` (a Gaussian blur against aliasing when shrinking, then linear
    interpolation, mirrored edges), rescale and normalise. Boxes are relative to the padded
    square, so ``post_process_object_detection`` scales them by the longer side.

    Matches transformers' ``models/owlv2/image_processing_pil_owlv2.py`` (which calls scipy;
    this is the same arithmetic in numpy)."""

    image_processor_type = "Owlv2ImageProcessor"
    square_boxes = True
    defaults = {**OwlViTImageProcessor.defaults, "size": {"height": 960, "width": 960},
                "resample": 2, "do_pad": True, "crop_size": None}

    def prepare(self, image: Any, **options: Any) -> "np.ndarray":
        """One image -> (height, width, 3) float32 in 0..255, padded and resized (rescaling
        commutes with both, so normalize_batch still rescales)."""
        import numpy as np

        opts = options or self.options()
        pixels = super().prepare(image, **{**opts, "do_resize": False, "do_center_crop": False})
        pixels = pixels.astype(np.float32)
        if opts["do_pad"]:
            side = max(pixels.shape[:2])
            square = np.zeros((side, side, pixels.shape[2]), dtype=np.float32)
            square[:pixels.shape[0], :pixels.shape[1]] = pixels
            pixels = square
        if opts["do_resize"]:
            size = opts["size"]
            pixels = smooth_resize(pixels, size["height"], size["width"])
        return pixels

    def post_process_object_detection(self, outputs: Any, threshold: float = 0.1,
                                      target_sizes: Any = None) -> list[dict]:
        if target_sizes is not None:
            target_sizes = [[max(int(h), int(w))] * 2 for h, w in target_sizes]
        return super().post_process_object_detection(outputs, threshold, target_sizes)


def _mirror_index(index: "np.ndarray", length: int) -> "np.ndarray":
    """scipy.ndimage's "mirror" edges (d c b | a b c d | c b a) for any index."""
    import numpy as np

    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.abs(index) % period
    return np.where(index >= length, period - index, index)


def _blur_axis(values: "np.ndarray", sigma: float, axis: int) -> "np.ndarray":
    """scipy.ndimage.gaussian_filter1d (truncate 4, mirrored edges) along one axis."""
    import numpy as np

    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / sigma ** 2 * offsets ** 2)
    weights /= weights.sum()
    length = values.shape[axis]
    out = np.zeros_like(values)
    positions = np.arange(length)
    for offset, weight in zip(offsets, weights):
        out += weight * np.take(values, _mirror_index(positions + offset, length), axis=axis)
    return out


def _linear_axis(values: "np.ndarray", size: int, axis: int) -> "np.ndarray":
    """scipy.ndimage.zoom (order 1, grid_mode=True, mirrored edges) along one axis."""
    import numpy as np

    length = values.shape[axis]
    coords = (np.arange(size) + 0.5) * (length / size) - 0.5
    low = np.floor(coords)
    frac = coords - low
    low = low.astype(np.int64)
    first = np.take(values, _mirror_index(low, length), axis=axis)
    second = np.take(values, _mirror_index(low + 1, length), axis=axis)
    shape = [1] * values.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return first * (1 - frac) + second * frac


def smooth_resize(pixels: "np.ndarray", height: int, width: int) -> "np.ndarray":
    """(H, W, C) float -> (height, width, C) float32: scikit-image's anti-aliased resize."""
    import numpy as np

    values = pixels.astype(np.float64)
    for axis, size in ((0, height), (1, width)):
        factor = values.shape[axis] / size
        if factor > 1:
            values = _blur_axis(values, (factor - 1) / 2, axis)
    for axis, size in ((0, height), (1, width)):
        values = _linear_axis(values, size, axis)
    return np.clip(values, pixels.min(), pixels.max()).astype(np.float32)


class OwlViTProcessor(Processor):
    """OWL-ViT's (and OWLv2's) tokenizer and image processor: ``processor(text=[["a cat", "a
    dog"], ["a remote"]], images=[...])`` pads each image's queries to the most queries (with
    " ") and each query to ``max_length`` (16) tokens, as the reference; ``input_ids`` are
    (images x queries, tokens). ``post_process_grounded_object_detection`` names each box's
    query in ``text_labels``."""

    def __init__(self, tokenizer: Any = None, image_processor: Any = None, feature_extractor: Any = None):
        super().__init__(tokenizer=tokenizer, image_processor=image_processor or feature_extractor)

    def __call__(self, images: Any = None, text: Any = None, query_images: Any = None,
                 return_tensors: str | None = "pt", **kwargs: Any):
        import torch

        from ..tokenization import BatchEncoding

        if query_images is not None:
            raise InputError("Image-guided detection (query_images=) is not supported by "
                             "lightpipe yet: pass text queries.")
        if text is None and images is None:
            raise InputError("Pass text= (queries), images=, or both to the processor.")
        merged: dict[str, Any] = {}
        if text is not None:
            options = {"padding": "max_length", **_only(kwargs, "text"), "return_tensors": "pt"}
            flat = isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)
            if isinstance(text, str) or flat:
                groups = [text]
            elif isinstance(text, (list, tuple)) and all(
                    isinstance(g, (list, tuple)) and all(isinstance(t, str) for t in g) for g in text):
                most = max(len(g) for g in text)
                groups = [list(g) + [" "] * (most - len(g)) for g in text]
            else:
                raise InputTypeError("text must be a string, a list of strings or one list of "
                                     "strings per image.")
            encodings = [self.tokenizer(group, **options) for group in groups]
            merged["input_ids"] = torch.cat([e["input_ids"] for e in encodings])
            merged["attention_mask"] = torch.cat([e["attention_mask"] for e in encodings])
        if images is not None:
            merged.update(self.image_processor(images, return_tensors="pt", **_only(kwargs, "images")))
        if return_tensors in ("np", "numpy"):
            merged = {k: v.numpy() for k, v in merged.items()}
        elif return_tensors not in ("pt", None):
            raise InputError(f"return_tensors={return_tensors!r} is not supported: use 'pt' or 'np'.")
        return BatchEncoding(merged)

    def post_process_object_detection(self, *args: Any, **kwargs: Any) -> list[dict]:
        return self.image_processor.post_process_object_detection(*args, **kwargs)

    def post_process_grounded_object_detection(self, outputs: Any, threshold: float = 0.1,
                                               target_sizes: Any = None,
                                               text_labels: list[list[str]] | None = None) -> list[dict]:
        results = self.image_processor.post_process_object_detection(outputs, threshold, target_sizes)
        if text_labels is not None and len(text_labels) != len(results):
            raise InputError("Pass one list of text labels per image (as many as the batch size).")
        for index, result in enumerate(results):
            result["text_labels"] = (None if text_labels is None else
                                     [text_labels[index][i] for i in result["labels"].tolist()])
        return results
