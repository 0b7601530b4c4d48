"""The model registry (model_type -> module) and the Auto model classes.

Each model module defines ``HEADS``: {Auto class name: model class}. Modules are imported on
first use, so a registry look-up costs nothing until a model of that family is built. Which
module serves which ``model_type`` is read from the family registry, ``lightpipe.families``;
variants whose maths is the same as a sibling's are entries there, not copies.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..config import Config
from ..errors import UnsupportedModelError, closest, refuse_remote_code
from ..families import FAMILIES, modality
from ..hub import resolve

# Suffix of an architecture name (config.architectures) -> Auto class / head.
ARCHITECTURE_SUFFIXES: dict[str, str] = {
    "ForSequenceClassification": "AutoModelForSequenceClassification",
    "ForTokenClassification": "AutoModelForTokenClassification",
    "ForQuestionAnswering": "AutoModelForQuestionAnswering",
    "ForMaskedLM": "AutoModelForMaskedLM",
    "ForCausalLM": "AutoModelForCausalLM",
    "LMHeadModel": "AutoModelForCausalLM",  # GPT2LMHeadModel
    "ForConditionalGeneration": "AutoModelForSeq2SeqLM",  # T5, BART (Whisper: see below)
    "MTModel": "AutoModelForSeq2SeqLM",  # MarianMTModel
    "ForCTC": "AutoModelForCTC",
    "ForAudioClassification": "AutoModelForAudioClassification",
    "ForImageClassification": "AutoModelForImageClassification",
    "ForObjectDetection": "AutoModelForObjectDetection",
    "ForVisionQuestionAnswering": "AutoModelForVisualQuestionAnswering",
    "ForDocumentQuestionAnswering": "AutoModelForDocumentQuestionAnswering",
    "ForImageSuperResolution": "AutoModelForImageToImage",
    "ForDepthEstimation": "AutoModelForDepthEstimation",
    "ForSemanticSegmentation": "AutoModelForSemanticSegmentation",
    "ForImageSegmentation": "AutoModelForImageSegmentation",
    "ForSegmentation": "AutoModelForImageSegmentation",  # DetrForSegmentation
    "ForVision2Seq": "AutoModelForVision2Seq",
    "ForVideoClassification": "AutoModelForVideoClassification",
    "ForTextToSpeech": "AutoModelForTextToSpectrogram",  # SpeechT5ForTextToSpeech
    "Model": "AutoModel",
}

# Per-modality meaning of the generic suffixes.
_MODALITY_HEADS = {
    "audio": {"AutoModelForSeq2SeqLM": "AutoModelForSpeechSeq2Seq",
              "AutoModelForSequenceClassification": "AutoModelForAudioClassification"},
    "image": {"AutoModelForSequenceClassification": "AutoModelForImageClassification"},
}


def head_of_architecture(architecture: str, model_type: str | None = None) -> str | None:
    """'BertForSequenceClassification' -> 'AutoModelForSequenceClassification';
    'WhisperForConditionalGeneration' (model_type 'whisper') -> 'AutoModelForSpeechSeq2Seq'."""
    for suffix, head in ARCHITECTURE_SUFFIXES.items():
        if architecture.endswith(suffix):
            return _MODALITY_HEADS.get(modality(model_type), {}).get(head, head)
    return None


def heads_for(model_type: str | None) -> dict[str, type]:
    """{Auto class name: model class} for a model_type; a clear error when unsupported."""
    family = FAMILIES.get(model_type or "")
    if family is None:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not supported by lightpipe.{closest(str(model_type), FAMILIES)} "
            f"Supported model types: {', '.join(sorted(FAMILIES))}.")
    module, _, name = family.module.partition(":")
    # A plain name is a file of lightpipe/models; a dotted path is a module of its own.
    module = module if "." in module else f"{__name__}.{module}"
    return getattr(importlib.import_module(module), name or "HEADS")


def model_class(config: Config, head: str) -> type:
    heads = heads_for(config.get("model_type"))
    if head not in heads:
        raise UnsupportedModelError(
            f"model_type {config.get('model_type')!r} has no {head} in lightpipe; it has: "
            f"{', '.join(sorted(heads))}.")
    return heads[head]


class _AutoModelBase:
    """``from_pretrained`` picks the class from ``config.json``'s ``model_type``."""

    head = "AutoModel"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__doc__:
            cls.__doc__ = (
                f"``{cls.__name__}.from_pretrained(name_or_path, *, revision=None, token=None, "
                "dtype='auto', device=None, device_map=None, ...)``: the checkpoint's "
                f"{cls.head.removeprefix('AutoModel').removeprefix('For') or 'base'} model, "
                "the class chosen by config.json's model_type as transformers' "
                f"``{cls.__name__}`` chooses it (families: docs/tasks.md). ``from_config(config)`` "
                "builds one with random weights.")

    def __init__(self) -> None:
        raise TypeError(f"Use {type(self).__name__}.from_pretrained(name_or_path).")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | None = None,
                        local_files_only: bool = False, trust_remote_code: bool | None = None,
                        config: Config | None = None, subfolder: str = "", **kwargs: Any):
        refuse_remote_code(trust_remote_code)
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"{cls.__name__}.from_pretrained takes a folder or a Hub id, "
                            f"not {type(name_or_path).__name__}.")
        hub = dict(revision=revision, token=token, cache_dir=cache_dir,
                   local_files_only=local_files_only, subfolder=subfolder)
        if kwargs.get("gguf_file") is not None:  # config and weights from one llama.cpp file
            from ..gguf import locate, read_config

            path = kwargs["gguf_file"] = locate(name_or_path, kwargs["gguf_file"], **hub)
            folder = path.parent
            config = read_config(folder, path) if config is None else config
        else:
            folder = resolve(name_or_path, **hub)
            config = Config.from_folder(folder) if config is None else config
        model = model_class(config, cls.head).from_pretrained(folder, config=config, **kwargs)
        model.name_or_path = str(name_or_path)
        return model

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any):
        return model_class(config, cls.head).from_config(config, **kwargs)


class AutoModel(_AutoModelBase):
    head = "AutoModel"


class AutoModelForSequenceClassification(_AutoModelBase):
    head = "AutoModelForSequenceClassification"


class AutoModelForTokenClassification(_AutoModelBase):
    head = "AutoModelForTokenClassification"


class AutoModelForQuestionAnswering(_AutoModelBase):
    head = "AutoModelForQuestionAnswering"


class AutoModelForMaskedLM(_AutoModelBase):
    head = "AutoModelForMaskedLM"


class AutoModelForCausalLM(_AutoModelBase):
    head = "AutoModelForCausalLM"


class AutoModelForSeq2SeqLM(_AutoModelBase):
    head = "AutoModelForSeq2SeqLM"


class AutoModelForSpeechSeq2Seq(_AutoModelBase):
    head = "AutoModelForSpeechSeq2Seq"


class AutoModelForCTC(_AutoModelBase):
    head = "AutoModelForCTC"


class AutoModelForAudioClassification(_AutoModelBase):
    head = "AutoModelForAudioClassification"


class AutoModelForImageClassification(_AutoModelBase):
    head = "AutoModelForImageClassification"


class AutoModelForObjectDetection(_AutoModelBase):
    head = "AutoModelForObjectDetection"


class AutoModelForZeroShotImageClassification(_AutoModelBase):
    head = "AutoModelForZeroShotImageClassification"


class AutoModelForVision2Seq(_AutoModelBase):
    """Image captioning models (image-to-text): vision encoder + text decoder."""

    head = "AutoModelForVision2Seq"


class AutoModelForVisualQuestionAnswering(_AutoModelBase):
    head = "AutoModelForVisualQuestionAnswering"


class AutoModelForDocumentQuestionAnswering(_AutoModelBase):
    head = "AutoModelForDocumentQuestionAnswering"


class AutoModelForImageToImage(_AutoModelBase):
    head = "AutoModelForImageToImage"


class AutoModelForDepthEstimation(_AutoModelBase):
    head = "AutoModelForDepthEstimation"


class AutoModelForSemanticSegmentation(_AutoModelBase):
    head = "AutoModelForSemanticSegmentation"


class AutoModelForImageSegmentation(_AutoModelBase):
    head = "AutoModelForImageSegmentation"


class AutoModelForVideoClassification(_AutoModelBase):
    head = "AutoModelForVideoClassification"


class AutoModelForTableQuestionAnswering(_AutoModelBase):
    head = "AutoModelForTableQuestionAnswering"


class AutoModelForZeroShotObjectDetection(_AutoModelBase):
    head = "AutoModelForZeroShotObjectDetection"


class AutoModelForImageTextToText(_AutoModelBase):
    head = "AutoModelForImageTextToText"


class AutoModelForTextToWaveform(_AutoModelBase):
    """Text-to-audio models that make a waveform (VITS, MusicGen, Bark)."""

    head = "AutoModelForTextToWaveform"


class AutoModelForTextToSpectrogram(_AutoModelBase):
    """Text-to-speech models that make a spectrogram for a vocoder (SpeechT5)."""

    head = "AutoModelForTextToSpectrogram"


class AutoBackbone(_AutoModelBase):
    """``AutoBackbone.from_pretrained(name, out_indices=..., out_features=...)``: feature maps
    of a vision model's stages (Swin, ConvNeXt, ResNet)."""

    head = "AutoBackbone"
