"""zero-shot-object-detection: boxes for labels given at call time (OWL-ViT)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError, InputTypeError
from .common import given, refuse_unknown
from .vision_base import ImagePipeline


def _check_labels(labels: Any) -> list[str]:
    """A comma-separated string (split on "," as the reference, spaces kept) or a non-empty list
    of strings -> the list of labels."""
    if labels is None:
        raise InputError("The zero-shot-object-detection pipeline needs candidate_labels, e.g. "
                         "pipe(image, candidate_labels=['cat', 'remote control']) or "
                         "pipe({'image': image, 'candidate_labels': ['cat']}).")
    if isinstance(labels, str):
        labels = labels.split(",")
    if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
        raise InputTypeError(f"candidate_labels must be a string or a list of strings, not "
                             f"{labels!r}; e.g. candidate_labels=['cat', 'dog'].")
    if not labels:
        raise InputError("candidate_labels is empty: give at least one label, e.g. ['cat'].")
    return list(labels)


def _is_labels(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple))
                                      and all(isinstance(v, str) for v in value))


class ZeroShotObjectDetectionPipeline(ImagePipeline):
    """Finds objects named at call time in images with an open-vocabulary detector (OWL-ViT).

    Call:
        ``pipe(image, candidate_labels=[...], **args)`` with one image (a local path, an http(s)
        URL, base64 data, a PIL image or an array); a list of images with one label list for all
        or one per image; or ``{"image", "candidate_labels"}`` dicts (lists of them, iterators,
        datasets). Where the reference runs the model once per (image, label), this pipeline runs
        it once per batch of images with all their labels as queries: each label's logits do
        not depend on the others, so results are the same.

    Arguments:
        candidate_labels (str | list[str]): the names of the objects to find (required).
        threshold (float, default 0.1): least score of a kept box.
        top_k (int, optional): keep only the best ``top_k`` boxes (0 or None: all).
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, a list of ``{"score": float, "label": str, "box": {"xmin": int, "ymin":
        int, "xmax": int, "ymax": int}}`` dicts, best first, boxes in pixels of the original
        image; for a list of images, a list of those lists.
    """

    task = "zero-shot-object-detection"

    def gather_inputs(self, image: Any = None, candidate_labels: Any = None, *args: Any,
                      **params: Any) -> tuple[Any, dict]:
        """``pipe(image, candidate_labels)`` (or ``text_queries=``, ``images=``)."""
        if "text_queries" in params:
            candidate_labels = params.pop("text_queries")
        if image is None and params.get("images") is not None:
            image = params.pop("images")
        if candidate_labels is not None:
            params["candidate_labels"] = candidate_labels
        return super().gather_inputs(image, *args, **params)

    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        """A list of images with one label list per image -> {"image", "candidate_labels"}
        dicts (the labels leave ``params``)."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        labels = params.get("candidate_labels")
        if (isinstance(inputs, list) and inputs and not any(isinstance(i, dict) for i in inputs)
                and labels is not None and not _is_labels(labels)):
            if not isinstance(labels, (list, tuple)) or not all(_is_labels(each) for each in labels):
                raise InputTypeError("candidate_labels must be a string, a list of strings, or "
                                     "one such list per image.")
            if len(labels) != len(inputs):
                raise InputError(f"Got {len(inputs)} images but {len(labels)} candidate "
                                 "label lists: give one list per image, or one list for all.")
            inputs = [{"image": image, "candidate_labels": each} for image, each in zip(inputs, labels)]
            del params["candidate_labels"]
        return super().split_inputs(inputs, params)

    def _sanitize_parameters(self, candidate_labels: Any = None, threshold: Any = None,
                             top_k: Any = None, timeout: float | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs)
        pre: dict[str, Any] = given(timeout=timeout)
        post: dict[str, Any] = {}
        if candidate_labels is not None:
            pre["candidate_labels"] = _check_labels(candidate_labels)
        if threshold is not None:
            if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
                raise InputTypeError(f"threshold must be a number between 0 and 1, got {threshold!r}.")
            post["threshold"] = float(threshold)
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
                raise InputTypeError(f"top_k must be a non-negative integer (0: all), got {top_k!r}.")
            post["top_k"] = top_k
        return pre, {}, post

    def preprocess(self, item: Any, timeout: float | None = None,
                   candidate_labels: list[str] | None = None) -> dict:
        if isinstance(item, dict):
            if "image" not in item:
                raise InputError(f"An input dict needs an 'image' key (and 'candidate_labels'); "
                                 f"got keys {sorted(item)}.")
            labels = _check_labels(item.get("candidate_labels", candidate_labels))
            item = item["image"]
        else:
            labels = _check_labels(candidate_labels)
        image = self.load(item, timeout)
        return {"pixel_values": self.pixels(image), "target_size": (image.height, image.width),
                "labels": labels, "query_ids": self._tokenize(labels)}

    def _tokenize(self, labels: list[str]) -> list[list[int]]:
        if self.tokenizer is None:
            raise InputError("This pipeline needs a tokenizer for the candidate labels: pass "
                             "tokenizer= (or a model folder with tokenizer files).")
        ids = self.tokenizer(labels)["input_ids"]  # each label alone, unpadded (as the reference)
        config = getattr(self.model, "towers", self.model)
        limit = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
        for label, row in zip(labels, ids):
            if limit and len(row) > limit:
                raise InputError(f"The label {label!r} is {len(row)} tokens long but the model "
                                 f"reads at most {limit}: shorten it.")
        return [list(row) for row in ids]

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        """Images stacked; each image's queries padded to the batch's most queries (rows of
        id 0, which the model masks) and longest query (the tokenizer's pad id, masked out)."""
        import torch

        queries = max(len(p["query_ids"]) for p in pieces)
        length = max(len(row) for p in pieces for row in p["query_ids"])
        pad = self._pad_value("input_ids")
        input_ids = torch.zeros((len(pieces) * queries, length), dtype=torch.long)
        attention_mask = torch.ones((len(pieces) * queries, length), dtype=torch.long)
        for index, piece in enumerate(pieces):
            for number, row in enumerate(piece["query_ids"]):
                at = index * queries + number
                input_ids[at, :len(row)] = torch.tensor(row)
                input_ids[at, len(row):] = pad
                attention_mask[at, len(row):] = 0
        batch = {**self.stack_images([p["pixel_values"] for p in pieces]),
                 "input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        extras = [{"labels": p["labels"], "target_size": p["target_size"]} for p in pieces]
        return batch, extras

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        out = self.model(**self.normalized(model_inputs))
        return {"logits": out["logits"], "pred_boxes": out["pred_boxes"]}

    def postprocess(self, model_outputs: dict, threshold: float = 0.1,
                    top_k: int | None = None) -> list[dict]:
        import torch

        from ..processing.owlvit import center_to_corners

        height, width = model_outputs["target_size"]
        if getattr(self.image_processor, "square_boxes", False):  # OWLv2: boxes in the padded square
            height = width = max(height, width)
        logits = model_outputs["logits"][0].float()  # (patches, queries)
        scale = torch.tensor([width, height, width, height], dtype=torch.int32)
        boxes = (center_to_corners(model_outputs["pred_boxes"][0].float()) * scale).int().tolist()
        results = []
        for number, label in enumerate(model_outputs["labels"]):
            scores = torch.sigmoid(logits[:, number])
            for index in ((scores > threshold) & (scores != 0)).nonzero()[:, 0].tolist():
                xmin, ymin, xmax, ymax = boxes[index]
                results.append({"score": scores[index].item(), "label": label,
                                "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}})
        results.sort(key=lambda entry: entry["score"], reverse=True)  # stable, as the reference
        return results[:top_k] if top_k else results
