"""Special tokens: the named ones (``pad_token`` and ``pad_token_id``, settable), model-specific
ones (``image_token``), the extras, and their registration with the backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError
from .batch_encoding import _to_python

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token")


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


class _SpecialToken:
    """``tok.pad_token`` (a string) and ``tok.pad_token_id`` (its id), both settable."""

    def __init__(self, as_id: bool = False):
        self.as_id = as_id

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name.removesuffix("_id")

    def __get__(self, obj: SpecialTokensMixin | None, owner: type | None = None):
        if obj is None:
            return self
        token = obj._special_tokens.get(self.key)
        if token is None or not self.as_id:
            return token
        return obj.convert_tokens_to_ids(token)

    def __set__(self, obj: SpecialTokensMixin, value: Any) -> None:
        if value is not None and self.as_id:
            value = obj.convert_ids_to_tokens(int(value))
        elif value is not None:
            value = _token_content(value)
        obj._special_tokens[self.key] = value


class SpecialTokensMixin:
    """The special-token part of :class:`Tokenizer`: ``_init_special_tokens`` reads them from
    the settings, ``_register_special_tokens`` adds them to the backend. Needs ``_backend``,
    ``convert_tokens_to_ids`` / ``convert_ids_to_tokens`` and ``model_max_length``."""

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

    def _init_special_tokens(self, settings: Mapping[str, Any]) -> None:
        """Named special tokens first (in transformers' order), then model-specific ones like
        ``image_token`` (any other ``*_token`` string key), then the unnamed extras."""
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
