"""DINOv2 as a full model against the reference on tiny random checkpoints: Dinov2Model
(pooler_output: the normed [CLS]), Dinov2ForImageClassification ([CLS] and the mean patch
token side by side), positions interpolated for other image sizes, the SwiGLU MLP and layer
scale off 1, BitImageProcessor, and the image-classification and image-feature-extraction
pipelines. (The backbone is tested through Depth Anything.)"""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.processing.image import BitImageProcessor

from .vision_checks import LABEL_MAPS, assert_pipeline_matches, assert_same_outputs, save_vision

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=3,
             image_size=32, patch_size=8, layerscale_value=0.5, layer_norm_eps=1e-5)
PROCESSOR = ("BitImageProcessorPil", dict(size={"shortest_edge": 36},
                                          crop_size={"height": 32, "width": 32},
                                          image_mean=[0.485, 0.456, 0.406],
                                          image_std=[0.229, 0.224, 0.225]))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    made: dict = {}

    def build(head: str, **config) -> object:
        key = (head, tuple(sorted(config.items())))
        if key not in made:
            settings = transformers.Dinov2Config(**{**SIZES, **config}, **LABEL_MAPS)
            made[key] = save_vision(tmp_path_factory.mktemp(head), settings, head, PROCESSOR)
        return made[key]

    return build


@pytest.mark.parametrize("swiglu", [False, True])
@pytest.mark.parametrize("head", ["Dinov2Model", "Dinov2ForImageClassification"])
def test_heads_match_reference(build, head, swiglu):
    folder = build(head, use_swiglu_ffn=swiglu)
    auto = "AutoModel" if head == "Dinov2Model" else "AutoModelForImageClassification"
    keys = ["last_hidden_state", "pooler_output"] if head == "Dinov2Model" else ["logits"]
    assert_same_outputs(folder, auto, None, keys)
    assert_same_outputs(folder, auto, None, keys, height=48, width=40, seed=2)  # interpolated


def test_base_model_from_classifier_checkpoint(build):
    folder = build("Dinov2ForImageClassification")
    assert_same_outputs(folder, "AutoModel", None, ["last_hidden_state", "pooler_output"])


def test_image_processor_defaults_match_reference(test_images):
    ours, theirs = BitImageProcessor(), transformers.BitImageProcessorPil()
    image = test_images["rgb_pil"]
    torch.testing.assert_close(ours(image, return_tensors="pt")["pixel_values"],
                               theirs(image, return_tensors="pt")["pixel_values"])


def test_pipelines_match_reference(build, test_images):
    images = [test_images["rgb_jpeg"], test_images["rgba_pil"], test_images["wide_pil"]]
    assert_pipeline_matches("image-classification", build("Dinov2ForImageClassification"),
                            images, [{}, {"top_k": 3}])
    folder = build("Dinov2Model")
    assert_pipeline_matches("image-feature-extraction", folder, images[:2], [{}, {"pool": True}])
    assert lightpipe.pipeline(model=str(folder)).task == "image-feature-extraction"
    assert type(lightpipe.AutoImageProcessor.from_pretrained(folder)).__name__ == \
        "BitImageProcessor"
