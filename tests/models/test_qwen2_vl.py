"""Qwen2-VL and Qwen2.5-VL against the reference on tiny random checkpoints it saved (vision
width 32, depth 2, 14-pixel patches merged 2x2; Qwen2.5-VL with 56-pixel windows and one
full-attention block; Qwen2 decoder hidden 48, 2 layers, M-RoPE sections [1, 2, 3]): the
dynamic-resolution image processor, the processor's image-token expansion, logits (images
of several sizes, a left-padded batch of 2, with and without the KV cache), greedy tokens,
the image-text-to-text pipeline (chat messages and a plain prompt), checkpoints with
transformers 4's config and weight names, and the errors on bad input.

The reference's Qwen2VLProcessor insists on a video processor, which needs torchvision (not
installed here): it is built in memory with that check skipped, and processor_config.json is
written by hand."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..conftest import assert_outputs_close

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
PROMPT = "<|vision_start|><|image_pad|><|vision_end|>"
SIZE = {"shortest_edge": 28 * 28, "longest_edge": 20000}


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["a cat sitting on a couch, describe the picture in words"] * 5, trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = transformers.GPT2Tokenizer(vocab=model["vocab"], merges=merges, bos_token=None,
                                           eos_token="<|im_end|>", unk_token="<|endoftext|>",
                                           pad_token="<|endoftext|>", padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    return tokenizer


def _reference_processor(tokenizer, image_processor, cls=transformers.Qwen2VLProcessor):
    from transformers import processing_utils

    check = processing_utils.ProcessorMixin.check_argument_for_proper_class
    processing_utils.ProcessorMixin.check_argument_for_proper_class = \
        lambda self, name, arg: None if arg is None else check(self, name, arg)
    try:
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    finally:
        processing_utils.ProcessorMixin.check_argument_for_proper_class = check


def _build(folder, family: str):
    tokenizer = _tokenizer()
    image_processor = transformers.Qwen2VLImageProcessorPil(size=SIZE)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    processor_class = "Qwen2VLProcessor" if family == "qwen2_vl" else "Qwen2_5_VLProcessor"
    (folder / "processor_config.json").write_text(json.dumps(
        {"processor_class": processor_class, "chat_template": CHAT_TEMPLATE}))
    text = dict(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 5000.0, "mrope_section": [1, 2, 3]})
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    if family == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=48, num_heads=4, mlp_ratio=2)
        config = transformers.Qwen2VLConfig(vision_config=vision, text_config=text, image_token_id=image_token)
        model_class = transformers.Qwen2VLForConditionalGeneration
    else:
        vision = dict(depth=2, hidden_size=32, intermediate_size=40, out_hidden_size=48, num_heads=4,
                      window_size=56, fullatt_block_indexes=[1])
        config = transformers.Qwen2_5_VLConfig(vision_config=vision, text_config=text,
                                               image_token_id=image_token)
        model_class = transformers.Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():  # wider than the default init: greedy choices are not near-ties
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    reference_class = transformers.Qwen2VLProcessor if family == "qwen2_vl" else transformers.Qwen2_5_VLProcessor
    return model, _reference_processor(tokenizer, image_processor, reference_class)


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def checkpoint(request, tmp_path_factory):
    """(folder, the reference's model, the reference's processor)."""
    folder = tmp_path_factory.mktemp(request.param)
    model, processor = _build(folder, request.param)
    return folder, model, processor


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    rng = np.random.default_rng(0)
    # square (one window), wide (a partial window), large (2x3 windows), tall and resized down
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((56, 56), (60, 90), (120, 170), (300, 40))]


def test_image_processor_matches_reference(checkpoint, images):
    folder, _, reference = checkpoint
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder)
    assert type(ours).__name__ == "Qwen2VLImageProcessor"
    for batch, kwargs in ((images, {}), (images[1], {}), ([images[:2], [images[2]]], {})):
        got = ours(batch, return_tensors="pt", **kwargs)
        want = reference.image_processor(batch, return_tensors="pt", **kwargs)
        assert got["image_grid_thw"].tolist() == want["image_grid_thw"].tolist()
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-5, atol=1e-5)
    # the older settings: min_pixels / max_pixels, and other patch sizes
    legacy = lightpipe.processing.qwen2_vl.Qwen2VLImageProcessor(min_pixels=3000, max_pixels=9000,
                                                                  patch_size=7, merge_size=2)
    theirs = transformers.Qwen2VLImageProcessorPil(min_pixels=3000, max_pixels=9000, patch_size=7, merge_size=2)
    got, want = legacy(images, return_tensors="pt"), theirs(images, return_tensors="pt")
    assert got["image_grid_thw"].tolist() == want["image_grid_thw"].tolist()
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-5, atol=1e-5)


def test_processor_matches_reference(checkpoint, images):
    folder, _, reference = checkpoint
    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    assert type(ours).__name__ == type(reference).__name__
    texts = [f"{PROMPT} describe a cat", f"a {PROMPT} and {PROMPT} ok"]
    got = ours(text=texts, images=images[:3], padding=True)
    want = reference(text=texts, images=images[:3], return_tensors="pt", padding=True)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert got[key].tolist() == want[key].tolist(), key
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="image"):
        ours(text=texts, images=images[:2])


def _inputs(reference, images):
    texts = [f"{PROMPT} describe a cat", f"a {PROMPT} and {PROMPT} ok sitting"]
    return reference(text=texts, images=images, return_tensors="pt", padding=True)


def test_logits_with_and_without_cache_match_reference(checkpoint, images):
    folder, theirs, reference = checkpoint
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__
    inputs = _inputs(reference, images[:3])
    assert inputs["attention_mask"][0].tolist().count(0) > 0  # the first row is left-padded
    with torch.inference_mode():
        want = theirs(**inputs, use_cache=True)
        got = ours(**inputs, use_cache=True)
        torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
        # one more token through each cache: M-RoPE positions continue from rope_deltas (the
        # reference's cached forward breaks when given the mask, so it runs without)
        new = torch.tensor([[5], [7]])
        want_next = theirs(input_ids=new, cache=want.cache).logits
        got_next = ours(input_ids=new, cache=got.cache).logits
        torch.testing.assert_close(got_next, want_next, rtol=1e-4, atol=1e-4)
        # with the mask: as the reference's forward over the whole longer prompt
        longer = {**inputs, "input_ids": torch.cat([inputs["input_ids"], new], 1)}
        for key in ("attention_mask", "mm_token_type_ids"):
            longer[key] = torch.cat([inputs[key], torch.full((2, 1), int(key == "attention_mask"))], 1)
        want_longer = theirs(**longer).logits[:, -1:]
        got = ours(**inputs, use_cache=True)
        got_next = ours(input_ids=new, attention_mask=longer["attention_mask"], cache=got.cache).logits
    torch.testing.assert_close(got_next, want_longer, rtol=1e-4, atol=1e-4)
    # a text-only forward too
    text = reference(text=["a cat sitting"], return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(ours(**text).logits, theirs(**text).logits, rtol=1e-4, atol=1e-4)


def test_greedy_tokens_match_reference(checkpoint, images):
    folder, theirs, reference = checkpoint
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(folder)
    inputs = _inputs(reference, [images[3], images[0], images[1]])
    want = theirs.generate(**inputs, max_new_tokens=8, do_sample=False)
    got = ours.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert got.tolist() == want.tolist()
    settings = dict(max_new_tokens=5, num_beams=2, num_return_sequences=2, do_sample=False)
    assert ours.generate(**inputs, **settings).tolist() == theirs.generate(**inputs, **settings).tolist()
    # a prompt ending on the image: the three planes go on from different positions
    inputs = reference(text=[f"a cat {PROMPT}"], images=images[2:3], return_tensors="pt")
    want = theirs.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert ours.generate(**inputs, max_new_tokens=6, do_sample=False).tolist() == want.tolist()


def test_pipeline_matches_reference(checkpoint, images):
    folder, _, reference = checkpoint
    theirs = transformers.pipeline("image-text-to-text", model=str(folder), processor=reference)
    ours = lightpipe.pipeline("image-text-to-text", model=str(folder))
    messages = [{"role": "user", "content": [{"type": "image", "image": images[1]},
                                             {"type": "text", "text": "Describe it."}]}]
    got = ours(text=messages, max_new_tokens=6, return_full_text=False)
    want = theirs(text=messages, max_new_tokens=6, return_full_text=False)
    assert_outputs_close(got, want)
    prompt = f"{PROMPT} a cat"
    assert_outputs_close(ours(images=images[2], text=prompt, max_new_tokens=5),
                         theirs(images=images[2], text=prompt, max_new_tokens=5))
    # the task from config.architectures (...ForConditionalGeneration) and the family's hint
    assert lightpipe.pipeline(model=str(folder)).task == "image-text-to-text"


def test_transformers_4_checkpoint_loads(checkpoint, images, tmp_path):
    """transformers 4 wrote the decoder's fields at the top of config.json (rope_scaling
    {"type": "mrope"}); weights under the names transformers 5 holds in memory also load."""
    from safetensors.torch import load_file, save_file

    folder, theirs, reference = checkpoint
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    config = json.loads((folder / "config.json").read_text())
    text = config.pop("text_config")
    rope = text.pop("rope_parameters")
    config.update({k: v for k, v in text.items() if k != "model_type"})
    config.update(rope_theta=rope["rope_theta"], transformers_version="4.49.0",
                  rope_scaling={"type": "mrope", "mrope_section": rope["mrope_section"]})
    (old / "config.json").write_text(json.dumps(config))
    state = load_file(folder / "model.safetensors")
    assert any(k.startswith("visual.") for k in state)  # the layout transformers saves
    renamed = {("model.language_model." + k[6:] if k.startswith("model.") else
                "model." + k if k.startswith("visual.") else k): v for k, v in state.items()}
    save_file(renamed, old / "model.safetensors", metadata={"format": "pt"})
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(old)
    inputs = _inputs(reference, images[:3])
    with torch.inference_mode():
        want = theirs(**inputs).logits
        torch.testing.assert_close(ours(**inputs).logits, want, rtol=1e-4, atol=1e-4)
    # and what lightpipe saves, the reference loads (nested configs written as JSON objects)
    ours.save_pretrained(tmp_path / "resaved")
    again = transformers.AutoModelForImageTextToText.from_pretrained(str(tmp_path / "resaved")).eval()
    with torch.inference_mode():
        torch.testing.assert_close(again(**inputs).logits, want, rtol=1e-4, atol=1e-4)


def test_bad_input_is_a_clear_error(checkpoint, images):
    folder, _, reference = checkpoint
    ours = lightpipe.AutoModelForImageTextToText.from_pretrained(folder)
    inputs = _inputs(reference, images[:3])
    with pytest.raises(InputError, match="image_grid_thw"):
        ours(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    with pytest.raises(InputError, match="image_grid_thw"):
        ours.generate(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                      attention_mask=inputs["attention_mask"], max_new_tokens=2)
    fewer = reference(text=[f"{PROMPT} describe"], images=images[:1], return_tensors="pt")
    with pytest.raises(InputError, match="do not match"):  # the tokens of 1 image, features of 3
        ours(input_ids=fewer["input_ids"], pixel_values=inputs["pixel_values"],
             image_grid_thw=inputs["image_grid_thw"])
    with pytest.raises(InputError, match="image"):
        lightpipe.pipeline("image-text-to-text", model=str(folder))(
            images=images[:2], text=f"{PROMPT} one image only", max_new_tokens=2)
