"""Text tokenizers: the Rust ``tokenizers`` library behind the transformers calling convention.

``AutoTokenizer.from_pretrained(name)`` returns a :class:`Tokenizer`; calling it returns a
:class:`BatchEncoding`. Behaviour follows transformers 5's fast tokenizer
(``tokenization_utils_base.py``, ``tokenization_utils_tokenizers.py`` and
``models/{bert,roberta,gpt2}/tokenization_*.py``): the same ids, masks, offsets, padding and
truncation rules, overflow windows, decoding and chat-template rendering.

A folder is read from ``tokenizer.json`` when it has one; otherwise the backend is built from
``vocab.txt`` (BERT WordPiece) or ``vocab.json`` + ``merges.txt`` (byte-level BPE, GPT-2 or
RoBERTa style). Settings come from ``tokenizer_config.json``, ``special_tokens_map.json`` and
the keyword arguments given to ``from_pretrained``, in that order of precedence (last wins).

The modules:

- ``classes``: tokenizer class names and what they change (``SPECIAL_TOKENIZERS``, the
  model-type table);
- ``batch_encoding``: ``BatchEncoding``, spans, tensor conversion;
- ``inputs``: validating text inputs and padding / truncation arguments;
- ``backend``: the ``tokenizers.Tokenizer`` from tokenizer.json or vocabulary files;
- ``tokenizer``: ``Tokenizer``, assembled from ``loading``, ``special_tokens``, ``encode``,
  ``decode`` and ``chat`` (chat templates);
- ``auto``: ``AutoTokenizer``;
- the tokenizers with behaviour of their own, imported on first use: ``whisper``, ``ctc``
  (Wav2Vec2), ``spm`` (Marian and T5 SentencePiece), ``tapas``, ``clip``.
"""

from __future__ import annotations

# Besides the public names, the private helpers keep the import paths they had when this
# package was one module.
from .auto import AutoTokenizer, tokenizer_class
from .backend import _byte_level_bpe, _load_backend, set_bos_eos_template, set_post_processor
from .batch_encoding import (BatchEncoding, CharSpan, TokenSpan, _check_rectangular,
                             _check_tensor_type, _contains_tensor, _is_empty, _is_tensor_like,
                             _is_torch, _to_python)
from .chat import (_CONTINUE_TAG, _REASONING_KEYS, _compile_chat_template, _normalize_messages,
                   _plain_data, _read_chat_templates, render_chat_template)
from .classes import (_CLASS_DEFAULT_TOKENS, _GENERIC_CLASS, _GPT2_CLASSES, _INPUT_NAMES,
                      _ROBERTA_CLASSES, _TOKEN_TYPE_CLASSES,
                      _WORDPIECE_CLASSES, SPECIAL_TOKENIZERS, _family, _model_input_names,
                      _resolve_class)
from .decode import clean_up_tokenization
from .inputs import (LARGE_INTEGER, PADDING_STRATEGIES, TRUNCATION_STRATEGIES,
                     VERY_LARGE_INTEGER, _batch_inputs, _check_side, _describe, _strategy_name)
from .loading import _UNSAVED_KEYS, _jsonable
from .special_tokens import SPECIAL_TOKEN_NAMES, _added_token, _SpecialToken, _token_content
from .tokenizer import Tokenizer

__all__ = [
    "AutoTokenizer", "BatchEncoding", "CharSpan", "LARGE_INTEGER", "PADDING_STRATEGIES",
    "SPECIAL_TOKENIZERS", "SPECIAL_TOKEN_NAMES", "TRUNCATION_STRATEGIES", "TokenSpan",
    "Tokenizer", "VERY_LARGE_INTEGER", "clean_up_tokenization", "render_chat_template",
    "set_bos_eos_template", "set_post_processor", "tokenizer_class",
]
