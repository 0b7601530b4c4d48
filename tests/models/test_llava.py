"""LlavaForConditionalGeneration and LlavaProcessor against transformers 5 (tiny random
checkpoint from tests/fixtures/llava.py)."""

from __future__ import annotations

import pytest
import torch
import transformers

from lightpipe.config import Config
from lightpipe.errors import InputError
from lightpipe.models import model_class
from lightpipe.processing import AutoProcessor
from lightpipe.processing.llava import LlavaProcessor
from tests.fixtures.llava import llava_images, llava_path  # noqa: F401  (fixtures)

PROMPT = "USER: <image>\nWhat is shown? ASSISTANT:"
TWO = "USER: <image>\n<image>\nCompare them. ASSISTANT:"


@pytest.fixture(scope="module")
def models(llava_path):
    config = Config.from_folder(llava_path)
    ours = model_class(config, "AutoModelForImageTextToText").from_pretrained(llava_path)
    ref = transformers.LlavaForConditionalGeneration.from_pretrained(llava_path).eval()
    return ours, ref


@pytest.fixture(scope="module")
def processors(llava_path):
    return LlavaProcessor.from_pretrained(llava_path), transformers.AutoProcessor.from_pretrained(llava_path)


def test_registered_heads(llava_path, models):
    from lightpipe.models.llava import LlavaForConditionalGeneration

    config = Config.from_folder(llava_path)
    assert model_class(config, "AutoModelForImageTextToText") is LlavaForConditionalGeneration
    assert type(models[0]) is LlavaForConditionalGeneration


@pytest.mark.parametrize("prompt, count", [(PROMPT, 1), (TWO, 2)])
def test_processor_matches_reference(processors, llava_images, prompt, count):
    ours, ref = processors
    images = llava_images[:count]
    mine = ours(text=prompt, images=images)
    theirs = ref(text=prompt, images=images, return_tensors="pt")
    assert mine["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert mine["attention_mask"].tolist() == theirs["attention_mask"].tolist()
    torch.testing.assert_close(mine["pixel_values"], theirs["pixel_values"], rtol=1e-5, atol=1e-5)


def test_auto_processor_picks_llava(llava_path):
    processor = AutoProcessor.from_pretrained(llava_path)
    assert isinstance(processor, LlavaProcessor)
    assert processor.patch_size == 8 and processor.num_additional_image_tokens == 1


@pytest.mark.parametrize("prompt, count", [(PROMPT, 1), (TWO, 2)])
def test_logits_match_reference(models, processors, llava_images, prompt, count):
    ours, ref = models
    inputs = processors[1](text=prompt, images=llava_images[:count], return_tensors="pt")
    with torch.no_grad():
        expected = ref(**inputs).logits
        got = ours(**inputs).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_hub_layout_loads(models, processors, llava_images, llava_path, tmp_path):
    """The llava-hf checkpoints' names (vision_tower.vision_model..., language_model.model...)."""
    import shutil

    from safetensors.torch import load_file, save_file

    for item in llava_path.iterdir():
        if item.is_file() and item.name not in ("model.safetensors", "preprocessor_config.json"):
            shutil.copy(item, tmp_path / item.name)
    state = load_file(str(llava_path / "model.safetensors"))
    hub = {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in state.items()}
    assert any(k.startswith("vision_tower.vision_model.") for k in hub)
    save_file(hub, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config = Config.from_folder(tmp_path)
    loaded = model_class(config, "AutoModelForImageTextToText").from_pretrained(tmp_path)
    inputs = processors[1](text=PROMPT, images=llava_images[:1], return_tensors="pt")
    # transformers 5's folders keep the image processor in processor_config.json only
    mine = LlavaProcessor.from_pretrained(tmp_path)(text=PROMPT, images=llava_images[:1])
    assert mine["input_ids"].tolist() == inputs["input_ids"].tolist()
    torch.testing.assert_close(mine["pixel_values"], inputs["pixel_values"], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, models[1](**inputs).logits,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prompt, count", [(PROMPT, 1), (TWO, 2)])
def test_generate_matches_reference(models, processors, llava_images, prompt, count):
    ours, ref = models
    inputs = processors[1](text=prompt, images=llava_images[:count], return_tensors="pt")
    expected = ref.generate(**inputs, max_new_tokens=12, do_sample=False)
    got = ours.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert got.tolist() == expected.tolist()
    assert got.shape[1] > inputs["input_ids"].shape[1]  # prompt ids + new tokens


def test_image_count_mismatch_is_clear(models, processors, llava_images):
    ours = models[0]
    inputs = processors[0](text=PROMPT, images=llava_images[:1])
    pixel_values = torch.cat([inputs["pixel_values"]] * 2)
    with pytest.raises(InputError, match="image tokens"):
        ours(input_ids=inputs["input_ids"], pixel_values=pixel_values)
    with pytest.raises(InputError, match="no pixel_values"):
        ours(input_ids=inputs["input_ids"])


def test_processor_errors(processors, llava_images):
    ours = processors[0]
    with pytest.raises(InputError, match="<image>"):
        ours(text="USER: no image here ASSISTANT:", images=llava_images[:1])
    with pytest.raises(InputError, match="2 image"):
        ours(text=PROMPT, images=llava_images[:2])
    bare = LlavaProcessor(tokenizer=ours.tokenizer, image_processor=ours.image_processor)
    bare.patch_size = None
    with pytest.raises(InputError, match="patch_size"):
        bare(text=PROMPT, images=llava_images[:1])
