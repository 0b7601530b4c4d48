"""Tokenizers whose transformers 5 class keeps only the vocabulary of tokenizer.json and
rebuilds the text rules from tokenizer_config.json: DeBERTa-v2/v3 and MPNet.

Files saved by transformers 4 hold other rules (DeBERTa's ``Strip`` and precompiled NFKC
normaliser; MPNet's template post-processor with untrimmed offsets around ``<mask>``), so
reading them as they are gives other ids or offsets than the reference. Each class here loads
the folder as the generic tokenizer does, then sets the rules its transformers class sets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .backend import _load_backend
from .spm import _load_spm
from .tokenizer import Tokenizer

_SPACE = "\u2581"  # SentencePiece's word-start mark


class RebuiltTokenizer(Tokenizer):
    """The generic tokenizer, then ``rebuild(backend)`` from the loaded settings."""

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any) -> Tokenizer:
        tokenizer = super().from_folder(folder, **kwargs)
        tokenizer.rebuild(tokenizer.backend_tokenizer, tokenizer.init_kwargs)
        return tokenizer

    def rebuild(self, backend: Any, settings: dict) -> None:
        raise NotImplementedError


class DebertaV2Tokenizer(RebuiltTokenizer):
    """Runs of whitespace, newlines and tabs become one space, NFC, the right end stripped
    (lowercased first with ``do_lower_case``); punctuation split off with ``split_by_punct``;
    ``▁`` before every word (the first only without ``add_prefix_space``);
    ``[CLS] A [SEP] (B [SEP])`` with type ids. A folder with only the SentencePiece model
    (``spm.model``, as microsoft/deberta-v3-*) is read for its pieces and scores, as
    transformers 5 converts it (the ``sentencepiece`` package is needed)."""

    @staticmethod
    def load_backend(folder: Path, family: str, settings: dict) -> Any:
        path = folder / "spm.model"
        if (folder / "tokenizer.json").is_file() or not path.is_file():
            return _load_backend(folder, family, settings)
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers.models import Unigram

        model = _load_spm(path)
        pieces = [(model.id_to_piece(i), model.get_score(i)) for i in range(model.get_piece_size())]
        return RustTokenizer(Unigram(pieces, unk_id=model.unk_id(), byte_fallback=False))

    def rebuild(self, backend: Any, settings: dict) -> None:
        from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

        steps = [normalizers.Lowercase()] if settings.get("do_lower_case", False) else []
        steps += [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
                  normalizers.Strip(left=False, right=True)]
        backend.normalizer = normalizers.Sequence(steps)
        scheme = "always" if settings.get("add_prefix_space", True) else "first"
        splits = ([pre_tokenizers.Punctuation(behavior="isolated")]
                  if settings.get("split_by_punct", False) else [])
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [*splits, pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme=scheme)])
        backend.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme=scheme)
        cls_token, sep_token = self.cls_token, self.sep_token
        if cls_token is not None and sep_token is not None:
            backend.post_processor = processors.TemplateProcessing(
                single=f"{cls_token}:0 $A:0 {sep_token}:0",
                pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
                special_tokens=[(cls_token, self.cls_token_id), (sep_token, self.sep_token_id)])


class MPNetTokenizer(RebuiltTokenizer):
    """BERT's WordPiece rules (its normaliser is rebuilt from the config as for every
    WordPiece class, see ``classes``) with RoBERTa's ``<s> A </s></s> B </s>``, offsets
    trimmed; no ``token_type_ids``."""

    def rebuild(self, backend: Any, settings: dict) -> None:
        from tokenizers import decoders, pre_tokenizers, processors

        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        cls_token, sep_token = self.cls_token, self.sep_token
        if cls_token is not None and sep_token is not None:
            backend.post_processor = processors.RobertaProcessing(
                (sep_token, self.sep_token_id), (cls_token, self.cls_token_id),
                trim_offsets=True, add_prefix_space=False)
