"""image-classification: labels and scores for images."""

from __future__ import annotations

from typing import Any

from .common import class_scores, classifier_options, given, ranked_labels, refuse_unknown
from .vision_base import ImagePipeline


class ImageClassificationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{"label": ..., "score": ...}, ...]`` (the ``top_k`` best, 5 by
    default). ``function_to_apply``: "softmax", "sigmoid" or "none" (default: sigmoid for one
    label or multi-label models, none for regression, softmax otherwise, as the reference)."""

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
