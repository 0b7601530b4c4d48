"""Audio input (files in every format, bytes, arrays, dicts), the resampler, and the feature
extractors against the reference's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError
from lightpipe.processing.audio import (WhisperFeatureExtractor, Wav2Vec2FeatureExtractor,
                                        decode_audio, load_audio, resample)

from .fixtures.audio import noise_audio


def test_decodes_every_format(speech_files):
    import soundfile

    wav, rate = soundfile.read(str(speech_files["wav"]), dtype="float32")
    for ext, path in speech_files.items():
        samples, got_rate = decode_audio(path)
        assert samples.dtype == np.float32 and samples.shape[0] == 1, ext
        if ext in ("wav", "flac"):
            assert got_rate == rate
            np.testing.assert_allclose(samples[0], wav, atol=1e-4)
        else:  # lossy: same length within the codec's padding, similar loudness
            mono = resample(samples[0], got_rate, rate)
            assert abs(len(mono) - len(wav)) < 0.05 * len(wav) + 2000, ext
            assert 0.5 < np.abs(mono).mean() / np.abs(wav).mean() < 2.0, ext
        bytes_samples, _ = decode_audio(path.read_bytes())
        np.testing.assert_array_equal(bytes_samples, samples)


def test_decodes_with_av_when_soundfile_cannot(speech_files, monkeypatch):
    import soundfile

    def refuse(*args, **kwargs):
        raise RuntimeError("format not supported")

    expected, _ = decode_audio(speech_files["flac"])
    monkeypatch.setattr(soundfile, "read", refuse)
    samples, rate = decode_audio(speech_files["flac"])
    np.testing.assert_allclose(samples, expected, atol=1e-4)


def test_load_audio_forms_and_dtypes():
    audio = noise_audio(0.5)
    out, _ = load_audio(audio, 16000)
    np.testing.assert_array_equal(out, audio)
    pcm = (audio * 32767).astype(np.int16)
    out, _ = load_audio(pcm, 16000)
    np.testing.assert_allclose(out, pcm / 32768.0, atol=1e-6)
    out, _ = load_audio(audio.astype(np.float64), 16000)
    assert out.dtype == np.float32
    stereo = np.stack([audio, -audio * 0.5])
    out, _ = load_audio({"raw": stereo, "sampling_rate": 16000}, 16000)
    np.testing.assert_allclose(out, stereo.mean(0))
    out, extras = load_audio({"array": audio, "sampling_rate": 8000, "stride": (100, 200),
                              "id": 3}, 16000)
    assert len(out) == 2 * len(audio) and extras["stride"] == (len(out), 200, 400)
    assert extras["extra"] == {"id": 3}


@pytest.mark.parametrize("bad,error,match", [
    (np.zeros(0, dtype=np.float32), InputError, "empty"),
    (np.array(["x"]), InputTypeError, "dtype"),
    (np.zeros((3, 4, 5), dtype=np.float32), InputError, "shape"),
    (np.zeros((5, 100), dtype=np.float32), InputError, "transpose"),
    (np.array([0.0, np.nan], dtype=np.float32), InputError, "NaN"),
    ({"raw": np.zeros(10)}, InputError, "sampling_rate"),
    ({"raw": np.zeros(10), "sampling_rate": -1}, InputError, "positive"),
    ("/nonexistent.flac", InputError, "does not exist"),
    (b"", InputError, "empty"),
    (b"\x00\x01garbage" * 10, InputError, "Could not decode"),
    (3.5, InputTypeError, "file path"),
])
def test_bad_audio_is_a_clear_error(bad, error, match):
    with pytest.raises(error, match=match):
        load_audio(bad, 16000)


@pytest.mark.parametrize("orig,new", [(44100, 16000), (22050, 16000), (48000, 16000), (8000, 16000)])
def test_resampler_keeps_the_band_and_removes_aliases(orig, new):
    time = np.arange(orig) / orig  # one second
    tone = np.sin(2 * np.pi * 440 * time).astype(np.float32)
    out = resample(tone, orig, new)
    assert len(out) == new
    expected = np.sin(2 * np.pi * 440 * np.arange(new) / new)
    inner = slice(new // 10, -new // 10)  # away from the edges
    np.testing.assert_allclose(out[inner], expected[inner], atol=2e-3)
    if orig > new:  # a tone above the new Nyquist rate must vanish, not fold back
        high = np.sin(2 * np.pi * (0.6 * new) * time).astype(np.float32)
        leaked = resample(high, orig, new)[inner]
        assert np.sqrt(np.mean(leaked ** 2)) < 1e-3  # below -57 dB of the 0.707 input RMS


@pytest.mark.parametrize("mel_bins", [80, 128])
def test_whisper_features_match_reference(mel_bins):
    ours = WhisperFeatureExtractor(feature_size=mel_bins)
    theirs = transformers.WhisperFeatureExtractor(feature_size=mel_bins)
    np.testing.assert_allclose(ours.mel_filters, theirs.mel_filters, rtol=1e-6, atol=1e-9)
    clips = [noise_audio(s, i) for i, s in enumerate((1.0, 12.5, 31.0))]
    for kwargs in ({}, {"return_attention_mask": True}, {"padding": "longest", "truncation": False},
                   {"do_normalize": True}, {"max_length": 80000, "return_attention_mask": True}):
        want = theirs(clips, sampling_rate=16000, return_tensors="np", **kwargs)
        got = ours(clips, sampling_rate=16000, return_tensors="np", **kwargs)
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=2e-5, err_msg=f"{kwargs} {key}")
    single = ours(clips[0], sampling_rate=16000, return_tensors="pt")["input_features"]
    assert tuple(single.shape) == (1, mel_bins, 3000)
    with pytest.raises(InputError, match="16000"):
        ours(clips[0], sampling_rate=8000)


def test_wav2vec2_features_match_reference():
    clips = [noise_audio(0.5, 0), noise_audio(0.8, 1)]
    for init in ({}, {"return_attention_mask": True}, {"do_normalize": False}):
        ours, theirs = Wav2Vec2FeatureExtractor(**init), transformers.Wav2Vec2FeatureExtractor(**init)
        for kwargs in ({}, {"padding": True}, {"padding": True, "return_attention_mask": True},
                       {"padding": "max_length", "max_length": 10000, "truncation": True},
                       {"padding": True, "return_tensors": "np"}):
            want, got = theirs(clips, sampling_rate=16000, **kwargs), ours(clips, sampling_rate=16000, **kwargs)
            assert set(got) == set(want), (init, kwargs)
            for key in want:
                for a, b in zip(got[key], want[key]):
                    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_auto_feature_extractor_and_processors(whisper_folder, wav2vec2_folder):
    folder = whisper_folder()
    extractor = lightpipe.AutoFeatureExtractor.from_pretrained(folder)
    assert isinstance(extractor, WhisperFeatureExtractor) and extractor.feature_size == 80
    processor = lightpipe.AutoProcessor.from_pretrained(folder)
    reference = transformers.AutoProcessor.from_pretrained(folder)
    assert type(processor).__name__ == "WhisperProcessor"
    assert processor.get_decoder_prompt_ids(language="french", task="translate") == \
        reference.get_decoder_prompt_ids(language="french", task="translate")
    out = processor(audio=noise_audio(1.0), sampling_rate=16000, return_tensors="pt")
    np.testing.assert_allclose(out["input_features"].numpy(),
                               reference(audio=noise_audio(1.0), sampling_rate=16000,
                                         return_tensors="pt")["input_features"].numpy(), atol=2e-5)
    folder = wav2vec2_folder("AutoModelForCTC")
    ctc, reference = lightpipe.AutoProcessor.from_pretrained(folder), transformers.AutoProcessor.from_pretrained(folder)
    assert type(ctc).__name__ == "Wav2Vec2Processor"
    assert isinstance(ctc.feature_extractor, Wav2Vec2FeatureExtractor)
    assert ctc.batch_decode([[8, 8, 0, 8, 4, 9], [5, 5, 4, 6]]) == \
        reference.batch_decode([[8, 8, 0, 8, 4, 9], [5, 5, 4, 6]])
    got = ctc(audio=noise_audio(0.5), sampling_rate=16000, return_tensors="pt")["input_values"]
    want = reference(audio=noise_audio(0.5), sampling_rate=16000, return_tensors="pt")["input_values"]
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_feature_extractors_save_and_reload(tmp_path):
    for extractor in (WhisperFeatureExtractor(feature_size=128, chunk_length=20),
                      Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)):
        folder = tmp_path / type(extractor).__name__
        extractor.save_pretrained(folder)
        again = lightpipe.AutoFeatureExtractor.from_pretrained(folder)
        assert type(again) is type(extractor) and again.to_dict() == extractor.to_dict()
        reference = transformers.AutoFeatureExtractor.from_pretrained(folder)  # readable by it too
        assert type(reference).__name__ == type(extractor).__name__
    assert again.return_attention_mask is True and again.do_normalize is False
