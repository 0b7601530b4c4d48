"""Phi-3 / Phi-4 against the reference: logits with and without the cache on a padded batch
(fused qkv_proj and gate_up_proj, grouped-query attention, a sliding window, tied heads,
partial rotary, LongRoPE's short and long factors), greedy and beam generation across the
LongRoPE switch (where the reference re-reads the sequence), the older "su" config layout,
the Auto classes and the text-generation pipeline."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import lightpipe

from ..conftest import assert_logits_match, load_pair
from .decoder_checks import (assert_auto_classes_match, assert_generation_matches,
                             assert_hub_config_matches, assert_text_generation_matches)


def longrope(rotated_pairs: int, partial: float = 1.0) -> dict:
    """LongRoPE settings with distinct short and long factors per frequency."""
    return {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": partial,
            "short_factor": [1.0 + 0.5 * i for i in range(rotated_pairs)],
            "long_factor": [1.0 + 30.0 * i for i in range(rotated_pairs)]}


@pytest.mark.parametrize("overrides,switches", [
    ({}, False),
    ({"sliding_window": 5, "tie_word_embeddings": True, "num_key_value_heads": 4}, False),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                          "partial_rotary_factor": 0.5}}, False),
    # the 13-token batch stays within the trained 32 positions: short factors throughout
    ({"rope_parameters": longrope(4), "original_max_position_embeddings": 32}, False),
    # past the trained 8 positions: long factors (token by token they switch on the way)
    ({"rope_parameters": longrope(3, partial=0.75), "original_max_position_embeddings": 8}, True),
])
def test_logits_match_reference_with_and_without_cache(decoder, overrides, switches):
    assert_logits_match(decoder("phi3", **overrides), cache_changes_logits=switches)


def test_auto_classes_and_base_model(decoder):
    assert_auto_classes_match(decoder("phi3"))


@pytest.mark.parametrize("overrides", [
    {},
    # the prompts (11 positions) start within the trained 16; generation goes past them
    {"rope_parameters": longrope(4), "original_max_position_embeddings": 16},
])
def test_greedy_and_beam_generation_match_reference(decoder, overrides):
    assert_generation_matches(decoder("phi3", **overrides))


def test_su_config_layout(decoder, tmp_path):
    """Phi-3-mini-128k's config.json of the transformers 4 era: ``rope_scaling`` of type "su",
    ``rope_theta`` and ``partial_rotary_factor`` at the top level."""
    source = decoder("phi3", rope_parameters=longrope(3, partial=0.75),
                     original_max_position_embeddings=8)
    folder = tmp_path / "su"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config.update(rope_theta=rope.pop("rope_theta"), partial_rotary_factor=rope.pop("partial_rotary_factor"))
    config["rope_scaling"] = {"type": "su", "short_factor": rope["short_factor"],
                              "long_factor": rope["long_factor"]}
    (folder / "config.json").write_text(json.dumps(config))
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    reference, _ = load_pair(source)
    for length in (6, 20):  # within and past the trained positions
        ids = torch.randint(6, 300, (1, length), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            torch.testing.assert_close(ours(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-4)


def test_text_generation_pipeline_matches_reference(decoder):
    assert_text_generation_matches(decoder("phi3"))


# config.json as Phi-3-mini-4k-instruct (remote-code auto_map beside the native model type),
# Phi-3.5-mini-instruct and Phi-4-mini-instruct have it (sizes and trained lengths shrunk).
HUB_CONFIGS = {
    "Phi-3-mini-4k-instruct": {
        "architectures": ["Phi3ForCausalLM"], "attention_bias": False,
        "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config",
                     "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"},
        "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 2, "hidden_act": "silu",
        "max_position_embeddings": 4096, "model_type": "phi3", "num_key_value_heads": 4,
        "original_max_position_embeddings": 4096, "pad_token_id": 299, "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0, "sliding_window": 5,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.40.2"},
    "Phi-3.5-mini-instruct": {
        "architectures": ["Phi3ForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
        "max_position_embeddings": 131072, "model_type": "phi3", "num_key_value_heads": 4,
        "original_max_position_embeddings": 8, "pad_token_id": 299,
        "rope_scaling": {"type": "longrope",
                         "long_factor": [1.0, 1.2, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0],
                         "short_factor": [1.0, 1.01, 1.02, 1.05, 1.1, 1.2, 1.4, 1.8]},
        "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": False},
    "Phi-4-mini-instruct": {
        "architectures": ["Phi3ForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
        "full_attn_mod": 1, "interpolate_factor": 1, "lm_head_bias": False,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "phi3",
        "num_key_value_heads": 2, "original_max_position_embeddings": 8, "pad_token_id": 299,
        "partial_rotary_factor": 0.75,
        "rope_scaling": {"type": "longrope", "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                         "short_factor": [1.0, 1.0, 1.1, 1.2, 1.3, 1.5]},
        "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": True},
}


@pytest.mark.parametrize("name", HUB_CONFIGS)
def test_hub_config_layouts(tmp_path, name):
    assert_hub_config_matches(tmp_path / name, HUB_CONFIGS[name])
