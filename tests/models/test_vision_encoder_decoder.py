"""VisionEncoderDecoderModel (ViT encoder + GPT-2 decoder with cross-attention) against
transformers 5: logits (with and without the decoder cache, with a projection between unequal
widths, tied and untied heads), generate() token for token (greedy, beams, batched, length and
n-gram settings), loading and saving, the generation settings read from the decoder config."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.config import Config
from lightpipe.errors import InputError, UnsupportedModelError
from lightpipe.models.vision_encoder_decoder import VisionEncoderDecoderModel

from ..fixtures.captioning import captioner, pixel_batch  # noqa: F401

_PAIRS: dict = {}


def load_pair(folder):
    if folder not in _PAIRS:
        _PAIRS[folder] = (lightpipe.AutoModelForVision2Seq.from_pretrained(folder),
                          transformers.VisionEncoderDecoderModel.from_pretrained(folder).eval())
    return _PAIRS[folder]


VARIANTS = [dict(), dict(encoder_width=48), dict(tie_word_embeddings=False),
            dict(scale_attn_by_inverse_layer_idx=True)]


def _decoder_ids(batch: int, length: int, vocab: int, seed: int = 1) -> torch.Tensor:
    ids = torch.randint(1, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = 0  # the start token
    return ids


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "base")
def test_logits_match_reference(captioner, options):
    ours, theirs = load_pair(captioner(**options))
    assert type(ours) is VisionEncoderDecoderModel
    pixels = pixel_batch(3)
    ids = _decoder_ids(3, 7, ours.config.decoder["vocab_size"])
    with torch.no_grad():
        want = theirs(pixel_values=pixels, decoder_input_ids=ids)
    got = ours(pixel_values=pixels, decoder_input_ids=ids)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.encoder_last_hidden_state, want.encoder_last_hidden_state,
                               rtol=1e-4, atol=1e-4)


def test_padded_decoder_inputs_match_reference(captioner):
    ours, theirs = load_pair(captioner())
    pixels = pixel_batch(2, seed=3)
    ids = _decoder_ids(2, 6, ours.config.decoder["vocab_size"])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        want = theirs(pixel_values=pixels, decoder_input_ids=ids, decoder_attention_mask=mask).logits
    got = ours(pixel_values=pixels, decoder_input_ids=ids, decoder_attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options", VARIANTS[:2], ids=["base", "projected"])
def test_cached_steps_match_reference(captioner, options):
    """Token by token through the cache (cross keys/values computed once) = the reference's
    logits computed at once, and the reference's own cached steps."""
    ours, theirs = load_pair(captioner(**options))
    pixels = pixel_batch(2, seed=5)
    ids = _decoder_ids(2, 8, ours.config.decoder["vocab_size"])
    with torch.no_grad():
        want = theirs(pixel_values=pixels, decoder_input_ids=ids).logits
        ref_out = theirs(pixel_values=pixels, decoder_input_ids=ids[:, :3], use_cache=True)
        ref_steps = [ref_out.logits]
        for end in range(4, 9):
            ref_out = theirs(pixel_values=pixels, decoder_input_ids=ids[:, end - 1:end],
                             cache=ref_out.cache, use_cache=True)
            ref_steps.append(ref_out.logits)
    encoded = ours.encode(pixels)
    out = ours.decode(ids[:, :3], encoded, use_cache=True)
    steps = [out.logits]
    for end in range(4, 9):
        out = ours.decode(ids[:, end - 1:end], encoded, cache=out.cache, use_cache=True)
        steps.append(out.logits)
    assert out.cache.get_seq_length() == 8 and len(out.cache.cross_keys) == 2
    torch.testing.assert_close(torch.cat(steps, dim=1), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(steps, dim=1), torch.cat(ref_steps, dim=1), rtol=1e-4, atol=1e-4)
    # the forward with a cache, as transformers users call it
    first = ours(pixel_values=pixels, decoder_input_ids=ids[:, :7], use_cache=True)
    last = ours(encoder_outputs=(first.encoder_last_hidden_state,), decoder_input_ids=ids[:, 7:],
                cache=first.cache)
    torch.testing.assert_close(last.logits[:, -1], want[:, -1], rtol=1e-4, atol=1e-4)


GENERATE = [
    dict(max_new_tokens=12),
    dict(),
    dict(max_new_tokens=10, num_beams=3),
    dict(max_new_tokens=8, num_beams=4, num_return_sequences=2, length_penalty=0.5),
    dict(max_new_tokens=12, no_repeat_ngram_size=2),
    dict(max_new_tokens=10, repetition_penalty=1.5, num_beams=2),
    dict(min_new_tokens=6, max_new_tokens=9),
    dict(max_length=7, early_stopping=True, num_beams=2),
    dict(max_new_tokens=10, use_cache=False),
]


@pytest.mark.parametrize("kwargs", GENERATE, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()) or "defaults")
@pytest.mark.parametrize("options", VARIANTS[:2], ids=["base", "projected"])
def test_generate_matches_reference(captioner, options, kwargs):
    ours, theirs = load_pair(captioner(**options))
    pixels = pixel_batch(3, seed=7)
    with torch.no_grad():
        want = theirs.generate(pixels, **kwargs)
    got = ours.generate(pixels, **kwargs)
    assert torch.equal(got, want), f"{got}\n!=\n{want}"
    # each row alone gives the same tokens (up to the padding after its end)
    for row in range(3):
        alone = ours.generate(pixels[row:row + 1], **{**kwargs, "num_return_sequences": 1})
        expect = want[row * kwargs.get("num_return_sequences", 1)]
        length = alone.shape[1]
        assert torch.equal(alone[0], expect[:length]) or kwargs.get("num_beams", 1) > 1


def test_generate_without_generation_config_file(captioner):
    """No generation_config.json: settings from config.json, then from the decoder's config
    (its eos_token_id), as the reference."""
    folder = captioner(generation_file=False)
    ours, theirs = load_pair(folder)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        assert getattr(ours.generation_config, name) == getattr(theirs.generation_config, name), name
    assert ours.generation_config.eos_token_id == 0
    pixels = pixel_batch(2, seed=9)
    with torch.no_grad():
        want = theirs.generate(pixels, max_new_tokens=15)
    assert torch.equal(ours.generate(pixels, max_new_tokens=15), want)


def test_beam_scores_match_reference(captioner):
    ours, theirs = load_pair(captioner())
    pixels = pixel_batch(2, seed=11)
    kwargs = dict(max_new_tokens=6, num_beams=3, num_return_sequences=3, output_scores=True,
                  return_dict_in_generate=True)
    with torch.no_grad():
        want = theirs.generate(pixels, **kwargs)
    got = ours.generate(pixels, **kwargs)
    assert torch.equal(got.sequences, want.sequences)
    torch.testing.assert_close(got.sequences_scores, want.sequences_scores, rtol=1e-4, atol=1e-4)


def test_auto_classes_and_task(captioner):
    folder = captioner()
    assert type(lightpipe.AutoModel.from_pretrained(folder)) is VisionEncoderDecoderModel
    pipe = lightpipe.pipeline(model=str(folder))
    assert pipe.task == "image-to-text"
    assert set(pipe(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy(), max_new_tokens=3)[0]) == {"generated_text"}


def test_save_round_trip(captioner, tmp_path):
    ours, theirs = load_pair(captioner(encoder_width=48))
    ours.save_pretrained(tmp_path)
    again = transformers.VisionEncoderDecoderModel.from_pretrained(tmp_path).eval()
    pixels = pixel_batch(1, seed=13)
    ids = _decoder_ids(1, 5, ours.config.decoder["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=pixels, decoder_input_ids=ids).logits,
                                   theirs(pixel_values=pixels, decoder_input_ids=ids).logits)
    assert torch.equal(lightpipe.AutoModelForVision2Seq.from_pretrained(tmp_path).generate(pixels, max_new_tokens=5),
                       ours.generate(pixels, max_new_tokens=5))


def test_bfloat16_generates(captioner):
    model = lightpipe.AutoModelForVision2Seq.from_pretrained(captioner(), dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    out = model.generate(pixel_batch(2), max_new_tokens=4)
    assert out.shape[0] == 2 and out.shape[1] <= 5


def test_bad_inputs_and_unsupported_configs(captioner):
    ours, _ = load_pair(captioner())
    with pytest.raises(InputError, match="pixel_values"):
        ours.generate(torch.zeros(3, 32, 32), max_new_tokens=2)
    with pytest.raises(InputError, match="32x32"):
        ours.generate(torch.zeros(1, 3, 48, 48), max_new_tokens=2)
    with pytest.raises(InputError, match="decoder_input_ids"):
        ours(pixel_values=pixel_batch(1))
    config = ours.config.to_dict()
    with pytest.raises(UnsupportedModelError, match="GPT-2"):
        VisionEncoderDecoderModel(Config(**{**config, "decoder": {**config["decoder"], "model_type": "bert"}}))
    with pytest.raises(UnsupportedModelError, match="add_cross_attention"):
        VisionEncoderDecoderModel(Config(**{**config, "decoder": {**config["decoder"],
                                                                  "add_cross_attention": False}}))
    with pytest.raises(UnsupportedModelError, match="encoder"):
        VisionEncoderDecoderModel(Config(**{**config, "encoder": None}))


@pytest.mark.parametrize("options", VARIANTS[:2], ids=["base", "projected"])
def test_generate_from_encoder_outputs(captioner, options):
    """generate(encoder_outputs=...) takes the encoder's own states, as the reference."""
    ours, theirs = load_pair(captioner(**options))
    pixels = pixel_batch(2, seed=15)
    with torch.no_grad():
        states = theirs.encoder(pixel_values=pixels).last_hidden_state
        want = theirs.generate(encoder_outputs=transformers.modeling_outputs.BaseModelOutput(
            last_hidden_state=states), max_new_tokens=8)
    torch.testing.assert_close(ours.encode(pixels), states, rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.generate(encoder_outputs=(states,), max_new_tokens=8), want)
    assert torch.equal(ours.generate(pixels, max_new_tokens=8), want)
