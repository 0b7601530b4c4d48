"""TAPAS parity with the reference: the encoder's hidden states and pooler, and the
question-answering head's cell logits and aggregation logits, on padded batches of real
table encodings (relative positions per cell and absolute ones, with and without the
aggregation head)."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.config import Config
from lightpipe.models import model_class

from ..fixtures.table import (QUERIES, TABLE, reference_frame, tapas_nopool_path,  # noqa: F401
                              tapas_path)

HEAD = "AutoModelForTableQuestionAnswering"


def _batch(folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(table=reference_frame(TABLE), queries=QUERIES, padding=True,
                          return_tensors="pt"))


@pytest.fixture(params=["wtq", "sqa"])
def folder(request, tapas_path, tapas_nopool_path):
    return tapas_path if request.param == "wtq" else tapas_nopool_path


def test_head_logits_match_reference(folder):
    config = Config.from_folder(folder)
    ours = model_class(config, HEAD).from_pretrained(folder)
    theirs = transformers.TapasForQuestionAnswering.from_pretrained(folder).eval()
    assert type(ours).__name__ == "TapasForQuestionAnswering"
    batch = _batch(folder)
    assert batch["attention_mask"].min() == 0  # the batch is padded
    with torch.inference_mode():
        got, want = ours(**batch), theirs(**batch)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got.logits[mask], want.logits[mask], rtol=1e-4, atol=1e-4)
    if want.logits_aggregation is None:
        assert got.get("logits_aggregation") is None
    else:
        torch.testing.assert_close(got.logits_aggregation, want.logits_aggregation,
                                   rtol=1e-4, atol=1e-5)


def test_encoder_matches_reference(folder):
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.TapasModel.from_pretrained(folder).eval()
    assert type(ours).__name__ == "TapasModel"
    batch = _batch(folder)
    with torch.inference_mode():
        got, want = ours(**batch), theirs(**batch)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got.last_hidden_state[mask], want.last_hidden_state[mask],
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=1e-4, atol=1e-5)


def test_no_token_types_defaults_to_zeros(tapas_path):
    config = Config.from_folder(tapas_path)
    ours = model_class(config, HEAD).from_pretrained(tapas_path)
    theirs = transformers.TapasForQuestionAnswering.from_pretrained(tapas_path).eval()
    ids = torch.tensor([[3, 10, 11, 12, 4, 20, 21]])
    with torch.inference_mode():
        got, want = ours(input_ids=ids), theirs(input_ids=ids)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
