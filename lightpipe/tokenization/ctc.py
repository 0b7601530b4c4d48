"""Wav2Vec2's CTC tokenizer: a character vocabulary (vocab.json), "|" between words, and the
CTC collapse (repeats merged, blanks dropped) when decoding, with character and word offsets
in frames for timestamps. Matches transformers' ``Wav2Vec2CTCTokenizer``."""

from __future__ import annotations

import itertools
import re
from typing import Any

from ..errors import ModelNotFoundError
from .batch_encoding import BatchEncoding
from .characters import CharacterTokenizer
from .decode import clean_up_tokenization
from .special_tokens import _token_content


class Wav2Vec2CTCTokenizer(CharacterTokenizer):
    """``tok("HELLO WORLD")`` -> ids; ``tok.decode(frame_ids)`` -> collapsed text;
    ``decode(ids, output_char_offsets=True)`` / ``output_word_offsets=True`` -> a dict with
    ``text`` and offsets (in frames)."""

    kind = "CTC"

    def __init__(self, vocab: dict, settings: dict | None = None, name_or_path: str = ""):
        settings = dict(settings or {})
        self.name_or_path = name_or_path
        self.init_kwargs = settings
        self.target_lang = settings.get("target_lang")
        self.vocab = vocab
        self.encoder = vocab[self.target_lang] if self.target_lang else vocab
        if not all(isinstance(v, int) for v in self.encoder.values()):
            raise ModelNotFoundError("vocab.json is a nested multi-lingual vocabulary: pass "
                                     "target_lang= to pick one language.")
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.bos_token = _token_content(settings.get("bos_token", "<s>"))
        self.eos_token = _token_content(settings.get("eos_token", "</s>"))
        self.unk_token = _token_content(settings.get("unk_token", "<unk>"))
        self.pad_token = _token_content(settings.get("pad_token", "<pad>"))
        self.word_delimiter_token = _token_content(settings.get("word_delimiter_token", "|"))
        self.replace_word_delimiter_char = settings.get("replace_word_delimiter_char", " ")
        self.do_lower_case = bool(settings.get("do_lower_case", False))
        self.clean_up_tokenization_spaces = bool(settings.get("clean_up_tokenization_spaces", False))
        self.model_max_length = settings.get("model_max_length", int(1e30))
        # Multi-character entries ("<pad>", "<s>") are matched whole before splitting chars.
        long_tokens = sorted((t for t in self.encoder if len(t) > 1), key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in long_tokens) + ")") \
            if long_tokens else None

    # -- vocabulary
    def __len__(self) -> int:
        return len(self.decoder)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.encoder.get(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def word_delimiter_token_id(self) -> int | None:
        return self._id(self.word_delimiter_token)

    @property
    def all_special_tokens(self) -> list[str]:
        return [t for t in (self.bos_token, self.eos_token, self.unk_token, self.pad_token) if t]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.encoder.get(tokens, self.unk_token_id)
        return [self.encoder.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self.decoder.get(ids, self.unk_token)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.decoder.get(int(i), self.unk_token) for i in ids if int(i) not in special]

    # -- encoding
    def tokenize(self, text: str) -> list[str]:
        if self.do_lower_case:
            text = text.upper()
        pieces = self._split.split(text) if self._split else [text]
        tokens = []
        for index, piece in enumerate(pieces):
            if index % 2:  # a whole multi-character token
                tokens.append(piece)
            else:
                tokens.extend(piece.replace(" ", self.word_delimiter_token))
        return tokens

    def __call__(self, text: str | list[str], padding: Any = False, return_tensors: Any = None,
                 return_attention_mask: bool = True, truncation: Any = None,
                 max_length: int | None = None, **kwargs: Any) -> BatchEncoding:
        return self.encode_batch(text, padding, truncation, max_length, return_tensors,
                                 return_attention_mask)

    # -- decoding
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, output_char_offsets: bool = False,
               output_word_offsets: bool = False, group_tokens: bool = True,
               spaces_between_special_tokens: bool = False, **kwargs: Any):
        ids = _ids(token_ids)
        tokens = [t for t in self.convert_ids_to_tokens(ids)
                  if not (skip_special_tokens and t in self.all_special_tokens
                          and t != self.word_delimiter_token)]
        result = self._tokens_to_string(tokens, group_tokens, spaces_between_special_tokens,
                                        output_char_offsets, output_word_offsets)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        if clean:
            result["text"] = clean_up_tokenization(result["text"])
        if output_char_offsets or output_word_offsets:
            return result
        return result["text"]

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list:
        rows = _ids(sequences)
        if rows and not isinstance(rows[0], list):
            rows = [rows]
        return [self.decode(row, **kwargs) for row in rows]

    def _tokens_to_string(self, tokens: list[str], group: bool, spaced: bool, char_offsets: bool,
                          word_offsets: bool) -> dict:
        if not tokens:
            return {"text": "", "char_offsets": [] if char_offsets else None,
                    "word_offsets": [] if word_offsets else None}
        if group:  # CTC: a token held over several frames is one emission
            groups = [(token, len(list(run))) for token, run in itertools.groupby(tokens)]
        else:
            groups = [(token, 1) for token in tokens]
        chars = [self.replace_word_delimiter_char if token == self.word_delimiter_token else token
                 for token, _ in groups if token != self.pad_token]
        out: dict[str, Any] = {"text": ("" if not spaced else " ").join(chars).strip(),
                               "char_offsets": None, "word_offsets": None}
        if self.do_lower_case:
            out["text"] = out["text"].lower()
        if char_offsets or word_offsets:
            offsets, end = [], 0
            for token, repeats in groups:
                start, end = end, end + repeats
                if token != self.pad_token:
                    offsets.append({"char": None, "start_offset": start, "end_offset": end})
            for offset, char in zip(offsets, chars):
                offset["char"] = char
            if word_offsets:
                out["word_offsets"] = word_offsets_from_chars(offsets, self.replace_word_delimiter_char)
            if char_offsets:
                out["char_offsets"] = offsets
        return out

    def _get_word_offsets(self, offsets: list[dict], delimiter: str = " ") -> list[dict]:
        return word_offsets_from_chars(offsets, delimiter)

    def saved_vocab(self) -> dict:
        return self.vocab  # the nested multi-lingual one when it was


def word_offsets_from_chars(offsets: list[dict], delimiter: str = " ") -> list[dict]:
    """Character offsets -> word offsets: a word runs between delimiters."""
    words: list[dict] = []
    word, start, end, last = "", 0, 0, "space"
    for offset in offsets:
        state = "space" if offset["char"] == delimiter else "word"
        if state == last:
            end = offset["end_offset"]
            word += offset["char"]
        elif state == "space":
            words.append({"word": word, "start_offset": start, "end_offset": end})
        else:
            word, start, end = offset["char"], offset["start_offset"], offset["end_offset"]
        last = state
    if last == "word":
        words.append({"word": word, "start_offset": start, "end_offset": end})
    return words


def _ids(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, int):
        return [value]
    return [_ids(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else int(v)
            for v in value]
