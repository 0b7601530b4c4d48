"""object-detection: boxes, labels and scores (DETR)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .common import given, refuse_unknown
from .vision_base import SizeGroupedImagePipeline


class ObjectDetectionPipeline(SizeGroupedImagePipeline):
    """Finds objects in images with an object detection model (DETR, YOLOS, ...).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them. Images keep their own size
        (short side 800 by default), so only images of the same size share a batch: results do
        not depend on ``batch_size``.

    Arguments:
        threshold (float, default 0.5): least score of a kept detection.
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, a list of ``{"score": float, "label": str, "box": {"xmin": int, "ymin":
        int, "xmax": int, "ymax": int}}`` dicts, boxes in pixels of the original image (ints, as
        the reference); for a list of images, a list of those lists.
    """

    task = "object-detection"

    def _sanitize_parameters(self, threshold: float | None = None, timeout: float | None = None,
                             **kwargs: Any):
        refuse_unknown(self, kwargs)
        post = {}
        if threshold is not None:
            if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
                raise InputError(f"threshold must be a number between 0 and 1, got {threshold!r}.")
            post["threshold"] = float(threshold)
        return given(timeout=timeout), {}, post

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        out = self.model(**self.normalized(model_inputs))
        return {"logits": out["logits"], "pred_boxes": out["pred_boxes"]}

    def postprocess(self, model_outputs: dict, threshold: float = 0.5) -> list[dict]:
        post = getattr(self.image_processor, "post_process_object_detection", None)
        if post is None:
            raise InputError("object-detection needs an image processor with "
                             "post_process_object_detection (a DETR image processor).")
        height, width = model_outputs["target_size"]
        found = post(model_outputs, threshold, torch.tensor([[height, width]], dtype=torch.int32))[0]
        labels = self.model.config.id2label
        results = []
        for score, label, box in zip(found["scores"].tolist(), found["labels"].tolist(), found["boxes"]):
            xmin, ymin, xmax, ymax = box.int().tolist()
            results.append({"score": score, "label": labels[label],
                            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}})
        return results
