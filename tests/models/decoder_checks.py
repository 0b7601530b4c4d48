"""Checks shared by the decoder families' tests (Qwen3, Gemma 2/3, Phi-3): their tiny sizes
for the ``decoder`` fixture, and comparisons with the reference of the Auto classes' dispatch,
generate(), the text-generation and feature-extraction pipelines, and Hub-layout configs."""

from __future__ import annotations

import json

import torch
import transformers

import lightpipe

from ..conftest import BOS, EOS, PAD, TINY_DECODERS, load_pair, prompts

_COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=48, max_position_embeddings=128, bos_token_id=BOS,
               eos_token_id=EOS, pad_token_id=PAD)
# Off the defaults on purpose: head_dim not hidden / heads, grouped-query attention, a window
# shorter than the test batch (13 tokens), query_pre_attn_scalar not head_dim.
FAMILY_SIZES = {
    "qwen3": dict(_COMMON, head_dim=16),
    "qwen3_moe": dict(_COMMON, head_dim=16, moe_intermediate_size=16, num_experts=4,
                      num_experts_per_tok=2),
    "gemma2": dict(_COMMON, num_hidden_layers=3, head_dim=16, sliding_window=6,
                   query_pre_attn_scalar=12),
    "gemma3_text": dict(_COMMON, num_hidden_layers=4, head_dim=16, sliding_window=6,
                        query_pre_attn_scalar=12,
                        layer_types=["sliding_attention", "full_attention"] * 2),
    "phi3": dict(_COMMON),
}
for _model_type, _sizes in FAMILY_SIZES.items():
    TINY_DECODERS.setdefault(_model_type, _sizes)

TEXTS = ["The quick brown fox jumps over the lazy dog! What", "Hello"]
CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"do_sample": False, "max_new_tokens": 8}


def assert_generation_matches(folder, max_new_tokens: int = 14, texts=TEXTS) -> None:
    """Greedy and beam-search tokens equal the reference's on a left-padded batch."""
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, texts)
    for kwargs in ({"do_sample": False}, {"num_beams": 3, "do_sample": False}):
        with torch.no_grad():
            want = theirs.generate(**inputs, max_new_tokens=max_new_tokens, **kwargs)
        got = ours.generate(**inputs, max_new_tokens=max_new_tokens, **kwargs)
        assert got.tolist() == want.tolist(), kwargs


def assert_auto_classes_match(folder) -> None:
    """AutoModelForCausalLM and AutoModel pick the reference's classes; the base model's
    last_hidden_state equals the reference's on a padded batch."""
    ours, theirs = load_pair(folder)
    assert type(ours).__name__ == type(theirs).__name__
    base = lightpipe.AutoModel.from_pretrained(folder)
    reference = transformers.AutoModel.from_pretrained(folder).eval()
    assert type(base).__name__ == type(reference).__name__
    ids = torch.randint(6, base.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    got = base(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=1e-4, atol=1e-4)


def assert_text_generation_matches(folder) -> None:
    """The text-generation pipeline's outputs equal the reference pipeline's: a string, a
    batch, chats, beams with several sequences, penalties."""
    ours = lightpipe.pipeline("text-generation", model=str(folder))
    theirs = transformers.pipeline("text-generation", model=str(folder))
    for inputs, kwargs in [
        (TEXTS[0], GREEDY),
        (TEXTS, GREEDY),
        ([CHAT, CHAT[1:]], GREEDY),
        (TEXTS[1], {**GREEDY, "return_full_text": False}),
        (TEXTS[0], {**GREEDY, "num_beams": 3, "num_return_sequences": 2}),
        (TEXTS[0], {**GREEDY, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2}),
    ]:
        assert ours(inputs, **kwargs) == theirs(inputs, **kwargs), (inputs, kwargs)
    assert ours(TEXTS, batch_size=2, **GREEDY) == theirs(TEXTS, **GREEDY)  # one padded batch


def assert_feature_extraction_matches(folder) -> None:
    """The feature-extraction pipeline's vectors equal the reference pipeline's, text by text
    and in one padded batch (decoders as embedding models: Qwen3-Embedding, EmbeddingGemma)."""
    want = transformers.pipeline("feature-extraction", model=str(folder))(TEXTS)
    ours = lightpipe.pipeline("feature-extraction", model=str(folder))
    for got in (ours(TEXTS), ours(TEXTS, batch_size=2)):
        for mine, reference in zip(got, want):
            torch.testing.assert_close(torch.tensor(mine), torch.tensor(reference), rtol=1e-4, atol=1e-4)


# Hub configs are shrunk to these sizes; their other fields stay as the Hub writes them.
HUB_SIZES = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                 vocab_size=300)


def assert_hub_config_matches(folder, hub_config: dict) -> None:
    """A checkpoint whose config.json is laid out as on the Hub (transformers 4 era fields,
    nulls, extra keys), with random weights from the reference: both libraries read the same
    model from it (logits within and past the short windows and trained lengths)."""
    hub_config = {**hub_config, **HUB_SIZES}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hub_config))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(folder))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.25)
    model.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(hub_config))  # the Hub's layout, not a rewrite
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(ours).__name__ == type(theirs).__name__
    for length in (6, 20):
        ids = torch.randint(3, 290, (2, length), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=1e-4, atol=1e-4)
