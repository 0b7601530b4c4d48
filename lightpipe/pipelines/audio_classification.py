"""audio-classification: labels and scores for a clip (keyword spotting, emotion, language)."""

from __future__ import annotations

from typing import Any

from .audio_base import AudioPipeline
from .common import class_scores, classifier_options, ranked_labels, refuse_unknown


class AudioClassificationPipeline(AudioPipeline):
    """``pipe("clip.wav")`` -> ``[{'score': 0.9, 'label': 'yes'}, ...]`` (all labels by default,
    best first). Inputs as the ASR pipeline: a file path, bytes, a 1-D array at the model's
    rate, or ``{"raw"|"array": ..., "sampling_rate": ...}`` (resampled)."""

    task = "audio-classification"

    def _sanitize_parameters(self, top_k: int | None = None, function_to_apply: str | None = None,
                             **kwargs: Any):
        refuse_unknown(self, kwargs)
        num_labels = self.model.config.num_labels
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")
        post = {"top_k": num_labels if top_k is None else min(top_k, num_labels),
                **classifier_options(function_to_apply=function_to_apply)}
        return {}, {}, post

    def preprocess(self, item: Any) -> dict:
        import torch

        from ..processing.audio import load_audio

        extractor = self.feature_extractor
        waveform, _ = load_audio(item, extractor.sampling_rate, self.task)
        features = extractor(waveform, sampling_rate=extractor.sampling_rate, return_tensors="np")
        return {key: torch.from_numpy(value[0]) for key, value in features.items()}

    def postprocess(self, model_outputs: dict, top_k: int = 5,
                    function_to_apply: str | None = None) -> list[dict]:
        config = self.model.config
        # The reference's audio pipeline uses sigmoid only for multi-label models.
        scores = class_scores(config, model_outputs["logits"][0], function_to_apply,
                              one_label_sigmoid=False)
        return [{"score": score, "label": label} for label, score in ranked_labels(config, scores, top_k)]
