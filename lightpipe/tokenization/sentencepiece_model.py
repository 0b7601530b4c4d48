"""Tokenizer folders with only a SentencePiece model (``tokenizer.model``,
``sentencepiece.bpe.model``; saved by 4.x's slow tokenizers, no tokenizer.json) become a
``tokenizers`` backend the way transformers 5 builds it for the folder's class: the pieces read
from the model file (a protobuf ``ModelProto``, parsed here: no sentencepiece or protobuf
package needed), then the class's own vocabulary layout, normaliser, pre-tokenizer, decoder
and template.

Classes: LlamaTokenizer (and the Mistral / LLaVA folders that name it: byte-fallback BPE with
merges derived from the vocabulary), XLMRobertaTokenizer and CamembertTokenizer (Unigram with
fairseq's id layout).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError

SPIECE_UNDERLINE = "▁"
MODEL_FILES = ("tokenizer.model", "sentencepiece.bpe.model")


@dataclass
class SentencePieceModel:
    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    model_type: int = 1  # 1 unigram, 2 BPE, 3 word, 4 char
    unk_id: int = 0
    byte_fallback: bool = False
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 1:
            value, position = data[position:position + 8], position + 8
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = data[position:position + length], position + length
        elif wire == 5:
            value, position = data[position:position + 4], position + 4
        else:
            raise ValueError(f"wire type {wire}")
        if position > end:
            raise ValueError("truncated message")
        yield number, wire, value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def read_model(path: Path) -> SentencePieceModel:
    """The parts of a SentencePiece ``ModelProto`` a tokenizer needs."""
    model = SentencePieceModel()
    try:
        for number, wire, value in _fields(path.read_bytes()):
            if number == 1 and wire == 2:  # SentencePiece: piece, score, type
                piece, score, kind = "", 0.0, 1
                for inner, inner_wire, item in _fields(value):
                    if inner == 1 and inner_wire == 2:
                        piece = item.decode("utf-8")
                    elif inner == 2 and inner_wire == 5:
                        score = struct.unpack("<f", item)[0]
                    elif inner == 3 and inner_wire == 0:
                        kind = item
                model.pieces.append((piece, score, kind))
            elif number == 2 and wire == 2:  # TrainerSpec
                for inner, inner_wire, item in _fields(value):
                    if inner == 3 and inner_wire == 0:
                        model.model_type = item
                    elif inner == 35 and inner_wire == 0:
                        model.byte_fallback = bool(item)
                    elif inner == 40 and inner_wire == 0:
                        model.unk_id = item
            elif number == 3 and wire == 2:  # NormalizerSpec
                for inner, inner_wire, item in _fields(value):
                    if inner == 2 and inner_wire == 2:
                        model.precompiled_charsmap = bytes(item)
                    elif inner == 3 and inner_wire == 0:
                        model.add_dummy_prefix = bool(item)
    except (ValueError, UnicodeDecodeError, struct.error) as err:
        raise ModelNotFoundError(f"Could not read the SentencePiece model {path}: {err}. The file "
                                 "is damaged; download it again.") from None
    if not model.pieces:
        raise ModelNotFoundError(f"{path} holds no SentencePiece pieces: it is not a SentencePiece model.")
    return model


def _merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges from a vocabulary alone, as transformers derives them: every split of a
    piece into two pieces, in the order of the pieces' ids."""
    merges = []
    for merge, rank in vocab.items():
        local = [(merge[:i], merge[i:], rank) for i in range(1, len(merge))
                 if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges.sort(key=lambda x: (x[2], len(x[0]), len(x[1])))
    return [(left, right) for left, right, _ in merges]


def _llama(model: SentencePieceModel, settings: dict) -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab = {}
    for index, (piece, _, _) in enumerate(model.pieces):
        vocab.setdefault(piece, index)
    backend = Tokenizer(BPE(vocab=vocab, merges=_merges(vocab), fuse_unk=True, byte_fallback=True,
                            dropout=None, unk_token=model.pieces[model.unk_id][0]))
    add_prefix_space = settings.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    scheme = ("always" if settings.get("legacy", True) else "first") if add_prefix_space else "never"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE,
                                                     prepend_scheme=scheme, split=False)
    steps = [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    backend.decoder = decoders.Sequence(steps)
    _add_control_tokens(backend, model)
    return backend


def _fairseq(model: SentencePieceModel, settings: dict, camembert: bool) -> Any:
    """XLM-R and CamemBERT: fairseq's ids over the SentencePiece pieces (Unigram)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    def name(key: str, default: str) -> str:
        value = settings.get(key, default)
        return str(value.get("content", default) if isinstance(value, dict) else value)

    bos, eos = name("bos_token", "<s>"), name("eos_token", "</s>")
    pad, unk, mask = name("pad_token", "<pad>"), name("unk_token", "<unk>"), name("mask_token", "<mask>")
    pieces = [(piece, score) for piece, score, _ in model.pieces]
    if camembert:
        vocab = [("<s>NOTUSED", 0.0), (pad, 0.0), ("</s>NOTUSED", 0.0), (unk, 0.0),
                 ("<unk>NOTUSED", -100.0)] + pieces[1:] + [(mask, 0.0)]
    else:
        vocab = [(bos, 0.0), (pad, 0.0), (eos, 0.0), (unk, 0.0)] + pieces[3:] + [(mask, 0.0)]
    unk_id = next((i for i, (token, _) in enumerate(vocab) if token == unk), 3)
    backend = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    if model.precompiled_charsmap:
        backend.normalizer = normalizers.Precompiled(model.precompiled_charsmap)
    add_prefix_space = settings.get("add_prefix_space")
    scheme = "never" if add_prefix_space is False else "always"
    metaspace = dict(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme)
    if camembert:
        metaspace["split"] = True
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Metaspace(**metaspace)])
    backend.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme)
    ids = {}
    for index, (token, _) in enumerate(vocab):
        ids.setdefault(token, index)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids.get(bos, 0)), (eos, ids.get(eos, 2))])
    return backend


def _add_control_tokens(backend: Any, model: SentencePieceModel) -> None:
    """Control pieces (<s>, </s>) are special added tokens; user-defined ones plain added
    tokens, as transformers registers them."""
    from tokenizers import AddedToken

    tokens = [AddedToken(piece, normalized=False, special=kind == 3)
              for piece, _, kind in model.pieces if kind in (3, 4)]
    if tokens:
        backend.add_tokens(tokens)


BUILDERS = {
    "LlamaTokenizer": lambda model, settings: _llama(model, settings),
    "CodeLlamaTokenizer": lambda model, settings: _llama(model, settings),
    "XLMRobertaTokenizer": lambda model, settings: _fairseq(model, settings, camembert=False),
    "CamembertTokenizer": lambda model, settings: _fairseq(model, settings, camembert=True),
}


def build_backend(folder: Path, settings: dict) -> Any | None:
    """The backend for a folder whose only vocabulary is a SentencePiece model, or None when
    the folder has none or its class is not one lightpipe builds."""
    name = str(settings.get("tokenizer_class") or "").removesuffix("Fast")
    path = next((folder / file for file in MODEL_FILES if (folder / file).is_file()), None)
    if path is None or name not in BUILDERS:
        return None
    return BUILDERS[name](read_model(path), settings)


__all__ = ["BUILDERS", "SentencePieceModel", "build_backend", "read_model"]
