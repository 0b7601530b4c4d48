"""Inputs that are not text: ``image.py`` (images, image processors), ``audio.py`` (audio
decoding, feature extractors), and here ``AutoProcessor``, which pairs a tokenizer with a
feature extractor or an image processor, as transformers' processors do (Whisper, CLIP).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, refuse_remote_code
from ..families import by_class_name, load, processor_name
from ..jsonfile import read_json

# Where a preprocessor's settings may sit inside a processor_config.json (transformers 5.25
# saves one processor file with its parts nested), and its own legacy files.
_NESTED_KEYS = {"feature_extractor": ("feature_extractor", "audio_processor"),
                "image_processor": ("image_processor",),
                "video_processor": ("video_processor", "image_processor")}
_LEGACY_FILES = {"feature_extractor": ("preprocessor_config.json",),
                 "image_processor": ("preprocessor_config.json",),
                 "video_processor": ("video_preprocessor_config.json", "preprocessor_config.json")}


def preprocessor_settings(folder: Path, part: str) -> dict:
    """The saved settings of a folder's feature extractor, image processor or video processor
    (``part``), as the reference reads them: nested in ``processor_config.json`` first, then
    the part's own file (``preprocessor_config.json``, ``video_preprocessor_config.json``);
    {} when the folder has none."""
    nested = read_json(Path(folder) / "processor_config.json")
    for key in _NESTED_KEYS[part]:
        if isinstance(nested.get(key), dict):
            return dict(nested[key])
    for name in _LEGACY_FILES[part]:
        settings = read_json(Path(folder) / name)
        if settings:
            return settings
    return {}


class Processor:
    """A tokenizer with a feature extractor and/or an image processor.

    ``processor(text=..., audio=..., images=..., **kwargs)`` runs each part on its input and
    merges the outputs; ``decode`` / ``batch_decode`` are the tokenizer's.
    """

    def __init__(self, tokenizer: Any = None, feature_extractor: Any = None,
                 image_processor: Any = None):
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.image_processor = image_processor

    def __call__(self, text: Any = None, images: Any = None, audio: Any = None, **kwargs: Any):
        if text is None and images is None and audio is None:
            raise ValueError("Pass text=, images= or audio= (at least one) to the processor.")
        merged: dict[str, Any] = {}
        if audio is not None:
            if self.feature_extractor is None:
                raise ValueError("This processor has no feature extractor: it cannot take audio=.")
            merged.update(self.feature_extractor(audio, **_only(kwargs, "audio")))
        if images is not None:
            if self.image_processor is None:
                raise ValueError("This processor has no image processor: it cannot take images=.")
            merged.update(self.image_processor(images, **_only(kwargs, "images")))
        if text is not None:
            if self.tokenizer is None:
                raise ValueError("This processor has no tokenizer: it cannot take text=.")
            encoded = self.tokenizer(text, **_only(kwargs, "text"))
            if audio is not None:  # as the reference: the text becomes the labels
                merged["labels"] = encoded["input_ids"]
            else:
                merged.update(encoded)
        from ..tokenization import BatchEncoding

        return BatchEncoding(merged)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        for part in (self.tokenizer, self.feature_extractor, self.image_processor):
            if part is not None:
                part.save_pretrained(folder)

    def __repr__(self) -> str:
        parts = [f"{name}={type(getattr(self, name)).__name__}"
                 for name in ("tokenizer", "feature_extractor", "image_processor")
                 if getattr(self, name) is not None]
        return f"{type(self).__name__}({', '.join(parts)})"


# Arguments each part takes; the others are dropped for it (padding= goes to the tokenizer,
# sampling_rate= to the feature extractor, ...). Parts that need more read them from kwargs.
_ROUTES = {
    "audio": {"sampling_rate", "return_tensors", "padding", "max_length", "truncation",
              "return_attention_mask", "do_normalize", "device"},
    "images": {"return_tensors", "do_resize", "size", "do_center_crop", "crop_size",
               "do_rescale", "do_normalize", "device"},
    "text": {"return_tensors", "padding", "max_length", "truncation", "add_special_tokens",
             "return_attention_mask", "text_pair", "return_token_type_ids", "padding_side"},
}


def _only(kwargs: dict, part: str) -> dict:
    return {k: v for k, v in kwargs.items() if k in _ROUTES[part]}


class AutoPreprocessor:
    """What the Auto preprocessor classes share: ``from_pretrained`` refuses remote code,
    finds the folder (a local one, or the Hub's files without the weights) and hands it to the
    class's ``from_folder(folder, name_or_path, **kwargs)``."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: Any = None, cache_dir: Any = None, local_files_only: bool = False,
                        trust_remote_code: bool | None = None, subfolder: str = "",
                        **kwargs: Any):
        from ..hub import resolve

        refuse_remote_code(trust_remote_code)
        folder = resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                         local_files_only=local_files_only, subfolder=subfolder, weights=False)
        return cls.from_folder(folder, name_or_path, **kwargs)

    @classmethod
    def from_folder(cls, folder: Path, name_or_path: Any, **kwargs: Any):
        raise NotImplementedError


class AutoProcessor(AutoPreprocessor):
    """``AutoProcessor.from_pretrained(name)``: the model's processor (tokenizer plus feature
    extractor or image processor); only the tokenizer, or only the feature extractor / image
    processor, when the folder has just that, as transformers returns."""

    @classmethod
    def from_folder(cls, folder: Path, name_or_path: Any, **kwargs: Any):
        preprocessor = preprocessor_settings(folder, "feature_extractor")
        image_settings = preprocessor_settings(folder, "image_processor")
        tokenizer = feature_extractor = image_processor = None
        if _has_tokenizer(folder):
            from ..tokenization import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        # Audio extractors carry a sampling rate; image processors (some with a legacy
        # "ViTFeatureExtractor" type) do not.
        if "sampling_rate" in preprocessor or "feature_size" in preprocessor:
            from .audio import AutoFeatureExtractor

            feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
        elif image_settings:
            preprocessor = image_settings
            from .image import AutoImageProcessor

            image_processor = AutoImageProcessor.from_pretrained(folder)
        parts = [p for p in (tokenizer, feature_extractor, image_processor) if p is not None]
        if not parts:
            raise ModelNotFoundError(
                f"{name_or_path}: no tokenizer files and no preprocessor_config.json, so there is "
                "no processor to load. Check the folder or Hub id.")
        if len(parts) == 1:
            named = _processor_class(read_json(folder / "processor_config.json").get("processor_class")
                                     or preprocessor.get("processor_class"))
            if image_processor is not None and getattr(named, "image_only", False):
                return named(image_processor=image_processor)  # SAM's: prompts besides images
            model_type = read_json(folder / "config.json").get("model_type")
            family_class = _processor_class(processor_name(model_type))
            if tokenizer is not None and getattr(family_class, "text_only", False):
                return family_class.from_pretrained(name_or_path, **kwargs)  # Bark's: voice presets
            return parts[0]
        processor_class = (read_json(folder / "processor_config.json").get("processor_class")
                           or preprocessor.get("processor_class")
                           or read_json(folder / "tokenizer_config.json").get("processor_class")
                           or processor_name(read_json(folder / "config.json").get("model_type")))
        return _processor_class(processor_class)(
            tokenizer=tokenizer, feature_extractor=feature_extractor,
            image_processor=image_processor)


def _processor_class(name: str | None) -> type:
    # Family-specific processors (processor_class in processor_config.json / ... -> the family
    # registry's "module:Class"), each with Processor's constructor; others are the generic one.
    target = by_class_name("processor").get(name or "")
    if target is None:
        return Processor
    try:
        return load(target)
    except (ModuleNotFoundError, AttributeError):
        return Processor


def _has_tokenizer(folder: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
             "spiece.model", "source.spm")
    return any((folder / name).is_file() for name in names)
