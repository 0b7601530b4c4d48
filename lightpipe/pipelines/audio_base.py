"""The base of the audio tasks: each piece holds its own clip's features as torch tensors (the
feature extractor's ``input_values`` or ``input_features``, and an ``attention_mask``); a
batch pads them to its longest clip."""

from __future__ import annotations

from typing import Any

import torch

from .base import Pipeline

AUDIO_INPUTS = ("input_values", "input_features", "attention_mask")


def collate_audio(pieces: list[dict], feature_extractor: Any, device: torch.device) -> dict:
    """Pad ``input_values`` (with the extractor's padding value) and attention masks (with 0)
    to the longest piece; stack ``input_features`` (Whisper's are all 30 s)."""
    batch = {}
    pad_value = float(getattr(feature_extractor, "padding_value", 0.0))
    for key in AUDIO_INPUTS:
        if key not in pieces[0]:
            continue
        values = [p[key] for p in pieces]
        longest = max(v.shape[-1] for v in values)
        fill = pad_value if key != "attention_mask" else 0
        out = torch.full((len(values), *values[0].shape[:-1], longest), fill, dtype=values[0].dtype)
        for row, value in enumerate(values):
            out[row, ..., :value.shape[-1]] = value
        batch[key] = out.to(device)
    return batch


class AudioPipeline(Pipeline):
    """Base of the audio tasks: ``collate`` pads the features (``collate_audio``) and casts
    them to the model's dtype; the pieces' other fields go to postprocess."""

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        batch = collate_audio(pieces, self.feature_extractor, self.device)
        dtype = self.model.dtype  # float32 features into a bfloat16 / float16 model
        batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
        return batch, [{k: v for k, v in p.items() if k not in AUDIO_INPUTS} for p in pieces]
