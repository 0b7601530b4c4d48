"""The arguments of a tokenizer call: the text inputs as backend batch items, and the padding,
truncation and side options checked and named the way transformers names them."""

from __future__ import annotations

from typing import Any

from ..errors import InputError, InputTypeError

# transformers' sentinels: "no limit" for model_max_length, and the threshold above which a
# model_max_length is treated as unset when padding/truncating to it.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


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
