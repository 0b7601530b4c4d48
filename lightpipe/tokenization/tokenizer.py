"""``Tokenizer``: a fast tokenizer with the transformers API over a ``tokenizers.Tokenizer``.

The class is assembled from one mixin per concern: loading and saving (``loading.py``),
special tokens (``special_tokens.py``), encoding with padding and truncation (``encode.py``),
decoding (``decode.py``) and chat templates (``chat.py``). This module holds what they share:
the settings read at construction and the vocabulary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .batch_encoding import _to_python
from .chat import ChatTemplateMixin
from .classes import _GENERIC_CLASS, _model_input_names
from .decode import DecodeMixin
from .encode import EncodeMixin
from .inputs import VERY_LARGE_INTEGER, _check_side
from .loading import LoadingMixin
from .special_tokens import SpecialTokensMixin


class Tokenizer(LoadingMixin, SpecialTokensMixin, EncodeMixin, DecodeMixin, ChatTemplateMixin):
    """A fast tokenizer with the transformers API: ``tok(text)``, ``decode``, ``pad``,
    ``apply_chat_template``, special-token attributes, ``save_pretrained``."""

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

        self._init_special_tokens(settings)

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

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # locks do not pickle or deep-copy
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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

    @property
    def do_lower_case(self) -> bool | None:
        return self.init_kwargs.get("do_lower_case")

    def __repr__(self) -> str:
        return (f"Tokenizer(name_or_path={self.name_or_path!r}, class={self.tokenizer_class}, "
                f"vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
                f"padding_side={self.padding_side!r}, special_tokens={self.special_tokens_map})")
