"""Swin2SR against the reference (transformers 5) on tiny random checkpoints it saved: the
image processor's padded pixel values on odd-sized images, and the reconstruction of every
upsampler (classical, lightweight, real-world, compressed, denoising) and residual block."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.processing.swin2sr import Swin2SRImageProcessor

from ..fixtures.multimodal import multimodal_images, odd_image, swin2sr_checkpoint  # noqa: F401


def _processors(folder, **kwargs):
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder, **kwargs)
    theirs = transformers.Swin2SRImageProcessorPil.from_pretrained(str(folder), **kwargs)
    return ours, theirs


@pytest.mark.parametrize("index", range(8))
def test_processor_matches_reference(swin2sr_checkpoint, multimodal_images, index):
    ours, theirs = _processors(swin2sr_checkpoint())
    assert isinstance(ours, Swin2SRImageProcessor)
    image = multimodal_images[index].convert("RGB")  # the reference's processor takes RGB
    got, want = ours(image, return_tensors="pt"), theirs(image, return_tensors="pt")
    assert set(got) == set(want) == {"pixel_values"}
    height, width = image.height, image.width
    assert got["pixel_values"].shape[-2:] == ((height // 8 + 1) * 8, (width // 8 + 1) * 8)
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("settings", [dict(size_divisor=16), dict(pad_size=4), dict(do_pad=False),
                                      dict(do_rescale=False)])
def test_processor_settings_match_reference(swin2sr_checkpoint, multimodal_images, settings):
    ours, theirs = _processors(swin2sr_checkpoint(), **settings)
    images = [multimodal_images[5], odd_image(13, 21, seed=9)]
    # (without rescaling the reference keeps uint8; ours are float32 of the same values)
    torch.testing.assert_close(ours(images, return_tensors="pt")["pixel_values"],
                               theirs(images, return_tensors="pt")["pixel_values"].float(),
                               rtol=1e-6, atol=1e-7)


def test_processor_takes_any_mode_as_rgb(swin2sr_checkpoint, multimodal_images):
    ours, _ = _processors(swin2sr_checkpoint())
    for image in (multimodal_images[3], multimodal_images[4], multimodal_images[7]):
        torch.testing.assert_close(ours(image, return_tensors="pt")["pixel_values"],
                                   ours(image.convert("RGB"), return_tensors="pt")["pixel_values"])


def _pixels(folder, images):
    processor = transformers.Swin2SRImageProcessorPil.from_pretrained(str(folder))
    return processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]


VARIANTS = [dict(), dict(upsampler="pixelshuffledirect"), dict(upsampler="nearest+conv", upscale=4),
            dict(upsampler="pixelshuffle_aux"), dict(upsampler="", upscale=1),
            dict(resi_connection="3conv", upscale=3), dict(upscale=4, num_channels_out=3),
            dict(image_size=64, window_size=8, depths=[2], num_heads=[4]),
            dict(image_size=4, window_size=8)]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "x2")
def test_reconstruction_matches_reference(swin2sr_checkpoint, overrides):
    folder = swin2sr_checkpoint(**overrides)
    ours = lightpipe.AutoModelForImageToImage.from_pretrained(folder)
    theirs = transformers.Swin2SRForImageSuperResolution.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == "Swin2SRForImageSuperResolution"
    for images in ([odd_image(13, 21), odd_image(13, 21, seed=1)], [odd_image(16, 16, seed=2)],
                   [odd_image(5, 3, seed=3)]):
        pixels = _pixels(folder, images)
        with torch.inference_mode():
            got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
        scale = ours.config.upscale
        assert got.reconstruction.shape == (len(images), 3, pixels.shape[2] * scale, pixels.shape[3] * scale)
        torch.testing.assert_close(got.reconstruction, want.reconstruction, rtol=1e-4, atol=1e-5)


def test_base_model_and_hidden_states_match_reference(swin2sr_checkpoint):
    folder = swin2sr_checkpoint()
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.Swin2SRModel.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == "Swin2SRModel"
    pixels = _pixels(folder, [odd_image(21, 13), odd_image(21, 13, seed=4)])
    with torch.inference_mode():
        got = ours(pixel_values=pixels, output_hidden_states=True)
        want = theirs(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, rtol=1e-4, atol=1e-5)
    assert len(got.hidden_states) == len(want.hidden_states) == 3
    for a, b in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_pixels_not_a_multiple_of_the_window_are_padded_inside(swin2sr_checkpoint):
    """Without the processor's padding the model mirrors the input out to whole windows itself;
    the reconstruction is cut back to the input's size times the scale."""
    folder = swin2sr_checkpoint()
    ours = lightpipe.AutoModelForImageToImage.from_pretrained(folder)
    pixels = torch.rand(1, 3, 10, 7, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = ours(pixel_values=pixels).reconstruction
    assert out.shape == (1, 3, 20, 14)


def test_bad_inputs_are_clear_errors(swin2sr_checkpoint):
    ours = lightpipe.AutoModelForImageToImage.from_pretrained(swin2sr_checkpoint())
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        ours(pixel_values=torch.rand(1, 1, 16, 16))
    with pytest.raises(InputError, match="pixel_values"):
        ours()
    with pytest.raises(InputError, match="too small"):
        ours(pixel_values=torch.rand(1, 3, 2, 16))


def test_save_pretrained_round_trip_loads_in_the_reference(swin2sr_checkpoint, tmp_path):
    folder = swin2sr_checkpoint()
    ours = lightpipe.AutoModelForImageToImage.from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    theirs = transformers.Swin2SRForImageSuperResolution.from_pretrained(str(tmp_path)).eval()
    pixels = _pixels(folder, [odd_image(13, 21)])
    with torch.inference_mode():
        torch.testing.assert_close(ours(pixel_values=pixels).reconstruction,
                                   theirs(pixel_values=pixels).reconstruction, rtol=1e-4, atol=1e-5)


def test_legacy_feature_extractor_config_loads_as_swin2sr(tmp_path, multimodal_images):
    """Older Swin2SR folders name a Swin2SRFeatureExtractor and ``pad_size``."""
    import json

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "do_pad": True, "do_rescale": True, "feature_extractor_type": "Swin2SRFeatureExtractor",
        "pad_size": 16, "rescale_factor": 1 / 255}))
    ours = lightpipe.AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(ours, Swin2SRImageProcessor) and ours.size_divisor == 16
    theirs = transformers.Swin2SRImageProcessorPil(size_divisor=16)
    image = multimodal_images[0].convert("RGB")
    torch.testing.assert_close(ours(image, return_tensors="pt")["pixel_values"],
                               theirs(image, return_tensors="pt")["pixel_values"])
