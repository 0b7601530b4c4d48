"""automatic-speech-recognition (CTC and Whisper) and audio-classification against the
reference pipelines: every argument, batched and not, chunked long audio, input forms,
real speech files in every format, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import assert_outputs_close
from ..fixtures.audio import noise_audio

CLIPS = [noise_audio(1.0, 0), noise_audio(2.3, 1), noise_audio(0.7, 2)]


@pytest.fixture(scope="module")
def ctc_pipes(wav2vec2_folder):
    cache = {}

    def get(**overrides):
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            folder = str(wav2vec2_folder("AutoModelForCTC", **overrides))
            cache[key] = (lightpipe.pipeline("automatic-speech-recognition", model=folder),
                          transformers.pipeline("automatic-speech-recognition", model=folder))
        return cache[key]

    return get


@pytest.mark.parametrize("stable", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"return_timestamps": "char"}, {"return_timestamps": "word"},
                                    {"chunk_length_s": 0.5}, {"batch_size": 2},
                                    {"chunk_length_s": 0.5, "stride_length_s": 0.1,
                                     "return_timestamps": "word", "batch_size": 3},
                                    {"chunk_length_s": 0.8, "stride_length_s": (0.2, 0.1)}])
def test_ctc_matches_reference(ctc_pipes, stable, kwargs):
    ours, theirs = ctc_pipes(do_stable_layer_norm=stable) if stable else ctc_pipes()
    assert_outputs_close(ours(CLIPS, **kwargs), theirs(CLIPS, **kwargs))
    assert_outputs_close(ours(CLIPS[1], **kwargs), theirs(CLIPS[1], **kwargs))


def test_ctc_input_forms(ctc_pipes):
    ours, theirs = ctc_pipes()
    item = {"raw": CLIPS[0], "sampling_rate": 16000, "stride": (2000, 3000), "id": 7}
    assert_outputs_close(ours(dict(item)), theirs(dict(item)))
    item = {"array": CLIPS[1].astype(np.float64), "sampling_rate": 16000, "path": "x.wav"}
    assert_outputs_close(ours(dict(item)), theirs(dict(item)))
    stereo = np.stack([CLIPS[0], CLIPS[0] * 0.5])
    assert_outputs_close(ours({"raw": stereo, "sampling_rate": 16000}),
                         theirs({"raw": stereo, "sampling_rate": 16000}))
    assert ours(iter(CLIPS)).__next__() == theirs(CLIPS[0])
    # Rows as a `datasets` dataset gives them ({"audio": {"array", "sampling_rate"}}).
    dataset = [{"audio": {"array": c, "sampling_rate": 16000}} for c in CLIPS]
    assert [r["text"] for r in ours([d["audio"] for d in dataset], batch_size=2)] == \
        [r["text"] for r in theirs([d["audio"] for d in dataset], batch_size=2)]


def test_ctc_resamples_other_rates(ctc_pipes):
    ours, _ = ctc_pipes()
    audio_8k = noise_audio(1.5, 3, rate=8000)
    out = ours({"raw": audio_8k, "sampling_rate": 8000})
    from lightpipe.processing.audio import resample

    direct = ours(resample(audio_8k, 8000, 16000))
    assert out == direct and isinstance(out["text"], str)


def test_ctc_bad_input(ctc_pipes):
    ours, _ = ctc_pipes()
    with pytest.raises(InputError, match="sampling_rate"):
        ours({"raw": CLIPS[0]})
    with pytest.raises(InputError, match="empty"):
        ours(np.zeros(0, dtype=np.float32))
    with pytest.raises(InputTypeError, match="dtype"):
        ours(np.array(["a", "b"]))
    with pytest.raises(InputError, match="axis 0"):
        ours(np.zeros((4, 1000), dtype=np.float32))
    with pytest.raises(InputError, match="does not exist"):
        ours("/no/such/file.wav")
    with pytest.raises(InputError, match="Could not decode"):
        ours(b"not audio at all")
    with pytest.raises(InputTypeError):
        ours(12)
    with pytest.raises(ValueError, match="char"):
        ours(CLIPS[0], return_timestamps=True)


def test_real_speech_every_format(ctc_pipes, speech_files):
    """espeak-ng speech as wav/flac/ogg/mp3 runs through the whole path (no ffmpeg): each
    decodes to the same audio as the wav within codec noise, and the pipeline reads it."""
    import soundfile

    from lightpipe.processing.audio import load_audio, resample

    ours, theirs = ctc_pipes()
    samples, rate = soundfile.read(str(speech_files["wav"]), dtype="float32")
    reference = resample(samples, rate, 16000)
    for ext, path in speech_files.items():
        waveform, _ = load_audio(str(path), 16000)
        assert abs(len(waveform) - len(reference)) < 0.1 * len(reference), ext
        if ext in ("wav", "flac"):
            np.testing.assert_allclose(waveform, reference, atol=1e-3)
        out = ours(str(path))
        assert isinstance(out["text"], str)
        assert ours(path.read_bytes()) == out
    # The reference needs ffmpeg for files: compare on the decoded wav.
    assert_outputs_close(ours(str(speech_files["wav"])), theirs(reference))


@pytest.fixture(scope="module")
def whisper_pipes(whisper_folder):
    folder = str(whisper_folder())
    return (lightpipe.pipeline("automatic-speech-recognition", model=folder),
            transformers.pipeline("automatic-speech-recognition", model=folder))


@pytest.mark.parametrize("kwargs", [
    {}, {"batch_size": 2}, {"generate_kwargs": {"language": "fr"}},
    {"generate_kwargs": {"task": "translate", "language": "en", "max_new_tokens": 12}},
    {"max_new_tokens": 9, "num_beams": 1},
    {"chunk_length_s": 10, "batch_size": 3, "max_new_tokens": 10},
    {"chunk_length_s": 8, "stride_length_s": 2, "generate_kwargs": {"language": "de", "num_beams": 1}},
    {"return_timestamps": True}, {"return_timestamps": True, "batch_size": 2, "num_beams": 2},
    {"return_timestamps": True, "chunk_length_s": 10, "batch_size": 4, "num_beams": 1},
    {"return_timestamps": True, "chunk_length_s": 12, "stride_length_s": [3, 2], "language": "en"},
])
def test_whisper_matches_reference(whisper_pipes, kwargs):
    ours, theirs = whisper_pipes
    clips = [noise_audio(4.0, 0), noise_audio(25.0, 1)]
    if "chunk_length_s" in kwargs:
        clips = [noise_audio(23.0, 4), noise_audio(6.0, 5)]
    assert_outputs_close(ours(clips, **kwargs), theirs(clips, **kwargs))


def test_whisper_bad_arguments(whisper_pipes):
    ours, _ = whisper_pipes
    with pytest.raises(ValueError, match="char"):
        ours(CLIPS[0], return_timestamps="char")
    with pytest.raises(InputError, match="chunk_length_s"):  # long-form is not implemented
        ours(noise_audio(35.0))


@pytest.fixture(scope="module")
def classification_pipes(wav2vec2_folder):
    folder = str(wav2vec2_folder("AutoModelForAudioClassification", num_labels=4))
    return (lightpipe.pipeline("audio-classification", model=folder),
            transformers.pipeline("audio-classification", model=folder))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}, {"top_k": 10}, {"function_to_apply": "sigmoid"},
                                    {"function_to_apply": "none", "top_k": 1}, {"batch_size": 2}])
def test_audio_classification_matches_reference(classification_pipes, kwargs):
    ours, theirs = classification_pipes
    assert_outputs_close(ours(CLIPS, **kwargs), theirs(CLIPS, **kwargs))
    assert_outputs_close(ours(CLIPS[0], **kwargs), theirs(CLIPS[0], **kwargs))


def test_audio_classification_bad_arguments(classification_pipes):
    ours, _ = classification_pipes
    with pytest.raises(ValueError, match="function_to_apply"):
        ours(CLIPS[0], function_to_apply="relu")


@pytest.fixture(scope="module")
def aligned_whisper_pipes(whisper_folder):
    folder = str(whisper_folder(alignment_heads=[[0, 1], [1, 0], [1, 3]]))
    return (lightpipe.pipeline("automatic-speech-recognition", model=folder),
            transformers.pipeline("automatic-speech-recognition", model=folder))


def assert_words_close(ours, theirs):
    """Same text and words; word times within 0.02 s."""
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_words_close(a, b)
        return
    assert ours["text"] == theirs["text"]
    assert [w["text"] for w in ours["chunks"]] == [w["text"] for w in theirs["chunks"]]
    for a, b in zip(ours["chunks"], theirs["chunks"]):
        assert set(a) == set(b) == {"text", "timestamp"}
        assert all(isinstance(t, float) for t in a["timestamp"])
        assert np.allclose(a["timestamp"], b["timestamp"], rtol=0, atol=0.0201), (a, b)


@pytest.mark.parametrize("kwargs", [
    {}, {"num_beams": 1}, {"batch_size": 2, "num_beams": 1}, {"batch_size": 2},
    {"generate_kwargs": {"language": "fr", "num_beams": 1}},
    {"chunk_length_s": 10, "batch_size": 3, "num_beams": 1},
    {"chunk_length_s": 10},
])
def test_whisper_word_timestamps_match_reference(aligned_whisper_pipes, kwargs):
    ours, theirs = aligned_whisper_pipes
    clips = [noise_audio(4.0, 0), noise_audio(25.0, 1)]
    if "chunk_length_s" in kwargs:
        clips = [noise_audio(23.0, 4), noise_audio(6.0, 5)]
    got = ours(clips, return_timestamps="word", **kwargs)
    want = theirs(clips, return_timestamps="word", **kwargs)
    assert any(w["timestamp"][1] > 0 for w in want[0]["chunks"])  # a case with real times
    assert_words_close(got, want)
    assert_words_close(ours(clips[1], return_timestamps="word", **kwargs),
                       theirs(clips[1], return_timestamps="word", **kwargs))


def test_whisper_word_timestamps_need_alignment_heads(whisper_pipes):
    ours, _ = whisper_pipes
    with pytest.raises(InputError, match="alignment_heads"):
        ours(CLIPS[0], return_timestamps="word")
