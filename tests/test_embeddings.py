"""SentenceEmbeddings against sentence-transformers' own encode: the pooling, Dense and
Normalize modules and prompts a sentence-transformers folder declares (issue 22, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lightpipe
from lightpipe.errors import InputError

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The violin.",
             "Someone is playing a musical instrument in the park today, loudly."]


@pytest.fixture(scope="module")
def st_folder(tiny_model, tmp_path_factory):
    """``st_folder(pooling, dense, normalize, prompts)`` -> a sentence-transformers folder over a
    tiny BERT, saved by sentence-transformers."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    base = tiny_model("bert")
    cache = {}

    def build(pooling: str, dense: bool = False, normalize: bool = False, prompts=None):
        key = (pooling, dense, normalize, tuple(sorted((prompts or {}).items())))
        if key not in cache:
            transformer = Transformer(str(base), max_seq_length=12)
            size = transformer.get_embedding_dimension()
            modules = [transformer, Pooling(size, pooling_mode=pooling)]
            if dense:
                torch.manual_seed(1)
                modules.append(Dense(modules[1].get_embedding_dimension(), 16,
                                     activation_function=torch.nn.Tanh()))
            if normalize:
                modules.append(Normalize())
            model = SentenceTransformer(modules=modules, device="cpu", prompts=prompts or {},
                                        default_prompt_name="query" if prompts else None)
            folder = tmp_path_factory.mktemp(f"st_{pooling}")
            model.save(str(folder))
            cache[key] = folder
        return cache[key]

    return build


@pytest.mark.parametrize("pooling,dense,normalize", [
    ("cls", False, True), ("mean", False, False), ("max", True, True), ("lasttoken", False, False),
    ("weightedmean", True, False), ("mean_sqrt_len_tokens", False, True)])
def test_encode_equals_sentence_transformers(st_folder, pooling, dense, normalize):
    from sentence_transformers import SentenceTransformer

    folder = st_folder(pooling, dense, normalize)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, batch_size=3)
    ours = lightpipe.SentenceEmbeddings.from_pretrained(folder)
    got = ours.encode(SENTENCES, batch_size=3)
    assert got.shape == theirs.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, theirs, atol=2e-5, rtol=1e-4)  # max_seq_length 12 truncates too
    np.testing.assert_allclose(ours.encode(SENTENCES[0]), theirs[0], atol=2e-5, rtol=1e-4)
    assert ours.dimension == theirs.shape[1]


def test_prompts_and_normalize_embeddings(st_folder):
    from sentence_transformers import SentenceTransformer

    folder = st_folder("mean", prompts={"query": "query: ", "doc": "passage: "})
    theirs = SentenceTransformer(str(folder), device="cpu")
    ours = lightpipe.SentenceEmbeddings.from_pretrained(folder)
    for kwargs in ({}, {"prompt_name": "doc"}, {"prompt": "x "}, {"normalize_embeddings": True}):
        np.testing.assert_allclose(ours.encode(SENTENCES, **kwargs), theirs.encode(SENTENCES, **kwargs),
                                   atol=2e-5, rtol=1e-4)
    with pytest.raises(InputError, match="not one of this model's prompts"):
        ours.encode(SENTENCES, prompt_name="title")


def test_real_minilm_and_similarity(minilm_path):
    from sentence_transformers import SentenceTransformer

    ours = lightpipe.SentenceEmbeddings.from_pretrained(minilm_path)
    got = ours.encode(SENTENCES, convert_to_tensor=True)
    theirs = SentenceTransformer(str(minilm_path), device="cpu")
    want = theirs.encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours.similarity(got, got), theirs.similarity(want, want), atol=1e-4, rtol=0)
    assert ours.settings.pooling == ("mean",) and ours.settings.max_length == 256


def test_a_plain_checkpoint_is_mean_pooled_as_sentence_transformers_wraps_it(tiny_model):
    from sentence_transformers import SentenceTransformer

    folder = tiny_model("bert")
    theirs = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    ours = lightpipe.SentenceEmbeddings.from_pretrained(folder).encode(SENTENCES)
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-4)


def test_overrides_and_bad_input(tiny_model):
    model = lightpipe.SentenceEmbeddings.from_pretrained(tiny_model("bert"), pooling="cls", normalize=True)
    vectors = model.encode(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(InputError, match="Unknown pooling 'median'"):
        lightpipe.SentenceEmbeddings.from_pretrained(tiny_model("bert"), pooling="median")
    with pytest.raises(InputError, match="a string or a list of strings"):
        model.encode([1, 2])
