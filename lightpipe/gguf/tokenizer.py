"""A GGUF file's tokenizer metadata -> a ``tokenizers.Tokenizer`` (the tokenizer.json
equivalent) and tokenizer_config.json-style settings (special tokens, BOS/EOS, chat template).

A GGUF stores the vocabulary, merges, token types and special-token ids under
``tokenizer.ggml.*``. Two kinds are read, built as transformers 5 builds them
(``integrations/gguf/gguf_tokenizer_mapping.py``): ``gpt2`` (byte-level BPE, GPT-2, Llama 3,
Qwen2, SmolLM) and ``llama`` (SentencePiece BPE with byte fallback, Llama 1/2, Mistral).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedModelError

if TYPE_CHECKING:
    from tokenizers import Tokenizer as Backend

    from .reader import GGUFFile

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp's token types

# How text is split before byte-level BPE, by ``tokenizer.ggml.pre`` (others: GPT-2's split).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                 r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                 r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {
    **dict.fromkeys(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                     "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"], _LLAMA3_SPLIT),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"], _QWEN2_SPLIT),
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], _GPT4O_SPLIT),
}
# tokenizer_config.json's names for the special-token ids of the metadata.
_SPECIAL_IDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id",
                "unk_token": "unknown_token_id", "pad_token": "padding_token_id"}


def build(gguf: "GGUFFile", **overrides: Any) -> tuple["Backend", dict[str, Any]]:
    """(backend tokenizer, tokenizer_config-style settings) of the file; ``overrides`` replace
    settings (``add_bos_token=False``, ``padding_side="left"``, ...)."""
    meta = gguf.metadata
    kind = meta.get("tokenizer.ggml.model")
    tokens: list[str] = meta.get("tokenizer.ggml.tokens") or []
    if kind not in ("gpt2", "llama") or not tokens:
        raise UnsupportedModelError(
            f"{gguf.path.name} has a tokenizer of kind {kind!r}, which lightpipe does not build "
            "(it reads 'gpt2' byte-level BPE and 'llama' SentencePiece BPE). Pass tokenizer= a "
            "tokenizer folder instead.")
    backend = _byte_level(meta, tokens) if kind == "gpt2" else _sentencepiece(meta, tokens)
    _add_special_tokens(backend, meta, tokens, byte_level=kind == "gpt2")

    settings: dict[str, Any] = {}
    for name, key in _SPECIAL_IDS.items():
        token_id = meta.get(f"tokenizer.ggml.{key}")
        settings[name] = tokens[token_id] if token_id is not None and token_id < len(tokens) \
            else None
    # llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise.
    settings["add_bos_token"] = meta.get("tokenizer.ggml.add_bos_token", kind == "llama")
    if "tokenizer.ggml.add_eos_token" in meta:
        settings["add_eos_token"] = meta["tokenizer.ggml.add_eos_token"]
    if "tokenizer.chat_template" in meta:
        settings["chat_template"] = meta["tokenizer.chat_template"]
    settings.update(overrides)
    return backend, settings


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte (transformers' ``bytes_to_unicode``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def _merges(meta: dict, tokens: list[str]) -> list[tuple[str, str]]:
    """The file's merges, or (SentencePiece files without them) the merges its vocabulary and
    scores imply, as transformers' ``generate_merges`` recovers them."""
    if "tokenizer.ggml.merges" in meta:
        return [tuple(merge.split(" ")) for merge in meta["tokenizer.ggml.merges"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    scores = dict(zip(tokens, meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)))
    merges = []
    for merge, score in scores.items():
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge))
                 if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def _byte_level(meta: dict, tokens: list[str]) -> "Backend":
    """Byte-level BPE, as transformers' GPT2Tokenizer, with the split its ``pre`` names."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode()): i
             for i, token in enumerate(tokens)}
    backend = Tokenizer(BPE(vocab=vocab, merges=_merges(meta, tokens), dropout=None,
                            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    split = _SPLITS.get(meta.get("tokenizer.ggml.pre"))
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece(meta: dict, tokens: list[str]) -> "Backend":
    """SentencePiece BPE with byte fallback, as transformers' LlamaTokenizer."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab = {token: index for index, token in enumerate(tokens)}
    backend = Tokenizer(BPE(vocab=vocab, merges=_merges(meta, tokens), fuse_unk=True,
                            byte_fallback=True, dropout=None))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                     split=False)
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(content=" ", left=1)])
    return backend


def _add_special_tokens(backend: "Backend", meta: dict, tokens: list[str], *,
                        byte_level: bool) -> None:
    """Control tokens (``<|im_end|>``) become special added tokens, user-defined ones
    (``<think>``) plain added tokens, so neither is cut into pieces. In a byte-level
    vocabulary a "control" token outside the byte alphabet is a llama.cpp mislabel: skipped."""
    from tokenizers import AddedToken

    types = meta.get("tokenizer.ggml.token_type") or []
    alphabet = set(_byte_alphabet().values()) if byte_level else None
    control = [AddedToken(token, normalized=False, special=True)
               for token, kind in zip(tokens, types)
               if kind == _CONTROL and (alphabet is None or set(token) <= alphabet)]
    if control:
        backend.add_special_tokens(control)
    vocab = backend.get_vocab()
    user = [AddedToken(token, normalized=False, special=False)
            for token, kind in zip(tokens, types) if kind == _USER_DEFINED and token in vocab]
    if user:
        backend.add_tokens(user)

