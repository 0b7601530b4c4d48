"""zero-shot-audio-classification: score clips against labels given at call time (CLAP)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .audio_base import AudioPipeline
from .common import refuse_unknown


class ZeroShotAudioClassificationPipeline(AudioPipeline):
    """Scores audio against labels given at call time (CLAP), as transformers' pipeline.

    Call:
        ``pipe(audio, candidate_labels=["dog", "rain"])``; audio as a file path, bytes, a 1-D
        numpy array (at the model's rate) or ``{"raw": array, "sampling_rate": rate}``
        (resampled); a list of them.

    Arguments:
        candidate_labels (list of str or a comma-separated str, required): the labels; their
            texts are encoded once per call and every clip is compared with all of them.
        hypothesis_template (str, default "This is a sound of {}."): the text made of each label.

    Returns:
        Per clip, ``[{"score": float, "label": str}, ...]`` sorted by score (softmax over the
        labels); a list of those for a list of clips.
    
    """

    task = "zero-shot-audio-classification"
    _texts: tuple | None = None  # (what was tokenized, the label texts' tensors)

    def gather_inputs(self, inputs: Any = None, candidate_labels: Any = None, *args: Any,
                      **params: Any) -> tuple[Any, dict]:
        """``pipe(audio, candidate_labels)``: the labels may come second."""
        if inputs is None and "audios" in params:  # the reference's argument name
            inputs = params.pop("audios")
        if candidate_labels is not None:
            params["candidate_labels"] = candidate_labels
        return super().gather_inputs(inputs, *args, **params)

    def _sanitize_parameters(self, candidate_labels: Any = None,
                             hypothesis_template: str | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs, " (it takes candidate_labels and hypothesis_template)")
        fwd: dict[str, Any] = {}
        if candidate_labels is not None:
            if isinstance(candidate_labels, str):
                candidate_labels = [label.strip() for label in candidate_labels.split(",")
                                    if label.strip()]
            candidate_labels = list(candidate_labels)
            if not candidate_labels or not all(isinstance(l, str) for l in candidate_labels):
                raise InputError("candidate_labels must be a non-empty list of strings, e.g. "
                                 "candidate_labels=['dog barking', 'rain'].")
            fwd["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            if not isinstance(hypothesis_template, str) or "{}" not in hypothesis_template:
                raise InputError(f"hypothesis_template {hypothesis_template!r} has no '{{}}' where "
                                 "the label goes, e.g. 'This is a sound of {}.'.")
            fwd["hypothesis_template"] = hypothesis_template
        return {}, fwd, {}

    def preprocess(self, item: Any) -> dict:
        from ..processing.audio_io import load_audio

        extractor = self.feature_extractor
        waveform, _ = load_audio(item, extractor.sampling_rate, self.task)
        # one clip per call, as the reference: with "fusion" the clip always takes the fusion path
        features = extractor([waveform], sampling_rate=extractor.sampling_rate, return_tensors="pt")
        return {"input_features": features["input_features"][0],
                "is_longer": features["is_longer"][0]}

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        dtype = self.model.dtype
        batch = {"input_features": torch.stack([p["input_features"] for p in pieces]).to(self.device, dtype),
                 "is_longer": torch.stack([p["is_longer"] for p in pieces]).to(self.device)}
        return batch, [{} for _ in pieces]

    def _text_inputs(self, labels: list[str] | None, template: str) -> dict:
        """The label texts, tokenized once for as long as the call's labels stay the same."""
        if labels is None:
            raise InputError("The zero-shot-audio-classification pipeline needs candidate_labels, "
                             "e.g. pipe(audio, candidate_labels=['dog barking', 'rain']).")
        if self.tokenizer is None:
            raise InputError("This pipeline needs a tokenizer for the candidate labels: pass "
                             "tokenizer= (or a model folder with tokenizer files).")
        key = (tuple(labels), template, str(self.device))
        if self._texts is None or self._texts[0] != key:
            encoded = self.tokenizer([template.format(label) for label in labels],
                                     return_tensors="pt", padding=True)
            self._texts = (key, {k: v.to(self.device) for k, v in encoded.items()
                                 if k in ("input_ids", "attention_mask")})
        return self._texts[1]

    def _forward(self, model_inputs: dict, candidate_labels: list[str] | None = None,
                 hypothesis_template: str = "This is a sound of {}.") -> dict:
        texts = self._text_inputs(candidate_labels, hypothesis_template)
        out = self.model(**texts, **model_inputs)
        # a list, not a tensor: every row of the batch keeps it whole
        return {"logits": out["logits_per_audio"], "candidate_labels": candidate_labels}

    def postprocess(self, model_outputs: dict) -> list[dict]:
        scores = model_outputs["logits"][0].float().softmax(dim=-1).tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]
