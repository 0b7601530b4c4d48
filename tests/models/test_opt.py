"""OPT against the reference: pre- and post-layer-norm blocks, the projected embeddings of
opt-350m, positions that skip left padding, checkpoints without the ``model.`` prefix."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import lightpipe

from ..conftest import assert_logits_match, load_pair, prompts


@pytest.mark.parametrize("overrides", [
    {},
    {"do_layer_norm_before": False, "word_embed_proj_dim": 16},  # opt-350m's layout
    {"_remove_final_layer_norm": True, "enable_bias": False, "activation_function": "gelu"},
    {"layer_norm_elementwise_affine": False},
])
def test_logits_match_reference_with_and_without_cache(decoder, overrides):
    assert_logits_match(decoder("opt", **overrides))


def test_base_model_and_default_positions_skip_padding(decoder):
    """Without position_ids, OPT counts positions over real tokens only (left padding does not
    shift them), as the reference does."""
    folder = decoder("opt")
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(folder).eval()
    assert type(ours).__name__ == "OPTModel"
    ids = torch.tensor([[1, 1, 1, 40, 50, 60], [10, 20, 30, 40, 50, 60]])
    mask = (ids != 1).long()
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    got = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=1e-4, atol=1e-5)
    # The padded row's real tokens equal the row alone.
    alone = ours(input_ids=ids[:1, 3:]).last_hidden_state
    torch.testing.assert_close(got[0, 3:], alone[0], rtol=1e-4, atol=1e-5)


def test_checkpoint_without_model_prefix(decoder, tmp_path):
    import shutil

    folder = tmp_path / "legacy"
    shutil.copytree(decoder("opt"), folder)
    state = load_file(folder / "model.safetensors")
    save_file({k.removeprefix("model."): v for k, v in state.items() if k != "lm_head.weight"},
              folder / "model.safetensors")
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    reference, _ = load_pair(decoder("opt"))
    ids = torch.tensor([[10, 20, 30, 40]])
    torch.testing.assert_close(ours(ids).logits, reference(ids).logits)


def test_generate_with_projection_matches_reference(decoder):
    folder = decoder("opt", do_layer_norm_before=False, word_embed_proj_dim=16)
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, ["Hello world, this is", "The quick"])
    with torch.no_grad():
        want = theirs.generate(**inputs, max_new_tokens=10, do_sample=False, num_beams=2)
    assert ours.generate(**inputs, max_new_tokens=10, do_sample=False, num_beams=2).tolist() == want.tolist()
