"""Decoder sequence-classification heads (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, Gemma 2,
Gemma 3 text) against the reference: a bias-free score layer at each row's last non-pad token,
on left- and right-padded batches; the Auto class and the text-classification pipeline."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..conftest import PAD
from .decoder_checks import TEXTS  # noqa: F401  (also registers the families' tiny sizes)

LABELS = dict(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
              label2id={"neg": 0, "neu": 1, "pos": 2})
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma2", "gemma3_text"]
_BUILT: dict = {}


def _classifier(decoder, tmp_path_factory, model_type: str):
    """A reference classifier over the tiny decoder's config and tokenizer, score widened."""
    if model_type not in _BUILT:
        source = decoder(model_type)
        config = transformers.AutoConfig.from_pretrained(source)
        config.update({**LABELS, "pad_token_id": PAD})  # Mistral's tiny config has none
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() > 1:
                    param.normal_(0.0, 0.5 if name.startswith("score") else 0.25)
        folder = tmp_path_factory.mktemp(f"{model_type}_classifier")
        model.save_pretrained(folder)
        transformers.AutoTokenizer.from_pretrained(source).save_pretrained(folder)
        _BUILT[model_type] = folder
    return _BUILT[model_type]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_logits_match_reference(decoder, tmp_path_factory, model_type):
    folder = _classifier(decoder, tmp_path_factory, model_type)
    ours = lightpipe.AutoModelForSequenceClassification.from_pretrained(folder)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert type(ours).__name__ == type(theirs).__name__
    for side in ("left", "right"):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, padding_side=side)
        inputs = dict(tokenizer(TEXTS, return_tensors="pt", padding=True))
        with torch.no_grad():
            want = theirs(**inputs).logits
        torch.testing.assert_close(ours(**inputs).logits, want, rtol=1e-4, atol=1e-4)


def test_text_classification_pipeline_matches_reference(decoder, tmp_path_factory):
    folder = _classifier(decoder, tmp_path_factory, "qwen3")
    ours = lightpipe.pipeline("text-classification", model=str(folder))
    theirs = transformers.pipeline("text-classification", model=str(folder))
    for kwargs in ({}, {"top_k": None}):
        got, want = ours(TEXTS, batch_size=2, **kwargs), theirs(TEXTS, **kwargs)
        flat = lambda rows: [r for row in rows for r in (row if isinstance(row, list) else [row])]
        assert [r["label"] for r in flat(got)] == [r["label"] for r in flat(want)]
        for a, b in zip(flat(got), flat(want)):
            assert abs(a["score"] - b["score"]) < 1e-4


def test_no_pad_token_reads_one_text_at_a_time(decoder, tmp_path_factory):
    model = lightpipe.AutoModelForSequenceClassification.from_pretrained(
        _classifier(decoder, tmp_path_factory, "llama"))
    model.config.pad_token_id = None
    ids = torch.randint(6, 300, (2, 5))
    with pytest.raises(InputError, match="pad_token_id"):
        model(input_ids=ids)
    assert model(input_ids=ids[:1]).logits.shape == (1, 3)
