"""zero-shot-image-classification: score images against labels given at call time (CLIP)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .image_classification import ImagePipeline


class ZeroShotImageClassificationPipeline(ImagePipeline):
    """``pipe(image, candidate_labels=["cat", "dog"])`` -> ``[{"score": ..., "label": ...}, ...]``
    sorted by score (a softmax over the labels of ``logits_per_image``). Each label becomes the
    text ``hypothesis_template.format(label)``; the texts are encoded once per call, and a batch
    of images is compared with all of them at once."""

    task = "zero-shot-image-classification"

    def __call__(self, inputs: Any = None, candidate_labels: Any = None, *args: Any, **kwargs: Any) -> Any:
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, candidate_labels: Any = None,
                             hypothesis_template: str | None = None, timeout: float | None = None,
                             tokenizer_kwargs: dict | None = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(kwargs)}")
        pre: dict[str, Any] = {}
        fwd: dict[str, Any] = {}
        if timeout is not None:
            pre["timeout"] = timeout
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
        return pre, fwd, {}

    def _run_window(self, items, batch_size, pre, fwd, post):
        if "candidate_labels" not in fwd:
            raise InputError("The zero-shot-image-classification pipeline needs candidate_labels, "
                             "e.g. pipe(image, candidate_labels=['cat', 'dog']).")
        self._texts = None  # the texts are tokenized once per window
        return super()._run_window(items, batch_size, pre, fwd, post)

    def _text_inputs(self, labels: list[str], template: str, tokenizer_kwargs: dict | None) -> dict:
        if self.tokenizer is None:
            raise InputError("This pipeline needs a tokenizer for the candidate labels: pass "
                             "tokenizer= (or a model folder with tokenizer files).")
        if self._texts is None:
            options = {"padding": True, **(tokenizer_kwargs or {})}
            if "siglip" in str(self.model.config.get("model_type")):
                options = {"padding": "max_length", "max_length": 64, "truncation": True,
                           **(tokenizer_kwargs or {})}
            encoded = self.tokenizer([template.format(label) for label in labels],
                                     return_tensors="pt", **options)
            self._texts = {k: v.to(self.device) for k, v in encoded.items()
                           if k in ("input_ids", "attention_mask")}
        return self._texts

    def _forward(self, model_inputs: dict, candidate_labels: list[str] | None = None,
                 hypothesis_template: str = "This is a photo of {}.",
                 tokenizer_kwargs: dict | None = None) -> dict:
        texts = self._text_inputs(candidate_labels, hypothesis_template, tokenizer_kwargs)
        out = self.model(**texts, **self.normalized(model_inputs))
        return {"logits": out["logits_per_image"], "_labels": candidate_labels}

    def _unbatch(self, outputs: dict, row: int, length: int) -> dict:
        return {"logits": outputs["logits"][row:row + 1], "candidate_labels": outputs["_labels"]}

    def postprocess(self, model_outputs: dict) -> list[dict]:
        import torch

        logits = model_outputs["logits"][0].float()
        if "siglip" in str(self.model.config.get("model_type")):
            scores = torch.sigmoid(logits).tolist()
        else:
            scores = logits.softmax(dim=-1).tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]
