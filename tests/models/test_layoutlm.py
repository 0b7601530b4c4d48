"""LayoutLM (v1) against the reference: every head's outputs on padded batches with word
boxes, the checkpoint names, the Auto classes, and clear errors for bad boxes."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from tests.fixtures.document import *  # noqa: F401,F403  (until tests/conftest.py imports it)
from tests.fixtures.document import LAYOUTLM_KINDS

HEADS = {
    "AutoModel": "LayoutLMModel",
    "AutoModelForDocumentQuestionAnswering": "LayoutLMForQuestionAnswering",
    "AutoModelForQuestionAnswering": "LayoutLMForQuestionAnswering",
    "AutoModelForTokenClassification": "LayoutLMForTokenClassification",
    "AutoModelForSequenceClassification": "LayoutLMForSequenceClassification",
    "AutoModelForMaskedLM": "LayoutLMForMaskedLM",
}


def _batch(config, lengths=(11, 7, 3), seed=0):
    """Right-padded random ids with random valid boxes (padding boxes zero)."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    ids = torch.randint(5, config.vocab_size, (len(lengths), longest), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids = ids.masked_fill(mask == 0, config.pad_token_id)
    corner = torch.randint(0, 600, (len(lengths), longest, 2), generator=generator)
    size = torch.randint(0, 400, (len(lengths), longest, 2), generator=generator)
    bbox = torch.cat([corner, corner + size], dim=-1) * mask[..., None]
    types = torch.randint(0, config.type_vocab_size, ids.shape, generator=generator) * mask
    return {"input_ids": ids, "attention_mask": mask, "bbox": bbox, "token_type_ids": types}


def _pair(folder, head):
    ours = getattr(lightpipe, head).from_pretrained(folder)
    # The reference's AutoModelForQuestionAnswering lacks LayoutLM: its class, by name.
    theirs = getattr(transformers, HEADS[head]).from_pretrained(folder).eval()
    return ours, theirs


@pytest.mark.parametrize("kind", LAYOUTLM_KINDS)
@pytest.mark.parametrize("head", list(HEADS))
def test_heads_match_reference(layoutlm_model, kind, head):
    built = "AutoModelForDocumentQuestionAnswering" if head == "AutoModelForQuestionAnswering" else head
    ours, theirs = _pair(layoutlm_model(kind, built), head)
    assert type(ours).__name__ == HEADS[head]
    batch = _batch(theirs.config)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        want = theirs(**batch, output_hidden_states=True)
        got = ours(**batch, output_hidden_states=True)
    if head == "AutoModel":
        torch.testing.assert_close(got.last_hidden_state[real], want.last_hidden_state[real],
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=1e-4, atol=1e-5)
    elif "QuestionAnswering" in head:
        torch.testing.assert_close(got.start_logits[real], want.start_logits[real], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.end_logits[real], want.end_logits[real], rtol=1e-4, atol=1e-5)
    elif head == "AutoModelForSequenceClassification":
        torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-5)
    else:
        torch.testing.assert_close(got.logits[real], want.logits[real], rtol=1e-4, atol=1e-5)
    assert len(got.hidden_states) == len(want.hidden_states)
    for ours_layer, reference_layer in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(ours_layer[real], reference_layer[real], rtol=1e-4, atol=1e-5)


def test_parameter_names_are_the_checkpoints(layoutlm_model):
    from safetensors import safe_open

    folder = layoutlm_model("roberta")
    ours = lightpipe.AutoModelForDocumentQuestionAnswering.from_pretrained(folder)
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        saved = set(weights.keys())
    names = set(ours.state_dict())
    assert "layoutlm.embeddings.x_position_embeddings.weight" in names
    assert names <= saved
    # The only checkpoint entries the QA head leaves out are the pooler it never reads.
    assert {name for name in saved - names} == {"layoutlm.pooler.dense.weight",
                                                "layoutlm.pooler.dense.bias"}


def test_without_boxes_and_positional_arguments(layoutlm_model):
    """No bbox means all-zero boxes (as the reference); positional order is the reference's
    (input_ids, bbox, attention_mask, ...)."""
    ours, theirs = _pair(layoutlm_model("bert"), "AutoModelForDocumentQuestionAnswering")
    batch = _batch(theirs.config, lengths=(6, 6))
    with torch.no_grad():
        want = theirs(input_ids=batch["input_ids"]).start_logits
        want_boxes = theirs(batch["input_ids"], batch["bbox"]).end_logits
    torch.testing.assert_close(ours(input_ids=batch["input_ids"]).start_logits, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours(batch["input_ids"], batch["bbox"]).end_logits, want_boxes,
                               rtol=1e-4, atol=1e-5)


def test_bfloat16(layoutlm_model):
    folder = layoutlm_model("roberta")
    ours = lightpipe.AutoModelForDocumentQuestionAnswering.from_pretrained(folder, dtype=torch.bfloat16)
    theirs = transformers.AutoModelForDocumentQuestionAnswering.from_pretrained(folder).eval()
    batch = _batch(theirs.config)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        want = theirs(**batch).start_logits
    got = ours(**batch).start_logits
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float()[real], want[real], rtol=0.05, atol=0.1)


@pytest.mark.parametrize("bbox, message", [
    (lambda b: b + 2000, "must lie in"),
    (lambda b: b - 5000, "must lie in"),
    (lambda b: b.float(), "integers"),
    (lambda b: b[..., [2, 1, 0, 3]] + torch.tensor([1, 0, 0, 0]), "swapped"),
    (lambda b: b[..., :3], "shape"),
])
def test_bad_boxes_are_clear_errors(layoutlm_model, bbox, message):
    ours = lightpipe.AutoModelForDocumentQuestionAnswering.from_pretrained(layoutlm_model("roberta"))
    batch = _batch(ours.config, lengths=(5,))
    batch["bbox"] = bbox(batch["bbox"] + torch.tensor([0, 0, 1, 1]))
    with pytest.raises(InputError, match=message):
        ours(**batch)


def test_too_long_is_a_clear_error(layoutlm_model):
    ours = lightpipe.AutoModelForDocumentQuestionAnswering.from_pretrained(layoutlm_model("bert"))
    ids = torch.full((1, ours.config.max_position_embeddings + 1), 1000)
    with pytest.raises(InputError, match="positions"):
        ours(input_ids=ids)
