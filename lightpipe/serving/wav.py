"""Raw WAV answers: a text-to-audio model's audio as ``audio/wav`` bytes instead of JSON.

    POST /v1/pipelines/NAME  {"inputs": "text", "response_format": "wav"}     -> audio/wav
    POST /v1/pipelines/NAME  {"inputs": "text"} + header ``Accept: audio/wav`` -> audio/wav
    POST /v1/audio/speech    {"model", "input", "voice"?, "response_format"?: "wav", "speed"?}
                                                              -> audio/wav  (openai_api.py)

A raw answer holds one input's audio (16-bit PCM, the model's sampling rate; audio_out.py
makes the bytes); a list of inputs, another task, or a format other than WAV is a clear 4xx.
By default (no Accept naming audio, no ``response_format``) answers stay JSON, the audio as
``data:audio/wav;base64,...`` URIs.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError

WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/*")
FORMATS = ("json", "wav")


def wants_wav(accept: str | None, response_format: Any) -> bool:
    """Whether a pipeline request asks for raw WAV: ``response_format`` ("json" or "wav") wins;
    otherwise an ``Accept`` header that prefers a WAV type to JSON. 422 for an unknown format,
    406 for an Accept header that asks only for other audio types (audio/mpeg, ...); any other
    Accept header leaves the answer JSON, as before."""
    if response_format is not None:
        if response_format not in FORMATS:
            raise ApiError(422, f"'response_format' must be \"json\" or \"wav\", not "
                                f"{response_format!r:.40}.", "invalid_value", "response_format")
        return response_format == "wav"
    if not accept:
        return False
    ranges = _media_ranges(accept)
    audio = max((q for kind, q in ranges if kind in WAV_TYPES), default=0.0)
    json_q = max((q for kind, q in ranges if kind in ("application/json", "application/*", "*/*")),
                 default=0.0)
    if audio > 0 and audio >= json_q:
        return True
    other_audio = [kind for kind, q in ranges if kind.startswith("audio/") and q > 0]
    if other_audio and json_q == 0:  # e.g. audio/mpeg only: a format this server does not make
        raise ApiError(406, f"This server makes audio/wav only, not {', '.join(other_audio):.80}: "
                            "send 'Accept: audio/wav' (or application/json for data: URIs).",
                       "not_acceptable")
    return False


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """'audio/wav;q=0.9, application/json' -> [('audio/wav', 0.9), ('application/json', 1.0)]."""
    ranges = []
    for part in accept.split(","):
        kind, *params = (piece.strip() for piece in part.split(";"))
        if not kind:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((kind.lower(), q))
    return ranges


def check_wav_request(model: Any, single: bool, field: str = "inputs") -> None:
    """422 unless ``model`` makes audio and the request holds one input."""
    if model.task != "text-to-audio":
        raise ApiError(422, f"Model {model.name!r} serves {model.task}; raw WAV answers come from "
                            "text-to-audio models. Ask for JSON (drop response_format / the "
                            "audio Accept header).", "wrong_task", "response_format")
    if not single:
        raise ApiError(422, f"A raw WAV answer holds one input's audio, but '{field}' is a list: "
                            "send one text, or ask for JSON (drop response_format / the audio "
                            "Accept header) to get one data: URI per input.", "invalid_input", field)


def wav_answer(result: Any) -> bytes:
    """One pipeline result ({"audio", "sampling_rate"}) -> the bytes of a WAV file."""
    from ..audio_out import wav_bytes

    return wav_bytes(result["audio"], result["sampling_rate"])
