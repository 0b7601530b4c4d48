"""The dense-prediction examples (depth estimation, semantic segmentation), run as a user runs
them (a subprocess, HF_HUB_OFFLINE=1) on tiny local checkpoints; what they print and save is
checked against transformers on the same folders."""

from __future__ import annotations

import math

import numpy as np
import transformers
from PIL import Image

from tests.fixtures.dense import *  # noqa: F401,F403

from .test_examples import printed, run_example


def test_depth_estimation_example(dense_model, test_images, tmp_path):
    folder = str(dense_model("dpt", "DPTForDepthEstimation"))
    image = test_images["exif_jpeg"]
    out = tmp_path / "depth.png"
    stdout = run_example("depth_estimation.py", "--model", folder, "--image", image, "--out", out)
    want = transformers.pipeline("depth-estimation", model=folder)(image)
    depth = want["predicted_depth"]
    shown = printed(stdout, "depth")
    assert shown["shape"] == list(depth.shape)
    for key in ("min", "max", "mean"):
        assert math.isclose(shown[key], getattr(depth, key)().item(), rel_tol=1e-4, abs_tol=1e-5)
    saved = Image.open(out)
    assert saved.mode == "L" and saved.size == want["depth"].size
    diff = np.abs(np.asarray(saved, dtype=int) - np.asarray(want["depth"], dtype=int))
    assert diff.max() <= 1
    assert printed(stdout, "batch") == [list(depth.shape)] * 2


def test_image_segmentation_example(dense_model, test_images, tmp_path):
    folder = str(dense_model("segformer", "SegformerForSemanticSegmentation"))
    image = test_images["rgb_jpeg"]
    stdout = run_example("image_segmentation.py", "--model", folder, "--image", image,
                         "--out", tmp_path / "masks")
    want = transformers.pipeline("image-segmentation", model=folder)(image, subtask="semantic")
    coverage = printed(stdout, "segments")
    assert list(coverage) == [s["label"] for s in want]
    for segment in want:
        mask = np.asarray(segment["mask"])
        assert math.isclose(coverage[segment["label"]], round(float((mask == 255).mean()), 6))
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "masks" / f"{segment['label']}.png")), mask)
    assert printed(stdout, "batch") == [[s["label"] for s in want]] * 2
