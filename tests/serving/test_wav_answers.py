"""Raw WAV answers from the server (issue 20: "WAV as data: URIs, or raw bytes on request"):
``/v1/pipelines/NAME`` with ``"response_format": "wav"`` or ``Accept: audio/wav``, and the
OpenAI-shaped ``/v1/audio/speech`` (through the openai client too), on tiny random VITS
checkpoints built by the reference. The bytes are compared with the pipeline's own audio
(which tests/pipelines/test_text_to_audio.py compares with the reference's pipeline), and each
refusal is checked for its status and message."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

import lightpipe

from ..fixtures.vits import build_vits

pytest.importorskip("transformers")  # the checkpoints are built by the reference

TEXT = "hello there"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    """(client, pipelines): an in-process server with a quiet single-speaker VITS (noise scales
    0: the same audio every call), a quiet 3-speaker VITS and a text classifier."""
    from starlette.testclient import TestClient

    from lightpipe.serving import build_settings
    from lightpipe.serving.app import build_app
    from lightpipe.serving.metrics import Metrics
    from lightpipe.serving.state import ServedModel

    root = tmp_path_factory.mktemp("wav")
    quiet = dict(noise_scale=0.0, noise_scale_duration=0.0)
    folders = {"tts": build_vits(root / "tts", seed=5, **quiet),
               "voices": build_vits(root / "voices", num_speakers=3, seed=6, **quiet)}
    specs = [{"name": name, "task": "text-to-audio", "model": str(folder)}
             for name, folder in folders.items()]
    classifier = tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3)
    specs.append({"name": "sst", "task": "text-classification", "model": str(classifier)})
    settings = build_settings(models=specs)
    metrics = Metrics()
    pipes = {spec["name"]: lightpipe.pipeline(spec["task"], model=spec["model"]) for spec in specs}
    models = [ServedModel(spec, pipes[spec.name], None, metrics) for spec in settings.models]
    with TestClient(build_app(models, settings, metrics)) as client:
        yield client, pipes


def _samples(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as read:
        assert read.getnchannels() == 1 and read.getsampwidth() == 2
        return read.getframerate(), np.frombuffer(read.readframes(read.getnframes()), dtype="<i2")


def _assert_wav_of(answer, want: dict) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "audio/wav"
    rate, samples = _samples(answer.content)
    assert rate == want["sampling_rate"] == 8000
    assert samples.shape == want["audio"].shape and samples.size > 100
    np.testing.assert_allclose(samples / 32767.0, want["audio"], atol=1.5 / 32767)


def test_pipeline_route_answers_wav_bytes_on_request(served):
    client, pipes = served
    want = pipes["tts"](TEXT)
    _assert_wav_of(client.post("/v1/pipelines/tts", json={"inputs": TEXT, "response_format": "wav"}), want)
    _assert_wav_of(client.post("/v1/pipelines/tts", json={"inputs": TEXT},
                               headers={"Accept": "audio/wav"}), want)
    _assert_wav_of(client.post("/v1/pipelines/tts", json={"inputs": TEXT},
                               headers={"Accept": "application/json;q=0.5, audio/x-wav"}), want)
    slower = pipes["tts"](TEXT, forward_params={"speaking_rate": 0.5})
    _assert_wav_of(client.post("/v1/pipelines/tts", json={
        "inputs": TEXT, "response_format": "wav", "parameters": {"forward_params": {"speaking_rate": 0.5}}}),
        slower)
    assert slower["audio"].shape[-1] > want["audio"].shape[-1]


def test_pipeline_route_stays_json_by_default(served):
    client, _ = served
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json, audio/wav;q=0.5"}):
        answer = client.post("/v1/pipelines/tts", json={"inputs": TEXT}, headers=headers)
        assert answer.headers["content-type"] == "application/json", headers
        assert answer.json()["audio"].startswith("data:audio/wav;base64,")
    answer = client.post("/v1/pipelines/tts", json={"inputs": TEXT, "response_format": "json"},
                         headers={"Accept": "audio/wav"})  # the body's choice wins
    assert answer.headers["content-type"] == "application/json"


def test_pipeline_route_refusals(served):
    client, _ = served
    cases = [
        ({"inputs": [TEXT, "hi"], "response_format": "wav"}, {}, 422, "is a list"),
        ({"inputs": [TEXT]}, {"Accept": "audio/wav"}, 422, "one input's audio"),
        ({"inputs": TEXT, "response_format": "mp3"}, {}, 422, "'response_format' must be"),
        ({"inputs": TEXT}, {"Accept": "audio/mpeg"}, 406, "audio/wav only"),
        ({"inputs": "", "response_format": "wav"}, {}, 422, "empty text"),
    ]
    for body, headers, status, words in cases:
        answer = client.post("/v1/pipelines/tts", json=body, headers=headers)
        message = answer.json()["error"]["message"]
        assert answer.status_code == status and words in message, (body, answer.text)
    answer = client.post("/v1/pipelines/sst", json={"inputs": "I love it", "response_format": "wav"})
    assert answer.status_code == 422 and "serves text-classification" in answer.text
    answer = client.post("/v1/pipelines/sst", json={"inputs": "I love it"}, headers={"Accept": "audio/wav"})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "wrong_task"


def test_audio_speech_endpoint(served):
    client, pipes = served
    want = pipes["tts"](TEXT)
    _assert_wav_of(client.post("/v1/audio/speech", json={"model": "tts", "input": TEXT}), want)
    _assert_wav_of(client.post("/v1/audio/speech", json={
        "model": "tts", "input": TEXT, "voice": "alloy", "response_format": "wav"}), want)
    # speed scales the checkpoint's own speaking rate (1.3 in these configs)
    rate = pipes["tts"].model.config.speaking_rate
    faster = pipes["tts"](TEXT, forward_params={"speaking_rate": rate * 2})
    _assert_wav_of(client.post("/v1/audio/speech", json={"model": "tts", "input": TEXT, "speed": 2}), faster)
    assert faster["audio"].shape[-1] < want["audio"].shape[-1]
    # a number picks a speaker of a multi-speaker model
    answers = {}
    for voice in (0, "2"):
        speaker = pipes["voices"](TEXT, forward_params={"speaker_id": int(voice)})
        answer = client.post("/v1/audio/speech", json={"model": "voices", "input": TEXT, "voice": voice})
        _assert_wav_of(answer, speaker)
        answers[voice] = answer.content
    assert answers[0] != answers["2"]


def test_audio_speech_through_the_openai_client(served):
    openai = pytest.importorskip("openai")
    client, pipes = served
    api = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="none", http_client=client)
    answer = api.audio.speech.create(model="tts", input=TEXT, voice="nova", response_format="wav")
    rate, samples = _samples(answer.content)
    want = pipes["tts"](TEXT)
    assert rate == want["sampling_rate"]
    np.testing.assert_allclose(samples / 32767.0, want["audio"], atol=1.5 / 32767)
    with pytest.raises(openai.UnprocessableEntityError, match="wav"):
        api.audio.speech.create(model="tts", input=TEXT, voice="nova", response_format="mp3")


def test_audio_speech_refusals(served):
    client, _ = served
    cases = [
        ({"model": "tts", "input": TEXT, "response_format": "mp3"}, "\"wav\" only"),
        ({"model": "tts", "input": ""}, "non-empty string"),
        ({"model": "tts", "input": [TEXT, "hi"]}, "non-empty string"),
        ({"model": "tts", "input": TEXT, "voice": "bogus"}, "speaker number"),
        ({"model": "tts", "input": TEXT, "speed": 5}, "'speed' must be a number from 0.25 to 4"),
        ({"model": "tts", "input": TEXT, "instructions": "whisper"}, "not supported"),
        ({"model": "sst", "input": TEXT}, "speech needs a text-to-audio model"),
        ({"model": "voices", "input": TEXT, "voice": 7}, "out of range"),
        ({"model": "tts", "input": TEXT, "format": "wav"}, "format"),
    ]
    for body, words in cases:
        answer = client.post("/v1/audio/speech", json=body)
        assert answer.status_code == 422 and words in answer.json()["error"]["message"], (body, answer.text)
    assert client.post("/v1/audio/speech", json={"model": "nope", "input": TEXT}).status_code == 404


def test_openapi_lists_speech(served):
    client, _ = served
    document = client.get("/openapi.json").json()
    assert "/v1/audio/speech" in document["paths"]
    body = document["paths"]["/v1/pipelines/{name}"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["response_format"]["enum"] == ["json", "wav"]
