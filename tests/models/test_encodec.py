"""EnCodec against the reference: codes from encode, audio from decode and forward, for causal
and non-causal convolutions, both norms, chunked encoding with overlap-add and normalisation,
stereo; legacy weight-norm names; the feature extractor; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.encodec import EncodecModel
from lightpipe.processing.encodec import EncodecFeatureExtractor

from ..fixtures.musicgen import build_encodec

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "causal": {},
    "plain": dict(use_causal_conv=False, pad_mode="constant", norm_type="time_group_norm",
                  use_conv_shortcut=False, num_residual_layers=2),
    "chunked": dict(chunk_length_s=0.05, overlap=0.2, normalize=True, audio_channels=2),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encodec")
    return {name: build_encodec(root / name, seed=i, **overrides)
            for i, (name, overrides) in enumerate(CONFIGS.items())}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_encode_decode_equal_reference(folders, name):
    theirs = transformers.EncodecModel.from_pretrained(folders[name]).eval()
    ours = EncodecModel.from_pretrained(folders[name])
    channels = 2 if name == "chunked" else 1
    audio = torch.randn(2, channels, 131, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 131, dtype=torch.long)
    mask[1, 100:] = 0
    with torch.no_grad():
        for bandwidth in (None, 4.8):
            want = theirs.encode(audio, mask, bandwidth=bandwidth)
            got = ours.encode(audio, mask, bandwidth=bandwidth)
            assert torch.equal(got.audio_codes, want.audio_codes)
            assert got.last_frame_pad_length == want.last_frame_pad_length
            for ours_scale, their_scale in zip(got.audio_scales, want.audio_scales):
                assert (ours_scale is None) == (their_scale is None)
                if their_scale is not None:
                    torch.testing.assert_close(ours_scale, their_scale)
            args = (want.audio_codes, want.audio_scales)
            kwargs = {"last_frame_pad_length": want.last_frame_pad_length}
            expected = theirs.decode(*args, **kwargs).audio_values
            torch.testing.assert_close(ours.decode(*args, **kwargs).audio_values, expected,
                                       rtol=1e-4, atol=1e-5)
            assert expected.std() > 1e-4
        assert want.audio_codes.shape[2] == 4  # 4.8 kbps: four quantizers
        torch.testing.assert_close(ours(audio, mask).audio_values, theirs(audio, mask).audio_values,
                                   rtol=1e-4, atol=1e-5)
        codes = torch.randint(0, 64, (1, 2, 4, 9), generator=torch.Generator().manual_seed(2))
        if name != "chunked":  # codes -> audio, whatever their source
            torch.testing.assert_close(ours.decode(codes, [None]).audio_values,
                                       theirs.decode(codes, [None]).audio_values, rtol=1e-4, atol=1e-5)


def test_legacy_weight_norm_names_and_auto_class(folders, tmp_path):
    folder = folders["causal"]
    for name in ("config.json",):
        (tmp_path / name).write_text((folder / name).read_text())
    state = load_file(folder / "model.safetensors")
    renamed = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, tmp_path / "model.safetensors")
    legacy = lightpipe.AutoModel.from_pretrained(tmp_path)
    assert isinstance(legacy, EncodecModel)
    current = EncodecModel.from_pretrained(folder)
    audio = torch.randn(1, 1, 60, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(legacy(audio).audio_values, current(audio).audio_values)


def test_bad_inputs_are_clear(folders):
    model = EncodecModel.from_pretrained(folders["causal"])
    with pytest.raises(InputError, match="bandwidth 3.0"):
        model.encode(torch.zeros(1, 1, 30), bandwidth=3.0)
    with pytest.raises(InputError, match="channels 1 or 2"):
        model.encode(torch.zeros(1, 3, 30))


@pytest.mark.parametrize("settings, call", [
    ({}, {}), ({}, {"padding": False}), ({}, {"truncation": True, "max_length": 40, "padding": False}),
    ({"feature_size": 2}, {}),
    ({"chunk_length_s": 0.02, "overlap": 0.5, "sampling_rate": 1000}, {}),
    ({"chunk_length_s": 0.02, "overlap": 0.5, "sampling_rate": 1000}, {"truncation": True}),
])
def test_feature_extractor_equals_reference(settings, call):
    rng = np.random.default_rng(0)
    shape = (lambda n: (2, n)) if settings.get("feature_size") == 2 else (lambda n: (n,))
    audio = [rng.standard_normal(shape(n)).astype(np.float32) for n in (50, 37)]
    tensors = None if call.get("padding") is False else "pt"
    theirs = transformers.EncodecFeatureExtractor(**settings)
    want = theirs(audio, return_tensors=tensors, sampling_rate=theirs.sampling_rate, **call)
    got = EncodecFeatureExtractor(**settings)(audio, return_tensors=tensors,
                                              sampling_rate=theirs.sampling_rate, **call)
    assert set(got) == set(want)
    for key in want:
        if tensors is None:
            assert all(np.array_equal(a, b) for a, b in zip(got[key], want[key]))
        else:
            assert torch.equal(got[key], want[key]) and got[key].dtype == want[key].dtype
