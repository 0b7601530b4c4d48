"""Parity of OWL-ViT (lightpipe.models.owlvit), OWLv2 (lightpipe.models.owlv2), their image
processors and processor with the reference on tiny random checkpoints it saved: logits, boxes
and embeddings of the detectors, the towers of OwlViTModel, pixel values, post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.owlvit import OwlViTForObjectDetection, OwlViTModel
from lightpipe.processing.owlvit import OwlViTImageProcessor
from lightpipe.models.owlv2 import Owlv2ForObjectDetection
from lightpipe.processing.owlvit import Owlv2ImageProcessor
from tests.fixtures.owlvit import owlv2_folder, owlvit_folder, owlvit_images  # noqa: F401

OUTPUTS = ["logits", "pred_boxes", "text_embeds", "image_embeds", "class_embeds"]


def _close(got, want, name=""):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def pair(owlvit_folder):
    ours = lightpipe.AutoModelForZeroShotObjectDetection.from_pretrained(owlvit_folder)
    theirs = transformers.OwlViTForObjectDetection.from_pretrained(str(owlvit_folder)).eval()
    return ours, theirs


@pytest.fixture(scope="module")
def reference_processor(owlvit_folder):
    return transformers.OwlViTProcessor.from_pretrained(str(owlvit_folder))


def _images(count, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 50 - 5 * i, 3), dtype=np.uint8))
            for i in range(count)]


def test_classes(pair, owlvit_folder):
    ours, _ = pair
    assert type(ours) is OwlViTForObjectDetection
    assert type(lightpipe.AutoModelForZeroShotObjectDetection.from_pretrained(owlvit_folder)) \
        is OwlViTForObjectDetection
    # AutoModel gives the towers, as transformers' AutoModel does (OwlViTModel)
    assert type(lightpipe.AutoModel.from_pretrained(owlvit_folder)).__name__ == \
        type(transformers.AutoModel.from_pretrained(owlvit_folder)).__name__ == "OwlViTModel"


@pytest.mark.parametrize("texts", [[["a cat", "the dog"]], [["a cat", "the dog", "x"], ["dog"]],
                                   [["of the cat dog"], ["a"]]])
def test_detector_matches_reference(pair, reference_processor, texts):
    """Queries padded to 16 tokens and to the most queries per image (the reference
    processor's rows of padding), one or several images."""
    ours, theirs = pair
    inputs = reference_processor(text=texts, images=_images(len(texts)), return_tensors="pt")
    with torch.no_grad():
        want = theirs(**inputs)
    got = ours(**inputs)
    assert got["logits"].shape == want.logits.shape
    for name in OUTPUTS:
        _close(got[name], want[name], name)
    _close(got["text_model_output"]["pooler_output"], want.text_model_output.pooler_output)
    _close(got["vision_model_output"]["last_hidden_state"], want.vision_model_output.last_hidden_state)


def test_padding_queries_and_unpadded_text(pair):
    """A query row whose first id is 0 is masked (the lowest logit); unpadded ids of any
    length up to 16 tokens work as well."""
    ours, theirs = pair
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[519, 320, 515, 520], [519, 513, 517, 520], [519, 300, 520, 0],
                        [0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    with torch.no_grad():
        want = theirs(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    got = ours(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    for name in OUTPUTS:
        _close(got[name], want[name], name)
    assert got["logits"][1, :, 1].eq(torch.finfo(torch.float32).min).all()


def test_interpolated_positions_match_reference(pair):
    ours, theirs = pair
    pixels = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    ids = torch.tensor([[519, 320, 515, 520]])
    with torch.no_grad():
        want = theirs(input_ids=ids, pixel_values=pixels, interpolate_pos_encoding=True)
    got = ours(input_ids=ids, pixel_values=pixels, interpolate_pos_encoding=True)
    assert got["pred_boxes"].shape == (1, 30, 4)
    for name in OUTPUTS:
        _close(got[name], want[name], name)


def test_owlvit_model_matches_reference(owlvit_folder, reference_processor):
    """The towers alone (OwlViTModel), loaded from the detector's checkpoint."""
    ours = OwlViTModel.from_pretrained(owlvit_folder)
    theirs = transformers.OwlViTModel.from_pretrained(str(owlvit_folder)).eval()
    inputs = reference_processor(text=[["a cat", "the dog", "x"]], images=_images(2), return_tensors="pt")
    with torch.no_grad():
        want = theirs(**inputs)
    got = ours(**inputs)
    for name in ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]:
        _close(got[name], want[name], name)


def test_bad_inputs_raise_clear_errors(pair):
    ours, _ = pair
    with pytest.raises(InputError, match="input_ids"):
        ours(pixel_values=torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="same number of queries"):
        ours(input_ids=torch.ones(3, 4, dtype=torch.long), pixel_values=torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match="32x32"):
        ours(input_ids=torch.ones(1, 4, dtype=torch.long), pixel_values=torch.zeros(1, 3, 40, 32))


def test_pixel_values_match_reference(owlvit_folder, owlvit_images):
    ours = lightpipe.AutoImageProcessor.from_pretrained(owlvit_folder)
    assert isinstance(ours, OwlViTImageProcessor)
    theirs = transformers.OwlViTImageProcessorPil.from_pretrained(str(owlvit_folder))
    images = list(owlvit_images.values())
    want = theirs(images, return_tensors="pt")["pixel_values"]
    got = ours(images, return_tensors="pt")["pixel_values"]
    assert got.shape == want.shape == (len(images), 3, 32, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_default_processor_matches_reference_defaults(owlvit_images):
    """768x768 bicubic, CLIP mean and std, as the reference's defaults."""
    image = owlvit_images["rgb_pil"]
    want = transformers.OwlViTImageProcessorPil()(image, return_tensors="pt")["pixel_values"]
    got = OwlViTImageProcessor()(image, return_tensors="pt")["pixel_values"]
    assert got.shape == (1, 3, 768, 768)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_post_process_matches_reference(pair, reference_processor, owlvit_folder):
    ours_model, theirs_model = pair
    inputs = reference_processor(text=[["a cat", "dog"], ["x"]], images=_images(2), return_tensors="pt")
    with torch.no_grad():
        outputs = theirs_model(**inputs)
    sizes = torch.tensor([[30, 50], [37, 45]])
    theirs = transformers.OwlViTImageProcessorPil.from_pretrained(str(owlvit_folder))
    want = theirs.post_process_object_detection(outputs, threshold=0.3, target_sizes=sizes)
    ours = lightpipe.AutoImageProcessor.from_pretrained(owlvit_folder)
    got = ours.post_process_object_detection(ours_model(**inputs), threshold=0.3, target_sizes=sizes)
    for g, w in zip(got, want):
        assert g["labels"].tolist() == w["labels"].tolist()
        _close(g["scores"], w["scores"])
        _close(g["boxes"], w["boxes"])


# --- OWLv2: OWL-ViT plus objectness; images padded to a square, resized as scikit-image ---
def test_owlv2_detector_matches_reference(owlv2_folder):
    ours = lightpipe.AutoModelForZeroShotObjectDetection.from_pretrained(owlv2_folder)
    assert type(ours) is Owlv2ForObjectDetection
    theirs = transformers.Owlv2ForObjectDetection.from_pretrained(str(owlv2_folder)).eval()
    processor = transformers.Owlv2Processor.from_pretrained(str(owlv2_folder))
    inputs = processor(text=[["a cat", "the dog", "x"], ["dog"]], images=_images(2), return_tensors="pt")
    with torch.no_grad():
        want = theirs(**inputs)
    got = ours(**inputs)
    for name in OUTPUTS + ["objectness_logits"]:
        _close(got[name], want[name], name)
    pixels = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([[519, 320, 515, 520]])
    with torch.no_grad():
        want = theirs(input_ids=ids, pixel_values=pixels, interpolate_pos_encoding=True)
    got = ours(input_ids=ids, pixel_values=pixels, interpolate_pos_encoding=True)
    for name in OUTPUTS + ["objectness_logits"]:
        _close(got[name], want[name], name)


def test_owlv2_pixel_values_match_reference(owlv2_folder, owlvit_images):
    """Shrunk (blurred first), enlarged, tall and wide, every mode."""
    from PIL import Image

    ours = lightpipe.AutoImageProcessor.from_pretrained(owlv2_folder)
    assert isinstance(ours, Owlv2ImageProcessor)
    theirs = transformers.Owlv2ImageProcessorPil.from_pretrained(str(owlv2_folder))
    rng = np.random.default_rng(4)
    images = list(owlvit_images.values()) + [
        Image.fromarray(rng.integers(0, 256, (300, 170, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (9, 20, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8))]
    for image in images:
        want = theirs(image, return_tensors="pt")["pixel_values"]
        got = ours(image, return_tensors="pt")["pixel_values"]
        assert got.shape == want.shape == (1, 3, 32, 32)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    big = images[-3]
    for size in [{"height": 64, "width": 48}, {"height": 96, "width": 96}]:
        want = theirs(big, size=size, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(ours(big, size=size, return_tensors="pt")["pixel_values"], want,
                                   rtol=0, atol=1e-5)


def test_owlv2_post_process_scales_by_the_longer_side(owlv2_folder):
    theirs = transformers.Owlv2ImageProcessorPil.from_pretrained(str(owlv2_folder))
    ours = lightpipe.AutoImageProcessor.from_pretrained(owlv2_folder)
    generator = torch.Generator().manual_seed(5)
    outputs = transformers.models.owlv2.modeling_owlv2.Owlv2ObjectDetectionOutput(
        logits=torch.randn(2, 16, 3, generator=generator),
        pred_boxes=torch.rand(2, 16, 4, generator=generator))
    sizes = torch.tensor([[30, 50], [80, 45]])
    want = theirs.post_process_object_detection(outputs, threshold=0.4, target_sizes=sizes)
    got = ours.post_process_object_detection(outputs, threshold=0.4, target_sizes=sizes)
    for g, w in zip(got, want):
        assert g["labels"].tolist() == w["labels"].tolist()
        _close(g["scores"], w["scores"])
        _close(g["boxes"], w["boxes"])


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_processor_matches_reference(owlvit_folder, owlv2_folder, family):
    """AutoProcessor: queries padded to 16 tokens and to the most queries per image; pixels;
    grounded post-processing names each box's query."""
    folder = owlvit_folder if family == "owlvit" else owlv2_folder
    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    assert type(ours).__name__ == "OwlViTProcessor"
    theirs = transformers.AutoProcessor.from_pretrained(str(folder))
    images = _images(2)
    for text in ["a cat", ["a cat", "dog"], [["a cat", "the dog", "x"], ["dog"]]]:
        count = len(text) if isinstance(text[0], list) else 1
        want = theirs(text=text, images=images[:count], return_tensors="pt")
        got = ours(text=text, images=images[:count])
        assert set(got) == set(want)
        assert got["input_ids"].tolist() == want["input_ids"].tolist()
        assert got["attention_mask"].tolist() == want["attention_mask"].tolist()
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=0, atol=1e-5)
    model = lightpipe.AutoModelForZeroShotObjectDetection.from_pretrained(folder)
    labels = [["a cat", "the dog", "x"], ["dog", "of", "the"]]
    inputs = ours(text=labels, images=images)
    outputs = model(**inputs)
    sizes = [(30, 50), (37, 45)]
    want = theirs.post_process_grounded_object_detection(outputs, 0.3, sizes, text_labels=labels)
    got = ours.post_process_grounded_object_detection(outputs, 0.3, sizes, text_labels=labels)
    for g, w in zip(got, want):
        assert g["text_labels"] == w["text_labels"]
        _close(g["boxes"], w["boxes"])
    with pytest.raises(TypeError, match="one list of strings per image"):
        ours(text=[["a"], 3])
    with pytest.raises(InputError, match="query_images"):
        ours(images=images, query_images=images)


def test_legacy_feature_extractor_config(tmp_path, owlvit_images):
    """google/owlvit-base-patch32's preprocessor_config.json: OwlViTFeatureExtractor, int sizes."""
    import json

    settings = {"crop_size": 768, "do_center_crop": False, "do_normalize": True, "do_resize": True,
                "feature_extractor_type": "OwlViTFeatureExtractor", "resample": 3, "size": 768,
                "image_mean": [0.48145466, 0.4578275, 0.40821073], "processor_class": "OwlViTProcessor",
                "image_std": [0.26862954, 0.26130258, 0.27577711]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    ours = lightpipe.AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(ours, OwlViTImageProcessor)
    theirs = transformers.AutoImageProcessor.from_pretrained(str(tmp_path))
    image = owlvit_images["wide_pil"]
    want = theirs(image, return_tensors="pt")["pixel_values"]
    got = ours(image, return_tensors="pt")["pixel_values"]
    assert got.shape == (1, 3, 768, 768)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_save_pretrained_round_trip(owlvit_folder, owlv2_folder, tmp_path, family):
    """Our saved folder loads in the reference with the same outputs."""
    folder = owlvit_folder if family == "owlvit" else owlv2_folder
    ours = lightpipe.AutoModelForZeroShotObjectDetection.from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    reference = getattr(transformers, "OwlViTForObjectDetection" if family == "owlvit"
                        else "Owlv2ForObjectDetection")
    theirs = reference.from_pretrained(str(tmp_path)).eval()
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    ids = torch.tensor([[519, 320, 515, 520]])
    with torch.no_grad():
        want = theirs(input_ids=ids, pixel_values=pixels)
    got = ours(input_ids=ids, pixel_values=pixels)
    for name in ["logits", "pred_boxes"]:
        _close(got[name], want[name], name)
