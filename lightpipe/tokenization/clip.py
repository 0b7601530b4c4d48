"""CLIP's tokenizer: the generic tokenizer over CLIP's tokenizer.json, with CLIP's decoding.

Encoding is the generic one (tokenizer.json holds CLIP's normaliser, pre-tokenizer and BPE with
the ``</w>`` end-of-word suffix). Decoding follows transformers' ``CLIPTokenizer``: byte-level
decoding, then every ``</w>`` becomes a space and the ends are stripped.
"""

from __future__ import annotations

from typing import Any

from .tokenizer import Tokenizer


class CLIPTokenizer(Tokenizer):
    @classmethod
    def from_folder(cls, folder, **kwargs: Any) -> "CLIPTokenizer":
        from tokenizers import decoders

        tokenizer = super().from_folder(folder, **kwargs)
        tokenizer._backend.decoder = decoders.ByteLevel()
        return tokenizer

    def _decode(self, ids: list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        suffix = getattr(self._backend.model, "end_of_word_suffix", None) or "</w>"
        return text.replace(suffix, " ").strip()
