"""pipeline(): the task table (aliases, default models, classes) and the factory.

This module imports neither torch nor any model code, so ``lightpipe tasks`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnknownTaskError, UnsupportedModelError, closest, refuse_remote_code, require

logger = logging.getLogger("lightpipe")


@dataclass(frozen=True)
class Task:
    name: str
    head: str | tuple[str, ...]      # Auto model class the task loads (the first one the model has)
    default: tuple[str, str | None]  # the transformers 4.x default (model, revision)
    pipeline: str | None = None      # "module:Class" in lightpipe.pipelines; None = not yet
    aliases: tuple[str, ...] = field(default_factory=tuple)
    kind: str = "text"
    # What pipeline() loads from the model's folder when the caller does not pass it.
    preprocessors: tuple[str, ...] = ("tokenizer",)

    @property
    def heads(self) -> tuple[str, ...]:
        return (self.head,) if isinstance(self.head, str) else self.head

    @property
    def available(self) -> bool:
        return self.pipeline is not None


# Every task of the transformers 4.x pipeline list (and v5's additions).
_TASKS = [
    Task("text-classification", "AutoModelForSequenceClassification",
         ("distilbert/distilbert-base-uncased-finetuned-sst-2-english", "714eb0f"),
         "text_classification:TextClassificationPipeline", ("sentiment-analysis",)),
    Task("feature-extraction", "AutoModel", ("distilbert/distilbert-base-cased", "6ea8117"),
         "feature_extraction:FeatureExtractionPipeline"),
    Task("token-classification", "AutoModelForTokenClassification",
         ("dbmdz/bert-large-cased-finetuned-conll03-english", "4c53496"),
         "token_classification:TokenClassificationPipeline", ("ner",)),
    Task("fill-mask", "AutoModelForMaskedLM", ("distilbert/distilroberta-base", "fb53ab8"),
         "fill_mask:FillMaskPipeline"),
    Task("question-answering", "AutoModelForQuestionAnswering",
         ("distilbert/distilbert-base-cased-distilled-squad", None),
         "question_answering:QuestionAnsweringPipeline"),
    Task("zero-shot-classification", "AutoModelForSequenceClassification",
         ("facebook/bart-large-mnli", "d7645e1"),
         "zero_shot_classification:ZeroShotClassificationPipeline"),
    Task("text-generation", "AutoModelForCausalLM", ("openai-community/gpt2", None),
         "text_generation:TextGenerationPipeline"),
    Task("text2text-generation", "AutoModelForSeq2SeqLM", ("google-t5/t5-base", None),
         "text2text_generation:Text2TextGenerationPipeline"),
    Task("summarization", "AutoModelForSeq2SeqLM", ("sshleifer/distilbart-cnn-12-6", None),
         "text2text_generation:SummarizationPipeline"),
    Task("translation", "AutoModelForSeq2SeqLM", ("google-t5/t5-base", None),
         "text2text_generation:TranslationPipeline"),
    Task("table-question-answering", "AutoModelForTableQuestionAnswering",
         ("google/tapas-base-finetuned-wtq", "e3dde19"),
         "table_question_answering:TableQuestionAnsweringPipeline"),
    Task("automatic-speech-recognition", ("AutoModelForSpeechSeq2Seq", "AutoModelForCTC"),
         ("facebook/wav2vec2-base-960h", "22aad52"),
         "automatic_speech_recognition:AutomaticSpeechRecognitionPipeline", kind="audio",
         preprocessors=("feature_extractor", "tokenizer")),
    Task("audio-classification", "AutoModelForAudioClassification",
         ("superb/wav2vec2-base-superb-ks", "372e048"),
         "audio_classification:AudioClassificationPipeline", kind="audio",
         preprocessors=("feature_extractor",)),
    # Bark, as transformers (MMS-TTS English, facebook/mms-tts-eng, is the fast VITS choice).
    # kind: what the inputs are (text); the outputs are audio.
    Task("text-to-audio", ("AutoModelForTextToWaveform", "AutoModelForTextToSpectrogram"),
         ("suno/bark-small", "1dbd7a1"), "text_to_audio:TextToAudioPipeline",
         aliases=("text-to-speech",)),
    Task("zero-shot-audio-classification", "AutoModel", ("laion/clap-htsat-fused", "cca9e28"),
         "zero_shot_audio_classification:ZeroShotAudioClassificationPipeline", kind="audio",
         preprocessors=("feature_extractor", "tokenizer")),
    Task("image-classification", "AutoModelForImageClassification",
         ("google/vit-base-patch16-224", "3f49326"),
         "image_classification:ImageClassificationPipeline", kind="image",
         preprocessors=("image_processor",)),
    Task("image-feature-extraction", "AutoModel", ("google/vit-base-patch16-224", "3f49326"),
         "image_feature_extraction:ImageFeatureExtractionPipeline", kind="image",
         preprocessors=("image_processor",)),
    Task("zero-shot-image-classification", "AutoModelForZeroShotImageClassification",
         ("openai/clip-vit-base-patch32", "3d74acf"),
         "zero_shot_image_classification:ZeroShotImageClassificationPipeline", kind="image",
         preprocessors=("image_processor", "tokenizer")),
    Task("object-detection", "AutoModelForObjectDetection", ("facebook/detr-resnet-50", "1d5f47b"),
         "object_detection:ObjectDetectionPipeline", kind="image",
         preprocessors=("image_processor",)),
    Task("zero-shot-object-detection", ("AutoModelForZeroShotObjectDetection", "AutoModel"),
         ("google/owlvit-base-patch32", "cbc355f"),
         "zero_shot_object_detection:ZeroShotObjectDetectionPipeline", kind="image",
         preprocessors=("image_processor", "tokenizer")),
    Task("image-segmentation", ("AutoModelForImageSegmentation", "AutoModelForSemanticSegmentation"),
         ("facebook/detr-resnet-50-panoptic", "d53b52a"),
         "image_segmentation:ImageSegmentationPipeline", kind="image",
         preprocessors=("image_processor",)),
    Task("depth-estimation", "AutoModelForDepthEstimation", ("Intel/dpt-large", "bc15f29"),
         "depth_estimation:DepthEstimationPipeline", kind="image",
         preprocessors=("image_processor",)),
    Task("image-to-image", "AutoModelForImageToImage",
         ("caidas/swin2SR-classical-sr-x2-64", None),
         "image_to_image:ImageToImagePipeline", kind="image", preprocessors=("image_processor",)),
    Task("mask-generation", "AutoModel", ("facebook/sam-vit-huge", "87aecf0"),
         "mask_generation:MaskGenerationPipeline", kind="image", preprocessors=("image_processor",)),
    Task("keypoint-matching", "AutoModel", ("magic-leap-community/superglue_outdoor", "f4041f8"),
         kind="image"),
    Task("video-classification", "AutoModelForVideoClassification",
         ("MCG-NJU/videomae-base-finetuned-kinetics", "488eb9a"),
         "video_classification:VideoClassificationPipeline", kind="video",
         preprocessors=("image_processor",)),
    Task("image-to-text", "AutoModelForVision2Seq", ("ydshieh/vit-gpt2-coco-en", None),
         "image_to_text:ImageToTextPipeline", kind="multimodal",
         preprocessors=("image_processor", "tokenizer")),
    # transformers defaults to LLaVA-OneVision, which lightpipe does not run yet: LLaVA 1.5.
    Task("image-text-to-text", "AutoModelForImageTextToText", ("llava-hf/llava-1.5-7b-hf", None),
         "image_text_to_text:ImageTextToTextPipeline", kind="multimodal",
         preprocessors=("tokenizer",)),
    Task("visual-question-answering", "AutoModelForVisualQuestionAnswering",
         ("dandelin/vilt-b32-finetuned-vqa", None),
         "visual_question_answering:VisualQuestionAnsweringPipeline", aliases=("vqa",),
         kind="multimodal", preprocessors=("image_processor", "tokenizer")),
    Task("document-question-answering", "AutoModelForDocumentQuestionAnswering",
         ("impira/layoutlm-document-qa", "beed3c4"),
         "document_question_answering:DocumentQuestionAnsweringPipeline", kind="multimodal",
         preprocessors=("tokenizer",)),
]

SUPPORTED_TASKS: dict[str, Task] = {task.name: task for task in _TASKS}
TASK_ALIASES: dict[str, str] = {alias: task.name for task in _TASKS for alias in task.aliases}

# The task a checkpoint's architecture suggests, when pipeline() gets no task.
_TASK_OF_HEAD = {
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForCausalLM": "text-generation",
    "AutoModelForSeq2SeqLM": "text2text-generation",
    "AutoModelForSpeechSeq2Seq": "automatic-speech-recognition",
    "AutoModelForCTC": "automatic-speech-recognition",
    "AutoModelForAudioClassification": "audio-classification",
    "AutoModelForImageClassification": "image-classification",
    "AutoModelForObjectDetection": "object-detection",
    "AutoModelForVision2Seq": "image-to-text",
    "AutoModelForVisualQuestionAnswering": "visual-question-answering",
    "AutoModelForDocumentQuestionAnswering": "document-question-answering",
    "AutoModelForImageToImage": "image-to-image",
    "AutoModelForDepthEstimation": "depth-estimation",
    "AutoModelForSemanticSegmentation": "image-segmentation",
    "AutoModelForImageSegmentation": "image-segmentation",
    "AutoModelForVideoClassification": "video-classification",
    "AutoModelForTableQuestionAnswering": "table-question-answering",
    "AutoModelForZeroShotObjectDetection": "zero-shot-object-detection",
    "AutoModelForImageTextToText": "image-text-to-text",
    "AutoModel": "feature-extraction",
}
# A bare AutoModel of an image family extracts image features.
_MODALITY_TASK = {("image", "feature-extraction"): "image-feature-extraction"}
# Where pipeline() finds the loader of each preprocessor ("module:Class", lazily imported).
_PREPROCESSOR_LOADERS = {
    "tokenizer": "lightpipe.tokenization:AutoTokenizer",
    "feature_extractor": "lightpipe.processing.audio:AutoFeatureExtractor",
    "image_processor": "lightpipe.processing.image:AutoImageProcessor",
}

_TRANSLATION = re.compile(r"^translation_([a-z]{2,3})_to_([a-z]{2,3})$")


# The optional modules every input of a task kind needs (audio arrays work without soundfile).
_KIND_MODULES = {"image": ("PIL",), "multimodal": ("PIL",), "video": ("av", "PIL")}


def check_task(task: str) -> tuple[str, Task, dict[str, Any]]:
    """A task name or alias -> (canonical name, Task, extra pipeline arguments)."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a string such as 'text-classification', not {type(task).__name__}.")
    name = TASK_ALIASES.get(task, task)
    if name in SUPPORTED_TASKS:
        return name, SUPPORTED_TASKS[name], {}
    match = _TRANSLATION.match(name)
    if match:
        return "translation", SUPPORTED_TASKS["translation"], {"src_lang": match[1], "tgt_lang": match[2]}
    known = sorted(set(SUPPORTED_TASKS) | set(TASK_ALIASES))
    raise UnknownTaskError(
        f"Unknown task {task!r}.{closest(task, known)} Known tasks: {', '.join(known)}, "
        "and translation_XX_to_YY.")


def _pipeline_class(task: Task):
    if not task.available:
        raise UnsupportedModelError(
            f"The {task.name!r} pipeline is not implemented in lightpipe yet. Tasks that work now: "
            f"{', '.join(t.name for t in _TASKS if t.available)}. See docs/tasks.md for the plan.")
    module, _, cls = task.pipeline.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def _infer_task(config) -> str:
    from ..models import head_of_architecture
    from .task_families import head_task

    model_type = config.get("model_type")
    for architecture in config.get("architectures") or []:
        head = head_of_architecture(architecture, model_type)
        task = head_task(model_type, head) if head else None
        if task is not None:
            return task
    raise UnknownTaskError(
        f"Cannot infer the task from this checkpoint (architectures={config.get('architectures')}). "
        "Pass it: pipeline('text-classification', model=...).")


def pipeline(task: str | None = None, model: Any = None, config: Any = None, tokenizer: Any = None,
             feature_extractor: Any = None, image_processor: Any = None, processor: Any = None,
             revision: str | None = None, use_fast: bool = True, token: str | bool | None = None,
             device: Any = None, device_map: Any = None, dtype: Any = "auto", torch_dtype: Any = None,
             trust_remote_code: bool | None = None, model_kwargs: dict | None = None,
             pipeline_class: type | None = None, batch_size: int | None = None, **kwargs: Any):
    """Build a pipeline for ``task`` from a model folder, a Hub id or a model object.

    Same arguments as ``transformers.pipeline``: ``pipeline("sentiment-analysis")``,
    ``pipeline("text-generation", model="Qwen/Qwen2.5-0.5B-Instruct", device="cuda")``,
    ``pipeline(model="./my-checkpoint")``. Each task's class documents its call arguments and
    outputs (``help(pipe)``); ``lightpipe.SUPPORTED_TASKS`` lists the tasks.

    Arguments:
        task (str, optional): the task name or alias ("text-classification",
            "sentiment-analysis", "ner", "translation_en_to_fr", ...). None: inferred from the
            checkpoint's ``config.architectures`` (then ``model`` is needed).
        model (str | PathLike | PreTrainedModel, optional): a local checkpoint folder, a Hub id,
            or a loaded lightpipe model. None: the task's default model, with a warning naming
            it (a default is not a production choice).
        config (str | Config, optional): a config (object, folder or Hub id) used instead of the
            model folder's ``config.json``.
        tokenizer (str | Tokenizer, optional): the tokenizer, as an object or a folder / Hub id;
            by default the model folder's, when the task needs one.
        feature_extractor (str | object, optional): the audio feature extractor, likewise.
        image_processor (str | object, optional): the image processor, likewise.
        processor (object, optional): a processor holding any of the three above; its parts
            are used where they are not given.
        revision (str, optional): the Hub branch, tag or commit of ``model`` (and of its
            preprocessors).
        use_fast (bool, default True): accepted for compatibility; lightpipe's tokenizers are
            always the fast (``tokenizers``) kind.
        token (str | bool, optional): the Hub token for gated or private models (default: the
            ``HF_TOKEN`` environment variable or the saved login).
        device (str | int | torch.device, optional): where the model runs: "cpu", "cuda",
            "cuda:1", "mps", a GPU index (-1 is the CPU) or a torch.device. Default: the CPU.
        device_map (str | dict, optional): placement while loading, instead of ``device``:
            "auto" (also "balanced", "sequential") puts the model on the best device, split over
            several GPUs, the CPU or the disk when it does not fit (``max_memory`` and
            ``offload_folder`` go in ``model_kwargs``); a device; or a dict of module name ->
            device.
        dtype (str | torch.dtype, default "auto"): the weights' dtype: "auto" keeps the
            checkpoint's (``config.torch_dtype``), or torch.float16 / torch.bfloat16 /
            torch.float32 (or their names).
        torch_dtype (str | torch.dtype, optional): the older name of ``dtype``.
        trust_remote_code (bool, optional): refused when true: lightpipe runs only its own
            code, never a checkpoint's Python files.
        model_kwargs (dict, optional): more ``from_pretrained`` arguments for the model
            (``max_memory``, ``offload_folder``, ``quantization``, ``gguf_file``, config
            overrides, ...).
        pipeline_class (type, optional): a Pipeline subclass to build instead of the task's.
        batch_size (int, optional): the default ``batch_size`` of every call (default 1).
        gguf_file (str, optional): load config, weights and tokenizer from this llama.cpp GGUF
            file in the ``model`` folder or Hub repo.
        quantization (str | object, optional): quantize the linear layers while loading:
            "int8", "int4", "int4:g128", "int8-dynamic" or a torchao-style config (see
            ``lightpipe.quantization``).
        dequantize (bool, default True): with ``gguf_file``, False keeps the file's quantized
            blocks packed instead of expanding them to ``dtype``.
        int8_activations (bool, default False): with quantized layers (``quantization`` or
            ``dequantize=False``), their C kernel quantizes activations to int8 per block of
            32 and uses integer dot products: faster decode, not float32-exact.
        **kwargs: the pipeline's default call arguments (``top_k=2``, ``truncation=True``,
            ``max_new_tokens=64``, ...; a call's own arguments override them), and task
            options (``src_lang`` / ``tgt_lang`` for translation, ``vocoder`` for text-to-audio).

    Returns:
        The task's Pipeline subclass (``TextClassificationPipeline``, ...), a callable:
        ``pipe(inputs, **call_arguments)``.
    """
    refuse_remote_code(trust_remote_code or (model_kwargs or {}).get("trust_remote_code"))
    if task is None and model is None:
        raise ValueError("pipeline() needs a task, a model, or both: for example "
                         "pipeline('sentiment-analysis') or pipeline(model='org/model').")
    extra: dict[str, Any] = {}
    spec = None
    if task is not None:
        task, spec, extra = check_task(task)
    if model is None:
        model, default_revision = spec.default
        revision = revision or default_revision
        logger.warning("No model was supplied, defaulted to %s (revision %s) for task %r. Pass "
                       "model= to choose one; a default is not a production choice.",
                       model, default_revision, task)
        _pipeline_class(spec)  # fail early, before any download, when the task is not built yet
    if torch_dtype is not None and dtype == "auto":
        dtype = torch_dtype
    model_kwargs = dict(model_kwargs or {})
    hub_kwargs = {"revision": revision, "token": token}

    from ..config import Config
    from ..hub import resolve

    gguf_file = kwargs.pop("gguf_file", None) or model_kwargs.get("gguf_file")
    for name in ("quantization", "dequantize", "int8_activations"):  # from_pretrained's
        if name in kwargs:
            model_kwargs[name] = kwargs.pop(name)
    if isinstance(model, (str, os.PathLike)):
        if gguf_file is not None:  # config, weights and tokenizer from one llama.cpp file
            from ..gguf import load_tokenizer, locate, read_config

            path = model_kwargs["gguf_file"] = locate(model, gguf_file, **hub_kwargs)
            folder = path.parent
            config = read_config(folder, path) if config is None else config
            tokenizer = load_tokenizer(folder, path) if tokenizer is None else tokenizer
        else:
            folder = resolve(model, **hub_kwargs)
        if config is None or isinstance(config, (str, os.PathLike)):
            config = Config.from_folder(resolve(config, **hub_kwargs) if config else folder)
        if task is None:
            task, spec, extra = check_task(_infer_task(config))
        cls = pipeline_class or _pipeline_class(spec)
        load_kwargs = {"dtype": dtype, "device": device if device_map is None else None,
                       "device_map": device_map, **model_kwargs}
        model_obj = _model_class(config, spec).from_pretrained(folder, config=config, **load_kwargs)
        model_obj.name_or_path = str(model)
        source = folder
        device = None  # already placed
    else:
        model_obj = model
        if model_kwargs.get("int8_activations"):  # a model already loaded quantized
            from ..quantization import set_int8_activations

            set_int8_activations(model_obj)
        if task is None:
            task, spec, extra = check_task(_infer_task(model_obj.config))
        cls = pipeline_class or _pipeline_class(spec)
        name = getattr(model_obj, "name_or_path", None)
        given = {"tokenizer": tokenizer, "feature_extractor": feature_extractor,
                 "image_processor": image_processor}
        missing = [p for p in spec.preprocessors
                   if given[p] is None and getattr(processor, p, None) is None]
        source = resolve(name, **hub_kwargs) if name and missing else None
        if device is None and device_map is not None:
            from ..modeling import resolve_device

            device = resolve_device(device_map=device_map)
    given = {"tokenizer": tokenizer, "feature_extractor": feature_extractor,
             "image_processor": image_processor}
    for module in _KIND_MODULES.get(spec.kind, ()):  # before any model is used
        require(module)
    loaded = _load_preprocessors(spec, given, source, processor, hub_kwargs)
    logger.info("%s: %s (%s) with %s", task, getattr(model_obj, "name_or_path", None) or "a model object",
                type(model_obj).__name__, ", ".join(f"{k} {type(v).__name__}" for k, v in loaded.items()
                                                    if v is not None) or "no preprocessor")
    return cls(model=model_obj, processor=processor, task=task, device=device,
               batch_size=batch_size, **loaded, **extra, **kwargs)


def _model_class(config, spec: Task) -> type:
    """The model class for the task's first head that this family has."""
    from ..models import heads_for, model_class

    heads = heads_for(config.get("model_type"))
    for head in spec.heads:
        if head in heads:
            return heads[head]
    return model_class(config, spec.heads[0])  # the clear "has no ..." error


def _load_preprocessors(spec: Task, given: dict, source, processor, hub_kwargs: dict) -> dict:
    """Tokenizer / feature extractor / image processor: the caller's (an object or a folder),
    taken from ``processor=`` when it holds one, else loaded from the model's folder when the
    task needs it."""
    loaded = {}
    for name, value in given.items():
        if value is None and processor is not None:
            value = getattr(processor, name, None)
        if isinstance(value, (str, os.PathLike)):
            value = _loader(name).from_pretrained(value, **hub_kwargs)
        elif value is None and name in spec.preprocessors:
            if source is None:
                raise ValueError(f"A model object was given without a {name}: pass {name}= as "
                                 "well (an object or a folder), as with transformers.")
            value = _loader(name).from_pretrained(source)
        loaded[name] = value
    return loaded


def _loader(name: str):
    module, _, attr = _PREPROCESSOR_LOADERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


