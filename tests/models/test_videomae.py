"""VideoMAE against the reference (transformers 5) on tiny random checkpoints it saved: logits
with mean pooling and with the first token, without query/value biases, the base model's
states (also with masked tubelets), the fixed position table, checkpoints in the newer
parameter names, the image processor's pixel values, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import lightpipe
from lightpipe.config import Config
from lightpipe.errors import InputError
from lightpipe.models import model_class
from lightpipe.processing.video import VideoMAEImageProcessor

from ..fixtures.video import videomae_checkpoint  # noqa: F401


def _pixels(batch: int = 2, frames: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, 32, 32, generator=generator)


def _load(folder, head: str = "AutoModelForVideoClassification"):
    config = Config.from_folder(folder)
    return model_class(config, head).from_pretrained(folder)


@pytest.mark.parametrize("overrides", [{}, {"use_mean_pooling": False}, {"qv_bias": False}],
                         ids=["mean-pooling", "first-token", "no-qv-bias"])
def test_logits_match_reference(videomae_checkpoint, overrides):
    folder = videomae_checkpoint(**overrides)
    ours = _load(folder)
    theirs = transformers.VideoMAEForVideoClassification.from_pretrained(folder).eval()
    assert type(ours).__name__ == "VideoMAEForVideoClassification"
    assert (ours.fc_norm is None) == (overrides.get("use_mean_pooling") is False)
    pixels = _pixels()
    with torch.no_grad():
        want = theirs(pixel_values=pixels).logits
    got = ours(pixel_values=pixels).logits
    assert got.shape == (2, 7)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_mean_pooling", [True, False])
def test_base_model_states_match_reference(videomae_checkpoint, use_mean_pooling):
    # The head checkpoint loads into the base class (prefix dropped), as the reference does.
    folder = videomae_checkpoint(use_mean_pooling=use_mean_pooling)
    ours = _load(folder, "AutoModel")
    theirs = transformers.VideoMAEModel.from_pretrained(folder).eval()
    assert (ours.layernorm is None) == use_mean_pooling
    pixels = _pixels(seed=1)
    # Each clip: 4 frames / tubelet 2 * (32 / 8) ** 2 = 32 tubelets; half of them masked.
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[0, ::2] = True
    mask[1, 1::2] = True
    with torch.no_grad():
        want = theirs(pixel_values=pixels).last_hidden_state
        want_masked = theirs(pixel_values=pixels, bool_masked_pos=mask).last_hidden_state
    got = ours(pixel_values=pixels).last_hidden_state
    assert got.shape == (2, 32, 32)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    got_masked = ours(pixel_values=pixels, bool_masked_pos=mask).last_hidden_state
    assert got_masked.shape == (2, 16, 32)
    torch.testing.assert_close(got_masked, want_masked, rtol=1e-4, atol=1e-5)


def test_position_table_matches_reference(videomae_checkpoint):
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    model = _load(videomae_checkpoint())
    table = model.videomae.embeddings.position_embeddings
    assert not table.is_meta
    torch.testing.assert_close(table, get_sinusoid_encoding_table(32, 32), rtol=0, atol=1e-7)
    from lightpipe.models.videomae import sinusoid_table

    big = sinusoid_table(1568, 768)
    torch.testing.assert_close(big, get_sinusoid_encoding_table(1568, 768), rtol=0, atol=1e-6)


def test_auto_classes_and_newer_parameter_names(videomae_checkpoint, tmp_path):
    from safetensors.torch import save_file

    folder = videomae_checkpoint()
    theirs = transformers.VideoMAEForVideoClassification.from_pretrained(folder).eval()
    # The reference's in-memory names (query.bias / value.bias), as another tool might save them.
    state = {k: v.contiguous() for k, v in theirs.state_dict().items()}
    assert any(k.endswith("attention.attention.query.bias") for k in state)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    pixels = _pixels(seed=2)
    with torch.no_grad():
        want = theirs(pixel_values=pixels).logits
    for source in (folder, tmp_path):
        ours = lightpipe.AutoModelForVideoClassification.from_pretrained(source)
        torch.testing.assert_close(ours(pixel_values=pixels).logits, want, rtol=1e-4, atol=1e-5)


def test_bfloat16_runs_close(videomae_checkpoint):
    folder = videomae_checkpoint()
    ours = lightpipe.AutoModelForVideoClassification.from_pretrained(folder, dtype=torch.bfloat16)
    theirs = transformers.VideoMAEForVideoClassification.from_pretrained(folder).eval()
    pixels = _pixels(seed=3)
    with torch.no_grad():
        want = theirs(pixel_values=pixels).logits
    got = ours(pixel_values=pixels).logits
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)


def test_bad_pixel_values_are_clear_errors(videomae_checkpoint):
    model = _load(videomae_checkpoint())
    with pytest.raises(InputError, match="needs pixel_values"):
        model()
    with pytest.raises(InputError, match="exactly 4 frames"):
        model(pixel_values=_pixels(frames=6))
    with pytest.raises(InputError, match="Resize the frames"):
        model(pixel_values=torch.randn(1, 4, 3, 16, 16))
    with pytest.raises(InputError, match="shape"):
        model(pixel_values=torch.randn(1, 3, 32, 32))


# --- the image processor -------------------------------------------------------------------
def _frames(count: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("settings", [{}, {"size": {"shortest_edge": 40}},
                                      {"do_center_crop": False, "size": {"shortest_edge": 32}},
                                      {"resample": 3, "do_normalize": False}],
                         ids=["default", "larger-resize", "no-crop", "bicubic-unnormalised"])
def test_image_processor_matches_reference(videomae_checkpoint, settings):
    folder = videomae_checkpoint()
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder, **settings)
    theirs = transformers.VideoMAEImageProcessorPil.from_pretrained(str(folder), **settings)
    assert isinstance(ours, VideoMAEImageProcessor)
    video = _frames(4, 45, 37, seed=0)
    videos = [video, _frames(4, 45, 37, seed=1)]
    cases = [video, [Image.fromarray(f) for f in video], np.stack(video), videos]
    for case in cases:
        got = ours(case, return_tensors="pt")["pixel_values"]
        want = theirs(case, return_tensors="pt")["pixel_values"]
        assert got.shape == want.shape and got.dim() == 5
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_image_processor_reads_legacy_configs(tmp_path):
    # The Hub's VideoMAE checkpoints: a feature-extractor type and an int size (short side).
    settings = {"feature_extractor_type": "VideoMAEFeatureExtractor", "size": 40, "crop_size": 32,
                "do_center_crop": True, "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225], "resample": 2}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    ours = lightpipe.AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(ours, VideoMAEImageProcessor)
    assert ours.size == {"shortest_edge": 40} and ours.crop_size == {"height": 32, "width": 32}
    theirs = transformers.VideoMAEImageProcessorPil(**{k: v for k, v in settings.items()
                                                       if k != "feature_extractor_type"})
    video = _frames(4, 50, 70, seed=2)
    torch.testing.assert_close(ours(video, return_tensors="pt")["pixel_values"],
                               theirs(video, return_tensors="pt")["pixel_values"], rtol=1e-5, atol=1e-6)


def test_image_processor_errors():
    processor = VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    with pytest.raises(InputError, match="needs a video"):
        processor(None)
    with pytest.raises(TypeError, match="takes a video"):
        processor([1, 2, 3])
    with pytest.raises(InputError, match="different shapes"):
        processor([_frames(4, 40, 40, 0), _frames(3, 40, 40, 1)], return_tensors="pt")
