"""token-classification (ner) against the reference pipeline: every aggregation strategy for
each encoder family, batched and not; stride windows over long texts; pre-split words;
caller offsets; ignore_labels; label schemes; bad input."""

from __future__ import annotations

import json
import types
import warnings

import numpy as np
import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

from ..conftest import ENCODER_TYPES, assert_outputs_close

HEAD = "AutoModelForTokenClassification"
BIO = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}
STRATEGIES = ["none", "simple", "first", "average", "max"]
# Punctuation, sub-word splits, accents, an emoji (an unknown token for WordPiece), CJK, and
# an empty text (no entities at all).
TEXTS = ["Hello Jean-Baptiste, I live in Montréal with 🙂 friends!",
         "Microsoft Corporation's HQ is in Redmond; naïve café résumé.",
         "",
         "unbelievably tokenization-heavy text: antidisestablishmentarianism in 東京",
         "a b c d e f"]
SENTENCE = "Barack Obama visited Paris, France and Montréal; the unbelievable café 🙂 was crowded."
LONG = " ".join([SENTENCE] * 20)  # 320 WordPiece tokens; the tiny models read 128 positions


def long_for(model_type: str) -> str:
    """A text of 300+ tokens: the small byte-level BPE needs about 3.5 times fewer words."""
    return LONG if model_type in ("bert", "distilbert") else " ".join([SENTENCE] * 6)
WORDS = [["Hello", "Jean-Baptiste", "naïve", "🙂!", "Montréal"], ["Paris", "is", "unbelievably", "big"]]


def labels(id2label: dict) -> dict:
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


@pytest.fixture(scope="module")
def pipes(tiny_model):
    """(ours, reference) pipelines per (model_type, label scheme), built once."""
    cache = {}

    def get(model_type="bert", id2label=None):
        id2label = id2label or BIO
        key = (model_type, json.dumps(id2label))
        if key not in cache:
            folder = tiny_model(model_type, HEAD, **labels(id2label))
            cache[key] = (lightpipe.pipeline("ner", model=folder),
                          transformers.pipeline("token-classification", model=folder))
        return cache[key]

    return get


def _unwrap(ours, theirs, path="output"):
    """Where the reference gives numpy scalars (its np.float32 scores), ours must be Python
    floats (issue 4: scores as Python floats); then compare values within tolerance."""
    if isinstance(theirs, np.generic):
        assert type(ours) is float, f"{path}: {type(ours).__name__} is not a Python float"
        return ours, float(theirs)
    if isinstance(theirs, dict) and isinstance(ours, dict) and set(ours) == set(theirs):
        assert list(ours) == list(theirs), f"{path}: key order {list(ours)} != {list(theirs)}"
        pairs = {k: _unwrap(ours[k], theirs[k], f"{path}[{k!r}]") for k in theirs}
        return {k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()}
    if isinstance(theirs, list) and isinstance(ours, list) and len(ours) == len(theirs):
        pairs = [_unwrap(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(ours, theirs))]
        return [a for a, _ in pairs], [b for _, b in pairs]
    return ours, theirs


def assert_same(ours, theirs):
    assert_outputs_close(*_unwrap(ours, theirs))


def _kwargs(strategy):
    return {} if strategy is None else {"aggregation_strategy": strategy}


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
@pytest.mark.parametrize("strategy", [None, *STRATEGIES])
def test_matches_reference(pipes, model_type, strategy):
    ours, theirs = pipes(model_type)
    kwargs = _kwargs(strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BPE fallback-heuristic warning (tested below)
        expected = theirs(TEXTS, **kwargs)
        for batch_size in (1, 3):
            assert_same(ours(TEXTS, batch_size=batch_size, **kwargs), expected)
        assert_same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
    if strategy not in (None, "none"):
        assert any("entity_group" in e for result in expected for e in result)
    else:
        assert all("index" in e for result in expected for e in result)


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
def test_stride_reads_the_whole_long_text(pipes, model_type):
    ours, theirs = pipes(model_type)
    long_text = long_for(model_type)
    texts = [long_text, TEXTS[0], long_text[:len(long_text) // 2]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for strategy in ("simple", "first", "average", "max"):
            kwargs = {"stride": 16, "ignore_labels": [], "aggregation_strategy": strategy}
            expected = theirs(texts, **kwargs)
            assert_same(ours(texts, batch_size=4, **kwargs), expected)
            # the windows reach the end of the text
            assert expected[0][-1]["end"] == len(long_text)
        assert_same(ours(texts, stride=16, aggregation_strategy="first"),  # batch_size 1
                    theirs(texts, stride=16, aggregation_strategy="first"))
        assert_same(ours(long_text, stride=90, aggregation_strategy="max"),
                    theirs(long_text, stride=90, aggregation_strategy="max"))


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_long_text_without_stride_is_truncated(pipes, model_type):
    ours, theirs = pipes(model_type)
    long_text = long_for(model_type)
    assert len(ours.tokenizer(long_text)["input_ids"]) > 300
    result = ours(long_text, ignore_labels=[])
    assert_same(result, theirs(long_text, ignore_labels=[]))
    assert len(result) < 128 and result[-1]["index"] <= 126
    assert result[-1]["end"] < len(long_text) // 2
    assert_same(ours([long_text, "short one"], batch_size=2, aggregation_strategy="simple"),
                theirs([long_text, "short one"], aggregation_strategy="simple"))


def test_stride_with_the_default_strategy(pipes):
    ours, theirs = pipes("bert")
    result = ours(LONG, stride=32, ignore_labels=[])  # per-token entries, windows merged
    assert_same(result, theirs(LONG, stride=32, ignore_labels=[]))
    assert result[-1]["end"] == len(LONG)


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
@pytest.mark.parametrize("strategy", ["none", "first", "average"])
def test_split_into_words(pipes, model_type, strategy):
    ours, theirs = pipes(model_type)
    kwargs = {"is_split_into_words": True, "aggregation_strategy": strategy}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(WORDS, **kwargs)
        assert_same(ours(WORDS, **kwargs), expected)
        assert_same(ours(WORDS * 3, batch_size=4, **kwargs), theirs(WORDS * 3, **kwargs))
        # one list of words is one text: a list holding its one result, as the reference gives
        single = ours(WORDS[0], delimiter="--", **kwargs)
        assert_same(single, theirs(WORDS[0], delimiter="--", **kwargs))
        assert len(single) == 1
        if strategy != "none":
            words = long_for(model_type).split()
            assert_same(ours(words, stride=20, **kwargs), theirs(words, stride=20, **kwargs))
    sentence = "--".join(WORDS[0])  # start/end point into the words joined by the delimiter
    for entity in single[0]:
        assert sentence[entity["start"]:entity["end"]]


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_offset_mapping_from_the_caller(pipes, model_type):
    ours, theirs = pipes(model_type)
    texts = ["hello paris", "big apple pie"]
    mappings = []
    for text in texts:  # the tokenizer's offsets, each token's start moved one to the right
        offsets = theirs.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        mappings.append([(a + 1, b) if b - a > 1 else (a, b) for a, b in offsets])
    for strategy in ("none", "first"):
        kwargs = {"aggregation_strategy": strategy, "ignore_labels": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = theirs(texts[0], offset_mapping=mappings[0], **kwargs)
            result = ours(texts[0], offset_mapping=mappings[0], **kwargs)
            assert_same(result, expected)
            plain = ours(texts[0], **kwargs)
        assert [e["start"] for e in result] != [e["start"] for e in plain]  # the offsets are used
    # A batch: each text uses its own mapping (the reference applies the first to all, a bug;
    # here each result equals the reference's single-text call).
    batched = ours(texts, offset_mapping=mappings, batch_size=2)
    for text, mapping, result in zip(texts, mappings, batched):
        assert_same(result, theirs(text, offset_mapping=mapping))


@pytest.mark.parametrize("model_type", ["bert", "xlm-roberta"])
def test_ignore_labels(pipes, model_type):
    ours, theirs = pipes(model_type)
    for ignore, strategies in (([], ("none", "max")), (["O", "B-PER"], ("none", "simple")),
                               (["ORG", "PER"], ("simple", "average"))):
        for strategy in strategies:
            kwargs = {"ignore_labels": ignore, "aggregation_strategy": strategy}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert_same(ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs))
    everything = ours(TEXTS[0], ignore_labels=[])
    assert len(everything) > len(ours(TEXTS[0]))
    assert "O" in {e["entity"] for e in everything}


@pytest.mark.parametrize("id2label", [
    {0: "O", 1: "PER", 2: "LOC", 3: "ORG"},                      # no B-/I- prefixes
    {0: "O", 1: "S-PER", 2: "B-PER", 3: "E-PER", 4: "B-LOC"},   # BIOES-style prefixes
    {0: "NOUN", 1: "VERB", 2: "B-X", 3: "I-X"},                 # no "O" label at all
])
@pytest.mark.parametrize("strategy", ["simple", "average"])
def test_label_schemes_group_as_the_reference(pipes, id2label, strategy):
    ours, theirs = pipes("bert", id2label)
    kwargs = {"aggregation_strategy": strategy}
    assert_same(ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs))


def test_strategy_spellings_and_construction_arguments(tiny_model, pipes):
    ours, theirs = pipes("bert")
    expected = theirs(TEXTS[1], aggregation_strategy="max")
    for spelling in ("MAX", "Max", AggregationStrategy.MAX,
                     transformers.pipelines.AggregationStrategy.MAX):
        assert_same(ours(TEXTS[1], aggregation_strategy=spelling), expected)
    folder = tiny_model("bert", HEAD, **labels(BIO))
    built = lightpipe.pipeline("ner", model=folder, aggregation_strategy="first", ignore_labels=[])
    reference = transformers.pipeline("ner", model=folder, aggregation_strategy="first",
                                      ignore_labels=[])
    assert_same(built(TEXTS), reference(TEXTS))
    assert_same(built(TEXTS, aggregation_strategy="none"), reference(TEXTS, aggregation_strategy="none"))


def test_task_alias_and_inference(tiny_model):
    folder = tiny_model("distilbert", HEAD, **labels(BIO))
    for pipe in (lightpipe.pipeline("ner", model=folder), lightpipe.pipeline(model=folder)):
        assert isinstance(pipe, TokenClassificationPipeline)
        assert pipe.task == "token-classification"
    assert_same(lightpipe.pipeline(model=folder)(TEXTS[0]),
                transformers.pipeline("ner", model=folder)(TEXTS[0]))


def test_half_precision_model(tiny_model):
    import torch

    folder = tiny_model("bert", HEAD, **labels(BIO))
    ours = lightpipe.pipeline("ner", model=folder, dtype=torch.bfloat16)
    theirs = transformers.pipeline("ner", model=folder, dtype=torch.bfloat16)
    assert ours.model.dtype == torch.bfloat16
    for strategy in ("none", "average"):  # float32 arithmetic, as the reference's
        assert_same(ours(TEXTS, aggregation_strategy=strategy),
                    theirs(TEXTS, aggregation_strategy=strategy))


def test_generator_in_iterator_out(pipes):
    ours, theirs = pipes("roberta")
    results = ours((text for text in TEXTS), batch_size=2, aggregation_strategy="simple")
    assert isinstance(results, types.GeneratorType)
    assert_same(list(results), theirs(TEXTS, aggregation_strategy="simple"))


def test_fallback_heuristic_warns_for_tokenizers_without_subword_marker(pipes):
    bpe, _ = pipes("roberta")
    wordpiece, _ = pipes("bert")
    with pytest.warns(UserWarning, match="fallback heuristic"):
        bpe(TEXTS[0], aggregation_strategy="first")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # WordPiece marks sub-words: no warning
        wordpiece(TEXTS[0], aggregation_strategy="first")
        bpe(TEXTS[0], aggregation_strategy="simple")


def test_scores_and_offsets(pipes):
    ours, _ = pipes("bert")
    text = TEXTS[0]
    for strategy in STRATEGIES:
        for entity in ours(text, aggregation_strategy=strategy, ignore_labels=[]):
            assert type(entity["score"]) is float and 0 < entity["score"] <= 1
            assert isinstance(entity["start"], int) and isinstance(entity["end"], int)
            assert 0 <= entity["start"] <= entity["end"] <= len(text)
    # the emoji is WordPiece's unknown token: its word is the original text
    words = [e["word"] for e in ours(text, ignore_labels=[])]
    assert "🙂" in words and "[UNK]" not in words


def test_bad_inputs(pipes):
    ours, theirs = pipes("bert")
    for bad in (42, None, [], {"text": "x"}, ("a tuple", "of texts"), 3.5):
        for pipe in (ours, theirs):  # a ValueError from both
            with pytest.raises(ValueError):
                pipe(bad)
    with pytest.raises(InputError, match="string.*int"):
        ours(["fine", 7])
    with pytest.raises(InputError, match="is_split_into_words"):
        ours("a string", is_split_into_words=True)
    with pytest.raises(InputError, match="list of words"):
        ours([["ok", 3]], is_split_into_words=True)
    with pytest.raises(KeyError):
        theirs("x", aggregation_strategy="bogus")
    with pytest.raises((KeyError, ValueError), match="aggregation_strategy='bogus'.*simple"):
        ours("x", aggregation_strategy="bogus")
    with pytest.raises(ValueError, match="model_max_length"):
        ours("x", stride=128, aggregation_strategy="simple")
    with pytest.raises(ValueError, match="special tokens"):  # the reference's tokenizer panics
        ours("x", stride=126, aggregation_strategy="simple")
    with pytest.raises(ValueError, match="non-negative"):
        ours("x", stride=-1, aggregation_strategy="simple")
    for pipe in (ours, theirs):
        with pytest.raises(ValueError, match="aggregation_strategy"):
            pipe("x", stride=10, aggregation_strategy="none")
        with pytest.raises(ValueError, match="same batch size"):
            pipe(["a", "b"], offset_mapping=[[(0, 0), (0, 1), (0, 0)]])
        with pytest.raises(TypeError):
            pipe("x", truncation=True)
    with pytest.raises(InputError, match="offset_mapping has 2 entries"):
        ours("hello paris", offset_mapping=[(0, 0), (0, 5)])
    assert ours("") == [] == theirs("")
