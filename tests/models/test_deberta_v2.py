"""DeBERTa-v2/v3 against the reference on tiny random checkpoints: every head's outputs and
hidden states (padded batches) for the config variants real checkpoints use (v3's log
buckets, shared keys and normed distance embeddings without absolute positions; v2-xlarge's
convolution and head size; plain absolute positions with token types and a projected
embedding; c2p or p2c alone with their own projections; both masked-LM heads), the
SentencePiece tokenizer (files saved by transformers 5 and 4), and each pipeline the family
serves (text-classification, zero-shot NLI, token-classification, question-answering,
fill-mask)."""

from __future__ import annotations

import io
import json

import pytest
import torch
import transformers

import lightpipe

from ..conftest import random_batch
from .encoder_checks import (OUTPUT_KEYS, TEXTS, assert_dispatch, assert_model_matches,
                            assert_pipeline_matches, assert_question_answering_matches,
                            assert_tokenizer_matches, checkpoints)

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64)
VARIANTS = {
    # deberta-v3-*: 256 log buckets, shared keys, normed distance table, no absolute positions
    "v3": dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
               share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False,
               max_relative_positions=-1, type_vocab_size=0),
    # deberta-v2-xlarge: + a convolution after the first layer, an explicit head size
    "v2_conv": dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
                    share_att_key=True, pos_att_type=["p2c", "c2p"], conv_kernel_size=3,
                    conv_act="gelu", attention_head_size=8, type_vocab_size=0),
    # no relative attention: absolute positions, token types, a projected embedding
    "absolute": dict(relative_attention=False, type_vocab_size=2, embedding_size=24),
    # one position term each, with their own projections; the non-legacy MLM head
    "c2p": dict(relative_attention=True, max_relative_positions=6, pos_att_type=["c2p"],
                type_vocab_size=0),
    "p2c": dict(relative_attention=True, pos_att_type="p2c", legacy=False),
}
NLI = dict(id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
           label2id={"entailment": 0, "neutral": 1, "contradiction": 2})
NER = dict(id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
           label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4})
CORPUS = [*TEXTS, "The quick brown fox jumps over the lazy dog.", "This example is about travel.",
          "Where do models run? What is the capital of France?", "Weather today: sunny, rain.",
          "The topic is movies, travel or weather."]


@pytest.fixture(scope="module")
def spm_model() -> bytes:
    """A unigram SentencePiece model trained here, with [PAD] [CLS] [SEP] [UNK] first as in
    deberta-v3's spm.model."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=model, vocab_size=300,
        model_type="unigram", pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]",
        eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]", character_coverage=1.0,
        hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


@pytest.fixture(scope="module")
def tokenizer_path(spm_model, tmp_path_factory):
    """A DebertaV2Tokenizer saved by the reference from the model's pieces, [MASK] last (the
    reference converts spm.model itself only with protobuf installed)."""
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_proto=spm_model)
    vocab = [(pieces.id_to_piece(i), pieces.get_score(i)) for i in range(pieces.get_piece_size())]
    folder = tmp_path_factory.mktemp("deberta_tokenizer")
    transformers.DebertaV2Tokenizer(vocab=[*vocab, ("[MASK]", 0.0)],
                                    model_max_length=60).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def build(tmp_path_factory, tokenizer_path):
    made = checkpoints(tmp_path_factory, tokenizer_path, "deberta-v2")

    def get(head="AutoModel", variant="v3", **config):
        return made(head, **SIZES, **VARIANTS[variant], **config)

    return get


def _batch(vocab_size: int, with_types: bool) -> dict:
    batch = random_batch(vocab_size, [11, 5, 17], pad_id=0, special=(0,))
    if with_types:
        batch["token_type_ids"] = (torch.arange(17)[None, :] >= 7).long().expand(3, -1).clone()
    return batch


@pytest.mark.parametrize("head", list(OUTPUT_KEYS))
def test_v3_heads_match_reference(build, head):
    folder = build(head)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    assert_model_matches(folder, head, _batch(vocab, False))


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "v3"])
@pytest.mark.parametrize("head", ["AutoModel", "AutoModelForMaskedLM"])
def test_variants_match_reference(build, variant, head):
    folder = build(head, variant)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    assert_model_matches(folder, head, _batch(vocab, variant == "absolute"))


def test_inputs_beyond_the_bucket_span(build):
    """v3 reads past max_position_embeddings (distances are bucketed); absolute positions
    refuse it with a clear error."""
    ours = lightpipe.AutoModel.from_pretrained(build())
    theirs = transformers.AutoModel.from_pretrained(build()).eval()
    ids = torch.randint(5, ours.config.vocab_size, (1, 80))
    with torch.inference_mode():
        torch.testing.assert_close(ours(input_ids=ids).last_hidden_state,
                                   theirs(input_ids=ids).last_hidden_state, rtol=1e-4, atol=1e-5)
    absolute = lightpipe.AutoModel.from_pretrained(build(variant="absolute"))
    with pytest.raises(lightpipe.errors.InputError, match="at most 64 positions"):
        absolute(input_ids=ids)


def test_masked_lm_with_the_other_head_is_fresh(build, caplog):
    """A checkpoint of the original head (lm_predictions) read with legacy=True gets a new
    cls.predictions head, with a warning, as the reference does; the encoder still loads."""
    folder = build("AutoModelForMaskedLM", "p2c")  # legacy=False: lm_predictions.lm_head
    with caplog.at_level("WARNING", logger="lightpipe"):
        model = lightpipe.AutoModelForMaskedLM.from_pretrained(folder, legacy=True)
    assert "newly initialised" in caplog.text and hasattr(model, "cls")
    tied = model.cls.predictions.decoder.weight
    assert tied is model.deberta.embeddings.word_embeddings.weight


def test_tokenizer_matches_reference(tokenizer_path, tmp_path):
    texts = ["Paris is the [MASK] of France.", "  leading\tand  double   spaces\nnew line ",
             "Café naïve e\u0301t\u00e9", "hello[MASK]world", "", "UPPER, lower; punct!"]
    assert_tokenizer_matches(tokenizer_path, texts)
    # transformers-4 folders: another normaliser in tokenizer.json (Strip, no NFC, no tab or
    # newline rule), the config's flags. transformers 5 rebuilds the text rules from the
    # config; so does ours.
    data = json.loads((tokenizer_path / "tokenizer.json").read_text())
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                             "prepend_scheme": "always", "split": True}
    config = json.loads((tokenizer_path / "tokenizer_config.json").read_text())
    for flags in ({}, {"do_lower_case": True, "split_by_punct": True, "add_prefix_space": False}):
        folder = tmp_path / f"v4_{len(flags)}"
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps(data))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {**config, "vocab_type": "spm", "sp_model_kwargs": {}, **flags}))
        assert_tokenizer_matches(folder, texts)


def test_spm_model_alone_reads_as_the_converted_tokenizer(spm_model, tokenizer_path, tmp_path):
    """microsoft/deberta-v3-* ship spm.model, special_tokens_map.json and a two-key config;
    the class comes from config.json's model type."""
    (tmp_path / "spm.model").write_bytes(spm_model)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": False, "vocab_type": "spm", "model_max_length": 60}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
         "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}))
    ours = lightpipe.AutoTokenizer.from_pretrained(tmp_path)
    converted = lightpipe.AutoTokenizer.from_pretrained(tokenizer_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tokenizer_path)
    assert type(ours).__name__ == "DebertaV2Tokenizer" and ours.get_vocab() == converted.get_vocab()
    for text in ["Paris is the [MASK] of France.", "  Café\tnaïve  ", "zzz 🙂"]:
        got = ours(text, "a pair", return_offsets_mapping=True)
        assert dict(got) == dict(theirs(text, "a pair", return_offsets_mapping=True))
        assert ours.decode(got["input_ids"]) == theirs.decode(got["input_ids"])


def test_classification_and_zero_shot_match_reference(build):
    folder = build("AutoModelForSequenceClassification", **NLI)
    assert_pipeline_matches("text-classification", folder, TEXTS, [{}, {"top_k": None}])
    assert_pipeline_matches("text-classification", folder,
                            [{"text": "I love it", "text_pair": "It is great"}], [{}])
    assert_pipeline_matches("zero-shot-classification", folder, TEXTS[:3],
                            [{"candidate_labels": ["movies", "travel", "weather"]},
                             {"candidate_labels": "movies, travel", "multi_label": True,
                              "hypothesis_template": "The topic is {}."}])


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")  # both warn
def test_token_classification_matches_reference(build):
    folder = build("AutoModelForTokenClassification", **NER)
    assert_pipeline_matches("token-classification", folder, TEXTS,
                            [{}, {"aggregation_strategy": "simple"},
                             {"aggregation_strategy": "first"}])


def test_fill_mask_matches_reference(build):
    texts = ["Paris is the [MASK] of France.", "I [MASK] this movie, it is [MASK]!", "[MASK]"]
    assert_pipeline_matches("fill-mask", build("AutoModelForMaskedLM", initializer_range=0.5),
                            texts, [{}, {"top_k": 2}])


def test_feature_extraction_matches_reference(build):
    assert_pipeline_matches("feature-extraction", build(), TEXTS, [{}])


def test_question_answering_matches_with_the_reference_model(build):
    assert_question_answering_matches(build("AutoModelForQuestionAnswering"), [{}, {"top_k": 3}])


def test_auto_classes_dispatch(build):
    assert_dispatch(build("AutoModelForSequenceClassification", **NLI),
                    "AutoModelForSequenceClassification", "text-classification",
                    "DebertaV2Tokenizer")
