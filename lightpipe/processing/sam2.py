"""SAM 2's image processor and processor.

``Sam2ImageProcessor`` matches transformers' ``image_processing_sam2.py`` (a torchvision-backed
processor there): every image resized to ``size`` (1024x1024, the aspect ratio not kept, no
padding) by torch's antialiased interpolation on the uint8 pixels (what torchvision's ``resize``
runs on the CPU), rescaled, normalised; ``original_sizes`` (height, width) returned with the
pixels. ``post_process_masks`` upsamples the low-resolution logits straight to each original
size. ``crop_points`` gives the mask-generation pipeline its point grids in float32, as the
reference builds them. ``Sam2Processor`` adds the prompts: points (images, objects, points, 2)
and boxes (images, boxes, 4) scaled to the square input, ragged point lists padded with
``point_pad_value``.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .features import BatchFeature
from .image import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageProcessor
from .sam import SamProcessor, _as_list


class Sam2ImageProcessor(ImageProcessor):
    image_processor_type = "Sam2ImageProcessor"
    defaults = {**ImageProcessor.defaults, "size": {"height": 1024, "width": 1024},
                "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD,
                "do_convert_rgb": True, "mask_size": {"height": 256, "width": 256}}

    @property
    def target_size(self) -> int:
        return self.size.get("longest_edge", self.size.get("height"))

    def resize(self, image: Any, opts: dict) -> Any:
        """uint8 (height, width, 3) resized in torch: bilinear (antialiased) and nearest on the
        uint8 values, bicubic in float32 then clamped and rounded (torchvision's rules)."""
        import numpy as np
        import torch
        import torch.nn.functional as F

        height, width = self.output_size(image.height, image.width, opts["size"])
        if (image.height, image.width) == (height, width):
            return image
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
        mode = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(opts["resample"]))
        if mode is None:
            raise InputError(f"Sam2ImageProcessor resizes with resample 0 (nearest), 2 (bilinear) "
                             f"or 3 (bicubic); got {opts['resample']!r}.")
        if mode == "nearest":
            out = F.interpolate(pixels, size=(height, width), mode="nearest")
        elif mode == "bilinear":
            out = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False,
                                antialias=True)
        else:
            out = F.interpolate(pixels.float(), size=(height, width), mode="bicubic", align_corners=False,
                                antialias=True).clamp_(0, 255).round_().to(torch.uint8)
        return out[0].permute(1, 2, 0).numpy()

    def preprocess(self, images: Any = None, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        import torch

        from .image import image_list, load_image
        from .image_io import _is_array, array_to_pil

        kwargs.pop("segmentation_maps", None)
        items, _ = image_list(images) if images is not None else ([], False)
        sizes = []
        for item in items:
            image = item if hasattr(item, "size") and not _is_array(item) else \
                (array_to_pil(item) if _is_array(item) else load_image(item))
            sizes.append([image.height, image.width])
        out = super().preprocess(images, return_tensors=return_tensors, **kwargs)
        out["original_sizes"] = torch.tensor(sizes) if return_tensors == "pt" else sizes
        return out

    def post_process_masks(self, masks, original_sizes, mask_threshold=0.0, binarize=True,
                           max_hole_area=0.0, max_sprinkle_area=0.0,
                           apply_non_overlapping_constraints=False, **unused) -> list:
        """Low-resolution mask logits -> each image's masks at its original size (bilinear);
        with ``apply_non_overlapping_constraints`` only the best object keeps each pixel (the
        others clamped to -10 or below). The hole and sprinkle areas are accepted and unused, as
        in the reference."""
        import torch
        import torch.nn.functional as F

        out = []
        for index, (height, width) in enumerate(_as_list(original_sizes)):
            mask = torch.as_tensor(masks[index])
            mask = F.interpolate(mask, (int(height), int(width)), mode="bilinear", align_corners=False)
            if apply_non_overlapping_constraints and mask.shape[0] > 1:
                best = mask.argmax(dim=0, keepdim=True)
                own = best == torch.arange(mask.shape[0], device=mask.device)[:, None, None, None]
                mask = torch.where(own, mask, mask.clamp(max=-10.0))
            out.append(mask > mask_threshold if binarize else mask)
        return out

    def crop_points(self, box: list, per_side: int, target_size: int):
        """A crop's (per_side ** 2, 2) grid points, cell centres, in the coordinates of the crop
        with its long side scaled to ``target_size``; float32 as the reference computes them."""
        import torch

        offset = 1 / (2 * per_side)
        side = torch.linspace(offset, 1 - offset, per_side)
        grid = torch.stack([side[None, :].expand(per_side, -1), side[:, None].expand(-1, per_side)], dim=-1)
        left, top, right, bottom = box
        height, width = bottom - top, right - left
        points = grid.reshape(-1, 2) * torch.tensor([[width, height]])
        scale = target_size * 1.0 / max(height, width)
        points[:, 0] = points[:, 0] * (int(width * scale + 0.5) / width)
        points[:, 1] = points[:, 1] * (int(height * scale + 0.5) / height)
        return points


class Sam2Processor(SamProcessor):
    """SAM 2's image processor with prompts: ``processor(images, input_points=[[[[x, y], ...]]],
    input_labels=[[[1, ...]]], input_boxes=[[[x1, y1, x2, y2]]], return_tensors="pt")`` ->
    ``pixel_values``, ``original_sizes`` and the prompts scaled to the square model input
    (``target_size``, the image processor's height by default); points and labels of unequal
    counts padded with ``point_pad_value`` (-10), which scaling leaves as it is.
    ``original_sizes=`` stands in for images when only prompts are prepared."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, feature_extractor: Any = None,
                 target_size: int | None = None, point_pad_value: int = -10):
        super().__init__(image_processor=image_processor)
        self.point_pad_value = point_pad_value
        self.target_size = target_size if target_size is not None else image_processor.size["height"]

    def __call__(self, images: Any = None, segmentation_maps: Any = None, input_points: Any = None,
                 input_labels: Any = None, input_boxes: Any = None, original_sizes: Any = None,
                 return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        import torch

        if images is not None:
            out = self.image_processor(images, return_tensors=return_tensors, **kwargs)
        elif original_sizes is not None:
            sizes = _as_list(original_sizes)
            out = BatchFeature(original_sizes=torch.tensor(sizes) if return_tensors == "pt" else sizes)
        else:
            raise InputError("Sam2Processor needs images= or original_sizes= (the images' "
                             "(height, width)) to scale the prompts.")
        sizes = _as_list(out["original_sizes"])
        points = _nested(input_points, 4, "input_points", "[[[[x, y]]]] (images, objects, points, 2)", 2)
        labels = _nested(input_labels, 3, "input_labels", "[[[1]]] (images, objects, points)")
        boxes = _nested(input_boxes, 3, "input_boxes", "[[[x1, y1, x2, y2]]] (images, boxes, 4)", 4)
        if points is not None and len(points) not in (1, len(sizes)) or \
                boxes is not None and len(boxes) not in (1, len(sizes)):
            raise InputError(f"Give prompts for 1 or {len(sizes)} images (one original size each).")
        if points is not None:
            dims = _max_dims(points, 3)
            if labels is not None and _max_dims(labels, 3) != dims:
                raise InputError("input_points and input_labels disagree in their counts of images, "
                                 "objects or points: give one label per point.")
            tensor = torch.tensor(_pad(points, dims + [2], self.point_pad_value), dtype=torch.float32)
            keep = (tensor != self.point_pad_value).all(dim=-1, keepdim=True)
            out["input_points"] = torch.where(keep, self._scaled(tensor, sizes), tensor)
        if labels is not None:
            out["input_labels"] = torch.tensor(_pad(labels, _max_dims(labels, 3), self.point_pad_value),
                                               dtype=torch.int64)
        if boxes is not None:
            if len({len(row) for row in boxes}) > 1:
                raise InputError("Each image needs the same number of boxes (boxes are not padded).")
            out["input_boxes"] = self._scaled(torch.tensor(boxes, dtype=torch.float32), sizes, boxes=True)
        return out

    def _scaled(self, tensor, sizes: list, boxes: bool = False):
        """Each image's coordinates scaled from its original size to target_size square."""
        tensor = tensor.clone()
        for index in range(tensor.shape[0]):
            height, width = sizes[index] if index < len(sizes) else sizes[0]
            coords = tensor[index].reshape(-1, 2, 2) if boxes else tensor[index]
            coords[..., 0] = coords[..., 0] * (self.target_size / width)
            coords[..., 1] = coords[..., 1] * (self.target_size / height)
            tensor[index] = coords.reshape(tensor[index].shape)
        return tensor


def _nested(value: Any, depth: int, name: str, example: str, last: int | None = None) -> list | None:
    """Tensors, arrays or nested lists -> nested lists ``depth`` levels deep (checked)."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        if value.ndim != depth:
            raise InputError(f"{name} must have {depth} dimensions, like {example}; got shape "
                             f"{tuple(value.shape)}.")
        value = value.tolist()
    probe, level = value, 0
    while isinstance(probe, (list, tuple)):
        if not probe:
            break
        probe, level = probe[0], level + 1
    if level != depth:
        raise InputError(f"{name} must be nested {depth} levels deep, like {example}; got {level}.")
    if last is not None:
        def check(rows: Any, left: int) -> None:
            for row in rows:
                if left == 1 and len(row) != last:
                    raise InputError(f"Each entry of {name} has {last} numbers, like {example}; got {row!r}.")
                if left > 1:
                    check(row, left - 1)
        check(value, depth - 1)
    return value


def _max_dims(rows: list, levels: int) -> list[int]:
    dims = [len(rows)]
    if levels > 1:
        inner = [_max_dims(row, levels - 1) for row in rows]
        dims += [max(d[i] for d in inner) for i in range(levels - 1)] if inner else [0] * (levels - 1)
    return dims


def _pad(rows: Any, dims: list[int], value: float) -> Any:
    """Nested lists padded to ``dims`` with ``value`` (the innermost coordinate level kept)."""
    if len(dims) == 1:
        return list(rows) + [value] * (dims[0] - len(rows))

    def blank(shape: list[int]) -> Any:
        return [value] * shape[0] if len(shape) == 1 else [blank(shape[1:]) for _ in range(shape[0])]

    return [_pad(row, dims[1:], value) for row in rows] + [blank(dims[1:]) for _ in range(dims[0] - len(rows))]
