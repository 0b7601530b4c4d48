"""Audio out: text-to-audio results as WAV files or ``data:audio/wav`` URIs (16-bit PCM, the
stdlib ``wave`` module; no soundfile needed).

A result is ``{"audio": float array, "sampling_rate": int}`` as the pipeline returns it: samples
in [-1, 1] (clipped), shaped ``(samples,)`` or ``(channels, samples)``.
"""

from __future__ import annotations

import base64
import io
import os
import wave
from typing import Any


def wav_bytes(audio: Any, sampling_rate: int) -> bytes:
    """A float waveform -> the bytes of a 16-bit PCM WAV file."""
    import numpy as np

    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 0 or samples.ndim > 2:
        raise ValueError(f"audio must be (samples,) or (channels, samples), not shape {samples.shape}.")
    if samples.ndim == 1:
        samples = samples[None]
    if not isinstance(sampling_rate, int) or isinstance(sampling_rate, bool) or sampling_rate < 1:
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}.")
    pcm = (np.clip(np.nan_to_num(samples), -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[0])
        out.setsampwidth(2)
        out.setframerate(sampling_rate)
        out.writeframes(pcm.T.tobytes())  # interleaved: (samples, channels)
    return buffer.getvalue()


def wav_data_uri(audio: Any, sampling_rate: int) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(audio, sampling_rate)).decode("ascii")


def write_wav(path: str | os.PathLike, audio: Any, sampling_rate: int) -> str:
    """Write one result's audio to ``path``; returns the path as a string."""
    with open(path, "wb") as handle:
        handle.write(wav_bytes(audio, sampling_rate))
    return str(path)


def is_audio_result(value: Any) -> bool:
    """A text-to-audio result: {"audio": array, "sampling_rate": int} and nothing else."""
    return (isinstance(value, dict) and set(value) == {"audio", "sampling_rate"}
            and hasattr(value["audio"], "ndim") and isinstance(value["sampling_rate"], int))


def audio_as_data_uris(payload: Any) -> Any:
    """A call's answer with each audio result's array replaced by a WAV data: URI (one result
    or a list of them); anything else is returned as it is."""
    if is_audio_result(payload):
        return {"audio": wav_data_uri(payload["audio"], payload["sampling_rate"]),
                "sampling_rate": payload["sampling_rate"]}
    if isinstance(payload, list) and payload and any(is_audio_result(item) for item in payload):
        return [audio_as_data_uris(item) for item in payload]
    return payload
