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
}


def _resolve_class(settings: Mapping[str, Any], model_config: Mapping[str, Any]) -> str:
    """The class name a folder asks for, without "Fast"; the generic name when it asks for
    none we know to differ."""
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
