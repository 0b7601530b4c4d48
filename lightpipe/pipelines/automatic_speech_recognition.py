"""automatic-speech-recognition: text from speech, with CTC models (Wav2Vec2) and Whisper.

Audio is decoded without a system ffmpeg (processing/audio.py). Long audio is cut into
overlapping chunks (``chunk_length_s``, ``stride_length_s``) that are batched like any other
pieces and merged as transformers merges them: CTC logits trimmed by their strides, Whisper
token sequences joined on their longest common overlap (tokenization/whisper.py, decode_asr).
Without chunks, Whisper gets the whole log-mel of audio over 30 s and decodes it long-form,
window by window (models/whisper_generation.py), which needs ``return_timestamps=True``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import InputError
from .audio_base import AudioPipeline
from .generative import unset_defaults

# What transformers' pipeline passes to generate() unless the model's generation config sets
# it: Whisper checkpoints are decoded with 5 beams, as in OpenAI's implementation.
_GENERATION_DEFAULTS = {"max_new_tokens": 256, "num_beams": 5}


def rescale_stride(stride: tuple[int, int, int], ratio: float) -> tuple[int, int, int]:
    """(samples, left, right) -> the same in model frames."""
    total, left, right = stride
    frames = int(round(total * ratio))
    return frames, int(round(left / total * frames)), int(round(right / total * frames))


class AutomaticSpeechRecognitionPipeline(AudioPipeline):
    """Transcribes speech with a CTC model (wav2vec2, HuBERT) or Whisper.

    Call:
        ``pipe(audio, **args)`` where ``audio`` is a file path (wav, flac, ogg, mp3, ...), the
        bytes of a file, a 1-D numpy array at the model's sampling rate, or ``{"raw"|"array":
        samples, "sampling_rate": rate}`` (resampled; an optional ``"stride": (left, right)``
        for CTC models); or a list or iterator of them.

    Arguments:
        return_timestamps (bool | str, optional): "char" or "word" for CTC models; True (segments)
            or "word" (words timed from the cross-attention of its ``alignment_heads``) for
            Whisper.
        chunk_length_s (float, optional): read long audio in chunks of this many seconds.
        stride_length_s (float | tuple, default chunk_length_s / 6): seconds of overlap on each
            side of a chunk.
        return_language (bool, optional): Whisper: add each chunk's language.
        generate_kwargs (dict, optional): Whisper: ``generate()`` arguments (``language``,
            ``task``, ``max_new_tokens``, ``condition_on_prev_tokens``, ...); other unknown
            keywords go there too (refused for CTC models).
        decoder_kwargs (dict, optional), ignore_warning (bool, optional): accepted for
            compatibility, without effect.

    Returns:
        For one clip, ``{"text": str}``; with timestamps also ``"chunks": [{"text": str,
        "timestamp": (start, end)}, ...]`` in seconds (each chunk also has ``"language"`` with
        ``return_language``). For a list of clips, a list of those dicts.
    """

    task = "automatic-speech-recognition"
    chunked = True

    def __init__(self, model, *args: Any, **kwargs: Any):
        self.type = "seq2seq_whisper" if model.config.get("model_type") == "whisper" else "ctc"
        super().__init__(model, *args, **kwargs)
        if self.feature_extractor is None:
            raise ValueError("The automatic-speech-recognition pipeline needs a feature extractor: "
                             "pass feature_extractor= (an object or a folder).")

    def _sanitize_parameters(self, chunk_length_s: float | None = None,
                             stride_length_s: Any = None, ignore_warning: Any = None,
                             return_timestamps: Any = None, return_language: Any = None,
                             generate_kwargs: dict | None = None, decoder_kwargs: Any = None,
                             **kwargs: Any):
        pre: dict[str, Any] = {}
        fwd: dict[str, Any] = {}
        post: dict[str, Any] = {}
        if chunk_length_s is not None:
            pre["chunk_length_s"] = chunk_length_s
        if stride_length_s is not None:
            pre["stride_length_s"] = stride_length_s
        if generate_kwargs:
            fwd.update(generate_kwargs)
        fwd.update(kwargs)
        if fwd and self.type == "ctc":
            raise TypeError(f"Unexpected arguments for a CTC model: {', '.join(fwd)} (generation "
                            "arguments apply to Whisper only).")
        if return_language is not None:
            if self.type != "seq2seq_whisper":
                raise ValueError("Only Whisper can return language for now.")
            fwd["return_language"] = post["return_language"] = return_language
        generation_config = getattr(self.model, "generation_config", None)
        if getattr(generation_config, "return_timestamps", False):
            return_timestamps = return_timestamps or generation_config.return_timestamps
        if return_timestamps is not None:
            if self.type == "ctc" and return_timestamps not in ("char", "word"):
                raise ValueError(
                    "CTC can either predict character level timestamps, or word level timestamps. "
                    "Set `return_timestamps='char'` or `return_timestamps='word'` as required.")
            if self.type == "seq2seq_whisper" and return_timestamps == "char":
                raise ValueError(
                    "Whisper cannot return `char` timestamps, only word level or segment level "
                    "timestamps. Use `return_timestamps='word'` or `return_timestamps=True` "
                    "respectively.")
            fwd["return_timestamps"] = return_timestamps
            post["return_timestamps"] = return_timestamps
        return pre, fwd, post

    @property
    def _align_to(self) -> int:
        """Samples per CTC output frame (the product of the feature encoder's strides)."""
        return math.prod(self.model.config.get("conv_stride", (1,)))

    # --- preprocessing -----------------------------------------------------------------------
    def preprocess(self, item: Any, chunk_length_s: float = 0, stride_length_s: Any = None) -> list:
        from ..processing.audio import load_audio

        extractor = self.feature_extractor
        rate = extractor.sampling_rate
        waveform, info = load_audio(item, rate, self.task)
        stride = info.get("stride")
        extra = info.get("extra", {})
        if chunk_length_s:
            if stride is not None:
                raise InputError("Pass either a 'stride' in the input dict or chunk_length_s, "
                                 "not both.")
            if stride_length_s is None:
                stride_length_s = chunk_length_s / 6
            if isinstance(stride_length_s, (int, float)):
                stride_length_s = [stride_length_s, stride_length_s]
            align = self._align_to
            chunk_len = int(round(chunk_length_s * rate / align) * align)
            left = int(round(stride_length_s[0] * rate / align) * align)
            right = int(round(stride_length_s[1] * rate / align) * align)
            if chunk_len < left + right:
                raise ValueError("Chunk length must be superior to stride length")
            return [{**piece, "extra": extra}
                    for piece in self._chunks(waveform, chunk_len, left, right)]
        piece = self._features(waveform)
        piece["is_last"] = True
        if stride is not None:  # CTC: trimmed from the logits; Whisper: shifts the timestamps
            piece["stride"] = stride
        piece["extra"] = extra
        return [piece]

    def _features(self, waveform: Any) -> dict:
        extractor = self.feature_extractor
        kwargs: dict[str, Any] = {"sampling_rate": extractor.sampling_rate,
                                  "return_tensors": "np", "return_attention_mask": True}
        if self.type == "seq2seq_whisper" and len(waveform) > extractor.n_samples:
            kwargs.update(truncation=False, padding="longest")
        features = extractor(waveform, **kwargs)
        out = {key: torch.from_numpy(value[0]) for key, value in features.items()}
        dtype = self.model.dtype
        for key in ("input_values", "input_features"):
            if key in out and dtype != torch.float32:
                out[key] = out[key].to(dtype)
        return out

    def _chunks(self, waveform: Any, chunk_len: int, left: int, right: int):
        total = waveform.shape[0]
        step = chunk_len - left - right
        for start in range(0, total, step):
            end = start + chunk_len
            chunk = waveform[start:end]
            is_last = end >= total
            stride = (chunk.shape[0], 0 if start == 0 else left, 0 if is_last else right)
            if chunk.shape[0] > stride[1]:
                yield {**self._features(chunk), "is_last": is_last, "stride": stride}
            if is_last:
                break

    # --- batching and the model ----------------------------------------------------------------
    def make_batches(self, pieces: list[dict], batch_size: int) -> list[list[int]]:
        """Whisper: features of one length batch together (30 s windows, or long audio of the
        same length), so that long audio, decoded to its own end, gets what it gets alone."""
        batches = super().make_batches(pieces, batch_size)
        if self.type != "seq2seq_whisper":
            return batches
        groups: dict[int, list[int]] = {}
        for index in (i for batch in batches for i in batch):
            groups.setdefault(pieces[index]["input_features"].shape[-1], []).append(index)
        return [group[start:start + batch_size] for group in groups.values()
                for start in range(0, len(group), batch_size)]

    def _forward(self, model_inputs: dict, return_timestamps: Any = None,
                 return_language: Any = None, **generate_kwargs: Any) -> dict:
        attention_mask = model_inputs.get("attention_mask")
        if self.type == "seq2seq_whisper":
            params = self._generate_kwargs(generate_kwargs)
            if return_timestamps:
                params["return_timestamps"] = True
            if return_timestamps == "word":  # per-token times from the alignment heads
                params["return_token_timestamps"] = params["return_segments"] = True
            if return_language:  # the segments keep each window's prompt (its language)
                params["return_segments"] = True
            out = self.model.generate(model_inputs["input_features"],
                                      attention_mask=attention_mask, **params)
            if not isinstance(out, dict):
                return {"tokens": out}
            result = {"tokens": out["sequences"]}
            if return_timestamps == "word":  # the times of every segment, from the audio's start
                times = [torch.cat([s["token_timestamps"] for s in row]) if row
                         else torch.zeros(0) for row in out["segments"]]
                longest = out["sequences"].shape[1]
                result["token_timestamps"] = torch.stack(
                    [torch.nn.functional.pad(t, (0, longest - len(t))) for t in times])
            if return_language:
                result["lang_id"] = self._languages(out["segments"], params)
            return result
        logits = self.model(input_values=model_inputs["input_values"],
                            attention_mask=attention_mask).logits
        return {"tokens": logits.argmax(dim=-1)}

    def _languages(self, segments: list, params: dict) -> torch.Tensor:
        """Each row's language token (-1: none), the first language token of its first
        window's prompt, as the reference finds it."""
        config = params.get("generation_config") or self.model.generation_config
        languages = set((getattr(config, "lang_to_id", None) or {}).values())
        found = []
        for row in segments:
            prompt = row[0]["result"].tolist() if row else []
            found.append(next((t for t in prompt if t in languages), -1))
        return torch.tensor(found, dtype=torch.long)

    def _generate_kwargs(self, generate_kwargs: dict) -> dict:
        """The call's generation arguments plus the pipeline's defaults for those that neither
        the call nor the model's generation_config.json set (as transformers does)."""
        params = dict(generate_kwargs)
        config = getattr(self.model, "generation_config", None)
        declared = set(config.to_diff_dict()) if config is not None and hasattr(config, "to_diff_dict") else set()
        params.update(unset_defaults(_GENERATION_DEFAULTS, declared | set(params)))
        if self.tokenizer is not None and self.tokenizer.pad_token_id is not None:
            params.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        return params

    # --- postprocessing ----------------------------------------------------------------------
    def postprocess(self, model_outputs: list[dict], return_timestamps: Any = None,
                    return_language: Any = None) -> dict:
        optional: dict[str, Any] = {}
        if self.type == "seq2seq_whisper":
            from ..tokenization.whisper import decode_asr

            extractor = self.feature_extractor
            time_precision = extractor.chunk_length / self.model.config.max_source_positions
            outputs = []
            for output in model_outputs:
                entry = {"tokens": output["tokens"]}
                language = output.get("lang_id")
                if return_language and language is not None and int(language.reshape(-1)[0]) >= 0:
                    # generate() returns no prompt: the language token goes back in front, so
                    # that decode_asr finds it (as the reference does)
                    token = language.reshape(1, 1).to(entry["tokens"].dtype)
                    entry["tokens"] = torch.cat([token, entry["tokens"].reshape(1, -1)], dim=-1)
                if "token_timestamps" in output:
                    entry["token_timestamps"] = output["token_timestamps"]
                if "stride" in output:
                    total, left, right = output["stride"]
                    rate = extractor.sampling_rate
                    entry["stride"] = (total / rate, left / rate, right / rate)
                outputs.append(entry)
            text, optional = decode_asr(self.tokenizer, outputs, return_timestamps=return_timestamps,
                                        return_language=return_language,
                                        time_precision=time_precision)
        else:
            pieces = []
            for output in model_outputs:
                items = output["tokens"]  # (1, frames)
                stride = output.get("stride")
                if stride is not None:
                    total, left, right = rescale_stride(stride, 1 / self._align_to)
                    items = items[:, left:total - right]
                pieces.append(items)
            items = torch.cat(pieces, dim=1)[0].tolist()
            text = self.tokenizer.decode(items, skip_special_tokens=False)
            if return_timestamps:
                offsets = self.tokenizer.decode(items, skip_special_tokens=False,
                                                output_char_offsets=True)["char_offsets"]
                if return_timestamps == "word":
                    offsets = self.tokenizer._get_word_offsets(
                        offsets, self.tokenizer.replace_word_delimiter_char)
                rate, align = self.feature_extractor.sampling_rate, self._align_to
                optional["chunks"] = [
                    {"text": item[return_timestamps],
                     "timestamp": (item["start_offset"] * align / rate,
                                   item["end_offset"] * align / rate)}
                    for item in offsets]
        extra: dict[str, list] = {}
        for output in model_outputs:
            for key, value in output.get("extra", {}).items():
                extra.setdefault(key, []).append(value)
        return {"text": text, **optional, **extra}
