"""lightpipe: the transformers inference API (pipeline(), Auto classes) in lean PyTorch.

Names are imported lazily, on first use, so ``import lightpipe`` does not import torch.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# CPU tensors of 2 MB or more (the packed weights every decoding step streams, KV caches) in
# transparent huge pages, where Linux offers them on request: fewer TLB misses while streaming
# weights (bench/RESULTS.md). torch reads this once, at its first CPU allocation, so it applies
# when lightpipe is imported before any tensor is made. THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# LIGHTPIPE_THREADS=passive: OpenMP threads wait passively (for always-shared machines; it
# slows decoding on a quiet one). See lightpipe/threads.py.
importlib.import_module("lightpipe.threads").prepare_environment()

if os.environ.get("LIGHTPIPE_VERBOSITY"):
    importlib.import_module("lightpipe.logging")._from_environment()

# public name -> module that defines it
_EXPORTS = {
    "pipeline": "lightpipe.pipelines",
    "Pipeline": "lightpipe.pipelines.base",
    "SUPPORTED_TASKS": "lightpipe.pipelines",
    "AutoConfig": "lightpipe.config",
    "Config": "lightpipe.config",
    "AutoTokenizer": "lightpipe.tokenization",
    "Tokenizer": "lightpipe.tokenization",
    "BatchEncoding": "lightpipe.tokenization",
    "PreTrainedModel": "lightpipe.modeling",
    "AutoModel": "lightpipe.models",
    "AutoModelForSequenceClassification": "lightpipe.models",
    "AutoModelForTokenClassification": "lightpipe.models",
    "AutoModelForQuestionAnswering": "lightpipe.models",
    "AutoModelForMaskedLM": "lightpipe.models",
    "AutoModelForCausalLM": "lightpipe.models",
    "AutoModelForSeq2SeqLM": "lightpipe.models",
    "AutoModelForSpeechSeq2Seq": "lightpipe.models",
    "AutoModelForCTC": "lightpipe.models",
    "AutoModelForAudioClassification": "lightpipe.models",
    "AutoModelForImageClassification": "lightpipe.models",
    "AutoModelForObjectDetection": "lightpipe.models",
    "AutoModelForZeroShotImageClassification": "lightpipe.models",
    "AutoModelForVision2Seq": "lightpipe.models",
    "AutoModelForVisualQuestionAnswering": "lightpipe.models",
    "AutoModelForDocumentQuestionAnswering": "lightpipe.models",
    "AutoModelForImageToImage": "lightpipe.models",
    "AutoModelForDepthEstimation": "lightpipe.models",
    "AutoModelForSemanticSegmentation": "lightpipe.models",
    "AutoModelForImageSegmentation": "lightpipe.models",
    "AutoModelForVideoClassification": "lightpipe.models",
    "AutoModelForTableQuestionAnswering": "lightpipe.models",
    "AutoModelForZeroShotObjectDetection": "lightpipe.models",
    "AutoModelForImageTextToText": "lightpipe.models",
    "AutoModelForTextToWaveform": "lightpipe.models",
    "AutoModelForTextToSpectrogram": "lightpipe.models",
    "AutoBackbone": "lightpipe.models",
    "AutoProcessor": "lightpipe.processing",
    "AutoFeatureExtractor": "lightpipe.processing.audio",
    "AutoImageProcessor": "lightpipe.processing.image",
    "SentenceEmbeddings": "lightpipe.embeddings",
    "GenerationConfig": "lightpipe.generation",
    "TextStreamer": "lightpipe.generation",
    "TextIteratorStreamer": "lightpipe.generation",
    "LightpipeError": "lightpipe.errors",
    "ModelNotFoundError": "lightpipe.errors",
    "UnsupportedModelError": "lightpipe.errors",
    "UnknownTaskError": "lightpipe.errors",
    "WeightsError": "lightpipe.errors",
    "InputError": "lightpipe.errors",
    "InputTypeError": "lightpipe.errors",
    "RemoteCodeError": "lightpipe.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name == "logging":  # lightpipe.logging.set_verbosity_info(), as transformers.logging
        return importlib.import_module("lightpipe.logging")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightpipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


if TYPE_CHECKING:  # for editors and type checkers only
    from .config import AutoConfig, Config
    from .modeling import PreTrainedModel
    from .generation import GenerationConfig, TextIteratorStreamer, TextStreamer
    from .models import (AutoBackbone, AutoModel, AutoModelForAudioClassification,
                         AutoModelForCausalLM, AutoModelForCTC, AutoModelForImageClassification,
                         AutoModelForMaskedLM, AutoModelForObjectDetection,
                         AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM,
                         AutoModelForSequenceClassification, AutoModelForSpeechSeq2Seq,
                         AutoModelForTokenClassification, AutoModelForZeroShotImageClassification,
                         AutoModelForVision2Seq, AutoModelForVisualQuestionAnswering,
                         AutoModelForDocumentQuestionAnswering, AutoModelForImageToImage,
                         AutoModelForDepthEstimation, AutoModelForSemanticSegmentation,
                         AutoModelForImageSegmentation, AutoModelForVideoClassification,
                         AutoModelForTableQuestionAnswering, AutoModelForZeroShotObjectDetection,
                         AutoModelForImageTextToText, AutoModelForTextToWaveform,
                         AutoModelForTextToSpectrogram)
    from .processing import AutoProcessor
    from .processing.audio import AutoFeatureExtractor
    from .processing.image import AutoImageProcessor
    from .pipelines import SUPPORTED_TASKS, pipeline
    from .pipelines.base import Pipeline
    from .tokenization import AutoTokenizer, BatchEncoding, Tokenizer
