"""MusicGen Melody's feature extractor (audio -> a one-hot chromagram: the strongest pitch
class of each STFT frame) and processor (its T5 tokenizer and this extractor), as
transformers' ``feature_extraction_musicgen_melody.py`` and ``processing_musicgen_melody.py``.

- The chromagram: the power spectrogram (Hann window of ``n_fft``, ``hop_length``, centred
  with reflection, normalised by the window's energy, as torchaudio's ``Spectrogram(...,
  normalized=True)``), summed into ``num_chroma`` pitch classes by librosa's chroma filter
  bank (Gaussian bumps around each pitch class, weighted around octave 5, starting at C),
  then per frame 1 at the strongest class and 0 elsewhere.
- Audio shorter than ``n_fft`` is zero-padded on both sides; batches are padded to the longest
  row and cut to ``chunk_length`` seconds; stereo rows (channels, samples) are averaged; a 4-D
  tensor is Demucs' output (batch, stems, channels, samples): the ``stem_indices`` stems are
  summed and averaged to mono.
- Unlike the reference, audio at another sampling rate is refused (not resampled): resample
  it first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .audio import FeatureExtractor, _pad_rows, _target_length
from .encodec import MusicgenProcessor
from .features import to_tensors


def chroma_filters(sampling_rate: int, n_fft: int, num_chroma: int = 12, tuning: float = 0.0) -> np.ndarray:
    """(num_chroma, n_fft // 2 + 1) weights from spectrogram bins to pitch classes (librosa's
    ``filters.chroma`` with its defaults: L2-normalised columns, octave weighting 5 +- 2,
    starting at C)."""
    frequencies = np.arange(1, n_fft) * (sampling_rate / n_fft)
    a440 = 440.0 * 2.0 ** (tuning / num_chroma)
    bins = num_chroma * np.log2(frequencies / (a440 / 16))  # pitch in chroma bins above A0 / 2
    bins = np.concatenate([[bins[0] - 1.5 * num_chroma], bins])  # the DC bin: 1.5 octaves below
    widths = np.concatenate([np.maximum(np.diff(bins), 1.0), [1.0]])
    half = np.round(num_chroma / 2)
    distance = bins[None, :] - np.arange(num_chroma, dtype=np.float64)[:, None]
    distance = np.remainder(distance + half + 10 * num_chroma, num_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / widths[None, :]) ** 2)
    weights = weights / np.sqrt((weights ** 2).sum(axis=0, keepdims=True))
    weights = weights * np.exp(-0.5 * ((bins / num_chroma - 5.0) / 2.0) ** 2)[None, :]
    weights = np.roll(weights, -3 * (num_chroma // 12), axis=0)  # start at C, not A
    return np.ascontiguousarray(weights[:, :n_fft // 2 + 1])


class MusicgenMelodyFeatureExtractor(FeatureExtractor):
    """Audio -> ``input_features`` (batch, frames, num_chroma): one-hot chroma per frame."""

    model_input_names = ["input_features"]
    defaults = {"feature_size": 12, "sampling_rate": 32000, "hop_length": 4096, "chunk_length": 30,
                "n_fft": 16384, "num_chroma": 12, "padding_value": 0.0, "return_attention_mask": False,
                "stem_indices": [3, 2]}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self._settings.pop("n_samples", None)  # derived, as the reference's
        self.n_samples = self.chunk_length * self.sampling_rate
        self.filters = torch.from_numpy(chroma_filters(self.sampling_rate, self.n_fft, self.num_chroma)).float()

    def chromagram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, num_chroma) one-hot."""
        length = waveforms.shape[-1]
        if length < self.n_fft:
            missing = self.n_fft - length
            waveforms = torch.nn.functional.pad(waveforms, (missing // 2, missing - missing // 2))
        window = torch.hann_window(self.n_fft)
        spectrum = torch.stft(waveforms, self.n_fft, self.hop_length, self.n_fft, window, center=True,
                              pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        power = spectrum.abs().pow(2) / window.pow(2).sum()
        chroma = torch.einsum("cf,bft->bct", self.filters, power)
        chroma = torch.nn.functional.normalize(chroma, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
        one_hot = torch.zeros_like(chroma)
        return one_hot.scatter_(-1, chroma.argmax(-1, keepdim=True), 1.0)

    def _rows(self, audio: Any, sampling_rate: int | None) -> list[np.ndarray]:
        if isinstance(audio, torch.Tensor) and audio.dim() == 4:  # Demucs' stems
            rate = 44000 if sampling_rate is None else sampling_rate
            if rate != self.sampling_rate:
                raise InputError(f"Demucs' output is at {rate} Hz but {type(self).__name__} expects "
                                 f"{self.sampling_rate} Hz: resample the stems first.")
            mono = audio[:, list(self.stem_indices)].sum(1).mean(dim=1)
            return [row.detach().cpu().float().numpy() for row in mono]
        self._check_rate(sampling_rate)
        if hasattr(audio, "detach"):
            audio = audio.detach().cpu().numpy()
        batched = (isinstance(audio, np.ndarray) and audio.ndim > 1) or \
            (isinstance(audio, (list, tuple)) and len(audio) > 0 and
             isinstance(audio[0], (np.ndarray, torch.Tensor, list, tuple)))
        rows = []
        for row in (audio if batched else [audio]):
            row = np.asarray(row.detach().cpu() if hasattr(row, "detach") else row, dtype=np.float32)
            if row.ndim == 2:  # stereo (channels, samples) -> mono
                row = row.mean(axis=0)
            if row.ndim != 1:
                raise InputError(f"{type(self).__name__} expects mono (samples,) or stereo (channels, "
                                 f"samples) audio per row, got an array of shape {row.shape}.")
            if row.shape[0] == 0:
                raise InputError("The audio is empty (0 samples).")
            rows.append(row)
        if not rows:
            raise InputError("No audio given (an empty list).")
        return rows

    def __call__(self, audio: Any, truncation: bool = True, pad_to_multiple_of: int | None = None,
                 return_tensors: Any = None, return_attention_mask: bool | None = None,
                 padding: Any = True, max_length: int | None = None, sampling_rate: int | None = None,
                 **kwargs: Any):
        rows = self._rows(audio, sampling_rate)
        lengths = [len(r) for r in rows]
        target = _target_length(lengths, padding, max_length or self.n_samples, truncation, pad_to_multiple_of)
        if target is None:
            if len(set(lengths)) > 1:
                raise InputError("The audio rows differ in length: pass padding=True.")
            target = lengths[0]
        waveforms, mask = _pad_rows(rows, target, self.padding_value, self.padding_side)
        out: dict[str, Any] = {"input_features": self.chromagram(torch.from_numpy(waveforms))}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            out["attention_mask"] = torch.from_numpy(mask[:, ::self.hop_length].astype(np.int64))
        return to_tensors(out, return_tensors or "pt")


class MusicgenMelodyProcessor(MusicgenProcessor):
    """MusicGen Melody's T5 tokenizer and chroma feature extractor: ``processor(audio=...,
    text=..., sampling_rate=...)`` gives ``input_features`` and ``input_ids`` /
    ``attention_mask``; ``batch_decode(audio, attention_mask=...)`` cuts audio rows as
    MusicgenProcessor does with its padding mask; ``get_unconditional_inputs(n)``."""

    def batch_decode(self, *args: Any, audio: Any = None, attention_mask: Any = None, **kwargs: Any):
        return super().batch_decode(*args, audio=audio, padding_mask=attention_mask, **kwargs)

    def get_unconditional_inputs(self, num_samples: int = 1, return_tensors: str = "pt"):
        """Null inputs (empty texts, all masked): ``model.generate(**inputs, max_new_tokens=...)``."""
        inputs = self.tokenizer([""] * num_samples, return_tensors=return_tensors, return_attention_mask=True)
        inputs["attention_mask"] = inputs["attention_mask"] * 0
        return inputs


__all__ = ["MusicgenMelodyFeatureExtractor", "MusicgenMelodyProcessor", "chroma_filters"]
