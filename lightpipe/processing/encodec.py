"""EnCodec's feature extractor (raw waveforms, padded, with a ``padding_mask``) and
MusicgenProcessor (a T5 tokenizer for the text, this extractor for audio prompts, and
``batch_decode(audio, padding_mask=...)`` to cut generated audio back), as transformers'
``feature_extraction_encodec.py`` and ``processing_musicgen.py``."""

from __future__ import annotations

import math
from typing import Any

from ..errors import InputError
from .audio import FeatureExtractor, _AudioProcessor, _pad_rows, _target_length
from .features import to_tensors


class EncodecFeatureExtractor(FeatureExtractor):
    """Audio -> ``input_values`` (batch, channels, samples) and ``padding_mask`` (batch,
    samples). Mono takes 1-D arrays; stereo (``feature_size`` 2) takes (2, samples) arrays.
    With ``chunk_length_s`` and ``overlap``, padding reaches a whole number of chunks."""

    model_input_names = ["input_values", "padding_mask"]
    defaults = {"feature_size": 1, "sampling_rate": 24000, "padding_value": 0.0,
                "chunk_length_s": None, "overlap": None, "return_attention_mask": True}

    def _chunk(self) -> tuple[int | None, int | None]:
        if self.chunk_length_s is None:
            return None, None
        length = int(self.chunk_length_s * self.sampling_rate)
        stride = None if self.overlap is None else max(1, int((1.0 - self.overlap) * length))
        return length, stride

    def __call__(self, raw_audio: Any, padding: Any = None, truncation: bool = False,
                 max_length: int | None = None, return_tensors: Any = None,
                 sampling_rate: int | None = None, **kwargs: Any):
        import numpy as np

        self._check_rate(sampling_rate)
        if padding and truncation:
            raise ValueError("Both padding and truncation were set. Make sure you only set one.")
        padding = True if padding is None else padding
        batched = isinstance(raw_audio, (list, tuple)) and len(raw_audio) > 0 and \
            isinstance(raw_audio[0], (np.ndarray, list, tuple))
        rows = [np.asarray(a, dtype=np.float32).T for a in (raw_audio if batched else [raw_audio])]
        for row in rows:
            if row.ndim > 2 or (self.feature_size == 1 and row.ndim != 1) or \
                    (self.feature_size == 2 and (row.ndim != 2 or row.shape[-1] != 2)):
                want = "1-D (mono)" if self.feature_size == 1 else "(2, samples) (stereo)"
                raise InputError(f"EncodecFeatureExtractor expects {want} audio, got an array of "
                                 f"shape {row.T.shape}.")
            if len(row) == 0:
                raise InputError("The audio is empty (0 samples).")
        lengths = [len(r) for r in rows]
        chunk, stride = self._chunk()
        if chunk is not None and stride is not None and max_length is None and (padding or truncation):
            shortest_or_longest = min(lengths) if truncation else max(lengths)
            steps = (math.floor if truncation else math.ceil)(shortest_or_longest / stride)
            max_length = (steps - 1) * stride + chunk
            padding = padding if truncation else "max_length"
        target = _target_length(lengths, padding, max_length, truncation, None)
        out: dict[str, Any] = {}
        if target is None:
            cut = [r[:max_length] if truncation and max_length is not None else r for r in rows]
            values = list(cut)
        else:
            channels = self.feature_size
            values, mask = [], None
            if channels == 1:
                padded, mask = _pad_rows(rows, target, self.padding_value, self.padding_side)
                values = list(padded)
            else:
                for row in rows:
                    padded, _ = _pad_rows(list(row.T), target, self.padding_value, self.padding_side,
                                          with_mask=False)
                    values.append(padded.T)
                mask = _pad_rows([r[:, 0] for r in rows], target, 0.0, self.padding_side)[1]
            if padding:
                out["padding_mask"] = list(mask)
        out["input_values"] = [(v[None] if v.ndim == 1 else v.T) for v in values]
        return to_tensors(out, return_tensors)


class MusicgenProcessor(_AudioProcessor):
    """MusicGen's T5 tokenizer and EnCodec feature extractor. ``processor(text=...)`` gives
    the model's ``input_ids`` / ``attention_mask``; ``batch_decode(audio, padding_mask=...)``
    cuts generated audio back to its unpadded length (numpy arrays per row)."""

    def __call__(self, audio: Any = None, text: Any = None, **kwargs: Any):
        if audio is None or text is None:
            return super().__call__(audio=audio, text=text, **kwargs)
        from ..tokenization import BatchEncoding

        merged = dict(super().__call__(audio=audio, **kwargs))  # both, as the reference
        text_kwargs = ("return_tensors", "padding", "max_length", "truncation")
        merged.update(self.tokenizer(text, **{k: v for k, v in kwargs.items() if k in text_kwargs}))
        return BatchEncoding(merged)

    def batch_decode(self, *args: Any, audio: Any = None, padding_mask: Any = None, **kwargs: Any):
        if args and audio is None and hasattr(args[0], "shape") and len(args[0].shape) == 3:
            audio, args = args[0], args[1:]
        if audio is None:
            return self.tokenizer.batch_decode(*args, **kwargs)
        import numpy as np

        audio = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio)
        if padding_mask is None:
            return list(audio)
        mask = np.asarray(padding_mask.detach().cpu() if hasattr(padding_mask, "detach") else padding_mask)
        batch, channels, length = audio.shape
        fill = 1 - self.feature_extractor.padding_value  # generated samples count as real
        mask = np.pad(mask, ((0, 0), (0, length - mask.shape[-1])), "constant", constant_values=fill)
        # (the reference's fails on stereo audio: here every channel is cut alike)
        keep = mask != self.feature_extractor.padding_value
        return [audio[i][:, keep[i]] for i in range(batch)]
