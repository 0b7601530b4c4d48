"""ModernBERT against the reference on tiny random checkpoints: every head's outputs and
hidden states on padded batches longer than the local window (global and sliding layers,
their two RoPE thetas, biases on, a tanh GeGLU), both classifier poolings, the Hub's older
config fields (global_attn_every_n_layers, global_rope_theta / local_rope_theta), the
PreTrainedTokenizerFast it ships, and each pipeline the family serves (feature-extraction,
fill-mask, text-classification, token-classification)."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

import lightpipe
from lightpipe.errors import UnsupportedModelError

from ..conftest import random_batch
from .encoder_checks import (OUTPUT_KEYS, TEXTS, assert_dispatch, assert_model_matches,
                            assert_pipeline_matches, assert_tokenizer_matches, checkpoints)

SPECIAL = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
# Off the defaults: 4 layers, every 2nd global, a window of 3 each side on 17-token batches,
# thetas far from 160k / 10k, biases in the norms, attention and MLP, a tanh GELU; weights
# drawn wide enough that attention is far from uniform (positions and windows show).
SIZES = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=40,
             max_position_embeddings=128, local_attention=6, global_attn_every_n_layers=2,
             norm_bias=True, attention_bias=True, mlp_bias=True, norm_eps=1e-6,
             hidden_activation="gelu_new", classifier_activation="silu", initializer_range=0.3,
             rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 500.0},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 77.0}})
SENTIMENT = dict(id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
NER = dict(id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
           label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4})
LONG = ["Hugging Face models run in lightpipe; the quick brown fox jumps over the lazy dog "
        "while the weather today is sunny with a chance of rain.", "ok"]


@pytest.fixture(scope="module")
def tokenizer_path(byte_level_bpe, tmp_path_factory):
    """A byte-level BPE with [CLS] $A [SEP] templates, saved by the reference as a
    PreTrainedTokenizerFast (as answerdotai/ModernBERT-* ship theirs), [MASK] stripping the
    space before it."""
    vocab, merges = byte_level_bpe
    vocab = {**vocab, **{token: len(vocab) + i for i, token in enumerate(SPECIAL)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(merges)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([*SPECIAL[:4], AddedToken("[MASK]", lstrip=True)])
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    reference = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", model_max_length=128,
        model_input_names=["input_ids", "attention_mask"])
    folder = tmp_path_factory.mktemp("modernbert_tokenizer")
    reference.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ids(tokenizer_path):
    vocab = json.loads((tokenizer_path / "tokenizer.json").read_text())["model"]["vocab"]
    return {token: vocab[token] for token in SPECIAL} | {"size": len(vocab)}


@pytest.fixture(scope="module")
def build(tmp_path_factory, tokenizer_path, ids):
    made = checkpoints(tmp_path_factory, tokenizer_path, "modernbert")
    special = dict(pad_token_id=ids["[PAD]"], cls_token_id=ids["[CLS]"],
                   sep_token_id=ids["[SEP]"], bos_token_id=ids["[CLS]"], eos_token_id=ids["[SEP]"])
    return lambda head="AutoModel", **config: made(head, **{**SIZES, **special, **config})


def _batch(ids) -> dict:
    return random_batch(ids["size"] - len(SPECIAL), [11, 5, 17], pad_id=ids["[PAD]"])


@pytest.mark.parametrize("head", [h for h in OUTPUT_KEYS if h != "AutoModelForQuestionAnswering"])
def test_heads_match_reference(build, ids, head):
    assert_model_matches(build(head), head, _batch(ids))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_pooling_matches_reference(build, ids, pooling):
    folder = build("AutoModelForSequenceClassification", classifier_pooling=pooling, **SENTIMENT)
    assert_model_matches(folder, "AutoModelForSequenceClassification", _batch(ids))


def test_legacy_config_fields(build, ids, tmp_path):
    """The Hub's ModernBERT-base/large config.json: no layer_types, no rope_parameters."""
    folder = build("AutoModelForMaskedLM", num_hidden_layers=5, global_attn_every_n_layers=3)
    settings = json.loads((folder / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        settings.pop(key)
    settings.update(global_rope_theta=321.0, local_rope_theta=55.0)
    for file in folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    (tmp_path / "config.json").write_text(json.dumps(settings))
    reference = transformers.AutoConfig.from_pretrained(tmp_path)
    assert reference.layer_types[:4] == ["full_attention", "sliding_attention",
                                         "sliding_attention", "full_attention"]
    assert reference.rope_parameters["full_attention"]["rope_theta"] == 321.0
    assert_model_matches(tmp_path, "AutoModelForMaskedLM", _batch(ids))


def test_bad_layer_types_refused(build):
    folder = build()
    settings = json.loads((folder / "config.json").read_text())
    config = lightpipe.Config.from_dict({**settings, "layer_types": ["full_attention", "x"] * 2})
    with pytest.raises(UnsupportedModelError, match="layer_types"):
        lightpipe.AutoModel.from_config(config)


def test_tokenizer_matches_reference(tokenizer_path):
    assert_tokenizer_matches(tokenizer_path, [*TEXTS, "a [MASK] here"])


def test_pipelines_match_reference(build):
    assert_pipeline_matches("feature-extraction", build(), TEXTS + LONG, [{}])
    texts = ["Paris is the [MASK] of France.", "I [MASK] this movie, it is [MASK]!"]
    assert_pipeline_matches("fill-mask", build("AutoModelForMaskedLM", initializer_range=0.5),
                            texts, [{}, {"top_k": 3}])
    folder = build("AutoModelForSequenceClassification", classifier_pooling="mean", **SENTIMENT)
    assert_pipeline_matches("text-classification", folder, TEXTS + LONG,
                            [{}, {"top_k": None}, {"function_to_apply": "none"}])
    assert_pipeline_matches("token-classification",
                            build("AutoModelForTokenClassification", **NER), TEXTS + LONG,
                            [{}, {"aggregation_strategy": "simple"}])


def test_auto_classes_dispatch(build):
    folder = build("AutoModelForTokenClassification", **NER)
    assert_dispatch(folder, "AutoModelForTokenClassification", "token-classification",
                    "Tokenizer")  # our generic tokenizer.json class
    assert "token_type_ids" not in lightpipe.AutoTokenizer.from_pretrained(folder)("a", "b")
    masked = build("AutoModelForMaskedLM")
    assert type(lightpipe.AutoModel.from_pretrained(masked)).__name__ == "ModernBertModel"
    assert lightpipe.pipeline(model=str(masked)).task == "fill-mask"
