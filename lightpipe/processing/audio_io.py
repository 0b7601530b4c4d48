"""Audio input without a system ffmpeg, and resampling.

- ``load_audio(item, sampling_rate)``: a file path (wav, flac, ogg, mp3, ... decoded by
  ``soundfile``, or by ``av``, which ships its own decoders), raw file bytes, a 1-D array, or a
  ``{"raw"|"array": ..., "sampling_rate": ...}`` dict -> mono float32 at the model's rate.
- ``resample``: a windowed-sinc (Kaiser) polyphase resampler in torch, anti-aliased.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError, ModelNotFoundError

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
    if all("No module named" in error for error in errors):
        from ..errors import missing_extra

        raise missing_extra("soundfile")
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
        check_rate(rate)
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

# Rates outside this range are not audio anyone records; a rate of 4 Hz would make a 4,000x
# upsample (gigabytes) of a small request.
MIN_RATE, MAX_RATE = 1_000, 768_000
# A polyphase filter bank has (new phases x taps) values: an awkward ratio (20004 -> 16000 Hz is
# 4000/5001) would need 80 MB. Above this size the ratio is refused; the cache keeps the most
# recently used banks up to _CACHE_BYTES.
MAX_KERNEL_VALUES = 4_000_000
_CACHE_BYTES = 64 * 1024 * 1024
_KERNELS: "OrderedDict[tuple, tuple]" = OrderedDict()
_KERNELS_LOCK = threading.Lock()


def check_rate(rate: Any) -> None:
    """A sampling rate must be a finite number of Hz in [MIN_RATE, MAX_RATE]."""
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate) \
            or rate <= 0:
        raise InputError(f"sampling_rate must be a positive number of Hz such as 16000, got {rate!r}.")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"sampling_rate={rate!r} Hz is outside {MIN_RATE}-{MAX_RATE} Hz: pass the "
                         "rate the samples were recorded at (e.g. 16000, 44100 or 48000).")


def _filter_width(orig: int, new: int, zero_crossings: int = 16, rolloff: float = 0.945) -> int:
    """Half the filter's length in input samples (its taps: 2 * width + orig)."""
    return math.ceil(zero_crossings * orig / (min(orig, new) * rolloff))


def _resample_kernel(orig: int, new: int, zero_crossings: int = 16, rolloff: float = 0.945,
                     beta: float = 14.769656459379492):
    """Polyphase filters (new phases, taps) of a Kaiser-windowed sinc low-pass at
    ``rolloff`` x the lower Nyquist rate, as in resampy's "kaiser_best" design."""
    import torch

    key = (orig, new, zero_crossings, rolloff, beta)
    with _KERNELS_LOCK:
        if key in _KERNELS:
            _KERNELS.move_to_end(key)
            return _KERNELS[key]
    cutoff = min(orig, new) * rolloff  # in units of the common rate
    width = _filter_width(orig, new, zero_crossings, rolloff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    # Output phase j sits at j/new input periods: the filter is centred there.
    times = (taps[None, :] - torch.arange(new, dtype=torch.float64)[:, None] / new) * cutoff
    times = times.clamp(-zero_crossings, zero_crossings)
    window = torch.special.i0(beta * torch.sqrt(1 - (times / zero_crossings) ** 2)) / \
        torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    sinc = torch.special.sinc(times)
    entry = ((sinc * window * cutoff / orig).float(), width)
    with _KERNELS_LOCK:
        _KERNELS[key] = entry
        while sum(k.numel() * 4 for k, _ in _KERNELS.values()) > _CACHE_BYTES and len(_KERNELS) > 1:
            _KERNELS.popitem(last=False)
    return entry


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
    if new * (orig + 2 * _filter_width(orig, new)) > MAX_KERNEL_VALUES:
        raise InputError(f"Cannot resample from {orig_rate} Hz to {new_rate} Hz: the ratio "
                         f"{new}/{orig} is too fine. Resample to a round rate (e.g. 16000, 44100 "
                         "or 48000 Hz) first.")
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
