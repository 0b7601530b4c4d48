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


@pytest.mark.parametrize("overrides", [{}, {"scale_attn_by_inverse_layer_idx": True},
                                       {"activation_function": "relu", "n_inner": 40}])
def test_lean_decoding_step_equals_the_blocks(decoder, overrides):
    """generate()'s one-token steps skip the module calls (``_decode_one``): on a left-padded
    batch their logits are exactly those of the blocks, step after step."""
    model = lightpipe.AutoModelForCausalLM.from_pretrained(decoder("gpt2", **overrides))
    model.pack_linear_weights()
    ids = torch.randint(6, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    logits = {}
    with torch.inference_mode():
        for lean in (False, True):
            if lean:
                model.begin_decode()
            out = model(input_ids=ids[:, :5], attention_mask=mask[:, :5], use_cache=True)
            steps = []
            for end in range(6, 10):
                out = model(input_ids=ids[:, end - 1:end], attention_mask=mask[:, :end], cache=out.cache)
                steps.append(out.logits)
            logits[lean] = torch.cat(steps, dim=1)
            model.end_decode()
    assert torch.equal(logits[True], logits[False])
    assert "decode_plan" not in model.transformer.__dict__


def test_generate_takes_the_lean_step_and_drops_its_plan(decoder, monkeypatch):
    from lightpipe.models import gpt2

    model, reference = load_pair(decoder("gpt2"))
    calls = []
    original = gpt2.GPT2Model._decode_one
    monkeypatch.setattr(gpt2.GPT2Model, "_decode_one",
                        lambda self, *args: calls.append(1) or original(self, *args))
    ids = torch.randint(6, 400, (1, 5), generator=torch.Generator().manual_seed(2))
    options = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    ours = model.generate(ids, **options)
    assert len(calls) == 5  # every step after the prompt's
    assert torch.equal(ours, reference.generate(ids, attention_mask=torch.ones_like(ids), **options))
    assert "decode_plan" not in model.transformer.__dict__
    monkeypatch.setattr(gpt2.GPT2Model, "_decode_one", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # the plan is dropped when generate() fails too
        model.generate(ids, **options)
    assert "decode_plan" not in model.transformer.__dict__


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_products_equal_their_parts(dtype):
    """A residual added inside the product, and GPT-2's tanh GELU fused into it: float32 equal
    to the separate operations within rounding; bfloat16 computed separately, exactly."""
    from lightpipe.models.linear import _ONEDNN_PACK, linear, linear_add, linear_gelu_tanh
    from lightpipe.models.gpt2 import gelu_new

    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(48, 32, generator=generator) / 6).to(dtype)
    bias = torch.randn(48, generator=generator).to(dtype)
    inputs = torch.randn(3, 5, 32, generator=generator).to(dtype)
    residual = torch.randn(3, 5, 48, generator=generator).to(dtype)
    packed = _ONEDNN_PACK(weight, None) if _ONEDNN_PACK is not None else None
    with torch.inference_mode():
        plain = torch.nn.functional.linear(inputs, weight, bias)
        for stored in (None, packed):
            added = linear_add(inputs, weight, bias, stored, residual)
            fused = linear_gelu_tanh(inputs, weight, bias, stored)
            if dtype == torch.float32:
                torch.testing.assert_close(added, residual + plain, rtol=1e-6, atol=1e-6)
                torch.testing.assert_close(fused, gelu_new(plain), rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(added, residual + linear(inputs, weight, bias, stored))
                assert fused is None
