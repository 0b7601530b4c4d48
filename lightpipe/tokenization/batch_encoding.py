"""``BatchEncoding``, the output of a tokenizer call, and the conversions it needs: lists to
``"pt"`` tensors or ``"np"`` arrays, tensors back to Python lists, alignment spans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import InputError
from ..keyed import KeyedDict


class CharSpan(NamedTuple):
    """A span of characters in the original string: [start, end)."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """A span of tokens in an encoding: [start, end)."""

    start: int
    end: int


class BatchEncoding(KeyedDict):
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


def _contains_tensor(value: Any) -> bool:
    if _is_tensor_like(value):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and _is_tensor_like(value[0])


def _is_torch(value: Any) -> bool:
    first = value[0] if isinstance(value, (list, tuple)) else value
    return type(first).__module__.startswith("torch")
