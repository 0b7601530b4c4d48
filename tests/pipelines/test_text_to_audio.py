"""text-to-audio against the reference's pipeline on tiny random VITS checkpoints: seeded
waveforms one text and many (batch_size 1 and 2), speakers through forward_params, the output
structure, task inference and the alias, the errors, and the server's WAV data: URIs."""

from __future__ import annotations

import base64
import io
import wave

import numpy as np
import pytest
import torch

import lightpipe
from lightpipe.audio_out import audio_as_data_uris, wav_bytes
from lightpipe.errors import InputError, InputTypeError

from ..fixtures.vits import build_vits

transformers = pytest.importorskip("transformers")

TEXTS = ["Hello there!", "a much longer sentence, with commas", "hi"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    return {"single": build_vits(root / "single"),
            "speakers": build_vits(root / "speakers", num_speakers=4, seed=3),
            "quiet": build_vits(root / "quiet", seed=4, noise_scale=0.0, noise_scale_duration=0.0)}


@pytest.fixture(scope="module")
def pipes(folders):
    return {name: (transformers.pipeline("text-to-audio", model=str(folder)),
                   lightpipe.pipeline("text-to-audio", model=str(folder)))
            for name, folder in folders.items() if name != "quiet"}


def _seeded(pipe, seed, *args, **kwargs):
    torch.manual_seed(seed)
    return pipe(*args, **kwargs)


def _assert_same(got, want):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for a, b in zip(got, want):
            _assert_same(a, b)
        return
    assert set(got) == set(want) == {"audio", "sampling_rate"}
    assert got["sampling_rate"] == want["sampling_rate"] and type(got["sampling_rate"]) is int
    assert isinstance(got["audio"], np.ndarray) and got["audio"].dtype == want["audio"].dtype == np.float32
    assert got["audio"].shape == want["audio"].shape
    np.testing.assert_allclose(got["audio"], want["audio"], rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["single", "speakers"])
def test_one_text_equals_reference(pipes, name):
    theirs, ours = pipes[name]
    params = {"forward_params": {"speaker_id": 3}} if name == "speakers" else {}
    want = _seeded(theirs, 11, "Hello, world", **params)
    got = _seeded(ours, 11, "Hello, world", **params)
    _assert_same(got, want)
    assert got["audio"].ndim == 1 and got["sampling_rate"] == 8000


def _cut_to(want: list, got: list) -> list:
    """The reference's batched rows cut to our lengths (it returns each at the batch's length)."""
    for a, b in zip(got, want):
        assert 0 < len(a["audio"]) <= len(b["audio"])
    return [{**b, "audio": b["audio"][:len(a["audio"])]} for a, b in zip(got, want)]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_lists_equal_reference(pipes, batch_size):
    theirs, ours = pipes["speakers"]
    params = {"forward_params": {"speaker_id": 1, "speaking_rate": 0.8}}
    want = _seeded(theirs, 5, TEXTS, batch_size=batch_size, **params)
    got = _seeded(ours, 5, TEXTS, batch_size=batch_size, **params)
    if batch_size == 1:
        _assert_same(got, want)
        return
    # each row cut to its own length: the model's sequence_lengths (hop 16 samples a frame)
    model = ours.model
    ids = ours.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    torch.manual_seed(5)
    torch.empty((), dtype=torch.int64).random_()  # as the pipeline's list call draws
    lengths = model(**ids, speaker_id=1, speaking_rate=0.8).sequence_lengths.tolist()
    assert [len(r["audio"]) for r in got[:2]] == lengths and lengths[0] != lengths[1]
    _assert_same(got, _cut_to(want, got))


def test_pipeline_defaults_and_streams(pipes, folders):
    theirs, _ = pipes["single"]
    ours = lightpipe.pipeline("text-to-speech", model=str(folders["single"]), batch_size=2,
                              forward_params={"speaking_rate": 1.7})
    assert ours.task == "text-to-audio"
    want = _seeded(theirs, 2, TEXTS, batch_size=2, forward_params={"speaking_rate": 1.7})
    got = _seeded(ours, 2, TEXTS)
    _assert_same(got, _cut_to(want, got))
    _assert_same(list(_seeded(ours, 2, iter(TEXTS))), got)


def test_task_inferred_from_checkpoint(folders):
    pipe = lightpipe.pipeline(model=str(folders["single"]))
    assert pipe.task == "text-to-audio" and type(pipe).__name__ == "TextToAudioPipeline"
    model = lightpipe.AutoModelForTextToWaveform.from_pretrained(folders["single"])
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(folders["single"])
    pipe = lightpipe.pipeline("text-to-audio", model=model, tokenizer=tokenizer, sampling_rate=22050)
    assert pipe("hello")["sampling_rate"] == 22050
    # a vocoder serves spectrogram models only: a waveform model ignores it, as the reference
    pipe = lightpipe.pipeline("text-to-audio", model=model, tokenizer=tokenizer, vocoder=object())
    assert pipe.vocoder is None and pipe("hello")["sampling_rate"] == 8000


def test_errors(pipes):
    _, ours = pipes["speakers"]
    with pytest.raises(InputError, match="empty text"):
        ours("   ")
    with pytest.raises(InputError, match="Nothing of the text"):
        ours("!!! ???")
    with pytest.raises(ValueError, match=r"speaker_id 4 is out of range.*0-3"):
        ours("hello", forward_params={"speaker_id": 4})
    with pytest.raises(ValueError, match="does not generate: put its arguments"):
        ours("hello", generate_kwargs={"do_sample": True})
    with pytest.raises(TypeError, match="unexpected arguments: speaker_id.*forward_params"):
        ours("hello", speaker_id=1)
    with pytest.raises(TypeError, match="forward_params must be a dict"):
        ours("hello", forward_params=[1])
    with pytest.raises(InputTypeError, match="takes a string"):
        ours(3)


def test_wav_encoding():
    audio = np.array([0.0, 0.5, -0.5, 1.5, -2.0], dtype=np.float32)
    with wave.open(io.BytesIO(wav_bytes(audio, 16000))) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (1, 2, 16000)
        samples = np.frombuffer(read.readframes(5), dtype="<i2")
    assert samples.tolist() == [0, 16384, -16384, 32767, -32767]
    stereo = np.stack([audio, -audio])
    with wave.open(io.BytesIO(wav_bytes(stereo, 8000))) as read:
        assert read.getnchannels() == 2 and read.getnframes() == 5
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        wav_bytes(audio, 0)
    assert audio_as_data_uris({"label": "x"}) == {"label": "x"}


def test_server_returns_wav_data_uris(folders):
    from starlette.testclient import TestClient

    from lightpipe.serving import build_settings
    from lightpipe.serving.app import build_app
    from lightpipe.serving.metrics import Metrics
    from lightpipe.serving.state import ServedModel

    folder = str(folders["quiet"])  # noise scales 0: the same audio every call
    pipe = lightpipe.pipeline("text-to-audio", model=folder)
    settings = build_settings(models=[{"name": "tts", "task": "text-to-audio", "model": folder}])
    metrics = Metrics()
    served = [ServedModel(settings.models[0], pipe, None, metrics)]
    with TestClient(build_app(served, settings, metrics)) as client:
        answer = client.post("/v1/pipelines/tts", json={"inputs": ["hello there", "hi"]})
        assert answer.status_code == 200, answer.text
        refused = client.post("/v1/pipelines/tts", json={"inputs": ""})
        assert refused.status_code == 422 and "empty text" in refused.text
        slower = client.post("/v1/pipelines/tts", json={
            "inputs": "hello there", "parameters": {"forward_params": {"speaking_rate": 0.2}}})
        assert slower.status_code == 200, slower.text
        assert slower.json()["sampling_rate"] == 8000
        assert len(slower.json()["audio"]) > len(answer.json()[0]["audio"])
    local = pipe(["hello there", "hi"], batch_size=2)  # the server ran them in one forward
    for sent, want in zip(answer.json(), local):
        assert sent["sampling_rate"] == want["sampling_rate"] == 8000
        head, _, data = sent["audio"].partition(",")
        assert head == "data:audio/wav;base64"
        with wave.open(io.BytesIO(base64.b64decode(data))) as read:
            assert read.getframerate() == 8000
            samples = np.frombuffer(read.readframes(read.getnframes()), dtype="<i2")
        np.testing.assert_allclose(samples / 32767.0, want["audio"], atol=1.5 / 32767)


def test_demo_page_plays_the_audio(folders):
    from lightpipe.demo import page_for

    pipe = lightpipe.pipeline("text-to-audio", model=str(folders["quiet"]))
    page = page_for(pipe)
    assert [name for name, _ in page.outputs] == ["Audio"]
    rate, samples = page.run("hello there")
    want = pipe("hello there")
    assert rate == want["sampling_rate"] == 8000
    np.testing.assert_array_equal(samples, want["audio"])
