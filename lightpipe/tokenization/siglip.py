"""SigLIP's tokenizer: a SentencePiece model (``spiece.model``) behind text canonicalisation.

Follows transformers' ``SiglipTokenizer`` (a slow tokenizer only, even where a folder holds a
tokenizer.json): each text is lower-cased (``do_lower_case``), stripped of ASCII punctuation and
of runs of whitespace, then cut into pieces; ``</s>`` closes each sequence and also pads. The
special tokens ``</s>`` / ``<unk>`` / pad eat the whitespace on both sides of them.
SigLIP 2's tokenizer (``Siglip2Tokenizer``) is Gemma's tokenizer.json with the text lower-cased.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any

from ..jsonfile import read_json
from .spm import SPIECE_UNDERLINE, SentencePieceTokenizer, T5Tokenizer, _load_spm
from .tokenizer import Tokenizer

_PUNCTUATION = str.maketrans("", "", string.punctuation)


class SiglipTokenizer(T5Tokenizer):
    """``tokenizer(texts, padding="max_length", max_length=64)`` as SigLIP was trained."""

    tokenizer_class = "SiglipTokenizer"

    def __init__(self, folder: Path, settings: dict, **kwargs: Any):
        settings = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>",
                    "model_max_length": 64, **settings}
        SentencePieceTokenizer.__init__(self, folder, settings, **kwargs)
        self.sp_model = _load_spm(Path(folder) / "spiece.model")
        self.do_lower_case = bool(self.init_kwargs.get("do_lower_case", True))
        self.extra_ids, self.sentinel_ids, self.sentinel_tokens = 0, {}, {}  # no T5 sentinels
        self._unk_length = len(self.sp_model.encode(self.unk_token, out_type=str))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any) -> SiglipTokenizer:
        folder = Path(folder)
        return cls(folder, read_json(folder / "tokenizer_config.json"), **kwargs)

    def canonicalize_text(self, text: str) -> str:
        if self.do_lower_case:
            text = text.lower()
        return re.sub(r"\s+", " ", text.translate(_PUNCTUATION)).strip()

    def _chunks(self, text: str) -> list[str]:
        """The text split around special tokens; the whitespace beside those eaten."""
        parts = self._split_special(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "))
        specials = set(self.all_special_tokens)
        for index, part in enumerate(parts):
            if part in specials:
                if index + 1 < len(parts) and parts[index + 1] not in specials:
                    parts[index + 1] = parts[index + 1].lstrip()
                if index > 0 and parts[index - 1] not in specials:
                    parts[index - 1] = parts[index - 1].rstrip()
        return [part for part in parts if part]

    def _pieces(self, text: str, target: bool = False) -> list[str]:
        # The unknown token first, then cut off: SentencePiece then adds no prefix of its own.
        pieces = self.sp_model.encode(self.unk_token + self.canonicalize_text(text), out_type=str)
        return pieces[self._unk_length:] if len(pieces) >= self._unk_length else pieces

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        specials = set(self.all_special_tokens)
        tokens: list[str] = []
        for part in self._chunks(text):
            tokens += [part] if part in specials else self._pieces(part)
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in specials:
            tokens = tokens[1:]
        return tokens

    def _close(self, ids: list[int]) -> list[int]:
        eos = self.eos_token_id
        return ids if ids and ids[-1] == eos else ids + [eos]  # no second </s>, as the reference

    def _ids(self, text: str, target: bool = False) -> list[int]:
        return [self._token_to_id(token) for token in self.tokenize(text)]


class Siglip2Tokenizer(Tokenizer):
    """SigLIP 2's tokenizer: Gemma's tokenizer.json with the text lower-cased first, as
    transformers 5's ``Siglip2Tokenizer`` (Hub folders name ``GemmaTokenizer`` and their
    tokenizer.json does not lower-case; folders it saved do already)."""

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any) -> Tokenizer:
        from tokenizers import normalizers

        tokenizer = Tokenizer.from_folder(folder, **kwargs)
        backend = tokenizer.backend_tokenizer
        current = backend.normalizer
        parts = [] if current is None else \
            list(current) if isinstance(current, normalizers.Sequence) else [current]
        if not parts or not isinstance(parts[0], normalizers.Lowercase):
            backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), *parts])
        return tokenizer


__all__ = ["Siglip2Tokenizer", "SiglipTokenizer"]
