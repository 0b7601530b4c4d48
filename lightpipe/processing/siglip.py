"""SigLIP's image processor (a warp to a fixed square, bicubic, mean and std 0.5) and its
processor (the SentencePiece tokenizer with the image processor), as transformers'
``SiglipImageProcessor`` / ``SiglipProcessor``."""

from __future__ import annotations

from typing import Any

from . import Processor
from .image import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, ImageProcessor


class SiglipImageProcessor(ImageProcessor):
    image_processor_type = "SiglipImageProcessor"
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"height": 224, "width": 224}, "resample": 3,
                "image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD,
                "do_convert_rgb": True}


class SiglipProcessor(Processor):
    """``processor(text=..., images=..., padding="max_length")``: SigLIP was trained on texts
    padded to 64 tokens, so pass that padding for scores as the model expects."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, feature_extractor: Any = None):
        super().__init__(tokenizer=tokenizer, image_processor=image_processor or feature_extractor)
