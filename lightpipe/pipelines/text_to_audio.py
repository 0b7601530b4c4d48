"""text-to-audio (alias text-to-speech): text -> ``{"audio": float32 array, "sampling_rate": int}``.

As transformers' ``TextToAudioPipeline``: model arguments go in ``forward_params`` (VITS's
``speaker_id`` / ``speaking_rate``, SpeechT5's ``speaker_embeddings``) and, for models that
generate, ``generate_kwargs`` (which win over ``forward_params``); a spectrogram model's output
goes through its vocoder. Batches keep the caller's order (not sorted by length) so that a
seeded call draws the same noise, batch by batch, as the reference.

One difference, on purpose: in a batch (``batch_size`` > 1, or the server's batches of several
requests), each waveform is cut to its own length (VITS's ``sequence_lengths``). The reference
returns every row at the batch's longest length, the tail being the decoder's output on padding,
so its answer for a text would depend on the texts batched with it. Our samples equal the
reference's up to that length.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .base import Pipeline
from .common import check_text, refuse_unknown


class TextToAudioPipeline(Pipeline):
    """Speech (or sound) from text (VITS / MMS-TTS), as transformers' text-to-audio pipeline.

    Call:
        ``pipe("Hello")`` or ``pipe(["Hello", "Bye"])``; seeded with ``torch.manual_seed`` the
        waveform equals the reference's.

    Arguments:
        forward_params (dict, default None): passed to the model: ``speaker_id`` (multi-speaker
            checkpoints), ``speaking_rate``, ``noise_scale``, ``noise_scale_duration``.
        generate_kwargs (dict, default None): for models that generate (refused for VITS, as
            the reference).
        preprocess_params (dict, default None): tokenizer arguments.
        processor_kwargs (dict, default None): processor arguments, for models with one.

    Returns:
        ``{"audio": numpy float32 array, "sampling_rate": int}`` per text (a list for a list);
        the CLI writes WAV files (``--output-dir``), the server WAV data: URIs.
    
    """

    task = "text-to-audio"

    def __init__(self, model, *args: Any, vocoder: Any = None, sampling_rate: int | None = None,
                 **kwargs: Any):
        super().__init__(model, *args, **kwargs)
        # As the reference, a vocoder serves spectrogram models only (others ignore it).
        self.vocoder = vocoder if _makes_spectrograms(self.model) else None
        if self.vocoder is None and _makes_spectrograms(self.model):
            raise InputError(f"{type(self.model).__name__} makes a spectrogram: pass vocoder= (a "
                             "SpeechT5HifiGan, e.g. microsoft/speecht5_hifigan) to turn it into audio.")
        if self.vocoder is not None:
            self.vocoder = self.vocoder.to(self.model.device).eval()
        self.sampling_rate = sampling_rate
        if self.vocoder is not None:
            self.sampling_rate = self.vocoder.config.sampling_rate
        if self.sampling_rate is None:
            self.sampling_rate = _config_sampling_rate(self.model)

    def _sanitize_parameters(self, preprocess_params: dict | None = None,
                             forward_params: dict | None = None, generate_kwargs: dict | None = None,
                             processor_kwargs: dict | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs, ": model arguments go in forward_params={...} (or "
                       "generate_kwargs={...} for a model that generates).")
        for name, value in (("preprocess_params", preprocess_params),
                            ("forward_params", forward_params), ("generate_kwargs", generate_kwargs),
                            ("processor_kwargs", processor_kwargs)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict, not {type(value).__name__}.")
        if generate_kwargs and not self.model.can_generate():
            raise ValueError(
                f"{type(self.model).__name__} makes audio in one forward pass and does not generate: "
                f"put its arguments ({', '.join(generate_kwargs)}) in forward_params, not "
                "generate_kwargs.")
        pre = dict(preprocess_params or {})
        if processor_kwargs is not None:
            pre.update(processor_kwargs)
        return pre, {"forward_params": dict(forward_params or {}),
                     "generate_kwargs": dict(generate_kwargs or {})}, {}

    def split_inputs(self, inputs: Any, params: dict):
        items, single = super().split_inputs(inputs, params)
        if not single:
            # The reference runs a list (or a stream) through a torch DataLoader, whose iterator
            # draws one int64 from the global generator as it starts (its base seed). Drawing it
            # too keeps seeded calls on lists equal to the reference's, noise for noise.
            torch.empty((), dtype=torch.int64).random_()
        return items, single

    def preprocess(self, item: Any, **params: Any) -> dict:
        text = check_text(item, self.task)
        if not text.strip():
            raise InputError("The text-to-audio pipeline got an empty text: give it something to say.")
        encoded = self.tokenizer(text, **params)
        ids = encoded["input_ids"]
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        if not ids:
            raise InputError(f"Nothing of the text {text!r:.60} is in the model's vocabulary (its "
                             "characters were all dropped): write it in the model's language and "
                             "script.")
        piece = {"input_ids": ids}
        if "attention_mask" in encoded:
            mask = encoded["attention_mask"]
            mask = mask.tolist() if hasattr(mask, "tolist") else list(mask)
            piece["attention_mask"] = mask[0] if mask and isinstance(mask[0], list) else mask
        return piece

    def make_batches(self, pieces: list[dict], batch_size: int) -> list[list[int]]:
        """Consecutive pieces, in the caller's order (the seeded noise follows the batches)."""
        return [list(range(start, min(start + batch_size, len(pieces))))
                for start in range(0, len(pieces), batch_size)]

    def _forward(self, model_inputs: dict, forward_params: dict | None = None,
                 generate_kwargs: dict | None = None) -> dict:
        forward_params = _to_device(forward_params or {}, self.device)
        generate_kwargs = _to_device(generate_kwargs or {}, self.device)
        if self.model.can_generate():
            output = self.model.generate(**model_inputs, **{**forward_params, **generate_kwargs})
            audio = output["audio"] if isinstance(output, dict) and "audio" in output else output
        else:
            output = self.model(**model_inputs, **forward_params)
            audio, lengths = output[0], output.get("sequence_lengths")
            if lengths is not None and audio.shape[0] > 1:  # a batch: each row to its own length
                return {"audio": audio, "lengths": lengths}
        if self.vocoder is not None:  # a spectrogram -> a waveform
            audio = self.vocoder(audio)
        return {"audio": audio}

    def postprocess(self, model_outputs: dict) -> dict:
        audio = model_outputs["audio"]
        if "lengths" in model_outputs:
            audio = audio[..., :int(model_outputs["lengths"].reshape(-1)[0])]
        return {"audio": audio.to(device="cpu", dtype=torch.float).numpy().squeeze(),
                "sampling_rate": self.sampling_rate}


def _makes_spectrograms(model) -> bool:
    from ..models import heads_for

    try:
        heads = heads_for(model.config.get("model_type"))
    except ValueError:
        return False
    return type(model) is heads.get("AutoModelForTextToSpectrogram")


def _config_sampling_rate(model) -> int | None:
    """The rate from the generation config or the config (``sampling_rate`` or ``sample_rate``),
    else from the audio codec's config, as the reference looks for it."""
    codec = model.config.get("audio_encoder") or model.config.get("codec_config")
    for source in (getattr(model, "generation_config", None), model.config, codec):
        for name in ("sampling_rate", "sample_rate"):
            value = _field(source, name)
            if value is not None:
                return int(value)
    return None


def _field(source: Any, name: str) -> Any:
    if source is None:
        return None
    return source.get(name) if isinstance(source, dict) or hasattr(source, "set_defaults") \
        else getattr(source, name, None)


def _to_device(params: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in params.items()}
