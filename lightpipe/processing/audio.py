"""Audio input without a system ffmpeg, resampling, and the speech feature extractors.

- ``load_audio(item, sampling_rate)``: a file path (wav, flac, ogg, mp3, ... decoded by
  ``soundfile``, or by ``av``, which ships its own decoders), raw file bytes, a 1-D array, or a
  ``{"raw"|"array": ..., "sampling_rate": ...}`` dict -> mono float32 at the model's rate.
- ``resample``: a windowed-sinc (Kaiser) polyphase resampler in torch, anti-aliased.
- ``WhisperFeatureExtractor`` (log-mel, as transformers' but batched and fused in torch) and
  ``Wav2Vec2FeatureExtractor`` (zero-mean unit-variance, padding), ``AutoFeatureExtractor``.
- ``WhisperProcessor`` / ``Wav2Vec2Processor``: a tokenizer with a feature extractor.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError, ModelNotFoundError
from . import Processor

_SAMPLE_KINDS = "f", "i", "u"


# --- decoding -------------------------------------------------------------------------------

def decode_audio(source: str | os.PathLike | bytes) -> tuple[Any, int]:
    """A file path or the bytes of a file -> (float32 array of shape (channels, samples), rate).

    ``soundfile`` (libsndfile: wav, flac, ogg/vorbis, opus, mp3 in recent builds) first, then
    ``av`` (FFmpeg's decoders bundled in the wheel: mp3, m4a/aac, webm, ...)."""
    import io

    import numpy as np

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"The audio file {str(source)!r} does not exist. Pass a path to a "
                             "wav/flac/ogg/mp3 file, the file's bytes, or a 1-D array.")
        data = path.read_bytes()
        name = str(source)
    else:
        data, name = bytes(source), "the audio bytes"
    if not data:
        raise InputError(f"{name} is empty: there is no audio to decode.")
    errors = []
    try:
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return np.ascontiguousarray(samples.T), int(rate)
    except Exception as err:  # libsndfile could not read it: try FFmpeg's decoders
        errors.append(f"soundfile: {err}")
    try:
        return _decode_with_av(data)
    except Exception as err:
        errors.append(f"av: {err}")
    raise InputError(f"Could not decode {name} as audio ({'; '.join(errors)}). Is it an audio "
                     "file (wav, flac, ogg, mp3, m4a, webm)? Alternatively pass a 1-D numpy "
                     "array with {'raw': array, 'sampling_rate': rate}.")


def _decode_with_av(data: bytes) -> tuple[Any, int]:
    import io

    import av
    import numpy as np

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels or 1
        resampler = av.AudioResampler(format="fltp", layout="mono" if channels == 1 else "stereo",
                                      rate=rate)
        pieces = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                pieces.append(out.to_ndarray())
        for out in resampler.resample(None):
            pieces.append(out.to_ndarray())
    if not pieces:
        raise ValueError("the stream has no samples")
    return np.ascontiguousarray(np.concatenate(pieces, axis=1), dtype=np.float32), int(rate)


def to_mono(array: Any, what: str = "The audio") -> Any:
    """(samples,) stays; (channels, samples) with 1 or 2 channels is averaged, as the reference
    reads a 2-D array; anything else is an error naming the fix."""
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise InputError(f"{what} must be mono (samples,) or (channels, samples); got shape "
                         f"{tuple(array.shape)}.")
    if array.shape[0] > 2:
        raise InputError(f"{what} has shape {tuple(array.shape)}: axis 0 is read as channels. If "
                         "the array is (samples, channels) as soundfile returns, transpose it; "
                         "with more than 2 channels, mix it down to mono first.")
    return array.mean(axis=0)


def as_waveform(array: Any, what: str = "The audio") -> Any:
    """An array-like of samples -> a float32 numpy array, checking dtype and emptiness.
    Integer PCM (int16, int32, uint8) is scaled to [-1, 1] as soundfile reads it."""
    import numpy as np

    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().float().numpy()
    if isinstance(array, (list, tuple)):
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise InputTypeError(f"{what} must be a numpy array (or a file path, bytes or a dict with "
                             f"'raw'/'array' and 'sampling_rate'); got {type(array).__name__}.")
    kind = array.dtype.kind
    if kind not in _SAMPLE_KINDS:
        raise InputTypeError(f"{what} has dtype {array.dtype}: audio samples must be floats "
                             "(float32/float64) or integer PCM (int16, int32).")
    if kind == "i":
        array = array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    elif kind == "u":
        half = float(2 ** (8 * array.dtype.itemsize - 1))
        array = (array.astype(np.float32) - half) / half
    array = to_mono(array, what)
    if array.size == 0:
        raise InputError(f"{what} is empty: there are no samples to process.")
    if kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{what} contains NaN or infinite samples.")
    return array


def load_audio(item: Any, sampling_rate: int, task: str = "audio") -> tuple[Any, dict]:
    """One pipeline input -> (mono float32 waveform at ``sampling_rate``, extras).

    Extras: ``stride`` (left, right) in samples at ``sampling_rate`` when the dict had one,
    and the dict's other keys (passed through to the output, as the reference does)."""
    import numpy as np

    extras: dict = {}
    if isinstance(item, (str, os.PathLike)):
        if str(item).startswith(("http://", "https://")):
            item = _download(str(item))
        array, rate = decode_audio(item)
        return resample(to_mono(array, f"The audio {str(item)!r}"), rate, sampling_rate), extras
    if isinstance(item, (bytes, bytearray)):
        array, rate = decode_audio(bytes(item))
        return resample(to_mono(array), rate, sampling_rate), extras
    if isinstance(item, dict):
        item = dict(item)
        stride = item.pop("stride", None)
        if "sampling_rate" not in item or ("raw" not in item and "array" not in item):
            raise InputError(
                f"A dict given to the {task} pipeline needs a 'raw' (or 'array') key with the "
                "samples and a 'sampling_rate' key with their rate; got keys "
                f"{sorted(item) + (['stride'] if stride is not None else [])}.")
        array = item.pop("raw", None)
        if array is None:
            item.pop("path", None)
            array = item.pop("array")
        rate = item.pop("sampling_rate")
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
            raise InputError(f"sampling_rate must be a positive number, got {rate!r}.")
        array = as_waveform(array)
        ratio = sampling_rate / rate
        if rate != sampling_rate:
            array = resample(array, int(rate), sampling_rate)
        if stride is not None:
            if len(stride) != 2 or stride[0] + stride[1] > len(array) / ratio + 1e-9:
                raise InputError(f"stride={stride!r} is too large for an input of {len(array)} "
                                 "samples: it is (left, right) in samples, and their sum must "
                                 "be less than the input length.")
            extras["stride"] = (len(array), int(round(stride[0] * ratio)),
                                int(round(stride[1] * ratio)))
        extras["extra"] = item
        return array, extras
    if isinstance(item, np.ndarray) or hasattr(item, "detach"):
        return as_waveform(item), extras
    raise InputTypeError(
        f"The {task} pipeline takes a file path, the bytes of an audio file, a 1-D numpy array "
        "at the model's sampling rate, or a dict {'raw': array, 'sampling_rate': rate}; got "
        f"{type(item).__name__}.")


def _download(url: str) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a user's URL)
            return response.read()
    except OSError as err:
        raise ModelNotFoundError(f"Could not download {url}: {err}.") from err


# --- resampling -----------------------------------------------------------------------------

_KERNELS: dict = {}


def _resample_kernel(orig: int, new: int, zero_crossings: int = 16, rolloff: float = 0.945,
                     beta: float = 14.769656459379492):
    """Polyphase filters (new phases, taps) of a Kaiser-windowed sinc low-pass at
    ``rolloff`` x the lower Nyquist rate, as in resampy's "kaiser_best" design."""
    import torch

    key = (orig, new, zero_crossings, rolloff, beta)
    if key not in _KERNELS:
        cutoff = min(orig, new) * rolloff  # in units of the common rate
        width = math.ceil(zero_crossings * orig / cutoff)
        taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
        # Output phase j sits at j/new input periods: the filter is centred there.
        times = (taps[None, :] - torch.arange(new, dtype=torch.float64)[:, None] / new) * cutoff
        times = times.clamp(-zero_crossings, zero_crossings)
        window = torch.special.i0(beta * torch.sqrt(1 - (times / zero_crossings) ** 2)) / \
            torch.special.i0(torch.tensor(beta, dtype=torch.float64))
        sinc = torch.special.sinc(times)
        _KERNELS[key] = ((sinc * window * cutoff / orig).float(), width)
    return _KERNELS[key]


def resample(waveform: Any, orig_rate: int, new_rate: int) -> Any:
    """Resample a 1-D (or (channels, samples)) float32 numpy array from ``orig_rate`` to
    ``new_rate`` with a windowed-sinc polyphase filter (stop band below -80 dB)."""
    import numpy as np
    import torch

    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate == new_rate:
        return waveform
    common = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // common, new_rate // common
    if new > 4096:
        raise InputError(f"Cannot resample from {orig_rate} Hz to {new_rate} Hz: the ratio "
                         f"{new}/{orig} is too fine. Resample to a round rate first.")
    kernel, width = _resample_kernel(orig, new)
    signal = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    shape = signal.shape
    signal = signal.reshape(-1, 1, shape[-1])
    length = shape[-1]
    padded = torch.nn.functional.pad(signal, (width, width + orig))
    with torch.inference_mode():
        out = torch.nn.functional.conv1d(padded, kernel[:, None, :], stride=orig)  # (B, new, frames)
    out = out.transpose(1, 2).reshape(signal.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[:, :target].reshape(*shape[:-1], target).numpy()


# --- feature extractors ---------------------------------------------------------------------

class BatchFeature(dict):
    """A feature extractor's output: a dict with attribute access and ``.to(device/dtype)``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no key {name!r}") from None

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Move tensors to a device; a dtype applies to floating tensors only."""
        import torch

        for key, value in list(self.items()):
            if isinstance(value, torch.Tensor):
                if value.is_floating_point():
                    self[key] = value.to(*args, **kwargs)
                else:
                    device = next((a for a in args if not isinstance(a, torch.dtype)),
                                  kwargs.get("device"))
                    if device is not None:
                        self[key] = value.to(device)
        return self


def _convert(features: dict, return_tensors: Any) -> BatchFeature:
    import numpy as np

    if return_tensors in ("pt", "np"):
        for key, value in list(features.items()):
            if isinstance(value, list):
                value = np.stack(value) if value and len({len(v) for v in value}) == 1 else value
            if return_tensors == "pt" and isinstance(value, np.ndarray):
                import torch

                value = torch.from_numpy(np.ascontiguousarray(value))
            elif return_tensors == "pt" and not hasattr(value, "shape"):
                raise InputError(f"Cannot make a tensor of {key!r}: its rows differ in length. "
                                 "Pass padding=True.")
            features[key] = value
    elif return_tensors is not None:
        raise ValueError(f"return_tensors={return_tensors!r}: use 'pt', 'np' or None.")
    return BatchFeature(features)


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
        data = {k: v for k, v in self.to_dict().items() if _jsonable(v)}
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


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


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
        return _convert(out, return_tensors)

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
        return _convert(out, return_tensors)


_EXTRACTORS = {"WhisperFeatureExtractor": WhisperFeatureExtractor,
               "Wav2Vec2FeatureExtractor": Wav2Vec2FeatureExtractor}
_BY_MODEL_TYPE = {"whisper": WhisperFeatureExtractor, "wav2vec2": Wav2Vec2FeatureExtractor}


class AutoFeatureExtractor:
    """``AutoFeatureExtractor.from_pretrained(folder or Hub id)`` -> the model's extractor,
    chosen by preprocessor_config.json's feature_extractor_type (or config.json's model_type)."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: Any = None, cache_dir: Any = None, local_files_only: bool = False,
                        trust_remote_code: bool | None = None, subfolder: str = "",
                        **kwargs: Any) -> FeatureExtractor:
        from ..errors import refuse_remote_code
        from ..hub import resolve

        refuse_remote_code(trust_remote_code)
        folder = resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                         local_files_only=local_files_only, subfolder=subfolder, weights=False)
        settings = _read_json(folder / "preprocessor_config.json")
        model_type = _read_json(folder / "config.json").get("model_type")
        if not settings:
            raise ModelNotFoundError(f"{name_or_path}: no preprocessor_config.json, so there is no "
                                     "feature extractor to load.")
        name = settings.get("feature_extractor_type") or ""
        extractor = _EXTRACTORS.get(name) or _BY_MODEL_TYPE.get(model_type or "")
        if extractor is None:
            from ..errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"Feature extractor {name or model_type!r} is not supported by lightpipe; it has "
                f"{', '.join(_EXTRACTORS)}.")
        settings.update(kwargs)
        for key in ("processor_class",):
            settings.pop(key, None)
        return extractor(**settings)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"Could not read {path}: {err}. Download the file again.") from err
    return value if isinstance(value, dict) else {}


# --- processors -----------------------------------------------------------------------------

class _AudioProcessor(Processor):
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        from ..tokenization import AutoTokenizer

        return cls(tokenizer=AutoTokenizer.from_pretrained(name_or_path, **kwargs),
                   feature_extractor=AutoFeatureExtractor.from_pretrained(name_or_path))

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
