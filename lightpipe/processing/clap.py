"""CLAP's feature extractor and processor.

``ClapFeatureExtractor`` matches transformers' ``feature_extraction_clap.py`` (its numpy path): a
power spectrogram of the clip (Hann window, centred frames, reflect padding) on a mel filter bank
(HTK scale for ``truncation="fusion"``, Slaney for ``"rand_trunc"``), in decibels. Clips shorter
than ``max_length_s`` are padded (``padding``: "repeatpad" repeats the clip then pads with
silence, "repeat" repeats it to the length, "pad" pads); longer ones are either cut at a random
place ("rand_trunc") or, with "fusion", given as four maps: the whole spectrogram squeezed to the
window's length and three random crops (front, middle, back thirds). Random choices use numpy's
global generator as the reference does, so ``np.random.seed(n)`` before a call reproduces them.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .audio import FeatureExtractor, _AudioProcessor, mel_filter_bank
from .features import to_tensors


def htk_mel_filter_bank(num_frequency_bins: int, num_mel_filters: int, min_frequency: float,
                        max_frequency: float, sampling_rate: int) -> Any:
    """Triangular filters on the HTK mel scale, not normalised (torchaudio's defaults)."""
    import numpy as np

    def to_mel(freq):
        return 2595.0 * np.log10(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)

    mels = np.linspace(to_mel(min_frequency), to_mel(max_frequency), num_mel_filters + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    gaps = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / gaps[:-1]
    up = slopes[:, 2:] / gaps[1:]
    return np.maximum(0.0, np.minimum(down, up))


def power_db_spectrogram(waveform: Any, window_size: int, hop_length: int, filters: Any) -> Any:
    """(samples,) -> (frames, mels) float32: 10 * log10 of the mel power spectrum, floored at
    1e-10 (computed in float64, as the reference)."""
    import numpy as np

    half = window_size // 2
    signal = np.pad(np.asarray(waveform, dtype=np.float64), (half, half), mode="reflect")
    window = np.hanning(window_size + 1)[:-1]  # periodic Hann
    count = 1 + (signal.size - window_size) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(signal, window_size)[::hop_length][:count]
    # the reference keeps the FFT as complex64 before taking the power
    spectrum = np.fft.rfft(frames * window, axis=-1).astype(np.complex64)
    power = np.abs(spectrum, dtype=np.float64) ** 2  # (frames, bins)
    mel = np.maximum(1e-10, power @ filters)
    return (10.0 * np.log10(np.clip(mel, 1e-10, None))).astype(np.float32)


class ClapFeatureExtractor(FeatureExtractor):
    """``extractor(audio, sampling_rate=48000)`` -> ``input_features`` (batch, maps, frames, mels)
    (maps: 4 with "fusion", else 1) and ``is_longer`` (batch, 1)."""

    model_input_names = ["input_features", "is_longer"]
    defaults = {"feature_size": 64, "sampling_rate": 48000, "hop_length": 480, "max_length_s": 10,
                "fft_window_size": 1024, "padding_value": 0.0, "return_attention_mask": False,
                "frequency_min": 0, "frequency_max": 14000, "top_db": None,
                "truncation": "fusion", "padding": "repeatpad"}

    def __init__(self, **settings: Any):
        for key in ("nb_max_samples", "nb_frequency_bins", "mel_filters", "mel_filters_slaney"):
            settings.pop(key, None)  # derived values an older save may hold
        super().__init__(**settings)
        bins = (self.fft_window_size >> 1) + 1
        self.nb_max_samples = int(self.max_length_s * self.sampling_rate)
        args = (bins, self.feature_size, self.frequency_min, self.frequency_max, self.sampling_rate)
        self.mel_filters = htk_mel_filter_bank(*args)
        self.mel_filters_slaney = mel_filter_bank(*args)

    def _mel(self, waveform: Any, filters: Any) -> Any:
        return power_db_spectrogram(waveform, self.fft_window_size, self.hop_length, filters)

    def _fusion(self, mel: Any, total: int, chunk: int) -> Any:
        """The whole spectrogram squeezed to ``chunk`` frames, and three random crops."""
        import numpy as np
        import torch

        ranges = np.array_split(list(range(0, total - chunk + 1)), 3)
        starts = [np.random.choice(r if len(r) else [0]) for r in ranges]
        crops = [mel[start:start + chunk] for start in starts]
        squeezed = torch.nn.functional.interpolate(
            torch.tensor(mel[None, None]), size=[chunk, 64], mode="bilinear", align_corners=False)
        return np.stack([squeezed[0, 0].numpy(), *crops], axis=0)

    def _input_mel(self, waveform: Any, max_length: int, truncation: str, padding: str):
        import numpy as np

        if truncation not in ("fusion", "rand_trunc"):
            raise InputError(f"truncation={truncation!r}: use 'fusion' or 'rand_trunc'.")
        if waveform.shape[0] > max_length:
            if truncation == "rand_trunc":
                start = np.random.randint(0, len(waveform) - max_length + 1)
                return self._mel(waveform[start:start + max_length], self.mel_filters_slaney)[None], True
            mel = self._mel(waveform, self.mel_filters)
            chunk = max_length // self.hop_length + 1
            if chunk == mel.shape[0]:
                return np.stack([mel] * 4, axis=0), False
            return self._fusion(mel, mel.shape[0], chunk), True
        if waveform.shape[0] < max_length:
            if padding == "repeat":
                waveform = np.tile(waveform, int(max_length / len(waveform)) + 1)[:max_length]
            elif padding == "repeatpad":
                waveform = np.tile(waveform, int(max_length / len(waveform)))
            waveform = np.pad(waveform, (0, max_length - waveform.shape[0]))
        if truncation == "fusion":
            return np.stack([self._mel(waveform, self.mel_filters)] * 4, axis=0), False
        return self._mel(waveform, self.mel_filters_slaney)[None], False

    def __call__(self, raw_speech: Any, truncation: str | None = None, padding: Any = None,
                 max_length: int | None = None, sampling_rate: int | None = None,
                 return_tensors: Any = None, **kwargs: Any):
        import numpy as np

        truncation = truncation if truncation is not None else self.truncation
        if padding is True or padding is None:
            padding = self.padding
        self._check_rate(sampling_rate)
        rows, _ = self._batch(raw_speech)
        for row in rows:
            if row.size == 0:
                raise InputError("The audio is empty: there are no samples to process.")
        pieces = [self._input_mel(row.astype(np.float64), max_length or self.nb_max_samples,
                                  truncation, padding) for row in rows]
        features = [mel for mel, _ in pieces]
        is_longer = [longer for _, longer in pieces]
        if truncation == "fusion" and not any(is_longer):
            # as the reference: one clip of the batch goes through the fusion branch anyway
            is_longer[np.random.randint(0, len(features))] = True
        out = {"input_features": features, "is_longer": [[longer] for longer in is_longer]}
        if return_tensors is not None:
            out = {"input_features": np.stack(features), "is_longer": np.asarray(out["is_longer"])}
        return to_tensors(out, return_tensors)


class ClapProcessor(_AudioProcessor):
    """CLAP's feature extractor and (RoBERTa) tokenizer: ``processor(audio=..., text=...)``."""

    def __call__(self, audio: Any = None, text: Any = None, **kwargs: Any):
        """Both given: the tokens and the features side by side (the text is not labels)."""
        from . import Processor

        if audio is None and "audios" in kwargs:  # transformers 4.x's name for it
            audio = kwargs.pop("audios")
        if audio is None or text is None:
            return super().__call__(audio=audio, text=text, **kwargs)
        merged = Processor.__call__(self, audio=audio, **kwargs)
        merged.update(Processor.__call__(self, text=text, **kwargs))
        return merged
