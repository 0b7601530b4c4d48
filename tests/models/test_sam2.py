"""SAM 2 (image) against the reference on a tiny random checkpoint it saved (64-pixel input,
Hiera with 4 stages of widths 16-40, two global blocks, 5x5 background position embedding,
FPN of width 32 with top-down levels [1, 2], decoder with 3 two-way layers, attention
downsample 4, stability delta 1 and threshold 0.76): image embeddings, IoU scores, masks and object scores
for points, boxes, both, none and mask prompts, multimask on and off (the dynamic choice); the
processor's prompts and post_process_masks; the mask-generation pipeline.

The reference's Sam2ImageProcessor is torchvision-backed and torchvision is not installed
here, so it cannot be built: its module is imported with a stand-in for torchvision's
``batched_nms`` (tests/fixtures/sam.py) and its methods (crop boxes, post_process_masks,
filter_masks, NMS) run on a plain object. The one step that needs torchvision itself, the
pixel resize, is checked against torch's antialiased interpolation, the call torchvision's
``resize`` makes for uint8 images on the CPU; the reference pipeline gets its pixel values
from our image processor."""

from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from PIL import Image

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.sam2 import Sam2Model

from ..fixtures.sam import _reference_batched_nms

IMAGE = Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8))
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_sam2(folder, seed: int = 0):
    config = transformers.Sam2Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=16,
                                 embed_dim_per_stage=[16, 24, 32, 40], num_attention_heads_per_stage=[1, 2, 2, 4],
                                 blocks_per_stage=[1, 2, 2, 1], window_size_per_stage=[4, 4, 2, 2],
                                 global_attention_blocks=[2, 4], window_positional_embedding_background_size=[5, 5],
                                 mlp_ratio=2.0, image_size=[64, 64]),
            backbone_channel_list=[40, 32, 24, 16], fpn_hidden_size=32, fpn_top_down_levels=[1, 2],
            backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]]),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=24, num_hidden_layers=3, num_attention_heads=2,
                                 attention_downsample_rate=4, iou_head_hidden_dim=20,
                                 dynamic_multimask_stability_delta=1.0, dynamic_multimask_stability_thresh=0.76))
    torch.manual_seed(seed)
    model = transformers.Sam2Model(config).eval()
    with torch.no_grad():  # the reference initialises near zero: spread so outputs vary
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3 if param.dim() > 1 else 0.1)
    model.save_pretrained(folder)
    # Written by hand: the reference cannot build its (torchvision) image processor here.
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Sam2ImageProcessorFast", "size": {"height": 64, "width": 64},
        "mask_size": {"height": 16, "width": 16}, "resample": 2, "do_resize": True, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": MEAN, "image_std": STD,
        "do_convert_rgb": True, "processor_class": "Sam2Processor"}))
    return model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam2")
    build_sam2(path)
    return path


@pytest.fixture(scope="module")
def models(folder):
    return transformers.Sam2Model.from_pretrained(folder).eval(), lightpipe.AutoModel.from_pretrained(folder)


@pytest.fixture(scope="module")
def reference_ip_module():
    """transformers' image_processing_sam2, imported with a stand-in for torchvision's NMS."""
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = _reference_batched_nms
    shims = {"torchvision": types.ModuleType("torchvision"), "torchvision.ops": types.ModuleType("torchvision.ops"),
             "torchvision.ops.boxes": boxes}
    saved = {name: sys.modules.get(name) for name in shims}
    sys.modules.update(shims)
    try:
        yield importlib.import_module("transformers.models.sam2.image_processing_sam2")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _close(got, expected):
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_model_matches_reference(models):
    reference, model = models
    assert isinstance(model, Sam2Model)
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 64, 64)
    points = torch.rand(2, 3, 2, 2) * 64
    labels = torch.tensor([[[1, 0], [1, -10], [-1, 1]], [[0, 0], [1, 1], [1, -10]]])
    boxes = torch.tensor([[[5.0, 6, 40, 50], [1, 2, 30, 30], [10, 10, 60, 60]]] * 2)
    cases = [dict(input_points=points, input_labels=labels), dict(input_points=points[:, :, :1]),
             dict(input_boxes=boxes), dict(input_points=points, input_labels=labels, input_boxes=boxes),
             dict(), dict(input_points=points, input_labels=labels, input_masks=torch.randn(2, 1, 32, 32))]
    with torch.no_grad():
        expected_embeddings = reference.get_image_embeddings(pixels)
        embeddings = model.get_image_embeddings(pixels)
        assert len(embeddings) == 3
        for got, expected in zip(embeddings, expected_embeddings):
            _close(got, expected)
        for case in cases:
            for multimask in (True, False):
                expected = reference(pixel_values=pixels, multimask_output=multimask, **case)
                got = model(pixel_values=pixels, multimask_output=multimask, **case)
                for key in ("iou_scores", "pred_masks", "object_score_logits"):
                    assert got[key].shape == expected[key].shape, (case.keys(), key)
                    _close(got[key], expected[key])
                assert expected.pred_masks.std() > 0.05
        again = model(image_embeddings=embeddings, input_boxes=boxes, multimask_output=False)
        _close(again["pred_masks"], reference(image_embeddings=expected_embeddings, input_boxes=boxes,
                                              multimask_output=False).pred_masks)


def test_single_mask_choice_takes_both_branches(models):
    """multimask_output=False keeps the single mask where it is stable, else the best of the
    three: the cases here hit both, and match the reference."""
    reference, model = models
    torch.manual_seed(2)
    pixels = torch.randn(1, 3, 64, 64)
    points = torch.rand(1, 24, 1, 2) * 64
    with torch.no_grad():
        got = model(pixel_values=pixels, input_points=points, multimask_output=False)
        expected = reference(pixel_values=pixels, input_points=points, multimask_output=False)
        _close(got["pred_masks"], expected.pred_masks)
        _close(got["iou_scores"], expected.iou_scores)
        model.mask_decoder.dynamic = False
        try:
            plain = model(pixel_values=pixels, input_points=points, multimask_output=False)
        finally:
            model.mask_decoder.dynamic = True
    same = (plain["pred_masks"] == got["pred_masks"]).flatten(2).all(-1).flatten()
    assert same.any() and not same.all()


def test_bad_input(models):
    _, model = models
    with pytest.raises(InputError, match="exactly one"):
        model(input_points=torch.zeros(1, 1, 1, 2))
    with pytest.raises(InputError, match="three feature maps"):
        model(image_embeddings=torch.zeros(1, 32, 4, 4))
    with pytest.raises(InputError, match="divisible"):
        model(pixel_values=torch.zeros(1, 3, 60, 60))
    with pytest.raises(InputError, match="one box per point batch"):
        model(pixel_values=torch.zeros(1, 3, 64, 64), input_points=torch.zeros(1, 2, 1, 2),
              input_boxes=torch.zeros(1, 3, 4))


def test_image_processor(folder, reference_ip_module):
    """Pixel values: torch's antialiased bilinear resize of the uint8 image (torchvision's call),
    then rescale and normalise; post_process_masks as the reference's."""
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder)
    assert type(ours).__name__ == "Sam2ImageProcessor" and ours.target_size == 64
    tall = IMAGE.transpose(Image.Transpose.TRANSPOSE)
    got = ours([IMAGE, tall], return_tensors="pt")
    assert got["original_sizes"].tolist() == [[40, 56], [56, 40]]
    for row, image in zip(got["pixel_values"], (IMAGE, tall)):
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
        resized = F.interpolate(pixels, size=(64, 64), mode="bilinear", antialias=True)[0].float()
        expected = (resized - torch.tensor(MEAN)[:, None, None] * 255) / (torch.tensor(STD)[:, None, None] * 255)
        _close(row, expected)
    reference = reference_ip_module.Sam2ImageProcessor.post_process_masks
    masks = [torch.randn(2, 3, 16, 16), torch.randn(1, 3, 16, 16)]
    for kwargs in (dict(), dict(binarize=False), dict(mask_threshold=0.3),
                   dict(binarize=False, apply_non_overlapping_constraints=True)):
        for mine, theirs in zip(ours.post_process_masks(list(masks), [(40, 56), (56, 40)], **kwargs),
                                reference(types.SimpleNamespace(_apply_non_overlapping_constraints=lambda m: (
                                    reference_ip_module.Sam2ImageProcessor._apply_non_overlapping_constraints(None, m))),
                                          list(masks), [(40, 56), (56, 40)], **kwargs)):
            assert mine.dtype == theirs.dtype
            torch.testing.assert_close(mine, theirs)


def _reference_processor():
    from transformers.models.sam2.processing_sam2 import Sam2Processor as Reference

    processor = Reference.__new__(Reference)  # without its (torchvision) image processor
    processor.point_pad_value, processor.target_size = -10, 64
    return processor


def test_processor_prompts_match_reference(folder, models):
    from lightpipe.processing.sam2 import Sam2Processor

    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    assert isinstance(ours, Sam2Processor)
    theirs = _reference_processor()
    sizes = [[40, 56], [56, 40]]
    cases = [dict(input_points=[[[[10, 20]]]]),
             dict(input_points=[[[[10, 20], [5, 5]], [[3, 4]]], [[[1, 2]]]],
                  input_labels=[[[1, 0], [1]], [[0]]]),
             dict(input_boxes=[[[1, 2, 30, 35], [4, 4, 20, 20]], [[0, 0, 10, 10], [3, 3, 9, 9]]]),
             dict(input_points=[[[[10, 20]]], [[[1, 2]]]], input_labels=[[[1]], [[1]]],
                  input_boxes=[[[1, 2, 30, 35]], [[0, 0, 10, 10]]])]
    reference_model, model = models
    for case in cases:
        expected = theirs(original_sizes=sizes, return_tensors="pt", **case)
        got = ours(original_sizes=sizes, return_tensors="pt", **case)
        assert sorted(got) == sorted(expected)
        for key in expected:
            if key != "original_sizes":
                assert got[key].dtype == expected[key].dtype, key
                torch.testing.assert_close(got[key], expected[key])
    inputs = ours(images=[IMAGE, IMAGE.transpose(Image.Transpose.TRANSPOSE)], **cases[1])
    with torch.no_grad():
        got = ours.post_process_masks(model(**inputs)["pred_masks"], inputs["original_sizes"])
        expected = ours.post_process_masks(reference_model(**{k: v for k, v in inputs.items()
                                                             if k != "original_sizes"}).pred_masks,
                                           inputs["original_sizes"])
    assert [m.shape[-2:] for m in got] == [(40, 56), (56, 40)]
    for mine, theirs_mask in zip(got, expected):
        assert torch.equal(mine, theirs_mask)
    with pytest.raises(InputError, match="one label per point"):
        ours(original_sizes=sizes, input_points=[[[[1, 2]]]], input_labels=[[[1, 1]]])
    with pytest.raises(InputError, match="same number of boxes"):
        ours(original_sizes=sizes, input_boxes=[[[1, 2, 3, 4]], [[1, 2, 3, 4], [0, 0, 1, 1]]])
    with pytest.raises(InputError, match="4 levels"):
        ours(original_sizes=sizes, input_points=[[[10, 20]]])


def _reference_pipeline(folder, module, ours):
    """transformers' mask-generation pipeline on the reference model, its image processor the
    reference's own methods on a plain object, the pixel values from ours."""

    class ImageProcessor:
        size = {"height": 64, "width": 64}
        generate_crop_boxes = module.Sam2ImageProcessor.generate_crop_boxes
        filter_masks = module.Sam2ImageProcessor.filter_masks
        post_process_masks = module.Sam2ImageProcessor.post_process_masks

        def process_image(self, image):
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()

        def post_process_for_mask_generation(self, *args):
            return module._post_process_for_mask_generation(*args)

        def __call__(self, images, return_tensors="pt"):
            out = ours.image_processor([image.permute(1, 2, 0).numpy() for image in images], return_tensors="pt")
            return transformers.BatchFeature(dict(out), tensor_type="pt")

    model = transformers.Sam2Model.from_pretrained(folder).eval()
    return transformers.pipeline("mask-generation", model=model, image_processor=ImageProcessor())


@pytest.mark.parametrize("kwargs", [
    dict(points_per_batch=16, points_per_crop=6, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    dict(points_per_batch=7, points_per_crop=5, pred_iou_thresh=0.2, stability_score_thresh=0.05,
         stability_score_offset=0.2, output_rle_mask=True, output_bboxes_mask=True, crops_nms_thresh=0.5),
    dict(points_per_batch=10, points_per_crop=4, crops_n_layers=1, crop_overlap_ratio=0.3,
         pred_iou_thresh=0, stability_score_thresh=0, mask_threshold=0.5, output_bboxes_mask=True),
])
def test_pipeline_matches_reference(folder, reference_ip_module, kwargs):
    ours = lightpipe.pipeline("mask-generation", model=str(folder))
    assert isinstance(ours.model, Sam2Model)
    theirs = _reference_pipeline(folder, reference_ip_module, ours)
    expected, got = theirs(IMAGE, **kwargs), ours(IMAGE, **kwargs)
    assert sorted(got) == sorted(expected)
    assert len(got["masks"]) == len(expected["masks"]) > 0
    torch.testing.assert_close(got["scores"], expected["scores"])
    for mask, reference in zip(got["masks"], expected["masks"]):
        assert np.array_equal(np.asarray(mask), np.asarray(reference))
    if "rle_mask" in expected:
        assert got["rle_mask"] == expected["rle_mask"]
    if "bounding_boxes" in expected:
        assert torch.equal(got["bounding_boxes"], expected["bounding_boxes"])


def test_video_checkpoint_loads_as_the_image_model(tmp_path):
    """A sam2_video checkpoint (the Hub's SAM 2.1 layout: memory attention, memory encoder,
    object pointers) loads as the image model, the video weights dropped, as the reference's
    AutoModelForMaskGeneration does."""
    image_folder = tmp_path / "image"
    build_sam2(image_folder)
    saved = json.loads((image_folder / "config.json").read_text())
    config = transformers.Sam2VideoConfig(
        vision_config=saved["vision_config"], prompt_encoder_config=saved["prompt_encoder_config"],
        mask_decoder_config=saved["mask_decoder_config"], image_size=64, memory_attention_hidden_size=32,
        memory_encoder_hidden_size=32, memory_attention_num_layers=1, memory_encoder_output_channels=16,
        memory_attention_feed_forward_hidden_size=32, mask_downsampler_embed_dim=32)
    torch.manual_seed(3)
    video = transformers.Sam2VideoModel(config).eval()
    with torch.no_grad():
        for name, param in video.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3 if param.dim() > 1 else 0.1)
    video.save_pretrained(tmp_path / "video")
    reference = transformers.AutoModelForMaskGeneration.from_pretrained(tmp_path / "video").eval()
    model = lightpipe.AutoModel.from_pretrained(tmp_path / "video")
    assert isinstance(model, Sam2Model)
    torch.manual_seed(4)
    pixels, points = torch.randn(1, 3, 64, 64), torch.rand(1, 2, 1, 2) * 64
    with torch.no_grad():
        expected, got = reference(pixel_values=pixels, input_points=points), model(pixel_values=pixels,
                                                                                   input_points=points)
    for key in ("iou_scores", "pred_masks", "object_score_logits"):
        _close(got[key], expected[key])
