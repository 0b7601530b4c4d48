"""Image loading and image processors against the reference (transformers' PIL-backend
processors, which transformers 5 uses when torchvision is absent, as here): pixel values for
images of odd sizes and modes (RGBA, grayscale, palette, EXIF-rotated), every input form, and
clear errors for bad input."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers.image_utils import load_image as reference_load_image

import lightpipe
from lightpipe.errors import InputError, InputTypeError, ModelNotFoundError
from lightpipe.processing import image as lp_image

PROCESSORS = [  # (ours, reference, settings)
    ("ViTImageProcessor", "ViTImageProcessorPil", {}),
    ("ViTImageProcessor", "ViTImageProcessorPil", {"size": {"height": 30, "width": 41}, "resample": 3}),
    ("CLIPImageProcessor", "CLIPImageProcessorPil", {}),
    ("CLIPImageProcessor", "CLIPImageProcessorPil",
     {"size": {"shortest_edge": 40}, "crop_size": {"height": 50, "width": 33}}),
    ("ConvNextImageProcessor", "ConvNextImageProcessorPil", {"size": {"shortest_edge": 224}}),
    ("ConvNextImageProcessor", "ConvNextImageProcessorPil", {}),
    ("DetrImageProcessor", "DetrImageProcessorPil", {}),
    ("DetrImageProcessor", "DetrImageProcessorPil", {"size": {"shortest_edge": 48, "longest_edge": 80}}),
]


def _pair(ours: str, theirs: str, settings: dict):
    return getattr(lp_image, ours)(**settings), getattr(transformers, theirs)(**settings)


@pytest.mark.parametrize("ours,theirs,settings", PROCESSORS)
def test_pixel_values_match_reference(test_images, ours, theirs, settings):
    mine, reference = _pair(ours, theirs, settings)
    for name, source in test_images.items():
        got = mine(lp_image.load_image(source), return_tensors="pt")["pixel_values"]
        want = reference(reference_load_image(source), return_tensors="pt")["pixel_values"]
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=0, atol=2e-6, msg=name)


def test_detr_batch_padding_and_mask_match_reference(test_images):
    mine, reference = _pair("DetrImageProcessor", "DetrImageProcessorPil",
                            {"size": {"shortest_edge": 48, "longest_edge": 80}})
    images = [test_images["rgb_pil"], test_images["wide_pil"], test_images["gray_pil"]]
    got = mine([lp_image.load_image(i) for i in images], return_tensors="pt")
    want = reference([reference_load_image(i) for i in images], return_tensors="pt")
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=0, atol=2e-6)
    assert torch.equal(got["pixel_mask"], want["pixel_mask"])


def test_convert_rgb_composites_transparency_on_white(test_images):
    """CLIP's processor (do_convert_rgb) on an RGBA or palette image given directly."""
    mine, reference = _pair("CLIPImageProcessor", "CLIPImageProcessorPil", {})
    for name in ("rgba_pil", "palette_png"):
        source = test_images[name]
        source = Image.open(source) if isinstance(source, str) else source
        got = mine(source, return_tensors="pt")["pixel_values"]
        want = reference(source, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(got, want, rtol=0, atol=2e-6, msg=name)


def test_unbatched_numpy_output_matches_reference(test_images):
    mine, reference = _pair("ViTImageProcessor", "ViTImageProcessorPil", {})
    images = [lp_image.load_image(test_images["rgb_pil"]), lp_image.load_image(test_images["gray_pil"])]
    got, want = mine(images)["pixel_values"], reference(images)["pixel_values"]
    assert isinstance(got, list) and len(got) == len(want) == 2
    for a, b in zip(got, want):
        assert isinstance(a, np.ndarray) and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


def test_load_image_matches_reference(test_images):
    """EXIF orientation applied, then RGB (palette, grayscale and RGBA converted)."""
    for name, source in test_images.items():
        got, want = lp_image.load_image(source), reference_load_image(source)
        assert got.mode == want.mode == "RGB", name
        assert got.size == want.size, name
        assert np.array_equal(np.asarray(got), np.asarray(want)), name
    rotated = lp_image.load_image(test_images["exif_jpeg"])
    assert rotated.size == (30, 64)  # stored 64 wide, 30 high; shown upright after rotation


def test_input_forms_give_the_same_pixels(test_images, tmp_path):
    processor = lp_image.ViTImageProcessor(size={"height": 24, "width": 24})
    path = Path(test_images["rgb_jpeg"])
    expected = processor(lp_image.load_image(str(path)), return_tensors="pt")["pixel_values"]
    pil = lp_image.load_image(str(path))
    array = np.asarray(pil)
    raw = path.read_bytes()
    encoded = base64.b64encode(raw).decode()
    forms = {
        "pathlib": path, "pil": pil, "hwc": array, "chw": array.transpose(2, 0, 1).copy(),
        "float": array.astype(np.float32) / 255.0 + 1e-4, "tensor": torch.from_numpy(array.copy()),
        "bytes": raw, "data_uri": "data:image/jpeg;base64," + encoded, "base64": encoded,
    }
    for name, form in forms.items():
        got = processor(lp_image.load_image(form), return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-6, msg=name)
    # several images: a list, a tuple, a generator, a 4-D array
    for batch in ([pil, str(path)], (pil, pil), (x for x in [pil, pil]), np.stack([array, array])):
        out = processor(batch, return_tensors="pt")["pixel_values"]
        assert out.shape == (2, 3, 24, 24)
        torch.testing.assert_close(out[0], expected[0], rtol=0, atol=2e-6)


def test_float_arrays_in_unit_range_are_scaled_as_the_reference_converts_them():
    """A float image in [0, 1] becomes uint8 as the reference's to_pil_image does (x * 255,
    truncated)."""
    values = np.random.default_rng(1).random((9, 7, 3)).astype(np.float32)
    got = np.asarray(lp_image.load_image(values))
    assert np.array_equal(got, (values * 255).astype(np.uint8))


def test_auto_image_processor_reads_legacy_feature_extractor_configs(tmp_path, test_images):
    folder = tmp_path / "legacy_vit"
    folder.mkdir()
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 40}))
    mine = lightpipe.AutoImageProcessor.from_pretrained(folder)
    reference = transformers.AutoImageProcessor.from_pretrained(str(folder))
    assert type(mine).__name__ == "ViTImageProcessor"
    assert mine.size == {"height": 40, "width": 40}
    image = lp_image.load_image(test_images["rgb_pil"])
    torch.testing.assert_close(mine(image, return_tensors="pt")["pixel_values"],
                               reference(image, return_tensors="pt")["pixel_values"], rtol=0, atol=2e-6)


@pytest.mark.parametrize("model_type", ["vit", "clip", "convnext", "detr"])
def test_auto_image_processor_from_checkpoint_folder(vision_model, test_images, model_type):
    head = {"clip": "AutoModel", "detr": "AutoModelForObjectDetection"}.get(
        model_type, "AutoModelForImageClassification")
    folder = vision_model(model_type, head)
    mine = lightpipe.AutoImageProcessor.from_pretrained(folder)
    reference = transformers.AutoImageProcessor.from_pretrained(str(folder))
    image = lp_image.load_image(test_images["rgb_jpeg"])
    torch.testing.assert_close(mine(image, return_tensors="pt")["pixel_values"],
                               reference(image, return_tensors="pt")["pixel_values"], rtol=0, atol=2e-6)
    saved = Path(folder).parent / f"resaved_{model_type}"
    mine.save_pretrained(saved)
    again = lightpipe.AutoImageProcessor.from_pretrained(saved)
    assert type(again) is type(mine) and again.to_dict() == mine.to_dict()


def test_clip_processor_pairs_tokenizer_and_image_processor(vision_model, test_images):
    folder = vision_model("clip", "AutoModel")
    mine = lightpipe.AutoProcessor.from_pretrained(folder)
    reference = transformers.AutoProcessor.from_pretrained(str(folder))
    image = lp_image.load_image(test_images["rgb_pil"])
    texts = ["a photo of the cat", "dog"]
    got = mine(text=texts, images=image, return_tensors="pt", padding=True)
    want = reference(text=texts, images=image, return_tensors="pt", padding=True)
    assert type(mine).__name__ == "CLIPProcessor"
    assert torch.equal(got["input_ids"], want["input_ids"])
    assert torch.equal(got["attention_mask"], want["attention_mask"])
    torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=0, atol=2e-6)


# --- bad input ---
def test_unreadable_and_missing_files_are_clear_errors(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        lp_image.load_image(str(text_file))
    truncated = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, "JPEG")
    truncated.write_bytes(buffer.getvalue()[:100])
    with pytest.raises(InputError):
        lp_image.load_image(str(truncated))
    with pytest.raises(InputError, match="No image at"):
        lp_image.load_image(str(tmp_path / "missing.png"))
    with pytest.raises(InputError, match="folder"):
        lp_image.load_image(str(tmp_path))


def test_url_when_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE"):
        lp_image.load_image("https://example.com/cat.png")


def test_zero_size_images_and_wrong_types_are_clear_errors():
    with pytest.raises(InputError, match="empty"):
        lp_image.load_image(Image.new("RGB", (0, 5)))
    with pytest.raises(InputError, match="empty"):
        lp_image.load_image(np.zeros((0, 4, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="channels"):
        lp_image.load_image(np.zeros((5, 6, 7), dtype=np.uint8))
    with pytest.raises(InputError, match="0, 1"):
        lp_image.load_image(np.full((4, 4, 3), -0.5, dtype=np.float32))
    with pytest.raises(InputTypeError, match="file path"):
        lp_image.load_image(12)
    with pytest.raises(InputError, match="No images"):
        lp_image.ViTImageProcessor()([])


def test_missing_preprocessor_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="preprocessor_config.json"):
        lightpipe.AutoImageProcessor.from_pretrained(tmp_path)


def test_urls_are_fetched_with_a_size_limit(test_images, monkeypatch):
    """A local HTTP server stands in for the web: the image equals the file's; too large a
    download and a missing page are clear errors."""
    import functools
    import http.server
    import threading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    folder = str(Path(test_images["rgb_jpeg"]).parent)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        got = lp_image.load_image(f"{base}/rgb.jpg", timeout=10)
        assert np.array_equal(np.asarray(got), np.asarray(lp_image.load_image(test_images["rgb_jpeg"])))
        with pytest.raises(InputError, match="limit"):
            lp_image.fetch_url(f"{base}/rgb.jpg", timeout=10, max_bytes=100)
        with pytest.raises(InputError, match="404"):
            lp_image.load_image(f"{base}/missing.jpg", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
