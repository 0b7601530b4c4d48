"""SegFormer against the reference on tiny random checkpoints it saved: segmentation and
classification logits, every stage's map, odd input sizes; the SegFormer image processor's
pixel values and labels (``do_reduce_labels``) and its semantic post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.processing.image import AutoImageProcessor, load_image
from lightpipe.processing.segformer import SegformerImageProcessor
from tests.fixtures.dense import *  # noqa: F401,F403

HEADS = {"AutoModel": "SegformerModel",
         "AutoModelForSemanticSegmentation": "SegformerForSemanticSegmentation",
         "AutoModelForImageClassification": "SegformerForImageClassification"}


def _pixels(batch=2, height=32, width=32, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("size", [(32, 32), (37, 53)])
def test_outputs_match_reference(dense_model, head, size):
    folder = dense_model("segformer", HEADS[head])
    ours = getattr(lightpipe, head).from_pretrained(folder)
    theirs = getattr(transformers, HEADS[head]).from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == HEADS[head]
    pixels = _pixels(2, *size)
    with torch.inference_mode():
        got = ours(pixel_values=pixels, output_hidden_states=True)
        want = theirs(pixel_values=pixels, output_hidden_states=True)
    key = "last_hidden_state" if head == "AutoModel" else "logits"
    assert got[key].shape == want[key].shape
    _close(got[key], want[key])
    assert len(got.hidden_states) == len(want.hidden_states) == 4
    for a, b in zip(got.hidden_states, want.hidden_states):
        _close(a, b)


def test_base_model_loads_from_segmentation_checkpoint(dense_model):
    folder = dense_model("segformer", "SegformerForSemanticSegmentation")
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.SegformerModel.from_pretrained(str(folder)).eval()
    pixels = _pixels(seed=1)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).last_hidden_state, theirs(pixel_values=pixels).last_hidden_state)


def test_bad_pixels_are_clear_errors(dense_model):
    model = lightpipe.AutoModelForSemanticSegmentation.from_pretrained(
        dense_model("segformer", "SegformerForSemanticSegmentation"))
    with pytest.raises(InputError, match="pixel_values"):
        model(pixel_values=torch.zeros(3, 32, 32))
    with pytest.raises(InputError, match="pixel_values"):
        model()


@pytest.mark.parametrize("settings", [dict(size={"height": 32, "width": 32}),
                                      dict(size={"height": 24, "width": 36}, resample=3),
                                      dict(size=40, do_rescale=False, do_normalize=False)])
def test_processor_matches_reference_on_odd_images(test_images, tmp_path, settings):
    reference = transformers.SegformerImageProcessorPil(**settings)
    reference.save_pretrained(tmp_path)
    ours = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(ours).__name__ == "SegformerImageProcessor"
    for name, image in test_images.items():
        image = load_image(image)
        want = reference(image, return_tensors="pt")["pixel_values"]
        got = ours(image, return_tensors="pt")["pixel_values"]
        assert got.shape == want.shape, name
        # Without rescaling the reference keeps uint8; the values are what must agree.
        torch.testing.assert_close(got, want.to(got.dtype), rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("reduce", [False, True])
def test_processor_labels_match_reference(reduce):
    from PIL import Image

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(37, 53), (20, 21)]]
    maps = [Image.fromarray(rng.integers(0, 6, (h, w), dtype=np.uint8), mode="L") for h, w in [(37, 53), (20, 21)]]
    settings = dict(size={"height": 24, "width": 36}, do_reduce_labels=reduce)
    want = transformers.SegformerImageProcessorPil(**settings)(images, segmentation_maps=maps,
                                                              return_tensors="pt")
    ours = SegformerImageProcessor(**settings)
    got = ours(images, segmentation_maps=maps, return_tensors="pt")
    assert got["labels"].dtype == want["labels"].dtype == torch.int64
    torch.testing.assert_close(got["labels"], want["labels"])
    assert (255 in got["labels"]) == reduce
    # numpy maps as well as PIL ones; a per-call override of the flag
    arrays = [np.asarray(m) for m in maps]
    torch.testing.assert_close(ours(images, arrays, return_tensors="pt", do_reduce_labels=reduce)["labels"],
                               want["labels"])


def test_post_process_semantic_matches_reference(dense_model):
    folder = dense_model("segformer", "SegformerForSemanticSegmentation")
    ours = AutoImageProcessor.from_pretrained(folder)
    reference = transformers.AutoImageProcessor.from_pretrained(str(folder))
    logits = torch.randn(2, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs = transformers.modeling_outputs.SemanticSegmenterOutput(logits=logits)
    for sizes in ([(37, 53), (20, 160)], None):
        got = ours.post_process_semantic_segmentation({"logits": logits}, sizes)
        want = reference.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    with pytest.raises(InputError, match="target sizes"):
        ours.post_process_semantic_segmentation({"logits": logits}, [(4, 4)])


def test_image_classification_pipeline_matches_reference(dense_model, test_images):
    """SegFormer's classification head (nvidia/mit-b0 style) serves image-classification."""
    from tests.conftest import assert_outputs_close

    folder = str(dense_model("segformer", "SegformerForImageClassification"))
    ours = lightpipe.pipeline(model=folder)
    assert ours.task == "image-classification"
    theirs = transformers.pipeline("image-classification", model=folder)
    images = list(test_images.values())
    assert_outputs_close(ours(images, top_k=3, batch_size=3), theirs(images, top_k=3))
