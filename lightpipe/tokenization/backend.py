"""The ``tokenizers.Tokenizer`` behind a Tokenizer: read from tokenizer.json or built from the
vocabulary files (``vocab.txt`` WordPiece, ``vocab.json`` + ``merges.txt`` byte-level BPE), and
the post-processor (special tokens around each sequence) the matching transformers class sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from .special_tokens import _token_content


def _load_backend(folder: Path, family: str, settings: dict) -> Any:
    """A ``tokenizers.Tokenizer`` from tokenizer.json, or built from the vocabulary files."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, normalizers, pre_tokenizers

    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            backend = RustTokenizer.from_file(str(tokenizer_json))
        except Exception as err:
            raise ModelNotFoundError(f"Could not read {tokenizer_json}: {err}. The file may be "
                                     "damaged or from a newer `tokenizers`; upgrade it or "
                                     "download the file again.") from err
        # Padding / truncation baked into the file only supply defaults, as in transformers.
        if backend.padding is not None:
            settings.setdefault("pad_token", backend.padding["pad_token"])
            settings.setdefault("padding_side", backend.padding["direction"])
        if backend.truncation is not None:
            settings.setdefault("truncation_side", backend.truncation["direction"])
        normalizer = backend.normalizer
        if family == "wordpiece" and isinstance(normalizer, normalizers.BertNormalizer):
            # The BERT classes rebuild the normaliser from these config keys.
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=normalizer.clean_text,
                handle_chinese_chars=settings.get("tokenize_chinese_chars",
                                                  normalizer.handle_chinese_chars),
                strip_accents=settings.get("strip_accents", normalizer.strip_accents),
                lowercase=settings.get("do_lower_case", normalizer.lowercase))
        if family in ("roberta", "gpt2") and "add_prefix_space" in settings:
            # The RoBERTa and GPT-2 classes rebuild their byte-level pre-tokenizer from this flag.
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(
                add_prefix_space=bool(settings["add_prefix_space"]))
        return backend

    vocab_txt = folder / "vocab.txt"
    vocab_json, merges_txt = folder / "vocab.json", folder / "merges.txt"
    if family in ("roberta", "gpt2") and vocab_json.is_file() and merges_txt.is_file():
        return _byte_level_bpe(vocab_json, merges_txt, settings)
    if vocab_txt.is_file():
        from tokenizers.models import WordPiece

        with open(vocab_txt, encoding="utf-8") as handle:
            vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
        unk = _token_content(settings.get("unk_token")) or "[UNK]"
        backend = RustTokenizer(WordPiece(vocab, unk_token=unk))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
            strip_accents=settings.get("strip_accents"),
            lowercase=settings.get("do_lower_case", True))
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        return backend
    if vocab_json.is_file() and merges_txt.is_file():
        return _byte_level_bpe(vocab_json, merges_txt, settings)
    from .sentencepiece_model import build_backend

    built = build_backend(folder, settings)  # a SentencePiece model, for the classes we build
    if built is not None:
        return built

    present = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    hint = (" It has a SentencePiece tokenizer.model, which lightpipe reads only through a "
            "tokenizer.json: convert it once with transformers (`AutoTokenizer.from_pretrained("
            "...).save_pretrained(folder)`)." if "tokenizer.model" in present else "")
    raise ModelNotFoundError(
        f"No tokenizer files in {folder}: looked for tokenizer.json, vocab.txt (WordPiece) and "
        f"vocab.json + merges.txt (byte-level BPE).{hint} Files present: "
        f"{', '.join(present[:20]) or 'none'}.")


def _byte_level_bpe(vocab_json: Path, merges_txt: Path, settings: Mapping[str, Any]) -> Any:
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab, merges = BPE.read_file(str(vocab_json), str(merges_txt))
    backend = RustTokenizer(BPE(vocab, merges, dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="", fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=bool(settings.get("add_prefix_space", False)))
    backend.decoder = decoders.ByteLevel()
    return backend


def set_post_processor(tokenizer: Any, family: str, settings: Mapping[str, Any], *,
                       built: bool, explicit_bos_eos: bool) -> None:
    """Set the post-processor the way the matching transformers class does. It needs the
    special-token ids, so it runs once they are registered with the tokenizer."""
    from tokenizers import processors

    backend = tokenizer.backend_tokenizer
    if built and family == "wordpiece":
        cls_token, sep_token = tokenizer.cls_token, tokenizer.sep_token
        cls_id = tokenizer.cls_token_id if cls_token is not None else 2
        sep_id = tokenizer.sep_token_id if sep_token is not None else 3
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, cls_id), (sep_token, sep_id)])
    elif built and family == "roberta":
        backend.post_processor = processors.RobertaProcessing(
            (tokenizer.sep_token, tokenizer.sep_token_id),
            (tokenizer.cls_token, tokenizer.cls_token_id),
            trim_offsets=bool(settings.get("trim_offsets", True)),
            add_prefix_space=bool(settings.get("add_prefix_space", False)))
    elif family not in ("wordpiece", "roberta") and (
            explicit_bos_eos or backend.post_processor is None):
        # With a tokenizer.json, transformers honours add_bos/eos_token only when passed
        # to from_pretrained; a backend built from vocab files takes them from the config.
        set_bos_eos_template(tokenizer, bool(settings.get("add_bos_token", False)),
                             bool(settings.get("add_eos_token", False)))


def set_bos_eos_template(tokenizer: Any, add_bos: bool, add_eos: bool) -> None:
    """transformers' template for tokenizers without one: optional BOS / EOS around each
    sequence, the second sequence with type id 1."""
    from tokenizers import processors

    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    add_bos, add_eos = add_bos and bos is not None, add_eos and eos is not None
    single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
    pair = (f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1"
            f"{' ' + eos + ':1' if add_eos else ''}")
    special = ([(bos, tokenizer.bos_token_id)] if add_bos else []) + \
              ([(eos, tokenizer.eos_token_id)] if add_eos else [])
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=special)
