"""zero-shot-classification against the reference pipeline: every argument, batched and not, for
each encoder family; NLI label layouts (lower case, capitals, no entailment label); all
(sequence, label) pairs in shared batches; bad input."""

from __future__ import annotations

import logging

import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import ENCODER_TYPES, assert_outputs_close

HEAD = "AutoModelForSequenceClassification"
SEQUENCES = ["I have a problem with my iphone that needs to be resolved asap!!", "ok",
             "A much longer sentence about the weather, which was sunny for most of the afternoon "
             "and then turned to rain, so the match was called off.", "Paris is nice"]
LABELS = ["urgent", "not urgent", "phone", "tablet", "computer"]
# A wide initialisation spreads the logits, so labels are ranked apart, not by float noise.
SPREAD = dict(initializer_range=0.5)


def nli_labels(*names: str) -> dict:
    return dict(num_labels=len(names), id2label=dict(enumerate(names)),
                label2id={name: i for i, name in enumerate(names)}, **SPREAD)


LAYOUTS = {
    "mnli": nli_labels("contradiction", "neutral", "entailment"),
    "capitals": nli_labels("ENTAILMENT", "NEUTRAL", "CONTRADICTION"),  # entailment first
    "no_entailment": nli_labels("negative", "neutral", "positive"),
}


@pytest.fixture(scope="module")
def pipes(tiny_model):
    """(ours, reference) per (model type, label layout), built once."""
    cache = {}

    def get(model_type="bert", layout="mnli", **overrides):
        key = (model_type, layout, tuple(sorted(overrides.items())))
        if key not in cache:
            folder = tiny_model(model_type, HEAD, **LAYOUTS[layout], **overrides)
            cache[key] = (lightpipe.pipeline("zero-shot-classification", model=folder),
                          transformers.pipeline("zero-shot-classification", model=folder))
        return cache[key]

    return get


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
@pytest.mark.parametrize("kwargs", [
    {"candidate_labels": LABELS},
    {"candidate_labels": LABELS, "multi_label": True},
    {"candidate_labels": "sports, politics ,, cinema", "hypothesis_template": "The topic is {}."},
    {"candidate_labels": ["weather"]},  # one label: scored on its own, as with multi_label
])
def test_matches_reference(pipes, model_type, kwargs):
    ours, theirs = pipes(model_type)
    single = ours(SEQUENCES[0], **kwargs)
    assert set(single) == {"sequence", "labels", "scores"} and single["sequence"] == SEQUENCES[0]
    assert single["scores"] == sorted(single["scores"], reverse=True)
    assert_outputs_close(single, theirs(SEQUENCES[0], **kwargs))
    expected = theirs(SEQUENCES, **kwargs)
    for batch_size in (1, 4):
        assert_outputs_close(ours(SEQUENCES, batch_size=batch_size, **kwargs), expected)


def test_scores_sum_to_one_unless_multi_label(pipes):
    ours, _ = pipes("bert")
    result = ours(SEQUENCES[0], candidate_labels=LABELS)
    assert sorted(result["labels"]) == sorted(LABELS)
    assert sum(result["scores"]) == pytest.approx(1.0, abs=1e-5)
    independent = ours(SEQUENCES[0], candidate_labels=LABELS, multi_label=True)
    assert sum(independent["scores"]) != pytest.approx(1.0, abs=1e-3)
    assert all(0.0 < score < 1.0 for score in independent["scores"])


@pytest.mark.parametrize("layout", ["capitals", "no_entailment"])
@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_label_layouts(pipes, layout, model_type, caplog):
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        ours, theirs = pipes(model_type, layout)
    if layout == "capitals":
        assert ours.entailment_id == 0 and ours.contradiction_id == -1
    else:
        assert ours.entailment_id == -1 and ours.contradiction_id == 0
        assert "Failed to determine 'entailment' label id" in caplog.text
    for kwargs in ({}, {"multi_label": True}):
        expected = theirs(SEQUENCES, candidate_labels=LABELS, **kwargs)
        assert_outputs_close(ours(SEQUENCES, candidate_labels=LABELS, batch_size=3, **kwargs), expected)


def test_entailment_found_in_any_case(tiny_model):
    folder = tiny_model("distilbert", HEAD, **nli_labels("Contradiction", "Entailment", "Neutral"))
    ours = lightpipe.pipeline("zero-shot-classification", model=folder)
    assert ours.entailment_id == 1 and ours.contradiction_id == 0
    theirs = transformers.pipeline("zero-shot-classification", model=folder)
    assert_outputs_close(ours(SEQUENCES[:2], candidate_labels=LABELS, multi_label=True),
                         theirs(SEQUENCES[:2], candidate_labels=LABELS, multi_label=True))


def test_all_pairs_share_batches(pipes):
    """One piece per (sequence, label): 4 sequences x 5 labels at batch_size 8 are 3 forward
    passes of 8, 8 and 4 pairs, not one pass per label."""
    ours, theirs = pipes("bert")
    shapes = []
    handle = ours.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        result = ours(SEQUENCES, candidate_labels=LABELS, batch_size=8)
    finally:
        handle.remove()
    assert sorted(shape[0] for shape in shapes) == [4, 8, 8]
    assert_outputs_close(result, theirs(SEQUENCES, candidate_labels=LABELS))


def test_input_forms(pipes):
    ours, theirs = pipes("roberta")
    # Labels as the second positional argument, as in the reference.
    assert_outputs_close(ours(SEQUENCES[0], LABELS), theirs(SEQUENCES[0], LABELS))
    assert_outputs_close(ours(SEQUENCES[0], "phone, tablet"), theirs(SEQUENCES[0], "phone, tablet"))
    one = ours([SEQUENCES[1]], candidate_labels=LABELS)
    assert isinstance(one, list) and len(one) == 1
    assert_outputs_close(one, theirs([SEQUENCES[1]], candidate_labels=LABELS))
    streamed = ours(iter(SEQUENCES), candidate_labels=LABELS, batch_size=2)
    assert not isinstance(streamed, list)
    assert_outputs_close(list(streamed), theirs(SEQUENCES, candidate_labels=LABELS))
    # Duplicate labels are kept, each scored.
    duplicated = ours(SEQUENCES[0], candidate_labels=["phone", "phone", "tablet"])
    assert sorted(duplicated["labels"]) == ["phone", "phone", "tablet"]
    assert_outputs_close(duplicated, theirs(SEQUENCES[0], candidate_labels=["phone", "phone", "tablet"]))


def test_defaults_given_at_construction(tiny_model):
    folder = tiny_model("xlm-roberta", HEAD, **LAYOUTS["mnli"])
    kwargs = dict(candidate_labels=LABELS, hypothesis_template="This text is about {}.",
                  multi_label=True)
    ours = lightpipe.pipeline("zero-shot-classification", model=folder, batch_size=4, **kwargs)
    theirs = transformers.pipeline("zero-shot-classification", model=folder, **kwargs)
    assert_outputs_close(ours(SEQUENCES), theirs(SEQUENCES))
    # A call's own arguments win over the defaults.
    assert_outputs_close(ours(SEQUENCES[0], candidate_labels="a, b", multi_label=False),
                         theirs(SEQUENCES[0], candidate_labels="a, b", multi_label=False))


def test_long_premise_is_truncated_not_the_hypothesis(pipes):
    ours, theirs = pipes("bert")
    long_text = "The weather was sunny and warm all afternoon. " * 40
    result = ours([long_text, "short"], candidate_labels=LABELS, batch_size=4)
    assert_outputs_close(result, theirs([long_text, "short"], candidate_labels=LABELS))


def test_hypothesis_longer_than_the_limit_is_kept_whole(tiny_model):
    # The tokenizer's limit is 128 tokens; this model accepts 256 positions, so the reference's
    # fallback (no truncation when only the premise cannot make room) runs through the model.
    folder = tiny_model("bert", HEAD, **LAYOUTS["mnli"], max_position_embeddings=256)
    ours = lightpipe.pipeline("zero-shot-classification", model=folder)
    theirs = transformers.pipeline("zero-shot-classification", model=folder)
    template = "This example is {} " + "and more words " * 45
    kwargs = dict(candidate_labels=["phone", "tablet"], hypothesis_template=template)
    lengths = []
    handle = ours.model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        result = ours(["short", "ok then"], batch_size=2, **kwargs)
    finally:
        handle.remove()
    assert min(lengths) > 128
    assert_outputs_close(result, theirs(["short", "ok then"], **kwargs))


def test_bad_input_is_a_clear_error(pipes):
    ours, theirs = pipes("bert")
    with pytest.raises(InputError, match="candidate_labels"):
        ours(SEQUENCES[0])
    for labels in ([], "", " , "):
        with pytest.raises(InputError, match="candidate labels"):
            ours(SEQUENCES[0], candidate_labels=labels)
        with pytest.raises(ValueError):
            theirs(SEQUENCES[0], candidate_labels=labels)
    with pytest.raises(InputError, match="has no {}"):
        ours(SEQUENCES[0], candidate_labels=LABELS, hypothesis_template="No place for the label.")
    with pytest.raises(ValueError, match="not able to be formatted"):
        theirs(SEQUENCES[0], candidate_labels=LABELS, hypothesis_template="No place for the label.")
    with pytest.raises(InputError, match="could not be formatted"):
        ours(SEQUENCES[0], candidate_labels=LABELS, hypothesis_template="About {label}.")
    with pytest.raises(InputError, match="must be a string"):
        ours(SEQUENCES[0], candidate_labels=LABELS, hypothesis_template=42)
    with pytest.raises(InputError, match="empty sequence"):
        ours(["fine", ""], candidate_labels=LABELS)
    with pytest.raises(ValueError):
        theirs("", candidate_labels=LABELS)
    with pytest.raises(InputTypeError):
        ours(42, candidate_labels=LABELS)
    with pytest.raises(InputError, match="candidate_labels must be"):
        ours(SEQUENCES[0], candidate_labels=42)
    with pytest.raises(ValueError, match="extra arguments"):
        ours(SEQUENCES[0], LABELS, candidate_labels=LABELS)
    with pytest.raises(ValueError, match="extra arguments"):
        theirs(SEQUENCES[0], LABELS, candidate_labels=LABELS)
