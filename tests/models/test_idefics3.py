"""Idefics3 and SmolVLM against the reference on tiny random checkpoints it saved (vision tower
hidden 32, 32x32 views in 8x8 patches, scale_factor 2 -> 4 image tokens per view; Llama hidden
32, 2 layers; images resized to a longest edge of 64 and cut into 32x32 tiles): the image
processor (tiles, the global view, padding, pixel_attention_mask), the processor's expansion of
``<image>`` (row/column markers, ``<global-img>``), logits over a padded batch with split
images, greedy tokens (one prompt and a left-padded batch), and the image-text-to-text
pipeline with text prompts and chat messages.

The reference's processors insist on their torchvision image processor (SmolVLM's also on a
video processor and on the num2words package, for videos only): they are built in memory with
the PIL image processor and those checks skipped; SmolVLM's processor_config.json and
chat_template.json are written by hand (the layout of the Hub's SmolVLM folders)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
import transformers

import lightpipe

from ..conftest import assert_outputs_close
from ..fixtures.llava import _tokenizer

# SmolVLM's chat template, with this tokenizer's "<s>" for its "<|im_start|>".
CHAT_TEMPLATE = (
    "<s>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
IMAGE_SETTINGS = {"size": {"longest_edge": 64}, "max_image_size": {"longest_edge": 32}}


def _reference_processor(cls, **parts):
    from transformers import processing_utils

    check = processing_utils.ProcessorMixin.check_argument_for_proper_class
    processing_utils.ProcessorMixin.check_argument_for_proper_class = \
        lambda self, name, arg: None if arg is None else check(self, name, arg)
    try:
        return cls(**parts)
    finally:
        processing_utils.ProcessorMixin.check_argument_for_proper_class = check


def _vlm_tokenizer():
    tokenizer = _tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]})
    tokenizer.add_tokens([f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])
    return tokenizer


def _save_model(folder, kind: str, tokenizer, tie: bool):
    vision = {"hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
              "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "hidden_act": "gelu"}
    text = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=1024, bos_token_id=0, eos_token_id=1,
                                    pad_token_id=2, rms_norm_eps=1e-5, tie_word_embeddings=tie)
    config_class, model_class = {
        "idefics3": (transformers.Idefics3Config, transformers.Idefics3ForConditionalGeneration),
        "smolvlm": (transformers.SmolVLMConfig, transformers.SmolVLMForConditionalGeneration)}[kind]
    config = config_class(vision_config=vision, text_config=text.to_dict(), scale_factor=2,
                          image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                          tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():  # wider than the default init: greedy choices are not near-ties
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{kind: (folder, the reference's processor, the reference's model)}: Idefics3 (processor
    saved by the reference, untied head) and SmolVLM (hand-written processor files, tied head)."""
    from transformers.models.smolvlm import processing_smolvlm

    made = {}
    folder = tmp_path_factory.mktemp("idefics3")
    tokenizer = _vlm_tokenizer()
    image_processor = transformers.Idefics3ImageProcessorPil(**IMAGE_SETTINGS)
    processor = _reference_processor(transformers.Idefics3Processor, image_processor=image_processor,
                                     tokenizer=tokenizer, image_seq_len=4, chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    made["idefics3"] = (folder, processor, _save_model(folder, "idefics3", tokenizer, tie=False))

    folder = tmp_path_factory.mktemp("smolvlm")
    tokenizer = _vlm_tokenizer()
    image_processor = transformers.SmolVLMImageProcessorPil(**IMAGE_SETTINGS)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps(
        {"processor_class": "SmolVLMProcessor", "image_seq_len": 4}))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    saved = processing_smolvlm.num2words
    processing_smolvlm.num2words = str  # only its video prompts read it
    try:
        processor = _reference_processor(transformers.SmolVLMProcessor, image_processor=image_processor,
                                         tokenizer=tokenizer, video_processor=None, image_seq_len=4,
                                         chat_template=CHAT_TEMPLATE)
    finally:
        processing_smolvlm.num2words = saved
    processor.video_processor = types.SimpleNamespace(num_frames=4, fps=1)  # read by its chat path
    made["smolvlm"] = (folder, processor, _save_model(folder, "smolvlm", tokenizer, tie=True))
    return made


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    rng = np.random.default_rng(0)
    # wide (1x2 tiles), small (one view), tall (2x1 tiles), very wide (1x2 tiles, odd sizes)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((40, 90), (20, 20), (70, 36), (33, 100))]


def test_image_processor_matches_reference(checkpoints, images):
    folder, reference, _ = checkpoints["idefics3"]
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder)
    assert type(ours).__name__ == "Idefics3ImageProcessor"
    assert type(lightpipe.AutoImageProcessor.from_pretrained(checkpoints["smolvlm"][0])).__name__ == \
        "SmolVLMImageProcessor"
    for batch, options in ((images, {}), ([images[:1], images[1:]], {"return_row_col_info": True}),
                           (images[2], {"do_image_splitting": False})):
        got = ours(batch, return_tensors="pt", **options)
        want = reference.image_processor(batch, return_tensors="pt", **options)
        assert set(got) == set(want)
        assert got["pixel_values"].shape == want["pixel_values"].shape
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-4, atol=1e-5)
        assert got["pixel_attention_mask"].tolist() == want["pixel_attention_mask"].tolist()
        for key in ("rows", "cols"):
            assert got.get(key) == want.get(key)


@pytest.mark.parametrize("kind", ["idefics3", "smolvlm"])
def test_processor_matches_reference(checkpoints, images, kind):
    folder, reference, _ = checkpoints[kind]
    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    assert type(ours).__name__ == type(reference).__name__
    assert ours.ready() and ours.image_seq_len == 4
    texts = ["<image> what is it", "hi <image> and <image> ok", "<image>"]
    nested = [images[:1], images[1:3], images[3:]]
    for batch in ([nested] if kind == "smolvlm" else [images, nested]):  # SmolVLM's: nested only
        got = ours(text=texts, images=batch, padding=True)
        want = reference(text=texts, images=batch, return_tensors="pt", padding=True)
        assert list(got) == list(want)
        for key in ("input_ids", "attention_mask", "pixel_attention_mask"):
            assert got[key].tolist() == want[key].tolist(), key
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-4, atol=1e-5)
    got = ours(text=texts[:1], images=images[2:3], do_image_splitting=False)
    want = reference(text=texts[:1], images=images[2:3], return_tensors="pt", do_image_splitting=False)
    assert got["input_ids"].tolist() == want["input_ids"].tolist()
    with pytest.raises(lightpipe.errors.InputError, match="<image>"):
        ours(text=texts[:2], images=[images[:2], images[2:]])


@pytest.mark.parametrize("kind", ["idefics3", "smolvlm"])
def test_logits_and_greedy_tokens_match_reference(checkpoints, images, kind):
    folder, reference, theirs = checkpoints[kind]
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__
    texts = ["<image> what is it", "hi <image> and <image> ok", "<image>"]
    nested = [images[:1], images[1:3], images[3:]]
    inputs = reference(text=texts, images=nested, return_tensors="pt", padding=True)
    assert inputs["attention_mask"].min() == 0  # padded prompts, padded view lists
    with torch.inference_mode():
        want = theirs(**inputs).logits
        got = ours(**inputs).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # a view with padded pixels (2x3 of its 4x4 patches real): bucketed positions, masked patches
    small = reference(text=texts[1:2], images=[images[1:3]], return_tensors="pt",
                      do_image_splitting=False)
    small["pixel_attention_mask"][0, 1, 16:] = 0
    small["pixel_attention_mask"][0, 1, :, 24:] = 0
    small["pixel_values"][0, 1] *= small["pixel_attention_mask"][0, 1]
    with torch.inference_mode():
        torch.testing.assert_close(ours(**small).logits, theirs(**small).logits, rtol=1e-4, atol=1e-4)
    one = reference(text=texts[1:2], images=[images[1:3]], return_tensors="pt")
    want = theirs.generate(**one, max_new_tokens=8, do_sample=False)
    assert ours.generate(**one, max_new_tokens=8, do_sample=False).tolist() == want.tolist()
    left = reference(text=texts, images=nested, return_tensors="pt", padding=True, padding_side="left")
    want = theirs.generate(**left, max_new_tokens=6, do_sample=False)
    assert ours.generate(**left, max_new_tokens=6, do_sample=False).tolist() == want.tolist()


@pytest.mark.parametrize("kind", ["idefics3", "smolvlm"])
def test_pipeline_matches_reference(checkpoints, images, kind):
    folder, reference, _ = checkpoints[kind]
    theirs = transformers.pipeline("image-text-to-text", model=str(folder), processor=reference)
    ours = lightpipe.pipeline("image-text-to-text", model=str(folder))
    assert_outputs_close(ours(images=images[0], text="<image> what is it", max_new_tokens=6),
                         theirs(images=images[0], text="<image> what is it", max_new_tokens=6))
    for image in images[1:3]:
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": "Describe it."}]}]
        assert_outputs_close(ours(text=messages, max_new_tokens=6, return_full_text=False),
                             theirs(text=messages, max_new_tokens=6, return_full_text=False))


def test_bare_model_checkpoint_loads(checkpoints, tmp_path):
    """A checkpoint of the reference's bare SmolVLMModel (no ``model.`` prefix; the head tied
    to the embeddings) loads into the generation class."""
    folder, _, theirs = checkpoints["smolvlm"]
    theirs.model.save_pretrained(tmp_path)
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(tmp_path)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        torch.testing.assert_close(ours(input_ids=ids).logits, theirs(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
