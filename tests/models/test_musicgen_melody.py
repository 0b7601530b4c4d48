"""MusicGen Melody against the reference: the chroma filter bank; the feature extractor's
chromagrams (mono, stereo, batches padded and cut to chunk_length, short audio, Demucs stems,
attention masks); the decoder's logits over the chroma + text prefix; greedy and seeded codes
and audio with and without a melody, with guidance, without a text; the processor; the
text-to-audio pipeline; clear errors.

The reference's feature extractor needs torchaudio, which is not installed here: when it is
missing its ``torchaudio.transforms.Spectrogram`` is stood in for by torch.stft with the same
settings (Hann window, centred, reflect padding, power 2, normalised by the window's energy),
checked equal to torchaudio 2.11.1's on these inputs; the rest of the reference's code (padding,
truncation, stereo and stem mixing, the filter bank, normalisation, one-hot) runs as is."""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest
import torch

import lightpipe
from lightpipe.errors import InputError, UnsupportedModelError
from lightpipe.models.musicgen_melody import MusicgenMelodyForConditionalGeneration
from lightpipe.processing.musicgen_melody import (MusicgenMelodyFeatureExtractor, MusicgenMelodyProcessor,
                                                  chroma_filters)

from ..fixtures.musicgen import build_musicgen_melody, their_codes

transformers = pytest.importorskip("transformers")
from transformers.audio_utils import chroma_filter_bank  # noqa: E402

# the modules themselves (the package's names for them are stand-ins without torchaudio)
their_fe = importlib.import_module("transformers.models.musicgen_melody.feature_extraction_musicgen_melody")
their_proc = importlib.import_module("transformers.models.musicgen_melody.processing_musicgen_melody")

TEXTS = ["The quick brown fox", "Paris is the capital and largest city of France."]
SETTINGS = {"sampling_rate": 1200, "n_fft": 256, "hop_length": 64, "chunk_length": 2}


class _Spectrogram:
    """torchaudio.transforms.Spectrogram(n_fft, win_length=n_fft, hop_length, power=2,
    center=True, pad=0, normalized=True) for the reference when torchaudio is missing."""

    def __init__(self, n_fft, win_length, hop_length, power, center, pad, normalized):
        assert (win_length, power, center, pad, normalized) == (n_fft, 2, True, 0, True)
        self.n_fft, self.hop = n_fft, hop_length

    def __call__(self, waveform):
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(waveform, self.n_fft, self.hop, self.n_fft, window, center=True, pad_mode="reflect",
                          return_complex=True)
        return spec.abs().pow(2) / window.pow(2).sum()


@pytest.fixture(scope="module")
def their_extractor():
    if getattr(their_fe, "torchaudio", None) is None:
        their_fe.torchaudio = types.SimpleNamespace(transforms=types.SimpleNamespace(Spectrogram=_Spectrogram))
        try:
            yield their_fe.MusicgenMelodyFeatureExtractor(**SETTINGS)
        finally:
            del their_fe.torchaudio
    else:
        yield their_fe.MusicgenMelodyFeatureExtractor(**SETTINGS)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # text narrower than the decoder (projected); 13 chroma bins, a 6-frame chroma prefix
    return build_musicgen_melody(tmp_path_factory.mktemp("melody") / "model", seed=4, num_chroma=13,
                                 chroma_length=6, decoder={"activation_function": "relu"})


@pytest.fixture(scope="module")
def pair(folder):
    return (transformers.MusicgenMelodyForConditionalGeneration.from_pretrained(folder).eval(),
            MusicgenMelodyForConditionalGeneration.from_pretrained(folder))


def _text(folder):
    return dict(transformers.AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt"))


def _chroma(frames=4, bins=13, seed=0):
    index = torch.randint(0, bins, (2, frames), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(index, bins).float()


@pytest.mark.parametrize("rate,n_fft,bins", [(1200, 256, 12), (32000, 16384, 12), (8000, 512, 24)])
def test_chroma_filters_equal_reference(rate, n_fft, bins):
    want = chroma_filter_bank(num_frequency_bins=n_fft, num_chroma=bins, sampling_rate=rate, tuning=0)
    got = chroma_filters(rate, n_fft, bins)
    assert got.shape == want.shape == (bins, n_fft // 2 + 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_feature_extractor_equals_reference(their_extractor):
    ours = MusicgenMelodyFeatureExtractor(**SETTINGS)
    rng = np.random.default_rng(0)
    t = np.arange(3000) / 1200
    cases = {
        "tone": np.sin(2 * np.pi * 220 * t[:700]).astype(np.float32),
        "short": rng.standard_normal(100).astype(np.float32),  # shorter than n_fft
        "batch": [np.sin(2 * np.pi * 330 * t[:900]).astype(np.float32), rng.standard_normal(3000).astype(np.float32)],
        "stereo": [rng.standard_normal((2, 500)).astype(np.float32), rng.standard_normal((2, 400)).astype(np.float32)],
        "array": rng.standard_normal((2, 600)).astype(np.float32),  # a 2-D array: a batch of two
        "demucs": torch.randn(2, 4, 2, 800, generator=torch.Generator().manual_seed(0)),
    }
    for name, audio in cases.items():
        for kwargs in ({}, {"return_attention_mask": True}, {"max_length": 500}):
            want = their_extractor(audio, sampling_rate=1200, return_tensors="pt", **kwargs)
            got = ours(audio, sampling_rate=1200, return_tensors="pt", **kwargs)
            assert sorted(got) == sorted(want), (name, kwargs)
            for key in want:
                assert torch.equal(got[key].float(), want[key].float()), (name, kwargs, key)
    assert want["input_features"].shape == (2, 8, 12)
    # batch: cut to chunk_length (2 s = 2400 samples -> 38 frames), the classes vary
    features = ours(cases["batch"], sampling_rate=1200)["input_features"]
    assert features.shape == (2, 38, 12) and features.sum(-1).eq(1).all()
    assert len(set(features.argmax(-1).flatten().tolist())) > 3


def test_logits_equal_reference(folder, pair):
    theirs, ours = pair
    inputs = _text(folder)
    assert inputs["attention_mask"].min() == 0  # padded: zeroed states, not masked
    decoder_ids = torch.randint(0, 65, (8, 5), generator=torch.Generator().manual_seed(1))
    for features in (None, _chroma()):
        with torch.no_grad():
            want = theirs(**inputs, input_features=features, decoder_input_ids=decoder_ids).logits
            got = ours(**inputs, input_features=features, decoder_input_ids=decoder_ids).logits
        assert got.shape == want.shape == (8, 6 + inputs["input_ids"].shape[1] + 5, 64)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("melody,guidance", [(False, None), (True, None), (True, 3.0), (False, 2.0)])
def test_greedy_codes_and_audio_equal_reference(folder, pair, melody, guidance):
    theirs, ours = pair
    inputs = _text(folder)
    if melody:
        inputs["input_features"] = _chroma(frames=3)
    settings = {"do_sample": False, "max_new_tokens": 7, "guidance_scale": guidance}
    want, want_codes = their_codes(theirs, **inputs, **settings)
    out = ours.generate(**inputs, **settings, return_dict_in_generate=True)
    assert torch.equal(out.audio_codes, want_codes)
    assert want_codes.shape == (2, 4, 7 + 1 - 4)
    torch.testing.assert_close(out.sequences, want, rtol=1e-4, atol=1e-5)


def test_melody_without_text_and_seeded_sampling_equal_reference(folder, pair):
    theirs, ours = pair
    features = _chroma(frames=8, seed=2)  # longer than chroma_length: cut
    settings = {"do_sample": False, "max_new_tokens": 6}
    want = theirs.generate(input_features=features, **settings)
    torch.testing.assert_close(ours.generate(input_features=features, **settings), want, rtol=1e-4, atol=1e-5)
    inputs = {**_text(folder), "input_features": features}
    settings = {"do_sample": True, "max_new_tokens": 8, "top_k": 20, "guidance_scale": 2.5}
    torch.manual_seed(9)
    want, want_codes = their_codes(theirs, **inputs, **settings)
    torch.manual_seed(9)
    out = ours.generate(**inputs, **settings, return_dict_in_generate=True)
    assert torch.equal(out.audio_codes, want_codes)
    torch.testing.assert_close(out.sequences, want, rtol=1e-4, atol=1e-5)


def test_the_melody_changes_the_codes(folder, pair):
    _, ours = pair
    inputs = _text(folder)
    settings = {"do_sample": False, "max_new_tokens": 10, "return_dict_in_generate": True}
    plain = ours.generate(**inputs, **settings).audio_codes
    sung = ours.generate(**inputs, input_features=_chroma(frames=3, seed=5), **settings).audio_codes
    assert not torch.equal(plain, sung)


def test_processor_and_unconditional_inputs(folder, their_extractor, tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    theirs = their_proc.MusicgenMelodyProcessor(feature_extractor=their_extractor, tokenizer=tokenizer)
    theirs.save_pretrained(tmp_path)
    ours = lightpipe.AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(ours, MusicgenMelodyProcessor)
    audio = [np.random.default_rng(1).standard_normal(n).astype(np.float32) for n in (700, 500)]
    kwargs = {"audio": audio, "text": TEXTS, "sampling_rate": 1200, "padding": True, "return_tensors": "pt"}
    want, got = theirs(**kwargs), ours(**kwargs)
    assert sorted(got) == sorted(want) == ["attention_mask", "input_features", "input_ids"]
    for key in want:
        assert torch.equal(got[key], want[key]), key
    want, got = theirs.get_unconditional_inputs(2), ours.get_unconditional_inputs(2)
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    sound = torch.randn(2, 1, 12, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 8 + [0] * 2, [1] * 10])
    for a, b in zip(ours.batch_decode(sound, attention_mask=mask), theirs.batch_decode(sound, attention_mask=mask)):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_pipeline_equals_reference(folder):
    theirs = transformers.pipeline("text-to-audio", model=str(folder))
    ours = lightpipe.pipeline("text-to-audio", model=folder)
    assert isinstance(ours.model, MusicgenMelodyForConditionalGeneration)
    for params in ({"do_sample": False, "max_new_tokens": 9}, {"do_sample": False, "max_new_tokens": 5,
                                                                "guidance_scale": 3.0}):
        want = theirs(TEXTS, forward_params=params)
        got = ours(TEXTS, forward_params=params)
        for a, b in zip(got, want):
            assert a["sampling_rate"] == b["sampling_rate"] == 1200
            assert a["audio"].shape == b["audio"].shape
            np.testing.assert_allclose(a["audio"], b["audio"], rtol=1e-4, atol=1e-5)


def test_clear_errors(folder, pair):
    _, ours = pair
    inputs = _text(folder)
    with pytest.raises(UnsupportedModelError, match="num_return_sequences"):
        ours.generate(**inputs, do_sample=True, num_return_sequences=2, max_new_tokens=3)
    with pytest.raises(ValueError, match="not used by the model.*input_values"):
        ours.generate(**inputs, input_values=torch.zeros(2, 1, 30), max_new_tokens=3)
    with pytest.raises(InputError, match=r"chromagram \(batch, frames > 0, 13\)"):
        ours.generate(**inputs, input_features=torch.zeros(2, 4, 12), max_new_tokens=3)
    with pytest.raises(InputError, match="one melody per text"):
        ours.generate(**inputs, input_features=_chroma()[:1], max_new_tokens=3)
    extractor = MusicgenMelodyFeatureExtractor(**SETTINGS)
    with pytest.raises(InputError, match="1200 Hz.*sampling_rate=32000"):
        extractor(np.zeros(500, np.float32), sampling_rate=32000)
    with pytest.raises(InputError, match="empty"):
        extractor([np.zeros(500, np.float32), np.zeros(0, np.float32)], sampling_rate=1200)
