"""The family registry: one entry per ``model_type`` lightpipe runs.

Every other table (the model registry and modalities in ``models``, the task hints of
``pipeline()``, the tokenizer, processor, image-processor and feature-extractor look-ups) is
derived from ``FAMILIES``. Adding a family is its model file (plus its processor file when it
has rules of its own) and one entry here. This module imports no torch and no model code.

Class references are ``"module:Class"`` strings relative to the ``lightpipe`` package,
imported on first use (``load``). Where the name a checkpoint writes differs from our class's
name, write ``"Name=module:Class"`` (``Owlv2Processor`` is read by our ``OwlViTProcessor``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODALITIES = ("text", "image", "audio", "video", "multimodal")


@dataclass(frozen=True)
class Family:
    """What lightpipe knows of one ``model_type``.

    - ``module``: the model file in ``lightpipe/models`` whose ``HEADS`` dict maps Auto class
      names to model classes; ``"module:NAME"`` takes another heads dict of that module (a
      variant: Mistral is ``"llama:MISTRAL_HEADS"``).
    - ``modality``: what the family's inputs are. For a family that is not "text",
      "ForSequenceClassification" means audio or image classification, and a bare ``AutoModel``
      of an image family extracts image features.
    - ``tokenizer``: the tokenizer class transformers uses for this model type when the
      folder's ``tokenizer_config.json`` names none (it decides the model inputs, e.g.
      ``token_type_ids``, and how a folder without ``tokenizer.json`` is read).
    - ``processor`` / ``image_processor`` / ``feature_extractor``: ``"module:Class"`` of the
      family's AutoProcessor / AutoImageProcessor / AutoFeatureExtractor class, used when the
      folder names none; the class is also found by its name when a folder names it.
    - ``tasks``: ``{head: task}`` where the family's checkpoints serve a task more specifically
      than their head says (the Hub's pipeline_tag: CLIP's AutoModel classifies images zero-shot).
    """

    module: str
    modality: str = "text"
    tokenizer: str | None = None
    processor: str | None = None
    image_processor: str | None = None
    feature_extractor: str | None = None
    tasks: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality {self.modality!r}: use one of {MODALITIES}")


_WORDPIECE = "BertTokenizer"
_ROBERTA = "RobertaTokenizer"
_GPT2 = "GPT2Tokenizer"
_VIT_IMAGE = "processing.image:ViTImageProcessor"
_CONVNEXT_IMAGE = "processing.image:ConvNextImageProcessor"
_DPT_IMAGE = "processing.dpt:DPTImageProcessor"
# Vision-language chat models: their ...ForConditionalGeneration (and Vision2Seq) head answers
# image-text-to-text (not text2text-generation, nor image-to-text's captioning).
_VLM_TASKS = {"AutoModelForSeq2SeqLM": "image-text-to-text",
              "AutoModelForVision2Seq": "image-text-to-text"}

FAMILIES: dict[str, Family] = {
    # text encoders
    "bert": Family("bert", tokenizer=_WORDPIECE),
    "distilbert": Family("distilbert", tokenizer=_WORDPIECE),
    "roberta": Family("roberta", tokenizer=_ROBERTA),
    "xlm-roberta": Family("roberta:XLM_ROBERTA_HEADS"),
    "camembert": Family("roberta:CAMEMBERT_HEADS"),
    "mpnet": Family("mpnet", tokenizer="MPNetTokenizer"),
    "deberta-v2": Family("deberta_v2", tokenizer="DebertaV2Tokenizer"),
    "electra": Family("electra", tokenizer=_WORDPIECE),
    "modernbert": Family("modernbert"),
    # text decoders
    "gpt2": Family("gpt2", tokenizer=_GPT2),
    "llama": Family("llama"),
    "mistral": Family("llama:MISTRAL_HEADS"),
    "qwen2": Family("llama:QWEN2_HEADS"),
    "qwen3": Family("qwen3"),
    "qwen3_moe": Family("qwen3:MOE_HEADS"),
    "gemma2": Family("gemma:GEMMA2_HEADS"),
    "gemma3_text": Family("gemma:GEMMA3_TEXT_HEADS"),
    "phi3": Family("phi3"),
    "opt": Family("opt", tokenizer=_GPT2),
    "gpt_neox": Family("gpt_neox", tokenizer="GPTNeoXTokenizer"),
    # sequence to sequence
    "t5": Family("t5"),
    "mt5": Family("t5:MT5_HEADS"),
    "bart": Family("bart", tokenizer=_ROBERTA),
    "marian": Family("marian", tasks={"AutoModelForSeq2SeqLM": "translation"}),
    # speech
    "whisper": Family("whisper", "audio", processor="processing.audio:WhisperProcessor",
                      feature_extractor="processing.audio:WhisperFeatureExtractor"),
    "wav2vec2": Family("wav2vec2", "audio", processor="processing.audio:Wav2Vec2Processor",
                       feature_extractor="processing.audio:Wav2Vec2FeatureExtractor"),
    "hubert": Family("hubert", "audio", processor="processing.audio:Wav2Vec2Processor",
                     feature_extractor="processing.audio:Wav2Vec2FeatureExtractor"),
    "wavlm": Family("wavlm", "audio", processor="processing.audio:Wav2Vec2Processor",
                    feature_extractor="processing.audio:Wav2Vec2FeatureExtractor"),
    "audio-spectrogram-transformer": Family("ast", "audio",
                                            feature_extractor="processing.ast:ASTFeatureExtractor"),
    "clap": Family("clap", "audio", tokenizer=_ROBERTA, processor="processing.clap:ClapProcessor",
                   feature_extractor="processing.clap:ClapFeatureExtractor",
                   tasks={"AutoModel": "zero-shot-audio-classification"}),
    "vits": Family("vits", tokenizer="VitsTokenizer", tasks={"AutoModel": "text-to-audio"}),
    "bark": Family("bark", tokenizer=_WORDPIECE, processor="processing.bark:BarkProcessor",
                   tasks={"AutoModel": "text-to-audio"}),
    "encodec": Family("encodec", "audio", feature_extractor="processing.encodec:EncodecFeatureExtractor"),
    "musicgen": Family("musicgen", tokenizer="T5Tokenizer",
                       processor="processing.encodec:MusicgenProcessor",
                       feature_extractor="processing.encodec:EncodecFeatureExtractor",
                       tasks={"AutoModelForSeq2SeqLM": "text-to-audio"}),
    "musicgen_melody": Family("musicgen_melody", tokenizer="T5Tokenizer",
                              processor="processing.musicgen_melody:MusicgenMelodyProcessor",
                              feature_extractor="processing.musicgen_melody:MusicgenMelodyFeatureExtractor",
                              tasks={"AutoModelForSeq2SeqLM": "text-to-audio"}),
    # SpeechT5's vocoder (a text-to-audio pipeline's vocoder=); "hifigan" on the Hub
    "hifigan": Family("speecht5_hifigan", "audio"),
    "speecht5_hifigan": Family("speecht5_hifigan", "audio"),
    "speecht5": Family("speecht5", tokenizer="SpeechT5Tokenizer",
                       processor="processing.speecht5:SpeechT5Processor",
                       feature_extractor="processing.speecht5:SpeechT5FeatureExtractor",
                       tasks={"AutoModelForTextToSpectrogram": "text-to-audio"}),
    # vision
    "vit": Family("vit", "image", image_processor=_VIT_IMAGE),
    "deit": Family("deit", "image", image_processor="processing.image:DeiTImageProcessor"),
    "dinov2": Family("dinov2", "image", image_processor="processing.image:BitImageProcessor"),
    "swin": Family("swin", "image", image_processor=_VIT_IMAGE),
    "convnext": Family("convnext", "image", image_processor=_CONVNEXT_IMAGE),
    "resnet": Family("resnet", "image", image_processor=_CONVNEXT_IMAGE),
    "rt_detr_resnet": Family("rt_detr_resnet", "image"),  # RT-DETR's backbone (AutoBackbone)
    "rt_detr": Family("rt_detr", "image", image_processor="processing.rt_detr:RTDetrImageProcessor"),
    "rt_detr_v2": Family("rt_detr:V2_HEADS", "image",
                         image_processor="processing.rt_detr:RTDetrImageProcessor"),
    "clip": Family("clip", "image", processor="processing.image:CLIPProcessor",
                   image_processor="processing.image:CLIPImageProcessor",
                   tasks={"AutoModel": "zero-shot-image-classification"}),
    "siglip": Family("siglip", "image", tokenizer="SiglipTokenizer",
                     processor="processing.siglip:SiglipProcessor",
                     image_processor="processing.siglip:SiglipImageProcessor",
                     tasks={"AutoModel": "zero-shot-image-classification"}),
    "siglip_vision_model": Family("siglip:VISION_HEADS", "image",
                                  image_processor="processing.siglip:SiglipImageProcessor"),
    "siglip2": Family("siglip2", "image", processor="processing.siglip2:Siglip2Processor",
                      image_processor="processing.siglip2:Siglip2ImageProcessor",
                      tasks={"AutoModel": "zero-shot-image-classification"}),
    "siglip2_vision_model": Family("siglip2:VISION_HEADS", "image",
                                   image_processor="processing.siglip2:Siglip2ImageProcessor"),
    "detr": Family("detr_segmentation:HEADS", "image",  # detr.py's heads + DetrForSegmentation
                   image_processor="processing.image:DetrImageProcessor"),
    "dpt": Family("dpt", "image", image_processor=_DPT_IMAGE),
    "depth_anything": Family("depth_anything", "image", image_processor=_DPT_IMAGE),
    "segformer": Family("segformer", "image",
                        image_processor="processing.segformer:SegformerImageProcessor"),
    "swin2sr": Family("swin2sr", "image", image_processor="processing.swin2sr:Swin2SRImageProcessor"),
    "sam": Family("sam", "image", processor="processing.sam:SamProcessor",
                  image_processor="processing.sam:SamImageProcessor",
                  tasks={"AutoModel": "mask-generation"}),
    "sam_hq": Family("sam_hq", "image", processor="processing.sam_hq:SamHQProcessor",
                     image_processor="processing.sam:SamImageProcessor",
                     tasks={"AutoModel": "mask-generation"}),
    # sam2_video (the Hub's facebook/sam2.1-*) loads as the image model, memory weights dropped
    **dict.fromkeys(["sam2", "sam2_video"], Family(
        "sam2", "image", processor="processing.sam2:Sam2Processor",
        image_processor="processing.sam2:Sam2ImageProcessor", tasks={"AutoModel": "mask-generation"})),
    "videomae": Family("videomae", "video", image_processor="processing.video:VideoMAEImageProcessor"),
    # images and text
    "vision-encoder-decoder": Family("vision_encoder_decoder", "image",
                                     tasks={"AutoModel": "image-to-text"}),
    "blip": Family("blip", "multimodal", tokenizer=_WORDPIECE,
                   image_processor="models.blip:BlipImageProcessor",
                   tasks={"AutoModelForSeq2SeqLM": "image-to-text"}),
    "vilt": Family("vilt", "multimodal", tokenizer=_WORDPIECE,
                   image_processor="processing.vilt:ViltImageProcessor",
                   tasks={"AutoModelForQuestionAnswering": "visual-question-answering"}),
    "layoutlm": Family("layoutlm", "multimodal", tokenizer=_WORDPIECE,
                       tasks={"AutoModelForQuestionAnswering": "document-question-answering"}),
    "tapas": Family("tapas", tokenizer="TapasTokenizer",
                    tasks={"AutoModelForQuestionAnswering": "table-question-answering"}),
    "owlvit": Family("owlvit", "image", processor="processing.owlvit:OwlViTProcessor",
                     image_processor="processing.owlvit:OwlViTImageProcessor",
                     tasks={"AutoModelForObjectDetection": "zero-shot-object-detection"}),
    "owlv2": Family("owlv2", "image", processor="Owlv2Processor=processing.owlvit:OwlViTProcessor",
                    image_processor="processing.owlvit:Owlv2ImageProcessor",
                    tasks={"AutoModelForObjectDetection": "zero-shot-object-detection"}),
    "llava": Family("llava", "multimodal", processor="processing.llava:LlavaProcessor",
                    tasks=_VLM_TASKS),
    "llava_onevision": Family(
        "llava_onevision", "multimodal",
        processor="processing.llava_onevision:LlavaOnevisionProcessor",
        image_processor="processing.llava_onevision:LlavaOnevisionImageProcessor", tasks=_VLM_TASKS),
    "qwen2_vl": Family("qwen2_vl", "multimodal", processor="processing.qwen2_vl:Qwen2VLProcessor",
                       image_processor="processing.qwen2_vl:Qwen2VLImageProcessor",
                       tasks=_VLM_TASKS),
    "qwen2_5_vl": Family("qwen2_vl:QWEN2_5_HEADS", "multimodal",
                         processor="processing.qwen2_vl:Qwen2_5_VLProcessor",
                         image_processor="processing.qwen2_vl:Qwen2VLImageProcessor",
                         tasks=_VLM_TASKS),
    "idefics3": Family("idefics3", "multimodal", processor="processing.idefics3:Idefics3Processor",
                       image_processor="processing.idefics3:Idefics3ImageProcessor", tasks=_VLM_TASKS),
    "smolvlm": Family("idefics3:SMOLVLM_HEADS", "multimodal",
                      processor="processing.idefics3:SmolVLMProcessor",
                      image_processor="processing.idefics3:SmolVLMImageProcessor", tasks=_VLM_TASKS),
}
# Class names checkpoints write for a class of ours that no family names as its default,
# per kind ("processor", "image_processor", "feature_extractor").
CLASS_ALIASES: dict[str, dict[str, str]] = {
    "image_processor": {},
}

# Tokenizer classes with behaviour of their own (tokenizer_config.json's tokenizer_class ->
# "module:Class"); other classes load as the generic Tokenizer.
SPECIAL_TOKENIZERS: dict[str, str] = {
    "WhisperTokenizer": "tokenization.whisper:WhisperTokenizer",
    "Wav2Vec2CTCTokenizer": "tokenization.ctc:Wav2Vec2CTCTokenizer",
    "MarianTokenizer": "tokenization.spm:MarianTokenizer",
    "T5Tokenizer": "tokenization.spm:T5Tokenizer",
    "CLIPTokenizer": "tokenization.clip:CLIPTokenizer",
    "TapasTokenizer": "tokenization.tapas:TapasTokenizer",
    "DebertaV2Tokenizer": "tokenization.rebuilt:DebertaV2Tokenizer",
    "MPNetTokenizer": "tokenization.rebuilt:MPNetTokenizer",
    "VitsTokenizer": "tokenization.vits:VitsTokenizer",
    "SpeechT5Tokenizer": "tokenization.speecht5:SpeechT5Tokenizer",
    "SiglipTokenizer": "tokenization.siglip:SiglipTokenizer",
    "Siglip2Tokenizer": "tokenization.siglip:Siglip2Tokenizer",
}

# Model types lightpipe does not run but whose tokenizer folders it reads (AutoTokenizer alone):
# the class transformers picks for them when tokenizer_config.json names none.
TOKENIZER_ONLY: dict[str, str] = {
    **dict.fromkeys(
        ["align", "bros", "chinese_clip", "convbert", "ernie", "flava", "git",
         "grounding-dino", "megatron-bert", "mm-grounding-dino", "nezha", "nomic_bert", "qdqbert",
         "realm", "retribert", "squeezebert", "tvp", "visual_bert"], _WORDPIECE),
    "mobilebert": "MobileBertTokenizer", "lxmert": "LxmertTokenizer",
    "dpr": "DPRQuestionEncoderTokenizer", "canine": "CanineTokenizer",
    "deberta": "DebertaTokenizer", "fnet": "FNetTokenizer",
    "layoutlmv2": "LayoutLMv2Tokenizer", "markuplm": "MarkupLMTokenizer",
    "longformer": _ROBERTA, "led": "LEDTokenizer", "mvp": "MvpTokenizer",
    **dict.fromkeys(["gpt_neo", "gptj", "codegen", "phi"], _GPT2),
}


# --- derived tables ---------------------------------------------------------------------------

def split_ref(ref: str) -> tuple[str, str]:
    """'Name=module:Class' or 'module:Class' -> (the name checkpoints write, 'module:Class')."""
    name, _, target = ref.rpartition("=")
    return (name or target.rpartition(":")[2]), target


def load(ref: str) -> Any:
    """Import what a 'module:Class' reference (relative to lightpipe) names."""
    module, _, attr = split_ref(ref)[1].partition(":")
    return getattr(importlib.import_module(f"lightpipe.{module}"), attr)


def by_class_name(kind: str) -> dict[str, str]:
    """{class name a folder may write: 'module:Class'} for ``kind`` ('processor',
    'image_processor' or 'feature_extractor'), from every family and the aliases."""
    table: dict[str, str] = {}
    for family in FAMILIES.values():
        ref = getattr(family, kind)
        if ref:
            name, target = split_ref(ref)
            table.setdefault(name, target)
    for name, target in CLASS_ALIASES.get(kind, {}).items():
        table.setdefault(name, target)
    return table


def by_model_type(kind: str) -> dict[str, str]:
    """{model_type: 'module:Class'} of each family that has a ``kind`` (see ``by_class_name``)."""
    return {model_type: split_ref(getattr(f, kind))[1]
            for model_type, f in FAMILIES.items() if getattr(f, kind)}


def processor_name(model_type: str | None) -> str | None:
    """The processor class name transformers records for a model type, or None."""
    family = FAMILIES.get(model_type or "")
    return split_ref(family.processor)[0] if family and family.processor else None


def tokenizer_of_model_type() -> dict[str, str]:
    """{model_type: tokenizer class name} used when a folder declares no tokenizer class."""
    table = dict(TOKENIZER_ONLY)
    table.update({t: f.tokenizer for t, f in FAMILIES.items() if f.tokenizer})
    return table


def modality(model_type: str | None) -> str:
    family = FAMILIES.get(model_type or "")
    return family.modality if family else "text"


def task_hints() -> dict[tuple[str, str], str]:
    """{(model_type, head): task} from every family's ``tasks``."""
    return {(t, head): task for t, f in FAMILIES.items() for head, task in f.tasks.items()}
