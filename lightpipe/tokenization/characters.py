"""What the character-vocabulary tokenizers share (Wav2Vec2's CTC tokenizer and VITS's): a
vocab.json of single characters and a few multi-character special tokens, loading from a folder,
batching with right padding, and saving the folder back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputTypeError, ModelNotFoundError
from ..jsonfile import read_json, save_vocab_tokenizer
from .auto import AutoTokenizer
from .batch_encoding import BatchEncoding


class CharacterTokenizer:
    """Subclasses set ``kind`` (for messages), build ``encoder``/``decoder`` in ``__init__(vocab,
    settings, name_or_path)`` and define ``tokenize``, ``_id`` and ``all_special_tokens``."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"
    is_fast = False
    kind = "character"

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any):
        folder = Path(folder)
        vocab_file = folder / "vocab.json"
        if not vocab_file.is_file():
            raise ModelNotFoundError(f"{folder} has no vocab.json: the {cls.kind} tokenizer needs "
                                     "its character vocabulary.")
        settings = {**read_json(folder / "special_tokens_map.json"),
                    **read_json(folder / "tokenizer_config.json"), **kwargs}
        return cls(read_json(vocab_file), settings, name_or_path=str(folder))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def all_special_ids(self) -> list[int]:
        return [i for i in (self._id(t) for t in self.all_special_tokens) if i is not None]

    def encode_batch(self, text: Any, padding: Any = False, truncation: Any = None,
                     max_length: int | None = None, return_tensors: Any = None,
                     return_attention_mask: bool = True, **tokenize_kwargs: Any) -> BatchEncoding:
        """``__call__``'s body: ids of one text or a list, truncated and right-padded."""
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise InputTypeError(f"The {self.kind} tokenizer takes a string or a list of strings, "
                                 f"not {type(text).__name__}.")
        rows = [self.convert_tokens_to_ids(self.tokenize(t, **tokenize_kwargs)) for t in texts]
        if truncation and max_length is not None:
            rows = [r[:max_length] for r in rows]
        masks = [[1] * len(r) for r in rows]
        if padding or return_tensors:
            longest = max((len(r) for r in rows), default=0)
            if padding == "max_length" and max_length is not None:
                longest = max(longest, max_length)
            pad = self.pad_token_id or 0
            masks = [m + [0] * (longest - len(m)) for m in masks]
            rows = [r + [pad] * (longest - len(r)) for r in rows]
        data = {"input_ids": rows[0] if single else rows}
        if return_attention_mask:
            data["attention_mask"] = masks[0] if single else masks
        return BatchEncoding(data, tensor_type=return_tensors)

    def saved_vocab(self) -> dict:
        return self.encoder

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        return save_vocab_tokenizer(folder, self.saved_vocab(), self.init_kwargs, type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size})"
