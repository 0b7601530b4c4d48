"""Gemma 2 and Gemma 3 (text) against the reference: logits with and without the cache on a
padded batch (scaled embeddings, (1 + weight) norms, four norms per layer, query_pre_attn_scalar,
attention and final soft-capping, sliding and global layers past the window, Gemma 3's q/k
norms and per-kind RoPE), the configs of the transformers 4 era, EmbeddingGemma's
bidirectional attention and its feature-extraction pipeline, the Auto classes, greedy and beam
generation, and the text-generation pipeline."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers

import lightpipe

from ..conftest import assert_logits_match, load_pair
from .decoder_checks import (assert_auto_classes_match, assert_feature_extraction_matches,
                             assert_generation_matches, assert_hub_config_matches,
                             assert_text_generation_matches)

GEMMA3_ROPE = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 500000.0},
               "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}}


@pytest.mark.parametrize("model_type,overrides", [
    ("gemma2", {}),  # soft caps 50 and 30, alternating window 6 / global
    ("gemma2", {"attn_logit_softcapping": None, "final_logit_softcapping": 5.0,
                "tie_word_embeddings": False, "num_key_value_heads": 4}),
    ("gemma2", {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}),
    ("gemma3_text", {}),
    ("gemma3_text", {"rope_parameters": GEMMA3_ROPE, "final_logit_softcapping": 30.0,
                     "attn_logit_softcapping": 50.0, "num_key_value_heads": 1}),
])
def test_logits_match_reference_with_and_without_cache(decoder, model_type, overrides):
    assert_logits_match(decoder(model_type, **overrides))


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_auto_classes_and_base_model(decoder, model_type):
    assert_auto_classes_match(decoder(model_type))


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_greedy_and_beam_generation_match_reference(decoder, model_type):
    assert_generation_matches(decoder(model_type))


def test_scaled_input_embeddings_as_the_reference(decoder):
    """get_input_embeddings() scales by sqrt(hidden) as the reference's does, and a prompt
    given as embeddings is not scaled again."""
    folder = decoder("gemma2")
    ours, theirs = load_pair(folder)
    ids = torch.tensor([[7, 8, 9, 10]])
    with torch.no_grad():
        embeds = theirs.get_input_embeddings()(ids)
        want = theirs(inputs_embeds=embeds).logits
    torch.testing.assert_close(ours.get_input_embeddings()(ids), embeds)
    torch.testing.assert_close(ours(inputs_embeds=embeds).logits, want, rtol=1e-4, atol=1e-4)


def test_gemma3_config_of_the_transformers4_era(decoder, tmp_path):
    """Gemma 3 configs on the Hub: ``rope_theta`` and ``rope_scaling`` for the global layers,
    ``rope_local_base_freq`` for the sliding ones, ``sliding_window_pattern`` instead of
    ``layer_types``."""
    source = decoder("gemma3_text", rope_parameters=GEMMA3_ROPE,
                     layer_types=["sliding_attention", "full_attention"] * 2)
    folder = tmp_path / "v4"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["rope_parameters"], config["layer_types"]
    config.update(rope_theta=500000.0, rope_local_base_freq=20000.0, sliding_window_pattern=2,
                  rope_scaling={"rope_type": "linear", "factor": 8.0})
    (folder / "config.json").write_text(json.dumps(config))
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    reference, _ = load_pair(source)
    ids = torch.randint(6, 300, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-4)


def test_bidirectional_embedding_model(decoder):
    """EmbeddingGemma: use_bidirectional_attention (every real token sees every other, the
    sliding layers within half the window either side) on a batch padded on both sides; the
    feature-extraction pipeline against the reference's."""
    folder = decoder("gemma3_text", use_bidirectional_attention=True, sliding_window=4)
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(folder).eval()
    assert type(ours).__name__ == type(theirs).__name__ == "Gemma3TextModel"
    ids = torch.randint(6, 300, (3, 13), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, :4] = 0
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    got = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=1e-4, atol=1e-4)
    assert_feature_extraction_matches(folder)


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_text_generation_pipeline_matches_reference(decoder, model_type):
    assert_text_generation_matches(decoder(model_type))


# config.json as gemma-2-2b, gemma-3-1b-it and gemma-3-4b's text part have it (sizes and
# windows shrunk).
HUB_CONFIGS = {
    "gemma-2-2b": {"architectures": ["Gemma2ForCausalLM"], "attention_bias": False,
                   "attn_logit_softcapping": 50.0, "bos_token_id": 2,
                   "cache_implementation": "hybrid", "eos_token_id": [1, 107],
                   "final_logit_softcapping": 30.0, "head_dim": 32,
                   "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
                   "max_position_embeddings": 8192, "model_type": "gemma2",
                   "num_key_value_heads": 2, "pad_token_id": 0, "query_pre_attn_scalar": 32,
                   "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4,
                   "torch_dtype": "float32", "transformers_version": "4.42.4"},
    "gemma-3-1b-it": {"architectures": ["Gemma3ForCausalLM"], "attention_bias": False,
                      "attn_logit_softcapping": None, "bos_token_id": 2,
                      "cache_implementation": "hybrid", "eos_token_id": [1, 106],
                      "final_logit_softcapping": None, "head_dim": 32,
                      "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768,
                      "model_type": "gemma3_text", "num_key_value_heads": 1, "pad_token_id": 0,
                      "query_pre_attn_scalar": 32, "rms_norm_eps": 1e-06,
                      "rope_local_base_freq": 10000, "rope_scaling": None, "rope_theta": 1000000,
                      "sliding_window": 4, "sliding_window_pattern": 2, "torch_dtype": "bfloat16",
                      "transformers_version": "4.50.0.dev0"},
    "gemma-3-4b-text": {"model_type": "gemma3_text", "head_dim": 32, "num_key_value_heads": 2,
                        "query_pre_attn_scalar": 32, "rope_local_base_freq": 10000.0,
                        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                        "rope_theta": 1000000.0, "sliding_window": 4, "sliding_window_pattern": 3},
}


@pytest.mark.parametrize("name", HUB_CONFIGS)
def test_hub_config_layouts(tmp_path, name):
    assert_hub_config_matches(tmp_path / name, HUB_CONFIGS[name])
