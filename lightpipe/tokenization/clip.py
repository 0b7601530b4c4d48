"""CLIP's tokenizer: the generic tokenizer over CLIP's tokenizer.json, with CLIP's decoding.

Encoding is the generic one (tokenizer.json holds CLIP's normaliser, pre-tokenizer and BPE with
the ``</w>`` end-of-word suffix). A folder with only vocab.json + merges.txt (saved by 4.x's
slow tokenizer) gets the backend transformers' ``CLIPTokenizer`` builds from them: NFC, runs of
whitespace to one space, lower case; CLIP's word pattern; byte-level BPE with ``</w>`` word
ends; ``<|startoftext|> ... <|endoftext|>`` around each sequence. Decoding follows
``CLIPTokenizer``: byte-level decoding, then every ``</w>`` becomes a space and the ends are
stripped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backend import _load_backend
from .tokenizer import Tokenizer

_WORDS = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_DEFAULT_TOKENS = {"unk_token": "<|endoftext|>", "bos_token": "<|startoftext|>",
                   "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}


def _clip_backend(folder: Path, family: str, settings: dict) -> Any:
    """tokenizer.json when there is one; else CLIP's backend from vocab.json + merges.txt."""
    if (folder / "tokenizer.json").is_file() or not (
            (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
        return _load_backend(folder, family, settings)
    from tokenizers import Regex, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers.models import BPE

    from .special_tokens import _token_content

    for key, value in _DEFAULT_TOKENS.items():
        settings.setdefault(key, value)
    vocab, merges = BPE.read_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    backend = RustTokenizer(BPE(vocab, merges, dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="</w>", fuse_unk=False,
                                unk_token=_token_content(settings["unk_token"])))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_WORDS), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return backend


class CLIPTokenizer(Tokenizer):
    load_backend = staticmethod(_clip_backend)

    @classmethod
    def from_folder(cls, folder, **kwargs: Any) -> "CLIPTokenizer":
        from tokenizers import decoders, processors

        tokenizer = super().from_folder(folder, **kwargs)
        tokenizer._backend.decoder = decoders.ByteLevel()
        if not (Path(folder) / "tokenizer.json").is_file():  # built: CLIP's special tokens around
            tokenizer._backend.post_processor = processors.RobertaProcessing(
                (tokenizer.eos_token, tokenizer.eos_token_id), (tokenizer.bos_token, tokenizer.bos_token_id),
                trim_offsets=False, add_prefix_space=False)
        return tokenizer

    def _decode(self, ids: list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        suffix = getattr(self._backend.model, "end_of_word_suffix", None) or "</w>"
        return text.replace(suffix, " ").strip()
