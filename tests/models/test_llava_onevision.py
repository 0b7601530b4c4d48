"""LLaVA-OneVision against the reference on a tiny random checkpoint it saved (SigLIP tower
hidden 32, 32x32 views in 8x8 patches; Qwen2 hidden 32, 2 layers): the any-resolution image
processor (views, padding, image_sizes), the processor's image-token counts (unpadding, the
anyres_max shrink, multi-image prompts), logits, greedy tokens, and the image-text-to-text
pipeline with text prompts and chat messages.

The reference's LlavaOnevisionProcessor insists on a video processor, which needs torchvision
(not installed here): the reference processor is built in memory with that check skipped, and
processor_config.json is written by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import lightpipe

from ..conftest import assert_outputs_close
from ..fixtures.llava import CHAT_TEMPLATE, _tokenizer

PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64], [32, 96], [96, 32]]
SETTINGS = {"num_image_tokens": 16, "vision_feature_select_strategy": "full",
            "vision_aspect_ratio": "anyres_max_2", "image_token": "<image>"}


def _reference_processor(tokenizer, image_processor, **settings):
    from transformers import processing_utils

    check = processing_utils.ProcessorMixin.check_argument_for_proper_class
    processing_utils.ProcessorMixin.check_argument_for_proper_class = \
        lambda self, name, arg: None if arg is None else check(self, name, arg)
    try:
        return transformers.LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                                    chat_template=CHAT_TEMPLATE, **settings)
    finally:
        processing_utils.ProcessorMixin.check_argument_for_proper_class = check


@pytest.fixture(scope="module")
def onevision(tmp_path_factory):
    """(folder, the reference's processor)."""
    folder = tmp_path_factory.mktemp("llava_onevision")
    tokenizer = _tokenizer()
    image_processor = transformers.LlavaOnevisionImageProcessorPil(
        size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps(
        {"processor_class": "LlavaOnevisionProcessor", "chat_template": CHAT_TEMPLATE, **SETTINGS}))
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                             num_attention_heads=4, image_size=32, patch_size=8,
                                             vision_use_head=False, hidden_act="gelu")
    text = transformers.Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=1024, bos_token_id=0, eos_token_id=1,
                                    pad_token_id=2)
    config = transformers.LlavaOnevisionConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=PINPOINTS,
        vision_aspect_ratio="anyres_max_2", pad_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlavaOnevisionForConditionalGeneration(config).eval()
    with torch.no_grad():  # wider than the default init: greedy choices are not near-ties
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    return folder, _reference_processor(tokenizer, image_processor, **SETTINGS)


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    rng = np.random.default_rng(0)
    # wide, square, tall, and large enough for the anyres_max shrink
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((40, 90), (32, 32), (70, 36), (100, 33))]


def test_image_processor_matches_reference(onevision, images):
    folder, reference = onevision
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder)
    assert type(ours).__name__ == "LlavaOnevisionImageProcessor"
    for batch in (images, [images[:2], [images[2]]], [images[3]]):
        got = ours(batch, return_tensors="pt")
        want = reference.image_processor(batch, return_tensors="pt")
        assert set(got) == set(want)
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-4, atol=1e-5)
        assert got["image_sizes"].tolist() == want["image_sizes"].tolist()
        assert got["batch_num_images"].tolist() == want["batch_num_images"].tolist()


def test_processor_matches_reference(onevision, images):
    folder, reference = onevision
    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    assert type(ours).__name__ == "LlavaOnevisionProcessor"
    texts = ["<image> what is it", "hi <image> and <image> ok", "<image>"]
    for batch in (images[:4], [images[:2], [images[2]], [images[3]]]):
        flat = batch if not isinstance(batch[0], list) else [i for group in batch for i in group]
        assert len(flat) == 4
        got = ours(text=texts, images=batch, padding=True)
        want = reference(text=texts, images=batch, return_tensors="pt", padding=True)
        for key in ("input_ids", "attention_mask", "image_sizes", "batch_num_images"):
            assert got[key].tolist() == want[key].tolist(), key
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-4, atol=1e-5)
    ours.vision_feature_select_strategy = reference.vision_feature_select_strategy = "default"
    try:
        got = ours(text=texts[:1], images=images[:1])
        want = reference(text=texts[:1], images=images[:1], return_tensors="pt")
        assert got["input_ids"].tolist() == want["input_ids"].tolist()
    finally:
        reference.vision_feature_select_strategy = SETTINGS["vision_feature_select_strategy"]


def test_logits_and_greedy_tokens_match_reference(onevision, images):
    folder, reference = onevision
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(folder)
    theirs = transformers.AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == type(theirs).__name__ == "LlavaOnevisionForConditionalGeneration"
    texts = ["<image> what is it", "hi <image> and <image> ok"]
    for batch in (images[:3], [[images[3]], images[:2]]):
        inputs = reference(text=texts, images=batch, return_tensors="pt", padding=True)
        with torch.inference_mode():
            want = theirs(**inputs).logits
            got = ours(**inputs).logits
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    inputs = reference(text=texts[:1], images=images[3:4], return_tensors="pt")
    want = theirs.generate(**inputs, max_new_tokens=8, do_sample=False)
    got = ours.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert got.tolist() == want.tolist()


def test_pipeline_matches_reference(onevision, images):
    folder, reference = onevision
    theirs = transformers.pipeline("image-text-to-text", model=str(folder), processor=reference)
    ours = lightpipe.pipeline("image-text-to-text", model=str(folder))
    for image in images[:2]:
        assert_outputs_close(ours(images=image, text="<image> what is it", max_new_tokens=6),
                             theirs(images=image, text="<image> what is it", max_new_tokens=6))
    messages = [{"role": "user", "content": [{"type": "image", "image": images[3]},
                                             {"type": "text", "text": "Describe it."}]}]
    got = ours(text=messages, max_new_tokens=6, return_full_text=False)
    want = theirs(text=messages, max_new_tokens=6, return_full_text=False)
    assert_outputs_close(got, want)
