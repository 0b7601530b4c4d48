"""zero-shot-image-classification: score images against labels given at call time (CLIP)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .common import given, refuse_unknown
from .vision_base import ImagePipeline


class ZeroShotImageClassificationPipeline(ImagePipeline):
    """Labels images with labels chosen at call time, with an image-text model (CLIP, SigLIP, ...).

    Call:
        ``pipe(image, candidate_labels=[...], **args)``, or ``pipe(image, labels)`` with the labels
        second; ``image`` is a local path, an http(s) URL, base64 data, a PIL image or an array,
        or a list, iterator or dataset of them. The label texts are encoded once per call, and a
        batch of images is compared with all of them at once.

    Arguments:
        candidate_labels (list[str]): the labels (required).
        hypothesis_template (str, default "This is a photo of {}."): each label becomes the text
            ``hypothesis_template.format(label)``.
        tokenizer_kwargs (dict, optional): passed to the tokenizer for the label texts.
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, a list of ``{"score": float, "label": str}`` dicts, one per label, sorted
        by score (a softmax over the labels of ``logits_per_image``; a sigmoid for SigLIP); for a
        list of images, a list of those lists.
    """

    task = "zero-shot-image-classification"
    _texts: tuple | None = None  # (what was tokenized, the label texts' tensors)

    def gather_inputs(self, inputs: Any = None, candidate_labels: Any = None, *args: Any,
                      **params: Any) -> tuple[Any, dict]:
        """``pipe(image, candidate_labels)``: the labels may come second."""
        if candidate_labels is not None:
            params["candidate_labels"] = candidate_labels
        return super().gather_inputs(inputs, *args, **params)

    def _sanitize_parameters(self, candidate_labels: Any = None,
                             hypothesis_template: str | None = None, timeout: float | None = None,
                             tokenizer_kwargs: dict | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs)
        fwd: dict[str, Any] = {}
        if candidate_labels is not None:
            if isinstance(candidate_labels, str):
                candidate_labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
            candidate_labels = list(candidate_labels)
            if not candidate_labels or not all(isinstance(l, str) for l in candidate_labels):
                raise InputError("candidate_labels must be a non-empty list of strings, e.g. "
                                 "candidate_labels=['cat', 'dog'].")
            fwd["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            if "{}" not in hypothesis_template:
                raise InputError(f"hypothesis_template {hypothesis_template!r} has no '{{}}' where "
                                 "the label goes, e.g. 'This is a photo of {}.'.")
            fwd["hypothesis_template"] = hypothesis_template
        if tokenizer_kwargs:
            fwd["tokenizer_kwargs"] = dict(tokenizer_kwargs)
        return given(timeout=timeout), fwd, {}

    def _text_inputs(self, labels: list[str] | None, template: str,
                     tokenizer_kwargs: dict | None) -> dict:
        """The label texts, tokenized once for as long as the call's labels stay the same."""
        if labels is None:
            raise InputError("The zero-shot-image-classification pipeline needs candidate_labels, "
                             "e.g. pipe(image, candidate_labels=['cat', 'dog']).")
        if self.tokenizer is None:
            raise InputError("This pipeline needs a tokenizer for the candidate labels: pass "
                             "tokenizer= (or a model folder with tokenizer files).")
        key = (tuple(labels), template, repr(tokenizer_kwargs), str(self.device))
        if self._texts is None or self._texts[0] != key:
            options = {"padding": True, **(tokenizer_kwargs or {})}
            if "siglip" in str(self.model.config.get("model_type")):
                options = {"padding": "max_length", "max_length": 64, "truncation": True,
                           **(tokenizer_kwargs or {})}
            encoded = self.tokenizer([template.format(label) for label in labels],
                                     return_tensors="pt", **options)
            self._texts = (key, {k: v.to(self.device) for k, v in encoded.items()
                                 if k in ("input_ids", "attention_mask")})
        return self._texts[1]

    def _forward(self, model_inputs: dict, candidate_labels: list[str] | None = None,
                 hypothesis_template: str = "This is a photo of {}.",
                 tokenizer_kwargs: dict | None = None) -> dict:
        texts = self._text_inputs(candidate_labels, hypothesis_template, tokenizer_kwargs)
        out = self.model(**texts, **self.normalized(model_inputs))
        # a list, not a tensor: every row of the batch keeps it whole
        return {"logits": out["logits_per_image"], "candidate_labels": candidate_labels}

    def postprocess(self, model_outputs: dict) -> list[dict]:
        import torch

        logits = model_outputs["logits"][0].float()
        if "siglip" in str(self.model.config.get("model_type")):
            scores = torch.sigmoid(logits).tolist()
        else:
            scores = logits.softmax(dim=-1).tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]
