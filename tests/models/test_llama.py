"""Llama, Mistral and Qwen2 against the reference: logits with and without the cache,
grouped-query attention, every RoPE kind Llama 3 checkpoints use, tied and untied
embeddings, Mistral's sliding window past its width, Qwen2's biases and windowed layers, and
configs in the older (transformers 4) layout."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers

import lightpipe

from ..conftest import assert_logits_match, load_pair, prompts
from . import decoder_checks  # noqa: F401  (the tiny sizes of Phi-3 and Gemma)

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8, "rope_theta": 500000.0}


@pytest.mark.parametrize("model_type,overrides", [
    ("llama", {}),
    ("llama", {"num_key_value_heads": 4, "tie_word_embeddings": True, "attention_bias": True,
               "mlp_bias": True}),
    ("llama", {"rope_parameters": LLAMA3_ROPE}),
    ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}),
    ("llama", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
               "max_position_embeddings": 8}),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                   "original_max_position_embeddings": 16}}),
    ("llama", {"head_dim": 16}),
    ("mistral", {}),  # sliding window 6 < the 13-token batch
    ("qwen2", {}),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
])
def test_logits_match_reference_with_and_without_cache(decoder, model_type, overrides):
    dynamic = overrides.get("rope_parameters", {}).get("rope_type") == "dynamic"
    assert_logits_match(decoder(model_type, **overrides), cache_changes_logits=dynamic)


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2"])
def test_class_names_and_base_model(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    assert type(ours).__name__ == type(theirs).__name__
    base = lightpipe.AutoModel.from_pretrained(folder)
    reference = transformers.AutoModel.from_pretrained(folder).eval()
    assert type(base).__name__ == type(reference).__name__
    ids = torch.randint(6, 400, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(input_ids=ids).last_hidden_state
    torch.testing.assert_close(base(input_ids=ids).last_hidden_state, want, rtol=1e-4, atol=1e-5)


def test_tied_and_untied_embeddings(decoder):
    tied, _ = load_pair(decoder("qwen2"))
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied, _ = load_pair(decoder("llama"))
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert not torch.equal(untied.lm_head.weight, untied.model.embed_tokens.weight)


def test_transformers4_config_layout(decoder, tmp_path):
    """A Llama 3.1-style config.json of the transformers 4 era: ``rope_scaling`` and
    ``rope_theta`` as separate fields, no ``tie_word_embeddings`` (Llama's default: untied)."""
    source = decoder("llama", rope_parameters=LLAMA3_ROPE)
    folder = tmp_path / "v4"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = rope
    config.pop("tie_word_embeddings")
    (folder / "config.json").write_text(json.dumps(config))
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    reference, _ = load_pair(source)
    assert ours.lm_head.weight is not ours.model.embed_tokens.weight
    ids = torch.randint(6, 400, (1, 20), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours(ids).logits, reference(ids).logits)


def test_sliding_window_generation_matches_reference(decoder):
    folder = decoder("mistral")
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, ["The quick brown fox jumps over the lazy dog! What", "Hello"])
    for kwargs in ({"do_sample": False}, {"num_beams": 3, "do_sample": False}):
        with torch.no_grad():
            want = theirs.generate(**inputs, max_new_tokens=14, **kwargs)
        assert ours.generate(**inputs, max_new_tokens=14, **kwargs).tolist() == want.tolist()


def test_unsupported_rope_kind_is_a_clear_error(decoder, tmp_path):
    folder = tmp_path / "mrope"
    shutil.copytree(decoder("llama"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(lightpipe.UnsupportedModelError, match="longrope"):
        lightpipe.AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("model_type,overrides", [
    ("llama", {}),
    ("llama", {"num_key_value_heads": 4, "attention_bias": True, "mlp_bias": True}),
    ("mistral", {}),  # sliding window 6: the steps below go past it
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    # the families that reuse the step: fused products and partial rotation (Phi-3), sandwich
    # norms, soft-capped scores and a RoPE per layer kind (Gemma 2 / 3)
    ("phi3", {"partial_rotary_factor": 0.5}),
    ("gemma2", {"sliding_window": 4, "attn_logit_softcapping": 5.0}),
    ("gemma3_text", {"sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"] * 2,
                     "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0,
                                                            "rope_theta": 50000.0},
                                         "sliding_attention": {"rope_type": "default",
                                                               "rope_theta": 2000.0}}}),
])
def test_lean_decoding_step_equals_the_layers(decoder, model_type, overrides, monkeypatch):
    """generate()'s one-token steps skip the module calls (``_decode_one``): on a left-padded
    batch their logits are exactly the layers', step after step; generate() uses that path and
    drops its plan when done. (The C step, which float32 Llama-shaped models take where the
    kernels build, is off here: tests/test_native_step.py checks it.)"""
    from lightpipe.models import llama

    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")

    model = lightpipe.AutoModelForCausalLM.from_pretrained(decoder(model_type, **overrides))
    model.pack_linear_weights()
    ids = torch.randint(6, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    logits = {}
    with torch.inference_mode():
        for lean in (False, True):
            if lean:
                model.begin_decode()
            out = model(input_ids=ids[:, :4], attention_mask=mask[:, :4], use_cache=True)
            steps = []
            for end in range(5, 13):
                out = model(input_ids=ids[:, end - 1:end], attention_mask=mask[:, :end], cache=out.cache)
                steps.append(out.logits)
            logits[lean] = torch.cat(steps, dim=1)
            model.end_decode()
    assert torch.equal(logits[True], logits[False])
    calls = []
    original = llama.LlamaModel.__dict__["_decode_one"]  # the staticmethod itself
    try:
        llama.LlamaModel._decode_one = staticmethod(
            lambda *args: calls.append(1) or original.__func__(*args))
        model.generate(ids[:1], max_new_tokens=4, min_new_tokens=4, do_sample=False)
    finally:
        llama.LlamaModel._decode_one = original
    assert len(calls) == 3 and "decode_plan" not in model.model.__dict__
