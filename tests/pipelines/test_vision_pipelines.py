"""image-classification, image-feature-extraction, zero-shot-image-classification and
object-detection against the reference pipelines on tiny random checkpoints: every argument,
batched and not, every input form; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..conftest import assert_outputs_close

_PIPES: dict = {}


@pytest.fixture(scope="module")
def pipes(vision_model):
    """(ours, reference) pipelines for (task, model_type, head), built once."""

    def get(task, model_type, head):
        key = (task, model_type, head)
        if key not in _PIPES:
            folder = str(vision_model(model_type, head))
            _PIPES[key] = (lightpipe.pipeline(task, model=folder), transformers.pipeline(task, model=folder))
        return _PIPES[key]

    return get


def _images(test_images) -> list:
    return list(test_images.values())


# --- image-classification ---
@pytest.mark.parametrize("model_type", ["vit", "swin", "convnext", "resnet"])
@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}, {"top_k": 10}, {"function_to_apply": "sigmoid"},
                                    {"function_to_apply": "none", "top_k": 3}, {"function_to_apply": "softmax"}])
def test_image_classification_matches_reference(pipes, test_images, model_type, kwargs):
    ours, theirs = pipes("image-classification", model_type, "AutoModelForImageClassification")
    images = _images(test_images)
    assert_outputs_close(ours(images[0], **kwargs), theirs(images[0], **kwargs))
    want = theirs(images, **kwargs)
    for batch_size in (1, 3):
        assert_outputs_close(ours(images, batch_size=batch_size, **kwargs), want)


def test_image_classification_input_forms(pipes, test_images):
    ours, theirs = pipes("image-classification", "vit", "AutoModelForImageClassification")
    images = _images(test_images)
    want = theirs(images, top_k=2)
    streamed = ours((image for image in images), batch_size=2, top_k=2)
    assert not isinstance(streamed, list)
    assert_outputs_close(list(streamed), want)

    class Dataset:  # sized and indexable, as datasets.Dataset
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return images[index]

    assert_outputs_close(list(ours(Dataset(), batch_size=4, top_k=2)), want)
    assert_outputs_close(ours(images=images[0], top_k=2), theirs(images[0], top_k=2))
    array = np.asarray(lightpipe.processing.image.load_image(images[1]))
    assert_outputs_close(ours(array, top_k=2), theirs(array, top_k=2))


def test_pipeline_infers_vision_tasks(vision_model):
    classifier = lightpipe.pipeline(model=str(vision_model("vit", "AutoModelForImageClassification")))
    assert classifier.task == "image-classification"
    extractor = lightpipe.pipeline(model=str(vision_model("vit", "AutoModel")))
    assert extractor.task == "image-feature-extraction"
    detector = lightpipe.pipeline(model=str(vision_model("detr", "AutoModelForObjectDetection")))
    assert detector.task == "object-detection"


# --- image-feature-extraction ---
@pytest.mark.parametrize("model_type", ["vit", "swin", "convnext"])
@pytest.mark.parametrize("kwargs", [{}, {"pool": True}, {"return_tensors": True},
                                    {"image_processor_kwargs": {"do_normalize": False}}])
def test_image_feature_extraction_matches_reference(pipes, test_images, model_type, kwargs):
    ours, theirs = pipes("image-feature-extraction", model_type, "AutoModel")
    images = _images(test_images)[:4]
    assert_outputs_close(ours(images[0], **kwargs), theirs(images[0], **kwargs), rtol=1e-4, atol=1e-4)
    want = theirs(images, **kwargs)
    got = ours(images, batch_size=3, **kwargs)
    if kwargs.get("return_tensors"):
        assert all(isinstance(t, torch.Tensor) and t.shape[0] == 1 for t in got)
    assert_outputs_close(got, want, rtol=1e-4, atol=1e-4)


def test_image_feature_extraction_pool_without_pooler_is_clear(pipes, test_images, vision_model):
    folder = vision_model("vit", "AutoModelForImageClassification")  # no pooler weights
    model = lightpipe.AutoModelForImageClassification.from_pretrained(folder)
    pipe = lightpipe.pipeline("image-feature-extraction", model=model,
                              image_processor=lightpipe.AutoImageProcessor.from_pretrained(folder))
    with pytest.raises(InputError, match="pooler"):
        pipe(_images(test_images)[0], pool=True)


# --- zero-shot-image-classification ---
LABELS = ["cat", "dog", "the bird", "a photo of the dog", "x"]


@pytest.mark.parametrize("kwargs", [{}, {"hypothesis_template": "a {} here"}])
def test_zero_shot_image_classification_matches_reference(pipes, test_images, kwargs):
    ours, theirs = pipes("zero-shot-image-classification", "clip", "AutoModel")
    images = _images(test_images)
    assert_outputs_close(ours(images[0], candidate_labels=LABELS, **kwargs),
                         theirs(images[0], candidate_labels=LABELS, **kwargs))
    want = theirs(images, candidate_labels=LABELS, **kwargs)
    for batch_size in (1, 4):
        assert_outputs_close(ours(images, candidate_labels=LABELS, batch_size=batch_size, **kwargs), want)


def test_zero_shot_image_classification_call_forms(pipes, test_images):
    ours, theirs = pipes("zero-shot-image-classification", "clip", "AutoModel")
    image = _images(test_images)[2]
    assert_outputs_close(ours(image, LABELS[:2]), theirs(image, LABELS[:2]))  # labels positional
    assert_outputs_close(ours(image, candidate_labels=["cat"]), theirs(image, candidate_labels=["cat"]))
    with pytest.raises(InputError, match="candidate_labels"):
        ours(image)
    with pytest.raises(InputError, match="candidate_labels"):
        ours(image, candidate_labels=[])
    with pytest.raises(InputError, match="hypothesis_template"):
        ours(image, candidate_labels=LABELS, hypothesis_template="no slot")


# --- object-detection ---
def _boxes_close(ours, theirs):
    """Detections equal: labels and count exactly, scores within float tolerance, and box
    corners (ints truncated from floats, as the reference) within one pixel."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a["label"] == b["label"]
        assert isinstance(a["score"], float) and abs(a["score"] - b["score"]) < 1e-5
        assert set(a["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        for key, value in b["box"].items():
            assert isinstance(a["box"][key], int) and abs(a["box"][key] - value) <= 1


@pytest.mark.parametrize("kwargs", [{}, {"threshold": 0.3}, {"threshold": 0.9}])
def test_object_detection_matches_reference(pipes, test_images, kwargs):
    ours, theirs = pipes("object-detection", "detr", "AutoModelForObjectDetection")
    images = _images(test_images)
    _boxes_close(ours(images[0], **kwargs), theirs(images[0], **kwargs))
    want = theirs(images, **kwargs)
    for batch_size in (1, 3):
        got = ours(images, batch_size=batch_size, **kwargs)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            _boxes_close(a, b)


def test_object_detection_boxes_scale_to_the_original_image(pipes, test_images):
    ours, _ = pipes("object-detection", "detr", "AutoModelForObjectDetection")
    image = test_images["wide_pil"]  # 160 x 20
    for found in ours(image, threshold=0.0):
        box = found["box"]
        assert -1 <= box["xmin"] <= box["xmax"] <= 161 and -20 <= box["ymin"] <= box["ymax"] <= 40


# --- bad input ---
def test_bad_images_are_clear_errors(pipes, tmp_path, monkeypatch):
    ours, _ = pipes("image-classification", "vit", "AutoModelForImageClassification")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        ours(str(text_file))
    with pytest.raises(InputError, match="No image at"):
        ours(str(tmp_path / "missing.jpg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE"):
        ours("https://example.com/cat.jpg")
    with pytest.raises(InputError):
        ours(None)
    with pytest.raises(ValueError, match="top_k"):
        ours(str(text_file), top_k=0)


def test_model_objects_and_bfloat16(vision_model, test_images):
    """A model object with the processor given as a folder; a bfloat16 model gets bfloat16
    pixels (normalised in float32 first) and gives scores close to float32's."""
    folder = vision_model("vit", "AutoModelForImageClassification")
    image = test_images["rgb_pil"]
    model = lightpipe.AutoModelForImageClassification.from_pretrained(folder)
    full = lightpipe.pipeline("image-classification", model=model, image_processor=str(folder))
    half = lightpipe.pipeline("image-classification", model=str(folder), dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    want = {r["label"]: r["score"] for r in full(image, top_k=5)}
    got = {r["label"]: r["score"] for r in half(image, top_k=5)}
    assert set(got) == set(want)
    assert all(abs(got[label] - want[label]) < 0.05 for label in want)
    assert abs(sum(got.values()) - 1.0) < 1e-3
