"""MPNet against the reference on tiny random checkpoints: every head's outputs and hidden
states (padded batches, a bias table wider than the 32 buckets used), the tokenizer (files
saved by transformers 5 and 4), and each pipeline the family serves (feature-extraction as
all-mpnet-base-v2, fill-mask, text-classification, token-classification, zero-shot,
question-answering)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..conftest import random_batch
from .encoder_checks import (OUTPUT_KEYS, TEXTS, assert_dispatch, assert_model_matches,
                            assert_pipeline_matches, assert_question_answering_matches,
                            assert_tokenizer_matches, checkpoints)

# Off the defaults: 40 bias rows (the reference still buckets into 32), a tanh GELU.
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=130, relative_attention_num_buckets=40,
             hidden_act="gelu_new", layer_norm_eps=1e-6)
LABELS = dict(id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
              label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
NER = dict(id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
           label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4})


@pytest.fixture(scope="module")
def tokenizer_path(minilm_path, tmp_path_factory):
    """An MPNetTokenizer saved by the reference over MiniLM's first 4,000 WordPieces, with
    MPNet's <s> <pad> </s> <unk> first (the model fixes padding at id 1) and <mask> last."""
    words = (minilm_path / "vocab.txt").read_text(encoding="utf-8").splitlines()[:4000]
    vocab = {word: index for index, word in enumerate(["<s>", "<pad>", "</s>", "<unk>", *words,
                                                      "<mask>"])}
    folder = tmp_path_factory.mktemp("mpnet_tokenizer")
    transformers.MPNetTokenizer(vocab=vocab, model_max_length=128).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def build(tmp_path_factory, tokenizer_path):
    made = checkpoints(tmp_path_factory, tokenizer_path, "mpnet")
    return lambda head="AutoModel", **config: made(head, **SIZES, **config)


@pytest.mark.parametrize("head", list(OUTPUT_KEYS))
def test_heads_match_reference(build, head):
    folder = build(head)
    batch = random_batch(4000, [11, 5, 17], pad_id=1, special=(1,))
    assert_model_matches(folder, head, batch)


def test_pooler_and_first_token_path(build):
    """The base model's pooler; sequence classification's last layer on <s> alone."""
    folder = build()
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(folder).eval()
    batch = random_batch(4000, [11, 5, 17], pad_id=1, special=(1,))
    with torch.inference_mode():
        got, want = ours(**batch), theirs(**batch)
        first = ours(**batch, first_token_only=True).last_hidden_state
    torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first[:, 0], want.last_hidden_state[:, 0], rtol=1e-4, atol=1e-5)


def test_head_checkpoint_into_base_and_long_input(build):
    folder = build("AutoModelForMaskedLM")
    model = lightpipe.AutoModel.from_pretrained(folder)
    assert model.pooler is not None  # freshly initialised: the MLM checkpoint has none
    with pytest.raises(InputError, match="reads at most 128"):
        model(input_ids=torch.full((1, 129), 7))


def test_tokenizer_matches_reference(tokenizer_path, tmp_path):
    texts = ["Paris is the <mask> of France.", "x  <mask>", "Héllo WORLD\tagain", "", "東京 🙂"]
    assert_tokenizer_matches(tokenizer_path, texts)
    ours = lightpipe.AutoTokenizer.from_pretrained(tokenizer_path)
    assert "token_type_ids" not in ours("a", "b") and ours.pad_token_id == 1
    # A transformers-4 folder (all-mpnet-base-v2's): a template post-processor, a normaliser
    # that disagrees with the config, <mask> as a saved AddedToken. Both rebuild them.
    old = tmp_path / "v4"
    old.mkdir()
    data = json.loads((tokenizer_path / "tokenizer.json").read_text())
    data["normalizer"]["lowercase"] = False
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "</s>", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                           "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    (old / "tokenizer.json").write_text(json.dumps(data))
    (old / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]",
        "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
        "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False,
                       "normalized": True, "__type": "AddedToken"},
        "tokenize_chinese_chars": True, "strip_accents": None, "model_max_length": 512,
        "tokenizer_class": "MPNetTokenizer"}))
    assert_tokenizer_matches(old, texts)
    # The same with vocab.txt instead of tokenizer.json: WordPiece built from the config.
    files = tmp_path / "files"
    files.mkdir()
    shutil.copy(old / "tokenizer_config.json", files / "tokenizer_config.json")
    words = sorted(data["model"]["vocab"], key=data["model"]["vocab"].get)
    (files / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    assert_tokenizer_matches(files, texts)


def test_feature_extraction_matches_reference(build):
    assert_pipeline_matches("feature-extraction", build(), TEXTS, [{}])


def test_fill_mask_matches_reference(build):
    texts = ["Paris is the <mask> of France.", "I <mask> this movie, it is <mask>!", "<mask>"]
    assert_pipeline_matches("fill-mask", build("AutoModelForMaskedLM", initializer_range=0.5), texts,
                            [{}, {"top_k": 2, "targets": ["the", "paris", "movie", "love"]}])


def test_text_and_zero_shot_classification_match_reference(build):
    folder = build("AutoModelForSequenceClassification", **LABELS)
    assert_pipeline_matches("text-classification", folder,
                            TEXTS, [{}, {"top_k": None}, {"function_to_apply": "sigmoid"}])
    assert_pipeline_matches("text-classification", folder,
                            [{"text": "I love it", "text_pair": "It is great"}], [{}])
    assert_pipeline_matches("zero-shot-classification", folder, TEXTS[:3],
                            [{"candidate_labels": ["movies", "travel", "weather"]},
                             {"candidate_labels": ["movies", "travel"], "multi_label": True}])


def test_token_classification_matches_reference(build):
    folder = build("AutoModelForTokenClassification", **NER)
    assert_pipeline_matches("token-classification", folder, TEXTS,
                            [{}, {"aggregation_strategy": "simple"},
                             {"aggregation_strategy": "max"}])


def test_question_answering_matches_with_the_reference_model(build):
    assert_question_answering_matches(build("AutoModelForQuestionAnswering"), [{}, {"top_k": 3}])


def test_auto_classes_dispatch(build, tmp_path):
    folder = build("AutoModelForSequenceClassification", **LABELS)
    assert_dispatch(folder, "AutoModelForSequenceClassification", "text-classification",
                    "MPNetTokenizer")
    shutil.copytree(folder, tmp_path / "copy")
    lightpipe.AutoModel.from_pretrained(folder).save_pretrained(tmp_path / "copy")
    assert type(transformers.AutoModel.from_pretrained(tmp_path / "copy")).__name__ == "MPNetModel"
