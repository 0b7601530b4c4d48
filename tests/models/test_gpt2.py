"""GPT-2 against the reference: logits with and without the cache, the base model, legacy
checkpoints (no ``transformer.`` prefix, saved attention-mask buffers), the checkpoint's dtype,
and the task a checkpoint implies."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import lightpipe

from ..conftest import assert_logits_match, load_pair


@pytest.mark.parametrize("overrides", [{}, {"scale_attn_by_inverse_layer_idx": True},
                                       {"activation_function": "gelu", "n_inner": 40},
                                       {"tie_word_embeddings": False}])
def test_logits_match_reference_with_and_without_cache(decoder, overrides):
    assert_logits_match(decoder("gpt2", **overrides))


def test_base_model_hidden_states_match_reference(decoder):
    folder = decoder("gpt2")
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(folder).eval()
    assert type(ours).__name__ == type(theirs).__name__ == "GPT2Model"
    ids = torch.randint(6, 400, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = theirs(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours(input_ids=ids).last_hidden_state, want, rtol=1e-4, atol=1e-5)


def test_legacy_checkpoint_without_prefix(decoder, tmp_path):
    """The original openai-community/gpt2 layout: no `transformer.` prefix, no lm_head (tied),
    and each attention layer's causal-mask buffers saved as weights."""
    import shutil

    folder = tmp_path / "legacy"
    shutil.copytree(decoder("gpt2"), folder)
    state = load_file(folder / "model.safetensors")
    legacy = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    legacy["h.0.attn.bias"] = torch.tril(torch.ones(128, 128))[None, None]
    legacy["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(legacy, folder / "model.safetensors")
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    reference, _ = load_pair(decoder("gpt2"))
    ids = torch.tensor([[10, 20, 30, 40]])
    torch.testing.assert_close(ours(ids).logits, reference(ids).logits)
    assert ours.lm_head.weight is ours.transformer.wte.weight


def test_loads_in_the_checkpoints_dtype(decoder, tmp_path):
    folder = decoder("gpt2")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    theirs.save_pretrained(tmp_path / "bf16")
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert ours.dtype == torch.bfloat16
    ids = torch.tensor([[10, 20, 30, 40, 50]])
    with torch.no_grad():
        want = theirs(ids).logits
    torch.testing.assert_close(ours(ids).logits, want, rtol=2e-2, atol=2e-2)
    # The same greedy tokens as the reference run in bfloat16.
    with torch.no_grad():
        reference = theirs.generate(ids, max_new_tokens=10, do_sample=False)
    assert ours.generate(ids, max_new_tokens=10, do_sample=False).tolist() == reference.tolist()
    assert lightpipe.AutoModelForCausalLM.from_pretrained(
        tmp_path / "bf16", dtype=torch.float32).dtype == torch.float32


def test_pipeline_infers_text_generation(decoder):
    pipe = lightpipe.pipeline(model=str(decoder("gpt2")))
    assert pipe.task == "text-generation"
    assert type(pipe.model).__name__ == "GPT2LMHeadModel"
