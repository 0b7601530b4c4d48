"""SegFormer's image processor, and what the dense-prediction processors share: segmentation
maps (``labels``, with ``do_reduce_labels``) and semantic post-processing.

Matches transformers' ``SegformerImageProcessorPil`` (the PIL backend): warp to 512x512
(bilinear), rescale, normalise with the ImageNet mean and std. Segmentation maps are resized
with NEAREST (SegFormer) or the image's filter (DPT), never rescaled or normalised, and come
back as int64 ``labels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .image import (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, BatchFeature, ImageProcessor,
                    _is_array, image_list, resize)

if TYPE_CHECKING:
    import numpy as np
    import torch

NEAREST = 0


def reduce_labels(labels: "np.ndarray") -> "np.ndarray":
    """Labels minus one, with 0 (background) -> 255 (ignored), as ADE20k checkpoints expect."""
    labels = labels.copy()
    labels[labels == 0] = 255
    labels = labels - 1
    labels[labels == 254] = 255
    return labels


class SegmentationMapsMixin:
    """``processor(images, segmentation_maps=...)`` -> ``pixel_values`` and int64 ``labels``
    (batch, height, width) resized as the images are. ``label_resample``: the filter for the
    maps (None: the image's)."""

    label_resample: int | None = None

    def __call__(self, images: Any = None, segmentation_maps: Any = None,
                 return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, segmentation_maps, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images: Any = None, segmentation_maps: Any = None,
                   return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        output = super().preprocess(images, return_tensors=return_tensors, **kwargs)
        if segmentation_maps is None:
            return output
        import numpy as np
        import torch

        opts = self.options(**{k: v for k, v in kwargs.items()
                               if k not in ("device", "data_format", "input_data_format")})
        maps, _ = image_list(segmentation_maps)
        if len(maps) != len(output["pixel_values"]):
            raise InputError(f"Pass one segmentation map per image: got {len(maps)} maps for "
                             f"{len(output['pixel_values'])} images.")
        labels = [self.prepare_labels(m, opts) for m in maps]
        if return_tensors == "pt":
            shapes = {a.shape for a in labels}
            if len(shapes) != 1:
                raise InputError(f"The segmentation maps have different sizes after resizing "
                                 f"({sorted(shapes)}); set a fixed size to batch them.")
            output["labels"] = torch.from_numpy(np.stack(labels))
        else:
            output["labels"] = labels if return_tensors is None else np.stack(labels)
        return output

    def prepare_labels(self, label_map: Any, opts: dict) -> "np.ndarray":
        """One map (a PIL image or a 2-D array of class ids 0-255) -> (height, width) int64."""
        import numpy as np
        from PIL import Image

        if isinstance(label_map, Image.Image):
            values = np.asarray(label_map)
        elif _is_array(label_map):
            values = np.asarray(label_map.detach().cpu() if hasattr(label_map, "detach") else label_map)
        else:
            raise InputError(f"A segmentation map must be a PIL image or a 2-D array of class "
                             f"ids; got {type(label_map).__name__}.")
        if values.ndim == 3 and 1 in (values.shape[0], values.shape[-1]):
            values = values.reshape(values.shape[1:] if values.shape[0] == 1 else values.shape[:-1])
        if values.ndim != 2:
            raise InputError(f"A segmentation map must be 2-D (height, width) class ids; got shape "
                             f"{values.shape}.")
        if values.size and (values.min() < 0 or values.max() > 255):
            raise InputError("Segmentation map class ids must lie in 0-255.")
        values = values.astype(np.uint8)
        if opts["do_reduce_labels"]:
            values = reduce_labels(values)
        if opts["do_resize"]:
            image = Image.fromarray(values, mode="L")
            resample = opts["resample"] if self.label_resample is None else self.label_resample
            height, width = self.output_size_for(image.height, image.width, opts)
            values = np.asarray(resize(image, height, width, resample))
        return values.astype(np.int64)

    def output_size_for(self, height: int, width: int, opts: dict) -> tuple[int, int]:
        return self.output_size(height, width, opts["size"])

    def post_process_semantic_segmentation(self, outputs: Any, target_sizes: Any = None,
                                           return_segmentation_scores: bool = False) -> list:
        return semantic_maps(outputs, target_sizes, return_segmentation_scores)


def semantic_maps(outputs: Any, target_sizes: Any = None, return_scores: bool = False) -> list:
    """(batch, labels, h, w) logits -> one (height, width) class-id map per image: logits
    resized (bilinear) to each target size first, then the best class per pixel."""
    import torch
    import torch.nn.functional as F

    logits = outputs["logits"]
    if target_sizes is not None and len(target_sizes) != len(logits):
        raise InputError("Pass as many target sizes as images (the batch size of the logits).")
    results = []
    for index in range(len(logits)):
        scores = logits[index]
        if target_sizes is not None:
            size = target_sizes[index]
            size = tuple(int(s) for s in (size.tolist() if isinstance(size, torch.Tensor) else size))
            scores = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
        segmentation = scores.argmax(dim=0)
        results.append({"segmentation": segmentation, "segmentation_scores": scores}
                       if return_scores else segmentation)
    return results


class SegformerImageProcessor(SegmentationMapsMixin, ImageProcessor):
    image_processor_type = "SegformerImageProcessor"
    label_resample = NEAREST
    defaults = {**ImageProcessor.defaults, "size": {"height": 512, "width": 512},
                "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD,
                "do_reduce_labels": False}
