"""Parity of the BERT-family encoders and heads with the reference (transformers), on tiny
random checkpoints the reference saved: same hidden states and logits, padded batches too."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.modeling import ModelOutput

from ..conftest import ENCODER_TYPES, HEADS, random_batch

OUTPUT_KEYS = {
    "AutoModel": ["last_hidden_state"],
    "AutoModelForSequenceClassification": ["logits"],
    "AutoModelForTokenClassification": ["logits"],
    "AutoModelForQuestionAnswering": ["start_logits", "end_logits"],
    "AutoModelForMaskedLM": ["logits"],
}


def _pair(folder, head):
    ours = getattr(lightpipe, head).from_pretrained(folder)
    theirs = getattr(transformers, head).from_pretrained(folder).eval()
    return ours, theirs


def _inputs(model_type, config, with_types=False):
    pad = config.pad_token_id
    batch = random_batch(config.vocab_size, [9, 4, 13], pad, special=(pad,))
    if with_types:
        batch["token_type_ids"] = (torch.arange(13)[None, :] >= 6).long().expand(3, -1).clone()
    return batch


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
@pytest.mark.parametrize("head", HEADS)
def test_logits_match_reference(tiny_model, model_type, head):
    folder = tiny_model(model_type, head)
    ours, theirs = _pair(folder, head)
    assert type(ours).__name__ == type(theirs).__name__
    batch = _inputs(model_type, ours.config, with_types=model_type == "bert")
    with torch.inference_mode():
        got, want = ours(**batch), theirs(**batch)
    mask = batch["attention_mask"].bool()
    for key in OUTPUT_KEYS[head]:
        expected = want[key]
        if expected.dim() >= 2 and expected.shape[1] == mask.shape[1]:
            # Only real tokens count: values at padding positions are arbitrary in both.
            torch.testing.assert_close(got[key][mask], expected[mask], rtol=1e-4, atol=1e-5)
        else:
            torch.testing.assert_close(got[key], expected, rtol=1e-4, atol=1e-5)
    if head == "AutoModel" and "pooler_output" in want and want["pooler_output"] is not None:
        torch.testing.assert_close(got["pooler_output"], want["pooler_output"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
def test_padding_does_not_change_real_tokens(tiny_model, model_type):
    model = lightpipe.AutoModel.from_pretrained(tiny_model(model_type, "AutoModel"))
    pad = model.config.pad_token_id
    batch = random_batch(model.config.vocab_size, [7, 12], pad, special=(pad,))
    with torch.inference_mode():
        batched = model(**batch).last_hidden_state
        alone = model(input_ids=batch["input_ids"][:1, :7]).last_hidden_state
    torch.testing.assert_close(batched[0, :7], alone[0], rtol=1e-4, atol=1e-5)


def test_output_access_styles(tiny_model):
    model = lightpipe.AutoModelForSequenceClassification.from_pretrained(
        tiny_model("bert", "AutoModelForSequenceClassification"))
    out = model(input_ids=torch.tensor([[101, 2000, 102]]))
    assert isinstance(out, ModelOutput)
    assert out.logits is out["logits"] is out[0]
    assert out.logits.shape == (1, model.config.num_labels)
    with pytest.raises(AttributeError):
        out.start_logits


def test_hidden_states_match_reference(tiny_model):
    folder = tiny_model("bert", "AutoModel")
    ours, theirs = _pair(folder, "AutoModel")
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.inference_mode():
        got = ours(input_ids=ids, output_hidden_states=True).hidden_states
        want = theirs(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(got) == len(want) == ours.config.num_hidden_layers + 1
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_base_checkpoint_into_head_class_and_back(tiny_model, caplog):
    """A base-model checkpoint (no 'bert.' prefix) loads into a head class, whose head is then
    freshly initialised with a warning; a head checkpoint loads into the base class."""
    base_folder = tiny_model("bert", "AutoModel")
    with caplog.at_level("WARNING", logger="lightpipe"):
        clf = lightpipe.AutoModelForSequenceClassification.from_pretrained(base_folder, num_labels=3)
    assert clf.config.num_labels == 3 and clf.classifier.weight.shape[0] == 3
    assert "classifier.weight" in caplog.text and "newly initialised" in caplog.text
    base = lightpipe.AutoModel.from_pretrained(base_folder)
    torch.testing.assert_close(clf.bert.embeddings.word_embeddings.weight,
                               base.embeddings.word_embeddings.weight)
    head_folder = tiny_model("bert", "AutoModelForSequenceClassification")
    reference = transformers.AutoModel.from_pretrained(head_folder)
    ours = lightpipe.AutoModel.from_pretrained(head_folder)
    ids = torch.tensor([[101, 2023, 2003, 102]])
    with torch.inference_mode():
        torch.testing.assert_close(ours(input_ids=ids).last_hidden_state,
                                   reference(input_ids=ids).last_hidden_state, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_masked_lm_decoder_is_tied(tiny_model, model_type):
    model = lightpipe.AutoModelForMaskedLM.from_pretrained(tiny_model(model_type, "AutoModelForMaskedLM"))
    embeddings = model.get_submodule(model.base_model_prefix).get_input_embeddings().weight
    decoders = [p for n, p in model.named_parameters(remove_duplicate=False)
                if n.endswith(("decoder.weight", "vocab_projector.weight"))]
    assert decoders and all(p is embeddings for p in decoders)


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
def test_first_token_only_computes_the_first_row_alone(tiny_model, model_type):
    """Sequence classification runs the last layer on the first token only: that row must equal
    the full computation's, and the classifier's logits must not change with output_hidden_states
    (which takes the full path)."""
    base = lightpipe.AutoModel.from_pretrained(tiny_model(model_type, "AutoModel"))
    pad = base.config.pad_token_id
    batch = random_batch(base.config.vocab_size, [9, 4, 13], pad, special=(pad,))
    with torch.inference_mode():
        full = base(**batch).last_hidden_state
        first = base(**batch, first_token_only=True).last_hidden_state
    assert first.shape == (3, 1, full.shape[-1])
    torch.testing.assert_close(first[:, 0], full[:, 0], rtol=1e-4, atol=1e-5)
    classifier = lightpipe.AutoModelForSequenceClassification.from_pretrained(
        tiny_model(model_type, "AutoModelForSequenceClassification"))
    with torch.inference_mode():
        fast = classifier(**batch).logits
        slow = classifier(**batch, output_hidden_states=True)
    torch.testing.assert_close(fast, slow.logits, rtol=1e-4, atol=1e-5)
    assert len(slow.hidden_states) == classifier.config.get("num_hidden_layers", classifier.config.get("n_layers")) + 1
