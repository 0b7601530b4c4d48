"""text-classification against the reference pipeline: every argument, batched and not, for
each encoder family; input forms; bad input."""

from __future__ import annotations

import json
import types

import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import ENCODER_TYPES, assert_outputs_close

TEXTS = ["I love this movie", "", "bad", "A much longer sentence about the weather, which was "
         "sunny for most of the afternoon and then turned to rain.", "ok then", "Paris is nice"]
HEAD = "AutoModelForSequenceClassification"


@pytest.fixture(scope="module")
def pipes(tiny_model):
    """(ours, reference) pipelines per (model_type, config overrides), built once."""
    cache = {}

    def get(model_type="bert", **overrides):
        key = (model_type, json.dumps(overrides, sort_keys=True))
        if key not in cache:
            folder = tiny_model(model_type, HEAD, **overrides)
            cache[key] = (lightpipe.pipeline("text-classification", model=folder),
                          transformers.pipeline("text-classification", model=folder))
        return cache[key]

    return get


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
@pytest.mark.parametrize("kwargs", [{}, {"top_k": None}, {"top_k": 2}, {"top_k": 1},
                                    {"function_to_apply": "sigmoid"}, {"function_to_apply": "none"},
                                    {"function_to_apply": "softmax", "top_k": None}])
def test_matches_reference(pipes, model_type, kwargs):
    ours, theirs = pipes(model_type, num_labels=3)
    for inputs in (TEXTS[0], TEXTS):
        assert_outputs_close(ours(inputs, **kwargs), theirs(inputs, **kwargs))


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_batched_results_in_input_order(pipes, model_type):
    ours, theirs = pipes(model_type, num_labels=3)
    expected = theirs(TEXTS, top_k=None)
    for batch_size in (2, 4, 8):
        assert_outputs_close(ours(TEXTS, batch_size=batch_size, top_k=None), expected)


def test_text_pairs_in_every_form(pipes):
    ours, theirs = pipes("bert", num_labels=3)
    pair = {"text": "A man is eating.", "text_pair": "Someone eats food."}
    assert_outputs_close(ours(pair), theirs(pair))
    assert_outputs_close(ours([pair, pair], batch_size=2), theirs([pair, pair]))
    nested = [[[pair["text"], pair["text_pair"]]]]  # the reference's list form of one pair
    assert_outputs_close(ours(nested), theirs(nested))
    for pipe in (ours, theirs):  # a bare [text, pair] is refused by both, with a hint
        with pytest.raises(ValueError, match="text_pair"):
            pipe([[pair["text"], pair["text_pair"]]])
    assert_outputs_close(ours(pair["text"], text_pair=pair["text_pair"]),
                         theirs(pair["text"], text_pair=pair["text_pair"]))
    assert ours(pair) != ours(pair["text"])[0]  # the pair is really used
    with pytest.raises(ValueError, match="text_pair"):
        ours([["only", "two", "three"]])


@pytest.mark.parametrize("overrides", [{"num_labels": 1}, {"num_labels": 4, "problem_type": "multi_label_classification"},
                                       {"num_labels": 1, "problem_type": "regression"},
                                       {"num_labels": 2, "problem_type": "single_label_classification"}])
def test_default_function_per_problem_type(pipes, overrides):
    ours, theirs = pipes("distilbert", **overrides)
    assert_outputs_close(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))
    assert_outputs_close(ours(TEXTS[0]), theirs(TEXTS[0]))


def test_arguments_given_at_construction(tiny_model):
    folder = tiny_model("bert", HEAD, num_labels=3)
    ours = lightpipe.pipeline("sentiment-analysis", model=folder, top_k=None, function_to_apply="sigmoid")
    theirs = transformers.pipeline("sentiment-analysis", model=folder, top_k=None, function_to_apply="sigmoid")
    assert_outputs_close(ours(TEXTS[0]), theirs(TEXTS[0]))
    assert_outputs_close(ours(TEXTS), theirs(TEXTS))
    assert_outputs_close(ours(TEXTS, top_k=1), theirs(TEXTS, top_k=1))


def test_labels_from_config(tiny_model):
    folder = tiny_model("bert", HEAD, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    result = lightpipe.pipeline("sentiment-analysis", model=folder)("I love this movie")
    assert isinstance(result, list) and len(result) == 1
    assert result[0]["label"] in {"NEGATIVE", "POSITIVE"} and 0.5 <= result[0]["score"] <= 1.0


def test_task_inferred_from_architectures(tiny_model):
    folder = tiny_model("roberta", HEAD)
    clf = lightpipe.pipeline(model=folder)
    assert clf.task == "text-classification"
    # (the reference asks the Hub for the task, so it cannot infer one for a local folder)
    assert_outputs_close(clf(TEXTS), transformers.pipeline("text-classification", model=folder)(TEXTS))


def test_generator_in_iterator_out_lazily(pipes):
    ours, theirs = pipes("bert", num_labels=3)
    consumed = []

    def texts():
        for text in TEXTS:
            consumed.append(text)
            yield text

    results = ours(texts(), batch_size=2)
    assert isinstance(results, types.GeneratorType) and consumed == []  # nothing run yet
    assert_outputs_close(list(results), theirs(TEXTS))


def test_dataset_like_input_streams(pipes):
    """lightpipe's KeyDataset / KeyPairDataset stream like the reference's over the same rows."""
    from transformers.pipelines.pt_utils import KeyDataset as TheirKeyDataset
    from transformers.pipelines.pt_utils import KeyPairDataset as TheirKeyPairDataset

    from lightpipe.pipelines.pt_utils import KeyDataset, KeyPairDataset

    ours, theirs = pipes("bert", num_labels=3)
    rows = [{"text": t, "other": t[::-1] if i % 3 else ""} for i, t in enumerate(TEXTS)]  # "": no pair
    results = ours(KeyDataset(rows, "text"), batch_size=4)
    assert not isinstance(results, list)
    assert_outputs_close(list(results), list(theirs(TheirKeyDataset(rows, "text"), batch_size=4)))
    pairs = ours(KeyPairDataset(rows, "text", "other"), batch_size=4)
    assert not isinstance(pairs, list)
    assert_outputs_close(list(pairs), list(theirs(TheirKeyPairDataset(rows, "text", "other"), batch_size=4)))


def test_model_object_and_tokenizer(tiny_model):
    folder = tiny_model("bert", HEAD, num_labels=3)
    model = lightpipe.AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(folder)
    ours = lightpipe.pipeline("text-classification", model=model, tokenizer=tokenizer)
    assert_outputs_close(ours(TEXTS), transformers.pipeline("text-classification", model=folder)(TEXTS))
    by_name = lightpipe.pipeline("text-classification", model=model)  # tokenizer found from the model's folder
    assert_outputs_close(by_name(TEXTS), ours(TEXTS))


@pytest.mark.parametrize("device", [-1, "cpu", None])
def test_device_arguments(tiny_model, device):
    import torch

    clf = lightpipe.pipeline("text-classification", model=tiny_model("bert", HEAD), device=device)
    assert clf.device == torch.device("cpu")
    assert clf("hello")[0]["score"] > 0


def test_device_cuda_without_gpu_is_a_clear_error(tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the CUDA path is checked on the GPU machine")
    with pytest.raises(ValueError, match="sees none.*cpu"):
        lightpipe.pipeline("text-classification", model=tiny_model("bert", HEAD), device=0)


def test_bad_inputs(pipes):
    ours, _ = pipes("bert", num_labels=3)
    for bad in (42, None, 3.5, {"wrong": "key"}):
        with pytest.raises((InputTypeError, ValueError)) as info:
            ours(bad)
        assert "text" in str(info.value).lower() or "string" in str(info.value)
    with pytest.raises(InputTypeError, match="int"):
        ours(["fine", 7])
    with pytest.raises(ValueError, match="top_k"):
        ours("x", top_k=0)
    with pytest.raises(ValueError, match="function_to_apply"):
        ours("x", function_to_apply="relu")


def test_empty_string_is_a_valid_input(pipes):
    ours, theirs = pipes("bert", num_labels=3)
    assert_outputs_close(ours(""), theirs(""))


def test_text_longer_than_the_model(pipes):
    ours, theirs = pipes("bert", num_labels=3)
    long_text = "word " * 400  # 400 tokens; the tiny model reads at most 128 positions
    with pytest.raises(InputError, match="truncation=True"):
        ours(long_text)
    assert_outputs_close(ours(long_text, truncation=True), theirs(long_text, truncation=True))
    assert_outputs_close(ours([long_text, "short"], truncation=True, batch_size=2),
                         theirs([long_text, "short"], truncation=True))
