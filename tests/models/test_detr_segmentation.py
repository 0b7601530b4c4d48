"""DETR panoptic (DetrForSegmentation) against the reference on a tiny random checkpoint it saved:
logits, boxes and masks with and without a padding mask, timm-named backbones; DETR's panoptic,
instance and semantic post-processing against the reference image processor's."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from lightpipe.errors import InputError
from lightpipe.models.detr_segmentation import DetrForSegmentation
from lightpipe.processing import detr_segmentation as post
from tests.fixtures.dense import *  # noqa: F401,F403


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max() or 1))


def _compare(ours, theirs, pixels, pixel_mask=None):
    with torch.inference_mode():
        got = ours(pixel_values=pixels, pixel_mask=pixel_mask)
        want = theirs(pixel_values=pixels, pixel_mask=pixel_mask)
    for key in ("logits", "pred_boxes", "pred_masks", "last_hidden_state"):
        assert got[key].shape == want[key].shape, key
        _close(got[key], want[key])


def test_outputs_match_reference(dense_model):
    folder = dense_model("detr", "DetrForSegmentation")
    ours = DetrForSegmentation.from_pretrained(folder)
    theirs = transformers.DetrForSegmentation.from_pretrained(str(folder)).eval()
    pixels = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    _compare(ours, theirs, pixels)
    mask = torch.ones(2, 64, 96, dtype=torch.long)
    mask[1, :, 64:] = 0  # the second image is padded on the right
    _compare(ours, theirs, pixels, mask)


def test_timm_named_backbone_loads(dense_model, tmp_path):
    """facebook/detr-resnet-50-panoptic stores its backbone with timm's names (layer1.0.conv1,
    bn1, downsample.0/1): the same checkpoint renamed so loads and gives the reference's masks."""
    folder = dense_model("detr", "DetrForSegmentation")
    state = load_file(str(folder / "model.safetensors"))
    renamed = {}
    for name, tensor in state.items():
        name = (name.replace("embedder.embedder.convolution", "conv1")
                .replace("embedder.embedder.normalization", "bn1"))
        parts = name.split(".")
        if "stages" in parts:
            at = parts.index("stages")
            stage, block, rest = int(parts[at + 1]), parts[at + 3], parts[at + 4:]
            if rest[0] == "layer":
                rest = [("conv" if rest[2] == "convolution" else "bn") + str(int(rest[1]) + 1)] + rest[3:]
            else:
                rest = ["downsample", "0" if rest[1] == "convolution" else "1"] + rest[2:]
            parts = parts[:at - 1] + [f"layer{stage + 1}", block] + rest
        renamed[".".join(parts)] = tensor
    assert any("layer1.0.conv1" in name for name in renamed)
    target = tmp_path / "timm"
    target.mkdir()
    save_file(renamed, str(target / "model.safetensors"), metadata={"format": "pt"})
    (target / "config.json").write_text((folder / "config.json").read_text())
    ours = DetrForSegmentation.from_pretrained(target)
    theirs = transformers.DetrForSegmentation.from_pretrained(str(folder)).eval()
    _compare(ours, theirs, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))


def _outputs(seed=0, queries=10, labels=5, size=(12, 16)):
    """Synthetic DETR outputs with confident, distinct queries (some 'no object')."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, queries, labels + 1, generator=generator) * 4
    masks = torch.randn(2, queries, *size, generator=generator) - 4
    for image in range(2):
        for query in range(queries):  # a rectangle per query, overlapping others at random
            top = torch.randint(0, size[0] - 3, (1,), generator=generator).item()
            left = torch.randint(0, size[1] - 3, (1,), generator=generator).item()
            masks[image, query, top:top + 5, left:left + 6] += 8
    return logits, masks


@pytest.mark.parametrize("kwargs", [{}, {"threshold": 0.3}, {"threshold": 0.3, "mask_threshold": 0.2},
                                    {"threshold": 0.2, "overlap_mask_area_threshold": 0.3},
                                    {"threshold": 0.2, "label_ids_to_fuse": {0, 1, 2}},
                                    {"threshold": 1.0}])
@pytest.mark.parametrize("sizes", [None, [(37, 53), (20, 30)]])
def test_panoptic_and_instance_post_processing_match_reference(kwargs, sizes):
    reference = transformers.DetrImageProcessorPil()
    logits, masks = _outputs()
    outputs = transformers.models.detr.modeling_detr.DetrSegmentationOutput(logits=logits, pred_masks=masks)
    ours = {"logits": logits, "pred_masks": masks}
    want = reference.post_process_panoptic_segmentation(outputs, target_sizes=sizes, **kwargs)
    got = post.post_process_panoptic_segmentation(ours, target_sizes=sizes, **kwargs)
    if "label_ids_to_fuse" not in kwargs:
        want_instance = reference.post_process_instance_segmentation(outputs, target_sizes=sizes, **kwargs)
        got_instance = post.post_process_instance_segmentation(ours, target_sizes=sizes, **kwargs)
        want, got = want + want_instance, got + got_instance
    for a, b in zip(got, want):
        assert a["segments_info"] == b["segments_info"]
        torch.testing.assert_close(a["segmentation"], b["segmentation"])
    found = sum(len(item["segments_info"]) for item in want)
    assert (found == 0) == (kwargs.get("threshold") == 1.0)


@pytest.mark.parametrize("sizes", [None, [(37, 53), (20, 30)]])
def test_semantic_post_processing_matches_reference(sizes):
    logits, masks = _outputs(seed=2)
    outputs = transformers.models.detr.modeling_detr.DetrSegmentationOutput(logits=logits, pred_masks=masks)
    want = transformers.DetrImageProcessorPil().post_process_semantic_segmentation(outputs, target_sizes=sizes)
    got = post.DetrSegmentationImageProcessor().post_process_semantic_segmentation(
        {"logits": logits, "pred_masks": masks}, target_sizes=sizes)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    with pytest.raises(InputError, match="target sizes"):
        post.post_process_semantic_segmentation({"logits": logits, "pred_masks": masks}, [(4, 4)])
