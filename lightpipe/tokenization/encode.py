"""Encoding text with padding and truncation: the tokenizer call, ``encode``, ``tokenize`` and
``pad`` (padding already encoded inputs), as transformers' fast tokenizer does them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError, InputTypeError, LightpipeError
from .batch_encoding import (BatchEncoding, _check_tensor_type, _contains_tensor, _is_torch,
                             _to_python)
from .inputs import (LARGE_INTEGER, PADDING_STRATEGIES, TRUNCATION_STRATEGIES, _batch_inputs,
                     _check_side, _strategy_name)

logger = logging.getLogger(__name__)


class EncodeMixin:
    """The encoding part of :class:`Tokenizer`. Needs ``_backend``, ``_lock``, the special
    tokens, ``model_input_names``, ``model_max_length`` and the padding / truncation sides."""

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
