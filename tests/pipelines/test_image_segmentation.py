"""image-segmentation against the reference pipeline on tiny random checkpoints: semantic
(SegFormer, DPT) and panoptic / instance / semantic (DETR): every input form, lists batched and
not, ``subtask``, ``threshold``, ``mask_threshold``, ``overlap_mask_area_threshold``,
``timeout``; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError
from lightpipe.models.detr_segmentation import DetrForSegmentation
from tests.fixtures.dense import *  # noqa: F401,F403

MODELS = {"segformer": "SegformerForSemanticSegmentation", "dpt": "DPTForSemanticSegmentation"}
_PIPES: dict = {}


@pytest.fixture(scope="module")
def pipes(dense_model):
    def get(model_type):
        if model_type not in _PIPES:
            if model_type == "detr":
                # Built from the model object: the registry's "detr" entry still names detr.py's
                # heads (see the report); the image processor is read from the folder.
                folder = str(dense_model("detr", "DetrForSegmentation"))
                model = DetrForSegmentation.from_pretrained(folder)
                ours = lightpipe.pipeline("image-segmentation", model=model, image_processor=folder)
            else:
                folder = str(dense_model(model_type, MODELS[model_type]))
                ours = lightpipe.pipeline("image-segmentation", model=folder)
            _PIPES[model_type] = (ours, transformers.pipeline("image-segmentation", model=folder))
        return _PIPES[model_type]

    return get


def assert_segments_equal(ours: list, theirs: list) -> None:
    assert isinstance(ours, list) and len(ours) == len(theirs)
    assert [s["label"] for s in ours] == [s["label"] for s in theirs]
    for a, b in zip(ours, theirs):
        assert set(a) == set(b) == {"score", "label", "mask"}
        # None (semantic) or a Python float rounded to 6 digits (a float ulp may move the 6th)
        assert type(a["score"]) is type(b["score"])
        if b["score"] is not None:
            assert math.isclose(a["score"], b["score"], abs_tol=2e-6)
        assert a["mask"].mode == b["mask"].mode == "L"
        assert a["mask"].size == b["mask"].size
        np.testing.assert_array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))


def assert_all_equal(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert_segments_equal(a, b)


@pytest.mark.parametrize("model_type", list(MODELS))
def test_every_input_form_matches_reference(pipes, test_images, model_type):
    ours, theirs = pipes(model_type)
    labels_seen = set()
    for name, image in test_images.items():
        got = ours(image)
        assert_segments_equal(got, theirs(image))
        labels_seen.update(s["label"] for s in got)
        union = sum(np.asarray(s["mask"], dtype=int) for s in got)
        assert (union == 255).all(), name  # every pixel in exactly one mask
    assert len(labels_seen) >= 3  # the checkpoint separates classes: a meaningful comparison


@pytest.mark.parametrize("model_type", list(MODELS))
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("kwargs", [{}, {"subtask": "semantic"},
                                    {"threshold": 0.3, "mask_threshold": 0.2,
                                     "overlap_mask_area_threshold": 0.7},
                                    {"subtask": None, "timeout": 5.0}])
def test_lists_and_arguments_match_reference(pipes, test_images, model_type, batch_size, kwargs):
    ours, theirs = pipes(model_type)
    images = list(test_images.values())
    assert_all_equal(ours(images, batch_size=batch_size, **kwargs), theirs(images, **kwargs))


def test_other_input_forms(pipes, test_images):
    ours, theirs = pipes("segformer")
    images = list(test_images.values())
    want = theirs(images[:3])
    streamed = ours((image for image in images[:3]), batch_size=2)
    assert not isinstance(streamed, list)
    assert_all_equal(list(streamed), want)
    assert_segments_equal(ours(images=images[0]), want[0])
    image = lightpipe.processing.image.load_image(images[1])
    assert_segments_equal(ours(np.asarray(image)), theirs(image))  # the reference takes no arrays
    configured = lightpipe.pipeline("image-segmentation", model=ours.model.name_or_path,
                                    subtask="semantic", batch_size=2)
    assert_all_equal(configured(images[:3]), want)


def test_task_inferred(dense_model):
    for model_type, head in MODELS.items():
        assert lightpipe.pipeline(model=str(dense_model(model_type, head))).task == "image-segmentation"


@pytest.mark.parametrize("subtask", ["panoptic", "instance"])
def test_subtasks_the_model_cannot_do_are_refused_as_the_reference(pipes, test_images, subtask):
    ours, theirs = pipes("segformer")
    image = test_images["rgb_pil"]
    with pytest.raises(ValueError, match="not supported"):
        theirs(image, subtask=subtask)
    with pytest.raises(InputError, match="not supported"):
        ours(image, subtask=subtask)


def test_bad_input_is_a_clear_error(pipes, tmp_path):
    ours, _ = pipes("segformer")
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="needs an image"):
        ours()
    with pytest.raises(InputTypeError, match="image"):
        ours(3.5)
    with pytest.raises(InputError, match="No image"):
        ours(str(tmp_path / "missing.jpg"))
    with pytest.raises(InputError, match="subtask"):
        ours(image, subtask="depth")
    with pytest.raises(InputError, match="threshold"):
        ours(image, threshold=1.5)
    with pytest.raises(InputError, match="mask_threshold"):
        ours(image, mask_threshold="high")
    with pytest.raises(InputError, match="timeout"):
        ours(image, timeout=0)
    with pytest.raises(TypeError, match="top_k"):
        ours(image, top_k=1)


# --- DETR panoptic ---
@pytest.mark.parametrize("kwargs", [{}, {"subtask": "panoptic"}, {"threshold": 0.5},
                                    {"subtask": "instance", "threshold": 0.3,
                                     "overlap_mask_area_threshold": 0.2},
                                    {"subtask": "panoptic", "mask_threshold": 0.3, "threshold": 0.3},
                                    {"subtask": "semantic"}])
def test_detr_panoptic_matches_reference(pipes, test_images, kwargs):
    ours, theirs = pipes("detr")
    images = [test_images[name] for name in ("rgb_jpeg", "rgba_png", "exif_jpeg", "wide_pil")]
    want = theirs(images, **kwargs)
    assert_all_equal(ours(images, **kwargs), want)
    assert_all_equal(ours(images, batch_size=4, **kwargs), want)
    if kwargs.get("subtask") != "semantic":
        assert any(segments for segments in want)  # some queries pass the thresholds
        assert all(s["score"] is not None for segments in want for s in segments)


def test_detr_with_no_segment_above_threshold(pipes, test_images):
    ours, theirs = pipes("detr")
    image = test_images["rgb_pil"]
    assert ours(image, threshold=1.0) == theirs(image, threshold=1.0) == []
