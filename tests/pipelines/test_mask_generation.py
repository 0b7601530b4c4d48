"""mask-generation (SAM) against the reference pipeline on a tiny random model: point grids,
points_per_batch, thresholds, crops, RLE and boxes; bad input. Also the model itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.sam import SamModel

from ..fixtures.sam import build_sam, reference_mask_pipeline

IMAGE = Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory):
    return str(build_sam(tmp_path_factory.mktemp("sam")))


@pytest.fixture(scope="module")
def ours(sam_folder):
    return lightpipe.pipeline("mask-generation", model=sam_folder)


def test_model_matches_reference(sam_folder):
    reference = transformers.SamModel.from_pretrained(sam_folder).eval()
    model = SamModel.from_pretrained(sam_folder)
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 64, 64)
    points = torch.rand(2, 3, 2, 2) * 64
    labels = torch.tensor([[[1, 0], [1, -10], [-1, 1]]] * 2)
    boxes = torch.tensor([[[5.0, 6, 40, 50], [1, 2, 30, 30], [10, 10, 60, 60]]] * 2)
    cases = [dict(input_points=points, input_labels=labels), dict(input_boxes=boxes),
             dict(input_points=points, input_labels=labels, input_boxes=boxes, multimask_output=False),
             dict(input_points=points[:, :, :1]),
             dict(input_points=points, input_labels=labels, input_masks=torch.randn(2, 1, 32, 32))]
    with torch.no_grad():
        for case in cases:
            expected, got = reference(pixel_values=pixels, **case), model(pixel_values=pixels, **case)
            torch.testing.assert_close(got["iou_scores"], expected.iou_scores, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got["pred_masks"], expected.pred_masks, rtol=1e-4, atol=1e-5)
        assert expected.pred_masks.std() > 0.05
        torch.testing.assert_close(model.get_image_embeddings(pixels),
                                   reference.get_image_embeddings(pixels), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="64x64"):
        model(pixel_values=torch.randn(1, 3, 32, 32), input_points=points[:1])


def test_image_processor_matches_reference(sam_folder):
    ours = lightpipe.AutoImageProcessor.from_pretrained(sam_folder)
    theirs = transformers.AutoImageProcessor.from_pretrained(sam_folder)
    tall = IMAGE.transpose(Image.Transpose.TRANSPOSE)
    got = ours([IMAGE, tall], return_tensors="pt")
    expected = theirs([IMAGE, tall], return_tensors="pt")
    torch.testing.assert_close(got["pixel_values"], expected["pixel_values"], rtol=1e-5, atol=1e-5)
    assert got["original_sizes"].tolist() == expected["original_sizes"].tolist()
    assert got["reshaped_input_sizes"].tolist() == expected["reshaped_input_sizes"].tolist()
    masks = [torch.randn(1, 3, 16, 16)]
    for binarize in (True, False):
        torch.testing.assert_close(
            ours.post_process_masks(list(masks), [(40, 56)], [(46, 64)], binarize=binarize)[0],
            theirs.post_process_masks(list(masks), [(40, 56)], [(46, 64)], binarize=binarize)[0])


@pytest.mark.parametrize("kwargs", [
    dict(points_per_batch=16, points_per_crop=6, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    dict(points_per_batch=7, points_per_crop=5, pred_iou_thresh=-1.0, stability_score_thresh=0.05,
         stability_score_offset=0.2, output_rle_mask=True, output_bboxes_mask=True,
         crops_nms_thresh=0.5),
    dict(points_per_batch=10, points_per_crop=4, crops_n_layers=1, crop_overlap_ratio=0.3,
         pred_iou_thresh=0, stability_score_thresh=0, mask_threshold=0.5, output_bboxes_mask=True),
])
def test_pipeline_matches_reference(sam_folder, ours, monkeypatch, kwargs):
    theirs = reference_mask_pipeline(sam_folder, monkeypatch)
    expected, got = theirs(IMAGE, **kwargs), ours(IMAGE, **kwargs)
    assert sorted(got) == sorted(expected)
    assert len(got["masks"]) == len(expected["masks"]) > 0
    torch.testing.assert_close(got["scores"], expected["scores"])
    for mask, reference in zip(got["masks"], expected["masks"]):
        assert mask.dtype == reference.dtype and np.array_equal(mask, reference)
    if "rle_mask" in expected:
        assert got["rle_mask"] == expected["rle_mask"]
    if "bounding_boxes" in expected:
        assert torch.equal(got["bounding_boxes"], expected["bounding_boxes"])


def test_embedding_once_per_image_and_crop(ours, monkeypatch):
    calls = []
    original = ours.model.get_image_embeddings
    monkeypatch.setattr(ours.model, "get_image_embeddings",
                        lambda pixels: calls.append(1) or original(pixels))
    ours(IMAGE, points_per_batch=3, points_per_crop=4)
    assert len(calls) == 1
    ours([IMAGE, IMAGE], points_per_batch=5, points_per_crop=3, crops_n_layers=1)
    assert len(calls) == 1 + 2 * 5  # the image and its four crops, per image


def test_bad_input(ours):
    with pytest.raises(InputError, match="1x1"):
        ours(Image.new("RGB", (1, 1)))
    with pytest.raises(InputError, match="points_per_batch"):
        ours(IMAGE, points_per_batch=0)
    with pytest.raises(InputError, match="crops_n_layers"):
        ours(IMAGE, crops_n_layers=-1)
    with pytest.raises(TypeError, match="top_k"):
        ours(IMAGE, top_k=3)


def test_cli_and_server_write_masks_as_png(sam_folder, ours, tmp_path, capsys):
    """The CLI writes each mask as a PNG (a file, or a data: URI); the server answers with PNG
    data: URIs; both decode to the Python call's masks."""
    import base64
    import io
    import json

    from lightpipe.cli import main

    from ..test_server import start_from_config

    path = tmp_path / "image.png"
    IMAGE.save(path)
    kwargs = {"points_per_batch": 16, "points_per_crop": 4, "pred_iou_thresh": 0,
              "stability_score_thresh": 0}
    local = ours(str(path), **kwargs)

    def decoded(uri: str) -> np.ndarray:
        header, data = uri.split(",", 1)
        assert header == "data:image/png;base64"
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) > 0

    assert main(["run", "mask-generation", "--model", sam_folder, "--data-uris",
                 "--kwargs", json.dumps(kwargs), str(path)]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert [decoded(uri).tolist() for uri in result["masks"]] == [m.tolist() for m in local["masks"]]
    assert result["scores"] == pytest.approx(local["scores"].tolist())
    assert main(["run", "mask-generation", "--model", sam_folder, "--output-dir", str(tmp_path / "out"),
                 "--kwargs", json.dumps(kwargs), str(path)]) == 0
    files = json.loads(capsys.readouterr().out.splitlines()[0])["masks"]
    assert (np.asarray(Image.open(files[0])) > 0).tolist() == local["masks"][0].tolist()

    running = start_from_config(tmp_path, {"models": [
        {"name": "sam", "task": "mask-generation", "model": sam_folder}]})
    try:
        encoded = base64.b64encode(path.read_bytes()).decode()
        answer = running.post("/v1/pipelines/sam", {"inputs": encoded, "parameters": kwargs})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [decoded(uri).tolist() for uri in body["masks"]] == [m.tolist() for m in local["masks"]]
    finally:
        assert running.stop() == 0, "".join(running.lines)


def test_demo_page_overlays_masks(ours):
    from lightpipe.demo import page_for

    page = page_for(ours)
    assert page.outputs[0][0] == "AnnotatedImage"
    shown, annotations = page.run(IMAGE, 4)
    expected = ours(IMAGE, points_per_crop=4)
    assert shown is IMAGE and len(annotations) == len(expected["masks"])
    for (mask, label), reference, score in zip(annotations, expected["masks"], expected["scores"]):
        assert np.array_equal(mask, reference) and label == f"{score:.2f}"


def test_processor_prompts_and_prompted_masks_match_reference(sam_folder):
    """SamProcessor scales points and boxes to the resized image (padding unequal point
    counts), and prompted masks through model and post_process_masks equal the reference's."""
    from lightpipe.processing.sam import SamProcessor

    ours = SamProcessor.from_pretrained(sam_folder)
    theirs = transformers.SamProcessor.from_pretrained(sam_folder)
    tall = Image.new("RGB", (30, 50), (200, 10, 10))
    cases = [dict(images=IMAGE, input_points=[[[10, 20]]]),
             dict(images=[IMAGE, tall], input_points=[[[10, 20], [5, 5]], [[3, 4]]],
                  input_labels=[[1, 0], [1]]),
             dict(images=IMAGE, input_boxes=[[[1, 2, 30, 35], [4, 4, 20, 20]]]),
             dict(images=[IMAGE, tall], input_points=[[[[10, 20]]], [[[1, 2]]]],
                  input_labels=[[[1]], [[1]]], input_boxes=[[[1, 2, 30, 35]], [[0, 0, 10, 10]]])]
    model = SamModel.from_pretrained(sam_folder)
    reference = transformers.SamModel.from_pretrained(sam_folder).eval()
    for case in cases:
        expected, got = theirs(**case, return_tensors="pt"), ours(**case, return_tensors="pt")
        assert sorted(got) == sorted(expected)
        for key in expected:
            assert got[key].dtype == expected[key].dtype and got[key].shape == expected[key].shape
            torch.testing.assert_close(got[key], expected[key])
        inputs = {k: v for k, v in expected.items() if k not in ("original_sizes", "reshaped_input_sizes")}
        with torch.no_grad():
            masks = model(**inputs)["pred_masks"]
            reference_masks = reference(**inputs).pred_masks
        for mine, theirs_mask in zip(
                ours.post_process_masks(masks, got["original_sizes"], got["reshaped_input_sizes"]),
                theirs.post_process_masks(reference_masks, expected["original_sizes"],
                                          expected["reshaped_input_sizes"])):
            assert torch.equal(mine, theirs_mask)
    with pytest.raises(InputError, match="input_boxes"):
        ours(images=IMAGE, input_boxes=[[1, 2, 3, 4]])


def test_rle_round_trip_matches_reference():
    from transformers.models.sam import image_processing_pil_sam as pil_sam

    from lightpipe.processing.sam import mask_to_rle, rle_to_mask

    masks = torch.zeros(5, 6, 7, dtype=torch.bool)
    masks[1] = True
    masks[2, 0, 0] = True
    masks[3, 2:5, 1:4] = True
    masks[4, -1, -1] = True
    encoded = mask_to_rle(masks)
    assert encoded == pil_sam._mask_to_rle(masks)
    for rle, mask in zip(encoded, masks):
        assert np.array_equal(rle_to_mask(rle), mask.numpy())
    assert mask_to_rle(torch.zeros(0, 6, 7, dtype=torch.bool)) == []
