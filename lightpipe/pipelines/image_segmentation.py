"""image-segmentation: masks with labels (semantic: SegFormer, DPT; panoptic, instance and
semantic: DETR)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .common import refuse_unknown
from .vision_base import SizeGroupedImagePipeline, check_timeout

SUBTASKS = ("panoptic", "instance", "semantic")


def _check_fraction(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise InputError(f"{name} must be a number between 0 and 1, got {value!r}.")
    return float(value)


class ImageSegmentationPipeline(SizeGroupedImagePipeline):
    """Segments images into labelled masks (panoptic, instance or semantic segmentation).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them.

    Arguments:
        subtask (str, optional): "panoptic" or "instance" (DETR: one mask per segment, with its
            score), "semantic" (SegFormer, DPT, DETR: one mask per class that wins some pixel,
            in class-id order, score None); by default the first the model can do, in the order
            panoptic, instance, semantic, as the reference.
        threshold (float, default 0.9): least class score of a kept segment (panoptic,
            instance).
        mask_threshold (float, default 0.5): least mask probability of a pixel in a segment.
        overlap_mask_area_threshold (float, default 0.5): least share of a segment's mask left
            after overlaps for it to be kept.
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, a list of ``{"score": float | None, "label": str, "mask": PIL.Image}``
        dicts; each mask is a mode "L" image at the original image's size, 255 inside and 0
        outside. For a list of images, a list of those lists.
    """

    task = "image-segmentation"

    def _sanitize_parameters(self, subtask: str | None = None, threshold: float | None = None,
                             mask_threshold: float | None = None,
                             overlap_mask_area_threshold: float | None = None,
                             timeout: float | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs, "; it takes subtask, threshold, mask_threshold, "
                                     "overlap_mask_area_threshold and timeout.")
        pre, post = {}, {}
        if timeout is not None:
            pre["timeout"] = check_timeout(timeout)
        if subtask is not None:
            if subtask not in SUBTASKS:
                raise InputError(f"subtask={subtask!r} is not one of {', '.join(SUBTASKS)}.")
            post["subtask"] = subtask
        for name, value in (("threshold", threshold), ("mask_threshold", mask_threshold),
                            ("overlap_mask_area_threshold", overlap_mask_area_threshold)):
            if value is not None:
                post[name] = _check_fraction(name, value)
        return pre, {}, post

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        out = self.model(**self.normalized(model_inputs))
        return {key: out[key] for key in ("logits", "pred_masks") if key in out}

    def _post_processors(self, outputs: dict) -> dict:
        """{subtask: post-processing function} for this model and image processor. DETR's
        (outputs with ``pred_masks``) come from processing/detr_segmentation.py when the image
        processor has none of its own."""
        found = {name: getattr(self.image_processor, f"post_process_{name}_segmentation", None)
                 for name in SUBTASKS}
        if "pred_masks" in outputs and not any(found.values()):
            from ..processing import detr_segmentation

            found = {name: getattr(detr_segmentation, f"post_process_{name}_segmentation")
                     for name in SUBTASKS}
        return {name: function for name, function in found.items() if function is not None}

    def postprocess(self, model_outputs: dict, subtask: str | None = None, threshold: float = 0.9,
                    mask_threshold: float = 0.5, overlap_mask_area_threshold: float = 0.5) -> list[dict]:
        from PIL import Image

        outputs = {key: model_outputs[key].float() for key in ("logits", "pred_masks")
                   if key in model_outputs}
        target = [model_outputs["target_size"]]
        available = self._post_processors(outputs)
        labels = self.model.config.id2label
        # The reference's order: panoptic, then instance, then semantic, unless one is asked for.
        function = None
        if subtask in ("panoptic", None) and "panoptic" in available:
            function = available["panoptic"]
        elif subtask in ("instance", None) and "instance" in available:
            function = available["instance"]
        if function is not None:
            found = function(outputs, threshold=threshold, mask_threshold=mask_threshold,
                             overlap_mask_area_threshold=overlap_mask_area_threshold,
                             target_sizes=target)[0]
            segmentation = found["segmentation"]
            return [{"score": segment["score"], "label": labels[segment["label_id"]],
                     "mask": Image.fromarray(((segmentation == segment["id"]) * 255).numpy()
                                             .astype(np.uint8), mode="L")}
                    for segment in found["segments_info"]]
        if subtask in ("semantic", None) and "semantic" in available:
            segmentation = available["semantic"](outputs, target_sizes=target)[0].numpy()
            results = []
            for class_id in np.unique(segmentation):
                mask = ((segmentation == class_id) * 255).astype(np.uint8)
                results.append({"score": None, "label": labels[int(class_id)],
                                "mask": Image.fromarray(mask, mode="L")})
            return results
        raise InputError(f"Subtask {subtask} is not supported for model {type(self.model).__name__}: "
                         f"it can do {', '.join(sorted(available)) or 'none'}.")
