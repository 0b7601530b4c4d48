"""depth-estimation against the reference pipeline on a tiny random DPT checkpoint: every input
form, single and lists, batched and not, ``timeout`` (and ``parameters``), iterators; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError
from tests.fixtures.dense import *  # noqa: F401,F403

_PIPES: dict = {}


@pytest.fixture(scope="module")
def pipes(dense_model):
    """(ours, reference) depth pipelines over the tiny DPT checkpoint, built once."""
    if "dpt" not in _PIPES:
        folder = str(dense_model("dpt", "DPTForDepthEstimation"))
        _PIPES["dpt"] = (lightpipe.pipeline("depth-estimation", model=folder),
                         transformers.pipeline("depth-estimation", model=folder))
    return _PIPES["dpt"]


def assert_depth_close(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs) == {"predicted_depth", "depth"}
    want = theirs["predicted_depth"]
    assert ours["predicted_depth"].shape == want.shape
    assert ours["predicted_depth"].dtype == want.dtype
    torch.testing.assert_close(ours["predicted_depth"], want, rtol=1e-4,
                               atol=1e-5 * float(want.abs().max() or 1))
    assert ours["depth"].mode == theirs["depth"].mode == "L"
    assert ours["depth"].size == theirs["depth"].size
    # the 0-255 stretch truncates: a float ulp can move a pixel by one grey level
    diff = np.abs(np.asarray(ours["depth"], dtype=int) - np.asarray(theirs["depth"], dtype=int))
    assert diff.max() <= 1
    assert np.asarray(theirs["depth"]).std() > 5  # a depth map, not a flat image


def assert_all_close(ours: list, theirs: list) -> None:
    assert isinstance(ours, list) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert_depth_close(a, b)


def test_every_input_form_matches_reference(pipes, test_images):
    ours, theirs = pipes
    for name, image in test_images.items():
        got = ours(image)
        assert isinstance(got, dict), name
        assert_depth_close(got, theirs(image))
        assert got["predicted_depth"].shape == (got["depth"].height, got["depth"].width)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_lists_batched_and_not_match_reference(pipes, test_images, batch_size):
    ours, theirs = pipes
    images = list(test_images.values())
    want = theirs(images)
    assert_all_close(ours(images, batch_size=batch_size), want)


def test_arguments_and_input_forms(pipes, test_images):
    ours, theirs = pipes
    images = list(test_images.values())
    want = theirs(images[:3], timeout=5.0)
    assert_all_close(ours(images[:3], timeout=5.0), want)
    assert_all_close(ours(images[:3], parameters={"timeout": 5.0}), want)
    assert_depth_close(ours(images=images[0]), want[0])
    streamed = ours((image for image in images[:3]), batch_size=2)
    assert not isinstance(streamed, list)
    assert_all_close(list(streamed), want)
    image = lightpipe.processing.image.load_image(images[1])
    assert_depth_close(ours(np.asarray(image)), theirs(image))  # the reference takes no arrays
    # a pipeline built with a batch size and a timeout
    folder = ours.model.name_or_path
    configured = lightpipe.pipeline("depth-estimation", model=folder, batch_size=2, timeout=3)
    assert_all_close(configured(images[:3]), want)


def test_aspect_preserving_processor_batches_by_size(dense_model, test_images):
    """keep_aspect_ratio gives each image its own size (the reference's neck then fails on
    non-square grids); images of one size share a batch, so results do not depend on
    batch_size."""
    folder = str(dense_model("dpt", "DPTForDepthEstimation", processor=dict(
        keep_aspect_ratio=True, ensure_multiple_of=8)))
    pipe = lightpipe.pipeline("depth-estimation", model=folder)
    images = list(test_images.values())
    one = pipe(images, batch_size=1)
    many = pipe(images, batch_size=4)
    for a, b in zip(one, many):
        torch.testing.assert_close(a["predicted_depth"], b["predicted_depth"], rtol=1e-5, atol=1e-6)


def test_task_inferred_and_bfloat16(dense_model, test_images):
    folder = str(dense_model("dpt", "DPTForDepthEstimation"))
    pipe = lightpipe.pipeline(model=folder)
    assert pipe.task == "depth-estimation"
    half = lightpipe.pipeline("depth-estimation", model=folder, dtype=torch.bfloat16)
    image = test_images["rgb_jpeg"]
    got, want = half(image), pipe(image)
    assert got["predicted_depth"].dtype == torch.float32
    torch.testing.assert_close(got["predicted_depth"], want["predicted_depth"], rtol=0.1, atol=0.1)


def test_bad_input_is_a_clear_error(pipes, tmp_path):
    ours, _ = pipes
    with pytest.raises(InputError, match="needs an image"):
        ours()
    with pytest.raises(InputTypeError, match="image"):
        ours(12)
    with pytest.raises(InputError, match="No image"):
        ours(str(tmp_path / "missing.png"))
    with pytest.raises(InputError, match="timeout"):
        ours(np.zeros((8, 8, 3), dtype=np.uint8), timeout=-1)
    with pytest.raises(TypeError, match="top_k"):
        ours(np.zeros((8, 8, 3), dtype=np.uint8), top_k=2)
    with pytest.raises(ValueError, match="batch_size"):
        ours([np.zeros((8, 8, 3), dtype=np.uint8)], batch_size=0)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_depth_anything_matches_reference(dense_model, test_images, batch_size):
    """Depth Anything's processor keeps the aspect ratio (sides multiples of the patch), so the
    images of a list have different sizes: each is compared with the reference's."""
    folder = str(dense_model("depth_anything", "DepthAnythingForDepthEstimation"))
    if "depth_anything" not in _PIPES:
        _PIPES["depth_anything"] = (lightpipe.pipeline("depth-estimation", model=folder),
                                    transformers.pipeline("depth-estimation", model=folder))
    ours, theirs = _PIPES["depth_anything"]
    assert type(ours.model).__name__ == "DepthAnythingForDepthEstimation"
    images = list(test_images.values())
    assert_all_close(ours(images, batch_size=batch_size), theirs(images))
    assert lightpipe.pipeline(model=folder).task == "depth-estimation"
