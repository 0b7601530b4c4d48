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

import os
from typing import Any

import torch

from ..errors import InputError
from .base import Pipeline
from .common import check_text, refuse_unknown
from .text_to_audio_bark import (bark_collate, bark_generate, bark_piece, bark_processor, is_bark,
                                 preset_batches)


class TextToAudioPipeline(Pipeline):
    """Speech (or sound) from text (VITS / MMS-TTS), as transformers' text-to-audio pipeline.

    Call:
        ``pipe("Hello")`` or ``pipe(["Hello", "Bye"])``; seeded with ``torch.manual_seed`` the
        waveform equals the reference's.

    Arguments:
        forward_params (dict, default None): passed to the model: ``speaker_id`` (multi-speaker
            checkpoints), ``speaking_rate``, ``noise_scale``, ``noise_scale_duration``; SpeechT5's
            ``speaker_embeddings`` (a (1, 512) x-vector tensor or list, required), ``threshold``,
            ``minlenratio``, ``maxlenratio`` (its spectrogram goes through the pipeline's
            ``vocoder=``: a SpeechT5HifiGan, its folder or Hub id; default
            microsoft/speecht5_hifigan, as the reference).
        generate_kwargs (dict, default None): for models that generate (refused for VITS, as
            the reference); MusicGen takes ``do_sample``, ``guidance_scale``, ``top_k``,
            ``max_new_tokens`` (default 256 unless its generation config sets a length) here
            or in ``forward_params``, and returns (channels, samples) for stereo checkpoints;
            with ``num_return_sequences`` > 1 (sampling), one dict per text whose audio holds
            the samples one after the other, as the reference's.
        preprocess_params (dict, default None): tokenizer arguments (Bark: its processor's,
            ``voice_preset`` a preset name, a .npz file or a dict of arrays).
        processor_kwargs (dict, default None): processor arguments, for models with one.

    Returns:
        ``{"audio": numpy float32 array, "sampling_rate": int}`` per text (a list for a list);
        the CLI writes WAV files (``--output-dir``), the server WAV data: URIs.
    
    """

    task = "text-to-audio"

    def __init__(self, model, *args: Any, vocoder: Any = None, sampling_rate: int | None = None,
                 **kwargs: Any):
        super().__init__(model, *args, **kwargs)
        # Bark reads its texts (and voice presets) through its BarkProcessor, as the reference.
        self.bark = bark_processor(self.model, self.processor, self.tokenizer) if is_bark(self.model) else None
        # As the reference, a vocoder serves spectrogram models only (others ignore it), and
        # microsoft/speecht5_hifigan is loaded when none is given.
        self.vocoder = _load_vocoder(self.model, vocoder) if _makes_spectrograms(self.model) else None
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
        if self.bark is not None:
            return bark_piece(self.bark, text, params)
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
        if self.bark is not None:  # Bark: also a new batch where the voice preset changes
            return preset_batches(pieces, batch_size)
        return [list(range(start, min(start + batch_size, len(pieces))))
                for start in range(0, len(pieces), batch_size)]

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        batch, extras = super().collate(pieces)
        if self.bark is not None:
            bark_collate(batch, extras, self.device)
        return batch, extras

    def _forward(self, model_inputs: dict, forward_params: dict | None = None,
                 generate_kwargs: dict | None = None) -> dict:
        forward_params = _to_device(forward_params or {}, self.device)
        generate_kwargs = _to_device(generate_kwargs or {}, self.device)
        if self.vocoder is not None:  # SpeechT5: padded spectrograms and each row's length
            spectrograms, lengths = self.model.generate(
                **model_inputs, **{**forward_params, **generate_kwargs}, return_output_lengths=True)
            audio = self.vocoder(spectrograms)  # (batch, samples): each row less its padding
            frames = spectrograms.shape[1]
            hop = audio.shape[-1] // frames
            return {"audio": audio, "lengths": torch.tensor(
                [[audio.shape[-1] - hop * (frames - n)] for n in lengths])}
        if self.bark is not None:  # Bark: its stages' own settings, no pipeline defaults
            return bark_generate(self.model, model_inputs, {**forward_params, **generate_kwargs})
        if self.model.can_generate():
            params = _with_generation_defaults(self.model, {**forward_params, **generate_kwargs})
            output = self.model.generate(**model_inputs, **params)
            audio = output["audio"] if isinstance(output, dict) and "audio" in output else output
            if isinstance(output, dict) and "sequences" in output:  # return_dict_in_generate
                audio = output["sequences"]
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


DEFAULT_VOCODER = "microsoft/speecht5_hifigan"


def _load_vocoder(model, vocoder: Any):
    """The vocoder given (a model, a folder or a Hub id), else the reference's default."""
    if vocoder is not None and not isinstance(vocoder, (str, os.PathLike)):
        return vocoder
    from ..models import AutoModel

    name = DEFAULT_VOCODER if vocoder is None else vocoder
    try:
        return AutoModel.from_pretrained(name)
    except OSError as error:
        if vocoder is not None:
            raise
        raise InputError(
            f"{type(model).__name__} makes a spectrogram and needs a vocoder; the default "
            f"{DEFAULT_VOCODER} could not be loaded ({error}). Pass vocoder= (a SpeechT5HifiGan, "
            "its folder or its Hub id).") from None


def _with_generation_defaults(model, params: dict) -> dict:
    """The reference pipeline's default ``max_new_tokens=256`` for a model that generates with
    a generation config (MusicGen), unless the call or the model's generation config sets a
    length (the global default max_length 20 does not count)."""
    config = getattr(model, "generation_config", None)
    if config is None or not hasattr(config, "to_diff_dict"):
        return params
    from .generative import unset_defaults

    set_params = {k: v for k, v in config.to_diff_dict().items() if not (k == "max_length" and v == 20)}
    given = params.get("generation_config")
    if given is not None:
        set_params.update(given.to_diff_dict())
    return {**params, **unset_defaults({"max_new_tokens": 256}, {**set_params, **params})}


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
