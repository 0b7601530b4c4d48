"""Build the question-answering golden fixtures with the transformers 4.57 pipeline.

transformers 5 removed the question-answering pipeline, so the reference outputs come from
transformers==4.57.6, run once in its own virtualenv (never imported by lightpipe or its tests):

    python -m venv /tmp/venv457
    /tmp/venv457/bin/pip install torch==2.13.0 transformers==4.57.6 tokenizers safetensors numpy
    /tmp/venv457/bin/python tests/golden/make_question_answering.py

It writes, under tests/golden/question_answering/:
  <name>/        a tiny deterministic checkpoint (config.json, model.safetensors, tokenizer
                 files) for bert (uncased WordPiece), distilbert (cased WordPiece), roberta
                 (byte-level BPE) and xlm-roberta (Unigram / Metaspace, like SentencePiece);
  cases.json     inputs, arguments and the 4.57 pipeline's outputs (or the exception it raised).
tests/pipelines/test_question_answering.py replays every case with lightpipe.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = Path(__file__).resolve().parent / "question_answering"

PARIS = "Paris is the capital and largest city of France. It has about two million residents."
BERLIN = "My name is Wolfgang and I live in Berlin. I work as an engineer at a small company."
WEATHER = ("Weather today: sunny with a chance of rain in the afternoon. Tomorrow will be cold, "
           "windy and grey, with snow expected in the mountains.")
UNICODE = "Ünïcödé tëxt lives in Zürich; émojis 🙂 and 日本語 appear near the café in 1999."
NUMBERS = "The bridge was built in 1889, is 324 metres tall and cost 7.8 million francs."
SHORT = "Berlin."
LONG = " ".join([
    "The history of the small town begins in the year 1204, when a group of farmers settled "
    "near the river. They built a mill, a church and a bridge made of stone.",
    "Over the following centuries the town grew slowly. Merchants came to sell wool, salt and "
    "wine, and the market square became the heart of public life.",
    "In 1650 a great fire destroyed most of the wooden houses. The people rebuilt the town in "
    "brick, and the new town hall was finished in 1662 by an architect called Anna Berger.",
    "During the nineteenth century a railway line reached the town. Factories producing paper "
    "and glass opened along the river, and the population doubled within forty years.",
    "Today the town has about twelve thousand residents. Tourists visit the old mill, the "
    "stone bridge and the museum of glass, which opened in 1987.",
    "The mayor of the town is Peter Lang, who was elected in 2019. The local football club "
    "plays in green shirts and has never won the national cup.",
    "Every summer the town holds a music festival on the market square, with concerts of jazz, "
    "folk and classical music that last for three days and nights.",
])
QUESTIONS = ["What is the capital of France?", "Where do I live?", "How many residents?",
             "What will the weather be tomorrow?", "Where does the text live?",
             "When was the bridge built?", "Who finished the town hall?",
             "Who is the mayor of the town?", "When did the museum open?",
             "What colour are the shirts?", "What happened in 1650?", "How tall is it?"]
CORPUS = [PARIS, BERLIN, WEATHER, UNICODE, NUMBERS, LONG, *QUESTIONS]

SIZES = {
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=128, type_vocab_size=2),
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=128),
    "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                    max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2),
}
SIZES["xlm-roberta"] = SIZES["roberta"]


# --- tokenizers ------------------------------------------------------------------------------

def wordpiece(folder: Path, cls_name: str, lowercase: bool) -> None:
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=420, show_progress=False,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    backend.train_from_iterator(CORPUS * 5, trainer)
    vocab = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
        tokenizer = getattr(transformers, cls_name)(vocab_file=str(vocab_file), do_lower_case=lowercase,
                                                    model_max_length=128)
    tokenizer.save_pretrained(folder)


def byte_level_bpe(folder: Path) -> None:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 5, trainer)
    model = json.loads(backend.to_str())["model"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                              encoding="utf-8")
        tokenizer = transformers.RobertaTokenizerFast(
            vocab_file=str(Path(tmp) / "vocab.json"), merges_file=str(Path(tmp) / "merges.txt"),
            model_max_length=128)
    tokenizer.save_pretrained(folder)


def unigram(folder: Path) -> None:
    """A SentencePiece-style Unigram with XLM-R's special tokens and template."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=300, show_progress=False, special_tokens=specials,
                                      unk_token="<unk>")
    backend.train_from_iterator(CORPUS * 5, trainer)
    backend.add_special_tokens(["<mask>"])
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        backend.save(str(path))
        tokenizer = transformers.XLMRobertaTokenizerFast(tokenizer_file=str(path), model_max_length=128)
    tokenizer.save_pretrained(folder)


TOKENIZERS = {
    "bert": lambda folder: wordpiece(folder, "BertTokenizerFast", lowercase=True),
    "distilbert": lambda folder: wordpiece(folder, "DistilBertTokenizerFast", lowercase=False),
    "roberta": byte_level_bpe,
    "xlm-roberta": unigram,
}


def build_checkpoint(model_type: str) -> Path:
    folder = HERE / model_type
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    TOKENIZERS[model_type](folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    config = transformers.AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **SIZES[model_type])
    torch.manual_seed(0)
    model = transformers.AutoModelForQuestionAnswering.from_config(config)
    with torch.no_grad():  # random heads are near zero; widen them so answers vary
        model.qa_outputs.weight.normal_(0.0, 0.5)
        model.qa_outputs.bias.normal_(0.0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


# --- cases -----------------------------------------------------------------------------------

def case(model: str, args=(), batch_size: int = 1, padding_side: str | None = None,
         init: dict | None = None, **kwargs) -> dict:
    return {"model": model, "args": list(args), "kwargs": kwargs, "batch_size": batch_size,
            "padding_side": padding_side, "init": init or {}}


def cases() -> list[dict]:
    out = []
    for name in TOKENIZERS:
        out += [
            case(name, question=QUESTIONS[0], context=PARIS),
            case(name, question=QUESTIONS[1], context=BERLIN, top_k=3),
            case(name, question=QUESTIONS[4], context=UNICODE, top_k=4),
            case(name, question=QUESTIONS[5], context=NUMBERS, align_to_words=False, top_k=3),
            case(name, question=QUESTIONS[6], context=LONG),  # > 128 tokens: several windows
            case(name, question=QUESTIONS[7:10], context=LONG, top_k=2),
            case(name, question=QUESTIONS[7], context=LONG, max_seq_len=40, doc_stride=12, top_k=3),
            case(name, question=QUESTIONS[0], context=PARIS, handle_impossible_answer=True, top_k=2),
            case(name, question=QUESTIONS[1], context=SHORT, top_k=5),
            case(name, question=QUESTIONS[3], context=WEATHER, padding_side="left", top_k=3),
            case(name, question=QUESTIONS[8], context=LONG, padding_side="left", max_seq_len=48,
                 doc_stride=16, top_k=2),
        ]
    # Every argument, on bert (token_type_ids) and roberta (no CLS id 101, <s> = 0).
    for name in ("bert", "roberta"):
        out += [
            case(name, [{"question": QUESTIONS[1], "context": BERLIN}]),
            case(name, [[{"question": QUESTIONS[0], "context": PARIS},
                         {"question": QUESTIONS[2], "context": PARIS}]], top_k=2),
            case(name, [[{"question": QUESTIONS[0], "context": PARIS}]]),  # one in a list
            case(name, [QUESTIONS[1], BERLIN]),  # two positional strings
            case(name, question=[QUESTIONS[0], QUESTIONS[5], QUESTIONS[6]],
                 context=[PARIS, NUMBERS, LONG], batch_size=3),
            case(name, question=[QUESTIONS[0]], context=[PARIS]),
            case(name, question=QUESTIONS[:3], context=WEATHER, batch_size=2),
            case(name, question=QUESTIONS[6], context=LONG, batch_size=4, top_k=3),
            case(name, question=QUESTIONS[6], context=LONG, max_answer_len=1, top_k=3),
            case(name, question=QUESTIONS[6], context=LONG, max_answer_len=40, top_k=2),
            case(name, question=QUESTIONS[6], context=LONG, max_question_len=3),
            case(name, question=QUESTIONS[6], context=LONG, max_seq_len=64),
            case(name, question=QUESTIONS[6], context=LONG, doc_stride=20),
            case(name, question=QUESTIONS[6], context=LONG, max_seq_len=50, doc_stride=30,
                 handle_impossible_answer=True, top_k=3),
            case(name, question=QUESTIONS[10], context=LONG, align_to_words=False,
                 handle_impossible_answer=True, top_k=4),
            case(name, question=QUESTIONS[0], context=PARIS, top_k=40),
            case(name, question=QUESTIONS[0], context=PARIS, padding="max_length", top_k=2),
            case(name, question=QUESTIONS[11], context=NUMBERS, topk=2),  # the old spelling
            case(name, question=QUESTIONS[2], context="   ", top_k=2),  # no context tokens
            case(name, question=QUESTIONS[0], context=PARIS, init={"top_k": 2, "max_answer_len": 3}),
            case(name, question=QUESTIONS[2], context=UNICODE, padding_side="left",
                 handle_impossible_answer=True, top_k=2),
            case(name, question=QUESTIONS[2], context=UNICODE, padding_side="left",
                 align_to_words=False, top_k=3),
            # Errors: the reference's exception type is recorded.
            case(name, question=QUESTIONS[0]),
            case(name, question=QUESTIONS[0], context=""),
            case(name, question="", context=PARIS),
            case(name, [{"question": QUESTIONS[0]}]),
            case(name, [{"question": None, "context": PARIS}]),
            case(name, question=[QUESTIONS[0], QUESTIONS[1]], context=[PARIS]),
            case(name, question=QUESTIONS[0], context=[PARIS, BERLIN]),
            case(name, question=QUESTIONS[0], context=PARIS, top_k=0),
            case(name, question=QUESTIONS[0], context=PARIS, max_answer_len=0),
            case(name, question=QUESTIONS[0], context=PARIS, max_seq_len=20, doc_stride=30),
            case(name, ["not a dict"]),
        ]
    return out


def run(pipes: dict, spec: dict):
    key = (spec["model"], spec["padding_side"], json.dumps(spec["init"], sort_keys=True))
    if key not in pipes:
        pipe = transformers.pipeline("question-answering", model=str(HERE / spec["model"]), **spec["init"])
        if spec["padding_side"]:
            pipe.tokenizer.padding_side = spec["padding_side"]
        pipes[key] = pipe
    try:
        return {"output": pipes[key](*spec["args"], batch_size=spec["batch_size"], **spec["kwargs"])}
    except Exception as err:  # noqa: BLE001 - the recorded behaviour is the exception itself
        return {"error": [cls.__name__ for cls in type(err).__mro__], "message": str(err)}


def main() -> None:
    assert transformers.__version__.startswith("4.57"), "run with transformers 4.57 (see the docstring)"
    transformers.logging.set_verbosity_error()
    for name in TOKENIZERS:
        build_checkpoint(name)
    pipes: dict = {}
    results = [{**spec, **run(pipes, spec)} for spec in cases()]
    (HERE / "cases.json").write_text(json.dumps(
        {"transformers": transformers.__version__, "torch": torch.__version__, "cases": results},
        indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    errors = sum("error" in r for r in results)
    print(f"{len(results)} cases ({errors} errors) written to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
