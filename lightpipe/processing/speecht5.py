"""SpeechT5's processor: its character tokenizer (the text-to-speech input) and its feature
extractor, as transformers' ``SpeechT5Processor`` / ``SpeechT5FeatureExtractor``. Only the
waveform input path of the extractor is built (Wav2Vec2's, with SpeechT5's defaults); its
log-mel ``audio_target`` (training labels) is refused with a clear error."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .audio import Wav2Vec2FeatureExtractor, _AudioProcessor


class SpeechT5FeatureExtractor(Wav2Vec2FeatureExtractor):
    """Raw waveforms, padded, normalised only with ``do_normalize=True``, with an attention
    mask (the reference's defaults)."""

    defaults = {**Wav2Vec2FeatureExtractor.defaults, "do_normalize": False,
                "return_attention_mask": True, "num_mel_bins": 80, "hop_length": 16,
                "win_length": 64, "win_function": "hann_window", "fmin": 80, "fmax": 7600,
                "mel_floor": 1e-10}

    def __call__(self, audio: Any = None, *args: Any, audio_target: Any = None, **kwargs: Any):
        if audio_target is not None:
            raise InputError("SpeechT5FeatureExtractor's audio_target (log-mel training labels) "
                             "is not supported by lightpipe, which runs inference only: pass audio=.")
        if audio is None:
            raise InputError("SpeechT5FeatureExtractor needs audio (a waveform array).")
        return super().__call__(audio, *args, **kwargs)


class SpeechT5Processor(_AudioProcessor):
    """``processor(text=...)`` -> the tokenizer's ``input_ids`` / ``attention_mask`` (the
    text-to-speech input); ``processor(audio=...)`` -> the feature extractor's
    ``input_values``; ``text_target=`` adds ``labels``. Arguments by keyword, as the
    reference."""

    def __call__(self, *args: Any, text: Any = None, audio: Any = None, text_target: Any = None,
                 audio_target: Any = None, **kwargs: Any):
        if audio is not None and text is not None:
            raise InputError("SpeechT5Processor takes audio= or text=, not both (did you mean "
                             "text_target=?).")
        if audio_target is not None:
            raise InputError("SpeechT5Processor's audio_target (log-mel training labels) is not "
                             "supported by lightpipe, which runs inference only.")
        if audio is None and text is None and text_target is None:
            raise InputError("SpeechT5Processor needs text= (text-to-speech), audio= or "
                             "text_target=.")
        if audio is not None:
            inputs = self.feature_extractor(audio, *args, **kwargs)
        elif text is not None:
            inputs = self.tokenizer(text, **kwargs)
        else:
            return self.tokenizer(text_target, **kwargs)
        if text_target is not None:
            targets = self.tokenizer(text_target, **kwargs)
            inputs["labels"] = targets["input_ids"]
            if "attention_mask" in targets:
                inputs["decoder_attention_mask"] = targets["attention_mask"]
        return inputs

    @property
    def model_input_names(self) -> list[str]:
        return list(self.tokenizer.model_input_names)
