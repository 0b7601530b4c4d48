"""fill-mask against the reference pipeline: every argument, batched and not, for each encoder
family (BERT/DistilBERT with [MASK], RoBERTa/XLM-R with <mask>); several masks; bad input."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import ENCODER_TYPES, assert_outputs_close

HEAD = "AutoModelForMaskedLM"
# A wide initialisation spreads the tied LM head's logits, so top-k order is well defined.
SPREAD = dict(initializer_range=0.5)
MASK_TOKENS = {"bert": "[MASK]", "distilbert": "[MASK]", "roberta": "<mask>", "xlm-roberta": "<mask>"}


def texts(mask: str) -> list[str]:
    """Inputs of different lengths, one with two masks."""
    return [f"Paris is the {mask} of France.", f"{mask}",
            f"A much longer sentence about the weather, which was sunny for most of the {mask} "
            "and then turned to rain.", f"I {mask} this movie, it is {mask}!", f"hello {mask} world"]


@pytest.fixture(scope="module")
def pipes(tiny_model):
    """(ours, reference) per model type, built once."""
    cache = {}

    def get(model_type="bert"):
        if model_type not in cache:
            folder = tiny_model(model_type, HEAD, **SPREAD)
            cache[model_type] = (lightpipe.pipeline("fill-mask", model=folder),
                                 transformers.pipeline("fill-mask", model=folder))
        return cache[model_type]

    return get


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1},
                                    {"targets": ["the", "Paris", "movie", "rain", "xyzzyq"]},
                                    {"targets": "the", "top_k": 2}])
def test_matches_reference(pipes, model_type, kwargs):
    ours, theirs = pipes(model_type)
    mask = MASK_TOKENS[model_type]
    assert ours.tokenizer.mask_token == mask
    inputs = texts(mask)
    single = ours(inputs[0], **kwargs)
    assert isinstance(single, list) and isinstance(single[0]["score"], float)
    assert isinstance(single[0]["token"], int)
    assert_outputs_close(single, theirs(inputs[0], **kwargs))
    # The reference at batch_size=1 is the ground truth; ours gives it at any batch size.
    expected = theirs(inputs, **kwargs)
    for batch_size in (1, 3):
        assert_outputs_close(ours(inputs, batch_size=batch_size, **kwargs), expected)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_several_masks_give_one_list_per_mask(pipes, model_type):
    ours, theirs = pipes(model_type)
    mask = MASK_TOKENS[model_type]
    text = f"The {mask} sat on the {mask} near the {mask}."
    result = ours(text, top_k=2)
    assert len(result) == 3 and all(len(row) == 2 for row in result)
    # The other masks stay in each sequence (special tokens are kept when there are several).
    assert all(mask in entry["sequence"] for row in result for entry in row)
    assert_outputs_close(result, theirs(text, top_k=2))
    assert_outputs_close(ours([text, text], batch_size=2, top_k=2), theirs([text, text], top_k=2))


def test_output_shapes_by_input_form(pipes):
    ours, theirs = pipes("bert")
    one = ours("Paris is the [MASK] of France.")
    assert len(one) == 5 and set(one[0]) == {"score", "token", "token_str", "sequence"}
    assert one == sorted(one, key=lambda entry: -entry["score"])
    # A list of one text answers as the text alone, as the reference does.
    assert_outputs_close(ours(["Paris is the [MASK] of France."]), one)
    assert_outputs_close(theirs(["Paris is the [MASK] of France."]), one)
    two = ours(["Paris is the [MASK] of France.", "hello [MASK]"])
    assert len(two) == 2 and len(two[0]) == 5
    assert_outputs_close(list(ours(iter(["hello [MASK]"] * 3), batch_size=2)),
                         theirs(["hello [MASK]"] * 3))


def test_targets_out_of_vocabulary_warn_and_take_the_first_sub_token(pipes, caplog):
    ours, theirs = pipes("bert")
    text = "Paris is the [MASK] of France."
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        result = ours(text, targets=["Paris", "lightpipe"])
    assert "`Paris` does not exist in the model vocabulary. Replacing with `paris`" in caplog.text
    first_piece = ours.tokenizer.tokenize("lightpipe")[0]
    assert f"Replacing with `{first_piece}`" in caplog.text
    assert {entry["token"] for entry in result} == {
        ours.tokenizer.convert_tokens_to_ids("paris"), ours.tokenizer.convert_tokens_to_ids(first_piece)}
    assert_outputs_close(result, theirs(text, targets=["Paris", "lightpipe"]))


def test_duplicate_targets_and_top_k_capped(pipes):
    ours, theirs = pipes("bert")
    text = "Paris is the [MASK] of France."
    result = ours(text, targets=["paris", "paris", "Paris"], top_k=10)
    assert len(result) == 1 and result[0]["token_str"] == "paris"
    assert_outputs_close(result, theirs(text, targets=["paris", "paris", "Paris"], top_k=10))
    result = ours(text, targets=["paris", "london", "rome"], top_k=10)
    assert len(result) == 3
    assert_outputs_close(result, theirs(text, targets=["paris", "london", "rome"], top_k=10))
    # The score of a target is its probability over the whole vocabulary.
    encoded = theirs.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = theirs.model(**encoded).logits[0]
    position = encoded["input_ids"][0].tolist().index(theirs.tokenizer.mask_token_id)
    full = logits[position].softmax(-1)
    for entry in result:
        assert entry["score"] == pytest.approx(full[entry["token"]].item(), rel=1e-4)


def test_targets_that_tokenize_to_nothing(pipes, caplog):
    ours, theirs = pipes("bert")
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        result = ours("hello [MASK]", targets=["", "paris"])
    assert "We cannot replace it with anything meaningful, ignoring it" in caplog.text
    assert_outputs_close(result, theirs("hello [MASK]", targets=["", "paris"]))
    with pytest.raises(ValueError, match="targets"):
        ours("hello [MASK]", targets=[""])
    with pytest.raises(ValueError):
        theirs("hello [MASK]", targets=[""])
    with pytest.raises(ValueError, match="targets"):
        ours("hello [MASK]", targets=[])


@pytest.mark.parametrize("model_type", ["distilbert", "xlm-roberta"])
def test_tokenizer_kwargs_truncation(pipes, model_type):
    ours, theirs = pipes(model_type)
    mask = MASK_TOKENS[model_type]
    long_text = f"A {mask}. " + "...with a large amount of repeated text appended. " * 30
    kwargs = {"tokenizer_kwargs": {"truncation": True}}
    result = ours([long_text, f"short {mask}"], batch_size=2, **kwargs)
    assert len(result[0][0]["sequence"]) < len(long_text) / 2  # cut to 128 tokens
    assert_outputs_close(result, theirs([long_text, f"short {mask}"], **kwargs))
    kwargs = {"tokenizer_kwargs": {"truncation": True, "max_length": 8}}
    assert_outputs_close(ours(long_text, **kwargs), theirs(long_text, **kwargs))


def test_mask_truncated_away_or_missing_is_a_clear_error(pipes):
    ours, theirs = pipes("bert")
    with pytest.raises(InputError, match=r"No mask_token \(\[MASK\]\) found"):
        ours("There is no mask here.")
    with pytest.raises(Exception, match="No mask_token"):
        theirs("There is no mask here.")
    with pytest.raises(InputError, match="No mask_token"):
        ours(["fine [MASK]", "not fine"], batch_size=2)
    with pytest.raises(InputError, match="No mask_token"):  # truncated off the end
        ours("a b c d e f g h [MASK]", tokenizer_kwargs={"truncation": True, "max_length": 4})
    roberta, _ = pipes("roberta")
    with pytest.raises(InputError, match=r"No mask_token \(<mask>\)"):
        roberta("The BERT mask [MASK] is not RoBERTa's.")


def test_bad_arguments(pipes, tiny_model):
    ours, _ = pipes("bert")
    with pytest.raises(InputTypeError):
        ours(42)
    with pytest.raises(ValueError, match="top_k"):
        ours("hello [MASK]", top_k=0)
    with pytest.raises(TypeError):
        ours("hello [MASK]", not_an_argument=1)
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(tiny_model("bert", HEAD, **SPREAD))
    tokenizer.mask_token = None
    with pytest.raises(InputError, match="mask token"):
        lightpipe.pipeline("fill-mask", model=tiny_model("bert", HEAD, **SPREAD), tokenizer=tokenizer)


def test_pipeline_defaults_from_construction(tiny_model):
    folder = tiny_model("roberta", HEAD, **SPREAD)
    ours = lightpipe.pipeline("fill-mask", model=folder, top_k=2, batch_size=3)
    theirs = transformers.pipeline("fill-mask", model=folder, top_k=2)
    inputs = texts("<mask>")
    result = ours(inputs)
    assert all(len(entry) == 2 for entry in result if isinstance(entry[0], dict))
    assert_outputs_close(result, theirs(inputs))
