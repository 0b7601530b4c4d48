"""The vision examples (tutorial steps 05, 13, 14), run as a user runs them (a subprocess,
HF_HUB_OFFLINE=1) on tiny local checkpoints; what they print is checked against transformers
on the same folders."""

from __future__ import annotations

import math

import torch
import transformers
from transformers.image_utils import load_image

from .conftest import assert_outputs_close
from .test_examples import printed, run_example


def test_step05_image_classification(vision_model, test_images):
    folder = str(vision_model("vit", "AutoModelForImageClassification"))
    image = test_images["exif_jpeg"]
    stdout = run_example("step05_image_classification.py", "--model", folder, "--image", image)
    reference = transformers.pipeline("image-classification", model=folder)
    assert_outputs_close(printed(stdout, "predictions"), reference(image))
    assert_outputs_close(printed(stdout, "top 2"), reference(image, top_k=2))
    assert_outputs_close(printed(stdout, "batch"), reference([image, image], top_k=1))


def test_step13_autoimageprocessor(vision_model, test_images):
    folder = str(vision_model("vit", "AutoModelForImageClassification"))
    image = test_images["rgb_jpeg"]
    stdout = run_example("step13_autoimageprocessor.py", "--model", folder, "--image", image)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    assert "processor: ViTImageProcessor" in stdout
    settings = printed(stdout, "settings")
    assert settings["size"] == dict(processor.size) and settings["resample"] == processor.resample
    assert settings["image_mean"] == list(processor.image_mean)
    pixels = processor(load_image(image), return_tensors="pt")["pixel_values"]
    shown = printed(stdout, "pixel_values")
    assert shown["shape"] == list(pixels.shape) and shown["dtype"] == "torch.float32"
    assert math.isclose(shown["mean"], pixels.mean().item(), abs_tol=1e-5)
    assert math.isclose(shown["std"], pixels.std().item(), abs_tol=1e-5)
    torch.testing.assert_close(torch.tensor(shown["corner"]), pixels[0, :, 0, 0], atol=1e-6, rtol=0)
    model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    best = int(logits.argmax(-1))
    prediction = printed(stdout, "prediction")
    assert prediction["label"] == model.config.id2label[best]
    assert math.isclose(prediction["logit"], logits[0, best].item(), rel_tol=1e-4, abs_tol=1e-5)


def test_step14_autobackbone(vision_model, test_images):
    folder = str(vision_model("swin", "AutoModelForImageClassification"))
    image = test_images["palette_png"]
    stdout = run_example("step14_autobackbone.py", "--model", folder, "--image", image)
    pixels = transformers.AutoImageProcessor.from_pretrained(folder)(
        load_image(image), return_tensors="pt")["pixel_values"]
    for name, selection in [("out_indices", {"out_indices": (1,)}),
                            ("out_features", {"out_features": ["stage1", "stage3"]})]:
        # transformers.AutoBackbone asks the Hub about local folders: the class is named here.
        reference = transformers.SwinBackbone.from_pretrained(folder, **selection).eval()
        with torch.no_grad():
            maps = reference(pixel_values=pixels).feature_maps
        shown = printed(stdout, name)
        assert shown["stage_names"] == list(reference.stage_names)
        assert shown["out_features"] == list(reference.out_features)
        assert shown["out_indices"] == list(reference.out_indices)
        assert shown["channels"] == list(reference.channels)
        assert shown["shapes"] == [list(m.shape) for m in maps]
        for got, want in zip(shown["means"], maps):
            assert math.isclose(got, want.mean().item(), rel_tol=1e-4, abs_tol=1e-5)
