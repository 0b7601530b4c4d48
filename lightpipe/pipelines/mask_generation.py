"""mask-generation: every object's mask in an image, prompted by a grid of points (SAM)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .base import Pipeline
from .common import refuse_unknown

_PRE = ("points_per_batch", "crops_n_layers", "crop_overlap_ratio", "points_per_crop",
        "crop_n_points_downscale_factor", "timeout")
_FWD = ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "mask_threshold")
_POST = ("crops_nms_thresh", "output_rle_mask", "output_bboxes_mask")


class MaskGenerationPipeline(Pipeline):
    """Segments everything in an image from a grid of point prompts (SAM), as transformers'
    mask-generation pipeline. The image embedding is computed once per image (and crop).

    Call:
        ``pipe(image, points_per_batch=64)``; an image as a path, URL, PIL image or array; a
        list of them.

    Arguments:
        points_per_batch (int, default 64): grid points run through the mask decoder at once.
        points_per_crop (int, default 32): grid points per side.
        crops_n_layers (int, default 0): layers of smaller crops also segmented.
        crop_overlap_ratio (float, default 512/1500): how much crops overlap.
        crop_n_points_downscale_factor (int, default 1): fewer points per side in each crop layer.
        pred_iou_thresh (float, default 0.88): masks whose predicted IoU is lower are dropped.
        stability_score_thresh (float, default 0.95): masks less stable are dropped.
        stability_score_offset (float, default 1): the threshold shift of the stability score.
        mask_threshold (float, default 0): the logit above which a pixel is in the mask.
        crops_nms_thresh (float, default 0.7): box non-maximum suppression across crops.
        output_rle_mask (bool, default False): also return run-length encodings.
        output_bboxes_mask (bool, default False): also return the masks' boxes.
        timeout (float, default None): seconds to fetch an image URL.

    Returns:
        ``{"masks": [bool arrays (height, width)], "scores": tensor}``, plus ``"rle_mask"`` and
        ``"bounding_boxes"`` when asked; a list of those for a list of images.
    
    """

    task = "mask-generation"

    def gather_inputs(self, inputs: Any = None, *args: Any, **params: Any) -> tuple[Any, dict]:
        if inputs is None and "image" in params:
            inputs = params.pop("image")
        if inputs is None and "images" in params:
            inputs = params.pop("images")
        return super().gather_inputs(inputs, *args, **params)

    def _sanitize_parameters(self, points_per_batch: Any = None, crops_n_layers: Any = None,
                             crop_overlap_ratio: Any = None, points_per_crop: Any = None,
                             crop_n_points_downscale_factor: Any = None, timeout: Any = None,
                             pred_iou_thresh: Any = None, stability_score_thresh: Any = None,
                             stability_score_offset: Any = None, mask_threshold: Any = None,
                             crops_nms_thresh: Any = None, output_rle_mask: Any = None,
                             output_bboxes_mask: Any = None, **kwargs: Any):
        refuse_unknown(self, kwargs, f" (it takes {', '.join(_PRE + _FWD + _POST)})")
        given = dict(locals())
        pre, fwd, post = ({k: given[k] for k in names if given[k] is not None}
                          for names in (_PRE, _FWD, _POST))
        batch = pre.get("points_per_batch")
        if batch is not None and (not isinstance(batch, int) or batch <= 0):
            raise InputError(f"points_per_batch must be a positive integer (or None for all points "
                             f"at once); got {batch!r}.")
        for name in ("crops_n_layers",):
            if name in pre and (not isinstance(pre[name], int) or pre[name] < 0):
                raise InputError(f"{name} must be an integer >= 0; got {pre[name]!r}.")
        for name in ("points_per_crop", "crop_n_points_downscale_factor"):
            if name in pre and (not isinstance(pre[name], int) or pre[name] < 1):
                raise InputError(f"{name} must be a positive integer; got {pre[name]!r}.")
        return pre, fwd, post

    def run_window(self, items: list, batch_size: int | None, pre: dict, fwd: dict,
                   post: dict) -> list:
        return [self.postprocess(self._generate(item, **pre, **fwd), **post) for item in items]

    def _generate(self, item: Any, points_per_batch: int | None = 64, crops_n_layers: int = 0,
                  crop_overlap_ratio: float = 512 / 1500, points_per_crop: int = 32,
                  crop_n_points_downscale_factor: int = 1, timeout: float | None = None,
                  pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                  stability_score_offset: float = 1, mask_threshold: float = 0.0) -> dict:
        from ..processing.image import load_image
        from ..processing.sam import (crop_boxes, crop_points, mask_to_rle, masks_to_boxes,
                                      near_crop_edge, point_grid, stability_score)

        processor = self.image_processor
        image = load_image(item, timeout=timeout)
        width, height = image.size
        if min(width, height) < 2:
            raise InputError(f"The image is {width}x{height} pixels: mask generation needs an "
                             "image at least 2 pixels on each side.")
        boxes, layers = crop_boxes(height, width, crops_n_layers, crop_overlap_ratio)
        grids = [point_grid(int(points_per_crop / crop_n_points_downscale_factor ** layer))
                 for layer in range(crops_n_layers + 1)]
        target = processor.target_size
        all_masks, all_scores, all_boxes = [], [], []
        for box, layer in zip(boxes, layers):
            crop = image.crop(tuple(box))
            inputs = processor(images=crop, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
            if hasattr(processor, "crop_points"):  # SAM 2: float32 grids, as the reference's
                points = processor.crop_points(box, int(points_per_crop / crop_n_points_downscale_factor ** layer),
                                               target)
            else:
                points = torch.from_numpy(crop_points(box, grids[layer], target))  # (n, 2) float64
            count = points.shape[0]
            step = count if points_per_batch is None else points_per_batch
            with torch.inference_mode():
                embeddings = self.model.get_image_embeddings(pixels)  # once per image or crop
                embeddings = (dict(image_embeddings=embeddings[0], intermediate_embeddings=embeddings[1])
                              if isinstance(embeddings, tuple) else dict(image_embeddings=embeddings))  # SAM-HQ
                for start in range(0, count, step):
                    chosen = points[start:start + step][None, :, None, :]  # (1, batch, 1, 2)
                    out = self.model(**embeddings,
                                     input_points=chosen.to(self.device),  # float64, as the reference
                                     input_labels=torch.ones(chosen.shape[:3], dtype=torch.long,
                                                             device=self.device))
                    masks = processor.post_process_masks(
                        out["pred_masks"].float().cpu(), inputs["original_sizes"], mask_threshold=mask_threshold,
                        reshaped_input_sizes=inputs.get("reshaped_input_sizes"), binarize=False)[0]
                    masks, scores = masks.flatten(0, 1), out["iou_scores"][0].float().cpu().flatten(0, 1)
                    keep = torch.ones(len(scores), dtype=torch.bool)
                    if pred_iou_thresh > 0.0:
                        keep &= scores > pred_iou_thresh
                    if stability_score_thresh > 0.0:
                        keep &= stability_score(masks, mask_threshold, stability_score_offset) > \
                            stability_score_thresh
                    scores, masks = scores[keep], masks[keep] > mask_threshold
                    found = masks_to_boxes(masks)
                    keep = ~near_crop_edge(found, box, [0, 0, width, height])
                    scores, masks, found = scores[keep], masks[keep], found[keep]
                    found = found + torch.tensor([box[0], box[1], box[0], box[1]])
                    if box != [0, 0, width, height]:
                        masks = torch.nn.functional.pad(
                            masks, (box[0], width - box[2], box[1], height - box[3]), value=0)
                    all_masks.extend(mask_to_rle(masks))
                    all_scores.append(scores)
                    all_boxes.append(found)
        return {"rle": all_masks, "scores": torch.cat(all_scores), "boxes": torch.cat(all_boxes)}

    def postprocess(self, model_outputs: dict, crops_nms_thresh: float = 0.7,
                    output_rle_mask: bool = False, output_bboxes_mask: bool = False) -> dict:
        from ..processing.sam import box_nms, rle_to_mask

        keep = box_nms(model_outputs["boxes"], model_outputs["scores"], crops_nms_thresh)
        rle = [model_outputs["rle"][i] for i in keep.tolist()]
        result: dict[str, Any] = {"masks": [rle_to_mask(r) for r in rle],
                                  "scores": model_outputs["scores"][keep]}
        if output_rle_mask:
            result["rle_mask"] = rle
        if output_bboxes_mask:
            result["bounding_boxes"] = model_outputs["boxes"][keep]
        return result
