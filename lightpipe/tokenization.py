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
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from . import hub
from .errors import (InputError, InputTypeError, LightpipeError, ModelNotFoundError,
                     refuse_remote_code)

logger = logging.getLogger(__name__)

# transformers' sentinels: "no limit" for model_max_length, and the threshold above which a
# model_max_length is treated as unset when padding/truncating to it.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token")
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")

# --- tokenizer classes ----------------------------------------------------------------------
# transformers picks a tokenizer class from tokenizer_config.json's `tokenizer_class` (else
# config.json's, else from `model_type`); the class decides the model inputs and, without a
# tokenizer.json, how the backend is built. We keep only what changes the output.
_WORDPIECE_CLASSES = {
    "BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "LayoutLMTokenizer",
    "ConvBertTokenizer", "MobileBertTokenizer", "SqueezeBertTokenizer", "LxmertTokenizer",
    "DPRContextEncoderTokenizer", "DPRQuestionEncoderTokenizer", "DPRReaderTokenizer",
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
# model_type -> class, used only when no tokenizer_class is declared. Note transformers 5 maps
# distilbert to BertTokenizer here, so such a folder returns token_type_ids.
_MODEL_TYPE_CLASS = {
    **dict.fromkeys(
        ["align", "bark", "bert", "blip", "bros", "chinese_clip", "convbert", "distilbert",
         "electra", "ernie", "flava", "git", "grounding-dino", "layoutlm", "megatron-bert",
         "mm-grounding-dino", "nezha", "nomic_bert", "qdqbert", "realm", "retribert",
         "squeezebert", "tvp", "vilt", "visual_bert"], "BertTokenizer"),
    "mobilebert": "MobileBertTokenizer", "lxmert": "LxmertTokenizer", "dpr":
    "DPRQuestionEncoderTokenizer", "canine": "CanineTokenizer", "deberta": "DebertaTokenizer",
    "deberta-v2": "DebertaV2Tokenizer", "fnet": "FNetTokenizer", "layoutlmv2":
    "LayoutLMv2Tokenizer", "markuplm": "MarkupLMTokenizer", "tapas": "TapasTokenizer",
    **dict.fromkeys(["roberta", "bart", "longformer"], "RobertaTokenizer"),
    "led": "LEDTokenizer", "mvp": "MvpTokenizer",
    **dict.fromkeys(["gpt2", "gpt_neo", "gptj", "codegen", "opt", "phi"], "GPT2Tokenizer"),
}
# The class name transformers 4 and 5 both read as "just use tokenizer.json".
_GENERIC_CLASS = "PreTrainedTokenizerFast"

# Special tokens each class falls back to when the config does not name them.
_CLASS_DEFAULT_TOKENS = {
    "wordpiece": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"},
    "roberta": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"},
    "gpt2": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
             "eos_token": "<|endoftext|>"},
}

# Config keys that name files or loading state, never written back by save_pretrained.
_UNSAVED_KEYS = {"name_or_path", "tokenizer_file", "vocab_file", "merges_file",
                 "special_tokens_map_file", "added_tokens_decoder", "chat_template", "auto_map",
                 "backend", "files_loaded", "is_local", "local_files_only", "tokenizer_class",
                 "additional_special_tokens", "extra_special_tokens"}


class CharSpan(NamedTuple):
    """A span of characters in the original string: [start, end)."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """A span of tokens in an encoding: [start, end)."""

    start: int
    end: int


# --- BatchEncoding ------------------------------------------------------------------------

class BatchEncoding(dict):
    """The output of a tokenizer call: a dict (``input_ids``, ``attention_mask``, ...) with
    attribute access, tensor conversion, ``.to(device)`` and the backend ``Encoding`` objects
    for alignment queries (``word_ids``, ``char_to_token``, ...)."""

    def __init__(self, data: Mapping[str, Any] | None = None, encodings: list | None = None,
                 tensor_type: str | None = None, n_sequences: int | None = None):
        super().__init__(data or {})
        self._encodings = encodings
        if n_sequences is None and encodings:
            n_sequences = encodings[0].n_sequences
        self._n_sequences = n_sequences
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: expose keys as attributes (enc.input_ids).
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {name!r}") from None

    def __getitem__(self, item):
        if isinstance(item, str):
            return dict.__getitem__(self, item)
        if isinstance(item, int) and self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError(f"Invalid key {item!r}: use a name like 'input_ids', an int (the backend "
                       "Encoding of that batch row) or a slice.")

    def __getstate__(self) -> dict:
        return {"encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state: dict) -> None:
        self._encodings = state.get("encodings")
        self._n_sequences = state.get("n_sequences")

    @property
    def data(self) -> dict:
        """The contents as a plain dict."""
        return dict(self)

    @property
    def encodings(self) -> list | None:
        """The ``tokenizers.Encoding`` of each row, or None when built without the backend."""
        return self._encodings

    @property
    def n_sequences(self) -> int | None:
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    # -- tensors
    def convert_to_tensors(self, tensor_type: str | None = None) -> BatchEncoding:
        """Turn the (rectangular) lists into ``"pt"`` tensors or ``"np"`` arrays, in place."""
        if tensor_type is None:
            return self
        tensor_type = _check_tensor_type(tensor_type)
        import numpy as np

        for key, value in list(self.items()):
            if _is_tensor_like(value):
                continue
            _check_rectangular(key, value)
            array = np.asarray(value, dtype=np.int64 if _is_empty(value) else None)
            if tensor_type == "pt":
                import torch

                array = torch.from_numpy(array)
            self[key] = array
        return self

    def to(self, device: Any, *, non_blocking: bool = False) -> BatchEncoding:
        """Move every tensor to ``device`` (PyTorch); other values stay as they are."""
        for key, value in list(self.items()):
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    # -- alignment (backend encodings)
    def _encoding(self, batch_index: int):
        if self._encodings is None:
            raise InputError("This BatchEncoding has no backend encodings (it was built by pad() "
                             "or by hand); alignment methods need the output of a tokenizer call.")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).word_ids

    def words(self, batch_index: int = 0) -> list[int | None]:
        return self.word_ids(batch_index)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).sequence_ids

    @staticmethod
    def _split(first: int, second: int | None) -> tuple[int, int]:
        # The transformers convention: f(index) means batch 0; f(batch, index) otherwise.
        return (0, first) if second is None else (first, second)

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int:
        batch, index = self._split(batch_or_token_index, token_index)
        return self._encoding(batch).token_to_sequence(index)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int:
        batch, index = self._split(batch_or_token_index, token_index)
        return self._encoding(batch).token_to_word(index)

    def token_to_chars(self, batch_or_token_index: int,
                       token_index: int | None = None) -> CharSpan | None:
        batch, index = self._split(batch_or_token_index, token_index)
        span = self._encoding(batch).token_to_chars(index)
        return CharSpan(*span) if span is not None else None

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None,
                       sequence_index: int = 0) -> TokenSpan | None:
        batch, index = self._split(batch_or_word_index, word_index)
        span = self._encoding(batch).word_to_tokens(index, sequence_index)
        return TokenSpan(*span) if span is not None else None

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None,
                      sequence_index: int = 0) -> CharSpan | None:
        batch, index = self._split(batch_or_word_index, word_index)
        span = self._encoding(batch).word_to_chars(index, sequence_index)
        return CharSpan(*span) if span is not None else None

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None,
                      sequence_index: int = 0) -> int | None:
        batch, index = self._split(batch_or_char_index, char_index)
        return self._encoding(batch).char_to_token(index, sequence_index)

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None,
                     sequence_index: int = 0) -> int | None:
        batch, index = self._split(batch_or_char_index, char_index)
        return self._encoding(batch).char_to_word(index, sequence_index)


def _check_tensor_type(tensor_type: Any) -> str:
    name = getattr(tensor_type, "value", tensor_type)  # accept transformers' TensorType enum
    if name not in ("pt", "np"):
        raise InputError(f"return_tensors={tensor_type!r} is not supported: use 'pt' (PyTorch), "
                         "'np' (NumPy) or None (Python lists).")
    return name


def _is_tensor_like(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _is_empty(value: Any) -> bool:
    while isinstance(value, (list, tuple)):
        if not value:
            return True
        value = value[0]
    return False


def _check_rectangular(key: str, value: Any) -> None:
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        lengths = {len(row) for row in value}
        if len(lengths) > 1:
            raise InputError(
                f"Cannot make a tensor of {key!r}: the sequences have different lengths "
                f"({min(lengths)} to {max(lengths)} tokens). Pass padding=True (and "
                "truncation=True for inputs longer than the model accepts), or "
                "return_tensors=None for lists.")


def _to_python(value: Any) -> Any:
    """Tensors and arrays to (nested) Python lists / ints; other values unchanged."""
    if hasattr(value, "tolist") and callable(value.tolist):
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_python(item) for item in value]
    return value


# --- the tokenizer --------------------------------------------------------------------------

class _SpecialToken:
    """``tok.pad_token`` (a string) and ``tok.pad_token_id`` (its id), both settable."""

    def __init__(self, as_id: bool = False):
        self.as_id = as_id

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name.removesuffix("_id")

    def __get__(self, obj: Tokenizer | None, owner: type | None = None):
        if obj is None:
            return self
        token = obj._special_tokens.get(self.key)
        if token is None or not self.as_id:
            return token
        return obj.convert_tokens_to_ids(token)

    def __set__(self, obj: Tokenizer, value: Any) -> None:
        if value is not None and self.as_id:
            value = obj.convert_ids_to_tokens(int(value))
        elif value is not None:
            value = _token_content(value)
        obj._special_tokens[self.key] = value


class Tokenizer:
    """A fast tokenizer with the transformers API: ``tok(text)``, ``decode``, ``pad``,
    ``apply_chat_template``, special-token attributes, ``save_pretrained``."""

    bos_token = _SpecialToken()
    eos_token = _SpecialToken()
    unk_token = _SpecialToken()
    sep_token = _SpecialToken()
    pad_token = _SpecialToken()
    cls_token = _SpecialToken()
    mask_token = _SpecialToken()
    bos_token_id = _SpecialToken(as_id=True)
    eos_token_id = _SpecialToken(as_id=True)
    unk_token_id = _SpecialToken(as_id=True)
    sep_token_id = _SpecialToken(as_id=True)
    pad_token_id = _SpecialToken(as_id=True)
    cls_token_id = _SpecialToken(as_id=True)
    mask_token_id = _SpecialToken(as_id=True)

    is_fast = True
    pad_token_type_id = 0

    def __init__(self, backend: Any, settings: Mapping[str, Any] | None = None, *,
                 tokenizer_class: str = _GENERIC_CLASS, name_or_path: str = ""):
        """Wrap a ``tokenizers.Tokenizer``. ``settings`` are tokenizer_config.json-style keys
        (special tokens, model_max_length, padding_side, chat_template, ...)."""
        settings = dict(settings or {})
        self._backend = backend
        self._lock = threading.Lock()
        self._warned_long = False
        self.tokenizer_class = tokenizer_class
        self.name_or_path = name_or_path
        self.init_kwargs = settings

        # Named special tokens first (in transformers' order), then model-specific ones like
        # `image_token` (any other *_token string key), then the unnamed extras.
        self._special_tokens: dict[str, str | None] = {}
        for name in SPECIAL_TOKEN_NAMES:
            self._special_tokens[name] = _token_content(settings.get(name))
        for key, value in settings.items():
            if key.endswith("_token") and key not in self._special_tokens \
                    and isinstance(value, (str, dict)):
                self._special_tokens[key] = _token_content(value)
        extras = settings.get("extra_special_tokens", settings.get("additional_special_tokens"))
        if isinstance(extras, dict):  # named model-specific tokens
            for key, value in extras.items():
                self._special_tokens[key] = _token_content(value)
            extras = []
        self.extra_special_tokens: list[str] = [_token_content(t) for t in extras or []]

        max_length = settings.get("model_max_length", settings.get("max_len"))
        self.model_max_length = int(max_length) if max_length is not None else VERY_LARGE_INTEGER
        self.padding_side = _check_side("padding_side", settings.get("padding_side", "right"))
        self.truncation_side = _check_side("truncation_side",
                                           settings.get("truncation_side", "right"))
        self.model_input_names = list(settings.get("model_input_names")
                                      or _model_input_names(tokenizer_class))
        self.clean_up_tokenization_spaces = bool(settings.get("clean_up_tokenization_spaces",
                                                              False))
        self.split_special_tokens = bool(settings.get("split_special_tokens", False))
        self.chat_template = settings.get("chat_template")
        if isinstance(self.chat_template, (list, tuple)):  # saved as [{name, template}, ...]
            self.chat_template = {t["name"]: t["template"] for t in self.chat_template}

        self._register_special_tokens(settings.get("added_tokens_decoder"))
        # Settings baked into tokenizer.json are replaced on every call, as transformers does.
        backend.no_truncation()
        backend.no_padding()

    # -- loading
    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any) -> Tokenizer:
        """Load the tokenizer saved in ``folder``; ``kwargs`` override tokenizer_config.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelNotFoundError(f"The tokenizer folder {folder} does not exist.")
        config = _read_json(folder / "tokenizer_config.json")
        model_config = _read_json(folder / "config.json")
        settings = dict(config)
        if "added_tokens_decoder" not in config:
            # transformers reads the legacy special_tokens_map.json only in this case.
            for key, value in _read_json(folder / "special_tokens_map.json").items():
                settings[key] = value
        template = _read_chat_templates(folder, settings.get("chat_template"))
        if template is not None:
            settings["chat_template"] = template
        settings.update(kwargs)

        tokenizer_class = _resolve_class(settings, model_config)
        family = _family(tokenizer_class)
        built = not (folder / "tokenizer.json").is_file()
        if built and family == "generic":  # no class to go by: the files decide
            family = "wordpiece" if (folder / "vocab.txt").is_file() else "gpt2"
        for key, value in _CLASS_DEFAULT_TOKENS.get(family, {}).items():
            settings.setdefault(key, value)
        if not built:
            # transformers drops the config's add_bos/eos_token when there is a tokenizer.json.
            for key in ("add_bos_token", "add_eos_token"):
                if key not in kwargs:
                    settings.pop(key, None)
        backend = _load_backend(folder, family, settings)
        tokenizer = cls(backend, settings, tokenizer_class=tokenizer_class,
                        name_or_path=str(folder))
        tokenizer._finish_backend(family, settings, built=built, explicit_bos_eos=any(
            key in kwargs for key in ("add_bos_token", "add_eos_token")))
        return tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> Tokenizer:
        """Same as :meth:`AutoTokenizer.from_pretrained`."""
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # locks do not pickle or deep-copy
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _register_special_tokens(self, added_tokens_decoder: Mapping | None) -> None:
        """Make every special token an added special token of the backend, so it is never split
        and ``skip_special_tokens`` drops it (transformers does the same at load)."""
        from tokenizers import AddedToken

        present = {token.content for token in self._backend.get_added_tokens_decoder().values()}
        to_add = []
        for _, value in sorted((added_tokens_decoder or {}).items(), key=lambda kv: int(kv[0])):
            token = _added_token(value)
            if token.content not in present:
                to_add.append(token)
                present.add(token.content)
        for token in [*self._special_tokens.values(), *self.extra_special_tokens]:
            if token is not None and token not in present:
                to_add.append(AddedToken(token, special=True, normalized=False))
                present.add(token)
        if to_add:
            self._backend.add_tokens(to_add)

    def _finish_backend(self, family: str, settings: Mapping[str, Any], *, built: bool,
                        explicit_bos_eos: bool) -> None:
        """Set the post-processor the way the matching transformers class does. It needs the
        special-token ids, so it runs after they are registered."""
        from tokenizers import processors

        backend = self._backend
        if built and family == "wordpiece":
            cls_token, sep_token = self.cls_token, self.sep_token
            cls_id = self.cls_token_id if cls_token is not None else 2
            sep_id = self.sep_token_id if sep_token is not None else 3
            backend.post_processor = processors.TemplateProcessing(
                single=f"{cls_token}:0 $A:0 {sep_token}:0",
                pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
                special_tokens=[(cls_token, cls_id), (sep_token, sep_id)])
        elif built and family == "roberta":
            backend.post_processor = processors.RobertaProcessing(
                (self.sep_token, self.sep_token_id), (self.cls_token, self.cls_token_id),
                trim_offsets=bool(settings.get("trim_offsets", True)),
                add_prefix_space=bool(settings.get("add_prefix_space", False)))
        elif family not in ("wordpiece", "roberta") and (
                explicit_bos_eos or backend.post_processor is None):
            # With a tokenizer.json, transformers honours add_bos/eos_token only when passed
            # to from_pretrained; a backend built from vocab files takes them from the config.
            self._set_bos_eos_template(bool(settings.get("add_bos_token", False)),
                                       bool(settings.get("add_eos_token", False)))

    def _set_bos_eos_template(self, add_bos: bool, add_eos: bool) -> None:
        """transformers' template for tokenizers without one: optional BOS / EOS around each
        sequence, the second sequence with type id 1."""
        from tokenizers import processors

        bos, eos = self.bos_token, self.eos_token
        add_bos, add_eos = add_bos and bos is not None, add_eos and eos is not None
        single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
        pair = (f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1"
                f"{' ' + eos + ':1' if add_eos else ''}")
        special = ([(bos, self.bos_token_id)] if add_bos else []) + \
                  ([(eos, self.eos_token_id)] if add_eos else [])
        self._backend.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=special)

    # -- vocabulary
    @property
    def backend_tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` doing the work."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, Any]:
        return self._backend.get_added_tokens_decoder()

    def get_added_vocab(self) -> dict[str, int]:
        return {token.content: index for index, token in sorted(self.added_tokens_decoder.items())}

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Token string(s) to id(s); unknown tokens give ``unk_token_id``."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(token) for token in tokens]

    def _token_to_id(self, token: str) -> int | None:
        index = self._backend.token_to_id(token)
        if index is None:
            unk = self._special_tokens.get("unk_token")
            return self._backend.token_to_id(unk) if unk is not None else None
        return index

    def convert_ids_to_tokens(self, ids: int | Iterable[int],
                              skip_special_tokens: bool = False) -> str | list[str]:
        ids = _to_python(ids)
        if isinstance(ids, int):
            return self._backend.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._backend.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def add_tokens(self, new_tokens: str | Any | Sequence, special_tokens: bool = False) -> int:
        """Add tokens to the vocabulary; returns how many were new."""
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        if special_tokens:
            return self._backend.add_special_tokens(list(new_tokens))
        return self._backend.add_tokens(list(new_tokens))

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any]) -> int:
        """Set named special tokens (``{"pad_token": "[PAD]"}``) and add them to the vocabulary."""
        from tokenizers import AddedToken

        to_add = []
        for key, value in special_tokens_dict.items():
            if key in ("additional_special_tokens", "extra_special_tokens"):
                tokens = [_token_content(t) for t in value]
                self.extra_special_tokens = tokens
                to_add += tokens
            elif key in self._special_tokens or key in SPECIAL_TOKEN_NAMES:
                self._special_tokens[key] = _token_content(value)
                to_add.append(_token_content(value))
            else:
                raise InputError(f"{key!r} is not a special token name; use one of "
                                 f"{', '.join(SPECIAL_TOKEN_NAMES)} or additional_special_tokens.")
        return self._backend.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in to_add])

    # -- special tokens
    def __getattr__(self, name: str) -> Any:
        # Model-specific special tokens (image_token, image_token_id, ...); only reached when
        # normal lookup fails.
        specials = self.__dict__.get("_special_tokens")
        if specials is not None:
            key = name.removesuffix("_id")
            if key in specials:
                token = specials[key]
                return self.convert_tokens_to_ids(token) if key != name and token else token
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens that are set: ``{"cls_token": "[CLS]", ...}``."""
        return {key: value for key, value in self._special_tokens.items() if value is not None}

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self.extra_special_tokens)

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token, named then extra, without repeats."""
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self.extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def get_special_tokens_mask(self, token_ids_0: Sequence[int], token_ids_1=None,
                                already_has_special_tokens: bool = True) -> list[int]:
        """1 for each special token in an already formatted sequence, 0 elsewhere."""
        if not already_has_special_tokens or token_ids_1 is not None:
            raise InputError("get_special_tokens_mask works on sequences that already have their "
                             "special tokens; call the tokenizer with "
                             "return_special_tokens_mask=True instead.")
        special = set(self.all_special_ids)
        return [1 if int(i) in special else 0 for i in _to_python(token_ids_0)]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens the post-processor adds to one sequence (or a pair)."""
        return self._backend.num_special_tokens_to_add(pair)

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    @property
    def do_lower_case(self) -> bool | None:
        return self.init_kwargs.get("do_lower_case")

    def __repr__(self) -> str:
        return (f"Tokenizer(name_or_path={self.name_or_path!r}, class={self.tokenizer_class}, "
                f"vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
                f"padding_side={self.padding_side!r}, special_tokens={self.special_tokens_map})")

    # -- encoding
    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]],
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize a text, a batch of texts, or (batches of) text pairs.

        A single text gives flat lists (``input_ids: list[int]``) unless ``return_tensors`` or
        ``return_overflowing_tokens`` is set; a batch gives one row per text (and per overflow
        window, with ``overflow_to_sample_mapping`` saying which text each row came from).
        """
        if kwargs:
            logger.warning("Ignoring unknown tokenizer arguments: %s", ", ".join(sorted(kwargs)))
        padding, truncation, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of)
        if padding_side is not None:
            _check_side("padding_side", padding_side)
        if return_tensors is not None:
            return_tensors = _check_tensor_type(return_tensors)
        items, is_batched = _batch_inputs(text, text_pair, is_split_into_words)
        if not items:
            return BatchEncoding({"input_ids": []}, [], tensor_type=None)

        encodings = self._encode_batch(
            items, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
            max_length=max_length, stride=stride, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side, is_split_into_words=is_split_into_words,
            split_special_tokens=split_special_tokens)

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        rows, sample_of_row = [], []
        for sample, encoding in enumerate(encodings):
            windows = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
            rows += windows
            sample_of_row += [sample] * len(windows)

        data: dict[str, Any] = {"input_ids": [row.ids for row in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [row.type_ids for row in rows]
        if return_attention_mask:
            data["attention_mask"] = [row.attention_mask for row in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [row.special_tokens_mask for row in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [row.offsets for row in rows]
        if return_length:
            data["length"] = [len(row.ids) for row in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_of_row
        if verbose and max_length is None:
            self._warn_if_too_long(data["input_ids"])

        if not is_batched and return_tensors is None and not return_overflowing_tokens:
            data = {key: value[0] if value and isinstance(value[0], list) else value
                    for key, value in data.items()}
        return BatchEncoding(data, rows, tensor_type=return_tensors)

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        """Normalise padding / truncation arguments the way transformers does."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        padding = _strategy_name(padding, "padding", PADDING_STRATEGIES,
                                 {True: "longest", False: "do_not_pad", None: "do_not_pad"})
        truncation = _strategy_name(truncation, "truncation", TRUNCATION_STRATEGIES,
                                    {True: "longest_first", False: "do_not_truncate",
                                     None: "do_not_truncate"})
        if max_length is None:
            known = self.model_max_length <= LARGE_INTEGER
            if padding == "max_length":
                padding, max_length = ("max_length", self.model_max_length) if known \
                    else ("do_not_pad", None)
            if truncation != "do_not_truncate":
                if known:
                    max_length = self.model_max_length
                else:
                    truncation = "do_not_truncate"
        if padding != "do_not_pad" and (self.pad_token is None or self.pad_token_id is None
                                        or self.pad_token_id < 0):
            raise InputError(
                "Padding was asked for but this tokenizer has no padding token. Set one, e.g. "
                "`tokenizer.pad_token = tokenizer.eos_token`, or pass padding=False.")
        if truncation != "do_not_truncate" and padding != "do_not_pad" and pad_to_multiple_of \
                and max_length is not None and max_length % pad_to_multiple_of:
            raise InputError(f"Truncating to max_length={max_length} and padding to a multiple of "
                             f"{pad_to_multiple_of} conflict: make max_length a multiple of it.")
        return padding, truncation, max_length

    def _encode_batch(self, items, *, add_special_tokens, padding, truncation, max_length, stride,
                      pad_to_multiple_of, padding_side, is_split_into_words, split_special_tokens):
        backend = self._backend
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        # The backend holds truncation/padding as state: set and encode under one lock so
        # concurrent calls with different settings cannot mix.
        with self._lock:
            try:
                if truncation == "do_not_truncate":
                    if backend.truncation is not None:
                        backend.no_truncation()
                else:
                    backend.enable_truncation(max_length, stride=stride, strategy=truncation,
                                              direction=self.truncation_side)
                if padding == "do_not_pad":
                    if backend.padding is not None:
                        backend.no_padding()
                else:
                    backend.enable_padding(
                        direction=padding_side or self.padding_side, pad_id=self.pad_token_id,
                        pad_type_id=self.pad_token_type_id, pad_token=self.pad_token,
                        length=max_length if padding == "max_length" else None,
                        pad_to_multiple_of=pad_to_multiple_of)
                if backend.encode_special_tokens != split_special_tokens:
                    backend.encode_special_tokens = split_special_tokens
                return backend.encode_batch(items, is_pretokenized=is_split_into_words,
                                            add_special_tokens=add_special_tokens)
            except Exception as err:  # the Rust side raises plain Exception with a message
                if isinstance(err, LightpipeError):
                    raise
                raise InputError(f"The tokenizer could not encode this input: {err}. Check "
                                 "max_length, stride and the truncation strategy (e.g. "
                                 "'only_second' needs text pairs).") from err

    def _warn_if_too_long(self, rows: list[list[int]]) -> None:
        if self._warned_long or not self.model_max_length:
            return
        longest = max((len(row) for row in rows), default=0)
        if longest > self.model_max_length:
            self._warned_long = True
            logger.warning(
                "Token sequence length %d is longer than this model's maximum (%d); running it "
                "through the model will fail. Pass truncation=True.", longest,
                self.model_max_length)

    def encode(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None,
               add_special_tokens: bool = True, padding: bool | str = False,
               truncation: bool | str | None = None, max_length: int | None = None,
               stride: int = 0, padding_side: str | None = None,
               return_tensors: str | None = None, **kwargs: Any) -> Any:
        """Token ids of one text (or pair): ``tok(text, ...)["input_ids"]``."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding,
                    truncation=truncation, max_length=max_length, stride=stride,
                    padding_side=padding_side, return_tensors=return_tensors,
                    **kwargs)["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False,
                 **kwargs: Any) -> list[str]:
        """The token strings of ``text`` (no special tokens unless asked)."""
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    # -- padding already encoded inputs
    def pad(self, encoded_inputs: Any, padding: bool | str = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None,
            verbose: bool = True) -> BatchEncoding:
        """Pad encoded inputs (a dict of lists, or a list of dicts as a DataLoader gives) to the
        longest row or to ``max_length``; the collate step of a batch."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs \
                and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {key: [row[key] for row in encoded_inputs]
                              for key in encoded_inputs[0]}
        if not isinstance(encoded_inputs, Mapping):
            raise InputTypeError("pad() takes a dict of token lists or a list of such dicts, got "
                                 f"{type(encoded_inputs).__name__}.")
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise InputError(f"pad() needs {main!r} in its input, got keys "
                             f"{sorted(encoded_inputs)}.")
        inferred = None
        values = {}
        for key, value in encoded_inputs.items():
            if inferred is None and _contains_tensor(value):
                inferred = "pt" if _is_torch(value) else "np"
            values[key] = _to_python(value)
        return_tensors = return_tensors if return_tensors is not None else inferred
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        rows = values[main]
        if not rows:
            if return_attention_mask:
                values["attention_mask"] = []
            return BatchEncoding(values)
        padding, _, max_length = self._strategies(padding, False, max_length, None)
        single = not isinstance(rows[0], (list, tuple))
        batch = {key: [value] for key, value in values.items()} if single else values
        if padding == "longest":
            padding, max_length = "max_length", max(len(row) for row in batch[main])
        side = _check_side("padding_side", padding_side or self.padding_side)
        out: dict[str, list] = {key: [] for key in batch}
        if return_attention_mask:
            out.setdefault("attention_mask", [])
        for index in range(len(batch[main])):
            row = {key: list(value[index]) for key, value in batch.items()}
            for key, value in self._pad_row(row, padding, max_length, pad_to_multiple_of, side,
                                            return_attention_mask).items():
                out.setdefault(key, []).append(value)
        if single:
            out = {key: value[0] for key, value in out.items()}
        return BatchEncoding(out, tensor_type=return_tensors)

    def _pad_row(self, row: dict, padding: str, max_length: int | None,
                 pad_to_multiple_of: int | None, side: str, with_mask: bool) -> dict:
        main = self.model_input_names[0]
        ids = row[main]
        if padding == "longest":
            max_length = len(ids)
        if max_length is not None and pad_to_multiple_of and max_length % pad_to_multiple_of:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        if with_mask and "attention_mask" not in row:
            row["attention_mask"] = [1] * len(ids)
        missing = (max_length - len(ids)) if padding != "do_not_pad" and max_length else 0
        if missing > 0:
            fills = {main: self.pad_token_id, "token_type_ids": self.pad_token_type_id,
                     "special_tokens_mask": 1}
            if with_mask:
                fills["attention_mask"] = 0
            for key, fill in fills.items():
                if key in row:
                    pad = [fill] * missing
                    row[key] = row[key] + pad if side == "right" else pad + row[key]
        return row

    # -- decoding
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str | list[str]:
        """Ids (list, tensor or array) to text; a 2-D input gives a list of texts."""
        ids = _to_python(token_ids)
        if isinstance(ids, Mapping):
            ids = _to_python(ids["input_ids"])
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            return [self._decode(row, skip_special_tokens, clean_up_tokenization_spaces)
                    for row in ids]
        return self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None,
                     **kwargs: Any) -> list[str]:
        """A text per row of ids."""
        rows = _to_python(sequences)
        if not rows:
            return []
        if not isinstance(rows[0], list):
            rows = [rows]
        return [self._decode(row, skip_special_tokens, clean_up_tokenization_spaces)
                for row in rows]

    def _decode(self, ids: list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if clean_up is None:
            clean_up = self.clean_up_tokenization_spaces
        # transformers skips this clean-up for BPE models: it would eat real spaces there.
        if clean_up and (type(self._backend.model).__name__ != "BPE" or self.init_kwargs.get(
                "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output")):
            text = clean_up_tokenization(text)
        return text

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    # -- chat templates
    def get_chat_template(self, chat_template: str | None = None,
                          tools: list | None = None) -> str:
        """The Jinja source to use: ``chat_template`` (source or template name) or the model's."""
        templates = self.chat_template
        if isinstance(templates, dict):
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is not None:
                return chat_template
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise InputError("This model has several chat templates and none is the default: "
                             f"pass chat_template= one of {sorted(templates)}.")
        if chat_template is not None:
            return chat_template
        if templates is None:
            raise InputError(
                f"The tokenizer of {self.name_or_path or 'this model'} has no chat template, so it "
                "cannot format chat messages. Pass one with apply_chat_template(..., "
                "chat_template=\"{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n"
                "{% endfor %}\"), or set tokenizer.chat_template.")
        return templates

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        tools: list[dict] | None = None,
        documents: list[dict] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **template_kwargs: Any,
    ) -> Any:
        """Render chat messages with the model's Jinja template (as transformers does) and,
        with ``tokenize=True``, tokenize the result (ids, or a BatchEncoding with
        ``return_dict=True``, the default in transformers 5). A list of conversations gives a
        list."""
        source = self.get_chat_template(chat_template, tools)
        if isinstance(conversation, (list, tuple)) and not conversation:
            raise InputError("Cannot apply a chat template to an empty conversation: pass at least "
                             "one message like {'role': 'user', 'content': 'Hi'}.")
        if not isinstance(conversation, (list, tuple)) and not hasattr(conversation, "messages"):
            raise InputTypeError("conversation must be a list of messages (dicts with 'role' and "
                                 f"'content') or a list of such lists, got "
                                 f"{type(conversation).__name__}.")
        is_batched = isinstance(conversation[0], (list, tuple)) or \
            hasattr(conversation[0], "messages")
        conversations = conversation if is_batched else [conversation]
        if continue_final_message and add_generation_prompt:
            raise InputError("continue_final_message and add_generation_prompt cannot be used "
                             "together: the first continues the last message, the second starts "
                             "a new assistant message.")
        variables = {**self.special_tokens_map, **template_kwargs}
        rendered = [render_chat_template(source, _normalize_messages(chat), tools=tools,
                                         documents=documents,
                                         add_generation_prompt=add_generation_prompt,
                                         continue_final_message=continue_final_message,
                                         **variables)
                    for chat in conversations]
        if not tokenize:
            return rendered if is_batched else rendered[0]
        out = self(rendered if is_batched else rendered[0], padding=padding,
                   truncation=truncation, max_length=max_length, add_special_tokens=False,
                   return_tensors=return_tensors, **(tokenizer_kwargs or {}))
        return out if return_dict else out["input_ids"]

    # -- saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and the chat
        template) so that lightpipe and transformers both load the tokenizer back."""
        folder = Path(save_directory)
        if folder.is_file():
            raise InputError(f"{folder} is a file; save_pretrained needs a folder.")
        folder.mkdir(parents=True, exist_ok=True)

        # Special tokens are written from their current values below, so drop the loaded ones
        # (flags like add_bos_token stay).
        config = {key: value for key, value in self.init_kwargs.items()
                  if key not in _UNSAVED_KEYS
                  and not (key.endswith("_token") and not isinstance(value, bool))}
        config.update(self.special_tokens_map)
        if self.extra_special_tokens:
            config["additional_special_tokens"] = list(self.extra_special_tokens)
        config.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                      truncation_side=self.truncation_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      tokenizer_class=self.tokenizer_class)
        if self.model_input_names != _model_input_names(self.tokenizer_class):
            config["model_input_names"] = list(self.model_input_names)
        written = []
        templates = self.chat_template
        if isinstance(templates, str):
            templates = {"default": templates}
        for name, source in (templates or {}).items():
            if name == "default":
                path = folder / "chat_template.jinja"
            else:
                path = folder / "additional_chat_templates" / f"{name}.jinja"
                if path.resolve().parent != (folder / "additional_chat_templates").resolve():
                    raise InputError(f"Invalid chat template name {name!r}.")
                path.parent.mkdir(exist_ok=True)
            path.write_text(source, encoding="utf-8")
            written.append(str(path))

        special_map = dict(self.special_tokens_map)
        if self.extra_special_tokens:
            special_map["additional_special_tokens"] = list(self.extra_special_tokens)
        with self._lock:
            serialized = json.loads(self._backend.to_str())
        serialized["truncation"] = None  # per-call state, not part of the tokenizer
        serialized["padding"] = None
        files = {"tokenizer_config.json": config, "special_tokens_map.json": special_map,
                 "tokenizer.json": serialized}
        for name, content in files.items():
            path = folder / name
            indent = None if name == "tokenizer.json" else 2
            path.write_text(json.dumps(_jsonable(content), indent=indent, ensure_ascii=False,
                                       sort_keys=name != "tokenizer.json") + "\n",
                            encoding="utf-8")
            written.append(str(path))
        return tuple(written)


# --- AutoTokenizer ------------------------------------------------------------------------

class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)`` -> :class:`Tokenizer`."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None,
                        cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, trust_remote_code: bool | None = None,
                        use_fast: bool = True, subfolder: str = "", **kwargs: Any) -> Tokenizer:
        """Load a tokenizer from a local folder or a Hub id. ``kwargs`` override
        tokenizer_config.json (``model_max_length=``, ``padding_side=``, special tokens, ...).
        ``use_fast`` is accepted for compatibility: the tokenizer is always the fast one."""
        refuse_remote_code(trust_remote_code)
        for ignored in ("_from_pipeline", "_from_auto", "config", "force_download", "proxies"):
            kwargs.pop(ignored, None)
        folder = hub.resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                             local_files_only=local_files_only, subfolder=subfolder,
                             weights=False)
        tokenizer = tokenizer_class(folder).from_folder(folder, **kwargs)
        tokenizer.name_or_path = str(name_or_path)
        return tokenizer


# Tokenizer classes with behaviour of their own (tokenizer_config.json's tokenizer_class ->
# "module:Class"); each has ``from_folder(folder, **kwargs)``. Others are the generic Tokenizer.
SPECIAL_TOKENIZERS: dict[str, str] = {
    "WhisperTokenizer": "lightpipe.tokenization_whisper:WhisperTokenizer",
    "Wav2Vec2CTCTokenizer": "lightpipe.tokenization_ctc:Wav2Vec2CTCTokenizer",
    "MarianTokenizer": "lightpipe.tokenization_spm:MarianTokenizer",
    "T5Tokenizer": "lightpipe.tokenization_spm:T5Tokenizer",
    "CLIPTokenizer": "lightpipe.tokenization_clip:CLIPTokenizer",
    "TapasTokenizer": "lightpipe.tokenization_tapas:TapasTokenizer",
}


def tokenizer_class(folder: Path) -> type:
    """The class that loads the tokenizer in ``folder``: a special one (Whisper, CTC, Marian,
    ...) when its tokenizer_config.json names one and lightpipe has it, else Tokenizer."""
    name = _resolve_class(_read_json(folder / "tokenizer_config.json"),
                          _read_json(folder / "config.json"))
    target = SPECIAL_TOKENIZERS.get(name)
    if target is None:
        return Tokenizer
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return Tokenizer


# --- loading helpers ------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"Could not read {path}: {err}. The file is damaged; download it "
                                 "again.") from err
    return value if isinstance(value, dict) else {}


def _read_chat_templates(folder: Path, from_config: Any) -> Any:
    """chat_template.jinja (plus additional_chat_templates/*.jinja) wins over the config's
    template, which wins over a legacy chat_template.json."""
    templates = {}
    if (folder / "chat_template.jinja").is_file():
        templates["default"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    extra_dir = folder / "additional_chat_templates"
    if extra_dir.is_dir():
        for path in sorted(extra_dir.glob("*.jinja")):
            templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
    if list(templates) == ["default"]:
        return templates["default"]
    if templates:
        return templates
    if from_config is not None:
        return from_config
    return _read_json(folder / "chat_template.json").get("chat_template")


def _resolve_class(settings: Mapping[str, Any], model_config: Mapping[str, Any]) -> str:
    name = settings.get("tokenizer_class") or model_config.get("tokenizer_class")
    if not name:
        return _MODEL_TYPE_CLASS.get(model_config.get("model_type"), _GENERIC_CLASS)
    if name in ("PreTrainedTokenizerFast", "TokenizersBackend", "PreTrainedTokenizer"):
        return _GENERIC_CLASS
    return name.removesuffix("Fast")


def _family(tokenizer_class: str) -> str:
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


def _load_backend(folder: Path, family: str, settings: dict) -> Any:
    """A ``tokenizers.Tokenizer`` from tokenizer.json, or built from the vocabulary files."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, normalizers, pre_tokenizers

    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            backend = RustTokenizer.from_file(str(tokenizer_json))
        except Exception as err:
            raise ModelNotFoundError(f"Could not read {tokenizer_json}: {err}. The file may be "
                                     "damaged or from a newer `tokenizers`; upgrade it or "
                                     "download the file again.") from err
        # Padding / truncation baked into the file only supply defaults, as in transformers.
        if backend.padding is not None:
            settings.setdefault("pad_token", backend.padding["pad_token"])
            settings.setdefault("padding_side", backend.padding["direction"])
        if backend.truncation is not None:
            settings.setdefault("truncation_side", backend.truncation["direction"])
        normalizer = backend.normalizer
        if family == "wordpiece" and isinstance(normalizer, normalizers.BertNormalizer):
            # The BERT classes rebuild the normaliser from these config keys.
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=normalizer.clean_text,
                handle_chinese_chars=settings.get("tokenize_chinese_chars",
                                                  normalizer.handle_chinese_chars),
                strip_accents=settings.get("strip_accents", normalizer.strip_accents),
                lowercase=settings.get("do_lower_case", normalizer.lowercase))
        if family in ("roberta", "gpt2") and "add_prefix_space" in settings:
            # The RoBERTa and GPT-2 classes rebuild their byte-level pre-tokenizer from this flag.
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(
                add_prefix_space=bool(settings["add_prefix_space"]))
        return backend

    vocab_txt = folder / "vocab.txt"
    vocab_json, merges_txt = folder / "vocab.json", folder / "merges.txt"
    if family in ("roberta", "gpt2") and vocab_json.is_file() and merges_txt.is_file():
        return _byte_level_bpe(vocab_json, merges_txt, settings)
    if vocab_txt.is_file():
        from tokenizers.models import WordPiece

        with open(vocab_txt, encoding="utf-8") as handle:
            vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
        unk = _token_content(settings.get("unk_token")) or "[UNK]"
        backend = RustTokenizer(WordPiece(vocab, unk_token=unk))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
            strip_accents=settings.get("strip_accents"),
            lowercase=settings.get("do_lower_case", True))
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        return backend
    if vocab_json.is_file() and merges_txt.is_file():
        return _byte_level_bpe(vocab_json, merges_txt, settings)

    present = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    hint = (" It has a SentencePiece tokenizer.model, which lightpipe reads only through a "
            "tokenizer.json: convert it once with transformers (`AutoTokenizer.from_pretrained("
            "...).save_pretrained(folder)`)." if "tokenizer.model" in present else "")
    raise ModelNotFoundError(
        f"No tokenizer files in {folder}: looked for tokenizer.json, vocab.txt (WordPiece) and "
        f"vocab.json + merges.txt (byte-level BPE).{hint} Files present: "
        f"{', '.join(present[:20]) or 'none'}.")


def _byte_level_bpe(vocab_json: Path, merges_txt: Path, settings: Mapping[str, Any]) -> Any:
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab, merges = BPE.read_file(str(vocab_json), str(merges_txt))
    backend = RustTokenizer(BPE(vocab, merges, dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="", fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=bool(settings.get("add_prefix_space", False)))
    backend.decoder = decoders.ByteLevel()
    return backend


def _token_content(value: Any) -> str | None:
    """A special token given as a string, an AddedToken or a saved AddedToken dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return getattr(value, "content", None) or str(value)


def _added_token(value: Any) -> Any:
    from tokenizers import AddedToken

    if isinstance(value, AddedToken):
        return value
    if isinstance(value, dict):
        fields = {key: value[key] for key in ("single_word", "lstrip", "rstrip", "normalized",
                                              "special") if key in value}
        return AddedToken(value["content"], **fields)
    return AddedToken(str(value), special=True, normalized=False)


def _check_side(name: str, value: str) -> str:
    if value not in ("right", "left"):
        raise InputError(f"{name} must be 'right' or 'left', got {value!r}.")
    return value


def _strategy_name(value: Any, what: str, allowed: tuple[str, ...], aliases: dict) -> str:
    if isinstance(value, bool) or value is None:
        return aliases[value]
    value = getattr(value, "value", value)  # transformers' PaddingStrategy / TruncationStrategy
    if value not in allowed:
        raise InputError(f"{what}={value!r} is not valid: use True, False or one of "
                         f"{', '.join(repr(a) for a in allowed)}.")
    return value


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        return f"a {type(value).__name__} of {type(value[0]).__name__}"
    return type(value).__name__


def _batch_inputs(text: Any, text_pair: Any, is_split_into_words: bool) -> tuple[list, bool]:
    """Validate the text arguments; return the backend's batch items and whether the caller
    passed a batch."""
    def valid(value: Any) -> bool:
        if isinstance(value, str):
            return True
        if not isinstance(value, (list, tuple)):
            return False
        if not value:
            return True
        first = value[0]
        if isinstance(first, str):
            return all(isinstance(item, str) for item in value)
        if isinstance(first, (list, tuple)):
            return all(isinstance(item, (list, tuple)) and
                       all(isinstance(x, str) or (isinstance(x, (list, tuple)) and
                                                 all(isinstance(y, str) for y in x))
                           for x in item) for item in value)
        return False

    expected = ("a str, a list of str (a batch), a list of (text, text_pair) tuples or, with "
                "is_split_into_words=True, a list of words (or a batch of them)")
    for name, value in (("text", text), ("text_pair", text_pair)):
        if (value is not None or name == "text") and not valid(value):
            raise InputTypeError(f"{name} must be {expected}; got {_describe(value)}.")
    if is_split_into_words:
        is_batched = isinstance(text, (list, tuple)) and bool(text) and \
            isinstance(text[0], (list, tuple))
    else:
        is_batched = isinstance(text, (list, tuple))
    if not is_batched:
        return ([(text, text_pair)] if text_pair else [text]), False
    if isinstance(text_pair, str):
        raise InputTypeError("For a batch of texts, text_pair must be a list of the same length, "
                             "not a str.")
    if text_pair is not None:
        if len(text_pair) != len(text):
            raise InputError(f"text has {len(text)} items but text_pair has {len(text_pair)}; "
                             "they must have the same length.")
        return list(zip(text, text_pair)), True
    return list(text), True


def _contains_tensor(value: Any) -> bool:
    if _is_tensor_like(value):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and _is_tensor_like(value[0])


def _is_torch(value: Any) -> bool:
    first = value[0] if isinstance(value, (list, tuple)) else value
    return type(first).__module__.startswith("torch")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "content") and hasattr(value, "special"):  # AddedToken
        return value.content
    return value


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces WordPiece decoding leaves before punctuation and contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                          (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                          (" 're", "'re")):
        text = text.replace(before, after)
    return text


# --- chat templates -------------------------------------------------------------------------

_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _normalize_messages(chat: Any) -> list[dict]:
    """Messages as plain dicts, without None values (templates print them as 'None')."""
    messages = getattr(chat, "messages", chat)
    normalized = []
    for message in messages:
        message = _plain_data(message)
        if not isinstance(message, dict):
            raise InputTypeError(f"Chat messages must be dicts with 'role' and 'content', got "
                                 f"{type(message).__name__}.")
        message = {key: value for key, value in message.items() if value is not None}
        reasoning = next((message[key] for key in _REASONING_KEYS if key in message), None)
        if reasoning is not None:
            # Templates read the reasoning under different names; give it under each.
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        normalized.append(message)
    return normalized


def _plain_data(value: Any) -> Any:
    """Only plain JSON-like data reaches the template: rich objects (tensors, images) carry
    methods the sandbox does not know to be unsafe, so they become a placeholder string."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain_data(key): _plain_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain_data(item) for item in value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        return _plain_data(value.item())
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain_data(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # pydantic, e.g. OpenAI SDK messages
        return _plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def render_chat_template(source: str, messages: list[dict], *, tools: list | None = None,
                         documents: list | None = None, add_generation_prompt: bool = False,
                         continue_final_message: bool | str = False, **variables: Any) -> str:
    """Render one conversation with a chat template, in transformers' Jinja environment."""
    if tools is not None:
        for tool in tools:
            if not isinstance(tool, dict):
                raise InputTypeError("Tools must be JSON-schema dicts ({'type': 'function', "
                                     "'function': {...}}); lightpipe does not convert Python "
                                     f"functions. Got {type(tool).__name__}.")
    if documents is not None and not all(isinstance(doc, dict) for doc in documents):
        raise InputTypeError("Documents must be dicts with 'title' and 'text' keys.")
    template = _compile_chat_template(source)
    messages = [dict(message) for message in messages]
    final = None
    if continue_final_message:
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = messages[-1].get(field) if messages else None
        if final is None:
            raise InputError(f"continue_final_message is set but the last message has no "
                             f"{field!r} to continue.")
        fields = [field]
        if field in _REASONING_KEYS:
            fields = [key for key in _REASONING_KEYS if messages[-1].get(key) == final]
        if not any(name in source for name in fields):
            raise InputError(f"continue_final_message={continue_final_message!r} but the chat "
                             "template never reads that field.")
        last = messages[-1] = dict(messages[-1])
        if isinstance(final, (list, tuple)):
            blocks = [dict(block) for block in final]
            for block in reversed(blocks):
                if "text" in block:
                    final = block["text"]
                    block["text"] = block["text"] + _CONTINUE_TAG
                    break
            else:
                raise InputError("continue_final_message is set but the last message has no "
                                 "text block to continue.")
            last[field] = blocks
        else:
            for name in fields:
                last[name] = last[name] + _CONTINUE_TAG
    rendered = template.render(messages=messages, tools=_plain_data(tools),
                               documents=_plain_data(documents),
                               add_generation_prompt=add_generation_prompt,
                               **_plain_data(variables))
    if continue_final_message:
        tag = _CONTINUE_TAG.strip()
        if final.strip() not in rendered or tag not in rendered:
            raise InputError("continue_final_message is set but the chat template dropped part of "
                             "the final message, so it cannot be continued.")
        cut = rendered.rindex(tag)
        # Keep the message's own trailing spacing when the template kept it.
        rendered = rendered[:cut] if rendered[cut:cut + len(_CONTINUE_TAG)] == _CONTINUE_TAG \
            else rendered[:cut].rstrip()
    return rendered


@lru_cache(maxsize=32)
def _compile_chat_template(source: str) -> Any:
    """Compile in a sandbox: chat templates come from the Hub and are untrusted code."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        # `{% generation %}...{% endgeneration %}` marks assistant text for training masks;
        # for inference it only renders its body.
        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    class SafeNamespace(jinja2.utils.Namespace):
        # Block underscore names, which could reach Python internals.
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                SafeNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            SafeNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot set underscore attributes on a namespace ({name!r}).")

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Unlike Jinja's own filter: no HTML escaping, and json.dumps' options.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now,
                       namespace=SafeNamespace, dict=lambda *a, **k: dict(*a, **k))
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise InputError(f"The chat template is not valid Jinja: {err} (line {err.lineno}).") \
            from err
