"""image-to-image against transformers 4.57's pipeline (v5 removed it): golden images recorded by
tests/golden/make_multimodal.py on a tiny committed Swin2SR checkpoint, replayed here (paths,
PIL images, RGBA and grayscale inputs, lists, batch_size, timeout); the classical x2 model
against the reference model; mixed sizes in one call; iterators; bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..fixtures.multimodal import multimodal_images, odd_image, swin2sr_checkpoint  # noqa: F401

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "multimodal"
CASES = [case for case in json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]
         if case["task"] == "image-to-image"]


def _case_id(case: dict) -> str:
    call = {k: (v if not isinstance(v, list) else f"list{len(v)}") for k, v in case["call"].items()}
    return f"{json.dumps({**case['init'], **call}, sort_keys=True)}-pil{case['pil']}"


def _resolve(value, pil: bool):
    if isinstance(value, str) and value.startswith("images/"):
        return Image.open(GOLDEN / value) if pil else str(GOLDEN / value)
    if isinstance(value, list):
        return [_resolve(v, pil) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, pil) for k, v in value.items()}
    return value


def assert_image_matches(got: Image.Image, want: dict | Image.Image) -> None:
    """Same size and mode; pixels equal up to one level where float noise tips a rounding."""
    if isinstance(want, dict):
        pixels = np.frombuffer(base64.b64decode(want["pixels"]), dtype=np.uint8)
        want = Image.frombytes(want["mode"], tuple(want["size"]), pixels.tobytes())
    assert isinstance(got, Image.Image)
    assert (got.size, got.mode) == (want.size, want.mode)
    difference = np.abs(np.asarray(got, dtype=np.int16) - np.asarray(want, dtype=np.int16))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01, difference.max()


@pytest.fixture(scope="module")
def pipe():
    return lightpipe.pipeline("image-to-image", model=GOLDEN / "swin2sr")


def test_golden_cases_cover_every_argument():
    used = set().union(*(case["call"] for case in CASES))
    assert used >= {"inputs", "timeout", "batch_size"}
    assert all("output" in case for case in CASES) and any(case["pil"] for case in CASES)
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_transformers_457(pipe, case):
    call = _resolve(dict(case["call"]), case["pil"])
    got = pipe(call.pop("inputs"), **call)
    want = case["output"]
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for image, expected in zip(got, want):
            assert_image_matches(image, expected)
    else:
        assert_image_matches(got, want)


def test_mixed_sizes_in_one_call_with_batches(pipe):
    """Images of different sizes are batched by size: each result equals the unbatched one."""
    paths = [str(GOLDEN / f"images/{name}.png") for name in "gihgj"]
    alone = [pipe(path) for path in paths]
    for batch_size in (2, 5):
        for got, want in zip(pipe(paths, batch_size=batch_size), alone):
            assert_image_matches(got, want)
    stream = pipe(iter(paths), batch_size=3)
    assert not isinstance(stream, list)
    for got, want in zip(list(stream), alone):
        assert_image_matches(got, want)


def test_images_keyword_and_task_inference(pipe):
    path = str(GOLDEN / "images/g.png")
    want = pipe(path)
    assert_image_matches(pipe(images=path), want)
    inferred = lightpipe.pipeline(model=str(GOLDEN / "swin2sr"))  # Swin2SRForImageSuperResolution
    assert inferred.task == "image-to-image"
    assert_image_matches(inferred(path), want)


@pytest.mark.parametrize("overrides", [dict(), dict(upsampler="nearest+conv", upscale=4)])
def test_random_checkpoint_matches_reference_model(swin2sr_checkpoint, multimodal_images, overrides):
    """A transformers 5 checkpoint (the classical x2 pixelshuffle upsampler by default): the
    pipeline's image is the reference model's reconstruction, postprocessed as 4.57 does."""
    import torch
    import transformers

    folder = swin2sr_checkpoint(**overrides)
    pipe = lightpipe.pipeline("image-to-image", model=folder)
    reference = transformers.Swin2SRForImageSuperResolution.from_pretrained(str(folder)).eval()
    processor = transformers.Swin2SRImageProcessorPil.from_pretrained(str(folder))
    images = [multimodal_images[5], multimodal_images[6], odd_image(16, 16, seed=3)]
    for image, got in zip(images, pipe(images, batch_size=2)):
        with torch.no_grad():
            out = reference(**processor(image.convert("RGB"), return_tensors="pt")).reconstruction
        values = np.moveaxis(out[0].float().clamp(0, 1).numpy(), 0, -1)
        assert_image_matches(got, Image.fromarray((values * 255.0).round().astype(np.uint8)))


def test_bad_input_is_a_clear_error(pipe):
    with pytest.raises(InputTypeError, match="An image must be"):
        pipe(12345)
    with pytest.raises(InputError, match="No image at"):
        pipe("no/such/file.png")
    with pytest.raises(InputError, match="needs an image"):
        pipe()
    with pytest.raises(InputError, match="head_mask"):
        pipe(str(GOLDEN / "images/g.png"), head_mask=[1.0])
    with pytest.raises(TypeError, match="unexpected arguments: top_k"):
        pipe(str(GOLDEN / "images/g.png"), top_k=3)
