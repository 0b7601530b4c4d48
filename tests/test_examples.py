"""The examples/ scripts, run as a user runs them (a subprocess, HF_HUB_OFFLINE=1) on local
checkpoints; what they print is checked against transformers on the same folders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from .conftest import assert_outputs_close

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PAIR = ["We are very happy to show you the 🤗 Transformers library.", "We hope you don't hate it."]


def run_example(script: str, *args: object) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, f"{script} exited with {done.returncode}:\n{done.stderr}"
    return done.stdout


def printed(stdout: str, label: str):
    """The JSON a script printed after ``label: ``."""
    for line in stdout.splitlines():
        if line.startswith(f"{label}: "):
            return json.loads(line[len(label) + 2:])
    raise AssertionError(f"no line {label!r} in the output:\n{stdout}")


def test_similarity_on_real_minilm(minilm_path):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "A woman is playing the violin.", "Someone is playing a musical instrument.",
                 "A cheetah is running behind its prey."]
    stdout = run_example("similarity.py", "--model", minilm_path)
    assert "Pooling: mean, normalize: True, embedding size: 384" in stdout
    rows = [[float(v) for v in m[1].split()]
            for m in re.finditer(r"^\[\d+\]((?:\s+-?\d\.\d{3})+)$", stdout, re.MULTILINE)]
    table = torch.tensor(rows)
    assert table.shape == (5, 5), stdout

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    model = transformers.AutoModel.from_pretrained(minilm_path)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
    torch.testing.assert_close(table, embeddings @ embeddings.T, atol=1.5e-3, rtol=0)

    related, unrelated = [(0, 1), (2, 3)], [(0, 2), (0, 4), (1, 2), (2, 4), (3, 4)]
    assert min(table[p] for p in related) > max(table[p] for p in unrelated) + 0.2
    assert re.search(r"^Most similar pair: \[0\] and \[1\] ", stdout, re.MULTILINE), stdout

    # The default model is the packaged MiniLM, and sentences can be given on the command line.
    stdout = run_example("similarity.py", "A dog runs.", "A puppy is running.", "Stocks fell.")
    assert "Most similar pair: [0] and [1]" in stdout


def test_step10_text_classification(tiny_model):
    def labels(*names):
        return dict(num_labels=len(names), id2label=dict(enumerate(names)),
                    label2id={name: i for i, name in enumerate(names)})

    seq = "AutoModelForSequenceClassification"
    folders = {
        "sentiment": tiny_model("distilbert", seq, **labels("NEGATIVE", "POSITIVE")),
        "nli": tiny_model("roberta", seq, **labels("CONTRADICTION", "NEUTRAL", "ENTAILMENT")),
        "rerank": tiny_model("xlm-roberta", seq, num_labels=1),
        "finance": tiny_model("roberta", seq, **labels("negative", "neutral", "positive")),
    }
    stdout = run_example("step10_text_classification.py", "--model", folders["sentiment"],
                         "--nli-model", folders["nli"], "--reranker-model", folders["rerank"],
                         "--finance-model", folders["finance"])

    def reference(name, task="text-classification"):
        return transformers.pipeline(task, model=str(folders[name]))

    assert_outputs_close(printed(stdout, "sentiment"),
                         reference("sentiment")(["I love this movie!", "This film was terrible."]))
    nli = printed(stdout, "nli")
    assert sorted(entry["label"] for entry in nli) == ["CONTRADICTION", "ENTAILMENT", "NEUTRAL"]
    assert_outputs_close(nli, reference("nli")(
        {"text": "A soccer game with multiple males playing.",
         "text_pair": "Some men are playing a sport."}, top_k=None))
    passages = ["Paris is the capital of France.", "The quick brown fox jumps over the lazy dog.",
                "France is a country in Europe."]
    rerank = printed(stdout, "rerank")
    assert_outputs_close(rerank, reference("rerank")(
        [{"text": "What is the capital of France?", "text_pair": p} for p in passages],
        function_to_apply="sigmoid"))
    assert all(0 < entry["score"] < 1 and entry["label"] == "LABEL_0" for entry in rerank)
    finance = printed(stdout, "finance")
    assert_outputs_close(finance, reference("finance", "sentiment-analysis")(
        ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn a year earlier.",
         "The company's shares fell 5% after the results were published."]))
    assert {entry["label"] for entry in finance} <= {"negative", "neutral", "positive"}


def test_step10_default_model_offline_names_it(tmp_path):
    """With no --model the step uses the task's default, as the tutorial did; offline with an
    empty cache that ends in lightpipe's own error, which names the model and the fix."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(EXAMPLES / "step10_text_classification.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    default = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    assert f"No model was supplied, defaulted to {default}" in done.stderr
    last = done.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"lightpipe.errors.ModelNotFoundError: '{default}'"), done.stderr
    assert "HF_HUB_OFFLINE" in last


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_step12_autotokenizer(tiny_model, model_type):
    folder = tiny_model(model_type)
    stdout = run_example("step12_autotokenizer.py", "--model", folder)
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    encoding = reference("In a hole in the ground there lived a hobbit.")
    assert printed(stdout, "encoding") == dict(encoding)
    assert printed(stdout, "tokens") == reference.convert_ids_to_tokens(encoding["input_ids"])
    assert printed(stdout, "decoded") == reference.decode(encoding["input_ids"])
    assert printed(stdout, "decoded without special tokens") == reference.decode(
        encoding["input_ids"], skip_special_tokens=True)
    if model_type == "bert":  # an uncased WordPiece: lower-cased, special tokens around
        assert printed(stdout, "decoded") == (
            "[CLS] in a hole in the ground there lived a hobbit. [SEP]")


def test_step16_automodel_for_tasks(tiny_model):
    folder = tiny_model("distilbert", "AutoModelForSequenceClassification")
    stdout = run_example("step16_automodel_for_tasks.py", "--model", folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer("Hugging Face is based in New York City.", return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    assert printed(stdout, "tokens") == tokens
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.testing.assert_close(torch.tensor(printed(stdout, "sequence classification logits")),
                               expected, rtol=1e-4, atol=1e-5)
    assert f"sequence label: LABEL_{int(expected.argmax())}" in stdout
    # DistilBERT names both heads "classifier": the token head takes the same (2, dim) weights,
    # as in transformers, so its logits are comparable too.
    assert printed(stdout, "token classification logits shape") == [1, len(tokens), 2]
    model = transformers.AutoModelForTokenClassification.from_pretrained(folder)
    with torch.no_grad():
        expected = model(**inputs).logits
    assert printed(stdout, "token labels") == [f"LABEL_{int(i)}" for i in expected.argmax(-1)[0]]


def test_step17_tokenizer_batches(tiny_model):
    folder = tiny_model("bert")
    stdout = run_example("step17_tokenizer_batches.py", "--model", folder)
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    assert printed(stdout, "encoding") == dict(reference(PAIR[0]))
    batch = reference(PAIR, padding=True, truncation=True, max_length=512, return_tensors="pt")
    assert printed(stdout, "batch") == {name: tensor.tolist() for name, tensor in batch.items()}
    width = batch["input_ids"].shape[1]
    assert printed(stdout, "batch types") == {
        name: f"Tensor torch.int64 (2, {width})" for name in batch}
    assert printed(stdout, "batch")["attention_mask"][1][-1] == 0  # the shorter text is padded


def test_step18_automodel_quicktour(tiny_model, tmp_path):
    stars = [f"{n} star{'s' if n > 1 else ''}" for n in range(1, 6)]
    folder = tiny_model("bert", "AutoModelForSequenceClassification", num_labels=5,
                        id2label=dict(enumerate(stars)),
                        label2id={s: i for i, s in enumerate(stars)})
    saved = tmp_path / "pt_save_pretrained"
    stdout = run_example("step18_automodel_quicktour.py", "--model", folder, "--save-dir", saved)

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    batch = tokenizer(PAIR, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    probabilities = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(torch.tensor(printed(stdout, "logits")), logits,
                               rtol=1e-4, atol=1e-5)
    predictions = torch.tensor(printed(stdout, "predictions"))
    torch.testing.assert_close(predictions, probabilities, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(predictions.sum(-1), torch.ones(2))
    assert printed(stdout, "labels") == [stars[int(i)] for i in probabilities.argmax(-1)]
    assert printed(stdout, "round trip max abs difference") == 0.0

    # What the example saved loads in transformers and computes the same thing.
    reloaded_tokenizer = transformers.AutoTokenizer.from_pretrained(saved)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(saved)
    reloaded_batch = reloaded_tokenizer(PAIR, padding=True, truncation=True, max_length=512,
                                        return_tensors="pt")
    assert reloaded_batch["input_ids"].tolist() == batch["input_ids"].tolist()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**reloaded_batch).logits, logits)
    assert reloaded.config.id2label == dict(enumerate(stars))


def test_step06_zero_shot(tiny_model):
    names = ("CONTRADICTION", "NEUTRAL", "ENTAILMENT")
    folder = tiny_model("roberta", "AutoModelForSequenceClassification", initializer_range=0.5,
                        num_labels=3, id2label=dict(enumerate(names)),
                        label2id={name: i for i, name in enumerate(names)})
    stdout = run_example("step06_zero_shot.py", "--model", folder)
    reference = transformers.pipeline("zero-shot-classification", model=str(folder))
    text = "I have a problem with my iphone that needs to be resolved asap!!"
    labels = ["urgent", "not urgent", "phone", "tablet", "computer"]
    zero_shot = printed(stdout, "zero-shot")
    assert sorted(zero_shot["labels"]) == sorted(labels)
    assert abs(sum(zero_shot["scores"]) - 1) < 1e-5
    assert_outputs_close(zero_shot, reference(text, candidate_labels=labels))
    assert_outputs_close(printed(stdout, "multi-label"),
                         reference(text, candidate_labels="urgent, phone, travel", multi_label=True))
    texts = ["The match was called off because of the rain.",
             "Parliament passed the budget after a long debate."]
    assert_outputs_close(printed(stdout, "batch"), reference(
        texts, candidate_labels=["sports", "politics", "weather"],
        hypothesis_template="This text is about {}."))
    best = zero_shot["labels"][0]
    line = rf"^  {zero_shot['scores'][0]:.3f}  {re.escape(best)}$"
    assert re.search(line, stdout, re.MULTILINE), stdout


# --- text generation (steps 08 and 11) ---



def test_step08_large_model_in_bfloat16(decoder):
    folder = decoder("opt")
    stdout = run_example("step08_large_model.py", "--model", folder, "--max-new-tokens", "12")
    assert printed(stdout, "dtype") == "bfloat16"
    assert printed(stdout, "device") == "cpu"  # device_map="auto" on a machine without a GPU
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert printed(stdout, "parameters") == reference.num_parameters()
    inputs = tokenizer("Hello, my name is", return_tensors="pt")
    with torch.no_grad():
        expected = reference.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert printed(stdout, "token ids") == expected[0].tolist()
    assert printed(stdout, "generated") == tokenizer.decode(expected[0], skip_special_tokens=True)
    weights = sum(p.numel() * 2 for p in reference.parameters()) / 1e9
    assert printed(stdout, "weights GB") == round(weights, 3)


def test_step11_chat(decoder):
    folder = decoder("llama")
    stdout = run_example("step11_chat.py", "--model", folder, "--max-new-tokens", "10")
    reference = transformers.pipeline("text-generation", model=str(folder))
    settings = {"max_new_tokens": 10, "do_sample": False}
    chat = [
        {"role": "system", "content": "You are a sassy, wise-cracking robot as imagined by Hollywood circa 1986."},
        {"role": "user", "content": "Hey, can you tell me any fun things to do in New York?"},
    ]
    first = reference(chat, **settings)[0]["generated_text"]
    assert printed(stdout, "reply") == first[-1]["content"]
    second = reference(first + [{"role": "user", "content": "Wait, what's so wild about soup cans?"}],
                       **settings)[0]["generated_text"]
    assert printed(stdout, "second reply") == second[-1]["content"]
    assert printed(stdout, "roles") == ["system", "user", "assistant", "user", "assistant"]
    assert f'\n{first[-1]["content"]}\n' in stdout  # the streamed reply, on its own line
    assert printed(stdout, "streamed pieces") >= 2


def test_step11_chat_offloaded_to_disk_matches_reference(decoder):
    folder = decoder("llama")
    stdout = run_example("step11_chat.py", "--model", folder, "--max-new-tokens", "8",
                         "--max-cpu-memory", "1KiB")
    assert "disk" in printed(stdout, "placement")
    reference = transformers.pipeline("text-generation", model=str(folder))
    chat = [
        {"role": "system", "content": "You are a sassy, wise-cracking robot as imagined by Hollywood circa 1986."},
        {"role": "user", "content": "Hey, can you tell me any fun things to do in New York?"},
    ]
    first = reference(chat, max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert printed(stdout, "reply") == first[-1]["content"]


def test_step11_chat_quantized_int4(decoder):
    folder = decoder("llama")
    stdout = run_example("step11_chat.py", "--model", folder, "--max-new-tokens", "6",
                         "--quantize", "int4")
    assert printed(stdout, "quantized products") > 0
    assert printed(stdout, "roles") == ["system", "user", "assistant", "user", "assistant"]


def test_step11_gated_default_model_offline_names_it(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(EXAMPLES / "step11_chat.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    last = done.stderr.rstrip().splitlines()[-1]
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in last and "ModelNotFoundError" in last, done.stderr
