"""DETR's segmentation post-processing (panoptic, instance, semantic), as transformers'
``DetrImageProcessor`` does it: each query's class scores and sigmoid mask, resized to the
image (bilinear), weighted by the query's score; every pixel goes to its best query; a query
keeps its segment when enough of its own mask survived (``overlap_mask_area_threshold``).

``DetrSegmentationImageProcessor`` is image.py's DetrImageProcessor with these methods; the
functions also serve a plain DetrImageProcessor (the image-segmentation pipeline calls them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .image import DetrImageProcessor

if TYPE_CHECKING:
    import torch


def _size(size: Any) -> tuple[int, int]:
    values = size.tolist() if hasattr(size, "tolist") else size
    return int(values[0]), int(values[1])


def _check_sizes(outputs: Any, target_sizes: Any) -> None:
    if target_sizes is not None and len(target_sizes) != len(outputs["logits"]):
        raise InputError("Pass as many target sizes as images (the batch size of the logits).")


def segments_of(logits: "torch.Tensor", mask_logits: "torch.Tensor", threshold: float,
                mask_threshold: float, overlap_mask_area_threshold: float,
                label_ids_to_fuse: set | None, target_size: Any = None) -> dict:
    """One image: (queries, labels + 1) logits and (queries, h, w) mask logits -> {"segmentation":
    (height, width) int32 segment ids (0: none), "segments_info": [{"id", "label_id",
    "was_fused", "score"}]}; no query above ``threshold``: a map of -1 and no segments."""
    import torch
    import torch.nn.functional as F

    num_labels = logits.shape[-1] - 1
    scores, labels = logits.softmax(-1).max(-1)
    keep = labels.ne(num_labels) & (scores > threshold)
    probs, scores, labels = mask_logits.sigmoid()[keep], scores[keep], labels[keep]
    height, width = _size(target_size) if target_size is not None else tuple(mask_logits.shape[-2:])
    if probs.shape[0] == 0:
        return {"segmentation": torch.zeros((height, width)) - 1, "segments_info": []}
    if target_size is not None:
        probs = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    probs = probs * scores.view(-1, 1, 1)
    owner = probs.argmax(0)  # (height, width): the best query of each pixel
    segmentation = torch.zeros((height, width), dtype=torch.int32)
    segments, fused_ids, segment_id = [], {}, 0
    for query in range(labels.shape[0]):
        label = labels[query].item()
        mask = owner == query
        area, own_area = mask.sum(), (probs[query] >= mask_threshold).sum()
        if not (area > 0 and own_area > 0 and (area / own_area).item() > overlap_mask_area_threshold):
            continue
        fuse = label in (label_ids_to_fuse or ())
        if label in fused_ids:
            segment_id = fused_ids[label]
        else:
            segment_id += 1
        segmentation[mask] = segment_id
        segments.append({"id": segment_id, "label_id": label, "was_fused": fuse,
                         "score": round(scores[query].item(), 6)})
        if fuse:
            fused_ids[label] = segment_id
    return {"segmentation": segmentation, "segments_info": segments}


def post_process_panoptic_segmentation(outputs: Any, threshold: float = 0.5,
                                       mask_threshold: float = 0.5,
                                       overlap_mask_area_threshold: float = 0.8,
                                       label_ids_to_fuse: set | None = None,
                                       target_sizes: Any = None) -> list[dict]:
    _check_sizes(outputs, target_sizes)
    return [segments_of(outputs["logits"][i], outputs["pred_masks"][i], threshold, mask_threshold,
                        overlap_mask_area_threshold, set(label_ids_to_fuse or ()),
                        target_sizes[i] if target_sizes is not None else None)
            for i in range(len(outputs["logits"]))]


def post_process_instance_segmentation(outputs: Any, threshold: float = 0.5,
                                       mask_threshold: float = 0.5,
                                       overlap_mask_area_threshold: float = 0.8,
                                       target_sizes: Any = None) -> list[dict]:
    """As panoptic, with no class fused: every query above the threshold is its own segment."""
    return post_process_panoptic_segmentation(outputs, threshold, mask_threshold,
                                              overlap_mask_area_threshold, None, target_sizes)


def post_process_semantic_segmentation(outputs: Any, target_sizes: Any = None) -> list:
    """Per class, the sum over queries of class probability x mask probability; resized to the
    target size (bilinear); the best class per pixel."""
    import torch
    import torch.nn.functional as F

    _check_sizes(outputs, target_sizes)
    classes = outputs["logits"].softmax(-1)[..., :-1]
    maps = torch.einsum("bqc,bqhw->bchw", classes, outputs["pred_masks"].sigmoid())
    results = []
    for index in range(len(maps)):
        scores = maps[index]
        if target_sizes is not None:
            scores = F.interpolate(scores[None], size=_size(target_sizes[index]), mode="bilinear",
                                   align_corners=False)[0]
        results.append(scores.argmax(0))
    return results


class DetrSegmentationImageProcessor(DetrImageProcessor):
    """DetrImageProcessor with DETR's segmentation post-processing."""

    def post_process_panoptic_segmentation(self, outputs, threshold=0.5, mask_threshold=0.5,
                                           overlap_mask_area_threshold=0.8, label_ids_to_fuse=None,
                                           target_sizes=None) -> list[dict]:
        return post_process_panoptic_segmentation(outputs, threshold, mask_threshold,
                                                  overlap_mask_area_threshold, label_ids_to_fuse,
                                                  target_sizes)

    def post_process_instance_segmentation(self, outputs, threshold=0.5, mask_threshold=0.5,
                                           overlap_mask_area_threshold=0.8,
                                           target_sizes=None) -> list[dict]:
        return post_process_instance_segmentation(outputs, threshold, mask_threshold,
                                                  overlap_mask_area_threshold, target_sizes)

    def post_process_semantic_segmentation(self, outputs, target_sizes=None) -> list:
        return post_process_semantic_segmentation(outputs, target_sizes)
