"""GPT-NeoX (Pythia) against the reference: logits with and without the cache on a
left-padded batch (fused per-head qkv, partial rotary, parallel and sequential residuals,
biases off, tied head, linear RoPE scaling), hidden states, a Pythia config.json as the Hub
writes it (rotary_pct, rotary_emb_base), the Auto classes, greedy and beam generation, the
text-generation pipeline and the sequence-classification head (last non-pad token)."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

import lightpipe

from ..conftest import PAD, TINY_DECODERS, assert_logits_match, load_pair, prompts
from .decoder_checks import (TEXTS, assert_auto_classes_match, assert_generation_matches,
                             assert_hub_config_matches, assert_text_generation_matches)

# Off the defaults: a rotary share of one half (Pythia: a quarter) of 8-wide heads, theta 500.
TINY_DECODERS.setdefault("gpt_neox", dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
    max_position_embeddings=128, bos_token_id=0, eos_token_id=2, pad_token_id=PAD,
    rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}))
SEQUENTIAL = dict(use_parallel_residual=False, attention_bias=False, hidden_act="gelu_new",
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                   "partial_rotary_factor": 1.0})
PYTHIA = {"architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
          "hidden_act": "gelu", "initializer_range": 0.02, "layer_norm_eps": 1e-05,
          "max_position_embeddings": 2048, "model_type": "gpt_neox", "rotary_emb_base": 10000,
          "rotary_pct": 0.25, "tie_word_embeddings": False, "transformers_version": "4.24.0",
          "use_cache": True, "use_parallel_residual": True}


@pytest.mark.parametrize("overrides", [
    {},
    SEQUENTIAL,
    {"tie_word_embeddings": True, "layer_norm_eps": 1e-3},
    {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 300.0,
                         "partial_rotary_factor": 0.25}},
], ids=["parallel", "sequential", "tied", "linear_rope"])
def test_logits_match_reference_with_and_without_cache(decoder, overrides):
    assert_logits_match(decoder("gpt_neox", **overrides))


def test_hidden_states_match_reference(decoder):
    ours, theirs = load_pair(decoder("gpt_neox"))
    inputs = prompts(decoder("gpt_neox"), TEXTS)
    with torch.no_grad():
        want = theirs(**inputs, output_hidden_states=True).hidden_states
    got = ours(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    real = inputs["attention_mask"].bool()
    assert len(got) == len(want) == 3
    for mine, reference in zip(got, want):
        torch.testing.assert_close(mine[real], reference[real], rtol=1e-4, atol=1e-4)


def test_pythia_hub_config(tmp_path):
    assert_hub_config_matches(tmp_path / "pythia", PYTHIA)


def test_auto_classes_and_tied_head(decoder):
    assert_auto_classes_match(decoder("gpt_neox", **SEQUENTIAL))
    tied, _ = load_pair(decoder("gpt_neox", tie_word_embeddings=True, layer_norm_eps=1e-3))
    assert tied.embed_out.weight is tied.gpt_neox.embed_in.weight
    untied, _ = load_pair(decoder("gpt_neox"))
    assert untied.embed_out.weight is not untied.gpt_neox.embed_in.weight


@pytest.mark.parametrize("overrides", [{}, SEQUENTIAL], ids=["parallel", "sequential"])
def test_greedy_and_beam_generation_match_reference(decoder, overrides):
    assert_generation_matches(decoder("gpt_neox", **overrides))


def test_text_generation_pipeline_matches_reference(decoder):
    assert_text_generation_matches(decoder("gpt_neox"))


def test_sequence_classification_matches_reference(decoder, tmp_path):
    """The classifier reads each row's last non-pad token (right- and left-padded)."""
    folder = decoder("gpt_neox")
    config = transformers.AutoConfig.from_pretrained(folder)
    config.update(dict(num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
                       label2id={"a": 0, "b": 1, "c": 2}))
    torch.manual_seed(1)
    reference = transformers.GPTNeoXForSequenceClassification(config).eval()
    with torch.no_grad():
        reference.score.weight.normal_(0.0, 0.5)
    reference.save_pretrained(tmp_path)
    transformers.AutoTokenizer.from_pretrained(folder).save_pretrained(tmp_path)
    ours = lightpipe.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(ours).__name__ == "GPTNeoXForSequenceClassification"
    for side in ("left", "right"):
        inputs = dict(transformers.AutoTokenizer.from_pretrained(folder, padding_side=side)(
            TEXTS, return_tensors="pt", padding=True))
        with torch.no_grad():
            want = reference(**inputs).logits
        torch.testing.assert_close(ours(**inputs).logits, want, rtol=1e-4, atol=1e-5)
    want = transformers.pipeline("text-classification", model=str(tmp_path))(TEXTS, top_k=None)
    got = lightpipe.pipeline("text-classification", model=str(tmp_path))(TEXTS, top_k=None)
    assert [[r["label"] for r in row] for row in got] == [[r["label"] for r in row] for row in want]
    for mine, theirs in zip(got, want):
        for a, b in zip(mine, theirs):
            assert abs(a["score"] - b["score"]) < 1e-5


@pytest.mark.parametrize("named", [True, False], ids=["class_named", "model_type"])
def test_pythia_tokenizer_folder(byte_level_bpe, tmp_path, named):
    """A tokenizer.json with a config naming GPTNeoXTokenizer (or, for the model type, none) and
    no pad token, as Pythia's: the class's pad token <|padding|> and the same ids, padded."""
    vocab, merges = byte_level_bpe
    vocab = {**vocab, "<|padding|>": len(vocab)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(merges)))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.add_special_tokens(["<|endoftext|>", "<|padding|>"])
    backend.save(str(tmp_path / "tokenizer.json"))
    settings = {"add_prefix_space": False, "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    if named:
        settings["tokenizer_class"] = "GPTNeoXTokenizer"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    ours = lightpipe.AutoTokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (ours.pad_token, ours.pad_token_id) == (theirs.pad_token, theirs.pad_token_id)
    assert (ours.bos_token, ours.eos_token) == (theirs.bos_token, theirs.eos_token)
    for args in ((TEXTS,), (TEXTS, ["a pair", "of texts"])):
        assert dict(ours(*args, padding=True)) == dict(theirs(*args, padding=True))
