"""Tokenizer class names: which transformers class a folder asks for, and what that changes.

transformers picks a tokenizer class from tokenizer_config.json's ``tokenizer_class`` (else
config.json's, else from ``model_type``); the class decides the model inputs and, without a
tokenizer.json, how the backend is built. We keep only what changes the output. Which class a
model type uses, and which classes have an implementation of their own
(``SPECIAL_TOKENIZERS``), come from the family registry, ``lightpipe.families``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import families

_WORDPIECE_CLASSES = {
    "BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "LayoutLMTokenizer",
    "ConvBertTokenizer", "MobileBertTokenizer", "SqueezeBertTokenizer", "LxmertTokenizer",
    "DPRContextEncoderTokenizer", "DPRQuestionEncoderTokenizer", "DPRReaderTokenizer",
    "MPNetTokenizer",
}
_ROBERTA_CLASSES = {"RobertaTokenizer", "BartTokenizer", "LEDTokenizer", "MvpTokenizer",
                    "LongformerTokenizer"}
_GPT2_CLASSES = {"GPT2Tokenizer"}
_TOKEN_TYPE_CLASSES = {
    "BertTokenizer", "ElectraTokenizer", "LayoutLMTokenizer", "ConvBertTokenizer",
    "MobileBertTokenizer", "SqueezeBertTokenizer", "LxmertTokenizer", "CanineTokenizer",
    "DPRContextEncoderTokenizer", "DPRQuestionEncoderTokenizer", "DebertaTokenizer",
    "DebertaV2Tokenizer", "LayoutLMv2Tokenizer", "MarkupLMTokenizer", "TapasTokenizer",
}
# FNet has no attention mask at all.
_INPUT_NAMES = {"FNetTokenizer": ["input_ids", "token_type_ids"]}
# The class name transformers 4 and 5 both read as "just use tokenizer.json".
_GENERIC_CLASS = "PreTrainedTokenizerFast"

# Tokenizer classes with behaviour of their own (tokenizer_config.json's tokenizer_class ->
# "lightpipe.module:Class"), from the family registry; each has ``from_folder(folder, **kwargs)``.
# Others are the generic Tokenizer.
SPECIAL_TOKENIZERS: dict[str, str] = {name: f"lightpipe.{target}"
                                      for name, target in families.SPECIAL_TOKENIZERS.items()}

# Special tokens each backend family falls back to when the config does not name them.
_CLASS_DEFAULT_TOKENS = {
    "wordpiece": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"},
    "roberta": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"},
    "gpt2": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
             "eos_token": "<|endoftext|>"},
    # a class's own defaults, by class name (Pythia's folders name no pad token)
    "GPTNeoXTokenizer": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
                         "eos_token": "<|endoftext|>", "pad_token": "<|padding|>"},
}

# Classes whose default padding side is the left (a class attribute in transformers).
_LEFT_PADDING_CLASSES = {"LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer",
                         "XLNetTokenizer", "CohereTokenizer", "Siglip2Tokenizer"}
# Model types for which transformers 5 never uses the class tokenizer_config.json names: it
# loads their registered class or its generic tokenizer (Mistral's and Phi-3's folders say
# LlamaTokenizer).
_CLASS_OVERRIDDEN_MODEL_TYPES = {
    "mistral", "mistral3", "mixtral", "ministral", "ministral3", "pixtral", "voxtral",
    "arctic", "ernie4_5", "ernie4_5_moe", "fuyu", "internlm2", "internlm3", "jamba", "llava",
    "llava_next", "minicpm3", "minicpmv", "nemotron", "phi3", "phi3_v", "phimoe", "qwen2",
    "qwen3_5", "qwen3_5_moe", "qwen3_5_moe_text", "modernbert", "modernbert-decoder",
    "smolvlm", "vipllava"}


def _default_padding_side(tokenizer_class: str, model_type: str | None, backend: Any) -> str | None:
    """The padding side a class sets when neither tokenizer_config.json nor tokenizer.json
    says: "left" for the left-padding classes, as transformers 5 picks the class (a
    LlamaTokenizer over a byte-level tokenizer.json, Llama 3 style, loads as the generic one)."""
    if tokenizer_class not in _LEFT_PADDING_CLASSES or model_type in _CLASS_OVERRIDDEN_MODEL_TYPES:
        return None
    if tokenizer_class == "LlamaTokenizer" and '"ByteLevel"' in _parts_json(backend):
        return None
    return "left"


def _parts_json(backend: Any) -> str:
    """The pre-tokenizer, decoder and post-processor of a backend as JSON text."""
    parts = (backend.pre_tokenizer, backend.decoder, backend.post_processor)
    return " ".join(part.__getstate__().decode("utf-8", "replace") for part in parts
                    if part is not None)


def _resolve_class(settings: Mapping[str, Any], model_config: Mapping[str, Any]) -> str:
    """The class name a folder asks for, without "Fast"; the generic name when it asks for
    none we know to differ."""
    if model_config.get("model_type") == "siglip2":
        # transformers 5 ignores the class SigLIP 2 folders name (GemmaTokenizer): its own
        # lower-cases the text
        return "Siglip2Tokenizer"
    name = settings.get("tokenizer_class") or model_config.get("tokenizer_class")
    if not name:
        # the class transformers uses for the model type (the family registry's tokenizer=)
        return families.tokenizer_of_model_type().get(model_config.get("model_type"), _GENERIC_CLASS)
    if name in ("PreTrainedTokenizerFast", "TokenizersBackend", "PreTrainedTokenizer"):
        return _GENERIC_CLASS
    return name.removesuffix("Fast")


def _family(tokenizer_class: str) -> str:
    """How a backend without tokenizer.json is built: "wordpiece", "roberta", "gpt2" or
    "generic"."""
    if tokenizer_class in _WORDPIECE_CLASSES:
        return "wordpiece"
    if tokenizer_class in _ROBERTA_CLASSES:
        return "roberta"
    if tokenizer_class in _GPT2_CLASSES:
        return "gpt2"
    return "generic"


def _model_input_names(tokenizer_class: str) -> list[str]:
    if tokenizer_class in _INPUT_NAMES:
        return list(_INPUT_NAMES[tokenizer_class])
    if tokenizer_class in _TOKEN_TYPE_CLASSES:
        return ["input_ids", "token_type_ids", "attention_mask"]
    return ["input_ids", "attention_mask"]
