"""DPT against the reference on tiny random checkpoints it saved: depth, segmentation logits and
the backbone's states for every readout type, batch-norm fusion, odd (non-square) inputs; the
DPT image processor's pixel values and labels on odd-sized images; refused variants."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, UnsupportedModelError
from lightpipe.processing.dpt import DPTImageProcessor
from lightpipe.processing.image import AutoImageProcessor, load_image
from tests.fixtures.dense import *  # noqa: F401,F403

HEADS = {"AutoModel": "DPTModel", "AutoModelForDepthEstimation": "DPTForDepthEstimation",
         "AutoModelForSemanticSegmentation": "DPTForSemanticSegmentation"}
OUTPUT = {"AutoModel": "last_hidden_state", "AutoModelForDepthEstimation": "predicted_depth",
          "AutoModelForSemanticSegmentation": "logits"}


def _pixels(batch=2, height=32, width=32, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _close(got, want):
    # Convolution sums run in a different order: a tolerance relative to the output's scale.
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)


def _pair(folder, head):
    ours = getattr(lightpipe, head).from_pretrained(folder)
    theirs = getattr(transformers, HEADS[head]).from_pretrained(str(folder)).eval()
    return ours, theirs


CONFIGS = [{}, {"readout_type": "add"}, {"readout_type": "ignore"},
           {"use_batch_norm_in_fusion_residual": True}]
CASES = ([(head, config) for head in HEADS for config in CONFIGS]
         + [("AutoModelForDepthEstimation", {"add_projection": True, "fusion_hidden_size": 256})])


@pytest.mark.parametrize("head,config", CASES)
def test_outputs_match_reference(dense_model, head, config):
    ours, theirs = _pair(dense_model("dpt", HEADS[head], **config), head)
    assert type(ours).__name__ == HEADS[head]
    pixels = _pixels()
    with torch.inference_mode():
        got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
    key = OUTPUT[head]
    assert got[key].shape == want[key].shape
    _close(got[key], want[key])


def test_hidden_states_and_pooler_match_reference(dense_model):
    folder = dense_model("dpt", "DPTModel")
    ours, theirs = _pair(folder, "AutoModel")
    pixels = _pixels(seed=3)
    with torch.inference_mode():
        got = ours(pixel_values=pixels, output_hidden_states=True)
        want = theirs(pixel_values=pixels, output_hidden_states=True)
    _close(got.pooler_output, want.pooler_output)
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states):
        _close(a, b)


def test_other_input_sizes_interpolate_positions_as_the_reference(dense_model):
    """Square images of another size: positions resized (bilinear) as the reference does."""
    ours, theirs = _pair(dense_model("dpt", "DPTForDepthEstimation"), "AutoModelForDepthEstimation")
    pixels = _pixels(1, 48, 48, seed=2)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).predicted_depth, theirs(pixel_values=pixels).predicted_depth)


def test_non_square_inputs_run(dense_model):
    """The reference assumes a square token grid in its neck; we read the grid from the image
    (keep_aspect_ratio processors make non-square inputs). Its backbone agrees with ours."""
    folder = dense_model("dpt", "DPTForDepthEstimation")
    ours = lightpipe.AutoModelForDepthEstimation.from_pretrained(folder)
    theirs = transformers.DPTModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    pixels = _pixels(1, 32, 56, seed=4)
    depth = ours(pixel_values=pixels).predicted_depth
    assert depth.dim() == 3 and depth.shape[1] == 64 and torch.isfinite(depth).all()
    with torch.inference_mode():
        _close(ours.dpt(pixel_values=pixels).last_hidden_state,
               theirs(pixel_values=pixels).last_hidden_state)


def test_base_model_loads_from_depth_checkpoint(dense_model):
    ours, theirs = _pair(dense_model("dpt", "DPTForDepthEstimation"), "AutoModel")
    pixels = _pixels(seed=5)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).last_hidden_state, theirs(pixel_values=pixels).last_hidden_state)


def test_refused_variants_are_clear_errors(dense_model, tmp_path):
    folder = dense_model("dpt", "DPTForDepthEstimation")
    for change, words in [({"is_hybrid": True}, "Hybrid"),
                          ({"backbone_config": {"model_type": "dinov2"}}, "dinov2")]:
        target = tmp_path / words
        target.mkdir()
        config = json.loads((folder / "config.json").read_text())
        config.update(change)
        (target / "config.json").write_text(json.dumps(config))
        (target / "model.safetensors").symlink_to(folder / "model.safetensors")
        with pytest.raises(UnsupportedModelError, match=words):
            lightpipe.AutoModelForDepthEstimation.from_pretrained(target)
    model = lightpipe.AutoModelForDepthEstimation.from_pretrained(folder)
    with pytest.raises(InputError, match="pixel_values"):
        model(pixel_values=torch.zeros(1, 4, 32, 32))


# --- the image processor ---
PROCESSOR_SETTINGS = [
    dict(size={"height": 32, "width": 32}),
    dict(size={"height": 32, "width": 40}, keep_aspect_ratio=True, ensure_multiple_of=8),
    dict(size={"height": 30, "width": 30}, keep_aspect_ratio=True, ensure_multiple_of=14,
         do_pad=True, size_divisor=16, resample=2),
    dict(size=33, do_normalize=False),
]


@pytest.mark.parametrize("settings", PROCESSOR_SETTINGS)
def test_processor_matches_reference_on_odd_images(test_images, tmp_path, settings):
    reference = transformers.DPTImageProcessorPil(**settings)
    reference.save_pretrained(tmp_path)
    ours = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(ours).__name__ == "DPTImageProcessor"
    for name, image in test_images.items():
        image = load_image(image)  # the reference's processor takes RGB as its pipeline gives it
        want = reference(image, return_tensors="pt")["pixel_values"]
        got = ours(image, return_tensors="pt")["pixel_values"]
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("settings", [PROCESSOR_SETTINGS[1], PROCESSOR_SETTINGS[2],
                                      dict(size={"height": 24, "width": 36}, do_reduce_labels=True)])
def test_processor_labels_match_reference(tmp_path, settings):
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    label_map = Image.fromarray(rng.integers(0, 6, (37, 53), dtype=np.uint8), mode="L")
    reference = transformers.DPTImageProcessorPil(**settings)
    ours = DPTImageProcessor(**settings)
    want = reference(image, segmentation_maps=label_map, return_tensors="pt")
    got = ours(image, label_map, return_tensors="pt")
    assert got["labels"].dtype == want["labels"].dtype == torch.int64
    torch.testing.assert_close(got["labels"], want["labels"])
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=0, atol=1e-6)


def test_post_process_depth_matches_reference(dense_model):
    folder = dense_model("dpt", "DPTForDepthEstimation")
    ours = AutoImageProcessor.from_pretrained(folder)
    reference = transformers.AutoImageProcessor.from_pretrained(str(folder))
    depth = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = transformers.modeling_outputs.DepthEstimatorOutput(predicted_depth=depth)
    sizes = [(37, 53), (61, 45)]
    for got, want in zip(ours.post_process_depth_estimation({"predicted_depth": depth}, sizes),
                         reference.post_process_depth_estimation(outputs, sizes)):
        torch.testing.assert_close(got["predicted_depth"], want["predicted_depth"])
    with pytest.raises(InputError, match="target sizes"):
        ours.post_process_depth_estimation({"predicted_depth": depth}, sizes[:1])


def test_processor_errors_are_clear(tmp_path):
    processor = DPTImageProcessor(size={"shortest_edge": 32})
    with pytest.raises(InputError, match="height"):
        processor(np.zeros((8, 8, 3), dtype=np.uint8))
    processor = DPTImageProcessor(size=32)
    with pytest.raises(InputError, match="one segmentation map per image"):
        processor([np.zeros((8, 8, 3), dtype=np.uint8)] * 2, [np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(InputError, match="2-D"):
        processor(np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((2, 8, 8), dtype=np.uint8))
