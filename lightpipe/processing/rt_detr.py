"""RT-DETR's image processor.

``RTDetrImageProcessor`` matches transformers' ``image_processing_pil_rt_detr.py`` for inference:
resize to a fixed 640x640 (no aspect kept, bilinear), rescale to [0, 1], no normalisation and no
padding by default (with ``do_pad``: a batch padded to its largest image, with a
``pixel_mask``, as DETR's). ``post_process_object_detection`` reads the detector's sigmoid
(focal-loss) scores: the ``num_queries`` best (query, class) pairs of each image, so a query may
give several labels, boxes from (centre, size) relative to corners in pixels of
``target_sizes``; ``use_focal_loss=False`` takes a softmax without the last (no-object) class.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .image import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, DetrImageProcessor, ImageProcessor


class RTDetrImageProcessor(DetrImageProcessor):
    image_processor_type = "RTDetrImageProcessor"
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"height": 640, "width": 640},
                "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD,
                "do_normalize": False, "do_pad": False}

    def _standard_size(self, size: Any, settings: dict) -> dict | None:
        return ImageProcessor._standard_size(self, size if size is not None else
                                             {"height": 640, "width": 640}, settings)

    def post_process_object_detection(self, outputs: Any, threshold: float = 0.5,
                                      target_sizes: Any = None,
                                      use_focal_loss: bool = True) -> list[dict]:
        import torch

        logits, boxes = outputs["logits"], outputs["pred_boxes"]
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise InputError("Pass as many target sizes as images (the batch size of the logits).")
        center_x, center_y, box_width, box_height = boxes.unbind(-1)
        corners = torch.stack([center_x - 0.5 * box_width, center_y - 0.5 * box_height,
                               center_x + 0.5 * box_width, center_y + 0.5 * box_height], dim=-1)
        if target_sizes is not None:
            sizes = torch.as_tensor(target_sizes if not isinstance(target_sizes, list)
                                    else [list(s) for s in target_sizes])
            heights, widths = sizes.unbind(1)
            corners = corners * torch.stack([widths, heights, widths, heights], 1)[:, None, :].to(corners)
        queries, classes = logits.shape[1], logits.shape[2]
        if use_focal_loss:
            # (batch, queries * classes) -> the best `queries` (query, class) pairs
            scores, index = logits.sigmoid().flatten(1).topk(queries, dim=-1)
            labels = index % classes
            corners = corners.gather(1, (index // classes)[..., None].expand(-1, -1, 4))
        else:
            scores, labels = logits.softmax(-1)[..., :-1].max(-1)
        results = []
        for score, label, box in zip(scores, labels, corners):
            keep = score > threshold
            results.append({"scores": score[keep], "labels": label[keep], "boxes": box[keep]})
        return results
