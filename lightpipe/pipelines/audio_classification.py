"""audio-classification: labels and scores for a clip (keyword spotting, emotion, language)."""

from __future__ import annotations

from typing import Any

from .audio_base import AudioPipeline
from .common import class_scores, classifier_options, ranked_labels, refuse_unknown


class AudioClassificationPipeline(AudioPipeline):
    """Labels audio clips with an audio classification model (wav2vec2, HuBERT, AST, ...).

    Call:
        ``pipe(audio, **args)`` where ``audio`` is a file path, the bytes of a file, a 1-D numpy
        array at the model's sampling rate, or ``{"raw"|"array": samples, "sampling_rate":
        rate}`` (resampled); or a list or iterator of them.

    Arguments:
        top_k (int, default all labels): how many labels to return, best first.
        function_to_apply (str, default chosen from the config): "softmax", "sigmoid" or
            "none"; by default sigmoid for multi-label models, none for regression, softmax
            otherwise (also for one-label models), as the reference chooses.

    Returns:
        For one clip, a list of ``{"score": float, "label": str}`` dicts, best first; for a list
        of clips, a list of those lists.
    """

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
