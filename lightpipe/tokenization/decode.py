"""Decoding ids back to text, with transformers' optional clean-up of WordPiece spacing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from .batch_encoding import _to_python


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces WordPiece decoding leaves before punctuation and contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                          (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                          (" 're", "'re")):
        text = text.replace(before, after)
    return text


def _check_ids(ids: Any, rows: bool = False) -> None:
    """Token ids are non-negative integers (an id past the vocabulary decodes to nothing, as
    in the reference)."""
    if not isinstance(ids, list):
        raise InputError(f"decode() takes a list of token ids (or a tensor or array), not "
                         f"{type(ids).__name__}.")
    if rows and ids and isinstance(ids[0], list):
        return  # each row is checked when decoded
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"decode() got {value!r} among the token ids: ids are integers >= 0. "
                             "Pass the ids a tokenizer or generate() gave.")


class DecodeMixin:
    """The decoding part of :class:`Tokenizer`. Needs ``_backend``, ``init_kwargs`` and
    ``clean_up_tokenization_spaces``."""

    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str | list[str]:
        """Ids (list, tensor or array) to text; a 2-D input gives a list of texts."""
        ids = _to_python(token_ids)
        if isinstance(ids, Mapping):
            ids = _to_python(ids["input_ids"])
        if isinstance(ids, int):
            ids = [ids]
        _check_ids(ids, rows=True)
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
        _check_ids(ids)
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
