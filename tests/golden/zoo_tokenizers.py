"""Tiny tokenizers for the zoo's recipes (make_zoo.py, in a virtualenv with the era's
transformers): vocabularies made here (WordPiece, byte-level BPE, SentencePiece, CLIP's,
Whisper's), loaded by the era's tokenizer class as a user of that era would save them."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import transformers

VERSION = tuple(int(part) for part in transformers.__version__.split(".")[:2])
V5 = VERSION >= (5, 0)
CORPUS = ["Hello world, the quick brown fox jumps over the lazy dog.",
          "What is the capital of France? Paris is the capital of France.",
          "A photo of a cat and a dog sitting on a red couch.",
          "Transformers read whole sentences at once, 123 and 4.5 too."] * 8
WORDS = sorted({w.strip(".,?!").lower() for line in CORPUS for w in line.split()} - {""})


def tokenizer_class(name: str, slow: bool):
    """The class a user of this era saves: 5.x has one class per name; 4.x its Fast twin unless
    ``slow``."""
    if not V5 and not slow and hasattr(transformers, name + "Fast"):
        return getattr(transformers, name + "Fast")
    return getattr(transformers, name)


def from_files(name: str, slow: bool, files: dict, **init):
    """Load tokenizer class ``name`` from vocabulary files (bytes or str) in a temporary folder:
    the one way to build a tokenizer that every era accepts. The folder stays (until the process
    ends) so that a 4.x fast tokenizer also saves its vocabulary files, as a Hub copy's does."""
    tmp = tempfile.mkdtemp(prefix="zoo-vocab-")
    for file_name, content in files.items():
        path = Path(tmp) / file_name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    tokenizer = tokenizer_class(name, slow).from_pretrained(tmp, **init)
    if V5:  # 5.x would write this temporary path into tokenizer_config.json
        tokenizer.init_kwargs.pop("vocab_file", None)
    return tokenizer


def wordpiece_files(extra=()) -> dict:
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789?.,!'")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra, *WORDS, *chars,
              *("##" + c for c in chars)]
    return {"vocab.txt": "\n".join(dict.fromkeys(tokens)) + "\n"}


def bpe_files(specials=("<s>", "<pad>", "</s>", "<unk>", "<mask>"), size: int = 300) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, show_progress=False, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return {"vocab.json": json.dumps(model["vocab"], ensure_ascii=False),
            "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n"}


def spm_model(size: int = 100, **options) -> bytes:
    """A tiny SentencePiece model (identity normalisation keeps the file small)."""
    import sentencepiece

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "corpus.txt").write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
        sentencepiece.SentencePieceTrainer.train(
            input=f"{tmp}/corpus.txt", model_prefix=f"{tmp}/m", vocab_size=size, hard_vocab_limit=False,
            character_coverage=1.0, minloglevel=2, normalization_rule_name="identity", **options)
        return (Path(tmp) / "m.model").read_bytes()


def clip_files(pad_first: bool = False) -> dict:
    """A character-level CLIP vocabulary (OWL-ViT's layout when ``pad_first``: "!" id 0, the
    start/end tokens last)."""
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # before 4.4x it lived beside GPT-2's tokenizer
        from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {} if pad_first else {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    merges = [("t", "h"), ("th", "e</w>"), ("a", "t</w>"), ("c", "at</w>"), ("d", "o"), ("do", "g</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return {"vocab.json": json.dumps(vocab, ensure_ascii=False),
            "merges.txt": "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n"}


def whisper_tokenizer(slow: bool):
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    tokenizer = from_files("WhisperTokenizer", slow, bpe_files(("<|endoftext|>",)))
    specials = (["<|startoftranscript|>"] + [f"<|{code}|>" for code in LANGUAGES]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                   "<|nocaptions|>", "<|notimestamps|>"])
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def bpe_tokenizer_json(specials=("<|endoftext|>",), size: int = 300) -> str:
    """A byte-level BPE tokenizer.json (GPT-NeoX's tokenizer has no Python class in 4.x: its
    fast class reads tokenizer.json only)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=size, show_progress=False, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    return backend.to_str()
