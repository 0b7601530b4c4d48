"""SAM's image processor and the automatic mask generation helpers.

``SamImageProcessor`` matches transformers' ``image_processing_pil_sam.py``: the longest side
resized to ``size["longest_edge"]`` (PIL bilinear), rescaled, normalised, then zero-padded at the
bottom and right to ``pad_size``; it also returns ``original_sizes`` and
``reshaped_input_sizes`` (height, width). The rest serves the mask-generation pipeline as the
reference's helpers do: crop boxes and point grids per crop layer, mask filtering by predicted IoU
and stability, boxes of masks, uncompressed RLE, and box non-maximum suppression in torch.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

from ..errors import InputError
from . import Processor
from .features import BatchFeature
from .image import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageProcessor, size_dict


class SamImageProcessor(ImageProcessor):
    image_processor_type = "SamImageProcessor"
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"longest_edge": 1024},
                "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD,
                "do_pad": True, "pad_size": {"height": 1024, "width": 1024},
                "mask_size": {"longest_edge": 256}, "mask_pad_size": {"height": 256, "width": 256}}

    def output_size(self, height: int, width: int, size: dict) -> tuple[int, int]:
        if "longest_edge" in size and "shortest_edge" not in size:
            scale = size["longest_edge"] * 1.0 / max(height, width)
            return int(height * scale + 0.5), int(width * scale + 0.5)
        return super().output_size(height, width, size)

    @property
    def target_size(self) -> int:
        return self.size.get("longest_edge", self.size.get("height"))

    def preprocess(self, images: Any = None, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        import torch

        from .image import image_list, load_image
        from .image_io import _is_array, array_to_pil

        items, _ = image_list(images) if images is not None else ([], False)
        sizes = []
        for item in items:
            image = item if hasattr(item, "size") and not _is_array(item) else \
                (array_to_pil(item) if _is_array(item) else load_image(item))
            sizes.append((image.height, image.width))
        out = super().preprocess(images, return_tensors=return_tensors, **kwargs)
        reshaped = [self.output_size(h, w, self.options(**kwargs)["size"]) for h, w in sizes]
        as_tensor = return_tensors == "pt"
        out["original_sizes"] = torch.tensor(sizes) if as_tensor else sizes
        out["reshaped_input_sizes"] = torch.tensor(reshaped) if as_tensor else reshaped
        return out

    def collate(self, arrays: list, opts: dict | None = None) -> BatchFeature:
        """Each image normalised, then zero-padded (bottom, right) to ``pad_size``."""
        import numpy as np
        import torch

        opts = opts or self.options()
        if not opts["do_pad"]:
            return super().collate(arrays, opts)
        pad = self.pad_size
        rows = []
        for array in arrays:
            if array.shape[0] > pad["height"] or array.shape[1] > pad["width"]:
                raise InputError(f"An image resized to {array.shape[1]}x{array.shape[0]} does not fit "
                                 f"pad_size {pad['width']}x{pad['height']}.")
            values = self.normalize_batch(torch.from_numpy(np.array(array))[None], **opts)[0]
            rows.append(torch.nn.functional.pad(
                values, (0, pad["width"] - array.shape[1], 0, pad["height"] - array.shape[0])))
        return BatchFeature(pixel_values=torch.stack(rows))

    def post_process_masks(self, masks, original_sizes, reshaped_input_sizes, mask_threshold=0.0,
                           binarize=True, pad_size=None) -> list:
        """Low-resolution mask logits -> each image's masks at its original size (bilinear up
        to the padded input, padding cut off, bilinear to the original size)."""
        import torch
        import torch.nn.functional as F

        pad = size_dict(pad_size, name="pad_size") if pad_size is not None else self.pad_size
        out = []
        for index, (height, width) in enumerate(_as_list(original_sizes)):
            mask = masks[index]
            mask = torch.as_tensor(mask)
            mask = F.interpolate(mask, (pad["height"], pad["width"]), mode="bilinear", align_corners=False)
            new_h, new_w = _as_list(reshaped_input_sizes)[index]
            mask = F.interpolate(mask[..., :new_h, :new_w], (int(height), int(width)),
                                 mode="bilinear", align_corners=False)
            out.append(mask > mask_threshold if binarize else mask)
        return out


def _as_list(sizes: Any) -> list:
    return sizes.tolist() if hasattr(sizes, "tolist") else list(sizes)


# --- automatic mask generation ------------------------------------------------------------------
def point_grid(per_side: int):
    """(per_side ** 2, 2) points (x, y) evenly spaced in [0, 1], cell centres."""
    import numpy as np

    offset = 1 / (2 * per_side)
    side = np.linspace(offset, 1 - offset, per_side)
    xs = np.tile(side[None, :], (per_side, 1))
    ys = np.tile(side[:, None], (1, per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def crop_boxes(height: int, width: int, n_layers: int, overlap_ratio: float) -> tuple[list, list]:
    """The whole image, then for layer i (1..n_layers) a (2**i x 2**i) grid of overlapping crops:
    ([left, top, right, bottom], ...) and each box's layer."""
    boxes, layers = [[0, 0, width, height]], [0]
    short = min(height, width)
    for layer in range(n_layers):
        per_side = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + width) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + height) / per_side))
        lefts = [int((crop_w - overlap) * i) for i in range(per_side)]
        tops = [int((crop_h - overlap) * i) for i in range(per_side)]
        for left, top in product(lefts, tops):
            boxes.append([left, top, min(left + crop_w, width), min(top + crop_h, height)])
            layers.append(layer + 1)
    return boxes, layers


def crop_points(box: list, grid: Any, target_size: int):
    """A crop's grid points in the coordinates of the crop resized to ``target_size``."""
    left, top, right, bottom = box
    height, width = bottom - top, right - left
    points = grid * [[width, height]]
    scale = target_size * 1.0 / max(height, width)
    new_w, new_h = int(width * scale + 0.5), int(height * scale + 0.5)
    points = points.astype(float)
    points[:, 0] *= new_w / width
    points[:, 1] *= new_h / height
    return points


def stability_score(masks, mask_threshold: float, offset: float):
    """IoU of the mask cut at threshold + offset with the mask cut at threshold - offset."""
    import torch

    inner = (masks > mask_threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    outer = (masks > mask_threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inner / outer


def masks_to_boxes(masks):
    """(n, height, width) bool -> (n, 4) [left, top, right, bottom]; zeros for an empty mask."""
    import torch

    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device)
    height, width = masks.shape[-2:]
    rows = masks.any(dim=-1)  # (n, height)
    cols = masks.any(dim=-2)  # (n, width)
    row_ids = torch.arange(height, device=masks.device)
    col_ids = torch.arange(width, device=masks.device)
    bottom = (rows * row_ids).amax(dim=-1)
    top = (row_ids + height * ~rows).amin(dim=-1)
    right = (cols * col_ids).amax(dim=-1)
    left = (col_ids + width * ~cols).amin(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    empty = (right < left) | (bottom < top)
    return boxes * ~empty[:, None]


def near_crop_edge(boxes, crop_box: list, image_box: list, atol: float = 20.0):
    """Boxes touching an edge of their crop that is not an edge of the image."""
    import torch

    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    whole = torch.as_tensor(image_box, dtype=torch.float, device=boxes.device)
    left, top = crop_box[0], crop_box[1]
    boxes = (boxes + torch.tensor([[left, top, left, top]], device=boxes.device)).float()
    at_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    at_image = torch.isclose(boxes, whole[None], atol=atol, rtol=0)
    return (at_crop & ~at_image).any(dim=1)


def mask_to_rle(masks) -> list[dict]:
    """(n, height, width) bool -> uncompressed RLE, column-major, starting with a 0-run (COCO's)."""
    import numpy as np

    count, height, width = masks.shape
    if count == 0:
        return []
    flat = masks.permute(0, 2, 1).reshape(count, height * width).cpu().numpy()
    rows, cols = np.nonzero(flat[:, 1:] != flat[:, :-1])  # row-major: sorted by mask
    bounds = np.searchsorted(rows, np.arange(count + 1))
    out = []
    for index in range(count):
        edges = np.concatenate(([0], cols[bounds[index]:bounds[index + 1]] + 1, [height * width]))
        counts = np.diff(edges).tolist()
        out.append({"size": [height, width], "counts": ([0] if flat[index, 0] else []) + counts})
    return out


def rle_to_mask(rle: dict):
    import numpy as np

    height, width = rle["size"]
    mask = np.empty(height * width, dtype=bool)
    position, value = 0, False
    for run in rle["counts"]:
        mask[position:position + run] = value
        position += run
        value = not value
    return mask.reshape(width, height).transpose()


def box_nms(boxes, scores, iou_threshold: float):
    """Indices of the boxes kept by greedy non-maximum suppression, best score first (as
    torchvision's ``nms``)."""
    import torch

    boxes = boxes.float()
    order = torch.argsort(scores, descending=True, stable=True)
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for index in order.tolist():
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= iou[index] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


class SamProcessor(Processor):
    """SAM's image processor with prompts: ``processor(images, input_points=[[[x, y], ...]],
    input_labels=[[1, ...]], input_boxes=[[[x1, y1, x2, y2]]], return_tensors="pt")`` ->
    ``pixel_values``, sizes, and the prompts in the resized image's coordinates (points of
    unequal count padded with ``point_pad_value``), shaped as SamModel takes them."""

    point_pad_value = -10
    image_only = True  # AutoProcessor returns it for a folder naming it (no tokenizer)

    def __init__(self, image_processor: Any = None, tokenizer: Any = None,
                 feature_extractor: Any = None):
        super().__init__(image_processor=image_processor)

    @classmethod
    def from_pretrained(cls, name_or_path: Any, **kwargs: Any) -> "SamProcessor":
        from .image import AutoImageProcessor

        return cls(image_processor=AutoImageProcessor.from_pretrained(name_or_path, **kwargs))

    def __call__(self, images: Any = None, input_points: Any = None, input_labels: Any = None,
                 input_boxes: Any = None, return_tensors: str | None = "pt",
                 point_pad_value: int | None = None, **kwargs: Any) -> BatchFeature:
        import numpy as np
        import torch

        out = self.image_processor(images, return_tensors=return_tensors, **kwargs)
        sizes = _as_list(out["original_sizes"])
        pad = self.point_pad_value if point_pad_value is None else point_pad_value

        def rows(value: Any, depth: int, name: str, example: str) -> list | None:
            if value is None:
                return None
            value = value.tolist() if hasattr(value, "tolist") else value
            probe = value
            for _ in range(depth):
                if not isinstance(probe, list) or not probe:
                    raise InputError(f"{name} must be a nested list like {example}.")
                probe = probe[0]
            return value

        points = rows(input_points, 2, "input_points", "[[[x, y]]] (images, points, 2)")
        labels = rows(input_labels, 2, "input_labels", "[[1]] (images, points)")
        boxes = rows(input_boxes, 3, "input_boxes", "[[[x1, y1, x2, y2]]] (images, boxes, 4)")

        def scaled(value: Any, size: Any, is_box: bool = False):
            coords = np.array(value, dtype=float)
            if is_box:
                coords = coords.reshape(-1, 2, 2)
            new_h, new_w = self.image_processor.output_size(int(size[0]), int(size[1]),
                                                            self.image_processor.size)
            coords[..., 0] *= new_w / size[1]
            coords[..., 1] *= new_h / size[0]
            return coords.reshape(-1, 4) if is_box else coords

        def each(values: list) -> list:  # one image's sizes for all rows when counts differ
            return [sizes[i] if len(values) == len(sizes) else sizes[0] for i in range(len(values))]

        if points is not None:
            points = [scaled(p, size) for p, size in zip(points, each(points))]
            if labels is not None and len({p.shape for p in points}) > 1:
                longest = max(p.shape[0] for p in points)
                labels = [list(l) for l in labels]
                for i, p in enumerate(points):
                    if p.shape[0] != longest:
                        points[i] = np.concatenate([p, np.zeros((longest - p.shape[0], 2)) + pad])
                        labels[i] = list(labels[i]) + [pad]
            points = np.array(points)
        if labels is not None:
            labels = np.array(labels)
        if boxes is not None:
            boxes = np.array([scaled(np.array(b, dtype=np.float32), size, True)
                              for b, size in zip(boxes, each(boxes))])
        for key, value, dims in (("input_boxes", boxes, 3), ("input_points", points, 4),
                                 ("input_labels", labels, 3)):
            if value is None:
                continue
            if return_tensors == "pt":
                value = torch.from_numpy(value)
                value = value.unsqueeze(1) if value.dim() != dims else value
            out[key] = value
        return out

    def post_process_masks(self, *args: Any, **kwargs: Any) -> list:
        return self.image_processor.post_process_masks(*args, **kwargs)
