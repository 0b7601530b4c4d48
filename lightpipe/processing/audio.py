"""The speech feature extractors (audio decoding and resampling are in ``audio_io``).

- ``WhisperFeatureExtractor`` (log-mel, as transformers' but batched and fused in torch) and
  ``Wav2Vec2FeatureExtractor`` (zero-mean unit-variance, padding), ``AutoFeatureExtractor``.
- ``WhisperProcessor`` / ``Wav2Vec2Processor``: a tokenizer with a feature extractor.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError, ModelNotFoundError
from ..families import by_class_name, by_model_type, load
from ..jsonfile import is_jsonable, read_json
from . import AutoPreprocessor, Processor, preprocessor_settings
from .audio_io import (as_waveform, decode_audio, load_audio, resample,  # noqa: F401
                       to_mono)
from .features import BatchFeature, to_tensors  # noqa: F401

# --- feature extractors ---------------------------------------------------------------------

class FeatureExtractor:
    """Base: configuration from preprocessor_config.json, ``save_pretrained``, input checks."""

    feature_extractor_type = ""
    model_input_names = ["input_values"]
    defaults: dict[str, Any] = {}

    def __init__(self, **settings: Any):
        values = {**self.defaults, **settings}
        values.pop("feature_extractor_type", None)
        self.padding_side = values.pop("padding_side", "right")
        for key, value in values.items():
            setattr(self, key, value)
        self._settings = values

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        return AutoFeatureExtractor.from_pretrained(name_or_path, **kwargs)

    def to_dict(self) -> dict:
        out = {"feature_extractor_type": type(self).__name__, "padding_side": self.padding_side}
        out.update({k: getattr(self, k) for k in self._settings})
        return out

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in self.to_dict().items() if is_jsonable(v)}
        (folder / "preprocessor_config.json").write_text(json.dumps(data, indent=2) + "\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, default=str)}"

    def _check_rate(self, sampling_rate: int | None) -> None:
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise InputError(
                f"{type(self).__name__} expects audio sampled at {self.sampling_rate} Hz, but "
                f"sampling_rate={sampling_rate} was given. Resample it first (a pipeline does so "
                "for {'raw': array, 'sampling_rate': rate} inputs).")

    def _batch(self, raw_speech: Any) -> tuple[list, bool]:
        """The input as a list of 1-D float32 arrays, and whether it was a batch."""
        import numpy as np

        if hasattr(raw_speech, "detach"):
            raw_speech = raw_speech.detach().cpu().numpy()
        if isinstance(raw_speech, np.ndarray):
            if raw_speech.ndim > 2:
                raise InputError(f"Only mono audio is supported by {type(self).__name__}: got an "
                                 f"array of shape {raw_speech.shape}.")
            batched = raw_speech.ndim == 2
            rows = list(raw_speech) if batched else [raw_speech]
        elif isinstance(raw_speech, (list, tuple)):
            if not raw_speech:
                raise InputError("The audio batch is empty.")
            batched = isinstance(raw_speech[0], (np.ndarray, list, tuple)) or \
                hasattr(raw_speech[0], "detach")
            rows = list(raw_speech) if batched else [raw_speech]
        else:
            raise InputTypeError(f"{type(self).__name__} takes a 1-D array of samples or a list "
                                 f"of them; got {type(raw_speech).__name__}.")
        out = []
        for row in rows:
            if hasattr(row, "detach"):
                row = row.detach().cpu().numpy()
            row = np.asarray(row)
            if row.dtype.kind not in "fiu":
                raise InputTypeError(f"Audio samples must be numbers, got dtype {row.dtype}.")
            if row.ndim != 1:
                raise InputError(f"Each audio input must be 1-D (mono); got shape {row.shape}.")
            out.append(row.astype(np.float32, copy=False))
        return out, batched


def _pad_rows(rows: list, length: int, value: float, side: str = "right", with_mask: bool = True):
    """Rows cut or padded to ``length`` -> ((B, length) float32 array, (B, length) int32 mask
    or None)."""
    import numpy as np

    out = np.zeros if value == 0 else (lambda shape, dtype: np.full(shape, value, dtype=dtype))
    out = out((len(rows), length), dtype=np.float32)
    mask = np.zeros((len(rows), length), dtype=np.int32) if with_mask else None
    for index, row in enumerate(rows):
        row = row[:length]
        span = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        out[index, span] = row
        if mask is not None:
            mask[index, span] = 1
    return out, mask


def _target_length(lengths: list[int], padding: Any, max_length: int | None,
                   truncation: bool, multiple: int | None) -> int | None:
    """The padded length (None: no padding), following the reference's strategies."""
    if padding is True or padding == "longest":
        length = max(lengths)
        if truncation and max_length is not None:
            length = min(length, max_length)
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length=.")
        length = max_length
    elif padding in (False, None, "do_not_pad"):
        if truncation and max_length is not None and max(lengths) > max_length:
            return max_length if len(set(lengths)) == 1 or min(lengths) >= max_length else None
        return None
    else:
        raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False.")
    if multiple and length % multiple:
        length += multiple - length % multiple
    return length


def hertz_to_mel(freq: Any) -> Any:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    import numpy as np

    freq = np.asarray(freq, dtype=np.float64)
    logstep = 27.0 / np.log(6.4)
    return np.where(freq >= 1000.0, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) * logstep,
                    3.0 * freq / 200.0)


def mel_to_hertz(mels: Any) -> Any:
    import numpy as np

    mels = np.asarray(mels, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), 200.0 * mels / 3.0)


def mel_filter_bank(num_frequency_bins: int, num_mel_filters: int, min_frequency: float,
                    max_frequency: float, sampling_rate: int) -> Any:
    """Triangular filters on the Slaney mel scale with Slaney (area) normalisation, as
    librosa and transformers build Whisper's: shape (num_frequency_bins, num_mel_filters)."""
    import numpy as np

    mels = np.linspace(hertz_to_mel(min_frequency), hertz_to_mel(max_frequency),
                       num_mel_filters + 2)
    edges = mel_to_hertz(mels)  # (num_mel_filters + 2,)
    fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    gaps = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]  # (bins, filters + 2)
    down = -slopes[:, :-2] / gaps[:-1]
    up = slopes[:, 2:] / gaps[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return filters


class WhisperFeatureExtractor(FeatureExtractor):
    """Whisper's log-mel spectrogram: 80 or 128 mel bins, 25 ms windows every 10 ms, audio
    padded or cut to 30 s. Equal to transformers' numbers (same filters and maths in float32),
    computed in torch in slices of the batch, with the power spectrum and mel product fused."""

    model_input_names = ["input_features"]
    defaults = {"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30,
                "n_fft": 400, "padding_value": 0.0, "dither": 0.0, "return_attention_mask": False}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self.n_samples = int(self.chunk_length * self.sampling_rate)
        self.nb_max_frames = self.n_samples // self.hop_length
        self.mel_filters = mel_filter_bank(1 + self.n_fft // 2, self.feature_size, 0.0, 8000.0,
                                           self.sampling_rate)
        self._torch_filters = None

    def __call__(self, raw_speech: Any, truncation: bool = True, pad_to_multiple_of: int | None = None,
                 return_tensors: Any = None, return_attention_mask: bool | None = None,
                 padding: Any = "max_length", max_length: int | None = None,
                 sampling_rate: int | None = None, do_normalize: bool | None = None,
                 device: Any = "cpu", **kwargs: Any) -> BatchFeature:
        import numpy as np

        self._check_rate(sampling_rate)
        rows, _ = self._batch(raw_speech)
        length = _target_length([len(r) for r in rows], padding,
                                max_length or self.n_samples, truncation, pad_to_multiple_of)
        if length is None:
            length = max(len(r) for r in rows)
        waveforms, mask = _pad_rows(rows, length, self.padding_value, self.padding_side,
                                    with_mask=bool(return_attention_mask or do_normalize))
        if do_normalize:
            waveforms = _normalize(waveforms, mask, self.padding_value)
        features = self.log_mel(waveforms, device=device)
        out: dict[str, Any] = {"input_features": features}
        if return_attention_mask:
            frames = mask[:, ::self.hop_length]
            if length % self.hop_length:
                frames = frames[:, :-1]
            out["attention_mask"] = frames
        elif do_normalize:  # the reference then returns the per-sample mask
            out["attention_mask"] = mask
        if return_tensors is None:
            out = {k: [np.asarray(row) for row in v] for k, v in out.items()}
        return to_tensors(out, return_tensors)

    def log_mel(self, waveforms: Any, device: Any = "cpu", slice_rows: int = 4) -> Any:
        """(batch, samples) float32 -> (batch, feature_size, frames) log-mel, as numpy."""
        import warnings

        import numpy as np
        import torch

        signal = torch.as_tensor(np.ascontiguousarray(waveforms, dtype=np.float32)).to(device)
        if self.dither:
            signal = signal + self.dither * torch.randn_like(signal)
        if self._torch_filters is None or self._torch_filters.device != signal.device:
            self._torch_filters = torch.from_numpy(self.mel_filters.T.astype(np.float32)).to(signal.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore")
                self._sparse_filters = self._torch_filters.to_sparse_csr()
        window = torch.hann_window(self.n_fft, device=signal.device)
        frames = signal.shape[-1] // self.hop_length
        out = torch.empty((signal.shape[0], self.feature_size, frames), dtype=torch.float32)

        def run(start: int) -> None:
            with torch.inference_mode():
                part = signal[start:start + slice_rows]
                stft = torch.stft(part, self.n_fft, self.hop_length, window=window,
                                  return_complex=True)  # (rows, bins, frames + 1)
                # torch stores the STFT as (rows, frames + 1, bins): square re and im in place
                # there, add them (|X|^2), and project on the mel filters as a sparse matrix
                # (each filter covers a few bins: ~400 weights instead of 80 x 201).
                squares = torch.view_as_real(stft.transpose(1, 2)).square_()
                power = squares[..., 0] + squares[..., 1]  # (rows, frames + 1, bins)
                rows, steps, bins = power.shape
                mel = torch.sparse.mm(self._sparse_filters, power.reshape(-1, bins).T)
                mel = mel.view(-1, rows, steps).transpose(0, 1)[..., :-1]  # (rows, mels, frames)
                log_spec = mel.clamp_(min=1e-10).log10_()
                peak = log_spec.amax(dim=(1, 2), keepdim=True)
                log_spec = torch.maximum(log_spec, peak - 8.0).add_(4.0).div_(4.0)
                out[start:start + slice_rows] = log_spec.cpu()

        # A few rows at a time, so each pass stays in cache instead of streaming 100s of MB.
        starts = range(0, signal.shape[0], slice_rows)
        workers = torch.get_num_threads()
        if signal.device.type != "cpu" or workers == 1 or len(starts) == 1:
            for start in starts:
                run(start)
        else:
            # Slices in parallel, each op single-threaded: torch's intra-op threads would split
            # every small op and wait on each other (on a busy 2-core machine, 3-6x slower).
            from concurrent.futures import ThreadPoolExecutor

            with _THREADS_LOCK:
                torch.set_num_threads(1)
                try:
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(run, starts))
                finally:
                    torch.set_num_threads(workers)
        return out.numpy()


_THREADS_LOCK = threading.Lock()


def _normalize(values: Any, mask: Any, padding_value: float) -> Any:
    """Zero mean, unit variance over each row's real samples (padding set to padding_value)."""
    import numpy as np

    out = np.empty_like(values)
    for index, (row, row_mask) in enumerate(zip(values, mask)):
        length = int(row_mask.sum())
        real = row[row_mask.astype(bool)] if length < len(row) else row
        normed = (row - real.mean()) / np.sqrt(real.var() + 1e-7)
        if length < len(row):
            normed[~row_mask.astype(bool)] = padding_value
        out[index] = normed
    return out


class Wav2Vec2FeatureExtractor(FeatureExtractor):
    """Wav2Vec2's raw-waveform input: optional zero-mean unit-variance normalisation per
    utterance, padding with zeros, and an attention mask when asked for."""

    model_input_names = ["input_values", "attention_mask"]
    defaults = {"feature_size": 1, "sampling_rate": 16000, "padding_value": 0.0,
                "do_normalize": True, "return_attention_mask": False}

    def __call__(self, raw_speech: Any, padding: Any = False, max_length: int | None = None,
                 truncation: bool = False, pad_to_multiple_of: int | None = None,
                 return_attention_mask: bool | None = None, return_tensors: Any = None,
                 sampling_rate: int | None = None, **kwargs: Any) -> BatchFeature:
        import numpy as np

        self._check_rate(sampling_rate)
        rows, _ = self._batch(raw_speech)
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask
        length = _target_length([len(r) for r in rows], padding, max_length, truncation,
                                pad_to_multiple_of)
        if length is None:
            if truncation and max_length is not None:
                rows = [r[:max_length] for r in rows]
            values = [r.copy() for r in rows]
            masks = [np.ones(len(r), dtype=np.int32) for r in rows]
            if self.do_normalize:
                values = [_normalize(v[None], m[None], self.padding_value)[0]
                          for v, m in zip(values, masks)]
        else:
            values, mask = _pad_rows(rows, length, self.padding_value, self.padding_side)
            if self.do_normalize:
                full = np.ones_like(mask)
                values = _normalize(values, mask if return_attention_mask else full,
                                    self.padding_value)
            masks = mask
            values, masks = list(values), list(masks)
        out: dict[str, Any] = {"input_values": values}
        if return_attention_mask:
            out["attention_mask"] = masks
        return to_tensors(out, return_tensors)


class AutoFeatureExtractor(AutoPreprocessor):
    """``AutoFeatureExtractor.from_pretrained(folder or Hub id)`` -> the model's extractor,
    chosen by preprocessor_config.json's feature_extractor_type (or config.json's model_type)."""

    @classmethod
    def from_folder(cls, folder: Path, name_or_path: Any, **kwargs: Any) -> FeatureExtractor:
        settings = preprocessor_settings(folder, "feature_extractor")
        model_type = read_json(folder / "config.json").get("model_type")
        if not settings:
            raise ModelNotFoundError(f"{name_or_path}: no preprocessor_config.json, so there is no "
                                     "feature extractor to load.")
        name = settings.get("feature_extractor_type") or ""
        extractors = by_class_name("feature_extractor")  # from the family registry
        target = extractors.get(name) or by_model_type("feature_extractor").get(model_type or "")
        if target is None:
            from ..errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"Feature extractor {name or model_type!r} is not supported by lightpipe; it has "
                f"{', '.join(extractors)}.")
        settings.update(kwargs)
        for key in ("processor_class",):
            settings.pop(key, None)
        return load(target)(**settings)


# --- processors -----------------------------------------------------------------------------

class _AudioProcessor(Processor):
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        from ..tokenization import AutoTokenizer

        return cls(tokenizer=AutoTokenizer.from_pretrained(name_or_path, **kwargs),
                   feature_extractor=AutoFeatureExtractor.from_pretrained(name_or_path))

    def __call__(self, audio: Any = None, text: Any = None, **kwargs: Any):
        """As the reference's audio processors: the first positional argument is the audio."""
        return super().__call__(text=text, audio=audio, **kwargs)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def model_input_names(self) -> list[str]:
        return list(self.feature_extractor.model_input_names)


class WhisperProcessor(_AudioProcessor):
    """Whisper's feature extractor and tokenizer; ``get_decoder_prompt_ids(language, task)``."""

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None,
                               no_timestamps: bool = True) -> list[tuple[int, int]]:
        return self.tokenizer.get_decoder_prompt_ids(task=task, language=language,
                                                     no_timestamps=no_timestamps)


class Wav2Vec2Processor(_AudioProcessor):
    """Wav2Vec2's feature extractor and CTC tokenizer."""
