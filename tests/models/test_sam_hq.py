"""SAM-HQ against the reference on a tiny random checkpoint: the model (points, boxes, masks,
multimask_output both ways, hq_token_only, stored image embeddings with and without the ViT
features), the processor, the mask-generation pipeline; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.sam_hq import SamHQModel

from ..pipelines import test_mask_generation as sam_tests

IMAGE = Image.fromarray((np.random.default_rng(3).random((44, 60, 3)) * 255).astype(np.uint8))


def build_sam_hq(folder, seed: int = 0):
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    config = transformers.SamHQConfig(
        vision_config=dict(hidden_size=24, output_channels=16, num_hidden_layers=4,
                           num_attention_heads=2, image_size=64, patch_size=8, window_size=3,
                           global_attn_indexes=[1, 3], mlp_dim=40, num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=24, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=20, iou_head_depth=4, vit_dim=24))
    torch.manual_seed(seed)
    model = transformers.SamHQModel(config).eval()
    with torch.no_grad():  # the reference initialises with std 1e-10: spread so outputs vary
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param) * 0.2)
            else:
                param.normal_(0.0, 0.3 if param.dim() > 1 else 0.1)
    model.save_pretrained(folder)
    processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                     mask_size={"longest_edge": 16},
                                     mask_pad_size={"height": 16, "width": 16})
    transformers.SamHQProcessor(processor).save_pretrained(folder)  # processor_config.json only
    return str(folder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_sam_hq(tmp_path_factory.mktemp("sam_hq"))


@pytest.fixture(scope="module")
def models(folder):
    return lightpipe.AutoModel.from_pretrained(folder), transformers.SamHQModel.from_pretrained(folder).eval()


def _assert_same(got, expected):
    torch.testing.assert_close(got["iou_scores"], expected.iou_scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["pred_masks"], expected.pred_masks, rtol=1e-4, atol=1e-4)


def test_model_matches_reference(models):
    model, reference = models
    assert isinstance(model, SamHQModel)
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 64, 64)
    points = torch.rand(2, 3, 2, 2) * 64
    labels = torch.tensor([[[1, 0], [1, -10], [-1, 1]]] * 2)
    boxes = torch.tensor([[[5.0, 6, 40, 50], [1, 2, 30, 30], [10, 10, 60, 60]]] * 2)
    cases = [dict(input_points=points, input_labels=labels),
             dict(input_points=points, input_labels=labels, multimask_output=False),
             dict(input_points=points, input_labels=labels, hq_token_only=True),
             dict(input_boxes=boxes, multimask_output=False, hq_token_only=True),
             dict(input_points=points, input_labels=labels, input_boxes=boxes),
             dict(input_points=points[:, :, :1], input_masks=torch.randn(2, 1, 32, 32))]
    with torch.no_grad():
        for case in cases:
            expected = reference(pixel_values=pixels, **case)
            _assert_same(model(pixel_values=pixels, **case), expected)
        assert expected.pred_masks.std() > 0.05
        # multimask: SAM's masks sorted by predicted IoU, the HQ mask added to each
        assert (expected.iou_scores[..., :-1] >= expected.iou_scores[..., 1:]).all()
        embeddings, vit = model.get_image_embeddings(pixels)
        reference_embeddings, reference_vit = reference.get_image_embeddings(pixels)
        torch.testing.assert_close(embeddings, reference_embeddings, rtol=1e-4, atol=1e-5)
        assert len(vit) == len(reference_vit) == 2
        for mine, theirs in zip(vit, reference_vit):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
        for extra, reference_extra in ((dict(intermediate_embeddings=vit),
                                        dict(intermediate_embeddings=reference_vit)), ({}, {})):
            got = model(image_embeddings=embeddings, input_points=points, **extra)
            expected = reference(image_embeddings=reference_embeddings, input_points=points, **reference_extra)
            _assert_same(got, expected)


def test_processor_matches_reference(folder, models):
    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    theirs = transformers.AutoProcessor.from_pretrained(folder)
    tall = IMAGE.transpose(Image.Transpose.TRANSPOSE)
    cases = [dict(images=IMAGE, input_points=[[[10, 20], [30, 5]]]),
             dict(images=[IMAGE, tall], input_points=[[[[10, 20]]], [[[1, 2]]]],
                  input_labels=[[[1]], [[0]]], input_boxes=[[[1, 2, 30, 35]], [[0, 0, 10, 10]]])]
    model, reference = models
    for case in cases:
        expected, got = theirs(**case, return_tensors="pt"), ours(**case, return_tensors="pt")
        assert sorted(got) == sorted(expected)
        for key in expected:
            assert got[key].dtype == expected[key].dtype
            torch.testing.assert_close(got[key], expected[key])
        inputs = {k: v for k, v in expected.items() if k not in ("original_sizes", "reshaped_input_sizes")}
        with torch.no_grad():
            masks, reference_masks = model(**inputs)["pred_masks"], reference(**inputs).pred_masks
        for mine, reference_mask in zip(
                ours.post_process_masks(masks, got["original_sizes"], got["reshaped_input_sizes"]),
                theirs.post_process_masks(reference_masks, expected["original_sizes"],
                                          expected["reshaped_input_sizes"])):
            assert torch.equal(mine, reference_mask)


@pytest.mark.parametrize("kwargs", [
    dict(points_per_batch=9, points_per_crop=5, pred_iou_thresh=-1.0, stability_score_thresh=0.05,
         stability_score_offset=0.3, mask_threshold=2.0, crops_nms_thresh=0.8, output_rle_mask=True,
         output_bboxes_mask=True),
    dict(points_per_batch=12, points_per_crop=4, crops_n_layers=1, crop_overlap_ratio=0.25,
         pred_iou_thresh=-1, stability_score_thresh=0, mask_threshold=2.5, crops_nms_thresh=0.9),
])
def test_pipeline_matches_reference(folder, monkeypatch, kwargs):
    """The SAM pipeline test's comparison (masks, scores, RLE, boxes) on the SAM-HQ folder."""
    ours = lightpipe.pipeline("mask-generation", model=folder)
    sam_tests.test_pipeline_matches_reference(folder, ours, monkeypatch, kwargs)
    assert len(ours(sam_tests.IMAGE, **kwargs)["masks"]) > 1


def test_bad_input(models, folder):
    model = models[0]
    pixels = torch.randn(1, 3, 64, 64)
    points = torch.rand(1, 2, 1, 2) * 64
    embeddings, vit = model.get_image_embeddings(pixels)
    with pytest.raises(InputError, match="vit_dim"):
        model(image_embeddings=embeddings, intermediate_embeddings=[embeddings.permute(0, 2, 3, 1)],
              input_points=points)
    with pytest.raises(InputError, match="intermediate_embeddings are for 2 images"):
        model(image_embeddings=embeddings, intermediate_embeddings=[torch.cat([vit[0]] * 2)],
              input_points=points)
    with pytest.raises(InputError, match="64x64"):
        model(pixel_values=torch.randn(1, 3, 32, 32), input_points=points)
    with pytest.raises(InputError, match="1x1"):
        lightpipe.pipeline("mask-generation", model=folder)(Image.new("RGB", (1, 1)))
