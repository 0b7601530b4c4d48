"""Stopping criteria (each: ``(input_ids, scores) -> done``, a bool per row) and
``make_stopping_criteria``: the list a generate() call checks after every token."""

from __future__ import annotations

import time
from typing import Any

import torch

from .cancel import CancelCriteria, current_cancel_event
from .processors import merge_custom


class StoppingCriteriaList(list):
    """A row is done when any criterion says so."""

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion in self:
            done = done | criterion(input_ids, scores, **kwargs)
        return done


class MaxLengthCriteria:
    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, input_ids, scores=None, **kwargs):
        done = input_ids.shape[-1] >= self.max_length
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class MaxTimeCriteria:
    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids, scores=None, **kwargs):
        done = time.time() - self.initial_timestamp > self.max_time
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class EosTokenCriteria:
    def __init__(self, eos_token_id):
        self.eos_token_id = torch.as_tensor(eos_token_id).reshape(-1)

    def __call__(self, input_ids, scores=None, **kwargs):
        return torch.isin(input_ids[:, -1], self.eos_token_id.to(input_ids.device))


class StopStringCriteria:
    """Stop a row once one of ``stop_strings`` appears in its text, as the reference decides it:
    the occurrence must reach into the last token (one complete before it was already checked
    at an earlier step). Tokens are compared as the bytes they stand for, so a string split
    across tokens, or overhanging either end of them, matches."""

    def __init__(self, tokenizer: Any, stop_strings: str | list[str]):
        self.stop_strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {stop_strings!r}.")
        self.targets = [s.encode("utf-8") for s in self.stop_strings]
        self.tokenizer = tokenizer
        self._bytes: dict[int, bytes] = {}
        self._byte_level = _decoder_is_byte_level(tokenizer)
        self._prefix_tokens = None

    def _token_bytes(self, token_id: int) -> bytes:
        cached = self._bytes.get(token_id)
        if cached is None:
            cached = self._bytes[token_id] = self._convert(token_id)
        return cached

    def _convert(self, token_id: int) -> bytes:
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token is None:
            return b""
        if self._byte_level:
            table = _unicode_to_byte()
            if all(char in table for char in token):
                return bytes(table[char] for char in token)
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            try:
                return bytes([int(token[3:5], 16)])
            except ValueError:
                pass
        # Decode after a fixed prefix, then drop it: keeps a word-start marker's space.
        if self._prefix_tokens is None:
            ids = self.tokenizer("abcdef", add_special_tokens=False)["input_ids"]
            self._prefix_tokens = self.tokenizer.convert_ids_to_tokens(ids)
        text = self.tokenizer.convert_tokens_to_string(list(self._prefix_tokens) + [token])
        return text[text.find("abcdef") + 6:].encode("utf-8")

    def __call__(self, input_ids, scores=None, **kwargs):
        longest = max(len(t) for t in self.targets)
        done = []
        for row in input_ids[:, -(longest + 1):].tolist():
            pieces = [self._token_bytes(t) for t in row]
            before = b"".join(pieces[:-1])
            text, start = before + pieces[-1], len(before)
            done.append(any(_ends_across(text, start, target) for target in self.targets))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _ends_across(text: bytes, start: int, target: bytes) -> bool:
    """Whether ``target`` occurs in ``text`` ending after ``start`` (in the last token)."""
    return text.find(target, max(0, start - len(target) + 1)) != -1


def _decoder_is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return False
    if type(decoder).__name__ == "ByteLevel":
        return True
    state = getattr(decoder, "__getstate__", lambda: None)()
    return isinstance(state, (str, bytes)) and b'"ByteLevel"' in (state.encode() if isinstance(state, str) else state)


_BYTE_TABLE: dict[str, int] = {}


def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: printable character -> byte."""
    if not _BYTE_TABLE:
        kept = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
            list(range(ord("®"), ord("ÿ") + 1))
        extra = 0
        for byte in range(256):
            if byte in kept:
                _BYTE_TABLE[chr(byte)] = byte
            else:
                _BYTE_TABLE[chr(256 + extra)] = byte
                extra += 1
    return _BYTE_TABLE


def make_stopping_criteria(config: Any, eos: torch.Tensor | None, tokenizer: Any,
                           custom: list | None) -> StoppingCriteriaList:
    """The criteria of a call: the length, the time, stop strings, EOS, then the caller's own
    (replacing a built-in one of the same type)."""
    criteria = StoppingCriteriaList([MaxLengthCriteria(config.max_length)])
    if config.max_time is not None:
        criteria.append(MaxTimeCriteria(config.max_time))
    if config.stop_strings is not None:
        if tokenizer is None:
            raise ValueError("There are one or more stop strings, either in the arguments to "
                             "`generate` or in the model's generation config, but we could not "
                             "locate a tokenizer. When generating with stop strings, you must "
                             "pass the model's tokenizer to the `tokenizer` argument of `generate`.")
        criteria.append(StopStringCriteria(tokenizer, config.stop_strings))
    if eos is not None:
        criteria.append(EosTokenCriteria(eos))
    event = current_cancel_event()  # a server's timeout or disconnect (see cancel.py)
    if event is not None:
        criteria.append(CancelCriteria(event))
    return merge_custom(criteria, custom or [])
