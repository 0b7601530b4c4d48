"""ViLT against the reference (transformers 5) on tiny random checkpoints it saved: the image
processor's pixel values and masks on odd-sized images, the question-answering logits and the
base model's states on batches of mixed image sizes and padded questions."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.processing.vilt import ViltImageProcessor

from ..fixtures.multimodal import odd_image, vilt_checkpoint  # noqa: F401
from ..fixtures.multimodal import multimodal_images  # noqa: F401


def _processors(folder, **kwargs):
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder, **kwargs)
    theirs = transformers.ViltImageProcessorPil.from_pretrained(str(folder), **kwargs)
    return ours, theirs


def _same_features(got, want):
    assert set(got) == set(want)
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-5, atol=1e-6)
    if "pixel_mask" in want:
        assert torch.equal(got["pixel_mask"], want["pixel_mask"].to(got["pixel_mask"].dtype))


def test_processor_is_vilt_and_matches_reference_on_a_mixed_batch(vilt_checkpoint, multimodal_images):
    ours, theirs = _processors(vilt_checkpoint())
    assert isinstance(ours, ViltImageProcessor)
    images = [image.convert("RGB") for image in multimodal_images[:5] + multimodal_images[7:]]
    got, want = ours(images, return_tensors="pt"), theirs(images, return_tensors="pt")
    assert got["pixel_values"].shape[-2:] == (96, 96)  # padded to the largest; sides % 32 == 0
    assert not bool(got["pixel_mask"].all())
    _same_features(got, want)


@pytest.mark.parametrize("index", range(8))
def test_processor_matches_reference_per_image(vilt_checkpoint, multimodal_images, index):
    ours, theirs = _processors(vilt_checkpoint())
    image = multimodal_images[index].convert("RGB")  # the reference's processor takes RGB
    _same_features(ours(image, return_tensors="pt"), theirs(image, return_tensors="pt"))


@pytest.mark.parametrize("settings", [dict(size={"shortest_edge": 96}, size_divisor=16),
                                      dict(do_pad=False), dict(resample=2, do_normalize=False),
                                      dict(size=48)])
def test_processor_settings_match_reference(vilt_checkpoint, multimodal_images, settings):
    ours, theirs = _processors(vilt_checkpoint(), **settings)
    images = [multimodal_images[0]] if settings.get("do_pad") is False else multimodal_images[:3]
    images = [image.convert("RGB") for image in images]
    _same_features(ours(images, return_tensors="pt"), theirs(images, return_tensors="pt"))


def test_processor_refuses_an_image_too_thin_to_keep_a_patch(vilt_checkpoint):
    ours, _ = _processors(vilt_checkpoint())
    with pytest.raises(InputError, match="too thin"):
        ours(odd_image(2, 300), return_tensors="pt")


def test_processor_takes_any_mode_as_rgb(vilt_checkpoint, multimodal_images):
    ours, _ = _processors(vilt_checkpoint())
    for image in (multimodal_images[3], multimodal_images[4], multimodal_images[7]):
        _same_features(ours(image, return_tensors="pt"), ours(image.convert("RGB"), return_tensors="pt"))


def _inputs(folder, images, questions):
    images = [image.convert("RGB") for image in images]
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    text = tokenizer(questions, padding=True, return_tensors="pt")
    pixels = transformers.ViltImageProcessorPil.from_pretrained(str(folder))(images, return_tensors="pt")
    assert not bool(text["attention_mask"].all())
    return {**text, **pixels}


QUESTIONS = ["what is in the image?", "how many cats?", "is this a dog on the left side?"]


def _models(folder, head):
    ours = getattr(lightpipe, head).from_pretrained(folder)
    reference = {"AutoModelForVisualQuestionAnswering": transformers.ViltForQuestionAnswering,
                 "AutoModel": transformers.ViltModel}[head]
    return ours, reference.from_pretrained(str(folder)).eval()


def test_question_answering_logits_match_reference(vilt_checkpoint, multimodal_images):
    folder = vilt_checkpoint()
    ours, theirs = _models(folder, "AutoModelForVisualQuestionAnswering")
    assert type(ours).__name__ == "ViltForQuestionAnswering"
    inputs = _inputs(folder, multimodal_images[:3], QUESTIONS)
    with torch.inference_mode():
        got, want = ours(**inputs).logits, theirs(**inputs).logits
        alone = [ours(**{k: v[i:i + 1] for k, v in inputs.items()}).logits for i in range(3)]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert want.std() > 0.1  # the checkpoint's answers depend on the inputs
    # each row alone (its own text length and image grid) gives the same logits
    torch.testing.assert_close(torch.cat(alone), want, rtol=1e-4, atol=1e-5)


def _sorted_image_tokens(states, mask):
    """Image-token states of one row, real tokens only, sorted per channel: the reference
    orders them at random, so compare them as a set."""
    return states[mask.bool()].sort(dim=0).values


def test_base_model_states_match_reference(vilt_checkpoint, multimodal_images):
    folder = vilt_checkpoint("ViltModel")
    ours, theirs = _models(folder, "AutoModel")
    inputs = _inputs(folder, [multimodal_images[1], multimodal_images[3], multimodal_images[0]],
                     QUESTIONS)
    with torch.inference_mode():
        got = ours(**inputs, output_hidden_states=True)
        want = theirs(**inputs, output_hidden_states=True)
        _, image_mask = ours.embeddings.visual_embed(inputs["pixel_values"], inputs["pixel_mask"])
    text = inputs["input_ids"].shape[1]
    assert got.last_hidden_state.shape == want.last_hidden_state.shape
    torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=1e-4, atol=1e-5)
    assert len(got.hidden_states) == len(want.hidden_states) == 3
    for ours_states, their_states in zip(got.hidden_states + (got.last_hidden_state,),
                                         want.hidden_states + (want.last_hidden_state,)):
        real_text = inputs["attention_mask"].bool()
        torch.testing.assert_close(ours_states[:, :text][real_text], their_states[:, :text][real_text],
                                   rtol=1e-4, atol=1e-5)
        for row in range(3):
            mask = image_mask[row]
            torch.testing.assert_close(_sorted_image_tokens(ours_states[row, text:], mask),
                                       _sorted_image_tokens(their_states[row, text:], mask),
                                       rtol=1e-4, atol=1e-5)


def test_base_model_from_question_answering_checkpoint(vilt_checkpoint, multimodal_images):
    folder = vilt_checkpoint()
    ours, theirs = _models(folder, "AutoModel")
    inputs = _inputs(folder, multimodal_images[:2], QUESTIONS[:2])
    with torch.inference_mode():
        torch.testing.assert_close(ours(**inputs).pooler_output, theirs(**inputs).pooler_output,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides", [dict(max_image_length=1000), dict(hidden_act="gelu_new"),
                                       dict(qkv_bias=False, patch_size=32)])
def test_config_variants_match_reference(vilt_checkpoint, multimodal_images, overrides):
    folder = vilt_checkpoint(**overrides)
    ours, theirs = _models(folder, "AutoModelForVisualQuestionAnswering")
    inputs = _inputs(folder, multimodal_images[:3], QUESTIONS)
    with torch.inference_mode():
        torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).logits, rtol=1e-4, atol=1e-5)


def test_without_masks_every_token_counts(vilt_checkpoint, multimodal_images):
    """No attention_mask / pixel_mask: all text tokens and all patches are real (as the
    reference)."""
    folder = vilt_checkpoint()
    ours, theirs = _models(folder, "AutoModelForVisualQuestionAnswering")
    inputs = _inputs(folder, [multimodal_images[0]] * 2, QUESTIONS[:2])
    inputs = {"input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"]}
    with torch.inference_mode():
        torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).logits, rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_clear_errors(vilt_checkpoint, multimodal_images):
    folder = vilt_checkpoint()
    ours = lightpipe.AutoModelForVisualQuestionAnswering.from_pretrained(folder)
    inputs = _inputs(folder, multimodal_images[:2], QUESTIONS[:2])
    with pytest.raises(InputError, match="2 texts but 1 images"):
        ours(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"][:1])
    with pytest.raises(InputError, match="pixel_values"):
        ours(input_ids=inputs["input_ids"])
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        ours(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"][:, :1])
    long_ids = torch.ones(1, 41, dtype=torch.long)
    with pytest.raises(InputError, match="truncation=True"):
        ours(input_ids=long_ids, pixel_values=inputs["pixel_values"][:1])


def test_save_pretrained_round_trip_loads_in_the_reference(vilt_checkpoint, multimodal_images, tmp_path):
    folder = vilt_checkpoint()
    ours = lightpipe.AutoModelForVisualQuestionAnswering.from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    theirs = transformers.ViltForQuestionAnswering.from_pretrained(str(tmp_path)).eval()
    inputs = _inputs(folder, multimodal_images[:2], QUESTIONS[:2])
    with torch.inference_mode():
        torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).logits, rtol=1e-4, atol=1e-5)


def test_legacy_feature_extractor_config_loads_as_vilt(tmp_path, multimodal_images):
    """The Hub's dandelin/vilt-b32-finetuned-vqa names a ViltFeatureExtractor with ``size: 384``."""
    import json

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViltFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3, "size": 384,
        "size_divisor": 32}))
    ours = lightpipe.AutoImageProcessor.from_pretrained(tmp_path)
    theirs = transformers.ViltImageProcessorPil(size={"shortest_edge": 384}, resample=3)
    assert isinstance(ours, ViltImageProcessor)
    images = [image.convert("RGB") for image in multimodal_images[:2]]
    _same_features(ours(images, return_tensors="pt"), theirs(images, return_tensors="pt"))
