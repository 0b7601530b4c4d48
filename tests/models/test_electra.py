"""ELECTRA against the reference on tiny random checkpoints: every head's outputs and hidden
states (padded batches, token types) with an embedding narrower than the encoder (the small
models' projection) and as wide (base, large), the discriminator (ElectraForPreTraining, what
google/electra-*-discriminator are) and the generator's masked LM; each pipeline the family
serves (text-classification, token-classification, feature-extraction, fill-mask,
question-answering)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import lightpipe
from lightpipe.models.electra import ElectraForPreTraining

from ..conftest import random_batch
from .encoder_checks import (OUTPUT_KEYS, TEXTS, assert_dispatch, assert_model_matches,
                            assert_pipeline_matches, assert_question_answering_matches,
                            checkpoints)

SIZES = dict(embedding_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=37, max_position_embeddings=128, hidden_act="gelu_new")
HEADS = [*OUTPUT_KEYS, "ElectraForPreTraining"]
SENTIMENT = dict(id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
NER = dict(id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
           label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4})


@pytest.fixture(scope="module")
def tokenizer_path(minilm_path, tmp_path_factory):
    """MiniLM's WordPiece tokenizer with no tokenizer class named, as google/electra-* ship
    it: the model type picks BertTokenizer (token types)."""
    folder = tmp_path_factory.mktemp("electra_tokenizer")
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path / name, folder / name)
    settings = json.loads((minilm_path / "tokenizer_config.json").read_text())
    settings.pop("tokenizer_class", None)
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 128}))
    return folder


@pytest.fixture(scope="module")
def build(tmp_path_factory, tokenizer_path):
    made = checkpoints(tmp_path_factory, tokenizer_path, "electra")
    return lambda head="AutoModel", **config: made(head, **{**SIZES, **config})


def _batch() -> dict:
    batch = random_batch(30522, [11, 5, 17], pad_id=0, special=(0,))
    batch["token_type_ids"] = (torch.arange(17)[None, :] >= 7).long().expand(3, -1).clone()
    return batch


def _ours(head: str):
    return ElectraForPreTraining if head == "ElectraForPreTraining" else None


@pytest.mark.parametrize("embedding_size", [24, 32])
@pytest.mark.parametrize("head", HEADS)
def test_heads_match_reference(build, head, embedding_size):
    folder = build(head, embedding_size=embedding_size)
    assert_model_matches(folder, head, _batch(), _ours(head),
                         keys=["logits"] if head == "ElectraForPreTraining" else None)
    model = (_ours(head) or getattr(lightpipe, head)).from_pretrained(folder)
    base = model if head == "AutoModel" else model.electra
    assert hasattr(base, "embeddings_project") == (embedding_size != 32)


def test_discriminator_checkpoint_as_base_model(build):
    """google/electra-*-discriminator are ElectraForPreTraining checkpoints; AutoModel and
    feature-extraction read their encoder."""
    folder = build("ElectraForPreTraining")
    assert_model_matches(folder, "AutoModel", _batch())
    assert_pipeline_matches("feature-extraction", folder, TEXTS, [{}])


def test_text_classification_matches_reference(build):
    folder = build("AutoModelForSequenceClassification", **SENTIMENT)
    assert_pipeline_matches("text-classification", folder, TEXTS,
                            [{}, {"top_k": None}, {"function_to_apply": "none"}])
    assert_pipeline_matches("text-classification", folder,
                            [{"text": "I love it", "text_pair": "It is great"}], [{}])
    with torch.inference_mode():  # the last layer on [CLS] alone gives the same logits
        model = lightpipe.AutoModelForSequenceClassification.from_pretrained(folder)
        fast, full = model(**_batch()), model(**_batch(), output_hidden_states=True)
    torch.testing.assert_close(fast.logits, full.logits, rtol=1e-4, atol=1e-5)


def test_token_classification_matches_reference(build):
    folder = build("AutoModelForTokenClassification", **NER)
    assert_pipeline_matches("token-classification", folder, TEXTS,
                            [{}, {"aggregation_strategy": "simple"},
                             {"aggregation_strategy": "average"}])


def test_feature_extraction_and_fill_mask_match_reference(build):
    assert_pipeline_matches("feature-extraction", build(), TEXTS, [{}])
    texts = ["Paris is the [MASK] of France.", "I [MASK] this movie, it is [MASK]!"]
    assert_pipeline_matches("fill-mask", build("AutoModelForMaskedLM", initializer_range=0.5),
                            texts, [{}, {"targets": ["the", "paris", "love"]}])


def test_question_answering_matches_with_the_reference_model(build):
    assert_question_answering_matches(build("AutoModelForQuestionAnswering"), [{"top_k": 2}])


def test_auto_classes_dispatch(build):
    folder = build("AutoModelForTokenClassification", **NER)
    assert_dispatch(folder, "AutoModelForTokenClassification", "token-classification",
                    "Tokenizer")
    assert "token_type_ids" in lightpipe.AutoTokenizer.from_pretrained(folder)("a", "b")
    assert type(lightpipe.AutoModel.from_pretrained(build("AutoModelForMaskedLM"))).__name__ == \
        "ElectraModel"
