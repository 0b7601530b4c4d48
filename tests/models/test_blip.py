"""BlipForConditionalGeneration (BLIP captioning: ViT + BERT-style decoder with
cross-attention) against transformers 5: logits (with and without the cache), generate() token
for token with and without a prompt (greedy, beams, batched), the generation settings, the
image processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.blip import BlipForConditionalGeneration, BlipImageProcessor

from ..fixtures.captioning import blip_captioner, pixel_batch  # noqa: F401

_PAIRS: dict = {}


def load_pair(folder):
    if folder not in _PAIRS:
        _PAIRS[folder] = (lightpipe.AutoModelForVision2Seq.from_pretrained(folder),
                          transformers.BlipForConditionalGeneration.from_pretrained(folder).eval())
    return _PAIRS[folder]


def _text_ids(model, batch: int, length: int, seed: int = 1) -> torch.Tensor:
    vocab = model.text_config.vocab_size
    ids = torch.randint(5, vocab - 2, (batch, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = model.text_config.bos_token_id
    return ids


def test_logits_match_reference(blip_captioner):
    ours, theirs = load_pair(blip_captioner())
    assert type(ours) is BlipForConditionalGeneration
    pixels = pixel_batch(3)
    ids = _text_ids(ours, 3, 7)
    with torch.no_grad():
        want = theirs(pixel_values=pixels, input_ids=ids)
    got = ours(pixel_values=pixels, input_ids=ids)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.image_embeds, want.image_embeds, rtol=1e-4, atol=1e-4)


def test_padded_text_matches_reference(blip_captioner):
    ours, theirs = load_pair(blip_captioner())
    pixels = pixel_batch(2, seed=2)
    ids = _text_ids(ours, 2, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        want = theirs(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
    got = ours(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)


def test_cached_steps_match_reference(blip_captioner):
    ours, theirs = load_pair(blip_captioner())
    pixels = pixel_batch(2, seed=3)
    ids = _text_ids(ours, 2, 8)
    with torch.no_grad():
        want = theirs(pixel_values=pixels, input_ids=ids).logits
    encoded = ours.encode(pixels)
    out = ours.decode(ids[:, :3], encoded, use_cache=True)
    steps = [out.logits]
    for end in range(4, 9):
        out = ours.decode(ids[:, end - 1:end], encoded, cache=out.cache, use_cache=True)
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), want, rtol=1e-4, atol=1e-4)


GENERATE = [
    dict(max_new_tokens=12),
    dict(),
    dict(max_new_tokens=10, num_beams=3),
    dict(max_new_tokens=8, num_beams=4, num_return_sequences=2),
    dict(max_new_tokens=12, no_repeat_ngram_size=2, repetition_penalty=1.3),
    dict(min_new_tokens=6, max_new_tokens=9),
]


@pytest.mark.parametrize("prompt", [None, "a photo of"], ids=["unconditional", "prompt"])
@pytest.mark.parametrize("kwargs", GENERATE, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()) or "defaults")
def test_generate_matches_reference(blip_captioner, kwargs, prompt):
    folder = blip_captioner()
    ours, theirs = load_pair(folder)
    pixels = pixel_batch(3, seed=7)
    inputs = {}
    if prompt is not None:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        encoded = tokenizer([prompt] * 3, return_tensors="pt", return_token_type_ids=False)
        inputs = dict(encoded)
    with torch.no_grad():
        want = theirs.generate(pixels, **inputs, **kwargs)
    got = ours.generate(pixels, **inputs, **kwargs)
    assert torch.equal(got, want), f"{got}\n!=\n{want}"


def test_generation_settings_and_task(blip_captioner):
    folder = blip_captioner()
    ours, theirs = load_pair(folder)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(ours.generation_config, name) == getattr(theirs.generation_config, name), name
    pipe = lightpipe.pipeline(model=str(folder))
    assert pipe.task == "image-to-text"
    out = pipe(np.zeros((40, 30, 3), dtype=np.uint8), prompt="a photo of", max_new_tokens=3)
    assert out[0]["generated_text"].startswith("a photo of")


def test_image_processor_matches_reference(blip_captioner, tmp_path):
    from PIL import Image

    folder = blip_captioner()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              ((37, 53), (64, 20), (32, 32))]
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder)
    assert isinstance(ours, BlipImageProcessor)
    want = transformers.BlipImageProcessorPil.from_pretrained(folder)(images, return_tensors="pt")
    got = ours(images, return_tensors="pt")
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=0, atol=1e-6)
    defaults = BlipImageProcessor()
    reference = transformers.BlipImageProcessorPil()
    assert defaults.size == reference.size and defaults.resample == reference.resample
    assert list(defaults.image_mean) == list(reference.image_mean)


def test_bad_inputs(blip_captioner):
    ours, _ = load_pair(blip_captioner())
    with pytest.raises(InputError, match="pixel_values"):
        ours.generate(torch.zeros(3, 32, 32), max_new_tokens=2)
    with pytest.raises(InputError, match="32x32"):
        ours.generate(torch.zeros(1, 3, 48, 48), max_new_tokens=2)
    with pytest.raises(InputError, match="input_ids"):
        ours.generate(pixel_batch(1), input_ids=torch.tensor([[5]]), max_new_tokens=2)
    with pytest.raises(InputError, match="input_ids"):
        ours(pixel_values=pixel_batch(1))
