"""SpeechT5's tokenizer (microsoft/speecht5_tts): a character-level SentencePiece model
(``spm_char.model``); each text becomes ``▁`` and its characters, ``</s>`` appended. As
transformers' ``SpeechT5Tokenizer``; the T5 SentencePiece reader with no sentinel tokens and
``<s>`` among the special tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .special_tokens import _token_content
from .spm import T5Tokenizer


class SpeechT5Tokenizer(T5Tokenizer):
    """``tokenizer(text)``: SentencePiece characters -> ids, ``</s>`` appended.

    ``normalize=True`` (the reference spells numbers out in English first) is not built: a
    text with digits is refused then, with the fix (write the numbers as words)."""

    tokenizer_class = "SpeechT5Tokenizer"
    files = ("spm_char.model",)
    default_extra_ids = 0

    def __init__(self, folder: Path, settings: dict, **kwargs: Any):
        super().__init__(folder, settings, **kwargs)
        self.bos_token = _token_content(self.init_kwargs.get("bos_token", "<s>"))
        self.mask_token = _token_content(self.init_kwargs.get("mask_token"))
        self.normalize = bool(self.init_kwargs.get("normalize", False))
        # Tokens added after the SentencePiece vocabulary (microsoft/speecht5_tts: <mask>,
        # <ctc_blank>), each one id, never cut into characters.
        size = self.sp_model.get_piece_size()
        self.added_tokens = {}
        for index, entry in (self.init_kwargs.get("added_tokens_decoder") or {}).items():
            content = _token_content(entry)
            if int(index) >= size and content:
                self.added_tokens[content] = int(index)
        self.added_ids = {v: k for k, v in self.added_tokens.items()}

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token,
                  self.mask_token, *self.additional_special_tokens]
        return list(dict.fromkeys(t for t in tokens if t is not None))

    def _split_special(self, text: str) -> list[str]:
        added = [t for t in self.added_tokens if t not in self.all_special_tokens]
        if not added:
            return super()._split_special(text)
        pattern = "(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")"
        return [piece for part in super()._split_special(text)
                for piece in ([part] if part in self.all_special_tokens else re.split(pattern, part))
                if piece]

    def _whole(self, part: str) -> bool:
        """A part that is one token: a special or an added token."""
        return part in self.added_tokens or part in self.all_special_tokens

    def _ids(self, text: str, target: bool = False) -> list[int]:
        return [i for part in self._split_special(text)
                for i in ([self._token_to_id(part)] if self._whole(part)
                          else self._piece_ids(part, target))]

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [piece for part in self._split_special(text)
                for piece in ([part] if self._whole(part) else self._pieces(part))]

    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> tuple[str, ...]:
        written = super().save_pretrained(save_directory, **kwargs)
        if self.added_tokens:  # keep the added tokens (the base writes no added_tokens_decoder)
            path = Path(save_directory) / "tokenizer_config.json"
            config = json.loads(path.read_text(encoding="utf-8"))
            config["added_tokens_decoder"] = {
                str(i): {"content": t, "special": t in self.all_special_tokens, "lstrip": False,
                         "rstrip": False, "normalized": False, "single_word": False}
                for t, i in self.added_tokens.items()}
            path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return written

    def get_vocab(self) -> dict[str, int]:
        return {**super().get_vocab(), **self.added_tokens}

    def _token_to_id(self, token: str) -> int:
        return self.added_tokens[token] if token in self.added_tokens else super()._token_to_id(token)

    def _id_to_piece(self, index: int) -> str:
        return self.added_ids[index] if index in self.added_ids else super()._id_to_piece(index)

    @property
    def bos_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.bos_token) if self.bos_token else None

    @property
    def mask_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.mask_token) if self.mask_token else None

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        extra = {"mask_token": self.mask_token} if self.mask_token else {}
        return {"bos_token": self.bos_token, **super().special_tokens_map, **extra}

    def __call__(self, text: Any = None, *args: Any, normalize: bool | None = None, **kwargs: Any):
        if self.normalize if normalize is None else normalize:
            texts = [text] if isinstance(text, str) else list(text or [])
            if any(isinstance(t, str) and re.search(r"\d", t) for t in texts):
                raise InputError(
                    "SpeechT5Tokenizer's normalize=True (numbers spelt out in English) is not "
                    "supported by lightpipe: write the numbers as words, or pass normalize=False.")
        return super().__call__(text, *args, **kwargs)


__all__ = ["SpeechT5Tokenizer"]
