"""feature-extraction against the reference pipeline, and on the real MiniLM weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import ENCODER_TYPES, assert_outputs_close

TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "", "The girl is carrying a baby.",
         "A man is riding a horse through a very long and winding mountain road at dusk."]


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
def test_matches_reference(tiny_model, model_type):
    folder = tiny_model(model_type, "AutoModel")
    ours = lightpipe.pipeline("feature-extraction", model=folder)
    theirs = transformers.pipeline("feature-extraction", model=folder)
    single = ours(TEXTS[0])
    assert isinstance(single, list) and len(single) == 1 and isinstance(single[0][0][0], float)
    assert_outputs_close(single, theirs(TEXTS[0]))
    # The reference at batch_size=1 is the ground truth; ours must give the same at any batch
    # size (the reference's own batched output carries padding positions).
    expected = theirs(TEXTS)
    for batch_size in (1, 2, 8):
        assert_outputs_close(ours(TEXTS, batch_size=batch_size), expected)


def test_return_tensors_and_tokenizer_arguments(tiny_model):
    folder = tiny_model("bert", "AutoModel")
    ours = lightpipe.pipeline("feature-extraction", model=folder)
    theirs = transformers.pipeline("feature-extraction", model=folder)
    tensor = ours(TEXTS[4], return_tensors=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape[0] == 1 and tensor.shape[2] == 32
    torch.testing.assert_close(tensor, theirs(TEXTS[4], return_tensors=True))
    short = ours(TEXTS[4], tokenize_kwargs={"truncation": True, "max_length": 5})
    assert len(short[0]) == 5
    assert_outputs_close(short, theirs(TEXTS[4], tokenize_kwargs={"truncation": True, "max_length": 5}))
    with pytest.raises(ValueError, match="twice"):
        ours("x", truncation=True, tokenize_kwargs={"truncation": True})


def test_over_length_input(tiny_model):
    folder = tiny_model("bert", "AutoModel")
    ours = lightpipe.pipeline("feature-extraction", model=folder)
    long_text = "token " * 300
    with pytest.raises(InputError, match="truncation=True"):
        ours(long_text)
    result = ours(long_text, truncation=True)
    assert len(result[0]) == 128  # the tokenizer's model_max_length
    assert_outputs_close(result, transformers.pipeline("feature-extraction", model=folder)(long_text, truncation=True))


def test_non_string_input(tiny_model):
    ours = lightpipe.pipeline("feature-extraction", model=tiny_model("bert", "AutoModel"))
    with pytest.raises(InputTypeError, match="string"):
        ours(123)
    with pytest.raises(InputTypeError, match="bytes"):
        ours(["ok", b"bytes"])


# --- real weights ---
def _sentence_embeddings(token_vectors: list) -> np.ndarray:
    """Mean pooling then L2 normalisation, as the model's sentence-transformers config says."""
    rows = [np.asarray(v[0]).mean(axis=0) for v in token_vectors]
    matrix = np.stack(rows)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_minilm_embeddings_equal_the_reference(minilm_path):
    ours = lightpipe.pipeline("feature-extraction", model=minilm_path)
    theirs = transformers.pipeline("feature-extraction", model=str(minilm_path))
    got, want = ours(TEXTS, batch_size=4), theirs(TEXTS)
    assert_outputs_close(got, want, rtol=1e-4, atol=1e-4)


def test_minilm_related_sentences_score_closer(minilm_path):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "The new movie is awesome.", "The stock market fell sharply today."]
    ours = lightpipe.pipeline("feature-extraction", model=minilm_path)
    embeddings = _sentence_embeddings(ours(sentences, batch_size=4))
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.6  # eating / eating bread
    assert similarity[0, 1] > similarity[0, 2] + 0.3 and similarity[0, 1] > similarity[0, 3] + 0.3
    # sentence-transformers' own encode, the reference of the model's authors
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_path), device="cpu").encode(sentences)
    np.testing.assert_allclose(embeddings, reference, atol=2e-5)


def test_minilm_bfloat16_is_close_to_float32(minilm_path):
    fp32 = lightpipe.pipeline("feature-extraction", model=minilm_path)
    bf16 = lightpipe.pipeline("feature-extraction", model=minilm_path, dtype=torch.bfloat16)
    assert bf16.model.dtype == torch.bfloat16
    a = _sentence_embeddings(fp32(TEXTS[:2] + TEXTS[3:], batch_size=4))
    b = _sentence_embeddings(bf16(TEXTS[:2] + TEXTS[3:], batch_size=4))
    assert float(np.min(np.sum(a * b, axis=1))) > 0.99  # cosine between fp32 and bf16 embeddings
