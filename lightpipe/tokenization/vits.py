"""VITS / MMS-TTS's character tokenizer: a character vocabulary (vocab.json), optional
lower-casing and dropping of characters outside the vocabulary (``normalize``), and the blank
token (id 0) between characters (``add_blank``). Matches transformers' ``VitsTokenizer``.

Checkpoints that ask for ``phonemize`` need the ``phonemizer`` package and the espeak program
(kakao-enterprise/vits-*); ``is_uroman`` ones romanize non-Latin text with ``uroman`` when it is
installed (the reference warns and goes on without it, and so do we).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import MissingExtraError
from .batch_encoding import BatchEncoding
from .characters import CharacterTokenizer
from .special_tokens import _token_content

logger = logging.getLogger("lightpipe")
_NON_ROMAN = re.compile(r"[^\x00-\x7F]")


class VitsTokenizer(CharacterTokenizer):
    """``tok("Hello world")`` -> ``input_ids`` (blank, char, blank, char, ..., blank) and
    ``attention_mask``; ``tok(texts, padding=True, return_tensors="pt")`` pads on the right."""

    kind = "VITS"

    def __init__(self, vocab: dict[str, int], settings: dict | None = None, name_or_path: str = ""):
        settings = dict(settings or {})
        self.name_or_path = name_or_path
        self.init_kwargs = settings
        self.encoder = dict(vocab)
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.language = settings.get("language")
        self.add_blank = bool(settings.get("add_blank", True))
        self.normalize = bool(settings.get("normalize", True))
        self.phonemize = bool(settings.get("phonemize", True))
        self.is_uroman = bool(settings.get("is_uroman", False))
        self.pad_token = _token_content(settings.get("pad_token", "<pad>"))
        self.unk_token = _token_content(settings.get("unk_token", "<unk>"))
        self.model_max_length = settings.get("model_max_length", int(1e30))
        # Added tokens: the special tokens and added_tokens_decoder's entries (kept whole).
        self.added_tokens_encoder: dict[str, int] = {}
        for index, entry in (settings.get("added_tokens_decoder") or {}).items():
            self.added_tokens_encoder[_token_content(entry)] = int(index)
        for token in (self.unk_token, self.pad_token):  # the reference's order
            if token and token not in self.added_tokens_encoder:
                # a special token outside vocab.json takes the next free id, as the reference
                known = self.encoder.get(token)
                self.added_tokens_encoder[token] = known if known is not None else \
                    max([*self.encoder.values(), *self.added_tokens_encoder.values(), -1]) + 1
        self.decoder.update({i: t for t, i in self.added_tokens_encoder.items()})
        added = sorted(self.added_tokens_encoder, key=len, reverse=True)
        self._added_split = re.compile("(" + "|".join(map(re.escape, added)) + ")") if added else None
        # Normalisation keeps vocabulary entries as written (the first that matches, in the
        # vocabulary's order and then the added tokens', as the reference), lower-cases the rest.
        self._entries: dict[str, list[str]] = {}  # by first character, in that order
        for entry in dict.fromkeys([*self.encoder, *self.added_tokens_encoder]):
            if entry:
                self._entries.setdefault(entry[0], []).append(entry)
        if self.phonemize:
            self._phonemizer()  # refuse now, not at the first call

    # -- vocabulary
    def __len__(self) -> int:
        return len(set(self.encoder) | set(self.added_tokens_encoder))

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    def _id(self, token: str | None) -> int | None:
        if token is None:
            return None
        return self.added_tokens_encoder.get(token, self.encoder.get(token))

    @property
    def all_special_tokens(self) -> list[str]:
        return [t for t in (self.pad_token, self.unk_token) if t]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            found = self._id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self.decoder.get(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.decoder.get(int(i)) for i in ids if int(i) not in special]

    # -- text preparation
    def normalize_text(self, text: str) -> str:
        """Lower-case the text, leaving any vocabulary entry written in it as it is."""
        out, i = [], 0
        while i < len(text):
            for entry in self._entries.get(text[i], ()):
                if text.startswith(entry, i):
                    out.append(entry)
                    i += len(entry)
                    break
            else:
                out.append(text[i].lower())
                i += 1
        return "".join(out)

    def prepare_for_tokenization(self, text: str, normalize: bool | None = None) -> str:
        normalize = self.normalize if normalize is None else normalize
        if normalize:
            text = self.normalize_text(text)
        if self.language == "ron":
            text = text.replace("ț", "ţ")
        if self.is_uroman and _NON_ROMAN.search(text):
            text = _romanize(text)
        if self.phonemize:
            text = re.sub(r"\s+", " ", self._phonemizer().phonemize(
                text, language="en-us", backend="espeak", strip=True, preserve_punctuation=True,
                with_stress=True))
        elif normalize:  # drop what the vocabulary lacks (punctuation)
            text = "".join(char for char in text if char in self.encoder).strip()
        return text

    def _phonemizer(self):
        try:
            import phonemizer
        except ImportError:
            raise MissingExtraError(
                "This VITS tokenizer converts text to phonemes (phonemize=true in "
                "tokenizer_config.json), which needs the phonemizer package and the espeak-ng "
                "program: pip install phonemizer and install espeak-ng, or use a checkpoint "
                "without phonemes such as facebook/mms-tts-eng.") from None
        return phonemizer

    def tokenize(self, text: str, normalize: bool | None = None, **kwargs: Any) -> list[str]:
        text = self.prepare_for_tokenization(text, normalize)
        if not text:
            return []
        pieces = self._added_split.split(text) if self._added_split else [text]
        tokens: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2:  # an added token, whole and without blanks around it
                tokens.append(piece)
            elif piece:  # each stretch between added tokens gets its own blanks
                tokens.extend(self._with_blanks(list(piece)))
        return tokens

    def _with_blanks(self, chars: list[str]) -> list[str]:
        if not self.add_blank:
            return chars
        spaced = [self.decoder.get(0)] * (2 * len(chars) + 1)
        spaced[1::2] = chars
        return spaced

    def __call__(self, text: str | list[str], padding: Any = False, truncation: Any = None,
                 max_length: int | None = None, return_tensors: Any = None,
                 return_attention_mask: bool = True, normalize: bool | None = None,
                 **kwargs: Any) -> BatchEncoding:
        return self.encode_batch(text, padding, truncation, max_length, return_tensors,
                                 return_attention_mask, normalize=normalize)

    # -- decoding
    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        if self.add_blank and len(tokens) > 1:
            tokens = tokens[1::2]
        return "".join(t for t in tokens if t is not None)

    def decode(self, token_ids: Any, skip_special_tokens: bool = False, **kwargs: Any) -> str:
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        return self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        return [self.decode(row, **kwargs) for row in rows]


def _romanize(text: str) -> str:
    try:
        import uroman
    except ImportError:
        logger.warning("The text has non-Roman characters and this checkpoint expects romanized "
                       "input (is_uroman): pip install uroman to romanize it automatically, or "
                       "romanize it yourself. Going on with the text as it is.")
        return text
    return uroman.Uroman().romanize_string(text)
