"""LLaVA's processor (as transformers' ``models/llava/processing_llava.py``): a CLIP image
processor and a tokenizer; each ``<image>`` of the text becomes one image token per patch
feature the model puts there: ``(height // patch_size) * (width // patch_size)`` plus
``num_additional_image_tokens`` (1: CLIP's CLS), less one for
``vision_feature_select_strategy="default"`` (which drops the CLS state).

Settings come from ``processor_config.json`` (transformers 5 also keeps the image processor's
settings there, under ``image_processor``), else from the model's ``config.json``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..jsonfile import read_json
from . import Processor


class LlavaProcessor(Processor):
    def __init__(self, tokenizer: Any = None, feature_extractor: Any = None,
                 image_processor: Any = None, patch_size: int | None = None,
                 vision_feature_select_strategy: str | None = None,
                 num_additional_image_tokens: int = 0, image_token: str = "<image>",
                 chat_template: str | None = None):
        super().__init__(tokenizer=tokenizer, image_processor=image_processor)
        self.patch_size = patch_size
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.num_additional_image_tokens = int(num_additional_image_tokens or 0)
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.chat_template = chat_template
        folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
        if patch_size is None and str(folder) and folder.is_dir():
            # Built by AutoProcessor from the parts: the rest is in the model's folder.
            for key, value in _settings(folder).items():
                if key != "image_token" or value != "<image>":
                    setattr(self, key, value)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "LlavaProcessor":
        from ..hub import resolve
        from ..tokenization import AutoTokenizer
        from .image import CLIPImageProcessor

        folder = resolve(name_or_path, weights=False, **kwargs)
        image_processor = image_processor_from(folder, CLIPImageProcessor)
        if image_processor is None:
            raise InputError(f"{name_or_path} has no image processor settings "
                             "(preprocessor_config.json or processor_config.json).")
        return cls(tokenizer=AutoTokenizer.from_pretrained(folder), image_processor=image_processor,
                   **_settings(folder))

    def image_tokens_per_image(self, height: int, width: int) -> int:
        if not self.patch_size:
            raise InputError("This LlavaProcessor has no patch_size, so it cannot count the image "
                             "tokens: load it with LlavaProcessor.from_pretrained(folder) or pass "
                             "patch_size= (the vision tower's).")
        count = (height // self.patch_size) * (width // self.patch_size) + self.num_additional_image_tokens
        return count - 1 if self.vision_feature_select_strategy == "default" else count

    def ready(self) -> bool:
        """Whether it knows enough to count image tokens (else the pipeline loads it whole)."""
        return bool(self.patch_size)

    def image_counts(self, features: dict) -> list[int]:
        """How many image tokens each image's ``<image>`` becomes, in order."""
        pixel_values = features["pixel_values"]
        return [self.image_tokens_per_image(*pixel_values.shape[-2:])] * pixel_values.shape[0]

    def __call__(self, text: Any = None, images: Any = None, return_tensors: str | None = "pt",
                 **kwargs: Any):
        from ..tokenization import BatchEncoding

        if text is None and images is None:
            raise InputError("Pass text= (with one <image> per image) and/or images= to the processor.")
        merged: dict[str, Any] = {}
        if images is not None:
            merged.update(self.image_processor(images, return_tensors="pt"))
        if text is None:
            return BatchEncoding(merged)
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise InputTypeError("text must be a string or a list of strings (prompts with <image> "
                                 "where each image goes).")
        if images is not None:
            texts = expand_image_tokens(texts, self.image_token, self.image_counts(merged))
        route = {k: v for k, v in kwargs.items()
                 if k in ("padding", "truncation", "max_length", "add_special_tokens",
                          "padding_side", "return_attention_mask")}
        merged.update(self.tokenizer(texts, return_tensors=return_tensors, **route))
        return BatchEncoding(merged)


def image_processor_from(folder: Path, default: type) -> Any:
    """The folder's image processor: the one preprocessor_config.json names, else a ``default``
    from the settings transformers 5 nests in processor_config.json; None when neither says."""
    from .image import AutoImageProcessor

    if (folder / "preprocessor_config.json").is_file():
        return AutoImageProcessor.from_pretrained(folder)
    nested = read_json(folder / "processor_config.json").get("image_processor")
    if not isinstance(nested, dict):
        return None
    return default(**{k: v for k, v in nested.items() if k not in ("image_processor_type", "processor_class")})


def expand_image_tokens(texts: list[str], image_token: str, counts: list[int]) -> list[str]:
    """Each ``image_token`` of the texts, in order, repeated ``counts[i]`` times; the number of
    placeholders must be the number of images."""
    placeholders = sum(t.count(image_token) for t in texts)
    if placeholders != len(counts):
        raise InputError(f"The prompt has {placeholders} {image_token} tokens but {len(counts)} "
                         f"image(s) were given: put one {image_token} in the text where each "
                         "image goes.")
    remaining = iter(counts)
    return [re.sub(re.escape(image_token), lambda _: image_token * next(remaining), t) for t in texts]


def _settings(folder: Path) -> dict:
    """patch_size, vision_feature_select_strategy, num_additional_image_tokens, image_token and
    chat_template from processor_config.json; config.json when it does not say."""
    settings = read_json(folder / "processor_config.json")
    model = read_json(folder / "config.json")
    vision = model.get("vision_config") or {}
    extra = settings.get("num_additional_image_tokens")
    if extra is None:  # CLIP towers add a CLS state
        extra = 1 if str(vision.get("model_type", "clip_vision_model")).startswith("clip") else 0
    return {"patch_size": settings.get("patch_size") or vision.get("patch_size"),
            "vision_feature_select_strategy": settings.get("vision_feature_select_strategy")
            or model.get("vision_feature_select_strategy", "default"),
            "num_additional_image_tokens": int(extra),
            "image_token": settings.get("image_token") or "<image>",
            "chat_template": settings.get("chat_template")}
