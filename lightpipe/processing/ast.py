"""The Audio Spectrogram Transformer's feature extractor.

``ASTFeatureExtractor`` matches transformers' ``feature_extraction_audio_spectrogram_transformer.py``
on its numpy path (the one it takes when torchaudio is not installed, which is ours: lightpipe
does not depend on torchaudio): Kaldi-style filter-bank features. 25 ms frames (400 samples)
every 10 ms (160), no centring; each frame has its mean removed, a 0.97 pre-emphasis, a
symmetric Hann window, a 512-point FFT; the power spectrum goes through triangular filters laid
out on the Kaldi mel scale (``1127 ln(1 + f / 700)``, from 20 Hz to Nyquist, triangles in mel
space, not normalised), floored at float32's epsilon and logged. The (frames, mels) map is
padded with zeros or cut to ``max_length`` frames, then normalised as
``(x - mean) / (2 * std)`` (AudioSet's statistics by default).
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .audio import FeatureExtractor
from .features import BatchFeature, to_tensors

FRAME, HOP, FFT = 400, 160, 512
MEL_FLOOR = 1.192092955078125e-07  # float32 epsilon, as Kaldi


def kaldi_mel_filter_bank(num_mel_bins: int, sampling_rate: int) -> Any:
    """(FFT // 2 + 1, num_mel_bins) float64 triangles in Kaldi-mel space, 20 Hz to Nyquist."""
    import numpy as np

    def to_mel(freq):
        return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)

    edges = np.linspace(to_mel(20), to_mel(sampling_rate // 2), num_mel_bins + 2)
    bins = FFT // 2 + 1
    fft_mels = to_mel(sampling_rate / ((bins - 1) * 2) * np.arange(bins))
    slopes = edges[None, :] - fft_mels[:, None]  # (bins, mels + 2)
    gaps = np.diff(edges)
    down = -slopes[:, :-2] / gaps[:-1]
    up = slopes[:, 2:] / gaps[1:]
    return np.maximum(0.0, np.minimum(down, up))


def kaldi_fbank(waveform: Any, filters: Any) -> Any:
    """(samples,) -> (frames, mels) float32 log mel filter-bank energies."""
    import numpy as np

    signal = np.asarray(waveform, dtype=np.float64)
    if signal.size < FRAME:
        raise InputError(f"The audio has {signal.size} samples: the AST feature extractor needs at "
                         f"least {FRAME} (one 25 ms frame at 16 kHz).")
    count = 1 + (signal.size - FRAME) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(signal, FRAME)[::HOP][:count].copy()
    frames -= frames.mean(axis=1, keepdims=True)  # remove each frame's DC offset
    frames[:, 1:] -= 0.97 * frames[:, :-1]  # pre-emphasis (right side computed first)
    frames[:, 0] *= 1 - 0.97
    frames *= np.hanning(FRAME)  # symmetric Hann
    spectrum = np.fft.rfft(frames, n=FFT, axis=-1).astype(np.complex64)  # as the reference stores it
    power = np.abs(spectrum, dtype=np.float64) ** 2  # (frames, bins)
    return np.log(np.maximum(MEL_FLOOR, power @ filters)).astype(np.float32)


class ASTFeatureExtractor(FeatureExtractor):
    """``extractor(audio, sampling_rate=16000)`` -> ``input_values`` (batch, max_length,
    num_mel_bins) normalised log mel filter banks."""

    model_input_names = ["input_values", "attention_mask"]
    defaults = {"feature_size": 1, "sampling_rate": 16000, "num_mel_bins": 128,
                "max_length": 1024, "padding_value": 0.0, "do_normalize": True,
                "mean": -4.2677393, "std": 4.5689974, "return_attention_mask": False}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self._filters = None

    @property
    def mel_filters(self) -> Any:
        if self._filters is None:
            self._filters = kaldi_mel_filter_bank(self.num_mel_bins, self.sampling_rate)
        return self._filters

    def __call__(self, raw_speech: Any, sampling_rate: int | None = None,
                 return_tensors: Any = None, **kwargs: Any) -> BatchFeature:
        import numpy as np

        self._check_rate(sampling_rate)
        rows, _ = self._batch(raw_speech)
        values = []
        for row in rows:
            fbank = kaldi_fbank(row, self.mel_filters)[:self.max_length]
            if len(fbank) < self.max_length:
                fbank = np.concatenate([fbank, np.zeros((self.max_length - len(fbank),
                                                         fbank.shape[1]), np.float32)])
            if self.do_normalize:
                fbank = (fbank - self.mean) / (self.std * 2)
            values.append(fbank)
        return to_tensors({"input_values": values}, return_tensors)
