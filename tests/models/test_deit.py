"""DeiT against the reference on tiny random checkpoints: the base model (pooler on, a
non-tanh pooler activation), the classifier on [CLS], the distilled classifier
(DeiTForImageClassificationWithTeacher: the mean of the [CLS] and distillation heads, chosen
by AutoModelForImageClassification from config.architectures as the reference's Auto class
chooses it), interpolated positions (two tokens kept), DeiTImageProcessor (resize to a square,
center crop), and the image-classification and image-feature-extraction pipelines."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.processing.image import DeiTImageProcessor

from .vision_checks import (LABEL_MAPS, assert_pipeline_matches, assert_same_outputs, pixels,
                            save_vision)

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             image_size=32, patch_size=8, layer_norm_eps=1e-6, hidden_act="gelu_new",
             pooler_act="relu", pooler_output_size=24)
PROCESSOR = ("DeiTImageProcessorPil", dict(size={"height": 40, "width": 40},
                                           crop_size={"height": 32, "width": 32}))
HEADS = ["DeiTModel", "DeiTForImageClassification", "DeiTForImageClassificationWithTeacher"]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    made: dict = {}

    def build(head: str) -> object:
        if head not in made:
            config = transformers.DeiTConfig(**SIZES, **LABEL_MAPS)
            made[head] = save_vision(tmp_path_factory.mktemp(head), config, head, PROCESSOR)
        return made[head]

    return build


@pytest.mark.parametrize("head", HEADS)
def test_heads_match_reference(build, head):
    auto = "AutoModel" if head == "DeiTModel" else "AutoModelForImageClassification"
    keys = {"DeiTModel": ["last_hidden_state", "pooler_output"],
            "DeiTForImageClassification": ["logits"],
            "DeiTForImageClassificationWithTeacher": ["logits", "cls_logits",
                                                      "distillation_logits"]}[head]
    assert_same_outputs(build(head), auto, None, keys)
    # interpolated positions on another image size: [CLS] and distillation positions kept
    assert_same_outputs(build(head), auto, None, keys, height=48, width=40, seed=3,
                        interpolate_pos_encoding=True)


def test_size_error_and_base_model_from_head(build):
    folder = build("DeiTForImageClassificationWithTeacher")
    model = lightpipe.AutoModel.from_pretrained(folder)
    with pytest.raises(InputError, match="48x40"):
        model(pixel_values=pixels(height=48, width=40))
    reference = transformers.AutoModel.from_pretrained(folder).eval()
    values = pixels(seed=5)
    with torch.inference_mode():
        torch.testing.assert_close(model(pixel_values=values).last_hidden_state,
                                   reference(pixel_values=values).last_hidden_state)


def test_image_processor_defaults_match_reference(test_images):
    """DeiT's own defaults (256 square, 224 crop, bicubic), not ViT's."""
    ours, theirs = DeiTImageProcessor(), transformers.DeiTImageProcessorPil()
    for image in (test_images["rgb_pil"], test_images["wide_pil"]):
        torch.testing.assert_close(ours(image, return_tensors="pt")["pixel_values"],
                                   theirs(image, return_tensors="pt")["pixel_values"])


@pytest.mark.parametrize("head", ["DeiTForImageClassification",
                                  "DeiTForImageClassificationWithTeacher"])
def test_image_classification_matches_reference(build, test_images, head):
    images = [test_images["rgb_jpeg"], test_images["rgba_pil"], test_images["wide_pil"]]
    assert_pipeline_matches("image-classification", build(head), images, [{}, {"top_k": 2}])


def test_image_feature_extraction_matches_reference(build, test_images):
    images = [test_images["rgb_pil"], test_images["gray_pil"]]
    assert_pipeline_matches("image-feature-extraction", build("DeiTModel"), images,
                            [{}, {"pool": True}])
    assert lightpipe.pipeline(model=str(build("DeiTModel"))).task == "image-feature-extraction"
