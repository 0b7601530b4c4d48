"""Tokenizers over SentencePiece model files, for checkpoints that ship no tokenizer.json:
Marian / OPUS-MT (``source.spm``, ``target.spm``, ``vocab.json``) and T5 folders with only
``spiece.model``.

Behaviour follows transformers' slow ``MarianTokenizer`` / ``T5Tokenizer``: the text is split
around special tokens, each part is cut into pieces by the SentencePiece model, pieces become
ids through the vocabulary, and ``</s>`` closes each sequence; decoding joins pieces back with
SentencePiece. The ``sentencepiece`` package is needed (``pip install lightpipe[sentencepiece]``)
and imported only when such a tokenizer is loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError, ModelNotFoundError
from ..jsonfile import read_json
from .batch_encoding import BatchEncoding
from .decode import clean_up_tokenization
from .special_tokens import _token_content
from .tokenizer import Tokenizer

SPIECE_UNDERLINE = "▁"


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("This tokenizer is a SentencePiece model (no tokenizer.json): install "
                          "the sentencepiece package with `pip install lightpipe[sentencepiece]`.") from None
    return sentencepiece


def _load_spm(path: Path):
    if not path.is_file():
        raise ModelNotFoundError(f"{path.name} is missing from {path.parent}: the tokenizer needs it.")
    processor = _sentencepiece().SentencePieceProcessor()
    processor.Load(str(path))
    return processor


class SentencePieceTokenizer:
    """What Marian and T5 share: special-token splitting, padding, truncation, tensors,
    decoding, saving. Subclasses define ``_piece_ids`` (text -> ids), ``_id_to_piece`` and
    ``_pieces_to_text``."""

    model_input_names = ["input_ids", "attention_mask"]
    tokenizer_class = ""
    files: tuple[str, ...] = ()

    def __init__(self, folder: Path, settings: dict, **kwargs: Any):
        settings = {**settings, **kwargs}
        self.folder = Path(folder)
        self.init_kwargs = settings
        self.name_or_path = str(folder)
        self.eos_token = _token_content(settings.get("eos_token", "</s>"))
        self.unk_token = _token_content(settings.get("unk_token", "<unk>"))
        self.pad_token = _token_content(settings.get("pad_token", "<pad>"))
        extra = settings.get("additional_special_tokens") or []
        self.additional_special_tokens = [_token_content(t) for t in extra]
        self.model_max_length = int(settings.get("model_max_length") or 512)
        self.padding_side = settings.get("padding_side", "right")
        self.truncation_side = settings.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(settings.get("clean_up_tokenization_spaces", False))

    # -- vocabulary
    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [self.eos_token, self.unk_token, self.pad_token, *self.additional_special_tokens]
        return list(dict.fromkeys(t for t in tokens if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        out = {"eos_token": self.eos_token, "unk_token": self.unk_token, "pad_token": self.pad_token}
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.eos_token)

    @property
    def pad_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.pad_token)

    @property
    def unk_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.unk_token)

    @property
    def bos_token_id(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self.get_vocab())

    @property
    def vocab_size(self) -> int:
        return len(self.get_vocab())

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self._id_to_piece(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_piece(int(i)) for i in ids if int(i) not in special]

    # -- encoding
    def _split_special(self, text: str) -> list[str]:
        """The text cut around special tokens: [text, special, text, ...]."""
        specials = sorted(self.all_special_tokens, key=len, reverse=True)
        pattern = "(" + "|".join(re.escape(t) for t in specials) + ")"
        return [part for part in re.split(pattern, text) if part]

    def _ids(self, text: str, target: bool = False) -> list[int]:
        ids: list[int] = []
        specials = set(self.all_special_tokens)
        for part in self._split_special(text):
            if part in specials:
                ids.append(self._token_to_id(part))
            else:
                ids += self._piece_ids(part, target)
        return ids

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        specials = set(self.all_special_tokens)
        tokens: list[str] = []
        for part in self._split_special(text):
            tokens += [part] if part in specials else self._pieces(part)
        return tokens

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        return self(text, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def __call__(self, text: str | Sequence[str] | None = None, text_pair: Any = None, *,
                 text_target: str | Sequence[str] | None = None, add_special_tokens: bool = True,
                 padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, return_tensors: str | None = None,
                 return_attention_mask: bool | None = None, padding_side: str | None = None,
                 pad_to_multiple_of: int | None = None, **kwargs: Any) -> BatchEncoding:
        """Tokenize source text(s) (and ``text_target`` as ``labels``), as the reference:
        ``</s>`` appended, optional padding / truncation / tensors."""
        if text_pair is not None:
            raise InputError(f"{type(self).__name__} takes single texts, not text pairs.")
        if text is None and text_target is None:
            raise InputError("Pass text (the source) and/or text_target.")
        options = dict(add_special_tokens=add_special_tokens, padding=padding,
                       truncation=truncation, max_length=max_length,
                       padding_side=padding_side or self.padding_side,
                       pad_to_multiple_of=pad_to_multiple_of)
        data: dict[str, Any] = {}
        batched = False
        if text is not None:
            rows, masks, batched = self._encode_rows(text, False, **options)
            data["input_ids"] = rows
            if return_attention_mask is not False:
                data["attention_mask"] = masks
        if text_target is not None:
            labels, _, target_batched = self._encode_rows(text_target, True, **options)
            data["labels"] = labels
            batched = batched or target_batched
        if not batched and return_tensors is None:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, None, tensor_type=return_tensors)

    def _encode_rows(self, texts, target: bool, *, add_special_tokens, padding, truncation,
                     max_length, padding_side, pad_to_multiple_of):
        batched = not isinstance(texts, str)
        if batched:
            if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
                raise InputTypeError(f"{type(self).__name__} takes a string or a list of strings.")
        items = list(texts) if batched else [texts]
        if max_length is not None and truncation is None and padding in (False, None, "do_not_pad"):
            truncation = True
        limit = None
        if truncation not in (None, False, "do_not_truncate"):
            limit = max_length if max_length is not None else self.model_max_length
        rows = []
        for item in items:
            ids = self._ids(item, target)
            if limit is not None:
                room = max(limit - (1 if add_special_tokens else 0), 0)
                if len(ids) > room:
                    ids = ids[:room] if self.truncation_side == "right" else ids[len(ids) - room:]
            if add_special_tokens:
                ids = self._close(ids)
            rows.append(ids)
        masks = [[1] * len(row) for row in rows]
        if padding in (True, "longest", "max_length"):
            if padding == "max_length":  # without max_length: model_max_length, as the reference
                longest = max_length or self.model_max_length
            else:
                longest = max(map(len, rows))
            if pad_to_multiple_of:
                longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
            pad = self.pad_token_id
            for index, row in enumerate(rows):
                extra = longest - len(row)
                if extra > 0:
                    if padding_side == "left":
                        rows[index] = [pad] * extra + row
                        masks[index] = [0] * extra + masks[index]
                    else:
                        rows[index] = row + [pad] * extra
                        masks[index] = masks[index] + [0] * extra
        return rows, masks, batched

    def _close(self, ids: list[int]) -> list[int]:
        """A sequence's ids with its special tokens: ``</s>`` appended."""
        return ids + [self.eos_token_id]

    # -- decoding
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str:
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        text = self._pieces_to_text(tokens, kwargs.get("use_source_tokenizer", False))
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(sequence, **kwargs) for sequence in sequences]

    # -- saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        folder = Path(save_directory)
        if folder.is_file():
            raise InputError(f"{folder} is a file; save_pretrained needs a folder.")
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.files:
            source = self.folder / name
            if source.is_file():
                if source.resolve() != (folder / name).resolve():
                    shutil.copy(source, folder / name)
                written.append(str(folder / name))
        config = {k: v for k, v in self.init_kwargs.items()
                  if k not in ("added_tokens_decoder", "name_or_path")}
        config.update(self.special_tokens_map, tokenizer_class=self.tokenizer_class,
                      model_max_length=self.model_max_length, padding_side=self.padding_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
        for name, content in (("tokenizer_config.json", config),
                              ("special_tokens_map.json", self.special_tokens_map)):
            (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
            written.append(str(folder / name))
        return tuple(written)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, "
                f"vocab_size={self.vocab_size}, model_max_length={self.model_max_length})")


class MarianTokenizer(SentencePieceTokenizer):
    """OPUS-MT's tokenizer: ``source.spm`` cuts the source text, ``target.spm`` the targets
    and the decoded output; ``vocab.json`` (and ``target_vocab.json`` with
    ``separate_vocabs``) maps pieces to ids. A leading ``>>xx<<`` language code is one token.
    (Like the reference without ``sacremoses`` installed, no Moses punctuation normalisation.)"""

    tokenizer_class = "MarianTokenizer"
    files = ("source.spm", "target.spm", "vocab.json", "target_vocab.json")

    def __init__(self, folder: Path, settings: dict, **kwargs: Any):
        super().__init__(folder, settings, **kwargs)
        folder = Path(folder)
        self.encoder = read_json(folder / "vocab.json")
        if not self.encoder:
            raise ModelNotFoundError(f"vocab.json is missing from {folder}: the Marian tokenizer needs it.")
        self.separate_vocabs = bool(self.init_kwargs.get("separate_vocabs", False))
        self.target_encoder = read_json(folder / "target_vocab.json") if self.separate_vocabs else self.encoder
        if self.unk_token not in self.encoder:
            raise InputError("<unk> token must be in the vocab")
        self.decoder = {v: k for k, v in self.target_encoder.items()}
        self.spm_source = _load_spm(folder / "source.spm")
        self.spm_target = _load_spm(folder / "target.spm")
        self.source_lang = self.init_kwargs.get("source_lang")
        self.target_lang = self.init_kwargs.get("target_lang")
        self.supported_language_codes = [k for k in self.encoder if k.startswith(">>") and k.endswith("<<")]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any) -> MarianTokenizer:
        folder = Path(folder)
        return cls(folder, read_json(folder / "tokenizer_config.json"), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> MarianTokenizer:
        from ..hub import resolve

        return cls.from_folder(resolve(name_or_path, weights=False))

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def _token_to_id(self, token: str) -> int:
        return self.encoder.get(token, self.encoder[self.unk_token])

    def _id_to_piece(self, index: int) -> str:
        return self.decoder.get(index, self.unk_token)

    def _pieces(self, text: str, target: bool = False) -> list[str]:
        code = []
        if not target and text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[:end + 2]], text[end + 2:]
        return code + (self.spm_target if target else self.spm_source).encode(text, out_type=str)

    def _piece_ids(self, text: str, target: bool = False) -> list[int]:
        encoder = self.target_encoder if target else self.encoder
        unk = encoder.get(self.unk_token, self.encoder[self.unk_token])
        return [encoder.get(piece, unk) for piece in self._pieces(text, target)]

    def _pieces_to_text(self, tokens: list[str], use_source: bool = False) -> str:
        model = self.spm_source if use_source else self.spm_target
        specials = set(self.all_special_tokens)
        out, current = "", []
        for token in tokens:
            if token in specials:
                out += model.decode_pieces(current) + token + " "
                current = []
            else:
                current.append(token)
        out += model.decode_pieces(current)
        return out.replace(SPIECE_UNDERLINE, " ").strip()


class T5Tokenizer(SentencePieceTokenizer):
    """T5's tokenizer. A folder with tokenizer.json loads as the generic (fast) Tokenizer;
    a folder with only ``spiece.model`` loads here: SentencePiece pieces and ids, then
    ``extra_ids`` sentinel tokens ``<extra_id_0>``... numbered down from the end of the
    vocabulary, ``</s>`` appended."""

    tokenizer_class = "T5Tokenizer"
    files = ("spiece.model",)
    default_extra_ids = 100

    def __init__(self, folder: Path, settings: dict, **kwargs: Any):
        super().__init__(folder, settings, **kwargs)
        self.sp_model = _load_spm(Path(folder) / self.files[0])
        self.extra_ids = int(self.init_kwargs.get("extra_ids", self.default_extra_ids))
        sentinels = [f"<extra_id_{i}>" for i in range(self.extra_ids)]
        known = set(self.additional_special_tokens)
        self.additional_special_tokens += [t for t in sentinels if t not in known]
        size = self.sp_model.get_piece_size()
        self.sentinel_ids = {f"<extra_id_{i}>": size + self.extra_ids - 1 - i
                             for i in range(self.extra_ids)}
        self.sentinel_tokens = {v: k for k, v in self.sentinel_ids.items()}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any):
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():  # the fast tokenizer: the generic class
            return Tokenizer.from_folder(folder, **kwargs)
        return cls(folder, read_json(folder / "tokenizer_config.json"), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        from ..hub import resolve

        return cls.from_folder(resolve(name_or_path, weights=False), **kwargs)

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.sp_model.get_piece_size())}
        vocab.update(self.sentinel_ids)
        return vocab

    def _token_to_id(self, token: str) -> int:
        if token in self.sentinel_ids:
            return self.sentinel_ids[token]
        return self.sp_model.piece_to_id(token)

    def _id_to_piece(self, index: int) -> str:
        if index in self.sentinel_tokens:
            return self.sentinel_tokens[index]
        if 0 <= index < self.sp_model.get_piece_size():
            return self.sp_model.id_to_piece(index)
        return self.unk_token

    def _pieces(self, text: str, target: bool = False) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _piece_ids(self, text: str, target: bool = False) -> list[int]:
        return self.sp_model.encode(text)

    def _pieces_to_text(self, tokens: list[str], use_source: bool = False) -> str:
        specials = set(self.all_special_tokens)
        out, current, previous_special = "", [], False
        for token in tokens:
            if token in specials:
                if not previous_special:
                    out += " "
                out += self.sp_model.decode(current) + token
                previous_special, current = True, []
            else:
                current.append(token)
                previous_special = False
        out += self.sp_model.decode(current)
        return out.strip()


__all__ = ["MarianTokenizer", "SentencePieceTokenizer", "T5Tokenizer"]
