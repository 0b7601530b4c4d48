"""The speech examples (tutorial steps 01-04 and 15), run as a user runs them (a subprocess,
HF_HUB_OFFLINE=1) on tiny local checkpoints and espeak-ng speech; what they print is checked
against transformers on the same folders (the reference gets the decoded audio: it would need
ffmpeg for the files)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import transformers

from lightpipe.processing.audio import load_audio

from .conftest import assert_outputs_close
from .fixtures.audio import noise_audio
from .test_examples import printed, run_example


@pytest.fixture(scope="module")
def folders(wav2vec2_folder, whisper_folder):
    return {"ctc": wav2vec2_folder("AutoModelForCTC"), "whisper": whisper_folder()}


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.wav"
    soundfile.write(str(path), noise_audio(40.0, 3, rate=22050), 22050)
    return path


def audio16k(path):
    return load_audio(str(path), 16000)[0]


def reference(folder, **kwargs):
    return transformers.pipeline("automatic-speech-recognition", model=str(folder), **kwargs)


def test_step01_speech_recognition(folders, speech_files):
    stdout = run_example("step01_speech_recognition.py", "--model", folders["ctc"],
                         "--whisper-model", folders["whisper"], "--whisper-v3-model",
                         folders["whisper"], "--audio", speech_files["mp3"])
    audio = audio16k(speech_files["mp3"])
    assert_outputs_close(printed(stdout, "default"), reference(folders["ctc"])(audio))
    assert "task: automatic-speech-recognition" in stdout
    want = reference(folders["whisper"])(audio)
    assert_outputs_close(printed(stdout, "whisper"), want)
    assert_outputs_close(printed(stdout, "whisper-v3"), want)


def test_step02_device_batch(folders, speech_files):
    paths = [speech_files[ext] for ext in ("wav", "flac", "ogg")]
    stdout = run_example("step02_device_batch.py", "--model", folders["whisper"], *paths)
    assert "device: cpu" in stdout
    audio = [audio16k(p) for p in paths]
    theirs = reference(folders["whisper"])
    assert_outputs_close(printed(stdout, "one by one"), [theirs(a) for a in audio])
    assert_outputs_close(printed(stdout, "batch_size=2"), theirs(audio, batch_size=2))


def test_step03_task_parameters(folders, speech_files, long_audio):
    stdout = run_example("step03_task_parameters.py", "--model", folders["whisper"],
                         "--audio", speech_files["flac"], "--long-audio", long_audio)
    theirs = reference(folders["whisper"])
    timestamps = printed(stdout, "timestamps")
    want = theirs(audio16k(speech_files["flac"]), return_timestamps=True)
    assert_outputs_close(timestamps, {"text": want["text"], "chunks": [
        {"text": c["text"], "timestamp": list(c["timestamp"])} for c in want["chunks"]]})
    long = audio16k(long_audio)
    assert_outputs_close(printed(stdout, "long audio"), theirs(long, chunk_length_s=30, batch_size=2))
    want = theirs(long, chunk_length_s=30, return_timestamps=True)
    assert_outputs_close(printed(stdout, "long audio with timestamps"), {"text": want["text"], "chunks": [
        {"text": c["text"], "timestamp": list(c["timestamp"])} for c in want["chunks"]]})


def test_step04_dataset(folders, speech_files):
    paths = [speech_files[ext] for ext in ("wav", "flac", "mp3")]
    stdout = run_example("step04_dataset.py", "--model", folders["ctc"], *paths)
    theirs = reference(folders["ctc"])
    for index, path in enumerate(paths):
        assert_outputs_close(printed(stdout, f"generator {index}"), theirs(audio16k(path)))
        row = printed(stdout, f"dataset {index}")
        assert set(row) == {"text"}  # "path" is dropped beside "array", as the reference does
        # the reference resamples with torchaudio (not installed here): compare on our 16 kHz audio
        assert row["text"] == theirs(audio16k(path))["text"]


def test_step15_feature_extractor(folders, speech_files):
    paths = [speech_files["wav"], speech_files["ogg"]]
    stdout = run_example("step15_feature_extractor.py", "--model", folders["ctc"], *paths)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folders["ctc"])
    audio = [audio16k(p) for p in paths]
    assert "extractor: Wav2Vec2FeatureExtractor 16000" in stdout
    values = extractor(audio[0], sampling_rate=16000)["input_values"][0]
    assert printed(stdout, "one") == {"length": len(values), "mean": round(float(values.mean()), 4),
                                      "std": round(float(values.std()), 4)}
    batch = extractor(audio, sampling_rate=16000, padding=True, return_attention_mask=True,
                      return_tensors="pt")
    assert printed(stdout, "padded") == {k: list(v.shape) for k, v in batch.items()}
    assert printed(stdout, "attention_mask sums") == batch["attention_mask"].sum(-1).tolist()
    assert printed(stdout, "max_length") == [2, 16000]
    np.testing.assert_allclose(printed(stdout, "input_values[0][:5]"),
                               batch["input_values"][0][:5].numpy(), atol=1e-5)
