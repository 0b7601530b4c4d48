"""Build the summarization / translation / text2text-generation golden fixtures with the
transformers 4.57 pipelines.

transformers 5 removed these pipelines, so the reference outputs come from transformers==4.57.6,
run once in its own virtualenv (never imported by lightpipe or its tests):

    python -m venv /tmp/venv457
    /tmp/venv457/bin/pip install torch transformers==4.57.6 tokenizers safetensors numpy sentencepiece
    /tmp/venv457/bin/python tests/golden/make_seq2seq.py

It writes, under tests/golden/seq2seq/:
  <name>/        a tiny deterministic checkpoint (config.json, generation_config.json,
                 model.safetensors, tokenizer files), each < 300 KB:
                 bart (byte-level BPE, learned positions), t5 (v1.0: relu, tied and scaled head,
                 task_specific_params with the summarize / translate prefixes; Unigram
                 tokenizer.json), flan-t5 (v1.1: gated-gelu, untied head), opus-mt-en-de
                 (Marian: sinusoidal positions, source.spm / target.spm / vocab.json, no
                 tokenizer.json);
  cases.json     task, pipeline() arguments, inputs, call arguments and the 4.57 pipeline's
                 outputs (token ids as lists), or the exception it raised.
tests/pipelines/test_text2text_generation.py replays every case with lightpipe. (The Unigram
trainer is not fully deterministic: a re-run may give other T5 pieces and so other texts, but
always a consistent set of checkpoints and outputs.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # sequential training: the same vocabulary every run

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent / "seq2seq"

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and largest city of France.",
    "The weather today is sunny with a chance of rain in the afternoon.",
    "My name is Wolfgang and I live in Berlin with my two cats.",
    "Transformers are neural networks that use attention to read whole sentences at once.",
    "The bridge was built in 1889, is 324 metres tall and cost 7.8 million francs.",
    "Every summer the town holds a music festival on the market square.",
    "summarize: translate English to German: translate English to French: question: context:",
]
GERMAN = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Paris ist die Hauptstadt und größte Stadt Frankreichs.",
    "Das Wetter ist heute sonnig, am Nachmittag kann es regnen.",
    "Mein Name ist Wolfgang und ich wohne mit zwei Katzen in Berlin.",
    "Jeden Sommer gibt es auf dem Marktplatz ein Musikfestival.",
]
ARTICLE = " ".join(ENGLISH[:4])
LONG = " ".join(ENGLISH[:7] * 3)  # longer than the checkpoints' 128 positions

SIZES = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
             max_position_embeddings=128)
T5_SIZES = dict(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=32,
                decoder_start_token_id=0)


# --- tokenizers ------------------------------------------------------------------------------

def bart_tokenizer(folder: Path) -> None:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(ENGLISH * 5, trainer)
    model = json.loads(backend.to_str())["model"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                              encoding="utf-8")
        tokenizer = transformers.BartTokenizerFast(
            vocab_file=str(Path(tmp) / "vocab.json"), merges_file=str(Path(tmp) / "merges.txt"),
            model_max_length=128)
    tokenizer.save_pretrained(folder)


def t5_tokenizer(folder: Path) -> None:
    """A SentencePiece-style Unigram with T5's special tokens (pad 0, </s> 1, <unk> 2), its
    template ($A </s>) and three sentinel tokens."""
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=300, show_progress=False,
                                      special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    backend.train_from_iterator((ENGLISH + GERMAN) * 5, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        backend.save(str(path))
        tokenizer = transformers.T5TokenizerFast(tokenizer_file=str(path), extra_ids=3,
                                                 model_max_length=128)
    tokenizer.save_pretrained(folder)


def marian_tokenizer(folder: Path) -> dict:
    """source.spm (English), target.spm (German) and the joint vocab.json of OPUS-MT."""
    import sentencepiece

    with tempfile.TemporaryDirectory() as tmp:
        spms = {}
        for name, corpus in (("source", ENGLISH), ("target", GERMAN)):
            text = Path(tmp) / f"{name}.txt"
            text.write_text("\n".join(corpus * 3) + "\n", encoding="utf-8")
            sentencepiece.SentencePieceTrainer.train(
                input=str(text), model_prefix=str(Path(tmp) / name), vocab_size=100, hard_vocab_limit=False,
                model_type="unigram", character_coverage=1.0, minloglevel=2,
                normalization_rule_name="identity")
            spms[name] = Path(tmp) / f"{name}.model"
        vocab = {"</s>": 0, "<unk>": 1}
        for name in ("source", "target"):
            processor = sentencepiece.SentencePieceProcessor(model_file=str(spms[name]))
            for index in range(processor.get_piece_size()):
                piece = processor.id_to_piece(index)
                if piece not in vocab and piece not in ("<s>", "</s>", "<unk>"):
                    vocab[piece] = len(vocab)
        vocab["<pad>"] = len(vocab)
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        tokenizer = transformers.MarianTokenizer(
            source_spm=str(spms["source"]), target_spm=str(spms["target"]),
            vocab=str(Path(tmp) / "vocab.json"), source_lang="en", target_lang="de",
            model_max_length=128)
        tokenizer.save_pretrained(folder)
    return vocab


# --- checkpoints -----------------------------------------------------------------------------

def widen(model, std: float = 0.3) -> None:
    """Random weights drawn wider than the default init, so greedy and beam choices are not
    near-ties."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and "embed_positions" not in name:
                param.normal_(0.0, std)


def build_bart(folder: Path) -> None:
    bart_tokenizer(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    config = transformers.BartConfig(vocab_size=len(tokenizer), **SIZES)
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(config).eval()
    widen(model)
    with torch.no_grad():  # EOS likely enough that some outputs end before max_length
        model.final_logits_bias[0, config.eos_token_id] = 3.0
    model.generation_config.max_length = 24
    model.generation_config.no_repeat_ngram_size = 3
    model.save_pretrained(folder)


TASK_PARAMS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 30,
                      "min_length": 6, "no_repeat_ngram_size": 3, "num_beams": 3,
                      "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 28, "num_beams": 2,
                             "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 26, "num_beams": 3,
                             "prefix": "translate English to French: "},
}


def build_t5(folder: Path, flan: bool) -> None:
    t5_tokenizer(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if flan:
        config = transformers.T5Config(vocab_size=len(tokenizer), feed_forward_proj="gated-gelu",
                                       tie_word_embeddings=False, **T5_SIZES)
    else:
        config = transformers.T5Config(vocab_size=len(tokenizer), feed_forward_proj="relu",
                                       task_specific_params=TASK_PARAMS, **T5_SIZES)
    torch.manual_seed(1)
    model = transformers.T5ForConditionalGeneration(config).eval()
    widen(model, 0.5)
    if flan:  # shorter outputs: 256-token beams drift apart between 4.57 and 5 on near-ties
        model.generation_config.max_length = 30
    model.save_pretrained(folder)


def build_marian(folder: Path) -> None:
    vocab = marian_tokenizer(folder)
    pad = vocab["<pad>"]
    config = transformers.MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(vocab), pad_token_id=pad,
        decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0, scale_embedding=True,
        activation_function="swish", bad_words_ids=[[pad]], max_length=32, num_beams=3, **SIZES)
    torch.manual_seed(2)
    model = transformers.MarianMTModel(config).eval()
    widen(model)
    with torch.no_grad():
        model.final_logits_bias[0, 0] = 2.0
    model.save_pretrained(folder)


BUILDERS = {"bart": build_bart, "t5": lambda f: build_t5(f, flan=False),
            "flan-t5": lambda f: build_t5(f, flan=True), "opus-mt-en-de": build_marian}


# --- cases -----------------------------------------------------------------------------------

def case(task: str, model: str, inputs, init: dict | None = None, **kwargs) -> dict:
    return {"task": task, "model": model, "inputs": inputs, "init": init or {}, "kwargs": kwargs}


def cases() -> list[dict]:
    out = []
    texts = [ENGLISH[0], ARTICLE, ENGLISH[3], ENGLISH[5]]
    short = [ENGLISH[0], ENGLISH[2], ENGLISH[3], ENGLISH[5]]
    for model in ("bart", "t5"):
        out += [
            case("summarization", model, ARTICLE),
            case("summarization", model, texts),
            case("summarization", model, texts, batch_size=3),
            case("summarization", model, ARTICLE, min_length=5, max_length=15),
            case("summarization", model, ARTICLE, max_length=12),
            case("summarization", model, ARTICLE, max_new_tokens=8),
            case("summarization", model, ENGLISH[1], num_beams=1, max_new_tokens=10),
            case("summarization", model, ARTICLE, num_beams=3, num_return_sequences=2),
            case("summarization", model, texts[:2], num_beams=2, num_return_sequences=2,
                 batch_size=2),
            case("summarization", model, ARTICLE, no_repeat_ngram_size=2, length_penalty=0.5),
            case("summarization", model, ARTICLE, early_stopping=False, length_penalty=2.0),
            case("summarization", model, ARTICLE, return_tensors=True),
            case("summarization", model, ARTICLE, return_text=True),
            case("summarization", model, ARTICLE, clean_up_tokenization_spaces=True),
            case("summarization", model, LONG, truncation=True),
            case("summarization", model, LONG, truncation=True, batch_size=2),
            case("summarization", model, ""),
            case("summarization", model, ["", ENGLISH[2]], batch_size=2),
            case("summarization", model, ARTICLE, init={"max_length": 12, "num_beams": 2}),
            case("summarization", model, ARTICLE, init={"min_length": 10}),
            case("text2text-generation", model, ENGLISH[4]),
            case("text2text-generation", model, texts, batch_size=2),
            case("text2text-generation", model, ENGLISH[4], num_beams=1, max_length=9),
            case("text2text-generation", model, ENGLISH[4], stop_sequence=ENGLISH[6].split()[1]),
        ]
    out.append(case("summarization", "bart", LONG))  # 4.57: past the position table
    out += [
        case("translation_en_to_de", "t5", ENGLISH[0]),
        case("translation_en_to_de", "t5", texts, batch_size=2),
        case("translation_en_to_fr", "t5", ENGLISH[2], num_beams=1),
        case("translation_en_to_de", "t5", ENGLISH[1], max_length=10, return_tensors=True),
        case("translation", "t5", ENGLISH[1]),
        case("text2text-generation", "flan-t5", ENGLISH[1]),
        case("text2text-generation", "flan-t5", texts, batch_size=4),
        case("text2text-generation", "flan-t5", ENGLISH[5], num_beams=2, max_new_tokens=12,
             no_repeat_ngram_size=2),
        case("text2text-generation", "flan-t5", ENGLISH[5], num_beams=4, num_return_sequences=3,
             max_length=15, length_penalty=-1.0),
        case("text2text-generation", "flan-t5", LONG, truncation=True, max_new_tokens=5),
        case("summarization", "flan-t5", ARTICLE, min_length=12, max_length=14),
        case("translation", "opus-mt-en-de", ENGLISH[0]),
        case("translation_en_to_de", "opus-mt-en-de", ENGLISH[1]),
        case("translation_en_to_de", "opus-mt-en-de", short, batch_size=3),
        case("translation_en_to_de", "opus-mt-en-de", short),
        case("translation", "opus-mt-en-de", ENGLISH[3], num_beams=1, max_length=12),
        case("translation", "opus-mt-en-de", ENGLISH[3], num_beams=2, num_return_sequences=2),
        case("translation", "opus-mt-en-de", ENGLISH[2], return_tensors=True),
        case("translation", "opus-mt-en-de", ENGLISH[2], clean_up_tokenization_spaces=True),
        case("translation", "opus-mt-en-de", LONG, truncation=True),
        case("translation", "opus-mt-en-de", ""),
        case("text2text-generation", "opus-mt-en-de", ENGLISH[6], max_new_tokens=6),
    ]
    return out


def jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def run(spec: dict, pipes: dict) -> dict:
    key = (spec["task"], spec["model"], json.dumps(spec["init"], sort_keys=True))
    try:
        if key not in pipes:
            pipes[key] = transformers.pipeline(spec["task"], model=str(HERE / spec["model"]),
                                               **spec["init"])
        output = pipes[key](spec["inputs"], **spec["kwargs"])
        return {**spec, "output": jsonable(output)}
    except Exception as err:  # noqa: BLE001 - recorded as the expected failure
        return {**spec, "error": type(err).__name__, "message": str(err)[:300]}


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    for name, build in BUILDERS.items():
        build(HERE / name)
        size = sum(p.stat().st_size for p in (HERE / name).iterdir())
        assert size < 300_000, f"{name} is {size} bytes"
    pipes: dict = {}
    results = [run(spec, pipes) for spec in cases()]
    data = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": results}
    (HERE / "cases.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    failed = [r for r in results if "error" in r]
    print(f"{len(results)} cases, {len(failed)} errors:",
          [(r["task"], r["model"], r["error"]) for r in failed])


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
