"""image-classification: labels and scores for images."""

from __future__ import annotations

from typing import Any

from .common import class_scores, classifier_options, given, ranked_labels, refuse_unknown
from .vision_base import ImagePipeline


class ImageClassificationPipeline(ImagePipeline):
    """Labels images with an image classification model (ViT, ConvNeXt, ResNet, ...).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them.

    Arguments:
        top_k (int, default 5): how many labels to return, best first (at most the model's
            number of labels).
        function_to_apply (str, default chosen from the config): "softmax", "sigmoid" or "none";
            by default sigmoid for one label or multi-label models, none for regression, softmax
            otherwise, as the reference chooses.
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, a list of ``{"label": str, "score": float}`` dicts, best first; for a list
        of images, a list of those lists.
    """

    task = "image-classification"

    def _sanitize_parameters(self, top_k: Any = None, function_to_apply: Any = None,
                             timeout: float | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs)
        return given(timeout=timeout), {}, classifier_options(top_k, function_to_apply)

    def postprocess(self, model_outputs: dict, function_to_apply: str | None = None,
                    top_k: int = 5) -> list[dict]:
        config = self.model.config
        scores = class_scores(config, model_outputs["logits"][0], function_to_apply)
        return [{"label": label, "score": score} for label, score in ranked_labels(config, scores, top_k)]
