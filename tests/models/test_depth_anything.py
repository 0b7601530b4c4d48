"""Depth Anything (DINOv2 backbone, DPT-style neck) against the reference on tiny random
checkpoints it saved: relative and metric heads, the SwiGLU MLP, square and non-square inputs,
sides that are not multiples of the patch size; the DINOv2 backbone's feature maps."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.models.dinov2 import Dinov2Backbone, Dinov2Model
from tests.fixtures.dense import *  # noqa: F401,F403


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max() or 1))


@pytest.mark.parametrize("config", [{}, {"depth_estimation_type": "metric", "max_depth": 20},
                                    {"backbone_config": dict(TINY_DENSE["depth_anything"]["backbone_config"],
                                                             use_swiglu_ffn=True)}])
def test_depth_matches_reference(dense_model, config):
    folder = dense_model("depth_anything", "DepthAnythingForDepthEstimation", **config)
    ours = lightpipe.AutoModelForDepthEstimation.from_pretrained(folder)
    theirs = transformers.DepthAnythingForDepthEstimation.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == "DepthAnythingForDepthEstimation"
    generator = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 28, 28), (1, 3, 35, 49), (1, 3, 30, 40)]:
        pixels = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
        assert got.predicted_depth.shape == want.predicted_depth.shape
        _close(got.predicted_depth, want.predicted_depth)
        assert want.predicted_depth.std() > 0  # a varied map, not a flat one


def test_dinov2_backbone_and_model_match_reference(dense_model, tmp_path):
    backbone_fields = dict(TINY_DENSE["depth_anything"]["backbone_config"])
    backbone_fields.pop("model_type")
    config = transformers.Dinov2Config(**{**backbone_fields, "reshape_hidden_states": True,
                                          "out_indices": [2, 4]})
    torch.manual_seed(0)
    reference = transformers.Dinov2Backbone(config).eval()
    reference.save_pretrained(tmp_path / "backbone")
    base = transformers.Dinov2Model(config).eval()
    base.save_pretrained(tmp_path / "model")
    pixels = torch.randn(2, 3, 35, 21, generator=torch.Generator().manual_seed(1))
    ours = Dinov2Backbone.from_pretrained(tmp_path / "backbone")
    with torch.inference_mode():
        got, want = ours(pixel_values=pixels), reference(pixel_values=pixels)
    assert len(got.feature_maps) == len(want.feature_maps) == 2
    for a, b in zip(got.feature_maps, want.feature_maps):
        assert a.shape == b.shape
        _close(a, b)
    with torch.inference_mode():
        got, want = Dinov2Model.from_pretrained(tmp_path / "model")(pixel_values=pixels), base(pixel_values=pixels)
    _close(got.last_hidden_state, want.last_hidden_state)
    _close(got.pooler_output, want.pooler_output)
